#!/usr/bin/env python3
"""Fleet benchmark: N simulated desks -> a real Mosquitto -> one classroom service.

Each desk is the device's real publishing path (its own SQLite store with the outbox,
and ``edge_app.fleet.publisher.Publisher``), without the camera loop; desks change
state at random (exponential gaps, ``--mean-gap`` seconds). A logged-in client follows
the classroom page's own Server-Sent Events stream and records when each change
arrives. Printed per N: state change -> classroom update latency p50/p95/p99, changes
delivered, and the classroom process's CPU (% of one core) and memory (RSS, peak).

    python tools/fleet_bench.py                 # N = 30, 100, 300
    python tools/fleet_bench.py --fleet 300 --duration 30 --json
    python tools/fleet_bench.py --fleet 300 --heartbeat 1    # heartbeats 30x the default's rate
"""
from __future__ import annotations

import argparse
import heapq
import json
import multiprocessing as mp
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
LEVELS = [("Engaged", "Engaged - paying attention"), ("Partially engaged", "Partially engaged - confused"),
          ("Not engaged", "Not engaged"), ("Distracted", "Distracted"), ("Absent", "Absent")]
ADMIN_PASSWORD = "bench-admin-pw-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited early (code {proc.returncode})")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{what} did not open port {port} in {timeout} s")


def start_broker(folder: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    conf = folder / "mosquitto.conf"
    conf.write_text(f"allow_anonymous true\npersistence false\nuser root\nmax_queued_messages 100000\n"
                    f"listener {port} 127.0.0.1\n")
    mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    proc = subprocess.Popen([mosquitto, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port, proc, "mosquitto")
    return proc, port


def desks_worker(ids: list[str], broker_port: int, folder: str, duration: float, mean_gap: float,
                 ready, go, done, out, heartbeat_s: float = 30.0) -> None:
    """One process running several simulated desks; reports how many changes it made.
    ``done`` is set after its last change, before the wait for it to arrive."""
    from edge_app.fleet.publisher import Publisher
    from edge_app.fleet.settings import MqttSettings
    from edge_app.store.database import Store

    desks = []
    for device_id in ids:
        store = Store(Path(folder) / device_id)
        settings = MqttSettings(host="127.0.0.1", port=broker_port, device_id=device_id, desk=f"Desk {device_id}",
                                heartbeat_s=heartbeat_s)
        desks.append((store, Publisher(settings, store, lambda: "bench").start()))
    deadline = time.monotonic() + 30
    while not all(p.status.connected for _, p in desks) and time.monotonic() < deadline:
        time.sleep(0.05)
    connected = sum(p.status.connected for _, p in desks)
    ready.set()
    go.wait()
    rng = random.Random(os.getpid())
    start = time.monotonic()
    queue = [(start + rng.expovariate(1 / mean_gap), i) for i in range(len(desks))]
    heapq.heapify(queue)
    made = 0
    last: dict[str, float] = {}
    shown: dict[int, str] = {}  # each desk's level now
    while queue:
        when, i = heapq.heappop(queue)
        if when - start > duration:
            break
        delay = when - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        # another level than the desk's last: the same one again leaves no message (with the emotion kept
        # on the desk, only a change of what leaves is sent), and would count as a change lost
        group, label = rng.choice([level for level in LEVELS if level[0] != shown.get(i)])
        shown[i] = group
        t = time.time()
        desks[i][0].log_state_change(t, label, group, None, None)  # the capture loop's write: row + outbox
        last[ids[i]] = t
        made += 1
        heapq.heappush(queue, (when + rng.expovariate(1 / mean_gap), i))
    done.set()
    time.sleep(2.0)  # let the last changes arrive before the publishers stop
    for store, pub in desks:
        pub.stop(timeout=1.0)
        store.close()
    out.put((made, connected, last))


def proc_stats(pid: int) -> tuple[float, int, int]:
    """(CPU seconds so far, RSS bytes, peak RSS bytes) of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return cpu, int(status["VmRSS"].split()[0]) * 1024, int(status["VmHWM"].split()[0]) * 1024


def follow(url: str, session: requests.Session, arrivals: dict, stop: threading.Event) -> None:
    """Read the page's SSE stream; note when each (desk, since) first arrives."""
    with session.get(f"{url}/api/classroom/events", stream=True, timeout=(5, 60)) as r:
        for line in r.iter_lines(decode_unicode=True):
            if stop.is_set():
                return
            if isinstance(line, str) and line.startswith("data: "):
                now = time.time()
                for d in json.loads(line[6:])["desks"]:
                    if d["since"] is not None:
                        arrivals.setdefault((d["device_id"], d["since"]), now)


def percentile(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))] if values else float("nan")


