"""sd_notify over a real NOTIFY_SOCKET datagram socket bound by the test: READY, rate-limited
WATCHDOG pings while the loop is alive (not while a read hangs), STATUS, STOPPING; abstract
'@' addresses too."""
from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest
from conftest import ADMIN_PASSWORD, fill_up, stays, wait_for

from edge_app import config as config_mod
from edge_app.device.watchdog import Notifier
from edge_app.vision.sources import CameraError, DemoSource

SO_TIMESTAMPNS = 35  # Linux (asm-generic), missing from Python's socket module
TIMESPEC = struct.Struct("@ll")


class Listener:
    """A bound datagram socket standing in for systemd's notify socket; collects messages
    with the time each was sent (the kernel stamps a Unix datagram in the sender's
    ``sendto``): gaps between pings then stay true when this thread is slow to read them."""

    def __init__(self, address: str):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.sock.bind(address)
        self.sock.settimeout(0.1)
        self.messages: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                data, ancillary, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(TIMESPEC.size))
            except socket.timeout:
                continue
            except OSError:
                return
            sent = next(TIMESPEC.unpack(d[:TIMESPEC.size]) for level, kind, d in ancillary
                        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS)
            self.messages.append((sent[0] + sent[1] / 1e9, data.decode()))

    def wait_for(self, text: str, timeout: float = 10.0, proc: subprocess.Popen | None = None, output=None) -> str:
        """The first message with the line ``text``, once it has arrived."""

        def arrived():
            if proc is not None and proc.poll() is not None:
                raise AssertionError(f"the process exited ({proc.returncode}) before {text!r}:\n{output.read_text() if output else ''}")
            return next((m for _, m in self.messages if text in m.splitlines()), None)

        try:
            return wait_for(arrived, timeout, every=0.02, what=repr(text))
        except AssertionError as exc:
            raise AssertionError(f"{exc}; got {self.messages}") from None

    def pings(self) -> list[float]:
        return [t for t, m in self.messages if "WATCHDOG=1" in m.splitlines()]

    def close(self):
        self._stop.set()
        self._thread.join(1)
        self.sock.close()


@pytest.fixture
def listener(tmp_path):
    path = tmp_path / "notify.sock"
    lst = Listener(str(path))
    lst.address = str(path)
    yield lst
    lst.close()


def test_ready_status_stopping_over_a_path_socket(listener):
    n = Notifier.from_env({"NOTIFY_SOCKET": listener.address})
    assert n.enabled
    assert n.ready("serving http://127.0.0.1:8080")
    assert listener.wait_for("READY=1") == "READY=1\nSTATUS=serving http://127.0.0.1:8080"
    assert n.status("camera fault")
    listener.wait_for("STATUS=camera fault")
    assert n.stopping()
    listener.wait_for("STOPPING=1")
    assert not n.watchdog_ping(), "no WATCHDOG_USEC: the watchdog is off, so no pings"
    n.close()


def test_abstract_socket_address():
    name = f"engage-edge-test-{os.getpid()}"
    lst = Listener("\0" + name)
    try:
        n = Notifier.from_env({"NOTIFY_SOCKET": "@" + name})
        assert n.ready()
        lst.wait_for("READY=1")
    finally:
        lst.close()


def test_pings_are_rate_limited_to_half_the_watchdog_interval(listener):
    now = [1000.0]
    n = Notifier(listener.address, 400000, clock=lambda: now[0])
    assert n.ping_every == pytest.approx(0.2)
    sent = sum(n.watchdog_ping() for _ in range(500))  # a burst of frames
    assert sent == 1
    now[0] += 0.19
    assert not n.watchdog_ping()
    now[0] += 0.02  # 0.21 s after the first
    assert n.watchdog_ping()
    assert sum(n.watchdog_ping() for _ in range(500)) == 0
    assert n.status("end of test")  # datagrams arrive in order: once this is in, so is every ping
    listener.wait_for("STATUS=end of test")
    assert len(listener.pings()) == 2


