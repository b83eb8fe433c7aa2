"""The Telesto resource: live API key from the environment, or the embedded sandbox."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fleet_pipeline.ingest.vendor_resource import VendorResource
from fleet_pipeline.sandbox.world import World
from fleet_pipeline.sources.telesto import settings
from fleet_pipeline.sources.telesto.client import TelestoClient


class TelestoResource(VendorResource):
    """Connection to Telesto inventory. No API key = embedded sandbox (see VendorResource)."""

    vendor = "Telesto"
    registry_name = "telesto"
    credential_hint = "set TELESTO_API_KEY"

    base_url: str | None = None
    api_key: str | None = None
    # Below the vendor's 100 requests/hour/IP, shared by every process and run on this machine.
    hourly_budget: int = 90

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> TelestoResource:
        live = settings.telesto_settings(env)
        common = cls.common_from_env()
        if live is None:
            return cls(**common)
        return cls(base_url=live.base_url, api_key=cls.secret(env, "TELESTO_API_KEY"), **common)

    @property
    def has_credentials(self) -> bool:
        return bool(self.api_key)

    def make_sandbox(self, world: World) -> Any:
        from fleet_pipeline.sandbox import telesto as sandbox_telesto

        return sandbox_telesto.make_server(world)

    def client(self) -> TelestoClient:
        if self.is_sandbox:
            from fleet_pipeline.sandbox import telesto as sandbox_telesto

            base_url, key = self.sandbox.base_url, sandbox_telesto.API_KEY
        else:
            base_url, key = self.base_url or settings.TELESTO_API, self.api_key
        return TelestoClient(base_url, key, cache_dir=self.cache_path, hourly_budget=self.hourly_budget)
