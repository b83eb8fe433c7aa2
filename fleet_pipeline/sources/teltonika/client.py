"""Teltonika FOTA WEB API client: bearer token, User-Agent, the per-minute quota and paging.

Plain JSON GETs against ``{base_url}/devices``, ``/groups``, ``/tasks``, ``/batches`` and
``/backgroundActions``. What
makes it more than a loop around ``requests`` is what the API demands and does in production
(``docs/vendor-apis/teltonika-official/``, ``docs/vendor-apis/FIELD-NOTES.md``):

* every request carries ``Authorization: Bearer <token>``, a User-Agent naming company,
  application and version (the vendor threatens to remove accounts that send none; the default
  names this application and its installed version), and JSON ``Accept``/``Content-Type``;
* about 100 requests a minute: the client paces itself at ``max_calls_per_min`` (90) through a
  cross-process ledger (``FileWindowLimiter``, 60 s window) in ``cache_dir``, so the steps of a
  run, other runs and backfills share one budget. A 429 is waited out: ``Retry-After`` when the
  server sends one (unconfirmed that it does), else a backoff on the scale of the quota's minute;
* pages are TOP-LEVEL ``{current_page, last_page, per_page, total, data, ...}``. A client that
  reads ``meta.last_page`` (as a public one did) silently stops after page 1; this one reads the
  top-level ``last_page`` on every page, asks for the maximum ``per_page`` (100) and a stable
  ``sort=imei`` order, and refuses an answer without it rather than guessing;
* ``imei`` is an int64 JSON number. ``json`` parses integers exactly, so the client only has to
  make sure it IS an int (a float would already have lost digits) and returns it as the
  15-digit string every other source uses. Nested ``device_imei`` fields get the same treatment.

Not-found single lookups (``device``, ``group``, ``background_action``) return None: a device
missing from FOTA is an answer, not a failure. Any other refusal is a ``VendorAPIError`` naming
the vendor and the operation, never containing the token.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from fleet_pipeline.ingest.http import (
    Backoff,
    HttpSession,
    Reply,
    RequestParts,
    RetryPolicy,
    RetryableVendorError,
    Secrets,
    VendorAPIError,
    VendorAuthError,
    VendorClient,
    VendorResponseError,
    retry_after_s,
)
from fleet_pipeline.ingest.shared_files import cache_key
from fleet_pipeline.ingest.shared_state import window_limiter

logger = logging.getLogger("fleet_pipeline.sources.teltonika")

VENDOR = "teltonika"
DEFAULT_BASE_URL = "https://api.teltonika.lt"

# Operation names: the spec's paths, so errors, stats and the sandbox's request log agree.
DEVICES = "GET /devices"
DEVICE = "GET /devices/{deviceImei}"
GROUPS = "GET /groups"
GROUP = "GET /groups/{groupId}"
BACKGROUND_ACTION = "GET /backgroundActions/{backgroundActionId}"
TASKS = "GET /tasks"
TASK = "GET /tasks/{taskId}"
BATCHES = "GET /batches"
BATCH = "GET /batches/{batchId}"

MAX_PER_PAGE = 100          # spec: per_page "Possible values: 1-100"
RATE_WINDOW_S = 60.0        # "100 request per minute"
DEFAULT_MAX_CALLS_PER_MIN = 90
# An imei filter travels in the query string: 100 IMEIs keep the URL near 2.5 KB, well under
# the 8 KB that common proxies accept.
IMEI_FILTER_BATCH = 100
IMEI_DIGITS = 15
IMEI_KEYS = ("imei", "device_imei")


def _package_version() -> str:
    try:
        return importlib.metadata.version("fleet_pipeline")
    except importlib.metadata.PackageNotFoundError:  # running from a source tree not installed
        return "0+unknown"


# The vendor asks for "company, application name and version" so it can trace an integration.
DEFAULT_USER_AGENT = f"fleet_pipeline/{_package_version()} (+data-platform)"


class NotFound(VendorAPIError):
    """404: the device, group or background action does not exist for this token."""


class TeltonikaFotaClient(VendorClient):
    """One API token on one FOTA WEB API (``base_url`` is the API root, e.g. DEFAULT_BASE_URL).

    ``cache_dir`` holds the request-rate ledger shared by every client of this API on the
    machine. ``sleep`` waits for the limiter and between retries; ``clock`` is the limiter's
    wall clock (tests drive both). A session passed in as ``http`` keeps its own retry policy,
    sleep and limiter. ``max_calls_per_min=None`` turns pacing off (the server's 429 still
    applies).
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        user_agent: str = DEFAULT_USER_AGENT,
        cache_dir: Path,
        http: HttpSession | None = None,
        sleep: Callable[[float], None] = time.sleep,
        retry: RetryPolicy | None = None,
        max_calls_per_min: int | None = DEFAULT_MAX_CALLS_PER_MIN,
        throttle_backoff: Backoff | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        timeout_s: float | tuple[float, float] = (10.0, 60.0),
    ) -> None:
        if not token:
            raise ValueError("teltonika client: an API token is required")
        if not user_agent or not user_agent.strip():
            raise ValueError("teltonika client: the FOTA API requires a User-Agent naming the "
                             "company, application and version")
        if max_calls_per_min is not None and max_calls_per_min < 1:
            raise ValueError("teltonika client: max_calls_per_min must be positive or None")
        self.base_url = base_url.rstrip("/")
        self.user_agent = user_agent.strip()
        self.cache_dir = Path(cache_dir)
        self._token = token
        self._rng = rng or random.Random()
        # Without Retry-After a 429 means "this minute's budget is spent": retrying within
        # seconds only burns attempts, so the wait grows on the scale of the window.
        self.throttle_backoff = throttle_backoff or Backoff(base_s=15.0, multiplier=2.0, max_s=60.0)
        self._owns_http = http is None
        limiter = (
            window_limiter(_ledger_path(self.cache_dir, self.base_url), max_calls_per_min,
                              RATE_WINDOW_S, clock=clock, sleep=sleep)
            if max_calls_per_min and http is None else None
        )
        self.http = http or HttpSession(
            VENDOR,
            retry=_without_429(
                retry or RetryPolicy(max_attempts=6, backoff=Backoff(base_s=1.0, max_s=30.0))),
            sleep=sleep,
            timeout_s=timeout_s,
            rng=self._rng,
            limiter=limiter,
        )
        self.limiter = self.http.limiter
        self.secrets: Secrets = self.http.secrets
        self.secrets.register(token)

    # -----------------------------------------------------------------------------------------
    # Operations
    # -----------------------------------------------------------------------------------------

    def devices(self, **filters: Any) -> list[dict[str, Any]]:
        """Every device matching the spec's filters (``imei``, ``group_id``, ``company_id``,
        ``model``, ``current_firmware``, ``query``, ``sort``, ``order``...), all pages read.

        List values become repeated query parameters. A long ``imei`` list is split into
        batches so the URL stays short; rows come back once each, in the server's order per
        batch (imei ascending unless ``sort`` says otherwise).
        """
        imeis = filters.pop("imei", None)
        if imeis is None:
            return self._all_pages(DEVICES, "/devices", filters, key="imei")
        wanted = _unique([_imei_param(i) for i in _as_list(imeis)])
        rows: list[dict[str, Any]] = []
        for start in range(0, len(wanted), IMEI_FILTER_BATCH):
            batch = wanted[start:start + IMEI_FILTER_BATCH]
            rows += self._all_pages(DEVICES, "/devices", {**filters, "imei": batch}, key="imei")
        return _unique_rows(rows, "imei")

    def device(self, imei: str | int) -> dict[str, Any] | None:
        """One device (DeviceGetResponse), or None when FOTA does not know the IMEI."""
        return self._get(DEVICE, f"/devices/{_imei_param(imei)}", {}, not_found_ok=True)

    def groups(self, **filters: Any) -> list[dict[str, Any]]:
        """Every group (``company_id``, ``query``, ``sort``... as the spec lists), all pages."""
        return self._all_pages(GROUPS, "/groups", filters, key="id", default_sort="id")

    def group(self, group_id: int) -> dict[str, Any] | None:
        return self._get(GROUP, f"/groups/{int(group_id)}", {}, not_found_ok=True)

    def tasks(self, **filters: Any) -> list[dict[str, Any]]:
        """Every task matching the spec's filters (``type``, ``status_id``, ``batch_id``,
        ``device_imei``, ``model``...), all pages read, ``device_imei`` as a 15-digit string.

        Sorted by ``id`` by default: ids grow with creation, so a task created while the pages
        are read lands after them and a status change moves no row between pages.
        """
        return self._all_pages(TASKS, "/tasks", filters, key="id", default_sort="id")

    def task(self, task_id: int) -> dict[str, Any] | None:
        return self._get(TASK, f"/tasks/{int(task_id)}", {}, not_found_ok=True)

    def batches(self, **filters: Any) -> list[dict[str, Any]]:
        """Every batch of tasks (``company_id``, ``task_type``, ``sort``...), all pages."""
        return self._all_pages(BATCHES, "/batches", filters, key="id", default_sort="id")

    def batch(self, batch_id: int) -> dict[str, Any] | None:
        return self._get(BATCH, f"/batches/{int(batch_id)}", {}, not_found_ok=True)

    def background_action(self, action_id: str) -> dict[str, Any] | None:
        """The state of an asynchronous job (bulk create, export...), None if unknown."""
        return self._get(BACKGROUND_ACTION, f"/backgroundActions/{action_id}", {},
                         not_found_ok=True)

    # -----------------------------------------------------------------------------------------
    # Paging
    # -----------------------------------------------------------------------------------------

    def _all_pages(self, method: str, path: str, filters: Mapping[str, Any], *, key: str,
                   default_sort: str = "imei") -> list[dict[str, Any]]:
        """Read page 1, then every page up to the TOP-LEVEL ``last_page`` of the latest page.

        The order is pinned (``sort`` + ``order``) so pages do not reshuffle between calls;
        rows are de-duplicated by ``key`` in case the collection changes while it is read.
        """
        params = {k: v for k, v in filters.items() if v is not None}
        params.setdefault("sort", default_sort)
        params.setdefault("order", "asc")
        params["per_page"] = MAX_PER_PAGE
        rows: list[dict[str, Any]] = []
        page, last_page, total = 1, 1, 0
        while page <= last_page:
            payload = self._get(method, path, {**params, "page": page})
            assert payload is not None
            data, last_page, total = _page_parts(payload, method, page)
            rows += data
            page += 1
        unique = _unique_rows(rows, key)
        if len(unique) != total:
            logger.warning("teltonika %s: read %d rows but the last page said total=%d "
                           "(the collection changed while it was read)", method, len(unique), total)
        return unique

    # -----------------------------------------------------------------------------------------
    # One call
    # -----------------------------------------------------------------------------------------

    def _get(self, method: str, path: str, params: Mapping[str, Any], *,
             not_found_ok: bool = False) -> dict[str, Any] | None:
        query = _query_pairs(params)
        headers = {
            "Authorization": f"Bearer {self._token}",
            "User-Agent": self.user_agent,
            "Accept": "application/json",
            "Content-Type": "application/json",
        }

        def build() -> RequestParts:
            return RequestParts(params=query, headers=headers)   # type: ignore[arg-type]

        try:
            return self.http.call(method, f"{self.base_url}{path}", build=build,
                                  check=self._check, http_method="GET")
        except NotFound:
            if not_found_ok:
                return None
            raise

    def _check(self, reply: Reply) -> dict[str, Any]:
        method, status, payload = reply.method, reply.status, reply.payload
        message = self.secrets.redact(_message(payload))
        if status == 429:
            wait = retry_after_s(reply.headers.get("Retry-After"))
            if wait is None:
                wait = self.throttle_backoff.delay(reply.attempt, self._rng)
            raise RetryableVendorError(VENDOR, method, f"too many requests: {message}",
                                       status=status, wait_s=wait, throttle=True)
        if status == 401:
            raise VendorAuthError(VENDOR, method, f"API token rejected: {message}", status=status)
        if status == 403:
            raise VendorAuthError(
                VENDOR, method,
                f"refused (token lacks the permission, or the User-Agent was not accepted): {message}",
                status=status,
            )
        if status == 404:
            raise NotFound(VENDOR, method, message, status=status)
        if status >= 400:
            raise VendorAPIError(VENDOR, method, message, status=status)
        if not isinstance(payload, dict):
            raise VendorResponseError(VENDOR, method,
                                      f"expected a JSON object, got {type(payload).__name__}",
                                      status=status)
        return _string_imeis(payload, method)


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def _without_429(policy: RetryPolicy) -> RetryPolicy:
    """429 is handled by ``_check`` (Retry-After or the per-minute backoff), not the session's
    generic backoff, which is tuned for 5xx blips and would give up within seconds."""
    return dataclasses.replace(policy, retry_statuses=frozenset(policy.retry_statuses - {429}))


