"""Tracksolid assets end to end: sandbox over loopback HTTP -> client -> pandera -> DuckDB file.

The sandbox here runs on the real clock (the client signs with real time) and the partitions are
days that ended long enough ago for every late upload to have arrived, so the warehouse must match
the world's ground truth exactly.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from dagster import DagsterInstance, materialize

from fleet_pipeline.ingest.warehouse import WarehouseResource
from fleet_pipeline.sandbox import tracksolid as sandbox_tracksolid
from fleet_pipeline.sandbox.world import World
from fleet_pipeline.sources.tracksolid import assets
from fleet_pipeline.sources.tracksolid.resources import TracksolidResource
from fleet_pipeline_tests.run_results import materialization_metadata as _metadata
from fleet_pipeline_tests.run_results import query as _query

TODAY = datetime.now(timezone.utc).date()
# Late uploads arrive up to 3 days after the fix: a day 5+ days back is complete.
DAY_A, DAY_B = TODAY - timedelta(days=6), TODAY - timedelta(days=5)
EVENT_ASSETS = [assets.trips, assets.track_points, assets.parking, assets.alarms]
SNAPSHOT_ASSETS = [assets.devices, assets.positions]


@pytest.fixture(scope="module")
def live_world() -> World:
    return World(seed=42, n_devices=40)


@pytest.fixture
def server(live_world: World) -> Iterator:
    with sandbox_tracksolid.make_server(live_world) as running:
        yield running


def _tracksolid(server, cache_dir: Path, **overrides) -> TracksolidResource:
    return TracksolidResource(
        base_url=server.base_url + sandbox_tracksolid.ROUTE_PATH,
        app_key=sandbox_tracksolid.APP_KEY,
        app_secret=sandbox_tracksolid.APP_SECRET,
        user_id=sandbox_tracksolid.USER_ID,
        user_password=sandbox_tracksolid.USER_PASSWORD,
        cache_dir=str(cache_dir),
        # Fail fast when a test makes the vendor misbehave for good.
        retry_attempts=3, backoff_base_s=0.05, throttle_backoff_base_s=0.05,
        **overrides,
    )


@pytest.fixture
def resources(server, tmp_path: Path) -> dict:
    return {
        "tracksolid": _tracksolid(server, tmp_path / "cache"),
        "duckdb": WarehouseResource(database=str(tmp_path / "warehouse.duckdb")),
    }


def _run(resources: dict, day: date | None = None, selection=None, instance=None):
    chosen = selection or (EVENT_ASSETS if day else SNAPSHOT_ASSETS)
    return materialize(
        chosen,
        partition_key=day.isoformat() if day else None,
        resources=resources,
        instance=instance or DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def _tracksolid_imeis(world: World) -> list[str]:
    """The IMEIs the account holds at the World's clock (a later install is not there yet)."""
    return [d.imei for d in world.devices_on("tracksolid", at=world.now())]


def test_partitions_match_the_world_and_reruns_change_nothing(resources, live_world):
    assert _run(resources, DAY_A).success
    assert _run(resources, DAY_B).success
    before = _query(resources, "select count(*) from raw_tracksolid.track_points")
    rerun = _run(resources, DAY_A)
    assert rerun.success
    assert _metadata(rerun, "track_points")["rows_added"] == 0
    assert _query(resources, "select count(*) from raw_tracksolid.track_points") == before
    duplicates = _query(resources, """
        select count(*) from (select imei, gps_time from raw_tracksolid.track_points
                              group by all having count(*) > 1)""")
    assert duplicates == [(0,)]

    imeis = _tracksolid_imeis(live_world)
    for day in (DAY_A, DAY_B):
        truth = {imei: live_world.day(imei, day) for imei in imeis}
        trips = dict(((imei, (n, km)) for imei, n, km in _query(resources, """
            select imei, count(*), sum(distance_km) from raw_tracksolid.trips
            where partition_date = ? group by imei""", [day])))
        for imei, device_day in truth.items():
            n, km = trips.get(imei, (0, 0.0))
            assert n == len(device_day.trips), f"{imei} {day}: {n} trips loaded, truth {len(device_day.trips)}"
            assert km == pytest.approx(device_day.true_km, rel=0.02, abs=0.01), f"{imei} {day} km"
        points = dict(_query(resources, """
            select imei, count(*) from raw_tracksolid.track_points where partition_date = ? group by imei""", [day]))
        for imei, device_day in truth.items():
            assert points.get(imei, 0) == device_day.points.height, f"{imei} {day} points"
        alarms = _query(resources, "select count(*) from raw_tracksolid.alarms where partition_date = ?", [day])
        assert alarms == [(sum(len(d.alarms) for d in truth.values()),)]
        parkings = _query(resources, "select count(*) from raw_tracksolid.parking where partition_date = ?", [day])
        expected = sum(1 for d in truth.values() for stop in d.stops if stop.kind == "parking")
        assert parkings == [(expected,)]
    assert _query(resources, "select count(*) from raw_tracksolid.rejects") == [(0,)]


