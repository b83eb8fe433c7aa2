"""Issue 18's scale benchmark: Navixy accounts x Celery workers, embedded and distributed.

    python -m benchmarks accounts [--accounts 1,3] [--workers 1,2] [--devices 1000] [--day YYYY-MM-DD]
                                  [--latency-ms 0] [--modes embedded,distributed] [--quick]
    make bench BENCH_ARGS="accounts --accounts 1,3 --workers 1,2 --devices 1000"

One Navixy sandbox process (``benchmarks.sandbox_host``) serves a World sized so that its largest
Navixy sub-accounts list about ``--devices`` trackers each (``benchmarks.accounts_world``; the
real counts are printed), the day generated before it listens, logging every call with the
account whose API key made it (``benchmarks.call_log``). Each account is a block of a
FLEET_ACCOUNTS_FILE with its own key. Stages, one after another, each into a fresh warehouse
(``benchmarks.accounts_stages``): for every N of ``--accounts`` (the N largest accounts), the
trackers snapshot and the day's trips, track points and events of each account by one
``dagster asset materialize``,

1. **embedded**: the default mode (SQLite instance, DuckDB file, forked step processes);
2. **distributed**, for every W of ``--workers``: Postgres (instance and lake catalog), Redis
   (broker and shared vendor state), DuckLake, the steps on W Celery workers.

Printed per stage: wall, CPU (stage processes; Postgres, Redis and the sandbox apart), peak RSS,
Navixy calls and rows per second; per account its HTTP 429s and its busiest 1-second window of
calls against Navixy's documented 50 a second (per API key, and per client IP: every account here
calls from loopback, so the sum of the accounts is also held to 50); the rows per account and
table, which must agree between stages and with the trackers the World lists; and a table of
throughput against accounts x workers. JSON to ``benchmarks/results/accounts-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import date
from pathlib import Path
from typing import Any

from benchmarks import accounts_stages, call_log, load
from benchmarks.accounts_world import BenchAccount, sized_world, write_accounts_file
from benchmarks.peer_stage import TABLES
from benchmarks.run import DEFAULT_DAY_OFFSET, Sandbox, day_and_results

MODES = ("embedded", "distributed")
QUICK_DEVICES = 100
# Navixy's documented limit: 50 requests a second per user (an API key) and per client IP
# (docs/vendor-apis/FIELD-NOTES.md, navixy-official/platform-rate-limits.md).
NAVIXY_LIMIT_PER_S = 50


def stage_label(stage: dict[str, Any]) -> str:
    plural = "s" if stage["accounts"] != 1 else ""
    if stage["mode"] == "embedded":
        return f"embedded, {stage['accounts']} account{plural}"
    return f"distributed, {stage['accounts']} account{plural}, {stage['workers']} worker{'s' if stage['workers'] != 1 else ''}"


def run_accounts(counts: list[int], workers: list[int], devices: int, modes: list[str], latency_ms: float, day: date,
                 seed: int, log: Path) -> dict[str, Any]:
    world, chosen = sized_world(seed, devices, max(counts))
    print(f"   World of {world.n_devices:,} devices; Navixy accounts extracted (trackers listed): "
          + ", ".join(f"{a.name} {a.trackers:,}" for a in chosen), flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="bench-accounts-"))
    calls_path = workdir / "calls.log"
    stages: list[dict[str, Any]] = []
    try:
        first_load = load._load_once()  # dbt's project parsed once, by no stage
        print(f"   definitions loaded once first: {first_load['cpu_s']:.1f} s CPU, {first_load['wall_s']:.1f} s wall",
              flush=True)
        warm_started = time.perf_counter()
        sandbox = Sandbox(world.n_devices, latency_ms, seed, day, groups=(("navixy",),),
                          extra_args=("--call-log-file", str(calls_path),
                                      "--warm-accounts", ",".join(a.world_account for a in chosen)))
        warm_s = time.perf_counter() - warm_started
        print(f"   sandbox ready in {warm_s:.0f} s (the accounts' days generated first)", flush=True)
        try:
            from fleet_pipeline.sandbox import navixy

            key_env = write_accounts_file(workdir / "accounts.toml", sandbox.urls["navixy"] + navixy.API_PREFIX, chosen)
            env = accounts_stages.base_env(workdir / "accounts.toml", key_env)
            sandbox_pid = {"sandbox": sandbox.processes[0].pid}
            plan = [("embedded", n, None) for n in counts if "embedded" in modes]
            plan += [("distributed", n, w) for n in counts for w in workers if "distributed" in modes]
            with ExitStack() as started:
                services = started.enter_context(accounts_stages.services()) if "distributed" in modes else None
                for mode, n, w in plan:
                    stage = {"mode": mode, "accounts": n, "workers": w}
                    folder = workdir / (f"{mode}-{n}" + (f"x{w}" if w else ""))
                    folder.mkdir(parents=True)
                    if mode == "embedded":
                        stage.update(accounts_stages.run_embedded(chosen[:n], day.isoformat(), env, folder, log,
                                                                  sandbox_pid))
                    else:
                        stage.update(accounts_stages.run_distributed(chosen[:n], w, day.isoformat(), env, services,
                                                                     folder, log, sandbox_pid))
                    stage["calls"] = _stage_calls(calls_path, stage, chosen)
                    stage["throughput"] = _throughput(stage)
                    stages.append(stage)
                    _print_progress(stage)
            sandbox_usage = sandbox.usage()
        finally:
            sandbox.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return {"devices": devices, "world_devices": world.n_devices, "seed": seed, "day": day.isoformat(),
            "latency_ms": latency_ms, "accounts": [vars(a) for a in chosen], "limit_per_s": NAVIXY_LIMIT_PER_S,
            "first_load": first_load, "sandbox_warm_s": round(warm_s, 1), "stages": stages, "sandbox": sandbox_usage}


def _stage_calls(path: Path, stage: dict[str, Any], chosen: list[BenchAccount]) -> dict[str, dict[str, int]]:
    """The stage's Navixy calls per account name (and over all, ``*``), from the sandbox's log."""
    if "started_at" not in stage:
        return {}
    time.sleep(3 * call_log.FLUSH_INTERVAL_S)  # the sandbox's last lines written
    names = {a.world_account: a.name for a in chosen}
    calls = call_log.read_calls(path, stage["started_at"], stage["ended_at"])
    return {names.get(caller, caller): counted for caller, counted in call_log.per_caller(calls).items()}


def _throughput(stage: dict[str, Any]) -> dict[str, float | None]:
    wall = stage.get("wall_s")
    calls = (stage.get("calls") or {}).get(call_log.EVERY_CALLER, {}).get("calls", 0)
    rows = sum(sum(tables.values()) for tables in (stage.get("rows") or {}).values())
    return {"calls": calls, "rows": rows, "calls_per_s": round(calls / wall, 1) if wall else None,
            "rows_per_s": round(rows / wall) if wall else None}


def _print_progress(stage: dict[str, Any]) -> None:
    every = (stage.get("calls") or {}).get(call_log.EVERY_CALLER, {})
    setup = (f" (before it: instance and lake {stage['prepare_s']} s, workers ready in "
             + ", ".join(f"{s} s" for s in stage["workers_ready_s"].values()) + ")") if "workers_ready_s" in stage else ""
    print(f"   {stage_label(stage):<36} {stage.get('wall_s', float('nan')):8.1f} s, {every.get('calls', 0):,} calls, "
          f"429s {every.get('throttled_429', 0)}{setup}"
          + ("" if stage.get("success") else "  FAILED: " + "; ".join(stage.get("errors") or [])[-400:]), flush=True)


# -- checks ------------------------------------------------------------------------------------------


def disagreements(result: dict[str, Any]) -> list[str]:
    """What is wrong with the rows: an account's table holding different rows in two stages, an
    account's trackers other than the World lists, an account of a stage with no rows."""
    problems = []
    listed = {a["name"]: a["trackers"] for a in result["accounts"]}
    stages = [s for s in result["stages"] if s.get("success")]
    for position, account in enumerate(result["accounts"]):
        having = [s for s in stages if s["accounts"] > position]
        for stage in having:
            if account["name"] not in (stage.get("rows") or {}):
                problems.append(f"{stage_label(stage)}: no rows of {account['name']}")
        for table in TABLES:
            seen = {stage_label(s): (s.get("rows") or {}).get(account["name"], {}).get(table) for s in having}
            if len(set(seen.values())) > 1:
                problems.append(f"{account['name']}.{table} differs: " + ", ".join(f"{k} {v}" for k, v in seen.items()))
        trackers = {(s.get("rows") or {}).get(account["name"], {}).get("trackers") for s in having}
        if having and trackers != {listed[account["name"]]}:
            problems.append(f"{account['name']}: trackers {sorted(trackers, key=str)} against {listed[account['name']]} "
                            "the World lists")
    return problems


