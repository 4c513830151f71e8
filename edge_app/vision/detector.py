"""Face detection: the learned BlazeFace detector (default) or the seed paper's Haar cascades.

``detector_from_config`` picks the backend (``detector.backend``). Both give ``Face``
boxes in full-frame pixels with a ``kind``: "frontal" (classified) or "profile" (a
turned-away head, which the engagement tracker reports as "Distracted").

BlazeFace (``BlazeFaceDetector``) keeps a detection only when it is believable: a score
of at least ``detector.min_score``, a box of at least ``min_face_px``, roughly square,
eyes, nose and mouth inside it, and a second model's face check passed
(``blazeface.FaceCheck``, with a second look on a wider crop when the first doubts); a
head is "profile" when that face check's landmarks put its yaw at ``TURNED_AWAY_YAW``
degrees or more (``turned_away``).

Haar (``FaceDetector``, opencv-python-headless < 5 ships the cascades): the frontal
cascade finds faces looking at the screen; the profile cascade (run on the
frame and its mirror image, since it only knows one side) finds faces turned away,
which the engagement tracker reports as "Distracted". Detection runs on a grayscale copy
scaled down to ``detect_width`` pixels: most of the cost of Haar is the image size.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import cv2
import numpy as np

from edge_app.config import Config
from edge_app.vision.classifier import ModelError


@dataclass(frozen=True)
class Face:
    """A face box in full-frame pixels, its kind, and (BlazeFace only) the detection score
    and six keypoints (x, y): the subject's right eye, left eye, nose tip, mouth, right
    ear, left ear - what ``align`` uses to level the eyes."""

    box: tuple[int, int, int, int]  # x, y, w, h
    kind: str = "frontal"  # or "profile"
    score: float = 1.0
    keypoints: tuple[tuple[float, float], ...] | None = None

    def moved(self, dx: float, dy: float, box: tuple[int, int, int, int]) -> "Face":
        """The same face followed to ``box`` (moved by dx, dy full-frame pixels)."""
        kp = None if self.keypoints is None else tuple((x + dx, y + dy) for x, y in self.keypoints)
        return Face(box, self.kind, self.score, kp)


class DetectorError(ModelError):
    """The face detector cannot be made (its cascade files missing): said and handled as a model
    that does not load is, not a traceback."""


def _cascade(name: str) -> cv2.CascadeClassifier:
    if not hasattr(cv2, "CascadeClassifier") or not hasattr(cv2, "data"):
        raise DetectorError("this OpenCV has no Haar cascades: install opencv-python-headless>=4.10,<5")
    cascades = cv2.data.haarcascades  # type: ignore[attr-defined]  # in the OpenCV wheels, not in their stubs
    cascade = cv2.CascadeClassifier(cascades + name)
    if cascade.empty():
        raise DetectorError(f"the Haar cascade {name} could not be loaded from {cascades}: reinstall OpenCV (pip install "
                            "--force-reinstall 'opencv-python-headless>=4.10,<5'), or set detector.backend = \"blazeface\"")
    return cascade


def detector_from_config(cfg: Config) -> "Detector":
    """The configured detector: ``detector.backend`` "blazeface" (default) or "haar"."""
    if cfg.detector.backend == "haar":
        return FaceDetector.from_config(cfg)
    return BlazeFaceDetector.from_config(cfg)


class Detector:
    """What the tracker, the capture loop and still analysis use of a detector: ``detect``
    on a whole frame, ``detect_near`` around a tracked face, and ``small_gray``, the
    down-scaled frame the tracker follows a face on between detections."""

    backend = ""

    def __init__(self, detect_width: int = 320, min_face_px: int = 40):
        self.detect_width, self.min_face_px = detect_width, min_face_px
        self._small: np.ndarray | None = None

    def detect(self, frame: np.ndarray, detect_width: int | None = None, min_face_px: int | None = None,
               tiles: bool | None = None) -> list[Face]:
        raise NotImplementedError

    def detect_near(self, gray: np.ndarray, small: np.ndarray, scale: float, small_box, kind: str) -> Face | None:
        raise NotImplementedError

    def small_gray(self, frame: np.ndarray, detect_width: int | None = None) -> tuple[np.ndarray, float]:
        """The detection image and the factor back to full-frame pixels."""
        gray = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        h, w = gray.shape
        target = detect_width or self.detect_width
        if w <= target:
            return gray, 1.0
        scale = w / target
        size = (target, max(1, int(round(h / scale))))
        if self._small is None or self._small.shape[::-1] != size:
            self._small = np.empty(size[::-1], np.uint8)
        cv2.resize(gray, size, dst=self._small, interpolation=cv2.INTER_AREA)
        return self._small, scale



class FaceDetector(Detector):
    """The seed paper's detector: Haar cascades on a down-scaled grayscale frame."""

    backend = "haar"

    def __init__(self, detect_width=320, scale_factor=1.15, min_neighbors=5, min_face_px=40, profile=True):
        super().__init__(detect_width, min_face_px)
        self.scale_factor, self.min_neighbors = scale_factor, min_neighbors
        self.frontal = _cascade("haarcascade_frontalface_default.xml")
        self.profile = _cascade("haarcascade_profileface.xml") if profile else None
        # one search at a time: uploads are analysed on several threads (web.analysis_workers)
        # with one detector, and neither a cascade nor the reused detection image may be
        # shared by two searches at once (two photos got each other's faces, or none)
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, cfg: Config) -> "FaceDetector":
        d = cfg.detector
        return cls(d.detect_width, d.scale_factor, d.min_neighbors, d.min_face_px, d.profile)

    def detect(self, frame: np.ndarray, detect_width: int | None = None, min_face_px: int | None = None,
               tiles: bool | None = None) -> list[Face]:
        """Frontal faces, or, when there are none, turned-away (profile) faces.

        ``detect_width`` and ``min_face_px`` override the live settings (stills); Haar
        searches every scale anyway, so ``tiles`` changes nothing."""
        if frame.size == 0:  # no pixels (OpenCV cannot convert them): no face
            return []
        with self._lock:
            return self._detect(frame, detect_width, min_face_px)

    def _detect(self, frame: np.ndarray, detect_width: int | None, min_face_px: int | None) -> list[Face]:
        small, scale = self.small_gray(frame, detect_width)
        min_px = max(12, int((min_face_px or self.min_face_px) / scale))
        found = self.frontal.detectMultiScale(small, self.scale_factor, self.min_neighbors, minSize=(min_px, min_px))
        faces = [Face(_scaled(b, scale), "frontal") for b in found]
        if not faces and self.profile is not None:
            w = small.shape[1]
            hits = list(self.profile.detectMultiScale(small, self.scale_factor, self.min_neighbors, minSize=(min_px, min_px)))
            mirrored = self.profile.detectMultiScale(cv2.flip(small, 1), self.scale_factor, self.min_neighbors, minSize=(min_px, min_px))
            hits += [(w - x - bw, y, bw, bh) for (x, y, bw, bh) in mirrored]
            faces = [Face(_scaled(b, scale), "profile") for b in hits]
        return sorted(faces, key=lambda f: -f.box[2] * f.box[3])


    def detect_near(self, gray: np.ndarray, small: np.ndarray, scale: float, small_box, kind: str) -> Face | None:
        """Re-detect a tracked face in a region around it (``small_box``, small-frame
        pixels), at sizes close to its own; the hit closest to where it was, or None."""
        with self._lock:
            return self._detect_near(small, scale, small_box, kind)

    def _detect_near(self, small: np.ndarray, scale: float, small_box, kind: str) -> Face | None:
        x, y, w, h = small_box
        m = w // 2
        H, W = small.shape
        x0, y0, x1, y1 = max(0, x - m), max(0, y - m), min(W, x + w + m), min(H, y + h + m)
        roi = small[y0:y1, x0:x1]
        lo, hi = max(12, int(w * 0.7)), int(w * 1.45) + 1
        if kind == "frontal":
            hits = [tuple(b) for b in self.frontal.detectMultiScale(roi, self.scale_factor, self.min_neighbors,
                                                                  minSize=(lo, lo), maxSize=(hi, hi))]
        elif self.profile is not None:
            hits = [tuple(b) for b in self.profile.detectMultiScale(roi, self.scale_factor, self.min_neighbors,
                                                                  minSize=(lo, lo), maxSize=(hi, hi))]
            rw = roi.shape[1]
            hits += [(rw - bx - bw, by, bw, bh) for (bx, by, bw, bh) in
                     self.profile.detectMultiScale(cv2.flip(roi, 1), self.scale_factor, self.min_neighbors,
                                                   minSize=(lo, lo), maxSize=(hi, hi))]
        else:
            return None
        if not hits:
            return None
        cx, cy = x + w / 2 - x0, y + h / 2 - y0  # the hit closest to where the face was
        bx, by, bw, bh = min(hits, key=lambda b: (b[0] + b[2] / 2 - cx) ** 2 + (b[1] + b[3] / 2 - cy) ** 2)
        return Face(_scaled((bx + x0, by + y0, bw, bh), scale), kind)


