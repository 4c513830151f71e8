"""What the capture loop reports about itself: camera, store, frame rate, faces."""
from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class Health:
    camera: str = "starting"  # "ok", "fault", "starting", "stopped"
    camera_error: str = ""
    camera_faults: int = 0
    store: str = "ok"  # "ok", "disk full", "locked", "error"
    store_error: str = ""
    pending_writes: int = 0
    fps: float = 0.0
    frames: int = 0
    dropped: int = 0
    errors: int = 0
    faces: int = 0
    started: float = field(default_factory=time.time)
    last_frame: float = 0.0
    stage_ms: dict = field(default_factory=dict)
