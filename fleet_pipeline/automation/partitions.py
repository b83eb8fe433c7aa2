"""Partitions shared by every source: one partition per UTC day, and runs that cover several."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from datetime import date, datetime, time, timedelta

from dagster import BackfillPolicy, DailyPartitionsDefinition

from fleet_pipeline.settings import partitions_start

# The last partition is yesterday's: today's is still growing, and nothing loads it before it has
# ended (the daily schedule loads yesterday at 01:30), so listing it would show it as Missing all day.
daily_partitions = DailyPartitionsDefinition(start_date=partitions_start(), timezone="UTC")

# How many days one run of a partitioned source may cover (Dagster's backfill policy decides how a
# backfill is cut into runs; `fleet-pipeline backfill` cuts the same way). A run never needs to be
# longer than the span one vendor call covers: beyond it a longer run saves no calls, while memory,
# the size of the one replace transaction and the work lost when the run fails keep growing.
WEEK_PER_RUN = BackfillPolicy.multi_run(7)     # endpoints that take at most 7 days a call
MONTH_PER_RUN = BackfillPolicy.multi_run(31)   # endpoints that take a month a call, or any range
DAY_PER_RUN = BackfillPolicy.multi_run(1)      # endpoints that take one day at a time

# The jobs over all of a vendor's (or every) partitioned source mix week- and month-long runs on
# purpose. Dagster then cuts a backfill of such a JOB a week per run (a backfill of ASSETS keeps
# each asset's own policy) and says so on every definitions load; that is the intended behaviour.
warnings.filterwarnings("ignore", message=r"Asset job .* materializes assets with varying BackfillPolicies")


def partition_day(partition_key: str) -> date:
    return date.fromisoformat(partition_key)


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """The half-open [00:00, next 00:00) UTC bounds of one day, for clients that take [begin, end)."""
    return range_bounds([day])


def range_bounds(days: Sequence[date]) -> tuple[datetime, datetime]:
    """The half-open [00:00 of the first day, 00:00 after the last day) UTC bounds of some days."""
    if not days:
        raise ValueError("no days: a partitioned run covers at least one day")
    start = datetime.combine(min(days), time.min)
    return start, datetime.combine(max(days), time.min) + timedelta(days=1)


def days_between(first: date, last: date) -> list[date]:
    """Every day from ``first`` to ``last``, both included."""
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def chunks(days: Sequence[date], policy: BackfillPolicy | None) -> list[list[date]]:
    """Cut consecutive ``days`` into runs as ``policy`` does (no policy: one day a run, Dagster's
    default for an asset without one)."""
    size = 1 if policy is None else policy.max_partitions_per_run
    if size is None:
        return [list(days)] if days else []
    return [list(days[i:i + size]) for i in range(0, len(days), size)]
