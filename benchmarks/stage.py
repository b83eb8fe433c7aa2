"""One benchmark stage in a fresh process: one vendor's assets for one day, or the dbt build.

A process per stage gives every stage a clean peak RSS (``ru_maxrss`` of this process and, for
dbt, of its child) and clean CPU counters. The orchestrator (``benchmarks.run``) writes a spec
file, runs ``python -m benchmarks.stage SPEC OUT`` and reads the result file back.

Vendor stages call ``dagster.materialize`` in-process with the vendor's resource pointed at the
running sandbox and a ``WarehouseResource`` on the benchmark's DuckDB file — the same code path as
the tests and as a run of the ``all_snapshots``/``all_daily`` jobs. The dbt stage runs ``dbt build``
with the day as ``--vars {min_date, max_date}`` the way Dagster passes a partition window.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

# Imports are part of a process's start, not of the stage: measure what comes after them.
_STARTED = time.perf_counter()

from benchmarks.probes import Probes  # noqa: E402
from fleet_pipeline.sources.registry import BY_NAME, VENDORS  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DBT_PROJECT = REPO / "dbt_models"
BIN = Path(sys.executable).parent

# Dagster's per-event console log costs time and drowns the table; warnings still show.
QUIET_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}

ASSET_MODULES = {spec.name: spec.assets_module for spec in VENDORS}


def _own_peak_rss_mib() -> float:
    """This process's peak RSS since its exec (VmHWM). ``ru_maxrss`` would not do: Linux carries
    over the high-water mark of the forked copy of the parent, so every stage started after the
    orchestrator had grown (building the many-days cache) would report the orchestrator's size."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _usage() -> dict[str, float]:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "user_s": own.ru_utime, "sys_s": own.ru_stime,
        "children_user_s": children.ru_utime, "children_sys_s": children.ru_stime,
        # Linux reports kilobytes. A child (dbt) is forked from this small process, so its figure
        # is dbt's own up to this process's size.
        "peak_rss_mib": _own_peak_rss_mib(), "children_peak_rss_mib": children.ru_maxrss / 1024,
    }


def _vendor_resource(vendor: str, base_url: str, cache_dir: str) -> Any:
    """The vendor's resource talking to the benchmark's sandbox (as the sandbox would be in prod)."""
    from fleet_pipeline.sandbox import navixy, telesto, teltonika, tracksolid

    common = {"cache_dir": cache_dir}
    if vendor == "tracksolid":
        from fleet_pipeline.sources.tracksolid.resources import TracksolidResource

        return TracksolidResource(base_url=base_url + tracksolid.ROUTE_PATH, app_key=tracksolid.APP_KEY,
                                  app_secret=tracksolid.APP_SECRET, user_id=tracksolid.USER_ID,
                                  user_password=tracksolid.USER_PASSWORD, **common)
    if vendor == "navixy":
        from fleet_pipeline.sources.navixy.resources import NavixyResource

        return NavixyResource(base_url=base_url + navixy.API_PREFIX, api_key=navixy.API_KEY, **common)
    if vendor == "teltonika":
        from fleet_pipeline.sources.teltonika.resources import TeltonikaResource

        return TeltonikaResource(base_url=base_url, api_token=teltonika.API_TOKEN, **common)
    if vendor == "aovx":
        # Live mode knows terminal ids but not their IMEIs; the sandbox mode lists both. Run the
        # sandbox-mode code path against the benchmark's sandbox process instead of an in-step one.
        return _remote_sandbox_resource(vendor, base_url, cache_dir)
    if vendor == "telesto":
        from fleet_pipeline.sources.telesto.resources import TelestoResource

        return TelestoResource(base_url=base_url, api_key=telesto.API_KEY, **common)
    # Any other vendor of the registry: its sandbox-mode code path, against the benchmark's sandbox.
    return _remote_sandbox_resource(vendor, base_url, cache_dir)


