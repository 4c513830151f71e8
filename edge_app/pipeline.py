"""The capture loop: camera -> faces -> emotions -> engagement -> LED/buzzer -> store.

It runs in one thread and never queues frames: each iteration takes the newest frame,
so a slow stage drops frames instead of adding latency. Camera faults are caught,
reported (health, LED fault pattern, log) and retried with exponential back-off; the
loop continues when the camera returns. JPEG encoding for the live page happens only
while someone watches (``LiveFrame``).
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

import cv2
import numpy as np

from edge_app.analysis import draw_faces
from edge_app.camera import CameraError, FrameSource
from edge_app.classifier import EmotionClassifier, crop_face
from edge_app.detector import Face, FaceDetector
from edge_app.engagement import EngagementState, EngagementTracker, MinuteAggregator, Observation
from edge_app.indicators import BuzzerPolicy, Indicator
from edge_app.store import Store

log = logging.getLogger(__name__)
STAGES = ("capture", "detect", "classify", "track", "state", "store")


class LiveFrame:
    """The newest annotated frame for MJPEG viewers; encodes JPEG only on demand."""

    def __init__(self, quality: int = 75):
        self.quality = quality
        self._cond = threading.Condition()
        self._frame: np.ndarray | None = None
        self._seq = 0
        self._jpeg: tuple[int, bytes] | None = None
        self.viewers = 0

    def wanted(self) -> bool:
        return self.viewers > 0

    def publish(self, frame: np.ndarray) -> None:
        with self._cond:
            self._frame = frame
            self._seq += 1
            self._cond.notify_all()

    def jpeg(self, after_seq: int = 0, timeout: float = 2.0) -> tuple[int, bytes] | None:
        """Wait for a frame newer than ``after_seq``; returns (seq, JPEG bytes) or None."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._seq > after_seq and self._frame is not None, timeout):
                return None
            seq, frame = self._seq, self._frame
            cached = self._jpeg
        if cached and cached[0] == seq:
            return cached
        ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            return None
        self._jpeg = (seq, buf.tobytes())
        return self._jpeg


@dataclass
class Health:
    camera: str = "starting"  # "ok", "fault", "starting", "stopped"
    camera_error: str = ""
    store: str = "ok"  # "ok", "disk full", "error"
    store_error: str = ""
    fps: float = 0.0
    frames: int = 0
    dropped: int = 0
    faces: int = 0
    started: float = field(default_factory=time.time)
    last_frame: float = 0.0
    stage_ms: dict = field(default_factory=dict)


