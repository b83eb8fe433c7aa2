"""Fake Teltonika FOTA WEB API (`https://api.teltonika.lt`) over the World's `teltonika_fota` devices.

SPEC.md in this folder is the API the sandbox speaks, rule by rule. The modules: `protocol`
(token, User-Agent rule, errors, query parsing, paging), `access` (rate limit and header checks),
`identities` (serials, group, batch and task ids, background actions), `synthesis` (World truth
as FOTA rows), `endpoints` (the routes) and `app` (routing, knobs, `make_server`).
"""

from fleet_pipeline.sandbox.teltonika.app import TeltonikaApp, TeltonikaKnobs, make_server
from fleet_pipeline.sandbox.teltonika.identities import (
    COMPANY_ID,
    COMPANY_NAME,
    GROUP_ID_BASE,
    BackgroundAction,
    background_actions,
    group_id_of,
    serial_of,
    task_id_of,
    task_status_id,
)
from fleet_pipeline.sandbox.teltonika.protocol import API_TOKEN, CREDENTIALS, is_acceptable_user_agent

__all__ = [
    "API_TOKEN",
    "COMPANY_ID",
    "COMPANY_NAME",
    "CREDENTIALS",
    "GROUP_ID_BASE",
    "BackgroundAction",
    "TeltonikaApp",
    "TeltonikaKnobs",
    "background_actions",
    "group_id_of",
    "is_acceptable_user_agent",
    "make_server",
    "serial_of",
    "task_id_of",
    "task_status_id",
]
