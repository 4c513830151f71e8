"""A desk over the years: upgraded from the first release, and killed (kill -9, a power cut)
at the worst moment of a migration. What was recorded is all there afterwards, the same, and
the next start works.

The first release's database is made as it made it: migration 1's text (never edited since
it was released), in WAL mode, with the rows its
code wrote: an admin and a student with their passwords, a session, uploads with their faces
and kept photos, the live log, an alert with its camera frame, the admin's saved settings.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import wait_for

from edge_app import config as config_mod
from edge_app.store.accounts import Accounts, hash_password
from edge_app.store.database import DB_NAME, Store
from edge_app.store.leftovers import hold_images
from edge_app.store.schema import MIGRATIONS

ROOT = Path(__file__).resolve().parent.parent
T0 = 1_780_000_000.0  # a school day in 2026 (no clean-up runs here)
ADMIN_PW, STUDENT_PW = "Dove-Lantern-Quiet-8", "ann-password-12"
# what the first release's Admin > Settings saved (its SETTINGS, af76adf), as it saved them
FIRST_SETTINGS = {"engagement.min_hold_s": 4.0, "indicators.quiet_hours": "22:00-07:00",
                  "privacy.keep_uploads": "full", "store.retention_days": 90, "indicators.buzzer": False}
TABLES = ("users", "sessions", "uploads", "upload_faces", "state_changes", "minute_stats", "alerts", "settings")


def first_release_database(data: Path, alerts: int = 1) -> dict[str, list[tuple]]:
    """``data`` holding a database as the first release (schema 1) left it; returns its rows,
    table by table, as they were."""
    (data / "images" / "uploads").mkdir(parents=True)
    (data / "images" / "alerts").mkdir()
    with contextlib.closing(sqlite3.connect(data / DB_NAME)) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.executescript(f"BEGIN IMMEDIATE; {MIGRATIONS[0]}; PRAGMA user_version = 1; COMMIT;")
        with conn:
            conn.execute("INSERT INTO users VALUES (1, 'admin', ?, 'admin', 0, ?, ?)",
                         (hash_password(ADMIN_PW), T0, T0 + 100))
            conn.execute("INSERT INTO users VALUES (2, 'Ann', ?, 'student', 0, ?, NULL)", (hash_password(STUDENT_PW), T0 + 1))
            conn.execute("INSERT INTO sessions VALUES ('hash-of-a-token', 2, 'csrf', ?, ?)", (T0 + 2, T0 + 3))
            for upload_id, kept in ((3, True), (7, False)):  # 1, 2, 4-6 deleted by then
                path = f"uploads/{upload_id}.jpg" if kept else None
                conn.execute("INSERT INTO uploads VALUES (?, 2, ?, 'class photo.jpg', 640, 480, 2, ?)",
                             (upload_id, T0 + 10 * upload_id, path))
                if path:
                    (data / "images" / path).write_bytes(b"\xff\xd8 a student's photo")
                for x in (10, 200):
                    conn.execute("INSERT INTO upload_faces(upload_id, x, y, w, h, emotion, confidence, probabilities, "
                                 "engagement) VALUES (?, ?, 20, 64, 64, 'happiness', 0.87, ?, 'Engaged - likes the topic')",
                                 (upload_id, x, json.dumps({"happiness": 0.87, "neutral": 0.13})))
            conn.executemany("INSERT INTO state_changes(t, level, grp, emotion, confidence) VALUES (?, ?, ?, ?, ?)",
                             [(T0 + 60 * i, level, grp, emotion, conf) for i, (level, grp, emotion, conf) in enumerate([
                                 ("Engaged - paying attention", "Engaged", "neutral", 0.71),
                                 ("Not engaged", "Not engaged", "sadness", 0.64),
                                 ("Absent", "Absent", None, None)])])
            conn.executemany("INSERT INTO minute_stats VALUES (?, 1800, 1750, 40.5, 10.0, 5.5, 2.0, 2.0)",
                             [(int(T0) // 60 * 60 + 60 * i,) for i in range(3)])
            conn.executemany("INSERT INTO alerts(t, level, snapshot_path) VALUES (?, 'Not engaged', ?)",
                             [(T0 + 120 + i, "alerts/first.jpg" if i == 0 else None) for i in range(alerts)])
            (data / "images" / "alerts" / "first.jpg").write_bytes(b"\xff\xd8 a camera frame")
            conn.execute("INSERT INTO settings VALUES ('config_overrides', ?)", (json.dumps(FIRST_SETTINGS),))
        rows = {table: conn.execute(f"SELECT * FROM {table} ORDER BY rowid").fetchall() for table in TABLES}
    return rows


def assert_kept(store: Store, before: dict[str, list[tuple]]) -> None:
    """Every row as it was, under its number, in the columns it had (new columns come after)."""
    for table, rows in before.items():
        now = [tuple(r)[:len(rows[0])] for r in store.query(f"SELECT * FROM {table} ORDER BY rowid")]
        assert now == [tuple(r) for r in rows], table
    assert store.query("PRAGMA foreign_key_check") == [] and store.integrity_ok()



def killed_once_held(child: subprocess.Popen, flag, what: str) -> None:
    """SIGKILL ``child`` once it has written ``flag`` (it then holds at the moment chosen), as a
    power cut would; it must not have ended before."""
    try:
        wait_for(lambda: flag.exists() or child.poll() is not None, 30, what=what)
        assert child.poll() is None, child.communicate()
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.communicate(timeout=30)

def test_a_first_release_database_comes_through_every_migration_whole(tmp_path, cfg):
    """A desk set up with the first release and upgraded to this one: every row is there, the
    same, under its number; both can log in with their passwords; the kept photo and the alert's
    frame are still found (the start deletes every picture no row names); the admin's saved
    settings still apply; and numbers deleted before are never given again."""
    data = tmp_path / "data"
    data.mkdir()
    before = first_release_database(data)
    store = Store(data)
    try:
        assert store.migrated_from == 1 and store.schema_version() == len(MIGRATIONS)
        assert_kept(store, before)
        os.close(hold_images(store))  # the start's clean-up of pictures no row names
        assert store.image_file("uploads/3.jpg").read_bytes() == b"\xff\xd8 a student's photo"
        assert store.image_file("alerts/first.jpg").is_file()
        accounts = Accounts(store)
        assert accounts.authenticate("admin", ADMIN_PW).role == "admin"
        assert accounts.authenticate("ann", STUDENT_PW).id == 2
        applied = config_mod.with_changes(cfg, {"store.data_dir": str(data)})
        from edge_app.web.admin_settings import with_saved_settings

        applied = with_saved_settings(store, applied)
        assert (applied.engagement.min_hold_s, applied.indicators.quiet_hours, applied.privacy.keep_uploads,
                applied.store.retention_days, applied.indicators.buzzer) == (4.0, "22:00-07:00", "full", 90, False)
        assert store.add_upload(2, "new.jpg", 10, 10, []) == 8
        assert [r[0] for r in store.query("SELECT present_s FROM minute_stats")] == [0.0] * 3  # not measured then
    finally:
        store.close()


# A start that migrates, held where the kill is to land: as the statement starting with argv[3]
# begins, or ("inside") part-way through it (50,000 steps of SQLite's machine in: a third of the
# VACUUM below)
MIGRATING_CHILD = r"""
import sys, time
from pathlib import Path
from edge_app.store import database

