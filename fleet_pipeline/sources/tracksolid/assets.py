"""Tracksolid Pro assets: ``raw_tracksolid.<table>`` in DuckDB, one asset per table.

Snapshots (``devices``, ``positions``) describe the fleet as it is when the run happens and are kept
one snapshot per UTC day; event tables (``trips``, ``track_points``, ``parking``, ``alarms``) are
partitioned by the UTC day an event starts on. Every batch is typed, validated and swapped into its
partition in one transaction (see ``fleet_pipeline.loader``).
"""


import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any

import polars as pl
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    MaterializeResult,
    asset,
)

from fleet_pipeline.loader import (
    load_batch,
    materialization_metadata,
    rejects_check,
    rejects_check_spec,
)
from fleet_pipeline.partitions import daily_partitions, day_window, partition_day
from fleet_pipeline.records import typed_frame
from fleet_pipeline.sources.tracksolid import schemas
from fleet_pipeline.sources.tracksolid.client import TracksolidClient
from fleet_pipeline.sources.tracksolid.resources import TracksolidResource
from fleet_pipeline.warehouse import TableRef, WarehouseResource

SCHEMA = "raw_tracksolid"
GROUP = "tracksolid"
WRITER_POOL = "duckdb_writer"
OWNERS = ["team:data-platform"]
KINDS = {"python", "duckdb", "polars"}
PLAUSIBILITY_CHECK = "trip_distance_plausible"
# A trip whose distance implies an average speed this far from the vendor's own average speed (or
# above its own max speed) was measured in another unit, or is corrupt.
PLAUSIBLE_SPEED_RATIO = (0.5, 2.0)
# More than this share of implausible trips fails the check: a handful can be GPS glitches.
IMPLAUSIBLE_SHARE_LIMIT = 0.01


def _key(table: str) -> AssetKey:
    return AssetKey([SCHEMA, table])


def _utc_now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0)


def _unknown_as_null(*columns: str) -> list[pl.Expr]:
    """Tag/beacon devices send -1 for speed, direction and distance they do not know."""
    return [pl.when(pl.col(c) < 0).then(None).otherwise(pl.col(c)).alias(c) for c in columns]


def _in_day(column: str, day: date) -> pl.Expr:
    """Rows of this UTC day; rows whose time did not parse stay so that validation rejects them."""
    return (pl.col(column).dt.date() == day) | pl.col(column).is_null()


@dataclass
class _Extraction:
    """What every Tracksolid asset body starts from: a client, its partition day and a timer."""

    client: TracksolidClient
    resource: TracksolidResource
    day: date | None
    started: float = field(default_factory=time.monotonic)
    now: datetime = field(default_factory=lambda: _utc_now())

    @property
    def window(self) -> tuple[datetime, datetime]:
        assert self.day is not None, "a snapshot asset has no partition window"
        return day_window(self.day)

    @property
    def imeis(self) -> list[str]:
        return [str(row["imei"]) for row in self.resource.inventory(self.client)]


@contextlib.contextmanager
def _extraction(context: AssetExecutionContext, tracksolid: TracksolidResource) -> Iterator[_Extraction]:
    day = partition_day(context.partition_key) if context.has_partition_key else None
    with contextlib.closing(tracksolid.client()) as client:
        yield _Extraction(client=client, resource=tracksolid, day=day)


def _load(
    context: AssetExecutionContext,
    duckdb: WarehouseResource,
    run: _Extraction,
    table: str,
    typed: pl.DataFrame,
    schema: Any,
    extra_checks: tuple[AssetCheckResult, ...] = (),
    **extra_metadata: Any,
) -> MaterializeResult:
    """Validate and swap in the batch: by ``partition_date`` for events, ``snapshot_date`` else."""
    key_column, key_value = ("partition_date", run.day) if run.day else ("snapshot_date", run.now.date())
    with duckdb.get_connection() as conn:
        outcome = load_batch(conn, TableRef(SCHEMA, table), typed, schema, key_column, key_value)
    metadata = materialization_metadata(outcome, run.client.stats, run.started, **extra_metadata)
    context.log.info(
        f"{SCHEMA}.{table} {key_column}={key_value}: {outcome.split.valid.height} rows "
        f"({outcome.written.rows_added:+d} vs before), {outcome.split.rejected} rejected, "
        f"{metadata['api_calls']} API calls"
    )
    return MaterializeResult(metadata=metadata, check_results=[rejects_check(outcome), *extra_checks])


