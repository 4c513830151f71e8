"""tools/detect_replay.py re-implements the detector's full search to replay rules on
recorded candidates; it is only worth its numbers while it finds what the detector finds."""
from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

import detect_replay  # noqa: E402

from edge_app.vision import faces  # noqa: E402
from edge_app.vision.detector import Face  # noqa: E402
from edge_app.vision.detector import _merge as detector_merge  # noqa: E402


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


def test_replay_merges_a_face_centred_inside_another_as_the_detector_does():
    """The detector also merges a box centred inside another (``_centred_in``) whatever their
    IoU; the replay merged by IoU alone and kept a second face the detector drops."""
    def cand(box, score):
        return detect_replay.Cand(box, score, np.zeros((6, 2), np.float32), ok=True)

    big, inside = cand((100.0, 100.0, 300.0, 300.0), 0.9), cand((180.0, 180.0, 240.0, 240.0), 0.8)  # IoU 0.09
    apart = cand((400.0, 100.0, 500.0, 200.0), 0.7)  # another face: kept
    frame = detect_replay.View(0, 0, 0, {False: [big, apart], True: []})
    tile = detect_replay.View(160, 0, 320, {False: [inside], True: []})
    kept = detect_replay.search([frame, tile], lambda c, v, flip, views: True)
    assert [c.box for c in kept] == [big.box, apart.box]
    direct = detector_merge([Face((100, 100, 200, 200), score=0.9), Face((400, 100, 100, 100), score=0.7),
                             Face((180, 180, 60, 60), score=0.8)])
    assert [f.box for f in direct] == [detect_replay._face(c).box for c in kept]


def test_a_wrong_data_folder_or_recording_is_a_usage_error(tmp_path, capsys):
    """--data without FER+ in it was a FileNotFoundError traceback after the usage check passed."""
    for argv, said in ((["--data", str(tmp_path), "--out", str(tmp_path / "r.pkl")], "FER2013Valid/label.csv is missing: extract"),
                       (["--replay", str(tmp_path / "r31.pkl")], "no recording")):
        with pytest.raises(SystemExit) as exit_:
            detect_replay.main(argv)
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and said in err, err
    assert list(tmp_path.iterdir()) == []
