"""The emotion classifier: the shipped int8 model through LiteRT, its manifest, and
refusal of corrupt or inconsistent model files. The shipped model is being retrained, so
these tests check structure and invariants, never which emotion a face gets."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_app.vision.classifier import (
    KNOWN_LABELS,
    SHIPPED_MANIFEST,
    VIEW_PRESETS,
    EmotionClassifier,
    Manifest,
    ModelError,
    View,
    as_probabilities,
    crop_face,
    parse_views,
    sha256_file,
    views_json,
)
from edge_app.vision.detector import FaceDetector


@pytest.fixture(scope="module")
def classifier() -> EmotionClassifier:
    return EmotionClassifier()


@pytest.fixture(scope="module")
def grace_crop(grace_path) -> np.ndarray:
    gray = cv2.imread(str(grace_path), cv2.IMREAD_GRAYSCALE)
    (face,) = FaceDetector().detect(gray)
    return crop_face(gray, face.box)


@pytest.fixture
def model_copy(tmp_path):
    """The shipped manifest and model copied to a temporary directory."""
    manifest = json.loads(SHIPPED_MANIFEST.read_text())
    shutil.copy(SHIPPED_MANIFEST.parent / manifest["model"], tmp_path / manifest["model"])
    (tmp_path / "emotion-int8.json").write_text(json.dumps(manifest))
    return tmp_path / "emotion-int8.json", tmp_path / manifest["model"], manifest


def rewrite_manifest(path, **changes):
    raw = json.loads(path.read_text())
    raw.update(changes)
    path.write_text(json.dumps(raw))


# ------------------------------------------------------------------ the shipped model
def test_shipped_manifest_describes_the_shipped_model():
    raw = json.loads(SHIPPED_MANIFEST.read_text())
    assert raw["model"] == "emotion-int8.tflite"
    assert raw["labels"] == KNOWN_LABELS
    assert raw["input"]["size"] == [48, 48] and raw["input"]["channels"] == 1
    assert isinstance(raw["input"]["scale"], (int, float)) and isinstance(raw["input"]["offset"], (int, float))
    assert raw["sha256"] == sha256_file(SHIPPED_MANIFEST.parent / raw["model"])
    # the evaluation of this very file, and the figure the model card quotes
    metrics = raw["metrics"]
    assert (metrics["model"], metrics["sha256"], metrics["split"]) == (raw["model"], raw["sha256"], "test")
    accuracy = metrics["official"]["accuracy"]
    assert 0.8 <= accuracy <= 1
    assert f"{accuracy:.2%}" in (Path(__file__).resolve().parents[1] / "models" / "MODEL_CARD.md").read_text()


def test_runs_on_litert_with_an_int8_model(classifier):
    assert type(classifier.interpreter).__module__.startswith("ai_edge_litert")
    inp = classifier.interpreter.get_input_details()[0]
    assert tuple(inp["shape"]) == (1, 48, 48, 1)
    assert inp["dtype"] in (np.int8, np.uint8)  # an int8 (quantised) model, not float
    assert classifier.labels == classifier.manifest.labels == KNOWN_LABELS


def test_probabilities_are_a_distribution_over_eight_labels(classifier, grace_crop):
    for face in (grace_crop, cv2.resize(grace_crop, (20, 20)), np.zeros((48, 48), np.uint8),
                 np.full((60, 50), 255, np.uint8),
                 np.random.default_rng(3).integers(0, 256, (64, 64), dtype=np.uint8)):
        p = classifier.probabilities(face)
        assert p.shape == (8,)
        assert np.all(p >= 0) and np.all(p <= 1)
        assert float(p.sum()) == pytest.approx(1.0, abs=1e-5)


def test_classify_is_consistent_and_deterministic(classifier, grace_crop):
    emotion, confidence, probabilities = classifier.classify(grace_crop)
    assert emotion in KNOWN_LABELS
    assert list(probabilities) == KNOWN_LABELS
    assert max(probabilities, key=probabilities.get) == emotion
    assert confidence == pytest.approx(probabilities[emotion], abs=1e-4)
    assert confidence >= 1 / 8
    assert classifier.classify(grace_crop) == (emotion, confidence, probabilities)


def test_a_face_of_another_type_is_scored_itself_not_the_face_before(classifier):
    """cv2.resize into the model's buffer made a new array for a colour or float face, and the
    buffer kept the face before: raw_outputs of a colour face, or probabilities of a float one,
    gave the previous face's answer."""
    from edge_app.models.checks import golden_faces

    faces = golden_faces()
    first, other = faces[0], faces[7]
    assert not np.allclose(classifier.probabilities(first), classifier.probabilities(other))
    classifier.probabilities(first)
    assert np.allclose(classifier.probabilities(other.astype(np.float32)), classifier.probabilities(other))
    classifier.raw_outputs(first)
    colour = cv2.cvtColor(other, cv2.COLOR_GRAY2BGR)
    assert np.allclose(classifier.raw_outputs(colour), classifier.raw_outputs(other))


