"""AOVX settings: the AOVX_* variables, read from the environment (secrets never printed)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from fleet_pipeline.ingest.env import ConfigError, days_between, env_value, token_only

AOVX_US_SERVER = "https://cloud.aovx.com/prod"


@dataclass(frozen=True, repr=False)
class AovxSettings:
    base_url: str
    token: str
    terminal_ids: tuple[str, ...]

    def __repr__(self) -> str:
        return f"AovxSettings(base_url={self.base_url!r}, terminals={len(self.terminal_ids)}, token=***)"


def aovx_terminal_ids(env: Mapping[str, str] | None = None) -> tuple[str, ...] | None:
    """AOVX_TERMINAL_IDS (comma or whitespace separated) or the file AOVX_TERMINAL_IDS_FILE names
    (one id per line, # comments); None when neither is set."""
    env = os.environ if env is None else env
    inline, path = env_value(env, "AOVX_TERMINAL_IDS"), env_value(env, "AOVX_TERMINAL_IDS_FILE")
    if inline and path:
        raise ConfigError("set AOVX_TERMINAL_IDS or AOVX_TERMINAL_IDS_FILE, not both")
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"AOVX_TERMINAL_IDS_FILE {path!r} cannot be read: {exc.strerror}") from exc
        text = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    elif inline:
        text = inline
    else:
        return None
    ids = tuple(dict.fromkeys(part for part in text.replace(",", " ").split() if part))
    if not ids:
        raise ConfigError("the AOVX terminal id list is empty")
    return ids


def aovx_settings(env: Mapping[str, str] | None = None) -> AovxSettings | None:
    env = os.environ if env is None else env
    found = token_only(env, "AOVX_TOKEN", "AOVX_BASE_URL", AOVX_US_SERVER)
    if found is None:
        return None
    ids = aovx_terminal_ids(env)
    if ids is None:
        raise ConfigError(
            "AOVX_TOKEN is set but no terminal ids are: the AOVX API cannot list terminals, so name "
            "them in AOVX_TERMINAL_IDS (comma separated) or in a file named by AOVX_TERMINAL_IDS_FILE"
        )
    return AovxSettings(base_url=found[0], token=found[1], terminal_ids=ids)


# AOVX documents no retention for its OTA report; its sandbox keeps a year, as do RuoYi log tables
# by default. The history asset reads this far back on its first run.
DEFAULT_AOVX_HISTORY_DAYS = 365
MAX_AOVX_HISTORY_DAYS = 3650


def aovx_history_days(env: Mapping[str, str] | None = None) -> int:
    """How far back the AOVX OTA history reaches on its first run (AOVX_OTA_HISTORY_DAYS)."""
    return days_between(os.environ if env is None else env, "AOVX_OTA_HISTORY_DAYS", DEFAULT_AOVX_HISTORY_DAYS,
                        1, MAX_AOVX_HISTORY_DAYS)


def sandbox_env(url: str) -> dict[str, str]:
    """The variables that point a client at an AOVX sandbox served at ``url`` (the terminal ids are
    listed by the sandbox's own listing call, which the real API does not have)."""
    from fleet_pipeline.sandbox import aovx

    return {
        "AOVX_BASE_URL": url + aovx.API_PREFIX, "AOVX_TOKEN": aovx.TOKEN,
        "AOVX_TERMINAL_IDS": "<the terminalId values of GET " + url + aovx.TERMINAL_LIST_PATH + ">",
    }
