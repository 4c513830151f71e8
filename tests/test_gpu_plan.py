"""The GPU plan (training.gpu_plan): each step run for real on a tiny generated FER+ set,
on the CPU (TensorFlow backend), with arguments after ``--`` that make the runs one epoch."""
from __future__ import annotations

import json
import tarfile

import pytest

from tests.test_training import write_ferplus
from training import data as fer
from training import gpu_plan

TINY = ["--", "--epochs", "1", "--batch-size", "16", "--average-last", "1"]


@pytest.fixture(scope="module")
def carried(tmp_path_factory):
    """A generated FER+ set and the carried folder that ``prepare`` makes from it."""
    root = tmp_path_factory.mktemp("plan")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ENGAGE_DATA_CACHE", str(root / "npz"))
        write_ferplus(root, seed=3)
        message = gpu_plan.prepare(root, root / "carry", wheels=False)
    return root, root / "carry", message


def plan(carry, *args):
    return gpu_plan.main(["--carry", str(carry), *args])


def members(tar_path):
    with tarfile.open(tar_path) as tar:
        return set(tar.getnames())


def test_prepare_packs_the_data_and_says_what_would_travel(carried):
    root, carry, message = carried
    pack = carry / fer.PACK_NAME
    assert pack.is_file()
    original = fer.load_split(root, "train", cache=False)
    usable = (fer.soft_labels(original.votes)[1] | (fer.majority_labels(original.votes) >= 0)
              | (fer.argmax_labels(original.votes) >= 0))
    assert fer.load_pack_split(pack, "train").names == original.subset(usable).names
    assert "a device call would send" in message and "MiB" in message


def test_prepare_makes_the_pack_again_when_the_data_changed(tmp_path, monkeypatch):
    """A pack in .gpu was reused whatever --data now held: the GPU trained on the old data."""
    import csv

    monkeypatch.setenv("ENGAGE_DATA_CACHE", str(tmp_path / "npz"))
    write_ferplus(tmp_path, seed=4)
    carry, pack = tmp_path / "carry", tmp_path / "carry" / fer.PACK_NAME
    assert "made)" in gpu_plan.prepare(tmp_path, carry, wheels=False)
    assert "kept)" in gpu_plan.prepare(tmp_path, carry, wheels=False)
    label_file = tmp_path / "ferplus" / "FER2013Train" / "label.csv"
    with open(label_file, newline="") as f:
        rows = list(csv.reader(f))
    rows[0][2:12] = ["10"] + ["0"] * 9  # the first image's votes, all neutral now
    with open(label_file, "w", newline="") as f:
        csv.writer(f).writerows(rows)
    assert "made again: the one there was of other data" in gpu_plan.prepare(tmp_path, carry, wheels=False)
    assert fer.load_pack_split(pack, "train").votes[0].tolist() == [10] + [0] * 9
    pack.write_bytes(b"damaged")
    assert "made again" in gpu_plan.prepare(tmp_path, carry, wheels=False)
    assert fer.pack_source_of(pack) == fer.pack_source(tmp_path)
    # the data gone (a checkout without the tarball): the pack there is kept, unchecked, and said so
    assert "kept: its data was not checked" in gpu_plan.prepare(tmp_path / "no-data", carry, wheels=False)
    assert fer.pack_source_of(pack) == fer.pack_source(tmp_path)


def test_teachers_then_students_then_scores_on_validation(carried, tmp_path, monkeypatch):
    root, carry, _ = carried
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")
    monkeypatch.setenv("ENGAGE_DATA_CACHE", str(tmp_path / "npz"))
    out, work = tmp_path / "out", tmp_path / "work"
    assert plan(carry, "teachers", "--budget", "300", "--seeds", "7", "--arch", "edge",
                "--out", str(out), "--work", str(work), *TINY) == 0
    assert members(out / "t7.tar") >= {"averaged.keras", "best.keras", "history.csv", "config.json", "train.log"}
    config = json.loads((work / "t7" / "config.json").read_text())
    assert config["seed"] == 7 and config["arch"] == "edge" and config["time_budget"] == 300
    assert config["data"] == str((carry / fer.PACK_NAME).resolve())

    after = tmp_path / "after"
    assert gpu_plan.main(["after", str(out / "t7.tar"), "--out", str(after), "--data", str(root),
                          "--samples", "16"]) == 0
    teacher = after / "t7-teacher.keras"
    assert teacher.is_file()
    rows = json.loads((after / "valid.json").read_text())
    assert [(r["run"], r["weights"]) for r in rows] == [("t7", "averaged"), ("t7", "best")]
    for r in rows:
        assert 0 <= r["official"] <= 1 and 0 <= r["neutral_rate"] <= 1 and list(r["recall"]) == fer.EMOTIONS
        assert (after / "t7" / f"{r['weights']}-int8.tflite").stat().st_size == r["bytes"]

    assert plan(carry, "students", "--budget", "300", "--seeds", "8", "--arch", "edge", "--teachers",
                f"{teacher},{teacher}", "--out", str(out), "--work", str(work), *TINY) == 0
    config = json.loads((work / "s8" / "config.json").read_text())
    assert config["teacher"] == f"{teacher.resolve()},{teacher.resolve()}"
    assert config["teacher_views"] == "flip" and config["distill_alpha"] == 0.7 and config["init_from"] is None
    assert "averaged.keras" in members(out / "s8.tar")


