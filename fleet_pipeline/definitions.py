"""The one Definitions object of the code location; nothing else assembles assets and resources."""

from __future__ import annotations

from dagster import AssetSelection, Definitions, define_asset_job

from fleet_pipeline import settings
from fleet_pipeline.partitions import daily_partitions
from fleet_pipeline.sources.aovx.assets import aovx_assets
from fleet_pipeline.sources.aovx.resources import AovxResource
from fleet_pipeline.sources.navixy.assets import navixy_assets
from fleet_pipeline.sources.navixy.jobs import navixy_jobs
from fleet_pipeline.sources.navixy.resources import NavixyResource
from fleet_pipeline.sources.teltonika.assets import teltonika_assets
from fleet_pipeline.sources.teltonika.resources import TeltonikaResource
from fleet_pipeline.sources.telesto.assets import telesto_assets
from fleet_pipeline.sources.telesto.resources import TelestoResource
from fleet_pipeline.sources.tracksolid.assets import tracksolid_assets
from fleet_pipeline.sources.tracksolid.jobs import tracksolid_jobs
from fleet_pipeline.sources.tracksolid.resources import TracksolidResource
from fleet_pipeline.warehouse import WarehouseResource

source_assets = [*tracksolid_assets, *navixy_assets, *teltonika_assets, *aovx_assets, *telesto_assets]
_partitioned = [a for a in source_assets if a.partitions_def is not None]
_snapshots = [a for a in source_assets if a.partitions_def is None]

# Every source at once: what `fleet-pipeline demo` runs, and what schedules will run.
all_snapshots_job = define_asset_job(
    "all_snapshots",
    selection=AssetSelection.assets(*_snapshots),
    description="Today's snapshot of every source's fleet state (devices, trackers, positions, states).",
)
all_daily_job = define_asset_job(
    "all_daily",
    selection=AssetSelection.assets(*_partitioned),
    partitions_def=daily_partitions,
    description="One UTC day of every partitioned source asset.",
)

defs = Definitions(
    assets=source_assets,
    jobs=[*tracksolid_jobs, *navixy_jobs, all_snapshots_job, all_daily_job],
    resources={
        "tracksolid": TracksolidResource.from_env(),
        "navixy": NavixyResource.from_env(),
        "teltonika": TeltonikaResource.from_env(),
        "aovx": AovxResource.from_env(),
        "telesto": TelestoResource.from_env(),
        "duckdb": WarehouseResource(database=str(settings.duckdb_path())),
    },
)
