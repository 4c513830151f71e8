"""Keep the main face between detections, so the detector runs rarely and on little of the frame.

Detection on a whole frame is the most expensive stage by far. The tracker runs it on the
whole (down-scaled) frame only every ``full_every`` frames or when the face is lost;
every ``detect_every`` frames it re-detects only in a small region around the tracked
face and only at sizes near the tracked one (``Detector.detect_near``); on the frames in between it follows the
face with template matching on the small grayscale frame. Boxes always come back in
full-frame pixels, and the classifier crops from the full-resolution frame, so the crop
it sees is (almost) the one a detection on every full frame would give.
"""
from __future__ import annotations

import cv2
import numpy as np

from edge_app.vision.detector import Detector, Face, _iou

MATCH_MIN = 0.55  # template-match score below which the face counts as lost
# A whole-frame detection keeps the face being followed as the main face (the one that
# drives the state) while it is still there: the biggest face won at 1.4 times the area,
# so a neighbour leaning in beside the student took the desk, and the student's log and
# buzzer had the neighbour's expression. Another face takes over only once the followed
# one has gone, or when it is more than this many times its area (twice as wide): a
# neighbour beside the student sits about as far from the camera, while a face half as
# wide is further back (a poster or photo on the wall, someone across the room) and was
# followed only because it was found before the student sat down.
SWITCH_AREA = 4.0
SAME_FACE_IOU = 0.3  # a face found overlapping the followed one this much (IoU) is that face


class FaceTracker:
    def __init__(self, detector: Detector, detect_every: int = 3, full_every: int = 30):
        self.detector = detector
        self.detect_every, self.full_every = max(1, detect_every), max(1, full_every)
        self.faces: list[Face] = []
        # what the last update did (for stage timing): "full", "roi" (a detection), "track", "idle" (nobody there,
        # no search this frame), "none" (no update yet); the loop counts the last two with "track"
        self.last_step = "none"
        self._n = 0  # frames since the last full detection
        self._k = self.detect_every  # frames since the last detection of any kind
        self._template: np.ndarray | None = None
        self._small_box: tuple[int, int, int, int] | None = None  # main face in small-frame pixels
        self._shape: tuple[int, ...] | None = None  # the frame size the above belong to

    def reset(self) -> None:
        self.faces, self._template, self._small_box = [], None, None
        self._n, self._k = 0, self.detect_every

    def update(self, gray: np.ndarray) -> list[Face]:
        """The faces in this full-resolution grayscale frame, main face first."""
        det = self.detector
        if gray.shape[:2] != self._shape:  # a camera reopened at another size: what was followed is in
            self.reset()  # the old frame's pixels (a box half the face's size, eyes elsewhere)
            self._shape = gray.shape[:2]
        if self.detect_every == 1 and self.full_every == 1:  # plain detection on every frame
            self.last_step = "full"
            self.faces = self._main_first(det.detect(gray))
            return self.faces
        small, scale = det.small_gray(gray)
        self._n += 1
        self._k += 1
        if self._small_box is not None and self._n < self.full_every and self._k >= self.detect_every:
            self.last_step = "roi"
            found = det.detect_near(gray, small, scale, self._small_box, self.faces[0].kind if self.faces else "frontal")
            if found is not None:
                self._k = 0
                return self._keep(small, scale, [found])
        elif self._small_box is not None and self._n < self.full_every:
            self.last_step = "track"
            if self._follow(small, scale):
                return self.faces
        elif self._small_box is None and self._k < self.detect_every:
            self.last_step = "idle"  # nobody there: search the whole frame every detect_every frames only
            return self.faces
        self.last_step = "full"
        self._n = self._k = 0
        faces = self._with_followed(gray, small, scale, det.detect(gray))
        if not faces:
            self._template = self._small_box = None
            self.faces = []
            return self.faces
        return self._keep(small, scale, self._main_first(faces))

    # ------------------------------------------------------------ helpers
    def _with_followed(self, gray: np.ndarray, small: np.ndarray, scale: float, faces: list[Face]) -> list[Face]:
        """``faces`` of a whole-frame search, with the followed face looked for near where it
        was when the search missed it. BlazeFace searches a frame's small-face tiles a few
        at a time, so one whole-frame pass can miss a face the last one found: with two
        people in view the other became the main face until the next pass, and the state
        flipped between two people's expressions every few seconds."""
        if self._small_box is None or not self.faces:
            return faces
        followed = self.faces[0]
        if any(_iou(f.box, followed.box) > SAME_FACE_IOU for f in faces):
            return faces
        found = self.detector.detect_near(gray, small, scale, self._small_box, followed.kind)
        if found is None:  # gone: whatever the search found is what there is
            return faces
        kept = [found, *(f for f in faces if _iou(f.box, found.box) <= SAME_FACE_IOU)]
        return sorted(kept, key=lambda f: f.box[2] * f.box[3], reverse=True)  # as a search gives them: _main_first

    def _main_first(self, faces: list[Face]) -> list[Face]:
        """``faces`` (biggest first) with the face followed so far first, when it is
        among them and none is more than ``SWITCH_AREA`` times its area (a face further
        back, followed only until the student came)."""
        if not self.faces or not faces:  # nobody followed, or nobody found (the student left)
            return faces
        followed = self.faces[0].box
        same = max(faces, key=lambda f: _iou(f.box, followed))
        if same is faces[0] or _iou(same.box, followed) <= SAME_FACE_IOU:
            return faces
        if faces[0].box[2] * faces[0].box[3] > SWITCH_AREA * same.box[2] * same.box[3]:
            return faces
        return [same, *(f for f in faces if f is not same)]

    def _keep(self, small: np.ndarray, scale: float, faces: list[Face]) -> list[Face]:
        self.faces = faces
        x, y, w, h = (int(round(v / scale)) for v in faces[0].box)
        H, W = small.shape
        x, y = max(0, min(x, W - 2)), max(0, min(y, H - 2))
        w, h = max(2, min(w, W - x)), max(2, min(h, H - y))
        self._small_box = (x, y, w, h)
        self._template = small[y:y + h, x:x + w].copy()  # once per detection, not per frame
        return faces

    def _follow(self, small: np.ndarray, scale: float) -> bool:
        """Move the main box to where its template matches best nearby; False when lost."""
        if self._small_box is None or self._template is None:
            return False
        x, y, w, h = self._small_box
        m = max(4, w // 6)
        H, W = small.shape
        x0, y0 = max(0, x - m), max(0, y - m)
        x1, y1 = min(W, x + w + m), min(H, y + h + m)
        window = small[y0:y1, x0:x1]
        if window.shape[0] < h or window.shape[1] < w:
            return False
        score = cv2.matchTemplate(window, self._template, cv2.TM_CCOEFF_NORMED)
        _, best, _, (dx, dy) = cv2.minMaxLoc(score)
        if best < MATCH_MIN:
            return False
        nx, ny = x0 + dx, y0 + dy
        self._small_box = (nx, ny, w, h)
        main = self.faces[0]
        fw, fh = main.box[2], main.box[3]
        moved = main.moved((nx - x) * scale, (ny - y) * scale, (int(round(nx * scale)), int(round(ny * scale)), fw, fh))
        self.faces = [moved, *self.faces[1:]]
        return True
