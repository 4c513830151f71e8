"""training/: FER+ loaders, label rules, a real (tiny) train -> int8 -> LiteRT run, and the
shipped model (its manifest, and its accuracy on a fixed slice of FER+ test where the
shared data set is present)."""
from __future__ import annotations

import csv
import json
import os
import tarfile
import tempfile
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from conftest import skip_unless_ci  # noqa: E402

from edge_app.vision.classifier import VIEW_PRESETS, views_from_inference, views_json  # noqa: E402
from training import data as fer  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT / ".." / "shared" / "data"
MODELS = ROOT / "models"  # the model card and the paper baseline
SHIPPED_MANIFEST = ROOT / "edge_app" / "models" / "shipped" / "emotion-int8.json"
SLICE_SIZE = 500
SPLIT_SIZES = {"train": 40, "valid": 16, "test": 16}
# real Keras training runs and a FER+ extraction: beyond pytest.ini's 120 s on a busy 2-core box
pytestmark = pytest.mark.timeout(600)


# ---------------------------------------------------------------- generated FER+ in both layouts

def _votes(rng: np.random.Generator) -> list[int]:
    """Ten annotators, mostly agreeing on one class, with some noise, unknown and NF votes."""
    v = np.zeros(10, int)
    v[rng.integers(0, 10)] += int(rng.integers(3, 9))
    for _ in range(10 - v.sum()):
        v[rng.integers(0, 10)] += 1
    return v.tolist()


def _face(rng: np.random.Generator, label: int) -> np.ndarray:
    """A 48x48 uint8 image whose pattern depends on the top class, plus noise."""
    yy, xx = np.mgrid[0:48, 0:48]
    base = 128 + 80 * np.sin((xx + 3 * label) / (3 + label)) * np.cos(yy / (4 + label))
    return np.clip(base + rng.normal(0, 20, (48, 48)), 0, 255).astype(np.uint8)


def write_ferplus(root: Path, seed: int = 0) -> dict[str, list]:
    """Write the same tiny data set as Microsoft's folder layout (``root/ferplus``) and as
    the two public CSV files (``root/csv``); one image per split was removed by FER+
    (empty name in fer2013new.csv, absent from the folders). Returns the rows written."""
    rng = np.random.default_rng(seed)
    csv_dir, folder_root = root / "csv", root / "ferplus"
    csv_dir.mkdir(parents=True)
    rows: dict[str, list] = {}
    index = 0
    with open(csv_dir / "fer2013.csv", "w", newline="") as f_pix, \
            open(csv_dir / "fer2013new.csv", "w", newline="") as f_new:
        pix, new = csv.writer(f_pix), csv.writer(f_new)
        pix.writerow(["emotion", "pixels", "Usage"])
        new.writerow(["Usage", "Image name"] + fer.VOTE_COLUMNS)
        for split, n in SPLIT_SIZES.items():
            folder = folder_root / fer.SPLIT_FOLDERS[split]
            folder.mkdir(parents=True)
            rows[split] = []
            with open(folder / "label.csv", "w", newline="") as f_label:
                labels = csv.writer(f_label)
                for i in range(n + 1):
                    votes = _votes(rng)
                    img = _face(rng, int(np.argmax(votes)))
                    removed = i == n // 2
                    name = "" if removed else f"fer{index:07d}.png"
                    pix.writerow([int(np.argmax(votes[:7])), " ".join(map(str, img.ravel())), fer.CSV_USAGE[split]])
                    new.writerow([fer.CSV_USAGE[split], name] + (([0] * 9 + [10]) if removed else votes))
                    if not removed:
                        assert cv2.imwrite(str(folder / name), img)
                        labels.writerow([name, "(0, 0, 48, 48)"] + votes)
                        rows[split].append((name, img, votes))
                    index += 1
    return rows


@pytest.fixture
def generated(tmp_path, monkeypatch):
    monkeypatch.setenv("ENGAGE_DATA_CACHE", str(tmp_path / "npz"))
    return tmp_path, write_ferplus(tmp_path)


def test_both_layouts_give_identical_arrays(generated):
    root, rows = generated
    assert fer.find_layout(root) == ("folder", root / "ferplus")
    assert fer.find_layout(root / "csv") == ("csv", root / "csv")
    for split, expected in rows.items():
        folder = fer.load_split(root, split)
        from_csv = fer.load_split(root / "csv", split)
        assert len(folder) == len(from_csv) == SPLIT_SIZES[split]  # the removed image is skipped
        assert folder.names == from_csv.names == [name for name, _, _ in expected]
        np.testing.assert_array_equal(folder.images, from_csv.images)
        np.testing.assert_array_equal(folder.images, np.stack([img for _, img, _ in expected]))
        np.testing.assert_array_equal(folder.votes, from_csv.votes)
        np.testing.assert_array_equal(folder.votes, np.array([v for _, _, v in expected]))
        assert folder.images.dtype == np.uint8 and folder.images.shape[1:] == (48, 48)


def test_cached_arrays_equal_decoded_ones(generated):
    root, _ = generated
    first = fer.load_split(root, "valid")
    assert list((root / "npz").glob("valid-*.npz")), "the decoded split was not cached"
    again = fer.load_split(root, "valid")
    np.testing.assert_array_equal(first.images, again.images)
    np.testing.assert_array_equal(first.votes, again.votes)
    assert first.names == again.names


def test_csv_files_of_different_lengths_are_refused_naming_both(generated):
    """zip() stopped at the shorter of fer2013.csv and fer2013new.csv: a cut-short download
    lost the test split's last images and nothing said so."""
    root, _ = generated
    total = sum(SPLIT_SIZES.values()) + len(SPLIT_SIZES)  # a removed image per split is a row too
    for name, kept in (("fer2013new.csv", total - 3), ("fer2013.csv", total - 1)):
        path = root / "csv" / name
        whole = path.read_text()
        path.write_text("".join(whole.splitlines(keepends=True)[: kept + 1]))
        counts = (kept, total) if name == "fer2013.csv" else (total, kept)
        with pytest.raises(fer.DataError, match=rf"fer2013\.csv has {counts[0]} rows and .*fer2013new\.csv has {counts[1]}"):
            fer.load_split(root / "csv", "train", cache=False)
        path.write_text(whole)


