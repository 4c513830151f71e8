"""May this model run here? The checks a candidate passes before the registry installs it.

A model is only installed when: the manifest parses and its labels are FER+ emotions, the
file's sha256 matches, LiteRT loads it, the input/output shapes and types match the
manifest, its evaluation's figures are of the kind the pages read, it is not many times
slower than the model running now, and it classifies the manifest's golden reference faces
(cut from the public-domain photographs shipped in the package, the same the demo uses:
``edge_app.vision.faces``) as recorded. ``compute_golden`` records them.
"""
from __future__ import annotations

import errno
import json
import logging
import math
import shlex
import shutil
import time
from pathlib import Path

import numpy as np

from edge_app.fsutil import atomic_write, user_name
from edge_app.models.errors import FlashError, check_readable, write_failed
from edge_app.vision.classifier import SHIPPED_MANIFEST, EmotionClassifier, Manifest, ModelError, sha256_file
from edge_app.vision.faces import REFERENCE_SOURCE, reference_faces

log = logging.getLogger(__name__)
GOLDEN_SOURCE = REFERENCE_SOURCE
GOLDEN_COUNT = 8
# A manifest says how its golden check is run, but cannot waive it: at least this many
# reference faces, and at least this share of them classified as recorded (a little
# slack for an int8 model on another CPU's kernels).
GOLDEN_MIN_FACES = 8
GOLDEN_MIN_AGREEMENT = 0.875
# A golden record also keeps each face's probability of its label; a model reading a face more
# than this far from it is read otherwise than recorded: a manifest's input scale and offset
# for [-1, 1] on a network trained on [0, 1] kept every label (8/8) but moved two of the eight
# by 0.10-0.12 (73% on FER+ test instead of 86%). The same int8 model moves by one or two
# steps of 1/256 at most between machines.
GOLDEN_PROBABILITY_TOLERANCE = 0.08
# The reference faces show neutral, happy and sad expressions: golden data (and a model)
# naming fewer emotions for them is a broken model's, which says the same of every face.
GOLDEN_MIN_CLASSES = 3
# A quantised model's input tensor says what range it was calibrated on: [0, 1] for every
# shipped int8 model (scale 1/255, zero point -128). A manifest putting more than this share of
# the 256 pixel values outside it cuts them off (all read as the range's end): [-1, 1] for such
# a model cuts 128 of 256 (73% on FER+ test instead of 86%), yet reads the three reference
# photographs as surely as before (neutral 0.85 against 0.67), so golden data recorded from that
# manifest passed its own check. An offset of -0.1 cuts 25 (10%) and loses nothing measurable.
# A float model's input says no range: it is checked by its golden record only.
MAX_CUT_OFF_PIXELS = 0.25
# The largest change of any emotion's probability across the reference faces below which a
# model's output counts as the same for every face (constant logits; a NaN made uniform).
MIN_OUTPUT_SPREAD = 0.01
# a model's outputs must be probabilities (the engagement rules' min_confidence and the
# smoothing read them as such): each from 0 to 1 and adding up to 1, give or take an int8
# output's rounding (a step of 1/256 each)
PROBABILITY_SLACK, PROBABILITY_SUM_SLACK = 0.01, 0.05
# A candidate is timed against the model running now, per face with all its views (the live
# loop does that for every face of every frame): a model 100 times slower took the loop from
# 15 FPS to 2 after its hot swap. More than MAX_SLOWDOWN times slower is refused unless the
# technician allows it. Not 4 or 5: the views bound (MAX_VIEWS) lets a manifest ask for 8
# looks at the shipped network, 4 times its 2, which is allowed, and on a busy machine (the
# live loop beside it) that measured up to 5.7 times; a network many times slower is what
# this catches (``time_per_face``), and one measured over the limit is measured again.
MAX_SLOWDOWN = 10.0
SPEED_FACES = 3
SPEED_ROUNDS = (3, 15)  # at least, at most
SPEED_BUDGET_S = 0.3  # no round starts past this (after the first three): a slow model is plain by then
DTYPES = {"int8": np.int8, "uint8": np.uint8, "float32": np.float32}
MAX_MODEL_BYTES = 64 * 1024 * 1024  # an emotion CNN for a Pi is well under 10 MB
MAX_MANIFEST_BYTES = 1024 * 1024  # the shipped one, its evaluation included, is 12 kB
MAX_TEXT = 64  # a manifest's free text (version, evaluated, split): a 4 MB version grew history.json to 6.5 MB


