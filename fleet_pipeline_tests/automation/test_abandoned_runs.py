"""A run whose process was killed ends without any `fleet-pipeline` command: the daemon's sensor.

Dagster's run monitoring cannot see a STARTED run whose process died under the default run launcher
(it has no run-worker health check), so the project's own detection runs from the daemon as a
sensor, on by default wherever a daemon runs (it calls no vendor). Here a real run in a
process of its own is killed with SIGKILL; one evaluation of the sensor, on the same instance,
marks it failed with the reason.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import (
    DagsterEventType,
    DagsterInstance,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunsFilter,
    build_sensor_context,
)

from fleet_pipeline.instance import (
    ABANDONED_RUNS_SENSOR,
    build_abandoned_runs_sensor,
    prepare_instance_home,
)

# A run that starts, then sleeps in its step until it is killed.
SLEEPING_RUN = """
import time
from dagster import DagsterInstance, asset, materialize

@asset
def sleeps():
    time.sleep(600)

with DagsterInstance.get() as instance:
    materialize([sleeps], instance=instance)
"""


@pytest.fixture
def instance_home(tmp_path: Path) -> Iterator[Path]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
        yield prepare_instance_home()


def _started_runs(instance: DagsterInstance) -> list:
    return instance.get_runs(filters=RunsFilter(statuses=[DagsterRunStatus.STARTED]))


def test_the_daemon_sensor_fails_a_killed_run(instance_home):
    env = {**os.environ, "DAGSTER_HOME": str(instance_home)}
    process = subprocess.Popen([sys.executable, "-c", SLEEPING_RUN], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    sensor = build_abandoned_runs_sensor()
    try:
        deadline = time.monotonic() + 180
        with DagsterInstance.get() as instance:
            while not _started_runs(instance):
                assert process.poll() is None and time.monotonic() < deadline, "the run did not start"
                time.sleep(0.2)
            [run] = _started_runs(instance)
            # Alive: the sensor leaves a running run alone.
            assert "no abandoned run" in sensor(build_sensor_context(instance=instance)).skip_message
            assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.STARTED
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)

    with DagsterInstance.get() as instance:
        assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.STARTED, "killed, still STARTED"
        skipped = sensor(build_sensor_context(instance=instance))
        assert run.run_id in skipped.skip_message
        assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.FAILURE
        [message] = [e.dagster_event.message for e in instance.all_logs(run.run_id, of_type=DagsterEventType.RUN_FAILURE)]
        assert "killed" in message


def test_the_sensor_runs_wherever_a_daemon_runs_and_run_monitoring_is_enabled(instance_home, monkeypatch):
    # Issue 15: with automation off (the default of `make ui`) a killed run must not stay STARTED.
    monkeypatch.delenv("FLEET_SCHEDULES_RUNNING", raising=False)
    sensor = build_abandoned_runs_sensor()
    assert sensor.name == ABANDONED_RUNS_SENSOR and sensor.default_status == DefaultSensorStatus.RUNNING
    with DagsterInstance.get() as instance:
        assert instance.run_monitoring_enabled
        assert instance.run_monitoring_start_timeout_seconds == 180
        assert not instance.run_launcher.supports_check_run_worker_health, \
            "the launcher now checks run workers: the sensor may be redundant (see instance.py)"
