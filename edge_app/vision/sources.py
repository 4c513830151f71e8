"""Camera sources behind one interface: ``open()``, ``read() -> BGR frame``, ``close()``.

``read()`` returns a (H, W, 3) uint8 BGR array or raises ``CameraError``; the capture loop
owns retries and back-off, so a source only has to report faults clearly.
"""
from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import cv2
import numpy as np

from edge_app.config import Config
from edge_app.vision.demo import DemoScene


class CameraError(RuntimeError):
    """The camera could not be opened or stopped giving frames; the message says why.
    ``lasting``: it cannot come right by itself (a video file that does not exist, picamera2
    not installed): the start fails with it instead of waiting for a camera to appear."""

    def __init__(self, message: str, lasting: bool = False):
        super().__init__(message)
        self.lasting = lasting


class Picamera2Missing(CameraError):
    """picamera2 is not installed (not: installed and broken): a USB camera may still serve."""

    def __init__(self) -> None:
        super().__init__("picamera2 is not installed: on Raspberry Pi OS run `sudo apt install python3-picamera2` "
                         "and create the venv with --system-site-packages (firmware/install.sh does both)", lasting=True)


def import_picamera2():
    """picamera2's ``Picamera2`` class, or a lasting CameraError that names why it cannot be
    imported. Apt's picamera2 imports apt's simplejpeg, built against apt's numpy: a numpy 2
    in the venv makes that import raise ``ValueError: numpy.dtype size changed``, which was
    read as "no camera" (or, with --source picamera2, a traceback)."""
    try:
        from picamera2 import Picamera2
    except ImportError as exc:
        if getattr(exc, "name", None) == "picamera2":
            raise Picamera2Missing() from None
        raise CameraError(f"picamera2 is installed but cannot be imported ({type(exc).__name__}: {exc}): "
                          "reinstall it with `sudo apt install --reinstall python3-picamera2`", lasting=True) from None
    except Exception as exc:
        hint = (": the venv's numpy is not the one apt's picamera2 was built for; install numpy<2 in the venv "
                "(`/opt/engage-edge/venv/bin/pip install 'numpy<2'`)" if "numpy" in str(exc) else "")
        raise CameraError(f"picamera2 is installed but cannot be imported ({type(exc).__name__}: {exc}){hint}",
                          lasting=True) from None
    return Picamera2


class FrameSource:
    """Base class: a source of BGR frames."""

    name = "source"
    dropped = 0  # frames the camera produced that nobody read (a live source counts them)

    def open(self) -> None:
        """Acquire the device; raise CameraError with a fix-it message on failure."""

    def read(self) -> np.ndarray:
        raise NotImplementedError

    def close(self) -> None:
        """Release the device; safe to call twice."""

    def __enter__(self):
        self.open()
        return self

    def __exit__(self, *exc):
        self.close()


class DemoSource(FrameSource):
    """The built-in animated scene (see ``edge_app.vision.demo``).

    ``realtime`` paces frames to ``fps`` on the wall clock; otherwise frame ``i`` shows
    time ``i / fps`` as fast as it is read (benchmarks, tests).
    """

    name = "demo"

    def __init__(self, width=640, height=480, fps=15, realtime=True, face_picks=None, start_s=0.0):
        self.scene = DemoScene(width, height, face_picks)
        self.fps, self.realtime, self.start_s = fps, realtime, start_s
        self._index = 0
        self._t0 = None
        self._next = 0.0

    def open(self) -> None:
        self._t0 = time.monotonic()
        self._next = self._t0

    def scene_time(self) -> float:
        if self.realtime:
            return self.start_s + time.monotonic() - (self._t0 or time.monotonic())
        return self.start_s + self._index / self.fps

    def read(self) -> np.ndarray:
        if self._t0 is None:
            self.open()
        if self.realtime:
            delay = self._next - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            elif delay < -1.0 / self.fps:  # the reader was late: frames went by unread (dropped, not queued)
                self.dropped += int(-delay * self.fps)
            self._next = max(self._next + 1.0 / self.fps, time.monotonic() - 1.0 / self.fps)
        frame = self.scene.render(self.scene_time())
        self._index += 1
        return frame


