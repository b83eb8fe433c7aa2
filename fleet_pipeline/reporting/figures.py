"""The fleet's figures, read from the marts: one definition of each, for the HTML report's charts
and for the marts' Dagster metadata (the asset pages' plots per partition), so both show the same
number for the same day.

Every figure is an aggregate over one mart, per UTC day and per vendor (``platform``); when the mart
holds rows of a vendor account other than ``default`` (its ``account`` column, issue 18) the vendor's
accounts are told apart as well, without any setting; with the one account ``default`` of every
vendor the series stay one per vendor, as before there were accounts. A mart
that is not built yet, or lacks a column a figure needs, raises :class:`NotBuilt` naming what is
missing, so a report section can say so instead of failing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

import duckdb

from fleet_pipeline.automation.partitions import days_between
from fleet_pipeline.reporting import formats
from fleet_pipeline.reporting.formats import Unit
from fleet_pipeline.sources.accounts import DEFAULT_ACCOUNT

# Canonical types of alarms_daily (seed alarm_type_map) that are the vehicle's own events, not
# alarms: Navixy reports ignition on/off and trip start/end through the same event feed as its
# alarms. The report and the metadata count them apart, so "alarms per 100 km" is about alarms.
EVENT_TYPES = ("ignition_on", "ignition_off", "trip_start", "trip_end")
# Vendor codes the seed does not map: alarms of a kind nobody has named yet.
UNMAPPED_TYPE = "other"
ACCOUNT_COLUMN = "account"
GROUP_SEPARATOR = " · "
DEFAULT_WINDOW_DAYS = 30
# The marts whose newest day ends the default window (the daily, partitioned ones).
DAILY_MARTS = ("mileage_daily", "alarms_daily", "utilisation_daily")
# The marts of the fleet's state as of each snapshot, taken the day it is (today, while the daily
# marts end yesterday).
SNAPSHOT_MARTS = ("firmware_rollout", "stock_daily")


@dataclass(frozen=True)
class Window:
    """UTC days, both ends included; None = every day (an unpartitioned run)."""

    first: date | None = None
    last: date | None = None

    def days(self) -> list[date]:
        """Every day of the window, or none for an unbounded one."""
        if self.first is None or self.last is None:
            return []
        return days_between(self.first, self.last)

    def where(self, column: str = "day") -> str:
        if self.first is None or self.last is None:
            return "true"
        return f"{column} between date '{self.first.isoformat()}' and date '{self.last.isoformat()}'"

    def label(self) -> str:
        if self.first is None or self.last is None:
            return "every day"
        count = (self.last - self.first).days + 1
        return (f"{self.first:{formats.DATE_FORMAT}} – {self.last:{formats.DATE_FORMAT}} "
                f"({count} day{'s' if count != 1 else ''}, UTC)")


class NotBuilt(Exception):
    """A mart, or a column a figure needs, is not in the warehouse yet."""


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class Marts:
    """The marts of one DuckDB connection, in ``schema`` (``marts`` in the serving copy,
    ``marts`` or ``main_marts`` in the working file)."""

    def __init__(self, conn: duckdb.DuckDBPyConnection | None, schema: str = "marts") -> None:
        self.conn = conn
        self.schema = schema
        self._columns: dict[str, list[str]] = {}
        self._accounts: dict[str, bool] = {}

    def columns(self, table: str) -> list[str]:
        """The table's columns in order; none when the table does not exist."""
        if self.conn is None:
            return []
        if table not in self._columns:
            rows = self.conn.execute(
                "select column_name from information_schema.columns where table_schema = ? and table_name = ? "
                "order by ordinal_position", [self.schema, table]).fetchall()
            self._columns[table] = [row[0] for row in rows]
        return self._columns[table]

    def has_accounts(self, table: str) -> bool:
        """Whether the table tells vendor accounts apart: it has an account column holding an account
        other than ``default`` (every row is ``default``'s when no accounts file is configured)."""
        if ACCOUNT_COLUMN not in self.columns(table):
            return False
        if table not in self._accounts:
            (named,), = self.query(f"select count(*) > 0 from (select 1 from {self.relation(table)} "
                                   f"where {quote(ACCOUNT_COLUMN)} <> '{DEFAULT_ACCOUNT}' limit 1)")
            self._accounts[table] = bool(named)
        return self._accounts[table]

    def require(self, table: str, columns: Sequence[str]) -> list[str]:
        present = self.columns(table)
        if not present:
            raise NotBuilt(f"{table} not built yet")
        missing = [c for c in columns if c not in present]
        if missing:
            raise NotBuilt(f"{table} has no column {', '.join(missing)} yet")
        return present

    def relation(self, table: str) -> str:
        return f"{quote(self.schema)}.{quote(table)}"

    def day_column(self, table: str) -> str:
        """The UTC day of a row: partition_date where the mart has it, else day."""
        return "partition_date" if "partition_date" in self.columns(table) else "day"

    def query(self, sql: str) -> list[tuple]:
        assert self.conn is not None
        return self.conn.execute(sql).fetchall()

    def day_range(self, tables: Sequence[str] = DAILY_MARTS) -> tuple[date | None, date | None]:
        """The oldest and newest UTC day of any of ``tables`` (None, None without any row)."""
        ranges = [self.query(f"select min({quote(self.day_column(t))})::date, max({quote(self.day_column(t))})::date "
                             f"from {self.relation(t)}")[0] for t in tables if self.columns(t)]
        firsts = [first for first, _ in ranges if first is not None]
        lasts = [last for _, last in ranges if last is not None]
        return (min(firsts) if firsts else None), (max(lasts) if lasts else None)


