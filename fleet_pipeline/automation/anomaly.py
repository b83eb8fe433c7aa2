"""Row-count anomaly check: a daily partition with far fewer rows than the trailing week.

A vendor that silently answers with less (a sub-account the token no longer reaches, devices moved
to another account, an outage that returns empty pages instead of errors) produces a partition
that is valid row by row and still wrong. Comparing each day with the median of the 7 days before
it catches that; the median ignores one odd day in the baseline.

Why these numbers:

* ``MIN_RATIO = 0.4``: fleets drive less at weekends. In the sandbox fleet (40 % of vehicles parked
  on a weekend day) Saturdays reach 47-60 % of the trailing median, so the 50 % often proposed
  would warn about normal weekends. 40 % still flags losing most of a day or most of a fleet.
* ``MIN_PREVIOUS_PARTITIONS = 5``: a median of fewer days says little (the first week of a
  pipeline, or a backfill's first days); those partitions pass with "no verdict".
* ``MIN_BASELINE_ROWS = 20``: on tables with a handful of rows a day (alarms of a small fleet, OTA
  attempts) a ratio is noise; such days pass with "no verdict" too.
* Severity WARN: the check is a statistical signal, not proof — holidays, a fleet that shrinks or
  a platform migration make real drops. The rows are committed and correct as far as the vendor
  reports them; a person decides. Checks that prove a defect (a wrong distance unit) are ERROR.

Days that are not over yet (today's partition) are never judged: they are still growing. A day
with no rows is indistinguishable from a day not loaded, so the baseline only counts days with
rows (which makes the median larger, never smaller).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

import duckdb
from dagster import AssetCheckResult, AssetCheckSeverity, AssetCheckSpec, AssetKey, MetadataValue

from fleet_pipeline.ingest.warehouse import TableRef, latest_snapshot_rows, partition_row_counts

ROW_COUNT_CHECK = "row_count_vs_trailing_week"
TRAILING_DAYS = 7
MIN_PREVIOUS_PARTITIONS = 5
MIN_BASELINE_ROWS = 20
MIN_RATIO = 0.4


@dataclass(frozen=True)
class AccountRows(TableRef):
    """One vendor account's rows of a raw table, as the checks of that account's asset judge them:
    with several accounts a day's rows arrive account by account, so a table-wide count would
    compare the first account's load with every account's trailing week."""

    account: str = "default"

    @property
    def sql(self) -> str:
        # Rows stored before tables had an account column are the account "default"'s.
        account = self.account.replace("'", "''")
        return f"""(SELECT * FROM "{self.schema}"."{self.name}" WHERE coalesce(account, 'default') = '{account}')"""


def of_account(table: TableRef, account: str | None) -> TableRef:
    """``table``, or only ``account``'s rows of it (None: the vendor has one account)."""
    return table if account is None else AccountRows(table.schema, table.name, account)


@dataclass(frozen=True)
class DayVerdict:
    day: date
    rows: int
    previous_partitions: int
    trailing_median: float | None
    ratio: float | None
    anomalous: bool
    note: str

    def as_json(self) -> dict[str, object]:
        return {
            "partition": self.day.isoformat(), "rows": self.rows, "trailing_median": self.trailing_median,
            "ratio": self.ratio, "anomalous": self.anomalous, "note": self.note,
        }


def row_count_check_spec(asset_key: AssetKey) -> AssetCheckSpec:
    return AssetCheckSpec(
        ROW_COUNT_CHECK,
        asset=asset_key,
        description=f"Each loaded day has at least {MIN_RATIO:.0%} of the median row count of the "
        f"{TRAILING_DAYS} days before it (no verdict with fewer than {MIN_PREVIOUS_PARTITIONS} of "
        f"them, a median under {MIN_BASELINE_ROWS} rows, or a day not over yet).",
    )


def judge_day(day: date, rows: int, counts: dict[date, int], today: date) -> DayVerdict:
    """The verdict on one day given the row counts of the partitions around it."""
    previous = [counts[d] for d in (day - timedelta(days=n) for n in range(1, TRAILING_DAYS + 1))
                if counts.get(d, 0) > 0]
    median = float(statistics.median(previous)) if previous else None

    def no_verdict(note: str) -> DayVerdict:
        return DayVerdict(day, rows, len(previous), median, None, False, f"no verdict: {note}")

    if day >= today:
        return no_verdict("the day is not over yet")
    if len(previous) < MIN_PREVIOUS_PARTITIONS:
        return no_verdict(f"only {len(previous)} of the {TRAILING_DAYS} previous partitions have rows "
                          f"(at least {MIN_PREVIOUS_PARTITIONS} needed)")
    assert median is not None
    if median < MIN_BASELINE_ROWS:
        return no_verdict(f"the trailing median of {median:g} rows is too small to compare "
                          f"(at least {MIN_BASELINE_ROWS} needed)")
    ratio = rows / median
    anomalous = ratio < MIN_RATIO
    note = (f"{rows} rows, {ratio:.0%} of the trailing-week median {median:g} "
            + (f"(below {MIN_RATIO:.0%})" if anomalous else f"(at least {MIN_RATIO:.0%})"))
    return DayVerdict(day, rows, len(previous), median, round(ratio, 4), anomalous, note)


