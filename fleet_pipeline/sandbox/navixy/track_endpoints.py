"""Navixy endpoints over a time window: track/read, track/list, history/tracker/list, mileage.

See SPEC.md, "Methods", for the window, storage and paging rules of each.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from fleet_pipeline.sandbox.navixy.protocol import (
    Call,
    NavixyError,
    fmt,
    local_to_utc,
    utc_days,
    utc_to_local,
    wall_clock_span,
)
from fleet_pipeline.sandbox.navixy.synthesis import (
    POINT_LIMIT_RANGE,
    TRACK_ID_SHIFT,
    Event,
    douglas_peucker,
    point_rows,
    street_address,
    track_bounds,
    track_id,
    tracker_id,
)

if TYPE_CHECKING:
    from fleet_pipeline.sandbox.world import Device, Trip


class TrackEndpoints:
    """track/read, track/list, history/tracker/list and tracker/stats/mileage/read.

    A part of `NavixyApp` (app.py), whose constructor sets the World, knobs, clock and state read here.
    """

    # -- tracks ------------------------------------------------------------------------------
    def _track_window(self, call: Call) -> tuple[datetime, datetime, datetime, bool]:
        """(from, to, storage floor, limit_exceeded) after the 7/211 checks."""
        start, end = call.params.window()
        if wall_clock_span(start, end) > timedelta(days=self.knobs.max_track_span_days):
            raise NavixyError(211)
        floor = self.now() - timedelta(days=self.knobs.storage_period_days)
        return start, end, floor, start < floor

    def track_read(self, call: Call) -> dict[str, Any]:
        d = self._tracker(call)
        start, end, floor, limit_exceeded = self._track_window(call)
        wanted_track = call.params.integer("track_id", required=False)
        simplify = call.params.boolean("simplify", True)
        keep_parking = not call.params.boolean("filter", True)
        call.params.boolean("include_gsm_lbs", True)       # the World has no LBS fixes
        point_limit = call.params.integer("point_limit", required=False,
                                          minimum=POINT_LIMIT_RANGE[0],
                                          maximum=POINT_LIMIT_RANGE[1])
        now = self.now()
        frame = self._points(d, max(start, floor), end, now)
        if wanted_track is not None:
            trip = self._trip_by_id(d, wanted_track)
            frame = frame.filter(pl.col("gps_time").is_between(trip.start, trip.end))
        if not keep_parking:
            frame = frame.filter(~pl.col("parking"))
        indices = np.arange(frame.height)
        if simplify and frame.height > 2:
            indices = douglas_peucker(frame, self.knobs.simplify_tolerance_m, point_limit)
        return {"limit_exceeded": limit_exceeded,
                "list": point_rows(frame, indices, d, call.iso)}

    def _trip_by_id(self, d: Device, wanted: int) -> Trip:
        if wanted % TRACK_ID_SHIFT == d.index:
            start = datetime(1970, 1, 1) + timedelta(seconds=wanted // TRACK_ID_SHIFT)
            for trip in self.world.day(d.imei, start.date()).trips:
                if trip.start.replace(microsecond=0) == start:
                    return trip
        raise NavixyError(201)

    def track_list(self, call: Call) -> dict[str, Any]:
        d = self._tracker(call)
        start, end, floor, limit_exceeded = self._track_window(call)
        drop_short = call.params.boolean("filter", True)
        split = call.params.boolean("split", True)
        call.params.boolean("include_gsm_lbs", True)
        call.params.boolean("cluster_single_reports", False)   # no single-point trips exist
        count_events = call.params.boolean("count_events", False)
        omit_addresses = call.params.boolean("omit_addresses", False)
        with_points = call.params.boolean("with_points", False)
        point_limit = call.params.integer("point_limit", required=False,
                                          minimum=POINT_LIMIT_RANGE[0],
                                          maximum=POINT_LIMIT_RANGE[1])
        now = self.now()
        after = max(start, floor)
        tracks: list[tuple[Trip, pl.DataFrame]] = []
        for day in utc_days(after, end):
            dd_trips = [t for t in self.world.day(d.imei, day).trips
                        if after < t.start <= end and t.end <= now]
            if not dd_trips:
                continue
            day_points = self._day_points(d, day, now)
            for trip in dd_trips:
                points = day_points.filter(pl.col("gps_time").is_between(trip.start, trip.end))
                if drop_short and (trip.distance_km < 0.05 or points.height < 2):
                    continue
                tracks.append((trip, points))
        events = self._events(d, after, end, now) if count_events else []
        address = (lambda lat, lng: "") if omit_addresses else street_address

        def points_list(points: pl.DataFrame) -> list[dict[str, Any]] | None:
            if not with_points:
                return None
            indices = (douglas_peucker(points, self.knobs.simplify_tolerance_m, point_limit)
                       if point_limit is not None and points.height > 2
                       else np.arange(points.height))
            return point_rows(points, indices, d, call.iso)

        rows: list[dict[str, Any]] = []
        if split:
            for trip, points in tracks:
                rows.append({
                    "id": track_id(d, trip), "start_date": fmt(trip.start, call.iso),
                    "start_address": address(trip.start_lat, trip.start_lng),
                    "max_speed": int(round(trip.max_speed_kmh)),
                    "end_date": fmt(trip.end, call.iso),
                    "end_address": address(trip.end_lat, trip.end_lng),
                    "length": round(trip.distance_km, 2), "points": points.height,
                    "avg_speed": int(round(trip.avg_speed_kmh)),
                    "event_count": (sum(1 for e in events if trip.start <= e.time <= trip.end)
                                    if count_events else None),
                    "type": "regular", "gsm_lbs": False, "bounds": track_bounds(points),
                    "points_list": points_list(points),
                })
        elif tracks:
            first, last = tracks[0][0], tracks[-1][0]
            merged = pl.concat([p for _, p in tracks], how="vertical_relaxed")
            km = sum(t.distance_km for t, _ in tracks)
            hours = sum((t.end - t.start).total_seconds() for t, _ in tracks) / 3600.0
            rows.append({
                "start_date": fmt(first.start, call.iso),
                "start_address": address(first.start_lat, first.start_lng),
                "max_speed": int(round(max(t.max_speed_kmh for t, _ in tracks))),
                "end_date": fmt(last.end, call.iso),
                "end_address": address(last.end_lat, last.end_lng),
                "length": round(km, 2), "points": merged.height,
                "avg_speed": int(round(km / hours)) if hours > 0 else 0,
                "event_count": (sum(1 for e in events if first.start <= e.time <= last.end)
                                if count_events else None),
                "type": "merged", "gsm_lbs": False, "bounds": track_bounds(merged),
                "points_list": points_list(merged),
            })
        return {"limit_exceeded": limit_exceeded, "list": rows}

    # -- history -----------------------------------------------------------------------------
    def history_tracker_list(self, call: Call) -> dict[str, Any]:
        devices = self._trackers_for_list_call(call)
        start, end = call.params.window()
        if wall_clock_span(start, end) > timedelta(days=self.knobs.max_history_span_days):
            raise NavixyError(211)
        limit = call.params.integer("limit", default=self.knobs.max_history_limit, minimum=1)
        if limit is not None and limit > self.knobs.max_history_limit:
            raise NavixyError(212)
        wanted = call.params.str_array("events")
        ascending = call.params.boolean("ascending", True)
        only_emergency = call.params.boolean("only_emergency", False)
        call.params.boolean("only_unread", False)          # nothing is ever read here
        add_label = call.params.boolean("add_tracker_label", True)
        call.params.boolean("add_tracker_files", False)
        now = self.now()
        found: list[tuple[Event, Device]] = []
        for d in devices:
            for e in self._events(d, start, end, now):
                if (wanted and e.event not in wanted) or (only_emergency and not e.emergency):
                    continue
                found.append((e, d))
        found.sort(key=lambda item: (item[0].time, item[0].id), reverse=not ascending)
        page = found[:limit]
        return {"list": [self._event_row(e, d, add_label, call.iso) for e, d in page],
                "limit_exceeded": len(found) > len(page), "total": len(found),
                "total_unread": len(found)}

    def _events(self, d: Device, start: datetime, end: datetime, now: datetime) -> list[Event]:
        """The tracker's events with start <= time <= min(end, now), in time order."""
        until = min(end, now)
        if until < start:
            return []
        out = [e for day in utc_days(start - timedelta(microseconds=1), until)
               for e in self._day_events(d, day) if start <= e.time <= until]
        out.sort(key=lambda e: (e.time, e.id))
        return out

    def _day_events(self, d: Device, day: date) -> list[Event]:
        return self._events_of_day(d.imei, day)

    # -- stats -------------------------------------------------------------------------------
    def tracker_stats_mileage_read(self, call: Call) -> dict[str, Any]:
        devices = self._trackers_for_list_call(call, max_size=self.knobs.max_stats_trackers)
        start, end = call.params.window()
        if wall_clock_span(start, end) > timedelta(days=self.knobs.max_stats_span_days):
            raise NavixyError(211)
        now = self.now()
        floor = now - timedelta(days=self.knobs.storage_period_days)
        first_day, last_day = utc_to_local(start).date(), utc_to_local(end).date()
        days = [first_day + timedelta(days=n) for n in range((last_day - first_day).days + 1)]
        bounds = [(day, local_to_utc(datetime.combine(day, datetime.min.time())),
                   local_to_utc(datetime.combine(day + timedelta(days=1), datetime.min.time())))
                  for day in days]
        limit_exceeded = False
        result: dict[str, dict[str, dict[str, float]]] = {}
        for d in devices:
            per_day: dict[str, dict[str, float]] = {}
            for day, day_start, day_end in bounds:
                if day_end <= floor:
                    limit_exceeded = True
                    continue
                lo, hi = max(day_start, start, floor), min(day_end, end, now)
                km = (self.world.odometer_km(d.imei, hi) - self.world.odometer_km(d.imei, lo)
                      if hi > lo else 0.0)
                per_day[day.isoformat()] = {"mileage": round(km, 2)}
            result[str(tracker_id(d))] = per_day
        if start < floor:
            limit_exceeded = True
        return {"result": result, "limit_exceeded": limit_exceeded}
