"""Runs of the CLI as runs of the code location ``workspace.yaml`` defines, the one `make ui` loads.

A run the UI, a schedule or a sensor starts records where its job came from (code location and
repository: its ``remote_job_origin``) and the job's snapshot. The UI lists a job's runs by that
origin, and re-executes a run without a "different version" warning when the snapshot is the one
the location has loaded. ``fleet-pipeline demo`` and ``backfill`` create their runs the same way,
with the origin read from ``workspace.yaml`` by Dagster's own loader and the job as the location
defines it, and execute them in the CLI's own process: one process loads the definitions once,
where a launched run would start a run worker and a process for each step.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from dagster import AssetKey, DagsterInstance, JobDefinition, in_process_executor
from dagster._core.definitions.job_base import InMemoryJob
from dagster._core.definitions.reconstruct import ReconstructableRepository
from dagster._core.definitions.repository_definition.valid_definitions import SINGLETON_REPOSITORY_NAME
from dagster._core.execution.api import execute_run
from dagster._core.execution.execute_in_process import merge_run_tags
from dagster._core.execution.job_execution_result import JobExecutionResult
from dagster._core.origin import JobPythonOrigin
from dagster._core.remote_origin import CodeLocationOrigin, RemoteJobOrigin, RemoteRepositoryOrigin
from dagster._core.workspace.load import location_origins_from_yaml_paths

from fleet_pipeline import settings

WORKSPACE_FILE = "workspace.yaml"
# The module-level Definitions object the location loads (fleet_pipeline/definitions.py).
DEFINITIONS_ATTRIBUTE = "defs"


class CodeLocationError(ValueError):
    """workspace.yaml does not define the one Python-module code location the CLI runs jobs of."""


@dataclass(frozen=True)
class CodeLocation:
    """The workspace's code location: its origin as the UI has it, and the module it loads."""

    origin: CodeLocationOrigin
    module_name: str
    working_directory: str | None

    @classmethod
    def from_workspace(cls, workspace: Path | None = None) -> CodeLocation:
        path = workspace or settings.project_root() / WORKSPACE_FILE
        origins = location_origins_from_yaml_paths([str(path)])
        if len(origins) != 1:
            raise CodeLocationError(f"{path} defines {len(origins)} code locations; the CLI runs the jobs of one")
        origin = origins[0]
        loadable = getattr(origin, "loadable_target_origin", None)
        if loadable is None or not loadable.module_name:
            raise CodeLocationError(f"{path}: code location {origin.location_name!r} is not a python_module")
        return cls(origin, loadable.module_name, loadable.working_directory)

    @property
    def name(self) -> str:
        return self.origin.location_name

    def job_origin(self, job_name: str) -> RemoteJobOrigin:
        """Where the UI finds the job: the location's one repository (a Definitions object's)."""
        return RemoteJobOrigin(RemoteRepositoryOrigin(self.origin, SINGLETON_REPOSITORY_NAME), job_name)

    def job_code_origin(self, job_name: str) -> JobPythonOrigin:
        """Where a process reconstructs the job: the module the location loads."""
        repository = ReconstructableRepository.for_module(self.module_name, DEFINITIONS_ATTRIBUTE,
                                                          self.working_directory)
        return JobPythonOrigin(job_name, repository.get_python_origin())

    def execute(self, instance: DagsterInstance, job: JobDefinition, *, run_config: Mapping[str, object],
                partition_key: str | None = None, tags: Mapping[str, str] | None = None,
                asset_selection: Sequence[AssetKey] | None = None) -> JobExecutionResult:
        """Create the run of ``job`` (one of the location's jobs) as the UI would launch it: origin,
        the job's own snapshot, partition tags, asset selection; then execute its steps here, one
        after another, as ``execute_in_process`` does."""
        selection = frozenset(asset_selection) if asset_selection else None
        run = instance.create_run_for_job(
            job_def=job,  # subset by the run to its selection, the whole job recorded as its parent
            run_config=run_config,
            tags=merge_run_tags(job, partition_key, tags, asset_selection, instance, run_config),
            asset_selection=selection,
            remote_job_origin=self.job_origin(job.name),
            job_code_origin=self.job_code_origin(job.name),
        )
        return execute_run(InMemoryJob(job.with_executor_def(in_process_executor)), run, instance)
