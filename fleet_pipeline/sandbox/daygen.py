"""Detailed generation of one device-day: the timeline, the GPS fixes, trips, stops and alarms.

Two layers, both deterministic from (seed, device index, day):

* `build_timeline` turns the day's plan into a time-polyline: knots (integer seconds, planar
  position, cumulative distance) with, per segment, its speed and bearing. Segment durations are
  whole seconds, so every corner is a knot on a whole second and a fix taken there lies exactly
  on the corner. No fixes yet: this is what `odometer_km` needs inside a day.
* `generate_day` samples the fixes from the timeline with numpy (np.interp over the polyline, no
  per-fix Python), then derives trips, stops, alarms and upload delays.

Cost (CPU, 2-core dev box): timeline about 1.5 ms and fixes about 3 ms for a driving day (median
~390 fixes: one per 10-30 s while driving plus corners, idling and heartbeats); 1.5 ms for a parked
day.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import numpy as np
import polars as pl

from . import rng
from .entities import (
    CITY_CENTER,
    PARKING_MIN_S,
    POINT_SCHEMA,
    Alarm,
    Device,
    DeviceDay,
    Stop,
    Trip,
)
from .geo import EARTH_RADIUS_M, StreetGrid, bearing_deg, to_latlng
from .plan import (
    ROUTE_L,
    ROUTE_MAX_FROM_CENTER_M,
    STATUS_DRIVING,
    STATUS_PARKED,
    DayPlans,
    route_vertices,
)

DAY_S = 86_400
LATEST_ARRIVAL_S = 23 * 3600         # the day's driving ends before 23:00 UTC, so trips never cross midnight

URBAN_KMH = (20.0, 45.0)             # Lyon's average urban speed is in the low twenties once lights count
ARTERIAL_KMH = (45.0, 80.0)
FAST_KMH = (95.0, 125.0)             # ring-road stretches: where overspeed alarms come from
FAST_MIN_RUN_M = 1_500.0
FAST_CHANCE = 0.08
SEGMENT_SPEED_JITTER = 0.08
LIGHT_AT_CROSSING_CHANCE = 0.10      # a red light at an intersection passed straight through
LIGHT_AT_TURN_CHANCE = 0.25
SHORT_STOP_S = (20, 180)
STAIRCASE_CHANCE = 0.5

IDLING_PARKING_CHANCE = 0.25         # engine left running at a stop
IDLING_PARKING_S = (PARKING_MIN_S, 45 * 60)
ENGINE_OFF_PARKING_S = (PARKING_MIN_S, 3 * 3600)
WORKDAY_S = (int(7.5 * 3600), 10 * 3600)   # first departure to last arrival, when trips allow it
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


@dataclass(frozen=True)
class TripTimes:
    start_s: int
    end_s: int
    length_m: float
    max_speed_kmh: float
    short_stops: list[tuple[int, int, float, float]]   # (start_s, end_s, x, y)
    start_xy: tuple[float, float]
    end_xy: tuple[float, float]


@dataclass(frozen=True)
class Timeline:
    """A day as a time-polyline. Segment j runs from knot j to knot j+1; speed 0 = stationary."""

    t: np.ndarray            # knot times, seconds since 00:00, strictly increasing, 0 .. 86400
    x: np.ndarray
    y: np.ndarray
    s: np.ndarray            # cumulative distance driven since 00:00, metres
    seg_speed: np.ndarray    # km/h
    seg_bearing: np.ndarray  # deg; stationary segments keep the last heading
    trips: list[TripTimes]
    parkings: list[tuple[int, int, bool]]   # between trips: (start_s, end_s, ignition_on)
    home_xy: tuple[float, float]

    def distance_at(self, t_s: float) -> float:
        return float(np.interp(t_s, self.t, self.s))


@dataclass(frozen=True)
class DayContext:
    """Everything about one device-day that the generator takes from the world."""

    seed: int
    grid: StreetGrid
    device: Device
    heartbeat_s: int
    day: date
    plans: DayPlans          # one row: this day
    odometer_start_km: float
    odometer_end_km: float
    next_departure: datetime # end of the evening parking

    @property
    def ordinal(self) -> int:
        return self.day.toordinal()


# --------------------------------------------------------------------------- timeline


def build_timeline(ctx: DayContext) -> Timeline:
    """The day's motion: stationary at home, trips and parkings, stationary at home again."""
    g = rng.generator(ctx.seed, ctx.device.index, ctx.ordinal, "timeline")
    home_u = float(ctx.plans.start_u[0, 0])
    home_v = float(ctx.plans.start_v[0, 0])
    hx, hy = (float(c) for c in ctx.grid.to_xy(home_u, home_v))
    home_heading = float(rng.uniform(ctx.seed, "home-heading", ctx.device.index)[0] * 360.0)
    if ctx.plans.status[0] != STATUS_DRIVING:
        return Timeline(
            t=np.array([0, DAY_S], dtype=np.int64), x=np.array([hx, hx]), y=np.array([hy, hy]),
            s=np.zeros(2), seg_speed=np.zeros(1), seg_bearing=np.array([home_heading]),
            trips=[], parkings=[], home_xy=(hx, hy),
        )

    n = int(ctx.plans.n_trips[0])
    motions = [_trip_motion(g, ctx, k) for k in range(n)]
    departure = int(ctx.plans.first_departure_s[0])
    parkings = _parkings(g, n - 1, sum(m.duration_s for m in motions), departure)

    t_knots, xs, ys, speeds = [0], [hx], [hy], []
    trips: list[TripTimes] = []
    park_list: list[tuple[int, int, bool]] = []
    clock = departure
    for k, m in enumerate(motions):
        # stationary segment up to the departure (home in the morning, a parking later)
        t_knots.append(clock)
        xs.append(m.x[0])
        ys.append(m.y[0])
        speeds.append(0.0)
        start = clock
        t_knots.extend((clock + m.t[1:]).tolist())
        xs.extend(m.x[1:].tolist())
        ys.extend(m.y[1:].tolist())
        speeds.extend(m.seg_speed.tolist())
        clock = start + int(m.t[-1])
        trips.append(
            TripTimes(
                start_s=start,
                end_s=clock,
                length_m=float(ctx.plans.length_m[0, k]),
                max_speed_kmh=float(m.seg_speed.max()),
                short_stops=[(start + a, start + b, x, y) for a, b, x, y in m.short_stops],
                start_xy=(float(m.x[0]), float(m.y[0])),
                end_xy=(float(m.x[-1]), float(m.y[-1])),
            )
        )
        if k < n - 1:
            ignition, duration = parkings[k]
            park_list.append((clock, clock + duration, ignition))
            clock += duration
    t_knots.append(DAY_S)
    xs.append(xs[-1])
    ys.append(ys[-1])
    speeds.append(0.0)

    t = np.array(t_knots, dtype=np.int64)
    x, y = np.array(xs), np.array(ys)
    seg_speed = np.array(speeds)
    seg_bearing = _bearings_with_hold(seg_speed, x, y, home_heading)
    s = np.concatenate([[0.0], np.cumsum(np.hypot(np.diff(x), np.diff(y)))])
    return Timeline(t=t, x=x, y=y, s=s, seg_speed=seg_speed, seg_bearing=seg_bearing,
                    trips=trips, parkings=park_list, home_xy=(hx, hy))


