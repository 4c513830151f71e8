"""What a backup and an export share: the errors they raise, the device's database opened to be
read (even off a card the kernel remounted read-only), where a copy may be written (a folder named
as one, a link followed as cp follows it, and never a link another user laid in /tmp), and what a
failed read or write says (a full disk, a damaged database).
"""
from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import stat
from pathlib import Path

from edge_app.fsutil import free_mb, mount_of, user_name
from edge_app.store.database import BUSY_TIMEOUT_MS, SQLITE_IOERR

log = logging.getLogger(__name__)


class BackupError(RuntimeError):
    """The backup or export cannot be done as asked (no database there, a bad date, a
    destination that cannot be written); the message says why (the source is untouched)."""


class CopyFailed(BackupError):
    """The copy itself failed (an I/O error, a copy that fails its integrity check)."""


def folder_named(dest: Path | str) -> Path:
    """``dest`` as a path; one written as a folder (a trailing slash) must be one: Path
    drops the slash, and ``backup /media/usb/backups/`` before that folder existed wrote a
    file named ``backups``."""
    if not str(dest).strip():  # Path("") is ".": `backup ""` wrote a dated file into the current directory
        raise BackupError("no destination given (an empty name): give a file or a folder, e.g. /media/usb/backup.db "
                          "or /media/usb/")
    path = Path(dest).expanduser()
    if str(dest).endswith(("/", os.sep)) and not os.path.isdir(path):
        raise BackupError(f"there is no folder {path}: create it (mkdir -p {path}) or give a file name")
    return path


MAX_LINKS = 40  # the kernel's own limit on links followed in one path (ELOOP)


def through_link(dest: Path) -> Path:
    """Where writing ``dest`` lands: a symbolic link's target, as cp writes through a link.
    The temp file goes beside the target and is renamed over it; beside the link, the rename
    put a plain file in the link's place and left the file it points to as it was.

    The links are read here, one at a time, so the kernel never follows them, and its
    fs.protected_symlinks (which keeps ``sudo cp x /tmp/evil`` off /etc/shadow) would not
    apply: each hop is held to the same rule (``_may_follow``), whether the sysctl is on or not."""
    path = dest
    for _ in range(MAX_LINKS):
        if not os.path.islink(path):
            return path
        _may_follow(path, dest)
        path = Path(os.path.dirname(path), os.readlink(path))  # a relative target is from the link's folder
    raise BackupError(f"{dest} is a link to a link to ... ({MAX_LINKS} or more: links in a loop?): nothing is "
                      f"written through it; check it with `ls -l {dest}` or give another name")


def _may_follow(link: Path, dest: Path) -> None:
    """The kernel's rule for fs.protected_symlinks: a link in a sticky folder every user may
    write (/tmp) is followed only by its owner or when the folder's owner made it. Another
    user's link there may point at any file (/etc/shadow) that root, running the command
    with sudo, would replace."""
    folder = os.stat(os.path.dirname(link) or ".")
    owner = os.lstat(link).st_uid
    shared = folder.st_mode & stat.S_ISVTX and folder.st_mode & stat.S_IWOTH
    if shared and owner not in (os.geteuid(), folder.st_uid):
        import pwd

        with contextlib.suppress(KeyError):
            owner = pwd.getpwuid(owner).pw_name  # type: ignore[assignment]
        hop = f"{dest} leads to {link}, " if link != dest else f"{link} is "
        raise BackupError(f"{hop}a link that belongs to another user ({owner}) in a folder every user "
                          f"may write ({os.path.dirname(link)}): it may point at a file not meant for this (as "
                          "the kernel, nothing here follows such a link); give a name in a folder of your own")


# the kernel's own file systems: a name there is no file on a disk (`export --out /proc/version`
# said "No such file or directory", exit 1, as if the write had failed; `backup /dev/engage.db`, run
# as root, wrote the backup into memory (devtmpfs), gone at the next reboot)
KERNEL_FILE_SYSTEMS = {"proc", "sysfs", "devtmpfs", "cgroup", "cgroup2", "debugfs", "tracefs", "securityfs",
                       "configfs", "efivarfs", "pstore", "bpf", "fusectl"}


def kernel_file_system(folder: Path) -> str | None:
    """The type of the kernel file system ``folder`` lies on (``KERNEL_FILE_SYSTEMS``: /proc,
    /sys, /dev), else None; None too when /proc/self/mountinfo cannot be read."""
    mount = mount_of(folder)
    return mount.kind if mount is not None and mount.kind in KERNEL_FILE_SYSTEMS else None


SQLITE_HEADER = b"SQLite format 3\x00"


