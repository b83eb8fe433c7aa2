"""Faults the shared server injects in front of any vendor protocol: latency, 503 bursts, a random
5xx rate, malformed and truncated bodies. Vendor knobs subclass `FaultKnobs` with their own.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

from fleet_pipeline.sandbox.messages import Response


@dataclass
class FaultKnobs:
    """Faults injected by the server in front of any vendor protocol; safe to change at run time.

    Count knobs (`*_next`) apply to the next N requests and are consumed atomically, so a test
    knows exactly which calls fail. `error_rate_5xx` is a probability drawn from a seeded RNG for
    soak/benchmark runs where "about 5 % fail" is the point. Vendor knobs subclass this.
    """

    latency_s: float = 0.0          # added to every request before it is handled
    fail_next_5xx: int = 0          # next N requests answer 503 without reaching the vendor app
    error_rate_5xx: float = 0.0     # probability that a request answers 503
    malformed_json_next: int = 0    # next N responses carry a non-JSON body (HTTP 200)
    truncated_body_next: int = 0    # next N responses carry only the first half of their body
    # "short": Content-Length matches the cut body (a complete HTTP answer with broken JSON);
    # "drop": the full length is announced and the connection closes midway (IncompleteRead).
    truncate_mode: str = "short"
    fault_seed: int = 0             # seeds the RNG behind error_rate_5xx
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False,
                                  compare=False)
    _rng: random.Random = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.fault_seed)
        if self.truncate_mode not in ("short", "drop"):
            raise ValueError(f"truncate_mode must be 'short' or 'drop', not {self.truncate_mode!r}")

    def set(self, **values: Any) -> None:
        """Change several knobs atomically (unknown names raise, so typos do not pass silently)."""
        names = {f.name for f in fields(self) if not f.name.startswith("_")}
        unknown = set(values) - names
        if unknown:
            raise AttributeError(f"unknown knob(s): {', '.join(sorted(unknown))}")
        with self._lock:
            for name, value in values.items():
                setattr(self, name, value)
            if "fault_seed" in values:
                self._rng = random.Random(self.fault_seed)

    def consume(self, name: str) -> bool:
        """Take one unit from count knob `name`; True if a unit was there (the fault applies)."""
        with self._lock:
            remaining = getattr(self, name)
            if remaining > 0:
                setattr(self, name, remaining - 1)
                return True
            return False

    def roll_5xx(self) -> bool:
        """Decide whether this request fails with a 503 (count first, then the random rate)."""
        if self.consume("fail_next_5xx"):
            return True
        with self._lock:
            return self.error_rate_5xx > 0 and self._rng.random() < self.error_rate_5xx


KnobsT = TypeVar("KnobsT", bound=FaultKnobs)

FIVE_XX_PAGE = Response.html(503, "Service Unavailable",
                              "The server is temporarily unable to service your request.")

MALFORMED_BODY = (b"<html><head><title>502 Bad Gateway</title></head><body>"
                   b"<center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center>"
                   b"</body></html>")


def post_faults(knobs: FaultKnobs, response: Response,
                 fault: str | None) -> tuple[Response, str | None, bool]:
    """Corrupt a finished answer if a body knob says so; returns (response, fault, drop_midway).

    Only genuine vendor answers are corrupted, so a 503 or throttle answer never uses up a
    body-fault count that a test set for the request after it.
    """
    if fault is not None:
        return response, fault, False
    if knobs.consume("malformed_json_next"):
        return (Response(status=200, body=MALFORMED_BODY, content_type=response.content_type,
                         vendor_method=response.vendor_method), "malformed_json", False)
    if knobs.consume("truncated_body_next"):
        cut = response.body[: len(response.body) // 2]
        truncated = Response(status=response.status, body=cut, content_type=response.content_type,
                             headers=response.headers, vendor_method=response.vendor_method,
                             vendor_code=response.vendor_code)
        return truncated, "truncated", knobs.truncate_mode == "drop"
    return response, fault, False
