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

Storage is kept behind this module so the warehouse is configuration: the one DuckDB file
(``FLEET_WAREHOUSE=duckdb``, the default), or a DuckLake (``ducklake``: the catalog in Postgres, the
data as Parquet files in a folder or object storage) that processes on several machines write at
once. In the lake there is no file to lock: readers keep a consistent snapshot, and writers take a
Postgres advisory lock per table they write (:func:`table_turns`) because DuckLake detects
conflicts per table, not per partition. Every connection to the lake is opened by
:func:`connect` or :func:`attach_warehouse`, which install its extensions (docs/distributed.md).
"""

from __future__ import annotations

import fcntl
import importlib
import json
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import polars as pl
from dagster._utils.backoff import backoff
from dagster_duckdb import DuckDBResource

if TYPE_CHECKING:
    from fleet_pipeline.settings import LakeSettings

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


# --- The lake (FLEET_WAREHOUSE=ducklake) ---------------------------------------------------------

# The name the lake is attached under in every connection (dbt's profile uses the same).
LAKE_ALIAS = "lake"
# DuckDB extension -> the PyPI wheel that ships it for exactly one DuckDB version.
_EXTENSION_WHEELS = {"ducklake": "duckdb_extension_ducklake", "postgres_scanner": "duckdb_extension_postgres_scanner"}
LAKE_EXTENSIONS = tuple(_EXTENSION_WHEELS)
_ATTACH_ATTEMPTS = 5


def sql_string(value: str) -> str:
    """``value`` as an SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


class LakeError(RuntimeError):
    """The lake's catalog or extensions could not be reached or loaded (the message names which)."""


def extension_file(name: str) -> Path:
    """The ``.duckdb_extension`` file of ``name`` in its PyPI wheel, for the running DuckDB version."""
    module = importlib.import_module(_EXTENSION_WHEELS[name])
    shipped = Path(module.__file__).parent / "extensions"
    path = shipped / f"v{duckdb.__version__}" / f"{name}.duckdb_extension"
    if not path.exists():
        versions = sorted(p.name for p in shipped.iterdir()) if shipped.is_dir() else []
        raise LakeError(f"the {name} extension wheel ({_EXTENSION_WHEELS[name]}) has no build for DuckDB "
                        f"{duckdb.__version__} (it ships {', '.join(versions) or 'none'}); an extension loads only "
                        "into its own DuckDB version: install the wheel of the same version as duckdb")
    return path


def load_extensions(conn: duckdb.DuckDBPyConnection, names: Sequence[str], directory: Path, source: str) -> None:
    """Install (once per extension directory) and load the extensions ``names``: from PyPI's wheels
    offline (``source="wheels"``: ``INSTALL '<file>'``), or from DuckDB's own repository
    (``"repository"``: ``INSTALL ducklake``, what production machines with internet access run)."""
    conn.execute(f"SET extension_directory = {sql_string(str(directory))}")
    # Processes starting at once on a new directory (two steps, two workers) take turns: one that
    # saw a half-copied file as installed would LOAD it, fail, and try to download it instead.
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / ".install.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        installed = {row[0] for row in conn.execute(
            "SELECT extension_name FROM duckdb_extensions() WHERE installed").fetchall()}
        for name in names:
            if name not in installed:
                what = sql_string(str(extension_file(name))) if source == "wheels" else name
                try:
                    conn.execute(f"INSTALL {what}")
                except duckdb.Error as exc:
                    raise LakeError(f"INSTALL {name} (from {source}) into {directory} failed: {exc}") from None
            conn.execute(f"LOAD {name}")


def load_lake_extensions(conn: duckdb.DuckDBPyConnection, lake: LakeSettings) -> None:
    load_extensions(conn, LAKE_EXTENSIONS, lake.extension_directory, lake.extensions_from)


