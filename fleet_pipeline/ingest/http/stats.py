"""Call statistics of one client (or one asset run): what ends up in Dagster metadata."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any


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
