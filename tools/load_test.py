#!/usr/bin/env python3
"""Web under load: MJPEG viewers plus concurrent uploads against a running appliance.

Starts an appliance in this process (demo camera, real HTTP server on loopback), measures
the capture loop's frame rate idle, then with ``--viewers`` MJPEG viewers and
``--uploaders`` clients posting a face photo to ``/api/analyze`` in a loop for
``--seconds``; then drops every viewer abruptly (sockets closed mid-stream). Reports the
loop's FPS idle and under load, every request's outcome, and the thread and file
descriptor counts before and after. Exit 1 when a request went unanswered, a thread or
fd leaked, or the loaded FPS fell more than 20% below idle.

    python tools/load_test.py                       # 8 viewers + 20 uploaders, 60 s
    python tools/load_test.py --seconds 10          # a quick run
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def counts() -> tuple[int, int, int]:
    """(threads, open file descriptors other than SQLite's, SQLite's) of this process.

    Each web worker thread keeps its own SQLite connection (the database and its WAL) once
    it has served a request: bounded by the thread count, so counted apart from the rest."""
    other = sqlite = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if ".db" in os.path.basename(target):
            sqlite += 1
        else:
            other += 1
    return threading.active_count(), other, sqlite


def loop_fps(loop, seconds: float) -> float:
    f0, t0 = loop.health.frames, time.monotonic()
    time.sleep(seconds)
    return (loop.health.frames - f0) / (time.monotonic() - t0)


class Viewer(threading.Thread):
    """Reads /live.mjpg over a raw socket until told to vanish (close without a goodbye)."""

    def __init__(self, url: str, cookie: str):
        super().__init__(daemon=True)
        self.url, self.cookie = urlparse(url), cookie
        self.status: int | None = None
        self.bytes = 0
        self.frames = 0
        self.error: str | None = None
        self.sock: socket.socket | None = None
        self.stop = threading.Event()

    def run(self):
        try:
            self.sock = socket.create_connection((self.url.hostname, self.url.port), timeout=10)
            self.sock.sendall(f"GET /live.mjpg HTTP/1.1\r\nHost: {self.url.netloc}\r\n"
                              f"Cookie: ee_session={self.cookie}\r\n\r\n".encode())
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = self.sock.recv(4096)
                if not chunk:
                    raise ConnectionError("closed before the headers")
                head += chunk
            self.status = int(head.split(b" ", 2)[1])
            while not self.stop.is_set():
                chunk = self.sock.recv(65536)
                if not chunk:
                    break
                self.bytes += len(chunk)
                self.frames += chunk.count(b"--frame")
        except OSError as exc:
            if not self.stop.is_set():
                self.error = repr(exc)

    def vanish(self):
        """Drop the connection abruptly: RST, no orderly close."""
        self.stop.set()
        if self.sock is not None:
            try:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                self.sock.close()
            except OSError:
                pass


def client_load(url: str, password: str, viewers: int, uploaders: int, seconds: float, image: bytes) -> dict:
    """The clients' side (run in a separate process, as real clients would be)."""
    import requests

    s = requests.Session()
    r = s.post(f"{url}/api/login", json={"username": "admin", "password": password}, timeout=10)
    r.raise_for_status()
    cookie, csrf = s.cookies.get("ee_session"), r.json().get("csrf")
    s.close()
    if cookie is None:
        raise SystemExit(f"error: logging in at {url} set no ee_session cookie: is that an engage-edge web UI?")
    outcomes: Counter = Counter()
    lock = threading.Lock()
    stop = threading.Event()

    def upload():
        with requests.Session() as session:
            # the one log-in's session, as tabs of one browser: log-ins of one user checked at
            # once are capped (429), so one per uploader measured the log-in throttle, not the load
            session.cookies.set("ee_session", cookie)
            session.headers["X-CSRF-Token"] = csrf  # state-changing API calls carry the session's token
            while not stop.is_set():
                try:
                    resp = session.post(f"{url}/api/analyze", files={"image": ("face.jpg", image, "image/jpeg")},
                                        timeout=60)
                    key = str(resp.status_code)
                except requests.RequestException as exc:
                    key = type(exc).__name__
                with lock:
                    outcomes[key] += 1

    watchers = [Viewer(url, cookie) for _ in range(viewers)]
    for v in watchers:
        v.start()
    clients = [threading.Thread(target=upload, daemon=True) for _ in range(uploaders)]
    for c in clients:
        c.start()
    time.sleep(seconds)
    stop.set()
    for c in clients:
        c.join(90)
    for v in watchers:
        v.vanish()  # all viewers gone at once, mid-stream
    for v in watchers:
        v.join(10)
    return {"uploads": dict(outcomes), "uploads_total": sum(outcomes.values()),
            "viewer_status": [v.status for v in watchers], "viewer_frames": [v.frames for v in watchers],
            "viewer_errors": [v.error for v in watchers if v.error]}


