"""Backfills: one run over several days equals day-by-day runs with fewer vendor calls, replaces its
days atomically, slows down under a vendor's rate limit instead of failing, survives an outage by a
step retry; and the `fleet-pipeline backfill` command runs the plan Dagster would.

Days are 5 to 7 days back on the real clock: complete days whose late uploads have all arrived.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pytest
from dagster import (
    AssetKey,
    Backoff,
    DagsterInstance,
    Definitions,
    RetryPolicy,
    define_asset_job,
    materialize,
)

from fleet_pipeline import cli, settings
from fleet_pipeline.automation.backfill import RANGE_END_TAG, RANGE_START_TAG, plan, source_runs
from fleet_pipeline.automation.partitions import daily_partitions
from fleet_pipeline.ingest import source_assets
from fleet_pipeline.ingest.warehouse import WarehouseResource
from fleet_pipeline.sandbox import navixy as sandbox_navixy
from fleet_pipeline.sandbox import tracksolid as sandbox_tracksolid
from fleet_pipeline.sandbox.messages import Request, Response
from fleet_pipeline.sandbox.world import World
from fleet_pipeline.sources.aovx import assets as aovx_assets
from fleet_pipeline.sources.aovx.resources import AovxResource
from fleet_pipeline.sources.navixy import assets as navixy_assets
from fleet_pipeline.sources.navixy.resources import NavixyResource
from fleet_pipeline.sources.registry import VENDORS
from fleet_pipeline.sources.tracksolid import assets as tracksolid_assets
from fleet_pipeline.sources.tracksolid.resources import TracksolidResource

TODAY = datetime.now(timezone.utc).date()
DAYS = [TODAY - timedelta(days=n) for n in (7, 6, 5)]
TRACKSOLID_EVENTS = [a for a in tracksolid_assets.tracksolid_assets if a.partitions_def is not None]
NAVIXY_EVENTS = [a for a in navixy_assets.navixy_assets if a.partitions_def is not None]
TRACK_LIST = "jimi.device.track.list"


@pytest.fixture(scope="module")
def small_world() -> World:
    return World(seed=42, n_devices=12)


def _tracksolid(server, cache_dir: Path, **overrides) -> TracksolidResource:
    settings = dict(
        base_url=server.base_url + sandbox_tracksolid.ROUTE_PATH, app_key=sandbox_tracksolid.APP_KEY,
        app_secret=sandbox_tracksolid.APP_SECRET, user_id=sandbox_tracksolid.USER_ID,
        user_password=sandbox_tracksolid.USER_PASSWORD, cache_dir=str(cache_dir),
        retry_attempts=3, backoff_base_s=0.05, throttle_backoff_base_s=0.05,
    )
    return TracksolidResource(**(settings | overrides))


def _navixy(server, cache_dir: Path) -> NavixyResource:
    return NavixyResource(base_url=server.base_url + sandbox_navixy.API_PREFIX, api_key=sandbox_navixy.API_KEY,
                          cache_dir=str(cache_dir), retry_attempts=3, backoff_base_s=0.05)


def _warehouse(path: Path) -> WarehouseResource:
    return WarehouseResource(database=str(path))


def _range_tags(days: list[date]) -> dict[str, str]:
    return {RANGE_START_TAG: days[0].isoformat(), RANGE_END_TAG: days[-1].isoformat()}


def _range_run(selection, resources: dict, days: list[date]):
    return materialize(selection, tags=_range_tags(days), resources=resources,
                       instance=DagsterInstance.ephemeral(), raise_on_error=False)


def _day_run(selection, resources: dict, day: date):
    return materialize(selection, partition_key=day.isoformat(), resources=resources,
                       instance=DagsterInstance.ephemeral(), raise_on_error=False)


def _rows(database: Path, table: str) -> list[tuple]:
    with duckdb.connect(str(database), read_only=True) as conn:
        return conn.execute(f"select * from {table} order by all").fetchall()


def _tables(database: Path, schema: str) -> list[str]:
    with duckdb.connect(str(database), read_only=True) as conn:
        names = conn.execute("select table_name from information_schema.tables where table_schema = ?",
                             [schema]).fetchall()
    return sorted(f"{schema}.{name}" for (name,) in names if name != "rejects")


def _partition_events(result, table: str) -> dict[str, dict]:
    """Metadata of each partition's materialization of ``table`` in a run."""
    found = {}
    for event in result.get_asset_materialization_events():
        materialization = event.event_specific_data.materialization
        if materialization.asset_key.path[-1] == table:
            found[materialization.partition] = {k: getattr(v, "value", v) for k, v in materialization.metadata.items()}
    return found


