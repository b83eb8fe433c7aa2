"""Vendor accounts: any number per vendor, from the file FLEET_ACCOUNTS_FILE names.

A company whose devices are spread over several accounts of one vendor (a Navixy account per
region, a Tracksolid account per subsidiary) lists them in a TOML file, one array of tables per
vendor of the registry::

    [[navixy]]
    name = "eu"                                             # a-z, 0-9, _ ; unique per vendor
    settings = { NAVIXY_BASE_URL = "https://api.eu.navixy.com/v2" }
    credentials = { NAVIXY_API_KEY = "FLEET_NAVIXY_EU_API_KEY" }

``settings`` gives the vendor's own non-secret variables for this account; ``credentials`` maps
each of the vendor's credential variables to the NAME of the environment variable that holds the
secret, so the file never holds one. An account is read exactly as the vendor's single-account
variables would be (its ``settings`` reader validates it), from a view of the environment in
which the vendor's own variables are the account's alone.

The vendor's single-account variables (``NAVIXY_API_KEY``, ...) keep meaning one account, named
``default`` (so does the sandbox): with no file, every vendor has that one account, as before.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fleet_pipeline.ingest.env import ConfigError, env_value

if TYPE_CHECKING:
    from fleet_pipeline.sources.spec import VendorSpec

ACCOUNTS_FILE_VAR = "FLEET_ACCOUNTS_FILE"
DEFAULT_ACCOUNT = "default"
# Account names become part of asset keys, op tags and file names: keep them plain.
_ACCOUNT_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")
_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ENTRY_KEYS = {"name", "settings", "credentials"}


@dataclass(frozen=True)
class AccountEntry:
    """One account of the file: the vendor's non-secret variables and where its secrets live."""

    vendor: str
    name: str
    settings: Mapping[str, str]
    # vendor credential variable -> name of the environment variable holding its value
    credentials: Mapping[str, str]

    @property
    def label(self) -> str:
        return f"{ACCOUNTS_FILE_VAR}: {self.vendor} account {self.name!r}"


def _registry() -> Mapping[str, VendorSpec]:
    # The registry imports every vendor package, whose settings import this module's siblings only.
    from fleet_pipeline.sources.registry import BY_NAME

    return BY_NAME


def _read_file(env: Mapping[str, str]) -> tuple[Path, dict[str, Any]] | None:
    configured = env_value(env, ACCOUNTS_FILE_VAR)
    if configured is None:
        return None
    path = Path(configured)
    try:
        return path, tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{ACCOUNTS_FILE_VAR} names {configured!r}, which does not exist") from None
    except OSError as exc:
        raise ConfigError(f"{ACCOUNTS_FILE_VAR}: cannot read {configured!r}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{ACCOUNTS_FILE_VAR}: {configured!r} is not valid TOML: {exc}") from None


def file_accounts(env: Mapping[str, str] | None = None) -> dict[str, list[AccountEntry]]:
    """Vendor -> the accounts the file lists for it, in file order ({} without a file).

    Checks the file's shape only (vendors, names, keys); :func:`account_env` checks an account's
    values, and :func:`check_accounts` every account at once.
    """
    env = os.environ if env is None else env
    read = _read_file(env)
    if read is None:
        return {}
    path, document = read
    vendors = _registry()
    accounts: dict[str, list[AccountEntry]] = {}
    for vendor, entries in document.items():
        if vendor not in vendors:
            raise ConfigError(f"{ACCOUNTS_FILE_VAR}: unknown vendor {vendor!r} in {str(path)!r} "
                              f"(known: {', '.join(vendors)})")
        if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
            raise ConfigError(f"{ACCOUNTS_FILE_VAR}: {vendor} must be an array of tables ([[{vendor}]] blocks)")
        accounts[vendor] = [_entry(vendors[vendor], n, entry) for n, entry in enumerate(entries, start=1)]
        names = [account.name for account in accounts[vendor]]
        if vendor_env_credentials(vendors[vendor], env):
            # The vendor's own variables are the account "default".
            names.append(DEFAULT_ACCOUNT)
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            default_note = (f" ({DEFAULT_ACCOUNT!r} is the account of the {vendors[vendor].env_prefix}* variables)"
                            if DEFAULT_ACCOUNT in duplicates else "")
            raise ConfigError(f"{ACCOUNTS_FILE_VAR}: {vendor} has more than one account named "
                              f"{', '.join(repr(n) for n in duplicates)}{default_note}")
    return accounts


