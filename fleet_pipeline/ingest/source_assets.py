"""What the assets of every source share: how they are declared, extracted, loaded and described.

A vendor's ``assets.py`` only says what is vendor-specific — which calls to make, how to type the
rows, and how many days one run may cover. Everything else is here so that every raw table gets the
same guarantees and the same metadata: the warehouse held for the write alone, step retries for
vendor outages, the rejects and row-count checks, partitioning by UTC day (events) or one snapshot
per UTC day (fleet state), runs over several days for backfills, and the metadata
``fleet_pipeline.ingest.loader`` builds.
"""

from __future__ import annotations

import contextlib
import functools
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any

import duckdb as duckdb_errors
import polars as pl
import requests
from dagster import (
    AssetCheckKey,
    AssetCheckResult,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetSpec,
    AssetsDefinition,
    BackfillPolicy,
    Backoff,
    BetaWarning,
    Failure,
    MaterializeResult,
    RetryPolicy,
    TableColumn,
    TableSchema,
    asset,
)
from urllib3.exceptions import LocationParseError

from fleet_pipeline import settings
from fleet_pipeline.automation.anomaly import (
    Fleet,
    empty_partition_check,
    empty_partition_check_spec,
    of_account,
    row_count_check,
    row_count_check_spec,
)
from fleet_pipeline.automation.partitions import daily_partitions, partition_day, range_bounds
from fleet_pipeline.executors import step_executor
from fleet_pipeline.ingest.archiving import StepRecording, attach_replay, replay_of
from fleet_pipeline.ingest.fanout import chunked
from fleet_pipeline.ingest.http import (
    RetryableVendorError,
    VendorHTTPError,
    VendorRateLimitError,
    VendorResponseError,
    VendorTransportError,
)
from fleet_pipeline.ingest.loader import (
    AllRowsRejected,
    declared_table_schema,
    materialization_metadata,
    partition_metadata,
    rejects_check,
    rejects_check_spec,
    validate_batch,
    write_batch,
)
from fleet_pipeline.ingest.records import Col
from fleet_pipeline.ingest.validation import SHARED_COLUMN_DESCRIPTIONS
from fleet_pipeline.ingest.warehouse import Hold, TableRef, WarehouseResource
from fleet_pipeline.sources.accounts import DEFAULT_ACCOUNT

# The reporting steps (dbt, the serving copy) hold the warehouse for their whole step, so they take
# turns in this Dagster pool (limit 1, see fleet_pipeline.instance). A source step is not in it: it
# spends minutes on vendor calls and a second or two writing, so it holds the file for the write
# alone (warehouse.exclusive_access), and the vendors of one run extract side by side.
WRITER_POOL = "duckdb_writer"
# Steps of one vendor share its rate limit, so a run gains nothing from two of them at once: the
# jobs run one step per vendor at a time, every vendor side by side (SOURCE_EXECUTOR). On Celery
# workers (FLEET_EXECUTOR=celery) the vendor's shared ledger keeps the budget instead.
VENDOR_TAG = "fleet/vendor"
# The vendor account an asset extracts with (absent: the vendor's one account, ``default``). Each
# account has its own budget, so the limit of one step at a time applies per account: the vendor tag
# of an account's steps names the account too (``navixy:eu``), and accounts extract side by side.
ACCOUNT_TAG = "fleet/account"
ACCOUNT_COLUMN = TableColumn("account", "VARCHAR", description=SHARED_COLUMN_DESCRIPTIONS["account"])
SOURCE_EXECUTOR = step_executor(
    "source_executor", "celery_source_executor",
    # One step process per vendor (five vendors); each waits on its vendor's rate limit far more
    # than it computes, so five fit on two cores. Each is forked from a process that imported the
    # code location once (fleet_pipeline.executors), instead of importing it again.
    max_concurrent=5,
    tag_concurrency_limits=[{"key": VENDOR_TAG, "value": {"applyLimitPerUniqueValue": True}, "limit": 1}],
)
OWNERS = ["team:data-platform"]
KINDS = {"python", "duckdb", "polars"}
# Devices whose per-device answers are typed and validated together: large enough that pandera's
# fixed cost per call does not count, small enough that the raw JSON rows of one chunk (a few
# hundred fixes per device, ~650 bytes each as Python objects) stay in the tens of MB at any fleet
# size. At 250, a Navixy day of 1,000 devices peaked ~45 MiB higher (docs/performance.md).
DEVICE_CHUNK = 100


