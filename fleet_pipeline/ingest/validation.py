"""Batch validation: split a typed batch into rows that pass its pandera schema and rejects.

Each source types its vendor rows into a polars frame that carries, per row, the original record in
:data:`RAW_COLUMN` (the record object, or its JSON text). :func:`split_valid` runs the table's pandera
schema lazily (every failure, not just the first), keeps the rows that pass, and returns the others
with a readable reason and the record as JSON — they go to the rejects table instead of being
dropped silently. Only rejected records are serialised: a batch is mostly valid rows.

Typing (``fleet_pipeline.ingest.records``) never raises on a vendor value; it lists what did not convert in
:data:`ISSUES_COLUMN`. A row whose required field did not convert is rejected with that reason (the
vendor's value, not a bare "null"); a row whose optional field did not convert is kept with the
field NULL, and the problem is returned as a field issue so that the vendor's garbage stays visible.

The reusable checks below (IMEI Luhn digit, coordinates) are shared by every vendor's schema.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandera.polars as pa
import polars as pl
from pandera.api.polars.types import PolarsData

RAW_COLUMN = "_raw"
# Per row, the fields its caller added to the vendor's record (a mapping, see records.typed_frame):
# the record is ``{**raw, **extra}``. Absent when nothing was added.
EXTRA_COLUMN = "_raw_extra"
# Per row, the fields whose vendor value did not convert: a list of {field, value, reason}.
ISSUES_COLUMN = "_issues"
# What a reject or field issue names when the failing check is about the whole row.
ROW_FIELD = "(row)"


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
    # Plain text: the UI shows it as written (no markdown), and the browser test finds it so.
    "account": "The vendor account the row was extracted with: default for the vendor's single-account "
               "variables or the sandbox, else an account name of FLEET_ACCOUNTS_FILE.",
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
class Problem:
    """One rejected row, or one kept row with a field issue: which fields, their vendor values,
    why, and the record as the vendor sent it (JSON)."""

    fields: str
    values: str | None
    reason: str
    record: str
    # The reason without the vendor's values, to count problems by kind: "speed_kmh: not a number".
    kinds: tuple[str, ...] = ()


@dataclass(frozen=True)
class SplitBatch:
    valid: pl.DataFrame
    rejects: list[Problem]
    field_issues: list[Problem]

    @property
    def reasons(self) -> list[str]:
        return [problem.reason for problem in self.rejects]

    @property
    def records(self) -> list[str]:
        return [problem.record for problem in self.rejects]

    @property
    def rejected(self) -> int:
        return len(self.rejects)


FieldFailure = tuple[str, str | None, str, str]  # field, vendor value, reason, kind (reason without the value)


def _schema_failures(frame: pl.DataFrame, schema: type[pa.DataFrameModel]) -> dict[int, list[FieldFailure]]:
    """Row index -> every check the row failed (pandera, lazily: all of them)."""
    try:
        schema.validate(frame, lazy=True)
        return {}
    except pa.errors.SchemaErrors as errors:
        cases = errors.failure_cases
        if cases.filter(pl.col("index").is_null()).height:
            # A schema-level failure (missing column, wrong dtype) is a defect in our typing code or
            # a vendor change, not a bad row: fail loudly instead of rejecting everything.
            raise
        failed: dict[int, list[FieldFailure]] = {}
        for row in cases.iter_rows(named=True):
            if row["schema_context"] == "Column":
                label = f"{row['column']}: {row['check']}"
                failure = (row["column"], row["failure_case"], label, label)
            else:
                failure = (ROW_FIELD, None, row["check"], row["check"])
            failed.setdefault(int(row["index"]), []).append(failure)
        return failed


def _typing_failures(frame: pl.DataFrame) -> dict[int, list[FieldFailure]]:
    if ISSUES_COLUMN not in frame.columns:
        return {}
    flagged = frame.select(pl.int_range(pl.len()).alias("_row"), ISSUES_COLUMN).filter(
        pl.col(ISSUES_COLUMN).list.len() > 0
    )
    failures: dict[int, list[FieldFailure]] = {}
    for row, issues in flagged.iter_rows():
        for issue in issues:
            failures.setdefault(row, []).append((
                issue["field"], issue["value"], f"{issue['field']}: {issue['value']!r} is {issue['reason']}",
                f"{issue['field']}: {issue['reason']}",
            ))
    return failures


def _record_at(frame: pl.DataFrame) -> Callable[[int], Any]:
    """Row index -> the row's original record, with the fields its caller added."""
    raw = frame[RAW_COLUMN]
    if EXTRA_COLUMN not in frame.columns:
        return raw.__getitem__
    extra = frame[EXTRA_COLUMN]
    return lambda i: {**raw[i], **extra[i]}


def _problem(failures: list[FieldFailure], record: Any) -> Problem:
    failures = list(dict.fromkeys(failures))
    # One value per failing field, in the order of the fields; "null" where the vendor sent none.
    by_field: dict[str, str | None] = {}
    for field, value, _, _ in failures:
        if by_field.get(field) is None:
            by_field[field] = value
    return Problem(
        fields="; ".join(by_field),
        values=None if all(value is None for value in by_field.values())
        else "; ".join("null" if value is None else str(value) for value in by_field.values()),
        reason="; ".join(dict.fromkeys(reason for _, _, reason, _ in failures)),
        record=raw_json(record),
        kinds=tuple(dict.fromkeys(kind for _, _, _, kind in failures)),
    )


def split_valid(frame: pl.DataFrame, schema: type[pa.DataFrameModel]) -> SplitBatch:
    """Validate ``frame`` against ``schema``; return passing rows (schema columns only), rejects,
    and the field issues of kept rows (an optional field whose vendor value did not convert)."""
    if RAW_COLUMN not in frame.columns:
        raise ValueError(f"batch for {schema.__name__} has no {RAW_COLUMN} column to report rejects with")
    columns = list(schema.to_schema().columns)
    checked = _schema_failures(frame.drop(RAW_COLUMN, EXTRA_COLUMN, ISSUES_COLUMN, strict=False), schema)
    typing = _typing_failures(frame)
    bad = sorted(checked)
    raw = _record_at(frame)
    rejects = []
    for i in bad:
        mistyped = {failure[0] for failure in typing.get(i, [])}
        # "not_nullable" on a field that did not convert says less than the typing reason does.
        schema_reasons = [f for f in checked[i] if not (f[0] in mistyped and f[2].endswith("not_nullable"))]
        rejects.append(_problem(typing.get(i, []) + schema_reasons, raw(i)))
    issues = [_problem(typing[i], raw(i)) for i in sorted(set(typing) - set(checked))]
    valid = frame.select(columns) if not bad else frame.with_row_index("_row").filter(
        ~pl.col("_row").is_in(bad)).select(columns)
    return SplitBatch(valid=valid, rejects=rejects, field_issues=issues)
