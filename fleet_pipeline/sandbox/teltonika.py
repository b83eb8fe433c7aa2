"""Fake Teltonika FOTA WEB API (`https://api.teltonika.lt`) over the World's `teltonika_fota` devices.

The contract is the official OpenAPI document (`vendor-apis/teltonika-official/fota-openapi.json`)
as corrected by `FIELD-NOTES.md`; every 200 answer validates against its schemas (they say
`additionalProperties: false`, so the sandbox sends only documented fields). Paths are at the
server root, like the real host.

Served (GET only; any other verb on these paths is 405, any other path 404, both JSON):
* `/devices` -> DevicePagedResult, the TOP-LEVEL Laravel-style page {current_page, from, to,
  total, first_page, last_page, per_page, data, first_page_url, next_page_url, prev_page_url,
  last_page_url} -- no `meta` wrapper (a public client that read `meta.last_page` only ever got
  page 1). Filters: `imei`, `company_id`, `group_id`, `model`, `current_firmware`,
  `current_configuration`, `model_platform` (arrays: repeated `name=v`, `name[]=v` or
  `name[N]=v`, or comma-separated), `query` (substring of imei, serial or description, case
  insensitive), `sort` (the spec's 11 fields; nulls first when ascending), `order` (asc | desc).
  `activity_status`, `task_queue`, `spec_id` and names the spec does not list (`query_field` of
  the French internal doc) are ignored, as a real API ignores what it does not support here.
  Default order: imei ascending (ties never happen: imei is unique).
* `/devices/{deviceImei}` -> DeviceGetResponse; 404 {"message"} when the device is not ours.
* `/groups` -> GroupPagedResult (filters `company_id`, `firmware_file_id`,
  `configuration_file_id`, `query` on id or name; `sort` id | name | company_name |
  firmware_name | configuration_name | created_at), `/groups/{groupId}` -> Group; 404 unknown.
* `/backgroundActions/{backgroundActionId}` (a uuid) -> BackgroundActionGetResponse: one
  completed `TaskBulkCreate` per Teltonika firmware campaign (created on its start day) and one
  completed monthly `DeviceExport`; only actions created by now exist; 404 otherwise.
* `/tasks` -> TaskPagedResult, `/tasks/{taskId}` -> TaskGetResponse (404 unknown or not created
  yet): one `TxFirmware` task per OTA attempt of the World (`world.ota_attempts`) sent by now,
  as it stands at now. Id: `sent_at` in epoch seconds * 100,000 + device index (unique: a
  device is sent at most one command a second; ascending ids follow creation). Status from the
  attempt's status at now: sent -> Pending (0), downloading -> Running (1), succeeded ->
  Completed (2), failed and command-failed -> Failed (5, `message` says which).
  `status_name` is the spec's enum value verbatim ("Completed = 2"). `created_at` = sent_at,
  `status_changed_at` = `updated_at` = the attempt's last update at now, `execution_time` =
  seconds from the download start to the end (null until it ends or without a download),
  `file`/`file_id` = the campaign's firmware file (its name carries the target version), and
  `batch_id` = the campaign's batch. Filters: `id`, `company_id`, `status_id`, `type`,
  `batch_id`, `device_imei`, `created_by`, `group_id`, `model`, `current_firmware`,
  `current_configuration`, `query` (substring of the imei); `sort` id | device_imei | type |
  company_name | created_at | created_by | status_changed_at (default id), `order`.
* `/batches` -> BatchPagedResult, `/batches/{batchId}` -> Batch: one `TxFirmware` batch per
  Teltonika campaign (the batch of its `TaskBulkCreate` action, created with it), `objects` =
  its tasks created by now, `objects_processed` = those in a final state, `task_stats` = tasks
  per `status_id`. Filters `company_id`, `task_type`; `sort` id | created_at, `order`.

Paging (spec: `page` default 1, `per_page` "Possible values: 1-100. Default: 25"): a `per_page`
outside 1..100 or a `page` below 1 or not an integer is 400 "The given data was invalid" (the
spec's only validation status) -- the server does not clamp, so a client asking for 250 learns
it at once. A page past the end is 200 with `data: []`. `from`/`to` are 1-based row numbers of
the page, 0 on an empty page (the schema types them int32, not nullable: a .NET int's default);
`last_page` is at least 1. Page URLs are absolute (from the Host header) and keep every other
query parameter, so following `next_page_url` keeps the filters.

Auth and headers. `Authorization: Bearer <API_TOKEN>` (scheme case-insensitive). Missing or
wrong -> 401 {"message": "Unauthenticated."} with `WWW-Authenticate: Bearer` (the spec
documents no 401; its "403 Unauthorized" is about a token lacking a permission, which this
single full-rights token never does; RFC 6750 says 401 for a missing or invalid token). Then a
User-Agent naming company, application and version is mandatory (the spec's description: "We
require all API requests to have User-Agent header..."): a missing one, a generic HTTP-library
agent (`python-requests/2.x`, `curl/8`, `Go-http-client`, `okhttp`...) or one without a
`product/version` token -> 403 {"message": ...}; the spec gives no status, 403 is what APIs
that require an agent answer (GitHub's does). An `Accept` header that excludes JSON is 406.

Rate limit (the `VendorApp.throttle` hook, before auth): `rate_limit_calls` (100) accepted
requests per bearer token (per client IP without one) in any sliding `rate_limit_window_s`
(60 s) -> 429 {"message": "Too Many Attempts."}; rejected requests do not count. Whether the real
429 carries `Retry-After` is unconfirmed (FIELD-NOTES): knob `retry_after_header` (default False)
adds it, as whole seconds until a slot frees. `force_429_next` answers the next N requests 429
(with `Retry-After: forced_retry_after_s` when the header knob is on). The window runs on
`rate_clock` (default `time.monotonic`), never on the sandbox clock, so tests can drive it.

Entities. One company (COMPANY_ID, "FleetCo SAS"). One FOTA group per Navixy account of the
World (ids GROUP_ID_BASE + 1.. in the World's account order; names are the account names), a
device sitting in the group of its Navixy account. A device exists once `created_at` (its first
login, on its activation day) is <= now. Device fields: `imei` an int64 JSON NUMBER; `serial`
(int, 10 digits); `model`; `current_firmware` = world.firmware_at(imei, now);
`current_configuration` (a per-model file name, null for ~5 % never configured); `description`
"<vehicle name> (<plate>)"; `seen_at` = when the platform received the device's latest fix as
of now, searched back week by week to its activation (at most 400 days), null if none;
`activity_status` "Online" (seen within ONLINE_WITHIN, 30 min), "Offline" (within
INACTIVE_AFTER, 7 days), else "Inactive" -- the spec's enum is a
STRING although the `activity_status` filter takes integers and the French doc says int32;
`task_queue` "Pending"/"Executing" while an OTA attempt is sent/downloading at now, else "Empty";
`task_count` (single device) = attempts sent by now; `updated_at` = the latest firmware change
(an attempt's success) or the first login; `iccid`, `gsm_number` (msisdn), `imsi` (208-01 plus
ten hashed digits); `model_platform` "Fmx"; `company` and `group` objects
(list rows). Everything else the schema allows as null is null; `$ref` objects the World knows
nothing about (next_task, can_adapter, obd...) are left out because the schema does not let them
be null. All date-times are UTC `yyyy-MM-dd HH:mm:ss`.
"""

