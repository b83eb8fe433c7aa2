"""Navixy's documented limits and the batches and windows that keep every call inside them.

Sources: docs/vendor-apis/navixy-official/* and docs/vendor-apis/FIELD-NOTES.md. ``tracker/get_states`` takes at most 2000 trackers,
``tracker/stats/mileage/read`` 128 trackers and 31 days, ``history/tracker/list`` returns at
most 1000 rows and has no offset, ``track/read`` takes ``from`` as exclusive. A window the
platform still finds too long (code 211, the limit is "the API configuration") is halved rather
than failed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime, timedelta

from fleet_pipeline.sources.navixy.errors import TimeSpanTooBig
from fleet_pipeline.sources.navixy.rows import WindowRows

logger = logging.getLogger("fleet_pipeline.sources.navixy")

STATES_BATCH = 2000
MILEAGE_BATCH = 128
MILEAGE_MAX_SPAN = timedelta(days=31)
MILEAGE_MAX_DAYS = 31
HISTORY_LIMIT = 1000
# history/tracker/list has no documented tracker cap; bounded so one request stays small.
HISTORY_BATCH = 500
# track/read and track/list are capped by "the API configuration" (code 211); a week keeps one
# answer to a few thousand points. A window the platform still finds too long is halved.
TRACK_WINDOW = timedelta(days=7)
MIN_SPLIT_WINDOW = timedelta(hours=1)
# track/list: a trip that starts inside the window may end after it; asking a little further
# lets a server that lists only completed tracks return it. Trips are then kept by start time.
TRIP_OVERHANG = timedelta(hours=6)
# The platform's timestamps are whole seconds; "from" is exclusive, so one second earlier
# includes a point or an event stamped exactly at the window's start.
ONE_SECOND = timedelta(seconds=1)


def unique_ids(tracker_ids: Iterable[int | str]) -> list[int]:
    return list(dict.fromkeys(int(t) for t in tracker_ids))


def batches(ids: Sequence[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(ids), size):
        yield list(ids[start:start + size])


def halves(begin: datetime, end: datetime) -> tuple[tuple[datetime, datetime], ...]:
    middle = begin + timedelta(seconds=int((end - begin).total_seconds()) // 2)
    return (begin, middle), (middle, end)


def split_on_211(
    method: str,
    begin: datetime,
    end: datetime,
    fetch: Callable[[datetime, datetime], WindowRows],
) -> WindowRows:
    """``fetch(begin, end)``, halving the window while the platform answers 211."""
    try:
        return fetch(begin, end)
    except TimeSpanTooBig:
        if end - begin <= MIN_SPLIT_WINDOW:
            raise
    logger.info("navixy %s: window %s..%s too long (211); halving", method, begin, end)
    parts = [split_on_211(method, lo, hi, fetch) for lo, hi in halves(begin, end)]
    return WindowRows([r for p in parts for r in p.rows], any(p.limit_exceeded for p in parts))
