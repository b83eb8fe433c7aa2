"""The one HTTP layer every vendor client goes through.

Why a shared layer: five vendors fail in the same few ways (5xx bursts, timeouts, dropped
connections, truncated or non-JSON bodies, throttling) but declare their own errors in their own
envelopes. This module owns the generic part - connection pooling, timeouts, retries with
exponential backoff and jitter, ``Retry-After``, call statistics and secret redaction - and lets
each vendor client say what its envelope means through a ``check`` callback that may raise
``RetryableVendorError`` (try again, optionally after a vendor-chosen wait) or ``VendorAPIError``
(give up). Nothing in here knows any vendor's protocol.

Secrets: every string that can leave this module (exception text, log lines) goes through
``Secrets.redact`` first, and exceptions are raised ``from None`` so that a chained ``requests``
exception (whose text may contain a URL with credentials) never reaches a traceback.
"""

from __future__ import annotations

import email.utils
import fcntl
import hashlib
import json
import logging
import random
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol, TypeVar

import requests
from requests.adapters import HTTPAdapter

from fleet_pipeline.fanout import fetch_each

T = TypeVar("T")
R = TypeVar("R")

logger = logging.getLogger("fleet_pipeline.http")

REDACTED = "***"

# Statuses that mean "the service is momentarily unable", never "your request is wrong".
DEFAULT_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# How much of a bad body goes into an error message: enough to recognise an HTML error page.
BODY_SNIPPET_CHARS = 200


# --------------------------------------------------------------------------------------------
# Secret redaction
# --------------------------------------------------------------------------------------------


class Secrets:
    """Registry of secret values and the forms they travel in, and the scrubber for any text.

    A password leaves the process as itself, as its MD5 (Tracksolid sends ``md5(password)``) and
    URL-encoded inside form bodies or query strings; all of those forms are redacted. Tokens are
    registered the moment a client receives them, so the registry grows during a run.
    """

    def __init__(self, values: Iterable[str | None] = ()) -> None:
        self._lock = threading.Lock()
        self._forms: set[str] = set()
        # Longest first, so that a secret containing another secret is replaced whole.
        self._ordered: tuple[str, ...] = ()
        for value in values:
            self.register(value)

    def register(self, value: str | None) -> None:
        """Remember ``value`` (and its md5 / URL-encoded forms) as something never to print."""
        if value is None:
            return
        value = str(value)
        if not value:
            return
        forms = {value}
        md5 = hashlib.md5(value.encode("utf-8")).hexdigest()
        forms.update({md5, md5.upper()})
        for form in list(forms):
            forms.add(urllib.parse.quote(form, safe=""))
            forms.add(urllib.parse.quote_plus(form, safe=""))
            forms.add(urllib.parse.quote(form))
        with self._lock:
            self._forms.update(f for f in forms if f)
            self._ordered = tuple(sorted(self._forms, key=len, reverse=True))

    def __contains__(self, value: object) -> bool:
        with self._lock:
            return value in self._forms

    def redact(self, text: object) -> str:
        """Return ``text`` as a string with every registered form replaced by ``***``."""
        out = text if isinstance(text, str) else str(text)
        for form in self._ordered:
            if form in out:
                out = out.replace(form, REDACTED)
        return out


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class VendorAPIError(Exception):
    """A vendor call that did not give a usable answer.

    ``str()`` always names the vendor and the API method, so an asset failure in the Dagster UI
    says where to look without a traceback; the message must already be redacted (``HttpSession``
    re-redacts every error that passes through it).
    """

    def __init__(
        self,
        vendor: str,
        method: str,
        message: str,
        code: str | int | None = None,
        *,
        status: int | None = None,
    ) -> None:
        self.vendor = vendor
        self.method = method
        self.message = message
        self.code = None if code is None else str(code)
        self.status = status
        super().__init__(self._render())

    def _render(self) -> str:
        details = []
        if self.code is not None:
            details.append(f"code {self.code}")
        if self.status is not None:
            details.append(f"HTTP {self.status}")
        suffix = f" ({', '.join(details)})" if details else ""
        return f"{self.vendor} {self.method}: {self.message}{suffix}"

    def redact_with(self, secrets: Secrets) -> None:
        """Scrub the message in place (used on errors raised by vendor ``check`` callbacks)."""
        self.message = secrets.redact(self.message)
        self.args = (self._render(),)

    def __str__(self) -> str:
        return self._render()


