"""The SQLite store on a real file: WAL, versioned schema, uploads with faces, state
changes, minute aggregates, retention and the image directory."""
from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from conftest import fill_up, mounted_tmpfs, skip_unless_ci, wait_for

from edge_app.store import reports
from edge_app.store.database import DB_NAME, PAUSE_SEEN_KEY, WAL_LIMIT_BYTES, Store, StoreError
from edge_app.store.schema import MIGRATIONS


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "data")
    yield s
    s.close()


def face(emotion="happiness", box=(10, 20, 30, 40), engagement="Engaged - likes the topic") -> dict:
    return {"box": list(box), "emotion": emotion, "confidence": 0.8,
            "probabilities": {"happiness": 0.8, "neutral": 0.2}, "engagement": engagement}


def minute_row(minute: int, frames=600, faces=500, **seconds) -> dict:
    return {"minute": minute, "frames": frames, "faces": faces,
            **{g: seconds.get(g, 0.0) for g in ("Engaged", "Partially engaged", "Not engaged", "Distracted", "Absent")}}


def raw(store: Store) -> sqlite3.Connection:
    """A second, independent connection to the file, as another process would see it."""
    conn = sqlite3.connect(store.path)
    conn.row_factory = sqlite3.Row
    return conn


def test_the_web_threads_connections_keep_small_page_caches(store):
    """Each thread keeps its connection for the life of the service (96 web threads by
    default), and each one's page cache filled up to SQLite's default 2 MB as the log grew
    and admin pages scanned it: ~190 MB more resident memory after a few weeks of uptime,
    on a service of ~200 MB under MemoryMax=600M. They stay within 48 MB together."""
    from edge_app.config import WebSettings

    caches: list[int] = []

    def read() -> None:
        conn = store.connect()
        size = conn.execute("PRAGMA cache_size").fetchone()[0]  # negative: KiB, else pages
        caches.append(-size if size < 0 else size * conn.execute("PRAGMA page_size").fetchone()[0] // 1024)

    threads = [threading.Thread(target=read) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    read()
    assert len(caches) == 4 and 0 < max(caches) * WebSettings().threads <= 48 * 1024, caches


def test_creates_the_data_dir_and_a_wal_database(tmp_path, store):
    assert store.path == tmp_path / "data" / DB_NAME and store.path.is_file()
    assert (tmp_path / "data" / "images").is_dir()
    with raw(store) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"users", "sessions", "uploads", "upload_faces", "state_changes", "minute_stats", "alerts",
            "settings"} <= tables
    assert store.connect().execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert store.integrity_ok()


@pytest.mark.parametrize("left", ["engage.db", "images"])
def test_data_a_root_command_left_behind_is_refused_with_whom_to_give_it_back(left):
    """A technician's command run as plain root that created the database (or the images
    folder) in the service's data directory left the service a traceback at its start
    ("attempt to write a readonly database"), or "cannot serve on ...: Permission denied"
    for the port, which was fine. The store now says whose the file is and what to run."""
    if os.geteuid() != 0:
        skip_unless_ci("files of another user need root to make (CI runs as root)")
    nobody = 65534
    with tempfile.TemporaryDirectory(dir="/tmp") as top:
        data = Path(top) / "data"
        Store(data).close()  # root's, as `sudo engage-edge ...` makes it
        for path in [Path(top), data, *data.iterdir()]:
            if path.name != left:
                os.chown(path, nobody, nobody)
        probe = subprocess.run([sys.executable, "-c", "import os, pwd, sys, tempfile\n"
                                "from edge_app.store.database import Store, StoreError\n"
                                f"os.setgroups([]); os.setgid({nobody}); os.setuid({nobody})\n"
                                "try:\n    Store(sys.argv[1]).close()\nexcept StoreError as exc:\n    print(exc)",
                                str(data)], capture_output=True, text=True, timeout=60)
        assert f"{data / left} belongs to 'root'" in probe.stdout, probe.stdout + probe.stderr
        assert f"sudo chown -R nobody: {data}" in probe.stdout and "sudo -u nobody" in probe.stdout


def test_a_new_data_dir_is_readable_by_its_owner_only(tmp_path):
    """The log of minors, password hashes and kept photos: whatever the umask of the
    shell that first starts it (``make run`` on a shared laptop)."""
    old = os.umask(0o022)
    try:
        fresh = Store(tmp_path / "fresh")
        fresh.close()
        kept = tmp_path / "kept"
        kept.mkdir(mode=0o750)  # a technician gave the group access: left as it is
        Store(kept).close()
    finally:
        os.umask(old)
    assert (tmp_path / "fresh").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "fresh" / "images").stat().st_mode & 0o777 == 0o700
    assert kept.stat().st_mode & 0o777 == 0o750

def test_a_new_database_and_its_wal_files_are_readable_by_their_owner_only(tmp_path):
    """A self-test run from a shell (umask 022) before the service's first start made
    engage.db, -wal and -shm 0644; the docs say 0600 (the service's UMask=0077 did)."""
    old = os.umask(0o022)
    try:
        store = Store(tmp_path / "d")
        try:
            store.set_setting("probe", 1)
            files = [tmp_path / "d" / name for name in ("engage.db", "engage.db-wal", "engage.db-shm")]
            assert [f.stat().st_mode & 0o777 for f in files] == [0o600] * 3
        finally:
            store.close()
    finally:
        os.umask(old)


def test_schema_version_and_migrating_twice_is_a_no_op(tmp_path, store):
    assert store.schema_version() == len(MIGRATIONS) >= 1
    store.log_state_change(time.time(), "Absent", "Absent", None, None)
    store.migrate()
    store.close()
    again = Store(tmp_path / "data")
    try:
        assert again.schema_version() == len(MIGRATIONS)
        assert len(again.query("SELECT * FROM state_changes")) == 1  # nothing recreated, nothing lost
    finally:
        again.close()


def test_a_newer_schema_is_refused(tmp_path, store):
    store.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    store.close()
    with pytest.raises(StoreError, match="newer than this engage-edge") as err:
        Store(tmp_path / "data")
    assert f"schema version {len(MIGRATIONS) + 1}" in str(err.value)


def test_a_file_that_is_not_a_database(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / DB_NAME).write_bytes(b"this is not SQLite " * 100)
    with pytest.raises(StoreError, match=DB_NAME):
        Store(data)


def test_a_data_dir_that_cannot_be_created(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="the data directory .*/file/data lies under a file, not a folder: give the folder"):
        Store(blocker / "data")
    with pytest.raises(StoreError, match="/file is a file, not a folder: give the folder the database lives in with"):
        Store(blocker)
    # the data directory is fine: a file is where its images/ folder belongs (it said the directory was a file)
    Store(tmp_path / "desk").close()
    (tmp_path / "desk" / "images").rmdir()
    (tmp_path / "desk" / "images").write_text("x")
    with pytest.raises(StoreError, match=r"/desk/images is a file where engage-edge keeps a folder: move it away \(mv "):
        Store(tmp_path / "desk")


