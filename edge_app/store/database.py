"""The device's one SQLite database (WAL) and the data directory around it.

What is written: users and sessions, analysed uploads (one row per face), engagement
state changes and one aggregate row per minute of live time, alerts. Never a row per
frame (SD cards wear out). The schema is versioned (``schema.MIGRATIONS`` run in order).
Each thread gets its own connection; writers wait on a locked database (busy timeout)
instead of failing.
"""
from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from edge_app.engagement import Group
from edge_app.fsutil import atomic_write, lost_at_reboot, owner_name, sandbox_hint, user_name
from edge_app.store.outbox import queue_message
from edge_app.store.schema import GROUP_COLUMNS, MIGRATIONS, SPEED_INDEXES

log = logging.getLogger(__name__)

DB_NAME = "engage.db"
BUSY_TIMEOUT_MS = 5000
FORGET_WAIT_MS = 200  # the most a delete's checkpoint waits for readers (Store.forget_deleted)
AUDIT_KEEP_DAYS = 365
# The purge deletes this many rows per transaction: one transaction for every old row needed
# a WAL as large as what it deleted (failing on a nearly full card) and held the write lock
# throughout. Between batches SQLite's auto-checkpoint recycles the WAL.
PURGE_BATCH = 2000
# SQLite never shrinks a WAL file while the database is open: after a checkpoint, one larger
# than this is truncated to it. Above the ~4 MB the auto-checkpoint (1000 pages) lets it
# reach in normal running, so only a spike is cut back.
WAL_LIMIT_BYTES = 8 * 1024 * 1024
# Each thread's connection lives as long as the service (96 web threads by default), and each
# one's page cache filled to SQLite's default 2 MB as the log grew: ~190 MB more memory after
# weeks of uptime. Pages not cached here are still in the kernel's page cache, a read away.
CACHE_KIB = 512
SQLITE_IOERR, SQLITE_FULL = 10, 13  # primary result codes (an extended code's low byte)
FULL_BELOW_BYTES = 1_000_000  # an I/O error on a disk with less free than this is the disk being full
# A card filled by something else (a backup written beside the database) left no byte for a
# session's row: an admin could not log in to lower the retention. The running service keeps
# ``store.reserve_mb`` in a file (``keep_reserve``), given up at the first write that finds the
# disk full (``release_reserve``), so the next try works; kept again once there is room.
RESERVE_NAME = "reserve"
RESTORED_KEY = "backup.restored_at"  # written by a restore: the next start's Absent is no crash (last_sign_of_life)
RESERVE_ROOM = 3  # the reserve is taken only with this many times its size free (not from a nearly full card)

class StoreError(RuntimeError):
    """The database cannot be used; the message says why and what to do. ``disk_full``: only
    for want of room (the database is fine; freeing space is the fix, and a wait can see it)."""

    def __init__(self, message: str, disk_full: bool = False):
        super().__init__(message)
        self.disk_full = disk_full


def not_a_folder(data_dir: Path, exc: OSError) -> str | None:
    """What to say when the data directory named is a file, or lies under one (``--data-dir
    /var/lib/engage-edge/engage.db``: the database, not its folder), else None; the general
    advice (mount read-write, chown) would send the technician the wrong way."""
    if not isinstance(exc, (FileExistsError, NotADirectoryError)):
        return None
    inside = Path(exc.filename) if exc.filename else data_dir
    if inside.parent == data_dir and data_dir.is_dir():  # its images/ folder is a file: not the directory's fault
        return (f"{inside} is a file where engage-edge keeps a folder: move it away (mv {inside} {inside}.moved) "
                "and start again")
    which = "is a file" if isinstance(exc, FileExistsError) else "lies under a file"
    hint = f" ({data_dir.parent}, not {data_dir.name})" if data_dir.name == DB_NAME else ""
    return (f"the data directory {data_dir} {which}, not a folder: give the folder the database lives in{hint} "
            "with --data-dir or store.data_dir")


# The paused capture loop's sign of life (a settings row, overwritten): {"pause": its Paused
# row's time, "seen": when it was last seen paused, "stopped": stopped cleanly}. A paused loop
# writes no other row, so without it a crash during a pause could not be dated.
PAUSE_SEEN_KEY = "loop.pause_seen"
# The student's pause on now, or null: it outlives a restart. ``runtime.privacy.Pause.saved``:
# {"since", "until", "by", "owner", "owner_created", and what it had left on the monotonic
# and wall clocks: "boot", "mono_since", "ends_at", "saved_at", "left"}.
PAUSE_KEY = "privacy.pause"


def kept_in_memory(data_dir: Path, who: str = "this device", setting: str = "store.data_dir") -> str | None:
    """What to tell a technician or an admin when the data folder does not outlive a reboot
    (``fsutil.lost_at_reboot``), else None: the device works all day and each boot is a
    first start again (a new admin password, no other account, nothing recorded)."""
    why = lost_at_reboot(data_dir)
    if why is None:
        return None
    fix = ("turn Raspberry Pi OS's Overlay File System off (sudo raspi-config: Performance Options, Overlay File "
           "System) and reboot" if " is an overlay " in why else f"set {setting} to a folder on the SD card or a USB disk")
    return (f"nothing {who} records outlives a reboot: its data folder {data_dir} is in memory ({why}), so each "
            f"start is a first start again (a new admin password, no other account, nothing recorded): {fix}")


