"""Record every BlazeFace candidate of a full search once, then replay detector rules on them.

Choosing a rule that removes rare false positives by rerunning ``detect_bench.py`` for
every variant costs minutes each; this runs the networks once per view instead. For
each image of ``detect_bench.build`` (the same placements as the benchmark for a given
``--split``/``--seed``/``--faces``/``--negatives``), every view of a full search (the
whole frame and each tile of ``tile_grid``) is shown to BlazeFace upright and mirrored;
every candidate scoring >= ``min_score`` is kept (box, score, keypoints in frame
pixels; those that pass ``plausible`` with their width as a fraction of the tile and
their Face Mesh presence on the usual crop and on the second look's wider one), and the
upright pass's candidates down to a score of 0.1 (box and score, for agreement rules).
Recordings made before the second look (2026-11-26) replay as if it never accepts.
``--out FILE`` writes them (pickle); ``--replay FILE [FILE ...]`` prints recall and
false positives of the rule before, the detector's own (``believed``) and the
candidate rules in ``RULES`` on them (and each false positive of the first two).

    python tools/detect_replay.py --data DIR/ferplus --split FER2013Valid --seed 31 --faces 300 --negatives 500 --out /tmp/r31.pkl
    python tools/detect_replay.py --replay /tmp/r31.pkl /tmp/r32.pkl /tmp/r33.pkl

Validation placements only: never choose a rule on the test split.
"""
from __future__ import annotations

import argparse
import pickle
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from detect_bench import build, matches  # noqa: E402

from edge_app.vision.detector import (  # noqa: E402
    SECOND_LOOK_CROP,
    SECOND_LOOK_PRESENCE,
    TILE_MAX_FACE,
    BlazeFaceDetector,
    Face,
    _merge,
    believed,
    plausible,
    tile_grid,
    turned_away,
)

LOW = 0.1  # candidates kept for agreement rules (the upright pass's weaker candidates)


@dataclass
class Cand:
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 frame pixels
    score: float
    keypoints: np.ndarray
    ok: bool = False  # plausible, not cut by the tile's edge
    presence: float = -1.0
    kind: str = "frontal"
    wide: float = 0.0  # its width as a fraction of its tile's side (0 on the whole frame)
    presence2: float = -1.0  # the face check's second look (``SECOND_LOOK_CROP``)


@dataclass
class View:
    x: int
    y: int
    side: int  # 0: the whole frame
    passes: dict[bool, list[Cand]] = field(default_factory=dict)  # flip -> candidates (score >= min_score)
    low: list[tuple[tuple[float, float, float, float], float]] = field(default_factory=list)  # upright, >= LOW


_DET: BlazeFaceDetector | None = None


def _init() -> None:
    global _DET
    cv2.setNumThreads(1)
    _DET = BlazeFaceDetector(threads=1)


def record(gray: np.ndarray) -> list[View]:
    from edge_app.vision.blazeface import mirrored

    det = _DET
    assert det is not None and det.check is not None
    FH, FW = gray.shape
    views = [View(0, 0, 0)] + [View(x, y, s) for x, y, s in tile_grid(FH, FW, det.min_face_px)]
    for v in views:
        region = gray if v.side == 0 else gray[v.y:v.y + v.side, v.x:v.x + v.side]
        H, W = region.shape
        cut = (v.x > 0, v.y > 0, v.x + W < FW, v.y + H < FH)
        for flip in (False, True):
            found = (det.net.detect(region, det.min_score) if not flip else
                     [mirrored(d, W) for d in det.net.detect(cv2.flip(region, 1), det.min_score)])
            cands = []
            for d in found:
                x0, y0, x1, y1 = d.box
                shift = np.array([v.x, v.y], np.float32)
                c = Cand((x0 + v.x, y0 + v.y, x1 + v.x, y1 + v.y), float(d.score),
                         np.asarray(d.keypoints, np.float32) + shift)
                if plausible(d.box, d.keypoints, det.min_face_px):
                    is_cut = (cut[0] and x0 < 0) or (cut[1] and y0 < 0) or (cut[2] and x1 > W) or (cut[3] and y1 > H)
                    w = min(W, round(x1)) - max(0, round(x0))
                    if not is_cut:
                        c.ok, c.wide = True, w / v.side if v.side else 0.0
                        box, eyes = np.asarray(c.box), (c.keypoints[0], c.keypoints[1])
                        look = det.check.look(gray, box, *eyes)
                        c.presence = look.presence
                        c.presence2 = det.check.look(gray, box, *eyes, SECOND_LOOK_CROP).presence
                        c.kind = "profile" if turned_away(d.keypoints, look.yaw) else "frontal"
                cands.append(c)
            v.passes[flip] = cands
        v.low = [((d.box[0] + v.x, d.box[1] + v.y, d.box[2] + v.x, d.box[3] + v.y), float(d.score))
                 for d in det.net.detect(region, LOW)]
    return views


