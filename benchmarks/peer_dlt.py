"""The peer of issue 17: one Navixy day loaded by dlt, set up the way dlt's documentation recommends.

The same calls as the project's Navixy assets for the day (``fleet_pipeline.sources.navixy.client``):
``user/get_info`` (the user's time zone: Navixy reads and writes date-times in it), ``tracker/list``
(the trackers table), then per tracker that is not blocked ``track/read`` (every fix, unsimplified
and unfiltered) and ``track/list`` (trips, split, unfiltered, asked up to 6 h past the day), and
``history/tracker/list`` for 500 trackers a call, 1,000 events a page, paged by moving ``from``.
Windows and the rows kept are the project's: ``from`` is exclusive, so asked one second early, and
rows are kept by their time inside the UTC day (trips by their start).

dlt's recommended pieces: ``RESTClient`` with an ``APIKeyAuth`` header (Navixy's ``Authorization:
NVX <hash>``), the single-page paginator for one-answer calls and a paginator of its own
(``BasePaginator``) for the history cursor; the per-tracker reads as ``parallelized`` transformers
(dlt runs them in its extract thread pool, ``workers`` wide); ``write_disposition="merge"`` on the
tables' keys; ``loader_file_format="parquet"``; the ``duckdb`` destination. dlt has no client-side
rate limiter: its requests session retries HTTP 429 with exponential backoff (or ``Retry-After``),
so the vendor's 50 calls a second are met by drawing 429s, which the benchmark counts.

dlt is an optional extra (``pip install .[bench]``); nothing outside the benchmark imports this module.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

# Navixy's documented limits and the project's windows (fleet_pipeline.sources.navixy.client).
HISTORY_BATCH = 500
HISTORY_LIMIT = 1000
TRIP_OVERHANG = timedelta(hours=6)
ONE_SECOND = timedelta(seconds=1)

# The tables compared with the project's (dlt's table name -> the project's raw table).
TABLES = {"trackers": "trackers", "track_points": "track_points", "trips": "trips", "events": "events"}


def _utc(text: str) -> datetime:
    """An ISO 8601 date-time with its offset (Navixy's ISO mode) as an aware UTC datetime."""
    return datetime.fromisoformat(text).astimezone(timezone.utc)


def _in_day(rows: list[dict[str, Any]], key: str, begin: datetime, end: datetime) -> list[dict[str, Any]]:
    return [row for row in rows if row.get(key) and begin <= _utc(row[key]) < end]


def navixy_day_source(base_url: str, api_key: str, day: date) -> Any:
    """The dlt source of one UTC day of a Navixy account (``base_url`` ends with the API prefix)."""
    import dlt
    from dlt.sources.helpers.rest_client import RESTClient
    from dlt.sources.helpers.rest_client.auth import APIKeyAuth
    from dlt.sources.helpers.rest_client.paginators import BasePaginator, SinglePagePaginator

    class HistoryCursor(BasePaginator):
        """history/tracker/list has no offset: the next page starts at the last event's second
        (asked one second early, ``from`` being exclusive); repeats are merged away by event id."""

        def __init__(self) -> None:
            super().__init__()
            self._from: str | None = None

        def update_state(self, response: Any, data: list[Any] | None = None) -> None:
            rows = data or []
            if len(rows) < HISTORY_LIMIT:
                self._has_next_page = False
                return
            last = max(_utc(row["time"]) for row in rows if row.get("time"))
            following = clock(last - ONE_SECOND)
            if following == self._from:
                raise RuntimeError(f"navixy history/tracker/list: {HISTORY_LIMIT} events share the second "
                                   f"{last.isoformat()}; the method cannot be paged past them")
            self._from = following

        def update_request(self, request: Any) -> None:
            request.json = {**request.json, "from": self._from}

    client = RESTClient(
        base_url=base_url.rstrip("/"),
        auth=APIKeyAuth(name="Authorization", api_key=f"NVX {api_key}", location="header"),
        headers={"NVX-ISO-DateTime": "true"},
        paginator=SinglePagePaginator(),
        data_selector="list",
    )

    def body(**params: Any) -> dict[str, Any]:
        return {**params, "iso_datetime": True}

    zone = ZoneInfo(client.post("user/get_info", json=body()).json()["user_info"]["time_zone"])

    def clock(utc: datetime) -> str:
        return utc.astimezone(zone).isoformat(timespec="seconds")

    begin = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
    end = begin + timedelta(days=1)
    trips_to = max(end, min(end + TRIP_OVERHANG, datetime.now(timezone.utc).replace(microsecond=0)))

    @dlt.resource(name="trackers", write_disposition="merge", primary_key="id")
    def trackers() -> Iterator[Any]:
        yield from client.paginate("tracker/list", method="POST", json=body())

    @dlt.transformer(data_from=trackers, selected=False)
    def active_trackers(page: list[dict[str, Any]]) -> Iterator[int]:
        for tracker in page:
            if not (tracker.get("source") or {}).get("blocked"):
                yield tracker["id"]

    @dlt.transformer(data_from=active_trackers, parallelized=True, write_disposition="merge",
                     primary_key=("tracker_id", "get_time"))
    def track_points(tracker_id: int) -> Iterator[Any]:
        for page in client.paginate("track/read", method="POST", json=body(
                tracker_id=tracker_id, **{"from": clock(begin - ONE_SECOND)}, to=clock(end),
                simplify=False, filter=False, include_gsm_lbs=True)):
            yield [{**point, "tracker_id": tracker_id} for point in _in_day(page, "get_time", begin, end)]

    @dlt.transformer(data_from=active_trackers, parallelized=True, write_disposition="merge",
                     primary_key=("tracker_id", "start_date"))
    def trips(tracker_id: int) -> Iterator[Any]:
        for page in client.paginate("track/list", method="POST", json=body(
                tracker_id=tracker_id, **{"from": clock(begin - ONE_SECOND)}, to=clock(trips_to),
                filter=False, split=True, include_gsm_lbs=True, cluster_single_reports=False)):
            yield [{**trip, "tracker_id": tracker_id} for trip in _in_day(page, "start_date", begin, end)]

    @dlt.transformer(data_from=trackers, parallelized=True, write_disposition="merge", primary_key="id")
    def events(page: list[dict[str, Any]]) -> Iterator[Any]:
        ids = sorted(t["id"] for t in page if not (t.get("source") or {}).get("blocked"))
        for start in range(0, len(ids), HISTORY_BATCH):
            for rows in client.paginate("history/tracker/list", method="POST", paginator=HistoryCursor(), json=body(
                    trackers=ids[start:start + HISTORY_BATCH], **{"from": clock(begin - ONE_SECOND)},
                    to=clock(end), limit=HISTORY_LIMIT, ascending=True)):
                yield _in_day(rows, "time", begin, end)

    @dlt.source(name="navixy")
    def navixy() -> Any:
        return trackers, active_trackers, track_points, trips, events

    return navixy()


def run(base_url: str, api_key: str, day: date, database: str, pipelines_dir: str, workers: int) -> dict[str, Any]:
    """Load the day into ``database`` (dataset ``navixy``); dlt's load info and the rows per table."""
    # dlt's documented knob for the extract thread pool that runs parallelized transformers.
    os.environ["EXTRACT__WORKERS"] = str(workers)
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    import dlt

    pipeline = dlt.pipeline(pipeline_name="navixy_day", destination=dlt.destinations.duckdb(database),
                            dataset_name="navixy", pipelines_dir=pipelines_dir)
    info = pipeline.run(navixy_day_source(base_url, api_key, day), loader_file_format="parquet")
    info.raise_on_failed_jobs()
    return {"load_packages": len(info.load_packages)}

