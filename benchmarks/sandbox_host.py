"""Vendor sandboxes in a process of their own, for the duration of one benchmark size.

The sandbox generates every device-day it serves (milliseconds of CPU per device-day), which is
the vendor's cost, not ours; running it in a separate process keeps that CPU and memory out of the
stage figures (each stage is a process of its own too). The orchestrator starts one such process
for Tracksolid, one for Navixy and one for the three small vendors: the vendors are served side by
side, as the pipeline's vendor steps run side by side, and no one Python process (one core, under
its GIL) serves them all. A real vendor would run on its own machines.

    python -m benchmarks.sandbox_host --devices 1000 --latency-ms 200 --warm-day 2026-11-27 --vendors navixy

``--warm-day`` generates the day, and the days either side (windows start a second early and trips
may end after midnight), of every device of the vendors served, before the servers listen: a real
vendor reads days it has stored, while the sandbox builds each on first request (about 20 ms of
CPU per device-day), which would otherwise land in whichever asset asks first and be measured as
the pipeline's.

prints one JSON line ``{"navixy": "http://127.0.0.1:PORT", ...}`` once every server listens,
then serves until stdin closes or SIGTERM arrives.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from datetime import date, timedelta
from typing import Any

from fleet_pipeline.sandbox.world import World
from fleet_pipeline.sources.registry import VENDORS

VENDOR_MODULES: dict[str, Any] = {spec.name: spec.sandbox_module() for spec in VENDORS}


# The platforms whose devices send the positions, trips and events a vendor serves by day.
PLATFORM_OF = {"tracksolid": "tracksolid", "navixy": "navixy"}


def start_servers(world: World, latency_s: float, vendors: list[str]) -> dict[str, Any]:
    """The servers of ``vendors`` over ``world``, started, with ``latency_s`` added to each request."""
    servers = {}
    for vendor in vendors:
        server = VENDOR_MODULES[vendor].make_server(world)
        server.knobs.set(latency_s=latency_s)
        servers[vendor] = server.start()
    return servers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sandbox_host")
    parser.add_argument("--devices", type=int, required=True)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--warm-day", type=date.fromisoformat, default=None,
                        help="generate the day (YYYY-MM-DD) of every device of the vendors served, before serving")
    parser.add_argument("--vendors", default=",".join(VENDOR_MODULES),
                        help="the vendors to serve, comma separated (default: all five)")
    args = parser.parse_args(argv)
    vendors = [v for v in args.vendors.split(",") if v]
    unknown = sorted(set(vendors) - set(VENDOR_MODULES))
    if unknown:
        parser.error(f"unknown vendor(s) {', '.join(unknown)}; known: {', '.join(VENDOR_MODULES)}")

    world = World(seed=args.seed, n_devices=args.devices)
    if args.warm_day:
        platforms = {PLATFORM_OF[v] for v in vendors if v in PLATFORM_OF}
        for offset in (-1, 0, 1):
            for device in world.devices:
                if device.platform in platforms:
                    world.day(device.imei, args.warm_day + timedelta(days=offset))
    servers = start_servers(world, args.latency_ms / 1000.0, vendors)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    # Closing our stdin (the parent exiting, even by a crash) also stops us: no orphaned servers.
    threading.Thread(target=lambda: (sys.stdin.read(), stopped.set()), daemon=True).start()
    print(json.dumps({vendor: server.base_url for vendor, server in servers.items()}), flush=True)
    try:
        stopped.wait()
    except KeyboardInterrupt:
        pass
    for server in servers.values():
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
