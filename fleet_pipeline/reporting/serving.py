"""The BI serving copy: ``serving/fleet.duckdb`` (core and marts) and one Parquet file per mart.

BI tools never open the working file — DuckDB allows one writer process, and a reader would block
the pipeline. Each publish writes a complete new file beside the old one and renames it over the
old one, so a reader sees either the previous copy or the new one, never a half-written file, and a
client that keeps the old file open keeps reading the old inode undisturbed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import duckdb
from dagster import AssetKey, MaterializeResult, MetadataValue, asset

from fleet_pipeline import settings
from fleet_pipeline.ingest.source_assets import OWNERS, WRITER_POOL
from fleet_pipeline.ingest.warehouse import attach_warehouse, sql_string, whole_turn
from fleet_pipeline.reporting.serving_postgres import publish_postgres
from fleet_pipeline.settings import LakeSettings, redacted_url

SERVING_FILE = "fleet.duckdb"
PARQUET_DIR = "parquet"
# dbt-duckdb names custom schemas <target schema>_<name> unless the project overrides it; the
# serving copy always calls them by the layer name alone.
SERVED_LAYERS = ("core", "marts")


@dataclass(frozen=True)
class PublishResult:
    database: Path
    tables: dict[str, int]  # "schema.table" -> rows
    parquet_files: list[Path]


def layer_schemas(conn: duckdb.DuckDBPyConnection, catalog: str) -> dict[str, str]:
    """Layer -> the schema holding it in ``catalog`` (``core`` or ``main_core``...)."""
    rows = conn.execute(
        "SELECT DISTINCT schema_name FROM duckdb_schemas() WHERE database_name = ?", [catalog]
    ).fetchall()
    found: dict[str, str] = {}
    for (schema,) in sorted(rows, key=lambda row: len(row[0])):
        for layer in SERVED_LAYERS:
            if layer not in found and (schema == layer or schema.endswith("_" + layer)):
                found[layer] = schema
    return found


def _relations(conn: duckdb.DuckDBPyConnection, catalog: str, schema: str) -> list[str]:
    rows = conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_catalog = ? AND table_schema = ? "
        "ORDER BY table_name",
        [catalog, schema],
    ).fetchall()
    return [row[0] for row in rows]


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _remove(path: Path) -> None:
    for candidate in (path, path.with_name(path.name + ".wal")):
        candidate.unlink(missing_ok=True)


def publish(working: Path, serving_dir: Path, on_wait: Callable[[str], None] | None = None,
            lake: LakeSettings | None = None) -> PublishResult:
    """Copy the core and marts layers of the warehouse (the file ``working``, or ``lake``) into a new
    serving file and Parquet files, then swap each into place with ``os.replace`` (atomic on one
    filesystem). The working file is read in this process's turn on it (a writer elsewhere would
    keep it locked); the lake is read at its latest snapshot."""
    serving_dir.mkdir(parents=True, exist_ok=True)
    parquet_dir = serving_dir / PARQUET_DIR
    parquet_dir.mkdir(parents=True, exist_ok=True)
    final = serving_dir / SERVING_FILE
    staging = serving_dir / f".{SERVING_FILE}.{os.getpid()}.tmp"
    _remove(staging)
    tables: dict[str, int] = {}
    parquet_files: list[Path] = []
    conn = duckdb.connect(str(staging))
    try:
        with whole_turn(working, lake, "the serving copy", on_wait):
            attach_warehouse(conn, "working", working, lake)
            for layer, schema in layer_schemas(conn, "working").items():
                conn.execute(f"CREATE SCHEMA IF NOT EXISTS {_quote(layer)}")
                for name in _relations(conn, "working", schema):
                    source = f"working.{_quote(schema)}.{_quote(name)}"
                    target = f"{_quote(layer)}.{_quote(name)}"
                    conn.execute(f"CREATE TABLE {target} AS SELECT * FROM {source}")
                    tables[f"{layer}.{name}"] = conn.execute(f"SELECT count(*) FROM {target}").fetchone()[0]
                    if layer == "marts":
                        parquet_files.append(_export_parquet(conn, target, parquet_dir / f"{name}.parquet"))
            conn.execute("DETACH working")
        conn.execute("CHECKPOINT")
    except BaseException:
        conn.close()
        _remove(staging)
        raise
    conn.close()
    os.replace(staging, final)
    return PublishResult(database=final, tables=tables, parquet_files=parquet_files)


def _export_parquet(conn: duckdb.DuckDBPyConnection, relation: str, destination: Path) -> Path:
    partial = destination.with_name(f".{destination.name}.{os.getpid()}.tmp")
    conn.execute(f"COPY (SELECT * FROM {relation}) TO {sql_string(str(partial))} (FORMAT parquet)")
    os.replace(partial, destination)
    return destination


def build_serving_asset(upstream: list[AssetKey]):
    """``serving_copy`` downstream of ``upstream`` (the dbt models), in the reporting steps' pool:
    it reads the working file, which no writer may hold meanwhile, for the whole of its step."""

    @asset(
        name="serving_copy",
        group_name="serving",
        deps=upstream,
        pool=WRITER_POOL,
        owners=OWNERS,
        kinds={"duckdb", "parquet"},
        description="Atomic BI copy of the core and marts schemas (serving/fleet.duckdb) and one "
        "Parquet file per mart (serving/parquet/<table>.parquet); with FLEET_SERVING_POSTGRES also "
        "published to Postgres, swapped in one transaction.",
    )
    def serving_copy(context) -> MaterializeResult:  # untyped: string annotations are not resolved here
        result = publish(settings.duckdb_path(), settings.serving_dir(), context.log.info, settings.lake_settings())
        context.log.info(f"published {len(result.tables)} tables to {result.database}")
        postgres = settings.serving_postgres()
        extra = {}
        if postgres is not None:
            published = publish_postgres(result.database, postgres, settings.duckdb_extension_directory(),
                                         settings.duckdb_extensions_from())
            context.log.info(f"published {len(published)} tables to Postgres {redacted_url(postgres)}")
            extra["postgres"] = MetadataValue.text(redacted_url(postgres))
            extra["postgres_tables"] = MetadataValue.int(len(published))
        return MaterializeResult(
            metadata={
                **extra,
                "path": MetadataValue.path(str(result.database)),
                "tables": MetadataValue.int(len(result.tables)),
                "parquet_files": MetadataValue.int(len(result.parquet_files)),
                "row_counts": MetadataValue.md(
                    "| table | rows |\n|---|---:|\n"
                    + "\n".join(f"| {name} | {rows:,} |" for name, rows in sorted(result.tables.items()))
                ),
            }
        )

    return serving_copy
