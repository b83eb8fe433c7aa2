"""TracksolidClient against the Tracksolid sandbox over loopback HTTP.

Ground truth comes from the sandbox World; call counts come from the server's request log.
Waits are never real: ``sleep`` advances the sandbox clock instead (that is also what releases the
once-a-minute token rule), and the client's pacing limiter is off except in the pacing test, with
the server's burst limit raised to match.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
import subprocess
import sys
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from fleet_pipeline.ingest.http import (
    Backoff,
    RetryPolicy,
    VendorAPIError,
    VendorRateLimitError,
    VendorResponseError,
)
from fleet_pipeline.sandbox import tracksolid as sandbox_tracksolid
from fleet_pipeline.sandbox.server import ManualClock, SandboxServer
from fleet_pipeline.sandbox.tracksolid import TracksolidKnobs
from fleet_pipeline.sandbox.world import World
from fleet_pipeline.sources.tracksolid.client import TracksolidClient
from fleet_pipeline.sources.tracksolid.rows import extract_rows
from fleet_pipeline.sources.tracksolid.signing import sign
from fleet_pipeline_tests.clock_sleep import ClockSleep

PROJECT_ROOT = Path(__file__).resolve().parents[3]
TOKEN_GET = "jimi.oauth.token.get"
TOKEN_REFRESH = "jimi.oauth.token.refresh"



def make_client(
    server: SandboxServer[TracksolidKnobs],
    clock: ManualClock,
    cache_dir: Path,
    **overrides: object,
) -> TracksolidClient:
    options: dict[str, object] = dict(
        token_cache_dir=cache_dir,
        now=clock,
        sleep=ClockSleep(clock),
        throttle_backoff=Backoff(base_s=2.0, multiplier=2.0, max_s=8.0, jitter=0.0),
        retry=RetryPolicy(max_attempts=4, backoff=Backoff(base_s=0.5, max_s=2.0, jitter=0.0)),
        max_calls_per_s=None,
    )
    options.update(overrides)
    if options["max_calls_per_s"] is None:
        server.knobs.set(rate_limit_calls=1_000_000)
    return TracksolidClient(
        server.base_url, **sandbox_tracksolid.CREDENTIALS, **options  # type: ignore[arg-type]
    )


@pytest.fixture
def client(tracksolid_sandbox, tmp_path: Path) -> Iterator[TracksolidClient]:
    c = make_client(tracksolid_sandbox.server, tracksolid_sandbox.clock, tmp_path / "tokens")
    yield c
    c.close()


def _root(world: World) -> str:
    return world.root_account("tracksolid").account_id


def _tracksolid_imeis(world: World) -> list[str]:
    """The IMEIs the account holds at the World's clock (a later install is not there yet)."""
    return [d.imei for d in world.devices_on("tracksolid", at=world.now())]


# --- signing and envelopes --------------------------------------------------------------------------


def test_signature_is_md5_of_secret_wrapped_sorted_pairs() -> None:
    params = {"timestamp": "2025-01-01 00:00:00", "method": "jimi.oauth.token.get", "app_key": "ABC123"}
    text = "SECRET" + "app_keyABC123methodjimi.oauth.token.gettimestamp2025-01-01 00:00:00" + "SECRET"
    assert sign(params, "SECRET") == hashlib.md5(text.encode()).hexdigest().upper()
    assert sign({**params, "sign": "ignored"}, "SECRET") == sign(params, "SECRET")


def test_envelope_variants_are_all_understood() -> None:
    rows = [{"imei": "1"}]
    assert extract_rows("m", {"code": 0, "result": rows}) == (rows, None)
    assert extract_rows("m", {"code": "0", "result": None,
                              "data": {"rows": rows, "dataTotalRows": "7"}}) == (rows, 7)
    assert extract_rows("m", {"code": 0, "result": None,
                              "data": {"currentPage": 1, "totalRecord": 3, "result": rows}}) == (rows, 3)
    assert extract_rows("m", {"code": 0, "result": None, "data": None}) == ([], None)
    with pytest.raises(VendorResponseError, match="tracksolid m: unexpected envelope"):
        extract_rows("m", {"code": 0, "result": "surprise"})


# --- retries, throttling -----------------------------------------------------------------------------


