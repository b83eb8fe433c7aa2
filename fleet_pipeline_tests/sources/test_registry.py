"""The vendor registry: every package under sources/ is in it, whole, and live-mode detection
follows it (a vendor whose variables are set can never leave the pipeline in sandbox mode, where
its real rows would land in data/sandbox.duckdb beside synthetic ones)."""

from __future__ import annotations

import pkgutil

import pytest
from dagster import AssetsDefinition

import fleet_pipeline.sources
from fleet_pipeline import settings
from fleet_pipeline.automation.jobs import vendor_jobs
from fleet_pipeline.ingest.vendor_resource import VendorResource
from fleet_pipeline.sources.registry import BY_NAME, VENDORS

SANDBOX_URL = "http://127.0.0.1:8900"
PACKAGES = sorted(info.name for info in pkgutil.iter_modules(fleet_pipeline.sources.__path__) if info.ispkg)
CREDENTIALS = [(spec.name, var) for spec in VENDORS for var in spec.credential_vars]


def test_every_package_under_sources_is_one_line_of_the_registry():
    assert PACKAGES, "no vendor package found under fleet_pipeline/sources"
    assert sorted(BY_NAME) == PACKAGES, "a package under sources/ without its line in registry.py (or the reverse)"
    assert len(BY_NAME) == len(VENDORS), "two registry lines share a name"
    for name in PACKAGES:
        package = __import__(f"fleet_pipeline.sources.{name}", fromlist=["SPEC"])
        assert package.SPEC is BY_NAME[name], f"sources/{name}/__init__.py must export the SPEC the registry lists"


def test_settings_read_every_registered_vendor():
    assert list(settings.VENDOR_SETTINGS) == [spec.name for spec in VENDORS]
    for spec in VENDORS:
        assert all(read in settings.READERS for read in spec.readers), f"{spec.name}: a reader is not checked at load"


@pytest.mark.parametrize("spec", VENDORS, ids=lambda spec: spec.name)
def test_every_part_of_the_spec_is_there(spec):
    assert spec.env_prefix.endswith("_") and spec.credential_vars
    assert all(var.startswith(spec.env_prefix) for var in spec.credential_vars)
    others = [other.env_prefix for other in VENDORS if other is not spec]
    assert not any(p.startswith(spec.env_prefix) or spec.env_prefix.startswith(p) for p in others), \
        f"{spec.name}: its variable prefix overlaps another vendor's"

    resource = spec.resource_class()
    assert issubclass(resource, VendorResource)
    assets = spec.load_assets()
    assert assets and all(isinstance(a, AssetsDefinition) for a in assets)
    for asset in assets:
        assert set(asset.group_names_by_key.values()) == {spec.name}
        assert spec.resource_key in asset.required_resource_keys, f"{asset.key} does not use {spec.resource_key}"

    jobs = vendor_jobs(spec, assets)
    assert {job.name for job in jobs} <= {f"{spec.name}_snapshots", f"{spec.name}_daily"} and jobs
    snapshot = [a for a in assets if a.partitions_def is None]
    assert (f"{spec.name}_snapshots" in {job.name for job in jobs}) == bool(snapshot)

    assert callable(spec.sandbox_module().make_server)


@pytest.mark.parametrize("spec", VENDORS, ids=lambda spec: spec.name)
def test_the_sandbox_credentials_of_a_vendor_switch_the_pipeline_to_live_mode(spec, tmp_path):
    env = spec.sandbox_env(SANDBOX_URL)
    assert env and all(name.startswith(spec.env_prefix) for name in env), env
    env = {**env, "FLEET_DATA_DIR": str(tmp_path)}
    assert settings.configuration_problems(env) == []
    assert spec.settings(env) is not None
    assert settings.configured_vendors(env) == [spec.name]
    assert not settings.is_sandbox_mode(env)
    assert settings.duckdb_path(env) == tmp_path / "fleet.duckdb"


@pytest.mark.parametrize(("vendor", "variable"), CREDENTIALS, ids=[f"{v}-{var}" for v, var in CREDENTIALS])
def test_one_credential_alone_is_live_mode_or_a_configuration_error_never_the_sandbox(vendor, variable):
    env = {variable: "a-value"}
    problems = settings.configuration_problems(env)
    if problems:
        assert any(vendor_var in " ".join(problems) for vendor_var in BY_NAME[vendor].credential_vars)
    else:
        assert settings.configured_vendors(env) == [vendor] and not settings.is_sandbox_mode(env)
