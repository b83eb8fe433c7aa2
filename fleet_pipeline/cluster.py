"""``fleet-pipeline cluster up|down|status``: the distributed mode on one machine, for a person to try.

``up`` starts, in ``<FLEET_DATA_DIR>/cluster/``: Postgres (the Dagster instance's database and the
lake's catalog, the marts for BI), Redis (the Celery broker and the shared vendor state), two Celery workers, the
Dagster webserver and daemon, all on loopback; then it launches the demo's runs through the
webserver, so the daemon starts them and their steps run on the workers, and prints where the UI
is. ``down`` stops every process it started (each in a process group of its own, by the ids it
recorded) and the services. The same pieces map onto Kubernetes as docs/distributed.md says.

The configuration is the distributed mode's environment (docs/configuration.md), written to
``cluster/env`` so that a shell can ``source`` it and run ``dagster`` or ``fleet-pipeline``
against the same cluster. The warehouse is a DuckLake (FLEET_WAREHOUSE=ducklake): its catalog in
the cluster's Postgres, its Parquet files under ``cluster/data/lake``; the marts are also published
to the cluster's Postgres (FLEET_SERVING_POSTGRES). Every process started here (workers, webserver,
daemon, and the run workers the daemon starts) gets the same environment.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from fleet_pipeline import settings
from fleet_pipeline.ingest.warehouse import LakeError, ensure_lake
from fleet_pipeline.services import Postgres, Redis, ServiceError, free_port, process_alive, stop_process, wait_for_port

WORKERS = ("worker1", "worker2")
DAGSTER_DATABASE = "dagster"
LAKE_DATABASE = "lake"
SERVING_DATABASE = "serving"
# Redis databases: the Celery broker and results apart from the vendors' ledgers and tokens.
BROKER_DB, SHARED_STATE_DB = 0, 1
# The module dagster_celery's app reads its broker from (dagster_celery.make_app): without it a
# worker silently uses the default AMQP broker on localhost and never sees a step.
CELERY_CONFIG_MODULE = "dagster_celery_config"
STARTUP_TIMEOUT_S = 240
RUN_TIMEOUT_S = 1800


def cluster_dir(env: Mapping[str, str] | None = None) -> Path:
    return settings.data_dir(env) / "cluster"


@dataclass
class ClusterState:
    """What ``up`` started, saved as JSON so that ``down`` (another process) can stop it."""

    folder: Path
    postgres_port: int
    redis_port: int
    webserver_port: int
    processes: dict[str, int]  # name -> pid, each the leader of its own process group

    @property
    def path(self) -> Path:
        return self.folder / "cluster.json"

    def save(self) -> None:
        self.path.write_text(json.dumps({"postgres_port": self.postgres_port, "redis_port": self.redis_port,
                                         "webserver_port": self.webserver_port, "processes": self.processes},
                                        indent=2))

    @classmethod
    def load(cls, folder: Path) -> ClusterState | None:
        try:
            data = json.loads((folder / "cluster.json").read_text())
        except FileNotFoundError:
            return None
        return cls(folder, data["postgres_port"], data["redis_port"], data["webserver_port"],
                   {name: int(pid) for name, pid in data["processes"].items()})

    @property
    def postgres(self) -> Postgres:
        return Postgres(self.folder / "postgres", self.postgres_port)

    @property
    def redis(self) -> Redis:
        return Redis(self.folder / "redis", self.redis_port)

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.webserver_port}"


def cluster_env(state: ClusterState) -> dict[str, str]:
    """The distributed mode's variables for this cluster (no secret: Postgres trusts loopback here)."""
    data = state.folder / "data"
    return {
        "DAGSTER_HOME": str(state.folder / "dagster_home"),
        "FLEET_DATA_DIR": str(data),
        "FLEET_DAGSTER_POSTGRES": state.postgres.url(DAGSTER_DATABASE),
        "FLEET_EXECUTOR": "celery",
        "FLEET_CELERY_BROKER": state.redis.url(BROKER_DB),
        "FLEET_SHARED_STATE": state.redis.url(SHARED_STATE_DB),
        "FLEET_WAREHOUSE": "ducklake",
        "FLEET_LAKE_CATALOG": state.postgres.url(LAKE_DATABASE, driver=""),
        "FLEET_LAKE_DATA_PATH": str(data / "lake"),
        # The marts published to Postgres for many BI users at once, beside the serving DuckDB file.
        "FLEET_SERVING_POSTGRES": state.postgres.url(SERVING_DATABASE, driver=""),
    }


