"""Every vendor's own jobs, built from its spec: today's snapshot and one UTC day of its events."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from dagster import AssetsDefinition, define_asset_job

from fleet_pipeline.automation.freshness import without_freshness_checks
from fleet_pipeline.automation.partitions import daily_partitions
from fleet_pipeline.ingest.source_assets import SOURCE_EXECUTOR
from fleet_pipeline.sources.spec import VendorSpec

if TYPE_CHECKING:
    from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition


def vendor_jobs(spec: VendorSpec, assets: Sequence[AssetsDefinition]) -> list[UnresolvedAssetJobDefinition]:
    """``<vendor>_snapshots`` (its unpartitioned assets) and ``<vendor>_daily`` (its partitioned
    ones), each only when the vendor has such assets; the freshness checks are the sensor's."""
    snapshots = [a for a in assets if a.partitions_def is None]
    partitioned = [a for a in assets if a.partitions_def is not None]
    jobs = []
    if snapshots:
        jobs.append(define_asset_job(
            f"{spec.name}_snapshots",
            selection=without_freshness_checks(snapshots),
            executor_def=SOURCE_EXECUTOR,
            description=f"Today's snapshot of {spec.snapshot_contents}.",
        ))
    if partitioned:
        jobs.append(define_asset_job(
            f"{spec.name}_daily",
            selection=without_freshness_checks(partitioned),
            partitions_def=daily_partitions,
            executor_def=SOURCE_EXECUTOR,
            description=f"One UTC day of every partitioned asset of the {spec.name} group.",
        ))
    return jobs
