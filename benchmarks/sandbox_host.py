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

``--throttle-count-file PATH`` keeps in PATH the number of calls the vendors answered with their
rate-limit error (Navixy: HTTP 429, code 15) since the start, counted where they are drawn, the
same way whichever client makes the calls (the peer benchmark reads it before and after a stage).
``--call-log-file PATH`` logs every rate-limited call with the caller it counts against (the
account of a Navixy API key) and whether it was refused (``benchmarks.call_log``; the accounts
benchmark reads it per stage).
``--warm-accounts ID,...`` warms only the devices of those World accounts (the accounts a
benchmark extracts, in a World sized so that they are large: the others are never asked for).

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
from pathlib import Path
from typing import Any

from benchmarks.call_log import CALLERS, CallLog
from fleet_pipeline.sandbox.world import World
from fleet_pipeline.sources.registry import VENDORS

VENDOR_MODULES: dict[str, Any] = {spec.name: spec.sandbox_module() for spec in VENDORS}


# The platforms whose devices send the positions, trips and events a vendor serves by day.
PLATFORM_OF = {"tracksolid": "tracksolid", "navixy": "navixy"}


def start_servers(world: World, latency_s: float, vendors: list[str],
                  rate_clocks: dict[str, Any] | None = None) -> dict[str, Any]:
    """The servers of ``vendors`` over ``world``, started, with ``latency_s`` added to each request
    (and the rate clock ``rate_clocks`` gives a vendor, if any)."""
    servers = {}
    for vendor in vendors:
        clock = (rate_clocks or {}).get(vendor)
        server = VENDOR_MODULES[vendor].make_server(world, **({"rate_clock": clock} if clock else {}))
        server.knobs.set(latency_s=latency_s)
        servers[vendor] = server.start()
    return servers


class ThrottleCounter:
    """Counts the answers of the vendors' ``throttle`` hooks that refused a call, into a file."""

    def __init__(self, path: Path) -> None:
        self.path, self.count, self._lock = path, 0, threading.Lock()
        self._write()

    def wrap(self, app: Any) -> None:
        throttle = app.throttle

        def counted(request: Any) -> Any:
            refused = throttle(request)
            if refused is not None:
                with self._lock:
                    self.count += 1
                    self._write()
            return refused

        app.throttle = counted

    def _write(self) -> None:
        partial = self.path.with_suffix(".partial")
        partial.write_text(str(self.count))
        partial.replace(self.path)  # a reader never sees a half-written number


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sandbox_host")
    parser.add_argument("--devices", type=int, required=True)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--warm-day", type=date.fromisoformat, default=None,
                        help="generate the day (YYYY-MM-DD) of every device of the vendors served, before serving")
    parser.add_argument("--vendors", default=",".join(VENDOR_MODULES),
                        help="the vendors to serve, comma separated (default: all five)")
    parser.add_argument("--throttle-count-file", type=Path, default=None,
                        help="keep the number of calls refused by the vendors' rate limits in this file")
    parser.add_argument("--call-log-file", type=Path, default=None,
                        help="log every rate-limited call, its caller and whether it was refused, in this file")
    parser.add_argument("--warm-accounts", default="",
                        help="with --warm-day, warm only the devices of these World accounts (comma separated)")
    args = parser.parse_args(argv)
    vendors = [v for v in args.vendors.split(",") if v]
    unknown = sorted(set(vendors) - set(VENDOR_MODULES))
    if unknown:
        parser.error(f"unknown vendor(s) {', '.join(unknown)}; known: {', '.join(VENDOR_MODULES)}")

    world = World(seed=args.seed, n_devices=args.devices)
    if args.warm_day:
        platforms = {PLATFORM_OF[v] for v in vendors if v in PLATFORM_OF}
        accounts = {a for a in args.warm_accounts.split(",") if a}
        for offset in (-1, 0, 1):
            for device in world.devices:
                if device.platform in platforms and (not accounts or device.account_id in accounts):
                    world.day(device.imei, args.warm_day + timedelta(days=offset))
    call_log = CallLog(args.call_log_file) if args.call_log_file else None
    logged = [vendor for vendor in vendors if vendor in CALLERS] if call_log else []
    servers = start_servers(world, args.latency_ms / 1000.0, vendors,
                            {vendor: call_log.rate_clock for vendor in logged} if call_log else None)
    if args.throttle_count_file:
        counter = ThrottleCounter(args.throttle_count_file)
        for server in servers.values():
            counter.wrap(server.app)
    for vendor in logged:
        call_log.wrap(servers[vendor].app, CALLERS[vendor])
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
    if call_log:
        call_log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
