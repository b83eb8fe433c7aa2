"""``python -m benchmarks.typing_bench``: CPU per row of ``typed_frame`` against parsing the same JSON.

Rows come from the sandbox through the real clients (Tracksolid ``track.list``, Navixy
``track/read``, as the assets extend them with ``imei``/``tracker_id``), repeated up to ``--rows``.
Figures are process CPU (all threads) per row, best of three, and the peak of Python allocations
(polars' own buffers are not traced). Never part of the test suite.
"""

from __future__ import annotations

import argparse
import gc
import json
import time
import tracemalloc
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from fleet_pipeline.ingest.records import Col, typed_frame
from fleet_pipeline.sandbox import navixy as sandbox_navixy
from fleet_pipeline.sandbox import tracksolid as sandbox_tracksolid
from fleet_pipeline.sandbox.server import ManualClock
from fleet_pipeline.sandbox.world import World
from fleet_pipeline.sources.navixy import schemas as navixy_schemas
from fleet_pipeline.sources.navixy.client import NavixyClient
from fleet_pipeline.sources.navixy.errors import TrackerBlocked
from fleet_pipeline.sources.tracksolid import schemas as tracksolid_schemas
from fleet_pipeline.sources.tracksolid.client import TracksolidClient

NOW = datetime(2026, 11, 20, 12, 0, 0)
DAY = (datetime(2026, 11, 19), datetime(2026, 11, 20))

Rows = list[dict[str, Any]]


def tracksolid_rows(world: World, cache: Path) -> Rows:
    clock = ManualClock(NOW)
    with sandbox_tracksolid.make_server(world, now=clock) as server:
        server.knobs.set(rate_limit_calls=1_000_000)
        with TracksolidClient(server.base_url, **sandbox_tracksolid.CREDENTIALS, token_cache_dir=cache,
                              now=clock, max_calls_per_s=None) as client:
            return [{**point, "imei": d.imei} for d in world.devices_on("tracksolid")
                    for point in client.track_points(d.imei, DAY[0], DAY[1] - timedelta(seconds=1))]


def navixy_rows(world: World, cache: Path) -> Rows:
    clock = ManualClock(NOW)
    with sandbox_navixy.make_server(world, now=clock) as server:
        server.knobs.set(rate_limit_per_s=1_000_000)
        with NavixyClient(server.base_url + sandbox_navixy.API_PREFIX, api_key=sandbox_navixy.API_KEY,
                          cache_dir=cache, now=clock, max_calls_per_s=None) as client:
            imeis = {int(t["id"]): (t.get("source") or {}).get("device_id") for t in client.trackers()}
            rows: Rows = []
            for tracker_id, imei in imeis.items():
                try:
                    points = client.track_points(tracker_id, *DAY).rows
                except TrackerBlocked:  # the sandbox blocks some trackers on purpose
                    continue
                rows.extend({**row, "tracker_id": tracker_id, "imei": imei} for row in points)
            return rows


def cpu_per_row(work: Callable[[], object], rows: int) -> float:
    best = float("inf")
    for _ in range(3):
        gc.collect()
        started = time.process_time()
        work()
        best = min(best, time.process_time() - started)
    return best / rows * 1e6


def peak_mib(work: Callable[[], object]) -> float:
    gc.collect()
    tracemalloc.start()
    try:
        work()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def measure(name: str, sample: Rows, columns: list[Col], n: int) -> None:
    rows = (sample * (n // max(len(sample), 1) + 1))[:n]
    body = json.dumps(rows, default=str)
    typing_us = cpu_per_row(lambda: typed_frame(rows, columns), n)
    parsing_us = cpu_per_row(lambda: json.loads(body), n)
    print(f"{name:24s} {n:>8,d} rows  typed_frame {typing_us:6.2f} us/row "
          f"(json.loads {parsing_us:5.2f} us/row, ratio {typing_us / parsing_us:4.1f}x)  "
          f"peak Python allocations {peak_mib(lambda: typed_frame(rows, columns)):6.1f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--devices", type=int, default=40, help="sandbox fleet the sample rows come from")
    args = parser.parse_args()
    world = World(seed=42, n_devices=args.devices, now=lambda: NOW)
    with TemporaryDirectory() as scratch:
        measure("tracksolid track.list", tracksolid_rows(world, Path(scratch) / "tracksolid"),
                tracksolid_schemas.TRACK_POINT_COLUMNS, args.rows)
        measure("navixy track/read", navixy_rows(world, Path(scratch) / "navixy"),
                navixy_schemas.TRACK_POINT_COLUMNS, args.rows)


if __name__ == "__main__":
    main()
