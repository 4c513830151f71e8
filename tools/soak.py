#!/usr/bin/env python3
"""Soak test: run ``engage-edge run`` on the demo source for N minutes and watch it age.

Reports resident memory (VmRSS from /proc), threads, open file descriptors, the
database's write-ahead log and the lines the service logged, after a warm-up, then every
``--every`` seconds, and at the end; fails (exit 1) when the end RSS exceeds ``--max-mb``
or grew more than ``--max-growth-mb`` over the run, or when threads, descriptors or
temporary files kept growing over the run's second half (a pool filling up in the first is
not a leak; one a school term of uptime would turn into a dead desk is).
It also reads /healthz and /metrics at the end, so a loop that died or stalled shows up too.

``--load`` adds clients that do what a term of classes does, over and over: log in and
out, open and drop the live stream, upload photos, page through the admin log, poll the
state, and fail log-ins from many addresses (through a trusted proxy's X-Forwarded-For).
``--purge-every`` runs the hourly clean-up that often instead, so a short soak goes
through it many times.

    python tools/soak.py                          # 10 minutes, idle
    python tools/soak.py --minutes 12 --load      # 12 minutes with clients
    python tools/soak.py --minutes 1              # a quick check
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PHOTOS = ROOT / "edge_app" / "vision" / "photos"
PASSWORD = "soak-test-password-1"
# the child: ``engage-edge run``, its hourly clean-up every ``argv[1]`` seconds instead (0: as shipped)
CHILD = """import sys
every = float(sys.argv.pop(1))
if every:
    from edge_app.store import housekeeping
    plain = housekeeping.Housekeeping.__init__
    def faster(self, *args, **kwargs):
        kwargs.setdefault("every_s", every)
        kwargs.setdefault("mark_every_s", max(1.0, every / 6))
        plain(self, *args, **kwargs)
    housekeeping.Housekeeping.__init__ = faster
from edge_app.cli import main
sys.exit(main())
"""


def rss_mb(pid: int) -> float:
    m = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    if m is None:
        raise SystemExit(f"error: /proc/{pid}/status has no VmRSS line: is process {pid} still running?")
    return int(m.group(1)) / 1024


def threads_fds(pid: int) -> tuple[int, int]:
    return len(os.listdir(f"/proc/{pid}/task")), len(os.listdir(f"/proc/{pid}/fd"))


def fd_kinds(pid: int) -> Counter:
    """Open descriptors by what they point at: socket, pipe, the database's files, other files."""
    kinds: Counter = Counter()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if not target.startswith("/"):
            kinds[target.split(":", 1)[0]] += 1  # socket, pipe, anon_inode
        else:
            kinds["engage.db*" if Path(target).name.startswith("engage.db") else "file"] += 1
    return kinds


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def count_files(folder: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(folder))


