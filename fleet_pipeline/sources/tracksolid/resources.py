"""The Tracksolid Pro resource: live credentials from the environment, or the embedded sandbox."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fleet_pipeline.ingest.http import Backoff
from fleet_pipeline.ingest.vendor_resource import VendorResource
from fleet_pipeline.sandbox.world import World
from fleet_pipeline.sources.tracksolid import settings
from fleet_pipeline.sources.tracksolid.client import TracksolidClient


class TracksolidResource(VendorResource):
    """Connection to Tracksolid Pro. No credentials = embedded sandbox (see VendorResource)."""

    vendor = "Tracksolid"
    registry_name = "tracksolid"
    credential_hint = "set " + ", ".join(settings.TRACKSOLID_CREDENTIAL_VARS)

    base_url: str | None = None
    app_key: str | None = None
    app_secret: str | None = None
    user_id: str | None = None
    user_password: str | None = None
    target_account: str | None = None
    mileage_unit: str = "km"
    # 1006 ("frequency too high") waits start in the tens of seconds, as the vendor asks.
    throttle_backoff_base_s: float = 15.0
    # jimi.oauth.token.get may succeed once a minute per account (tests against a sandbox whose
    # limit is shorter shrink it).
    token_get_interval_s: float = 60.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> TracksolidResource:
        """Build from the environment; secrets stay ``EnvVar`` references so the UI never shows them."""
        live = settings.tracksolid_settings(env)  # raises ConfigError on partial configuration
        common = dict(cls.common_from_env(), mileage_unit=settings.tracksolid_mileage_unit(env))
        if live is None:
            return cls(**common)
        return cls(
            base_url=live.base_url,
            app_key=cls.secret(env, "TRACKSOLID_APP_KEY"),
            app_secret=cls.secret(env, "TRACKSOLID_APP_SECRET"),
            user_id=cls.secret(env, "TRACKSOLID_USER_ID"),
            user_password=cls.secret(env, "TRACKSOLID_USER_PASSWORD"),
            target_account=live.target_account,
            **common,
        )

    @property
    def has_credentials(self) -> bool:
        return all((self.app_key, self.app_secret, self.user_id, self.user_password))

    def make_sandbox(self, world: World) -> Any:
        from fleet_pipeline.sandbox import tracksolid as sandbox_tracksolid

        return sandbox_tracksolid.make_server(world)

    def _connection(self) -> dict[str, Any]:
        if self.is_sandbox:
            from fleet_pipeline.sandbox import tracksolid as sandbox_tracksolid

            return dict(
                base_url=self.sandbox.base_url + sandbox_tracksolid.ROUTE_PATH,
                app_key=sandbox_tracksolid.APP_KEY,
                app_secret=sandbox_tracksolid.APP_SECRET,
                user_id=sandbox_tracksolid.USER_ID,
                user_password=sandbox_tracksolid.USER_PASSWORD,
                target_account=sandbox_tracksolid.USER_ID,
            )
        return dict(
            base_url=self.base_url or settings.TRACKSOLID_EU_NODE,
            app_key=self.app_key,
            app_secret=self.app_secret,
            user_id=self.user_id,
            user_password=self.user_password,
            target_account=self.target_account or self.user_id,
        )

    def client(self) -> TracksolidClient:
        """A new client with its own call statistics; the token is shared through the cache dir."""
        return TracksolidClient(
            token_cache_dir=self.cache_path,
            retry=self.retry_policy(),
            token_get_interval_s=self.token_get_interval_s,
            throttle_backoff=Backoff(base_s=self.throttle_backoff_base_s,
                                     max_s=max(120.0, self.throttle_backoff_base_s)),
            **self._connection(),
        )

    def inventory(self, client: TracksolidClient) -> list[dict[str, Any]]:
        """Device-list rows of the target account and all its sub-accounts, each with ``_account``.

        Shared by the step's assets: the device list is not recursive (docs/vendor-apis/FIELD-NOTES.md), so this walks
        the account tree and lists each account, the accounts ``concurrency`` at a time.
        """
        def walk() -> list[dict[str, Any]]:
            rows: dict[str, dict[str, Any]] = {}
            names = [str(account["account"]) for account in client.accounts()]
            for name, listed in client.fan_out(names, client.devices):
                for row in listed:
                    # A device listed without an IMEI is kept for the devices table to reject.
                    imei = row.get("imei")
                    key = str(imei) if imei is not None else f"~no imei {name} {len(rows)}"
                    rows.setdefault(key, {**row, "_account": name})
            return [rows[imei] for imei in sorted(rows)]

        return list(self.memo("inventory", walk))

    def imeis(self, client: TracksolidClient) -> list[str]:
        return [str(row["imei"]) for row in self.inventory(client) if row.get("imei") is not None]

    def imeis_by_account(self, client: TracksolidClient) -> dict[str, list[str]]:
        grouped: dict[str, list[str]] = {}
        for row in self.inventory(client):
            if row.get("imei") is not None:
                grouped.setdefault(row["_account"], []).append(str(row["imei"]))
        return grouped
