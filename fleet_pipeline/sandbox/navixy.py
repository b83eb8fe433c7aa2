"""Fake Navixy API v2 (white-label style, `{host}/api-v2/...`) over the World's `navixy` devices.

It speaks the protocol of `vendor-apis/navixy-official/*.md` and `navixy-tracker.md` as corrected
by `FIELD-NOTES.md`, so the Navixy client can be built and tested without a Navixy account.

Transport. Every call is `{API_PREFIX}/<resource>/<action>` (a trailing slash is accepted), by
POST with a JSON object body (recommended), POST with a form body, or GET with a query string;
query and body parameters merge (the body wins). In form and query strings, arrays are JSON
(`trackers=[100003,100008]`) or comma-separated, booleans `true`/`false`. Answers are always
JSON (`application/json`), also on 4xx/5xx: `{"success": true, ...payload}` or
`{"success": false, "status": {"code": N, "description": "..."}}`, code 7 adding
`"errors": [{"parameter": name, "error": text}]`. HTTP status per `errors.md` (400 where the table
is silent): 3, 4, 5, 7, 102, 111, 112, 201, 211, 212, 217 -> 400; 208, 221, 276 -> 403;
15 -> 429. A body that is not a JSON object (or a form) is 5; an unknown action is 111; a verb
other than GET/POST is 112; a path outside the prefix is an HTML 404 from the web server.
Null fields are omitted everywhere (a client must read a missing field as null), and some
objects carry fields the docs do not list (`hdop` on track points, `extra.zone_label` on
geofence events): clients must ignore unknown fields.

Auth. The hash comes from `Authorization: NVX <hash>` (exactly "NVX " then the hash), else the
`hash` parameter of the body, else of the query string. `user/auth` (login, password) ->
`{type: "authenticated", hash}`; wrong credentials -> 102. Session hashes are 32 lowercase hex
digits and stateless (issue time + HMAC keyed by the sandbox password), so a hash cached by one
process is accepted by any sandbox; each ends `session_lifetime_s` (knob, default 24 h, the
getting-started doc's figure) after it was issued on the sandbox clock, at `user/logout` on
this server, or once `end_first_sessions` (knob) covers it (-> 4 "User or API key not found or
session ended"). `API_KEY` is used as the hash itself and never expires; `user/logout` with it is 276. Code 3 "Wrong hash" = no hash at all, or a hash
this platform never issued (bad shape or signature); code 4 = a hash it issued that has ended.

Rate limit (the `VendorApp.throttle` hook, before auth): at most `rate_limit_per_s` (50) calls in
any sliding `rate_limit_window_s` (1 s) per hash AND per client IP -> HTTP 429, code 15; rejected
calls do not count. `force_429_next` answers the next N calls 429/15. The window runs on
`rate_clock` (default `time.monotonic`), not on the sandbox clock, so tests can freeze it.

Date-times. The user's time zone is `USER_TIME_ZONE` (Europe/Paris). Every date/time in and out
is local `yyyy-MM-dd HH:mm:ss` unless ISO mode is asked for (`iso_datetime=true` in body or
query, or header `NVX-ISO-DateTime: true`): then `yyyy-MM-dd'T'HH:mm:ss+HH:MM` with the offset of
that instant, and inputs must carry an offset (any ISO 8601 offset, `Z` included). Inputs in the
wrong format for the mode are 7. Output is faithful local time, so in the repeated hour of
2026-10-25 (02:00-02:59 happens twice) two different instants render the same local string
(00:30 UTC and 01:30 UTC are both "2026-10-25 02:30:00"); that is the real API. An ambiguous
local INPUT takes the first occurrence (fold=0, summer time, +02:00: "2026-10-25 02:30:00" is
00:30 UTC) and a nonexistent one in the 2026-03-29 gap is read with the winter offset
("02:30:00" is 01:30 UTC, the same instant as 03:30 CEST) -- both what java.time does. A client
that must not lose or misplace data in the repeated hour should use ISO mode; in local mode it
can only recover the fold from ordering (a list sorted by time whose local clock steps back by
an hour has crossed into the second occurrence). Date-only fields (`creation_date`,
`tariff_end_date` of trackers) stay `yyyy-MM-dd`.

Entities. The one user (LOGIN) owns every navixy device of the World that is activated by now:
`id = 100_000 + device.index`, `label` = device_name, `group_id` = one group per navixy account
(`tracker/group/list` -> {id, title = account name, color}), source {id = 200_000 + index,
device_id = the IMEI as a 15-digit STRING, model ("telfmb920", "telfmc130", "telfmb140",
"aovxm1", "aovxc2"), blocked, tariff_id, creation_date = activation date, tariff_end_date =
expiration date, phone = msisdn}, clone false, tag_bindings []. `blocked_tracker_ids` (default:
~3 % of the navixy trackers, chosen by a seeded hash) are listed with `source.blocked: true`
and `tracker/read` still reads them, but every data call on them is 208 (history and stats:
217). `deleted_tracker_ids` (default: two
ids just past the World) are in no list; single-tracker calls answer 201, lists 201/217 as
below. Any other unknown id is nonexistent (201 single, 217 in lists).

Methods (dates as above; `t` = tracker_id param, `T` = trackers param, int array):
* `user/auth`, `user/logout`, `user/get_info` ({paas_id, paas_settings, user_info {..., time_zone
  = USER_TIME_ZONE, measurement_system "metric", creation_date}, tariff_restrictions,
  premium_gis, features}), `user/settings/read` ({settings {time_zone, locale, ...}}).
* `tracker/list` (labels: substring filter) -> {list: [tracker]}; `tracker/read` (t) -> {value};
  `tracker/group/list` -> {list}.
* `tracker/get_states` (T <= 2000 else 7; list_blocked, allow_not_exist) -> {user_time, states
  {"<id>": state}, blocked [ids] only if list_blocked, not_exist [ids] only if allow_not_exist}.
  Without allow_not_exist a nonexistent id is 217 and a deleted one 201; without list_blocked a
  blocked one is 208 (checked in that order). `tracker/get_state` (t) -> {user_time, state}.
  State (from the last fix received by now, within 7 days): source_id, gps {updated,
  signal_level, location {lat, lng}, heading, speed, alt}, connection_status (received <= 5 min
  ago "active", <= 60 min "idle", else "offline"), movement_status ("moving" speed >= 1 km/h,
  "stopped" ignition on, else "parked") + movement_status_update (when it began, searched within
  the fix's UTC day), ignition + ignition_update, gsm {updated, signal_level, network_name,
  roaming (teltonika only)}, last_update (received time), battery_level + battery_update,
  inputs [ignition, false, false] + inputs_update, outputs [false, false] + outputs_update,
  actual_track_update (last moving fix that day). A tracker with no fix in 7 days: gps {speed 0,
  heading 0, alt 0}, connection_status "offline", movement_status "parked", no times.
* `tracker/get_last_gps_point` (t) -> {value {get_time, heading, lat, lng, satellites, speed,
  precision (teltonika only)}}; no fix in 7 days -> value omitted.
* `tracker/get_diagnostics` (t) -> {user_time, inputs [sensor], states {...}, update_time}: CAN
  sensors (can_mileage = odometer km, can_speed, can_rpm, can_engine_hours, can_coolant_t,
  can_engine_load) on FMC130/FMB140, OBD sensors (obd_rpm, obd_speed, obd_coolant_t,
  obd_control_module_voltage) on AOVX-C2, none on the others; states obd_vin and friends.
  `tracker/get_fuel` -> fuel sensors: can_fuel_litres (FMC130/FMB140), lls_level_1 litres
  (FMB920), can_fuel percent (AOVX-C2), none (AOVX-M1); the level is a deterministic saw-tooth
  of the odometer (60 l tank, 7.5 l/100 km, refilled at 8 l), so it falls as km are driven.
  `tracker/get_readings` -> board_voltage (V, higher with ignition on) and temp_sensor (°C).
  Sensor = {label, units, name, type, value, units_type} (converted_* are null -> omitted).
* `track/read` (t, from, to, track_id, simplify=true, point_limit 2..3000, filter=true,
  include_gsm_lbs) -> {limit_exceeded, list [point]}: the fixes with from < gps_time <= to
  (`from` EXCLUSIVE) received by now. filter=true (the default, as documented) drops parking
  points (fixes outside every trip); filter=false keeps them, flagged `parking: true`.
  simplify=true (default) runs Douglas-Peucker (`simplify_tolerance_m`, 25 m) over the result,
  then thins evenly to point_limit if one is given: full resolution needs simplify=false (and
  filter=false for the parking heartbeats). Point = {lat, lng, alt, satellites, mileage (km since
  the previous point of this answer, 0 for the first), get_time, address "", heading, speed,
  gsm_lbs false, parking (only when true), buffered (teltonika: uploaded late), precision
  (teltonika), hdop (undocumented)}. Window at most `max_track_span_days` (30) else 211. Points
  older than now - `storage_period_days` (400) are dropped and `limit_exceeded: true`.
* `track/list` (t, from, to, filter, split=true, cluster_single_reports, count_events,
  omit_addresses, with_points, point_limit) -> {limit_exceeded, list [track]}: the World's trips
  that START in (from, to] and have ended by now, whole (not clipped at `to`). Regular track =
  {id, start_date, start_address, max_speed, end_date, end_address, length (km), points,
  avg_speed, event_count (count_events only), type "regular", gsm_lbs false, bounds {nw, se},
  points_list (with_points only)}; split=false merges them into one "merged" track without id.
  cluster_single_reports changes nothing (the World has no single-point trips). Same 211 /
  storage rules as track/read. Track ids are `epoch(start) * 65536 + device index`.
* `history/tracker/list` (T, from, to, events, limit, ascending=true, only_emergency,
  only_unread, add_tracker_label=true, add_tracker_files) -> {list [event], limit_exceeded,
  total, total_unread}: events with from <= time <= to (both inclusive) and time <= now, sorted
  by (time, id) (reversed if ascending=false), at most `limit` (default and max 1000 -- more is
  212, less than 1 is 7); no offset: page by moving `from` to the last time seen and dropping ids
  already seen (several events share a second). Window at most `max_history_span_days` (90,
  the dealer's report.max_time_span) else 211; a nonexistent, deleted or blocked tracker is 217.
  Event = {id, type "tracker", is_read false, message ("<label>: <text>" with
  add_tracker_label), time, event, tracker_id, rule_id, track_id (inside a trip), location
  {lat, lng, precision (teltonika)}, address, extra {tracker_label, emergency,
  last_known_location false, zone_label (geofence events, undocumented)}}. Event names follow
  Navixy's rule types: overspeed -> "speedup", geofence -> "inzone"/"outzone", SOS -> "sos",
  external power cut -> "battery_off", low battery -> "lowpower", vibration ->
  "vibration_start", ignition on/off -> "input_change" (both), trip start/end ->
  "track_start"/"track_end" (an ignition-on and a track_start share their second). Ids are
  `epoch(time) * 2**20 + (index * 32 + kind) % 2**20`: unique, and ascending with time.
* `tracker/stats/mileage/read` (T <= 128 else 221, from, to, at most `max_stats_span_days` (31)
  else 211, nonexistent/deleted/blocked -> 217) -> {result {"<id>": {"yyyy-MM-dd": {mileage}}},
  limit_exceeded}: one key per LOCAL date from local(from) to local(to), km rounded to 0.01,
  = odometer(min(day end, to, now)) - odometer(max(day start, from)) on the World's odometer, so
  a trip across local midnight is split where the vehicle was at midnight. Days wholly before
  the storage period are left out and set limit_exceeded.

`corrupt_rows_next` (knob) damages the next N data rows served by tracker/list (IMEI with a
wrong check digit), track/read, get_last_gps_point, get_state(s) and history (latitude 123.456).
`garble_first_row` (knob, method -> {dotted field: value}) sets fields of the first row of the
next answer of that method to the value given (a wrong type, say), once; `repeat_first_row` (knob,
a set of methods) serves the first row of the next answer of each method twice, once.
"""

