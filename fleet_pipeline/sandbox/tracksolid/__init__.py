"""Fake Tracksolid Pro (Jimi IoT) open API over the sandbox World's `tracksolid` devices.

SPEC.md in this folder is the API the sandbox speaks, rule by rule. The modules: `protocol`
(credentials, limits, signing, tokens, parameters, answers), `access` (frequency limit,
verification, token endpoints, account scope), `synthesis` (World truth as Jimi rows),
`endpoints` (the data methods), `faults` (Tracksolid's row-level faults) and `app` (dispatch,
knobs, `make_server`).
"""

from fleet_pipeline.sandbox.tracksolid.app import TracksolidApp, TracksolidKnobs, make_server
from fleet_pipeline.sandbox.tracksolid.protocol import (
    APP_KEY,
    APP_SECRET,
    CREDENTIALS,
    ROUTE_PATH,
    USER_ID,
    USER_PASSWORD,
)

__all__ = [
    "APP_KEY",
    "APP_SECRET",
    "CREDENTIALS",
    "ROUTE_PATH",
    "USER_ID",
    "USER_PASSWORD",
    "TracksolidApp",
    "TracksolidKnobs",
    "make_server",
]