def process_env(extra: Mapping[str, str]) -> dict[str, str]:
    """This process's environment with ``extra``, and the venv's bin first on PATH: a worker runs
    ``dbt`` and Dagster's own commands by name."""
    bin_dir = str(Path(sys.executable).parent)
    path = os.environ.get("PATH", "")
    return {**os.environ, **extra, "PATH": bin_dir + (os.pathsep + path if path else "")}


def write_celery_config(folder: Path, broker: str) -> Path:
    """The folder holding the config module every worker imports (put it on PYTHONPATH)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{CELERY_CONFIG_MODULE}.py").write_text(
        "# Written by fleet_pipeline/cluster.py: the broker and result backend of the Dagster Celery app.\n"
        f"broker_url = {broker!r}\nresult_backend = {broker!r}\nworker_prefetch_multiplier = 1\n"
        "# The run asks the worker that started a step whether it still runs it (fleet_pipeline/celery_watch.py):\n"
        "# the task's started state names that worker.\n"
        "task_track_started = True\n"
        "# A busy worker reserves no further step: a worker killed holds none it had not started yet\n"
        "# (Redis would deliver such a step again only after its visibility timeout, an hour).\n"
        "worker_disable_prefetch = True\n")
    return folder


def start_celery_worker(name: str, config_folder: Path, env: Mapping[str, str], log: Path,
                        concurrency: int = 1) -> subprocess.Popen:
    """One Celery worker of Dagster's app on the ``dagster`` queue, ``concurrency`` steps at a time,
    in a process group of its own (``stop_process(pid, group=True)`` stops it and its pool)."""
    celery = Path(sys.executable).with_name("celery")
    pythonpath = os.pathsep.join(p for p in (str(config_folder), env.get("PYTHONPATH", "")) if p)
    command = [str(celery), "-A", "dagster_celery.app", "worker", "-n", f"{name}@%h", "-Q", "dagster",
               "--concurrency", str(concurrency), "--prefetch-multiplier", "1", "--loglevel", "INFO"]
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        return subprocess.Popen(command, env={**env, "PYTHONPATH": pythonpath}, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True, cwd=settings.project_root())


def wait_for_worker(log: Path, process: subprocess.Popen | None, timeout_s: float) -> None:
    """Until the worker logs that it is ready (connected to the broker, listening on its queue)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if log.exists() and " ready." in log.read_text(errors="replace"):
            return
        if process is not None and process.poll() is not None:
            raise ServiceError(f"the Celery worker exited (code {process.returncode}); its log: {log}")
        time.sleep(0.5)
    raise ServiceError(f"the Celery worker was not ready within {timeout_s:.0f} s; its log: {log}")


def _start(name: str, command: list[str], env: Mapping[str, str], logs: Path) -> subprocess.Popen:
    with open(logs / f"{name}.log", "ab") as out:
        return subprocess.Popen(command, env=dict(env), stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=settings.project_root())


def _say(message: str) -> None:
    print(message, flush=True)


