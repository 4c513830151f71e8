"""The web UI's read queries (``edge_app.store.reports``) on a real SQLite file: the unified
log with its filters and pages, day summaries, the live timeline, per-user summaries and
upload history. The HTTP tests show these pages; these pin the numbers behind them."""
from __future__ import annotations

import datetime as dt
import time

import pytest

from edge_app.engagement import GROUPS, UNCERTAIN, Group, group_of
from edge_app.store import reports
from edge_app.store.accounts import Accounts
from edge_app.store.database import Store
from edge_app.store.reports import LogFilter


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "data")
    yield s
    s.close()


@pytest.fixture
def people(store):
    accounts = Accounts(store)
    return {name: accounts.create_user(name, "password-123") for name in ("ana", "ben")}


def face(engagement: str, emotion: str = "happiness") -> dict:
    return {"box": [1, 2, 3, 4], "emotion": emotion, "confidence": 0.75,
            "probabilities": {emotion: 0.75}, "engagement": engagement}


def test_the_sql_group_of_a_level_agrees_with_group_of(store, people):
    levels = ["Engaged - likes the topic", "Partially engaged", "Not engaged - bored", "Distracted", "Absent"]
    store.add_upload(people["ana"].id, "a.jpg", 10, 10, [face(level) for level in levels])
    rows, total = reports.query_log(store, LogFilter(kind="upload"))
    assert total == 5
    assert sorted((r["level"], r["grp"]) for r in rows) == sorted((lv, group_of(lv)) for lv in levels)


def test_the_log_joins_live_changes_and_uploads_newest_first_and_filters(store, people):
    now = time.time()
    store.log_state_change(now - 300, "Engaged - likes the topic", Group.ENGAGED, "happiness", 0.9)
    store.log_state_change(now - 200, "Absent", Group.ABSENT, None, None)
    store.add_upload(people["ben"].id, "ben.jpg", 10, 10, [face("Not engaged - bored", "sadness")])

    rows, total = reports.query_log(store, LogFilter())
    assert total == 3 and [r["kind"] for r in rows] == ["upload", "live", "live"]
    assert rows[0]["username"] == "ben" and rows[0]["filename"] == "ben.jpg"

    assert reports.query_log(store, LogFilter(user="ben"))[1] == 1
    assert reports.query_log(store, LogFilter(level="Absent"))[0][0]["kind"] == "live"
    assert reports.query_log(store, LogFilter(emotion="sadness"))[0][0]["grp"] == "Not engaged"
    tomorrow = (dt.date.today() + dt.timedelta(days=1)).isoformat()
    assert reports.query_log(store, LogFilter(date_from=tomorrow))[1] == 0
    assert reports.query_log(store, LogFilter(date_to=tomorrow))[1] == 3
    assert reports.log_emotions(store) == ["happiness", "sadness"]


def test_a_photo_in_which_no_face_was_found_is_in_the_log_and_the_export(store, people, tmp_path):
    """It is kept (its file name, its thumbnail) like any other photo: before, the log, its
    CSV and ``engage-edge export`` showed only faces, so a student's photo with none could
    not be found, not even under their name, while the dashboard counted it."""
    from edge_app.store.export import export_rows

    store.add_upload(people["ana"].id, "ana_at_desk.jpg", 10, 10, [])
    store.add_upload(people["ben"].id, "ben.jpg", 10, 10, [face("Engaged")])
    rows, total = reports.query_log(store, LogFilter(user="ana"))
    assert total == 1 and rows[0]["filename"] == "ana_at_desk.jpg" and rows[0]["upload_id"]
    assert (rows[0]["level"], rows[0]["grp"], rows[0]["emotion"], rows[0]["confidence"]) == ("No face", "No face", None,
                                                                                               None)
    assert reports.query_log(store, LogFilter(kind="upload"))[1] == 2
    assert reports.query_log(store, LogFilter(level="Engaged"))[1] == 1  # no level: found by no level's filter
    exported = [r for r in export_rows(store.data_dir, 0) if r["kind"] == "upload"]
    assert [(r["user"], r["file"], r["level"], r["group"]) for r in exported] == [
        ("ana", "ana_at_desk.jpg", "No face", "No face"), ("ben", "ben.jpg", "Engaged", "Engaged")]


