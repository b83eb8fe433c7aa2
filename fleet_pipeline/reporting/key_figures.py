"""Key figures of each mart as Dagster metadata, so the UI answers "how far did the fleet drive" or
"how is the rollout going" without a SQL client.

dbt holds the warehouse's write lock while it runs, so the figures are read after the dbt process
has exited and attached to the materialization events dbt produced (see ``dbt_assets.py``). A run
over several days materializes each day's partition of a daily mart, and each partition carries
the figures of its own day (the UI plots them day by day); the unpartitioned marts are summarised
at their newest day.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
from dagster import AssetKey, MetadataValue, Output

from fleet_pipeline.ingest.warehouse import connect
from fleet_pipeline.reporting import figures as kpi
from fleet_pipeline.reporting.figures import Marts, Measure, NotBuilt, Window
from fleet_pipeline.reporting.formats import markdown_table

if TYPE_CHECKING:
    from fleet_pipeline.settings import LakeSettings

MARTS_LAYER = "marts"


def _one(conn: duckdb.DuckDBPyConnection, sql: str) -> tuple:
    return conn.execute(sql).fetchone() or ()


def mileage(conn: duckdb.DuckDBPyConnection, schema: str, window: Window) -> dict[str, Any]:
    device_days, km, disagree = _one(conn, f"""
        select count(*), coalesce(sum(chosen_km), 0), count(*) filter (where sources_disagree)
        from {schema}.mileage_daily where {window.where()}""")
    by_day = conn.execute(f"""
        select day, count(*), round(sum(chosen_km), 1), count(*) filter (where sources_disagree)
        from {schema}.mileage_daily where {window.where()} group by day order by day""").fetchall()
    figures = {
        "fleet_km": MetadataValue.float(round(float(km), 1)),
        "device_days": MetadataValue.int(int(device_days)),
        "device_days_sources_disagree": MetadataValue.int(int(disagree)),
    }
    if len(by_day) > 1:  # one partition's figures above are already its one day
        figures["km_per_day"] = MetadataValue.md(markdown_table(["day", "devices", "km", "sources disagree"], by_day))
    return {**figures, **_per_group(Marts(conn, schema), window, kpi.KM)}


def parking(conn: duckdb.DuckDBPyConnection, schema: str, window: Window) -> dict[str, Any]:
    parkings, parked_s, night_s, idling_s, longest_s = _one(conn, f"""
        select coalesce(sum(parking_count), 0), coalesce(sum(parking_s), 0), coalesce(sum(night_parking_s), 0),
               coalesce(sum(idling_s), 0), coalesce(max(longest_parking_s), 0)
        from {schema}.parking_daily where {window.where()}""")
    return {
        "parkings": MetadataValue.int(int(parkings)),
        "parking_hours": MetadataValue.float(round(parked_s / 3600, 1)),
        "night_parking_hours": MetadataValue.float(round(night_s / 3600, 1)),
        "idling_hours": MetadataValue.float(round(idling_s / 3600, 1)),
        "longest_parking_hours": MetadataValue.float(round(longest_s / 3600, 1)),
    }


def parking_events(conn: duckdb.DuckDBPyConnection, schema: str, window: Window) -> dict[str, Any]:
    rows = conn.execute(f"""
        select platform, stop_source, stop_kind, count(*), round(sum(duration_s) / 3600, 1)
        from {schema}.parking_events where {window.where()} group by all order by all""").fetchall()
    return {"stops_by_source": MetadataValue.md(
        markdown_table(["platform", "source", "kind", "stops", "hours"], rows))}


def alarms(conn: duckdb.DuckDBPyConnection, schema: str, window: Window) -> dict[str, Any]:
    """Alarms apart from the ignition and trip events the same feed carries (figures.EVENT_TYPES),
    and alarms per 100 km where mileage_daily has the day's km."""
    marts = Marts(conn, schema)
    rows = conn.execute(f"""
        select canonical_type, sum(alarm_count)::bigint, count(distinct imei)
        from {schema}.alarms_daily where {window.where()} group by all order by 2 desc, 1""").fetchall()
    events = [r for r in rows if r[0] in kpi.EVENT_TYPES]
    alarm_rows = [r for r in rows if r[0] not in kpi.EVENT_TYPES]
    unmapped = _one(conn, f"select coalesce(sum(unmapped_count), 0) from {schema}.alarms_daily where {window.where()}")
    count = sum(r[1] for r in alarm_rows)
    figures = {
        "alarms": MetadataValue.int(int(count)),
        "ignition_trip_events": MetadataValue.int(int(sum(r[1] for r in events))),
        "unmapped_alarms": MetadataValue.int(int(unmapped[0])),
        **_per_group(marts, window, kpi.ALARMS),
        "alarms_by_type": MetadataValue.md(markdown_table(["canonical type", "alarms", "devices"], alarm_rows)),
        "events_by_type": MetadataValue.md(markdown_table(["event type", "events", "devices"], events)),
    }
    if marts.columns("mileage_daily"):
        rate = kpi.rate_per_100_km(count, kpi.KM.total(marts, window))
        if rate is not None:
            figures["alarms_per_100km"] = MetadataValue.float(rate)
    return figures


# Fleet-wide figures of utilisation_daily, in the asset's Plots tab day by day.
UTILISATION_FIGURES = (kpi.DEVICES, kpi.DEVICES_USED, kpi.UTILISATION, kpi.IDLE_SHARE, kpi.DRIVING_HOURS,
                       kpi.ENGINE_HOURS, kpi.IDLE_HOURS, kpi.KM_WORKING_HOURS, kpi.KM_AFTER_HOURS, kpi.KM_WEEKEND)


