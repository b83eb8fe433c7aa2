"""The project's own Dagster instance home (``data/dagster_home``, git-ignored).

Keeping it inside the project means nothing is written to the user's home directory, and runs
launched by ``make demo`` are the same runs ``make ui`` shows afterwards. With FLEET_DAGSTER_POSTGRES
set the home holds only ``dagster.yaml``: runs, events and pool slots live in that Postgres
(docs/distributed.md).

The instance settings also carry the pool of the reporting steps: the dbt builds and the serving
copy hold the warehouse for their whole step, so they belong to the pool ``duckdb_writer``
(``source_assets.WRITER_POOL``), which has one slot, claimed per step: a second one waits in
Dagster's queue ("Step blocked by limit for pool duckdb_writer" in the run's log) instead of in a
running process. Every process that opens the warehouse, source writes included, also takes the
file's lock for as long as it has it open (``warehouse.exclusive_access``).

A slot is given back when its step ends. A run whose process was killed never gives it back, and
every later reporting step would wait forever; nor does it ever end in the UI.
:func:`fail_abandoned_runs` marks such runs failed and frees their slots: at every ``fleet-pipeline``
command, and every minute from the daemon (the sensor :func:`build_abandoned_runs_sensor`, switched
on like every sensor: FLEET_SCHEDULES_RUNNING=1 in production, the UI on a laptop), so that a person
using only ``dagster`` or the UI sees them end too.

Dagster's own run monitoring is on (``run_monitoring`` below): the daemon fails a run stuck in
STARTING or CANCELING past its timeout and frees the slots of runs that ended. It cannot see a
STARTED run whose process died: the default run launcher of Dagster 1.13 has no run-worker health
check (``supports_check_run_worker_health`` is False), which is what the sensor covers.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fleet_pipeline import settings
from fleet_pipeline.services import process_alive

if TYPE_CHECKING:  # dagster is imported only when an instance is opened: `fleet-pipeline config` stays fast
    from dagster import DagsterInstance

logger = logging.getLogger(__name__)

DAGSTER_YAML = """\
# Written by fleet_pipeline/instance.py on every CLI start; edit that file, not this one.
telemetry:
  enabled: false
nux:
  enabled: false
concurrency:
  pools:
    # The instance settings have no per-pool limit, only this default for every pool without one
    # (`dagster instance concurrency set` or the UI's Pools page would store one in the database).
    # The one pool is duckdb_writer, of the steps that hold the warehouse for their whole step.
    default_limit: 1
    # Claimed per step, not per run, so that the steps of a multiprocess run queue for it too.
    granularity: op
compute_logs:
  # Dagster's local compute logs, captured through one `tee` a stream instead of a `tail` and a
  # Python watcher process (fleet_pipeline/compute_logs.py); the files are where Dagster keeps them.
  module: fleet_pipeline.compute_logs
  class: TeeComputeLogManager
run_monitoring:
  enabled: true
  # The daemon (`make ui`) frees the slot of a run that ended without freeing it itself: its
  # executor crashed, or it was marked terminated in the UI after its process was killed.
  free_slots_after_run_end_seconds: 30
  # A run whose process never logged its start (killed while starting) fails after this long. A
  # STARTED run whose process died is failed by the fail_abandoned_runs sensor instead: the
  # default run launcher cannot check a run worker's health.
  start_timeout_seconds: 180
  cancel_timeout_seconds: 180
"""

# FLEET_DAGSTER_POSTGRES set: runs, events, schedules and pool slots in Postgres, shared by every
# machine (the webserver, the daemon, each Celery worker). The URL stays in the environment: the
# file names the variable (Dagster reads it when the instance opens), never the password.
POSTGRES_STORAGE = """\
storage:
  postgres:
    postgres_url:
      env: FLEET_DAGSTER_POSTGRES
