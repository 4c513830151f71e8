"""The emotion classifier: an int8 TFLite model run by LiteRT, described by a manifest.

The manifest (``<model>.json``) says everything the runtime needs: the labels in output
order, the input size, and the rule ``float = pixel * scale + offset`` for a 0-255
grayscale pixel; the runtime quantises that with the input tensor's own parameters, so
a float or int8 model both work. The file's sha256 must match the manifest. Its
``inference.views`` lists the looks at each face whose outputs are averaged (test-time
augmentation, chosen on validation when the model is quantised).
"""
from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import cv2
import numpy as np

# The shipped model is package data (edge_app/models/shipped/), so it is found wherever the
# package is installed (a wheel on a device, an editable checkout); never beside a checkout.
SHIPPED_MANIFEST = Path(str(resources.files("edge_app.models") / "shipped" / "emotion-int8.json"))
KNOWN_LABELS = ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt"]


class ModelError(RuntimeError):
    """The model or its manifest is missing, corrupt or inconsistent; the message says which."""


def load_interpreter_class():
    """LiteRT first (``ai_edge_litert``), then the older ``tflite_runtime``."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError:
            raise ModelError("no TFLite runtime: pip install ai-edge-litert (or tflite-runtime on Python <= 3.11)") from None
    return Interpreter


def checked_interpreter_for(model_path: Path, sha256: str, threads: int, fix: str = ""):
    """The interpreter for ``model_path`` once its bytes match the manifest's ``sha256``
    (``fix``: what to do when they do not, after the mismatch), hashed and loaded from one
    read: nothing can change between the check and the load."""
    content = model_path.read_bytes()
    digest = hashlib.sha256(content).hexdigest()
    if digest != sha256.lower():
        raise ModelError(f"{model_path} does not match its manifest: sha256 {digest[:12]}..., expected {sha256[:12]}...{fix}")
    return interpreter_for(content, model_path, threads)


def interpreter_for(content: bytes, model_path: Path, threads: int):
    """The runtime's interpreter over a model's bytes (those whose sha256 was checked),
    tensors allocated; ``ModelError`` for a file it cannot load. Given the bytes, LiteRT
    verifies the flatbuffer and raises; given a path, ai-edge-litert 1.4.0 (what a Pi's
    Python 3.11 gets) maps the file unverified, and a truncated model whose manifest had
    been made from it crashed the whole process (a segfault, where a model upload's check
    or the service's start should have said "not a loadable TFLite model")."""
    Interpreter = load_interpreter_class()
    try:
        interpreter = Interpreter(model_content=content, num_threads=threads)
        interpreter.allocate_tensors()
    except Exception as exc:  # the runtime raises ValueError/RuntimeError for bad flatbuffers
        raise ModelError(f"{model_path} is not a loadable TFLite model: {exc}") from None
    return interpreter


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class View:
    """One look at the face crop: mirrored or not, then moved ``shift`` = (dx, dy) pixels
    of the model's input (positive: right, down), edges repeated. Averaging a few such
    looks makes the output steadier against where the detector put its box."""

    flip: bool = False
    dx: int = 0
    dy: int = 0

    MAX_SHIFT = 8

    @classmethod
    def from_json(cls, raw) -> "View":
        if not isinstance(raw, dict) or set(raw) - {"flip", "shift"}:
            raise ValueError(f"a view is {{\"flip\": true|false, \"shift\": [dx, dy]}}, not {raw!r}")
        flip, shift = raw.get("flip", False), raw.get("shift", [0, 0])
        if not isinstance(flip, bool):
            raise ValueError(f"a view's flip must be true or false, not {flip!r}")
        if (not isinstance(shift, list) or len(shift) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) and abs(v) <= cls.MAX_SHIFT for v in shift)):
            raise ValueError(f"a view's shift must be [dx, dy], whole pixels within +-{cls.MAX_SHIFT}, not {shift!r}")
        return cls(flip, shift[0], shift[1])

    def to_json(self) -> dict:
        return {"flip": self.flip, "shift": [self.dx, self.dy]}

    def apply(self, crop: np.ndarray) -> np.ndarray:
        """The crop as this view sees it (the crop itself, uncopied, for the plain view)."""
        out = crop[:, ::-1] if self.flip else crop
        if self.dx or self.dy:
            h, w = out.shape[:2]
            move = np.array([[1, 0, self.dx], [0, 1, self.dy]], np.float32)
            out = cv2.warpAffine(np.ascontiguousarray(out), move, (w, h), flags=cv2.INTER_NEAREST,
                                 borderMode=cv2.BORDER_REPLICATE)
        return out


VIEW_PRESETS = {
    "single": (View(),),
    "flip": (View(), View(flip=True)),
    # one pixel up and down, each also mirrored: four invocations
    "flip-vshift": (View(dy=-1), View(True, dy=-1), View(dy=1), View(True, dy=1)),
}


# Each view is one more inference per face per frame: a manifest asking for 1000 took the
# live loop from 15 FPS to 1. Eight is twice the largest preset.
MAX_VIEWS = 8