def test_upload_with_faces(store):
    uid = store.execute("INSERT INTO users(username, password_hash, role, created) VALUES ('ann', 'x', 'student', 0)").lastrowid
    upload_id = store.add_upload(uid, "class.jpg", 640, 480, [face(), face("sadness", (100, 100, 50, 50), "Not engaged")])
    with raw(store) as conn:
        up = conn.execute("SELECT * FROM uploads WHERE id = ?", (upload_id,)).fetchone()
        faces = conn.execute("SELECT * FROM upload_faces WHERE upload_id = ? ORDER BY id", (upload_id,)).fetchall()
    assert (up["user_id"], up["filename"], up["width"], up["height"], up["face_count"]) == (uid, "class.jpg", 640, 480, 2)
    assert up["image_path"] is None and abs(up["created"] - time.time()) < 60
    assert [(f["x"], f["y"], f["w"], f["h"], f["emotion"], f["engagement"]) for f in faces] == [
        (10, 20, 30, 40, "happiness", "Engaged - likes the topic"), (100, 100, 50, 50, "sadness", "Not engaged")]
    assert json.loads(faces[0]["probabilities"]) == {"happiness": 0.8, "neutral": 0.2}
    # deleting the user deletes their uploads and faces (foreign keys are on)
    store.execute("DELETE FROM users WHERE id = ?", (uid,))
    assert store.query("SELECT COUNT(*) FROM upload_faces")[0][0] == 0


def test_an_upload_number_is_never_given_again(store):
    """A deleted photo's number (the newest one's, or every one's after retention) is not
    reused: an old link, bookmark or audit line "photo #2" must not come to show another."""
    first = store.add_upload(None, "a.jpg", 10, 10, [face()])
    second = store.add_upload(None, "b.jpg", 10, 10, [face()])
    assert store.delete_upload(second)
    third = store.add_upload(None, "c.jpg", 10, 10, [face()])
    assert third > second > first
    store.execute("DELETE FROM uploads")
    assert store.add_upload(None, "d.jpg", 10, 10, []) > third


def test_an_alert_number_is_never_given_again(store, tmp_path):
    """After retention purged the alerts, numbering restarted at 1, so a snapshot link in an
    incident note showed another capture; a database from before migration 11 keeps its
    alerts' numbers and never gives them again."""
    store.log_alert(100.0, "Not engaged", "alerts/a.jpg")
    store.log_alert(200.0, "Not engaged", None)
    last = store.query("SELECT MAX(id) FROM alerts")[0][0]
    store.execute("DELETE FROM alerts")
    store.log_alert(300.0, "Distracted", None)
    assert store.query("SELECT id FROM alerts")[0][0] > last
    with _database_before(tmp_path / "old", migration=11) as conn:
        conn.execute("INSERT INTO alerts(id, t, level, snapshot_path) VALUES (7, 1.0, 'Not engaged', 'alerts/x.jpg')")
    old = Store(tmp_path / "old")
    try:
        assert [tuple(r) for r in old.query("SELECT id, snapshot_path FROM alerts")] == [(7, "alerts/x.jpg")]
        old.execute("DELETE FROM alerts")
        old.log_alert(2.0, "Not engaged", None)
        assert old.query("SELECT id FROM alerts")[0][0] == 8
    finally:
        old.close()


@contextlib.contextmanager
def _database_before(directory, migration: int):
    """A database as a version before ``migration`` left it, with one student, 'ann' (id 5)."""
    directory.mkdir()
    with sqlite3.connect(directory / DB_NAME) as conn:
        for number, sql in enumerate(MIGRATIONS[:migration - 1], 1):
            conn.executescript(f"{sql}; PRAGMA user_version = {number};")
        conn.execute("INSERT INTO users(id, username, password_hash, role, created) VALUES (5, 'ann', 'x', 'student', 0)")
        yield conn


def test_migrating_uploads_keeps_their_numbers_faces_and_cascades(tmp_path, caplog):
    """A database from before migration 8 keeps every upload and face, under the same
    numbers, and deleting still takes an upload's faces and a user's uploads with it. The
    log says which schemas the start migrated between, for a technician after an upgrade."""
    caplog.set_level("INFO", logger="edge_app.store.database")
    with _database_before(tmp_path / "old", migration=8) as conn:
        for upload_id in (3, 9):
            conn.execute("INSERT INTO uploads(id, user_id, created, filename, width, height, face_count) "
                         "VALUES (?, 5, 1.0, 'p.jpg', 10, 10, 1)", (upload_id,))
            conn.execute("INSERT INTO upload_faces(upload_id, x, y, w, h, emotion, confidence, probabilities, engagement) "
                         "VALUES (?, 1, 2, 3, 4, 'happiness', 0.9, '{}', 'Engaged')", (upload_id,))
    store = Store(tmp_path / "old")
    try:
        assert store.schema_version() == len(MIGRATIONS)
        assert f"from schema 7 to {len(MIGRATIONS)}" in caplog.text
        assert [tuple(r) for r in store.query("SELECT id, user_id FROM uploads ORDER BY id")] == [(3, 5), (9, 5)]
        assert [r[0] for r in store.query("SELECT upload_id FROM upload_faces ORDER BY upload_id")] == [3, 9]
        assert store.delete_upload(9)
        assert store.add_upload(5, "new.jpg", 10, 10, [face()]) == 10
        assert [r[0] for r in store.query("SELECT upload_id FROM upload_faces ORDER BY upload_id")] == [3, 10]
        assert store.query("PRAGMA foreign_key_check") == []
        store.execute("DELETE FROM users WHERE id = 5")
        assert store.query("SELECT COUNT(*) FROM uploads")[0][0] == 0
        assert store.query("SELECT COUNT(*) FROM upload_faces")[0][0] == 0
    finally:
        store.close()


def test_an_upload_without_faces(store):
    upload_id = store.add_upload(None, "empty.png", 10, 10, [])
    assert store.query("SELECT face_count FROM uploads WHERE id = ?", (upload_id,))[0][0] == 0


def test_a_failed_upload_leaves_nothing(store):
    with pytest.raises(KeyError):
        store.add_upload(None, "bad.jpg", 10, 10, [face(), {"box": [1, 2, 3, 4]}])
    assert store.query("SELECT COUNT(*) FROM uploads")[0][0] == 0  # rolled back as a whole


