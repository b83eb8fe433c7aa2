"""The tests' small code location (``ops_code_location``) with every step sent to Celery workers.

The real Tracksolid assets, resources and warehouse lock, and the product's Celery executor
(``fleet_pipeline.executors.celery_step_executor``: broker from FLEET_CELERY_BROKER), so that a test
of the distributed mode runs source steps on workers without loading every source and the dbt models.
"""

from __future__ import annotations

import time

from dagster import Definitions, asset

from fleet_pipeline.executors import celery_step_executor
from fleet_pipeline.ingest.source_assets import WRITER_POOL
from fleet_pipeline_tests import ops_code_location as ops

MODULE = __name__


@asset(pool=WRITER_POOL)
def holds_the_writer_slot() -> None:
    """A step of the ``duckdb_writer`` pool (as the dbt builds and the serving copy are) that lasts
    until its worker is killed: what a test needs to see that a lost step gives its pool slot back.
    The real pool steps need dbt and every source; this location loads Tracksolid alone."""
    time.sleep(600)


defs = Definitions(
    assets=[*ops.defs.assets, holds_the_writer_slot],
    resources=ops.defs.resources,
    executor=celery_step_executor("celery_executor"),
)
