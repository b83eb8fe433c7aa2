"""Navixy assets end to end: sandbox (Europe/Paris user) over loopback -> client -> DuckDB file.

The heart of the issue: on the two DST-change days of 2026 (a 23-hour and a 25-hour local day) the
warehouse's UTC partitions must hold exactly the world's UTC truth — every trip, every point once,
every event — and the local-day mileage must match the odometer over the local day.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from dagster import DagsterInstance, materialize

from fleet_pipeline.ingest.warehouse import WarehouseResource
from fleet_pipeline.sandbox import navixy as sandbox_navixy
from fleet_pipeline.sandbox.world import World
from fleet_pipeline.sources.navixy import assets
from fleet_pipeline.sources.navixy.resources import NavixyResource
from fleet_pipeline_tests.run_results import materialization_metadata as _metadata
from fleet_pipeline_tests.run_results import query as _query

SPRING_FORWARD, FALL_BACK = date(2026, 3, 29), date(2026, 10, 25)
PARIS = ZoneInfo("Europe/Paris")
EVENT_ASSETS = [a for a in assets.navixy_assets if a.partitions_def is not None]
SNAPSHOT_ASSETS = [a for a in assets.navixy_assets if a.partitions_def is None]
# World alarm kinds as the sandbox names them in history (the other events are ignition/trip events).
ALARM_EVENTS = {"overspeed": "speedup", "geofence_in": "inzone", "geofence_out": "outzone", "sos": "sos",
                "power_cut": "battery_off", "low_battery": "lowpower", "vibration": "vibration_start"}


@pytest.fixture(scope="module")
def live_world() -> World:
    return World(seed=42, n_devices=40)


@pytest.fixture
def server(live_world: World) -> Iterator:
    with sandbox_navixy.make_server(live_world) as running:
        yield running


def _navixy(server, cache_dir: Path, **overrides) -> NavixyResource:
    return NavixyResource(base_url=server.base_url + sandbox_navixy.API_PREFIX, api_key=sandbox_navixy.API_KEY,
                          cache_dir=str(cache_dir), retry_attempts=3, backoff_base_s=0.05, **overrides)


@pytest.fixture
def resources(server, tmp_path: Path) -> dict:
    return {"navixy": _navixy(server, tmp_path / "cache"),
            "duckdb": WarehouseResource(database=str(tmp_path / "warehouse.duckdb"))}


def _run(resources: dict, day: date | None = None, selection=None):
    return materialize(selection or (EVENT_ASSETS if day else SNAPSHOT_ASSETS),
                       partition_key=day.isoformat() if day else None, resources=resources,
                       instance=DagsterInstance.ephemeral(), raise_on_error=False)


def _active_devices(world: World, server) -> list:
    blocked = server.knobs.blocked_tracker_ids
    blocked = sandbox_navixy.default_blocked_tracker_ids(world) if blocked is None else blocked
    return [d for d in world.devices_on("navixy", at=world.now()) if 100_000 + d.index not in blocked]


@pytest.mark.parametrize("day", [SPRING_FORWARD, FALL_BACK], ids=["23h-local-day", "25h-local-day"])
def test_dst_change_day_matches_the_world_in_utc(resources, server, live_world, day):
    result = _run(resources, day)
    assert result.success
    devices = _active_devices(live_world, server)
    truth = {d.imei: live_world.day(d.imei, day) for d in devices}

    points = _query(resources, "select imei, gps_time from raw_navixy.track_points where partition_date = ?", [day])
    loaded = Counter(points)
    expected = Counter((imei, t) for imei, dd in truth.items() for t in dd.points["gps_time"].to_list())
    assert loaded == expected, "every fix of the UTC day exactly once, at its UTC time"

    trips = _query(resources, "select imei, start_time, end_time, distance_km from raw_navixy.trips "
                              "where partition_date = ? order by all", [day])
    true_trips = sorted((imei, t.start, t.end) for imei, dd in truth.items() for t in dd.trips)
    assert [(imei, start, end) for imei, start, end, _ in trips] == true_trips
    km = {imei: 0.0 for imei in truth}
    for imei, _, _, distance in trips:
        km[imei] += distance
    for imei, dd in truth.items():
        assert km[imei] == pytest.approx(dd.true_km, rel=0.02, abs=0.05), imei

    events = _query(resources, "select imei, event_time, event_type from raw_navixy.events where partition_date = ?", [day])
    alarms_loaded = Counter(e for e in events if e[2] in ALARM_EVENTS.values())
    alarms_true = Counter((imei, a.time, ALARM_EVENTS[a.kind]) for imei, dd in truth.items() for a in dd.alarms)
    assert alarms_loaded == alarms_true
    assert all(t.date() == day for _, t, _ in events)

    local_hours = _metadata(result, "mileage_daily")["local_day_hours"]
    assert local_hours == (23 if day == SPRING_FORWARD else 25)
    start = datetime(day.year, day.month, day.day, tzinfo=PARIS).astimezone(timezone.utc).replace(tzinfo=None)
    end = (datetime(day.year, day.month, day.day, tzinfo=PARIS) + timedelta(days=1)).astimezone(timezone.utc)
    end = end.replace(tzinfo=None)
    mileage = dict(_query(resources, "select imei, mileage_km from raw_navixy.mileage_daily where partition_date = ?", [day]))
    for device in devices:
        true_km = live_world.odometer_km(device.imei, end) - live_world.odometer_km(device.imei, start)
        assert mileage[device.imei] == pytest.approx(true_km, rel=0.02, abs=0.02), device.imei
    assert _query(resources, "select count(*) from raw_navixy.rejects") == [(0,)]


def test_reruns_change_nothing(resources, server, live_world):
    day = date(2026, 11, 16)
    first = _run(resources, day)
    assert first.success
    counts = _query(resources, "select count(*) from raw_navixy.events")
    rerun = _run(resources, day)
    assert rerun.success and _metadata(rerun, "events")["rows_added"] == 0
    assert _query(resources, "select count(*) from raw_navixy.events") == counts
    assert counts[0][0] > 0
    assert _query(resources, "select count(*) - count(distinct event_id) from raw_navixy.events") == [(0,)]


def test_snapshots_report_blocked_trackers_without_failing(resources, server, live_world):
    result = _run(resources)
    assert result.success
    statuses = dict(_query(resources, "select tracker_status, count(*) from raw_navixy.states group by 1"))
    blocked = sandbox_navixy.default_blocked_tracker_ids(live_world)
    assert statuses.get("blocked", 0) == len(blocked) > 0
    assert statuses["ok"] == len(live_world.devices_on("navixy", at=live_world.now())) - len(blocked)
    assert _metadata(result, "states")["blocked_trackers"] == len(blocked)
    imeis = {row[0] for row in _query(resources, "select imei from raw_navixy.trackers")}
    assert imeis == {d.imei for d in live_world.devices_on("navixy", at=live_world.now())}
    # creation_date is a date on the wire: every tracker keeps its activation day (it was null)
    created = dict(_query(resources, "select imei, created_date from raw_navixy.trackers"))
    assert created == {d.imei: d.activation_date for d in live_world.devices_on("navixy", at=live_world.now())}
    sensors = _query(resources, "select count(distinct source), count(*) from raw_navixy.sensor_readings")
    assert sensors[0][0] == 3 and sensors[0][1] > 0


def test_embedded_sandbox_and_a_session_login(tmp_path, server, live_world):
    embedded = {"navixy": NavixyResource(cache_dir=str(tmp_path / "cache"), sandbox_devices=12),
                "duckdb": WarehouseResource(database=str(tmp_path / "sandbox.duckdb"))}
    assert _run(embedded, FALL_BACK, [assets.trips]).success
    by_login = {"navixy": NavixyResource(base_url=server.base_url + sandbox_navixy.API_PREFIX,
                                         login=sandbox_navixy.LOGIN, password=sandbox_navixy.PASSWORD,
                                         cache_dir=str(tmp_path / "cache2")),
                "duckdb": WarehouseResource(database=str(tmp_path / "login.duckdb"))}
    assert _run(by_login, FALL_BACK, [assets.trips]).success
    assert _query(by_login, "select count(*) from raw_navixy.trips")[0][0] > 0


def _trackers_with_points_in_a_trip(world: World, devices: list, day: date) -> set[int]:
    """The World's truth of who moved: a fix of the day inside one of the day's trips."""
    moving = set()
    for device in devices:
        dd = world.day(device.imei, day)
        if any(t.start <= fix <= t.end for fix in dd.points["gps_time"].to_list() for t in dd.trips):
            moving.add(100_000 + device.index)
    return moving


def test_trips_ask_only_the_trackers_whose_points_show_a_trip(resources, server, live_world):
    day = date(2026, 11, 29)  # a Sunday: many vehicles stay parked all day
    result = _run(resources, day)
    assert result.success
    devices = _active_devices(live_world, server)
    moving = _trackers_with_points_in_a_trip(live_world, devices, day)
    assert 0 < len(moving) < len(devices), "the day must have both parked and moving trackers"
    trips = _metadata(result, "trips")
    assert trips["calls_per_method"]["track/list"] == trips["trackers_asked"] == len(moving)
    assert trips["trackers_without_trip_points"] == len(devices) - len(moving)
    loaded = sorted(_query(resources, "select imei, start_time, end_time from raw_navixy.trips where partition_date = ?",
                           [day]))
    assert loaded == sorted((d.imei, t.start, t.end) for d in devices for t in live_world.day(d.imei, day).trips)
    assert loaded, "some trips"

    alone = _run(resources, day + timedelta(days=1), [assets.trips])
    assert alone.success, "trips without the day's track points loaded"
    assert _metadata(alone, "trips")["trackers_asked"] == len(devices), "no evidence: every tracker is asked"


def test_trips_ask_every_tracker_when_a_track_point_of_the_day_was_rejected(resources, server, live_world):
    day = date(2026, 11, 29)
    server.knobs.set(corrupt_rows_next=1)  # the first row served (here a tracker's IMEI) is damaged
    assert _run(resources, day, [assets.track_points]).success
    (rejected,) = _query(resources, "select count(*) from raw_navixy.rejects where table_name = 'track_points'")[0]
    assert rejected > 0, "the damaged row must cost track points"
    result = _run(resources, day, [assets.trips])
    assert result.success
    devices = _active_devices(live_world, server)
    assert _metadata(result, "trips")["trackers_asked"] == len(devices), "the rejected fix might have been a trip's"
