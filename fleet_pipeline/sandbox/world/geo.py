"""Geometry of the sandbox city: a local metric frame, its projection to WGS84, and the street grid.

The world is built in a planar frame in metres (x east, y north) centred on the city centre. The
projection uses the mean Earth radius and the cosine of each point's own latitude, so that the
haversine distance any consumer computes (SQL, tests) reads a straight street length back to
within a few parts per million. (The textbook 111,320 m per degree with a fixed cos(lat0) is the
equatorial radius: haversine with the mean radius would read every distance 0.1 % short, and east-
west distances 0.2 % off at the edge of a 12 km city.)

Streets form a grid, rotated by a seeded angle, with irregular block lengths of 250-400 m; every
stop position lies on a street, so routes between stops are exact grid paths whose length is known
without drawing them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import rng

EARTH_RADIUS_M = 6_371_008.8   # IUGG mean radius, the usual haversine radius
BLOCK_MIN_M = 250.0
BLOCK_MAX_M = 400.0
GRID_HALF_SPAN_M = 15_000.0    # streets reach beyond the 12 km city disk so detours stay on the grid


def to_latlng(x: np.ndarray, y: np.ndarray, lat0: float, lng0: float) -> tuple[np.ndarray, np.ndarray]:
    """Planar metres -> (lat, lng) degrees."""
    lat = lat0 + np.degrees(np.asarray(y, dtype=np.float64) / EARTH_RADIUS_M)
    lng = lng0 + np.degrees(np.asarray(x, dtype=np.float64) / (EARTH_RADIUS_M * np.cos(np.radians(lat))))
    return lat, lng


def from_latlng(lat: np.ndarray, lng: np.ndarray, lat0: float, lng0: float) -> tuple[np.ndarray, np.ndarray]:
    """(lat, lng) degrees -> planar metres; exact inverse of `to_latlng`."""
    lat = np.asarray(lat, dtype=np.float64)
    y = np.radians(lat - lat0) * EARTH_RADIUS_M
    x = np.radians(np.asarray(lng, dtype=np.float64) - lng0) * EARTH_RADIUS_M * np.cos(np.radians(lat))
    return x, y


def haversine_m(lat1: np.ndarray, lng1: np.ndarray, lat2: np.ndarray, lng2: np.ndarray) -> np.ndarray:
    """Great-circle distance in metres (vectorised)."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp = p2 - p1
    dl = np.radians(np.asarray(lng2) - np.asarray(lng1))
    a = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def bearing_deg(dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """Compass bearing (0 = north, clockwise) of a planar displacement."""
    return np.mod(np.degrees(np.arctan2(dx, dy)), 360.0)


@dataclass(frozen=True)
class StreetGrid:
    """A rotated street grid in grid coordinates (u along one street family, v along the other).

    `xs` are the u-coordinates of the "vertical" streets (constant u), `ys` the v-coordinates of
    the "horizontal" ones. A point on a vertical street has axis 0, on a horizontal street axis 1.
    """

    angle_rad: float
    xs: np.ndarray
    ys: np.ndarray
    arterial_x: np.ndarray   # bool per vertical street: a boulevard (faster traffic)
    arterial_y: np.ndarray

    @classmethod
    def build(cls, seed: int) -> StreetGrid:
        angle = math.radians(-14.0 + 28.0 * float(rng.uniform(seed, "grid-angle")[0]))
        return cls(
            angle_rad=angle,
            xs=_street_positions(seed, "grid-x"),
            ys=_street_positions(seed, "grid-y"),
            arterial_x=_arterials(seed, "grid-x-arterial", "grid-x"),
            arterial_y=_arterials(seed, "grid-y-arterial", "grid-y"),
        )

    def to_xy(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Grid coordinates -> east/north metres."""
        c, s = math.cos(self.angle_rad), math.sin(self.angle_rad)
        u = np.asarray(u, dtype=np.float64)
        v = np.asarray(v, dtype=np.float64)
        return u * c - v * s, u * s + v * c

    def from_xy(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c, s = math.cos(self.angle_rad), math.sin(self.angle_rad)
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        return x * c + y * s, -x * s + y * c

    def snap(self, u: np.ndarray, v: np.ndarray, axis: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Move each point onto the nearest street of the requested family.

        Returns (u, v, street index). Axis 0 snaps u to a vertical street, axis 1 snaps v.
        """
        iu = nearest_index(self.xs, u)
        iv = nearest_index(self.ys, v)
        on_x = np.asarray(axis) == 0
        u2 = np.where(on_x, self.xs[iu], u)
        v2 = np.where(on_x, v, self.ys[iv])
        return u2, v2, np.where(on_x, iu, iv)


def nearest_index(streets: np.ndarray, value: np.ndarray) -> np.ndarray:
    """Index of the street closest to each value (streets sorted ascending)."""
    value = np.asarray(value, dtype=np.float64)
    i = np.minimum(np.maximum(np.searchsorted(streets, value), 1), len(streets) - 1)
    left_closer = (value - streets[i - 1]) <= (streets[i] - value)
    return np.where(left_closer, i - 1, i)


def _street_positions(seed: int, tag: str) -> np.ndarray:
    n = int(2 * GRID_HALF_SPAN_M / BLOCK_MIN_M) + 2
    gaps = BLOCK_MIN_M + (BLOCK_MAX_M - BLOCK_MIN_M) * rng.uniform(seed, tag, np.arange(n))
    positions = np.concatenate([[0.0], np.cumsum(gaps)])
    positions -= GRID_HALF_SPAN_M + float(rng.uniform(seed, tag, "offset")[0]) * BLOCK_MAX_M
    return positions[(positions >= -GRID_HALF_SPAN_M) & (positions <= GRID_HALF_SPAN_M)]


def _arterials(seed: int, tag: str, positions_tag: str) -> np.ndarray:
    n = len(_street_positions(seed, positions_tag))
    return rng.uniform(seed, tag, np.arange(n)) < 0.2
