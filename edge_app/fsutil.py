"""Crash-safe file replacement, the one way this device writes a file that must never be
seen half-written (models and manifests, kept images, database backups).

A temp file beside the target is written and fsynced, renamed over the target (the
single commit point: readers see the old file or the new one, never a mix), and the
directory is fsynced so the rename survives a power cut. On any error the temp file is
removed and the old file is untouched.

Also who a file belongs to, for messages that tell a person refused access which user to
run a command as (a device's data belongs to the service's user, ``engage``).
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import re
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

log = logging.getLogger(__name__)


def fsync_dir(path: Path | str) -> None:
    """Make a directory's entries (a rename, a new or removed file) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: Path | str, mode: int = 0o644, suffix: str = ".tmp", held: bool = False) -> Iterator[Path]:
    """Yield an empty temp file's path beside ``path``; fill it in the ``with`` block (any
    writer: open(), SQLite, a library's save()). On a clean exit it replaces ``path``; on an
    exception it is deleted and ``path`` keeps its old content. ``suffix`` is the temp
    name's ending, for writers that insist on one (Keras wants ``.keras``). With ``held``
    the temp file is locked (flock) until it is renamed or deleted, so that
    ``remove_stale_temps`` tells one being written from one a writer killed outright left."""
    path = Path(path)
    fd, name = _held_temp(path, suffix) if held else tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix,
                                                                     dir=path.parent)
    tmp = Path(name)
    try:
        if not held:
            os.close(fd)
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        _chmod(tmp, mode, path)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    finally:
        if held:
            os.close(fd)  # after the writer's own descriptors: closing drops this process's fcntl locks on it
    fsync_dir(path.parent)


def _held_temp(path: Path, suffix: str) -> tuple[int, str]:
    """``atomic_path``'s temp file, created and locked: a sweep that found it in the moment
    between the two may have removed it, so it is made again until the one locked is there."""
    while True:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)  # waits only while such a sweep holds it
            except OSError:
                return fd, name  # no flock here (some network file systems): a sweep cannot lock it either, so keeps it
            try:
                if os.path.samestat(os.fstat(fd), os.stat(name)):
                    return fd, name
            except FileNotFoundError:
                pass
        except BaseException:  # Ctrl-C or a hang-up here, before atomic_path's own clean-up: the file goes too
            with contextlib.suppress(OSError):
                os.unlink(name)
            os.close(fd)
            raise
        os.close(fd)


SIDE_FILES = ("-journal", "-wal", "-shm")  # SQLite's, beside a database written into a temp file


def remove_stale_temps(path: Path | str, suffix: str = ".tmp") -> list[Path]:
    """Remove the temp files (``atomic_path(held=True)``, named for ``path`` and ``suffix``)
    that writers killed outright (kill -9, a power cut) left beside ``path``, with SQLite's
    files beside them; returns what went. A backup's is a whole copy of the database,
    students' records and password hashes, hidden, and kept for ever. One still being
    written is locked by its writer and kept, whatever its age: a long backup's integrity
    check writes nothing for minutes, so an age would not tell."""
    path = Path(path)
    folder = path.parent
    temp = re.compile(rf"\.{re.escape(path.name)}\.[a-z0-9_]{{8}}{re.escape(suffix)}")  # mkstemp's 8 characters
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    removed = []
    for name in names:
        main = next((name[:-len(end)] for end in SIDE_FILES if name.endswith(end)), name)
        if not temp.fullmatch(main):
            continue
        if main != name:  # a side file without its temp file: a writer that ended before removing it
            if not os.path.lexists(folder / main) and _unlinked(folder / name):
                removed.append(folder / name)
            continue
        try:
            fd = os.open(folder / name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            continue  # gone meanwhile, or not a file a writer here made
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held by a writer still at work: kept
            if not os.path.samestat(os.fstat(fd), os.lstat(folder / name)):
                continue
            removed += [folder / (name + end) for end in SIDE_FILES if _unlinked(folder / (name + end))]
            if _unlinked(folder / name):
                removed.append(folder / name)
        except OSError:
            continue
        finally:
            os.close(fd)
    if removed:
        log.info("removed %s, left by a write to %s killed before its end", ", ".join(p.name for p in removed), path)
    return removed


def _unlinked(path: Path) -> bool:
    try:
        path.unlink()
    except OSError:
        return False
    return True


def _chmod(tmp: Path, mode: int, path: Path) -> None:
    """Give the temp file its mode, where the file system keeps one. FAT and exFAT (a USB
    stick) keep no Unix permissions: vfat refuses a chmod that takes read bits away with
    EPERM (unless mounted with "quiet"), others say ENOTSUP, and a backup or export onto the
    stick failed. There the file gets the mount's mode, readable by whoever reads the stick."""
    try:
        os.chmod(tmp, mode)
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP):
            raise
        log.warning("%s: its file system keeps no Unix permissions (%s; a FAT USB stick?), so it cannot be made "
                    "mode %o: whoever can read the file system can read it", path, exc.strerror, mode)


