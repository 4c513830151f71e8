"""Still-image analysis shared by the CLI, the upload page and ``POST /api/analyze``.

``decode_image`` is the one gate for untrusted image bytes: it checks the real type (not
the extension), the byte size, the header's declared pixel count before decoding (so a
decompression bomb is refused cheaply), and that the data decodes completely. A photo
larger than ``ANALYSIS_PIXELS`` is scaled down as it is decoded (JPEG) or right after
(PNG, WebP), before any copy is made: faces stay far above the detector's minimum size,
and one upload costs tens of megabytes, not hundreds (a Pi has 1-4 GB).
"""
from __future__ import annotations

import io
import logging
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge_app.config import Config
from edge_app.engagement import UNCERTAIN, Group
from edge_app.vision.align import aligned_crop
from edge_app.vision.classifier import EmotionClassifier
from edge_app.vision.detector import Detector

log = logging.getLogger(__name__)

ACCEPTED_TEXT = "JPEG, PNG or WebP"
# ISO base media brands (the ``ftyp`` box) of HEIF images: what an iPhone saves by default
HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"msf1"}
AVIF_BRANDS = {b"avif", b"avis"}
HEIC_ADVICE = ("the photo is in HEIC format (what iPhones take by default), and this device reads only JPEG, "
               "PNG or WebP. Share or export the photo as a JPEG and send that (on a computer: open it and save "
               "or export it as JPEG); on an iPhone, Settings > Camera > Formats > Most Compatible makes the "
               "camera take JPEG photos from now on")


class ImageRejected(ValueError):
    """An upload that is not an acceptable image; the message says what is accepted."""


# What the detector and the results see of a larger photo: about 2100 x 1400 pixels.
ANALYSIS_PIXELS = 3_000_000
# PNG and WebP cannot be decoded scaled down: the whole picture is held at 4 bytes a pixel
# before it is reduced. 8 MP is 32 MB; a 40 MP PNG would be 160 MB (a Pi has 1-4 GB, and
# several uploads may wait). JPEG, what phones send, decodes at 1/2..1/8 size instead.
FULL_DECODE_PIXELS = 8_000_000
# A progressive JPEG is decoded scan by scan, each over the whole picture, however small the
# decoded size: cameras and encoders write about 10 (mozjpeg's smallest files a few more),
# while a crafted 10 MB file of 170,000 tiny scans kept the one analysis thread busy for 14
# minutes and every upload waited. A start-of-scan marker (FF DA) cannot occur inside the
# compressed data (a data byte FF is written FF 00), so counting them is exact.
MAX_JPEG_SCANS = 100
EXIF_ORIENTATION = 0x0112


@dataclass
class Limits:
    max_bytes: int = 10 * 1024 * 1024
    max_pixels: int = 40_000_000

    @classmethod
    def from_config(cls, cfg: Config) -> "Limits":
        w = cfg.web
        return cls(int(w.max_upload_mb * 1024 * 1024), int(w.max_upload_megapixels * 1_000_000))


def _ftyp_brands(data: bytes) -> set[bytes]:
    """The major and compatible brands of an ISO base media file (HEIC, AVIF, MP4), or none."""
    if data[4:8] != b"ftyp":
        return set()
    size = min(int.from_bytes(data[:4], "big"), len(data), 256)
    return {data[8:12]} | {data[i:i + 4] for i in range(16, size - 3, 4)}


def _not_accepted(data: bytes) -> str:
    """What to say of a file that is no JPEG, PNG or WebP: a HEIC or AVIF photo is named, with
    what to do, as a student cannot know what "not a JPEG, PNG or WebP" means for their photo."""
    brands = _ftyp_brands(data)
    if brands & AVIF_BRANDS:
        return ("the photo is an AVIF image, and this device reads only JPEG, PNG or WebP: open it and "
                "export or save it as JPEG, then send that")
    if brands & HEIF_BRANDS:
        return HEIC_ADVICE
    return f"the file is not a {ACCEPTED_TEXT} image (whatever its name says)"


def _sniff(data: bytes) -> str | None:
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


# Pillow's modes for 16-bit (and 32-bit integer) grayscale, as PNG decodes them.
WIDE_GRAY_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def _fit(w: int, h: int, pixels: int) -> tuple[int, int]:
    """(w, h) scaled down, aspect kept, to at most ``pixels`` pixels."""
    scale = min(1.0, (pixels / (w * h)) ** 0.5)
    return max(1, int(w * scale)), max(1, int(h * scale))


