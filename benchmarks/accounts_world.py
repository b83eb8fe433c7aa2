"""The accounts benchmark's World: Navixy accounts of about ``devices`` trackers each, and their file.

The World puts 55 % of its devices on Navixy (Teltonika and AOVX), two thirds of those in the root
account ``fleetco-nvx`` and the rest evenly over its 4-5 sub-accounts (one of them a sub-account's
child): ``sandbox/world/fleet.py``. Each sub-account thus holds about 4 % of the World. The
benchmark extracts the largest sub-accounts (the root, with eight times as many devices, would
not be "about ``devices``"), so the World is sized from a smaller one's shares until the smallest
account extracted lists about ``devices`` trackers. A device's account depends on its index only,
so the shares hold at any size; the real counts are reported.

Each account is one block of a FLEET_ACCOUNTS_FILE with its own API key
(``sandbox.navixy.account_api_key``: the key sees that account's devices alone) held in an
environment variable the file names, as a deployment configures them (docs/configuration.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fleet_pipeline.sandbox import navixy as sandbox_navixy
from fleet_pipeline.sandbox.world import World

NAVIXY_ROOT = "fleetco-nvx"
# The World the shares are read from: large enough that each sub-account has ~200 devices.
PROBE_DEVICES = 5_000


@dataclass(frozen=True)
class BenchAccount:
    """One Navixy account extracted: its name in the accounts file, the World account its key
    reaches, and the trackers the sandbox lists for it."""

    name: str
    world_account: str
    trackers: int

    @property
    def key_variable(self) -> str:
        return f"BENCH_NAVIXY_KEY_{self.name.upper()}"


def listed_trackers(world: World, world_account: str) -> int:
    """The trackers the sandbox lists for the account's key: its devices activated by now (the
    deleted tracker ids lie past the World, in no account)."""
    return len(world.devices_of_account(world_account, at=world.now()))


def sub_accounts_by_size(world: World) -> list[BenchAccount]:
    """The Navixy sub-accounts, largest first (ties by id)."""
    found = [BenchAccount(a.account_id.removeprefix(NAVIXY_ROOT + "-").replace("-", "_"), a.account_id,
                          listed_trackers(world, a.account_id))
             for a in world.accounts if a.platform == "navixy" and a.parent_id is not None]
    return sorted(found, key=lambda a: (-a.trackers, a.world_account))


def sized_world(seed: int, devices: int, accounts: int) -> tuple[World, list[BenchAccount]]:
    """A World whose ``accounts`` largest Navixy sub-accounts list about ``devices`` trackers each
    (the smallest of them), and those accounts, largest first."""
    probe = sub_accounts_by_size(World(seed=seed, n_devices=PROBE_DEVICES))
    if accounts > len(probe):
        raise ValueError(f"the World of seed {seed} has {len(probe)} Navixy sub-accounts; {accounts} asked for")
    share = probe[accounts - 1].trackers / PROBE_DEVICES
    world = World(seed=seed, n_devices=max(round(devices / share), accounts))
    return world, sub_accounts_by_size(world)[:accounts]


def write_accounts_file(path: Path, base_url: str, accounts: list[BenchAccount]) -> dict[str, str]:
    """The accounts file for ``accounts`` on the Navixy at ``base_url`` (the API prefix included);
    returns the environment variables holding their keys, which the file names."""
    path.write_text("\n".join(
        f'[[navixy]]\nname = "{a.name}"\nsettings = {{ NAVIXY_BASE_URL = "{base_url}" }}\n'
        f'credentials = {{ NAVIXY_API_KEY = "{a.key_variable}" }}\n' for a in accounts))
    return {a.key_variable: sandbox_navixy.account_api_key(a.world_account) for a in accounts}
