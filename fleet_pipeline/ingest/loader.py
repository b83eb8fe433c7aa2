"""The last step of every source asset: validate a typed batch, replace its partitions, describe it.

One function per concern, shared by all vendors, so every table gets the same guarantees and the
same metadata: row counts, rejects (with an asset check), API usage, duration, column schema and a
preview the Dagster UI can show. A batch covers one partition (a day, or a day's snapshot) or, in a
backfill run, several days; they are validated per day (each reject is kept with its day) and
replaced together in one transaction.

Duplicates are removed here, for every table, on the key its source declares (``Table.key``):
within a chunk before validation (so that a repeated row is not rejected as a duplicate of itself)
and across the chunks and pages of the whole batch after it. Rows whose key did not convert are
never merged: they go on to validation, which rejects them with the reason. A batch whose rows were
all rejected fails the step in one line and writes nothing: an answer that is wholly unusable says
more about the vendor than about its rows, and the partition keeps its previous rows.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
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
    TableColumnConstraints,
    TableRecord,
    TableSchema,
)

from fleet_pipeline.ingest.http import CallStats
from fleet_pipeline.ingest.validation import Problem, split_valid
from fleet_pipeline.ingest.warehouse import ReplaceResult, TableRef, problems_frame, replace_partitions

REJECTS_CHECK = "no_rejected_rows"
PREVIEW_ROWS = 5


@dataclass(frozen=True)
class PartitionLoad:
    """What happened to one partition of a batch."""

    key: date
    rows: int
    reasons: list[str]
    written: ReplaceResult
    # The kind of each field issue of a kept row ("speed_kmh: not a number"), one per field.
    field_issues: list[str]
    duplicates: int

    @property
    def rejected(self) -> int:
        return len(self.reasons)


@dataclass(frozen=True)
class LoadOutcome:
    table: TableRef
    valid: pl.DataFrame
    partitions: list[PartitionLoad]

    @property
    def partition_key(self) -> str:
        """The partition, or ``first...last`` for a run over several days."""
        keys = [str(p.key) for p in self.partitions]
        return keys[0] if len(keys) == 1 else f"{keys[0]}...{keys[-1]}"

    @property
    def rejected(self) -> int:
        return sum(p.rejected for p in self.partitions)

    @property
    def reasons(self) -> list[str]:
        return [reason for p in self.partitions for reason in p.reasons]

    @property
    def field_issues(self) -> list[str]:
        return [kind for p in self.partitions for kind in p.field_issues]

    @property
    def duplicates(self) -> int:
        return sum(p.duplicates for p in self.partitions)

    @property
    def rows_before(self) -> int:
        return sum(p.written.rows_before for p in self.partitions)

    @property
    def rows_added(self) -> int:
        return sum(p.written.rows_added for p in self.partitions)


class AllRowsRejected(ValueError):
    """Every row of a non-empty vendor answer failed: the answer as a whole is unusable."""


@dataclass(frozen=True)
class ValidatedBatch:
    """A batch split into valid rows, rejects and field issues, per partition, ready to be written."""

    table: TableRef
    key_column: str
    keys: list[date]
    valid_parts: dict[date, list[pl.DataFrame]]
    rejects: dict[date, list[Problem]]
    field_issues: dict[date, list[Problem]]
    duplicates: dict[date, int]
    vendor: str | None = None
    # The vendor account the rows were extracted with: stored in every row (and reject) as
    # ``account``, and the partitions replaced are that account's alone. None: no account column.
    account: str | None = None

    def _with_account(self, frame: pl.DataFrame) -> pl.DataFrame:
        return frame if self.account is None else frame.with_columns(account=pl.lit(self.account, pl.String))

    @property
    def reasons(self) -> dict[date, list[str]]:
        return {key: [p.reason for p in problems] for key, problems in self.rejects.items()}

    def valid(self) -> pl.DataFrame:
        return self._with_account(
            pl.concat([part for key in self.keys for part in self.valid_parts[key]], how="vertical"))

    def _problems(self, of: dict[date, list[Problem]]) -> pl.DataFrame:
        return self._with_account(pl.concat(
            [problems_frame(self.table, str(key), of[key], self.vendor) for key in self.keys], how="vertical"))

    def rejects_frame(self) -> pl.DataFrame:
        return self._problems(self.rejects)

    def field_issues_frame(self) -> pl.DataFrame:
        return self._problems(self.field_issues)


def drop_duplicates(frame: pl.DataFrame, key: Sequence[str] | None) -> tuple[pl.DataFrame, int]:
    """``frame`` without repeated rows of ``key`` (the last one wins, as a later page is the newer
    answer), and how many were dropped. Rows with a null in the key are kept as they are."""
    if not key or frame.height < 2:
        return frame, 0
    complete = pl.all_horizontal(pl.col(column).is_not_null() for column in key)
    keyed = frame.filter(complete)
    unique = keyed.unique(subset=list(key), keep="last", maintain_order=True)
    dropped = keyed.height - unique.height
    if not dropped:
        return frame, 0
    return pl.concat([unique, frame.filter(~complete)], how="vertical"), dropped


def validate_batch(
    table: TableRef,
    typed: pl.DataFrame | Iterable[pl.DataFrame],
    schema: type[pa.DataFrameModel],
    key_column: str,
    key_values: Sequence[date],
    unique_key: Sequence[str] | None = None,
    vendor: str | None = None,
    require_some_valid: bool = True,
    account: str | None = None,
) -> ValidatedBatch:
    """Validate ``typed`` (which carries the raw records), partition by partition.

    ``typed`` is one frame or, for tables of millions of rows, the frames of consecutive chunks
    of devices: each chunk is validated as it arrives, and only its valid rows (typed columns,
    without the raw records) and its problems are kept, so a day never exists as Python objects
    all at once. Every row must already carry its partition in ``key_column``. Rows repeating
    ``unique_key`` are dropped and counted (see the module docstring). ``require_some_valid=False``
    is for sources whose rows are independent messages rather than one vendor answer (pushed
    items): their rejects are kept even when no row of the batch passed.
    """
    keys = sorted(set(key_values))
    batch = ValidatedBatch(table, key_column, keys, {key: [] for key in keys}, {key: [] for key in keys},
                           {key: [] for key in keys}, {key: 0 for key in keys}, vendor, account)
    for chunk in [typed] if isinstance(typed, pl.DataFrame) else typed:
        _split_chunk(batch, chunk, schema, unique_key)
        # Let the chunk's raw records go before the next chunk is read, not after it.
        del chunk
    if not any(batch.valid_parts.values()):
        raise ValueError(f"{table}: the batch has no frame, not even an empty one")
    for key in keys:
        if len(batch.valid_parts[key]) > 1:
            # Across chunks and pages: a key seen in two chunks is stored once.
            merged, dropped = drop_duplicates(pl.concat(batch.valid_parts[key], how="vertical"), unique_key)
            batch.valid_parts[key][:] = [merged]
            batch.duplicates[key] += dropped
    if require_some_valid:
        _require_some_valid(batch)
    return batch


def _split_chunk(batch: ValidatedBatch, chunk: pl.DataFrame, schema: type[pa.DataFrameModel],
                 unique_key: Sequence[str] | None) -> None:
    """Validate one chunk, partition by partition, into ``batch``: its valid rows (without the raw
    records) and its problems (the records of their rows as JSON) are all that is kept of it."""
    keys, key_column = batch.keys, batch.key_column
    stray = chunk.filter(~pl.col(key_column).is_in(keys) | pl.col(key_column).is_null()).height
    if stray:
        raise ValueError(f"{batch.table}: {stray} rows of the batch are outside the partitions being loaded")
    by_key = chunk.partition_by(key_column, as_dict=True, include_key=True) if chunk.height else {}
    for key in keys:
        part = by_key.pop((key,), None)
        # A partition with no rows still needs one (empty) frame of the table's columns.
        if part is None and batch.valid_parts[key]:
            continue
        part, dropped = drop_duplicates(chunk.clear() if part is None else part, unique_key)
        split = split_valid(part, schema)
        batch.duplicates[key] += dropped
        batch.valid_parts[key].append(split.valid)
        batch.rejects[key].extend(split.rejects)
        batch.field_issues[key].extend(split.field_issues)


def _require_some_valid(batch: ValidatedBatch) -> None:
    rejected = [problem for key in batch.keys for problem in batch.rejects[key]]
    if not rejected or any(part.height for parts in batch.valid_parts.values() for part in parts):
        return
    kind, count = next(iter(_reason_counts([kind for p in rejected for kind in p.kinds]).items()))
    example = next(p.reason for p in rejected if kind in p.kinds)
    raise AllRowsRejected(
        f"{batch.table}: all {len(rejected)} rows of the answer were rejected, nothing written; "
        f"most common problem {kind!r} ({count} rows), e.g. {example}"
    )


def write_batch(conn: duckdb.DuckDBPyConnection, batch: ValidatedBatch,
                turns: Callable[[Sequence[TableRef]], AbstractContextManager[Any]] | None = None) -> LoadOutcome:
    """Replace the batch's partitions in one transaction; each one is replaced, also when the
    batch has no row for it. ``turns``: the warehouse's write turns on the tables (the lake's)."""
    valid = batch.valid()
    written = replace_partitions(conn, batch.table, valid, batch.key_column, batch.keys, batch.rejects_frame(),
                                 field_issues=batch.field_issues_frame(), turns=turns, account=batch.account)
    partitions = [
        PartitionLoad(key=key, rows=sum(part.height for part in batch.valid_parts[key]),
                      reasons=batch.reasons[key], written=written[key],
                      field_issues=[kind for p in batch.field_issues[key] for kind in p.kinds],
                      duplicates=batch.duplicates[key])
        for key in batch.keys
    ]
    return LoadOutcome(table=batch.table, valid=valid, partitions=partitions)


def rejects_check_spec(asset_key: AssetKey) -> AssetCheckSpec:
    return AssetCheckSpec(
        REJECTS_CHECK,
        asset=asset_key,
        description="Every row of the batch passed the table's pandera schema (rejects are kept in "
        "the vendor's rejects table with the reason).",
    )


def rejects_check(outcome: LoadOutcome) -> AssetCheckResult:
    metadata: dict[str, Any] = {
        "rejected_rows": outcome.rejected,
        "reasons": MetadataValue.json(_reason_counts(outcome.reasons)),
        "rejects_table": f"{outcome.table.schema}.rejects",
    }
    if len(outcome.partitions) > 1:
        metadata["rejected_by_partition"] = MetadataValue.json(
            {str(p.key): p.rejected for p in outcome.partitions if p.rejected}
        )
    return AssetCheckResult(
        check_name=REJECTS_CHECK,
        passed=outcome.rejected == 0,
        severity=AssetCheckSeverity.WARN,
        metadata=metadata,
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


def _sql_type(dtype: Any) -> str:
    """DuckDB's name for a polars dtype (given as a class or an instance)."""
    dtype_class = dtype if isinstance(dtype, type) else type(dtype)
    if issubclass(dtype_class, pl.Datetime):
        return "TIMESTAMP"
    return _DTYPE_NAMES.get(dtype_class, str(dtype))


