"""Concurrency and crashes, on the project's own Dagster instance settings.

* Two partitions at once: two runs in two processes, both with the multiprocess executor (every
  step in a process of its own), on an instance whose ``dagster.yaml`` is the one
  ``fleet_pipeline.instance`` writes, in a temporary ``DAGSTER_HOME``. The code location is
  ``fleet_pipeline_tests.ops_code_location``: the real Tracksolid assets and resources, without
  the other sources and the dbt models that ``fleet_pipeline.definitions`` loads in every step process.
  Their steps extract side by side and take turns on the warehouse for their writes.
* A run whose warehouse is held by another process: it reads everything from the vendor, waits,
  says who holds the file, and writes once the file is free.
* A run killed (SIGKILL) while it reads from the vendor, and a write killed just before its
  commit: every partition stays as it was, and the next run works.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import duckdb
import polars as pl
import pytest
from dagster import (
    DagsterEventType,
    DagsterInstance,
    DagsterRunStatus,
    RunsFilter,
    materialize,
)

from fleet_pipeline import settings
from fleet_pipeline.ingest.source_assets import WRITER_POOL
from fleet_pipeline.ingest.warehouse import TableRef, exclusive_access, rejects_frame, replace_partition
from fleet_pipeline.instance import prepare_instance_home
from fleet_pipeline.sandbox import tracksolid as sandbox_tracksolid
from fleet_pipeline.sandbox.world import World
from fleet_pipeline.sources.tracksolid import assets
from fleet_pipeline_tests import ops_code_location as ops

BIN = Path(sys.executable).parent
TODAY = datetime.now(timezone.utc).date()
# Days whose late uploads have all arrived, so the warehouse must equal the world's truth.
DAY_A, DAY_B = TODAY - timedelta(days=6), TODAY - timedelta(days=5)
WRITERS = [assets.trips, assets.alarms]  # the run of DAY_A writes both, the run of DAY_B trips


@pytest.fixture(scope="module")
def instance_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A DAGSTER_HOME holding the project's dagster.yaml (the pool limit under test); shared by
    the tests of this module because creating an instance's databases costs seconds."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DAGSTER_HOME", str(tmp_path_factory.mktemp("dagster_home")))
        yield prepare_instance_home()


def _query(warehouse: Path, sql: str, params: list | None = None) -> list[tuple]:
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        return conn.execute(sql, params or []).fetchall()


def _tracksolid_imeis(world: World) -> list[str]:
    return [d.imei for d in world.devices_on("tracksolid", at=world.now())]


def _assert_matches_world(warehouse: Path, world: World, day: date, tables: tuple[str, ...]) -> None:
    truth = {imei: world.day(imei, day) for imei in _tracksolid_imeis(world)}
    expected = {
        "trips": {imei: len(d.trips) for imei, d in truth.items() if d.trips},
        "alarms": {imei: len(d.alarms) for imei, d in truth.items() if d.alarms},
        "track_points": {imei: d.points.height for imei, d in truth.items() if d.points.height},
    }
    for table in tables:
        loaded = dict(_query(warehouse, f"select imei, count(*) from raw_tracksolid.{table} "
                                        "where partition_date = ? group by imei", [day]))
        assert loaded == expected[table], f"{table} {day} differs from the world"
        assert sum(loaded.values()) > 0, f"{table} {day}: the world has nothing to compare with"


def _step_windows(instance: DagsterInstance, runs: list[str]) -> list[tuple[float, float, str]]:
    """(start, end, run/step) of every step of these runs: from its start event to its success."""
    windows = []
    for run in instance.get_runs(filters=RunsFilter(run_ids=runs)):
        started: dict[str, float] = {}
        for entry in instance.all_logs(run.run_id, of_type={DagsterEventType.STEP_START,
                                                             DagsterEventType.STEP_SUCCESS}):
            if entry.dagster_event.event_type == DagsterEventType.STEP_START:
                started[entry.step_key] = entry.timestamp
            else:
                windows.append((started[entry.step_key], entry.timestamp, f"{run.run_id[:8]}/{entry.step_key}"))
    return sorted(windows)


def _warehouse_holds(instance: DagsterInstance, runs: list[str]) -> list[tuple[datetime, datetime, str]]:
    """(from, until, run/asset) of every write: when each step held the warehouse, from its metadata."""
    holds = []
    for run_id in runs:
        for entry in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION):
            materialization = entry.dagster_event.event_specific_data.materialization
            metadata = {k: getattr(v, "value", v) for k, v in materialization.metadata.items()}
            holds.append((datetime.fromisoformat(metadata["warehouse_held_from"]),
                          datetime.fromisoformat(metadata["warehouse_held_until"]),
                          f"{run_id[:8]}/{materialization.asset_key.to_user_string()}"))
    return sorted(set(holds))


def _materialize_command(selection: list, day: date, config: dict) -> list[str]:
    """`dagster asset materialize` of this code location: a run in its own process, as a person or
    a scheduler would start it, with the multiprocess executor."""
    return [str(BIN / "dagster"), "asset", "materialize", "-m", ops.MODULE,
            "--select", ",".join(a.key.to_user_string() for a in selection),
            "--partition", day.isoformat(), "--config-json", json.dumps(config)]


def _env(instance_home: Path) -> dict[str, str]:
    """The environment of a run in another process: this instance, no vendor credentials, and no
    step retries (a failure should fail the test now, not a minute later)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith((*settings.VENDOR_ENV_PREFIXES, "FLEET_"))}
    return {**env, "DAGSTER_HOME": str(instance_home), "FLEET_STEP_RETRIES": "0"}


