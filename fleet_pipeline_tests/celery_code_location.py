"""The tests' small code location (``ops_code_location``) with every step sent to Celery workers.

The real Tracksolid assets, resources and warehouse lock, and the product's Celery executor
(``fleet_pipeline.executors.celery_step_executor``: broker from FLEET_CELERY_BROKER), so that a test
of the distributed mode runs source steps on workers without loading every source and the dbt models.
"""

from __future__ import annotations

from dagster import Definitions

from fleet_pipeline.executors import celery_step_executor
from fleet_pipeline_tests import ops_code_location as ops

MODULE = __name__

defs = Definitions(
    assets=ops.defs.assets,
    resources=ops.defs.resources,
    executor=celery_step_executor("celery_executor"),
)
