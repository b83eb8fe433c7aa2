"""``VendorClient``, the base of every vendor client: its ``HttpSession``, call statistics, fan-out
and closing."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from fleet_pipeline.ingest.fanout import fetch_each
from fleet_pipeline.ingest.http.session import HttpSession
from fleet_pipeline.ingest.http.stats import CallStats

T = TypeVar("T")
R = TypeVar("R")


class VendorClient:
    """Base of every vendor client: it owns (or borrows) an ``HttpSession`` in ``self.http``.

    Gives each client the same call statistics, ``close()`` and context-manager behaviour; a
    session passed in by the caller is left open for the caller to close.
    """

    http: HttpSession
    _owns_http: bool = True
    # How many calls may be in flight at once (``fleet_pipeline.ingest.fanout``): enough to reach the
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
