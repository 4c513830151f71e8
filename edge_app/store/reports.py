"""Read-only queries the web UI shows: the unified log, day summaries, the timeline,
upload history, per-user summaries and the image paths behind them.

They live beside the schema (``schema``) so a table change is one package's concern;
the web routes only format what these return.
"""
from __future__ import annotations

import datetime as dt
import json
import math
import sqlite3
from collections.abc import Generator
from dataclasses import dataclass

from edge_app.engagement import GROUPS, NO_FACE, UNCERTAIN, Group
from edge_app.store.database import Store
from edge_app.store.schema import GROUP_COLUMNS

# ------------------------------------------------------------ the unified log
DATE_FIELDS = (("date_from", "from", "From"), ("date_to", "to", "To"))  # attribute, query key, the form's label


def parse_day(value: str) -> dt.datetime:
    """A filter's day, as a date field sends it ("2026-01-31"; "2026-1-31" is taken too);
    ValueError for anything else ("31/01/2026", "2026-02-30")."""
    return dt.datetime.strptime(value, "%Y-%m-%d")


@dataclass
class LogFilter:
    user: str = ""
    level: str = ""
    emotion: str = ""
    kind: str = ""
    date_from: str = ""
    date_to: str = ""

    @classmethod
    def from_query(cls, q) -> "LogFilter":
        """From a query mapping with ``getunicode`` (bottle's ``request.query``). A day is
        written back as YYYY-MM-DD ("2026-1-5" -> "2026-01-05"): a browser's date field
        shows nothing for any other spelling, so the page would filter by a day it does not
        show. A value that is no day is kept as it came (``bad_dates``)."""
        flt = cls(*(q.getunicode(k, "").strip() for k in ("user", "level", "emotion", "kind", "from", "to")))
        for attr, _, _ in DATE_FIELDS:
            value = getattr(flt, attr)
            try:
                setattr(flt, attr, parse_day(value).date().isoformat() if value else "")
            except ValueError:
                pass
        return flt

    def bad_dates(self) -> dict[str, str]:
        """The date fields whose value is not a day, by query key, with the value as it came
        ({"from": "31/01/2026"}): the page says what was typed, as its date field cannot."""
        bad = {}
        for attr, key, _ in DATE_FIELDS:
            value = getattr(self, attr)
            try:
                if value:
                    parse_day(value)
            except ValueError:
                bad[key] = value
        return bad

    def params(self) -> dict:
        pairs = {"user": self.user, "level": self.level, "emotion": self.emotion, "kind": self.kind,
                 "from": self.date_from, "to": self.date_to}
        return {k: v for k, v in pairs.items() if v}

    def where(self) -> tuple[str, list]:
        """SQL conditions on the unified log; raises ValueError with a message for a bad value."""
        conds: list[str] = []
        args: list[object] = []
        if self.user:
            conds.append("username = ? COLLATE NOCASE")  # as users.username and the log-in: "Ann" is ann
            args.append(self.user)
        if self.level:
            if self.level not in GROUPS:
                raise ValueError(f"engagement level {self.level!r} is unknown; use one of {', '.join(GROUPS)}")
            conds.append("grp = ?")
            args.append(self.level)
        if self.emotion:
            conds.append("emotion = ?")
            args.append(self.emotion)
        if self.kind:
            if self.kind not in ("live", "upload"):
                raise ValueError("kind is live or upload")
            conds.append("kind = ?")
            args.append(self.kind)
        bad = self.bad_dates()
        if bad:
            raise ValueError("; ".join(f"{label} {bad[key]!r} is not a date like 2026-01-31 (year-month-day)"
                                       for _, key, label in DATE_FIELDS if key in bad))
        days = []
        for value, op, shift in ((self.date_from, ">=", 0), (self.date_to, "<", 1)):
            if value:
                day = parse_day(value)
                days.append(day)
                conds.append(f"t {op} ?")
                try:
                    bound = (day + dt.timedelta(days=shift)).timestamp()
                except (OverflowError, ValueError):  # 0001-01-01 or 9999-12-31: before or after every row
                    bound = -math.inf if day.year < 1970 else math.inf
                args.append(bound)
        if self.date_from and self.date_to and days[0] > days[1]:
            raise ValueError(f"From ({self.date_from}) is after To ({self.date_to}), so no day is in between; "
                             "swap the two dates")
        return (" WHERE " + " AND ".join(conds)) if conds else "", args


