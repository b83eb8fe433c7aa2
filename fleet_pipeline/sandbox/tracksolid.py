"""Fake Tracksolid Pro (Jimi IoT) open API over the sandbox World's `tracksolid` devices.

It speaks the protocol of `vendor-apis/tracksolid-pro.md` as corrected by `FIELD-NOTES.md`, so
the real client can be developed and tested against it without a Jimi account.

Transport. `POST /route/rest`, `application/x-www-form-urlencoded`, UTF-8. Every JSON answer is
HTTP 200 with the outcome in `code`. A GET (any verb but POST) gets an HTML page with HTTP 405; a
POST whose body is not a form gets an HTML page with HTTP 200 (the real node answers non-JSON
there too); any other path gets an HTML 404.

Common parameters `method, app_key, timestamp, sign_method=md5, sign, v=1.0, format=json` are
all required (1001 naming the first missing one). Signature: every parameter present in the body
except `sign` (a parameter sent with an empty value IS included), sorted by key, concatenated as
`secret + k1 + v1 + k2 + v2 ... + secret`, MD5 of the UTF-8 bytes, uppercase hex, compared
exactly. A repeated parameter is 1001. An unknown `app_key` is 1001 "app_key invalid" (what a
wrong region node says). `timestamp` is UTC `yyyy-MM-dd HH:mm:ss`, within 10 minutes of the
sandbox clock (`now`, default `world.now()`), else 1001.

Result codes: 0 ok, 1001 bad parameter / signature / unknown method, 1002 illegal user or device
(includes an account or IMEI outside the token's account tree), 1004 token invalid or expired,
1006 request frequency too high. Errors carry `result: null`. `code` is an int, except on
`jimi.device.alarm.list`, whose answers (success and error) carry `code` as a string and `msg`
instead of `message` -- both variants exist in the real API.

Tokens are stateless: `base64url(json payload) + "." + base64url(HMAC-SHA256(key, payload))`,
the key derived from the app secret, so a token cached by one process is accepted by any other
sandbox with the same secret. Access tokens live `expires_in` seconds (capped at 7200; the
`token_lifetime_s` knob overrides), refresh tokens 24 h. `jimi.oauth.token.get` succeeds at most
once a minute per (app_key, user_id) on the sandbox clock; a second success within 60 s answers
1006. Failed attempts do not count. Any tracksolid account of the World can log in with
`USER_PASSWORD`; the token can reach that account and its descendants only.

Frequency limit (the `VendorApp.throttle` hook): per app_key, more than `rate_limit_calls` (25)
accepted calls within any `rate_limit_window_s` (1 s) sliding window answer 1006; rejected calls
do not extend the window. `jimi.oauth.token.get` is outside this window (it has its own limit),
and so is `force_1006_next` (the next N calls other than token.get answer 1006). The window uses
`rate_clock` (default `time.monotonic`), not the sandbox clock, because tests freeze the latter.

Methods and shapes (times are UTC `yyyy-MM-dd HH:mm:ss` unless stated):

* `jimi.oauth.token.get` (user_id, user_pwd_md5 [md5 hex of the password, either case],
  expires_in) -> result {accessToken, expiresIn (int), account, appKey, refreshToken, time}.
* `jimi.oauth.token.refresh` (access_token [may be expired], refresh_token, expires_in) -> same.
* `jimi.user.child.list` (target) -- not in the vendor doc: the DIRECT child accounts of target,
  result [{account, name, parentAccount, type: "user"}], an empty list for a leaf.
* `jimi.user.device.list` (target) -- devices directly on target (not recursive; paging params
  are ignored): [{imei, deviceName, mcType, sim, expiration, activationTime, vehicleName,
  vehicleNumber, driverName, enabledFlag (int 1)}]. `expiration` is the expiry date at 23:59:59.
* `jimi.track.device.detail` (imei) -> {imei, deviceName, account, mcType, sim, iccid, expiration,
  activationTime, vehicleName, vehicleNumber, driverName, currentMileage (string, odometer km
  now), deviceGroup ("Default group"), electQuantity ("")}.
* `jimi.user.device.location.list` (target, map_type) and `jimi.device.location.get` (imeis,
  <= 50) -> rows {imei, deviceName, status ("1" moving / "0" static), lat, lng (numbers), speed,
  direction (strings), gpsTime, hbTime (when the platform received the fix), accStatus "0"/"1",
  gpsSignal, gpsNum, currentMileage, powerValue (strings), elecQuantity "", posType "GPS",
  expireFlag ("1" valid / "0" expired), activationFlag "1"}. Devices without a fix in the last
  7 days are omitted; expired devices report lat/lng 0.
* `jimi.device.track.mileage` (imeis <= 50, begin_time, end_time, start_row [0-based offset,
  default 0], page_size [default 100; values over 100 are silently capped at 100]) -> result: the
  trips starting in [begin, end) that have ended by now, ordered by (imei as requested, start),
  rows {imei, startTime, endTime, distance (string, km; metres with knob mileage_unit="m"),
  avgSpeed, maxSpeed (integer strings, km/h), runTimeSecond (int, whole trip duration; named
  `elapsed` for devices with an odd World index), idleSecond (int)}; data: [{imei, totalMileage
  (string, same unit, all trips of the window)}] for every requested IMEI. No row total is given:
  a page shorter than 100 rows is the last.
* `jimi.device.track.list` (imei, begin_time, end_time, map_type) -> fixes with gpsTime in
  [begin, end] already received by now, ordered by gpsTime: {lat, lng (numbers), gpsTime,
  gpsSpeed, direction, satellite, altitude (ints; altitude 0 on X3/GT06E), accStatus "0"/"1",
  ignition "ON"/"OFF", gpsMode ("0" real-time, "1" re-uploaded late)}. One IMEI only, end_time
  earlier than now, begin_time within the last 3 calendar months, at most 7 days, else 1001.
  gpsTime hours are unpadded ("2026-11-20 1:27:23") for devices whose World index is 1 mod 4.
* `jimi.open.platform.report.parking` (account, imeis <= 50 under account, start_time, end_time,
  start_row, page_size, acc_type) -> `result: null`, `data: {rows, dataTotalRows (string)}`.
  acc_type missing or "" -> zero rows (code 0); "0" all parkings, "1" ignition-off only. Rows are
  the World's "parking" stops starting in [start, end) that have ended by now, ordered by (imei
  as requested, start): {imei, deviceName, startTime, endTime (ISO "...T01:05:33.000Z"),
  durSecond (int), stopSecond (int; absent for idling stops and for devices whose index is
  0 mod 4), addr (""), lat, lng, accStatus}. page_size must be 1..100 and start_row a
  non-negative multiple of page_size (0-based), else 1001.
* `jimi.device.alarm.list` (imeis <= 50, begin_time, end_time, page_no [1-based, default 1],
  page_size [1..100, default 100]) -> alarms in [begin, end) up to now, ordered by (alertTime,
  imei); at most 31 days per call; only the first 1000 rows of a query are reachable (later pages
  come back empty; knob `alarm_rows_reachable`), so a client must split windows.
  Rows {deviceName, imei, model, account, alertTypeId, alarmTypeName (alertTypeName in rows
  where (index + second of alertTime) % 5 == 0), alertTime, positioningTime, lat, lng, speed
  (string), geoid (fence alarms only)}. alertTypeId:
  "1" SOS, "2" power cut, "3" vibration, "14" low battery, overspeed "6" (device alarm, devices
  with an even index) or "overSpeed" (platform alarm, odd index), fences "in"/"out".
"""

