"""Issue 17's comparison: one Navixy day as users run it, in one process, by dlt, and the floor.

    python -m benchmarks peer [--devices 200] [--latency-ms 0] [--day YYYY-MM-DD] [--dlt-workers 16]
    make bench BENCH_ARGS="peer --devices 200 --latency-ms 0"

One Navixy sandbox process (``benchmarks.sandbox_host``, the day generated before it listens,
counting the calls its rate limit refuses) serves four stages, one after another, each writing a
fresh DuckDB file:

1. **launched**: the trackers snapshot and the day's trips, track points and events, launched the
   way a user launches them from the command line, one ``dagster asset materialize -m
   fleet_pipeline.definitions --select <the snapshot and the day's assets> --partition <day>``
   against an instance home (``DAGSTER_HOME``, the project's instance settings): the run's
   executor is the definitions' multiprocess executor, one process per step, forked from the run
   process, which loaded the code location (fleet_pipeline.executors).
   Wall from the CLI's start to its exit; CPU of the CLI and everything it waited for
   (``RUSAGE_CHILDREN``), or the CPU sampled over the process tree where that is more: nobody
   waits for a forkserver (the executor's fallback), so the CPU of it and of the step processes it
   reaped never reaches ``RUSAGE_CHILDREN``; peak RSS sampled over the process tree
   (:mod:`benchmarks.process_tree`): the peak of the resident sizes SUMMED over the live
   processes, with the largest single process beside it. From the instance's event log: each step
   process's load cost, STEP_START minus STEP_WORKER_STARTING (the executor launching it), and
   the CLI's own, its first event minus its start.
2. **one process**: the same assets by ``dagster.materialize`` in one process, as the benchmark's
   vendor stages and ``fleet-pipeline demo`` run them, with the memory of each phase recorded
   (:mod:`benchmarks.memory_phases`).
3. **dlt**: the same calls by dlt, set up as its documentation recommends (:mod:`benchmarks.peer_dlt`;
   the ``bench`` extra).
4. **bare**: the floor: the one-process stage's rows written by a plain Arrow ``CREATE TABLE AS``.

Rows per table of every stage are printed side by side and must agree; ratios are to dlt.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

from benchmarks import load, memory_phases
from benchmarks.peer_stage import DAY_TABLES, RAW_SCHEMA, SNAPSHOT_TABLES, TABLES, count_rows
from benchmarks.process_tree import ProcessTree
from benchmarks.run import DEFAULT_DAY_OFFSET, REPO, Sandbox, _env, day_and_results

BIN = Path(sys.executable).parent
DEFINITIONS_MODULE = "fleet_pipeline.definitions"
STAGES = ("launched", "one_process", "dlt", "bare")
LABELS = {"launched": "project, CLI-launched", "one_process": "project, one process", "dlt": "dlt (parquet)",
          "bare": "bare Arrow insert"}
# The console logger at WARNING, as the benchmark's in-process stages run (stage.QUIET_RUN_CONFIG).
QUIET_RUN_CONFIG = json.dumps({"loggers": {"console": {"config": {"log_level": "WARNING"}}}})
# Events of a step's life in a multiprocess run, in the order they happen.
WORKER_STARTING, STEP_START, STEP_ENDS = "STEP_WORKER_STARTING", "STEP_START", ("STEP_SUCCESS", "STEP_FAILURE")


class ThrottleCount:
    """The sandbox's count of calls refused by its rate limit (``--throttle-count-file``)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> int:
        return int(self.path.read_text() or 0) if self.path.exists() else 0


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _launch_commands(day: str) -> list[list[str]]:
    # One run: the unpartitioned snapshot runs first (the day's assets depend on it), the
    # partitioned assets for the day.
    select = ",".join(f"{RAW_SCHEMA}/{t}" for t in (*SNAPSHOT_TABLES, *DAY_TABLES))
    return [[str(BIN / "dagster"), "asset", "materialize", "-m", DEFINITIONS_MODULE, "--config-json", QUIET_RUN_CONFIG,
             "--select", select, "--partition", day]]


