"""Run the benchmark: every (fleet size, sandbox latency), then the 30-day models; table + JSON.

    python -m benchmarks [--devices 200,1000] [--latency-ms 0,200] [--day YYYY-MM-DD]
                         [--models-devices 1000 --models-days 30 | --no-models] [--one-vendor-at-a-time]

For each size and latency: the sandbox in three processes (Tracksolid, Navixy, the three small
vendors; all over World(seed, N), the latency added to every request), then one process per
vendor, all five at once as the source jobs run them (each vendor's snapshots, then the day's
events: extract, validate, load into one fresh DuckDB file, taking turns on it for the writes),
then ``dbt build`` of that day. Then the models over many days (``benchmarks.models``). First of
all, what each process that loads the code location pays (``benchmarks.load``). Results:
a table on stdout and ``benchmarks/results/<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from benchmarks import load, models, report
from benchmarks.limits import Fleet
from fleet_pipeline.sandbox.world import World
from fleet_pipeline.settings import VENDOR_ENV_PREFIXES
from fleet_pipeline.sources.registry import VENDORS as REGISTRY

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "benchmarks" / "results"
VENDORS = tuple(spec.name for spec in REGISTRY)
# Late uploads arrive up to 3 days after the fix: a day 5 days back is complete.
DEFAULT_DAY_OFFSET = 5


def _env() -> dict[str, str]:
    # Vendor credentials would not change what the stages talk to, but keep the children clean.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(VENDOR_ENV_PREFIXES)}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["DBT_SEND_ANONYMOUS_USAGE_STATS"] = "False"
    return env


def _proc_cpu_s(pid: int) -> float | None:
    """User+system CPU of a running process (Linux /proc), to report the sandbox's own cost."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def _proc_peak_rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        return None
    return None


# One sandbox process per heavy vendor (thousands of calls a day), one for every other vendor of the
# registry (a few calls each).
HEAVY_VENDORS = ("tracksolid", "navixy")
SANDBOX_PROCESSES = (*((name,) for name in HEAVY_VENDORS),
                     tuple(spec.name for spec in REGISTRY if spec.name not in HEAVY_VENDORS))


class Sandbox:
    """The sandbox processes of one benchmark size; their stdin is our lifeline to them."""

    def __init__(self, devices: int, latency_ms: float, seed: int, day: date,
                 groups: tuple[tuple[str, ...], ...] = SANDBOX_PROCESSES, extra_args: tuple[str, ...] = ()) -> None:
        self.processes: list[subprocess.Popen[str]] = []
        self.urls: dict[str, str] = {}
        self.groups = groups
        try:
            # Started together: each generates its vendors' days (the warm-up) before it listens.
            for vendors in groups:
                self.processes.append(subprocess.Popen(
                    [sys.executable, "-m", "benchmarks.sandbox_host", "--devices", str(devices),
                     "--latency-ms", str(latency_ms), "--seed", str(seed), "--warm-day", day.isoformat(),
                     "--vendors", ",".join(vendors), *extra_args],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=REPO, env=_env(), text=True,
                ))
            for process, vendors in zip(self.processes, groups):
                line = process.stdout.readline() if process.stdout else ""
                if not line:
                    raise RuntimeError(f"the sandbox process of {', '.join(vendors)} did not start "
                                       "(see its stderr above)")
                self.urls.update(json.loads(line))
        except BaseException:
            self.stop()
            raise

    def usage(self) -> dict[str, float | None]:
        """CPU seconds and peak RSS of the sandbox processes, summed (they run side by side)."""
        cpu = [_proc_cpu_s(p.pid) for p in self.processes]
        rss = [_proc_peak_rss_mib(p.pid) for p in self.processes]
        return {"cpu_s": None if None in cpu else round(sum(cpu), 2),
                "peak_rss_mib": None if None in rss else round(sum(rss), 1),
                "cpu_s_by_process": dict(zip(["+".join(v) for v in self.groups], cpu))}

    def stop(self) -> None:
        for process in self.processes:
            if process.stdin:
                process.stdin.close()
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.terminate()
                process.wait(timeout=20)


def start_stage(spec: dict[str, Any], workdir: Path, name: str, log: Path) -> dict[str, Any]:
    """Start ``benchmarks.stage`` in a fresh process; :func:`finish_stage` collects it."""
    spec_path, out_path = workdir / f"{name}.spec.json", workdir / f"{name}.out.json"
    spec_path.write_text(json.dumps(spec))
    stage_log = workdir / f"{name}.log"  # one file per stage: concurrent stages must not interleave
    with stage_log.open("w") as output:
        process = subprocess.Popen([sys.executable, "-m", "benchmarks.stage", str(spec_path), str(out_path)],
                                   cwd=REPO, env=_env(), stdout=output, stderr=output)
    return {"name": name, "process": process, "out": out_path, "stage_log": stage_log, "log": log,
            "started": time.perf_counter()}


