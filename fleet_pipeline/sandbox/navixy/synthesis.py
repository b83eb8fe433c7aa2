"""World truth as Navixy rows: tracker ids, tracker objects, states, track points, events, sensors.

Everything here turns what the World says happened into what Navixy would answer about it; the
endpoints choose which rows a call gets (see SPEC.md, "Entities" and "Methods").
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from fleet_pipeline.sandbox.navixy.protocol import (
    LOCAL_FORMAT,
    USER_TIME_ZONE,
    drop_nulls,
    epoch,
    fmt,
    utc_days,
)

if TYPE_CHECKING:
    from fleet_pipeline.sandbox.world import Device, Trip, World


PLATFORM = "navixy"
TRACKER_ID_BASE = 100_000
SOURCE_ID_BASE = 200_000
GROUP_ID_BASE = 1_000
USER_ID = 70_001

BLOCKED_SHARE = 0.03
ACTIVE_WITHIN = timedelta(minutes=5)
IDLE_WITHIN = timedelta(minutes=60)
MOVING_KMH = 1.0
TRACK_ID_SHIFT = 65_536
EVENT_ID_SHIFT = 2 ** 20
POINT_LIMIT_RANGE = (2, 3000)
FUEL_TANK_L = 60.0
FUEL_RESERVE_L = 8.0
FUEL_L_PER_KM = 0.075

_MODEL_CODES = {"FMB920": "telfmb920", "FMC130": "telfmc130", "FMB140": "telfmb140",
                "AOVX-M1": "aovxm1", "AOVX-C2": "aovxc2"}
_TARIFF_IDS = {"teltonika": 3_001, "aovx": 3_002}
CAN_MODELS = frozenset({"FMC130", "FMB140"})
OBD_MODELS = frozenset({"AOVX-C2"})
_NETWORKS = ("Orange F", "SFR", "Bouygues Telecom", "Free Mobile")
_STREETS = ("Rue de la Republique", "Avenue Jean Jaures", "Cours Lafayette", "Rue Garibaldi",
            "Boulevard des Belges", "Quai Claude Bernard", "Rue Paul Bert", "Avenue Berthelot",
            "Rue Marius Berliet", "Cours Gambetta")

# World alarm kind -> (Navixy event name, id kind code, message text)
_ALARM_EVENTS = {
    "overspeed": ("speedup", 1, "Speed limit exceeded"),
    "geofence_in": ("inzone", 2, "Entered zone"),
    "geofence_out": ("outzone", 3, "Left zone"),
    "sos": ("sos", 4, "SOS button pressed"),
    "power_cut": ("battery_off", 5, "External power disconnected"),
    "low_battery": ("lowpower", 6, "Low battery"),
    "vibration": ("vibration_start", 7, "Vibration detected"),
}
_IGNITION_ON = ("input_change", 8, "Ignition on")
_IGNITION_OFF = ("input_change", 9, "Ignition off")
_TRACK_START = ("track_start", 10, "Movement started")
_TRACK_END = ("track_end", 11, "Parking started")
RULE_ID_BASE = 7_000


# -- identifiers -----------------------------------------------------------------------------
def tracker_id(device: Device) -> int:
    """The Navixy tracker id (object_id) of a World device."""
    return TRACKER_ID_BASE + device.index


def track_id(device: Device, trip: Trip) -> int:
    """The id `track/list` gives a World trip (unique, below 2**53 for JavaScript clients)."""
    return epoch(trip.start) * TRACK_ID_SHIFT + device.index


def default_blocked_tracker_ids(world: World) -> set[int]:
    """About 3 % of the navixy trackers (at least one), picked by a seeded hash among those installed
    before the week (a tracker blocked for its bill is not this week's install, which some days
    would not be listed yet)."""
    devices = sorted((d for d in world.devices_on(PLATFORM) if d.activation_date < world.anchor),
                     key=lambda d: hashlib.blake2b(f"{world.seed}:blocked:{d.index}".encode(),
                                                   digest_size=8).digest())
    count = max(1, round(BLOCKED_SHARE * len(devices))) if devices else 0
    return {tracker_id(d) for d in devices[:count]}


def default_deleted_tracker_ids(world: World) -> set[int]:
    """Two ids just past the World: trackers deleted from the account long ago."""
    return {TRACKER_ID_BASE + world.n_devices + 7, TRACKER_ID_BASE + world.n_devices + 23}


@dataclass(frozen=True)
class Event:
    id: int
    time: datetime
    event: str
    code: int
    text: str
    lat: float
    lng: float
    track_id: int | None
    emergency: bool = False
    zone: str | None = None


class NavixyRows:
    """The rows that read the World, the clock and the knobs.

    A part of `NavixyApp` (app.py), whose constructor sets the World, knobs, clock and state read here.
    """

    def _tracker_object(self, d: Device) -> dict[str, Any]:
        return {
            "id": tracker_id(d), "label": d.device_name, "clone": False,
            "group_id": self._groups.get(d.account_id, 0),
            "source": {
                "id": SOURCE_ID_BASE + d.index, "device_id": d.imei,
                "model": _MODEL_CODES.get(d.model, d.model.lower().replace("-", "")),
                "blocked": tracker_id(d) in (self.knobs.blocked_tracker_ids or set()),
                "tariff_id": _TARIFF_IDS.get(d.manufacturer, 3_000), "status_listing_id": None,
                "creation_date": d.activation_date.isoformat(),
                "tariff_end_date": d.expiration_date.isoformat(), "phone": d.sim_msisdn,
            },
            "tag_bindings": [],
        }

    def _state(self, d: Device, now: datetime, iso: bool) -> dict[str, Any]:
        fix = self.world.last_fix(d.imei, now)
        source_id = SOURCE_ID_BASE + d.index
        if fix is None:
            return {"source_id": source_id, "gps": {"heading": 0, "speed": 0, "alt": 0},
                    "connection_status": "offline", "movement_status": "parked",
                    "inputs": [False, False, False], "outputs": [False, False]}
        gps_time, received = fix["gps_time"], fix["received_at"]
        acc = bool(fix["acc_on"])
        speed = float(fix["speed_kmh"])
        age = now - received
        connection = ("active" if age <= ACTIVE_WITHIN else
                      "idle" if age <= IDLE_WITHIN else "offline")
        movement = _movement(speed, acc)
        history = (self.world.day(d.imei, gps_time.date()).points
                   .filter((pl.col("gps_time") <= gps_time) & (pl.col("received_at") <= now)))
        times = history["gps_time"].to_list()
        statuses = [_movement(s, a) for s, a in zip(history["speed_kmh"].to_list(),
                                                     history["acc_on"].to_list())]
        moving_times = [t for t, s in zip(times, statuses) if s == "moving"]
        teltonika = d.manufacturer == "teltonika"
        return {
            "source_id": source_id,
            "gps": {"updated": fmt(gps_time, iso),
                    "signal_level": min(100, int(fix["satellites"]) * 100 // 12),
                    "location": {"lat": round(float(fix["lat"]), 7),
                                 "lng": round(float(fix["lng"]), 7)},
                    "heading": int(round(float(fix["direction_deg"]))) % 360,
                    "speed": int(round(speed)), "alt": int(round(float(fix["altitude_m"])))},
            "connection_status": connection,
            "movement_status": movement,
            "movement_status_update": fmt(_since(times, statuses, movement), iso),
            "ignition": acc,
            "ignition_update": fmt(_since(times, history["acc_on"].to_list(), acc), iso),
            "gsm": {"updated": fmt(received, iso),
                    "signal_level": 35 + (d.index * 7 + gps_time.minute) % 60,
                    "network_name": _NETWORKS[d.index % len(_NETWORKS)],
                    "roaming": False if teltonika else None},
            "last_update": fmt(received, iso),
            "battery_level": 100 if acc else 70 + (d.index * 13) % 30,
            "battery_update": fmt(received, iso),
            "inputs": [acc, False, False],
            "inputs_update": fmt(received, iso),
            "outputs": [False, False],
            "outputs_update": fmt(received, iso),
            "actual_track_update": fmt(moving_times[-1], iso) if moving_times else None,
        }

    def _day_points(self, d: Device, day: date, now: datetime) -> pl.DataFrame:
        """The day's fixes received by now, with `parking` = outside every trip of the day."""
        dd = self.world.day(d.imei, day)
        points = dd.points.filter(pl.col("received_at") <= now)
        if points.height == 0 or not dd.trips:
            return points.with_columns(parking=pl.lit(True))
        times = points["gps_time"].to_numpy()
        starts = np.array([t.start for t in dd.trips], dtype="datetime64[us]")
        ends = np.array([t.end for t in dd.trips], dtype="datetime64[us]")
        k = np.searchsorted(starts, times, side="right") - 1
        in_trip = (k >= 0) & (times <= ends[np.clip(k, 0, None)])
        return points.with_columns(parking=pl.Series(~in_trip))

    def _points(self, d: Device, after: datetime, until: datetime, now: datetime) -> pl.DataFrame:
        frames = [self._day_points(d, day, now).filter(
                      (pl.col("gps_time") > after) & (pl.col("gps_time") <= until))
                  for day in utc_days(after, until)]
        frames = [f for f in frames if f.height]
        if not frames:
            return self._day_points(d, after.date(), now).clear()
        return pl.concat(frames, how="vertical_relaxed")

    def _build_day_events(self, imei: str, day: date) -> list[Event]:
        d = self.world.device(imei)
        dd = self.world.day(d.imei, day)
        trips = [(t.start, t.end, track_id(d, t)) for t in dd.trips]

        def trip_at(moment: datetime) -> int | None:
            return next((tid for s, e, tid in trips if s <= moment <= e), None)

        def event(moment: datetime, kind: tuple[str, int, str], lat: float, lng: float,
                  tid: int | None, **extra: Any) -> Event:
            name, code, text = kind
            event_id = epoch(moment) * EVENT_ID_SHIFT + (d.index * 32 + code) % EVENT_ID_SHIFT
            return Event(id=event_id, time=moment, event=name, code=code, text=text, lat=lat,
                          lng=lng, track_id=tid, **extra)

        # Ignition goes on when a trip leaves a parking where the engine was off, and off when
        # such a parking starts; an idling parking (engine on) changes nothing.
        idling_ends = {s.end for s in dd.stops if s.kind == "parking" and s.ignition_on}
        out: list[Event] = []
        for trip in dd.trips:
            tid = track_id(d, trip)
            if trip.start not in idling_ends:
                out.append(event(trip.start, _IGNITION_ON, trip.start_lat, trip.start_lng, tid))
            out.append(event(trip.start, _TRACK_START, trip.start_lat, trip.start_lng, tid))
            out.append(event(trip.end, _TRACK_END, trip.end_lat, trip.end_lng, tid))
        for stop in dd.stops:
            if stop.kind == "parking" and not stop.ignition_on:
                out.append(event(stop.start, _IGNITION_OFF, stop.lat, stop.lng,
                                 trip_at(stop.start)))
        for alarm in dd.alarms:
            name, code, text = _ALARM_EVENTS[alarm.kind]
            if alarm.kind == "overspeed":
                text = f"{text}: {round(alarm.speed_kmh)} km/h"
            elif alarm.geofence_id is not None:
                text = f"{text} {alarm.geofence_id}"
            out.append(event(alarm.time, (name, code, text), alarm.lat, alarm.lng,
                             trip_at(alarm.time), emergency=alarm.kind == "sos",
                             zone=alarm.geofence_id))
        return out

    def _event_row(self, e: Event, d: Device, add_label: bool, iso: bool) -> dict[str, Any]:
        teltonika = d.manufacturer == "teltonika"
        return {
            "id": e.id, "type": "tracker", "is_read": False,
            "message": f"{d.device_name}: {e.text}" if add_label else e.text,
            "time": fmt(e.time, iso), "event": e.event, "tracker_id": tracker_id(d),
            "rule_id": RULE_ID_BASE + (8 if e.event == "input_change" else e.code),
            "track_id": e.track_id,
            "location": {"lat": round(e.lat, 7), "lng": round(e.lng, 7),
                         "precision": 10 if teltonika else None},
            "address": street_address(e.lat, e.lng),
            "extra": {"tracker_label": d.device_name, "emergency": e.emergency,
                      "last_known_location": False, "zone_label": e.zone,
                      "task_id": None, "parent_task_id": None},
        }


