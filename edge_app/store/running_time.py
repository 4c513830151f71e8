"""How long this device has been switched on, kept across restarts: the retention's clock
while no time server has set the wall clock, and for the records stamped before one did.

A Pi has no battery clock: it starts on the time it last saved, and on a school network
that blocks time servers it stays wrong. Deleting by that clock could delete today's
records (a clock days ahead), so the clean-up waited for a time server, and a network
without one kept every record for ever. Running time is counted on the monotonic clock,
which no clock step moves, and marked against the wall clock every few minutes and at a
stop (``running_marks``, a row an hour). A record stamped before the lowest time any later
record could have been stamped with (``floor``) was made before that mark, so it is at least
as old as the device has run since; switched off, it runs no time. So a record goes
never sooner than by the calendar, and at the latest once the device has run the
retention period since it was made, as long as its clock goes on at each start from about
where it stopped (Pi OS saves it: fake-hwclock, systemd-timesyncd). A clock that starts from
one same time at every start stamps each day's records alike, and then they stay.
"""
from __future__ import annotations

import time
from collections.abc import Callable

from edge_app.store.database import Store

ROW_EVERY_S = 3600.0  # marks closer than this to the newest row move it on instead of adding one


class RunningTime:
    """The device's running time, in seconds, carried on from the newest mark in ``store``
    (what ran after it before a power cut is not counted: a record is then kept a little
    longer, never deleted sooner).

    Each mark keeps, beside the wall time it was made at, a ``floor``: the lowest time a
    record made since the mark before could be stamped with. Normally that mark's own wall
    time; after the clock was set back in between (a technician's ``date -s``, a start on
    an older saved time), the wall time now less the running time since the mark before,
    as the clock has run at most that long since it was set."""

    def __init__(self, store: Store, monotonic: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time):
        self.store, self.monotonic, self.wall = store, monotonic, wall
        self._started = monotonic()
        self._base: float | None = None  # read at the first use: a database that cannot be read now may be later
        self._last: tuple[float, float, float] | None = None  # the newest mark: (running_s, wall, floor)
        self._row_began: float | None = None  # the running time this process's newest row was added at

    def _newest(self) -> tuple[float, float, float] | None:
        rows = self.store.query("SELECT running_s, wall, floor FROM running_marks ORDER BY running_s DESC LIMIT 1")
        return (float(rows[0][0]), float(rows[0][1]), float(rows[0][2])) if rows else None

    def now(self) -> float:
        if self._base is None:
            self._last = self._newest()
            self._base = self._last[0] if self._last is not None else 0.0
        return self._base + self.monotonic() - self._started

    def _lowest_since(self, last: tuple[float, float, float] | None, running: float, wall: float) -> float:
        """The lowest stamp a record made between ``last`` and now could have."""
        if last is None:
            return wall
        return min(last[1], wall - (running - last[0]))

    def mark(self, synced: bool = False) -> float:
        """Mark the running time against the wall clock now (``synced``: a time server has
        set it); returns the running time. Within ``ROW_EVERY_S`` of this process's newest
        row that row is moved on (its floor the lower of both spans', synced only if both
        were), so the table grows by a row an hour whatever the marks' pace."""
        running, wall = self.now(), self.wall()
        last = self._last
        floor = self._lowest_since(last, running, wall)
        if last is not None and self._row_began is not None and running - self._row_began < ROW_EVERY_S:
            floor = min(floor, last[2])
            moved = self.store.execute("UPDATE running_marks SET running_s = ?, wall = ?, floor = ?, synced = synced AND ? "
                                       "WHERE running_s = ?", (running, wall, floor, int(synced), last[0])).rowcount
            if moved:
                self._last = (running, wall, floor)
                return running
        self.store.execute("INSERT OR REPLACE INTO running_marks(running_s, wall, floor, synced) VALUES (?, ?, ?, ?)",
                           (running, wall, floor, int(synced)))
        self._last, self._row_began = (running, wall, floor), running
        return running

    def synced_since(self) -> float | None:
        """The wall time from which records were stamped by a clock a time server had set:
        the first mark made so after the newest one made without; None when every mark was
        made so (or none was). Records stamped before it may be stamped by a clock that was
        behind (a Pi starting on the time it last saved, for weeks): by their stamps, the
        time server's step made them all look old at once."""
        rows = self.store.query("SELECT MIN(wall) FROM running_marks WHERE synced = 1 AND running_s > "
                                "(SELECT MAX(running_s) FROM running_marks WHERE synced = 0)")
        return None if not rows or rows[0][0] is None else float(rows[0][0])

    def cutoff(self, age_s: float) -> float | None:
        """The wall time before which every record was made at least ``age_s`` of running
        time ago; None while no mark is that old. The lowest floor of the marks after the one
        chosen, and of now: a clock set back after it stamps newer records with older times,
        which must not go with it."""
        now = self.now()
        chosen = self._newest_at_most(now - age_s)
        if chosen is None:
            return None
        later = self.store.query("SELECT MIN(floor) FROM running_marks WHERE running_s > ?", (chosen,))[0][0]
        since_last = self._lowest_since(self._last, now, self.wall())  # ``now()`` read it, ``mark`` keeps it
        return since_last if later is None else min(later, since_last)

    def forget_before(self, age_s: float) -> int:
        """Drop the marks no cutoff up to ``age_s`` needs (all but the newest one at least that
        old, and those after it); returns how many went."""
        chosen = self._newest_at_most(self.now() - age_s)
        if chosen is None:
            return 0
        return self.store.execute("DELETE FROM running_marks WHERE running_s < ?", (chosen,)).rowcount

    def _newest_at_most(self, running: float) -> float | None:
        """The running time of the newest mark made at ``running`` or before; None if none was."""
        rows = self.store.query("SELECT running_s FROM running_marks WHERE running_s <= ? "
                                "ORDER BY running_s DESC LIMIT 1", (running,))
        return float(rows[0][0]) if rows else None
