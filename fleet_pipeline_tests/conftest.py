"""Shared fixtures: the sandbox World and a running Tracksolid or Navixy sandbox per test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import pytest

from fleet_pipeline.sandbox import navixy, tracksolid
from fleet_pipeline.sandbox.navixy import NavixyKnobs
from fleet_pipeline.sandbox.server import ManualClock, SandboxServer
from fleet_pipeline.sandbox.tracksolid import TracksolidKnobs
from fleet_pipeline.sandbox.world import World

# Runs that are meant to fail would otherwise wait out the source assets' step retries (a minute
# and more each). Set before any test module imports an asset module (the policy is read at
# import); tests that exercise step retries give their job its own policy.
os.environ.setdefault("FLEET_STEP_RETRIES", "0")
# Tests name fixed days around WORLD_NOW (2026-11); by default the partitions start 90 days before
# the real today, which would drop those days as the calendar moves on. (The UI test clears it: it
# checks the default window.)
os.environ.setdefault("FLEET_PARTITIONS_START", "2026-01-01")

# A fixed clock: what the sandbox may reveal (late points, trips that have ended) must not
# depend on when the suite runs.
WORLD_NOW = datetime(2026, 11, 20, 12, 0, 0)


@pytest.fixture(scope="session")
def world() -> World:
    return World(seed=42, n_devices=60, now=lambda: WORLD_NOW)


@dataclass
class TracksolidSandbox:
    """A running Tracksolid sandbox and what a client needs to talk to it.

    `clock` is the sandbox's own clock (starts at `world.now()`); move it to reveal late points,
    expire tokens or release the once-a-minute token limit. A client must sign its `timestamp`
    with `now()`, since the server rejects timestamps more than 10 minutes away from it.
    """

    server: SandboxServer[TracksolidKnobs]
    world: World
    clock: ManualClock
    credentials: dict[str, str]

    @property
    def base_url(self) -> str:
        """Server root, e.g. http://127.0.0.1:41234."""
        return self.server.base_url

    @property
    def route_url(self) -> str:
        """The API endpoint (the doc's "regional base URL"): base_url + /route/rest."""
        return self.server.base_url + tracksolid.ROUTE_PATH

    @property
    def knobs(self) -> TracksolidKnobs:
        return self.server.knobs

    def now(self) -> datetime:
        return self.clock()


@pytest.fixture
def tracksolid_sandbox(world: World) -> Iterator[TracksolidSandbox]:
    """A fresh server per test, so knobs, limits and the request log never leak between tests."""
    clock = ManualClock(world.now())
    with tracksolid.make_server(world, now=clock) as server:
        yield TracksolidSandbox(server=server, world=world, clock=clock,
                                credentials=dict(tracksolid.CREDENTIALS))


@dataclass
class NavixySandbox:
    """A running Navixy sandbox and what a client needs to talk to it.

    `base_url` already ends in /api-v2 (white-label style): calls are `{base_url}/tracker/list`.
    `clock` is the sandbox clock (starts at `world.now()`); move it to end session hashes
    (`knobs.session_lifetime_s`) or to reveal late points. The 50/s rate window runs on the
    real monotonic clock here; tests that need a frozen one build their own server.
    """

    server: SandboxServer[NavixyKnobs]
    world: World
    clock: ManualClock
    credentials: dict[str, str]

    @property
    def base_url(self) -> str:
        return self.server.base_url + navixy.API_PREFIX

    @property
    def knobs(self) -> NavixyKnobs:
        return self.server.knobs

    def now(self) -> datetime:
        return self.clock()


@pytest.fixture
def navixy_sandbox(world: World) -> Iterator[NavixySandbox]:
    """A fresh Navixy server per test, so knobs, sessions, limits and the log never leak."""
    clock = ManualClock(world.now())
    with navixy.make_server(world, now=clock) as server:
        yield NavixySandbox(server=server, world=world, clock=clock,
                            credentials=dict(navixy.CREDENTIALS))