data, flag, sql, inside = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4] == "inside"
opened = database.Store.connect
armed = []

def hold():
    flag.touch()
    time.sleep(600)

def connect(self):
    conn = opened(self)
    def trace(statement):
        if statement.lstrip().startswith(sql):
            armed.append(0)
            if not inside:
                hold()
    def progress():
        if armed:
            armed[0] += 1
            if armed[0] > 50:
                hold()
        return 0
    conn.set_trace_callback(trace)
    conn.set_progress_handler(progress, 1000)
    return conn

database.Store.connect = connect
database.Store(data)
"""


@pytest.mark.parametrize("held_at, inside, version", [
    # migration 11: the alerts' table dropped, the new one filled and not yet named
    ("ALTER TABLE alerts_new RENAME TO alerts", False, 10),
    # the one-time VACUUM that makes an old database give purged space back, outside any migration, part-way
    ("VACUUM", True, len(MIGRATIONS)),
])
def test_a_migration_killed_part_way_loses_nothing_and_the_next_start_finishes_it(tmp_path, cfg, held_at, inside,
                                                                                 version):
    """kill -9 (or a power cut) while a first-release database with years of alerts is being
    migrated: each migration is one transaction, and the VACUUM one of its own, so the next
    start finds the database as the last whole step left it and carries on; every row is
    there and the self-test passes."""
    data = tmp_path / "data"
    data.mkdir()
    before = first_release_database(data, alerts=30_000)
    flag = tmp_path / "held"
    child = subprocess.Popen([sys.executable, "-c", MIGRATING_CHILD, str(data), str(flag), held_at,
                              "inside" if inside else "at"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:
        wait_for(lambda: flag.exists() or child.poll() is not None, 30, what=f"the migration held at {held_at}")
        assert child.poll() is None, child.communicate()
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL
    with contextlib.closing(sqlite3.connect(f"file:{data / DB_NAME}?mode=ro", uri=True)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == version  # killed where it was meant to be
        assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 0
    store = Store(data)  # the next start
    try:
        assert store.schema_version() == len(MIGRATIONS)
        assert store.query("SELECT name FROM sqlite_master WHERE name LIKE '%_new'") == []
        assert_kept(store, before)
        assert store.query("PRAGMA auto_vacuum")[0][0] == 2  # the VACUUM killed is done again
    finally:
        store.close()
    from edge_app.device.selftest import check_database

    assert "integrity ok" in check_database(config_mod.with_changes(cfg, {"store.data_dir": str(data)}))


def test_a_newer_releases_database_is_refused_and_left_byte_for_byte(tmp_path):
    """Going back to an older release after an upgrade (without restoring the backup made
    before it): the start says so and what to do, and changes nothing of the newer
    release's database, nor leaves files of its own beside it."""
    data = tmp_path / "data"
    Store(data).close()
    with contextlib.closing(sqlite3.connect(data / DB_NAME)) as conn:
        conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 3}")
    files = {p.name: p.read_bytes() for p in data.iterdir() if p.is_file()}
    from edge_app.store.database import StoreError

    with pytest.raises(StoreError, match="newer than this engage-edge .*: upgrade engage-edge or restore an older backup"):
        Store(data)
    assert {p.name: p.read_bytes() for p in data.iterdir() if p.is_file()} == files


