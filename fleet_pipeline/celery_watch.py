"""Dagster's Celery executor, with each step's worker watched: a step whose worker is gone ends.

Dagster's Celery executor (``dagster_celery``) sends each step to the broker as a task and waits for
the task's result, without a deadline. Celery acknowledges a task as its worker starts it, so a
worker lost whole (``SIGKILL`` to its main process, which takes its pool process with it; the
out-of-memory killer; a machine gone) leaves a task that nobody finishes or delivers again: the run
stayed STARTED for ever, holding any pool slot its step had claimed.

:class:`WatchedCeleryExecutor` runs Dagster's own Celery execution loop unchanged, and hands it each
step's task result wrapped in a :class:`WatchedStep`. The workers record which of them started a task
(``task_track_started``, in the config module ``cluster.write_celery_config`` writes); every
:data:`CHECK_EVERY_S` the run asks that worker whether it still runs the task (Celery's
``query_task`` control command, answered by the worker's main process while its pool process runs
the step). The step is **lost** when

- the worker has not answered for FLEET_CELERY_WORKER_LOST_S (60 s): killed, or its machine gone;
- the worker answers without the task: it was restarted under the same name;
- Celery reports the task's process lost (``WorkerLostError``: the worker's pool process was killed).

A lost step is then what Dagster's multiprocess executor makes of a step process that crashed: the
step fails, or, when its retry policy allows another attempt (FLEET_STEP_RETRIES for the source
assets), is retried after the policy's delay, sent to the queue again where a live worker takes it.
Either way Dagster frees the step's pool slot (``duckdb_writer``). Running a step again is safe:
each partition is replaced in one transaction, so the lost attempt wrote all of a day or nothing.

Chosen over Celery's own redelivery (``task_acks_late`` with the Redis transport's
``visibility_timeout``, docs/distributed.md): there a step still running after the visibility
timeout is delivered to a second worker while the first one runs it, so the timeout must exceed the
longest step (dbt builds take minutes), and a lost step then waits that long before anyone notices.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from celery import states
from celery.exceptions import WorkerLostError
from dagster import DagsterEventType
from dagster._core.events import DagsterEvent, EngineEventData
from dagster._serdes import serialize_value
from dagster._utils.error import serializable_error_info_from_exc_info
from dagster_celery.core_execution_loop import core_celery_execution_loop
from dagster_celery.executor import CeleryExecutor, _submit_task

# How often the run asks a step's worker about its task, and how long it waits for each answer (a
# live worker's main process answers at once, even while its pool process is busy).
CHECK_EVERY_S = 5.0
ANSWER_TIMEOUT_S = 2.0
# The metadata key of the engine event Dagster's Celery task logs as a worker starts a step.
CELERY_WORKER_KEY = "Celery worker"


class CeleryStepLost(Exception):
    """The worker running a step is gone; the message says which worker and why it counts as gone."""


class WatchedCeleryExecutor(CeleryExecutor):
    """Dagster's Celery executor whose steps end when their worker is lost (module docstring)."""

    def __init__(self, *, worker_lost_s: float, **celery_executor_args: Any) -> None:
        super().__init__(**celery_executor_args)
        self.worker_lost_s = worker_lost_s

    def execute(self, plan_context, execution_plan):
        return core_celery_execution_loop(plan_context, execution_plan, step_execution_fn=self._submit_watched)

    def _submit_watched(self, app, plan_context, step, queue, priority, known_state) -> WatchedStep:
        task = _submit_task(app, plan_context, step, queue, priority, known_state)
        return WatchedStep(task, app, self, plan_context.for_step(step), known_state)


