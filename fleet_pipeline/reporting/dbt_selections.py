"""The two halves of the dbt project as Dagster sees them: daily incremental models and the rest.

Shared by the code location's cached specs (dbt_assets) and the dbt step (dbt_translator); a module
of its own so that neither of those imports the other for it.
"""

from __future__ import annotations

from dataclasses import dataclass

PARTITIONED_SELECT = "config.materialized:incremental"


@dataclass(frozen=True)
class DbtSelection:
    """One ``@dbt_assets`` selection of the project: its op name, dbt selection and partitioning."""

    name: str
    select: str | None
    exclude: str | None
    partitioned: bool


SELECTIONS = (
    DbtSelection("dbt_daily_models", select=PARTITIONED_SELECT, exclude=None, partitioned=True),
    DbtSelection("dbt_models", select=None, exclude=PARTITIONED_SELECT, partitioned=False),
)