def test_a_damaged_cache_entry_is_removed_and_the_data_decoded_again(generated, capsys):
    """The cache's name is the digest of the source: a truncated or overwritten entry was read
    again, with a traceback, on every later run."""
    root, _ = generated
    original = fer.load_split(root, "valid")
    (entry,) = (root / "npz").glob("valid-*.npz")
    whole = entry.read_bytes()
    wrong_shapes = root / "wrong.npz"
    np.savez(wrong_shapes, images=np.zeros((2, 4), np.uint8), votes=np.zeros((2, 10), np.int16), names=np.array(["a", "b"]))
    for damage in (whole[: len(whole) // 2], b"junk" * 10, whole[:-200], wrong_shapes.read_bytes()):
        entry.write_bytes(damage)
        again = fer.load_split(root, "valid")
        np.testing.assert_array_equal(again.images, original.images)
        np.testing.assert_array_equal(again.votes, original.votes)
        assert again.names == original.names
        assert f"the decoded cache {entry} is damaged" in capsys.readouterr().err
        assert entry.read_bytes() == whole, "the damaged entry was not replaced"


def test_a_damaged_pack_says_to_write_it_again(generated):
    root, _ = generated
    pack = fer.write_pack(root, root / "pack.npz")
    pack.write_bytes(pack.read_bytes()[:1000])
    with pytest.raises(fer.DataError, match="the file is damaged; write it again with python -m training.data pack"):
        fer.load_split(pack, "train")


def test_cache_is_keyed_by_content_not_by_path(generated, tmp_path):
    import shutil

    root, _ = generated
    original = fer.load_split(root, "valid")
    entries = lambda: sorted((root / "npz").glob("valid-*.npz"))  # noqa: E731
    assert len(entries()) == 1
    shutil.copytree(root / "ferplus", tmp_path / "copy")
    fer.load_split(tmp_path / "copy", "valid")
    assert len(entries()) == 1, "the same data in another folder was decoded again"
    label_file = root / "ferplus" / "FER2013Valid" / "label.csv"
    with open(label_file, newline="") as f:
        rows = list(csv.reader(f))
    rows[0][2] = str(int(rows[0][2]) + 1)  # one more neutral vote on the first image, in place
    with open(label_file, "w", newline="") as f:
        csv.writer(f).writerows(rows)
    changed = fer.load_split(root, "valid")
    assert changed.votes[0, 0] == original.votes[0, 0] + 1, "a stale cache entry was served for edited data"
    assert len(entries()) == 2


def test_pack_carries_train_and_valid_losslessly(generated):
    root, _ = generated
    # an image only the strict argmax rule keeps: neutral 3 ties unknown 3 (argmax takes
    # neutral), no majority, and the emotion votes are not more than half
    label_file = root / "ferplus" / "FER2013Valid" / "label.csv"
    with open(label_file, newline="") as f:
        rows = list(csv.reader(f))
    rows[0][2:] = ["3", "1", "0", "0", "0", "0", "0", "0", "3", "3"]
    with open(label_file, "w", newline="") as f:
        csv.writer(f).writerows(rows)
    pack = fer.write_pack(root, root / "carry" / fer.PACK_NAME)
    assert fer.find_layout(pack) == ("pack", pack) and fer.find_layout(pack.parent) == ("pack", pack)
    for split in ("train", "valid"):
        original, packed = fer.load_split(root, split), fer.load_split(pack, split)
        usable = (fer.soft_labels(original.votes)[1] | (fer.majority_labels(original.votes) >= 0)
                  | (fer.argmax_labels(original.votes) >= 0))
        kept = original.subset(usable)
        assert packed.names == kept.names and 0 < len(packed) <= len(original)
        np.testing.assert_array_equal(packed.images, kept.images)
        np.testing.assert_array_equal(packed.votes, kept.votes)
        for rule in (fer.majority_labels, fer.argmax_labels):  # the pack scores as the original does
            assert (rule(packed.votes) >= 0).sum() == (rule(original.votes) >= 0).sum()
    assert rows[0][0] in fer.load_split(pack, "valid").names
    with pytest.raises(fer.DataError, match="no 'test' split"):
        fer.load_split(pack, "test")


def test_missing_or_wrong_data_gives_a_clear_error(tmp_path):
    with pytest.raises(fer.DataError, match="fer2013.csv"):
        fer.find_layout(tmp_path)
    (tmp_path / "FER2013Test").mkdir()
    with pytest.raises(fer.DataError, match="label.csv is missing"):
        fer.load_split(tmp_path, "test", cache=False)
    (tmp_path / "FER2013Test" / "label.csv").write_text("fer0.png,(0 0 48 48),1,2\n")
    with pytest.raises(fer.DataError, match="columns"):
        fer.load_split(tmp_path, "test", cache=False)


def test_a_vote_that_is_not_a_number_names_its_file_and_row(generated):
    """An empty vote cell (a hand-edited or damaged label file) is a DataError naming the
    file and the row, in both layouts, as an unreadable image is: it was int()'s raw
    ValueError, a traceback out of training.train and training.evaluate."""
    root, rows = generated
    label_file = root / "ferplus" / "FER2013Valid" / "label.csv"
    with open(label_file, newline="") as f:
        lines = list(csv.reader(f))
    lines[2][4] = ""  # the third image's surprise votes
    with open(label_file, "w", newline="") as f:
        csv.writer(f).writerows(lines)
    with pytest.raises(fer.DataError, match=rf"label\.csv row 3 \({lines[2][0]}\): .*whole numbers"):
        fer.load_split(root, "valid", cache=False)

    new_csv = root / "csv" / "fer2013new.csv"
    with open(new_csv, newline="") as f:
        table = list(csv.reader(f))
    row = next(i for i, r in enumerate(table) if r[0] == fer.CSV_USAGE["valid"] and r[1])
    table[row][5] = ""
    with open(new_csv, "w", newline="") as f:
        csv.writer(f).writerows(table)
    with pytest.raises(fer.DataError, match=rf"fer2013new\.csv row {row + 1} \({table[row][1]}\): .*numbers"):
        fer.load_split(root / "csv", "valid", cache=False)
    table[row] = table[row][:6]  # a row cut short
    with open(new_csv, "w", newline="") as f:
        csv.writer(f).writerows(table)
    with pytest.raises(fer.DataError, match=rf"fer2013new\.csv row {row + 1} has 6 columns"):
        fer.load_split(root / "csv", "valid", cache=False)


# ---------------------------------------------------------------- label rules on hand-built votes

#           neutral happy surprise sad anger disgust fear contempt unknown NF
VOTE_ROWS = np.array([
    [6, 0, 1, 1, 0, 0, 0, 0, 2, 0],   # 0: 6 of 8 after outliers -> neutral
    [4, 0, 0, 1, 3, 2, 0, 0, 0, 0],   # 1: 4 of 9 is not a majority -> dropped; argmax neutral
    [3, 0, 0, 1, 1, 1, 0, 0, 0, 0],   # 2: 3 of 6 raw, 3 of 3 once single votes go -> neutral
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 10],  # 3: not a face -> dropped by both rules
    [2, 0, 0, 0, 0, 0, 0, 0, 5, 3],   # 4: unknown wins -> dropped by both rules
    [0, 5, 0, 0, 0, 0, 0, 0, 5, 0],   # 5: tie is not > half -> dropped; argmax takes happiness
    [1, 1, 1, 1, 1, 1, 1, 1, 1, 1],   # 6: every vote an outlier -> dropped; argmax neutral
    [0, 1, 0, 0, 0, 0, 0, 2, 0, 0],   # 7: contempt 2 of 2 -> contempt
    [0, 0, 0, 0, 0, 0, 7, 0, 3, 0],   # 8: fear 7 of 10 -> fear
    [0, 0, 0, 0, 0, 3, 0, 0, 4, 3],   # 9: disgust 3 of 10 -> dropped; argmax unknown -> dropped
])


def test_official_majority_rule():
    assert fer.majority_labels(VOTE_ROWS).tolist() == [0, -1, 0, -1, -1, -1, -1, 7, 6, -1]


def test_strict_argmax_rule():
    assert fer.argmax_labels(VOTE_ROWS).tolist() == [0, 0, 0, -1, -1, 1, 0, 7, 6, -1]


def test_argmax_ties_go_to_the_first_column_and_are_also_counted_either_way():
    """np.argmax gives a tie in the top vote to the first column (neutral): the argmax figure
    keeps that definition, and the evaluation says beside it how many images tie and the
    accuracy that counts any tied top class right."""
    from training import evaluate

    votes = np.array([[4, 4, 0, 0, 0, 0, 0, 0, 2, 0],   # neutral and happiness tied: labelled neutral
                      [0, 6, 0, 0, 0, 0, 0, 0, 0, 4],   # happiness
                      [5, 0, 0, 0, 0, 0, 0, 0, 5, 0],   # neutral tied with unknown: labelled neutral
                      [0, 0, 0, 0, 0, 0, 0, 0, 0, 10]])  # not a face: dropped
    assert fer.argmax_labels(votes).tolist() == [0, 1, 0, -1]
    probs = np.eye(8, dtype=np.float32)[[1, 1, 0, 0]]  # says happiness on the first tie
    result = evaluate.score(votes, probs)
    assert result["argmax"]["images"] == 3 and result["argmax"]["accuracy"] == pytest.approx(2 / 3, abs=1e-4)
    assert result["argmax_ties_either"] == {"images": 3, "tied_images": 2, "accuracy": 1.0}
    shown = evaluate.summary({"model": "m.tflite", "format": "tflite", "file_bytes": 1, "split": "test", **result,
                              "plots": {}, "json": "m-test.json"})
    assert "any tied top class counted right: 100.00% (2 of 3 images tied;" in shown


def test_soft_labels_are_the_vote_distribution_without_outliers():
    targets, usable = fer.soft_labels(VOTE_ROWS)
    assert usable.tolist() == [True, True, True, False, False, False, False, True, True, False]
    np.testing.assert_allclose(targets[0], [1, 0, 0, 0, 0, 0, 0, 0])  # the 2 unknown votes are not an emotion
    np.testing.assert_allclose(targets[1], np.array([4, 0, 0, 0, 3, 2, 0, 0]) / 9, rtol=1e-6)
    np.testing.assert_allclose(targets[7], [0, 0, 0, 0, 0, 0, 0, 1])  # the single happiness vote is an outlier
    np.testing.assert_allclose(targets[usable].sum(axis=1), 1, rtol=1e-6)
    assert not targets[~usable].any()


def test_majority_training_targets_are_one_hot():
    split = fer.Split(np.zeros((len(VOTE_ROWS), 48, 48), np.uint8), VOTE_ROWS, [str(i) for i in range(len(VOTE_ROWS))])
    targets, keep = fer.training_targets(split, "majority")
    assert keep.tolist() == (fer.majority_labels(VOTE_ROWS) >= 0).tolist()
    assert targets[keep].argmax(axis=1).tolist() == [0, 0, 7, 6]
    with pytest.raises(fer.DataError, match="soft"):
        fer.training_targets(split, "hard")


# ---------------------------------------------------------------- train -> int8 -> LiteRT

def test_geometric_augmentation_keeps_pixels_at_zero_strength_and_flips_half():
    from training.augment import make_augmenter, make_geometric_layer

    x = np.random.default_rng(0).random((64, 48, 48, 1)).astype("float32")
    np.testing.assert_array_equal(np.asarray(make_geometric_layer()(0.0, seed=1)(x, training=True)), x)
    near_identity = np.asarray(make_geometric_layer()(1e-9, seed=1)(x, training=True))
    flipped = [np.allclose(near_identity[i], x[i, :, ::-1], atol=1e-4) for i in range(64)]
    kept = [np.allclose(near_identity[i], x[i], atol=1e-4) for i in range(64)]
    assert all(f or k for f, k in zip(flipped, kept)) and 16 < sum(flipped) < 48
    augmenter = make_augmenter(0, 1.0)
    out = np.asarray(augmenter(x, training=True))
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1 and not np.allclose(out, x)
    np.testing.assert_array_equal(np.asarray(augmenter(x, training=False)), x)


def test_learning_rate_warms_up_then_anneals_to_the_planned_end():
    from training import train

    args = train.parse_args(["--out", "unused", "--arch", "edge", "--lr", "0.01"])
    rates = [train.learning_rate(args, epoch, planned=20) for epoch in range(20)]
    assert rates[0] < rates[1] < rates[2] <= 0.01 and rates[2] == pytest.approx(0.01)
    assert all(a >= b for a, b in zip(rates[2:], rates[3:])) and rates[-1] < 0.001
    assert train.learning_rate(args, 9, planned=10) < train.learning_rate(args, 9, planned=20)
    paper = train.parse_args(["--out", "unused", "--arch", "paper"])
    assert {train.learning_rate(paper, e, 50) for e in range(50)} == {1e-4}


def test_replay_command_carries_every_argument_that_changes_the_run(tmp_path):
    """Each option of training.train set away from its default comes back the same when
    config.json's replay command is parsed, but those that do not change what is computed
    (where the data and run are, resuming, threads) and the budget the replay stands for."""
    import shlex

    from training import train

    teacher = tmp_path / "my runs" / "best.keras"  # a path with a space survives the shell
    teacher.parent.mkdir()
    teacher.write_bytes(b"")
    argv = ["--arch", "edge-w", "--labels", "majority", "--epochs", "33", "--batch-size", "64", "--lr", "0.0007",
            "--augment", "0.3", "--seed", "9", "--data", "D", "--out", "O", "--init-from", str(teacher),
            "--limit", "256", "--threads", "2", "--time-budget", "600", "--stop-after", "30",
            "--teacher", str(teacher), "--teacher-views", "flip", "--distill-alpha", "0.7",
            "--temperature", "3.0", "--logit-adjust", "0.5", "--average-last", "7"]
    args = train.parse_args(argv)
    words = shlex.split(train.replay_command(args, args.epochs))
    assert words[:3] == ["python", "-m", "training.train"]
    replayed = train.parse_args(words[3:])
    not_the_run = {"data", "out", "resume", "threads", "time_budget"}
    options = set(vars(args))
    differ = {k: (getattr(args, k), getattr(replayed, k)) for k in options - not_the_run
              if getattr(args, k) != getattr(replayed, k)}
    assert not differ, f"the replay command changes the run: {differ}"
    defaults = train.parse_args(["--out", "O"])
    moved = {k for k in options - not_the_run if getattr(args, k) != getattr(defaults, k)}
    assert moved == options - not_the_run - {"optimizer"}, "the test leaves an option at its default"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One epoch of the edge model on the generated set, then int8 and float conversion."""
    from training import quantize, train

    root = tmp_path_factory.mktemp("tiny")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ENGAGE_DATA_CACHE", str(root / "npz"))
        write_ferplus(root, seed=1)
        run = root / "run"
        common = ["--arch", "edge", "--data", str(root), "--out", str(run), "--batch-size", "16"]
        assert train.main(common + ["--epochs", "1"]) == 0
        assert quantize.main([str(run / "best.keras"), "--out", str(root / "tiny-int8.tflite"),
                              "--data", str(root), "--samples", "16", "--version", "test"]) == 0
        assert quantize.main([str(run / "best.keras"), "--float", "--out", str(root / "tiny-float.tflite")]) == 0
        assert quantize.main([str(run / "best.keras"), "--float", "--flip-average",
                              "--out", str(root / "tiny-flip.tflite")]) == 0
        assert quantize.main([str(run / "best.keras"), "--float", "--views", "flip-vshift",
                              "--out", str(root / "tiny-vshift.tflite")]) == 0
        yield root, run


@pytest.fixture
def eager_steps(tiny_run):
    """Keras's train and test steps run eagerly for this test. TensorFlow traces them
    into graphs anew for every run, seconds per tiny run; a test of a run's bookkeeping
    (resume, time budget, averaging, warm start) does not need the graphs. The fixture
    run and the distillation test keep graph mode, as a real run has. (After
    ``tiny_run``, so the fixture run is traced.)"""
    import keras

    if keras.backend.backend() != "tensorflow":
        yield
        return
    import tensorflow as tf

    tf.config.run_functions_eagerly(True)
    try:
        yield
    finally:
        tf.config.run_functions_eagerly(False)


def small_edge_network():
    """A network of five layers in place of `edge` (convolution, batch norm, pooling and the
    same "emotion" head): tests of a run's bookkeeping (time budget, replay, resume,
    averaging) train it eagerly in a few seconds where `edge` took half a minute. The real
    network is trained by ``tiny_run``, the distillation and warm-start tests and the GPU
    plan's test."""
    import keras

    return keras.Sequential([keras.Input((48, 48, 1)), keras.layers.Conv2D(4, 3, strides=4),
                             keras.layers.BatchNormalization(), keras.layers.GlobalAveragePooling2D(),
                             keras.layers.Dense(len(fer.EMOTIONS), activation="softmax", name="emotion")],
                            name="edge")


