"""The distributed mode's settings: refused with one clear line when wrong, nothing changed when unset."""

from __future__ import annotations

import os

import pytest

from fleet_pipeline import cluster, executors, settings
from fleet_pipeline.instance import DAGSTER_YAML, dagster_yaml
from fleet_pipeline.services import Postgres, ServiceError, find_binary

POSTGRES = "postgresql+psycopg2://fleet:pw-not-printed@db.internal:5432/dagster"


def test_unset_everything_stays_embedded():
    assert settings.configuration_problems({}) == []
    assert dagster_yaml({}) == DAGSTER_YAML  # SQLite in DAGSTER_HOME, as before
    assert settings.executor_kind({}) == "forkserver"
    assert settings.shared_state_url({}) is None
    assert executors.DEFAULT_EXECUTOR.name == "forked_multiprocess_executor"


def test_a_postgres_url_without_its_driver_is_refused_without_printing_it():
    problems = settings.configuration_problems({"FLEET_DAGSTER_POSTGRES": "postgresql://fleet:pw-not-printed@db/dagster"})
    assert len(problems) == 1
    assert "FLEET_DAGSTER_POSTGRES must start with postgresql+psycopg2://" in problems[0]
    assert "pw-not-printed" not in problems[0]


def test_the_instance_file_names_the_variable_never_the_url():
    written = dagster_yaml({"FLEET_DAGSTER_POSTGRES": POSTGRES})
    assert written.startswith(DAGSTER_YAML)
    assert "postgres_url:\n      env: FLEET_DAGSTER_POSTGRES" in written
    assert "pw-not-printed" not in written and "db.internal" not in written


@pytest.mark.parametrize(("env", "message"), [
    ({"FLEET_EXECUTOR": "celery"}, "FLEET_EXECUTOR=celery needs FLEET_CELERY_BROKER"),
    ({"FLEET_EXECUTOR": "k8s"}, "FLEET_EXECUTOR must be one of forkserver, celery, got 'k8s'"),
    ({"FLEET_EXECUTOR": "celery", "FLEET_CELERY_BROKER": "amqp://guest@localhost//"},
     "FLEET_CELERY_BROKER must be a Redis URL"),
    ({"FLEET_SHARED_STATE": "postgres://db/state"}, "FLEET_SHARED_STATE must be a Redis URL"),
    ({"FLEET_CELERY_WORKER_LOST_S": "1"}, "FLEET_CELERY_WORKER_LOST_S must be between 5 and 86400 seconds, got 1"),
    ({"FLEET_CELERY_WORKER_LOST_S": "a minute"}, "FLEET_CELERY_WORKER_LOST_S must be a whole number of seconds"),
])
def test_a_bad_distributed_setting_is_one_clear_line(env, message):
    problems = settings.configuration_problems(env)
    assert len(problems) == 1 and message in problems[0], problems


def test_a_complete_celery_configuration_is_accepted():
    env = {"FLEET_EXECUTOR": "celery", "FLEET_CELERY_BROKER": "redis://127.0.0.1:6379/0",
           "FLEET_SHARED_STATE": "redis://127.0.0.1:6379/1", "FLEET_DAGSTER_POSTGRES": POSTGRES}
    assert settings.configuration_problems(env) == []
    assert settings.executor_kind(env) == "celery"


def test_the_cluster_configuration_is_valid_and_names_its_drivers(tmp_path):
    state = cluster.ClusterState(tmp_path, 5432, 6379, 3000, {})
    env = cluster.cluster_env(state)
    assert settings.configuration_problems(env) == []
    assert env["FLEET_DAGSTER_POSTGRES"].startswith("postgresql+psycopg2://")
    assert env["FLEET_CELERY_BROKER"] != env["FLEET_SHARED_STATE"]  # broker and vendor state apart
    # The warehouse is the lake, its catalog and the serving target on the cluster's Postgres, its
    # files inside the cluster's folder (a data path of its own: the lake's orphan cleanup deletes
    # whatever else is under it).
    lake = settings.lake_settings(env)
    assert lake is not None and settings.warehouse_mode(env) == "ducklake"
    assert lake.data_path.startswith(str(tmp_path / "data") + "/")
    assert lake.catalog.endswith(":5432/lake") and settings.serving_postgres(env).endswith(":5432/serving")


def test_a_missing_service_binary_says_to_run_make_services(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ServiceError, match=r"redis-server is not installed .* run `make services`"):
        find_binary("redis-server", ("/nonexistent-too",))


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs Postgres as another user")
def test_postgres_started_by_root_in_a_private_folder_says_which_folder_to_use(tmp_path):
    private = tmp_path / "private"  # pytest's folders are private to their owner
    private.mkdir(mode=0o700)
    with pytest.raises(ServiceError, match=r"cannot reach .*private/pg.* Set FLEET_DATA_DIR"):
        Postgres(private / "pg", 1).start()


def test_stopping_a_process_group_whose_leader_exited_does_not_wait_for_the_kill_timeout():
    """A worker's group whose members all exited on SIGTERM is stopped: its leader, this process's
    child, stays a zombie until collected, which must not count as running (a cluster's stop used to
    wait its whole timeout per worker, then SIGKILL nothing)."""
    import subprocess
    import time

    from fleet_pipeline.services import process_alive, stop_process

    leader = subprocess.Popen(["bash", "-c", "sleep 300 & wait"], start_new_session=True)
    time.sleep(0.5)
    started = time.monotonic()
    stop_process(leader.pid, timeout_s=120, group=True)
    assert time.monotonic() - started < 60, "the stop waited for its kill timeout"
    assert not process_alive(leader.pid)
