"""The face tracker (edge_app/vision/tracker.py) with the real Haar detector on synthetic
frames: a real face photograph pasted onto a textured background, moved, doubled or
taken away. The cascades are wrapped in recorders, so each test sees which detection
ran on which frame and on how much of it."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from conftest import record_cascades

from edge_app.vision.detector import FaceDetector
from edge_app.vision.tracker import FaceTracker

H, W = 480, 640  # the camera frame; the detector works on a 320 px wide copy (scale 2)


@pytest.fixture(scope="module")
def face(grace_path) -> np.ndarray:
    """Grace Hopper's face and a margin around it, about 155x160 px, grayscale."""
    img = cv2.imread(str(grace_path), cv2.IMREAD_GRAYSCALE)
    assert img is not None
    return cv2.resize(img[60:380, 110:420], None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def background() -> np.ndarray:
    """Blurred noise: texture for template matching to fail on, no face for Haar to find."""
    noise = np.random.default_rng(3).integers(60, 190, (H, W), dtype=np.uint8)
    return cv2.GaussianBlur(noise, (0, 0), 3)


def scene(background, *placed) -> np.ndarray:
    """A frame with each ``(image, (x, y))`` pasted at its top-left corner."""
    frame = background.copy()
    for img, (x, y) in placed:
        h, w = img.shape
        frame[y:y + h, x:x + w] = img
    return frame


def centre(box) -> tuple[float, float]:
    x, y, w, h = box
    return x + w / 2, y + h / 2


def near(box, point, tolerance: float = 12) -> bool:
    cx, cy = centre(box)
    return abs(cx - point[0]) <= tolerance and abs(cy - point[1]) <= tolerance


@pytest.fixture
def detector() -> FaceDetector:
    return FaceDetector()  # its cascades get wrapped per test: not shared between tests


def steps(tracker: FaceTracker, frames) -> list[str]:
    out = []
    for frame in frames:
        tracker.update(frame)
        out.append(tracker.last_step)
    return out


def test_detects_every_n_frames_and_on_the_whole_frame_every_m(detector, face, background):
    frontal, profile = record_cascades(detector)
    tracker = FaceTracker(detector, detect_every=3, full_every=10)
    frame = scene(background, (face, (100, 100)))
    done = []
    for _ in range(21):
        before = len(frontal.calls)
        tracker.update(frame)
        done.append((tracker.last_step, frontal.calls[before:]))
    assert [step for step, _ in done] == ["full", "track", "track", "roi", "track", "track", "roi",
                                         "track", "track", "roi"] * 2 + ["full"]
    for step, searched in done:
        if step == "full":  # the whole detection image, once
            assert searched == [(240, 320)]
        elif step == "roi":  # only a region around the face, much smaller than the frame
            (h, w), = searched
            assert h * w < 0.5 * 240 * 320
        else:  # template matching only: no cascade at all
            assert searched == []
    assert profile.calls == []  # a frontal face never needs the profile cascade


def test_follows_a_moving_face_between_detections(detector, face, background):
    tracker = FaceTracker(detector, detect_every=3, full_every=10)
    fh, fw = face.shape
    previous: tuple[int, int, int, int] = (0, 0, 0, 0)
    seen = set()
    for i in range(24):
        x, y = 100 + 4 * i, 100 + 2 * i
        faces = tracker.update(scene(background, (face, (x, y))))
        assert len(faces) == 1 and faces[0].kind == "frontal"
        assert near(faces[0].box, (x + fw / 2, y + fh / 2)), (i, tracker.last_step, faces[0].box)
        if tracker.last_step == "track":  # the template moved exactly as the face did
            assert faces[0].box[:2] == (previous[0] + 4, previous[1] + 2)
            assert faces[0].box[2:] == previous[2:]
        previous = faces[0].box
        seen.add(tracker.last_step)
    assert seen == {"full", "roi", "track"}


def test_boxes_are_in_full_frame_pixels(detector, face, background):
    """The tracker works on the small detection copy; its boxes must match a detection on
    the full frame, on tracked frames as on detected ones."""
    tracker = FaceTracker(detector, detect_every=3, full_every=10)
    frame = scene(background, (face, (300, 200)))
    reference, = FaceDetector().detect(frame)
    for _ in range(3):
        tracked, = tracker.update(frame)
        assert tracked.box == pytest.approx(reference.box, abs=4), tracker.last_step


def test_drops_a_face_that_left_then_searches_every_n_frames(detector, face, background):
    frontal, _ = record_cascades(detector)
    tracker = FaceTracker(detector, detect_every=3, full_every=30)
    with_face = scene(background, (face, (200, 150)))
    assert len(tracker.update(with_face)) == 1
    assert len(tracker.update(with_face)) == 1 and tracker.last_step == "track"
    # the face leaves: the template no longer matches, the whole frame is searched at once
    assert tracker.update(background) == [] and tracker.last_step == "full"
    assert tracker.faces == []
    # nobody there: the whole frame again only every detect_every frames, nothing in between
    before = len(frontal.calls)
    assert steps(tracker, [background] * 6) == ["idle", "idle", "full"] * 2
    assert len(frontal.calls) - before == 2
    # and the face is found when it comes back, at the next search
    found = [tracker.update(with_face) for _ in range(3)]
    assert [len(f) for f in found] == [0, 0, 1] and tracker.last_step == "full"


def test_a_face_that_jumps_is_found_again_in_the_same_frame(detector, face, background):
    """Too far for template matching: the tracker falls back to a whole-frame detection
    on that very frame instead of losing the face or reporting it at the old place."""
    tracker = FaceTracker(detector, detect_every=3, full_every=30)
    fh, fw = face.shape
    tracker.update(scene(background, (face, (40, 40))))
    faces = tracker.update(scene(background, (face, (420, 280))))
    assert tracker.last_step == "full"
    assert len(faces) == 1 and near(faces[0].box, (420 + fw / 2, 280 + fh / 2))


def test_main_face_comes_first_and_is_the_one_followed(detector, face, background):
    big = face
    small = cv2.resize(face, None, fx=0.75, fy=0.75, interpolation=cv2.INTER_AREA)
    tracker = FaceTracker(detector, detect_every=3, full_every=10)
    bh, bw = big.shape
    sh, sw = small.shape
    faces = tracker.update(scene(background, (small, (30, 200)), (big, (400, 100))))
    assert tracker.last_step == "full" and len(faces) == 2
    assert near(faces[0].box, (400 + bw / 2, 100 + bh / 2))  # biggest first, wherever it is
    assert near(faces[1].box, (30 + sw / 2, 200 + sh / 2))
    assert faces[0].box[2] > faces[1].box[2]
    # the main face moves; the tracker follows it and keeps it first
    faces = tracker.update(scene(background, (small, (30, 200)), (big, (408, 104))))
    assert tracker.last_step == "track"
    assert near(faces[0].box, (408 + bw / 2, 104 + bh / 2), tolerance=4)
    assert faces[0].box[2] > faces[1].box[2]


def test_reset_forgets_the_face(detector, face, background):
    tracker = FaceTracker(detector, detect_every=3, full_every=30)
    frame = scene(background, (face, (200, 150)))
    assert steps(tracker, [frame, frame]) == ["full", "track"]
    tracker.reset()
    assert tracker.faces == []
    assert steps(tracker, [frame]) == ["full"] and len(tracker.faces) == 1


def test_every_one_means_plain_detection_on_every_frame(detector, face, background):
    frontal, _ = record_cascades(detector)
    tracker = FaceTracker(detector, detect_every=1, full_every=1)
    frame = scene(background, (face, (200, 150)))
    assert steps(tracker, [frame] * 4) == ["full"] * 4
    assert frontal.calls == [(240, 320)] * 4
    assert tracker.faces == FaceDetector().detect(frame)
    assert steps(tracker, [background, frame]) == ["full"] * 2  # the student leaves and comes back
    assert tracker.faces == FaceDetector().detect(frame)


def test_a_turned_away_face_is_followed_with_the_profile_cascade(detector):
    """The demo's turned-away stretch: found as a profile face, re-detected near itself
    with the profile cascade (frame and mirror) and never with the frontal one, and it
    stays a profile face ("Distracted") throughout."""
    from edge_app.vision.demo import CYCLE_S, DemoScene

    scene_ = DemoScene()
    times = [t / 10 for t in range(int(CYCLE_S * 10)) if scene_.shot_at(t / 10).picture == "profile"]
    frontal, profile = record_cascades(detector)
    tracker = FaceTracker(detector, detect_every=3, full_every=30)
    for i, t in enumerate(times[5:17]):
        f0, p0 = len(frontal.calls), len(profile.calls)
        faces = tracker.update(scene_.render(t))  # 10 fps of scene time
        assert len(faces) == 1 and faces[0].kind == "profile", (t, faces)
        step = tracker.last_step
        assert step == ("full" if i == 0 else "roi" if i % 3 == 0 else "track"), (i, step)
        if step == "roi":
            assert frontal.calls[f0:] == [] and len(profile.calls[p0:]) == 2
            (h, w), _ = profile.calls[p0:]
            assert h * w < 0.5 * 240 * 320


def test_a_newcomer_is_found_at_the_next_whole_frame_detection(detector, face, background):
    """Between whole-frame detections only the main face is looked for; the periodic
    whole-frame pass is what finds someone who sat down meanwhile (and leaves them second:
    ``test_a_bigger_neighbour_leaning_in_...``)."""
    newcomer = cv2.resize(face, None, fx=1.2, fy=1.2, interpolation=cv2.INTER_LINEAR)
    nh, nw = newcomer.shape
    tracker = FaceTracker(detector, detect_every=3, full_every=6)
    alone = scene(background, (face, (40, 150)))
    both = scene(background, (face, (40, 150)), (newcomer, (380, 120)))
    assert len(tracker.update(alone)) == 1
    for _ in range(5):  # the newcomer arrives; the tracker keeps to the face it knows
        faces = tracker.update(both)
        assert tracker.last_step in ("track", "roi")
        assert len(faces) == 1 and faces[0].box[0] < 200
    faces = tracker.update(both)
    assert tracker.last_step == "full" and len(faces) == 2
    assert faces[0].box[0] < 200 and near(faces[1].box, (380 + nw / 2, 120 + nh / 2))


def test_a_bigger_neighbour_leaning_in_does_not_take_the_desk(detector, face, background):
    """A neighbour leaning in beside the student, their face 1.3 times as wide (1.7 times the
    area): the biggest face won at 1.4 times the area, so the desk's state, log and buzzer
    became the neighbour's. The student keeps the desk while still there, also leaning back
    (their face shrinking beside the neighbour's); the neighbour takes over once the
    student has gone."""
    neighbour = cv2.resize(cv2.flip(face, 1), None, fx=1.3, fy=1.3, interpolation=cv2.INTER_LINEAR)
    nh, nw = neighbour.shape
    back = cv2.resize(face, None, fx=0.85, fy=0.85, interpolation=cv2.INTER_AREA)
    tracker = FaceTracker(detector, detect_every=3, full_every=4)
    assert tracker.update(scene(background, (face, (40, 150))))[0].box[0] < 200
    both = scene(background, (face, (40, 150)), (neighbour, (380, 100)))
    leaning_back = scene(background, (back, (52, 162)), (neighbour, (380, 100)))
    assert FaceDetector().detect(both)[0].box[0] > 200  # a search alone puts the neighbour first
    full = 0
    for frame in [both] * 12 + [leaning_back] * 12:
        faces = tracker.update(frame)
        full += tracker.last_step == "full"
        assert faces[0].box[0] < 200, (tracker.last_step, faces)
    assert full >= 4 and len(faces) == 2
    for _ in range(4):  # the student leaves: the neighbour is the main face from the next pass
        faces = tracker.update(scene(background, (neighbour, (380, 100))))
    assert len(faces) == 1 and near(faces[0].box, (380 + nw / 2, 100 + nh / 2))


def test_a_student_sitting_down_in_front_of_a_small_face_takes_the_desk(detector, face, background):
    """A face found before the student sat down (a photo on the wall behind, someone across
    the room) is followed until then; a face more than ``SWITCH_AREA`` times its area is
    nearer the camera, the desk's, and takes over at the next whole-frame pass."""
    poster = cv2.resize(face, None, fx=0.8, fy=0.8, interpolation=cv2.INTER_AREA)  # about Haar's smallest here
    student = cv2.resize(face, None, fx=2.0, fy=2.0, interpolation=cv2.INTER_LINEAR)
    tracker = FaceTracker(detector, detect_every=3, full_every=4)
    (followed,) = tracker.update(scene(background, (poster, (470, 40))))
    assert followed.box[0] > 400
    for _ in range(4):
        faces = tracker.update(scene(background, (poster, (470, 40)), (student, (40, 150))))
    assert tracker.last_step == "full" and len(faces) == 2
    assert faces[0].box[0] < 200 and faces[0].box[2] > 2 * faces[1].box[2]  # the student's, twice as wide


def test_the_followed_face_stays_the_main_face_beside_one_about_its_size(detector, face, background):
    """Two students of about the same size in view: the whole-frame detections keep to the
    face being followed, so the state is one student's, not a blend of two that flips at
    every whole-frame pass. The followed face leaving still changes the main face."""
    neighbour = cv2.resize(face, None, fx=1.1, fy=1.1, interpolation=cv2.INTER_LINEAR)
    nh, nw = neighbour.shape
    tracker = FaceTracker(detector, detect_every=3, full_every=4)
    every_frame = FaceTracker(FaceDetector(), detect_every=1, full_every=1)  # plain detection on every frame
    both = scene(background, (face, (40, 150)), (neighbour, (380, 120)))
    faces = tracker.update(scene(background, (face, (40, 150))))
    assert len(faces) == 1 and faces[0].box[0] < 200
    assert every_frame.update(scene(background, (face, (40, 150))))[0].box[0] < 200
    assert FaceDetector().detect(both)[0].box[0] > 200  # the neighbour is the bigger face
    full = 0
    for _ in range(12):
        faces = tracker.update(both)
        full += tracker.last_step == "full"
        assert faces[0].box[0] < 200, (tracker.last_step, faces)
        assert every_frame.update(both)[0].box[0] < 200
    assert full >= 2 and len(faces) == 2  # whole-frame passes saw both and kept the followed face first
    for _ in range(4):  # the followed student leaves: the neighbour is the main face from the next pass
        faces = tracker.update(scene(background, (neighbour, (380, 120))))
    assert len(faces) == 1 and near(faces[0].box, (380 + nw / 2, 120 + nh / 2))


class MissesOnSomePasses(FaceDetector):
    """The real detector, whose whole-frame search leaves out the faces left of ``x`` on the
    passes listed: BlazeFace searches small faces' tiles a few at a time, so one pass can
    miss a face the pass before found."""

    def __init__(self, x: int, misses: set[int]):
        super().__init__()
        self.x, self.misses, self.passes = x, misses, 0

    def detect(self, gray):
        faces = super().detect(gray)
        self.passes += 1
        return [f for f in faces if f.box[0] >= self.x] if self.passes in self.misses else faces


def test_a_whole_frame_pass_that_misses_the_followed_face_does_not_hand_the_state_to_another(face, background):
    """Two people in view, the pass missing the followed one: the other became the main face
    until the next pass, so the state flipped between two people's expressions. The
    followed face is looked for where it was before another takes its place."""
    neighbour = cv2.flip(face, 1)  # another person of the same size
    detector = MissesOnSomePasses(200, misses={2, 3, 5})
    tracker = FaceTracker(detector, detect_every=3, full_every=4)
    assert tracker.update(scene(background, (face, (40, 150))))[0].box[0] < 200
    both = scene(background, (face, (40, 150)), (neighbour, (380, 120)))
    for _ in range(20):
        faces = tracker.update(both)
        assert faces[0].box[0] < 200, (detector.passes, tracker.last_step, faces)
    assert detector.passes >= 5 and len(faces) == 2
    for _ in range(8):  # it leaves for real: the neighbour takes over
        faces = tracker.update(scene(background, (neighbour, (380, 120))))
    assert faces[0].box[0] > 200


def test_a_frame_of_another_size_starts_afresh(detector, face, background):
    """A camera reopened at another resolution mid-run: what the tracker followed is in
    the old frame's pixels, so the next frame is a whole-frame detection. Before, the
    face was followed on with its old size (half the face at twice the resolution)
    and, with BlazeFace, its eyes where they were in the old frame."""
    frame = scene(background, (face, (100, 100)))
    tracker = FaceTracker(detector, detect_every=3, full_every=30)
    (small,) = tracker.update(frame)
    assert tracker.last_step == "full"
    bigger = cv2.resize(frame, (2 * W, 2 * H), interpolation=cv2.INTER_LINEAR)
    (found,) = tracker.update(bigger)
    assert tracker.last_step == "full"
    assert found.box[2] == pytest.approx(2 * small.box[2], rel=0.1)
    assert near(found.box, (2 * centre(small.box)[0], 2 * centre(small.box)[1]), tolerance=8)
    assert steps(tracker, [bigger]) == ["track"]  # and followed as usual from there
