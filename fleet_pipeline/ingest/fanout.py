"""Per-device API calls made several at a time, in input order, with bounded memory.

Endpoints such as Tracksolid ``track.list`` or Navixy ``track/read`` take one device a call, so a
day of 10,000 devices is 10,000 calls. One at a time, wall time is calls x latency; a vendor
200 ms away would then allow 5 calls a second where its quota allows 25 or 50. Running up to
``workers`` calls at once lets the client's rate limiter (not the round trip) set the pace.

Results come back in the order of the inputs, whatever order the calls finish in, so a run is
as deterministic as a sequential one (``unique(keep="last")`` keeps the same row). At most
``2 * workers`` results are held at a time, which bounds memory however long the input is; the
caller turns each chunk into a typed frame and lets the raw rows go.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def fetch_each(items: Iterable[T], fetch: Callable[[T], R], workers: int) -> Iterator[tuple[T, R]]:
    """``(item, fetch(item))`` for every item, in input order, up to ``workers`` calls at once.

    The first call that raises stops the fan-out: calls not yet started are cancelled, calls in
    flight are waited for (threads cannot be killed), and the error is raised to the caller.
    """
    if workers < 1:
        raise ValueError(f"fetch_each needs at least one worker, got {workers}")
    if workers == 1:
        for item in items:
            yield item, fetch(item)
        return
    pending: deque[tuple[T, Future[R]]] = deque()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vendor-call") as pool:
        try:
            for item in items:
                pending.append((item, pool.submit(fetch, item)))
                # Keep every worker busy while the oldest call is awaited, and no more: results
                # held here are raw JSON rows, the largest objects of a run.
                while len(pending) >= 2 * workers:
                    done_item, future = pending.popleft()
                    yield done_item, future.result()
            while pending:
                done_item, future = pending.popleft()
                yield done_item, future.result()
        finally:
            for _, future in pending:
                future.cancel()


def chunked(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """Consecutive slices of at most ``size`` items."""
    if size < 1:
        raise ValueError(f"chunk size must be at least 1, got {size}")
    for start in range(0, len(items), size):
        yield items[start:start + size]