"""


def dagster_yaml(env: Mapping[str, str] | None = None) -> str:
    """The instance settings: :data:`DAGSTER_YAML`, plus Postgres storage when configured."""
    return DAGSTER_YAML + (POSTGRES_STORAGE if settings.dagster_postgres_url(env) else "")


ABANDONED_RUNS_SENSOR = "fail_abandoned_runs"
ABANDONED_RUNS_INTERVAL_S = 60


def prepare_instance_home() -> Path:
    """Create the instance home with its settings, point ``DAGSTER_HOME`` at it, and fail the
    runs killed since the last start (freeing any pool slot they held)."""
    home = settings.dagster_home()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    wanted = dagster_yaml()
    if not config.exists() or config.read_text() != wanted:
        config.write_text(wanted)
    os.environ["DAGSTER_HOME"] = str(home)
    from dagster import DagsterInstance

    with DagsterInstance.get() as instance:
        fail_abandoned_runs(instance)
    return home


def fail_abandoned_runs(instance: DagsterInstance) -> list[str]:
    """Fail the runs whose process is gone and free their pool slots; returns those run ids.

    Two kinds of runs need it: a run that ended without freeing its slot (its executor crashed),
    and a run whose process was killed (SIGKILL, the out-of-memory killer, a reboot), which stays
    "started" forever because the default run launcher cannot see a dead process. The second
    kind is marked failed with the reason. Runs are recognised by the process id their start was
    logged from; this instance keeps its runs on this machine (SQLite in the project), where that
    id means something.
    """
    from dagster import DagsterRunStatus, RunsFilter
    from dagster._core.storage.runs import SqliteRunStorage

    storage = instance.event_log_storage
    if not isinstance(instance.run_storage, SqliteRunStorage):
        return []  # runs may live on other machines: a process id from there means nothing here
    holding = set(storage.get_concurrency_run_ids()) if storage.supports_global_concurrency_limits else set()
    started = {run.run_id for run in instance.get_runs(filters=RunsFilter(statuses=[DagsterRunStatus.STARTED]))}
    released = []
    for run_id in sorted(holding | started):
        run = instance.get_run_by_id(run_id)
        if run is not None and not run.is_finished:
            pid = _run_process_id(instance, run_id)
            if pid is None or process_alive(pid):
                continue  # still running (or not started yet): its slot is in use
            instance.report_run_failed(
                run,
                job_failure_data=_killed(),
                message=f"The process of this run (pid {pid}) is gone: it was killed (SIGKILL, out of "
                "memory) or the machine restarted. Every partition it was writing kept its previous "
                "rows (one transaction each), and its hold on the warehouse and any duckdb_writer "
                "slot have been released. Re-run it.",
            )
        if run_id in holding:
            storage.free_concurrency_slots_for_run(run_id)
            logger.warning("released the duckdb_writer pool slot held by run %s (ended or killed)", run_id)
        released.append(run_id)
    return released


def build_abandoned_runs_sensor() -> Any:
    """A sensor that fails the runs whose process is gone, every minute, on by default wherever a
    daemon runs (``make ui`` included): unlike the schedules it calls no vendor and launches
    nothing, and without it a person who uses only the UI or ``dagster`` sees a killed run as
    started forever.

    It launches nothing: it is the daemon's way of running :func:`fail_abandoned_runs`, which
    Dagster's run monitoring cannot do for the default run launcher (see the module docstring).
    """
    from dagster import DefaultSensorStatus, SkipReason, sensor

    @sensor(name=ABANDONED_RUNS_SENSOR, minimum_interval_seconds=ABANDONED_RUNS_INTERVAL_S,
            default_status=DefaultSensorStatus.RUNNING,
            description="Marks failed the runs whose process was killed (they would stay STARTED) and "
            "frees the duckdb_writer slots they held.")
    def fail_abandoned(context):  # noqa: ANN001,ANN202 (dagster resolves annotations: its types are imported lazily here)
        released = fail_abandoned_runs(context.instance)
        if released:
            context.log.warning(f"failed or released {len(released)} abandoned run(s): {', '.join(released)}")
            return SkipReason(f"failed or released {len(released)} abandoned run(s): {', '.join(released)}")
        return SkipReason("no abandoned run")

    return fail_abandoned


def _killed() -> Any:
    from dagster._core.events import JobFailureData, RunFailureReason

    return JobFailureData(error=None, failure_reason=RunFailureReason.UNEXPECTED_TERMINATION)


def _run_process_id(instance: DagsterInstance, run_id: str) -> int | None:
    """The process that executes the run: the one that logged its start."""
    from dagster import DagsterEventType

    records = instance.get_records_for_run(run_id, of_type=DagsterEventType.RUN_START, limit=1).records
    event = records[0].event_log_entry.dagster_event if records else None
    return event.pid if event is not None else None
