"""TelestoClient against the Telesto sandbox over loopback HTTP.

The heart of the file is the hourly budget: clients in this process and in child processes share
one ledger in ``cache_dir`` and stop short of Telesto's 100 requests/hour instead of earning the
15-minute block; the server's request log is the judge. Time never passes for real: the sandbox
clock, the server's rate window and the clients' ledger clock are one ``ManualClock``, and
``sleep`` moves it.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from fleet_pipeline.ingest.http import (
    Backoff,
    HttpSession,
    RetryPolicy,
    VendorAPIError,
    VendorAuthError,
    VendorRateLimitError,
)
from fleet_pipeline.sandbox import telesto as sandbox_telesto
from fleet_pipeline.sandbox.server import ManualClock, SandboxServer
from fleet_pipeline.sandbox.world import World
from fleet_pipeline.sources.telesto.client import (
    PRODUCTS,
    SubscriptionRequired,
    TelestoClient,
    TelestoRateLimited,
)
from fleet_pipeline_tests.clock_sleep import ClockSleep

PROJECT_ROOT = Path(__file__).resolve().parents[3]
START = datetime(2026, 11, 20, 12, 0, 0)
KEY = sandbox_telesto.API_KEY


@pytest.fixture(scope="module")
def world() -> World:
    return World(seed=42, n_devices=60, now=lambda: START)



@dataclass
class Sandbox:
    server: SandboxServer[sandbox_telesto.TelestoKnobs]
    clock: ManualClock
    world: World
    cache_dir: Path

    @property
    def base_url(self) -> str:
        return self.server.base_url

    @property
    def knobs(self) -> sandbox_telesto.TelestoKnobs:
        return self.server.knobs

    def client(self, **overrides: object) -> TelestoClient:
        options: dict[str, object] = dict(
            cache_dir=self.cache_dir,
            now=self.clock,
            sleep=ClockSleep(self.clock),
            retry=RetryPolicy(max_attempts=4, backoff=Backoff(base_s=1.0, max_s=8.0, jitter=0.0)),
        )
        options.update(overrides)
        api_key = str(options.pop("api_key", KEY))
        return TelestoClient(self.base_url, api_key, **options)  # type: ignore[arg-type]


@pytest.fixture
def sandbox(world: World, tmp_path: Path) -> Iterator[Sandbox]:
    clock = ManualClock(START)
    with sandbox_telesto.make_server(world, now=clock) as server:
        yield Sandbox(server=server, clock=clock, world=world, cache_dir=tmp_path / "cache")


def calls_until_refused(client: TelestoClient, limit: int = 200) -> tuple[int, TelestoRateLimited]:
    for made in range(limit):
        try:
            client.products()
        except TelestoRateLimited as refused:
            return made, refused
    raise AssertionError(f"the client never refused after {limit} calls")


# -- data ------------------------------------------------------------------------------------
def test_products_are_the_worlds_stock_on_the_clocks_day(sandbox: Sandbox) -> None:
    with sandbox.client() as client:
        rows = client.products()
    today = sandbox.clock().date()
    expected = {p.product_id: sandbox.world.stock_on(p.product_id, today)
                for p in sandbox.world.products if p.created <= sandbox.clock()}
    # "" for the product whose stock the back office does not count
    assert {row["id"]: int(row["stock_onhand"]) if row["stock_onhand"] else None for row in rows} == expected
    # Raw vendor rows: strings as sent, "" for nulls, created without a time zone.
    assert all(isinstance(v, str) for row in rows for v in row.values())
    assert any(row["ean_upc"] == "" for row in rows)
    assert all(len(row["created"]) == 19 for row in rows)
    assert sandbox.server.count(PRODUCTS) == 1 and client.stats.calls == 1
    assert client.stats.per_method == {PRODUCTS: 1}
    assert client.budget_remaining() == 89


def test_the_key_is_sent_bare_in_the_authorization_header(sandbox: Sandbox) -> None:
    client = sandbox.client()
    sent = []
    client.http._session.hooks["response"].append(lambda r, *a, **k: sent.append(r.request))
    client.products()
    assert len(sent) == 1
    assert sent[0].headers["Authorization"] == KEY
    assert KEY not in sent[0].url


def test_a_base_url_ending_in_v2_is_accepted(sandbox: Sandbox) -> None:
    client = sandbox.client()
    other = TelestoClient(sandbox.base_url + "/v2/", KEY, cache_dir=sandbox.cache_dir,
                          now=sandbox.clock)
    assert other.products() == client.products()
    # Same origin, same ledger: both calls came out of one budget.
    assert client.budget_remaining() == other.budget_remaining() == 88


# -- THE budget test: stop short of the limit, across instances and processes ---------------
_CHILD = r"""
import sys
import time
from datetime import datetime
from pathlib import Path
from fleet_pipeline.sources.telesto.client import TelestoClient, TelestoRateLimited

