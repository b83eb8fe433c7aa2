"""NavixyClient against the Navixy sandbox over loopback HTTP.

Ground truth comes from the sandbox World (points, trips, alarms, odometer); call counts come
from the server's request log. Waits are never real: ``sleep`` advances the sandbox clock, and
the client's pacing limiter is off (the server's 50/s window raised to match) except in the
pacing test. The heart of the file is the DST section: a UTC partition on 2026-03-29 (23-hour
local day) and 2026-10-25 (25-hour local day, 02:00-02:59 twice) must come back as exactly the
World's UTC rows.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import stat
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import polars as pl
import pytest

from fleet_pipeline.ingest.http import (
    Backoff,
    RetryPolicy,
    VendorAPIError,
    VendorAuthError,
    VendorRateLimitError,
    VendorResponseError,
)
from fleet_pipeline.sandbox import navixy as sandbox_navixy
from fleet_pipeline.sandbox.server import ManualClock
from fleet_pipeline.sandbox.world import Alarm, Device, DeviceDay, World
from fleet_pipeline.sources.navixy.client import NavixyClient
from fleet_pipeline.sources.navixy.errors import TrackerNotFound, UnpageableEvents
from fleet_pipeline.sources.navixy.timezones import UserClock
from fleet_pipeline_tests.clock_sleep import ClockSleep

PROJECT_ROOT = Path(__file__).resolve().parents[3]
PARIS = ZoneInfo("Europe/Paris")
SPRING_DAY = date(2026, 3, 29)   # 23-hour local day
AUTUMN_DAY = date(2026, 10, 25)  # 25-hour local day: 02:00-02:59 local happens twice
ALARM_EVENTS = {  # the sandbox's documented mapping of World alarms to Navixy event names
    "overspeed": "speedup", "geofence_in": "inzone", "geofence_out": "outzone", "sos": "sos",
    "power_cut": "battery_off", "low_battery": "lowpower", "vibration": "vibration_start",
}



def make_client(sandbox, cache_dir: Path, *, auth: str = "api_key", **overrides: object) -> NavixyClient:
    options: dict[str, object] = dict(
        cache_dir=cache_dir,
        now=sandbox.clock,
        sleep=ClockSleep(sandbox.clock),
        retry=RetryPolicy(max_attempts=4, backoff=Backoff(base_s=0.5, max_s=2.0, jitter=0.0)),
        throttle_backoff=Backoff(base_s=1.0, max_s=4.0, jitter=0.0),
        max_calls_per_s=None,
    )
    options.update(overrides)
    if options["max_calls_per_s"] is None:
        sandbox.knobs.set(rate_limit_per_s=1_000_000)
    if auth == "api_key":
        options.setdefault("api_key", sandbox_navixy.API_KEY)
    else:
        options.setdefault("login", sandbox_navixy.LOGIN)
        options.setdefault("password", sandbox_navixy.PASSWORD)
    return NavixyClient(sandbox.base_url, **options)  # type: ignore[arg-type]


@pytest.fixture
def client(navixy_sandbox, tmp_path: Path) -> Iterator[NavixyClient]:
    c = make_client(navixy_sandbox, tmp_path / "cache")
    yield c
    c.close()


def record_requests(client: NavixyClient) -> list:
    """Every prepared request the client sends (URL, headers, body), via a requests hook."""
    sent: list = []
    client.http._session.hooks["response"].append(lambda r, *a, **k: sent.append(r.request))
    return sent


# --- World truth ------------------------------------------------------------------------------------


def tid(device: Device) -> int:
    return sandbox_navixy.TRACKER_ID_BASE + device.index


def navixy_devices(sandbox) -> list[Device]:
    """Navixy devices whose data may be read (not blocked)."""
    blocked = sandbox.knobs.blocked_tracker_ids
    return [d for d in sandbox.world.devices_on("navixy", at=sandbox.now()) if tid(d) not in blocked]


def _utc_days(begin: datetime, end: datetime) -> list[date]:
    first, last = begin.date(), (end - timedelta(microseconds=1)).date()
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def world_points(world: World, device: Device, begin: datetime, end: datetime, now: datetime
                 ) -> list[datetime]:
    times: list[datetime] = []
    for day in _utc_days(begin, end):
        frame = world.day(device.imei, day).points
        times += frame.filter(
            (pl.col("gps_time") >= begin) & (pl.col("gps_time") < end) & (pl.col("received_at") <= now)
        )["gps_time"].to_list()
    return times


def world_trips(world: World, device: Device, begin: datetime, end: datetime, now: datetime
                ) -> list[tuple[datetime, datetime]]:
    return [(t.start, t.end) for day in _utc_days(begin, end) for t in world.day(device.imei, day).trips
            if begin <= t.start < end and t.end <= now]


def world_events(world: World, device: Device, begin: datetime, end: datetime, now: datetime
                 ) -> Counter:
    """(tracker id, time, event) of the World's alarms, trips and ignition changes."""
    out: Counter = Counter()
    for day in _utc_days(begin, end):
        dd = world.day(device.imei, day)
        idling_ends = {s.end for s in dd.stops if s.kind == "parking" and s.ignition_on}
        happened = [(a.time, ALARM_EVENTS[a.kind]) for a in dd.alarms]
        for trip in dd.trips:
            if trip.start not in idling_ends:
                happened.append((trip.start, "input_change"))
            happened += [(trip.start, "track_start"), (trip.end, "track_end")]
        happened += [(s.start, "input_change") for s in dd.stops
                     if s.kind == "parking" and not s.ignition_on]
        out.update((tid(device), t, name) for t, name in happened if begin <= t < end and t <= now)
    return out


