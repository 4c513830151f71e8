"""The CSV export of the log, the audit log and the accounts: ``engage-edge export`` and the
web log's "Download CSV" write one format, row by row as it is read.

``check_destination`` (where a backup or an export may be written, and what it may replace)
is here, beside the header it knows an earlier export by (``EXPORT_COLUMNS``, its default):
in store/copying.py, with the rest a backup and an export share, it would import this module
back.
"""
from __future__ import annotations

import contextlib
import csv
import datetime as dt
import io
import itertools
import math
import os
import re
import sqlite3
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

from edge_app.engagement import NO_FACE, UNCERTAIN, group_of
from edge_app.fsutil import atomic_path, remove_stale_temps, user_name
from edge_app.store.copying import (
    BackupError,
    CopyFailed,
    damaged_database,
    folder_named,
    is_database_file,
    kernel_file_system,
    open_database,
    through_link,
    why_write_failed,
)
from edge_app.store.database import DB_NAME, newer_schema
from edge_app.store.schema import GROUP_COLUMNS

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


def check_destination(dest: Path, db: Path, *, replaces: str, header: list[str] = EXPORT_COLUMNS) -> Path:
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
    kernel = kernel_file_system(folder)
    if kernel:
        raise BackupError(f"cannot write {named}: {folder} is on the kernel's {kernel} file system, not a file on a "
                          "disk: give a file on a disk (e.g. in /tmp, or on a USB stick)")
    images = os.path.realpath(db.with_name("images"))
    if os.path.commonpath([images, os.path.realpath(folder)]) == images:
        # the service's next start removes every file there that no row names (store/leftovers.py)
        raise BackupError(f"cannot write {named}: it is inside the data directory's images folder ({images}), whose "
                          "files the service deletes at its next start unless a record names them: choose a folder "
                          "outside it (e.g. the data directory itself, or a USB stick)")
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
    if replaces == "backup" and st.st_size:
        _check_earlier_backup(target, named)
    if replaces == "export" and is_database:
        raise BackupError(f"{named} is a database (a backup?), not a CSV file: the export would replace it; "
                          "choose another name (e.g. log.csv)")
    if replaces == "export" and st.st_size and not _is_export(target, header):
        raise BackupError(f"{named} exists and is not an earlier export of this kind (its first line is not this "
                          f"export's header, {','.join(header[:3])},...): the export would replace it; choose another "
                          "name (e.g. log.csv), or move that file away first if it is no longer needed")
    return target


def _check_earlier_backup(target: Path, named: str) -> None:
    """A database a backup may replace is an earlier backup, or a BackupError says why not:
    another data directory's live engage.db (named so, or with its -wal or -shm beside it: the
    newest records are there) or any other database (a school's grades.db) was replaced whole.
    A backup carries no mark of its own (its "made on" stamp only where the desk ever
    published), so one is known by what ``backup`` makes: engage-edge's tables, in one
    self-contained file (journal_mode=delete; a live database is in WAL mode, closed or not)."""
    beside = [f"{target}{end}" for end in ("-wal", "-shm", "-journal") if os.path.lexists(f"{target}{end}")]
    if target.name == DB_NAME or beside:
        why = f"{', '.join(beside)} beside it" if beside else f"named {DB_NAME}"
        raise BackupError(f"{named} looks like a data directory's live database ({why}): a backup would replace its "
                          "records; choose another name (e.g. backup.db), or a folder for a dated file")
    if not _is_backup(target):
        raise BackupError(f"{named} is a database but not an earlier engage-edge backup (it lacks engage-edge's tables, "
                          "or is in WAL mode as a live database is): a backup would replace it; choose another name, "
                          "or move that file away first if it is no longer needed")


BACKUP_TABLES = {"settings", "users", "uploads", "alerts"}  # what every engage-edge database has


def _is_backup(path: Path) -> bool:
    """A file ``backup`` wrote: engage-edge's tables (``BACKUP_TABLES``), not in WAL mode
    (bytes 18 and 19 of the header: 2 in WAL mode). Read as it is, writing nothing beside it."""
    with open(path, "rb") as f:
        header = f.read(20)
    if len(header) < 20 or header[18] == 2 or header[19] == 2:
        return False
    try:
        with contextlib.closing(sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro&immutable=1", uri=True)) as conn:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.Error:
        return False
    return BACKUP_TABLES <= tables


def _is_export(path: Path, header: list[str] = EXPORT_COLUMNS) -> bool:
    """An earlier export of the same kind (ours, or for the log the web's "Download CSV") by
    its first line, byte order mark or not: ``header``'s columns, or the first of them (at
    least two: an export an older release wrote had fewer after them). A school's roster
    "username,role,first name,..." is no accounts export, nor a log export an audit one."""
    with open(path, "rb") as f:
        first = f.read(1024).decode("utf-8-sig", errors="replace").splitlines()[:1]
    columns = first[0].split(",") if first else []
    return len(columns) >= 2 and columns == header[:len(columns)]


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
    stdout = sys.stdout
    if out is None and stdout is None:  # started with it closed (>&-): Python has no sys.stdout
        raise BackupError("standard output is closed: give --out FILE (or open it: > log.csv)")
    if out is not None:  # a wrong --out is said at once, not after reading a year of rows
        out = folder_named(out)
        out = check_destination(out, db, replaces="export", header=EXPORTS[what])
        remove_stale_temps(out)  # a killed export's hidden part of the log
    # written as read: a list of ten years' rows took 2.2 GB. The first row is read before a
    # byte is written, so a database that cannot be read (a newer schema) still writes nothing.
    reader = export_rows(data_dir, since, until, what)
    columns = EXPORTS[what]
    first = next(reader, None)
    rows = itertools.chain([first], reader) if first is not None else iter(())
    if out is None:
        try:
            count = write_log_csv(stdout, rows, columns)
            stdout.flush()
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise CopyFailed(f"cannot write the CSV to standard output: {why_write_failed(exc, stdout.fileno())}") from None
        return count
    try:
        # 0600, as a backup: students' names and states, not for every user of the machine; with a
        # byte order mark (utf-8-sig), as the web's CSV, or Excel on Windows reads "Müller" as "MÃ¼ller"
        with atomic_path(out, 0o600, held=True) as tmp, open(tmp, "w", newline="", encoding="utf-8-sig") as f:
            count = write_log_csv(f, rows, columns)
    except OSError as exc:
        raise CopyFailed(f"cannot write {out}: {why_write_failed(exc, out.absolute().parent)}; nothing was written") from None
    return count
