"""Fake AOVX cloud (`https://cloud.aovx.com/prod` style) serving the World's OTA attempts.

It speaks the one documented endpoint (`vendor-apis/aovx-ota-report.md`) as a RuoYi backend
would (FIELD-NOTES.md): the API lives under `API_PREFIX` ("/prod"), so a client's base URL is
`http://127.0.0.1:PORT/prod`, exactly as it would be `https://cloud.aovx.com/prod`.

Auth. The doc only says "add token in Headers". RuoYi reads the `Authorization` header and strips
a leading "Bearer " when present, so both `Authorization: Bearer <token>` and a bare
`Authorization: <token>` pass; a header literally named `token` is accepted as well (vendor
docs that say "token in headers" sometimes mean that). The client sends
`Authorization: Bearer <token>`. The token is a configured value (`TOKEN`, knob `token`): the
login that yields it is undocumented. A missing or wrong token is answered like RuoYi's
authentication entry point: HTTP 200, `{"code": 401, "msg": "..."}` (`msg`, not `message`).

`POST /prod/system/asset/command/queryTerminalOtaReport`, JSON body
`{ids: [terminalId], startTime, endTime ("yyyy-MM-dd HH:mm:ss", UTC), pageNum (1-based, default
1), pageSize (default 20, 1..page_size_cap)}` -> HTTP 200
`{code: 200, message: "Operation succeeded", data: {total: "<rows>", size: "<pages>", data: [row]}}`
with `total` and `size` as STRINGS (as the doc types them). Rows are the OTA attempts of the
requested terminals whose LAST UPDATE, as of the sandbox clock, lies in [startTime, endTime),
sorted by that update (then by mark): an attempt that moves from 1 to 3 leaves the window of its
"sent" update and appears in the window of its success. Commands not sent yet do not exist.
Retention: the backend keeps an attempt for `retention_days` (knob, default RETENTION_DAYS = 365;
AOVX documents none) after its last update; older ones are gone, whatever window is asked for.
Row: `terminalId`, `terminalNum`, `upgradeInfo` (a JSON object ENCODED IN A STRING:
`{"TYPE","MODE","PROTOCOL","VERSION","URL"}`), `status` (int: -1, 1, 2, 3, 4), `sendTime` and
`dateTime` (ISO UTC with milliseconds and "Z"), `sendTimestamp` and `dateTimestamp` (epoch ms as
JSON numbers: the doc's table types sendTimestamp as String but its example, like the real
answer, shows a number), `mark` (the attempt id, 32 upper-case hex). Unknown terminal ids give
no rows (an SQL `IN`), not an error. A page past the last one is empty, or the last page again
with knob `reasonable_paging` (PageHelper's `reasonable=true`).
Parameter errors: HTTP 200 `{code: 500, message: "..."}` (missing or empty `ids`, ids that are
not strings, more than `max_ids` ids, missing or malformed times, endTime before startTime,
pageNum < 1, pageSize outside 1..page_size_cap, a body that is not a JSON object). A GET is
`{code: 500, msg: "Request method 'GET' not supported"}` (RuoYi's exception handler).

`GET /prod/system/asset/terminal/list` (SANDBOX-ONLY convenience: AOVX documents no way to list
terminal ids, and a real deployment must be given them) -> RuoYi `TableDataInfo`
`{code: 200, msg: "查询成功", rows: [{terminalId, terminalNum, imei}], total: <int>}` over the
World's AOVX devices activated by the sandbox clock, ordered by IMEI; optional query parameters
`pageNum`/`pageSize` page it (without them, every row, as RuoYi does).

Any other path: Spring Boot's JSON 404 (`{timestamp, status: 404, error: "Not Found", path}`).
Knobs (`AovxKnobs`): `force_500_next` answers the next N calls `{code: 500, message: "..."}`
(a RuoYi internal error, HTTP 200); `force_401_next` rejects the next N tokens (as after a
token expiry); plus every generic FaultKnobs fault (latency, 503 bursts, broken bodies).
"""

from __future__ import annotations

import calendar
import hmac
import json
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Callable, Mapping
from urllib.parse import parse_qsl

from fleet_pipeline.sandbox.server import FaultKnobs, Request, Response, SandboxServer

if TYPE_CHECKING:
    from fleet_pipeline.sandbox.world.firmware import OtaAttempt
    from fleet_pipeline.sandbox.world import Device, World

__all__ = [
    "API_PREFIX",
    "CREDENTIALS",
    "OTA_REPORT_PATH",
    "RETENTION_DAYS",
    "TERMINAL_LIST_PATH",
    "TOKEN",
    "AovxApp",
    "AovxKnobs",
    "make_server",
    "ota_row",
]

TOKEN = "sandbox-aovx-token"
CREDENTIALS: Mapping[str, str] = {"token": TOKEN}
API_PREFIX = "/prod"
OTA_REPORT_PATH = "/system/asset/command/queryTerminalOtaReport"
TERMINAL_LIST_PATH = "/system/asset/terminal/list"
OTA_REPORT = "queryTerminalOtaReport"
TERMINAL_LIST = "terminal/list"
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
DEFAULT_PAGE_SIZE = 20
RETENTION_DAYS = 365
PLATFORM = "aovx"


