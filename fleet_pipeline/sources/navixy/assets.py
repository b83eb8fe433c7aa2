"""Navixy assets: ``raw_navixy.<table>`` in DuckDB, one asset per table.

Snapshots (``trackers``, ``states``, ``sensor_readings``) are kept one per UTC day; event tables
(``trips``, ``track_points``, ``events``) are partitioned by the UTC day an event starts on. The
client speaks the user's time zone to the API and hands back naive UTC, so a UTC-day partition
covers exactly its 24 hours even on the 23- and 25-hour local days of a DST change.
``mileage_daily`` is the exception: Navixy computes mileage per calendar day of the user's time
zone, so that partition holds the local day of the same date (``local_date``, ``time_zone``).
"""

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import polars as pl
from dagster import AssetExecutionContext, MaterializeResult

from fleet_pipeline.automation.anomaly import Fleet
from fleet_pipeline.automation.partitions import MONTH_PER_RUN, WEEK_PER_RUN
from fleet_pipeline.ingest.records import device_rows, typed_frame
from fleet_pipeline.ingest.source_assets import Source, Table, extraction, load, unknown_as_null
from fleet_pipeline.ingest.warehouse import TableRef, WarehouseResource
from fleet_pipeline.sources.accounts import DEFAULT_ACCOUNT
from fleet_pipeline.sources.navixy import schemas
from fleet_pipeline.sources.navixy.resources import NavixyResource
from fleet_pipeline.sources.navixy.trip_evidence import trackers_with_trip_points

SOURCE = Source(
    schema="raw_navixy", group="navixy", vendor="Navixy (API v2)",
    # a blocked tracker's data is refused (217): only the others are expected to have rows
    fleet=Fleet("Navixy trackers not blocked", ((TableRef("raw_navixy", "trackers"), "not blocked"),)),
    tables={
        "trackers": Table(schemas.TrackerSchema, schemas.TRACKER_COLUMNS, key=("tracker_id",)),
        "states": Table(schemas.StateSchema, schemas.STATE_COLUMNS, key=("tracker_id",)),
        "sensor_readings": Table(schemas.SensorReadingSchema, schemas.SENSOR_COLUMNS,
                                 key=("tracker_id", "source", "sensor")),
        "trips": Table(schemas.TripSchema, schemas.TRIP_COLUMNS, key=("tracker_id", "start_time")),
        "track_points": Table(schemas.TrackPointSchema, schemas.TRACK_POINT_COLUMNS, key=("tracker_id", "gps_time")),
        "events": Table(schemas.EventSchema, schemas.EVENT_COLUMNS, key=("event_id",)),
        "mileage_daily": Table(schemas.MileageSchema, schemas.MILEAGE_COLUMNS, key=("tracker_id", "local_date")),
    },
    column_descriptions=schemas.COLUMN_DESCRIPTIONS,
)
_asset = SOURCE.asset
SENSOR_SOURCES = ("diagnostics", "fuel", "readings")


def _imei_fields(rows: list[dict[str, Any]], imeis: dict[int, str]) -> list[dict[str, Any]]:
    """Per row, its tracker's IMEI (``typed_frame``'s ``extra``, one mapping shared by the rows of a
    tracker); a tracker id that is not a known tracker (or not a number) gets none, so that
    validation rejects the row with its reason instead of the step failing."""
    imei_of = _imei_lookup(imeis)
    shared = {imei: {"imei": imei} for imei in [*imeis.values(), None]}
    return [shared[imei_of(row.get("tracker_id"))] for row in rows]


def _imei_lookup(imeis: dict[int, str]) -> Any:
    """Tracker id (a number, or its text) -> its IMEI, or None for an id that is not a tracker's."""
    by_text = {str(tracker_id): imei for tracker_id, imei in imeis.items()}
    return lambda tracker_id: by_text.get(str(tracker_id).strip())


class _PerTracker:
    """One-tracker-a-call reads (``fetch(tracker_id)`` -> WindowRows) as typed chunks of trackers.

    Calls run concurrently and each chunk is typed as soon as it is complete (see
    ``Extraction.per_device``); ``limit_exceeded`` is gathered on the way. The tracker's id and
    IMEI are given to typing beside its rows (``shape(rows, extra)``), not copied into each row.
    """

    def __init__(self, context: AssetExecutionContext, run: Any, label: str, fetch: Any) -> None:
        self.context, self.run, self.label, self.fetch = context, run, label, fetch
        self.exceeded = False

    def chunks(self, tracker_ids: list[int], imeis: dict[int, str], shape: Any) -> Iterator[pl.DataFrame]:
        imei_of = _imei_lookup(imeis)
        for chunk in self.run.per_device(self.context, self.label, tracker_ids, self.fetch):
            self.exceeded |= any(result.limit_exceeded for _, result in chunk)
            rows, extra = device_rows(((tracker_id, result.rows) for tracker_id, result in chunk),
                                      lambda tracker_id: {"tracker_id": tracker_id, "imei": imei_of(tracker_id)})
            del chunk
            typed = shape(rows, extra)
            # Only the typed frame refers to the chunk's rows now: they go with it.
            del rows, extra
            yield typed