def atomic_write(path: Path | str, data: bytes | str, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` (str is written as UTF-8) all at once or not at all."""
    with atomic_path(path, mode) as tmp:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)


def free_mb(where: Path | str | int) -> float | None:
    """Free megabytes on the file system holding ``where`` (a path, or an open file
    descriptor of a plain file), or None when that cannot be said (a device or a pipe
    has no room of its own to report): for the "the disk is full (N MB free)" messages."""
    try:
        if isinstance(where, int) and not stat.S_ISREG(os.fstat(where).st_mode):
            return None
        fs = os.statvfs(where)
    except OSError:
        return None
    return fs.f_bavail * fs.f_frsize / 1e6


def user_name() -> str:
    """The user this process runs as (``sudo -u engage`` makes it ``engage``)."""
    import pwd

    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def owner_name(path: Path | str) -> str:
    """The owner of ``path``, or of its nearest folder this user can see."""
    import pwd

    path = Path(path).absolute()
    for candidate in (path, *path.parents):
        try:
            uid = candidate.stat().st_uid
        except OSError:
            continue
        try:
            return pwd.getpwuid(uid).pw_name
        except KeyError:
            return str(uid)
    return "?"


SERVICE_WRITABLE = "/var/lib/engage-edge"  # systemd/engage-edge.service: ReadWritePaths=
HIDDEN_FROM_SERVICE = ("/home", "/root", "/run/user")  # ProtectHome=yes


def hidden_from_service(path: Path | str) -> bool:
    """Whether the service's unit hides ``path`` from it (``HIDDEN_FROM_SERVICE``)."""
    path = Path(path).absolute()
    return any(path == Path(h) or Path(h) in path.parents for h in HIDDEN_FROM_SERVICE)


def sandbox_hint(path: Path | str, exc: OSError) -> str:
    """What to change when the service, run by systemd (``INVOCATION_ID`` set), is refused a
    folder: its unit makes everything but /var/lib/engage-edge read-only and hides /home,
    so a data_dir elsewhere failed with "Read-only file system" while the self-test, run
    outside the sandbox, passed. A sentence to end a message with (" ..."), or "" outside
    systemd and for other errors."""
    if not os.environ.get("INVOCATION_ID") or exc.errno not in (errno.EROFS, errno.EACCES):
        return ""
    path = Path(path).absolute()
    where = f" Run by systemd, the service may write only in {SERVICE_WRITABLE} (its sandbox)"
    if hidden_from_service(path):
        return f"{where}, and /home, /root and /run/user are hidden from it: choose a folder outside them."
    return (f"{where}: to use {path}, add `ReadWritePaths={path}` under [Service] with `sudo systemctl edit "
            f"engage-edge` and restart it (firmware/README.md, \"The service's sandbox\").")


class Mount(NamedTuple):
    """One line of /proc/self/mountinfo: where it is mounted, its type, and its per-mount
    and per-file-system options (an overlay's ``upperdir=`` is among the latter)."""

    point: str
    kind: str
    options: tuple[str, ...]


def mount_of(folder: Path | str) -> Mount | None:
    """The mount ``folder`` lies on (the deepest mount point above it, links resolved), or
    None when /proc/self/mountinfo cannot be read (not Linux, a sandbox without /proc)."""
    where = os.path.realpath(folder)
    found: Mount | None = None
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                fields, _, rest = line.partition(" - ")
                parts, tail = fields.split(), rest.split()
                if len(parts) < 6 or len(tail) < 2:
                    continue
                point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), parts[4])  # \040: a blank
                inside = where == point or where.startswith(point.rstrip("/") + "/")
                if inside and (found is None or len(point) >= len(found.point)):
                    options = tuple(parts[5].split(",")) + (tuple(tail[2].split(",")) if len(tail) > 2 else ())
                    found = Mount(point, tail[0], options)
    except OSError:
        return None
    return found


IN_MEMORY_KINDS = ("tmpfs", "ramfs")


def lost_at_reboot(folder: Path | str, cmdline: Path | str = "/proc/cmdline") -> str | None:
    """Why what is written under ``folder`` is gone at the next reboot, or None: it lies on
    a file system held in memory, or on an overlay whose writes go to one (Raspberry Pi OS's
    "Overlay File System", which a school may switch on to spare its SD cards: the device
    then ran, recorded and took passwords all day and started each morning with none). That
    overlay is told by its upper layer's mount, or by ``overlayroot=tmpfs`` on the kernel's
    command line (``cmdline``), which is how raspi-config switches it on."""
    mount = mount_of(folder)
    if mount is None:
        return None
    if mount.kind in IN_MEMORY_KINDS:
        return f"{mount.point} is a {mount.kind}, held in memory"
    if mount.kind == "overlay":
        upper = next((o.partition("=")[2] for o in mount.options if o.startswith("upperdir=")), "")
        below = mount_of(upper) if upper else None
        try:
            booted = "overlayroot=tmpfs" in Path(cmdline).read_text(errors="replace").split()
        except OSError:
            booted = False
        if booted or below is not None and below.kind in IN_MEMORY_KINDS:
            held = f"{below.kind} at {below.point}; " if below is not None and below.kind in IN_MEMORY_KINDS else ""
            return (f"{mount.point} is an overlay whose changes are held in memory ({held}"
                    "Raspberry Pi OS's Overlay File System does this)")
    return None
