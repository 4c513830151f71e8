"""What readers see of the capture loop: one frozen snapshot per frame.

The loop builds a new ``StateSnapshot`` after each frame and publishes it with one
reference assignment; the web reads ``loop.snapshot`` without a lock. A reader therefore
always gets level, emotion, confidence, probabilities and faces of one and the same frame,
and nothing it holds changes under it (the tracker updates its own state in place).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, Mapping

from edge_app.engagement import EngagementState, group_of, level_words


def _frozen(d: Mapping) -> Mapping:
    """A read-only copy; lists inside (a face's box) become tuples."""
    return MappingProxyType({k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


@dataclass(frozen=True)
class StateSnapshot:
    """The engagement state and the faces of one processed frame (read-only throughout)."""

    level: str
    since: float  # loop clock (monotonic) when this level began
    emotion: str | None = None
    confidence: float = 0.0
    probabilities: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))  # smoothed
    faces: tuple[Mapping[str, Any], ...] = ()
    t: float = 0.0  # loop clock of the frame (same clock as ``since``)
    seq: int = 0  # frames processed before this snapshot was made (0: none yet)
    words_since: float | None = None  # when the level's words without the emotion began (None: ``since``)

    @property
    def group(self) -> str:
        return group_of(self.level)

    @classmethod
    def of(cls, state: EngagementState, faces=(), t: float | None = None, seq: int = 0) -> "StateSnapshot":
        """Copy the tracker's (mutable) state and this frame's faces into a frozen snapshot
        (``t`` defaults to when the state began: no frame yet)."""
        return cls(state.level, state.since, state.emotion, state.confidence, _frozen(state.probabilities),
                   tuple(_frozen(f) for f in faces), state.since if t is None else t, seq, state.words_since)

    def public(self, wall_offset: float, now: float | None = None, with_emotion: bool = True) -> dict:
        """The JSON body of ``/api/state`` (without the loop's health fields). ``since`` and
        ``t`` are wall-clock Unix times there (loop clock + ``wall_offset``, which is
        ``time.time() - time.monotonic()`` now): a monotonic reading means nothing to a
        client, and the loop's own clock must stay monotonic (a clock step must not end a
        state). ``since_iso`` is ``since`` as local ISO 8601, as the log and CSV show it.
        ``for_s``: how long the level has held until ``now`` (the loop clock; by default the
        frame's time): a pause or a lost camera has no frames, and "Paused" for an hour said
        0 s by its frame's time. Without ``with_emotion`` (a viewer who may not see the
        picture) the emotion, its confidence and probabilities are held back, the level is its
        words without the emotion (``level_words``), and ``since`` is when those began."""
        began = self.since if with_emotion or self.words_since is None else self.words_since
        since = began + wall_offset
        until = self.t if now is None else max(now, self.t)
        emotion = self.emotion if with_emotion else None
        return {"level": self.level if with_emotion else level_words(self.level, self.group, False),
                "group": self.group, "emotion": emotion,
                # no face read (Absent, Distracted, Present): no confidence, as the log has it, not 0.0
                "confidence": round(self.confidence, 3) if emotion is not None else None,
                "since": round(since, 3),
                "since_iso": iso_local(since), "for_s": round(until - began, 1),
                "t": round(self.t + wall_offset, 3), "seq": self.seq,
                "probabilities": dict(self.probabilities) if with_emotion else {}}


def iso_local(t: float) -> str:
    """``t`` (Unix seconds) as local time with its UTC offset, to the second."""
    return datetime.fromtimestamp(t).astimezone().isoformat(timespec="seconds")
