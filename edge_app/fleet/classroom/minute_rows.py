"""The minute rows a desk sends, and what the page makes of them: the last ten minutes.

Besides each desk's state, the desks' minute rows (seconds per engagement group) of the
last ``RECENT_S`` are kept in memory, never on disk: each tile and the class as a whole
show how much of the last ten minutes was engaged, a steadier figure than the state of
the moment.
"""
from __future__ import annotations

import math

from edge_app.fleet.classroom.desk_clock import CLOCK_SKEW_S

RECENT_S = 600.0  # "the last 10 minutes": minute rows that ended earlier are forgotten (``counts_as_recent``)
MINUTE_S = 60.0  # what one minute row covers: it is sent as its minute ends
# a minute row's seconds per group, as a device sends them (store.schema.GROUP_COLUMNS), and the group each counts for
MINUTE_FIELDS = {"engaged_s": "Engaged", "partial_s": "Partially engaged", "not_engaged_s": "Not engaged",
                 "distracted_s": "Distracted", "absent_s": "Absent", "present_s": "Present"}  # none from older desks
MAX_MINUTE_S = 120.0  # seconds one row may hold (a minute has 60; a device carries up to 5 s of a gap over)
MAX_MINUTE_ROWS = 20  # per desk: ten minutes' rows and their repeats; a flood of made-up starts cannot grow it


def minute_seconds_ok(value) -> bool:
    """One group's seconds in a minute row as a desk may send them: a number from 0 to ``MAX_MINUTE_S``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value) and 0 <= value <= MAX_MINUTE_S
    except OverflowError:  # an integer too large for a float
        return False


def counts_as_recent(start: float, now: float) -> bool:
    """A minute row (its ``start`` by our clock) counts in "the last 10 minutes" when its
    minute ended in them: counted by start, a steady desk showed nine minutes, not ten, for
    all but an instant of each minute. Not after now either: rows kept from before this
    server's clock was set back are no later minutes."""
    return now - RECENT_S < start + MINUTE_S and start <= now + CLOCK_SKEW_S


def stops_counting_at(start: float) -> float:
    """When a row starting at ``start`` stops counting (``counts_as_recent``)."""
    return start + MINUTE_S + RECENT_S


def summarise_minutes(rows: list[dict]) -> dict:
    """Seconds per group summed over ``rows``, their total and the engaged share of it
    (``engaged_share``: what the API always said, "Absent" included, as a device's reports
    count), and the time there (``there_s``: "Absent" left out) with the engaged share of
    that (``engaged_share_there``, None for an empty seat): the one the page shows, for a
    desk and for the class alike, so a tile and the class line count the same way."""
    seconds = {group: round(sum(r[group] for r in rows), 2) for group in MINUTE_FIELDS.values()}
    total = round(sum(seconds.values()), 2)
    there = round(total - seconds["Absent"], 2)
    return {"seconds": seconds, "observed_s": total,
            "engaged_share": round(seconds["Engaged"] / total, 3) if total else None,
            "there_s": there, "engaged_share_there": round(seconds["Engaged"] / there, 3) if there > 0 else None}