def _group_case(col: str, uncertain: bool = False) -> str:
    """SQL for ``engagement.group_of``: a level's group by its prefix (with ``uncertain``,
    an unsure upload face keeps "Uncertain" instead of a made-up group, and a photo with no
    face, NULL from the outer join, is "No face")."""
    keep = f"WHEN {col} IS NULL THEN '{NO_FACE}' WHEN {col} = '{UNCERTAIN}' THEN '{UNCERTAIN}' " if uncertain else ""
    return ("CASE " + keep + " ".join(f"WHEN {col} LIKE '{g}%' THEN '{g}'" for g in GROUPS)
            + f" ELSE '{Group.NOT_ENGAGED}' END")


# The unified log's two halves, each filtered on its own (``LogFilter.where`` names these
# columns) and read in its index's order: ORDER BY over one UNION ALL of the two sorted
# the whole log (2.6 million rows in ten years) for every page, as no index could serve it.
# ``seq`` (a state change's or a face's id) with ``upload_id`` orders the rows of one time
# as they were stored: the faces of one photo in reading order.
LIVE_LOG_SQL = (
    # a state with no face read (Absent, Distracted, Paused) has no emotion and so no confidence:
    # the loop logs 0.0 for it, which the log showed as "0%"
    "SELECT 'live' AS kind, t, level, grp, emotion, CASE WHEN emotion IS NULL THEN NULL ELSE confidence END AS confidence, "
    "NULL AS username, NULL AS upload_id, NULL AS image_path, NULL AS filename, NULL AS probabilities, id AS seq "
    "FROM state_changes"
)
UPLOAD_LOG_SQL = (
    # one row per face, and one for a photo in which none was found: it is kept (and
    # deletable) like any other, so the log must find it (a data-protection request did not)
    f"SELECT 'upload' AS kind, u.created AS t, COALESCE(f.engagement, '{NO_FACE}') AS level, "
    f"{_group_case('f.engagement', uncertain=True)} AS grp, f.emotion AS emotion, f.confidence AS confidence, "
    "us.username AS username, u.id AS upload_id, u.image_path AS image_path, u.filename AS filename, "
    "f.probabilities AS probabilities, f.id AS seq "
    "FROM uploads u LEFT JOIN upload_faces f ON f.upload_id = u.id LEFT JOIN users us ON us.id = u.user_id"
)


def _log_sql(where: str, newest_first: bool = True) -> str:
    """Both halves, filtered, in one order: newest first, and of one time the live rows
    before the uploads, each as stored. The ORDER BY of the compound makes SQLite merge the
    two halves as their indexes give them, so LIMIT reads only as many rows as it returns;
    ``newest_first`` False is the same order reversed (a page near the end read from there)."""
    first, then = ("DESC", "ASC") if newest_first else ("ASC", "DESC")
    return (f"SELECT * FROM ({LIVE_LOG_SQL}){where} UNION ALL SELECT * FROM ({UPLOAD_LOG_SQL}){where} "
            f"ORDER BY t {first}, kind {then}, upload_id {then}, seq {then}")


