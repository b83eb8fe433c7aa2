"""DuckDB access: atomic partition replacement, schema evolution and table statistics.

Everything that writes the warehouse goes through :func:`replace_partitions`, so the guarantees the
rest of the pipeline relies on live in one place:

* a partition (one UTC day of an event table, or one day's snapshot) is replaced by a single
  transaction — delete, insert, rejects — so a crash or an error leaves the previous rows intact;
  a run that covers several days (a backfill) replaces all of them in one transaction;
* re-running a partition is idempotent: it deletes exactly the rows it is about to write again;
* a column the vendor starts sending is added to the table instead of failing the load; rows are
  inserted by column name, never by position;
* an empty batch still creates its table, so downstream models can always select from it.

Every process that opens the working file holds its lock meanwhile (:func:`exclusive_access`),
so the sources, dbt and the serving copy take turns on the file instead of failing on DuckDB's
own lock, and hold it only while they use it.

Storage is kept behind this module so a move to MotherDuck (an ``md:`` path) is configuration.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
from dagster._utils.backoff import backoff
from dagster_duckdb import DuckDBResource

REJECTS_TABLE = "rejects"
# Kept rows whose optional field did not convert (stored NULL): same columns as the rejects.
FIELD_ISSUES_TABLE = "field_issues"
# How often a process waiting for the working file says so, and who holds it.
LOCK_WAIT_REPORT_S = 30.0
_LOCK_POLL_S = 0.1


@dataclass
class Hold:
    """One process's turn on the working file: how long it waited, and when it had the file."""

    waited_s: float = 0.0
    held_from: datetime | None = None
    held_until: datetime | None = None

    @property
    def held_s(self) -> float:
        if self.held_from is None or self.held_until is None:
            return 0.0
        return (self.held_until - self.held_from).total_seconds()


def _utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def lock_path(database: str | Path) -> Path | None:
    """The lock file beside a DuckDB file; None where no file is shared (memory, MotherDuck)."""
    text = str(database)
    if text == ":memory:" or text.startswith("md:"):
        return None
    return Path(text).with_name(Path(text).name + ".lock")


# Within one process the lock is re-entrant (a dbt step reads key figures inside its turn); a
# thread of the same process waits like another process would.
_local_locks: dict[Path, threading.RLock] = {}
_local_depth: dict[Path, int] = {}
_local_guard = threading.Lock()


@contextmanager
def exclusive_access(
    database: str | Path, holder: str, on_wait: Callable[[str], None] | None = None,
    hold: Hold | None = None,
) -> Iterator[Hold]:
    """Hold the working file while this process has it open.

    DuckDB lets one process open a file for writing, and while it does, no other process can
    open the file at all, not even to read. So every process that opens the working file (a
    source's write, a dbt build, the serving copy) takes this lock first and waits for its turn:
    extraction, which needs no file, runs beside another process's write. The lock is an
    ``flock`` on ``<file>.lock``: the kernel releases it when its process dies, killed or not,
    so there is nothing to clean up after a crash. ``on_wait`` hears who holds the file when this
    starts waiting, and again every :data:`LOCK_WAIT_REPORT_S`. The turn is recorded in ``hold``
    (a new one if not given), which is also what the block receives.
    """
    hold = hold if hold is not None else Hold()
    path = lock_path(database)
    if path is None:
        hold.held_from = _utcnow()
        yield hold
        hold.held_until = _utcnow()
        return
    path = path.resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    with _local_guard:
        local = _local_locks.setdefault(path, threading.RLock())
    started = time.monotonic()
    with local:
        depth = _local_depth.get(path, 0)
        descriptor = None if depth else _acquire(path, holder, on_wait, started)
        _local_depth[path] = depth + 1
        hold.waited_s = time.monotonic() - started
        hold.held_from = _utcnow()
        try:
            yield hold
        finally:
            hold.held_until = _utcnow()
            _local_depth[path] = depth
            if descriptor is not None:
                os.ftruncate(descriptor, 0)
                os.close(descriptor)  # closing the descriptor releases the flock


