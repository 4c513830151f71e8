"""One desk as the instructor sees it (``Desk``): its record, its place in the order, and what
a state it sends does to it.

"Needs attention" times a student's disengaged stretch (``disengaged_since``), not the
current level's own ``since``: a student who moves between "Not engaged" and "Distracted"
every 90 s was never flagged against a 2-minute threshold. The stretch survives moves
between those two alert levels, and a break of other levels shorter than
``STRETCH_BREAK_S``, as the desk's buzzer does (40 s sad, a 3 s glance up, over and over,
was never flagged at all): the break is not counted in it ("Present", an expression that
could not be read, is no evidence of disengagement), and a longer one ends it. It counts
only changes this service saw one after another: a desk that went offline (its will, its
clean stop, its silence) restarts it at the current level's ``since`` (or ends it, during a
break), and after a broker link that was lost the first state newer than the one shown (one
was missed) begins a stretch of its own; either may alert later, never on a stretch that
was not seen. A copy of the state shown (the broker's replay, a heartbeat) says none was missed.
"""
from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field, fields, replace

from edge_app.engagement import STRETCH_BREAK_S
from edge_app.fleet.classroom.desk_clock import time_correction
from edge_app.fleet.classroom.levels import ALERT_LEVELS, ATTENTION, LEVELS
from edge_app.fleet.classroom.messages import shown_text
from edge_app.fleet.classroom.minute_rows import counts_as_recent, stops_counting_at, summarise_minutes

log = logging.getLogger(__name__)

# an empty seat: a desk "Absent" this long is ordered after the working desks (before the offline ones), not among
# those needing the instructor; classroom.js reads it from the snapshot (``long_absent_s``) to order them alike
LONG_ABSENT_S = 300.0
NUMBERS = re.compile(r"(\d+)")  # the numbers in a desk's name, for its place in the order
# Page updates one desk's messages may cause: 10 a second, after a burst of 30 (a desk sends under one a second:
# a state held 1.5 s at least, a minute row, a heartbeat; its backlog after an outage comes at once). Past it the
# messages are still applied, nothing is lost, but the pages hear of that desk at this pace: each message woke every
# open page for a snapshot, so one desk sending thousands a second (a broken firmware, a student with its broker
# password) took the server's CPU and held every other desk's changes back by seconds.
DESK_UPDATES_PER_S = 10.0
DESK_UPDATE_BURST = 30.0
# Two devices given one device id (a card cloned with its config, a technician's slip) log in as one client: the
# broker drops each as the other connects, about every second, and the page showed one healthy desk whose name and
# level flipped, the other student with no tile and nothing to say why. Each run of a desk's publisher tags its
# messages with a random ``run``; a run heard again after another one was heard since (within SHARED_WINDOW_S)
# is two devices at once (a restart's new run never goes back to the old one). The tile says so (``shared``) until
# SHARED_WINDOW_S passes with no such return, and the service logs it for the technician.
RUN_TAG = re.compile(r"[0-9a-f]{1,32}")
SHARED_WINDOW_S = 300.0
# A desk stopped cleanly (the end of the day, a restart) sends "Absent", the rest of its outbox (up to 3 s), then
# "offline": an "offline" this soon after a live plain "Absent" is such a stop
SWITCHED_OFF_S = 10.0
MAX_RUNS = 8  # runs remembered per desk: three devices on one id come back in turn too


