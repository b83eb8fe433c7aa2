"""Tracksolid jobs: the daily event partitions, and the fleet snapshots that are not partitioned."""

from __future__ import annotations

from dagster import AssetSelection, define_asset_job

from fleet_pipeline.automation.partitions import daily_partitions
from fleet_pipeline.ingest.source_assets import SOURCE_EXECUTOR
from fleet_pipeline.sources.tracksolid.assets import GROUP, alarms, devices, parking, positions, track_points, trips

tracksolid_snapshots_job = define_asset_job(
    "tracksolid_snapshots",
    selection=AssetSelection.assets(devices, positions),
    executor_def=SOURCE_EXECUTOR,
    description="Today's snapshot of the Tracksolid device list and last positions.",
)

tracksolid_daily_job = define_asset_job(
    "tracksolid_daily",
    selection=AssetSelection.assets(trips, track_points, parking, alarms),
    partitions_def=daily_partitions,
    executor_def=SOURCE_EXECUTOR,
    description=f"One UTC day of every partitioned asset of the {GROUP} group.",
)

tracksolid_jobs = [tracksolid_snapshots_job, tracksolid_daily_job]