@dataclass(frozen=True)
class Measure:
    """One figure: an aggregate over one mart, by day and by a group (vendor, model, product...)."""

    key: str               # stable name, also the Dagster metadata key
    title: str
    table: str
    aggregate: str         # SQL aggregate over the mart's rows
    unit: Unit
    needs: tuple[str, ...]  # columns the aggregate and the group read
    group: tuple[str, ...] = ("platform",)  # SQL expressions; the account follows them where there is one
    where: str = "true"
    detail: tuple[str, ...] = ()  # SQL expressions after the account: "navixy · north · ignition_on"
    # A count whose missing row means none: a day the mart has rows for shows 0 in every series
    # that has no row that day (a line of alarms drops to zero instead of skipping the day).
    zero_fill: bool = False

    def group_by(self, marts: Marts) -> tuple[str, ...]:
        has_account = marts.has_accounts(self.table)
        return (*self.group, *((quote(ACCOUNT_COLUMN),) if has_account else ()), *self.detail)

    def _rows(self, marts: Marts, window: Window, by_day: bool, grouped: bool) -> list[tuple]:
        marts.require(self.table, self.needs)
        day = quote(marts.day_column(self.table))
        keys = [*(self.group_by(marts) if grouped else ()), *((f"{day}::date",) if by_day else ())]
        select = ", ".join([*keys, self.aggregate])
        group = f" group by {', '.join(str(n) for n in range(1, len(keys) + 1))} order by all" if keys else ""
        return marts.query(f"select {select} from {marts.relation(self.table)} "
                           f"where {window.where(day)} and ({self.where}){group}")

    def per_day(self, marts: Marts, window: Window) -> dict[str, dict[date, float]]:
        """Series label (vendor, or vendor · account...) -> UTC day -> value; unknown values left out."""
        series: dict[str, dict[date, float]] = defaultdict(dict)
        for *group, day, value in self._rows(marts, window, by_day=True, grouped=True):
            if value is not None:
                series[label(group)][day] = self.unit.round(value)
        if self.zero_fill and series:
            day = quote(marts.day_column(self.table))
            for (loaded,) in marts.query(f"select distinct {day}::date from {marts.relation(self.table)} "
                                         f"where {window.where(day)}"):
                for points in series.values():
                    points.setdefault(loaded, 0)
        return {name: dict(sorted(points.items())) for name, points in series.items()}

    def per_group(self, marts: Marts, window: Window) -> dict[str, float]:
        """Series label -> the value over the whole window."""
        return {label(group): self.unit.round(value)
                for *group, value in self._rows(marts, window, by_day=False, grouped=True) if value is not None}

    def total(self, marts: Marts, window: Window) -> float | None:
        """The value over the whole fleet and window (None when unknown, e.g. no rows)."""
        (value,), = self._rows(marts, window, by_day=False, grouped=False)
        return None if value is None else self.unit.round(value)


