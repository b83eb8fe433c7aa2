"""Configuration: sandbox vs live, partial credentials, paths."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from fleet_pipeline import settings
from fleet_pipeline.sources.navixy import settings as navixy_config
from fleet_pipeline.sources.tracksolid import settings as tracksolid_config

BIN = Path(sys.executable).parent
CREDS = {
    "TRACKSOLID_APP_KEY": "key",
    "TRACKSOLID_APP_SECRET": "s3cret-value",
    "TRACKSOLID_USER_ID": "fleetco",
    "TRACKSOLID_USER_PASSWORD": "pa55word",
}


def test_no_credentials_means_sandbox_and_a_separate_database(tmp_path):
    env = {"FLEET_DATA_DIR": str(tmp_path)}
    assert tracksolid_config.tracksolid_settings(env) is None
    assert settings.is_sandbox_mode(env)
    assert settings.duckdb_path(env) == tmp_path / "sandbox.duckdb"


def test_full_credentials_mean_live_with_the_eu_node_and_a_live_database(tmp_path):
    env = {**CREDS, "FLEET_DATA_DIR": str(tmp_path)}
    live = tracksolid_config.tracksolid_settings(env)
    assert live is not None
    assert live.base_url == tracksolid_config.TRACKSOLID_EU_NODE
    assert live.target_account == "fleetco"
    assert settings.duckdb_path(env) == tmp_path / "fleet.duckdb"
    assert "s3cret-value" not in repr(live) and "pa55word" not in repr(live)


@pytest.mark.parametrize("missing", sorted(CREDS))
def test_partial_credentials_name_what_is_missing(missing):
    env = {k: v for k, v in CREDS.items() if k != missing}
    with pytest.raises(settings.ConfigError) as error:
        tracksolid_config.tracksolid_settings(env)
    assert missing in str(error.value)
    assert "s3cret-value" not in str(error.value) and "pa55word" not in str(error.value)


def test_base_url_without_credentials_is_an_error():
    with pytest.raises(settings.ConfigError, match="TRACKSOLID_BASE_URL is set"):
        tracksolid_config.tracksolid_settings({"TRACKSOLID_BASE_URL": "http://127.0.0.1:1/route/rest"})


def test_bad_values_are_explained():
    with pytest.raises(settings.ConfigError, match="TRACKSOLID_MILEAGE_UNIT"):
        tracksolid_config.tracksolid_settings({"TRACKSOLID_MILEAGE_UNIT": "miles"})
    with pytest.raises(settings.ConfigError, match="http"):
        tracksolid_config.tracksolid_settings({**CREDS, "TRACKSOLID_BASE_URL": "eu-open.tracksolidpro.com"})
    with pytest.raises(settings.ConfigError, match="FLEET_SANDBOX_DEVICES"):
        settings.sandbox_settings({"FLEET_SANDBOX_DEVICES": "many"})
    with pytest.raises(settings.ConfigError, match="FLEET_PARTITIONS_START"):
        settings.partitions_start({"FLEET_PARTITIONS_START": "yesterday"})


def test_explicit_duckdb_path_wins(tmp_path):
    target = tmp_path / "x" / "w.duckdb"
    assert settings.duckdb_path({"FLEET_DUCKDB_PATH": str(target)}) == target


def test_navixy_accepts_an_api_key_or_a_login_and_password():
    assert navixy_config.navixy_settings({}) is None
    keyed = navixy_config.navixy_settings({"NAVIXY_API_KEY": "k3y-value"})
    assert keyed.api_key == "k3y-value" and keyed.base_url == navixy_config.NAVIXY_EU_API
    assert "k3y-value" not in repr(keyed)
    login = navixy_config.navixy_settings({"NAVIXY_LOGIN": "me", "NAVIXY_PASSWORD": "pw", "NAVIXY_BASE_URL": "http://x/api-v2/"})
    assert (login.login, login.base_url) == ("me", "http://x/api-v2")
    with pytest.raises(settings.ConfigError, match="NAVIXY_PASSWORD"):
        navixy_config.navixy_settings({"NAVIXY_LOGIN": "me"})
    with pytest.raises(settings.ConfigError, match="NAVIXY_BASE_URL is set"):
        navixy_config.navixy_settings({"NAVIXY_BASE_URL": "http://x"})


def test_any_vendor_credentials_switch_the_whole_pipeline_to_live_mode(tmp_path):
    env = {"NAVIXY_API_KEY": "k", "FLEET_DATA_DIR": str(tmp_path)}
    assert settings.configured_vendors(env) == ["navixy"]
    assert not settings.is_sandbox_mode(env)
    assert settings.duckdb_path(env) == tmp_path / "fleet.duckdb"


def test_partitions_start_at_the_vendors_retention_unless_configured():
    # Tracksolid's track.list reaches back 3 months (docs/vendor-apis/FIELD-NOTES.md): older days cannot be loaded.
    today = date(2026, 12, 4)
    assert settings.partitions_start({}, today=today) == "2026-09-05"
    assert settings.partitions_start({"FLEET_PARTITIONS_START": "2026-11-01"}, today=today) == "2026-11-01"


BAD_SETTINGS = {
    "FLEET_LATE_DATA_DAYS": "three",
    "FLEET_STEP_RETRIES": "two",
    "FLEET_STEP_RETRY_DELAY_S": "soon",
    "FLEET_SANDBOX_DEVICES": "0",
    "FLEET_SCHEDULES_RUNNING": "maybe",
    "FLEET_PARTITIONS_START": "yesterday",
    "TRACKSOLID_MILEAGE_UNIT": "miles",
}


def test_every_bad_setting_is_reported_together_one_message_each():
    problems = settings.configuration_problems(BAD_SETTINGS)
    assert len(problems) == len(BAD_SETTINGS)
    for name, value in BAD_SETTINGS.items():
        [message] = [p for p in problems if p.startswith(name)]
        assert "\n" not in message and (value in message or name == "FLEET_SANDBOX_DEVICES")
    with pytest.raises(settings.ConfigError) as error:
        settings.check_configuration(BAD_SETTINGS)
    assert str(error.value).count("\n") == len(BAD_SETTINGS)
    assert settings.configuration_problems({}) == []


def _clean_env(tmp_path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith((*settings.VENDOR_ENV_PREFIXES, "FLEET_", "DAGSTER_"))}
    return {**env, "FLEET_DATA_DIR": str(tmp_path), "DAGSTER_HOME": str(tmp_path / "home"), **extra}


def test_a_bad_late_data_window_fails_config_and_definition_loading_not_the_schedule_tick(tmp_path):
    env = _clean_env(tmp_path, FLEET_LATE_DATA_DAYS="three")
    config = subprocess.run([str(BIN / "fleet-pipeline"), "config"], env=env, capture_output=True, text=True,
                            timeout=120)
    assert config.returncode != 0
    assert "FLEET_LATE_DATA_DAYS must be a whole number of days, got 'three'" in config.stderr + config.stdout
    loading = subprocess.run([sys.executable, "-c", "import fleet_pipeline.definitions"], env=env,
                             capture_output=True, text=True, timeout=300)
    assert loading.returncode != 0
    assert "fleet_pipeline: configuration error: FLEET_LATE_DATA_DAYS must be a whole number of days" in loading.stderr


def test_only_a_configuration_error_loses_its_traceback(monkeypatch, capsys):
    """The brief report is for bad settings alone: any other uncaught error keeps Python's traceback."""
    from fleet_pipeline.ingest.env import report_config_errors_briefly

    seen: list[BaseException] = []
    monkeypatch.setattr(sys, "excepthook", lambda kind, error, trace: seen.append(error))
    report_config_errors_briefly()
    report_config_errors_briefly()  # installing twice must not report twice
    wrapped = RuntimeError("while importing the definitions")
    wrapped.__cause__ = settings.ConfigError("FLEET_LATE_DATA_DAYS must be a whole number of days, got 'three'")
    sys.excepthook(RuntimeError, wrapped, None)
    bug = KeyError("a real bug")
    sys.excepthook(KeyError, bug, None)
    assert capsys.readouterr().err == (
        "fleet_pipeline: configuration error: FLEET_LATE_DATA_DAYS must be a whole number of days, got 'three'\n")
    assert seen == [bug]