def day_window(day: date) -> tuple[datetime, datetime]:
    begin = datetime(day.year, day.month, day.day)
    return begin, begin + timedelta(days=1)


# --- authentication -----------------------------------------------------------------------------


def test_api_key_goes_in_the_header_never_in_the_url(navixy_sandbox, client) -> None:
    sent = record_requests(client)
    rows = client.trackers()
    world = navixy_sandbox.world
    device_ids = [r["source"]["device_id"] for r in rows]
    assert sorted(device_ids) == sorted(d.imei for d in world.devices_on("navixy", at=navixy_sandbox.now()))
    assert all(isinstance(i, str) and len(i) == 15 for i in device_ids)
    assert all(isinstance(r["id"], int) for r in rows)
    assert navixy_sandbox.server.count("user/auth") == 0
    assert sent and all(sandbox_navixy.API_KEY not in r.url for r in sent)
    assert all(r.headers["Authorization"] == f"NVX {sandbox_navixy.API_KEY}" for r in sent)
    assert all(b"hash" not in (r.body or b"") and sandbox_navixy.API_KEY.encode() not in (r.body or b"")
               for r in sent)


def test_login_hash_is_cached_0600_and_shared_between_clients(navixy_sandbox, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = make_client(navixy_sandbox, cache, auth="login")
    sent = record_requests(first)
    assert first.time_zone == PARIS
    second = make_client(navixy_sandbox, cache, auth="login")
    assert len(second.trackers()) == len(navixy_sandbox.world.devices_on("navixy", at=navixy_sandbox.now()))
    assert navixy_sandbox.server.count("user/auth") == 1
    files = list(cache.glob("navixy-session-*.json"))
    assert len(files) == 1 and stat.S_IMODE(files[0].stat().st_mode) == 0o600
    session_hash = json.loads(files[0].read_text())["hash"]
    data_calls = [r for r in sent if not r.url.endswith("/user/auth")]
    assert data_calls and all(r.headers["Authorization"] == f"NVX {session_hash}" for r in data_calls)
    assert all(session_hash not in r.url for r in sent)
    assert not list(cache.glob("*.tmp"))


_CHILD = """
import json, sys, time
from datetime import datetime
from pathlib import Path
from fleet_pipeline.sources.navixy.client import NavixyClient
base_url, cache, login, password, gate, name = sys.argv[1:7]
client = NavixyClient(base_url, login=login, password=password, cache_dir=Path(cache),
                      sleep=lambda s: None, max_calls_per_s=None)
Path(gate, name).touch()
while not Path(gate, "go").exists():
    time.sleep(0.005)
print(len(client.trackers()))
"""


def test_session_hash_is_shared_across_processes(navixy_sandbox, tmp_path: Path) -> None:
    sandbox = navixy_sandbox
    # Slow answers widen the race: three processes log in at the same moment (released together
    # through a gate file) while the first user/auth is still in flight.
    sandbox.knobs.set(rate_limit_per_s=1_000_000, latency_s=0.3)
    gate = tmp_path / "gate"
    gate.mkdir()
    args = [sandbox.base_url, str(tmp_path / "cache"), sandbox_navixy.LOGIN,
            sandbox_navixy.PASSWORD, str(gate)]
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    children = [subprocess.Popen([sys.executable, "-c", _CHILD, *args, f"ready-{n}"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 env=env, cwd=PROJECT_ROOT) for n in range(3)]
    deadline = time.monotonic() + 60
    while len(list(gate.glob("ready-*"))) < 3 and time.monotonic() < deadline:
        if any(child.poll() is not None for child in children):
            break
        time.sleep(0.01)
    (gate / "go").touch()
    outputs = [child.communicate(timeout=60) for child in children]
    assert [child.returncode for child in children] == [0, 0, 0], outputs
    expected = len(sandbox.world.devices_on("navixy", at=sandbox.now()))
    assert [int(out.strip()) for out, _ in outputs] == [expected] * 3
    assert sandbox.server.count("user/auth") == 1
    assert sandbox.server.count("tracker/list", status=200) == 3


def test_ended_session_logs_in_again_exactly_once(navixy_sandbox, tmp_path: Path) -> None:
    sandbox = navixy_sandbox
    sandbox.knobs.set(session_lifetime_s=3600)
    client = make_client(sandbox, tmp_path, auth="login")
    client.trackers()
    sandbox.clock.advance(hours=2)
    assert client.trackers()
    assert sandbox.server.count("tracker/list", vendor_code=4) == 1
    assert sandbox.server.count("user/auth") == 2
    assert sandbox.server.count("tracker/list", status=200) == 2
    # A second client adopts the renewed hash from the shared cache: no third login.
    assert make_client(sandbox, tmp_path, auth="login").trackers()
    assert sandbox.server.count("user/auth") == 2


def test_session_rejected_right_after_login_is_an_error_not_a_loop(navixy_sandbox, tmp_path: Path) -> None:
    sandbox = navixy_sandbox
    sandbox.knobs.set(session_lifetime_s=0)  # every hash has ended the moment it is issued
    client = make_client(sandbox, tmp_path, auth="login")
    with pytest.raises(VendorAuthError) as info:
        client.trackers()
    assert info.value.code == "4" and "again right after login" in str(info.value)
    assert str(info.value).startswith("navixy ")
    assert sandbox.server.count("user/auth") == 2
    assert sandbox.server.count(vendor_code=4) == 2


def test_wrong_credentials_fail_clearly_without_retrying(navixy_sandbox, tmp_path: Path) -> None:
    sandbox = navixy_sandbox
    bad_login = make_client(sandbox, tmp_path / "a", auth="login", password="not-the-password")
    with pytest.raises(VendorAuthError) as info:
        bad_login.trackers()
    assert info.value.code == "102" and "navixy user/auth: login refused" in str(info.value)
    assert "not-the-password" not in str(info.value)
    bad_key = make_client(sandbox, tmp_path / "b", api_key="0123456789abcdef0123456789abcdef")
    with pytest.raises(VendorAuthError) as info:
        bad_key.trackers()
    assert info.value.code == "3" and "API key rejected" in str(info.value)
    assert "0123456789abcdef" not in str(info.value)
    assert sandbox.server.count("user/auth") == 1 and sandbox.server.count("tracker/list") == 1


def test_both_or_neither_credential_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="either api_key or login"):
        NavixyClient("http://x/api-v2", api_key="k", login="l", password="p", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="required"):
        NavixyClient("http://x/api-v2", login="l", cache_dir=tmp_path)


# --- throttling and faults ----------------------------------------------------------------------


def test_429_code_15_is_retried_then_succeeds(navixy_sandbox, client) -> None:
    sandbox = navixy_sandbox
    expected = client.trackers()
    sandbox.knobs.set(force_429_next=2)
    assert client.trackers() == expected
    assert sandbox.server.count("tracker/list", status=429, vendor_code=15) == 2
    assert client.stats.retries == 2 and client.stats.throttle_wait_s > 0


def test_persistent_429_gives_up_naming_the_method(navixy_sandbox, client) -> None:
    navixy_sandbox.knobs.set(force_429_next=100)
    with pytest.raises(VendorRateLimitError) as info:
        client.trackers()
    assert str(info.value).startswith("navixy tracker/list: still throttled after 4 attempts")
    assert "429" in str(info.value)
    assert navixy_sandbox.server.count(status=429) == 4


def test_5xx_and_bad_bodies_are_retried(navixy_sandbox, client) -> None:
    sandbox = navixy_sandbox
    expected = client.trackers()
    sandbox.knobs.set(fail_next_5xx=1, malformed_json_next=1, truncated_body_next=1)
    assert client.trackers() == expected
    for fault in ("5xx", "malformed_json", "truncated"):
        assert sandbox.server.count("tracker/list", fault=fault) == 1


def test_client_paces_itself_under_50_per_second(navixy_sandbox, tmp_path: Path) -> None:
    sandbox = navixy_sandbox
    client = make_client(sandbox, tmp_path, max_calls_per_s=40)
    sandbox.knobs.set(rate_limit_per_s=50)
    for _ in range(70):
        client.call("user/get_info", {})
    assert sandbox.server.count("user/get_info", status=200) == 70
    assert sandbox.server.count(vendor_code=15) == 0
    assert client.stats.throttle_wait_s > 0


# --- trackers and states ------------------------------------------------------------------------


def test_states_report_blocked_and_missing_trackers(navixy_sandbox, client) -> None:
    sandbox = navixy_sandbox
    world, now = sandbox.world, sandbox.now()
    ids = [tid(d) for d in world.devices_on("navixy", at=now)]
    deleted = sorted(sandbox.knobs.deleted_tracker_ids)
    blocked = sorted(sandbox.knobs.blocked_tracker_ids)
    assert blocked and deleted
    result = client.states(ids + deleted + [999_999])
    assert sorted(result.blocked) == blocked
    assert sorted(result.missing) == sorted(deleted + [999_999])
    assert sorted(result.states) == sorted(set(ids) - set(blocked))
    assert client.blocked_trackers == set(blocked)
    assert sandbox.server.count("tracker/get_states") == 1
    for device in navixy_devices(sandbox):
        fix = world.last_fix(device.imei, now)
        state = result.states[tid(device)]
        if fix is None:
            assert "updated" not in state["gps"]
            continue
        assert state["gps"]["updated"] == fix["gps_time"].replace(microsecond=0)
        assert state["last_update"] == fix["received_at"].replace(microsecond=0)


def test_states_are_batched_by_2000(navixy_sandbox, client) -> None:
    sandbox = navixy_sandbox
    real = [tid(d) for d in navixy_devices(sandbox)]
    ghosts = list(range(500_000, 502_500))
    result = client.states(real + ghosts)
    assert sandbox.server.count("tracker/get_states") == 2
    assert sandbox.server.count("tracker/get_states", vendor_code=7) == 0
    assert sorted(result.states) == sorted(real) and sorted(result.missing) == ghosts


def test_single_tracker_reads_and_a_blocked_tracker_is_none(navixy_sandbox, client) -> None:
    sandbox = navixy_sandbox
    world, now = sandbox.world, sandbox.now()
    device = next(d for d in navixy_devices(sandbox) if world.last_fix(d.imei, now) is not None)
    fix = world.last_fix(device.imei, now)
    point = client.last_gps_point(tid(device))
    assert point["get_time"] == fix["gps_time"].replace(microsecond=0)
    for read in (client.diagnostics, client.fuel, client.readings):
        payload = read(tid(device))
        assert payload["update_time"] == fix["received_at"].replace(microsecond=0)
        assert payload["user_time"] == now and "success" not in payload
    blocked = min(sandbox.knobs.blocked_tracker_ids)
    assert client.last_gps_point(blocked) is None and client.fuel(blocked) is None
    assert client.skipped_calls == 2 and client.blocked_trackers == {blocked}
    with pytest.raises(TrackerNotFound) as info:
        client.diagnostics(min(sandbox.knobs.deleted_tracker_ids))
    assert info.value.code == "201" and str(info.value).startswith("navixy tracker/get_diagnostics:")


# --- time: ISO mode at the edge -------------------------------------------------------------------


def test_user_clock_windows_and_offsets() -> None:
    clock = UserClock(PARIS)
    assert clock.local_day_window(SPRING_DAY) == (datetime(2026, 3, 28, 23), datetime(2026, 3, 29, 22))
    assert clock.local_day_window(AUTUMN_DAY) == (datetime(2026, 10, 24, 22), datetime(2026, 10, 25, 23))
    # The two instants that are both "02:30" local on the autumn day stay distinct both ways.
    first, second = datetime(2026, 10, 25, 0, 30), datetime(2026, 10, 25, 1, 30)
    assert clock.to_param(first) == "2026-10-25T02:30:00+02:00"
    assert clock.to_param(second) == "2026-10-25T02:30:00+01:00"
    assert clock.parse(clock.to_param(first), "m", "f") == first
    assert clock.parse(clock.to_param(second), "m", "f") == second
    assert clock.parse("2026-10-25T01:30:00Z", "m", "f") == second


def test_a_date_time_without_offset_is_refused_not_guessed() -> None:
    with pytest.raises(VendorResponseError) as info:
        UserClock(PARIS).parse("2026-10-25 02:30:00", "track/read", "get_time")
    assert "navixy track/read: field 'get_time' came without a UTC offset" in str(info.value)


def test_every_call_asks_for_iso_mode_and_sends_offsets(navixy_sandbox, client) -> None:
    sent = record_requests(client)
    device = navixy_devices(navixy_sandbox)[0]
    client.track_points(tid(device), datetime(2026, 10, 25, 1, 30), datetime(2026, 10, 25, 2))
    assert all(r.headers["NVX-ISO-DateTime"] == "true" for r in sent)
    read = json.loads(next(r.body for r in sent if r.url.endswith("/track/read")))
    assert read["iso_datetime"] is True and read["simplify"] is False and read["filter"] is False
    # from is exclusive: one second before the window, in the SECOND 02:29 of the day (+01:00).
    assert read["from"] == "2026-10-25T02:29:59+01:00" and read["to"] == "2026-10-25T03:00:00+01:00"


# --- track points and trips -------------------------------------------------------------------------


def _driving_device(sandbox, day: date) -> Device:
    return next(d for d in navixy_devices(sandbox) if len(sandbox.world.day(d.imei, day).trips) >= 3)


def test_adjacent_windows_return_each_point_exactly_once(navixy_sandbox, client) -> None:
    sandbox = navixy_sandbox
    day = date(2026, 11, 18)
    device = _driving_device(sandbox, day)
    begin, end = day_window(day)
    truth = world_points(sandbox.world, device, begin, end, sandbox.now())
    # Cut exactly on a recorded point: it must open the second window, not vanish at "from".
    cut = truth[len(truth) // 2]
    first = client.track_points(tid(device), begin, cut)
    second = client.track_points(tid(device), cut, end)
    assert second.rows[0]["get_time"] == cut
    got = [p["get_time"] for p in first.rows + second.rows]
    assert got == truth and len(truth) > 100
    assert not first.limit_exceeded and not second.limit_exceeded
    # Parking heartbeats are kept (filter=false) and nothing is simplified away.
    assert any(p.get("parking") for p in first.rows + second.rows)


def test_long_windows_are_split_and_halved_on_211(navixy_sandbox, tmp_path: Path) -> None:
    sandbox = navixy_sandbox
    sandbox.knobs.set(max_track_span_days=2)
    client = make_client(sandbox, tmp_path, track_window=timedelta(days=5))
    device = _driving_device(sandbox, date(2026, 11, 12))
    begin, end = datetime(2026, 11, 10), datetime(2026, 11, 20)
    points = client.track_points(tid(device), begin, end)
    truth = world_points(sandbox.world, device, begin, end, sandbox.now())
    assert [p["get_time"] for p in points.rows] == truth
    # Two 5-day windows, each refused (211) and halved into 2.5-day halves, refused again and
    # halved into 1.25-day quarters that pass: 2 + 4 refusals, 8 answers.
    assert sandbox.server.count("track/read", vendor_code=211) == 6
    assert sandbox.server.count("track/read", status=200) == 8
    trips = client.trips(tid(device), begin, end)
    assert [(t["start_date"], t["end_date"]) for t in trips.rows] == world_trips(
        sandbox.world, device, begin, end, sandbox.now())


def test_storage_limit_is_flagged_not_hidden(navixy_sandbox, client, caplog) -> None:
    sandbox = navixy_sandbox
    sandbox.knobs.set(storage_period_days=5)
    device = _driving_device(sandbox, date(2026, 11, 10))
    caplog.set_level(logging.WARNING)
    old = client.track_points(tid(device), datetime(2026, 11, 10), datetime(2026, 11, 11))
    assert old.rows == [] and old.limit_exceeded is True
    assert client.trips(tid(device), datetime(2026, 11, 10), datetime(2026, 11, 11)).limit_exceeded
    recent = client.track_points(tid(device), datetime(2026, 11, 18), datetime(2026, 11, 19))
    assert recent.rows and recent.limit_exceeded is False
    assert any("limit_exceeded" in r.getMessage() for r in caplog.records)


# --- events ------------------------------------------------------------------------------------------


def _event_keys(rows: list[dict]) -> Counter:
    return Counter((r["tracker_id"], r["time"], r["event"]) for r in rows)


def _truth_events(sandbox, devices: list[Device], begin: datetime, end: datetime) -> Counter:
    out: Counter = Counter()
    for device in devices:
        out += world_events(sandbox.world, device, begin, end, sandbox.now())
    return out


def _split_ties(times: list[datetime], limit: int) -> int:
    """Page boundaries that fall inside a second (the event after a page shares its last time),
    for pages of ``limit`` from an inclusive ``from`` moved to the last time seen."""
    splits, start = 0, 0
    while start + limit < len(times):
        last = start + limit - 1
        splits += times[last + 1] == times[last]
        following = times.index(times[last])
        if following == start:
            break
        start = following
    return splits


def test_more_than_1000_events_in_a_window_page_without_loss(navixy_sandbox, client) -> None:
    sandbox = navixy_sandbox
    devices = navixy_devices(sandbox)
    begin, end = datetime(2026, 11, 16), datetime(2026, 11, 19)
    rows = client.events([tid(d) for d in devices], begin, end)
    truth = _truth_events(sandbox, devices, begin, end)
    assert sum(truth.values()) > 1000
    assert _event_keys(rows) == truth
    assert len({r["id"] for r in rows}) == len(rows)
    calls = sandbox.server.count("history/tracker/list")
    assert calls >= 2 and sandbox.server.count("history/tracker/list", vendor_code=212) == 0


def test_page_boundaries_inside_a_shared_second_lose_nothing(navixy_sandbox, tmp_path: Path) -> None:
    sandbox = navixy_sandbox
    # A trip's ignition-on and track_start share their second. Pages of 3 put page boundaries
    # inside such pairs; the check below proves that they do, so the test means something.
    devices = navixy_devices(sandbox)[:6]
    begin, end = datetime(2026, 11, 17), datetime(2026, 11, 18)
    truth = _truth_events(sandbox, devices, begin, end)
    assert _split_ties(sorted(t for (_, t, _) in truth.elements()), 3) > 0
    client = make_client(sandbox, tmp_path, history_limit=3)
    rows = client.events([tid(d) for d in devices], begin, end)
    assert _event_keys(rows) == truth
    assert sandbox.server.count("history/tracker/list") > sum(truth.values()) // 3


def test_an_exclusive_from_platform_loses_nothing_either(navixy_sandbox, tmp_path: Path) -> None:
    sandbox = navixy_sandbox
    app = sandbox.server.app
    inclusive = app._events
    # Whether history's "from" is inclusive is undocumented; make this platform exclusive.
    app._events = lambda d, start, end, now: inclusive(d, start + timedelta(microseconds=1), end, now)
    devices = navixy_devices(sandbox)[:6]
    begin, end = datetime(2026, 11, 17), datetime(2026, 11, 18)
    client = make_client(sandbox, tmp_path, history_limit=3)
    rows = client.events([tid(d) for d in devices], begin, end)
    assert _event_keys(rows) == _truth_events(sandbox, devices, begin, end)
    assert client._history.from_exclusive is True


def test_a_crowded_second_across_trackers_splits_the_batch(
    navixy_sandbox, tmp_path: Path, monkeypatch
) -> None:
    sandbox = navixy_sandbox
    world = sandbox.world
    crowded = datetime(2026, 11, 17, 9, 0, 0)
    real_day = world.day

    def crowded_day(imei: str, day: date) -> DeviceDay:
        # Every tracker raises all seven alarm kinds in the same second: 7 x N events at 09:00:00.
        dd = real_day(imei, day)
        if day != crowded.date():
            return dd
        device = world.device(imei)
        extra = [Alarm(time=crowded, kind=kind, lat=device.home_lat, lng=device.home_lng,
                       speed_kmh=0.0, geofence_id="depot-x" if kind.startswith("geofence") else None)
                 for kind in ALARM_EVENTS]
        return dataclasses.replace(dd, alarms=sorted(dd.alarms + extra, key=lambda a: a.time))

    monkeypatch.setattr(world, "day", crowded_day)
    devices = navixy_devices(sandbox)
    begin, end = datetime(2026, 11, 17, 8), datetime(2026, 11, 17, 10)
    truth = _truth_events(sandbox, devices, begin, end)
    at_crowded = sum(n for (_, t, _), n in truth.items() if t == crowded)
    assert at_crowded == 7 * len(devices) > 20
    client = make_client(sandbox, tmp_path, history_limit=20)
    rows = client.events([tid(d) for d in devices], begin, end)
    assert _event_keys(rows) == truth


def test_limit_events_of_one_tracker_in_one_second_raise(navixy_sandbox, tmp_path: Path) -> None:
    sandbox = navixy_sandbox
    day = date(2026, 11, 17)
    device = _driving_device(sandbox, day)
    begin, end = day_window(day)
    truth = world_events(sandbox.world, device, begin, end, sandbox.now())
    assert any(n == 2 for n in Counter(t for (_, t, _) in truth.elements()).values())
    # Scaled down: with pages of 2, the two events of one tracker at a trip start are exactly
    # the "limit events in one second" that moving "from" can never get past.
    client = make_client(sandbox, tmp_path, history_limit=2)
    with pytest.raises(UnpageableEvents) as info:
        client.events([tid(device)], begin, end)
    assert f"tracker {tid(device)}" in str(info.value) and "history/tracker/list" in str(info.value)
    assert sandbox.server.count("history/tracker/list") < 100


def test_events_leave_out_a_blocked_tracker_after_217(navixy_sandbox, client) -> None:
    sandbox = navixy_sandbox
    devices = navixy_devices(sandbox)[:5]
    blocked = min(sandbox.knobs.blocked_tracker_ids)
    begin, end = datetime(2026, 11, 17), datetime(2026, 11, 18)
    rows = client.events([tid(d) for d in devices] + [blocked], begin, end)
    assert _event_keys(rows) == _truth_events(sandbox, devices, begin, end)
    assert sandbox.server.count("history/tracker/list", vendor_code=217) == 1
    assert sandbox.server.count("tracker/get_states") == 1
    assert client.blocked_trackers == {blocked} and client.skipped_calls == 1


# --- mileage -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big_world() -> World:
    """More than 200 navixy trackers, for multi-batch mileage calls; days generated on demand."""
    return World(seed=42, n_devices=420, now=lambda: datetime(2026, 11, 20, 12, 0, 0))


def test_mileage_is_batched_by_128_trackers(big_world: World, tmp_path: Path) -> None:
    clock = ManualClock(big_world.now())
    with sandbox_navixy.make_server(big_world, now=clock, blocked_tracker_ids=set()) as server:
        sandbox = type("S", (), {"clock": clock, "knobs": server.knobs,
                                 "base_url": server.base_url + sandbox_navixy.API_PREFIX})()
        client = make_client(sandbox, tmp_path)
        devices = big_world.devices_on("navixy", at=clock())[:200]
        assert len(devices) == 200
        rows = client.mileage([tid(d) for d in devices], date(2026, 11, 18), date(2026, 11, 18))
        assert server.count("tracker/stats/mileage/read") == 2
        assert server.count("tracker/stats/mileage/read", status=200) == 2
        assert {r["tracker_id"] for r in rows} == {tid(d) for d in devices}
        assert {r["local_date"] for r in rows} == {date(2026, 11, 18)}


def test_mileage_chunks_31_days_on_local_day_keys(navixy_sandbox, client) -> None:
    sandbox = navixy_sandbox
    world = sandbox.world
    devices = navixy_devices(sandbox)[:3]
    first, last = date(2026, 9, 1), date(2026, 10, 16)   # 46 days: 31 + 15
    rows = client.mileage([tid(d) for d in devices], first, last)
    assert sandbox.server.count("tracker/stats/mileage/read") == 2
    days = [first + timedelta(days=n) for n in range(46)]
    assert sorted((r["tracker_id"], r["local_date"]) for r in rows) == sorted(
        (tid(d), day) for d in devices for day in days)
    clock = UserClock(PARIS)
    for row in rows[::7]:
        device = world.devices[row["tracker_id"] - sandbox_navixy.TRACKER_ID_BASE]
        lo, hi = clock.local_day_window(row["local_date"])
        km = world.odometer_km(device.imei, hi) - world.odometer_km(device.imei, lo)
        assert row["mileage_km"] == pytest.approx(km, abs=0.011)


def test_mileage_over_the_autumn_change_stays_within_31_real_days(navixy_sandbox, client) -> None:
    sandbox = navixy_sandbox
    device = navixy_devices(sandbox)[0]
    rows = client.mileage([tid(device)], date(2026, 10, 1), date(2026, 10, 31))
    # 31 local days containing the 25-hour day last 31 days and 1 hour: sent as 30 + 1.
    assert sandbox.server.count("tracker/stats/mileage/read", status=200) == 2
    assert [r["local_date"] for r in rows] == [date(2026, 10, 1) + timedelta(days=n) for n in range(31)]


# --- DST: UTC partitions equal the World's UTC truth --------------------------------------------------


@pytest.mark.parametrize("day", [SPRING_DAY, AUTUMN_DAY], ids=str)
def test_dst_partition_rows_equal_world_truth(navixy_sandbox, client, day: date) -> None:
    sandbox = navixy_sandbox
    world, now = sandbox.world, sandbox.now()
    begin, end = day_window(day)
    devices = navixy_devices(sandbox)
    got_points, want_points = Counter(), Counter()
    got_trips, want_trips = Counter(), Counter()
    for device in devices:
        points = client.track_points(tid(device), begin, end)
        assert not points.limit_exceeded
        got_points.update((tid(device), p["get_time"]) for p in points.rows)
        want_points.update((tid(device), t) for t in world_points(world, device, begin, end, now))
        trips = client.trips(tid(device), begin, end)
        got_trips.update((tid(device), t["start_date"], t["end_date"]) for t in trips.rows)
        want_trips.update((tid(device), s, e) for s, e in world_trips(world, device, begin, end, now))
    assert got_points == want_points and sum(want_points.values()) > 3000
    assert got_trips == want_trips and sum(want_trips.values()) > 20
    events = client.events([tid(d) for d in devices], begin, end)
    assert _event_keys(events) == _truth_events(sandbox, devices, begin, end)
    if day == AUTUMN_DAY:
        # The data really crosses the repeated hour: points in both 02:xx local hours, which a
        # local-time client would have merged (00:30 and 01:30 UTC are both "02:30" local).
        one, two, three = (datetime(2026, 10, 25, h) for h in (0, 1, 2))
        first_hour = [t for (_, t) in want_points if one <= t < two]
        second_hour = [t for (_, t) in want_points if two <= t < three]
        assert len(first_hour) > 20 and len(second_hour) > 20


@pytest.mark.parametrize("day, hours", [(SPRING_DAY, 23), (AUTUMN_DAY, 25)], ids=str)
def test_local_day_is_23_or_25_hours_of_utc_rows(navixy_sandbox, client, day: date, hours: int) -> None:
    sandbox = navixy_sandbox
    world, now = sandbox.world, sandbox.now()
    begin, end = client.local_day_window(day)
    assert end - begin == timedelta(hours=hours)
    device = _driving_device(sandbox, date(2026, 3, 28) if day == SPRING_DAY else date(2026, 10, 24))
    points = client.track_points(tid(device), begin, end)
    assert [p["get_time"] for p in points.rows] == world_points(world, device, begin, end, now)
    [row] = client.mileage([tid(device)], day, day)
    km = world.odometer_km(device.imei, end) - world.odometer_km(device.imei, begin)
    assert row["local_date"] == day and row["mileage_km"] == pytest.approx(km, abs=0.011)


# --- stats and secrets --------------------------------------------------------------------------------


def test_stats_equal_the_server_log(navixy_sandbox, tmp_path: Path) -> None:
    sandbox = navixy_sandbox
    client = make_client(sandbox, tmp_path, auth="login")
    ids = [t["id"] for t in client.trackers()]
    client.states(ids)
    sandbox.knobs.set(force_429_next=1, fail_next_5xx=1)
    client.events(ids, datetime(2026, 11, 18), datetime(2026, 11, 19))
    meta = client.stats.as_metadata()
    assert meta["api_calls"] == len(sandbox.server.requests())
    assert meta["calls_per_method"] == dict(Counter(r.vendor_method for r in sandbox.server.requests()))
    assert meta["api_retries"] == 2 and meta["bytes_received"] > 0 and meta["bytes_sent"] > 0


def test_no_secret_in_logs_errors_or_urls(navixy_sandbox, tmp_path: Path, caplog) -> None:
    sandbox = navixy_sandbox
    caplog.set_level(logging.DEBUG)
    cache = tmp_path / "cache"
    client = make_client(sandbox, cache, auth="login")
    sent = record_requests(client)
    client.trackers()
    first_hash = json.loads(next(cache.glob("navixy-session-*.json")).read_text())["hash"]
    sandbox.knobs.set(session_lifetime_s=60)
    sandbox.clock.advance(seconds=120)
    client.trackers()                                   # code 4, one new login
    second_hash = json.loads(next(cache.glob("navixy-session-*.json")).read_text())["hash"]
    assert second_hash != first_hash
    sandbox.knobs.set(session_lifetime_s=86_400, fail_next_5xx=1, malformed_json_next=1)
    client.trackers()                                   # retried faults
    client.last_gps_point(min(sandbox.knobs.blocked_tracker_ids))   # 208, logged
    errors: list[str] = []
    for knobs, call in (
        ({"force_429_next": 100}, lambda: client.trackers()),
        ({"force_429_next": 0, "malformed_json_next": 100}, lambda: client.trackers()),
        ({"malformed_json_next": 0}, lambda: client.fuel(min(sandbox.knobs.deleted_tracker_ids))),
        ({"session_lifetime_s": 0},
         lambda: make_client(sandbox, tmp_path / "other", auth="login").trackers()),
        ({}, lambda: make_client(sandbox, tmp_path / "k", api_key=first_hash).trackers()),
    ):
        sandbox.knobs.set(**knobs)
        with pytest.raises(VendorAPIError) as info:
            call()
        errors += [str(info.value), repr(info.value)]
    secrets = [sandbox_navixy.PASSWORD, sandbox_navixy.API_KEY, first_hash, second_hash]
    text = "\n".join(errors + [r.getMessage() for r in caplog.records])
    assert caplog.records and len(errors) == 10
    assert any("POST /api-v2/tracker/list" in r.getMessage() for r in caplog.records)  # urllib3
    for secret in secrets:
        assert secret not in text
        assert all(secret not in r.url for r in sent)
