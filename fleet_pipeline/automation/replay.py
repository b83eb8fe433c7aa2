"""The plan of ``fleet-pipeline replay``: which archived runs rebuild which raw partitions.

Every day of a partitioned table is rebuilt from the latest archive file that covers it (the
answers the warehouse's rows were made of). An archived run that covered several days (a
backfill) is replayed over its whole window, as it was loaded: its calls asked for that window,
and only the same calls find their answers. When such a window reaches days a later file covers,
that file is replayed too, after it, so that no day ends up older than it was. Snapshot tables
(unpartitioned) are rebuilt from the files whose last day falls in the range, where there are any.
A vendor with several accounts is planned account by account: each account's days are rebuilt from
its own files, by its own assets.

The runs are replayed in the order they were archived, each as one Dagster run of the vendor's
daily or snapshot job for the same assets and days, tagged as a replay of the original run
(``fleet_pipeline.ingest.archiving``): typing, validation and the transactional swap are the code
of today, the answers those of then.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime

from fleet_pipeline.automation.backfill import RANGE_END_TAG, RANGE_START_TAG
from fleet_pipeline.automation.partitions import days_between
from fleet_pipeline.ingest.archive import Archive, ArchivedStep
from fleet_pipeline.ingest.archiving import REPLAY_ARCHIVE_TAG, REPLAY_OF_TAG
from fleet_pipeline.sources.accounts import DEFAULT_ACCOUNT


class NothingToReplay(ValueError):
    """The archive cannot rebuild what was asked (a day with no archive, an unknown table)."""


@dataclass(frozen=True)
class ReplayRun:
    """One archived run's tables over one window, replayed as one Dagster run."""

    vendor: str
    run_id: str
    tables: tuple[str, ...]
    first: date
    last: date
    partitioned: bool
    archived_at: datetime | None
    archive_bytes: int
    account: str = DEFAULT_ACCOUNT

    @property
    def job_name(self) -> str:
        return f"{self.vendor}_daily" if self.partitioned else f"{self.vendor}_snapshots"

    @property
    def partition_key(self) -> str | None:
        return self.first.isoformat() if self.partitioned and self.first == self.last else None

    def tags(self, root: str) -> dict[str, str]:
        tags = {REPLAY_OF_TAG: self.run_id, REPLAY_ARCHIVE_TAG: root}
        if self.partitioned and self.first != self.last:
            tags |= {RANGE_START_TAG: self.first.isoformat(), RANGE_END_TAG: self.last.isoformat()}
        return tags

    def describe(self) -> str:
        span = str(self.first) if self.first == self.last else f"{self.first}...{self.last}"
        kind = "" if self.partitioned else " (snapshot)"
        owner = "" if self.account == DEFAULT_ACCOUNT else f" account {self.account}"
        return (f"{self.vendor}{owner} {', '.join(self.tables)} {span}{kind} from run {self.run_id[:8]} "
                f"({self.archive_bytes:,} archived bytes)")


def _latest(steps: list[ArchivedStep]) -> ArchivedStep:
    return max(steps, key=lambda step: (step.written_at or datetime.min, step.run_id))


def plan_replay(archive: Archive, vendor: str, first: date, last: date,
                tables: Mapping[str, bool], only: str | None = None) -> list[ReplayRun]:
    """The runs that rebuild ``vendor``'s tables (name -> partitioned) over ``first``..``last``
    (only the table ``only`` if given), oldest archive first; raises NothingToReplay when a day of
    a partitioned table, or a snapshot table asked for by name, has no archive."""
    if last < first:
        raise NothingToReplay(f"--to {last} is before --from {first}")
    if only is not None and only not in tables:
        raise NothingToReplay(f"{vendor} has no table {only!r}; its tables: {', '.join(sorted(tables))}")
    wanted = {only: tables[only]} if only else dict(tables)
    by_table: dict[tuple[str, str], list[ArchivedStep]] = {}
    for step in archive.steps(vendor):
        if step.table in wanted:
            by_table.setdefault((step.table, step.account), []).append(step)
    accounts = sorted({account for _, account in by_table}) or [DEFAULT_ACCOUNT]
    requested = days_between(first, last)
    chosen: set[ArchivedStep] = set()
    missing: list[str] = []
    for account in accounts:
        owner = "" if account == DEFAULT_ACCOUNT else f" (account {account})"
        for table, partitioned in wanted.items():
            steps = by_table.get((table, account), [])
            if not partitioned:
                taken = [step for step in steps if first <= step.last <= last]
                if not taken and only:
                    missing.append(f"{vendor}.{table}{owner}: no snapshot archived between {first} and {last}")
                chosen.update(taken)
                continue
            absent = _cover(steps, requested, chosen)
            if absent:
                missing.append(f"{vendor}.{table}{owner}: no archive for {_days_text(absent)}")
    if missing:
        raise NothingToReplay(f"the archive {archive.root} cannot rebuild what was asked: " + "; ".join(missing))
    return _runs(vendor, chosen, wanted)


def _cover(steps: list[ArchivedStep], days: list[date], chosen: set[ArchivedStep]) -> list[date]:
    """Choose the latest file of every day in ``days``, then of every day their windows reach;
    the days no file covers."""
    todo, seen, absent = list(days), set(), []
    while todo:
        day = todo.pop()
        if day in seen:
            continue
        seen.add(day)
        covering = [step for step in steps if step.first <= day <= step.last]
        if not covering:
            absent.append(day)
            continue
        latest = _latest(covering)
        chosen.add(latest)
        todo.extend(d for d in latest.days if d not in seen)
    return sorted(absent)


def _runs(vendor: str, chosen: set[ArchivedStep], tables: Mapping[str, bool]) -> list[ReplayRun]:
    groups: dict[tuple[str, str, date, date, bool], list[ArchivedStep]] = {}
    for step in chosen:
        groups.setdefault((step.account, step.run_id, step.first, step.last, tables[step.table]), []).append(step)
    runs = [
        ReplayRun(vendor, run_id, tuple(sorted(step.table for step in steps)), first_day, last_day, partitioned,
                  max((step.written_at for step in steps if step.written_at), default=None),
                  sum(step.size for step in steps), account)
        for (account, run_id, first_day, last_day, partitioned), steps in groups.items()
    ]
    return sorted(runs, key=lambda run: (run.archived_at or datetime.min, run.run_id, run.account))


def _days_text(days: list[date]) -> str:
    if len(days) > 6:
        return f"{len(days)} days ({days[0]} ... {days[-1]})"
    return ", ".join(str(day) for day in days)