def test_kpi_settings_default_to_the_documented_values_and_refuse_bad_ones():
    # docs/configuration.md: UTC, Mon-Fri 08:00-18:00, 2 days offline, 7 days not moved, 90 km/h.
    assert settings.default_time_zone({}) == "UTC"
    assert settings.working_hours({}) == settings.WorkingHours(frozenset({1, 2, 3, 4, 5}), 480, 1080)
    assert (settings.offline_days({}), settings.long_stop_days({}), settings.speed_limit_kmh({})) == (2, 7, 90)
    assert settings.working_hours({"FLEET_WORKING_HOURS": "Mon,Wed-Thu,Sat 07:30-16:15"}) == settings.WorkingHours(
        frozenset({1, 3, 4, 6}), 450, 975)
    bad = {"FLEET_DEFAULT_TIME_ZONE": "Mars/Olympus", "FLEET_WORKING_HOURS": "Fri-Mon 08:00-18:00",
           "FLEET_OFFLINE_DAYS": "0", "FLEET_LONG_STOP_DAYS": "week", "FLEET_SPEED_LIMIT_KMH": "900"}
    problems = settings.configuration_problems(bad)
    assert len(problems) == len(bad)
    for name, value in bad.items():
        [message] = [p for p in problems if p.startswith(name)]
        assert value in message and "\n" not in message
    for hours in ("Mon-Fri", "Mon-Fri 18:00-08:00", "Weekdays 08:00-18:00", "Mon-Fri 8h-18h"):
        with pytest.raises(settings.ConfigError, match="FLEET_WORKING_HOURS"):
            settings.working_hours({"FLEET_WORKING_HOURS": hours})