def _step_retry_policy() -> RetryPolicy | None:
    """Step retries of every source asset (FLEET_STEP_RETRIES, FLEET_STEP_RETRY_DELAY_S).

    Each client already retries a failed call for a minute or so; a vendor outage, a rate-limit
    storm or dropped connections that outlast that are often over minutes later, so the step runs
    again after ``delay`` (60 s), then after three times that (exponential): about five minutes of
    outage survived with the defaults. Re-running a step is safe: every partition is replaced in
    one transaction. Errors that waiting cannot fix (credentials, configuration, a request the
    vendor refuses, a bug) are not retried (:func:`extraction`). dbt models get no retries: a model
    or test that fails on the same data fails the same way again.
    """
    configured = settings.step_retry_settings()
    if configured.max_retries == 0:
        return None
    return RetryPolicy(max_retries=configured.max_retries, delay=configured.delay_s, backoff=Backoff.EXPONENTIAL)


STEP_RETRY_POLICY = _step_retry_policy()

# What a later attempt can succeed at: the vendor or the network was down or overloaded, or
# another process held the warehouse's writer lock.
_TRANSIENT = (VendorTransportError, VendorResponseError, VendorRateLimitError, RetryableVendorError,
              duckdb_errors.IOException)


def is_transient(error: BaseException) -> bool:
    if isinstance(error, VendorHTTPError):
        return error.status is None or error.status >= 500 or error.status == 429
    return isinstance(error, _TRANSIENT)


def _archive(context: AssetExecutionContext, duckdb: WarehouseResource, run: Extraction, table: str,
             days: Sequence[date]) -> dict[str, Any]:
    """Write the step's recorded answers to the raw archive; what to say about it in the metadata."""
    if run.recording is None:
        return {"replayed_from_archive": True}
    # Beside the warehouse this step writes to: the resource's lake, or its file.
    root = settings.archive_root(database=duckdb.database, lake_data_path=duckdb.lake_data_path if duckdb.lake else None)
    written = run.recording.write(root, table, days, run.now)
    context.log.info(f"archived {written.path} ({written.size:,} bytes)")
    return {"archive_file": written.path, "archive_bytes": written.size}


def utc_now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0)


def hold_metadata(hold: Hold) -> dict[str, Any]:
    """How long a step waited for the warehouse and held it (the write, and the checks after it)."""
    return {
        "warehouse_wait_s": round(hold.waited_s, 3),
        "warehouse_held_s": round(hold.held_s, 3),
        "warehouse_held_from": hold.held_from.isoformat() if hold.held_from else None,
        "warehouse_held_until": hold.held_until.isoformat() if hold.held_until else None,
    }


def unknown_as_null(*columns: str) -> list[pl.Expr]:
    """Vendors send -1 for a speed, heading or distance they do not know (tag/beacon devices)."""
    return [pl.when(pl.col(c) < 0).then(None).otherwise(pl.col(c)).alias(c) for c in columns]


@dataclass(frozen=True)
class Table:
    """What a raw table is made of: the pandera model its rows are validated with (and its columns
    declared from), how vendor rows are typed into it (``columns``, see ``fleet_pipeline.ingest.records``),
    and the columns that identify a row (``key``): a second row with the same key is a duplicate,
    dropped by the loader and counted."""

    model: Any
    columns: Sequence[Col] = ()
    key: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        declared = self.model.to_schema().columns
        unknown = [column for column in self.key if column not in declared]
        if unknown:
            raise ValueError(f"{self.model.__name__}: key columns {unknown} are not in the model")