def _entry(spec: VendorSpec, position: int, entry: Mapping[str, Any]) -> AccountEntry:
    where = f"{ACCOUNTS_FILE_VAR}: {spec.name} account #{position}"
    unknown = sorted(set(entry) - _ENTRY_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)} (allowed: name, settings, credentials)")
    name = entry.get("name")
    if not isinstance(name, str) or not _ACCOUNT_NAME.fullmatch(name):
        raise ConfigError(f"{where}: name must be 1-32 characters a-z, 0-9 or _, starting with a letter, "
                          f"got {name!r}")
    where = f"{ACCOUNTS_FILE_VAR}: {spec.name} account {name!r}"
    settings, credentials = entry.get("settings", {}), entry.get("credentials", {})
    for what, table in (("settings", settings), ("credentials", credentials)):
        if not isinstance(table, dict) or not all(isinstance(v, str) for v in table.values()):
            raise ConfigError(f"{where}: {what} must be a table of text values")
    for variable in settings:
        if variable in spec.credential_vars:
            raise ConfigError(f"{where}: {variable} is a credential: put the NAME of the environment variable "
                              f"holding it under credentials, never the secret in the file")
        if not variable.startswith(spec.env_prefix):
            raise ConfigError(f"{where}: setting {variable} is not one of the {spec.name} variables "
                              f"({spec.env_prefix}*)")
    for variable, source in credentials.items():
        if variable not in spec.credential_vars:
            raise ConfigError(f"{where}: {variable} is not a {spec.name} credential "
                              f"(one of {', '.join(spec.credential_vars)})")
        if not _VARIABLE_NAME.fullmatch(source):
            # Never echo the value: it may be the secret itself, pasted by mistake.
            raise ConfigError(f"{where}: credentials.{variable} must be the name of an environment "
                              f"variable, not the secret itself")
    if not credentials:
        raise ConfigError(f"{where}: no credentials (name the variables holding "
                          f"{' / '.join(spec.credential_vars)})")
    return AccountEntry(spec.name, name, dict(settings), dict(credentials))


def vendor_env_credentials(spec: VendorSpec, env: Mapping[str, str]) -> bool:
    """Whether the vendor's own single-account credential variables are set."""
    return any(env_value(env, variable) for variable in spec.credential_vars)


def account_names(spec: VendorSpec, env: Mapping[str, str] | None = None) -> list[str]:
    """The vendor's accounts: ``default`` (its own variables, or the sandbox) unless the file lists
    accounts for it and its own variables are unset, then the file's, in file order."""
    env = os.environ if env is None else env
    listed = [account.name for account in file_accounts(env).get(spec.name, [])]
    if not listed:
        return [DEFAULT_ACCOUNT]
    return ([DEFAULT_ACCOUNT] if vendor_env_credentials(spec, env) else []) + listed


def account_env(spec: VendorSpec, account: str, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment as the vendor's settings reader should see it for ``account`` of the file:
    none of the vendor's own variables but the account's settings and credentials."""
    env = os.environ if env is None else env
    entry = next((a for a in file_accounts(env).get(spec.name, []) if a.name == account), None)
    if entry is None:
        raise ConfigError(f"{ACCOUNTS_FILE_VAR}: {spec.name} has no account {account!r}")
    view = {name: value for name, value in env.items() if not name.startswith(spec.env_prefix)}
    view.update(entry.settings)
    for variable, source in entry.credentials.items():
        value = env_value(env, source)
        if value is None:
            raise ConfigError(f"{entry.label}: {source} (its {variable}) is not set")
        view[variable] = value
    return view


def check_accounts(env: Mapping[str, str] | None = None) -> None:
    """Every account of the file read as its vendor would read it; the first problem raises,
    naming the account (never a secret)."""
    env = os.environ if env is None else env
    vendors = _registry()
    for vendor, entries in file_accounts(env).items():
        for entry in entries:
            try:
                configured = vendors[vendor].settings(account_env(vendors[vendor], entry.name, env))
            except ConfigError as exc:
                if str(exc).startswith(ACCOUNTS_FILE_VAR):
                    raise
                raise ConfigError(f"{entry.label}: {exc}") from None
            if configured is None:
                raise ConfigError(f"{entry.label}: its credentials do not configure {vendor}")
