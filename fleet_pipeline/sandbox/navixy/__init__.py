"""Fake Navixy API v2 (white-label style, `{host}/api-v2/...`) over the World's `navixy` devices.

SPEC.md in this folder is the API the sandbox speaks, rule by rule. The modules: `protocol`
(credentials, error codes, parameters, date-times, answers), `access` (rate limit, API key and
session hashes), `synthesis` (World truth as Navixy rows), `endpoints` and `track_endpoints`
(the request handlers), `faults` (Navixy's row-level faults) and `app` (dispatch, knobs,
`make_server`).
"""

from fleet_pipeline.sandbox.navixy.app import NavixyApp, NavixyKnobs, make_server
from fleet_pipeline.sandbox.navixy.protocol import (
    API_KEY,
    API_PREFIX,
    CREDENTIALS,
    LOGIN,
    PASSWORD,
    USER_TIME_ZONE,
    account_api_key,
)
from fleet_pipeline.sandbox.navixy.synthesis import (
    TRACKER_ID_BASE,
    default_blocked_tracker_ids,
    default_deleted_tracker_ids,
    track_id,
    tracker_id,
)

__all__ = [
    "API_KEY",
    "API_PREFIX",
    "CREDENTIALS",
    "LOGIN",
    "PASSWORD",
    "TRACKER_ID_BASE",
    "USER_TIME_ZONE",
    "NavixyApp",
    "NavixyKnobs",
    "account_api_key",
    "default_blocked_tracker_ids",
    "default_deleted_tracker_ids",
    "make_server",
    "track_id",
    "tracker_id",
]