def test_state_changes_and_alerts(store):
    store.log_state_change(100.0, "Engaged - likes the topic", "Engaged", "happiness", 0.7)
    store.log_state_change(110.0, "Absent", "Absent", None, None)
    store.log_alert(120.0, "Not engaged", "alerts/1.jpg")
    with raw(store) as conn:
        rows = conn.execute("SELECT t, level, grp, emotion, confidence FROM state_changes ORDER BY t").fetchall()
        alerts = conn.execute("SELECT t, level, snapshot_path FROM alerts").fetchall()
    assert [tuple(r) for r in rows] == [(100.0, "Engaged - likes the topic", "Engaged", "happiness", 0.7),
                                        (110.0, "Absent", "Absent", None, None)]
    assert [tuple(a) for a in alerts] == [(120.0, "Not engaged", "alerts/1.jpg")]


def test_minute_aggregates_upsert_adds(store):
    store.log_minute(minute_row(600, Engaged=40.0, Absent=20.0))
    store.log_minute(minute_row(600, frames=100, faces=0, Absent=10.0))  # same minute again (a restart)
    store.log_minute(minute_row(660, **{"Partially engaged": 5.0, "Not engaged": 6.0, "Distracted": 7.0}))
    rows = {r["minute"]: r for r in store.query("SELECT * FROM minute_stats")}
    assert set(rows) == {600, 660}
    first = rows[600]
    assert (first["frames"], first["faces"], first["engaged_s"], first["absent_s"]) == (700, 500, 40.0, 30.0)
    second = rows[660]
    assert (second["partial_s"], second["not_engaged_s"], second["distracted_s"]) == (5.0, 6.0, 7.0)


def test_settings_round_trip(store):
    assert store.get_setting("live_frames", "off") == "off"
    store.set_setting("live_frames", {"on": True, "n": 3})
    store.set_setting("live_frames", {"on": False})
    assert store.get_setting("live_frames") == {"on": False}


