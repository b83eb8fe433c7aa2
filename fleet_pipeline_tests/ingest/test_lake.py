"""The warehouse as a DuckLake (FLEET_WAREHOUSE=ducklake), on a real Postgres catalog started on
loopback for this module (fleet_pipeline.services; `make services` installs it) and the
lake's Parquet files in a temporary folder; DuckLake and the Postgres scanner from their PyPI
wheels, installed offline as the pipeline installs them.

* Two processes write different days of the same table at once: both wait for the table's turn
  (the test holds it until both are waiting), and each day then holds exactly the World's rows.
* A writer killed (SIGKILL) at its COMMIT, holding the table's turn: the day is as it was, the
  turn is free at once, the next run loads the day, and the maintenance job deletes the killed
  writer's orphan files.
* A COMMIT that fails on a write conflict is reported as that conflict (ROLLBACK used to hide it).
* The maintenance job merges the one-file-a-day of daily writes and keeps every row.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import duckdb
import polars as pl
import pytest
from dagster import materialize

from fleet_pipeline.automation import lake_maintenance
from fleet_pipeline.ingest.warehouse import (
    TableRef,
    WarehouseResource,
    connect,
    rejects_frame,
    replace_partitions,
    table_turns,
)
from fleet_pipeline.sandbox import tracksolid as sandbox_tracksolid
from fleet_pipeline.sandbox.world import World
from fleet_pipeline.services import Postgres, throwaway_postgres
from fleet_pipeline.settings import LakeSettings
from fleet_pipeline.sources.tracksolid import assets
from fleet_pipeline_tests import ops_code_location as ops

pytestmark = pytest.mark.timeout(900)

TODAY = datetime.now(timezone.utc).date()
# Days whose late uploads have all arrived, so the lake must equal the World's truth.
DAY_A, DAY_B = TODAY - timedelta(days=6), TODAY - timedelta(days=5)
TRIPS = TableRef("raw_tracksolid", "trips")


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    with throwaway_postgres() as server:
        yield server


@pytest.fixture(scope="module")
def extension_directory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("duckdb_extensions")


@pytest.fixture
def lake(postgres: Postgres, extension_directory: Path, tmp_path: Path) -> LakeSettings:
    """A lake of its own: a new catalog database and a new data folder."""
    catalog = postgres.create_database(f"lake_{uuid.uuid4().hex[:10]}")
    return LakeSettings(catalog=catalog, data_path=str(tmp_path / "lake") + "/",
                        extension_directory=extension_directory, extensions_from="wheels")


def _resource(lake: LakeSettings) -> dict[str, str]:
    return {"database": "lake", "lake_catalog": lake.catalog, "lake_data_path": lake.data_path,
            "extension_directory": str(lake.extension_directory), "lake_extensions_from": lake.extensions_from}


def _query(lake: LakeSettings, sql: str, params: list | None = None) -> list[tuple]:
    with connect("", lake, read_only=True) as conn:
        return conn.execute(sql, params or []).fetchall()


def _assert_matches_world(lake: LakeSettings, world: World, day: date, tables: tuple[str, ...]) -> None:
    truth = {d.imei: world.day(d.imei, day) for d in world.devices_on("tracksolid", at=world.now())}
    expected = {"trips": {imei: len(d.trips) for imei, d in truth.items() if d.trips},
                "alarms": {imei: len(d.alarms) for imei, d in truth.items() if d.alarms}}
    for table in tables:
        loaded = dict(_query(lake, f"select imei, count(*) from raw_tracksolid.{table} "
                                   "where partition_date = ? group by imei", [day]))
        assert loaded == expected[table], f"{table} {day} differs from the world"
        assert sum(loaded.values()) > 0, f"{table} {day}: the world has nothing to compare with"


def _wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 300.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_WAREHOUSE")}
    return {**env, "FLEET_STEP_RETRIES": "0"}


# One day of trips and alarms into the lake, in a process of its own (an ephemeral instance).
RUN_DAY = """
import json, sys
from pathlib import Path
from dagster import materialize
from fleet_pipeline.ingest.warehouse import WarehouseResource
from fleet_pipeline.sources.tracksolid import assets
from fleet_pipeline_tests import ops_code_location as ops

