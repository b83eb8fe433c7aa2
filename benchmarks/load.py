"""What every process that loads the code location pays before any work: importing the definitions.

The UI's code server, a reload of it, the run worker of a launched run and each step process of a
multiprocess run start a fresh Python and import ``fleet_pipeline.definitions``. Each of several
fresh processes imports it once and reports its own CPU (user + system, from ``getrusage``, the
interpreter's start-up included); the wall is timed from outside, start to exit. The first process
also makes the dbt manifest and the asset specs kept beside it current if ``dbt_models/`` changed
(that one is reported apart: it is paid once per change, not per process).

    python -m benchmarks.load [--processes 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# Printed by the child: its own CPU seconds once the definitions are imported.
CHILD = """
import json, resource
import fleet_pipeline.definitions
usage = resource.getrusage(resource.RUSAGE_SELF)
print("LOADED " + json.dumps({"cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_mib": usage.ru_maxrss / 1024}))
"""


def _load_once() -> dict[str, float]:
    env = {**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "False"}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", CHILD], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600, check=False)
    wall = time.perf_counter() - started
    lines = [line for line in done.stdout.splitlines() if line.startswith("LOADED ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"importing fleet_pipeline.definitions failed (exit {done.returncode}): "
                           f"{done.stderr.strip()[-2000:]}")
    return {"wall_s": round(wall, 2), **{k: round(v, 2) for k, v in json.loads(lines[0][7:]).items()}}


def bench_definitions_load(processes: int = 5) -> dict[str, Any]:
    """The first load (makes the manifest and specs current if needed), then the median of
    ``processes`` fresh processes that find them current: what each step process pays."""
    first = _load_once()
    loads = [_load_once() for _ in range(processes)]
    return {
        "first": first,
        "processes": processes,
        "median_cpu_s": round(statistics.median(load["cpu_s"] for load in loads), 2),
        "median_wall_s": round(statistics.median(load["wall_s"] for load in loads), 2),
        "peak_rss_mib": round(max(load["peak_rss_mib"] for load in loads)),
        "loads": loads,
        "load_avg": os.getloadavg(),
    }


def describe(figures: dict[str, Any]) -> str:
    first = figures["first"]
    return (f"definitions load (each code server, run worker and step process): median of "
            f"{figures['processes']} fresh processes {figures['median_cpu_s']:.2f} s CPU, "
            f"{figures['median_wall_s']:.2f} s wall, peak {figures['peak_rss_mib']} MiB "
            f"(first load {first['cpu_s']:.2f} s CPU / {first['wall_s']:.2f} s wall; load average "
            f"{figures['load_avg'][0]:.1f})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.load", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", type=int, default=5)
    args = parser.parse_args(argv)
    print(describe(bench_definitions_load(args.processes)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