def run_launched(base_url: str, day: str, workdir: Path, log: Path) -> dict[str, Any]:
    """The snapshot and the day by ``dagster asset materialize`` in a fresh CLI process."""
    from fleet_pipeline.instance import DAGSTER_YAML
    from fleet_pipeline.sandbox import navixy

    home = workdir / "dagster_home"
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text(DAGSTER_YAML)
    warehouse = workdir / "launched.duckdb"
    env = {**_env(), "DAGSTER_HOME": str(home), "FLEET_DATA_DIR": str(workdir / "launched_data"),
           "FLEET_DUCKDB_PATH": str(warehouse), "NAVIXY_BASE_URL": base_url + navixy.API_PREFIX,
           "NAVIXY_API_KEY": navixy.API_KEY}
    cpu_before, wall, trees, started_at, failures = _children_cpu_s(), 0.0, [], [], []
    with log.open("a") as output:
        for command in _launch_commands(day):
            output.write(f"\n===== launched: {' '.join(command)} =====\n")
            output.flush()
            started_at.append(time.time())
            started = time.perf_counter()
            process = subprocess.Popen(command, cwd=REPO, env=env, stdout=output, stderr=output)
            tree = ProcessTree(process.pid)
            returncode = process.wait()
            wall += time.perf_counter() - started
            trees.append(tree.stop())
            if returncode != 0:
                failures.append(f"`{' '.join(command[2:4])} --select {command[-1] if '--partition' not in command else command[-3]}`"
                                f" exited {returncode}; see {log}")
    # The sampled tree misses up to a sample's worth of CPU per process; RUSAGE_CHILDREN misses
    # the forkserver and its steps (module docstring). The larger is the closer.
    cpu = max(_children_cpu_s() - cpu_before, sum(p["cpu_s"] for t in trees for p in t["processes"]))
    steps, cli_load = _steps_from_event_log(home, started_at)
    by_pid = {p["pid"]: p for t in trees for p in t["processes"]}
    for step in steps:
        seen = by_pid.get(step["pid"]) if step["own_process"] else None
        step["process_cpu_s"], step["process_peak_rss_mib"] = (seen["cpu_s"], seen["peak_rss_mib"]) if seen else (None, None)
    return {
        "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
        "peak_rss_mib": max(t["peak_sum_rss_mib"] for t in trees),
        "max_process_peak_rss_mib": max(t["max_process_peak_rss_mib"] for t in trees),
        "peak_pss_mib": max(t["peak_sum_pss_mib"] for t in trees),
        "success": not failures, "errors": failures,
        "rows": count_rows(str(warehouse), RAW_SCHEMA, {t: t for t in TABLES}) if warehouse.exists() else {},
        "steps": steps, "cli_load_s": cli_load, "trees": trees,
    }


def _steps_from_event_log(home: Path, started_at: list[float]) -> tuple[list[dict[str, Any]], list[float | None]]:
    """Per step: its process's load (STEP_START - STEP_WORKER_STARTING) and its own duration; per
    CLI process: the time from its start to its run's first event (the CLI loading the code)."""
    from dagster import DagsterInstance

    steps, cli_load = [], []
    with DagsterInstance.from_config(str(home)) as instance:
        runs = sorted(instance.get_runs(), key=lambda r: instance.get_run_record_by_id(r.run_id).create_timestamp.timestamp())
        for run, launched_at in zip(runs, started_at):
            logs = instance.all_logs(run.run_id)
            cli_load.append(round(min(e.timestamp for e in logs) - launched_at, 2) if logs else None)
            by_step: dict[str, dict[str, float]] = {}
            for entry in logs:
                if entry.dagster_event is None or not entry.step_key:
                    continue
                kind = entry.dagster_event.event_type_value
                if kind in (WORKER_STARTING, STEP_START, *STEP_ENDS):
                    by_step.setdefault(entry.step_key, {}).setdefault(kind if kind not in STEP_ENDS else "end",
                                                                       entry.timestamp)
                if kind == STEP_START:
                    by_step[entry.step_key]["pid"] = entry.dagster_event.pid
            for key, times in sorted(by_step.items(), key=lambda item: item[1].get(WORKER_STARTING, 0)):
                load = times.get(STEP_START, 0) - times[WORKER_STARTING] if WORKER_STARTING in times else None
                work = times["end"] - times[STEP_START] if "end" in times and STEP_START in times else None
                steps.append({"run": run.run_id[:8], "step": key, "own_process": WORKER_STARTING in times,
                              "load_s": None if load is None else round(load, 2),
                              "step_s": None if work is None else round(work, 2), "pid": times.get("pid")})
    return steps, cli_load


