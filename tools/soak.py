#!/usr/bin/env python3
"""Soak test: run ``engage-edge run`` on the demo source for N minutes and watch its memory.

Reports resident memory (VmRSS from /proc) after a warm-up, then every ``--every``
seconds, and at the end; fails (exit 1) when the end RSS exceeds ``--max-mb`` or grew
more than ``--max-growth-mb`` over the run. It also reads /healthz and /metrics at the
end, so a loop that died or stalled shows up too.

    python tools/soak.py                 # 10 minutes
    python tools/soak.py --minutes 1     # a quick check
"""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def rss_mb(pid: int) -> float:
    m = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    if m is None:
        raise SystemExit(f"error: /proc/{pid}/status has no VmRSS line: is process {pid} still running?")
    return int(m.group(1)) / 1024


def threads_fds(pid: int) -> tuple[int, int]:
    return len(os.listdir(f"/proc/{pid}/task")), len(os.listdir(f"/proc/{pid}/fd"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--warmup", type=float, default=20.0, help="seconds before the start figure is taken")
    p.add_argument("--every", type=float, default=30.0, help="seconds between samples")
    p.add_argument("--max-mb", type=float, default=250.0)
    p.add_argument("--max-growth-mb", type=float, default=15.0)
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="engage-soak-") as tmp:
        cfg = Path(tmp) / "config.toml"
        cfg.write_text('[indicators]\nbackend = "none"\n')
        env = {**os.environ, "ENGAGE_ADMIN_PASSWORD": "soak-test-password-1", "PYTHONUNBUFFERED": "1"}
        cmd = [sys.executable, "-m", "edge_app", "run", "--config", str(cfg), "--source", "demo",
               "--port", "0", "--data-dir", str(Path(tmp) / "data")]
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
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
            # keep reading its output so a full pipe never blocks it
            import threading

            threading.Thread(target=lambda: [None for _ in out], daemon=True).start()
            time.sleep(args.warmup)
            start = rss_mb(proc.pid)
            t_start = time.monotonic()
            print(f"pid {proc.pid} at {url}; after {args.warmup:.0f} s warm-up: RSS {start:.1f} MB, "
                  f"threads/fds {threads_fds(proc.pid)}", flush=True)
            samples = [start]
            end_at = t_start + args.minutes * 60
            while time.monotonic() < end_at:
                time.sleep(min(args.every, max(0.0, end_at - time.monotonic())))
                if proc.poll() is not None:
                    print(f"error: engage-edge exited with {proc.returncode} during the soak", file=sys.stderr)
                    return 1
                samples.append(rss_mb(proc.pid))
                print(f"  {time.monotonic() - t_start:6.0f} s  RSS {samples[-1]:.1f} MB", flush=True)
            end = rss_mb(proc.pid)
            tf = threads_fds(proc.pid)
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
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    growth = end - start
    report = {"minutes": args.minutes, "rss_start_mb": round(start, 1), "rss_end_mb": round(end, 1),
              "rss_max_mb": round(max(samples + [end]), 1), "growth_mb": round(growth, 1),
              "threads": tf[0], "fds": tf[1], "health": health.get("status"), "reasons": health.get("reasons"),
              "fps": health.get("fps"), "frames": float(frames.group(1)) if frames else None,
              "dropped": float(dropped.group(1)) if dropped else None, "exit_code": proc.returncode}
    print(json.dumps(report, indent=2))
    ok = end < args.max_mb and growth < args.max_growth_mb
    print("OK: memory flat and under the limit" if ok else
          f"FAIL: end RSS {end:.1f} MB (limit {args.max_mb:g}), growth {growth:.1f} MB (limit {args.max_growth_mb:g})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
