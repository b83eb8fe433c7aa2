"""Reading what an in-process run of source assets left behind: the warehouse's rows and the
metadata of a table's materialization."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import duckdb


def query(resources: dict, sql: str, params: list[Any] | None = None) -> list[tuple]:
    """Rows of ``sql`` on the run's warehouse file (read-only, after the run)."""
    with duckdb.connect(resources["duckdb"].database, read_only=True) as conn:
        return conn.execute(sql, params or []).fetchall()


def materialization_metadata(result, table: str, having: Callable[[dict], bool] = lambda _: True) -> dict:
    """Plain values of the metadata of ``table``'s first materialization in ``result`` that ``having`` accepts."""
    for event in result.get_asset_materialization_events():
        materialization = event.event_specific_data.materialization
        if materialization.asset_key.path[-1] == table and having(materialization.metadata):
            return {k: getattr(v, "value", v) for k, v in materialization.metadata.items()}
    raise AssertionError(f"no materialization of {table} in the run")