def query_log(store: Store, flt: LogFilter, page: int | None = None, page_size: int = 50) -> tuple[list, int]:
    """(rows, total matching) of the unified log, newest first; ``page`` None: all rows
    (``log_rows`` reads them a few at a time)."""
    where, args = flt.where()
    total = store.query(f"SELECT (SELECT COUNT(*) FROM ({LIVE_LOG_SQL}){where}) "
                        f"+ (SELECT COUNT(*) FROM ({UPLOAD_LOG_SQL}){where})", args * 2)[0][0]
    if page is None:
        return store.query(_log_sql(where), args * 2), total
    size = int(page_size)
    offset = max(0, page - 1) * size
    if offset >= total:  # past the end (guard.page_at_most_last asks for the last page next)
        return [], total
    left = min(size, total - offset)
    if total - offset - left < offset:  # nearer the end: skip the fewer rows, from the oldest
        rows = store.query(_log_sql(where, newest_first=False) + " LIMIT ? OFFSET ?",
                           [*args, *args, left, total - offset - left])
        return rows[::-1], total
    return store.query(_log_sql(where) + " LIMIT ? OFFSET ?", [*args, *args, size, offset]), total


def log_rows(store: Store, flt: LogFilter, batch: int = 200) -> Generator[sqlite3.Row, None, None]:
    """Every row of the unified log that ``flt`` matches, newest first, read ``batch`` at a
    time: the CSV of ten years' log is 220 MB, and fetched whole it took the service from
    250 MB to 2.7 GB. ValueError (a bad filter) comes at the first ``next``."""
    where, args = flt.where()
    cursor = store.execute(_log_sql(where), args * 2)
    try:
        while chunk := cursor.fetchmany(batch):
            yield from chunk
    finally:
        cursor.close()  # a download cut short ends its read, or the log could not be checkpointed


def log_emotions(store: Store) -> list[str]:
    """Every emotion the log holds, for the filter's choices. The live ones are found by
    skipping through the ``state_changes_emotion`` index, one step per emotion: DISTINCT
    read every row (0.3 s for ten years, on every log page)."""
    return [r[0] for r in store.query(
        "WITH RECURSIVE live(emotion) AS (SELECT MIN(emotion) FROM state_changes UNION ALL "
        "SELECT (SELECT MIN(emotion) FROM state_changes WHERE emotion > live.emotion) FROM live "
        "WHERE live.emotion IS NOT NULL) "
        "SELECT DISTINCT emotion FROM upload_faces UNION SELECT emotion FROM live WHERE emotion IS NOT NULL ORDER BY 1")]


# ------------------------------------------------------------ dashboard
def day_summary(store: Store, start: float, end: float) -> dict:
    cols = ", ".join(f"COALESCE(SUM({c}), 0) AS {c}" for c in GROUP_COLUMNS.values())
    row = store.query(f"SELECT {cols} FROM minute_stats WHERE minute >= ? AND minute < ?", (start, end))[0]
    # in the groups' order (the chart's stack and legend), not the columns' (present_s came last)
    seconds = {g: float(row[GROUP_COLUMNS[g]]) for g in GROUPS if g in GROUP_COLUMNS}
    total = sum(seconds.values())
    alerts = store.query("SELECT COUNT(*) FROM alerts WHERE t >= ? AND t < ?", (start, end))[0][0]
    uploads = store.query("SELECT COUNT(*) FROM uploads WHERE created >= ? AND created < ?", (start, end))[0][0]
    return {"seconds": seconds, "total_s": total, "engaged_share": seconds[Group.ENGAGED] / total if total else None,
            "absent_s": seconds[Group.ABSENT], "alerts": alerts, "uploads": uploads}


def recent_alerts(store: Store, limit: int = 5) -> list[sqlite3.Row]:
    return store.query("SELECT id, t, level, snapshot_path FROM alerts ORDER BY t DESC LIMIT ?", (limit,))


def alerts_page(store: Store, page: int = 1, page_size: int = 50) -> tuple[list[sqlite3.Row], int]:
    """(rows, total) of every alert kept, newest first: each stored frame can be found."""
    total = store.query("SELECT COUNT(*) FROM alerts")[0][0]
    rows = store.query("SELECT id, t, level, snapshot_path FROM alerts ORDER BY t DESC, id DESC LIMIT ? OFFSET ?",
                       (int(page_size), max(0, page - 1) * int(page_size)))
    return rows, total