def test_two_partitions_at_once_take_turns_on_the_warehouse(instance_home, tmp_path):
    world = World(seed=42, n_devices=8)
    warehouse = tmp_path / "warehouse.duckdb"
    with DagsterInstance.get() as instance:
        before = {run.run_id for run in instance.get_runs()}

    # Two runs in two processes, started together (runs of one process would share Python's
    # logging, which Dagster reconfigures per run and is not safe to do from two threads).
    logs = [tmp_path / f"run-{day}.log" for day in (DAY_A, DAY_B)]
    with sandbox_tracksolid.make_server(world) as server:
        config = ops.run_config(server.base_url, tmp_path / "cache", warehouse)
        processes = []
        for day, selection, log in zip((DAY_A, DAY_B), (WRITERS, WRITERS[:1]), logs):
            with log.open("w") as output:  # a file, not a pipe: a full pipe would stall a run
                processes.append(subprocess.Popen(_materialize_command(selection, day, config),
                                                  env=_env(instance_home), stdout=output, stderr=output))
        for process in processes:
            process.wait(timeout=240)
    errors = [log.read_text() for log in logs]
    assert [p.returncode for p in processes] == [0, 0], [e[-2000:] for e in errors]
    assert not [e for e in errors if "Could not set lock" in e], "a writer met DuckDB's file lock"
    with DagsterInstance.get() as instance:
        runs = [run.run_id for run in instance.get_runs() if run.run_id not in before]
    assert len(runs) == 2

    _assert_matches_world(warehouse, world, DAY_A, ("trips", "alarms"))
    _assert_matches_world(warehouse, world, DAY_B, ("trips",))
    assert _query(warehouse, "select count(*) from raw_tracksolid.rejects") == [(0,)]

    with DagsterInstance.get() as instance:
        windows = _step_windows(instance, runs)
        holds = _warehouse_holds(instance, runs)
        pool = instance.event_log_storage.get_concurrency_info(WRITER_POOL)
    # Three writer steps (three step processes: two of one run, one of the other), which held the
    # warehouse one at a time; a source step is not in the reporting steps' pool.
    assert len(windows) == 3 and len(holds) == 3, (windows, holds)
    for (_, first_until, first), (second_from, _, second) in zip(holds, holds[1:]):
        assert second_from >= first_until, f"{second} wrote while {first} still held the warehouse"
    assert not pool.claimed_slots and not pool.pending_steps


# A run of raw_tracksolid.trips in a process of its own, on the instance of DAGSTER_HOME.
RUN_TRIPS = """
import sys
from pathlib import Path
from dagster import DagsterInstance, materialize
from fleet_pipeline.sources.tracksolid import assets
from fleet_pipeline_tests import ops_code_location as ops

sandbox_url, cache, warehouse, day = sys.argv[1:]
with DagsterInstance.get() as instance:
    result = materialize([assets.trips], partition_key=day, instance=instance,
                         resources=ops.resources(sandbox_url, Path(cache), Path(warehouse)))
sys.exit(0 if result.success else 1)
"""