def row_count_check(
    conn: duckdb.DuckDBPyConnection, table: TableRef, key_column: str, days: Sequence[date], today: date
) -> AssetCheckResult:
    """Judge every day of a run against its trailing week, reading the committed partitions."""
    counts = partition_row_counts(conn, table, key_column, min(days) - timedelta(days=TRAILING_DAYS), max(days))
    verdicts = [judge_day(day, counts.get(day, 0), counts, today) for day in sorted(days)]
    anomalous = [v for v in verdicts if v.anomalous]
    judged = [v for v in verdicts if v.ratio is not None]
    # The day worth showing: the worst anomaly, else the last judged day, else the last day.
    shown = min(anomalous, key=lambda v: v.ratio or 0.0) if anomalous else (judged or verdicts)[-1]
    if anomalous:
        description = f"{len(anomalous)} of {len(verdicts)} day(s) far below the trailing week; worst " \
                      f"{shown.day}: {shown.note}"
    elif len(verdicts) == 1:
        description = f"{shown.day}: {shown.note}"
    else:
        description = f"{len(judged)} of {len(verdicts)} day(s) judged, none far below the trailing week"
    metadata: dict[str, object] = {
        "partition": shown.day.isoformat(),
        "row_count": shown.rows,
        "trailing_median": shown.trailing_median,
        "ratio": shown.ratio,
        "previous_partitions": shown.previous_partitions,
        "threshold_ratio": MIN_RATIO,
    }
    if len(verdicts) > 1:
        metadata["days"] = MetadataValue.json([v.as_json() for v in verdicts])
        metadata["anomalous_days"] = [v.day.isoformat() for v in anomalous]
    return AssetCheckResult(
        check_name=ROW_COUNT_CHECK,
        passed=not anomalous,
        severity=AssetCheckSeverity.WARN,
        description=description,
        metadata=metadata,
    )


# ----------------------------------------------------------------------------- empty partitions
#
# A vendor that answers nothing at all (a revoked scope, a terminal list that no longer matches, an
# outage that returns empty pages) leaves partitions that are valid, committed and empty; the
# trailing-week check has no verdict on a table that was always empty. So every source table also
# asks: did a partition of this run come back with no rows while the warehouse knows devices of
# this vendor? Which devices count is part of the source's declaration (its `fleet`).

EMPTY_PARTITION_CHECK = "rows_where_the_fleet_has_devices"


@dataclass(frozen=True)
class Fleet:
    """The devices a vendor's tables are about, as the warehouse knows them: the rows of the latest
    snapshot of each device table, filtered by ``where`` (SQL over that table's columns)."""

    description: str
    snapshots: tuple[tuple[TableRef, str], ...]

    def devices(self, conn: duckdb.DuckDBPyConnection, account: str | None = None) -> int | None:
        """How many devices (of ``account`` alone, if given); None when no snapshot of any of the
        tables exists yet."""
        counts = [latest_snapshot_rows(conn, of_account(table, account), where) for table, where in self.snapshots]
        known = [n for n in counts if n is not None]
        return sum(known) if known else None


def empty_partition_check_spec(asset_key: AssetKey, fleet: Fleet) -> AssetCheckSpec:
    return AssetCheckSpec(
        EMPTY_PARTITION_CHECK,
        asset=asset_key,
        description=f"Warns when a partition of the run has no rows although the warehouse knows "
        f"{fleet.description} (the vendor answered nothing for them).",
    )


def empty_partition_check(
    conn: duckdb.DuckDBPyConnection, table: TableRef, fleet: Fleet, rows_by_partition: Sequence[tuple[object, int]],
    account: str | None = None,
) -> AssetCheckResult:
    """WARN when a partition has 0 rows and the fleet (``account``'s, if given) has devices; the
    reason names both."""
    empty = [str(key) for key, rows in rows_by_partition if rows == 0]
    devices = fleet.devices(conn, account)
    metadata: dict[str, object] = {"empty_partitions": empty, "fleet_devices": devices,
                                   "partitions": len(rows_by_partition)}
    if not empty:
        description = f"every partition of the run has rows ({len(rows_by_partition)})"
    elif devices is None:
        description = (f"no verdict: {len(empty)} empty partition(s), but the warehouse has no snapshot "
                       f"of {fleet.description} yet")
    elif devices == 0:
        description = f"{len(empty)} empty partition(s), and the warehouse knows no {fleet.description}"
    else:
        description = (f"{table}: 0 rows in {len(empty)} of {len(rows_by_partition)} partition(s) "
                       f"({', '.join(empty)}) although the latest snapshot lists {devices} "
                       f"{fleet.description}: the vendor answered nothing for them (scope, device list "
                       f"or an outage that returns empty answers?)")
    return AssetCheckResult(
        check_name=EMPTY_PARTITION_CHECK,
        passed=not (empty and devices),
        severity=AssetCheckSeverity.WARN,
        description=description,
        metadata=metadata,
    )