from __future__ import annotations

import base64
import calendar
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Callable, Mapping

import polars as pl

from fleet_pipeline.sandbox.server import FaultKnobs, Request, Response, SandboxServer

if TYPE_CHECKING:
    from fleet_pipeline.sandbox.world import Device, World

__all__ = [
    "APP_KEY",
    "APP_SECRET",
    "CREDENTIALS",
    "ROUTE_PATH",
    "USER_ID",
    "USER_PASSWORD",
    "TracksolidApp",
    "TracksolidKnobs",
    "make_server",
]

APP_KEY = "sandbox-app-key"
APP_SECRET = "sandbox-app-secret"
USER_ID = "fleetco"
USER_PASSWORD = "sandbox-password"
ROUTE_PATH = "/route/rest"
CREDENTIALS: Mapping[str, str] = {
    "app_key": APP_KEY,
    "app_secret": APP_SECRET,
    "user_id": USER_ID,
    "user_password": USER_PASSWORD,
}

PLATFORM = "tracksolid"
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
TIMESTAMP_TOLERANCE = timedelta(minutes=10)
MAX_TOKEN_LIFETIME_S = 7200
REFRESH_LIFETIME = timedelta(hours=24)
MAX_IMEIS = 50
MAX_PAGE_ROWS = 100
ALARM_ROWS_REACHABLE = 1000
ALARM_MAX_WINDOW = timedelta(days=31)
TRACK_MAX_WINDOW = timedelta(days=7)
TRACK_HISTORY_MONTHS = 3
LAST_FIX_LOOKBACK = timedelta(days=7)
COMMON_PARAMS = ("method", "app_key", "timestamp", "sign_method", "sign", "v", "format")

TOKEN_GET = "jimi.oauth.token.get"
TOKEN_REFRESH = "jimi.oauth.token.refresh"
ALARM_LIST = "jimi.device.alarm.list"

# (alertTypeId, display name) per World alarm kind; overspeed depends on the device (see below).
_ALARM_TYPES = {
    "sos": ("1", "SOS alarm"),
    "power_cut": ("2", "Power cut alarm"),
    "vibration": ("3", "Vibration alert"),
    "low_battery": ("14", "Low battery alarm"),
    "geofence_in": ("in", "Enter fence alert"),
    "geofence_out": ("out", "Leave fence alert"),
}
_OVERSPEED_DEVICE = ("6", "Overspeed alarm")
_OVERSPEED_PLATFORM = ("overSpeed", "Overspeed alert")
_NO_ALTITUDE_MODELS = frozenset({"X3", "GT06E"})


