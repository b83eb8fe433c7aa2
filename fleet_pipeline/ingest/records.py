"""Turn vendor JSON rows into typed polars frames, tolerating the shapes real APIs send.

Vendors send numbers as strings (``"speed": "0"``), empty strings for nulls, field names that drift
between documentation and reality (``alarmTypeName`` / ``alertTypeName``), and several time formats
(``2026-11-20 1:27:23``, ``2026-11-20T01:05:33.000Z``, epoch seconds or milliseconds). A table is
declared as a list of :class:`Col`; :func:`typed_frame` reads each column from the first variant name
present, converts it, and keeps the original record for the rejects table. Typing never raises on
a vendor value: a value that does not convert becomes null and is named, with the vendor's text and
why, in the row's :data:`ISSUES_COLUMN`; ``validation.split_valid`` then rejects the row when the
field is required and keeps it (with the field issue recorded) when it is optional. A client that
finds a value unusable itself (Navixy: a date-time without a UTC offset) leaves it as sent and names
it under :data:`INVALID_FIELDS` in the row, with the reason.

The meaning of a cell is defined on its text (:func:`_as_text`, then :func:`_convert`), but typing is
column by column: a column whose values are all of one plain type (strings, ints, floats, bools,
naive datetimes) goes to polars in one piece, and only mixed or unusual columns are turned into text
value by value. A day of 10,000 devices is millions of rows, so per-cell Python is the cost that
counts; both routes give the same result (``fleet_pipeline_tests/ingest/test_records.py`` holds them to it).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import polars as pl

from fleet_pipeline.ingest.validation import ISSUES_COLUMN, RAW_COLUMN

Kind = Literal["str", "float", "int", "bool", "time", "date"]

# A row's key holding {vendor field path: reason} for values its client found unusable.
INVALID_FIELDS = "_invalid_fields"
ISSUE_DTYPE = pl.Struct({"field": pl.String, "value": pl.String, "reason": pl.String})
_EXPECTED = {"float": "a number", "int": "a whole number", "bool": "true or false",
             "time": "a date-time", "date": "a date"}

_TRUE = ("1", "true", "on", "yes")
_FALSE = ("0", "false", "off", "no")


@dataclass(frozen=True)
class Col:
    """One output column: its name, the vendor field names it may arrive under (dotted paths reach
    into nested objects, e.g. ``source.device_id``), and its kind."""

    name: str
    sources: tuple[str, ...]
    kind: Kind = "str"

    @staticmethod
    def of(name: str, *sources: str, kind: Kind = "str") -> Col:
        return Col(name, sources or (name,), kind)


def vendor_time(expr: pl.Expr) -> pl.Expr:
    """Parse a vendor time string to naive UTC: padded or not, ISO ``Z``, epoch s or ms."""
    text = expr.str.strip_chars()
    iso = text.str.replace(r"^(\d{4}-\d{2}-\d{2})T(\d{1,2}:\d{2}:\d{2})(\.\d+)?(Z|\+00:00)?$", "$1 $2")
    parsed = iso.str.to_datetime("%Y-%m-%d %H:%M:%S", strict=False, time_unit="us")
    digits = text.str.contains(r"^\d{10}$|^\d{13}$")
    epoch = text.cast(pl.Int64, strict=False)
    from_epoch = (
        pl.when(text.str.len_chars() == 13).then(epoch * 1_000).otherwise(epoch * 1_000_000)
    ).cast(pl.Datetime("us"))
    return pl.when(digits.fill_null(False)).then(from_epoch).otherwise(parsed)


def _convert(expr: pl.Expr, kind: Kind) -> pl.Expr:
    text = expr.str.strip_chars()
    text = pl.when(text == "").then(None).otherwise(text)
    if kind == "str":
        return text
    if kind == "float":
        return text.cast(pl.Float64, strict=False)
    if kind == "int":
        return text.cast(pl.Float64, strict=False).round(0).cast(pl.Int64, strict=False)
    if kind == "bool":
        lowered = text.str.to_lowercase()
        return (
            pl.when(lowered.is_in(_TRUE)).then(True).when(lowered.is_in(_FALSE)).then(False).otherwise(None)
        )
    if kind == "time":
        return vendor_time(text)
    if kind == "date":
        return text.str.slice(0, 10).str.to_date("%Y-%m-%d", strict=False)
    raise ValueError(f"unknown column kind {kind!r}")


def _lookup(row: Mapping[str, Any], path: str) -> Any:
    """``row[path]``, or a nested value for a dotted path such as ``gps.location.lat``."""
    if path in row:
        return row[path]
    value: Any = row
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _values(rows: list[Mapping[str, Any]], path: str) -> list[Any]:
    if "." in path:
        return [_lookup(row, path) for row in rows]
    return [row.get(path) for row in rows]


def _pick(rows: list[Mapping[str, Any]], sources: tuple[str, ...]) -> list[Any]:
    """Per row, the value of the first source that is present and not null."""
    values = _values(rows, sources[0])
    for path in sources[1:]:
        missing = [i for i, value in enumerate(values) if value is None]
        if not missing:
            break
        for i in missing:
            values[i] = _lookup(rows[i], path)
    return values


def _as_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)


_NONE = type(None)
# Building a typed Series refuses values that do not fit (ints beyond 64 bits, mixed naive and
# aware datetimes): such a column takes the text route instead.
_UNFIT = (TypeError, ValueError, OverflowError, pl.exceptions.PolarsError)


def _column(name: str, values: list[Any], kind: Kind) -> pl.Series:
    """The column as polars can take it in one piece: text, or a type that :func:`_typed` converts
    exactly as it would convert the value's text."""
    types = set(map(type, values))
    types.discard(_NONE)
    if types <= {str}:
        return pl.Series(name, values, dtype=pl.String)
    try:
        if kind in ("float", "int") and types <= {int, float}:
            return pl.Series(name, values, dtype=pl.Float64)
        if types == {int}:
            return pl.Series(name, values, dtype=pl.Int64).cast(pl.String)
        if kind == "bool" and types == {bool}:
            return pl.Series(name, values, dtype=pl.Boolean)
        if kind == "time" and types == {datetime}:
            moments = pl.Series(name, values)
            if moments.dtype == pl.Datetime("us"):
                return moments
    except _UNFIT:
        pass
    return pl.Series(name, [_as_text(value) for value in values], dtype=pl.String)


