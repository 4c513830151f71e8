"""The hourly clean-up of a running service's database: rows and kept images past
retention (by the calendar, or by the device's running time while no time server has set
its clock, and for the records stamped before one did: ``running_time``), the audit log past its year, expired sessions and old failed log-ins; and
the disk's reserve (``Store.keep_reserve``) kept again once there is room for it.

The device and the classroom page each run one. Without it the classroom server kept
every failed log-in's user name and address, and every expired session, for as long as
it ran: the device purged them, the classroom (the same accounts tables) never did.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable

from edge_app.config import StoreSettings
from edge_app.store.accounts import Accounts
from edge_app.store.database import Store, audit_days
from edge_app.store.running_time import RunningTime

log = logging.getLogger(__name__)
PURGE_EVERY_S = 3600.0
# the running time is marked this often between clean-ups: a power cut loses this much of it at most
# (marked only hourly, a desk on for one 45-minute lesson a day counted a second a day, and kept everything)
MARK_EVERY_S = 600.0
FIRST_AFTER_S = 1.0  # soon after a start: a device that was off for a month is cleaned up now, not in an hour


class Housekeeping:
    """A daemon thread that purges ``store`` every ``every_s``; ``retention_days`` is
    asked each time, so a setting saved on the admin page takes effect at the next run. On a
    device (given ``clock_set``) it also marks the running time every ``mark_every_s`` and at a stop."""

    def __init__(self, store: Store, accounts: Accounts, retention_days: Callable[[], int],
                 every_s: float = PURGE_EVERY_S, first_after_s: float = FIRST_AFTER_S,
                 clock_set: Callable[[], bool | None] | None = None,
                 reserve: Callable[[], tuple[int, int]] | None = None, running: RunningTime | None = None,
                 mark_every_s: float = MARK_EVERY_S):
        self.store, self.accounts, self.retention_days = store, accounts, retention_days
        # (store.reserve_mb, store.min_free_mb), asked each run as the retention is
        self.reserve = reserve or (lambda: (StoreSettings().reserve_mb, StoreSettings().min_free_mb))
        self.every_s, self.first_after_s, self.mark_every_s = every_s, first_after_s, mark_every_s
        self.marking = clock_set is not None  # a device, given its clock's rule: its running time is marked
        # ``clock.synchronized``: False while no time server has set the clock. A Pi without a clock
        # of its own that starts days ahead purged a day's retention as weeks old: today's rows went
        self.clock_set = clock_set or (lambda: None)
        self._said_waiting = False
        self.running = running or RunningTime(store)  # retention's clock while the wall clock is not set
        self._stop = threading.Event()
        self._wake = threading.Event()  # ``soon``: run now, not at the hour
        self._thread: threading.Thread | None = None
        self.runs = 0  # completed runs, failed ones included (tests wait on it)

    def run_once(self) -> int:
        """One clean-up; returns the rows past retention removed. A failure is logged, not
        raised: the next run tries again (a locked or full database is passing)."""
        try:
            clock_set = self.clock_set()
            self._mark(lambda: clock_set)  # the answer this run goes by
            days = self.retention_days()
            if clock_set is False:  # no time server yet: the clock may be days ahead
                if not self._said_waiting:
                    log.warning("retention: no time server has set the clock, so records are deleted once this device "
                                "has run store.retention_days since they were made (by the calendar, longer while it "
                                "is switched off; a clock days ahead would delete today's rows); a device whose clock "
                                "keeps time by itself on a network with no time server: set "
                                "store.trust_device_clock = true")
                    self._said_waiting = True
                removed = self.store.purge_before(self.running.cutoff(days * 86400),
                                                  self.running.cutoff(audit_days(days) * 86400))
            else:
                self._said_waiting = False
                removed = self._purge_by_calendar(days)
            if self.marking:
                self.running.forget_before(audit_days(days) * 86400)
            if self._stop.is_set():  # stopping: the store is about to close
                return removed
            if self.accounts.purge_sessions() or self.store.forgetting_deferred():  # after the store's own purge
                # (its checkpoint came before these): the names typed and addresses, zeroed, go from the log too;
                # and a delete's checkpoint a reader deferred is retried also when the purge removed nothing
                self.store.forget_deleted()
            if removed:
                log.info("retention: removed %d old rows", removed)
            reserve, min_free = self.reserve()
            # after the purge: room it freed may hold it. In MB of 10^6 bytes, as free space is counted and said
            self.store.keep_reserve(int(reserve * 1e6), int(min_free * 1e6))
            return removed
        except Exception as exc:
            log.warning("retention purge failed: %s", exc)
            return 0
        finally:
            self.runs += 1

    def _purge_by_calendar(self, days: int) -> int:
        """Rows past ``days`` by the calendar, the clock set; but not those stamped before it
        was (``RunningTime.synced_since``) that the device has not run ``days`` since: a Pi
        that ran for weeks on a clock behind, the school's time server named at last, had the
        step forward make every record of those weeks look old at once, and deleted them."""
        now = self.running.wall()  # the clock the marks are read on
        since = self.running.synced_since() if self.marking else None
        if since is None:
            return self.store.purge(days, now)
        kept = []
        for age in (days * 86400, audit_days(days) * 86400):
            by_running = self.running.cutoff(age)
            kept.append((-math.inf if by_running is None else by_running, since))
        return self.store.purge_before(now - days * 86400, now - audit_days(days) * 86400, kept[0], kept[1])

    def _mark(self, clock_set: Callable[[], bool | None] | None = None) -> None:
        """Mark the running time (``RunningTime.mark``): at each clean-up, every ``mark_every_s``
        between them and at a stop. A database that cannot take one (a full disk) still has its
        rows past retention deleted, which is the way to make room. Only where a clock rule was
        given (the device; the classroom server's clock is its host's)."""
        if not self.marking:
            return
        try:
            self.running.mark(synced=(clock_set or self.clock_set)() is not False)
        except Exception as exc:  # noqa: BLE001 - a full disk, a database that cannot be opened now: the next mark
            log.debug("retention: the running time was not marked (%s)", exc)

    def _run(self) -> None:
        next_run = time.monotonic() + self.first_after_s
        while True:
            woken = self._wake.wait(max(0.0, min(next_run - time.monotonic(), self.mark_every_s)))
            if self._stop.is_set():
                return
            if woken or time.monotonic() >= next_run:
                self._wake.clear()
                self.run_once()
                next_run = time.monotonic() + self.every_s
            else:  # between clean-ups: what the device ran is kept, a stop without a word loses this much at most
                self._mark()

    def soon(self) -> None:
        """Run now, not at the next hour: an admin who shortens the retention is told the
        older records go, and they did only up to an hour later."""
        self._wake.set()

    def start(self) -> "Housekeeping":
        self._thread = threading.Thread(target=self._run, name="housekeeping", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop, and wait for a run under way (a purge deletes in batches): it must not
        reopen the database its service is closing, nor delete images after the service
        released them."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
            if not self._thread.is_alive():  # the store is still open: its service stops this first
                self._mark()  # the time run since the last mark counts (a desk on for one lesson a day)
