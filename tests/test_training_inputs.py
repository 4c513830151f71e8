"""training/: what a developer hands the training commands by mistake (a network of another
shape, a file that is no network, a full disk, a resume under other library versions) gets
a clear error and loses nothing. Small Keras networks, no training: seconds each."""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402
from conftest import mounted_tmpfs  # noqa: E402

from tests.test_training import write_ferplus  # noqa: E402
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


FULL_DISK_RUN = """
import os, sys
from pathlib import Path
import keras
from training import models, train

def small():  # a backup of 1.8 MB: a write that fails half-way through a large weight, as edge's did
    return keras.Sequential([keras.Input((48, 48, 1)), keras.layers.Conv2D(4, 3, strides=4),
                             keras.layers.Flatten(), keras.layers.Dense(256),
                             keras.layers.Dense(8, activation="softmax", name="emotion")], name="edge")

models.ARCHITECTURES["edge"] = small
data, out, filler = sys.argv[1:4]
run = ["--arch", "edge", "--data", data, "--out", out, "--epochs", "3", "--batch-size", "16"]
assert train.main(run + ["--stop-after", "1"]) == 0
with open(filler, "wb", buffering=0) as f:  # the disk fills up while the run goes on
    try:
        while True:
            f.write(bytes(65536))
    except OSError:
        pass
os.truncate(filler, os.path.getsize(filler) - 1_000_000)  # room for half a backup
print("full:", train.main(run + ["--resume"]), flush=True)
os.unlink(filler)
print("room again:", train.main(run + ["--resume"]), flush=True)
"""


def test_a_full_disk_stops_the_run_with_a_clear_error_and_the_resume_goes_on(tmp_path):
    """A full disk while the run saved its backup was h5py's traceback, then a segfault as
    Python exited (the half-written file, which Keras left open, flushed to the full disk
    again), and the half-written backup kept the room the resume needed."""
    write_ferplus(tmp_path)
    env = dict(os.environ, ENGAGE_DATA_CACHE=str(tmp_path / "npz"), PYTHONPATH=str(Path(__file__).parent.parent))
    with mounted_tmpfs(tmp_path / "disk", "8m") as disk:
        run = disk / "run"
        r = subprocess.run([sys.executable, "-c", FULL_DISK_RUN, str(tmp_path), str(run), str(disk / "filler")],
                           capture_output=True, text=True, env=env, timeout=300)
        assert r.returncode == 0, r.stderr[-3000:]  # 139 was the segfault
        assert "full: 1" in r.stdout and "room again: 0" in r.stdout, r.stdout
        assert f"error: the disk holding {run} is full (No space left on device" in r.stderr, r.stderr[-3000:]
        assert "then run the same command with --resume" in r.stderr and "Traceback" not in r.stderr
        with open(run / "history.csv", newline="") as f:
            assert [int(row["epoch"]) for row in csv.DictReader(f)] == [0, 1, 2]
        assert sorted(p.name for p in (run / "backup").iterdir()) == ["epoch-00002", "epoch-00003"]


def test_a_face_box_outside_its_image_or_of_other_than_four_numbers_names_the_row(tmp_path):
    """label.csv's face box: one outside the image was OpenCV's "!ssize.empty()" traceback out
    of the resize of an empty crop, and one of three numbers was taken as no box at all (the
    whole image, silently)."""
    from training import data as fer

    write_ferplus(tmp_path)
    label_file = tmp_path / "ferplus" / "FER2013Valid" / "label.csv"
    with open(label_file, newline="") as f:
        rows = list(csv.reader(f))
    for box, said in (("(60, 60, 48, 48)", r"face box \(60, 60, 48, 48\) .* does not lie inside the 48x48 image"),
                      ("(0, 0, 48)", r"row 2 \(.*\): the face box '\(0, 0, 48\)' \(four numbers\)")):
        rows[1][1] = box
        with open(label_file, "w", newline="") as f:
            csv.writer(f).writerows(rows)
        with pytest.raises(fer.DataError, match=said):
            fer.load_split(tmp_path, "valid", cache=False)
    rows[1][1] = "(0, 0, 48, 48)"
    with open(label_file, "w", newline="") as f:
        csv.writer(f).writerows(rows)
    (tmp_path / "ferplus" / "FER2013Valid" / rows[1][0]).unlink()
    with pytest.raises(fer.DataError, match=rf"{rows[1][0]} is missing, though label.csv names it"):
        fer.load_split(tmp_path, "valid", cache=False)


