"""Teltonika FOTA WEB API (``https://api.teltonika.lt``): bearer token, a mandatory User-Agent,
about 100 requests a minute per user, and Laravel-style TOP-LEVEL pages of at most 100 rows.

``client.TeltonikaFotaClient`` returns vendor rows as sent, except the IMEI: an int64 JSON
number on the wire, a 15-digit string here (never a float). Typing belongs to the schema layer.
"""

from fleet_pipeline.sources.spec import VendorSpec
from fleet_pipeline.sources.teltonika import settings

SPEC = VendorSpec(
    name="teltonika",
    env_prefix="TELTONIKA_FOTA_",
    credential_vars=("TELTONIKA_FOTA_API_TOKEN",),
    settings=settings.teltonika_settings,
    resource="fleet_pipeline.sources.teltonika.resources:TeltonikaResource",
    snapshot_contents="the Teltonika FOTA devices, groups, tasks and batches",
    sandbox_env=settings.sandbox_env,
)