def _page_parts(payload: dict[str, Any], method: str,
                page: int) -> tuple[list[dict[str, Any]], int, int]:
    data = payload.get("data")
    last_page = payload.get("last_page")
    total = payload.get("total")
    if not isinstance(last_page, int) or isinstance(last_page, bool) or not isinstance(data, list):
        hint = " (a `meta` wrapper is not the documented shape)" if "meta" in payload else ""
        raise VendorResponseError(
            VENDOR, method,
            f"page {page} has no top-level integer `last_page` and `data` list{hint}",
        )
    if payload.get("current_page") not in (None, page):
        raise VendorResponseError(
            VENDOR, method, f"asked for page {page}, got page {payload.get('current_page')!r}"
        )
    if not all(isinstance(row, dict) for row in data):
        raise VendorResponseError(VENDOR, method, f"page {page}: `data` holds a non-object row")
    return data, last_page, total if isinstance(total, int) else len(data)


def _string_imeis(node: Any, method: str) -> Any:
    """Turn every ``imei``/``device_imei`` into its 15-digit string, refusing non-integers."""
    if isinstance(node, dict):
        return {k: (_imei_text(v, method, k) if k in IMEI_KEYS and v is not None
                    else _string_imeis(v, method)) for k, v in node.items()}
    if isinstance(node, list):
        return [_string_imeis(v, method) for v in node]
    return node


