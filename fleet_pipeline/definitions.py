"""The one Definitions object of the code location; nothing else assembles assets and resources."""

from __future__ import annotations

from dagster import AssetSelection, Definitions, define_asset_job

from fleet_pipeline import settings

# Every setting, before any module below reads one: all bad variables reported at once, when the
# definitions load (not when the schedule that first reads one ticks).
settings.check_configuration()
from fleet_pipeline.automation.freshness import build_freshness_checks, build_freshness_sensor, without_freshness_checks
from fleet_pipeline.automation.jobs import vendor_jobs
from fleet_pipeline.automation.lake_maintenance import build_lake_maintenance
from fleet_pipeline.automation.partitions import daily_partitions
from fleet_pipeline.automation.schedules import build_daily_schedule, build_reporting_sensor, build_snapshot_schedule
from fleet_pipeline.executors import DEFAULT_EXECUTOR
from fleet_pipeline.ingest.source_assets import SOURCE_EXECUTOR
from fleet_pipeline.ingest.warehouse import warehouse_resource
from fleet_pipeline.instance import build_abandoned_runs_sensor
from fleet_pipeline.reporting.dbt_assets import build_dbt_assets, dbt_resource, load_project
from fleet_pipeline.reporting.report import fleet_report
from fleet_pipeline.reporting.serving import build_serving_asset
from fleet_pipeline.sources.registry import VENDORS
from fleet_pipeline.sources.tracksolid.push_assets import PushLandingResource, push_assets
from fleet_pipeline.sources.tracksolid.push_sensor import build_push_landing_sensor, build_push_load_job

# Every vendor of the registry: its assets, its own jobs and its resource.
assets_by_vendor = {spec.name: spec.load_assets() for spec in VENDORS}
# The Tracksolid push tables read the receiver's landing files, not a vendor API: their own group
# and job (and the landing sensor below), and part of every day's load.
source_assets = [asset for assets in assets_by_vendor.values() for asset in assets] + push_assets
push_landing = PushLandingResource.from_env()
push_load_job = build_push_load_job(push_assets)
per_vendor_jobs = [job for spec in VENDORS for job in vendor_jobs(spec, assets_by_vendor[spec.name])]
_partitioned = [a for a in source_assets if a.partitions_def is not None]
_snapshots = [a for a in source_assets if a.partitions_def is None]

# Every source at once: what `fleet-pipeline demo` runs, and what schedules will run. Launched
# from the UI or a schedule, each vendor's steps run in a process of their own, the vendors side by
# side (SOURCE_EXECUTOR); the freshness checks are not among their steps (the sensor runs them).
all_snapshots_job = define_asset_job(
    "all_snapshots",
    selection=without_freshness_checks(_snapshots),
    executor_def=SOURCE_EXECUTOR,
    description="Today's snapshot of every source's fleet state (devices, trackers, positions, states).",
)
all_daily_job = define_asset_job(
    "all_daily",
    selection=without_freshness_checks(_partitioned),
    partitions_def=daily_partitions,
    executor_def=SOURCE_EXECUTOR,
    description="One UTC day of every partitioned source asset.",
)

# dbt models (staging, core, marts), then the BI serving copy and the HTML report. The job mixes the
# daily incremental models with unpartitioned ones; run it for a partition or a partition range.
dbt_project = load_project()
dbt_asset_defs = build_dbt_assets(dbt_project)
serving_copy = build_serving_asset([key for definition in dbt_asset_defs for key in definition.keys])
reporting_assets = [*dbt_asset_defs, serving_copy, fleet_report]
reporting_job = define_asset_job(
    "reporting",
    selection=AssetSelection.assets(*reporting_assets),
    description="dbt build of the reporting models, then the serving copy and the fleet report.",
)

# Schedules and sensors start stopped unless FLEET_SCHEDULES_RUNNING=1 (see schedules.py).
freshness_checks = build_freshness_checks(source_assets)
schedules = [build_daily_schedule(all_daily_job), build_snapshot_schedule(all_snapshots_job)]
sensors = [build_reporting_sensor(all_daily_job, reporting_job, push_load_job), build_freshness_sensor(freshness_checks),
           build_abandoned_runs_sensor(),
           build_push_landing_sensor(push_load_job, push_landing.landing_dir, push_landing.late_data_days)]

def _definitions() -> Definitions:
    """The code location's one Definitions object. Built here, not as two module-level objects:
    Dagster's loader (the webserver, the daemon, ``dagster`` commands) refuses a module holding
    more than one."""
    # The executor of the reporting job and of assets materialized from the UI or the CLI: step
    # processes forked from one that imported the code location (fleet_pipeline.executors).
    pipeline = Definitions(
        executor=DEFAULT_EXECUTOR,
        assets=[*source_assets, *reporting_assets],
        asset_checks=freshness_checks,
        jobs=[*per_vendor_jobs, all_snapshots_job, all_daily_job, push_load_job, reporting_job],
        schedules=schedules,
        sensors=sensors,
        resources={
            "dbt": dbt_resource(dbt_project),
            **{spec.resource_key: spec.from_env() for spec in VENDORS},
            "tracksolid_push": push_landing,
            "duckdb": warehouse_resource(),
        },
    )
    # The lake's upkeep exists only where there is a lake (FLEET_WAREHOUSE=ducklake).
    lake = settings.lake_settings()
    if lake is None:
        return pipeline
    return Definitions.merge(pipeline, build_lake_maintenance(lake, settings.lake_retention_days()))


defs = _definitions()