@dataclass(frozen=True)
class Source:
    """One vendor's raw schema and asset group."""

    schema: str
    group: str
    vendor: str
    # the devices its tables are about: a partition with no rows while they exist is a warning
    fleet: Fleet
    # table -> its Table (a bare pandera model declares a table without typing columns or key)
    tables: Mapping[str, Any] = field(default_factory=dict)
    # column (or "<table>.<column>") -> what it holds, for the UI; shared columns are described in
    # fleet_pipeline.ingest.validation
    column_descriptions: Mapping[str, str] = field(default_factory=dict)
    # table -> how its asset was declared (the body and the arguments of ``asset``), to declare it
    # again for every account of the vendor (``for_accounts``)
    _declared: dict[str, tuple[Callable[..., Any], dict[str, Any]]] = field(
        default_factory=dict, compare=False, repr=False)

    def key(self, table: str, account: str | None = None) -> AssetKey:
        """``<schema>/<table>``; an account's own asset, when the vendor has several, is
        ``<schema>/<account>/<table>`` (the table's asset is then the union of its accounts)."""
        return AssetKey([self.schema, table] if account is None else [self.schema, account, table])

    def describer(self, table: str) -> Callable[[str], str | None]:
        """Column name -> its description in ``table``."""
        def describe(column: str) -> str | None:
            return (self.column_descriptions.get(f"{table}.{column}") or self.column_descriptions.get(column)
                    or SHARED_COLUMN_DESCRIPTIONS.get(column))
        return describe

    def table(self, table: str) -> Table:
        if table not in self.tables:
            raise ValueError(f"{self.schema}.{table}: no pandera model declared in the Source's tables")
        declared = self.tables[table]
        return declared if isinstance(declared, Table) else Table(declared)

    def model(self, table: str) -> Any:
        return self.table(table).model

    def asset(
        self,
        table: str,
        description: str,
        partitioned: bool,
        checks: tuple[AssetCheckSpec, ...] = (),
        backfill: BackfillPolicy | None = None,
        after: tuple[str, ...] = (),
    ) -> Callable[[Callable[..., Any]], AssetsDefinition]:
        """Declare ``<schema>.<table>``: daily-partitioned (events) or a daily snapshot (state).

        A partitioned asset states how many days one run may cover (``backfill``, see
        ``fleet_pipeline.automation.partitions``) and gets the row-count anomaly check. ``after``:
        tables of this source whose same partitions the body reads, so they are loaded first.
        The asset returned is the vendor's one account's; :meth:`for_accounts` declares it again
        for each of several.
        """
        if partitioned and backfill is None:
            raise ValueError(f"{self.schema}.{table}: a partitioned source asset needs a backfill policy")
        if not partitioned and backfill is not None:
            raise ValueError(f"{self.schema}.{table}: a snapshot is state, it has no backfill policy")

        def declare(body: Callable[..., Any]) -> AssetsDefinition:
            arguments = dict(description=description, partitioned=partitioned, checks=checks, backfill=backfill,
                             after=after)
            self._declared[table] = (body, arguments)
            return self._declare(table, body, None, **arguments)

        return declare

    def for_accounts(self, assets: Sequence[AssetsDefinition], accounts: Sequence[str]) -> list[AssetsDefinition]:
        """``assets`` (this source's, as declared) for the vendor's ``accounts``: as they are for
        the one account ``default``, else one asset per table and account, each a step of its own."""
        if list(accounts) == [DEFAULT_ACCOUNT]:
            return list(assets)
        clashes = sorted(set(accounts) & set(self.tables))
        if clashes:
            raise settings.ConfigError(f"{self.group}: account name(s) {', '.join(clashes)} are table names of "
                                       f"{self.schema}; choose other names")
        tables = [definition.key.path[-1] for definition in assets]
        return [self._declare(table, self._declared[table][0], account, **self._declared[table][1])
                for table in tables for account in accounts]

    def table_specs(self, assets: Sequence[AssetsDefinition], accounts: Sequence[str]) -> list[AssetSpec]:
        """With several accounts, each table's own asset (what the dbt models read): the union of
        its accounts' rows, which the accounts' assets load; none with one account."""
        if list(accounts) == [DEFAULT_ACCOUNT]:
            return []
        specs = []
        for definition in assets:
            table = definition.key.path[-1]
            specs.append(AssetSpec(
                key=self.key(table), deps=[self.key(table, account) for account in accounts], group_name=self.group,
                description=f"{self.schema}.{table}: the rows of every {self.vendor} account "
                f"({', '.join(accounts)}), each loaded by the account's own asset, told apart by `account`.",
                kinds={"duckdb"}, owners=OWNERS,
                metadata={"vendor": self.vendor, "table": f"{self.schema}.{table}",
                          "dagster/column_schema": self._column_schema(table)},
            ))
        return specs

    def _column_schema(self, table: str) -> TableSchema:
        declared = declared_table_schema(self.model(table), self.describer(table))
        return TableSchema(columns=[*declared.columns, ACCOUNT_COLUMN])

    def _declare(
        self, table: str, body: Callable[..., Any], account: str | None, description: str, partitioned: bool,
        checks: tuple[AssetCheckSpec, ...], backfill: BackfillPolicy | None, after: tuple[str, ...],
    ) -> AssetsDefinition:
        key = self.key(table, account)
        specs = [rejects_check_spec(key), empty_partition_check_spec(key, self.fleet)]
        if partitioned:
            specs.append(row_count_check_spec(key))
        specs += [check.replace_key(AssetCheckKey(key, check.name)) for check in checks]
        tags = {VENDOR_TAG: self.group}
        if account is not None:
            tags = {VENDOR_TAG: f"{self.group}:{account}", ACCOUNT_TAG: account}
            description = f"{description} Account {account!r}."
        with warnings.catch_warnings():
            # backfill_policy is "beta" in Dagster 1.13; the version is pinned exactly.
            warnings.simplefilter("ignore", BetaWarning)
            return asset(
                key=key,
                deps=[self.key(upstream, account) for upstream in after],
                group_name=self.group,
                description=description,
                partitions_def=daily_partitions if partitioned else None,
                backfill_policy=backfill,
                retry_policy=STEP_RETRY_POLICY,
                kinds=KINDS,
                owners=OWNERS,
                op_tags=tags,
                check_specs=specs,
                metadata={
                    "vendor": self.vendor,
                    "table": f"{self.schema}.{table}",
                    "dagster/column_schema": self._column_schema(table),
                },
            )(self._with_account(body, account))

    def _with_account(self, body: Callable[..., Any], account: str | None) -> Callable[..., Any]:
        """``body`` given the vendor's resource connected to ``account`` (its resource parameter is
        named after the source's group, the vendor's resource key)."""
        if account is None or account == DEFAULT_ACCOUNT:
            return body

        @functools.wraps(body)  # Dagster reads the body's signature (its resources) through the wrapper
        def account_body(context: AssetExecutionContext, **resources: Any) -> Any:
            resources[self.group] = resources[self.group].for_account(account)
            return body(context, **resources)

        return account_body


