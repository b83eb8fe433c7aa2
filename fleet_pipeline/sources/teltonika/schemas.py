"""Teltonika FOTA tables: daily snapshots of the devices (firmware, configuration, activity), the
groups, and the tasks and batches (OTA attempts and the campaigns that issued them)."""

from __future__ import annotations

from datetime import date, datetime

import pandera.polars as pa
import polars as pl
from pandera.api.polars.types import PolarsData

from fleet_pipeline.ingest.records import Col
from fleet_pipeline.ingest.validation import DeviceRecord, ordered

ACTIVITY_STATUSES = ["Online", "Offline", "Inactive"]

DEVICE_COLUMNS = [
    Col.of("imei"),
    Col.of("serial"),
    Col.of("model"),
    Col.of("current_firmware"),
    Col.of("current_configuration"),
    Col.of("activity_status"),
    Col.of("company_id", kind="int"),
    Col.of("company_name", "company_name", "company.name"),
    Col.of("group_id", kind="int"),
    Col.of("group_name", "group_name", "group.name"),
    Col.of("description"),
    Col.of("task_queue"),
    Col.of("iccid"),
    Col.of("imsi"),
    Col.of("sim_msisdn", "gsm_number"),
    Col.of("seen_at", kind="time"),
    Col.of("first_login_time", "first_login", kind="time"),
    Col.of("created_time", "created_at", kind="time"),
    Col.of("updated_time", "updated_at", kind="time"),
]


class DeviceSchema(DeviceRecord):
    snapshot_date: date = pa.Field(nullable=False)
    snapshot_at: datetime = pa.Field(nullable=False)
    serial: str = pa.Field(nullable=True)
    model: str = pa.Field(nullable=False)
    current_firmware: str = pa.Field(nullable=True)
    current_configuration: str = pa.Field(nullable=True)
    activity_status: str = pa.Field(nullable=True, isin=ACTIVITY_STATUSES)
    company_id: int = pa.Field(nullable=True)
    company_name: str = pa.Field(nullable=True)
    group_id: int = pa.Field(nullable=True)
    group_name: str = pa.Field(nullable=True)
    description: str = pa.Field(nullable=True)
    task_queue: str = pa.Field(nullable=True)
    iccid: str = pa.Field(nullable=True, str_matches=r"^\d{18,22}F?$")
    imsi: str = pa.Field(nullable=True)
    sim_msisdn: str = pa.Field(nullable=True)
    seen_at: datetime = pa.Field(nullable=True)
    first_login_time: datetime = pa.Field(nullable=True)
    created_time: datetime = pa.Field(nullable=True)
    updated_time: datetime = pa.Field(nullable=True)


GROUP_COLUMNS = [
    Col.of("group_id", "id", kind="int"),
    Col.of("name"),
    Col.of("company_id", kind="int"),
    Col.of("company_name", "company.name"),
    Col.of("firmware_file_id", kind="int"),
    Col.of("configuration_file_id", kind="int"),
    Col.of("created_time", "created_at", kind="time"),
    Col.of("updated_time", "updated_at", kind="time"),
]


class GroupSchema(pa.DataFrameModel):
    snapshot_date: date = pa.Field(nullable=False)
    snapshot_at: datetime = pa.Field(nullable=False)
    group_id: int = pa.Field(nullable=False, unique=True)
    name: str = pa.Field(nullable=False)
    company_id: int = pa.Field(nullable=True)
    company_name: str = pa.Field(nullable=True)
    firmware_file_id: int = pa.Field(nullable=True)
    configuration_file_id: int = pa.Field(nullable=True)
    created_time: datetime = pa.Field(nullable=True)
    updated_time: datetime = pa.Field(nullable=True)


