"""How dagster-dbt sees the dbt project: keys, groups and owners of its models, and the dbt runs.

This is the one module that imports dagster-dbt (and with it dbt-core, seconds of CPU). It is
imported only where dagster-dbt does work: when the manifest changed and the asset specs are
derived anew (``dbt_assets.dbt_selection_specs``), and in the step that runs dbt (``run_dbt``).
Loading the code location otherwise reads the specs kept beside the manifest.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from dagster import AssetExecutionContext, AssetKey, AssetsDefinition, BackfillPolicy
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCliResource, DbtProject, dbt_assets

from fleet_pipeline.automation.partitions import daily_partitions
from fleet_pipeline.ingest.source_assets import OWNERS, WRITER_POOL
from fleet_pipeline.reporting.dbt_selections import DbtSelection

LAYERS = ("staging", "core", "marts")


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


def dbt_definition(project_dir: Path, manifest: Mapping[str, Any], selection: DbtSelection) -> AssetsDefinition:
    """dagster-dbt's definition of one selection of the project, with the manifest, translator and
    project it keeps in its metadata. Its specs are what the code location shows; its body is never
    run: the code location's own step (``dbt_assets``) runs dbt through ``run_dbt``.

    The manifest is passed parsed: given a path, dagster-dbt reads it once per process and would
    not see a manifest parsed anew since."""
    project = DbtProject(project_dir=project_dir, profiles_dir=project_dir)

    @dbt_assets(
        manifest=manifest,
        project=project,
        select=selection.select or "fqn:*",
        exclude=selection.exclude,
        name=selection.name,
        partitions_def=daily_partitions if selection.partitioned else None,
        backfill_policy=BackfillPolicy.single_run() if selection.partitioned else None,
        dagster_dbt_translator=TRANSLATOR,
        pool=WRITER_POOL,
    )
    def described_only(context, dbt: DbtCliResource):  # noqa: ARG001
        raise RuntimeError(f"{selection.name}: dagster-dbt's description of the selection is not run; "
                           "fleet_pipeline.reporting.dbt_assets runs dbt")

    return described_only


class _DbtStepContext(AssetExecutionContext):
    """The step's own context, except that its assets definition is dagster-dbt's, carrying the
    manifest and translator the code location's definition leaves out (both select the same keys)."""

    def __init__(self, context: AssetExecutionContext, described: AssetsDefinition) -> None:
        super().__init__(context.op_execution_context)
        self._described = described

    @property
    def assets_def(self) -> AssetsDefinition:
        return self._described


def run_dbt(context: AssetExecutionContext, project_dir: Path, selection: DbtSelection, executable: str,
            args: list[str]) -> Iterator[Any]:
    """Run ``dbt <args>`` for the step's selection and yield dagster-dbt's events for it.

    dagster-dbt's definition of the selection is cut to the assets and checks the step was asked
    for, as the step's own definition is, so dagster-dbt selects the same models and tests in dbt.
    """
    own = context.assets_def
    project = DbtProject(project_dir=project_dir, profiles_dir=project_dir)
    described = dbt_definition(project_dir, json.loads(project.manifest_path.read_text()), selection)
    if set(described.keys) != set(own.node_keys_by_output_name.values()):
        raise RuntimeError(
            f"{selection.name}: the dbt manifest changed since the code location loaded "
            "(its models differ); reload the definitions and run again"
        )
    if own.is_subset:
        described = described.subset_for(own.keys, own.check_keys)
    cli = DbtCliResource(project_dir=project, dbt_executable=executable)
    yield from cli.cli(args, context=_DbtStepContext(context, described)).stream()