def _since(times: list[datetime], values: list[Any], current: Any) -> datetime | None:
    """When the trailing run of `current` in `values` began (None if there are no points)."""
    if not times:
        return None
    for i in range(len(values) - 1, -1, -1):
        if values[i] != current:
            return times[i + 1] if i + 1 < len(times) else times[-1]
    return times[0]


def _movement(speed_kmh: float, acc_on: bool) -> str:
    if speed_kmh >= MOVING_KMH:
        return "moving"
    return "stopped" if acc_on else "parked"


# -- track points ----------------------------------------------------------------------------
def douglas_peucker(frame: pl.DataFrame, tolerance_m: float, point_limit: int | None) -> np.ndarray:
    """Indices kept by Douglas-Peucker (distance to segment, metres), thinned to point_limit."""
    lat = frame["lat"].to_numpy()
    lng = frame["lng"].to_numpy()
    lat0 = float(lat.mean())
    x = (lng - lng[0]) * 111_320.0 * np.cos(np.radians(lat0))
    y = (lat - lat[0]) * 110_540.0
    keep = np.zeros(len(x), dtype=bool)
    keep[0] = keep[-1] = True
    stack = [(0, len(x) - 1)]
    while stack:
        i, j = stack.pop()
        if j <= i + 1:
            continue
        xs, ys = x[i + 1:j], y[i + 1:j]
        dx, dy = x[j] - x[i], y[j] - y[i]
        length2 = dx * dx + dy * dy
        if length2 == 0.0:
            dist = np.hypot(xs - x[i], ys - y[i])
        else:
            t = np.clip(((xs - x[i]) * dx + (ys - y[i]) * dy) / length2, 0.0, 1.0)
            dist = np.hypot(xs - (x[i] + t * dx), ys - (y[i] + t * dy))
        k = int(np.argmax(dist))
        if dist[k] > tolerance_m:
            m = i + 1 + k
            keep[m] = True
            stack.append((i, m))
            stack.append((m, j))
    indices = np.flatnonzero(keep)
    if point_limit is not None and len(indices) > point_limit:
        picks = np.unique(np.linspace(0, len(indices) - 1, point_limit).round().astype(int))
        indices = indices[picks]
    return indices