class CaptureLoop:
    def __init__(self, cfg: dict, source: FrameSource, detector: FaceDetector, classifier: EmotionClassifier,
                 store: Store | None, indicator: Indicator, live: LiveFrame | None = None,
                 clock=time.monotonic, wall=time.time, on_frame=None):
        self.cfg, self.source, self.detector, self.classifier = cfg, source, detector, classifier
        self.store, self.indicator = store, indicator
        self.live = live or LiveFrame()
        self.clock, self.wall = clock, wall
        self.on_frame = on_frame  # e.g. the systemd watchdog ping: called only while frames flow
        self.tracker = EngagementTracker.from_config(cfg, classifier.labels, start=clock())
        self.buzzer = BuzzerPolicy.from_config(cfg)
        self.minutes = MinuteAggregator()
        self.health = Health()
        self.detect_every = cfg["detector"]["detect_every"]
        self._boxes: list[Face] = []
        self._frame_no = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._fps_window: list[float] = []
        self.state_lock = threading.Lock()
        self.last_faces: list[dict] = []

    # ------------------------------------------------------------ one frame
    def process(self, frame: np.ndarray, now: float | None = None) -> tuple[EngagementState, bool]:
        """Run every stage after capture on one frame; returns (state, changed)."""
        now = self.clock() if now is None else now
        timings = self.health.stage_ms
        t0 = time.perf_counter()
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        if self._frame_no % self.detect_every == 0 or not self._boxes:
            self._boxes = self.detector.detect(gray)
        self._frame_no += 1
        t1 = time.perf_counter()
        faces: list[dict] = []
        main = self._boxes[0] if self._boxes else None
        probs = None
        if main is not None and main.kind == "frontal":
            crop = crop_face(gray, main.box)
            if crop.size:
                probs = self.classifier.probabilities(crop)
                i = int(probs.argmax())
                faces.append({"box": list(main.box), "emotion": self.classifier.labels[i], "confidence": float(probs[i])})
        elif main is not None:
            faces.append({"box": list(main.box), "emotion": None, "confidence": 0.0, "engagement": "Distracted"})
        t2 = time.perf_counter()
        obs = Observation(now, main.kind if main else None, probs)
        t3 = time.perf_counter()
        with self.state_lock:
            state, changed = self.tracker.update(obs)
            self.last_faces = faces
        for f in faces:
            f.setdefault("engagement", state.level)
        self.indicator.show(state.group)
        if self.buzzer.should_sound(now, state.group, state.since):
            self.indicator.beep()
            self._log(lambda s: s.log_alert(self.wall(), state.level))
        t4 = time.perf_counter()
        if changed:
            self._log(lambda s: s.log_state_change(self.wall(), state.level, state.group, state.emotion, state.confidence))
        row = self.minutes.add(self.wall(), state.group, main is not None)
        if row:
            self._log(lambda s: s.log_minute(row))
        t5 = time.perf_counter()
        if self.live.wanted():
            self.live.publish(self._annotate(frame, faces, state))
        for name, a, b in (("detect", t0, t1), ("classify", t1, t2), ("track", t2, t3), ("state", t3, t4), ("store", t4, t5)):
            timings[name] = (b - a) * 1000
        self.health.faces = len(self._boxes)
        return state, changed

    def _annotate(self, frame: np.ndarray, faces: list[dict], state: EngagementState) -> np.ndarray:
        out = draw_faces(frame, faces)
        cv2.putText(out, state.level, (10, out.shape[0] - 12), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 4, cv2.LINE_AA)
        cv2.putText(out, state.level, (10, out.shape[0] - 12), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1, cv2.LINE_AA)
        return out

    def _log(self, write) -> None:
        """Write to the store; a full disk or locked database pauses logging, never the loop."""
        if self.store is None:
            return
        try:
            if self.store.free_mb() < self.cfg["store"]["min_free_mb"]:
                self.health.store, self.health.store_error = "disk full", f"less than {self.cfg['store']['min_free_mb']} MB free"
                return
            write(self.store)
            self.health.store, self.health.store_error = "ok", ""
        except Exception as exc:  # sqlite3.OperationalError (locked, disk I/O, full) and OSError
            self.health.store, self.health.store_error = "error", str(exc)
            log.warning("logging paused: %s", exc)

    # ------------------------------------------------------------ the thread
    def run(self) -> None:
        backoff = self.cfg["camera"]["retry_initial_s"]
        while not self._stop.is_set():
            try:
                t0 = time.perf_counter()
                frame = self.source.read()
                self.health.stage_ms["capture"] = (time.perf_counter() - t0) * 1000
            except CameraError as exc:
                self._camera_fault(str(exc))
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.cfg["camera"]["retry_max_s"])
                continue
            except Exception as exc:  # a driver raising something unexpected is still a camera fault
                self._camera_fault(f"{type(exc).__name__}: {exc}")
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.cfg["camera"]["retry_max_s"])
                continue
            if self.health.camera != "ok":
                if self.health.camera == "fault":
                    log.info("camera is back")
                self.health.camera, self.health.camera_error = "ok", ""
                self.indicator.fault(False)
            backoff = self.cfg["camera"]["retry_initial_s"]
            self.process(frame)
            self._count_frame()
            if self.on_frame:
                self.on_frame()
        self.flush()

    def _camera_fault(self, reason: str) -> None:
        if self.health.camera != "fault":
            log.error("camera fault: %s", reason)
        self.health.camera, self.health.camera_error = "fault", reason
        self.indicator.fault(True, reason)
        try:
            self.source.close()
        except Exception:
            pass

    def _count_frame(self) -> None:
        now = time.monotonic()
        self.health.frames += 1
        self.health.last_frame = time.time()
        self._fps_window.append(now)
        while self._fps_window and now - self._fps_window[0] > 2.0:
            self._fps_window.pop(0)
        if len(self._fps_window) > 1:
            self.health.fps = (len(self._fps_window) - 1) / (self._fps_window[-1] - self._fps_window[0])

    def flush(self) -> None:
        row = self.minutes.flush()
        if row:
            self._log(lambda s: s.log_minute(row))

    def start(self) -> "CaptureLoop":
        self._thread = threading.Thread(target=self.run, name="capture-loop", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout)
        self.health.camera = "stopped"
        try:
            self.source.close()
        except Exception:
            pass

    @property
    def state(self) -> EngagementState:
        with self.state_lock:
            return self.tracker.state
