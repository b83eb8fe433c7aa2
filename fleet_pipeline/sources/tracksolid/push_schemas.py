"""Tracksolid push tables: how each landed push item is typed, and the pandera schema it must pass.

Field names are the push names of docs/vendor-apis/tracksolid-pro.md section 10, which differ from
the polling names (the BUG-01 table of section 6: ``alarmType`` / ``alarmName`` / ``gateTime``
where polling says ``alertTypeId`` / ``alarmTypeName`` / ``alertTime``). Alarm items also arrive in
the JIMI and JT/T 808 protocol shapes of docs/vendor-apis/tracksolid-push-samples/ (``imei`` and a
nested ``msg.alertType``), so each column lists every variant. All times are naive UTC.

Every push table carries the landing envelope (``msg_id``, ``push_path``, ``received_at``) and is
partitioned by the UTC day of the message's own time (``MESSAGE_TIME`` names that column per
table); a message is unique on ``msg_id``.
"""

from __future__ import annotations

from datetime import date, datetime

import pandera.polars as pa
import polars as pl
from pandera.api.polars.types import PolarsData

from fleet_pipeline.ingest.records import Col
from fleet_pipeline.ingest.validation import (
    MAX_SPEED_KMH,
    DeviceRecord,
    latitude_field,
    longitude_field,
    not_null_island,
)

# The envelope fields of a landed line, given to typing beside the item (``records.typed_frame``'s
# ``extra``) under names no push item uses.
MSG_ID, PUSH_PATH, RECEIVED_AT, LANDING_DAY = "_msg_id", "_push_path", "_received_at", "_landing_day"
ENVELOPE_COLUMNS = [
    Col.of("msg_id", MSG_ID),
    Col.of("push_path", PUSH_PATH),
    Col.of("received_at", RECEIVED_AT, kind="time"),
    # Where the line was found: the partition of a message whose own time is unusable (not stored).
    Col.of("landing_day", LANDING_DAY, kind="date"),
]
_IMEI = Col.of("imei", "deviceImei", "imei", "_imei")


_OFF_DAY = ("message time is not on its partition day: it arrived more than FLEET_LATE_DATA_DAYS "
            "after its own time, or over a day before it (a device clock out of step)")


class PushRecord(DeviceRecord):
    """What every push table shares: the landing envelope and the UTC day of the message's time."""

    partition_date: date = pa.Field(nullable=False)
    msg_id: str = pa.Field(nullable=False, str_matches=r"^[0-9a-f]{64}$")
    push_path: str = pa.Field(nullable=False)
    received_at: datetime = pa.Field(nullable=False)

    # The column holding the message's own time, which files it under its day (set per table).
    _time_column = ""

    @pa.dataframe_check(error=_OFF_DAY)
    def _on_its_day(cls, data: PolarsData) -> pl.LazyFrame:
        return on_its_day(data, cls._time_column)


def on_its_day(data: PolarsData, column: str) -> pl.LazyFrame:
    """A message is filed under the UTC day of its own time, unless that time is unusable: too far
    before the day it was received (beyond the late-data window) or after it; then it is filed under
    the day it arrived, and this check rejects it with the message kept in the rejects table."""
    return data.lazyframe.select((pl.col(column).dt.date() == pl.col("partition_date")).fill_null(True))


# --- /pushgps (10.3) ------------------------------------------------------------------------------
GPS_COLUMNS = [
    _IMEI,
    Col.of("gps_time", "gpsTime", kind="time"),
    Col.of("gate_time", "gateTime", kind="time"),
    Col.of("lat", kind="float"),
    Col.of("lng", kind="float"),
    Col.of("satellites", "satelliteNum", kind="int"),
    Col.of("speed_kmh", "gpsSpeed", kind="float"),
    Col.of("direction_deg", "direction", kind="float"),
    Col.of("acc_on", "acc", kind="bool"),
    Col.of("position_type", "postType", kind="int"),
    Col.of("upload_mode", "postMethod", kind="int"),
    Col.of("status_flags", "status", kind="int"),
    Col.of("altitude_m", "altitude", kind="float"),
    Col.of("mileage_m", "distance", kind="float"),
]