def test_colour_crop_equals_its_grayscale(classifier, grace_path):
    bgr = cv2.imread(str(grace_path))[100:340, 150:380]
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    assert np.allclose(classifier.probabilities(bgr), classifier.probabilities(gray))


def test_the_model_looks_at_the_face(classifier):
    """Different faces give different outputs: the input reaches the network (a wrong
    input quantisation that saturates every pixel would make the output constant)."""
    from edge_app.vision.faces import reference_faces

    outputs = np.array([classifier.probabilities(face) for face in reference_faces()])
    assert np.ptp(outputs, axis=0).max() > 0


def test_input_follows_the_manifest_scale_and_offset(classifier):
    """float input = pixel * scale + offset, quantised with the input tensor's own parameters."""
    m = classifier.manifest
    scale, zero = classifier.interpreter.get_input_details()[0]["quantization"]
    for pixel in (0, 128, 255):
        classifier._fill_input(np.full((48, 48), pixel, np.uint8))
        info = np.iinfo(classifier._buffer.dtype)
        expected = np.clip(np.round((pixel * m.scale + m.offset) / scale + zero), info.min, info.max)
        assert np.all(classifier._buffer == expected)


@pytest.mark.parametrize("raw, sure", [([np.inf, 1, 0, 0], False), ([np.nan, 1, 0, 0], False), ([0, 0, 0, 0], False),
                                       ([-1, -2, 0, 0], False), ([3, 1, 0, 0], True)])
def test_an_output_that_is_no_answer_is_a_uniform_one(raw, sure):
    """A float model's infinity gave NaN probabilities: the upload answered "confidence": NaN,
    which is not JSON. Whatever the output, the probabilities are finite and sum to 1; no
    answer is a uniform one (unsure), an answer keeps its proportions."""
    p = as_probabilities(np.array(raw, np.float32))
    assert np.isfinite(p).all() and abs(float(p.sum()) - 1) < 1e-6
    json.loads(json.dumps([float(v) for v in p], allow_nan=False))
    assert (float(p.max()) > 0.5) is sure
    if sure:
        assert p.tolist() == pytest.approx([0.75, 0.25, 0, 0])


def test_threads_setting_is_accepted():
    c = EmotionClassifier(SHIPPED_MANIFEST, threads=2)
    assert c.probabilities(np.zeros((48, 48), np.uint8)).shape == (8,)


# ------------------------------------------------------------------ bad model files
def test_flip_average_in_the_manifest_averages_the_face_and_its_mirror(model_copy, grace_crop):
    manifest_path, _, raw = model_copy
    rewrite_manifest(manifest_path, inference={"flip_average": False})
    plain = EmotionClassifier(manifest_path)
    rewrite_manifest(manifest_path, inference={"flip_average": True})  # the first manifests' spelling
    averaged = EmotionClassifier(manifest_path)
    assert averaged.manifest.views == VIEW_PRESETS["flip"] and plain.manifest.views == VIEW_PRESETS["single"]
    face = cv2.resize(grace_crop, (48, 48), interpolation=cv2.INTER_AREA)
    mirrored = np.ascontiguousarray(face[:, ::-1])
    expected = (plain.probabilities(face) + plain.probabilities(mirrored)) / 2
    np.testing.assert_allclose(averaged.probabilities(face), expected, atol=1e-6)
    np.testing.assert_allclose(averaged.probabilities(face), averaged.probabilities(mirrored), atol=1e-6)
    assert not np.allclose(plain.probabilities(face), plain.probabilities(mirrored), atol=1e-3)
    rewrite_manifest(manifest_path, inference={"flip_average": "yes"})
    with pytest.raises(ModelError, match="flip_average"):
        EmotionClassifier(manifest_path)


def test_views_in_the_manifest_average_shifted_and_mirrored_crops(model_copy, grace_crop):
    manifest_path, _, raw = model_copy
    rewrite_manifest(manifest_path, inference={})
    plain = EmotionClassifier(manifest_path)
    rewrite_manifest(manifest_path, inference={"views": views_json(VIEW_PRESETS["flip-vshift"])})
    averaged = EmotionClassifier(manifest_path)
    face = cv2.resize(grace_crop, (48, 48), interpolation=cv2.INTER_AREA)
    up = np.vstack([face[1:], face[-1:]])  # moved one pixel up, the bottom row repeated
    down = np.vstack([face[:1], face[:-1]])
    looks = [up, up[:, ::-1], down, down[:, ::-1]]
    expected = sum(plain.probabilities(np.ascontiguousarray(x)) for x in looks) / 4
    np.testing.assert_allclose(averaged.probabilities(face), expected, atol=1e-6)
    assert not np.allclose(averaged.probabilities(face), plain.probabilities(face), atol=1e-3)
    for bad in ([], [{"shift": [0, 20]}], [{"shift": [0.5, 0]}], [{"flip": 1}], [{"turn": 90}], "flip"):
        rewrite_manifest(manifest_path, inference={"views": bad})
        with pytest.raises(ModelError, match="view"):
            EmotionClassifier(manifest_path)


