"""The distributed warehouse end to end: ``fleet-pipeline demo`` with FLEET_WAREHOUSE=ducklake (a
real Postgres catalog on loopback, the data in a temporary folder) and FLEET_SERVING_POSTGRES.

* The marts of the lake equal, row for row, the marts the embedded mode builds from the same raw
  rows: the lake's raw tables are copied into a DuckDB file and the same ``reporting`` job runs on
  it (the demo's own last step, as the CLI runs it). Equal inputs make any difference the lake's.
  (Two demos would not do: the sandbox answers with what its devices had sent by the moment it is
  asked, so two extractions minutes apart may differ by a late upload.)
* The Postgres serving copy equals the serving DuckDB file, table for table and row for row.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest

from fleet_pipeline import settings
from fleet_pipeline.ingest.warehouse import attach_warehouse
from fleet_pipeline.reporting.serving import SERVING_FILE
from fleet_pipeline.services import throwaway_postgres
from fleet_pipeline.settings import LakeSettings

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
N_DEVICES = 20
SEED = 42

pytestmark = pytest.mark.timeout(1800)


@dataclass(frozen=True)
class LakeDemo:
    root: Path
    lake: LakeSettings
    serving_postgres: str
    days: list[date]

    @property
    def serving_file(self) -> Path:
        return self.root / "lake_run" / "serving" / SERVING_FILE


def _env(data_dir: Path, **extra: str) -> dict[str, str]:
    # Vendor credentials would switch the demo to live mode; warehouse variables are the test's own.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(settings.VENDOR_ENV_PREFIXES)
           and k not in ("FLEET_DUCKDB_PATH", "FLEET_SERVING_DIR", "FLEET_WAREHOUSE", "FLEET_LAKE_CATALOG",
                         "FLEET_LAKE_DATA_PATH", "FLEET_SERVING_POSTGRES")}
    env.update(FLEET_DATA_DIR=str(data_dir), FLEET_SANDBOX_DEVICES=str(N_DEVICES), FLEET_SANDBOX_SEED=str(SEED),
               DAGSTER_HOME=str(data_dir / "dagster_home"), **extra)
    return env


def _run(command: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, f"{command[:3]} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def lake_demo(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("lake_demo")
    with throwaway_postgres() as postgres:
        catalog, serving = postgres.create_database("lake"), postgres.create_database("serving")
        data_dir = root / "lake_run"
        env = _env(data_dir, FLEET_WAREHOUSE="ducklake", FLEET_LAKE_CATALOG=catalog,
                   FLEET_LAKE_DATA_PATH=str(root / "lake"), FLEET_SERVING_POSTGRES=serving)
        output = _run([str(BIN / "fleet-pipeline"), "demo", "--days", "1"], env)
        assert "DuckLake" in output and "FAILED" not in output, output[-3000:]
        lake = settings.lake_settings(env)
        assert lake is not None
        with duckdb.connect() as conn:
            attach_warehouse(conn, "lake", "", lake)
            days = [row[0] for row in conn.execute(
                "select distinct partition_date from lake.raw_tracksolid.track_points order by 1").fetchall()]
        assert len(days) == 1
        yield LakeDemo(root, lake, serving, days)


def _embedded_from_the_same_rows(demo: LakeDemo) -> Path:
    """The lake's raw tables copied into a DuckDB file, then the reporting job run on it as the
    demo runs it (embedded mode: no FLEET_WAREHOUSE); its serving file."""
    data_dir = demo.root / "embedded_run"
    data_dir.mkdir()
    working = data_dir / "sandbox.duckdb"
    with duckdb.connect(str(working)) as conn:
        attach_warehouse(conn, "lake", "", demo.lake)
        tables = conn.execute("select table_schema, table_name from information_schema.tables "
                              "where table_catalog = 'lake' and table_schema like 'raw\\_%' escape '\\' "
                              "order by 1, 2").fetchall()
        assert len(tables) >= 20, tables
        for schema, table in tables:
            conn.execute(f'create schema if not exists "{schema}"')
            conn.execute(f'create table "{schema}"."{table}" as select * from lake."{schema}"."{table}"')
    first, last = demo.days[0].isoformat(), demo.days[-1].isoformat()
    script = (
        "from fleet_pipeline.instance import prepare_instance_home\n"
        "prepare_instance_home()\n"
        "from dagster import DagsterInstance\n"
        "from fleet_pipeline.code_location import CodeLocation\n"
        "from fleet_pipeline.definitions import defs\n"
        "with DagsterInstance.get() as instance:\n"
        "    result = CodeLocation.from_workspace().execute(instance, defs.resolve_job_def('reporting'),\n"
        "        run_config={}, tags={'dagster/asset_partition_range_start': " + repr(first) + ",\n"
        "                             'dagster/asset_partition_range_end': " + repr(last) + "})\n"
        "raise SystemExit(0 if result.success else 1)\n"
    )
    _run([sys.executable, "-c", script], _env(data_dir, FLEET_DUCKDB_PATH=str(working)))
    return data_dir / "serving" / SERVING_FILE


def _value(value: Any) -> Any:
    """One value as both sides can hold it: numbers as floats rounded to 9 significant digits (a sum
    of doubles depends on the order the threads added them in), everything else as it is."""
    if isinstance(value, (float, Decimal)) and not isinstance(value, bool):
        number = float(value)
        return number if number == 0 or math.isnan(number) else float(f"{number:.9g}")
    return value


def _rows(rows: list[tuple]) -> list[tuple]:
    normalized = [tuple(_value(v) for v in row) for row in rows]
    return sorted(normalized, key=lambda row: [(v is None, str(v)) for v in row])


def _serving_tables(path: Path) -> dict[str, list[tuple]]:
    with duckdb.connect(str(path), read_only=True) as conn:
        names = [f"{s}.{t}" for s, t in conn.execute(
            "select table_schema, table_name from information_schema.tables where table_catalog = current_database() "
            "order by 1, 2").fetchall()]
        return {name: _rows(conn.execute(f"select * from {name}").fetchall()) for name in names}


def test_the_marts_of_the_lake_equal_those_of_the_embedded_file_row_for_row(lake_demo: LakeDemo) -> None:
    lake = _serving_tables(lake_demo.serving_file)
    embedded = _serving_tables(_embedded_from_the_same_rows(lake_demo))
    marts = sorted(name for name in embedded if name.startswith("marts."))
    assert marts == sorted(name for name in lake if name.startswith("marts.")) and len(marts) >= 6, marts
    assert sum(len(embedded[name]) for name in marts) > 100, "the marts are too empty to compare"
    for name in sorted(embedded):
        assert lake[name] == embedded[name], f"{name}: the lake's rows differ from the embedded file's"


def test_the_postgres_serving_copy_equals_the_serving_file(lake_demo: LakeDemo) -> None:
    import psycopg2

    served = _serving_tables(lake_demo.serving_file)
    with psycopg2.connect(lake_demo.serving_postgres) as conn, conn.cursor() as cursor:
        cursor.execute("select table_schema || '.' || table_name from information_schema.tables "
                       "where table_schema in ('core', 'marts') order by 1")
        names = [row[0] for row in cursor.fetchall()]
        assert names == sorted(served), "Postgres holds other tables than the serving file"
        for name in names:
            cursor.execute(f"select * from {name}")
            assert _rows(cursor.fetchall()) == served[name], f"{name}: Postgres differs from the serving file"
        # Nothing of a publish is left beside the live schemas.
        cursor.execute("select nspname from pg_namespace where nspname like '%\\_\\_%'")
        assert cursor.fetchall() == []

