"""The code location's contract, pinned: every asset (group, partitions) with its checks, every job
with the assets it runs, every schedule (cron) and sensor of ``fleet_pipeline.definitions``.

A change to any of them fails here until the snapshot is rewritten on purpose, so the diff of
``definitions_snapshot.json`` shows a reviewer what the change does to the UI, the schedules and
the runs. To accept a change:

    FLEET_UPDATE_SNAPSHOT=1 .venv/bin/pytest fleet_pipeline_tests/app/test_definitions.py

then read the diff of the snapshot before committing it.
"""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path
from typing import Any

from dagster import Definitions

SNAPSHOT = Path(__file__).with_name("definitions_snapshot.json")
UPDATE_VARIABLE = "FLEET_UPDATE_SNAPSHOT"


def partitioning(partitions_def: Any) -> str | None:
    """The kind of partitions only: their start moves with FLEET_PARTITIONS_START."""
    if partitions_def is None:
        return None
    return type(partitions_def).__name__.removesuffix("PartitionsDefinition").lower()


def describe(defs: Definitions) -> dict[str, Any]:
    graph = defs.resolve_asset_graph()
    checks: dict[str, list[str]] = {}
    for check in graph.asset_check_keys:
        checks.setdefault(check.asset_key.to_user_string(), []).append(check.name)
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        assets[key.to_user_string()] = {
            "group": node.group_name,
            "partitions": partitioning(node.partitions_def),
            "checks": sorted(checks.get(key.to_user_string(), [])),
        }
    repository = defs.get_repository_def()
    jobs = {
        job.name: sorted(key.to_user_string() for key in job.asset_layer.selected_asset_keys)
        for job in sorted(repository.get_all_jobs(), key=lambda j: j.name)
        if not job.name.startswith("__")  # Dagster's implicit job of all assets
    }
    schedules = {
        schedule.name: {"cron": schedule.cron_schedule, "timezone": schedule.execution_timezone,
                        "job": schedule.job_name, "default_status": schedule.default_status.value}
        for schedule in sorted(defs.schedules or [], key=lambda s: s.name)
    }
    sensors = {
        sensor.name: {"kind": type(sensor).__name__, "minimum_interval_s": sensor.minimum_interval_seconds,
                      "jobs": sorted(target.job_name for target in sensor.targets),
                      "default_status": sensor.default_status.value}
        for sensor in sorted(defs.sensors or [], key=lambda s: s.name)
    }
    return {"assets": assets, "jobs": jobs, "schedules": schedules, "sensors": sensors}


def render(description: dict[str, Any]) -> str:
    return json.dumps(description, indent=2) + "\n"


def test_the_definitions_match_the_committed_snapshot() -> None:
    from fleet_pipeline.definitions import defs  # seconds: every source and the dbt models

    current = render(describe(defs))
    if os.environ.get(UPDATE_VARIABLE) == "1":
        SNAPSHOT.write_text(current)
    assert SNAPSHOT.exists(), f"no {SNAPSHOT.name}: write it with {UPDATE_VARIABLE}=1 and review it"
    committed = SNAPSHOT.read_text()
    if current != committed:
        diff = difflib.unified_diff(committed.splitlines(), current.splitlines(),
                                    "committed snapshot", "definitions now", lineterm="", n=4)
        raise AssertionError(
            f"the definitions differ from {SNAPSHOT.relative_to(SNAPSHOT.parents[2])}:\n"
            + "\n".join(diff)
            + f"\nIf the change is meant, rewrite it with {UPDATE_VARIABLE}=1 (see this module's docstring) "
            "and review its diff before committing."
        )
