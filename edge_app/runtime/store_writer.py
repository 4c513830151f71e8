"""The capture loop's rows, written from a background thread so the loop never waits on the disk.

A failed write is either transient (the database is locked or busy, the disk is full, an
I/O error: wait and retry the same row, in order) or permanent (the row itself is bad: a
constraint, a type SQLite refuses, a value out of range: retrying can never succeed).
SQLite says which by its error code, so one bad row is set aside with a log line and
logging goes on instead of retrying it forever while every later row waits behind it.
"""
from __future__ import annotations

import collections
import errno
import logging
import sqlite3
import threading
import time

from edge_app.runtime.health import Health, StoreState
from edge_app.runtime.metrics import Metrics
from edge_app.store.database import Store

log = logging.getLogger(__name__)


class StoreWriter:
    """Writes the loop's rows from a background thread, in order, retrying with back-off.

    A full disk (``store.min_free_mb`` or a real ENOSPC) or a locked database pauses
    logging and sets the health status; rows wait in a bounded backlog and are written
    when the disk or the lock comes back. A row SQLite refuses for good is logged, kept
    in ``rejected`` (the latest few, for a technician) and counted in
    ``engage_store_rows_rejected_total``; the next row is written. Each write is one
    SQLite transaction, so a crash never leaves half a row."""

    def __init__(self, store: Store, health: Health, metrics: Metrics, min_free_mb: float,
                 backlog: int = 2000, retry_initial_s: float = 0.5, retry_max_s: float = 30.0,
                 keep_rejected: int = 50):
        self.store, self.health, self.metrics, self.min_free_mb = store, health, metrics, min_free_mb
        self.retry_initial_s, self.retry_max_s = retry_initial_s, retry_max_s
        self._rows: collections.deque = collections.deque()
        self.rejected: collections.deque = collections.deque(maxlen=keep_rejected)  # (method, args, reason)
        self._backlog = backlog
        self._cond = threading.Condition()
        self._busy = False
        self._closed = False
        self._thread: threading.Thread | None = None

    def put(self, method: str, *args) -> None:
        with self._cond:
            if len(self._rows) >= self._backlog:
                self._rows.popleft()
                self.metrics.store_lost.inc()
            self._rows.append((method, args))
            self.health.pending_writes = len(self._rows)
            self.metrics.pending_writes.set(len(self._rows))  # while the disk is full too: the backlog grows there
            self._cond.notify_all()
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="store-writer", daemon=True)
                self._thread.start()

    def _status(self, status: StoreState, reason: str = "") -> None:
        if status != self.health.store:
            if status == StoreState.OK:
                log.info("logging resumed")
            else:
                log.warning("logging paused (%s): %s", status, reason)
        self.health.store, self.health.store_error = status, reason
        self.metrics.store.state(status)

    def _run(self) -> None:
        delay = self.retry_initial_s
        while True:
            with self._cond:
                while not self._rows and not self._closed:
                    self._cond.wait()
                if not self._rows:
                    return
                method, args = self._rows[0]
                self._busy = True
            try:
                free = self.store.free_mb()
                if free < self.min_free_mb:
                    raise OSError(errno.ENOSPC, f"only {free:.0f} MB free, below store.min_free_mb = {self.min_free_mb:g}")
                getattr(self.store, method)(*args)
            except Exception as exc:
                if permanent(exc):
                    self._reject(method, args, exc)
                else:  # locked, busy, full, I/O: the same row again later
                    self.metrics.store_failures.inc()
                    self._status(_store_status(exc), _reason(exc, self._backlog))
                    with self._cond:
                        self._busy = False
                        self._cond.notify_all()
                        self._cond.wait_for(lambda: self._closed, delay)
                        if self._closed:
                            return
                    delay = min(delay * 2, self.retry_max_s)
                    continue
            delay = self.retry_initial_s
            with self._cond:
                if self._rows and self._rows[0][0] == method and self._rows[0][1] is args:
                    self._rows.popleft()
                self._busy = False
                self.health.pending_writes = len(self._rows)
                self.metrics.pending_writes.set(len(self._rows))
                self._cond.notify_all()
            if self.health.store != StoreState.OK:
                self._status(StoreState.OK)

    def _reject(self, method: str, args: tuple, exc: Exception) -> None:
        """Set a row SQLite will never accept aside, so the rows behind it are written."""
        self.metrics.store_rejected.inc()
        # kept for a technician without an image's bytes (an alert's camera frame): its size says enough
        self.rejected.append((method, tuple(f"<{len(a)} bytes>" if isinstance(a, bytes) else a for a in args), str(exc)))
        shown = ", ".join(_short(a) for a in args)
        log.error("a %s row was refused for good and set aside (%s: %s); logging goes on. Row: (%s)",
                  method, type(exc).__name__, exc, shown)

    def pending(self) -> bool:
        """Rows queued or being written now."""
        with self._cond:
            return bool(self._rows or self._busy)

    def drain(self, timeout: float = 5.0, paused_wait: float | None = None) -> bool:
        """Wait until every row is written (or ``timeout``); True when nothing is left.
        With ``paused_wait``, give up that soon once logging is paused, even when the
        pause comes while waiting."""
        start = time.monotonic()
        with self._cond:
            while self._rows or self._busy:
                waited = time.monotonic() - start
                if waited >= timeout or (paused_wait is not None and self.health.store != StoreState.OK
                                         and waited >= paused_wait):
                    return False
                self._cond.wait(min(0.1, timeout - waited))
            return True

    def close(self, timeout: float = 5.0, paused_wait: float = 1.0) -> None:
        """Write what is pending and stop the thread: up to ``timeout`` while writes
        succeed, only ``paused_wait`` once logging is paused, even when the pause is found
        during the shutdown itself (the last rows are often the first to meet a full disk)."""
        if self._closed:
            return
        if not self.drain(timeout, paused_wait):
            log.warning("shutting down with %d rows not written (%s: %s)", len(self._rows),
                        self.health.store, self.health.store_error)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread:
            self._thread.join(timeout)


