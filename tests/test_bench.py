"""``engage-edge bench`` produces its figures and the agreement rate (correctness only:
performance is measured by running the bench, never asserted in a test)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from edge_app.runtime import bench
from edge_app.vision.sources import DemoSource

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "edge_app" / "models" / "shipped" / "emotion-int8.json"


def check_config(c: dict, frames: int):
    assert c["frames"] == frames and c["fps"] > 0
    assert 0 < c["p50_ms"] <= c["p95_ms"] <= c["p99_ms"]
    assert set(c["stage_ms"]) == {"capture", "detect", "track", "classify", "state", "store"}
    assert c["cpu_ms_per_frame"] > 0 and c["capture_to_led"]["p99_ms"] > 0
    assert c["errors"] == 0


@pytest.fixture
def installed(tmp_path) -> tuple[dict, Path]:
    """edge_app as a device has it: the package alone (no checkout around it, so no
    models/baseline/), run from a folder without the paper's model: the default manifest
    is really absent. Returns the environment to run it with and that folder."""
    site, elsewhere = tmp_path / "site", tmp_path / "elsewhere"
    shutil.copytree(ROOT / "edge_app", site / "edge_app", ignore=shutil.ignore_patterns("__pycache__"))
    elsewhere.mkdir()
    return {**os.environ, "PYTHONPATH": str(site), "PYTHONNOUSERSITE": "1", "ENGAGE_LOG_LEVEL": "WARNING"}, elsewhere


def test_bench_cli_json_without_the_paper_model(installed):
    env, elsewhere = installed
    r = subprocess.run([sys.executable, "-m", "edge_app", "bench", "--frames", "12", "--json"], cwd=elsewhere,
                       capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    check_config(out["edge"], 12)
    assert out["edge"]["fps"] > 0 and out["edge"]["p99_ms"] > 0
    assert out["paper"]["fps"] is None and out["paper"]["p99_ms"] is None and out["speedup"] is None
    assert out["paper"]["missing"] == os.path.join(os.path.realpath(elsewhere), "models", "baseline", "paper-float.json")
    assert "python -m training.train --arch paper" in out["paper"]["hint"]
    assert "python -m training.quantize --float" in out["paper"]["hint"]
    check_config(out["reference"], 12)  # the paper's detection design with our model still runs
    a = out["agreement"]
    assert a["compared"] > 0 and 0 <= a["emotion"] <= 1 and 0 <= a["face_presence"] <= 1


def test_bench_text_output_says_the_paper_model_is_missing(installed):
    env, elsewhere = installed
    r = subprocess.run([sys.executable, "-m", "edge_app", "bench", "--frames", "6"], cwd=elsewhere,
                       capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    assert "frames per second" in r.stdout and "emotion agreement" in r.stdout
    assert "missing" in r.stderr and "python -m training.train --arch paper" in r.stderr


@pytest.mark.parametrize("output", [[], ["--json"]], ids=["table", "json"])
def test_a_paper_manifest_named_but_missing_is_an_error(tmp_path, output):
    """`bench --paper-manifest FILE` with FILE mistyped ran on quietly, reporting the paper's
    model unavailable, as if none had been asked for: a file named and absent is exit 2
    naming it (only the default one's absence, a device install's, falls back)."""
    missing = tmp_path / "paper-flaot.json"
    r = subprocess.run([sys.executable, "-m", "edge_app", "bench", "--frames", "6", *output,
                        "--paper-manifest", str(missing)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"error: bench: the paper's model manifest {missing} does not exist: check the path, or leave out " \
        "--paper-manifest" in r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""


def test_a_paper_manifest_named_but_unusable_is_an_error(tmp_path):
    """A named manifest that cannot be loaded is said as such (exit 2), not replaced by our model."""
    broken = tmp_path / "paper-float.json"
    broken.write_text("{ not json")
    r = subprocess.run([sys.executable, "-m", "edge_app", "bench", "--frames", "6", "--json",
                        "--paper-manifest", str(broken)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"error: model: model manifest {broken} is not readable JSON" in r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""


@pytest.mark.parametrize("clip, said", [("folder", "is not a file"), ("photo", "holds 1 frame")])
def test_a_clip_that_is_no_video_is_said_as_such(tmp_path, clip, said):
    """A folder was "does not exist"; a photograph ran and reported a p99 and a speed-up
    from one frame."""
    path = tmp_path if clip == "folder" else ROOT / "edge_app" / "vision" / "photos" / "grace_hopper.jpg"
    r = subprocess.run([sys.executable, "-m", "edge_app", "bench", "--frames", "6", "--clip", str(path)], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and said in r.stderr, r.stdout + r.stderr
    assert "Traceback" not in r.stderr and "frames per second" not in r.stdout


def test_bench_on_a_recorded_clip_with_a_paper_model(tmp_path, cfg):
    clip = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 15, (640, 480))
    demo = DemoSource(realtime=False)
    for _ in range(10):
        writer.write(demo.read())
    writer.release()
    # any valid manifest stands in for the paper's float model: here the shipped one
    r = bench.benchmark(cfg, 10, clip, SHIPPED, log=lambda *a: None)
    assert r["clip"]["source"] == str(clip) and r["clip"]["frames"] == 10
    check_config(r["edge"], 10)
    check_config(r["paper"], 10)
    assert r["paper"]["detector"]["detect_every"] == 1 and r["paper"]["detector"]["detect_width"] == 640
    assert r["speedup"] == round(r["edge"]["fps"] / r["paper"]["fps"], 2)
    assert "reference" not in r
    # the demo's opening seconds: one steady face in every frame, found by both designs
    # and read the same way on both boxes (a clear expression, the same model)
    a = r["agreement"]
    assert a["compared"] == 10 and a["face_presence"] == 1.0 and a["emotion"] >= 0.8, a
    assert "frames per second" in bench.format_table(r)


def test_agreement_counts_only_faces_both_classified():
    frames = DemoSource(realtime=False).read()[None].repeat(3, axis=0)
    from edge_app.vision.classifier import EmotionClassifier
    from edge_app.vision.detector import FaceDetector

    clf = EmotionClassifier()
    box = FaceDetector().detect(frames[0])[0].box
    gray = cv2.cvtColor(frames[0], cv2.COLOR_BGR2GRAY)
    label = clf.labels[int(clf.probabilities(gray[box[1]:box[1] + box[3], box[0]:box[0] + box[2]]).argmax())]
    other = next(l for l in clf.labels if l != label)
    a = bench.agreement(frames, [(box, label), (box, other), None], [box, box, box], clf)
    assert a == {"emotion": 0.5, "compared": 2, "face_presence": round(2 / 3, 4)}


def test_the_paper_model_is_found_in_the_checkout():
    """In a checkout the bench finds the paper's float model in models/baseline/ (a wheel
    install looks in the checkout it is run from: tests/test_packaging.py)."""
    assert bench.default_paper_manifest() == ROOT / "models" / "baseline" / "paper-float.json"
    assert bench.default_paper_manifest().is_file()


def test_the_paper_model_passes_the_flash_tools_checks(cfg):
    """Its manifest carried golden data from before the reference faces changed, so
    `model install` refused the paper's model until a technician ran `model golden` on it:
    the baseline must install as it is shipped in the checkout."""
    from edge_app.models import registry

    baseline = ROOT / "models" / "baseline"
    registry.install(baseline / "paper-float.tflite", baseline / "paper-float.json", cfg)
    current = json.loads((registry.models_dir(cfg) / "current.json").read_text())
    assert current["sha256"] == json.loads((baseline / "paper-float.json").read_text())["sha256"]
