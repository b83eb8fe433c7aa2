"""AOVX assets: ``raw_aovx.ota_reports``, OTA attempts partitioned by the UTC day of their last update.

The report selects attempts by their last update, so an attempt moves to a later partition while
it progresses (sent -> downloading -> succeeded); re-running the trailing days keeps every attempt
in the partition of its latest state, once.
"""

import json
from typing import Any

import polars as pl
from dagster import AssetExecutionContext, MaterializeResult, MetadataValue

from fleet_pipeline.partitions import MONTH_PER_RUN
from fleet_pipeline.records import typed_frame
from fleet_pipeline.source_assets import Source, Table, extraction, load
from fleet_pipeline.sources.aovx import schemas
from fleet_pipeline.sources.aovx.resources import AovxResource
from fleet_pipeline.warehouse import WarehouseResource

SOURCE = Source(
    schema="raw_aovx", group="aovx", vendor="AOVX OTA report",
    tables={
        "ota_reports": Table(schemas.OtaReportSchema, schemas.OTA_REPORT_COLUMNS, key=("attempt_id",)),
    },
)
_UPGRADE_FIELDS = {"TYPE": "upgrade_type", "MODE": "upgrade_mode", "PROTOCOL": "upgrade_protocol",
                   "VERSION": "firmware_version", "URL": "firmware_url"}


def _upgrade_info(raw: Any) -> dict[str, Any]:
    """``upgradeInfo`` is a JSON object encoded inside a string (FIELD-NOTES); {} when unparsable."""
    try:
        parsed = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


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
        rows = run.client.ota_reports(list(terminals), *run.bounds)
        enriched = []
        for row in rows:
            info = _upgrade_info(row.get("upgradeInfo"))
            extra = {column: info.get(key) for key, column in _UPGRADE_FIELDS.items()}
            enriched.append({**row, **extra, "_imei": terminals.get(row.get("terminalId"))})
        typed = run.by_day(
            typed_frame(enriched, schemas.OTA_REPORT_COLUMNS).with_columns(
                *[pl.Series(column, [None if r[column] is None else str(r[column]) for r in enriched], dtype=pl.String)
                  for column in _UPGRADE_FIELDS.values()],
                status=pl.col("status_code").replace_strict(schemas.STATUS_NAMES, default=None, return_dtype=pl.String),
            ),
            "last_update_at",
        )
        counts = typed.group_by("status").len().sort("status")
        return load(context, duckdb, SOURCE, run, "ota_reports", typed.drop("upgrade_info"),
                    terminals=len(terminals), attempts_by_status=MetadataValue.json(dict(counts.iter_rows())))


aovx_assets = [ota_reports]