from __future__ import annotations

import calendar
import copy
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Callable, Mapping
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl

from fleet_pipeline.sandbox.server import FaultKnobs, Request, Response, SandboxServer

if TYPE_CHECKING:
    from fleet_pipeline.sandbox.world import Device, Trip, World

__all__ = [
    "API_KEY",
    "API_PREFIX",
    "CREDENTIALS",
    "LOGIN",
    "PASSWORD",
    "USER_TIME_ZONE",
    "NavixyApp",
    "NavixyKnobs",
    "default_blocked_tracker_ids",
    "default_deleted_tracker_ids",
    "make_server",
    "track_id",
    "tracker_id",
]

API_KEY = "sandbox-navixy-api-key"
LOGIN = "fleet@fleetco.example"
PASSWORD = "sandbox-navixy-password"
USER_TIME_ZONE = "Europe/Paris"
API_PREFIX = "/api-v2"
CREDENTIALS: Mapping[str, str] = {"api_key": API_KEY, "login": LOGIN, "password": PASSWORD}

PLATFORM = "navixy"
TRACKER_ID_BASE = 100_000
SOURCE_ID_BASE = 200_000
GROUP_ID_BASE = 1_000
USER_ID = 70_001
LOCAL_FORMAT = "%Y-%m-%d %H:%M:%S"
ZONE = ZoneInfo(USER_TIME_ZONE)
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
_CAN_MODELS = frozenset({"FMC130", "FMB140"})
_OBD_MODELS = frozenset({"AOVX-C2"})
_NETWORKS = ("Orange F", "SFR", "Bouygues Telecom", "Free Mobile")
_STREETS = ("Rue de la Republique", "Avenue Jean Jaures", "Cours Lafayette", "Rue Garibaldi",
            "Boulevard des Belges", "Quai Claude Bernard", "Rue Paul Bert", "Avenue Berthelot",
            "Rue Marius Berliet", "Cours Gambetta")

# code -> (description, HTTP status); errors.md: "Default HTTP code is 400".
_ERRORS: dict[int, tuple[str, int]] = {
    3: ("Wrong hash", 400),
    4: ("User or API key not found or session ended", 400),
    5: ("Wrong request format", 400),
    7: ("Invalid parameters", 400),
    15: ("Too many requests (rate limit exceeded)", 429),
    102: ("Wrong login or password", 400),
    111: ("Wrong handler", 400),
    112: ("Wrong method", 400),
    201: ("Not found in database", 400),
    208: ("Device blocked", 403),
    211: ("Requested time span is too big", 400),
    212: ("Requested limit is too big", 400),
    217: ("List contains nonexistent entities", 400),
    221: ("Device limit exceeded", 403),
    276: ("Action is forbidden for received session type", 403),
}

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