class VendorTransportError(VendorAPIError):
    """Connection refused/reset, timeout or truncated transfer, still failing after retries."""


class VendorHTTPError(VendorAPIError):
    """An HTTP status the vendor protocol does not explain (after retries for 5xx / 429)."""


class VendorResponseError(VendorAPIError):
    """A body that is not the JSON the vendor promised (HTML error page, truncated JSON...)."""


class VendorAuthError(VendorAPIError):
    """Credentials or token rejected; the vendor client decides whether to renew and retry."""


class VendorRateLimitError(VendorAPIError):
    """Still throttled after every allowed retry, or told to wait longer than we are willing."""


class RetryableVendorError(VendorAPIError):
    """Raised by a vendor ``check`` callback: the answer is a transient vendor-declared error.

    ``wait_s`` is the vendor's own wait (e.g. a throttling backoff schedule); ``None`` means use
    the session's backoff. ``throttle`` marks waits imposed by rate limiting, which are counted
    separately in ``CallStats.throttle_wait_s`` because they measure quota pressure, not faults.
    """

    def __init__(
        self,
        vendor: str,
        method: str,
        message: str,
        code: str | int | None = None,
        *,
        status: int | None = None,
        wait_s: float | None = None,
        throttle: bool = False,
    ) -> None:
        self.wait_s = wait_s
        self.throttle = throttle
        super().__init__(vendor, method, message, code, status=status)


# --------------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------------


@dataclass
class CallStats:
    """Counters for one client (or one asset run) that end up in Dagster metadata.

    ``calls`` counts HTTP requests actually sent (retries included) so it can be compared with a
    server's request log; ``per_method`` splits that by API method. ``failures`` counts logical
    calls that ended in an error handed back to the vendor client, including errors the client
    then recovers from (an expired token that it renews).

    The waits are sums over calls; calls made side by side wait at the same time, so a wait can
    exceed the wall time of the step that made them.
    """

    calls: int = 0
    retries: int = 0
    failures: int = 0
    throttle_wait_s: float = 0.0
    backoff_wait_s: float = 0.0
    bytes_sent: int = 0
    bytes_received: int = 0
    per_method: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def record_request(self, method: str, bytes_sent: int) -> None:
        with self._lock:
            self.calls += 1
            self.bytes_sent += bytes_sent
            self.per_method[method] = self.per_method.get(method, 0) + 1

    def record_response(self, bytes_received: int) -> None:
        with self._lock:
            self.bytes_received += bytes_received

    def record_wait(self, seconds: float, *, throttle: bool) -> None:
        with self._lock:
            self.retries += 1
            if throttle:
                self.throttle_wait_s += seconds
            else:
                self.backoff_wait_s += seconds

    def record_throttle_wait(self, seconds: float) -> None:
        """A wait imposed by a quota outside any retry (e.g. a client-side rate limiter)."""
        with self._lock:
            self.throttle_wait_s += seconds

    def record_failure(self) -> None:
        with self._lock:
            self.failures += 1

    def as_metadata(self) -> dict[str, Any]:
        """Plain JSON-able values, ready for ``MaterializeResult(metadata=...)``."""
        with self._lock:
            return {
                "api_calls": self.calls,
                "api_retries": self.retries,
                "api_failures": self.failures,
                # Summed over calls, which run side by side: the sum can exceed the step's duration.
                "throttle_wait_s_summed_over_calls": round(self.throttle_wait_s, 3),
                "backoff_wait_s_summed_over_calls": round(self.backoff_wait_s, 3),
                "bytes_sent": self.bytes_sent,
                "bytes_received": self.bytes_received,
                "calls_per_method": dict(sorted(self.per_method.items())),
            }


