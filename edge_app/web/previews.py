"""How an analysed photo is shown back: a scaled, annotated preview and face thumbnails,
inlined as data URIs so no image is ever served from a URL or cached by the browser."""
from __future__ import annotations

import base64

import cv2

from edge_app.vision.stills import draw_faces, scale_boxes


def data_uri(bgr) -> str:
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode() if ok else ""


def face_crop(bgr, box, size: int):
    x, y, w, h = box
    m = int(0.15 * max(w, h))
    H, W = bgr.shape[:2]
    crop = bgr[max(0, y - m):min(H, y + h + m), max(0, x - m):min(W, x + w + m)]
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA) if crop.size else bgr[:1, :1]


def thumbnail(bgr, width: int):
    """``bgr`` at most ``width`` wide (never enlarged)."""
    return at_width(bgr, min(width, bgr.shape[1]))


def at_width(bgr, width: int):
    """``bgr`` scaled to ``width``, up as well as down: a kept 320-px thumbnail drawn at
    its own size had no room for its labels, which landed beside other faces."""
    h, w = bgr.shape[:2]
    if w == width:
        return bgr.copy()
    return cv2.resize(bgr, (width, max(1, int(h * width / w))),
                      interpolation=cv2.INTER_AREA if w > width else cv2.INTER_LINEAR)


def annotated(image, faces: list[dict], width: int, shown_px: int = 960):
    """``image`` (the photo, or what was kept of it) with its faces drawn, at most
    ``shown_px`` wide; ``faces``' boxes are in pixels of the photo ``width`` wide."""
    shown = min(shown_px, width)
    return draw_faces(at_width(image, shown), scale_boxes(faces, width, shown), copy=False)