# SQLite primary result codes (https://sqlite.org/rescode.html); extended codes keep them in the low byte
SQLITE_BUSY, SQLITE_LOCKED, SQLITE_CORRUPT, SQLITE_FULL, SQLITE_NOTADB = 5, 6, 11, 13, 26
PERMANENT_CODES = {18: "SQLITE_TOOBIG", 19: "SQLITE_CONSTRAINT", 20: "SQLITE_MISMATCH", 25: "SQLITE_RANGE"}
# raised by Python while binding a row's values (no SQLite code): the row is malformed
BAD_ROW_ERRORS = (sqlite3.ProgrammingError, sqlite3.InterfaceError, TypeError, ValueError, KeyError, OverflowError)


def _primary_code(exc: BaseException) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else code & 0xFF


def permanent(exc: BaseException) -> bool:
    """True when retrying this row can never succeed: the row, not the database, is at fault.

    Decided by SQLite's error code where there is one; an error without a code is a
    bad row only if Python refused its values. Anything else (locked, busy, full, I/O,
    corrupt, cannot open, a closed connection) is the database's state, which can change."""
    code = _primary_code(exc)
    if code is not None:
        return code in PERMANENT_CODES
    if isinstance(exc, sqlite3.ProgrammingError) and "closed" in str(exc):
        return False  # the store was closed under the writer (shutdown): not the row's fault
    return isinstance(exc, BAD_ROW_ERRORS)


def _store_status(exc: Exception) -> StoreState:
    """The health status for a transient failure: disk full, locked or error."""
    code = _primary_code(exc)
    if code == SQLITE_FULL or isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return StoreState.DISK_FULL
    if code in (SQLITE_BUSY, SQLITE_LOCKED):
        return StoreState.LOCKED
    return StoreState.ERROR


def _reason(exc: Exception, backlog: int) -> str:
    """What /healthz and the log say of a failed write: a damaged database (a bad block on
    the SD card) also says what to do, as the start does of a file it cannot open; it said
    only "database disk image is malformed" while rows waited and were then lost."""
    if _primary_code(exc) not in (SQLITE_CORRUPT, SQLITE_NOTADB):
        return str(exc)
    return (f"{exc}: the database is damaged (often a failing SD card). The newest {backlog} rows wait in memory "
            "and are lost at a stop. Copy off what can be read (engage-edge backup FILE), then stop the service, "
            "restore the latest good backup (engage-edge restore FILE; firmware/README.md, 'Restoring a backup') and, "
            "if it happens again, replace the card")


def _short(value, limit: int = 80) -> str:
    """A row value for the log: bytes (a JPEG) by size only, long text cut."""
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes>"
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
