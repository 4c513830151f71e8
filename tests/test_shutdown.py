"""Every stop of the services finishes, well inside systemd's TimeoutStopSec, and writes
what a clean stop writes: under systemd a stop that hangs ends in SIGKILL, which loses the
student's last state ended as Absent in the log, the MQTT "offline" and the WAL checkpoint.
Each test holds the stop up the way a classroom does (an open live view, a client that
stopped reading) and waits on the stop with a deadline of half the service's budget."""
from __future__ import annotations

import contextlib
import logging
import os
import re
import select
import signal
import socket
import sqlite3
import sys
import threading
import time
from pathlib import Path

import mqtt_broker
import requests
from conftest import ADMIN_PASSWORD, ROOT, login, served_at, service_process, stays, stops_cleanly, wait_for
from mqtt_broker import PASSWORD, USER

from edge_app import config as config_mod
from edge_app.engagement import ABSENT
from edge_app.fleet.classroom.model import Classroom
from edge_app.fleet.classroom.subscriber import Subscriber
from edge_app.fleet.settings import MqttSettings
from edge_app.runtime import capture
from edge_app.runtime.live import LiveFrame, mjpeg_stream
from edge_app.vision.sources import DemoSource
from edge_app.web.server import Server

broker = mqtt_broker.broker  # fixture: a real Mosquitto per test

# the web server's part of a stop: the capture loop, the store writer and the MQTT publisher
# each take up to a few seconds of the same TimeoutStopSec after it
SERVER_SHARE_S = 5.0


def stop_budget(unit: str) -> float:
    """Half the unit's TimeoutStopSec: what a stop may take, with room for the process's own exit."""
    text = (ROOT / "systemd" / unit).read_text()
    return int(re.search(r"^TimeoutStopSec=(\d+)$", text, re.M).group(1)) / 2


def stopped_within(stop, seconds: float) -> bool:
    """Run ``stop`` in a thread; True when it returned within ``seconds``."""
    done = threading.Event()
    threading.Thread(target=lambda: (stop(), done.set()), daemon=True).start()
    return done.wait(seconds)


def last_level(data_dir: Path) -> str:
    with contextlib.closing(sqlite3.connect(data_dir / "engage.db")) as db:
        return db.execute("SELECT level FROM state_changes ORDER BY id DESC LIMIT 1").fetchone()[0]


def watch_live(session: requests.Session, url: str) -> list[int]:
    """A tab showing the live view: reads the MJPEG stream in a thread until it ends;
    returns the sizes of what it read, growing."""
    stream = session.get(f"{url}/live.mjpg", stream=True, timeout=30)
    received: list[int] = []

    def watch():
        try:
            for chunk in stream.iter_content(4096):
                received.append(len(chunk))
        except requests.RequestException:
            pass  # the server ended the stream

    threading.Thread(target=watch, daemon=True).start()
    return received


def test_a_stop_while_a_tab_shows_the_live_view_finishes_and_logs_absent(make_appliance, cfg):
    """The endless MJPEG stream kept cheroot's stop waiting for its worker for ever (it only
    shuts the reading side of the connection): SIGKILL, and the last state ran on in the log."""
    appliance = make_appliance()
    received = watch_live(login(appliance.url), appliance.url)
    wait_for(lambda: sum(received) > 10_000, what="live frames reach the viewer")
    assert stopped_within(appliance.stop, stop_budget("engage-edge.service"))
    assert last_level(Path(cfg.store.data_dir)) == "Absent"


