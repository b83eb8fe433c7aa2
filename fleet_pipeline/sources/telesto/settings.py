"""Telesto settings: the TELESTO_* variables, read from the environment (secrets never printed)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from fleet_pipeline.ingest.env import token_only

TELESTO_API = "https://telesto.app"


@dataclass(frozen=True, repr=False)
class TelestoSettings:
    base_url: str
    api_key: str

    def __repr__(self) -> str:
        return f"TelestoSettings(base_url={self.base_url!r}, api_key=***)"


def telesto_settings(env: Mapping[str, str] | None = None) -> TelestoSettings | None:
    env = os.environ if env is None else env
    found = token_only(env, "TELESTO_API_KEY", "TELESTO_BASE_URL", TELESTO_API)
    return None if found is None else TelestoSettings(base_url=found[0], api_key=found[1])


def sandbox_env(url: str) -> dict[str, str]:
    """The variables that point a client at a Telesto sandbox served at ``url``."""
    from fleet_pipeline.sandbox import telesto

    return {"TELESTO_BASE_URL": url, "TELESTO_API_KEY": telesto.API_KEY}
