"""The fleet's figures per vendor and UTC day as the sandbox World has them: what the report and
the marts' metadata must show for a demo day."""

from __future__ import annotations

from collections import Counter
from datetime import date

from fleet_pipeline.sandbox import navixy
from fleet_pipeline.sandbox.world import World


def reported_devices(world: World) -> list:
    """Devices whose data the vendors serve: Navixy refuses blocked and deleted trackers (217)."""
    absent = navixy.default_blocked_tracker_ids(world) | navixy.default_deleted_tracker_ids(world)
    return [d for d in world.devices if d.platform == "tracksolid" or navixy.tracker_id(d) not in absent]


def km_per_vendor(world: World, day: date) -> dict[str, float]:
    km: Counter[str] = Counter()
    for d in reported_devices(world):
        if d.activation_date <= day:
            km[d.platform] += world.day(d.imei, day).true_km
    return dict(km)


def alarms_per_vendor(world: World, day: date) -> dict[str, int]:
    """The World's alarms (ALARM_KINDS: never an ignition or trip event)."""
    return dict(Counter(d.platform for d in reported_devices(world) if d.activation_date <= day
                        for _ in world.day(d.imei, day).alarms))