def table_schema(frame: pl.DataFrame, describe: Callable[[str], str | None] = lambda column: None) -> TableSchema:
    """The columns a batch has, with what each holds (``describe``: column name -> description)."""
    return TableSchema(columns=[TableColumn(column, _sql_type(dtype), description=describe(column))
                                for column, dtype in frame.schema.items()])


def declared_table_schema(model: Any, describe: Callable[[str], str | None] = lambda column: None) -> TableSchema:
    """The columns a table's pandera model lets in, declared on the asset so that the UI shows the
    table's shape (and what each column holds) before its first materialization."""
    return TableSchema(columns=[
        TableColumn(name, _sql_type(column.dtype.type), description=column.description or describe(name),
                    constraints=TableColumnConstraints(nullable=column.nullable))
        for name, column in model.to_schema().columns.items()
    ])


def partition_metadata(partition: PartitionLoad) -> dict[str, Any]:
    """What belongs to one partition's materialization: its own rows, not the run's."""
    return {
        "dagster/row_count": partition.rows,
        "partition_key": str(partition.key),
        "rows_before": partition.written.rows_before,
        "rows_added": partition.written.rows_added,
        "rejected_rows": partition.rejected,
        "duplicate_rows_dropped": partition.duplicates,
        "field_issues": len(partition.field_issues),
    }


