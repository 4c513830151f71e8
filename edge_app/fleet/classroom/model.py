"""What the instructor sees: one record per desk, fed by the broker, read by the page.

The ``Classroom`` here keeps the desks and tells the pages; each desk's record and its
disengaged stretch are ``desk``, what a message may hold ``messages``, a desk's clock
``desk_clock``, its minute rows ``minute_rows``, the words a desk is shown in ``levels``.

Thread-safe: paho's network thread applies messages, web threads read snapshots and
wait for the next change (``wait_change``) to push it to the page over SSE.

A desk is online from a live message (its own ``online`` as it connects, a state, a
heartbeat, a minute row) until its ``offline`` (its last will, or a clean stop). The
broker's stored copies (retained: replayed at each subscription) are not the desk: a
broker that crashed keeps the ``online`` it last saved, the desk's will lost with it, so a
desk retired days ago was shown online, alerting "Not engaged for 72 h" for ever. They
show what a desk last sent, offline, until it is heard; alone, a stored ``online`` is no
desk at all. A live desk is heard within its heartbeat (at once as it connects) or its
next minute row. A paused or steady desk sends nothing else for hours, so a desk that
announces a heartbeat (``heartbeat_s``, in its state and heartbeat messages) repeats
itself that often, and one silent for ``silent_after`` of it is shown offline as if its
will had come. A desk that announces none (older firmware, ``mqtt.heartbeat_s = 0``) is
not timed out once it has a state; one with none yet is held to the minute row a
running desk sends (``FIRST_READING_S``), not waited for for ever.

When the service's own link to the broker comes back, nothing changes for a desk that is
still there: it stays as it was (each desk marked offline at the reconnection came back
one by one, and the page said every alert again) and has to be heard again, its silence
timed from the reconnection: by its heartbeat, else (``CONFIRM_S``) by the broker
replaying its ``online`` (the broker that kept the desk's will would have sent it) or the
desk's own reconnection.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from edge_app.engagement import ABSENT_REASONS
from edge_app.fleet.classroom.desk import (
    DESK_UPDATE_BURST,
    DESK_UPDATES_PER_S,
    LONG_ABSENT_S,
    SHARED_WINDOW_S,
    SHOWN,
    SWITCHED_OFF_S,
    Desk,
    catch_up,
    is_newer_state,
    natural_key,
    note_run,
    show_state,
    start_catch_up,
)
from edge_app.fleet.classroom.desk_clock import measure_clock, skew_reading, time_correction
from edge_app.fleet.classroom.levels import ATTENTION, CHECKING, LEVELS, UNKNOWN, WAITING
from edge_app.fleet.classroom.messages import DEVICE_ID, MAX_PAYLOAD, heartbeat_interval, parse_json, parse_state, shown_text, valid_desk_time
from edge_app.fleet.classroom.minute_rows import (
    MAX_MINUTE_ROWS,
    MAX_MINUTE_S,
    MINUTE_FIELDS,
    counts_as_recent,
    minute_seconds_ok,
    stops_counting_at,
    summarise_minutes,
)

log = logging.getLogger(__name__)

WILL_BURST_S = 5.0  # an "offline" this long before the link to the broker is lost may be its shutdown's (set_link)
MAX_DESKS = 1000  # a school's broker, not one room; past it the longest-offline desk makes room, or nothing is added
OVER_RATE_LOG_S = 60.0  # a desk held back is logged at most this often
SILENT_BEATS, SILENT_GRACE_S = 2.5, 1.0  # offline after two heartbeats missed, plus half of one and a second
# a desk with no heartbeat and no state yet is held to the minute row a running desk sends each minute: a client
# that said "online" and left (a technician's test, a desk cleared by hand) was "Waiting for a first reading" for ever
FIRST_READING_S = 60.0
# after the service's link to the broker came back, a desk with no heartbeat stays online this long unless the
# broker replays its "online" (at the subscription) or the desk itself is heard: its own reconnection after a
# broker restart comes within the publisher's longest back-off (broker_link.RECONNECT_MAX_S, 30 s)
CONFIRM_S = 35.0


def silent_after(heartbeat_s: float) -> float:
    """Seconds without a word after which a desk that beats every ``heartbeat_s`` is offline."""
    return SILENT_BEATS * heartbeat_s + SILENT_GRACE_S


PACE = ("tokens", "tokens_at", "held_back", "held_logged")  # a desk's pace: what a new record of it keeps


def _keep_pace(record, of) -> None:
    """``record`` goes on at the pace ``of`` (an earlier record of the same desk: a Desk or a
    ``_Gone``) had, not with a fresh burst of page updates and an empty held-back count."""
    for name in PACE:
        setattr(record, name, getattr(of, name))


@dataclass
class _Gone:
    """A desk forgotten (``Classroom._drop``): when the pages were told, and its pace then."""
    device_id: str
    tokens: float
    tokens_at: float | None
    held_back: int
    held_logged: float | None
    told: int | None = None  # the version whose updates name it gone; None while held back
    held: bool = False


def expected_version(listed: list[str]) -> str:
    """The room's desk list's version, from its contents (the same over a restart): a page's save names the
    list it was made from, and one made from an older list is refused (``Classroom.set_expected``)."""
    return hashlib.sha256("\n".join(listed).encode()).hexdigest()[:16]


class Classroom:
    """``clock``: the wall clock, for every time shown or compared with a desk's own (``since``,
    ``last_seen``, minute rows). ``monotonic``: what a heartbeat desk's silence is timed by, so
    that the server's clock set forward (NTP at boot, an admin) takes no desk offline early and
    set back keeps no dead one online late. A test that injects only ``clock`` times silence by
    it too (its fake time is the only time there is)."""

    def __init__(self, clock=time.time, monotonic=None):
        self.clock = clock
        self.monotonic = monotonic if monotonic is not None else time.monotonic if clock is time.time else clock
        self._desks: dict[str, Desk] = {}
        self._cond = threading.Condition()
        self.version = 0
        # desks forgotten, by id: the version that told the pages (None: held back by the desk's pace), and the
        # desk's pace then (``_Gone``), so a page's update names them instead of sending every desk again
        self._gone: dict[str, _Gone] = {}
        self.removed = 0  # a page older than this needs everything again (a removal ``_gone`` no longer holds)
        self.closed = False  # set at shutdown: live streams end instead of waiting
        self._class_recent: tuple = (-1, -1, None)  # (version, second, summary): shared by the pages' updates
        self._next_expiry = 0.0  # the soonest moment a desk's shown last-ten-minutes figure runs out
        self._next_silence = math.inf  # the soonest moment (monotonic) an online desk with a heartbeat is overdue
        # the service's link to the broker, as the pages show it: without it nothing on them is news
        self._link = {"connected": False, "error": ""}
        self._reason = None  # the link's own account of why it is down, read at each snapshot (BrokerStatus.reason)
        self._next_release = math.inf  # the soonest moment (monotonic) a desk held back may tell the pages again
        self._refused = 0  # new desks turned away while ``MAX_DESKS`` were all online, and when (monotonic) last logged
        self._refused_logged: float | None = None
        # desks taken off the page while offline (``remove_offline``): device id -> when, by our clock. The broker's
        # stored copies of them are not shown again; a live message brings one back. ``on_cleared`` keeps them
        # (the service's database), so a restart does not bring last class's desks back from the broker either
        self._cleared: dict[str, float] = {}
        self.on_cleared: Callable[[dict[str, float]], None] | None = None
        # the room's desks as an admin or instructor listed them (``set_expected``): each has a tile from the start,
        # "not heard yet" until it is, so a desk that never came up (unplugged, a wrong device id) is seen missing
        self._expected: set[str] = set()
        self._expected_changed = 0  # the version the list last changed at: the pages' updates after it carry it
        # the broker's stored state of each desk removed by hand, refused while it is off the page: applied when
        # the desk is heard again (a desk without heartbeats sends its state only when it changes, and came back
        # "Waiting for a first reading", a disengaged student missing from the alerts)
        self._held_states: dict[str, bytes] = {}
        self._next_unshare = math.inf  # the soonest moment (monotonic) a desk marked ``shared`` may be one device again
        # desks whose retained "online" came before their retained state (``CHECKING``): the state makes the desk
        self._stored_online: set[str] = set()
        # the name each listed desk last told (device id -> name): shown for it before it is heard again, after a
        # restart of the broker (without persistence: its retained state gone) and of this service; ``on_names``
        # keeps them (``store.desk_names``)
        self._names: dict[str, str] = {}
        self.on_names: Callable[[dict[str, str]], None] | None = None

    def _changed(self, desk: Desk) -> None:
        self.version += 1
        desk.changed = self.version
        self._cond.notify_all()

    def _announce(self, desk: Desk) -> None:
        """A desk's message changed it (holding the lock): the pages are told now, or, past
        ``DESK_UPDATES_PER_S``, once the desk may cause an update again (``wait_change``)."""
        if self._spend(desk):  # a held desk back at its pace is released here too: with no page open nothing
            desk.held = False  # calls wait_change, and it was counted (and logged) as flooding all day
            self._changed(desk)
            return
        self._hold(desk)

    def _spend(self, desk) -> bool:
        """Take one of the page updates ``desk`` (a Desk or a ``_Gone``) may cause now, if it has one."""
        now = self.monotonic()
        if desk.tokens_at is not None:
            desk.tokens = min(DESK_UPDATE_BURST, desk.tokens + (now - desk.tokens_at) * DESK_UPDATES_PER_S)
        desk.tokens_at = now
        if desk.tokens >= 1.0:
            desk.tokens -= 1.0
            return True
        return False

    def _hold(self, desk) -> None:
        """``desk`` is past its pace: count it, release it when it may cause an update again, log it."""
        now = self.monotonic()
        desk.held_back += 1
        if not desk.held:
            desk.held = True
            self._next_release = min(self._next_release, now + (1.0 - desk.tokens) / DESK_UPDATES_PER_S)
        if desk.held_logged is None or now - desk.held_logged >= OVER_RATE_LOG_S:
            desk.held_logged = now
            log.warning("classroom: desk %s sends more than %g messages a second (%d held back so far): the pages "
                        "show its changes at that pace. A desk sends under one a second: check its firmware, or "
                        "whether someone else uses its broker account", desk.device_id, DESK_UPDATES_PER_S,
                        desk.held_back)

    def _release_held(self) -> None:
        """Tell the pages of each held-back desk that may cause an update again (holding the lock)."""
        now = self.monotonic()
        if now < self._next_release:
            return
        self._next_release = math.inf
        paced: list[Desk | _Gone] = [*self._desks.values(), *self._gone.values()]
        for desk in paced:
            if not desk.held:
                continue
            tokens = min(DESK_UPDATE_BURST, desk.tokens + (now - (now if desk.tokens_at is None else desk.tokens_at)) * DESK_UPDATES_PER_S)
            if tokens >= 1.0:
                desk.tokens, desk.tokens_at, desk.held = tokens - 1.0, now, False
                if isinstance(desk, _Gone):
                    self._tell_gone(desk)
                else:
                    self._changed(desk)
            else:
                self._next_release = min(self._next_release, now + (1.0 - tokens) / DESK_UPDATES_PER_S)

    def held_back(self, most: int = 10) -> dict[str, int]:
        """The desks whose messages came past ``DESK_UPDATES_PER_S``, most first: how many (``/healthz``)."""
        with self._cond:
            paced: list[Desk | _Gone] = [*self._desks.values(), *self._gone.values()]
            over = sorted((d for d in paced if d.held_back),
                          key=lambda d: -d.held_back)[:most]
            return {d.device_id: d.held_back for d in over}

    def shared(self) -> list[str]:
        """The device ids two devices send as now (``note_run``), for ``/healthz``."""
        with self._cond:
            self._expire_shared(self.monotonic())
            return sorted(d.device_id for d in self._desks.values() if d.shared)

    def _note_run(self, desk: Desk, data) -> bool:
        """``note_run`` of a live message (holding the lock), and when the mark may end."""
        changed = note_run(desk, data, self.monotonic())
        if desk.shared and desk.shared_seen is not None:
            self._next_unshare = min(self._next_unshare, desk.shared_seen + SHARED_WINDOW_S)
        return changed

    def _expire_shared(self, now: float) -> None:
        """Unmark each desk two devices have not sent as for ``SHARED_WINDOW_S`` (holding the
        lock; ``now``: monotonic): one fixed, or both gone quiet, said no more."""
        if now <= self._next_unshare:
            return
        self._next_unshare = math.inf
        for desk in self._desks.values():
            if not desk.shared or desk.shared_seen is None:
                continue
            if now - desk.shared_seen > SHARED_WINDOW_S:
                desk.shared = False
                self._changed(desk)
            else:
                self._next_unshare = min(self._next_unshare, desk.shared_seen + SHARED_WINDOW_S)

    def _desk(self, device_id: str) -> Desk | None:
        """The desk for ``device_id``, added if there is room (call holding the lock)."""
        desk = self._desks.get(device_id)
        if desk is not None:
            return desk
        if len(self._desks) >= MAX_DESKS:
            offline = self._removable()
            if not offline:
                self._refused += 1
                now = self.monotonic()
                if self._refused_logged is None or now - self._refused_logged >= OVER_RATE_LOG_S:
                    # at most once a minute: a broker without the README's ACL let 20,000 made-up desks
                    # write 14 MB of these lines in 20 s
                    self._refused_logged = now
                    log.warning("classroom: %d desks already, all online; ignoring new ones (%d so far, the latest "
                                "%s): does a client without the README's ACL publish as made-up desks?",
                                MAX_DESKS, self._refused, device_id)
                return None
            # never heard live (only a retained state) and longest silent first
            self._drop(min(offline, key=lambda d: (d.heard is not None, d.last_seen, d.since or 0.0)).device_id, paced=False)
        desk = self._desks[device_id] = self._new_desk(device_id)
        if (gone := self._gone.pop(device_id, None)) is not None:  # back: at the pace it had, not a fresh burst
            _keep_pace(desk, gone)
            desk.changed = gone.told or 0  # the pages that missed the removal get the desk when it next changes
        return desk

    def _drop(self, device_id: str, paced: bool = True) -> None:
        """Forget a desk (holding the lock). The pages' next update names it gone (``snapshot``), at
        the desk's own pace when ``paced``: one desk's account clearing its state and saying it is
        there again, hundreds of times a second, sent every open page every desk at each removal
        (292 MB in 10 s for a school of 1,000 desks)."""
        desk = self._desks.pop(device_id)
        gone = self._gone[device_id] = _Gone(device_id, **{name: getattr(desk, name) for name in PACE})
        if not paced or self._spend(gone):
            self._tell_gone(gone)
        else:
            self._hold(gone)
        while len(self._gone) > MAX_DESKS:  # what no update can name any more: pages older than it start afresh
            oldest = self._gone.pop(next(iter(self._gone)))
            if oldest.told is None:
                self.version += 1
            self.removed = max(self.removed, oldest.told or self.version)
            self._cond.notify_all()

    def _tell_gone(self, gone: "_Gone") -> None:
        self.version += 1
        gone.told, gone.held = self.version, False
        self._cond.notify_all()

    def set_link(self, connected: bool, error: str = "", reason=None) -> None:
        """The subscriber's connection to the broker came or went: every open page is told,
        so an instructor never takes desks frozen by a broker outage for the class now.
        ``reason``: called at each snapshot while the error is empty, so "connecting" that
        lasts turns into what to check (the pages get a snapshot every few seconds)."""
        with self._cond:
            self._reason = reason
            link = {"connected": connected, "error": "" if connected else error}
            if not connected and self._link["connected"]:
                # the broker shutting down sends every connected desk's will, then closes this link: the desks
                # whose "offline" came just before are as unknown as the others, shown as they were (8 of 35
                # went Offline for the outage, and out of the alerts, at random). Confirmed after it (``_due``)
                now = self.monotonic()
                for desk in self._desks.values():
                    if not desk.online and desk.went_offline and now - desk.went_offline[0] <= WILL_BURST_S:
                        (_, desk.device_disengaged, desk.disengaged_since, desk.disengaged_sample,
                         desk.disengaged_unsure, desk.break_since) = desk.went_offline
                        desk.online, desk.went_offline, desk.switched_off = True, None, False
                        self._announce(desk)
            if connected and not self._link["connected"]:
                # (re)connected: each desk stays as it was, nothing for the pages to say, until it is heard or
                # the broker replays its "online" (``_due``); one that died while the broker was away never will
                # be, and its will went with the broker. No desk could be heard meanwhile: silence is timed from now
                now = self.monotonic()
                for desk in self._desks.values():
                    desk.gap = True  # states sent while we were away may have been missed (``show_state``)
                    desk.catchup = None  # ... and a backlog being caught up may lack some
                    if desk.checking_until is not None:  # it could not be heard meanwhile either
                        self._check(desk)
                    if desk.online:
                        desk.unconfirmed, desk.heard = True, max(desk.heard or now, now)
                        self._watch(desk)
            if link != self._link:
                self._link = link
                self.version += 1
                self._cond.notify_all()

    def remove(self, device_id: str) -> bool:
        """A desk cleared from the broker (an empty retained state: retired or renamed)."""
        with self._cond:
            self._held_states.pop(device_id, None)
            if self._cleared.pop(device_id, None) is not None:  # nothing of it left to keep off the page
                self._save_cleared()
            if device_id not in self._desks:
                return False
            if device_id in self._expected:  # still one of the room's desks: its tile stays, as never heard
                old, fresh = self._desks[device_id], self._new_desk(device_id)
                # ... at the old record's pace: a fresh burst and an update at once at each clearing let one
                # listed desk clearing and resending its state wake every page at every message
                _keep_pace(fresh, old)
                self._desks[device_id] = fresh
                self._announce(fresh)
                return True
            self._drop(device_id)
            return True

    def remove_offline(self) -> list[str]:
        """Take every offline desk off the page (an instructor's "Remove offline desks"): the
        last class's desks, a renamed desk's old id whose stored state the broker keeps. Their
        stored copies are not shown again, after a restart either (``on_cleared``); a desk heard
        live comes back at once. Returns the device ids removed."""
        with self._cond:
            gone = sorted(d.device_id for d in self._removable())
            now = self.clock()
            for device_id in gone:
                self._drop(device_id, paced=False)
                self._cleared[device_id] = now
            while len(self._cleared) > MAX_DESKS:  # the longest cleared is forgotten: its stored copy may show again
                oldest = min(self._cleared, key=self._cleared.__getitem__)
                del self._cleared[oldest]
                self._held_states.pop(oldest, None)
            if gone:
                self._save_cleared()
            return gone

    def _removable(self) -> list[Desk]:
        """The desks that may leave the page (holding the lock): offline, not being checked
        (``CHECKING``), not one of the room's listed desks. Remove the offline desks takes them;
        a new desk past ``MAX_DESKS`` takes the place of one."""
        return [d for d in self._desks.values()
                if not d.online and d.checking_until is None and d.device_id not in self._expected]

    def set_expected(self, device_ids, base: str | None = None) -> list[str] | None:
        """The desks this room should have (``_expected``), in name order; each not known yet
        gets a tile now, offline and never heard. A desk dropped from the list stays while it is
        known (Remove the offline desks takes an offline one away). Returns the list kept.

        ``base``: the list's version (``expected_version``) the change was made from: None (nothing
        changed) when the list has changed since, another instructor's newer list not overwritten
        unseen by a page that loaded it before. Without it the list is set whatever it was."""
        kept = sorted({str(i) for i in device_ids if DEVICE_ID.fullmatch(str(i))}, key=natural_key)[:MAX_DESKS]
        with self._cond:
            if base is not None and base != expected_version(sorted(self._expected, key=natural_key)):
                return None
            moved, self._expected = self._expected ^ set(kept), set(kept)
            names = {d: n for d, n in self._names.items() if d in self._expected}  # only the listed desks' names
            names.update({d: desk.desk for d in kept if (desk := self._desks.get(d)) is not None and desk.desk and not desk.shared})
            if names != self._names:
                self._names = names
                self._save_names()
            for device_id in [d for d in self._cleared if d in self._expected]:  # removed by hand once, listed now
                self._restore(device_id)
            for device_id in kept:
                if device_id not in self._desks and (desk := self._desk(device_id)) is not None:
                    self._changed(desk)
            for device_id in moved:  # on or off the list: the pages' Remove button counts them differently
                if (desk := self._desks.get(device_id)) is not None:
                    self._changed(desk)
            if moved:  # the pages' updates carry the new list (``snapshot``), for the box that shows it
                self.version += 1
                self._expected_changed = self.version
                self._cond.notify_all()
            return kept

    def expected(self) -> list[str]:
        with self._cond:
            return sorted(self._expected, key=natural_key)

    def set_cleared(self, cleared: dict) -> None:
        """The desks removed by hand before a restart (``on_cleared``'s record), before any message."""
        kept = {}
        for device_id, when in cleared.items():
            if DEVICE_ID.fullmatch(str(device_id)) and isinstance(when, (int, float)) and not isinstance(when, bool):
                kept[str(device_id)] = float(when)
        with self._cond:
            self._cleared = kept

    def cleared(self) -> dict[str, float]:
        with self._cond:
            return dict(self._cleared)

    def _admit(self, device_id: str, live: bool) -> bool:
        """Whether a message of ``device_id`` may show it (holding the lock): a desk removed by
        hand only by a live one, which ends its removal."""
        if device_id not in self._cleared:
            return True
        if not live:
            return False
        self._restore(device_id)
        return True

    def _restore(self, device_id: str) -> None:
        """A desk removed by hand is back on the page (holding the lock): with the stored state
        refused meanwhile, which may be its latest (a live message after it wins as newer)."""
        del self._cleared[device_id]
        self._save_cleared()
        held = self._held_states.pop(device_id, None)
        if held is not None:
            self.apply_state(device_id, held, retained=True)

    def _save_cleared(self) -> None:
        if self.on_cleared is None:
            return
        try:
            self.on_cleared(dict(self._cleared))
        except Exception as exc:  # noqa: BLE001 - a locked or full database: the page is right, a restart may differ
            log.warning("classroom: could not keep the list of desks removed from the page (%s): after a restart "
                        "the broker's stored copies of them may show again", exc)

    def apply_state(self, device_id: str, payload: bytes, retained: bool = False) -> bool:
        """A ``<prefix>/<id>/state`` message; False when it is malformed or older than what we have.

        ``retained``: the broker's stored copy, sent at (re)subscription: it says what the
        desk last showed, not that it is there now (its ``availability`` says that)."""
        if not DEVICE_ID.fullmatch(device_id) or len(payload) > MAX_PAYLOAD:
            return False
        data = parse_json(payload)
        state = parse_state(data)
        if state is None:
            return False
        now = self.clock()
        skew = None if retained else skew_reading(data.get("sent"), now)  # a retained copy was sent long ago
        with self._cond:
            if not self._admit(device_id, live=not retained):
                self._held_states[device_id] = payload  # the newest stored copy, for when it is heard again
                return False
            desk = self._desk(device_id)
            if desk is None:
                return False
            if not retained and self._note_run(desk, data):
                self._announce(desk)
            if not is_newer_state(desk, state):
                if state[2] == desk.seq:
                    desk.gap = False  # the state shown, again: none was missed
                if not retained and catch_up(desk, data, state, skew):  # the backlog behind a state sent ahead
                    self._announce(desk)
                return False  # a retained or repeated copy of an older change
            measure_clock(desk, skew)
            desk.catchup = None  # newer than the state sent ahead: what came before it is no longer shown
            show_state(desk, data, state, skew)
            desk.heartbeat_s = heartbeat_interval(data.get("heartbeat_s"))  # none: this firmware sends no heartbeat
            if not retained:
                self._heard(desk, now)
                desk.state_heard = desk.heard
            else:
                # it was there when it changed to this state, at least: its since, as shown (a stored copy newer than
                # the state shown was sent while this service had lost the broker, its on-connect heartbeat missed:
                # "last heard" stayed at the outage's start, older than the state); never later than now (a stored
                # copy dated 2286 was "last heard 0 s ago")
                desk.last_seen = max(desk.last_seen, min(state[1] + desk.clock_skew, now))
                desk.state_heard = None
                if desk.heard is None and device_id in self._stored_online:  # its "online" came first
                    self._stored_online.discard(device_id)
                    self._check(desk)
                self._watch(desk)
            self._keep_name(desk)
            self._announce(desk)
        return True

    def apply_heartbeat(self, device_id: str, payload: bytes) -> bool:
        """A ``<prefix>/<id>/heartbeat``: the desk is there now (``last_seen``), it promises the
        next within ``heartbeat_s``, and its current state comes along, applied as a state
        when it is newer than the one shown. False when malformed.

        A desk that is paused, or steady for an hour, sends no state or minute row; without
        this its "last heard" grew for as long, and a desk that died with its will lost
        could not be told from it."""
        if not DEVICE_ID.fullmatch(device_id) or len(payload) > MAX_PAYLOAD:
            return False
        data = parse_json(payload)
        if not isinstance(data, dict) or (every := heartbeat_interval(data.get("heartbeat_s"))) is None:
            return False
        state = parse_state(data) if "level" in data else None
        if "level" in data and state is None:
            return False  # a state no desk would send: the whole message is suspect
        now = self.clock()
        skew = skew_reading(data.get("sent"), now)  # never retained: always a live message
        with self._cond:
            self._admit(device_id, live=True)
            desk = self._desk(device_id)
            if desk is None:
                return False
            self._note_run(desk, data)  # announced below, as every heartbeat is
            measure_clock(desk, skew)
            if state is not None and is_newer_state(desk, state):  # a state the page missed (QoS 0 or not, the newest wins)
                if data.get("ahead") is True:  # older states follow it: history, not news (``start_catch_up``)
                    start_catch_up(desk)
                else:
                    desk.catchup = None
                show_state(desk, data, state, skew)
                desk.state_heard = self.monotonic()
            else:
                if state is not None and state[2] == desk.seq:
                    desk.gap = False  # the state shown: none was missed
                if "desk" in data:
                    desk.desk = shown_text(data["desk"], 64)
            desk.heartbeat_s = every
            self._heard(desk, now)
            self._keep_name(desk)
            self._announce(desk)
        return True

    def _new_desk(self, device_id: str) -> Desk:
        """A desk's record afresh, under the name it last told (``set_names``) until it is heard."""
        return Desk(device_id, desk=self._names.get(device_id, ""))

    def set_names(self, names: dict) -> None:
        """The names the listed desks last told before a restart (``on_names``' record), before any message."""
        kept = {str(k): name for k, v in names.items() if DEVICE_ID.fullmatch(str(k)) and (name := shown_text(v, 64))}
        with self._cond:
            self._names = dict(list(kept.items())[:MAX_DESKS])

    def names(self) -> dict[str, str]:
        with self._cond:
            return dict(self._names)

    def _keep_name(self, desk: Desk) -> None:
        """The name a listed desk tells now, kept when it changed (holding the lock). Not while two
        devices send as it (``shared``): its name flips between theirs, neither is its own."""
        if desk.device_id not in self._expected or desk.shared or self._names.get(desk.device_id, "") == desk.desk:
            return
        if desk.desk:
            self._names[desk.device_id] = desk.desk
        else:
            self._names.pop(desk.device_id, None)
        self._save_names()

    def _save_names(self) -> None:
        if self.on_names is not None:
            self.on_names(dict(self._names))  # ``DeskNames.remember``: never waits on the database

    def _heard(self, desk: Desk, now: float) -> None:
        """A live message from ``desk``: it is there now (holding the lock); ``now``: the wall clock."""
        desk.online, desk.last_seen, desk.heard, desk.unconfirmed = True, now, self.monotonic(), False
        desk.switched_off = False
        desk.checking_until = None
        self._watch(desk)

    def _check(self, desk: Desk) -> None:
        """``desk``, known only from the broker's stored copies, which say it was online: CHECKING
        until it is heard or its heartbeat is overdue (holding the lock)."""
        wait = silent_after(desk.heartbeat_s or FIRST_READING_S)  # with no heartbeat, its next minute row
        desk.checking_until = self.monotonic() + wait
        self._next_silence = min(self._next_silence, desk.checking_until)

    def _watch(self, desk: Desk) -> None:
        """Keep the soonest moment an online desk can be overdue (holding the lock). It may
        be early (the desk was heard since): ``_expire_silent`` then looks and sets it again."""
        if (due := _due(desk)) is not None:
            self._next_silence = min(self._next_silence, due)

    def apply_minute(self, device_id: str, payload: bytes) -> bool:
        """A ``<prefix>/<id>/minute`` message; False when malformed, repeated, or not recent.

        Minutes a desk sends after an outage are mostly older than ``RECENT_S``: they are
        history for the device's own log, not news for the page."""
        if not DEVICE_ID.fullmatch(device_id) or len(payload) > MAX_PAYLOAD:
            return False
        try:
            data = json.loads(payload)
            start, seq = float(data["start"]), int(data["seq"])
            seconds = {group: data.get(name, 0.0) for name, group in MINUTE_FIELDS.items()}
        except (ValueError, KeyError, TypeError, OverflowError, RecursionError, AttributeError):
            return False
        if not valid_desk_time(start) or not all(minute_seconds_ok(v) for v in seconds.values()) \
                or sum(seconds.values()) > MAX_MINUTE_S:
            return False
        now = self.clock()
        skew = skew_reading(data.get("sent"), now)  # never retained: always a live message
        with self._cond:
            self._admit(device_id, live=True)
            desk = self._desk(device_id)
            if desk is None:
                return False
            shared_changed = self._note_run(desk, data)
            if seq <= desk.minute_seq and desk.minute_start is not None and start <= desk.minute_start:
                if shared_changed:
                    self._announce(desk)
                return False  # a repeated copy (QoS 1 delivers at least once)
            desk.minute_seq, desk.minute_start = seq, start
            measure_clock(desk, skew)
            ours = start + time_correction(desk, skew)
            news = not desk.online  # a desk sending minutes is there, whatever their dates
            self._heard(desk, now)
            recent = counts_as_recent(ours, now)
            if recent:  # two rows for one minute (the device restarted within it) add up
                self._next_expiry = min(self._next_expiry, stops_counting_at(ours))  # when pages must drop it again
                row = desk.minutes.setdefault(ours, dict.fromkeys(MINUTE_FIELDS.values(), 0.0))
                for group, value in seconds.items():
                    row[group] += float(value)
            desk.forget_old_minutes(now)
            while len(desk.minutes) > MAX_MINUTE_ROWS:
                del desk.minutes[min(desk.minutes)]
            if recent or news or shared_changed:  # a backlog of old minutes after an outage is not a page update each
                self._announce(desk)
        return recent

    def apply_availability(self, device_id: str, payload: bytes, retained: bool = False) -> None:
        """``online`` or ``offline`` (the device's last will, or its clean stop).

        ``retained``: the broker's stored copy (a restart of this service, a reconnection):
        the desk said so when it connected, perhaps days ago, so it is no sign of a desk this
        service has not heard live (alone it makes no desk). For one it has, it is the
        broker saying it holds no will of the desk's: online when the link came back, it
        stays so; offline (Mosquitto sends every desk's will as it shuts down) it reconnected
        since. Either way a desk with a heartbeat must still beat (``_due``)."""
        if not DEVICE_ID.fullmatch(device_id):
            return
        online = payload.strip() == b"online"
        with self._cond:
            self._stored_online.discard(device_id)  # what it says now replaces a stored "online" still waiting
            if online and retained:
                known = self._desks.get(device_id)
                if known is None:  # no desk alone; its stored state (when it comes) makes one, CHECKING
                    if len(self._stored_online) < MAX_DESKS:
                        self._stored_online.add(device_id)
                    return
                if known.heard is None:  # at the start, or replayed at a reconnection: checked afresh
                    was = known.checking_until
                    self._check(known)
                    if was is None or was <= self.monotonic():
                        self._announce(known)
                    return
                if not known.online:
                    known.online, known.heard = True, self.monotonic()  # its last_seen stays what we know of it
                    known.switched_off = False  # online again: whatever ends it next says what it was
                    self._announce(known)
                known.unconfirmed = False
                self._watch(known)
                return
            if online:
                self._admit(device_id, live=True)
            desk = self._desk(device_id) if online else self._desks.get(device_id)  # an unknown desk going offline: nothing to show
            if desk is None:
                return
            if not online and desk.checking_until is not None:  # offline after all (its will, or stored so)
                desk.checking_until = None
                self._announce(desk)
            if online:
                desk.went_offline = None
                self._heard(desk, self.clock())
                self._announce(desk)
            elif desk.online:
                desk.went_offline = (self.monotonic(), desk.device_disengaged, desk.disengaged_since,
                                     desk.disengaged_sample, desk.disengaged_unsure, desk.break_since)
                desk.online = False
                desk.switched_off = (desk.level == "Absent" and desk.label not in ABSENT_REASONS and
                                     desk.state_heard is not None and self.monotonic() - desk.state_heard <= SWITCHED_OFF_S)
                desk.restart_stretch()
                self._announce(desk)

    def snapshot(self, since: int | None = None) -> dict:
        """The page's and ``/api/classroom``'s data: desks in attention order and counts per level.

        ``since``: only the desks changed after that version (the live page's updates)."""
        tally = dict.fromkeys(LEVELS, 0)
        with self._cond:
            now = self.clock()
            self._expire_silent(self.monotonic())  # a script polling the API sees a silent desk offline too
            self._expire_shared(self.monotonic())
            if since is not None and since < self.removed:
                since = None  # a desk that page shows is gone: send everything (the page starts afresh on "full")
            for d in self._desks.values():
                shown = (d.level if d.level in ATTENTION else UNKNOWN if d.level else WAITING) if d.online \
                    else CHECKING if d.checking_until is not None else "Offline"
                tally[shown] = tally.get(shown, 0) + 1
            # the levels, then (only while a desk has one) UNKNOWN, last in the order as its tiles, then the page's
            # own words: WAITING (online, no state yet: counted, so the counts add up to the desks shown), "Offline"
            counts = {level: tally[level] for level in reversed(LEVELS)}
            if tally.get(UNKNOWN):
                counts[UNKNOWN] = tally[UNKNOWN]
            counts[WAITING] = tally.get(WAITING, 0)
            if tally.get(CHECKING):  # only while this service has just started
                counts[CHECKING] = tally[CHECKING]
            counts["Offline"] = tally.get("Offline", 0)
            summary = self._class_summary(now)
            desks = [d for d in self._desks.values() if since is None or d.changed > since]
            gone = [] if since is None else [g.device_id for g in self._gone.values()
                                             if g.told is not None and g.told > since]
            desks.sort(key=lambda d: d.sort_key(now))
            rows = [{**{f: getattr(d, f) for f in SHOWN}, "disengaged_since": d.shown_stretch(),
                     "checking": d.checking_until is not None,
                     "listed": d.device_id in self._expected,
                     # a paused desk's minutes before its pause read as now: the student asked for privacy
                     "recent": None if d.level == "Paused" else d.recent(now)} for d in desks]
            version, link = self.version, dict(self._link)
            listed = sorted(self._expected, key=natural_key) if since is None or self._expected_changed > since else None
            if not link["connected"] and not link["error"] and self._reason is not None:
                link["error"] = self._reason()
        found = {"desks": rows, "gone": gone, "counts": counts, "recent": summary, "now": now, "version": version,
                 "full": since is None, "broker": link, "long_absent_s": LONG_ABSENT_S,
                 # the server's zone: a time of day on the page is the server's (its clock is, by "now"), not the laptop's
                 "utc_offset_s": time.localtime(now).tm_gmtoff}
        if listed is not None:  # the room's list, in full snapshots and in the updates after it changed
            found["expected"] = {"desks": listed, "version": expected_version(listed)}
        return found

    def _class_summary(self, now: float) -> dict | None:
        """The class: the online desks' last minutes together, each desk counting by its
        seconds; computed once per change and second, not once per open page (holding the lock).

        The page shows its ``engaged_share_there``, of the time students were there (``summarise_minutes``):
        an empty seat's "Absent" minutes made two engaged students and two empty seats "50% engaged"
        (a paused desk's are not counted either, those from before its pause neither: the student asked
        for privacy). ``minutes``: the most any desk counts,
        so two minutes into a lesson the page says "last 2 min", not "last 10 min"."""
        version, second, summary = self._class_recent
        if version == self.version and second == int(now):
            return summary
        recent = [r for d in self._desks.values() if d.online and d.level != "Paused" and (r := d.recent(now))]
        summary = None
        if recent:
            summary = {"desks": len(recent), "minutes": max(r["minutes"] for r in recent),
                       **summarise_minutes([r["seconds"] for r in recent])}
        self._class_recent = (self.version, int(now), summary)
        return summary

    def wait_change(self, version: int, timeout: float) -> int:
        """Block until the version moves past ``version`` (or ``timeout``); returns the version.

        Every open page calls this every few seconds, so it is also where a desk whose
        last-ten-minutes figure has run out (a paused desk, a failed camera: no more minute
        rows) becomes a change: the pages drop the figure instead of showing it for hours,
        and where a desk held back (``_announce``) is told of once its pace allows."""
        with self._cond:
            now = self.clock()
            self._expire_recent(now)
            self._expire_silent(self.monotonic())
            self._expire_shared(self.monotonic())
            self._release_held()
            if self.version == version and not self.closed:
                # back at a held desk's release, not only at the next change or the timeout
                self._cond.wait(max(0.0, min(timeout, self._next_release - self.monotonic())))
                self._release_held()
            return self.version

    def _expire_recent(self, now: float) -> None:
        """Mark changed each desk whose shown figure is older than its rows allow (holding the lock)."""
        if now < self._next_expiry:
            return
        self._next_expiry = math.inf
        for desk in self._desks.values():
            if not desk.minutes:
                continue
            cached = desk.recent_cache
            ran_out = cached is not None and cached[0] == desk.minute_seq and now >= cached[1]
            desk.forget_old_minutes(now)
            desk.recent(now)  # recomputed if it ran out: fewer minutes, or none
            if ran_out:
                self._changed(desk)
            if desk.recent_cache is not None:
                self._next_expiry = min(self._next_expiry, desk.recent_cache[1])

    def _expire_silent(self, now: float) -> None:
        """Offline, each online desk silent past ``_due`` by the monotonic clock (``now``;
        holding the lock): its will was lost, or it hangs. Not while the service itself has no link to the broker: then no
        desk can be heard, and the page says so instead; at the reconnection every desk
        starts again from its availability."""
        if now < self._next_silence or not self._link["connected"]:
            return
        self._next_silence = math.inf
        for desk in self._desks.values():
            if desk.checking_until is not None:  # not heard in time: Offline now
                if now >= desk.checking_until:
                    desk.checking_until = None
                    self._changed(desk)
                else:
                    self._next_silence = min(self._next_silence, desk.checking_until)
            if (due := _due(desk)) is None:
                continue
            if now >= due:
                desk.online = desk.unconfirmed = False
                desk.switched_off = False  # fell silent: not a clean stop
                desk.restart_stretch()
                self._changed(desk)
            else:
                self._next_silence = min(self._next_silence, due)

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._desks)


def _due(desk: Desk) -> float | None:
    """When (monotonic) an online desk not heard since is offline, or None: never timed out.
    By its heartbeat; with none, by the minute row a running desk sends while it has no
    state yet (``FIRST_READING_S``), or by ``CONFIRM_S`` while a reconnection is unconfirmed."""
    if not desk.online or desk.heard is None:
        return None
    every = desk.heartbeat_s or (None if desk.level else FIRST_READING_S)
    if every:
        return desk.heard + silent_after(every)
    return desk.heard + CONFIRM_S if desk.unconfirmed else None