def test_ship_names_a_metrics_file_or_run_folder_it_cannot_read(tmp_path, capsys):
    """--metrics that is not an evaluation's JSON was json's bare "Expecting value" (no file
    named) or, for a list, an AttributeError traceback; a --run folder without config.json was
    "[Errno 2] No such file or directory". Nothing is shipped in each case."""
    import json

    from edge_app.vision.classifier import sha256_file
    from training import ship

    model = tmp_path / "emotion-int8.tflite"
    model.write_bytes(b"not read: the checks before shipping stop first")
    rule = {"scale": 1 / 255, "offset": 0.0}
    model.with_suffix(".json").write_text(json.dumps({"model": model.name, "input": rule}))
    dest = tmp_path / "dest"
    for text, said in (("{", "cannot be read as training.evaluate's JSON"), ("[1]", "is not training.evaluate's JSON")):
        (tmp_path / "m.json").write_text(text)
        assert ship.main([str(model), "--metrics", str(tmp_path / "m.json"), "--dest", str(dest)]) == 2
        err = capsys.readouterr().err
        assert f"--metrics {tmp_path / 'm.json'} {said}" in err and "nothing was written" in err, err
    metrics = {"sha256": sha256_file(model), "split": "test", "input": rule,
               "official": {"images": 12}, "argmax": {"images": 12}}
    (tmp_path / "m.json").write_text(json.dumps(metrics))
    assert ship.main([str(model), "--metrics", str(tmp_path / "m.json"), "--dest", str(dest), "--other-test-set",
                      "--run", str(tmp_path / "no-run")]) == 2
    err = capsys.readouterr().err
    assert f"--run {tmp_path / 'no-run'} is not a training run that can be read" in err, err
    assert "give training.train's --out folder this model came from" in err
    assert not dest.exists()


def test_the_replay_of_a_run_on_another_backend_names_it():
    """A run on a GPU machine trains with JAX: its replay command said nothing of it, and
    replayed on TensorFlow (training.train's default) it computed other numbers."""
    import shlex

    from training import train

    args = train.parse_args(["--out", "O", "--epochs", "5"])
    words = shlex.split(train.replay_command(args, 5, backend="jax"))
    assert words[:4] == ["KERAS_BACKEND=jax", "python", "-m", "training.train"], words
    assert train.parse_args(words[4:]).epochs == 5
    assert train.replay_command(args, 5, backend="tensorflow").startswith("python -m training.train ")


def test_a_run_folder_in_the_checkout_that_git_would_commit_is_refused():
    """--out models/edge wrote megabytes of checkpoints each epoch where `git add -A` takes them
    and where a GPU call carries them (64 MiB in all); runs/ is the ignored place for them."""
    from training import train

    repo = Path(train.__file__).resolve().parent.parent
    said = train.out_in_checkout(repo / "models" / "edge")
    assert "lies inside the checkout" in said and "--out runs/edge (ignored)" in said, said
    with pytest.raises(SystemExit, match="lies inside the checkout"):
        train.train(train.parse_args(["--out", str(repo / "models" / "edge"), "--data", "/nowhere"]))
    assert not (repo / "models" / "edge").exists()
    assert train.out_in_checkout(repo / "runs" / "edge") == ""  # ignored
    assert train.out_in_checkout(repo.parent / "runs-beside-the-checkout" / "edge") == ""


def test_a_teacher_overwritten_between_two_legs_is_refused_on_resume(tmp_path):
    """The replay command names --init-from and --teacher by path only: config.json records
    their sha256 (input_files), and a resume whose teacher file now holds another network
    (the same path, other bytes) is refused, where it distilled the rest of the run from it."""
    from training import ship, train

    teacher = small_network(tmp_path / "t.keras")
    start = small_network(tmp_path / "start.keras")
    args = train.parse_args(["--out", str(tmp_path / "run"), "--teacher", str(teacher), "--init-from", str(start)])
    recorded = {"input_files": train.input_files(args)}
    assert set(recorded["input_files"]) == {str(teacher), str(start)} and "input_files" in ship.RUN_KEYS
    train.check_resumed_teachers(args, recorded)  # the same files: resumes
    small_network(start, classes=NUM_CLASSES)  # the first weights: the backup has replaced them
    small_network(teacher, face=(48, 48, 1), name="edge-l")  # another network at the teacher's path
    with pytest.raises(SystemExit, match=rf"--teacher {teacher} holds another network than the run"):
        train.check_resumed_teachers(args, recorded)