@dataclass
class Extraction:
    """What an asset body works with: a client (with its own call stats), the run's days and a timer.

    A partitioned run covers one UTC day or, in a backfill, several consecutive ones: the body asks
    the vendor once for the whole window (``bounds``) and ``by_day`` files each row under the UTC
    day it belongs to. A snapshot run has no days and replaces today's snapshot.
    """

    client: Any
    days: tuple[date, ...]
    # the vendor account of an account's own asset (ACCOUNT_TAG); None when the vendor has one
    # account, whose rows are ``default``'s
    account: str | None = None
    started: float = field(default_factory=time.monotonic)
    now: datetime = field(default_factory=utc_now)
    # The answers the client reads, archived before the swap (None in a replay run).
    recording: StepRecording | None = None

    def _require_days(self) -> tuple[date, ...]:
        if not self.days:
            raise RuntimeError("a snapshot asset has no partition window")
        return self.days

    def snapshot_stamp(self) -> dict[str, pl.Expr]:
        """The columns that file a snapshot under the UTC day it was taken on, and when."""
        return {"snapshot_date": pl.lit(self.now.date()), "snapshot_at": pl.lit(self.now)}

    @property
    def first(self) -> date:
        return self._require_days()[0]

    @property
    def last(self) -> date:
        return self._require_days()[-1]

    @property
    def bounds(self) -> tuple[datetime, datetime]:
        """[00:00 of the first day, 00:00 after the last day) in UTC: the window to ask for."""
        return range_bounds(self._require_days())

    def by_day(self, frame: pl.DataFrame, column: str) -> pl.DataFrame:
        """The rows whose ``column`` (a time or a date) falls on one of the run's days, each with
        ``partition_date`` set to that day. A row whose time did not parse is kept, in the first
        day, so that validation rejects it instead of it vanishing."""
        values = pl.col(column)
        day = values if frame.schema.get(column) == pl.Date else values.dt.date()
        return frame.filter(day.is_between(self.first, self.last) | values.is_null()).with_columns(
            partition_date=day.fill_null(self.first)
        )

    def per_device(
        self, context: AssetExecutionContext, label: str, devices: Sequence[Any], fetch: Callable[[Any], Any],
    ) -> Iterator[list[tuple[Any, Any]]]:
        """``(device, fetch(device))`` for every device, in chunks of :data:`DEVICE_CHUNK`.

        For endpoints that take one device a call: the calls run ``client.concurrency`` at a time
        (the client's rate limiter sets the pace, not the round trip), answers come back in
        device order, and each chunk is handed over as soon as it is complete so that the caller
        can type it and let the raw rows go. An empty fleet still yields one empty chunk.
        """
        answers = self.client.fan_out(devices, fetch)
        done = 0
        # Closing the answers when the caller stops early (an error while typing a chunk) stops
        # the calls not yet started, instead of whenever the generator is garbage-collected.
        with contextlib.closing(answers):
            for size in [len(part) for part in chunked(devices, DEVICE_CHUNK)] or [0]:
                chunk = [next(answers) for _ in range(size)]
                done += size
                if devices:
                    context.log.info(f"{label}: {done}/{len(devices)} devices")
                yield chunk
                # The caller is done with this chunk: do not hold its rows while the next one is read.
                del chunk

    @property
    def key(self) -> tuple[str, list[date]]:
        """Events replace their UTC days; snapshots replace today's snapshot."""
        return ("partition_date", list(self.days)) if self.days else ("snapshot_date", [self.now.date()])


