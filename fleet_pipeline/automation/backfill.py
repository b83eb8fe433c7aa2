"""The plan of a backfill from the command line: which runs load which days, as Dagster would cut them.

A UI backfill is Dagster's own: the daemon cuts the requested range into runs by each asset's
backfill policy. ``fleet-pipeline backfill`` cuts the same way without a daemon, so both load the
same days with the same number of vendor calls:

* every partitioned source (the ``all_daily`` job's assets), grouped by how many days one of its
  runs may cover (``fleet_pipeline.automation.partitions``), one run per group and chunk of days;
* snapshots are not backfilled: they are the fleet's state as the vendor reports it now, and no
  vendor serves yesterday's state. Today's snapshot is taken once if the instance has none, so that
  the models have their device dimensions;
* then one ``reporting`` run (dbt and the serving copy) over the whole range.

Re-running a backfill is idempotent (every day is replaced, never appended to); ``resume`` skips the
runs whose every asset and day already has a materialization in the instance.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timezone

from dagster import AssetKey, BackfillPolicy, DagsterInstance, Definitions

from fleet_pipeline.automation.partitions import chunks

SOURCES_JOB = "all_daily"
SNAPSHOTS_JOB = "all_snapshots"
REPORTING_JOB = "reporting"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
BACKFILL_TAG = "fleet_pipeline/backfill"


@dataclass(frozen=True)
class PlannedRun:
    """One run of the plan: a job, the assets it materializes (all of the job's if empty), its days."""

    job_name: str
    asset_keys: tuple[AssetKey, ...] = ()
    days: tuple[date, ...] = ()

    @property
    def partition_key(self) -> str | None:
        return self.days[0].isoformat() if len(self.days) == 1 and self.job_name != REPORTING_JOB else None

    def tags(self, backfill_label: str) -> dict[str, str]:
        """Run tags: the range of a multi-day run (as Dagster's own backfills set it) and the backfill."""
        tags = {BACKFILL_TAG: backfill_label}
        if self.days and self.partition_key is None:
            tags[RANGE_START_TAG] = self.days[0].isoformat()
            tags[RANGE_END_TAG] = self.days[-1].isoformat()
        return tags

    def describe(self) -> str:
        if not self.days:
            return f"{self.job_name} (today's snapshot)"
        span = self.days[0].isoformat() if len(self.days) == 1 else f"{self.days[0]}...{self.days[-1]}"
        n = len(self.asset_keys)
        assets = f", {n} asset{'s' if n > 1 else ''}" if n else ""
        return f"{self.job_name} {span} ({len(self.days)} day{'s' if len(self.days) > 1 else ''}{assets})"


def source_runs(defs: Definitions, days: Sequence[date]) -> list[PlannedRun]:
    """The source runs for ``days``: per group of assets with the same days-per-run, per chunk."""
    graph = defs.resolve_asset_graph()
    keys = defs.resolve_job_def(SOURCES_JOB).asset_layer.executable_asset_keys
    by_policy: dict[int | None, list[AssetKey]] = {}
    policies: dict[int | None, BackfillPolicy | None] = {}
    for key in sorted(keys, key=lambda k: k.to_user_string()):
        policy = graph.get(key).backfill_policy
        size = None if policy is None else policy.max_partitions_per_run
        policies[size] = policy
        by_policy.setdefault(size, []).append(key)
    runs = []
    # Longest runs first: the cheap month-long runs finish early and show progress soonest.
    for size in sorted(by_policy, key=lambda s: -(s or 1_000_000)):
        for chunk in chunks(list(days), policies[size]):
            runs.append(PlannedRun(SOURCES_JOB, tuple(by_policy[size]), tuple(chunk)))
    return runs


def snapshot_taken_today(defs: Definitions, instance: DagsterInstance, today: date) -> bool:
    """Whether every snapshot asset already has a materialization from today (UTC)."""
    keys = defs.resolve_job_def(SNAPSHOTS_JOB).asset_layer.executable_asset_keys
    for key in keys:
        event = instance.get_latest_materialization_event(key)
        if event is None or datetime.fromtimestamp(event.timestamp, timezone.utc).date() != today:
            return False
    return True


def already_done(instance: DagsterInstance, run: PlannedRun) -> bool:
    """Whether every asset of ``run`` has a materialization of every one of its days."""
    wanted = {day.isoformat() for day in run.days}
    return bool(run.asset_keys) and all(
        wanted <= set(instance.get_materialized_partitions(key)) for key in run.asset_keys
    )


def plan(
    defs: Definitions,
    days: Sequence[date],
    instance: DagsterInstance,
    today: date,
    resume: bool = False,
    reporting: bool = True,
) -> tuple[list[PlannedRun], list[PlannedRun]]:
    """(runs to launch, runs skipped because ``resume`` found them done)."""
    todo: list[PlannedRun] = []
    if not snapshot_taken_today(defs, instance, today):
        todo.append(PlannedRun(SNAPSHOTS_JOB))
    skipped: list[PlannedRun] = []
    for run in source_runs(defs, days):
        (skipped if resume and already_done(instance, run) else todo).append(run)
    if reporting:
        todo.append(PlannedRun(REPORTING_JOB, days=tuple(days)))
    return todo, skipped
