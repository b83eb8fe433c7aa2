"""Reading ``track/read`` (points) and ``track/list`` (trips) over a window of any length.

Both methods cap the window by "the API configuration" (code 211) and take ``from`` as
exclusive, so a window is cut into ``track_window`` pieces, each asked from one second before
its start, halved on 211, and its rows kept by the half-open window on the client.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from fleet_pipeline.sources.navixy.endpoints import (
    POINT_TIME_FIELDS,
    TRACK_LIST,
    TRACK_READ,
    TRIP_TIME_FIELDS,
)
from fleet_pipeline.sources.navixy.limits import ONE_SECOND, TRIP_OVERHANG, split_on_211
from fleet_pipeline.sources.navixy.rows import WindowRows, by_time, in_window, list_of, require_rows
from fleet_pipeline.sources.navixy.timezones import UserClock, convert_times
from fleet_pipeline.sources.time_windows import as_naive_utc, windows

logger = logging.getLogger("fleet_pipeline.sources.navixy")


class TrackReader:
    """Points and trips of one tracker through ``call``; ``now`` caps the trips' overhang."""

    def __init__(self, call: Callable[[str, dict[str, Any]], dict[str, Any]],
                 clock: Callable[[], UserClock], now: Callable[[], datetime],
                 track_window: timedelta) -> None:
        self._call = call
        self._clock = clock
        self._now = now
        self.track_window = track_window

    def points(self, tracker_id: int, begin_utc: datetime, end_utc: datetime) -> WindowRows:
        return self._windowed(TRACK_READ, tracker_id, begin_utc, end_utc, self._track_read, "get_time")

    def trips(self, tracker_id: int, begin_utc: datetime, end_utc: datetime) -> WindowRows:
        return self._windowed(TRACK_LIST, tracker_id, begin_utc, end_utc, self._track_list, "start_date")

    def _windowed(self, method: str, tracker_id: int, begin_utc: datetime, end_utc: datetime,
                  fetch: Callable[[int, datetime, datetime], WindowRows], time_key: str) -> WindowRows:
        """Read ``[begin, end)`` in windows of at most ``track_window`` (halved on 211), sorted."""
        begin, end = as_naive_utc(begin_utc), as_naive_utc(end_utc)
        rows: list[dict[str, Any]] = []
        exceeded = False
        for lo, hi in windows(begin, end, self.track_window):
            part = split_on_211(method, lo, hi, lambda a, b: fetch(tracker_id, a, b))
            rows.extend(part.rows)
            exceeded |= part.limit_exceeded
        rows.sort(key=by_time(time_key))
        if exceeded:
            self._warn_limit_exceeded(method, tracker_id, begin, end)
        return WindowRows(rows, exceeded)

    def _track_read(self, tracker_id: int, begin: datetime, end: datetime) -> WindowRows:
        clock = self._clock()
        payload = self._call(TRACK_READ, {
            "tracker_id": int(tracker_id),
            "from": clock.to_param(begin - ONE_SECOND),
            "to": clock.to_param(end),
            "simplify": False,
            "filter": False,
            "include_gsm_lbs": True,
        })
        points = list_of(payload, "list", TRACK_READ)
        require_rows(points, TRACK_READ)
        for point in points:
            convert_times(point, POINT_TIME_FIELDS, clock, TRACK_READ)
        return WindowRows(in_window(points, "get_time", begin, end),
                          bool(payload.get("limit_exceeded")))

    def _track_list(self, tracker_id: int, begin: datetime, end: datetime) -> WindowRows:
        clock = self._clock()
        # Never ask beyond the present for the overhang: only completed trips exist there.
        to = max(end, min(end + TRIP_OVERHANG, as_naive_utc(self._now()).replace(microsecond=0)))
        payload = self._call(TRACK_LIST, {
            "tracker_id": int(tracker_id),
            "from": clock.to_param(begin - ONE_SECOND),
            "to": clock.to_param(to),
            "filter": False,
            "split": True,
            "include_gsm_lbs": True,
            "cluster_single_reports": False,
        })
        tracks = list_of(payload, "list", TRACK_LIST)
        require_rows(tracks, TRACK_LIST)
        for track in tracks:
            convert_times(track, TRIP_TIME_FIELDS, clock, TRACK_LIST)
        return WindowRows(in_window(tracks, "start_date", begin, end),
                          bool(payload.get("limit_exceeded")))

    def _warn_limit_exceeded(self, method: str, tracker_id: int, begin: datetime, end: datetime) -> None:
        logger.warning(
            "navixy %s: tracker %s, %s..%s reaches beyond the storage period "
            "(limit_exceeded); older rows were dropped by the platform",
            method, tracker_id, begin.isoformat(), end.isoformat(),
        )
