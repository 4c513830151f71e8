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
takes the saved pause back at the next start. A clock step during a pause moves its shown
``since``/``until`` with the clock (``/healthz`` never says a pause began days ago) and is
saved at once, so a restart after it does not take the pause for one that ran out.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

log = logging.getLogger(__name__)

# The wall clock moved this much more (or less) than the monotonic clock: a step (a time
# server, an admin), not NTP's slewing (at most 0.5 ms a second). The pause's times follow it.
JUMP_S = 5.0
# a pause on is saved again this often: after a power cut it runs at most what it had left
# then. Not each minute: the paused loop already writes a sign of life a minute (SD cards wear)
RESAVE_S = 600.0


def boot_id() -> str | None:
    """This boot of the machine (Linux), or None: the monotonic clock is only comparable
    between two runs of the service within one boot."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            return f.read().strip() or None
    except OSError:
        return None


@dataclass(frozen=True)
class Pause:
    """One pause: when it began (wall clock), when it ends by itself (None: only when
    resumed) and what started it ("web", "button"). ``public`` never says who, it is a
    student's choice: ``owner`` (the account id that paused from the web; None for the
    button) and ``owner_created`` (that account's creation time: SQLite gives a deleted
    account's id to the next one in a database from before schema 13, which must not own its pause) stay on the device, for who
    may resume it, and go with the pause."""

    since: float
    until: float | None
    by: str
    ends_at: float | None = None  # ``until`` on the monotonic clock: what actually ends it
    owner: int | None = None
    owner_created: float | None = None
    mono_since: float | None = None  # ``since`` on the monotonic clock: how a clock step is seen
    boot: str | None = None  # the boot the monotonic times belong to
    stamp: tuple[float, float] | None = None  # (wall, monotonic) when handed to ``keep``

    def public(self) -> dict:
        return {"since": self.since, "until": self.until, "by": self.by}

    def saved(self) -> dict:
        """What ``keep`` writes to the device's own store: ``public``, the owner (a restart
        must not let anyone resume it) and how long it had left when saved, on both clocks
        (see ``PrivacySwitch.restore``)."""
        left = None if self.ends_at is None or self.stamp is None else max(0.0, self.ends_at - self.stamp[1])
        return {**self.public(), "owner": self.owner, "owner_created": self.owner_created, "boot": self.boot,
                "mono_since": self.mono_since, "ends_at": self.ends_at,
                "saved_at": None if self.stamp is None else self.stamp[0], "left": left}


def _number(value) -> float | None:
    return None if value is None else float(value)


class PrivacySwitch:
    """On or off, thread-safe; ``changed`` is set on every press so the loop wakes at once.
    ``keep``: called with the pause on now (or None) after each change, to save it.
    ``boot``: the boot the ``clock`` counts from (``boot_id`` for the system's monotonic clock)."""

    def __init__(self, max_minutes: Callable[[], float] = lambda: 0.0, wall: Callable[[], float] = time.time,
                 clock: Callable[[], float] = time.monotonic, keep: Callable[[Pause | None], None] | None = None,
                 boot: Callable[[], str | None] | None = None):
        self.max_minutes = max_minutes  # read at each press: the settings page may change it
        self.wall, self.clock = wall, clock
        self.keep = keep
        # another monotonic clock (a test's) is no clock of this boot's
        self.boot = boot if boot is not None else (boot_id if clock is time.monotonic else lambda: None)
        self.changed = threading.Event()
        self._lock = threading.Lock()
        self._keep_lock = threading.Lock()  # saves one at a time, each the state at its moment: the last one wins
        self._pause: Pause | None = None
        self._saved_mono = 0.0  # when ``_kept`` last saved (monotonic)
        self._unsaved = False  # the last save failed (said once)

    def _start(self, by: str, owner: int | None = None, owner_created: float | None = None) -> Pause:
        if self._pause is None:
            now, mono, limit = self.wall(), self.clock(), self.max_minutes()
            seconds = limit * 60 if limit > 0 else None
            self._pause = Pause(now, None if seconds is None else now + seconds, by,
                                None if seconds is None else mono + seconds, owner, owner_created, mono, self.boot())
            self.changed.set()
        return self._pause

    @staticmethod
    def _rebased(p: Pause, now: float, mono: float) -> Pause:
        """``p`` with ``since``/``until`` moved by a step of the wall clock since they were
        set (``now``, ``mono``: the clocks now); ``p`` itself when the clock kept time. Its
        end, on the monotonic clock, never moves."""
        if p.mono_since is None:
            return p
        drift = (now - p.since) - (mono - p.mono_since)
        if abs(drift) < JUMP_S:
            return p
        log.info("the wall clock was set by %+.0f s during a privacy pause: its times move with it, its end does not",
                 drift)
        return replace(p, since=p.since + drift, until=None if p.until is None else p.until + drift)

    def _kept(self) -> None:
        """Save the pause on now (called after a change, outside the switch's lock)."""
        if self.keep is None:
            return
        with self._keep_lock:
            with self._lock:
                pause, mono = self._pause, self.clock()
                self._saved_mono = mono
                if pause is not None:
                    pause = replace(pause, stamp=(self.wall(), mono))
            try:
                self.keep(pause)
            except Exception as exc:  # noqa: BLE001 - a full or locked database must not undo the press
                if not self._unsaved:  # once, not at each periodic save while the disk stays full
                    log.warning("the privacy pause could not be saved (%s): a restart now would end it", exc)
                self._unsaved = True
            else:
                self._unsaved = False

    def restore(self, saved) -> Pause | None:
        """The pause ``keep`` saved before a restart, on again unless its time ran out; None
        when there is none (anything else saved is ignored).

        How much time it has left: within the same boot (the watchdog, a crash, an update),
        exactly what the monotonic clock says, whatever the wall clock did meanwhile. After a
        reboot (a power cut) the wall clock is all there is, and it may have been stepped
        (a time server, days forward) or be stale (days back): the pause ends at the later of
        its saved ``until`` and when it was last saved plus what it had left then, but runs
        at most what it had left then (``left``, saved at each change, each clock step and
        each ``RESAVE_S``): the time the device was off counts as nothing when the clock cannot
        tell it, so a pause is never shorter, and never longer than its limit of running time
        plus the time off."""
        try:
            since, until, by = float(saved["since"]), _number(saved["until"]), str(saved["by"])
            owner = saved.get("owner")  # absent in a pause saved before pauses had owners: anyone resumes it
            owner = None if owner is None else int(owner)
            owner_created = _number(saved.get("owner_created"))
            saved_at, left = _number(saved.get("saved_at")), _number(saved.get("left"))
            ends_at, mono_since = _number(saved.get("ends_at")), _number(saved.get("mono_since"))
            boot = saved.get("boot")
        except (TypeError, KeyError, ValueError, AttributeError):
            return None
        now, mono, this_boot = self.wall(), self.clock(), self.boot()
        same_boot = this_boot is not None and boot == this_boot and mono_since is not None
        if until is None:
            ends_at = None
            if not same_boot:
                mono_since = mono - max(0.0, now - since)
        elif same_boot and ends_at is not None:
            pass  # both monotonic times hold as they are
        else:
            length = until - since
            end = until if saved_at is None or left is None else max(until, saved_at + left)
            ends_at = mono + min(end - now, length if left is None else left)
            mono_since = ends_at - length
        if ends_at is not None and ends_at <= mono:
            log.info("the privacy pause saved before the restart ran out while the device was off: the camera is on")
            return None
        with self._lock:
            pause = Pause(since, until, by, ends_at, owner, owner_created, mono_since, this_boot)
            self._pause = self._rebased(pause, now, mono)
            self.changed.set()
            log.info("the privacy pause from before the restart is still on: no frame is read until it is resumed")
            restored = self._pause
        if restored is not pause:  # its times moved with the clock: saved as shown
            self._kept()
        return restored

    def pause(self, by: str, owner: int | None = None, owner_created: float | None = None) -> Pause:
        """Pause now (a pause already on is kept as it is, with its owner)."""
        with self._lock:
            pause = self._start(by, owner, owner_created)
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

    def disown(self, whose: Callable[[Pause], bool]) -> bool:
        """The pause on, if ``whose`` says it is the account being deleted, stays on but is no
        one's from now on (anyone at the desk resumes it, as a button's): a student deleted at
        the end of term left the desk paused all summer, which only a teacher could end, and
        ending it instead would switch the camera on over whoever sits there. True if it was theirs."""
        with self._lock:
            pause = self._pause
            if pause is None or pause.owner is None or not whose(pause):
                return False
            self._pause = replace(pause, owner=None, owner_created=None)
        self._kept()
        return True

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
        """The pause on now, or None; a pause past its ``until`` ends here. Asked at least
        once a second by a paused loop, so here a clock step moves the pause's shown times
        and saves them, and a pause on is saved again each ``RESAVE_S``."""
        with self._lock:
            p = self._pause
            if p is None:
                return None
            mono = self.clock()
            if p.ends_at is None or mono < p.ends_at:
                self._pause = q = self._rebased(p, self.wall(), mono)
                save = q is not p or (self.keep is not None and mono - self._saved_mono >= RESAVE_S)
                if not save:
                    return q
            else:
                self._pause = q = None
                self.changed.set()
        self._kept()
        return q