class OpenCVSource(FrameSource):
    """A V4L2 device index, a video file, a stream URL or a GStreamer pipeline.

    ``realtime`` plays a video file at its own frame rate on the wall clock (``fps`` when
    the file names none), as a camera would give it: the state's timing (``min_hold_s``,
    ``absent_after_s``) is the recording's, and frames a slow reader missed are skipped,
    not queued. Without it a file is read as fast as it decodes (the benchmark's clip).
    """

    def __init__(self, spec: str, width=640, height=480, fps=15, loop=True, realtime=False):
        self.spec, self.width, self.height, self.fps, self.loop = spec, width, height, fps, loop
        self.realtime = realtime
        self.rate = float(fps)  # a file's own frame rate once opened
        self._next: float | None = None
        self.cap: cv2.VideoCapture | None = None
        self.is_device = spec.startswith("/dev/")  # e.g. /dev/video0: a camera, not a file
        self.is_file = not spec.isdigit() and "!" not in spec and "://" not in spec and not self.is_device
        self.name = f"opencv:{spec}"
        self.ended = False  # a file played to its end with loop off

    def _ended_text(self) -> str:
        return f"the video file {self.spec} has ended (camera.loop = false: it is played once)"

    def open(self) -> None:
        if self.ended:  # the capture loop's retry reopens a failed source: an ended file stays ended
            raise CameraError(self._ended_text())
        if self.spec.isdigit():
            index = int(self.spec)
            if not Path(f"/dev/video{index}").exists():
                raise CameraError(
                    f"no camera at /dev/video{index}: plug in a USB camera (check `ls /dev/video*`), "
                    "or run with --source demo"
                )
            cap = self._camera(cv2.VideoCapture(index, cv2.CAP_V4L2))
        elif "!" in self.spec:
            cap = cv2.VideoCapture(self.spec, cv2.CAP_GSTREAMER)
        elif self.is_device:  # /dev/video0 is the camera "0" is: the same settings (it was opened without them)
            if not Path(self.spec).exists():
                raise CameraError(f"no camera at {self.spec}: plug in a USB camera (check `ls /dev/video*`), "
                                  "or run with --source demo")
            cap = self._camera(cv2.VideoCapture(self.spec, cv2.CAP_V4L2))
        else:
            if self.is_file and not Path(self.spec).is_file():
                raise CameraError(f"video file {self.spec} does not exist", lasting=True)
            cap = cv2.VideoCapture(self.spec)
        if not cap.isOpened():
            cap.release()
            hint = " (is OpenCV built with GStreamer? `python -c 'import cv2; print(cv2.getBuildInformation())'`)" if "!" in self.spec else ""
            raise CameraError(f"cannot open video source {self.spec!r}{hint}")
        self.cap = cap
        if self.is_file:
            own = cap.get(cv2.CAP_PROP_FPS)
            self.rate = own if 0 < own <= 240 else float(self.fps)  # 0 or nonsense: the file does not say
            self._next = None

    def _camera(self, cap: cv2.VideoCapture) -> cv2.VideoCapture:
        """A camera asked for the configured size and rate, and for the newest frame only."""
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        cap.set(cv2.CAP_PROP_FPS, self.fps)
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the newest frame, not a queue of old ones (latency)
        return cap

    def read(self) -> np.ndarray:
        if self.cap is None:
            self.open()
        cap = self.cap
        assert cap is not None  # open() sets it or raises CameraError
        if self.is_file and self.realtime:
            self._pace(cap)
        ok, frame = cap.read()
        if not ok and self.is_file and self.loop:
            cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, frame = cap.read()
        elif not ok and self.is_file:
            self.ended = True
            raise CameraError(self._ended_text())
        if not ok or frame is None or frame.size == 0:
            raise CameraError(f"video source {self.spec!r} gave no frame")
        if frame.ndim == 2:
            frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
        return frame

    def _pace(self, cap: cv2.VideoCapture) -> None:
        """Wait for this frame's time; when the reader is late, skip the frames that went by."""
        period, now = 1.0 / self.rate, time.monotonic()
        if self._next is None:  # the first frame: the recording starts now, not when it was opened
            self._next = now
        late = now - self._next
        if late < 0:
            time.sleep(-late)
        elif late >= period:
            skip = int(late / period)
            for _ in range(skip):
                if not cap.grab():  # the end of the file: read() loops or ends it
                    break
            self.dropped += skip
            self._next += skip * period
        self._next += period

    def close(self) -> None:
        if self.cap is not None:
            self.cap.release()
            self.cap = None


class Picamera2Source(FrameSource):
    """The Raspberry Pi camera through picamera2 (apt package ``python3-picamera2``)."""

    name = "picamera2"

    def __init__(self, width=640, height=480, fps=15):
        self.width, self.height, self.fps = width, height, fps
        self.cam = None

    def open(self) -> None:
        Picamera2 = import_picamera2()
        try:
            if not Picamera2.global_camera_info():
                raise CameraError("no Raspberry Pi camera detected: check the ribbon cable and `rpicam-hello --list-cameras`")
            cam = Picamera2()
        except CameraError:
            raise
        except Exception as exc:  # libcamera raises many kinds
            raise CameraError(f"the Pi camera failed to start: {exc}") from exc
        try:
            config = cam.create_video_configuration(
                main={"size": (self.width, self.height), "format": "RGB888"},
                controls={"FrameRate": self.fps},
            )
            cam.configure(config)
            cam.start()
        except Exception as exc:
            # let it go: held by this process, every retry said "Device or resource busy" until a restart
            with contextlib.suppress(Exception):
                cam.close()
            raise CameraError(f"the Pi camera failed to start: {exc}") from exc
        self.cam = cam

    def read(self) -> np.ndarray:
        if self.cam is None:
            self.open()
        cam = self.cam
        assert cam is not None  # open() sets it or raises CameraError
        try:
            frame = cam.capture_array("main")
        except Exception as exc:
            raise CameraError(f"the Pi camera stopped giving frames: {exc}") from exc
        if frame is None or frame.size == 0:
            raise CameraError("the Pi camera gave an empty frame")
        return frame[:, :, :3] if frame.shape[-1] == 4 else frame

    def close(self) -> None:
        if self.cam is not None:
            try:
                self.cam.stop()
            finally:  # closed even when its stop failed: else the camera stayed held (the next open "busy")
                try:
                    self.cam.close()
                finally:
                    self.cam = None


