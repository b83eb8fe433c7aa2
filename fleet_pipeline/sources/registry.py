"""The one list of vendors: a vendor is wired into the pipeline by its line here.

Settings (live-mode detection, the configuration check), the definitions (resources, assets,
jobs), the CLI (``sandbox serve``, ``config``), the fault tests and the benchmarks iterate over it;
``fleet_pipeline_tests/sources/test_registry.py`` fails when a package under ``sources/`` is missing.
"""

from __future__ import annotations

from fleet_pipeline.sources import aovx, navixy, telesto, teltonika, tracksolid
from fleet_pipeline.sources.spec import VendorSpec

VENDORS: tuple[VendorSpec, ...] = (
    tracksolid.SPEC,
    navixy.SPEC,
    teltonika.SPEC,
    aovx.SPEC,
    telesto.SPEC,
)

BY_NAME: dict[str, VendorSpec] = {spec.name: spec for spec in VENDORS}
