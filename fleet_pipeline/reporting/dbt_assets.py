"""The dbt project (``dbt_models/``) as Dagster assets: staging, core and marts on the warehouse.

Incremental models are partitioned by UTC day and receive the partition window as
``--vars {min_date, max_date}``, so a one-day run rebuilds one day. Everything else (staging views,
dimensions built from snapshots) is unpartitioned: Dagster does not allow two partitionings in one
multi-asset, so the project is split into two selections (``SELECTIONS``).

The manifest is produced when the code location loads if it is missing or older than the project's
sources, so a fresh clone (no ``target/``) and a project being edited both load without a manual
``dbt parse``. Loading is cheap otherwise: the asset specs dagster-dbt derives from the manifest are
kept beside it (``dagster_asset_specs.json``), keyed by the manifest's content, so dagster-dbt and
dbt-core (seconds of CPU to import) are imported once per change of the manifest and in the step
that runs dbt, not by every process that loads the definitions (the UI's code server and each step
process of a run).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from importlib import metadata as package_metadata
from pathlib import Path
from typing import Any

from dagster import (
    AssetCheckSpec,
    AssetDep,
    AssetExecutionContext,
    AssetKey,
    AssetSpec,
    AssetsDefinition,
    BackfillPolicy,
    ConfigurableResource,
    multi_asset,
)
from dagster import __version__ as dagster_version
from dagster._serdes import deserialize_value, serialize_value

from fleet_pipeline import settings
from fleet_pipeline.automation.partitions import daily_partitions
from fleet_pipeline.ingest.source_assets import WRITER_POOL
from fleet_pipeline.ingest.warehouse import ensure_lake, whole_turn
from fleet_pipeline.reporting.dbt_selections import SELECTIONS, DbtSelection
from fleet_pipeline.reporting.key_figures import Window, with_key_figures

DBT_PROJECT_DIR = settings.project_root() / "dbt_models"
# Files whose change makes the manifest stale.
_PROJECT_SOURCES = ("models", "macros", "seeds", "snapshots", "tests", "analyses")
_PROJECT_FILES = ("dbt_project.yml", "profiles.yml", "packages.yml", "dependencies.yml")
# What dagster-dbt derived from the manifest, beside it in target/ (git-ignored).
SPECS_FILE = "dagster_asset_specs.json"
# Raise when the file's layout changes, so files written by an older layout are derived anew.
_SPECS_LAYOUT = 1
# Metadata dagster-dbt attaches as Python objects for its own use while dbt runs; the code
# location's specs leave them out (the UI showed them as "(unserializable)") and the step that
# runs dbt uses dagster-dbt's own definition, which has them (dbt_translator.run_dbt).
_RUNTIME_ONLY_METADATA = ("dagster_dbt/manifest", "dagster_dbt/dagster_dbt_translator", "dagster_dbt/project")


@dataclass(frozen=True)
class DbtProjectFiles:
    """Where the dbt project and its manifest are (``DbtProject``'s layout, without importing it)."""

    project_dir: Path

    @property
    def profiles_dir(self) -> Path:
        return self.project_dir

    @property
    def target_path(self) -> Path:
        return Path("target")

    @property
    def manifest_path(self) -> Path:
        return self.project_dir / self.target_path / "manifest.json"


class DbtParseError(RuntimeError):
    """``dbt parse`` failed: the project cannot be loaded (its message names the model or file)."""


def dbt_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Variables every dbt invocation needs: the warehouse of this pipeline, no telemetry, logs in
    the project's git-ignored ``logs/``; in the lake mode the profile's ``lake`` target and where the
    lake and its extensions are (``profiles.yml``)."""
    values = {
        "FLEET_DUCKDB_PATH": str(settings.duckdb_path(env)),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
        "DBT_LOG_PATH": str(DBT_PROJECT_DIR / "logs"),
    }
    lake = settings.lake_settings(env)
    if lake is not None:
        values.update({
            "FLEET_DBT_TARGET": "lake",
            "FLEET_LAKE_ATTACH_LIBPQ": lake.catalog_libpq,
            "FLEET_LAKE_DATA_PATH": lake.data_path,
            "FLEET_DUCKDB_EXTENSION_DIR": str(lake.extension_directory),
        })
    return values


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


def manifest_is_stale(project: DbtProjectFiles) -> bool:
    manifest = project.manifest_path
    if not manifest.exists():
        return True
    return manifest.stat().st_mtime < _newest_source_mtime(Path(project.project_dir))


def parse_project(project: DbtProjectFiles) -> Path:
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


def load_project(project_dir: Path = DBT_PROJECT_DIR) -> DbtProjectFiles:
    """The dbt project with a current manifest: parsed now when missing or older than its sources."""
    project = DbtProjectFiles(Path(project_dir))
    # Not ``project.prepare_if_dev()``: under `dagster dev` it runs a bare `dbt` looked up on PATH,
    # which a new shell (no activated venv) does not have, and re-parses on every reload. The
    # staleness check below parses with the venv's own dbt, and only when a source changed.
    if manifest_is_stale(project):
        parse_project(project)
    return project


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


class DbtResource(ConfigurableResource):
    """The project's dbt: the venv's own executable (never a ``dbt`` looked up on PATH) on the
    project directory. dagster-dbt's ``DbtCliResource`` is made from it in the step that runs dbt,
    so that loading the definitions does not import dbt."""

    project_dir: str
    dbt_executable: str


def dbt_resource(project: DbtProjectFiles) -> DbtResource:
    return DbtResource(project_dir=str(project.project_dir),
                       dbt_executable=str(Path(sys.executable).with_name("dbt")))


def _dbt_build(context: AssetExecutionContext, dbt: DbtResource, selection: DbtSelection, args: list[str],
               window: Window) -> Iterator[Any]:
    """Run dbt, then yield its events with the marts' key figures. dbt holds DuckDB's write lock
    until it exits, so the figures can only be read once its stream has ended; the whole of it is
    this step's turn on the warehouse (a source's write waits for it, and it for that write)."""
    from fleet_pipeline.reporting.dbt_translator import run_dbt  # dagster-dbt: only the dbt step imports it

    events: list[Any] = []
    database, lake = settings.duckdb_path(), settings.lake_settings()
    if lake is not None:
        ensure_lake(lake)
    with whole_turn(database, lake, f"dbt {args[0]} (run {context.run_id[:8]})", context.log.info):
        with _environment(dbt_env()):
            try:
                events.extend(run_dbt(context, Path(dbt.project_dir), selection, dbt.dbt_executable, args))
            except Exception:
                yield from events  # what dbt did build stays recorded; the failure follows
                raise
        keys_by_output = dict(context.assets_def.keys_by_output_name)
        figures = list(with_key_figures(
            events, keys_by_output, database, window,
            lambda key, day, metadata: context.add_asset_metadata(metadata, asset_key=key, partition_key=day), lake))
    yield from figures


def _key_path(key: AssetKey) -> list[str]:
    return list(key.path)


def _encode_deps(deps: Any, owner: str) -> list[dict[str, Any]]:
    encoded = []
    for dep in deps:
        if dep.partition_mapping is not None:
            raise ValueError(f"dbt asset {owner}: dependency {dep.asset_key.to_user_string()} has a partition "
                             f"mapping, which {SPECS_FILE} does not keep")
        encoded.append({"key": _key_path(dep.asset_key), "metadata": serialize_value(dict(dep.metadata))})
    return encoded


def _decode_deps(encoded: list[Mapping[str, Any]]) -> list[AssetDep]:
    return [AssetDep(AssetKey(dep["key"]), metadata=deserialize_value(dep["metadata"], dict)) for dep in encoded]


def _encode_spec(spec: AssetSpec) -> dict[str, Any]:
    metadata = {k: v for k, v in spec.metadata.items() if k not in _RUNTIME_ONLY_METADATA}
    return {
        "key": _key_path(spec.key),
        "deps": _encode_deps(spec.deps, spec.key.to_user_string()),
        "description": spec.description,
        "metadata": serialize_value(metadata),
        "group_name": spec.group_name,
        "owners": list(spec.owners),
        "tags": dict(spec.tags),
        "code_version": spec.code_version,
        "skippable": spec.skippable,
    }


def _decode_spec(record: Mapping[str, Any]) -> AssetSpec:
    return AssetSpec(
        AssetKey(record["key"]),
        deps=_decode_deps(record["deps"]),
        description=record["description"],
        metadata=deserialize_value(record["metadata"], dict),
        group_name=record["group_name"],
        owners=record["owners"],
        tags=record["tags"],
        code_version=record["code_version"],
        skippable=record["skippable"],
    )


def _encode_check(check: AssetCheckSpec) -> dict[str, Any]:
    return {
        "name": check.name,
        "asset": _key_path(check.asset_key),
        "description": check.description,
        "additional_deps": _encode_deps(check.additional_deps, check.name),
        "blocking": check.blocking,
        "metadata": serialize_value(dict(check.metadata)),
    }


def _decode_check(record: Mapping[str, Any]) -> AssetCheckSpec:
    return AssetCheckSpec(
        record["name"],
        asset=AssetKey(record["asset"]),
        description=record["description"],
        additional_deps=_decode_deps(record["additional_deps"]),
        blocking=record["blocking"],
        metadata=deserialize_value(record["metadata"], dict),
    )


def _code_location_definition(selection: DbtSelection, specs: list[AssetSpec], checks: list[AssetCheckSpec],
                              op_tags: Mapping[str, str]) -> AssetsDefinition:
    """The selection as the code location shows it: dagster-dbt's specs, checks and op tags (its
    selection, which dagster-dbt reads back when it subsets a run), run by ``_dbt_build``."""

    @multi_asset(
        name=selection.name,
        specs=specs,
        check_specs=checks,
        can_subset=True,
        partitions_def=daily_partitions if selection.partitioned else None,
        backfill_policy=BackfillPolicy.single_run() if selection.partitioned else None,
        op_tags=op_tags,
        pool=WRITER_POOL,
        required_resource_keys={"dbt"},
        allow_arbitrary_check_specs=True,
    )
    def run_selection(context):  # untyped: under `from __future__ import annotations` Dagster sees a string
        dbt: DbtResource = context.resources.dbt
        if not selection.partitioned:
            yield from _dbt_build(context, dbt, selection, ["build"], Window())
            return
        window = _partition_vars(context)
        days = Window(date.fromisoformat(window["min_date"]), date.fromisoformat(window["max_date"]))
        yield from _dbt_build(context, dbt, selection, ["build", "--vars", json.dumps(window)], days)

    return run_selection


def _specs_key(manifest: bytes) -> str:
    """What the derived specs depend on: the manifest, the translator, and the versions of the
    libraries that derive and read them."""
    digest = hashlib.sha256(manifest)
    digest.update(Path(__file__).with_name("dbt_translator.py").read_bytes())
    versions = (_SPECS_LAYOUT, dagster_version, package_metadata.version("dagster-dbt"), repr(SELECTIONS))
    digest.update(repr(versions).encode())
    return digest.hexdigest()


def _derive_specs(project: DbtProjectFiles, manifest: bytes) -> dict[str, Any]:
    """Run dagster-dbt over the manifest: each selection's specs, checks and op tags, encoded. The
    definition built from the encoding must equal dagster-dbt's but for the runtime-only metadata,
    so a field this encoding does not keep fails here rather than going missing in the UI."""
    from fleet_pipeline.reporting.dbt_translator import dbt_definition  # imports dagster-dbt and dbt

    parsed = json.loads(manifest)
    selections: dict[str, Any] = {}
    for selection in SELECTIONS:
        if not _selected_nodes(parsed, partitioned=selection.partitioned):
            continue  # dagster-dbt refuses an empty selection
        described = dbt_definition(project.project_dir, parsed, selection)
        encoded = {
            "specs": [_encode_spec(spec) for spec in described.specs],
            "checks": [_encode_check(check) for check in described.check_specs],
            "op_tags": dict(described.op.tags),
        }
        shown = _decode_selection(selection, encoded)
        expected = {spec.key: spec.replace_attributes(metadata={
            k: v for k, v in spec.metadata.items() if k not in _RUNTIME_ONLY_METADATA}) for spec in described.specs}
        checks_equal = {c.key: c for c in shown.check_specs} == {c.key: c for c in described.check_specs}
        if {spec.key: spec for spec in shown.specs} != expected or not checks_equal:
            raise RuntimeError(f"{selection.name}: the specs kept in {SPECS_FILE} differ from dagster-dbt's; "
                               "a field dagster-dbt sets is not encoded by fleet_pipeline.reporting.dbt_assets")
        selections[selection.name] = encoded
    return selections


def _decode_selection(selection: DbtSelection, encoded: Mapping[str, Any]) -> AssetsDefinition:
    return _code_location_definition(
        selection,
        [_decode_spec(record) for record in encoded["specs"]],
        [_decode_check(record) for record in encoded["checks"]],
        encoded["op_tags"],
    )


def _kept_specs(project: DbtProjectFiles) -> dict[str, Any]:
    """The selections' encoded specs for the current manifest: read from ``SPECS_FILE`` when it was
    derived from this manifest, else derived now and written beside it (renamed into place, so a
    process loading at the same moment reads the old file or the new one, never half of one)."""
    manifest = project.manifest_path.read_bytes()
    key = _specs_key(manifest)
    kept = project.manifest_path.with_name(SPECS_FILE)
    if kept.exists():
        try:
            stored = json.loads(kept.read_text())
        except ValueError:
            stored = {}
        if stored.get("key") == key:
            return stored["selections"]
    selections = _derive_specs(project, manifest)
    scratch = kept.with_name(f"{SPECS_FILE}.{os.getpid()}")
    scratch.write_text(json.dumps({"key": key, "selections": selections}))
    os.replace(scratch, kept)
    return selections


def build_dbt_assets(project: DbtProjectFiles) -> list[AssetsDefinition]:
    """One definition for the incremental (daily) models and one for the rest; a selection that
    matches no model is left out (dagster-dbt refuses empty selections)."""
    kept = _kept_specs(project)
    return [_decode_selection(selection, kept[selection.name]) for selection in SELECTIONS if selection.name in kept]