def stored_snapshots(store: Store) -> int:
    """How many alert frames are stored now (whatever the setting says today)."""
    return store.query("SELECT COUNT(*) FROM alerts WHERE snapshot_path IS NOT NULL")[0][0]


def student_summaries(store: Store) -> list[dict]:
    """Per user, from the photos they uploaded: uploads, faces, faces per engagement group,
    the dominant group and the engaged share. Live engagement is the desk's, no account's
    (the dashboard and log), so a user's "dominant" is only ever a level an emotion maps to
    (``LEVEL_GROUPS``), never Absent, Distracted or Paused. An unsure face ("Uncertain")
    counts in ``faces`` and ``unsure`` but in no group nor share: its level is a guess, so
    it is no "Not engaged" either."""
    rows = store.query(
        f"SELECT us.id, us.username, us.role, us.disabled, us.must_change_password, us.last_login, us.created, "
        "(SELECT COUNT(*) FROM uploads WHERE user_id = us.id) AS uploads, "  # not per group: an upload spans groups
        f"COUNT(f.id) AS faces, {_group_case('f.engagement', uncertain=True)} AS grp, "
        "MAX(u.created) AS last_upload "
        "FROM users us LEFT JOIN uploads u ON u.user_id = us.id LEFT JOIN upload_faces f ON f.upload_id = u.id "
        "GROUP BY us.id, grp ORDER BY us.username")
    users: dict[int, dict] = {}
    for r in rows:
        u = users.setdefault(r["id"], {"id": r["id"], "username": r["username"], "role": r["role"],
                                       "disabled": bool(r["disabled"]), "last_login": r["last_login"],
                                       "must_change_password": bool(r["must_change_password"]),
                                       "uploads": 0, "faces": 0, "unsure": 0, "groups": dict.fromkeys(GROUPS, 0),
                                       "last_upload": None})
        u["uploads"] = r["uploads"]
        if r["faces"]:
            u["faces"] += r["faces"]
            if r["grp"] == UNCERTAIN:
                u["unsure"] += r["faces"]
            else:
                u["groups"][r["grp"]] += r["faces"]
        if r["last_upload"]:
            u["last_upload"] = max(u["last_upload"] or 0, r["last_upload"])
    for u in users.values():
        read = u["faces"] - u["unsure"]  # the faces whose level was read
        u["dominant"] = max(u["groups"], key=u["groups"].get) if read else None
        u["engaged_share"] = u["groups"][Group.ENGAGED] / read if read else None
    return sorted(users.values(), key=lambda u: u["username"].lower())


# ------------------------------------------------------------ live timeline
def timeline(store: Store, cutoff: float) -> tuple[sqlite3.Row | None, list[sqlite3.Row]]:
    """(the last state change at or before ``cutoff``, the changes after it in order)."""
    before = store.query("SELECT t, level, grp FROM state_changes WHERE t <= ? ORDER BY t DESC LIMIT 1", (cutoff,))
    rows = store.query("SELECT t, level, grp FROM state_changes WHERE t > ? ORDER BY t", (cutoff,))
    return (before[0] if before else None), rows


# ------------------------------------------------------------ uploads and stored images
def recent_uploads(store: Store, user_id: int, limit: int = 10, offset: int = 0) -> list[sqlite3.Row]:
    """A user's uploads, newest first, ``limit`` of them from ``offset`` (the history's
    pages: every photo can be found, opened and deleted), each with its faces' levels
    joined by "; "."""
    return store.query(
        "SELECT u.id, u.created, u.filename, u.face_count, "
        "(SELECT group_concat(f.engagement, '; ') FROM upload_faces f WHERE f.upload_id = u.id) AS levels "
        "FROM uploads u WHERE u.user_id = ? ORDER BY u.created DESC, u.id DESC LIMIT ? OFFSET ?",
        (user_id, int(limit), max(0, int(offset))))