def point_rows(frame: pl.DataFrame, indices: np.ndarray, d: Device,
                iso: bool) -> list[dict[str, Any]]:
    if len(indices) == 0:
        return []
    chosen = frame[indices.tolist()]
    zoned = pl.col("gps_time").dt.replace_time_zone("UTC").dt.convert_time_zone(USER_TIME_ZONE)
    pattern = "%Y-%m-%dT%H:%M:%S%:z" if iso else LOCAL_FORMAT
    get_time = chosen.select(zoned.dt.strftime(pattern))["gps_time"].to_list()
    odometer = chosen["odometer_km"].to_list()
    teltonika = d.manufacturer == "teltonika"
    rows = []
    for n, row in enumerate(chosen.iter_rows(named=True)):
        satellites = int(row["satellites"])
        rows.append({
            "lat": round(float(row["lat"]), 7), "lng": round(float(row["lng"]), 7),
            "alt": int(round(float(row["altitude_m"]))), "satellites": satellites,
            "mileage": round(odometer[n] - odometer[n - 1], 3) if n else 0.0,
            "get_time": get_time[n], "address": "",
            "heading": int(round(float(row["direction_deg"]))) % 360,
            "speed": int(round(float(row["speed_kmh"]))),
            "precision": gps_precision(satellites) if teltonika else None,
            "gsm_lbs": False,
            "parking": True if row["parking"] else None,
            "buffered": bool(row["late"]) if teltonika else None,
            "hdop": _hdop(satellites),
        })
    return [drop_nulls(r) for r in rows]