@pytest.fixture
def small_edge(monkeypatch):
    """``--arch edge`` builds ``small_edge_network`` for this test."""
    from training import models

    monkeypatch.setitem(models.ARCHITECTURES, "edge", small_edge_network)


def train_on(root: Path, *args: str) -> int:
    """``training.train`` on the generated set in ``root`` (its own decoded cache), batch 16."""
    from training import train

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ENGAGE_DATA_CACHE", str(root / "npz"))
        return train.main(["--data", str(root), "--batch-size", "16", *args])


def test_training_run_records_config_history_and_checkpoints(tiny_run):
    root, run = tiny_run
    config = json.loads((run / "config.json").read_text())
    assert config["arch"] == "edge" and config["labels"] == "soft" and config["seed"] == 1234
    assert config["git_commit"] and config["sizes"]["train"] + config["sizes"]["train_dropped"] == SPLIT_SIZES["train"]
    with open(run / "history.csv", newline="") as f:
        history = list(csv.DictReader(f))
    assert len(history) == 1 and 0 <= float(history[0]["val_accuracy"]) <= 1
    assert (run / "best.keras").is_file() and (run / "final.keras").is_file()


def test_resume_continues_the_run(tiny_run, eager_steps, small_edge):
    root, _ = tiny_run
    run = root / "resumed"
    args = ["--arch", "edge", "--out", str(run), "--epochs", "2"]
    assert train_on(root, *args, "--stop-after", "1") == 0  # stopped after its first epoch, as a kill would
    with pytest.raises(SystemExit, match="--resume"):
        train_on(root, *args)
    assert train_on(root, *args, "--resume") == 0
    with open(run / "history.csv", newline="") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [0, 1]
    assert json.loads((run / "config.json").read_text())["resumed_at"] == [1]  # its replay is not this run exactly
    assert train_on(root, *args, "--resume") == 0  # finished: trains nothing, so no resume to record
    assert json.loads((run / "config.json").read_text())["resumed_at"] == [1]


def test_a_resumed_leg_draws_afresh_and_says_it_was_resumed(tmp_path):
    """A resume seeded again with the run's seed: the epochs after it repeated epoch 1's
    shuffle and augmentation draws. A run that is not resumed is seeded as before."""
    import keras

    from training import train
    from training.augment import make_augmenter

    face = keras.Input((48, 48, 1))
    trainer = keras.Model(face, make_augmenter(1234, 0.7)(face))
    states = lambda: [v.numpy().tolist() for v in trainer.non_trainable_variables  # noqa: E731
                      if v.path.endswith("seed_generator_state")]
    keras.utils.set_random_seed(1234)
    first_leg, initial = np.random.random(3), states()
    assert train.reseed_resumed(trainer, 1234, 5) == train.leg_seed(1234, 5) != train.leg_seed(1234, 6)
    assert not np.allclose(np.random.random(3), first_leg)
    assert len(initial) == 2 and states() != initial
    (tmp_path / "config.json").write_text(json.dumps({"seed": 1234}))
    train.record_resume(tmp_path, 5)
    train.record_resume(tmp_path, 9)
    assert json.loads((tmp_path / "config.json").read_text()) == {"seed": 1234, "resumed_at": [5, 9]}


