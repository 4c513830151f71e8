"""Readers get a consistent engagement state: the loop publishes a frozen snapshot per
frame, so level, emotion, confidence, probabilities and faces always come from one frame
and never change under a reader (web threads read it without a lock)."""
from __future__ import annotations

import dataclasses
import threading

import cv2
import numpy as np
import pytest
from conftest import login, wait_for

from edge_app.device.indicators import NullIndicator
from edge_app.engagement import ABSENT, DISTRACTED, group_of
from edge_app.runtime.capture import CaptureLoop
from edge_app.vision.classifier import EmotionClassifier
from edge_app.vision.detector import FaceDetector
from edge_app.vision.sources import DemoSource


@pytest.fixture
def loop(cfg):
    clock = {"t": 0.0}
    loop = CaptureLoop(cfg, DemoSource(realtime=False), FaceDetector.from_config(cfg), EmotionClassifier(), None,
                       NullIndicator(), clock=lambda: clock["t"])
    loop.test_clock = clock  # type: ignore[attr-defined]
    yield loop
    loop.stop()


def feed(loop, frame: np.ndarray, start: float, stop: float, step: float = 0.1) -> None:
    t = start
    while t < stop:
        loop.test_clock["t"] = t
        loop.process(frame)
        t += step


def test_a_snapshot_held_by_a_reader_never_changes_under_it(loop, face_jpeg):
    face = cv2.imdecode(np.frombuffer(face_jpeg, np.uint8), cv2.IMREAD_COLOR)
    feed(loop, face, 0.0, 3.0)  # long enough for the face's level to be shown
    held = loop.state
    assert held.emotion is not None and held.faces, "the test photo must give a classified face"
    seen = (held.level, held.emotion, held.confidence, dict(held.probabilities), [dict(f) for f in held.faces])
    brighter = cv2.convertScaleAbs(face, alpha=0.8, beta=40)  # the same face, other probabilities
    feed(loop, brighter, 3.0, 4.0)
    newest = loop.state
    assert newest.seq > held.seq and newest.confidence != held.confidence  # the loop moved on ...
    assert (held.level, held.emotion, held.confidence, dict(held.probabilities),
            [dict(f) for f in held.faces]) == seen  # ... the reader's copy did not


def test_a_snapshot_is_read_only_all_the_way_down(loop, face_jpeg):
    face = cv2.imdecode(np.frombuffer(face_jpeg, np.uint8), cv2.IMREAD_COLOR)
    feed(loop, face, 0.0, 2.0)
    s = loop.state
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.confidence = 1.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        s.probabilities["happiness"] = 1.0  # type: ignore[index]
    with pytest.raises(TypeError):
        s.faces[0]["emotion"] = "anger"  # type: ignore[index]
    assert isinstance(s.faces[0]["box"], tuple)
    assert s.emotion == max(s.probabilities, key=s.probabilities.get)
    assert s.faces[0]["engagement"] == s.level  # the faces carry this frame's level


def test_reading_the_state_never_waits_for_the_loop(loop):
    got = []
    with loop.state_lock:  # the loop (or an admin change) is in the middle of an update
        reader = threading.Thread(target=lambda: got.append(loop.state))
        reader.start()
        reader.join(5)
        assert not reader.is_alive(), "reading the state waited on the loop's lock"
    assert got[0].level == ABSENT and got[0].seq == 0 and got[0].t == got[0].since  # no frame yet


def test_api_state_fields_always_belong_to_one_frame(appliance):
    """Many reads of /api/state while the demo loop runs: every answer is self-consistent."""
    s = login(appliance.url)
    answers = []

    def consistent_with_emotion():
        body = s.get(f"{appliance.url}/api/state", timeout=10).json()
        answers.append(body)
        return body["emotion"] is not None and len(answers) >= 30

    wait_for(consistent_with_emotion, timeout=60, every=0.02)
    for body in answers:
        assert body["group"] == group_of(body["level"]), body
        if body["level"] in (ABSENT, DISTRACTED):
            assert body["emotion"] is None and body["confidence"] is None and body["probabilities"] == {}, body
        else:
            p = body["probabilities"]
            assert body["emotion"] == max(p, key=p.get), body
            assert body["confidence"] == pytest.approx(p[body["emotion"]], abs=1e-3), body
        assert body["t"] >= body["since"], body
    seqs = [b["seq"] for b in answers]
    assert seqs == sorted(seqs) and seqs[-1] > seqs[0]