def finish_stage(running: dict[str, Any]) -> dict[str, Any]:
    """Wait for a stage started by :func:`start_stage`; its result dict, with process-level figures."""
    returncode = running["process"].wait()
    process_wall = time.perf_counter() - running["started"]
    with running["log"].open("a") as log:
        log.write(f"\n===== {running['name']} =====\n" + running["stage_log"].read_text())
    out_path = running["out"]
    if returncode != 0 or not out_path.exists():
        return {"success": False, "errors": [f"stage process exited {returncode}; see {running['log']}"],
                "process_wall_s": round(process_wall, 3)}
    result = json.loads(out_path.read_text())
    result["process_wall_s"] = round(process_wall, 3)
    before, after = result.pop("usage_before"), result.pop("usage_after")
    result["cpu_s"] = round(sum(after[k] - before[k] for k in ("user_s", "sys_s")), 3)
    result["children_cpu_s"] = round(sum(after[k] - before[k] for k in ("children_user_s", "children_sys_s")), 3)
    result["peak_rss_mib"] = round(after["peak_rss_mib"], 1)
    result["children_peak_rss_mib"] = round(after["children_peak_rss_mib"], 1)
    return result


def run_stage(spec: dict[str, Any], workdir: Path, name: str, log: Path) -> dict[str, Any]:
    return finish_stage(start_stage(spec, workdir, name, log))