@dataclass
class NavixyKnobs(FaultKnobs):
    """Generic faults plus the Navixy behaviour tests need to provoke (see the module doc)."""

    session_lifetime_s: int = 86_400
    # The first n sessions this server issued have ended (an administrator ended them), whatever
    # their age: a mid-run expiry that does not hang on which second a hash was issued in.
    end_first_sessions: int = 0
    force_429_next: int = 0
    rate_limit_per_s: int = 50
    rate_limit_window_s: float = 1.0
    storage_period_days: int = 400
    # None until the app fills them from its World (seeded, deterministic defaults).
    blocked_tracker_ids: set[int] | None = None
    deleted_tracker_ids: set[int] | None = None
    corrupt_rows_next: int = 0
    garble_first_row: dict[str, dict[str, Any]] = field(default_factory=dict)
    repeat_first_row: set[str] = field(default_factory=set)
    simplify_tolerance_m: float = 25.0
    max_states_trackers: int = 2000
    max_track_span_days: int = 30
    max_history_span_days: int = 90
    max_history_limit: int = 1000
    max_stats_trackers: int = 128
    max_stats_span_days: int = 31


class _NavixyError(Exception):
    def __init__(self, code: int, errors: list[dict[str, str]] | None = None) -> None:
        description, status = _ERRORS[code]
        super().__init__(f"{code} {description}")
        self.code = code
        self.description = description
        self.status = status
        self.errors = errors


def _invalid(parameter: str, error: str) -> _NavixyError:
    return _NavixyError(7, [{"parameter": parameter, "error": error}])


# -- identifiers -----------------------------------------------------------------------------
def tracker_id(device: Device) -> int:
    """The Navixy tracker id (object_id) of a World device."""
    return TRACKER_ID_BASE + device.index


def track_id(device: Device, trip: Trip) -> int:
    """The id `track/list` gives a World trip (unique, below 2**53 for JavaScript clients)."""
    return _epoch(trip.start) * TRACK_ID_SHIFT + device.index


def default_blocked_tracker_ids(world: World) -> set[int]:
    """About 3 % of the navixy trackers (at least one), picked by a seeded hash."""
    devices = sorted(world.devices_on(PLATFORM),
                     key=lambda d: hashlib.blake2b(f"{world.seed}:blocked:{d.index}".encode(),
                                                   digest_size=8).digest())
    count = max(1, round(BLOCKED_SHARE * len(devices))) if devices else 0
    return {tracker_id(d) for d in devices[:count]}


def default_deleted_tracker_ids(world: World) -> set[int]:
    """Two ids just past the World: trackers deleted from the account long ago."""
    return {TRACKER_ID_BASE + world.n_devices + 7, TRACKER_ID_BASE + world.n_devices + 23}


# -- request parsing -------------------------------------------------------------------------
def _request_values(request: Request) -> dict[str, Any]:
    """Query-string parameters overlaid by the body's (JSON object or form)."""
    values: dict[str, Any] = dict(parse_qsl(request.query, keep_blank_values=True))
    if not request.body.strip():
        return values
    if request.content_type == "application/x-www-form-urlencoded":
        pairs = request.form()
        if pairs is None:
            raise _NavixyError(5)
        values.update(pairs)
        return values
    parsed = request.json()
    if not isinstance(parsed, dict):
        raise _NavixyError(5)
    values.update(parsed)
    return values


def _hash_of(request: Request, values: Mapping[str, Any]) -> str | None:
    header = request.header("Authorization")
    if header.startswith("NVX ") and header[4:].strip():
        return header[4:].strip()
    value = values.get("hash")
    return str(value) if value not in (None, "") else None


def _iso_mode(request: Request, values: Mapping[str, Any]) -> bool:
    if request.header("NVX-ISO-DateTime").strip().lower() == "true":
        return True
    flag = values.get("iso_datetime")
    return flag is True or (isinstance(flag, str) and flag.strip().lower() == "true")


class _Params:
    """Typed access to a call's parameters; every failure is code 7 naming the parameter."""

    def __init__(self, values: Mapping[str, Any], iso: bool) -> None:
        self.values = values
        self.iso = iso

    def _get(self, name: str) -> Any:
        value = self.values.get(name)
        return None if value == "" else value

    def string(self, name: str) -> str:
        value = self._get(name)
        if value is None:
            raise _invalid(name, "required parameter is missing")
        if not isinstance(value, str):
            raise _invalid(name, "must be a string")
        return value

    def integer(self, name: str, *, default: int | None = None, minimum: int | None = None,
                maximum: int | None = None, required: bool = True) -> int | None:
        value = self._get(name)
        if value is None:
            if default is None and required:
                raise _invalid(name, "required parameter is missing")
            return default
        number = _as_int(value)
        if number is None:
            raise _invalid(name, "must be an integer")
        if minimum is not None and number < minimum:
            raise _invalid(name, f"must be at least {minimum}")
        if maximum is not None and number > maximum:
            raise _invalid(name, f"must be at most {maximum}")
        return number

    def boolean(self, name: str, default: bool) -> bool:
        value = self._get(name)
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        raise _invalid(name, "must be true or false")

    def _array(self, name: str) -> list[Any] | None:
        value = self._get(name)
        if value is None:
            return None
        if isinstance(value, str):
            text = value.strip()
            try:
                value = json.loads(text) if text.startswith("[") else text.split(",")
            except ValueError:
                raise _invalid(name, "must be an array") from None
        if not isinstance(value, list):
            raise _invalid(name, "must be an array")
        return value

    def int_array(self, name: str, *, max_size: int | None = None) -> list[int]:
        items = self._array(name)
        if items is None:
            raise _invalid(name, "required parameter is missing")
        if not items:
            raise _invalid(name, "must not be empty")
        if max_size is not None and len(items) > max_size:
            raise _invalid(name, f"size must be between 1 and {max_size}")
        numbers = [_as_int(item) for item in items]
        if any(n is None for n in numbers):
            raise _invalid(name, "must be an array of integers")
        return list(dict.fromkeys(n for n in numbers if n is not None))

    def str_array(self, name: str) -> list[str] | None:
        items = self._array(name)
        if items is None:
            return None
        if not all(isinstance(item, str) for item in items):
            raise _invalid(name, "must be an array of strings")
        return [item.strip() for item in items]

    def moment(self, name: str) -> datetime:
        """A date/time parameter as naive UTC (local or ISO, by the call's mode)."""
        text = self.string(name).strip()
        if self.iso:
            try:
                parsed = datetime.fromisoformat(text)
            except ValueError:
                parsed = None
            if parsed is None or parsed.tzinfo is None:
                raise _invalid(name, "must be ISO 8601 with an offset, e.g. "
                                     "2026-10-25T02:30:00+01:00 (ISO mode is on)")
            return parsed.astimezone(timezone.utc).replace(tzinfo=None)
        try:
            local = datetime.strptime(text, LOCAL_FORMAT)
        except ValueError:
            raise _invalid(name, "must be 'yyyy-MM-dd HH:mm:ss' in the user's time zone") from None
        return _local_to_utc(local)

    def window(self) -> tuple[datetime, datetime]:
        start, end = self.moment("from"), self.moment("to")
        if end <= start:
            raise _invalid("to", "must be after 'from'")
        return start, end


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("-").isdigit():
            return int(text)
    return None


@dataclass(frozen=True)
class _Call:
    method: str
    params: _Params
    iso: bool
    hash: str | None = None
    session_kind: str | None = None     # "api_key" | "session"


@dataclass(frozen=True)
class _Route:
    handler: Callable[[NavixyApp, _Call], dict[str, Any]]
    needs_auth: bool = True


@dataclass(frozen=True)
class _Event:
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


