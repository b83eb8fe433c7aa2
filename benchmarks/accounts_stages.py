"""The stages of the accounts benchmark: one Navixy day of N accounts, launched as users launch it.

Both modes run the same command, ``dagster asset materialize -m fleet_pipeline.definitions
--select <each account's trackers, trips, track_points, events> --partition <day>``, in a fresh
CLI process:

* **embedded**: the project's default: a SQLite instance home, one DuckDB file, the definitions'
  executor for assets materialized from the CLI (``executors.DEFAULT_EXECUTOR``: step processes
  forked from the CLI's process, as many at once as there are CPUs, whichever account's);
* **distributed**: the issue 18 mode as ``fleet-pipeline cluster up`` configures it
  (``cluster.cluster_env``): the Dagster instance in Postgres, FLEET_EXECUTOR=celery with Redis as
  the broker and FLEET_SHARED_STATE, FLEET_WAREHOUSE=ducklake with its catalog in Postgres; the
  CLI's run process sends every step to ``workers`` Celery workers of one step at a time each,
  started and stopped per stage with the cluster's own functions. Postgres and Redis are started
  once for every distributed stage (``services.throwaway_postgres`` / ``throwaway_redis``); each
  stage has a lake of its own (catalog database and data folder).

Measured per stage: wall from the CLI's start to its exit; CPU of the stage's processes (the CLI
and what it reaped, and each worker with its pool processes, from /proc before and after: the
workers' start-up is not in it), the services' CPU apart (Postgres and its connections, Redis);
peak RSS sampled over the CLI's and the workers' process trees at once (summed, and the largest
single process); the rows per account and table of the warehouse the stage wrote.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.accounts_world import BenchAccount
from benchmarks.peer_stage import DAY_TABLES, RAW_SCHEMA, SNAPSHOT_TABLES, TABLES
from benchmarks.process_tree import ProcessTree, subtree, tree_cpu_s
from benchmarks.run import REPO
from fleet_pipeline.settings import VENDOR_ENV_PREFIXES

BIN = Path(sys.executable).parent
DEFINITIONS_MODULE = "fleet_pipeline.definitions"
# The console logger at WARNING, as the peer benchmark's launched stage runs.
QUIET_RUN_CONFIG = json.dumps({"loggers": {"console": {"config": {"log_level": "WARNING"}}}})
DAGSTER_DATABASE = "dagster"
WORKER_READY_TIMEOUT_S = 300
RUN_TIMEOUT_S = 3600


def base_env(accounts_file: Path, key_env: Mapping[str, str]) -> dict[str, str]:
    """This environment without any vendor's or the project's own variables (a stage sets what it
    means), with the accounts file and the variables holding the accounts' keys."""
    env = {k: v for k, v in os.environ.items() if not k.startswith((*VENDOR_ENV_PREFIXES, "FLEET_"))}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["DBT_SEND_ANONYMOUS_USAGE_STATS"] = "False"
    env["FLEET_ACCOUNTS_FILE"] = str(accounts_file)
    env.update(key_env)
    return env


