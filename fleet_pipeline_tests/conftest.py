"""Shared fixtures: the sandbox World and a running Tracksolid sandbox per test."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import pytest

from fleet_pipeline.sandbox import tracksolid
from fleet_pipeline.sandbox.server import ManualClock, SandboxServer
from fleet_pipeline.sandbox.tracksolid import TracksolidKnobs
from fleet_pipeline.sandbox.world import World

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