# ------------------------------------------------------------------ golden faces
def golden_faces() -> np.ndarray:
    """The reference faces, or a FlashError: a photograph this user cannot read is a fault of
    the installed package, not of the models folder the caller's write error would name."""
    try:
        return reference_faces()
    except OSError as exc:
        raise FlashError(f"the golden check cannot read the package's reference photographs as {user_name()!r} "
                         f"({exc}): install engage-edge where that user can read it, or reinstall it "
                         "(pip install --force-reinstall engage-edge)") from None


def output_problem(clf: EmotionClassifier, indices: list[int]) -> tuple[str, np.ndarray]:
    """('' or why the model's answers cannot be trusted, its probabilities for the reference
    faces ``indices``). Refused: an output that is not a finite number (NaN, inf), and one
    that (nearly) does not change from face to face (constant logits; a NaN made uniform):
    such a model says the same of every student, whatever the golden data records."""
    faces = golden_faces()
    for i in indices:
        raw = clf.raw_outputs(faces[i])
        if not np.isfinite(raw).all():
            shown = ", ".join(f"{v:g}" for v in raw[~np.isfinite(raw)][:3])
            return (f"its output for reference face {i} is not a finite number ({shown}): the model is broken "
                    "(a NaN or an overflow in its layers)"), np.empty(0)
        sums = raw.sum(axis=1)
        if raw.min() < -PROBABILITY_SLACK or raw.max() > 1 + PROBABILITY_SLACK or \
                np.abs(sums - 1).max() > PROBABILITY_SUM_SLACK:
            return (f"its output for reference face {i} is not probabilities (from {raw.min():.3g} to "
                    f"{raw.max():.3g}, adding up to {sums[np.abs(sums - 1).argmax()]:.3g}): the model gives logits "
                    "or scores; it needs a softmax as its last layer (add it before converting), or the device "
                    "reads every face's confidence wrong"), np.empty(0)
    probs = np.array([clf.probabilities(faces[i]) for i in indices])
    spread = float((probs.max(axis=0) - probs.min(axis=0)).max()) if len(indices) > 1 else 1.0
    if spread < MIN_OUTPUT_SPREAD:
        return (f"its output is the same for all {len(indices)} reference faces (no emotion's probability moves "
                f"by {MIN_OUTPUT_SPREAD:.0%} between them): the model is broken, it says the same of every face"), probs
    return "", probs


def truth_problem(clf: EmotionClassifier) -> str:
    """'' or how the model misreads what the reference photographs plainly show
    (``faces.EXPRESSIONS``): fewer than a majority of a photograph's cuts read as its
    expression. The labels the manifest gives in the wrong order (happiness and sadness
    swapped) still pass a golden record made from the same manifest; this does not. The
    shipped and the paper's model read all 7 cuts of each as shown (the paper's model: 3
    sad + 4 neutral for Thompson, both counted)."""
    from edge_app.vision.faces import EXPRESSIONS, cuts

    faces = golden_faces()
    read: dict[str, list[str]] = {}
    for cut, face in zip(cuts(), faces):
        read.setdefault(cut.photo, []).append(clf.labels[int(clf.probabilities(face).argmax())])
    for photo_name, labels in read.items():
        shown = EXPRESSIONS[photo_name]
        agree = sum(label in shown for label in labels)
        if agree * 2 <= len(labels):
            most = max(set(labels), key=labels.count)
            return (f"it reads {photo_name} (a reference photograph that shows {' or '.join(shown)}) as {most} on "
                    f"{labels.count(most)} of {len(labels)} cuts: are the manifest's labels in the order of the "
                    "network's outputs, and its input scale and offset the ones it was trained with?")
    return ""


