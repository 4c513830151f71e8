"""The capture loop's rows, written from a background thread so the loop never waits on the disk."""
from __future__ import annotations

import collections
import errno
import logging
import sqlite3
import threading

from edge_app.runtime.health import Health, StoreState
from edge_app.runtime.metrics import Metrics
from edge_app.store.database import Store

log = logging.getLogger(__name__)


class StoreWriter:
    """Writes the loop's rows from a background thread, in order, retrying with back-off.

    A full disk (``store.min_free_mb`` or a real ENOSPC) or a locked database pauses
    logging and sets the health status; rows wait in a bounded backlog and are written
    when the disk or the lock comes back. Each write is one SQLite transaction, so a
    crash never leaves half a row."""

    def __init__(self, store: Store, health: Health, metrics: Metrics, min_free_mb: float,
                 backlog: int = 2000, retry_initial_s: float = 0.5, retry_max_s: float = 30.0):
        self.store, self.health, self.metrics, self.min_free_mb = store, health, metrics, min_free_mb
        self.retry_initial_s, self.retry_max_s = retry_initial_s, retry_max_s
        self._rows: collections.deque = collections.deque()
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
            except Exception as exc:  # sqlite3 errors (locked, full, I/O) and OSError: retry later
                self.metrics.store_failures.inc()
                self._status(_store_status(exc), str(exc))
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

    def drain(self, timeout: float = 5.0) -> bool:
        """Wait until every row is written (or ``timeout``); True when nothing is left."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._rows and not self._busy, timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Write what is pending (briefly, when logging is paused) and stop the thread."""
        if self._closed:
            return
        if not self.drain(timeout if self.health.store == StoreState.OK else min(timeout, 1.0)):
            log.warning("shutting down with %d rows not written (%s: %s)", len(self._rows),
                        self.health.store, self.health.store_error)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread:
            self._thread.join(timeout)


def _store_status(exc: Exception) -> StoreState:
    text = str(exc).lower()
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC or "full" in text:
        return StoreState.DISK_FULL
    if isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text):
        return StoreState.LOCKED
    return StoreState.ERROR
