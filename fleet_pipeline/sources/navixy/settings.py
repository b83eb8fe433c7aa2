"""Navixy settings: the NAVIXY_* variables, read from the environment (secrets never printed)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from fleet_pipeline.ingest.env import ConfigError, checked_url, env_value

NAVIXY_EU_API = "https://api.eu.navixy.com/v2"
NAVIXY_CREDENTIAL_VARS = ("NAVIXY_API_KEY", "NAVIXY_LOGIN", "NAVIXY_PASSWORD")


@dataclass(frozen=True, repr=False)
class NavixySettings:
    """The real Navixy API: an API key (never expires), or a login whose session hash can end."""

    base_url: str
    api_key: str | None
    login: str | None
    password: str | None

    def __repr__(self) -> str:
        how = "api key" if self.api_key else f"login {self.login!r}"
        return f"NavixySettings(base_url={self.base_url!r}, auth={how}, secrets=***)"


def navixy_settings(env: Mapping[str, str] | None = None) -> NavixySettings | None:
    """The live Navixy configuration, or ``None`` when no Navixy credential is set."""
    env = os.environ if env is None else env
    api_key, login, password = (env_value(env, name) for name in NAVIXY_CREDENTIAL_VARS)
    base_url = env_value(env, "NAVIXY_BASE_URL")
    if not (api_key or login or password):
        if base_url:
            raise ConfigError(
                "NAVIXY_BASE_URL is set but no Navixy credentials are: set NAVIXY_API_KEY, or "
                "NAVIXY_LOGIN and NAVIXY_PASSWORD (or unset NAVIXY_BASE_URL to use the embedded sandbox)"
            )
        return None
    if not api_key and not (login and password):
        missing = "NAVIXY_PASSWORD" if login else "NAVIXY_LOGIN"
        raise ConfigError(
            f"Navixy configuration is partial: missing {missing}. Set NAVIXY_API_KEY, or both "
            "NAVIXY_LOGIN and NAVIXY_PASSWORD."
        )
    base_url = checked_url("NAVIXY_BASE_URL", base_url or NAVIXY_EU_API)
    # An API key never expires, so it wins over a login when both are given.
    return NavixySettings(base_url=base_url.rstrip("/"), api_key=api_key,
                          login=None if api_key else login, password=None if api_key else password)


def sandbox_env(url: str) -> dict[str, str]:
    """The variables that point a client at a Navixy sandbox served at ``url``."""
    from fleet_pipeline.sandbox import navixy

    return {"NAVIXY_BASE_URL": url + navixy.API_PREFIX, "NAVIXY_API_KEY": navixy.API_KEY}