def test_snapshots_cover_every_sub_account(resources, live_world):
    result = _run(resources)
    assert result.success
    loaded = {row[0] for row in _query(resources, "select imei from raw_tracksolid.devices")}
    assert loaded == set(_tracksolid_imeis(live_world))
    accounts = {row[0] for row in _query(resources, "select distinct account_id from raw_tracksolid.devices")}
    assert len(accounts) > 1, "devices on sub-accounts were not found"
    types = dict(_query(resources, """select column_name, data_type from information_schema.columns
                                      where table_schema = 'raw_tracksolid' and table_name = 'devices'"""))
    assert types["imei"] == "VARCHAR" and types["snapshot_date"] == "DATE"
    assert _query(resources, "select min(length(imei)), max(length(imei)) from raw_tracksolid.devices") == [(15, 15)]
    positions = _query(resources, "select count(*) from raw_tracksolid.positions")[0][0]
    rejected = _query(resources, "select count(*) from raw_tracksolid.rejects where table_name = 'positions'")[0][0]
    assert positions > 0 and positions + rejected <= len(loaded)


def test_a_failed_run_leaves_the_previous_partition(resources, server):
    assert _run(resources, DAY_A, [assets.trips]).success
    before = _query(resources, "select * from raw_tracksolid.trips order by all")
    server.knobs.set(fail_next_5xx=10_000)  # the vendor is down for the whole run
    failed = _run(resources, DAY_A, [assets.trips])
    assert not failed.success
    assert _query(resources, "select * from raw_tracksolid.trips order by all") == before


def test_wrong_mileage_unit_is_caught_by_the_plausibility_check(resources, server, tmp_path):
    server.knobs.set(mileage_unit="m")  # the vendor starts sending metres
    result = _run(resources, DAY_A, [assets.trips])
    assert result.success
    [check] = [c for c in result.get_asset_check_evaluations() if c.check_name == assets.PLAUSIBILITY_CHECK]
    assert not check.passed
    assert "TRACKSOLID_MILEAGE_UNIT=m" in check.metadata["diagnosis"].value

    resources["tracksolid"] = _tracksolid(server, tmp_path / "cache", mileage_unit="m")
    fixed = _run(resources, DAY_A, [assets.trips])
    [check] = [c for c in fixed.get_asset_check_evaluations() if c.check_name == assets.PLAUSIBILITY_CHECK]
    assert check.passed


def test_no_secret_in_any_log_line_or_error(resources, server, tmp_path, caplog):
    instance = DagsterInstance.ephemeral()
    caplog.set_level("DEBUG")
    assert _run(resources, DAY_A, [assets.alarms], instance=instance).success
    server.knobs.set(force_1006_next=10_000)  # and a run that fails on the vendor's rate limit
    assert not _run(resources, DAY_A, [assets.alarms], instance=instance).success

    token_files = list((tmp_path / "cache").glob("tracksolid-token-*.json"))
    assert token_files, "the token cache was not written"
    tokens = [v for f in token_files for k, v in json.loads(f.read_text()).items()
              if "token" in k.lower() and isinstance(v, str) and v]
    secrets = [sandbox_tracksolid.APP_SECRET, sandbox_tracksolid.USER_PASSWORD,
               hashlib.md5(sandbox_tracksolid.USER_PASSWORD.encode()).hexdigest(), *tokens]
    texts = [record.getMessage() for record in caplog.records]
    for run in instance.get_runs():
        for entry in instance.all_logs(run.run_id):
            texts.append(entry.user_message or "")
            if entry.dagster_event and entry.dagster_event.is_step_failure:
                error = entry.dagster_event.step_failure_data.error
                texts.append(error.to_string() if error else "")
    assert any("tracksolid" in t.lower() and "1006" in t for t in texts), "the failure was not reported"
    for secret in secrets:
        leaks = [t for t in texts if secret in t]
        assert not leaks, f"a secret leaked into {len(leaks)} log lines: {leaks[0][:200]}"