def _record_all(images: list[np.ndarray]) -> list[list[View]]:
    with get_context("spawn").Pool(2, initializer=_init) as pool:
        return pool.map(record, images, chunksize=8)


# ---- replay -------------------------------------------------------------------------

Rule = Callable[[Cand, View, bool, list[View]], bool]  # (candidate, its view, mirrored?, all views) -> keep?


def _iou(a, b) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def tilt(c: Cand) -> float:
    dx, dy = c.keypoints[1] - c.keypoints[0]
    return abs(float(np.degrees(np.arctan2(dy, dx))))


def upright_support(c: Cand, v: View) -> float:
    """Best score of the upright pass's candidates in the same view at the same place."""
    return max((s for b, s in v.low if _iou(b, c.box) > 0.3), default=0.0)


def fits(c: Cand, v: View, max_wide: float = TILE_MAX_FACE) -> bool:
    """Whether a tile keeps the candidate: no wider than ``max_wide`` of its side."""
    return not v.side or c.wide <= max_wide


def before(c: Cand, v: View, flip: bool, views: list[View]) -> bool:
    """The face check before the borderline rule: presence >= 0.9 whatever the score,
    tiles keeping faces up to 0.6 of their side."""
    return fits(c, v, 0.6) and c.presence >= 0.9


def borderline(c: Cand, v: View, flip: bool, views: list[View]) -> bool:
    """The borderline rule (``detector.believed``) alone: before the second look and
    the wider tiles."""
    return fits(c, v, 0.6) and believed(c.score, c.presence, 0.9)


def now(c: Cand, v: View, flip: bool, views: list[View]) -> bool:
    """The detector's own rule: ``detector.believed`` or the second look, on faces up to
    ``TILE_MAX_FACE`` of a tile."""
    return fits(c, v) and (believed(c.score, c.presence, 0.9) or c.presence2 >= SECOND_LOOK_PRESENCE)


def search(views: list[View], rule: Rule) -> list[Cand]:
    """The full search of ``BlazeFaceDetector.detect(tiles=True)`` replayed with ``rule``
    as the last check (the rule also says how wide a tile's faces may be, ``fits``):
    each view upright, mirrored when upright kept nothing; merged by the detector's own
    ``_merge`` (overlap or one centred in the other: IoU alone kept faces it drops)."""
    faces: list[tuple[Face, Cand]] = []
    for v in views:
        kept = [c for c in v.passes[False] if c.ok and rule(c, v, False, views)]
        if not kept:
            kept = [c for c in v.passes[True] if c.ok and rule(c, v, True, views)]
        faces += [(_face(c), c) for c in kept]
    cand = {id(f): c for f, c in faces}
    return [cand[id(f)] for f in _merge([f for f, _ in faces])]


