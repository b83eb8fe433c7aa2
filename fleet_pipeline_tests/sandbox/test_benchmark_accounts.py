"""Issue 18's accounts benchmark: the sandbox counts each account's calls, and the benchmark's rows.

The sandbox host's call log (``benchmarks.call_log``) is checked over real HTTP against what the
clients received: each API key's calls and 429s are counted against its World account, and the
busiest second is what was admitted. Navixy limits per key AND per client IP (its documents:
50 a second each), so keys calling from one address share one window; the sandbox does the same.
Then the whole subcommand at a tiny size: each account's trackers are the ones the World gives
that account, and both modes load the same rows.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from benchmarks.call_log import EVERY_CALLER, busiest_window, per_caller, read_calls
from fleet_pipeline.sandbox import navixy
from fleet_pipeline.sandbox.world import World
from fleet_pipeline_tests.sandbox.test_benchmark_throttle_count import _status

REPO = Path(__file__).resolve().parents[2]
# Two Navixy sub-accounts of the 60-device World (fleet_pipeline_tests/sources/test_accounts.py).
ACCOUNT_A, ACCOUNT_B = "fleetco-nvx-oullins", "fleetco-nvx-oullins-rental"
LIMIT_PER_S = 50  # Navixy's documented limit per user and per IP (docs/vendor-apis/FIELD-NOTES.md)


@pytest.fixture
def host(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    calls = tmp_path / "calls.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.sandbox_host", "--devices", "60", "--vendors", "navixy",
         "--call-log-file", str(calls)], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline() if process.stdout else ""
        assert line, "the sandbox host did not start"
        yield json.loads(line)["navixy"] + navixy.API_PREFIX + "/tracker/list", calls
    finally:
        if process.stdin:
            process.stdin.close()
        process.wait(timeout=30)


def _logged(calls: Path, since: float, expected: int) -> list[tuple[float, str, bool]]:
    """The log's calls since ``since``, once it holds ``expected`` of them (it is written every 0.2 s)."""
    deadline = time.monotonic() + 10
    while True:
        logged = read_calls(calls, since, time.time() + 60)
        if len(logged) >= expected or time.monotonic() > deadline:
            return logged
        time.sleep(0.1)


def test_each_accounts_calls_and_429s_are_counted_against_its_key(host) -> None:
    url, calls = host
    key_a, key_b = navixy.account_api_key(ACCOUNT_A), navixy.account_api_key(ACCOUNT_B)
    since = time.time()
    statuses_a: list[int] = []
    # Bursts of 120 from one key: refused in part whatever the machine's speed.
    with ThreadPoolExecutor(max_workers=8) as pool:
        while statuses_a.count(429) == 0 and len(statuses_a) < 1200:
            statuses_a += list(pool.map(lambda _: _status(url, key_a), range(120)))
    time.sleep(1.1)  # the window empties: the other key's calls are judged alone
    statuses_b = [_status(url, key_b) for _ in range(5)]
    assert set(statuses_a) <= {200, 429} and statuses_a.count(429) > 0
    assert statuses_b == [200] * 5

    counted = per_caller(_logged(calls, since, len(statuses_a) + len(statuses_b)))
    assert set(counted) == {ACCOUNT_A, ACCOUNT_B, EVERY_CALLER}
    assert counted[ACCOUNT_A]["calls"] == statuses_a.count(200)
    assert counted[ACCOUNT_A]["throttled_429"] == statuses_a.count(429)
    assert counted[ACCOUNT_B] == {"calls": 5, "throttled_429": 0, "busiest_1s": 5}
    # The sandbox admitted at most its limit in any second, and A's bursts reached it.
    assert counted[ACCOUNT_A]["busiest_1s"] == LIMIT_PER_S
    assert counted[EVERY_CALLER]["calls"] == statuses_a.count(200) + 5


