"""training/: what a developer hands the training commands by mistake (a network of another
shape, a file that is no network, a full disk, a resume under other library versions) gets
a clear error and loses nothing. Small Keras networks, no training: seconds each."""
from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

from training import evaluate, quantize  # noqa: E402
from training.models import NUM_CLASSES  # noqa: E402


def small_network(path, face=(48, 48, 1), classes=NUM_CLASSES, name="edge"):
    """A network of three layers saved at ``path``: the shape is what the tests vary."""
    import keras

    net = keras.Sequential([keras.Input(face), keras.layers.Conv2D(2, 3, strides=4),
                            keras.layers.GlobalAveragePooling2D(),
                            keras.layers.Dense(classes, activation="softmax", name="emotion")], name=name)
    net.save(path)
    return path


@pytest.mark.parametrize("face, classes, said", [
    ((64, 64, 1), NUM_CLASSES, "reads faces of shape (64, 64, 1), not (48, 48, 1)"),
    ((48, 48, 3), NUM_CLASSES, "reads faces of shape (48, 48, 3), not (48, 48, 1)"),
    ((48, 48, 1), 7, "its output has shape (7,), not (8,)"),  # a FER2013 network: 7 classes, another order
])
def test_a_network_of_another_shape_is_refused_by_quantize_and_evaluate(tmp_path, capsys, face, classes, said):
    """quantize wrote a 7-class or 64x64 network beside a manifest that promised 48x48x1 and
    the 8 FER+ emotions (over the good pair at --out), and evaluate scored a 7-class network's
    outputs as the first 7 of FER+'s 8, a figure that meant nothing."""
    wrong = small_network(tmp_path / "wrong.keras", face, classes)
    good = small_network(tmp_path / "good.keras")
    out = tmp_path / "model.tflite"
    assert quantize.main([str(good), "--float", "--out", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in (out, out.with_suffix(".json"))}
    capsys.readouterr()
    assert quantize.main([str(wrong), "--float", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert said in err and "nothing was written" in err, err
    assert {p.name: p.read_bytes() for p in (out, out.with_suffix(".json"))} == before
    with pytest.raises(evaluate.EvaluationError, match=said.replace("(", r"\(").replace(")", r"\)")):
        evaluate.load_model(wrong)


def test_a_file_that_is_no_network_says_what_it_is(tmp_path, capsys):
    """A cut-short .keras or the .tflite export given to quantize or evaluate was Keras's
    traceback."""
    cut = tmp_path / "best.keras"
    cut.write_bytes(small_network(tmp_path / "whole.keras").read_bytes()[:100])
    assert quantize.main([str(cut), "--float", "--out", str(tmp_path / "m.tflite")]) == 2
    err = capsys.readouterr().err
    assert "is not a Keras network that can be read" in err and "nothing was written" in err, err
    assert not list(tmp_path.glob("m.*"))
    with pytest.raises(evaluate.EvaluationError, match="not a Keras network that can be read"):
        evaluate.load_model(cut)
