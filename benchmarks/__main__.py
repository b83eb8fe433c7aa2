"""``python -m benchmarks``: see ``benchmarks/__init__.py``; ``python -m benchmarks peer``: ``benchmarks/peer.py``."""

from __future__ import annotations

import sys

if sys.argv[1:2] == ["peer"]:  # issue 17's comparison with dlt: see benchmarks/peer.py
    from benchmarks.peer import main

    sys.exit(main(sys.argv[2:]))

from benchmarks.run import main

sys.exit(main())