def run_sources(devices: int, latency_ms: float, day: date, seed: int, log: Path, warehouse: Path,
                workdir: Path, together: bool = True) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every vendor's snapshots and day into ``warehouse``; (stage results, sandbox usage).

    ``together``: the five vendor processes run at once, as the source jobs' executor runs one
    step per vendor at a time, every vendor side by side (their writes take turns on the file);
    the sources' wall time (``sources_wall_s`` of the sandbox usage returned) is then the time
    until the last one is done. Otherwise one after another, each stage on a machine to itself.
    """
    stages: dict[str, Any] = {}
    sandbox = Sandbox(devices, latency_ms, seed, day)
    warm_cpu_s = sandbox.usage()["cpu_s"]
    try:
        def spec(vendor: str) -> dict[str, Any]:
            return {"kind": "vendor", "vendor": vendor, "base_url": sandbox.urls[vendor], "day": day.isoformat(),
                    "warehouse": str(warehouse), "bare_db": str(workdir / f"bare_{vendor}.duckdb"),
                    "cache_dir": str(workdir / "cache")}

        started = time.perf_counter()
        running = {vendor: start_stage(spec(vendor), workdir, vendor, log) for vendor in VENDORS} if together else {}
        for vendor in VENDORS:
            stages[vendor] = finish_stage(running[vendor]) if together else run_stage(spec(vendor), workdir, vendor, log)
            _progress(vendor, stages[vendor])
        sources_wall_s = round(time.perf_counter() - started, 3)
        print(f"   {'all sources':<11} {sources_wall_s:8.1f} s" + (" (side by side)" if together else ""), flush=True)
        usage = sandbox.usage()
        usage["warm_up_cpu_s"] = warm_cpu_s  # generating the days before serving (not in the stages)
        usage["sources_wall_s"] = sources_wall_s
        usage["vendors_together"] = together
        return stages, usage
    finally:
        sandbox.stop()


def _progress(label: str, stage: dict[str, Any]) -> None:
    print(f"   {label:<11} {stage.get('wall_s', float('nan')):8.1f} s"
          + ("" if stage["success"] else "  FAILED: " + "; ".join(stage.get("errors") or [])[-300:]), flush=True)


def bench_size(devices: int, latency_ms: float, day: date, seed: int, log: Path,
               models_cache: tuple[int, Path] | None = None, together: bool = True) -> dict[str, Any]:
    """Every vendor's day and the day's dbt build at one fleet size and latency.

    ``models_cache`` = (days, path): also turn this run's raw warehouse into the many-days cache
    (saves running the sources again for it).
    """
    print(f"-- {devices} devices, {latency_ms:g} ms latency, day {day}", flush=True)
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-{devices}-{int(latency_ms)}-"))
    warehouse = workdir / "warehouse.duckdb"
    try:
        stages, sandbox_usage = run_sources(devices, latency_ms, day, seed, log, warehouse, workdir, together)
        if models_cache and all(stage["success"] for stage in stages.values()):
            models.finish_cache(warehouse, *models_cache)
        spec = {"kind": "dbt", "warehouse": str(warehouse), "scratch_dir": str(workdir / "dbt"),
                "min_date": day.isoformat(), "max_date": day.isoformat()}
        stages["dbt"] = run_stage(spec, workdir, "dbt", log)
        _progress("dbt build", stages["dbt"])
        warehouse_mib = warehouse.stat().st_size / 2**20 if warehouse.exists() else None
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    fleet = Fleet.of(World(seed=seed, n_devices=devices))
    summary = report.summarize(stages, fleet, latency_ms, sandbox_usage["sources_wall_s"], together)
    for stage in stages.values():
        stage.pop("rows_per_imei", None)  # an input of the minima, tens of thousands of entries
    return {
        "devices": devices, "latency_ms": latency_ms, "day": day.isoformat(),
        "fleet": {k: v for k, v in fleet.__dict__.items() if not k.endswith(("_imeis", "_imeis_by_account"))},
        "sandbox": sandbox_usage, "warehouse_mib": warehouse_mib,
        "stages": stages, "summary": summary,
    }


def bench_size_into(devices: int, latency_ms: float, day: date, seed: int, log: Path, warehouse: Path) -> None:
    """Load one day of every source into ``warehouse`` (the seed of the many-days cache)."""
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-seed-{devices}-"))
    try:
        stages, _ = run_sources(devices, latency_ms, day, seed, log, warehouse, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    failed = [vendor for vendor, stage in stages.items() if not stage["success"]]
    if failed:
        raise RuntimeError(f"the sources failed while building the models cache: {', '.join(failed)}; see {log}")


def _list(text: str, kind: type) -> list[Any]:
    return [kind(part) for part in text.split(",") if part.strip()]


def _write(out: Path, stamp: str, definitions_load: dict[str, Any], runs: list[dict[str, Any]],
           many_days: dict[str, Any] | None, started: float) -> dict[str, Any]:
    results = {
        "started_utc": stamp, "host": {"cpus": os.cpu_count(), "load_avg": os.getloadavg()},
        "definitions_load": definitions_load, "runs": runs, "models_many_days": many_days, "growth": report.growth(runs, many_days),
        "total_wall_s": round(time.perf_counter() - started, 1),
    }
    out.write_text(json.dumps(results, indent=1, default=str))
    return results


def day_and_results(day: date | None, out: Path | None, prefix: str = "") -> tuple[date, str, Path, Path]:
    """The day to load (default: complete, ``DEFAULT_DAY_OFFSET`` days ago), the run's UTC stamp,
    its JSON result file (default: ``benchmarks/results/<prefix><stamp>.json``) and its log beside it."""
    day = day or datetime.now(timezone.utc).date() - timedelta(days=DEFAULT_DAY_OFFSET)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = out or RESULTS_DIR / f"{prefix}{stamp}.json"
    return day, stamp, out, out.with_suffix(".log")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", default="200,1000", help="fleet sizes, comma separated (e.g. 200,1000,10000)")
    parser.add_argument("--latency-ms", default="0,200", help="sandbox latency per call, comma separated")
    parser.add_argument("--day", type=date.fromisoformat, default=None,
                        help=f"the UTC day to load (default: {DEFAULT_DAY_OFFSET} days ago, complete)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--models-devices", type=int, default=1000, help="fleet of the many-days models run")
    parser.add_argument("--models-days", type=int, default=30, help="days of the many-days models run")
    parser.add_argument("--no-models", action="store_true", help="skip the many-days models run")
    parser.add_argument("--one-vendor-at-a-time", action="store_true",
                        help="run the vendor stages one after another (each on a machine to itself) "
                             "instead of side by side as the source jobs do")
    parser.add_argument("--load-processes", type=int, default=5,
                        help="fresh processes that load the definitions (their median is reported)")
    parser.add_argument("--out", type=Path, default=None, help="JSON result file (default: benchmarks/results/<timestamp>.json)")
    args = parser.parse_args(argv)

    day, stamp, out, log = day_and_results(args.day, args.out)
    print(f"benchmark: stage logs in {log}", flush=True)

    started = time.perf_counter()
    definitions_load = load.bench_definitions_load(args.load_processes)
    print("-- " + load.describe(definitions_load), flush=True)
    runs = []
    for n in _list(args.devices, int):
        for latency in _list(args.latency_ms, float):
            cache = models.cache_path(n, args.models_days, args.seed, RESULTS_DIR / "cache")
            seeds_cache = (not args.no_models and n == args.models_devices and latency == 0 and not cache.exists())
            runs.append(bench_size(n, latency, day, args.seed, log,
                                   (args.models_days, cache) if seeds_cache else None,
                                   together=not args.one_vendor_at_a_time))
            # Written after every size, so a long run that is stopped keeps what it measured.
            _write(out, stamp, definitions_load, runs, None, started)
    many_days = None
    if not args.no_models:
        many_days = models.bench_many_days(args.models_devices, args.models_days, day, args.seed, log,
                                           RESULTS_DIR / "cache")
    results = _write(out, stamp, definitions_load, runs, many_days, started)
    print()
    print(report.render(results))
    print(f"\nJSON: {out}")
    return 0 if all(s.get("success") for r in runs for s in r["stages"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
