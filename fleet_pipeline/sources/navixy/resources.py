"""The Navixy resource: live credentials from the environment, or the embedded sandbox."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fleet_pipeline.ingest.vendor_resource import VendorResource
from fleet_pipeline.sandbox.world import World
from fleet_pipeline.sources.navixy import settings
from fleet_pipeline.sources.navixy.client import NavixyClient


class NavixyResource(VendorResource):
    """Connection to a Navixy platform (API v2). No credentials = embedded sandbox."""

    vendor = "Navixy"
    registry_name = "navixy"
    credential_hint = "set NAVIXY_API_KEY, or NAVIXY_LOGIN and NAVIXY_PASSWORD"

    base_url: str | None = None
    api_key: str | None = None
    login: str | None = None
    password: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> NavixyResource:
        live = settings.navixy_settings(env)  # raises ConfigError on partial configuration
        common = cls.common_from_env()
        if live is None:
            return cls(**common)
        if live.api_key:
            return cls(base_url=live.base_url, api_key=cls.secret(env, "NAVIXY_API_KEY"), **common)
        return cls(base_url=live.base_url, login=cls.secret(env, "NAVIXY_LOGIN"),
                   password=cls.secret(env, "NAVIXY_PASSWORD"), **common)

    @property
    def has_credentials(self) -> bool:
        return bool(self.api_key or (self.login and self.password))

    def make_sandbox(self, world: World) -> Any:
        from fleet_pipeline.sandbox import navixy as sandbox_navixy

        return sandbox_navixy.make_server(world)

    def client(self) -> NavixyClient:
        """A new client with its own call statistics; session and rate ledger live in the cache dir."""
        if self.is_sandbox:
            from fleet_pipeline.sandbox import navixy as sandbox_navixy

            connection = dict(base_url=self.sandbox.base_url + sandbox_navixy.API_PREFIX,
                              api_key=sandbox_navixy.API_KEY)
        elif self.api_key:
            connection = dict(base_url=self.base_url or settings.NAVIXY_EU_API, api_key=self.api_key)
        else:
            connection = dict(base_url=self.base_url or settings.NAVIXY_EU_API, login=self.login,
                              password=self.password)
        # memo: the user's time zone is asked once per step, not once per asset.
        return NavixyClient(cache_dir=self.cache_path, retry=self.retry_policy(), memo=self.memo, **connection)

    def trackers(self, client: NavixyClient) -> list[dict[str, Any]]:
        """The account's trackers (tracker/list), shared by the step's assets."""
        return list(self.memo("trackers", client.trackers))

    def imei_by_tracker(self, client: NavixyClient) -> dict[int, str]:
        """IMEI by tracker id; a tracker whose id is not a number is left out here (the trackers
        table rejects its row with the reason)."""
        return {tracker_id: str((t.get("source") or {}).get("device_id"))
                for t, tracker_id in self._identified(client)}

    def active_tracker_ids(self, client: NavixyClient) -> list[int]:
        """Trackers that are not tariff-blocked: history and stats refuse a call naming a blocked one."""
        return sorted(tracker_id for t, tracker_id in self._identified(client)
                      if not (t.get("source") or {}).get("blocked"))

    def _identified(self, client: NavixyClient) -> list[tuple[dict[str, Any], int]]:
        identified = []
        for tracker in self.trackers(client):
            try:
                identified.append((tracker, int(tracker["id"])))
            except (KeyError, TypeError, ValueError):
                continue
        return identified
