"""AOVX assets: ``raw_aovx.ota_reports`` (a day's OTA attempts), ``raw_aovx.ota_history`` (all of
them, over AOVX's retention window) and ``raw_aovx.terminals`` (the terminals reported on).

The report selects attempts by their last update, so an attempt moves to a later day while it
progresses (sent -> downloading -> succeeded). ``ota_reports`` is partitioned by that day;
re-running the trailing days keeps every attempt in the partition of its latest state, once.

AOVX offers no other source of a terminal's firmware than its OTA history: the version a terminal
runs is the target of its latest successful attempt, however long ago that was. A run of the daily
partitions only sees attempts updated on its days, so a model whose last rollout was weeks ago
would have no known firmware at all. ``ota_history`` is therefore loaded once over the vendor's
whole retention window and then kept up to date (see its docstring).
"""

import dataclasses
import json
from datetime import datetime, time, timedelta
from typing import Any

import polars as pl
from dagster import AssetExecutionContext, MaterializeResult, MetadataValue

from fleet_pipeline.automation.anomaly import Fleet
from fleet_pipeline.automation.partitions import MONTH_PER_RUN, days_between
from fleet_pipeline.ingest.records import typed_frame
from fleet_pipeline.ingest.source_assets import Extraction, Source, Table, extraction, load
from fleet_pipeline.ingest.warehouse import TableRef, WarehouseResource
from fleet_pipeline.sources.aovx import schemas, settings
from fleet_pipeline.sources.aovx.client import AovxClient
from fleet_pipeline.sources.aovx.resources import AovxResource

SOURCE = Source(
    schema="raw_aovx", group="aovx", vendor="AOVX OTA report",
    # AOVX devices are tracked on Navixy: its tracker list says how many there are
    fleet=Fleet("AOVX devices on Navixy", ((TableRef("raw_navixy", "trackers"), "model ilike 'aovx%'"),)),
    tables={
        "ota_reports": Table(schemas.OtaReportSchema, schemas.OTA_REPORT_COLUMNS, key=("attempt_id",)),
        "ota_history": Table(schemas.OtaReportSchema, schemas.OTA_REPORT_COLUMNS, key=("attempt_id",)),
        "terminals": Table(schemas.TerminalSchema, schemas.TERMINAL_COLUMNS, key=("terminal_id",)),
    },
    column_descriptions=schemas.COLUMN_DESCRIPTIONS,
)
_UPGRADE_FIELDS = {"TYPE": "upgrade_type", "MODE": "upgrade_mode", "PROTOCOL": "upgrade_protocol",
                   "VERSION": "firmware_version", "URL": "firmware_url"}
# Each history run re-reads from a day before the newest update it holds: an update the vendor
# recorded late, or stamped with a clock a little behind ours, is not skipped.
HISTORY_OVERLAP = timedelta(days=1)


def _upgrade_info(raw: Any) -> dict[str, Any]:
    """``upgradeInfo`` is a JSON object encoded inside a string (docs/vendor-apis/FIELD-NOTES.md); {} when unparsable."""
    try:
        parsed = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _report_rows(run: Extraction, client: AovxClient, terminals: dict[str, str | None],
                 start: datetime, end: datetime) -> pl.DataFrame:
    """The attempts last updated in [start, end), typed, each filed under the UTC day of that update."""
    enriched = []
    for row in client.ota_reports(list(terminals), start, end):
        info = _upgrade_info(row.get("upgradeInfo"))
        extra = {column: info.get(key) for key, column in _UPGRADE_FIELDS.items()}
        enriched.append({**row, **extra, "_imei": terminals.get(row.get("terminalId"))})
    typed = typed_frame(enriched, schemas.OTA_REPORT_COLUMNS).with_columns(
        *[pl.Series(column, [None if r[column] is None else str(r[column]) for r in enriched], dtype=pl.String)
          for column in _UPGRADE_FIELDS.values()],
        status=pl.col("status_code").replace_strict(schemas.STATUS_NAMES, default=None, return_dtype=pl.String),
    )
    return run.by_day(typed, "last_update_at").drop("upgrade_info")


def _by_status(typed: pl.DataFrame) -> MetadataValue:
    return MetadataValue.json(dict(typed.group_by("status").len().sort("status").iter_rows()))