def _print_progress(name: str, stage: dict[str, Any], throttled: int) -> None:
    print(f"   {LABELS[name]:<24} {stage.get('wall_s', float('nan')):8.1f} s, 429s {throttled}"
          + ("" if stage.get("success") else "  FAILED: " + "; ".join(stage.get("errors") or [])[-400:]), flush=True)


def run_peer(devices: int, latency_ms: float, day: date, seed: int, dlt_workers: int, log: Path) -> dict[str, Any]:
    from fleet_pipeline.sandbox import navixy

    workdir = Path(tempfile.mkdtemp(prefix=f"bench-peer-{devices}-"))
    counts = ThrottleCount(workdir / "throttled.txt")
    sandbox = Sandbox(devices, latency_ms, seed, day, groups=(("navixy",),),
                      extra_args=("--throttle-count-file", str(counts.path)))
    stages: dict[str, Any] = {}
    try:
        # The first process to load the definitions after dbt_models/ changed parses the dbt
        # project (once per change): done here, so that no stage pays it.
        first_load = load._load_once()
        print(f"   definitions loaded once first: {first_load['cpu_s']:.1f} s CPU, {first_load['wall_s']:.1f} s wall", flush=True)
        base_url = sandbox.urls["navixy"]
        specs = {
            "one_process": {"vendor": "navixy", "base_url": base_url, "day": day.isoformat(),
                            "warehouse": str(workdir / "one_process.duckdb"), "cache_dir": str(workdir / "cache_one")},
            "dlt": {"base_url": base_url + navixy.API_PREFIX, "api_key": navixy.API_KEY, "day": day.isoformat(),
                    "warehouse": str(workdir / "dlt.duckdb"), "pipelines_dir": str(workdir / "dlt_pipelines"),
                    "workers": dlt_workers},
            "bare": {"source_warehouse": str(workdir / "one_process.duckdb"), "warehouse": str(workdir / "bare.duckdb")},
        }
        for name in ("one_process", "launched", "dlt", "bare"):
            before = counts.read()
            if name == "launched":
                stages[name] = run_launched(base_url, day.isoformat(), workdir, log)
            else:
                stages[name] = _run_peer_stage(name, specs[name], workdir, log)
            stages[name]["throttled_429"] = counts.read() - before
            _print_progress(name, stages[name], stages[name]["throttled_429"])
        sandbox_usage = sandbox.usage()
    finally:
        sandbox.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return {"devices": devices, "latency_ms": latency_ms, "day": day.isoformat(), "dlt_workers": dlt_workers,
            "first_load": first_load, "stages": stages, "sandbox": sandbox_usage}


def _run_peer_stage(kind: str, spec: dict[str, Any], workdir: Path, log: Path) -> dict[str, Any]:
    spec_path, out_path = workdir / f"{kind}.spec.json", workdir / f"{kind}.out.json"
    spec_path.write_text(json.dumps({"kind": kind, **spec}))
    stage_log = workdir / f"{kind}.log"
    started = time.perf_counter()
    with stage_log.open("w") as output:
        returncode = subprocess.run([sys.executable, "-m", "benchmarks.peer_stage", str(spec_path), str(out_path)],
                                    cwd=REPO, env=_env(), stdout=output, stderr=output, check=False).returncode
    process_wall = time.perf_counter() - started
    with log.open("a") as combined:
        combined.write(f"\n===== {kind} =====\n" + stage_log.read_text())
    if returncode != 0 or not out_path.exists():
        return {"success": False, "errors": [f"stage process exited {returncode}; see {log}"],
                "process_wall_s": round(process_wall, 3), "rows": {}}
    result = json.loads(out_path.read_text())
    before, after = result.pop("usage_before"), result.pop("usage_after")
    result["process_wall_s"] = round(process_wall, 3)
    result["cpu_s"] = round(sum(after[k] - before[k] for k in ("user_s", "sys_s", "children_user_s", "children_sys_s")), 3)
    result["peak_rss_mib"] = round(after["peak_rss_mib"], 1)
    return result


