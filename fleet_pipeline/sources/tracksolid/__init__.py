"""Tracksolid Pro (Jimi IoT): the signed form-POST API, its token lifecycle and its report limits.

``client.TracksolidClient`` returns vendor rows untouched; the schema layer types them.
"""

from fleet_pipeline.sources.tracksolid import settings
from fleet_pipeline.sources.spec import VendorSpec

SPEC = VendorSpec(
    name="tracksolid",
    env_prefix="TRACKSOLID_",
    credential_vars=settings.TRACKSOLID_CREDENTIAL_VARS,
    settings=settings.tracksolid_settings,
    extra_readers=(settings.tracksolid_mileage_unit,),
    resource="fleet_pipeline.sources.tracksolid.resources:TracksolidResource",
    assets="fleet_pipeline.sources.tracksolid.assets:tracksolid_assets",
    snapshot_contents="the Tracksolid device list and last positions",
    sandbox="fleet_pipeline.sandbox.tracksolid",
    sandbox_env=settings.sandbox_env,
)