@dataclass
class Desk:
    device_id: str
    desk: str = ""
    level: str = ""
    label: str = ""
    since: float | None = None
    disengaged_since: float | None = None  # an alert level: when the stretch of alert levels began (our clock)
    seq: int = -1
    online: bool = False
    last_seen: float = 0.0
    changed: int = 0  # the classroom's version at this desk's latest change
    clock_skew: float = 0.0  # our clock minus the desk's, when more than CLOCK_SKEW_S (else 0): added to its times
    skew_known: bool = False  # a live message has measured it (a retained one cannot: it was sent long ago)
    pending_skew: float | None = None  # a different reading, adopted when the next live message agrees
    state_sample: float | None = None  # the skew the current state's own message showed (None: retained)
    device_since: float | None = None  # ``since`` by the desk's own clock: what ordering its messages compares
    # ``disengaged_since`` by the desk's own clock, and the skew its message showed: the stretch may have begun
    # messages and a clock step ago, so it keeps its own reading, not the current state's (``desk_clock._redate``)
    device_disengaged: float | None = None
    disengaged_sample: float | None = None
    disengaged_unsure: bool = False  # dated by a reading not confirmed yet, at its latest (``time_correction``)
    break_since: float | None = None  # a break in the stretch: when it began, by the desk's clock (show_state)
    minutes: dict = field(default_factory=dict)  # minute start (our clock) -> seconds per group, the last RECENT_S
    minute_seq: int = -1  # the latest minute message's seq and start by the desk's clock: repeats are dropped
    minute_start: float | None = None
    heartbeat_s: float | None = None  # the interval the desk announced (None: it sends no heartbeat)
    heard: float | None = None  # ``last_seen`` by our monotonic clock: what its silence is timed from
    unconfirmed: bool = False  # online when the link to the broker came back, not heard or replayed since
    gap: bool = False  # the link was lost since the state shown: a newer one may follow others missed
    recent_cache: tuple | None = None  # (minute_seq, valid until, summary): every page update reads it for every desk
    tokens: float = DESK_UPDATE_BURST  # page updates this desk may cause now (Classroom._announce)
    tokens_at: float | None = None  # when (monotonic) they were last counted
    held: bool = False  # a change of this desk the pages have not been told of yet
    held_back: int = 0  # its messages past DESK_UPDATES_PER_S since this service started (/healthz)
    held_logged: float | None = None  # when (monotonic) that was last logged
    # when (monotonic) a live "offline" took it offline, and its alert stretch then: Mosquitto sends every desk's
    # will as it shuts down, so an "offline" just before the link is lost says nothing of the desk (``set_link``)
    went_offline: tuple | None = None
    shared: bool = False  # two devices send as this device id (``note_run``): the tile says so
    run: str = ""  # the publisher run of the latest live message
    runs: dict = field(default_factory=dict)  # the runs heard live lately -> when (monotonic) last, MAX_RUNS at most
    shared_seen: float | None = None  # when (monotonic) a run came back last: two devices were heard then
    checking_until: float | None = None  # CHECKING until then (monotonic), unless heard: its stored copies said online
    state_heard: float | None = None  # when (monotonic) its current state came live (not a stored copy)
    # offline by its own "offline" just after a live "Absent" (SWITCHED_OFF_S): a clean stop logs "Absent" and then says
    # "offline"; the tile says "last: desk switched off", not "last: Absent", read as a student who left
    switched_off: bool = False
    # the desk as it was before a heartbeat's state sent ahead of its backlog (``start_catch_up``), taking the
    # backlog's states as they come, until it reaches the state shown: the stretch it then has is the desk's
    catchup: Desk | None = None

    def recent(self, now: float) -> dict | None:
        """Seconds per group over the minutes that ended in the last ``RECENT_S``, or None."""
        cached = self.recent_cache
        if cached is not None and cached[0] == self.minute_seq and now < cached[1]:
            return cached[2]
        starts = [start for start in self.minutes if counts_as_recent(start, now)]
        summary = {"minutes": len(starts), **summarise_minutes([self.minutes[t] for t in starts])} if starts else None
        # the same until a new row comes or the oldest counted one leaves the window
        self.recent_cache = (self.minute_seq, stops_counting_at(min(starts)) if starts else math.inf, summary)
        return summary

    def forget_old_minutes(self, now: float) -> None:
        """Drop the rows out of the last ``RECENT_S``: older ones, and ones dated after now
        (this server's clock set back an hour kept "Engaged" rows in every tile's last ten
        minutes for an hour while the student was away)."""
        for start in [start for start in self.minutes if not counts_as_recent(start, now)]:
            del self.minutes[start]

    def sort_key(self, now: float) -> tuple:
        """Online desks that need attention first (longest in that state, or disengaged stretch,
        first), then empty seats (``LONG_ABSENT_S``), then the desks being checked (``CHECKING``),
        offline last (classroom.js ``compare`` orders them the same way). Times are compared in whole
        seconds, as the tiles show them: desks "for 3 min" since the same second go by name, not by
        the milliseconds between their messages."""
        name = self.desk or self.device_id
        rank = ATTENTION.get(self.level, len(LEVELS))
        if self.level == "Absent" and self.since is not None and now - self.since >= LONG_ABSENT_S:
            rank = len(LEVELS) + 1  # after every level, a newer desk's unknown one too
        return (not self.online, self.checking_until is None, rank, math.floor(self.stretch() or 0.0), natural_key(name), name)

    def stretch(self) -> float | None:
        """When what the alert times began: the disengaged stretch on an alert level, else ``since``."""
        return self.shown_stretch() or self.since

    def shown_stretch(self) -> float | None:
        """``disengaged_since`` as the pages see it: none off the alert levels (a break's
        stretch is kept here until it goes on or ends, not shown as disengagement)."""
        return self.disengaged_since if self.level in ALERT_LEVELS else None

    def restart_stretch(self) -> None:
        """Forget the alert levels before the current one (states may have been missed)."""
        self.break_since, self.catchup = None, None
        if self.level in ALERT_LEVELS and self.device_disengaged is not None:
            self.device_disengaged, self.disengaged_since = self.device_since, self.since
            self.disengaged_sample, self.disengaged_unsure = self.state_sample, False
        elif self.level not in ALERT_LEVELS:  # a break's stretch: whether it went on is unknown
            self.device_disengaged = self.disengaged_since = None


