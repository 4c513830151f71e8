"""Camera sources behind one interface: the built-in demo, a real video file written by
cv2.VideoWriter, and the clear errors for sources that are not there."""
from __future__ import annotations

import glob
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_app import config as config_mod
from edge_app.vision import demo
from edge_app.vision.detector import FaceDetector
from edge_app.vision.sources import CameraError, DemoSource, OpenCVSource, make_source


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector()


# ------------------------------------------------------------------ demo
def test_demo_frames_are_640x480_bgr():
    src = DemoSource(realtime=False)
    with src:
        frame = src.read()
    assert frame.shape == (480, 640, 3) and frame.dtype == np.uint8
    assert frame.std() > 10  # a picture, not a flat fill


def test_demo_frame_size_follows_the_config(cfg):
    src = make_source("demo", config_mod.with_changes(cfg, {"camera.width": 320, "camera.height": 240}))
    assert isinstance(src, DemoSource)
    assert src.read().shape == (240, 320, 3)


def test_demo_is_deterministic_in_non_realtime_mode():
    a, b = DemoSource(realtime=False, fps=10, start_s=12.0), DemoSource(realtime=False, fps=10, start_s=12.0)
    frames_a = [a.read().copy() for _ in range(5)]
    frames_b = [b.read().copy() for _ in range(5)]
    for fa, fb in zip(frames_a, frames_b):
        assert np.array_equal(fa, fb)
    assert not np.array_equal(frames_a[0], frames_a[4])  # the face moves
    assert a.scene_time() == pytest.approx(12.5)
    # the same scene time renders the same frame, whichever way it is reached
    assert np.array_equal(demo.DemoScene().render(12.3), DemoSource(realtime=False, fps=10, start_s=12.3).read())


def test_demo_realtime_paces_to_fps():
    import time

    src = DemoSource(realtime=True, fps=20)
    src.open()
    t0 = time.monotonic()
    for _ in range(6):
        src.read()
    assert time.monotonic() - t0 >= 5 / 20 - 0.02


def test_demo_cycle_shows_frontal_profile_and_no_face(detector):
    """Over the 60 s cycle: frontal faces (Grace Hopper, the astronaut, picked faces), a
    turned-away face for "Distracted", and an empty frame for "Absent"."""
    src = DemoSource(realtime=False, fps=1)
    kinds_by_picture: dict[str, list[str | None]] = {}
    for second in range(int(demo.CYCLE_S)):
        frame = src.read()
        faces = detector.detect(frame)
        picture = src.scene.shot_at(second + 0.5).picture
        kinds_by_picture.setdefault(picture.split(":")[0], []).append(faces[0].kind if faces else None)
    assert set(kinds_by_picture) == {"grace", "astronaut", "face", "profile", "empty"}
    for name in ("grace", "astronaut", "face"):
        frontal = kinds_by_picture[name].count("frontal")
        assert frontal >= 0.8 * len(kinds_by_picture[name]), (name, kinds_by_picture[name])
    profile = kinds_by_picture["profile"]
    assert profile.count("profile") >= 0.75 * len(profile) and "frontal" not in profile, profile
    assert set(kinds_by_picture["empty"]) == {None}
    assert len(kinds_by_picture["empty"]) >= 8  # long enough for the default absent_after_s


def test_demo_picks_a_face_for_every_engagement_group(cfg):
    """Over the shipped photos the model sees a fearful face (Duchenne's old man: "Partially
    engaged"), a disengaged one (the Migrant Mother) and an engaged one (the astronaut,
    Grace Hopper): the demo shows all three, in that order."""
    from edge_app.engagement import group_of
    from edge_app.runtime.appliance import classifier_from_config, demo_picks
    from edge_app.vision.faces import cuts, demo_cuts, demo_faces

    classifier, mapping = classifier_from_config(cfg), cfg.engagement.mapping
    picks = demo_picks(classifier, mapping)
    assert len(picks) == 3 and all(0 <= i < len(demo_cuts()) for i in picks)
    shown = [group_of(mapping[classifier.classify(demo_faces()[i])[0]]) for i in picks]
    assert shown == ["Partially engaged", "Not engaged", "Engaged"], shown
    assert [demo_cuts()[i].photo for i in picks[:2]] == ["duchenne_fright.jpg", "migrant_mother.jpg"]
    assert demo_cuts()[: len(cuts())] == cuts()  # the demo-only face leaves the golden set and its indices alone


def test_demo_timeline_covers_the_minute_without_gaps():
    shots = demo.timeline([1, 2, 3])
    assert shots[0].start == 0 and shots[-1].end == demo.CYCLE_S
    for a, b in zip(shots, shots[1:]):
        assert a.end == b.start
    assert [s.picture for s in shots if s.picture.startswith("face")] == ["face:1", "face:2", "face:3"]


