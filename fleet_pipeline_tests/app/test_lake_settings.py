"""The distributed warehouse's settings: FLEET_WAREHOUSE, FLEET_LAKE_*, FLEET_DUCKDB_EXTENSIONS and
FLEET_SERVING_POSTGRES are read, checked with one line each, and never print a password."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from fleet_pipeline import settings
from fleet_pipeline.ingest.warehouse import LAKE_EXTENSIONS, extension_file, warehouse_resource

LAKE = {"FLEET_WAREHOUSE": "ducklake", "FLEET_LAKE_CATALOG": "postgresql://fleet:s3cret@db.internal:5433/lake",
        "FLEET_LAKE_DATA_PATH": "/shared/lake"}


def test_without_any_variable_the_warehouse_is_the_file_as_before(tmp_path):
    env = {"FLEET_DATA_DIR": str(tmp_path)}
    assert settings.warehouse_mode(env) == "duckdb"
    assert settings.lake_settings(env) is None and settings.serving_postgres(env) is None
    assert settings.configuration_problems(env) == []
    resource = warehouse_resource(env)
    assert resource.lake is None and resource.database == str(tmp_path / "sandbox.duckdb")


def test_the_lake_is_read_with_its_catalog_as_libpq_and_its_path_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env = {**LAKE, "FLEET_DATA_DIR": str(tmp_path), "FLEET_LAKE_DATA_PATH": "relative/lake",
           "FLEET_LAKE_CATALOG": "postgresql://fleet:p%40ss%20word@db.internal:5433/lake?sslmode=require"}
    lake = settings.lake_settings(env)
    assert lake is not None and settings.configuration_problems(env) == []
    assert lake.data_path == str(tmp_path / "relative" / "lake") + "/"
    assert lake.catalog_libpq == ("host=db.internal port=5433 user=fleet password='p@ss word' dbname=lake "
                                  "sslmode=require")
    assert "p%40ss" not in lake.catalog_shown and "***" in lake.catalog_shown
    assert lake.extension_directory == tmp_path / "duckdb_extensions" and lake.extensions_from == "wheels"
    assert settings.lake_settings({**env, "FLEET_LAKE_DATA_PATH": "s3://bucket/lake"}).data_path == "s3://bucket/lake/"


@pytest.mark.parametrize(("change", "message"), [
    ({"FLEET_WAREHOUSE": "motherduck"}, "FLEET_WAREHOUSE must be one of duckdb, ducklake, got 'motherduck'"),
    ({"FLEET_LAKE_CATALOG": ""}, "FLEET_WAREHOUSE=ducklake needs FLEET_LAKE_CATALOG"),
    ({"FLEET_LAKE_CATALOG": "", "FLEET_LAKE_DATA_PATH": ""},
     "FLEET_WAREHOUSE=ducklake needs FLEET_LAKE_CATALOG and FLEET_LAKE_DATA_PATH"),
    ({"FLEET_WAREHOUSE": "duckdb"}, "FLEET_LAKE_CATALOG and FLEET_LAKE_DATA_PATH set but FLEET_WAREHOUSE is not ducklake"),
    ({"FLEET_LAKE_CATALOG": "mysql://fleet:s3cret@db/lake"}, "FLEET_LAKE_CATALOG must be a postgresql://"),
    ({"FLEET_LAKE_CATALOG": "postgresql://fleet:s3cret@db.internal:99999/lake"}, "FLEET_LAKE_CATALOG has an invalid port"),
    ({"FLEET_LAKE_CATALOG": "postgresql://fleet:s3cret@db.internal"}, "FLEET_LAKE_CATALOG must name a host and a database"),
    ({"FLEET_DUCKDB_EXTENSIONS": "internet"}, "FLEET_DUCKDB_EXTENSIONS must be one of wheels, repository"),
    ({"FLEET_LAKE_RETENTION_DAYS": "0"}, "FLEET_LAKE_RETENTION_DAYS must be between 1 and 3650"),
    ({"FLEET_SERVING_POSTGRES": "http://bi:s3cret@host/db"}, "FLEET_SERVING_POSTGRES must be a postgresql://"),
])
def test_a_bad_setting_is_one_line_naming_the_variable_and_never_the_password(change, message):
    problems = settings.configuration_problems({**LAKE, **change})
    assert len(problems) == 1 and problems[0].startswith(message), problems
    assert "s3cret" not in problems[0]


def test_in_lake_mode_the_resource_names_the_catalog_variable_not_its_value(tmp_path, monkeypatch):
    monkeypatch.setenv("FLEET_LAKE_CATALOG", LAKE["FLEET_LAKE_CATALOG"])
    resource = warehouse_resource({**LAKE, "FLEET_DATA_DIR": str(tmp_path)})
    assert "s3cret" not in repr(resource._get_non_default_public_field_values())  # what the UI shows
    # A run resolves the variable when it initializes the resource.
    lake = resource.process_config_and_initialize().lake
    assert lake is not None and lake.catalog == LAKE["FLEET_LAKE_CATALOG"] and lake.data_path == "/shared/lake/"


def test_the_extension_wheels_ship_the_running_duckdb_version():
    for name in LAKE_EXTENSIONS:
        path = extension_file(name)
        assert path.exists() and Path(path).parent.name == f"v{duckdb.__version__}"


LISTING = """
import fleet_pipeline.definitions as module
from dagster import Definitions
# Dagster's loaders refuse a module with more than one Definitions object at module scope.
print([name for name, value in vars(module).items() if isinstance(value, Definitions)])
print(sorted(job.name for job in module.defs.jobs), sorted(s.name for s in module.defs.schedules))
"""


def _listing(env: dict[str, str]) -> str:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("FLEET_WAREHOUSE", "FLEET_LAKE_"))}
    done = subprocess.run([sys.executable, "-c", LISTING], env={**clean, **env}, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_only_the_lake_mode_defines_the_maintenance_job_in_the_one_definitions_object(tmp_path):
    # No connection is made when the definitions load: the catalog need not exist for this.
    with_lake = _listing({**LAKE, "FLEET_DATA_DIR": str(tmp_path)})
    without = _listing({"FLEET_DATA_DIR": str(tmp_path)})
    assert with_lake.splitlines()[0] == "['defs']" and without.splitlines()[0] == "['defs']"
    assert "'lake_maintenance'" in with_lake and "'lake_maintenance_daily'" in with_lake
    assert "lake_maintenance" not in without


def test_the_code_location_loads_in_the_lake_mode_as_the_webserver_loads_it(tmp_path):
    # Dagster's loader (webserver, daemon, `dagster` commands) refuses a module with two Definitions
    # objects; `fleet-pipeline demo` imports `defs` by name and would not notice. Nothing connects to
    # the catalog while the definitions are built, so an unreachable one is fine here.
    import os
    import subprocess
    import sys

    env = {**os.environ, **LAKE, "FLEET_DATA_DIR": str(tmp_path), "DAGSTER_HOME": str(tmp_path / "home")}
    code = ("from dagster._core.workspace.autodiscovery import loadable_targets_from_python_module as load\n"
            "targets = load('fleet_pipeline.definitions', None)\n"
            "jobs = {job.name for job in targets[0].target_definition.resolve_all_job_defs()}\n"
            "print(len(targets), 'lake_maintenance' in jobs, 'all_daily' in jobs)")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["1", "True", "True"]
