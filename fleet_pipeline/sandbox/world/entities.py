"""The records the sandbox world hands out; `world.py` re-exports them as its public interface."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import polars as pl

PLATFORMS = ("tracksolid", "navixy")              # tracking platforms
FIRMWARE_PLATFORMS = ("teltonika_fota", "aovx")   # firmware (OTA) platforms

PARKING_MIN_S = 300                # a stationary interval this long or longer is a parking
CITY_CENTER = (45.7640, 4.8357)    # Lyon
CITY_RADIUS_KM = 12

STATUSES = ("inactive", "offline", "parked", "driving")
ALARM_KINDS = ("overspeed", "vibration", "power_cut", "low_battery", "sos", "geofence_in", "geofence_out")

POINT_SCHEMA = {
    "gps_time": pl.Datetime("us"),
    "received_at": pl.Datetime("us"),
    "lat": pl.Float64,
    "lng": pl.Float64,
    "speed_kmh": pl.Float64,
    "direction_deg": pl.Float64,
    "acc_on": pl.Boolean,
    "satellites": pl.Int32,
    "altitude_m": pl.Float64,
    "odometer_km": pl.Float64,
    "late": pl.Boolean,
}


@dataclass(frozen=True)
class Account:
    account_id: str          # login-like id: "fleetco" (root), "fleetco-bron", "fleetco-bron-night"
    name: str
    parent_id: str | None    # None for the platform's root account
    platform: str            # "tracksolid" | "navixy"


@dataclass(frozen=True)
class Device:
    index: int
    imei: str
    manufacturer: str        # "jimi" | "teltonika" | "aovx"
    model: str
    platform: str            # tracking platform
    firmware_platform: str | None
    account_id: str
    sim_iccid: str
    sim_msisdn: str
    activation_date: date
    expiration_date: date
    device_name: str
    vehicle_name: str
    vehicle_number: str
    driver_name: str
    fix_interval_s: int      # upload interval while moving
    home_lat: float          # where the vehicle sleeps
    home_lng: float
    speed_limit_kmh: int     # overspeed alarm threshold configured on the device


@dataclass(frozen=True)
class Trip:
    """A drive between two parkings; short stops (traffic lights) lie inside it."""

    start: datetime
    end: datetime
    start_lat: float
    start_lng: float
    end_lat: float
    end_lng: float
    distance_km: float       # true path length: what the odometer adds
    max_speed_kmh: float
    avg_speed_kmh: float     # distance / (end - start)
    idle_s: int              # stationary with ignition on inside the trip


@dataclass(frozen=True)
class Stop:
    """A stationary interval; the evening parking ends on a later day."""

    start: datetime
    end: datetime
    lat: float
    lng: float
    ignition_on: bool
    kind: str                # "parking" (>= PARKING_MIN_S) | "short"


@dataclass(frozen=True)
class Alarm:
    time: datetime
    kind: str                # one of ALARM_KINDS
    lat: float
    lng: float
    speed_kmh: float
    geofence_id: str | None  # "depot-<account_id>" for geofence_in/out, else None


@dataclass(frozen=True)
class DeviceDay:
    imei: str
    day: date
    status: str              # one of STATUSES
    points: pl.DataFrame     # every fix recorded this UTC day (POINT_SCHEMA), sorted, unique gps_time
    trips: list[Trip]        # trips starting (and ending) this day
    stops: list[Stop]        # stops starting this day
    alarms: list[Alarm]      # sorted by time
    true_km: float           # sum of trips' distance_km
    odometer_start_km: float # at 00:00:00
    odometer_end_km: float   # at 24:00
