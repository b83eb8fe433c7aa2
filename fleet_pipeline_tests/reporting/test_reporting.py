"""Reporting: dbt assets load from a fresh checkout, the serving copy is atomic and readable by
another process while the working file is written, and the report needs no network."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import duckdb
import pytest
from dagster import AssetKey

from fleet_pipeline.automation.partitions import daily_partitions
from fleet_pipeline.ingest.source_assets import WRITER_POOL
from fleet_pipeline.reporting import dbt_assets
from fleet_pipeline.reporting.report import write_report
from fleet_pipeline.reporting.serving import PARQUET_DIR, SERVING_FILE, publish

FIXTURE_SOURCES = """\
version: 2
sources:
  - name: raw_testvendor
    tables:
      - name: events
"""
FIXTURE_DAILY = """\
{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='partition_date') }}
select partition_date, imei, count(*) as events from {{ source('raw_testvendor', 'events') }}
{% if var('min_date', none) is not none %}
where partition_date between '{{ var("min_date") }}' and '{{ var("max_date") }}'
{% endif %}
group by all
"""
FIXTURE_DAILY_YML = """\
version: 2
models:
  - name: zz_fixture_events_daily
    columns:
      - name: imei
        tests: [not_null]
"""
FIXTURE_DIM = "select distinct imei from {{ source('raw_testvendor', 'events') }}\n"


@pytest.fixture(scope="module")
def fresh_project(tmp_path_factory) -> Path:
    """The repository's dbt project as a fresh clone has it (no target/, no logs/), plus two models
    of our own so both selections (daily and unpartitioned) exist whatever the project holds."""
    root = tmp_path_factory.mktemp("clone") / "dbt_models"
    shutil.copytree(dbt_assets.DBT_PROJECT_DIR, root, ignore=shutil.ignore_patterns("target", "logs", "dbt_packages"))
    fixtures = root / "models" / "marts" / "zz_fixture"
    fixtures.mkdir(parents=True)
    (fixtures / "_zz_fixture__sources.yml").write_text(FIXTURE_SOURCES)
    (fixtures / "zz_fixture_events_daily.sql").write_text(FIXTURE_DAILY)
    (fixtures / "_zz_fixture__models.yml").write_text(FIXTURE_DAILY_YML)
    core = root / "models" / "core" / "zz_fixture"
    core.mkdir(parents=True)
    (core / "zz_fixture_devices.sql").write_text(FIXTURE_DIM)
    return root


def test_dbt_assets_load_from_a_fresh_checkout(fresh_project: Path) -> None:
    assert not (fresh_project / "target").exists()
    project = dbt_assets.load_project(fresh_project)
    assert project.manifest_path.exists()
    assert not dbt_assets.manifest_is_stale(project)

    definitions = {d.node_def.name: d for d in dbt_assets.build_dbt_assets(project)}
    daily, rest = definitions["dbt_daily_models"], definitions["dbt_models"]
    # The model key is dagster-dbt's default (schema and name, as the project configures them).
    daily_key = next(k for k in daily.keys if k.path[-1] == "zz_fixture_events_daily")
    dim_key = next(k for k in rest.keys if k.path[-1] == "zz_fixture_devices")
    assert daily_key in daily.keys and daily.partitions_def == daily_partitions
    assert dim_key in rest.keys and rest.partitions_def is None
    # dbt sources are the loaders' raw assets, so lineage reaches the vendor tables.
    assert daily.asset_deps[daily_key] == {AssetKey(["raw_testvendor", "events"])}
    assert daily.group_names_by_key[daily_key] == "marts"
    assert rest.group_names_by_key[dim_key] == "core"
    assert any(check.asset_key == daily_key and "not_null" in check.name for check in daily.check_keys)
    assert daily.node_def.pool == WRITER_POOL and rest.node_def.pool == WRITER_POOL


def test_manifest_is_reparsed_when_a_model_changes(fresh_project: Path) -> None:
    project = dbt_assets.load_project(fresh_project)
    added = fresh_project / "models" / "core" / "zz_fixture" / "zz_fixture_added.sql"
    added.write_text("select 1 as one\n")
    try:
        assert dbt_assets.manifest_is_stale(project)
        reloaded = dbt_assets.load_project(fresh_project)
        keys = {key for d in dbt_assets.build_dbt_assets(reloaded) for key in d.keys}
        assert "zz_fixture_added" in {key.path[-1] for key in keys}
    finally:
        added.unlink()


def _working_file(path: Path, rows: int) -> None:
    with duckdb.connect(str(path)) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS main_core; CREATE SCHEMA IF NOT EXISTS main_marts; "
                     "CREATE SCHEMA IF NOT EXISTS main_staging")
        conn.execute("CREATE OR REPLACE TABLE main_core.dim_devices AS "
                     f"SELECT range::VARCHAR AS imei FROM range({rows})")
        conn.execute(f"CREATE OR REPLACE TABLE main_marts.mileage_daily AS SELECT DATE '2026-11-19' AS day, "
                     f"range::VARCHAR AS imei, 1.5 AS distance_km FROM range({rows})")
        conn.execute("CREATE OR REPLACE VIEW main_staging.stg_x AS SELECT 1 AS x")


READER = """
import sys, duckdb
path, rounds = sys.argv[1], int(sys.argv[2])
print("ready", flush=True)
sys.stdin.readline()
for _ in range(rounds):
    with duckdb.connect(path, read_only=True) as conn:
        print(conn.execute("SELECT count(*) FROM marts.mileage_daily").fetchone()[0], flush=True)
