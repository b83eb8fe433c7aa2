"""Row-count checks: a day with far fewer rows than its trailing week fails (WARN), and so does a
partition with no rows at all while the warehouse knows devices of the vendor.

The real cases: the Tracksolid token stops reaching most of the fleet (the target account becomes
one sub-account), so a re-run of a day returns rows that are all valid, and far too few; AOVX's OTA
report answered nothing for a whole week of a fleet with AOVX devices, and every check was green.
"""

from __future__ import annotations

import statistics
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from dagster import AssetCheckSeverity, DagsterInstance, materialize

from fleet_pipeline.automation.anomaly import (
    EMPTY_PARTITION_CHECK,
    MIN_BASELINE_ROWS,
    MIN_PREVIOUS_PARTITIONS,
    MIN_RATIO,
    ROW_COUNT_CHECK,
    judge_day,
)
from fleet_pipeline.automation.backfill import RANGE_END_TAG, RANGE_START_TAG
from fleet_pipeline.automation.partitions import day_bounds
from fleet_pipeline.ingest.warehouse import WarehouseResource
from fleet_pipeline.sandbox import aovx as sandbox_aovx
from fleet_pipeline.sandbox import navixy as sandbox_navixy
from fleet_pipeline.sandbox import tracksolid as sandbox_tracksolid
from fleet_pipeline.sandbox.world import World
from fleet_pipeline.sources.aovx import assets as aovx_assets
from fleet_pipeline.sources.aovx.resources import AovxResource
from fleet_pipeline.sources.navixy import assets as navixy_assets
from fleet_pipeline.sources.navixy.resources import NavixyResource
from fleet_pipeline.sources.tracksolid import assets
from fleet_pipeline.sources.tracksolid.resources import TracksolidResource

TODAY = datetime.now(timezone.utc).date()
D = date(2026, 11, 20)
SUB_ACCOUNT = "fleetco-vaulx"  # with its own sub-account: 4 of the 22 Tracksolid devices


def _week(counts: list[int], end: date = D) -> dict[date, int]:
    """Row counts of the days before ``end``, the last one first."""
    return {end - timedelta(days=n): c for n, c in enumerate(counts, start=1)}


def test_a_day_far_below_its_trailing_week_is_anomalous():
    verdict = judge_day(D, 30, _week([100, 90, 110, 100, 40, 105, 95]), today=D + timedelta(days=1))
    assert verdict.anomalous and verdict.trailing_median == 100 and verdict.ratio == 0.3
    assert not judge_day(D, 55, _week([100, 90, 110, 100, 40, 105, 95]), today=D + timedelta(days=1)).anomalous


@pytest.mark.parametrize("counts, today, why", [
    ([100] * 7, D, "not over"),
    ([100] * (MIN_PREVIOUS_PARTITIONS - 1), D + timedelta(days=1), "previous partitions"),
    ([0, 100, 0, 100, 100, 0, 100], D + timedelta(days=1), "previous partitions"),  # empty days do not count
    ([MIN_BASELINE_ROWS - 1] * 7, D + timedelta(days=1), "too small"),
])
def test_no_verdict_without_a_meaningful_baseline(counts, today, why):
    verdict = judge_day(D, 0, _week(counts), today=today)
    assert not verdict.anomalous and verdict.ratio is None
    assert verdict.note.startswith("no verdict") and why in verdict.note


def _tracksolid(server, cache_dir: Path, **overrides) -> TracksolidResource:
    return TracksolidResource(
        base_url=server.base_url + sandbox_tracksolid.ROUTE_PATH, app_key=sandbox_tracksolid.APP_KEY,
        app_secret=sandbox_tracksolid.APP_SECRET, user_id=sandbox_tracksolid.USER_ID,
        user_password=sandbox_tracksolid.USER_PASSWORD, cache_dir=str(cache_dir), retry_attempts=3,
        backoff_base_s=0.05, **overrides)


def _check(result):
    [check] = [c for c in result.get_asset_check_evaluations() if c.check_name == ROW_COUNT_CHECK]
    return check


def _under(world: World, account: str) -> set[str]:
    accounts = [account]
    for parent in accounts:
        accounts.extend(child.account_id for child in world.child_accounts(parent))
    return {device.imei for a in accounts for device in world.devices_of_account(a, at=world.now())}


