"""The lake's upkeep (FLEET_WAREHOUSE=ducklake only): old snapshots expired, small files merged,
files nothing refers to any more deleted — a job on a daily schedule.

Every write adds a snapshot and a Parquet file (four dbt builds left 195 snapshots), and a killed
writer leaves a Parquet file no snapshot refers to. Without upkeep the catalog and the data path
only grow. In order:

1. ``ducklake_expire_snapshots``: snapshots older than FLEET_LAKE_RETENTION_DAYS go (time travel
   reaches back that far, no further); the files only they referred to are scheduled for deletion;
2. per table, in its write turn (DuckLake detects conflicts per table, so a source writing the
   table meanwhile waits rather than fails): ``ducklake_merge_adjacent_files`` merges the many
   small files of daily writes, and ``ducklake_rewrite_data_files`` rewrites files most of whose
   rows were deleted (every re-load of a day deletes its rows);
3. ``ducklake_cleanup_old_files``: the scheduled files are deleted;
4. ``ducklake_delete_orphaned_files``: files under the data path that the catalog does not know
   (a writer killed before its commit) are deleted once older than ORPHAN_AGE — a writer still
   writing has files the catalog does not know yet either.

Orphan cleanup deletes every file under the data path that this lake's catalog does not know, so
each lake needs a data path of its own (one lake's cleanup deleted another's files when one path
held the other: docs/distributed.md). The job exists only when the lake is configured: the embedded
file has nothing of this to maintain.
"""

from __future__ import annotations

from datetime import timedelta

from dagster import JobDefinition, ScheduleDefinition, job, op

from fleet_pipeline.automation.schedules import automation_status
from fleet_pipeline.ingest.warehouse import TableRef, connect, table_turns
from fleet_pipeline.settings import LakeSettings

MAINTENANCE_JOB = "lake_maintenance"
# After the daily loads (01:00) and the reporting they trigger, before the working day.
MAINTENANCE_CRON = "30 4 * * *"
# No write takes a day: a file the catalog has not known for that long belongs to no running writer.
ORPHAN_AGE = timedelta(days=1)


def maintain(lake: LakeSettings, retention_days: int, log=print) -> dict[str, int]:
    """Run the upkeep on ``lake``; how many snapshots, files merged or rewritten and files deleted."""
    counts: dict[str, int] = {}
    with connect("", lake) as conn:
        catalog = conn.execute("SELECT current_database()").fetchone()[0]
        counts["snapshots_expired"] = len(conn.execute(
            f"CALL ducklake_expire_snapshots('{catalog}', older_than => now() - INTERVAL {retention_days} DAY)"
        ).fetchall())
        tables = [TableRef(schema, name) for schema, name in conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_catalog = current_database() AND table_type = 'BASE TABLE' ORDER BY 1, 2").fetchall()]
        merged = rewritten = 0
        for table in tables:
            with table_turns(lake, [table], "the lake's maintenance", log):
                merged += len(conn.execute(f"CALL ducklake_merge_adjacent_files('{catalog}', ?, schema => ?)",
                                           [table.name, table.schema]).fetchall())
                rewritten += len(conn.execute(f"CALL ducklake_rewrite_data_files('{catalog}', ?, schema => ?)",
                                              [table.name, table.schema]).fetchall())
        counts["files_merged"], counts["files_rewritten"] = merged, rewritten
        counts["old_files_deleted"] = len(conn.execute(
            f"CALL ducklake_cleanup_old_files('{catalog}', cleanup_all => true)").fetchall())
        counts["orphan_files_deleted"] = len(conn.execute(
            f"CALL ducklake_delete_orphaned_files('{catalog}', older_than => now() - INTERVAL "
            f"{int(ORPHAN_AGE.total_seconds())} SECOND)").fetchall())
    log(f"lake maintenance of {lake.data_path}: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in counts.items()))
    return counts


def build_lake_maintenance(lake: LakeSettings, retention_days: int) -> tuple[JobDefinition, ScheduleDefinition]:
    """The maintenance job and its daily schedule, for the lake the settings name."""

    @op(name="maintain_lake", description=f"Expire lake snapshots older than {retention_days} days, merge "
        "small files, rewrite files of deleted rows, delete files nothing refers to.")
    def maintain_lake(context) -> None:  # untyped: under `from __future__ import annotations` Dagster sees a string
        maintain(lake, retention_days, context.log.info)

    @job(name=MAINTENANCE_JOB, description="The lake's upkeep (FLEET_WAREHOUSE=ducklake): snapshots, "
         "small files, orphans.")
    def lake_maintenance() -> None:
        maintain_lake()

    schedule = ScheduleDefinition(name=f"{MAINTENANCE_JOB}_daily", job=lake_maintenance, cron_schedule=MAINTENANCE_CRON,
                                  execution_timezone="UTC", default_status=automation_status()[0],
                                  description="Daily lake upkeep after the loads and the reporting.")
    return lake_maintenance, schedule
