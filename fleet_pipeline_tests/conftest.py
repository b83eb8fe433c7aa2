"""Shared fixtures: the sandbox World and a running Tracksolid or Navixy sandbox per test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import pytest

from fleet_pipeline.sandbox import navixy, tracksolid
from fleet_pipeline.sandbox.navixy import NavixyKnobs
from fleet_pipeline.sandbox.server import ManualClock, SandboxServer
from fleet_pipeline.sandbox.tracksolid import TracksolidKnobs
from fleet_pipeline.sandbox.world import World
from fleet_pipeline_tests.shared_demo import SharedDemo, build_once, shared_root

# Runs that are meant to fail would otherwise wait out the source assets' step retries (a minute
# and more each). Set before any test module imports an asset module (the policy is read at
# import); tests that exercise step retries give their job its own policy.
os.environ.setdefault("FLEET_STEP_RETRIES", "0")
# Tests name fixed days around WORLD_NOW (2026-11); by default the partitions start 90 days before
# the real today, which would drop those days as the calendar moves on. (The UI test clears it: it
# checks the default window.)
os.environ.setdefault("FLEET_PARTITIONS_START", "2026-01-01")

# A fixed clock: what the sandbox may reveal (late points, trips that have ended) must not
# depend on when the suite runs.
WORLD_NOW = datetime(2026, 11, 20, 12, 0, 0)


@pytest.fixture(scope="session")
def world() -> World:
    return World(seed=42, n_devices=60, now=lambda: WORLD_NOW)


@pytest.fixture(scope="session")
def shared_demo(tmp_path_factory: pytest.TempPathFactory) -> SharedDemo:
    """The session's `fleet-pipeline demo --days 2` and `dbt build`, made once for every xdist worker
    (shared_demo.py). Read it only: a test that writes takes a copy (`shared_demo.copy_to`)."""
    return build_once(shared_root(tmp_path_factory))


@dataclass
class TracksolidSandbox:
    """A running Tracksolid sandbox and what a client needs to talk to it.

    `clock` is the sandbox's own clock (starts at `world.now()`); move it to reveal late points,
    expire tokens or release the once-a-minute token limit. A client must sign its `timestamp`
    with `now()`, since the server rejects timestamps more than 10 minutes away from it.
    """

    server: SandboxServer[TracksolidKnobs]
    world: World
    clock: ManualClock
    credentials: dict[str, str]

    @property
    def base_url(self) -> str:
        """Server root, e.g. http://127.0.0.1:41234."""
        return self.server.base_url

    @property
    def route_url(self) -> str:
        """The API endpoint (the doc's "regional base URL"): base_url + /route/rest."""
        return self.server.base_url + tracksolid.ROUTE_PATH

    @property
    def knobs(self) -> TracksolidKnobs:
        return self.server.knobs

    def now(self) -> datetime:
        return self.clock()


@pytest.fixture
def tracksolid_sandbox(world: World) -> Iterator[TracksolidSandbox]:
    """A fresh server per test, so knobs, limits and the request log never leak between tests."""
    clock = ManualClock(world.now())
    with tracksolid.make_server(world, now=clock) as server:
        yield TracksolidSandbox(server=server, world=world, clock=clock,
                                credentials=dict(tracksolid.CREDENTIALS))


@dataclass
class NavixySandbox:
    """A running Navixy sandbox and what a client needs to talk to it.

    `base_url` already ends in /api-v2 (white-label style): calls are `{base_url}/tracker/list`.
    `clock` is the sandbox clock (starts at `world.now()`); move it to end session hashes
    (`knobs.session_lifetime_s`) or to reveal late points. The 50/s rate window runs on the
    real monotonic clock here; tests that need a frozen one build their own server.
    """

    server: SandboxServer[NavixyKnobs]
    world: World
    clock: ManualClock
    credentials: dict[str, str]

    @property
    def base_url(self) -> str:
        return self.server.base_url + navixy.API_PREFIX

    @property
    def knobs(self) -> NavixyKnobs:
        return self.server.knobs

    def now(self) -> datetime:
        return self.clock()


@pytest.fixture
def navixy_sandbox(world: World) -> Iterator[NavixySandbox]:
    """A fresh Navixy server per test, so knobs, sessions, limits and the log never leak."""
    clock = ManualClock(world.now())
    with navixy.make_server(world, now=clock) as server:
        yield NavixySandbox(server=server, world=world, clock=clock,
                            credentials=dict(navixy.CREDENTIALS))



