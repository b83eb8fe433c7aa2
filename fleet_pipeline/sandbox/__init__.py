"""The synthetic fleet world and one fake server per vendor.

`world/` is the ground truth (fleet, days, firmware, stock); `server.py`, `messages.py` and
`faults.py` are the plumbing every fake server shares; each vendor's package (`tracksolid/`,
`navixy/`, `teltonika/`, `aovx/`, `telesto/`) speaks that vendor's API over the World, as its
SPEC.md states.
"""