class WatchedStep:
    """A step's Celery task result as Dagster's Celery loop polls it (``ready``, ``get``, ``revoke``),
    ready also when the task's worker is lost; its events then say so and fail or retry the step."""

    def __init__(self, task, app, executor: WatchedCeleryExecutor, step_context, known_state) -> None:
        self.task, self._app, self._executor = task, app, executor
        self._step_context, self._known_state = step_context, known_state
        self.worker: str | None = None  # the worker that started the task, once it has
        self._last_answer = 0.0
        self._next_check = 0.0
        self.lost: str | None = None  # why the step counts as lost

    def ready(self) -> bool:
        if self.lost is not None or self.task.ready():
            return True
        now = time.monotonic()
        if self.worker is None:
            self._note_worker(now)
        elif now >= self._next_check:
            self._next_check = now + CHECK_EVERY_S
            self.lost = self._why_lost()
        return self.lost is not None

    def get(self) -> list[str]:
        """The step's serialized events: the worker's, or those of a lost step."""
        if self.lost is None:
            try:
                return self.task.get()
            except WorkerLostError as exc:  # the worker's main process saw its pool process die
                worker = self.worker or self._worker_from_event_log()
                self.lost = f"Celery worker {worker or '(not recorded)'} lost the process running it ({exc})"
        return self._lost_step_events()

    def revoke(self) -> None:
        self.task.revoke()

    def _note_worker(self, now: float) -> None:
        """The worker that started the task, once it has (until then the task waits in the queue)."""
        meta = self.task.backend.get_task_meta(self.task.id)
        started = meta.get("result") if meta.get("status") == states.STARTED else None
        if isinstance(started, dict) and started.get("hostname"):
            self.worker, self._last_answer, self._next_check = started["hostname"], now, now + CHECK_EVERY_S

    def _worker_from_event_log(self) -> str | None:
        """The worker that Dagster's task logged it runs the step on (its last attempt's): for a step
        lost before the run saw it started (the started state is overwritten by the failure)."""
        context = self._step_context
        records = context.instance.get_records_for_run(context.run_id, of_type=DagsterEventType.ENGINE_EVENT).records
        events = [record.event_log_entry.dagster_event for record in records]
        workers = [getattr(event.event_specific_data, "metadata", {}).get(CELERY_WORKER_KEY)
                   for event in events if event is not None and event.step_key == context.step.key]
        named = [getattr(worker, "value", worker) for worker in workers if worker is not None]
        return named[-1] if named else None

    def _why_lost(self) -> str | None:
        try:
            answers = self._app.control.inspect(destination=[self.worker], timeout=ANSWER_TIMEOUT_S).query_task(
                self.task.id)
        except Exception:  # the broker unreachable: no answer then means nothing
            return None
        answer = (answers or {}).get(self.worker)
        if answer is not None:
            if self.task.id in answer:
                self._last_answer = time.monotonic()
                return None
            if self.task.ready():
                return None  # it finished between the two questions
            return f"Celery worker {self.worker} answers but no longer runs it (the worker was restarted)"
        silent_s = time.monotonic() - self._last_answer
        if silent_s < self._executor.worker_lost_s:
            return None
        return (f"Celery worker {self.worker} has not answered for {silent_s:.0f} s (FLEET_CELERY_WORKER_LOST_S="
                f"{self._executor.worker_lost_s:g}): it was killed or its machine is gone")

    def _lost_step_events(self) -> list[str]:
        # Should the worker run the task after all (a false alarm), it stops it: one attempt at a time.
        self.task.revoke(terminate=True, signal="SIGKILL")
        step_key = self._step_context.step.key
        message = (f'Step "{step_key}" (Celery task {self.task.id}) was lost: {self.lost}. The warehouse '
                   "kept its previous rows for every partition the step was writing (each is replaced in "
                   "one transaction); the step fails, or runs again on a live worker if its retry policy "
                   "allows another attempt.")
        try:
            raise CeleryStepLost(message)
        except CeleryStepLost:
            error = serializable_error_info_from_exc_info(sys.exc_info())
        lost = DagsterEvent.engine_event(self._step_context, message, EngineEventData.engine_error(error))
        outcome = self._executor.log_failure_or_retry_event_after_error(self._step_context, error, self._known_state)
        return [serialize_value(lost), serialize_value(outcome)]
