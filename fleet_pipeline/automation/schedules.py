"""When the pipeline runs by itself: the daily load with its late-data window, the end-of-day
snapshot, and the reporting models after every successful daily load.

Every run these request carries ``fleet/*`` tags saying why it ran, so a person reading the run list
in the Dagster UI never has to guess. Times are UTC, as the partitions are. Everything here starts
stopped unless ``FLEET_SCHEDULES_RUNNING=1`` (see ``automation_status``): ``make ui`` on a laptop
must not start loading vendor data on its own.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

from dagster import (
    DagsterRun,
    DagsterRunStatus,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    RunRequest,
    RunStatusSensorContext,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SensorDefinition,
    SkipReason,
    run_status_sensor,
    schedule,
)

from fleet_pipeline import settings

if TYPE_CHECKING:  # what define_asset_job returns; dagster does not export the name
    from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

# 01:30 UTC: yesterday has ended and the points a device held back through a coverage gap before
# midnight (20-90 min in the sandbox) have arrived, while the run stays clear of the midnight peak
# of the vendors' own daily jobs. Uploads 1-3 days late are caught by the trailing window, not by
# waiting longer.
DAILY_CRON = "30 1 * * *"
# 23:00 UTC: the snapshot is stamped with the UTC day it is taken on (snapshot_date), so it must be
# taken before midnight to describe that day; late in the day it shows the day's end state (the
# firmware a device ended the day with, the stock left), and the hour before midnight leaves room
# for a queued or retried run to finish before the date rolls over.
SNAPSHOT_CRON = "0 23 * * *"
TIMEZONE = "UTC"

DAILY_SCHEDULE = "all_daily_schedule"
SNAPSHOT_SCHEDULE = "all_snapshots_schedule"
REPORTING_SENSOR = "reporting_after_all_daily"

REASON_TAG = "fleet/reason"
DAYS_BEFORE_YESTERDAY_TAG = "fleet/days_before_yesterday"
LATE_WINDOW_TAG = "fleet/late_data_days"
UPSTREAM_RUN_TAG = "fleet/upstream_run_id"
UPSTREAM_JOB_TAG = "fleet/upstream_job"
PARTITION_TAG = "dagster/partition"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
BACKFILL_TAG = "dagster/backfill"


def automation_status() -> tuple[DefaultScheduleStatus, DefaultSensorStatus]:
    """Stopped unless FLEET_SCHEDULES_RUNNING=1: in production the switch is the environment; on a
    laptop each schedule is switched on in the UI (Automation) when wanted."""
    if settings.schedules_running():
        return DefaultScheduleStatus.RUNNING, DefaultSensorStatus.RUNNING
    return DefaultScheduleStatus.STOPPED, DefaultSensorStatus.STOPPED


def daily_run_requests(tick: datetime, late_data_days: int, first_day: date) -> list[RunRequest]:
    """Yesterday first (the freshest data matters most), then each day of the late-data window.

    A run key names the partition and the tick's day, so each day's tick launches each partition
    once even when the scheduler evaluates the tick again, and tomorrow's re-run of the same
    partition is a new run.
    """
    yesterday = tick.date() - timedelta(days=1)
    requests = []
    for back in range(late_data_days + 1):
        day = yesterday - timedelta(days=back)
        if day < first_day:
            break
        if back == 0:
            reason = "yesterday"
        else:
            reason = (f"late-data re-run, {back} day{'s' if back > 1 else ''} before yesterday "
                      f"(devices upload up to {late_data_days} days late)")
        requests.append(
            RunRequest(
                run_key=f"all_daily:{day.isoformat()}:tick-{tick.date().isoformat()}",
                partition_key=day.isoformat(),
                tags={
                    REASON_TAG: reason,
                    DAYS_BEFORE_YESTERDAY_TAG: str(back),
                    LATE_WINDOW_TAG: str(late_data_days),
                },
            )
        )
    return requests


def build_daily_schedule(all_daily_job: UnresolvedAssetJobDefinition) -> ScheduleDefinition:
    @schedule(
        name=DAILY_SCHEDULE,
        job=all_daily_job,
        cron_schedule=DAILY_CRON,
        execution_timezone=TIMEZONE,
        default_status=automation_status()[0],
        description="Every day at 01:30 UTC: yesterday's partition of every source, then the days "
        "of the late-data window before it (FLEET_LATE_DATA_DAYS, default 3) so late uploads are "
        "loaded; each run's rows_added metadata shows what a re-run found.",
    )
    def all_daily_schedule(context: ScheduleEvaluationContext) -> list[RunRequest]:
        # Read at every tick, so a changed window applies from the next tick of a reloaded location.
        return daily_run_requests(
            context.scheduled_execution_time,
            settings.late_data_days(),
            date.fromisoformat(settings.partitions_start()),
        )

    return all_daily_schedule


def build_snapshot_schedule(all_snapshots_job: UnresolvedAssetJobDefinition) -> ScheduleDefinition:
    @schedule(
        name=SNAPSHOT_SCHEDULE,
        job=all_snapshots_job,
        cron_schedule=SNAPSHOT_CRON,
        execution_timezone=TIMEZONE,
        default_status=automation_status()[0],
        description="Every day at 23:00 UTC: the day's snapshot of every source's fleet state "
        "(devices, trackers, positions, states, firmware, stock); one snapshot is kept per UTC day.",
    )
    def all_snapshots_schedule(context: ScheduleEvaluationContext) -> RunRequest:
        day = context.scheduled_execution_time.date().isoformat()
        return RunRequest(
            run_key=f"all_snapshots:{day}",
            tags={REASON_TAG: f"end-of-day snapshot of {day} (UTC)"},
        )

    return all_snapshots_schedule


def reporting_request_after(run: DagsterRun) -> RunRequest | SkipReason:
    """The reporting run for the partition (or partition range) a successful source run loaded."""
    if BACKFILL_TAG in run.tags:
        # A backfill selects the models itself (one ranged dbt run); one reporting run per backfilled
        # day on top of it would rebuild the same models many times over.
        return SkipReason(f"run {run.run_id} belongs to backfill {run.tags[BACKFILL_TAG]}, "
                          "which builds the models itself")
    tags = {
        UPSTREAM_RUN_TAG: run.run_id,
        UPSTREAM_JOB_TAG: run.job_name,
    }
    if PARTITION_TAG in run.tags:
        partition = run.tags[PARTITION_TAG]
        tags[REASON_TAG] = f"models after {run.job_name} run {run.run_id} loaded {partition}"
        return RunRequest(run_key=f"reporting-after-{run.run_id}", partition_key=partition, tags=tags)
    if RANGE_START_TAG in run.tags and RANGE_END_TAG in run.tags:
        first, last = run.tags[RANGE_START_TAG], run.tags[RANGE_END_TAG]
        tags.update({
            REASON_TAG: f"models after {run.job_name} run {run.run_id} loaded {first}..{last}",
            RANGE_START_TAG: first,
            RANGE_END_TAG: last,
        })
        return RunRequest(run_key=f"reporting-after-{run.run_id}", tags=tags)
    return SkipReason(f"run {run.run_id} of {run.job_name} has no partition: nothing to report on")


def build_reporting_sensor(
    all_daily_job: UnresolvedAssetJobDefinition, reporting_job: UnresolvedAssetJobDefinition,
    *other_loads: UnresolvedAssetJobDefinition,
) -> SensorDefinition:
    """An explicit run-status sensor rather than declarative automation: the reporting job mixes
    partitioned and unpartitioned dbt models with the serving copy and the report, which one
    request per loaded partition keeps together, and the upstream run id in its tags links each
    reporting run to the load that caused it. ``other_loads``: further partitioned load jobs (the
    Tracksolid push load) whose successful runs are followed the same way."""

    @run_status_sensor(
        name=REPORTING_SENSOR,
        run_status=DagsterRunStatus.SUCCESS,
        monitored_jobs=[all_daily_job, *other_loads],
        request_job=reporting_job,
        default_status=automation_status()[1],
        description="When an all_daily run (or a push load) succeeds (scheduled or launched by hand, not "
        "part of a backfill), runs the reporting job for the same partition: dbt models, serving copy, report.",
    )
    def reporting_after_all_daily(context: RunStatusSensorContext) -> RunRequest | SkipReason:
        return reporting_request_after(context.dagster_run)

    return reporting_after_all_daily
