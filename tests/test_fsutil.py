"""The one atomic file-write helper: a failure at any point before the rename leaves the
old file byte for byte, and no temp file is left behind."""
from __future__ import annotations

import os

import pytest

from edge_app.fsutil import atomic_path, atomic_write


def test_atomic_write_replaces_the_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "current.json"
    target.write_text("old")
    atomic_write(target, '{"new": true}\n')
    assert target.read_text() == '{"new": true}\n'
    assert oct(target.stat().st_mode & 0o777) == oct(0o644)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["current.json"]


def test_a_crash_between_write_and_replace_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "model.tflite"
    target.write_bytes(b"old model")
    seen = []

    def power_cut(src, dst):
        seen.append(os.path.basename(src))
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "replace", power_cut)
    with pytest.raises(OSError, match="Input/output"):
        atomic_write(target, b"new model, fully written")
    assert seen and seen[0].startswith(".model.tflite.") and seen[0].endswith(".tmp")  # it did get that far
    assert target.read_bytes() == b"old model"
    assert [p.name for p in tmp_path.iterdir()] == ["model.tflite"]


def test_an_error_inside_the_block_keeps_the_old_file(tmp_path):
    target = tmp_path / "backup.db"
    target.write_bytes(b"yesterday")
    with pytest.raises(RuntimeError, match="integrity"):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half a data")
            raise RuntimeError("the copy failed its integrity check")
    assert target.read_bytes() == b"yesterday"
    assert [p.name for p in tmp_path.iterdir()] == ["backup.db"]


def test_a_new_file_appears_whole_with_the_writers_suffix(tmp_path):
    target = tmp_path / "best.keras"
    with atomic_path(target, suffix=".keras") as tmp:
        assert tmp.parent == tmp_path and tmp.name.endswith(".keras") and not target.exists()
        tmp.write_bytes(b"weights")
    assert target.read_bytes() == b"weights"
    assert [p.name for p in tmp_path.iterdir()] == ["best.keras"]
