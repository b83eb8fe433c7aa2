"""Tracksolid Pro (Jimi IoT) API client: signing, the token lifecycle, batching, paging and limits.

Every call is a form-encoded POST to one ``/route/rest`` URL, signed with MD5 over the sorted
parameters. What makes this client more than a loop around ``requests`` is what the platform
does in production (``docs/vendor-apis/FIELD-NOTES.md``):

* ``jimi.oauth.token.get`` may be called once a minute per account, so the token lives in a file
  shared by every process and run, guarded by an ``fcntl`` lock, refreshed before it expires;
* code 1006 (too many requests) needs tens of seconds of backoff and a new signature per retry;
* each report method has its own batch size, paging style, window limit and envelope.

Rows are returned exactly as the vendor sent them; typing belongs to the schema layer.
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fleet_pipeline.ingest.http import (
    Backoff,
    HttpSession,
    Reply,
    RequestParts,
    RetryPolicy,
    Secrets,
    VendorAuthError,
    VendorClient,
    VendorResponseError,
)
from fleet_pipeline.ingest.shared_files import cache_key
from fleet_pipeline.ingest.shared_state import window_limiter
from fleet_pipeline.sources.time_windows import utcnow, windows
from fleet_pipeline.sources.tracksolid.auth import TOKEN_GET, TokenCache, TokenKeeper
from fleet_pipeline.sources.tracksolid.errors import VENDOR, TokenRejected, check_reply
from fleet_pipeline.sources.tracksolid.limits import (
    ALARM_ROWS_REACHABLE,
    ALARM_WINDOW,
    MAX_IMEIS_PER_CALL,
    TRACK_WINDOW,
    batches,
)
from fleet_pipeline.sources.tracksolid.paging import alarm_window, offset_pages
from fleet_pipeline.sources.tracksolid.rows import dedupe, extract_rows
from fleet_pipeline.sources.tracksolid.signing import as_param, format_time, sign

logger = logging.getLogger("fleet_pipeline.sources.tracksolid")


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
        # 1006 means "slow down": tens of seconds, doubling (docs/vendor-apis/FIELD-NOTES.md), capped at two minutes.
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
            # New on every attempt: not archived, and not what tells one call from another.
            volatile_fields=("timestamp", "sign"),
            # A burst of ~25 calls triggers 1006 and costs 15+ s of backoff; pacing below it is
            # far cheaper. 22 a second, not 23: at 23 the arrivals of calls sent evenly still
            # bunched into 26 a second now and then on a loaded 2-core machine (one 1006 in 1,000
            # calls at 200 ms latency), and Tracksolid is not the slow vendor of a run anyway.
            # The vendor counts per app key, so every client on this machine with the
            # same node and key (other steps, other runs) shares one ledger. Real time on purpose:
            # the vendor's window is wall-clock, whatever clock the caller injects for timestamps.
            limiter=(
                window_limiter(_ledger_path(token_cache_dir, self.url, app_key), max_calls_per_s, 1.0,
                                 evenly=True)
                if max_calls_per_s else None
            ),
        )
        self.secrets: Secrets = self.http.secrets
        for secret in (app_secret, user_password, self._user_pwd_md5):
            self.secrets.register(secret)
        self._tokens = TokenKeeper(
            cache=TokenCache(token_cache_dir, self.url, app_key, user_id), signed=self._signed,
            user_id=user_id, user_pwd_md5=self._user_pwd_md5, secrets=self.secrets,
            stats=self.http.stats, now=now, sleep=sleep, token_lifetime_s=token_lifetime_s,
            refresh_margin_s=refresh_margin_s, token_get_interval_s=token_get_interval_s,
        )

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
            return list(offset_pages(self.call, method, {
                "imeis": ",".join(batch),
                "begin_time": format_time(begin),
                "end_time": format_time(end),
            }))

        for _, pages in self.fan_out(batches(imeis, MAX_IMEIS_PER_CALL), batch_pages):
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
            for lo, hi in windows(begin, end, TRACK_WINDOW)
        ]
        # One window (a day's run) has no boundary to share: skip the row-by-row comparison,
        # the costliest Python of a day's fixes.
        return pages[0] if len(pages) == 1 else dedupe(row for page in pages for row in page)

    def parking(
        self, account: str, imeis: Sequence[str], begin: datetime, end: datetime
    ) -> list[dict[str, Any]]:
        """Parking and idling periods (``acc_type`` "0" = every stop; "" returns nothing)."""
        method = "jimi.open.platform.report.parking"
        rows: list[dict[str, Any]] = []
        if begin >= end:
            return rows

        def batch_rows(batch: list[str]) -> list[dict[str, Any]]:
            return [row for _, page in offset_pages(self.call, method, {
                "account": account,
                "imeis": ",".join(batch),
                "start_time": format_time(begin),
                "end_time": format_time(end),
                "acc_type": "0",
            }) for row in page]

        for _, batch in self.fan_out(batches(imeis, MAX_IMEIS_PER_CALL), batch_rows):
            rows.extend(batch)
        return rows

    def alarms(self, imeis: Sequence[str], begin: datetime, end: datetime) -> list[dict[str, Any]]:
        """Alarms in windows of at most 31 days, batches of 50 IMEIs, pages of 100.

        A query can reach only 1000 rows; when a window hits that, it is halved and both
        halves are queried again, so no alarm is silently lost. Halves share their boundary
        second, hence the exact-duplicate removal.
        """
        def batch_rows(batch: list[str]) -> list[dict[str, Any]]:
            return [row for lo, hi in windows(begin, end, ALARM_WINDOW)
                    for row in alarm_window(self.call, self.alarm_rows_reachable, batch, lo, hi)]

        return dedupe(row for _, rows in self.fan_out(batches(imeis, MAX_IMEIS_PER_CALL), batch_rows)
                       for row in rows)

    # ---------------------------------------------------------------------------------------
    # Calls, signing, envelopes
    # ---------------------------------------------------------------------------------------

    def call(self, method: str, params: dict[str, object]) -> dict[str, Any]:
        """One authenticated API call; renews the token once and retries once on 1004/1005."""
        fixed = {k: as_param(v) for k, v in params.items() if v is not None}
        token = self._tokens.token()
        try:
            return self._signed(method, fixed, token)
        except TokenRejected as rejected:
            logger.info(
                "tracksolid %s: token rejected (code %s); renewing once", method, rejected.code
            )
        token = self._tokens.renew(rejected=token)
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
        return check_reply(reply, self.secrets, self._throttle_wait)

    def _throttle_wait(self, method: str, attempt: int) -> float:
        # token.get has its own limit, once a minute, that a token.get whose answer was lost
        # on the way (a proxy page, a cut connection) has used up too: any shorter wait is
        # refused again.
        if method == TOKEN_GET:
            return self._tokens.token_get_interval_s
        return self.throttle_backoff.delay(attempt, self._rng)


def _ledger_path(directory: Path, url: str, app_key: str) -> Path:
    return Path(directory) / f"tracksolid-rate-{cache_key(url, app_key)}.json"


def _endpoint(base_url: str) -> str:
    """Accept a node's root (``https://eu-open.tracksolidpro.com``) or its full ``/route/rest``."""
    url = base_url.rstrip("/")
    if urlsplit(url).path in ("", "/"):
        return url + "/route/rest"
    return url