# --------------------------------------------------------------------------------------------
# Backoff, retry policy, rate limiting
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with proportional jitter: ``base * multiplier**(n-1)`` capped, +-jitter.

    Jitter spreads the retries of several workers hit by the same outage so they do not return
    in lockstep and re-trigger it.
    """

    base_s: float = 0.5
    multiplier: float = 2.0
    max_s: float = 30.0
    jitter: float = 0.25

    def delay(self, retry_number: int, rng: random.Random) -> float:
        """Wait before retry ``retry_number`` (1 = first retry)."""
        raw = self.base_s * self.multiplier ** max(retry_number - 1, 0)
        capped = min(raw, self.max_s)
        spread = 1.0 + self.jitter * (2.0 * rng.random() - 1.0)
        return max(0.0, min(capped * spread, self.max_s))


@dataclass(frozen=True)
class RetryPolicy:
    """How hard one logical call tries. ``max_attempts`` counts the first attempt too."""

    max_attempts: int = 5
    backoff: Backoff = Backoff()
    retry_statuses: frozenset[int] = DEFAULT_RETRY_STATUSES
    # A Retry-After longer than this is not waited out inside a pipeline step: we fail with
    # VendorRateLimitError and let the schedule come back (e.g. Telesto's 15-minute IP block).
    max_retry_after_s: float = 600.0


class RateLimiter(Protocol):
    """Something that makes the caller wait before a request; returns the seconds waited."""

    def acquire(self) -> float: ...


class SlidingWindowLimiter:
    """In-process limiter: at most ``max_calls`` requests in any ``per_s``-second window.

    Used to stay under a documented quota instead of learning it from the vendor's throttle
    error. It is per process; quotas that must hold across processes need a shared store.
    """

    def __init__(
        self,
        max_calls: int,
        per_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if max_calls < 1 or per_s <= 0:
            raise ValueError("SlidingWindowLimiter needs max_calls >= 1 and per_s > 0")
        self.max_calls = max_calls
        self.per_s = per_s
        self._clock = clock
        self._sleep = sleep
        self._stamps: list[float] = []
        self._lock = threading.Lock()

    def acquire(self) -> float:
        waited = 0.0
        with self._lock:
            while True:
                now = self._clock()
                self._stamps = [s for s in self._stamps if now - s < self.per_s]
                if len(self._stamps) < self.max_calls:
                    self._stamps.append(now)
                    return waited
                wait = self.per_s - (now - self._stamps[0])
                # A fake clock that does not advance must not spin forever: after sleeping
                # the computed wait, the oldest stamp is treated as expired.
                self._sleep(wait)
                waited += wait
                self._stamps.pop(0)


class FileWindowLimiter:
    """At most ``max_calls`` requests in any ``per_s``-second window, across processes and runs.

    Vendor quotas belong to the account or the client address, not to a Python object: the steps
    of a multiprocess run, a backfill and a manual run all draw from the same budget. The window's
    timestamps live in a small JSON ledger guarded by an exclusive ``fcntl`` lock, so every process
    on the machine sees the same budget; wall-clock time so the ledger survives restarts (an hourly
    quota must still hold after a crash).
    """

    def __init__(
        self,
        path: Path,
        max_calls: int,
        per_s: float,
        *,
        evenly: bool = False,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if max_calls < 1 or per_s <= 0:
            raise ValueError("FileWindowLimiter needs max_calls >= 1 and per_s > 0")
        self.path = Path(path)
        self.max_calls = max_calls
        self.per_s = per_s
        # ``evenly``: also keep ``per_s / max_calls`` between two calls. Concurrent callers would
        # otherwise spend a window's budget in one burst at its start; arriving evenly spaced,
        # a few calls delayed on the way cannot pile up into more than the vendor's limit in
        # the vendor's own (sliding) window, so pacing can run close to that limit.
        self.min_interval_s = per_s / max_calls if evenly else 0.0
        self._clock = clock
        self._sleep = sleep
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def _reserve(self) -> float:
        """Take a slot and return 0, or return how long to wait before trying again."""
        with open(self.path, "a+", encoding="utf-8") as ledger:
            fcntl.flock(ledger, fcntl.LOCK_EX)
            ledger.seek(0)
            try:
                stamps = [float(s) for s in json.loads(ledger.read() or "[]")]
            except (ValueError, TypeError):
                stamps = []  # a torn or foreign file: start a fresh window rather than fail
            now = self._clock()
            stamps = sorted(s for s in stamps if now - s < self.per_s)
            if len(stamps) >= self.max_calls:
                return max(self.per_s - (now - stamps[-self.max_calls]), 0.001)
            if stamps and now - stamps[-1] < self.min_interval_s:
                return max(self.min_interval_s - (now - stamps[-1]), 0.001)
            stamps.append(now)
            ledger.seek(0)
            ledger.truncate()
            ledger.write(json.dumps(stamps))
            return 0.0

    def try_acquire(self) -> float:
        """Take a slot and return 0.0, or take nothing and return the seconds until one frees.

        Never sleeps: for quotas whose window is too long to wait out inside a pipeline step
        (Telesto: 100 an hour, then a 15-minute block)."""
        return self._reserve()

    def acquire(self) -> float:
        waited = 0.0
        while (wait := self._reserve()) > 0:
            self._sleep(wait)
            waited += wait
        return waited

    def remaining(self) -> int:
        """Calls still allowed in the current window (for metadata and tests)."""
        try:
            stamps = [float(s) for s in json.loads(self.path.read_text() or "[]")]
        except (OSError, ValueError, TypeError):
            return self.max_calls
        now = self._clock()
        return self.max_calls - sum(1 for s in stamps if now - s < self.per_s)


# --------------------------------------------------------------------------------------------
# The session
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """What a vendor ``check`` callback sees: the decoded body plus enough HTTP context."""

    method: str
    status: int
    headers: Mapping[str, str]
    payload: Any
    attempt: int


@dataclass(frozen=True)
class RequestParts:
    """One attempt's request. Built afresh per attempt so signatures and timestamps are new."""

    data: Mapping[str, str] | bytes | None = None
    json: Any = None
    params: Mapping[str, str] | None = None
    headers: Mapping[str, str] | None = None


