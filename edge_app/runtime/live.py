"""The newest annotated frame for the MJPEG viewers, JPEG-encoded only while someone watches."""
from __future__ import annotations

import threading

import cv2
import numpy as np


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