def test_watchdog_for_another_pid_is_ignored_and_no_socket_is_a_no_op(listener):
    n = Notifier.from_env({"NOTIFY_SOCKET": listener.address, "WATCHDOG_USEC": "400000", "WATCHDOG_PID": "1"})
    assert n.ping_every is None and not n.watchdog_ping()
    quiet = Notifier.from_env({})
    assert not quiet.enabled and not quiet.ready() and not quiet.watchdog_ping()


def test_a_missing_socket_does_not_break_the_appliance(tmp_path):
    n = Notifier.from_env({"NOTIFY_SOCKET": str(tmp_path / "gone.sock"), "WATCHDOG_USEC": "1000000"})
    assert not n.ready() and not n.watchdog_ping()


class StallingSource(DemoSource):
    """The demo scene until ``stall`` is set; then the camera fails (unplugged) or, with
    ``hang`` set, its read never returns (a driver stuck for good)."""

    def __init__(self):
        super().__init__(320, 240, fps=30, realtime=True)
        self.stall = threading.Event()
        self.hang = threading.Event()
        self.release = threading.Event()
        self.failed_reads = 0

    def read(self):
        if self.hang.is_set():
            self.release.wait(30)
        if self.stall.is_set():
            time.sleep(0.05)  # a camera that takes a moment to fail
            self.failed_reads += 1
            raise CameraError("test camera unplugged")
        return super().read()


def test_capture_loop_pings_while_alive_but_not_while_a_read_hangs(listener, make_appliance, cfg):
    """An unplugged camera is retried with back-off and the loop is alive: it pinged only while
    frames flowed, so systemd killed it within WatchdogSec, the restart exited for the missing
    camera, and after five the unit stayed failed, web page and LED too, camera back or not.
    A read that hangs (a stuck driver) still stops the pings, so systemd restarts it."""
    source = StallingSource()
    quick_retry = config_mod.with_changes(cfg, {"camera.retry_initial_s": 0.05, "camera.retry_max_s": 0.1,
                                                "camera.read_timeout_s": 0.3})
    appliance = make_appliance(quick_retry, source=source)
    n = Notifier.from_env({"NOTIFY_SOCKET": listener.address, "WATCHDOG_USEC": "200000"})
    n.attach(appliance.loop)
    listener.wait_for("WATCHDOG=1")
    wait_for(lambda: len(listener.pings()) >= 4, what="pings while frames flow")
    flowing = listener.pings()
    gaps = [b - a for a, b in zip(flowing, flowing[1:])]
    assert min(gaps) >= 0.08, gaps  # rate-limited to half the watchdog period
    assert any("STATUS=running:" in m and "fps" in m for _, m in listener.messages)

    source.stall.set()  # unplugged: every read fails at once
    wait_for(lambda: appliance.loop.health.camera == "fault", what="the loop noticing the unplugged camera")
    failing_from = len(listener.pings())
    wait_for(lambda: len(listener.pings()) >= failing_from + 4, what="pings while the camera is retried")
    assert any("STATUS=camera fault, retrying: test camera unplugged" in m for _, m in listener.messages)

    source.hang.set()  # now a read never returns
    wait_for(lambda: "hung" in appliance.loop.health.camera_error, what="the loop noticing the hung read")
    assert n.status("hung")  # every ping sent so far is in once this is
    listener.wait_for("STATUS=hung")
    hung_at = len(listener.pings())
    time.sleep(1.0)  # five ping intervals: the only way to see that nothing comes
    assert n.status("end of test")  # in order behind any ping sent before it
    listener.wait_for("STATUS=end of test")
    assert len(listener.pings()) == hung_at, "pings must stop while a read hangs"
    source.release.set()