def is_database_file(path: Path) -> bool:
    """An SQLite database by its first 16 bytes (an earlier backup, or the live one)."""
    with open(path, "rb") as f:
        return f.read(len(SQLITE_HEADER)) == SQLITE_HEADER


def why_write_failed(exc: BaseException, where: Path | int, needed_mb: float | None = None) -> str:
    """Why a write failed; a full disk says how much is free there and what to do.
    ``where``: the file system's folder, or the file descriptor written to; ``needed_mb``:
    about what the write needs there (a backup: the database), said beside what is free."""
    import errno

    mb = free_mb(where)
    full = getattr(exc, "errno", None) == errno.ENOSPC or "disk is full" in str(exc)
    # SQLite says "disk I/O error" when the room runs out part-way through a copy (a little
    # more free than the database, not enough for the copy and its journal)
    ran_out = (isinstance(exc, sqlite3.Error) and (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF == SQLITE_IOERR
               and needed_mb is not None and mb is not None and mb < needed_mb)
    if not (full or ran_out):
        return str(getattr(exc, "strerror", None) or exc)
    need = f"it needs about {needed_mb:.1f} MB, " if needed_mb is not None else ""
    free = f" ({need}{mb:.1f} MB free there)" if mb is not None else ""
    return f"the disk is full{free}: free some space or write to another disk"


def damaged_database(db: Path, exc: sqlite3.Error) -> str | None:
    """What to say when ``exc`` says the device's database itself is damaged (SQLITE_CORRUPT,
    SQLITE_NOTADB), else None: 'backup to b.db failed: file is not a database' read as if
    the destination were at fault."""
    if (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF not in (11, 26):
        return None
    return (f"the device's database {db} is damaged ({exc}): restore the latest good backup, moving the damaged "
            "files aside first as the steps say (firmware/README.md, 'Restoring a backup')")


def open_database(db: Path) -> sqlite3.Connection:
    if not db.is_file():
        raise BackupError(f"no database at {db}: check --data-dir or store.data_dir")
    why = _unwritable(db)
    if why:
        return _open_read_only(db, why)
    conn = sqlite3.connect(db, timeout=BUSY_TIMEOUT_MS / 1000)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    return conn


def _unwritable(db: Path) -> str:
    """Why nothing may be written beside ``db`` ("" when it may): a dying SD card the kernel
    remounted read-only, or a folder or file this user may not write. SQLite's usual open
    then failed ("unable to open database file": it makes a -wal and a -shm first), the
    records unreadable just when they must be rescued."""
    folder = db.absolute().parent
    if os.access(folder, os.W_OK | os.X_OK) and os.access(db, os.W_OK):
        return ""
    with contextlib.suppress(OSError):
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return (f"the file system holding {folder} is mounted read-only (the kernel does that to a failing SD "
                    "card: `dmesg` says why)")
    return f"{user_name()!r}, who runs this command, may not write {db if os.access(folder, os.W_OK) else folder}"


def _open_read_only(db: Path, why: str) -> sqlite3.Connection:
    """``db`` read where nothing may be written, writing nothing. With a -wal or -shm there
    (the service stopped by the remount or a crash), read-only (mode=ro): SQLite then builds
    the WAL's index in memory from a -shm it may not write, so the -wal's newest records come
    along. Without a -wal, or an empty one, engage.db is the whole database, read as it is
    (immutable: no -shm needed). A -wal with records that cannot be read in place (no -shm
    beside it) is never left out silently: the BackupError says to copy the files off."""
    db = db.absolute()
    wal, shm = (db.with_name(db.name + end) for end in ("-wal", "-shm"))
    uri = db.as_uri()
    if wal.exists() or shm.exists():
        conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_MS / 1000)
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # the open is lazy: the files are read here
            log.warning("%s: reading %s read-only, writing nothing there", why, db)
            return conn
        except sqlite3.Error:
            conn.close()
    try:
        has_records = wal.stat().st_size > 0
    except FileNotFoundError:
        has_records = False
    if has_records:
        present = " ".join(str(p) for p in (db, wal, shm) if p.exists())
        raise BackupError(f"{why}, and the newest records are in {wal}, which SQLite cannot read there without "
                          "writing beside it: copy the database's files off together, as they are, to another disk "
                          f"(sudo mkdir -p /media/usb/rescue && sudo cp -a {present} /media/usb/rescue/), then run this "
                          "command again on that copy, with sudo and --data-dir /media/usb/rescue; nothing was written")
    log.warning("%s: reading %s as it is (it has no -wal), writing nothing there", why, db)
    return sqlite3.connect(f"{uri}?immutable=1", uri=True)