HIDDEN = ("went_offline", "seq", "changed", "device_since", "device_disengaged", "disengaged_sample", "disengaged_unsure", "break_since", "minutes",
          "minute_seq", "minute_start", "recent_cache", "skew_known", "pending_skew", "state_sample", "heard", "tokens",
          "tokens_at", "held", "held_back", "held_logged", "unconfirmed", "gap", "run", "runs", "shared_seen",
          "checking_until", "state_heard", "catchup")  # bookkeeping, not for the page
SHOWN = [f.name for f in fields(Desk) if f.name not in HIDDEN]


def is_newer_state(desk: Desk, state: tuple[str, float, int]) -> bool:
    """Whether ``state`` is later than the one the desk shows (not a retained or repeated copy)."""
    _, since, seq = state
    return not (seq <= desk.seq and desk.device_since is not None and since <= desk.device_since)


def show_state(desk: Desk, data: dict, state: tuple[str, float, int], skew: float | None) -> None:
    """Show ``state`` (its message ``data``, its clock reading ``skew``, already measured) on ``desk``."""
    level, since, seq = state
    if desk.gap:  # the state before this one may not be the one shown: what the stretch was is unknown
        desk.gap, desk.device_disengaged, desk.disengaged_since, desk.break_since = False, None, None, None
    ours = since + time_correction(desk, skew)
    unsure = ours != (start := since + time_correction(desk, skew, latest=True))
    if unsure and desk.since is not None:
        ours = max(ours, desk.since)  # not before the state it follows: a clock set back is not "for 72 h"
    began, began_device = desk.disengaged_since, desk.device_disengaged  # the stretch so far, if any
    if level not in ALERT_LEVELS:
        if began is not None and desk.level in ALERT_LEVELS:
            desk.break_since = since  # a break: the stretch goes on if an alert level is back soon enough
        elif desk.break_since is None:
            desk.device_disengaged = desk.disengaged_since = None
    elif (began is not None and began_device is not None and desk.break_since is not None
          and 0 <= since - desk.break_since < STRETCH_BREAK_S):
        # back from a short break (timed on the desk's clock, as its states are): the same stretch, the
        # break not counted in it, as the desk's buzzer times it (indicators.BuzzerPolicy)
        pause = since - desk.break_since
        desk.device_disengaged, desk.disengaged_since = began_device + pause, min(began + pause, start)
        desk.break_since = None
    elif began is None or desk.level not in ALERT_LEVELS or began > start:
        # a stretch begins (a moved clock cannot make it begin later than now); compared on our clock: the
        # stretch's start may be stamped by the desk's clock before a time server stepped it
        desk.device_disengaged, desk.disengaged_sample, desk.disengaged_since = since, skew, start
        desk.disengaged_unsure, desk.break_since = unsure, None
    desk.level, desk.device_since, desk.seq, desk.state_sample = level, since, seq, skew
    desk.since = ours
    desk.label = shown_text(data.get("label"), 120) or level
    desk.desk = shown_text(data.get("desk"), 64)


