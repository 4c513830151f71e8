"""What the flash tool measures of a candidate model beyond its file and manifest: outputs
that mean something (finite, different from face to face, more than one emotion), golden
data that cannot be narrowed to one face, and a speed the live loop can live with. The
broken and the slow models are real TFLite files, built here with TensorFlow."""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from edge_app.cli import main
from edge_app.models import registry as flash
from edge_app.vision.classifier import SHIPPED_MANIFEST
from tests.test_flash import _state, golden_manifest, shipped_bytes, variant  # noqa: F401 (fixtures)

SINGLE_VIEW = {"views": [{"flip": False, "shift": [0, 0]}]}


@pytest.fixture(scope="module")
def built() -> dict[str, bytes]:
    """Float TFLite models taking a 48x48 face (pixel / 255) to 8 outputs: one whose output is
    NaN, one that overflows to inf, one whose output is the same for every face, and a
    ``slow`` one: a least-squares read-out that tells the three reference photographs
    apart (neutral, happiness, sadness, so its own golden data is sound) beside eight wide
    convolutions that add nothing to the answer but take about 100 times as long as the
    shipped model per face."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import cv2
    import tensorflow as tf

    spec = tf.TensorSpec((1, 48, 48, 1), tf.float32)

    def tflite(fn) -> bytes:
        return tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], fn).convert()

    def mean(x):
        return tf.reduce_mean(x, axis=[1, 2]) * tf.ones((1, 8))  # (1, 8), depends on the face

    @tf.function(input_signature=[spec])
    def nan(x):
        return tf.sqrt(-1.0 - mean(x))

    @tf.function(input_signature=[spec])
    def inf(x):
        return tf.exp(1000.0 + mean(x))

    @tf.function(input_signature=[spec])
    def constant(x):
        return tf.nn.softmax(mean(x) * 0.0 + tf.constant([[3.0, 1, 0, 0, 0, 0, 0, 0]]))

    faces = flash.golden_faces()
    x = np.stack([cv2.resize(f, (48, 48), interpolation=cv2.INTER_AREA) for f in faces]).reshape(len(faces), -1) / 255
    photo = np.arange(len(faces)) // (len(faces) // 3)  # the reference faces: seven cuts of each photograph
    target = np.eye(8)[np.array([0, 1, 3])[photo]] * 4  # neutral, happiness, sadness
    w = np.linalg.lstsq(np.hstack([x, np.ones((len(x), 1))]), target, rcond=None)[0].astype(np.float32)
    rng = np.random.default_rng(0)
    first = tf.constant(rng.normal(0, 0.1, (3, 3, 1, 128)).astype(np.float32))
    wide = [tf.constant(rng.normal(0, 0.03, (3, 3, 128, 128)).astype(np.float32)) for _ in range(8)]

    @tf.function(input_signature=[spec])
    def slow(x):
        logits = tf.matmul(tf.reshape(x, (1, -1)), w[:-1]) + w[-1]
        h = tf.nn.relu(tf.nn.conv2d(x, first, 1, "SAME"))
        for k in wide:
            h = tf.nn.relu(tf.nn.conv2d(h, k, 1, "SAME"))
        return tf.nn.softmax(logits + tf.reduce_mean(h) * 1e-9)

    return {name: tflite(fn) for name, fn in (("nan", nan), ("inf", inf), ("constant", constant), ("slow", slow))}


def _model(directory: Path, name: str, data: bytes, **changes) -> tuple[Path, Path]:
    """``data`` as a model with a manifest like the shipped one (one view, no golden data)."""
    raw = json.loads(SHIPPED_MANIFEST.read_text())
    raw.pop("golden")
    model = directory / f"{name}.tflite"
    model.write_bytes(data)
    raw = {**raw, "model": model.name, "sha256": hashlib.sha256(data).hexdigest(), "inference": SINGLE_VIEW, **changes}
    manifest = directory / f"{name}.json"
    manifest.write_text(json.dumps(raw))
    return model, manifest


def _refused(cfg, model: Path, manifest: Path, reason: str) -> str:
    models = flash.models_dir(cfg)
    before = _state(models)
    with pytest.raises(flash.FlashError, match=reason) as refused:
        flash.install(model, manifest, cfg)
    assert {k: v for k, v in _state(models).items() if k != ".lock"} == {k: v for k, v in before.items() if k != ".lock"}
    return str(refused.value)


@pytest.mark.parametrize("broken, says", [
    ("nan", r"its output for reference face \d+ is not a finite number \(nan"),
    ("inf", r"its output for reference face \d+ is not a finite number \(inf"),
    ("constant", r"its output is the same for all (21|8) reference faces"),
])
def test_a_model_with_broken_outputs_gets_no_golden_data_and_is_never_installed(cfg, built, tmp_path, capsys,
                                                                                golden_manifest, broken, says):  # noqa: F811
    """A NaN output reads as a uniform one ("neutral" for every face), as constant logits do:
    `model golden` recorded eight "neutral" faces from such a model and `model install` then
    passed it. Neither does now, whatever golden data the manifest brings."""
    model, manifest = _model(tmp_path, broken, built[broken])
    assert main(["model", "golden", str(manifest)]) == 2
    err = capsys.readouterr().err
    assert re.search(f"no golden data written to {re.escape(str(manifest))}: {says}", err), err
    assert "the model is broken" in err and "Traceback" not in err
    assert "golden" not in json.loads(manifest.read_text())

    raw = json.loads(manifest.read_text())
    with np.errstate(invalid="ignore"):  # inf / inf, made a NaN by the classifier
        raw["golden"] = flash.compute_golden(manifest)  # what the broken model says of the faces: one emotion
    assert len(set(raw["golden"]["labels"])) == 1
    manifest.write_text(json.dumps(raw))
    _refused(cfg, model, manifest, r"records only \['neutral'\] for its reference faces; at least 3 different")

    raw["golden"] = golden_manifest["golden"]  # a sound record (three emotions): the outputs themselves are refused
    manifest.write_text(json.dumps(raw))
    _refused(cfg, model, manifest, "golden check failed: " + says)


def test_a_sound_model_records_golden_data_over_three_emotions(tmp_path, built):
    """The check is not against float models or one view: the slow model's read-out tells the
    three photographs apart, so its own golden data is recorded and passes."""
    _, manifest = _model(tmp_path, "slow", built["slow"])
    golden = flash.write_golden(manifest)
    assert set(golden["labels"]) == {"neutral", "happiness", "sadness"}
    ok, reason = flash.golden_check(flash.EmotionClassifier(manifest), golden)
    assert ok, reason


@pytest.mark.parametrize("indices, says", [
    ("one face", "names only 1 different reference faces"),
    ("strings", "indices must be a list of reference face numbers"),
    ("fractions", "indices must be a list of reference face numbers"),
    ("booleans", "indices must be a list of reference face numbers"),
])
def test_golden_indices_are_eight_different_whole_numbers(cfg, variant, indices, says):  # noqa: F811
    """`"indices": [5] * 8` with eight labels passed GOLDEN_MIN_FACES while checking one face;
    "4" and 4.9 were taken by int()."""
    model, manifest = variant(3)
    raw = json.loads(manifest.read_text())
    golden = raw["golden"]
    if indices == "one face":
        i = golden["indices"][0]
        golden["indices"] = [i] * 8
        golden["labels"] = [golden["labels"][0]] * 8  # as the model says of that face: it passed
    elif indices == "strings":
        golden["indices"] = [str(i) for i in golden["indices"]]
    elif indices == "fractions":
        golden["indices"] = [i + 0.9 for i in golden["indices"]]
    else:
        golden["indices"] = [True] * 4 + golden["indices"][4:]
    manifest.write_text(json.dumps(raw))
    _refused(cfg, model, manifest, says)