# ------------------------------------------------------------------ video files
def write_clip(path: Path, frames: int = 6, size=(160, 120)) -> list[int]:
    """An MJPG .avi whose frame i is a flat grey of level 30 + 35 * i; returns the levels."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, size)
    assert writer.isOpened(), "this OpenCV cannot write MJPG .avi files"
    levels = [30 + 35 * i for i in range(frames)]
    for level in levels:
        writer.write(np.full((size[1], size[0], 3), level, np.uint8))
    writer.release()
    assert path.stat().st_size > 0
    return levels


def test_video_file_plays_and_loops(tmp_path):
    clip = tmp_path / "clip.avi"
    levels = write_clip(clip)
    src = OpenCVSource(str(clip), loop=True)
    with src:
        seen = [int(round(src.read().mean())) for _ in range(len(levels) * 2 + 1)]
    expected = levels * 2 + levels[:1]
    assert seen == pytest.approx(expected, abs=3)
    assert src.cap is None  # closed by the context manager


def test_video_file_without_loop_ends_with_camera_error(tmp_path):
    clip = tmp_path / "clip.avi"
    levels = write_clip(clip, frames=3)
    src = OpenCVSource(str(clip), loop=False)
    frames = [src.read() for _ in levels]
    assert all(f.shape == (120, 160, 3) for f in frames)
    with pytest.raises(CameraError, match="has ended") as err:
        src.read()
    assert str(clip) in str(err.value) and "camera.loop = false" in str(err.value)
    src.close()
    src.close()  # closing twice is safe
    # the capture loop's retry closes and reopens a failed source: it played the file again
    with pytest.raises(CameraError, match="has ended"):
        src.read()


def test_make_source_plays_a_path_and_uses_camera_loop_setting(tmp_path, cfg):
    clip = tmp_path / "clip.avi"
    write_clip(clip, frames=2)
    src = make_source(str(clip), cfg)
    assert isinstance(src, OpenCVSource) and src.loop is True
    src = make_source(str(clip), config_mod.with_changes(cfg, {"camera.loop": False}))
    assert src.loop is False


def test_a_video_file_source_plays_at_the_files_own_frame_rate(tmp_path, cfg):
    """`--source FILE.mp4` stands in for a camera: it gives frames at the recording's rate,
    so min_hold_s and absent_after_s mean the recording's seconds (it was read as fast as
    it decoded: a 10 fps clip ran at hundreds of frames a second, one core at 100 %)."""
    import time

    clip = tmp_path / "clip.avi"
    write_clip(clip, frames=6)  # written at 10 fps
    src = make_source(str(clip), config_mod.with_changes(cfg, {"camera.fps": 30}))
    assert isinstance(src, OpenCVSource) and src.realtime
    with src:
        assert src.rate == pytest.approx(10)  # the file's rate, not camera.fps
        t0 = time.monotonic()
        for _ in range(6):
            src.read()
        assert time.monotonic() - t0 >= 5 / 10 - 0.02


def test_a_late_reader_of_a_video_file_skips_the_frames_that_went_by(tmp_path):
    import time

    clip = tmp_path / "clip.avi"
    levels = write_clip(clip, frames=7)
    src = OpenCVSource(str(clip), loop=True, realtime=True)
    with src:
        began = time.monotonic()  # the recording's first frame is due at this time or later
        assert int(round(src.read().mean())) == pytest.approx(levels[0], abs=3)
        time.sleep(0.35)  # a slow analysis: more than three frames' time at 10 fps
        after = int(round(src.read().mean()))
        for _ in range(3):  # back on time: paced again, not read as fast as it decodes
            src.read()
        # the late read was at 0.35 s or later and the next frame is due after it, so three
        # paced reads end 0.2 s after that at the least; a busy machine only makes them later
        # (timed from the late read's end, its own decoding under load came off the 0.2 s)
        assert time.monotonic() - began >= 0.35 + 2 / 10
    assert src.dropped >= 2
    assert after != pytest.approx(levels[1], abs=3), "the late reader got the next frame, as from a queue"


def test_missing_video_file(tmp_path):
    with pytest.raises(CameraError, match="does not exist") as err:
        OpenCVSource(str(tmp_path / "nope.mp4")).open()
    assert "nope.mp4" in str(err.value)


def test_file_that_is_not_a_video(tmp_path):
    bogus = tmp_path / "notes.avi"
    bogus.write_text("this is not a video")
    with pytest.raises(CameraError, match="notes.avi"):
        src = OpenCVSource(str(bogus), loop=False)
        src.open()
        src.read()


def test_device_index_that_does_not_exist():
    index = next(i for i in range(50, 200) if not Path(f"/dev/video{i}").exists())
    with pytest.raises(CameraError) as err:
        OpenCVSource(str(index)).open()
    message = str(err.value)
    assert f"/dev/video{index}" in message and "--source demo" in message
    # the same device named by its path is a camera, not a "video file"
    with pytest.raises(CameraError) as err:
        OpenCVSource(f"/dev/video{index}").open()
    assert f"no camera at /dev/video{index}" in str(err.value)


def test_camera_on_a_machine_without_one(cfg):
    """CI has no camera: `--source camera` must say so clearly. With a camera attached
    (a developer's laptop) the same call must pick the first /dev/video device instead."""
    from edge_app.vision.sources import _picamera2_present

    devices = sorted(glob.glob("/dev/video*"))
    src = make_source("camera", cfg)  # found at each open: a camera plugged in later is used
    if devices or _picamera2_present():
        try:
            src.open()
            assert src.name in ("camera (picamera2)",
                                f"camera (opencv:{devices[0].removeprefix('/dev/video')})" if devices else "")
        finally:
            src.close()
        return
    with pytest.raises(CameraError) as err:
        src.open()
    message = str(err.value)
    assert "no camera found" in message and not err.value.lasting  # it may be plugged in: not lasting
    assert "/dev/video" in message and "--source demo" in message


def test_the_camera_found_is_a_node_that_gives_video():
    """A Pi 4 with no camera has codec and ISP nodes (/dev/video10 and up): `camera` opened
    /dev/video10 and said "cannot open video source '10'", not "no camera found"; and a USB
    camera's metadata node is no camera either. (This machine has no V4L2 node: the choice is
    checked on the answers a Pi gives, and the asking on nodes that are not V4L2.)"""
    from edge_app.vision.sources import camera_node, captures

    pi4 = {"video10": False, "video11": False, "video12": False, "video18": False, "video31": False}
    assert camera_node(pi4, pi4.get) is None
    with_usb = {**pi4, "video2": True, "video3": False}
    assert camera_node(with_usb, with_usb.get) == "video2"
    metadata_first = {"video0": False, "video1": True}
    assert camera_node(metadata_first, metadata_first.get) == "video1"
    unknown = {"video10": False, "video4": None}  # a node this user may not open may be a camera: tried
    assert camera_node(unknown, unknown.get) == "video4"
    assert captures("/dev/null") is None and captures("/no/such/node") is None
    # what a Pi 4's nodes answer: its ISP says "video capture" of its output nodes, and is no camera
    from edge_app.vision.sources import V4L2_CAP_VIDEO_CAPTURE, gives_video

    assert not gives_video("bcm2835-isp", V4L2_CAP_VIDEO_CAPTURE) and not gives_video("bcm2835-codec", 0x4000)
    assert not gives_video("uvcvideo", 0x00800000)  # a USB camera's metadata node
    assert gives_video("uvcvideo", V4L2_CAP_VIDEO_CAPTURE)


def test_picamera2_without_the_library_says_how_to_install(cfg, monkeypatch):
    """Without python3-picamera2 (a venv made without --system-site-packages), here and on a Pi."""
    monkeypatch.setitem(sys.modules, "picamera2", None)  # an import of it fails, as when it is not installed
    with pytest.raises(CameraError, match="apt install python3-picamera2"):
        make_source("picamera2", cfg).open()


class _OneCamera:
    """A stand-in for picamera2 (no double of it runs off a Pi) holding libcamera's rule that
    matters here: one process at a time holds the camera until ``close``; ``fail`` names the
    calls that raise once, as a driver's error would."""

    held = 0
    fail: set = set()

    @staticmethod
    def global_camera_info():
        return [{"Model": "imx708"}]

    def __init__(self):
        if _OneCamera.held:
            raise RuntimeError("Failed to acquire camera: Device or resource busy")
        _OneCamera.held += 1

    def _maybe_fail(self, call):
        if call in _OneCamera.fail:
            _OneCamera.fail.discard(call)
            raise RuntimeError(f"{call} failed")

    def create_video_configuration(self, **kwargs):
        return kwargs

    def configure(self, config):
        self._maybe_fail("configure")

    def start(self):
        self._maybe_fail("start")

    def capture_array(self, stream):
        return np.zeros((480, 640, 3), np.uint8)

    def stop(self):
        self._maybe_fail("stop")

    def close(self):
        _OneCamera.held -= 1


@pytest.mark.parametrize("failing", ["configure", "start", "stop"])
def test_a_pi_camera_that_fails_to_start_or_stop_is_let_go(monkeypatch, failing):
    """A Pi camera whose start failed (or whose stop raised) stayed held by this process: every
    retry then said "Device or resource busy" until the service was restarted."""
    import types

    from edge_app.vision.sources import Picamera2Source

    monkeypatch.setitem(sys.modules, "picamera2", types.SimpleNamespace(Picamera2=_OneCamera))
    monkeypatch.setattr(_OneCamera, "held", 0)
    monkeypatch.setattr(_OneCamera, "fail", {failing})
    src = Picamera2Source()
    if failing == "stop":
        src.open()
        with pytest.raises(RuntimeError, match="stop failed"):
            src.close()
    else:
        with pytest.raises(CameraError, match=f"{failing} failed"):
            src.open()
    assert _OneCamera.held == 0
    src.open()  # the retry gets the camera
    assert src.read().shape == (480, 640, 3)
    src.close()
    assert _OneCamera.held == 0
