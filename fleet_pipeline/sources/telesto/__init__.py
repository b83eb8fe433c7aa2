"""Telesto inventory API (``GET https://telesto.app/v2/products``): products and stock on hand.

``client.TelestoClient`` returns the vendor rows untouched (every value a string, nulls as
``""``, ``created`` without a time zone); typing belongs to the schema layer. Its one hard job is
the rate limit: 100 requests per hour per IP, and going over blocks the IP for 15 minutes, so the
client keeps a cross-process hourly budget and refuses a call rather than earn the block.
"""

from fleet_pipeline.sources.spec import VendorSpec
from fleet_pipeline.sources.telesto import settings

SPEC = VendorSpec(
    name="telesto",
    env_prefix="TELESTO_",
    credential_vars=("TELESTO_API_KEY",),
    settings=settings.telesto_settings,
    resource="fleet_pipeline.sources.telesto.resources:TelestoResource",
    snapshot_contents="the Telesto products and their stock on hand",
    sandbox_env=settings.sandbox_env,
)
