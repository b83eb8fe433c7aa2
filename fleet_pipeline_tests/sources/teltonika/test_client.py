"""TeltonikaFotaClient against the FOTA WEB API sandbox over loopback HTTP.

Ground truth comes from the sandbox World (devices, firmware at the fixed clock); call counts
from the server's request log. Waits are never real: one fake time drives the client's sleeps,
its rate ledger and the server's 100-per-minute window, so pacing and 429 recovery are checked
by counting sleeps. The client's own pacing is off except where a test is about it.
"""

from __future__ import annotations

import importlib.metadata
import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from fleet_pipeline.ingest.http import (
    Backoff,
    RetryPolicy,
    VendorAPIError,
    VendorAuthError,
    VendorRateLimitError,
    VendorResponseError,
)
from fleet_pipeline.sandbox import teltonika as sandbox_teltonika
from fleet_pipeline.sandbox.faults import FaultKnobs
from fleet_pipeline.sandbox.messages import Request, Response
from fleet_pipeline.sandbox.server import ManualClock, SandboxServer
from fleet_pipeline.sandbox.teltonika import TeltonikaKnobs
from fleet_pipeline.sandbox.world import Device, World
from fleet_pipeline.sources.teltonika.client import (
    DEFAULT_USER_AGENT,
    TeltonikaFotaClient,
)

WORLD_NOW = datetime(2026, 11, 20, 12, 0, 0)
TOKEN = sandbox_teltonika.API_TOKEN
THROTTLE_BACKOFF = Backoff(base_s=15.0, multiplier=2.0, max_s=60.0, jitter=0.0)


class FakeTime:
    """Seconds that move only when something sleeps; records every sleep."""

    def __init__(self) -> None:
        self.t = 1_000_000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds


@dataclass
class FotaSandbox:
    server: SandboxServer[TeltonikaKnobs]
    world: World
    time: FakeTime

    @property
    def base_url(self) -> str:
        return self.server.base_url

    @property
    def knobs(self) -> TeltonikaKnobs:
        return self.server.knobs


@pytest.fixture(scope="module")
def big_world() -> World:
    """112 Teltonika devices: more than one page of 100."""
    return World(seed=42, n_devices=330, now=lambda: WORLD_NOW)


def _sandbox(world: World) -> Iterator[FotaSandbox]:
    fake = FakeTime()
    with sandbox_teltonika.make_server(world, now=ManualClock(world.now()),
                                       rate_clock=fake.clock) as server:
        yield FotaSandbox(server=server, world=world, time=fake)


@pytest.fixture
def fota(world: World) -> Iterator[FotaSandbox]:
    yield from _sandbox(world)


@pytest.fixture
def big_fota(big_world: World) -> Iterator[FotaSandbox]:
    yield from _sandbox(big_world)


def make_client(sandbox: FotaSandbox, cache_dir: Path, **overrides: Any) -> TeltonikaFotaClient:
    options: dict[str, Any] = dict(
        cache_dir=cache_dir,
        sleep=sandbox.time.sleep,
        clock=sandbox.time.clock,
        retry=RetryPolicy(max_attempts=4, backoff=Backoff(base_s=0.5, max_s=2.0, jitter=0.0)),
        throttle_backoff=THROTTLE_BACKOFF,
        max_calls_per_min=None,
    )
    options.update(overrides)
    token = options.pop("token", TOKEN)
    return TeltonikaFotaClient(sandbox.base_url, token, **options)


@pytest.fixture
def client(fota: FotaSandbox, tmp_path: Path) -> Iterator[TeltonikaFotaClient]:
    c = make_client(fota, tmp_path / "cache")
    yield c
    c.close()


def record_requests(client: TeltonikaFotaClient) -> list:
    """Every prepared request the client sends (URL, headers), via a requests hook."""
    sent: list = []
    client.http._session.hooks["response"].append(lambda r, *a, **k: sent.append(r.request))
    return sent


def fota_devices(world: World) -> list[Device]:
    return [d for d in world.devices if d.firmware_platform == "teltonika_fota"]


