"""World truth as Tracksolid rows: positions, trips, parkings and alarms in Jimi's field names."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from fleet_pipeline.sandbox.tracksolid.protocol import distance, fmt, iso_z, odometer

if TYPE_CHECKING:
    from fleet_pipeline.sandbox.world import Device


# (alertTypeId, display name) per World alarm kind; overspeed depends on the device (see below).
_ALARM_TYPES = {
    "sos": ("1", "SOS alarm"),
    "power_cut": ("2", "Power cut alarm"),
    "vibration": ("3", "Vibration alert"),
    "low_battery": ("14", "Low battery alarm"),
    "geofence_in": ("in", "Enter fence alert"),
    "geofence_out": ("out", "Leave fence alert"),
}
_OVERSPEED_DEVICE = ("6", "Overspeed alarm")
_OVERSPEED_PLATFORM = ("overSpeed", "Overspeed alert")
NO_ALTITUDE_MODELS = frozenset({"X3", "GT06E"})


class TracksolidRows:
    """The rows that read the World.

    A part of `TracksolidApp` (app.py), whose constructor sets the World, knobs, clock and state read here.
    """

    def _location_row(self, d: Device, now: datetime) -> dict[str, Any] | None:
        fix = self.world.last_fix(d.imei, now)
        if fix is None:
            return None
        expired = d.expiration_date < now.date()
        satellites = int(fix["satellites"])
        voltage = 12.2 + (d.index % 7) * 0.1 + (1.6 if fix["acc_on"] else 0.0)
        return {
            "imei": d.imei, "deviceName": d.device_name,
            "status": "1" if fix["speed_kmh"] > 0 else "0",
            "lat": 0 if expired else round(float(fix["lat"]), 6),
            "lng": 0 if expired else round(float(fix["lng"]), 6),
            "speed": str(round(float(fix["speed_kmh"]))),
            "direction": str(round(float(fix["direction_deg"])) % 360),
            "gpsTime": fmt(fix["gps_time"]), "hbTime": fmt(fix["received_at"]),
            "accStatus": "1" if fix["acc_on"] else "0",
            "gpsSignal": str(min(4, satellites // 3)), "gpsNum": str(satellites),
            "currentMileage": odometer(float(fix["odometer_km"])),
            "powerValue": f"{voltage:.2f}", "elecQuantity": "", "posType": "GPS",
            "expireFlag": "0" if expired else "1", "activationFlag": "1",
        }


def mileage_row(d: Device, trip: Any, per_km: float) -> dict[str, Any]:
    duration_s = int((trip.end - trip.start).total_seconds())
    return {"imei": d.imei, "startTime": fmt(trip.start), "endTime": fmt(trip.end),
            "distance": distance(trip.distance_km * per_km, per_km),
            "avgSpeed": str(round(trip.avg_speed_kmh)), "maxSpeed": str(round(trip.max_speed_kmh)),
            ("elapsed" if d.index % 2 else "runTimeSecond"): duration_s,
            "idleSecond": int(trip.idle_s)}


def parking_row(d: Device, stop: Any) -> dict[str, Any]:
    duration_s = int((stop.end - stop.start).total_seconds())
    row: dict[str, Any] = {"imei": d.imei, "deviceName": d.device_name,
                           "startTime": iso_z(stop.start), "endTime": iso_z(stop.end),
                           "durSecond": duration_s}
    if not stop.ignition_on and d.index % 4 != 0:
        row["stopSecond"] = duration_s
    row.update({"addr": "", "lat": round(stop.lat, 6), "lng": round(stop.lng, 6),
                "accStatus": "1" if stop.ignition_on else "0"})
    return row


def alarm_type(d: Device, alarm: Any) -> tuple[str, str]:
    """(type id, display name) of a World alarm: the same for the alarm list and the alarm push."""
    if alarm.kind == "overspeed":
        return _OVERSPEED_DEVICE if d.index % 2 == 0 else _OVERSPEED_PLATFORM
    return _ALARM_TYPES[alarm.kind]


def alarm_row(d: Device, alarm: Any) -> dict[str, Any]:
    type_id, type_name = alarm_type(d, alarm)
    name_key = "alertTypeName" if (d.index + alarm.time.second) % 5 == 0 else "alarmTypeName"
    row: dict[str, Any] = {"deviceName": d.device_name, "imei": d.imei, "model": d.model,
                           "account": d.account_id, "alertTypeId": type_id, name_key: type_name,
                           "alertTime": fmt(alarm.time), "positioningTime": fmt(alarm.time),
                           "lat": round(alarm.lat, 6), "lng": round(alarm.lng, 6),
                           "speed": str(round(alarm.speed_kmh))}
    if alarm.geofence_id is not None:
        row["geoid"] = alarm.geofence_id
    return row
