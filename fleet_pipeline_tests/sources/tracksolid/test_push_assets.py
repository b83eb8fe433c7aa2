"""Tracksolid push tables end to end: landing files (per the contract) -> push assets -> DuckDB file.

The landing files are written by the contract writer of ``push_landing_writer`` from the World:
its fixes (each landed on the day the platform received it, so late ones days later), its alarms
under the push field names, and document-shaped heartbeats, OBD readings, DTC reports and
login/logout events at its fix times. The tables must hold exactly those messages.
"""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from dagster import DagsterInstance, Definitions, build_sensor_context, materialize

from fleet_pipeline.automation.freshness import build_freshness_checks
from fleet_pipeline.ingest.warehouse import WarehouseResource
from fleet_pipeline.sandbox.tracksolid.synthesis import alarm_row
from fleet_pipeline.sandbox.world import World
from fleet_pipeline.sources.tracksolid.push_assets import PushLandingResource, push_assets
from fleet_pipeline.sources.tracksolid.push_sensor import (
    PUSH_LOAD_JOB,
    build_push_landing_sensor,
    build_push_load_job,
    landing_requests,
)
from fleet_pipeline_tests.conftest import WORLD_NOW
from fleet_pipeline_tests.run_results import materialization_metadata
from fleet_pipeline_tests.run_results import query as _query
from fleet_pipeline_tests.sources.tracksolid.push_landing_writer import Pushed, land, landed_line, world_pushes

# A day whose fixes partly arrive late (161 of them, up to 3 days after) with 24 devices.
DAY = date(2026, 11, 14)
LATE_DAYS = 3
pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def push_world() -> World:
    return World(seed=42, n_devices=24, now=lambda: WORLD_NOW)


@pytest.fixture(scope="module")
def imeis(push_world: World) -> list[str]:
    return [d.imei for d in push_world.devices_on("tracksolid", at=WORLD_NOW)]


def _resources(tmp_path: Path) -> dict:
    return {"tracksolid_push": PushLandingResource(landing_dir=str(tmp_path / "landing"), late_data_days=LATE_DAYS),
            "duckdb": WarehouseResource(database=str(tmp_path / "warehouse.duckdb"))}


def _load(resources: dict, day: date = DAY, selection=None):
    result = materialize(selection or push_assets, partition_key=day.isoformat(), resources=resources,
                         instance=DagsterInstance.ephemeral(), raise_on_error=False)
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    return result


def _metadata(result, table: str) -> dict:
    return materialization_metadata(result, table, having=lambda metadata: "landed_messages" in metadata)


def _gps_truth(world: World, imeis: list[str], day: date) -> Counter:
    return Counter((imei, fix["gps_time"], round(fix["lat"], 6), round(fix["lng"], 6))
                   for imei in imeis for fix in world.day(imei, day).points.iter_rows(named=True))


def test_a_days_landed_messages_load_equal_to_the_world(tmp_path, push_world, imeis):
    # The days either side land too: their messages share landing days with DAY's and must stay out.
    land(tmp_path / "landing", [m for day in (DAY - timedelta(days=1), DAY, DAY + timedelta(days=1))
                                for m in world_pushes(push_world, imeis, day)])
    resources = _resources(tmp_path)
    _load(resources)

    gps = Counter(_query(resources, "select imei, gps_time, lat, lng from raw_tracksolid.push_gps "
                                    "where partition_date = ?", [DAY]))
    truth = _gps_truth(push_world, imeis, DAY)
    assert sum(truth.values()) > 1000 and gps == truth
    late = sum(1 for imei in imeis for fix in push_world.day(imei, DAY).points.iter_rows(named=True)
               if fix["received_at"].date() > DAY)
    assert late > 0, "no fix of the day arrived late: the late-landing path is not exercised"

    # Alarms: the World's, under the polled names mapped back (BUG-01): same IMEI, code, time.
    alarms = Counter(_query(resources, "select imei, alarm_type_id, alarm_time from raw_tracksolid.push_alarms "
                                       "where partition_date = ?", [DAY]))
    expected = Counter((imei, row["alertTypeId"], datetime.fromisoformat(row["alertTime"]))
                       for imei in imeis for alarm in push_world.day(imei, DAY).alarms
                       for row in [alarm_row(push_world.device(imei), alarm)])
    assert sum(expected.values()) > 0 and alarms == expected

    pushed = [m for m in world_pushes(push_world, imeis, DAY)]
    heartbeats = Counter(_query(resources, "select imei, heartbeat_time, power_level_pct, gsm_signal "
                                           "from raw_tracksolid.push_heartbeats"))
    assert heartbeats == Counter((m.item["deviceImei"], datetime.fromisoformat(m.item["gateTime"]),
                                  m.item["powerLevel"], m.item["gsmSign"])
                                 for m in pushed if m.push_path == "/pushhb")
    faults = Counter(_query(resources, "select imei, fault_codes, fault_count from raw_tracksolid.push_fault_codes"))
    assert faults == Counter((m.item["deviceImei"], str(m.item["faultCodeList"]).replace("'", '"'),
                              m.item["faultNum"]) for m in pushed if m.push_path == "/pushfaultinfo")
    assert sum(faults.values()) > 0
    # Trips: each World trip once, from its end report (BCD times typed), its start report beside it.
    ended = Counter(_query(resources, "select imei, begin_time, end_time, distance_km from "
                                      "raw_tracksolid.push_trip_reports where report_kind = 2"))
    truth_trips = Counter((imei, trip.start.replace(microsecond=0), trip.end.replace(microsecond=0),
                           round(trip.distance_km, 3))
                          for imei in imeis for trip in push_world.day(imei, DAY).trips)
    assert sum(truth_trips.values()) > 0 and ended == truth_trips
    assert _query(resources, "select count(*) from raw_tracksolid.push_trip_reports where report_kind = 1 "
                             "and end_time is null") == [(sum(truth_trips.values()),)]
    for table, path in (("push_obd", "/pushobd"), ("push_events", "/pushevent")):
        loaded = _query(resources, f"select count(*) from raw_tracksolid.{table}")
        assert loaded == [(sum(m.push_path == path for m in pushed),)], table
    assert _query(resources, "select count(*) from raw_tracksolid.rejects") == [(0,)]
    assert _query(resources, "select distinct partition_date from raw_tracksolid.push_gps") == [(DAY,)]