def _shrink(bgr: np.ndarray) -> np.ndarray:
    h, w = bgr.shape[:2]
    if w * h <= ANALYSIS_PIXELS:
        return bgr
    return cv2.resize(bgr, _fit(w, h, ANALYSIS_PIXELS), interpolation=cv2.INTER_AREA)


def _wide_gray_to_bgr(values: np.ndarray) -> np.ndarray:
    """16-bit grayscale (0-65535) -> 8-bit BGR, scaled, not clipped."""
    gray = np.clip((values.astype(np.float32) + 128.5) / 257.0, 0, 255).astype(np.uint8)
    return cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)


def read_image_file(path: Path | str, limits: Limits) -> bytes:
    """A still image file's bytes for ``decode_image``, its size checked before it is read:
    ``engage-edge analyze`` of a 3 GB video read all of it (3.2 GB resident; a MemoryError on
    a Pi) only to say it was too large. Never more than the limit and a byte is read."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size > limits.max_bytes:
            raise ImageRejected(f"the file is {size / 1e6:.1f} MB; the limit is {limits.max_bytes / 1048576:.0f} MB "
                                "(web.max_upload_mb in the config): is it a photograph?")
        return f.read(limits.max_bytes + 1)


def decode_image(data: bytes, limits: Limits | None = None) -> np.ndarray:
    """Validated bytes -> BGR array (EXIF orientation applied), or ``ImageRejected``."""
    return decode_photo(data, limits)[0]


def decode_photo(data: bytes, limits: Limits | None = None) -> tuple[np.ndarray, tuple[int, int]]:
    """Validated bytes -> (BGR array of at most ``ANALYSIS_PIXELS``, the photo's own upright
    (width, height)), or ``ImageRejected``. Faces are found in the array; a caller reports
    their boxes in the photo's own pixels (``scale_boxes``), which its sender sees: the API
    gave a 7000 px photo's boxes in a 1750 px copy's pixels, and said it was 1750 wide."""
    from PIL import Image, ImageOps

    limits = limits or Limits()
    if not data:
        raise ImageRejected(f"the file is empty: upload a {ACCEPTED_TEXT} image")
    if len(data) > limits.max_bytes:
        raise ImageRejected(f"the file is {len(data) / 1e6:.1f} MB; the limit is {limits.max_bytes / 1048576:.0f} MB")
    kind = _sniff(data)
    if kind is None:
        raise ImageRejected(_not_accepted(data))
    if kind == "JPEG" and (scans := data.count(b"\xff\xda")) > MAX_JPEG_SCANS:
        raise ImageRejected(f"the JPEG is written in {scans} scans (a photo has about 10; the limit is "
                            f"{MAX_JPEG_SCANS}): save it again as an ordinary JPEG")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img: Image.Image = Image.open(io.BytesIO(data), formats=[kind])
            w, h = img.size
            if w <= 0 or h <= 0 or w * h > limits.max_pixels:
                raise ImageRejected(  # as a student reads it: what is wrong, and what to do
                    f"the photo is too big: {w}x{h} pixels ({w * h / 1e6:.0f} megapixels); the limit is "
                    f"{limits.max_pixels / 1e6:.0f} MP: take it at a lower resolution, or crop or resize it, "
                    "then try again")
            if kind != "JPEG" and w * h > FULL_DECODE_PIXELS:
                raise ImageRejected(
                    f"the {kind} image has {w}x{h} pixels ({w * h / 1e6:.0f} MP); {kind} images are decoded whole, "
                    f"so the limit for them is {FULL_DECODE_PIXELS / 1e6:.0f} MP: send a JPEG or a smaller image")
            if kind == "JPEG" and w * h > ANALYSIS_PIXELS:
                img.draft("RGB", _fit(w, h, ANALYSIS_PIXELS))  # decoded at 1/2, 1/4 or 1/8 size
            img.load()
            # EXIF orientations 5-8 turn the picture a quarter: its upright width is the header's height
            upright = (h, w) if img.getexif().get(EXIF_ORIENTATION, 1) in (5, 6, 7, 8) else (w, h)
            img = ImageOps.exif_transpose(img)
            if img.mode in WIDE_GRAY_MODES:  # 16-bit grayscale: convert("RGB") would clip it to 255
                return _shrink(_wide_gray_to_bgr(np.asarray(img))), upright
            if img.width * img.height > ANALYSIS_PIXELS:
                # to ANALYSIS_PIXELS, not below: reduce() alone halved a 3.1 MP photo to 0.8 MP (its
                # integer steps first, then one box-filter pass over what is left)
                img = img.resize(_fit(img.width, img.height, ANALYSIS_PIXELS), Image.Resampling.BOX, reducing_gap=2.0)
            img = _on_white(img)
            rgb = np.array(img if img.mode == "RGB" else img.convert("RGB"))  # writable: converted in place
            del img  # the decoded picture goes before anything else is allocated
    except ImageRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageRejected(f"the photo is too big; the limit is {limits.max_pixels / 1e6:.0f} MP: take it at a lower "
                            "resolution, or crop or resize it, then try again") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        # the decoder's own words ("image file is truncated (89 bytes not processed)") are for the log,
        # not for a student, who needs to know what to do
        log.info("a %s image could not be decoded: %s", kind, exc)
        raise ImageRejected(f"the {'WebP' if kind == 'WEBP' else kind} file is incomplete or damaged, so it cannot be "
                            "read (it may not have finished downloading or copying): open it to check, or take "
                            f"or save the photo again and send that ({ACCEPTED_TEXT})") from None
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR, dst=rgb), upright  # in place: no second copy of the photo


def _on_white(img):
    """A picture with transparency as it is seen, on white: its hidden colours (a fully
    transparent PNG still holds a face) are not what its sender sees."""
    from PIL import Image

    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("LA", "PA", "La"):
        img = img.convert("RGBA")
    if img.mode not in ("RGBA", "RGBa"):
        return img
    white = Image.new("RGBA", img.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, img.convert("RGBA")).convert("RGB")


def scale_boxes(faces: list[dict], from_width: int, to_width: int) -> list[dict]:
    """``faces`` with their boxes moved from pixels of a picture ``from_width`` wide to the
    same picture ``to_width`` wide."""
    if from_width == to_width:
        return faces
    s = to_width / from_width
    return [{**f, "box": [round(v * s) for v in f["box"]]} for f in faces]


class Analyzer:
    """Detect every face in a still image and classify each one; a face whose top emotion
    is below ``min_confidence`` is reported with engagement "Uncertain" (not a guess)."""

    def __init__(self, detector: Detector, classifier: EmotionClassifier, mapping: Mapping[str, str],
                 min_confidence: float = 0.0):
        self.detector, self.classifier, self.mapping = detector, classifier, mapping
        self.min_confidence = min_confidence

    def analyze(self, bgr: np.ndarray) -> list[dict]:
        gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        # a still may be any size: detect on a copy at most 640 px wide, never smaller
        # than the live setting, with the smallest face relative to the picture
        width = max(self.detector.detect_width, min(640, gray.shape[1]))
        min_face = max(24, min(self.detector.min_face_px, gray.shape[1] // 20))
        faces = []
        for face in self.detector.detect(gray, width, min_face, tiles=True):
            if face.kind != "frontal":
                continue
            crop = aligned_crop(gray, face)
            if crop.size == 0:
                continue
            emotion, confidence, probabilities = self.classifier.classify(crop)
            uncertain = confidence < self.min_confidence
            faces.append({
                "box": [int(v) for v in face.box],
                "emotion": emotion,
                "confidence": round(confidence, 4),
                "probabilities": probabilities,
                "engagement": UNCERTAIN if uncertain else self.mapping.get(emotion, Group.NOT_ENGAGED),
                "uncertain": uncertain,
            })
        return reading_order(faces)


def reading_order(faces: list[dict]) -> list[dict]:
    """``faces`` sorted as a reader numbers them: rows top to bottom, left to right in a
    row. A face joins a row when its centre is within half a face height of the row's
    first face, so a slightly lower head beside another is not put on a row of its own."""
    rows: list[list[dict]] = []
    for face in sorted(faces, key=lambda f: f["box"][1] + f["box"][3] / 2):
        _, y, _, h = face["box"]
        if rows:
            _, fy, _, fh = rows[-1][0]["box"]
            if abs((y + h / 2) - (fy + fh / 2)) <= max(h, fh) / 2:
                rows[-1].append(face)
                continue
        rows.append([face])
    return [face for row in rows for face in sorted(row, key=lambda f: f["box"][0])]


def face_label(number: int, face: dict) -> str:
    """The text by a face: its number and emotion, or that the model is unsure of it."""
    if face.get("uncertain") or face.get("engagement") == UNCERTAIN:
        return f"{number}: uncertain"
    if face.get("emotion"):
        return f"{number}: {face['emotion']} {face['confidence']:.0%}"
    return f"{number}: {face.get('engagement', '')}"


def place_labels(boxes: list[list[int]], sizes: list[tuple[int, int]], width: int,
                 height: int) -> list[tuple[int, int, int, int]]:
    """One rectangle (x, y, w, h) per label, inside the picture and overlapping no other
    label: above its face when there is room, else below it, else the nearest free place
    in its column, else anywhere free (only a picture too small for all labels has none);
    places that cover no face are preferred.
    ``sizes`` are the labels' (w, h) with padding."""
    placed: list[tuple[int, int, int, int]] = []
    faces = [tuple(b) for b in boxes]

    def hits(r: tuple[int, int, int, int], others) -> bool:
        return any(r[0] < o[0] + o[2] and o[0] < r[0] + r[2] and r[1] < o[1] + o[3] and o[1] < r[1] + r[3]
                   for o in others)

    def inside(x: int, y: int, lw: int, lh: int) -> tuple[int, int, int, int]:
        return min(max(0, x), max(0, width - lw)), min(max(0, y), max(0, height - lh)), lw, lh

    for (x, y, _w, h), (lw, lh) in zip(boxes, sizes):
        steps = range(1, height // max(1, lh) + 2)
        column = [y - lh, y + h] + [v for k in steps for v in (y + h + k * lh, y - lh - k * lh)]
        trials = [inside(x, ly, lw, lh) for ly in column]
        trials += [inside(gx, gy, lw, lh) for gy in range(0, height, max(1, lh // 2))
                   for gx in range(0, width, max(1, lw // 4))]
        # best a place that hides no face either; a label may cover a face, never a label
        placed.append(next((r for r in trials if not hits(r, placed) and not hits(r, faces)),
                           next((r for r in trials if not hits(r, placed)), trials[0])))
    return placed


@dataclass(frozen=True)
class LabelStyle:
    """Font scale, line widths and padding for a picture ``width`` pixels wide."""
    font: float
    box_thickness: int
    text_thickness: int
    pad: int

    @classmethod
    def for_width(cls, width: int) -> "LabelStyle":
        box = max(2, width // 320)
        return cls(max(0.5, width / 1000), box, max(1, box // 2), max(3, box))


def layout_labels(faces: list[dict], width: int, height: int) -> list[tuple[str, tuple[int, int, int, int]]]:
    """Each face's label text and where it goes (``place_labels``), in the table's order."""
    style = LabelStyle.for_width(width)
    texts, sizes = [], []
    for i, f in enumerate(faces, 1):
        text = face_label(i, f)
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, style.font, style.text_thickness)
        texts.append(text)
        sizes.append((tw + 2 * style.pad, th + base + 2 * style.pad))
    return list(zip(texts, place_labels([f["box"] for f in faces], sizes, width, height)))


def draw_faces(bgr: np.ndarray, faces: list[dict], copy: bool = True) -> np.ndarray:
    """Boxes numbered as in the results table, each label on a solid backing in the face's
    colour, placed so that no label covers another (``layout_labels``)."""
    out = bgr.copy() if copy else bgr
    style = LabelStyle.for_width(out.shape[1])
    for f in faces:
        x, y, w, h = f["box"]
        cv2.rectangle(out, (x, y), (x + w, y + h), _colour(_level(f)), style.box_thickness)
    for f, (text, (lx, ly, lw, lh)) in zip(faces, layout_labels(faces, out.shape[1], out.shape[0])):
        colour = _colour(_level(f))
        cv2.rectangle(out, (lx, ly), (lx + lw - 1, ly + lh - 1), colour, cv2.FILLED)
        ink = (0, 0, 0) if sum(colour) > 300 or colour[1] >= 160 else (255, 255, 255)
        (_, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, style.font, style.text_thickness)
        cv2.putText(out, text, (lx + style.pad, ly + style.pad + th), cv2.FONT_HERSHEY_SIMPLEX, style.font, ink,
                    style.text_thickness, cv2.LINE_AA)
    return out


def _level(face: dict) -> str:
    return UNCERTAIN if face.get("uncertain") else face.get("engagement", "")


def _colour(level: str) -> tuple[int, int, int]:
    if level == UNCERTAIN:
        return (160, 160, 160)
    if level.startswith((Group.PARTIALLY_ENGAGED, Group.DISTRACTED)):
        return (0, 165, 255)
    if level.startswith(Group.NOT_ENGAGED):
        return (0, 0, 255)
    if level.startswith(Group.ENGAGED):
        return (0, 200, 0)
    return (255, 128, 0)
