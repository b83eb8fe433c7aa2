"""A step's stdout and stderr with the project's instance: in Dagster's compute-log files (what the UI
shows) and on the terminal, captured through ``tee`` without Dagster's tail and watcher processes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from fleet_pipeline.instance import DAGSTER_YAML
from fleet_pipeline_tests.app.test_cli import _clean_env

STEP = textwrap.dedent("""
    import subprocess, sys
    import dagster._core.execution.compute_logs as dagster_capture
    from dagster import DagsterInstance, asset, materialize

    def no_tail(*args, **kwargs):
        raise AssertionError("Dagster's tail capture was used")

    dagster_capture.execute_posix_tail = no_tail

    @asset
    def noisy() -> None:
        print("printed by the step", flush=True)
        print("warned by the step", file=sys.stderr, flush=True)
        subprocess.run(["echo", "echoed by a child process"], check=True)

    with DagsterInstance.get() as instance:
        result = materialize([noisy], instance=instance)
        print("manager:", type(instance.compute_log_manager).__name__, "run:", result.run_id)
    """)


def test_a_steps_output_reaches_its_compute_log_files_and_the_terminal(tmp_path: Path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(DAGSTER_YAML)
    env = {**_clean_env(tmp_path), "DAGSTER_HOME": str(home)}
    done = subprocess.run([sys.executable, "-c", STEP], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]

    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("manager: TeeComputeLogManager run: "), done.stdout
    run_id = last.rsplit(" ", 1)[1]
    # The terminal still shows the step's output, its child's included.
    assert "printed by the step" in done.stdout and "echoed by a child process" in done.stdout
    assert "warned by the step" in done.stderr
    # Where Dagster's local manager keeps them, so the UI reads them as before.
    logs = home / "storage" / run_id / "compute_logs"
    [out] = logs.glob("*.out")
    [err] = logs.glob("*.err")
    assert out.read_text().splitlines() == ["printed by the step", "echoed by a child process"]
    assert "warned by the step" in err.read_text()
    assert list(logs.glob("*.complete")), "the capture was not marked complete"