@SOURCE.asset("ota_reports", "OTA attempts per terminal and UTC day of their last update "
              "(POST system/asset/command/queryTerminalOtaReport, paged): upgrade info parsed into "
              "columns, status mapped to a name.", partitioned=True,
              # queryTerminalOtaReport takes any startTime/endTime (the doc's example spans two days)
              # and pages: a month is paged once, and each attempt is reported once, in the window
              # of its latest update, whichever window that is.
              backfill=MONTH_PER_RUN)
def ota_reports(context: AssetExecutionContext, aovx: AovxResource, duckdb: WarehouseResource) -> MaterializeResult:
    with extraction(context, aovx.client) as run:
        terminals = aovx.terminals(run.client)
        typed = _report_rows(run, run.client, terminals, *run.bounds)
        return load(context, duckdb, SOURCE, run, "ota_reports", typed,
                    terminals=len(terminals), attempts_by_status=_by_status(typed))


def _newest_update(duckdb: WarehouseResource, context: AssetExecutionContext) -> datetime | None:
    """The latest ``last_update_at`` already in ``raw_aovx.ota_history``; None before its first run."""
    with duckdb.get_connection(holder=f"raw_aovx.ota_history watermark (run {context.run_id[:8]})",
                               on_wait=context.log.info) as conn:
        exists = conn.execute("select count(*) from information_schema.tables "
                              "where table_schema = 'raw_aovx' and table_name = 'ota_history'").fetchone()
        if not exists or not exists[0]:
            return None
        newest = conn.execute("select max(last_update_at) from raw_aovx.ota_history").fetchone()
    return None if newest is None else newest[0]


@SOURCE.asset("ota_history", "Every OTA attempt AOVX still holds, filed by the UTC day of its last "
              "update: the first run reads AOVX's whole retention window (AOVX_OTA_HISTORY_DAYS, 365), "
              "each later run from a day before the newest update it holds up to now. The firmware of "
              "an AOVX terminal is the target of its latest successful attempt here.", partitioned=False)
def ota_history(context: AssetExecutionContext, aovx: AovxResource, duckdb: WarehouseResource) -> MaterializeResult:
    """Loaded once over the retention window, then extended incrementally.

    Not a Dagster-partitioned asset: its window is not a run's days but "everything the vendor has
    that this table has not seen". The window starts at the newest ``last_update_at`` already held
    minus ``HISTORY_OVERLAP`` (or, on the first run and whenever the table is empty, at now minus
    ``AOVX_OTA_HISTORY_DAYS``), rounded down to 00:00 UTC, and ends now. Every UTC day of the window
    is replaced in one transaction, so a re-run is idempotent and a crash leaves the old rows. An
    attempt whose state moved on since an earlier run (sent, then succeeded days later) appears in
    the day of each state it was read in; the latest ``last_update_at`` per ``attempt_id`` is its
    state (``fct_ota_attempts`` keeps that one). Nothing older than the retention window is ever
    deleted here, so the history outlives AOVX's own.
    """
    with extraction(context, aovx.client) as snapshot_run:
        now = snapshot_run.now
        oldest = now - timedelta(days=settings.aovx_history_days())
        newest = _newest_update(duckdb, context)
        start = oldest if newest is None else max(oldest, newest - HISTORY_OVERLAP)
        start = datetime.combine(start.date(), time())
        run = dataclasses.replace(snapshot_run, days=tuple(days_between(start.date(), now.date())))
        context.log.info(f"AOVX OTA history from {start} to {now} "
                         f"({'first load' if newest is None else f'newest held update {newest}'})")
        terminals = aovx.terminals(run.client)
        typed = _report_rows(run, run.client, terminals, start, now)
        return load(context, duckdb, SOURCE, run, "ota_history", typed,
                    terminals=len(terminals), window_start=str(start), window_end=str(now),
                    first_load=newest is None, attempts_by_status=_by_status(typed))


@SOURCE.asset("terminals", "Daily snapshot of the AOVX terminals reported on (the sandbox lists them with "
              "their IMEI; live mode names them in AOVX_TERMINAL_IDS): the devices whose firmware AOVX "
              "manages, also those without any OTA attempt.", partitioned=False)
def terminals(context: AssetExecutionContext, aovx: AovxResource, duckdb: WarehouseResource) -> MaterializeResult:
    with extraction(context, aovx.client) as run:
        typed = typed_frame(aovx.terminal_rows(run.client), schemas.TERMINAL_COLUMNS).with_columns(
            **run.snapshot_stamp()
        )
        return load(context, duckdb, SOURCE, run, "terminals", typed)


aovx_assets = [ota_reports, ota_history, terminals]
