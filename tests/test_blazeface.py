"""The learned face detector: our BlazeFace decoder (anchors, boxes, keypoints, weighted
NMS) on hand-made outputs, the shipped model on the package's photographs (and
face-free scikit-image samples, a dev-only dependency), the sanity checks
that keep non-faces out, the turned-away test, and refusal of a corrupt detector file."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from unittest.mock import patch

import cv2
import numpy as np
import pytest
import skimage.data

from edge_app import config as config_mod
from edge_app.vision import faces as shipped
from edge_app.vision.blazeface import (
    SHIPPED_DETECTOR,
    SHIPPED_FACE_CHECK,
    BlazeFace,
    Detection,
    FaceCheck,
    Look,
    decode,
    iou,
    mirrored,
    ssd_anchors,
    weighted_nms,
    yaw_degrees,
)
from edge_app.vision.classifier import ModelError
from edge_app.vision.detector import (
    MAX_TILT,
    SECOND_LOOK_CROP,
    SECOND_LOOK_PRESENCE,
    SURE_PRESENCE,
    TILE_MAX_FACE,
    TILES_PER_SEARCH,
    TURNED_AWAY,
    TURNED_AWAY_YAW,
    UNSURE_SCORE,
    BlazeFaceDetector,
    FaceDetector,
    believed,
    detector_from_config,
    ear_asymmetry,
    plausible,
    tile_grid,
    turned_away,
)

ROOT = Path(__file__).resolve().parent.parent
GRACE_FACE = (265, 215)
ASTRONAUT_FACE = (223, 113)
GRID = [(8, 2), (16, 6)]


def contains(box, point) -> bool:
    x, y, w, h = box
    return x <= point[0] <= x + w and y <= point[1] <= y + h


@pytest.fixture(scope="module")
def detector() -> BlazeFaceDetector:
    return BlazeFaceDetector()



# ------------------------------------------------------------ decoder, no model
def test_anchors_follow_the_two_grids():
    a = ssd_anchors(128, GRID)
    assert a.shape == (16 * 16 * 2 + 8 * 8 * 6, 2) == (896, 2)
    assert np.allclose(a[0], a[1]) and np.allclose(a[0], [0.5 / 16, 0.5 / 16])
    assert np.allclose(a[2], [1.5 / 16, 0.5 / 16])  # next cell along the row
    assert np.allclose(a[511], [15.5 / 16, 15.5 / 16])
    assert np.allclose(a[512:518], [0.5 / 8, 0.5 / 8]) and np.allclose(a[518], [1.5 / 8, 0.5 / 8])
    assert np.allclose(a[-1], [7.5 / 8, 7.5 / 8])


def test_decode_places_box_and_keypoints_relative_to_the_anchor():
    anchors = ssd_anchors(128, GRID)
    raw = np.zeros((896, 16), np.float32)
    scores = np.full(896, -50.0, np.float32)
    k = 600
    raw[k, :4] = [12.8, -6.4, 32.0, 64.0]  # centre moved by (0.1, -0.05) of the input, 0.25 x 0.5 in size
    raw[k, 4:] = np.arange(12, dtype=np.float32) * 1.28  # keypoint j: (0.02 j, 0.02 j + 0.01) from the anchor
    scores[k] = 2.0
    boxes, kps, p = decode(raw, scores, anchors, 128)
    cx, cy = anchors[k] + [0.1, -0.05]
    assert np.allclose(boxes[k], [cx - 0.125, cy - 0.25, cx + 0.125, cy + 0.25], atol=1e-6)
    assert np.allclose(kps[k, 3], anchors[k] + [0.06, 0.07], atol=1e-6)
    assert p[k] == pytest.approx(1 / (1 + np.exp(-2.0)))
    assert p[0] < 1e-20


def test_decode_clips_huge_logits_without_overflow():
    anchors = ssd_anchors(128, GRID)
    with np.errstate(over="raise"):
        _, _, p = decode(np.zeros((896, 16), np.float32), np.full(896, -1e6, np.float32), anchors, 128)
    assert np.all(p >= 0) and np.all(p < 1e-40)


def test_a_detection_on_the_mirror_image_maps_back_with_right_and_left_swapped():
    kp = np.array([(30, 40), (50, 41), (42, 50), (41, 60), (22, 44), (58, 45)], np.float32)  # right eye first
    # the same face as the network reports it on the mirror image: x flipped, and what it
    # calls the right eye (on the image's left) is the subject's left eye
    flipped = Detection((100 - 60, 30, 100 - 20, 70), 0.7, np.column_stack([100 - kp[:, 0], kp[:, 1]])[[1, 0, 2, 3, 5, 4]])
    back = mirrored(flipped, 100)
    assert back.box == (20, 30, 60, 70) and back.score == 0.7
    np.testing.assert_allclose(back.keypoints, kp)  # the subject's right eye is on the image's left again
    again = mirrored(back, 100)
    assert again.box == flipped.box and np.allclose(again.keypoints, flipped.keypoints)


def test_iou():
    boxes = np.array([[0, 0, 1, 1], [0.5, 0, 1.5, 1], [2, 2, 3, 3]], np.float32)
    assert np.allclose(iou(boxes[0], boxes), [1.0, 1 / 3, 0.0])


def test_weighted_nms_merges_one_face_and_keeps_another():
    boxes = np.array([[0.10, 0.10, 0.30, 0.30], [0.12, 0.10, 0.32, 0.30], [0.60, 0.60, 0.80, 0.80],
                      [0.61, 0.60, 0.81, 0.80], [0.40, 0.40, 0.45, 0.45], [0.5, 0.5, 0.5, 0.6]], np.float32)
    kps = np.repeat(boxes[:, None, :2], 6, axis=1)
    scores = np.array([0.9, 0.6, 0.7, 0.7, 0.3, 0.95], np.float32)  # 0.3: below the threshold; last: no width
    out = weighted_nms(boxes, kps, scores, min_score=0.5, iou_threshold=0.3)
    assert len(out) == 2
    first, second = out
    assert first.score == pytest.approx(0.9) and second.score == pytest.approx(0.7)
    assert first.box[0] == pytest.approx((0.10 * 0.9 + 0.12 * 0.6) / 1.5)  # weighted by score
    assert np.allclose(first.keypoints[:, 0], first.box[0])
    assert second.box[0] == pytest.approx(0.605)


# ------------------------------------------------------------ the shipped model
@pytest.mark.parametrize("manifest", [SHIPPED_DETECTOR, SHIPPED_FACE_CHECK], ids=["detector", "face-check"])
def test_manifest_names_licence_source_and_checksum(manifest):
    raw = json.loads(manifest.read_text())
    model = manifest.parent / raw["model"]
    assert hashlib.sha256(model.read_bytes()).hexdigest() == raw["sha256"]
    assert raw["license"] == "Apache-2.0"
    assert "Apache License" in (manifest.parent / raw["license_file"]).read_text()
    assert raw["source"]["wheel"] == "mediapipe" and raw["source"]["version"]
    assert raw["sha256"] in (manifest.parent / "NOTICE-mediapipe").read_text()


def test_grace_hopper_and_the_astronaut(detector, grace):
    for image, point, widths in [(grace, GRACE_FACE, (150, 300)),
                                 (shipped.photo("astronaut.jpg"), ASTRONAUT_FACE, (60, 170))]:
        faces = detector.detect(image)
        assert len(faces) == 1
        face = faces[0]
        assert face.kind == "frontal" and contains(face.box, point) and widths[0] <= face.box[2] <= widths[1]
        assert face.score >= 0.6
        kp = np.array(face.keypoints)
        right_eye, left_eye, nose, mouth = kp[:4]
        assert right_eye[0] < nose[0] < left_eye[0]  # the subject's right eye is on the image's left
        assert max(right_eye[1], left_eye[1]) < nose[1] < mouth[1]
        assert all(contains(face.box, p) for p in kp[:4])


def test_grayscale_and_bgr_give_the_same_face(detector, grace):
    assert detector.detect(cv2.cvtColor(grace, cv2.COLOR_BGR2GRAY)) == detector.detect(grace)


@pytest.mark.parametrize("name", ["blank", "noise", "coffee", "chelsea", "rocket", "brick"])
def test_no_face_where_there_is_none(detector, name):
    if name == "blank":
        img = np.full((480, 640, 3), 128, np.uint8)
    elif name == "noise":
        img = np.random.default_rng(7).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    else:
        img = getattr(skimage.data, name)()
    assert detector.detect(img, tiles=True) == []


def test_a_small_face_is_found_on_tiles(grace):
    """A face about 80 px wide in a 640x480 frame is too small for the network's 128-px
    view of the whole frame; a full tile search (stills) finds it at once, the live
    search (a few tiles per call, in turn) within one round of the tiles."""
    detector = BlazeFaceDetector()
    canvas = np.full((480, 640), 120, np.uint8)
    canvas[200:440, 380:585] = cv2.resize(cv2.cvtColor(grace, cv2.COLOR_BGR2GRAY), (205, 240), interpolation=cv2.INTER_AREA)
    where = (380 + GRACE_FACE[0] * 0.4, 200 + GRACE_FACE[1] * 0.4)
    assert detector.net.detect(canvas, detector.min_score) == []
    faces = detector.detect(canvas, tiles=True)
    assert len(faces) == 1 and contains(faces[0].box, where) and 55 <= faces[0].box[2] <= 110
    rounds = -(-len(tile_grid(480, 640, detector.min_face_px)) // TILES_PER_SEARCH)
    live = [detector.detect(canvas) for _ in range(rounds)]
    assert any(live) and all(len(f) == 1 and contains(f[0].box, where) for f in live if f)
    assert all(0.75 <= f[0].box[2] / f[0].box[3] <= 1.33 for f in live if f)  # whole faces, never one cut by a tile


def test_the_mirror_image_finds_a_face_the_network_misses(grace):
    """Grace Hopper leaning by 50 degrees at half size: the network misses her on the
    whole frame, shown the mirror image it finds her (full searches: stills); a view
    where the plain pass found a face costs one pass only; the live search does not
    look at mirror images."""
    gray = cv2.cvtColor(grace, cv2.COLOR_BGR2GRAY)
    h, w = gray.shape
    m = cv2.getRotationMatrix2D((w / 2, h / 2), -50, 0.5)
    leaning = cv2.warpAffine(gray, m, (w, h), borderMode=cv2.BORDER_REFLECT)
    where = m @ np.array([*GRACE_FACE, 1.0])
    whole_frame = [(0, 0, 0)]  # the full search on the whole frame only (no tiles)
    with patch("edge_app.vision.detector.tile_grid", lambda *a: whole_frame[1:]):
        assert BlazeFaceDetector(mirror=False).detect(leaning, tiles=True) == []
        detector = BlazeFaceDetector()
        assert detector.detect(leaning, tiles=False) == []  # the live search: no mirror image
        (face,) = detector.detect(leaning, tiles=True)
    assert contains(face.box, where) and face.kind == "frontal"
    right_eye, left_eye = face.keypoints[0], face.keypoints[1]
    assert right_eye[0] < left_eye[0]  # the subject's right eye on the image's left, as unmirrored

    calls = []
    real = detector.net.detect
    detector.net.detect = lambda image, min_score=0.5: calls.append(image.shape) or real(image, min_score)  # type: ignore[method-assign]
    try:
        with patch("edge_app.vision.detector.tile_grid", lambda *a: []):
            assert len(detector.detect(gray, tiles=True)) == 1 and len(calls) == 1
    finally:
        detector.net.detect = real  # type: ignore[method-assign]


def test_tiles_cover_the_frame_with_half_a_tile_of_overlap():
    grid = tile_grid(480, 640, 40)
    for side in {s for _, _, s in grid}:
        tiles = [(x, y) for x, y, s in grid if s == side]
        xs, ys = sorted({x for x, _ in tiles}), sorted({y for _, y in tiles})
        assert xs[0] == 0 and xs[-1] == 640 - side and ys[0] == 0 and ys[-1] == 480 - side
        assert all(b - a <= side / 2 + 1 for a, b in zip(xs, xs[1:]))
        assert all(b - a <= side / 2 + 1 for a, b in zip(ys, ys[1:]))
    assert tile_grid(480, 640, 200) == []  # no tile could hold a face that big: whole frames only
    assert {s for _, _, s in grid} == {480, 384, 320, 213}  # full-height squares catch big faces too
    assert 480 not in {s for _, _, s in tile_grid(480, 480, 40)}  # a tile as big as a square frame is the frame


def test_the_face_check_tells_a_face_from_a_blob(grace):
    """A bright round cell on a grey ground made BlazeFace alone report a face in the
    benchmark; the face check's second opinion rejects it and passes real faces."""
    check = FaceCheck()
    gray = cv2.cvtColor(grace, cv2.COLOR_BGR2GRAY)
    assert check.presence(gray, (165, 143, 365, 342), (222, 192), (309, 189)) >= check.presence_min
    ast = cv2.cvtColor(shipped.photo("astronaut.jpg"), cv2.COLOR_BGR2GRAY)
    assert check.presence(ast, (178, 80, 272, 174), (204, 101), (248, 108)) >= check.presence_min
    blob = np.full((480, 640), 90, np.uint8)
    cv2.circle(blob, (320, 240), 60, 215, -1)
    blob = cv2.GaussianBlur(blob, (0, 0), 6)
    assert check.presence(blob, (260, 180, 380, 300), (290, 225), (350, 225)) < 0.5
    assert check.presence(np.full((480, 640), 128, np.uint8), (260, 180, 380, 300), (290, 225), (350, 225)) < 0.5


