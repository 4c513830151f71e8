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
from edge_app.models import checks
from edge_app.models import registry as flash
from edge_app.vision.classifier import SHIPPED_MANIFEST
from tests.test_flash import _state, golden_manifest, shipped_bytes, variant  # noqa: F401 (fixtures)

SINGLE_VIEW = {"views": [{"flip": False, "shift": [0, 0]}]}


@pytest.fixture(scope="module")
def built() -> dict[str, bytes]:
    """Float TFLite models taking a 48x48 face (pixel / 255) to 8 outputs: one whose output is
    NaN, one that overflows to inf, one whose output is the same for every face, a sound
    ``readout`` (least squares on the pixels that tells the three reference photographs
    apart: neutral, happiness, sadness) and ``slow``: the same read-out beside eight wide
    convolutions that add nothing to the answer but take about 100 times as long per face
    as the shipped model."""
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

    faces = checks.golden_faces()
    x = np.stack([cv2.resize(f, (48, 48), interpolation=cv2.INTER_AREA) for f in faces]).reshape(len(faces), -1) / 255
    photo = np.arange(len(faces)) // (len(faces) // 3)  # the reference faces: seven cuts of each photograph
    target = np.eye(8)[np.array([0, 1, 3])[photo]] * 4  # neutral, happiness, sadness
    w = np.linalg.lstsq(np.hstack([x, np.ones((len(x), 1))]), target, rcond=None)[0].astype(np.float32)
    rng = np.random.default_rng(0)
    first = tf.constant(rng.normal(0, 0.1, (3, 3, 1, 128)).astype(np.float32))
    wide = [tf.constant(rng.normal(0, 0.03, (3, 3, 128, 128)).astype(np.float32)) for _ in range(8)]

    @tf.function(input_signature=[spec])
    def readout(x):
        return tf.nn.softmax(tf.matmul(tf.reshape(x, (1, -1)), w[:-1]) + w[-1])

    @tf.function(input_signature=[spec])
    def logits(x):  # the read-out without its softmax
        return tf.matmul(tf.reshape(x, (1, -1)), w[:-1]) + w[-1]

    @tf.function(input_signature=[spec])
    def slow(x):
        h = tf.nn.relu(tf.nn.conv2d(x, first, 1, "SAME"))
        for k in wide:
            h = tf.nn.relu(tf.nn.conv2d(h, k, 1, "SAME"))
        return readout(x) + tf.reduce_mean(h) * 1e-9

    return {name: tflite(fn) for name, fn in (("nan", nan), ("inf", inf), ("constant", constant),
                                              ("readout", readout), ("logits", logits), ("slow", slow))}


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


@pytest.mark.filterwarnings("ignore:invalid value encountered in divide")  # inf / inf: the classifier's NaN
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
    raw["golden"] = checks.compute_golden(manifest)  # what the broken model says of the faces: one emotion
    assert len(set(raw["golden"]["labels"])) == 1
    manifest.write_text(json.dumps(raw))
    _refused(cfg, model, manifest, r"records only \['neutral'\] for its reference faces; at least 3 different")

    raw["golden"] = golden_manifest["golden"]  # a sound record (three emotions): the outputs themselves are refused
    manifest.write_text(json.dumps(raw))
    _refused(cfg, model, manifest, "golden check failed: " + says)


def test_a_model_that_gives_logits_is_refused(cfg, built, tmp_path, capsys, golden_manifest):  # noqa: F811
    """A model converted without its softmax gives logits: it installed, and the classifier
    cut off the negative ones and scaled the rest to add up to 1, so every confidence (the
    engagement rules' min_confidence, the smoothing) meant something else. Its golden data
    is not recorded and it is not installed, with what to do."""
    model, manifest = _model(tmp_path, "logits", built["logits"])
    assert main(["model", "golden", str(manifest)]) == 2
    err = capsys.readouterr().err
    assert re.search(r"its output for reference face \d+ is not probabilities \(from -?[\d.e-]+ to [\d.e-]+, adding up "
                     r"to -?[\d.e-]+\): the model gives logits or scores; it needs a softmax as its last layer", err), err
    raw = json.loads(manifest.read_text())
    raw["golden"] = golden_manifest["golden"]
    manifest.write_text(json.dumps(raw))
    _refused(cfg, model, manifest, "golden check failed: its output for reference face \\d+ is not probabilities")


