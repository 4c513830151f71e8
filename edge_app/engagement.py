"""From per-frame emotion probabilities to a smoothed engagement state.

Emotion probabilities are averaged over time with an exponential moving average (a
half-life in seconds, so the smoothing is the same at any frame rate), mapped to a level
through the configured table, and a new level is only shown once it has held for
``min_hold_s`` (hysteresis): one odd frame never flips the LED. "Distracted" means only a
turned-away (profile) face has been seen for a while, "Absent" no face at all.

A face whose most likely emotion is below ``min_confidence`` is "Uncertain": the face
counts as present and frontal, but its probabilities are not smoothed in and the shown
state stays as it was - a guess is never logged as an engagement record.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

DISTRACTED = "Distracted"
ABSENT = "Absent"
UNCERTAIN = "Uncertain"  # a face's label (uploads, live overlay), never a state
GROUPS = ("Engaged", "Partially engaged", "Not engaged", DISTRACTED, ABSENT)


def group_of(level: str) -> str:
    """The LED group of a level: "Engaged - likes the topic" -> "Engaged"."""
    for g in ("Partially engaged", "Not engaged", "Engaged", DISTRACTED, ABSENT):
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

    @property
    def group(self) -> str:
        return group_of(self.level)


@dataclass
class Observation:
    """What one frame showed: the main face's kind and its emotion probabilities."""

    t: float
    kind: str | None  # "frontal", "profile" or None (no face)
    probabilities: np.ndarray | None = None


class EngagementTracker:
    def __init__(self, labels: list[str], mapping: dict[str, str], absent_after_s=5.0,
                 distracted_after_s=2.0, ema_half_life_s=1.0, min_hold_s=1.5, start: float = 0.0,
                 min_confidence: float = 0.0):
        missing = [l for l in labels if l not in mapping]
        if missing:
            raise ValueError(f"engagement.mapping has no level for {missing}")
        self.labels, self.mapping = list(labels), dict(mapping)
        self.absent_after_s, self.distracted_after_s = absent_after_s, distracted_after_s
        self.half_life, self.min_hold_s = ema_half_life_s, min_hold_s
        self.min_confidence = min_confidence
        self.state = EngagementState(ABSENT, start)
        self._ema: np.ndarray | None = None
        self._last_t: float | None = None
        self._last_frontal = -1e18
        self._last_face = -1e18
        self._pending: tuple[str, float] | None = None

    @classmethod
    def from_config(cls, cfg: dict, labels: list[str], start: float = 0.0) -> "EngagementTracker":
        e = cfg["engagement"]
        return cls(labels, e["mapping"], e["absent_after_s"], e["distracted_after_s"],
                   e["ema_half_life_s"], e["min_hold_s"], start, e.get("min_confidence", 0.0))

    def _smooth(self, t: float, p: np.ndarray) -> np.ndarray:
        if self._ema is None or self._last_t is None or self.half_life <= 0:
            self._ema = p.astype(np.float64).copy()
        else:
            dt = max(0.0, t - self._last_t)
            alpha = 1.0 - 0.5 ** (dt / self.half_life)
            self._ema += alpha * (p - self._ema)
        return self._ema

    def _candidate(self, obs: Observation) -> str | None:
        t = obs.t
        if obs.kind == "frontal" and obs.probabilities is not None:
            self._last_frontal = self._last_face = t
            if float(obs.probabilities.max()) < self.min_confidence:
                return None  # uncertain: the face is there, but what it shows is a guess
            ema = self._smooth(t, obs.probabilities)
            self._last_t = t
            return self.mapping[self.labels[int(ema.argmax())]]
        if obs.kind == "profile":
            self._last_face = t
            if t - self._last_frontal >= self.distracted_after_s:
                return DISTRACTED
            return None
        if t - self._last_face >= self.absent_after_s:
            self._ema = None
            return ABSENT
        return None  # a short gap keeps the current state

    def update(self, obs: Observation) -> tuple[EngagementState, bool]:
        """Feed one frame; returns the shown state and whether it just changed."""
        candidate = self._candidate(obs)
        if candidate is None or candidate == self.state.level:
            self._pending = None
            if candidate == self.state.level:
                self._refresh_emotion()
            return self.state, False
        if self._pending is None or self._pending[0] != candidate:
            self._pending = (candidate, obs.t)
        if obs.t - self._pending[1] >= self.min_hold_s:
            self.state = EngagementState(candidate, self._pending[1])
            self._pending = None
            self._refresh_emotion()
            return self.state, True
        return self.state, False

    def _refresh_emotion(self) -> None:
        if self._ema is not None and self.state.level not in (ABSENT, DISTRACTED):
            i = int(self._ema.argmax())
            self.state.emotion = self.labels[i]
            self.state.confidence = float(self._ema[i])
            self.state.probabilities = {l: round(float(v), 4) for l, v in zip(self.labels, self._ema)}
        elif self.state.level in (ABSENT, DISTRACTED):
            self.state.emotion, self.state.confidence, self.state.probabilities = None, 0.0, {}


class MinuteAggregator:
    """Seconds spent in each group per wall-clock minute: one row a minute, not a frame."""

    def __init__(self):
        self.minute: int | None = None
        self.seconds = dict.fromkeys(GROUPS, 0.0)
        self.frames = 0
        self.faces = 0
        self._last: tuple[float, str] | None = None

    def add(self, wall_t: float, group: str, face_seen: bool) -> dict | None:
        """Account for the time since the previous call; returns a finished minute row."""
        done = None
        minute = int(wall_t // 60)
        if self._last is not None:
            prev_t, prev_group = self._last
            self.seconds[prev_group] += max(0.0, min(wall_t - prev_t, 5.0))
        if self.minute is not None and minute != self.minute:
            done = self.flush()
        self.minute = minute
        self.frames += 1
        self.faces += int(face_seen)
        self._last = (wall_t, group)
        return done

    def flush(self) -> dict | None:
        if self.minute is None or self.frames == 0:
            return None
        row = {"minute": self.minute * 60, "frames": self.frames, "faces": self.faces,
               **{g: round(s, 2) for g, s in self.seconds.items()}}
        self.seconds = dict.fromkeys(GROUPS, 0.0)
        self.frames = self.faces = 0
        return row
