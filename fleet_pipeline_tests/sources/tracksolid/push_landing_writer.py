"""Test helper: landing files written exactly as the push-landing contract says, from the World.

Not a receiver: it writes what a receiver would have landed for given push items, so the push
assets can be tested on their own. The files, their lines and the msg_id rule are the receiver's
own (``fleet_pipeline.push.landing``): ``<landing>/<received UTC day>/*.jsonl``, one ``{"msg_id",
"push_path", "received_at", "item"}`` a line, files written as ``.jsonl.open`` and renamed when closed.

The push items follow docs/vendor-apis/tracksolid-pro.md section 10 and the push samples: GPS
fixes, alarms and trips are the World's own (each fix pushed when the platform received it, so the late
ones land days later); the kinds the World has no truth for (heartbeats, OBD, DTC codes, trip
login/logout) are the documents' example items placed at the World's fix times.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from fleet_pipeline.push.landing import LandingFiles, LandingRecord, message_id
from fleet_pipeline.sandbox.tracksolid.protocol import fmt
from fleet_pipeline.sandbox.tracksolid.synthesis import alarm_row
from fleet_pipeline.sandbox.world import World

PUSH_DELAY = timedelta(seconds=30)


@dataclass(frozen=True)
class Pushed:
    """One item as pushed: its path, the item, and when the receiver took it (naive UTC)."""

    push_path: str
    item: dict[str, Any]
    received_at: datetime

    @property
    def msg_id(self) -> str:
        return message_id(self.push_path, self.item)

    def record(self) -> LandingRecord:
        return LandingRecord.of(self.push_path, self.item, self.received_at.replace(tzinfo=timezone.utc))


def landed_line(message: Pushed) -> str:
    """The message's line as the receiver writes it (without the newline)."""
    return message.record().line().decode().rstrip("\n")


def land(landing_dir: Path, messages: Iterable[Pushed], keep_open: bool = False,
         extra_lines: Iterable[str] = ()) -> list[Path]:
    """Write the messages with the receiver's own landing files: one file per received day,
    fsync'd, then closed (renamed) unless ``keep_open`` (then left as a killed receiver leaves
    them); ``extra_lines`` (raw text) go into the first day's file as they are."""
    by_day: dict[str, list[bytes]] = {}
    for message in messages:
        record = message.record()
        by_day.setdefault(record.day, []).append(record.line())
    extra = list(extra_lines)
    if extra and not by_day:
        raise ValueError("extra lines need at least one message to give them a landing day")
    if extra:
        by_day[min(by_day)] += [line.encode() + b"\n" for line in extra]
    files = LandingFiles(landing_dir)
    files.write_durably(dict(sorted(by_day.items())))
    return sorted(files.abandon() if keep_open else files.close_all())


# --- the World's pushes ---------------------------------------------------------------------------

def gps_pushes(world: World, imei: str, day: date) -> Iterator[Pushed]:
    """Every fix the device recorded on ``day``, pushed when the platform received it."""
    for fix in world.day(imei, day).points.iter_rows(named=True):
        item = {"deviceImei": imei, "gpsTime": fmt(fix["gps_time"]), "gateTime": fmt(fix["received_at"]),
                "lng": round(fix["lng"], 6), "lat": round(fix["lat"], 6), "satelliteNum": int(fix["satellites"]),
                "gpsSpeed": round(fix["speed_kmh"]), "direction": round(fix["direction_deg"]) % 360,
                "acc": 1 if fix["acc_on"] else 0, "postType": 1, "altitude": round(fix["altitude_m"])}
        yield Pushed("/pushgps", item, fix["received_at"])


def alarm_pushes(world: World, imei: str, day: date) -> Iterator[Pushed]:
    """The World's alarms as /pushalarm items: the polled row renamed per the BUG-01 table
    (alertTypeId -> alarmType, alarmTypeName -> alarmName, alertTime -> gateTime), every third in
    the JIMI-protocol shape of the push samples (imei, msgClass, msg.alertType)."""
    device = world.device(imei)
    for n, alarm in enumerate(world.day(imei, day).alarms):
        polled = alarm_row(device, alarm)
        name = polled.get("alarmTypeName", polled.get("alertTypeName"))
        if n % 3 == 2:
            item = {"type": "DEVICE", "msgClass": 0, "imei": imei, "gateTime": polled["alertTime"],
                    "msg": {"alertType": polled["alertTypeId"], "lng": polled["lng"], "lat": polled["lat"],
                            "gpsSpeed": int(polled["speed"])}}
        else:
            item = {"deviceImei": imei, "alarmType": polled["alertTypeId"], "alarmName": name,
                    "gateTime": polled["alertTime"], "lat": polled["lat"], "lng": polled["lng"]}
        # Pushed as it is raised, half a minute before the next poll could see it.
        yield Pushed("/pushalarm", item, alarm.time + PUSH_DELAY)