class _RetryAfter(Exception):
    """Internal: an attempt failed in a way worth retrying, with an explanation and a wait."""

    def __init__(
        self,
        final: VendorAPIError,
        wait_s: float | None,
        throttle: bool,
    ) -> None:
        super().__init__(str(final))
        self.final = final
        self.wait_s = wait_s
        self.throttle = throttle


class HttpSession:
    """A pooled ``requests.Session`` with retries, backoff, stats and redaction for one vendor.

    ``call`` performs one logical API call: it builds the request (``build`` is invoked on every
    attempt), sends it, retries transport failures, retryable statuses and undecodable bodies,
    then hands the decoded JSON to ``check``; ``check`` returns the value or raises. Any error
    that leaves ``call`` is a redacted ``VendorAPIError``.
    """

    def __init__(
        self,
        vendor: str,
        *,
        timeout_s: float | tuple[float, float] = (10.0, 60.0),
        retry: RetryPolicy | None = None,
        secrets: Secrets | None = None,
        stats: CallStats | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        limiter: RateLimiter | None = None,
        headers: Mapping[str, str] | None = None,
        pool_maxsize: int = 8,
    ) -> None:
        self.vendor = vendor
        self.timeout_s = timeout_s
        self.retry = retry or RetryPolicy()
        self.secrets = secrets or Secrets()
        self.stats = stats or CallStats()
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.limiter = limiter
        self._session = requests.Session()
        # Our own retry loop decides; urllib3's hidden retries would double-send and skew stats.
        adapter = HTTPAdapter(pool_connections=2, pool_maxsize=pool_maxsize, max_retries=0)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        if headers:
            self._session.headers.update(headers)

    # -- public -------------------------------------------------------------------------------

    def call(
        self,
        method: str,
        url: str,
        *,
        build: Callable[[], RequestParts] | RequestParts,
        check: Callable[[Reply], Any] | None = None,
        http_method: str = "POST",
        timeout_s: float | tuple[float, float] | None = None,
        max_attempts: int | None = None,
    ) -> Any:
        """Perform API ``method`` and return ``check(reply)`` (or the decoded JSON without check)."""
        attempts = max_attempts or self.retry.max_attempts
        for attempt in range(1, attempts + 1):
            try:
                return self._attempt(method, url, build, check, http_method, timeout_s, attempt)
            except _RetryAfter as retry:
                error = retry.final
                error.redact_with(self.secrets)
                if attempt >= attempts:
                    self.stats.record_failure()
                    if retry.throttle:
                        raise VendorRateLimitError(
                            self.vendor, method,
                            f"still throttled after {attempts} attempts: {error.message}",
                            error.code, status=error.status,
                        ) from None
                    error.message = f"{error.message} (gave up after {attempts} attempts)"
                    error.redact_with(self.secrets)
                    raise error from None
                wait = self._wait_for(retry, attempt)
                if wait is None:
                    self.stats.record_failure()
                    raise VendorRateLimitError(
                        self.vendor, method,
                        f"asked to wait {retry.wait_s:.0f} s, more than the "
                        f"{self.retry.max_retry_after_s:.0f} s allowed: {error.message}",
                        error.code, status=error.status,
                    ) from None
                logger.warning(
                    "%s",
                    self.secrets.redact(
                        f"{self.vendor} {method}: attempt {attempt}/{attempts} failed "
                        f"({error.message}); retrying in {wait:.2f} s"
                    ),
                )
                self.stats.record_wait(wait, throttle=retry.throttle)
                self.sleep(wait)
            except VendorAPIError as error:
                self.stats.record_failure()
                error.redact_with(self.secrets)
                raise error from None
        raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> HttpSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ----------------------------------------------------------------------------

    def _wait_for(self, retry: _RetryAfter, attempt: int) -> float | None:
        if retry.wait_s is None:
            return self.retry.backoff.delay(attempt, self.rng)
        if retry.wait_s > self.retry.max_retry_after_s:
            return None
        return max(0.0, retry.wait_s)

    def _attempt(
        self,
        method: str,
        url: str,
        build: Callable[[], RequestParts] | RequestParts,
        check: Callable[[Reply], Any] | None,
        http_method: str,
        timeout_s: float | tuple[float, float] | None,
        attempt: int,
    ) -> Any:
        if self.limiter is not None:
            waited = self.limiter.acquire()
            if waited:
                self.stats.record_throttle_wait(waited)
        parts = build() if callable(build) else build
        response = self._send(method, url, parts, http_method, timeout_s)
        status = response.status_code
        body = response.content
        self.stats.record_response(len(body))

        if status in self.retry.retry_statuses:
            raise _RetryAfter(
                VendorHTTPError(
                    self.vendor, method,
                    f"server answered {status}: {self._snippet(body)}", status=status,
                ),
                wait_s=retry_after_s(response.headers.get("Retry-After")),
                throttle=status == 429,
            )

        try:
            payload = json.loads(body.decode(response.encoding or "utf-8", errors="replace"))
        except ValueError:
            error_cls = VendorResponseError if status < 400 else VendorHTTPError
            error = error_cls(
                self.vendor, method,
                f"body is not valid JSON (HTTP {status}, {len(body)} bytes): {self._undecodable(body)}",
                status=status,
            )
            if status < 400:
                # A 2xx with a broken body is almost always a truncated transfer or a proxy
                # page in front of the vendor: worth another try.
                raise _RetryAfter(error, wait_s=None, throttle=False) from None
            raise error from None

        reply = Reply(method, status, response.headers, payload, attempt)
        try:
            value = check(reply) if check is not None else payload
        except RetryableVendorError as declared:
            raise _RetryAfter(declared, declared.wait_s, declared.throttle) from None
        if status >= 400:
            raise VendorHTTPError(
                self.vendor, method,
                f"server answered {status}: {self._snippet(body)}", status=status,
            )
        return value

    def _send(
        self,
        method: str,
        url: str,
        parts: RequestParts,
        http_method: str,
        timeout_s: float | tuple[float, float] | None,
    ) -> requests.Response:
        request = requests.Request(
            http_method, url,
            data=parts.data, json=parts.json, params=parts.params, headers=parts.headers,
        )
        prepared = self._session.prepare_request(request)
        body = prepared.body
        sent = len(body) if isinstance(body, (bytes, str)) else 0
        self.stats.record_request(method, sent)
        settings = self._session.merge_environment_settings(prepared.url, {}, None, None, None)
        try:
            response = self._session.send(
                prepared, timeout=timeout_s or self.timeout_s, allow_redirects=True, **settings
            )
            # Read the body here, inside the try: a connection dropped mid-body must be retried
            # like any other transport failure.
            _ = response.content
            return response
        except requests.Timeout as exc:
            raise _RetryAfter(
                VendorTransportError(
                    self.vendor, method, f"timed out ({type(exc).__name__}): {exc}"
                ),
                wait_s=None, throttle=False,
            ) from None
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError,
                requests.exceptions.ContentDecodingError) as exc:
            raise _RetryAfter(
                VendorTransportError(
                    self.vendor, method, f"connection failed ({type(exc).__name__}): {exc}"
                ),
                wait_s=None, throttle=False,
            ) from None
        except requests.RequestException as exc:
            raise VendorTransportError(
                self.vendor, method, f"request could not be sent ({type(exc).__name__}): {exc}"
            ) from None

    def _undecodable(self, body: bytes) -> str:
        """What a body that does not decode looks like, without risking a secret.

        A page (a gateway's HTML error page) is quoted: it tells the reader who answered. Broken
        JSON is not: it is the vendor's own answer cut short, and the part that arrived may hold a
        credential the client has not read yet (a token endpoint's answer), so cannot redact.
        """
        if body.lstrip()[:1] in (b"{", b"["):
            return "JSON cut short or malformed (not shown: it may hold credentials)"
        return self._snippet(body)

    def _snippet(self, body: bytes) -> str:
        text = body[:BODY_SNIPPET_CHARS * 4].decode("utf-8", errors="replace")
        text = self.secrets.redact(text)[:BODY_SNIPPET_CHARS]
        return repr(text)


def retry_after_s(header: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date), else None."""
    if not header:
        return None
    header = header.strip()
    try:
        return max(0.0, float(header))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


class VendorClient:
    """Base of every vendor client: it owns (or borrows) an ``HttpSession`` in ``self.http``.

    Gives each client the same call statistics, ``close()`` and context-manager behaviour; a
    session passed in by the caller is left open for the caller to close.
    """

    http: HttpSession
    _owns_http: bool = True
    # How many calls may be in flight at once (``fleet_pipeline.fanout``): enough to reach the
    # vendor's rate limit at a few hundred ms of latency; the rate limiter does the pacing.
    concurrency: int = 1

    @property
    def stats(self) -> CallStats:
        return self.http.stats

    def fan_out(self, items: Iterable[T], fetch: Callable[[T], R]) -> Iterator[tuple[T, R]]:
        """``(item, fetch(item))`` for every item, ``concurrency`` calls at a time, in input order."""
        return fetch_each(items, fetch, self.concurrency)

    def close(self) -> None:
        if self._owns_http:
            self.http.close()

    def __enter__(self) -> VendorClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
