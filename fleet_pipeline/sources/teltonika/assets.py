"""Teltonika FOTA assets: ``raw_teltonika.devices``, ``groups``, ``tasks`` and ``batches``, one
snapshot a day.

The device snapshot is the firmware history: kept one per UTC day, it answers which firmware and
configuration each device ran on each day (FOTA itself only knows the present). The firmware
tasks are the OTA attempts: ``GET /tasks`` has no time filter, so every snapshot holds every
task as it stands (a task keeps its id while its status moves on), and the latest snapshot
is the attempt history.
"""

import json

import polars as pl
from dagster import AssetExecutionContext, MaterializeResult, MetadataValue

from fleet_pipeline.automation.anomaly import Fleet
from fleet_pipeline.ingest.records import typed_frame
from fleet_pipeline.ingest.source_assets import Source, Table, extraction, load
from fleet_pipeline.ingest.warehouse import TableRef, WarehouseResource
from fleet_pipeline.sources.teltonika import schemas
from fleet_pipeline.sources.teltonika.resources import TeltonikaResource

FIRMWARE_TASK = "TxFirmware"

SOURCE = Source(
    schema="raw_teltonika", group="teltonika", vendor="Teltonika FOTA WEB",
    fleet=Fleet("Teltonika FOTA devices", ((TableRef("raw_teltonika", "devices"), "true"),)),
    tables={
        "devices": Table(schemas.DeviceSchema, schemas.DEVICE_COLUMNS, key=("imei",)),
        "groups": Table(schemas.GroupSchema, schemas.GROUP_COLUMNS, key=("group_id",)),
        "tasks": Table(schemas.TaskSchema, schemas.TASK_COLUMNS, key=("task_id",)),
        "batches": Table(schemas.BatchSchema, schemas.BATCH_COLUMNS, key=("batch_id",)),
    },
    column_descriptions=schemas.COLUMN_DESCRIPTIONS,
)


@SOURCE.asset("devices", "Daily snapshot of every FOTA device (GET /devices, 100 a page): model, "
              "current firmware and configuration, activity status, company, group, seen_at, SIM.",
              partitioned=False)
def devices(context: AssetExecutionContext, teltonika: TeltonikaResource, duckdb: WarehouseResource) -> MaterializeResult:
    with extraction(context, teltonika.client) as run:
        rows = run.client.devices()
        typed = typed_frame(rows, schemas.DEVICE_COLUMNS).with_columns(
            **run.snapshot_stamp()
        )
        firmware = typed.group_by("model", "current_firmware").len().sort("model", "current_firmware")
        context.log.info("firmware in use: " + ", ".join(f"{m} {v}: {n}" for m, v, n in firmware.iter_rows()))
        return load(context, duckdb, SOURCE, run, "devices", typed,
                    firmware_versions=firmware.height)


@SOURCE.asset("groups", "Daily snapshot of the FOTA groups (GET /groups).", partitioned=False)
def groups(context: AssetExecutionContext, teltonika: TeltonikaResource, duckdb: WarehouseResource) -> MaterializeResult:
    with extraction(context, teltonika.client) as run:
        typed = typed_frame(run.client.groups(), schemas.GROUP_COLUMNS).with_columns(
            **run.snapshot_stamp()
        )
        return load(context, duckdb, SOURCE, run, "groups", typed)


@SOURCE.asset("tasks", "Daily snapshot of every firmware task, i.e. OTA attempt (GET /tasks?type=TxFirmware, "
              "100 a page, by id): device, batch, status, file and the firmware version its name carries, "
              "when it was created and last changed status.", partitioned=False)
def tasks(context: AssetExecutionContext, teltonika: TeltonikaResource, duckdb: WarehouseResource) -> MaterializeResult:
    with extraction(context, teltonika.client) as run:
        typed = typed_frame(run.client.tasks(type=FIRMWARE_TASK), schemas.TASK_COLUMNS).with_columns(
            firmware_version=pl.col("file_name").str.extract(schemas.FIRMWARE_VERSION_PATTERN, 1),
            **run.snapshot_stamp(),
        )
        by_status = typed.group_by("status_id").len().sort("status_id")
        return load(context, duckdb, SOURCE, run, "tasks", typed,
                    tasks_by_status=MetadataValue.json({str(s): n for s, n in by_status.iter_rows()}))


@SOURCE.asset("batches", "Daily snapshot of the task batches (GET /batches): one per rollout, with its "
              "firmware file and tasks per status.", partitioned=False)
def batches(context: AssetExecutionContext, teltonika: TeltonikaResource, duckdb: WarehouseResource) -> MaterializeResult:
    with extraction(context, teltonika.client) as run:
        rows = run.client.batches()
        typed = typed_frame(rows, schemas.BATCH_COLUMNS).with_columns(
            task_stats=pl.Series("task_stats", [None if r.get("task_stats") is None else json.dumps(r["task_stats"])
                                                for r in rows], dtype=pl.String),
            **run.snapshot_stamp(),
        )
        return load(context, duckdb, SOURCE, run, "batches", typed)


teltonika_assets = [devices, groups, tasks, batches]