def test_the_face_check_keeps_a_cat_out(grace):
    """BlazeFace alone finds faces in the cat photograph (on tiles and their mirror
    images); the face check rejects them, and still passes Grace Hopper."""
    with_check, without = BlazeFaceDetector(), BlazeFaceDetector(face_check=False)
    cat = cv2.cvtColor(skimage.data.chelsea(), cv2.COLOR_RGB2GRAY)
    assert len(without.detect(cat, tiles=True)) >= 1
    assert with_check.detect(cat, tiles=True) == []
    assert len(with_check.detect(grace)) == len(without.detect(grace)) == 1


def test_sanity_checks():
    kp = [(40, 40), (60, 40), (50, 50), (50, 60), (30, 45), (70, 45)]
    assert plausible((30, 30, 70, 70), kp, 20)
    assert not plausible((30, 30, 70, 70), kp, 50)  # smaller than the smallest face
    assert not plausible((30, 30, 90, 50), kp, 20)  # far from square
    assert not plausible((30, 30, 70, 70), [(40, 40), (60, 40), (50, 50), (50, 95), (30, 45), (70, 45)], 20)  # mouth outside
    assert not plausible((30, 30, 70, 70), [(49, 40), (51, 40), (50, 50), (50, 60), (30, 45), (70, 45)], 20)  # eyes on one spot
    c, s = np.cos(np.radians(MAX_TILT - 5)), np.sin(np.radians(MAX_TILT - 5))
    leaning = [(50 - 10 * c, 45 - 10 * s), (50 + 10 * c, 45 + 10 * s), (50, 52), (50, 60), (30, 45), (70, 45)]
    assert plausible((30, 30, 70, 70), leaning, 20)
    c, s = np.cos(np.radians(MAX_TILT + 5)), np.sin(np.radians(MAX_TILT + 5))
    too_far = [(50 - 10 * c, 45 - 10 * s), (50 + 10 * c, 45 + 10 * s), (50, 52), (50, 60), (30, 45), (70, 45)]
    assert not plausible((30, 30, 70, 70), too_far, 20)  # eye line beyond MAX_TILT
    upside_down = [(60, 40), (40, 40), (50, 50), (50, 60), (70, 45), (30, 45)]
    assert not plausible((30, 30, 70, 70), upside_down, 20)


