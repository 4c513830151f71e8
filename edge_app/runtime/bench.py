"""``engage-edge bench``: the capture-to-state pipeline, ours against the paper's design.

Both configurations run the real ``CaptureLoop`` (read, detect/track, classify, state,
LED, store) headless on the same clip, one after the other, and every figure comes from
the loop's own ``Metrics`` (the ones ``/metrics`` shows):

* ``paper``: Haar (``detector.backend = "haar"``) on every full-resolution frame, the paper's CNN in float on the face
  (``models/baseline/paper-float.tflite``);
* ``edge``: ours, as configured: the learned detector (BlazeFace) by default, tracking between
  detections, preallocated buffers, the int8 model, one inference thread.

Emotion agreement: the label edge gives each face it classifies, against our int8 model
on the (aligned) crop that edge's detector gives when it searches the whole of that same
frame, so tracking and region-only detection are shown not to cost accuracy.

The default clip is rendered from the demo source (not paced) into a raw temporary file
that is memory-mapped, so "capture" costs what a camera's buffer hand-over costs and
never a video decode. Timing figures depend on the machine and its load: they are
reported, never asserted.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge_app import config as config_mod
from edge_app.config import Config
from edge_app.device.indicators import NullIndicator
from edge_app.runtime.capture import CaptureLoop
from edge_app.runtime.metrics import STAGES, Metrics
from edge_app.store.database import Store
from edge_app.vision.align import aligned_crop
from edge_app.vision.classifier import EmotionClassifier, ModelError, crop_face
from edge_app.vision.detector import Face, detector_from_config
from edge_app.vision.sources import CameraError, DemoSource, FrameSource, OpenCVSource

ROOT = Path(__file__).resolve().parents[2]
PAPER_RELATIVE = Path("models") / "baseline" / "paper-float.json"
PAPER_MANIFEST = ROOT / PAPER_RELATIVE  # in a checkout (editable install); a wheel does not carry it
PAPER_HINT = (
    "run the bench from a checkout of the repository (the paper's model is a development file in "
    "models/baseline/, not part of the device install) or pass --paper-manifest FILE; "
    "without a checkout, train it briefly and export it in float, then run the bench again:\n"
    "  python -m training.train --arch paper --out ~/runs/paper --epochs 5\n"
    "  python -m training.quantize --float ~/runs/paper/best.keras --out models/baseline/paper-float.tflite"
    "\n(that also writes models/baseline/paper-float.json, the manifest the bench reads)"
)
DEFAULT_FRAMES = 450
CLIP_FPS = 15
CLIP_START_S = 5.0  # the demo timeline from 5 s: Grace Hopper, the astronaut, the picked faces, a profile


def default_paper_manifest() -> Path:
    """The paper's float model: beside the package when it runs from a checkout, else in
    the checkout the bench is run from (an installed wheel); the caller says when missing."""
    in_checkout = (ROOT / "setup.py").is_file() and (ROOT / "edge_app").is_dir()
    return PAPER_MANIFEST if in_checkout else Path.cwd() / PAPER_RELATIVE


class ClipSource(FrameSource):
    """Frames of a memory-mapped raw clip, handed out as views (no copy), in order."""

    name = "clip"

    def __init__(self, frames: np.ndarray, fps: float = CLIP_FPS):
        self.frames, self.fps, self.index = frames, fps, 0

    def read(self) -> np.ndarray:
        frame = self.frames[self.index % len(self.frames)]
        self.index += 1
        return frame


def make_clip(directory: Path, frames: int, clip: Path | None = None, width: int = 640, height: int = 480) -> tuple[np.ndarray, dict]:
    """Write ``frames`` frames (from ``clip``, or the demo source) to a raw memory-mapped file."""
    if clip is not None:
        src: FrameSource = OpenCVSource(str(clip), width, height, loop=False)
        try:
            src.open()
            first = src.read()
        except CameraError as exc:
            raise SystemExit(f"error: bench: cannot read the clip: {exc}") from None
        height, width = first.shape[:2]
        about: dict[str, Any] = {"source": str(clip)}
    else:
        src = DemoSource(width, height, CLIP_FPS, realtime=False, start_s=CLIP_START_S)
        first = src.read()
        about = {"source": "demo", "start_s": CLIP_START_S, "fps": CLIP_FPS}
    data = np.lib.format.open_memmap(directory / "clip.npy", "w+", np.uint8, (frames, height, width, 3))
    data[0] = first
    n = 1
    while n < frames:
        try:
            frame = src.read()
        except CameraError:
            break  # the end of a video file
        data[n] = frame if frame.ndim == 3 else cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
        n += 1
    src.close()
    data.flush()
    if n < 2:  # a photo: no time per frame, spread or p99 to measure
        raise SystemExit(f"error: bench: {clip} holds {n} frame: give a recorded video of at least 2 frames")
    about.update({"frames": n, "width": width, "height": height})
    return data[:n], about


def _percentiles(values: list[float]) -> dict:
    a = np.asarray(values, np.float64) * 1000
    if not a.size:
        return {"p50_ms": None, "p95_ms": None, "p99_ms": None}
    p50, p95, p99 = np.percentile(a, [50, 95, 99])
    return {"p50_ms": round(float(p50), 3), "p95_ms": round(float(p95), 3), "p99_ms": round(float(p99), 3)}


def run_config(name: str, cfg: Config, classifier: EmotionClassifier, frames: np.ndarray, data_dir: Path) -> tuple[dict, list]:
    """Run the capture loop over every frame; returns (summary, per-frame main face)."""
    source = ClipSource(frames)
    metrics = Metrics()
    samples = metrics.keep_samples()
    scene = {"t": 0.0}
    store = Store(data_dir / name)
    loop = CaptureLoop(cfg, source, detector_from_config(cfg), classifier, store, NullIndicator(),
                       clock=lambda: scene["t"], wall=lambda: 1_700_000_000.0 + scene["t"], metrics=metrics)
    per_frame: list = []
    n = len(frames)
    cpu0, t0 = time.process_time(), time.perf_counter()
    for i in range(n):
        scene["t"] = i / CLIP_FPS
        loop.step()
        f = loop.snapshot.faces[0] if loop.snapshot.faces else None
        per_frame.append((tuple(f["box"]), f["emotion"]) if f and f.get("emotion") else None)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    loop.flush()
    loop.stop()
    store.close()
    summary = {
        "frames": n,
        "fps": round(n / wall, 1),
        **_percentiles(samples["frame"]),
        "capture_to_led": _percentiles(samples["latency"]),
        "stage_ms": {st: round(float(np.mean(samples[st])) * 1000, 3) for st in STAGES},
        "inference_ms": round(float(np.mean(samples["inference"])) * 1000, 3) if samples["inference"] else None,
        "cpu_ms_per_frame": round(cpu / n * 1000, 3),
        "cpu_bound_fps": round(n / cpu, 1) if cpu > 0 else None,  # what one free core would give
        "dropped": int(loop.health.dropped),
        "errors": int(loop.health.errors),
        "faces_classified": sum(1 for p in per_frame if p),
        "model": classifier.manifest.model_path.name,
        "detector": {k: getattr(cfg.detector, k) for k in ("backend", "detect_width", "detect_every", "full_detect_every", "profile")},
    }
    return summary, per_frame


def agreement(frames: np.ndarray, edge: list, reference_boxes: list, classifier: EmotionClassifier) -> dict:
    """Edge's emotion labels against our model on a full-frame detection, frame by frame
    (a reference is a ``Face``, cropped aligned, or a bare box)."""
    gray = np.empty(frames.shape[1:3], np.uint8)
    both = same = face_match = 0
    for i, (e, ref) in enumerate(zip(edge, reference_boxes)):
        face_match += (e is not None) == (ref is not None)
        if e is None or ref is None:
            continue
        cv2.cvtColor(frames[i], cv2.COLOR_BGR2GRAY, dst=gray)
        crop = aligned_crop(gray, ref) if isinstance(ref, Face) else crop_face(gray, ref)
        if not crop.size:
            continue
        label = classifier.labels[int(classifier.probabilities(crop).argmax())]
        both += 1
        same += label == e[1]
    return {"emotion": round(same / both, 4) if both else None, "compared": both,
            "face_presence": round(face_match / len(edge), 4) if edge else None}


def full_frame_faces(cfg: Config, frames: np.ndarray) -> list:
    """The main frontal face a whole-frame search with edge's detector finds in each frame."""
    detector = detector_from_config(cfg)
    out = []
    for frame in frames:
        faces = detector.detect(frame)
        out.append(faces[0] if faces and faces[0].kind == "frontal" else None)
    return out


