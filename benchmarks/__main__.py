"""``python -m benchmarks``: see ``benchmarks/__init__.py``."""

from __future__ import annotations

import sys

from benchmarks.run import main

sys.exit(main())
