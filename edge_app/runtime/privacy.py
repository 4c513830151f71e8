"""The student's privacy switch: while it is on, the capture loop reads no frame and
analyses nothing (it even releases the camera), the LED pulses blue and the state is
"Paused" in the log, ``/api/state``, ``/healthz`` and the classroom's MQTT topic.

Pressed from the web UI or a GPIO button (``device.pause_button``); any thread may
press it, the capture loop acts on it between frames. A pause from the web UI belongs to
the account that made it: on a shared desk another student must not switch the camera
back on (``resume``'s ``allowed``); the button on the desk toggles any pause, as it always did. ``privacy.max_pause_minutes``
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
    resumed) and what started it ("web", "button"). ``public`` never says who, it is a
    student's choice: ``owner`` (the account id that paused from the web; None for the
    button) stays on the device, for who may resume it, and goes with the pause."""

    since: float
    until: float | None
    by: str
    ends_at: float | None = None  # ``until`` on the monotonic clock: what actually ends it
    owner: int | None = None

    def public(self) -> dict:
        return {"since": self.since, "until": self.until, "by": self.by}

    def saved(self) -> dict:
        """What ``keep`` writes to the device's own store: ``public`` and the owner, so a
        restart does not let anyone resume it."""
        return {**self.public(), "owner": self.owner}


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

    def _start(self, by: str, owner: int | None = None) -> Pause:
        if self._pause is None:
            now, limit = self.wall(), self.max_minutes()
            seconds = limit * 60 if limit > 0 else None
            self._pause = Pause(now, None if seconds is None else now + seconds, by,
                                None if seconds is None else self.clock() + seconds, owner)
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
            owner = saved.get("owner")  # absent in a pause saved before pauses had owners: anyone resumes it
            owner = None if owner is None else int(owner)
        except (TypeError, KeyError, ValueError):
            return None
        now = self.wall()
        if until is not None and until <= now:
            log.info("the privacy pause saved before the restart ran out while the device was off: the camera is on")
            return None
        with self._lock:
            self._pause = Pause(since, until, by, None if until is None else self.clock() + (until - now), owner)
            self.changed.set()
            log.info("the privacy pause from before the restart is still on: no frame is read until it is resumed")
            return self._pause

    def pause(self, by: str, owner: int | None = None) -> Pause:
        """Pause now (a pause already on is kept as it is, with its owner)."""
        with self._lock:
            pause = self._start(by, owner)
        self._kept()
        return pause

    def resume(self, allowed: Callable[[Pause], bool] | None = None) -> Pause | None:
        """End the pause unless ``allowed`` (asked under the lock, so it judges the pause it
        ends) says no; the pause still on (refused), or None: the camera is on."""
        with self._lock:
            if self._pause is None:
                return None
            if allowed is not None and not allowed(self._pause):
                return self._pause
            self._pause = None
            self.changed.set()
        self._kept()
        return None

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