from __future__ import annotations

import calendar
import hmac
import math
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode

from fleet_pipeline.sandbox.world import rng
from fleet_pipeline.sandbox.server import FaultKnobs, Request, Response, SandboxServer

if TYPE_CHECKING:
    from fleet_pipeline.sandbox.world.firmware import Campaign, OtaAttempt
    from fleet_pipeline.sandbox.world import Account, Device, World

__all__ = [
    "API_TOKEN",
    "COMPANY_ID",
    "COMPANY_NAME",
    "CREDENTIALS",
    "GROUP_ID_BASE",
    "BackgroundAction",
    "TeltonikaApp",
    "TeltonikaKnobs",
    "background_actions",
    "group_id_of",
    "is_acceptable_user_agent",
    "make_server",
    "serial_of",
    "task_id_of",
    "task_status_id",
]

API_TOKEN = "sandbox-teltonika-token"
CREDENTIALS: Mapping[str, str] = {"token": API_TOKEN}

VENDOR = "teltonika"
FIRMWARE_PLATFORM = "teltonika_fota"
GROUP_PLATFORM = "navixy"          # FOTA groups mirror the Navixy accounts the trackers live on
COMPANY_ID = 4_217
COMPANY_NAME = "FleetCo SAS"
COMPANY_CODE = "FLEETCO"
COMPANY_CREATED = datetime(2023, 11, 6, 9, 12, 44)
GROUP_ID_BASE = 31_000
API_USER_ID = 18_402              # the user behind the token: creator of groups and actions
DEFAULT_PER_PAGE = 25
MAX_PER_PAGE = 100
ONLINE_WITHIN = timedelta(minutes=30)
INACTIVE_AFTER = timedelta(days=7)
SEEN_AT_MAX_LOOKBACK = timedelta(days=400)
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"

# OTA attempt statuses (firmware.OTA_STATUS) that leave a task in the device's queue.
_OTA_SENT, _OTA_DOWNLOADING, _OTA_SUCCEEDED = 1, 2, 3

DEVICE_SORTS = ("imei", "description", "model", "current_firmware", "current_configuration",
                "serial", "company_name", "group_name", "seen_at", "created_at", "updated_at")
GROUP_SORTS = ("id", "name", "company_name", "firmware_name", "configuration_name", "created_at")
TASK_SORTS = ("id", "device_imei", "type", "company_name", "created_at", "created_by", "status_changed_at")
BATCH_SORTS = ("id", "created_at")
FIRMWARE_TASK = "TxFirmware"
BATCH_ID_BASE = 70_000
FILE_ID_BASE = 80_000
# The World's OTA statuses (firmware.OTA_STATUS) as FOTA task statuses (TaskStatuses in the spec,
# whose enum values are literally "<name> = <id>").
TASK_STATUS_OF_OTA = {1: 0, 2: 1, 3: 2, 4: 5, -1: 5}
TASK_STATUS_NAMES = {0: "Pending = 0", 1: "Running = 1", 2: "Completed = 2", 3: "Completed with errors = 3",
                     4: "Cancelled = 4", 5: "Failed = 5", 6: "Expired = 6", 8: "Verifying = 8"}
FINAL_TASK_STATUSES = (2, 3, 4, 5, 6)
_TASK_MESSAGES = {4: "Firmware update failed on the device.", -1: "The device did not accept the task."}

# Which fields each schema allows (the spec's additionalProperties is false).
_LIST_FIELDS = (
    "imei", "serial", "model", "spec_id", "platform_id", "current_configuration",
    "current_firmware", "description", "company_id", "group_id", "track", "first_login",
    "seen_at", "created_at", "updated_at", "state_timestamp", "created_by", "updated_by",
    "chip_id", "gsm_number", "gnss_version", "login_count", "parameter_collect", "last_sync",
    "iccid", "imsi", "ble_firmware", "sold_at", "shipment", "last_analytics_received_at",
    "product_code", "company_name", "group_name", "company", "group", "activity_status",
    "task_queue", "modem_version", "model_platform",
)
_DETAIL_FIELDS = (
    "company", "dtb_version", "model_platform", "imei", "serial", "model", "spec_id",
    "current_configuration", "current_firmware", "description", "company_id", "group_id",
    "seen_at", "created_at", "updated_at", "created_by", "updated_by", "gsm_number",
    "gnss_version", "last_sync", "iccid", "imsi", "ble_firmware", "product_code",
    "company_name", "group_name", "group", "task_count", "activity_status", "task_queue",
    "modem_version", "bootloader_version",
)

_SPEC_IDS = {"FMB920": 1, "FMC130": 4, "FMB140": 2}
_CONFIG_FILES = {"FMB920": "FMB920_fleetco_2025-03.cfg", "FMC130": "FMC130_fleetco_can_2025-05.cfg",
                 "FMB140": "FMB140_fleetco_can_2025-05.cfg"}
