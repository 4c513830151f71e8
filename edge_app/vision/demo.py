"""The built-in demo scene: real face photographs that ship inside installed packages.

Faces: matplotlib's ``grace_hopper.jpg`` sample, scikit-image's ``astronaut`` and its
``lfw_subset`` (200 small Labeled-Faces-in-the-Wild crops), and the ``camera`` image (a
man turned sideways, a turned-away face to either detector) for "Distracted". The timeline moves a
face around, swaps faces, turns away, leaves the frame and comes back, so every
engagement state shows within one minute. Nothing is read from outside the packages.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

CYCLE_S = 60.0


@lru_cache(maxsize=1)
def grace_hopper() -> np.ndarray:
    from matplotlib import cbook

    path = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(f"matplotlib sample {path} is missing")
    return img


@lru_cache(maxsize=1)
def astronaut() -> np.ndarray:
    import skimage.data

    return cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)


@lru_cache(maxsize=1)
def lfw_faces() -> np.ndarray:
    """200 grayscale 25x25 face crops (uint8)."""
    import skimage.data

    return (skimage.data.lfw_subset() * 255).astype(np.uint8)


@lru_cache(maxsize=1)
def profile_face() -> np.ndarray:
    """The cameraman photo, mirrored (Haar's profile cascade knows one side): a turned-away face."""
    import skimage.data

    return cv2.cvtColor(cv2.flip(skimage.data.camera(), 1), cv2.COLOR_GRAY2BGR)


def lfw_portrait(index: int, size: int = 200) -> np.ndarray:
    """An LFW crop blown up into a portrait tile with a neutral border around the face."""
    face = cv2.resize(lfw_faces()[index], (size, size), interpolation=cv2.INTER_CUBIC)
    tile = np.full((int(size * 1.6), int(size * 1.6)), 110, np.uint8)
    off = (tile.shape[0] - size) // 2
    tile[off : off + size, off : off + size] = face
    return cv2.cvtColor(tile, cv2.COLOR_GRAY2BGR)


@dataclass(frozen=True)
class Shot:
    """One segment of the timeline: which picture, from when, and how it moves."""

    start: float
    end: float
    picture: str  # "grace", "astronaut", "lfw:<i>", "profile", "empty"
    height: int = 300  # drawn height in pixels
    drift: float = 60.0  # amplitude of the motion in pixels
    exit: bool = False  # slides out of the frame during the shot


def timeline(lfw_picks: list[int] | None = None) -> list[Shot]:
    """The 60-second script; ``lfw_picks`` chooses which LFW faces appear (5 s each)."""
    picks = (lfw_picks or [3, 17, 42])[:3]
    shots = [Shot(0, 10, "grace"), Shot(10, 18, "astronaut", 420)]
    t = 18.0
    for i in picks:
        shots.append(Shot(t, t + 5, f"lfw:{i}", 300, 30))
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

    def __init__(self, width: int = 640, height: int = 480, lfw_picks: list[int] | None = None):
        self.width, self.height = width, height
        self.shots = timeline(lfw_picks)
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
                src = profile_face()[40:380, 120:460]
            else:
                src = lfw_portrait(int(name.split(":")[1]))
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