def _exceeded_note(context: AssetExecutionContext, reads: _PerTracker) -> Any:
    """Metadata read once the reads are done: whether Navixy dropped rows beyond storage."""
    def note() -> bool:
        if reads.exceeded:
            context.log.warning("part of this window is beyond the trackers' storage period: Navixy dropped those rows")
        return reads.exceeded

    return note


@_asset("trackers", "Daily snapshot of the account's trackers (tracker/list): IMEI, model, group, "
        "phone, tariff, blocked flag.", partitioned=False)
def trackers(context: AssetExecutionContext, navixy: NavixyResource, duckdb: WarehouseResource) -> MaterializeResult:
    with extraction(context, navixy.client) as run:
        listed = navixy.trackers(run.client)
        typed = typed_frame(listed, schemas.TRACKER_COLUMNS).with_columns(
            **run.snapshot_stamp()
        )
        blocked = sum(1 for t in listed if (t.get("source") or {}).get("blocked"))
        return load(context, duckdb, SOURCE, run, "trackers", typed, blocked_trackers=blocked)


@_asset("states", "Daily snapshot of each tracker's state (tracker/get_states, 2,000 a call): "
        "connection and movement status, ignition, battery, GSM, last fix. Blocked trackers are "
        "kept with tracker_status 'blocked'; deleted ones are reported in the metadata.", partitioned=False)
def states(context: AssetExecutionContext, navixy: NavixyResource, duckdb: WarehouseResource) -> MaterializeResult:
    with extraction(context, navixy.client) as run:
        imeis = navixy.imei_by_tracker(run.client)
        result = run.client.states(sorted(imeis))
        rows = [{**state, "tracker_id": tid, "tracker_status": "ok"} for tid, state in result.states.items()]
        rows += [{"tracker_id": tid, "tracker_status": "blocked"} for tid in result.blocked]
        if result.blocked or result.missing:
            context.log.warning(f"{len(result.blocked)} blocked and {len(result.missing)} deleted trackers: "
                                f"blocked {sorted(result.blocked)[:20]}, deleted {sorted(result.missing)[:20]}")
        typed = typed_frame(rows, schemas.STATE_COLUMNS, _imei_fields(rows, imeis)).with_columns(
            *unknown_as_null("speed_kmh", "heading_deg"),
            **run.snapshot_stamp(),
        )
        return load(context, duckdb, SOURCE, run, "states", typed,
                    blocked_trackers=len(result.blocked), deleted_trackers=len(result.missing))


def _sensor_rows(source: str, payload: dict[str, Any]) -> list[dict[str, Any]]:
    """One long-format row per sensor input and per state value of a diagnostics-like payload."""
    updated = payload.get("update_time")
    rows = []
    for sensor in payload.get("inputs") or []:
        value = sensor.get("value")
        rows.append({
            "source": source, "sensor": str(sensor.get("name") or "").strip() or sensor.get("label"),
            "label": sensor.get("label"), "sensor_type": sensor.get("type"),
            "value_num": value if isinstance(value, (int, float)) and not isinstance(value, bool) else None,
            "value_text": None if isinstance(value, (int, float)) else value,
            "units": sensor.get("units_type") or sensor.get("units"), "updated_time": updated,
        })
    for name, value in (payload.get("states") or {}).items():
        rows.append({"source": source, "sensor": name, "value_text": value, "updated_time": updated})
    return rows


@_asset("sensor_readings", "Daily snapshot of OBD/CAN/fuel/sensor values as long-format rows "
        "(tracker/get_diagnostics, get_fuel, get_readings): one row per tracker, source and sensor.",
        partitioned=False)
def sensor_readings(context: AssetExecutionContext, navixy: NavixyResource, duckdb: WarehouseResource) -> MaterializeResult:
    with extraction(context, navixy.client) as run:
        imeis = navixy.imei_by_tracker(run.client)
        active = navixy.active_tracker_ids(run.client)

        def read_sensors(tracker_id: int) -> list[dict[str, Any]]:
            return [{**r, "tracker_id": tracker_id}
                    for source in SENSOR_SOURCES
                    for r in _sensor_rows(source, getattr(run.client, source)(tracker_id) or {})]

        rows = [row for chunk in run.per_device(context, "sensors", active, read_sensors)
                for _, readings in chunk for row in readings]
        typed = typed_frame(rows, schemas.SENSOR_COLUMNS, _imei_fields(rows, imeis)).with_columns(
            **run.snapshot_stamp()
        )
        return load(context, duckdb, SOURCE, run, "sensor_readings", typed,
                    trackers_read=len(active))


# track/list: one tracker a call, read by the client in 7-day windows: a week is one call per
# tracker (30 days: 5 instead of 30); trips are few, so a month per run keeps memory small.
# Loaded after track_points: a tracker whose points of the window are all parking points has no
# trip starting in it and is not asked (see trip_evidence).
@_asset("trips", "Trips per tracker and UTC day of their start (track/list, unfiltered, one row per "
        "trip), times converted from the user's time zone. Only trackers with a point of a trip in "
        "the window (track_points, parking false) are asked.", partitioned=True, backfill=MONTH_PER_RUN,
        after=("track_points",))