def test_the_check_passes_on_normal_days_and_fails_when_most_of_the_fleet_vanishes(tmp_path):
    world = World(seed=42, n_devices=40)
    everyone = {d.imei for d in world.devices_on("tracksolid", at=world.now())}
    few = _under(world, SUB_ACCOUNT)
    assert 0 < len(few) < len(everyone) / 3

    def trips(day: date, imeis: set[str]) -> int:
        return sum(len(world.day(imei, day).trips) for imei in imeis)

    # The most recent complete day whose judged days are normal for the whole fleet (weekends
    # included) and far below normal for the sub-account alone: known from the world's truth.
    counts = {TODAY - timedelta(days=n): trips(TODAY - timedelta(days=n), everyone) for n in range(5, 21)}

    def judged_ok(day: date) -> bool:
        judged = (day - timedelta(days=2), day - timedelta(days=1), day)
        return all(judge_day(d, counts[d], counts, TODAY).ratio >= MIN_RATIO for d in judged)

    day = next(d for d in sorted(counts, reverse=True) if d - timedelta(days=9) in counts and judged_ok(d)
               and judge_day(d, trips(d, few), counts, TODAY).anomalous)
    days = [day - timedelta(days=n) for n in range(7, -1, -1)]
    database = tmp_path / "warehouse.duckdb"

    with sandbox_tracksolid.make_server(world) as server:
        resources = {"tracksolid": _tracksolid(server, tmp_path / "cache"),
                     "duckdb": WarehouseResource(database=str(database))}
        normal = materialize([assets.trips], resources=resources, instance=DagsterInstance.ephemeral(),
                             tags={RANGE_START_TAG: days[0].isoformat(), RANGE_END_TAG: days[-1].isoformat()})
        resources["tracksolid"] = _tracksolid(server, tmp_path / "cache", target_account=SUB_ACCOUNT)
        shrunk = materialize([assets.trips], partition_key=day.isoformat(), resources=resources,
                             instance=DagsterInstance.ephemeral())

    check = _check(normal)
    assert check.passed, check.description
    verdicts = {v["partition"]: v for v in check.metadata["days"].value}
    assert verdicts[days[0].isoformat()]["note"].startswith("no verdict")  # no trailing week yet
    assert check.metadata["row_count"].value == counts[day]

    check = _check(shrunk)
    median = statistics.median(counts[day - timedelta(days=n)] for n in range(1, 8))
    assert not check.passed and check.severity == AssetCheckSeverity.WARN
    assert check.metadata["row_count"].value == trips(day, few)
    assert check.metadata["trailing_median"].value == median
    assert check.metadata["ratio"].value == pytest.approx(trips(day, few) / median, abs=1e-4)
    assert check.metadata["ratio"].value < MIN_RATIO
    assert "below" in check.description


def _empty_check(result):
    [check] = [c for c in result.get_asset_check_evaluations() if c.check_name == EMPTY_PARTITION_CHECK]
    return check


def test_an_empty_partition_of_a_fleet_with_devices_warns_with_the_reason(tmp_path):
    # AOVX answers nothing on days between its OTA campaigns: the partitions are valid and empty.
    # Once the warehouse's Navixy tracker list shows AOVX devices, that is a WARN.
    world = World(seed=42, n_devices=40)
    now = datetime.now(timezone.utc).replace(tzinfo=None)

    def attempts(day: date) -> int:
        return len(world.ota_attempts_updated("aovx", *day_bounds(day), now))

    end = next(d for d in (TODAY - timedelta(days=n) for n in range(30, 300))
               if not any(attempts(d - timedelta(days=k)) for k in range(3)))
    quiet = [end - timedelta(days=n) for n in range(2, -1, -1)]
    busy = next(d for d in (TODAY - timedelta(days=n) for n in range(1, 30)) if attempts(d))
    aovx_devices = [d for d in world.devices if d.firmware_platform == "aovx" and d.activation_date <= TODAY]
    assert aovx_devices
    database = str(tmp_path / "warehouse.duckdb")

    def ota_reports(server, days: list[date]):
        terminal_ids = sorted(world.aovx_terminal_id(d.imei) for d in aovx_devices)
        resources = {"aovx": AovxResource(base_url=server.base_url + sandbox_aovx.API_PREFIX,
                                          token=sandbox_aovx.TOKEN, terminal_ids=terminal_ids,
                                          cache_dir=str(tmp_path / "cache")),
                     "duckdb": WarehouseResource(database=database)}
        result = materialize([aovx_assets.ota_reports], resources=resources, instance=DagsterInstance.ephemeral(),
                             tags={RANGE_START_TAG: days[0].isoformat(), RANGE_END_TAG: days[-1].isoformat()})
        assert result.success
        return _empty_check(result)

    with sandbox_aovx.make_server(world) as aovx, sandbox_navixy.make_server(world) as navixy:
        unknown_fleet = ota_reports(aovx, quiet)
        navixy_resources = {
            "navixy": NavixyResource(base_url=navixy.base_url + sandbox_navixy.API_PREFIX,
                                     api_key=sandbox_navixy.API_KEY, cache_dir=str(tmp_path / "cache"),
                                     retry_attempts=3, backoff_base_s=0.05),
            "duckdb": WarehouseResource(database=database)}
        assert materialize([navixy_assets.trackers], resources=navixy_resources,
                           instance=DagsterInstance.ephemeral()).success
        empty = ota_reports(aovx, quiet)
        with_rows = ota_reports(aovx, [busy])

    # no tracker list yet: nothing says the vendor should have answered
    assert unknown_fleet.passed and unknown_fleet.description.startswith("no verdict")
    assert not empty.passed and empty.severity == AssetCheckSeverity.WARN
    assert empty.metadata["empty_partitions"].value == [d.isoformat() for d in quiet]
    assert empty.metadata["fleet_devices"].value == len(aovx_devices)
    assert "raw_aovx.ota_reports" in empty.description and f"{len(aovx_devices)} AOVX devices" in empty.description
    assert with_rows.passed and with_rows.metadata["empty_partitions"].value == []
