"""What a device reports only by push (issue 19): connections, heartbeats, OBD readings, fault codes.

The World had no truth for these, so this module adds the least that makes them consistent with
what it already has, derived from a device-day (its trips and fixes) and counter-based randomness:

* a device connects shortly before each trip and drops the connection five minutes after it ends
  (Jimi trackers sleep their modem while parked): a LOGIN and a LOGOUT per trip, clamped to its day;
* while connected it sends a heartbeat every `HEARTBEAT_INTERVAL`: ACC on inside the trip, charging
  while ACC is on, battery and GSM signal drawn per heartbeat;
* devices with an OBD dongle (every `OBD_EVERY`-th World index) report OBD readings at the trip's
  start, every `OBD_INTERVAL` and at its end, and on some days (`DTC_DAY_SHARE`) one fault report.

Every value is a pure function of (seed, device, day), like the rest of the World.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import TYPE_CHECKING

from .rng import key

if TYPE_CHECKING:
    from .entities import Device, DeviceDay

CONNECT_BEFORE_TRIP = timedelta(seconds=20)
DISCONNECT_AFTER_TRIP = timedelta(minutes=5)
HEARTBEAT_INTERVAL = timedelta(minutes=3)
OBD_EVERY = 3
OBD_INTERVAL = timedelta(minutes=5)
DTC_DAY_SHARE = 0.4
_EPOCH = datetime(1970, 1, 1)
DTC_CODES = ("P0301", "P0420", "P0171", "P0128", "P0442", "P0300", "C0035", "U0100")


@dataclass(frozen=True)
class Connection:
    time: datetime
    kind: str  # "LOGIN" | "LOGOUT"


@dataclass(frozen=True)
class Heartbeat:
    time: datetime
    acc_on: bool
    power_level: int   # battery %
    gsm_signal: int    # 0..100


@dataclass(frozen=True)
class ObdReading:
    time: datetime
    lat: float
    lng: float
    speed_kmh: int
    engine_rpm: int
    coolant_temp_c: int
    fuel_level_pct: int
    battery_mv: int
    engine_load_pct: int


@dataclass(frozen=True)
class FaultReport:
    time: datetime
    lat: float
    lng: float
    codes: tuple[str, ...]


def _day_bounds(day: DeviceDay) -> tuple[datetime, datetime]:
    start = datetime.combine(day.day, time())
    return start, start + timedelta(days=1) - timedelta(seconds=1)


def _sessions(day: DeviceDay) -> list[tuple[datetime, datetime]]:
    """Connected intervals: around each trip, overlapping ones merged, within the day."""
    first, last = _day_bounds(day)
    merged: list[list[datetime]] = []
    for trip in day.trips:
        start = max(first, trip.start - CONNECT_BEFORE_TRIP)
        end = min(last, trip.end + DISCONNECT_AFTER_TRIP)
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(start, end) for start, end in merged]


def connections(day: DeviceDay) -> list[Connection]:
    return [event for start, end in _sessions(day) for event in (Connection(start, "LOGIN"), Connection(end, "LOGOUT"))]


def _in_trip(day: DeviceDay, moment: datetime) -> bool:
    return any(trip.start <= moment <= trip.end for trip in day.trips)


def heartbeats(seed: int, device: Device, day: DeviceDay) -> list[Heartbeat]:
    beats = []
    for start, end in _sessions(day):
        moment = start
        while moment <= end:
            draw = key(seed, device.index, day.day.toordinal(), "heartbeat", int((moment - _EPOCH).total_seconds()))
            acc_on = _in_trip(day, moment)
            beats.append(Heartbeat(moment, acc_on, power_level=(100 if acc_on else 55 + draw % 45),
                                   gsm_signal=30 + (draw >> 8) % 71))
            moment += HEARTBEAT_INTERVAL
    return beats


def has_obd(device: Device) -> bool:
    return device.index % OBD_EVERY == 0


def _position_at(day: DeviceDay, moment: datetime) -> tuple[float, float, float]:
    """(lat, lng, speed) of the last fix at or before ``moment`` (the first fix of the day before any)."""
    points = day.points
    times = points["gps_time"]
    index = max(0, times.search_sorted(moment, side="right") - 1)
    row = points.row(index, named=True)
    return round(row["lat"], 6), round(row["lng"], 6), row["speed_kmh"]


def obd_readings(seed: int, device: Device, day: DeviceDay) -> list[ObdReading]:
    if not has_obd(device) or day.points.height == 0:
        return []
    fuel = 20 + key(seed, device.index, day.day.toordinal(), "obd-fuel") % 70
    readings = []
    for trip in day.trips:
        moments, moment = [], trip.start
        while moment < trip.end:
            moments.append(moment)
            moment += OBD_INTERVAL
        moments.append(trip.end)
        for moment in moments:
            lat, lng, speed = _position_at(day, moment)
            minutes = (moment - trip.start).total_seconds() / 60
            running = moment < trip.end
            readings.append(ObdReading(
                moment, lat, lng, speed_kmh=round(speed), engine_rpm=(800 + round(speed) * 30) if running else 0,
                coolant_temp_c=min(90, 30 + round(minutes * 6)), fuel_level_pct=fuel,
                battery_mv=14100 if running else 12600, engine_load_pct=min(100, 20 + round(speed) // 2)))
    return readings


def fault_reports(seed: int, device: Device, day: DeviceDay) -> list[FaultReport]:
    if not has_obd(device) or not day.trips or day.points.height == 0:
        return []
    draw = key(seed, device.index, day.day.toordinal(), "dtc")
    if (draw % 10_000) / 10_000 >= DTC_DAY_SHARE:
        return []
    moment = min(day.trips[0].start + timedelta(minutes=1), day.trips[0].end)
    count = 1 + (draw >> 16) % 2
    codes = tuple(DTC_CODES[((draw >> (24 + 3 * n)) + n) % len(DTC_CODES)] for n in range(count))
    lat, lng, _ = _position_at(day, moment)
    return [FaultReport(moment, lat, lng, tuple(dict.fromkeys(codes)))]
