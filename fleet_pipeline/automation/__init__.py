"""Dagster automation: daily partitions, schedules and sensors, freshness checks, anomaly checks, backfills."""