def views_from_inference(inference) -> tuple[View, ...]:
    """The views a manifest's ``inference`` block (or an evaluation JSON) asks for:
    ``views`` (a list of views), the older ``flip_average: true``, or the plain crop."""
    if not isinstance(inference, dict):
        raise ValueError(f"inference must be an object, not {inference!r}")
    if "views" in inference:
        raw = inference["views"]
        if not isinstance(raw, list) or not raw:
            raise ValueError(f"inference.views must be a non-empty list of views, not {raw!r}")
        if len(raw) > MAX_VIEWS:
            raise ValueError(f"inference.views lists {len(raw)} views; at most {MAX_VIEWS} are allowed "
                             "(each one is another inference per face per frame)")
        return tuple(View.from_json(v) for v in raw)
    flip_average = inference.get("flip_average", False)
    if not isinstance(flip_average, bool):
        raise ValueError(f"inference.flip_average must be true or false, not {flip_average!r}")
    return VIEW_PRESETS["flip"] if flip_average else VIEW_PRESETS["single"]


def parse_views(text: str) -> tuple[View, ...]:
    """A command line's views: a preset name (``single``, ``flip``, ``flip-vshift``) or a
    JSON list such as ``[{"shift": [0, -1]}, {"flip": true}]``."""
    if text in VIEW_PRESETS:
        return VIEW_PRESETS[text]
    try:
        return views_from_inference({"views": json.loads(text)})
    except ValueError as exc:
        raise ValueError(f"views {text!r}: use one of {sorted(VIEW_PRESETS)} or a JSON list of views ({exc})") from None


def views_json(views) -> list[dict]:
    return [v.to_json() for v in views]


@dataclass
class Manifest:
    path: Path
    model_path: Path
    labels: list[str]
    size: tuple[int, int]
    scale: float
    offset: float
    sha256: str
    metrics: dict = field(default_factory=dict)
    raw: dict = field(default_factory=dict)
    views: tuple = VIEW_PRESETS["single"]  # manifest "inference": {"views": [...]}

    @classmethod
    def load(cls, path: Path) -> "Manifest":
        path = Path(path)
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            raise ModelError(f"model manifest {path} does not exist") from None
        except (OSError, ValueError) as exc:
            raise ModelError(f"model manifest {path} is not readable JSON: {exc}") from None
        try:
            if not isinstance(raw, dict):
                raise ValueError("the manifest must be a JSON object")
            labels = raw["labels"]
            if not isinstance(labels, list) or not all(isinstance(l, str) for l in labels):
                raise ValueError(f"labels must be a list of emotion names, not {str(labels)[:80]}")
            inp = raw["input"]
            if not isinstance(inp, dict):
                raise ValueError(f"input must be an object, not {str(inp)[:80]}")
            size = _input_size(inp.get("size"))
            if inp.get("channels", 1) != 1:
                raise ModelError(f"{path}: input must be one-channel (grayscale): input.channels is 1 or left out")
            unknown = [l for l in labels if l not in KNOWN_LABELS]
            if unknown or not labels:
                raise ModelError(f"{path}: labels {unknown or labels} are not FER+ emotions {KNOWN_LABELS}")
            views = views_from_inference(raw.get("inference", {}))
            if not isinstance(raw["model"], str) or not isinstance(raw.get("metrics", {}), dict):
                raise ValueError("model must be a file name and metrics an object")
            for key in ("scale", "offset"):
                value = inp.get(key)
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not abs(value) < 1e6:
                    raise ValueError(f"input.{key} must be a finite number, not {value!r}")
            return cls(path, path.parent / raw["model"], labels, size, float(inp["scale"]), float(inp["offset"]),
                       str(raw["sha256"]).lower(), raw.get("metrics", {}), raw, views)
        except KeyError as exc:
            raise ModelError(f"{path}: the manifest has no {exc.args[0]!r} field") from None
        except (TypeError, ValueError, OverflowError) as exc:
            raise ModelError(f"{path}: manifest field missing or wrong: {exc}") from None


def _input_size(size) -> tuple[int, int]:
    """The manifest's ``input.size``, [height, width] in pixels; ValueError naming it else
    (junk there said "'NoneType' object is not iterable" or "invalid literal for int()")."""
    def whole(v) -> bool:  # 48, or 48.0 as an exporter in another language writes it
        return (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer())

    if not (isinstance(size, list) and len(size) == 2 and all(whole(v) and 0 < v <= 4096 for v in size)):
        raise ValueError(f"input.size must be [height, width] in pixels (e.g. [48, 48]), not {str(size)[:80]}")
    return int(size[0]), int(size[1])


