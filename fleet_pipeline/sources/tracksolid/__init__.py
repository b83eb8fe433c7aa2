"""Tracksolid Pro (Jimi IoT): the signed form-POST API, its token lifecycle and its report limits.

``client.TracksolidClient`` returns vendor rows untouched; the schema layer types them.
"""

from fleet_pipeline.sources.spec import VendorSpec
from fleet_pipeline.sources.tracksolid import settings

SPEC = VendorSpec(
    name="tracksolid",
    env_prefix="TRACKSOLID_",
    credential_vars=settings.TRACKSOLID_CREDENTIAL_VARS,
    settings=settings.tracksolid_settings,
    resource="fleet_pipeline.sources.tracksolid.resources:TracksolidResource",
    snapshot_contents="the Tracksolid device list and last positions",
    sandbox_env=settings.sandbox_env,
    extra_readers=(settings.tracksolid_mileage_unit, settings.push_token, settings.push_max_body_bytes),
)
