"""The dbt project (``dbt_models/``) as Dagster assets: staging, core and marts on the warehouse.

Incremental models are partitioned by UTC day and receive the partition window as
``--vars {min_date, max_date}``, so a one-day run rebuilds one day. Everything else (staging views,
dimensions built from snapshots) is unpartitioned: Dagster does not allow two partitionings in one
multi-asset, so the project is split into two ``@dbt_assets`` selections.

The manifest is produced when the code location loads if it is missing or older than the project's
sources, so a fresh clone (no ``target/``) and a project being edited both load without a manual
``dbt parse``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from dagster import AssetExecutionContext, AssetKey, AssetsDefinition, BackfillPolicy
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCliResource, DbtProject, dbt_assets

from fleet_pipeline import settings
from fleet_pipeline.partitions import daily_partitions
from fleet_pipeline.reporting.key_figures import Window, with_key_figures
from fleet_pipeline.source_assets import OWNERS, WRITER_POOL
from fleet_pipeline.warehouse import exclusive_access

DBT_PROJECT_DIR = settings.project_root() / "dbt_models"
LAYERS = ("staging", "core", "marts")
PARTITIONED_SELECT = "config.materialized:incremental"
# Files whose change makes the manifest stale.
_PROJECT_SOURCES = ("models", "macros", "seeds", "snapshots", "tests", "analyses")
_PROJECT_FILES = ("dbt_project.yml", "profiles.yml", "packages.yml", "dependencies.yml")


class DbtParseError(RuntimeError):
    """``dbt parse`` failed: the project cannot be loaded (its message names the model or file)."""


def dbt_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Variables every dbt invocation needs: the warehouse of this pipeline, no telemetry, logs in
    the project's git-ignored ``logs/``."""
    return {
        "FLEET_DUCKDB_PATH": str(settings.duckdb_path(env)),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
        "DBT_LOG_PATH": str(DBT_PROJECT_DIR / "logs"),
    }


def _newest_source_mtime(project_dir: Path) -> float:
    newest = 0.0
    for name in _PROJECT_FILES:
        path = project_dir / name
        if path.exists():
            newest = max(newest, path.stat().st_mtime)
    for folder in _PROJECT_SOURCES:
        root = project_dir / folder
        if root.is_dir():
            for path in root.rglob("*"):
                if path.is_file():
                    newest = max(newest, path.stat().st_mtime)
    return newest


def manifest_is_stale(project: DbtProject) -> bool:
    manifest = project.manifest_path
    if not manifest.exists():
        return True
    return manifest.stat().st_mtime < _newest_source_mtime(Path(project.project_dir))


def parse_project(project: DbtProject) -> Path:
    """Run ``dbt parse`` and move its manifest into the project's target path.

    Each parse writes into its own folder and the manifest is renamed into place, so processes
    loading the code location at the same time (tests, the UI, a run) never read a partial file.
    """
    project_dir = Path(project.project_dir)
    dbt = Path(sys.executable).with_name("dbt")
    target = project_dir / project.target_path
    scratch = target / f"parse-{os.getpid()}"
    env = {
        **os.environ,
        **dbt_env(),
        "DBT_LOG_PATH": str(project_dir / "logs"),
        "DBT_TARGET_PATH": str(scratch),
        "DBT_PROFILES_DIR": str(project.profiles_dir),
    }
    try:
        completed = subprocess.run(
            [str(dbt), "parse", "--quiet", "--project-dir", str(project_dir)],
            env=env, cwd=project_dir, capture_output=True, text=True, check=False,
        )
        produced = scratch / "manifest.json"
        if completed.returncode != 0 or not produced.exists():
            detail = (completed.stdout + completed.stderr).strip()[-2000:]
            raise DbtParseError(f"dbt parse of {project_dir} failed (exit {completed.returncode}): {detail}")
        os.replace(produced, project.manifest_path)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return project.manifest_path


def load_project(project_dir: Path = DBT_PROJECT_DIR) -> DbtProject:
    """The dbt project with a current manifest: parsed now when missing or older than its sources."""
    project = DbtProject(project_dir=project_dir, profiles_dir=project_dir)
    # Not ``project.prepare_if_dev()``: under `dagster dev` it runs a bare `dbt` looked up on PATH,
    # which a new shell (no activated venv) does not have, and re-parses on every reload. The
    # staleness check below parses with the venv's own dbt, and only when a source changed.
    if manifest_is_stale(project):
        parse_project(project)
    return project


