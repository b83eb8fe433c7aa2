"""Teltonika FOTA assets: ``raw_teltonika.devices`` and ``raw_teltonika.groups``, one snapshot a day.

The device snapshot is the firmware history: kept one per UTC day, it answers which firmware and
configuration each device ran on each day (FOTA itself only knows the present).
"""

import polars as pl
from dagster import AssetExecutionContext, MaterializeResult

from fleet_pipeline.records import typed_frame
from fleet_pipeline.source_assets import Source, Table, extraction, load
from fleet_pipeline.sources.teltonika import schemas
from fleet_pipeline.sources.teltonika.resources import TeltonikaResource
from fleet_pipeline.warehouse import WarehouseResource

SOURCE = Source(
    schema="raw_teltonika", group="teltonika", vendor="Teltonika FOTA WEB",
    tables={
        "devices": Table(schemas.DeviceSchema, schemas.DEVICE_COLUMNS, key=("imei",)),
        "groups": Table(schemas.GroupSchema, schemas.GROUP_COLUMNS, key=("group_id",)),
    },
)


@SOURCE.asset("devices", "Daily snapshot of every FOTA device (GET /devices, 100 a page): model, "
              "current firmware and configuration, activity status, company, group, seen_at, SIM.",
              partitioned=False)
def devices(context: AssetExecutionContext, teltonika: TeltonikaResource, duckdb: WarehouseResource) -> MaterializeResult:
    with extraction(context, teltonika.client) as run:
        rows = run.client.devices()
        typed = typed_frame(rows, schemas.DEVICE_COLUMNS).with_columns(
            snapshot_date=pl.lit(run.now.date()), snapshot_at=pl.lit(run.now)
        )
        firmware = typed.group_by("model", "current_firmware").len().sort("model", "current_firmware")
        context.log.info("firmware in use: " + ", ".join(f"{m} {v}: {n}" for m, v, n in firmware.iter_rows()))
        return load(context, duckdb, SOURCE, run, "devices", typed,
                    firmware_versions=firmware.height)


@SOURCE.asset("groups", "Daily snapshot of the FOTA groups (GET /groups).", partitioned=False)
def groups(context: AssetExecutionContext, teltonika: TeltonikaResource, duckdb: WarehouseResource) -> MaterializeResult:
    with extraction(context, teltonika.client) as run:
        typed = typed_frame(run.client.groups(), schemas.GROUP_COLUMNS).with_columns(
            snapshot_date=pl.lit(run.now.date()), snapshot_at=pl.lit(run.now)
        )
        return load(context, duckdb, SOURCE, run, "groups", typed)


teltonika_assets = [devices, groups]
