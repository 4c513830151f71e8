"""The student's privacy switch: while it is on, the capture loop reads no frame and
analyses nothing (it even releases the camera), the LED pulses blue and the state is
"Paused" in the log, ``/api/state``, ``/healthz`` and the classroom's MQTT topic.

Pressed from the web UI or a GPIO button (``device.pause_button``); any thread may
press it, the capture loop acts on it between frames. ``privacy.max_pause_minutes``
ends a pause by itself; the loop asks ``active`` at least once a second, so it resumes
on time even with no other event. That end is kept on the monotonic clock: when a time
server sets a Pi's clock (days forward, after a weekend switched off) a pause must not
end early and the camera come back on the student. For the same reason a pause outlives a
restart (the watchdog, a crash, a power cut): ``keep`` saves each change, ``restore``
takes the saved pause back at the next start.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)


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
    """On or off, thread-safe; ``changed`` is set on every press so the loop wakes at once.
    ``keep``: called with the pause on now (or None) after each change, to save it."""

    def __init__(self, max_minutes: Callable[[], float] = lambda: 0.0, wall: Callable[[], float] = time.time,
                 clock: Callable[[], float] = time.monotonic, keep: Callable[[Pause | None], None] | None = None):
        self.max_minutes = max_minutes  # read at each press: the settings page may change it
        self.wall, self.clock = wall, clock
        self.keep = keep
        self.changed = threading.Event()
        self._lock = threading.Lock()
        self._keep_lock = threading.Lock()  # saves one at a time, each the state at its moment: the last one wins
        self._pause: Pause | None = None

    def _start(self, by: str) -> Pause:
        if self._pause is None:
            now, limit = self.wall(), self.max_minutes()
            seconds = limit * 60 if limit > 0 else None
            self._pause = Pause(now, None if seconds is None else now + seconds, by,
                                None if seconds is None else self.clock() + seconds)
            self.changed.set()
        return self._pause

    def _kept(self) -> None:
        """Save the pause on now (called after a change, outside the switch's lock)."""
        if self.keep is None:
            return
        with self._keep_lock:
            with self._lock:
                pause = self._pause
            try:
                self.keep(pause)
            except Exception as exc:  # noqa: BLE001 - a full or locked database must not undo the press
                log.warning("the privacy pause could not be saved (%s): a restart now would end it", exc)

    def restore(self, saved) -> Pause | None:
        """The pause ``keep`` saved before a restart, on again unless its time limit has passed
        by the wall clock (which a Pi without a clock may set back: the pause then lasts
        longer, never shorter); None when there is none (anything else saved is ignored)."""
        try:
            since, until, by = float(saved["since"]), saved["until"], str(saved["by"])
            until = None if until is None else float(until)
        except (TypeError, KeyError, ValueError):
            return None
        now = self.wall()
        if until is not None and until <= now:
            log.info("the privacy pause saved before the restart ran out while the device was off: the camera is on")
            return None
        with self._lock:
            self._pause = Pause(since, until, by, None if until is None else self.clock() + (until - now))
            self.changed.set()
            log.info("the privacy pause from before the restart is still on: no frame is read until it is resumed")
            return self._pause

    def pause(self, by: str) -> Pause:
        """Pause now (a pause already on is kept as it is)."""
        with self._lock:
            pause = self._start(by)
        self._kept()
        return pause

    def resume(self) -> None:
        with self._lock:
            if self._pause is None:
                return
            self._pause = None
            self.changed.set()
        self._kept()

    def toggle(self, by: str) -> Pause | None:
        """The button: pause if running, resume if paused; returns the pause now on."""
        with self._lock:
            if self._pause is None:
                pause: Pause | None = self._start(by)
            else:
                self._pause = pause = None
                self.changed.set()
        self._kept()
        return pause

    @property
    def active(self) -> Pause | None:
        """The pause on now, or None; a pause past its ``until`` ends here."""
        with self._lock:
            p = self._pause
            if p is None or p.ends_at is None or self.clock() < p.ends_at:
                return p
            self._pause = None
            self.changed.set()
        self._kept()
        return None