class FleetDbtTranslator(DagsterDbtTranslator):
    """dbt sources ``raw_<vendor>.<table>`` are the loaders' assets ``[raw_<vendor>, <table>]``, so
    lineage runs from the vendor API to the marts; models are grouped by layer (seeds by the layer
    schema they are loaded into) and owned by the data platform team unless dbt says otherwise."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> AssetKey:
        if dbt_resource_props["resource_type"] == "source":
            return AssetKey([dbt_resource_props["source_name"], dbt_resource_props["name"]])
        return super().get_asset_key(dbt_resource_props)

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        fqn = dbt_resource_props.get("fqn") or []
        for layer in LAYERS:
            if layer in fqn[1:-1]:
                return layer
        schema = (dbt_resource_props.get("config") or {}).get("schema")
        if schema in LAYERS:
            return schema
        return super().get_group_name(dbt_resource_props)

    def get_description(self, dbt_resource_props: Mapping[str, Any]) -> str:
        # dagster-dbt's default appends the model's raw SQL under "#### Raw SQL": Jinja a data
        # person reading the catalog cannot use; the model's code is one click away in dbt_models/.
        description = (dbt_resource_props.get("description") or "").strip()
        return description or f"dbt {dbt_resource_props['resource_type']} {dbt_resource_props['name']}"

    def get_owners(self, dbt_resource_props: Mapping[str, Any]) -> list[str] | None:
        return list(super().get_owners(dbt_resource_props) or OWNERS)


TRANSLATOR = FleetDbtTranslator(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True))


def _selected_nodes(manifest: Mapping[str, Any], partitioned: bool) -> list[str]:
    found = []
    for unique_id, node in manifest.get("nodes", {}).items():
        if node.get("resource_type") not in ("model", "seed", "snapshot"):
            continue
        incremental = node.get("config", {}).get("materialized") == "incremental"
        if incremental == partitioned:
            found.append(unique_id)
    return found


@contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    """dagster-dbt hands ``os.environ`` to the dbt process it starts; set ours for that moment."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _partition_vars(context: AssetExecutionContext) -> dict[str, str]:
    window = context.partition_time_window
    # The window is half-open; max_date is the last day in it, inclusive, as the models filter
    # `partition_date between min_date and max_date`.
    last_day = window.end.date() - timedelta(days=1)
    return {"min_date": window.start.date().isoformat(), "max_date": last_day.isoformat()}


def _dbt_build(context: AssetExecutionContext, dbt: DbtCliResource, args: list[str], window: Window) -> Iterator[Any]:
    """Run dbt, then yield its events with the marts' key figures. dbt holds DuckDB's write lock
    until it exits, so the figures can only be read once its stream has ended; the whole of it is
    this step's turn on the warehouse (a source's write waits for it, and it for that write)."""
    events: list[Any] = []
    database = settings.duckdb_path()
    with exclusive_access(database, f"dbt {args[0]} (run {context.run_id[:8]})", context.log.info):
        with _environment(dbt_env()):
            try:
                events.extend(dbt.cli(args, context=context).stream())
            except Exception:
                yield from events  # what dbt did build stays recorded; the failure follows
                raise
        keys_by_output = dict(context.assets_def.keys_by_output_name)
        figures = list(with_key_figures(
            events, keys_by_output, database, window,
            lambda key, day, metadata: context.add_asset_metadata(metadata, asset_key=key, partition_key=day)))
    yield from figures


def build_dbt_assets(project: DbtProject) -> list[AssetsDefinition]:
    """One ``@dbt_assets`` for the incremental (daily) models and one for the rest; a selection
    that matches no model is left out (dagster-dbt refuses empty selections).

    ``project`` is not handed to ``@dbt_assets``: it would only add code references (not enabled)
    and put the DbtProject object on every asset as metadata the UI shows as "(unserializable)";
    dbt runs in the project through the resource (``dbt_resource``)."""
    manifest = json.loads(Path(project.manifest_path).read_text())
    definitions: list[AssetsDefinition] = []

    if _selected_nodes(manifest, partitioned=True):

        @dbt_assets(
            manifest=manifest,
            select=PARTITIONED_SELECT,
            name="dbt_daily_models",
            partitions_def=daily_partitions,
            backfill_policy=BackfillPolicy.single_run(),
            dagster_dbt_translator=TRANSLATOR,
            pool=WRITER_POOL,
        )
        def dbt_daily_models(context, dbt: DbtCliResource):  # untyped context: string annotations are not resolved here
            window = _partition_vars(context)
            days = Window(date.fromisoformat(window["min_date"]), date.fromisoformat(window["max_date"]))
            yield from _dbt_build(context, dbt, ["build", "--vars", json.dumps(window)], days)

        definitions.append(dbt_daily_models)

    if _selected_nodes(manifest, partitioned=False):

        @dbt_assets(
            manifest=manifest,
            exclude=PARTITIONED_SELECT,
            name="dbt_models",
            dagster_dbt_translator=TRANSLATOR,
            pool=WRITER_POOL,
        )
        def dbt_models(context, dbt: DbtCliResource):
            yield from _dbt_build(context, dbt, ["build"], Window())

        definitions.append(dbt_models)
    return definitions


def dbt_resource(project: DbtProject) -> DbtCliResource:
    return DbtCliResource(project_dir=project, dbt_executable=str(Path(sys.executable).with_name("dbt")))