def test_1006_is_retried_with_a_fresh_timestamp_and_signature(tracksolid_sandbox, tmp_path: Path) -> None:
    sandbox = tracksolid_sandbox
    # Each 1006 backoff moves the sandbox clock 400 s: after two of them a request re-sent with
    # its first timestamp would be 800 s old and rejected (tolerance 600 s) - so success proves
    # that every retry was signed afresh.
    client = make_client(
        sandbox.server, sandbox.clock, tmp_path,
        throttle_backoff=Backoff(base_s=400.0, multiplier=1.0, max_s=400.0, jitter=0.0),
    )
    root = _root(sandbox.world)
    client.devices(root)  # obtain the token first
    sandbox.knobs.set(force_1006_next=2)
    rows = client.devices(root)
    assert {r["imei"] for r in rows} == {d.imei for d in sandbox.world.devices_of_account(root, at=sandbox.clock())
                                        if d.platform == "tracksolid"}
    assert sandbox.server.count("jimi.user.device.list", vendor_code=1006) == 2
    assert sandbox.server.count("jimi.user.device.list", vendor_code=1001) == 0
    assert sandbox.server.count("jimi.user.device.list", vendor_code=0) == 2
    assert client.stats.throttle_wait_s == pytest.approx(800.0)
    assert client.stats.retries == 2


def test_persistent_1006_gives_up_naming_the_method(tracksolid_sandbox, client) -> None:
    sandbox = tracksolid_sandbox
    sandbox.knobs.set(force_1006_next=100)
    with pytest.raises(VendorRateLimitError) as info:
        client.devices(_root(sandbox.world))
    text = str(info.value)
    assert text.startswith("tracksolid jimi.user.device.list:") and "code 1006" in text
    assert sandbox.server.count("jimi.user.device.list", vendor_code=1006) == 4


def test_5xx_burst_and_bad_bodies_are_retried(tracksolid_sandbox, client) -> None:
    sandbox = tracksolid_sandbox
    root = _root(sandbox.world)
    expected = client.devices(root)
    sandbox.knobs.set(fail_next_5xx=1, malformed_json_next=1, truncated_body_next=1)
    assert client.devices(root) == expected
    assert sandbox.server.count(fault="5xx") == 1
    assert sandbox.server.count(fault="malformed_json") == 1
    assert sandbox.server.count(fault="truncated") == 1


def test_dropped_connection_midway_is_retried(tracksolid_sandbox, client) -> None:
    sandbox = tracksolid_sandbox
    root = _root(sandbox.world)
    expected = client.devices(root)
    sandbox.knobs.set(truncated_body_next=1, truncate_mode="drop")
    assert client.devices(root) == expected
    assert sandbox.server.count(fault="truncated") == 1


def test_non_json_body_everywhere_gives_a_clear_error(tracksolid_sandbox, client) -> None:
    sandbox = tracksolid_sandbox
    root = _root(sandbox.world)
    client.devices(root)
    sandbox.knobs.set(malformed_json_next=100)
    with pytest.raises(VendorResponseError) as info:
        client.devices(root)
    text = str(info.value)
    assert "tracksolid jimi.user.device.list" in text
    assert "HTTP 200" in text and "502 Bad Gateway" in text and "4 attempts" in text


def test_vendor_error_carries_code_and_method(tracksolid_sandbox, client) -> None:
    with pytest.raises(VendorAPIError) as info:
        client.device_detail("490154203237518")  # valid IMEI, not on this platform/account
    assert info.value.code == "1002"
    assert str(info.value).startswith("tracksolid jimi.track.device.detail: illegal device")
    # Not retryable: exactly one attempt.
    assert tracksolid_sandbox.server.count("jimi.track.device.detail") == 1


def test_client_paces_itself_under_the_burst_limit(tracksolid_sandbox, tmp_path: Path) -> None:
    sandbox = tracksolid_sandbox
    client = make_client(sandbox.server, sandbox.clock, tmp_path, max_calls_per_s=20)
    sandbox.knobs.set(rate_limit_calls=25, rate_limit_window_s=1.0)
    root = _root(sandbox.world)
    for _ in range(40):
        client.devices(root)
    assert sandbox.server.count("jimi.user.device.list", vendor_code=0) == 40
    assert sandbox.server.count(vendor_code=1006) == 0
    assert client.stats.throttle_wait_s > 0


# --- token lifecycle ---------------------------------------------------------------------------------


