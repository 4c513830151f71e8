"""Measure head yaw on FER+ training faces, for ``detector.TURNED_AWAY_YAW``.

No labelled yaw is at hand, so the threshold rests on three things: the shipped Migrant
Mother (a three-quarter view looking at the camera), the demo's cameraman turned
sideways, and how FER2013's faces, mostly facing the camera, spread. This runs the
shipped BlazeFace on FER+ training images (upscaled 4x and padded, as
``fer_framing.py`` does), then the face check (``FaceCheck.look``) on the best
plausible detection, and prints the spread of |yaw| (faces the face check believes,
presence >= ``presence_min``), how many reach each threshold and how many the ear rule
(``ear_asymmetry >= TURNED_AWAY``) calls turned; ``--sheet FILE`` writes ten faces per
yaw band as one picture, to look at (never commit it: FER images are not ours).

    python tools/fer_yaw.py --data DIR/ferplus [--start 0] [--limit 2500] [--sheet /tmp/yaw.png]

Only the training split is read (never test).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fer_framing import best_detection  # noqa: E402

from edge_app.vision.blazeface import BlazeFace, FaceCheck  # noqa: E402
from edge_app.vision.detector import TURNED_AWAY, TURNED_AWAY_YAW, ear_asymmetry  # noqa: E402

BANDS = ((0, 10), (10, 15), (15, 20), (20, 25), (25, 30), (30, 35), (35, 40), (40, 50), (50, 90))


def measure(folder: Path, start: int, limit: int) -> tuple[list[dict], int]:
    """The faces the face check believes, and how many images were read (fewer than
    ``limit`` past the end of the split)."""
    net, check = BlazeFace(), FaceCheck()
    rows = []
    names = sorted(p.name for p in folder.glob("*.png"))[start:start + limit]
    for name in names:
        best = best_detection(net, cv2.imread(str(folder / name), cv2.IMREAD_GRAYSCALE), 0.5)
        if best is None:
            continue
        canvas, d = best
        look = check.look(canvas, d.box, d.keypoints[0], d.keypoints[1])
        if look.presence >= check.presence_min:
            rows.append({"name": name, "yaw": look.yaw, "ear": ear_asymmetry(d.keypoints)})
    return rows, len(names)


def summary(rows: list[dict], images: int) -> dict:
    yaw = np.abs([r["yaw"] for r in rows])
    ear = np.array([r["ear"] for r in rows]) >= TURNED_AWAY
    pct = lambda m: round(100 * float(np.mean(m)), 2)  # noqa: E731
    return {
        "images": images, "faces": len(rows),
        "abs_yaw_percentiles": {q: round(float(np.percentile(yaw, q)), 1) for q in (50, 90, 95, 98, 99)},
        "percent_at_or_above": {t: pct(yaw >= t) for t in (20, 25, 30, TURNED_AWAY_YAW, 40)},
        "percent_ear_rule_turned": pct(ear),
        "percent_ear_turned_but_under_yaw": pct(ear & (yaw < TURNED_AWAY_YAW)),
        "percent_yaw_turned_but_ears_not": pct(~ear & (yaw >= TURNED_AWAY_YAW)),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="the extracted ferplus/ folder")
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--limit", type=int, default=2500)
    ap.add_argument("--sheet", type=Path, help="write ten faces per yaw band to this picture")
    args = ap.parse_args()
    folder = args.data / "FER2013Train"
    if not folder.is_dir():
        print(f"error: {folder} does not exist: extract ../shared/data/ferplus.tar.gz (see its README)", file=sys.stderr)
        return 2
    rows, images = measure(folder, args.start, args.limit)
    if not rows:
        print("error: no faces found; is --data the ferplus/ folder?", file=sys.stderr)
        return 1
    print(json.dumps(summary(rows, images), indent=2))
    if args.sheet:
        lines = []
        for lo, hi in BANDS:
            band = [r for r in rows if lo <= abs(r["yaw"]) < hi][:10]
            faces = [cv2.imread(str(folder / r["name"]), cv2.IMREAD_GRAYSCALE) for r in band]
            tiles = [cv2.resize(f, (96, 96)) for f in faces if f is not None]
            tiles += [np.zeros((96, 96), np.uint8)] * (10 - len(tiles))
            lines.append(np.hstack(tiles))
        cv2.imwrite(str(args.sheet), np.vstack(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
