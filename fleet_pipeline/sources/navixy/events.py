"""Paging ``history/tracker/list``, a method with a row limit and no offset.

Pages are read by moving ``from`` to the last event's time and de-duplicating by event id:
events sharing that second are read again, never skipped. If a full page brings nothing new,
``limit`` events share one second: the tracker batch is split in two and each half paged on its
own; a single tracker with that many events in one second raises ``UnpageableEvents`` (rather
than loop or drop).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from fleet_pipeline.ingest.http import VendorResponseError
from fleet_pipeline.sources.navixy.endpoints import EVENT_TIME_FIELDS, HISTORY_LIST, VENDOR
from fleet_pipeline.sources.navixy.errors import UnpageableEvents
from fleet_pipeline.sources.navixy.limits import ONE_SECOND, split_on_211
from fleet_pipeline.sources.navixy.rows import WindowRows, by_time, list_of, require_rows, timed
from fleet_pipeline.sources.navixy.timezones import UserClock, convert_times

logger = logging.getLogger("fleet_pipeline.sources.navixy")

# Event id (or, for an event without one, its content) -> the event row.
Found = dict[Any, dict[str, Any]]


class EventPager:
    """Reads every event of a tracker batch in a window through ``call``, one page at a time."""

    def __init__(self, call: Callable[[str, dict[str, Any]], dict[str, Any]],
                 clock: Callable[[], UserClock], history_limit: int) -> None:
        self._call = call
        self._clock = clock
        self.history_limit = history_limit
        # "from": inclusive or exclusive is undocumented; learnt on the first page boundary
        # (see _page_from). None = not known yet.
        self.from_exclusive: bool | None = None

    def read(self, batch: list[int], begin: datetime, end: datetime, found: Found) -> None:
        """Every event of ``batch`` in ``[begin, end)`` into ``found``; windows halved on 211."""
        def fetch(lo: datetime, hi: datetime) -> WindowRows:
            self._pages(batch, lo, hi, found)
            return WindowRows([], False)

        split_on_211(HISTORY_LIST, begin, end, fetch)

    def _pages(self, batch: list[int], begin: datetime, end: datetime, found: Found) -> None:
        # The first page starts one second early: that includes events at ``begin`` whether
        # ``from`` is exclusive or inclusive (the extra second is dropped by the window filter).
        page = self._page(batch, begin - ONE_SECOND, end)
        while True:
            new = self._absorb(page, found)
            if not self._is_full(page):
                return
            if not timed(page.rows[-1], "time"):
                raise VendorResponseError(VENDOR, HISTORY_LIST, "a full page of events has no readable "
                                          "'time': the method cannot be paged past it")
            last = page.rows[-1]["time"]
            if new == 0:
                self._past_crowded_second(batch, last, end, found)
                return
            page = self._page_from(batch, last, end)

    def _page_from(self, batch: list[int], second: datetime, end: datetime) -> WindowRows:
        """The page of events at or after ``second`` (an event at ``second`` is known to exist).

        An inclusive ``from`` is sent ``second`` itself; an exclusive one, ``second`` minus one
        second. Which one the platform implements is learnt here once: asked from ``second``, an
        inclusive platform returns the known event at ``second``, an exclusive one starts later.
        """
        if self.from_exclusive:
            return self._page(batch, second - ONE_SECOND, end)
        page = self._page(batch, second, end)
        if self.from_exclusive is None:
            # No row at or before ``second`` (even an empty page) means the known event there
            # was excluded: the platform's ``from`` is exclusive.
            times = [row["time"] for row in page.rows if timed(row, "time")]
            self.from_exclusive = not (times and times[0] <= second)
            if self.from_exclusive:
                logger.info("navixy %s: 'from' is exclusive on this platform", HISTORY_LIST)
                return self._page(batch, second - ONE_SECOND, end)
        return page

    def _past_crowded_second(self, batch: list[int], second: datetime, end: datetime,
                             found: Found) -> None:
        """A full page of already-seen events: ``limit`` of them share ``second``."""
        if len(batch) == 1:
            raise UnpageableEvents(
                VENDOR, HISTORY_LIST,
                f"{self.history_limit} or more events of tracker {batch[0]} share the second "
                f"{second.isoformat()} UTC; the method cannot page past them (no offset), so the "
                "window cannot be read completely",
            )
        logger.info(
            "navixy %s: %s events share %s UTC across %s trackers; splitting the batch",
            HISTORY_LIST, self.history_limit, second.isoformat(), len(batch),
        )
        middle = len(batch) // 2
        for half in (batch[:middle], batch[middle:]):
            # Each half starts at the crowded second itself (the first page is one second early).
            self._pages(half, second, end, found)

    def _page(self, batch: list[int], from_utc: datetime, end: datetime) -> WindowRows:
        clock = self._clock()
        payload = self._call(HISTORY_LIST, {
            "trackers": batch,
            "from": clock.to_param(from_utc),
            "to": clock.to_param(end),
            "limit": self.history_limit,
            "ascending": True,
        })
        events = list_of(payload, "list", HISTORY_LIST)
        require_rows(events, HISTORY_LIST)
        for event in events:
            convert_times(event, EVENT_TIME_FIELDS, clock, HISTORY_LIST)
        # Ascending is asked for; sorting again makes the paging cursor independent of it (rows
        # without a readable time come first: the cursor is the last readable one).
        events.sort(key=by_time("time"))
        return WindowRows(events, bool(payload.get("limit_exceeded")))

    def _is_full(self, page: WindowRows) -> bool:
        return len(page.rows) >= self.history_limit or (page.limit_exceeded and bool(page.rows))

    @staticmethod
    def _absorb(page: WindowRows, found: Found) -> int:
        new = 0
        for event in page.rows:
            # An event without an id is kept (validation rejects it), once per distinct content.
            key = event.get("id")
            key = key if key is not None else ("no id", json.dumps(event, sort_keys=True, default=str))
            if key not in found:
                found[key] = event
                new += 1
        return new