def over_budget(result: dict[str, Any]) -> list[str]:
    """Accounts (or the one client IP) that drew a 429 or exceeded the documented limit in a second."""
    found = []
    for stage in result["stages"]:
        for caller, counted in (stage.get("calls") or {}).items():
            if counted["throttled_429"] or counted["busiest_1s"] > result["limit_per_s"]:
                who = "all accounts (one IP)" if caller == call_log.EVERY_CALLER else caller
                found.append(f"{stage_label(stage)}: {who} drew {counted['throttled_429']} 429s, busiest second "
                             f"{counted['busiest_1s']} of {result['limit_per_s']}")
    return found


# -- the tables --------------------------------------------------------------------------------------


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def render(result: dict[str, Any]) -> str:
    stages = result["stages"]
    accounts = [a["name"] for a in result["accounts"]]
    lines = [f"Navixy day {result['day']}, {len(accounts)} accounts of a World of {result['world_devices']:,} devices, "
             f"{result['latency_ms']:g} ms latency (load average {result['load_avg'][0]:.2f} / {result['load_avg'][1]:.2f} "
             f"at the start, {result['load_avg_end'][0]:.2f} at the end; {result['cpus']} CPUs)",
             "accounts (trackers the sandbox lists for each key): " + ", ".join(
                 f"{a['name']} {a['trackers']:,} ({a['world_account']})" for a in result["accounts"]),
             f"Navixy's limit: {result['limit_per_s']} calls/s per API key AND per client IP; the project's client "
             "paces all accounts of one platform URL on one ledger (45/s), shared by every process", ""]
    width = 38
    lines.append(f"{'stage':<{width}}{'wall s':>8}{'CPU s':>8}{'CLI':>7}{'workers':>9}{'Postgres':>9}{'Redis':>7}"
                 f"{'sandbox':>9}{'RSS sum':>9}{'largest':>9}{'calls':>8}{'calls/s':>9}{'rows':>10}{'rows/s':>9}")
    for stage in stages:
        services = stage.get("services_cpu_s") or {}
        throughput = stage.get("throughput") or {}
        lines.append(
            f"{stage_label(stage):<{width}}{_fmt(stage.get('wall_s')):>8}{_fmt(stage.get('cpu_s')):>8}"
            f"{_fmt(stage.get('cli_cpu_s')):>7}{_fmt(sum((stage.get('worker_cpu_s') or {}).values()) if stage['workers'] else None):>9}"
            f"{_fmt(services.get('postgres')):>9}{_fmt(services.get('redis')):>7}{_fmt(services.get('sandbox')):>9}"
            f"{_fmt(stage.get('peak_rss_mib'), 0):>9}{_fmt(stage.get('max_process_peak_rss_mib'), 0):>9}"
            f"{throughput.get('calls', 0):>8,}{_fmt(throughput.get('calls_per_s')):>9}{throughput.get('rows', 0):>10,}"
            f"{_fmt(throughput.get('rows_per_s'), 0):>9}"
            + ("" if stage.get("success") else "  FAILED"))
    lines += ["", f"HTTP 429s / busiest 1-second window of calls, per account (limit {result['limit_per_s']} each) and "
                  f"all accounts together (one client IP, limit {result['limit_per_s']})",
              f"{'stage':<{width}}" + "".join(f"{name[:16]:>18}" for name in accounts) + f"{'all (one IP)':>18}"]
    for stage in stages:
        calls = stage.get("calls") or {}
        cells = [f"{calls[name]['throttled_429']} / {calls[name]['busiest_1s']}" if name in calls else "-"
                 for name in [*accounts, call_log.EVERY_CALLER]]
        lines.append(f"{stage_label(stage):<{width}}" + "".join(f"{cell:>18}" for cell in cells))
    lines += ["", "rows per account and table (trackers: as many as the World lists)",
              f"{'account.table':<28}{'World':>8}" + "".join(f"{_short(s):>14}" for s in stages)]
    listed = {a["name"]: a["trackers"] for a in result["accounts"]}
    for name in accounts:
        for table in TABLES:
            cells = [(s.get("rows") or {}).get(name, {}).get(table) for s in stages]
            lines.append(f"{name[:16] + '.' + table:<28}{(f'{listed[name]:,}' if table == 'trackers' else ''):>8}"
                         + "".join(f"{'-' if c is None else f'{c:,}':>14}" for c in cells))
    problems = disagreements(result)
    lines.append("rows agree between the stages and with the World" if not problems
                 else "ROWS DIFFER: " + "; ".join(problems))
    lines += [f"OVER BUDGET {text}" for text in over_budget(result)]
    lines += [f"FAILED {stage_label(s)}: {'; '.join(s.get('errors') or [])[-400:]}" for s in stages if not s.get("success")]
    lines += ["", *_throughput_table(result)]
    spread = [f"{stage_label(s)}: " + ", ".join(f"{w} {len(steps)} steps" for w, steps in sorted(s["steps_by_worker"].items()))
              for s in stages if s.get("steps_by_worker")]
    if spread:
        lines += ["", "steps per Celery worker: " + "; ".join(spread)]
    return "\n".join(lines)