def test_purge_removes_old_rows_and_their_images(store):
    now = time.time()
    old, new = now - 40 * 86400, now - 86400
    old_upload = store.add_upload(None, "old.jpg", 10, 10, [face()])
    new_upload = store.add_upload(None, "new.jpg", 10, 10, [face()])
    for upload_id, created in ((old_upload, old), (new_upload, new)):
        rel = store.write_image(f"uploads/{upload_id}.jpg", b"\xff\xd8\xff jpeg")
        store.execute("UPDATE uploads SET created = ?, image_path = ? WHERE id = ?", (created, rel, upload_id))
    store.write_image("alerts/old.jpg", b"old snapshot")
    store.log_alert(old, "Not engaged", "alerts/old.jpg")
    store.log_alert(new, "Not engaged")
    store.log_state_change(old, "Absent", "Absent", None, None)
    store.log_state_change(new, "Absent", "Absent", None, None)
    store.log_minute(minute_row(int(old // 60 * 60)))
    store.log_minute(minute_row(int(new // 60 * 60)))

    removed = store.purge(30, now=now)

    assert removed == 4  # one upload, one state change, one minute, one alert
    assert [r[0] for r in store.query("SELECT filename FROM uploads")] == ["new.jpg"]
    assert store.query("SELECT COUNT(*) FROM upload_faces")[0][0] == 1
    assert store.query("SELECT COUNT(*) FROM state_changes")[0][0] == 1
    assert store.query("SELECT COUNT(*) FROM minute_stats")[0][0] == 1
    assert store.query("SELECT COUNT(*) FROM alerts")[0][0] == 1
    images = store.data_dir / "images"
    assert not (images / f"uploads/{old_upload}.jpg").exists()
    assert not (images / "alerts/old.jpg").exists()
    assert (images / f"uploads/{new_upload}.jpg").read_bytes() == b"\xff\xd8\xff jpeg"
    assert store.purge(30, now=now) == 0


def _fill_old_rows(store, rows: int, now: float) -> None:
    """``rows`` state changes and as many outbox messages, all 40 days old (a device back
    after the summer, or retention lowered from a year to a month)."""
    old = now - 40 * 86400
    with store.transaction() as conn:
        conn.executemany("INSERT INTO state_changes(t, level, grp, emotion, confidence) VALUES (?, ?, ?, ?, ?)",
                         ((old + i, "Engaged - paying attention", "Engaged", "neutral", 0.9) for i in range(rows)))
        conn.executemany("INSERT INTO outbox(t, kind, body) VALUES (?, 'state', ?)",
                         ((old + i, json.dumps({"level": "Engaged", "since": old + i})) for i in range(rows)))
    store.connect().execute("PRAGMA wal_checkpoint(TRUNCATE)")


def test_a_large_purge_leaves_the_wal_file_bounded(store):
    """The purge deleted every old row in one transaction, and SQLite never shrinks a WAL
    file while the database is open: measured, a purge of 2 million rows left a 145 MB
    -wal file beside a 157 MB database until the next restart."""
    now = time.time()
    _fill_old_rows(store, 150_000, now)
    store.log_state_change(now, "Absent", "Absent", None, None)

    assert store.purge(30, now=now) == 300_000
    store.log_state_change(now + 1, "Absent", "Absent", None, None)  # the next write after it

    assert store.query("SELECT COUNT(*) FROM state_changes")[0][0] == 2
    wal = store.path.with_name(DB_NAME + "-wal")
    assert wal.stat().st_size <= WAL_LIMIT_BYTES, wal.stat().st_size


def test_a_large_purge_succeeds_on_a_nearly_full_disk(tmp_path):
    """In one transaction the purge needed a WAL as large as what it deleted: on a nearly
    full card it failed with "database or disk is full" every hour, so the old rows (and
    the full disk) stayed for good. In batches it needs a few MB."""
    with mounted_tmpfs(tmp_path / "card", "80m") as card:  # the fill: rows, their three indexes and a WAL
        store = Store(card / "data")
        try:
            now = time.time()
            _fill_old_rows(store, 150_000, now)
            filler = card / "filler"  # the rest of the card, but 12 MB
            filler.write_bytes(b"\0" * int(shutil.disk_usage(card).free - 12e6))

            assert store.purge(30, now=now) == 300_000
            assert store.query("SELECT COUNT(*) FROM state_changes")[0][0] == 0
            assert store.integrity_ok()
        finally:
            store.close()


def test_write_image_is_atomic_and_inside_the_store(store):
    rel = store.write_image("uploads/7.jpg", b"data")
    path = store.image_file(rel)
    assert path.read_bytes() == b"data" and path.parent == (store.data_dir / "images" / "uploads").resolve()
    assert not list(path.parent.glob("*.tmp"))


def test_a_kept_image_is_the_service_users_alone(store):
    """A student's photo and an alert's frame were written 0644 in a 0755 folder: only the
    images folder's own 0700 kept other local users out, and any copy keeping permissions lost it."""
    import stat as stat_mod

    path = store.image_file(store.write_image("alerts/3.jpg", b"frame"))
    assert stat_mod.S_IMODE(path.stat().st_mode) == 0o600
    assert stat_mod.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_an_image_that_cannot_be_deleted_is_said(store, caplog):
    """A failed delete of a kept photo was swallowed without a word."""
    stuck = store.image_file("uploads/9.jpg")
    stuck.mkdir(parents=True)  # a folder in the file's place: unlink refuses it, as a failing card would
    with caplog.at_level(logging.WARNING, logger="edge_app.store.database"):
        store.remove_image("uploads/9.jpg")
    assert "could not delete the kept image uploads/9.jpg" in caplog.text and "next start" in caplog.text


@pytest.mark.parametrize("bad", ["../engage.db", "../../etc/passwd", "/etc/passwd", "uploads/../../engage.db", "", "."])
def test_image_file_refuses_path_traversal(store, bad):
    with pytest.raises(ValueError, match="not inside the image store"):
        store.image_file(bad)
    with pytest.raises(ValueError):
        store.write_image(bad, b"x")
    store.remove_image(bad)  # refused (a warning), and nothing outside images/ is removed
    assert store.path.is_file()


def test_threads_share_the_file_with_their_own_connections(store):
    errors, connections = [], []

    def writer(n):
        try:
            for i in range(20):
                store.log_state_change(n * 1000 + i, "Absent", "Absent", None, None)
            connections.append(store.connect())
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.query("SELECT COUNT(*) FROM state_changes")[0][0] == 80
    assert len({id(c) for c in connections}) == 4 and store.connect() not in connections  # one per thread


def test_a_full_disk_is_not_reported_as_a_damaged_database(tmp_path):
    """On a full card SQLite fails to grow its -shm file ("disk I/O error") or to write
    ("database or disk is full"): the answer is to free space, never to restore a backup
    or move the (intact) database away."""
    with mounted_tmpfs(tmp_path / "card", "2m") as card:
        Store(card / "data").close()
        fill_up(card / "filler")
        with pytest.raises(StoreError) as raised:
            Store(card / "data")
        message = str(raised.value)
        assert "is full" in message and "free some space" in message, message
        assert "Restore a backup" not in message and "move the file away" not in message


def test_an_uploads_form_key_goes_with_its_row(tmp_path):
    """Migration 9 adds the form key (a digest of the upload form's one-time token and the
    file) to uploads from before, which have none; a key is found for its own user only,
    and goes with its upload: deleted, or removed by the retention period (nothing grows)."""
    with _database_before(tmp_path / "old", migration=9) as conn:
        conn.execute("INSERT INTO uploads(id, user_id, created, filename, width, height, face_count) "
                     "VALUES (3, 5, 1.0, 'old.jpg', 10, 10, 0)")
    store = Store(tmp_path / "old")
    try:
        assert store.schema_version() == len(MIGRATIONS)
        assert [tuple(r) for r in store.query("SELECT id, form_key FROM uploads")] == [(3, None)]
        kept = store.add_upload(5, "new.jpg", 10, 10, [face()], form_key="k1")
        other = store.add_upload(5, "other.jpg", 10, 10, [], form_key="k2")
        assert reports.upload_of_form(store, 5, "k1") == kept and reports.upload_of_form(store, 5, "k2") == other
        assert reports.upload_of_form(store, 6, "k1") is None  # another user's form is not this one
        assert reports.upload_of_form(store, 5, "k3") is None
        assert store.delete_upload(other) and reports.upload_of_form(store, 5, "k2") is None
        store.execute("UPDATE uploads SET created = ? WHERE id = ?", (time.time() - 10 * 86400, kept))
        store.purge(retention_days=7)
        assert reports.upload_of_form(store, 5, "k1") is None
        assert store.query("SELECT COUNT(*) FROM uploads WHERE form_key IS NOT NULL")[0][0] == 0
    finally:
        store.close()


def test_the_paused_loops_sign_of_life_goes_with_the_retention_period(store):
    """The paused capture loop's sign of life (one settings row: when the student paused and
    when the loop was last seen paused) outlived the retention period: the Paused row it dates
    was purged with the log, but the row kept the pause's times, in every later backup, until
    the next pause. It goes once the pause was last seen before the retention period, not sooner."""
    now = time.time()
    old_pause = now - 40 * 86400
    store.log_state_change(old_pause, "Paused", "Paused", None, None)
    store.note_paused_alive(old_pause, old_pause + 1800, stopped=True)
    store.purge(30, now=now)
    assert store.query("SELECT COUNT(*) FROM state_changes")[0][0] == 0
    assert store.get_setting(PAUSE_SEEN_KEY) is None
    recent = now - 86400
    store.note_paused_alive(recent, recent + 60)
    store.purge(30, now=now)
    assert store.get_setting(PAUSE_SEEN_KEY) == {"pause": recent, "seen": recent + 60, "stopped": False}


def _traces(store, text: bytes) -> list[str]:
    """Which of the database's files still hold ``text`` (the bytes as written to disk)."""
    return [p.name for p in store.path.parent.glob(store.path.name + "*") if p.is_file() and text in p.read_bytes()]


def test_deleted_names_leave_no_trace_in_the_database_files(tmp_path):
    """A deleted photo's file name ('Anna_Schmidt.jpg') or a deleted student's user name stayed
    readable in engage.db (without secure_delete, as other SQLite builds have it) or in the
    write-ahead log (about 500 later writes to go): a copied SD card gave them back."""
    from edge_app.store.accounts import Accounts

    store = Store(tmp_path / "data")
    try:
        accounts = Accounts(store)
        ann = accounts.create_user("anna.schmidt", "a-long-password-1")
        store.add_upload(ann.id, "Anna_Schmidt_older.jpg", 10, 10, [face()])
        store.connect().execute("PRAGMA wal_checkpoint(TRUNCATE)")  # one name in the database file itself
        upload = store.add_upload(ann.id, "Anna_Schmidt.jpg", 10, 10, [face()])  # one only in the log
        assert store.delete_upload(upload)
        assert _traces(store, b"Anna_Schmidt.jpg") == []
        store.delete_user_data(ann.id)
        assert _traces(store, b"Anna_Schmidt_older.jpg") == []
        accounts.delete_user(ann.id)
        assert _traces(store, b"anna.schmidt") == []
        store.add_upload(None, "Ben_Weber.jpg", 10, 10, [face()])
        assert store.purge(30, now=time.time() + 31 * 86400) >= 1  # the retention period's end
        assert _traces(store, b"Ben_Weber.jpg") == []
        assert store.integrity_ok()
        assert store.connect().execute("PRAGMA secure_delete").fetchone()[0] == 1  # whatever the build's default
    finally:
        store.close()


def test_purged_failed_log_ins_leave_no_trace_in_the_database_files(tmp_path):
    """The hourly clean-up deleted old failed log-ins after the store's purge had emptied the
    write-ahead log, so the name typed and the address stayed readable in engage.db-wal."""
    from edge_app.store.accounts import Accounts
    from edge_app.store.housekeeping import Housekeeping

    store = Store(tmp_path / "data")
    try:
        accounts = Accounts(store)
        accounts.create_user("zoe.k", "a-long-password-1")
        store.connect().execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the account in the database file
        assert accounts.login("zoe.k", "not-her-password", "203.0.113.77") is None
        store.execute("UPDATE login_failures SET t = t - 7200")  # past the throttle's window
        assert _traces(store, b"user:zoe.k") and _traces(store, b"203.0.113.77")
        Housekeeping(store, accounts, lambda: 30).run_once()
        assert store.query("SELECT COUNT(*) FROM login_failures")[0][0] == 0
        assert _traces(store, b"user:zoe.k") == [] and _traces(store, b"203.0.113.77") == []
    finally:
        store.close()


def _delete_while_a_reader_holds_the_log(store: Store, filename: str) -> float:
    """Delete a new upload named ``filename`` while a reader holds a snapshot (a backup, an
    export), which defers the delete's checkpoint; returns the seconds the delete took."""
    import sqlite3

    reader = sqlite3.connect(store.path, isolation_level=None)
    try:
        upload = store.add_upload(None, filename, 10, 10, [face()])
        reader.execute("BEGIN")
        reader.execute("SELECT COUNT(*) FROM uploads").fetchall()
        began = time.monotonic()
        assert store.delete_upload(upload)
        took = time.monotonic() - began
        reader.execute("COMMIT")
        return took
    finally:
        reader.close()


def test_a_delete_while_a_reader_holds_the_log_neither_waits_for_it_nor_leaves_the_name(tmp_path):
    """A reader holding a snapshot (a backup, an export) made the delete's checkpoint wait
    out the whole busy timeout, the web request and every writer with it; the delete now
    returns at once and the next purge empties the log the reader held."""
    from edge_app.store.database import BUSY_TIMEOUT_MS

    store = Store(tmp_path / "data")
    try:
        assert _delete_while_a_reader_holds_the_log(store, "Anna_Schmidt.jpg") < BUSY_TIMEOUT_MS / 1000 / 2
        assert store.purge(30) == 0  # nothing old: only the deferred checkpoint
        assert _traces(store, b"Anna_Schmidt.jpg") == []
    finally:
        store.close()


def test_a_deferred_checkpoint_is_retried_while_the_purge_waits_for_the_clock(tmp_path):
    """A data-protection officer's finding: the hourly clean-up skipped the purge, the only
    place a delete's deferred checkpoint was retried, while no time server had set the clock,
    so a deleted photo's name stayed in the write-ahead log for as long as that lasted."""
    from edge_app.store.accounts import Accounts
    from edge_app.store.housekeeping import Housekeeping

    store = Store(tmp_path / "data")
    try:
        _delete_while_a_reader_holds_the_log(store, "Carla_Wagner.jpg")
        assert _traces(store, b"Carla_Wagner.jpg")  # the reader deferred it
        assert Housekeeping(store, Accounts(store), lambda: 30, clock_set=lambda: False).run_once() == 0
        assert _traces(store, b"Carla_Wagner.jpg") == []
    finally:
        store.close()


def test_housekeeping_stop_waits_for_a_purge_under_way(tmp_path):
    """The service closed its store while a purge still ran: the purge reopened the
    database, and that connection was never closed."""
    import threading

    from edge_app.store.accounts import Accounts
    from edge_app.store.housekeeping import Housekeeping

    store = Store(tmp_path / "data")
    inside, release = threading.Event(), threading.Event()

    class SlowRetention:  # the retention setting, asked for as the run begins
        def __call__(self) -> int:
            inside.set()
            release.wait(5)
            return 30

    keeper = Housekeeping(store, Accounts(store), SlowRetention(), first_after_s=0.0).start()
    assert inside.wait(5)
    stopper = threading.Thread(target=keeper.stop)
    stopper.start()
    stopper.join(0.3)
    assert stopper.is_alive()  # it waits for the run under way ...
    release.set()
    stopper.join(5)
    assert not stopper.is_alive() and keeper.runs == 1  # ... which finished before stop returned
    store.close()


def test_a_class_is_created_whole_or_not_at_all(store):
    """Add a class made its accounts one by one: a failure part-way (a full disk, a name made
    by another admin meanwhile) left some while the page said "No student created"."""
    from edge_app.store.accounts import Accounts, AuthError

    accounts = Accounts(store)
    # the third insert fails, as a name taken by another admin after the list was checked would
    store.execute("CREATE TRIGGER taken BEFORE INSERT ON users WHEN NEW.username = 'cy' "
                  "BEGIN SELECT RAISE(ABORT, 'UNIQUE constraint failed: users.username'); END")
    with pytest.raises(AuthError, match="no student was created"):
        accounts.create_students(["ann", "bo", "cy", "di"])
    assert store.query("SELECT COUNT(*) FROM users")[0][0] == 0
    store.execute("DROP TRIGGER taken")
    made = accounts.create_students(["ann", "bo", "cy"])
    assert [u.username for u, _ in made] == ["ann", "bo", "cy"]
    assert all(accounts.find(u.username).must_change_password for u, _ in made)


def _fill_old_log(store: Store, rows: int = 20_000) -> None:
    t0 = time.time() - 400 * 86400
    with store.transaction() as conn:
        conn.executemany("INSERT INTO state_changes(t, level, grp, emotion, confidence) VALUES (?, ?, ?, ?, ?)",
                         [(t0 + i, "Engaged - likes the topic", "Engaged", "happiness", 0.9) for i in range(rows)])
    store.forget_deleted()


def test_a_purge_gives_the_freed_space_back_to_the_disk(tmp_path):
    """Lowering store.retention_days is the way out of a full disk, and it freed nothing: a
    10-year database purged to 30 days stayed 254 MB (and so did its backups)."""
    store = Store(tmp_path / "data")
    try:
        _fill_old_log(store)
        before = store.path.stat().st_size
        assert before > 1_000_000
        assert store.purge(30) == 20_000
        assert store.path.stat().st_size < before / 5
        assert store.query("PRAGMA freelist_count")[0][0] == 0
    finally:
        store.close()


def _made_the_old_way(data: Path) -> Path:
    """A database as releases before 2026-11-28 made it: purged space stays in the file."""
    store = Store(data)
    _fill_old_log(store)
    store.close()
    conn = sqlite3.connect(data / "engage.db")
    conn.execute("PRAGMA auto_vacuum = NONE")
    conn.execute("VACUUM")
    conn.close()
    return data / "engage.db"


def test_a_new_database_gives_space_back_from_its_start_without_a_rewrite(tmp_path, caplog):
    """auto_vacuum was set after WAL mode had written the new file's first page, so SQLite
    ignored it: every new device ran the one-time rewrite meant for old databases at its
    first start (and logged it, a puzzle for its technician)."""
    import logging

    with caplog.at_level(logging.INFO, logger="edge_app.store.database"):
        store = Store(tmp_path / "data")
    try:
        assert store.query("PRAGMA auto_vacuum")[0][0] == 2 and store.query("PRAGMA journal_mode")[0][0] == "wal"
        assert "purged space" not in caplog.text
    finally:
        store.close()


def test_an_old_database_is_made_to_give_space_back_at_a_start_with_room(tmp_path):
    path = _made_the_old_way(tmp_path / "data")
    assert sqlite3.connect(path).execute("PRAGMA auto_vacuum").fetchone()[0] == 0
    store = Store(tmp_path / "data")
    try:
        assert store.query("PRAGMA auto_vacuum")[0][0] == 2
        assert store.query("SELECT COUNT(*) FROM state_changes")[0][0] == 20_000  # nothing lost on the way
        before = path.stat().st_size
        store.purge(30)
        assert path.stat().st_size < before / 5
    finally:
        store.close()


def test_an_old_database_waits_for_room_before_it_is_rewritten(tmp_path, caplog):
    """The rewrite needs about three times the database free; on a fuller disk the start goes
    on as before and says when it will happen."""
    import logging

    with mounted_tmpfs(tmp_path / "small", "40m") as small:
        path = _made_the_old_way(small / "data")
        with caplog.at_level(logging.INFO, logger="edge_app.store.database"):
            store = Store(small / "data")
        try:
            assert store.query("PRAGMA auto_vacuum")[0][0] == 0
            assert "cannot give purged space back to the disk yet" in caplog.text
            assert store.purge(30) == 20_000  # the purge itself works as before
        finally:
            store.close()
        assert path.is_file()


def test_the_log_indexes_wait_for_room_and_never_stop_a_start(tmp_path, caplog):
    """The admin log's indexes add about half again to a long-kept database: on a full disk a
    start goes on without them (as a migration, their failure stopped the service)."""
    import logging

    from conftest import fill_up

    with mounted_tmpfs(tmp_path / "card", "40m") as card:
        Store(card / "data").close()
        conn = sqlite3.connect(card / "data" / DB_NAME)
        for name in ("state_changes_grp", "state_changes_emotion", "uploads_created"):
            conn.execute(f"DROP INDEX {name}")  # as a release before them left it
        conn.executemany("INSERT INTO state_changes(t, level, grp, emotion, confidence) VALUES (?, ?, ?, ?, ?)",
                         [(i, "Engaged - likes the topic", "Engaged", "happiness", 0.9) for i in range(100_000)])
        conn.commit()
        conn.close()
        fill_up(card / "filler")
        os.truncate(card / "filler", os.path.getsize(card / "filler") - 1_000_000)  # room to open, not for an index
        with caplog.at_level(logging.WARNING, logger="edge_app.store.database"):
            store = Store(card / "data")
        indexes = "SELECT name FROM sqlite_master WHERE type = 'index' AND name = 'state_changes_grp'"
        try:
            assert "an index of the admin log was not made" in caplog.text
            assert not store.query(indexes)
        finally:
            store.close()
        (card / "filler").unlink()
        store = Store(card / "data")  # a start with room
        try:
            assert store.query(indexes)
            plan = " ".join(r[3] for r in store.query("EXPLAIN QUERY PLAN SELECT COUNT(*) FROM alerts WHERE t >= ? "
                                                      "AND t < ?", (0, 1)))
            assert "USING COVERING INDEX alerts_t" in plan, plan  # a dashboard day's alerts, not every alert
        finally:
            store.close()


def test_without_a_time_server_the_purge_goes_by_running_time_not_the_clock(tmp_path, caplog):
    """A Pi without a clock of its own that started 40 days ahead purged with a 30-day
    retention as if today's rows were weeks old: all of them went, and stayed gone once the
    clock was corrected. Until a time server has set the clock, records go by the device's
    running time, not by their stamps: a row its clock says is 400 days old stays until the
    device has run 30 days (sessions and failed log-ins go as before: they only end early)."""
    import logging

    from edge_app.store.accounts import Accounts
    from edge_app.store.housekeeping import Housekeeping

    store = Store(tmp_path / "data")
    try:
        t0 = time.time() - 400 * 86400
        store.log_state_change(t0, "Engaged - likes the topic", "Engaged", "happiness", 0.9)
        synced = [False]
        keeper = Housekeeping(store, Accounts(store), lambda: 30, clock_set=lambda: synced[0])
        with caplog.at_level(logging.WARNING, logger="edge_app.store.housekeeping"):
            assert keeper.run_once() == 0 and keeper.run_once() == 0
        assert caplog.text.count("no time server has set the clock, so records are deleted once this device has run") == 1
        assert store.query("SELECT COUNT(*) FROM state_changes")[0][0] == 1  # its clock's 400 days are not its own
        synced[0] = True
        assert keeper.run_once() == 1  # set: what is past retention goes, as before
    finally:
        store.close()


class DeskWithoutTimeServer:
    """A Pi on a school network that blocks time servers, as the clean-up sees it: its wall
    clock is ``off_s`` from the real time (set at each start: the time it last saved), its
    monotonic clock counts from each start, and it may be switched off for days."""

    def __init__(self, data_dir, off_s: float = 0.0):
        from edge_app.store.accounts import Accounts
        from edge_app.store.housekeeping import Housekeeping
        from edge_app.store.running_time import RunningTime

        self.real, self.off_s, self.mono, self.synced = 1_800_000_000.0, off_s, 0.0, False
        self.store = Store(data_dir)
        self.keeper = Housekeeping(self.store, Accounts(self.store), lambda: 30, clock_set=lambda: self.synced,
                                   running=RunningTime(self.store, lambda: self.mono, self.wall))

    def wall(self) -> float:
        return self.real + self.off_s

    def run(self, days: float, log_every_h: float = 6.0) -> None:
        """Switched on for ``days``: a state row and a clean-up every ``log_every_h`` hours."""
        for _ in range(round(days * 24 / log_every_h)):
            self.real += log_every_h * 3600
            self.mono += log_every_h * 3600
            self.store.log_state_change(self.wall(), "Engaged - likes the topic", "Engaged", "happiness", 0.9)
            self.keeper.run_once()

    def log_then_clean_up(self, after_s: float) -> None:
        """A state row now, and the clean-up ``after_s`` later (before any mark between)."""
        self.store.log_state_change(self.wall(), "Engaged - likes the topic", "Engaged", "happiness", 0.9)
        self.real += after_s
        self.mono += after_s
        self.keeper.run_once()

    def restart(self, off_for_days: float = 0.0, off_s: float | None = None) -> None:
        from edge_app.store.accounts import Accounts
        from edge_app.store.housekeeping import Housekeeping
        from edge_app.store.running_time import RunningTime

        self.real += off_for_days * 86400
        self.off_s = self.off_s if off_s is None else off_s
        self.mono = 0.0  # a new boot
        self.keeper = Housekeeping(self.store, Accounts(self.store), lambda: 30, clock_set=lambda: self.synced,
                                   running=RunningTime(self.store, lambda: self.mono, self.wall))

    def kept(self) -> list[float]:
        """The stamps of the state rows kept, oldest made first."""
        return [r[0] for r in self.store.query("SELECT t FROM state_changes ORDER BY id")]


def test_without_a_time_server_records_go_once_the_device_has_run_the_retention_since(tmp_path):
    """On a school network that blocks time servers, a Pi's clock is never set, and the
    clean-up kept every record for ever (it waited for a time server). It now deletes by the
    device's running time: a record goes once the device has run 30 days since it was made,
    days switched off not counted, so never sooner than by the calendar."""
    desk = DeskWithoutTimeServer(tmp_path / "d")
    try:
        desk.run(days=20)
        desk.restart(off_for_days=10)  # a holiday: switched off, so no running time
        desk.run(days=9.5)
        assert len(desk.kept()) == 118  # 29.5 running days: nothing is 30 days old yet
        desk.run(days=1)
        # 30.5 running days: the first row (made at 0.25) is past 30; the second is exactly 30 days old
        assert len(desk.kept()) == 118 + 4 - 1
        desk.run(days=60)
        assert len(desk.kept()) == 121  # bounded: the last 30 running days, 4 rows a day, and one exactly 30 days old
        assert desk.store.query("SELECT COUNT(*) FROM running_marks")[0][0] <= 365 * 4 + 2  # the audit's year at most
    finally:
        desk.store.close()


def test_a_clock_days_ahead_or_set_back_deletes_no_record_early(tmp_path):
    """The reason the clean-up waited: a Pi that started 40 days ahead judged today's rows
    40 days old. By running time, rows made before the jump and after it go when the device
    has run 30 days since each. A clock set back (to an old saved time) stamps newer rows
    with older times than rows before it: those stay too."""
    desk = DeskWithoutTimeServer(tmp_path / "d")
    try:
        desk.run(days=5)
        desk.restart(off_s=40 * 86400)  # the next start is 40 days ahead
        desk.run(days=24)
        assert len(desk.kept()) == 29 * 4  # all 29 running days' rows: none is 30 days old
        desk.restart(off_s=10 * 86400)  # and the next 30 days back: its rows are stamped before the last ones
        desk.run(days=10.5)
        stamps = desk.kept()
        assert len(stamps) == 29 * 4 + 42 - 20  # the first 5 days' rows went; every row of the last 30 running days stays
        desk.run(days=60)
        assert len(desk.kept()) == 121  # bounded again: the last 30 running days (and one exactly that old)
    finally:
        desk.store.close()


@pytest.mark.parametrize("at_a_start", [True, False])
def test_a_record_made_just_after_the_clock_was_set_back_stays(tmp_path, at_a_start):
    """A record made after the clock was set back further than the retention, before the
    next mark (a start's first second; a technician's ``date -s`` minutes before the next
    mark), was stamped below every mark's time, and went at the next clean-up, seconds old.
    A mark's floor, the lowest stamp a record since the mark before can have, keeps it."""
    desk = DeskWithoutTimeServer(tmp_path / "d", off_s=40 * 86400)
    try:
        desk.run(days=35)
        if at_a_start:
            desk.restart(off_s=0.0)  # the next start 40 days back
        else:
            desk.off_s = 0.0  # sudo date -s, 40 days back, while running
        stamp = desk.wall()
        desk.log_then_clean_up(after_s=1.0 if at_a_start else 120.0)
        assert stamp in desk.kept()
        desk.run(days=1)
        assert stamp in desk.kept()  # a day later: the device has not run 30 days since
    finally:
        desk.store.close()


def test_a_time_server_reached_at_last_does_not_make_weeks_of_records_look_old(tmp_path):
    """A Pi ran for weeks on a clock 60 days behind (switched off nights and weekends, each
    start on the time it last saved); then the school's time server was named. Its step
    forward made every record of those weeks look over 30 days old, and the next clean-up
    deleted them all. Records stamped before the clock was set go by running time still;
    those stamped after, by the calendar."""
    desk = DeskWithoutTimeServer(tmp_path / "d", off_s=-60 * 86400)
    try:
        desk.run(days=10)
        unsynced = desk.kept()
        desk.off_s, desk.synced = 0.0, True  # the time server steps the clock 60 days forward
        desk.run(days=1)
        assert desk.kept()[:40] == unsynced  # still there: the device has run 11 days since the first
        desk.run(days=25)  # 36 running days: the first 6 days' records are 30 running days old
        kept = desk.kept()
        assert kept[0] == unsynced[6 * 4 - 1] and len(kept) == 4 * 30 + 1  # and one exactly 30 days old
        desk.run(days=40)
        assert len(desk.kept()) == 4 * 30 + 1  # now by the calendar: the last 30 days
    finally:
        desk.store.close()


def test_a_desk_on_for_one_lesson_a_day_counts_its_lessons(tmp_path):
    """Marked only at each hourly clean-up (the first a second after the start), a desk
    switched on for one 45-minute lesson a day counted about a second a day: nothing was ever
    old enough to go. The running time is marked every few minutes between clean-ups (a
    power cut loses that much at most) and at a stop, and the table still grows by a row an
    hour, not a row a mark."""
    from edge_app.store.accounts import Accounts
    from edge_app.store.housekeeping import Housekeeping
    from edge_app.store.running_time import RunningTime

    store = Store(tmp_path / "d")
    mono = [0.0]

    def newest() -> float:
        return store.query("SELECT MAX(running_s) FROM running_marks")[0][0] or 0.0

    def lesson(mark_every_s: float, stop: bool = True) -> Housekeeping:
        mono[0] = 0.0  # each start is a new boot
        keeper = Housekeeping(store, Accounts(store), lambda: 30, first_after_s=3600, clock_set=lambda: False,
                              running=RunningTime(store, lambda: mono[0]), mark_every_s=mark_every_s).start()
        start = newest()
        for minutes in (15, 30, 45):
            mono[0] = minutes * 60.0
            if not stop:
                wait_for(lambda m=minutes: newest() >= start + m * 60, what="a mark between clean-ups")
        if stop:
            keeper.stop()
        return keeper

    try:
        for _ in range(3):
            lesson(mark_every_s=3600)  # no mark between clean-ups: the stop's mark keeps the lesson
        assert newest() == 3 * 45 * 60
        running = lesson(mark_every_s=0.01, stop=False)  # marked while it runs, before any stop: a power cut now
        assert newest() == 4 * 45 * 60  # would lose nothing of this lesson
        running.stop()
        assert store.query("SELECT COUNT(*) FROM running_marks")[0][0] == 4  # a row per lesson, not per mark
    finally:
        store.close()


def test_the_running_time_carries_on_over_a_restart_and_a_full_disk_still_purges(tmp_path):
    """A restart starts the monotonic clock again: the running time carries on from the newest
    mark. A mark the database cannot take (a full disk) does not stop the purge, which is
    what makes room."""
    from edge_app.store.running_time import RunningTime

    desk = DeskWithoutTimeServer(tmp_path / "d")
    try:
        desk.run(days=2)
        before = desk.keeper.running.now()
        desk.restart(off_for_days=3)
        assert desk.keeper.running.now() == before  # the days off are not running time
        desk.mono = 3600.0
        assert desk.keeper.running.now() == before + 3600
        assert RunningTime(desk.store).now() >= before  # a plain start carries on as well
        desk.store.execute("CREATE TRIGGER full BEFORE INSERT ON running_marks BEGIN "
                           "SELECT RAISE(ABORT, 'database or disk is full'); END")
        desk.run(days=40)  # no new marks: the old ones still date the first rows
        assert len(desk.kept()) < 42 * 4
    finally:
        desk.store.close()


def test_a_saved_setting_that_cannot_be_read_is_ignored_not_a_failed_start(cfg, make_appliance, caplog):
    """A damaged row of the admin's saved settings (a bad block, a hand edit) ended the start
    in a JSONDecodeError traceback: the device starts on its config file, and says so."""
    from edge_app.web.admin_settings import SETTINGS_KEY as OVERRIDES_KEY

    store = Store(cfg.store.data_dir)
    store.set_setting(OVERRIDES_KEY, {"store.retention_days": 7})
    store.execute("UPDATE settings SET value = ? WHERE key = ?", ('{"store.retention_days": ', OVERRIDES_KEY))
    store.close()
    with caplog.at_level("WARNING", logger="edge_app.store.database"):
        running = make_appliance(with_loop=False)
    assert running.cfg.store.retention_days == cfg.store.retention_days
    assert f"the saved setting '{OVERRIDES_KEY}'" in caplog.text and "Admin > Settings" in caplog.text


def test_the_reserve_follows_its_setting_and_is_taken_only_with_room_to_spare(tmp_path):
    """``store.reserve_mb`` changed: the reserve is remade at its new size; 0 lets go of it.
    On a disk with less than three times its size free none is taken."""
    from edge_app.store.database import RESERVE_NAME

    store = Store(tmp_path / "d")
    reserve = tmp_path / "d" / RESERVE_NAME
    try:
        assert store.keep_reserve(2 << 20) and reserve.stat().st_size == 2 << 20
        assert store.keep_reserve(1 << 20) and reserve.stat().st_size == 1 << 20
        assert not store.keep_reserve(0) and not reserve.exists()
        assert store.release_reserve() == 0  # none held: nothing to give up
        partial = tmp_path / "d" / f".{RESERVE_NAME}.tmp"  # a reserve being made when its process was killed
        partial.write_bytes(bytes(1 << 20))
        assert store.release_reserve() >= 1 << 20 and not partial.exists()
        with mounted_tmpfs(tmp_path / "small", "8m") as small:
            tight = Store(small / "d")
            try:
                assert not tight.keep_reserve(3 << 20) and not (small / "d" / RESERVE_NAME).exists()
                # nor when, taken, it would leave less than store.min_free_mb: logging would pause for it
                free = shutil.disk_usage(small).free
                assert not tight.keep_reserve(2 << 20, keep_free=free - (1 << 20))
                assert not (small / "d" / RESERVE_NAME).exists()
                assert tight.keep_reserve(2 << 20, keep_free=free - (3 << 20))
                assert shutil.disk_usage(small).free >= free - (3 << 20)
                tight.release_reserve()
                assert tight.keep_reserve(2 << 20)
                assert tight.release_reserve() >= 2 << 20 and not (small / "d" / RESERVE_NAME).exists()
            finally:
                tight.close()
    finally:
        store.close()


def test_a_deletion_refused_on_a_full_disk_keeps_the_photos(tmp_path):
    """On a full disk a deletion removes the images first, to free room for its rows. Given
    the account's own check too (the last admin), that check came after the images were gone:
    a refused deletion kept the account and lost its photos. The check comes first."""
    from edge_app.store.accounts import Accounts, AuthError

    def the_last_admin(conn):
        raise AuthError("ann is the last admin and cannot be deleted: make another user an admin first")

    with mounted_tmpfs(tmp_path / "card", "8m") as card:
        store = Store(card / "data")
        try:
            ann = Accounts(store).create_user("ann", "ann-pass-phrase-1", "admin").id
            upload = store.add_upload(ann, "ann.jpg", 10, 10, [])
            store.set_upload_image(upload, store.write_image(f"{upload}.jpg", b"\xff\xd8" + b"x" * 1000))
            for i in range(300):  # a year's photos: their delete fills more pages than the cache holds ...
                store.add_upload(ann, f"photo-{i}-{'n' * 200}.jpg", 10, 10, [])
            store.connect().execute("PRAGMA wal_checkpoint(TRUNCATE)")  # ... so it writes to the log before the
            store.connect().execute("PRAGMA cache_size = 2")  # commit (a small cache: soon), and there is no room
            fill_up(card / "filler")
            with pytest.raises(AuthError):
                store.delete_user_data(ann, also=the_last_admin)
            assert store.image_file(f"{upload}.jpg").is_file()
            assert store.query("SELECT COUNT(*) FROM uploads")[0][0] == 301
        finally:
            store.close()


def test_a_database_at_the_schema_number_once_given_to_the_log_indexes_opens(tmp_path):
    """Four commits of 2026-11-28 made the admin log's indexes as migration 14, then moved them
    out of the migrations: a database one of them opened said schema 14 and every later release
    refused it as "newer than this engage-edge". That number stays taken."""
    with _database_before(tmp_path / "d", migration=14) as conn:
        conn.execute("INSERT INTO alerts(t, level) VALUES (1780000000.0, 'Not engaged')")
        conn.execute("PRAGMA user_version = 14")  # as one of those commits left it
    again = Store(tmp_path / "d")
    try:
        assert again.schema_version() == len(MIGRATIONS) and again.query("SELECT level FROM alerts")[0][0] == "Not engaged"
    finally:
        again.close()