def _bearings_with_hold(seg_speed: np.ndarray, x: np.ndarray, y: np.ndarray, initial: float) -> np.ndarray:
    """Bearing of each moving segment; a stationary one keeps the heading the vehicle arrived with."""
    raw = bearing_deg(np.diff(x), np.diff(y))
    moving = seg_speed > 0
    idx = np.where(moving, np.arange(len(seg_speed)), -1)
    last = np.maximum.accumulate(idx)
    return np.where(last >= 0, raw[np.maximum(last, 0)], initial)


@dataclass(frozen=True)
class _Motion:
    """One trip relative to its departure: knots from t=0, per-segment speed (0 = short stop)."""

    t: np.ndarray
    x: np.ndarray
    y: np.ndarray
    seg_speed: np.ndarray
    short_stops: list[tuple[int, int, float, float]]

    @property
    def duration_s(self) -> int:
        return int(self.t[-1])


def _trip_motion(g: np.random.Generator, ctx: DayContext, k: int) -> _Motion:
    grid = ctx.grid
    corners = route_vertices(grid, ctx.plans, 0, k)
    if int(ctx.plans.route_kind[0, k]) == ROUTE_L:
        corner_out_of_town = math.hypot(*corners[1]) > ROUTE_MAX_FROM_CENTER_M
        if corner_out_of_town or g.random() < STAIRCASE_CHANCE:
            corners = _staircase(g, grid, corners, hug_far_side=corner_out_of_town)
    corners = [c for j, c in enumerate(corners) if j == 0 or c != corners[j - 1]]

    # knots in grid coordinates and whole-second times
    ku, kv, kt, speeds = [corners[0][0]], [corners[0][1]], [0], []
    short_stops: list[tuple[int, int, float, float]] = []
    clock = 0
    n_runs = len(corners) - 1
    for r in range(n_runs):
        (u0, v0), (u1, v1) = corners[r], corners[r + 1]
        along_u = abs(v1 - v0) < 1e-6          # running on a constant-v street
        if along_u:
            arterial = bool(grid.arterial_y[_street_index(grid.ys, v0)])
            cuts = _crossings(grid.xs, u0, u1)
        else:
            arterial = bool(grid.arterial_x[_street_index(grid.xs, u0)])
            cuts = _crossings(grid.ys, v0, v1)
        run_m = math.hypot(u1 - u0, v1 - v0)
        speed = _run_speed(g, arterial, run_m)
        lights = np.sort(cuts[g.random(len(cuts)) < LIGHT_AT_CROSSING_CHANCE])
        pieces = np.concatenate([[0.0], lights, [run_m]])
        stop_at_end = r < n_runs - 1 and g.random() < LIGHT_AT_TURN_CHANCE
        for p in range(len(pieces) - 1):
            seg_m = float(pieces[p + 1] - pieces[p])
            kmh = min(speed * (1.0 + SEGMENT_SPEED_JITTER * (2 * g.random() - 1)), FAST_KMH[1])
            # whole seconds, rounded up: a short piece never comes out faster than intended
            duration = max(1, math.ceil(seg_m / (kmh / 3.6)))
            f = pieces[p + 1] / run_m
            pu, pv = u0 + (u1 - u0) * f, v0 + (v1 - v0) * f
            clock += duration
            ku.append(pu)
            kv.append(pv)
            kt.append(clock)
            speeds.append(seg_m / duration * 3.6)
            is_last_piece = p == len(pieces) - 2
            if not is_last_piece or stop_at_end:
                # mostly a light cycle or less, now and then a long wait or a quick drop-off
                wait = SHORT_STOP_S[0] + int((SHORT_STOP_S[1] - SHORT_STOP_S[0]) * g.random() ** 2)
                short_stops.append((clock, clock + wait, pu, pv))
                clock += wait
                ku.append(pu)
                kv.append(pv)
                kt.append(clock)
                speeds.append(0.0)
    x, y = grid.to_xy(np.array(ku), np.array(kv))
    seg_speed = np.array(speeds)
    sx, sy = grid.to_xy(np.array([p[2] for p in short_stops]), np.array([p[3] for p in short_stops]))
    stops_xy = [(a, b, float(px), float(py)) for (a, b, _, _), px, py in zip(short_stops, sx, sy)]
    return _Motion(t=np.array(kt, dtype=np.int64), x=x, y=y, seg_speed=seg_speed, short_stops=stops_xy)