@dataclass
class TracksolidKnobs(FaultKnobs):
    """Generic faults plus the Tracksolid-specific behaviour tests need to provoke."""

    token_lifetime_s: int | None = None                 # overrides expires_in of new tokens
    revoke_tokens_issued_before: datetime | None = None  # sandbox-clock time; older tokens -> 1004
    force_1006_next: int = 0                            # next N calls (not token.get) -> 1006
    rate_limit_calls: int = 25                          # accepted calls per window per app_key
    rate_limit_window_s: float = 1.0
    token_get_interval_s: int = 60                      # token.get: one success per interval
    mileage_unit: str = "km"                            # "km" | "m": unit of track.mileage distance
    corrupt_rows_next: int = 0                          # next N data rows served carry a defect
    # Rows of one alarm.list query that paging can reach; lower it to test window splitting
    # without generating a thousand alarms.
    alarm_rows_reachable: int = ALARM_ROWS_REACHABLE


class _JimiError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class _Token:
    account: str
    app_key: str
    kind: str          # "a" access | "r" refresh
    session: str       # shared by an access/refresh pair
    issued_at: datetime
    expires_at: datetime


class _TokenCodec:
    """Signs and verifies stateless tokens with a key derived from the app secret."""

    def __init__(self, app_secret: str) -> None:
        self._key = hmac.new(app_secret.encode("utf-8"), b"tracksolid-sandbox-token-v1",
                             hashlib.sha256).digest()

    def encode(self, token: _Token) -> str:
        payload = json.dumps({"a": token.account, "k": token.app_key, "t": token.kind,
                              "s": token.session, "i": _epoch(token.issued_at),
                              "e": _epoch(token.expires_at)},
                             separators=(",", ":"), sort_keys=True).encode("utf-8")
        body = _b64(payload)
        return f"{body}.{_b64(self._mac(body))}"

    def decode(self, text: str) -> _Token | None:
        body, _, mac = text.partition(".")
        if not body or not mac or not hmac.compare_digest(mac, _b64(self._mac(body))):
            return None
        try:
            data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
            return _Token(account=str(data["a"]), app_key=str(data["k"]), kind=str(data["t"]),
                          session=str(data["s"]), issued_at=_from_epoch(int(data["i"])),
                          expires_at=_from_epoch(int(data["e"])))
        except (ValueError, KeyError, TypeError):
            return None

    def _mac(self, body: str) -> bytes:
        return hmac.new(self._key, body.encode("ascii"), hashlib.sha256).digest()


@dataclass(frozen=True)
class _Call:
    """A verified request: its parameters, the method and (after auth) the caller's account."""

    method: str
    params: dict[str, str]
    app_key: str
    account: str | None = None


@dataclass(frozen=True)
class _MethodSpec:
    handler: Callable[[TracksolidApp, _Call], dict[str, Any]]
    required: tuple[str, ...]
    needs_token: bool = True