STRETCH = ("device_disengaged", "disengaged_since", "disengaged_sample", "disengaged_unsure", "break_since")


def start_catch_up(desk: Desk) -> None:
    """A heartbeat's state came ``ahead`` of older ones still to come (the backlog a desk kept
    through its own outage, sent in order after it): it is shown at once, its stretch begun
    afresh (those between were not seen), and a copy of the desk as it was takes the older
    ones (``catch_up``). Shown one by one, they put each old state on the page as the desk's
    current one ("Not engaged for 55 min") until the backlog's last."""
    desk.catchup = replace(desk, catchup=None)
    desk.gap = True


def catch_up(desk: Desk, data: dict, state: tuple[str, float, int], skew: float | None) -> bool:
    """One of the older states after a state sent ``ahead`` (``start_catch_up``): applied to the
    copy. True once the copy has reached the state shown, whose stretch becomes the one the
    states seen one after another give (a break, or the stretch going on through the outage)."""
    copy = desk.catchup
    if copy is None or not is_newer_state(copy, state):
        return False
    show_state(copy, data, state, skew)
    if (copy.level, copy.device_since) != (desk.level, desk.device_since):
        return False
    for name in STRETCH:
        setattr(desk, name, getattr(copy, name))
    desk.catchup = None
    return True


def note_run(desk: Desk, data, now: float) -> bool:
    """A live message's publisher ``run`` (``RUN_TAG``; ``now``: monotonic; the caller holds the Classroom's lock):
    a run that was heard lately, then another, comes back only when two devices send as this
    desk. True when the desk's ``shared`` changed. A message with no run (older firmware)
    tells nothing."""
    was = desk.shared
    run = data.get("run") if isinstance(data, dict) else None
    if isinstance(run, str) and RUN_TAG.fullmatch(run):
        last = desk.runs.get(run)
        if run != desk.run and last is not None and now - last <= SHARED_WINDOW_S:
            desk.shared_seen = now
        desk.run, desk.runs[run] = run, now
        while len(desk.runs) > MAX_RUNS:
            del desk.runs[min(desk.runs, key=desk.runs.__getitem__)]
    desk.shared = desk.shared_seen is not None and now - desk.shared_seen <= SHARED_WINDOW_S
    if desk.shared and not was:
        log.warning("classroom: two devices send as desk %s (their messages come in turn, and the broker drops "
                    "each as the other connects): its tile mixes two students. Give each device its own "
                    "mqtt.device_id (firmware/README, \"Provisioning many desks\")", desk.device_id)
    return desk.shared != was


def natural_key(name: str) -> tuple:
    """Names as people number desks: "Row 2" before "Row 10" (the numbers in a name compared
    by value, case ignored), as the page orders them (classroom.js ``byName``)."""
    return tuple(int(part) if i % 2 else part.casefold() for i, part in enumerate(NUMBERS.split(name)))
