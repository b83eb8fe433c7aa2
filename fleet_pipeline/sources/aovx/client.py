"""AOVX cloud client: the token header, RuoYi-style errors, id batching and string-typed paging.

One endpoint is documented (``docs/vendor-apis/aovx-ota-report.md``):
``POST {base_url}/system/asset/command/queryTerminalOtaReport`` where ``base_url`` holds the
deployment's context path (``https://cloud.aovx.com/prod``). What the client handles
(``docs/vendor-apis/FIELD-NOTES.md``):

* the token: the doc says only "add token in Headers". The backend is RuoYi, which reads
  ``Authorization`` and strips an optional ``Bearer `` prefix, so ``Authorization: Bearer <token>``
  is sent by default; ``token_header``/``token_prefix`` change that for a deployment that wants
  e.g. a bare ``token`` header. The login that issues tokens is undocumented: the token is
  configuration, registered with the redactor and never printed;
* errors arrive with HTTP 200 and a ``code`` in the body, the text in ``message`` or ``msg``
  (RuoYi's security filter uses ``msg``): 401 -> ``VendorAuthError`` (not retried: a new token
  must be configured), 500 -> retried with backoff by the shared session, then raised;
* ``data.total`` and ``data.size`` are strings; rows are paged with ``pageNum`` (1-based) up to
  ``pageSize`` 100 until ``total`` rows are read, terminal ids sent ``ids_per_call`` at a time;
* the report selects attempts by their LAST UPDATE, and an attempt's update moves on while it
  progresses (sent -> downloading -> succeeded), so a row read on page 1 can leave the window or
  move behind a later page while the client pages, shifting the rows after it by one. When the
  ``total`` changes between pages, or a pass sees fewer distinct rows than ``total``, the id
  batch is read again (at most ``MAX_PASSES`` times); rows are merged by ``mark`` (the attempt
  id), keeping the most recent update. One case stays invisible to any offset paging: a row
  leaving while another joins, with the skip elsewhere. Callers that need every transition
  re-read a lookback window and upsert by ``mark``.

Rows are returned as sent: ``upgradeInfo`` stays a JSON string, times stay vendor strings.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Iterable
from datetime import datetime
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
)
from fleet_pipeline.sources.time_windows import as_naive_utc

__all__ = ["AovxClient", "MAX_PAGE_SIZE", "OTA_REPORT", "TERMINAL_LIST", "VENDOR"]

logger = logging.getLogger("fleet_pipeline.sources.aovx")

VENDOR = "aovx"
OTA_REPORT = "queryTerminalOtaReport"
TERMINAL_LIST = "terminal/list"
OTA_REPORT_PATH = "/system/asset/command/queryTerminalOtaReport"
# Sandbox-only: AOVX documents no way to list terminals (see sandbox/aovx/endpoints.py).
TERMINAL_LIST_PATH = "/system/asset/terminal/list"
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
MAX_PAGE_SIZE = 100
# The limit of ``ids`` is undocumented and the backend reads the list from a JSON body (no URL
# length at stake): a few hundred terminals a query keeps the calls few without betting on it.
IDS_PER_CALL = 500
# Bounds the re-reads of an id batch whose total keeps moving (a live rollout): after this many
# passes the union of what was seen is returned.
MAX_PASSES = 3


def _count(value: Any, name: str, method: str) -> int:
    """``total``/``size`` as an int: the doc types them as strings, the example shows numbers."""
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        raise VendorResponseError(VENDOR, method, f"{name} is not a count: {str(value)[:40]!r}") from None
    if number < 0:
        raise VendorResponseError(VENDOR, method, f"{name} is negative: {number}")
    return number


class AovxClient(VendorClient):
    """One AOVX deployment (``base_url`` includes its context path, e.g. ``.../prod``) and token.

    ``http`` replaces the whole HTTP session (its retry policy and sleep then apply);
    otherwise ``sleep`` and ``retry`` shape the one built here. ``page_size`` is capped at 100
    (the server's limit); ``ids_per_call`` bounds the ``ids`` list of one query, whose limit is
    undocumented.
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        http: HttpSession | None = None,
        sleep: Callable[[float], None] = time.sleep,
        retry: RetryPolicy | None = None,
        page_size: int = MAX_PAGE_SIZE,
        ids_per_call: int = IDS_PER_CALL,
        token_header: str = "Authorization",
        token_prefix: str = "Bearer ",
        timeout_s: float | tuple[float, float] = (10.0, 60.0),
        rng: random.Random | None = None,
    ) -> None:
        if not token:
            raise ValueError("aovx client: a token is required")
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"aovx client: page_size must be 1..{MAX_PAGE_SIZE}, got {page_size}")
        if ids_per_call < 1:
            raise ValueError(f"aovx client: ids_per_call must be positive, got {ids_per_call}")
        self.base_url = base_url.rstrip("/")
        self.page_size = page_size
        self.ids_per_call = ids_per_call
        self._token = token
        self._token_header = token_header
        self._token_prefix = token_prefix
        self._owns_http = http is None
        self.http = http or HttpSession(
            VENDOR,
            retry=retry or RetryPolicy(max_attempts=4, backoff=Backoff(base_s=1.0, max_s=30.0)),
            sleep=sleep,
            timeout_s=timeout_s,
            rng=rng,
        )
        self.secrets: Secrets = self.http.secrets
        self.secrets.register(token)
        self.secrets.register(token_prefix + token)

    # -----------------------------------------------------------------------------------------
    # The OTA report
    # -----------------------------------------------------------------------------------------

    def ota_reports(self, terminal_ids: Iterable[str], start_utc: datetime, end_utc: datetime) -> list[dict[str, Any]]:
        """Every report row of these terminals whose last update lies in [start_utc, end_utc).

        Times are naive UTC (aware ones are converted) in whole seconds, the API's resolution.
        One row per attempt (``mark``), sorted by ``dateTimestamp`` then ``mark``.
        """
        start, end = as_naive_utc(start_utc), as_naive_utc(end_utc)
        for name, value in (("start_utc", start), ("end_utc", end)):
            if value.microsecond:
                raise ValueError(f"aovx client: {name} must be whole seconds (the API's resolution), got {value}")
        if end < start:
            raise ValueError(f"aovx client: end_utc {end} is before start_utc {start}")
        ids = list(dict.fromkeys(str(t) for t in terminal_ids))
        if not ids or end == start:
            return []
        rows: dict[str, dict[str, Any]] = {}
        for first in range(0, len(ids), self.ids_per_call):
            batch = ids[first:first + self.ids_per_call]
            for row in self._report_batch(batch, start, end):
                _keep_latest(rows, row)
        return sorted(rows.values(), key=lambda r: (_timestamp(r), str(r.get("mark"))))

    def _report_batch(self, ids: list[str], start: datetime, end: datetime) -> list[dict[str, Any]]:
        """All rows of one id batch; read again when the pass cannot have been consistent.

        A pass is trusted when `total` held still across it AND it saw `total` distinct marks:
        a row that moved behind later pages while paging (same total) shows up twice and pushes
        another row out of sight, so fewer distinct marks than `total` reveal the skip.
        """
        seen: dict[str, dict[str, Any]] = {}
        for passes in range(1, MAX_PASSES + 1):
            totals: set[int] = set()
            marks: set[str] = set()
            page_num, pages = 1, 1
            while page_num <= pages:
                total, pages, page = self._report_page(ids, start, end, page_num)
                totals.add(total)
                for row in page:
                    marks.add(_mark(row))
                    _keep_latest(seen, row)
                if not page:
                    break
                page_num += 1
            if len(totals) == 1 and len(marks) >= total:
                return list(seen.values())
            logger.info("aovx %s: rows moved while paging (totals %s, %d distinct rows); reading the "
                        "batch again (pass %d)", OTA_REPORT, sorted(totals), len(marks), passes + 1)
        return list(seen.values())

    def _report_page(self, ids: list[str], start: datetime, end: datetime, page_num: int
                     ) -> tuple[int, int, list[dict[str, Any]]]:
        body = {
            "ids": ids,
            "startTime": start.strftime(TIME_FORMAT),
            "endTime": end.strftime(TIME_FORMAT),
            "pageNum": page_num,
            "pageSize": self.page_size,
        }
        payload = self._call(OTA_REPORT, OTA_REPORT_PATH, "POST", RequestParts(json=body, headers=self._auth()))
        data = payload.get("data")
        if not isinstance(data, dict):
            raise VendorResponseError(VENDOR, OTA_REPORT, f"data is {type(data).__name__}, not an object")
        total = _count(data.get("total"), "data.total", OTA_REPORT)
        pages = _count(data.get("size"), "data.size", OTA_REPORT)
        rows = data.get("data")
        if rows is None:
            rows = []
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise VendorResponseError(VENDOR, OTA_REPORT, "data.data is not a list of objects")
        for row in rows:
            if not row.get("mark"):
                raise VendorResponseError(VENDOR, OTA_REPORT, "a row has no mark (attempt id)")
        # `size` should be ceil(total / pageSize); trust whichever asks for more pages, and the
        # empty-page stop ends the loop if the server over-counts.
        pages = max(pages, -(-total // self.page_size))
        return total, pages, rows

    # -----------------------------------------------------------------------------------------
    # Terminals (sandbox only)
    # -----------------------------------------------------------------------------------------

    def terminals(self) -> list[dict[str, Any]]:
        """``{terminalId, terminalNum, imei}`` of every terminal, from the SANDBOX-ONLY list.

        AOVX documents no such call; against a real deployment this fails (404) and terminal
        ids must come from configuration or another source.
        """
        out: list[dict[str, Any]] = []
        page_num = 1
        while True:
            params = {"pageNum": str(page_num), "pageSize": str(self.page_size)}
            payload = self._call(TERMINAL_LIST, TERMINAL_LIST_PATH, "GET",
                                 RequestParts(params=params, headers=self._auth()))
            rows = payload.get("rows")
            if not isinstance(rows, list):
                raise VendorResponseError(VENDOR, TERMINAL_LIST, "rows is not a list")
            total = _count(payload.get("total"), "total", TERMINAL_LIST)
            out.extend(rows)
            if not rows or len(out) >= total:
                return out
            page_num += 1

    # -----------------------------------------------------------------------------------------
    # Plumbing
    # -----------------------------------------------------------------------------------------

    def _auth(self) -> dict[str, str]:
        return {self._token_header: f"{self._token_prefix}{self._token}"}

    def _call(self, method: str, path: str, http_method: str, parts: RequestParts) -> dict[str, Any]:
        return self.http.call(method, self.base_url + path, build=parts, check=self._check,
                              http_method=http_method)

    def _check(self, reply: Reply) -> dict[str, Any]:
        method, payload = reply.method, reply.payload
        if not isinstance(payload, dict):
            raise VendorResponseError(VENDOR, method, f"expected a JSON object, got {type(payload).__name__}",
                                      status=reply.status)
        code = payload.get("code")
        text = self.secrets.redact(str(payload.get("message") or payload.get("msg") or "no message"))
        if reply.status == 404 or payload.get("status") == 404:
            raise VendorAPIError(VENDOR, method, f"no such endpoint on this deployment: {payload.get('path')!r}",
                                 status=reply.status)
        if str(code) == "200":
            return payload
        if str(code) == "401":
            raise VendorAuthError(VENDOR, method, f"token rejected: {text}", code, status=reply.status)
        if str(code) == "500":
            # RuoYi reports server faults and bad parameters alike as 500; the client checks its
            # own parameters, so a 500 is most likely transient
            raise RetryableVendorError(VENDOR, method, f"server error: {text}", code, status=reply.status)
        raise VendorAPIError(VENDOR, method, f"unexpected answer code {code!r}: {text}", code, status=reply.status)


def _timestamp(row: dict[str, Any]) -> int:
    try:
        return int(row.get("dateTimestamp"))
    except (TypeError, ValueError):
        return 0


def _mark(row: dict[str, Any]) -> str:
    """The attempt id; a row without one is kept once per content (validation rejects it)."""
    mark = row.get("mark")
    return str(mark) if mark is not None else "no mark: " + json.dumps(row, sort_keys=True, default=str)


def _keep_latest(rows: dict[str, dict[str, Any]], row: dict[str, Any]) -> None:
    """Merge by attempt id; a later update of the same attempt replaces the earlier one."""
    mark = _mark(row)
    known = rows.get(mark)
    if known is None or _timestamp(row) >= _timestamp(known):
        rows[mark] = row