class NavixyApp:
    """The Navixy protocol over one World (see the module docstring for every rule)."""

    vendor = "navixy"

    def __init__(self, world: World, knobs: NavixyKnobs,
                 now: Callable[[], datetime] | None = None,
                 rate_clock: Callable[[], float] = time.monotonic) -> None:
        self.world = world
        self.knobs = knobs
        self.now: Callable[[], datetime] = now if now is not None else world.now
        self._rate_clock = rate_clock
        self._session_key = hmac.new(PASSWORD.encode("utf-8"), b"navixy-sandbox-session-v1",
                                     hashlib.sha256).digest()
        self._lock = threading.Lock()
        self._windows: dict[str, deque[float]] = {}
        self._logged_out: set[str] = set()
        self._issued: list[str] = []
        self._accounts = [a for a in world.accounts if a.platform == PLATFORM]
        self._groups = {a.account_id: GROUP_ID_BASE + n + 1 for n, a in enumerate(self._accounts)}
        # Each page of history/tracker/list needs every event of its batch's tracker-days; built
        # once, not once per page (a batch of 500 trackers pages 5 or more times a day).
        self._events_of_day = lru_cache(maxsize=max(4096, 3 * world.n_devices))(self._build_day_events)
        if knobs.blocked_tracker_ids is None:
            knobs.set(blocked_tracker_ids=default_blocked_tracker_ids(world))
        if knobs.deleted_tracker_ids is None:
            knobs.set(deleted_tracker_ids=default_deleted_tracker_ids(world))

    # -- VendorApp hooks ---------------------------------------------------------------------
    def vendor_method(self, request: Request) -> str | None:
        if not request.path.startswith(API_PREFIX + "/"):
            return None
        return request.path[len(API_PREFIX) + 1:].strip("/") or None

    def throttle(self, request: Request) -> Response | None:
        """50 calls per second per hash and per client IP (code 15, HTTP 429)."""
        if not request.path.startswith(API_PREFIX + "/"):
            return None
        method = self.vendor_method(request)
        if self.knobs.consume("force_429_next"):
            return _error_response(method, _NavixyError(15))
        try:
            values = _request_values(request)
        except _NavixyError:
            values = {}
        keys = [f"ip:{request.client_ip}"]
        session = _hash_of(request, values)
        if session:
            keys.append(f"hash:{session}")
        limit, window = self.knobs.rate_limit_per_s, self.knobs.rate_limit_window_s
        with self._lock:
            t = self._rate_clock()
            stamps = [self._windows.setdefault(key, deque()) for key in keys]
            for s in stamps:
                while s and s[0] <= t - window:
                    s.popleft()
            if any(len(s) >= limit for s in stamps):
                return _error_response(method, _NavixyError(15))
            for s in stamps:
                s.append(t)
            if len(self._windows) > 10_000:
                # Garbage hashes must not grow the table forever in a long run.
                self._windows = {k: v for k, v in self._windows.items() if v and v[-1] > t - window}
        return None

    def handle(self, request: Request) -> Response:
        if not request.path.startswith(API_PREFIX + "/"):
            return Response.html(404, "Not Found", "The requested resource is not available")
        method = self.vendor_method(request) or ""
        try:
            if request.http_method not in ("GET", "POST"):
                raise _NavixyError(112)
            route = _ROUTES.get(method)
            if route is None:
                raise _NavixyError(111)
            values = _request_values(request)
            iso = _iso_mode(request, values)
            call = _Call(method=method, params=_Params(values, iso), iso=iso)
            if route.needs_auth:
                call = self._authenticate(request, values, call)
            payload = route.handler(self, call)
            if self.knobs.corrupt_rows_next and method in _ROW_METHODS:
                _corrupt_rows(method, payload, self.knobs)
            if self.knobs.garble_first_row or self.knobs.repeat_first_row:
                _garble_first_row(method, payload, self.knobs)
        except _NavixyError as exc:
            return _error_response(method, exc)
        return Response.json(_drop_nulls({"success": True, **payload}), vendor_method=method)

    # -- authentication ----------------------------------------------------------------------
    def _authenticate(self, request: Request, values: Mapping[str, Any], call: _Call) -> _Call:
        presented = _hash_of(request, values)
        if not presented:
            raise _NavixyError(3)
        if hmac.compare_digest(presented.encode("utf-8"), API_KEY.encode("utf-8")):
            kind = "api_key"
        else:
            issued = self._session_issued_at(presented)
            if issued is None:
                raise _NavixyError(3)
            with self._lock:
                logged_out = (presented in self._logged_out
                              or presented in self._issued[:self.knobs.end_first_sessions])
            ends = issued + timedelta(seconds=self.knobs.session_lifetime_s)
            if logged_out or self.now() >= ends:
                raise _NavixyError(4)
            kind = "session"
        return _Call(method=call.method, params=call.params, iso=call.iso, hash=presented,
                     session_kind=kind)

    def _session_mac(self, payload: bytes) -> bytes:
        return hmac.new(self._session_key, payload, hashlib.sha256).digest()[:8]

    def _issue_session(self, now: datetime) -> str:
        payload = secrets.token_bytes(4) + _epoch(now).to_bytes(4, "big")
        return (payload + self._session_mac(payload)).hex()

    def _session_issued_at(self, presented: str) -> datetime | None:
        if len(presented) != 32:
            return None
        try:
            raw = bytes.fromhex(presented)
        except ValueError:
            return None
        if not hmac.compare_digest(raw[8:], self._session_mac(raw[:8])):
            return None
        return datetime(1970, 1, 1) + timedelta(seconds=int.from_bytes(raw[4:8], "big"))

    # -- user --------------------------------------------------------------------------------
    def user_auth(self, call: _Call) -> dict[str, Any]:
        login = call.params.string("login").strip()
        password = call.params.string("password")
        if not (hmac.compare_digest(login.lower().encode(), LOGIN.lower().encode())
                and hmac.compare_digest(password.encode("utf-8"), PASSWORD.encode("utf-8"))):
            raise _NavixyError(102)
        session_hash = self._issue_session(self.now())
        with self._lock:
            self._issued.append(session_hash)
        return {"type": "authenticated", "hash": session_hash}

    def user_logout(self, call: _Call) -> dict[str, Any]:
        if call.session_kind != "session":
            raise _NavixyError(276)
        with self._lock:
            self._logged_out.add(call.hash or "")
        return {}

    def user_get_info(self, call: _Call) -> dict[str, Any]:
        root = self.world.root_account(PLATFORM)
        created = datetime(2023, 11, 6, 9, 14, 27)
        return {
            "paas_id": 7_001,
            "paas_settings": {"domain": "tracking.fleetco.example", "service_title": "FleetCo GPS",
                              "locale": "fr_FR", "currency": "EUR", "maps": ["osm", "roadmap"],
                              "allow_registration": False, "show_mobile_apps": True,
                              "payment_link": None, "google_client_id": None},
            "user_info": {
                "id": USER_ID, "login": LOGIN, "title": root.name, "phone": "33478000000",
                "creation_date": self._fmt(created, call.iso), "balance": 0.0, "bonus": 0.0,
                "locale": "fr_FR", "demo": False, "verified": True, "legal_type": "legal_entity",
                "default_geocoder": "osm", "route_provider": "osrm",
                "time_zone": USER_TIME_ZONE, "measurement_system": "metric",
                "date_format": "ddMMyyyy_dots", "hour_mode": "TWENTY_FOUR_HOURS",
                "tin": "FR40123456789", "iec": None, "post_country": "France",
                "post_region": "Auvergne-Rhone-Alpes", "post_index": "69003", "post_city": "Lyon",
                "post_street_address": "12 Cours Lafayette", "registered_country": "France",
                "registered_region": "Auvergne-Rhone-Alpes", "registered_index": "69003",
                "registered_city": "Lyon", "registered_street_address": "12 Cours Lafayette",
                "first_name": "Claire", "middle_name": "", "last_name": "Fontaine",
                "legal_name": "FleetCo SAS",
            },
            "tariff_restrictions": {"allowed_maps": ["osm", "roadmap"]},
            "premium_gis": False,
            "features": ["branding_web"],
        }

    def user_settings_read(self, call: _Call) -> dict[str, Any]:
        return {"settings": {"time_zone": USER_TIME_ZONE, "locale": "fr_FR",
                             "measurement_system": "metric", "date_format": "ddMMyyyy_dots",
                             "hour_mode": "TWENTY_FOUR_HOURS", "geocoder": "osm",
                             "route_provider": "osrm", "translit": False}}

    # -- trackers ----------------------------------------------------------------------------
    def _visible_devices(self) -> list[Device]:
        deleted = self.knobs.deleted_tracker_ids or set()
        today = self.now().date()
        return [d for d in self.world.devices_on(PLATFORM)
                if d.activation_date <= today and tracker_id(d) not in deleted]

    def _classify(self, tid: int) -> tuple[str, Device | None]:
        """("ok" | "blocked" | "deleted" | "missing", device) for one tracker id."""
        if tid in (self.knobs.deleted_tracker_ids or set()):
            return "deleted", None
        index = tid - TRACKER_ID_BASE
        if not 0 <= index < len(self.world.devices):
            return "missing", None
        d = self.world.devices[index]
        if d.platform != PLATFORM or d.activation_date > self.now().date():
            return "missing", None
        if tid in (self.knobs.blocked_tracker_ids or set()):
            return "blocked", d
        return "ok", d

    def _tracker(self, call: _Call) -> Device:
        """The one tracker a single-tracker call names: 201 unknown or deleted, 208 blocked."""
        tid = call.params.integer("tracker_id")
        status, d = self._classify(tid or 0)
        if status == "blocked":
            raise _NavixyError(208)
        if status != "ok" or d is None:
            raise _NavixyError(201)
        return d

    def _trackers_for_list_call(self, call: _Call, *, max_size: int | None = None) -> list[Device]:
        """history and stats: every id must be a live, unblocked tracker (else 217).

        More than `max_size` ids is 221 "Device limit exceeded" (the stats doc's error).
        """
        ids = call.params.int_array("trackers")
        if max_size is not None and len(ids) > max_size:
            raise _NavixyError(221)
        devices = []
        for tid in ids:
            status, d = self._classify(tid)
            if status != "ok" or d is None:
                raise _NavixyError(217)
            devices.append(d)
        return devices

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

    def tracker_list(self, call: _Call) -> dict[str, Any]:
        labels = call.params.str_array("labels")
        if labels is not None:
            if not 1 <= len(labels) <= 1024 or len(set(labels)) != len(labels):
                raise _invalid("labels", "1 to 1024 distinct labels")
            if any(not 1 <= len(label) <= 60 for label in labels):
                raise _invalid("labels", "each label must be 1 to 60 characters")
        rows = []
        for d in self._visible_devices():
            if labels and not any(f.lower() in d.device_name.lower() for f in labels):
                continue
            rows.append(self._tracker_object(d))
        return {"list": rows}

    def tracker_read(self, call: _Call) -> dict[str, Any]:
        tid = call.params.integer("tracker_id")
        status, d = self._classify(tid or 0)
        if status not in ("ok", "blocked") or d is None:
            raise _NavixyError(201)
        return {"value": self._tracker_object(d)}

    def tracker_group_list(self, call: _Call) -> dict[str, Any]:
        colors = ("1E96DC", "E67E22", "27AE60", "8E44AD", "C0392B", "16A085")
        return {"list": [{"id": self._groups[a.account_id], "title": a.name,
                          "color": colors[n % len(colors)]}
                         for n, a in enumerate(self._accounts)]}

    # -- states ------------------------------------------------------------------------------
    def tracker_get_states(self, call: _Call) -> dict[str, Any]:
        ids = call.params.int_array("trackers", max_size=self.knobs.max_states_trackers)
        list_blocked = call.params.boolean("list_blocked", False)
        allow_not_exist = call.params.boolean("allow_not_exist", False)
        found: list[Device] = []
        blocked: list[int] = []
        missing: list[int] = []
        deleted: list[int] = []
        for tid in ids:
            status, d = self._classify(tid)
            if status == "ok" and d is not None:
                found.append(d)
            elif status == "blocked":
                blocked.append(tid)
            elif status == "deleted":
                deleted.append(tid)
            else:
                missing.append(tid)
        if missing and not allow_not_exist:
            raise _NavixyError(217)
        if deleted and not allow_not_exist:
            raise _NavixyError(201)
        if blocked and not list_blocked:
            raise _NavixyError(208)
        now = self.now()
        payload: dict[str, Any] = {
            "user_time": self._fmt(now, call.iso),
            "states": {str(tracker_id(d)): self._state(d, now, call.iso) for d in found},
        }
        if list_blocked:
            payload["blocked"] = blocked
        if allow_not_exist:
            payload["not_exist"] = sorted(missing + deleted)
        return payload

    def tracker_get_state(self, call: _Call) -> dict[str, Any]:
        d = self._tracker(call)
        now = self.now()
        return {"user_time": self._fmt(now, call.iso), "state": self._state(d, now, call.iso)}

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
        fmt = self._fmt
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

    def tracker_get_last_gps_point(self, call: _Call) -> dict[str, Any]:
        d = self._tracker(call)
        fix = self.world.last_fix(d.imei, self.now())
        if fix is None:
            return {}
        return {"value": {
            "get_time": self._fmt(fix["gps_time"], call.iso),
            "heading": int(round(float(fix["direction_deg"]))) % 360,
            "lat": round(float(fix["lat"]), 7), "lng": round(float(fix["lng"]), 7),
            "satellites": int(fix["satellites"]), "speed": int(round(float(fix["speed_kmh"]))),
            "precision": _precision(int(fix["satellites"])) if d.manufacturer == "teltonika"
            else None,
        }}

    # -- sensors -----------------------------------------------------------------------------
    def _sensor_frame(self, call: _Call) -> tuple[Device, dict[str, Any] | None, dict[str, Any]]:
        d = self._tracker(call)
        now = self.now()
        fix = self.world.last_fix(d.imei, now)
        head = {"user_time": self._fmt(now, call.iso),
                "update_time": self._fmt(fix["received_at"], call.iso) if fix else None}
        return d, fix, head

    def tracker_get_diagnostics(self, call: _Call) -> dict[str, Any]:
        d, fix, head = self._sensor_frame(call)
        inputs: list[dict[str, Any]] = []
        states: dict[str, Any] | None = None
        if fix is not None and d.model in _CAN_MODELS:
            odometer, speed = float(fix["odometer_km"]), float(fix["speed_kmh"])
            acc = bool(fix["acc_on"])
            inputs = [
                _sensor("CAN: Mileage", "can_mileage", "odometer", round(odometer, 1), "km"),
                _sensor("CAN: Speed", "can_speed", "speed", round(speed, 1), "km/h"),
                _sensor("CAN: RPM", "can_rpm", "rpm", _rpm(speed, acc), ""),
                _sensor("CAN: Engine hours", "can_engine_hours", "engine_hours",
                        round(odometer / 38.0, 1), "h"),
                _sensor("CAN: Coolant temperature", "can_coolant_t", "temperature",
                        88.0 if acc else 14.0 + d.index % 8, "°C"),
                _sensor("CAN: Engine load", "can_engine_load", "percent",
                        round(18.0 + speed / 3.0, 1) if acc else 0.0, "%"),
            ]
            states = {"obd_vin": _vin(d), "external_power_state": "connected",
                      "can_door_state": "0"}
        elif fix is not None and d.model in _OBD_MODELS:
            speed, acc = float(fix["speed_kmh"]), bool(fix["acc_on"])
            inputs = [
                _sensor("OBD: RPM", "obd_rpm", "rpm", _rpm(speed, acc), ""),
                _sensor("OBD: Speed", "obd_speed", "speed", round(speed, 1), "km/h"),
                _sensor("OBD: Coolant temperature", "obd_coolant_t", "temperature",
                        90.0 if acc else 15.0 + d.index % 6, "°C"),
                _sensor("OBD: Module voltage", "obd_control_module_voltage", "power",
                        _board_voltage(d, acc), "V"),
            ]
            states = {"obd_vin": _vin(d), "obd_dtc_number": 0, "obd_mil_activated_distance": 0.0}
        return {"user_time": head["user_time"], "inputs": inputs, "states": states,
                "update_time": head["update_time"]}

    def tracker_get_fuel(self, call: _Call) -> dict[str, Any]:
        d, fix, head = self._sensor_frame(call)
        inputs: list[dict[str, Any]] = []
        if fix is not None:
            litres = _fuel_litres(float(fix["odometer_km"]))
            if d.model in _CAN_MODELS:
                inputs = [_sensor("Fuel level", "can_fuel_litres", "fuel", litres, "litres",
                                  units_type="litre")]
            elif d.model == "FMB920":
                inputs = [_sensor("Fuel probe", "lls_level_1", "fuel", litres, "litres",
                                  units_type="litre")]
            elif d.model in _OBD_MODELS:
                inputs = [_sensor("Fuel level", "can_fuel", "fuel",
                                  round(100.0 * litres / FUEL_TANK_L, 1), "%")]
        return {"user_time": head["user_time"], "inputs": inputs,
                "update_time": head["update_time"]}

    def tracker_get_readings(self, call: _Call) -> dict[str, Any]:
        d, fix, head = self._sensor_frame(call)
        inputs: list[dict[str, Any]] = []
        if fix is not None:
            acc = bool(fix["acc_on"])
            inputs = [
                _sensor("Board voltage", "board_voltage", "power", _board_voltage(d, acc), "V"),
                _sensor("Device temperature", "temp_sensor", "temperature",
                        float(18 + d.index % 10 + (6 if acc else 0)), "°C"),
            ]
        return {"user_time": head["user_time"], "inputs": inputs,
                "update_time": head["update_time"]}

    # -- tracks ------------------------------------------------------------------------------
    def _track_window(self, call: _Call) -> tuple[datetime, datetime, datetime, bool]:
        """(from, to, storage floor, limit_exceeded) after the 7/211 checks."""
        start, end = call.params.window()
        if _span(start, end) > timedelta(days=self.knobs.max_track_span_days):
            raise _NavixyError(211)
        floor = self.now() - timedelta(days=self.knobs.storage_period_days)
        return start, end, floor, start < floor

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
                  for day in _utc_days(after, until)]
        frames = [f for f in frames if f.height]
        if not frames:
            return self._day_points(d, after.date(), now).clear()
        return pl.concat(frames, how="vertical_relaxed")

    def track_read(self, call: _Call) -> dict[str, Any]:
        d = self._tracker(call)
        start, end, floor, limit_exceeded = self._track_window(call)
        wanted_track = call.params.integer("track_id", required=False)
        simplify = call.params.boolean("simplify", True)
        keep_parking = not call.params.boolean("filter", True)
        call.params.boolean("include_gsm_lbs", True)       # the World has no LBS fixes
        point_limit = call.params.integer("point_limit", required=False,
                                          minimum=POINT_LIMIT_RANGE[0],
                                          maximum=POINT_LIMIT_RANGE[1])
        now = self.now()
        frame = self._points(d, max(start, floor), end, now)
        if wanted_track is not None:
            trip = self._trip_by_id(d, wanted_track)
            frame = frame.filter(pl.col("gps_time").is_between(trip.start, trip.end))
        if not keep_parking:
            frame = frame.filter(~pl.col("parking"))
        indices = np.arange(frame.height)
        if simplify and frame.height > 2:
            indices = _simplify(frame, self.knobs.simplify_tolerance_m, point_limit)
        return {"limit_exceeded": limit_exceeded,
                "list": _point_rows(frame, indices, d, call.iso)}

    def _trip_by_id(self, d: Device, wanted: int) -> Trip:
        if wanted % TRACK_ID_SHIFT == d.index:
            start = datetime(1970, 1, 1) + timedelta(seconds=wanted // TRACK_ID_SHIFT)
            for trip in self.world.day(d.imei, start.date()).trips:
                if trip.start.replace(microsecond=0) == start:
                    return trip
        raise _NavixyError(201)

    def track_list(self, call: _Call) -> dict[str, Any]:
        d = self._tracker(call)
        start, end, floor, limit_exceeded = self._track_window(call)
        drop_short = call.params.boolean("filter", True)
        split = call.params.boolean("split", True)
        call.params.boolean("include_gsm_lbs", True)
        call.params.boolean("cluster_single_reports", False)   # no single-point trips exist
        count_events = call.params.boolean("count_events", False)
        omit_addresses = call.params.boolean("omit_addresses", False)
        with_points = call.params.boolean("with_points", False)
        point_limit = call.params.integer("point_limit", required=False,
                                          minimum=POINT_LIMIT_RANGE[0],
                                          maximum=POINT_LIMIT_RANGE[1])
        now = self.now()
        after = max(start, floor)
        tracks: list[tuple[Trip, pl.DataFrame]] = []
        for day in _utc_days(after, end):
            dd_trips = [t for t in self.world.day(d.imei, day).trips
                        if after < t.start <= end and t.end <= now]
            if not dd_trips:
                continue
            day_points = self._day_points(d, day, now)
            for trip in dd_trips:
                points = day_points.filter(pl.col("gps_time").is_between(trip.start, trip.end))
                if drop_short and (trip.distance_km < 0.05 or points.height < 2):
                    continue
                tracks.append((trip, points))
        events = self._events(d, after, end, now) if count_events else []
        address = (lambda lat, lng: "") if omit_addresses else _address

        def points_list(points: pl.DataFrame) -> list[dict[str, Any]] | None:
            if not with_points:
                return None
            indices = (_simplify(points, self.knobs.simplify_tolerance_m, point_limit)
                       if point_limit is not None and points.height > 2
                       else np.arange(points.height))
            return _point_rows(points, indices, d, call.iso)

        rows: list[dict[str, Any]] = []
        if split:
            for trip, points in tracks:
                rows.append({
                    "id": track_id(d, trip), "start_date": self._fmt(trip.start, call.iso),
                    "start_address": address(trip.start_lat, trip.start_lng),
                    "max_speed": int(round(trip.max_speed_kmh)),
                    "end_date": self._fmt(trip.end, call.iso),
                    "end_address": address(trip.end_lat, trip.end_lng),
                    "length": round(trip.distance_km, 2), "points": points.height,
                    "avg_speed": int(round(trip.avg_speed_kmh)),
                    "event_count": (sum(1 for e in events if trip.start <= e.time <= trip.end)
                                    if count_events else None),
                    "type": "regular", "gsm_lbs": False, "bounds": _bounds(points),
                    "points_list": points_list(points),
                })
        elif tracks:
            first, last = tracks[0][0], tracks[-1][0]
            merged = pl.concat([p for _, p in tracks], how="vertical_relaxed")
            km = sum(t.distance_km for t, _ in tracks)
            hours = sum((t.end - t.start).total_seconds() for t, _ in tracks) / 3600.0
            rows.append({
                "start_date": self._fmt(first.start, call.iso),
                "start_address": address(first.start_lat, first.start_lng),
                "max_speed": int(round(max(t.max_speed_kmh for t, _ in tracks))),
                "end_date": self._fmt(last.end, call.iso),
                "end_address": address(last.end_lat, last.end_lng),
                "length": round(km, 2), "points": merged.height,
                "avg_speed": int(round(km / hours)) if hours > 0 else 0,
                "event_count": (sum(1 for e in events if first.start <= e.time <= last.end)
                                if count_events else None),
                "type": "merged", "gsm_lbs": False, "bounds": _bounds(merged),
                "points_list": points_list(merged),
            })
        return {"limit_exceeded": limit_exceeded, "list": rows}

    # -- history -----------------------------------------------------------------------------
    def history_tracker_list(self, call: _Call) -> dict[str, Any]:
        devices = self._trackers_for_list_call(call)
        start, end = call.params.window()
        if _span(start, end) > timedelta(days=self.knobs.max_history_span_days):
            raise _NavixyError(211)
        limit = call.params.integer("limit", default=self.knobs.max_history_limit, minimum=1)
        if limit is not None and limit > self.knobs.max_history_limit:
            raise _NavixyError(212)
        wanted = call.params.str_array("events")
        ascending = call.params.boolean("ascending", True)
        only_emergency = call.params.boolean("only_emergency", False)
        call.params.boolean("only_unread", False)          # nothing is ever read here
        add_label = call.params.boolean("add_tracker_label", True)
        call.params.boolean("add_tracker_files", False)
        now = self.now()
        found: list[tuple[_Event, Device]] = []
        for d in devices:
            for e in self._events(d, start, end, now):
                if (wanted and e.event not in wanted) or (only_emergency and not e.emergency):
                    continue
                found.append((e, d))
        found.sort(key=lambda item: (item[0].time, item[0].id), reverse=not ascending)
        page = found[:limit]
        return {"list": [self._event_row(e, d, add_label, call.iso) for e, d in page],
                "limit_exceeded": len(found) > len(page), "total": len(found),
                "total_unread": len(found)}

    def _events(self, d: Device, start: datetime, end: datetime, now: datetime) -> list[_Event]:
        """The tracker's events with start <= time <= min(end, now), in time order."""
        until = min(end, now)
        if until < start:
            return []
        out = [e for day in _utc_days(start - timedelta(microseconds=1), until)
               for e in self._day_events(d, day) if start <= e.time <= until]
        out.sort(key=lambda e: (e.time, e.id))
        return out

    def _day_events(self, d: Device, day: date) -> list[_Event]:
        return self._events_of_day(d.imei, day)

    def _build_day_events(self, imei: str, day: date) -> list[_Event]:
        d = self.world.device(imei)
        dd = self.world.day(d.imei, day)
        trips = [(t.start, t.end, track_id(d, t)) for t in dd.trips]

        def trip_at(moment: datetime) -> int | None:
            return next((tid for s, e, tid in trips if s <= moment <= e), None)

        def event(moment: datetime, kind: tuple[str, int, str], lat: float, lng: float,
                  tid: int | None, **extra: Any) -> _Event:
            name, code, text = kind
            event_id = _epoch(moment) * EVENT_ID_SHIFT + (d.index * 32 + code) % EVENT_ID_SHIFT
            return _Event(id=event_id, time=moment, event=name, code=code, text=text, lat=lat,
                          lng=lng, track_id=tid, **extra)

        # Ignition goes on when a trip leaves a parking where the engine was off, and off when
        # such a parking starts; an idling parking (engine on) changes nothing.
        idling_ends = {s.end for s in dd.stops if s.kind == "parking" and s.ignition_on}
        out: list[_Event] = []
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

    def _event_row(self, e: _Event, d: Device, add_label: bool, iso: bool) -> dict[str, Any]:
        teltonika = d.manufacturer == "teltonika"
        return {
            "id": e.id, "type": "tracker", "is_read": False,
            "message": f"{d.device_name}: {e.text}" if add_label else e.text,
            "time": self._fmt(e.time, iso), "event": e.event, "tracker_id": tracker_id(d),
            "rule_id": RULE_ID_BASE + (8 if e.event == "input_change" else e.code),
            "track_id": e.track_id,
            "location": {"lat": round(e.lat, 7), "lng": round(e.lng, 7),
                         "precision": 10 if teltonika else None},
            "address": _address(e.lat, e.lng),
            "extra": {"tracker_label": d.device_name, "emergency": e.emergency,
                      "last_known_location": False, "zone_label": e.zone,
                      "task_id": None, "parent_task_id": None},
        }

    # -- stats -------------------------------------------------------------------------------
    def tracker_stats_mileage_read(self, call: _Call) -> dict[str, Any]:
        devices = self._trackers_for_list_call(call, max_size=self.knobs.max_stats_trackers)
        start, end = call.params.window()
        if _span(start, end) > timedelta(days=self.knobs.max_stats_span_days):
            raise _NavixyError(211)
        now = self.now()
        floor = now - timedelta(days=self.knobs.storage_period_days)
        first_day, last_day = _utc_to_local(start).date(), _utc_to_local(end).date()
        days = [first_day + timedelta(days=n) for n in range((last_day - first_day).days + 1)]
        bounds = [(day, _local_to_utc(datetime.combine(day, datetime.min.time())),
                   _local_to_utc(datetime.combine(day + timedelta(days=1), datetime.min.time())))
                  for day in days]
        limit_exceeded = False
        result: dict[str, dict[str, dict[str, float]]] = {}
        for d in devices:
            per_day: dict[str, dict[str, float]] = {}
            for day, day_start, day_end in bounds:
                if day_end <= floor:
                    limit_exceeded = True
                    continue
                lo, hi = max(day_start, start, floor), min(day_end, end, now)
                km = (self.world.odometer_km(d.imei, hi) - self.world.odometer_km(d.imei, lo)
                      if hi > lo else 0.0)
                per_day[day.isoformat()] = {"mileage": round(km, 2)}
            result[str(tracker_id(d))] = per_day
        if start < floor:
            limit_exceeded = True
        return {"result": result, "limit_exceeded": limit_exceeded}

    # -- helpers -----------------------------------------------------------------------------
    @staticmethod
    def _fmt(moment: datetime | None, iso: bool) -> str | None:
        if moment is None:
            return None
        local = _utc_to_local(moment)
        return local.isoformat(timespec="seconds") if iso else local.strftime(LOCAL_FORMAT)


_ROUTES: dict[str, _Route] = {
    "user/auth": _Route(NavixyApp.user_auth, needs_auth=False),
    "user/logout": _Route(NavixyApp.user_logout),
    "user/get_info": _Route(NavixyApp.user_get_info),
    "user/settings/read": _Route(NavixyApp.user_settings_read),
    "tracker/list": _Route(NavixyApp.tracker_list),
    "tracker/read": _Route(NavixyApp.tracker_read),
    "tracker/group/list": _Route(NavixyApp.tracker_group_list),
    "tracker/get_state": _Route(NavixyApp.tracker_get_state),
    "tracker/get_states": _Route(NavixyApp.tracker_get_states),
    "tracker/get_last_gps_point": _Route(NavixyApp.tracker_get_last_gps_point),
    "tracker/get_diagnostics": _Route(NavixyApp.tracker_get_diagnostics),
    "tracker/get_fuel": _Route(NavixyApp.tracker_get_fuel),
    "tracker/get_readings": _Route(NavixyApp.tracker_get_readings),
    "track/list": _Route(NavixyApp.track_list),
    "track/read": _Route(NavixyApp.track_read),
    "history/tracker/list": _Route(NavixyApp.history_tracker_list),
    "tracker/stats/mileage/read": _Route(NavixyApp.tracker_stats_mileage_read),
}

# Methods whose rows are devices, positions or events (what corrupt_rows_next damages).
_ROW_METHODS = frozenset({"tracker/list", "track/read", "tracker/get_last_gps_point",
                          "tracker/get_state", "tracker/get_states", "history/tracker/list"})


def make_server(world: World, host: str = "127.0.0.1", port: int = 0, *,
                now: Callable[[], datetime] | None = None,
                knobs: NavixyKnobs | None = None,
                rate_clock: Callable[[], float] = time.monotonic,
                **knob_values: Any) -> SandboxServer[NavixyKnobs]:
    """A bound, not yet started Navixy sandbox over `world` (start() or use `with`).

    The API lives under `base_url + API_PREFIX`. `now` overrides the sandbox clock (default
    `world.now`); `rate_clock` drives the 50/s window; extra keyword arguments set knobs.
    """
    knobs = knobs if knobs is not None else NavixyKnobs()
    if knob_values:
        knobs.set(**knob_values)
    app = NavixyApp(world, knobs, now=now, rate_clock=rate_clock)
    return SandboxServer(app, knobs, host=host, port=port)


# -- responses -------------------------------------------------------------------------------
def _error_response(method: str | None, exc: _NavixyError) -> Response:
    payload: dict[str, Any] = {"success": False,
                               "status": {"code": exc.code, "description": exc.description}}
    if exc.errors:
        payload["errors"] = exc.errors
    return Response.json(payload, exc.status, vendor_method=method, vendor_code=exc.code)


def _drop_nulls(value: Any) -> Any:
    """Navixy omits null fields to keep answers small; so does the sandbox, at every depth."""
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value


def _garble_first_row(method: str, payload: dict[str, Any], knobs: NavixyKnobs) -> None:
    """Apply `garble_first_row` and `repeat_first_row` to the first row of a list answer, once."""
    rows = payload.get("list")
    if not isinstance(rows, list) or not rows:
        return
    with knobs._lock:
        values = knobs.garble_first_row.pop(method, None)
        repeat = method in knobs.repeat_first_row
        knobs.repeat_first_row.discard(method)
    for path, value in (values or {}).items():
        *parents, name = path.split(".")
        node = rows[0]
        for part in parents:
            node = node.setdefault(part, {})
        node[name] = value
    if repeat:
        rows.insert(1, copy.deepcopy(rows[0]))


def _corrupt_rows(method: str, payload: dict[str, Any], knobs: NavixyKnobs) -> None:
    """Damage rows like broken devices do: a bad IMEI check digit, or latitude 123.456."""
    if method == "tracker/get_states":
        rows = list(payload.get("states", {}).values())
    elif isinstance(payload.get("list"), list):
        rows = payload["list"]
    else:
        rows = [payload[k] for k in ("value", "state") if isinstance(payload.get(k), dict)]
    for row in rows:
        source = row.get("source")
        gps = row.get("gps")
        if isinstance(source, dict) and isinstance(source.get("device_id"), str):
            target = "imei"
        elif "lat" in row:
            target = "lat"
        elif isinstance(row.get("location"), dict):
            target = "location"
        elif isinstance(gps, dict) and isinstance(gps.get("location"), dict):
            target = "gps"
        else:
            continue
        if not knobs.consume("corrupt_rows_next"):
            return
        if target == "imei":
            imei = source["device_id"]
            source["device_id"] = imei[:-1] + str((int(imei[-1]) + 1) % 10)
        elif target == "lat":
            row["lat"] = 123.456
        elif target == "location":
            row["location"]["lat"] = 123.456
        else:
            gps["location"]["lat"] = 123.456


# -- time ------------------------------------------------------------------------------------
def _epoch(moment: datetime) -> int:
    return calendar.timegm(moment.timetuple())


def _utc_to_local(moment: datetime) -> datetime:
    return moment.replace(tzinfo=timezone.utc).astimezone(ZONE)


def _local_to_utc(local: datetime) -> datetime:
    """A naive local wall time to naive UTC; fold=0 (the first occurrence), as java.time does."""
    return local.replace(tzinfo=ZONE, fold=0).astimezone(timezone.utc).replace(tzinfo=None)


def _span(start: datetime, end: datetime) -> timedelta:
    """The window's length on the user's wall clock.

    Limits are ISO periods (P31D) added to a zoned date-time, as java.time does, so a local
    month containing the 25-hour day still fits in 31 days.
    """
    return (_utc_to_local(end).replace(tzinfo=None)
            - _utc_to_local(start).replace(tzinfo=None))


def _utc_days(start: datetime, end: datetime) -> list[date]:
    """UTC days touched by (start, end]."""
    first, last = start.date(), end.date()
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


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
def _simplify(frame: pl.DataFrame, tolerance_m: float, point_limit: int | None) -> np.ndarray:
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


def _point_rows(frame: pl.DataFrame, indices: np.ndarray, d: Device,
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
            "precision": _precision(satellites) if teltonika else None,
            "gsm_lbs": False,
            "parking": True if row["parking"] else None,
            "buffered": bool(row["late"]) if teltonika else None,
            "hdop": _hdop(satellites),
        })
    return [_drop_nulls(r) for r in rows]


