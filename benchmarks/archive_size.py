"""The raw archive's size per device-day, per vendor and table (issue 19).

    .venv/bin/python -m benchmarks archive --devices 200 [--days 1]

Loads every vendor's snapshots and ``--days`` complete UTC days (ending 5 days back, like the rest
of the benchmark) from the embedded sandboxes over ``World(seed=42, n_devices=N)`` into a fresh
DuckDB file in one process (``dagster.materialize``), then reads the archive those loads wrote:
compressed bytes per vendor and table, and per device-day (bytes / devices / days; a snapshot's
bytes count once per day, as the daily snapshot job takes one a day), beside the raw rows and the
answers archived. Per device-day twice: over the whole fleet, and over the vendor's own devices in
the World (the devices on its platform; Telesto's stock is the whole fleet's). Nothing is kept:
the folder is temporary.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
from dagster import DagsterInstance, materialize

from fleet_pipeline import settings
from fleet_pipeline.automation.backfill import RANGE_END_TAG, RANGE_START_TAG
from fleet_pipeline.ingest.archive import Archive
from fleet_pipeline.ingest.warehouse import WarehouseResource
from fleet_pipeline.sandbox.world import World
from fleet_pipeline.sandbox.world.world import PLATFORMS
from fleet_pipeline.sources.registry import VENDORS


def vendor_devices(world: World, vendor: str) -> int:
    """The World's devices a vendor reports on: tracked on its platform, or updated by it."""
    if vendor in PLATFORMS:
        return len(world.devices_on(vendor))
    # The World names Teltonika's firmware platform "teltonika_fota".
    updated = sum((d.firmware_platform or "").split("_")[0] == vendor for d in world.devices)
    return updated or len(world.devices)


def measure(devices: int, days: int, folder: Path) -> list[dict]:
    database = folder / "warehouse.duckdb"
    last = datetime.now(timezone.utc).date() - timedelta(days=5)
    first = last - timedelta(days=days - 1)
    figures = []
    world = World(seed=42, n_devices=devices)
    for spec in VENDORS:
        own = vendor_devices(world, spec.name)
        resources = {"duckdb": WarehouseResource(database=str(database)),
                     spec.resource_key: spec.resource_class()(sandbox_devices=devices, cache_dir=str(folder / "cache"))}
        assets = spec.load_assets()
        started = time.monotonic()
        for partitioned in (False, True):
            selection = [a for a in assets if (a.partitions_def is not None) == partitioned]
            if not selection:
                continue
            tags = {RANGE_START_TAG: first.isoformat(), RANGE_END_TAG: last.isoformat()} if partitioned and days > 1 else {}
            result = materialize(selection, resources=resources, instance=DagsterInstance.ephemeral(), tags=tags,
                                 partition_key=first.isoformat() if partitioned and days == 1 else None,
                                 raise_on_error=False)
            if not result.success:
                raise SystemExit(f"{spec.name}: the load failed (run {result.run_id})")
        print(f"{spec.name}: loaded in {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
        archive = Archive(settings.archive_root(database=str(database)))
        with duckdb.connect(str(database), read_only=True) as conn:
            for step in archive.steps(spec.name):
                rows = conn.execute(f"select count(*) from raw_{spec.name}.{step.table}").fetchone()[0]
                answers = archive.read(step.path).answers
                body_bytes = sum(len(answer.body.encode()) for answer in answers)
                partitioned = any(a.key.path[-1] == step.table and a.partitions_def is not None for a in assets)
                per_day = step.size / days if partitioned else step.size
                figures.append({"vendor": spec.name, "table": step.table, "snapshot": not partitioned,
                                "bytes": step.size, "answers": len(answers), "body_bytes": body_bytes, "rows": rows,
                                "own_devices": own, "bytes_per_device_day": per_day / devices,
                                "bytes_per_own_device_day": per_day / own})
    return figures


def report(figures: list[dict], devices: int, days: int) -> str:
    lines = [f"raw archive, {devices} devices, {days} day(s), World seed 42 (zstd Parquet)", "",
             "| vendor | table | archived bytes | answers | their bodies, uncompressed | raw rows "
             "| bytes per fleet device-day |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for f in figures:
        lines.append(f"| {f['vendor']} | {f['table']}{' (snapshot)' if f['snapshot'] else ''} | {f['bytes']:,} | "
                     f"{f['answers']:,} | {f['body_bytes']:,} | {f['rows']:,} | {f['bytes_per_device_day']:,.0f} |")
    lines += ["", "| vendor | its devices | bytes a day, all its tables | per fleet device-day | per own device-day |",
              "|---|---:|---:|---:|---:|"]
    total = 0.0
    for vendor in dict.fromkeys(f["vendor"] for f in figures):
        mine = [f for f in figures if f["vendor"] == vendor]
        per_fleet = sum(f["bytes_per_device_day"] for f in mine)
        total += per_fleet
        lines.append(f"| {vendor} | {mine[0]['own_devices']} | {per_fleet * devices:,.0f} | {per_fleet:,.0f} | "
                     f"{sum(f['bytes_per_own_device_day'] for f in mine):,.0f} |")
    lines.append(f"| all five | {devices} | {total * devices:,.0f} | {total:,.0f} | |")
    compressed, raw = sum(f["bytes"] for f in figures), sum(f["body_bytes"] for f in figures)
    lines += ["", f"{compressed:,} bytes archived for {raw:,} bytes of answer bodies ({raw / compressed:.1f}x)"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks archive", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--days", type=int, default=1)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fleet-archive-size-") as folder:
        figures = measure(args.devices, args.days, Path(folder))
    print(report(figures, args.devices, args.days))
    return 0