def _asset(table: str, description: str, partitioned: bool, checks: tuple[AssetCheckSpec, ...] = ()):
    return asset(
        key=_key(table),
        group_name=GROUP,
        description=description,
        partitions_def=daily_partitions if partitioned else None,
        kinds=KINDS,
        owners=OWNERS,
        pool=WRITER_POOL,
        check_specs=[rejects_check_spec(_key(table)), *checks],
        metadata={"vendor": "Tracksolid Pro (Jimi IoT)", "table": f"{SCHEMA}.{table}"},
    )


@_asset(
    "devices",
    "Daily snapshot of every device on the target account and all its sub-accounts "
    "(jimi.user.child.list + jimi.user.device.list), enriched with jimi.track.device.detail.",
    partitioned=False,
)
def devices(context: AssetExecutionContext, tracksolid: TracksolidResource, duckdb: WarehouseResource) -> MaterializeResult:
    with _extraction(context, tracksolid) as run:
        listed = tracksolid.inventory(run.client)
        rows = []
        for index, row in enumerate(listed, start=1):
            rows.append({**row, **run.client.device_detail(str(row["imei"])), "_account": row["_account"]})
            if index % 100 == 0:
                context.log.info(f"device detail {index}/{len(listed)}")
        typed = typed_frame(rows, schemas.DEVICE_COLUMNS).with_columns(
            snapshot_date=pl.lit(run.now.date()), snapshot_at=pl.lit(run.now)
        )
        return _load(context, duckdb, run, "devices", typed, schemas.DeviceSchema,
                     accounts=len({r["_account"] for r in listed}))


@_asset(
    "positions",
    "Daily snapshot of each device's last known position (jimi.user.device.location.list per account).",
    partitioned=False,
)
def positions(context: AssetExecutionContext, tracksolid: TracksolidResource, duckdb: WarehouseResource) -> MaterializeResult:
    with _extraction(context, tracksolid) as run:
        rows = []
        for account in tracksolid.imeis_by_account(run.client):
            rows.extend(run.client.locations(account))
        typed = typed_frame(rows, schemas.POSITION_COLUMNS).with_columns(
            *_unknown_as_null("speed_kmh", "direction_deg"),
            snapshot_date=pl.lit(run.now.date()),
            snapshot_at=pl.lit(run.now),
        )
        return _load(context, duckdb, run, "positions", typed, schemas.PositionSchema)


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
    "The distance unit is TRACKSOLID_MILEAGE_UNIT (km by default, BUG-02).",
    partitioned=True,
    checks=(
        AssetCheckSpec(
            PLAUSIBILITY_CHECK,
            asset=_key("trips"),
            description="Trip distances fit their durations and the vendor's average and max speed "
            "(catches a wrong TRACKSOLID_MILEAGE_UNIT).",
        ),
    ),
)
def trips(context: AssetExecutionContext, tracksolid: TracksolidResource, duckdb: WarehouseResource) -> MaterializeResult:
    per_km = 0.001 if tracksolid.mileage_unit == "m" else 1.0
    with _extraction(context, tracksolid) as run:
        imeis = run.imeis
        rows, _totals = run.client.trips(imeis, *run.window)
        typed = (
            typed_frame(rows, schemas.TRIP_COLUMNS)
            .with_columns(*_unknown_as_null("distance_raw", "avg_speed_kmh", "max_speed_kmh"))
            .with_columns(
                partition_date=pl.lit(run.day),
                distance_km=pl.col("distance_raw") * per_km,
                duration_s=(pl.col("end_time") - pl.col("start_time")).dt.total_seconds(),
            )
            .drop("distance_raw")
        )
        in_day = typed.filter(_in_day("start_time", run.day))
        timed = in_day.filter(pl.col("start_time").is_not_null() & pl.col("end_time").is_not_null())
        return _load(context, duckdb, run, "trips", in_day, schemas.TripSchema,
                     extra_checks=(_plausibility(timed, tracksolid.mileage_unit),),
                     devices_queried=len(imeis), rows_outside_partition=typed.height - in_day.height)


