"""The developer tools with no test file of their own (tools/attack.py, ...): the cheap
parts, never a whole run (those take minutes and print figures, they are not tests)."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

import attack  # noqa: E402


def test_attack_refuses_an_unknown_name_and_lists_the_real_ones(capsys):
    """`--only headr` was a KeyError traceback, after nothing had started."""
    with pytest.raises(SystemExit) as exit_:
        attack.main(["--only", "header,headr"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "no attack named headr;" in err and ",".join(attack.ATTACKS) in err, err


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze is missing (apt-get install systemd)")
def test_attack_passes_the_unit_at_its_documented_score():
    """README says "at most 2.0" and the unit scores 2.0: the check asked for less than 2.0, so it always failed."""
    result = attack.systemd_score(None)
    assert result.ok and result.expected == "at most 2.0", result


def test_attack_xff_keeps_its_data_in_the_runs_folder(tmp_path):
    """The spoofed-/metrics check ran an appliance on a mkdtemp of its own, never removed."""
    result = attack.metrics_xff(attack.Target("", 0, 0, tmp_path))
    assert result.ok, result
    assert [p.name for p in tmp_path.iterdir()] == ["xff-data"]


def test_soak_ends_the_appliance_when_it_fails_midway(monkeypatch):
    """Nothing ended the child `engage-edge run` on an error: it ran for ever, on a deleted data folder."""
    import soak

    started, real_popen = [], subprocess.Popen

    def popen(*args, **kwargs):
        started.append(real_popen(*args, **kwargs))
        return started[-1]

    def broken(pid):
        raise RuntimeError("the soak's own error")

    monkeypatch.setattr(soak.subprocess, "Popen", popen)
    monkeypatch.setattr(soak, "rss_mb", broken)
    with pytest.raises(RuntimeError, match="the soak's own error"):
        soak.main(["--warmup", "0"])
    assert len(started) == 1 and started[0].returncode is not None  # waited for: ended, not left running


def test_soak_reads_the_growth_per_hour_through_the_noise_and_names_the_database_files(tmp_path):
    """One sample's swing (malloc giving memory back, then taking it again) made the first and
    last samples of a run say 240 MB an hour of a service that stayed flat."""
    import os

    import soak

    flat = [{"s": s, "rss": 400.0 + (15 if i % 2 else 0)} for i, s in enumerate(range(0, 300, 30))]
    flat[-1]["rss"] = 420.0  # a high sample last
    assert abs(soak.per_hour(flat, "rss")) < 100 < (420 - 400) / (270 / 3600)  # the fit, and what the ends said
    assert soak.per_hour([{"s": 0, "fds": 10}, {"s": 1800, "fds": 15}, {"s": 3600, "fds": 20}], "fds") == 10.0
    with open(tmp_path / "engage.db-wal", "w"), open(tmp_path / "other", "w"):
        kinds = soak.fd_kinds(os.getpid())
    assert kinds["engage.db*"] == 1 and kinds["file"] >= 1, kinds


def fer_folder(folder: Path, n: int) -> Path:
    """``n`` 48x48 noise images in FER+'s layout (no face on any)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(5)
    for i in range(n):
        cv2.imwrite(str(folder / f"fer{i:07d}.png"), rng.integers(0, 256, (48, 48), dtype=np.uint8))
    return folder


def test_fer_yaw_counts_the_images_it_read(tmp_path):
    """"images" said --limit (2500 by default) however few the split held."""
    import fer_yaw

    rows, images = fer_yaw.measure(fer_folder(tmp_path / "FER2013Train", 3), 0, 2500)
    assert images == 3 and rows == []
    assert all(a[1] == b[0] for a, b in zip(fer_yaw.BANDS, fer_yaw.BANDS[1:]))  # no yaw left out of the sheet


def test_fer_framing_says_when_no_face_was_measured(tmp_path):
    """No face measured (--limit 0, a folder without faces) was an IndexError traceback."""
    import fer_framing

    folder = fer_folder(tmp_path / "FER2013Train", 2)
    for limit in (0, 2):
        with pytest.raises(SystemExit, match=r"no frontal face measured in \d images .*--limit above 0"):
            fer_framing.measure(folder, limit)
