"""Detailed generation of one device-day from its timeline: GPS fixes, trips, stops and alarms.

`generate_day` samples the fixes from the timeline (`timeline.py`) with numpy (np.interp over the
polyline, no per-fix Python), then derives trips, stops, alarms and upload delays; deterministic
from (seed, device index, day).

Cost (CPU, 2-core dev box): about 3 ms of fixes for a driving day on top of its 1.5 ms timeline
(median ~390 fixes: one per 10-30 s while driving plus corners, idling and heartbeats); 1.5 ms for
a parked day.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import numpy as np
import polars as pl

from . import rng
from .entities import CITY_CENTER, POINT_SCHEMA, Alarm, DeviceDay, Stop, Trip
from .geo import EARTH_RADIUS_M, to_latlng
from .plan import STATUS_DRIVING, STATUS_PARKED
from .timeline import DAY_S, DayContext, Timeline

IDLING_FIX_S = (60, 120)

GPS_SIGMA_M = 2.0                    # correlated error, wandering over minutes
GPS_ERROR_WAVES = 4
GPS_ERROR_PERIOD_S = (300.0, 1800.0)
GPS_WHITE_SIGMA_M = 0.3              # fix-to-fix jitter on top
SPEED_NOISE_KMH = 3.0
ALTITUDE_M = (160.0, 320.0)
LOW_SATELLITES_CHANCE = 0.05

GEOFENCE_RADIUS_M = 200.0
GEOFENCE_SCAN_S = 900
VIBRATION_PER_DAY = 0.3
POWER_CUT_PER_DAY = 0.02
LOW_BATTERY_PER_DAY = 0.03
LOW_BATTERY_MIN_PARKING_S = 2 * 3600
SOS_PER_DAY = 0.003

BUFFERED_CHUNK_CHANCE = 0.10          # tunnel / no coverage: uploaded when coverage returns
REUPLOADED_CHUNK_CHANCE = 0.04        # buffered on the device and re-uploaded 1-3 days later
CHUNK_S = (20 * 60, 90 * 60)


def generate_day(ctx: DayContext, timeline: Timeline) -> DeviceDay:
    """All of one device-day: fixes, trips, stops, alarms, odometer."""
    status = int(ctx.plans.status[0])
    true_km = float(ctx.plans.day_m[0]) / 1000.0
    odo0 = ctx.odometer_start_km
    name = ("inactive", "offline", "parked", "driving")[status]
    if status not in (STATUS_PARKED, STATUS_DRIVING):
        return DeviceDay(ctx.device.imei, ctx.day, name, _empty_points(), [], [], [], 0.0, odo0, odo0)

    g = rng.generator(ctx.seed, ctx.device.index, ctx.ordinal, "fixes")
    midnight = datetime(ctx.day.year, ctx.day.month, ctx.day.day)
    t = _fix_times(g, ctx, timeline)
    points = _points(g, ctx, timeline, t, midnight)
    trips = _trips(ctx, timeline, midnight)
    stops = _stops(ctx, timeline, midnight)
    alarms = _alarms(rng.generator(ctx.seed, ctx.device.index, ctx.ordinal, "alarms"), ctx, timeline, midnight)
    return DeviceDay(
        imei=ctx.device.imei,
        day=ctx.day,
        status=name,
        points=points,
        trips=trips,
        stops=stops,
        alarms=alarms,
        true_km=true_km,
        odometer_start_km=odo0,
        odometer_end_km=ctx.odometer_end_km,
    )


def _fix_times(g: np.random.Generator, ctx: DayContext, tl: Timeline) -> np.ndarray:
    """Whole-second fix times: periodic + corner fixes while driving, idling fixes, heartbeats."""
    hb = ctx.heartbeat_s
    phase = int(g.integers(0, hb))
    if not tl.trips:
        return np.arange(phase, DAY_S, hb, dtype=np.int64)
    fi = ctx.device.fix_interval_s
    first, last = tl.trips[0].start_s, tl.trips[-1].end_s
    parts = [np.arange(phase, first, hb, dtype=np.int64)]
    for trip in tl.trips:
        parts.append(np.arange(trip.start_s, trip.end_s, fi, dtype=np.int64))
    # every knot while driving (corners, light stops, departures, arrivals): "corner reporting"
    parts.append(tl.t[(tl.t >= first) & (tl.t <= last)])
    for start, end, ignition in tl.parkings:
        step = int(g.integers(IDLING_FIX_S[0], IDLING_FIX_S[1] + 1)) if ignition else hb
        parts.append(np.arange(start + step, end, step, dtype=np.int64))
    parts.append(np.arange(last + hb, DAY_S, hb, dtype=np.int64))
    return np.unique(np.concatenate(parts))


def _points(g: np.random.Generator, ctx: DayContext, tl: Timeline, t: np.ndarray, midnight: datetime) -> pl.DataFrame:
    n = len(t)
    seg = np.clip(np.searchsorted(tl.t, t, side="right") - 1, 0, len(tl.seg_speed) - 1)
    moving = tl.seg_speed[seg] > 0
    x = np.interp(t, tl.t, tl.x)
    y = np.interp(t, tl.t, tl.y)
    dist_m = np.interp(t, tl.t, tl.s)

    # A stationary device repeats the fix it stopped with (trackers filter static drift).
    noise = _gps_error(g, np.where(moving, t, tl.t[seg]))
    noise += np.where(moving[:, None], g.normal(0.0, GPS_WHITE_SIGMA_M, size=(n, 2)), 0.0)
    lat, lng = to_latlng(x + noise[:, 0], y + noise[:, 1], *CITY_CENTER)

    speed = np.where(moving, np.maximum(1.0, tl.seg_speed[seg] + g.uniform(-SPEED_NOISE_KMH, SPEED_NOISE_KMH, n)), 0.0)
    direction = np.mod(tl.seg_bearing[seg] + np.where(moving, g.normal(0.0, 2.0, n), 0.0), 360.0)
    acc_on = _ignition_on(tl, t)
    satellites = np.where(g.random(n) < LOW_SATELLITES_CHANCE, g.integers(3, 6, n), g.integers(6, 15, n))
    altitude = np.clip(_terrain_m(ctx.seed, x, y) + g.normal(0.0, 1.5, n), *ALTITUDE_M)
    received, late = _upload_times(g, tl, t)

    base = np.datetime64(midnight, "us")
    return pl.DataFrame(
        {
            "gps_time": base + t.astype("timedelta64[s]"),
            "received_at": base + received.astype("timedelta64[s]"),
            "lat": np.round(lat, 6),
            "lng": np.round(lng, 6),
            "speed_kmh": np.round(speed, 1),
            "direction_deg": np.round(direction, 1) % 360.0,
            "acc_on": acc_on,
            "satellites": satellites.astype(np.int32),
            "altitude_m": np.round(altitude, 1),
            "odometer_km": ctx.odometer_start_km + dist_m / 1000.0,
            "late": late,
        },
    )   # dtypes are set by the arrays themselves (checked against POINT_SCHEMA by the tests)


def _gps_error(g: np.random.Generator, t: np.ndarray) -> np.ndarray:
    """Slowly wandering position error (east, north) in metres, with GPS_SIGMA_M overall.

    Real GPS error is correlated over minutes (satellite geometry, multipath), not independent
    per fix: independent 2 m jitter on fixes a few metres apart would add a zigzag of several
    metres per traffic light and make every trip look 1-2 % longer than it was.
    """
    periods = g.uniform(GPS_ERROR_PERIOD_S[0], GPS_ERROR_PERIOD_S[1], size=(2, GPS_ERROR_WAVES))
    phases = g.uniform(0.0, 2 * math.pi, size=(2, GPS_ERROR_WAVES))
    amplitude = GPS_SIGMA_M * math.sqrt(2.0 / GPS_ERROR_WAVES)
    waves = np.sin(2 * math.pi * t[:, None, None] / periods[None] + phases[None])
    return amplitude * waves.sum(axis=2)


def _ignition_on(tl: Timeline, t: np.ndarray) -> np.ndarray:
    """Engine on from departure to arrival (both fixes included) and during idling parkings."""
    on = np.zeros(len(t), dtype=bool)
    for trip in tl.trips:
        on |= (t >= trip.start_s) & (t <= trip.end_s)
    for start, end, ignition in tl.parkings:
        if ignition:
            on |= (t > start) & (t < end)
    return on


def _terrain_m(seed: int, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """A smooth, seeded landscape between 160 and 320 m (Lyon: Saone/Rhone plain, Fourviere hill)."""
    p1, p2, p3 = (2 * math.pi * float(v) for v in rng.uniform(seed, "terrain", np.arange(3)))
    h = 240.0 + 45.0 * np.sin(x / 2300.0 + p1) + 30.0 * np.cos(y / 3100.0 + p2) + 12.0 * np.sin((x + y) / 900.0 + p3)
    return np.clip(h, *ALTITUDE_M)


def _upload_times(g: np.random.Generator, tl: Timeline, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """received_at (seconds since 00:00 of the fix's day) and the `late` flag.

    Usually 1-5 s after the fix. Some driving days lose coverage for 20-90 min (the chunk arrives
    when it returns); a few keep a chunk in the device buffer and re-upload it 1-3 days later.
    """
    received = t + g.integers(1, 6, len(t))
    late = np.zeros(len(t), dtype=bool)
    if not tl.trips:
        return received, late
    first, last = tl.trips[0].start_s, tl.trips[-1].end_s
    for chance, delay_s in ((BUFFERED_CHUNK_CHANCE, None), (REUPLOADED_CHUNK_CHANCE, (86_400, 3 * 86_400))):
        draw, dur_draw, start_draw, delay_draw = g.random(4)
        if draw >= chance:
            continue
        duration = int(CHUNK_S[0] + dur_draw * (CHUNK_S[1] - CHUNK_S[0]))
        start = first + int(start_draw * max(1, last - first - duration))
        end = min(start + duration, last)
        chunk = (t >= start) & (t <= end)
        arrival = end + 3 + int(delay_draw * 12) if delay_s is None else end + delay_s[0] + int(delay_draw * (delay_s[1] - delay_s[0]))
        # a burst upload: about ten fixes per second
        received = np.where(chunk, arrival + np.cumsum(chunk) // 10, received)
        late |= chunk
    return received, late


def _empty_points() -> pl.DataFrame:
    return pl.DataFrame(schema=POINT_SCHEMA)


def _latlng(x: float, y: float) -> tuple[float, float]:
    """Scalar twin of geo.to_latlng for single positions (numpy is slow on one element)."""
    lat0, lng0 = CITY_CENTER
    lat = lat0 + math.degrees(y / EARTH_RADIUS_M)
    lng = lng0 + math.degrees(x / (EARTH_RADIUS_M * math.cos(math.radians(lat))))
    return round(lat, 6), round(lng, 6)


def _trips(ctx: DayContext, tl: Timeline, midnight: datetime) -> list[Trip]:
    out = []
    for trip in tl.trips:
        duration_s = trip.end_s - trip.start_s
        km = trip.length_m / 1000.0
        start_ll, end_ll = _latlng(*trip.start_xy), _latlng(*trip.end_xy)
        out.append(
            Trip(
                start=midnight + timedelta(seconds=trip.start_s),
                end=midnight + timedelta(seconds=trip.end_s),
                start_lat=start_ll[0],
                start_lng=start_ll[1],
                end_lat=end_ll[0],
                end_lng=end_ll[1],
                distance_km=km,
                max_speed_kmh=trip.max_speed_kmh,
                avg_speed_kmh=km / (duration_s / 3600.0),
                idle_s=sum(b - a for a, b, _, _ in trip.short_stops),
            )
        )
    return out


def _stops(ctx: DayContext, tl: Timeline, midnight: datetime) -> list[Stop]:
    """Short stops inside trips, parkings between trips, and the evening parking at home."""
    out = []
    for k, trip in enumerate(tl.trips):
        for a, b, x, y in trip.short_stops:
            lat, lng = _latlng(x, y)
            out.append(Stop(midnight + timedelta(seconds=a), midnight + timedelta(seconds=b), lat, lng, True, "short"))
        lat, lng = _latlng(*trip.end_xy)
        if k < len(tl.parkings):
            start, end, ignition = tl.parkings[k]
            out.append(Stop(midnight + timedelta(seconds=start), midnight + timedelta(seconds=end), lat, lng, ignition, "parking"))
        else:
            out.append(Stop(midnight + timedelta(seconds=trip.end_s), ctx.next_departure, lat, lng, False, "parking"))
    return out


def _alarms(g: np.random.Generator, ctx: DayContext, tl: Timeline, midnight: datetime) -> list[Alarm]:
    events: list[tuple[int, str, str | None]] = []
    limit = ctx.device.speed_limit_kmh
    geofence_id = f"depot-{ctx.device.account_id}"

    # overspeed: at most one per segment above the configured limit
    for j in np.flatnonzero(tl.seg_speed > limit):
        t0, t1 = int(tl.t[j]), int(tl.t[j + 1])
        events.append((t0 + (t1 - t0) // 4, "overspeed", None))

    engine_off = _engine_off_intervals(tl)
    off_total = sum(b - a for a, b in engine_off)
    for _ in range(g.poisson(VIBRATION_PER_DAY)):
        events.append((_time_within(g, engine_off, off_total), "vibration", None))
    for _ in range(g.poisson(POWER_CUT_PER_DAY)):
        events.append((int(g.integers(0, DAY_S)), "power_cut", None))
    long_off = [(a, b) for a, b in engine_off if b - a >= LOW_BATTERY_MIN_PARKING_S]
    for _ in range(g.poisson(LOW_BATTERY_PER_DAY)):
        if long_off:
            events.append((_time_within(g, long_off, sum(b - a for a, b in long_off)), "low_battery", None))
    driving = [(trip.start_s, trip.end_s) for trip in tl.trips] or [(0, DAY_S)]
    for _ in range(g.poisson(SOS_PER_DAY)):
        events.append((_time_within(g, driving, sum(b - a for a, b in driving)), "sos", None))

    if tl.trips:
        hx, hy = tl.home_xy
        first, last = tl.trips[0], tl.trips[-1]
        ts = np.arange(first.start_s, min(first.end_s, first.start_s + GEOFENCE_SCAN_S) + 1)
        outside = np.hypot(np.interp(ts, tl.t, tl.x) - hx, np.interp(ts, tl.t, tl.y) - hy) > GEOFENCE_RADIUS_M
        if outside.any():
            events.append((int(ts[np.argmax(outside)]), "geofence_out", geofence_id))
        ts = np.arange(max(last.start_s, last.end_s - GEOFENCE_SCAN_S), last.end_s + 1)
        outside = np.hypot(np.interp(ts, tl.t, tl.x) - hx, np.interp(ts, tl.t, tl.y) - hy) > GEOFENCE_RADIUS_M
        if outside.any() and not outside[-1]:
            events.append((int(ts[len(outside) - np.argmax(outside[::-1])]), "geofence_in", geofence_id))

    events.sort(key=lambda e: (e[0], e[1]))
    times = np.array([e[0] for e in events], dtype=np.int64)
    seg = np.clip(np.searchsorted(tl.t, times, side="right") - 1, 0, len(tl.seg_speed) - 1)
    lat, lng = to_latlng(np.interp(times, tl.t, tl.x), np.interp(times, tl.t, tl.y), *CITY_CENTER)
    return [
        Alarm(
            time=midnight + timedelta(seconds=int(ts_)),
            kind=kind,
            lat=round(float(lat[j]), 6),
            lng=round(float(lng[j]), 6),
            speed_kmh=round(float(tl.seg_speed[seg[j]]), 1),
            geofence_id=fence,
        )
        for j, (ts_, kind, fence) in enumerate(events)
    ]


def _engine_off_intervals(tl: Timeline) -> list[tuple[int, int]]:
    if not tl.trips:
        return [(0, DAY_S)]
    out = [(0, tl.trips[0].start_s)]
    out += [(a, b) for a, b, ignition in tl.parkings if not ignition]
    out.append((tl.trips[-1].end_s, DAY_S))
    return [(a, b) for a, b in out if b > a]


def _time_within(g: np.random.Generator, intervals: list[tuple[int, int]], total: int) -> int:
    """A uniform whole second inside a union of intervals."""
    offset = int(g.integers(0, max(total, 1)))
    for a, b in intervals:
        if offset < b - a:
            return a + offset
        offset -= b - a
    return intervals[-1][0]