def track_bounds(points: pl.DataFrame) -> dict[str, Any] | None:
    if points.height == 0:
        return None
    return {"nw": {"lat": round(float(points["lat"].max()), 7),
                   "lng": round(float(points["lng"].min()), 7)},
            "se": {"lat": round(float(points["lat"].min()), 7),
                   "lng": round(float(points["lng"].max()), 7)}}


def _hdop(satellites: int) -> float:
    return 99.0 if satellites <= 0 else round(max(0.6, 12.0 / satellites), 1)


def gps_precision(satellites: int) -> int:
    return max(1, int(round(_hdop(satellites) * 4)))


def street_address(lat: float, lng: float) -> str:
    """A stable made-up street address (the sandbox has no geocoder)."""
    h = int.from_bytes(hashlib.blake2b(f"{lat:.4f},{lng:.4f}".encode(), digest_size=4).digest(),
                       "big")
    return f"{h % 180 + 1} {_STREETS[h % len(_STREETS)]}, 6900{h % 9 + 1} Lyon, France"


# -- sensors ---------------------------------------------------------------------------------
def sensor_row(label: str, name: str, kind: str, value: float, units: str, *,
            units_type: str = "custom") -> dict[str, Any]:
    return {"label": label, "units": units, "name": name, "type": kind, "value": float(value),
            "units_type": units_type, "converted_units_type": None, "converted_value": None}


def engine_rpm(speed_kmh: float, acc_on: bool) -> float:
    if not acc_on:
        return 0.0
    return float(round(780 + speed_kmh * 24))


def board_voltage(d: Device, acc_on: bool) -> float:
    return round((13.9 if acc_on else 12.3) + (d.index % 5) * 0.08, 2)


def fuel_litres(odometer_km: float) -> float:
    """A tank that empties at FUEL_L_PER_KM and is refilled to full at the reserve."""
    usable = FUEL_TANK_L - FUEL_RESERVE_L
    return round(FUEL_TANK_L - (odometer_km * FUEL_L_PER_KM) % usable, 1)


def vehicle_vin(d: Device) -> str:
    alphabet = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"
    digest = hashlib.blake2b(f"vin:{d.imei}".encode(), digest_size=14).digest()
    return "VF1" + "".join(alphabet[b % len(alphabet)] for b in digest)
