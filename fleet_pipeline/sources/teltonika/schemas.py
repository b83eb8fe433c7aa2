"""Teltonika FOTA tables: the daily device snapshot (firmware, configuration, activity) and groups."""

from __future__ import annotations

from datetime import date, datetime

import pandera.polars as pa

from fleet_pipeline.records import Col
from fleet_pipeline.validation import DeviceRecord

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


# What each raw column holds, shown on the table's asset in the Dagster UI ("<table>.<column>" where
# one name means different things in two tables). Columns every vendor shares (imei,
# partition_date, snapshot_*) are described once in fleet_pipeline.validation.
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
}
