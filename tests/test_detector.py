"""Face detection (OpenCV Haar cascades) on the real photographs shipped in the package
(and two face-free scikit-image samples, a dev-only dependency)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import skimage.data
from conftest import record_cascades

from edge_app import config as config_mod
from edge_app.vision import faces as shipped
from edge_app.vision.detector import Face, FaceDetector

# Where the faces are in the package photos (x, y of a point inside each face).
GRACE_FACE = (265, 215)
ASTRONAUT_FACE = (223, 113)


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector()


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return shipped.photo("astronaut.jpg").copy()


def contains(box, point) -> bool:
    x, y, w, h = box
    return x <= point[0] <= x + w and y <= point[1] <= y + h


def test_grace_hopper_has_one_frontal_face(detector, grace):
    faces = detector.detect(grace)
    assert len(faces) == 1
    face = faces[0]
    assert isinstance(face, Face) and face.kind == "frontal"
    assert contains(face.box, GRACE_FACE)
    x, y, w, h = face.box
    assert 150 <= w <= 330 and 0.8 <= w / h <= 1.25
    assert x >= 0 and y >= 0 and x + w <= grace.shape[1] and y + h <= grace.shape[0]


def test_astronaut_has_one_frontal_face(detector, astronaut):
    faces = detector.detect(astronaut)
    assert [f.kind for f in faces] == ["frontal"]
    assert contains(faces[0].box, ASTRONAUT_FACE)
    assert 60 <= faces[0].box[2] <= 170


def test_boxes_are_in_full_frame_pixels(detector, grace):
    """Detection runs on a small copy; the box must come back scaled to the frame."""
    (x, y, w, h), = [f.box for f in detector.detect(grace)]
    big = cv2.resize(grace, None, fx=2, fy=2, interpolation=cv2.INTER_LINEAR)
    (bx, by, bw, bh), = [f.box for f in detector.detect(big)]
    assert bw == pytest.approx(2 * w, rel=0.15)
    assert contains((bx, by, bw, bh), (2 * GRACE_FACE[0], 2 * GRACE_FACE[1]))


def test_grayscale_and_bgr_give_the_same_face(detector, grace):
    gray = cv2.cvtColor(grace, cv2.COLOR_BGR2GRAY)
    assert detector.detect(gray) == detector.detect(grace)


def test_small_gray_scales_to_detect_width(detector):
    frame = np.zeros((480, 640, 3), np.uint8)
    small, scale = detector.small_gray(frame)
    assert small.shape == (240, 320) and scale == pytest.approx(2.0)
    small, scale = detector.small_gray(np.zeros((100, 200), np.uint8))
    assert small.shape == (100, 200) and scale == 1.0  # never upscaled


def test_two_faces_come_biggest_first(detector, grace, astronaut):
    canvas = np.full((600, 1024, 3), 90, np.uint8)
    canvas[:, :512] = grace
    canvas[44:556, 512:] = astronaut
    faces = detector.detect(canvas, detect_width=640)
    assert len(faces) == 2 and {f.kind for f in faces} == {"frontal"}
    assert contains(faces[0].box, GRACE_FACE)
    assert contains(faces[1].box, (512 + ASTRONAUT_FACE[0], 44 + ASTRONAUT_FACE[1]))
    assert faces[0].box[2] > faces[1].box[2]


@pytest.mark.parametrize("name", ["blank", "noise", "coffee", "chelsea"])
def test_no_face_where_there_is_none(detector, name):
    if name == "blank":
        img = np.full((480, 640, 3), 128, np.uint8)
    elif name == "noise":
        img = np.random.default_rng(7).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    else:  # a cup of coffee; a cat
        img = cv2.cvtColor(getattr(skimage.data, name)(), cv2.COLOR_RGB2BGR)
    assert detector.detect(img) == []


def test_turned_away_face_is_a_profile_hit(detector):
    """The cameraman (mirrored, as the demo shows him) is turned sideways: no frontal hit,
    profile hits - the tracker's "Distracted". With ``profile = false`` nothing is found."""
    sideways = cv2.cvtColor(shipped.profile_face(), cv2.COLOR_BGR2GRAY)
    faces = detector.detect(sideways)
    assert faces and all(f.kind == "profile" for f in faces)
    assert contains(faces[0].box, (280, 140))
    assert FaceDetector(profile=False).detect(sideways) == []