def label(group: Sequence[object]) -> str:
    return GROUP_SEPARATOR.join(str(part) for part in group)


def _type_list(types: Sequence[str]) -> str:
    return "(" + ", ".join(f"'{t}'" for t in types) + ")"


_ALARM_COLUMNS = ("platform", "canonical_type", "alarm_count")
_USE_COLUMNS = ("platform", "imei", "is_used")

KM = Measure("km", "Kilometres", "mileage_daily", "sum(chosen_km)", formats.KM, ("platform", "chosen_km"))
PARKING_HOURS = Measure("parking_hours", "Parking hours", "parking_daily", "sum(parking_s) / 3600.0", formats.HOURS,
                        ("platform", "parking_s"))
ALARMS = Measure("alarms", "Alarms", "alarms_daily", "sum(alarm_count)", formats.ALARMS, _ALARM_COLUMNS,
                 where=f"canonical_type not in {_type_list(EVENT_TYPES)}", zero_fill=True)
EVENTS = Measure("ignition_trip_events", "Ignition and trip events", "alarms_daily", "sum(alarm_count)",
                 formats.EVENTS, _ALARM_COLUMNS, where=f"canonical_type in {_type_list(EVENT_TYPES)}", zero_fill=True)
UNMAPPED_ALARMS = Measure("unmapped_alarms", "Alarms of unmapped codes", "alarms_daily", "sum(alarm_count)",
                          formats.ALARMS, _ALARM_COLUMNS, where=f"canonical_type = '{UNMAPPED_TYPE}'", zero_fill=True)
# Per type and vendor: the bars of "Alarms by type".
ALARMS_BY_TYPE = Measure("alarms_by_type", "Alarms by type", "alarms_daily", "sum(alarm_count)", formats.ALARMS,
                         _ALARM_COLUMNS, group=("canonical_type", "platform"), where=ALARMS.where)
EVENTS_BY_TYPE = Measure("events_by_type", "Ignition and trip events by type", "alarms_daily", "sum(alarm_count)",
                         formats.EVENTS, _ALARM_COLUMNS, detail=("canonical_type",), where=EVENTS.where, zero_fill=True)

# utilisation_daily: one row per device and UTC day (see docs/reporting-models.md).
DEVICES = Measure("devices", "Devices", "utilisation_daily", "count(distinct imei)", formats.DEVICES, _USE_COLUMNS)
DEVICES_USED = Measure("devices_used", "Devices used", "utilisation_daily", "count(distinct imei) filter (where is_used)",
                       formats.DEVICES, _USE_COLUMNS)
# Device-days used over device-days: per day, the share of the fleet that was used.
UTILISATION = Measure("utilisation", "Share of devices used", "utilisation_daily",
                      "avg(case when is_used then 1.0 else 0.0 end)", formats.SHARE, _USE_COLUMNS)
# The fleet's idle time over its engine-on time (not the mean of the devices' shares: a device
# idling 1 minute of 2 would weigh as much as one idling 3 hours of 6).
IDLE_SHARE = Measure("idle_share", "Idle share of engine-on time", "utilisation_daily",
                     "sum(idle_s) / nullif(sum(engine_on_s), 0)", formats.SHARE, ("platform", "idle_s", "engine_on_s"))


def _sum(key: str, title: str, column: str, unit: Unit, per: int = 1, table: str = "utilisation_daily") -> Measure:
    """The sum of one column per vendor and day (``per``: seconds per hour for hours)."""
    aggregate = f"sum({quote(column)})" + (f" / {per:.1f}" if per != 1 else "")
    return Measure(key, title, table, aggregate, unit, ("platform", column))


