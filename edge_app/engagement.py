"""From per-frame emotion probabilities to a smoothed engagement state.

Emotion probabilities are averaged over time with an exponential moving average (a
half-life in seconds, so the smoothing is the same at any frame rate), mapped to a level
through the configured table, and a new level is only shown once it has held for
``min_hold_s`` (hysteresis): one odd frame never flips the LED. "Distracted" means only a
turned-away (profile) face has been seen for a while, "Absent" no face at all ("Absent - too
dark to see" when the frames were too dark to find one).

A face whose most likely emotion is below ``min_confidence`` is "Uncertain": the face
counts as present and frontal, but its probabilities are not smoothed in and a shown
engagement level stays as it was for a while - a guess is never logged as an engagement
record. Such a frame, like a short gap without a face, says nothing of the level: a change under way
keeps counting towards ``min_hold_s`` through it (only a gap longer than the hold restarts
it). It does say that a student faces the camera, though: from "Absent" or "Distracted",
unsure faces lead to "Present" (there, expression unknown), or a student in bad light
was logged absent, or turned away, for as long as the light stayed bad; and a level no
sure frame has shown for ``absent_after_s`` gives way to "Present" too, as it gives way to
"Absent" when the face has been gone that long.
"""
from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING

import numpy as np


class Group(enum.StrEnum):
    """The engagement groups (LED colours). A level is a group, optionally followed by
    a description ("Engaged - likes the topic"). "Paused" is the student's privacy switch:
    the camera is off, so nothing is known of the face. StrEnum: each member *is* its text, so
    JSON, SQLite rows, templates and config files see the same strings as before."""

    ENGAGED = "Engaged"
    PARTIALLY_ENGAGED = "Partially engaged"
    NOT_ENGAGED = "Not engaged"
    PRESENT = "Present"  # a face towards the camera whose expression cannot be read: there, level unknown
    DISTRACTED = "Distracted"
    ABSENT = "Absent"
    PAUSED = "Paused"

    @property
    def css_class(self) -> str:
        """The web UI's class for this group's colour (static/app.css): "g-partially-engaged"."""
        return "g-" + self.value.replace(" ", "-").lower()


if TYPE_CHECKING:
    from edge_app.config import Config


GROUPS = tuple(Group)
DISTRACTED, ABSENT = Group.DISTRACTED, Group.ABSENT  # levels the tracker sets itself, with PRESENT
PRESENT = Group.PRESENT  # a frontal face whose emotion stays unsure, after "Absent" or "Distracted"
PAUSED = Group.PAUSED  # set by the capture loop while the privacy switch is on, never by the tracker
# set by the capture loop when no frame has come for as long as no face counts as Absent: in the
# Absent group (no minute counts it; the LED blinks the fault), its words say why, so an instructor
# reading "Absent" on the classroom page does not take a student at a desk with a dead camera for gone
CAMERA_FAULT = f"{Group.ABSENT.value} - camera not working"
# set by the tracker instead of "Absent" when the frames without a face were too dark for one
# to be found (``Observation.dark``): lights off read as an empty chair. Absent's group, as above
TOO_DARK = f"{Group.ABSENT.value} - too dark to see"
ABSENT_REASONS = (CAMERA_FAULT, TOO_DARK)  # Absent levels whose words say why (and name no emotion)
ABSENT_PAIR = {ABSENT, TOO_DARK}  # what the tracker says of frames without a face
NO_EXPRESSION = (PRESENT, DISTRACTED, ABSENT, TOO_DARK)  # the tracker's own levels: no emotion goes with them
UNCERTAIN = "Uncertain"  # a face's label (uploads, live overlay) when its emotion is unsure; never a state
NO_FACE = "No face"  # the log's and the export's label for a kept photo in which no face was found; never a state


def names_an_emotion(label: str) -> bool:
    """Might ``label`` name an emotion? Any text but a group's own name and the Absent levels
    whose words say why (``ABSENT_REASONS``: a dead camera, too dark) may: the configured
    levels' words are free ("Engaged - likes the topic" is happiness under the default mapping)."""
    return label not in ABSENT_REASONS and label not in GROUPS


def level_words(label: str, group: str, with_emotion: bool) -> str:
    """A state as shown to someone who may (``with_emotion``) or may not see the emotion: the
    label, or its group where the label might name the emotion."""
    return label if with_emotion or not names_an_emotion(label) else group


