"""Telesto inventory client: one ``GET /v2/products`` per snapshot, inside a hard hourly budget.

Telesto allows 100 requests per hour per client IP and answers the 101st by blocking the IP for
15 minutes (``docs/vendor-apis/telesto-inventory.md``, ``docs/vendor-apis/FIELD-NOTES.md``). A block costs more than a
refused call: every request during it is wasted and, for a scheduled pipeline, the next runs
fail too. So this client never asks the server to tell it that the hour is used up:

* every attempt (retries included) takes a slot from a ``FileWindowLimiter`` ledger in
  ``cache_dir``, shared by every process and run on the machine and keyed by the API's origin
  (the limit is per IP, so per machine, whatever the key; machines behind one address share the
  ledger and the block record in Redis with FLEET_SHARED_STATE). The default budget is 90, leaving
  headroom for a human with curl on the same IP;
* when the budget is used up it does NOT wait (up to an hour, inside a pipeline step): it raises
  ``TelestoRateLimited`` (a ``VendorRateLimitError``) saying when the next call is allowed;
* a 429 from the server (another machine behind the same NAT, a budget set too high) is never
  retried: the block is remembered in ``cache_dir`` so that no process on the machine calls
  again before it ends (each call would be wasted), and the error names when to come back;
* 5xx answers and transport failures are retried with exponential backoff.

The API key goes in ``Authorization`` as is, with no ``Bearer`` (a Bearer-prefixed key is an
invalid key to Telesto). It is registered with the redactor: it never appears in a log or error.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

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
    VendorHTTPError,
    VendorRateLimitError,
    VendorResponseError,
    retry_after_s,
)
from fleet_pipeline.ingest.shared_state import shared_json, window_limiter
from fleet_pipeline.sources.time_windows import utcnow

logger = logging.getLogger("fleet_pipeline.sources.telesto")

VENDOR = "telesto"
PRODUCTS_PATH = "/v2/products"
PRODUCTS = "GET /v2/products"

# Documented limits: 100 requests per hour per IP; exceeding them blocks the IP for 15 minutes.
RATE_LIMIT_PER_HOUR = 100
RATE_WINDOW_S = 3600.0
BLOCK_S = 900.0
DEFAULT_HOURLY_BUDGET = 90


def _epoch(moment: datetime) -> float:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def _from_epoch(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, timezone.utc).replace(tzinfo=None)


def _clock_time(moment: datetime) -> str:
    """``HH:MM UTC``, rounded UP to the minute so that the time given is never too early."""
    if moment.second or moment.microsecond:
        moment = moment.replace(second=0, microsecond=0) + timedelta(minutes=1)
    return moment.strftime("%H:%M UTC")


def _origin(base_url: str) -> str:
    """``scheme://host[:port]`` in lower case: what the per-IP limit is really keyed on."""
    parts = urlsplit(base_url.strip())
    return f"{parts.scheme}://{parts.netloc}".lower()


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------


class TelestoRateLimited(VendorRateLimitError):
    """No call may be made before ``retry_at`` (naive UTC): the budget is used or the IP blocked."""

    def __init__(self, method: str, message: str, retry_at: datetime, *,
                 code: str | None = None, status: int | None = None) -> None:
        self.retry_at = retry_at
        super().__init__(VENDOR, method, message, code, status=status)


class SubscriptionRequired(VendorAPIError):
    """403 FORBIDDEN: the API needs a Pro subscription, which the account does not have."""


# ---------------------------------------------------------------------------------------------
# The hourly budget
# ---------------------------------------------------------------------------------------------


