"""Bounded logging of a fault that comes and goes: a camera that fails after every frame, a
broker link two devices with one id keep dropping. A line for each episode wrote thousands
an hour into the journal, on the SD card. Each episode's line is kept back while another
was logged less than ``quiet_s`` ago, unless the episode has lasted ``long_s``: the journal
never hides a real outage, and the next line counts the episodes kept back."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class EpisodeLog:
    quiet_s: float
    long_s: float
    logged: bool = True  # the latest episode has its line (so its end gets one too)
    _line_at: float | None = None  # when the last line was logged
    _since_line: int = 0  # episodes begun since that line (the one being logged included)

    def begin(self) -> None:
        """A new episode begins; its line is not logged yet."""
        self.logged = False
        self._since_line += 1

    def due(self, now: float, began: float) -> int | None:
        """None while the latest episode's line is not due (logged already, or kept back);
        else the line is due now, counts as logged, and this is how many other episodes
        began since the last line (to say in it)."""
        if self.logged:
            return None
        if self._line_at is not None and now - self._line_at < self.quiet_s and now - began < self.long_s:
            return None
        others = self._since_line - 1
        self.logged, self._line_at, self._since_line = True, now, 0
        return others
