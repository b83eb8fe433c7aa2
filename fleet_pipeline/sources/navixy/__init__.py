"""Navixy API v2 (white-labelled, e.g. ``https://host/api-v2``): session hash or API key, the
user's time zone on every date-time, and per-method batch, window and paging limits.

``client.NavixyClient`` returns vendor rows untouched except for one thing: every date-time is
converted to naive UTC at this edge (the API speaks the user's local time, DST included), so
nothing downstream ever sees a Navixy local time. Typing belongs to the schema layer.
"""