def test_a_stop_while_a_live_viewer_stopped_reading_finishes_and_logs_absent(make_appliance, cfg):
    """A viewer that stopped reading (a laptop lid closed on the live view) fills the socket
    buffers and blocks the stream's write; cheroot shut only the reading side after its 2 s
    and then waited on the write's own timeouts: 19.5 s, at the device's 20 s TimeoutStopSec.
    The stop comes only once the write is seen blocked on the server's side: a stream merely
    between frames ends at the stop by itself (LiveFrame.close) and would prove nothing."""
    appliance = make_appliance()
    cookie = "; ".join(f"{k}={v}" for k, v in login(appliance.url).cookies.items())
    stream = _StreamWatch(appliance.live)
    viewer = socket.socket()
    try:
        viewer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        viewer.connect(("127.0.0.1", appliance.server.port))
        viewer.sendall(f"GET /live.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}\r\n\r\n".encode())
        served = wait_for(lambda: stream.socket, what="the stream starts")
        # the kernel grows a full send buffer now and then (autotuning, up to net.ipv4.tcp_wmem's
        # ceiling) and a blocked write then went on; a fixed buffer stays full, as one at its ceiling does
        served.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
        wait_for(lambda: not _writable(served), what="the socket buffers fill")
        # the stream's worker in a write to the full socket (not between frames): seen on its own stack, as
        # a part handed after the fill was missed when a loaded machine ran the test late (CI)
        wait_for(lambda: stream.writing and stream.blocked_in_write() and not _writable(served),
                 what="a part is being written to the full socket")
        assert stopped_within(appliance.stop, stop_budget("engage-edge.service"))
        # the server's stop gives up on a worker after 7.5 s; one still blocked in the write then
        # holds its thread and the connection, and that stop took 7.5 s of the budget
        assert not len(appliance.server.busy), "the stop left the viewer's write blocked"
    finally:
        viewer.close()
    assert last_level(Path(cfg.store.data_dir)) == "Absent"


class _StreamWatch:
    """Watches the live stream's requests for frames (``live.jpeg``, which its worker thread
    calls): the server's socket of the connection, the parts handed out, and whether the
    last one is still being written (the stream has not asked for the next)."""

    def __init__(self, live: LiveFrame):
        self.socket: socket.socket | None = None
        self.handed, self.writing = 0, False
        jpeg = live.jpeg

        def watched(*args, **kwargs):
            self.writing = False
            self.thread_id = threading.get_ident()
            self.socket = threading.current_thread().conn.socket  # cheroot's worker: the connection it serves
            got = jpeg(*args, **kwargs)
            if got is not None:
                self.handed += 1
                self.writing = True
            return got

        live.jpeg = watched  # type: ignore[method-assign]
        self.thread_id: int | None = None

    def blocked_in_write(self) -> bool:
        """Whether the stream's worker is inside cheroot's socket writer now (its innermost
        Python frame), not waiting for the next frame."""
        frame = sys._current_frames().get(self.thread_id) if self.thread_id is not None else None
        return frame is not None and frame.f_code.co_filename.endswith(("makefile.py", "socket.py"))


def _writable(sock: socket.socket) -> bool:
    """True when the kernel would take more of a write on ``sock`` now (poll's POLLOUT)."""
    poller = select.poll()
    poller.register(sock, select.POLLOUT)
    return bool(poller.poll(0))


class HangingCamera(DemoSource):
    """The demo scene until ``hang`` is set; then a read that never returns (a USB camera
    whose driver stopped answering), until the test ends."""

    def __init__(self):
        super().__init__()
        self.hang, self.hanging, self.release = threading.Event(), threading.Event(), threading.Event()

    def read(self):
        if self.hang.is_set():
            self.hanging.set()
            self.release.wait(60)
        return super().read()


def test_a_stop_while_the_camera_hangs_in_a_read_logs_absent(make_appliance, cfg):
    """The loop waited for the hung read up to camera.read_timeout_s (up to 120 s), past
    the 5 s it is given to stop: the store writer closed first and the student's last
    state ran on in the log, as after a SIGKILL."""
    camera = HangingCamera()
    appliance = make_appliance(config_mod.with_changes(cfg, {"camera.read_timeout_s": 30}), source=camera)
    try:
        wait_for(lambda: appliance.loop.snapshot.level != ABSENT, what="the student's state is shown")
        camera.hang.set()
        assert camera.hanging.wait(10)
        assert stopped_within(appliance.stop, stop_budget("engage-edge.service"))
        assert last_level(Path(cfg.store.data_dir)) == ABSENT
        assert appliance.loop.health.camera_faults == 0  # a stop is no camera fault
    finally:
        camera.release.set()


