"""Tracksolid settings: the TRACKSOLID_* variables, read from the environment (secrets never printed)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from fleet_pipeline.ingest.env import ConfigError, checked_url, env_value

TRACKSOLID_EU_NODE = "https://eu-open.tracksolidpro.com/route/rest"
TRACKSOLID_CREDENTIAL_VARS = (
    "TRACKSOLID_APP_KEY",
    "TRACKSOLID_APP_SECRET",
    "TRACKSOLID_USER_ID",
    "TRACKSOLID_USER_PASSWORD",
)
MILEAGE_UNITS = ("km", "m")


@dataclass(frozen=True, repr=False)
class TracksolidSettings:
    """Credentials and options for the real Tracksolid Pro API (``None`` fields never happen here)."""

    base_url: str
    app_key: str
    app_secret: str
    user_id: str
    user_password: str
    target_account: str
    mileage_unit: str

    def __repr__(self) -> str:  # secrets must not leak through logs or tracebacks
        return (
            f"TracksolidSettings(base_url={self.base_url!r}, app_key={self.app_key!r}, "
            f"user_id={self.user_id!r}, target_account={self.target_account!r}, "
            f"mileage_unit={self.mileage_unit!r}, app_secret=***, user_password=***)"
        )


def tracksolid_mileage_unit(env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    unit = (env_value(env, "TRACKSOLID_MILEAGE_UNIT") or "km").lower()
    if unit not in MILEAGE_UNITS:
        raise ConfigError(
            f"TRACKSOLID_MILEAGE_UNIT must be one of {', '.join(MILEAGE_UNITS)}, got {unit!r}"
        )
    return unit


def tracksolid_settings(env: Mapping[str, str] | None = None) -> TracksolidSettings | None:
    """The live Tracksolid configuration, or ``None`` when the embedded sandbox should be used."""
    env = os.environ if env is None else env
    present = {name: env_value(env, name) for name in TRACKSOLID_CREDENTIAL_VARS}
    missing = [name for name, value in present.items() if value is None]
    unit = tracksolid_mileage_unit(env)
    if len(missing) == len(present):
        if env_value(env, "TRACKSOLID_BASE_URL"):
            raise ConfigError(
                "TRACKSOLID_BASE_URL is set but no Tracksolid credentials are: set "
                + ", ".join(TRACKSOLID_CREDENTIAL_VARS)
                + " (or unset TRACKSOLID_BASE_URL to use the embedded sandbox)"
            )
        return None
    if missing:
        raise ConfigError(
            "Tracksolid configuration is partial: missing " + ", ".join(missing)
            + ". Set all of " + ", ".join(TRACKSOLID_CREDENTIAL_VARS)
            + " for the live API, or none of them for the embedded sandbox."
        )
    base_url = checked_url("TRACKSOLID_BASE_URL", env_value(env, "TRACKSOLID_BASE_URL") or TRACKSOLID_EU_NODE)
    user_id = present["TRACKSOLID_USER_ID"]
    return TracksolidSettings(
        base_url=base_url,
        app_key=present["TRACKSOLID_APP_KEY"],
        app_secret=present["TRACKSOLID_APP_SECRET"],
        user_id=user_id,
        user_password=present["TRACKSOLID_USER_PASSWORD"],
        target_account=env_value(env, "TRACKSOLID_TARGET_ACCOUNT") or user_id,
        mileage_unit=unit,
    )


def sandbox_env(url: str) -> dict[str, str]:
    """The variables that point a client at a Tracksolid sandbox served at ``url``."""
    from fleet_pipeline.sandbox import tracksolid

    return {
        "TRACKSOLID_BASE_URL": url + tracksolid.ROUTE_PATH,
        "TRACKSOLID_APP_KEY": tracksolid.APP_KEY,
        "TRACKSOLID_APP_SECRET": tracksolid.APP_SECRET,
        "TRACKSOLID_USER_ID": tracksolid.USER_ID,
        "TRACKSOLID_USER_PASSWORD": tracksolid.USER_PASSWORD,
    }


# The push receiver (issue 19, docs/push.md): Jimi sends this token in every push body.
PUSH_TOKEN_VAR = "FLEET_TRACKSOLID_PUSH_TOKEN"
PUSH_MAX_BODY_VAR = "FLEET_TRACKSOLID_PUSH_MAX_BODY_BYTES"
DEFAULT_PUSH_MAX_BODY_BYTES = 1024 * 1024  # 50 OBD items are ~100 KB: ten times that is no push
PUSH_MAX_BODY_RANGE = (4 * 1024, 64 * 1024 * 1024)


def push_token(env: Mapping[str, str] | None = None) -> str | None:
    """The token the push receiver requires (None when unset: the receiver then refuses to start)."""
    token = env_value(os.environ if env is None else env, PUSH_TOKEN_VAR)
    if token is not None and (len(token) < 8 or any(ch.isspace() for ch in token)):
        raise ConfigError(f"{PUSH_TOKEN_VAR} must be at least 8 characters without blanks "
                          "(the token configured for the push in Tracksolid Pro)")
    return token


def push_max_body_bytes(env: Mapping[str, str] | None = None) -> int:
    """The largest push body the receiver reads; a larger one is refused with 413."""
    env = os.environ if env is None else env
    raw = env_value(env, PUSH_MAX_BODY_VAR)
    least, most = PUSH_MAX_BODY_RANGE
    try:
        value = int(raw) if raw else DEFAULT_PUSH_MAX_BODY_BYTES
    except ValueError:
        raise ConfigError(f"{PUSH_MAX_BODY_VAR} must be a number of bytes, got {raw!r}") from None
    if not least <= value <= most:
        raise ConfigError(f"{PUSH_MAX_BODY_VAR} must be between {least} and {most} bytes, got {value}")
    return value
