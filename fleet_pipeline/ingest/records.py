"""Turn vendor JSON rows into typed polars frames, tolerating the shapes real APIs send.

Vendors send numbers as strings (``"speed": "0"``), empty strings for nulls, field names that drift
between documentation and reality (``alarmTypeName`` / ``alertTypeName``), and several time formats
(``2026-11-20 1:27:23``, ``2026-11-20T01:05:33.000Z``, epoch seconds or milliseconds). A table is
declared as a list of :class:`Col`; :func:`typed_frame` reads each column from the first variant name
present, converts it, and keeps the original record for the rejects table (with the fields the
caller adds to a vendor row, such as the device a one-device call was for, given beside the rows in
``extra`` instead of copied into each of them: a copy per row was the largest cost in memory of a
day of track points). Typing never raises on
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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import polars as pl

from fleet_pipeline.ingest.validation import EXTRA_COLUMN, ISSUES_COLUMN, RAW_COLUMN

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


Extra = Sequence[Mapping[str, Any]]


def _lookup_with(row: Mapping[str, Any], more: Mapping[str, Any], path: str) -> Any:
    """``path`` in the row as ``{**row, **more}`` would have it, without building that dict."""
    if path in more:
        return more[path]
    if "." in path and path.split(".", 1)[0] in more:
        return _lookup({**row, **more}, path)
    return _lookup(row, path)


class _Rows:
    """A chunk's vendor rows and, if given, the fields added to each of them (``extra``)."""

    def __init__(self, rows: list[Mapping[str, Any]], extra: Extra | None) -> None:
        if extra is not None and len(extra) != len(rows):
            raise ValueError(f"typed_frame: {len(extra)} extra field sets for {len(rows)} rows")
        self.rows, self.extra = rows, extra
        # Usually one mapping is shared by all the rows of a device: look at each once.
        self.added = {key for more in {id(m): m for m in extra or ()}.values() for key in more}

    def _added(self, path: str) -> bool:
        return bool(self.added) and (path in self.added or path.split(".", 1)[0] in self.added)

    def value(self, i: int, path: str) -> Any:
        if self.extra is not None and self._added(path):
            return _lookup_with(self.rows[i], self.extra[i], path)
        return _lookup(self.rows[i], path)

    def values(self, path: str) -> list[Any]:
        if self.extra is not None and self._added(path):
            return [_lookup_with(row, more, path) for row, more in zip(self.rows, self.extra)]
        if "." in path:
            return [_lookup(row, path) for row in self.rows]
        return [row.get(path) for row in self.rows]


def _pick(rows: list[Mapping[str, Any]] | _Rows, sources: tuple[str, ...]) -> list[Any]:
    """Per row, the value of the first source that is present and not null."""
    chunk = rows if isinstance(rows, _Rows) else _Rows(rows, None)
    values = chunk.values(sources[0])
    for path in sources[1:]:
        missing = [i for i, value in enumerate(values) if value is None]
        if not missing:
            break
        for i in missing:
            values[i] = chunk.value(i, path)
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


def device_rows(
    answers: Iterable[tuple[Any, Iterable[Mapping[str, Any]]]], fields: Callable[[Any], Mapping[str, Any]],
) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
    """The rows of a chunk of one-device answers (``(device, rows)``) and, for each row, the fields
    that name its device (``fields(device)``, one mapping shared by the device's rows): the
    ``rows`` and ``extra`` of :func:`typed_frame`."""
    rows: list[Mapping[str, Any]] = []
    extra: list[Mapping[str, Any]] = []
    for device, answer in answers:
        start = len(rows)
        rows.extend(answer)
        extra.extend([fields(device)] * (len(rows) - start))
    return rows, extra


def typed_frame(rows: Iterable[Mapping[str, Any]], columns: list[Col], extra: Extra | None = None) -> pl.DataFrame:
    """Typed frame with one column per :class:`Col`, in :data:`ISSUES_COLUMN` each row's typing
    issues (a list of ``{field, value, reason}``, empty for a clean row) and, in :data:`RAW_COLUMN`,
    each row's original record (the object itself, not a copy: only rejected rows and rows with a
    field issue are ever serialised, by ``split_valid``, so the rows must not be modified afterwards).

    ``extra``, one mapping per row (one shared by all the rows of a device costs a pointer a row),
    holds fields the caller adds to the vendor's rows: each row is typed, and its record kept (in
    :data:`EXTRA_COLUMN`), as ``{**row, **extra[i]}`` would be."""
    rows = rows if isinstance(rows, list) else list(rows)
    chunk = _Rows(rows, extra)
    series = [_column(col.name, _pick(chunk, col.sources), col.kind) for col in columns]
    kept = [pl.Series(RAW_COLUMN, rows, dtype=pl.Object)]
    if extra is not None:
        kept.append(pl.Series(EXTRA_COLUMN, extra, dtype=pl.Object))
    frame = pl.DataFrame([*series, *kept])
    flagged_rows = any(INVALID_FIELDS in row for row in rows)
    flags = [_client_flags(rows, col) if flagged_rows else {} for col in columns]
    typed = []
    for column, col, flagged in zip(series, columns, flags):
        value = _typed(column, col.kind)
        if flagged:
            value = pl.when(pl.lit(pl.Series([i in flagged for i in range(len(rows))]))).then(None).otherwise(value)
        typed.append(value.alias(col.name))
    result = frame.select(*typed, *[pl.col(column.name) for column in kept])
    # Only a column with more nulls typed than sent can have an issue (blanks aside): the others,
    # nearly all of them, skip the per-row issue expression.
    issues = [_issue(column, col, result[col.name], flagged) for column, col, flagged in zip(series, columns, flags)
              if (result[col.name].is_null() & column.is_not_null()).any()]
    return result.select(*[pl.col(col.name) for col in columns], _issue_lists(issues, result.height),
                         *[pl.col(column.name) for column in kept])


def _issue_lists(issues: list[pl.Series], height: int) -> pl.Series:
    """:data:`ISSUES_COLUMN` from the issue columns (a struct per row, null where none): each row's
    issues, in column order. Only the rows with an issue are listed one by one; the others get an
    empty list (a list of every column's null for each of 100,000 rows cost 70 MiB)."""
    if not issues:
        return pl.Series(ISSUES_COLUMN, [], dtype=pl.List(ISSUE_DTYPE)).extend_constant([], height)
    listed = pl.DataFrame(issues).with_row_index("_row").filter(
        pl.any_horizontal(pl.exclude("_row").is_not_null())
    ).select("_row", pl.concat_list(pl.exclude("_row")).list.drop_nulls().alias(ISSUES_COLUMN))
    every_row = pl.DataFrame({"_row": pl.int_range(height, eager=True, dtype=pl.UInt32)})
    return (every_row.join(listed, on="_row", how="left", maintain_order="left")[ISSUES_COLUMN]
            .fill_null(pl.lit([], dtype=pl.List(ISSUE_DTYPE))))
