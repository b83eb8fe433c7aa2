"""AOVX tables: OTA attempts as reported, with the upgrade info parsed and the status named, and the
terminals reported on."""

from __future__ import annotations

from datetime import date, datetime

import pandera.polars as pa
import polars as pl
from pandera.api.polars.types import PolarsData

from fleet_pipeline.ingest.records import Col
from fleet_pipeline.ingest.validation import luhn_valid, ordered

# queryTerminalOtaReport status codes (aovx-ota-report.md)
STATUS_NAMES = {-1: "command_failed", 1: "sent", 2: "downloading", 3: "succeeded", 4: "failed"}

OTA_REPORT_COLUMNS = [
    Col.of("attempt_id", "mark"),
    Col.of("terminal_id", "terminalId"),
    Col.of("terminal_num", "terminalNum"),
    Col.of("imei", "_imei"),
    Col.of("status_code", "status", kind="int"),
    Col.of("upgrade_info", "upgradeInfo"),
    Col.of("sent_at", "sendTimestamp", "sendTime", kind="time"),
    Col.of("last_update_at", "dateTimestamp", "dateTime", kind="time"),
]


class _TerminalRecord(pa.DataFrameModel):
    """AOVX knows terminals, not IMEIs: the IMEI is filled where the terminal list gives it."""

    imei: str = pa.Field(nullable=True)

    @pa.check("imei", name="imei_luhn", error="IMEI must be 15 digits with a valid Luhn check digit")
    def _imei_luhn(cls, data: PolarsData) -> pl.LazyFrame:
        column = pl.col(data.key)
        return data.lazyframe.select(column.is_null() | luhn_valid(column).fill_null(False))


class OtaReportSchema(_TerminalRecord):
    partition_date: date = pa.Field(nullable=False)
    attempt_id: str = pa.Field(nullable=False, unique=True, str_matches=r"^[0-9A-Fa-f]{32}$")
    terminal_id: str = pa.Field(nullable=False)
    terminal_num: str = pa.Field(nullable=True)
    status_code: int = pa.Field(nullable=False, isin=list(STATUS_NAMES))
    status: str = pa.Field(nullable=False, isin=list(STATUS_NAMES.values()))
    upgrade_type: str = pa.Field(nullable=True)
    upgrade_mode: str = pa.Field(nullable=True)
    upgrade_protocol: str = pa.Field(nullable=True)
    firmware_version: str = pa.Field(nullable=False)
    firmware_url: str = pa.Field(nullable=True)
    sent_at: datetime = pa.Field(nullable=False)
    last_update_at: datetime = pa.Field(nullable=False)

    @pa.dataframe_check(error="last update before the command was sent")
    def _updated_after_sent(cls, data: PolarsData) -> pl.LazyFrame:
        return ordered(data, "sent_at", "last_update_at")


TERMINAL_COLUMNS = [
    Col.of("terminal_id", "terminalId"),
    Col.of("terminal_num", "terminalNum"),
    Col.of("imei"),
]


class TerminalSchema(_TerminalRecord):
    snapshot_date: date = pa.Field(nullable=False)
    snapshot_at: datetime = pa.Field(nullable=False)
    terminal_id: str = pa.Field(nullable=False, unique=True)
    terminal_num: str = pa.Field(nullable=True)


# What each raw column holds, shown on the table's asset in the Dagster UI ("<table>.<column>" where
# one name means different things in two tables). Columns every vendor shares (imei,
# partition_date, snapshot_*) are described once in fleet_pipeline.ingest.validation.
COLUMN_DESCRIPTIONS: dict[str, str] = {
    "attempt_id": "OTA attempt id (AOVX).",
    "firmware_url": "Download location of the firmware package the upgrade used (URL).",
    "firmware_version": "Firmware version.",
    "last_update_at": "Last status update of the attempt, naive UTC.",
    "sent_at": "When the OTA command was sent, naive UTC.",
    "status": "OTA attempt status, lower case.",
    "status_code": "AOVX numeric status.",
    "terminal_id": "AOVX terminal id.",
    "terminal_num": "AOVX terminal number of the reporting device (terminalNum).",
    "upgrade_mode": "AOVX upgrade mode.",
    "upgrade_protocol": "Protocol the OTA upgrade was delivered over, as the report states it (PROTOCOL).",
    "upgrade_type": "AOVX upgrade type.",
}
