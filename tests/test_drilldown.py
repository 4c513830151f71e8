"""Drill-down and the log's dates, over real HTTP: an upload history row and a log row
open that photo's stored result; the log has date presets and says when From is after
To; the web CSV and `engage-edge export` share one format; `/api/state`'s ``since`` is
a wall-clock time."""
from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
import re
import time

import pytest
import requests

from edge_app import config as config_mod
from edge_app.cli import main
from tests.conftest import login, wait_for

STUDENT_PW = "student-pw-123"


@pytest.fixture
def web(web_appliance):
    web_appliance.accounts.create_user("sam", STUDENT_PW, "student")
    web_appliance.accounts.create_user("kim", STUDENT_PW, "student")
    return web_appliance


def upload(s: requests.Session, url: str, jpeg: bytes, name: str = "grace.jpg") -> dict:
    r = s.post(f"{url}/api/analyze", files={"image": (name, jpeg, "image/jpeg")}, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def faces_table(html: str) -> list[tuple[str, str]]:
    """(emotion summary, engagement) per row of the results table."""
    body = html.split('<table id="faces">', 1)[1].split("</table>", 1)[0]
    return re.findall(r"<summary>([^<]+)</summary>.*?<span class=\"pill[^\"]*\">([^<]+)</span>", body, re.S)


def test_an_upload_history_row_opens_that_result(web, face_jpeg):
    sam = login(web.url, "sam", STUDENT_PW)
    result = upload(sam, web.url, face_jpeg)
    page = sam.get(f"{web.url}/upload", timeout=10).text
    history = page.split('<table id="history">', 1)[1]
    link = f'/uploads/{result["upload_id"]}'
    assert f'href="{link}"' in history
    opened = sam.get(web.url + link, timeout=10)
    assert opened.status_code == 200
    assert "Results for grace.jpg" in opened.text
    (face,) = result["faces"]
    assert faces_table(opened.text) == [(face["emotion"], face["engagement"])]
    assert 'class="preview"' in opened.text and 'alt="Face 1"' in opened.text  # the kept thumbnail, annotated
    # someone else's result is not theirs to open; an admin may
    kim = login(web.url, "kim", STUDENT_PW)
    assert kim.get(web.url + link, timeout=10).status_code == 404
    assert kim.get(f"{web.url}/uploads/999999", timeout=10).status_code == 404
    assert login(web.url).get(web.url + link, timeout=10).status_code == 200


def test_a_result_without_a_kept_photo_still_shows_its_faces(make_appliance, cfg, face_jpeg):
    appliance = make_appliance(config_mod.with_changes(cfg, {"privacy.keep_uploads": "none"}), with_loop=False)
    s = login(appliance.url)
    result = upload(s, appliance.url, face_jpeg)
    opened = s.get(f"{appliance.url}/uploads/{result['upload_id']}", timeout=10)
    assert opened.status_code == 200 and 'id="not-kept"' in opened.text and 'class="preview"' not in opened.text
    assert faces_table(opened.text) == [(result["faces"][0]["emotion"], result["faces"][0]["engagement"])]


def test_a_log_row_opens_that_result(web, face_jpeg):
    admin = login(web.url)
    result = upload(login(web.url, "sam", STUDENT_PW), web.url, face_jpeg)
    log = admin.get(f"{web.url}/admin/log", timeout=10).text
    row = re.search(r'<a href="(/uploads/\d+)" title="Open this photo', log)
    assert row and row.group(1) == f"/uploads/{result['upload_id']}"
    opened = admin.get(web.url + row.group(1), timeout=10)
    assert opened.status_code == 200 and "for sam" in opened.text


def test_log_date_presets_and_from_after_to(web, face_jpeg):
    admin = login(web.url)
    upload(admin, web.url, face_jpeg)
    page = admin.get(f"{web.url}/admin/log", params={"user": "admin"}, timeout=10).text
    presets = dict((label, href.replace("&amp;", "&")) for href, label in
                   re.findall(r'<a href="(/admin/log\?[^"]+)">([^<]+)</a>', page.split('id="presets"', 1)[1]))
    today = dt.date.today()
    assert f"from={today.isoformat()}" in presets["Today"] and f"to={today.isoformat()}" in presets["Today"]
    assert f"from={(today - dt.timedelta(days=6)).isoformat()}" in presets["Last 7 days"]
    assert "user=admin" in presets["Last 7 days"]  # the other filters stay
    week = admin.get(web.url + presets["Last 7 days"], timeout=10)
    assert week.status_code == 200 and re.search(r'id="count">1 row<', week.text)
    backwards = admin.get(f"{web.url}/admin/log", params={"from": "2026-02-01", "to": "2026-01-01"}, timeout=10)
    assert backwards.status_code == 400
    assert "From (2026-02-01) is after To (2026-01-01)" in backwards.text
    api = admin.get(f"{web.url}/api/admin/log", params={"from": "2026-02-01", "to": "2026-01-01"}, timeout=10)
    assert api.status_code == 400 and "is after To" in api.json()["error"]


def test_the_web_csv_and_the_export_command_have_one_format(web, face_jpeg, tmp_path, cfg):
    admin = login(web.url)
    upload(login(web.url, "sam", STUDENT_PW), web.url, face_jpeg, name="=Müller_Zoë.jpg")
    web.store.log_state_change(time.time() - 5, "Engaged - paying attention", "Engaged", "neutral", 0.8123456)
    # as the capture loop logs a state with no face read: no emotion, confidence 0.0
    web.store.log_state_change(time.time() - 8, "Absent", "Absent", None, 0.0)
    web.store.log_state_change(time.time() - 9, "Distracted - looking away", "Distracted", None, 0.0)
    r = admin.get(f"{web.url}/admin/log.csv", timeout=10)
    assert r.status_code == 200
    # a byte order mark first: Excel on Windows read the UTF-8 without one as its own code page ("MÃ¼ller")
    assert r.content.startswith(codecs.BOM_UTF8) and r.headers["Content-Type"] == "text/csv; charset=utf-8"
    web_text = r.content.decode("utf-8-sig")
    web_rows = list(csv.DictReader(io.StringIO(web_text)))
    out = tmp_path / "export.csv"
    empty = tmp_path / "empty.toml"
    empty.write_text("# defaults\n")
    assert main(["export", "--since", "2020-01-01", "--out", str(out), "--data-dir", str(cfg.store.data_dir),
                 "--config", str(empty)]) == 0
    assert out.read_bytes().startswith(codecs.BOM_UTF8)  # the export command's file too
    exported = list(csv.DictReader(out.open(encoding="utf-8-sig")))
    assert web_text.splitlines()[0] == out.read_text(encoding="utf-8-sig").splitlines()[0]  # the same columns
    for kind, group in (("state", "Engaged"), ("state", "Absent"), ("state", "Distracted"), ("upload", None)):
        (w,) = [row for row in web_rows if row["kind"] == kind and group in (None, row["group"])]
        (e,) = [row for row in exported if row["kind"] == kind and group in (None, row["group"])]
        assert w == e, (w, e)
        assert dt.datetime.fromisoformat(w["time"]).tzinfo is not None  # local time with its offset
        # a state with no face read has no confidence: empty, not 0.0 (it read as 'sure of nothing')
        assert (w["confidence"] == "") == (group in ("Absent", "Distracted")), w
    shown = admin.get(f"{web.url}/admin/log", params={"kind": "live"}, timeout=10).text
    cells = re.findall(r'<span class="pill g-(\w[\w-]*)">[^<]*</span></td><td>[^<]*</td><td>([^<]*)</td>', shown)
    assert sorted(cells) == [("absent", ""), ("distracted", ""), ("engaged", "81%")], cells
    api = admin.get(f"{web.url}/api/admin/log", params={"kind": "live"}, timeout=10).json()["rows"]
    assert sorted((row["grp"], row["confidence"]) for row in api) == [("Absent", None), ("Distracted", None),
                                                                       ("Engaged", 0.8123456)]
    (face,) = [row for row in web_rows if row["kind"] == "upload"]
    assert face["user"] == "sam" and face["file"] == "'=Müller_Zoë.jpg"  # no spreadsheet formula


def test_api_state_since_is_wall_clock(appliance):
    s = login(appliance.url)
    before = time.time()
    state = wait_for(lambda: (b := s.get(f"{appliance.url}/api/state", timeout=10).json())["seq"] > 0 and b,
                     timeout=30, what="a processed frame")
    assert appliance.ctx.started - 1 <= state["since"] <= time.time()
    assert before - 60 <= state["t"] <= time.time() and state["t"] >= state["since"]
    assert dt.datetime.fromisoformat(state["since_iso"]).timestamp() == pytest.approx(state["since"], abs=1)
    assert state["t"] - state["since"] - 0.1 <= state["for_s"] <= time.time() - state["since"] + 0.1  # until now


def test_the_face_s_expression_in_api_state_is_for_those_who_see_the_picture(appliance):
    """Every account got each frame's emotion, confidence and all eight probabilities of
    whoever sits at the desk now, which no page shows: the picture itself is held back
    from students (privacy.live_video), so is its expression. The level stays for all."""
    appliance.accounts.create_user("sam", STUDENT_PW, "student")
    admin, sam = login(appliance.url), login(appliance.url, "sam", STUDENT_PW)
    seen = wait_for(lambda: (b := admin.get(f"{appliance.url}/api/state", timeout=10).json())["emotion"] and b,
                    timeout=60, what="a face read by the admin's view")
    assert seen["probabilities"] and seen["confidence"] is not None
    theirs = sam.get(f"{appliance.url}/api/state", timeout=10).json()
    assert (theirs["emotion"], theirs["confidence"], theirs["probabilities"]) == (None, None, {})
    assert theirs["level"] and theirs["group"] and theirs["since"]  # the state itself, as on every page


def test_the_level_s_words_that_name_the_emotion_are_for_those_who_see_the_picture(appliance):
    """A data-protection officer's finding: /api/state held the emotion back from students,
    yet its level said "Engaged - likes the topic" (happiness under the default mapping),
    and /api/timeline, /live and the desk view said it too. Those who may not see the
    picture get the level's group, as the broker does without include_emotion; an admin
    gets the words."""
    from edge_app.engagement import names_an_emotion

    appliance.accounts.create_user("sam", STUDENT_PW, "student")
    admin, sam = login(appliance.url), login(appliance.url, "sam", STUDENT_PW)
    seen = wait_for(lambda: (b := admin.get(f"{appliance.url}/api/state", timeout=10).json())["emotion"]
                    and names_an_emotion(b["level"]) and b, timeout=60, what="a face read, in the mapping's words")
    words = seen["level"]
    theirs = wait_for(lambda: (b := sam.get(f"{appliance.url}/api/state", timeout=10).json())["seq"] >= seen["seq"]
                      and b, what="the student's read of the same state or a later one")
    assert theirs["level"] == theirs["group"] or not names_an_emotion(theirs["level"]), theirs
    # the timeline is the log: the state /api/state shows now is in it once the loop has logged it (a clean-clone run
    # read it a moment before, ['Absent', 'Absent'])
    wait_for(lambda: words in [p["level"] for p in admin.get(f"{appliance.url}/api/timeline", timeout=10).json()["points"]],
             timeout=30, what="the admin's timeline in the mapping's words")
    timeline = [p["level"] for p in sam.get(f"{appliance.url}/api/timeline", timeout=10).json()["points"]]
    assert timeline and not any(names_an_emotion(level) for level in timeline), timeline
    assert all(a != b for a, b in zip(timeline, timeline[1:])), timeline  # no expression change shows as a point
    for page in ("/live", "/glance"):
        body = sam.get(f"{appliance.url}{page}", timeout=10).text
        assert " - likes the topic" not in body and " - paying attention" not in body, page
