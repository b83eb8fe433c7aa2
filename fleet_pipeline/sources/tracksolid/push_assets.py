"""Tracksolid push assets: the landed push messages in ``raw_tracksolid.push_<kind>``, one asset per table.

The receiver (``fleet-pipeline push-receiver``) lands every pushed item in files per received UTC
day (``push_landing``); these assets load them like any other source: typed, validated with
pandera, rejects kept with the reason, each partition replaced in one transaction. A partition is
the UTC day of the message's own time (a fix's gpsTime, an alarm's gateTime...). Messages arrive
late (a device offline for days uploads its backlog; the push is sent when it arrives), so a day's
partition reads the landing days from the day before it to ``FLEET_LATE_DATA_DAYS`` after it, and
re-loading a day picks up what arrived since; the ``tracksolid_push_landing`` sensor re-loads the
days a newly closed landing file holds messages of. A message landed twice (a vendor retry) is
stored once: the table's key is ``msg_id``.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import polars as pl
from dagster import AssetExecutionContext, AssetsDefinition, ConfigurableResource, MaterializeResult

from fleet_pipeline import settings
from fleet_pipeline.automation.anomaly import Fleet
from fleet_pipeline.automation.partitions import WEEK_PER_RUN
from fleet_pipeline.ingest.records import Col, typed_frame
from fleet_pipeline.ingest.source_assets import Extraction, Source, Table, extraction, load, unknown_as_null
from fleet_pipeline.ingest.warehouse import TableRef, WarehouseResource
from fleet_pipeline.push.landing import landing_root
from fleet_pipeline.sources.tracksolid import push_schemas as schemas
from fleet_pipeline.sources.tracksolid.push_landing import LandingReader


class PushLandingResource(ConfigurableResource):
    """Where the receiver lands push messages, and how late a message may arrive for its day."""

    landing_dir: str
    late_data_days: int = settings.DEFAULT_LATE_DATA_DAYS

    @classmethod
    def from_env(cls) -> "PushLandingResource":
        # Where the receiver writes (FLEET_PUSH_LANDING_DIR, else <FLEET_DATA_DIR>/push_landing).
        return cls(landing_dir=str(landing_root()), late_data_days=settings.late_data_days())

    def reader(self) -> LandingReader:
        return LandingReader(Path(self.landing_dir), self.late_data_days)


@dataclass(frozen=True)
class PushTable:
    """One push table: the push paths it takes, how its items are typed, and its message time."""

    name: str
    paths: tuple[str, ...]
    columns: list[Col]
    model: Any
    description: str
    # Keep the item whole (as JSON text) for the tables that store it so.
    keep_item: bool = False

    @property
    def time_column(self) -> str:
        return self.model._time_column


PUSH_TABLES = (
    PushTable("push_gps", ("/pushgps",), schemas.GPS_COLUMNS, schemas.PushGpsSchema,
              "GPS fixes pushed on /pushgps (section 10.3), by UTC day of gpsTime."),
    PushTable("push_heartbeats", ("/pushhb",), schemas.HEARTBEAT_COLUMNS, schemas.PushHeartbeatSchema,
              "Heartbeats pushed on /pushhb (10.2: power level, GSM signal, ACC), by UTC day of gateTime; "
              "no poll returns them."),
    PushTable("push_alarms", ("/pushalarm",), schemas.ALARM_COLUMNS, schemas.PushAlarmSchema,
              "Alarms pushed on /pushalarm (10.4; push field names alarmType/alarmName/gateTime, see BUG-01), "
              "by UTC day of the alarm; core.fct_alarms counts an alarm both pushed and polled once."),
    PushTable("push_events", ("/pushevent",), schemas.EVENT_COLUMNS, schemas.PushEventSchema,
              "Login and logout events pushed on /pushevent (10.1), by UTC day of gateTime."),
    PushTable("push_obd", ("/pushobd",), schemas.OBD_COLUMNS, schemas.PushObdSchema,
              "OBD readings pushed on /pushobd (10.20; push only), by UTC day of obdJson.event_time."),
    PushTable("push_fault_codes", ("/pushfaultinfo",), schemas.FAULT_CODE_COLUMNS, schemas.PushFaultCodeSchema,
              "DTC fault codes pushed on /pushfaultinfo (10.21; push only), by UTC day of gateTime; "
              "core.fct_dtc_codes has one row per code."),
    PushTable("push_trip_reports", ("/pushtripreport",), schemas.TRIP_REPORT_COLUMNS, schemas.PushTripReportSchema,
              "Trip start and end reports pushed on /pushtripreport (10.22), by UTC day of gateTime."),
    PushTable("push_other", schemas.OTHER_PATHS, schemas.OTHER_COLUMNS, schemas.PushOtherSchema,
              "Every other documented push kind (10.5-10.19: RFID, fuel, temperature, LBS, media...), the "
              "item kept whole as JSON, by UTC day of its own time; a line on an undocumented path or "
              "one that cannot be read at all is rejected here.", keep_item=True),
)
_ROUTED = {path for table in PUSH_TABLES if table.name != "push_other" for path in table.paths}

PUSH_SOURCE = Source(
    schema="raw_tracksolid", group="tracksolid_push", vendor="Tracksolid Pro push (Jimi IoT)",
    fleet=Fleet("Tracksolid devices", ((TableRef("raw_tracksolid", "devices"), "true"),)),
    tables={table.name: Table(table.model, table.columns, key=("msg_id",)) for table in PUSH_TABLES},
    column_descriptions=schemas.COLUMN_DESCRIPTIONS,
)


def _wanted(table: PushTable):
    if table.name == "push_other":
        # Also the lines on no documented path, and those whose path cannot be read: rejected here.
        return lambda path: path not in _ROUTED
    paths = frozenset(table.paths)
    return lambda path: path in paths


def _bcd_time(column: str) -> pl.Expr:
    """A trip report's BCD time (yyMMddHHmmss, or with a four-digit year) as naive UTC."""
    text = pl.col(column).str.strip_chars()
    return (pl.when(text.str.len_chars() == 14)
            .then(text.str.to_datetime("%Y%m%d%H%M%S", strict=False, time_unit="us"))
            .otherwise(text.str.to_datetime("%y%m%d%H%M%S", strict=False, time_unit="us")))


