"""How long this device has been switched on, kept across restarts: the retention's clock
while no time server has set the wall clock.

A Pi has no battery clock: it starts on the time it last saved, and on a school network
that blocks time servers it stays wrong. Deleting by that clock could delete today's
records (a clock days ahead), so the clean-up waited for a time server, and a network
without one kept every record for ever. Running time is counted on the monotonic clock,
which no clock step moves, and marked against the wall clock every few minutes and at a
stop (``running_marks``, a row an hour). A record stamped before a mark is at least as old as
the device has run since that mark; switched off, it runs no time. So a record goes
never sooner than by the calendar, and at the latest once the device has run the
retention period since it was made.
"""
from __future__ import annotations

import time
from collections.abc import Callable

from edge_app.store.database import Store

ROW_EVERY_S = 3600.0  # marks closer than this to the newest row move it on instead of adding one


class RunningTime:
    """The device's running time, in seconds, carried on from the newest mark in ``store``
    (what ran after it before a power cut is not counted: a record is then kept a little
    longer, never deleted sooner)."""

    def __init__(self, store: Store, monotonic: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time):
        self.store, self.monotonic, self.wall = store, monotonic, wall
        self._started = monotonic()
        self._base: float | None = None  # read at the first use: a database that cannot be read now may be later
        self._row: tuple[float, float] | None = None  # this process's newest row: (running time it began at, now)

    def now(self) -> float:
        if self._base is None:
            newest = self.store.query("SELECT MAX(running_s) FROM running_marks")[0][0]
            self._base = float(newest or 0.0)
        return self._base + self.monotonic() - self._started

    def mark(self) -> float:
        """Mark the running time against the wall clock now; returns the running time. Within
        ``ROW_EVERY_S`` of this process's newest row that row is moved on (a newer mark
        replaces it), so the table grows by a row an hour whatever the marks' pace."""
        running, wall = self.now(), self.wall()
        if self._row is not None and running - self._row[0] < ROW_EVERY_S:
            moved = self.store.execute("UPDATE running_marks SET running_s = ?, wall = ? WHERE running_s = ?",
                                       (running, wall, self._row[1])).rowcount
            if moved:
                self._row = (self._row[0], running)
                return running
        self.store.execute("INSERT OR REPLACE INTO running_marks(running_s, wall) VALUES (?, ?)", (running, wall))
        self._row = (running, running)
        return running

    def cutoff(self, age_s: float) -> float | None:
        """The wall time before which every record was made at least ``age_s`` of running
        time ago; None while no mark is that old. The lowest wall time of the marks since
        the one chosen (and of now): a clock set back after it (a Pi restarting on the time it
        last saved) stamps newer records with older times, which must not go with it."""
        chosen = self.store.query("SELECT running_s FROM running_marks WHERE running_s <= ? "
                                  "ORDER BY running_s DESC LIMIT 1", (self.now() - age_s,))
        if not chosen:
            return None
        lowest = self.store.query("SELECT MIN(wall) FROM running_marks WHERE running_s >= ?", (chosen[0][0],))[0][0]
        return min(lowest, self.wall())

    def forget_before(self, age_s: float) -> int:
        """Drop the marks no cutoff up to ``age_s`` needs (all but the newest one at least that
        old, and those after it); returns how many went."""
        chosen = self.store.query("SELECT running_s FROM running_marks WHERE running_s <= ? "
                                  "ORDER BY running_s DESC LIMIT 1", (self.now() - age_s,))
        if not chosen:
            return 0
        return self.store.execute("DELETE FROM running_marks WHERE running_s < ?", (chosen[0][0],)).rowcount
