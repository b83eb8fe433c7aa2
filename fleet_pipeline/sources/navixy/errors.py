"""Navixy's error envelope (``success: false`` + ``status.code``) mapped onto the pipeline's errors.

The codes that matter to the client get their own class, so callers can react to a blocked
tracker or a window the platform finds too long without parsing messages.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fleet_pipeline.ingest.http import (
    Reply,
    RetryableVendorError,
    Secrets,
    VendorAPIError,
    VendorAuthError,
    VendorResponseError,
    retry_after_s,
)
from fleet_pipeline.sources.navixy.endpoints import VENDOR

SESSION_REJECTED_CODES = frozenset({3, 4})
THROTTLE_CODES = frozenset({15})
# Database error, unexpected error, queue service, database unavailable: transient by nature.
RETRYABLE_CODES = frozenset({1, 6, 8, 14})


class SessionRejected(VendorAuthError):
    """Codes 3 (wrong hash) / 4 (session ended): the caller re-authenticates once and retries."""


class TrackerBlocked(VendorAPIError):
    """Code 208: the tracker exists but is blocked (tariff ended); no data may be read."""


class TrackerNotFound(VendorAPIError):
    """Code 201/204: no such tracker on this user (deleted, or never ours)."""


class NonexistentEntities(VendorAPIError):
    """Code 217: a list of trackers holds one that does not exist or is blocked."""


class TimeSpanTooBig(VendorAPIError):
    """Code 211: the window is longer than the platform's configuration allows."""


class UnpageableEvents(VendorAPIError):
    """``limit`` events of one tracker share one second: moving ``from`` cannot get past them."""


_ERROR_CLASSES: dict[int, type[VendorAPIError]] = {
    201: TrackerNotFound,
    204: TrackerNotFound,
    208: TrackerBlocked,
    211: TimeSpanTooBig,
    217: NonexistentEntities,
}


def check_reply(reply: Reply, secrets: Secrets, throttle_delay: Callable[[int], float]
                ) -> dict[str, Any]:
    """The payload of a successful answer, or the error its status code stands for.

    ``throttle_delay(attempt)`` is the wait after code 15 when the server sends no Retry-After.
    """
    method = reply.method
    payload = reply.payload
    if not isinstance(payload, dict):
        raise VendorResponseError(
            VENDOR, method, f"expected a JSON object, got {type(payload).__name__}",
            status=reply.status,
        )
    if payload.get("success") is True:
        return payload
    status = payload.get("status") if isinstance(payload.get("status"), dict) else {}
    code = _int_code(status.get("code"))
    description = secrets.redact(str(status.get("description") or "no description"))
    if code is None:
        raise VendorResponseError(
            VENDOR, method, "answer is neither success nor a status code", status=reply.status
        )
    if code in THROTTLE_CODES or reply.status == 429:
        wait = retry_after_s(reply.headers.get("Retry-After"))
        if wait is None:
            wait = throttle_delay(reply.attempt)
        raise RetryableVendorError(
            VENDOR, method, f"too many requests: {description}", code,
            status=reply.status, wait_s=wait, throttle=True,
        )
    if code in RETRYABLE_CODES:
        raise RetryableVendorError(VENDOR, method, description, code, status=reply.status)
    if code in SESSION_REJECTED_CODES:
        raise SessionRejected(VENDOR, method, description, code, status=reply.status)
    error_class = _ERROR_CLASSES.get(code, VendorAPIError)
    raise error_class(VENDOR, method, description, code, status=reply.status)


def _int_code(value: object) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None