def test_token_renewed_exactly_once_on_1004(tracksolid_sandbox, tmp_path: Path) -> None:
    sandbox = tracksolid_sandbox
    sleep = ClockSleep(sandbox.clock)
    client = make_client(sandbox.server, sandbox.clock, tmp_path, sleep=sleep)
    root = _root(sandbox.world)
    client.devices(root)
    # Revoke every token issued so far: the cached one is still "valid" for the client.
    sandbox.knobs.set(revoke_tokens_issued_before=sandbox.clock.advance(seconds=5))
    rows = client.devices(root)
    assert rows
    log = sandbox.server
    assert log.count("jimi.user.device.list", vendor_code=1004) == 1
    assert log.count("jimi.user.device.list", vendor_code=0) == 2
    # Renewal tried refresh first (rejected: same revoked session), then one new token.get,
    # which waited for the once-a-minute rule instead of provoking 1006.
    assert log.count(TOKEN_REFRESH, vendor_code=1004) == 1
    assert log.count(TOKEN_GET, vendor_code=0) == 2
    assert log.count(TOKEN_GET, vendor_code=1006) == 0
    assert sleep.waits == [pytest.approx(55.0)]


def test_second_1004_after_renewal_is_an_error_not_a_loop(tracksolid_sandbox, client) -> None:
    sandbox = tracksolid_sandbox
    root = _root(sandbox.world)
    client.devices(root)
    # Revoke far into the future: even the renewed token is rejected.
    sandbox.knobs.set(revoke_tokens_issued_before=sandbox.clock() + timedelta(days=1))
    with pytest.raises(VendorAPIError) as info:
        client.devices(root)
    assert info.value.code == "1004"
    assert "rejected again right after renewal" in str(info.value)
    assert sandbox.server.count("jimi.user.device.list", vendor_code=1004) == 2
    assert sandbox.server.count(TOKEN_GET, vendor_code=0) == 2


def test_token_refreshed_before_expiry(tracksolid_sandbox, tmp_path: Path) -> None:
    sandbox = tracksolid_sandbox
    sandbox.knobs.set(token_lifetime_s=900)
    client = make_client(sandbox.server, sandbox.clock, tmp_path)
    root = _root(sandbox.world)
    client.devices(root)
    sandbox.clock.advance(seconds=300)  # 600 s left: more than the margin (half of 900 s)
    client.devices(root)
    assert sandbox.server.count(TOKEN_REFRESH) == 0
    sandbox.clock.advance(seconds=200)  # 400 s left: refresh now, while the token still works
    client.devices(root)
    assert sandbox.server.count(TOKEN_REFRESH, vendor_code=0) == 1
    assert sandbox.server.count(TOKEN_GET) == 1
    assert sandbox.server.count(vendor_code=1004) == 0
    sandbox.clock.advance(seconds=400)  # beyond the first token's life: the refreshed one serves
    client.devices(root)
    assert sandbox.server.count(TOKEN_REFRESH) == 1 and sandbox.server.count(vendor_code=1004) == 0


def test_failed_refresh_falls_back_to_token_get(tracksolid_sandbox, tmp_path: Path) -> None:
    sandbox = tracksolid_sandbox
    sandbox.knobs.set(token_lifetime_s=900)
    sleep = ClockSleep(sandbox.clock)
    client = make_client(sandbox.server, sandbox.clock, tmp_path, sleep=sleep)
    root = _root(sandbox.world)
    client.devices(root)
    sandbox.knobs.set(revoke_tokens_issued_before=sandbox.clock.advance(seconds=500))
    client.devices(root)
    assert sandbox.server.count(TOKEN_REFRESH, vendor_code=1004) == 1
    assert sandbox.server.count(TOKEN_GET, vendor_code=0) == 2
    assert sleep.waits == []  # the last token.get was 500 s ago: nothing to wait for


def test_token_cache_is_shared_between_clients(tracksolid_sandbox, tmp_path: Path) -> None:
    sandbox = tracksolid_sandbox
    cache = tmp_path / "tokens"
    root = _root(sandbox.world)
    first = make_client(sandbox.server, sandbox.clock, cache)
    second = make_client(sandbox.server, sandbox.clock, cache)
    first.devices(root)
    second.devices(root)
    assert sandbox.server.count(TOKEN_GET) == 1
    files = list(cache.glob("*.json"))
    assert len(files) == 1
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
    assert not list(cache.glob("*.tmp"))


