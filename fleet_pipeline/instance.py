"""The project's own Dagster instance home (``data/dagster_home``, git-ignored).

Keeping it inside the project means nothing is written to the user's home directory, and runs
launched by ``make demo`` are the same runs ``make ui`` shows afterwards.
"""

from __future__ import annotations

import os
from pathlib import Path

from fleet_pipeline import settings

DAGSTER_YAML = """\
# Written by fleet_pipeline/instance.py on every CLI start; edit that file, not this one.
telemetry:
  enabled: false
nux:
  enabled: false
"""


def prepare_instance_home() -> Path:
    """Create the instance home with its settings and point ``DAGSTER_HOME`` at it."""
    home = settings.dagster_home()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists() or config.read_text() != DAGSTER_YAML:
        config.write_text(DAGSTER_YAML)
    os.environ["DAGSTER_HOME"] = str(home)
    return home
