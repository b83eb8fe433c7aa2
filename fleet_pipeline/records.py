"""Turn vendor JSON rows into typed polars frames, tolerating the shapes real APIs send.

Vendors send numbers as strings (``"speed": "0"``), empty strings for nulls, field names that drift
between documentation and reality (``alarmTypeName`` / ``alertTypeName``), and several time formats
(``2026-11-20 1:27:23``, ``2026-11-20T01:05:33.000Z``, epoch seconds or milliseconds). A table is
declared as a list of :class:`Col`; :func:`typed_frame` reads each column from the first variant name
present, converts it, and keeps the original record as JSON for the rejects table. A value that does
not convert becomes null, so the table's pandera schema decides whether the row is rejected.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import polars as pl

from fleet_pipeline.validation import RAW_COLUMN

Kind = Literal["str", "float", "int", "bool", "time", "date"]

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


def _pick(row: Mapping[str, Any], sources: tuple[str, ...]) -> Any:
    for key in sources:
        value = _lookup(row, key)
        if value is not None:
            return value
    return None


def _as_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def typed_frame(rows: Iterable[Mapping[str, Any]], columns: list[Col]) -> pl.DataFrame:
    """Typed frame with one column per :class:`Col` plus the raw record of each row."""
    rows = list(rows)
    text = {
        col.name: [_as_text(_pick(row, col.sources)) for row in rows] for col in columns
    }
    text[RAW_COLUMN] = [json.dumps(row, sort_keys=True, default=str) for row in rows]
    frame = pl.DataFrame(text, schema={name: pl.String for name in text})
    return frame.select(
        *[_convert(pl.col(col.name), col.kind).alias(col.name) for col in columns],
        pl.col(RAW_COLUMN),
    )
