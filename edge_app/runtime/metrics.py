"""Prometheus metrics of one appliance, and the per-frame samples the benchmark reads.

One ``Metrics`` object per capture loop, each with its own ``CollectorRegistry`` (not the
process-global one), so tests and the benchmark can run several side by side. The loop
records every frame through ``record_frame``; ``/metrics`` renders the registry and
``engage-edge bench`` reads the same observations from ``samples``, so one code path
measures both.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,  # noqa: F401  (re-exported for the web app)
    CollectorRegistry,
    Counter,
    Enum,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)

from edge_app.engagement import ABSENT, GROUPS
from edge_app.runtime.health import CameraState, StoreState

STAGES = ("capture", "detect", "track", "classify", "state", "store")
CAMERA_STATES = list(CameraState)
STORE_STATES = list(StoreState)
# stages take from microseconds (state) to tens of milliseconds (Haar on a full frame)
STAGE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 1.0)
LATENCY_BUCKETS = (0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.5, 1.0, 2.0)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        r = self.registry = registry or CollectorRegistry()
        self.frames = Counter("engage_frames_captured", "Frames read from the camera and processed", registry=r)
        self.dropped = Counter("engage_frames_dropped",
                               "Frames the camera produced while the loop was busy (dropped, never queued)", registry=r)
        self.frame_errors = Counter("engage_frame_errors", "Frames whose processing raised (the loop went on)", registry=r)
        self.camera_faults = Counter("engage_camera_faults", "Camera faults (error, empty frame, read timeout)", registry=r)
        self.store_failures = Counter("engage_store_write_failures", "Database writes that failed and were retried", registry=r)
        self.store_lost = Counter("engage_store_rows_lost", "Rows dropped because the write backlog was full", registry=r)
        self.store_rejected = Counter("engage_store_rows_rejected", "Rows SQLite refused for good (constraint, type, "
                                      "size), set aside so logging goes on", registry=r)
        self.stage = Histogram("engage_stage_seconds", "Time per frame in each pipeline stage", ["stage"],
                               buckets=STAGE_BUCKETS, registry=r)
        self.inference = Histogram("engage_inference_seconds", "Emotion CNN inference time per face",
                                   buckets=STAGE_BUCKETS, registry=r)
        self.latency = Histogram("engage_capture_to_led_seconds",
                                 "From a frame leaving the camera to its state on the LED", buckets=LATENCY_BUCKETS, registry=r)
        self.fps = Gauge("engage_fps", "Frames per second over the last two seconds", registry=r)
        self.faces = Gauge("engage_faces", "Faces tracked in the latest frame", registry=r)
        self.pending_writes = Gauge("engage_store_pending_rows", "Rows waiting to be written", registry=r)
        self.state = Enum("engage_state", "Current engagement state (LED group)", states=list(GROUPS), registry=r)
        self.camera = Enum("engage_camera_status", "Camera status", states=CAMERA_STATES, registry=r)
        self.store = Enum("engage_store_status", "Logging status", states=STORE_STATES, registry=r)
        self.model = Info("engage_model", "The emotion model in use", registry=r)
        self.disk_free = Gauge("engage_disk_free_bytes", "Free space where the database lives", registry=r)
        self._stage_children = {s: self.stage.labels(s) for s in STAGES}
        self.camera.state(CameraState.STARTING)
        self.state.state(ABSENT)
        self.samples: dict[str, list[float]] | None = None

    # ------------------------------------------------------------ set-up
    def watch_disk(self, path: Path | str) -> None:
        """Report the free space of ``path`` at every scrape (nothing runs between scrapes)."""
        path = str(path)

        def free() -> float:
            try:
                return float(shutil.disk_usage(path).free)
            except OSError:
                return float("nan")

        self.disk_free.set_function(free)

    def set_model(self, manifest) -> None:
        raw = getattr(manifest, "raw", {}) or {}
        self.model.info({
            "sha256": str(manifest.sha256),
            "version": str(raw.get("version", "") or ""),
            "file": Path(manifest.model_path).name,
            "architecture": str(raw.get("architecture", "") or ""),
        })

    def keep_samples(self) -> dict[str, list[float]]:
        """Also keep every observation in memory (the benchmark; never on the device); returns
        the lists that fill up."""
        self.samples = {name: [] for name in (*STAGES, "frame", "inference", "latency")}
        return self.samples

    # ------------------------------------------------------------ per frame
    def record_frame(self, stage_s: dict[str, float], frame_s: float, latency_s: float, inference_s: float | None) -> None:
        """One processed frame: seconds per stage, the whole frame, capture to LED, inference."""
        self.frames.inc()
        for name, seconds in stage_s.items():
            self._stage_children[name].observe(seconds)
        self.latency.observe(latency_s)
        if inference_s is not None:
            self.inference.observe(inference_s)
        s = self.samples
        if s is not None:
            for name, seconds in stage_s.items():
                s[name].append(seconds)
            s["frame"].append(frame_s)
            s["latency"].append(latency_s)
            if inference_s is not None:
                s["inference"].append(inference_s)

    def render(self) -> bytes:
        """The Prometheus text exposition of this registry."""
        return generate_latest(self.registry)
