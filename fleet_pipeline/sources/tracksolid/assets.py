"""Tracksolid Pro assets: ``raw_tracksolid.<table>`` in DuckDB, one asset per table.

Snapshots (``devices``, ``positions``) describe the fleet as it is when the run happens and are kept
one snapshot per UTC day; event tables (``trips``, ``track_points``, ``parking``, ``alarms``) are
partitioned by the UTC day an event starts on. Every batch is typed, validated and swapped into its
partition in one transaction (see ``fleet_pipeline.ingest.loader``).
"""


from collections.abc import Iterator
from typing import Any

import polars as pl
from dagster import AssetCheckResult, AssetCheckSeverity, AssetCheckSpec, AssetExecutionContext, MaterializeResult

from fleet_pipeline.automation.anomaly import Fleet
from fleet_pipeline.automation.partitions import MONTH_PER_RUN, WEEK_PER_RUN
from fleet_pipeline.ingest.records import device_rows, typed_frame
from fleet_pipeline.ingest.source_assets import Source, Table, extraction, load, unknown_as_null
from fleet_pipeline.ingest.warehouse import TableRef, WarehouseResource
from fleet_pipeline.sources.tracksolid import schemas
from fleet_pipeline.sources.tracksolid.resources import TracksolidResource

SOURCE = Source(
    schema="raw_tracksolid", group="tracksolid", vendor="Tracksolid Pro (Jimi IoT)",
    fleet=Fleet("Tracksolid devices", ((TableRef("raw_tracksolid", "devices"), "true"),)),
    tables={
        "devices": Table(schemas.DeviceSchema, schemas.DEVICE_COLUMNS, key=("imei",)),
        "positions": Table(schemas.PositionSchema, schemas.POSITION_COLUMNS, key=("imei",)),
        "trips": Table(schemas.TripSchema, schemas.TRIP_COLUMNS, key=("imei", "start_time")),
        # Overlapping windows and re-uploads return the same fix twice; the last copy wins.
        "track_points": Table(schemas.TrackPointSchema, schemas.TRACK_POINT_COLUMNS, key=("imei", "gps_time")),
        "parking": Table(schemas.ParkingSchema, schemas.PARKING_COLUMNS, key=("imei", "start_time")),
        "alarms": Table(schemas.AlarmSchema, schemas.ALARM_COLUMNS, key=("imei", "alarm_time", "alarm_type_id")),
    },
    column_descriptions=schemas.COLUMN_DESCRIPTIONS,
)
SCHEMA, GROUP = SOURCE.schema, SOURCE.group
PLAUSIBILITY_CHECK = "trip_distance_plausible"
# A trip whose distance implies an average speed this far from the vendor's own average speed (or
# above its own max speed) was measured in another unit, or is corrupt.
PLAUSIBLE_SPEED_RATIO = (0.5, 2.0)
# More than this share of implausible trips fails the check: a handful can be GPS glitches.
IMPLAUSIBLE_SHARE_LIMIT = 0.01
_asset = SOURCE.asset


@_asset(
    "devices",
    "Daily snapshot of every device on the target account and all its sub-accounts "
    "(jimi.user.child.list + jimi.user.device.list), enriched with jimi.track.device.detail.",
    partitioned=False,
)
def devices(context: AssetExecutionContext, tracksolid: TracksolidResource, duckdb: WarehouseResource) -> MaterializeResult:
    with extraction(context, tracksolid.client) as run:
        listed = tracksolid.inventory(run.client)
        rows = [
            {**row, **detail, "_account": row["_account"]}
            for chunk in run.per_device(context, "device detail", listed,
                                        lambda row: run.client.device_detail(str(row["imei"]))
                                        if row.get("imei") is not None else {})
            for row, detail in chunk
        ]
        typed = typed_frame(rows, schemas.DEVICE_COLUMNS).with_columns(
            **run.snapshot_stamp()
        )
        return load(context, duckdb, SOURCE, run, "devices", typed,
                     accounts=len({r["_account"] for r in listed}))


