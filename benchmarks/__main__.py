"""``python -m benchmarks``: see ``benchmarks/__init__.py``. A first argument naming one of
:data:`SUBCOMMANDS` runs that module's ``main`` with the rest of the arguments instead."""

from __future__ import annotations

import importlib
import sys

SUBCOMMANDS = {
    "peer": "benchmarks.peer",  # issue 17's comparison with dlt
    "push": "benchmarks.push_load",  # issue 19's load test of the push receiver
    "archive": "benchmarks.archive_size",  # issue 19's raw archive, its size per device-day
    "accounts": "benchmarks.accounts",  # issue 18's Navixy accounts x Celery workers, both modes
}

if sys.argv[1:2] and sys.argv[1] in SUBCOMMANDS:
    sys.exit(importlib.import_module(SUBCOMMANDS[sys.argv[1]]).main(sys.argv[2:]))

from benchmarks.run import main  # noqa: E402

sys.exit(main())