class UnclosableCamera(DemoSource):
    """The demo scene, with a close that never returns (a wedged driver), until the test ends."""

    def __init__(self):
        super().__init__()
        self.closing, self.release = threading.Event(), threading.Event()

    def close(self):
        self.closing.set()
        self.release.wait(60)


def test_a_stop_whose_camera_never_closes_still_finishes(make_appliance, cfg):
    camera = UnclosableCamera()
    appliance = make_appliance(source=camera)
    try:
        wait_for(lambda: appliance.loop.health.frames > 0, what="frames flow")
        assert stopped_within(appliance.stop, stop_budget("engage-edge.service"))
        assert camera.closing.is_set()
        assert last_level(Path(cfg.store.data_dir)) == ABSENT
    finally:
        camera.release.set()


@contextlib.contextmanager
def demo_run(tmp_path: Path):
    """A real ``engage-edge run`` on the demo source, with its data in ``tmp_path``."""
    config = tmp_path / "config.toml"
    config.write_text("# defaults\n")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "ENGAGE_ADMIN_PASSWORD": ADMIN_PASSWORD}
    with service_process("run", "--config", config, "--source", "demo", "--port", "0",
                         "--data-dir", tmp_path / "data", env=env) as proc:
        yield proc


def test_sigterm_with_the_live_view_open_ends_engage_edge_run_cleanly(tmp_path):
    """What systemd does at a stop, with a teacher's tab on the live view: before, the
    process never exited (SIGKILL after TimeoutStopSec) and the last state ran on in the log."""
    with demo_run(tmp_path) as proc:
        url = served_at(proc)
        received = watch_live(login(url), url)
        wait_for(lambda: sum(received) > 10_000, what="live frames reach the viewer")
        stops_cleanly(proc, signal.SIGTERM, timeout=stop_budget("engage-edge.service"))
    assert last_level(tmp_path / "data") == ABSENT


def test_a_stop_ends_the_live_streams_at_once():
    live = LiveFrame(placeholder_every_s=30)
    parts = mjpeg_stream(live, lambda: "ok", fps=15)
    ended = threading.Event()

    def view():
        for _ in parts:
            pass
        ended.set()

    threading.Thread(target=view, daemon=True).start()
    live.close()
    assert ended.wait(5), "the stream waited for its next frame after the close"