class EmotionClassifier:
    """``probabilities(gray_face) -> (n_labels,) float32`` summing to 1.

    When the manifest lists several ``views`` (the face mirrored, moved a pixel), the model
    sees each and their outputs are averaged: faces are left-right symmetric in meaning and
    a detector's box is never placed to the pixel, so the average is steadier and more
    accurate than one look (measured on FER+ validation), at one inference per view.
    """

    def __init__(self, manifest_path: Path | str | None = None, threads: int = 1):
        self.manifest = Manifest.load(Path(manifest_path) if manifest_path else SHIPPED_MANIFEST)
        m = self.manifest
        if not m.model_path.is_file():
            raise ModelError(f"model file {m.model_path} (named by {m.path}) does not exist")
        self.interpreter = checked_interpreter_for(m.model_path, m.sha256, threads)
        inp = self.interpreter.get_input_details()[0]
        out = self.interpreter.get_output_details()[0]
        expected_in = (1, m.size[0], m.size[1], 1)
        in_shape, out_shape = tuple(int(v) for v in inp["shape"]), tuple(int(v) for v in out["shape"])  # not np.int32(1)
        if in_shape != expected_in:
            raise ModelError(f"{m.model_path}: input shape {in_shape} does not match the manifest's {expected_in}")
        if out_shape != (1, len(m.labels)):
            raise ModelError(f"{m.model_path}: output shape {out_shape} does not match {len(m.labels)} labels")
        self._in, self._out = inp, out
        self._in_scale, self._in_zero = inp["quantization"]
        self._out_scale, self._out_zero = out["quantization"]
        self._buffer = np.empty(expected_in, inp["dtype"])
        self._crop = np.empty(m.size, np.uint8)
        self._lock = threading.Lock()  # one interpreter, shared by the loop and uploads
        self.labels = m.labels

    def _fill_input(self, crop: np.ndarray) -> None:
        m = self.manifest
        x = crop.astype(np.float32) * m.scale + m.offset
        if self._in["dtype"] == np.float32:
            self._buffer[0, :, :, 0] = x
        else:
            info = np.iinfo(self._in["dtype"])
            q = np.round(x / self._in_scale + self._in_zero)
            self._buffer[0, :, :, 0] = np.clip(q, info.min, info.max)

    def _take(self, face: np.ndarray) -> None:
        """``face`` (grayscale or BGR, any size) into the model's crop buffer (holding the lock),
        made 8-bit grey first: cv2.resize's ``dst`` is used only when the result's type matches it,
        else it makes a new array, and the buffer kept the previous face, scored again."""
        if face.dtype != np.uint8:  # pixels 0-255 given as another type
            face = np.clip(np.rint(face), 0, 255).astype(np.uint8)
        if face.ndim == 3:
            face = cv2.cvtColor(face, cv2.COLOR_BGR2GRAY)
        cv2.resize(face, self.manifest.size[::-1], dst=self._crop, interpolation=cv2.INTER_AREA)

    def probabilities(self, gray_face: np.ndarray) -> np.ndarray:
        views = self.manifest.views
        with self._lock:
            self._take(gray_face)
            total = np.zeros(len(self.labels), np.float32)
            for view in views:
                self._fill_input(view.apply(self._crop))
                total += self._run()
        return total / len(views)

    def raw_outputs(self, gray_face: np.ndarray) -> np.ndarray:
        """What the model itself gives for each of its views of a grayscale face (a row
        each, dequantized), before ``probabilities`` makes probabilities of it: there a NaN
        reads as "no answer", a uniform output, so the flash tool's checks look here."""
        with self._lock:
            self._take(gray_face)
            rows = []
            for view in self.manifest.views:
                self._fill_input(view.apply(self._crop))
                rows.append(self._invoke())
        return np.array(rows)

    def _invoke(self) -> np.ndarray:
        """Invoke the model on the input buffer; its output as numbers (dequantized)."""
        self.interpreter.set_tensor(self._in["index"], self._buffer)
        self.interpreter.invoke()
        raw = self.interpreter.get_tensor(self._out["index"])[0]
        if self._out["dtype"] == np.float32:
            return raw.astype(np.float32)
        return (raw.astype(np.float32) - self._out_zero) * self._out_scale

    def _run(self) -> np.ndarray:
        """Invoke the model on the input buffer; its output as probabilities summing to 1."""
        return as_probabilities(self._invoke())

    def classify(self, gray_face: np.ndarray) -> tuple[str, float, dict[str, float]]:
        p = self.probabilities(gray_face)
        i = int(p.argmax())
        return self.labels[i], float(p[i]), {l: round(float(v), 4) for l, v in zip(self.labels, p)}


def as_probabilities(raw: np.ndarray) -> np.ndarray:
    """A model's output as probabilities summing to 1; an output that is no answer (all zero
    or below, a NaN, an infinity from a float model gone wrong) is a uniform one, which reads
    as unsure. An infinity divided through gave NaN: "confidence": NaN is not JSON, and the
    upload's answer failed to parse."""
    p = np.clip(raw.astype(np.float32), 0, None)
    total = float(p.sum())
    if not np.isfinite(total) or total <= 0:
        return np.full(len(p), 1.0 / len(p), np.float32)
    return p / total


def crop_face(gray: np.ndarray, box) -> np.ndarray:
    """The face region of a grayscale frame, clipped to the frame."""
    x, y, w, h = box
    H, W = gray.shape[:2]
    x0, y0, x1, y1 = max(0, x), max(0, y), min(W, x + w), min(H, y + h)
    return gray[y0:y1, x0:x1]