def _imei_text(value: Any, method: str, name: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        # A float has already lost digits beyond 2**53 (or it never was an IMEI): no guessing.
        raise VendorResponseError(
            VENDOR, method, f"`{name}` is {type(value).__name__} {value!r}, not an integer"
        )
    text = value.strip() if isinstance(value, str) else str(value)
    if not text.isdigit() or len(text) > IMEI_DIGITS:
        raise VendorResponseError(VENDOR, method, f"`{name}` {text[:20]!r} is not an IMEI")
    return text.zfill(IMEI_DIGITS)


def _imei_param(value: str | int) -> str:
    text = str(value).strip()
    if isinstance(value, bool) or not text.isdigit():
        raise ValueError(f"teltonika client: {value!r} is not an IMEI")
    return str(int(text))   # the API takes the int64; no leading zeros in a number


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, (str, int)):
        return [value]
    return list(value)


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _unique_rows(rows: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    seen: dict[Any, dict[str, Any]] = {}
    for row in rows:
        seen.setdefault(row.get(key, id(row)), row)
    return list(seen.values())


def _query_pairs(params: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Query pairs: lists repeat the name (OpenAPI form/explode, the spec's default)."""
    pairs: list[tuple[str, str]] = []
    for name, value in params.items():
        values = value if isinstance(value, (list, tuple, set, frozenset)) else [value]
        for item in values:
            pairs.append((name, "true" if item is True else "false" if item is False else str(item)))
    return pairs


def _message(payload: Any) -> str:
    if isinstance(payload, dict) and payload.get("message"):
        return str(payload["message"])[:300]
    return "no message"


def _ledger_path(directory: Path, base_url: str) -> Path:
    """One ledger per API host: the quota follows the account, not this Python object."""
    return Path(directory) / f"teltonika-rate-{cache_key(base_url)}.json"