def _acquire(path: Path, holder: str, on_wait: Callable[[str], None] | None, started: float) -> int:
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    next_report = started  # say so at once, then every LOCK_WAIT_REPORT_S
    while True:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if on_wait is not None and time.monotonic() >= next_report:
                on_wait(f"waiting {time.monotonic() - started:.0f} s for the warehouse {path.with_suffix('')}: "
                        f"held by {_holder_of(path) or 'another process'}")
                next_report += LOCK_WAIT_REPORT_S
            time.sleep(_LOCK_POLL_S)
        except BaseException:
            os.close(descriptor)
            raise
    # Who holds it, for the processes waiting (the file's content is informational only).
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, f"pid {os.getpid()}, {holder}, since {_utcnow():%H:%M:%S} UTC\n".encode(), 0)
    return descriptor


def _holder_of(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


class WarehouseResource(DuckDBResource):
    """The working DuckDB file. Like ``DuckDBResource``, but creates the file's folder, opens it
    only in this process's turn (:func:`exclusive_access`), and always closes the connection,
    also when the step fails (the parent leaves it to the garbage collector, which keeps the file
    locked against the next writer)."""

    @contextmanager
    def get_connection(
        self, holder: str = "a warehouse connection", on_wait: Callable[[str], None] | None = None,
        hold: Hold | None = None,
    ) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-write connection, held under the file's lock; ``hold`` (if given) is filled
        with how long this waited for its turn and when it had the file."""
        with exclusive_access(self.database, holder, on_wait, hold):  # (creates the file's folder)
            # A process that ignores the lock (a BI tool opened on the working file, say) may
            # still hold DuckDB's own lock for a moment: retry instead of failing.
            conn = backoff(
                fn=duckdb.connect,
                retry_on=(RuntimeError, duckdb.IOException),
                kwargs={"database": self.database, "read_only": False, "config": self.connection_config},
                max_retries=10,
            )
            try:
                yield conn
            finally:
                conn.close()


@dataclass(frozen=True)
class TableRef:
    schema: str
    name: str

    @property
    def sql(self) -> str:
        return f'"{self.schema}"."{self.name}"'

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclass(frozen=True)
class ReplaceResult:
    rows_before: int
    rows_written: int
    rejects_written: int

    @property
    def rows_added(self) -> int:
        """How many rows this run added to the partition (late data shows up here on re-runs)."""
        return self.rows_written - self.rows_before


def _duckdb_columns(conn: duckdb.DuckDBPyConnection, relation: str) -> dict[str, str]:
    rows = conn.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()
    return {row[0]: row[1] for row in rows}


def _table_exists(conn: duckdb.DuckDBPyConnection, table: TableRef) -> bool:
    found = conn.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
        [table.schema, table.name],
    ).fetchone()
    return bool(found and found[0])


def _ensure_table(conn: duckdb.DuckDBPyConnection, table: TableRef, incoming: str) -> None:
    """Create the table from the batch's types, or add the columns it has never seen before."""
    conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{table.schema}"')
    if not _table_exists(conn, table):
        conn.execute(f"CREATE TABLE {table.sql} AS SELECT * FROM {incoming} LIMIT 0")
        return
    existing = _duckdb_columns(conn, table.sql)
    for column, column_type in _duckdb_columns(conn, incoming).items():
        if column not in existing:
            conn.execute(f'ALTER TABLE {table.sql} ADD COLUMN "{column}" {column_type}')


def _replace_rows(
    conn: duckdb.DuckDBPyConnection,
    table: TableRef,
    frame: pl.DataFrame,
    where: str,
    params: list[Any],
    count_by: str | None = None,
) -> dict[Any, int]:
    """Delete the rows matching ``where`` and insert ``frame``; the deleted rows' count, in total
    under ``None`` or per value of ``count_by``."""
    with _staged(frame) as incoming:
        _ensure_table(conn, table, incoming)
        group = f'"{count_by}"' if count_by else "NULL"
        before = conn.execute(
            f"SELECT {group}, count(*) FROM {table.sql} WHERE {where} GROUP BY 1", params
        ).fetchall()
        conn.execute(f"DELETE FROM {table.sql} WHERE {where}", params)
        if frame.height:
            conn.execute(f"INSERT INTO {table.sql} BY NAME SELECT * FROM {incoming}")
        return {key: int(count) for key, count in before}


@contextmanager
def _staged(frame: pl.DataFrame) -> Iterator[str]:
    """``frame`` as a relation DuckDB can select from: a Parquet file polars writes itself, read by
    ``read_parquet``. Handing DuckDB the frame as Arrow would import pyarrow, ~40 MiB in every
    process that writes (docs/performance.md); the file costs ~0.3 µs a row."""
    with tempfile.TemporaryDirectory(prefix="fleet-incoming-") as scratch:
        path = Path(scratch) / "rows.parquet"
        frame.write_parquet(path, compression="uncompressed", statistics=False)
        yield "read_parquet('{}')".format(str(path).replace("'", "''"))


def rejects_frame(
    table: TableRef, partition_key: str, reasons: list[str], records: list[dict[str, Any]] | list[str],
    *, vendor: str | None = None, fields: list[str] | None = None, values: list[str | None] | None = None,
) -> pl.DataFrame:
    """Rows that failed validation, with the vendor, the failing fields and their values as sent, the
    reason and the record exactly as the vendor sent it. The field issues of kept rows
    (:data:`FIELD_ISSUES_TABLE`) have the same shape."""
    encoded = [r if isinstance(r, str) else json.dumps(r, default=str, sort_keys=True) for r in records]
    count = len(reasons)
    return pl.DataFrame(
        {
            "table_name": [table.name] * count,
            "partition_key": [partition_key] * count,
            "vendor": [vendor] * count,
            "field": fields if fields is not None else [None] * count,
            "value": values if values is not None else [None] * count,
            "reason": reasons,
            "record": encoded,
            "rejected_at": [datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0)] * count,
        },
        schema={
            "table_name": pl.String,
            "partition_key": pl.String,
            "vendor": pl.String,
            "field": pl.String,
            "value": pl.String,
            "reason": pl.String,
            "record": pl.String,
            "rejected_at": pl.Datetime("us"),
        },
    )