_UNCONFIGURED_SHARE = 0.05

# Agents of HTTP libraries and tools: they name no company and no application.
_GENERIC_AGENTS = re.compile(
    r"^(python-requests|python-urllib|python-httpx|aiohttp|httpx|curl|wget|go-http-client|"
    r"java|okhttp|apache-httpclient|axios|node-fetch|node|undici|got|libwww-perl|guzzlehttp|"
    r"ruby|faraday|dart|postmanruntime|insomnia|mozilla|httpie|restsharp|unirest)\d*(?=[/\s;(]|$)",
    re.IGNORECASE,
)
_PRODUCT_VERSION = re.compile(r"[A-Za-z][\w.\-]*/v?\d")


def is_acceptable_user_agent(agent: str) -> bool:
    """True for an agent naming an application and its version, not a bare HTTP library."""
    agent = agent.strip()
    return bool(agent) and not _GENERIC_AGENTS.match(agent) and bool(_PRODUCT_VERSION.search(agent))


@dataclass
class TeltonikaKnobs(FaultKnobs):
    """Generic faults plus the FOTA API's throttling (see the module docstring)."""

    rate_limit_calls: int = 100
    rate_limit_window_s: float = 60.0
    retry_after_header: bool = False   # FIELD-NOTES: unconfirmed whether the real 429 sends it
    force_429_next: int = 0
    forced_retry_after_s: int = 20


@dataclass(frozen=True)
class BackgroundAction:
    """One asynchronous job as GET /backgroundActions/{id} shows it."""

    id: str
    type: str
    status: str
    details: str | None
    result_file_id: int | None
    created_at: datetime
    updated_at: datetime
    batch_ids: tuple[int, ...] | None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "type": self.type, "status": self.status, "company_id": COMPANY_ID,
            "details": self.details, "result_file_id": self.result_file_id,
            "created_by": API_USER_ID, "created_at": _fmt(self.created_at),
            "updated_at": _fmt(self.updated_at), "notify": False,
            "batch_ids": None if self.batch_ids is None else list(self.batch_ids),
            "structured_details": None,
        }


class _ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def _invalid(detail: str) -> _ApiError:
    return _ApiError(400, f"The given data was invalid. {detail}")


# -- deterministic identities -------------------------------------------------------------------
def serial_of(world: World, device: Device) -> int:
    """A 10-digit serial, unique per device index (Teltonika serials are 10-digit numbers)."""
    tail = rng.key(world.seed, "teltonika-serial", device.index) % 1_000
    return 1_100_000_000 + device.index * 1_000 + tail


def group_accounts(world: World) -> list[Account]:
    return [a for a in world.accounts if a.platform == GROUP_PLATFORM]


def group_id_of(world: World, account_id: str) -> int:
    """The FOTA group id of a Navixy account (its position in the World's account list)."""
    for n, account in enumerate(group_accounts(world), start=1):
        if account.account_id == account_id:
            return GROUP_ID_BASE + n
    raise KeyError(f"teltonika sandbox: no FOTA group for account {account_id!r}")


def batch_id_of(world: World, campaign_id: str) -> int:
    """The FOTA batch of a Teltonika campaign (the batch its TaskBulkCreate action created)."""
    ids = sorted(c.campaign_id for c in world.campaigns if c.platform == FIRMWARE_PLATFORM)
    try:
        return BATCH_ID_BASE + ids.index(campaign_id) + 1
    except ValueError:
        raise KeyError(f"teltonika sandbox: no Teltonika campaign {campaign_id!r}") from None


def task_id_of(attempt: OtaAttempt, device_index: int) -> int:
    """A task id: sent second * 100,000 + device index (see the module docstring)."""
    return calendar.timegm(attempt.sent_at.timetuple()) * 100_000 + device_index


def task_status_id(attempt: OtaAttempt, now: datetime) -> int | None:
    """The FOTA task status of an attempt at `now`; None before it was sent."""
    status = attempt.status_at(now)
    return None if status is None else TASK_STATUS_OF_OTA[status]


def _deterministic_uuid(seed: int, *parts: int | str) -> str:
    high = rng.key(seed, "teltonika-uuid-hi", *parts)
    low = rng.key(seed, "teltonika-uuid-lo", *parts)
    return str(uuid.UUID(bytes=(high << 64 | low).to_bytes(16, "big"), version=4))


def background_actions(world: World) -> list[BackgroundAction]:
    """Every background action of the sandbox company, created or not yet (filter by now).

    A `TaskBulkCreate` per Teltonika firmware campaign (how a FOTA rollout is started), early on
    the campaign's start day (it creates the campaign's batch), and a `DeviceExport` on the first of every month of 2026.
    """
    actions: list[BackgroundAction] = []
    campaigns = [c for c in world.campaigns if c.platform == FIRMWARE_PLATFORM]
    for n, campaign in enumerate(sorted(campaigns, key=lambda c: c.campaign_id)):
        minute = rng.key(world.seed, "teltonika-action-minute", campaign.campaign_id) % 120
        # before the first command of the rollout goes out (office hours start at 06:00)
        created = datetime.combine(campaign.start_day, datetime.min.time()) + timedelta(
            hours=4, minutes=minute)
        actions.append(BackgroundAction(
            id=_deterministic_uuid(world.seed, "campaign", campaign.campaign_id),
            type="TaskBulkCreate", status="Completed",
            details=(f"Firmware update {campaign.from_version} -> {campaign.target_version} "
                     f"for {campaign.model} ({campaign.campaign_id})"),
            result_file_id=None, created_at=created,
            updated_at=created + timedelta(seconds=40 + minute),
            batch_ids=(BATCH_ID_BASE + n + 1,),
        ))
    for month in range(1, 13):
        created = datetime(2026, month, 1, 3, 15, 0)
        actions.append(BackgroundAction(
            id=_deterministic_uuid(world.seed, "export", month),
            type="DeviceExport", status="Completed", details="Devices export (csv)",
            result_file_id=90_000 + month, created_at=created,
            updated_at=created + timedelta(seconds=95), batch_ids=None,
        ))
    return actions