def test_token_cache_is_keyed_by_account(tracksolid_sandbox, tmp_path: Path) -> None:
    sandbox = tracksolid_sandbox
    cache = tmp_path / "tokens"
    make_client(sandbox.server, sandbox.clock, cache).devices(_root(sandbox.world))
    other = TracksolidClient(
        sandbox.server.base_url, **{**sandbox_tracksolid.CREDENTIALS, "user_id": "fleetco-vaulx"},
        token_cache_dir=cache, now=sandbox.clock, sleep=ClockSleep(sandbox.clock),
        max_calls_per_s=None,
    )
    rows = other.devices("fleetco-vaulx")
    assert all(r["imei"] for r in rows)
    assert sandbox.server.count(TOKEN_GET, vendor_code=0) == 2
    assert len(list(cache.glob("*.json"))) == 2


_CHILD = """
import json, sys, time
from datetime import datetime
from pathlib import Path
from fleet_pipeline.sources.tracksolid.client import TracksolidClient
base_url, cache, now, creds, account, gate, name = sys.argv[1:8]
fixed = datetime.fromisoformat(now)
client = TracksolidClient(base_url, **json.loads(creds), token_cache_dir=Path(cache),
                          now=lambda: fixed, sleep=lambda s: None, max_calls_per_s=None)
Path(gate, name).touch()
while not Path(gate, "go").exists():
    time.sleep(0.005)
print(len(client.devices(account)))
"""