def _crossings(streets: np.ndarray, start: float, end: float) -> np.ndarray:
    """Distances from `start` of the cross streets strictly between start and end."""
    lo, hi = (start, end) if start < end else (end, start)
    inside = streets[bisect.bisect_right(streets, lo + 1.0) : bisect.bisect_left(streets, hi - 1.0)]
    return np.abs(inside - start)


def _street_index(streets: np.ndarray, value: float) -> int:
    """Index of the street at `value` (the run lies on it, so the nearest is exact)."""
    i = bisect.bisect_left(streets, value)
    if i == len(streets) or (i > 0 and value - streets[i - 1] < streets[i] - value):
        return i - 1
    return i


def _staircase(
    g: np.random.Generator, grid: StreetGrid, corners: list[tuple[float, float]], hug_far_side: bool
) -> list[tuple[float, float]]:
    """Replace an L's single corner by two steps through streets inside its corridor (same length).

    With `hug_far_side` the steps are taken at the first street after the start and the last
    street before the end, so the path runs along the L's opposite side: that keeps it in town
    when the L's own corner would lie beyond the city edge.
    """
    (u0, v0), (uc, _), (u1, v1) = corners
    first_keeps_u = abs(uc - u0) < 1e-6    # first leg runs along a constant-u street
    mids_u = grid.xs[bisect.bisect_right(grid.xs, min(u0, u1) + 1.0) : bisect.bisect_left(grid.xs, max(u0, u1) - 1.0)]
    mids_v = grid.ys[bisect.bisect_right(grid.ys, min(v0, v1) + 1.0) : bisect.bisect_left(grid.ys, max(v0, v1) - 1.0)]
    if len(mids_u) == 0 or len(mids_v) == 0:
        return corners
    if hug_far_side:
        # leave the first leg at the first crossing, join the last leg at the last one
        um = float(mids_u[-1] if u1 > u0 else mids_u[0]) if first_keeps_u else float(mids_u[0] if u1 > u0 else mids_u[-1])
        vm = float(mids_v[0] if v1 > v0 else mids_v[-1]) if first_keeps_u else float(mids_v[-1] if v1 > v0 else mids_v[0])
    else:
        um, vm = float(g.choice(mids_u)), float(g.choice(mids_v))
        if math.hypot(um, vm) > ROUTE_MAX_FROM_CENTER_M:   # the other steps lie on the L itself
            return corners
    if first_keeps_u:
        return [(u0, v0), (u0, vm), (um, vm), (um, v1), (u1, v1)]
    return [(u0, v0), (um, v0), (um, vm), (u1, vm), (u1, v1)]