@_asset(
    "track_points",
    "Every GPS fix per device and UTC day (jimi.device.track.list, one IMEI and at most 7 days a "
    "call), deduplicated on (imei, gps_time); late re-uploaded fixes appear when the day is re-run.",
    partitioned=True,
)
def track_points(context: AssetExecutionContext, tracksolid: TracksolidResource, duckdb: WarehouseResource) -> MaterializeResult:
    with _extraction(context, tracksolid) as run:
        imeis = run.imeis
        rows: list[dict[str, Any]] = []
        for index, imei in enumerate(imeis, start=1):
            rows.extend({**point, "imei": imei} for point in run.client.track_points(imei, *run.window))
            if index % 50 == 0 or index == len(imeis):
                context.log.info(f"track.list {index}/{len(imeis)} devices, {len(rows)} fixes so far")
        typed = (
            typed_frame(rows, schemas.TRACK_POINT_COLUMNS)
            .with_columns(*_unknown_as_null("speed_kmh", "direction_deg"))
            .with_columns(partition_date=pl.lit(run.day), reuploaded=(pl.col("gps_mode") == "1").fill_null(False))
            .drop("gps_mode")
            .filter(_in_day("gps_time", run.day))
        )
        # Overlapping windows and re-uploads return the same fix twice; the last copy wins.
        deduplicated = typed.unique(subset=["imei", "gps_time"], keep="last", maintain_order=True)
        return _load(context, duckdb, run, "track_points", deduplicated, schemas.TrackPointSchema,
                     devices_queried=len(imeis), duplicates_dropped=typed.height - deduplicated.height)


@_asset(
    "parking",
    "Parking and idling periods per device and UTC day of their start "
    "(jimi.open.platform.report.parking with acc_type=0: without it the API returns no rows).",
    partitioned=True,
)
def parking(context: AssetExecutionContext, tracksolid: TracksolidResource, duckdb: WarehouseResource) -> MaterializeResult:
    with _extraction(context, tracksolid) as run:
        rows: list[dict[str, Any]] = []
        for account, imeis in tracksolid.imeis_by_account(run.client).items():
            rows.extend(run.client.parking(account, imeis, *run.window))
        typed = (
            typed_frame(rows, schemas.PARKING_COLUMNS)
            .with_columns(partition_date=pl.lit(run.day))
            .filter(_in_day("start_time", run.day))
            .unique(subset=["imei", "start_time"], keep="last", maintain_order=True)
        )
        return _load(context, duckdb, run, "parking", typed, schemas.ParkingSchema)


@_asset(
    "alarms",
    "Alarms per device and UTC day (jimi.device.alarm.list, paged, windows split at 1,000 rows); "
    "polling and push field-name variants are both mapped.",
    partitioned=True,
)
def alarms(context: AssetExecutionContext, tracksolid: TracksolidResource, duckdb: WarehouseResource) -> MaterializeResult:
    with _extraction(context, tracksolid) as run:
        rows = run.client.alarms(run.imeis, *run.window)
        typed = (
            typed_frame(rows, schemas.ALARM_COLUMNS)
            .with_columns(*_unknown_as_null("speed_kmh"), partition_date=pl.lit(run.day))
            .filter(_in_day("alarm_time", run.day))
            .unique(subset=["imei", "alarm_time", "alarm_type_id"], keep="last", maintain_order=True)
        )
        return _load(context, duckdb, run, "alarms", typed, schemas.AlarmSchema)


tracksolid_assets = [devices, positions, trips, track_points, parking, alarms]