def test_token_cache_is_shared_across_processes(tracksolid_sandbox, tmp_path: Path) -> None:
    sandbox = tracksolid_sandbox
    # Slow answers widen the race: all three processes ask for a token at the same moment
    # (released together through a gate file) while the first token.get is still in flight.
    sandbox.knobs.set(rate_limit_calls=1_000_000, latency_s=0.3)
    root = _root(sandbox.world)
    gate = tmp_path / "gate"
    gate.mkdir()
    args = [sandbox.server.base_url, str(tmp_path / "tokens"), sandbox.clock().isoformat(),
            json.dumps(dict(sandbox_tracksolid.CREDENTIALS)), root, str(gate)]
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    children = [
        subprocess.Popen([sys.executable, "-c", _CHILD, *args, f"ready-{n}"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                         cwd=PROJECT_ROOT)
        for n in range(3)
    ]
    deadline = time.monotonic() + 60
    while len(list(gate.glob("ready-*"))) < 3 and time.monotonic() < deadline:
        if any(child.poll() is not None for child in children):
            break
        time.sleep(0.01)
    (gate / "go").touch()
    outputs = [child.communicate(timeout=60) for child in children]
    assert [child.returncode for child in children] == [0, 0, 0], outputs
    expected = len([d for d in sandbox.world.devices_of_account(root, at=sandbox.clock()) if d.platform == "tracksolid"])
    assert [int(out.strip()) for out, _ in outputs] == [expected] * 3
    assert sandbox.server.count(TOKEN_GET) == 1
    assert sandbox.server.count("jimi.user.device.list", vendor_code=0) == 3


# --- accounts and devices ----------------------------------------------------------------------------


def test_account_walk_lists_every_device_exactly_once(tracksolid_sandbox, client) -> None:
    world = tracksolid_sandbox.world
    accounts = client.accounts()
    names = [a["account"] for a in accounts]
    assert len(names) == len(set(names))
    assert set(names) == {a.account_id for a in world.accounts if a.platform == "tracksolid"}
    parents = {a["account"]: a["parentAccount"] for a in accounts}
    assert parents == {a.account_id: a.parent_id for a in world.accounts if a.platform == "tracksolid"}
    imeis = [row["imei"] for name in names for row in client.devices(name)]
    assert len(imeis) == len(set(imeis))
    assert sorted(imeis) == sorted(_tracksolid_imeis(world))
    assert tracksolid_sandbox.server.count("jimi.user.child.list") == len(names)


def test_account_walk_survives_a_cycle(tracksolid_sandbox, client, monkeypatch) -> None:
    world = tracksolid_sandbox.world
    root = world.root_account("tracksolid")
    real = world.child_accounts
    leaves = [a for a in world.accounts
              if a.platform == "tracksolid" and not real(a.account_id)]

    def cyclic(account_id: str):  # a misconfigured tree: every leaf lists the root as a child
        children = real(account_id)
        return children if children else [root]

    monkeypatch.setattr(world, "child_accounts", cyclic)
    names = [a["account"] for a in client.accounts()]
    assert len(names) == len(set(names)) == len([a for a in world.accounts if a.platform == "tracksolid"])
    assert leaves


def test_device_detail_and_locations_are_raw_rows(tracksolid_sandbox, client) -> None:
    world = tracksolid_sandbox.world
    device = world.devices_on("tracksolid", at=world.now())[0]
    detail = client.device_detail(device.imei)
    assert detail["imei"] == device.imei and isinstance(detail["currentMileage"], str)
    rows = client.locations(device.account_id)
    assert rows and all(isinstance(r["speed"], str) for r in rows)
    assert {r["imei"] for r in rows} <= {d.imei for d in world.devices_of_account(device.account_id)}


# --- reports: batching, paging, windows ---------------------------------------------------------------


@pytest.fixture(scope="module")
def big_world() -> World:
    """Enough Tracksolid devices (> 120) for multi-batch calls; days are generated on demand."""
    return World(seed=42, n_devices=300, now=lambda: datetime(2026, 11, 20, 12, 0, 0))


@pytest.fixture
def big_sandbox(big_world: World) -> Iterator[tuple[SandboxServer[TracksolidKnobs], ManualClock]]:
    clock = ManualClock(big_world.now())
    with sandbox_tracksolid.make_server(big_world, now=clock) as server:
        yield server, clock


def test_trips_batched_by_50_and_paged_by_100(big_world: World, big_sandbox, tmp_path: Path) -> None:
    server, clock = big_sandbox
    client = make_client(server, clock, tmp_path)
    imeis = _tracksolid_imeis(big_world)[:120]
    begin, end = datetime(2026, 11, 19, 0, 0, 0), datetime(2026, 11, 19, 12, 0, 0)
    rows, totals = client.trips(imeis, begin, end)

    def truth(imei: str) -> int:
        return sum(1 for t in big_world.day(imei, begin.date()).trips
                   if begin <= t.start < end and t.end <= clock())

    batches = [imeis[0:50], imeis[50:100], imeis[100:120]]
    expected_calls = sum(sum(truth(i) for i in batch) // 100 + 1 for batch in batches)
    assert server.count("jimi.device.track.mileage") == expected_calls >= 3
    assert any(sum(truth(i) for i in batch) > 100 for batch in batches), "paging not exercised"
    assert len(rows) == sum(truth(i) for i in imeis)
    assert len({(r["imei"], r["startTime"]) for r in rows}) == len(rows)
    assert sorted(t["imei"] for t in totals) == sorted(imeis)
    assert all(isinstance(r["distance"], str) for r in rows)  # raw vendor rows, untyped


def test_parking_pages_with_start_row_multiples(big_world: World, big_sandbox, tmp_path: Path) -> None:
    server, clock = big_sandbox
    client = make_client(server, clock, tmp_path)
    root = _root(big_world)
    imeis = _tracksolid_imeis(big_world)[:60]
    begin, end = datetime(2026, 11, 19, 0, 0, 0), datetime(2026, 11, 20, 0, 0, 0)
    rows = client.parking(root, imeis, begin, end)
    expected = {
        (imei, s.start) for imei in imeis for s in big_world.day(imei, begin.date()).stops
        if s.kind == "parking" and begin <= s.start < end and s.end <= clock()
    }
    got = {(r["imei"], datetime.strptime(r["startTime"], "%Y-%m-%dT%H:%M:%S.000Z")) for r in rows}
    assert len(rows) == len(expected) and got == expected
    assert server.count("jimi.open.platform.report.parking", vendor_code=1001) == 0
    assert server.count("jimi.open.platform.report.parking") >= 3  # 2 batches, one of them paged


def test_track_points_are_fetched_in_7_day_windows(tracksolid_sandbox, client) -> None:
    sandbox = tracksolid_sandbox
    world = sandbox.world
    imei = world.devices_on("tracksolid", at=world.now())[1].imei
    now = sandbox.clock()
    begin = now - timedelta(days=9)
    # An end in the future is clipped to just before now instead of being rejected.
    points = client.track_points(imei, begin, now + timedelta(hours=1))
    assert sandbox.server.count("jimi.device.track.list") == 2
    assert sandbox.server.count("jimi.device.track.list", vendor_code=1001) == 0
    day = begin.date()
    expected = 0
    while day <= now.date():
        frame = world.day(imei, day).points
        expected += frame.filter(
            (frame["gps_time"] >= begin) & (frame["gps_time"] < now)
            & (frame["received_at"] <= now)
        ).height
        day += timedelta(days=1)
    assert len(points) == expected > 0
    assert len({p["gpsTime"] for p in points}) == len(points)


def test_alarm_window_is_split_when_the_reachable_cap_is_hit(tracksolid_sandbox, tmp_path: Path) -> None:
    sandbox = tracksolid_sandbox
    world = sandbox.world
    # The real cap is 1000 rows per query; scaling it (server and client alike) to 100 exercises
    # the same splitting with a tenth of the synthetic data.
    sandbox.server.knobs.set(alarm_rows_reachable=100)
    client = make_client(sandbox.server, sandbox.clock, tmp_path, alarm_rows_reachable=100)
    imeis = _tracksolid_imeis(world)
    end = sandbox.clock()
    begin = end - timedelta(days=2)
    rows = client.alarms(imeis, begin, end)
    expected = sorted(
        (d.imei, a.time) for d in world.devices_on("tracksolid", at=end)
        for day in (begin.date(), begin.date() + timedelta(days=1), end.date())
        for a in world.day(d.imei, day).alarms if begin <= a.time < end
    )
    expected = sorted(set(expected))
    assert len(expected) > 100, "the window must exceed the cap for this test to mean anything"
    got = sorted((r["imei"], datetime.strptime(r["alertTime"], "%Y-%m-%d %H:%M:%S")) for r in rows)
    assert got == expected, (Counter(got) - Counter(expected), Counter(expected) - Counter(got))
    calls = sandbox.server.count("jimi.device.alarm.list")
    assert calls > 2  # at least one split happened
    assert sandbox.server.count("jimi.device.alarm.list", vendor_code=1001) == 0


def test_alarms_use_31_day_windows(tracksolid_sandbox, client) -> None:
    sandbox = tracksolid_sandbox
    imei = sandbox.world.devices_on("tracksolid", at=sandbox.clock())[2].imei
    end = sandbox.clock()
    client.alarms([imei], end - timedelta(days=40), end)
    assert sandbox.server.count("jimi.device.alarm.list") == 2
    assert sandbox.server.count("jimi.device.alarm.list", vendor_code="0") == 2


def test_stats_match_the_server_log(tracksolid_sandbox, client) -> None:
    sandbox = tracksolid_sandbox
    for account in client.accounts():
        client.devices(account["account"])
    meta = client.stats.as_metadata()
    assert meta["api_calls"] == len(sandbox.server.requests())
    for method, count in meta["calls_per_method"].items():
        assert sandbox.server.count(method) == count
    assert meta["bytes_received"] > 0 and meta["bytes_sent"] > 0


# --- secrets -----------------------------------------------------------------------------------------


def test_no_secret_in_logs_or_errors(tracksolid_sandbox, tmp_path: Path, caplog) -> None:
    sandbox = tracksolid_sandbox
    caplog.set_level(logging.DEBUG)
    cache = tmp_path / "tokens"
    client = make_client(sandbox.server, sandbox.clock, cache)
    root = _root(sandbox.world)
    errors: list[str] = []
    client.devices(root)
    first_token = json.loads(next(cache.glob("*.json")).read_text())
    sandbox.knobs.set(revoke_tokens_issued_before=sandbox.clock.advance(seconds=1))
    client.devices(root)                                  # 1004, failed refresh, new token
    sandbox.knobs.set(fail_next_5xx=1, malformed_json_next=1)
    client.devices(root)                                  # retried faults
    for knobs, call in (
        ({"force_1006_next": 100}, lambda: client.devices(root)),
        ({"force_1006_next": 0, "malformed_json_next": 100}, lambda: client.devices(root)),
        ({"malformed_json_next": 0}, lambda: client.device_detail("490154203237518")),
        ({"revoke_tokens_issued_before": sandbox.clock() + timedelta(days=1)},
         lambda: client.devices(root)),
    ):
        sandbox.knobs.set(**knobs)
        with pytest.raises(VendorAPIError) as info:
            call()
        errors.append(str(info.value))
        errors.append(repr(info.value))

    state = json.loads(next(cache.glob("*.json")).read_text())
    password = sandbox_tracksolid.USER_PASSWORD
    md5 = hashlib.md5(password.encode()).hexdigest()
    secrets = [sandbox_tracksolid.APP_SECRET, password, md5, md5.upper(),
               state["access_token"], state["refresh_token"],
               first_token["access_token"], first_token["refresh_token"]]
    assert state["access_token"] != first_token["access_token"]
    secrets += [urllib.parse.quote_plus(s) for s in secrets]
    text = "\n".join(errors + [r.getMessage() for r in caplog.records])
    assert caplog.records and len(errors) == 8
    for secret in secrets:
        assert secret not in text