def test_views_on_the_command_line():
    assert parse_views("single") == (View(),) and parse_views("flip") == (View(), View(flip=True))
    assert parse_views('[{"shift": [2, -1]}, {"flip": true}]') == (View(dx=2, dy=-1), View(flip=True))
    with pytest.raises(ValueError, match="flip-vshift"):
        parse_views("mirror")


def test_flipped_byte_with_unchanged_manifest_is_refused(model_copy):
    manifest, model, _ = model_copy
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0x01
    model.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="does not match its manifest") as err:
        EmotionClassifier(manifest)
    assert "sha256" in str(err.value) and str(model) in str(err.value)


def test_truncated_model_with_fixed_up_sha_is_refused(model_copy):
    manifest, model, _ = model_copy
    data = model.read_bytes()[:20000]
    model.write_bytes(data)
    rewrite_manifest(manifest, sha256=hashlib.sha256(data).hexdigest())
    with pytest.raises(ModelError, match="not a loadable TFLite model"):
        EmotionClassifier(manifest)


def test_copied_model_loads(model_copy):
    manifest, _, _ = model_copy
    assert EmotionClassifier(manifest).labels == KNOWN_LABELS


def test_missing_manifest_and_missing_model(model_copy, tmp_path):
    manifest, model, _ = model_copy
    with pytest.raises(ModelError, match="does not exist"):
        EmotionClassifier(tmp_path / "nope.json")
    model.unlink()
    with pytest.raises(ModelError, match="does not exist") as err:
        EmotionClassifier(manifest)
    assert "emotion-int8.tflite" in str(err.value)


def test_manifest_that_is_not_json(tmp_path):
    bad = tmp_path / "m.json"
    bad.write_text("{not json")
    with pytest.raises(ModelError, match="not readable JSON"):
        Manifest.load(bad)


@pytest.mark.parametrize("changes, message", [
    ({"labels": ["neutral", "boredom"]}, "not FER\\+ emotions"),
    ({"labels": []}, "not FER\\+ emotions"),
    ({"input": {"size": [48, 48], "channels": 3, "scale": 1.0, "offset": 0.0}}, "one-channel"),
    ({"input": {"size": [48, 48], "channels": 1, "offset": 0.0}}, "manifest field missing"),
    ({"sha256": None, "model": None}, "manifest field missing|does not exist"),
])
def test_inconsistent_manifests_are_refused(model_copy, changes, message):
    manifest, _, _ = model_copy
    rewrite_manifest(manifest, **changes)
    with pytest.raises(ModelError, match=message):
        EmotionClassifier(manifest)


def test_manifest_input_size_must_match_the_model(model_copy):
    manifest, _, raw = model_copy
    rewrite_manifest(manifest, input={**raw["input"], "size": [64, 64]})
    with pytest.raises(ModelError, match="input shape"):
        EmotionClassifier(manifest)


def test_manifest_label_count_must_match_the_model(model_copy):
    manifest, _, _ = model_copy
    rewrite_manifest(manifest, labels=KNOWN_LABELS[:7])
    with pytest.raises(ModelError, match="7 labels"):
        EmotionClassifier(manifest)


# ------------------------------------------------------------------ crops
def test_crop_face_is_clipped_to_the_frame():
    gray = np.arange(100 * 80, dtype=np.uint32).reshape(100, 80).astype(np.uint8)
    assert crop_face(gray, (10, 20, 30, 40)).shape == (40, 30)
    assert crop_face(gray, (-10, -5, 30, 40)).shape == (35, 20)
    assert crop_face(gray, (70, 90, 30, 40)).shape == (10, 10)
    assert crop_face(gray, (200, 200, 30, 40)).size == 0


def test_a_size_written_as_whole_floats_loads(model_copy):
    """[48.0, 48.0], as an exporter in another language writes it, loaded before sizes were
    checked strictly; a flashed model with it must still load after an upgrade."""
    manifest, _, raw = model_copy
    rewrite_manifest(manifest, input={**raw["input"], "size": [48.0, 48.0]})
    assert EmotionClassifier(manifest).manifest.size == (48, 48)
    rewrite_manifest(manifest, input={**raw["input"], "size": [48.5, 48]})
    with pytest.raises(ModelError, match=r"input.size must be \[height, width\]"):
        EmotionClassifier(manifest)