DRIVING_HOURS = _sum("driving_hours", "Driving hours", "driving_s", formats.HOURS, per=3600)
ENGINE_HOURS = _sum("engine_hours", "Engine hours", "engine_on_s", formats.HOURS, per=3600)
IDLE_HOURS = _sum("idle_hours", "Idle hours", "idle_s", formats.HOURS, per=3600)
KM_WORKING_HOURS = _sum("km_working_hours", "Km in working hours", "km_working_hours", formats.KM)
KM_AFTER_HOURS = _sum("km_after_hours", "Km after hours", "km_after_hours", formats.KM)
KM_WEEKEND = _sum("km_weekend", "Km on weekends", "km_weekend", formats.KM)

# firmware_rollout repeats the model's share on each of its version rows: one value per model-day.
ROLLOUT = Measure("share_on_target", "Share of devices on the target firmware", "firmware_rollout",
                  "max(share_on_target)", formats.SHARE, ("model_key", "share_on_target"), group=("model_key",),
                  where="share_on_target is not null")
STOCK = Measure("stock_on_hand", "Stock on hand", "stock_daily", "sum(stock_on_hand)", formats.UNITS,
                ("sku", "product_name", "stock_on_hand"), group=("coalesce(sku, product_name)",),
                where="stock_on_hand is not null")
ACTIVATIONS = Measure("activations", "Activations", "stock_daily", "sum(activations)", formats.DEVICES,
                      ("model_key", "activations"), group=("model_key",), where="activations is not null")


def per_100_km(counts: dict[str, dict[date, float]], km: dict[str, dict[date, float]]) -> dict[str, dict[date, float]]:
    """Counts per 100 km, per series and day; a day without kilometres has no rate (not zero)."""
    rates: dict[str, dict[date, float]] = {}
    for name, days in km.items():
        points = {day: formats.PER_100_KM.round(100 * counts.get(name, {}).get(day, 0) / value)
                  for day, value in days.items() if value > 0}
        if points:
            rates[name] = points
    return rates


def rate_per_100_km(count: float | None, km: float | None) -> float | None:
    if not km or km <= 0:
        return None
    return formats.PER_100_KM.round(100 * (count or 0) / km)


def resolve_window(marts: Marts, first: date | None = None, last: date | None = None,
                   days: int = DEFAULT_WINDOW_DAYS) -> Window:
    """The report's days: ``first``..``last`` where given; a missing end is the newest day in the
    daily marts (else yesterday), a missing start ``days`` days before the end, but not before the
    oldest day the marts have (a two-day demo shows two days, not 28 empty ones before them)."""
    if days < 1:
        raise ValueError(f"report window: days must be at least 1, got {days}")
    oldest, newest = marts.day_range()
    end = last or newest or (datetime.now(timezone.utc).date() - timedelta(days=1))
    start = first or end - timedelta(days=days - 1)
    if first is None and oldest is not None and oldest <= end:
        start = max(start, oldest)
    if start > end:
        raise ValueError(f"report window: the first day {start} is after the last day {end}")
    return Window(start, end)


def ota_outcomes(marts: Marts, window: Window) -> tuple[int, int]:
    """(successful, all) OTA attempts whose latest status was reached in the window; firmware_rollout
    repeats a model-day's attempt counts on each of its version rows, so each model-day counts once."""
    marts.require("firmware_rollout", ("model_key", "day", "attempts", "attempts_success"))
    (success, attempts), = marts.query(
        "select coalesce(sum(attempts_success), 0)::bigint, coalesce(sum(attempts), 0)::bigint from ("
        "select distinct model_key, day, attempts, attempts_success "
        f"from {marts.relation('firmware_rollout')} where {window.where('day')})")
    return int(success), int(attempts)


def with_snapshots(marts: Marts, window: Window) -> Window:
    """``window`` reaching on to the newest snapshot day, when that is later: the rollout and the
    stock as of the latest snapshot, taken today while the daily marts end yesterday."""
    _, newest = marts.day_range(SNAPSHOT_MARTS)
    if window.last is None or newest is None or newest <= window.last:
        return window
    return Window(window.first, newest)
