"""Settings reach the running capture loop as one new immutable config: every frame is
judged by one whole config, never old engagement rules with a new buzzer (or the
reverse), and the config object the loop was reading is never edited."""
from __future__ import annotations

import io
import threading

import cv2
import numpy as np
import pytest

from edge_app import config as config_mod
from edge_app.device.indicators import ConsoleIndicator
from edge_app.runtime.capture import CaptureLoop
from edge_app.vision.classifier import EmotionClassifier
from edge_app.vision.detector import FaceDetector
from edge_app.vision.sources import DemoSource


def variant(cfg, tag: str, buzzer: bool):
    """Every emotion maps to "Not engaged - <tag>"; the buzzer sounds at once, or never. A
    frame without a face is "Absent" half a second after a face: it ends a disengaged
    stretch, so the next face's alert level begins a new one (alerted once per stretch);
    every frame is searched whole, so the face after one is seen at once."""
    every = {f"engagement.mapping.{e}": f"Not engaged - {tag}" for e in cfg.engagement.mapping}
    return config_mod.with_changes(cfg, {**every, "engagement.min_hold_s": 0.0, "engagement.ema_half_life_s": 0.0,
                                         "engagement.absent_after_s": 0.5, "detector.detect_every": 1,
                                         "detector.full_detect_every": 1,
                                         "indicators.buzzer": buzzer, "indicators.buzzer_after_s": 0.0,
                                         "indicators.buzzer_cooldown_s": 0.0})


@pytest.fixture
def face_frame(grace_path):
    frame = cv2.imread(str(grace_path))
    assert FaceDetector().detect(frame), "the test photo must show a frontal face"
    return frame


def no_face(frame):
    return np.full_like(frame, 120)  # a plain wall: a black frame is "Absent - too dark to see"


def make_loop(cfg, wall) -> tuple[CaptureLoop, io.StringIO]:
    out = io.StringIO()
    loop = CaptureLoop(cfg, DemoSource(realtime=False), FaceDetector.from_config(cfg), EmotionClassifier(), None,
                       ConsoleIndicator(out), wall=wall)
    return loop, out


def test_a_change_landing_mid_frame_applies_from_the_next_frame_whole(cfg, face_frame):
    """The admin thread may swap the config at any instant, e.g. between the engagement
    update and the buzzer check of a frame (here: inside ``wall()``, which the loop calls
    between them). That frame is still judged by one config: level A with A's buzzer."""
    loud, silent = variant(cfg, "A", buzzer=True), variant(cfg, "B", buzzer=False)
    beeps_before = 0
    loop: CaptureLoop
    switch_to = [silent]

    def wall_that_changes_settings() -> float:
        loop.apply_config(switch_to[0])  # a settings change from another thread, mid-frame
        return 0.0

    loop, out = make_loop(loud, wall_that_changes_settings)
    seen = []
    for i in range(6):
        switch_to[0] = silent if i % 2 == 0 else loud  # a face frame, then a frame without one: both switch
        for frame, now in ((face_frame, 10.0 + 2 * i), (no_face(face_frame), 11.0 + 2 * i)):
            state, _ = loop.process(frame, now=now)
            beeps = out.getvalue().count("BUZZER")
            seen.append((state.level, beeps - beeps_before))
            beeps_before = beeps
    # face frame 0 started under A (loud), face frame 1 under B (silent), and so on
    assert seen == [("Not engaged - A", 1), ("Absent", 0), ("Not engaged - B", 0), ("Absent", 0)] * 3


def test_settings_hammered_from_another_thread_never_tear_a_frame(cfg, face_frame):
    """A real race: one thread swaps configs as fast as it can while frames run."""
    loud, silent = variant(cfg, "A", buzzer=True), variant(cfg, "B", buzzer=False)
    loop, out = make_loop(loud, wall=lambda: 0.0)
    stop = threading.Event()

    def hammer():
        while not stop.is_set():
            loop.apply_config(silent)
            loop.apply_config(loud)

    thread = threading.Thread(target=hammer, daemon=True)
    thread.start()
    try:
        for i in range(40):  # a face, then none: every face begins a disengaged stretch
            frame = face_frame if i % 2 == 0 else no_face(face_frame)
            before = out.getvalue().count("BUZZER")
            state, changed = loop.process(frame, now=10.0 + i)
            beeped = out.getvalue().count("BUZZER") - before
            assert changed and state.level.startswith("Not engaged - " if i % 2 == 0 else "Absent"), (i, state.level)
            # A beeps as its stretch begins; B never beeps
            assert beeped == (1 if state.level.endswith("A") else 0), (i, state.level, beeped)
    finally:
        stop.set()
        thread.join(5)


def test_apply_config_never_edits_what_the_loop_was_reading(cfg):
    loop, _ = make_loop(cfg, wall=lambda: 0.0)
    old_cfg, old_rules, old_tracker = loop.cfg, loop.rules, loop.tracker
    old_values = old_cfg.to_dict()
    new = config_mod.with_changes(cfg, {"engagement.min_hold_s": 4.0, "indicators.buzzer_after_s": 9.0,
                                        "indicators.buzzer": False})
    loop.apply_config(new)
    assert loop.cfg is new and loop.rules is not old_rules
    assert old_cfg.to_dict() == old_values
    assert (old_rules.engagement.min_hold_s, old_rules.buzzer.after_s, old_rules.buzzer.enabled) == (1.5, 30.0, True)
    assert (loop.rules.engagement.min_hold_s, loop.rules.buzzer.after_s, loop.rules.buzzer.enabled) == (4.0, 9.0, False)
    assert loop.tracker is old_tracker  # the shown state and the smoothing history are kept
