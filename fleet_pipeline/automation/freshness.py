"""Freshness checks of every source table, and the sensor that evaluates them when they fall due.

* Snapshot tables (devices, trackers, states, stock...) must have been taken during the UTC day by
  23:45 UTC — the snapshot schedule runs at 23:00, and a day without a snapshot is a hole in the
  firmware and stock history that cannot be filled afterwards.
* Daily partitioned tables must hold yesterday's partition, loaded after the day ended, by 06:00
  UTC — the daily schedule starts at 01:30.

Each source table gets one check named ``freshness_check``. Dagster's own
``build_time_partition_freshness_checks`` is not used for the partitioned tables: it does not ask
whether the day was loaded after it ended (a load taken while the day ran misses the rest of it).
And dagster 1.13's
``FreshnessPolicy`` (which supersedes these checks) only looks at the latest materialization of any
partition, so the daily late-data re-runs of older days would hide a missing yesterday.

The checks cost no process of their own: the sensor runs them in a job of their own
(``freshness_checks``) whose one step runs in the run's own process (the in-process executor), and
the source jobs leave them out (:func:`without_freshness_checks`) instead of starting a step
process that loads the code location to read two timestamps. Assets materialized from the UI or the
CLI bring their freshness checks along; those steps run in the run's own process
(``fleet_pipeline.executors``). After a failed check the sensor evaluates it again once its table
was re-loaded.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from datetime import date, datetime, time, timedelta, timezone

from dagster import (
    AssetCheckKey,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetChecksDefinition,
    AssetKey,
    AssetRecordsFilter,
    AssetSelection,
    AssetsDefinition,
    DagsterInstance,
    MetadataValue,
    SensorDefinition,
    SensorEvaluationContext,
    build_last_update_freshness_checks,
    build_sensor_for_freshness_checks,
    define_asset_job,
    in_process_executor,
    multi_asset_check,
    sensor,
)

from fleet_pipeline import settings
from fleet_pipeline.automation.schedules import automation_status

CHECK_NAME = "freshness_check"  # the name dagster's freshness factories give their checks
SENSOR_NAME = "freshness_checks_sensor"
JOB_NAME = "freshness_checks"
# The snapshot schedule runs at 23:00 UTC; 45 minutes later the day's snapshot must exist.
SNAPSHOT_DEADLINE_CRON = "45 23 * * *"
SNAPSHOT_LOWER_BOUND = timedelta(hours=23, minutes=45)  # back to 00:00: taken during that UTC day
# The daily schedule runs at 01:30 UTC; yesterday plus the late-data window have 4.5 hours.
DAILY_DEADLINE = time(6, 0)
# How often the sensor looks for checks that fell due or assets that were re-loaded.
SENSOR_INTERVAL_S = 600
# Keys the freshness sensor and the UI read from a check's result (dagster's freshness factories
# write the same ones): until when a passed check cannot fail, when the asset was last updated.
FRESH_UNTIL = "dagster/fresh_until_timestamp"
LAST_UPDATED = "dagster/last_updated_timestamp"
OVERDUE_SECONDS = "dagster/overdue_seconds"


def last_deadline(now: datetime) -> datetime:
    """The latest daily deadline at or before ``now`` (aware, UTC)."""
    deadline = datetime.combine(now.astimezone(timezone.utc).date(), DAILY_DEADLINE, tzinfo=timezone.utc)
    return deadline if deadline <= now else deadline - timedelta(days=1)


def expected_partition(now: datetime) -> date:
    """The UTC day that must be loaded by now: the last day that had ended by the last deadline."""
    return last_deadline(now).date() - timedelta(days=1)


def daily_partition_freshness(
    instance: DagsterInstance, asset_key: AssetKey, now: datetime, first_day: date
) -> AssetCheckResult:
    """Passed when the expected day's partition was materialized after that day had ended (an
    earlier materialization, e.g. of the still-growing day, does not hold the whole day)."""
    deadline = last_deadline(now)
    day = expected_partition(now)
    day_end = datetime.combine(day + timedelta(days=1), time.min, tzinfo=timezone.utc)
    metadata: dict[str, object] = {
        "expected_partition": day.isoformat(),
        "deadline": MetadataValue.timestamp(deadline.timestamp()),
    }
    if day < first_day:
        metadata[OVERDUE_SECONDS] = 0.0
        return AssetCheckResult(
            check_name=CHECK_NAME, asset_key=asset_key, passed=True, metadata=metadata,
            description=f"partition {day} precedes the first partition ({first_day}): nothing is due",
        )
    latest = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=asset_key, asset_partitions=[day.isoformat()]), limit=1, ascending=False
    ).records
    loaded_at = latest[0].timestamp if latest else None
    if loaded_at is not None:
        metadata[LAST_UPDATED] = MetadataValue.timestamp(loaded_at)
    passed = loaded_at is not None and loaded_at >= day_end.timestamp()
    if passed:
        metadata[FRESH_UNTIL] = MetadataValue.timestamp((deadline + timedelta(days=1)).timestamp())
        # Written on a pass too: the UI plots the check's numeric metadata over its evaluations, and
        # without a 0 here the plot of a check that failed once and passed since ends on the failure.
        metadata[OVERDUE_SECONDS] = 0.0
        description = f"partition {day} was loaded after the day ended"
    else:
        metadata[OVERDUE_SECONDS] = round(now.timestamp() - deadline.timestamp(), 1)
        description = (
            f"partition {day} was due by {deadline:%Y-%m-%d %H:%M} UTC and "
            + ("has never been loaded" if loaded_at is None else
               f"was last loaded at {datetime.fromtimestamp(loaded_at, timezone.utc):%Y-%m-%d %H:%M} UTC, "
               "before the day ended")
            + ": is the all_daily schedule running, and did its run succeed?"
        )
    return AssetCheckResult(
        check_name=CHECK_NAME, asset_key=asset_key, passed=passed, severity=AssetCheckSeverity.ERROR,
        metadata=metadata, description=description,
    )


def build_daily_partition_freshness_checks(assets: Sequence[AssetsDefinition]) -> AssetChecksDefinition:
    keys = [key for definition in assets for key in definition.keys]

    @multi_asset_check(
        name="daily_partition_freshness_checks",
        specs=[
            AssetCheckSpec(
                CHECK_NAME,
                asset=key,
                description=f"Yesterday's partition was loaded after the day ended, by "
                f"{DAILY_DEADLINE:%H:%M} UTC (the all_daily schedule runs at 01:30 UTC).",
            )
            for key in keys
        ],
        can_subset=True,
    )
    def daily_partition_freshness_checks(context) -> Iterator[AssetCheckResult]:
        # context is untyped: dagster does not resolve string annotations here
        now = datetime.now(timezone.utc)
        first_day = date.fromisoformat(settings.partitions_start())
        for check_key in context.selected_asset_check_keys:
            yield daily_partition_freshness(context.instance, check_key.asset_key, now, first_day)

    return daily_partition_freshness_checks


def build_freshness_checks(source_assets: Sequence[AssetsDefinition]) -> list[AssetChecksDefinition]:
    """One ``freshness_check`` per source table: snapshot or daily partition, as the table is."""
    snapshots = [a for a in source_assets if a.partitions_def is None]
    partitioned = [a for a in source_assets if a.partitions_def is not None]
    # Superseded by FreshnessPolicy in dagster 1.13 but still supported; for snapshot tables the
    # last-update check says exactly what we mean (the module docstring says why not a policy).
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is superseded.*")
        snapshot_checks = build_last_update_freshness_checks(
            assets=snapshots, deadline_cron=SNAPSHOT_DEADLINE_CRON, lower_bound_delta=SNAPSHOT_LOWER_BOUND,
            timezone="UTC",
        )
    return [*snapshot_checks, build_daily_partition_freshness_checks(partitioned)]


def without_freshness_checks(assets: Sequence[AssetsDefinition]) -> AssetSelection:
    """``assets`` with their own checks (those their steps evaluate) but not their freshness checks,
    which the sensor runs (module docstring)."""
    keys = [AssetCheckKey(key, CHECK_NAME) for definition in assets for key in definition.keys]
    return AssetSelection.assets(*assets) - AssetSelection.checks(*keys)


def build_freshness_sensor(checks: Sequence[AssetChecksDefinition]) -> SensorDefinition:
    """Runs a check when it has never run, when a passed one can have become overdue (its
    ``dagster/fresh_until_timestamp`` has passed), or when a failed one's asset was re-loaded.

    Dagster's freshness sensor decides which checks are due; its run requests go to the
    ``freshness_checks`` job, which runs them in the run's own process (no step process)."""
    checks_job = define_asset_job(
        JOB_NAME,
        selection=AssetSelection.checks(*checks),
        executor_def=in_process_executor,
        description="The freshness checks that fell due, run by the freshness sensor in the run's own process.",
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is superseded.*")
        due_checks = build_sensor_for_freshness_checks(freshness_checks=checks, name=SENSOR_NAME)

    @sensor(
        name=SENSOR_NAME,
        job=checks_job,
        minimum_interval_seconds=SENSOR_INTERVAL_S,
        default_status=automation_status()[1],
        description=due_checks.description,
    )
    def freshness_checks_sensor(context: SensorEvaluationContext):
        # The same name as Dagster's sensor: it recognises its own runs by their sensor-name tag.
        return due_checks(context)

    return freshness_checks_sensor