def input_range_problem(clf: EmotionClassifier) -> str:
    """'' or how the manifest's input scale and offset contradict the range the (quantised)
    model's input was calibrated on: more than ``MAX_CUT_OFF_PIXELS`` of the pixel values cut
    off. Golden data cannot see this when recorded from the same manifest."""
    inp = clf.interpreter.get_input_details()[0]
    q_scale, q_zero = inp["quantization"]
    if inp["dtype"] == np.float32 or not q_scale:
        return ""
    info = np.iinfo(inp["dtype"])
    m = clf.manifest
    q = np.round((np.arange(256, dtype=np.float64) * m.scale + m.offset) / q_scale + q_zero)
    cut = int(((q < info.min) | (q > info.max)).sum())
    if cut <= MAX_CUT_OFF_PIXELS * 256:
        return ""
    low, high = (info.min - q_zero) * q_scale, (info.max - q_zero) * q_scale
    return (f"its manifest reads pixels 0-255 as {m.offset:.3g} to {255 * m.scale + m.offset:.3g} (pixel * scale + "
            f"offset), but the model's input is quantised for {low:.3g} to {high:.3g}, so {cut} of the 256 pixel "
            f"values are cut off: set the manifest's input scale and offset to the ones the model was trained with "
            f"(for {low:.3g} to {high:.3g}: scale {(high - low) / 255:.6g}, offset {low:.3g})")


def golden_problem(clf: EmotionClassifier) -> str:
    """'' or why no golden data may be recorded from this model: its output over all the
    reference faces is broken (``output_problem``) or names fewer than
    ``GOLDEN_MIN_CLASSES`` emotions. Golden data recorded from a broken model (all
    "neutral") let it pass its own check."""
    problem, probs = output_problem(clf, list(range(len(golden_faces()))))
    if problem:
        return problem
    named = sorted({clf.labels[int(p.argmax())] for p in probs})
    if len(named) < GOLDEN_MIN_CLASSES:
        return (f"it names only {named} for the {len(probs)} reference faces, which show at least "
                f"{GOLDEN_MIN_CLASSES} different expressions: the model is broken (or not a FER+ emotion model)")
    return input_range_problem(clf) or truth_problem(clf)


def compute_golden(manifest_path: Path | str, count: int = GOLDEN_COUNT) -> dict:
    """Golden data for a manifest: the reference faces this model classifies with the
    clearest margin, taken in turn from each label it gives, and its label for each. The
    training helper calls this when shipping; ``engage-edge model golden`` writes it into
    a manifest (``write_golden``, which first refuses a broken model: ``golden_problem``).
    It records what the model says, whatever that is; ``golden_check`` refuses golden data
    naming fewer than ``GOLDEN_MIN_CLASSES`` emotions."""
    clf = EmotionClassifier(manifest_path)
    scored, sure = [], {}
    for i, face in enumerate(golden_faces()):
        p = clf.probabilities(face)
        top = np.sort(p)[::-1]
        scored.append((float(top[0] - top[1]), i, clf.labels[int(p.argmax())]))
        sure[i] = round(float(top[0]), 3)
    by_label: dict[str, list[tuple[float, int, str]]] = {}
    for item in sorted(scored, reverse=True):
        by_label.setdefault(item[2], []).append(item)
    chosen: list[tuple[float, int, str]] = []
    while len(chosen) < count and any(by_label.values()):  # round robin: the clearest left of each label
        for queue in by_label.values():
            if queue and len(chosen) < count:
                chosen.append(queue.pop(0))
    chosen.sort(key=lambda c: c[1])
    return {"source": GOLDEN_SOURCE, "indices": [c[1] for c in chosen], "labels": [c[2] for c in chosen],
            "probabilities": [sure[c[1]] for c in chosen], "min_agreement": 1.0}


