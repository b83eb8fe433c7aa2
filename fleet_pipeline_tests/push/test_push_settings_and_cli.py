"""The push receiver's settings and its two commands (`push-receiver`, `sandbox push`)."""

from __future__ import annotations

import subprocess
import sys

from fleet_pipeline import settings
from fleet_pipeline.cli import main
from fleet_pipeline.push.landing import landing_root, read_landed
from fleet_pipeline.sources.tracksolid.settings import push_max_body_bytes, push_token
from fleet_pipeline_tests.push.running import TOKEN, receiver_thread


def test_unset_push_variables_change_nothing_and_bad_ones_are_one_line_each(tmp_path):
    assert push_token({}) is None
    assert push_max_body_bytes({}) == 1024 * 1024
    assert landing_root({"FLEET_DATA_DIR": str(tmp_path)}) == tmp_path / "push_landing"
    assert settings.configuration_problems({}) == []
    secret = "short 1"
    problems = settings.configuration_problems({"FLEET_TRACKSOLID_PUSH_TOKEN": secret,
                                                "FLEET_TRACKSOLID_PUSH_MAX_BODY_BYTES": "lots"})
    assert len(problems) == 2 and all("\n" not in problem for problem in problems)
    assert problems[0].startswith("FLEET_TRACKSOLID_PUSH_TOKEN must be") and secret not in problems[0]
    assert problems[1] == "FLEET_TRACKSOLID_PUSH_MAX_BODY_BYTES must be a number of bytes, got 'lots'"
    assert "between 4096 and" in settings.configuration_problems({"FLEET_TRACKSOLID_PUSH_MAX_BODY_BYTES": "10"})[0]


def test_the_receiver_command_refuses_to_start_without_a_token(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "FLEET_DATA_DIR": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "fleet_pipeline.cli", "push-receiver"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "FLEET_TRACKSOLID_PUSH_TOKEN is not set" in result.stderr


def test_sandbox_push_command_lands_a_day_of_a_small_world(tmp_path, capsys):
    with receiver_thread(tmp_path) as (url, _):
        code = main(["sandbox", "push", "--url", url, "--day", "2026-11-19", "--token", TOKEN, "--devices", "12",
                     "--encoding", "json"])
    out = capsys.readouterr().out
    assert code == 0, out
    pushed = int(out.split()[1].replace(",", ""))
    assert pushed > 0 and f"pushed {pushed:,} of {pushed:,} messages of 2026-11-19" in out
    assert len({line["msg_id"] for line in read_landed(tmp_path)}) == pushed