def _bounds(points: pl.DataFrame) -> dict[str, Any] | None:
    if points.height == 0:
        return None
    return {"nw": {"lat": round(float(points["lat"].max()), 7),
                   "lng": round(float(points["lng"].min()), 7)},
            "se": {"lat": round(float(points["lat"].min()), 7),
                   "lng": round(float(points["lng"].max()), 7)}}


def _hdop(satellites: int) -> float:
    return 99.0 if satellites <= 0 else round(max(0.6, 12.0 / satellites), 1)


def _precision(satellites: int) -> int:
    return max(1, int(round(_hdop(satellites) * 4)))


def _address(lat: float, lng: float) -> str:
    """A stable made-up street address (the sandbox has no geocoder)."""
    h = int.from_bytes(hashlib.blake2b(f"{lat:.4f},{lng:.4f}".encode(), digest_size=4).digest(),
                       "big")
    return f"{h % 180 + 1} {_STREETS[h % len(_STREETS)]}, 6900{h % 9 + 1} Lyon, France"


# -- sensors ---------------------------------------------------------------------------------
def _sensor(label: str, name: str, kind: str, value: float, units: str, *,
            units_type: str = "custom") -> dict[str, Any]:
    return {"label": label, "units": units, "name": name, "type": kind, "value": float(value),
            "units_type": units_type, "converted_units_type": None, "converted_value": None}


def _rpm(speed_kmh: float, acc_on: bool) -> float:
    if not acc_on:
        return 0.0
    return float(round(780 + speed_kmh * 24))


def _board_voltage(d: Device, acc_on: bool) -> float:
    return round((13.9 if acc_on else 12.3) + (d.index % 5) * 0.08, 2)


def _fuel_litres(odometer_km: float) -> float:
    """A tank that empties at FUEL_L_PER_KM and is refilled to full at the reserve."""
    usable = FUEL_TANK_L - FUEL_RESERVE_L
    return round(FUEL_TANK_L - (odometer_km * FUEL_L_PER_KM) % usable, 1)


def _vin(d: Device) -> str:
    alphabet = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"
    digest = hashlib.blake2b(f"vin:{d.imei}".encode(), digest_size=14).digest()
    return "VF1" + "".join(alphabet[b % len(alphabet)] for b in digest)
