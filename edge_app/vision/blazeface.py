"""BlazeFace short-range: a learned face detector run by LiteRT, decoded by our own code.

Why not Haar: on real photographs Haar misses faces (a hand over the mouth, a face that
fills the frame) and invents faces in textures; BlazeFace finds both kinds of faces and
rarely fires on texture (numbers in ``models/MODEL_CARD.md``). The model
(``edge_app/models/shipped/face_detection_short_range.tflite``, MediaPipe, Apache-2.0)
is described by a manifest beside it (sha256, input rule, anchor grids, keypoint names)
and loaded like the emotion model: a wrong checksum or a broken file is refused at start.

A detector alone still sees faces in round bright blobs and in zoomed textures, so each
detection gets a second opinion (``FaceCheck``): MediaPipe's Face Mesh landmark model
(``face_landmark.tflite``, same wheel and licence) has a face-presence output, which we
read on the eye-levelled crop around the detection. The same call's 468 3D landmarks
give the head's yaw (``FaceCheck.look``): BlazeFace's ear keypoints cannot tell a
three-quarter view from a head turned sideways, the mesh's depth can.

The network gives, for each of 896 fixed anchors, a score logit and 16 numbers: the box
centre offset and size, and six keypoints (eyes, nose tip, mouth, ears), in input
pixels relative to the anchor. ``decode`` turns them into boxes, ``weighted_nms`` merges
the many anchors that fire on one face (score-weighted average, as MediaPipe does).
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge_app.vision.classifier import ModelError, checked_interpreter_for

SHIPPED = Path(__file__).resolve().parents[1] / "models" / "shipped"
SHIPPED_DETECTOR = SHIPPED / "face_detection_short_range.json"
SHIPPED_FACE_CHECK = SHIPPED / "face_landmark.json"
KEYPOINTS = ("right_eye", "left_eye", "nose_tip", "mouth", "right_ear", "left_ear")  # the subject's right/left


def box4(values) -> tuple[float, float, float, float]:
    """Four numbers (an array's or a sequence's) as a box tuple of floats."""
    x0, y0, x1, y1 = (float(v) for v in values)
    return x0, y0, x1, y1


@dataclass(frozen=True)
class Detection:
    """One face: box (x0, y0, x1, y1), score 0-1, keypoints (6, 2) as (x, y), all in the
    same units (0-1 of the input while decoding, image pixels once mapped back)."""

    box: tuple[float, float, float, float]
    score: float
    keypoints: np.ndarray

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]


MIRROR_ORDER = (1, 0, 2, 3, 5, 4)  # keypoints of a mirrored face: the subject's right and left swap


def mirrored(d: Detection, width: float) -> Detection:
    """A detection made on the mirror image (flipped left-right) of an image ``width``
    wide, in the unflipped image's coordinates: x becomes ``width - x``, and the eyes and
    ears trade names (the mirror image's right eye is the subject's left)."""
    x0, y0, x1, y1 = d.box
    kp = np.asarray(d.keypoints, np.float32)[list(MIRROR_ORDER)].copy()
    kp[:, 0] = width - kp[:, 0]
    return Detection((width - x1, y0, width - x0, y1), d.score, kp)


def ssd_anchors(size: int, grids: list[tuple[int, int]], offset: float = 0.5) -> np.ndarray:
    """Anchor centres (N, 2) as fractions of the input: for each (stride, per_cell) grid,
    row by row, ``per_cell`` anchors at the centre of every cell (MediaPipe's SSD anchors
    with a fixed anchor size, which is what BlazeFace uses)."""
    out = []
    for stride, per_cell in grids:
        cells = int(np.ceil(size / stride))
        ys, xs = np.mgrid[0:cells, 0:cells]
        centres = np.stack([(xs.ravel() + offset) / cells, (ys.ravel() + offset) / cells], axis=1)
        out.append(np.repeat(centres, per_cell, axis=0))
    return np.concatenate(out).astype(np.float32)


def decode(raw_boxes: np.ndarray, raw_scores: np.ndarray, anchors: np.ndarray, size: int,
           score_clip: float = 100.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw outputs -> (boxes (N, 4) x0 y0 x1 y1, keypoints (N, K, 2), scores (N,)), in
    fractions of the input. Scores are the sigmoid of the clipped logits."""
    raw = raw_boxes.reshape(len(anchors), -1, 2).astype(np.float32) / size
    centre = raw[:, 0] + anchors
    half = raw[:, 1] / 2
    boxes = np.concatenate([centre - half, centre + half], axis=1)
    keypoints = raw[:, 2:] + anchors[:, None, :]
    logits = np.clip(raw_scores.reshape(-1).astype(np.float64), -score_clip, score_clip)
    return boxes, keypoints, (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection over union of one box with each of ``boxes`` (x0, y0, x1, y1)."""
    ix0, iy0 = np.maximum(box[0], boxes[:, 0]), np.maximum(box[1], boxes[:, 1])
    ix1, iy1 = np.minimum(box[2], boxes[:, 2]), np.minimum(box[3], boxes[:, 3])
    inter = np.clip(ix1 - ix0, 0, None) * np.clip(iy1 - iy0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + areas - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def weighted_nms(boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray, min_score: float,
                 iou_threshold: float) -> list[Detection]:
    """Best first: the top-scoring box and every box overlapping it by more than
    ``iou_threshold`` become one detection, their boxes and keypoints averaged by score
    (steadier than keeping the single best anchor), with the top score."""
    keep = (scores >= min_score) & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    boxes, keypoints, scores = boxes[keep], keypoints[keep], scores[keep]
    order = np.argsort(-scores, kind="stable")
    boxes, keypoints, scores = boxes[order], keypoints[order], scores[order]
    out: list[Detection] = []
    while len(scores):
        cluster = iou(boxes[0], boxes) > iou_threshold
        cluster[0] = True
        w = scores[cluster][:, None]
        box = (boxes[cluster] * w).sum(0) / w.sum()
        kp = (keypoints[cluster] * w[:, :, None]).sum(0) / w.sum()
        out.append(Detection(box4(box), float(scores[0]), kp))
        boxes, keypoints, scores = boxes[~cluster], keypoints[~cluster], scores[~cluster]
    return out


@dataclass
class DetectorManifest:
    path: Path
    model_path: Path
    sha256: str
    size: int
    scale: float
    offset: float
    grids: list[tuple[int, int]]
    anchor_offset: float
    score_clip: float
    nms_iou: float
    keypoints: tuple[str, ...]

    @classmethod
    def load(cls, path: Path) -> "DetectorManifest":
        path = Path(path)
        raw = _read_manifest(path, "face detector")
        try:
            inp, anchors, dec = raw["input"], raw["anchors"], raw["decoder"]
            h, w = (int(v) for v in inp["size"])
            if h != w or inp.get("channels") != 3:
                raise ModelError(f"{path}: the detector input must be square and three-channel")
            keypoints = tuple(dec["keypoints"])
            if keypoints != KEYPOINTS:
                raise ModelError(f"{path}: keypoints {list(keypoints)} are not BlazeFace's {list(KEYPOINTS)}")
            grids = [(int(g["stride"]), int(g["per_cell"])) for g in anchors["grids"]]
            return cls(path, path.parent / raw["model"], str(raw["sha256"]), h, float(inp["scale"]),
                       float(inp["offset"]), grids, float(anchors.get("offset", 0.5)),
                       float(dec.get("score_clip", 100.0)), float(dec["nms_iou"]), keypoints)
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{path}: face detector manifest field missing or wrong: {exc}") from None


def checked_interpreter(model_path: Path, sha256: str, manifest_path: Path, threads: int, what: str):
    """A LiteRT interpreter for a shipped model whose file matches its manifest's sha256;
    ``ModelError`` naming the file and what to do otherwise."""
    if not model_path.is_file():
        raise ModelError(f"{what} file {model_path} (named by {manifest_path}) does not exist; "
                         "reinstall engage-edge to restore it")
    return checked_interpreter_for(model_path, sha256, threads, f"; reinstall engage-edge to restore the {what}")


def _read_manifest(path: Path, what: str) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ModelError(f"{what} manifest {path} does not exist") from None
    except (OSError, ValueError) as exc:
        raise ModelError(f"{what} manifest {path} is not readable JSON: {exc}") from None


YAW_CONTOUR = (234, 454)  # Face Mesh landmarks on the face's outline at cheek height, image-left and -right


@dataclass(frozen=True)
class Look:
    """What the face check says of a detection: ``presence`` 0..1 (how sure it is that
    the crop holds a face) and ``yaw`` in degrees (0: facing the camera; the sign tells
    which way, positive when the nose points to the image's right)."""

    presence: float
    yaw: float


def yaw_degrees(landmarks: np.ndarray) -> float:
    """Head yaw from Face Mesh landmarks (468, 3) (x, y in crop pixels along and across
    the eye line, z depth on x's scale, smaller nearer): the angle of the line between
    the two outline points at cheek height (``YAW_CONTOUR``) out of the image plane,
    atan2(z difference, x difference). Facing the camera both lie at the same depth; a
    turned head brings one cheek nearer. 90 when the outline points do not lie left to
    right (a face the mesh could not fit)."""
    lm = np.asarray(landmarks, np.float32).reshape(-1, 3)
    left, right = lm[YAW_CONTOUR[0]], lm[YAW_CONTOUR[1]]
    dx, dz = float(right[0] - left[0]), float(right[2] - left[2])
    if dx <= 1e-6:
        return 90.0
    return float(np.degrees(np.arctan2(dz, dx)))


class FaceCheck:
    """``look(gray, box, right_eye, left_eye) -> Look``: one Face Mesh inference on the
    eye-levelled square of ``crop_scale`` times the box (the manifest's, or the one
    given): how sure the model is that it holds a face, and the head's yaw from its
    landmarks (``yaw_degrees``). ``presence(...)`` is the first of these alone."""

    def __init__(self, manifest_path: Path | str | None = None, threads: int = 1):
        path = Path(manifest_path) if manifest_path else SHIPPED_FACE_CHECK
        raw = _read_manifest(path, "face check")
        try:
            model_path, sha = path.parent / raw["model"], str(raw["sha256"])
            self.size = int(raw["input"]["size"][0])
            self.scale, self.offset = float(raw["input"]["scale"]), float(raw["input"]["offset"])
            self.crop_scale, self.presence_min = float(raw["crop_scale"]), float(raw["presence_min"])
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ModelError(f"{path}: face check manifest field missing or wrong: {exc}") from None
        self.interpreter = checked_interpreter(model_path, sha, path, threads, "face check model")
        inp = self.interpreter.get_input_details()[0]
        outs = self.interpreter.get_output_details()
        flags = [d for d in outs if int(np.prod(d["shape"])) == 1]
        meshes = [d for d in outs if int(np.prod(d["shape"])) == 468 * 3]
        if tuple(inp["shape"]) != (1, self.size, self.size, 3) or len(flags) != 1 or len(meshes) != 1:
            raise ModelError(f"{model_path}: tensors do not match the manifest ({self.size}x{self.size}x3 -> "
                             "one face-presence value and 468 3D landmarks)")
        self._in, self._flag, self._mesh = inp, flags[0], meshes[0]
        self._buffer = np.zeros((1, self.size, self.size, 3), np.float32)
        self._lock = threading.Lock()

    def look(self, gray: np.ndarray, box, right_eye, left_eye, crop_scale: float | None = None) -> Look:
        x0, y0, x1, y1 = box
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        side = (crop_scale or self.crop_scale) * max(x1 - x0, y1 - y0)
        angle = np.degrees(np.arctan2(left_eye[1] - right_eye[1], left_eye[0] - right_eye[0]))
        m = cv2.getRotationMatrix2D((cx, cy), float(angle), self.size / side)
        m[0, 2] += self.size / 2 - cx
        m[1, 2] += self.size / 2 - cy
        crop = cv2.warpAffine(gray, m, (self.size, self.size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        with self._lock:
            self._buffer[0] = (crop.astype(np.float32) * self.scale + self.offset)[:, :, None]
            self.interpreter.set_tensor(self._in["index"], self._buffer)
            self.interpreter.invoke()
            logit = float(self.interpreter.get_tensor(self._flag["index"]).ravel()[0])
            yaw = yaw_degrees(self.interpreter.get_tensor(self._mesh["index"]))
        return Look(float(1.0 / (1.0 + np.exp(-np.clip(logit, -80, 80)))), yaw)

    def presence(self, gray: np.ndarray, box, right_eye, left_eye) -> float:
        return self.look(gray, box, right_eye, left_eye).presence


class BlazeFace:
    """``detect(image) -> [Detection]`` in image pixels, best first.

    The image (grayscale, BGR or BGRA) is letterboxed into the square input, so faces keep
    their shape; a grayscale image is given to the network as three equal channels (the
    capture loop works in grayscale, and so does the emotion model)."""

    def __init__(self, manifest_path: Path | str | None = None, threads: int = 1):
        self.manifest = m = DetectorManifest.load(Path(manifest_path) if manifest_path else SHIPPED_DETECTOR)
        self.interpreter = checked_interpreter(m.model_path, m.sha256, m.path, threads, "face detector")
        self.anchors = ssd_anchors(m.size, m.grids, m.anchor_offset)
        inp = self.interpreter.get_input_details()[0]
        outs = {tuple(d["shape"][1:]): d for d in self.interpreter.get_output_details()}
        n = len(self.anchors)
        want = [(n, 4 + 2 * len(KEYPOINTS)), (n, 1)]
        if tuple(inp["shape"]) != (1, m.size, m.size, 3) or any(s not in outs for s in want):
            raise ModelError(f"{m.model_path}: tensors {tuple(inp['shape'])} -> {sorted(outs)} do not match "
                             f"the manifest ({m.size}x{m.size}x3 -> {want})")
        self._in, self._boxes_out, self._scores_out = inp, outs[want[0]], outs[want[1]]
        self._buffer = np.zeros((1, m.size, m.size, 3), np.float32)
        self._lock = threading.Lock()

    def detect(self, image: np.ndarray, min_score: float = 0.5) -> list[Detection]:
        m = self.manifest
        h, w = image.shape[:2]
        if h == 0 or w == 0:  # no pixels, no face (as Haar says), not a division by zero
            return []
        scale = m.size / max(h, w)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        small = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        px, py = (m.size - nw) // 2, (m.size - nh) // 2
        with self._lock:
            buf = self._buffer
            buf.fill(m.offset)  # padding is black (0 * scale + offset)
            region = buf[0, py:py + nh, px:px + nw]
            if small.ndim == 2:
                region[:] = (small.astype(np.float32) * m.scale + m.offset)[:, :, None]
            else:
                region[:] = small[:, :, 2::-1].astype(np.float32) * m.scale + m.offset  # BGR(A) -> RGB
            self.interpreter.set_tensor(self._in["index"], buf)
            self.interpreter.invoke()
            raw_boxes = self.interpreter.get_tensor(self._boxes_out["index"])[0]
            raw_scores = self.interpreter.get_tensor(self._scores_out["index"])[0]
        boxes, keypoints, scores = decode(raw_boxes, raw_scores, self.anchors, m.size, m.score_clip)
        found = weighted_nms(boxes, keypoints, scores, min_score, m.nms_iou)
        # input fractions -> image pixels (undo the letterbox)
        shift = np.array([px, py], np.float32)
        out = []
        for d in found:
            b = (np.array(d.box, np.float32).reshape(2, 2) * m.size - shift) / scale
            kp = (d.keypoints * m.size - shift) / scale
            out.append(Detection(box4(b.ravel()), d.score, kp))
        return out
