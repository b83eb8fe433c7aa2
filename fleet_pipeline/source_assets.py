"""What the assets of every source share: how they are declared, extracted, loaded and described.

A vendor's ``assets.py`` only says what is vendor-specific — which calls to make and how to type
the rows. Everything else is here so that every raw table gets the same guarantees and the same
metadata: one writer pool, the rejects check, partitioning by UTC day (events) or one snapshot per
UTC day (fleet state), and the metadata ``fleet_pipeline.loader`` builds.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any

import polars as pl
from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    MaterializeResult,
    asset,
)

from fleet_pipeline.loader import load_batch, materialization_metadata, rejects_check, rejects_check_spec
from fleet_pipeline.partitions import daily_partitions, day_window, partition_day
from fleet_pipeline.warehouse import TableRef, WarehouseResource

# DuckDB allows one writer process: every asset that writes the file belongs to this pool.
WRITER_POOL = "duckdb_writer"
OWNERS = ["team:data-platform"]
KINDS = {"python", "duckdb", "polars"}


def utc_now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0)


def unknown_as_null(*columns: str) -> list[pl.Expr]:
    """Vendors send -1 for a speed, heading or distance they do not know (tag/beacon devices)."""
    return [pl.when(pl.col(c) < 0).then(None).otherwise(pl.col(c)).alias(c) for c in columns]


def in_day(column: str, day: date) -> pl.Expr:
    """Rows of this UTC day; rows whose time did not parse stay so that validation rejects them."""
    return (pl.col(column).dt.date() == day) | pl.col(column).is_null()


@dataclass(frozen=True)
class Source:
    """One vendor's raw schema and asset group."""

    schema: str
    group: str
    vendor: str

    def key(self, table: str) -> AssetKey:
        return AssetKey([self.schema, table])

    def asset(
        self, table: str, description: str, partitioned: bool, checks: tuple[AssetCheckSpec, ...] = ()
    ) -> Callable[[Callable[..., Any]], AssetsDefinition]:
        """Declare ``<schema>.<table>``: daily-partitioned (events) or a daily snapshot (state)."""
        return asset(
            key=self.key(table),
            group_name=self.group,
            description=description,
            partitions_def=daily_partitions if partitioned else None,
            kinds=KINDS,
            owners=OWNERS,
            pool=WRITER_POOL,
            check_specs=[rejects_check_spec(self.key(table)), *checks],
            metadata={"vendor": self.vendor, "table": f"{self.schema}.{table}"},
        )


@dataclass
class Extraction:
    """What an asset body works with: a client (with its own call stats), the day and a timer."""

    client: Any
    day: date | None
    started: float = field(default_factory=time.monotonic)
    now: datetime = field(default_factory=utc_now)

    @property
    def window(self) -> tuple[datetime, datetime]:
        if self.day is None:
            raise RuntimeError("a snapshot asset has no partition window")
        return day_window(self.day)

    @property
    def key(self) -> tuple[str, date]:
        """Events replace their UTC day; snapshots replace today's snapshot."""
        return ("partition_date", self.day) if self.day else ("snapshot_date", self.now.date())


@contextlib.contextmanager
def extraction(context: AssetExecutionContext, make_client: Callable[[], Any]) -> Iterator[Extraction]:
    # A run launched for a partition also carries its key into unpartitioned (snapshot) assets, so
    # ask the asset, not the run, whether it is partitioned.
    partitioned = context.assets_def.partitions_def is not None
    day = partition_day(context.partition_key) if partitioned else None
    with contextlib.closing(make_client()) as client:
        yield Extraction(client=client, day=day)


def load(
    context: AssetExecutionContext,
    duckdb: WarehouseResource,
    source: Source,
    run: Extraction,
    table: str,
    typed: pl.DataFrame,
    schema: Any,
    extra_checks: tuple[AssetCheckResult, ...] = (),
    **extra_metadata: Any,
) -> MaterializeResult:
    """Validate the batch, swap it into its partition, and describe what happened."""
    key_column, key_value = run.key
    with duckdb.get_connection() as conn:
        outcome = load_batch(conn, TableRef(source.schema, table), typed, schema, key_column, key_value)
    metadata = materialization_metadata(outcome, run.client.stats, run.started, **extra_metadata)
    context.log.info(
        f"{source.schema}.{table} {key_column}={key_value}: {outcome.split.valid.height} rows "
        f"({outcome.written.rows_added:+d} vs before), {outcome.split.rejected} rejected, "
        f"{metadata['api_calls']} API calls"
    )
    return MaterializeResult(metadata=metadata, check_results=[rejects_check(outcome), *extra_checks])
