"""Schedules and the reporting sensor: evaluated as the daemon would, on the project's definitions,
asserting exactly which runs they request and why."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest
from dagster import (
    DagsterInstance,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    Definitions,
    RunRequest,
    SkipReason,
    build_run_status_sensor_context,
    build_schedule_context,
    job,
    op,
)

from fleet_pipeline import settings
from fleet_pipeline.automation import schedules
from fleet_pipeline.instance import ABANDONED_RUNS_SENSOR

TICK = datetime(2026, 11, 20, 1, 30, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def defs() -> Definitions:
    from fleet_pipeline.definitions import defs as project_defs  # seconds: every source and the dbt models

    return project_defs


def _evaluate(defs: Definitions, name: str, when: datetime) -> list[RunRequest]:
    schedule = defs.resolve_schedule_def(name)
    context = build_schedule_context(scheduled_execution_time=when, repository_def=defs.get_repository_def())
    return list(schedule.evaluate_tick(context).run_requests or [])


def test_daily_schedule_loads_yesterday_then_the_late_data_window(defs, monkeypatch):
    monkeypatch.delenv("FLEET_LATE_DATA_DAYS", raising=False)
    schedule = defs.resolve_schedule_def(schedules.DAILY_SCHEDULE)
    assert (schedule.job_name, schedule.cron_schedule) == ("all_daily", "30 1 * * *")
    assert schedule.execution_timezone == "UTC"

    requests = _evaluate(defs, schedules.DAILY_SCHEDULE, TICK)

    assert [(r.partition_key, r.run_key) for r in requests] == [
        ("2026-11-19", "all_daily:2026-11-19:tick-2026-11-20"),
        ("2026-11-18", "all_daily:2026-11-18:tick-2026-11-20"),
        ("2026-11-17", "all_daily:2026-11-17:tick-2026-11-20"),
        ("2026-11-16", "all_daily:2026-11-16:tick-2026-11-20"),
    ]
    assert [r.tags[schedules.REASON_TAG] for r in requests] == [
        "yesterday",
        "late-data re-run, 1 day before yesterday (devices upload up to 3 days late)",
        "late-data re-run, 2 days before yesterday (devices upload up to 3 days late)",
        "late-data re-run, 3 days before yesterday (devices upload up to 3 days late)",
    ]
    assert all(r.tags[schedules.LATE_WINDOW_TAG] == "3" for r in requests)
    assert [r.tags["dagster/partition"] for r in requests] == [r.partition_key for r in requests]
    assert all(r.tags["dagster/schedule_name"] == schedules.DAILY_SCHEDULE for r in requests)


def test_late_data_window_follows_the_setting(defs, monkeypatch):
    monkeypatch.setenv("FLEET_LATE_DATA_DAYS", "1")
    assert [r.partition_key for r in _evaluate(defs, schedules.DAILY_SCHEDULE, TICK)] == ["2026-11-19", "2026-11-18"]
    monkeypatch.setenv("FLEET_LATE_DATA_DAYS", "0")
    assert [r.partition_key for r in _evaluate(defs, schedules.DAILY_SCHEDULE, TICK)] == ["2026-11-19"]


@pytest.mark.parametrize("raw", ["-1", "three", "91"])
def test_a_wrong_late_data_window_is_a_configuration_error(raw):
    with pytest.raises(settings.ConfigError, match="FLEET_LATE_DATA_DAYS"):
        settings.late_data_days({"FLEET_LATE_DATA_DAYS": raw})


def test_each_day_reruns_a_partition_under_a_new_run_key_and_never_before_the_first_partition():
    today = schedules.daily_run_requests(TICK, 3, date(2026, 1, 1))
    tomorrow = schedules.daily_run_requests(TICK.replace(day=21), 3, date(2026, 1, 1))
    assert len({r.run_key for r in today + tomorrow}) == 8
    shared = {r.partition_key for r in today} & {r.partition_key for r in tomorrow}
    assert shared == {"2026-11-19", "2026-11-18", "2026-11-17"}

    first_days = schedules.daily_run_requests(datetime(2026, 1, 3, 1, 30, tzinfo=timezone.utc), 3, date(2026, 1, 1))
    assert [r.partition_key for r in first_days] == ["2026-01-02", "2026-01-01"]


def test_snapshot_schedule_takes_the_end_of_day_snapshot(defs):
    schedule = defs.resolve_schedule_def(schedules.SNAPSHOT_SCHEDULE)
    assert (schedule.job_name, schedule.cron_schedule) == ("all_snapshots", "0 23 * * *")
    assert schedule.execution_timezone == "UTC"

    [request] = _evaluate(defs, schedules.SNAPSHOT_SCHEDULE, datetime(2026, 11, 20, 23, 0, tzinfo=timezone.utc))

    assert request.partition_key is None
    assert request.run_key == "all_snapshots:2026-11-20"
    assert request.tags[schedules.REASON_TAG] == "end-of-day snapshot of 2026-11-20 (UTC)"


def test_automation_is_stopped_unless_switched_on(defs, monkeypatch):
    for schedule in defs.schedules:
        assert schedule.default_status == DefaultScheduleStatus.STOPPED, schedule.name
    for sensor in defs.sensors:
        if sensor.name == ABANDONED_RUNS_SENSOR:
            continue  # calls no vendor, launches nothing: always on (test_abandoned_runs)
        assert sensor.default_status == DefaultSensorStatus.STOPPED, sensor.name

    monkeypatch.setenv("FLEET_SCHEDULES_RUNNING", "1")
    all_daily = defs.resolve_job_def("all_daily")
    assert schedules.build_daily_schedule(all_daily).default_status == DefaultScheduleStatus.RUNNING
    monkeypatch.setenv("FLEET_SCHEDULES_RUNNING", "maybe")
    with pytest.raises(settings.ConfigError, match="FLEET_SCHEDULES_RUNNING"):
        schedules.automation_status()


@op
def _loaded() -> None:
    pass


@job(name="all_daily")
def _all_daily_stand_in():
    """A run of a job named all_daily, as the daemon hands it to the sensor (the real job would
    call every vendor)."""
    _loaded()


def _sensor_result(defs: Definitions, tags: dict[str, str]) -> tuple[RunRequest | SkipReason, str]:
    instance = DagsterInstance.ephemeral()
    result = _all_daily_stand_in.execute_in_process(instance=instance, tags=tags)
    context = build_run_status_sensor_context(
        sensor_name=schedules.REPORTING_SENSOR,
        dagster_event=result.get_run_success_event(),
        dagster_instance=instance,
        dagster_run=result.dagster_run,
    )
    sensor = defs.resolve_sensor_def(schedules.REPORTING_SENSOR)
    return sensor(context), result.run_id


def test_a_successful_daily_load_requests_the_models_for_its_partition(defs):
    sensor = defs.resolve_sensor_def(schedules.REPORTING_SENSOR)
    assert sensor.job_name == "reporting"

    request, upstream_run = _sensor_result(defs, {"dagster/partition": "2026-11-19"})

    assert isinstance(request, RunRequest)
    assert request.partition_key == "2026-11-19"
    assert request.run_key == f"reporting-after-{upstream_run}"
    assert request.tags == {
        schedules.UPSTREAM_RUN_TAG: upstream_run,
        schedules.UPSTREAM_JOB_TAG: "all_daily",
        schedules.REASON_TAG: f"models after all_daily run {upstream_run} loaded 2026-11-19",
    }
    # The reporting job takes the daily partitions of its incremental models, so the key resolves.
    assert defs.resolve_job_def("reporting").partitions_def.has_partition_key("2026-11-19")


def test_a_ranged_load_requests_the_models_for_the_same_range(defs):
    request, _ = _sensor_result(defs, {"dagster/asset_partition_range_start": "2026-11-10",
                                       "dagster/asset_partition_range_end": "2026-11-19"})
    assert isinstance(request, RunRequest) and request.partition_key is None
    assert request.tags["dagster/asset_partition_range_start"] == "2026-11-10"
    assert request.tags["dagster/asset_partition_range_end"] == "2026-11-19"


def test_backfill_runs_and_unpartitioned_runs_request_nothing(defs):
    skipped, _ = _sensor_result(defs, {"dagster/partition": "2026-11-19", "dagster/backfill": "abcdefgh"})
    assert isinstance(skipped, SkipReason) and "backfill abcdefgh" in skipped.skip_message
    unpartitioned, _ = _sensor_result(defs, {})
    assert isinstance(unpartitioned, SkipReason) and "no partition" in unpartitioned.skip_message
