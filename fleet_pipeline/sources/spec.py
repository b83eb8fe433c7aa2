"""What a vendor declares to be wired into the pipeline: one frozen ``VendorSpec`` per vendor.

Each ``sources/<vendor>/__init__.py`` exports its ``SPEC``; ``sources/registry.py`` lists them all,
and settings, definitions, the CLI, the fault tests and the benchmarks iterate over that list.

The spec is read by ``fleet_pipeline.settings``, which the CLI loads before anything else, so it
names its resource by module path and finds its assets and sandbox server by their place in the
tree, loading them on request: reading a spec costs no Dagster import.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

SettingsReader = Callable[[Mapping[str, str] | None], Any]


def _resolve(reference: str) -> Any:
    """The object a ``"package.module:attribute"`` reference names."""
    module, _, attribute = reference.partition(":")
    return getattr(importlib.import_module(module), attribute)


@dataclass(frozen=True)
class VendorSpec:
    """One vendor platform: its variables, settings, Dagster parts, jobs and sandbox.

    ``name`` is the resource key, the asset group, the prefix of its jobs and the ``--vendor`` of
    ``fleet-pipeline sandbox serve``.
    """

    name: str
    # Every variable the vendor owns starts with this prefix (``TRACKSOLID_``).
    env_prefix: str
    # The variables that, once set, mean "this vendor is live": any one of them switches the whole
    # pipeline to live mode (or, when the set is incomplete, is a configuration error).
    credential_vars: tuple[str, ...]
    # The vendor's live configuration from the environment, None when no credential is set;
    # raises ConfigError on partial or malformed configuration.
    settings: SettingsReader
    # "module:Class" of its VendorResource subclass.
    resource: str
    # What the snapshot job takes ("the Tracksolid device list and last positions").
    snapshot_contents: str
    # The environment a client needs to talk to its fake server at a base URL (what
    # ``fleet-pipeline sandbox serve`` prints).
    sandbox_env: Callable[[str], dict[str, str]]
    # Further readers of the vendor's own variables, checked with every other setting at load.
    extra_readers: tuple[SettingsReader, ...] = ()

    @property
    def resource_key(self) -> str:
        return self.name

    @property
    def readers(self) -> tuple[SettingsReader, ...]:
        return (self.settings, *self.extra_readers)

    def resource_class(self) -> type:
        return _resolve(self.resource)

    @property
    def assets_module(self) -> str:
        """Its assets live in ``sources/<name>/assets.py`` as ``<name>_assets``."""
        return f"fleet_pipeline.sources.{self.name}.assets"

    @property
    def sandbox(self) -> str:
        """Its fake server is ``fleet_pipeline.sandbox.<name>`` (``make_server(world)``)."""
        return f"fleet_pipeline.sandbox.{self.name}"

    def load_assets(self) -> list[Any]:
        """Its assets, one per table, or one per table and account when it has several accounts
        (``fleet_pipeline.sources.accounts``)."""
        module = importlib.import_module(self.assets_module)
        return module.SOURCE.for_accounts(getattr(module, f"{self.name}_assets"), self.accounts())

    def table_specs(self) -> list[Any]:
        """With several accounts, each table's own asset (the union its accounts' assets load)."""
        module = importlib.import_module(self.assets_module)
        return module.SOURCE.table_specs(getattr(module, f"{self.name}_assets"), self.accounts())

    def accounts(self) -> list[str]:
        from fleet_pipeline.sources.accounts import account_names

        return account_names(self)

    def sandbox_module(self) -> ModuleType:
        return importlib.import_module(self.sandbox)

    def from_env(self) -> Any:
        """The vendor's resource configured from the environment (live or embedded sandbox)."""
        return self.resource_class().from_env()
