"""Batch validation: split a typed batch into rows that pass its pandera schema and rejects.

Each source types its vendor rows into a polars frame that carries, per row, the original record in
:data:`RAW_COLUMN` (the record object, or its JSON text). :func:`split_valid` runs the table's pandera
schema lazily (every failure, not just the first), keeps the rows that pass, and returns the others
with a readable reason and the record as JSON — they go to the rejects table instead of being
dropped silently. Only rejected records are serialised: a batch is mostly valid rows.

The reusable checks below (IMEI Luhn digit, coordinates) are shared by every vendor's schema.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pandera.polars as pa
import polars as pl
from pandera.api.polars.types import PolarsData

RAW_COLUMN = "_raw"


def raw_json(record: Any) -> str:
    """The original record as the rejects table keeps it (keys sorted, anything else as text)."""
    if isinstance(record, str):
        return record
    return json.dumps(record, sort_keys=True, default=str)


def luhn_valid(column: pl.Expr, length: int = 15) -> pl.Expr:
    """True where ``column`` is ``length`` digits whose last one is the Luhn check digit."""
    digits = [column.str.slice(i, 1).cast(pl.Int32, strict=False) for i in range(length)]
    total = pl.lit(0)
    for position, digit in enumerate(reversed(digits)):
        if position % 2 == 1:
            doubled = digit * 2
            digit = pl.when(doubled > 9).then(doubled - 9).otherwise(doubled)
        total = total + digit
    return column.str.contains(rf"^\d{{{length}}}$") & ((total % 10) == 0)


# Columns every vendor's raw tables share, described once (each vendor's schemas module describes
# its own columns in COLUMN_DESCRIPTIONS).
SHARED_COLUMN_DESCRIPTIONS: dict[str, str] = {
    "imei": "Device IMEI, 15-digit string with Luhn check digit (the identity across vendors).",
    "partition_date": "UTC day of the partition the row belongs to.",
    "snapshot_date": "UTC day of the daily snapshot.",
    "snapshot_at": "When the snapshot was taken (naive UTC).",
}


class DeviceRecord(pa.DataFrameModel):
    """Base of every vendor table: rows are keyed by a device's IMEI, kept as a 15-character string."""

    imei: str = pa.Field(nullable=False)

    @pa.check("imei", name="imei_luhn", error="IMEI must be 15 digits with a valid Luhn check digit")
    def _imei_luhn(cls, data: PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(luhn_valid(pl.col(data.key)).fill_null(False))


def latitude_field(nullable: bool = False) -> object:
    return pa.Field(ge=-90.0, le=90.0, nullable=nullable)


def longitude_field(nullable: bool = False) -> object:
    return pa.Field(ge=-180.0, le=180.0, nullable=nullable)


def not_null_island(lat: str = "lat", lng: str = "lng") -> pl.Expr:
    """(0, 0) is what expired or fix-less devices send; it is never a real vehicle position."""
    return ~((pl.col(lat) == 0.0) & (pl.col(lng) == 0.0)).fill_null(False)


# Fastest plausible road vehicle speed; anything above is a unit or sensor error.
MAX_SPEED_KMH = 300.0


def ordered(data: PolarsData, start: str, end: str) -> pl.LazyFrame:
    """A dataframe check: ``end`` is not before ``start`` (rows missing either pass here)."""
    return data.lazyframe.select((pl.col(end) >= pl.col(start)).fill_null(True))


@dataclass(frozen=True)
class SplitBatch:
    valid: pl.DataFrame
    reasons: list[str]
    records: list[str]

    @property
    def rejected(self) -> int:
        return len(self.reasons)


def split_valid(frame: pl.DataFrame, schema: type[pa.DataFrameModel]) -> SplitBatch:
    """Validate ``frame`` against ``schema``; return passing rows (schema columns only) and rejects."""
    if RAW_COLUMN not in frame.columns:
        raise ValueError(f"batch for {schema.__name__} has no {RAW_COLUMN} column to report rejects with")
    columns = list(schema.to_schema().columns)
    indexed = frame.with_row_index("_row")
    try:
        schema.validate(indexed.drop("_row", RAW_COLUMN), lazy=True)
        failed: dict[int, list[str]] = {}
    except pa.errors.SchemaErrors as errors:
        cases = errors.failure_cases
        if cases.filter(pl.col("index").is_null()).height:
            # A schema-level failure (missing column, wrong dtype) is a defect in our typing code or
            # a vendor change, not a bad row: fail loudly instead of rejecting everything.
            raise
        failed = {}
        for row in cases.iter_rows(named=True):
            label = row["check"] if row["schema_context"] != "Column" else f"{row['column']}: {row['check']}"
            failed.setdefault(int(row["index"]), []).append(label)
    bad = sorted(failed)
    rejected = indexed.filter(pl.col("_row").is_in(bad)).sort("_row")
    valid = indexed.filter(~pl.col("_row").is_in(bad)).select(columns)
    return SplitBatch(
        valid=valid,
        reasons=["; ".join(dict.fromkeys(failed[i])) for i in rejected["_row"].to_list()],
        records=[raw_json(record) for record in rejected[RAW_COLUMN].to_list()],
    )