# Errors that say the configuration is wrong (a setting, a base URL that cannot be a URL): no retry
# and no traceback can help, so the step fails with their message alone.
_CONFIGURATION_ERRORS = (settings.ConfigError, requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                         requests.exceptions.InvalidSchema, LocationParseError)


def configuration_failure(error: BaseException) -> Failure:
    """The step's failure for a configuration error: one line, raised ``from None`` by the caller so
    that neither the CLI nor the UI prints a chain of tracebacks under it."""
    text = " ".join(str(error).split())
    return Failure(description=f"configuration error: {text}", allow_retries=False)


@contextlib.contextmanager
def extraction(context: AssetExecutionContext, make_client: Callable[[], Any]) -> Iterator[Extraction]:
    # A run launched for a partition also carries its key into unpartitioned (snapshot) assets, so
    # ask the asset, not the run, whether it is partitioned.
    partitioned = context.assets_def.partitions_def is not None
    days = tuple(sorted(partition_day(key) for key in context.partition_keys)) if partitioned else ()
    account = context.op_execution_context.op_def.tags.get(ACCOUNT_TAG)
    if len(days) > 1:
        context.log.info(f"one run for {len(days)} partitions, {days[0]} to {days[-1]}")
    try:
        client = make_client()
    except _CONFIGURATION_ERRORS as error:
        raise configuration_failure(error) from None
    with contextlib.closing(client):
        try:
            yield _archived(context, client, days, account)
        except Failure:
            raise
        except _CONFIGURATION_ERRORS as error:
            raise configuration_failure(error) from None
        except Exception as error:
            if STEP_RETRY_POLICY is not None and not is_transient(error):
                raise Failure(description=f"{type(error).__name__}: {error}", allow_retries=False) from error
            raise


def _archived(context: AssetExecutionContext, client: Any, days: tuple[date, ...], account: str | None) -> Extraction:
    """The step's extraction with its client's answers recorded, or, in a replay run, served from
    the archive, at the time the original step extracted."""
    if getattr(client, "http", None) is None:
        # Not a vendor API's client (pushed messages read from the receiver's landing files):
        # nothing is fetched, so nothing is archived, and those files are kept as they came.
        return Extraction(client=client, days=days, account=account)
    vendor = context.assets_def.group_names_by_key[context.asset_key]
    replay = replay_of(context.run.tags)
    if replay is None:
        return Extraction(client=client, days=days, account=account,
                          recording=StepRecording.attach(vendor, context.run_id, client.http, account))
    run_id, root = replay
    try:
        now = attach_replay(client.http, vendor, context.asset_key.path[-1], run_id, root, account)
    except LookupError as missing:
        raise Failure(description=f"replay: {missing}", allow_retries=False) from None
    context.log.info(f"replaying {vendor} run {run_id} from the archive {root} (extracted at {now}): no vendor call")
    return Extraction(client=client, days=days, account=account, now=now)


