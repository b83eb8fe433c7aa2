"""The benchmark's sandbox host counts the calls its rate limit refuses (issue 17's 429 column).

The peer benchmark compares the 429s each client draws from the same sandbox, counted on the
sandbox's side. Checked here over real HTTP: every HTTP 429 a client receives is in the count, and
nothing else is.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fleet_pipeline.sandbox import navixy

REPO = Path(__file__).resolve().parents[2]


def _status(url: str, key: str = navixy.API_KEY) -> int:
    """The HTTP status of one Navixy call made with ``key``."""
    request = urllib.request.Request(url, data=b"{}", method="POST", headers={
        "Content-Type": "application/json", "Authorization": f"NVX {key}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as refused:
        return refused.code


def test_sandbox_host_counts_every_429_it_answers(tmp_path: Path) -> None:
    count_file = tmp_path / "throttled.txt"
    host = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.sandbox_host", "--devices", "5", "--vendors", "navixy",
         "--throttle-count-file", str(count_file)],
        cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        line = host.stdout.readline() if host.stdout else ""
        assert line, "the sandbox host did not start"
        url = json.loads(line)["navixy"] + navixy.API_PREFIX + "/tracker/list"
        assert count_file.read_text() == "0"
        statuses: list[int] = []
        # Navixy allows 50 calls a second: bursts of 120 are refused in part, however slow the machine.
        with ThreadPoolExecutor(max_workers=8) as pool:
            while statuses.count(429) == 0 and len(statuses) < 1200:
                statuses += list(pool.map(_status, [url] * 120))
        assert set(statuses) <= {200, 429}
        assert statuses.count(429) > 0
        deadline = time.monotonic() + 5
        while int(count_file.read_text()) != statuses.count(429) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert int(count_file.read_text()) == statuses.count(429)
    finally:
        if host.stdin:
            host.stdin.close()
        host.wait(timeout=30)
