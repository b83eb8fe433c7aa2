"""A vendor budget shared by several processes through Redis (FLEET_SHARED_STATE), counted by the vendor.

Three processes, each with its own cache folder (as on three machines), call one Navixy sandbox
whose documented limit is set to 20 calls a second (SPEC.md: more answers HTTP 429, code 15). Each
client paces itself at 18 a second, the safety margin the Navixy client keeps below the vendor's
limit (45 of 50). The sandbox's own request log is the judge: with the ledger in Redis no 1-second
window holds more than 20 calls and nothing is throttled; with the files alone (the same processes,
FLEET_SHARED_STATE unset) each process keeps to 18 on its own and together they exceed it.
The login's session hash is shared the same way: one ``user/auth`` for the three processes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from fleet_pipeline.ingest.shared_state import window_limiter
from fleet_pipeline.sandbox import navixy
from fleet_pipeline.services import throwaway_redis

VENDOR_LIMIT_PER_S = 20
CLIENT_PACE_PER_S = 18
PROCESSES = 3
CALLS_EACH = 60

# One process of the three: a Navixy client of the sandbox, logged in with a login and password
# (the session hash is cached), pacing itself, making CALLS_EACH calls as fast as it is allowed.
CALLER = """
import sys
import time
from pathlib import Path
from fleet_pipeline.sources.navixy.client import NavixyClient
base_url, cache_dir, calls, pace, login, password, ready = sys.argv[1:8]
client = NavixyClient(base_url, login=login, password=password, cache_dir=Path(cache_dir),
                      max_calls_per_s=int(pace), concurrency=1)
Path(ready).touch()
while not Path(ready + ".go").exists():
    time.sleep(0.005)
for _ in range(int(calls)):
    client.call("tracker/list", {})
"""


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with throwaway_redis() as server:
        yield server.url()


def _run_three_callers(base_url: str, tmp_path: Path, shared_state: str | None) -> list[int]:
    """Start the three callers, release them together, and return their exit codes."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
    if shared_state:
        env["FLEET_SHARED_STATE"] = shared_state
    processes, readies = [], []
    for index in range(PROCESSES):
        ready = tmp_path / f"ready-{index}"
        readies.append(ready)
        processes.append(subprocess.Popen(
            [sys.executable, "-c", CALLER, base_url, str(tmp_path / f"machine-{index}"), str(CALLS_EACH),
             str(CLIENT_PACE_PER_S), navixy.LOGIN, navixy.PASSWORD, str(ready)], env=env))
    deadline = time.monotonic() + 120
    for ready in readies:  # all three started (imports done) before any calls: they compete
        while not ready.exists():
            assert time.monotonic() < deadline, "the caller processes did not start within 120 s"
            assert all(p.poll() is None for p in processes), "a caller process died while starting"
            time.sleep(0.05)
    for ready in readies:
        Path(str(ready) + ".go").touch()
    return [process.wait(timeout=240) for process in processes]


def _busiest_second(times: list[datetime]) -> int:
    """The most requests the server logged in any window of 1 s (sliding)."""
    times = sorted(times)
    most, start = 0, 0
    for end, at in enumerate(times):
        while (at - times[start]).total_seconds() >= 1.0:
            start += 1
        most = max(most, end - start + 1)
    return most


@pytest.fixture
def navixy_server(world):
    with navixy.make_server(world) as server:
        server.knobs.rate_limit_per_s = VENDOR_LIMIT_PER_S
        yield server


def test_three_processes_sharing_a_budget_through_redis_never_exceed_it(navixy_server, redis_url, tmp_path):
    exits = _run_three_callers(navixy_server.base_url + navixy.API_PREFIX, tmp_path, redis_url)

    assert exits == [0] * PROCESSES, "a caller process failed (see its output above)"

    data_calls = [r for r in navixy_server.requests() if r.vendor_method == "tracker/list"]
    assert len(data_calls) == PROCESSES * CALLS_EACH
    assert navixy_server.count(vendor_code=15) == 0, "the vendor throttled a call"
    assert _busiest_second([r.at for r in navixy_server.requests()]) <= VENDOR_LIMIT_PER_S
    # One login for three processes: the session hash came from Redis to the other two.
    assert navixy_server.count(vendor_method="user/auth") == 1


def test_without_the_shared_store_the_same_processes_exceed_the_budget(navixy_server, tmp_path):
    """The control: files in three folders are three budgets (three machines), so the vendor sees
    about three times the pace and throttles."""
    _run_three_callers(navixy_server.base_url + navixy.API_PREFIX, tmp_path, None)

    assert _busiest_second([r.at for r in navixy_server.requests()]) > VENDOR_LIMIT_PER_S
    assert navixy_server.count(vendor_method="user/auth") == PROCESSES  # a login per machine


class FakeClock:
    """A clock that only moves when the limiter sleeps (deterministic waits)."""

    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.mark.parametrize("evenly", [False, True])
def test_the_redis_ledger_admits_exactly_what_the_file_ledger_admits(redis_url, tmp_path, evenly):
    """Same rule, other store: 5 calls a second asked 12 times at once, then after a pause of 0.4 s,
    wait the same seconds before each call with either ledger."""
    waits = {}
    for store in ("file", "redis"):
        clock = FakeClock(1_800_000_000.0)
        with pytest.MonkeyPatch.context() as patch:
            if store == "redis":
                patch.setenv("FLEET_SHARED_STATE", redis_url)
            else:
                patch.delenv("FLEET_SHARED_STATE", raising=False)
            ledger = window_limiter(tmp_path / f"vendor-rate-{store}-{evenly}.json", 5, 1.0, evenly=evenly,
                                    clock=clock, sleep=clock.sleep)
        assert type(ledger).__name__ == ("RedisWindowLimiter" if store == "redis" else "FileWindowLimiter")
        seen = [round(ledger.acquire(), 6) for _ in range(12)]
        clock.sleep(0.4)
        seen += [round(ledger.acquire(), 6) for _ in range(3)]
        waits[store] = (seen, ledger.remaining(), round(ledger.try_acquire(), 6))
    assert waits["redis"] == waits["file"]
    assert sum(waits["file"][0]) > 1.0  # the budget made the callers wait: the comparison means something