@_asset(
    "positions",
    "Daily snapshot of each device's last known position (jimi.user.device.location.list per account).",
    partitioned=False,
)
def positions(context: AssetExecutionContext, tracksolid: TracksolidResource, duckdb: WarehouseResource) -> MaterializeResult:
    with extraction(context, tracksolid.client) as run:
        rows = []
        for _, located in run.client.fan_out(list(tracksolid.imeis_by_account(run.client)), run.client.locations):
            rows.extend(located)
        typed = typed_frame(rows, schemas.POSITION_COLUMNS).with_columns(
            *unknown_as_null("speed_kmh", "direction_deg"),
            **run.snapshot_stamp(),
        )
        return load(context, duckdb, SOURCE, run, "positions", typed)


def _plausibility(frame: pl.DataFrame, unit: str) -> AssetCheckResult:
    """Flag trips whose distance does not fit their duration and the vendor's own speeds."""
    timed = frame.filter((pl.col("duration_s") >= 60) & (pl.col("distance_km") > 0.2))
    implied = pl.col("distance_km") / (pl.col("duration_s") / 3600.0)
    ratio = implied / pl.col("avg_speed_kmh")
    flagged_expr = (
        (ratio < PLAUSIBLE_SPEED_RATIO[0]) | (ratio > PLAUSIBLE_SPEED_RATIO[1])
        | (implied > pl.max_horizontal(pl.col("max_speed_kmh") * 1.25, pl.lit(5.0)))
    ).fill_null(False)
    checked = timed.with_columns(ratio=ratio, flagged=flagged_expr)
    flagged = int(checked["flagged"].sum()) if checked.height else 0
    share = flagged / checked.height if checked.height else 0.0
    median_ratio = checked["ratio"].median() if checked.height else None
    hint = "distances fit durations and speeds"
    if median_ratio is not None and median_ratio > 100:
        hint = "distances look like metres read as kilometres: set TRACKSOLID_MILEAGE_UNIT=m"
    elif median_ratio is not None and median_ratio < 0.01:
        hint = "distances look like kilometres read as metres: set TRACKSOLID_MILEAGE_UNIT=km"
    return AssetCheckResult(
        check_name=PLAUSIBILITY_CHECK,
        passed=share <= IMPLAUSIBLE_SHARE_LIMIT,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "trips_checked": checked.height,
            "implausible_trips": flagged,
            "implausible_share": round(share, 4),
            "median_implied_over_reported_speed": None if median_ratio is None else round(float(median_ratio), 4),
            "configured_unit": unit,
            "diagnosis": hint,
        },
    )


@_asset(
    "trips",
    "Trips per device and UTC day of their start (jimi.device.track.mileage, 50 IMEIs a call). "
    "The distance unit is set by TRACKSOLID_MILEAGE_UNIT (km by default; some accounts report metres).",
    partitioned=True,
    # track.mileage takes any time range for 50 IMEIs and pages 100 trips a call: a month costs
    # about one call per 100 trips instead of at least one per batch and day.
    backfill=MONTH_PER_RUN,
    checks=(
        AssetCheckSpec(
            PLAUSIBILITY_CHECK,
            asset=SOURCE.key("trips"),
            description="Trip distances fit their durations and the vendor's average and max speed "
            "(catches a wrong TRACKSOLID_MILEAGE_UNIT).",
        ),
    ),
)
def trips(context: AssetExecutionContext, tracksolid: TracksolidResource, duckdb: WarehouseResource) -> MaterializeResult:
    per_km = 0.001 if tracksolid.mileage_unit == "m" else 1.0
    with extraction(context, tracksolid.client) as run:
        imeis = tracksolid.imeis(run.client)
        rows, _totals = run.client.trips(imeis, *run.bounds)
        typed = (
            typed_frame(rows, schemas.TRIP_COLUMNS)
            .with_columns(*unknown_as_null("distance_raw", "avg_speed_kmh", "max_speed_kmh"))
            .with_columns(
                distance_km=pl.col("distance_raw") * per_km,
                duration_s=(pl.col("end_time") - pl.col("start_time")).dt.total_seconds(),
            )
            .drop("distance_raw")
        )
        of_days = run.by_day(typed, "start_time")
        timed = of_days.filter(pl.col("start_time").is_not_null() & pl.col("end_time").is_not_null())
        return load(context, duckdb, SOURCE, run, "trips", of_days,
                     extra_checks=(_plausibility(timed, tracksolid.mileage_unit),),
                     devices_queried=len(imeis), rows_outside_partition=typed.height - of_days.height)


