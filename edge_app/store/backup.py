"""Backups and CSV export of the device's database, safe while the service runs.

``backup`` uses SQLite's online backup API: the copy is one consistent snapshot even while
the capture loop and the web UI keep writing (WAL readers never block writers). It is
written beside the destination, checked with ``PRAGMA integrity_check``, fsynced and
renamed into place, so a half-written backup never looks like a good one.
"""
from __future__ import annotations

import contextlib
import csv
import datetime as dt
import fcntl
import io
import itertools
import json
import logging
import math
import os
import re
import sqlite3
import stat
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from edge_app.engagement import NO_FACE, UNCERTAIN, group_of
from edge_app.fsutil import atomic_path, fsync_dir, remove_stale_temps, user_name
from edge_app.store.copying import (
    SQLITE_HEADER,
    BackupError,
    CopyFailed,
    damaged_database,
    folder_named,
    is_database_file,
    open_database,
    through_link,
    why_write_failed,
)
from edge_app.store.database import DB_NAME, RESTORED_KEY, newer_schema
from edge_app.store.schema import GROUP_COLUMNS

log = logging.getLogger(__name__)

# One CSV format for `engage-edge export` and the web log's "Download CSV": the same
# columns, kinds ("state" a live state change, "minute", "alert", "upload" one face) and
# times (local ISO 8601 with the UTC offset), so one spreadsheet reads both.
EXPORT_COLUMNS = ["kind", "time", "level", "group", "emotion", "confidence", "user", "file", "frames", "faces",
                  *GROUP_COLUMNS.values()]
# ``export --what audit``: what admins changed, for a records office (the web's Audit page, whole); and
# ``--what accounts``: who has an account now (no password hash, no session)
AUDIT_COLUMNS = ["time", "actor", "action", "target", "detail"]
ACCOUNT_COLUMNS = ["username", "role", "created", "last_login", "disabled", "must_change_password"]
EXPORTS = {"log": EXPORT_COLUMNS, "audit": AUDIT_COLUMNS, "accounts": ACCOUNT_COLUMNS}


# Where a spreadsheet may begin a cell inside one of our fields: the field's start, or after
# a "," (English locales' list separator), a ";" (German, French: Excel splits the BOM-marked
# file on it, and the csv module quotes no field for it) or a tab; blanks and quotes before
# the formula character do not stop Excel.
_CELL_START = re.compile(r"""(^|[,;\t\r\n])([ "]*)(?=[=+\-@\t\r])""")


def csv_safe(value):
    """Spreadsheet formula injection: no cell a text field can make starts with = + - @
    (a user name or a file name is chosen by a user): a photo named "a;=2+3;b.jpg" opened
    in a ";" locale made the cell "=2+3". Each such start gets a "'" (shown as text)."""
    if isinstance(value, str):
        return _CELL_START.sub(lambda m: m.group(1) + m.group(2) + "'", value)
    return value


def write_log_csv(target, rows, columns: list[str] = EXPORT_COLUMNS) -> int:
    """``rows`` (dicts keyed by ``EXPORT_COLUMNS``, missing keys empty) as CSV to ``target``,
    written as they come (``log_csv_chunks``: ten years' rows are never held whole); returns
    how many."""
    count = 0

    def counted():
        nonlocal count
        for row in rows:
            count += 1
            yield row

    for chunk in log_csv_chunks(counted(), columns=columns):
        target.write(chunk)
    return count


