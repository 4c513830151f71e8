"""The database's schema: its versions, one migration each, run in order (``Store.migrate``),
and what is made beside them (indexes a start adds when there is room).

``PRAGMA user_version`` is the number of migrations applied; a migration is never edited once
released (a device upgraded from any release runs the ones it lacks), only a new one added.
"""
from __future__ import annotations

from edge_app.engagement import Group

MIGRATIONS: list[str] = [
    # 1: the foundation schema
    """
    CREATE TABLE users (
        id INTEGER PRIMARY KEY,
        username TEXT NOT NULL UNIQUE COLLATE NOCASE,
        password_hash TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('student', 'admin')),
        disabled INTEGER NOT NULL DEFAULT 0,
        created REAL NOT NULL,
        last_login REAL
    );
    CREATE TABLE sessions (
        token_hash TEXT PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        csrf TEXT NOT NULL,
        created REAL NOT NULL,
        last_seen REAL NOT NULL
    );
    CREATE TABLE uploads (
        id INTEGER PRIMARY KEY,
        user_id INTEGER REFERENCES users(id) ON DELETE CASCADE,
        created REAL NOT NULL,
        filename TEXT NOT NULL,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        face_count INTEGER NOT NULL,
        image_path TEXT
    );
    CREATE INDEX uploads_user ON uploads(user_id, created);
    CREATE TABLE upload_faces (
        id INTEGER PRIMARY KEY,
        upload_id INTEGER NOT NULL REFERENCES uploads(id) ON DELETE CASCADE,
        x INTEGER NOT NULL, y INTEGER NOT NULL, w INTEGER NOT NULL, h INTEGER NOT NULL,
        emotion TEXT NOT NULL,
        confidence REAL NOT NULL,
        probabilities TEXT NOT NULL,
        engagement TEXT NOT NULL
    );
    CREATE INDEX upload_faces_upload ON upload_faces(upload_id);
    CREATE TABLE state_changes (
        id INTEGER PRIMARY KEY,
        t REAL NOT NULL,
        level TEXT NOT NULL,
        grp TEXT NOT NULL,
        emotion TEXT,
        confidence REAL
    );
    CREATE INDEX state_changes_t ON state_changes(t);
    CREATE TABLE minute_stats (
        minute INTEGER PRIMARY KEY,
        frames INTEGER NOT NULL,
        faces INTEGER NOT NULL,
        engaged_s REAL NOT NULL,
        partial_s REAL NOT NULL,
        not_engaged_s REAL NOT NULL,
        distracted_s REAL NOT NULL,
        absent_s REAL NOT NULL
    );
    CREATE TABLE alerts (
        id INTEGER PRIMARY KEY,
        t REAL NOT NULL,
        level TEXT NOT NULL,
        snapshot_path TEXT
    );
    CREATE TABLE settings (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    """,
    # 2: failed logins, for throttling by user name and by address (see auth.Throttle)
    """
    CREATE TABLE login_failures (
        id INTEGER PRIMARY KEY,
        key TEXT NOT NULL,
        t REAL NOT NULL
    );
    CREATE INDEX login_failures_key ON login_failures(key, t);
    """,
    # 3: messages for the MQTT broker, written with the rows they describe (see store/outbox.py)
    """
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        t REAL NOT NULL,
        kind TEXT NOT NULL,
        body TEXT NOT NULL
    );
    """,
    # 4: the "instructor" role (the classroom service's users); SQLite changes a CHECK by copying the table
    """
    CREATE TABLE users_new (
        id INTEGER PRIMARY KEY,
        username TEXT NOT NULL UNIQUE COLLATE NOCASE,
        password_hash TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('student', 'admin', 'instructor')),
        disabled INTEGER NOT NULL DEFAULT 0,
        created REAL NOT NULL,
        last_login REAL
    );
    INSERT INTO users_new SELECT id, username, password_hash, role, disabled, created, last_login FROM users;
    DROP TABLE users;
    ALTER TABLE users_new RENAME TO users;
    """,
    # 5: the audit log: what admins changed (who, what, when), read on /admin/audit
    """
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        t REAL NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL DEFAULT '',
        detail TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX audit_t ON audit(t);
    """,
    # 6: a generated first-start password must be replaced at the first log-in: it was
    # printed to the console and the service's journal, where others may read it
    """
    ALTER TABLE users ADD COLUMN must_change_password INTEGER NOT NULL DEFAULT 0;
    """,
    # 7: when this session's user last typed their password (log-in or confirmation): an
    # admin's changes ask for it again after a while (a browser left logged in). Sessions
    # from before count as never confirmed.
    """
    ALTER TABLE sessions ADD COLUMN confirmed REAL NOT NULL DEFAULT 0;
    """,
    # 8: an upload's number is never given again: without AUTOINCREMENT SQLite reuses the
    # highest id once that upload is deleted (or all are, by retention), so an old link,
    # bookmark or audit line "photo #12" came to show another photo
    """
    CREATE TABLE uploads_new (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        user_id INTEGER REFERENCES users(id) ON DELETE CASCADE,
        created REAL NOT NULL,
        filename TEXT NOT NULL,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        face_count INTEGER NOT NULL,
        image_path TEXT
    );
    INSERT INTO uploads_new (id, user_id, created, filename, width, height, face_count, image_path)
        SELECT id, user_id, created, filename, width, height, face_count, image_path FROM uploads;
    DROP TABLE uploads;
    ALTER TABLE uploads_new RENAME TO uploads;
    CREATE INDEX uploads_user ON uploads(user_id, created);
    """,
    # 9: which upload form stored an upload (a digest of the form's one-time token and the
    # file, see web/resubmit.py): a result page reloaded after a restart leads to the first
    # result instead of storing the photo again. The key goes with its row (deletion,
    # retention); uploads from before have none.
    """
    ALTER TABLE uploads ADD COLUMN form_key TEXT;
    CREATE INDEX uploads_form_key ON uploads(form_key) WHERE form_key IS NOT NULL;
    """,
    # 10: seconds "Present" (a face towards the camera whose expression stays unsure): they
    # counted as "Absent" or "Distracted" before; older minutes have none
    """
    ALTER TABLE minute_stats ADD COLUMN present_s REAL NOT NULL DEFAULT 0;
    """,
    # 11: an alert's number is never given again (as 8 did for uploads): after retention
    # purged the alerts, new ones started at 1 again, so a snapshot link quoted in an
    # incident note (/admin/alert/3.jpg) came to show another capture, perhaps another student
    """
    CREATE TABLE alerts_new (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        t REAL NOT NULL,
        level TEXT NOT NULL,
        snapshot_path TEXT
    );
    INSERT INTO alerts_new (id, t, level, snapshot_path) SELECT id, t, level, snapshot_path FROM alerts;
    DROP TABLE alerts;
    ALTER TABLE alerts_new RENAME TO alerts;
    """,
    # 12: known-browser cookies are signed with this number too (store/known_browsers.py), and
    # "Log out everywhere else" raises it: a lost laptop's browser is a stranger again, not
    # only logged out. Cookies signed before (number 0) stay valid.
    """
    ALTER TABLE users ADD COLUMN browsers_generation INTEGER NOT NULL DEFAULT 0;
    """,
    # 13: an account's number is never given again (as 8 did for uploads): once the account
    # with the highest id was deleted, the next one made got its id, which sessions, audit
    # lines and a saved privacy pause name. Rows keep their ids; sessions and uploads keep
    # pointing at them (foreign keys name the table, which is back under its name)
    """
    CREATE TABLE users_new (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        username TEXT NOT NULL UNIQUE COLLATE NOCASE,
        password_hash TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('student', 'admin', 'instructor')),
        disabled INTEGER NOT NULL DEFAULT 0,
        created REAL NOT NULL,
        last_login REAL,
        must_change_password INTEGER NOT NULL DEFAULT 0,
        browsers_generation INTEGER NOT NULL DEFAULT 0
    );
    INSERT INTO users_new (id, username, password_hash, role, disabled, created, last_login, must_change_password,
                           browsers_generation)
        SELECT id, username, password_hash, role, disabled, created, last_login, must_change_password,
               browsers_generation FROM users;
    DROP TABLE users;
    ALTER TABLE users_new RENAME TO users;
    """,
    # 14: none. Four commits on 2026-11-28 (ff31e1c..ba09664) made the admin log's indexes here as
    # migration 14, then moved them to SPEED_INDEXES, made at every open; a database one of them
    # opened says 14 and was refused as "newer than this engage-edge". The number stays taken.
    "SELECT 1",
    # 15: the device's running time marked against its clock, a row an hour (store/running_time.py): while no
    # time server has set the clock, retention deletes by how long the device has run since a record
    # was made. It waited for a time server instead, and a school network without one kept every
    # record for ever
    """
    CREATE TABLE IF NOT EXISTS running_marks (
        running_s REAL PRIMARY KEY,
        wall REAL NOT NULL,
        floor REAL NOT NULL,
        synced INTEGER NOT NULL DEFAULT 0
    );
    """,
]