def test_the_log_pages_and_counts_every_match(store):
    now = time.time()
    for i in range(7):
        store.log_state_change(now - i, "Distracted", Group.DISTRACTED, None, None)
    rows, total = reports.query_log(store, LogFilter(), page=2, page_size=3)
    assert total == 7 and [r["t"] for r in rows] == [now - 3, now - 4, now - 5]
    assert len(reports.query_log(store, LogFilter(), page=3, page_size=3)[0]) == 1


def test_a_date_at_either_end_of_the_calendar_bounds_nothing(store):
    # the first and last days a date input offers: "To 9999-12-31" was a 500 (its next
    # midnight overflows), "From 0001-01-01" a refusal ("year 0 is out of range")
    store.log_state_change(time.time(), "Absent", Group.ABSENT, None, None)
    assert reports.query_log(store, LogFilter(date_from="0001-01-01", date_to="9999-12-31"))[1] == 1
    assert reports.query_log(store, LogFilter(date_to="0001-01-01"))[1] == 0
    assert reports.query_log(store, LogFilter(date_from="9999-12-31"))[1] == 0


@pytest.mark.parametrize("flt, message", [
    (LogFilter(level="Sleepy"), "engagement level 'Sleepy' is unknown"),
    (LogFilter(kind="photo"), "kind is live or upload"),
    (LogFilter(date_from="31/01/2026"), "is not a date like 2026-01-31"),
])
def test_a_bad_filter_says_what_is_allowed(store, flt, message):
    with pytest.raises(ValueError, match=message):
        reports.query_log(store, flt)


def test_day_summary_adds_up_the_minutes_alerts_and_uploads_of_its_window(store, people):
    start = 1_700_000_040.0
    store.log_minute({"minute": start, "frames": 10, "faces": 9, Group.ENGAGED: 30.0, Group.ABSENT: 10.0})
    store.log_minute({"minute": start + 60, "frames": 10, "faces": 9, Group.ENGAGED: 20.0, Group.NOT_ENGAGED: 35.0,
                      Group.PRESENT: 5.0})
    store.log_minute({"minute": start + 3600, "frames": 10, "faces": 9, Group.ENGAGED: 60.0})  # outside
    store.log_alert(start + 90, "Not engaged")
    s = reports.day_summary(store, start, start + 120)
    assert s["seconds"] == {Group.ENGAGED: 50.0, Group.PARTIALLY_ENGAGED: 0.0, Group.NOT_ENGAGED: 35.0,
                            Group.DISTRACTED: 0.0, Group.ABSENT: 10.0, Group.PRESENT: 5.0}
    assert s["total_s"] == 100.0 and s["engaged_share"] == pytest.approx(0.5) and s["absent_s"] == 10.0
    assert s["alerts"] == 1 and s["uploads"] == 0
    assert reports.day_summary(store, 0, 1)["engaged_share"] is None  # nothing tracked: no share, not 0 %


def test_timeline_gives_the_state_at_the_cutoff_and_the_changes_after(store):
    for t, group in ((100.0, Group.ENGAGED), (200.0, Group.ABSENT), (300.0, Group.DISTRACTED)):
        store.log_state_change(t, group, group, None, None)
    before, after = reports.timeline(store, 250.0)
    assert before["t"] == 200.0 and before["grp"] == "Absent"
    assert [r["grp"] for r in after] == ["Distracted"]
    assert reports.timeline(store, 50.0)[0] is None


def test_student_summaries_count_faces_per_group_and_pick_the_dominant_one(store, people):
    store.add_upload(people["ana"].id, "1.jpg", 10, 10, [face("Engaged - likes the topic"), face("Not engaged")])
    store.add_upload(people["ana"].id, "2.jpg", 10, 10, [face("Engaged")])
    summaries = {u["username"]: u for u in reports.student_summaries(store)}
    ana, ben = summaries["ana"], summaries["ben"]
    assert ana["uploads"] == 2 and ana["faces"] == 3 and ana["dominant"] == "Engaged"
    assert ana["groups"] == {**dict.fromkeys(GROUPS, 0), "Engaged": 2, "Not engaged": 1}
    assert ana["engaged_share"] == pytest.approx(2 / 3)
    assert ben["uploads"] == 0 and ben["dominant"] is None and ben["engaged_share"] is None


