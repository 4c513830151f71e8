"""The one atomic file-write helper: a failure at any point before the rename leaves the
old file byte for byte, and no temp file is left behind."""
from __future__ import annotations

import ctypes.util
import errno
import os
import subprocess
import sys
from pathlib import Path

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


# In a child: the kernel refuses every chmod with ``errno`` (a seccomp filter, loaded with
# libseccomp as tests/test_systemd.py does), as vfat refuses one that takes read bits away
# (EPERM); then a backup-style write of a private file.
CHMOD_REFUSED = r"""
import ctypes, ctypes.util, os, sys
lib = ctypes.CDLL(ctypes.util.find_library("seccomp"))
lib.seccomp_init.restype = ctypes.c_void_p
lib.seccomp_init.argtypes = [ctypes.c_uint32]
lib.seccomp_rule_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint]
lib.seccomp_load.argtypes = [ctypes.c_void_p]
ctx = lib.seccomp_init(0x7FFF0000)
for name in ("chmod", "fchmod", "fchmodat", "fchmodat2"):
    nr = lib.seccomp_syscall_resolve_name(name.encode())
    if nr >= 0:
        lib.seccomp_rule_add(ctx, 0x00050000 | int(sys.argv[2]), nr, 0)
assert lib.seccomp_load(ctx) == 0, "seccomp_load failed"
from edge_app.fsutil import atomic_write
atomic_write(sys.argv[1], b"the backup", 0o600)
"""


@pytest.mark.parametrize("refusal, written", [(errno.EPERM, True), (errno.ENOTSUP, True), (errno.EIO, False)],
                         ids=["EPERM", "ENOTSUP", "EIO"])
def test_a_file_system_without_unix_permissions_still_gets_the_file(tmp_path, refusal, written):
    """A backup or export onto a FAT USB stick failed: vfat refuses the chmod to 0600 with
    EPERM (unless mounted with "quiet"). A refused chmod of the new file is now said and
    passed over; any other error still keeps the old file. No vfat can be mounted in a
    container, so the kernel is made to refuse chmod itself, as vfat would."""
    assert ctypes.util.find_library("seccomp"), "libseccomp is missing: apt-get install libseccomp2"
    target = tmp_path / "backup.db"
    target.write_bytes(b"yesterday")
    result = subprocess.run([sys.executable, "-c", CHMOD_REFUSED, str(target), str(refusal)], capture_output=True,
                            text=True, timeout=60, cwd=Path(__file__).resolve().parent.parent)
    if written:
        assert result.returncode == 0, result.stderr[-2000:]
        assert target.read_bytes() == b"the backup"
        assert "keeps no Unix permissions" in result.stderr and "whoever can read" in result.stderr
    else:
        assert result.returncode != 0 and "Input/output error" in result.stderr, result.stderr[-2000:]
        assert target.read_bytes() == b"yesterday"
    assert [p.name for p in tmp_path.iterdir()] == ["backup.db"]


def test_ctrl_c_while_a_held_temp_file_is_being_locked_leaves_no_file(tmp_path, monkeypatch):
    """The export's temp file appears, then is locked: Ctrl-C (or a hang-up) in between came
    before atomic_path's own clean-up, and left half an export hidden beside its destination
    (CI's two cores hit it: the test stops the export as soon as its file appears)."""
    from edge_app import fsutil

    def interrupted(fd, op):
        raise KeyboardInterrupt

    monkeypatch.setattr(fsutil.fcntl, "flock", interrupted)
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(tmp_path / "log.csv", held=True):
            pass
    assert list(tmp_path.iterdir()) == []


def test_a_data_folder_held_in_memory_is_said_to_be_lost_at_a_reboot(tmp_path):
    """A school switched on Raspberry Pi OS's Overlay File System to spare its SD cards: the
    device ran, recorded and took passwords all day, and started each morning with none. A
    folder on a tmpfs, or under an overlay whose changes go to one, is told apart."""
    from edge_app.fsutil import lost_at_reboot, mount_of
    from tests.conftest import mounted_tmpfs

    assert lost_at_reboot(Path(__file__).parent) is None  # the checkout, on a disk
    with mounted_tmpfs(tmp_path / "ram", "1m") as ram:
        assert lost_at_reboot(ram / "not-made-yet") == f"{ram} is a tmpfs, held in memory"
        # the overlay as Pi OS mounts /: the SD card's files below, every change in a tmpfs
        for folder in (ram / "upper", ram / "work", tmp_path / "card", tmp_path / "root"):
            folder.mkdir()
        mounted = subprocess.run(["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={tmp_path / 'card'},"
                                  f"upperdir={ram / 'upper'},workdir={ram / 'work'}", str(tmp_path / "root")],
                                 capture_output=True, text=True)
        assert mounted.returncode == 0, mounted.stderr
        try:
            why = lost_at_reboot(tmp_path / "root" / "var" / "lib" / "engage-edge")
            assert why is not None and why.startswith(f"{tmp_path / 'root'} is an overlay whose changes are held in memory")
        finally:
            subprocess.run(["umount", "-l", str(tmp_path / "root")], check=False)
    kind = mount_of(tmp_path)
    if kind is not None and kind.kind not in ("tmpfs", "ramfs"):  # a laptop whose /tmp is a tmpfs has no disk here
        for folder in ("upper", "work", "card", "root"):
            (tmp_path / "disk" / folder).mkdir(parents=True)
        disk = tmp_path / "disk"
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={disk / 'card'},upperdir={disk / 'upper'},"
                        f"workdir={disk / 'work'}", str(disk / "root")], check=True)
        try:
            assert lost_at_reboot(disk / "root") is None  # an overlay kept on a disk (a container's root) is kept
            # booted by raspi-config's switch (its upper layer's mount may not be in sight): the kernel's command line
            cmdline = tmp_path / "cmdline"
            cmdline.write_text("console=tty1 root=PARTUUID=1-02 overlayroot=tmpfs rootwait\n")
            why = lost_at_reboot(disk / "root", cmdline)
            assert why == f"{disk / 'root'} is an overlay whose changes are held in memory (Raspberry Pi OS's Overlay File System does this)"
            cmdline.write_text("console=tty1 root=PARTUUID=1-02 rootwait\n")
            assert lost_at_reboot(disk / "root", cmdline) is None
        finally:
            subprocess.run(["umount", "-l", str(disk / "root")], check=False)
