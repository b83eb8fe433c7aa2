"""Which trackers can have a trip starting in a window, judged from the track points already loaded.

``track/list`` takes one tracker a call, and no documented call lists the tracks of several
trackers (docs/vendor-apis/navixy-official/track-list-and-read.md). But the same document defines
what a call for a tracker without a trip would return: nothing. ``track/read`` with ``filter=false``
returns every point the tracker recorded in the window, and flags ``parking: true`` on each point
that "does not correspond to a trip"; a track's ``start_date`` is "the initial point identified as
a track". A track that starts in the window therefore has a point in the window that is not a
parking point. A tracker whose points of the window are all parking points (or that has none)
has no trip starting there, and its ``track/list`` call is left out.

The points loaded into ``raw_navixy.track_points`` are trusted as that evidence only where they
are complete: every day of the window has points (the partitions were loaded), and validation
rejected no track point of those days (a rejected point might have been a trip's). Otherwise
every tracker is asked, as before. A point without the flag counts as a trip's (the flag is
optional: absent means not parking). With several Navixy accounts, only the account's own points
and rejects count.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from fleet_pipeline.ingest.warehouse import REJECTS_TABLE, WarehouseResource

TRACK_POINTS = "raw_navixy.track_points"


def trackers_with_trip_points(warehouse: WarehouseResource, days: Sequence[date],
                              tracker_ids: Sequence[int], account: str) -> list[int] | None:
    """The trackers of ``tracker_ids`` with a non-parking point of ``account`` on one of ``days``,
    in their order; None when its loaded track points of ``days`` cannot tell (not loaded, or
    some rejected)."""
    if not days:
        return None
    placeholders = ", ".join("?" for _ in days)
    # Rows written before tables had the column belong to the account "default".
    of_account = "AND coalesce(account, 'default') = ?"
    with warehouse.get_connection(holder="navixy trips: which trackers have trip points") as conn:
        tables = {name for (name,) in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'raw_navixy'").fetchall()}
        if "track_points" not in tables:
            return None
        loaded = {day for (day,) in conn.execute(
            f"SELECT DISTINCT partition_date FROM {TRACK_POINTS} WHERE partition_date IN ({placeholders}) "
            f"{of_account}", [*days, account]).fetchall()}
        if loaded != set(days):
            return None
        if REJECTS_TABLE in tables:
            (rejected,) = conn.execute(
                f"SELECT count(*) FROM raw_navixy.{REJECTS_TABLE} WHERE table_name = 'track_points' "
                f"AND partition_key IN ({placeholders}) {of_account}",
                [*(str(day) for day in days), account]).fetchone()
            if rejected:
                return None
        moving = {tracker_id for (tracker_id,) in conn.execute(
            f"SELECT DISTINCT tracker_id FROM {TRACK_POINTS} WHERE partition_date IN ({placeholders}) "
            f"AND NOT coalesce(parking, false) {of_account}", [*days, account]).fetchall()}
    return [tracker_id for tracker_id in tracker_ids if tracker_id in moving]