def utilisation(conn: duckdb.DuckDBPyConnection, schema: str, window: Window) -> dict[str, Any]:
    marts = Marts(conn, schema)
    figures = {m.key: _number(m, m.total(marts, window)) for m in UTILISATION_FIGURES}
    figures = {key: value for key, value in figures.items() if value is not None}
    return {**figures, **_per_group(marts, window, kpi.UTILISATION), **_per_group(marts, window, kpi.IDLE_SHARE)}


def _number(measure: Measure, value: float | None) -> Any:
    if value is None:
        return None
    if measure.unit.decimals == 0 and not measure.unit.share:
        return MetadataValue.int(int(value))
    return MetadataValue.float(float(value))


def metadata_key(measure: Measure, group: str) -> str:
    """``km_tracksolid``, ``km_tracksolid_fleet_a``: the measure per vendor (and account), a stable
    key the asset's Plots tab draws partition by partition."""
    return f"{measure.key}_" + re.sub(r"[^a-z0-9]+", "_", group.lower()).strip("_")


def _per_group(marts: Marts, window: Window, measure: Measure) -> dict[str, Any]:
    return {metadata_key(measure, group): _number(measure, value)
            for group, value in measure.per_group(marts, window).items()}


def firmware(conn: duckdb.DuckDBPyConnection, schema: str, window: Window) -> dict[str, Any]:
    rows = conn.execute(f"""
        with latest as (
            select *, max(day) over (partition by model_key) as newest from {schema}.firmware_rollout
        )
        select model_key, newest, any_value(target_version), max(model_devices),
               round(100 * max(share_on_target), 1), max(attempts_success), max(attempts),
               max(devices_stuck)
        from latest where day = newest group by model_key, newest order by model_key""").fetchall()
    table = markdown_table(
        ["model", "day", "target", "devices", "% on target", "OTA successes", "OTA attempts", "stuck"], rows)
    return {
        "models": MetadataValue.int(len(rows)),
        "devices_stuck": MetadataValue.int(int(sum(r[7] or 0 for r in rows))),
        "rollout_by_model": MetadataValue.md(table),
    }


def stock(conn: duckdb.DuckDBPyConnection, schema: str, window: Window) -> dict[str, Any]:
    rows = conn.execute(f"""
        select sku, product_name, stock_on_hand, activations from {schema}.stock_daily
        where day = (select max(day) from {schema}.stock_daily) order by sku nulls last, product_name""").fetchall()
    return {
        "units_on_hand": MetadataValue.int(int(sum(r[2] or 0 for r in rows))),
        "stock_by_product": MetadataValue.md(markdown_table(["sku", "product", "on hand", "activations"], rows)),
    }


FIGURES: dict[str, Callable[[duckdb.DuckDBPyConnection, str, Window], dict[str, Any]]] = {
    "mileage_daily": mileage,
    "parking_daily": parking,
    "parking_events": parking_events,
    "alarms_daily": alarms,
    "utilisation_daily": utilisation,
    "firmware_rollout": firmware,
    "stock_daily": stock,
}


def _marts_schema(conn: duckdb.DuckDBPyConnection) -> str | None:
    names = [r[0] for r in conn.execute(
        "select schema_name from duckdb_schemas() where database_name = current_database()").fetchall()]
    candidates = [n for n in names if n == MARTS_LAYER or n.endswith("_" + MARTS_LAYER)]
    return min(candidates, key=len) if candidates else None


# Metadata for one partition of one asset: how a step scopes it (``context.add_asset_metadata``).
AddPartitionMetadata = Callable[[AssetKey, str, dict[str, Any]], None]


def _tolerant(figures: Callable[[duckdb.DuckDBPyConnection, str, Window], dict[str, Any]]):
    """The figures, or a note naming what is missing when the mart lacks a column they read: the
    mart was built, and its materialization must not fail for want of a figure."""
    def read(conn: duckdb.DuckDBPyConnection, schema: str, window: Window) -> dict[str, Any]:
        try:
            return figures(conn, schema, window)
        except NotBuilt as missing:
            return {"key_figures_missing": MetadataValue.text(str(missing))}
    return read


def with_key_figures(
    events: Iterable[Any], keys_by_output: dict[str, AssetKey], database: Path, window: Window,
    add_partition_metadata: AddPartitionMetadata | None = None, lake: LakeSettings | None = None,
) -> Iterator[Any]:
    """The dbt events, with each mart's key figures added to its materialization.

    For a partitioned run (``window`` has days) each day's figures go to that day's partition
    through ``add_partition_metadata``: the one materialization event dbt reports for a mart would
    otherwise give every day of the run the figures of the whole run.
    """
    events = list(events)
    wanted = {name for name in keys_by_output if keys_by_output[name].path[-1] in FIGURES}
    if not any(isinstance(e, Output) and e.output_name in wanted for e in events):
        yield from events
        return
    # Read inside the caller's turn on the file (re-entrant), or the lake's latest snapshot.
    with connect(database, lake, read_only=True) as conn:
        schema = _marts_schema(conn)
        for event in events:
            if isinstance(event, Output) and event.output_name in wanted and schema is not None:
                key = keys_by_output[event.output_name]
                figures = _tolerant(FIGURES[key.path[-1]])
                if window.days() and add_partition_metadata is not None:
                    for day in window.days():
                        add_partition_metadata(key, day.isoformat(), figures(conn, schema, Window(day, day)))
                else:
                    event = event.with_metadata({**event.metadata, **figures(conn, schema, window)})
            yield event
