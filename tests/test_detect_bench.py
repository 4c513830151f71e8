"""tools/detect_bench.py: its recall and false positives are only comparable between
runs (and with ``detect_replay``'s recordings) when the same command draws the same
images."""
from __future__ import annotations

import csv
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

import detect_bench  # noqa: E402


def write_fer_split(root: Path, split: str, n: int) -> Path:
    """``n`` 48x48 faces-to-be (noise) with majority-neutral votes in FER+'s folder layout."""
    folder = root / split
    folder.mkdir(parents=True)
    rng = np.random.default_rng(5)
    with open(folder / "label.csv", "w", newline="") as f:
        rows = csv.writer(f)
        for i in range(n):
            name = f"fer{i:07d}.png"
            assert cv2.imwrite(str(folder / name), rng.integers(0, 256, (48, 48), dtype=np.uint8))
            rows.writerow([name, "(0, 0, 48, 48)", 8, 1, 1, 0, 0, 0, 0, 0, 0, 0])
    return root


def test_the_same_command_draws_the_same_images(tmp_path):
    data = write_fer_split(tmp_path, "FER2013Test", 12)
    first = detect_bench.build(data, 12, 60, seed=11)
    again = detect_bench.build(data, 12, 60, seed=11)
    assert len(first[0]) == len(again[0]) == 12 + 100 + 18 and len(first[1]) == len(again[1]) == 60
    for (a, truths_a, source_a), (b, truths_b, source_b) in zip(first[0], again[0]):
        assert (source_a, truths_a) == (source_b, truths_b)
        assert np.array_equal(a, b), source_a
    for a, b in zip(first[1], again[1]):
        assert np.array_equal(a, b)
    other = detect_bench.build(data, 12, 60, seed=12)
    assert not all(np.array_equal(a, b) for a, b in zip(first[1], other[1]))  # the seed still matters