base_url, cache_dir, key, now, gate = sys.argv[1:6]
frozen = datetime.fromisoformat(now)
client = TelestoClient(base_url, key, cache_dir=Path(cache_dir), now=lambda: frozen)
Path(gate, "ready-" + sys.argv[6]).touch()
while not Path(gate, "go").exists():
    time.sleep(0.001)
made = 0
while True:
    try:
        client.products()
    except TelestoRateLimited as refused:
        print(made)
        print(refused)
        break
    made += 1
"""


def run_children(sandbox: Sandbox, now: datetime, n: int, gate: Path) -> list[tuple[int, str]]:
    """Start ``n`` processes that call until their client refuses, released together."""
    gate.mkdir()
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    args = [sandbox.base_url, str(sandbox.cache_dir), KEY, now.isoformat(), str(gate)]
    children = [subprocess.Popen([sys.executable, "-c", _CHILD, *args, str(k)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 env=env, cwd=PROJECT_ROOT) for k in range(n)]
    try:
        while len(list(gate.glob("ready-*"))) < n:
            if any(child.poll() is not None for child in children):
                break
            time.sleep(0.01)
        (gate / "go").touch()
        outputs = [child.communicate(timeout=120) for child in children]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
    assert [child.returncode for child in children] == [0] * n, outputs
    for out, err in outputs:
        assert KEY not in out and KEY not in err
    results = []
    for out, _ in outputs:
        made, message = out.strip().split("\n", 1)
        results.append((int(made), message))
    return results


def test_a_shared_persistent_budget_stops_short_of_the_hourly_limit(
        sandbox: Sandbox, tmp_path: Path) -> None:
    # 12:00 -- one client spends 40 of the machine's 90 calls.
    first = sandbox.client()
    assert [len(first.products()) > 0 for _ in range(40)] == [True] * 40
    # 12:10 -- a second instance (another step, another run) sees what is left: 50.
    sandbox.clock.set(START + timedelta(minutes=10))
    second = sandbox.client()
    assert second.budget_remaining() == 50
    for _ in range(30):
        second.products()
    # 12:20 -- two other processes race for the last 20 calls and get exactly 20 between them.
    at = START + timedelta(minutes=20)
    sandbox.clock.set(at)
    results = run_children(sandbox, at, 2, tmp_path / "gate")
    assert sum(made for made, _ in results) == 20
    for _, message in results:
        assert message.startswith("telesto GET /v2/products: hourly budget of 90 calls used; "
                                  "next call allowed at 13:00 UTC")
    # Every instance now refuses -- without sending anything.
    sent_before = len(sandbox.server.requests())
    for client in (first, second, sandbox.client()):
        with pytest.raises(TelestoRateLimited) as refused:
            client.products()
        assert isinstance(refused.value, VendorRateLimitError)
        assert refused.value.retry_at == START + timedelta(hours=1)
        assert "hourly budget of 90 calls used; next call allowed at 13:00 UTC" in str(refused.value)
    assert len(sandbox.server.requests()) == sent_before
    # The judge: 90 requests in the hour, all served, no 429, no block.
    assert sandbox.server.count(PRODUCTS) == 90
    assert sandbox.server.count(PRODUCTS, status=200) == 90
    assert sandbox.server.count(status=429) == 0
    assert sandbox.server.app.blocked_until() is None
    # 13:00 -- the 12:00 calls leave the window: 40 calls are allowed again, then 30 at 13:10.
    sandbox.clock.set(START + timedelta(hours=1))
    assert first.budget_remaining() == 40
    made, refused = calls_until_refused(second)
    assert made == 40
    assert refused.retry_at == START + timedelta(hours=1, minutes=10)
    assert "next call allowed at 13:10 UTC (in 10 min)" in str(refused)
    sandbox.clock.set(START + timedelta(hours=1, minutes=10))
    assert first.products()
    assert sandbox.server.count(status=429) == 0
    assert sandbox.server.count(PRODUCTS, status=200) == 131


def test_the_budget_refuses_with_the_time_rounded_up_to_the_minute(sandbox: Sandbox) -> None:
    sandbox.clock.set(START + timedelta(seconds=20))
    client = sandbox.client(hourly_budget=1)
    client.products()
    sandbox.clock.advance(minutes=5)
    with pytest.raises(TelestoRateLimited) as refused:
        client.products()
    # The slot frees at 13:00:20: "13:00" would be too early, so the message says 13:01.
    assert refused.value.retry_at == START + timedelta(hours=1, seconds=20)
    assert "hourly budget of 1 calls used; next call allowed at 13:01 UTC" in str(refused.value)
    assert client.stats.failures == 1 and client.stats.calls == 1


# -- the server's own 429 ---------------------------------------------------------------------
def test_a_server_429_is_not_retried_and_keeps_every_client_away_for_the_block(
        sandbox: Sandbox) -> None:
    # Something else behind the same IP (a colleague's script) used the vendor's 100 calls.
    neighbour = TelestoClient(sandbox.base_url, KEY, cache_dir=sandbox.cache_dir / "other",
                              now=sandbox.clock, hourly_budget=100)
    for _ in range(100):
        neighbour.products()
    client = sandbox.client()
    with pytest.raises(TelestoRateLimited) as refused:
        client.products()
    error = refused.value
    assert error.status == 429 and error.code == "TOO_MANY_REQUESTS"
    assert error.retry_at == START + timedelta(minutes=15)
    assert "next call allowed at 12:15 UTC" in str(error)
    assert sandbox.server.count(status=429) == 1        # not retried
    assert client.stats.calls == 1 and client.stats.retries == 0
    # Another instance on the machine does not knock on the blocked door either.
    with pytest.raises(TelestoRateLimited) as again:
        sandbox.client().products()
    assert "blocked this IP (429); next call allowed at 12:15 UTC" in str(again.value)
    assert sandbox.server.count(status=429) == 1
    assert client.budget_remaining() == 0
    # After the block the server serves again, and so does the client.
    sandbox.clock.set(START + timedelta(minutes=15))
    assert client.products()
    assert sandbox.server.count(status=429) == 1


def test_a_retry_after_header_sets_the_time_to_come_back(sandbox: Sandbox) -> None:
    sandbox.knobs.set(force_429_next=1, retry_after_header=True)
    # force_429_next carries no block, hence no Retry-After: the 15-minute default applies.
    with pytest.raises(TelestoRateLimited) as refused:
        sandbox.client().products()
    assert refused.value.retry_at == START + timedelta(minutes=15)
    # A real block announced with Retry-After: 600 seconds left -> back at 12:25.
    sandbox.knobs.set(rate_limit_per_hour=1)
    sandbox.clock.set(START + timedelta(minutes=15))
    client = sandbox.client()
    client.products()
    sandbox.clock.advance(minutes=5)
    with pytest.raises(TelestoRateLimited):
        client.products()   # this 429 starts a 15-minute block at 12:20
    sandbox.clock.advance(minutes=5)
    (client.budget.block_path).unlink()   # forget the block to ask the server again
    with pytest.raises(TelestoRateLimited) as told:
        client.products()
    assert told.value.retry_at == START + timedelta(minutes=35)
    assert "next call allowed at 12:35 UTC" in str(told.value)


# -- 5xx, bad bodies and errors ----------------------------------------------------------------
def test_5xx_are_retried_with_backoff_and_every_attempt_is_paid_for(sandbox: Sandbox) -> None:
    sandbox.knobs.set(force_500_next=2, fail_next_5xx=1)
    sleep = ClockSleep(sandbox.clock)
    client = sandbox.client(sleep=sleep)
    assert client.products()
    assert sandbox.server.count(status=503) == 1
    assert sandbox.server.count(PRODUCTS, status=500, vendor_code="SERVER_ERROR") == 2
    assert sandbox.server.count(PRODUCTS, status=200) == 1
    assert sleep.waits == [1.0, 2.0, 4.0]
    assert client.stats.calls == 4 and client.stats.retries == 3
    assert client.budget_remaining() == 86


def test_5xx_give_up_after_the_policys_attempts(sandbox: Sandbox) -> None:
    sandbox.knobs.set(force_500_next=10)
    client = sandbox.client(retry=RetryPolicy(max_attempts=3, backoff=Backoff(jitter=0.0)))
    with pytest.raises(VendorAPIError) as failed:
        client.products()
    assert not isinstance(failed.value, VendorRateLimitError)
    assert str(failed.value).startswith("telesto GET /v2/products: server answered 500")
    assert "gave up after 3 attempts" in str(failed.value)
    assert sandbox.server.count(PRODUCTS) == 3


def test_a_non_json_body_is_retried(sandbox: Sandbox) -> None:
    sandbox.knobs.set(malformed_json_next=1)
    client = sandbox.client()
    assert client.products()
    assert sandbox.server.count(PRODUCTS) == 2 and client.budget_remaining() == 88


def test_a_wrong_key_is_an_auth_error_not_retried(sandbox: Sandbox) -> None:
    with pytest.raises(VendorAuthError) as rejected:
        sandbox.client(api_key="not-the-key-3141").products()
    assert rejected.value.status == 401 and rejected.value.code == "UNAUTHORIZED"
    assert str(rejected.value).startswith("telesto GET /v2/products: API key missing or rejected")
    assert "not-the-key-3141" not in str(rejected.value)
    assert sandbox.server.count(PRODUCTS) == 1


def test_no_pro_subscription_says_so(sandbox: Sandbox) -> None:
    sandbox.knobs.set(no_pro_subscription=True)
    with pytest.raises(SubscriptionRequired) as refused:
        sandbox.client().products()
    assert refused.value.status == 403
    assert "no Pro subscription" in str(refused.value)
    assert sandbox.server.count(PRODUCTS) == 1


def test_a_wrong_base_url_is_a_not_found_error(sandbox: Sandbox) -> None:
    client = TelestoClient(sandbox.base_url + "/api", KEY, cache_dir=sandbox.cache_dir,
                           now=sandbox.clock)
    with pytest.raises(VendorAPIError) as missing:
        client.products()
    assert missing.value.status == 404 and missing.value.code == "NOT_FOUND"


def test_the_key_never_reaches_logs_or_errors(sandbox: Sandbox,
                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    errors: list[str] = []
    sandbox.knobs.set(force_500_next=1)
    client = sandbox.client()
    client.products()                                   # a logged retry
    sandbox.knobs.set(force_500_next=10)
    with pytest.raises(VendorAPIError) as failed:
        client.products()
    errors.append(str(failed.value))
    sandbox.knobs.set(force_500_next=0, force_429_next=1)
    with pytest.raises(TelestoRateLimited) as throttled:
        client.products()
    errors.append(str(throttled.value))
    assert "retrying" in caplog.text                    # the retry was logged...
    for text in (caplog.text, *errors):
        assert KEY not in text                          # ...without the key
    # A key that the server echoes back would be redacted too.
    assert client.secrets.redact(f"Authorization: {KEY}") == "Authorization: ***"


# -- construction ------------------------------------------------------------------------------
@pytest.mark.parametrize("budget", [0, 101])
def test_a_budget_outside_the_vendors_limit_is_refused(tmp_path: Path, budget: int) -> None:
    with pytest.raises(ValueError, match="hourly_budget"):
        TelestoClient("https://telesto.app", KEY, cache_dir=tmp_path, hourly_budget=budget)


def test_a_bearer_key_is_refused_without_echoing_it(tmp_path: Path) -> None:
    with pytest.raises(ValueError) as refused:
        TelestoClient("https://telesto.app", f"Bearer {KEY}", cache_dir=tmp_path)
    assert KEY not in str(refused.value)


def test_a_session_that_retries_429_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="429"):
        TelestoClient("https://telesto.app", KEY, cache_dir=tmp_path,
                      http=HttpSession("telesto"))