# TaskStatuses of the spec ("Pending = 0" ... "Verifying = 8"): the id is what is stored and
# checked; the name is kept as sent.
TASK_STATUS_IDS = [0, 1, 2, 3, 4, 5, 6, 8]
# A Teltonika firmware version as FOTA names it ("03.29.00.Rev.300"); a firmware file's name
# carries it (e.g. "FMB920_03.29.00.Rev.300.xim").
FIRMWARE_VERSION_PATTERN = r"(\d{2}\.\d{2}\.\d{2}\.Rev\.\d+)"

TASK_COLUMNS = [
    Col.of("task_id", "id", kind="int"),
    Col.of("imei", "device_imei", "device.imei"),
    Col.of("model", "device.model"),
    Col.of("batch_id", kind="int"),
    Col.of("task_type", "type"),
    Col.of("status_id", kind="int"),
    Col.of("status_name"),
    Col.of("attempt_count", kind="int"),
    Col.of("execution_time_s", "execution_time", kind="int"),
    Col.of("file_id", "file_id", "file.id", kind="int"),
    Col.of("file_name", "file.name"),
    Col.of("message"),
    Col.of("created_time", "created_at", kind="time"),
    Col.of("updated_time", "updated_at", kind="time"),
    Col.of("status_changed_time", "status_changed_at", kind="time"),
]