def test_profile_cascade_only_runs_without_a_frontal_face(grace):
    """It is the expensive fallback: never run when a frontal face was found; run on the
    frame and its mirror image when none was."""
    detector = FaceDetector()
    frontal, profile = record_cascades(detector)
    assert [f.kind for f in detector.detect(grace)] == ["frontal"]
    assert len(frontal.calls) == 1 and profile.calls == []
    sideways = cv2.flip(skimage.data.camera(), 1)
    assert detector.detect(sideways) and len(frontal.calls) == 2
    small = frontal.calls[-1]
    assert profile.calls == [small, small]  # the frame and its mirror, at the detection size


def test_min_face_px_drops_small_faces(grace):
    assert FaceDetector(min_face_px=400).detect(grace) == []
    assert len(FaceDetector(min_face_px=100).detect(grace)) == 1


def test_from_config(cfg):
    cfg = config_mod.with_changes(cfg, {"detector.detect_width": 200, "detector.min_neighbors": 7, "detector.profile": False})
    d = FaceDetector.from_config(cfg)
    assert d.detect_width == 200 and d.min_neighbors == 7 and d.profile is None


def test_uploads_analysed_at_once_each_get_their_own_faces(grace):
    """web.analysis_workers > 1: several threads detect with one detector. Two photos of
    the same size at once (the same phone) got each other's faces, or none: the
    cascades and the reused detection image were shared by both searches."""
    import threading

    detector = FaceDetector()
    photo = cv2.resize(grace, (1024, 1200), interpolation=cv2.INTER_LINEAR)
    blank = np.full_like(photo, 128)
    expected = {0: detector.detect(photo, 640, 40), 1: detector.detect(blank, 640, 40)}
    assert len(expected[0]) == 1 and expected[1] == []
    wrong: list = []

    def analyse(which: int, image: np.ndarray) -> None:
        for _ in range(25):
            found = detector.detect(image, 640, 40)
            if found != expected[which]:
                wrong.append((which, found))

    threads = [threading.Thread(target=analyse, args=(i, img)) for i, img in enumerate((photo, blank))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wrong == []


def test_two_views_of_one_face_framed_apart_give_one_face():
    """A tile framed Grace Hopper 40 px lower and a size smaller than the whole photo did
    (IoU 0.30, at the merge's threshold): an upload reported her twice, one of them "Uncertain"."""
    from edge_app.vision.detector import _iou, _merge

    tile, whole = Face((562, 366, 106, 106), score=0.6), Face((582, 323, 99, 99), score=0.8)
    assert _iou(tile.box, whole.box) <= 0.3
    assert _merge([tile, whole]) == [whole]
    # two faces side by side, or one a little behind the other, stay two
    left, right = Face((100, 100, 100, 100), score=0.9), Face((170, 120, 100, 100), score=0.7)
    assert _merge([left, right]) == [left, right]


HAAR_GONE = """
import sys, cv2
cv2.data.haarcascades = sys.argv[1]  # an OpenCV whose cascade files are missing
from edge_app.cli import main
sys.exit(main(sys.argv[2:]))
"""


def test_missing_haar_cascades_stop_the_start_with_what_to_do(tmp_path):
    """With detector.backend = "haar", cascade files that cannot be loaded ended the start in a
    DetectorError traceback (no fault light, no message in the journal's words): it is said as a
    model's error is, and the start stops with exit 2."""
    import subprocess
    import sys

    conf = tmp_path / "c.toml"
    conf.write_text(f'[detector]\nbackend = "haar"\n[store]\ndata_dir = "{tmp_path / "data"}"\n'
                    '[indicators]\nbackend = "none"\n[web]\nport = 0\n')
    r = subprocess.run([sys.executable, "-c", HAAR_GONE, str(tmp_path / "no-cascades") + "/", "run", "--config", str(conf),
                        "--source", "demo"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "error: the Haar cascade" in r.stderr and "could not be loaded" in r.stderr, r.stderr