def benchmark(cfg: Config, frames_wanted: int = DEFAULT_FRAMES, clip: Path | None = None,
              paper_manifest: Path = PAPER_MANIFEST, log=print, paper_required: bool = False) -> dict:
    """Both configurations on one clip. Without the paper's model the paper column runs its
    detection with our model, unless ``paper_required`` (a manifest the technician named):
    then its ModelError is raised."""
    cfg = config_mod.with_changes(cfg, {"model.threads": 1, "store.min_free_mb": 0})
    edge_classifier = EmotionClassifier(cfg.model.manifest or None, threads=1)
    paper_classifier, paper_problem = None, ""
    try:
        paper_classifier = EmotionClassifier(paper_manifest, threads=1)
    except ModelError as exc:
        if paper_required:
            raise
        paper_problem = str(exc)
    with tempfile.TemporaryDirectory(prefix="engage-bench-") as tmp:
        frames, about = make_clip(Path(tmp), frames_wanted, clip)
        width = about["width"]
        paper_cfg = config_mod.with_changes(cfg, {"detector.backend": "haar",
                                                  "detector.detect_width": max(80, min(1920, width)),
                                                  "detector.detect_every": 1, "detector.full_detect_every": 1,
                                                  "detector.profile": False})
        log(f"clip: {about['frames']} frames {width}x{about['height']} from {about['source']}")
        log("running edge ...")
        edge, edge_faces = run_config("edge", cfg, edge_classifier, frames, Path(tmp))
        label = "paper" if paper_classifier else "reference (paper's detection, our int8 CNN)"
        log(f"running {label} ...")
        paper, _ = run_config("paper", paper_cfg, paper_classifier or edge_classifier, frames, Path(tmp))
        agree = agreement(frames, edge_faces, full_frame_faces(cfg, frames), edge_classifier)
        del frames
    result: dict[str, Any] = {"clip": about, "edge": edge, "agreement": agree,
              "machine": {"cpus": os.cpu_count(), "loadavg_1m": round(os.getloadavg()[0], 2)}}
    if paper_classifier:
        result["paper"] = paper
        result["speedup"] = round(edge["fps"] / paper["fps"], 2) if paper["fps"] else None
    else:
        result["paper"] = {"available": False, "fps": None, "p99_ms": None, "missing": str(paper_manifest),
                           "problem": paper_problem, "hint": PAPER_HINT}
        result["reference"] = paper
        result["speedup"] = None
        result["speedup_vs_reference"] = round(edge["fps"] / paper["fps"], 2) if paper["fps"] else None
    result["targets"] = {"edge_fps_min": 150, "speedup_min": 5,
                         "edge_fps_met": edge["fps"] >= 150,
                         "speedup_met": None if result["speedup"] is None else result["speedup"] >= 5}
    return result