def up(days: int, demo: bool) -> int:
    folder = cluster_dir()
    existing = ClusterState.load(folder)
    if existing is not None and any(process_alive(pid) for pid in existing.processes.values()):
        _say(f"fleet-pipeline cluster: already running (UI {existing.ui_url}); `fleet-pipeline cluster down` first")
        return 2
    folder.mkdir(parents=True, exist_ok=True)
    state = ClusterState(folder, free_port(), free_port(), free_port(), {})
    logs = folder / "logs"
    logs.mkdir(exist_ok=True)
    started = time.monotonic()

    def step(message: str) -> None:
        _say(f"[{time.monotonic() - started:5.1f}s] {message}")

    try:
        step(f"Postgres on 127.0.0.1:{state.postgres_port} ({state.postgres.data}) ...")
        state.save()
        state.postgres.start()
        for database in (DAGSTER_DATABASE, LAKE_DATABASE, SERVING_DATABASE):
            state.postgres.create_database(database)
        step(f"Redis on 127.0.0.1:{state.redis_port} ...")
        state.redis.start()

        env = cluster_env(state)
        (folder / "env").write_text("".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items()))
        problems = settings.configuration_problems({**os.environ, **env})
        if problems:
            raise ServiceError("the cluster's configuration is invalid: " + "; ".join(problems))
        os.environ.update(env)
        from fleet_pipeline.instance import prepare_instance_home

        step(f"Dagster instance in Postgres ({DAGSTER_DATABASE}), home {env['DAGSTER_HOME']} ...")
        prepare_instance_home()  # writes dagster.yaml with the Postgres storage and creates its tables
        lake = settings.lake_settings()
        assert lake is not None  # cluster_env sets FLEET_WAREHOUSE=ducklake
        step(f"DuckLake: catalog in Postgres ({LAKE_DATABASE}), data in {lake.data_path} ...")
        # Once here, before the workers: the extensions copied into the extension folder and the
        # catalog's tables created by one process, not raced for by the first steps.
        ensure_lake(lake)

        child_env = process_env(env)
        celery_config = write_celery_config(folder / "celery", env["FLEET_CELERY_BROKER"])
        workers = {}
        for name in WORKERS:
            step(f"Celery worker {name} ...")
            workers[name] = start_celery_worker(name, celery_config, child_env, logs / f"{name}.log")
            state.processes[name] = workers[name].pid
            state.save()
        bin_dir = Path(sys.executable).parent
        workspace = str(settings.project_root() / "workspace.yaml")
        step(f"Dagster webserver on 127.0.0.1:{state.webserver_port} and the daemon ...")
        for name, command in (
            ("webserver", [str(bin_dir / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(state.webserver_port),
                           "-w", workspace]),
            ("daemon", [str(bin_dir / "dagster-daemon"), "run", "-w", workspace]),
        ):
            state.processes[name] = _start(name, command, child_env, logs).pid
            state.save()
        for name, process in workers.items():
            wait_for_worker(logs / f"{name}.log", process, STARTUP_TIMEOUT_S)
            step(f"Celery worker {name} ready")
        wait_for_port(state.webserver_port, "the Dagster webserver", STARTUP_TIMEOUT_S, logs / "webserver.log")
        _wait_for_location(state)
        step(f"Dagster UI ready: {state.ui_url}")
    except (ServiceError, settings.ConfigError, LakeError, OSError) as exc:
        _say(f"fleet-pipeline cluster: {exc}")
        _say("stopping what was started ...")
        down()
        return 2

    failed = _run_demo(state, days, step) if demo else 0
    _say("")
    _say(f"The cluster is up. Dagster UI: {state.ui_url}  (runs, their steps on {', '.join(WORKERS)})")
    _say(f"Its configuration: source {folder / 'env'}   logs: {logs}")
    _say("Stop everything with: fleet-pipeline cluster down")
    return 1 if failed else 0


def _graphql(state: ClusterState):
    from dagster_graphql import DagsterGraphQLClient

    return DagsterGraphQLClient("127.0.0.1", port_number=state.webserver_port, timeout=60)


def _wait_for_location(state: ClusterState) -> None:
    """Until the webserver has loaded the code location (the definitions import for a while); a
    location that loaded with an error stops ``up`` with that error, not with runs it cannot find."""
    import requests

    query = ('{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus '
             'locationOrLoadError { __typename ... on PythonError { message } } } } } }')
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            answer = requests.post(f"{state.ui_url}/graphql", json={"query": query}, timeout=10).json()
            entries = answer["data"]["workspaceOrError"]["locationEntries"]
        except (requests.RequestException, KeyError, TypeError, ValueError):
            entries = None
        if entries and all(entry["loadStatus"] == "LOADED" for entry in entries):
            failed = [entry for entry in entries if (entry["locationOrLoadError"] or {}).get("__typename") == "PythonError"]
            if failed:
                raise ServiceError(f"the code location {failed[0]['name']} failed to load: "
                                   f"{failed[0]['locationOrLoadError']['message'].strip()}")
            return
        time.sleep(1)
    raise ServiceError(f"the webserver did not load the code location within {STARTUP_TIMEOUT_S} s; "
                       f"its log: {state.folder / 'logs' / 'webserver.log'}")


def _run_demo(state: ClusterState, days: int, step) -> int:
    """The demo's runs, launched through the webserver (the daemon starts them, the workers run
    their steps), one after another; returns how many failed."""
    from dagster import DagsterRunStatus

    from fleet_pipeline.automation import freshness

    today = datetime.now(timezone.utc).date()
    partitions = [(today - timedelta(days=n)).isoformat() for n in range(days, 0, -1)]
    plan = [("all_snapshots", {})]
    plan += [("all_daily", {"dagster/partition": key}) for key in partitions]
    plan += [(freshness.JOB_NAME, {}),
             ("reporting", {"dagster/asset_partition_range_start": partitions[0],
                            "dagster/asset_partition_range_end": partitions[-1]})]
    client, failed = _graphql(state), 0
    for index, (job, tags) in enumerate(plan, start=1):
        label = f"[{index}/{len(plan)}] {job} " + tags.get("dagster/partition",
                                                          "...".join(v for k, v in tags.items() if "range" in k))
        run_id = client.submit_job_execution(job, tags=tags or None)
        step(f"{label}: run {run_id[:8]} queued ({state.ui_url}/runs/{run_id})")
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while (status := client.get_run_status(run_id)) not in (
                DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED):
            if time.monotonic() > deadline:
                break
            time.sleep(2)
        step(f"{label}: {status.value.lower()}")
        failed += status != DagsterRunStatus.SUCCESS
    return failed


def down() -> int:
    """Stop the processes ``up`` recorded (webserver and daemon first, then the workers), then Redis
    and Postgres; forget them."""
    folder = cluster_dir()
    state = ClusterState.load(folder)
    if state is None:
        _say(f"fleet-pipeline cluster: nothing recorded in {folder}; nothing to stop")
        return 0
    for name in ("webserver", "daemon", *WORKERS):
        pid = state.processes.get(name)
        if pid is not None:
            alive = process_alive(pid)
            # A worker ends its running step first (warm shutdown): give it time before SIGKILL.
            stop_process(pid, timeout_s=60 if name in WORKERS else 20, group=True)
            _say(f"stopped {name} (pid {pid})" if alive else f"{name} (pid {pid}) was not running")
    state.redis.stop()
    _say("stopped Redis")
    try:
        state.postgres.stop()
        _say("stopped Postgres")
    except ServiceError as exc:
        _say(f"Postgres: {exc}")
    state.path.unlink(missing_ok=True)
    return 0


def status() -> int:
    state = ClusterState.load(cluster_dir())
    if state is None:
        _say("fleet-pipeline cluster: not running")
        return 0
    for name, pid in state.processes.items():
        _say(f"{name:<10} pid {pid:<8} {'running' if process_alive(pid) else 'stopped'}")
    for name, pid in (("redis", state.redis.pid()), ("postgres", state.postgres.pid())):
        _say(f"{name:<10} pid {pid or '-':<8} {'running' if pid and process_alive(pid) else 'stopped'}")
    _say(f"Dagster UI: {state.ui_url}")
    return 0
