"""Tracksolid's result codes mapped onto the pipeline's errors.

Code ``"0"`` is success; 1006 asks to slow down, 1100/-1 are a busy server, 1004/1005 an access
token to renew. Everything else is final and keeps the vendor's message (secrets redacted).
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
)

VENDOR = "tracksolid"

RETRYABLE_CODES = frozenset({"1100", "-1"})
THROTTLE_CODES = frozenset({"1006"})
TOKEN_REJECTED_CODES = frozenset({"1004", "1005"})


class TokenRejected(VendorAuthError):
    """1004/1005: the access token is invalid or expired; the caller renews and retries once."""


def check_reply(reply: Reply, secrets: Secrets, throttle_wait: Callable[[str, int], float]
                ) -> dict[str, Any]:
    """The payload of a successful answer, or the error its code stands for.

    ``throttle_wait(method, attempt)`` is how long to wait after 1006.
    """
    method = reply.method
    payload = reply.payload
    if not isinstance(payload, dict):
        raise VendorResponseError(
            VENDOR, method, f"expected a JSON object, got {type(payload).__name__}",
            status=reply.status,
        )
    code = _code(payload)
    message = secrets.redact(_message(payload)) or "no message"
    if code == "0":
        return payload
    if code is None:
        raise VendorResponseError(VENDOR, method, "answer has no result code", status=reply.status)
    if code in THROTTLE_CODES:
        raise RetryableVendorError(
            VENDOR, method, f"request frequency too high: {message}", code,
            wait_s=throttle_wait(method, reply.attempt), throttle=True,
        )
    if code in RETRYABLE_CODES:
        raise RetryableVendorError(VENDOR, method, f"server busy: {message}", code)
    if code in TOKEN_REJECTED_CODES:
        raise TokenRejected(VENDOR, method, f"access token rejected: {message}", code)
    raise VendorAPIError(VENDOR, method, message, code, status=reply.status)


def _code(payload: dict[str, Any]) -> str | None:
    code = payload.get("code")
    return None if code is None else str(code).strip()


def _message(payload: dict[str, Any]) -> str:
    text = payload.get("message")
    if text in (None, ""):
        text = payload.get("msg")
    return "" if text is None else str(text)