class PushGpsSchema(PushRecord):
    _time_column = "gps_time"
    gps_time: datetime = pa.Field(nullable=False)
    gate_time: datetime = pa.Field(nullable=True)
    lat: float = latitude_field()
    lng: float = longitude_field()
    satellites: int = pa.Field(nullable=True, ge=0)
    speed_kmh: float = pa.Field(nullable=True, ge=0, le=MAX_SPEED_KMH)
    direction_deg: float = pa.Field(nullable=True, ge=0, le=360)
    acc_on: bool = pa.Field(nullable=True)
    position_type: int = pa.Field(nullable=True, isin=[1, 2, 3])
    upload_mode: int = pa.Field(nullable=True, ge=0, le=15)
    status_flags: int = pa.Field(nullable=True)
    altitude_m: float = pa.Field(nullable=True)
    mileage_m: float = pa.Field(nullable=True, ge=0)

    @pa.dataframe_check(error="position is (0, 0)")
    def _not_null_island(cls, data: PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(not_null_island())



# --- /pushhb (10.2) -------------------------------------------------------------------------------
HEARTBEAT_COLUMNS = [
    _IMEI,
    Col.of("heartbeat_time", "gateTime", kind="time"),
    Col.of("power_level_pct", "powerLevel", kind="int"),
    Col.of("gsm_signal", "gsmSign", kind="int"),
    Col.of("acc_on", "acc", kind="bool"),
    Col.of("charging", "powerStatus", kind="bool"),
    Col.of("fortified", "fortify", kind="bool"),
]


class PushHeartbeatSchema(PushRecord):
    _time_column = "heartbeat_time"
    heartbeat_time: datetime = pa.Field(nullable=False)
    power_level_pct: int = pa.Field(nullable=True, ge=0, le=100)
    gsm_signal: int = pa.Field(nullable=True, ge=0, le=100)
    acc_on: bool = pa.Field(nullable=True)
    charging: bool = pa.Field(nullable=True)
    fortified: bool = pa.Field(nullable=True)



# --- /pushalarm (10.4; field names per BUG-01, protocol shapes per the push samples) --------------
ALARM_COLUMNS = [
    _IMEI,
    Col.of("alarm_time", "gateTime", "msg.alarmTime", "alarmTime", kind="time"),
    Col.of("alarm_type_id", "alarmType", "msg.alertType", "alertType"),
    Col.of("alarm_type_name", "alarmName"),
    Col.of("lat", "lat", "msg.lat", kind="float"),
    Col.of("lng", "lng", "msg.lng", kind="float"),
    Col.of("speed_kmh", "gpsSpeed", "speed", "msg.gpsSpeed", kind="float"),
    Col.of("geofence_id", "geoid", "fenceId"),
    Col.of("protocol_class", "msgClass", kind="int"),
    Col.of("alarm_serial_no", "msg.alarmSerialNo", "alarmSerialNo"),
]


class PushAlarmSchema(PushRecord):
    _time_column = "alarm_time"
    alarm_time: datetime = pa.Field(nullable=False)
    alarm_type_id: str = pa.Field(nullable=False)
    alarm_type_name: str = pa.Field(nullable=True)
    lat: float = latitude_field(nullable=True)
    lng: float = longitude_field(nullable=True)
    speed_kmh: float = pa.Field(nullable=True, ge=0, le=MAX_SPEED_KMH)
    geofence_id: str = pa.Field(nullable=True)
    protocol_class: int = pa.Field(nullable=True)
    alarm_serial_no: str = pa.Field(nullable=True)



# --- /pushevent (10.1: login / logout) ------------------------------------------------------------
EVENT_COLUMNS = [
    _IMEI,
    Col.of("event_time", "gateTime", kind="time"),
    Col.of("event_type", "type"),
    Col.of("device_timezone", "timezone"),
]


class PushEventSchema(PushRecord):
    _time_column = "event_time"
    event_time: datetime = pa.Field(nullable=False)
    event_type: str = pa.Field(nullable=False, isin=["LOGIN", "LOGOUT"])
    device_timezone: str = pa.Field(nullable=True)



# --- /pushobd (10.20) -----------------------------------------------------------------------------
OBD_COLUMNS = [
    _IMEI,
    Col.of("event_time", "obdJson.event_time", "gateTime", kind="time"),
    Col.of("pushed_at", "obdJson.push_time", kind="time"),
    Col.of("vehicle_class", "obdJson.car_type", kind="int"),
    Col.of("acc_on", "obdJson.AccState", kind="bool"),
    Col.of("status_flags", "obdJson.statusFlags", kind="int"),
    Col.of("lat", "obdJson.lat", kind="float"),
    Col.of("lng", "obdJson.lng", kind="float"),
    # Every reading as sent (dataID1..N vary by vehicle): JSON text, for the models to pick from.
    Col.of("obd_json", "obdJson"),
]


class PushObdSchema(PushRecord):
    _time_column = "event_time"
    event_time: datetime = pa.Field(nullable=False)
    pushed_at: datetime = pa.Field(nullable=True)
    vehicle_class: int = pa.Field(nullable=True, isin=[1, 2])
    acc_on: bool = pa.Field(nullable=True)
    status_flags: int = pa.Field(nullable=True)
    lat: float = latitude_field(nullable=True)
    lng: float = longitude_field(nullable=True)
    obd_json: str = pa.Field(nullable=False)



# --- /pushfaultinfo (10.21: DTC fault codes) ------------------------------------------------------
FAULT_CODE_COLUMNS = [
    _IMEI,
    Col.of("report_time", "gateTime", kind="time"),
    Col.of("fault_event_time", "eventTime", kind="time"),
    # A JSON array of codes (["P0301", "P0420"]); core.fct_dtc_codes has one row per code.
    Col.of("fault_codes", "faultCodeList"),
    Col.of("fault_count", "faultNum", kind="int"),
    Col.of("status_flags", "statusFlags", kind="int"),
    Col.of("lat", kind="float"),
    Col.of("lng", kind="float"),
]


class PushFaultCodeSchema(PushRecord):
    _time_column = "report_time"
    report_time: datetime = pa.Field(nullable=False)
    fault_event_time: datetime = pa.Field(nullable=True)
    fault_codes: str = pa.Field(nullable=False, str_matches=r"^\[.*\]$")
    fault_count: int = pa.Field(nullable=True, ge=0)
    status_flags: int = pa.Field(nullable=True)
    lat: float = latitude_field(nullable=True)
    lng: float = longitude_field(nullable=True)



# --- /pushtripreport (10.22) ----------------------------------------------------------------------
TRIP_REPORT_COLUMNS = [
    _IMEI,
    Col.of("report_time", "gateTime", kind="time"),
    Col.of("trip_seq", "tripSeq", kind="int"),
    Col.of("report_kind", "properties", kind="int"),
    # BCD times (yyMMddHHmmss) as sent; typed into begin_time / end_time by the asset.
    Col.of("begin_bcd", "beginTime"),
    Col.of("end_bcd", "endTime"),
    Col.of("distance_km", "miles", kind="float"),
    Col.of("fuel_l", "oils", kind="float"),
    Col.of("idle_s", "idleTimes", kind="int"),
    Col.of("begin_lat", "beginLat", kind="float"),
    Col.of("begin_lng", "beginLng", kind="float"),
    Col.of("end_lat", "endLat", kind="float"),
    Col.of("end_lng", "endLng", kind="float"),
]


class PushTripReportSchema(PushRecord):
    _time_column = "report_time"
    report_time: datetime = pa.Field(nullable=False)
    trip_seq: int = pa.Field(nullable=True)
    report_kind: int = pa.Field(nullable=True, isin=[1, 2])
    begin_time: datetime = pa.Field(nullable=True)
    end_time: datetime = pa.Field(nullable=True)
    distance_km: float = pa.Field(nullable=True, ge=0)
    fuel_l: float = pa.Field(nullable=True, ge=0)
    idle_s: int = pa.Field(nullable=True, ge=0)
    begin_lat: float = latitude_field(nullable=True)
    begin_lng: float = longitude_field(nullable=True)
    end_lat: float = latitude_field(nullable=True)
    end_lng: float = longitude_field(nullable=True)



# --- every other documented push path (10.5-10.19): kept whole, typed by what they share ----------
OTHER_PATHS = (
    "/rfid", "/wgtc", "/pushoil", "/pushfileupload", "/pushtem", "/pushlbs", "/pushresourcelist",
    "/pushftpfileupload", "/pushIothubEvent", "/pushPassThroughData", "/pushTerminalTransInfo",
    "/pushInstructResponse", "/pushFileContent", "/pushextendedkks", "/uploadCallback",
)
OTHER_COLUMNS = [
    _IMEI,
    # Most carry gateTime; some only postTime or gpsTime; DVR callbacks an epoch alarmTime; an
    # item with none of them is filed at its arrival (received_at).
    Col.of("message_time", "gateTime", "postTime", "gpsTime", "alarmTime", RECEIVED_AT, kind="time"),
    Col.of("item_json", "_item"),
]


class PushOtherSchema(PushRecord):
    _time_column = "message_time"
    message_time: datetime = pa.Field(nullable=False)
    item_json: str = pa.Field(nullable=False)
    push_path: str = pa.Field(nullable=False, isin=list(OTHER_PATHS))



COLUMN_DESCRIPTIONS: dict[str, str] = {
    "msg_id": "The landed message's identity: sha256 of its push path and canonical JSON item.",
    "push_path": "The documented push path the item arrived on (/pushgps, /pushalarm...).",
    "received_at": "When the receiver took the item, naive UTC.",
    "gps_time": "Time of the GPS fix (gpsTime), naive UTC.",
    "gate_time": "When Jimi's gateway received the fix (gateTime), naive UTC.",
    "satellites": "Satellites used for the fix (satelliteNum).",
    "speed_kmh": "Speed in km/h.",
    "direction_deg": "Heading in degrees from north.",
    "acc_on": "Ignition (ACC) state.",
    "position_type": "Fix source (postType): 1 GPS, 2 LBS, 3 WiFi.",
    "upload_mode": "Upload mode (postMethod, 0x00-0x0F).",
    "status_flags": "Status bit flags as the device sends them.",
    "altitude_m": "Altitude in metres.",
    "mileage_m": "Device mileage in metres (distance).",
    "heartbeat_time": "Time of the heartbeat (gateTime), naive UTC.",
    "power_level_pct": "Battery level in percent (powerLevel).",
    "gsm_signal": "GSM signal strength as the device reports it (gsmSign).",
    "charging": "Whether the device is charging (powerStatus 1).",
    "fortified": "Defence (fortify) status.",
    "alarm_time": "Time of the alarm (push gateTime; polling alertTime), naive UTC.",
    "alarm_type_id": "Alarm code (push alarmType or msg.alertType; polling alertTypeId).",
    "alarm_type_name": "Alarm name (push alarmName; polling alarmTypeName).",
    "geofence_id": "Geofence of a fence alarm.",
    "protocol_class": "Device protocol of an alarm item (msgClass: 0 JIMI, 1 JT/T 808).",
    "alarm_serial_no": "JT/T 808 alarm serial number (needed to acknowledge the alarm).",
    "event_time": "Time of the event or reading, naive UTC.",
    "event_type": "LOGIN or LOGOUT.",
    "device_timezone": "The device's time zone as pushed (GMT+08:00); times are UTC regardless.",
    "pushed_at": "When the platform pushed the OBD reading (obdJson.push_time), naive UTC.",
    "vehicle_class": "obdJson.car_type: 1 commercial, 2 passenger.",
    "obd_json": "Every OBD reading of the item (obdJson) as JSON text.",
    "report_time": "Time of the report (gateTime), naive UTC.",
    "fault_event_time": "Fault event time (eventTime, epoch), naive UTC.",
    "fault_codes": "The DTC codes as a JSON array (faultCodeList).",
    "fault_count": "Number of fault codes the device reports (faultNum).",
    "trip_seq": "Trip sequence number.",
    "report_kind": "1 trip start, 2 trip end (properties).",
    "begin_time": "Trip start, from its BCD time, naive UTC.",
    "end_time": "Trip end, from its BCD time, naive UTC.",
    "distance_km": "Trip distance in km (miles).",
    "fuel_l": "Fuel used in litres (oils).",
    "idle_s": "Accumulated idle time in seconds (idleTimes).",
    "message_time": "The item's own time (gateTime, postTime, gpsTime...), else when it arrived.",
    "item_json": "The item as received, JSON text.",
    "lat": "Latitude, WGS84 degrees.",
    "lng": "Longitude, WGS84 degrees.",
    "begin_lat": "Latitude where the trip started, WGS84 degrees.",
    "begin_lng": "Longitude where the trip started, WGS84 degrees.",
    "end_lat": "Latitude where the trip ended, WGS84 degrees.",
    "end_lng": "Longitude where the trip ended, WGS84 degrees.",
}
