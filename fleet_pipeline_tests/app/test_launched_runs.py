"""Runs launched as the daemon, the UI and the CLI launch them: a process per step, and every step a load.

A launched run of a source job executes each step in a process of its own (the multiprocess
executor), so a step that only reads two timestamps for a freshness check would cost a process
that loads the code location. The source jobs leave the freshness checks to their sensor; each
step of a launched ``navixy_daily`` run materializes an asset, against the Navixy sandbox. Assets
materialized from the CLI (or the UI) bring their freshness checks along, evaluated in the run process.
"""

from __future__ import annotations

import json
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
from dagster import DagsterEventType, DagsterInstance

from fleet_pipeline import executors
from fleet_pipeline.automation import freshness
from fleet_pipeline.code_location import CodeLocation
from fleet_pipeline.sandbox import navixy as sandbox_navixy
from fleet_pipeline.sandbox.world import World
from fleet_pipeline_tests.app.test_cli import BIN, _clean_env

DAY = (datetime.now(timezone.utc).date() - timedelta(days=5)).isoformat()
JOB = "navixy_daily"


def _launch(job: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """``dagster job execute`` of one partition: the job's own executor, the instance of DAGSTER_HOME."""
    return subprocess.run(
        [str(BIN / "dagster"), "job", "execute", "-m", "fleet_pipeline.definitions", "-j", job,
         "--tags", json.dumps({"dagster/partition": DAY})],
        env=env, capture_output=True, text=True, timeout=300,
    )


def test_a_launched_source_job_has_no_step_that_only_runs_checks(tmp_path: Path):
    from fleet_pipeline.definitions import assets_by_vendor, defs

    job = defs.resolve_job_def(JOB)
    # Expected from the job's own assets: one step per Navixy daily asset, each materializing it.
    navixy_daily = [a for a in assets_by_vendor["navixy"] if a.partitions_def is not None]
    expected_steps = {a.node_def.name: a.key for a in navixy_daily}
    assert expected_steps and set(job.asset_layer.executable_asset_keys) == set(expected_steps.values())

    world = World(seed=42, n_devices=20)
    warehouse = tmp_path / "launched.duckdb"
    with sandbox_navixy.make_server(world) as server:
        env = _clean_env(tmp_path, NAVIXY_BASE_URL=server.base_url + sandbox_navixy.API_PREFIX,
                         NAVIXY_API_KEY=sandbox_navixy.API_KEY, FLEET_DUCKDB_PATH=str(warehouse),
                         FLEET_STEP_RETRIES="0")
        done = _launch(JOB, env)
    assert done.returncode == 0, done.stderr[-3000:]

    with DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        [run] = instance.get_runs()
        assert run.job_name == JOB and run.tags["dagster/partition"] == DAY
        logs = instance.all_logs(run.run_id)
    started = {e.step_key for e in logs if e.dagster_event and e.dagster_event.event_type == DagsterEventType.STEP_START}
    in_own_process = {e.step_key for e in logs
                      if e.dagster_event and e.dagster_event.event_type == DagsterEventType.STEP_WORKER_STARTING}
    materialized: dict[str, set] = {}
    checked = set()
    for entry in logs:
        event = entry.dagster_event
        if event and event.event_type == DagsterEventType.ASSET_MATERIALIZATION:
            materialized.setdefault(entry.step_key, set()).add(event.asset_key)
        if event and event.event_type == DagsterEventType.ASSET_CHECK_EVALUATION:
            checked.add(event.event_specific_data.check_name)

    assert started == set(expected_steps), "a step that materializes no asset of the job ran"
    # The run process had no other thread, so its steps were forked from it (no second import).
    engine_messages = {e.user_message for e in logs if e.dagster_event and e.dagster_event.event_type == DagsterEventType.ENGINE_EVENT}
    assert executors.STARTED_BY["fork"] in engine_messages
    assert in_own_process == started, "the run did not start a process per step (multiprocess executor)"
    assert {step: keys for step, keys in materialized.items()} == {s: {k} for s, k in expected_steps.items()}
    # The steps' own checks ran inside them; the freshness checks did not run at all.
    assert checked and freshness.CHECK_NAME not in checked
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        trips = conn.execute("select count(*) from raw_navixy.trips where partition_date = ?", [DAY]).fetchone()[0]
    blocked = sandbox_navixy.default_blocked_tracker_ids(world)
    day = datetime.fromisoformat(DAY).date()
    truth = sum(len(world.day(d.imei, day).trips) for d in world.devices_on("navixy")
                if sandbox_navixy.tracker_id(d) not in blocked)
    assert trips == truth > 0


def test_launched_runs_fork_their_step_processes():
    """Every source job and the definitions' own executor (the reporting job, assets materialized
    from the UI or the CLI) fork step processes from one that imported the code location."""
    from fleet_pipeline.definitions import defs
    from fleet_pipeline.ingest.source_assets import SOURCE_EXECUTOR

    forked = {executors.DEFAULT_EXECUTOR.name, SOURCE_EXECUTOR.name}
    for name in ("navixy_daily", "navixy_snapshots", "all_daily", "all_snapshots", "reporting",
                 "__ASSET_JOB"):
        assert defs.resolve_job_def(name).executor_def.name in forked, name
    assert defs.resolve_job_def(freshness.JOB_NAME).executor_def.name == "in_process"
    # The module the step processes find preloaded is the one the code location loads.
    assert CodeLocation.from_workspace().module_name == executors.CODE_LOCATION_MODULE


def test_assets_materialized_from_the_cli_evaluate_their_freshness_checks_in_the_run_process(tmp_path: Path):
    """`dagster asset materialize` (as the UI's Materialize button) brings the assets' freshness checks
    along: they are evaluated, in the run's own process, while each asset gets a process of its own."""
    world = World(seed=42, n_devices=20)
    selected = ("raw_navixy/trackers", "raw_navixy/trips")  # a snapshot table and a daily one
    with sandbox_navixy.make_server(world) as server:
        env = _clean_env(tmp_path, NAVIXY_BASE_URL=server.base_url + sandbox_navixy.API_PREFIX,
                         NAVIXY_API_KEY=sandbox_navixy.API_KEY, FLEET_DUCKDB_PATH=str(tmp_path / "launched.duckdb"),
                         FLEET_STEP_RETRIES="0")
        done = subprocess.run(
            [str(BIN / "dagster"), "asset", "materialize", "-m", "fleet_pipeline.definitions",
             "--select", ",".join(selected), "--partition", DAY],
            env=env, capture_output=True, text=True, timeout=300,
        )
    assert done.returncode == 0, done.stderr[-3000:]

    with DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        [run] = instance.get_runs()
        logs = [e for e in instance.all_logs(run.run_id) if e.dagster_event]
    kinds = DagsterEventType
    own_process = {e.step_key for e in logs if e.dagster_event.event_type == kinds.STEP_WORKER_STARTING}
    freshness_steps: dict[str, set[str]] = {}
    for e in logs:
        if e.dagster_event.event_type == kinds.ASSET_CHECK_EVALUATION:
            evaluation = e.dagster_event.event_specific_data
            if evaluation.check_name == freshness.CHECK_NAME:
                freshness_steps.setdefault(e.step_key, set()).add(evaluation.asset_key.to_user_string())
    [run_pid] = {e.dagster_event.pid for e in logs if e.dagster_event.event_type == kinds.ENGINE_EVENT
                 and "parent process" in (e.user_message or "")}

    assert set().union(*freshness_steps.values()) == set(selected), "every selected table's freshness was evaluated"
    assert own_process == {"raw_navixy__trackers", "raw_navixy__trips"}, "each asset had its own process"
    assert not own_process & set(freshness_steps), "a step that only evaluates freshness started a process"
    notices = {e.user_message for e in logs if e.dagster_event.event_type == kinds.ENGINE_EVENT}
    for step in freshness_steps:
        assert executors.RUN_PROCESS_STEP.format(step=step, pid=run_pid) in notices
        ended = [e for e in logs if e.step_key == step and e.dagster_event.event_type == kinds.STEP_SUCCESS]
        assert ended and all(e.dagster_event.pid == run_pid for e in ended)
