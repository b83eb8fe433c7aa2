"""Freshness checks: one per source table, yesterday's partition must be loaded after the day ended,
and the sensor runs the checks when they fall due — evaluated in a real (ephemeral) instance."""

from __future__ import annotations

import warnings
from datetime import date, datetime, timedelta, timezone

import pytest
from dagster import (
    AssetCheckKey,
    AssetKey,
    AssetMaterialization,
    AssetSelection,
    DagsterInstance,
    Definitions,
    asset,
    build_sensor_context,
    materialize,
)

from fleet_pipeline.automation import freshness
from fleet_pipeline.automation.partitions import daily_partitions

FIRST_DAY = date(2026, 1, 1)
TRIPS = AssetKey(["raw_testvendor", "trips"])


@asset(key=["raw_testvendor", "devices"])
def devices_stand_in() -> None:
    """A snapshot table (the real ones call a vendor)."""


@asset(key=["raw_testvendor", "trips"], partitions_def=daily_partitions)
def trips_stand_in() -> None:
    """A daily partitioned table."""


def test_the_expected_partition_changes_at_the_deadline():
    assert freshness.expected_partition(datetime(2026, 11, 20, 5, 59, tzinfo=timezone.utc)) == date(2026, 11, 18)
    assert freshness.expected_partition(datetime(2026, 11, 20, 6, 0, tzinfo=timezone.utc)) == date(2026, 11, 19)


def _loaded(instance: DagsterInstance, partition: str) -> None:
    instance.report_runless_asset_event(AssetMaterialization(asset_key=TRIPS, partition=partition))


def test_yesterday_loaded_after_the_day_ended_is_fresh():
    instance = DagsterInstance.ephemeral()
    now = datetime.now(timezone.utc)
    due = freshness.expected_partition(now)
    _loaded(instance, (due - timedelta(days=1)).isoformat())  # an older day does not count

    missing = freshness.daily_partition_freshness(instance, TRIPS, now, FIRST_DAY)
    assert not missing.passed
    assert missing.description.startswith(f"partition {due} was due by ") and "never been loaded" in missing.description

    _loaded(instance, due.isoformat())
    fresh = freshness.daily_partition_freshness(instance, TRIPS, now, FIRST_DAY)
    assert fresh.passed, fresh.description
    assert fresh.metadata["expected_partition"].value == due.isoformat()
    # The sensor re-runs a passed check only after this: the next deadline.
    next_deadline = freshness.last_deadline(now) + timedelta(days=1)
    assert fresh.metadata[freshness.FRESH_UNTIL].value == next_deadline.timestamp()
    # The UI plots overdue_seconds over the check's evaluations: a pass is 0, not left out.
    assert fresh.metadata[freshness.OVERDUE_SECONDS].value == 0.0


def test_a_partition_loaded_before_its_day_ended_is_not_fresh():
    instance = DagsterInstance.ephemeral()
    today = datetime.now(timezone.utc).date()
    _loaded(instance, today.isoformat())  # today's partition, still growing
    tomorrow_after_deadline = datetime.combine(today + timedelta(days=1), freshness.DAILY_DEADLINE, tzinfo=timezone.utc)

    result = freshness.daily_partition_freshness(instance, TRIPS, tomorrow_after_deadline, FIRST_DAY)

    assert not result.passed
    assert "before the day ended" in result.description
    assert result.metadata[freshness.OVERDUE_SECONDS].value == 0.0


def test_nothing_is_due_before_the_first_partition():
    instance = DagsterInstance.ephemeral()
    result = freshness.daily_partition_freshness(
        instance, TRIPS, datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc), FIRST_DAY
    )
    assert result.passed


def test_the_sensor_runs_checks_that_fell_due_and_they_pass_after_a_load():
    checks = freshness.build_freshness_checks([devices_stand_in, trips_stand_in])
    sensor = freshness.build_freshness_sensor(checks)
    defs = Definitions(assets=[devices_stand_in, trips_stand_in], asset_checks=checks, sensors=[sensor])
    instance = DagsterInstance.ephemeral()
    due = freshness.expected_partition(datetime.now(timezone.utc)).isoformat()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert materialize([devices_stand_in], instance=instance).success
        assert materialize([trips_stand_in], instance=instance, partition_key=due).success

    def tick():
        return sensor.evaluate_tick(build_sensor_context(instance=instance, repository_def=defs.get_repository_def()))

    [request] = tick().run_requests
    expected = {AssetCheckKey(devices_stand_in.key, "freshness_check"), AssetCheckKey(TRIPS, "freshness_check")}
    assert set(request.asset_check_keys) == expected

    evaluated = materialize([devices_stand_in, trips_stand_in, *checks], instance=instance,
                            selection=AssetSelection.checks(*request.asset_check_keys))
    results = {e.asset_key: e for e in evaluated.get_asset_check_evaluations()}
    assert set(results) == {devices_stand_in.key, TRIPS}
    assert all(e.passed for e in results.values()), {k: e.description for k, e in results.items()}

    # Both checks now know until when they cannot fail: the next tick requests nothing.
    again = tick()
    assert not again.run_requests and again.skip_message


@pytest.fixture(scope="module")
def project_defs() -> Definitions:
    from fleet_pipeline.definitions import defs  # seconds: every source and the dbt models

    return defs


def test_every_source_table_has_one_freshness_check(project_defs):
    from fleet_pipeline.definitions import source_assets

    graph = project_defs.resolve_asset_graph()
    sources = {key for definition in source_assets for key in definition.keys}
    checked = {key.asset_key for key in graph.asset_check_keys if key.name == freshness.CHECK_NAME}
    assert sources and checked == sources
    sensor = project_defs.resolve_sensor_def(freshness.SENSOR_NAME)
    assert sensor.minimum_interval_seconds == freshness.SENSOR_INTERVAL_S