def problems_frame(table: TableRef, partition_key: str, problems: Sequence[Any], vendor: str | None) -> pl.DataFrame:
    """:func:`rejects_frame` of ``validation.Problem`` objects (rejects or field issues)."""
    return rejects_frame(table, partition_key, [p.reason for p in problems], [p.record for p in problems],
                         vendor=vendor, fields=[p.fields for p in problems], values=[p.values for p in problems])


def replace_partition(
    conn: duckdb.DuckDBPyConnection,
    table: TableRef,
    frame: pl.DataFrame,
    key_column: str,
    key_value: date,
    rejects: pl.DataFrame | None = None,
) -> ReplaceResult:
    """Atomically swap the rows of one partition (``key_column = key_value``) for ``frame``.

    Rejected rows of the same partition are swapped in the same transaction, in
    ``<schema>.rejects``, so the two can never disagree.
    """
    return replace_partitions(conn, table, frame, key_column, [key_value], rejects)[key_value]


def replace_partitions(
    conn: duckdb.DuckDBPyConnection,
    table: TableRef,
    frame: pl.DataFrame,
    key_column: str,
    key_values: Sequence[date],
    rejects: pl.DataFrame | None = None,
    field_issues: pl.DataFrame | None = None,
    account: str | None = None,
) -> dict[date, ReplaceResult]:
    """Atomically swap the rows of several partitions (a backfill run's days) for ``frame``.

    One transaction for all of them: a run that fails leaves every one of its partitions as it
    was, never some days new and some old. A partition that ``frame`` has no rows for is emptied
    (the vendor reported nothing that day). ``rejects`` carry their partition in ``partition_key``
    and replace the rejects of exactly these partitions; so do ``field_issues``, in
    ``<schema>.field_issues`` (created the first time a batch has any).

    With ``account``, only that vendor account's rows of the partitions (and its rejects and field
    issues) are replaced: two accounts loading the same day and table never delete each other's
    rows. Rows stored before tables had an ``account`` column belong to ``default``.
    """
    keys = list(dict.fromkeys(key_values))
    if not keys:
        raise ValueError(f"{table}: no partition to replace")
    if key_column not in frame.columns:
        raise ValueError(f"{table}: batch has no partition column {key_column!r}")
    stray = frame.filter(~pl.col(key_column).is_in(keys) | pl.col(key_column).is_null()).height
    if stray:
        shown = ", ".join(str(k) for k in keys[:3]) + (" ..." if len(keys) > 3 else "")
        raise ValueError(f"{table}: {stray} rows do not belong to partitions {key_column} in ({shown})")
    written = _counts_by(frame, key_column, keys)
    rejected: dict[str, int] = {}
    if rejects is not None:
        if rejects.filter(~pl.col("partition_key").is_in([str(k) for k in keys])).height:
            raise ValueError(f"{table}: rejects of a partition this write does not replace")
        rejected = _counts_by(rejects, "partition_key", [str(k) for k in keys])
    placeholders = ", ".join("?" for _ in keys)
    of_account, account_params = ("", []) if account is None else (" AND coalesce(\"account\", 'default') = ?", [account])
    rejects_table = TableRef(table.schema, REJECTS_TABLE)
    conn.execute("BEGIN TRANSACTION")
    try:
        before = _replace_rows(conn, table, frame, f'"{key_column}" IN ({placeholders}){of_account}',
                               [*keys, *account_params], key_column)
        of_partitions = f"table_name = ? AND partition_key IN ({placeholders}){of_account}"
        problem_params = [table.name, *(str(k) for k in keys), *account_params]
        if rejects is not None:
            _replace_rows(conn, rejects_table, rejects, of_partitions, problem_params)
        issues_table = TableRef(table.schema, FIELD_ISSUES_TABLE)
        if field_issues is not None and (field_issues.height or _table_exists(conn, issues_table)):
            _replace_rows(conn, issues_table, field_issues, of_partitions, problem_params)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return {
        key: ReplaceResult(
            rows_before=before.get(key, 0), rows_written=written.get(key, 0),
            rejects_written=rejected.get(str(key), 0),
        )
        for key in keys
    }


