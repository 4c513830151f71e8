"""The student's privacy switch: while it is on, the capture loop reads no frame and
analyses nothing (it even releases the camera), the LED pulses blue and the state is
"Paused" in the log, ``/api/state``, ``/healthz`` and the classroom's MQTT topic.

Pressed from the web UI or a GPIO button (``device.pause_button``); any thread may
press it, the capture loop acts on it between frames. ``privacy.max_pause_minutes``
ends a pause by itself; the loop asks ``active`` at least once a second, so it resumes
on time even with no other event. That end is kept on the monotonic clock: when a time
server sets a Pi's clock (days forward, after a weekend switched off) a pause must not
end early and the camera come back on the student.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Pause:
    """One pause: when it began (wall clock), when it ends by itself (None: only when
    resumed) and what started it ("web", "button"): never who, it is a student's choice."""

    since: float
    until: float | None
    by: str
    ends_at: float | None = None  # ``until`` on the monotonic clock: what actually ends it

    def public(self) -> dict:
        return {"since": self.since, "until": self.until, "by": self.by}


class PrivacySwitch:
    """On or off, thread-safe; ``changed`` is set on every press so the loop wakes at once."""

    def __init__(self, max_minutes: Callable[[], float] = lambda: 0.0, wall: Callable[[], float] = time.time,
                 clock: Callable[[], float] = time.monotonic):
        self.max_minutes = max_minutes  # read at each press: the settings page may change it
        self.wall, self.clock = wall, clock
        self.changed = threading.Event()
        self._lock = threading.Lock()
        self._pause: Pause | None = None

    def _start(self, by: str) -> Pause:
        if self._pause is None:
            now, limit = self.wall(), self.max_minutes()
            seconds = limit * 60 if limit > 0 else None
            self._pause = Pause(now, None if seconds is None else now + seconds, by,
                                None if seconds is None else self.clock() + seconds)
            self.changed.set()
        return self._pause

    def pause(self, by: str) -> Pause:
        """Pause now (a pause already on is kept as it is)."""
        with self._lock:
            return self._start(by)

    def resume(self) -> None:
        with self._lock:
            if self._pause is not None:
                self._pause = None
                self.changed.set()

    def toggle(self, by: str) -> Pause | None:
        """The button: pause if running, resume if paused; returns the pause now on."""
        with self._lock:
            if self._pause is None:
                return self._start(by)
            self._pause = None
            self.changed.set()
            return None

    @property
    def active(self) -> Pause | None:
        """The pause on now, or None; a pause past its ``until`` ends here."""
        with self._lock:
            p = self._pause
            if p is not None and p.ends_at is not None and self.clock() >= p.ends_at:
                self._pause = None
                self.changed.set()
                return None
            return p