def attach_lake(conn: duckdb.DuckDBPyConnection, lake: LakeSettings, alias: str = LAKE_ALIAS,
                read_only: bool = False) -> None:
    """Attach the lake to ``conn`` as ``alias`` (created on first use: the catalog's tables in the
    Postgres database, the data under the data path)."""
    load_lake_extensions(conn, lake)
    options = f"DATA_PATH {sql_string(lake.data_path)}" + (", READ_ONLY" if read_only else "")
    for attempt in range(1, _ATTACH_ATTEMPTS + 1):
        try:
            conn.execute(f"ATTACH {sql_string('ducklake:postgres:' + lake.catalog_libpq)} AS {alias} ({options})")
            return
        except duckdb.Error as exc:
            # Two processes attaching a new catalog at once both create its tables; the second
            # fails on "already exists" and finds the catalog made when it tries again.
            if "already exists" in str(exc) and attempt < _ATTACH_ATTEMPTS:
                time.sleep(0.2 * attempt)
                continue
            raise LakeError(f"attaching the DuckLake catalog {lake.catalog_shown} (data {lake.data_path}) failed: "
                            f"{_without_password(str(exc))}") from None


def _without_password(text: str) -> str:
    return re.sub(r"password=('(?:[^'\\]|\\.)*'|\S+)", "password=***", text)


def connect(database: str | Path, lake: LakeSettings | None = None, read_only: bool = False,
            config: Mapping[str, Any] | None = None) -> duckdb.DuckDBPyConnection:
    """A connection to the warehouse: the DuckDB file ``database``, or with ``lake`` the lake, in use
    as the connection's default catalog (so unqualified ``schema.table`` names mean the lake's)."""
    if lake is None:
        return duckdb.connect(str(database), read_only=read_only, config=dict(config or {}))
    conn = duckdb.connect(":memory:", config=dict(config or {}))
    try:
        attach_lake(conn, lake, read_only=read_only)
        conn.execute(f"USE {LAKE_ALIAS}")
    except BaseException:
        conn.close()
        raise
    return conn


def attach_warehouse(conn: duckdb.DuckDBPyConnection, alias: str, database: str | Path,
                     lake: LakeSettings | None = None) -> None:
    """Attach the warehouse read-only to ``conn`` as ``alias`` (the serving copy reads it so)."""
    if lake is None:
        conn.execute(f"ATTACH {sql_string(str(database))} AS {alias} (READ_ONLY)")
    else:
        attach_lake(conn, lake, alias, read_only=True)


def whole_turn(database: str | Path, lake: LakeSettings | None, holder: str,
               on_wait: Callable[[str], None] | None = None) -> AbstractContextManager[Any]:
    """The turn of a step that uses the warehouse throughout (dbt, the serving copy): the file's
    lock (:func:`exclusive_access`); nothing in the lake, whose readers keep a consistent snapshot
    and whose writers take turns per table."""
    return nullcontext() if lake is not None else exclusive_access(database, holder, on_wait)


def ensure_lake(lake: LakeSettings) -> None:
    """Install the lake's extensions and create its catalog if new (before dbt, which cannot install)."""
    connect("", lake).close()