def test_a_sound_model_records_golden_data_over_three_emotions(tmp_path, built):
    """The check is not against float models or one view: the read-out tells the three
    photographs apart, so its own golden data is recorded and passes."""
    _, manifest = _model(tmp_path, "readout", built["readout"])
    golden = checks.write_golden(manifest)
    assert set(golden["labels"]) == {"neutral", "happiness", "sadness"}
    ok, reason = checks.golden_check(flash.EmotionClassifier(manifest), golden)
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


# the slow model's read-out names each photograph's seven cuts alike: golden data written out
# (recording it would run the slow model 42 times)
SLOW_GOLDEN = {"source": checks.GOLDEN_SOURCE, "indices": [0, 1, 2, 7, 8, 14, 15, 16],
               "labels": ["neutral"] * 3 + ["happiness"] * 2 + ["sadness"] * 3, "min_agreement": 1.0}


def _config_file(tmp_path: Path, cfg) -> Path:
    path = tmp_path / "cli.toml"
    path.write_text(f'[store]\ndata_dir = "{cfg.store.data_dir}"\n')
    return path


def test_a_model_far_slower_than_the_running_one_is_refused_unless_allowed(cfg, built, tmp_path, capsys):
    """A model ~100 times slower than the shipped one installed without a word (the live loop
    fell from 15 FPS to 2 after the hot swap). It is timed against the model running now and
    refused, naming both times and the flag that installs it anyway; installed with that
    flag, its measured time is in the manifest, the history and `model list`."""
    model, manifest = _model(tmp_path, "slow", built["slow"], golden=SLOW_GOLDEN)
    conf = _config_file(tmp_path, cfg)
    models = flash.models_dir(cfg)
    argv = ["model", "install", str(model), "--manifest", str(manifest), "--config", str(conf)]
    assert main(argv) == 1
    err = capsys.readouterr().err
    found = re.search(r"slow.tflite takes ([\d.]+) ms per face \(1 inference\), ([\d.]+) times the ([\d.]+) ms of the "
                      r"model running now \(emotion-int8.tflite\), both measured here", err)
    assert found, err
    ms, ref_ms = float(found.group(1)), float(found.group(3))
    assert ms > checks.MAX_SLOWDOWN * ref_ms
    assert f"--manifest {manifest} --allow-slow` on the device" in err and "the running model is unchanged" in err
    assert not (models / "current.json").exists()

    assert main([*argv, "--allow-slow"]) == 0
    assert "ms per face here (emotion-int8.tflite: " in capsys.readouterr().out
    measured = json.loads((models / "current.json").read_text())["measured"]
    assert measured["ms_per_face"] > checks.MAX_SLOWDOWN * measured["its_ms_per_face"] > 0
    assert measured["compared_with"] == "emotion-int8.tflite" and measured["views"] == 1
    assert flash.history(cfg)[0]["ms_per_face"] == measured["ms_per_face"]
    assert main(["model", "list", "--config", str(conf)]) == 0
    assert f"{measured['ms_per_face']:.2f} ms/face" in capsys.readouterr().out


def test_a_manifest_cannot_bring_its_own_measurement(cfg, variant):  # noqa: F811
    """The time shown as measured on this device is measured here: a manifest's own
    ``measured`` block is replaced."""
    model, manifest = variant(2)
    raw = json.loads(manifest.read_text())
    raw["measured"] = {"ms_per_face": 0.001, "its_ms_per_face": 5.0, "compared_with": "x", "views": 1}
    manifest.write_text(json.dumps(raw))
    installed = flash.install(model, manifest, cfg)
    assert installed["measured"]["ms_per_face"] != 0.001 and installed["measured"]["compared_with"] == "emotion-int8.tflite"
    assert 0 < installed["measured"]["ms_per_face"] < 5 * installed["measured"]["its_ms_per_face"]  # the same model