def _kind_specific(table: PushTable, typed: pl.DataFrame) -> pl.DataFrame:
    if table.name == "push_gps":
        return typed.with_columns(*unknown_as_null("speed_kmh", "direction_deg"))
    if table.name == "push_events":
        return typed.with_columns(pl.col("event_type").str.to_uppercase())
    if table.name == "push_trip_reports":
        return typed.with_columns(begin_time=_bcd_time("begin_bcd"), end_time=_bcd_time("end_bcd"))
    return typed


def file_by_message_day(frame: pl.DataFrame, time_column: str, run: Extraction, late_data_days: int) -> pl.DataFrame:
    """The rows of the run's days, each in the UTC day of its own time; a message whose time is
    missing, more than ``late_data_days`` before the day it was received or after the next one is
    filed under the day it was received, where validation rejects it (``push_schemas.on_its_day``)."""
    own = pl.col(time_column).dt.date()
    arrived = pl.coalesce(pl.col("received_at").dt.date(), pl.col("landing_day"))
    usable = own.is_not_null() & (own >= arrived - timedelta(days=late_data_days)) & (own <= arrived + timedelta(days=1))
    filed = frame.with_columns(partition_date=pl.when(usable).then(own).otherwise(arrived))
    return filed.filter(pl.col("partition_date").is_between(run.first, run.last))


def _build(table: PushTable) -> AssetsDefinition:
    @PUSH_SOURCE.asset(table.name, table.description, partitioned=True,
                       # A week of landing days is read once for seven partitions instead of seven times.
                       backfill=WEEK_PER_RUN)
    def _push_table(context: AssetExecutionContext, tracksolid_push: PushLandingResource,
                    duckdb: WarehouseResource) -> MaterializeResult:
        with extraction(context, tracksolid_push.reader) as run:
            reader: LandingReader = run.client

            def typed_chunks() -> Iterator[pl.DataFrame]:
                for chunk in reader.chunks(run.days, _wanted(table), keep_item=table.keep_item):
                    typed = typed_frame(chunk.rows, [*schemas.ENVELOPE_COLUMNS, *table.columns], chunk.extra)
                    del chunk
                    yield file_by_message_day(_kind_specific(table, typed), table.time_column, run,
                                              tracksolid_push.late_data_days)

            # Each landed line is a message of its own: unreadable ones are rejects, also when a
            # day has nothing else (not a vendor answer that is unusable as a whole).
            return load(context, duckdb, PUSH_SOURCE, run, table.name, typed_chunks(), require_some_valid=False,
                        landing_days=lambda: f"{run.first - timedelta(days=1)}..."
                                             f"{run.last + timedelta(days=tracksolid_push.late_data_days)}",
                        **{key: (lambda key=key: reader.metadata()[key]) for key in reader.metadata()})

    return _push_table


push_assets = [_build(table) for table in PUSH_TABLES]