def found_stood_in(detector: BlazeFaceDetector, score: float, look) -> int:
    """Faces a full search finds on a blank frame where the network stands in with one
    plausible face scoring ``score`` and the face check with ``look`` (whole frame only)."""
    kp = np.array([(40, 40), (60, 40), (50, 50), (50, 60), (30, 45), (70, 45)], np.float32) * 4
    with patch.object(detector.net, "detect", lambda image, min_score=0.5: [Detection((120, 120, 280, 280), score, kp)]), \
         patch.object(detector.check, "look", look), patch("edge_app.vision.detector.tile_grid", lambda *a: []):
        return len(detector.detect(np.full((480, 640), 128, np.uint8), tiles=True))


def test_a_borderline_detection_needs_a_sure_face_check(grace):
    """A detection scoring just above ``min_score`` is where textures get in: it is kept
    only when the face check is sure (``SURE_PRESENCE``); one that scores well needs
    ``presence_min`` only. The network and the face check are stood in for, so the test
    pins the rule, not the models' numbers."""
    detector = BlazeFaceDetector()
    assert detector.check is not None
    presence_min = detector.check.presence_min
    assert presence_min < SURE_PRESENCE and UNSURE_SCORE > detector.min_score

    def found(score: float, presence: float) -> int:
        return found_stood_in(detector, score, lambda *a: Look(presence, 0.0))

    between = (presence_min + SURE_PRESENCE) / 2
    assert found(UNSURE_SCORE - 0.05, between) == 0  # borderline score, face check not sure: out
    assert found(UNSURE_SCORE - 0.05, SURE_PRESENCE) == 1  # borderline score, face check sure
    assert found(UNSURE_SCORE + 0.05, between) == 1  # a good score needs presence_min only
    assert found(UNSURE_SCORE + 0.05, presence_min - 0.01) == 0
    assert believed(0.9, presence_min, presence_min) and not believed(0.55, 0.98, 0.9)