# -- the app -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Route:
    method: str                                   # for the request log, e.g. "GET /devices"
    handler: Callable[..., Response]
    pattern: re.Pattern[str]


class TeltonikaApp:
    """The FOTA WEB API over one World (see the module docstring for every rule)."""

    vendor = VENDOR

    def __init__(self, world: World, knobs: TeltonikaKnobs,
                 now: Callable[[], datetime] | None = None,
                 rate_clock: Callable[[], float] = time.monotonic) -> None:
        self.world = world
        self.knobs = knobs
        self.now: Callable[[], datetime] = now if now is not None else world.now
        self._rate_clock = rate_clock
        self._lock = threading.Lock()
        self._windows: dict[str, deque[float]] = {}
        self._devices = {int(d.imei): d for d in world.devices
                         if d.firmware_platform == FIRMWARE_PLATFORM}
        self._groups = {GROUP_ID_BASE + n: a for n, a in enumerate(group_accounts(world), start=1)}
        self._group_of_account = {a.account_id: gid for gid, a in self._groups.items()}
        self._actions: dict[str, BackgroundAction] | None = None
        self._routes = (
            _Route("GET /devices", TeltonikaApp._devices_page, re.compile(r"/devices/?")),
            _Route("GET /devices/{deviceImei}", TeltonikaApp._device,
                   re.compile(r"/devices/(?P<key>[^/]+)/?")),
            _Route("GET /groups", TeltonikaApp._groups_page, re.compile(r"/groups/?")),
            _Route("GET /groups/{groupId}", TeltonikaApp._group,
                   re.compile(r"/groups/(?P<key>[^/]+)/?")),
            _Route("GET /backgroundActions/{backgroundActionId}", TeltonikaApp._action,
                   re.compile(r"/backgroundActions/(?P<key>[^/]+)/?")),
            _Route("GET /tasks", TeltonikaApp._tasks_page, re.compile(r"/tasks/?")),
            _Route("GET /tasks/{taskId}", TeltonikaApp._task, re.compile(r"/tasks/(?P<key>[^/]+)/?")),
            _Route("GET /batches", TeltonikaApp._batches_page, re.compile(r"/batches/?")),
            _Route("GET /batches/{batchId}", TeltonikaApp._batch,
                   re.compile(r"/batches/(?P<key>[^/]+)/?")),
        )

    # -- VendorApp hooks ---------------------------------------------------------------------
    def vendor_method(self, request: Request) -> str | None:
        found = self._route(request.path)
        return found[0].method if found else None

    def throttle(self, request: Request) -> Response | None:
        """100 accepted requests per token in any sliding minute -> 429 (see the module doc)."""
        method = self.vendor_method(request)
        if self.knobs.consume("force_429_next"):
            return self._too_many(method, float(self.knobs.forced_retry_after_s))
        token = _bearer(request)
        key = f"token:{token}" if token else f"ip:{request.client_ip}"
        limit, window = self.knobs.rate_limit_calls, self.knobs.rate_limit_window_s
        with self._lock:
            t = self._rate_clock()
            stamps = self._windows.setdefault(key, deque())
            while stamps and stamps[0] <= t - window:
                stamps.popleft()
            if len(stamps) >= limit:
                wait = stamps[len(stamps) - limit] + window - t
                return self._too_many(method, wait)
            stamps.append(t)
            if len(self._windows) > 10_000:
                # Random garbage tokens must not grow the table forever in a long run.
                self._windows = {k: v for k, v in self._windows.items() if v and v[-1] > t - window}
        return None

    def handle(self, request: Request) -> Response:
        found = self._route(request.path)
        if found is None:
            return _message(404, "Not found.", None)
        route, key = found
        try:
            if request.http_method != "GET":
                raise _ApiError(405, f"The {request.http_method} method is not supported for "
                                     "this route. Supported methods: GET.", {"Allow": "GET"})
            self._check_headers(request)
            query = _parse_query(request.query)
            return route.handler(self, request, query, key, route.method)
        except _ApiError as exc:
            return _message(exc.status, exc.message, route.method, exc.headers)

    # -- routing and headers -----------------------------------------------------------------
    def _route(self, path: str) -> tuple[_Route, str | None] | None:
        for route in self._routes:
            match = route.pattern.fullmatch(path)
            if match:
                return route, match.groupdict().get("key")
        return None

    def _check_headers(self, request: Request) -> None:
        token = _bearer(request)
        if token is None or not hmac.compare_digest(token.encode("utf-8"), API_TOKEN.encode("utf-8")):
            raise _ApiError(401, "Unauthenticated.", {"WWW-Authenticate": "Bearer"})
        if not is_acceptable_user_agent(request.header("User-Agent")):
            raise _ApiError(403, "A User-Agent header naming your company, application and "
                                 "version is required.")
        accept = request.header("Accept").lower()
        if accept and not any(kind in accept for kind in ("application/json", "*/*", "application/*")):
            raise _ApiError(406, "Only application/json responses are available.")

    def _too_many(self, method: str | None, wait_s: float) -> Response:
        headers: dict[str, str] = {}
        if self.knobs.retry_after_header:
            headers["Retry-After"] = str(max(1, math.ceil(wait_s)))
        return _message(429, "Too Many Attempts.", method, headers)

    # -- devices -----------------------------------------------------------------------------
    def _visible_devices(self, now: datetime) -> list[Device]:
        return [d for imei, d in sorted(self._devices.items()) if self._first_login(d) <= now]

    def _devices_page(self, request: Request, query: _Query, key: str | None,
                      method: str) -> Response:
        now = self.now()
        devices = self._visible_devices(now)
        imeis = query.ints("imei")
        if imeis is not None:
            wanted = set(imeis)
            devices = [d for d in devices if int(d.imei) in wanted]
        companies = query.ints("company_id")
        if companies is not None and COMPANY_ID not in companies:
            devices = []
        groups = query.ints("group_id")
        if groups is not None:
            wanted_groups = set(groups)
            devices = [d for d in devices if self._group_of_account.get(d.account_id) in wanted_groups]
        models = query.strings("model")
        if models is not None:
            devices = [d for d in devices if d.model in models]
        platforms = query.strings("model_platform")
        if platforms is not None and "Fmx" not in platforms:
            devices = []
        configurations = query.strings("current_configuration")
        if configurations is not None:
            devices = [d for d in devices if self._configuration(d) in configurations]
        search = query.string("query")
        if search:
            needle = search.lower()
            devices = [d for d in devices if needle in d.imei or needle in str(serial_of(self.world, d))
                       or needle in _description(d).lower()]
        sort = query.choice("sort", DEVICE_SORTS, "imei")
        descending = query.choice("order", ("asc", "desc"), "asc") == "desc"
        page, per_page = query.paging()
        firmwares = query.strings("current_firmware")
        # Static filters and sorts page before any per-device work; firmware, seen_at and
        # updated_at need every candidate's state at `now` (still only the candidates).
        if firmwares is None and sort in ("imei", "serial", "description", "model",
                                          "current_configuration", "company_name",
                                          "group_name", "created_at"):
            devices = _sorted(devices, lambda d: self._static_sort_value(d, sort), descending)
            window = devices[(page - 1) * per_page: page * per_page]
            rows = [self._device_row(d, now, _LIST_FIELDS) for d in window]
            total = len(devices)
        else:
            everything = [self._device_row(d, now, _LIST_FIELDS) for d in devices]
            if firmwares is not None:
                everything = [r for r in everything if r["current_firmware"] in firmwares]
            everything = _sorted(everything, lambda r: r[sort], descending)
            rows = everything[(page - 1) * per_page: page * per_page]
            total = len(everything)
        return Response.json(_paged(request, query, rows, total, page, per_page),
                             vendor_method=method)

    def _device(self, request: Request, query: _Query, key: str | None, method: str) -> Response:
        imei = _path_int(key, "deviceImei")
        now = self.now()
        device = self._devices.get(imei)
        if device is None or self._first_login(device) > now:
            raise _ApiError(404, "Device not found.")
        return Response.json(self._device_row(device, now, _DETAIL_FIELDS), vendor_method=method)

    def _static_sort_value(self, d: Device, sort: str) -> Any:
        if sort == "imei":
            return int(d.imei)
        if sort == "serial":
            return serial_of(self.world, d)
        if sort == "description":
            return _description(d)
        if sort == "model":
            return d.model
        if sort == "current_configuration":
            return self._configuration(d)
        if sort == "company_name":
            return COMPANY_NAME
        if sort == "group_name":
            return self._groups[self._group_of_account[d.account_id]].name
        return self._first_login(d)      # created_at

    def _first_login(self, d: Device) -> datetime:
        """The device's first connection to FOTA: its activation day, during working hours."""
        seconds = 7 * 3600 + rng.key(self.world.seed, "teltonika-first-login", d.index) % (10 * 3600)
        return datetime.combine(d.activation_date, datetime.min.time()) + timedelta(seconds=seconds)

    def _configuration(self, d: Device) -> str | None:
        share = rng.key(self.world.seed, "teltonika-config", d.index) / 2**64
        return None if share < _UNCONFIGURED_SHARE else _CONFIG_FILES.get(d.model, f"{d.model}.cfg")

    def _seen_at(self, d: Device, now: datetime) -> datetime | None:
        """When the platform last heard from the device, searched back week by week."""
        at = now
        oldest = max(datetime.combine(d.activation_date, datetime.min.time()),
                     now - SEEN_AT_MAX_LOOKBACK)
        while at >= oldest:
            fix = self.world.last_fix(d.imei, at)
            if fix is not None:
                return fix["received_at"]
            at -= INACTIVE_AFTER
        return None

    def _device_row(self, d: Device, now: datetime, fields: tuple[str, ...]) -> dict[str, Any]:
        first_login = self._first_login(d)
        seen = self._seen_at(d, now)
        attempts = [a for a in self.world.ota_attempts(d.imei) if a.sent_at <= now]
        upgraded = [t for a in attempts for t, status in a.history
                    if status == _OTA_SUCCEEDED and t <= now]
        queued = [a.status_at(now) for a in attempts]
        group_id = self._group_of_account.get(d.account_id)
        group = self._groups[group_id] if group_id is not None else None
        if seen is None or now - seen > INACTIVE_AFTER:
            activity = "Inactive"
        elif now - seen <= ONLINE_WITHIN:
            activity = "Online"
        else:
            activity = "Offline"
        digits = rng.key(self.world.seed, "teltonika-imsi", d.index) % 10**10
        row: dict[str, Any] = {
            "imei": int(d.imei),
            "serial": serial_of(self.world, d),
            "model": d.model,
            "spec_id": _SPEC_IDS.get(d.model),
            "platform_id": None,
            "current_configuration": self._configuration(d),
            "current_firmware": self.world.firmware_at(d.imei, now),
            "description": _description(d),
            "company_id": COMPANY_ID,
            "group_id": group_id,
            "track": 0,
            "first_login": _fmt(first_login),
            "seen_at": _fmt(seen),
            "created_at": _fmt(first_login),
            "updated_at": _fmt(max([first_login, *upgraded])),
            "state_timestamp": None,
            "created_by": None,
            "updated_by": None,
            "chip_id": None,
            "gsm_number": d.sim_msisdn,
            "gnss_version": None,
            "login_count": None,
            "parameter_collect": None,
            "last_sync": None,
            "iccid": d.sim_iccid,
            "imsi": f"20801{digits:010d}",
            "ble_firmware": None,
            "sold_at": None,
            "shipment": None,
            "last_analytics_received_at": None,
            "product_code": None,
            "company_name": COMPANY_NAME,
            "group_name": group.name if group is not None else None,
            "company": _company(),
            "activity_status": activity,
            "task_queue": ("Executing" if _OTA_DOWNLOADING in queued
                           else "Pending" if _OTA_SENT in queued else "Empty"),
            "modem_version": None,
            "model_platform": "Fmx",
            "task_count": len(attempts),
            "dtb_version": None,
            "bootloader_version": None,
        }
        if group is not None and group_id is not None:
            row["group"] = self._device_group(group_id, group)
        return {name: row[name] for name in fields if name in row}

    # -- groups ------------------------------------------------------------------------------
    def _group_created(self, group_id: int) -> datetime:
        seconds = rng.key(self.world.seed, "teltonika-group-created", group_id) % (60 * 86_400)
        return datetime(2023, 11, 7, 8, 0, 0) + timedelta(seconds=seconds)

    def _device_group(self, group_id: int, account: Account) -> dict[str, Any]:
        created = _fmt(self._group_created(group_id))
        return {"id": group_id, "name": account.name, "company_id": COMPANY_ID,
                "firmware_file_id": None, "configuration_file_id": None, "deleted_at": None,
                "created_at": created, "updated_at": created, "created_by": API_USER_ID,
                "updated_by": None}

    def _group_row(self, group_id: int) -> dict[str, Any]:
        return {"company": _company(), **self._device_group(group_id, self._groups[group_id])}

    def _groups_page(self, request: Request, query: _Query, key: str | None,
                     method: str) -> Response:
        ids = sorted(self._groups)
        companies = query.ints("company_id")
        if companies is not None and COMPANY_ID not in companies:
            ids = []
        # No group carries a firmware or configuration file, so asking for one matches nothing.
        for name in ("firmware_file_id", "configuration_file_id"):
            if query.ints(name) is not None:
                ids = []
        search = query.string("query")
        if search:
            needle = search.lower()
            ids = [g for g in ids if needle in str(g) or needle in self._groups[g].name.lower()]
        sort = query.choice("sort", GROUP_SORTS, "id")
        descending = query.choice("order", ("asc", "desc"), "asc") == "desc"
        page, per_page = query.paging()
        rows = [self._group_row(g) for g in ids]
        column = {"id": "id", "name": "name", "created_at": "created_at"}.get(sort)
        rows = _sorted(rows, (lambda r: r[column]) if column else
                       (lambda r: COMPANY_NAME if sort == "company_name" else None), descending)
        window = rows[(page - 1) * per_page: page * per_page]
        return Response.json(_paged(request, query, window, len(rows), page, per_page),
                             vendor_method=method)

    def _group(self, request: Request, query: _Query, key: str | None, method: str) -> Response:
        group_id = _path_int(key, "groupId")
        if group_id not in self._groups:
            raise _ApiError(404, "Group not found.")
        return Response.json(self._group_row(group_id), vendor_method=method)

    # -- background actions ------------------------------------------------------------------
    def background_actions(self) -> dict[str, BackgroundAction]:
        """Every action by id, created or not (built on first use: it reads the campaigns)."""
        with self._lock:
            if self._actions is None:
                self._actions = {a.id: a for a in background_actions(self.world)}
            return self._actions

    def _action(self, request: Request, query: _Query, key: str | None, method: str) -> Response:
        try:
            action_id = str(uuid.UUID(key or ""))
        except ValueError:
            raise _invalid("backgroundActionId must be a uuid.") from None
        action = self.background_actions().get(action_id)
        if action is None or action.created_at > self.now():
            raise _ApiError(404, "Background action not found.")
        return Response.json(action.as_json(), vendor_method=method)


    # -- tasks and batches -------------------------------------------------------------------
    def _campaigns(self) -> dict[str, Campaign]:
        return {c.campaign_id: c for c in self.world.campaigns if c.platform == FIRMWARE_PLATFORM}

    def _sent_tasks(self, now: datetime) -> list[tuple[int, Device, OtaAttempt]]:
        """(task id, device, attempt) of every OTA attempt sent by now, by task id."""
        tasks = [(task_id_of(a, d.index), d, a)
                 for d in self._devices.values()
                 for a in self.world.ota_attempts(d.imei) if a.sent_at <= now]
        return sorted(tasks, key=lambda t: t[0])

    def _task_row(self, task_id: int, d: Device, a: OtaAttempt, now: datetime,
                  with_device: bool) -> dict[str, Any]:
        status = a.status_at(now)
        updated = a.last_update_at(now)
        assert status is not None and updated is not None, "a task exists once sent"
        started = next((t for t, s in a.history if s == _OTA_DOWNLOADING and t <= now), None)
        ended = status in (_OTA_SUCCEEDED, 4)
        status_id = TASK_STATUS_OF_OTA[status]
        campaign = self._campaigns()[a.campaign_id]
        row: dict[str, Any] = {
            "id": task_id,
            "device_imei": int(d.imei),
            "company_id": COMPANY_ID,
            "type": FIRMWARE_TASK,
            "attributes": None,
            "status_id": status_id,
            "attempt_count": 1,
            "execution_time": int((updated - started).total_seconds()) if ended and started else None,
            "created_at": _fmt(a.sent_at),
            "updated_at": _fmt(updated),
            "deleted_at": None,
            "file_id": self._file_id(campaign),
            "created_by": _api_user(),
            "batch_id": batch_id_of(self.world, a.campaign_id),
            "status_name": TASK_STATUS_NAMES[status_id],
            "company": _company(),
            "file": self._file(campaign),
            "message": _TASK_MESSAGES.get(status),
            "status_changed_at": _fmt(updated),
            "verify_attempt_count": 0,
        }
        if with_device:
            group_id = self._group_of_account.get(d.account_id)
            row["device"] = {
                "imei": int(d.imei), "serial": serial_of(self.world, d), "model": d.model,
                "current_firmware": self.world.firmware_at(d.imei, now),
                "current_configuration": self._configuration(d), "description": _description(d),
                "company_id": COMPANY_ID, "group_id": group_id, "company_name": COMPANY_NAME,
                "group_name": self._groups[group_id].name if group_id is not None else None,
            }
        return row

    def _file_id(self, campaign: Campaign) -> int:
        return FILE_ID_BASE + batch_id_of(self.world, campaign.campaign_id) - BATCH_ID_BASE

    def _file(self, campaign: Campaign) -> dict[str, Any]:
        """The campaign's firmware file; its name is the file name of the campaign's URL."""
        created = _fmt(datetime.combine(campaign.start_day, datetime.min.time()) - timedelta(days=1))
        return {"id": self._file_id(campaign), "name": campaign.url.rsplit("/", 1)[-1],
                "type": "firmware", "description": f"{campaign.model} {campaign.target_version}",
                "size": 1_400_000 + self._file_id(campaign) % 1_000 * 97, "company_id": COMPANY_ID,
                "created_at": created, "updated_at": created}

    def _tasks_page(self, request: Request, query: _Query, key: str | None, method: str) -> Response:
        now = self.now()
        tasks = self._sent_tasks(now)
        for name, value in (("id", lambda t: t[0]), ("device_imei", lambda t: int(t[1].imei)),
                            ("batch_id", lambda t: batch_id_of(self.world, t[2].campaign_id)),
                            ("status_id", lambda t: task_status_id(t[2], now)),
                            ("group_id", lambda t: self._group_of_account.get(t[1].account_id))):
            wanted = query.ints(name)
            if wanted is not None:
                tasks = [t for t in tasks if value(t) in wanted]
        # one company and one API user create every task
        for name, only in (("company_id", COMPANY_ID), ("created_by", API_USER_ID)):
            wanted = query.ints(name)
            if wanted is not None and only not in wanted:
                tasks = []
        types = query.strings("type")
        if types is not None and FIRMWARE_TASK not in types:
            tasks = []
        for name, strings in (("model", lambda d: d.model),
                              ("current_firmware", lambda d: self.world.firmware_at(d.imei, now)),
                              ("current_configuration", self._configuration)):
            wanted_strings = query.strings(name)
            if wanted_strings is not None:
                tasks = [t for t in tasks if strings(t[1]) in wanted_strings]
        search = query.string("query")
        if search:
            tasks = [t for t in tasks if search in t[1].imei]
        sort = query.choice("sort", TASK_SORTS, "id")
        descending = query.choice("order", ("asc", "desc"), "asc") == "desc"
        page, per_page = query.paging()
        sort_value = {
            "device_imei": lambda t: (int(t[1].imei), t[0]),
            "created_at": lambda t: (t[2].sent_at, t[0]),
            "status_changed_at": lambda t: (t[2].last_update_at(now), t[0]),
        }.get(sort, lambda t: t[0])   # type, company_name, created_by are one value: id breaks ties
        tasks = sorted(tasks, key=sort_value, reverse=descending)
        window = tasks[(page - 1) * per_page: page * per_page]
        rows = [self._task_row(*t, now, with_device=True) for t in window]
        return Response.json(_paged(request, query, rows, len(tasks), page, per_page), vendor_method=method)

    def _task(self, request: Request, query: _Query, key: str | None, method: str) -> Response:
        task_id = _path_int(key, "taskId")
        now = self.now()
        index = task_id % 100_000
        device = self.world.devices[index] if 0 <= index < len(self.world.devices) else None
        if device is not None and device.firmware_platform == FIRMWARE_PLATFORM:
            for attempt in self.world.ota_attempts(device.imei):
                if attempt.sent_at <= now and task_id_of(attempt, index) == task_id:
                    return Response.json(self._task_row(task_id, device, attempt, now, with_device=False),
                                         vendor_method=method)
        raise _ApiError(404, "Task not found.")

    def _batch_rows(self, now: datetime) -> list[dict[str, Any]]:
        """Every batch created by now, by id, with its tasks' statistics at now."""
        stats: dict[str, dict[int, int]] = {}
        updated: dict[str, datetime] = {}
        for _, _, a in self._sent_tasks(now):
            status_id = task_status_id(a, now)
            assert status_id is not None
            per_status = stats.setdefault(a.campaign_id, {})
            per_status[status_id] = per_status.get(status_id, 0) + 1
            seen = a.last_update_at(now)
            assert seen is not None
            updated[a.campaign_id] = max(updated.get(a.campaign_id, seen), seen)
        created_of = {a.batch_ids[0]: a.created_at for a in self.background_actions().values()
                      if a.type == "TaskBulkCreate" and a.batch_ids}
        rows = []
        for campaign in sorted(self._campaigns().values(), key=lambda c: c.campaign_id):
            batch_id = batch_id_of(self.world, campaign.campaign_id)
            created = created_of[batch_id]
            if created > now:
                continue
            per_status = stats.get(campaign.campaign_id, {})
            rows.append({
                "id": batch_id, "type": FIRMWARE_TASK, "source": "filter", "attributes": None,
                "objects": sum(per_status.values()),
                "objects_processed": sum(n for s, n in per_status.items() if s in FINAL_TASK_STATUSES),
                "company_id": COMPANY_ID, "created_by": _api_user(), "created_at": _fmt(created),
                "updated_at": _fmt(max(created, updated.get(campaign.campaign_id, created))),
                "approvable": 0, "verified_by": API_USER_ID, "task_type": FIRMWARE_TASK,
                "task_file_name": campaign.url.rsplit("/", 1)[-1],
                "file": {"id": self._file_id(campaign), "type": "firmware", "company_id": COMPANY_ID,
                         "name": campaign.url.rsplit("/", 1)[-1]},
                "task_stats": [{"status_id": s, "count": n} for s, n in sorted(per_status.items())],
            })
        return rows

    def _batches_page(self, request: Request, query: _Query, key: str | None, method: str) -> Response:
        rows = self._batch_rows(self.now())
        companies = query.ints("company_id")
        if companies is not None and COMPANY_ID not in companies:
            rows = []
        types = query.strings("task_type")
        if types is not None and FIRMWARE_TASK not in types:
            rows = []
        sort = query.choice("sort", BATCH_SORTS, "id")
        descending = query.choice("order", ("asc", "desc"), "asc") == "desc"
        page, per_page = query.paging()
        rows = sorted(rows, key=lambda r: (r[sort], r["id"]), reverse=descending)
        window = rows[(page - 1) * per_page: page * per_page]
        return Response.json(_paged(request, query, window, len(rows), page, per_page), vendor_method=method)

    def _batch(self, request: Request, query: _Query, key: str | None, method: str) -> Response:
        batch_id = _path_int(key, "batchId")
        found = next((r for r in self._batch_rows(self.now()) if r["id"] == batch_id), None)
        if found is None:
            raise _ApiError(404, "Batch not found.")
        return Response.json(found, vendor_method=method)