def write_golden(manifest_path: Path | str) -> dict:
    """Compute golden data and store it in the manifest (atomically); returns it."""
    path = Path(manifest_path)
    try:  # a wrong path or file was a traceback
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise FlashError(f"manifest {path} cannot be read as JSON ({getattr(exc, 'strerror', None) or exc}): name the "
                         "model's .json manifest, e.g. models/new/emotion-int8.json") from None
    if not isinstance(raw, dict):
        raise FlashError(f"manifest {path} is not a model manifest (a JSON object with model, sha256 and labels)")
    problem = golden_problem(EmotionClassifier(path))
    if problem:
        raise FlashError(f"no golden data written to {path}: {problem}")
    raw["golden"] = compute_golden(path)
    try:
        atomic_write(path, (json.dumps(raw, indent=2) + "\n").encode())
    except OSError as exc:  # a read-only stick, another user's file or folder: was a traceback
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise write_failed(path.parent, exc) from None
        model = path.parent / str(raw.get("model") or path.with_suffix(".tflite").name)
        # a fresh folder of the user's own: "cp ... /tmp/" named the same files when the
        # manifest was another user's in /tmp itself, and cp refuses to copy a file onto itself
        copy = f'd=$(mktemp -d) && cp {shlex.quote(str(model))} {shlex.quote(str(path))} "$d"/ && ' \
               f'engage-edge model golden "$d"/{shlex.quote(path.name)}'
        raise FlashError(f"manifest {path} cannot be written ({exc.strerror or exc}): copy the manifest and its model "
                         f"to a folder you may write and run the command on the copy there, e.g. `{copy}`; then "
                         "install the copy") from None
    return raw["golden"]


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def golden_check(clf: EmotionClassifier, golden: dict | None) -> tuple[bool, str]:
    """(ok, reason): does ``clf`` classify the golden faces as recorded?"""
    if not golden:
        return False, "the manifest has no golden data: add it with `engage-edge model golden MANIFEST`"
    if not isinstance(golden, dict):
        return False, f"the manifest's golden data is malformed: an object is needed, not {str(golden)[:80]}"
    indices, labels = golden.get("indices"), golden.get("labels")
    if not isinstance(indices, list) or not all(_whole(i) for i in indices):  # int() took "4" and 4.9
        return False, ("the manifest's golden data is malformed: indices must be a list of reference face numbers "
                       f"(whole numbers), not {str(indices)[:80]}")
    if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
        return False, f"the manifest's golden data is malformed: labels must be a list of emotions, not {str(labels)[:80]}"
    need = golden.get("min_agreement", 1.0)
    if isinstance(need, bool) or not isinstance(need, (int, float)) or not GOLDEN_MIN_AGREEMENT <= need <= 1.0:
        return False, (f"the manifest's golden min_agreement {need!r} is not allowed: from {GOLDEN_MIN_AGREEMENT} "
                       "to 1.0 (a manifest cannot waive its own check)")
    if len(indices) < GOLDEN_MIN_FACES:
        return False, (f"the manifest's golden data names {len(indices)} reference faces; at least "
                       f"{GOLDEN_MIN_FACES} are needed")
    if len(set(indices)) < GOLDEN_MIN_FACES:  # [5] * 8 is one face checked eight times
        return False, (f"the manifest's golden data names only {len(set(indices))} different reference faces "
                       f"(some repeat); at least {GOLDEN_MIN_FACES} different ones are needed")
    if golden.get("source", GOLDEN_SOURCE) != GOLDEN_SOURCE:
        return False, (f"golden source {golden.get('source')!r} is unknown (expected {GOLDEN_SOURCE}): "
                       "record it again with `engage-edge model golden MANIFEST`")
    faces = golden_faces()
    if len(indices) != len(labels) or any(not 0 <= i < len(faces) for i in indices):
        return False, "the manifest's golden data is malformed: indices and labels must pair up"
    if len(set(labels)) < GOLDEN_MIN_CLASSES:
        return False, (f"the manifest's golden data records only {sorted(set(labels))} for its reference faces; at "
                       f"least {GOLDEN_MIN_CLASSES} different emotions are needed (the faces show them): recorded from "
                       "a model that says the same of every face? Record it again with `engage-edge model golden "
                       "MANIFEST` from a working model")
    problem, probs = output_problem(clf, indices)
    if problem:
        return False, f"golden check failed: {problem}"
    wrong = []
    for i, want, p in zip(indices, labels, probs):
        got = clf.labels[int(p.argmax())]
        if got != want:
            wrong.append(f"face {i}: {got}, expected {want}")
    agreement = 1 - len(wrong) / len(indices)
    if agreement < need:
        return False, f"golden check failed ({len(wrong)} of {len(indices)} reference faces differ: {'; '.join(wrong[:3])})"
    recorded = golden.get("probabilities")
    if recorded is not None:  # golden data recorded before these were kept has none
        if not isinstance(recorded, list) or len(recorded) != len(indices) or not all(is_number(x, 0, 1) for x in recorded):
            return False, ("the manifest's golden data is malformed: probabilities must pair up with the faces, each "
                           f"from 0 to 1, not {str(recorded)[:80]}")
        moved = [f"face {i}: {label} {float(p[clf.labels.index(label)]):.2f}, recorded {float(r):.2f}"
                 for i, label, p, r in zip(indices, labels, probs, recorded)
                 if label in clf.labels and abs(float(p[clf.labels.index(label)]) - float(r)) > GOLDEN_PROBABILITY_TOLERANCE]
        if moved:
            return False, (f"golden check failed ({len(moved)} of {len(indices)} reference faces are read otherwise than "
                           f"recorded: {'; '.join(moved[:3])}): is the manifest's input scale and offset (pixel * scale + "
                           "offset) the one the model was trained with?")
    # golden data recorded from the same wrong manifest agrees with it: neither of these does
    misread = input_range_problem(clf) or truth_problem(clf)
    if misread:
        return False, f"golden check failed: {misread}"
    return True, f"golden check passed ({len(indices) - len(wrong)}/{len(indices)} reference faces)"

