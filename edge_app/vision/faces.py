"""The shipped photographs and the reference faces cut from them.

Five public-domain photographs travel inside the package (``photos/``, provenance and
sha256 in ``photos/PROVENANCE.md``), so the demo, the choice of demo faces and the flash
tool's golden check work wherever edge_app is installed, with no plotting or
image-science library on the device. The face boxes are fixed here rather than found by
the detector, so a detector change never moves a model's golden record.

Two sets: the reference faces (``cuts()``, ``FRONTAL``) are what a manifest's golden
block records, named by ``REFERENCE_SOURCE``; the demo's faces (``demo_cuts()``) are
those plus ``DEMO_FRONTAL``, appended after them, so a face added for the demo never
changes the golden set or the indices into it.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import cv2
import numpy as np

PHOTOS = resources.files("edge_app.vision") / "photos"
REFERENCE_SOURCE = "edge_app.vision.faces:v1"  # names this set in a manifest's golden block
REFERENCE_SIZE = 64  # reference faces are stored this size; the classifier resizes to its input

# Frontal faces (x, y, w, h) in the shipped photographs, as the Haar cascade boxes them.
FRONTAL = {
    "grace_hopper.jpg": (149, 101, 232, 232),  # Grace Hopper, US Navy portrait
    "astronaut.jpg": (174, 64, 99, 99),  # Eileen Collins, NASA portrait
    "migrant_mother.jpg": (172, 142, 184, 184),  # Florence Owens Thompson, Dorothea Lange (FSA)
}
# What each reference photograph shows, as people read it: a model's labels must agree on most
# of its cuts (registry.truth_problem). A manifest listing its labels in another order than the
# network's outputs records golden data all the same (happiness<->sadness read a smiling
# astronaut as sad, 52% on FER+ test): golden data only says a model agrees with itself.
# Thompson's worried face is read as sad or neutral even by good models; either counts.
EXPRESSIONS = {
    "grace_hopper.jpg": ("neutral",),
    "astronaut.jpg": ("happiness",),
    "migrant_mother.jpg": ("sadness", "neutral", "fear"),
}
# Faces only the demo uses (not in the golden set): a frightened face, so the demo can
# show "Partially engaged" (fear, in the default mapping). Boxed the same way.
DEMO_FRONTAL = {
    "duchenne_fright.jpg": (144, 145, 247, 247),  # Duchenne's old man, fright (Darwin 1872, Plate VII fig. 2)
}
PROFILE = "cameraman.jpg"  # a man turned sideways (mirrored for the profile cascade)
# Each face is cut several ways (moved by a fraction of its box, grown, shrunk), the looks
# a detector's box takes, so the demo and the golden check have choices. (No mirrored
# cuts: the shipped model already averages each face with its mirror image.)
NUDGES = [(0.0, 0.0, 1.0), (-0.08, 0.0, 1.0), (0.08, 0.0, 1.0), (0.0, -0.08, 1.0), (0.0, 0.08, 1.0),
          (0.0, 0.0, 0.9), (0.0, 0.0, 1.15)]


@lru_cache(maxsize=8)
def photo(name: str) -> np.ndarray:
    """A shipped photograph as BGR (cached: do not modify it)."""
    data = (PHOTOS / name).read_bytes() if (PHOTOS / name).is_file() else b""
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if img is None:
        raise FileNotFoundError(f"the shipped photograph {name} is missing or unreadable in {PHOTOS}: "
                                "reinstall engage-edge (pip install --force-reinstall engage-edge)")
    return img


@dataclass(frozen=True)
class Cut:
    """One reference face: which photograph and the box cut from it."""

    photo: str
    box: tuple[int, int, int, int]

    def gray(self) -> np.ndarray:
        x, y, w, h = self.box
        img = photo(self.photo)
        face = cv2.cvtColor(img[max(0, y) : y + h, max(0, x) : x + w], cv2.COLOR_BGR2GRAY)
        return cv2.resize(face, (REFERENCE_SIZE, REFERENCE_SIZE), interpolation=cv2.INTER_AREA)

    def portrait(self, margin: float = 1.7) -> np.ndarray:
        """The face with ``margin`` times its box around it (BGR), for the demo to show."""
        x, y, w, h = self.box
        img = photo(self.photo)
        cx, cy, half = x + w / 2, y + h / 2, max(w, h) * margin / 2
        x0, y0 = max(0, int(cx - half)), max(0, int(cy - half))
        x1, y1 = min(img.shape[1], int(cx + half)), min(img.shape[0], int(cy + half))
        return img[y0:y1, x0:x1]


def _nudged(boxes: dict[str, tuple[int, int, int, int]]) -> list[Cut]:
    out = []
    for name, (x, y, w, h) in boxes.items():
        for dx, dy, scale in NUDGES:
            side = round(w * scale)
            cx, cy = x + w / 2 + dx * w, y + h / 2 + dy * h
            out.append(Cut(name, (round(cx - side / 2), round(cy - side / 2), side, side)))
    return out


@lru_cache(maxsize=1)
def cuts() -> tuple[Cut, ...]:
    """The reference faces in a fixed order (a golden record stores indices into it)."""
    return tuple(_nudged(FRONTAL))


@lru_cache(maxsize=1)
def demo_cuts() -> tuple[Cut, ...]:
    """The faces the demo may show: ``cuts()`` (same indices), then the demo-only faces."""
    return cuts() + tuple(_nudged(DEMO_FRONTAL))


@lru_cache(maxsize=1)
def reference_faces() -> np.ndarray:
    """All reference faces as one (N, 64, 64) uint8 grayscale array, in ``cuts()`` order."""
    return np.stack([cut.gray() for cut in cuts()])


@lru_cache(maxsize=1)
def demo_faces() -> np.ndarray:
    """The demo's faces as one (N, 64, 64) uint8 grayscale array, in ``demo_cuts()`` order."""
    return np.stack([cut.gray() for cut in demo_cuts()])


def profile_face() -> np.ndarray:
    """The cameraman photo, mirrored so the profile cascade finds his face (BGR)."""
    return cv2.flip(photo(PROFILE), 1)
