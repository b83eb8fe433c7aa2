"""The World's push-only truth agrees with its trips and is a pure function of (seed, device, day)."""

from __future__ import annotations

from datetime import date, datetime

from fleet_pipeline.sandbox.world import World, telemetry

DAY = date(2026, 11, 19)


def _devices_with_trips(world):
    return [d for d in world.devices_on("tracksolid") if world.day(d.imei, DAY).trips]


def test_connections_heartbeats_and_obd_follow_the_trips(world):
    devices = _devices_with_trips(world)
    assert devices
    for d in devices:
        day = world.day(d.imei, DAY)
        events = telemetry.connections(day)
        assert [e.kind for e in events] == ["LOGIN", "LOGOUT"] * (len(events) // 2)
        assert all(e.time.date() == DAY for e in events)
        sessions = list(zip(events[::2], events[1::2]))
        for trip in day.trips:  # every trip lies inside a connection
            assert any(login.time <= trip.start and trip.end <= logout.time for login, logout in sessions)
        beats = telemetry.heartbeats(world.seed, d, day)
        assert beats and all(any(a.time <= b.time <= z.time for a, z in sessions) for b in beats)
        for beat in beats:
            in_trip = any(t.start <= beat.time <= t.end for t in day.trips)
            assert beat.acc_on == in_trip and 0 <= beat.gsm_signal <= 100 and 0 <= beat.power_level <= 100
        readings = telemetry.obd_readings(world.seed, d, day)
        assert bool(readings) == (d.index % 3 == 0)
        assert all(any(t.start <= r.time <= t.end for t in day.trips) for r in readings)
        for report in telemetry.fault_reports(world.seed, d, day):
            assert d.index % 3 == 0 and 1 <= len(report.codes) <= 2


def test_the_push_only_truth_does_not_depend_on_the_world_instance(world):
    again = World(seed=world.seed, n_devices=len(world.devices), now=lambda: datetime(2026, 11, 20, 12))
    for d in _devices_with_trips(world)[:6]:
        first, second = world.day(d.imei, DAY), again.day(d.imei, DAY)
        assert telemetry.heartbeats(world.seed, d, first) == telemetry.heartbeats(again.seed, d, second)
        assert telemetry.obd_readings(world.seed, d, first) == telemetry.obd_readings(again.seed, d, second)
        assert telemetry.fault_reports(world.seed, d, first) == telemetry.fault_reports(again.seed, d, second)
