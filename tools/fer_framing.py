"""Measure how FER2013 frames a face, for ``edge_app/vision/align.py``.

The emotion model was trained on FER2013's 48x48 crops, so the live crop should frame a
face the way those crops do. This runs the shipped BlazeFace detector on FER+ training
images (upscaled 4x and padded, so the face is a normal size for the detector) and
reports where the eyes sit, as fractions of the 48x48 crop: the mean eye positions, the
eye midpoint, the inter-ocular distance, and how tilted FER faces are (FER2013 crops
were not rotated, so the tilt is spread around level). Faces turned away are left out
by the device's own rule (``detector.turned_away``: the face check's yaw, or the ear
keypoints with ``--ear-rule``, the rule the shipped template was first measured with).

    python tools/fer_framing.py --data ~/.cache/engage-data/ferplus [--split FER2013Train] [--limit 4000] [--ear-rule]

Only the training split is read (never test). The numbers printed go into
``align.FER_TEMPLATE`` and ``models/MODEL_CARD.md``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge_app.vision.blazeface import BlazeFace, FaceCheck  # noqa: E402
from edge_app.vision.detector import plausible, turned_away  # noqa: E402

UP = 4  # 48 -> 192 pixels
PAD = 96  # grey border around the upscaled face: the detector expects some context


def best_detection(net: BlazeFace, img: np.ndarray | None, min_score: float):
    """A 48x48 FER image upscaled ``UP`` times on a ``PAD`` border of its mean grey, and
    the best-scoring plausible BlazeFace detection on it: ``(canvas, detection)``, or
    None when the image is not 48x48 or no face is found."""
    if img is None or img.shape != (48, 48):
        return None
    big = cv2.resize(img, (48 * UP, 48 * UP), interpolation=cv2.INTER_CUBIC)
    canvas = cv2.copyMakeBorder(big, PAD, PAD, PAD, PAD, cv2.BORDER_CONSTANT, value=int(img.mean()))
    found = [d for d in net.detect(canvas, min_score) if plausible(d.box, d.keypoints, 48)]
    return (canvas, max(found, key=lambda d: d.score)) if found else None


def measure(folder: Path, limit: int, min_score: float = 0.6, ear_rule: bool = False) -> dict:
    net, check = BlazeFace(), (None if ear_rule else FaceCheck())
    names = sorted(p.name for p in folder.glob("*.png"))[:limit]
    eyes, mouths, turned, doubted = [], [], 0, 0
    for name in names:
        best = best_detection(net, cv2.imread(str(folder / name), cv2.IMREAD_GRAYSCALE), min_score)
        if best is None:
            continue
        canvas, d = best
        yaw = None
        if check is not None:
            look = check.look(canvas, d.box, d.keypoints[0], d.keypoints[1])
            if look.presence < check.presence_min:
                doubted += 1
                continue  # the device would not believe it either
            yaw = look.yaw
        if turned_away(d.keypoints, yaw):
            turned += 1
            continue  # a turned head's eyes say little about the frontal framing
        kp = (d.keypoints - PAD) / (48 * UP)  # fractions of the 48x48 crop
        eyes.append(kp[:2])
        mouths.append(kp[3])
    if not eyes:  # nothing to average: an IndexError further down
        raise SystemExit(f"error: no frontal face measured in {len(names)} images of {folder} ({turned} turned away, "
                         f"{doubted} doubted by the face check): is --data the ferplus/ folder, and --limit above 0?")
    e = np.asarray(eyes)
    right, left = e[:, 0], e[:, 1]
    mid = (right + left) / 2
    iod = np.hypot(*(left - right).T)
    tilt = np.degrees(np.arctan2(left[:, 1] - right[:, 1], left[:, 0] - right[:, 0]))
    m = np.asarray(mouths)
    r4 = lambda v: [round(float(x), 4) for x in np.atleast_1d(v)]  # noqa: E731
    return {
        "split": folder.name, "rule": "ears" if ear_rule else "yaw", "images": len(names),
        "frontal_faces_measured": len(e), "turned_away": turned, "doubted_by_face_check": doubted,
        "detected_rate": round((len(e) + turned + doubted) / max(1, len(names)), 4),
        "right_eye_mean": r4(right.mean(0)), "left_eye_mean": r4(left.mean(0)),
        "eye_mid_mean": r4(mid.mean(0)), "eye_mid_median": r4(np.median(mid, 0)), "eye_mid_std": r4(mid.std(0)),
        "iod_mean": r4(iod.mean())[0], "iod_median": r4(np.median(iod))[0], "iod_std": r4(iod.std())[0],
        "mouth_mean": r4(m.mean(0)),
        "tilt_deg_mean": round(float(tilt.mean()), 2), "tilt_deg_std": round(float(tilt.std()), 2),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="the extracted ferplus/ folder")
    ap.add_argument("--split", default="FER2013Train", choices=["FER2013Train", "FER2013Valid"])
    ap.add_argument("--limit", type=int, default=4000)
    ap.add_argument("--ear-rule", action="store_true",
                    help="leave out turned heads by BlazeFace's ears, without the face check (the first measurement)")
    args = ap.parse_args()
    folder = args.data / args.split
    if not folder.is_dir():
        print(f"error: {folder} does not exist: extract ../shared/data/ferplus.tar.gz (see its README)", file=sys.stderr)
        return 2
    print(json.dumps(measure(folder, args.limit, ear_rule=args.ear_rule), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