def test_engage_edge_run_speaks_the_protocol(listener, tmp_path):
    """The real command: READY=1 after start-up, WATCHDOG=1 while the demo runs, STOPPING=1 on SIGTERM."""
    conf = tmp_path / "run.toml"
    conf.write_text('[indicators]\nbackend = "none"\n')
    env = {**os.environ, "NOTIFY_SOCKET": listener.address, "WATCHDOG_USEC": "1000000",
           "ENGAGE_ADMIN_PASSWORD": ADMIN_PASSWORD}
    log = open(tmp_path / "run.log", "w+")  # a file, not a pipe: nothing can block on a full pipe
    proc = subprocess.Popen([sys.executable, "-m", "edge_app", "run", "--source", "demo", "--port", "0",
                             "--config", str(conf), "--data-dir", str(tmp_path / "data")],
                            env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    try:
        ready = listener.wait_for("READY=1", timeout=60, proc=proc, output=tmp_path / "run.log")
        assert "STATUS=serving http" in ready
        listener.wait_for("WATCHDOG=1", timeout=20, proc=proc, output=tmp_path / "run.log")
        proc.send_signal(signal.SIGTERM)
        listener.wait_for("STOPPING=1", timeout=20)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()


def test_the_build_after_a_wait_for_disk_space_feeds_the_watchdog_for_a_bounded_time(listener, cfg, capsys,
                                                                                      monkeypatch, tmp_path):
    """A start that waited for room on a full disk had told systemd READY, so WatchdogSec,
    not TimeoutStartSec, timed the build once room came: a slow migration of a big database
    got the unit killed mid-migration. The build is fed pings, but only for a bounded time,
    so a start that truly hangs is still restarted."""
    from conftest import mounted_tmpfs

    from edge_app.cli import appliance_when_there_is_room
    from edge_app.runtime import appliance as appliance_mod

    real_classifier = appliance_mod.classifier_from_config
    building, gate = threading.Event(), threading.Event()

    def slow_classifier(conf):  # the model's check, held as a slow migration would hold the build
        building.set()
        gate.wait(30)
        return real_classifier(conf)

    monkeypatch.setattr(appliance_mod, "classifier_from_config", slow_classifier)
    monkeypatch.setenv("ENGAGE_ADMIN_PASSWORD", ADMIN_PASSWORD)
    monkeypatch.setenv("NOTIFY_SOCKET", listener.address)
    monkeypatch.setenv("WATCHDOG_USEC", "200000")  # a ping due every 0.1 s
    with mounted_tmpfs(tmp_path / "disk", "4m") as disk:
        conf = config_mod.with_changes(cfg, {"store.data_dir": str(disk / "data")})
        fill_up(disk / "filler")
        started: list = []
        thread = threading.Thread(target=lambda: started.append(
            appliance_when_there_is_room(conf, None, wait_s=0.2, build_pings_s=1.5)), daemon=True)
        thread.start()
        try:
            listener.wait_for("READY=1", timeout=20)
            (disk / "filler").unlink()
            wait_for(building.is_set, 20, what="the build once there is room")
            since = time.time()
            wait_for(lambda: len([t for t in listener.pings() if t > since]) >= 3, 5, what="pings during the build")
            said: list[str] = []
            wait_for(lambda: said.append(capsys.readouterr().err) or "no more watchdog pings" in "".join(said), 5,
                     what="the pings' bound reached")
            # the last ping goes out just before the bound's line, and may still be on its way to the listener:
            # counted once a message sent after the line has come (a socket's datagrams come in order)
            assert Notifier.from_env().status("bound reached")
            listener.wait_for("STATUS=bound reached")
            fed = len(listener.pings())
            assert stays(lambda: len(listener.pings()) == fed, 0.5), "pings must stop at the bound while the build hangs"
            assert Notifier.from_env().status("end of test")  # in order behind any ping sent before it
            listener.wait_for("STATUS=end of test")
            assert len(listener.pings()) == fed, "pings must stop at the bound while the build hangs"
        finally:
            gate.set()
            thread.join(30)
        assert started, "it never started once there was room"
        started[0].stop()
