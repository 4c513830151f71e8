"""Time per face of emotion models, side by side, the way the device spends it.

Each model is timed in its own process (two interpreters in one process disturb each
other's timings), one LiteRT thread, through ``EmotionClassifier.probabilities`` (resize,
every view the manifest lists, quantise, invoke, normalise), in alternating rounds so
that a busy spell of the machine falls on every model alike. The first model is the
baseline: the others are reported as a ratio of its median.

    python tools/model_speed.py BASELINE.json OTHER.json [...] [--rounds 5] [--faces 400]

Arguments are model manifests (``.json`` beside the ``.tflite``). Faces are 48x48
grayscale crops made from a fixed seed (timing does not depend on what they show).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def time_one(manifest: Path, faces: int, warmup: int) -> dict:
    """Seconds per face for ``faces`` faces after ``warmup`` untimed ones, and the number
    of views per face (run in a child process)."""
    from edge_app.vision.classifier import EmotionClassifier

    classifier = EmotionClassifier(manifest, threads=1)
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (64, 48, 48), dtype=np.uint8)
    for i in range(warmup):
        classifier.probabilities(crops[i % len(crops)])
    times = []
    for i in range(faces):
        start = time.perf_counter()
        classifier.probabilities(crops[i % len(crops)])
        times.append(time.perf_counter() - start)
    return {"times": times, "views": len(classifier.manifest.views)}


def measure(manifests: list[Path], rounds: int, faces: int, warmup: int) -> list[dict]:
    """Median and p95 milliseconds per face for each model over all rounds, in the order given:
    a row per position, so a model timed against itself (a baseline check) is two rows, not one."""
    samples: list[list[float]] = [[] for _ in manifests]
    views = [0] * len(manifests)
    for _ in range(rounds):
        for i, manifest in enumerate(manifests):
            out = subprocess.run([sys.executable, __file__, "--child", str(manifest), "--faces", str(faces),
                                  "--warmup", str(warmup)], capture_output=True, text=True, check=False)
            if out.returncode != 0:
                raise SystemExit(f"timing {manifest} failed:\n{out.stderr.strip()[-2000:]}")
            result = json.loads(out.stdout.strip().splitlines()[-1])
            samples[i] += result["times"]
            views[i] = result["views"]
    base = float(np.median(samples[0]))
    report = []
    for manifest, times, n_views in zip(manifests, samples, views):
        ms = np.asarray(times) * 1000
        report.append({"model": str(manifest), "median_ms": round(float(np.median(ms)), 4),
                       "p95_ms": round(float(np.percentile(ms, 95)), 4), "views": n_views,
                       "ratio": round(float(np.median(times)) / base, 3), "faces": len(times)})
    return report


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python tools/model_speed.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("manifests", nargs="+", type=Path, help="model manifests; the first is the baseline")
    p.add_argument("--rounds", type=int, default=5, help="alternating rounds (one process per model each)")
    p.add_argument("--faces", type=int, default=400, help="timed faces per model per round")
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(time_one(args.manifests[0], args.faces, args.warmup)))
        return 0
    for manifest in args.manifests:
        if not manifest.is_file():
            p.error(f"{manifest}: no such manifest (pass the .json beside each .tflite)")
    report = measure(args.manifests, args.rounds, args.faces, args.warmup)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{'model':<48} {'views':>5} {'median ms':>10} {'p95 ms':>8} {'x baseline':>10}")
    for r in report:
        print(f"{r['model']:<48} {r['views']:>5} {r['median_ms']:>10.4f} {r['p95_ms']:>8.4f} {r['ratio']:>10.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
