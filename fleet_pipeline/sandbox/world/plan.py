"""Cheap day plans: what a device does on each day, without drawing a single GPS fix.

For any array of days this computes, vectorised with numpy over the days, each day's status,
first departure time, number of trips, every destination and every route's exact length on the
street grid. That is all the odometer needs, so `odometer_km` over three years of days costs a few
milliseconds, and the detailed generator (`daygen`) reads the very same plan for one day, so the
kilometres it draws are the kilometres the odometer counted.

Destinations are customers 2-8 km from the vehicle's home, within 11 km of the centre. Routes are
exact grid paths: every stop lies on a street, so the shortest path between two stops is an L (or
a staircase, same length) or, when both lie on parallel streets, a Z through one crossing street.
Extra length comes from realistic choices, never from U-turns: crossing on a street outside the
direct corridor, or running one or two blocks past the destination's street and coming back on a
parallel one (a detour of exactly twice that offset). So a trip's length follows from the plan's
discrete choices and is known in closed form; it is not drawn first and then fitted, which on a
street grid could only be done exactly with off-grid wiggles.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

from . import rng
from .geo import StreetGrid

STATUS_INACTIVE, STATUS_OFFLINE, STATUS_PARKED, STATUS_DRIVING = 0, 1, 2, 3
MAX_TRIPS = 7
MIN_TRIPS = 2

OFFLINE_BLOCK_DAYS = 10
OFFLINE_CHANCE = 0.08          # per 10-day block, a spell of 1-4 days with the device switched off
PARKED_CHANCE_WEEKDAY = 0.05
PARKED_CHANCE_WEEKEND = 0.40
FIRST_DEPARTURE_S = (4 * 3600 + 1800, 7 * 3600 + 1800)   # 04:30-07:30 UTC (06:30-09:30 in Lyon summer)

DESTINATION_FROM_HOME_M = (2_000.0, 8_000.0)   # customers around the home/depot
MIN_HOP_M = 1_500.0
# Stops stay within 11 km of the centre, route corners too (plus at most one block where a
# staircase passes near the far corner): every fix lies inside the 12 km city.
DESTINATION_MAX_FROM_CENTER_M = 11_000.0
ROUTE_MAX_FROM_CENTER_M = 11_000.0
DETOUR_CHANCE = 0.2
DETOUR_TWO_BLOCKS_CHANCE = 0.35

# Route kinds (how daygen draws the path).
ROUTE_STRAIGHT = 0   # both ends on the same street
ROUTE_Z = 1          # both ends on parallel streets, joined by one crossing street
ROUTE_L = 2          # ends on perpendicular streets: one corner (daygen may staircase it)
ROUTE_L_DETOUR = 3   # an L that overshoots the destination's street and comes back on a parallel one


@dataclass(frozen=True)
class DevicePlanSpec:
    """What the planner needs to know about one device."""

    index: int
    activation_ordinal: int
    home_u: float
    home_v: float
    home_axis: int
    home_street: int


@dataclass(frozen=True)
class DayPlans:
    """Plans for an array of days. Per-trip arrays have shape (n_days, MAX_TRIPS).

    Trip slot k of a day is real when status == DRIVING and k < n_trips (other slots hold zeros,
    except slot 0's start, which is home on every day). Start and end points are
    in grid coordinates with the street family (axis) and street index they lie on. Per route:
    `cross` is the crossing street (Z) or the overshoot street (L with detour), `pivot` the street
    on which an L-detour comes back.
    """

    ordinals: np.ndarray
    status: np.ndarray
    first_departure_s: np.ndarray
    n_trips: np.ndarray
    start_u: np.ndarray
    start_v: np.ndarray
    start_axis: np.ndarray
    start_street: np.ndarray
    end_u: np.ndarray
    end_v: np.ndarray
    end_axis: np.ndarray
    end_street: np.ndarray
    route_kind: np.ndarray
    cross: np.ndarray
    pivot: np.ndarray
    length_m: np.ndarray     # 0 for slots that are not real trips
    day_m: np.ndarray        # sum of length_m per day

    def row(self, j: int) -> DayPlans:
        """The plans of day j alone (array views, no copy)."""
        return DayPlans(**{f.name: getattr(self, f.name)[j : j + 1] for f in fields(self)})


# Per-(day, trip slot) draws, hashed in one vectorised call: index of each purpose in that block.
_SLOT_DRAWS = ("destination-r", "destination-theta", "stop-street", "route-detour", "route-blocks", "route-side", "route-pick")
_DAY_DRAWS = ("first-departure", "trip-count", "parked")
_SPELL_DRAWS = ("offline", "offline-start", "offline-length")


def plan_days(seed: int, grid: StreetGrid, dev: DevicePlanSpec, ordinals: np.ndarray) -> DayPlans:
    """Vectorised plans of one device for the given day ordinals (any order, any subset)."""
    o = np.asarray(ordinals, dtype=np.int64)
    n = len(o)
    i = dev.index
    day_u = rng.uniform(seed, "day-plan", i, o[:, None], np.arange(len(_DAY_DRAWS))[None, :])
    status = _status(seed, i, dev.activation_ordinal, o, day_u[:, 2])
    departure = FIRST_DEPARTURE_S[0] + (day_u[:, 0] * (FIRST_DEPARTURE_S[1] - FIRST_DEPARTURE_S[0] + 1)).astype(np.int64)
    n_trips = MIN_TRIPS + (day_u[:, 1] * (MAX_TRIPS - MIN_TRIPS + 1)).astype(np.int64)
    n_trips = np.where(status == STATUS_DRIVING, n_trips, 0)
    slot_u = rng.uniform(
        seed, "trip-plan", i, o[:, None, None], np.arange(MAX_TRIPS)[None, :, None], np.arange(len(_SLOT_DRAWS))[None, None, :]
    )

    shape = (n, MAX_TRIPS)
    out = {name: np.zeros(shape, dtype=np.float64) for name in ("start_u", "start_v", "end_u", "end_v", "length_m")}
    for name in ("start_axis", "start_street", "end_axis", "end_street", "route_kind", "cross", "pivot"):
        out[name] = np.zeros(shape, dtype=np.int64)

    hu, hv, ha, hs = dev.home_u, dev.home_v, dev.home_axis, dev.home_street
    pu, pv = np.full(n, hu), np.full(n, hv)
    pa, ps = np.full(n, ha, dtype=np.int64), np.full(n, hs, dtype=np.int64)
    # every day starts at home, trips or not (daygen reads the home from here)
    out["start_u"][:, 0], out["start_v"][:, 0] = pu, pv
    out["start_axis"][:, 0], out["start_street"][:, 0] = pa, ps
    for k in range(MAX_TRIPS):
        # only the days that have a k-th trip: half the work of computing every slot everywhere
        rows = np.flatnonzero(n_trips > k)
        if len(rows) == 0:
            break
        draws = slot_u[rows, k, :]
        p = (pu[rows], pv[rows], pa[rows], ps[rows])
        du, dv, da, ds = _destination(grid, draws, p[0], p[1], hu, hv)
        last = k == n_trips[rows] - 1
        du, dv = np.where(last, hu, du), np.where(last, hv, dv)
        da, ds = np.where(last, ha, da), np.where(last, hs, ds)
        kind, cross, pivot, length = route_plan(grid, draws, *p, du, dv, da, ds)
        for name, value in (
            ("start_u", p[0]), ("start_v", p[1]), ("start_axis", p[2]), ("start_street", p[3]),
            ("end_u", du), ("end_v", dv), ("end_axis", da), ("end_street", ds),
            ("route_kind", kind), ("cross", cross), ("pivot", pivot), ("length_m", length),
        ):
            out[name][rows, k] = value
        pu[rows], pv[rows], pa[rows], ps[rows] = du, dv, da, ds
    return DayPlans(
        ordinals=o,
        status=status,
        first_departure_s=departure,
        n_trips=n_trips,
        day_m=out["length_m"].sum(axis=1),
        **out,
    )


def day_statuses(seed: int, index: int, activation_ordinal: int, ordinals: np.ndarray) -> np.ndarray:
    """Only the statuses of `plan_days` (same draws, same values) at a fraction of its cost.

    Firmware campaigns need to know on which days a device is online, not where it drives.
    """
    o = np.asarray(ordinals, dtype=np.int64)
    u_parked = rng.uniform(seed, "day-plan", index, o, _DAY_DRAWS.index("parked"))
    return _status(seed, index, activation_ordinal, o, u_parked)


def _status(seed: int, i: int, activation_ordinal: int, o: np.ndarray, u_parked: np.ndarray) -> np.ndarray:
    """inactive before activation; offline spells; parked days (mostly weekends); else driving."""
    block = o // OFFLINE_BLOCK_DAYS
    # A spell starts in a block and lasts at most 4 days, so it can spill into the next block only.
    blocks = block[:, None] - np.arange(2)[None, :]
    u = rng.uniform(seed, "offline-spell", i, blocks[:, :, None], np.arange(len(_SPELL_DRAWS))[None, None, :])
    start = blocks * OFFLINE_BLOCK_DAYS + (u[:, :, 1] * OFFLINE_BLOCK_DAYS).astype(np.int64)
    length = 1 + (u[:, :, 2] * 4).astype(np.int64)
    in_spell = (u[:, :, 0] < OFFLINE_CHANCE) & (o[:, None] >= start) & (o[:, None] < start + length)
    offline = in_spell.any(axis=1)
    weekend = ((o - 1) % 7) >= 5   # ordinal 1 (0001-01-01) is a Monday
    parked = u_parked < np.where(weekend, PARKED_CHANCE_WEEKEND, PARKED_CHANCE_WEEKDAY)
    status = np.where(offline, STATUS_OFFLINE, np.where(parked, STATUS_PARKED, STATUS_DRIVING))
    return np.where(o < activation_ordinal, STATUS_INACTIVE, status).astype(np.int8)


def _destination(grid, draws, pu, pv, hu, hv):
    """Next stop: a customer 2-8 km from home, not next door to the current stop, on a street."""
    r = DESTINATION_FROM_HOME_M[0] + (DESTINATION_FROM_HOME_M[1] - DESTINATION_FROM_HOME_M[0]) * np.sqrt(draws[:, 0])
    theta = 2 * math.pi * draws[:, 1]
    ru, rv = hu + r * np.cos(theta), hv + r * np.sin(theta)
    # Too close to where the vehicle stands: take the opposite side of home instead (at least
    # 2 * 2 km - 1.5 km away then).
    near = np.hypot(ru - pu, rv - pv) < MIN_HOP_M
    ru, rv = np.where(near, 2 * hu - ru, ru), np.where(near, 2 * hv - rv, rv)
    f = np.minimum(1.0, DESTINATION_MAX_FROM_CENTER_M / np.maximum(np.hypot(ru, rv), 1e-9))
    ru, rv = ru * f, rv * f
    # Pulled back inside the city right next to the current stop (both on the city's edge): go
    # 2 km to the other side of home instead, which is always inside (homes are within 9 km).
    near = np.hypot(ru - pu, rv - pv) < MIN_HOP_M
    away_u, away_v = hu - pu, hv - pv
    norm = np.hypot(away_u, away_v)
    at_home = norm < 1.0
    away_u = np.where(at_home, np.cos(theta), away_u / np.maximum(norm, 1e-9))
    away_v = np.where(at_home, np.sin(theta), away_v / np.maximum(norm, 1e-9))
    ru = np.where(near, hu + DESTINATION_FROM_HOME_M[0] * away_u, ru)
    rv = np.where(near, hv + DESTINATION_FROM_HOME_M[0] * away_v, rv)
    axis = (draws[:, 2] < 0.5).astype(np.int64)
    du, dv, ds = grid.snap(ru, rv, axis)
    return du, dv, axis, ds


def route_plan(grid, draws, pu, pv, pa, ps, du, dv, da, ds):
    """(kind, cross, pivot, length_m) of the route from P to D, vectorised.

    Works in coordinates oriented on P's street: `a` across P's street family (constant along
    P's street), `b` along it. Elements with P on a constant-v street use the swapped orientation.
    """
    n = len(pu)
    kind, cross, pivot = (np.zeros(n, dtype=np.int64) for _ in range(3))
    length = np.zeros(n)
    same_family = da == pa
    for family, (sa, sb) in enumerate(((grid.xs, grid.ys), (grid.ys, grid.xs))):
        r = np.flatnonzero(pa == family)
        if len(r) == 0:
            continue
        a_p, b_p, a_d, b_d = (pu[r], pv[r], du[r], dv[r]) if family == 0 else (pv[r], pu[r], dv[r], du[r])
        kind[r], cross[r], pivot[r], length[r] = _route_oriented(
            sa, sb, a_p, b_p, ps[r], a_d, b_d, same_family[r], ds[r], *(draws[r, j] for j in (3, 4, 5, 6))
        )
    return kind, cross, pivot, length


def _clip(values: np.ndarray, n: int) -> np.ndarray:
    """Clamp indices to [0, n-1] (np.clip is several times slower on small arrays)."""
    return np.minimum(np.maximum(values, 0), n - 1)


def _in_town(a_1: np.ndarray, a_2: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Both corners (a_1, b) and (a_2, b) lie within ROUTE_MAX_FROM_CENTER_M (grid origin = centre)."""
    limit = ROUTE_MAX_FROM_CENTER_M**2
    return (a_1**2 + b**2 <= limit) & (a_2**2 + b**2 <= limit)


def _route_oriented(sa, sb, a_p, b_p, s_p, a_d, b_d, same_family, s_d, u_detour, u_blocks, u_side, u_pick):
    """Route where P lies on street sa[s_p] (a_p == sa[s_p]); D on an sa street or on an sb street."""
    nb = len(sb)
    detour = u_detour < DETOUR_CHANCE
    blocks = 1 + ((u_blocks < DETOUR_TWO_BLOCKS_CHANCE) & detour).astype(np.int64)

    # Z: both ends on parallel streets, joined by crossing street sb[c]. A crossing inside the
    # corridor keeps the shortest length; its corners stay in town if it is the one nearest the
    # centre (its |b| is at most the ends' |b|), so that one is used when a random one would not.
    lo, hi = np.minimum(b_p, b_d), np.maximum(b_p, b_d)
    j_lo = np.searchsorted(sb, lo, side="left")
    j_hi = np.searchsorted(sb, hi, side="right")
    inside = j_hi - j_lo
    below_gap = lo - sb[_clip(j_lo - 1, nb)]
    above_gap = sb[_clip(j_hi, nb)] - hi
    go_below = np.where(detour, u_side < 0.5, below_gap <= above_gap)
    c_out = _clip(np.where(go_below, j_lo - blocks, j_hi - 1 + blocks), nb)
    c_random = _clip(j_lo + (u_pick * np.maximum(inside, 1)).astype(np.int64), nb)
    centre_street = int(np.argmin(np.abs(sb)))
    c_central = _clip(np.minimum(np.maximum(centre_street, j_lo), j_hi - 1), nb)
    c_in = np.where(_in_town(a_p, a_d, sb[c_random]), c_random, c_central)
    z_detour = detour & _in_town(a_p, a_d, sb[c_out])
    c_z = np.where(z_detour | (inside == 0), c_out, c_in)
    len_z = np.abs(a_d - a_p) + np.abs(b_p - sb[c_z]) + np.abs(sb[c_z] - b_d)

    # L: D on street sb[s_d]; corner at (a_p, b_d). Detour: overshoot to sb[c_l] beyond D's street,
    # run parallel, come back on street sa[pivot] (the last street before D); only where both
    # overshoot corners stay in town.
    sign = np.where(b_d >= b_p, 1, -1)
    c_l = _clip(s_d + sign * blocks, nb)
    na = len(sa)
    up = a_d > a_p
    pivot = _clip(np.where(up, np.searchsorted(sa, a_d, side="left") - 1, np.searchsorted(sa, a_d, side="right")), na)
    pivot_ok = np.where(up, sa[pivot] > a_p, sa[pivot] < a_p)
    l_detour = detour & pivot_ok & (c_l != s_d) & _in_town(a_p, a_d, sb[c_l])
    overshoot = np.abs(sb[c_l] - b_d)
    len_l = np.abs(a_d - a_p) + np.abs(b_d - b_p) + np.where(l_detour, 2 * overshoot, 0.0)

    same_street = same_family & (s_d == s_p)
    kind = np.where(
        same_family,
        np.where(same_street, ROUTE_STRAIGHT, ROUTE_Z),
        np.where(l_detour, ROUTE_L_DETOUR, ROUTE_L),
    )
    cross = np.where(same_family, c_z, c_l)
    length = np.where(
        same_family,
        np.where(same_street, np.abs(b_d - b_p), len_z),
        len_l,
    )
    return kind, cross, pivot, length


def route_vertices(grid: StreetGrid, plans: DayPlans, row: int, k: int) -> list[tuple[float, float]]:
    """The corner points (grid u, v) of route k of plans row `row`, as the plan measured it.

    Returned in (a, b) orientation converted back to (u, v). The staircase variant of an L is
    daygen's choice (same length), not the plan's.
    """
    pa = int(plans.start_axis[row, k])
    sa, sb = (grid.xs, grid.ys) if pa == 0 else (grid.ys, grid.xs)
    pu, pv = float(plans.start_u[row, k]), float(plans.start_v[row, k])
    du, dv = float(plans.end_u[row, k]), float(plans.end_v[row, k])
    a_p, b_p, a_d, b_d = (pu, pv, du, dv) if pa == 0 else (pv, pu, dv, du)
    kind = int(plans.route_kind[row, k])
    cross = int(plans.cross[row, k])
    if kind == ROUTE_STRAIGHT:
        ab = [(a_p, b_p), (a_d, b_d)]
    elif kind == ROUTE_Z:
        c = float(sb[cross])
        ab = [(a_p, b_p), (a_p, c), (a_d, c), (a_d, b_d)]
    elif kind == ROUTE_L:
        ab = [(a_p, b_p), (a_p, b_d), (a_d, b_d)]
    else:
        c = float(sb[cross])
        piv = float(sa[int(plans.pivot[row, k])])
        ab = [(a_p, b_p), (a_p, c), (piv, c), (piv, b_d), (a_d, b_d)]
    if pa == 1:
        ab = [(b, a) for a, b in ab]
    return ab
