"""Aligned face crops: eyes level, framed the way FER2013 frames a face.

The emotion model learned from FER2013's 48x48 crops, which are upright and framed
alike; a tilted head or a detector box cut differently gives it a face it never saw, and
its answer changes. With the detector's eye keypoints we rotate the crop so the eyes
are level and scale and place it so the eyes land where FER2013's eyes are on average.

``FER_TEMPLATE`` was measured, not guessed: ``tools/fer_framing.py`` ran the shipped
BlazeFace on 4,000 FER+ training images (upscaled 4x) and averaged the eye keypoints of
the frontal faces it found (numbers and protocol in ``models/MODEL_CARD.md``). A face
without keypoints (the Haar detector) gets the plain box crop, as before.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from edge_app.vision.classifier import crop_face
from edge_app.vision.detector import Face

# Eye midpoint (x, y) and inter-ocular distance as fractions of the crop side
# (tools/fer_framing.py on FER2013Train[:4000]: 3,937 faces found, the 3,462 not turned
# away measured; eye midpoint std 0.049 / 0.062, inter-ocular std 0.054).
FER_TEMPLATE = {"eye_mid": (0.4956, 0.3868), "iod": 0.3743}
MAX_SIDE = 192  # the warped crop is at most this many pixels (the classifier shrinks it to 48)
MIN_SIDE = 48


def eye_transform(right_eye, left_eye, side: int, template: dict = FER_TEMPLATE) -> np.ndarray | None:
    """The 2x3 affine that maps the frame onto a ``side``-pixel crop with the eyes level
    and at the template's place; None when the eyes are (almost) on one point."""
    (rx, ry), (lx, ly) = right_eye, left_eye
    dx, dy = lx - rx, ly - ry
    iod = math.hypot(dx, dy)
    if iod < 2:
        return None
    scale = template["iod"] * side / iod
    mid = ((rx + lx) / 2, (ry + ly) / 2)
    m = cv2.getRotationMatrix2D(mid, math.degrees(math.atan2(dy, dx)), scale)
    tx, ty = template["eye_mid"]
    m[0, 2] += tx * side - mid[0]
    m[1, 2] += ty * side - mid[1]
    return m


def aligned_crop(gray: np.ndarray, face: Face, template: dict = FER_TEMPLATE) -> np.ndarray:
    """The face as FER2013 would have cropped it (a square, usually larger than 48
    pixels: the classifier shrinks it with area averaging); the box crop without
    keypoints."""
    if face.keypoints is None:
        return crop_face(gray, face.box)
    right_eye, left_eye = face.keypoints[0], face.keypoints[1]
    iod = math.hypot(left_eye[0] - right_eye[0], left_eye[1] - right_eye[1])
    side = int(min(MAX_SIDE, max(MIN_SIDE, round(iod / template["iod"]))))
    m = eye_transform(right_eye, left_eye, side, template)
    if m is None:
        return crop_face(gray, face.box)
    return cv2.warpAffine(gray, m, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