def _face(c: Cand) -> Face:
    """``c`` as the detector reports it (box rounded and clipped to the 640x480 frame, score
    rounded), so that ``_merge`` sees what it sees in ``detect``."""
    x0, y0, x1, y1 = c.box
    left, top = max(0, round(x0)), max(0, round(y0))
    return Face((left, top, min(640, round(x1)) - left, min(480, round(y1)) - top), c.kind, round(c.score, 4))


def _box(c: Cand) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = c.box
    return (max(0.0, x0), max(0.0, y0), min(640.0, x1) - max(0.0, x0), min(480.0, y1) - max(0.0, y0))


def score_rule(data: list[dict], rule: Rule, show: bool = False) -> tuple[int, int, int, int]:
    found = total = fp = negs = 0
    for d in data:
        for views, truths in d["pos"]:
            faces = search(views, rule)
            for t in truths:
                total += 1
                found += any(matches(_box(c), t) for c in faces)
        for i, views in enumerate(d["neg"]):
            faces = search(views, rule)
            negs += 1
            fp += len(faces)
            if show:
                for c in faces:
                    v = next(v for v in views for f in (False, True) if any(x is c for x in v.passes[f]))
                    flip = any(x is c for x in v.passes[True])
                    print(f"    FP seed {d['seed']} neg {i}: view {v.side or 'frame'} flip={flip} w={c.box[2] - c.box[0]:.0f}"
                          f" score={c.score:.2f} presence={c.presence:.3f} tilt={tilt(c):.0f} kind={c.kind}"
                          f" upright={upright_support(c, v):.2f}")
    return found, total, fp, negs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path)
    ap.add_argument("--split", default="FER2013Valid", choices=["FER2013Valid"],
                    help="validation only: rules are chosen here, never on test placements")
    ap.add_argument("--seed", type=int, default=31)
    ap.add_argument("--faces", type=int, default=300)
    ap.add_argument("--negatives", type=int, default=500)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--replay", type=Path, nargs="+")
    args = ap.parse_args(argv)
    if args.replay:
        missing = [str(p) for p in args.replay if not p.is_file()]
        if missing:
            ap.error(f"--replay: no recording {', '.join(missing)}: make one with --data DIR/ferplus --out FILE")
        data = [pickle.loads(p.read_bytes()) for p in args.replay]
        for name, rule in RULES.items():
            f, t, fp, n = score_rule(data, rule, show=name in ("before (presence >= 0.9)", "now (detector.believed)"))
            print(f"{name:<48} recall {f}/{t} = {f / t:.2%}   FP {fp}/{n} no-face images")
        return 0
    if not args.data or not args.out:
        ap.error("--data and --out (record) or --replay FILE ...")
    if not (args.data / args.split / "label.csv").is_file():  # as detect_bench: not a FileNotFoundError traceback
        ap.error(f"{args.data}/{args.split}/label.csv is missing: extract ../shared/data/ferplus.tar.gz (see its README)")
    positives, negatives = build(args.data, args.faces, args.negatives, args.seed, args.split)
    pos_views = _record_all([p[0] for p in positives])
    neg_views = _record_all(negatives)
    args.out.write_bytes(pickle.dumps({"seed": args.seed, "pos": [(v, p[1]) for v, p in zip(pos_views, positives)],
                                       "neg": neg_views}))
    print(f"recorded {len(positives)} face images, {len(negatives)} without, seed {args.seed} -> {args.out}")
    return 0


def _rule(f: Callable[..., bool]) -> Rule:
    return f


def _narrow(rule: Rule) -> Rule:
    return lambda c, v, f, vs: fits(c, v, 0.6) and rule(c, v, f, vs)


