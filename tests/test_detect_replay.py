"""tools/detect_replay.py re-implements the detector's full search to replay rules on
recorded candidates; it is only worth its numbers while it finds what the detector finds."""
from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

import detect_replay  # noqa: E402

from edge_app.vision import faces  # noqa: E402


def frames() -> list[np.ndarray]:
    """A small and a tilted portrait on a textured background, and a texture alone."""
    rng = np.random.default_rng(3)
    background = cv2.GaussianBlur(rng.integers(0, 256, (480, 640), dtype=np.uint8), (0, 0), 3)
    portrait = cv2.cvtColor(faces.photo("grace_hopper.jpg"), cv2.COLOR_BGR2GRAY)[60:400, 110:420]
    out = []
    for size, angle in ((120, 0), (260, 30)):
        face = cv2.resize(portrait, (size, size * portrait.shape[0] // portrait.shape[1]), interpolation=cv2.INTER_AREA)
        turn = cv2.getRotationMatrix2D((face.shape[1] / 2, face.shape[0] / 2), angle, 1.0)
        face = cv2.warpAffine(face, turn, face.shape[::-1], borderMode=cv2.BORDER_REPLICATE)
        frame = background.copy()
        frame[100:100 + face.shape[0], 200:200 + face.shape[1]] = face
        out.append(frame)
    return out + [background]


def test_replaying_the_detectors_own_rule_finds_what_the_detector_finds():
    detect_replay._init()
    detector = detect_replay._DET
    assert detector is not None
    found_any = 0
    for gray in frames():
        direct = sorted(f.box for f in detector.detect(gray, tiles=True))
        replayed = sorted(detect_replay._box(c) for c in detect_replay.search(detect_replay.record(gray),
                                                                               detect_replay.now))
        assert len(direct) == len(replayed), (direct, replayed)
        for a, b in zip(direct, replayed):
            assert np.allclose(a, b, atol=2), (a, b)
        found_any += len(direct)
    assert found_any >= 2  # both portraits: the comparison is not between two empty lists