sandbox_url, cache, lake, day = sys.argv[1:]
resources = ops.resources(sandbox_url, Path(cache), Path("unused.duckdb"))
resources["duckdb"] = WarehouseResource(**json.loads(lake))
result = materialize([assets.trips, assets.alarms], partition_key=day, resources=resources)
sys.exit(0 if result.success else 1)
"""


def test_two_processes_writing_days_of_one_table_at_once_lose_and_double_nothing(lake, tmp_path):
    world = World(seed=42, n_devices=8)
    logs = [tmp_path / f"run-{day}.log" for day in (DAY_A, DAY_B)]
    with sandbox_tracksolid.make_server(world) as server:
        # The test holds the turn on the trips table until both writers wait for it: then they
        # write the same table at the same moment, each a different day.
        with table_turns(lake, [TRIPS], "the test"):
            processes = []
            for day, log in zip((DAY_A, DAY_B), logs):
                with log.open("w") as output:  # a file, not a pipe: a full pipe would stall a run
                    processes.append(subprocess.Popen(
                        [sys.executable, "-c", RUN_DAY, server.base_url, str(tmp_path / "cache"),
                         json.dumps(_resource(lake)), day.isoformat()],
                        env=_env(), stdout=output, stderr=output))
            _wait_until(lambda: all("waiting for another writer" in log.read_text() or p.poll() is not None
                                    for log, p in zip(logs, processes)), "both writers to wait for the table")
            assert [p.poll() for p in processes] == [None, None], [log.read_text()[-3000:] for log in logs]
        for process in processes:
            process.wait(timeout=300)
    assert [p.returncode for p in processes] == [0, 0], [log.read_text()[-3000:] for log in logs]
    for day in (DAY_A, DAY_B):
        _assert_matches_world(lake, world, day, ("trips", "alarms"))
    assert _query(lake, "select count(*) from raw_tracksolid.rejects") == [(0,)]


# A write of ``raw_tracksolid.trips`` for a day (its rows repeated, so that they fill Parquet files
# rather than being inlined in the catalog), killed at the last moment: every statement has run, the
# table's turn is held, and COMMIT is the next statement.
KILLED_AT_COMMIT = """
import json, sys
from datetime import date
from pathlib import Path
from fleet_pipeline.ingest.warehouse import TableRef, connect, replace_partitions, table_turns
from fleet_pipeline_tests.dies_at_commit import DiesAtCommit
from fleet_pipeline.services import Postgres, throwaway_postgres
from fleet_pipeline.settings import LakeSettings

settings, day = json.loads(sys.argv[1]), date.fromisoformat(sys.argv[2])
lake = LakeSettings(**{**settings, "extension_directory": Path(settings["extension_directory"])})
conn = connect("", lake)
rows = conn.execute("select * replace ('killed-' || imei as imei) from raw_tracksolid.trips "
                    "where partition_date = ?", [day]).pl()
replace_partitions(DiesAtCommit(conn), TableRef("raw_tracksolid", "trips"),
                   rows.sample(20_000, with_replacement=True, seed=1), "partition_date", [day],
                   turns=lambda tables: table_turns(lake, tables))
"""


def _rows(lake: LakeSettings) -> dict[str, list[tuple]]:
    with connect("", lake, read_only=True) as conn:
        tables = [t for (t,) in conn.execute(
            "select table_schema || '.' || table_name from information_schema.tables "
            "where table_catalog = current_database() order by 1").fetchall()]
        return {t: conn.execute(f"select * from {t} order by all").fetchall() for t in tables}


def _parquet_files(lake: LakeSettings) -> set[Path]:
    return set(Path(lake.data_path).rglob("*.parquet"))


def test_a_writer_killed_at_commit_leaves_the_day_and_the_turn_and_its_files_are_cleaned_up(
        lake, tmp_path, monkeypatch):
    world = World(seed=42, n_devices=8)
    with sandbox_tracksolid.make_server(world) as server:
        resources = {**ops.resources(server.base_url, tmp_path / "cache", tmp_path / "unused.duckdb"),
                     "duckdb": WarehouseResource(**_resource(lake))}
        assert materialize([assets.trips], partition_key=DAY_B.isoformat(), resources=resources).success
        # The step's vendor answers are archived beside the lake's data path of the resource (the
        # variable FLEET_LAKE_DATA_PATH is not set here), not under the working directory.
        archive = Path(lake.data_path).parent / "archive" / "tracksolid" / "trips" / DAY_B.isoformat()
        assert list(archive.glob("*.parquet")), f"no archive file in {archive}"
        baseline, files_before = _rows(lake), _parquet_files(lake)
        assert baseline["raw_tracksolid.trips"], "the baseline holds the day's trips"

        settings = {"catalog": lake.catalog, "data_path": lake.data_path,
                    "extension_directory": str(lake.extension_directory), "extensions_from": lake.extensions_from}
        killed = subprocess.run([sys.executable, "-c", KILLED_AT_COMMIT, json.dumps(settings), DAY_B.isoformat()],
                                env=_env(), capture_output=True, text=True, timeout=300)
        assert killed.returncode == -signal.SIGKILL and "killed at commit" in killed.stdout, killed.stderr[-3000:]

        assert _rows(lake) == baseline, "the killed write changed the lake"
        orphans = _parquet_files(lake) - files_before
        assert orphans, "the killed writer had written Parquet files before its COMMIT"
        # Postgres ended the dead writer's session, and with it the table's turn.
        started = time.monotonic()
        with table_turns(lake, [TRIPS], "the test"):
            assert time.monotonic() - started < 5.0

        assert materialize([assets.trips], partition_key=DAY_B.isoformat(), resources=resources).success
    _assert_matches_world(lake, world, DAY_B, ("trips",))

    # The maintenance deletes files the catalog does not know once they are old enough (here: at once).
    monkeypatch.setattr(lake_maintenance, "ORPHAN_AGE", timedelta(0))
    counts = lake_maintenance.maintain(lake, retention_days=1)
    assert counts["orphan_files_deleted"] >= len(orphans)
    assert not orphans & _parquet_files(lake), "orphan files of the killed writer are left"
    _assert_matches_world(lake, world, DAY_B, ("trips",))


class CommitsAnotherWriteFirst:
    """A connection whose COMMIT comes after another process's write to the same table committed."""

    def __init__(self, conn: duckdb.DuckDBPyConnection, other_write: Callable[[], None]) -> None:
        self._conn, self._other_write = conn, other_write

    def execute(self, sql: str, *args):
        if sql.strip().upper() == "COMMIT":
            self._other_write()
        return self._conn.execute(sql, *args)

    def __getattr__(self, name: str):
        return getattr(self._conn, name)


