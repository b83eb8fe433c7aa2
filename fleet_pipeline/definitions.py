"""The one Definitions object of the code location; nothing else assembles assets and resources."""

from __future__ import annotations

from dagster import Definitions

from fleet_pipeline import settings
from fleet_pipeline.sources.tracksolid.assets import tracksolid_assets
from fleet_pipeline.sources.tracksolid.jobs import tracksolid_jobs
from fleet_pipeline.sources.tracksolid.resources import TracksolidResource
from fleet_pipeline.warehouse import WarehouseResource

defs = Definitions(
    assets=[*tracksolid_assets],
    jobs=[*tracksolid_jobs],
    resources={
        "tracksolid": TracksolidResource.from_env(),
        "duckdb": WarehouseResource(database=str(settings.duckdb_path())),
    },
)
