"""The sandbox World: one deterministic synthetic fleet shared by every vendor's fake server.

`world.py` holds the `World` (its docstring tells how the calendar is anchored and what each call
costs). It is built in layers: `fleet` (accounts and devices) -> `plan` (per-day plans and the
odometer) -> `timeline` (the motion of one day) -> `daygen` (its fixes, trips, stops and alarms),
beside `firmware` (campaigns and OTA attempts) and `stock` (products, deliveries, installs), on
the shared `entities`, `geo`, `identifiers` and `rng`.
"""

from .world import (
    ALARM_KINDS,
    CITY_CENTER,
    CITY_RADIUS_KM,
    FIRMWARE_PLATFORMS,
    OTA_STATUS,
    PARKING_MIN_S,
    PLATFORMS,
    POINT_SCHEMA,
    STATUSES,
    Account,
    Alarm,
    Campaign,
    Device,
    DeviceDay,
    OtaAttempt,
    Product,
    Stop,
    Trip,
    World,
)

__all__ = [
    "ALARM_KINDS", "CITY_CENTER", "CITY_RADIUS_KM", "FIRMWARE_PLATFORMS", "OTA_STATUS", "PARKING_MIN_S",
    "PLATFORMS", "POINT_SCHEMA", "STATUSES", "Account", "Alarm", "Campaign", "Device", "DeviceDay",
    "OtaAttempt", "Product", "Stop", "Trip", "World",
]