def run_load(appliance, password: str, viewers: int, uploaders: int, seconds: float, image_path: Path,
             settle_s: float = 3.0, idle_s: float = 3.0, warmup_s: float = 3.0) -> dict:
    """Measure the appliance (in this process) while a client process loads it."""
    import subprocess

    def clients(secs: float) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, __file__, "--client", appliance.url, "--password", password,
                                 "--viewers", str(viewers), "--uploaders", str(uploaders), "--seconds", str(secs),
                                 "--image", str(image_path)], stdout=subprocess.PIPE, text=True)

    time.sleep(1.0)  # let start-up settle (first frames, threads)
    cold = counts()
    # a warm-up round: every web worker opens its own SQLite connection (3 fds) once and
    # the store writer starts on the first row; those stay, bounded, and are not leaks
    warm_out, _ = clients(min(warmup_s, seconds)).communicate(timeout=180)
    warmup = json.loads(warm_out)
    time.sleep(settle_s)
    before = counts()
    idle = loop_fps(appliance.loop, idle_s)
    client = clients(seconds)
    time.sleep(min(2.0, seconds / 4))  # clients connected
    loaded = loop_fps(appliance.loop, max(1.0, seconds - min(2.0, seconds / 4) - 0.5))
    out, _ = client.communicate(timeout=seconds + 180)
    result = json.loads(out)
    deadline = time.monotonic() + settle_s + 12  # the server notices dead viewers at its next write
    while time.monotonic() < deadline:
        time.sleep(0.5)
        after = counts()
        if after[0] <= before[0] and after[1] <= before[1] and appliance.app.config["viewers"].count == 0:
            break
    after = counts()
    viewer_slots = appliance.app.config["viewers"].count
    report = {
        "viewers": viewers, "uploaders": uploaders, "seconds": seconds,
        "fps_idle": round(idle, 2), "fps_loaded": round(loaded, 2),
        "fps_ratio": round(loaded / idle, 3) if idle else None,
        **result,
        "warmup_uploads": warmup["uploads"], "warmup_viewer_errors": warmup["viewer_errors"],
        "threads_cold": cold[0], "fds_cold": cold[1] + cold[2],
        "threads_before": before[0], "threads_after": after[0],
        "fds_before": before[1], "fds_after": after[1],  # sockets, files, pipes: everything but SQLite's
        "sqlite_fds_before": before[2], "sqlite_fds_after": after[2],
        "viewer_slots_in_use_after": viewer_slots,
        "loop_alive": appliance.loop.alive, "dropped_frames": appliance.loop.health.dropped,
    }
    report["all_answered"] = (set(result["uploads"]) <= {"200"} and set(warmup["uploads"]) <= {"200"}
                              and result["uploads_total"] > 0 and not warmup["viewer_errors"]
                              and all(s == 200 for s in result["viewer_status"]) and not result["viewer_errors"])
    report["leak_free"] = (after[0] <= before[0] and after[1] <= before[1] and viewer_slots == 0
                           and after[2] <= 3 * after[0])  # at most one connection per thread
    return report


def appliance_config(tmp: Path, viewers: int):
    """The appliance's config in ``tmp``: defaults but its own data folder, a free port and room for ``viewers``.

    The file says ``# defaults``: an empty config file is refused (a power cut's mark), which crashed every run."""
    from edge_app import config as config_mod

    conf = tmp / "config.toml"
    conf.write_text("# defaults\n")
    return config_mod.load(conf, {"store.data_dir": str(tmp / "data"), "web.port": 0,
                                  "indicators.backend": "none", "web.max_viewers": max(4, viewers),
                                  "privacy.keep_uploads": "none"})


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--viewers", type=int, default=8)
    p.add_argument("--uploaders", type=int, default=20)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--image", type=Path, help="the photo to upload (default: the shipped Grace Hopper portrait)")
    p.add_argument("--client", metavar="URL", help=argparse.SUPPRESS)  # internal: be the client process
    p.add_argument("--password", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.client:
        print(json.dumps(client_load(args.client, args.password, args.viewers, args.uploaders, args.seconds,
                                     args.image.read_bytes())))
        return 0

    from edge_app.runtime.appliance import Appliance
    from edge_app.vision.faces import PHOTOS

    image = args.image or Path(str(PHOTOS / "grace_hopper.jpg"))
    password = "load-test-password-1"
    os.environ["ENGAGE_ADMIN_PASSWORD"] = password
    with tempfile.TemporaryDirectory(prefix="engage-load-") as tmp:
        appliance = Appliance(appliance_config(Path(tmp), args.viewers)).start()
        try:
            report = run_load(appliance, password, args.viewers, args.uploaders, args.seconds, image)
        finally:
            appliance.stop()
    report["fps_within_20pct"] = report["fps_ratio"] is not None and report["fps_ratio"] >= 0.8
    print(json.dumps(report, indent=2))
    ok = report["all_answered"] and report["leak_free"] and report["fps_within_20pct"]
    print("OK" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
