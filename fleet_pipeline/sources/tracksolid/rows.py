"""Rows out of the several envelopes Tracksolid answers with, and the duplicates windows make."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from fleet_pipeline.ingest.http import VendorResponseError
from fleet_pipeline.sources.tracksolid.errors import VENDOR


def int_or_none(value: object) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def extract_rows(method: str, payload: dict[str, Any]) -> tuple[list[dict[str, Any]], int | None]:
    """Rows and the announced total from any of the envelopes Tracksolid uses.

    ``result: [...]`` (most methods); ``result: null`` with ``data.rows`` + ``dataTotalRows``
    (parking and other report methods) or ``data.{result,totalRecord}``; ``data: [...]``.
    """
    result = payload.get("result")
    data = payload.get("data")
    if isinstance(result, list):
        return result, None
    for container in (result, data):
        if isinstance(container, dict):
            for key in ("rows", "result", "list"):
                if isinstance(container.get(key), list):
                    total = int_or_none(
                        container.get("dataTotalRows", container.get("totalRecord"))
                    )
                    if total is None:
                        total = int_or_none(payload.get("dataTotalRows"))
                    return container[key], total
    if result is None and isinstance(data, list):
        return data, None
    if result is None and data is None:
        return [], None
    raise VendorResponseError(
        VENDOR, method, f"unexpected envelope: result is {type(result).__name__}, "
        f"data is {type(data).__name__}"
    )


def dedupe(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drop exact duplicate rows (inclusive window boundaries return a row twice), keep order."""
    seen: set[str] = set()
    out = []
    for row in rows:
        key = json.dumps(row, sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            out.append(row)
    return out