def _typed(column: pl.Series, kind: Kind) -> pl.Expr:
    expr = pl.col(column.name)
    if column.dtype == pl.Float64:
        return expr.round(0).cast(pl.Int64, strict=False) if kind == "int" else expr
    if column.dtype == pl.Datetime("us"):
        # str() of a datetime with a fraction of a second does not match the vendor formats, so
        # its text converts to null; keep that.
        return pl.when(expr.dt.microsecond() == 0).then(expr)
    if column.dtype == pl.Boolean:
        return expr
    return _convert(expr, kind)


def _client_flags(rows: list[Mapping[str, Any]], col: Col) -> dict[int, str]:
    """Row index -> reason, for the rows whose client flagged this column's vendor field."""
    flags: dict[int, str] = {}
    for i, row in enumerate(rows):
        invalid = row.get(INVALID_FIELDS)
        if invalid:
            reason = next((invalid[path] for path in col.sources if path in invalid), None)
            if reason is not None:
                flags[i] = reason
    return flags


def _issue(column: pl.Series, col: Col, typed: pl.Series, flags: dict[int, str]) -> pl.Series:
    """The column's typing issue per row (a struct of field, value, reason), or null: the vendor
    sent a value (not null, not blank) that did not convert, or one its client flagged."""
    raw, converted = pl.col("raw"), pl.col("typed")
    text = raw.cast(pl.String) if column.dtype != pl.Datetime("us") else raw.dt.strftime("%Y-%m-%d %H:%M:%S%.f")
    present = raw.is_not_null() & (text.str.strip_chars() != "")
    reason: pl.Expr = pl.lit(f"not {_EXPECTED.get(col.kind, col.kind)}")
    failed = present & converted.is_null() if col.kind != "str" else pl.lit(False)
    if flags:
        flagged = pl.Series([flags.get(i) for i in range(column.len())], dtype=pl.String)
        failed = failed | flagged.is_not_null()
        reason = pl.when(flagged.is_not_null()).then(pl.lit(flagged)).otherwise(reason)
    issue = pl.when(failed).then(pl.struct(field=pl.lit(col.name), value=text, reason=reason))
    return pl.DataFrame({"raw": column, "typed": typed}).select(issue.alias(col.name)).to_series()


def typed_frame(rows: Iterable[Mapping[str, Any]], columns: list[Col]) -> pl.DataFrame:
    """Typed frame with one column per :class:`Col`, in :data:`ISSUES_COLUMN` each row's typing
    issues (a list of ``{field, value, reason}``, empty for a clean row) and, in :data:`RAW_COLUMN`,
    each row's original record (the object itself, not a copy: only rejected rows are ever
    serialised, by ``split_valid``, so the rows must not be modified afterwards)."""
    rows = rows if isinstance(rows, list) else list(rows)
    series = [_column(col.name, _pick(rows, col.sources), col.kind) for col in columns]
    frame = pl.DataFrame([*series, pl.Series(RAW_COLUMN, rows, dtype=pl.Object)])
    flagged_rows = any(INVALID_FIELDS in row for row in rows)
    flags = [_client_flags(rows, col) if flagged_rows else {} for col in columns]
    typed = []
    for column, col, flagged in zip(series, columns, flags):
        value = _typed(column, col.kind)
        if flagged:
            value = pl.when(pl.lit(pl.Series([i in flagged for i in range(len(rows))]))).then(None).otherwise(value)
        typed.append(value.alias(col.name))
    result = frame.select(*typed, pl.col(RAW_COLUMN))
    # Only a column with more nulls typed than sent can have an issue (blanks aside): the others,
    # nearly all of them, skip the per-row issue expression.
    issues = [_issue(column, col, result[col.name], flagged) for column, col, flagged in zip(series, columns, flags)
              if (result[col.name].is_null() & column.is_not_null()).any()]
    issue_list = (pl.concat_list(issues).list.drop_nulls() if issues
                  else pl.lit([], dtype=pl.List(ISSUE_DTYPE)))
    return result.select(*[pl.col(col.name) for col in columns], issue_list.alias(ISSUES_COLUMN), pl.col(RAW_COLUMN))
