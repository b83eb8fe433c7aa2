"""The Teltonika FOTA resource: live API token from the environment, or the embedded sandbox."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fleet_pipeline.ingest.vendor_resource import VendorResource
from fleet_pipeline.sandbox.world import World
from fleet_pipeline.sources.teltonika import settings
from fleet_pipeline.sources.teltonika.client import DEFAULT_USER_AGENT, TeltonikaFotaClient


class TeltonikaResource(VendorResource):
    """Connection to Teltonika FOTA WEB. No token = embedded sandbox (see VendorResource)."""

    vendor = "Teltonika FOTA"
    registry_name = "teltonika"
    credential_hint = "set TELTONIKA_FOTA_API_TOKEN"

    base_url: str | None = None
    api_token: str | None = None
    # Teltonika requires company, application and version in the User-Agent (docs/vendor-apis/FIELD-NOTES.md).
    user_agent: str = DEFAULT_USER_AGENT

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> TeltonikaResource:
        live = settings.teltonika_settings(env)
        common = cls.common_from_env()
        if live is None:
            return cls(**common)
        return cls(base_url=live.base_url, api_token=cls.secret(env, "TELTONIKA_FOTA_API_TOKEN"),
                   user_agent=live.user_agent or DEFAULT_USER_AGENT, **common)

    @property
    def has_credentials(self) -> bool:
        return bool(self.api_token)

    def make_sandbox(self, world: World) -> Any:
        from fleet_pipeline.sandbox import teltonika as sandbox_teltonika

        return sandbox_teltonika.make_server(world)

    def client(self) -> TeltonikaFotaClient:
        if self.is_sandbox:
            from fleet_pipeline.sandbox import teltonika as sandbox_teltonika

            base_url, token = self.sandbox.base_url, sandbox_teltonika.API_TOKEN
        else:
            base_url, token = self.base_url or settings.TELTONIKA_FOTA_API, self.api_token
        return TeltonikaFotaClient(base_url, token, user_agent=self.user_agent, cache_dir=self.cache_path,
                                   retry=self.retry_policy())