def test_two_keys_calling_from_one_address_share_its_window(host) -> None:
    """Each key sends 40 calls at once, under its own limit of 50: together they pass the IP's 50,
    and the excess is refused, counted against whichever key it came from."""
    url, calls = host
    keys = [navixy.account_api_key(ACCOUNT_A), navixy.account_api_key(ACCOUNT_B)]
    for _ in range(10):
        since = time.time()
        # Eight at a time, as the other tests (more overflows the server's listen queue), alternating keys.
        with ThreadPoolExecutor(max_workers=8) as pool:
            statuses = list(pool.map(lambda key: (key, _status(url, key)), keys * 40))
        if any(status == 429 for _, status in statuses):
            break
        time.sleep(1.1)
    refused = sum(1 for _, status in statuses if status == 429)
    assert refused > 0, "80 calls of two keys in bursts were never refused"
    counted = per_caller(_logged(calls, since, len(statuses)))
    assert counted[EVERY_CALLER]["throttled_429"] == refused
    assert counted[EVERY_CALLER]["busiest_1s"] <= LIMIT_PER_S
    assert all(counted[account]["calls"] + counted[account]["throttled_429"] == 40 for account in (ACCOUNT_A, ACCOUNT_B))


def test_the_busiest_window_is_sliding() -> None:
    assert busiest_window([]) == 0
    # [0.5, 1.5) holds three of them; no window that starts at a call holds four.
    assert busiest_window([0.0, 0.5, 0.9, 1.2, 1.5, 2.6]) == 3
    assert busiest_window([0.0, 0.999, 1.0]) == 2


@pytest.mark.timeout(1500)
def test_the_subcommand_loads_each_accounts_devices_in_both_modes(tmp_path: Path) -> None:
    out = tmp_path / "accounts.json"
    done = subprocess.run([sys.executable, "-m", "benchmarks", "accounts", "--quick", "--devices", "20", "--accounts", "2",
                           "--workers", "1", "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "throughput vs accounts x workers" in done.stdout
    result = json.loads(out.read_text())

    world = World(seed=42, n_devices=result["world_devices"])
    # The two largest Navixy sub-accounts of the World, and the trackers it lists for each.
    navixy_subs = [a.account_id for a in world.accounts if a.platform == "navixy" and a.parent_id is not None]
    by_size = sorted(navixy_subs, key=lambda a: (-len(world.devices_of_account(a, at=world.now())), a))[:2]
    expected = {a: len(world.devices_of_account(a, at=world.now())) for a in by_size}
    assert {a["world_account"]: a["trackers"] for a in result["accounts"]} == expected
    assert all(10 <= count <= 40 for count in expected.values()), expected
    names = {a["world_account"]: a["name"] for a in result["accounts"]}

    assert [(s["mode"], s["accounts"], s["workers"]) for s in result["stages"]] == [
        ("embedded", 2, None), ("distributed", 2, 1)]
    for stage in result["stages"]:
        assert stage["success"], stage["errors"]
        for key in ("wall_s", "cpu_s", "peak_rss_mib", "max_process_peak_rss_mib", "services_cpu_s", "calls", "throughput"):
            assert key in stage, key
        for world_account, trackers in expected.items():
            rows = stage["rows"][names[world_account]]
            assert rows["trackers"] == trackers
            assert rows["track_points"] > 0 and rows["trips"] > 0
            assert stage["calls"][names[world_account]]["throttled_429"] == 0
            assert 0 < stage["calls"][names[world_account]]["busiest_1s"] <= LIMIT_PER_S
        assert stage["throughput"]["calls"] == stage["calls"][EVERY_CALLER]["calls"]
    embedded, distributed = result["stages"]
    assert embedded["rows"] == distributed["rows"]
    assert set(distributed["services_cpu_s"]) == {"postgres", "redis", "sandbox"}
    executed = {step for steps in distributed["steps_by_worker"].values() for step in steps}
    assert {f"raw_navixy__{name}__{table}" for name in names.values()
            for table in ("trackers", "trips", "track_points", "events")} <= executed
    assert result["rows_problems"] == [] and result["over_budget"] == []
