"""A small code location for tests that run Dagster's multiprocess executor.

The multiprocess executor re-imports the code location in every step process, and loading
``fleet_pipeline.definitions`` costs about 2 s of CPU a process (every source and the dbt models'
specs). Tests of concurrency and crashes load this module instead: the real Tracksolid assets, the
real Tracksolid and warehouse resources, and the real lock on the warehouse.

Both resources are configured at launch (``run_config``): each test points its runs at its own
sandbox and DuckDB file, and every step process of a run gets the same settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dagster import Definitions, multiprocess_executor

from fleet_pipeline.ingest.warehouse import WarehouseResource
from fleet_pipeline.sandbox import tracksolid as sandbox_tracksolid
from fleet_pipeline.sources.tracksolid.assets import tracksolid_assets
from fleet_pipeline.sources.tracksolid.resources import TracksolidResource

MODULE = __name__

defs = Definitions(
    assets=tracksolid_assets,
    resources={
        "tracksolid": TracksolidResource.configure_at_launch(),
        "duckdb": WarehouseResource.configure_at_launch(),
    },
    # A forkserver that has imported dagster, its CLI, storage and execution modules starts a step
    # process seconds faster than the default spawn, which re-imports everything for every step.
    # The product's executor (fleet_pipeline/executors.py) also preloads its definitions, polars
    # included, and says why that fork is safe; this location, whose tests are about concurrent
    # writers and not start-up cost, preloads Dagster alone. Each step runs in a process of its own.
    executor=multiprocess_executor.configured(
        {"start_method": {"forkserver": {"preload_modules": [
            "dagster", "dagster._cli", "dagster._core.storage.runs.sqlite",
            "dagster._core.storage.event_log.sqlite", "dagster._core.execution.api",
        ]}}}
    ),
)


def resource_config(sandbox_base_url: str, cache_dir: Path, warehouse: Path) -> dict[str, dict[str, Any]]:
    """Both resources' settings for a Tracksolid sandbox and a DuckDB file; retries shrunk so a
    vendor that a test breaks for good fails fast."""
    return {
        "tracksolid": {
            "base_url": sandbox_base_url + sandbox_tracksolid.ROUTE_PATH,
            "app_key": sandbox_tracksolid.APP_KEY,
            "app_secret": sandbox_tracksolid.APP_SECRET,
            "user_id": sandbox_tracksolid.USER_ID,
            "user_password": sandbox_tracksolid.USER_PASSWORD,
            "cache_dir": str(cache_dir),
            "retry_attempts": 3,
            "backoff_base_s": 0.05,
            "throttle_backoff_base_s": 0.05,
        },
        "duckdb": {"database": str(warehouse)},
    }


def run_config(sandbox_base_url: str, cache_dir: Path, warehouse: Path) -> dict[str, Any]:
    """The run config of a run of this code location (its resources are configured at launch)."""
    settings = resource_config(sandbox_base_url, cache_dir, warehouse)
    return {"resources": {name: {"config": values} for name, values in settings.items()}}


def resources(sandbox_base_url: str, cache_dir: Path, warehouse: Path) -> dict[str, Any]:
    """The same resources as objects, for ``dagster.materialize`` in the test process."""
    settings = resource_config(sandbox_base_url, cache_dir, warehouse)
    return {"tracksolid": TracksolidResource(**settings["tracksolid"]),
            "duckdb": WarehouseResource(**settings["duckdb"])}
