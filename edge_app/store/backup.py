"""Backups of the device's database, safe while the service runs, and their restore.

``backup`` uses SQLite's online backup API: the copy is one consistent snapshot even while
the capture loop and the web UI keep writing (WAL readers never block writers). It is
written beside the destination, checked with ``PRAGMA integrity_check``, fsynced and
renamed into place, so a half-written backup never looks like a good one.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import sqlite3
import tempfile
import time
from pathlib import Path

from edge_app.fsutil import atomic_path, fsync_dir, remove_stale_temps
from edge_app.store.copying import (
    SQLITE_HEADER,
    BackupError,
    CopyFailed,
    damaged_database,
    folder_named,
    open_database,
    through_link,
    why_write_failed,
)
from edge_app.store.database import DB_NAME, RESTORED_KEY, MigrationFailed, apply_migrations, newer_schema
from edge_app.store.export import BACKUP_TABLES, check_destination

log = logging.getLogger(__name__)

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
        dest = check_destination(dest, db, replaces="backup")
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
    """Whether the backup's ``mqtt.device_id`` (saved on Admin > Classroom broker) stays: a backup of
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
            raise BackupError(f"the backup sets {DEVICE_ID} = {device_id!r} (saved on Admin > Classroom broker) and does not "
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
             f"as {name!r}, as when it is unset; to name it otherwise, use Admin > Classroom broker"]
    if overrides.get("mqtt.username") and not file_mqtt[0]:
        lines.append(f"the broker user name {overrides['mqtt.username']!r} came with the backup (its password did "
                     "not): if it is the other desk's account, type this desk's own on Admin > Classroom broker")
    if overrides.get(DESK):
        lines.append(f"the desk label {overrides[DESK]!r} came with the backup: change it on Admin > Classroom broker if "
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


def _does_not_open(db: Path) -> str:
    """Why the database in use cannot be used (missing, unreadable, a newer release's), or
    "" when it opens; read as it is (immutable), writing nothing beside it."""
    if not db.is_file():
        return f"there is no {db}"
    try:
        with contextlib.closing(sqlite3.connect(f"{db.absolute().as_uri()}?mode=ro&immutable=1", uri=True)) as conn:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return newer_schema(db, conn.execute("PRAGMA user_version").fetchone()[0])
    except sqlite3.Error as exc:
        return f"{db}: {exc}"


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
    head = source.read(len(SQLITE_HEADER))  # kept, not read again: a backup piped in (/dev/stdin) cannot seek
    if head != SQLITE_HEADER:
        raise BackupError(f"{name} is not a database: give a file `engage-edge backup` wrote; nothing was changed")
    live = [data / (DB_NAME + end) for end in ("", "-wal", "-shm", "-journal")]
    if any(os.path.realpath(name) == os.path.realpath(p) for p in live):
        raise BackupError(f"{name} is the live database itself: give a backup")
    for old in (p.with_name(p.name + ".old") for p in live):
        if os.path.lexists(old):
            broken = _does_not_open(data / DB_NAME)
            if broken:  # the .old may hold the only good records: never say to delete it then
                raise BackupError(f"{old} is there from an earlier restore, and the database in use does not open "
                                  f"({broken}): the .old files may be the only good copy of the records, so keep them. "
                                  f"To go back to them, put them back in place (stop the service; in {data}: mv -f "
                                  f"{DB_NAME}.old {DB_NAME}, and the same for a -wal.old or -shm.old); or move them to "
                                  "another disk, then restore again; nothing was changed")
            raise BackupError(f"{old} is there from an earlier restore: first check that the database in use works (the "
                              "service starts, its log and accounts are there); then move the .old files elsewhere (or "
                              "delete them), and restore again; nothing was changed")
    aside: list[tuple[Path, Path]] = []
    with _service_stopped(data):
        existed = [p for p in live if os.path.lexists(p)]  # what goes aside: the database in use as it was
        tmp: Path | None = None
        try:  # from the first write: a card gone read-only is said, "nothing was changed", not a traceback
            remove_restore_leftovers(data)
            fd, tmp_name = tempfile.mkstemp(prefix=f".{DB_NAME}.", suffix=RESTORE_SUFFIX, dir=data)
            tmp = Path(tmp_name)
            with os.fdopen(fd, "wb") as out:  # mkstemp's file is 0600 already
                out.write(head)
                while chunk := source.read(1 << 20):
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            with contextlib.closing(sqlite3.connect(tmp)) as conn:
                result = conn.execute("PRAGMA integrity_check").fetchone()[0]
                if result != "ok":
                    raise BackupError(f"{name} fails its integrity check ({result}): restore another backup; "
                                      "nothing was changed")
                newer = newer_schema(Path(name), conn.execute("PRAGMA user_version").fetchone()[0])
                if newer:  # the service would not start on it
                    raise BackupError(f"{name} was made by a newer release of engage-edge ({newer}): upgrade "
                                      "engage-edge first, then restore it; nothing was changed")
                tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
                if missing := sorted(BACKUP_TABLES - tables):  # its own fault, before the database in use is read
                    raise BackupError(f"{name} is not an engage-edge database (it has no {', '.join(missing)} "
                                      "table): give a file `engage-edge backup` wrote; nothing was changed")
                # an older release's backup, brought to this schema first: what was deleted since is carried
                # into its tables (a backup from before the audit table failed there), and the start has nothing to do
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                try:
                    if version > 0:
                        apply_migrations(conn, version)
                except MigrationFailed as failed:
                    raise BackupError(f"{name} could not be brought to this release's schema (step {failed.number}: "
                                      f"{failed.__cause__}): restore another backup; nothing was changed") from None
                here = _installation(data, create=True) or ""  # made once the backup is known to be one
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
            # the look at the database in use above, read only, made its -wal (empty) and -shm when they were not
            # there (stopped cleanly): they stayed beside the restored database, another database's files
            for made in (p for p in live if p not in existed):
                made.unlink(missing_ok=True)
            aside = [(p, p.with_name(p.name + ".old")) for p in existed]
            _swap(data, tmp, aside, name)
        except sqlite3.Error as exc:
            raise BackupError(f"{name} cannot be read as a database ({exc}): give a file `engage-edge backup` wrote; "
                              "nothing was changed") from None
        except OSError as exc:  # before anything was moved: _swap says its own failures
            raise CopyFailed(f"restoring {name} failed: {why_write_failed(exc, data)}; nothing was changed: the database in "
                             "use is as it was") from None
        finally:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    tmp.unlink()
    if aside:
        told.append(f"the database as it was: {', '.join(str(old) for _, old in aside)} (delete once the restored "
                    "one works)")
    return told