# ------------------------------------------------------------------ validation


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


def is_number(value, low: float = -math.inf, high: float = math.inf) -> bool:
    """A finite number (not a bool, a string, NaN) from ``low`` to ``high``: what a manifest's
    or an evaluation's figures must be before anyone shows or compares them."""
    return (not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
            and low <= value <= high)


def _is_count(value) -> bool:
    return _whole(value) and value >= 0


def metrics_problem(metrics: dict) -> str:
    """'' or what in a manifest's ``metrics`` (its evaluation: informational, but shown on
    /admin/model and in ``model list``) is not of the kind those read. A number where the
    date belongs, text for a time or for a count made the model page a 500 until a
    command-line rollback. Keys this device does not read are left alone; null is absent."""
    for key in ("evaluated", "split"):
        value = metrics.get(key)
        if value is not None and not (isinstance(value, str) and len(value) <= MAX_TEXT):
            return (f"metrics.{key} must be text of at most {MAX_TEXT} characters (evaluated: a date and time such as "
                    f"2026-11-26T04:25:35Z), not {_short(value)}")
    latency = metrics.get("latency")
    if latency is not None:
        if not isinstance(latency, dict):
            return f"metrics.latency must be an object (median_ms, p95_ms, ...), not {_short(latency)}"
        for key in ("median_ms", "p95_ms", "mean_ms"):
            if latency.get(key) is not None and not is_number(latency[key], 0):
                return f"metrics.latency.{key} must be a number of milliseconds, not {_short(latency[key])}"
    for rule in ("official", "argmax"):
        block = metrics.get(rule)
        if block is None:
            continue
        if not isinstance(block, dict):
            return f"metrics.{rule} must be an object (accuracy, per_class, confusion, ...), not {_short(block)}"
        for key in ("accuracy", "macro_f1"):
            if block.get(key) is not None and not is_number(block[key], 0, 1):
                return f"metrics.{rule}.{key} must be a share from 0 to 1, not {_short(block[key])}"
        if block.get("images") is not None and not _is_count(block["images"]):
            return f"metrics.{rule}.images must be a count of faces, not {_short(block['images'])}"
        per_class = block.get("per_class") or {}
        if not isinstance(per_class, dict) or not all(isinstance(row, dict) for row in per_class.values()):
            return f"metrics.{rule}.per_class must map each emotion to its scores, not {_short(per_class)}"
        for label, row in per_class.items():
            for key in ("precision", "recall", "f1"):
                if row.get(key) is not None and not is_number(row[key], 0, 1):
                    return f"metrics.{rule}.per_class.{label}.{key} must be a share from 0 to 1, not {_short(row[key])}"
            if row.get("support") is not None and not _is_count(row["support"]):
                return f"metrics.{rule}.per_class.{label}.support must be a count of faces, not {_short(row['support'])}"
        confusion = block.get("confusion")
        if confusion is not None and not (isinstance(confusion, list) and all(
                isinstance(row, list) and all(_is_count(n) for n in row) for row in confusion)):
            return f"metrics.{rule}.confusion must be rows of counts of faces, not {_short(confusion)}"
    plots = metrics.get("plots")
    if plots is not None and not (isinstance(plots, dict) and all(isinstance(v, str) for v in plots.values())):
        return f"metrics.plots must map each picture to its file name, not {_short(plots)}"
    return ""


