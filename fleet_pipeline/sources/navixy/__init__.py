"""Navixy API v2 (white-labelled, e.g. ``https://host/api-v2``): session hash or API key, the
user's time zone on every date-time, and per-method batch, window and paging limits.

``client.NavixyClient`` returns vendor rows untouched except for one thing: every date-time is
converted to naive UTC at this edge (the API speaks the user's local time, DST included), so
nothing downstream ever sees a Navixy local time. Typing belongs to the schema layer.
"""

from fleet_pipeline.sources.navixy import settings
from fleet_pipeline.sources.spec import VendorSpec

SPEC = VendorSpec(
    name="navixy",
    env_prefix="NAVIXY_",
    credential_vars=settings.NAVIXY_CREDENTIAL_VARS,
    settings=settings.navixy_settings,
    resource="fleet_pipeline.sources.navixy.resources:NavixyResource",
    snapshot_contents="the Navixy trackers, their states and sensor readings",
    sandbox_env=settings.sandbox_env,
)