def log_csv_chunks(rows, rows_per_chunk: int = 500, columns: list[str] = EXPORT_COLUMNS) -> Iterator[str]:
    """``write_log_csv``'s text in pieces of ``rows_per_chunk`` rows, the header in the
    first: a web download streamed as it is read. The first piece comes after its rows are
    read, so a failing query is an error page, not a cut-off file."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns, restval="")
    writer.writeheader()
    for count, row in enumerate(rows, 1):
        writer.writerow({k: csv_safe(v) for k, v in row.items()})
        if count % rows_per_chunk == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue()


def group_label(level: str) -> str:
    """The group column: the level's LED group, or "Uncertain" for an unsure upload face
    ("No face" for a photo in which none was found)."""
    return level if level in (UNCERTAIN, NO_FACE) else group_of(level)


def log_row(kind: str, t: float, level: str, group: str, emotion: str | None, confidence: float | None,
            user: str | None = None, file: str | None = None) -> dict:
    """A state-change or upload-face row in the export format."""
    return {"kind": kind, "time": iso_time(t), "level": level, "group": group, "emotion": emotion or "",
            "confidence": "" if confidence is None or not emotion else round(confidence, 4),  # no face read: none
            "user": user or "", "file": file or ""}


def _check_destination(dest: Path, db: Path, *, replaces: str, header: list[str] = EXPORT_COLUMNS) -> Path:
    """The folder ``dest`` goes in exists and this user may write there, or a BackupError
    says what to do (``sudo -u engage`` cannot write in the technician's own home).

    Nothing is replaced that must not be: the live database or its -wal and -shm files (the
    newest records are in the WAL), a device or a pipe (run as root, the rename put a plain
    file in the place of /dev/null or /dev/stdout), and what ``replaces`` refuses: a backup
    replaces only an earlier backup (a database) or an empty file, an export only an earlier
    export of the same kind (``_is_export``: ``header``, its columns) or an empty file (``--out
    cfg.toml`` for ``--out log.csv`` replaced the config with a CSV).

    A symbolic link is checked where it points, as it is written there (``through_link``);
    a link to nothing is refused, as cp refuses it (an old link, to a place no longer meant).
    Returns that place: the write goes where the checks looked, not where the link points
    by then."""
    link = os.path.islink(dest)
    target = through_link(dest)
    if link and not os.path.exists(target):
        raise BackupError(f"{dest} is a link to a file that does not exist ({target}): nothing is written through "
                          f"it; create that file first (touch {target}) or give another name")
    named = f"{dest} (a link to {target})" if link else f"{dest}"
    folder = target.absolute().parent
    try:
        is_folder = stat.S_ISDIR(os.stat(folder).st_mode)
    except PermissionError:
        is_folder = True  # there, behind a folder this user may not enter: said below
    except OSError:
        is_folder = False
    if not is_folder:
        raise BackupError(f"cannot write {dest}: there is no folder {folder}: create it or choose another")
    live = {os.path.realpath(db.with_name(db.name + end)) for end in ("", "-wal", "-shm", "-journal")}
    if os.path.realpath(target) in live:
        raise BackupError(f"{dest} is {'a link to ' if link else ''}the live database's own file: writing there "
                          "would lose the device's records; choose a name of its own (e.g. backup.db)")
    if not os.access(folder, os.W_OK | os.X_OK):
        with contextlib.suppress(OSError):  # a USB stick mounted read-only: no user may write there, root neither
            if os.statvfs(folder).f_flag & os.ST_RDONLY:
                raise BackupError(f"cannot write {dest}: the file system holding {folder} is mounted read-only: "
                                  "choose another place, or mount it read-write (a stick's write-protect switch, or "
                                  "errors on it: check it with fsck)")
        raise BackupError(f"cannot write {dest}: {user_name()!r}, who runs this command, may not write in {folder}: "
                          "choose a folder that user may write (e.g. /tmp, or the data directory) and copy the "
                          "file on from there")
    try:
        st = os.stat(target)
    except OSError:
        return target  # a new file (or one this user may not see: writing it says so)
    if stat.S_ISDIR(st.st_mode):
        raise BackupError(f"cannot write {named}: it is a folder: name a file in it (e.g. {dest / 'log.csv'})")
    if not stat.S_ISREG(st.st_mode):
        raise BackupError(f"cannot write {named}: it is not a plain file (a device or a pipe), and it would be replaced "
                          "by one: give a file name" + (", or leave out --out to write the CSV to standard output"
                                                       if replaces == "export" else ""))
    try:
        is_database = is_database_file(target)
    except OSError as exc:
        raise BackupError(f"{named} exists and cannot be read ({exc.strerror}), so it cannot be checked before it is "
                          "replaced: choose another name") from None
    if replaces == "backup" and st.st_size and not is_database:
        raise BackupError(f"{named} exists and is not a database: a backup would replace it; choose another name, "
                          "or a folder for a dated file")
    if replaces == "export" and is_database:
        raise BackupError(f"{named} is a database (a backup?), not a CSV file: the export would replace it; "
                          "choose another name (e.g. log.csv)")
    if replaces == "export" and st.st_size and not _is_export(target, header):
        raise BackupError(f"{named} exists and is not an earlier export of this kind (its first line is not this "
                          f"export's header, {','.join(header[:3])},...): the export would replace it; choose another "
                          "name (e.g. log.csv), or move that file away first if it is no longer needed")
    return target


def _is_export(path: Path, header: list[str] = EXPORT_COLUMNS) -> bool:
    """An earlier export of the same kind (ours, or for the log the web's "Download CSV") by
    its first line, byte order mark or not: ``header``'s columns, or the first of them (at
    least two: an export an older release wrote had fewer after them). A school's roster
    "username,role,first name,..." is no accounts export, nor a log export an audit one."""
    with open(path, "rb") as f:
        first = f.read(1024).decode("utf-8-sig", errors="replace").splitlines()[:1]
    columns = first[0].split(",") if first else []
    return len(columns) >= 2 and columns == header[:len(columns)]


JOURNAL_ROOM = 1.1  # a copy, and its journal while the copy's stamp is written


def backup(data_dir: Path | str, dest: Path | str) -> Path:
    """Copy ``<data_dir>/engage.db`` to ``dest`` (a file, or a directory to put a dated file in)."""
    db = Path(data_dir).expanduser() / DB_NAME
    dest = folder_named(dest)
    if os.path.isdir(dest):  # never raises: a folder this user may not enter is said below
        # a link to the folder is held to the same rule as a link to a file (_may_follow)
        dest = through_link(dest) / f"engage-{time.strftime('%Y%m%d-%H%M%S')}.db"
    src = open_database(db)
    try:
        dest = _check_destination(dest, db, replaces="backup")
    except BackupError:
        src.close()
        raise
    remove_stale_temps(dest)  # a killed backup's hidden whole copy, kept for ever, filling the stick
    tmp = None
    try:  # 0600 as the database itself: every record and the password hashes, not for other users
        with atomic_path(dest, 0o600, held=True) as tmp, contextlib.closing(sqlite3.connect(tmp)) as out:
            # one step: a WAL read snapshot, so writers carry on and a write can't restart it
            src.backup(out)
            made_on = _installation(db.parent, create=False)
            with out:  # which desk it is from: a restore on another keeps none of that desk's identity
                out.execute("DELETE FROM settings WHERE key = ?", (MADE_ON_KEY,))  # a restored database's, if any
                if made_on:
                    out.execute("INSERT INTO settings(key, value) VALUES (?, ?)", (MADE_ON_KEY, json.dumps(made_on)))
            out.execute("PRAGMA journal_mode = DELETE")  # one self-contained file
            result = out.execute("PRAGMA integrity_check").fetchone()[0]
            if result != "ok":
                raise CopyFailed(f"the copy failed its integrity check: {result}")
    except (sqlite3.Error, OSError) as exc:
        for leftover in ([f"{tmp}-wal", f"{tmp}-shm", f"{tmp}-journal"] if tmp else []):
            # the copy is in WAL mode, the source's: a stick that filled up as its stamp was
            # written kept the copy's -wal and -shm beside no copy (atomic_path removes the copy)
            with contextlib.suppress(OSError):
                os.unlink(leftover)
        damaged = damaged_database(db, exc) if isinstance(exc, sqlite3.Error) else None
        if damaged:
            raise CopyFailed(f"cannot back up: {damaged}; nothing was written at {dest}") from None
        needed = sum(p.stat().st_size for p in (db, db.with_name(db.name + "-wal")) if p.exists()) / 1e6
        raise CopyFailed(f"backup to {dest} failed: {why_write_failed(exc, dest.absolute().parent, needed * JOURNAL_ROOM)}; "
                         "nothing was written there") from None
    finally:
        src.close()
    return dest


MADE_ON_KEY = "backup.made_on"  # in a backup: the installation it was made on (fleet.publisher.installation_id)
DEVICE_ID = "mqtt.device_id"
DESK = "mqtt.desk"


def _installation(data_dir: Path, create: bool) -> str | None:
    """This data directory's installation id, as the MQTT publisher records it; None when it
    has none yet and ``create`` is false (a desk that never published: no id to tell apart)."""
    from edge_app.fleet.publisher import INSTALLATION_FILE, installation_id

    if not create and not (data_dir / INSTALLATION_FILE).is_file():
        return None
    return installation_id(data_dir)


def _setting(conn: sqlite3.Connection, key: str):
    row = conn.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
    return json.loads(row[0]) if row else None


def hold_in_use(data: Path) -> int:
    """Mark the data directory in use by a running service (the classroom page) until the
    returned descriptor is closed, as the device's appliance holds ``images/``
    (``leftovers.hold_images``): a restore then refuses to swap the database under it, which
    went on writing to the moved-aside file. A shared advisory lock; a start during a
    restore waits for it."""
    fd = os.open(data, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextlib.contextmanager
def _service_stopped(data: Path):
    """Held while the database is swapped: a running service holds its data directory
    (``hold_in_use``, the classroom) or ``images/`` (``leftovers.hold_images``, a device)
    shared, so a running service refuses the restore, and one started meanwhile waits for it."""
    held: list[int] = []
    try:
        for folder in (data, data / "images"):
            if not folder.is_dir():
                continue
            held.append(os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
            try:
                fcntl.flock(held[-1], fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise BackupError(f"engage-edge is running on {data}: stop it first (sudo systemctl stop engage-edge, "
                                  "or engage-classroom), restore, then start it; nothing was changed") from None
        yield
    finally:
        for fd in held:
            os.close(fd)


def _device_id_to_keep(conn: sqlite3.Connection, here: str, keep: bool | None, file_mqtt: tuple[str, str],
                       overrides_key: str) -> list[str]:
    """Whether the backup's ``mqtt.device_id`` (saved on Admin > Classroom) stays: a backup of
    desk A restored on desk B (a desk cloned) kept A's topic name, and both published as desk
    A on the classroom page. It stays when the backup was made on this installation (or
    ``keep``); another desk's is dropped, so this desk is named as when it is unset (the config
    file's mqtt.device_id, else the broker user name or the host name: ``file_mqtt``, the
    file's device_id and username). Returns
    what to tell the technician; raises BackupError when the backup cannot say."""
    from edge_app.fleet.publisher import PUBLISHED_UNDER_KEY
    from edge_app.fleet.settings import default_device_id

    overrides = _setting(conn, overrides_key)
    if not isinstance(overrides, dict) or not overrides.get(DEVICE_ID):
        return []
    device_id = overrides[DEVICE_ID]
    origin = _setting(conn, MADE_ON_KEY)
    if origin is None:  # a backup from before the stamp: who recorded where it published, if it did
        published = _setting(conn, PUBLISHED_UNDER_KEY)
        origin = published.get("written_by") if isinstance(published, dict) else None
    if keep is None:
        if origin is None:
            raise BackupError(f"the backup sets {DEVICE_ID} = {device_id!r} (saved on Admin > Classroom) and does not "
                              "say which desk it was made on: if it is this desk's own (or of a desk this one replaces), "
                              "restore with --keep-device-id; if it is another desk's (a desk cloned), with "
                              "--drop-device-id, or two desks publish as one; nothing was changed")
        keep = origin == here
        why = "this desk's own backup" if keep else "made on another desk"
    else:
        why = "as --keep-device-id asks" if keep else "as --drop-device-id asks"
    if keep:
        return [f"kept {DEVICE_ID} = {device_id!r} ({why})"]
    del overrides[DEVICE_ID]
    with conn:
        conn.execute("UPDATE settings SET value = ? WHERE key = ?", (json.dumps(overrides), overrides_key))
    name = file_mqtt[0] or default_device_id(str(overrides.get("mqtt.username") or file_mqtt[1]))
    lines = [f"dropped {DEVICE_ID} = {device_id!r} ({why}), so two desks do not publish as one: this desk publishes "
             f"as {name!r}, as when it is unset; to name it otherwise, use Admin > Classroom"]
    if overrides.get("mqtt.username") and not file_mqtt[0]:
        lines.append(f"the broker user name {overrides['mqtt.username']!r} came with the backup (its password did "
                     "not): if it is the other desk's account, type this desk's own on Admin > Classroom")
    if overrides.get(DESK):
        lines.append(f"the desk label {overrides[DESK]!r} came with the backup: change it on Admin > Classroom if "
                     "it names the other desk")
    return lines


def settle_hand_restore(store, file_mqtt: tuple[str, str] = ("", "")) -> None:
    """At start: a backup copied into place by hand (not with ``engage-edge restore``) still
    carries its 'made on' stamp, and another desk's ``mqtt.device_id`` came along with it, so
    two desks published as one. What ``restore`` does is done here, by the same rule
    (``_device_id_to_keep``: made on this installation, kept; on another, dropped), logged,
    and the stamp goes, as a live database carries none."""
    from edge_app.web.admin_settings import SETTINGS_KEY

    conn = store.connect()
    made_on = _setting(conn, MADE_ON_KEY)
    if made_on is None:
        return
    here = _installation(store.data_dir, create=True) or ""
    told = _device_id_to_keep(conn, here, None, file_mqtt, SETTINGS_KEY)
    conn.execute("DELETE FROM settings WHERE key = ?", (MADE_ON_KEY,))
    log.warning("the database is a backup put in place by hand, not with `engage-edge restore` (made on %s)%s",
                "this desk" if made_on == here else "another desk", "".join(f"; {line}" for line in told))


def _swap(data: Path, tmp: Path, aside: list[tuple[Path, Path]], name: str) -> None:
    """Move the live files aside and ``tmp`` into place, all or nothing: a failure part-way
    (an I/O error, a file that cannot be moved, a signal) left engage.db moved aside and
    nothing in its place, while the message said the database in use was as it was. Every
    file moved is put back, in reverse; if even that fails, the CopyFailed says where each
    file is and how to put it back (the service must not start on a half-restored folder)."""
    db = data / DB_NAME
    moved: list[tuple[Path, Path]] = []
    placed = False
    step = ""
    try:
        for path, old in aside:
            step = f"moving {path} aside"
            os.replace(path, old)
            moved.append((path, old))
        step = f"moving the backup to {db}"
        os.replace(tmp, db)
        placed = True
        step = f"writing {data}"
        fsync_dir(data)
    except BaseException as exc:
        why = f"{step}: " + (why_write_failed(exc, data) if isinstance(exc, OSError) else f"stopped ({type(exc).__name__})")
        extra = placed and db not in [path for path, _ in moved]  # there was no database: none is left
        try:
            if extra:
                db.unlink()
                extra = False
            while moved:
                path, old = moved[-1]
                os.replace(old, path)
                moved.pop()
        except OSError as again:
            undo = "; ".join([f"rm {db}"] * extra + [f"mv -f {old} {path}" for path, old in reversed(moved)])
            raise CopyFailed(f"restoring {name} failed: {why}; putting the database as it was back failed too "
                             f"({why_write_failed(again, data)}): {data} is half restored. Do not start the service; put the "
                             f"database back by hand ({undo}), then restore again") from None
        with contextlib.suppress(OSError):
            fsync_dir(data)
        if not isinstance(exc, OSError):
            raise  # Ctrl-C, a hang-up: the command ends as it would have, the database in use as it was
        raise CopyFailed(f"restoring {name} failed: {why}; every file moved aside was put back, so nothing was "
                         f"changed: the database in use is as it was. Check {data} (ls -la) and restore "
                         "again") from None


RESTORE_SUFFIX = ".restore"


def remove_restore_leftovers(data: Path) -> list[Path]:
    """What a restore killed outright left in the data directory (``.engage.db.*.restore``:
    a whole database). Call only while no restore can run: under ``_service_stopped``, or at a
    service's start once it holds its data directory (a restore then refuses, or waits)."""
    return remove_stale_temps(data / DB_NAME, RESTORE_SUFFIX)


def _table_exists(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone() is not None


@contextlib.contextmanager
def _database_in_use(current: Path):
    """The database a restore replaces, opened once and read-only (what was deleted since the
    backup, which pictures are its own); None when it is missing or cannot be opened."""
    if not current.is_file():
        yield None
        return
    try:
        conn = sqlite3.connect(f"{current.absolute().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        log.warning("restore: %s could not be opened (%s)", current, exc)
        yield None
        return
    try:
        yield conn
    finally:
        conn.close()


def _erased_since(now: sqlite3.Connection | None,
                  restored: sqlite3.Connection) -> tuple[list[tuple[int, str]], list[int], list] | None:
    """The accounts and uploads in the backup ``restored`` that the database in use
    (``now``: ``_database_in_use``) no longer has because they were deleted (or purged) since the backup: an
    erasure request that a restore must not undo. Accounts by the audit's "deleted user" rows
    after the account was made (the row names it, and the same id and creation time shows it
    is the same account, not a new one of that name); uploads by number, those at or below the
    highest number the database in use has given that it no longer holds (numbers are never
    reused); and the audit rows written since the backup's newest. None when the database in use is missing or unreadable, or is not this backup's own
    database carried on (no account of the backup in it, as on a new card): then nothing is
    known of what was deleted since."""
    if now is None:
        return None
    try:
        ours = {(r[0], r[1]) for r in now.execute("SELECT id, created FROM users")}
        theirs = restored.execute("SELECT id, username, created FROM users").fetchall()
        if not any((uid, created) in ours for uid, _, created in theirs):
            return None
        deleted_names = ({(r[0].casefold(), r[1]) for r in now.execute(
            "SELECT target, t FROM audit WHERE action = 'deleted user'")} if _table_exists(now, "audit") else set())
        accounts = [(uid, name) for uid, name, created in theirs if (uid, created) not in ours
                    and any(n == name.casefold() and t >= created for n, t in deleted_names)]
        kept = {r[0] for r in now.execute("SELECT id FROM uploads")}
        top = now.execute("SELECT seq FROM sqlite_sequence WHERE name = 'uploads'").fetchone() \
            if _table_exists(now, "sqlite_sequence") else None
        highest = max([top[0] if top else 0, *kept], default=0)
        uploads = [r[0] for r in restored.execute("SELECT id FROM uploads WHERE id <= ? ORDER BY id", (highest,))
                   if r[0] not in kept]
        audit: list = []
        if _table_exists(now, "audit") and _table_exists(restored, "audit"):
            newest = restored.execute("SELECT max(t) FROM audit").fetchone()[0] or 0.0
            audit = now.execute("SELECT t, actor, action, target, detail FROM audit WHERE t > ? ORDER BY t",
                                (newest,)).fetchall()
        return accounts, uploads, audit
    except sqlite3.Error as exc:
        log.warning("restore: the database in use could not be read to see what was deleted since the backup (%s)", exc)
        return None


def _carry_erasures(erased, restored: sqlite3.Connection, bring_back: bool) -> list[str]:
    """Delete again in ``restored`` what was deleted since the backup (``_erased_since``):
    a student's erasure request, or photos past retention, must not come back with a
    restore. ``bring_back`` keeps them (a restore made to undo a mistaken deletion). The
    audit rows written since the backup come along either way, so the record of what admins
    did, the deletions above all, is not lost. ``erased``: ``_erased_since``'s answer. Returns
    what to tell the technician."""
    if erased is None:
        return ["the database in use does not show what was deleted since the backup (it is missing, unreadable, or "
                "a new one): any account or photo deleted since the backup was made is back; delete it again "
                "(Admin > Users) if it was an erasure request"]
    accounts, uploads, audit = erased
    with restored:  # what admins did since is kept whatever comes back: the record of a deletion above all
        restored.executemany("INSERT INTO audit(t, actor, action, target, detail) VALUES (?, ?, ?, ?, ?)", audit)
    if not (accounts or uploads):
        return []
    names = ", ".join(name for _, name in accounts)
    what = " and ".join(part for part in (f"{len(accounts)} account(s) ({names})" if accounts else "",
                                          f"{len(uploads)} upload(s)" if uploads else "") if part)
    if bring_back:
        return [f"brought back {what} deleted since the backup was made (as --bring-back-deleted asks); a brought-back "
                "upload has its results only: its kept image was deleted with it"]
    restored.execute("PRAGMA foreign_keys = ON")  # a user's uploads, sessions and an upload's faces go with them
    restored.execute("PRAGMA secure_delete = ON")  # zeroed in the file, as a deletion on the device is
    with restored:
        for upload_id in uploads:
            restored.execute("DELETE FROM uploads WHERE id = ?", (upload_id,))
        for uid, _ in accounts:
            restored.execute("DELETE FROM uploads WHERE user_id = ?", (uid,))
            restored.execute("DELETE FROM users WHERE id = ?", (uid,))
    return [f"deleted again {what} deleted since the backup was made: a deletion (an erasure request, retention) "
            "stays done; to undo a mistaken deletion, restore with --bring-back-deleted"]


PICTURES = (("alerts", "snapshot_path"), ("uploads", "image_path"))  # rows naming a file under images/


def _pictures_in_use(now: sqlite3.Connection | None) -> set[str]:
    """The picture paths the database in use (``_database_in_use``) names: its own alerts'
    frames and kept photos."""
    if now is None:
        return set()
    try:
        return {row[0] for table, column in PICTURES if _table_exists(now, table)
                for row in now.execute(f"SELECT {column} FROM {table} WHERE {column} IS NOT NULL")}
    except sqlite3.Error:  # a damaged database (why one restores): its files are as likely the backup's own
        return set()


def _forget_missing_pictures(data: Path, restored: sqlite3.Connection, erased, foreign: set[str],
                             brought_back: bool) -> list[str]:
    """A row of the backup keeps its picture's path only where that picture is this row's.

    A backup is the database only: restored on a new card (a dead one replaced), its alerts'
    frames and kept photos stayed on the old card, and the admin's pages showed a broken picture
    for each. Restored over another database (a desk set up from another's backup, a new card
    used for a day), a path may name that database's own file: upload 1 of the backup showed
    the other desk's upload 1, another student's face, and deleting it would delete theirs. So
    when the database in use is not this backup's own (``erased`` None) a path it names
    (``foreign``: ``_pictures_in_use``) is not the backup's; one no row of it names (copied over
    by hand) is. Their rows keep their results; the path goes. Returns what to tell the technician."""
    root = data / "images"
    own = erased is not None
    back = set(erased[1]) if own and brought_back else set()  # said already: "its kept image was deleted with it"
    missing = {"alerts": 0, "uploads": 0}
    taken = 0
    for table, column in PICTURES:
        rows = restored.execute(f"SELECT id, {column} FROM {table} WHERE {column} IS NOT NULL").fetchall()
        drop = []
        for row_id, relative in rows:
            if str(relative) in foreign:
                drop.append(row_id)
                taken += 1
            elif not (root / str(relative)).is_file():
                drop.append(row_id)
                if not (table == "uploads" and row_id in back):
                    missing[table] += 1
        with restored:
            restored.executemany(f"UPDATE {table} SET {column} = NULL WHERE id = ?", [(i,) for i in drop])
    told = []
    if missing["alerts"] or missing["uploads"]:
        what = f"{missing['alerts']} alert frame(s) and {missing['uploads']} kept photo(s) the backup names"
        told.append(f"{what} were deleted since it was made: their results stay, without the picture" if own else
                    f"{what} are not in {root} (a backup holds the database only: they stayed where it was made): "
                    "their results stay, without the picture")
    if taken:
        told.append(f"{taken} picture path(s) of the backup name files of the database in use, which is not this "
                    "backup's own (another desk's, or a new card's): they are its pictures, not the backup's, so "
                    "those rows keep their results without a picture")
    return told


def restore(data_dir: Path | str, source, *, keep_device_id: bool | None = None,
            file_mqtt: tuple[str, str] = ("", ""), bring_back_deleted: bool = False) -> list[str]:
    """Put the backup ``source`` (an open binary file: opened by the caller, who may read it
    when the data's owner may not) in place of ``<data_dir>/engage.db``. The database, its
    ``-wal`` and ``-shm`` go aside as ``.old`` (a backup copied over engage.db alone gets the
    old WAL applied to it); the restored file is checked first and renamed into place, mode
    0600. Refused, changing nothing, while the service runs. Accounts and uploads deleted
    since the backup are deleted again unless ``bring_back_deleted`` (``_carry_erasures``).
    Returns what to tell the technician."""
    from edge_app.web.admin_settings import SETTINGS_KEY

    data = Path(data_dir).expanduser()
    name = getattr(source, "name", "the backup")
    if not data.is_dir():
        raise BackupError(f"no data directory {data}: check --data-dir or store.data_dir")
    if source.read(len(SQLITE_HEADER)) != SQLITE_HEADER:
        raise BackupError(f"{name} is not a database: give a file `engage-edge backup` wrote; nothing was changed")
    source.seek(0)
    live = [data / (DB_NAME + end) for end in ("", "-wal", "-shm", "-journal")]
    if any(os.path.realpath(name) == os.path.realpath(p) for p in live):
        raise BackupError(f"{name} is the live database itself: give a backup")
    aside = [(p, p.with_name(p.name + ".old")) for p in live if os.path.lexists(p)]
    for _, old in aside:
        if os.path.lexists(old):
            raise BackupError(f"{old} is there from an earlier restore: delete it once the database in use works (or "
                              "move it elsewhere), then restore again; nothing was changed")
    with _service_stopped(data):
        remove_restore_leftovers(data)
        here = _installation(data, create=True) or ""
        fd, tmp_name = tempfile.mkstemp(prefix=f".{DB_NAME}.", suffix=RESTORE_SUFFIX, dir=data)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:  # mkstemp's file is 0600 already
                while chunk := source.read(1 << 20):
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            with contextlib.closing(sqlite3.connect(tmp)) as conn:
                result = conn.execute("PRAGMA integrity_check").fetchone()[0]
                if result != "ok":
                    raise BackupError(f"{name} fails its integrity check ({result}): restore another backup; "
                                      "nothing was changed")
                if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'settings'").fetchone():
                    raise BackupError(f"{name} is not an engage-edge database (no settings table): give a file "
                                      "`engage-edge backup` wrote; nothing was changed")
                told = _device_id_to_keep(conn, here, keep_device_id, file_mqtt, SETTINGS_KEY)
                with _database_in_use(data / DB_NAME) as now:  # read once
                    erased = _erased_since(now, conn)
                    foreign = _pictures_in_use(now) if erased is None else set()
                told += _carry_erasures(erased, conn, bring_back_deleted)
                told += _forget_missing_pictures(data, conn, erased, foreign, bring_back_deleted)
                with conn:  # a live database names no desk it was backed up on: a copy made of it by other
                    # means (install.sh's fallback) would carry the other desk's stamp, and restoring it here
                    # later dropped this desk's own device_id
                    conn.execute("DELETE FROM settings WHERE key = ?", (MADE_ON_KEY,))
                    # the records end where the backup was made: the next start says why, not "a crash"
                    conn.execute("INSERT OR REPLACE INTO settings(key, value) VALUES (?, ?)",
                                 (RESTORED_KEY, json.dumps({"at": time.time()})))
            _swap(data, tmp, aside, name)
        except sqlite3.Error as exc:
            raise BackupError(f"{name} cannot be read as a database ({exc}): give a file `engage-edge backup` wrote; "
                              "nothing was changed") from None
        except OSError as exc:  # before anything was moved: _swap says its own failures
            raise CopyFailed(f"restoring {name} failed: {why_write_failed(exc, data)}; nothing was changed: the database in "
                             "use is as it was") from None
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()
    if aside:
        told.append(f"the database as it was: {', '.join(str(old) for _, old in aside)} (delete once the restored "
                    "one works)")
    return told


def parse_since(text: str, flag: str = "--since") -> float:
    """``YYYY-MM-DD`` or an ISO date-time (local time unless it names a zone) -> epoch seconds."""
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise BackupError(f"{flag} {text!r} is not a date: use YYYY-MM-DD or YYYY-MM-DDTHH:MM") from None
    try:
        return when.timestamp()
    except (OverflowError, ValueError):  # 0001-01-01 in a zone east of UTC: before every row
        return -math.inf if when.year < 2 else math.inf


def iso_time(t: float) -> str:
    """Local time with its UTC offset, to the second: unambiguous across a DST change."""
    return dt.datetime.fromtimestamp(t).astimezone().isoformat(timespec="seconds")


def export_rows(data_dir: Path | str, since: float, until: float = math.inf, what: str = "log"):
    """Log rows from ``since`` up to ``until`` (not included): state changes, minute aggregates,
    alerts and uploads' faces; with ``what`` "audit" the audit log's rows, "accounts" the
    accounts now (``since``/``until``: none left out)."""
    db = Path(data_dir).expanduser() / DB_NAME
    conn = open_database(db)
    until = min(until, 1e18)  # SQLite compares with a number, not infinity's text
    try:
        newer = newer_schema(db, conn.execute("PRAGMA user_version").fetchone()[0])  # as the service refuses it
        if newer:
            raise BackupError(f"{newer}: export it with the release that wrote it; nothing was written")
        if what == "audit":
            for t, actor, action, target, detail in conn.execute(
                    "SELECT t, actor, action, target, detail FROM audit WHERE t >= ? AND t < ? ORDER BY t, id",
                    (since, until)):
                yield {"time": iso_time(t), "actor": actor, "action": action, "target": target, "detail": detail}
            return
        if what == "accounts":
            have = {r[1] for r in conn.execute("PRAGMA table_info(users)")}
            must = "must_change_password" if "must_change_password" in have else "0"
            for name, role, created, last, disabled, change in conn.execute(
                    f"SELECT username, role, created, last_login, disabled, {must} FROM users ORDER BY username"):
                yield {"username": name, "role": role, "created": iso_time(created),
                       "last_login": iso_time(last) if last else "", "disabled": "yes" if disabled else "no",
                       "must_change_password": "yes" if change else "no"}
            return
        for t, level, grp, emotion, conf in conn.execute(
                "SELECT t, level, grp, emotion, confidence FROM state_changes WHERE t >= ? AND t < ? ORDER BY t",
                (since, until)):
            yield log_row("state", t, level, grp, emotion, conf)
        # a database not yet opened by this version (exported before the service's first
        # start after an update) lacks the newer columns: it has no seconds there
        have = {r[1] for r in conn.execute("PRAGMA table_info(minute_stats)")}
        cols = [c if c in have else f"0 AS {c}" for c in GROUP_COLUMNS.values()]
        # a minute row overlapping ``since``, and none that ended before it (a day's export
        # repeated the previous day's 23:59 row, counted twice in a sum over both); one overlapping
        # ``until`` is the next period's (its ``since``), so two periods never share a row
        for row in conn.execute(f"SELECT minute, frames, faces, {', '.join(cols)} FROM minute_stats "
                                "WHERE minute > ? AND minute <= ? ORDER BY minute", (since - 60, until - 60)):
            yield {"kind": "minute", "time": iso_time(row[0]), "frames": row[1], "faces": row[2],
                   **dict(zip(GROUP_COLUMNS.values(), row[3:]))}
        for t, level in conn.execute("SELECT t, level FROM alerts WHERE t >= ? AND t < ? ORDER BY t", (since, until)):
            yield {"kind": "alert", "time": iso_time(t), "level": level, "group": group_label(level)}
        for created, engagement, emotion, conf, user, filename in conn.execute(
                "SELECT u.created, COALESCE(f.engagement, ?), f.emotion, f.confidence, us.username, u.filename "
                "FROM uploads u LEFT JOIN upload_faces f ON f.upload_id = u.id LEFT JOIN users us ON us.id = u.user_id "
                "WHERE u.created >= ? AND u.created < ? ORDER BY u.created, f.id",
                (NO_FACE, since, until)):  # a photo with no face: one row
            yield log_row("upload", created, engagement, group_label(engagement), emotion, conf, user, filename)
    except sqlite3.Error as exc:
        raise BackupError(f"reading the log failed: {damaged_database(db, exc) or exc}") from None
    finally:
        conn.close()


def export_csv(data_dir: Path | str, since: float, out: Path | str | None = None, until: float = math.inf,
               what: str = "log") -> int:
    """Write the log as CSV to ``out`` (stdout when None); returns the number of rows.
    A file appears whole or not at all (an interrupted export leaves no half a file); a
    write that fails (a full disk) is a CopyFailed, standard output's too, so a redirect
    into a full disk is said as such, not a traceback (a closed pipe stays BrokenPipeError)."""
    db = Path(data_dir).expanduser() / DB_NAME
    if out is not None:  # a wrong --out is said at once, not after reading a year of rows
        out = folder_named(out)
        out = _check_destination(out, db, replaces="export", header=EXPORTS[what])
        remove_stale_temps(out)  # a killed export's hidden part of the log
    # written as read: a list of ten years' rows took 2.2 GB. The first row is read before a
    # byte is written, so a database that cannot be read (a newer schema) still writes nothing.
    reader = export_rows(data_dir, since, until, what)
    columns = EXPORTS[what]
    first = next(reader, None)
    rows = itertools.chain([first], reader) if first is not None else iter(())
    if out is None:
        try:
            count = write_log_csv(sys.stdout, rows, columns)
            sys.stdout.flush()
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise CopyFailed(f"cannot write the CSV to standard output: {why_write_failed(exc, sys.stdout.fileno())}") from None
        return count
    try:
        # 0600, as a backup: students' names and states, not for every user of the machine; with a
        # byte order mark (utf-8-sig), as the web's CSV, or Excel on Windows reads "Müller" as "MÃ¼ller"
        with atomic_path(out, 0o600, held=True) as tmp, open(tmp, "w", newline="", encoding="utf-8-sig") as f:
            count = write_log_csv(f, rows, columns)
    except OSError as exc:
        raise CopyFailed(f"cannot write {out}: {why_write_failed(exc, out.absolute().parent)}; nothing was written") from None
    return count
