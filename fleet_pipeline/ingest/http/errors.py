"""The errors of a vendor call: each names the vendor and the API method, and says whether a
retry may help (``RetryableVendorError``) or not (``VendorAPIError`` and its kinds)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only for an annotation: errors stay importable without the redaction module
    from fleet_pipeline.ingest.http.redaction import Secrets

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
