"""One demo warehouse per pytest session, shared by the test files that look at what the demo made.

`fleet-pipeline demo --days 2` (20 devices, seed 42, the Tracksolid devices configured in the
World's zone) then `dbt build` take minutes on the shared cores; the KPI marts, the dbt models and
the UI all test the same demo, so it is built once. The xdist workers of a session share the
parent of their temporary folders: the first worker to take the lock there builds the demo, the
marker written last tells the others it is complete, and a failure left there makes them fail
with the first worker's error instead of building it again. A single-file run, or one without
xdist, builds it in its own temporary folder.

The shared folder is read, never written: a test that writes (dbt runs, the UI and its daemon, a
second demo) works on its own copy (`SharedDemo.copy_to`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path

import duckdb
import pytest
from filelock import FileLock

from fleet_pipeline import settings
from fleet_pipeline.sandbox.world import kpis

REPO = Path(__file__).resolve().parents[1]
DBT_PROJECT = REPO / "dbt_models"
BIN = Path(sys.executable).parent
N_DEVICES = 20
SEED = 42
DEMO_DAYS = 2
# The Tracksolid devices drive in Lyon like every device of the World: configured in its zone
# (Navixy's carry their vendor's, the same). The UI and the UTC-day marts do not depend on it.
CONFIGURED_ZONE = kpis.FLEET_TIME_ZONE
WAREHOUSE_FILE = "sandbox.duckdb"
# The shared build's own dbt output, of no use to a copy.
DBT_OUTPUT = ("dbt_target", "dbt_logs")
# The demo takes 2-3 minutes on a quiet machine and over 7 under the shared load.
COMMAND_TIMEOUT_S = 1200


def run(cmd: list[str], env: Mapping[str, str], cwd: Path) -> None:
    done = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    assert done.returncode == 0, f"{cmd[0]} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"


def run_dbt(output_dir: Path, db: Path, env: Mapping[str, str], *args: str) -> None:
    """dbt on the warehouse file ``db``, its target/ and logs/ in ``output_dir`` (the repository stays clean)."""
    dbt_env = {**env, "DBT_PROFILES_DIR": str(DBT_PROJECT), "FLEET_DUCKDB_PATH": str(db)}
    run([str(BIN / "dbt"), *args, "--target-path", str(output_dir / "dbt_target"),
         "--log-path", str(output_dir / "dbt_logs")], dbt_env, DBT_PROJECT)


def login_shell_path() -> str:
    """The PATH of a new login shell: what `make demo` and `make ui` see typed into a fresh terminal."""
    done = subprocess.run(["env", "-i", "HOME=" + os.environ.get("HOME", "/root"), "bash", "-lc", "echo $PATH"],
                          capture_output=True, text=True, timeout=30)
    return done.stdout.strip().splitlines()[-1]


def demo_env(data_dir: Path) -> dict[str, str]:
    """A person's shell for the demo on ``data_dir``: none of the test run's FLEET_, DAGSTER_ or vendor
    variables (vendor credentials would switch to live mode), no activated venv."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith((*settings.VENDOR_ENV_PREFIXES, "FLEET_", "DAGSTER_")) and k != "VIRTUAL_ENV"}
    env.update(PATH=login_shell_path(), FLEET_DATA_DIR=str(data_dir), DAGSTER_HOME=str(data_dir / "dagster_home"),
               FLEET_SANDBOX_DEVICES=str(N_DEVICES), FLEET_SANDBOX_SEED=str(SEED),
               FLEET_DEFAULT_TIME_ZONE=CONFIGURED_ZONE, FLEET_STEP_RETRIES="0")
    return env


@dataclass(frozen=True)
class SharedDemo:
    data_dir: Path
    days: list[date]          # the demo's UTC days, oldest first
    extracted_from: datetime  # when the demo started (naive UTC): fixes the devices sent later were not served yet

    @property
    def warehouse(self) -> Path:
        return self.data_dir / WAREHOUSE_FILE

    def copy_to(self, folder: Path) -> Path:
        """The whole data folder (warehouse, Dagster instance, serving copy, report) copied into
        ``folder``/data, for a test that writes; the staging views name the warehouse's catalog,
        so the file keeps its name."""
        return Path(shutil.copytree(self.data_dir, folder / "data", ignore=shutil.ignore_patterns(*DBT_OUTPUT)))


def shared_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder the session's xdist workers share (the parent of their own), else the session's own."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def build_once(root: Path) -> SharedDemo:
    """The session's demo under ``root``: built here unless a worker built it or failed building it."""
    data_dir, marker, failure = root / "shared_demo", root / "shared_demo.json", root / "shared_demo.failed"
    with FileLock(str(root / "shared_demo.lock")):
        if failure.exists():
            pytest.fail(f"the shared demo failed in another pytest worker; its error:\n{failure.read_text()}",
                        pytrace=False)
        if not marker.exists():
            try:
                built = _build(data_dir)
            except BaseException as error:  # a timeout or an interrupt too: the other workers must not wait again
                worker = os.environ.get("PYTEST_XDIST_WORKER", "the only worker")
                failure.write_text(f"({worker}, building in {data_dir}) {type(error).__name__}: {error}")
                raise
            scratch = marker.with_suffix(".partial")
            scratch.write_text(json.dumps({"extracted_from": built.extracted_from.isoformat(),
                                           "days": [d.isoformat() for d in built.days]}))
            scratch.replace(marker)
            return built
    recorded = json.loads(marker.read_text())
    return SharedDemo(data_dir=data_dir, days=[date.fromisoformat(d) for d in recorded["days"]],
                      extracted_from=datetime.fromisoformat(recorded["extracted_from"]))


def _build(data_dir: Path) -> SharedDemo:
    # A worker killed mid-build left no marker: what it wrote is started again from nothing.
    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir()
    env = demo_env(data_dir)
    extracted_from = datetime.now(timezone.utc).replace(tzinfo=None)
    # The venv's commands by absolute path, as `make demo` calls them.
    run([str(BIN / "fleet-pipeline"), "demo", "--days", str(DEMO_DAYS)], env, REPO)
    db = data_dir / WAREHOUSE_FILE
    assert db.exists(), f"the demo wrote no warehouse at {db}"
    run_dbt(data_dir, db, env, "build")
    with duckdb.connect(str(db), read_only=True) as con:
        days = [r[0] for r in con.execute(
            "select distinct partition_date from raw_tracksolid.track_points order by 1").fetchall()]
    assert len(days) == DEMO_DAYS, days
    return SharedDemo(data_dir=data_dir, days=days, extracted_from=extracted_from)
