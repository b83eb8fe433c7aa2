"""How a launched run starts its step processes: forked from a server that imported the code once.

A run the UI, the daemon or ``dagster asset materialize`` launches executes each step in a process
of its own (Dagster's multiprocess executor). Started the default way (``spawn``), every step
process imports the code location again before its step starts: dagster, polars, pandera, every
vendor's assets, then the instance's storage, seconds of CPU a step. With ``forkserver`` the run's
first step starts a server process that imports :data:`PRELOADED` once; every step process is
forked from that server and finds the definitions built: it only looks the job up in the imported
module. (Dagster preloads nothing but its executor unless told, whatever its docs say of the job's
module: an empty ``preload_modules`` is what it reads when none is given.)

The server forks from its one Python thread. The imports open no DuckDB connection and run no
polars query, so neither engine's thread pool exists yet (each starts with a step's first query,
in the step process). Importing polars does start two native threads, jemalloc's background thread
(jemalloc takes its locks around a fork, for this) and an idle spill-file cleaner; the step
processes of the project's tests and of the peer benchmark run forked from such a server. A step
process inherits the server's environment, read when the run's first step started: one run per
process (the run worker, the CLI) sees no difference from spawn.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dagster import ExecutorDefinition, multiprocess_executor

from fleet_pipeline import settings

# The module the code location loads (workspace.yaml's python_module).
CODE_LOCATION_MODULE = "fleet_pipeline.definitions"
PRELOADED = (
    # What every step process would import before its step: the dagster command's own module (a
    # step process runs the parent's main script again), the instance's SQLite storage and
    # compute-log manager (the instance is rebuilt in each step process), and the definitions.
    "dagster._cli",
    "dagster._core.storage.runs.sqlite",
    "dagster._core.storage.event_log.sqlite",
    "dagster._core.storage.schedules.sqlite",
    "dagster._core.storage.local_compute_log_manager",
    CODE_LOCATION_MODULE,
)
# Dagster's multiprocess executor configuration: fork every step process from one server process.
FORKED_STEPS: Mapping[str, Any] = {"start_method": {"forkserver": {"preload_modules": list(PRELOADED)}}}


def forked_step_executor(name: str, **config: Any) -> ExecutorDefinition:
    """The multiprocess executor, ``config`` as its own, its step processes forked (module docstring)."""
    return multiprocess_executor.configured({**FORKED_STEPS, **config}, name=name)


# The Celery executor's broker and result backend, read by the run's process from its environment
# (FLEET_CELERY_BROKER) when the run starts: the run's stored configuration never holds the URL.
CELERY_CONFIG: Mapping[str, Any] = {"broker": {"env": "FLEET_CELERY_BROKER"},
                                    "backend": {"env": "FLEET_CELERY_BROKER"}}


def celery_step_executor(name: str) -> ExecutorDefinition:
    """Every step sent to the Celery workers listening on FLEET_CELERY_BROKER's ``dagster`` queue.

    A worker runs the step in its own process with the instance the run names (Postgres when
    FLEET_DAGSTER_POSTGRES is set), so pool slots (``duckdb_writer``) are claimed in that one
    database and hold across workers. The Celery executor knows no per-tag concurrency limit: a
    vendor's steps may run side by side on several workers, and keep within the vendor's budget
    because its rate-limit ledger is shared (FLEET_SHARED_STATE, ``ingest.shared_state``).
    """
    from dagster_celery import celery_executor  # imported only in this mode: celery is slow to import

    return celery_executor.configured(dict(CELERY_CONFIG), name=name)


def step_executor(name: str, celery_name: str, **forked_config: Any) -> ExecutorDefinition:
    """The executor FLEET_EXECUTOR chooses: forked step processes here (``name``, ``forked_config``
    theirs), or steps on the Celery workers (``celery_name``)."""
    if settings.executor_kind() == "celery":
        return celery_step_executor(celery_name)
    return forked_step_executor(name, **forked_config)


# Every job without an executor of its own, and the assets a user materializes from the UI or the
# CLI (Dagster's implicit asset job): a process per step, at most as many at once as there are CPUs
# (Dagster's default), each forked; or, with FLEET_EXECUTOR=celery, every step on the workers.
DEFAULT_EXECUTOR = step_executor("forked_multiprocess_executor", "celery_executor")
