"""Teltonika FOTA settings: the TELTONIKA_FOTA_* variables, read from the environment (secrets never printed)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from fleet_pipeline.ingest.env import env_value, token_only

TELTONIKA_FOTA_API = "https://api.teltonika.lt"


@dataclass(frozen=True, repr=False)
class TeltonikaSettings:
    base_url: str
    token: str
    user_agent: str | None

    def __repr__(self) -> str:
        return f"TeltonikaSettings(base_url={self.base_url!r}, user_agent={self.user_agent!r}, token=***)"


def teltonika_settings(env: Mapping[str, str] | None = None) -> TeltonikaSettings | None:
    env = os.environ if env is None else env
    found = token_only(env, "TELTONIKA_FOTA_API_TOKEN", "TELTONIKA_FOTA_BASE_URL", TELTONIKA_FOTA_API)
    if found is None:
        return None
    return TeltonikaSettings(base_url=found[0], token=found[1], user_agent=env_value(env, "TELTONIKA_FOTA_USER_AGENT"))


def sandbox_env(url: str) -> dict[str, str]:
    """The variables that point a client at a Teltonika FOTA sandbox served at ``url``."""
    from fleet_pipeline.sandbox import teltonika

    return {"TELTONIKA_FOTA_BASE_URL": url, "TELTONIKA_FOTA_API_TOKEN": teltonika.API_TOKEN}