# What `make test-fast` (`-m "not slow"`) leaves out: a whole file, or one test of a file, that
# runs dbt, launches Dagster runs or the CLI in subprocesses, drives the browser, replays the fault
# matrix or loads many days — each 4 s and more on the two shared cores (measured with
# --durations=0). `make test` runs them all.
SLOW = {
    "reporting/test_dbt_models.py": "dbt builds the models on a loaded warehouse",
    "reporting/test_reporting.py": "dbt builds the marts the report and the BI copy read",
    "reporting/test_kpi_marts.py": "a demo and dbt builds of the KPI marts",
    "reporting/test_lake_reporting.py": "the demo on a DuckLake and Postgres, then the reporting job on a file",
    "reporting/test_accounts_marts.py": "two warehouses of every source, each built by dbt",
    "app/test_cli.py": "the demo, `dagster asset materialize` and `dg check defs` in subprocesses",
    "app/test_cluster.py": "Postgres, Redis and two Celery workers, runs on them, a worker's process killed",
    "ingest/test_shared_budget.py": "three processes calling a sandbox at its rate limit, twice",
    "sandbox/test_benchmark_accounts.py::test_the_subcommand_loads_each_accounts_devices_in_both_modes":
        "the accounts benchmark at 20 devices: Postgres, Redis, a Celery worker and two launched runs",
    "app/test_ui_browser.py": "a demo, the Dagster webserver and chromium",
    "app/test_launched_runs.py::test_a_launched_source_job_has_no_step_that_only_runs_checks":
        "a run launched in a subprocess with the multiprocess executor",
    "ingest/test_concurrency.py": "runs in subprocesses with the multiprocess executor, then killed",
    "ingest/test_lake.py": "a Postgres server, DuckLake writers in subprocesses, one killed",
    "automation/test_abandoned_runs.py": "runs launched in subprocesses and left behind",
    "sources/test_faults.py": "every vendor fault against the sandbox, one run each",
    "ingest/test_archive.py::test_the_replay_command_rebuilds_a_wiped_table_and_names_a_day_it_cannot":
        "a backfill and two replays through the CLI",
    "automation/test_backfill.py::test_the_cli_reports_a_failed_run_then_resumes_to_completion":
        "a failing then a resumed backfill through the CLI",
    "automation/test_backfill.py::test_a_tracksolid_range_run_equals_three_day_runs_with_fewer_calls":
        "a range run and three day runs",
    "automation/test_backfill.py::test_a_navixy_range_run_equals_three_day_runs_with_fewer_calls":
        "a range run and three day runs",
    "automation/test_backfill.py::test_a_range_run_against_a_tight_rate_limit_slows_down_and_loads_every_row":
        "waits out a tight rate limit",
    "automation/test_backfill.py::test_a_failed_range_run_leaves_every_day_as_it_was": "two range runs",
    "automation/test_anomaly.py::test_the_check_passes_on_normal_days_and_fails_when_most_of_the_fleet_vanishes":
        "loads two weeks of days",
    "sources/aovx/test_assets.py::test_ota_history_loads_the_retention_window_once_then_extends_it":
        "loads the vendor's whole retention window",
    "sources/tracksolid/test_assets.py::test_partitions_match_the_world_and_reruns_change_nothing":
        "loads days twice",
    "sources/navixy/test_assets.py::test_reruns_change_nothing": "loads days twice",
    "push/test_receiver.py::test_sigkill_mid_load_loses_no_acknowledged_message":
        "the receiver in a subprocess under load, killed and restarted",
    "sandbox/test_tracksolid_push.py::test_a_day_of_the_world_is_pushed_in_batches_and_landed_once_each":
        "a day of 60 devices pushed over HTTP",
    "push/test_push_settings_and_cli.py::test_sandbox_push_command_lands_a_day_of_a_small_world":
        "the World's day through the CLI",
    "sources/tracksolid/test_push_assets.py::test_a_days_landed_messages_load_equal_to_the_world":
        "three World days of every push kind landed, then every push table loaded",
    "sources/tracksolid/test_push_assets.py::test_a_day_reloaded_after_late_messages_gains_them":
        "a day of pushes loaded twice",
    "ingest/test_bad_input.py::test_a_bad_field_costs_its_row_at_most":
        "a matrix: every raw table x three kinds of bad field, one load each",
}
# Fixtures that cost seconds to build: the tests using them are slow wherever they are.
SLOW_FIXTURES = {"month": "thirty days of a 60-device World",
                 "shared_demo": "the demo of 20 devices over two days, then dbt build (once per session)",
                 "week": "a week of every vendor loaded from the sandboxes, then replayed from the archive"}
TESTS_ROOT = os.path.dirname(os.path.abspath(__file__))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    collected: set[str] = set()
    for item in items:
        path = os.path.relpath(str(item.path), TESTS_ROOT).replace(os.sep, "/")
        test = f"{path}::{getattr(item, 'originalname', item.name)}"
        collected |= {path, test}
        if path in SLOW or test in SLOW or SLOW_FIXTURES.keys() & set(item.fixturenames):
            item.add_marker(pytest.mark.slow)
    # A test renamed or moved must not slip into the fast run unnoticed.
    stale = [key for key in SLOW if key.split("::")[0] in collected and key not in collected]
    if stale:
        raise pytest.UsageError(f"conftest.SLOW names tests that do not exist (renamed or moved?): {stale}")