# the longest break (other states) a disengaged stretch survives, on the desk's buzzer and on the
# classroom page alike: a glance up, not a return (device/indicators.py, fleet/classroom/desk.py)
STRETCH_BREAK_S = 60.0
LEVEL_GROUPS = (Group.ENGAGED, Group.PARTIALLY_ENGAGED, Group.NOT_ENGAGED)  # what the emotion mapping may pick


def group_of(level: str) -> Group:
    """The LED group of a level: "Engaged - likes the topic" -> "Engaged"."""
    for g in Group:
        if level.startswith(g):
            return g
    raise ValueError(f"level {level!r} belongs to no group {GROUPS}")


@dataclass
class EngagementState:
    level: str
    since: float
    emotion: str | None = None
    confidence: float = 0.0
    probabilities: dict[str, float] = field(default_factory=dict)
    # when the level's words without the emotion (``level_words``) began: "Engaged - paying attention"
    # to "- likes the topic" is no change to whoever may not see the emotion, and a ``since`` that
    # restarted there told them when the expression changed (None: ``since``)
    words_since: float | None = None

    def after(self, level: str, since: float) -> "EngagementState":
        """The state that follows this one at ``since``, keeping ``words_since`` while the
        level's words without the emotion stay the same."""
        same = level_words(level, group_of(level), False) == level_words(self.level, self.group, False)
        began = self.since if self.words_since is None else self.words_since  # 0.0 is a time (a tracker's start)
        return EngagementState(level, since, words_since=began if same else since)

    @property
    def group(self) -> Group:
        return group_of(self.level)


@dataclass
class Observation:
    """What one frame showed: the main face's kind and its emotion probabilities."""

    t: float
    kind: str | None  # "frontal", "profile" or None (no face)
    probabilities: np.ndarray | None = None
    dark: bool = False  # no face, in a frame too dark for one to be found (the capture loop's rule)


@dataclass(frozen=True)
class EngagementRules:
    """The tracker's settings, immutable: a settings change is a new ``EngagementRules``
    handed to ``update``, so a frame never sees half-old, half-new rules."""

    mapping: Mapping[str, str]
    absent_after_s: float = 5.0
    distracted_after_s: float = 2.0
    ema_half_life_s: float = 1.0
    min_hold_s: float = 1.5
    min_confidence: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "mapping", MappingProxyType(dict(self.mapping)))  # a read-only copy

    @classmethod
    def from_config(cls, cfg: "Config") -> "EngagementRules":
        e = cfg.engagement
        return cls(e.mapping, e.absent_after_s, e.distracted_after_s, e.ema_half_life_s, e.min_hold_s, e.min_confidence)