def hourly_fix_times(world: World, imei: str, day: date) -> list[datetime]:
    """The first fix time of each hour the device recorded a fix in."""
    seen: dict[int, datetime] = {}
    for moment in world.day(imei, day).points["gps_time"].to_list():
        seen.setdefault(moment.hour, moment)
    return [seen[hour] for hour in sorted(seen)]


def heartbeat_pushes(world: World, imei: str, day: date) -> Iterator[Pushed]:
    """A heartbeat (10.2, sample pushhb_form) in each hour the device was heard, its power level
    falling through the day."""
    index = world.device(imei).index
    for n, moment in enumerate(hourly_fix_times(world, imei, day)):
        item = {"deviceImei": imei, "gateTime": fmt(moment), "powerLevel": max(5, 95 - 3 * n - index % 7),
                "gsmSign": 40 + (index * 7 + n) % 60, "acc": n % 2, "powerStatus": 0, "fortify": 0}
        yield Pushed("/pushhb", item, moment)


def fault_code_pushes(world: World, imei: str, day: date) -> Iterator[Pushed]:
    """DTC reports (10.21) for one device in three: the document's codes at its first fix."""
    device = world.device(imei)
    times = hourly_fix_times(world, imei, day)
    if device.index % 3 or not times:
        return
    codes = ["P0301", "P0420"][: 1 + device.index % 2]
    item = {"deviceImei": imei, "gateTime": fmt(times[0]), "faultCodeList": codes, "faultNum": len(codes),
            "statusFlags": 0, "lat": 45.76, "lng": 4.83}
    yield Pushed("/pushfaultinfo", item, times[0])


def obd_pushes(world: World, imei: str, day: date) -> Iterator[Pushed]:
    """One OBD reading (10.20) at each hour's first fix."""
    for moment in hourly_fix_times(world, imei, day):
        item = {"deviceImei": imei, "obdJson": {"car_type": 2, "push_time": fmt(moment), "event_time": fmt(moment),
                                                "AccState": 1, "statusFlags": 0, "lng": 4.83, "lat": 45.76,
                                                "dataID1": 2100, "dataID2": 88}}
        yield Pushed("/pushobd", item, moment)


def event_pushes(world: World, imei: str, day: date) -> Iterator[Pushed]:
    """LOGIN at the device's first fix of the day and LOGOUT at its last (10.1)."""
    times = world.day(imei, day).points["gps_time"].to_list()
    for kind, moment in (("LOGIN", times[0]), ("LOGOUT", times[-1])) if times else ():
        yield Pushed("/pushevent", {"deviceImei": imei, "type": kind, "gateTime": fmt(moment),
                                    "timezone": "GMT+00:00"}, moment)


def trip_report_pushes(world: World, imei: str, day: date) -> Iterator[Pushed]:
    """The World's trips as /pushtripreport items (10.22): a start report, then an end report with
    the distance; times in the document's BCD format (yyMMddHHmmss)."""
    for seq, trip in enumerate(world.day(imei, day).trips, start=1):
        common = {"deviceImei": imei, "tripSeq": seq, "beginTime": trip.start.strftime("%y%m%d%H%M%S"),
                  "beginLat": round(trip.start_lat, 6), "beginLng": round(trip.start_lng, 6)}
        yield Pushed("/pushtripreport", {**common, "gateTime": fmt(trip.start), "properties": 1}, trip.start)
        yield Pushed("/pushtripreport", {**common, "gateTime": fmt(trip.end), "properties": 2,
                                         "endTime": trip.end.strftime("%y%m%d%H%M%S"),
                                         "endLat": round(trip.end_lat, 6), "endLng": round(trip.end_lng, 6),
                                         "miles": round(trip.distance_km, 3), "idleTimes": int(trip.idle_s)},
                     trip.end)


WORLD_KINDS = {"push_gps": gps_pushes, "push_alarms": alarm_pushes, "push_heartbeats": heartbeat_pushes,
               "push_fault_codes": fault_code_pushes, "push_obd": obd_pushes, "push_events": event_pushes,
               "push_trip_reports": trip_report_pushes}


def world_pushes(world: World, imeis: Iterable[str], day: date, kinds: Iterable[str] = tuple(WORLD_KINDS)) -> list[Pushed]:
    """Every push of ``kinds`` the devices' ``day`` gives rise to, in the order they were received."""
    messages = [message for imei in imeis for kind in kinds for message in WORLD_KINDS[kind](world, imei, day)]
    return sorted(messages, key=lambda message: message.received_at)
