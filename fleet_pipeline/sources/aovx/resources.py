"""The AOVX resource: live token and terminal list from the environment, or the embedded sandbox."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fleet_pipeline.ingest.vendor_resource import VendorResource
from fleet_pipeline.sandbox.world import World
from fleet_pipeline.sources.aovx import settings
from fleet_pipeline.sources.aovx.client import AovxClient


class AovxResource(VendorResource):
    """Connection to the AOVX platform. No token = embedded sandbox (see VendorResource)."""

    vendor = "AOVX"
    registry_name = "aovx"
    credential_hint = "set AOVX_TOKEN and AOVX_TERMINAL_IDS or AOVX_TERMINAL_IDS_FILE"

    base_url: str | None = None
    token: str | None = None
    # The ids API is undocumented, so in live mode the terminals come from configuration.
    terminal_ids: list[str] = []

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AovxResource:
        live = settings.aovx_settings(env)
        common = cls.common_from_env()
        if live is None:
            return cls(**common)
        return cls(base_url=live.base_url, token=cls.secret(env, "AOVX_TOKEN"), terminal_ids=list(live.terminal_ids),
                   **common)

    @property
    def has_credentials(self) -> bool:
        return bool(self.token)

    def make_sandbox(self, world: World) -> Any:
        from fleet_pipeline.sandbox import aovx as sandbox_aovx

        return sandbox_aovx.make_server(world)

    def client(self) -> AovxClient:
        if self.is_sandbox:
            from fleet_pipeline.sandbox import aovx as sandbox_aovx

            base_url, token = self.sandbox.base_url + sandbox_aovx.API_PREFIX, sandbox_aovx.TOKEN
        else:
            base_url, token = self.base_url or settings.AOVX_US_SERVER, self.token
        return AovxClient(base_url, token, retry=self.retry_policy())

    def terminal_rows(self, client: AovxClient) -> list[dict[str, Any]]:
        """``{terminalId, terminalNum, imei}`` per terminal: the sandbox lists them, live mode
        configures bare ids (number and IMEI unknown)."""
        if not self.is_sandbox:
            return [{"terminalId": terminal_id} for terminal_id in self.terminal_ids]
        return self.memo("terminals", client.terminals)

    def terminals(self, client: AovxClient) -> dict[str, str | None]:
        """terminal id -> IMEI (None when unknown)."""
        return {row["terminalId"]: row.get("imei") for row in self.terminal_rows(client)}