# -- the table ---------------------------------------------------------------------------------------


def _ratio(value: float | None, reference: float | None) -> str:
    return f"{value / reference:.2f}x" if value is not None and reference else "-"


def rows_agree(stages: dict[str, dict[str, Any]]) -> tuple[bool, list[str]]:
    """Whether every stage that succeeded holds the same rows per table; the tables that differ."""
    counted = {name: stage.get("rows") or {} for name, stage in stages.items() if stage.get("success")}
    differ = [table for table in TABLES if len({rows.get(table) for rows in counted.values()}) > 1]
    return not differ and bool(counted), differ


def render(result: dict[str, Any]) -> str:
    stages = result["stages"]
    reference = stages.get("dlt") or {}
    names = [n for n in STAGES if n in stages]
    width = 24
    lines = [f"Navixy day {result['day']}, {result['devices']:,} devices, {result['latency_ms']:g} ms latency "
             f"(load average {result['load_avg'][0]:.2f} / {result['load_avg'][1]:.2f} at the start, "
             f"{result['load_avg_end'][0]:.2f} at the end); ratios are to dlt", "",
             f"{'':<22}" + "".join(f"{LABELS[n]:>{width}}" for n in names)]

    def line(label: str, key: str, digits: int = 1) -> str:
        cells = []
        for name in names:
            value = stages[name].get(key)
            text = "-" if value is None else f"{value:,.{digits}f}"
            if name != "dlt" and key != "throttled_429":
                text += f" ({_ratio(value, reference.get(key))})"
            cells.append(f"{text:>{width}}")
        return f"{label:<22}" + "".join(cells)

    # A launched run is several processes, forked from one: its resident sizes summed count the pages
    # they share once per process. Its memory is the tree's PSS (each shared page counted once) and
    # its largest process; a one-process stage's peak RSS is both.
    for stage in stages.values():
        stage.setdefault("largest_process_mib", stage.get("max_process_peak_rss_mib", stage.get("peak_rss_mib")))
        stage.setdefault("memory_mib", stage.get("peak_pss_mib", stage.get("peak_rss_mib")))
    lines += [line("wall s", "wall_s"), line("CPU s (with children)", "cpu_s"),
              line("peak memory MiB", "memory_mib", 0), line("largest process MiB", "largest_process_mib", 0)]
    for table in TABLES:
        lines.append(f"{'rows ' + table:<22}" + "".join(
            f"{_fmt_rows((stages[n].get('rows') or {}).get(table)):>{width}}" for n in names))
    lines.append(f"{'HTTP 429 drawn':<22}" + "".join(
        f"{'-' if n == 'bare' else stages[n].get('throttled_429', '-'):>{width}}" for n in names))
    agree, differ = rows_agree(stages)
    lines.append("rows agree across the stages" if agree else f"ROWS DIFFER in {', '.join(differ) or 'every table'}")
    failed = [f"{LABELS[n]}: {'; '.join(stages[n].get('errors') or [])[-400:]}" for n in names if not stages[n].get("success")]
    lines += [f"FAILED {text}" for text in failed]

    launched = stages.get("launched")
    if launched and launched.get("steps") is not None:
        lines += ["", "peak memory: the peak RSS of a one-process stage; of the CLI-launched run, the peak PSS of the "
                  "CLI process and its step processes together (sampled at 10 Hz; a page the forked processes share "
                  f"is counted once); their resident sizes summed peaked at {launched['peak_rss_mib']:.0f} MiB. "
                  "The CLI processes loaded the code location in "
                  + ", ".join(f"{s:.1f} s" for s in launched["cli_load_s"] if s is not None)
                  + " (from their start to their run's first event)."]
        own = [s for s in launched["steps"] if s["own_process"]]
        loads = [s["load_s"] for s in own if s["load_s"] is not None]
        lines.append(f"{len(own)} step processes; from the executor launching each to its step's start "
                     f"(STEP_START - STEP_WORKER_STARTING; where the run falls back to a forkserver, its first includes the server loading the code): "
                     + (f"median {sorted(loads)[len(loads) // 2]:.1f} s, total {sum(loads):.1f} s" if loads else "-"))
        lines.append(f"  {'run':<9}{'step':<44}{'load s':>8}{'step s':>8}{'process CPU s':>15}{'peak RSS MiB':>14}")
        for step in launched["steps"]:
            lines.append(f"  {step['run']:<9}{step['step'][:42]:<44}{_fmt(step['load_s']):>8}{_fmt(step['step_s']):>8}"
                         f"{_fmt(step['process_cpu_s']):>15}{_fmt(step['process_peak_rss_mib']):>14}")
        kinds: dict[str, list[dict[str, Any]]] = {}
        step_pids = {s["pid"] for s in launched["steps"] if s["own_process"]}
        for process in (p for t in launched["trees"] for p in t["processes"]):
            kinds.setdefault("step" if process["pid"] in step_pids else _kind(process["command"]), []).append(process)
        lines.append("  the process tree (count, CPU s as last sampled, largest peak RSS MiB): " + "; ".join(
            f"{kind} x{len(found)} {sum(p['cpu_s'] for p in found):.1f} s {max(p['peak_rss_mib'] for p in found):.0f} MiB"
            for kind, found in kinds.items()))
    one = stages.get("one_process")
    if one and one.get("memory"):
        lines += ["", "Memory of the one-process stage by phase (peak within the phase / resident at its end):"]
        lines += memory_phases.describe(one["memory"])
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _fmt_rows(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


PROCESS_KINDS = (("asset materialize", "CLI"), ("spawn_main", "step"), ("forkserver import main", "forkserver"), ("resource_tracker", "multiprocessing tracker"),
                 ("watch_orphans", "compute-log orphan watch"), ("tail -F", "compute-log tail"), ("dbt parse", "dbt parse"))


def _kind(command: str) -> str:
    """What a process of the launched tree is, from its command line."""
    return next((kind for marker, kind in PROCESS_KINDS if marker in command), command.split(" ")[0][-30:] or "?")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks peer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--day", type=date.fromisoformat, default=None,
                        help=f"the UTC day to load (default: {DEFAULT_DAY_OFFSET} days ago, complete)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--dlt-workers", type=int, default=16,
                        help="dlt's extract workers (default 16: the project's Navixy client's concurrency)")
    parser.add_argument("--out", type=Path, default=None, help="JSON result (default: benchmarks/results/peer-<timestamp>.json)")
    args = parser.parse_args(argv)
    try:
        import dlt  # noqa: F401
    except ImportError:
        parser.error("dlt is not installed: run it with `make bench BENCH_ARGS=\"peer ...\"` (installs the bench extra)")

    day, stamp, out, log = day_and_results(args.day, args.out, prefix="peer-")
    print(f"peer benchmark: stage logs in {log}", flush=True)
    load_avg = os.getloadavg()
    result = run_peer(args.devices, args.latency_ms, day, args.seed, args.dlt_workers, log)
    result.update(started_utc=stamp, load_avg=load_avg, load_avg_end=os.getloadavg(), cpus=os.cpu_count())
    out.write_text(json.dumps(result, indent=1, default=str))
    print()
    print(render(result))
    print(f"\nJSON: {out}")
    agree, _ = rows_agree(result["stages"])
    return 0 if agree and all(s.get("success") for s in result["stages"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
