"""Navixy tables: how each vendor row is typed, and the pandera schema every batch must pass.

The client has already converted every date-time to naive UTC (Navixy speaks the user's time zone);
nested fields are reached with dotted paths. Rows are keyed by the tracker id and by the IMEI
(``source.device_id``), which the assets join in from the tracker list.
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

CONNECTION_STATUSES = ["signal_lost", "just_registered", "just_replaced", "offline", "idle", "active"]
MOVEMENT_STATUSES = ["moving", "stopped", "parked"]
TRACKER_STATUSES = ["ok", "blocked"]


class TrackerRecord(DeviceRecord):
    tracker_id: int = pa.Field(nullable=False, gt=0)


# --- trackers (daily snapshot of tracker/list) ----------------------------------------------------
TRACKER_COLUMNS = [
    Col.of("tracker_id", "id", kind="int"),
    Col.of("imei", "source.device_id"),
    Col.of("label"),
    Col.of("group_id", kind="int"),
    Col.of("model", "source.model"),
    Col.of("phone", "source.phone"),
    Col.of("blocked", "source.blocked", kind="bool"),
    Col.of("clone", kind="bool"),
    Col.of("source_id", "source.id", kind="int"),
    Col.of("tariff_id", "source.tariff_id", kind="int"),
    # Date-only on the wire ("2021-09-20"), though the doc calls them date/time.
    Col.of("created_date", "source.creation_date", kind="date"),
    Col.of("tariff_end_date", "source.tariff_end_date", kind="date"),
]


class TrackerSchema(TrackerRecord):
    snapshot_date: date = pa.Field(nullable=False)
    snapshot_at: datetime = pa.Field(nullable=False)
    label: str = pa.Field(nullable=True)
    group_id: int = pa.Field(nullable=True)
    model: str = pa.Field(nullable=True)
    phone: str = pa.Field(nullable=True)
    blocked: bool = pa.Field(nullable=False)
    clone: bool = pa.Field(nullable=True)
    source_id: int = pa.Field(nullable=True)
    tariff_id: int = pa.Field(nullable=True)
    created_date: date = pa.Field(nullable=True)
    tariff_end_date: date = pa.Field(nullable=True)


# --- states (daily snapshot of tracker/get_states) ------------------------------------------------
STATE_COLUMNS = [
    Col.of("tracker_id", kind="int"),
    Col.of("imei"),
    Col.of("tracker_status"),
    Col.of("lat", "gps.location.lat", kind="float"),
    Col.of("lng", "gps.location.lng", kind="float"),
    Col.of("gps_time", "gps.updated", kind="time"),
    Col.of("gps_signal_pct", "gps.signal_level", kind="int"),
    Col.of("heading_deg", "gps.heading", kind="float"),
    Col.of("speed_kmh", "gps.speed", kind="float"),
    Col.of("altitude_m", "gps.alt", kind="float"),
    Col.of("connection_status"),
    Col.of("movement_status"),
    Col.of("movement_status_time", "movement_status_update", kind="time"),
    Col.of("ignition_on", "ignition", kind="bool"),
    Col.of("ignition_time", "ignition_update", kind="time"),
    Col.of("gsm_signal_pct", "gsm.signal_level", kind="int"),
    Col.of("gsm_network", "gsm.network_name"),
    Col.of("gsm_roaming", "gsm.roaming", kind="bool"),
    Col.of("battery_pct", "battery_level", kind="int"),
    Col.of("last_update_time", "last_update", kind="time"),
    Col.of("last_track_time", "actual_track_update", kind="time"),
]


class StateSchema(TrackerRecord):
    snapshot_date: date = pa.Field(nullable=False)
    snapshot_at: datetime = pa.Field(nullable=False)
    tracker_status: str = pa.Field(nullable=False, isin=TRACKER_STATUSES)
    lat: float = latitude_field(nullable=True)
    lng: float = longitude_field(nullable=True)
    gps_time: datetime = pa.Field(nullable=True)
    gps_signal_pct: int = pa.Field(nullable=True, ge=0, le=100)
    heading_deg: float = pa.Field(nullable=True, ge=0, le=360)
    speed_kmh: float = pa.Field(nullable=True, ge=0, le=MAX_SPEED_KMH)
    altitude_m: float = pa.Field(nullable=True)
    connection_status: str = pa.Field(nullable=True, isin=CONNECTION_STATUSES)
    movement_status: str = pa.Field(nullable=True, isin=MOVEMENT_STATUSES)
    movement_status_time: datetime = pa.Field(nullable=True)
    ignition_on: bool = pa.Field(nullable=True)
    ignition_time: datetime = pa.Field(nullable=True)
    gsm_signal_pct: int = pa.Field(nullable=True, ge=0, le=100)
    gsm_network: str = pa.Field(nullable=True)
    gsm_roaming: bool = pa.Field(nullable=True)
    battery_pct: int = pa.Field(nullable=True, ge=0, le=100)
    last_update_time: datetime = pa.Field(nullable=True)
    last_track_time: datetime = pa.Field(nullable=True)

    @pa.dataframe_check(error="position is (0, 0)")
    def _not_null_island(cls, data: PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(not_null_island())


# --- trips (track/list) ---------------------------------------------------------------------------
TRIP_COLUMNS = [
    Col.of("tracker_id", kind="int"),
    Col.of("imei"),
    Col.of("track_id", "id", kind="int"),
    Col.of("start_time", "start_date", kind="time"),
    Col.of("end_time", "end_date", kind="time"),
    Col.of("distance_km", "length", kind="float"),
    Col.of("avg_speed_kmh", "avg_speed", kind="float"),
    Col.of("max_speed_kmh", "max_speed", kind="float"),
    Col.of("point_count", "points", kind="int"),
    Col.of("event_count", kind="int"),
    Col.of("start_address"),
    Col.of("end_address"),
    Col.of("track_type", "type"),
    Col.of("gsm_lbs", kind="bool"),
]


class TripSchema(TrackerRecord):
    partition_date: date = pa.Field(nullable=False)
    track_id: int = pa.Field(nullable=True)
    start_time: datetime = pa.Field(nullable=False)
    end_time: datetime = pa.Field(nullable=False)
    duration_s: int = pa.Field(nullable=False, ge=0)
    distance_km: float = pa.Field(nullable=True, ge=0)
    avg_speed_kmh: float = pa.Field(nullable=True, ge=0, le=MAX_SPEED_KMH)
    max_speed_kmh: float = pa.Field(nullable=True, ge=0, le=MAX_SPEED_KMH)
    point_count: int = pa.Field(nullable=True, ge=0)
    event_count: int = pa.Field(nullable=True, ge=0)
    start_address: str = pa.Field(nullable=True)
    end_address: str = pa.Field(nullable=True)
    track_type: str = pa.Field(nullable=True)
    gsm_lbs: bool = pa.Field(nullable=True)

    @pa.dataframe_check(error="trip ends before it starts")
    def _end_after_start(cls, data: PolarsData) -> pl.LazyFrame:
        return ordered(data, "start_time", "end_time")


# --- track points (track/read, simplify=false) ----------------------------------------------------
TRACK_POINT_COLUMNS = [
    Col.of("tracker_id", kind="int"),
    Col.of("imei"),
    Col.of("gps_time", "get_time", kind="time"),
    Col.of("lat", kind="float"),
    Col.of("lng", kind="float"),
    Col.of("altitude_m", "alt", kind="float"),
    Col.of("satellites", kind="int"),
    # Navixy's per-point `mileage` is the km since the previous fix, not an odometer reading.
    Col.of("distance_from_previous_km", "mileage", kind="float"),
    Col.of("heading_deg", "heading", kind="float"),
    Col.of("speed_kmh", "speed", kind="float"),
    Col.of("precision_m", "precision", kind="float"),
    Col.of("gsm_lbs", kind="bool"),
    Col.of("parking", kind="bool"),
    Col.of("buffered", kind="bool"),
    Col.of("address"),
]


class TrackPointSchema(TrackerRecord):
    partition_date: date = pa.Field(nullable=False)
    gps_time: datetime = pa.Field(nullable=False)
    lat: float = latitude_field()
    lng: float = longitude_field()
    altitude_m: float = pa.Field(nullable=True)
    satellites: int = pa.Field(nullable=True, ge=0)
    distance_from_previous_km: float = pa.Field(nullable=True, ge=0)
    heading_deg: float = pa.Field(nullable=True, ge=0, le=360)
    speed_kmh: float = pa.Field(nullable=True, ge=0, le=MAX_SPEED_KMH)
    precision_m: float = pa.Field(nullable=True, ge=0)
    gsm_lbs: bool = pa.Field(nullable=True)
    parking: bool = pa.Field(nullable=True)
    buffered: bool = pa.Field(nullable=True)
    address: str = pa.Field(nullable=True)

    @pa.dataframe_check(error="position is (0, 0)")
    def _not_null_island(cls, data: PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(not_null_island())


# --- events (history/tracker/list) ----------------------------------------------------------------
EVENT_COLUMNS = [
    Col.of("event_id", "id", kind="int"),
    Col.of("tracker_id", kind="int"),
    Col.of("imei"),
    Col.of("event_time", "time", kind="time"),
    Col.of("event_type", "event"),
    Col.of("history_type", "type"),
    Col.of("message"),
    Col.of("lat", "location.lat", kind="float"),
    Col.of("lng", "location.lng", kind="float"),
    Col.of("precision_m", "location.precision", kind="float"),
    Col.of("address"),
    Col.of("rule_id", kind="int"),
    Col.of("track_id", kind="int"),
    Col.of("emergency", "extra.emergency", kind="bool"),
    Col.of("is_read", kind="bool"),
]


class EventSchema(TrackerRecord):
    partition_date: date = pa.Field(nullable=False)
    event_id: int = pa.Field(nullable=False, unique=True)
    event_time: datetime = pa.Field(nullable=False)
    event_type: str = pa.Field(nullable=False)
    history_type: str = pa.Field(nullable=True)
    message: str = pa.Field(nullable=True)
    lat: float = latitude_field(nullable=True)
    lng: float = longitude_field(nullable=True)
    precision_m: float = pa.Field(nullable=True, ge=0)
    address: str = pa.Field(nullable=True)
    rule_id: int = pa.Field(nullable=True)
    track_id: int = pa.Field(nullable=True)
    emergency: bool = pa.Field(nullable=True)
    is_read: bool = pa.Field(nullable=True)


# --- daily mileage (tracker/stats/mileage/read, keyed by the user's local calendar day) -----------
MILEAGE_COLUMNS = [
    Col.of("tracker_id", kind="int"),
    Col.of("imei"),
    Col.of("local_date", kind="date"),
    Col.of("mileage_km", kind="float"),
]


class MileageSchema(TrackerRecord):
    partition_date: date = pa.Field(nullable=False)
    local_date: date = pa.Field(nullable=False)
    time_zone: str = pa.Field(nullable=False)
    mileage_km: float = pa.Field(nullable=False, ge=0, le=3000)


# --- sensor readings (tracker/get_diagnostics, get_fuel, get_readings as long-format rows) --------
SENSOR_COLUMNS = [
    Col.of("tracker_id", kind="int"),
    Col.of("imei"),
    Col.of("source"),
    Col.of("sensor"),
    Col.of("label"),
    Col.of("sensor_type"),
    Col.of("value_num", kind="float"),
    Col.of("value_text"),
    Col.of("units"),
    Col.of("updated_time", kind="time"),
]


class SensorReadingSchema(TrackerRecord):
    snapshot_date: date = pa.Field(nullable=False)
    snapshot_at: datetime = pa.Field(nullable=False)
    source: str = pa.Field(nullable=False, isin=["diagnostics", "fuel", "readings"])
    sensor: str = pa.Field(nullable=False)
    label: str = pa.Field(nullable=True)
    sensor_type: str = pa.Field(nullable=True)
    value_num: float = pa.Field(nullable=True)
    value_text: str = pa.Field(nullable=True)
    units: str = pa.Field(nullable=True)
    updated_time: datetime = pa.Field(nullable=True)


# What each raw column holds, shown on the table's asset in the Dagster UI ("<table>.<column>" where
# one name means different things in two tables). Columns every vendor shares (imei,
# partition_date, snapshot_*) are described once in fleet_pipeline.ingest.validation.
COLUMN_DESCRIPTIONS: dict[str, str] = {
    "events.address": "Address Navixy geocoded for the event location, if any.",
    "track_points.address": "Address Navixy geocoded for the point, if any.",
    "altitude_m": "Altitude in metres.",
    "avg_speed_kmh": "Average speed in km/h.",
    "battery_pct": "Battery level in percent.",
    "blocked": "Tracker blocked on Navixy (its data is refused).",
    "buffered": "True when the point was held on the device and uploaded late.",
    "clone": "True when the tracker is a clone of another tracker (same device, second account).",
    "connection_status": "Navixy connection status.",
    "created_date": "Activation (installation) day: the tracker's registration date (Navixy gives no time).",
    "distance_from_previous_km":
        "Km since the previous fix as the device reports it (Navixy point mileage); null where not sent.",
    "distance_km": "Distance in km as the vendor reports it.",
    "duration_s": "Duration in seconds.",
    "emergency": "Navixy emergency flag (SOS).",
    "end_address": "Address Navixy geocoded for the trip's end, if any.",
    "end_time": "End time, naive UTC.",
    "event_count": "Number of points Navixy used for the trip.",
    "event_id": "Navixy event id.",
    "event_time": "Time of the alarm / event, naive UTC.",
    "event_type": "The vendor's alarm code (Tracksolid alertTypeId, Navixy event type).",
    "gps_signal_pct": "GPS signal level, 0-100 %.",
    "gps_time": "Time of the GPS fix, naive UTC.",
    "group_id": "Group id on the platform.",
    "track_points.gsm_lbs": "True when the location was found by GSM cell (LBS), not by GPS.",
    "trips.gsm_lbs": "True when the trip was located by GSM cell (LBS), not by GPS.",
    "gsm_network": "Name of the GSM network the tracker is on.",
    "gsm_roaming": "Whether the tracker's SIM is roaming.",
    "gsm_signal_pct": "GSM signal level, 0-100 %.",
    "states.heading_deg": "Heading in degrees (0 = north).",
    "track_points.heading_deg": "Heading in degrees from north.",
    "history_type": "Navixy history event type (type), e.g. the rule or state change that raised it.",
    "ignition_on": "Ignition (ACC) state; null when the vendor does not send it.",
    "ignition_time": "When the ignition state last changed (ignition_update), naive UTC.",
    "is_read": "Whether a Navixy user has marked the event as read.",
    "sensor_readings.label": "Sensor label.",
    "trackers.label": "Device label on its platform.",
    "last_track_time": "Time of the tracker's last track point (actual_track_update), naive UTC.",
    "last_update_time": "When Navixy last heard from the tracker (last_update), naive UTC.",
    "lat": "Latitude, WGS84 degrees.",
    "lng": "Longitude, WGS84 degrees.",
    "local_date": "The Navixy user's LOCAL calendar day.",
    "max_speed_kmh": "Maximum speed in km/h.",
    "message": "The vendor's alarm name or event message.",
    "mileage_km": "Distance in km as the vendor reports it.",
    "model": "Device model as the vendor spells it.",
    "movement_status": "Navixy movement status.",
    "movement_status_time": "When the movement status last changed (movement_status_update), naive UTC.",
    "parking": "Navixy's parking flag on the fix.",
    "phone": "SIM phone number (MSISDN) where known.",
    "point_count": "Fixes in the track.",
    "precision_m": "Location precision in metres, where the tracker reports it.",
    "rule_id": "Navixy rule that raised the event, if any.",
    "satellites": "Satellites used for the fix.",
    "sensor": "Sensor name.",
    "sensor_type": "Sensor type.",
    "source": "Sensor source (Navixy).",
    "source_id": "Navixy id of the tracker's source device (source.id).",
    "speed_kmh": "Speed in km/h.",
    "start_address": "Address Navixy geocoded for the trip's start, if any.",
    "start_time": "Start time, naive UTC.",
    "tariff_end_date": "Subscription / tariff expiry day (Navixy gives no time).",
    "tariff_id": "Navixy tariff the tracker is billed on (source.tariff_id).",
    "time_zone": "The Navixy user's time zone.",
    "track_id": "Navixy track id.",
    "track_type": "Navixy track type (type), e.g. regular or GSM-only.",
    "tracker_id": "Navixy tracker id (object_id).",
    "tracker_status": "Navixy tracker status.",
    "units": "Units of the sensor value.",
    "updated_time": "When the value was updated, naive UTC.",
    "value_num": "Numeric sensor value.",
    "value_text": "Text sensor value.",
}
