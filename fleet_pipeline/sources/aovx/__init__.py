"""AOVX cloud (RuoYi backend, e.g. ``https://cloud.aovx.com/prod``): the OTA report of terminals.

``client.AovxClient`` returns report rows exactly as sent: ``total``/``size`` strings are read for
paging only, ``upgradeInfo`` stays a JSON string and times stay vendor strings; parsing and typing
belong to the schema layer. Terminal ids (AOVX's 32-hex device ids) must be known: the vendor
documents no listing call (the sandbox offers one, ``terminals()``).
"""

from fleet_pipeline.sources.aovx import settings
from fleet_pipeline.sources.spec import VendorSpec

SPEC = VendorSpec(
    name="aovx",
    env_prefix="AOVX_",
    credential_vars=("AOVX_TOKEN",),
    settings=settings.aovx_settings,
    resource="fleet_pipeline.sources.aovx.resources:AovxResource",
    snapshot_contents="the AOVX OTA report and terminals",
    sandbox_env=settings.sandbox_env,
    extra_readers=(settings.aovx_terminal_ids, settings.aovx_history_days),
)
