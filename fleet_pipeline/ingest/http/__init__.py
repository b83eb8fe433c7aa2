"""The one HTTP layer every vendor client goes through, one job per module:

* ``errors`` — what a failed vendor call raises, and whether a retry may help;
* ``limits`` — backoff, the retry policy, ``Retry-After`` and rate limiting (per process and across
  processes);
* ``session`` — ``HttpSession``: pooling, timeouts, retries, decoding, the vendor ``check`` callback;
* ``client`` — ``VendorClient``, the base of every vendor client;
* ``redaction`` — ``Secrets``, which scrubs every string that leaves the layer;
* ``stats`` — ``CallStats``, the counters that end up in Dagster metadata.

Vendor clients import what they need from this package; nothing here knows any vendor's protocol
and nothing here imports Dagster.
"""

from fleet_pipeline.ingest.http.client import VendorClient
from fleet_pipeline.ingest.http.errors import (
    RetryableVendorError,
    VendorAPIError,
    VendorAuthError,
    VendorHTTPError,
    VendorRateLimitError,
    VendorResponseError,
    VendorTransportError,
)
from fleet_pipeline.ingest.http.limits import (
    DEFAULT_RETRY_STATUSES,
    Backoff,
    FileWindowLimiter,
    RateLimiter,
    RetryPolicy,
    SlidingWindowLimiter,
    retry_after_s,
)
from fleet_pipeline.ingest.http.redaction import REDACTED, Secrets
from fleet_pipeline.ingest.http.session import HttpSession, Reply, RequestParts
from fleet_pipeline.ingest.http.stats import CallStats

__all__ = [
    "DEFAULT_RETRY_STATUSES", "REDACTED", "Backoff", "CallStats", "FileWindowLimiter", "HttpSession",
    "RateLimiter", "Reply", "RequestParts", "RetryPolicy", "RetryableVendorError", "Secrets",
    "SlidingWindowLimiter", "VendorAPIError", "VendorAuthError", "VendorClient", "VendorHTTPError",
    "VendorRateLimitError", "VendorResponseError", "VendorTransportError", "retry_after_s",
]
