"""``python -m benchmarks``: see ``benchmarks/__init__.py``; ``python -m benchmarks peer``: ``benchmarks/peer.py``;
``python -m benchmarks archive``: ``benchmarks/archive_size.py``."""

from __future__ import annotations

import sys

if sys.argv[1:2] == ["peer"]:  # issue 17's comparison with dlt: see benchmarks/peer.py
    from benchmarks.peer import main

    sys.exit(main(sys.argv[2:]))

if sys.argv[1:2] == ["archive"]:  # issue 19's raw archive, its size per device-day
    from benchmarks.archive_size import main

    sys.exit(main(sys.argv[2:]))

from benchmarks.run import main

sys.exit(main())