def materialize_command(accounts: list[BenchAccount], day: str) -> list[str]:
    # One run: each account's snapshot first (its day's assets depend on it), the day's assets.
    select = ",".join(f"{RAW_SCHEMA}/{a.name}/{t}" for a in accounts for t in (*SNAPSHOT_TABLES, *DAY_TABLES))
    return [str(BIN / "dagster"), "asset", "materialize", "-m", DEFINITIONS_MODULE, "--config-json", QUIET_RUN_CONFIG,
            "--select", select, "--partition", day]


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def launch(command: list[str], env: Mapping[str, str], log: Path, workers: Mapping[str, int] | None = None,
           services: Mapping[str, int] | None = None) -> dict[str, Any]:
    """Run ``command`` to its end; its wall, CPU and memory, the ``workers``' CPU (name -> pid of a
    process tree running the run's steps) and the ``services``' CPU (name -> pid) meanwhile."""
    workers, services = dict(workers or {}), dict(services or {})
    worker_cpu = {name: tree_cpu_s(pid) for name, pid in workers.items()}
    service_cpu = {name: tree_cpu_s(pid) for name, pid in services.items()}
    cpu_before = _children_cpu_s()
    with log.open("a") as output:
        output.write(f"\n===== {' '.join(command[:4])} --select {command[command.index('--select') + 1]} =====\n")
        output.flush()
        started_at, started = time.time(), time.perf_counter()
        process = subprocess.Popen(command, cwd=REPO, env=dict(env), stdout=output, stderr=output)
        tree = ProcessTree([process.pid, *workers.values()])
        try:
            returncode = process.wait(timeout=RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            returncode = process.wait()
        wall = time.perf_counter() - started
    ended_at = time.time()
    sampled = tree.stop()
    worker_cpu = {name: round(tree_cpu_s(pid) - worker_cpu[name], 2) for name, pid in workers.items()}
    service_cpu = {name: round(tree_cpu_s(pid) - service_cpu[name], 2) for name, pid in services.items()}
    # The CLI's own: what it reaped (RUSAGE_CHILDREN) or what was sampled of its tree, the larger
    # (nobody reaps a forkserver; sampling misses the end of a short process).
    cli_sampled = sum(p["cpu_s"] for p in subtree(sampled["processes"], process.pid))
    cli_cpu = max(_children_cpu_s() - cpu_before, cli_sampled)
    return {
        "wall_s": round(wall, 3), "started_at": started_at, "ended_at": ended_at,
        "cpu_s": round(cli_cpu + sum(worker_cpu.values()), 2), "cli_cpu_s": round(cli_cpu, 2),
        "worker_cpu_s": worker_cpu, "services_cpu_s": service_cpu,
        "peak_rss_mib": sampled["peak_sum_rss_mib"], "max_process_peak_rss_mib": sampled["max_process_peak_rss_mib"],
        "peak_pss_mib": sampled["peak_sum_pss_mib"], "processes": len(sampled["processes"]),
        "success": returncode == 0, "errors": [] if returncode == 0 else [f"the CLI exited {returncode}; see {log}"],
    }


def rows_by_account(conn: Any) -> dict[str, dict[str, int]]:
    """account -> table -> rows, of the benchmark's tables in the warehouse ``conn`` opened."""
    existing = {name for (name,) in conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = ?", [RAW_SCHEMA]).fetchall()}
    rows: dict[str, dict[str, int]] = {}
    for table in TABLES:
        if table in existing:
            for account, count in conn.execute(f'SELECT account, count(*) FROM {RAW_SCHEMA}."{table}" GROUP BY 1').fetchall():
                rows.setdefault(account, {})[table] = count
    return rows


# -- embedded ----------------------------------------------------------------------------------------


def run_embedded(accounts: list[BenchAccount], day: str, env: Mapping[str, str], folder: Path, log: Path,
                 services: Mapping[str, int]) -> dict[str, Any]:
    """The accounts' day in the default mode; ``services`` (name -> pid): whose CPU to count apart."""
    from fleet_pipeline.ingest.warehouse import connect
    from fleet_pipeline.instance import DAGSTER_YAML

    home = folder / "dagster_home"
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text(DAGSTER_YAML)
    warehouse = folder / "warehouse.duckdb"
    stage_env = {**env, "DAGSTER_HOME": str(home), "FLEET_DATA_DIR": str(folder / "data"),
                 "FLEET_DUCKDB_PATH": str(warehouse)}
    result = launch(materialize_command(accounts, day), stage_env, log, services=services)
    if warehouse.exists():
        with connect(warehouse, read_only=True) as conn:
            result["rows"] = rows_by_account(conn)
    return result


# -- distributed -------------------------------------------------------------------------------------


@dataclass
class Services:
    """Postgres and Redis of every distributed stage."""

    postgres: Any
    redis: Any

    def pids(self) -> dict[str, int]:
        return {name: pid for name, pid in (("postgres", self.postgres.pid()), ("redis", self.redis.pid())) if pid}


@contextmanager
def services() -> Iterator[Services]:
    from fleet_pipeline.services import throwaway_postgres, throwaway_redis

    with throwaway_postgres("bench-accounts-pg-") as postgres, throwaway_redis("bench-accounts-redis-") as redis:
        postgres.create_database(DAGSTER_DATABASE)
        yield Services(postgres, redis)


def distributed_env(env: Mapping[str, str], running: Services, folder: Path, label: str) -> dict[str, str]:
    """The distributed mode's variables as ``cluster up`` sets them, for a stage in ``folder`` with
    a lake of its own (catalog database ``lake_<label>``, data under the folder)."""
    from fleet_pipeline.cluster import ClusterState, cluster_env, process_env

    state = ClusterState(folder, running.postgres.port, running.redis.port, webserver_port=0, processes={})
    variables = cluster_env(state)
    variables["FLEET_LAKE_CATALOG"] = running.postgres.create_database(f"lake_{label}")
    del variables["FLEET_SERVING_POSTGRES"]  # source steps alone: nothing is published
    # The workers run `dbt` and Dagster's commands by name: the venv's bin first on PATH.
    return {**env, **variables, "PATH": process_env({})["PATH"]}


def run_distributed(accounts: list[BenchAccount], workers: int, day: str, env: Mapping[str, str], running: Services,
                    folder: Path, log: Path, services: Mapping[str, int]) -> dict[str, Any]:
    """The accounts' day on ``workers`` Celery workers, started for it and stopped after it;
    ``services`` (name -> pid) counted apart, as are Postgres and Redis."""
    from fleet_pipeline import settings
    from fleet_pipeline.cluster import start_celery_worker, wait_for_worker, write_celery_config
    from fleet_pipeline.ingest.warehouse import connect, ensure_lake
    from fleet_pipeline.services import ServiceError, stop_process

    label = f"{len(accounts)}x{workers}"
    stage_env = distributed_env(env, running, folder, label)
    problems = settings.configuration_problems(stage_env)
    if problems:
        return {"success": False, "errors": ["the stage's configuration is invalid: " + "; ".join(problems)]}
    # The instance's settings file (its tables are created in Postgres on first use), and the lake's
    # extensions and catalog, before the workers start: not what the run costs.
    preparing = time.perf_counter()
    prepared = subprocess.run([sys.executable, "-c", "from fleet_pipeline.instance import prepare_instance_home; "
                               "prepare_instance_home()"], cwd=REPO, env=stage_env, capture_output=True, text=True)
    if prepared.returncode != 0:
        return {"success": False, "errors": [f"preparing the instance in Postgres failed: {prepared.stderr[-800:]}"]}
    lake = settings.lake_settings(stage_env)
    ensure_lake(lake)
    prepare_s = round(time.perf_counter() - preparing, 1)
    config = write_celery_config(folder / "celery", stage_env["FLEET_CELERY_BROKER"])
    started: dict[str, subprocess.Popen] = {}
    ready_s: dict[str, float] = {}
    try:
        for index in range(1, workers + 1):
            name = f"worker{index}"
            began = time.perf_counter()
            started[name] = start_celery_worker(name, config, stage_env, folder / "logs" / f"{name}.log")
            wait_for_worker(folder / "logs" / f"{name}.log", started[name], WORKER_READY_TIMEOUT_S)
            ready_s[name] = round(time.perf_counter() - began, 1)
        result = launch(materialize_command(accounts, day), stage_env, log,
                        workers={name: p.pid for name, p in started.items()},
                        services={**services, **running.pids()})
    except ServiceError as error:  # a worker that did not start: this stage fails, the others still count
        return {"success": False, "errors": [str(error)]}
    finally:
        for process in started.values():
            stop_process(process.pid, timeout_s=60, group=True)  # collects the exited worker too
        with log.open("a") as combined:  # the stage's folder is removed at the end
            for name in started:
                combined.write(f"\n===== {name} of {label} =====\n"
                               + (folder / "logs" / f"{name}.log").read_text(errors="replace"))
    result["prepare_s"], result["workers_ready_s"] = prepare_s, ready_s
    result["steps_by_worker"] = steps_by_worker(folder / "dagster_home", stage_env)
    with connect("", lake, read_only=True) as conn:
        result["rows"] = rows_by_account(conn)
    return result


def steps_by_worker(home: Path, env: Mapping[str, str]) -> dict[str, list[str]]:
    """Worker -> the step keys it executed in the stage's run (the newest run of the instance),
    from the engine events each worker logged into Postgres."""
    command = [sys.executable, "-c", STEPS_BY_WORKER, str(home)]
    done = subprocess.run(command, cwd=REPO, env=dict(env), capture_output=True, text=True, check=False)
    return json.loads(done.stdout) if done.returncode == 0 and done.stdout.strip() else {}


# Run in a child with the stage's environment: the instance's settings name FLEET_DAGSTER_POSTGRES.
STEPS_BY_WORKER = """
import json, sys
from dagster import DagsterEventType, DagsterInstance
with DagsterInstance.from_config(sys.argv[1]) as instance:
    runs = instance.get_runs(limit=1)
    by_worker = {}
    for entry in instance.all_logs(runs[0].run_id, of_type=DagsterEventType.ENGINE_EVENT) if runs else []:
        event = entry.dagster_event
        metadata = {k: getattr(v, "value", v) for k, v in event.event_specific_data.metadata.items()}
        if "Celery worker" in metadata:
            by_worker.setdefault(str(metadata["Celery worker"]).split("@")[0], []).append(event.step_key)
print(json.dumps(by_worker))
"""