def test_the_same_messages_landed_twice_load_once(tmp_path, push_world, imeis):
    messages = world_pushes(push_world, imeis, DAY, kinds=("push_gps", "push_alarms"))
    land(tmp_path / "landing", messages)
    land(tmp_path / "landing", messages)       # the vendor's retry, landed again in other files
    resources = _resources(tmp_path)
    result = _load(resources, selection=[a for a in push_assets if a.key.path[-1] in ("push_gps", "push_alarms")])
    gps = _query(resources, "select count(*), count(distinct msg_id) from raw_tracksolid.push_gps")
    assert gps == [(sum(_gps_truth(push_world, imeis, DAY).values()),) * 2]
    on_day = sum(1 for m in messages if m.push_path == "/pushgps" and m.item["gpsTime"].startswith(DAY.isoformat()))
    assert _metadata(result, "push_gps")["duplicate_rows_dropped"] == on_day
    alarms = _query(resources, "select count(*) from raw_tracksolid.push_alarms")
    assert alarms == [(sum(len(push_world.day(imei, DAY).alarms) for imei in imeis),)]


def test_unreadable_lines_and_bad_items_are_rejects_not_a_crash(tmp_path, push_world, imeis):
    good = world_pushes(push_world, imeis[:3], DAY, kinds=("push_gps", "push_heartbeats"))
    received = datetime.combine(DAY, datetime.min.time()) + timedelta(hours=12)
    bad_imei = Pushed("/pushhb", {"deviceImei": "12345", "gateTime": f"{DAY} 12:00:00", "powerLevel": 50}, received)
    # A fix from 10 days before it arrived: beyond the late-data window, so it cannot be filed
    # under its own day (that day's loads no longer read this landing day).
    too_late = Pushed("/pushgps", {"deviceImei": imeis[0], "gpsTime": f"{DAY - timedelta(days=10)} 08:00:00",
                                   "lat": 45.7, "lng": 4.8}, received)
    unknown_path = Pushed("/pushsomethingnew", {"deviceImei": imeis[0], "gateTime": f"{DAY} 12:00:00"}, received)
    garbage = ["{not json at all", '{"msg_id": "0", "push_path": "/pushgps", "received_at": "x"}', "[1, 2]"]
    land(tmp_path / "landing", [*good, bad_imei, too_late, unknown_path], extra_lines=garbage)
    # A file still being written: its last line is half a message, which must wait for the writer.
    fix = next(m for m in good if m.push_path == "/pushgps")
    half = landed_line(fix)[:40]
    open_file = land(tmp_path / "landing", [Pushed(fix.push_path, {**fix.item, "acc": 1 - fix.item["acc"]}, received)],
                     keep_open=True)[0]
    with open(open_file, "a", encoding="utf-8") as out:
        out.write(half)

    resources = _resources(tmp_path)
    _load(resources)
    rejects = _query(resources, "select table_name, reason, record from raw_tracksolid.rejects order by all")
    by_table = Counter(table for table, _, _ in rejects)
    assert by_table == Counter({"push_other": 3, "push_gps": 2, "push_heartbeats": 1}), rejects
    reasons = " | ".join(reason for _, reason, _ in rejects)
    assert "not valid JSON" in reasons and "not an object" in reasons and "'item' is missing" in reasons
    assert "IMEI must be 15 digits" in reasons and "FLEET_LATE_DATA_DAYS" in reasons
    assert "push_path: isin" in reasons
    assert any("/pushsomethingnew" in record for _, _, record in rejects)
    # Everything readable is there, the open file's complete line included.
    gps = _query(resources, "select count(*) from raw_tracksolid.push_gps")
    assert gps == [(sum(m.push_path == "/pushgps" for m in good) + 1,)]


