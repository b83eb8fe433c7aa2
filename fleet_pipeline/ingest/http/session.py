"""The one HTTP layer every vendor client goes through.

Why a shared layer: five vendors fail in the same few ways (5xx bursts, timeouts, dropped
connections, truncated or non-JSON bodies, throttling) but declare their own errors in their own
envelopes. This module owns the generic part - connection pooling, timeouts, retries with
exponential backoff and jitter, ``Retry-After``, call statistics and secret redaction - and lets
each vendor client say what its envelope means through a ``check`` callback that may raise
``RetryableVendorError`` (try again, optionally after a vendor-chosen wait) or ``VendorAPIError``
(give up). Nothing in here knows any vendor's protocol.

Archive: every answer ``check`` accepted is handed to ``recorder`` when one is attached, and with a
``replay`` attached the answers come from it instead of the network (``recording``): the raw
archive and ``fleet-pipeline replay`` hook in here, the one place every vendor answer passes.

Secrets: every string that can leave this module (exception text, log lines) goes through
``Secrets.redact`` first, and exceptions are raised ``from None`` so that a chained ``requests``
exception (whose text may contain a URL with credentials) never reaches a traceback.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from fleet_pipeline.ingest.http.errors import (
    RetryableVendorError,
    VendorAPIError,
    VendorHTTPError,
    VendorRateLimitError,
    VendorResponseError,
    VendorTransportError,
)
from fleet_pipeline.ingest.http.limits import RateLimiter, RetryPolicy, retry_after_s
from fleet_pipeline.ingest.http.recording import MissingAnswer, Recorder, Replay, answer_key, path_of, request_record
from fleet_pipeline.ingest.http.redaction import Secrets
from fleet_pipeline.ingest.http.stats import CallStats

logger = logging.getLogger("fleet_pipeline.ingest.http")

# How much of a bad body goes into an error message: enough to recognise an HTML error page.
BODY_SNIPPET_CHARS = 200


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
        volatile_fields: tuple[str, ...] = (),
    ) -> None:
        self.vendor = vendor
        self.timeout_s = timeout_s
        self.retry = retry or RetryPolicy()
        self.secrets = secrets or Secrets()
        self.stats = stats or CallStats()
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.limiter = limiter
        # Request fields new on every attempt (a timestamp, a signature): not archived, and not part
        # of what identifies a call to the archive.
        self.volatile_fields = frozenset(volatile_fields)
        # Set for one step by the source layer: where accepted answers go, and where they come from.
        self.recorder: Recorder | None = None
        self.replay: Replay | None = None
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
        if self.recorder is not None:
            self.recorder.record(method, http_method, url, parts.data, parts.json, parts.params, status, body)
        return value

    def _send(
        self,
        method: str,
        url: str,
        parts: RequestParts,
        http_method: str,
        timeout_s: float | tuple[float, float] | None,
    ) -> requests.Response:
        if self.replay is not None:
            return self._replayed(method, url, parts, http_method)
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

    def _replayed(self, method: str, url: str, parts: RequestParts, http_method: str) -> requests.Response:
        """The archived answer to this call, as the response the network would have given."""
        assert self.replay is not None
        # Not counted as a request: the stats say what the vendor was asked, and it was not.
        request = request_record(parts.data, parts.json, parts.params, self.volatile_fields, self.secrets)
        try:
            status, body = self.replay.answer(answer_key(method, http_method, path_of(url, self.secrets), request))
        except MissingAnswer as missing:
            raise VendorAPIError(self.vendor, method, f"replay: {missing}") from None
        response = requests.Response()
        response.status_code = status
        response._content = body
        response.encoding = "utf-8"
        response.url = url
        return response

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
