"""What the capture loop reports about itself: camera, store, frame rate, faces."""
from __future__ import annotations

import enum
from dataclasses import dataclass


class CameraState(enum.StrEnum):
    """The camera as the loop sees it (shown in /healthz, /api/state and metrics as its text)."""

    STARTING = "starting"
    OK = "ok"
    FAULT = "fault"
    PAUSED = "paused"  # the student's privacy switch: released on purpose, not a fault
    STOPPED = "stopped"


class StoreState(enum.StrEnum):
    """Whether the loop's log writes reach the database, and if not why."""

    OK = "ok"
    DISK_FULL = "disk full"
    LOCKED = "locked"
    ERROR = "error"


@dataclass
class Health:
    camera: CameraState = CameraState.STARTING
    camera_error: str = ""
    camera_faults: int = 0
    store: StoreState = StoreState.OK
    store_error: str = ""
    pending_writes: int = 0
    fps: float = 0.0
    frames: int = 0
    dropped: int = 0
    errors: int = 0
    faces: int = 0
    last_frame: float = 0.0  # time.monotonic() at the latest frame (0: none yet)