def test_a_source_extracts_while_another_process_holds_the_warehouse(instance_home, tmp_path):
    # The extraction needs no warehouse: a run reads everything from the vendor while another
    # process holds the file, says who holds it while it waits, and writes once the file is free.
    world, warehouse, log = World(seed=42, n_devices=8), tmp_path / "warehouse.duckdb", tmp_path / "run.log"
    with sandbox_tracksolid.make_server(world) as server:
        with exclusive_access(warehouse, "the test holding the file"):
            with log.open("w") as output:
                process = subprocess.Popen(
                    [sys.executable, "-c", RUN_TRIPS, server.base_url, str(tmp_path / "cache"), str(warehouse),
                     DAY_A.isoformat()], env=_env(instance_home), stdout=output, stderr=output)
            _wait_until(lambda: "for the warehouse" in log.read_text() or process.poll() is not None,
                        "the run to wait for the warehouse", timeout_s=120)
            assert process.poll() is None, log.read_text()[-3000:]
            assert server.count("jimi.device.track.mileage") >= 1, "the run waited before it extracted"
            calls_while_held = server.count()
            held_until = datetime.now(timezone.utc).replace(tzinfo=None)
        assert process.wait(timeout=120) == 0, log.read_text()[-3000:]
        assert server.count() == calls_while_held, "the run called the vendor after the file was free"
    assert "held by pid" in log.read_text() and "the test holding the file" in log.read_text()
    with DagsterInstance.get() as instance:
        [run] = instance.get_runs(limit=1)
        [(held_from, _, _)] = _warehouse_holds(instance, [run.run_id])
    assert held_from >= held_until
    _assert_matches_world(warehouse, world, DAY_A, ("trips",))


def _snapshot(warehouse: Path) -> dict[str, list[tuple]]:
    """Every row of every raw table, in a stable order."""
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        tables = [t for (t,) in conn.execute(
            "select table_schema || '.' || table_name from information_schema.tables order by 1").fetchall()]
        return {t: conn.execute(f"select * from {t} order by all").fetchall() for t in tables}


def _wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 180.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


# A run of raw_tracksolid.track_points in a process of its own, on the instance of DAGSTER_HOME,
# with the in-process executor: its step runs in that process, which the test kills.
RUN_TRACK_POINTS = """
import sys
from pathlib import Path
from dagster import DagsterInstance, materialize
from fleet_pipeline.sources.tracksolid import assets
from fleet_pipeline_tests import ops_code_location as ops

sandbox_url, cache, warehouse, day = sys.argv[1:]
with DagsterInstance.get() as instance:
    materialize([assets.track_points], partition_key=day, instance=instance,
                resources=ops.resources(sandbox_url, Path(cache), Path(warehouse)))
"""