@dataclass
class AovxKnobs(FaultKnobs):
    """Generic faults plus the AOVX behaviour tests need to provoke (see the module doc)."""

    token: str = TOKEN
    force_500_next: int = 0
    force_401_next: int = 0
    page_size_cap: int = 100
    max_ids: int | None = None        # undocumented; None = no limit
    reasonable_paging: bool = False   # a page past the end repeats the last page
    retention_days: int = RETENTION_DAYS   # attempts last updated longer ago are purged


class _AovxError(Exception):
    def __init__(self, code: int, text: str, field_name: str = "message") -> None:
        super().__init__(text)
        self.code = code
        self.text = text
        self.field_name = field_name


class AovxApp:
    """The AOVX protocol over one World (see the module docstring for every rule)."""

    vendor = "aovx"

    def __init__(self, world: World, knobs: AovxKnobs, now: Callable[[], datetime] | None = None) -> None:
        self.world = world
        self.knobs = knobs
        self.now: Callable[[], datetime] = now if now is not None else world.now
        self._lock = threading.Lock()
        self._devices: list[Device] | None = None

    # -- VendorApp hooks ---------------------------------------------------------------------
    def vendor_method(self, request: Request) -> str | None:
        return {
            API_PREFIX + OTA_REPORT_PATH: OTA_REPORT,
            API_PREFIX + TERMINAL_LIST_PATH: TERMINAL_LIST,
        }.get(request.path.rstrip("/"))

    def throttle(self, request: Request) -> Response | None:
        return None   # AOVX documents no rate limit and none has been observed

    def handle(self, request: Request) -> Response:
        method = self.vendor_method(request)
        if not request.path.startswith(API_PREFIX + "/"):
            return _not_found(request.path, self.now())
        try:
            # RuoYi's security filter runs before routing: no token, no 404 either
            self._authenticate(request)
            if method is None:
                return _not_found(request.path, self.now())
            if self.knobs.consume("force_500_next"):
                raise _AovxError(500, "系统繁忙，请稍后再试")   # "system busy, try again later"
            expected = "POST" if method == OTA_REPORT else "GET"
            if request.http_method != expected:
                raise _AovxError(500, f"Request method '{request.http_method}' not supported", "msg")
            payload = self.ota_report(request) if method == OTA_REPORT else self.terminal_list(request)
        except _AovxError as exc:
            return Response.json({"code": exc.code, exc.field_name: exc.text},
                                 vendor_method=method, vendor_code=exc.code)
        return Response.json(payload, vendor_method=method, vendor_code=200)

    # -- auth --------------------------------------------------------------------------------
    def _authenticate(self, request: Request) -> None:
        presented = request.header("Authorization").strip()
        if presented.startswith("Bearer "):
            presented = presented[len("Bearer "):].strip()
        presented = presented or request.header("token").strip()
        rejected = self.knobs.consume("force_401_next")
        if rejected or not presented or not hmac.compare_digest(
            presented.encode("utf-8"), self.knobs.token.encode("utf-8")
        ):
            # RuoYi's own words: "request to <path>: authentication failed, cannot access system resources"
            raise _AovxError(401, f"请求访问：{request.path}，认证失败，无法访问系统资源", "msg")

    # -- queryTerminalOtaReport --------------------------------------------------------------
    def ota_report(self, request: Request) -> dict[str, Any]:
        body = request.json()
        if not isinstance(body, dict):
            raise _AovxError(500, "Required request body is missing or is not a JSON object")
        ids = body.get("ids")
        if not isinstance(ids, list) or not ids:
            raise _AovxError(500, "ids must not be empty")
        if not all(isinstance(i, str) for i in ids):
            raise _AovxError(500, "ids must be a list of strings")
        if self.knobs.max_ids is not None and len(ids) > self.knobs.max_ids:
            raise _AovxError(500, f"at most {self.knobs.max_ids} ids per query")
        start, end = _moment(body, "startTime"), _moment(body, "endTime")
        if end < start:
            raise _AovxError(500, "endTime must not be before startTime")
        page_num = _integer(body, "pageNum", 1)
        page_size = _integer(body, "pageSize", DEFAULT_PAGE_SIZE)
        if page_num < 1:
            raise _AovxError(500, "pageNum must be at least 1")
        if not 1 <= page_size <= self.knobs.page_size_cap:
            raise _AovxError(500, f"pageSize must be between 1 and {self.knobs.page_size_cap}")

        now = self.now()
        kept_from = now - timedelta(days=self.knobs.retention_days)
        found: list[tuple[datetime, str, OtaAttempt, str]] = []
        for terminal_id in dict.fromkeys(ids):
            try:
                imei = self.world.imei_for_terminal(terminal_id)
            except KeyError:
                continue
            for attempt in self.world.ota_attempts(imei):
                seen = attempt.last_update_at(now)
                if seen is not None and start <= seen < end and seen >= kept_from:
                    found.append((seen, attempt.attempt_id, attempt, terminal_id))
        found.sort(key=lambda row: row[:2])
        pages = -(-len(found) // page_size)
        if self.knobs.reasonable_paging and pages:
            page_num = min(page_num, pages)
        chunk = found[(page_num - 1) * page_size: page_num * page_size]
        return {
            "code": 200,
            "message": "Operation succeeded",
            "data": {
                "total": str(len(found)),
                "size": str(pages),
                "data": [ota_row(self.world, attempt, now) for _, _, attempt, _ in chunk],
            },
        }

    # -- terminal/list (sandbox only) --------------------------------------------------------
    def terminal_list(self, request: Request) -> dict[str, Any]:
        params = dict(parse_qsl(request.query, keep_blank_values=True))
        today = self.now().date()
        devices = sorted((d for d in self._aovx_devices() if d.activation_date <= today), key=lambda d: d.imei)
        rows = [
            {"terminalId": self.world.aovx_terminal_id(d.imei),
             "terminalNum": self.world.aovx_terminal_num(d.imei),
             "imei": d.imei}
            for d in devices
        ]
        if "pageNum" in params or "pageSize" in params:
            page_num = _integer(params, "pageNum", 1)
            page_size = _integer(params, "pageSize", 10)
            if page_num < 1 or not 1 <= page_size <= self.knobs.page_size_cap:
                raise _AovxError(500, f"pageNum must be >= 1 and pageSize between 1 and {self.knobs.page_size_cap}")
            shown = rows[(page_num - 1) * page_size: page_num * page_size]
        else:
            shown = rows
        return {"total": len(rows), "rows": shown, "code": 200, "msg": "查询成功"}

    def _aovx_devices(self) -> list[Device]:
        with self._lock:
            if self._devices is None:
                self._devices = [d for d in self.world.devices if d.firmware_platform == PLATFORM]
            return self._devices


def ota_row(world: World, attempt: OtaAttempt, now: datetime) -> dict[str, Any]:
    """One report row as AOVX sends it, for an attempt as it stands at `now`."""
    updated = attempt.last_update_at(now)
    status = attempt.status_at(now)
    if updated is None or status is None:
        raise ValueError(f"attempt {attempt.attempt_id} was not sent yet at {now}")
    info = {"TYPE": attempt.upgrade_type, "MODE": attempt.upgrade_mode, "PROTOCOL": attempt.protocol,
            "VERSION": attempt.version, "URL": attempt.url}
    return {
        "terminalId": world.aovx_terminal_id(attempt.imei),
        "terminalNum": world.aovx_terminal_num(attempt.imei),
        "upgradeInfo": json.dumps(info, separators=(",", ":")),
        "status": status,
        "sendTime": _iso_ms(attempt.sent_at),
        "sendTimestamp": _epoch_ms(attempt.sent_at),
        "dateTime": _iso_ms(updated),
        "mark": attempt.attempt_id,
        "dateTimestamp": _epoch_ms(updated),
    }


def make_server(world: World, host: str = "127.0.0.1", port: int = 0, *,
                now: Callable[[], datetime] | None = None,
                knobs: AovxKnobs | None = None,
                **knob_values: Any) -> SandboxServer[AovxKnobs]:
    """A bound, not yet started AOVX sandbox over `world` (start() or use `with`).

    The API lives under `base_url + API_PREFIX`; `now` overrides the sandbox clock (default
    `world.now`); extra keyword arguments set knobs.
    """
    knobs = knobs if knobs is not None else AovxKnobs()
    if knob_values:
        knobs.set(**knob_values)
    return SandboxServer(AovxApp(world, knobs, now=now), knobs, host=host, port=port)


# -- helpers -----------------------------------------------------------------------------------
def _moment(body: Mapping[str, Any], name: str) -> datetime:
    value = body.get(name)
    if value is None or value == "":
        raise _AovxError(500, f"{name} must not be empty")
    try:
        return datetime.strptime(str(value), TIME_FORMAT)
    except ValueError:
        raise _AovxError(500, f"{name} must be yyyy-MM-dd HH:mm:ss, got {str(value)[:40]!r}") from None


def _integer(values: Mapping[str, Any], name: str, default: int) -> int:
    value = values.get(name)
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise _AovxError(500, f"{name} must be an integer")
    try:
        return int(str(value))
    except ValueError:
        raise _AovxError(500, f"{name} must be an integer, got {str(value)[:20]!r}") from None


def _iso_ms(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _epoch_ms(moment: datetime) -> int:
    return calendar.timegm(moment.timetuple()) * 1000 + moment.microsecond // 1000


def _not_found(path: str, now: datetime) -> Response:
    """Spring Boot's JSON error body for an unmapped path."""
    return Response.json(
        {"timestamp": _iso_ms(now).replace("Z", "+00:00"), "status": 404, "error": "Not Found", "path": path},
        404,
    )