class TaskSchema(DeviceRecord):
    snapshot_date: date = pa.Field(nullable=False)
    snapshot_at: datetime = pa.Field(nullable=False)
    task_id: int = pa.Field(nullable=False, unique=True)
    model: str = pa.Field(nullable=True)
    batch_id: int = pa.Field(nullable=True)
    task_type: str = pa.Field(nullable=False)
    status_id: int = pa.Field(nullable=False, isin=TASK_STATUS_IDS)
    status_name: str = pa.Field(nullable=True)
    attempt_count: int = pa.Field(nullable=True, ge=0)
    execution_time_s: int = pa.Field(nullable=True, ge=0)
    file_id: int = pa.Field(nullable=True)
    file_name: str = pa.Field(nullable=True)
    # parsed from file_name; a firmware task whose file names no version is rejected
    firmware_version: str = pa.Field(nullable=True)
    message: str = pa.Field(nullable=True)
    created_time: datetime = pa.Field(nullable=False)
    updated_time: datetime = pa.Field(nullable=True)
    status_changed_time: datetime = pa.Field(nullable=False)

    @pa.dataframe_check(error="a TxFirmware task without a firmware version in its file name")
    def _firmware_has_version(cls, data: PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select((pl.col("task_type") != "TxFirmware") | pl.col("firmware_version").is_not_null())

    @pa.dataframe_check(error="status changed before the task was created")
    def _changed_after_created(cls, data: PolarsData) -> pl.LazyFrame:
        return ordered(data, "created_time", "status_changed_time")


BATCH_COLUMNS = [
    Col.of("batch_id", "id", kind="int"),
    Col.of("batch_type", "type"),
    Col.of("task_type"),
    Col.of("objects", kind="int"),
    Col.of("objects_processed", kind="int"),
    Col.of("task_file_name"),
    Col.of("file_id", "file.id", kind="int"),
    Col.of("created_time", "created_at", kind="time"),
    Col.of("updated_time", "updated_at", kind="time"),
]


class BatchSchema(pa.DataFrameModel):
    snapshot_date: date = pa.Field(nullable=False)
    snapshot_at: datetime = pa.Field(nullable=False)
    batch_id: int = pa.Field(nullable=False, unique=True)
    batch_type: str = pa.Field(nullable=True)
    task_type: str = pa.Field(nullable=True)
    objects: int = pa.Field(nullable=False, ge=0)
    objects_processed: int = pa.Field(nullable=False, ge=0)
    task_file_name: str = pa.Field(nullable=True)
    file_id: int = pa.Field(nullable=True)
    # task_stats [{status_id, count}] as JSON text: tasks per status at the snapshot
    task_stats: str = pa.Field(nullable=True)
    created_time: datetime = pa.Field(nullable=True)
    updated_time: datetime = pa.Field(nullable=True)

    @pa.dataframe_check(error="more tasks processed than the batch holds")
    def _processed_within_objects(cls, data: PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col("objects_processed") <= pl.col("objects"))


# What each raw column holds, shown on the table's asset in the Dagster UI ("<table>.<column>" where
# one name means different things in two tables). Columns every vendor shares (imei,
# partition_date, snapshot_*) are described once in fleet_pipeline.ingest.validation.
COLUMN_DESCRIPTIONS: dict[str, str] = {
    "activity_status": "Teltonika FOTA activity status.",
    "company_id": "Teltonika FOTA company id.",
    "company_name": "Teltonika FOTA company name.",
    "configuration_file_id": "Configuration file assigned to the group.",
    "devices.created_time": "When the device was added to FOTA WEB, naive UTC.",
    "groups.created_time": "When the group was created in FOTA WEB, naive UTC.",
    "current_configuration": "Name of the configuration file the device runs, as FOTA WEB reports it.",
    "current_firmware": "Firmware version.",
    "description": "Free-text description set on the device in FOTA WEB.",
    "firmware_file_id": "Firmware file assigned to the group (Teltonika FOTA).",
    "first_login_time": "Activation (installation) time, naive UTC.",
    "group_id": "Group id on the platform.",
    "group_name": "Device group on its platform.",
    "iccid": "SIM card ICCID.",
    "imsi": "SIM IMSI.",
    "model": "Device model as the vendor spells it.",
    "name": "Device group on its platform.",
    "seen_at": "Last time the platform heard from the device, naive UTC.",
    "serial": "Teltonika serial number.",
    "sim_msisdn": "SIM phone number (MSISDN) where known.",
    "task_queue": "Pending FOTA WEB tasks for the device, as the API lists them.",
    "devices.updated_time": "When FOTA WEB last updated the device, naive UTC.",
    "groups.updated_time": "When FOTA WEB last updated the group, naive UTC.",
    "tasks.task_id": "FOTA WEB task id.",
    "tasks.batch_id": "Batch (background action) the task belongs to; empty for a task created alone.",
    "tasks.task_type": "What the task does, as FOTA WEB names it (TxFirmware = a firmware update).",
    "tasks.status_id": "Task status id (TaskStatuses: 0 pending, 1 running, 2 completed, 3 completed with "
                       "errors, 4 cancelled, 5 failed, 6 expired, 8 verifying).",
    "tasks.status_name": "Task status as FOTA WEB spells it.",
    "tasks.attempt_count": "How many times FOTA WEB tried the task.",
    "tasks.execution_time_s": "How long the task ran, in seconds.",
    "tasks.file_id": "Firmware or configuration file the task sends.",
    "tasks.file_name": "Name of the file the task sends.",
    "tasks.firmware_version": "Target firmware version, parsed from the file name (firmware tasks).",
    "tasks.message": "The device's or FOTA WEB's last message about the task.",
    "tasks.created_time": "When the task was created, naive UTC.",
    "tasks.updated_time": "When FOTA WEB last updated the task, naive UTC.",
    "tasks.status_changed_time": "When the task reached its current status, naive UTC.",
    "batches.batch_id": "FOTA WEB batch (background action) id.",
    "batches.batch_type": "Kind of batch, as FOTA WEB names it.",
    "batches.task_type": "What the batch's tasks do (TxFirmware = a firmware update).",
    "batches.objects": "Devices (tasks) in the batch.",
    "batches.objects_processed": "Tasks of the batch FOTA WEB has processed.",
    "batches.task_file_name": "Name of the file the batch's tasks send.",
    "batches.file_id": "File the batch's tasks send.",
    "batches.task_stats": "Tasks per status at the snapshot, JSON [{status_id, count}].",
    "batches.created_time": "When the batch was created, naive UTC.",
    "batches.updated_time": "When FOTA WEB last updated the batch, naive UTC.",
}