# The clean-up of a desk whose photos are past retention, held as it removes the third photo's
# file: the rows it deleted are committed, most of their files not yet removed
PURGING_CHILD = r"""
import sys, time
from pathlib import Path
from edge_app.store.database import Store

data, flag = Path(sys.argv[1]), Path(sys.argv[2])
store = Store(data)
removing = store.remove_image
removed = []

def remove_image(relative):
    removed.append(relative)
    if len(removed) == 3:
        flag.touch()
        time.sleep(600)
    removing(relative)

store.remove_image = remove_image
store.purge(30)
"""


def test_a_clean_up_killed_between_its_rows_and_their_photos_leaves_no_photo_after_the_next_start(tmp_path):
    """kill -9 during the retention clean-up, after it deleted old uploads' rows and before it
    removed their photos: a student's photo no row names would stay on the card for ever (no
    clean-up or "Delete" can find it). The next start removes those, and only those."""
    data = tmp_path / "data"
    store = Store(data)
    old, new = [], []
    for ids, at in ((old, 40), (new, 1)):
        for _ in range(10):
            upload = store.add_upload(None, "photo.jpg", 10, 10, [])
            store.execute("UPDATE uploads SET created = strftime('%s', 'now') - ? * 86400 WHERE id = ?", (at, upload))
            store.set_upload_image(upload, store.write_image(f"uploads/{upload}.jpg", b"\xff\xd8 a student"))
            ids.append(upload)
    store.close()
    flag = tmp_path / "held"
    child = subprocess.Popen([sys.executable, "-c", PURGING_CHILD, str(data), str(flag)], cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed_once_held(child, flag, "the clean-up removing photos")
    images = data / "images" / "uploads"
    assert len(list(images.iterdir())) == 20 - 2  # the rows went; 8 of their photos are still there
    store = Store(data)  # the next start
    try:
        assert [r[0] for r in store.query("SELECT id FROM uploads ORDER BY id")] == new
        os.close(hold_images(store))
        assert sorted(int(p.stem) for p in images.iterdir()) == new
    finally:
        store.close()


# A service killed (kill -9) with rows only in its write-ahead log, then a restore held after
# it moved the database aside (argv[3]: how many files), before the backup is put in its place
KILLED_WRITER = r"""
import os, signal, sys
from edge_app.store.database import Store

store = Store(sys.argv[1])
store.execute("PRAGMA wal_autocheckpoint = 0")  # the newest rows stay in the -wal, as between checkpoints
store.log_state_change(1_800_000_000.0, "Engaged - paying attention", "Engaged", "neutral", 0.9)
os.kill(os.getpid(), signal.SIGKILL)
"""
RESTORING_CHILD = r"""
import os, sys, time
from pathlib import Path
from edge_app.cli import main

flag, moves = Path(sys.argv[1]), int(sys.argv[2])
replacing = os.replace
moved = []

def replace(src, dst):
    replacing(src, dst)
    if str(dst).endswith(".old"):
        moved.append(dst)
        if len(moved) == moves:
            flag.touch()
            time.sleep(600)

os.replace = replace
main(sys.argv[3:])
"""


@pytest.mark.parametrize("moves", [1, 2])
def test_a_restore_killed_between_its_moves_is_put_back_by_the_command_the_start_gives(tmp_path, moves):
    """A power cut in the middle of `engage-edge restore`, after it moved the database (and
    perhaps its -wal, which holds the newest rows of a service that was killed) aside and
    before the backup was in place: the start refuses, and the command its message gives,
    run as it is, puts the database back with every row, the newest ones too."""
    data = tmp_path / "data"
    Store(data).close()
    saved = tmp_path / "backup.db"
    from edge_app.store.backup import backup

    backup(data, saved)
    writer = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(data)], cwd=ROOT, capture_output=True, text=True)
    assert writer.returncode == -signal.SIGKILL and (data / "engage.db-wal").stat().st_size > 0, writer.stderr
    config = tmp_path / "config.toml"
    config.write_text("# defaults\n")
    flag = tmp_path / "held"
    child = subprocess.Popen([sys.executable, "-c", RESTORING_CHILD, str(flag), str(moves), "restore", str(saved),
                              "--data-dir", str(data), "--config", str(config)], cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed_once_held(child, flag, "the restore moving files aside")
    from edge_app.store.database import StoreError

    with pytest.raises(StoreError, match="engage.db is missing, but") as refused:
        Store(data)
    command = re.search(r"put the database it moved aside back: (cd .*?done)\. ", str(refused.value)).group(1)
    fixed = subprocess.run(["bash", "-c", command], capture_output=True, text=True)
    assert fixed.returncode == 0, fixed.stderr
    store = Store(data)
    try:
        assert [r[0] for r in store.query("SELECT t FROM state_changes")] == [1_800_000_000.0]
    finally:
        store.close()
