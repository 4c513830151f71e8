"""Settings reach the running capture loop as one new immutable config: every frame is
judged by one whole config, never old engagement rules with a new buzzer (or the
reverse), and the config object the loop was reading is never edited."""
from __future__ import annotations

import io
import threading

import cv2
import pytest

from edge_app import config as config_mod
from edge_app.device.indicators import ConsoleIndicator
from edge_app.runtime.capture import CaptureLoop
from edge_app.vision.classifier import EmotionClassifier
from edge_app.vision.detector import FaceDetector
from edge_app.vision.sources import DemoSource


def variant(cfg, tag: str, buzzer: bool):
    """Every emotion maps to "Not engaged - <tag>"; the buzzer sounds at once, or never."""
    every = {f"engagement.mapping.{e}": f"Not engaged - {tag}" for e in cfg.engagement.mapping}
    return config_mod.with_changes(cfg, {**every, "engagement.min_hold_s": 0.0, "engagement.ema_half_life_s": 0.0,
                                         "indicators.buzzer": buzzer, "indicators.buzzer_after_s": 0.0,
                                         "indicators.buzzer_cooldown_s": 0.0})


@pytest.fixture
def face_frame(grace_path):
    frame = cv2.imread(str(grace_path))
    assert FaceDetector().detect(frame), "the test photo must show a frontal face"
    return frame


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
        switch_to[0] = silent if i % 2 == 0 else loud
        state, _ = loop.process(face_frame, now=10.0 + i)
        beeps = out.getvalue().count("BUZZER")
        seen.append((state.level, beeps - beeps_before))
        beeps_before = beeps
    # frame 0 started under A (loud), frame 1 under B (silent), and so on
    assert seen == [("Not engaged - A", 1), ("Not engaged - B", 0)] * 3


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
        for i in range(40):
            before = out.getvalue().count("BUZZER")
            state, changed = loop.process(face_frame, now=10.0 + i)
            beeped = out.getvalue().count("BUZZER") - before
            # A beeps when its stretch begins (once per stretch); B never beeps
            assert beeped == (1 if state.level.endswith("A") and changed else 0), (i, state.level, changed, beeped)
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
