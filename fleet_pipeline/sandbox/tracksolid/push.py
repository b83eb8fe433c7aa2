"""The Tracksolid sandbox pushes: the World's events of a day as Jimi sends them to a receiver.

`push_messages` turns a UTC day of the World into push items in the vendor's field names
(docs/vendor-apis/tracksolid-pro.md section 10; SPEC.md "Push"): GPS fixes, heartbeats, alarms,
logins/logouts, OBD readings, DTC fault reports and trip reports. A day's messages are the events
whose own time is on that day (a late fix is pushed with its later ``gateTime``). `PushSender` posts
them as Jimi does: per push path, in batches of up to 50, form-encoded (or JSON), and it sends a
batch again until it is acknowledged with ``{"code":0,"msg":"success"}``; a 4xx answer is a refusal
and is not retried. Tests and the load benchmark build on both (the `push-load` side too: the
msg_id of each message is what the landing files must hold).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import httpx

from fleet_pipeline.push.landing import message_id
from fleet_pipeline.push.protocol import ACK, FORM, JSON, MAX_ITEMS_PER_PUSH, encode_form, encode_json
from fleet_pipeline.sandbox.tracksolid.protocol import epoch, fmt
from fleet_pipeline.sandbox.tracksolid.synthesis import NO_ALTITUDE_MODELS, alarm_type
from fleet_pipeline.sandbox.world import Device, DeviceDay, World, telemetry


@dataclass(frozen=True)
class PushMessage:
    """One item as Jimi pushes it: the push path, the time it is sent, the item's fields."""

    path: str
    sent_at: datetime
    item: dict[str, Any]

    @property
    def msg_id(self) -> str:
        return message_id(self.path, self.item)


def _bcd(moment: datetime) -> str:
    """The trip report's "BCD format" time: yyMMddHHmmss."""
    return moment.strftime("%y%m%d%H%M%S")


def _gps(d: Device, day: DeviceDay) -> list[PushMessage]:
    no_altitude = d.model in NO_ALTITUDE_MODELS
    return [PushMessage("/pushgps", p["received_at"], {
        "deviceImei": d.imei, "gpsTime": fmt(p["gps_time"]), "gateTime": fmt(p["received_at"]),
        "lng": round(p["lng"], 6), "lat": round(p["lat"], 6), "satelliteNum": int(p["satellites"]),
        "gpsSpeed": round(p["speed_kmh"]), "direction": round(p["direction_deg"]) % 360,
        "acc": int(p["acc_on"]), "postType": 1, "postMethod": 0, "status": 1,
        "altitude": 0 if no_altitude else round(p["altitude_m"]), "distance": round(p["odometer_km"] * 1000),
    }) for p in day.points.iter_rows(named=True)]


def _alarms(d: Device, day: DeviceDay) -> list[PushMessage]:
    messages = []
    for alarm in day.alarms:
        type_id, type_name = alarm_type(d, alarm)
        item = {"deviceImei": d.imei, "alarmType": type_id, "alarmName": type_name, "gateTime": fmt(alarm.time),
                "lat": round(alarm.lat, 6), "lng": round(alarm.lng, 6), "gpsSpeed": round(alarm.speed_kmh)}
        if alarm.geofence_id is not None:
            item["geoid"] = alarm.geofence_id
        messages.append(PushMessage("/pushalarm", alarm.time, item))
    return messages


def _events(d: Device, day: DeviceDay) -> list[PushMessage]:
    return [PushMessage("/pushevent", event.time, {"deviceImei": d.imei, "type": event.kind,
                                                    "gateTime": fmt(event.time), "timezone": "GMT+00:00"})
            for event in telemetry.connections(day)]


def _heartbeats(seed: int, d: Device, day: DeviceDay) -> list[PushMessage]:
    return [PushMessage("/pushhb", beat.time, {
        "deviceImei": d.imei, "gateTime": fmt(beat.time), "powerLevel": beat.power_level,
        "gsmSign": beat.gsm_signal, "acc": int(beat.acc_on), "powerStatus": int(beat.acc_on),
        "fortify": int(not beat.acc_on)}) for beat in telemetry.heartbeats(seed, d, day)]


def _obd(seed: int, d: Device, day: DeviceDay) -> list[PushMessage]:
    return [PushMessage("/pushobd", reading.time, {"deviceImei": d.imei, "obdJson": {
        "car_type": 2, "push_time": fmt(reading.time), "event_time": fmt(reading.time),
        "AccState": int(reading.engine_rpm > 0), "statusFlags": 0, "lng": reading.lng, "lat": reading.lat,
        # dataID<PID> with the SAE J1979 PID number: 4 load, 5 coolant, 12 rpm, 13 speed, 47 fuel, 66 volts (mV)
        "dataID4": reading.engine_load_pct, "dataID5": reading.coolant_temp_c, "dataID12": reading.engine_rpm,
        "dataID13": reading.speed_kmh, "dataID47": reading.fuel_level_pct, "dataID66": reading.battery_mv,
    }}) for reading in telemetry.obd_readings(seed, d, day)]


def _faults(seed: int, d: Device, day: DeviceDay) -> list[PushMessage]:
    return [PushMessage("/pushfaultinfo", report.time, {
        "deviceImei": d.imei, "gateTime": fmt(report.time), "faultCodeList": list(report.codes),
        "faultNum": len(report.codes), "statusFlags": 0, "lng": report.lng, "lat": report.lat,
        "eventTime": epoch(report.time)}) for report in telemetry.fault_reports(seed, d, day)]


