"""Tracksolid Pro (Jimi IoT) API client: signing, the token lifecycle, batching, paging and limits.

Every call is a form-encoded POST to one ``/route/rest`` URL, signed with MD5 over the sorted
parameters. What makes this client more than a loop around ``requests`` is what the platform
does in production (``vendor-apis/FIELD-NOTES.md``):

* ``jimi.oauth.token.get`` may be called once a minute per account, so the token lives in a file
  shared by every process and run, guarded by an ``fcntl`` lock, refreshed before it expires;
* code 1006 (too many requests) needs tens of seconds of backoff and a new signature per retry;
* each report method has its own batch size, paging style, window limit and envelope.

Rows are returned exactly as the vendor sent them; typing belongs to the schema layer.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fleet_pipeline.ingest.http import (
    Backoff,
    FileWindowLimiter,
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
from fleet_pipeline.ingest.shared_files import SharedJsonFile, cache_key

logger = logging.getLogger("fleet_pipeline.sources.tracksolid")

VENDOR = "tracksolid"
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"

TOKEN_GET = "jimi.oauth.token.get"
TOKEN_REFRESH = "jimi.oauth.token.refresh"

# Documented limits (tracksolid-pro.md sections 1 and 5-6, FIELD-NOTES).
MAX_IMEIS_PER_CALL = 50
MAX_PAGE_SIZE = 100
TRACK_WINDOW = timedelta(days=7)
ALARM_WINDOW = timedelta(days=31)
ALARM_ROWS_REACHABLE = 1000
# Paging loops stop here even if a server keeps answering full pages: a guard against a server
# that ignores the offset, which would otherwise loop forever.
MAX_PAGES = 10_000

RETRYABLE_CODES = frozenset({"1100", "-1"})
THROTTLE_CODES = frozenset({"1006"})
TOKEN_REJECTED_CODES = frozenset({"1004", "1005"})


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def format_time(value: datetime) -> str:
    """``yyyy-MM-dd HH:mm:ss`` in UTC; aware datetimes are converted, naive ones are UTC already."""
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return value.strftime(TIME_FORMAT)


def sign(params: dict[str, str], app_secret: str) -> str:
    """The Jimi signature: MD5 of ``secret + k1 + v1 + k2 + v2 ... + secret`` over sorted keys.

    ``params`` must already hold the exact strings that will be sent; stringifying twice (e.g.
    ``1.0`` vs ``"1"``) is what makes a real server answer 1001.
    """
    parts = [app_secret]
    for key in sorted(params):
        if key == "sign" or params[key] is None:
            continue
        parts.append(key)
        parts.append(params[key])
    parts.append(app_secret)
    return hashlib.md5("".join(parts).encode("utf-8")).hexdigest().upper()


def _as_param(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def _code(payload: dict[str, Any]) -> str | None:
    code = payload.get("code")
    return None if code is None else str(code).strip()


def _message(payload: dict[str, Any]) -> str:
    text = payload.get("message")
    if text in (None, ""):
        text = payload.get("msg")
    return "" if text is None else str(text)


def _int_or_none(value: object) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def extract_rows(method: str, payload: dict[str, Any]) -> tuple[list[dict[str, Any]], int | None]:
    """Rows and the announced total from any of the envelopes Tracksolid uses.

    ``result: [...]`` (most methods); ``result: null`` with ``data.rows`` + ``dataTotalRows``
    (parking and other report methods) or ``data.{result,totalRecord}``; ``data: [...]``.
    """
    result = payload.get("result")
    data = payload.get("data")
    if isinstance(result, list):
        return result, None
    for container in (result, data):
        if isinstance(container, dict):
            for key in ("rows", "result", "list"):
                if isinstance(container.get(key), list):
                    total = _int_or_none(
                        container.get("dataTotalRows", container.get("totalRecord"))
                    )
                    if total is None:
                        total = _int_or_none(payload.get("dataTotalRows"))
                    return container[key], total
    if result is None and isinstance(data, list):
        return data, None
    if result is None and data is None:
        return [], None
    raise VendorResponseError(
        VENDOR, method, f"unexpected envelope: result is {type(result).__name__}, "
        f"data is {type(data).__name__}"
    )


def _dedupe(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drop exact duplicate rows (inclusive window boundaries return a row twice), keep order."""
    seen: set[str] = set()
    out = []
    for row in rows:
        key = json.dumps(row, sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            out.append(row)
    return out


def _batches(imeis: Iterable[str], size: int) -> Iterator[list[str]]:
    unique = list(dict.fromkeys(str(i) for i in imeis))
    for start in range(0, len(unique), size):
        yield unique[start:start + size]


def _windows(begin: datetime, end: datetime, span: timedelta) -> Iterator[tuple[datetime, datetime]]:
    cursor = begin
    while cursor < end:
        stop = min(cursor + span, end)
        yield cursor, stop
        cursor = stop


class TokenRejected(VendorAuthError):
    """1004/1005: the access token is invalid or expired; the caller renews and retries once."""


@dataclass
class TokenState:
    """What the cache file holds. ``last_get_at`` survives refreshes: it is what rate-limits get."""

    access_token: str | None = None
    refresh_token: str | None = None
    expires_at: datetime | None = None
    lifetime_s: float | None = None
    last_get_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        def iso(value: datetime | None) -> str | None:
            return None if value is None else value.isoformat()

        return {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "expires_at": iso(self.expires_at),
            "lifetime_s": self.lifetime_s,
            "last_get_at": iso(self.last_get_at),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TokenState:
        def when(value: object) -> datetime | None:
            return datetime.fromisoformat(value) if isinstance(value, str) else None

        lifetime = data.get("lifetime_s")
        return cls(
            access_token=data.get("access_token") or None,
            refresh_token=data.get("refresh_token") or None,
            expires_at=when(data.get("expires_at")),
            lifetime_s=float(lifetime) if isinstance(lifetime, (int, float)) else None,
            last_get_at=when(data.get("last_get_at")),
        )


class TokenCache:
    """The token of one (base URL, app key, user), shared by every process on the machine."""

    def __init__(self, directory: Path, base_url: str, app_key: str, user_id: str) -> None:
        self.file = SharedJsonFile(directory, f"tracksolid-token-{cache_key(base_url, app_key, user_id)}")
        self.path = self.file.path

    def read(self) -> TokenState:
        data = self.file.read()
        return TokenState.from_json(data) if data else TokenState()

    def write(self, state: TokenState) -> None:
        self.file.write(state.to_json())

    def locked(self) -> contextlib.AbstractContextManager[None]:
        return self.file.locked()


class TracksolidClient(VendorClient):
    """One Tracksolid Pro account (and its sub-accounts) on one region node.

    ``now`` is the UTC clock used for request timestamps, token expiry and the once-a-minute
    token rule, and ``sleep`` waits for that rule and for retries; tests pass the sandbox clock
    and a sleep that advances it. Retries and backoff of individual calls are the HTTP
    session's; a session passed in as ``http`` keeps its own retry policy, sleep and limiter.
    """

    def __init__(
        self,
        base_url: str,
        app_key: str,
        app_secret: str,
        user_id: str,
        user_password: str,
        target_account: str | None = None,
        *,
        token_cache_dir: Path,
        http: HttpSession | None = None,
        now: Callable[[], datetime] = utcnow,
        sleep: Callable[[float], None] = time.sleep,
        token_lifetime_s: int = 7200,
        refresh_margin_s: float = 600.0,
        token_get_interval_s: float = 60.0,
        throttle_backoff: Backoff | None = None,
        retry: RetryPolicy | None = None,
        timeout_s: float | tuple[float, float] = (10.0, 180.0),
        max_calls_per_s: int | None = 22,
        concurrency: int = 8,
        alarm_rows_reachable: int = ALARM_ROWS_REACHABLE,
        rng: random.Random | None = None,
    ) -> None:
        self.url = _endpoint(base_url)
        self.app_key = app_key
        self._app_secret = app_secret
        self.user_id = user_id
        self._user_pwd_md5 = hashlib.md5(user_password.encode("utf-8")).hexdigest()
        self.target_account = target_account or user_id
        self._now = now
        self._sleep = sleep
        self.token_lifetime_s = token_lifetime_s
        self.refresh_margin_s = refresh_margin_s
        self.token_get_interval_s = token_get_interval_s
        # 1006 means "slow down": tens of seconds, doubling (FIELD-NOTES), capped at two minutes.
        self.throttle_backoff = throttle_backoff or Backoff(
            base_s=15.0, multiplier=2.0, max_s=120.0, jitter=0.2
        )
        self.alarm_rows_reachable = alarm_rows_reachable
        self._rng = rng or random.Random()
        self.concurrency = concurrency
        self._owns_http = http is None
        self.http = http or HttpSession(
            VENDOR,
            retry=retry or RetryPolicy(max_attempts=6, backoff=Backoff(base_s=1.0, max_s=30.0)),
            sleep=sleep,
            timeout_s=timeout_s,
            rng=self._rng,
            pool_maxsize=concurrency,
            # A burst of ~25 calls triggers 1006 and costs 15+ s of backoff; pacing below it is
            # far cheaper. 22 a second, not 23: at 23 the arrivals of calls sent evenly still
            # bunched into 26 a second now and then on a loaded 2-core machine (one 1006 in 1,000
            # calls at 200 ms latency), and Tracksolid is not the slow vendor of a run anyway.
            # The vendor counts per app key, so every client on this machine with the
            # same node and key (other steps, other runs) shares one ledger. Real time on purpose:
            # the vendor's window is wall-clock, whatever clock the caller injects for timestamps.
            limiter=(
                FileWindowLimiter(_ledger_path(token_cache_dir, self.url, app_key), max_calls_per_s, 1.0,
                                 evenly=True)
                if max_calls_per_s else None
            ),
        )
        self.secrets: Secrets = self.http.secrets
        for secret in (app_secret, user_password, self._user_pwd_md5):
            self.secrets.register(secret)
        self._cache = TokenCache(token_cache_dir, self.url, app_key, user_id)
        self._state: TokenState | None = None

    # ---------------------------------------------------------------------------------------
    # High-level reads
    # ---------------------------------------------------------------------------------------

    def accounts(self) -> list[dict[str, Any]]:
        """The target account and every descendant, breadth-first, each listed once.

        ``jimi.user.child.list`` returns direct children only, so the tree is walked, one level
        at a time with the accounts of a level asked ``concurrency`` at a time (the walk's calls
        follow each other, so each level costs one round trip, not one per account); a ``seen``
        set makes a (misconfigured) cycle harmless. The target itself has no vendor row, so it is
        represented as ``{"account": target, "parentAccount": None}``.
        """
        method = "jimi.user.child.list"
        root = {"account": self.target_account, "parentAccount": None}
        out: list[dict[str, Any]] = [root]
        seen = {self.target_account}
        level = [self.target_account]
        while level:
            children = self.fan_out(level, lambda parent: extract_rows(method, self.call(method, {"target": parent}))[0])
            level = []
            for parent, rows in children:
                for row in rows:
                    account = row.get("account")
                    if not account or account in seen:
                        continue
                    seen.add(account)
                    if row.get("parentAccount") in (None, ""):
                        row = {**row, "parentAccount": parent}
                    out.append(row)
                    level.append(account)
        return out

    def devices(self, account: str) -> list[dict[str, Any]]:
        """Devices directly on ``account`` (the method is not recursive and ignores paging)."""
        method = "jimi.user.device.list"
        return extract_rows(method, self.call(method, {"target": account}))[0]

    def device_detail(self, imei: str) -> dict[str, Any]:
        method = "jimi.track.device.detail"
        payload = self.call(method, {"imei": imei})
        result = payload.get("result")
        if isinstance(result, list) and len(result) == 1 and isinstance(result[0], dict):
            return result[0]
        if not isinstance(result, dict):
            raise VendorResponseError(
                VENDOR, method, f"expected one device object, got {type(result).__name__}"
            )
        return result

    def locations(self, account: str) -> list[dict[str, Any]]:
        """Latest position of every device directly on ``account`` (fix-less ones are absent)."""
        method = "jimi.user.device.location.list"
        return extract_rows(method, self.call(method, {"target": account}))[0]

    def trips(
        self, imeis: Sequence[str], begin: datetime, end: datetime
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Trips (``result``) and per-IMEI totals (``data``) from ``jimi.device.track.mileage``.

        Batches of 50 IMEIs, ``concurrency`` batches at a time; pages of 100 rows by
        ``start_row`` until a short page, because the server caps rows per call whatever is asked.
        """
        method = "jimi.device.track.mileage"
        rows: list[dict[str, Any]] = []
        totals: dict[str, dict[str, Any]] = {}
        if begin >= end:
            return rows, []

        def batch_pages(batch: list[str]) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
            return list(self._offset_pages(method, {
                "imeis": ",".join(batch),
                "begin_time": format_time(begin),
                "end_time": format_time(end),
            }))

        for _, pages in self.fan_out(_batches(imeis, MAX_IMEIS_PER_CALL), batch_pages):
            for payload, page in pages:
                rows.extend(page)
                data = payload.get("data")
                for total in data if isinstance(data, list) else []:
                    if isinstance(total, dict) and total.get("imei") is not None:
                        totals[str(total["imei"])] = total
        return rows, list(totals.values())

    def track_points(self, imei: str, begin: datetime, end: datetime) -> list[dict[str, Any]]:
        """GPS points of one device, in windows of at most 7 days.

        ``end`` is clipped to one second before now because the API rejects an end time that is
        not in the past. Windows share their boundary second, so exact duplicates are dropped.
        """
        method = "jimi.device.track.list"
        end = min(end, self._now().replace(microsecond=0) - timedelta(seconds=1))
        pages = [
            extract_rows(method, self.call(method, {
                "imei": imei, "begin_time": format_time(lo), "end_time": format_time(hi),
            }))[0]
            for lo, hi in _windows(begin, end, TRACK_WINDOW)
        ]
        # One window (a day's run) has no boundary to share: skip the row-by-row comparison,
        # the costliest Python of a day's fixes.
        return pages[0] if len(pages) == 1 else _dedupe(row for page in pages for row in page)

    def parking(
        self, account: str, imeis: Sequence[str], begin: datetime, end: datetime
    ) -> list[dict[str, Any]]:
        """Parking and idling periods (``acc_type`` "0" = every stop; "" returns nothing)."""
        method = "jimi.open.platform.report.parking"
        rows: list[dict[str, Any]] = []
        if begin >= end:
            return rows

        def batch_rows(batch: list[str]) -> list[dict[str, Any]]:
            return [row for _, page in self._offset_pages(method, {
                "account": account,
                "imeis": ",".join(batch),
                "start_time": format_time(begin),
                "end_time": format_time(end),
                "acc_type": "0",
            }) for row in page]

        for _, batch in self.fan_out(_batches(imeis, MAX_IMEIS_PER_CALL), batch_rows):
            rows.extend(batch)
        return rows

    def alarms(self, imeis: Sequence[str], begin: datetime, end: datetime) -> list[dict[str, Any]]:
        """Alarms in windows of at most 31 days, batches of 50 IMEIs, pages of 100.

        A query can reach only 1000 rows; when a window hits that, it is halved and both
        halves are queried again, so no alarm is silently lost. Halves share their boundary
        second, hence the exact-duplicate removal.
        """
        def batch_rows(batch: list[str]) -> list[dict[str, Any]]:
            return [row for lo, hi in _windows(begin, end, ALARM_WINDOW) for row in self._alarm_window(batch, lo, hi)]

        return _dedupe(row for _, rows in self.fan_out(_batches(imeis, MAX_IMEIS_PER_CALL), batch_rows)
                       for row in rows)

    # ---------------------------------------------------------------------------------------
    # Paging helpers
    # ---------------------------------------------------------------------------------------

    def _offset_pages(
        self, method: str, params: dict[str, str]
    ) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
        """Pages by ``start_row`` (a row offset, always a multiple of ``page_size``)."""
        start_row = 0
        for _ in range(MAX_PAGES):
            payload = self.call(
                method, {**params, "start_row": start_row, "page_size": MAX_PAGE_SIZE}
            )
            page, total = extract_rows(method, payload)
            yield payload, page
            start_row += MAX_PAGE_SIZE
            if len(page) < MAX_PAGE_SIZE or (total is not None and start_row >= total):
                return
        raise VendorAPIError(VENDOR, method, f"more than {MAX_PAGES} full pages; paging ignored?")

    def _alarm_window(self, batch: list[str], begin: datetime, end: datetime) -> list[dict[str, Any]]:
        method = "jimi.device.alarm.list"
        rows: list[dict[str, Any]] = []
        cap = self.alarm_rows_reachable
        for page_no in range(1, max(cap // MAX_PAGE_SIZE, 1) + 1):
            payload = self.call(method, {
                "imeis": ",".join(batch),
                "begin_time": format_time(begin),
                "end_time": format_time(end),
                "page_no": page_no,
                "page_size": MAX_PAGE_SIZE,
            })
            page = extract_rows(method, payload)[0]
            rows.extend(page)
            if len(page) < MAX_PAGE_SIZE:
                return rows
        # Every reachable row was full: there may be more than the platform will page to.
        if end - begin <= timedelta(seconds=1):
            raise VendorAPIError(
                VENDOR, method,
                f"{cap}+ alarms within one second ({format_time(begin)}) for "
                f"{len(batch)} devices; cannot split the window further",
            )
        middle = begin + timedelta(seconds=int((end - begin).total_seconds()) // 2)
        logger.info(
            "tracksolid %s: %s rows reached between %s and %s; splitting at %s",
            method, cap, format_time(begin), format_time(end), format_time(middle),
        )
        return self._alarm_window(batch, begin, middle) + self._alarm_window(batch, middle, end)

    # ---------------------------------------------------------------------------------------
    # Calls, signing, envelopes
    # ---------------------------------------------------------------------------------------

    def call(self, method: str, params: dict[str, object]) -> dict[str, Any]:
        """One authenticated API call; renews the token once and retries once on 1004/1005."""
        fixed = {k: _as_param(v) for k, v in params.items() if v is not None}
        token = self._token()
        try:
            return self._signed(method, fixed, token)
        except TokenRejected as rejected:
            logger.info(
                "tracksolid %s: token rejected (code %s); renewing once", method, rejected.code
            )
        token = self._renew(rejected=token)
        try:
            return self._signed(method, fixed, token)
        except TokenRejected as again:
            raise VendorAuthError(
                VENDOR, method, f"token rejected again right after renewal: {again.message}",
                again.code,
            ) from None

    def _signed(self, method: str, params: dict[str, str], token: str | None) -> dict[str, Any]:
        def build() -> RequestParts:
            # A new timestamp and signature on every attempt: a retry after a long 1006
            # backoff must not send a timestamp that has aged out of the server's tolerance.
            form = {
                **params,
                "method": method,
                "app_key": self.app_key,
                "timestamp": format_time(self._now()),
                "sign_method": "md5",
                "v": "1.0",
                "format": "json",
            }
            if token is not None:
                form["access_token"] = token
            form["sign"] = sign(form, self._app_secret)
            return RequestParts(data=form)

        return self.http.call(method, self.url, build=build, check=self._check)

    def _check(self, reply: Reply) -> dict[str, Any]:
        method = reply.method
        payload = reply.payload
        if not isinstance(payload, dict):
            raise VendorResponseError(
                VENDOR, method, f"expected a JSON object, got {type(payload).__name__}",
                status=reply.status,
            )
        code = _code(payload)
        message = self.secrets.redact(_message(payload)) or "no message"
        if code == "0":
            return payload
        if code is None:
            raise VendorResponseError(VENDOR, method, "answer has no result code", status=reply.status)
        if code in THROTTLE_CODES:
            # token.get has its own limit, once a minute, that a token.get whose answer was lost
            # on the way (a proxy page, a cut connection) has used up too: any shorter wait is
            # refused again.
            wait = (self.token_get_interval_s if method == TOKEN_GET
                    else self.throttle_backoff.delay(reply.attempt, self._rng))
            raise RetryableVendorError(
                VENDOR, method, f"request frequency too high: {message}", code,
                wait_s=wait, throttle=True,
            )
        if code in RETRYABLE_CODES:
            raise RetryableVendorError(VENDOR, method, f"server busy: {message}", code)
        if code in TOKEN_REJECTED_CODES:
            raise TokenRejected(VENDOR, method, f"access token rejected: {message}", code)
        raise VendorAPIError(VENDOR, method, message, code, status=reply.status)

    # ---------------------------------------------------------------------------------------
    # Token lifecycle
    # ---------------------------------------------------------------------------------------

    def _token(self) -> str:
        """A token with more than the refresh margin of life left, renewing if needed."""
        if self._state is not None and self._usable(self._state):
            return self._state.access_token  # type: ignore[return-value]
        # Another process may have renewed already: the file is the shared truth.
        state = self._cache.read()
        if self._usable(state):
            self._adopt(state)
            return state.access_token  # type: ignore[return-value]
        return self._renew(rejected=None)

    def _usable(self, state: TokenState) -> bool:
        if not state.access_token or state.expires_at is None:
            return False
        return (state.expires_at - self._now()).total_seconds() > self._margin_s(state)

    def _margin_s(self, state: TokenState) -> float:
        # A token shorter-lived than twice the margin would be "due for refresh" from birth and
        # refreshed on every call; refresh such tokens at half-life instead.
        lifetime = state.lifetime_s or float(self.token_lifetime_s)
        return min(self.refresh_margin_s, lifetime / 2)

    def _adopt(self, state: TokenState) -> None:
        self.secrets.register(state.access_token)
        self.secrets.register(state.refresh_token)
        self._state = state

    def _renew(self, rejected: str | None) -> str:
        """Refresh (or, failing that, get) a token under the cross-process lock.

        Re-reading the file under the lock is what lets a second process reuse the token the
        first one just obtained instead of calling the token endpoints again.
        """
        with self._cache.locked():
            state = self._cache.read()
            if state.access_token:
                self._adopt(state)
            if state.access_token != rejected and self._usable(state):
                return state.access_token  # type: ignore[return-value]
            renewed = None
            if state.access_token and state.refresh_token and not self._expired(state):
                renewed = self._try_refresh(state)
            if renewed is None:
                self._wait_for_token_get(state)
                renewed = self._get_token()
            else:
                renewed.last_get_at = state.last_get_at
            self._cache.write(renewed)
            self._adopt(renewed)
            return renewed.access_token  # type: ignore[return-value]

    def _expired(self, state: TokenState) -> bool:
        return state.expires_at is None or state.expires_at <= self._now()

    def _try_refresh(self, state: TokenState) -> TokenState | None:
        try:
            payload = self._signed(TOKEN_REFRESH, {
                "refresh_token": state.refresh_token or "",
                "expires_in": str(self.token_lifetime_s),
            }, state.access_token)
            renewed = self._token_state(TOKEN_REFRESH, payload)
        except VendorAPIError as error:
            logger.warning(
                "tracksolid %s failed (%s); falling back to %s",
                TOKEN_REFRESH, self.secrets.redact(str(error)), TOKEN_GET,
            )
            return None
        if renewed.refresh_token is None:
            renewed.refresh_token = state.refresh_token
        logger.info("tracksolid: access token refreshed (valid %.0f s)", renewed.lifetime_s or 0)
        return renewed

    def _wait_for_token_get(self, state: TokenState) -> None:
        """Honour "token.get at most once a minute" across processes, using the cached stamp."""
        if state.last_get_at is None:
            return
        elapsed = (self._now() - state.last_get_at).total_seconds()
        wait = self.token_get_interval_s - elapsed
        if wait > 0:
            logger.info("tracksolid: waiting %.1f s before %s (once a minute)", wait, TOKEN_GET)
            self.stats.record_throttle_wait(wait)
            self._sleep(wait)

    def _get_token(self) -> TokenState:
        payload = self._signed(TOKEN_GET, {
            "user_id": self.user_id,
            "user_pwd_md5": self._user_pwd_md5,
            "expires_in": str(self.token_lifetime_s),
        }, None)
        state = self._token_state(TOKEN_GET, payload)
        state.last_get_at = self._now()
        logger.info("tracksolid: new access token obtained (valid %.0f s)", state.lifetime_s or 0)
        return state

    def _token_state(self, method: str, payload: dict[str, Any]) -> TokenState:
        result = payload.get("result")
        if not isinstance(result, dict) or not result.get("accessToken"):
            raise VendorResponseError(VENDOR, method, "answer carries no accessToken")
        access = str(result["accessToken"])
        refresh = result.get("refreshToken")
        self.secrets.register(access)
        self.secrets.register(None if refresh is None else str(refresh))
        lifetime = _int_or_none(result.get("expiresIn")) or self.token_lifetime_s
        return TokenState(
            access_token=access,
            refresh_token=None if refresh in (None, "") else str(refresh),
            expires_at=self._now() + timedelta(seconds=lifetime),
            lifetime_s=float(lifetime),
        )


def _ledger_path(directory: Path, url: str, app_key: str) -> Path:
    key = hashlib.sha256(f"{url}\n{app_key}".encode()).hexdigest()[:24]
    return Path(directory) / f"tracksolid-rate-{key}.json"


def _endpoint(base_url: str) -> str:
    """Accept a node's root (``https://eu-open.tracksolidpro.com``) or its full ``/route/rest``."""
    url = base_url.rstrip("/")
    if urlsplit(url).path in ("", "/"):
        return url + "/route/rest"
    return url