# --- devices ------------------------------------------------------------------------------------


def test_every_device_exactly_once_across_pages_with_firmware_now(big_fota, tmp_path: Path) -> None:
    world = big_fota.world
    expected = fota_devices(world)
    assert len(expected) > 100
    with make_client(big_fota, tmp_path) as client:
        sent = record_requests(client)
        rows = client.devices()
    imeis = [row["imei"] for row in rows]
    assert len(imeis) == len(set(imeis)) == len(expected)
    assert set(imeis) == {d.imei for d in expected}
    assert all(isinstance(i, str) and len(i) == 15 for i in imeis)
    for row in rows:
        assert row["current_firmware"] == world.firmware_at(row["imei"], WORLD_NOW)
        assert row["model"] == world.device(row["imei"]).model
    queries = [parse_qs(urlsplit(r.url).query) for r in sent]
    assert [q["page"] for q in queries] == [["1"], ["2"]]
    assert all(q["per_page"] == ["100"] and q["sort"] == ["imei"] for q in queries)
    assert big_fota.server.count("GET /devices", status=200) == 2


def test_filters_travel_as_repeated_query_parameters(fota, client) -> None:
    world = fota.world
    devices = fota_devices(world)
    sent = record_requests(client)
    fmb = client.devices(model=["FMB920", "FMB140"])
    assert sorted(r["imei"] for r in fmb) == sorted(
        d.imei for d in devices if d.model in ("FMB920", "FMB140"))
    assert parse_qs(urlsplit(sent[-1].url).query)["model"] == ["FMB920", "FMB140"]
    version = world.firmware_at(devices[0].imei, WORLD_NOW)
    same = client.devices(current_firmware=version)
    assert {r["imei"] for r in same} == {d.imei for d in devices
                                         if world.firmware_at(d.imei, WORLD_NOW) == version}


def test_a_long_imei_filter_is_batched_and_answered_once_each(big_fota, tmp_path: Path) -> None:
    world = big_fota.world
    teltonika = [d.imei for d in fota_devices(world)][:110]
    others = [d.imei for d in world.devices if d.firmware_platform != "teltonika_fota"][:30]
    asked = teltonika + others + teltonika[:10]          # duplicates are asked once
    with make_client(big_fota, tmp_path) as client:
        sent = record_requests(client)
        rows = client.devices(imei=asked)
    assert sorted(r["imei"] for r in rows) == sorted(teltonika)
    per_request = [len(parse_qs(urlsplit(r.url).query)["imei"]) for r in sent]
    assert per_request == [100, 40]


def test_single_lookups_and_not_found_is_none(fota, client) -> None:
    world = fota.world
    d = fota_devices(world)[0]
    row = client.device(d.imei)
    assert row is not None and row["imei"] == d.imei
    assert row["current_firmware"] == world.firmware_at(d.imei, WORLD_NOW)
    jimi = next(x for x in world.devices if x.firmware_platform is None)
    assert client.device(jimi.imei) is None
    groups = client.groups()
    assert len(groups) == sum(a.platform == "navixy" for a in world.accounts)
    assert client.group(groups[0]["id"]) == groups[0]
    assert client.group(1) is None
    action = next(a for a in fota.server.app.background_actions().values() if a.created_at <= WORLD_NOW)
    assert client.background_action(action.id)["status"] == "Completed"
    assert client.background_action("00000000-0000-4000-8000-000000000000") is None


# --- tasks and batches (OTA attempts) ------------------------------------------------------------