def test_the_logged_change_is_dated_when_the_level_began_as_api_state_says(cfg, tmp_path, face_jpeg):
    """A level shows after it held for ``min_hold_s``; the log, the CSV and the classroom's
    ``since`` must name the same moment as /api/state, not the moment it was confirmed."""
    from edge_app.store.database import Store

    store = Store(tmp_path / "db")
    clock, wall = {"t": 500.0}, {"t": 1_780_000_000.0}
    loop = CaptureLoop(cfg, DemoSource(realtime=False), FaceDetector.from_config(cfg), EmotionClassifier(), store,
                       NullIndicator(), clock=lambda: clock["t"], wall=lambda: wall["t"])
    face = cv2.imdecode(np.frombuffer(face_jpeg, np.uint8), cv2.IMREAD_COLOR)
    try:
        for _ in range(40):  # 4 s of a face, 10 frames a second
            clock["t"] += 0.1
            wall["t"] += 0.1
            loop.process(face)
        assert loop.flush(10)
        shown = loop.snapshot.public(wall["t"] - clock["t"])
        assert shown["level"] != ABSENT
        logged = store.query("SELECT t FROM state_changes WHERE level = ?", (shown["level"],))
        assert len(logged) == 1 and logged[0][0] == pytest.approx(shown["since"], abs=0.01)
    finally:
        loop.stop()
        store.close()


def test_a_model_with_other_labels_keeps_the_level_shown_until_the_new_model_says_another(cfg, tmp_path, face_jpeg):
    """A flashed model whose labels differ restarts the smoothing, but the level shown stays
    until the new model's frames hold another: the fresh tracker's "Absent" was logged and
    published, a student sitting there recorded as gone at every model flash (the broker is
    sent the logged rows, so no row is no message). A look away just after the flash is
    judged as before it, and the new model's level is then a change like any other, logged."""
    import json
    import shutil

    from edge_app.store.database import Store
    from edge_app.vision.classifier import SHIPPED_MANIFEST

    store = Store(tmp_path / "db")
    clock = {"t": 100.0}
    loop = CaptureLoop(cfg, DemoSource(realtime=False), FaceDetector.from_config(cfg), EmotionClassifier(), store,
                       NullIndicator(), clock=lambda: clock["t"])
    face = cv2.imdecode(np.frombuffer(face_jpeg, np.uint8), cv2.IMREAD_COLOR)
    other = tmp_path / "other"
    other.mkdir()
    raw = json.loads(SHIPPED_MANIFEST.read_text())
    shutil.copy(SHIPPED_MANIFEST.parent / raw["model"], other / raw["model"])
    raw["labels"] = list(reversed(raw["labels"]))  # the same file read with another label order
    (other / "emotion.json").write_text(json.dumps(raw))
    try:
        for _ in range(30):
            clock["t"] += 0.1
            loop.process(face)
        before = loop.state.level
        assert before != ABSENT
        loop.set_classifier(EmotionClassifier(other / "emotion.json"))
        assert loop.state.level == before
        blank = np.full_like(face, 128)
        for _ in range(20):  # a look away of 2 s, under absent_after_s, as before the flash
            clock["t"] += 0.1
            loop.process(blank)
        assert loop.state.level == before
        for _ in range(30):  # the reversed labels read the same face as another level
            clock["t"] += 0.1
            loop.process(face)
        after = loop.state.level
        assert after not in (before, ABSENT)
        assert loop.flush(10)
        levels = [r[0] for r in store.query("SELECT level FROM state_changes ORDER BY id")]
        assert levels[-2:] == [before, after] and ABSENT not in levels[1:], levels
    finally:
        loop.stop()
        store.close()