def _run_speed(g: np.random.Generator, arterial: bool, run_m: float) -> float:
    if arterial:
        if run_m >= FAST_MIN_RUN_M and g.random() < FAST_CHANCE:
            return float(g.uniform(*FAST_KMH))
        return float(g.uniform(*ARTERIAL_KMH))
    return float(g.uniform(*URBAN_KMH))


def _parkings(g: np.random.Generator, n: int, driving_s: int, departure_s: int) -> list[tuple[bool, int]]:
    """(ignition_on, duration_s) of the n parkings between trips.

    Engine-off parkings (customer visits, lunch) share what a 7.5-10 h working day leaves after
    driving and idling, in random proportions, each kept within 5 min-3 h; so the day ends in the
    afternoon, and always before LATEST_ARRIVAL_S.
    """
    ignition = g.random(n) < IDLING_PARKING_CHANCE
    idle = g.integers(IDLING_PARKING_S[0], IDLING_PARKING_S[1] + 1, n)
    weights = g.uniform(0.3, 1.7, n)
    workday = int(g.integers(WORKDAY_S[0], WORKDAY_S[1] + 1))
    budget = workday - driving_s - int(idle[ignition].sum())
    off_weight = float(weights[~ignition].sum())
    off = np.clip(budget * weights / max(off_weight, 1e-9), *ENGINE_OFF_PARKING_S).astype(np.int64)
    durations = np.where(ignition, idle, off)
    available = LATEST_ARRIVAL_S - departure_s - driving_s
    if durations.sum() > available:   # only conceivable with a very long drive: squeeze evenly
        durations = np.maximum(PARKING_MIN_S, durations * available // max(int(durations.sum()), 1))
    return [(bool(a), int(b)) for a, b in zip(ignition, durations)]


# --------------------------------------------------------------------------- the day


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
