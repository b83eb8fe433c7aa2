"""AovxClient against the AOVX sandbox over loopback HTTP.

Ground truth is the World's OTA attempts; call counts come from the server's request log.
Waits are never real: the client's ``sleep`` only records.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, time, timedelta, timezone

import pytest

from fleet_pipeline.ingest.http import Backoff, RetryPolicy, VendorAPIError, VendorAuthError
from fleet_pipeline.sandbox import aovx
from fleet_pipeline.sandbox.server import ManualClock, SandboxServer
from fleet_pipeline.sandbox.world import World
from fleet_pipeline.sources.aovx.client import AovxClient

NOW = datetime(2026, 11, 20, 12)
WINDOW = (datetime(2026, 10, 1), datetime(2026, 11, 21))


@pytest.fixture(scope="module")
def world() -> World:
    return World(seed=42, n_devices=200, now=lambda: NOW)


@pytest.fixture(scope="module")
def terminal_ids(world: World) -> list[str]:
    return [world.aovx_terminal_id(d.imei) for d in world.devices
            if d.firmware_platform == "aovx" and d.activation_date <= NOW.date()]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOW)


@pytest.fixture
def server(world: World, clock: ManualClock) -> Iterator[SandboxServer[aovx.AovxKnobs]]:
    with aovx.make_server(world, now=clock) as running:
        yield running


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def make_client(server: SandboxServer, **options: object) -> AovxClient:
    settings: dict[str, object] = dict(
        sleep=Sleeps(),
        retry=RetryPolicy(max_attempts=4, backoff=Backoff(base_s=1.0, max_s=8.0, jitter=0.0)),
    )
    settings.update(options)
    return AovxClient(server.base_url + aovx.API_PREFIX, aovx.TOKEN, **settings)


def truth(world: World, start: datetime, end: datetime, at: datetime = NOW, imeis: set[str] | None = None) -> list[str]:
    return [a.attempt_id for a in world.ota_attempts_updated("aovx", start, end, at)
            if imeis is None or a.imei in imeis]


# --------------------------------------------------------------------------- reading


def test_ota_reports_are_the_worlds_attempts_with_paging_and_batching(server, world, terminal_ids) -> None:
    with make_client(server, page_size=7, ids_per_call=10) as client:
        rows = client.ota_reports(terminal_ids, *WINDOW)
    expected = world.ota_attempts_updated("aovx", *WINDOW, NOW)
    assert [r["mark"] for r in rows] == [a.attempt_id for a in expected]
    assert [r["status"] for r in rows] == [a.status_at(NOW) for a in expected]
    # calls: every id batch pages until its total is read (an empty batch still costs one call)
    batches = [terminal_ids[i:i + 10] for i in range(0, len(terminal_ids), 10)]
    per_batch = []
    for batch in batches:
        imeis = {world.imei_for_terminal(t) for t in batch}
        per_batch.append(max(1, -(-len(truth(world, *WINDOW, imeis=imeis)) // 7)))
    assert server.count(aovx.OTA_REPORT) == client.stats.calls == sum(per_batch)
    assert len(batches) > 3


def test_rows_come_back_as_sent(server, world, terminal_ids) -> None:
    with make_client(server) as client:
        rows = client.ota_reports(terminal_ids[:5], *WINDOW)
    assert rows
    for row in rows:
        assert isinstance(row["upgradeInfo"], str)   # the lead parses it
        assert set(json.loads(row["upgradeInfo"])) == {"TYPE", "MODE", "PROTOCOL", "VERSION", "URL"}
        assert isinstance(row["dateTimestamp"], int) and row["dateTime"].endswith("Z")
    assert [r["dateTimestamp"] for r in rows] == sorted(r["dateTimestamp"] for r in rows)


def test_an_empty_window_or_no_ids_costs_nothing_and_bad_arguments_are_refused(server, terminal_ids) -> None:
    with make_client(server) as client:
        assert client.ota_reports([], *WINDOW) == []
        assert client.ota_reports(terminal_ids, WINDOW[0], WINDOW[0]) == []
        assert server.count() == 0
        with pytest.raises(ValueError, match="before"):
            client.ota_reports(terminal_ids, WINDOW[1], WINDOW[0])
        with pytest.raises(ValueError, match="whole seconds"):
            client.ota_reports(terminal_ids, WINDOW[0] + timedelta(milliseconds=5), WINDOW[1])
    with pytest.raises(ValueError, match="page_size"):
        make_client(server, page_size=101)


def test_aware_datetimes_are_converted_to_utc(server, world, terminal_ids) -> None:
    plus_two = timezone(timedelta(hours=2))
    start, end = datetime(2026, 11, 16, 2, tzinfo=plus_two), datetime(2026, 11, 17, 2, tzinfo=plus_two)
    with make_client(server) as client:
        rows = client.ota_reports(terminal_ids, start, end)
    assert [r["mark"] for r in rows] == truth(world, datetime(2026, 11, 16), datetime(2026, 11, 17))
    assert rows


def test_status_progression_when_the_clock_moves(server, world, clock, terminal_ids) -> None:
    attempt = next(a for a in world.ota_attempts_updated("aovx", *WINDOW, NOW) if [s for _, s in a.history] == [1, 2, 3])
    terminal = world.aovx_terminal_id(attempt.imei)
    window = (datetime.combine(attempt.sent_at.date(), datetime.min.time()),
              datetime.combine(attempt.sent_at.date(), datetime.min.time()) + timedelta(days=2))
    seen = []
    with make_client(server) as client:
        for moment, _ in attempt.history:
            clock.set(moment + timedelta(seconds=1))
            row = next(r for r in client.ota_reports([terminal], *window) if r["mark"] == attempt.attempt_id)
            seen.append(row["status"])
    assert seen == [1, 2, 3]


def test_terminals_pages_the_sandbox_list(server, world, terminal_ids) -> None:
    with make_client(server, page_size=9) as client:
        rows = client.terminals()
    assert sorted(r["terminalId"] for r in rows) == sorted(terminal_ids)
    assert all(world.aovx_terminal_id(r["imei"]) == r["terminalId"] for r in rows)
    assert server.count(aovx.TERMINAL_LIST) == -(-len(terminal_ids) // 9)


def test_a_live_rollout_moving_rows_between_pages_is_read_again(world, terminal_ids) -> None:
    """Each request advances the clock 10 minutes during a rollout morning, one row per page:
    a row read on page 1 progresses, moves behind the later pages (same total) and pushes the
    row after it out of sight. The client sees fewer distinct rows than `total` and reads again.
    """
    # the rollout's busiest morning before NOW, from the World
    sent_on = Counter(a.sent_at.date() for d in world.devices if d.firmware_platform == "aovx"
                      for a in world.ota_attempts(d.imei) if a.sent_at < NOW)
    busiest = max(sent_on, key=lambda day: sent_on[day])
    start_at = datetime.combine(busiest, time(10))
    ticks = iter(range(10_000))

    def moving_clock() -> datetime:
        return start_at + timedelta(minutes=10 * next(ticks))

    window = (datetime.combine(busiest, time()) - timedelta(days=1), datetime.combine(busiest, time()) + timedelta(days=1))
    with aovx.make_server(world, now=moving_clock) as server, make_client(server, page_size=1) as client:
        rows = client.ota_reports(terminal_ids, *window)
        calls = server.count(aovx.OTA_REPORT)
    end_at = start_at + timedelta(minutes=10 * (calls + 1))
    marks = [r["mark"] for r in rows]
    assert len(marks) == len(set(marks))
    # an attempt whose last update was in the window and did not move while paging is never lost
    steady = [a.attempt_id for a in world.ota_attempts_updated("aovx", *window, start_at)
              if a.last_update_at(start_at) == a.last_update_at(end_at)]
    assert steady and set(steady) <= set(marks)
    # the first pass alone would have been one call per row
    assert calls > len(truth(world, *window, at=start_at))


# --------------------------------------------------------------------------- errors


def test_a_401_with_http_200_is_an_auth_error_and_not_retried(server, terminal_ids, caplog) -> None:
    server.knobs.set(token="rotated")
    sleeps = Sleeps()
    client = make_client(server, sleep=sleeps)
    with caplog.at_level(logging.DEBUG), pytest.raises(VendorAuthError) as info:
        client.ota_reports(terminal_ids, *WINDOW)
    error = info.value
    assert error.vendor == "aovx" and error.method == "queryTerminalOtaReport" and error.code == "401"
    assert "token rejected" in str(error) and aovx.TOKEN not in str(error)
    assert aovx.TOKEN not in caplog.text
    assert server.count() == 1 and sleeps == []
    with pytest.raises(VendorAuthError):
        client.terminals()


def test_code_500_is_retried_then_raised(server, world, terminal_ids) -> None:
    sleeps = Sleeps()
    server.knobs.set(force_500_next=2)
    with make_client(server, sleep=sleeps) as client:
        rows = client.ota_reports(terminal_ids[:5], *WINDOW)
    imeis = {world.imei_for_terminal(t) for t in terminal_ids[:5]}
    assert [r["mark"] for r in rows] == truth(world, *WINDOW, imeis=imeis)
    assert sleeps == [1.0, 2.0] and server.count(vendor_code=500) == 2

    server.knobs.set(force_500_next=10)
    with make_client(server, sleep=Sleeps()) as client, pytest.raises(VendorAPIError) as info:
        client.ota_reports(terminal_ids[:5], *WINDOW)
    assert info.value.code == "500" and "gave up after 4 attempts" in str(info.value)
    assert not isinstance(info.value, VendorAuthError)


def test_ids_beyond_a_server_limit_need_smaller_batches(server, world, terminal_ids) -> None:
    server.knobs.set(max_ids=10)
    with make_client(server, ids_per_call=10) as client:
        rows = client.ota_reports(terminal_ids, *WINDOW)
    assert [r["mark"] for r in rows] == truth(world, *WINDOW)
    with make_client(server, ids_per_call=50, retry=RetryPolicy(max_attempts=1)) as client:
        with pytest.raises(VendorAPIError, match="at most 10 ids"):
            client.ota_reports(terminal_ids, *WINDOW)


def test_broken_bodies_and_503s_are_retried(server, world, terminal_ids) -> None:
    server.knobs.set(fail_next_5xx=1, truncated_body_next=1)
    with make_client(server) as client:
        rows = client.ota_reports(terminal_ids, *WINDOW)
    assert [r["mark"] for r in rows] == truth(world, *WINDOW)
    assert client.stats.retries == 2


def test_another_token_header_can_be_configured(server, world, terminal_ids) -> None:
    with make_client(server, token_header="token", token_prefix="") as client:
        rows = client.ota_reports(terminal_ids[:5], *WINDOW)
    assert rows
    with make_client(server, token_header="X-Token", token_prefix="") as client, pytest.raises(VendorAuthError):
        client.ota_reports(terminal_ids[:5], *WINDOW)


def test_a_real_deployment_without_the_list_fails_clearly(world, terminal_ids) -> None:
    with aovx.make_server(world) as server:
        client = AovxClient(server.base_url + "/elsewhere", aovx.TOKEN, sleep=Sleeps())
        with pytest.raises(VendorAPIError, match="no such endpoint") as info:
            client.terminals()
        assert info.value.status == 404 and server.count() == 1