class TracksolidApp:
    """The Tracksolid protocol over one World (see the module docstring for every rule)."""

    vendor = "tracksolid"

    def __init__(self, world: World, knobs: TracksolidKnobs,
                 now: Callable[[], datetime] | None = None,
                 rate_clock: Callable[[], float] = time.monotonic) -> None:
        self.world = world
        self.knobs = knobs
        self.now: Callable[[], datetime] = now if now is not None else world.now
        self._rate_clock = rate_clock
        self._codec = _TokenCodec(APP_SECRET)
        self._accounts = {a.account_id: a for a in world.accounts if a.platform == PLATFORM}
        self._lock = threading.Lock()
        self._calls: dict[str, deque[float]] = {}
        self._last_token_get: dict[tuple[str, str], datetime] = {}

    # -- VendorApp hooks ---------------------------------------------------------------------
    def vendor_method(self, request: Request) -> str | None:
        pairs = request.form() if request.http_method == "POST" else None
        return dict(pairs).get("method") if pairs else None

    def throttle(self, request: Request) -> Response | None:
        """Jimi's per-app-key frequency limit (1006), applied before anything is verified."""
        if request.http_method != "POST" or request.path != ROUTE_PATH:
            return None
        params = dict(request.form() or ())
        method, app_key = params.get("method"), params.get("app_key")
        if method == TOKEN_GET or app_key != APP_KEY:
            return None
        if self.knobs.consume("force_1006_next"):
            return _error(method, 1006, "request frequency too high")
        window, limit = self.knobs.rate_limit_window_s, self.knobs.rate_limit_calls
        with self._lock:
            stamps = self._calls.setdefault(app_key, deque())
            t = self._rate_clock()
            while stamps and stamps[0] <= t - window:
                stamps.popleft()
            if len(stamps) >= limit:
                return _error(method, 1006, "request frequency too high")
            stamps.append(t)
        return None

    def handle(self, request: Request) -> Response:
        if request.http_method != "POST":
            return Response.html(405, "Method Not Allowed",
                                 f"Request method '{request.http_method}' not supported")
        if request.path != ROUTE_PATH:
            return Response.html(404, "Not Found", "The requested resource is not available")
        pairs = request.form()
        if pairs is None:
            return Response.html(200, "Bad Request",
                                 f"Content type '{request.content_type or 'none'}' not supported")
        method = dict(pairs).get("method")
        try:
            call = self._verify(pairs)
            spec = _METHODS[call.method]
            for name in spec.required:
                if not call.params.get(name):
                    raise _JimiError(1001, f"missing required parameter: {name}")
            if spec.needs_token:
                call = self._authenticate(call)
            payload = spec.handler(self, call)
            if self.knobs.corrupt_rows_next and call.method in _EVENT_METHODS:
                _corrupt_rows(payload, self.knobs)
        except _JimiError as exc:
            return _error(method, exc.code, exc.message)
        return Response.json(payload, vendor_method=method, vendor_code=payload["code"])

    # -- verification ------------------------------------------------------------------------
    def _verify(self, pairs: list[tuple[str, str]]) -> _Call:
        params: dict[str, str] = {}
        for key, value in pairs:
            if key in params:
                raise _JimiError(1001, f"duplicate parameter: {key}")
            params[key] = value
        for name in COMMON_PARAMS:
            if not params.get(name):
                raise _JimiError(1001, f"missing required parameter: {name}")
        if params["app_key"] != APP_KEY:
            raise _JimiError(1001, "app_key invalid")
        if params["sign_method"] != "md5":
            raise _JimiError(1001, "sign_method must be md5")
        if params["v"] != "1.0" or params["format"] != "json":
            raise _JimiError(1001, "unsupported v or format (expected v=1.0, format=json)")
        if params["sign"] != _sign(params, APP_SECRET):
            raise _JimiError(1001, "sign invalid")
        stamp = _parse_time(params, "timestamp")
        if abs(stamp - self.now()) > TIMESTAMP_TOLERANCE:
            raise _JimiError(1001, "timestamp out of range: must be current UTC time "
                                   "within 10 minutes")
        if params["method"] not in _METHODS:
            raise _JimiError(1001, "method not found")
        return _Call(method=params["method"], params=params, app_key=params["app_key"])

    def _authenticate(self, call: _Call) -> _Call:
        raw = call.params.get("access_token")
        if not raw:
            raise _JimiError(1001, "missing required parameter: access_token")
        token = self._codec.decode(raw)
        if token is None:
            raise _JimiError(1004, "access_token invalid")
        self._check_token(token, call.app_key, "a", "access_token")
        if self.now() >= token.expires_at:
            raise _JimiError(1004, "access_token expired")
        return _Call(method=call.method, params=call.params, app_key=call.app_key,
                     account=token.account)

    def _check_token(self, token: _Token, app_key: str, kind: str, name: str) -> None:
        revoked_before = self.knobs.revoke_tokens_issued_before
        if (token.kind != kind or token.app_key != app_key or token.account not in self._accounts
                or (revoked_before is not None and token.issued_at < revoked_before)):
            raise _JimiError(1004, f"{name} invalid")

    # -- tokens ------------------------------------------------------------------------------
    def token_get(self, call: _Call) -> dict[str, Any]:
        user_id = call.params["user_id"]
        pwd = call.params["user_pwd_md5"].lower()
        expected = hashlib.md5(USER_PASSWORD.encode("utf-8")).hexdigest()
        if user_id not in self._accounts or not hmac.compare_digest(pwd, expected):
            raise _JimiError(1002, "illegal user: user_id or password is wrong")
        lifetime = _expires_in(call.params)
        now = self.now()
        key = (call.app_key, user_id)
        with self._lock:
            last = self._last_token_get.get(key)
            if last is not None and now - last < timedelta(seconds=self.knobs.token_get_interval_s):
                raise _JimiError(1006, "jimi.oauth.token.get is limited to once a minute")
            self._last_token_get[key] = now
        return _ok(self._issue(user_id, call.app_key, now, lifetime))

    def token_refresh(self, call: _Call) -> dict[str, Any]:
        access = self._codec.decode(call.params["access_token"])
        refresh = self._codec.decode(call.params["refresh_token"])
        if access is None:
            raise _JimiError(1004, "access_token invalid")
        if refresh is None:
            raise _JimiError(1004, "refresh_token invalid")
        self._check_token(access, call.app_key, "a", "access_token")
        self._check_token(refresh, call.app_key, "r", "refresh_token")
        if refresh.session != access.session or refresh.account != access.account:
            raise _JimiError(1004, "refresh_token does not belong to access_token")
        now = self.now()
        if now >= refresh.expires_at:
            raise _JimiError(1004, "refresh_token expired")
        return _ok(self._issue(access.account, call.app_key, now, _expires_in(call.params)))

    def _issue(self, account: str, app_key: str, now: datetime, lifetime_s: int) -> dict[str, Any]:
        if self.knobs.token_lifetime_s is not None:
            lifetime_s = self.knobs.token_lifetime_s
        session = secrets.token_hex(8)
        access = _Token(account, app_key, "a", session, now, now + timedelta(seconds=lifetime_s))
        refresh = _Token(account, app_key, "r", session, now, now + REFRESH_LIFETIME)
        return {"accessToken": self._codec.encode(access), "expiresIn": lifetime_s,
                "account": account, "appKey": app_key,
                "refreshToken": self._codec.encode(refresh), "time": _fmt(now)}

    # -- accounts and devices ----------------------------------------------------------------
    def child_list(self, call: _Call) -> dict[str, Any]:
        target = self._target(call, "target")
        return _ok([{"account": a.account_id, "name": a.name, "parentAccount": a.parent_id,
                     "type": "user"}
                    for a in self.world.child_accounts(target) if a.platform == PLATFORM])

    def device_list(self, call: _Call) -> dict[str, Any]:
        target = self._target(call, "target")
        return _ok([{"imei": d.imei, "deviceName": d.device_name, "mcType": d.model,
                     "sim": d.sim_msisdn, "expiration": _expiration(d),
                     "activationTime": _activation(d), "vehicleName": d.vehicle_name,
                     "vehicleNumber": d.vehicle_number, "driverName": d.driver_name,
                     "enabledFlag": 1}
                    for d in self._direct_devices(target)])

    def device_detail(self, call: _Call) -> dict[str, Any]:
        d = self._device(call, call.params["imei"].strip())
        return _ok({"imei": d.imei, "deviceName": d.device_name, "account": d.account_id,
                    "mcType": d.model, "sim": d.sim_msisdn, "iccid": d.sim_iccid,
                    "expiration": _expiration(d), "activationTime": _activation(d),
                    "vehicleName": d.vehicle_name, "vehicleNumber": d.vehicle_number,
                    "driverName": d.driver_name,
                    "currentMileage": _odometer(self.world.odometer_km(d.imei, self.now())),
                    "deviceGroup": "Default group", "electQuantity": ""})

    def location_list(self, call: _Call) -> dict[str, Any]:
        target = self._target(call, "target")
        now = self.now()
        rows = (self._location_row(d, now) for d in self._direct_devices(target))
        return _ok([row for row in rows if row is not None])

    def location_get(self, call: _Call) -> dict[str, Any]:
        now = self.now()
        rows = (self._location_row(d, now) for d in self._devices(call, "imeis"))
        return _ok([row for row in rows if row is not None])

    def _location_row(self, d: Device, now: datetime) -> dict[str, Any] | None:
        fix = self.world.last_fix(d.imei, now)
        if fix is None:
            return None
        expired = d.expiration_date < now.date()
        satellites = int(fix["satellites"])
        voltage = 12.2 + (d.index % 7) * 0.1 + (1.6 if fix["acc_on"] else 0.0)
        return {
            "imei": d.imei, "deviceName": d.device_name,
            "status": "1" if fix["speed_kmh"] > 0 else "0",
            "lat": 0 if expired else round(float(fix["lat"]), 6),
            "lng": 0 if expired else round(float(fix["lng"]), 6),
            "speed": str(round(float(fix["speed_kmh"]))),
            "direction": str(round(float(fix["direction_deg"])) % 360),
            "gpsTime": _fmt(fix["gps_time"]), "hbTime": _fmt(fix["received_at"]),
            "accStatus": "1" if fix["acc_on"] else "0",
            "gpsSignal": str(min(4, satellites // 3)), "gpsNum": str(satellites),
            "currentMileage": _odometer(float(fix["odometer_km"])),
            "powerValue": f"{voltage:.2f}", "elecQuantity": "", "posType": "GPS",
            "expireFlag": "0" if expired else "1", "activationFlag": "1",
        }

    # -- history -----------------------------------------------------------------------------
    def track_mileage(self, call: _Call) -> dict[str, Any]:
        devices = self._devices(call, "imeis")
        begin, end = _window(call.params, "begin_time", "end_time")
        start_row = _int_param(call.params, "start_row", default=0, minimum=0)
        page_size = min(_int_param(call.params, "page_size", default=MAX_PAGE_ROWS, minimum=1),
                        MAX_PAGE_ROWS)
        per_km = 1000.0 if self.knobs.mileage_unit == "m" else 1.0
        now = self.now()
        rows: list[dict[str, Any]] = []
        totals = []
        for d in devices:
            total_km = 0.0
            for day in _days(begin, min(end, now)):
                for trip in self.world.day(d.imei, day).trips:
                    if begin <= trip.start < end and trip.end <= now:
                        total_km += trip.distance_km
                        rows.append(_mileage_row(d, trip, per_km))
            totals.append({"imei": d.imei, "totalMileage": _distance(total_km * per_km, per_km)})
        page = rows[start_row:start_row + page_size]
        return {"code": 0, "message": "success", "result": page, "data": totals}

    def track_list(self, call: _Call) -> dict[str, Any]:
        imei = call.params["imei"].strip()
        if "," in imei:
            raise _JimiError(1001, "imei must be a single IMEI")
        d = self._device(call, imei)
        begin, end = _window(call.params, "begin_time", "end_time")
        now = self.now()
        if end >= now:
            raise _JimiError(1001, "end_time must be earlier than the current time")
        if begin < _months_before(now, TRACK_HISTORY_MONTHS):
            raise _JimiError(1001, "begin_time must be within the last 3 months")
        if end - begin > TRACK_MAX_WINDOW:
            raise _JimiError(1001, "time range over 7 days")
        frames = [self.world.day(d.imei, day).points for day in _days(begin, end, inclusive=True)]
        frames = [f for f in frames if f.height]
        if not frames:
            return _ok([])
        hour = "%-H" if d.index % 4 == 1 else "%H"
        altitude = (pl.lit(0) if d.model in _NO_ALTITUDE_MODELS
                    else pl.col("altitude_m").round(0).cast(pl.Int64))
        points = (pl.concat(frames, how="vertical_relaxed")
                  .filter(pl.col("gps_time").is_between(begin, end, closed="both")
                          & (pl.col("received_at") <= now))
                  .sort("gps_time")
                  .select(
                      lat=pl.col("lat").round(6), lng=pl.col("lng").round(6),
                      gpsTime=pl.col("gps_time").dt.strftime(f"%Y-%m-%d {hour}:%M:%S"),
                      gpsSpeed=pl.col("speed_kmh").round(0).cast(pl.Int64),
                      direction=(pl.col("direction_deg").round(0).cast(pl.Int64) % 360),
                      satellite=pl.col("satellites").cast(pl.Int64),
                      altitude=altitude,
                      accStatus=pl.when(pl.col("acc_on")).then(pl.lit("1")).otherwise(pl.lit("0")),
                      ignition=pl.when(pl.col("acc_on")).then(pl.lit("ON"))
                      .otherwise(pl.lit("OFF")),
                      gpsMode=pl.when(pl.col("late")).then(pl.lit("1")).otherwise(pl.lit("0")),
                  ))
        return _ok(points.to_dicts())

    def parking(self, call: _Call) -> dict[str, Any]:
        account = self._target(call, "account")
        devices = self._devices(call, "imeis", under=account)
        start, end = _window(call.params, "start_time", "end_time")
        page_size = _int_param(call.params, "page_size", minimum=1, maximum=MAX_PAGE_ROWS)
        start_row = _int_param(call.params, "start_row", minimum=0)
        if start_row % page_size:
            raise _JimiError(1001, "start_row must be a multiple of page_size")
        acc_type = call.params.get("acc_type", "")
        if acc_type not in ("", "0", "1"):
            raise _JimiError(1001, "acc_type must be 0 or 1")
        rows: list[dict[str, Any]] = []
        if acc_type:
            now = self.now()
            for d in devices:
                for day in _days(start, min(end, now)):
                    for stop in self.world.day(d.imei, day).stops:
                        if (stop.kind == "parking" and start <= stop.start < end
                                and stop.end <= now and not (acc_type == "1" and stop.ignition_on)):
                            rows.append(_parking_row(d, stop))
        return {"code": 0, "message": "success", "result": None,
                "data": {"rows": rows[start_row:start_row + page_size],
                         "dataTotalRows": str(len(rows))}}

    def alarm_list(self, call: _Call) -> dict[str, Any]:
        devices = self._devices(call, "imeis")
        begin, end = _window(call.params, "begin_time", "end_time")
        if end - begin > ALARM_MAX_WINDOW:
            raise _JimiError(1001, "time range over 1 month")
        page_no = _int_param(call.params, "page_no", default=1, minimum=1)
        page_size = _int_param(call.params, "page_size", default=MAX_PAGE_ROWS, minimum=1,
                               maximum=MAX_PAGE_ROWS)
        now = self.now()
        found = []
        for d in devices:
            for day in _days(begin, min(end, now), inclusive=True):
                for alarm in self.world.day(d.imei, day).alarms:
                    if begin <= alarm.time < end and alarm.time <= now:
                        found.append((alarm.time, d.imei, d, alarm))
        found.sort(key=lambda item: (item[0], item[1]))
        reachable = found[:self.knobs.alarm_rows_reachable]
        first = (page_no - 1) * page_size
        page = [_alarm_row(d, alarm) for _, _, d, alarm in reachable[first:first + page_size]]
        return {"code": "0", "msg": "success", "result": page}

    # -- scope helpers -----------------------------------------------------------------------
    def _in_scope(self, account_id: str, root: str) -> bool:
        """True if account_id is root or below it (the only accounts a token may read)."""
        current: str | None = account_id
        while current is not None:
            if current == root:
                return True
            account = self._accounts.get(current)
            current = account.parent_id if account is not None else None
        return False

    def _target(self, call: _Call, name: str) -> str:
        target = call.params[name].strip()
        if target not in self._accounts or not self._in_scope(target, call.account or ""):
            raise _JimiError(1002, f"illegal user: {name} is not this account or one below it")
        return target

    def _direct_devices(self, account_id: str) -> list[Device]:
        return [d for d in self.world.devices_of_account(account_id) if d.platform == PLATFORM]

    def _device(self, call: _Call, imei: str, under: str | None = None) -> Device:
        try:
            d = self.world.device(imei)
        except KeyError:
            raise _JimiError(1002, f"illegal device: {imei}") from None
        if d.platform != PLATFORM or not self._in_scope(d.account_id, under or call.account or ""):
            raise _JimiError(1002, f"illegal device: {imei}")
        return d

    def _devices(self, call: _Call, name: str, under: str | None = None) -> list[Device]:
        imeis = list(dict.fromkeys(i.strip() for i in call.params[name].split(",") if i.strip()))
        if not imeis:
            raise _JimiError(1001, f"missing required parameter: {name}")
        if len(imeis) > MAX_IMEIS:
            raise _JimiError(1001, f"{name}: at most {MAX_IMEIS} IMEIs per call")
        return [self._device(call, imei, under) for imei in imeis]


_METHODS: dict[str, _MethodSpec] = {
    TOKEN_GET: _MethodSpec(TracksolidApp.token_get, ("user_id", "user_pwd_md5", "expires_in"),
                           needs_token=False),
    TOKEN_REFRESH: _MethodSpec(TracksolidApp.token_refresh,
                               ("access_token", "refresh_token", "expires_in"), needs_token=False),
    "jimi.user.child.list": _MethodSpec(TracksolidApp.child_list, ("target",)),
    "jimi.user.device.list": _MethodSpec(TracksolidApp.device_list, ("target",)),
    "jimi.track.device.detail": _MethodSpec(TracksolidApp.device_detail, ("imei",)),
    "jimi.user.device.location.list": _MethodSpec(TracksolidApp.location_list, ("target",)),
    "jimi.device.location.get": _MethodSpec(TracksolidApp.location_get, ("imeis",)),
    "jimi.device.track.mileage": _MethodSpec(TracksolidApp.track_mileage,
                                             ("imeis", "begin_time", "end_time")),
    "jimi.device.track.list": _MethodSpec(TracksolidApp.track_list,
                                          ("imei", "begin_time", "end_time")),
    "jimi.open.platform.report.parking": _MethodSpec(
        TracksolidApp.parking,
        ("account", "imeis", "start_time", "end_time", "start_row", "page_size")),
    ALARM_LIST: _MethodSpec(TracksolidApp.alarm_list, ("imeis", "begin_time", "end_time")),
}


def make_server(world: World, host: str = "127.0.0.1", port: int = 0, *,
                now: Callable[[], datetime] | None = None,
                rate_clock: Callable[[], float] = time.monotonic,
                knobs: TracksolidKnobs | None = None,
                **knob_values: Any) -> SandboxServer[TracksolidKnobs]:
    """A bound, not yet started Tracksolid sandbox over `world` (start() or use `with`).

    `now` overrides the sandbox clock (default `world.now`); `rate_clock` drives the 1006
    frequency window; extra keyword arguments set `TracksolidKnobs` fields.
    """
    knobs = knobs if knobs is not None else TracksolidKnobs()
    if knob_values:
        knobs.set(**knob_values)
    app = TracksolidApp(world, knobs, now=now, rate_clock=rate_clock)
    return SandboxServer(app, knobs, host=host, port=port)


# Methods whose rows are events or positions (never the device inventory the client walks).
_EVENT_METHODS = frozenset({
    "jimi.device.track.mileage", "jimi.device.track.list", "jimi.open.platform.report.parking",
    "jimi.device.alarm.list", "jimi.user.device.location.list", "jimi.device.location.get",
})


def _corrupt_rows(payload: dict[str, Any], knobs: TracksolidKnobs) -> None:
    """Damage data rows the way broken devices and platform bugs do, so rejects can be tested.

    Defects rotate: an IMEI with a wrong check digit, a latitude off the globe, an end before
    its start; each row gets the first defect its fields allow.
    """
    rows = payload.get("result")
    if not isinstance(rows, list):
        rows = (payload.get("data") or {}).get("rows") if isinstance(payload.get("data"), dict) else None
    for index, row in enumerate(rows or []):
        if not isinstance(row, dict):
            continue
        defects = []
        if "imei" in row:
            defects.append("imei")
        if "lat" in row:
            defects.append("lat")
        if "startTime" in row and "endTime" in row:
            defects.append("order")
        if not defects or not knobs.consume("corrupt_rows_next"):
            continue
        defect = defects[index % len(defects)]
        if defect == "imei":
            imei = str(row["imei"])
            row["imei"] = imei[:-1] + str((int(imei[-1]) + 1) % 10)
        elif defect == "lat":
            row["lat"] = 123.456
        else:
            row["startTime"], row["endTime"] = row["endTime"], row["startTime"]


# -- protocol helpers ------------------------------------------------------------------------
def _sign(params: Mapping[str, str], secret: str) -> str:
    text = "".join(f"{k}{params[k]}" for k in sorted(params) if k != "sign")
    return hashlib.md5(f"{secret}{text}{secret}".encode("utf-8")).hexdigest().upper()


def _ok(result: Any) -> dict[str, Any]:
    return {"code": 0, "message": "success", "result": result}


def _error(method: str | None, code: int, message: str) -> Response:
    if method == ALARM_LIST:
        payload: dict[str, Any] = {"code": str(code), "msg": message, "result": None}
    else:
        payload = {"code": code, "message": message, "result": None}
    return Response.json(payload, vendor_method=method, vendor_code=code)


def _parse_time(params: Mapping[str, str], name: str) -> datetime:
    try:
        return datetime.strptime(params[name].strip(), TIME_FORMAT)
    except ValueError:
        raise _JimiError(1001, f"{name} must be UTC 'yyyy-MM-dd HH:mm:ss'") from None


def _window(params: Mapping[str, str], begin_name: str, end_name: str) -> tuple[datetime, datetime]:
    begin, end = _parse_time(params, begin_name), _parse_time(params, end_name)
    if begin > end:
        raise _JimiError(1001, f"{begin_name} must not be later than {end_name}")
    return begin, end


def _int_param(params: Mapping[str, str], name: str, *, default: int | None = None,
               minimum: int | None = None, maximum: int | None = None) -> int:
    raw = params.get(name, "").strip()
    if not raw:
        if default is None:
            raise _JimiError(1001, f"missing required parameter: {name}")
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _JimiError(1001, f"{name} must be an integer") from None
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise _JimiError(1001, f"{name} out of range")
    return value


def _expires_in(params: Mapping[str, str]) -> int:
    return min(_int_param(params, "expires_in", minimum=1), MAX_TOKEN_LIFETIME_S)


def _days(begin: datetime, end: datetime, inclusive: bool = False) -> list[date]:
    """UTC days touched by [begin, end) -- or [begin, end] when inclusive."""
    last = end if inclusive else end - timedelta(microseconds=1)
    if last < begin:
        return []
    return [begin.date() + timedelta(days=n) for n in range((last.date() - begin.date()).days + 1)]


def _months_before(moment: datetime, months: int) -> datetime:
    year, month = divmod(moment.year * 12 + moment.month - 1 - months, 12)
    day = min(moment.day, calendar.monthrange(year, month + 1)[1])
    return moment.replace(year=year, month=month + 1, day=day)


def _fmt(moment: datetime) -> str:
    return moment.strftime(TIME_FORMAT)


def _iso_z(moment: datetime) -> str:
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


def _epoch(moment: datetime) -> int:
    return calendar.timegm(moment.timetuple())


def _from_epoch(seconds: int) -> datetime:
    return datetime(1970, 1, 1) + timedelta(seconds=seconds)


def _odometer(km: float) -> str:
    # Jimi prints the float's full binary expansion ("12345.6481649691599485").
    return f"{km:.16f}"


def _distance(value: float, per_km: float) -> str:
    return str(round(value)) if per_km != 1.0 else str(round(value, 3))


def _expiration(d: Device) -> str:
    return f"{d.expiration_date:%Y-%m-%d} 23:59:59"


def _activation(d: Device) -> str:
    # The World knows the activation day only; a stable time of day looks like the real field.
    moment = datetime.combine(d.activation_date, datetime.min.time()) + timedelta(
        seconds=int(d.imei[-5:]) % 86400)
    return _fmt(moment)


def _mileage_row(d: Device, trip: Any, per_km: float) -> dict[str, Any]:
    duration_s = int((trip.end - trip.start).total_seconds())
    return {"imei": d.imei, "startTime": _fmt(trip.start), "endTime": _fmt(trip.end),
            "distance": _distance(trip.distance_km * per_km, per_km),
            "avgSpeed": str(round(trip.avg_speed_kmh)), "maxSpeed": str(round(trip.max_speed_kmh)),
            ("elapsed" if d.index % 2 else "runTimeSecond"): duration_s,
            "idleSecond": int(trip.idle_s)}


def _parking_row(d: Device, stop: Any) -> dict[str, Any]:
    duration_s = int((stop.end - stop.start).total_seconds())
    row: dict[str, Any] = {"imei": d.imei, "deviceName": d.device_name,
                           "startTime": _iso_z(stop.start), "endTime": _iso_z(stop.end),
                           "durSecond": duration_s}
    if not stop.ignition_on and d.index % 4 != 0:
        row["stopSecond"] = duration_s
    row.update({"addr": "", "lat": round(stop.lat, 6), "lng": round(stop.lng, 6),
                "accStatus": "1" if stop.ignition_on else "0"})
    return row


def _alarm_row(d: Device, alarm: Any) -> dict[str, Any]:
    if alarm.kind == "overspeed":
        type_id, type_name = _OVERSPEED_DEVICE if d.index % 2 == 0 else _OVERSPEED_PLATFORM
    else:
        type_id, type_name = _ALARM_TYPES[alarm.kind]
    name_key = "alertTypeName" if (d.index + alarm.time.second) % 5 == 0 else "alarmTypeName"
    row: dict[str, Any] = {"deviceName": d.device_name, "imei": d.imei, "model": d.model,
                           "account": d.account_id, "alertTypeId": type_id, name_key: type_name,
                           "alertTime": _fmt(alarm.time), "positioningTime": _fmt(alarm.time),
                           "lat": round(alarm.lat, 6), "lng": round(alarm.lng, 6),
                           "speed": str(round(alarm.speed_kmh))}
    if alarm.geofence_id is not None:
        row["geoid"] = alarm.geofence_id
    return row


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")