def upload_count(store: Store, user_id: int) -> int:
    """How many uploads a user has stored (the history shows them a page at a time)."""
    return store.query("SELECT COUNT(*) FROM uploads WHERE user_id = ?", (user_id,))[0][0]


def upload_result(store: Store, upload_id: int) -> dict | None:
    """One stored upload as its result page shows it: the upload, its owner's name and its
    faces (numbered as when analysed: stored in reading order), or None."""
    rows = store.query("SELECT u.id, u.user_id, us.username, u.created, u.filename, u.width, u.height, "
                       "u.image_path FROM uploads u LEFT JOIN users us ON us.id = u.user_id WHERE u.id = ?",
                       (upload_id,))
    if not rows:
        return None
    faces = [{"box": [f["x"], f["y"], f["w"], f["h"]], "emotion": f["emotion"], "confidence": f["confidence"],
              "probabilities": json.loads(f["probabilities"]), "engagement": f["engagement"],
              "uncertain": f["engagement"] == UNCERTAIN}
             for f in store.query("SELECT x, y, w, h, emotion, confidence, probabilities, engagement "
                                  "FROM upload_faces WHERE upload_id = ? ORDER BY id", (upload_id,))]
    return {**dict(rows[0]), "faces": faces}


def upload_of_form(store: Store, user_id: int, form_key: str) -> int | None:
    """The upload this user's form (``resubmit.form_key``) stored, or None: none, or deleted
    since (by its owner, an admin or the retention period)."""
    rows = store.query("SELECT id FROM uploads WHERE form_key = ? AND user_id = ? ORDER BY id LIMIT 1",
                       (form_key, user_id))
    return rows[0]["id"] if rows else None


def upload_image_path(store: Store, upload_id: int) -> str | None:
    rows = store.query("SELECT image_path FROM uploads WHERE id = ?", (upload_id,))
    return rows[0]["image_path"] if rows else None


def alert_snapshot_path(store: Store, alert_id: int) -> str | None:
    rows = store.query("SELECT snapshot_path FROM alerts WHERE id = ?", (alert_id,))
    return rows[0]["snapshot_path"] if rows else None


# ------------------------------------------------------------ what a deletion would remove, and the audit log
def _upload_counts(store: Store, where: str, params=()) -> dict:
    """Uploads, faces analysed and kept images among the uploads ``where`` selects."""
    row = store.query("SELECT COUNT(*) AS uploads, COALESCE(SUM(face_count), 0) AS faces, "
                      f"COUNT(image_path) AS images FROM uploads WHERE {where}", params)[0]
    return {"uploads": row["uploads"], "faces": row["faces"], "images": row["images"]}


def user_data_counts(store: Store, user_id: int) -> dict:
    """What deleting a user's data removes: uploads, faces analysed and kept images."""
    return _upload_counts(store, "user_id = ?", (user_id,))


def students_to_remove(store: Store) -> tuple[list[sqlite3.Row], dict]:
    """The student accounts (id, username) and what deleting them all removes (the counts of
    ``user_data_counts``): the end of a term's "Delete every student"."""
    people = store.query("SELECT id, username FROM users WHERE role = 'student' ORDER BY username")
    return people, _upload_counts(store, "user_id IN (SELECT id FROM users WHERE role = 'student')")


def audit_log(store: Store, page: int = 1, page_size: int = 50) -> tuple[list[sqlite3.Row], int]:
    """(rows, total) of the admins' audit log, newest first."""
    total = store.query("SELECT COUNT(*) FROM audit")[0][0]
    rows = store.query("SELECT t, actor, action, target, detail FROM audit ORDER BY t DESC, id DESC LIMIT ? OFFSET ?",
                       (int(page_size), max(0, page - 1) * int(page_size)))
    return rows, total