def test_student_summaries_count_an_unsure_face_in_no_group(store, people):
    # two faces read as unsure and one engaged: she is mostly Engaged (100 % of the faces
    # whose level was read), not "Not engaged" by two guesses counted as such
    store.add_upload(people["ana"].id, "1.jpg", 10, 10, [face(UNCERTAIN), face(UNCERTAIN), face("Engaged")])
    store.add_upload(people["ben"].id, "2.jpg", 10, 10, [face(UNCERTAIN)])
    summaries = {u["username"]: u for u in reports.student_summaries(store)}
    ana, ben = summaries["ana"], summaries["ben"]
    assert ana["faces"] == 3 and ana["unsure"] == 2
    assert ana["groups"] == {**dict.fromkeys(GROUPS, 0), "Engaged": 1}
    assert ana["dominant"] == "Engaged" and ana["engaged_share"] == pytest.approx(1.0)
    assert ben["uploads"] == 1 and ben["dominant"] is None and ben["engaged_share"] is None  # nothing read


def test_upload_history_and_the_stored_image_paths(store, people):
    first = store.add_upload(people["ana"].id, "first.jpg", 10, 10, [face("Engaged"), face("Absent")])
    second = store.add_upload(people["ana"].id, "second.jpg", 10, 10, [])
    store.add_upload(people["ben"].id, "not-ana.jpg", 10, 10, [])
    history = reports.recent_uploads(store, people["ana"].id)
    assert {r["id"] for r in history} == {first, second}
    assert {r["filename"]: r["levels"] for r in history} == {"first.jpg": "Engaged; Absent", "second.jpg": None}

    assert reports.upload_image_path(store, first) is None
    store.set_upload_image(first, store.write_image(f"uploads/{first}.jpg", b"jpeg"))
    assert reports.upload_image_path(store, first) == f"uploads/{first}.jpg"
    assert reports.upload_image_path(store, 9999) is None

    store.log_alert(5.0, "Distracted", "alerts/5.jpg")
    alert_id = reports.recent_alerts(store)[0]["id"]
    assert reports.alert_snapshot_path(store, alert_id) == "alerts/5.jpg"
    assert reports.alert_snapshot_path(store, alert_id + 1) is None


def _ties(store, people) -> None:
    """Rows sharing their time: live changes, and photos whose faces share the photo's."""
    t = 1_700_000_000.0
    with store.transaction() as conn:
        conn.executemany("INSERT INTO state_changes(t, level, grp, emotion, confidence) VALUES (?, ?, ?, ?, ?)",
                         [(t - (i % 3), f"Engaged {i}", Group.ENGAGED, "happiness", 0.5) for i in range(8)]
                         + [(t - 5, "Absent", Group.ABSENT, None, None)])
    for k, name in enumerate(("ana", "ben", "ana")):
        upload = store.add_upload(people[name].id, f"p{k}.jpg", 10, 10,
                                  [face(f"Engaged f{j}") for j in range(3)] if k != 1 else [])
        store.execute("UPDATE uploads SET created = ? WHERE id = ?", (t - k, upload))