def test_time_budget_stops_the_run_once_no_further_epoch_fits(tiny_run, eager_steps, small_edge, monkeypatch, capsys):
    """A budget that runs out before the plan is fixed: the run stops, says its budget was too
    short to anneal, and config.json records the plan so far, cut short, with the replay
    command that is this run (it recorded no plan and no replay). A resume with a budget
    plans afresh: that plan was never fixed."""
    import shlex

    from training import train

    root, _ = tiny_run
    run = root / "budget"
    common = ["--arch", "edge", "--out", str(run), "--epochs", "6"]
    assert train_on(root, *common, "--time-budget", "0.001") == 0
    with open(run / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [0, 1]  # two epochs measure the pace
    assert (run / "best.keras").is_file() and (run / "final.keras").is_file()
    assert f"ran out after 2 epochs, before the plan is fixed (after {train.PLAN_FIXED_AFTER})" in capsys.readouterr().out
    config = json.loads((run / "config.json").read_text())
    assert (config["planned_epochs"], config["cut_short_at_epoch"], config["plan_fixed"]) == (2, 2, False)
    replay = train.parse_args(shlex.split(config["replay"])[3:])
    assert (replay.epochs, replay.stop_after, replay.time_budget) == (2, 2, 0)
    assert [float(r["learning_rate"]) for r in rows] == pytest.approx([train.learning_rate(replay, e, 2) for e in range(2)])

    monkeypatch.setattr(train, "planned_epochs", lambda cap, done, times, left: min(cap, 5))
    assert train_on(root, *common, "--time-budget", "3600", "--resume") == 0
    config = json.loads((run / "config.json").read_text())
    assert config["planned_epochs"] == 5 and not {"cut_short_at_epoch", "plan_fixed"} & set(config)
    with open(run / "history.csv", newline="") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [0, 1, 2, 3, 4]


def test_time_budget_plan_grows_back_when_epochs_get_faster():
    from training.train import planned_epochs

    assert planned_epochs(200, 2, [90.0, 60.0], 600) == 12
    # a busy start (60 s epochs) then a free machine (30 s): the plan grows again
    assert planned_epochs(200, 5, [90.0, 60.0, 30.0, 30.0, 30.0], 600) == 25
    assert planned_epochs(20, 5, [9.0, 3.0, 3.0, 3.0, 3.0], 600) == 20  # never past --epochs
    assert planned_epochs(200, 7, [9.0, 3.0], -5) == 7  # budget spent: stop now
    # runs side by side: this one finished compiling first and ran two epochs alone (2 s),
    # then shared the GPU (3 s): planned at 3 s, not at the median's 2
    assert planned_epochs(1000, 4, [98.0, 2.0, 2.0, 3.0], 300) == 104


def test_time_budget_plan_is_fixed_early_and_recorded_as_a_replay_command(tiny_run, eager_steps, small_edge, monkeypatch):
    """The plan counts an epoch from end to end, the backup and checkpoints written after
    it included: on a pretend clock where only the backup takes time (10 s), a 60 s budget
    fixes a plan of 6 epochs after four (30 s spent, 95% of the 30 left) and the run ends
    there, inside its budget. Timing fit alone saw epochs of no time, planned the 40-epoch
    cap and was cut short (on the GPU: 130 of 153 planned epochs)."""
    from training import train

    now = [0.0]
    save_backup = train.save_backup

    def slow_backup(*args, **kwargs):
        now[0] += 10.0
        return save_backup(*args, **kwargs)

    monkeypatch.setattr(train, "clock", lambda: now[0])
    monkeypatch.setattr(train, "save_backup", slow_backup)
    root, _ = tiny_run
    run = root / "fixed-plan"
    assert train_on(root, "--arch", "edge", "--out", str(run), "--epochs", "40", "--time-budget", "60") == 0
    config = json.loads((run / "config.json").read_text())
    assert config["planned_epochs"] == 6 and "cut_short_at_epoch" not in config
    assert "--epochs 6 " in config["replay"] and "--time-budget" not in config["replay"]
    assert config["versions"]["keras"] and config["versions"]["numpy"]
    with open(run / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    args = train.parse_args(config["replay"].split()[3:])  # the replay's schedule is the run's
    assert args.epochs == 6 and not args.time_budget
    assert [float(r["learning_rate"]) for r in rows] == pytest.approx([train.learning_rate(args, e, 6) for e in range(6)])


def test_replay_of_a_budgeted_run_is_the_same_run_when_the_plan_is_short(tiny_run, eager_steps, small_edge, monkeypatch):
    """A budget that plans fewer than 30 epochs (the model card's students: 26 and 28 of a
    1000-epoch cap): the replay command, run with its fixed --epochs, has the budgeted
    run's learning rate at every epoch and averages the same epochs, although the plan
    moved (5, then 6 epochs) before it was fixed after four."""
    import shlex

    from training import train

    root, _ = tiny_run
    plans = {2: 5, 3: 6}  # the estimate after epochs 2 and 3, then 6 for good
    monkeypatch.setattr(train, "planned_epochs", lambda cap, done, times, left: min(cap, plans.get(done, 6)))
    budgeted = root / "short-plan"
    assert train_on(root, "--arch", "edge", "--out", str(budgeted), "--epochs", "40", "--time-budget", "3600",
                    "--average-last", "4") == 0
    config = json.loads((budgeted / "config.json").read_text())
    assert config["planned_epochs"] == 6
    words = shlex.split(config["replay"])
    assert words[:3] == ["python", "-m", "training.train"] and "--time-budget" not in words
    replayed = root / "short-plan-replay"
    words = [w for w in words[3:]]
    words[words.index("--out") + 1] = str(replayed)
    del words[words.index("--data"):words.index("--data") + 2]
    assert train_on(root, *words) == 0

    def rates(run):
        with open(run / "history.csv", newline="") as f:
            return [float(r["learning_rate"]) for r in csv.DictReader(f)]

    assert len(rates(budgeted)) == 6
    assert rates(budgeted) == pytest.approx(rates(replayed), rel=1e-6)
    averaged = [json.loads((run / "averaged.json").read_text()) for run in (budgeted, replayed)]
    assert [(a["epochs"], a["last_epoch"]) for a in averaged] == [(4, 6), (4, 6)]


def test_resume_of_a_budgeted_run_keeps_its_fixed_plan(tiny_run, eager_steps, small_edge, monkeypatch):
    """A budgeted run stopped after its plan was fixed and resumed: the resumed epochs
    follow the recorded plan (learning rate and end), not a new plan made from the time
    the resumed process has, and config.json's replay is still the run. A resume that
    finds the run at its end (its plan, or the --stop-after given again) trains nothing:
    fit was given the --epochs cap and ran one epoch past the end."""
    import shlex

    from training import train

    root, _ = tiny_run
    run = root / "budget-resumed"
    common = ["--arch", "edge", "--out", str(run), "--epochs", "40", "--time-budget", "3600"]
    monkeypatch.setattr(train, "planned_epochs", lambda cap, done, times, left: min(cap, 6))
    assert train_on(root, *common, "--stop-after", "5") == 0  # interrupted after 5 of 6 epochs, say
    assert json.loads((run / "config.json").read_text())["planned_epochs"] == 6
    # the resumed process would plan more epochs from its own, fresh budget
    monkeypatch.setattr(train, "planned_epochs", lambda cap, done, times, left: min(cap, done + 20))
    assert train_on(root, *common, "--stop-after", "5", "--resume") == 0  # the same command again: no epoch more
    with open(run / "history.csv", newline="") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [0, 1, 2, 3, 4]
    assert train_on(root, *common, "--resume") == 0
    config = json.loads((run / "config.json").read_text())
    assert config["planned_epochs"] == 6 and "--stop-after" not in config["replay"]
    with open(run / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2, 3, 4, 5]
    replay = train.parse_args(shlex.split(config["replay"])[3:])
    assert [float(r["learning_rate"]) for r in rows] == pytest.approx([train.learning_rate(replay, e, 6) for e in range(6)])
    assert train_on(root, *common, "--resume") == 0  # a finished run resumed: no epoch past the plan
    with open(run / "history.csv", newline="") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [0, 1, 2, 3, 4, 5]


def test_resume_refuses_arguments_that_change_the_run(tiny_run, eager_steps, small_edge, tmp_path):
    """A resume with other data, labels or settings than config.json records is refused,
    each difference named, before anything is trained (it trained on them while config.json
    kept the old ones); --stop-after and where the same data lie may differ."""
    import shutil

    root, _ = tiny_run
    run = root / "resume-args"
    common = ["--arch", "edge", "--out", str(run), "--epochs", "2", "--limit", "24"]
    assert train_on(root, *common, "--stop-after", "1") == 0
    with pytest.raises(SystemExit) as refused:
        train_on(root, "--arch", "edge", "--out", str(run), "--epochs", "3", "--limit", "32", "--batch-size", "8",
                 "--lr", "0.01", "--labels", "majority", "--resume")
    message = str(refused.value)
    for difference in ("--epochs recorded 2, given 3", "--limit recorded 24, given 32", "--batch-size recorded 16, given 8",
                       "--lr recorded 0.003, given 0.01", "--labels recorded soft, given majority"):
        assert difference in message
    assert "Resume it with the recorded ones" in message and "new --out" in message and "--seed" not in message
    with pytest.raises(SystemExit, match=r"--time-budget sets --warmup 3"):  # a warm-up given with the budget
        train_on(root, *common, "--time-budget", "600", "--warmup", "3", "--resume")
    edited = tmp_path / "edited"
    shutil.copytree(root / "ferplus", edited)
    label_file = edited / "FER2013Train" / "label.csv"
    with open(label_file, newline="") as f:
        lines = list(csv.reader(f))
    lines[0][2:] = ["0", "10", "0", "0", "0", "0", "0", "0", "0", "0"] if lines[0][3] != "10" else ["10"] + ["0"] * 9
    with open(label_file, "w", newline="") as f:
        csv.writer(f).writerows(lines)
    with pytest.raises(SystemExit, match=rf"--data {edited} gives other images or labels"):
        train_on(root, *common, "--data", str(edited), "--resume")
    with open(run / "history.csv", newline="") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [0]  # nothing was trained by the refused ones
    moved = tmp_path / "moved"
    shutil.copytree(root / "ferplus", moved)
    # a time budget added on the resume keeps the run's warm-up (README: --time-budget may differ); it
    # was refused over the 3 epochs of warm-up a budget sets on a new run
    assert train_on(root, *common, "--data", str(moved), "--stop-after", "2", "--time-budget", "600", "--resume") == 0
    with open(run / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    # where the run stops now, not where its first leg stopped: a shipped manifest copies it
    assert json.loads((run / "config.json").read_text())["stop_after"] == 2
    from training import train

    unbudgeted = train.parse_args(["--out", str(run), "--arch", "edge", "--epochs", "2"])
    assert [float(r["learning_rate"]) for r in rows] == pytest.approx([train.learning_rate(unbudgeted, e, 2)
                                                                       for e in range(2)])


def test_resume_without_the_time_budget_keeps_the_fixed_plan(tiny_run, eager_steps, small_edge, monkeypatch):
    """A budgeted run whose plan (6 epochs of a 40 cap) was fixed, resumed without
    --time-budget: the resumed epochs follow the recorded plan and its budget's warm-up,
    as the replay command does; the schedule restarted towards --epochs 40 (with the
    warm-up of a plan without budget) while config.json kept planned_epochs 6."""
    import shlex

    from training import train

    root, _ = tiny_run
    run = root / "budget-resumed-without"
    common = ["--arch", "edge", "--out", str(run), "--epochs", "40"]
    monkeypatch.setattr(train, "planned_epochs", lambda cap, done, times, left: min(cap, 6))
    assert train_on(root, *common, "--time-budget", "3600", "--stop-after", "4") == 0
    assert json.loads((run / "config.json").read_text())["planned_epochs"] == 6
    assert train_on(root, *common, "--stop-after", "5", "--resume") == 0
    assert train_on(root, *common, "--resume") == 0
    config = json.loads((run / "config.json").read_text())
    assert config["planned_epochs"] == 6 and config["warmup"] == train.BUDGET_WARMUP
    with open(run / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2, 3, 4, 5]
    replay = train.parse_args(shlex.split(config["replay"])[3:])
    assert replay.epochs == 6 and replay.warmup == train.BUDGET_WARMUP
    assert [float(r["learning_rate"]) for r in rows] == pytest.approx([train.learning_rate(replay, e, 6) for e in range(6)])


def test_distillation_trains_a_student_beside_its_teacher(tiny_run, capsys):
    import keras

    root, first = tiny_run
    run = root / "distilled"
    common = ["--arch", "edge", "--epochs", "2", "--stop-after", "1"]
    with pytest.raises(SystemExit):
        train_on(root, *common, "--out", str(root / "bad"), "--teacher", str(root / "missing.keras"))
    assert "neither an architecture" in capsys.readouterr().err and not (root / "bad").exists()
    assert train_on(root, *common, "--out", str(run), "--teacher", "edge", "--logit-adjust", "0.3") == 0
    with open(run / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and {"accuracy", "teacher_accuracy", "val_teacher_accuracy", "learning_rate"} <= set(rows[0])
    assert keras.models.load_model(run / "best.keras", compile=False).name == "edge"  # the student ships
    assert keras.models.load_model(run / "teacher.keras", compile=False).name == "teacher-edge"
    config = json.loads((run / "config.json").read_text())
    assert "--teacher edge" in config["replay"] and "--logit-adjust 0.3" in config["replay"]
    assert "--stop-after 1" in config["replay"]


def test_a_trained_teacher_is_an_input_not_an_output(tiny_run, eager_steps, small_edge):
    root, first = tiny_run
    frozen = root / "distilled-frozen"
    assert train_on(root, "--arch", "edge", "--epochs", "2", "--stop-after", "1", "--out", str(frozen),
                    "--teacher", str(first / "best.keras")) == 0
    assert (frozen / "best.keras").is_file() and not (frozen / "teacher.keras").exists()


def test_a_mirrored_teacher_answers_with_the_mean_of_both_views(tiny_run, eager_steps, small_edge, capsys):
    """``--teacher-views flip``: a one-view student learns what the teacher says with the
    device's two views (the face and its mirror image)."""
    import keras

    from training import distill

    root, first = tiny_run
    # a network that tells left from right at once (the tiny run's is still near uniform)
    keras.utils.set_random_seed(5)
    inner = keras.Sequential([keras.Input((48, 48, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(8, activation="softmax")], name="lopsided")
    inner.save(root / "lopsided.keras")
    teacher, online = distill.load_teacher(str(root / "lopsided.keras"), mirrored=True)
    faces = np.random.default_rng(5).random((6, 48, 48, 1)).astype("float32")
    expected = (inner.predict(faces, verbose=0) + inner.predict(faces[:, :, ::-1], verbose=0)) / 2
    assert not online and not teacher.trainable_weights  # frozen: the student alone learns
    assert not np.allclose(inner.predict(faces, verbose=0), expected, atol=1e-3)  # the mirror changes the answer
    np.testing.assert_allclose(teacher.predict(faces, verbose=0), expected, atol=1e-5)
    common = ["--arch", "edge", "--epochs", "2", "--stop-after", "1"]
    with pytest.raises(SystemExit):
        train_on(root, *common, "--out", str(root / "bad-views"), "--teacher", "edge", "--teacher-views", "flip")
    assert "needs a trained teacher" in capsys.readouterr().err and not (root / "bad-views").exists()
    run = root / "distilled-mirrored"
    assert train_on(root, *common, "--out", str(run), "--teacher", str(first / "best.keras"),
                    "--teacher-views", "flip") == 0
    assert "--teacher-views flip" in json.loads((run / "config.json").read_text())["replay"]


def test_several_teachers_answer_with_the_mean_of_their_probabilities(tiny_run, eager_steps, small_edge, capsys):
    """``--teacher a.keras,b.keras``: two trained teachers make a better one; networks of
    one architecture share their names, and the mean still loads, runs and trains a student."""
    import keras

    from training import distill

    root, first = tiny_run
    nets = []
    for i, classes in enumerate((8, 8, 7)):
        keras.utils.set_random_seed(10 + i)
        net = keras.Sequential([keras.Input((48, 48, 1)), keras.layers.Flatten(),
                                keras.layers.Dense(classes, activation="softmax")], name="same-name")
        net.save(root / f"member{i}.keras")
        nets.append(net)
    two = f"{root / 'member0.keras'},{root / 'member1.keras'}"
    faces = np.random.default_rng(6).random((6, 48, 48, 1)).astype("float32")
    answers = [n.predict(faces, verbose=0) for n in nets[:2]]
    assert not np.allclose(answers[0], answers[1], atol=1e-3)  # they disagree, so the mean is news
    teacher, online = distill.load_teacher(two)
    assert not online and not teacher.trainable_weights
    np.testing.assert_allclose(teacher.predict(faces, verbose=0), (answers[0] + answers[1]) / 2, atol=1e-5)
    mirrored, _ = distill.load_teacher(two, mirrored=True)
    flipped = [n.predict(faces[:, :, ::-1], verbose=0) for n in nets[:2]]
    np.testing.assert_allclose(mirrored.predict(faces, verbose=0), sum(answers + flipped) / 4, atol=1e-5)

    common = ["--arch", "edge", "--epochs", "2", "--stop-after", "1"]
    for bad, why in [(f"{root / 'member0.keras'},edge-l", "must all be trained networks"),
                     (f"{root / 'member0.keras'},{root / 'nope.keras'}", "nope.keras is neither"),
                     (f"{root / 'member0.keras'},", "(empty) is neither")]:
        with pytest.raises(SystemExit):
            train_on(root, *common, "--out", str(root / "bad-teachers"), "--teacher", bad)
        assert why in capsys.readouterr().err and not (root / "bad-teachers").exists()
    with pytest.raises(SystemExit, match="classes \\[7, 8\\]"):
        distill.load_teacher(f"{root / 'member0.keras'},{root / 'member2.keras'}")
    run = root / "distilled-from-two"
    teachers = f"{first / 'best.keras'},{root / 'member0.keras'}"
    assert train_on(root, *common, "--out", str(run), "--teacher", teachers, "--teacher-views", "flip") == 0
    assert f"--teacher {teachers}" in json.loads((run / "config.json").read_text())["replay"]


# a training run in its own process, killed by training.train.kill_point (eager, as eager_steps)
KILLED_RUN = """
import os, sys
if os.environ.get("KERAS_BACKEND", "tensorflow") == "tensorflow":
    import tensorflow as tf
    tf.config.run_functions_eagerly(True)
sys.path.insert(0, "tests")  # run from the checkout's root
from test_training import small_edge_network  # as the test's own runs (small_edge)
from training import models, train
models.ARCHITECTURES["edge"] = small_edge_network
sys.exit(train.main(sys.argv[1:]))
"""


def test_average_last_keeps_the_mean_of_the_last_epochs_across_a_resume(tiny_run, eager_steps, small_edge):
    """A run stopped after epoch 2 of 3 and resumed averages epochs 2 and 3. The same run
    killed (SIGKILL) after epoch 2's backup (before its history row and its turn at
    best.keras), resumed, killed again halfway through epoch 3's backup (its averaging
    state written, its weights file not yet in place), and resumed again ends with the
    same averaged weights, history.csv and best.keras bit for bit: both kills leave the
    backup at epoch 2, as the stop does. (Not the run never stopped: Keras's shuffle and
    dropout draw other numbers in a resumed process.) A run begun by an older version
    (no averaging/, Keras's own backup files) resumes as that version did."""
    import shutil
    import signal
    import subprocess
    import sys

    import keras

    root, _ = tiny_run
    run, legacy, killed = root / "averaged", root / "averaged-legacy", root / "averaged-killed"
    common = ["--arch", "edge", "--epochs", "3", "--average-last", "2"]
    with pytest.raises(SystemExit):
        train_on(root, *common[:-1], "-1", "--out", str(run))
    assert train_on(root, *common, "--out", str(run), "--stop-after", "2") == 0  # stopped after epoch 2 of 3
    assert json.loads((run / "averaged.json").read_text())["epochs"] == 1  # epochs 2-3 are averaged
    shutil.copy(run / "final.keras", root / "epoch2.keras")
    shutil.copytree(run, legacy)
    shutil.rmtree(legacy / "averaging")
    # what Keras's BackupAndRestore kept: the same save_weights file, the epoch beside it
    (legacy / "backup" / "epoch-00002" / "training.weights.h5").rename(legacy / "backup" / "latest.weights.h5")
    (legacy / "backup" / "training_metadata.json").write_text('{"epoch": 2, "batch": 0}')
    for folder in (legacy / "backup").glob("epoch-*"):
        shutil.rmtree(folder)

    def killed_at(point, *resume):
        env = {**os.environ, "ENGAGE_DATA_CACHE": str(root / "npz"), "ENGAGE_TRAIN_KILL_AT": point}
        child = subprocess.run([sys.executable, "-c", KILLED_RUN, "--data", str(root), "--batch-size", "16", *common,
                                "--out", str(killed), *resume], cwd=ROOT, env=env, capture_output=True, text=True,
                               timeout=300)
        assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
        return sorted(p.name for p in (killed / "averaging").iterdir())

    def history(path):
        with open(path / "history.csv", newline="") as f:
            return list(csv.DictReader(f))

    assert killed_at("backed-up:2") == ["after-00002.npz"]
    assert [r["epoch"] for r in history(killed)] == ["0"]  # epoch 2's row was not written
    # epoch 3's state is one ahead of the backup: the resumed run must do epoch 3 again
    assert killed_at("backup-writing:3", "--resume") == ["after-00002.npz", "after-00003.npz"]
    assert sorted(p.name for p in (killed / "backup").iterdir()) == [".epoch-00003.partial", "epoch-00001", "epoch-00002"]
    for resumed in (run, killed, legacy):
        assert train_on(root, *common, "--out", str(resumed), "--resume") == 0

    def weights(path):
        return keras.models.load_model(path, compile=False).get_weights()

    state = json.loads((run / "averaged.json").read_text())
    assert state["epochs"] == 2 and state["last_epoch"] == 3
    assert 0 <= state["averaged_val_accuracy"] <= 1 and 0 <= state["best_val_accuracy"] <= 1
    mean = [(a + b) / 2 for a, b in zip(weights(root / "epoch2.keras"), weights(run / "final.keras"))]
    averaged = weights(run / "averaged.keras")
    assert len(averaged) == len(mean)
    for got, want in zip(averaged, mean):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert not np.allclose(averaged[0], weights(run / "final.keras")[0])  # not simply the last epoch
    assert "--average-last 2" in json.loads((run / "config.json").read_text())["replay"]
    for other in (killed, legacy):
        assert json.loads((other / "averaged.json").read_text())["epochs"] == 2, other.name
        for got, want in zip(weights(other / "averaged.keras"), averaged, strict=True):
            np.testing.assert_array_equal(got, want, err_msg=other.name)
    assert [int(r["epoch"]) for r in history(run)] == [0, 1, 2]
    assert history(killed) == history(legacy) == history(run)
    for other in (killed, legacy):
        for name in ("best.keras", "final.keras"):
            for got, want in zip(weights(other / name), weights(run / name), strict=True):
                np.testing.assert_array_equal(got, want, err_msg=f"{other.name}/{name}")
    assert sorted(p.name for p in (killed / "backup").iterdir()) == ["epoch-00002", "epoch-00003"]
    assert sorted(p.name for p in (legacy / "backup").iterdir()) == ["epoch-00003"]


def test_average_state_snapshots_resume_from_the_epoch_the_backup_restores(tmp_path):
    """write_average_state / read_average_state without a training run: the state after the
    backup's epoch comes back whole (pending epochs too), one snapshot ahead is dropped
    (two where the resume skipped an unreadable backup), three snapshots are kept, and a
    backup older than that is a clear error."""
    from training.train import read_average_state, write_average_state

    rng = np.random.default_rng(0)
    weights = [rng.normal(size=(3, 2)), rng.normal(size=4)]
    directory = tmp_path / "averaging"
    assert read_average_state(directory, 0) is None  # a fresh run
    write_average_state(directory, 1, 0, [], [(0, weights)], 0)  # before the plan is fixed: pending only
    write_average_state(directory, 2, 0, [], [(0, weights), (1, [w + 1 for w in weights])], 0)
    write_average_state(directory, 3, 3, [w * 2 for w in weights], [], 3)
    assert sorted(p.name for p in directory.iterdir()) == ["after-00001.npz", "after-00002.npz", "after-00003.npz"]
    count, mean, pending, last = read_average_state(directory, 3)
    assert (count, last, pending) == (3, 3, []) and all(np.array_equal(m, w * 2) for m, w in zip(mean, weights))
    with pytest.raises(SystemExit, match="after 3 epochs, but the backup restores 1"):
        read_average_state(directory, 1)
    count, mean, pending, last = read_average_state(directory, 2)  # killed before epoch 3's backup
    assert (count, mean, last) == (0, [], 0) and [e for e, _ in pending] == [0, 1]
    assert all(np.array_equal(got, w + 1) and got.dtype == w.dtype for got, w in zip(pending[1][1], weights))
    assert sorted(p.name for p in directory.iterdir()) == ["after-00001.npz", "after-00002.npz"]
    write_average_state(directory, 3, 3, [w * 2 for w in weights], [], 3)
    # epoch 2's backup was unreadable and epoch 3's never written: the state after epoch 1
    count, mean, pending, last = read_average_state(directory, 1, ahead=2)
    assert (count, mean, last) == (0, [], 0) and [e for e, _ in pending] == [0]
    for done in (2, 3, 4):
        write_average_state(directory, done, 0, [], [], 0)
    assert sorted(p.name for p in directory.iterdir()) == ["after-00002.npz", "after-00003.npz", "after-00004.npz"]
    assert read_average_state(tmp_path / "averaging-ahead", 0) is None
    write_average_state(tmp_path / "averaging-ahead", 1, 1, weights, [], 1)
    assert read_average_state(tmp_path / "averaging-ahead", 0) is None  # killed before the first backup


def _tiny_trainer(seed: int):
    """A compiled two-layer model with its optimizer built: a backup's contents in miniature."""
    import keras

    keras.utils.set_random_seed(seed)
    face = keras.Input((3,))
    model = keras.Model(face, keras.layers.Dense(2)(keras.layers.Dense(4)(face)))
    model.compile(optimizer=keras.optimizers.AdamW(1e-3), loss="mse")
    model.optimizer.build(model.trainable_variables)
    return model


def test_backup_is_whole_or_absent_and_a_resume_skips_an_unreadable_one(tmp_path, capsys):
    """save_backup / restore_backup without a training run: a backup brings back the
    weights, the optimizer's state and the history of its epoch; a folder a kill left
    half-written is not one; an unreadable newest backup gives way to the one before it,
    said in a log line; none readable is an error saying what to do; and an older
    version's backup (Keras's BackupAndRestore files) still resumes."""
    from training import train

    directory, model = tmp_path / "backup", _tiny_trainer(0)
    history, saved = [], {}
    for done in (1, 2, 3):
        model.set_weights([w + done for w in model.get_weights()])
        model.optimizer.iterations.assign(10 * done)
        history.append({"epoch": done - 1, "loss": 1.0 / done, "val_accuracy": 0.25 * done})
        train.save_backup(model, directory, done, history)
        saved[done] = [w.copy() for w in model.get_weights()]
    assert sorted(p.name for p in directory.iterdir()) == ["epoch-00002", "epoch-00003"]
    (directory / ".epoch-00004.partial").mkdir()  # a kill while epoch 4's was written

    def restored(expect_done):
        fresh = _tiny_trainer(1)
        done, got_history, lost = train.restore_backup(fresh, directory)
        assert done == expect_done and int(fresh.optimizer.iterations.numpy()) == 10 * done
        for got, want in zip(fresh.get_weights(), saved[done], strict=True):
            np.testing.assert_array_equal(got, want)
        return got_history, lost

    assert restored(3) == (history, 0)
    assert not (directory / ".epoch-00004.partial").exists()
    weights = directory / "epoch-00003" / "training.weights.h5"
    weights.write_bytes(weights.read_bytes()[:2000])  # a disk that lost the end of it
    assert restored(2) == (history[:2], 1)
    out = capsys.readouterr().out
    assert "epoch-00003 cannot be read" in out and "resuming from" in out and "trained again" in out
    assert sorted(p.name for p in directory.iterdir()) == ["epoch-00002"]
    (directory / "epoch-00002" / "state.json").write_text('{"epoch": 2, "hist')
    with pytest.raises(SystemExit, match=r"no readable backup \(epoch-00002: JSONDecodeError.*new --out.*--init-from"):
        train.restore_backup(_tiny_trainer(1), directory)

    legacy = tmp_path / "legacy"
    legacy.mkdir()
    model.save_weights(legacy / "latest.weights.h5")
    (legacy / "training_metadata.json").write_text('{"epoch": 3, "batch": 0}')
    fresh = _tiny_trainer(1)
    assert train.restore_backup(fresh, legacy) == (3, None, 0)
    assert int(fresh.optimizer.iterations.numpy()) == 30
    (legacy / "latest.weights.h5").write_bytes(b"not hdf5")
    with pytest.raises(SystemExit, match="older version of training.train.*cannot be read.*new --out"):
        train.restore_backup(fresh, legacy)


def test_resume_rebuilds_history_and_best_from_the_backup(tmp_path, capsys):
    """reconcile_outputs: a kill after epoch 2's backup left history.csv without its row
    (or a row cut short) and best.keras at epoch 1, though epoch 2 scored better: the
    resumed run's history.csv is the backup's, and best.keras the restored network. Rows
    of epochs the resume trains again are dropped (and one that beat the rest is said)."""
    import keras

    from training import train

    out, net = tmp_path / "run", _tiny_trainer(2)
    out.mkdir()
    history = [{"epoch": 0, "accuracy": 0.5, "val_accuracy": 0.25}, {"epoch": 1, "accuracy": 0.75, "val_accuracy": 0.5}]
    train.write_history(out, history[:1])
    with open(out / "history.csv", "a") as f:
        f.write("1,0.7")  # a line a kill cut short
    train.save_best(_tiny_trainer(3), out)
    assert train.reconcile_outputs(out, net, 2, history) == (history, 0.5)
    assert train.read_history(out) == history
    assert (out / "history.csv").read_text().splitlines()[0] == "epoch,accuracy,val_accuracy"
    for got, want in zip(keras.models.load_model(out / "best.keras").get_weights(), net.get_weights(), strict=True):
        np.testing.assert_array_equal(got, want)
    # resumed after epoch 1 (epoch 2's backup unreadable): its row goes; best.keras, which
    # holds epoch 2's network, stays, and a resumed epoch must beat its score to replace it
    epoch2 = _tiny_trainer(4)
    train.save_best(epoch2, out)
    assert train.reconcile_outputs(out, net, 1, history[:1]) == (history[:1], 0.5)
    for got, want in zip(keras.models.load_model(out / "best.keras").get_weights(), epoch2.get_weights(), strict=True):
        np.testing.assert_array_equal(got, want)
    assert "val_accuracy 0.5" in capsys.readouterr().out
    assert train.read_history(out) == history[:1]
    # an older version's backup, which kept no history: history.csv's rows before its epoch
    train.write_history(out, history)
    assert train.reconcile_outputs(out, net, 1, None) == (history[:1], 0.5)


def test_init_from_starts_at_an_earlier_runs_weights(tiny_run, eager_steps):
    import keras

    from training import train

    root, first = tiny_run
    common = ["--epochs", "1", "--init-from", str(first / "best.keras")]
    with pytest.raises(SystemExit, match="--arch edge"):
        train_on(root, *common, "--arch", "paper", "--out", str(root / "wrong-arch"))
    with pytest.raises(SystemExit, match="no such file"):
        train_on(root, "--out", str(root / "missing"), "--init-from", str(root / "nope.keras"))
    assert train_on(root, *common, "--arch", "edge", "--out", str(root / "warm"), "--lr", "1e-12") == 0
    start = keras.models.load_model(first / "best.keras", compile=False).get_layer("emotion").get_weights()
    warm = keras.models.load_model(root / "warm" / "final.keras", compile=False).get_layer("emotion").get_weights()
    fresh = train.build("edge").get_layer("emotion").get_weights()
    np.testing.assert_allclose(warm[0], start[0], atol=1e-6)  # a near-zero learning rate keeps them
    assert not np.allclose(fresh[0], start[0], atol=1e-3)
    config = json.loads((root / "warm" / "config.json").read_text())
    assert config["init_from"] == str(first / "best.keras")


def test_a_network_file_that_cannot_serve_leaves_nothing_in_out(tiny_run, eager_steps, small_edge, tmp_path):
    """--init-from a network of another architecture, or a file Keras cannot read (a .tflite
    export: Keras's raw ValueError), and --teacher such a file, stop with a message saying
    what the file is and what to pass, and leave no config.json behind: it made the
    corrected command "already holds a run", and with --resume kept the wrong one recorded."""
    root, _ = tiny_run
    network = tmp_path / "small.keras"
    small_edge_network().save(network)
    junk = tmp_path / "junk.keras"
    junk.write_bytes(b"not a zip file")
    out = tmp_path / "run"
    common = ["--epochs", "1", "--out", str(out)]
    with pytest.raises(SystemExit, match="holds a 'edge' network, not 'paper'; pass --arch edge"):
        train_on(root, *common, "--arch", "paper", "--init-from", str(network))
    with pytest.raises(SystemExit, match=r"--init-from .*tiny-float\.tflite is a TFLite model .* pass an earlier run's best\.keras"):
        train_on(root, *common, "--init-from", str(root / "tiny-float.tflite"))
    with pytest.raises(SystemExit, match=r"--init-from .*junk\.keras is not a Keras network that can be read"):
        train_on(root, *common, "--init-from", str(junk))
    with pytest.raises(SystemExit, match=r"--teacher .*tiny-float\.tflite is a TFLite model .* an earlier run's best\.keras"):
        train_on(root, *common, "--teacher", f"{network},{root / 'tiny-float.tflite'}")
    assert not out.exists() or not any(out.iterdir())
    assert train_on(root, *common, "--arch", "edge", "--init-from", str(network)) == 0
    assert json.loads((out / "config.json").read_text())["arch"] == "edge"


def test_quantize_with_unreadable_metrics_writes_nothing(tmp_path):
    """A bad --metrics path was read after the new model was written: the new model stood
    beside the old manifest, which the device refuses (sha256). The metrics are read first."""
    from training import quantize

    network = tmp_path / "net.keras"
    small_edge_network().save(network)
    out = tmp_path / "models" / "net.tflite"
    out.parent.mkdir()
    out.write_bytes(b"old model")
    out.with_suffix(".json").write_text('{"sha256": "old"}')
    junk = tmp_path / "junk.json"
    junk.write_text("{not json")
    for metrics in (tmp_path / "missing.json", junk):
        assert quantize.main([str(network), "--float", "--out", str(out), "--metrics", str(metrics)]) == 2
        assert out.read_bytes() == b"old model" and out.with_suffix(".json").read_text() == '{"sha256": "old"}'
    assert sorted(p.name for p in out.parent.iterdir()) == ["net.json", "net.tflite"]  # no staging left behind


def test_int8_model_is_fully_integer_and_accepted_by_the_device_runtime(tiny_run):
    from edge_app.vision.classifier import EmotionClassifier, sha256_file

    root, _ = tiny_run
    manifest = json.loads((root / "tiny-int8.json").read_text())
    assert manifest["model"] == "tiny-int8.tflite" and manifest["labels"] == fer.EMOTIONS
    assert manifest["input"] == {"size": [48, 48], "channels": 1, "scale": 1 / 255, "offset": 0.0}
    assert manifest["sha256"] == sha256_file(root / "tiny-int8.tflite")
    assert manifest["architecture"] == "edge" and manifest["precision"] == "int8" and manifest["version"] == "test"

    clf = EmotionClassifier(root / "tiny-int8.json")
    details = clf.interpreter.get_tensor_details()
    assert clf._in["dtype"] == np.int8 and clf._out["dtype"] == np.int8
    float_tensors = [d["name"] for d in details if d["dtype"] == np.float32]
    assert not float_tensors, f"not fully int8: {float_tensors}"
    label, confidence, probs = clf.classify(_face(np.random.default_rng(5), 2))
    assert label in fer.EMOTIONS and 0 < confidence <= 1 and abs(sum(probs.values()) - 1) < 0.01


def test_float_export_runs_in_the_device_runtime_and_agrees_with_keras(tiny_run):
    import keras

    from edge_app.vision.classifier import EmotionClassifier

    root, run = tiny_run
    manifest = json.loads((root / "tiny-float.json").read_text())
    assert manifest["precision"] == "float32" and manifest["labels"] == fer.EMOTIONS
    clf = EmotionClassifier(root / "tiny-float.json")
    assert clf._in["dtype"] == np.float32
    face = _face(np.random.default_rng(6), 3)
    expected = keras.models.load_model(run / "best.keras", compile=False).predict(
        face[None, :, :, None].astype(np.float32) / 255.0, verbose=0)[0]
    np.testing.assert_allclose(clf.probabilities(face), expected / expected.sum(), atol=1e-4)


def test_evaluate_reports_both_rules_plots_and_latency(tiny_run):
    from training import evaluate, quantize

    root, run = tiny_run
    out = root / "eval"
    assert evaluate.main([str(root / "tiny-int8.tflite"), "--data", str(root), "--out", str(out),
                          "--history", str(run / "history.csv"), "--latency-runs", "30"]) == 0
    result = json.loads((out / "tiny-int8-test.json").read_text())
    votes = fer.load_split(root, "test").votes
    assert result["official"]["images"] == int((fer.majority_labels(votes) >= 0).sum())
    assert result["argmax"]["images"] == int((fer.argmax_labels(votes) >= 0).sum())
    for rule in ("official", "argmax"):
        r = result[rule]
        cm = np.array(r["confusion"])
        assert cm.shape == (8, 8) and cm.sum() == r["images"]
        assert r["accuracy"] == pytest.approx(np.trace(cm) / cm.sum(), abs=1e-4)
        assert [c["support"] for c in r["per_class"].values()] == cm.sum(axis=1).tolist()
    assert result["input"]["dtype"] == "int8" and result["file_bytes"] == (root / "tiny-int8.tflite").stat().st_size
    assert 0 < result["latency"]["median_ms"] <= result["latency"]["p95_ms"] and result["latency"]["threads"] == 1
    for png in result["plots"].values():
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert set(result["plots"]) == {"confusion", "curves"}
    copies = result["training_copies"]  # the generated faces are all different
    assert copies["copies"]["images"] == 0 and copies["unseen"] == {k: result["official"][k] for k in ("images", "accuracy")}

    # the valid split for tuning, and a Keras model with the same code path
    assert evaluate.main([str(run / "best.keras"), "--data", str(root), "--split", "valid", "--out", str(out)]) == 0
    keras_result = json.loads((out / "best-valid.json").read_text())
    assert keras_result["split"] == "valid" and keras_result["format"] == "keras" and "latency" not in keras_result
    # views: the manifest asks for them, the float TFLite and Keras models agree on them
    flip, vshift = VIEW_PRESETS["flip"], VIEW_PRESETS["flip-vshift"]
    assert json.loads((root / "tiny-flip.json").read_text())["inference"] == {"views": views_json(flip)}
    assert "inference" not in json.loads((root / "tiny-float.json").read_text())
    plain_keras = evaluate.KerasModel(run / "best.keras")
    faces = fer.load_split(root, "valid").images
    for name, views in (("tiny-flip", flip), ("tiny-vshift", vshift)):
        expected = sum(plain_keras.predict(np.stack([v.apply(f) for f in faces])) for v in views) / len(views)
        np.testing.assert_allclose(evaluate.KerasModel(run / "best.keras", views).predict(faces), expected, atol=1e-5)
        tflite = evaluate.TFLiteModel(root / f"{name}.tflite")
        np.testing.assert_allclose(tflite.predict(faces), expected, atol=1e-4)
        assert tflite.info["views"] == views_json(views)
    assert evaluate.TFLiteModel(root / "tiny-float.tflite").views == VIEW_PRESETS["single"]
    with pytest.raises(SystemExit):
        quantize.main([str(run / "best.keras"), "--float", "--views", "sideways", "--out", str(root / "unused.tflite")])
    assert not (root / "unused.tflite").exists()
    # a TFLite model without its manifest is refused with a reason
    lone = root / "lone.tflite"
    lone.write_bytes((root / "tiny-int8.tflite").read_bytes())
    assert evaluate.main([str(lone), "--data", str(root), "--out", str(out)]) == 2


def test_ship_puts_an_evaluated_model_with_its_metrics_in_place(tiny_run):
    from edge_app.vision.classifier import EmotionClassifier, sha256_file
    from training import evaluate, ship

    root, run = tiny_run
    out, dest = root / "ship-eval", root / "shipped"
    assert evaluate.main([str(root / "tiny-int8.tflite"), "--data", str(root), "--out", str(out),
                          "--history", str(run / "history.csv"), "--latency-runs", "0"]) == 0
    # metrics of another file are refused and nothing is shipped
    assert ship.main([str(root / "tiny-float.tflite"), "--metrics", str(out / "tiny-int8-test.json"),
                      "--dest", str(dest), "--name", "emotion-int8.tflite", "--other-test-set"]) == 2
    assert not (dest / "emotion-int8.tflite").exists()
    this = [str(root / "tiny-int8.tflite"), "--metrics", str(out / "tiny-int8-test.json"), "--dest", str(dest),
            "--name", "emotion-int8.tflite", "--version", "t1"]
    # a fixture's few faces are not FER+'s test split: its figures would stand as the headline
    assert ship.main([*this, "--run", str(run)]) == 2
    assert not (dest / "emotion-int8.tflite").exists()
    # FER+'s figures with no run: the manifest would carry a headline and no recipe that rebuilds it
    whole = json.loads((out / "tiny-int8-test.json").read_text())
    for rule, n in ship.FERPLUS_TEST_IMAGES.items():
        whole[rule]["images"] = n
    (out / "tiny-int8-whole.json").write_text(json.dumps(whole))
    with pytest.raises(ship.ShipError, match="give --run"):
        ship.ship(root / "tiny-int8.tflite", out / "tiny-int8-whole.json", dest, name="emotion-int8.tflite")
    assert not (dest / "emotion-int8.tflite").exists()
    # a run of another architecture is not this model's recipe
    other_run = root / "other-run"
    other_run.mkdir(exist_ok=True)
    (other_run / "config.json").write_text(json.dumps({**json.loads((run / "config.json").read_text()), "arch": "edge-w"}))
    assert ship.main([*this, "--run", str(other_run), "--other-test-set"]) == 2
    assert ship.main([*this, "--run", str(run), "--other-test-set"]) == 0
    manifest = json.loads((dest / "emotion-int8.json").read_text())
    assert manifest["model"] == "emotion-int8.tflite" and manifest["version"] == "t1"
    assert manifest["metrics"]["test_set"] == "other"  # said where a reader of its figures looks
    assert manifest["metrics"]["sha256"] == manifest["sha256"] and manifest["metrics"]["official"]["images"] > 0
    assert manifest["training"]["arch"] == "edge" and manifest["architecture"] == "edge"
    assert sorted(manifest["metrics"]["plots"].values()) == ["emotion-int8-confusion.png", "emotion-int8-curves.png"]
    assert all((dest / png).is_file() for png in manifest["metrics"]["plots"].values())
    assert sorted(p.name for p in dest.iterdir() if p.name.startswith(".")) == []  # no staging left behind
    EmotionClassifier(dest / "emotion-int8.json")

    # flip averaging travels into the shipped manifest, and only with an evaluation that used it
    flip_json = json.loads((root / "tiny-flip.json").read_text())
    plain_json = root / "tiny-flip-plain.json"
    plain_json.write_text(json.dumps({**flip_json, "inference": {}}))
    plain = root / "tiny-flip-plain.tflite"
    plain.write_bytes((root / "tiny-flip.tflite").read_bytes())
    assert evaluate.main([str(plain), "--data", str(root), "--out", str(out), "--latency-runs", "0"]) == 0
    assert ship.main([str(root / "tiny-flip.tflite"), "--metrics", str(out / "tiny-flip-plain-test.json"),
                      "--dest", str(root / "flip-shipped"), "--other-test-set"]) == 2
    assert evaluate.main([str(root / "tiny-flip.tflite"), "--data", str(root), "--out", str(out), "--latency-runs", "0"]) == 0
    assert ship.main([str(root / "tiny-flip.tflite"), "--metrics", str(out / "tiny-flip-test.json"),
                      "--dest", str(root / "flip-shipped"), "--other-test-set"]) == 0
    shipped = json.loads((root / "flip-shipped" / "tiny-flip.json").read_text())
    flip = views_json(VIEW_PRESETS["flip"])
    assert shipped["inference"] == {"views": flip} and shipped["metrics"]["views"] == flip
    assert EmotionClassifier(root / "flip-shipped" / "tiny-flip.json").manifest.views == VIEW_PRESETS["flip"]

    # the disk full as the new manifest is written: the new model stood beside the old manifest, which every
    # device refuses (its sha256); the pair shipped before stays whole
    real_write = ship.atomic_write

    def full_at_the_manifest(path, data, mode=0o644):
        if Path(path).suffix == ".json":
            raise OSError(28, "No space left on device", str(path))
        real_write(path, data, mode)

    assert evaluate.main([str(root / "tiny-float.tflite"), "--data", str(root), "--out", str(out), "--latency-runs", "0"]) == 0
    pair = root / "pair-shipped"
    ship.ship(root / "tiny-float.tflite", out / "tiny-float-test.json", pair, name="net.tflite", other_test_set=True)
    before = sha256_file(pair / "net.tflite")
    ship.atomic_write = full_at_the_manifest
    try:
        with pytest.raises(OSError, match="No space left"):
            ship.ship(root / "tiny-int8.tflite", out / "tiny-int8-test.json", pair, name="net.tflite", other_test_set=True)
    finally:
        ship.atomic_write = real_write
    assert sha256_file(pair / "net.tflite") == before == json.loads((pair / "net.json").read_text())["sha256"]
    EmotionClassifier(pair / "net.json")  # the pair shipped before, whole


def test_ship_refuses_a_model_worse_than_the_one_it_replaces_unless_asked(tmp_path):
    """The float paper baseline (80.8%) replaced edge-v3 (85.8%) as emotion-int8.tflite
    through training.ship, and nothing said so."""
    from training import ship

    shipped = tmp_path / "emotion-int8.json"
    shipped.write_text(json.dumps({"metrics": {"official": {"accuracy": 0.8575}}}))
    worse, better = {"official": {"accuracy": 0.8081}}, {"official": {"accuracy": 0.8612}}
    with pytest.raises(ship.ShipError, match=r"80\.81% .* below the 85\.75% .* --allow-worse"):
        ship.check_not_worse(worse, shipped, allow_worse=False)
    ship.check_not_worse(worse, shipped, allow_worse=True)
    ship.check_not_worse(better, shipped, allow_worse=False)
    ship.check_not_worse(worse, tmp_path / "nothing-there.json", allow_worse=False)  # a first model


def test_ship_of_another_test_set_replaces_no_fer_measured_model_nor_the_package(tmp_path, monkeypatch):
    """A model evaluated on a fixture (--other-test-set) replaced the shipped 85.75% model
    with its 0.0%, exit 0: it has no FER+ figure to compare, so it is refused where a model
    measured on FER+ test stands, and in the device package, unless --allow-worse."""
    from edge_app.vision.classifier import sha256_file
    from training import ship

    model = tmp_path / "fixture-int8.tflite"
    model.write_bytes(b"a fixture's model")
    rule = {"scale": 1 / 255, "offset": 0.0}
    model.with_suffix(".json").write_text(json.dumps({"precision": "int8", "input": {"size": [48, 48], **rule}}))
    metrics = tmp_path / "fixture-test.json"
    metrics.write_text(json.dumps({"sha256": sha256_file(model), "split": "test", "input": rule,
                                   "official": {"images": 5, "accuracy": 0.0}, "argmax": {"images": 6, "accuracy": 0.0}}))
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "emotion-int8.tflite").write_bytes(b"the FER+ model")
    measured = json.dumps({"model": "emotion-int8.tflite", "metrics": {"official": {"images": 3137, "accuracy": 0.8575}}})
    (dest / "emotion-int8.json").write_text(measured)
    with pytest.raises(ship.ShipError, match=r"measured on FER\+ test \(85\.75%.* --allow-worse"):
        ship.ship(model, metrics, dest, name="emotion-int8.tflite", other_test_set=True)
    assert (dest / "emotion-int8.json").read_text() == measured
    assert (dest / "emotion-int8.tflite").read_bytes() == b"the FER+ model"
    package = tmp_path / "package"
    monkeypatch.setattr(ship, "MODELS_DIR", package)
    with pytest.raises(ship.ShipError, match="device package's model folder.* --allow-worse"):
        ship.ship(model, metrics, package / ".." / "package", name="emotion-int8.tflite", other_test_set=True)
    assert not package.exists()


def test_ship_interrupted_between_model_and_manifest_leaves_the_pair_before(tmp_path, monkeypatch):
    """Ctrl-C after the new model is in place and before its manifest: the new model beside
    the old manifest is refused by every device (sha256); the pair before is put back."""
    from training import ship

    dest, stage = tmp_path / "dest", tmp_path / "stage"
    dest.mkdir(), stage.mkdir()
    (dest / "net.tflite").write_bytes(b"old model")
    (dest / "net.json").write_text('{"sha256": "old"}')
    (stage / "net.tflite").write_bytes(b"new model")
    (stage / "net.json").write_text('{"sha256": "new"}')
    real_write, calls = ship.atomic_write, []

    def interrupted_at_the_manifest(path, data, mode=0o644):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real_write(path, data, mode)

    monkeypatch.setattr(ship, "atomic_write", interrupted_at_the_manifest)
    with pytest.raises(KeyboardInterrupt):
        ship.write_pair(dest, (stage / "net.tflite", stage / "net.json"))
    assert len(calls) == 2
    assert (dest / "net.tflite").read_bytes() == b"old model" and (dest / "net.json").read_text() == '{"sha256": "old"}'


def test_ship_refuses_a_float_model_named_int8(tiny_run):
    from training import evaluate, ship

    root, _ = tiny_run
    out = root / "float-eval"
    assert evaluate.main([str(root / "tiny-float.tflite"), "--data", str(root), "--out", str(out),
                          "--latency-runs", "0"]) == 0
    with pytest.raises(ship.ShipError, match="is float32, but it would be shipped as emotion-int8.tflite"):
        ship.ship(root / "tiny-float.tflite", out / "tiny-float-test.json", root / "named", name="emotion-int8.tflite",
                  other_test_set=True)
    assert not (root / "named" / "emotion-int8.tflite").exists()


def test_ship_gives_the_device_the_input_rule_the_evaluation_used(tiny_run):
    """The manifest the device reads applies the input rule (pixel * scale + offset) under
    which the metrics were measured; metrics measured under another rule are refused."""
    from edge_app.vision.classifier import EmotionClassifier, sha256_file
    from training import evaluate, ship

    root, _ = tiny_run
    out = root / "rule-eval"
    other = root / "tiny-rule.tflite"  # the float model's very bytes, read as pixel / 127.5 - 1
    other.write_bytes((root / "tiny-float.tflite").read_bytes())
    manifest = json.loads((root / "tiny-float.json").read_text())
    manifest["model"] = other.name
    manifest["input"] = {**manifest["input"], "scale": 1 / 127.5, "offset": -1.0}
    other.with_suffix(".json").write_text(json.dumps(manifest))
    assert sha256_file(other) == sha256_file(root / "tiny-float.tflite")
    assert evaluate.main([str(other), "--data", str(root), "--out", str(out), "--latency-runs", "0"]) == 0
    metrics = out / "tiny-rule-test.json"
    # the same bytes, shipped with a manifest whose rule the evaluation did not use
    assert ship.main([str(root / "tiny-float.tflite"), "--metrics", str(metrics), "--dest", str(root / "rule-bad"),
                      "--other-test-set"]) == 2
    assert not (root / "rule-bad" / "tiny-float.json").exists()
    assert ship.main([str(other), "--metrics", str(metrics), "--dest", str(root / "rule-ok"), "--other-test-set"]) == 0
    shipped = json.loads((root / "rule-ok" / "tiny-rule.json").read_text())
    assert (shipped["input"]["scale"], shipped["input"]["offset"]) == (1 / 127.5, -1.0)
    assert shipped["input"] == {**shipped["input"], **{k: shipped["metrics"]["input"][k] for k in ("scale", "offset")}}
    assert EmotionClassifier(root / "rule-ok" / "tiny-rule.json").manifest.scale == 1 / 127.5


def test_shipped_manifest_records_every_argument_that_changes_the_run():
    """The manifest's ``training`` is the run's recipe: a distilled, averaged or budgeted
    run's teacher, window and fixed plan are part of it."""
    from training import ship, train

    args = train.parse_args(["--out", "O", "--time-budget", "60", "--teacher", "edge", "--average-last", "3"])
    where = {"data", "out", "resume", "threads"}  # where it ran, not what it computed
    assert set(vars(args)) - where <= set(ship.RUN_KEYS), set(vars(args)) - where - set(ship.RUN_KEYS)
    assert {"planned_epochs", "replay", "cut_short_at_epoch", "versions"} <= set(ship.RUN_KEYS)


def test_ship_targets_the_package_with_its_pictures(tmp_path):
    """By default a model ships into the device package (where the classifier loads it),
    its evaluation PNGs beside its manifest: the device's model page shows them."""
    from edge_app.vision.classifier import SHIPPED_MANIFEST as RUNTIME_MANIFEST
    from training import ship

    assert (ship.MODELS_DIR / "emotion-int8.json").resolve() == RUNTIME_MANIFEST.resolve() == SHIPPED_MANIFEST.resolve()
    assert ship.plots_dir_for(ship.MODELS_DIR) == ship.MODELS_DIR
    assert (MODELS / "MODEL_CARD.md").is_file()
    assert ship.plots_dir_for(tmp_path) == tmp_path
    for png in json.loads(SHIPPED_MANIFEST.read_text())["metrics"]["plots"].values():
        assert (ship.MODELS_DIR / png).is_file(), f"{png} belongs beside the shipped manifest"
        assert png in (MODELS / "MODEL_CARD.md").read_text()


# ---------------------------------------------------------------- the shipped model

def test_shipped_model_matches_its_manifest():
    from edge_app.vision.classifier import sha256_file

    manifest = json.loads(SHIPPED_MANIFEST.read_text())
    model = SHIPPED_MANIFEST.parent / manifest["model"]
    assert manifest["model"] == "emotion-int8.tflite" and manifest["labels"] == fer.EMOTIONS
    assert manifest["input"]["size"] == [48, 48] and manifest["input"]["channels"] == 1
    assert manifest["sha256"] == sha256_file(model)
    assert model.stat().st_size <= 1_000_000
    metrics = manifest["metrics"]
    assert metrics["sha256"] == manifest["sha256"], "the metrics are of another file"
    assert metrics["split"] == "test" and metrics["official"]["images"] == 3137 and metrics["argmax"]["images"] == 3545
    # the metrics were measured the way the device runs the model
    assert views_from_inference(metrics) == views_from_inference(manifest.get("inference", {}))



def test_baseline_model_matches_its_manifest():
    """The paper CNN that ``engage-edge bench`` compares against: float32, evaluated file."""
    from edge_app.vision.classifier import sha256_file

    manifest = json.loads((MODELS / "baseline" / "paper-float.json").read_text())
    assert manifest["architecture"] == "paper" and manifest["precision"] == "float32"
    assert manifest["labels"] == fer.EMOTIONS and manifest["input"]["size"] == [48, 48]
    assert manifest["sha256"] == sha256_file(MODELS / "baseline" / manifest["model"]) == manifest["metrics"]["sha256"]

def _extract_test_folder(tarball: Path, cache_root: Path) -> Path:
    """Extract only ``ferplus/FER2013Test`` from the shared tarball into ``cache_root``,
    atomically (a killed run leaves no half folder behind)."""
    target = cache_root / "FER2013Test"
    if (target / "label.csv").is_file():
        return cache_root
    cache_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_root) as tmp:
        seen = False
        with tarfile.open(tarball, "r|gz") as tar:
            for member in tar:
                inside = member.name.startswith("ferplus/FER2013Test/")
                if inside and member.isfile():
                    seen = True
                    member.name = member.name[len("ferplus/"):]
                    tar.extract(member, tmp, filter="data")
                elif seen and not inside:
                    break  # the tarball keeps a folder's files together
        os.replace(Path(tmp) / "FER2013Test", target)
    return cache_root


def _test_folder() -> Path | None:
    """A folder holding FER2013Test/: an extracted copy (shared or the default data dir),
    else one extracted from ../shared/data/ferplus.tar.gz into the cache."""
    for root in (SHARED_DATA / "ferplus", SHARED_DATA, fer.default_data_dir() / "ferplus",
                 fer.default_data_dir() / "ferplus-test"):
        if (root / "FER2013Test" / "label.csv").is_file():
            return root
    tarball = SHARED_DATA / "ferplus.tar.gz"
    if tarball.is_file():
        return _extract_test_folder(tarball, fer.default_data_dir() / "ferplus-test")
    return None


def test_the_official_figure_is_also_given_without_the_copies_of_training_images():
    """FER2013 has test images that are pixel for pixel training images (244 of the 3,137
    official test images): evaluate reports the figure on the rest and on those copies."""
    from training import evaluate

    rng = np.random.default_rng(3)
    train_images = rng.integers(0, 256, (6, 48, 48), dtype=np.uint8)
    images = np.concatenate([train_images[:2], rng.integers(0, 256, (3, 48, 48), dtype=np.uint8)])
    copy = images[1].copy()
    copy[0, 0] ^= 1  # one pixel off is not a copy
    images = np.concatenate([images, copy[None]])
    copies = evaluate.copies_of_training(images, train_images)
    assert copies.tolist() == [True, True, False, False, False, False]
    votes = np.zeros((6, 10), int)
    votes[:, 1] = 10  # all happy ...
    votes[4] = [0] * 8 + [10, 0]  # ... but one whose votes are "unknown": no official label
    probs = np.eye(8)[[1, 0, 1, 0, 1, 1]]  # copies: 1 of 2 right; the others: 2 of 3 labelled right
    figures = evaluate.overlap_metrics(votes, probs, copies)
    assert figures == {"copies": {"images": 2, "accuracy": 0.5}, "unseen": {"images": 3, "accuracy": 0.66667}}


def test_shipped_model_accuracy_on_a_fixed_test_slice():
    """The first 500 FER+ test images kept by the official rule (label.csv order), run
    through the device's own classifier: at least 80% right."""
    from edge_app.vision.classifier import EmotionClassifier

    root = _test_folder()
    if root is None:
        skip_unless_ci(f"FER+ is not at {SHARED_DATA} (the project's shared data folder): nothing to score on")
    test = fer.load_folder_split(root, "test")
    labels = fer.majority_labels(test.votes)
    assert (labels >= 0).sum() == 3137 and (fer.argmax_labels(test.votes) >= 0).sum() == 3545
    idx = np.flatnonzero(labels >= 0)[:SLICE_SIZE]
    clf = EmotionClassifier(SHIPPED_MANIFEST)
    predicted = np.array([clf.probabilities(test.images[i]).argmax() for i in idx])
    accuracy = float((predicted == labels[idx]).mean())
    assert accuracy >= 0.80, f"shipped model: {accuracy:.1%} on the fixed {SLICE_SIZE}-image slice"


def test_a_runs_library_versions_name_the_tensorflow_it_ran_on():
    """The train extra installs TensorFlow as ``tensorflow-cpu``: looked up as ``tensorflow``
    only, no run recorded the backend that computed it, though the model card said so."""
    import importlib.util

    from training.train import library_versions

    versions = library_versions()
    assert {"numpy", "keras"} <= set(versions)
    if importlib.util.find_spec("tensorflow") is not None:
        import tensorflow as tf

        assert tf.__version__ in (versions.get("tensorflow"), versions.get("tensorflow-cpu")), versions


def test_a_run_resumes_on_the_pack_of_its_folder_and_back():
    """A pack leaves out beforehand what no label rule can use: the same images trained on came
    with 45 dropped from the pack and 147 from the folder, and the resume was refused as
    "other images or labels"."""
    from argparse import Namespace

    from training.train import check_resumed_data

    args = Namespace(data="ferplus-pack.npz", out="run")
    recorded = {"data_digest": "28e060718b171ab1", "sizes": {"train": 28411, "train_dropped": 147, "valid": 3191}}
    check_resumed_data(args, recorded, {"train": 28411, "train_dropped": 45, "valid": 3191}, "28e060718b171ab1")
    with pytest.raises(SystemExit, match="gives other images or labels"):
        check_resumed_data(args, recorded, {"train": 28400, "train_dropped": 45, "valid": 3191}, "28e060718b171ab1")
    with pytest.raises(SystemExit, match="gives other images or labels"):
        check_resumed_data(args, recorded, {"train": 28411, "train_dropped": 45, "valid": 3191}, "another")


def test_a_resume_on_other_libraries_is_recorded_and_said(tiny_run, eager_steps, small_edge, capsys):
    """A run resumed after Keras or TensorFlow was upgraded still recorded only the versions it
    began on, and a model shipped from it claimed them: config.json lists the resumed leg's
    libraries (resumed_with) and the resume says so, once per change."""
    from training import ship

    root, _ = tiny_run
    run = root / "upgraded"
    args = ["--arch", "edge", "--out", str(run), "--epochs", "3"]
    assert train_on(root, *args, "--stop-after", "1") == 0
    config = json.loads((run / "config.json").read_text())
    now = dict(config["versions"])
    config["versions"]["keras"] = "3.0.0"  # as if begun before an upgrade
    (run / "config.json").write_text(json.dumps(config))
    capsys.readouterr()
    assert train_on(root, *args, "--stop-after", "2", "--resume") == 0
    assert f"resumed on other libraries than it last ran on (keras 3.0.0 -> {now['keras']})" in capsys.readouterr().out
    config = json.loads((run / "config.json").read_text())
    assert config["resumed_with"] == [{"after_epoch": 1, "backend": config["backend"], "versions": now}]
    assert config["versions"]["keras"] == "3.0.0", "the run's start is what the first leg ran on"
    assert train_on(root, *args, "--resume") == 0  # on the libraries of the leg before: nothing new to record
    assert "other libraries" not in capsys.readouterr().out
    config = json.loads((run / "config.json").read_text())
    assert config["resumed_at"] == [1, 2] and len(config["resumed_with"]) == 1
    assert "resumed_with" in ship.RUN_KEYS
