"""The motion of one device-day: the day's plan turned into a time-polyline.

`build_timeline` turns the day's plan into knots (integer seconds, planar position, cumulative
distance) with, per segment, its speed and bearing. Segment durations are whole seconds, so every
corner is a knot on a whole second and a fix taken there lies exactly on the corner. No fixes
yet: this is what `odometer_km` needs inside a day, and what `daygen.generate_day` samples.
Deterministic from (seed, device index, day); about 1.5 ms for a driving day (CPU, 2-core dev box).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from datetime import date, datetime

import numpy as np

from . import rng
from .entities import PARKING_MIN_S, Device
from .geo import StreetGrid, bearing_deg
from .plan import ROUTE_L, ROUTE_MAX_FROM_CENTER_M, STATUS_DRIVING, DayPlans, route_vertices

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