class Load:
    """Clients that keep the device busy as classes would, each in its own thread and at a
    gentle pace (the soak must not need more than the machine has to spare)."""

    def __init__(self, url: str, scale: float = 1.0):
        self.url, self.scale = url, scale
        self.stop = threading.Event()
        self.counts: Counter = Counter()
        self.errors: Counter = Counter()
        self._lock = threading.Lock()
        self.threads: list[threading.Thread] = []
        self.photos = sorted(PHOTOS.glob("*.jpg"))

    def _count(self, what: str, ok: bool, detail: str = "") -> None:
        with self._lock:
            self.counts[what] += 1
            if not ok:
                self.errors[f"{what}: {detail}"[:120]] += 1

    def _every(self, seconds: float, what: str, step) -> None:
        import requests

        while not self.stop.wait(seconds * self.scale * random.uniform(0.7, 1.3)):
            try:
                step()
            except requests.RequestException as exc:
                self._count(what, False, type(exc).__name__)
            except Exception as exc:  # the soak goes on; what failed is reported
                self._count(what, False, f"{type(exc).__name__}: {exc}")

    def session(self):
        import requests

        s = requests.Session()
        r = s.post(f"{self.url}/api/login", json={"username": "admin", "password": PASSWORD}, timeout=30)
        r.raise_for_status()
        s.headers["X-CSRF-Token"] = r.json()["csrf"]
        return s

    def start(self) -> None:
        admin = self.session()

        def login_logout():
            s = self.session()
            s.get(f"{self.url}/live", timeout=30)
            r = s.post(f"{self.url}/logout", timeout=30, allow_redirects=False)
            self._count("log in/out", r.status_code in (302, 303), str(r.status_code))

        def stream():
            with admin.get(f"{self.url}/live.mjpg", stream=True, timeout=30) as r:
                ok = r.status_code == 200
                if ok:
                    got = 0
                    for chunk in r.iter_content(65536):
                        got += len(chunk)
                        if got > random.randint(50_000, 400_000):
                            break  # a closed tab: dropped mid-stream
                self._count("live stream" if r.status_code != 503 else "live stream refused (503)", ok or r.status_code == 503,
                            str(r.status_code))

        def upload():
            photo = random.choice(self.photos)
            r = admin.post(f"{self.url}/api/analyze", files={"image": (photo.name, photo.read_bytes(), "image/jpeg")},
                           timeout=60)
            self._count("upload" if r.status_code != 503 else "upload busy (503)", r.status_code in (200, 503),
                        f"{r.status_code} {r.text[:60]}")

        def admin_log():
            page = random.randint(1, 40)
            r = admin.get(f"{self.url}/api/admin/log", params={"page": page}, timeout=30)
            self._count("admin log", r.status_code in (200, 400), str(r.status_code))
            r = admin.get(f"{self.url}/admin/log", params={"page": random.randint(1, 5)}, timeout=30)
            self._count("admin log page", r.status_code == 200, str(r.status_code))

        def poll():
            for path in ("/api/state", "/api/timeline", "/api/privacy", "/api/session", "/healthz"):
                r = admin.get(self.url + path, timeout=30)
                self._count("poll", r.status_code < 500, f"{path} {r.status_code}")

        def failed_logins():
            import requests

            address = f"10.{random.randint(0, 255)}.{random.randint(0, 255)}.{random.randint(1, 254)}"
            name = random.choice(["admin", f"student{random.randint(1, 10_000)}"])
            r = requests.post(f"{self.url}/api/login", json={"username": name, "password": "wrong-password-9"},
                              headers={"X-Forwarded-For": address}, timeout=30)
            self._count("failed log-in", r.status_code in (401, 429), str(r.status_code))

        for seconds, what, step in ((2.0, "log in/out", login_logout), (3.0, "live stream", stream),
                                    (4.0, "upload", upload), (2.0, "admin log", admin_log), (1.0, "poll", poll),
                                    (0.5, "failed log-in", failed_logins)):
            t = threading.Thread(target=self._every, args=(seconds, what, step), name=what, daemon=True)
            t.start()
            self.threads.append(t)

    def close(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(60)


def per_hour(samples: list[dict], key: str) -> float:
    """The least-squares slope of ``key`` over ``samples``, per hour (noise of a few MB
    from one sample to the next, as malloc takes and gives back, does not swing it)."""
    n = len(samples)
    if n < 2:
        return 0.0
    xs, ys = [s["s"] for s in samples], [s[key] for s in samples]
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    spread = sum((x - mean_x) ** 2 for x in xs)
    return 3600 * sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / spread if spread else 0.0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--warmup", type=float, default=20.0, help="seconds before the start figure is taken")
    p.add_argument("--every", type=float, default=30.0, help="seconds between samples")
    p.add_argument("--max-mb", type=float, default=250.0)
    p.add_argument("--max-growth-mb", type=float, default=15.0)
    p.add_argument("--load", action="store_true", help="clients log in, stream, upload, page the log, fail log-ins")
    p.add_argument("--pace", type=float, default=1.0, help="--load's pauses times this (2: half as busy)")
    p.add_argument("--fps", type=int, default=15, help="camera.fps of the demo source")
    p.add_argument("--purge-every", type=float, default=0.0,
                   help="seconds between the clean-ups (0: hourly, as shipped)")
    p.add_argument("--log", type=Path, help="write the service's own output to this file too")
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="engage-soak-") as tmp:
        cfg = Path(tmp) / "config.toml"
        cfg.write_text(f'[indicators]\nbackend = "none"\n[camera]\nfps = {args.fps}\n'
                       '[store]\nreserve_mb = 1\n[web]\ntrusted_proxies = "127.0.0.1"\n')
        scratch = Path(tmp) / "tmp"  # the service's own temporary files, counted
        scratch.mkdir()
        data = Path(tmp) / "data"
        env = {**os.environ, "ENGAGE_ADMIN_PASSWORD": PASSWORD, "PYTHONUNBUFFERED": "1", "TMPDIR": str(scratch)}
        cmd = [sys.executable, "-c", CHILD, str(args.purge_every), "run", "--config", str(cfg), "--source", "demo",
               "--port", "0", "--data-dir", str(data)]
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        load: Load | None = None
        lines: list[str] = []
        try:
            out = proc.stdout
            assert out is not None  # stdout=PIPE
            url = None
            deadline = time.monotonic() + 60
            while url is None and time.monotonic() < deadline:
                line = out.readline()
                if not line:
                    break
                m = re.search(r"web UI at (\S+)", line)
                if m:
                    url = m.group(1)
            if url is None:
                proc.kill()
                print("error: engage-edge run did not start:", out.read(), file=sys.stderr)
                return 1
            # keep reading its output so a full pipe never blocks it; the lines are counted (log volume)
            def keep() -> None:
                with open(args.log or os.devnull, "w") as copy:
                    for line in out:
                        lines.append(line)
                        copy.write(line)
                        copy.flush()

            threading.Thread(target=keep, daemon=True).start()
            if args.load:
                load = Load(url, args.pace)
                load.start()
            time.sleep(args.warmup)
            wal = data / "engage.db-wal"

            def sample() -> dict:
                t, f = threads_fds(proc.pid)
                return {"s": round(time.monotonic() - t_start), "rss": round(rss_mb(proc.pid), 1), "threads": t, "fds": f,
                        "wal_kb": file_size(wal) // 1024, "db_kb": file_size(data / "engage.db") // 1024,
                        "tmp_files": count_files(scratch), "log_lines": len(lines)}

            t_start = time.monotonic()
            samples = [sample()]
            start = samples[0]["rss"]
            print(f"pid {proc.pid} at {url}; after {args.warmup:.0f} s warm-up: {samples[0]}", flush=True)
            print(f"  fds {dict(fd_kinds(proc.pid))}", flush=True)
            end_at = t_start + args.minutes * 60
            while time.monotonic() < end_at:
                time.sleep(min(args.every, max(0.0, end_at - time.monotonic())))
                if proc.poll() is not None:
                    print(f"error: engage-edge exited with {proc.returncode} during the soak", file=sys.stderr)
                    return 1
                samples.append(sample())
                print(f"  {samples[-1]}", flush=True)
            end = rss_mb(proc.pid)
            tf = threads_fds(proc.pid)
            print(f"  fds {dict(fd_kinds(proc.pid))}", flush=True)
            if load is not None:
                load.close()
            try:
                with urllib.request.urlopen(url + "/healthz", timeout=10) as r:
                    health = json.loads(r.read())
            except urllib.error.HTTPError as exc:
                health = json.loads(exc.read())
            with urllib.request.urlopen(url + "/metrics", timeout=10) as r:
                metrics = r.read().decode()
            frames = re.search(r"^engage_frames_captured_total (\S+)", metrics, re.M)
            dropped = re.search(r"^engage_frames_dropped_total (\S+)", metrics, re.M)
        finally:  # however the soak ends (an error, Ctrl-C), the appliance ends with it, not left running on a deleted folder
            if load is not None:
                load.stop.set()
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    growth = end - start
    # the second half: a pool filling up (a thread, a connection and its cache each) is not a leak
    later = samples[len(samples) // 2:]
    slopes = {k: round(per_hour(later, k), 1) for k in ("rss", "threads", "fds", "tmp_files")}
    minutes_run = max(1e-9, samples[-1]["s"] / 60)
    report = {"minutes": args.minutes, "rss_start_mb": round(start, 1), "rss_end_mb": round(end, 1),
              "rss_max_mb": round(max([s["rss"] for s in samples] + [end]), 1), "growth_mb": round(growth, 1),
              "second_half_per_hour": slopes, "threads": tf[0], "fds": tf[1],
              "wal_kb_max": max(s["wal_kb"] for s in samples),
              "log_lines_per_hour": round((samples[-1]["log_lines"] - samples[0]["log_lines"]) / minutes_run * 60),
              "health": health.get("status"), "reasons": health.get("reasons"),
              "fps": health.get("fps"), "frames": float(frames.group(1)) if frames else None,
              "dropped": float(dropped.group(1)) if dropped else None, "exit_code": proc.returncode}
    if load is not None:
        report["requests"] = dict(load.counts)
        report["request_errors"] = dict(load.errors.most_common(10))
    print(json.dumps(report, indent=2))
    growing = [k for k in ("threads", "fds", "tmp_files") if len(later) > 2 and later[-1][k] > later[0][k] + 2
               and slopes[k] > 0]
    ok = end < args.max_mb and growth < args.max_growth_mb and not growing
    print("OK: memory, threads and descriptors flat, memory under the limit" if ok else
          f"FAIL: end RSS {end:.1f} MB (limit {args.max_mb:g}), growth {growth:.1f} MB (limit {args.max_growth_mb:g})"
          + (f"; still growing after the warm-up: {', '.join(growing)}" if growing else ""))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