class EngagementTracker:
    """Smoothing history and the shown state (mutable, one thread's) under ``rules``."""

    def __init__(self, labels: list[str], mapping: Mapping[str, str], absent_after_s=5.0,
                 distracted_after_s=2.0, ema_half_life_s=1.0, min_hold_s=1.5, start: float = 0.0,
                 min_confidence: float = 0.0):
        self.labels = list(labels)
        self.rules = self._checked(EngagementRules(mapping, absent_after_s, distracted_after_s, ema_half_life_s, min_hold_s,
                                                   min_confidence))
        self.state = EngagementState(ABSENT, start)
        self._ema: np.ndarray | None = None
        self._last_t: float | None = None
        self._last_frontal = -1e18
        self._last_face = -1e18
        self._last_sure = -1e18  # the last frontal face whose emotion was sure
        self._pending: tuple[str, float, float] | None = None  # (level, since, last frame that showed it)
        self._prev_t: float | None = None  # the previous frame's time: no gap lies between it and this one

    @classmethod
    def from_config(cls, cfg: "Config", labels: list[str], start: float = 0.0) -> "EngagementTracker":
        e = cfg.engagement
        return cls(labels, e.mapping, e.absent_after_s, e.distracted_after_s, e.ema_half_life_s, e.min_hold_s, start,
                   e.min_confidence)

    def _checked(self, rules: EngagementRules) -> EngagementRules:
        missing = [l for l in self.labels if l not in rules.mapping]
        if missing:
            raise ValueError(f"engagement.mapping has no level for {missing}")
        return rules

    @property
    def mapping(self) -> Mapping[str, str]:
        return self.rules.mapping

    @property
    def min_hold_s(self) -> float:
        return self.rules.min_hold_s

    @property
    def min_confidence(self) -> float:
        return self.rules.min_confidence

    def _smooth(self, t: float, p: np.ndarray) -> np.ndarray:
        half_life = self.rules.ema_half_life_s
        if self._ema is None or self._last_t is None or half_life <= 0:
            self._ema = p.astype(np.float64).copy()
        else:
            dt = max(0.0, t - self._last_t)
            alpha = 1.0 - 0.5 ** (dt / half_life)
            self._ema += alpha * (p - self._ema)
        return self._ema

    def _candidate(self, obs: Observation) -> str | None:
        t = obs.t
        if obs.kind == "frontal" and obs.probabilities is not None:
            self._last_frontal = self._last_face = t
            # not a number (a float model gone wrong) is no answer: smoothed in, it stayed in the average for good
            if not np.isfinite(obs.probabilities).all() or float(obs.probabilities.max()) < self.rules.min_confidence:
                return self._unsure(t)
            self._last_sure = t
            ema = self._smooth(t, obs.probabilities)
            self._last_t = t
            return self.rules.mapping[self.labels[int(ema.argmax())]]
        if obs.kind == "profile":
            self._last_face = t
            if t - self._last_frontal >= self.rules.distracted_after_s:
                return DISTRACTED
            return None
        if t - self._last_face >= self.rules.absent_after_s:
            self._ema = None
            return TOO_DARK if obs.dark else ABSENT
        return None  # a short gap keeps the current state

    def _unsure(self, t: float) -> str | None:
        """An unsure frontal face: the face is there, but what it shows is a guess. A level on
        its way from sure frames keeps its count (a frame it showed within ``min_hold_s``:
        one sure frame long ago, in bad light, held "Absent" for good). A level shown stays
        until no sure frame has come for ``absent_after_s``, as a face does until it has
        been gone that long: logged for ten unreadable minutes, "Not engaged" was a made-up
        record (and sounded the buzzer). Otherwise the student is present."""
        pending = self._pending
        if pending is not None and pending[0] not in NO_EXPRESSION and self._unbroken(pending, t):
            return None
        if self.state.level in NO_EXPRESSION or t - self._last_sure >= self.rules.absent_after_s:
            return PRESENT
        return None

    def gap(self) -> None:
        """No frames for a while (a camera fault): the next frame follows none, so a change
        under way before it counts again only within ``min_hold_s``. One odd frame, a fault
        of seconds, and one more such frame changed the state, dated from before the fault."""
        self._prev_t = None

    def _unbroken(self, pending: tuple[str, float, float], t: float) -> bool:
        """Does a change under way still count at ``t``? Yes when the previous frame showed
        it, or one did within ``min_hold_s``; a longer gap of frames saying nothing starts
        it again. Frames further apart than the hold (camera.fps = 1 with a hold of 0.5 s, a
        slow loop) are no gap: each restarted the count, and the state never changed."""
        return pending[2] == self._prev_t or t - pending[2] <= self.rules.min_hold_s

    def update(self, obs: Observation, rules: EngagementRules | None = None) -> tuple[EngagementState, bool]:
        """Feed one frame; returns the shown state and whether it just changed.

        ``rules``: the settings to judge this frame (and the next ones) by; the shown state
        and the smoothing history carry over, only the rules change."""
        try:
            return self._update(obs, rules)
        finally:
            self._prev_t = obs.t

    def _update(self, obs: Observation, rules: EngagementRules | None) -> tuple[EngagementState, bool]:
        if rules is not None and rules is not self.rules:
            self.rules = self._checked(rules)
        candidate = self._candidate(obs)
        if candidate is None:
            # no word on the level (an unsure face, a short gap, a brief look away): a
            # change under way keeps its start, or one such frame in every min_hold_s kept
            # the LED on the old state for good; only a face contradicts Absent, and only
            # a frontal face Distracted
            if self._pending is not None and (self._pending[0] in ABSENT_PAIR and obs.kind is not None or
                                              self._pending[0] == DISTRACTED and obs.kind == "frontal"):
                self._pending = None
            return self.state, False
        if candidate == self.state.level:
            self._pending = None
            self._refresh_emotion()
            return self.state, False
        # "Absent" and "too dark" are one change under way (the empty frames' light near the rule's
        # line): each restarting the other's count kept the last face's level on for good
        if (self._pending is None or self._pending[0] != candidate and {self._pending[0], candidate} != ABSENT_PAIR
                or not self._unbroken(self._pending, obs.t)):  # a gap longer than the hold starts it again
            self._pending = (candidate, obs.t, obs.t)
        self._pending = (candidate, self._pending[1], obs.t)
        if obs.t - self._pending[1] >= self.rules.min_hold_s:
            self.state = self.state.after(candidate, self._pending[1])
            self._pending = None
            self._refresh_emotion()
            return self.state, True
        return self.state, False

    def _refresh_emotion(self) -> None:
        if self._ema is not None and self.state.level not in NO_EXPRESSION:
            i = int(self._ema.argmax())
            self.state.emotion = self.labels[i]
            self.state.confidence = float(self._ema[i])
            self.state.probabilities = {l: round(float(v), 4) for l, v in zip(self.labels, self._ema)}
        elif self.state.level in NO_EXPRESSION:
            self.state.emotion, self.state.confidence, self.state.probabilities = None, 0.0, {}


