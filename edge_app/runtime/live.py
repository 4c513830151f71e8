"""The newest annotated frame for the MJPEG viewers, JPEG-encoded only while someone watches.

While the camera is faulted no frames come, and a stream that writes nothing never learns
that its viewer closed the tab: its viewer slot and web worker thread would be held for
good. So the stream sends a placeholder (a grey "camera unavailable" frame, no image
from the camera) every ``placeholder_every_s``; writing to a closed connection raises and
the stream ends, freeing both.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import cv2
import numpy as np

from edge_app.runtime.health import CameraState

PLACEHOLDER_GREY = 96


class LiveFrame:
    """The newest annotated frame for MJPEG viewers; encodes JPEG only on demand."""

    def __init__(self, quality: int = 75, placeholder_every_s: float = 2.0):
        self.quality = quality
        self.placeholder_every_s = placeholder_every_s
        self._cond = threading.Condition()
        self._frame: np.ndarray | None = None
        self._seq = 0
        self._jpeg: tuple[int, bytes] | None = None
        self._placeholders: dict[tuple, bytes] = {}
        self._size = (480, 640)  # the last frame's height and width, for a placeholder of its size
        self._viewers = 0
        self.closed = False  # set at shutdown: the streams end instead of holding the web server's stop

    def close(self) -> None:
        """End every MJPEG stream now (the service stops): each would otherwise run until the
        web server cut its connection, up to ``shutdown_timeout`` into the stop."""
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def wanted(self) -> bool:
        return self._viewers > 0

    @property
    def viewers(self) -> int:
        return self._viewers

    @viewers.setter
    def viewers(self, count: int) -> None:
        """How many streams are open (``web.live.ViewerSlots``). With none, the last frame goes:
        it stayed in memory and was the next viewer's first, hours later (a student who had
        left, or one filmed just before pressing Pause)."""
        with self._cond:
            self._viewers = count
            if count <= 0:
                self._frame, self._jpeg = None, None

    @property
    def seq(self) -> int:
        """The number of the newest published frame (0: none yet)."""
        return self._seq

    def publish(self, frame: np.ndarray) -> None:
        with self._cond:
            if self._viewers <= 0:  # the last viewer left while the loop annotated it
                return
            self._frame, self._size = frame, frame.shape[:2]
            self._seq += 1
            self._cond.notify_all()

    def jpeg(self, after_seq: int = 0, timeout: float = 2.0) -> tuple[int, bytes] | None:
        """Wait for a frame newer than ``after_seq``; returns (seq, JPEG bytes) or None."""
        with self._cond:
            if not self._cond.wait_for(lambda: self.closed or (self._seq > after_seq and self._frame is not None),
                                       timeout) or self.closed:
                return None
            seq, frame = self._seq, self._frame
            cached = self._jpeg
        assert frame is not None  # wait_for checked it
        if cached and cached[0] == seq:
            return cached
        ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            return None
        encoded = (seq, buf.tobytes())
        with self._cond:  # kept only while watched: the last viewer may have left during the encoding
            if self._viewers > 0 and self._seq == seq:
                self._jpeg = encoded
        return encoded

    def placeholder(self, status: str) -> bytes:
        """A grey JPEG saying the camera is unavailable and why (``status``), the size of
        the last frame; made once per size and status."""
        h, w = self._size
        key = (h, w, status)
        if key not in self._placeholders:
            img = np.full((h, w, 3), PLACEHOLDER_GREY, np.uint8)
            scale = max(0.5, w / 640)
            headline = "camera paused" if status == CameraState.PAUSED else "camera unavailable"
            for text, y, size in ((headline, 0.45, 1.0), (status, 0.58, 0.7)):
                (tw, _), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, size * scale, 2)
                cv2.putText(img, text, ((w - tw) // 2, int(h * y)), cv2.FONT_HERSHEY_SIMPLEX, size * scale,
                            (235, 235, 235), 2, cv2.LINE_AA)
            ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
            if not ok:  # pragma: no cover - encoding a plain grey frame cannot fail
                raise RuntimeError("could not encode the live-view placeholder")
            self._placeholders[key] = buf.tobytes()
        return self._placeholders[key]


def _part(jpeg: bytes) -> bytes:
    return (b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: " + str(len(jpeg)).encode()
            + b"\r\n\r\n" + jpeg + b"\r\n")


def mjpeg_stream(live: LiveFrame, camera: Callable[[], str], fps: float, stall_s: float = 5.0) -> Iterator[bytes]:
    """multipart/x-mixed-replace parts (boundary ``frame``): the newest frame at most ``fps``
    times a second; while ``camera()`` is not "ok", a placeholder every
    ``live.placeholder_every_s`` (at once for a viewer who arrives during a fault). Ends
    when the camera is ok yet no frame came for ``stall_s`` (the loop has stopped), or at
    once when ``live`` is closed (the service stops)."""
    interval = 1.0 / fps
    # a frame published after the stream opened, never one from before: it may show who sat there then
    seq, sent = live.seq, 0.0
    last_frame = time.monotonic()
    wait = live.placeholder_every_s
    if camera() != CameraState.OK:
        wait = 0.0  # say why at once
    while not live.closed:
        got = live.jpeg(seq, timeout=wait)
        if live.closed:
            return
        wait = live.placeholder_every_s
        status = camera()
        if got is not None:
            seq, jpeg = got
            last_frame = time.monotonic()
        elif status != CameraState.OK:
            jpeg = live.placeholder(status)
        elif time.monotonic() - last_frame > stall_s:
            return
        else:
            continue
        yield _part(jpeg)
        pause = interval - (time.monotonic() - sent)
        if pause > 0:
            time.sleep(pause)  # pacing to web.stream_fps, not synchronisation
        sent = time.monotonic()
