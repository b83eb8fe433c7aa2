"""fleet_pipeline: Dagster + DuckDB warehouse for GPS-tracker fleets on several vendor platforms."""