class HourlyBudget:
    """The machine-wide hourly allowance for one Telesto origin, which refuses instead of waiting.

    Two files in ``directory``: the sliding-window ledger of calls made (``FileWindowLimiter``
    format, ``fcntl``-locked) and the end of a server-imposed block, if one was ever answered.
    ``now`` is the naive-UTC clock both are measured on (wall clock in production: the vendor's
    window is wall-clock, and the ledger must survive restarts).
    """

    def __init__(self, directory: Path, base_url: str, max_calls: int,
                 now: Callable[[], datetime] = utcnow) -> None:
        key = hashlib.sha256(_origin(base_url).encode("utf-8")).hexdigest()[:24]
        self.directory = Path(directory)
        self.max_calls = max_calls
        self._now = now
        self.window = window_limiter(self.directory / f"telesto-rate-{key}.json", max_calls,
                                        RATE_WINDOW_S, clock=lambda: _epoch(self._now()))
        self.block = shared_json(self.directory, f"telesto-block-{key}")
        self.block_path = self.directory / f"telesto-block-{key}.json"  # the block's file without FLEET_SHARED_STATE

    def acquire(self, method: str = PRODUCTS) -> None:
        """Take one call from the budget, or raise ``TelestoRateLimited`` without waiting."""
        blocked = self.blocked_until()
        if blocked is not None:
            raise TelestoRateLimited(
                method,
                f"the server blocked this IP (429); next call allowed at {_clock_time(blocked)}",
                blocked,
            )
        wait_s = self.window.try_acquire()
        if wait_s > 0:
            retry_at = self._now() + timedelta(seconds=wait_s)
            raise TelestoRateLimited(
                method,
                f"hourly budget of {self.max_calls} calls used; next call allowed at "
                f"{_clock_time(retry_at)} (in {math.ceil(wait_s / 60)} min)",
                retry_at,
            )

    def remaining(self) -> int:
        """Calls still allowed now (0 during a server block)."""
        if self.blocked_until() is not None:
            return 0
        return max(self.window.remaining(), 0)

    def blocked_until(self) -> datetime | None:
        """End of a server block still running, else None."""
        try:
            until = float((self.block.read() or {})["until"])
        except KeyError:
            return None
        except (ValueError, TypeError):
            logger.warning("telesto block record %s is unreadable; ignoring it", self.block_path.name)
            return None
        return _from_epoch(until) if _epoch(self._now()) < until else None

    def record_block(self, until: datetime) -> None:
        """Remember a server block for every process sharing this budget (never shortening one).

        Read-compare-replace without a lock: two processes that race here both write "about
        now + 15 min", so the worst case is a block remembered a moment too short or too long.
        """
        current = self.blocked_until()
        if current is not None and current >= until:
            return
        self.block.write({"until": _epoch(until), "until_utc": until.isoformat()})


# ---------------------------------------------------------------------------------------------
# The client
# ---------------------------------------------------------------------------------------------


