"""What a vendor declares to be wired into the pipeline: one frozen ``VendorSpec`` per vendor.

Each ``sources/<vendor>/__init__.py`` exports its ``SPEC``; ``sources/registry.py`` lists them all,
and settings, definitions, the CLI, the fault tests and the benchmarks iterate over that list.

The spec is read by ``fleet_pipeline.settings``, which the CLI loads before anything else, so it
names its Dagster parts (resource, assets) and its sandbox server by module path and loads them on
request: reading a spec costs no Dagster import.
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
    # Further readers of the vendor's own variables, checked with every other setting at load.
    extra_readers: tuple[SettingsReader, ...]
    # "module:Class" of its VendorResource subclass, and "module:list" of its assets.
    resource: str
    assets: str
    # What the snapshot job takes ("the Tracksolid device list and last positions").
    snapshot_contents: str
    # The module of its fake server (``make_server(world)``), and the environment a client needs to
    # talk to that server at a base URL (what ``fleet-pipeline sandbox serve`` prints).
    sandbox: str
    sandbox_env: Callable[[str], dict[str, str]]

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
        return self.assets.partition(":")[0]

    def load_assets(self) -> list[Any]:
        return list(_resolve(self.assets))

    def sandbox_module(self) -> ModuleType:
        return importlib.import_module(self.sandbox)

    def from_env(self) -> Any:
        """The vendor's resource configured from the environment (live or embedded sandbox)."""
        return self.resource_class().from_env()