def test_every_page_is_its_slice_of_the_whole_log_ties_in_the_order_stored(store, people):
    """A page near the end is read from the oldest row back, one near the start from the
    newest: both are slices of one order, in which the rows of one time come live first,
    then each photo's faces as stored (as the sort of the whole log gave them before)."""
    _ties(store, people)
    everything, total = reports.query_log(store, LogFilter())
    key = [(r["t"], r["kind"], r["level"], r["upload_id"]) for r in everything]
    assert total == len(everything) == 9 + 3 + 1 + 3
    t = 1_700_000_000.0
    assert key[:6] == [(t, "live", f"Engaged {i}", None) for i in (0, 3, 6)] + [(t, "upload", f"Engaged f{j}", 1)
                                                                                for j in range(3)]
    assert [(r["t"], r["kind"], r["level"]) for r in everything if r["t"] == t - 1] == [
        (t - 1, "live", "Engaged 1"), (t - 1, "live", "Engaged 4"), (t - 1, "live", "Engaged 7"),
        (t - 1, "upload", "No face")]
    assert [(r["t"], r["level"]) for r in reports.log_rows(store, LogFilter())] == [(r["t"], r["level"])
                                                                                   for r in everything]
    for size in (1, 3, 4, 5):
        pages = [reports.query_log(store, LogFilter(), page, size) for page in range(1, total // size + 3)]
        assert all(n == total for _, n in pages)
        assert [(r["t"], r["kind"], r["level"], r["upload_id"]) for rows, _ in pages for r in rows] == key, size
    for flt in (LogFilter(user="ana"), LogFilter(kind="live"), LogFilter(level="Engaged"), LogFilter(emotion="happiness")):
        whole, n = reports.query_log(store, flt)
        pages = [r for page in range(1, n + 2) for r in reports.query_log(store, flt, page, 2)[0]]
        assert [tuple(r) for r in pages] == [tuple(r) for r in whole] and n == len(whole), flt


@pytest.mark.parametrize("flt", [LogFilter(), LogFilter(level="Engaged"), LogFilter(emotion="happiness"),
                                 LogFilter(kind="live"), LogFilter(date_from="2023-11-01", date_to="2023-11-30"),
                                 LogFilter(level="Absent", date_from="2023-11-01")], ids=repr)
def test_a_log_page_reads_state_changes_in_index_order_without_sorting_the_log(store, people, flt):
    """ORDER BY over the union of state changes and uploads sorted the whole log for every
    page ("USE TEMP B-TREE FOR ORDER BY": ten years' 2.6 million rows, 3 s a page). The
    page's own statement, as query_log runs it, reads both halves from an index in time
    order (what is sorted is only rows of one time, "RIGHT PART OF ORDER BY")."""
    _ties(store, people)
    statements: list[str] = []
    store.connect().set_trace_callback(statements.append)
    try:
        rows, total = reports.query_log(store, flt, page=1)
    finally:
        store.connect().set_trace_callback(None)
    assert rows and total
    page_sql = [s for s in statements if " LIMIT " in s]
    assert len(page_sql) == 1, statements
    plan = [r["detail"] for r in store.query("EXPLAIN QUERY PLAN " + page_sql[0])]
    assert plan[:2] == ["MERGE (UNION ALL)", "LEFT"] and "RIGHT" in plan, plan  # the halves merged, each in order
    live, uploads = plan[2:plan.index("RIGHT")], plan[plan.index("RIGHT") + 1:]
    assert "USE TEMP B-TREE FOR ORDER BY" not in live, plan
    assert [step for step in live if "state_changes" in step and "USING" in step and "INDEX" in step], plan
    if flt == LogFilter():  # uploads by time too (an emotion's are found through their faces, and sorted)
        assert "USE TEMP B-TREE FOR ORDER BY" not in uploads and "SCAN u USING INDEX uploads_created" in uploads, plan


def test_the_log_s_emotions_are_found_without_reading_every_row(store, people):
    """The filter's choices: every emotion logged, live or in a photo, each once."""
    _ties(store, people)
    store.log_state_change(1.0, "Not engaged", Group.NOT_ENGAGED, "sadness", 0.5)
    store.add_upload(people["ben"].id, "b.jpg", 10, 10, [face("Engaged", "contempt")])
    statements: list[str] = []
    store.connect().set_trace_callback(statements.append)
    try:
        assert reports.log_emotions(store) == ["contempt", "happiness", "sadness"]
    finally:
        store.connect().set_trace_callback(None)
    plan = [r["detail"] for r in store.query("EXPLAIN QUERY PLAN " + statements[-1])]
    # SELECT DISTINCT read all ten years' state changes (0.3 s on every log page); each step is one index search
    assert not [step for step in plan if step.startswith("SCAN state_changes")], plan
    assert "SEARCH state_changes USING COVERING INDEX state_changes_emotion (emotion>?)" in plan, plan