def _counts_by(frame: pl.DataFrame, column: str, keys: Sequence[Any]) -> dict[Any, int]:
    counts = dict(frame.group_by(column).len().iter_rows()) if frame.height else {}
    return {key: int(counts.get(key, 0)) for key in keys}


def partition_row_counts(
    conn: duckdb.DuckDBPyConnection, table: TableRef, key_column: str, first: date, last: date
) -> dict[date, int]:
    """Rows per partition between ``first`` and ``last`` (both included); absent days are left out."""
    if not _table_exists(conn, table):
        return {}
    rows = conn.execute(
        f'SELECT "{key_column}", count(*) FROM {table.sql} WHERE "{key_column}" BETWEEN ? AND ? GROUP BY 1',
        [first, last],
    ).fetchall()
    return {row[0]: int(row[1]) for row in rows}


def latest_snapshot_rows(conn: duckdb.DuckDBPyConnection, table: TableRef, where: str = "true") -> int | None:
    """Rows of the table's latest ``snapshot_date`` that match ``where``; None when it has no snapshot."""
    if not _table_exists(conn, table):
        return None
    latest = conn.execute(f"SELECT max(snapshot_date) FROM {table.sql}").fetchone()[0]
    if latest is None:
        return None
    return count_rows(conn, table, f"snapshot_date = ? AND ({where})", [latest])


def count_rows(conn: duckdb.DuckDBPyConnection, table: TableRef, where: str = "true", params: list[Any] | None = None) -> int:
    if not _table_exists(conn, table):
        return 0
    return int(conn.execute(f"SELECT count(*) FROM {table.sql} WHERE {where}", params or []).fetchone()[0])


def table_row_counts(conn: duckdb.DuckDBPyConnection, schema_prefix: str = "raw_") -> dict[str, int]:
    """Row count of every table whose schema starts with ``schema_prefix`` (for summaries)."""
    tables = conn.execute(
        "SELECT table_schema, table_name FROM information_schema.tables "
        "WHERE table_schema LIKE ? ORDER BY 1, 2",
        [schema_prefix + "%"],
    ).fetchall()
    return {f"{s}.{t}": count_rows(conn, TableRef(s, t)) for s, t in tables}
