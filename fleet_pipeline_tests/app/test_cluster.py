"""The distributed mode's runtime on loopback: Dagster's instance in Postgres, steps on two Celery workers.

Real processes, started the way ``fleet-pipeline cluster up`` starts them (``fleet_pipeline.services``
and ``fleet_pipeline.cluster``): Postgres, Redis, two workers of one step at a time each. Runs are
started by ``dagster asset materialize`` of ``celery_code_location`` (the real Tracksolid assets with
the product's Celery executor) against a Tracksolid sandbox served by the test, and judged by the
World, the instance's own records (read from Postgres) and the warehouse.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import pytest
from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus

from fleet_pipeline import celery_watch, cluster
from fleet_pipeline.instance import prepare_instance_home
from fleet_pipeline.sandbox import tracksolid as sandbox_tracksolid
from fleet_pipeline.sandbox.world import World
from fleet_pipeline.services import Postgres, Redis, free_port, live_group_members, process_alive, stop_process
from fleet_pipeline_tests import celery_code_location
from fleet_pipeline_tests import ops_code_location as ops
from fleet_pipeline_tests.ingest.test_concurrency import (
    DAY_A,
    DAY_B,
    WRITERS,
    _assert_matches_world,
    _query,
    _step_windows,
    _wait_until,
)

BIN = Path(sys.executable).parent


@dataclass
class Cluster:
    postgres: Postgres
    env: dict[str, str]
    workers: dict[str, subprocess.Popen]
    folder: Path

    def worker_log(self, name: str) -> Path:
        return self.folder / "logs" / f"{name}.log"


@pytest.fixture(scope="module")
def running_cluster() -> Iterator[Cluster]:
    # Not a pytest tmp dir: Postgres runs as the postgres user when the tests run as root, and
    # pytest's folders are private to their owner.
    folder = Path(tempfile.mkdtemp(prefix="fleet-cluster-test-"))
    folder.chmod(0o755)
    postgres, redis = Postgres(folder / "postgres", free_port()), Redis(folder / "redis", free_port())
    workers: dict[str, subprocess.Popen] = {}
    postgres.start()
    try:
        postgres.create_database("dagster")
        redis.start()
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
        env.update({
            "DAGSTER_HOME": str(folder / "dagster_home"),
            "FLEET_DAGSTER_POSTGRES": postgres.url("dagster"),
            "FLEET_EXECUTOR": "celery",
            "FLEET_CELERY_BROKER": redis.url(0),
            "FLEET_SHARED_STATE": redis.url(1),
            "FLEET_STEP_RETRIES": "0",
            "FLEET_PARTITIONS_START": os.environ.get("FLEET_PARTITIONS_START", "2026-01-01"),
        })
        with pytest.MonkeyPatch.context() as patch:
            for name, value in env.items():
                patch.setenv(name, value)
            prepare_instance_home()
            config = cluster.write_celery_config(folder / "celery", redis.url(0))
            child_env = cluster.process_env(env)
            for name in cluster.WORKERS:
                workers[name] = cluster.start_celery_worker(name, config, child_env, folder / "logs" / f"{name}.log")
            for name, process in workers.items():
                cluster.wait_for_worker(folder / "logs" / f"{name}.log", process, timeout_s=240)
            yield Cluster(postgres, child_env, workers, folder)
    finally:
        for process in workers.values():
            stop_process(process.pid, timeout_s=30, group=True)
            process.wait(timeout=30)
        redis.stop()
        postgres.stop()
        shutil.rmtree(folder, ignore_errors=True)


def _materialize(selection: list, day, config: dict, env: dict[str, str], log: Path) -> subprocess.Popen:
    """``dagster asset materialize`` of ``selection`` (of ``day``'s partition, unless None)."""
    command = [str(BIN / "dagster"), "asset", "materialize", "-m", celery_code_location.MODULE,
               "--select", ",".join(a.key.to_user_string() for a in selection), "--config-json", json.dumps(config)]
    command += ["--partition", day.isoformat()] if day is not None else []
    with log.open("w") as output:  # a file, not a pipe: a full pipe would stall the run
        return subprocess.Popen(command, env=env, stdout=output, stderr=output)


def _runs_in_postgres(postgres: Postgres) -> dict[str, str]:
    """run id -> status, read from the instance's Postgres tables directly (not through Dagster)."""
    with psycopg2.connect(postgres.url("dagster", driver="")) as conn, conn.cursor() as cursor:
        cursor.execute("select run_id, status from runs")
        return dict(cursor.fetchall())


def _celery_workers_of(instance: DagsterInstance, run_id: str) -> dict[str, str]:
    """step key -> the worker that executed it, from the engine events each worker logged."""
    workers = {}
    for entry in instance.all_logs(run_id, of_type=DagsterEventType.ENGINE_EVENT):
        event = entry.dagster_event
        metadata = {key: getattr(value, "value", value) for key, value in event.event_specific_data.metadata.items()}
        if "Celery worker" in metadata:
            workers[event.step_key] = metadata["Celery worker"]
    return workers


def test_source_steps_run_on_two_workers_at_once_with_runs_and_events_in_postgres(running_cluster, tmp_path):
    world, warehouse = World(seed=42, n_devices=8), tmp_path / "warehouse.duckdb"
    before = set(_runs_in_postgres(running_cluster.postgres))
    with sandbox_tracksolid.make_server(world) as server:
        # Each call a little slow, so that each step lasts seconds: long enough for both to be taken.
        server.knobs.latency_s = 0.05
        config = ops.run_config(server.base_url, tmp_path / "cache", warehouse)
        log = tmp_path / "run.log"
        process = _materialize(WRITERS, DAY_A, config, running_cluster.env, log)
        assert process.wait(timeout=600) == 0, log.read_text()[-3000:]

    runs = {run_id: status for run_id, status in _runs_in_postgres(running_cluster.postgres).items()
            if run_id not in before}
    assert list(runs.values()) == ["SUCCESS"], runs
    [run_id] = runs
    with DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        by_step = _celery_workers_of(instance, run_id)
        windows = _step_windows(instance, [run_id])
    assert len(by_step) == 2 and {w.split("@")[0] for w in by_step.values()} == set(cluster.WORKERS), by_step
    (first_start, first_end, _), (second_start, _, _) = windows
    assert second_start < first_end, f"the two steps did not run at once: {windows}"
    _assert_matches_world(warehouse, world, DAY_A, ("trips", "alarms"))


def _pool_child(worker: subprocess.Popen) -> int:
    """The pid of the worker's pool process (concurrency 1: its one child), which runs the steps."""
    children = Path(f"/proc/{worker.pid}/task/{worker.pid}/children").read_text().split()
    assert len(children) == 1, f"the worker has {len(children)} pool processes, expected 1"
    return int(children[0])


def _launch_until_a_worker_runs_it(selection: list, day, config: dict, env: dict[str, str], cluster_: Cluster,
                                   log: Path, is_called) -> tuple[subprocess.Popen, str, str]:
    """Launch a run and wait until a worker has started its one step and ``is_called()`` (the step
    calls the vendor); returns the run's process, its id and the worker's name (``worker1``)."""
    before = set(_runs_in_postgres(cluster_.postgres))
    process = _materialize(selection, day, config, env, log)
    with DagsterInstance.get() as instance:
        def started() -> str | None:
            new = [r for r in _runs_in_postgres(cluster_.postgres) if r not in before]
            return next((r for r in new if _celery_workers_of(instance, r)), None)

        _wait_until(lambda: started() is not None and is_called(), "the step to start on a worker", timeout_s=300)
        run_id = started()
        [worker_name] = _celery_workers_of(instance, run_id).values()
    return process, run_id, worker_name.split("@")[0]


# How long a silent worker is given in the tests below (the product's default is 60 s), and how soon
# after the kill the run must have ended: the silence, the checks' period and answer timeout, and a
# margin for a loaded machine.
WORKER_LOST_S = 10
RUN_ENDS_WITHIN_S = WORKER_LOST_S + celery_watch.CHECK_EVERY_S + celery_watch.ANSWER_TIMEOUT_S + 60


def _kill_whole_worker(cluster_: Cluster, name: str) -> None:
    """SIGKILL to the worker's main process and its pool process at once (its process group), as the
    loss of its machine does: nothing of the worker is left to report anything."""
    worker = cluster_.workers[name]
    child = _pool_child(worker)
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait(timeout=30)
    _wait_until(lambda: not process_alive(child), "the worker's pool process to be gone", timeout_s=30)


def _restart_worker(cluster_: Cluster, name: str) -> None:
    """The killed worker started again under its name, so that the module's other tests have two."""
    log = cluster_.worker_log(name)
    log.rename(log.with_name(f"{name}.killed-{time.time_ns()}.log"))  # the new one's readiness in a log of its own
    cluster_.workers[name] = cluster.start_celery_worker(name, cluster_.folder / "celery", cluster_.env, log)
    cluster.wait_for_worker(log, cluster_.workers[name], timeout_s=240)


def _kill_pool_process(cluster_: Cluster, name: str) -> None:
    """SIGKILL to the worker's pool process alone: the out-of-memory killer's usual choice, as the pool
    process holds the step's memory. The worker's main process lives on."""
    os.kill(_pool_child(cluster_.workers[name]), signal.SIGKILL)


# What is killed mid-step, and what the step's failure then says.
LOSSES = {
    "pool process": (_kill_pool_process, "lost the process running it"),
    "whole worker": (_kill_whole_worker, "has not answered for"),
}


def _wait_for_run_end(process: subprocess.Popen, log: Path, killed_at: float) -> int:
    """The run's exit code, once it has ended within RUN_ENDS_WITHIN_S of the kill at ``killed_at``."""
    try:
        return process.wait(timeout=max(0.0, killed_at + RUN_ENDS_WITHIN_S - time.monotonic()))
    except subprocess.TimeoutExpired:
        process.kill()
        raise AssertionError(f"the run did not end within {RUN_ENDS_WITHIN_S:.0f} s of the kill; its log ends: "
                             + log.read_text()[-2000:]) from None


@pytest.mark.parametrize("loss", LOSSES)
def test_a_worker_killed_mid_step_fails_the_step_saying_why_and_leaves_the_day_as_it_was(running_cluster, tmp_path,
                                                                                       loss):
    world, warehouse = World(seed=42, n_devices=8), tmp_path / "warehouse.duckdb"
    trips = WRITERS[0]
    kill, explanation = LOSSES[loss]
    env = {**running_cluster.env, "FLEET_CELERY_WORKER_LOST_S": str(WORKER_LOST_S)}  # no step retries
    with sandbox_tracksolid.make_server(world) as server:
        config = ops.run_config(server.base_url, tmp_path / "cache", warehouse)
        # DAY_A loaded first: the rows the killed run must not touch.
        first = _materialize([trips], DAY_A, config, env, tmp_path / "first.log")
        assert first.wait(timeout=600) == 0, (tmp_path / "first.log").read_text()[-3000:]
        day_a = _query(warehouse, "select * from raw_tracksolid.trips order by all")

        server.knobs.latency_s = 0.5  # a step of minutes: killed while it extracts DAY_B
        process, run_id, worker_name = _launch_until_a_worker_runs_it(
            [trips], DAY_B, config, env, running_cluster, tmp_path / "killed.log", lambda: server.count() > 0)
        killed_at = time.monotonic()
        kill(running_cluster, worker_name)
        code = _wait_for_run_end(process, tmp_path / "killed.log", killed_at)
        print(f"{loss} killed: the run ended {time.monotonic() - killed_at:.1f} s later "
              f"(FLEET_CELERY_WORKER_LOST_S={WORKER_LOST_S})")
        assert code != 0, "the run succeeded although its step was killed"

        with DagsterInstance.get() as instance:
            assert instance.get_run_by_id(run_id).status == DagsterRunStatus.FAILURE
            [failure] = instance.all_logs(run_id, of_type=DagsterEventType.STEP_FAILURE)
        message = failure.dagster_event.step_failure_data.error.message
        assert f"{worker_name}@" in message and explanation in message, message
        assert "kept its previous rows" in message, message
        assert _query(warehouse, "select * from raw_tracksolid.trips order by all") == day_a
        assert _query(warehouse, "select count(*) from raw_tracksolid.trips where partition_date = ?",
                      [DAY_B]) == [(0,)]

        # A worker survives the loss of its pool process; a lost worker's step is re-run by the other.
        assert process_alive(running_cluster.workers[worker_name].pid) == (loss == "pool process")
        server.knobs.latency_s = 0.0
        again = _materialize([trips], DAY_B, config, env, tmp_path / "again.log")
        assert again.wait(timeout=600) == 0, (tmp_path / "again.log").read_text()[-3000:]
    if loss == "whole worker":
        _restart_worker(running_cluster, worker_name)
    _assert_matches_world(warehouse, world, DAY_A, ("trips",))
    _assert_matches_world(warehouse, world, DAY_B, ("trips",))


def test_a_whole_worker_killed_mid_step_has_the_step_retried_on_the_other_worker(running_cluster, tmp_path):
    world, warehouse = World(seed=42, n_devices=8), tmp_path / "warehouse.duckdb"
    trips = WRITERS[0]
    # The run's process decides the retry (the step's retry policy, as for a crashed step process).
    env = {**running_cluster.env, "FLEET_CELERY_WORKER_LOST_S": str(WORKER_LOST_S),
           "FLEET_STEP_RETRIES": "1", "FLEET_STEP_RETRY_DELAY_S": "0"}
    with sandbox_tracksolid.make_server(world) as server:
        config = ops.run_config(server.base_url, tmp_path / "cache", warehouse)
        server.knobs.latency_s = 0.5
        process, run_id, worker_name = _launch_until_a_worker_runs_it(
            [trips], DAY_B, config, env, running_cluster, tmp_path / "run.log", lambda: server.count() > 0)
        killed_at = time.monotonic()
        _kill_whole_worker(running_cluster, worker_name)
        server.knobs.latency_s = 0.0
        assert process.wait(timeout=600) == 0, (tmp_path / "run.log").read_text()[-3000:]
        print(f"whole worker killed, step retried: the run succeeded {time.monotonic() - killed_at:.1f} s later "
              f"(FLEET_CELERY_WORKER_LOST_S={WORKER_LOST_S})")

    with DagsterInstance.get() as instance:
        assert instance.get_run_by_id(run_id).status == DagsterRunStatus.SUCCESS
        [retry] = instance.all_logs(run_id, of_type=DagsterEventType.STEP_UP_FOR_RETRY)
        [worker_of_last_attempt] = _celery_workers_of(instance, run_id).values()
    assert f"Celery worker {worker_name}@" in retry.dagster_event.step_retry_data.error.message
    assert worker_of_last_attempt.split("@")[0] != worker_name
    _restart_worker(running_cluster, worker_name)
    # The day once, as the World has it: the lost attempt wrote nothing, the retry all of it.
    _assert_matches_world(warehouse, world, DAY_B, ("trips",))


@pytest.mark.parametrize("loss", LOSSES)
def test_a_step_killed_while_it_holds_the_writer_pool_slot_gives_the_slot_back(running_cluster, tmp_path, loss):
    kill, _ = LOSSES[loss]
    env = {**running_cluster.env, "FLEET_CELERY_WORKER_LOST_S": str(WORKER_LOST_S)}
    log = tmp_path / "run.log"
    process, run_id, worker_name = _launch_until_a_worker_runs_it(
        [celery_code_location.holds_the_writer_slot], None, {}, env, running_cluster, log, lambda: True)
    with DagsterInstance.get() as instance:
        assert run_id in instance.event_log_storage.get_concurrency_run_ids(), "the step holds no pool slot"
        killed_at = time.monotonic()
        kill(running_cluster, worker_name)
        assert _wait_for_run_end(process, log, killed_at) != 0
        assert instance.get_run_by_id(run_id).status == DagsterRunStatus.FAILURE
        # Freed by the run itself as the step failed: no daemon runs here to free it after the run.
        assert run_id not in instance.event_log_storage.get_concurrency_run_ids()
    if loss == "whole worker":
        _restart_worker(running_cluster, worker_name)


def test_cluster_up_starts_everything_and_down_leaves_no_process(tmp_path):
    """What a person runs: `fleet-pipeline cluster up` (here without the demo) and `cluster down`."""
    data = Path(tempfile.mkdtemp(prefix="fleet-cluster-cli-"))
    data.chmod(0o755)  # Postgres runs as the postgres user under root: its folder must be reachable
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLEET_", "DAGSTER_HOME"))}
    env["FLEET_DATA_DIR"] = str(data)
    command = [str(BIN / "fleet-pipeline"), "cluster"]
    up = subprocess.run([*command, "up", "--no-demo"], env=env, capture_output=True, text=True, timeout=900)
    state = cluster.ClusterState.load(data / "cluster")
    try:
        assert up.returncode == 0 and state is not None, up.stdout[-3000:] + up.stderr[-3000:]
        for progress in ("Postgres on 127.0.0.1", "Redis on 127.0.0.1", "Celery worker worker1 ready",
                         "Celery worker worker2 ready", "Dagster UI ready: http://127.0.0.1:"):
            assert progress in up.stdout, up.stdout
        assert f"Dagster UI: {state.ui_url}" in up.stdout
        assert set(state.processes) == {*cluster.WORKERS, "webserver", "daemon"}
        import requests

        assert requests.get(f"{state.ui_url}/server_info", timeout=30).status_code == 200
        status = subprocess.run([*command, "status"], env=env, capture_output=True, text=True, timeout=120)
        assert status.stdout.count("running") == 6, status.stdout  # 4 processes, Redis, Postgres
        service_pids = [state.redis.pid(), state.postgres.pid()]
        assert all(service_pids)
    finally:
        down = subprocess.run([*command, "down"], env=env, capture_output=True, text=True, timeout=600)
    assert down.returncode == 0, down.stdout + down.stderr
    assert {pid: live_group_members(pid) for pid in state.processes.values()} == {
        pid: [] for pid in state.processes.values()}, "a process of the cluster outlived `down`"
    assert not any(process_alive(pid) for pid in service_pids), "Redis or Postgres still runs"
    assert not (data / "cluster" / "cluster.json").exists()
    shutil.rmtree(data, ignore_errors=True)
