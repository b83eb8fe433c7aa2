"""The models over many days (issue 7: 30 days x 1,000 devices build in under 2 minutes).

Thirty real days of raw data for 1,000 devices would take the sources about an hour to extract,
so the raw warehouse is made the fast way and cached:

1. the sources load ONE day (the benchmark day) for the fleet, at zero latency, as in the
   per-size runs;
2. every partitioned table and every daily snapshot is then copied to the days before it in
   SQL: each DATE and TIMESTAMP column moves back k days, and the ids the models test as unique
   get a per-copy suffix (integers + k * 10^12, strings ``-k``). Volumes, shapes, key
   distributions and per-device patterns are those of a real day, repeated.
3. the file is kept as ``benchmarks/results/cache/raw_<N>dev_<D>d_seed<S>_<code>.duckdb``, where
   ``<code>`` hashes the source code that decides the raw tables (``sources/``, ``records.py``,
   ``loader.py``, ``warehouse.py``, ``validation.py``), so a change in what the loaders write
   rebuilds it. Delete the folder to force a rebuild.

Each measurement then copies the cached file (dbt writes into it) and runs ``dbt build`` with the
whole range as ``--vars {min_date, max_date}`` — a backfill, as Dagster's single-run backfill
policy runs it — followed by the daily incremental run of the last day on top of it.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb

REPO = Path(__file__).resolve().parents[1]
# Ids that models test as unique across days; a copied day must not repeat them.
INTEGER_IDS = ("event_id", "track_id")
TEXT_IDS = ("attempt_id",)
ID_STEP = 10**12
# What decides the contents and layout of the raw tables.
_RAW_CODE = ("fleet_pipeline/sources", "fleet_pipeline/ingest/records.py", "fleet_pipeline/ingest/loader.py",
             "fleet_pipeline/ingest/warehouse.py", "fleet_pipeline/ingest/validation.py",
             "fleet_pipeline/ingest/source_assets.py")


def raw_code_hash() -> str:
    digest = hashlib.sha256()
    for entry in _RAW_CODE:
        path = REPO / entry
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        for file in files:
            if file.exists():
                digest.update(str(file.relative_to(REPO)).encode())
                digest.update(file.read_bytes())
    return digest.hexdigest()[:10]


def replicate_days(database: Path, days: int) -> dict[str, int]:
    """Copy every raw table's day (or snapshot) to the ``days - 1`` days before it; row counts after."""
    counts: dict[str, int] = {}
    with duckdb.connect(str(database)) as conn:
        tables = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_schema LIKE 'raw_%' AND table_name <> 'rejects' ORDER BY 1, 2").fetchall()
        for schema, table in tables:
            columns = conn.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position", [schema, table]).fetchall()
            name = f'"{schema}"."{table}"'
            conn.execute(f"CREATE TEMP TABLE one_day AS SELECT * FROM {name}")
            for k in range(1, days):
                conn.execute(f"INSERT INTO {name} SELECT {', '.join(_shifted(c, t, k) for c, t in columns)} FROM one_day")
            conn.execute("DROP TABLE one_day")
            counts[f"{schema}.{table}"] = conn.execute(f"SELECT count(*) FROM {name}").fetchone()[0]
    return counts


def _shifted(column: str, data_type: str, k: int) -> str:
    quoted = f'"{column}"'
    if data_type == "DATE":
        return f"CAST({quoted} - INTERVAL {k} DAY AS DATE) AS {quoted}"
    if data_type.startswith("TIMESTAMP"):
        return f"{quoted} - INTERVAL {k} DAY AS {quoted}"
    if column in INTEGER_IDS:
        return f"{quoted} + {k * ID_STEP} AS {quoted}"
    if column in TEXT_IDS:
        return f"{quoted} || '-{k}' AS {quoted}"
    return quoted


def cache_path(devices: int, days: int, seed: int, cache_dir: Path) -> Path:
    return cache_dir / f"raw_{devices}dev_{days}d_seed{seed}_{raw_code_hash()}.duckdb"


def finish_cache(one_day: Path, days: int, path: Path) -> None:
    """Turn a one-day raw warehouse file into the cached ``days``-day one at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_suffix(".building")
    shutil.copyfile(one_day, scratch)
    replicate_days(scratch, days)
    scratch.rename(path)


def cached_raw_warehouse(devices: int, days: int, day: date, seed: int, log: Path,
                         cache_dir: Path) -> tuple[Path, bool, float]:
    """The cached raw warehouse of ``days`` days ending ``day``; (path, built now, seconds to build)."""
    from benchmarks.run import bench_size_into

    path = cache_path(devices, days, seed, cache_dir)
    if path.exists():
        return path, False, 0.0
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-seed-") as scratch:
        one_day = Path(scratch) / "one_day.duckdb"
        bench_size_into(devices, 0.0, day, seed, log, one_day)
        finish_cache(one_day, days, path)
    return path, True, time.perf_counter() - started


def bench_many_days(devices: int, days: int, day: date, seed: int, log: Path, cache_dir: Path) -> dict[str, Any]:
    from benchmarks.run import run_stage

    print(f"-- models: {days} days x {devices} devices", flush=True)
    raw, built, build_s = cached_raw_warehouse(devices, days, day, seed, log, cache_dir)
    first = day - timedelta(days=days - 1)
    workdir = Path(tempfile.mkdtemp(prefix="bench-models-"))
    try:
        warehouse = workdir / "warehouse.duckdb"
        shutil.copyfile(raw, warehouse)
        with duckdb.connect(str(warehouse), read_only=True) as conn:
            raw_rows = {f"{s}.{t}": conn.execute(f'SELECT count(*) FROM "{s}"."{t}"').fetchone()[0]
                        for s, t in conn.execute("SELECT table_schema, table_name FROM information_schema.tables "
                                                 "WHERE table_schema LIKE 'raw_%'").fetchall()}
        backfill = run_stage({"kind": "dbt", "warehouse": str(warehouse), "scratch_dir": str(workdir / "dbt1"),
                              "min_date": first.isoformat(), "max_date": day.isoformat()}, workdir, "dbt_backfill", log)
        print(f"   backfill    {backfill.get('wall_s', float('nan')):8.1f} s", flush=True)
        daily = run_stage({"kind": "dbt", "warehouse": str(warehouse), "scratch_dir": str(workdir / "dbt2"),
                           "min_date": day.isoformat(), "max_date": day.isoformat()}, workdir, "dbt_daily", log)
        print(f"   daily       {daily.get('wall_s', float('nan')):8.1f} s", flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return {
        "devices": devices, "days": days, "first_day": first.isoformat(), "last_day": day.isoformat(),
        "raw_cache": str(raw.relative_to(REPO)) if raw.is_relative_to(REPO) else str(raw),
        "raw_cache_built_now": built, "raw_cache_build_s": round(build_s, 1), "raw_rows": raw_rows,
        "backfill": backfill, "daily_incremental": daily,
    }