def _calls(server) -> dict[str, int]:
    counts: dict[str, int] = {}
    for request in server.requests():
        counts[request.vendor_method or "?"] = counts.get(request.vendor_method or "?", 0) + 1
    return counts


def _minus(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {method: n - before.get(method, 0) for method, n in after.items() if n - before.get(method, 0)}


def test_a_tracksolid_range_run_equals_three_day_runs_with_fewer_calls(small_world, tmp_path):
    imeis = [d.imei for d in small_world.devices_on("tracksolid", at=small_world.now())]
    daily_db, ranged_db = tmp_path / "daily.duckdb", tmp_path / "ranged.duckdb"
    with sandbox_tracksolid.make_server(small_world) as server:
        tracksolid = _tracksolid(server, tmp_path / "cache")
        for day in DAYS:
            assert _day_run(TRACKSOLID_EVENTS, {"tracksolid": tracksolid, "duckdb": _warehouse(daily_db)}, day).success
        daily_calls = _calls(server)
        ranged = _range_run(TRACKSOLID_EVENTS, {"tracksolid": tracksolid, "duckdb": _warehouse(ranged_db)}, DAYS)
        range_calls = _minus(_calls(server), daily_calls)
    assert ranged.success

    tables = _tables(daily_db, "raw_tracksolid")
    assert tables == _tables(ranged_db, "raw_tracksolid") and len(tables) == 4
    for table in tables:
        daily_rows = _rows(daily_db, table)
        assert daily_rows, f"{table} is empty: the comparison would prove nothing"
        assert _rows(ranged_db, table) == daily_rows, table
    assert _rows(ranged_db, "raw_tracksolid.rejects") == _rows(daily_db, "raw_tracksolid.rejects")

    # track.list takes 7 days per IMEI: one call per device instead of one per device and day.
    assert daily_calls[TRACK_LIST] == 3 * len(imeis) and range_calls[TRACK_LIST] == len(imeis)
    assert sum(range_calls.values()) < sum(daily_calls.values()) / 2, (range_calls, daily_calls)

    # Every day gets its own materialization with its own counts.
    per_day = _partition_events(ranged, "track_points")
    assert sorted(per_day) == [d.isoformat() for d in DAYS]
    for day in DAYS:
        truth = sum(small_world.day(imei, day).points.height for imei in imeis)
        assert per_day[day.isoformat()]["dagster/row_count"] == truth > 0
    # ...and the run's API figures, which belong to the run as a whole.
    assert len({meta["api_calls"] for meta in per_day.values()}) == 1
    assert per_day[DAYS[0].isoformat()]["calls_per_method"][TRACK_LIST] == len(imeis)
    assert per_day[DAYS[0].isoformat()]["partitions_in_run"] == 3


def test_a_navixy_range_run_equals_three_day_runs_with_fewer_calls(small_world, tmp_path):
    daily_db, ranged_db = tmp_path / "daily.duckdb", tmp_path / "ranged.duckdb"
    with sandbox_navixy.make_server(small_world) as server:
        navixy = _navixy(server, tmp_path / "cache")
        for day in DAYS:
            assert _day_run(NAVIXY_EVENTS, {"navixy": navixy, "duckdb": _warehouse(daily_db)}, day).success
        daily_calls = _calls(server)
        ranged = _range_run(NAVIXY_EVENTS, {"navixy": navixy, "duckdb": _warehouse(ranged_db)}, DAYS)
        range_calls = _minus(_calls(server), daily_calls)
    assert ranged.success

    tables = _tables(daily_db, "raw_navixy")
    assert len(tables) == 4
    for table in tables:
        daily_rows = _rows(daily_db, table)
        assert daily_rows, f"{table} is empty: the comparison would prove nothing"
        assert _rows(ranged_db, table) == daily_rows, table
    for method in ("track/read", "tracker/stats/mileage/read"):
        assert range_calls[method] * 3 == daily_calls[method], (method, range_calls, daily_calls)
    # track/list asks only trackers with a fix inside a trip in the run's days (trip_evidence).
    moving = [_trackers_with_points_in_a_trip(small_world, day) for day in DAYS]
    assert daily_calls["track/list"] == sum(len(m) for m in moving)
    assert range_calls["track/list"] == len(set().union(*moving)) < daily_calls["track/list"]
    assert sum(range_calls.values()) < sum(daily_calls.values()) / 2
    # Mileage partitions are local days of the user's time zone: each day keeps its own length.
    hours = {key: meta["local_day_hours"] for key, meta in _partition_events(ranged, "mileage_daily").items()}
    assert sorted(hours) == [d.isoformat() for d in DAYS] and set(hours.values()) <= {23.0, 24.0, 25.0}


def _trackers_with_points_in_a_trip(world: World, day: date) -> set[int]:
    """The World's truth of which active Navixy trackers moved on ``day``."""
    blocked = sandbox_navixy.default_blocked_tracker_ids(world)
    found = set()
    for device in world.devices_on("navixy"):
        dd = world.day(device.imei, day)
        if sandbox_navixy.tracker_id(device) not in blocked and any(
                t.start <= fix <= t.end for fix in dd.points["gps_time"].to_list() for t in dd.trips):
            found.add(sandbox_navixy.tracker_id(device))
    return found


def _fail_track_list_of(server, imei: str) -> Callable[[], None]:
    """Make the vendor answer 503 to every track.list of one IMEI; returns the undo."""
    original = server.app.handle

    def handle(request: Request) -> Response:
        form = dict(request.form() or [])
        if form.get("method") == TRACK_LIST and form.get("imei") == imei:
            return Response.html(503, "Service Unavailable", "track store unavailable")
        return original(request)

    server.app.handle = handle
    return lambda: setattr(server.app, "handle", original)


def test_a_failed_range_run_leaves_every_day_as_it_was(small_world, tmp_path):
    database = tmp_path / "warehouse.duckdb"
    last_imei = max(d.imei for d in small_world.devices_on("tracksolid", at=small_world.now()))  # the run reads it last
    with sandbox_tracksolid.make_server(small_world) as server:
        resources = {"tracksolid": _tracksolid(server, tmp_path / "cache"), "duckdb": _warehouse(database)}
        server.knobs.set(corrupt_rows_next=2)  # the days as first loaded hold 2 rejected fixes
        assert _range_run([tracksolid_assets.track_points], resources, DAYS).success
        before = _rows(database, "raw_tracksolid.track_points"), _rows(database, "raw_tracksolid.rejects")
        assert len(before[1]) == 2

        undo = _fail_track_list_of(server, last_imei)
        failed = _range_run([tracksolid_assets.track_points], resources, DAYS)
        assert not failed.success
        failure = next(e for e in failed.all_events if e.is_step_failure)
        assert "503" in failure.step_failure_data.error.to_string()
        assert (_rows(database, "raw_tracksolid.track_points"), _rows(database, "raw_tracksolid.rejects")) == before

        undo()
        again = _range_run([tracksolid_assets.track_points], resources, DAYS)
    assert again.success
    assert _rows(database, "raw_tracksolid.rejects") == []
    added = {key: meta["rows_added"] for key, meta in _partition_events(again, "track_points").items()}
    assert sum(added.values()) == 2 and len(added) == 3


def test_a_range_run_against_a_tight_rate_limit_slows_down_and_loads_every_row(small_world, tmp_path):
    database = tmp_path / "warehouse.duckdb"
    imeis = [d.imei for d in small_world.devices_on("tracksolid", at=small_world.now())]
    # 3 calls a second per app key, far below the client's own pacing (20/s): 1006 answers follow.
    with sandbox_tracksolid.make_server(small_world, rate_limit_calls=3) as server:
        resources = {"tracksolid": _tracksolid(server, tmp_path / "cache", retry_attempts=10,
                                               throttle_backoff_base_s=0.1),
                     "duckdb": _warehouse(database)}
        result = _range_run([tracksolid_assets.track_points], resources, DAYS)
        throttled = server.count(fault="throttle")
    assert result.success
    assert throttled > 0, "the sandbox never throttled: the test would prove nothing"
    metadata = next(iter(_partition_events(result, "track_points").values()))
    assert metadata["throttle_wait_s_summed_over_calls"] > 0 and metadata["api_retries"] > 0
    with duckdb.connect(str(database), read_only=True) as conn:
        loaded = dict(conn.execute("select partition_date, count(*) from raw_tracksolid.track_points group by 1").fetchall())
    for day in DAYS:
        assert loaded[day] == sum(small_world.day(imei, day).points.height for imei in imeis)


def _job_with_retries(selection, resources: dict) -> Definitions:
    # The suite runs with FLEET_STEP_RETRIES=0 (conftest), so the assets carry no policy of their
    # own and the job's policy applies: the same mechanism, without a minute's delay.
    job = define_asset_job("retried", selection=selection,
                           op_retry_policy=RetryPolicy(max_retries=1, delay=0))
    return Definitions(assets=selection, jobs=[job], resources=resources)


def test_an_outage_outlasting_a_clients_own_retries_is_recovered_by_a_step_retry(small_world, tmp_path):
    database = tmp_path / "warehouse.duckdb"
    with sandbox_tracksolid.make_server(small_world) as server:
        resources = {"tracksolid": _tracksolid(server, tmp_path / "cache"), "duckdb": _warehouse(database)}
        defs = _job_with_retries([tracksolid_assets.trips], resources)
        server.knobs.set(fail_next_5xx=3)  # every attempt of the client's first call
        result = defs.resolve_job_def("retried").execute_in_process(
            instance=DagsterInstance.ephemeral(), partition_key=DAYS[0].isoformat(), raise_on_error=False)
    assert result.success
    assert [e.event_type_value for e in result.all_events].count("STEP_UP_FOR_RETRY") == 1
    truth = sum(len(small_world.day(d.imei, DAYS[0]).trips) for d in small_world.devices_on("tracksolid", at=small_world.now()))
    assert len(_rows(database, "raw_tracksolid.trips")) == truth > 0


def test_an_error_waiting_cannot_fix_is_not_retried(small_world, tmp_path, monkeypatch):
    monkeypatch.setattr(source_assets, "STEP_RETRY_POLICY", RetryPolicy(max_retries=1, delay=0))
    with sandbox_tracksolid.make_server(small_world) as server:
        wrong_secret = _tracksolid(server, tmp_path / "cache", app_secret="not-the-secret")
        defs = _job_with_retries([tracksolid_assets.trips],
                                 {"tracksolid": wrong_secret, "duckdb": _warehouse(tmp_path / "w.duckdb")})
        result = defs.resolve_job_def("retried").execute_in_process(
            instance=DagsterInstance.ephemeral(), partition_key=DAYS[0].isoformat(), raise_on_error=False)
        signed_calls = server.count()
    assert not result.success
    assert "STEP_UP_FOR_RETRY" not in [e.event_type_value for e in result.all_events]
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "1001" in failure.step_failure_data.error.to_string()
    assert signed_calls == 1, "a rejected signature was sent again"


def test_step_retries_come_from_the_environment(monkeypatch):
    monkeypatch.delenv("FLEET_STEP_RETRIES")
    monkeypatch.delenv("FLEET_STEP_RETRY_DELAY_S", raising=False)
    default = source_assets._step_retry_policy()
    assert (default.max_retries, default.delay, default.backoff) == (2, 60, Backoff.EXPONENTIAL)
    monkeypatch.setenv("FLEET_STEP_RETRIES", "0")
    assert source_assets._step_retry_policy() is None
    monkeypatch.setenv("FLEET_STEP_RETRIES", "two")
    with pytest.raises(settings.ConfigError, match="FLEET_STEP_RETRIES"):
        source_assets._step_retry_policy()


def test_every_partitioned_source_declares_how_many_days_a_run_covers():
    every_source = [asset for spec in VENDORS for asset in spec.load_assets()]
    partitioned = [a for a in every_source if a.partitions_def is not None]
    assert partitioned and all(a.backfill_policy is not None for a in partitioned)
    by_key = {a.key: a.backfill_policy.max_partitions_per_run for a in partitioned}
    # A week where one call covers a week per device; a month where it covers a month or any range.
    assert by_key[AssetKey(["raw_tracksolid", "track_points"])] == by_key[AssetKey(["raw_navixy", "track_points"])] == 7
    assert by_key[AssetKey(["raw_navixy", "mileage_daily"])] == by_key[AssetKey(["raw_tracksolid", "alarms"])] == 31
    assert all(a.backfill_policy is None for a in every_source if a.partitions_def is None)


def test_the_cli_cuts_a_backfill_into_the_runs_dagster_would_launch():
    from dagster._core.definitions.automation_tick_evaluation_context import (
        build_run_requests_with_backfill_policies,
    )
    from dagster._core.definitions.events import AssetKeyPartitionKey

    every_source = [*TRACKSOLID_EVENTS, *NAVIXY_EVENTS, aovx_assets.ota_reports]
    never_started = {"tracksolid": TracksolidResource(), "navixy": NavixyResource(), "aovx": AovxResource(),
                     "duckdb": _warehouse(Path(":memory:"))}
    defs = Definitions(assets=every_source, resources=never_started, jobs=[
        define_asset_job("all_daily", selection=every_source, partitions_def=daily_partitions)])
    days = [TODAY - timedelta(days=n) for n in range(30, 0, -1)]
    ours = {(frozenset(run.asset_keys), run.days[0].isoformat(), run.days[-1].isoformat())
            for run in source_runs(defs, days)}

    graph = defs.resolve_asset_graph()
    requests = build_run_requests_with_backfill_policies(
        [AssetKeyPartitionKey(a.key, d.isoformat()) for a in every_source for d in days], graph, None)
    dagsters = {(frozenset(r.asset_selection), r.tags[RANGE_START_TAG], r.tags[RANGE_END_TAG]) for r in requests}
    assert ours == dagsters
    assert len(ours) == 1 + 5  # one month-long run, five week-long runs (7, 7, 7, 7, 2 days)


def test_the_plan_over_the_real_definitions_covers_every_source_and_the_models():
    from fleet_pipeline.definitions import defs
    from fleet_pipeline.definitions import source_assets as every_source

    days = [TODAY - timedelta(days=n) for n in range(30, 0, -1)]
    todo, skipped = plan(defs, days, DagsterInstance.ephemeral(), TODAY)
    assert skipped == []
    assert [run.job_name for run in todo] == ["all_snapshots", *["all_daily"] * 6, "reporting"]
    assert [len(run.days) for run in todo] == [0, 30, 7, 7, 7, 7, 2, 30]
    covered = {key for run in todo[1:3] for key in run.asset_keys}
    assert covered == {a.key for a in every_source if a.partitions_def is not None}
    assert todo[-1].tags("x")[RANGE_START_TAG] == days[0].isoformat() and todo[-1].partition_key is None


def test_the_cli_reports_a_failed_run_then_resumes_to_completion(small_world, tmp_path, monkeypatch, capsys):
    # The command in-process, over the Tracksolid assets and a loopback sandbox (the real
    # definitions' plan is checked above; `make demo` and the measured 30-day run use them).
    monkeypatch.setenv("FLEET_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    database = tmp_path / "warehouse.duckdb"
    first, last = DAYS[1], DAYS[2]
    backfill = ["backfill", "--start", first.isoformat(), "--end", last.isoformat()]
    snapshots = [a for a in tracksolid_assets.tracksolid_assets if a.partitions_def is None]
    with sandbox_tracksolid.make_server(small_world) as server:
        defs = Definitions(
            assets=tracksolid_assets.tracksolid_assets,
            resources={"tracksolid": _tracksolid(server, tmp_path / "cache"), "duckdb": _warehouse(database)},
            jobs=[define_asset_job("all_snapshots", selection=snapshots),
                  define_asset_job("all_daily", selection=TRACKSOLID_EVENTS, partitions_def=daily_partitions),
                  define_asset_job("reporting", selection=[tracksolid_assets.alarms])],
        )
        monkeypatch.setattr(cli, "_load_definitions", lambda: defs)
        undo = _fail_track_list_of(server, max(d.imei for d in small_world.devices_on("tracksolid", at=small_world.now())))
        failed = cli.main(backfill)
        out, err = capsys.readouterr()
        undo()
        resumed = cli.main([*backfill, "--resume"])
        again, _ = capsys.readouterr()

    assert failed == 1
    assert "[1/4] all_snapshots (today's snapshot) done" in out
    assert f"[2/4] all_daily {first}...{last} (2 days, 3 assets) done" in out
    # The vendor's own error, not Dagster's wrapper ("Error occurred while executing op").
    assert f"[3/4] all_daily {first}...{last} (2 days, 1 asset) FAILED" in out
    assert "tracksolid jimi.device.track.list: server answered 503" in out
    assert "[4/4] reporting" in out and "skipped: source runs failed" in out
    assert "1 run(s) failed" in err and f"--start {first} --end {last}" in err and "--resume" in err

    assert resumed == 0, again
    assert "resumed        1 run(s) skipped" in again and "(2 days, 3 assets)" in again.split("resumed")[1]
    assert f"[1/2] all_daily {first}...{last} (2 days, 1 asset) done" in again and "[2/2] reporting" in again
    imeis = [d.imei for d in small_world.devices_on("tracksolid", at=small_world.now())]
    with duckdb.connect(str(database), read_only=True) as conn:
        points = dict(conn.execute("select partition_date, count(*) from raw_tracksolid.track_points group by 1").fetchall())
    assert points == {day: sum(small_world.day(imei, day).points.height for imei in imeis) for day in (first, last)}