class MinuteAggregator:
    """Seconds spent in each group per wall-clock minute: one row a minute, not a frame.

    A span between two frames is measured on the monotonic clock (``mono_t``); the wall
    clock only says which minute it belongs to. A wall clock that steps (a Pi without a
    real-time clock is set by NTP after it starts, or by hand) no longer shows up as time:
    set forward, the 5-s gap cap was counted once as seconds nobody was seen; set back, a
    minute already written was added to again (110 s in one row). A small step back (up to
    a minute: a clock being corrected) does not move the minute back; the current row keeps
    the seconds until the wall clock has passed it again. After a larger one the rows follow
    the wall clock (a row then written again adds up in the store, each pass at most a
    minute): holding one row for as long made a single row of many minutes, which the
    classroom refuses, and published nothing meanwhile."""

    MAX_SPAN_S = 5.0  # a longer pause between frames (a stall) counts this much at most
    HOLD_BACK_S = 60.0  # a wall clock set back by at most this much keeps the current minute

    def __init__(self):
        self.minute: int | None = None
        self.seconds: dict[str, float] = dict.fromkeys(GROUPS, 0.0)
        self.frames = 0
        self.faces = 0
        self._last: tuple[float, str] | None = None  # (monotonic time, group) of the previous frame
        self._last_wall: float | None = None

    def add(self, wall_t: float, group: str, face_seen: bool, mono_t: float | None = None) -> dict | None:
        """Account for the time since the previous call; returns a finished minute row.
        ``mono_t``: the frame's monotonic time (by default ``wall_t``: a clock that never steps).

        The time between the last frame of a minute and the first of the next is split at
        the minute's end: the part after it is the new minute's (all of it went to the old
        one, so the 23:59 row held seconds of the next day and a minute up to 65 s)."""
        mono_t = wall_t if mono_t is None else mono_t
        done = None
        minute = int(wall_t // 60)
        if (self.minute is not None and minute < self.minute and self._last_wall is not None
                and self._last_wall - wall_t <= self.HOLD_BACK_S):  # the wall clock stepped back a little
            minute = self.minute
        carried, prev_group = 0.0, group  # the new minute's part of the time since the previous frame
        if self._last is not None:
            prev_t, prev_group = self._last
            span = max(0.0, min(mono_t - prev_t, self.MAX_SPAN_S))
            if self.minute is not None and minute != self.minute:
                carried = max(0.0, min(span, wall_t - minute * 60))
            self.seconds[prev_group] += span - carried
        if self.minute is not None and minute != self.minute:
            done = self.flush()
        self.seconds[prev_group] += carried
        self.minute = minute
        self.frames += 1
        self.faces += int(face_seen)
        self._last = (mono_t, group)
        self._last_wall = wall_t
        return done

    def gap(self) -> None:
        """No frames for a while on purpose (a pause): the time until the next frame
        counts for no group."""
        self._last = None

    def flush(self) -> dict | None:
        if self.minute is None or self.frames == 0:
            return None
        row: dict[str, float] = {"minute": self.minute * 60, "frames": self.frames, "faces": self.faces,
               **{g: round(s, 2) for g, s in self.seconds.items()}}
        self.seconds = dict.fromkeys(GROUPS, 0.0)
        self.frames = self.faces = 0
        return row
