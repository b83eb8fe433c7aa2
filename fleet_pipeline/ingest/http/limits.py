"""Backoff, the retry policy, ``Retry-After`` and rate limiting (in-process and cross-process windows)."""

from __future__ import annotations

import email.utils
import fcntl
import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol

# Statuses that mean "the service is momentarily unable", never "your request is wrong".
DEFAULT_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})

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


class WindowLedger:
    """A limiter whose window lives in a store every process shares (a file here, Redis in
    ``ingest.shared_state``): subclasses say how to take a slot now (``_reserve``) and how to book the
    next free one (``_book``, for callers paced evenly)."""

    _sleep: Callable[[float], None]
    min_interval_s: float  # > 0: calls paced evenly, each booking a slot of its own

    def _reserve(self) -> float:
        """Take a slot and return 0, or return how long to wait before trying again."""
        raise NotImplementedError

    def try_acquire(self) -> float:
        """Take a slot and return 0.0, or take nothing and return the seconds until one frees.

        Never sleeps: for quotas whose window is too long to wait out inside a pipeline step
        (Telesto: 100 an hour, then a 15-minute block)."""
        return self._reserve()

    def _book(self) -> float:
        """Take the next free slot, now or later, and return the seconds until it comes."""
        raise NotImplementedError

    def acquire(self) -> float:
        if self.min_interval_s > 0:
            # Paced evenly, each caller books a slot of its own on the schedule and sleeps until
            # it. Retrying ``_reserve`` after sleeping lost the slot whenever a caller woke late
            # (a busy GIL, a loaded machine), and slots lost are never made up: 16 callers in a
            # process parsing answers reached 27 calls a second of a pace of 45.
            wait = self._book()
            if wait > 0:
                self._sleep(wait)
            return wait
        waited = 0.0
        while (wait := self._reserve()) > 0:
            self._sleep(wait)
            waited += wait
        return waited


def next_slot(stamps: list[float], now: float, max_calls: int, per_s: float, min_interval_s: float) -> float:
    """The earliest time at or after ``now`` that keeps ``min_interval_s`` after the last booked
    call (``stamps``: sorted, booked slots may lie ahead of ``now``) and ``max_calls`` in any
    ``per_s`` window."""
    slot = max(now, stamps[-1] + min_interval_s) if stamps else now
    if len(stamps) >= max_calls:
        slot = max(slot, stamps[-max_calls] + per_s)
    return slot


class FileWindowLimiter(WindowLedger):
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
        return self._update(booking=False)

    def _book(self) -> float:
        return self._update(booking=True)

    def _update(self, *, booking: bool) -> float:
        with open(self.path, "a+", encoding="utf-8") as ledger:
            fcntl.flock(ledger, fcntl.LOCK_EX)
            ledger.seek(0)
            try:
                stamps = [float(s) for s in json.loads(ledger.read() or "[]")]
            except (ValueError, TypeError):
                stamps = []  # a torn or foreign file: start a fresh window rather than fail
            now = self._clock()
            stamps = sorted(s for s in stamps if now - s < self.per_s)
            slot = next_slot(stamps, now, self.max_calls, self.per_s, self.min_interval_s)
            if slot > now and not booking:
                return max(slot - now, 0.001)
            stamps.append(slot)
            ledger.seek(0)
            ledger.truncate()
            ledger.write(json.dumps(stamps))
            return slot - now

    def remaining(self) -> int:
        """Calls still allowed in the current window (for metadata and tests)."""
        try:
            stamps = [float(s) for s in json.loads(self.path.read_text() or "[]")]
        except (OSError, ValueError, TypeError):
            return self.max_calls
        now = self._clock()
        return self.max_calls - sum(1 for s in stamps if now - s < self.per_s)


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