def test_embedded_sandbox_runs_without_credentials(tmp_path):
    resources = {
        "tracksolid": TracksolidResource(cache_dir=str(tmp_path / "cache"), sandbox_devices=12),
        "duckdb": WarehouseResource(database=str(tmp_path / "sandbox.duckdb")),
    }
    assert _run(resources, DAY_A, [assets.trips]).success
    world = World(seed=42, n_devices=12)
    expected = sum(len(world.day(imei, DAY_A).trips) for imei in _tracksolid_imeis(world))
    assert _query(resources, "select count(*) from raw_tracksolid.trips") == [(expected,)]


def test_bad_rows_go_to_rejects_with_their_reason(resources, server, live_world):
    server.knobs.set(corrupt_rows_next=4)  # the first 4 trip rows: bad IMEI digit / end before start
    result = _run(resources, DAY_A, [assets.trips])
    assert result.success
    [check] = [c for c in result.get_asset_check_evaluations() if c.check_name == "no_rejected_rows"]
    assert not check.passed and check.metadata["rejected_rows"].value == 4
    assert _metadata(result, "trips")["rejected_rows"] == 4
    reasons = [r[0] for r in _query(resources, "select reason from raw_tracksolid.rejects where table_name = 'trips'")]
    assert len(reasons) == 4
    assert sum("Luhn" in r for r in reasons) == 2 and sum("ends before it starts" in r for r in reasons) == 2
    records = [json.loads(r[0]) for r in _query(resources, "select record from raw_tracksolid.rejects")]
    assert all("startTime" in record for record in records), "the vendor's record is kept as sent"
    truth = sum(len(live_world.day(imei, DAY_A).trips) for imei in _tracksolid_imeis(live_world))
    assert _query(resources, "select count(*) from raw_tracksolid.trips") == [(truth - 4,)]

    rerun = _run(resources, DAY_A, [assets.trips])  # the vendor sends clean rows again
    assert _metadata(rerun, "trips")["rows_added"] == 4
    assert _query(resources, "select count(*) from raw_tracksolid.rejects") == [(0,)]


def test_live_mode_never_falls_back_to_the_sandbox(tmp_path):
    # Another vendor has credentials (live mode) but Tracksolid has none: fail, do not load synthetic rows.
    resources = {
        "tracksolid": TracksolidResource(live_mode=True, cache_dir=str(tmp_path / "cache")),
        "duckdb": WarehouseResource(database=str(tmp_path / "live.duckdb")),
    }
    result = _run(resources, DAY_A, [assets.trips])
    assert not result.success
    failure = next(e for e in result.all_events if e.is_failure)
    assert "Tracksolid is not configured" in failure.event_specific_data.error.to_string()
    assert not (tmp_path / "live.duckdb").exists()


def test_track_points_in_small_chunks_of_concurrent_calls_equal_the_world(resources, live_world, monkeypatch):
    """Chunks of 3 devices, 8 calls in flight: the same rows as the truth, one call per device."""
    from fleet_pipeline.ingest import source_assets

    monkeypatch.setattr(source_assets, "DEVICE_CHUNK", 3)
    result = _run(resources, DAY_A, [assets.track_points])
    assert result.success
    imeis = _tracksolid_imeis(live_world)
    assert len(imeis) > 3 * 2, "the fleet must span several chunks"
    points = dict(_query(resources, """
        select imei, count(*) from raw_tracksolid.track_points where partition_date = ? group by imei""", [DAY_A]))
    assert points == {imei: live_world.day(imei, DAY_A).points.height for imei in imeis
                      if live_world.day(imei, DAY_A).points.height}
    metadata = _metadata(result, "track_points")
    assert metadata["dagster/row_count"] == sum(points.values())
    assert metadata["calls_per_method"]["jimi.device.track.list"] == len(imeis)