def time_per_face(candidate: EmotionClassifier, reference: EmotionClassifier) -> tuple[float, float]:
    """Milliseconds per face (every view) of ``candidate`` and of ``reference``, one thread
    each: the best of several rounds (``SPEED_ROUNDS``, ``SPEED_BUDGET_S``) over ``SPEED_FACES``
    reference faces, the two taking turns. Counted on this thread's CPU clock: on a busy
    machine the wall clock also counted the other processes' turns, which fall more often
    into the longer model's rounds (8 views of the shipped network measured 7 times its 2)."""
    faces = golden_faces()[:: len(golden_faces()) // SPEED_FACES][:SPEED_FACES]
    models = (candidate, reference)
    for clf in models:
        clf.probabilities(faces[0])  # the first call sets up the interpreter's buffers
    best = [math.inf, math.inf]
    start = time.monotonic()
    for round_ in range(SPEED_ROUNDS[1]):
        for k in ((0, 1) if round_ % 2 == 0 else (1, 0)):
            t = time.thread_time()
            for face in faces:
                models[k].probabilities(face)
            best[k] = min(best[k], (time.thread_time() - t) * 1000 / len(faces))
        if round_ + 1 >= SPEED_ROUNDS[0] and time.monotonic() - start > SPEED_BUDGET_S:
            break
    return best[0], best[1]


def _reference_model(running: Path) -> EmotionClassifier | None:
    """The model running now (``active_manifest``), or the shipped one if that no longer
    loads, to time a candidate against."""
    for path in (running, SHIPPED_MANIFEST):
        try:
            return EmotionClassifier(path)
        except ModelError as exc:
            log.warning("cannot time a new model against %s: %s", path, exc)
    return None


def _speed_check(clf: EmotionClassifier, running: Path, model_file: Path, manifest_file: Path,
                 allow_slow: bool) -> dict | None:
    """The candidate's measured time per face beside the running model's (recorded in the
    manifest and the history); ``FlashError`` when it is over ``MAX_SLOWDOWN`` times slower
    and that is not allowed."""
    reference = _reference_model(running)
    if reference is None:
        return None
    ms, ref_ms = time_per_face(clf, reference)
    if ms > MAX_SLOWDOWN * ref_ms and not allow_slow:  # once more: a busy moment is not a slow model
        ms, ref_ms = min((ms, ref_ms), time_per_face(clf, reference), key=lambda pair: pair[0] / pair[1])
    views = len(clf.manifest.views)
    if ms > MAX_SLOWDOWN * ref_ms and not allow_slow:
        raise FlashError(
            f"{model_file.name} takes {ms:.1f} ms per face ({views} inference{'s' if views > 1 else ''}), "
            f"{ms / ref_ms:.1f} times the {ref_ms:.2f} ms of the model running now "
            f"({reference.manifest.model_path.name}), both measured here: the live loop would slow down about as "
            f"much (more than {MAX_SLOWDOWN:g} times slower is refused). To install it anyway, run `engage-edge model "
            f"install {model_file} --manifest {manifest_file} --allow-slow` on the device")
    return {"ms_per_face": round(ms, 3), "views": views, "threads": 1, "compared_with": reference.manifest.model_path.name,
            "its_ms_per_face": round(ref_ms, 3)}


def validate(model_file: Path, manifest_file: Path, staging: Path, *, running: Path | None = None,
             allow_slow: bool = False) -> tuple[dict, EmotionClassifier]:
    """Check a model and its manifest in ``staging`` (a scratch directory); returns the
    manifest (``model`` renamed to its content-addressed name) and the loaded classifier.
    With ``running`` (the manifest of the model running now) the candidate is also timed
    against it (``_speed_check``) and the measurement kept as the manifest's ``measured``."""
    model_file, manifest_file = Path(model_file), Path(manifest_file)
    check_readable(model_file, "model file", "")
    check_readable(manifest_file, "manifest", " (pass --manifest FILE.json)")
    size = model_file.stat().st_size
    if size == 0 or size > MAX_MODEL_BYTES:
        raise FlashError(f"{model_file.name} is {size} bytes: a model must be above 0 and at most {MAX_MODEL_BYTES >> 20} MB")
    if model_file.resolve() == manifest_file.resolve():  # ``model install X.json``: the manifest named as the model
        raise FlashError(f"{model_file.name} is the manifest: name the model file (the .tflite) to install, "
                         f"e.g. engage-edge model install {model_file.with_suffix('.tflite')} (its .json beside it is "
                         "read as its manifest)")
    size = manifest_file.stat().st_size
    if size > MAX_MANIFEST_BYTES:  # it is kept twice (current, previous) and read by every page view
        raise FlashError(f"manifest {manifest_file.name} is {size / 1e6:.1f} MB: a manifest is at most "
                         f"{MAX_MANIFEST_BYTES >> 20} MB (the shipped one is 12 kB); is it the right file?")
    try:
        raw = json.loads(manifest_file.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise FlashError(f"manifest {manifest_file} is not readable JSON: {exc}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("sha256"), str) or len(raw["sha256"]) != 64:
        raise FlashError(f"manifest {manifest_file} has no sha256 of the model file")
    raw["sha256"] = raw["sha256"].lower()  # as sha256sum prints it; a tool that writes capitals means the same
    labels = raw.get("labels")
    if not isinstance(labels, list) or not all(isinstance(l, str) for l in labels):
        raise FlashError(f"manifest {manifest_file}: labels must be a list of emotion names")
    if len(set(labels)) != len(labels):
        raise FlashError(f"manifest {manifest_file}: labels {labels} repeat")
    version = raw.get("version")  # kept in every history entry: a 4 MB version grew history.json to 6.5 MB
    if version is not None and not (isinstance(version, str) and len(version) <= MAX_TEXT):
        what = f"{len(version)} characters" if isinstance(version, str) else _short(version)
        raise FlashError(f"manifest {manifest_file}: version must be text of at most {MAX_TEXT} characters "
                         f"(e.g. 2026.11-edge-v3), not {what}")
    digest = sha256_file(model_file)
    if digest != raw["sha256"]:
        raise FlashError(f"{model_file.name} does not match its manifest: sha256 {digest[:12]}..., "
                         f"expected {raw['sha256'][:12]}... (truncated or the wrong file?)")
    name = f"emotion-{digest[:12]}.tflite"
    shutil.copyfile(model_file, staging / name)
    raw = {**raw, "model": name}
    staged = staging / "manifest.json"
    staged.write_text(json.dumps(raw, indent=2))
    try:
        Manifest.load(staged)  # fields and known labels
        clf = EmotionClassifier(staged)  # loadable, shapes match
    except ModelError as exc:  # say it with the names the technician gave
        reason = str(exc).replace(str(staged), manifest_file.name).replace(str(staging / name), model_file.name)
        raise FlashError(reason) from None
    problem = metrics_problem(clf.manifest.metrics)
    if problem:
        raise FlashError(f"manifest {manifest_file.name}: {problem}")
    for key, details in (("input", clf._in), ("output", clf._out)):
        actual = np.dtype(details["dtype"]).name
        wanted = (raw.get(key) or {}).get("dtype") if isinstance(raw.get(key), dict) else None
        if actual not in DTYPES:
            raise FlashError(f"{model_file.name}: {key} type {actual} is not supported (int8, uint8 or float32)")
        if wanted and wanted != actual:
            raise FlashError(f"{model_file.name}: {key} type {actual} does not match the manifest's {wanted}")
    raw.pop("measured", None)  # measured on this device, never taken from the manifest
    if running is not None:  # before the golden check: a slow model is refused without running it 16 more times
        measured = _speed_check(clf, running, model_file, manifest_file, allow_slow)
        if measured:
            raw["measured"] = measured
    ok, reason = golden_check(clf, raw.get("golden"))
    if not ok:
        raise FlashError(f"{model_file.name}: {reason}")
    raw["installed"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    return raw, clf