def materialization_metadata(
    outcome: LoadOutcome, stats: CallStats, started_monotonic: float,
    describe: Callable[[str], str | None] = lambda column: None, **extra: Any,
) -> dict[str, Any]:
    """What a person reading the run in the UI needs: counts, rejects, API usage, duration, preview.

    For a run over several days the counts are the run's totals, and ``rows_per_partition`` splits
    them by day; each day's materialization also carries its own counts (:func:`partition_metadata`).
    """
    valid = outcome.valid
    metadata: dict[str, Any] = {
        "dagster/row_count": valid.height,
        # The UI shows the latest materialization's columns: they carry the descriptions too.
        "dagster/column_schema": table_schema(valid, describe),
        "table": str(outcome.table),
        "partition_key": outcome.partition_key,
        "rows_before": outcome.rows_before,
        "rows_added": outcome.rows_added,
        "rejected_rows": outcome.rejected,
        "duplicate_rows_dropped": outcome.duplicates,
        "field_issues": len(outcome.field_issues),
        "field_issue_reasons": MetadataValue.json(_reason_counts(outcome.field_issues)),
        "duration_s": round(time.monotonic() - started_monotonic, 3),
        "preview": MetadataValue.md(_preview_markdown(valid.head(PREVIEW_ROWS))),
    }
    if len(outcome.partitions) > 1:
        metadata["partitions_in_run"] = len(outcome.partitions)
        metadata["partition_range"] = outcome.partition_key
        metadata["rows_per_partition"] = MetadataValue.table(
            records=[
                TableRecord({"partition": str(p.key), "rows": p.rows, "rows_before": p.written.rows_before,
                             "rows_added": p.written.rows_added, "rejected_rows": p.rejected})
                for p in outcome.partitions
            ],
            schema=_PER_PARTITION_SCHEMA,
        )
    for key, value in stats.as_metadata().items():
        metadata[key] = MetadataValue.json(value) if isinstance(value, dict) else value
    metadata.update(extra)
    return metadata


_PER_PARTITION_SCHEMA = TableSchema(columns=[
    TableColumn("partition", "DATE"), TableColumn("rows", "BIGINT"),
    TableColumn("rows_before", "BIGINT"), TableColumn("rows_added", "BIGINT"),
    TableColumn("rejected_rows", "BIGINT"),
])


def _preview_markdown(frame: pl.DataFrame) -> str:
    if frame.is_empty():
        return "_no rows_"
    header = "| " + " | ".join(frame.columns) + " |"
    rule = "| " + " | ".join("---" for _ in frame.columns) + " |"
    body = ["| " + " | ".join("" if v is None else str(v) for v in row) + " |" for row in frame.iter_rows()]
    return "\n".join([header, rule, *body])