def test_every_firmware_task_once_across_pages_with_its_status_now(big_fota, tmp_path: Path) -> None:
    # One task per OTA attempt of the World sent by the clock; statuses as the sandbox documents
    # them (sent 0, downloading 1, succeeded 2, failed and command-failed 5).
    world = big_fota.world
    expected = {(d.imei, a.sent_at.strftime("%Y-%m-%d %H:%M:%S")): {1: 0, 2: 1, 3: 2, 4: 5, -1: 5}[a.status_at(WORLD_NOW)]
                for d in fota_devices(world) for a in world.ota_attempts(d.imei) if a.sent_at <= WORLD_NOW}
    assert len(expected) > 100, "more than one page of tasks"
    with make_client(big_fota, tmp_path) as client:
        sent = record_requests(client)
        rows = client.tasks(type="TxFirmware")
    assert all(isinstance(r["device_imei"], str) and len(r["device_imei"]) == 15 for r in rows)
    assert all(isinstance(r["device"]["imei"], str) for r in rows)
    assert {(r["device_imei"], r["created_at"]): r["status_id"] for r in rows} == expected
    assert len(rows) == len(expected)
    queries = [parse_qs(urlsplit(r.url).query) for r in sent]
    assert [q["page"] for q in queries] == [[str(n)] for n in range(1, -(-len(expected) // 100) + 1)]
    assert all(q["per_page"] == ["100"] and q["sort"] == ["id"] and q["type"] == ["TxFirmware"] for q in queries)


def test_batches_and_single_task_lookups(fota, client) -> None:
    world = fota.world
    batches = client.batches()
    campaigns = [c for c in world.campaigns if c.platform == "teltonika_fota" and c.start_day <= WORLD_NOW.date()]
    assert len(batches) == len(campaigns)
    sent = [a for d in fota_devices(world) for a in world.ota_attempts(d.imei) if a.sent_at <= WORLD_NOW]
    assert sum(b["objects"] for b in batches) == len(sent)
    assert client.batch(batches[0]["id"]) == batches[0]
    assert client.batch(1) is None
    task = client.tasks(batch_id=batches[0]["id"])[0]
    single = client.task(task["id"])
    assert single is not None and single["device_imei"] == task["device_imei"]
    assert client.task(1) is None


def test_a_refused_query_names_the_operation(fota, client) -> None:
    with pytest.raises(VendorAPIError) as info:
        client.devices(sort="password")
    assert str(info.value).startswith("teltonika GET /devices: The given data was invalid")
    assert info.value.status == 400


# --- the wire -----------------------------------------------------------------------------------


class CannedApp:
    """A vendor app that answers every request with one fixed JSON body."""

    vendor = "teltonika"

    def __init__(self, payload: Any) -> None:
        self.payload = payload

    def vendor_method(self, request: Request) -> str | None:
        return "GET /devices"

    def throttle(self, request: Request) -> Response | None:
        return None

    def handle(self, request: Request) -> Response:
        return Response.json(self.payload)


@pytest.fixture
def canned(tmp_path: Path) -> Iterator[Any]:
    servers: list[SandboxServer[FaultKnobs]] = []

    def serve(payload: Any) -> TeltonikaFotaClient:
        server = SandboxServer(CannedApp(payload), FaultKnobs()).start()
        servers.append(server)
        return TeltonikaFotaClient(server.base_url, TOKEN, cache_dir=tmp_path, max_calls_per_min=None,
                                   retry=RetryPolicy(max_attempts=1))

    yield serve
    for server in servers:
        server.stop()


def test_a_meta_wrapped_page_is_refused_not_read_as_one_page(canned) -> None:
    client = canned({"data": [{"imei": 352093081629767}],
                     "meta": {"current_page": 1, "last_page": 2, "total": 150}})
    with pytest.raises(VendorResponseError) as info:
        client.devices()
    assert "top-level integer `last_page`" in str(info.value) and "meta" in str(info.value)


@pytest.mark.parametrize("imei", [352093081629767.0, True, "35209308162976x"])
def test_an_imei_that_is_not_an_integer_is_refused(canned, imei) -> None:
    client = canned({"current_page": 1, "last_page": 1, "total": 1, "data": [{"imei": imei}]})
    with pytest.raises(VendorResponseError) as info:
        client.devices()
    assert "`imei`" in str(info.value)


def test_nested_imeis_become_strings_too(canned) -> None:
    client = canned({"imei": 12345678901234, "next_task": {"device_imei": 352093081629767, "id": 7}})
    assert client.device("12345678901234") == {
        "imei": "012345678901234", "next_task": {"device_imei": "352093081629767", "id": 7}}


def test_headers_name_the_application_and_carry_the_token(fota, client) -> None:
    sent = record_requests(client)
    client.groups()
    assert DEFAULT_USER_AGENT == (
        f"fleet_pipeline/{importlib.metadata.version('fleet_pipeline')} (+data-platform)")
    assert sandbox_teltonika.is_acceptable_user_agent(DEFAULT_USER_AGENT)
    headers = sent[0].headers
    assert headers["Authorization"] == f"Bearer {TOKEN}"
    assert headers["User-Agent"] == DEFAULT_USER_AGENT
    assert headers["Accept"] == "application/json" and headers["Content-Type"] == "application/json"
    assert TOKEN not in sent[0].url


def test_a_generic_user_agent_is_refused_clearly(fota, tmp_path: Path) -> None:
    with make_client(fota, tmp_path, user_agent="python-requests/2.32.3") as client:
        with pytest.raises(VendorAuthError) as info:
            client.groups()
    assert "User-Agent" in str(info.value) and info.value.status == 403
    with pytest.raises(ValueError):
        make_client(fota, tmp_path, user_agent=" ")


def test_a_wrong_token_fails_at_once_without_leaking(fota, tmp_path: Path) -> None:
    wrong = "not-the-sandbox-token-4242"
    with make_client(fota, tmp_path, token=wrong) as client:
        with pytest.raises(VendorAuthError) as info:
            client.devices()
    assert str(info.value).startswith("teltonika GET /devices: API token rejected")
    assert wrong not in str(info.value) and wrong not in repr(info.value)
    assert fota.server.count(status=401) == 1


# --- throttling ---------------------------------------------------------------------------------


def test_429_without_retry_after_backs_off_on_the_minute_scale(fota, client) -> None:
    expected = client.groups()
    fota.knobs.set(force_429_next=2)
    assert client.groups() == expected
    assert fota.time.sleeps == [15.0, 30.0]
    assert fota.server.count("GET /groups", status=429) == 2
    assert client.stats.retries == 2 and client.stats.throttle_wait_s == 45.0


def test_429_with_retry_after_waits_what_the_server_says(fota, client) -> None:
    expected = client.groups()
    fota.knobs.set(force_429_next=2, retry_after_header=True, forced_retry_after_s=7)
    assert client.groups() == expected
    assert fota.time.sleeps == [7.0, 7.0]


@pytest.mark.parametrize("header", [False, True])
def test_the_servers_real_window_is_waited_out(fota, client, header: bool) -> None:
    """100 calls at one instant fill the minute; the 101st recovers by waiting, not failing."""
    fota.knobs.set(retry_after_header=header)
    for _ in range(105):
        assert client.group(sandbox_teltonika.GROUP_ID_BASE + 1) is not None
    # Retry-After says exactly when the first slot frees (60 s); without it the backoff
    # (15, 30, then 60 s) gets past the window on its third wait.
    assert fota.time.sleeps == ([60.0] if header else [15.0, 30.0, 60.0])
    assert fota.server.count(status=429) == len(fota.time.sleeps)
    assert fota.server.count(status=200) == 105


def test_persistent_429_gives_up_naming_the_operation(fota, client) -> None:
    fota.knobs.set(force_429_next=100)
    with pytest.raises(VendorRateLimitError) as info:
        client.group(sandbox_teltonika.GROUP_ID_BASE + 1)
    assert str(info.value).startswith(
        "teltonika GET /groups/{groupId}: still throttled after 4 attempts")
    assert fota.server.count(status=429) == 4


def test_a_retry_after_beyond_the_policy_fails_fast(fota, client) -> None:
    fota.knobs.set(force_429_next=1, retry_after_header=True, forced_retry_after_s=3600)
    with pytest.raises(VendorRateLimitError) as info:
        client.groups()
    assert "asked to wait 3600 s" in str(info.value)
    assert fota.server.count() == 1 and fota.time.sleeps == []


def test_the_limiter_keeps_the_client_under_100_per_minute(fota, tmp_path: Path) -> None:
    times: list[float] = []
    with make_client(fota, tmp_path, max_calls_per_min=90) as client:
        client.http._session.hooks["response"].append(lambda r, *a, **k: times.append(fota.time.t))
        for _ in range(200):
            client.group(sandbox_teltonika.GROUP_ID_BASE + 1)
    assert fota.server.count(status=429) == 0 and fota.server.count(status=200) == 200
    busiest = max(sum(1 for u in times if t <= u < t + 60.0) for t in times)
    assert busiest == 90
    # 200 calls at 90 a minute: calls 91 and 181 each wait for a full window to pass
    assert len(fota.time.sleeps) == 2 and sum(fota.time.sleeps) >= 120.0
    assert client.stats.throttle_wait_s == sum(fota.time.sleeps)


def test_clients_sharing_a_cache_dir_share_the_budget(fota, tmp_path: Path) -> None:
    first = make_client(fota, tmp_path, max_calls_per_min=90)
    second = make_client(fota, tmp_path, max_calls_per_min=90)
    elsewhere = make_client(fota, tmp_path / "other", max_calls_per_min=90)
    for _ in range(90):
        first.group(sandbox_teltonika.GROUP_ID_BASE + 1)
    assert fota.time.sleeps == []
    elsewhere.group(sandbox_teltonika.GROUP_ID_BASE + 1)         # its own ledger: no wait
    assert fota.time.sleeps == []
    second.group(sandbox_teltonika.GROUP_ID_BASE + 1)            # the shared ledger is full
    assert len(fota.time.sleeps) == 1 and fota.time.sleeps[0] == pytest.approx(60.0, abs=0.01)
    for c in (first, second, elsewhere):
        c.close()


# --- faults, stats, secrets ---------------------------------------------------------------------


def test_5xx_and_bad_bodies_are_retried(fota, client) -> None:
    expected = client.devices()
    fota.knobs.set(fail_next_5xx=1, malformed_json_next=1, truncated_body_next=1)
    assert client.devices() == expected
    for fault in ("5xx", "malformed_json", "truncated"):
        assert fota.server.count("GET /devices", fault=fault) == 1


def test_stats_equal_the_server_log(fota, client) -> None:
    client.devices()
    fota.knobs.set(force_429_next=1, fail_next_5xx=1)
    client.groups()
    client.device(fota_devices(fota.world)[0].imei)
    meta = client.stats.as_metadata()
    log = fota.server.requests()
    assert meta["api_calls"] == len(log)
    assert meta["calls_per_method"] == dict(Counter(r.vendor_method for r in log))
    assert meta["api_retries"] == 2 and meta["bytes_received"] > 0


def test_no_token_in_logs_errors_or_urls(fota, tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "not-the-sandbox-token-4242"
    client = make_client(fota, tmp_path)
    sent = record_requests(client)
    fota.knobs.set(fail_next_5xx=1, force_429_next=1, malformed_json_next=1)
    client.devices()                                        # three retried faults, logged
    errors: list[str] = []
    for knobs, call in (
        ({"force_429_next": 100}, lambda: client.groups()),
        ({"force_429_next": 0, "malformed_json_next": 100}, lambda: client.groups()),
        ({"malformed_json_next": 0}, lambda: client.devices(sort="nope")),
        ({}, lambda: make_client(fota, tmp_path, token=wrong).groups()),
    ):
        fota.knobs.set(**knobs)
        with pytest.raises(VendorAPIError) as info:
            call()
        errors += [str(info.value), repr(info.value)]
    text = "\n".join(errors + [r.getMessage() for r in caplog.records])
    assert len(errors) == 8 and any("retrying" in r.getMessage() for r in caplog.records)
    for secret in (TOKEN, wrong):
        assert secret not in text
    assert all(TOKEN not in r.url for r in sent)
    client.close()