def test_a_step_that_cannot_run_says_what_to_do(carried, tmp_path, capsys):
    _, carry, _ = carried
    assert plan(tmp_path / "empty", "teachers", "--budget", "60", "--seeds", "1") == 2
    assert "run `python -m training.gpu_plan prepare`" in capsys.readouterr().err
    assert plan(carry, "teachers", "--budget", "60", "--seeds", "1,1") == 2
    assert "one distinct seed per run" in capsys.readouterr().err
    assert plan(carry, "teachers", "--budget", "60", "--seeds", "a,b") == 2
    assert "whole numbers" in capsys.readouterr().err
    assert plan(carry, "teachers", "--budget", "60", "--seeds", ",".join(map(str, range(9)))) == 2
    assert "at most 8" in capsys.readouterr().err
    assert plan(carry, "students", "--budget", "60", "--seeds", "1", "--teachers", str(tmp_path / "no.keras")) == 2
    assert "nor a trained network file" in capsys.readouterr().err
    assert gpu_plan.main(["after", str(tmp_path / "gone.tar"), "--out", str(tmp_path / "a")]) == 2
    assert "pass the .tar files" in capsys.readouterr().err


def test_a_bundle_too_big_to_come_back_leaves_best_out(tmp_path, monkeypatch):
    run = tmp_path / "run"
    run.mkdir()
    for name, size in (("averaged.keras", 600), ("best.keras", 600), ("history.csv", 10), ("config.json", 10)):
        (run / name).write_bytes(b"x" * size)
    log = tmp_path / "run.log"
    log.write_text("epoch 1\n")
    assert members(gpu_plan.bundle(run, log, tmp_path / "a.tar")) == {
        "averaged.keras", "best.keras", "history.csv", "config.json", "train.log"}
    monkeypatch.setattr(gpu_plan, "RETURN_LIMIT", 1000)
    assert members(gpu_plan.bundle(run, log, tmp_path / "b.tar")) == {
        "averaged.keras", "history.csv", "config.json", "train.log"}


def test_a_run_past_its_deadline_is_stopped_and_still_comes_back(carried, tmp_path, monkeypatch, capsys):
    _, carry, _ = carried
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")
    out = tmp_path / "out"
    assert plan(carry, "teachers", "--budget", "300", "--deadline", "0.5", "--seeds", "3", "--arch", "edge",
                "--out", str(out), "--work", str(tmp_path / "work"), *TINY) == 1
    assert "did not finish by the deadline" in capsys.readouterr().err
    assert "train.log" in members(out / "t3.tar")


def test_a_run_cut_before_averaging_still_leaves_a_teacher(tmp_path, monkeypatch):
    """A teacher stopped at the call's deadline before its last epochs (the H100's t11: 134
    of 223 planned) brings back best.keras and no averaged.keras: its best epoch is kept as
    the teacher (it was none, and the next call's students lost a third of their teachers);
    a run that finished keeps its averaged network."""
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")
    import keras
    import numpy as np

    def network(value):
        net = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
        net.set_weights([np.full(w.shape, value, w.dtype) for w in net.get_weights()])
        return net

    cut, done = tmp_path / "cut", tmp_path / "done"
    cut.mkdir(), done.mkdir()
    network(1.0).save(cut / "best.keras")
    network(1.0).save(done / "best.keras")
    network(2.0).save(done / "averaged.keras")
    assert gpu_plan.keep_teacher(cut, tmp_path / "cut-teacher.keras") == "best"
    assert gpu_plan.keep_teacher(done, tmp_path / "done-teacher.keras") == "averaged"
    for name, value in (("cut", 1.0), ("done", 2.0)):
        kept = keras.models.load_model(tmp_path / f"{name}-teacher.keras", compile=False)
        assert all(np.all(w == value) for w in kept.get_weights())
    assert gpu_plan.keep_teacher(tmp_path / "empty", tmp_path / "none.keras") is None
    assert not (tmp_path / "none.keras").exists()