def audit_days(retention_days: int) -> int:
    """How long the audit log is kept: a year, or the retention when that is longer."""
    return max(retention_days, AUDIT_KEEP_DAYS)


def _insert_audit(conn: sqlite3.Connection, actor: str, action: str, target: str, detail: str) -> None:
    conn.execute("INSERT INTO audit(t, actor, action, target, detail) VALUES (?, ?, ?, ?, ?)",
                 (time.time(), actor, action, target, detail))


class MigrationFailed(Exception):
    """Migration ``number`` failed (its cause is SQLite's error); the ones before it stay."""

    def __init__(self, number: int):
        super().__init__(number)
        self.number = number


def apply_migrations(conn: sqlite3.Connection, version: int) -> None:
    """Bring the database on ``conn`` from schema ``version`` to this release's, one
    migration per transaction: killed between two, the next start goes on from there. Also a
    restore's copy of an older backup, before what was deleted since is carried into it."""
    for number in range(version + 1, len(MIGRATIONS) + 1):
        try:
            conn.executescript(f"BEGIN IMMEDIATE; {MIGRATIONS[number - 1]}; PRAGMA user_version = {number}; COMMIT;")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise MigrationFailed(number) from exc


def newer_schema(path: Path, version: int) -> str:
    """"" or how the database at ``path`` (its ``user_version``) is a newer release's: the
    service will not run on it, nor the export read it (its columns may mean other things)."""
    if version <= len(MIGRATIONS):
        return ""
    return f"{path} has schema version {version}, newer than this engage-edge ({len(MIGRATIONS)})"


class LastRun(NamedTuple):
    """How the capture loop's last run ended, as the log tells it (``last_sign_of_life``)."""

    level: str  # the last level it logged
    seen: float  # the latest time a row shows it running
    crashed: bool  # it ended without a clean stop: a crash or a power loss
    began: float = 0.0  # when that level began (the row's own time)
    restored: bool = False  # not a crash: the records end where a backup restored since was made


