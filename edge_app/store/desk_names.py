"""The name each of the room's listed desks last told the classroom server, kept over its restart.

A desk's name ("Row 2, seat 4") comes only in its messages, which the broker keeps as its
retained state, and a broker restarted without persistence loses that: after it and a
restart of the classroom server, a listed desk that is not running showed as its bare
device id until it spoke again, and the instructor could not tell which seat was missing.
One settings row holds them (``classroom.desk_names``: device id -> name), written by a
thread of its own, never by the one that applies the broker's messages, and at most once per
``WRITE_EVERY_S`` (two devices sharing one id flip its name every second; the server may run
on a Pi's SD card); the newest names wait meanwhile and are written by ``close`` at the latest.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edge_app.store.database import Store

log = logging.getLogger(__name__)
KEY = "classroom.desk_names"
WRITE_EVERY_S = 60.0


class DeskNames:
    def __init__(self, store: Store, every_s: float = WRITE_EVERY_S):
        self.store, self.every_s = store, every_s
        self._cond = threading.Condition()
        self._pending: dict[str, str] | None = None  # the newest names, not written yet
        self._written_at: float | None = None  # monotonic
        self._thread: threading.Thread | None = None  # the one writer (one database connection), from the first name
        self._closed = False

    def load(self) -> dict:
        """The names kept, or none; checked and cut by who takes them (``Classroom.set_names``)."""
        saved = self.store.get_setting(KEY, {})
        return saved if isinstance(saved, dict) else {}

    def remember(self, names: dict[str, str]) -> None:
        """Keep ``names`` (all of them, replacing what is kept): written now, or once the last
        write is ``every_s`` old. Never waits on the database."""
        with self._cond:
            self._pending = dict(names)  # the classroom's: checked, at most its desks
            if self._closed:
                return
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="desk-names", daemon=True)
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return  # what waits, ``close`` writes
                now = time.monotonic()
                if self._written_at is not None and now < self._written_at + self.every_s:
                    self._cond.wait(self._written_at + self.every_s - now)
                    continue
                names, self._pending, self._written_at = self._pending, None, now
            self._save(names)

    def _save(self, names: dict[str, str] | None) -> None:
        if names is None:
            return
        try:
            self.store.set_setting(KEY, names)
        except Exception as exc:  # noqa: BLE001 - a locked or full database: the page is right, a restart may differ
            log.warning("classroom: could not keep the desks' names (%s): after a restart of the broker and of this "
                        "service a listed desk not running may show as its device id until it is heard", exc)

    def close(self) -> None:
        """Write what waits, now (before the database closes)."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join()  # one writing finishes first
        with self._cond:
            names, self._pending = self._pending, None
        self._save(names)