# -- query parsing ------------------------------------------------------------------------------
_ARRAY_KEY = re.compile(r"^(?P<name>[A-Za-z_]+)\[\d*\]$")


class _Query:
    """The query string; arrays may come as `a=1&a=2`, `a[]=1`, `a[0]=1` or `a=1,2`."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self.values: dict[str, list[str]] = {}
        for name, value in pairs:
            match = _ARRAY_KEY.match(name)
            self.values.setdefault(match.group("name") if match else name, []).append(value)

    def items(self) -> list[tuple[str, str]]:
        return [(k, v) for k, values in self.values.items() for v in values]

    def strings(self, name: str) -> list[str] | None:
        if name not in self.values:
            return None
        return [part.strip() for v in self.values[name] for part in v.split(",") if part.strip()]

    def ints(self, name: str) -> list[int] | None:
        values = self.strings(name)
        if values is None:
            return None
        try:
            return [int(v) for v in values]
        except ValueError:
            raise _invalid(f"{name} must be an array of integers.") from None

    def string(self, name: str) -> str | None:
        values = self.values.get(name)
        return values[-1] if values else None

    def integer(self, name: str, default: int) -> int:
        value = self.string(name)
        if value is None or value == "":
            return default
        try:
            return int(value)
        except ValueError:
            raise _invalid(f"{name} must be an integer.") from None

    def choice(self, name: str, allowed: tuple[str, ...], default: str) -> str:
        value = self.string(name)
        if value is None or value == "":
            return default
        if value not in allowed:
            raise _invalid(f"{name} must be one of: {', '.join(allowed)}.")
        return value

    def paging(self) -> tuple[int, int]:
        page = self.integer("page", 1)
        per_page = self.integer("per_page", DEFAULT_PER_PAGE)
        if page < 1:
            raise _invalid("page must be at least 1.")
        if not 1 <= per_page <= MAX_PER_PAGE:
            raise _invalid(f"per_page must be between 1 and {MAX_PER_PAGE}.")
        return page, per_page


def _parse_query(query: str) -> _Query:
    return _Query(parse_qsl(query, keep_blank_values=True))


def _path_int(key: str | None, name: str) -> int:
    try:
        return int(key or "")
    except ValueError:
        raise _invalid(f"{name} must be an integer.") from None


# -- responses ----------------------------------------------------------------------------------
def _bearer(request: Request) -> str | None:
    scheme, _, token = request.header("Authorization").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _message(status: int, message: str, method: str | None,
             headers: dict[str, str] | None = None) -> Response:
    return Response.json({"message": message}, status, vendor_method=method,
                         vendor_code=status if status >= 400 else None, headers=headers)


def _paged(request: Request, query: _Query, rows: list[dict[str, Any]], total: int, page: int,
           per_page: int) -> dict[str, Any]:
    last_page = max(1, math.ceil(total / per_page))
    host = request.header("Host") or "127.0.0.1"
    kept = [(k, v) for k, v in query.items() if k != "page"]

    def url(n: int) -> str:
        return f"http://{host}{request.path}?" + urlencode([*kept, ("page", str(n))])

    first = (page - 1) * per_page + 1
    return {
        "current_page": page,
        "from": first if rows else 0,
        "to": first + len(rows) - 1 if rows else 0,
        "total": total,
        "first_page": 1,
        "last_page": last_page,
        "per_page": per_page,
        "data": rows,
        "first_page_url": url(1),
        "next_page_url": url(page + 1) if page < last_page else None,
        "prev_page_url": url(page - 1) if page > 1 else None,
        "last_page_url": url(last_page),
    }


def _sorted(items: list[Any], value: Callable[[Any], Any], descending: bool) -> list[Any]:
    """Nulls first when ascending (last when descending), like an SQL ORDER BY on MySQL."""
    def key(item: Any) -> tuple[bool, Any]:
        found = value(item)
        return (found is not None, 0 if found is None else found)

    return sorted(items, key=key, reverse=descending)


def _company() -> dict[str, Any]:
    created = _fmt(COMPANY_CREATED)
    return {"code": COMPANY_CODE, "id": COMPANY_ID, "name": COMPANY_NAME, "company_id": None,
            "deleted_at": None, "created_at": created, "updated_at": created, "created_by": None,
            "updated_by": None}


def _api_user() -> dict[str, Any]:
    """The UserReference of the API user behind the token (creator of tasks and batches)."""
    return {"id": API_USER_ID, "company_id": COMPANY_ID}


def _description(d: Device) -> str:
    return f"{d.vehicle_name} ({d.vehicle_number})"


def _fmt(moment: datetime | date | None) -> str | None:
    if moment is None:
        return None
    if not isinstance(moment, datetime):
        moment = datetime.combine(moment, datetime.min.time())
    return moment.strftime(TIME_FORMAT)


def make_server(world: World, host: str = "127.0.0.1", port: int = 0, *,
                now: Callable[[], datetime] | None = None,
                knobs: TeltonikaKnobs | None = None,
                rate_clock: Callable[[], float] = time.monotonic,
                **knob_values: Any) -> SandboxServer[TeltonikaKnobs]:
    """A bound, not yet started FOTA WEB API sandbox over `world` (start() or use `with`).

    Paths are at the root of `base_url`. `now` overrides the sandbox clock (default
    `world.now`); `rate_clock` drives the 100-per-minute window; extra keyword arguments set
    `TeltonikaKnobs` fields.
    """
    knobs = knobs if knobs is not None else TeltonikaKnobs()
    if knob_values:
        knobs.set(**knob_values)
    app = TeltonikaApp(world, knobs, now=now, rate_clock=rate_clock)
    return SandboxServer(app, knobs, host=host, port=port)
