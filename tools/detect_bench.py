"""Detection benchmark: BlazeFace (ours) against the seed paper's Haar cascades, side by side.

Data (all synthesised here from files on this machine; nothing is downloaded):

Needs scikit-image (the ``dev`` extra) for its photographs and LFW faces.

* faces: FER+ **test** faces (majority-vote emotion, not "not a face"), upscaled from
  48x48 to 96-288 pixels, rotated by -25, 0 or +25 degrees, blended with a soft edge
  into a 640x480 background at a random place; scikit-image's LFW faces (the first 100
  of ``lfw_subset``) the same way; and the two real photographs that ship in installed
  package (Grace Hopper, the astronaut) at three sizes and the
  three angles, on a background.
* no faces: 640x480 crops of scikit-image photographs without people (coffee, cat,
  rocket, brick, grass, gravel, moon, text, coins, horse, clock, cells, galaxies, ...),
  generated textures (smoothed noise at several grain sizes, stripes, checkerboards,
  gradients), and the 100 non-face patches of ``lfw_subset`` upscaled onto backgrounds.

A face counts as found when a detection's centre lies within 0.35 face sizes of the
true centre and its width is 0.4-1.6x the face's; any other detection is a false
positive. Every kind of detection counts (frontal and turned away), for both detectors.
Recall and false positives are those of a full search (BlazeFace: the whole frame and
every tile, each view that shows no face also mirrored, as for an upload; the live loop
covers the tiles over a few searches and does not look at mirror images). Time,
640x480, one thread (``cv2.setNumThreads(1)``, LiteRT ``num_threads=1``), medians: "ms
search" a full search, "ms frame" one whole-frame pass (BlazeFace without tiles: what the
live loop pays per search while a face is in view; Haar: the same full search).

    python tools/detect_bench.py --data ~/.cache/engage-data/ferplus [--faces 300] [--negatives 300] [--json]
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge_app.vision.detector import BlazeFaceDetector, FaceDetector  # noqa: E402

W, H = 640, 480
SIZES = (96, 144, 208, 288)
ANGLES = (-25, 0, 25)
PHOTOS = ("coffee", "chelsea", "rocket", "brick", "grass", "gravel", "moon", "text", "page", "coins", "horse",
          "clock", "cell", "hubble_deep_field", "immunohistochemistry", "stereo_motorcycle", "colorwheel",
          "shepp_logan_phantom", "binary_blobs")


def _gray(img: np.ndarray) -> np.ndarray:
    if img.ndim == 3:
        img = cv2.cvtColor(img[:, :, :3], cv2.COLOR_RGB2GRAY)
    if img.dtype != np.uint8:
        img = (np.clip(img.astype(np.float32) / max(1e-6, float(img.max())), 0, 1) * 255).astype(np.uint8)
    return img


def photo_backgrounds() -> list[np.ndarray]:
    import skimage.data

    out = []
    for name in PHOTOS:
        stereo = name == "stereo_motorcycle"
        # binary_blobs draws new blobs at every call unless seeded: the same command must
        # place the faces on the same backgrounds every run
        img = getattr(skimage.data, name)(**({"rng": 0} if name == "binary_blobs" else {}))
        out.append(_gray(img[0] if stereo else img))
    return out


def texture(rng: np.random.Generator) -> np.ndarray:
    kind = rng.integers(4)
    if kind == 0:  # smoothed noise, grain from fine to blotchy
        grain = int(rng.choice([4, 8, 16, 32, 64]))
        small = rng.integers(0, 256, (H // grain + 2, W // grain + 2)).astype(np.uint8)
        return cv2.resize(small, (W, H), interpolation=cv2.INTER_CUBIC)
    if kind == 1:  # stripes at an angle
        yy, xx = np.mgrid[0:H, 0:W]
        a, period = rng.uniform(0, np.pi), rng.uniform(6, 60)
        return (127 + 100 * np.sin((xx * np.cos(a) + yy * np.sin(a)) * 2 * np.pi / period)).astype(np.uint8)
    if kind == 2:  # checkerboard
        c = int(rng.integers(8, 80))
        yy, xx = np.mgrid[0:H, 0:W]
        return np.where(((xx // c) + (yy // c)) % 2, 200, 50).astype(np.uint8)
    yy, xx = np.mgrid[0:H, 0:W]  # gradient with noise
    g = (xx * rng.uniform(-0.3, 0.3) + yy * rng.uniform(-0.3, 0.3) + rng.uniform(60, 190))
    return np.clip(g + rng.normal(0, 12, (H, W)), 0, 255).astype(np.uint8)


def background(photos: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    if rng.random() < 0.35:
        return texture(rng)
    img = photos[int(rng.integers(len(photos)))]
    h, w = img.shape
    scale = max(W / w, H / h) * rng.uniform(1.0, 1.8)
    big = cv2.resize(img, (int(np.ceil(w * scale)), int(np.ceil(h * scale))), interpolation=cv2.INTER_LINEAR)
    y, x = int(rng.integers(0, big.shape[0] - H + 1)), int(rng.integers(0, big.shape[1] - W + 1))
    return np.ascontiguousarray(big[y:y + H, x:x + W])


def place(canvas: np.ndarray, tile: np.ndarray, size: int, angle: float, rng: np.random.Generator,
          feather: bool = True) -> tuple[float, float]:
    """Blend ``tile`` (square, the face filling it) at ``size`` px, rotated, at a random
    place; returns the face centre."""
    face = cv2.resize(tile, (size, size), interpolation=cv2.INTER_CUBIC if size > tile.shape[0] else cv2.INTER_AREA)
    mask: np.ndarray = np.ones((size, size), np.float32)
    if feather:
        edge = max(2, size // 12)
        mask = cv2.copyMakeBorder(np.ones((size - 2 * edge, size - 2 * edge), np.float32), edge, edge, edge, edge,
                                  cv2.BORDER_CONSTANT, value=0)
        mask = cv2.GaussianBlur(mask, (0, 0), edge / 2)
    pad = int(size * 0.25)
    side = size + 2 * pad
    face = cv2.copyMakeBorder(face, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
    mask = cv2.copyMakeBorder(mask, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
    rot = cv2.getRotationMatrix2D((side / 2, side / 2), angle, 1.0)
    face = cv2.warpAffine(face, rot, (side, side), flags=cv2.INTER_LINEAR)
    mask = cv2.warpAffine(mask, rot, (side, side), flags=cv2.INTER_LINEAR)
    x0 = int(rng.integers(-pad // 2, W - side + pad // 2 + 1))
    y0 = int(rng.integers(-pad // 2, H - side + pad // 2 + 1))
    cx0, cy0, cx1, cy1 = max(0, x0), max(0, y0), min(W, x0 + side), min(H, y0 + side)
    region = canvas[cy0:cy1, cx0:cx1].astype(np.float32)
    f = face[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0].astype(np.float32)
    m = mask[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]
    canvas[cy0:cy1, cx0:cx1] = (region * (1 - m) + f * m).astype(np.uint8)
    return x0 + side / 2, y0 + side / 2


def fer_test_faces(data: Path, limit: int, rng: np.random.Generator, split: str = "FER2013Test") -> list[np.ndarray]:
    folder = data / split
    rows = []
    with open(folder / "label.csv", newline="") as f:
        for row in csv.reader(f):
            votes = [int(v) for v in row[2:12]]
            votes = [0 if v == 1 else v for v in votes]  # FER+ majority rule: a single vote is an outlier
            top = int(np.argmax(votes))
            if top < 8 and votes[top] * 2 > sum(votes):
                rows.append(row[0])
    picks = rng.choice(len(rows), size=min(limit, len(rows)), replace=False)
    faces = []
    for i in sorted(picks):
        img = cv2.imread(str(folder / rows[i]), cv2.IMREAD_GRAYSCALE)
        if img is None:
            raise SystemExit(f"error: {folder / rows[i]} is not a readable image: check the FER+ data in {data}")
        faces.append(img)
    return faces


def real_photo_faces() -> list[tuple[np.ndarray, tuple[int, int, int]]]:
    """(image, (cx, cy, face size)) for the two portraits shipped in the package."""
    from edge_app.vision.faces import photo

    grace = cv2.cvtColor(photo("grace_hopper.jpg"), cv2.COLOR_BGR2GRAY)
    astronaut = cv2.cvtColor(photo("astronaut.jpg"), cv2.COLOR_BGR2GRAY)
    return [(grace, (266, 242, 200)), (astronaut, (224, 127, 95))]


def build(data: Path, n_faces: int, n_negatives: int, seed: int = 11, split: str = "FER2013Test"):
    rng = np.random.default_rng(seed)
    import skimage.data

    photos = photo_backgrounds()
    lfw = (skimage.data.lfw_subset() * 255).astype(np.uint8)
    positives: list[tuple[np.ndarray, list[tuple[float, float, int]], str]] = []
    combos = [(s, a) for s in SIZES for a in ANGLES]
    for i, tile in enumerate(fer_test_faces(data, n_faces, rng, split)):
        size, angle = combos[i % len(combos)]
        canvas = background(photos, rng)
        cx, cy = place(canvas, tile, size, angle, rng)
        positives.append((canvas, [(cx, cy, size)], f"fer+ {size}px"))
    for i in range(100):  # LFW faces (25x25 crops: the face fills the crop)
        size, angle = combos[(i * 7) % len(combos)]
        canvas = background(photos, rng)
        cx, cy = place(canvas, lfw[i], size, angle, rng)
        positives.append((canvas, [(cx, cy, int(size * 0.9))], "lfw"))
    for img, (fx, fy, fsize) in real_photo_faces():
        for scale in (0.6, 0.85, 1.1):
            for angle in ANGLES:
                canvas = background(photos, rng)
                h, w = img.shape
                s = min(scale * 300 / fsize * 1.0, 460 / h)
                small = cv2.resize(img, (int(w * s), int(h * s)), interpolation=cv2.INTER_AREA)
                rot = cv2.getRotationMatrix2D((fx * s, fy * s), angle, 1.0)
                small = cv2.warpAffine(small, rot, small.shape[::-1], borderMode=cv2.BORDER_REFLECT)
                sh, sw = small.shape
                x0, y0 = (W - sw) // 2 if sw < W else 0, (H - sh) // 2 if sh < H else 0
                canvas[y0:y0 + min(sh, H), x0:x0 + min(sw, W)] = small[:H, :W]
                positives.append((canvas, [(x0 + fx * s, y0 + fy * s, int(fsize * s))], "photo"))
    negatives = []
    for i in range(n_negatives):
        canvas = background(photos, rng)
        if i % 3 == 0:  # an LFW non-face patch (parts of the same photos the faces came from)
            place(canvas, lfw[100 + (i // 3) % 100], int(rng.choice(SIZES)), float(rng.choice(ANGLES)), rng)
        negatives.append(canvas)
    return positives, negatives


def matches(box, truth) -> bool:
    x, y, w, h = box
    cx, cy, size = truth
    return (abs(x + w / 2 - cx) <= 0.35 * size and abs(y + h / 2 - cy) <= 0.35 * size
            and 0.4 * size <= w <= 1.6 * size)


def evaluate(name: str, detector, positives, negatives) -> dict:
    """Recall and false positives of a full search (``tiles=True``: what an upload gets,
    and what the live loop covers within about a second); time of the full search and of
    one whole-frame pass (what the live loop pays per search while a face is in view)."""
    times, found, total, fp_pos, fp_neg = [], 0, 0, 0, 0
    by_source: dict[str, list[int]] = {}
    for canvas, truths, source in positives:
        source = "fer+ test" if source.startswith("fer+") else source
        t0 = time.perf_counter()
        faces = detector.detect(canvas, tiles=True)
        times.append(time.perf_counter() - t0)
        for t in truths:
            hit = any(matches(f.box, t) for f in faces)
            found += hit
            total += 1
            by_source.setdefault(source, [0, 0])
            by_source[source][0] += hit
            by_source[source][1] += 1
            if source == "fer+ test":
                key = f"fer+ {t[2]}px"
                by_source.setdefault(key, [0, 0])
                by_source[key][0] += hit
                by_source[key][1] += 1
        fp_pos += sum(1 for f in faces if not any(matches(f.box, t) for t in truths))
    for canvas in negatives:
        t0 = time.perf_counter()
        faces = detector.detect(canvas, tiles=True)
        times.append(time.perf_counter() - t0)
        fp_neg += len(faces)
    whole = []
    for canvas, _, _ in positives[:100]:
        t0 = time.perf_counter()
        detector.detect(canvas, tiles=False)
        whole.append(time.perf_counter() - t0)
    return {"detector": name, "recall": round(found / total, 4), "faces": total,
            "recall_by_source": {k: round(v[0] / v[1], 4) for k, v in by_source.items()},
            "fp_per_image_no_face": round(fp_neg / len(negatives), 4), "no_face_images": len(negatives),
            "fp_per_image_with_face": round(fp_pos / len(positives), 4),
            "ms_full_search_p50": round(float(np.median(times)) * 1000, 2),
            "ms_whole_frame_p50": round(float(np.median(whole)) * 1000, 2)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="the extracted ferplus/ folder (FER2013Test is used)")
    ap.add_argument("--faces", type=int, default=300, help="FER+ test faces to place")
    ap.add_argument("--negatives", type=int, default=300, help="images without a face")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--split", default="FER2013Test", choices=["FER2013Test", "FER2013Valid"],
                    help="FER+ split of the faces: choose thresholds on FER2013Valid (with another --seed), report on test")
    ap.add_argument("--seed", type=int, default=11, help="placements, sizes, backgrounds")
    args = ap.parse_args()
    if not (args.data / args.split / "label.csv").is_file():
        print(f"error: {args.data}/{args.split}/label.csv is missing: extract ../shared/data/ferplus.tar.gz (see its README)",
              file=sys.stderr)
        return 2
    cv2.setNumThreads(1)
    positives, negatives = build(args.data, args.faces, args.negatives, args.seed, args.split)
    rows = [evaluate("blazeface (ours)", BlazeFaceDetector(threads=1), positives, negatives),
            evaluate("haar, live (320 px, profile)", FaceDetector(), positives, negatives),
            evaluate("haar, paper (640 px, frontal)", FaceDetector(detect_width=640, profile=False), positives, negatives)]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{len(positives)} images with one face each, {len(negatives)} without; 640x480, one thread")
    sizes = "  ".join(f"{k}" for k in rows[0]["recall_by_source"] if k.endswith("px"))
    print(f"{'detector':<32}{'recall':>8}{'fer+':>8}{'lfw':>8}{'photos':>8}{'FP/img no face':>16}{'FP/img w/ face':>16}"
          f"{'ms search':>10}{'ms frame':>10}")
    for r in rows:
        s = r["recall_by_source"]
        print(f"{r['detector']:<32}{r['recall']:>8.1%}{s['fer+ test']:>8.1%}{s['lfw']:>8.1%}{s['photo']:>8.1%}"
              f"{r['fp_per_image_no_face']:>16.3f}{r['fp_per_image_with_face']:>16.3f}"
              f"{r['ms_full_search_p50']:>10.2f}{r['ms_whole_frame_p50']:>10.2f}")
    print(f"FER+ recall by face width ({sizes}):")
    for r in rows:
        s = r["recall_by_source"]
        print(f"  {r['detector']:<30}" + "".join(f"{s[k]:>9.1%}" for k in sorted((k for k in s if k.endswith('px')),
                                                                             key=lambda k: int(k[5:-2]))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