class Store:
    def __init__(self, data_dir: Path | str):
        self.data_dir = Path(data_dir).expanduser()
        try:
            # a new data directory is the service user's alone: it holds a log about minors,
            # password hashes and, when an admin keeps them, face photos (an existing one
            # keeps the mode it was given)
            self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            (self.data_dir / "images").mkdir(exist_ok=True, mode=0o700)
        except OSError as exc:
            wrong = not_a_folder(self.data_dir, exc)
            if wrong:
                raise StoreError(wrong) from None
            if self.data_dir.is_dir():  # it is there: its images folder could not be made in it
                raise StoreError(self._not_writable(exc)) from None
            parent = next((p for p in self.data_dir.parents if p.is_dir()), self.data_dir.parent)
            raise StoreError(f"cannot create the data directory {self.data_dir} ({exc.strerror or exc}): check that "
                             f"{parent} is on a file system mounted read-write and that {user_name()!r}, who runs "
                             f"engage-edge, may write to it, or choose another --data-dir / store.data_dir."
                             + sandbox_hint(self.data_dir, exc)) from None
        self._check_writable()
        self.path = self.data_dir / DB_NAME
        lost = self._lost_database()
        if lost:
            raise StoreError(lost)
        self._create_private()
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        self.outbox_enabled = False  # set when [mqtt] is on: live rows also queue a message for the broker
        self.outbox_event = threading.Event()  # set on each queued message: wakes the MQTT publisher
        self._forget_pending = False  # a delete's checkpoint was deferred by a reader (forget_deleted)
        # whether store.retention_days bounds this database, and so is a way out of a full disk: not the
        # classroom server's (accounts and its audit log, kept for the default time)
        self.retention_setting = True
        self.migrated_from: int | None = None  # the schema an older release left, when this open upgraded it
        try:
            self.migrate()
        except BaseException:  # refused (a newer release's database, a full disk): its -wal and -shm go now,
            self.close()  # not whenever the refused store is collected, and nothing of this open stays beside it
            raise

    def _check_writable(self) -> None:
        """A read-only mount or a directory owned by someone else is said as such, not as
        a corrupt database (SQLite only says "unable to open database file")."""
        try:
            with tempfile.TemporaryFile(dir=self.data_dir):
                pass
        except OSError as exc:
            raise StoreError(self._not_writable(exc)) from None
        # a folder the service may write can still hold files it may not: a technician's
        # command run as plain root (sudo engage-edge ...) that created the database or the
        # images folder; SQLite then says only "attempt to write a readonly database"
        for path in (self.data_dir / DB_NAME, self.data_dir / f"{DB_NAME}-wal", self.data_dir / f"{DB_NAME}-shm",
                     self.data_dir / "images"):
            need = os.W_OK | (os.X_OK if path.is_dir() else 0)
            if os.path.lexists(path) and not os.access(path, need):
                owner, user = owner_name(path), user_name()
                keeper = owner_name(self.data_dir)
                keeper = user if keeper in (owner, "root") else keeper
                raise StoreError(
                    f"{path} belongs to {owner!r}, and {user!r}, who runs engage-edge, may not write to it (a command "
                    f"run as plain root, `sudo engage-edge ...`, leaves such files): give the data directory back to "
                    f"its user (sudo chown -R {keeper}: {self.data_dir}) and run technician commands as that user "
                    f"(sudo -u {keeper} ...)") from None

    def _not_writable(self, exc: OSError) -> str:
        """An existing data directory this user cannot write in, and what to do about it."""
        d, user = self.data_dir, user_name()
        if exc.errno == errno.EROFS:
            fix = "its file system is mounted read-only: mount it read-write"
        else:
            fix = f"let {user!r}, who runs engage-edge, own it (sudo chown -R {user}: {d})"
        return (f"the data directory {d} is not writable ({exc.strerror or exc}): the database and kept images live "
                f"there. {fix[0].upper()}{fix[1:]}, or choose another --data-dir / store.data_dir."
                + sandbox_hint(d, exc))

    def _lost_database(self) -> str | None:
        """Why no new database may be made here, or None. engage.db missing from a folder that
        still holds its -wal or -shm, a copy a restore moved aside, or kept photos is a database
        lost (a restore stopped by a power cut between its two moves, fsck, a file moved by hand),
        not a first start: a new empty one took in the stale -wal (the newest rows it alone held
        were then checkpointed away) and the start deleted every kept photo, as no row named them."""
        if os.path.lexists(self.path):
            return None
        beside = [self.data_dir / f"{DB_NAME}{end}" for end in ("-wal", "-shm", ".old", "-wal.old", "-shm.old")]
        found = [p.name for p in beside if os.path.lexists(p)]
        photo = next((Path(folder) / files[0] for folder, _dirs, files in os.walk(self.data_dir / "images") if files),
                     None)
        if photo is not None:
            found.append(f"kept photos (such as {photo.relative_to(self.data_dir)})")
        if not found:
            return None
        old = self.data_dir / f"{DB_NAME}.old"
        back = (f"If a restore was stopped part-way, put the database it moved aside back: cd {self.data_dir} && "
                f"for f in {DB_NAME}*.old; do mv -n \"$f\" \"${{f%.old}}\"; done. " if os.path.lexists(old) else "")
        return (f"{self.path} is missing, but {self.data_dir} still holds {', '.join(found)}: the database was lost "
                "or moved (a restore stopped part-way, a power cut, a file moved by hand), and a new empty one would "
                "take in what is left of it and delete the kept photos no row names, so engage-edge does not start. "
                f"{back}Otherwise put {DB_NAME} back, or restore a backup (engage-edge restore FILE; firmware/README.md, "
                "'Restoring a backup'); to start afresh on purpose, move the whole data directory away (or choose "
                "another --data-dir / store.data_dir).")

    def _create_private(self) -> None:
        """A new database is its user's alone, whoever creates it: SQLite makes the file with
        the process's umask (0644 from a shell: a self-test before the first start), and its
        -wal and -shm files take the database file's mode. An empty file is an empty
        database to SQLite. An existing one keeps the mode it was given."""
        try:
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            pass
        except OSError:
            pass  # SQLite's own open says what is wrong, as before

    # ------------------------------------------------------------ connections
    def connect(self) -> sqlite3.Connection:
        """This thread's connection (WAL, foreign keys, busy timeout)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                                       check_same_thread=False)
                conn.row_factory = sqlite3.Row
                conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
                if conn.execute("PRAGMA page_count").fetchone()[0] == 0:
                    # a new database gives purged space back from its start: set after WAL (which writes
                    # its first page) it was ignored, and every new device ran the one-time VACUUM
                    conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = NORMAL")
                conn.execute(f"PRAGMA journal_size_limit = {WAL_LIMIT_BYTES}")
                conn.execute("PRAGMA foreign_keys = ON")
                conn.execute("PRAGMA secure_delete = ON")  # deleted rows zeroed: Debian's default, not every build's
            except sqlite3.DatabaseError as exc:
                full = self.disk_full_advice(exc)
                if full:
                    raise StoreError(f"{self.path} cannot be opened: {exc}: {full}", disk_full=True) from None
                raise StoreError(f"{self.path} cannot be opened as a database: {exc}. "
                                 "Restore a backup (engage-edge restore FILE; the steps, with the -wal and -shm files: "
                                 "firmware/README.md, 'Restoring a backup') or move the file away, and the images folder "
                                 "beside it, to start afresh (a start deletes kept photos that no row names).") from None
            self._local.conn = conn
            with self._all_lock:
                self._all.append(conn)
        return conn

    def close(self) -> None:
        with self._all_lock:
            for conn in self._all:
                try:
                    conn.close()
                except sqlite3.Error:
                    pass
            self._all.clear()
        self._local = threading.local()

    def execute(self, sql: str, params=()) -> sqlite3.Cursor:
        return self.connect().execute(sql, params)

    def query(self, sql: str, params=()) -> list[sqlite3.Row]:
        return self.connect().execute(sql, params).fetchall()

    def transaction(self):
        return _Transaction(self.connect())

    # ------------------------------------------------------------ schema
    def schema_version(self) -> int:
        return self.connect().execute("PRAGMA user_version").fetchone()[0]

    def migrate(self) -> None:
        conn = self.connect()  # a new database is made able to give purged space back there
        conn.execute("PRAGMA foreign_keys = OFF")  # a table rebuilt by a migration must not cascade-delete
        try:
            self._migrate(conn)
        finally:
            conn.execute("PRAGMA foreign_keys = ON")
        self._make_shrinkable(conn)
        for sql in SPEED_INDEXES:
            try:
                conn.execute(sql)
            except sqlite3.Error as exc:  # a full disk: the log's pages are slower until a start with room
                log.warning("%s: an index of the admin log was not made (%s): its filtered pages are slower until a "
                            "start with room for it", self.path, exc)
                break

    def _make_shrinkable(self, conn: sqlite3.Connection) -> None:
        """A database made before the purge gave space back (``auto_vacuum`` none) is turned
        into one that can (``give_back_space``), once, at a start with room for it: a VACUUM
        writes the whole database again (into the log, and a temporary copy), so it waits for
        a start with three times its size free. Without it, lowering the retention freed no
        disk: a 10-year database purged to 30 days stayed 254 MB, and so did its backups."""
        if conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2:
            return
        size = self.path.stat().st_size
        if self.free_mb() * 1e6 < 3 * size + 50e6:
            log.info("%s cannot give purged space back to the disk yet (%.0f MB): it will be made able at a start "
                     "with %.0f MB free", self.path, size / 1e6, (3 * size + 50e6) / 1e6)
            return
        try:
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
            conn.execute("VACUUM")
        except sqlite3.Error as exc:  # a full disk after all, a reader: the next start tries again
            log.warning("%s was not made able to give purged space back (%s): the next start tries again", self.path, exc)
            return
        self.forget_deleted()  # the log the VACUUM wrote, emptied
        log.info("%s now gives purged space back to the disk (%.0f MB -> %.0f MB)", self.path, size / 1e6,
                 self.path.stat().st_size / 1e6)

    def give_back_space(self, step_pages: int = 2048) -> int:
        """Return the pages a purge freed to the disk, ``step_pages`` (8 MB) a transaction, so a
        writer waits for one step at most; the file shrinks at the checkpoint that follows.
        Returns the pages given back."""
        conn = self.connect()
        if conn.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:
            return 0
        given = 0
        while (free := conn.execute("PRAGMA freelist_count").fetchone()[0]) > 0:
            conn.execute(f"PRAGMA incremental_vacuum({min(free, step_pages)})").fetchall()
            given += min(free, step_pages)
        return given

    def _migrate(self, conn: sqlite3.Connection) -> None:
        version = self.schema_version()
        newer = newer_schema(self.path, version)
        if newer:
            raise StoreError(f"{newer}: upgrade engage-edge or restore an older backup")
        if 0 < version < len(MIGRATIONS):  # a new database (version 0) is made, not upgraded
            self.migrated_from = version
            log.info("%s: migrating the database from schema %d to %d: an older release cannot open it after "
                     "(to go back, restore the backup install.sh made before the upgrade)", self.path, version,
                     len(MIGRATIONS))
        try:
            apply_migrations(conn, version)
        except MigrationFailed as failed:
            exc = failed.__cause__
            full = self.disk_full_advice(exc)
            raise StoreError(f"migrating {self.path} to schema {failed.number} failed: {exc}"
                             + (f": {full}" if full else ""), disk_full=bool(full)) from exc

    def disk_full_advice(self, exc: BaseException | None) -> str | None:
        """What to do when ``exc`` comes from a full disk (SQLITE_FULL, or an I/O error such as
        growing the -shm file with next to nothing free), else None: the database is not
        damaged, so restoring a backup or moving it away would only lose data. A file of the data
        directory's written beside it (the broker password, ENOSPC) is the same full disk."""
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            code = SQLITE_IOERR  # said only when this disk is the full one (not an upload's temporary file's)
        elif not isinstance(exc, sqlite3.Error):
            return None
        else:
            code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
        if code not in (SQLITE_IOERR, SQLITE_FULL):
            return None
        try:
            free = shutil.disk_usage(self.data_dir).free
        except OSError:
            return None
        if code == SQLITE_IOERR and free >= FULL_BELOW_BYTES:
            return None
        return (f"the disk holding {self.data_dir} is full ({free / 1e6:.1f} MB free; the database is not damaged, "
                "do not restore a backup): free some space (old backups or exports, `sudo journalctl --vacuum-size=50M`)"
                + (" or lower store.retention_days" if self.retention_setting else "") + ", then try again")

    # ------------------------------------------------------------ settings
    @staticmethod
    def read_setting_only(db: Path, key: str) -> Any:
        """A saved setting read without writing anything: no migration, no -wal or -shm made
        (``config --check`` runs beside a running service, or before an upgrade restarts it,
        on an older release's database). None: no database, no such setting, or unreadable."""
        if not db.is_file():
            return None
        # a read-only connection to a WAL database makes its -wal and -shm when they are not there: made by
        # root (sudo ... --check), the service could no longer open its own database. Without them the
        # file holds everything, read as it is (immutable); with them (the service running) they are used
        live = all(db.with_name(db.name + end).is_file() for end in ("-wal", "-shm"))
        try:
            conn = sqlite3.connect(db.absolute().as_uri() + ("?mode=ro" if live else "?immutable=1"), uri=True, timeout=2)
            try:
                row = conn.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
            finally:
                conn.close()
            return json.loads(row[0]) if row else None
        except (sqlite3.Error, ValueError, TypeError, RecursionError):
            return None

    def get_setting(self, key: str, default=None):
        """A saved setting, or ``default``; an unreadable one (damage, a hand edit) is logged
        and read as unset: a start ended in a JSONDecodeError traceback. Saving it again
        replaces it."""
        row = self.connect().execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        if not row:
            return default
        try:
            return json.loads(row[0])
        except (ValueError, TypeError, RecursionError) as exc:
            log.warning("the saved setting %r in %s cannot be read (%s): it is ignored until it is saved again (for "
                        "the admin's settings: Admin > Settings, Save)", key, self.path, exc)
            return default

    def set_setting(self, key: str, value, audit: tuple[str, str, str, str] | None = None) -> None:
        """Save a setting; with ``audit`` (actor, action, target, detail), its audit row in the same
        write: on a full disk a save answered "not done" had been saved and applied, unaudited."""
        with self.transaction() as conn:
            conn.execute("INSERT INTO settings(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = "
                         "excluded.value", (key, json.dumps(value)))
            if audit is not None:
                _insert_audit(conn, *audit)

    # ------------------------------------------------------------ audit
    def audit(self, actor: str, action: str, target: str = "", detail: str = "") -> None:
        """Record an admin's change. Kept at least ``AUDIT_KEEP_DAYS`` (longer than a short
        retention), so a deletion stays accountable after the data it removed is gone."""
        with self.transaction() as conn:
            _insert_audit(conn, actor, action, target, detail)

    # ------------------------------------------------------------ live loop
    def log_state_change(self, t: float, level: str, group: str, emotion: str | None, confidence: float | None) -> None:
        with self.transaction() as conn:
            conn.execute("INSERT INTO state_changes(t, level, grp, emotion, confidence) VALUES (?, ?, ?, ?, ?)",
                         (t, level, group, emotion, confidence))
            if self.outbox_enabled:
                # dated when queued, which the retention purge compares: a start's Absent dated at the
                # last sign of life (weeks back after a power cut before the holidays) was purged a
                # second after the start, before the broker had it, leaving the old retained state
                queue_message(conn, max(t, time.time()), "state",
                              {"level": group, "label": level, "since": t, "emotion": emotion})
        self.outbox_event.set()

    def note_paused_alive(self, pause: float, seen: float, stopped: bool = False) -> None:
        """The paused loop was alive at ``seen`` (``pause``: when its pause was logged), or is
        stopping cleanly: one row overwritten, at most once a minute (``CaptureLoop``)."""
        self.set_setting(PAUSE_SEEN_KEY, {"pause": pause, "seen": seen, "stopped": stopped})

    def last_sign_of_life(self, now: float | None = None) -> LastRun | None:
        """How the last run ended, or None with nothing logged. A clean stop logs Absent, or
        during a pause marks the pause's sign of life stopped; any other end was a crash or a
        power loss, and the loop was last seen alive at the latest of that change, the end of
        the last minute row (one is written every minute it runs) and the last alert; during
        a pause, at the pause's last sign of life (``note_paused_alive``).

        With ``now`` (the caller's clock), never later than ``now`` nor earlier than that
        change: a pause or a stop writes the minute it is in, whose end a run that died
        within it never reached, and a clock set back (a Pi without RTC boots with the time
        of its last shutdown) puts every earlier row in its future."""
        last = self.query("SELECT level, grp, t FROM state_changes ORDER BY t DESC, id DESC LIMIT 1")
        if not last:
            return None
        level, group, began = last[0]["level"], last[0]["grp"], last[0]["t"]
        if level == Group.PAUSED:
            mark = self.get_setting(PAUSE_SEEN_KEY)
            if not isinstance(mark, dict) or mark.get("pause") != began or mark.get("stopped"):
                # stopped cleanly, or paused by a version that wrote no sign of life: nothing
                # says the pause ended before the next start
                return LastRun(level, began, crashed=False, began=began)
            seen = float(mark["seen"])
        else:
            minute = self.query("SELECT MAX(minute) FROM minute_stats")[0][0]
            alert = self.query("SELECT MAX(t) FROM alerts")[0][0]
            seen = max((minute + 60) if minute is not None else 0, alert or 0)
        if now is not None:
            seen = min(seen, now)
        restored = self.get_setting(RESTORED_KEY)
        restored = isinstance(restored, dict) and isinstance(restored.get("at"), (int, float)) \
            and restored["at"] >= max(began, seen)  # nothing logged since the restore
        # an Absent of any words ("Absent - camera not working" too) ended nothing a crash could run on
        return LastRun(level, max(began, seen), crashed=group != Group.ABSENT, began=began, restored=restored)

    def log_minute(self, row: dict) -> None:
        cols = [GROUP_COLUMNS[g] for g in GROUP_COLUMNS]
        values = [row.get(g, 0.0) for g in GROUP_COLUMNS]
        updates = ", ".join(f"{c} = {c} + excluded.{c}" for c in ["frames", "faces", *cols])
        with self.transaction() as conn:
            conn.execute(
                f"INSERT INTO minute_stats(minute, frames, faces, {', '.join(cols)}) "
                f"VALUES (?, ?, ?, {', '.join('?' for _ in cols)}) "
                f"ON CONFLICT(minute) DO UPDATE SET {updates}",
                (row["minute"], row["frames"], row["faces"], *values),
            )
            if self.outbox_enabled:
                body = dict(zip(["frames", "faces", *cols], [row["frames"], row["faces"], *values]))
                # row["minute"] is the minute's start in unix seconds (engagement.MinuteAggregator)
                queue_message(conn, row["minute"], "minute", {"start": row["minute"], **body})
        self.outbox_event.set()

    def log_alert(self, t: float, level: str, snapshot_path: str | None = None, snapshot: bytes | None = None) -> None:
        """The alert's row, with its camera frame (``snapshot``, the JPEG) written first under
        ``snapshot_path``: one call, so a frame is never kept without the row that names it
        (the retention purge finds frames by their rows). A row refused takes its frame with it."""
        if snapshot is not None and snapshot_path is not None:
            self.write_image(snapshot_path, snapshot)
        try:
            self.execute("INSERT INTO alerts(t, level, snapshot_path) VALUES (?, ?, ?)", (t, level, snapshot_path))
        except BaseException:
            if snapshot is not None and snapshot_path is not None:
                self.remove_image(snapshot_path)
            raise

    def delete_alert_snapshots(self, alert_id: int | None = None) -> int:
        """Delete the stored camera frames of one alert (``alert_id``) or of all; the alerts
        themselves stay (the day's count). Each picture goes before its row forgets it, so
        a full disk that refuses the update still leaves no frame behind. Returns how many."""
        where, args = ("id = ?", (alert_id,)) if alert_id is not None else ("1 = 1", ())
        rows = self.query(f"SELECT id, snapshot_path FROM alerts WHERE {where} AND snapshot_path IS NOT NULL", args)
        for _, path in rows:
            self.remove_image(path)
        # by number: an alert the loop logs meanwhile keeps its frame and its name for it
        for start in range(0, len(rows), 500):
            ids = [r[0] for r in rows[start:start + 500]]
            self.execute(f"UPDATE alerts SET snapshot_path = NULL WHERE id IN ({','.join('?' * len(ids))})", ids)
        return len(rows)

    # ------------------------------------------------------------ uploads
    def add_upload(self, user_id: int | None, filename: str, width: int, height: int, faces: list[dict],
                   image_path: str | None = None, form_key: str | None = None) -> int:
        """Store an analysed upload and its faces; ``form_key``: the form that sent it
        (``resubmit.form_key``), written with the row so a resent form finds it even after a restart."""
        with self.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO uploads(user_id, created, filename, width, height, face_count, image_path, form_key) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (user_id, time.time(), filename, width, height, len(faces), image_path, form_key),
            )
            upload_id = cur.lastrowid
            conn.executemany(
                "INSERT INTO upload_faces(upload_id, x, y, w, h, emotion, confidence, probabilities, engagement) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(upload_id, *f["box"], f["emotion"], f["confidence"], json.dumps(f["probabilities"]), f["engagement"])
                 for f in faces],
            )
        return upload_id

    def set_upload_image(self, upload_id: int, relative: str) -> bool:
        """Record the kept image (under ``images/``) of an upload; False when the upload is
        gone (deleted while its image was written): the caller removes the image then."""
        return self.execute("UPDATE uploads SET image_path = ? WHERE id = ?", (relative, upload_id)).rowcount == 1

    # ------------------------------------------------------------ housekeeping
    def purge(self, retention_days: int, now: float | None = None) -> int:
        """Delete rows and kept images older than ``retention_days``; returns rows removed
        (in batches of ``PURGE_BATCH``: a writer waits for one batch at most)."""
        now = time.time() if now is None else now
        return self.purge_before(now - retention_days * 86400, now - audit_days(retention_days) * 86400)

    def purge_before(self, cutoff: float | None, audit_cutoff: float | None,
                     kept: tuple[float, float] | None = None, audit_kept: tuple[float, float] | None = None) -> int:
        """Delete rows and kept images stamped before ``cutoff`` (the audit's before
        ``audit_cutoff``); None: none is old enough yet. ``purge`` gives them by the calendar,
        ``RunningTime.cutoff`` by the device's running time while its clock is not set.
        ``kept`` (``audit_kept``): rows stamped from its first time to before its second stay
        (stamped by a clock not set yet, and not old enough by running time)."""
        removed = 0
        for table, column, before, image, keep in (
                ("uploads", "created", cutoff, "image_path", kept), ("alerts", "t", cutoff, "snapshot_path", kept),
                ("state_changes", "t", cutoff, None, kept), ("minute_stats", "minute", cutoff, None, kept),
                ("outbox", "t", cutoff, None, kept), ("audit", "t", audit_cutoff, None, audit_kept)):
            if before is not None:
                removed += self._purge_table(table, column, before, image, keep)
        if cutoff is not None:
            removed += self._purge_pause_mark(cutoff)
        if removed:
            self.give_back_space()  # lowering the retention is the way out of a full disk: it must free the disk
        if removed or self._forget_pending:  # pending: a reader deferred an earlier delete's checkpoint
            self.forget_deleted()
        return removed

    def _purge_pause_mark(self, cutoff: float) -> int:
        """The paused loop's sign of life goes once it was last seen before ``cutoff``: it
        holds a pause's times, which must not outlive the Paused row it dates (purged above)."""
        mark = self.get_setting(PAUSE_SEEN_KEY)
        if not isinstance(mark, dict) or not isinstance(mark.get("seen"), (int, float)) or mark["seen"] >= cutoff:
            return 0
        # only the row read: the paused loop may have written a newer one since
        return self.execute("DELETE FROM settings WHERE key = ? AND value = ?",
                            (PAUSE_SEEN_KEY, json.dumps(mark))).rowcount

    def _purge_table(self, table: str, column: str, before: float, image: str | None,
                     keep: tuple[float, float] | None = None) -> int:
        removed = 0
        extra = f", {image}" if image else ""
        lo, hi = keep if keep is not None else (before, before)  # an empty range: none kept
        while True:
            with self.transaction() as conn:
                rows = conn.execute(f"SELECT rowid{extra} FROM {table} WHERE {column} < ? "
                                    f"AND NOT ({column} >= ? AND {column} < ?) LIMIT ?",
                                    (before, lo, hi, PURGE_BATCH)).fetchall()
                conn.executemany(f"DELETE FROM {table} WHERE rowid = ?", [(r[0],) for r in rows])
            for row in rows:  # after the commit: a failed delete must not leave a row without its image
                if image and row[1]:
                    self.remove_image(row[1])
            removed += len(rows)
            if len(rows) < PURGE_BATCH:
                return removed

    def image_file(self, relative: str) -> Path:
        """A stored image's absolute path; refuses anything outside ``images/``."""
        root = (self.data_dir / "images").resolve()
        path = (root / relative).resolve()
        if root not in path.parents:
            raise ValueError(f"{relative!r} is not inside the image store")
        return path

    def remove_image(self, relative: str) -> None:
        """Delete a kept image; one that cannot be deleted now is said (a photo a student asked
        to delete stayed on the card without a word) and goes at the next start, as a file no
        row names (``leftovers``)."""
        try:
            self.image_file(relative).unlink(missing_ok=True)
        except ValueError as exc:  # a name outside images/: nothing there is this store's to delete
            log.warning("did not delete %r: %s", relative, exc)
        except OSError as exc:
            log.warning("could not delete the kept image %s (%s): it is deleted at the next start", relative, exc)

    def write_image(self, relative: str, data: bytes) -> str:
        """Write an image atomically under ``images/``; returns the relative path. The engage
        user's alone (0600, its folder 0700): written 0644, a photo of a student was one copy
        that keeps permissions away from any local user (the unit's UMask=0077 does not hold
        against an explicit mode)."""
        path = self.image_file(relative)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        atomic_write(path, data, mode=0o600)
        return relative

    def delete_upload(self, upload_id: int) -> bool:
        """Remove one upload, its faces and its kept image file; False when there is none."""
        return self._delete_uploads("id = ?", upload_id) > 0

    def delete_user_data(self, user_id: int, also: Callable[[sqlite3.Connection], object] | None = None) -> int:
        """Remove one user's uploads, their faces and kept image files; returns uploads removed.
        ``also(conn)`` runs in the same transaction (deleting the account itself): when it
        raises, nothing is deleted, image files included."""
        return self._delete_uploads("user_id = ?", user_id, also)

    def _delete_uploads(self, where: str, key: int, also: Callable[[sqlite3.Connection], object] | None = None) -> int:
        """Delete the uploads ``where`` names (their faces go with them, ON DELETE CASCADE),
        then their kept images; returns how many. On a full disk (in WAL mode a delete needs
        room too) the images go first, which frees some, and the rows are tried again: a
        student asking for a photo to go gets its picture gone even when the row must wait."""
        try:
            return self._delete_uploads_once(where, key, also)
        except sqlite3.Error as exc:
            if not self.disk_full_advice(exc):
                raise
            for (path,) in self.query(f"SELECT image_path FROM uploads WHERE {where} AND image_path IS NOT NULL",
                                      (key,)):
                self.remove_image(path)
            return self._delete_uploads_once(where, key, also)

    def _delete_uploads_once(self, where: str, key: int, also: Callable[[sqlite3.Connection], object] | None) -> int:
        with self.transaction() as conn:
            paths = [r[0] for r in conn.execute(
                f"SELECT image_path FROM uploads WHERE {where} AND image_path IS NOT NULL", (key,))]
            removed = conn.execute(f"SELECT COUNT(*) FROM uploads WHERE {where}", (key,)).fetchone()[0]
            if also is not None:  # first: a refusal (the last admin) comes before any write, so a full disk's
                also(conn)  # retry, which removes the images first, only ever follows a check that passed
            conn.execute(f"DELETE FROM uploads WHERE {where}", (key,))  # (those an account's row took are gone)
        for path in paths:  # after the commit: a failed delete must not leave a row without its image
            self.remove_image(path)
        if removed:
            self.forget_deleted()
        return removed

    def forgetting_deferred(self) -> bool:
        """Whether a reader deferred the last ``forget_deleted`` (the log still holds what it removed)."""
        return self._forget_pending

    def forget_deleted(self) -> None:
        """After a delete that names someone (a photo's file name, a user): secure_delete has
        zeroed the rows in the database's pages, but the write-ahead log still holds those
        pages as they were until about 500 more writes reuse it; a copied SD card gave the
        names back. Emptying the log is one checkpoint, and deletes are rare. It waits
        ``FORGET_WAIT_MS`` at most (while it waits no writer may write, and the request that
        deleted waits too): a reader holding the log open (a backup, an export) defers it to
        the next purge (the delete itself is done)."""
        conn = self.connect()
        try:
            conn.execute(f"PRAGMA busy_timeout = {FORGET_WAIT_MS}")
            busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        except sqlite3.Error:
            busy = 1
        finally:
            with contextlib.suppress(sqlite3.Error):
                conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        self._forget_pending = bool(busy)

    def free_mb(self) -> float:
        return shutil.disk_usage(self.data_dir).free / 1e6

    def keep_reserve(self, size: int, keep_free: int = 0) -> bool:
        """Hold ``size`` bytes of the disk in the data directory's ``reserve`` file (really
        allocated, not sparse) when there is room for it: ``RESERVE_ROOM`` times as much free,
        and ``keep_free`` (``store.min_free_mb``) still free once it is taken, or logging would
        pause for it. Whether it is held; 0 lets go of one held. Called by the running
        service's clean-up, not by technician commands."""
        path = self.data_dir / RESERVE_NAME
        partial = path.with_name(f".{RESERVE_NAME}.tmp")
        try:
            if path.exists():
                if path.stat().st_size == size:
                    return True
                path.unlink()  # store.reserve_mb was changed
            free = shutil.disk_usage(self.data_dir).free
            if size <= 0 or free < RESERVE_ROOM * size or free - size < keep_free:
                return False
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                try:
                    os.posix_fallocate(fd, 0, size)
                except OSError as exc:
                    if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                        raise
                    block = bytes(1 << 20)  # a file system without fallocate: written out
                    for start in range(0, size, len(block)):
                        os.write(fd, block[:size - start])
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(partial, path)
            return True
        except OSError as exc:
            with contextlib.suppress(OSError):
                partial.unlink()
            log.warning("could not keep %.0f MB in reserve for a full disk in %s: %s", size / 1e6, self.data_dir, exc)
            return False

    def release_reserve(self) -> int:
        """Give up the reserve (the disk is full); the bytes freed, 0 when none was held."""
        return release_reserve(self.data_dir)

    def integrity_ok(self) -> bool:
        return self.connect().execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def release_reserve(data_dir: Path) -> int:
    """Give up the reserve in ``data_dir`` (the disk is full), also when its database cannot even
    be opened; the bytes freed, 0 when none was held. A reserve half made when its process was
    killed goes too."""
    size = 0
    for path in (data_dir / RESERVE_NAME, data_dir / f".{RESERVE_NAME}.tmp"):
        try:
            blocks = path.stat().st_blocks * 512
            path.unlink()
            size += blocks
        except OSError:
            pass
    if not size:
        return 0
    log.warning("the disk holding %s is full: gave up the %.0f MB kept in reserve, so that an admin can log in and "
                "free space (it is kept again once there is room)", data_dir, size / 1e6)
    return size


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (or ``ROLLBACK`` on error) on one connection."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type, exc, tb):
        if not exc_type:
            self.conn.execute("COMMIT")
        elif self.conn.in_transaction:  # SQLite has already rolled back after some errors (SQLITE_FULL):
            self.conn.execute("ROLLBACK")  # a ROLLBACK then would raise and hide the error itself
        return False
