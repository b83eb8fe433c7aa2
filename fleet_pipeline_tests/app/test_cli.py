"""The commands a person runs: `dagster asset materialize`, `fleet-pipeline demo|sandbox|config`."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pytest
import yaml

from fleet_pipeline import settings
from fleet_pipeline.sandbox import navixy as sandbox_navixy
from fleet_pipeline.sandbox import tracksolid as sandbox_tracksolid
from fleet_pipeline.sandbox.world import World
from fleet_pipeline.sources.tracksolid.client import TracksolidClient

BIN = Path(sys.executable).parent
DAY = (datetime.now(timezone.utc).date() - timedelta(days=5)).isoformat()


def _clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith((*settings.VENDOR_ENV_PREFIXES, "FLEET_", "DAGSTER_"))}
    env.update(FLEET_DATA_DIR=str(tmp_path / "data"), DAGSTER_HOME=str(tmp_path / "dagster_home"), **extra)
    (tmp_path / "dagster_home").mkdir(exist_ok=True)
    return env


def _tables(path: Path) -> dict[str, int]:
    with duckdb.connect(str(path), read_only=True) as conn:
        names = conn.execute("select table_schema || '.' || table_name from information_schema.tables").fetchall()
        return {n: conn.execute(f"select count(*) from {n}").fetchone()[0] for (n,) in names}


def test_dagster_cli_materializes_the_group_against_a_loopback_sandbox(tmp_path):
    world = World(seed=42, n_devices=20)
    with sandbox_tracksolid.make_server(world) as server:
        warehouse = tmp_path / "cli.duckdb"
        env = _clean_env(
            tmp_path,
            TRACKSOLID_BASE_URL=server.base_url + sandbox_tracksolid.ROUTE_PATH,
            TRACKSOLID_APP_KEY=sandbox_tracksolid.APP_KEY,
            TRACKSOLID_APP_SECRET=sandbox_tracksolid.APP_SECRET,
            TRACKSOLID_USER_ID=sandbox_tracksolid.USER_ID,
            TRACKSOLID_USER_PASSWORD=sandbox_tracksolid.USER_PASSWORD,
            FLEET_DUCKDB_PATH=str(warehouse),
        )
        done = subprocess.run(
            [str(BIN / "dagster"), "asset", "materialize", "-m", "fleet_pipeline.definitions",
             "--select", "group:tracksolid", "--partition", DAY],
            env=env, capture_output=True, text=True, timeout=240,
        )
    assert done.returncode == 0, done.stderr[-3000:]
    counts = _tables(warehouse)
    truth_trips = sum(len(world.day(d.imei, datetime.fromisoformat(DAY).date()).trips)
                      for d in world.devices_on("tracksolid", at=world.now()))
    assert counts["raw_tracksolid.trips"] == truth_trips > 0
    for table in ("devices", "positions", "track_points", "parking", "alarms"):
        assert counts[f"raw_tracksolid.{table}"] > 0, table
    assert sandbox_tracksolid.APP_SECRET not in done.stdout + done.stderr


def test_dagster_cli_materializes_navixy_against_a_loopback_sandbox(tmp_path):
    world = World(seed=42, n_devices=20)
    with sandbox_navixy.make_server(world) as server:
        warehouse = tmp_path / "cli.duckdb"
        env = _clean_env(tmp_path, NAVIXY_BASE_URL=server.base_url + sandbox_navixy.API_PREFIX,
                         NAVIXY_API_KEY=sandbox_navixy.API_KEY, FLEET_DUCKDB_PATH=str(warehouse))
        done = subprocess.run(
            [str(BIN / "dagster"), "asset", "materialize", "-m", "fleet_pipeline.definitions",
             "--select", "group:navixy", "--partition", DAY],
            env=env, capture_output=True, text=True, timeout=300,
        )
    assert done.returncode == 0, done.stderr[-3000:]
    counts = _tables(warehouse)
    day = datetime.fromisoformat(DAY).date()
    blocked = sandbox_navixy.default_blocked_tracker_ids(world)
    truth = sum(len(world.day(d.imei, day).trips) for d in world.devices_on("navixy", at=world.now()) if 100_000 + d.index not in blocked)
    assert counts["raw_navixy.trips"] == truth > 0
    for table in ("trackers", "states", "sensor_readings", "track_points", "events", "mileage_daily"):
        assert counts[f"raw_navixy.{table}"] > 0, table
    assert sandbox_navixy.API_KEY not in done.stdout + done.stderr


def test_dagster_cli_reports_a_bad_setting_in_one_line_without_a_traceback(tmp_path):
    """Issue 15: a malformed variable under `dagster asset materialize` is the user's input, not a bug."""
    env = _clean_env(tmp_path, NAVIXY_BASE_URL="htp:/bad url", NAVIXY_API_KEY=sandbox_navixy.API_KEY)
    (tmp_path / "dagster_home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    done = subprocess.run(
        [str(BIN / "dagster"), "asset", "materialize", "-m", "fleet_pipeline.definitions",
         "--select", "raw_navixy/trackers"],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode != 0
    ours = [line for line in done.stderr.splitlines() if line.startswith("fleet_pipeline:")]
    assert ours == ["fleet_pipeline: configuration error: NAVIXY_BASE_URL must start with http:// or "
                    "https://, got 'htp:/bad url'"], done.stderr[-3000:]
    assert "Traceback" not in done.stderr + done.stdout
    assert sandbox_navixy.API_KEY not in done.stderr + done.stdout


# A whole demo, then a code server listing its runs: about a minute on a quiet machine, but the two
# subprocesses each have 300 s of their own, so the test as a whole may take their sum.
@pytest.mark.timeout(660)
def test_demo_runs_end_to_end_in_the_project_instance(tmp_path):
    env = _clean_env(tmp_path, FLEET_SANDBOX_DEVICES="12")
    done = subprocess.run([str(BIN / "fleet-pipeline"), "demo", "--days", "2"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "[3/3] all_daily" in done.stdout and "Summary" in done.stdout
    warehouse = tmp_path / "data" / "sandbox.duckdb"
    assert str(warehouse) in done.stdout
    counts = _tables(warehouse)
    assert counts["raw_tracksolid.track_points"] > 0 and counts["raw_tracksolid.devices"] > 0
    assert counts["raw_navixy.track_points"] > 0 and counts["raw_navixy.trackers"] > 0
    runs = list((tmp_path / "dagster_home").glob("history/runs/*.db")) or list(
        (tmp_path / "dagster_home").glob("history/runs.db"))
    assert runs, "runs were not recorded in the project's Dagster instance"
    assert "enabled: false" in (tmp_path / "dagster_home" / "dagster.yaml").read_text()

    # The UI (make ui, same environment) lists the demo's runs under their jobs and re-executes them
    # without a "different version" warning: asked as its job page asks.
    listed = subprocess.run([sys.executable, "-c", RUNS_AS_THE_UI_LISTS_THEM, str(REPO / "workspace.yaml"),
                             _workspace_location_name()], env=env, capture_output=True, text=True, timeout=300)
    assert listed.returncode == 0, listed.stderr[-3000:]
    # The code server logs to the same output; the figures are on their own line.
    (line,) = [line for line in listed.stdout.splitlines() if line.startswith("RUNS ")]
    by_job = json.loads(line.removeprefix("RUNS "))
    assert by_job["all_daily"] == {"runs": 2, "location": _workspace_location_name(), "same_snapshot": 2}
    assert by_job["all_snapshots"]["runs"] == 1 and by_job["reporting"]["runs"] == 1
    assert by_job["reporting"]["same_snapshot"] == 1


REPO = Path(__file__).resolve().parents[2]
# What the webserver does for a job page's runs (dagster_graphql's GraphenePipeline.resolve_runs): the
# job as the code location loaded it, its runs filtered by job name and repository label.
RUNS_AS_THE_UI_LISTS_THEM = """
import json, sys
from dagster import DagsterInstance
from dagster._core.storage.dagster_run import RunsFilter
from dagster._core.storage.tags import REPOSITORY_LABEL_TAG
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import WorkspaceFileTarget

workspace, location_name = sys.argv[1], sys.argv[2]
instance = DagsterInstance.get()
with WorkspaceProcessContext(instance, WorkspaceFileTarget([workspace])) as process:
    location = process.create_request_context().get_code_location(location_name)
    (repository,) = location.get_repositories().values()
    by_job = {}
    for name in ("all_daily", "all_snapshots", "reporting"):
        job = repository.get_full_job(name)
        label = job.get_remote_origin().repository_origin.get_label()
        runs = instance.get_runs(RunsFilter(job_name=name, tags={REPOSITORY_LABEL_TAG: label}))
        by_job[name] = {
            "runs": len(runs),
            "location": sorted({run.remote_job_origin.location_name for run in runs}),
            # A run whose job snapshot is the one loaded re-executes without a warning.
            "same_snapshot": sum(run.job_snapshot_id == job.computed_job_snapshot_id for run in runs),
        }
        by_job[name]["location"] = ",".join(by_job[name]["location"])
print("RUNS " + json.dumps(by_job))
"""


def _workspace_location_name() -> str:
    (entry,) = yaml.safe_load((REPO / "workspace.yaml").read_text())["load_from"]
    return entry["python_module"]["location_name"]


def test_dg_check_defs_loads_the_code_location_from_a_new_shell(tmp_path):
    # A new shell: no activated venv, .venv/bin not on PATH; dg runs the project's own environment.
    path = os.pathsep.join(entry for entry in os.environ.get("PATH", "").split(os.pathsep)
                           if entry and Path(entry).resolve() != BIN.resolve())
    env = {**_clean_env(tmp_path), "PATH": path}
    env.pop("VIRTUAL_ENV", None)
    done = subprocess.run([str(BIN / "dg"), "check", "defs"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "All definitions loaded successfully" in done.stdout + done.stderr


def test_partial_configuration_is_a_clear_error_before_anything_runs(tmp_path):
    env = _clean_env(tmp_path, TRACKSOLID_APP_KEY="k", TRACKSOLID_APP_SECRET="top-secret-value")
    done = subprocess.run([str(BIN / "fleet-pipeline"), "demo"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "TRACKSOLID_USER_ID" in done.stderr and "Traceback" not in done.stderr
    assert "top-secret-value" not in done.stderr + done.stdout
    assert not (tmp_path / "data" / "fleet.duckdb").exists()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_standalone_sandbox_serves_the_documented_protocol(tmp_path):
    port = _free_port()
    process = subprocess.Popen(
        [str(BIN / "fleet-pipeline"), "sandbox", "serve", "--vendor", "tracksolid", "--port", str(port),
         "--devices", "10"],
        env=_clean_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        banner = process.stdout.readline()
        assert f"127.0.0.1:{port}" in banner, banner
        client = TracksolidClient(f"http://127.0.0.1:{port}", sandbox_tracksolid.APP_KEY,
                                  sandbox_tracksolid.APP_SECRET, sandbox_tracksolid.USER_ID,
                                  sandbox_tracksolid.USER_PASSWORD, token_cache_dir=tmp_path / "cache")
        listed = {row["imei"] for account in client.accounts() for row in client.devices(account["account"])}
        client.close()
        assert listed == {d.imei for d in World(seed=42, n_devices=10).devices_on("tracksolid", at=datetime.now(timezone.utc).replace(tzinfo=None))}
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)