def _picamera2_present() -> bool:
    """A Pi camera is connected. picamera2 not installed: False (a USB camera may serve);
    installed but broken: its lasting CameraError, not "no camera"."""
    try:
        Picamera2 = import_picamera2()
    except Picamera2Missing:
        return False
    try:
        return bool(Picamera2.global_camera_info())
    except Exception:
        return False


VIDIOC_QUERYCAP = 0x80685600  # _IOR('V', 0, struct v4l2_capability), 104 bytes
V4L2_CAP_VIDEO_CAPTURE, V4L2_CAP_DEVICE_CAPS = 0x00000001, 0x80000000


def captures(path: str) -> bool | None:
    """Whether the V4L2 node ``path`` gives video frames (a camera), by its capabilities; None
    when it cannot be asked (this user may not open it). A Pi has codec and ISP nodes
    (/dev/video10 and up) and a USB camera a metadata node beside its own: none gives frames."""
    import fcntl
    import struct

    try:
        fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        info = bytearray(104)
        fcntl.ioctl(fd, VIDIOC_QUERYCAP, info)
    except OSError:
        return None
    finally:
        os.close(fd)
    caps, device_caps = struct.unpack_from("<II", info, 84)
    return gives_video(info[:16].split(b"\0", 1)[0].decode("ascii", "replace"),
                       device_caps if caps & V4L2_CAP_DEVICE_CAPS else caps)


# drivers whose capture nodes are no camera: a Pi's ISP and codecs say "video capture" of their
# output nodes too (bcm2835-isp's /dev/video14, 15, 21 and 22 on a Pi 4), and the Pi 5's camera front end and
# back end are libcamera's to drive (picamera2), not OpenCV's
NOT_CAMERAS = ("bcm2835-isp", "bcm2835-codec", "rpi-hevc-dec", "pispbe", "rp1-cfe")


def gives_video(driver: str, caps: int) -> bool:
    """Whether a V4L2 node of ``driver`` with capabilities ``caps`` is a camera to read frames from."""
    return bool(caps & V4L2_CAP_VIDEO_CAPTURE) and driver not in NOT_CAMERAS


def camera_node(names, gives_video) -> str | None:
    """The first of the ``video*`` device names (video2 before video10) that gives video, else
    the first that could not be asked (it may be a camera), else None."""
    unknown = None
    for name in sorted(names, key=lambda n: (len(n), n)):
        answer = gives_video(name)
        if answer:
            return name
        if answer is None and unknown is None:
            unknown = name
    return unknown


class AnyCamera(FrameSource):
    """``camera.source = "camera"``: whichever camera there is, found again at each open,
    so a camera plugged in after the start (or a USB one in place of the ribbon) is used
    when the capture loop retries; the start no longer fails for want of one."""

    name = "camera"

    def __init__(self, width=640, height=480, fps=15):
        self.size = dict(width=width, height=height, fps=fps)
        self.inner: FrameSource | None = None

    @property
    def dropped(self) -> int:  # type: ignore[override]
        return int(getattr(self.inner, "dropped", 0) or 0)

    def _find(self) -> FrameSource:
        if _picamera2_present():
            return Picamera2Source(**self.size)
        found = [p for p in os.listdir("/dev") if p.startswith("video")] if os.path.isdir("/dev") else []
        device = camera_node(found, lambda name: captures(f"/dev/{name}"))
        if device is None:
            raise CameraError(
                "no camera found: no Raspberry Pi camera and no /dev/video* device that gives video (a Pi's codec "
                "and ISP nodes do not). Connect a camera, or use --source demo (built-in demo) or --source PATH "
                "(a video file)"
            )
        return OpenCVSource(device.removeprefix("video") or "0", loop=False, **self.size)

    def open(self) -> None:
        if self.inner is None:
            self.inner = self._find()
        self.name = f"camera ({self.inner.name})"
        self.inner.open()

    def read(self) -> np.ndarray:
        if self.inner is None:
            self.open()
        assert self.inner is not None
        return self.inner.read()

    def close(self) -> None:
        inner, self.inner = self.inner, None  # found again at the next open
        if inner is not None:
            inner.close()


def make_source(spec: str, cfg: Config, **demo_options) -> FrameSource:
    """Build the source named by ``spec`` (the ``camera.source`` setting or --source)."""
    cam = cfg.camera
    size = dict(width=cam.width, height=cam.height, fps=cam.fps)
    if spec == "demo":
        return DemoSource(**size, **demo_options)
    if spec == "picamera2":
        return Picamera2Source(**size)
    if spec == "camera":
        return AnyCamera(**size)
    return OpenCVSource(spec, loop=cam.loop, realtime=True, **size)  # a file plays as a camera would