class _RemoteSandbox:
    """What a vendor resource needs of its sandbox when the sandbox runs in another process."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def stop(self) -> None:
        """The sandbox process belongs to the orchestrator."""


def _remote_sandbox_resource(vendor: str, base_url: str, cache_dir: str) -> Any:
    class RemoteSandboxResource(BY_NAME[vendor].resource_class()):  # type: ignore[misc]
        remote_sandbox_url: str = ""

        def setup_for_execution(self, context: Any) -> None:
            self._sandbox = _RemoteSandbox(self.remote_sandbox_url)

    return RemoteSandboxResource(remote_sandbox_url=base_url, cache_dir=cache_dir)


def _materialized(result: Any) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for event in result.get_asset_materialization_events():
        materialization = event.event_specific_data.materialization
        metadata = {k: getattr(v, "value", v) for k, v in materialization.metadata.items()}
        keep = ("dagster/row_count", "rejected_rows", "duration_s", "api_calls", "api_retries", "api_failures",
                "throttle_wait_s_summed_over_calls", "backoff_wait_s_summed_over_calls", "bytes_received",
                "calls_per_method", "warehouse_wait_s", "warehouse_held_s")
        found[".".join(materialization.asset_key.path)] = {k: metadata.get(k) for k in keep}
    return found


def _first_error(result: Any) -> str | None:
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data and event.step_failure_data.error:
            return event.step_failure_data.error.message.strip()[-1500:]
    return None


def run_vendor(spec: dict[str, Any]) -> dict[str, Any]:
    from dagster import DagsterInstance, materialize

    from fleet_pipeline.ingest.warehouse import WarehouseResource

    vendor = spec["vendor"]
    probes = Probes(spec["bare_db"])
    probes.install([ASSET_MODULES[vendor]])
    assets = BY_NAME[vendor].load_assets()
    vendor_resource = _vendor_resource(vendor, spec["base_url"], spec["cache_dir"])
    resources = {vendor: vendor_resource, "duckdb": WarehouseResource(database=spec["warehouse"])}
    if vendor == "tracksolid":
        # The day's push tables, as all_daily loads them (the staging models read them): nothing
        # is pushed during a benchmark, so they are loaded empty from an empty landing folder.
        from fleet_pipeline.sources.tracksolid.push_assets import PushLandingResource, push_assets

        assets = [*assets, *push_assets]
        landing = Path(spec["warehouse"]).with_name("push_landing")
        landing.mkdir(exist_ok=True)
        resources["tracksolid_push"] = PushLandingResource(landing_dir=str(landing))
    partitioned = [a for a in assets if a.partitions_def is not None]
    snapshots = [a for a in assets if a.partitions_def is None]

    before, started = _usage(), time.perf_counter()
    runs = []
    # Snapshots then the day's events: what the all_snapshots and all_daily jobs run.
    for selection, partition in ((snapshots, None), (partitioned, spec["day"])):
        if not selection:
            continue
        result = materialize(selection, partition_key=partition, resources=resources,
                             instance=DagsterInstance.ephemeral(), raise_on_error=False,
                             run_config=QUIET_RUN_CONFIG)
        runs.append({"success": result.success, "error": _first_error(result),
                     "assets": _materialized(result)})
    wall = time.perf_counter() - started
    after = _usage()
    probes.close()
    return {
        "rows_per_imei": _rows_per_imei(spec["warehouse"]),
        "wall_s": round(wall - probes.overhead_s, 3),
        "usage_before": before,
        "usage_after": after,
        "success": all(r["success"] for r in runs),
        "errors": [r["error"] for r in runs if r["error"]],
        "assets": {k: v for r in runs for k, v in r["assets"].items()},
        "probes": probes.as_dict(),
    }


def _rows_per_imei(warehouse: str) -> dict[str, dict[str, int]]:
    """Rows per IMEI of the tables whose minimum calls depend on them (``limits.PAGED_PER_IMEI``,
    ``limits.FILTERED_PER_IMEI``)."""
    import duckdb

    from benchmarks.limits import FILTERED_PER_IMEI, PAGED_PER_IMEI
    from fleet_pipeline.ingest.warehouse import exclusive_access

    found: dict[str, dict[str, int]] = {}
    # The other vendors' stages may be writing the file: read it in a turn of our own.
    with exclusive_access(warehouse, "benchmark row counts"), duckdb.connect(warehouse, read_only=True) as conn:
        existing = {f"{s}.{t}" for s, t in conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables").fetchall()}
        for table in PAGED_PER_IMEI:
            if table in existing:
                found[table] = dict(conn.execute(f"SELECT imei, count(*) FROM {table} GROUP BY imei").fetchall())
        for name, (table, where) in FILTERED_PER_IMEI.items():
            if table in existing:
                found[name] = dict(conn.execute(f"SELECT imei, count(*) FROM {table} WHERE {where} GROUP BY imei").fetchall())
    return found


def run_dbt(spec: dict[str, Any]) -> dict[str, Any]:
    scratch = Path(spec["scratch_dir"])
    env = {**os.environ, "DBT_PROFILES_DIR": str(DBT_PROJECT), "FLEET_DUCKDB_PATH": spec["warehouse"],
           "DBT_SEND_ANONYMOUS_USAGE_STATS": "False"}
    variables = json.dumps({"min_date": spec["min_date"], "max_date": spec["max_date"]})
    command = [str(BIN / "dbt"), "build", "--vars", variables, "--target-path", str(scratch / "target"),
               "--log-path", str(scratch / "logs"), "--project-dir", str(DBT_PROJECT)]
    # Dagster loads a parsed manifest with the code location; dbt then re-parses only what changed.
    # Parse once into the scratch target first, so the build below is timed the way it runs there.
    parse = [str(BIN / "dbt"), "parse", "--target-path", str(scratch / "target"), "--log-path",
             str(scratch / "logs"), "--project-dir", str(DBT_PROJECT)]
    parse_started = time.perf_counter()
    subprocess.run(parse, env=env, cwd=DBT_PROJECT, capture_output=True, text=True, check=False)
    parse_s = time.perf_counter() - parse_started
    before, started = _usage(), time.perf_counter()
    done = subprocess.run(command, env=env, cwd=DBT_PROJECT, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    after = _usage()
    nodes = []
    run_results = scratch / "target" / "run_results.json"
    if run_results.exists():
        for node in json.loads(run_results.read_text()).get("results", []):
            nodes.append({"node": node["unique_id"], "status": node["status"],
                          "seconds": round(node.get("execution_time") or 0.0, 3)})
    nodes.sort(key=lambda n: -n["seconds"])
    failed = [n["node"] for n in nodes if n["status"] not in ("success", "pass", "warn", "skipped")]
    return {
        "wall_s": round(wall, 3),
        "parse_s": round(parse_s, 3),
        "usage_before": before,
        "usage_after": after,
        "success": done.returncode == 0,
        "errors": [] if done.returncode == 0 else [(done.stdout + done.stderr)[-1500:]],
        "failed_nodes": failed,
        "node_count": len(nodes),
        "slowest_nodes": nodes[:8],
        "node_seconds_total": round(sum(n["seconds"] for n in nodes), 3),
    }


def main(argv: list[str]) -> int:
    spec_path, out_path = Path(argv[0]), Path(argv[1])
    spec = json.loads(spec_path.read_text())
    startup_s = time.perf_counter() - _STARTED
    result = run_vendor(spec) if spec["kind"] == "vendor" else run_dbt(spec)
    result["startup_s"] = round(startup_s, 3)
    out_path.write_text(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