@_asset(
    "track_points",
    "Every GPS fix per device and UTC day (jimi.device.track.list, one IMEI and at most 7 days a "
    "call), deduplicated on (imei, gps_time); late re-uploaded fixes appear when the day is re-run.",
    partitioned=True,
    # track.list takes one IMEI and at most 7 days a call: a week is one call per device (30 days:
    # 5 calls instead of 30). Longer runs save nothing and hold every fix in memory; the API only
    # reaches 3 months back.
    backfill=WEEK_PER_RUN,
)
def track_points(context: AssetExecutionContext, tracksolid: TracksolidResource, duckdb: WarehouseResource) -> MaterializeResult:
    with extraction(context, tracksolid.client) as run:
        imeis = tracksolid.imeis(run.client)
        def typed_chunks() -> Iterator[pl.DataFrame]:
            for chunk in run.per_device(context, "track.list", imeis,
                                        lambda imei: run.client.track_points(imei, *run.bounds)):
                rows, extra = device_rows(chunk, lambda imei: {"imei": imei})
                del chunk
                typed = run.by_day(
                    typed_frame(rows, schemas.TRACK_POINT_COLUMNS, extra)
                    .with_columns(*unknown_as_null("speed_kmh", "direction_deg"))
                    .with_columns(reuploaded=(pl.col("gps_mode") == "1").fill_null(False))
                    .drop("gps_mode"),
                    "gps_time",
                )
                # Only the typed frame refers to the chunk's rows now: they go with it.
                del rows, extra
                yield typed

        return load(context, duckdb, SOURCE, run, "track_points", typed_chunks(),
                     devices_queried=len(imeis))


@_asset(
    "parking",
    "Parking and idling periods per device and UTC day of their start "
    "(jimi.open.platform.report.parking with acc_type=0: without it the API returns no rows).",
    partitioned=True,
    # report.parking takes any time range for 50 IMEIs and pages its rows, like track.mileage.
    backfill=MONTH_PER_RUN,
)
def parking(context: AssetExecutionContext, tracksolid: TracksolidResource, duckdb: WarehouseResource) -> MaterializeResult:
    with extraction(context, tracksolid.client) as run:
        rows: list[dict[str, Any]] = []
        for account, imeis in tracksolid.imeis_by_account(run.client).items():
            rows.extend(run.client.parking(account, imeis, *run.bounds))
        typed = run.by_day(typed_frame(rows, schemas.PARKING_COLUMNS), "start_time")
        return load(context, duckdb, SOURCE, run, "parking", typed)


@_asset(
    "alarms",
    "Alarms per device and UTC day (jimi.device.alarm.list, paged, windows split at 1,000 rows); "
    "polling and push field-name variants are both mapped.",
    partitioned=True,
    # alarm.list takes at most a month a call (the client splits there and at 1,000 rows).
    backfill=MONTH_PER_RUN,
)
def alarms(context: AssetExecutionContext, tracksolid: TracksolidResource, duckdb: WarehouseResource) -> MaterializeResult:
    with extraction(context, tracksolid.client) as run:
        rows = run.client.alarms(tracksolid.imeis(run.client), *run.bounds)
        typed = run.by_day(typed_frame(rows, schemas.ALARM_COLUMNS).with_columns(*unknown_as_null("speed_kmh")),
                           "alarm_time")
        return load(context, duckdb, SOURCE, run, "alarms", typed)


tracksolid_assets = [devices, positions, trips, track_points, parking, alarms]