class TelestoClient(VendorClient):
    """Telesto inventory for one API key; ``base_url`` like ``https://telesto.app``.

    ``cache_dir`` holds the hourly-budget ledger shared by every client of this origin on the
    machine; ``hourly_budget`` (1-100) is how many of the vendor's 100 hourly calls this machine
    allows itself. ``now`` is the naive-UTC clock of that ledger; ``sleep`` waits between 5xx
    retries. A session passed in as ``http`` keeps its own retry policy and sleep, but must not
    retry 429. Usable as a context manager.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        cache_dir: Path,
        http: HttpSession | None = None,
        sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], datetime] = utcnow,
        hourly_budget: int = DEFAULT_HOURLY_BUDGET,
        retry: RetryPolicy | None = None,
        timeout_s: float | tuple[float, float] = (10.0, 60.0),
    ) -> None:
        if not api_key or not api_key.strip():
            raise ValueError("telesto client: an API key is required")
        if api_key.strip().lower().startswith("bearer "):
            raise ValueError("telesto client: give the bare API key; Telesto rejects "
                             "'Bearer <key>' in the Authorization header")
        if not 1 <= hourly_budget <= RATE_LIMIT_PER_HOUR:
            raise ValueError(f"telesto client: hourly_budget must be 1-{RATE_LIMIT_PER_HOUR} "
                             f"(the vendor blocks the IP beyond {RATE_LIMIT_PER_HOUR} an hour), "
                             f"not {hourly_budget}")
        if http is not None and 429 in http.retry.retry_statuses:
            raise ValueError("telesto client: the HttpSession must not retry 429 (a retry "
                             "during Telesto's 15-minute block is wasted)")
        self.base_url = base_url.rstrip("/")
        # Accept ".../v2" too: the doc gives the base URL as https://telesto.app/v2.
        if self.base_url.endswith("/v2"):
            self.base_url = self.base_url[: -len("/v2")]
        self._api_key = api_key.strip()
        self._now = now
        self.budget = HourlyBudget(Path(cache_dir), self.base_url, hourly_budget, now)
        self._owns_http = http is None
        policy = retry or RetryPolicy(max_attempts=4, backoff=Backoff(base_s=2.0, max_s=60.0))
        # Never retry a 429: a block is 15 minutes, and retrying inside it only wastes calls.
        policy = dataclasses.replace(policy, retry_statuses=policy.retry_statuses - {429})
        self.http = http or HttpSession(VENDOR, retry=policy, sleep=sleep, timeout_s=timeout_s)
        self.secrets: Secrets = self.http.secrets
        self.secrets.register(self._api_key)

    def budget_remaining(self) -> int:
        """Calls this machine may still make in the current hour (for metadata and tests)."""
        return self.budget.remaining()

    # -----------------------------------------------------------------------------------------

    def products(self) -> list[dict[str, Any]]:
        """``GET /v2/products``: every product, rows as sent (all values strings, nulls ``""``).

        One call (plus retries on 5xx), each attempt counted in the hourly budget. Raises
        ``TelestoRateLimited`` instead of sending when the budget is used or the IP is blocked.
        """
        return self.http.call(PRODUCTS, self.base_url + PRODUCTS_PATH, http_method="GET",
                              build=self._build, check=self._check)

    def _build(self) -> RequestParts:
        # Called before every attempt, so a retry is paid for like a first call.
        self.budget.acquire(PRODUCTS)
        return RequestParts(headers={"Authorization": self._api_key,
                                     "Accept": "application/json"})

    def _check(self, reply: Reply) -> list[dict[str, Any]]:
        payload = reply.payload
        if isinstance(payload, dict) and ("error" in payload or "statusCode" in payload):
            raise self._error(reply, payload)
        if reply.status >= 400:
            raise VendorHTTPError(VENDOR, reply.method,
                                  f"server answered {reply.status} without an error envelope",
                                  status=reply.status)
        if not isinstance(payload, list):
            raise VendorResponseError(VENDOR, reply.method,
                                      f"expected a JSON array of products, got "
                                      f"{type(payload).__name__}")
        for position, row in enumerate(payload):
            if not isinstance(row, dict) or not row.get("id"):
                raise VendorResponseError(VENDOR, reply.method,
                                          f"product #{position} is not an object with an id")
        return payload

    def _error(self, reply: Reply, payload: dict[str, Any]) -> VendorAPIError:
        error = payload.get("error") if isinstance(payload.get("error"), dict) else {}
        kind = str(error.get("type") or "")
        description = str(error.get("description") or "")
        try:
            status = int(payload.get("statusCode") or reply.status)
        except (TypeError, ValueError):
            status = reply.status
        said = f"{kind}: {description}" if description else kind or "no error type"
        method = reply.method
        if status == 429 or kind == "TOO_MANY_REQUESTS":
            retry_at = self._now() + timedelta(seconds=retry_after_s(reply.headers.get("Retry-After")) or BLOCK_S)
            self.budget.record_block(retry_at)
            return TelestoRateLimited(
                method, f"the server refused the call ({said}); this IP is blocked, "
                        f"next call allowed at {_clock_time(retry_at)}",
                retry_at, code=kind or None, status=status)
        if status == 401 or kind == "UNAUTHORIZED":
            return VendorAuthError(VENDOR, method, f"API key missing or rejected ({said})",
                                   kind or None, status=status)
        if status == 403 or kind == "FORBIDDEN":
            return SubscriptionRequired(VENDOR, method,
                                        f"the account has no Pro subscription ({said})",
                                        kind or None, status=status)
        if status >= 500 or kind == "SERVER_ERROR":
            return RetryableVendorError(VENDOR, method, f"server error ({said})",
                                        kind or None, status=status)
        if status == 404 or kind == "NOT_FOUND":
            return VendorAPIError(VENDOR, method,
                                  f"no such endpoint at {self.base_url} ({said})",
                                  kind or None, status=status)
        return VendorAPIError(VENDOR, method, f"unexpected error ({said})", kind or None,
                              status=status)
