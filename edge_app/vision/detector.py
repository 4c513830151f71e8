"""Face detection with OpenCV Haar cascades (opencv-python-headless < 5 ships them).

The frontal cascade finds faces looking at the screen; the profile cascade (run on the
frame and its mirror image, since it only knows one side) finds faces turned away,
which the engagement tracker reports as "Distracted". Detection runs on a grayscale copy
scaled down to ``detect_width`` pixels: most of the cost of Haar is the image size.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edge_app.config import Config


@dataclass(frozen=True)
class Face:
    """A face box in full-frame pixels and which cascade found it."""

    box: tuple[int, int, int, int]  # x, y, w, h
    kind: str = "frontal"  # or "profile"


class DetectorError(RuntimeError):
    pass


def _cascade(name: str) -> cv2.CascadeClassifier:
    cascades = getattr(getattr(cv2, "data", None), "haarcascades", None)  # cv2.data: in the wheels, not the stubs
    if not hasattr(cv2, "CascadeClassifier") or cascades is None:
        raise DetectorError("this OpenCV has no Haar cascades: install opencv-python-headless>=4.10,<5")
    cascade = cv2.CascadeClassifier(cascades + name)
    if cascade.empty():
        raise DetectorError(f"the Haar cascade {name} could not be loaded from {cascades}")
    return cascade


class FaceDetector:
    def __init__(self, detect_width=320, scale_factor=1.15, min_neighbors=5, min_face_px=40, profile=True):
        self.detect_width = detect_width
        self.scale_factor, self.min_neighbors, self.min_face_px = scale_factor, min_neighbors, min_face_px
        self.frontal = _cascade("haarcascade_frontalface_default.xml")
        self.profile = _cascade("haarcascade_profileface.xml") if profile else None
        self._small = None

    @classmethod
    def from_config(cls, cfg: Config) -> "FaceDetector":
        d = cfg.detector
        return cls(d.detect_width, d.scale_factor, d.min_neighbors, d.min_face_px, d.profile)

    def small_gray(self, frame: np.ndarray, detect_width: int | None = None) -> tuple[np.ndarray, float]:
        """The detection image and the factor back to full-frame pixels."""
        gray = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        h, w = gray.shape
        target = detect_width or self.detect_width
        if w <= target:
            return gray, 1.0
        scale = w / target
        size = (target, max(1, int(round(h / scale))))
        if self._small is None or self._small.shape[::-1] != size:
            self._small = np.empty(size[::-1], np.uint8)
        cv2.resize(gray, size, dst=self._small, interpolation=cv2.INTER_AREA)
        return self._small, scale

    def detect(self, frame: np.ndarray, detect_width: int | None = None, min_face_px: int | None = None) -> list[Face]:
        """Frontal faces, or, when there are none, turned-away (profile) faces.

        ``detect_width`` and ``min_face_px`` override the live settings (stills)."""
        small, scale = self.small_gray(frame, detect_width)
        min_px = max(12, int((min_face_px or self.min_face_px) / scale))
        found = self.frontal.detectMultiScale(small, self.scale_factor, self.min_neighbors, minSize=(min_px, min_px))
        faces = [Face(_scaled(b, scale), "frontal") for b in found]
        if not faces and self.profile is not None:
            w = small.shape[1]
            hits = list(self.profile.detectMultiScale(small, self.scale_factor, self.min_neighbors, minSize=(min_px, min_px)))
            mirrored = self.profile.detectMultiScale(cv2.flip(small, 1), self.scale_factor, self.min_neighbors, minSize=(min_px, min_px))
            hits += [(w - x - bw, y, bw, bh) for (x, y, bw, bh) in mirrored]
            faces = [Face(_scaled(b, scale), "profile") for b in hits]
        return sorted(faces, key=lambda f: -f.box[2] * f.box[3])


def _scaled(box, scale: float) -> tuple[int, int, int, int]:
    x, y, w, h = (int(round(v * scale)) for v in box)
    return x, y, w, h