def load(
    context: AssetExecutionContext,
    duckdb: WarehouseResource,
    source: Source,
    run: Extraction,
    table: str,
    typed: pl.DataFrame | Iterable[pl.DataFrame],
    extra_checks: tuple[AssetCheckResult, ...] = (),
    per_partition: Mapping[date, Mapping[str, Any]] | None = None,
    require_some_valid: bool = True,
    **extra_metadata: Any,
) -> MaterializeResult:
    """Validate the batch, swap it into its partitions, judge the row counts, describe it all.

    ``typed`` is one frame, or the frames of consecutive chunks (:meth:`Extraction.per_device`):
    all of them are fetched and validated before the warehouse is opened, so the writer's lock
    is held for the write alone and a failed extraction writes nothing. ``per_partition`` adds
    metadata to single days' materializations (values that differ by day). A batch whose rows were
    all rejected fails the step unless ``require_some_valid`` is False (see ``validate_batch``).
    """
    key_column, key_values = run.key
    # A history asset (unpartitioned, its rows filed by day) replaces days too, but has no
    # Dagster partitions to describe and no row-count check.
    partitioned = context.assets_def.partitions_def is not None
    ref = TableRef(source.schema, table)
    declared = source.table(table)
    try:
        batch = validate_batch(ref, typed, declared.model, key_column, key_values,
                               unique_key=declared.key, vendor=source.vendor,
                               require_some_valid=require_some_valid, account=run.account or DEFAULT_ACCOUNT)
    except AllRowsRejected as error:
        # Every answer arrived, only its rows failed: kept, so a fix can be replayed over it.
        _archive(context, duckdb, run, table, key_values)
        # One line at the top of the failure, not a traceback through the loader.
        raise Failure(description=f"{source.vendor}: {error}", allow_retries=False) from None
    # Before the swap: a partition never holds rows whose answers are not archived.
    extra_metadata.update(_archive(context, duckdb, run, table, key_values))
    hold = Hold()
    holder = f"{ref} (run {context.run_id[:8]})"
    with duckdb.get_connection(holder=holder, on_wait=context.log.info, hold=hold) as conn:
        outcome = write_batch(conn, batch, lambda tables: duckdb.table_turns(tables, holder, context.log.info))
        # After the commit, on the same connection: the check sees exactly what was written, in
        # the same turn on the warehouse.
        # With several accounts, each account's asset is judged on its own rows and devices.
        checks = [rejects_check(outcome),
                  empty_partition_check(conn, ref, source.fleet, [(p.key, p.rows) for p in outcome.partitions],
                                        run.account)]
        if run.days and partitioned:
            checks.append(row_count_check(conn, of_account(ref, run.account), key_column, run.days, run.now.date()))
    extra_metadata = {key: value() if callable(value) else value for key, value in extra_metadata.items()}
    metadata = materialization_metadata(outcome, run.client.stats, run.started, source.describer(table),
                                        **extra_metadata, **hold_metadata(hold))
    if run.days and partitioned:
        for partition in outcome.partitions:
            scoped = partition_metadata(partition) | dict((per_partition or {}).get(partition.key, {}))
            context.add_asset_metadata(scoped, partition_key=str(partition.key))
    context.log.info(
        f"{source.schema}.{table} {key_column}={outcome.partition_key}: {outcome.valid.height} rows "
        f"({outcome.rows_added:+d} vs before), {outcome.rejected} rejected, "
        f"{outcome.duplicates} duplicates dropped, {len(outcome.field_issues)} field issues, "
        f"{metadata['api_calls']} API calls"
    )
    if outcome.field_issues:
        context.log.warning(f"{source.schema}.{table}: the vendor sent values that do not convert in kept rows "
                            f"(stored NULL, listed in {source.schema}.field_issues): "
                            f"{metadata['field_issue_reasons'].value}")
    return MaterializeResult(metadata=metadata, check_results=[*checks, *extra_checks])