"""


def test_serving_copy_is_readable_by_another_process_while_the_pipeline_writes(tmp_path: Path) -> None:
    working, serving = tmp_path / "working.duckdb", tmp_path / "serving"
    _working_file(working, rows=3)
    result = publish(working, serving)
    assert result.tables == {"core.dim_devices": 3, "marts.mileage_daily": 3}  # no staging
    parquet = serving / PARQUET_DIR / "mileage_daily.parquet"
    assert duckdb.sql(f"SELECT count(*) FROM '{parquet}'").fetchone()[0] == 3

    reader = subprocess.Popen([sys.executable, "-c", READER, str(serving / SERVING_FILE), "40"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert reader.stdout.readline().strip() == "ready"
    # The pipeline holds the working file's write lock and changes it while the reader reads.
    writer = duckdb.connect(str(working))
    reader.stdin.write("go\n")
    reader.stdin.flush()
    for added in (2, 4, 6):
        writer.execute(f"INSERT INTO main_marts.mileage_daily SELECT DATE '2026-11-20', 'x', 1.0 FROM range({added})")
    writer.close()
    publish(working, serving)  # swaps the file under the reader
    out, err = reader.communicate(timeout=60)
    assert reader.returncode == 0, err
    counts = {int(line) for line in out.split()}
    assert counts <= {3, 15} and counts, out  # only whole copies: before or after, nothing between
    with duckdb.connect(str(serving / SERVING_FILE), read_only=True) as conn:
        assert conn.execute("SELECT count(*) FROM marts.mileage_daily").fetchone()[0] == 15
    assert sorted(p.name for p in serving.iterdir()) == [SERVING_FILE, PARQUET_DIR]


def test_a_failed_publish_keeps_the_previous_copy(tmp_path: Path) -> None:
    working, serving = tmp_path / "working.duckdb", tmp_path / "serving"
    _working_file(working, rows=4)
    publish(working, serving)
    with pytest.raises(duckdb.Error):
        publish(tmp_path / "missing" / "working.duckdb", serving)
    with duckdb.connect(str(serving / SERVING_FILE), read_only=True) as conn:
        assert conn.execute("SELECT count(*) FROM core.dim_devices").fetchone()[0] == 4
    assert sorted(p.name for p in serving.iterdir()) == [SERVING_FILE, PARQUET_DIR]


URL = re.compile(r"(https?:)?//[\w.-]+", re.IGNORECASE)


def test_report_renders_offline_and_degrades_without_marts(tmp_path: Path) -> None:
    working, serving = tmp_path / "working.duckdb", tmp_path / "serving"
    _working_file(working, rows=2)
    with duckdb.connect(str(working)) as conn:
        conn.execute("CREATE TABLE main_marts.alarms_daily AS SELECT * FROM (VALUES "
                     "('overspeed', 5), ('sos', 2)) t(alarm_type, alarm_count)")
        conn.execute("CREATE TABLE main_marts.stock_daily AS SELECT DATE '2026-11-19' AS day, 1 AS product_id "
                     "WHERE false")  # present but empty
    publish(working, serving)
    page = tmp_path / "reports" / "fleet_report.html"
    sections = {s.title.split(" (")[0]: s for s in write_report(serving / SERVING_FILE, page, datetime(2026, 11, 20))}
    text = page.read_text()

    assert sections["Kilometres per day"].figures["km_total"] == 3.0
    assert sections["Alarms by type"].figures["alarms_total"] == 7
    assert "overspeed" in text and "<svg" in text
    for empty in ("Parking hours per day", "Stock on hand vs activations", "OTA success rate"):
        assert sections[empty].figures == {} and "no data yet" in sections[empty].body
    assert URL.search(text) is None, URL.search(text)
    assert "<script src" not in text and "<link" not in text

    missing = write_report(tmp_path / "nowhere.duckdb", tmp_path / "reports" / "empty.html")
    assert all(s.figures == {} for s in missing)
    assert (tmp_path / "reports" / "empty.html").read_text().count("no data yet") == len(missing)


LOADED_DBT_MODULES = """
import sys
import fleet_pipeline.definitions
print(sorted({name.split('.')[0] for name in sys.modules if name.split('.')[0] in ('dbt', 'dagster_dbt')}))
"""


def test_definitions_load_without_dbt_once_the_specs_are_kept(fresh_project: Path) -> None:
    # The code server and every step process load the definitions; dagster-dbt and dbt-core cost
    # seconds of CPU to import, so they are imported when the manifest changed and by the dbt step
    # only. The first load derives the specs, the next one reads them.
    derived = {d.node_def.name: d for d in dbt_assets.build_dbt_assets(dbt_assets.load_project(fresh_project))}
    assert (fresh_project / "target" / dbt_assets.SPECS_FILE).exists()
    kept = {d.node_def.name: d for d in dbt_assets.build_dbt_assets(dbt_assets.load_project(fresh_project))}
    for name, definition in derived.items():
        assert {spec.key: spec for spec in kept[name].specs} == {spec.key: spec for spec in definition.specs}
        assert kept[name].check_keys == definition.check_keys and kept[name].op.tags == definition.op.tags

    dbt_assets.load_project()  # the repository's own project: parsed and its specs kept if stale
    dbt_assets.build_dbt_assets(dbt_assets.load_project())
    loaded = subprocess.run([sys.executable, "-c", LOADED_DBT_MODULES], capture_output=True, text=True,
                            timeout=120, check=False)
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert loaded.stdout.strip() == "[]", loaded.stdout