def test_a_doubted_detection_gets_a_second_look_on_a_wider_crop():
    """A detection the face check doubts on its usual crop is looked at again on a wider
    one (``SECOND_LOOK_CROP``) and kept only when the face check is all but certain there
    (``SECOND_LOOK_PRESENCE``); a believed one costs one look. The network and the face
    check are stood in for, so the test pins the rule, not the models' numbers."""
    detector = BlazeFaceDetector()
    assert detector.check is not None

    def found(first: float, second: float) -> tuple[int, list]:
        crops: list = []

        def look(gray, box, right_eye, left_eye, crop_scale=None):
            crops.append(crop_scale)
            return Look(second if crop_scale == SECOND_LOOK_CROP else first, 0.0)

        return found_stood_in(detector, 0.8, look), crops

    assert found(0.5, SECOND_LOOK_PRESENCE) == (1, [None, SECOND_LOOK_CROP])
    assert found(0.5, SECOND_LOOK_PRESENCE - 0.003)[0] == 0  # still in doubt: out
    assert found(0.95, 0.0) == (1, [None])  # believed at once: no second look


def _tight_face_on_checks(name: str, size: int, x: int, y: int) -> np.ndarray:
    """A shipped face cut tight (brow to chin, the way FER2013 frames faces), ``size``
    pixels wide at (x, y) on a 24-pixel checkerboard, its edge blended in."""
    bx, by, bw, bh = {**shipped.FRONTAL, **shipped.DEMO_FRONTAL}[name]
    gray = cv2.cvtColor(shipped.photo(name), cv2.COLOR_BGR2GRAY)
    side, cx, cy = int(0.85 * bw), bx + bw / 2, by + 0.55 * bh
    crop = gray[int(cy - side / 2):int(cy + side / 2), int(cx - side / 2):int(cx + side / 2)]
    face = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)
    yy, xx = np.mgrid[0:480, 0:640]
    frame = ((yy // 24 + xx // 24) % 2 * 200 + 30).astype(np.float32)
    mask = np.zeros((size, size), np.float32)
    cv2.circle(mask, (size // 2, size // 2), int(size * 0.45), 1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), size * 0.05)
    frame[y:y + size, x:x + size] = frame[y:y + size, x:x + size] * (1 - mask) + face * mask
    return frame.astype(np.uint8)


@pytest.mark.parametrize("x, y", [(40, 40), (300, 150)])
def test_a_big_tight_face_is_kept_from_a_tile_it_fills(detector, x, y):
    """Migrant Mother cut tight, 288 px wide on a checkerboard: the whole frame misses
    her, and the only view that finds her is a tile she fills to more than 0.6 of its
    side, the limit before ``TILE_MAX_FACE``."""
    frame = _tight_face_on_checks("migrant_mother.jpg", 288, x, y)
    (face,) = detector.detect(frame, tiles=True)
    assert contains(face.box, (x + 144, y + 144)) and 0.6 * 288 <= face.box[2] <= 1.4 * 288
    with patch("edge_app.vision.detector.TILE_MAX_FACE", 0.6):
        assert detector.detect(frame, tiles=True) == []
    assert TILE_MAX_FACE > 0.6


def test_ear_asymmetry_tells_a_turned_head():
    frontal = [(40, 40), (60, 40), (50, 50), (50, 60), (30, 45), (70, 45)]
    turned = [(40, 40), (60, 40), (45, 50), (47, 60), (39, 45), (75, 45)]
    assert ear_asymmetry(frontal) == pytest.approx(0.0)
    assert ear_asymmetry(turned) >= TURNED_AWAY


def test_turned_away_face_is_a_profile(detector):
    """The cameraman, turned sideways as the demo shows him: "profile" (the tracker's
    "Distracted"); with ``profile = false`` he is not reported at all."""
    sideways = cv2.cvtColor(shipped.profile_face(), cv2.COLOR_BGR2GRAY)
    faces = detector.detect(sideways)
    assert [f.kind for f in faces] == ["profile"] and contains(faces[0].box, (290, 160))
    assert BlazeFaceDetector(profile=False).detect(sideways) == []


def _framed(picture: np.ndarray, height: int) -> np.ndarray:
    """``picture`` scaled to ``height`` and centred on a grey 640x480 frame, as the demo draws one."""
    pic = cv2.resize(picture, (picture.shape[1] * height // picture.shape[0], height), interpolation=cv2.INTER_AREA)
    frame = np.full((480, 640, 3), 60, np.uint8)
    y, x = (480 - height) // 2, (640 - pic.shape[1]) // 2
    frame[y:y + height, x:x + pic.shape[1]] = pic
    return cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)


def test_a_three_quarter_view_is_not_turned_away(detector):
    """Migrant Mother looks towards the camera in three-quarter view; framed like this
    her ear keypoints are as lopsided as a head turned sideways (ear asymmetry 0.92, the
    old rule's "profile" and so "Distracted"). The face check's yaw tells the two apart:
    she reads frontal, the demo's cameraman, at the demo's sizes, still turned away."""
    mother = _framed(shipped.demo_cuts()[15].portrait(2.2), 300)
    faces = detector.detect(mother)
    assert len(faces) == 1 and ear_asymmetry(faces[0].keypoints) >= TURNED_AWAY  # the keypoints alone would say turned
    assert faces[0].kind == "frontal"
    cameraman = shipped.profile_face()[40:380, 120:460]  # the demo's picture of him
    for height in (200, 300, 420):  # a full search: the live one looks at a few tiles per frame
        faces = detector.detect(_framed(cameraman, height), tiles=True)
        assert [f.kind for f in faces] == ["profile"], height
    check = FaceCheck()
    box = faces[0].box
    look = check.look(_framed(cameraman, 420), (box[0], box[1], box[0] + box[2], box[1] + box[3]), *faces[0].keypoints[:2])
    assert abs(look.yaw) >= TURNED_AWAY_YAW and look.presence >= check.presence_min


def test_turned_away_uses_yaw_when_there_is_one():
    lopsided = [(40, 40), (60, 40), (45, 50), (47, 60), (39, 45), (75, 45)]  # ear asymmetry >= TURNED_AWAY
    assert turned_away(lopsided, None)  # no face check: the ear keypoints decide
    assert not turned_away(lopsided, TURNED_AWAY_YAW - 5) and turned_away(lopsided, -TURNED_AWAY_YAW - 1)
    flat = np.zeros((468, 3), np.float32)
    flat[234], flat[454] = (50, 90, 0), (150, 90, 0)
    assert yaw_degrees(flat) == pytest.approx(0.0)
    flat[454, 2] = 100  # the image-right cheek as far behind as the face is wide
    assert yaw_degrees(flat) == pytest.approx(45.0)


def test_min_face_px_and_min_score(grace):
    assert BlazeFaceDetector(min_face_px=400).detect(grace) == []
    assert BlazeFaceDetector(min_score=0.99).detect(grace) == []
    assert len(BlazeFaceDetector(min_face_px=100).detect(grace)) == 1


def test_backend_from_config(cfg):
    assert isinstance(detector_from_config(cfg), BlazeFaceDetector)
    assert isinstance(detector_from_config(config_mod.with_changes(cfg, {"detector.backend": "haar"})), FaceDetector)


# ------------------------------------------------------------ bad files
def _copy_shipped(tmp_path: Path) -> tuple[Path, Path]:
    raw = json.loads(SHIPPED_DETECTOR.read_text())
    model = tmp_path / raw["model"]
    shutil.copy(SHIPPED_DETECTOR.parent / raw["model"], model)
    manifest = tmp_path / SHIPPED_DETECTOR.name
    manifest.write_text(json.dumps(raw))
    return manifest, model


def test_a_corrupt_face_check_model_is_refused(tmp_path):
    raw = json.loads(SHIPPED_FACE_CHECK.read_text())
    model = tmp_path / raw["model"]
    model.write_bytes((SHIPPED_FACE_CHECK.parent / raw["model"]).read_bytes()[:-1000])
    manifest = tmp_path / "check.json"
    manifest.write_text(json.dumps(raw))
    with pytest.raises(ModelError, match="does not match its manifest.*reinstall engage-edge"):
        FaceCheck(manifest)
    manifest.write_text(json.dumps({**raw, "sha256": hashlib.sha256(model.read_bytes()).hexdigest()}))
    with pytest.raises(ModelError, match="not a loadable TFLite model"):
        FaceCheck(manifest)


def test_corrupt_or_missing_detector_files_are_refused(tmp_path):
    manifest, model = _copy_shipped(tmp_path)
    assert BlazeFace(manifest).detect(np.zeros((64, 64), np.uint8)) == []
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="does not match its manifest"):
        BlazeFace(manifest)
    raw = json.loads(manifest.read_text())
    # cut short (a copy interrupted), its manifest made to match: LiteRT 1.4.0, a Pi's, crashed
    # the process on it (tests/pi-versions.txt; `make test` runs this file under it too)
    model.write_bytes((SHIPPED_DETECTOR.parent / raw["model"]).read_bytes()[:20000])
    manifest.write_text(json.dumps({**raw, "sha256": hashlib.sha256(model.read_bytes()).hexdigest()}))
    with pytest.raises(ModelError, match="not a loadable TFLite model"):
        BlazeFace(manifest)
    model.write_bytes(b"TFL3 not a flatbuffer" * 40)
    manifest.write_text(json.dumps({**raw, "sha256": hashlib.sha256(model.read_bytes()).hexdigest()}))
    with pytest.raises(ModelError, match="not a loadable TFLite model"):
        BlazeFace(manifest)
    manifest.write_text(json.dumps({**raw, "decoder": {"nms_iou": 0.3, "keypoints": ["eye"]}}))
    with pytest.raises(ModelError, match="keypoints"):
        BlazeFace(manifest)
    model.unlink()
    manifest.write_text(json.dumps(raw))
    with pytest.raises(ModelError, match="does not exist"):
        BlazeFace(manifest)


def test_corrupt_detector_at_start_is_a_clear_error(tmp_path):
    """Like a corrupt emotion model: exit code 2, the file named, no traceback, the
    fault pattern on the LED."""
    manifest, model = _copy_shipped(tmp_path)
    model.write_bytes(model.read_bytes()[:-100])
    conf = tmp_path / "config.toml"
    conf.write_text(f'[detector]\nmanifest = "{manifest}"\n[indicators]\nbackend = "console"\n')
    env = {**os.environ, "ENGAGE_ADMIN_PASSWORD": "detector-test-password-1"}
    r = subprocess.run([sys.executable, "-m", "edge_app", "run", "--port", "0", "--data-dir", str(tmp_path / "data"),
                        "--config", str(conf)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    assert str(model) in r.stderr and "does not match its manifest" in r.stderr
    assert "Traceback" not in r.stderr and "LED fast red blink" in r.stdout