def _points(day: date, rows: int) -> pl.DataFrame:
    return pl.DataFrame({"partition_date": [day] * rows, "imei": [f"{i:015d}" for i in range(rows)]})


def test_each_account_replaces_only_its_own_rows_of_a_day_in_the_lake(lake):
    """The per-account partition replacement on the lake: rows stored before the table had an
    account column are 'default''s; an account's load adds the column and leaves them, and a
    load of 'default' replaces them without touching the other account's rows of the day."""
    table = TableRef("raw_test", "points")

    def of_account(day: date, rows: int, account: str) -> pl.DataFrame:
        return _points(day, rows).with_columns(account=pl.lit(account))

    with connect("", lake) as conn:
        replace_partitions(conn, table, _points(DAY_A, 3), "partition_date", [DAY_A])
        replace_partitions(conn, table, of_account(DAY_A, 4, "eu"), "partition_date", [DAY_A], account="eu")
        replace_partitions(conn, table, of_account(DAY_A, 2, "default"), "partition_date", [DAY_A],
                           account="default")
        replace_partitions(conn, table, of_account(DAY_A, 5, "eu"), "partition_date", [DAY_A], account="eu")
    assert dict(_query(lake, f"select account, count(*) from {table.sql} group by 1")) == {"default": 2, "eu": 5}


def test_a_commit_that_fails_on_a_conflict_reports_the_conflict(lake):
    table = TableRef("raw_test", "points")
    with connect("", lake) as first, connect("", lake) as second:
        replace_partitions(first, table, _points(DAY_A, 3), "partition_date", [DAY_A, DAY_B])

        def other_write() -> None:
            replace_partitions(second, table, _points(DAY_B, 4), "partition_date", [DAY_B])

        rejects = rejects_frame(table, str(DAY_A), ["bad row"], [{"imei": "1"}])
        with pytest.raises(duckdb.Error) as raised:
            replace_partitions(CommitsAnotherWriteFirst(first, other_write), table, _points(DAY_A, 5),
                               "partition_date", [DAY_A], rejects)
        assert "conflict" in str(raised.value).lower(), str(raised.value)
        assert "no transaction is active" not in str(raised.value)
        # The failed write left its day as it was; the other write is there; the connection works on.
        assert dict(first.execute(f"select partition_date, count(*) from {table.sql} group by 1").fetchall()) == \
            {DAY_A: 3, DAY_B: 4}


def test_the_maintenance_job_merges_the_small_files_of_daily_writes_and_keeps_every_row(lake):
    table = TableRef("raw_test", "points")
    days = [DAY_A + timedelta(days=n) for n in range(4)]
    with connect("", lake) as conn:
        for day in days:  # one write a day, as the daily loads do: one file each
            replace_partitions(conn, table, _points(day, 5_000), "partition_date", [day])
        files = "select count(*) from ducklake_list_files('lake', 'points', schema => 'raw_test')"
        files_before = conn.execute(files).fetchone()[0]
    assert files_before == len(days)

    job, schedule = lake_maintenance.build_lake_maintenance(lake, retention_days=1)
    assert job.execute_in_process().success
    with connect("", lake, read_only=True) as conn:
        assert conn.execute(files).fetchone()[0] == 1
        assert dict(conn.execute(f"select partition_date, count(*) from {table.sql} group by 1").fetchall()) == \
            {day: 5_000 for day in days}
    assert schedule.cron_schedule == lake_maintenance.MAINTENANCE_CRON and schedule.job.name == "lake_maintenance"