def test_a_killed_run_leaves_every_partition_as_it_was(instance_home, tmp_path):
    warehouse, cache = tmp_path / "warehouse.duckdb", tmp_path / "cache"
    day = DAY_B.isoformat()

    # The partition as a first run left it, rejected rows included.
    with sandbox_tracksolid.make_server(World(seed=42, n_devices=8)) as server:
        server.knobs.set(corrupt_rows_next=2)
        with DagsterInstance.get() as instance:
            first = materialize([assets.track_points, assets.trips], partition_key=day, instance=instance,
                                resources=ops.resources(server.base_url, cache, warehouse))
        assert first.success
    baseline = _snapshot(warehouse)
    assert baseline["raw_tracksolid.rejects"], "the baseline should hold rejected rows too"

    # A re-run against a vendor that now serves another fleet, slowly; killed while it reads.
    # Other IMEIs, so any row it wrote would show; and several times more devices than the step
    # reads at once, so the read takes seconds (paced calls, 0.5 s each) and the kill lands in it.
    other_world = World(seed=7, n_devices=60)
    with sandbox_tracksolid.make_server(other_world) as server:
        server.knobs.set(latency_s=0.5)
        process = subprocess.Popen(
            [sys.executable, "-c", RUN_TRACK_POINTS, server.base_url, str(cache), str(warehouse), day],
            env=_env(instance_home), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,  # its own process group, killed as a whole
        )
        try:
            _wait_until(lambda: server.count("jimi.device.track.list") >= 2 or process.poll() is not None,
                        "the step to read track points")
            assert process.poll() is None, "the run ended before it could be killed"
            os.killpg(process.pid, signal.SIGKILL)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
        assert server.count("jimi.device.track.list") < len(_tracksolid_imeis(other_world)), \
            "the step had read everything: the kill was not mid-way"

        assert _snapshot(warehouse) == baseline

        # The kernel released the dead process's hold on the warehouse: the file is free at once.
        with exclusive_access(warehouse, "the test") as hold:
            assert hold.waited_s < 1.0
        # The next start (every `fleet-pipeline` command) fails the dead run, which would otherwise
        # stay "started" for good; then the next run succeeds on the same instance, warehouse and
        # token cache.
        with DagsterInstance.get() as instance:
            [killed] = instance.get_runs(filters=RunsFilter(statuses=[DagsterRunStatus.STARTED]))
        prepare_instance_home()
        with DagsterInstance.get() as instance:
            failed = instance.get_run_by_id(killed.run_id)
            assert failed.status == DagsterRunStatus.FAILURE
            [message] = [e.dagster_event.message for e in instance.all_logs(killed.run_id, of_type=DagsterEventType.RUN_FAILURE)]
            assert "killed" in message and "released" in message
            server.knobs.set(latency_s=0.0)
            rerun = materialize([assets.track_points], partition_key=day, instance=instance,
                                resources=ops.resources(server.base_url, cache, warehouse))
        assert rerun.success
    _assert_matches_world(warehouse, other_world, DAY_B, ("track_points",))
    assert _query(warehouse, "select count(*) from raw_tracksolid.rejects where table_name = 'track_points'") == [(0,)]


# Runs in a process of its own, killed at the last possible moment of a partition write: every
# statement of the transaction (new column, delete, 300,000-row insert that DuckDB writes to the
# file before commit, rejects) has run, and COMMIT is the next one.
KILLED_AT_COMMIT = """
import sys
from datetime import date
import duckdb, polars as pl
from fleet_pipeline.ingest.warehouse import TableRef, rejects_frame, replace_partition
from fleet_pipeline_tests.dies_at_commit import DiesAtCommit

path, day, rows = sys.argv[1], date.fromisoformat(sys.argv[2]), 300_000
frame = pl.DataFrame({"imei": [f"{i:015d}" for i in range(rows)], "partition_date": [day] * rows,
                      "value": [0.5] * rows, "new_column": ["never committed"] * rows})
table = TableRef("raw_test", "points")
rejects = rejects_frame(table, str(day), ["bad row"], [{"imei": "1"}])
replace_partition(DiesAtCommit(duckdb.connect(path)), table, frame, "partition_date", day, rejects)
"""


def test_a_write_killed_before_its_commit_leaves_the_previous_rows(tmp_path):
    warehouse, table = tmp_path / "warehouse.duckdb", TableRef("raw_test", "points")
    previous = pl.DataFrame({"imei": ["860000000000001", "860000000000002"], "partition_date": [DAY_A, DAY_A],
                             "value": [1.0, 2.0]})
    with duckdb.connect(str(warehouse)) as conn:
        replace_partition(conn, table, previous, "partition_date", DAY_A,
                          rejects_frame(table, DAY_A.isoformat(), ["an old reject"], [{"imei": "0"}]))
    before = _snapshot(warehouse)

    killed = subprocess.run([sys.executable, "-c", KILLED_AT_COMMIT, str(warehouse), DAY_A.isoformat()],
                            capture_output=True, text=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL and "killed at commit" in killed.stdout, killed.stderr[-2000:]

    assert _snapshot(warehouse) == before
    columns = [c for (c,) in _query(warehouse, "select column_name from information_schema.columns "
                                               "where table_name = 'points' order by ordinal_position")]
    assert columns == ["imei", "partition_date", "value"]
    # The next writer opens the file at once (no lock left behind) and its write holds.
    with duckdb.connect(str(warehouse)) as conn:
        replace_partition(conn, table, previous.with_columns(value=pl.col("value") * 10), "partition_date", DAY_A)
    assert _query(warehouse, "select sum(value) from raw_test.points") == [(30.0,)]