def _short(stage: dict[str, Any]) -> str:
    return f"emb {stage['accounts']}" if stage["mode"] == "embedded" else f"dist {stage['accounts']}x{stage['workers']}"


def _throughput_table(result: dict[str, Any]) -> list[str]:
    stages = result["stages"]
    columns = [("embedded", None)] + sorted({("distributed", s["workers"]) for s in stages if s["mode"] == "distributed"},
                                            key=lambda c: c[1])
    headers = ["embedded" if mode == "embedded" else f"{w} worker{'s' if w != 1 else ''}" for mode, w in columns]
    lines = ["throughput vs accounts x workers: Navixy calls/s, rows/s (wall s)",
             f"{'accounts':<10}" + "".join(f"{h:>28}" for h in headers)]
    for count in sorted({s["accounts"] for s in stages}):
        cells = []
        for mode, workers in columns:
            found = next((s for s in stages if s["mode"] == mode and s["accounts"] == count and s["workers"] == workers), None)
            throughput = (found or {}).get("throughput") or {}
            cells.append("-" if not found else f"{_fmt(throughput.get('calls_per_s'))}, "
                         f"{_fmt(throughput.get('rows_per_s'), 0)} ({_fmt(found.get('wall_s'), 0)})")
        lines.append(f"{count:<10}" + "".join(f"{cell:>28}" for cell in cells))
    return lines


