"""How a launched run starts its step processes: forked from a process that imported the code once.

A run the UI, the daemon or ``dagster asset materialize`` launches executes each step in a process
of its own (Dagster's multiprocess executor). Started the default way (``spawn``), every step
process imports the code location again before its step starts: dagster, polars, pandera, every
vendor's assets, then the instance's storage, seconds of CPU a step.

So every step process is forked from the run's own process, which has the definitions built: it
only looks the job up in the imported module and starts its step at once. Dagster's own executor
offers no ``fork`` (its configuration says "fork currently unsupported due to threads usage"): a
process forked while another of its Python threads holds a lock (the logging module's, an import
lock) would wait on that lock forever. The run process executes its steps from its main thread and
starts no other Python thread of its own (checked in fleet_pipeline_tests/app/test_launched_runs.py),
so the fork happens only while the run process has that one thread; when it has more (a host that
runs the executor beside threads of its own), the steps fork from a server process instead, which
imports :data:`PRELOADED` once and forks from its one thread (``forkserver``).

Native threads are another matter: importing polars starts two (jemalloc's background thread,
which takes its locks around a fork for this, and an idle spill-file cleaner); the run process
opens no DuckDB connection and runs no polars query, so neither engine's thread pool exists yet
(each starts with a step's first query, in the step process). A step process inherits the run
process's environment: one run per process (the run worker, the CLI), as with spawn.

A step that only evaluates freshness checks (assets materialized from the UI or the CLI bring
their checks along) runs in the run process itself, after the steps it waits for: it reads two
timestamps from the instance, and a process of its own cost it a fork, an instance, storage
connections and its own compute-log capture (0.2 s of CPU and a process' worth of memory) for
0.1 s of work. Dagster's executor has no hook to choose a step's process, so while a run executes, its
function that starts a step process is wrapped (:func:`_step_process_or_here`) for those steps.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from dagster import ExecutorDefinition, executor
from dagster._core.definitions.executor_definition import MULTI_PROC_CONFIG, multiple_process_executor_requirements
from dagster._core.events import DagsterEvent, EngineEventData
from dagster._core.execution.api import create_execution_plan, execute_plan_iterator
from dagster._core.execution.context.system import PlanOrchestrationContext
from dagster._core.execution.plan.plan import ExecutionPlan
from dagster._core.execution.plan.step import ExecutionStep
from dagster._core.execution.retries import RetryMode
from dagster._core.execution.step_dependency_config import StepDependencyConfig
from dagster._core.executor import multiprocess as dagster_multiprocess
from dagster._core.executor.multiprocess import MultiprocessExecutor

from fleet_pipeline import settings
from fleet_pipeline.automation.freshness import CHECK_NAME as FRESHNESS_CHECK

# The module the code location loads (workspace.yaml's python_module).
CODE_LOCATION_MODULE = "fleet_pipeline.definitions"
PRELOADED = (
    # What every step process would import before its step when forked from a server: the dagster
    # command's own module (a step process runs the parent's main script again), the instance's
    # SQLite storage and compute-log manager (the instance is rebuilt in each step process), and
    # the definitions.
    "dagster._cli",
    "dagster._core.storage.runs.sqlite",
    "dagster._core.storage.event_log.sqlite",
    "dagster._core.storage.schedules.sqlite",
    "dagster._core.storage.local_compute_log_manager",
    "fleet_pipeline.compute_logs",
    CODE_LOCATION_MODULE,
)


# The run's event log says how its step processes started.
STARTED_BY = {
    "fork": "Step processes are forked from the run process, which has the code location loaded.",
    "forkserver": "Step processes are forked from a server process: the run process has other threads.",
}


RUN_PROCESS_STEP = "Step {step} evaluates freshness checks only: it runs in the run process (pid {pid})."


def runs_in_run_process(step: ExecutionStep) -> bool:
    """Whether ``step`` materializes nothing and evaluates freshness checks only (module docstring).

    (The outputs of the checks a run did not select carry neither an asset nor a check key.)"""
    properties = [output.properties for output in step.step_outputs if output.properties]
    checks = [p.asset_check_key for p in properties if p.asset_check_key]
    return (bool(checks) and not any(p.asset_key for p in properties)
            and all(key.name == FRESHNESS_CHECK for key in checks))


_START_STEP_PROCESS = dagster_multiprocess.execute_step_out_of_process
# (run id, step key) of the steps to run in their run's process, while their run executes.
_HERE: set[tuple[str, str]] = set()
_HERE_LOCK = threading.Lock()


def _step_process_or_here(multiproc_ctx: Any, recon_job: Any, step_context: Any, step: ExecutionStep,
                          errors: Any, processes: Any, term_events: Any, retries: RetryMode, known_state: Any,
                          repository_load_data: Any) -> Iterator[DagsterEvent | None]:
    """Dagster's ``execute_step_out_of_process``, except for the steps registered in ``_HERE``: those
    execute in this process, as a step process would execute them, and to the end before their
    first event is handed back, so that the executor forks nothing while their logs are captured."""
    if (step_context.dagster_run.run_id, step.key) not in _HERE:
        yield from _START_STEP_PROCESS(multiproc_ctx, recon_job, step_context, step, errors, processes,
                                       term_events, retries, known_state, repository_load_data)
        return
    notice = DagsterEvent.engine_event(step_context, RUN_PROCESS_STEP.format(step=step.key, pid=os.getpid()),
                                       EngineEventData())
    plan = create_execution_plan(job=recon_job, run_config=step_context.run_config, step_keys_to_execute=[step.key],
                                 known_state=known_state, repository_load_data=repository_load_data)
    events = list(execute_plan_iterator(plan, recon_job, step_context.dagster_run, run_config=step_context.run_config,
                                        retry_mode=retries.for_inner_plan(), instance=step_context.instance))
    yield from [notice, *events]


@contextlib.contextmanager
def _in_run_process(run_id: str, step_keys: set[str]) -> Iterator[None]:
    """While the block runs, ``step_keys`` of run ``run_id`` execute in this process."""
    keys = {(run_id, key) for key in step_keys}
    with _HERE_LOCK:
        _HERE.update(keys)
        dagster_multiprocess.execute_step_out_of_process = _step_process_or_here
    try:
        yield
    finally:
        with _HERE_LOCK:
            _HERE.difference_update(keys)
            if not _HERE:
                dagster_multiprocess.execute_step_out_of_process = _START_STEP_PROCESS


class ForkedStepExecutor(MultiprocessExecutor):
    """Dagster's multiprocess executor whose step processes are forked from the run process, and
    whose freshness-check steps run in the run process itself (module docstring)."""

    def execute(self, plan_context: PlanOrchestrationContext, execution_plan: ExecutionPlan) -> Iterator[DagsterEvent]:
        # Decided per run, at the moment its first step is launched: the executor object is built
        # before the run starts, in whatever process will then run it.
        self._start_method = "fork" if threading.active_count() == 1 else "forkserver"
        yield DagsterEvent.engine_event(plan_context, STARTED_BY[self._start_method], EngineEventData())
        here = {step.key for step in execution_plan.get_steps_to_execute_in_topo_order() if runs_in_run_process(step)}
        with _in_run_process(plan_context.dagster_run.run_id, here):
            yield from super().execute(plan_context, execution_plan)


def forked_step_executor(name: str, **config: Any) -> ExecutorDefinition:
    """The multiprocess executor, ``config`` as its defaults, its step processes forked (module docstring)."""

    @executor(name=name, config_schema=MULTI_PROC_CONFIG, requirements=multiple_process_executor_requirements())
    def _forked(init_context) -> ForkedStepExecutor:
        # Dagster's multiprocess executor configuration, read the way Dagster reads it.
        config_values = init_context.executor_config
        return ForkedStepExecutor(
            max_concurrent=config_values.get("max_concurrent"),
            tag_concurrency_limits=config_values.get("tag_concurrency_limits"),
            retries=RetryMode.from_config(config_values["retries"]),
            start_method="forkserver",
            explicit_forkserver_preload=list(PRELOADED),
            step_dependency_config=StepDependencyConfig.from_config(config_values.get("step_dependency_config")),
        )

    return _forked.configured(config, name=name) if config else _forked


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

    Dagster's Celery executor, with each step's worker watched (``celery_watch``): a step whose
    worker is lost fails, or is retried on a live worker, after FLEET_CELERY_WORKER_LOST_S.
    """
    # Imported only in this mode: celery is slow to import.
    from dagster_celery.executor import CELERY_CONFIG as CELERY_CONFIG_SCHEMA

    from fleet_pipeline.celery_watch import WatchedCeleryExecutor

    @executor(name=name, config_schema=CELERY_CONFIG_SCHEMA, requirements=multiple_process_executor_requirements())
    def _watched(init_context):
        # Dagster's Celery executor configuration, read the way dagster_celery.celery_executor reads it.
        config_values = init_context.executor_config
        return WatchedCeleryExecutor(
            broker=config_values.get("broker"),
            backend=config_values.get("backend"),
            config_source=config_values.get("config_source"),
            include=config_values.get("include"),
            retries=RetryMode.from_config(config_values["retries"]),
            worker_lost_s=settings.celery_worker_lost_s(),
        )

    return _watched.configured(dict(CELERY_CONFIG), name=name)


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