def trips(context: AssetExecutionContext, navixy: NavixyResource, duckdb: WarehouseResource) -> MaterializeResult:
    with extraction(context, navixy.client) as run:
        imeis = navixy.imei_by_tracker(run.client)
        begin, end = run.bounds
        active = navixy.active_tracker_ids(run.client)
        moving = trackers_with_trip_points(duckdb, run.days, active, run.account or DEFAULT_ACCOUNT)
        if moving is None:
            context.log.info("track points of the window not loaded or partly rejected: asking every tracker for trips")
        reads = _PerTracker(context, run, "track/list", lambda tid: run.client.trips(tid, begin, end))

        def shape(rows: list[Any], extra: list[Any]) -> pl.DataFrame:
            return run.by_day(
                typed_frame(rows, schemas.TRIP_COLUMNS, extra).with_columns(
                    duration_s=(pl.col("end_time") - pl.col("start_time")).dt.total_seconds(),
                ),
                "start_time",
            )

        asked = active if moving is None else moving
        return load(context, duckdb, SOURCE, run, "trips", reads.chunks(asked, imeis, shape),
                    storage_limit_exceeded=_exceeded_note(context, reads),
                    trackers_asked=len(asked), trackers_without_trip_points=len(active) - len(asked))


@_asset("track_points", "Every GPS fix per tracker and UTC day (track/read with simplify=false; "
        "'from' is exclusive, so nothing is lost at window edges), unique on (tracker_id, gps_time).",
        # track/read: one tracker a call, read by the client in 7-day windows: a week is one call
        # per tracker; longer runs save nothing and hold every fix in memory.
        partitioned=True, backfill=WEEK_PER_RUN)
def track_points(context: AssetExecutionContext, navixy: NavixyResource, duckdb: WarehouseResource) -> MaterializeResult:
    with extraction(context, navixy.client) as run:
        imeis = navixy.imei_by_tracker(run.client)
        begin, end = run.bounds
        reads = _PerTracker(context, run, "track/read", lambda tid: run.client.track_points(tid, begin, end))

        def shape(rows: list[Any], extra: list[Any]) -> pl.DataFrame:
            return run.by_day(
                typed_frame(rows, schemas.TRACK_POINT_COLUMNS, extra).with_columns(*unknown_as_null("speed_kmh", "heading_deg")),
                "gps_time",
            )

        return load(context, duckdb, SOURCE, run, "track_points",
                    reads.chunks(navixy.active_tracker_ids(run.client), imeis, shape),
                    storage_limit_exceeded=_exceeded_note(context, reads))


@_asset("events", "Events per tracker and UTC day (history/tracker/list, 1,000 a page, paged by "
        "time and de-duplicated by event id, so nothing is lost when many events share one second).",
        # history/tracker/list: 500 trackers and 1,000 events a page over any range: a month is
        # paged once instead of day by day.
        partitioned=True, backfill=MONTH_PER_RUN)
def events(context: AssetExecutionContext, navixy: NavixyResource, duckdb: WarehouseResource) -> MaterializeResult:
    with extraction(context, navixy.client) as run:
        imeis = navixy.imei_by_tracker(run.client)
        rows = run.client.events(navixy.active_tracker_ids(run.client), *run.bounds)
        typed = run.by_day(typed_frame(rows, schemas.EVENT_COLUMNS, _imei_fields(rows, imeis)), "event_time")
        return load(context, duckdb, SOURCE, run, "events", typed)


@_asset("mileage_daily", "Kilometres per tracker and calendar day of the user's time zone "
        "(tracker/stats/mileage/read, 128 trackers and 31 days a call). The partition of date D holds "
        "the local day D (see local_date, time_zone).",
        # stats/mileage/read: 128 trackers and 31 days a call: a month is one call per 128 trackers.
        partitioned=True, backfill=MONTH_PER_RUN)
def mileage_daily(context: AssetExecutionContext, navixy: NavixyResource, duckdb: WarehouseResource) -> MaterializeResult:
    with extraction(context, navixy.client) as run:
        imeis = navixy.imei_by_tracker(run.client)
        rows = run.client.mileage(navixy.active_tracker_ids(run.client), run.first, run.last)
        zone = str(run.client.time_zone.key)
        typed = run.by_day(
            typed_frame(rows, schemas.MILEAGE_COLUMNS, _imei_fields(rows, imeis)).with_columns(time_zone=pl.lit(zone)),
            "local_date",
        )
        return load(context, duckdb, SOURCE, run, "mileage_daily", typed,
                    time_zone=zone,
                    per_partition={day: {"local_day_hours": _local_day_hours(run.client, day)} for day in run.days})


def _local_day_hours(client: Any, day) -> float:
    """23, 24 or 25: how long the user's calendar day was (DST changes), for the metadata."""
    start, end = client.local_day_window(day)
    return (end - start) / timedelta(hours=1)


navixy_assets = [trackers, states, sensor_readings, trips, track_points, events, mileage_daily]
