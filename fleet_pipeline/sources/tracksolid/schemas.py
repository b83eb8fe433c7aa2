"""Tracksolid Pro tables: how each vendor row is typed, and the pandera schema every batch must pass.

Column specs list every field-name variant seen in the docs and in production (docs/vendor-apis/FIELD-NOTES.md):
``runTimeSecond`` / ``elapsed``, ``alarmTypeName`` / ``alertTypeName``, push-style names as a last
resort. Units are in the column names; all times are naive UTC.
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
    ordered,
)

# --- devices (daily snapshot: device list of every account + device detail) -----------------------
DEVICE_COLUMNS = [
    Col.of("imei"),
    Col.of("account_id", "_account", "account"),
    Col.of("device_name", "deviceName"),
    Col.of("model", "mcType"),
    Col.of("sim", "sim"),
    Col.of("iccid", "iccid"),
    Col.of("device_group", "deviceGroup"),
    Col.of("vehicle_name", "vehicleName"),
    Col.of("vehicle_number", "vehicleNumber"),
    Col.of("driver_name", "driverName"),
    Col.of("enabled", "enabledFlag", kind="bool"),
    Col.of("activation_time", "activationTime", kind="time"),
    Col.of("expiration_time", "expiration", kind="time"),
    Col.of("odometer_km", "currentMileage", kind="float"),
]


class DeviceSchema(DeviceRecord):
    snapshot_date: date = pa.Field(nullable=False)
    snapshot_at: datetime = pa.Field(nullable=False)
    account_id: str = pa.Field(nullable=False)
    device_name: str = pa.Field(nullable=True)
    model: str = pa.Field(nullable=True)
    sim: str = pa.Field(nullable=True)
    iccid: str = pa.Field(nullable=True)
    device_group: str = pa.Field(nullable=True)
    vehicle_name: str = pa.Field(nullable=True)
    vehicle_number: str = pa.Field(nullable=True)
    driver_name: str = pa.Field(nullable=True)
    enabled: bool = pa.Field(nullable=True)
    activation_time: datetime = pa.Field(nullable=True)
    expiration_time: datetime = pa.Field(nullable=True)
    odometer_km: float = pa.Field(nullable=True, ge=0)


# --- positions (snapshot of last positions) -------------------------------------------------------
POSITION_COLUMNS = [
    Col.of("imei"),
    Col.of("device_name", "deviceName"),
    Col.of("gps_time", "gpsTime", kind="time"),
    Col.of("heartbeat_time", "hbTime", kind="time"),
    Col.of("lat", kind="float"),
    Col.of("lng", kind="float"),
    Col.of("speed_kmh", "speed", kind="float"),
    Col.of("direction_deg", "direction", kind="float"),
    Col.of("acc_on", "accStatus", kind="bool"),
    Col.of("moving", "status", kind="bool"),
    Col.of("gps_signal", "gpsSignal", kind="int"),
    Col.of("satellites", "gpsNum", kind="int"),
    Col.of("odometer_km", "currentMileage", kind="float"),
    Col.of("power_v", "powerValue", kind="float"),
    Col.of("battery_pct", "elecQuantity", "electQuantity", kind="float"),
    Col.of("position_type", "posType"),
    Col.of("subscription_active", "expireFlag", kind="bool"),
]


class PositionSchema(DeviceRecord):
    snapshot_date: date = pa.Field(nullable=False)
    snapshot_at: datetime = pa.Field(nullable=False)
    device_name: str = pa.Field(nullable=True)
    gps_time: datetime = pa.Field(nullable=False)
    heartbeat_time: datetime = pa.Field(nullable=True)
    lat: float = latitude_field()
    lng: float = longitude_field()
    # Tag/beacon devices send -1 for "unknown"; the typing step turns that into null.
    speed_kmh: float = pa.Field(nullable=True, ge=0, le=MAX_SPEED_KMH)
    direction_deg: float = pa.Field(nullable=True, ge=0, le=360)
    acc_on: bool = pa.Field(nullable=True)
    moving: bool = pa.Field(nullable=True)
    gps_signal: int = pa.Field(nullable=True)
    satellites: int = pa.Field(nullable=True, ge=0)
    odometer_km: float = pa.Field(nullable=True, ge=0)
    power_v: float = pa.Field(nullable=True)
    battery_pct: float = pa.Field(nullable=True, ge=0, le=100)
    position_type: str = pa.Field(nullable=True)
    subscription_active: bool = pa.Field(nullable=True)

    @pa.dataframe_check(error="position is (0, 0): expired or fix-less device")
    def _not_null_island(cls, data: PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(not_null_island())


# --- trips (jimi.device.track.mileage) ------------------------------------------------------------
TRIP_COLUMNS = [
    Col.of("imei"),
    Col.of("start_time", "startTime", kind="time"),
    Col.of("end_time", "endTime", kind="time"),
    Col.of("distance_raw", "distance", kind="float"),
    Col.of("avg_speed_kmh", "avgSpeed", kind="float"),
    Col.of("max_speed_kmh", "maxSpeed", kind="float"),
    Col.of("run_time_s", "runTimeSecond", "elapsed", kind="int"),
    Col.of("idle_s", "idleSecond", kind="int"),
]


class TripSchema(DeviceRecord):
    partition_date: date = pa.Field(nullable=False)
    start_time: datetime = pa.Field(nullable=False)
    end_time: datetime = pa.Field(nullable=False)
    duration_s: int = pa.Field(nullable=False, ge=0)
    distance_km: float = pa.Field(nullable=True, ge=0)
    avg_speed_kmh: float = pa.Field(nullable=True, ge=0, le=MAX_SPEED_KMH)
    max_speed_kmh: float = pa.Field(nullable=True, ge=0, le=MAX_SPEED_KMH)
    run_time_s: int = pa.Field(nullable=True, ge=0)
    idle_s: int = pa.Field(nullable=True, ge=0)

    @pa.dataframe_check(error="trip ends before it starts")
    def _end_after_start(cls, data: PolarsData) -> pl.LazyFrame:
        return ordered(data, "start_time", "end_time")


# --- track points (jimi.device.track.list) --------------------------------------------------------
TRACK_POINT_COLUMNS = [
    Col.of("gps_time", "gpsTime", kind="time"),
    Col.of("lat", kind="float"),
    Col.of("lng", kind="float"),
    Col.of("speed_kmh", "gpsSpeed", "speed", kind="float"),
    Col.of("direction_deg", "direction", kind="float"),
    Col.of("acc_on", "accStatus", "ignition", kind="bool"),
    Col.of("satellites", "satellite", "gpsNum", kind="int"),
    Col.of("altitude_m", "altitude", kind="float"),
    Col.of("gps_mode", "gpsMode"),
    Col.of("imei"),
]


class TrackPointSchema(DeviceRecord):
    partition_date: date = pa.Field(nullable=False)
    gps_time: datetime = pa.Field(nullable=False)
    lat: float = latitude_field()
    lng: float = longitude_field()
    speed_kmh: float = pa.Field(nullable=True, ge=0, le=MAX_SPEED_KMH)
    direction_deg: float = pa.Field(nullable=True, ge=0, le=360)
    acc_on: bool = pa.Field(nullable=True)
    satellites: int = pa.Field(nullable=True, ge=0)
    altitude_m: float = pa.Field(nullable=True)
    reuploaded: bool = pa.Field(nullable=False)

    @pa.dataframe_check(error="position is (0, 0)")
    def _not_null_island(cls, data: PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(not_null_island())


# --- parking (jimi.open.platform.report.parking, acc_type=0) --------------------------------------
PARKING_COLUMNS = [
    Col.of("imei"),
    Col.of("start_time", "startTime", kind="time"),
    Col.of("end_time", "endTime", kind="time"),
    Col.of("duration_s", "durSecond", kind="int"),
    Col.of("stationary_s", "stopSecond", kind="int"),
    Col.of("acc_on", "accStatus", kind="bool"),
    Col.of("address", "addr"),
    Col.of("lat", kind="float"),
    Col.of("lng", kind="float"),
]


class ParkingSchema(DeviceRecord):
    partition_date: date = pa.Field(nullable=False)
    start_time: datetime = pa.Field(nullable=False)
    end_time: datetime = pa.Field(nullable=False)
    duration_s: int = pa.Field(nullable=False, ge=0)
    stationary_s: int = pa.Field(nullable=True, ge=0)
    acc_on: bool = pa.Field(nullable=True)
    address: str = pa.Field(nullable=True)
    lat: float = latitude_field(nullable=True)
    lng: float = longitude_field(nullable=True)

    @pa.dataframe_check(error="parking ends before it starts")
    def _end_after_start(cls, data: PolarsData) -> pl.LazyFrame:
        return ordered(data, "start_time", "end_time")


# --- alarms (jimi.device.alarm.list; polling and push field names both mapped) --------------------
ALARM_COLUMNS = [
    Col.of("imei", "imei", "deviceImei"),
    Col.of("alarm_time", "alertTime", "gateTime", kind="time"),
    Col.of("alarm_type_id", "alertTypeId", "alarmType"),
    Col.of("alarm_type_name", "alarmTypeName", "alertTypeName", "alarmName"),
    Col.of("positioning_time", "positioningTime", kind="time"),
    Col.of("lat", kind="float"),
    Col.of("lng", kind="float"),
    Col.of("speed_kmh", "speed", kind="float"),
    Col.of("geofence_id", "geoid"),
    Col.of("account_id", "account"),
    Col.of("model", "model"),
    Col.of("device_name", "deviceName"),
]


class AlarmSchema(DeviceRecord):
    partition_date: date = pa.Field(nullable=False)
    alarm_time: datetime = pa.Field(nullable=False)
    alarm_type_id: str = pa.Field(nullable=False)
    alarm_type_name: str = pa.Field(nullable=True)
    positioning_time: datetime = pa.Field(nullable=True)
    lat: float = latitude_field(nullable=True)
    lng: float = longitude_field(nullable=True)
    speed_kmh: float = pa.Field(nullable=True, ge=0, le=MAX_SPEED_KMH)
    geofence_id: str = pa.Field(nullable=True)
    account_id: str = pa.Field(nullable=True)
    model: str = pa.Field(nullable=True)
    device_name: str = pa.Field(nullable=True)


# What each raw column holds, shown on the table's asset in the Dagster UI ("<table>.<column>" where
# one name means different things in two tables). Columns every vendor shares (imei,
# partition_date, snapshot_*) are described once in fleet_pipeline.ingest.validation.
COLUMN_DESCRIPTIONS: dict[str, str] = {
    "acc_on": "Ignition (ACC) state; null when the vendor does not send it.",
    "account_id": "Tracksolid account that owns the device.",
    "activation_time": "Activation (installation) time, naive UTC.",
    "address": "Address Tracksolid geocoded for the stop, if any.",
    "alarm_time": "Time of the alarm / event, naive UTC.",
    "alarm_type_id": "The vendor's alarm code (Tracksolid alertTypeId, Navixy event type).",
    "alarm_type_name": "The vendor's alarm name or event message.",
    "altitude_m": "Altitude in metres.",
    "avg_speed_kmh": "Average speed in km/h.",
    "battery_pct": "Battery level in percent.",
    "device_group": "Device group on its platform.",
    "device_name": "Device label on its platform.",
    "direction_deg": "Heading in degrees from north.",
    "distance_km": "Distance in km as the vendor reports it.",
    "driver_name": "Driver name set on Tracksolid.",
    "duration_s": "Duration in seconds.",
    "enabled": "Whether the device is enabled on Tracksolid.",
    "end_time": "End time, naive UTC.",
    "expiration_time": "Subscription / tariff expiry, naive UTC.",
    "geofence_id": "Geofence of a fence alarm.",
    "gps_signal": "GPS signal level Tracksolid reports (gpsSignal, 0-4).",
    "gps_time": "Time of the GPS fix, naive UTC.",
    "heartbeat_time": "Last time the platform heard from the device, naive UTC.",
    "iccid": "SIM card ICCID.",
    "idle_s": "Seconds idling (stationary, ignition on) inside the trip.",
    "lat": "Latitude, WGS84 degrees.",
    "lng": "Longitude, WGS84 degrees.",
    "max_speed_kmh": "Maximum speed in km/h.",
    "model": "Device model as the vendor spells it.",
    "moving": "Whether the device reports moving.",
    "odometer_km": "Odometer in km as the device reports it.",
    "position_type": "Fix type (GPS, LBS, WIFI).",
    "positioning_time": "GPS time of the fix the alarm was raised at (positioningTime), naive UTC.",
    "power_v": "External power voltage.",
    "reuploaded": "True when the device re-uploaded the fix after a coverage gap (gpsMode 1).",
    "run_time_s": "Seconds the trip ran (runTimeSecond or elapsed).",
    "satellites": "Satellites used for the fix.",
    "sim": "SIM phone number (MSISDN) where known.",
    "speed_kmh": "Speed in km/h.",
    "start_time": "Start time, naive UTC.",
    "stationary_s": "Seconds the device stood still (stopSecond).",
    "subscription_active": "Whether the device's platform subscription is active (expireFlag).",
    "vehicle_name": "Vehicle name set on Tracksolid.",
    "vehicle_number": "Vehicle plate number set on Tracksolid.",
}