def test_a_model_with_fewer_labels_swapped_in_during_a_frames_inference_keeps_the_loop_reading(cfg, face_jpeg):
    """The loop read its model once per frame, but the tracker under the lock: a model with
    fewer labels (FER's 7 after FER+'s 8) swapped in by the model watcher while a frame's
    inference ran fed the old model's 8 probabilities to the new 7-label tracker, and every
    frame after failed ("operands could not be broadcast"), the state frozen while the
    student sat there. That frame is dropped; the next is the new model's."""
    real = EmotionClassifier()

    class Fewer:  # the shipped network read as a model of one label fewer
        manifest, labels = real.manifest, list(real.labels[:-1])

        def probabilities(self, crop):
            p = real.probabilities(crop)[:-1]
            return p / p.sum()

    class SwappedDuringInference:  # the old model: the watcher's swap lands while it reads a face
        manifest, labels, armed = real.manifest, real.labels, False

        def probabilities(self, crop):
            if self.armed:
                self.armed = False
                loop.set_classifier(Fewer())
            return real.probabilities(crop)

    clock = {"t": 100.0}
    old = SwappedDuringInference()
    loop = CaptureLoop(cfg, DemoSource(realtime=False), FaceDetector.from_config(cfg), old, None, NullIndicator(),
                       clock=lambda: clock["t"])
    face = cv2.imdecode(np.frombuffer(face_jpeg, np.uint8), cv2.IMREAD_COLOR)
    try:
        for _ in range(30):
            clock["t"] += 0.1
            loop.process(face)
        old.armed = True
        for _ in range(30):  # the same student, the new model
            clock["t"] += 0.1
            snapshot, _ = loop.process(face)
        assert len(loop.classifier.labels) == len(real.labels) - 1
        assert set(snapshot.probabilities) == set(loop.classifier.labels) and snapshot.emotion in loop.classifier.labels
    finally:
        loop.stop()


def test_a_model_flashed_during_a_pause_leaves_the_desk_paused(cfg, tmp_path, face_jpeg):
    """A model with other labels flashed while the privacy switch is on (an admin's upload,
    the student paused) restarted the tracker, which still held the level from before the
    pause: /api/state, the LED and the log said "Absent" (and the classroom showed the desk
    as an empty chair, the log a state nobody saw) while no frame was read. The pause stays
    as it is; the resume starts the new model's tracker at Absent, as any resume does."""
    import json
    import shutil

    from conftest import wait_for

    from edge_app.engagement import PAUSED
    from edge_app.store.database import Store
    from edge_app.vision.classifier import SHIPPED_MANIFEST

    store = Store(tmp_path / "db")
    other = tmp_path / "other"
    other.mkdir()
    raw = json.loads(SHIPPED_MANIFEST.read_text())
    shutil.copy(SHIPPED_MANIFEST.parent / raw["model"], other / raw["model"])
    raw["labels"] = list(reversed(raw["labels"]))
    (other / "emotion.json").write_text(json.dumps(raw))
    loop = CaptureLoop(cfg, DemoSource(realtime=False), FaceDetector.from_config(cfg), EmotionClassifier(), store,
                       NullIndicator()).start()
    try:
        wait_for(lambda: loop.state.level not in (ABSENT, PAUSED), what="a state from the demo's face")
        loop.privacy.pause("web")
        wait_for(lambda: loop.state.level == PAUSED, what="the loop paused")
        assert loop.flush(10)
        loop.set_classifier(EmotionClassifier(other / "emotion.json"))
        assert loop.state.level == PAUSED
        assert loop.flush(10)
        assert store.query("SELECT level FROM state_changes ORDER BY id DESC LIMIT 1")[0][0] == PAUSED
        assert loop.classifier.labels == raw["labels"]
        loop.privacy.resume()
        wait_for(lambda: loop.state.level != PAUSED, what="the loop resumed")
        assert loop.flush(10)
        levels = [r[0] for r in store.query("SELECT level FROM state_changes ORDER BY id")]
        assert levels[levels.index(PAUSED):][:2] == [PAUSED, ABSENT]  # no Absent during the pause
    finally:
        loop.stop()
        store.close()