def _scaled(box, scale: float) -> tuple[int, int, int, int]:
    x, y, w, h = (int(round(v * scale)) for v in box)
    return x, y, w, h


TURNED_AWAY_YAW = 35.0  # degrees of head yaw (Face Mesh landmarks, ``blazeface.yaw_degrees``)
# from which a head counts as turned away. Not fitted on labelled yaw (none is at hand):
# it lies between the shipped Migrant Mother, a three-quarter view looking at the camera
# (17-20 degrees in every demo framing), and the demo's cameraman turned sideways (42-54);
# on 4,807 FER+ training faces (upscaled) the median is 7, 4.7% reach 35, and by eye
# FER faces of 25-35 degrees still mostly face the camera, those of 40 and more do not
TURNED_AWAY = 0.8  # ear asymmetry (see ``ear_asymmetry``) from which a head counts as turned away
# when there is no face check (``face_check=False``): the cameraman scores 0.82-1.0, but so
# does Migrant Mother in some framings (0.85-0.93), and 11% of FER+ training faces


def turned_away(keypoints, yaw: float | None) -> bool:
    """Whether a head is turned away: by its yaw in degrees from the face check's
    landmarks when there is one, by BlazeFace's ear keypoints (``ear_asymmetry``) when
    not (they cannot tell a three-quarter view from a head turned sideways)."""
    if yaw is not None:
        return abs(yaw) >= TURNED_AWAY_YAW
    return ear_asymmetry(keypoints) >= TURNED_AWAY