def _trip_reports(d: Device, day: DeviceDay) -> list[PushMessage]:
    messages = []
    for seq, trip in enumerate(day.trips, start=1):
        common = {"deviceImei": d.imei, "tripSeq": seq, "beginTime": _bcd(trip.start),
                  "beginLat": round(trip.start_lat, 6), "beginLng": round(trip.start_lng, 6)}
        messages.append(PushMessage("/pushtripreport", trip.start, {
            **common, "gateTime": fmt(trip.start), "miles": 0.0, "oils": 0.0, "idleTimes": 0, "properties": 1}))
        messages.append(PushMessage("/pushtripreport", trip.end, {
            **common, "gateTime": fmt(trip.end), "endTime": _bcd(trip.end), "endLat": round(trip.end_lat, 6),
            "endLng": round(trip.end_lng, 6), "miles": round(trip.distance_km, 3),
            "oils": round(trip.distance_km * 0.07, 2), "idleTimes": int(trip.idle_s), "properties": 2}))
    return messages


def push_messages(world: World, day: date) -> list[PushMessage]:
    """Every message the World's activated Tracksolid devices push for the UTC day, in sending order."""
    at = datetime.combine(day, datetime.min.time())
    messages: list[PushMessage] = []
    for d in world.devices_on("tracksolid", at):
        device_day = world.day(d.imei, day)
        messages += (_gps(d, device_day) + _alarms(d, device_day) + _events(d, device_day)
                     + _heartbeats(world.seed, d, device_day) + _obd(world.seed, d, device_day)
                     + _faults(world.seed, d, device_day) + _trip_reports(d, device_day))
    return sorted(messages, key=lambda m: m.sent_at)


def batches(messages: Iterable[PushMessage], batch_size: int = MAX_ITEMS_PER_PUSH) -> list[list[PushMessage]]:
    """Messages cut into batches per push path, in sending order (a batch goes when it is full)."""
    if not 1 <= batch_size <= MAX_ITEMS_PER_PUSH:
        raise ValueError(f"batch_size must be 1..{MAX_ITEMS_PER_PUSH} (the vendor's limit), got {batch_size}")
    open_batches: dict[str, list[PushMessage]] = {}
    done = []
    for message in messages:
        batch = open_batches.setdefault(message.path, [])
        batch.append(message)
        if len(batch) == batch_size:
            done.append(open_batches.pop(message.path))
    return done + [batch for batch in open_batches.values() if batch]


@dataclass
class PushReport:
    requests: int = 0
    acknowledged: int = 0       # messages in acknowledged batches
    retries: int = 0            # batches sent again after no acknowledgement
    refused: int = 0            # messages in batches answered 4xx (not retried)
    refusals: list[str] = field(default_factory=list)


class PushSender:
    """Posts batches to a receiver as Jimi does, re-sending each until it is acknowledged."""

    def __init__(self, base_url: str, token: str, encoding: str = "form", batch_size: int = MAX_ITEMS_PER_PUSH,
                 max_attempts: int = 8, backoff_s: float = 0.5, timeout_s: float = 10.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if encoding not in ("form", "json"):
            raise ValueError(f"encoding must be form or json, got {encoding!r}")
        self.base_url = base_url.rstrip("/")
        self.token, self.encoding, self.batch_size = token, encoding, batch_size
        self.max_attempts, self.backoff_s, self._sleep = max_attempts, backoff_s, sleep
        self.http = httpx.Client(timeout=timeout_s)

    def __enter__(self) -> PushSender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    def body(self, items: Sequence[dict[str, Any]]) -> tuple[bytes, str]:
        if self.encoding == "json":
            return encode_json(self.token, items), JSON
        return encode_form(self.token, items), FORM

    def send(self, messages: Iterable[PushMessage], report: PushReport | None = None) -> PushReport:
        report = report or PushReport()
        for batch in batches(messages, self.batch_size):
            self.send_batch(batch[0].path, [m.item for m in batch], report)
        return report

    def send_batch(self, path: str, items: Sequence[dict[str, Any]], report: PushReport) -> bool:
        """True once acknowledged; False when refused (4xx). Raises after max_attempts without an answer."""
        body, content_type = self.body(items)
        problem = "not sent"
        for attempt in range(1, self.max_attempts + 1):
            if attempt > 1:
                report.retries += 1
                self._sleep(min(self.backoff_s * 2 ** (attempt - 2), 5.0))
            report.requests += 1
            try:
                answer = self.http.post(self.base_url + path, content=body, headers={"Content-Type": content_type})
            except httpx.TransportError as exc:
                problem = f"{type(exc).__name__}: {exc}"
                continue
            if 400 <= answer.status_code < 500 and answer.status_code not in (408, 429):
                report.refused += len(items)
                report.refusals.append(f"{path} HTTP {answer.status_code}: {answer.text[:300]}")
                return False
            if answer.status_code == 200 and _is_ack(answer):
                report.acknowledged += len(items)
                return True
            problem = f"HTTP {answer.status_code}: {answer.text[:200]}"
        raise RuntimeError(f"tracksolid sandbox push {path}: no acknowledgement after {self.max_attempts} "
                           f"attempts, last: {problem}")


def _is_ack(answer: httpx.Response) -> bool:
    try:
        return answer.json() == ACK
    except ValueError:
        return False