# The admin log's pages filtered by level or emotion, and its uploads, read in time order from
# an index (reports.query_log); without them a page of ten years' log sorted or counted every
# row (2-3 s a page). About a quarter more database each, so not a migration: made at a start
# with room for them (a full disk then starts without them, slower, rather than not at all),
# and an older release, going back, opens the database as its own (the schema is the same).
SPEED_INDEXES = (
    "CREATE INDEX IF NOT EXISTS state_changes_grp ON state_changes(grp, t)",
    "CREATE INDEX IF NOT EXISTS state_changes_emotion ON state_changes(emotion, t)",
    "CREATE INDEX IF NOT EXISTS uploads_created ON uploads(created)",
    # the dashboard counts each of 15 days' alerts, the alerts page pages them newest first, and
    # the purge deletes by time: at the buzzer's cooldown a decade could hold 550,000
    "CREATE INDEX IF NOT EXISTS alerts_t ON alerts(t)",
)

GROUP_COLUMNS = {  # minute_stats' seconds column for each engagement group
    Group.ENGAGED: "engaged_s",
    Group.PARTIALLY_ENGAGED: "partial_s",
    Group.NOT_ENGAGED: "not_engaged_s",
    Group.DISTRACTED: "distracted_s",
    Group.ABSENT: "absent_s",
    Group.PRESENT: "present_s",  # last: a CSV export's earlier columns keep their places
}
