"""The built-in demo scene: real face photographs shipped inside the package.

Faces (public domain, see ``photos/PROVENANCE.md``): Grace Hopper, the astronaut Eileen
Collins, a few faces picked per engagement group (``faces.demo_cuts()``: the reference
faces and Duchenne's frightened old man; the appliance picks, for each group, the face
the model places there most confidently), and
the cameraman turned sideways (a turned-away face to either detector) for "Distracted". The
timeline moves a face around, swaps faces, turns away, leaves the frame and comes back,
so every state the faces allow shows within one minute.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edge_app.vision import faces

CYCLE_S = 60.0
DEFAULT_PICKS = [14, 0, 7]  # Migrant Mother, Grace Hopper, the astronaut: until a model chooses


def grace_hopper() -> np.ndarray:
    return faces.photo("grace_hopper.jpg")


def astronaut() -> np.ndarray:
    return faces.photo("astronaut.jpg")


@dataclass(frozen=True)
class Shot:
    """One segment of the timeline: which picture, from when, and how it moves."""

    start: float
    end: float
    picture: str  # "grace", "astronaut", "face:<i>" (faces.demo_cuts()[i]), "profile", "empty"
    height: int = 300  # drawn height in pixels
    drift: float = 60.0  # amplitude of the motion in pixels
    exit: bool = False  # slides out of the frame during the shot


def timeline(face_picks: list[int] | None = None) -> list[Shot]:
    """The 60-second script; ``face_picks`` chooses which reference faces appear (5 s each)."""
    picks = (face_picks or DEFAULT_PICKS)[:3]
    shots = [Shot(0, 10, "grace"), Shot(10, 18, "astronaut", 420)]
    t = 18.0
    for i in picks:
        shots.append(Shot(t, t + 5, f"face:{i}", 300, 30))
        t += 5
    shots += [
        Shot(t, t + 8, "profile", 420, 20),
        Shot(t + 8, t + 10, "grace", 300, 0, exit=True),
        Shot(t + 10, CYCLE_S - 6, "empty"),
        Shot(CYCLE_S - 6, CYCLE_S, "grace"),
    ]
    return shots


class DemoScene:
    """Renders the demo frame for any time ``t`` (seconds), deterministically."""

    def __init__(self, width: int = 640, height: int = 480, face_picks: list[int] | None = None):
        self.width, self.height = width, height
        self.shots = timeline(face_picks)
        yy, xx = np.mgrid[0:height, 0:width]
        bg = (40 + 50 * yy / height + 20 * xx / width).astype(np.uint8)
        self.background = cv2.merge([bg + 20, bg + 10, bg])
        self._pictures: dict[tuple[str, int], np.ndarray] = {}
        self._frame = np.empty_like(self.background)

    def _picture(self, name: str, height: int) -> np.ndarray | None:
        key = (name, height)
        if key not in self._pictures:
            if name == "empty":
                return None
            if name == "grace":
                src = grace_hopper()[40:520, 60:460]
            elif name == "astronaut":
                src = astronaut()[20:300, 110:360]
            elif name == "profile":
                src = faces.profile_face()[40:380, 120:460]
            else:
                src = faces.demo_cuts()[int(name.split(":")[1])].portrait()
            scale = height / src.shape[0]
            self._pictures[key] = cv2.resize(src, (max(1, int(src.shape[1] * scale)), height), interpolation=cv2.INTER_AREA)
        return self._pictures[key]

    def shot_at(self, t: float) -> Shot:
        t %= CYCLE_S
        for shot in self.shots:
            if shot.start <= t < shot.end:
                return shot
        return self.shots[-1]

    def render(self, t: float) -> np.ndarray:
        """The frame at time ``t``; the returned array is reused by the next call."""
        frame = self._frame
        np.copyto(frame, self.background)
        shot = self.shot_at(t)
        pic = self._picture(shot.picture, min(shot.height, self.height))
        if pic is None:
            return frame
        local = (t % CYCLE_S) - shot.start
        ph, pw = pic.shape[:2]
        cx = (self.width - pw) / 2 + shot.drift * np.sin(local * 0.9)
        cy = (self.height - ph) / 2 + shot.drift * 0.4 * np.sin(local * 1.3)
        if shot.exit:
            cx += (local / max(shot.end - shot.start, 1e-6)) * (self.width + pw)
        x0, y0 = int(cx), int(cy)
        fx0, fy0 = max(0, x0), max(0, y0)
        fx1, fy1 = min(self.width, x0 + pw), min(self.height, y0 + ph)
        if fx1 > fx0 and fy1 > fy0:
            frame[fy0:fy1, fx0:fx1] = pic[fy0 - y0 : fy1 - y0, fx0 - x0 : fx1 - x0]
        return frame