def test_a_day_reloaded_after_late_messages_gains_them(tmp_path, push_world, imeis):
    messages = world_pushes(push_world, imeis, DAY, kinds=("push_gps",))
    on_time = [m for m in messages if m.received_at.date() <= DAY]
    late = [m for m in messages if m.received_at.date() > DAY]
    assert on_time and late
    land(tmp_path / "landing", on_time)
    resources = _resources(tmp_path)
    _load(resources)
    count = "select count(*) from raw_tracksolid.push_gps where partition_date = ?"
    assert _query(resources, count, [DAY]) == [(len(on_time),)]

    # The late fixes land in the folders of the days they arrived on; the sensor sees new closed
    # files there holding messages of DAY and asks for DAY again (and nothing else).
    _, cursor = landing_requests(tmp_path / "landing", None, DAY + timedelta(days=4), LATE_DAYS, date(2026, 1, 1))
    land(tmp_path / "landing", late)
    requests, cursor = landing_requests(tmp_path / "landing", cursor, DAY + timedelta(days=4), LATE_DAYS,
                                        date(2026, 1, 1))
    assert [r.partition_key for r in requests] == [DAY.isoformat()]
    again, _ = landing_requests(tmp_path / "landing", cursor, DAY + timedelta(days=4), LATE_DAYS, date(2026, 1, 1))
    assert again == []

    result = _load(resources, day=date.fromisoformat(requests[0].partition_key))
    assert _query(resources, count, [DAY]) == [(len(messages),)]
    assert _metadata(result, "push_gps")["rows_added"] == len(late)


def test_the_sensor_ignores_open_files_and_todays_messages(tmp_path, push_world, imeis):
    today = DAY + timedelta(days=1)
    todays = [m for m in world_pushes(push_world, imeis[:2], today, kinds=("push_gps",)) if m.received_at.date() == today]
    land(tmp_path / "landing", todays)
    yesterdays = [m for m in world_pushes(push_world, imeis[:2], DAY, kinds=("push_heartbeats",))]
    late_to_today = [Pushed(m.push_path, m.item, datetime.combine(today, datetime.min.time()) + timedelta(hours=1))
                     for m in yesterdays]
    land(tmp_path / "landing", late_to_today, keep_open=True)
    requests, cursor = landing_requests(tmp_path / "landing", None, today, LATE_DAYS, date(2026, 1, 1))
    assert requests == [], "today is not a partition yet and open files are not closed"
    land(tmp_path / "landing", late_to_today)
    requests, _ = landing_requests(tmp_path / "landing", cursor, today, LATE_DAYS, date(2026, 1, 1))
    assert [r.partition_key for r in requests] == [DAY.isoformat()]


def test_the_sensor_requests_a_load_of_yesterday_once_for_a_closed_file(tmp_path, imeis):
    # On the real clock, as the daemon runs it: a heartbeat of yesterday that arrived today.
    today = datetime.now(timezone.utc).date()
    yesterday = today - timedelta(days=1)
    late = Pushed("/pushhb", {"deviceImei": imeis[0], "gateTime": f"{yesterday} 23:59:00", "powerLevel": 40},
                  datetime.combine(today, datetime.min.time()) + timedelta(minutes=1))
    land(tmp_path / "landing", [late])
    job = build_push_load_job(push_assets)
    sensor = build_push_landing_sensor(job, str(tmp_path / "landing"), LATE_DAYS)
    repository = Definitions(assets=push_assets, asset_checks=build_freshness_checks(push_assets), jobs=[job],
                             sensors=[sensor],
                             resources=_resources(tmp_path)).get_repository_def()
    with DagsterInstance.ephemeral() as instance:
        first = sensor.evaluate_tick(build_sensor_context(instance=instance, repository_def=repository))
        assert [r.partition_key for r in first.run_requests] == [yesterday.isoformat()]
        assert first.run_requests[0].job_name in (None, PUSH_LOAD_JOB)
        again = sensor.evaluate_tick(build_sensor_context(instance=instance, cursor=first.cursor,
                                                          repository_def=repository))
        assert again.run_requests == [] and again.cursor == first.cursor