def run(n: int, duration: float, mean_gap: float, workers: int, heartbeat_s: float = 30.0) -> dict:
    folder = Path(tempfile.mkdtemp(prefix=f"fleet-bench-{n}-"))
    broker, broker_port = start_broker(folder)
    web_port = free_port()
    env = dict(os.environ, ENGAGE_ADMIN_PASSWORD=ADMIN_PASSWORD, PYTHONPATH=str(ROOT))
    classroom = subprocess.Popen([sys.executable, "-m", "edge_app", "--log-level", "WARNING", "classroom",
                                  "--mqtt-host", "127.0.0.1", "--mqtt-port", str(broker_port),
                                  "--port", str(web_port), "--data-dir", str(folder / "classroom")],
                                 env=env, stdout=subprocess.DEVNULL)
    procs: list[mp.Process] = []
    try:
        wait_port(web_port, classroom, "engage-edge classroom")
        url = f"http://127.0.0.1:{web_port}"
        session = requests.Session()
        session.post(f"{url}/api/login", json={"username": "admin", "password": ADMIN_PASSWORD}, timeout=10).raise_for_status()
        ids = [f"desk-{i:03d}" for i in range(n)]
        ready = [mp.Event() for _ in range(workers)]
        go = mp.Event()
        done = [mp.Event() for _ in range(workers)]
        out: mp.Queue[tuple] = mp.Queue()  # each worker: (messages made, desks connected, last send)
        for w in range(workers):
            p = mp.Process(target=desks_worker, args=(ids[w::workers], broker_port, str(folder), duration, mean_gap,
                                                      ready[w], go, done[w], out, heartbeat_s), daemon=True)
            p.start()
            procs.append(p)
        for event in ready:
            event.wait(120)
        arrivals: dict = {}
        stop = threading.Event()
        threading.Thread(target=follow, args=(url, session, arrivals, stop), daemon=True).start()
        time.sleep(1.0)  # the stream's first (full) event, and every desk's first availability
        arrivals.clear()
        cpu0, _, _ = proc_stats(classroom.pid)
        t0 = time.monotonic()
        go.set()
        # CPU over the changes only: the workers' 2 s wait for the last to arrive and their shut-down
        # (about 10% of a 20 s run) were counted as time the classroom had nothing to do
        for event in done:
            event.wait(duration + 120)
        wall = time.monotonic() - t0
        cpu1, rss, peak = proc_stats(classroom.pid)
        reports = [out.get(timeout=120) for _ in procs]
        stop.set()
        made = sum(r[0] for r in reports)
        last = {k: v for r in reports for k, v in r[2].items()}
        shown = {d["device_id"]: d["since"] for d in session.get(f"{url}/api/classroom", timeout=10).json()["desks"]}
        current = sum(shown.get(k) == v for k, v in last.items())
        latencies = [arrived - since for (_, since), arrived in arrivals.items()]
        return {"devices": n, "connected": sum(r[1] for r in reports), "changes": made, "delivered": len(latencies),
                "latest_shown": f"{current}/{len(last)}",
                "changes_per_s": round(made / duration, 1),
                "p50_ms": round(percentile(latencies, 50) * 1000, 1), "p95_ms": round(percentile(latencies, 95) * 1000, 1),
                "p99_ms": round(percentile(latencies, 99) * 1000, 1),
                "classroom_cpu_pct": round(100 * (cpu1 - cpu0) / wall, 1),
                "classroom_rss_mb": round(rss / 1e6, 1), "classroom_peak_rss_mb": round(peak / 1e6, 1)}
    finally:
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
        for child in (classroom, broker):  # a hung one is killed, not left running on a deleted folder
            child.terminate()
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        shutil.rmtree(folder, ignore_errors=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fleet", type=int, nargs="+", default=[30, 100, 300], help="numbers of desks to run")
    ap.add_argument("--duration", type=float, default=20.0, help="seconds of state changes per run")
    ap.add_argument("--mean-gap", type=float, default=5.0, help="mean seconds between one desk's state changes")
    ap.add_argument("--per-process", type=int, default=50,
                    help="desks per simulating process (paho's select() cannot watch descriptors past 1024, "
                         "and each desk's SQLite store holds several)")
    ap.add_argument("--heartbeat", type=float, default=30.0,
                    help="each desk's mqtt.heartbeat_s (the device's default; 0: off)")
    ap.add_argument("--json", action="store_true", help="one JSON object per run")
    args = ap.parse_args(argv)
    if not (shutil.which("mosquitto") or Path("/usr/sbin/mosquitto").exists()):
        print("error: mosquitto is missing: apt-get install mosquitto", file=sys.stderr)
        return 2
    if not args.json:
        print(f"{'desks':>5} {'conn.':>5} {'changes':>8} {'deliv.':>7} {'latest':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} "
              f"{'CPU %':>6} {'RSS MB':>7} {'peak MB':>8}")
    for n in args.fleet:
        r = run(n, args.duration, args.mean_gap, max(1, -(-n // args.per_process)), args.heartbeat)
        if args.json:
            print(json.dumps(r), flush=True)
        else:
            print(f"{r['devices']:>5} {r['connected']:>5} {r['changes']:>8} {r['delivered']:>7} {r['latest_shown']:>8} "
                  f"{r['p50_ms']:>8} {r['p95_ms']:>8} "
                  f"{r['p99_ms']:>8} {r['classroom_cpu_pct']:>6} {r['classroom_rss_mb']:>7} "
                  f"{r['classroom_peak_rss_mb']:>8}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
