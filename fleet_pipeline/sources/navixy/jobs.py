"""Navixy jobs: the daily event partitions, and the fleet snapshots that are not partitioned."""

from __future__ import annotations

from dagster import AssetSelection, define_asset_job

from fleet_pipeline.automation.partitions import daily_partitions
from fleet_pipeline.ingest.source_assets import SOURCE_EXECUTOR
from fleet_pipeline.sources.navixy.assets import (
    events,
    mileage_daily,
    sensor_readings,
    states,
    track_points,
    trackers,
    trips,
)

navixy_snapshots_job = define_asset_job(
    "navixy_snapshots",
    selection=AssetSelection.assets(trackers, states, sensor_readings),
    executor_def=SOURCE_EXECUTOR,
    description="Today's snapshot of the Navixy trackers, their states and sensor readings.",
)

navixy_daily_job = define_asset_job(
    "navixy_daily",
    selection=AssetSelection.assets(trips, track_points, events, mileage_daily),
    partitions_def=daily_partitions,
    executor_def=SOURCE_EXECUTOR,
    description="One UTC day of every partitioned asset of the navixy group.",
)

navixy_jobs = [navixy_snapshots_job, navixy_daily_job]