def _rules() -> dict[str, Rule]:
    r: dict[str, Rule] = {"before (presence >= 0.9)": before, "borderline rule alone": borderline,
                          "now (detector.believed)": now}
    for p in (0.99, 0.995, 0.998):
        for m in (0.6, 0.8, 0.9, 1.0):
            r[f"second look >= {p}, tiles to {m}"] = _rule(lambda c, v, f, vs, p=p, m=m: fits(c, v, m) and (
                believed(c.score, c.presence, 0.9) or c.presence2 >= p))
    # the rules tried for the borderline rule, on tiles keeping faces up to 0.6 of their side as then
    older: dict[str, Rule] = {}
    for p in (0.95, 0.98, 0.99, 0.995):
        older[f"mirror presence >= {p}"] = _rule(lambda c, v, f, vs, p=p: c.presence >= (p if f else 0.9))
        older[f"tile presence >= {p}"] = _rule(lambda c, v, f, vs, p=p: c.presence >= (p if v.side else 0.9))
        older[f"mirror or tile presence >= {p}"] = _rule(lambda c, v, f, vs, p=p: c.presence >= (p if f or v.side else 0.9))
        older[f"all presence >= {p}"] = _rule(lambda c, v, f, vs, p=p: c.presence >= p)
    for t in (30, 40, 45, 50):
        older[f"mirror tilt <= {t}"] = _rule(lambda c, v, f, vs, t=t: c.presence >= 0.9 and (not f or tilt(c) <= t))
        older[f"all tilt <= {t}"] = _rule(lambda c, v, f, vs, t=t: c.presence >= 0.9 and tilt(c) <= t)
    for s in (0.1, 0.2, 0.3):
        older[f"mirror needs upright >= {s}"] = _rule(lambda c, v, f, vs, s=s: c.presence >= 0.9 and (not f or upright_support(c, v) >= s))
    for m in (60, 80, 100):
        older[f"tile min width {m}"] = _rule(lambda c, v, f, vs, m=m: c.presence >= 0.9 and (not v.side or c.box[2] - c.box[0] >= m))
    for s in (0.6, 0.7, 0.8):
        older[f"mirror score >= {s}"] = _rule(lambda c, v, f, vs, s=s: c.presence >= 0.9 and (not f or c.score >= s))
        older[f"tile score >= {s}"] = _rule(lambda c, v, f, vs, s=s: c.presence >= 0.9 and (not v.side or c.score >= s))
    older["profile presence >= 0.98"] = _rule(lambda c, v, f, vs: c.presence >= (0.98 if c.kind == "profile" else 0.9))
    older["mirror keeps no profile"] = _rule(lambda c, v, f, vs: c.presence >= 0.9 and not (f and c.kind == "profile"))
    older["mirror profile presence >= 0.99"] = _rule(lambda c, v, f, vs: c.presence >= (0.99 if f and c.kind == "profile" else 0.9))
    for s in (0.6, 0.65):
        older[f"mirror no profile, score >= {s}"] = _rule(lambda c, v, f, vs, s=s: c.presence >= 0.9 and not (
            f and (c.kind == "profile" or c.score < s)))
        for p in (0.98, 0.99):
            older[f"mirror: score >= {s} or presence >= {p}"] = _rule(lambda c, v, f, vs, s=s, p=p: c.presence >= 0.9 and (
                not f or c.score >= s or c.presence >= p))
            older[f"all: score >= {s} or presence >= {p}"] = _rule(lambda c, v, f, vs, s=s, p=p: c.presence >= 0.9 and (
                c.score >= s or c.presence >= p))
            older[f"mirror+tile: score >= {s} or presence >= {p}"] = _rule(lambda c, v, f, vs, s=s, p=p: c.presence >= 0.9 and (
                not (f or v.side) or c.score >= s or c.presence >= p))
            older[f"mirror no profile, score >= {s} or presence >= {p}"] = _rule(lambda c, v, f, vs, s=s, p=p: c.presence >= 0.9 and (
                not f or (c.kind != "profile" and (c.score >= s or c.presence >= p))))
    r.update({name: _narrow(rule) for name, rule in older.items()})
    return r


RULES = _rules()

if __name__ == "__main__":
    raise SystemExit(main())
