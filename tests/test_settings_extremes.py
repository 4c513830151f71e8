"""Every setting the capture loop reads, at each end of the range the settings page and the
config file accept, runs the loop on faces, turned-away faces, empty frames and their
changes: a value that is allowed must never make a frame fail. Plain detection on every
frame (detect_every = full_detect_every = 1, both allowed) failed on every frame without a
face, and the desk showed the last level for good instead of "Absent"."""
from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest

from edge_app import config as config_mod
from edge_app.device.indicators import ConsoleIndicator
from edge_app.runtime.capture import CaptureLoop
from edge_app.vision.classifier import EmotionClassifier
from edge_app.vision.demo import CYCLE_S, DemoScene
from edge_app.vision.detector import FaceDetector
from edge_app.vision.sources import DemoSource
from edge_app.vision.stills import Analyzer

SECTIONS = ("detector", "engagement")
BUZZER = ("buzzer_after_s", "buzzer_cooldown_s")


def extremes() -> list[tuple[str, object]]:
    """(dotted key, value) for each end of every ranged setting the loop reads, and each
    choice of every one-of setting."""
    cases = []
    sections = {name: type(getattr(config_mod.load(None, {}), name)) for name in (*SECTIONS, "indicators")}
    for name, cls in sections.items():
        for f in dataclasses.fields(cls):
            rule = f.metadata.get("rule")
            if name == "indicators" and f.name not in BUZZER:
                continue
            if isinstance(rule, config_mod.Range):
                step = 1 if isinstance(f.default, int) else 0.001
                low = rule.lo + step if rule.above else rule.lo
                cases += [(f"{name}.{f.name}", type(f.default)(low)), (f"{name}.{f.name}", type(f.default)(rule.hi))]
            elif isinstance(rule, config_mod.OneOf):
                cases += [(f"{name}.{f.name}", choice) for choice in rule.choices if choice != f.default]
    return cases


def scene_frames() -> list[tuple[float, np.ndarray]]:
    """Frames across the demo's minute (faces, a turned-away face, an empty chair) and a few
    frames apart and together, so changes come and go: (seconds, frame)."""
    scene = DemoScene()
    times = sorted({round(t, 2) for k in range(24) for t in (k * CYCLE_S / 24, k * CYCLE_S / 24 + 0.1)})
    kinds = {scene.shot_at(t).picture.split(":")[0] for t in times}
    assert {"profile", "empty"} <= kinds and kinds & {"grace", "astronaut", "face"}, kinds  # every kind of frame
    return [(t, scene.render(t).copy()) for t in times]  # render reuses one buffer


@pytest.fixture(scope="module")
def frames():
    return scene_frames()


@pytest.fixture(scope="module")
def classifier():
    return EmotionClassifier()


def together() -> list[tuple[str, dict]]:
    """Every range at its low end at once, then its high end (settings meet: both
    detection intervals at 1 is plain detection on every frame), for each detector."""
    ends: dict[str, dict] = {"low": {}, "high": {}}
    for key, value in extremes():
        if not isinstance(value, str):
            ends["low" if key not in ends["low"] else "high"][key] = value
    # the two detection intervals at 1: plain detection on every frame (the low ends above
    # meet there too, but with every detector threshold at its lowest an empty frame has
    # "faces" in it)
    ends["every frame"] = {"detector.detect_every": 1, "detector.full_detect_every": 1}
    return [(f"{end} {backend}", {**values, "detector.backend": backend})
            for end, values in ends.items() for backend in ("blazeface", "haar")]


def run_frames(cfg, frames, classifier) -> set:
    loop = CaptureLoop(cfg, DemoSource(realtime=False), FaceDetector.from_config(cfg), classifier, None,
                       ConsoleIndicator(io.StringIO()), wall=lambda: 1_700_000_000.0)
    groups = set()
    for t, frame in frames:
        state, _ = loop.process(frame, now=100.0 + t)  # a frame that fails raises here
        groups.add(state.group)
    return groups


@pytest.mark.parametrize("key, value", extremes(), ids=lambda v: str(v))
def test_every_allowed_value_keeps_every_frame_working(key, value, frames, classifier):
    cfg = config_mod.load(None, {key: value})  # allowed: the config takes it
    assert run_frames(cfg, frames, classifier)
    if key.startswith("detector."):  # uploads are read with the same settings: a photo, a tiny one, a blank one
        analyzer = Analyzer(FaceDetector.from_config(cfg), classifier, cfg.engagement.mapping,
                            cfg.engagement.min_confidence)
        for _, still in (frames[0], (0, frames[0][1][:20, :30]), (0, np.zeros((480, 640, 3), np.uint8))):
            assert isinstance(analyzer.analyze(still), list)


@pytest.mark.parametrize("changes", [c for _, c in together()], ids=[name for name, _ in together()])
def test_every_range_at_one_end_at_once_keeps_every_frame_working(changes, frames, classifier):
    assert run_frames(config_mod.load(None, changes), frames, classifier)
