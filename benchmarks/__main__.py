"""``python -m benchmarks``: see ``benchmarks/__init__.py``; ``python -m benchmarks peer``: ``benchmarks/peer.py``;
``python -m benchmarks push``: ``benchmarks/push_load.py``."""

from __future__ import annotations

import sys

if sys.argv[1:2] == ["peer"]:  # issue 17's comparison with dlt: see benchmarks/peer.py
    from benchmarks.peer import main

    sys.exit(main(sys.argv[2:]))

if sys.argv[1:2] == ["push"]:  # issue 19's load test of the push receiver: see benchmarks/push_load.py
    from benchmarks.push_load import main

    sys.exit(main(sys.argv[2:]))

from benchmarks.run import main

sys.exit(main())