def _int_list(text: str) -> list[int]:
    values = [int(part) for part in text.split(",") if part.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers separated by commas, got {text!r}")
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks accounts", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=_int_list, default=[1, 3], help="how many Navixy accounts, comma separated")
    parser.add_argument("--workers", type=_int_list, default=[1, 2], help="Celery workers of the distributed stages")
    parser.add_argument("--devices", type=int, default=None,
                        help=f"trackers per account, about (default 1000; {QUICK_DEVICES} with --quick)")
    parser.add_argument("--day", type=date.fromisoformat, default=None,
                        help=f"the UTC day to load (default: {DEFAULT_DAY_OFFSET} days ago, complete)")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--modes", default=",".join(MODES), help="embedded, distributed or both (comma separated)")
    parser.add_argument("--quick", action="store_true", help=f"a development run: {QUICK_DEVICES} trackers per account")
    parser.add_argument("--out", type=Path, default=None, help="JSON result (default: benchmarks/results/accounts-<timestamp>.json)")
    args = parser.parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    if not modes or set(modes) - set(MODES):
        parser.error(f"--modes: choose from {', '.join(MODES)}")
    devices = args.devices or (QUICK_DEVICES if args.quick else 1000)

    day, stamp, out, log = day_and_results(args.day, args.out, prefix="accounts-")
    print(f"accounts benchmark: stage logs in {log}", flush=True)
    load_avg = os.getloadavg()
    result = run_accounts(args.accounts, args.workers, devices, modes, args.latency_ms, day, args.seed, log)
    result.update(started_utc=stamp, load_avg=load_avg, load_avg_end=os.getloadavg(), cpus=os.cpu_count(),
                  rows_problems=disagreements(result), over_budget=over_budget(result))
    out.write_text(json.dumps(result, indent=1, default=str))
    print()
    print(render(result))
    print(f"\nJSON: {out}")
    ok = all(s.get("success") for s in result["stages"]) and not result["rows_problems"] and not result["over_budget"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
