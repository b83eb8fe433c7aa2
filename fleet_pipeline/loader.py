"""The last step of every source asset: validate a typed batch, replace its partition, describe it.

One function per concern, shared by all vendors, so every table gets the same guarantees and the
same metadata: row counts, rejects (with an asset check), API usage, duration, column schema and a
preview the Dagster UI can show.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import date
from typing import Any

import duckdb
import pandera.polars as pa
import polars as pl
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetKey,
    MetadataValue,
    TableColumn,
    TableSchema,
)

from fleet_pipeline.http import CallStats
from fleet_pipeline.validation import SplitBatch, split_valid
from fleet_pipeline.warehouse import ReplaceResult, TableRef, rejects_frame, replace_partition

REJECTS_CHECK = "no_rejected_rows"
PREVIEW_ROWS = 5


@dataclass(frozen=True)
class LoadOutcome:
    table: TableRef
    partition_key: str
    split: SplitBatch
    written: ReplaceResult


def load_batch(
    conn: duckdb.DuckDBPyConnection,
    table: TableRef,
    typed: pl.DataFrame,
    schema: type[pa.DataFrameModel],
    key_column: str,
    key_value: date,
) -> LoadOutcome:
    """Validate ``typed`` (which carries the raw records) and atomically replace its partition."""
    split = split_valid(typed, schema)
    rejects = rejects_frame(table, str(key_value), split.reasons, split.records)
    written = replace_partition(conn, table, split.valid, key_column, key_value, rejects)
    return LoadOutcome(table=table, partition_key=str(key_value), split=split, written=written)


def rejects_check_spec(asset_key: AssetKey) -> AssetCheckSpec:
    return AssetCheckSpec(
        REJECTS_CHECK,
        asset=asset_key,
        description="Every row of the batch passed the table's pandera schema (rejects are kept in "
        "the vendor's rejects table with the reason).",
    )


def rejects_check(outcome: LoadOutcome) -> AssetCheckResult:
    return AssetCheckResult(
        check_name=REJECTS_CHECK,
        passed=outcome.split.rejected == 0,
        severity=AssetCheckSeverity.WARN,
        metadata={
            "rejected_rows": outcome.split.rejected,
            "reasons": MetadataValue.json(_reason_counts(outcome.split.reasons)),
            "rejects_table": f"{outcome.table.schema}.rejects",
        },
    )


def _reason_counts(reasons: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for reason in reasons:
        counts[reason] = counts.get(reason, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: -item[1])[:20])


_DTYPE_NAMES = {
    pl.String: "VARCHAR",
    pl.Float64: "DOUBLE",
    pl.Int64: "BIGINT",
    pl.Int32: "INTEGER",
    pl.Boolean: "BOOLEAN",
    pl.Date: "DATE",
}


def table_schema(frame: pl.DataFrame) -> TableSchema:
    def name(dtype: pl.DataType) -> str:
        if isinstance(dtype, pl.Datetime):
            return "TIMESTAMP"
        return _DTYPE_NAMES.get(type(dtype), str(dtype))

    return TableSchema(columns=[TableColumn(column, name(dtype)) for column, dtype in frame.schema.items()])


def materialization_metadata(
    outcome: LoadOutcome, stats: CallStats, started_monotonic: float, **extra: Any
) -> dict[str, Any]:
    """What a person reading the run in the UI needs: counts, rejects, API usage, duration, preview."""
    valid = outcome.split.valid
    metadata: dict[str, Any] = {
        "dagster/row_count": valid.height,
        "dagster/column_schema": table_schema(valid),
        "table": str(outcome.table),
        "partition_key": outcome.partition_key,
        "rows_before": outcome.written.rows_before,
        "rows_added": outcome.written.rows_added,
        "rejected_rows": outcome.split.rejected,
        "duration_s": round(time.monotonic() - started_monotonic, 3),
        "preview": MetadataValue.md(_preview_markdown(valid.head(PREVIEW_ROWS))),
    }
    for key, value in stats.as_metadata().items():
        metadata[key] = MetadataValue.json(value) if isinstance(value, dict) else value
    metadata.update(extra)
    return metadata


def _preview_markdown(frame: pl.DataFrame) -> str:
    if frame.is_empty():
        return "_no rows_"
    header = "| " + " | ".join(frame.columns) + " |"
    rule = "| " + " | ".join("---" for _ in frame.columns) + " |"
    body = ["| " + " | ".join("" if v is None else str(v) for v in row) + " |" for row in frame.iter_rows()]
    return "\n".join([header, rule, *body])