@contextmanager
def reading(database: str | Path, lake: LakeSettings | None, holder: str,
            on_wait: Callable[[str], None] | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only connection: the file in this process's turn on it, or the lake's latest snapshot
    (no turn to wait for: DuckLake readers never block writers)."""
    with whole_turn(database, lake, holder, on_wait):
        conn = connect(database, lake, read_only=True)
        try:
            yield conn
        finally:
            conn.close()


def _advisory_key(table: TableRef) -> int:
    """A stable 63-bit key per table for ``pg_advisory_lock`` (the same in every process and machine)."""
    import hashlib

    return int.from_bytes(hashlib.sha256(f"fleet_pipeline:{table}".encode()).digest()[:8], "big") >> 1


@contextmanager
def table_turns(lake: LakeSettings | None, tables: Sequence[TableRef], holder: str = "a warehouse write",
                on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold a write turn on each of ``tables`` (a no-op for the file, which its flock serializes).

    DuckLake detects conflicts per table: two processes replacing different days of one table
    would see one of them fail at COMMIT. So each writer first takes a Postgres advisory lock per
    table on the lake's own catalog database, in one order (no deadlock between two writers of the
    same tables), and holds them until its transaction is over; the locks belong to a session of
    their own, which Postgres ends (releasing them) when the process dies, killed or not. Measured
    against retrying a conflicted transaction in docs/distributed.md.
    """
    if lake is None:
        yield
        return
    import psycopg2

    keys = sorted({_advisory_key(table) for table in tables})
    session = psycopg2.connect(lake.catalog, application_name=f"fleet_pipeline table turn: {holder}"[:63])
    try:
        session.autocommit = True
        with session.cursor() as cursor:
            started = time.monotonic()
            for key in keys:
                cursor.execute("SELECT pg_try_advisory_lock(%s)", [key])
                if not cursor.fetchone()[0]:
                    if on_wait is not None:
                        on_wait(f"waiting for another writer of {', '.join(str(t) for t in tables)} in the lake")
                    cursor.execute("SELECT pg_advisory_lock(%s)", [key])
            waited = time.monotonic() - started
            if on_wait is not None and waited > LOCK_WAIT_REPORT_S:
                on_wait(f"waited {waited:.0f} s for the lake's tables {', '.join(str(t) for t in tables)}")
        yield
    finally:
        session.close()  # ending the session releases its advisory locks


# A source step's write: one batch from a Parquet file, by one thread under a small memory limit.
# DuckDB keeps the new row groups in memory until the commit; each of its threads builds row groups
# of its own, and the buffer pool grows to its limit before it spills. The write takes a second or
# two either way; capped, the step's peak is lower: +45 against +76 MiB for 217,000 track points,
# +107 against +155 MiB for 2.2 million (docs/performance.md). 16 MB saved another ~20 MiB, but a
# commit that replaces a day over rows already stored then failed to pin a block: the limit has to
# fit what the commit needs, which grows with the table, not only the batch. A resource's own
# connection_config wins over these.
SOURCE_WRITE_CONFIG = {"threads": 1, "memory_limit": "64MB"}
# Rows per row group of the file a batch is handed to DuckDB in: DuckDB reads a row group at a time.
HANDOVER_ROW_GROUP = 16_384


class WarehouseResource(DuckDBResource):
    """The warehouse: the working DuckDB file, or the lake when ``lake_catalog`` is set.

    Like ``DuckDBResource``, but creates the file's folder, opens it only in this process's turn
    (:func:`exclusive_access`), and always closes the connection, also when the step fails (the
    parent leaves it to the garbage collector, which keeps the file locked against the next
    writer). In the lake there is no file to take turns on: writers take turns per table instead
    (:meth:`table_turns`).
    """

    # The lake (FLEET_WAREHOUSE=ducklake); given as EnvVar("FLEET_LAKE_CATALOG") by
    # :func:`warehouse_resource`, so the UI shows the variable's name, never the URL's password.
    lake_catalog: str | None = None
    lake_data_path: str | None = None
    extension_directory: str | None = None
    lake_extensions_from: str = "wheels"

    @property
    def lake(self) -> LakeSettings | None:
        if not self.lake_catalog:
            return None
        from fleet_pipeline.settings import LakeSettings

        return LakeSettings(catalog=self.lake_catalog, data_path=self.lake_data_path or "",
                            extension_directory=Path(self.extension_directory or "duckdb_extensions"),
                            extensions_from=self.lake_extensions_from)

    def table_turns(self, tables: Sequence[TableRef], holder: str = "a warehouse write",
                    on_wait: Callable[[str], None] | None = None) -> AbstractContextManager[None]:
        return table_turns(self.lake, tables, holder, on_wait)

    @contextmanager
    def get_connection(
        self, holder: str = "a warehouse connection", on_wait: Callable[[str], None] | None = None,
        hold: Hold | None = None,
    ) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-write connection, held under the file's lock; ``hold`` (if given) is filled
        with how long this waited for its turn and when it had the file."""
        lake = self.lake
        if lake is not None:
            hold = hold if hold is not None else Hold()
            hold.held_from = _utcnow()
            conn = connect(self.database, lake, config=self.connection_config)
            try:
                yield conn
            finally:
                conn.close()
                hold.held_until = _utcnow()
            return
        with exclusive_access(self.database, holder, on_wait, hold):  # (creates the file's folder)
            # A process that ignores the lock (a BI tool opened on the working file, say) may
            # still hold DuckDB's own lock for a moment: retry instead of failing.
            conn = backoff(
                fn=duckdb.connect,
                retry_on=(RuntimeError, duckdb.IOException),
                kwargs={"database": self.database, "read_only": False,
                        "config": {**SOURCE_WRITE_CONFIG, **self.connection_config}},
                max_retries=10,
            )
            try:
                yield conn
            finally:
                conn.close()


def warehouse_resource(env: Mapping[str, str] | None = None) -> WarehouseResource:
    """The warehouse the settings name: the file, or the lake (its catalog URL passed by name)."""
    from dagster import EnvVar

    from fleet_pipeline import settings

    lake = settings.lake_settings(env)
    if lake is None:
        return WarehouseResource(database=str(settings.duckdb_path(env)))
    return WarehouseResource(database=LAKE_ALIAS, lake_catalog=EnvVar("FLEET_LAKE_CATALOG"),
                             lake_data_path=lake.data_path, extension_directory=str(lake.extension_directory),
                             lake_extensions_from=lake.extensions_from)


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
        "SELECT count(*) FROM information_schema.tables WHERE table_catalog = current_database() "
        "AND table_schema = ? AND table_name = ?",
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
        frame.write_parquet(path, compression="uncompressed", statistics=False, row_group_size=HANDOVER_ROW_GROUP)
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
    turns: Callable[[Sequence[TableRef]], AbstractContextManager[Any]] | None = None,
    account: str | None = None,
) -> dict[date, ReplaceResult]:
    """Atomically swap the rows of several partitions (a backfill run's days) for ``frame``.

    One transaction for all of them: a run that fails leaves every one of its partitions as it
    was, never some days new and some old. A partition that ``frame`` has no rows for is emptied
    (the vendor reported nothing that day). ``rejects`` carry their partition in ``partition_key``
    and replace the rejects of exactly these partitions; so do ``field_issues``, in
    ``<schema>.field_issues`` (created the first time a batch has any). The transaction runs inside
    ``turns`` of the tables it writes (the lake's per-table turns, :func:`table_turns`).

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
    issues_table = TableRef(table.schema, FIELD_ISSUES_TABLE)
    with turns([table, rejects_table, issues_table]) if turns is not None else nullcontext():
        conn.execute("BEGIN TRANSACTION")
        try:
            before = _replace_rows(conn, table, frame, f'"{key_column}" IN ({placeholders}){of_account}',
                                   [*keys, *account_params], key_column)
            of_partitions = f"table_name = ? AND partition_key IN ({placeholders}){of_account}"
            problem_params = [table.name, *(str(k) for k in keys), *account_params]
            if rejects is not None:
                _replace_rows(conn, rejects_table, rejects, of_partitions, problem_params)
            if field_issues is not None and (field_issues.height or _table_exists(conn, issues_table)):
                _replace_rows(conn, issues_table, field_issues, of_partitions, problem_params)
            conn.execute("COMMIT")
        except BaseException as error:
            _roll_back(conn, error)
            raise
    return {
        key: ReplaceResult(
            rows_before=before.get(key, 0), rows_written=written.get(key, 0),
            rejects_written=rejected.get(str(key), 0),
        )
        for key in keys
    }


def _roll_back(conn: duckdb.DuckDBPyConnection, error: BaseException) -> None:
    """Roll the failed transaction back without hiding why it failed.

    A COMMIT that fails (a DuckLake write conflict, a full disk) has already ended the transaction,
    and ROLLBACK then raises "no transaction is active": raised from here, that would replace the
    real error. Whatever ROLLBACK says is added to ``error`` as a note instead.
    """
    try:
        conn.execute("ROLLBACK")
    except duckdb.Error as rollback_error:
        if "no transaction is active" not in str(rollback_error):
            error.add_note(f"(the ROLLBACK after it failed too: {rollback_error})")


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
        "WHERE table_catalog = current_database() AND table_schema LIKE ? ORDER BY 1, 2",
        [schema_prefix + "%"],
    ).fetchall()
    return {f"{s}.{t}": count_rows(conn, TableRef(s, t)) for s, t in tables}
