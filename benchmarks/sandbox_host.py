"""The five vendor sandboxes in a process of their own, for the duration of one benchmark size.

The sandbox generates every device-day it serves (milliseconds of CPU per device-day), which is
the vendor's cost, not ours; running it in a separate process keeps that CPU and memory out of the
stage figures (each stage is a process of its own too). On 2 cores the two run side by side, as a
real vendor would run on its own machines.

    python -m benchmarks.sandbox_host --devices 1000 --latency-ms 200 --warm-day 2026-11-27

``--warm-day`` generates every device's day, and the days either side (windows start a second
early and trips may end after midnight), before the servers listen: a real vendor reads days it
has stored, while the sandbox builds each on first request (about 20 ms of CPU per device-day),
which would otherwise land in whichever asset asks first and be measured as the pipeline's.

prints one JSON line ``{"tracksolid": "http://127.0.0.1:PORT", ...}`` once every server listens,
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

from fleet_pipeline.sandbox import aovx, navixy, telesto, teltonika, tracksolid
from fleet_pipeline.sandbox.world import World

VENDOR_MODULES: dict[str, Any] = {
    "tracksolid": tracksolid,
    "navixy": navixy,
    "teltonika": teltonika,
    "aovx": aovx,
    "telesto": telesto,
}


def start_servers(world: World, latency_s: float) -> dict[str, Any]:
    """Every vendor's server over ``world``, started, with ``latency_s`` added to each request."""
    servers = {}
    for vendor, module in VENDOR_MODULES.items():
        server = module.make_server(world)
        server.knobs.set(latency_s=latency_s)
        servers[vendor] = server.start()
    return servers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sandbox_host")
    parser.add_argument("--devices", type=int, required=True)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--warm-day", type=date.fromisoformat, default=None,
                        help="generate every device's day (YYYY-MM-DD) before serving")
    args = parser.parse_args(argv)

    world = World(seed=args.seed, n_devices=args.devices)
    if args.warm_day:
        for offset in (-1, 0, 1):
            for device in world.devices:
                world.day(device.imei, args.warm_day + timedelta(days=offset))
    servers = start_servers(world, args.latency_ms / 1000.0)
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
