"""The rows taken out of Navixy answers: their shape checked, filtered to a window, ordered.

Rows stay as the vendor sent them; what is decided here is only which rows a window owns and
whether an answer is shaped as the API documents.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from fleet_pipeline.ingest.http import VendorResponseError
from fleet_pipeline.sources.navixy.endpoints import VENDOR


@dataclass
class StatesResult:
    """``tracker/get_states`` for many trackers: blocked and deleted ones are listed, not fatal."""

    states: dict[int, dict[str, Any]] = field(default_factory=dict)
    blocked: list[int] = field(default_factory=list)
    missing: list[int] = field(default_factory=list)


class WindowRows(NamedTuple):
    """Rows of a time window and the platform's warning that part of it was out of reach.

    ``limit_exceeded`` is true when the window reaches beyond the tracker's storage period: the
    platform then drops those rows silently, so the caller must not treat the rows as complete.
    """

    rows: list[dict[str, Any]]
    limit_exceeded: bool


def list_of(payload: dict[str, Any], key: str, method: str) -> list[Any]:
    value = payload.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise VendorResponseError(VENDOR, method, f"{key!r} is {type(value).__name__}, not a list")
    return value


def require_rows(rows: list[Any], method: str) -> None:
    """Rows are objects; anything else means the answer's shape is not what the API documents."""
    for row in rows:
        if not isinstance(row, dict):
            raise VendorResponseError(VENDOR, method, f"a row is {type(row).__name__}, not an object")


def timed(row: dict[str, Any], key: str) -> bool:
    return isinstance(row.get(key), datetime)


def in_window(rows: Iterable[dict[str, Any]], key: str, begin: datetime, end: datetime
              ) -> list[dict[str, Any]]:
    """The rows of ``[begin, end)``, and the rows whose time is missing or unreadable: those cannot
    be placed, so they are handed on for validation to reject with their reason, not dropped."""
    return [r for r in rows if not timed(r, key) or begin <= r[key] < end]


def by_time(key: str, *then: str) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """Sort key: rows without a readable time first, then by time (and ``then`` as text)."""
    return lambda r: (timed(r, key), r[key] if timed(r, key) else datetime.min,
                      *(str(r.get(name)) for name in then))


def device_id_text(value: object) -> str:
    """The device id as the digits it is; a float-typed number must not become ``'1.2e+14'``."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()