def test_the_model_page_shows_the_time_measured_here_and_refuses_a_slow_upload(
        web_appliance, built, variant, tmp_path):  # noqa: F811
    """/admin/model showed the manifest's claimed time per face (the shipped model's, for a
    model 100 times slower); it shows the time measured at the install, labels a claim as
    one, and an upload of a far slower model is refused with both times."""
    from tests.conftest import login

    s = login(web_appliance.url)
    page = s.get(f"{web_appliance.url}/admin/model", timeout=10).text
    assert 'id="speed-claimed"' in page and "its manifest's claim" in page and 'id="model-speed"' not in page
    url = f"{web_appliance.url}/admin/model/install"
    model, manifest = _model(tmp_path, "slow", built["slow"], golden=SLOW_GOLDEN)
    r = s.post(url, data={"csrf": s.csrf}, timeout=60,
               files={"model": ("slow.tflite", model.read_bytes()), "manifest": ("slow.json", manifest.read_bytes())})
    assert r.status_code == 400 and "slow.tflite takes" in r.text and "times the" in r.text, r.text
    assert "engage-upload-" not in r.text and not (flash.models_dir(web_appliance.cfg) / "current.json").exists()
    model, manifest = variant(1)
    r = s.post(url, data={"csrf": s.csrf}, timeout=60,
               files={"model": (model.name, model.read_bytes()), "manifest": (manifest.name, manifest.read_bytes())})
    assert r.status_code == 200 and "Installed and running" in r.text
    measured = json.loads((flash.models_dir(web_appliance.cfg) / "current.json").read_text())["measured"]
    speed = r.text.split('id="model-speed">', 1)[1].split("</dd>", 1)[0]
    assert speed.startswith(f"{measured['ms_per_face']:.2f} ms measured on this device at its install (2 inferences")
    assert 'id="speed-measured"' in r.text and 'id="speed-claimed"' not in r.text
    history = r.text.split('id="model-history"', 1)[1].split("</table>", 1)[0]
    assert f"{measured['ms_per_face']:.2f} ms" in history


def test_training_ship_refuses_a_model_the_flash_tool_would_refuse(built, tmp_path):
    """ship recorded golden data from whatever the model said: a model that calls every
    face "neutral" went into the package, and every device refused it at install."""
    from training import ship

    model, manifest = _model(tmp_path, "constant", built["constant"])
    raw = json.loads(manifest.read_text())
    evaluation = {"sha256": raw["sha256"], "split": "test", "views": SINGLE_VIEW["views"],
                  "input": {k: raw["input"][k] for k in ("scale", "offset")},
                  **{rule: {"images": n, "accuracy": 0.5} for rule, n in ship.FERPLUS_TEST_IMAGES.items()}}
    metrics = tmp_path / "constant-test.json"
    metrics.write_text(json.dumps(evaluation))
    run = tmp_path / "run"  # FER+'s figures ship with the run's recipe
    run.mkdir()
    (run / "config.json").write_text("{}")
    with pytest.raises(ship.ShipError, match="the flash tool would refuse this model: its output is the same"):
        ship.ship(model, metrics, tmp_path / "package", run=run)
    assert not (tmp_path / "package" / "constant.json").exists()
    sound, sound_manifest = _model(tmp_path, "readout", built["readout"])
    metrics.write_text(json.dumps({**evaluation, "sha256": json.loads(sound_manifest.read_text())["sha256"]}))
    shipped = json.loads(ship.ship(sound, metrics, tmp_path / "package", run=run).read_text())
    assert len(set(shipped["golden"]["labels"])) >= 3