def format_table(r: dict) -> str:
    cols = [("edge", r["edge"])]
    if r["paper"].get("available", True):
        cols.append(("paper", r["paper"]))
    else:
        cols.append(("reference*", r["reference"]))
    lines = [f"clip: {r['clip']['frames']} frames {r['clip']['width']}x{r['clip']['height']} ({r['clip']['source']}); "
             f"{r['machine']['cpus']} CPUs, load {r['machine']['loadavg_1m']}"]
    head = f"{'':<28}" + "".join(f"{name:>14}" for name, _ in cols)
    lines.append(head)

    def row(label, get):
        vals = []
        for _, c in cols:
            v = get(c)
            vals.append(f"{'-' if v is None else v:>14}")
        lines.append(f"{label:<28}" + "".join(vals))

    row("frames per second", lambda c: c["fps"])
    for p in ("p50_ms", "p95_ms", "p99_ms"):
        row(f"frame latency {p[:3]} (ms)", lambda c, p=p: c[p])
    row("capture->LED p99 (ms)", lambda c: c["capture_to_led"]["p99_ms"])
    for st in STAGES:
        row(f"  {st} (ms/frame)", lambda c, st=st: c["stage_ms"][st])
    row("inference (ms/face)", lambda c: c["inference_ms"])
    row("CPU time (ms/frame)", lambda c: c["cpu_ms_per_frame"])
    row("FPS by CPU time", lambda c: c["cpu_bound_fps"])
    row("faces classified", lambda c: c["faces_classified"])
    row("frames dropped", lambda c: c["dropped"])
    a = r["agreement"]
    lines.append(f"speedup edge/paper: {r['speedup'] if r['speedup'] is not None else '-'}"
                 + (f" (edge/reference: {r.get('speedup_vs_reference')})" if "reference" in r else ""))
    emotion = "-" if a["emotion"] is None else f"{a['emotion']:.1%}"
    lines.append(f"emotion agreement, edge vs detection on every full frame: {emotion} of {a['compared']} faces; "
                 f"face presence agrees on {a['face_presence']:.1%} of frames")
    if not r["paper"].get("available", True):
        lines.append(f"* the paper's model is missing ({r['paper']['missing']}): the paper column shows its detection "
                     f"design with our int8 CNN instead. To compare with the paper's float CNN, {r['paper']['hint']}")
    return "\n".join(lines)


def main(args) -> int:
    cfg = config_mod.load(getattr(args, "config", None))
    quiet = (lambda *a, **k: None) if args.json else (lambda *a, **k: print(*a, file=sys.stderr, **k))
    if args.frames < 2:
        print("error: bench: --frames must be at least 2", file=sys.stderr)
        return 2
    if args.clip is not None and not Path(args.clip).is_file():
        print(f"error: bench: the clip {args.clip} {'is not a file' if Path(args.clip).exists() else 'does not exist'}:"
              " give a recorded video", file=sys.stderr)
        return 2
    named = getattr(args, "paper_manifest", None)
    paper_manifest = Path(named) if named else default_paper_manifest()
    if named and not paper_manifest.is_file():  # only the default's absence (a device install) falls back
        print(f"error: bench: the paper's model manifest {paper_manifest} "
              f"{'is not a file' if paper_manifest.exists() else 'does not exist'}: check the path, or leave out "
              f"--paper-manifest to use {default_paper_manifest()}", file=sys.stderr)
        return 2
    if not paper_manifest.is_file() and not args.json:
        print(f"note: the paper's float model {paper_manifest} is missing; running edge and the paper's detection "
              f"with our model. To add it, {PAPER_HINT}", file=sys.stderr)
    result = benchmark(cfg, args.frames, args.clip, paper_manifest, log=quiet, paper_required=bool(named))
    print(json.dumps(result, indent=2) if args.json else format_table(result))
    return 0