def ear_asymmetry(keypoints) -> float:
    """0 for a head facing the camera, towards 1 for a head turned sideways.

    Along the line through the eyes, each ear lies about as far out from its eye as the
    other on a frontal face; on a turned head the near-side ear sits next to its eye and
    the far-side ear far out. |d_right - d_left| / (|d_right| + |d_left|)."""
    kp = np.asarray(keypoints, np.float32)
    right_eye, left_eye, right_ear, left_ear = kp[0], kp[1], kp[4], kp[5]
    axis = left_eye - right_eye
    norm = float(np.hypot(*axis))
    if norm < 1e-6:
        return 1.0
    axis /= norm
    d_right, d_left = float((right_eye - right_ear) @ axis), float((left_ear - left_eye) @ axis)
    total = abs(d_right) + abs(d_left)
    return abs(d_right - d_left) / total if total > 1e-6 else 1.0


MAX_TILT = 60.0  # degrees: a head leaning further (eye line against the horizontal) is not believed;
# chosen on FER+ validation placements: it removed the two false positives the mirror
# search let in (eye lines at 61 and 65 degrees) and no face (the benchmark tilts faces by
# up to 25 degrees, FER2013's own lean adds about 11)


def plausible(box, keypoints, min_face_px: float) -> bool:
    """Sanity checks that keep non-faces out: big enough, roughly square, eyes apart,
    eyes, nose and mouth inside the box (a texture that scores high rarely also puts
    four keypoints where a face has them), and the eye line within ``MAX_TILT`` of
    level."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    if w < min_face_px or h <= 0 or not 0.6 <= w / h <= 1.6:
        return False
    kp = np.asarray(keypoints, np.float32)[:4]  # eyes, nose, mouth
    mx, my = 0.05 * w, 0.05 * h
    inside = (kp[:, 0] >= x0 - mx) & (kp[:, 0] <= x1 + mx) & (kp[:, 1] >= y0 - my) & (kp[:, 1] <= y1 + my)
    dx, dy = kp[1] - kp[0]  # right eye to left eye: to the right in the image on an upright face
    if abs(float(np.degrees(np.arctan2(dy, dx)))) > MAX_TILT:
        return False
    return bool(inside.all()) and float(np.hypot(dx, dy)) >= 0.15 * w


UNSURE_SCORE = 0.6  # a detection scoring below this (but at least ``min_score``) ...
SURE_PRESENCE = 0.99  # ... is kept only when the face check is this sure; chosen on FER+
# validation placements (seeds 31-33, 1,500 no-face images): 8 of the 10 false positives
# scored 0.53-0.57, with presences of 0.92-0.98; the rule removed 8 of them for 7 of
# 1,254 faces (recall 94.7% -> 94.2%); on seeds 34-35, held out: 7 -> 4 of 1,000 (model card)


SECOND_LOOK_CROP = 1.8  # a detection the face check turned down gets a second look on a wider
SECOND_LOOK_PRESENCE = 0.998  # crop (1.8 box widths instead of the manifest's 1.5) and is kept
# when the face check is this sure there: FER-style crops cut at the brow or the chin are
# often doubted on the tight crop and recognised with their surroundings. Chosen on FER+
# validation placements, seeds 31-33 (model card): with ``TILE_MAX_FACE`` recall 94.2% ->
# 95.5% for no more false positives (2 of 1,500); at presence 0.99, 95.8% for 4


def believed(score: float, presence: float, presence_min: float) -> bool:
    """The face check's verdict on a detection: Face Mesh presence >= ``presence_min``,
    and >= ``SURE_PRESENCE`` for a detection that scored below ``UNSURE_SCORE`` (the
    borderline ones, where textures live)."""
    return presence >= presence_min and (score >= UNSURE_SCORE or presence >= SURE_PRESENCE)


class BlazeFaceDetector(Detector):
    """The learned detector (``edge_app.vision.blazeface``) with our sanity checks and a
    turned-away test on the face check's yaw. Always runs on grayscale (as the capture loop
    does), so a still and the live loop see the same thing."""

    backend = "blazeface"

    def __init__(self, detect_width: int = 320, min_face_px: int = 40, min_score: float = 0.5, profile: bool = True,
                 manifest=None, threads: int = 1, face_check: bool = True, mirror: bool = True):
        super().__init__(detect_width, min_face_px)
        from edge_app.vision.blazeface import BlazeFace, FaceCheck

        self.net = BlazeFace(manifest, threads)
        self.check = FaceCheck(threads=threads) if face_check else None
        self.min_score, self.profile, self.mirror = min_score, profile, mirror
        self._next_tile = 0  # where the next partial tile search starts (see ``detect``)

    @classmethod
    def from_config(cls, cfg: Config) -> "BlazeFaceDetector":
        d = cfg.detector
        return cls(d.detect_width, d.min_face_px, d.min_score, d.profile, d.manifest or None)

    def _view(self, gray: np.ndarray, min_px: float, dx: int = 0, dy: int = 0, frame: np.ndarray | None = None,
              max_w: float | None = None, mirror: bool = False) -> list[Face]:
        """``_faces`` of one view (the whole frame or a tile) no wider than ``max_w``;
        with ``mirror``, when the view shows none, those of its mirror image: the
        network, shown a face flipped left-right, often finds one it missed (chosen on
        FER+ validation placements, see the model card); a view with a face costs one
        pass only."""
        for flip in (False, True) if mirror else (False,):
            faces = [f for f in self._faces(gray, min_px, dx, dy, frame, flip) if max_w is None or f.box[2] <= max_w]
            if faces:
                break
        return faces

    def _faces(self, gray: np.ndarray, min_px: float, dx: int = 0, dy: int = 0,
               frame: np.ndarray | None = None, flip: bool = False) -> list[Face]:
        """Believable faces in ``gray``, a region whose corner is (dx, dy) in ``frame``
        (the whole grayscale frame): a face cut by the region's edge inside the frame is
        left out (an overlapping region holds it whole), and every face must pass the
        face check on the frame. ``flip``: the network looks at the region's mirror
        image; its detections are mapped back (``blazeface.mirrored``)."""
        from edge_app.vision.blazeface import mirrored

        frame = gray if frame is None else frame
        H, W = gray.shape[:2]
        FH, FW = frame.shape[:2]
        cut = (dx > 0, dy > 0, dx + W < FW, dy + H < FH)  # which region edges lie inside the frame
        faces = []
        found = (self.net.detect(gray, self.min_score) if not flip else
                 [mirrored(d, W) for d in self.net.detect(cv2.flip(gray, 1), self.min_score)])
        for d in found:
            if not plausible(d.box, d.keypoints, min_px):
                continue
            x0, y0, x1, y1 = d.box
            if (cut[0] and x0 < 0) or (cut[1] and y0 < 0) or (cut[2] and x1 > W) or (cut[3] and y1 > H):
                continue
            shift = np.array([dx, dy, dx, dy], np.float32)
            yaw = None
            if self.check is not None:  # one Face Mesh run: presence and yaw (a second on a doubt)
                box, eyes = np.asarray(d.box) + shift, (d.keypoints[0] + shift[:2], d.keypoints[1] + shift[:2])
                look = self.check.look(frame, box, *eyes)
                if (not believed(d.score, look.presence, self.check.presence_min) and
                        self.check.look(frame, box, *eyes, SECOND_LOOK_CROP).presence < SECOND_LOOK_PRESENCE):
                    continue
                yaw = look.yaw
            kind = "profile" if turned_away(d.keypoints, yaw) else "frontal"
            if kind == "profile" and not self.profile:
                continue
            x0, y0 = max(0, int(round(d.box[0]))), max(0, int(round(d.box[1])))
            x1, y1 = min(W, int(round(d.box[2]))), min(H, int(round(d.box[3])))
            kp = tuple((float(x) + dx, float(y) + dy) for x, y in d.keypoints)
            faces.append(Face((x0 + dx, y0 + dy, x1 - x0, y1 - y0), kind, round(d.score, 4), kp))
        return faces

    def detect(self, frame: np.ndarray, detect_width: int | None = None, min_face_px: int | None = None,
               tiles: bool | None = None) -> list[Face]:
        """Every believable face, biggest first (``detect_width`` is Haar's; unused).

        The short-range network sees the frame at 128 pixels, so on a whole frame it finds
        faces from about a third of the frame's height up. Smaller faces are searched on
        overlapping tiles (``tile_grid``): all of them when ``tiles`` is true (stills,
        where time matters less); by default, when the whole frame showed no face, the
        next ``TILES_PER_SEARCH`` of them in turn, so the live loop, which searches an
        empty scene every few frames, covers them all within about a second and never
        pays for all at once."""
        if frame.size == 0:  # no pixels (OpenCV cannot convert them): no face, as Haar says
            return []
        gray = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        min_px = min_face_px or self.min_face_px
        # the full search (stills) also looks at the mirror image of each view that shows
        # no face; the live loop does not: a turned head seen mirrored can read as frontal
        # (the demo's cameraman), and there the next search is a fraction of a second away
        mirror = bool(tiles) and self.mirror
        faces = self._view(gray, min_px, mirror=mirror)
        if tiles or (tiles is None and not faces):
            grid = tile_grid(gray.shape[0], gray.shape[1], min_px)
            if not tiles and grid:
                start = self._next_tile % len(grid)
                grid = (grid + grid)[start:start + min(TILES_PER_SEARCH, len(grid))]
                self._next_tile = start + len(grid)
            faces = _merge(faces + [f for x, y, side in grid
                                    for f in self._view(gray[y:y + side, x:x + side], min_px, x, y, gray,
                                                        TILE_MAX_FACE * side, mirror)])
        return sorted(faces, key=lambda f: -f.box[2] * f.box[3])

    def detect_near(self, gray: np.ndarray, small: np.ndarray, scale: float, small_box, kind: str) -> Face | None:
        """Run the network on a square region about twice the tracked face: the face
        fills more of the network's 128-pixel input there than in the whole frame."""
        x, y, w, h = (v * scale for v in small_box)
        side = 2.0 * max(w, h)
        cx, cy = x + w / 2, y + h / 2
        H, W = gray.shape[:2]
        x0, y0 = int(max(0, cx - side / 2)), int(max(0, cy - side / 2))
        x1, y1 = int(min(W, cx + side / 2)), int(min(H, cy + side / 2))
        hits = [f for f in self._faces(gray[y0:y1, x0:x1], max(self.min_face_px, 0.6 * w), x0, y0, gray)
                if f.box[2] <= 1.6 * w]
        if not hits:
            return None
        return min(hits, key=lambda f: (f.box[0] + f.box[2] / 2 - cx) ** 2 + (f.box[1] + f.box[3] / 2 - cy) ** 2)


# tile sides as fractions of the frame's shorter side; 1.0 and 0.8 (squares of the
# frame's full height and a bit less) catch big faces that the letterboxed whole frame
# scores low, chosen on FER+ validation placements (see the model card)
TILE_LEVELS = (1.0, 0.8, 2 / 3, 4 / 9)
TILE_MAX_FACE = 0.9  # a tile keeps faces up to this fraction of its side; one cut by the tile's
# edge is left out anyway (``_faces``). Was 0.6 ("bigger ones are seldom whole in it"), but
# on FER+ validation placements (seeds 31-33) the tiles' wider detections were real faces
# that no other view found: recall +0.5 points, no false positive (model card)
TILES_PER_SEARCH = 4  # tiles a default (live) search adds when the whole frame shows no face


def tile_grid(h: int, w: int, min_px: float) -> list[tuple[int, int, int]]:
    """Square tiles (x, y, side) covering an h x w frame at each of ``TILE_LEVELS``, each
    overlapping its neighbours by half, so any face up to half a tile wide lies whole in
    one of them; a level whose tiles could not hold a face of ``min_px`` is left out."""
    out = []
    for level in TILE_LEVELS:
        side = int(min(h, w) * level)
        if side < 3 * min_px or (side == h == w):  # (a tile as big as a square frame is the frame)
            continue
        out += [(x, y, side) for y in _starts(h, side) for x in _starts(w, side)]
    return out


def _starts(length: int, side: int) -> list[int]:
    """Evenly spaced tile starts from 0 to ``length - side``, at most half a tile apart."""
    n = int(np.ceil((length - side) / (side / 2) - 0.05)) + 1
    return sorted({int(round(v)) for v in np.linspace(0, length - side, max(1, n))})


def _merge(faces: list[Face], overlap: float = 0.3) -> list[Face]:
    """One face per place: of faces overlapping by more than ``overlap`` (intersection
    over union), or one centred inside the other, the best-scoring one (a face found whole
    and in a tile, or in two tiles). Two views of one face can be framed apart (a tile's
    box 40 px lower and a size smaller: IoU 0.30) and one photo gave two results for one
    face; two faces seen are never centred inside each other's box."""
    kept: list[Face] = []
    for f in sorted(faces, key=lambda f: -f.score):
        if all(_iou(f.box, k.box) <= overlap and not _centred_in(f.box, k.box) and not _centred_in(k.box, f.box)
               for k in kept):
            kept.append(f)
    return kept


def _centred_in(a, b) -> bool:
    """Is the centre of box ``a`` inside box ``b``?"""
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    return bx <= ax + aw / 2 <= bx + bw and by <= ay + ah / 2 <= by + bh


def _iou(a, b) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    iw = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    ih = max(0, min(ay + ah, by + bh) - max(ay, by))
    inter = iw * ih
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0
