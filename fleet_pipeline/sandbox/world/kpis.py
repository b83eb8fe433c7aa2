"""The World's answers to the KPI marts' questions (utilisation, speeding, zones, device health).

Each truth is measured on what the World knows exactly — a device-day's motion (`World.motion`:
segments with their true speeds, trips, parkings and their ignition), its alarms and its day
status — never on sampled fixes, so a mart compared with them is compared with what happened.
Nothing here changes the World: it only reads it (the same seed gives the same outputs as before).

The World drives in Lyon, so its fleet's own time zone is Europe/Paris (`FLEET_TIME_ZONE`): local
working hours and weekends are that zone's, unless a caller asks about another one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Protocol
from zoneinfo import ZoneInfo

from .entities import Alarm
from .world import World

FLEET_TIME_ZONE = "Europe/Paris"


class WorkingWeek(Protocol):
    """Working days (ISO weekday numbers, Monday = 1) and the local minutes of day worked on them."""

    days: frozenset[int]
    start_minute: int
    end_minute: int


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time())


# ---------------------------------------------------------------- engine hours and utilisation

def driving_s(world: World, imei: str, day: date) -> int:
    """Seconds driving: departure to arrival of every trip of the day (lights and short stops inside)."""
    return sum(t.end_s - t.start_s for t in world.motion(imei, day).trips)


def idle_s(world: World, imei: str, day: date) -> int:
    """Seconds standing with the engine running: the parkings left idling (at least PARKING_MIN_S)."""
    return sum(end - start for start, end, ignition in world.motion(imei, day).parkings if ignition)


def engine_on_spans(world: World, imei: str, day: date) -> list[tuple[datetime, datetime]]:
    """Ignition-on spans of the day: every trip and every idling parking (they never cross midnight:
    the day's driving ends before 23:00 and the evening parking is engine-off)."""
    motion, midnight = world.motion(imei, day), _midnight(day)
    spans = [(t.start_s, t.end_s) for t in motion.trips]
    spans += [(start, end) for start, end, ignition in motion.parkings if ignition]
    return [(midnight + timedelta(seconds=a), midnight + timedelta(seconds=b)) for a, b in sorted(spans)]


def engine_on_s(world: World, imei: str, day: date) -> int:
    return int(sum((b - a).total_seconds() for a, b in engine_on_spans(world, imei, day)))


def working_time_class(local: datetime, week: WorkingWeek) -> str:
    """'weekend' on a day that is not a working day, else 'working_hours' or 'after_hours'."""
    if local.isoweekday() not in week.days:
        return "weekend"
    minute = local.hour * 60 + local.minute
    return "working_hours" if week.start_minute <= minute < week.end_minute else "after_hours"


def km_by_working_time(world: World, imei: str, day: date, zone: str, week: WorkingWeek) -> dict[str, float]:
    """True km of the UTC day split by the local working week: {'working_hours', 'after_hours',
    'weekend'}, from the World's exact distance along the day (the odometer), cut where the local
    clock crosses a working-hours boundary or midnight."""
    tz = ZoneInfo(zone)
    start, end = _midnight(day), _midnight(day + timedelta(days=1))
    cuts = {start, end}
    local_day = start.replace(tzinfo=timezone.utc).astimezone(tz).date() - timedelta(days=1)
    for k in range(4):   # every local day that can touch the UTC day
        d = local_day + timedelta(days=k)
        for minute in (0, week.start_minute, week.end_minute):
            local = datetime.combine(d, time()) + timedelta(minutes=minute)
            utc = local.replace(tzinfo=tz).astimezone(timezone.utc).replace(tzinfo=None)
            if start < utc < end:
                cuts.add(utc)
    motion = world.motion(imei, day)
    out = {"working_hours": 0.0, "after_hours": 0.0, "weekend": 0.0}
    bounds = sorted(cuts)
    for a, b in zip(bounds, bounds[1:]):
        km = (motion.distance_at((b - start).total_seconds()) - motion.distance_at((a - start).total_seconds())) / 1000
        middle = (a + (b - a) / 2).replace(tzinfo=timezone.utc).astimezone(tz)
        out[working_time_class(middle, week)] += km
    return out


# ---------------------------------------------------------------- speeding

def seconds_above(world: World, imei: str, day: date, limit_kmh: float) -> int:
    """Seconds the vehicle drove faster than `limit_kmh` (true segment speeds)."""
    motion = world.motion(imei, day)
    durations = motion.t[1:] - motion.t[:-1]
    return int(durations[motion.seg_speed > limit_kmh].sum())


def overspeed_alarms(world: World, imei: str, day: date) -> list[Alarm]:
    """The device's own overspeed alarms (it raises them at its configured speed_limit_kmh)."""
    return [a for a in world.day(imei, day).alarms if a.kind == "overspeed"]


# ---------------------------------------------------------------- zones

@dataclass(frozen=True)
class ZoneVisit:
    """A stay inside a zone; an end outside the days asked about is None (entered before them, or
    not left yet)."""

    zone: str
    entered_at: datetime | None
    exited_at: datetime | None


def zone_visits(world: World, imei: str, days: list[date]) -> list[ZoneVisit]:
    """The device's stays in its depot zone over the given consecutive days, from its geofence
    alarms: an entry opens a stay, the next exit of that zone closes it."""
    visits: list[ZoneVisit] = []
    inside: dict[str, datetime] = {}
    for day in sorted(days):
        for alarm in world.day(imei, day).alarms:
            if alarm.kind == "geofence_in":
                inside[alarm.geofence_id] = alarm.time
            elif alarm.kind == "geofence_out":
                visits.append(ZoneVisit(alarm.geofence_id, inside.pop(alarm.geofence_id, None), alarm.time))
    visits += [ZoneVisit(zone, entered, None) for zone, entered in inside.items()]
    return visits


# ---------------------------------------------------------------- device health

def offline_days(world: World, imei: str, days: list[date]) -> list[date]:
    """Days of an offline spell (the device switched off: no fix at all that day)."""
    return [d for d in days if world.day(imei, d).status == "offline"]
