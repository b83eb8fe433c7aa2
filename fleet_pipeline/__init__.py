"""fleet_pipeline: Dagster + DuckDB warehouse for GPS-tracker fleets on several vendor platforms."""

from fleet_pipeline import allocators

allocators.configure()