def test_a_stop_while_a_client_stopped_reading_finishes():
    """A client that stopped reading (a laptop lid closed mid-stream) fills the socket
    buffers and blocks the worker's write; cheroot then waited for the write's own timeout
    (up to 10 s) after its 2 s: 12 s of the device's 20 s TimeoutStopSec before the loop,
    the writer and the publisher had begun to stop. The stop shuts the connection down."""
    written = []

    def endless(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        chunk = b"x" * 65536
        while True:
            written.append(len(chunk))
            yield chunk

    server = Server(endless, "127.0.0.1", 0, threads=2).start()
    client = socket.socket()
    try:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.connect(("127.0.0.1", server.port))
        client.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")  # and never reads
        wait_for(lambda: len(server.busy) == 1 and written, what="the response is being written")
        wait_for(lambda: stays(lambda n=len(written): len(written) == n, 0.5),  # no progress for half a second
                 what="the socket buffers fill and the write blocks")
        assert stopped_within(server.stop, SERVER_SHARE_S)
    finally:
        client.close()


def test_a_clean_stop_of_the_classroom_says_no_connection_was_lost(broker, caplog):
    """Each stop of the classroom service logged a warning that it lost the broker and was
    retrying: the journal's last word on a clean stop was a fault that never happened."""
    settings = MqttSettings(host="127.0.0.1", port=broker.port, username=USER, password=PASSWORD,
                            device_id="classroom", keepalive_s=5)
    subscriber = Subscriber(settings, Classroom()).start()
    wait_for(lambda: subscriber.status.connected, what="the classroom connects")
    with caplog.at_level(logging.WARNING):
        subscriber.stop()
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_stop_just_before_the_loop_asks_for_a_frame_still_ends_the_wait():
    """The loop checks for a stop, then asks the reader for a frame: a stop that came in
    between interrupted a reader not yet waiting, and the read that followed cleared the
    interruption and waited on the hung camera for camera.read_timeout_s after all."""
    camera = HangingCamera()
    camera.hang.set()
    reader = capture._FrameReader(camera)
    try:
        reader.interrupt()  # the stop, just after the loop's check
        ended = threading.Event()

        def read():
            with contextlib.suppress(capture.ReadInterrupted):
                reader.read(30)
            ended.set()

        threading.Thread(target=read, daemon=True).start()
        assert ended.wait(5), "the read waited for the hung camera after the stop"
        assert not camera.hanging.is_set()  # and the camera was not even asked
    finally:
        camera.release.set()
        reader.close()


class SlowCamera(DemoSource):
    """A healthy camera that takes a while for each frame (a webcam in dim light), and
    says whether it was closed and whether that came under a read."""

    def __init__(self):
        super().__init__()
        self.reading, self.closed_under_read, self.closes = threading.Event(), False, 0

    def read(self):
        self.reading.set()
        time.sleep(0.3)
        frame = super().read()
        self.reading.clear()
        return frame

    def close(self):
        self.closed_under_read = self.closed_under_read or self.reading.is_set()
        self.closes += 1


def test_a_stop_during_a_healthy_cameras_read_still_closes_the_camera(make_appliance, cfg):
    """The stop interrupts the loop's wait on a read; the read itself is given a frame's
    time to return so the device is closed (a V4L2 or libcamera device left open stays busy
    for the next start), but never under the read."""
    camera = SlowCamera()
    appliance = make_appliance(source=camera)
    wait_for(lambda: appliance.loop.health.frames > 0, what="frames flow")
    camera.reading.clear()
    wait_for(camera.reading.is_set, what="a read in progress")
    appliance.loop.stop()
    assert camera.closes >= 1 and not camera.closed_under_read


def test_a_clean_stop_of_the_classroom_tells_the_open_pages_no_link_was_lost(broker):
    """The stop's own disconnect told every open page "the classroom server has lost its
    link to the message broker", just before their streams ended at the stop."""
    settings = MqttSettings(host="127.0.0.1", port=broker.port, username=USER, password=PASSWORD,
                            device_id="classroom", keepalive_s=5)
    classroom = Classroom()
    subscriber = Subscriber(settings, classroom).start()
    wait_for(lambda: classroom.snapshot()["broker"]["connected"], what="the classroom connects")
    subscriber.stop()
    assert classroom.snapshot()["broker"]["connected"]


def test_sigterm_stops_engage_edge_run_whose_output_reader_has_gone(tmp_path):
    """``engage-edge run ... | head -3``: the "stopping" line failed with a broken pipe, the
    command returned before the appliance's stop, and its threads kept it serving (and
    holding its port) until a SIGKILL."""
    with demo_run(tmp_path) as proc:
        url = served_at(proc)
        proc.stdout.close()  # the reader is gone, as head's after its lines
        wait_for(lambda: requests.get(f"{url}/healthz", timeout=5).json()["fps"] > 1, what="frames")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=stop_budget("engage-edge.service")) == 0
        assert "Traceback" not in proc.stderr.read()
        with contextlib.suppress(requests.ConnectionError):
            requests.get(f"{url}/healthz", timeout=2)
            raise AssertionError("still serving after the stop")
    assert last_level(tmp_path / "data") == ABSENT