def test_dbt_reads_the_kpi_settings_with_the_same_defaults():
    # dbt_project.yml reads each variable itself (so a plain `dbt build` honours it too): its
    # fallbacks must be the settings' defaults, or dbt and the validated configuration disagree.
    project = (settings.project_root() / "dbt_models" / "dbt_project.yml").read_text()
    fallbacks = dict(re.findall(r"env_var\('(FLEET_\w+)', '([^']*)'\)", project))
    assert fallbacks == {
        "FLEET_DEFAULT_TIME_ZONE": settings.DEFAULT_TIME_ZONE, "FLEET_WORKING_HOURS": settings.DEFAULT_WORKING_HOURS,
        "FLEET_OFFLINE_DAYS": str(settings.DEFAULT_OFFLINE_DAYS), "FLEET_LONG_STOP_DAYS": str(settings.DEFAULT_LONG_STOP_DAYS),
        "FLEET_SPEED_LIMIT_KMH": str(settings.DEFAULT_SPEED_LIMIT_KMH)}


def _effective(options: str) -> dict[str, str]:
    """jemalloc's options as it reads them: comma-separated, a later value of a key wins (polars puts
    its own defaults in front of what it finds)."""
    return dict(option.split(":", 1) for option in options.split(",") if option)


def test_the_package_sets_the_allocators_to_give_memory_back_unless_the_user_did():
    """polars' jemalloc and pyarrow's pool read their settings when they load: importing the package
    (before the code location imports polars) sets them, and leaves a value the user set alone."""
    show = ("import os, fleet_pipeline, polars; "
            "print(os.environ['_RJEM_MALLOC_CONF'], os.environ['ARROW_DEFAULT_MEMORY_POOL'])")
    env = {k: v for k, v in os.environ.items() if k not in ("_RJEM_MALLOC_CONF", "ARROW_DEFAULT_MEMORY_POOL")}
    ours = subprocess.run([sys.executable, "-c", show], env=env, capture_output=True, text=True, timeout=60)
    jemalloc, pool = ours.stdout.split()
    effective = _effective(jemalloc)
    assert (effective["dirty_decay_ms"], effective["muzzy_decay_ms"]) == ("0", "0"), jemalloc
    assert pool == "system", ours.stderr[-2000:]
    theirs = subprocess.run([sys.executable, "-c", show], capture_output=True, text=True, timeout=60,
                            env={**env, "_RJEM_MALLOC_CONF": "dirty_decay_ms:2000", "ARROW_DEFAULT_MEMORY_POOL": "mimalloc"})
    jemalloc, pool = theirs.stdout.split()
    assert _effective(jemalloc)["dirty_decay_ms"] == "2000" and pool == "mimalloc", theirs.stderr[-2000:]
