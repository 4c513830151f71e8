"""The whole appliance: demo source -> detector -> int8 model -> engagement -> SQLite, and
the web UI on a real HTTP server on loopback. Plus the whole capture loop over one full
demo minute on a scene-time clock, so every state the demo promises is seen."""
from __future__ import annotations

import re
import sqlite3
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import requests
from conftest import ADMIN_PASSWORD, login, wait_for

from edge_app import config as config_mod
from edge_app.engagement import ABSENT, DISTRACTED, group_of
from edge_app.store.accounts import Accounts
from edge_app.store.database import Store
from edge_app.vision.classifier import KNOWN_LABELS

EMOTION_GROUPS = ("Engaged", "Partially engaged", "Not engaged")


def db_rows(cfg: config_mod.Config, sql: str) -> list[sqlite3.Row]:
    """Read the appliance's SQLite file from outside, as an admin tool would."""
    conn = sqlite3.connect(config_mod.data_dir(cfg) / "engage.db", timeout=5)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def read_mjpeg_frame(response: requests.Response, max_bytes: int = 5_000_000) -> bytes:
    """The first part of a multipart/x-mixed-replace stream, parsed by its headers."""
    ctype = response.headers["Content-Type"]
    assert ctype.startswith("multipart/x-mixed-replace"), ctype
    boundary = ctype.split("boundary=", 1)[1].strip().strip('"').encode()
    buf = b""
    chunks = response.iter_content(chunk_size=4096)
    while b"\r\n\r\n" not in buf.split(b"--" + boundary, 1)[-1]:
        buf += next(chunks)
        assert len(buf) < max_bytes
    start = buf.index(b"--" + boundary)
    head, rest = buf[start:].split(b"\r\n\r\n", 1)
    headers = dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:])
    assert headers[b"Content-Type"] == b"image/jpeg"
    length = int(headers[b"Content-Length"])
    while len(rest) < length:
        rest += next(chunks)
    return rest[:length]


# ------------------------------------------------------------------ over HTTP
def test_login_is_required(appliance):
    assert requests.post(f"{appliance.url}/api/analyze", files={"image": ("a.jpg", b"x")}, timeout=10).status_code == 401
    assert requests.get(f"{appliance.url}/live.mjpg", timeout=10).status_code == 401
    r = requests.post(f"{appliance.url}/api/login", json={"username": "admin", "password": "wrong-password"}, timeout=10)
    assert r.status_code == 401


def test_upload_a_face_photo_and_get_an_emotion(appliance, admin_session, face_jpeg, cfg):
    r = admin_session.post(f"{appliance.url}/api/analyze", files={"image": ("grace.jpg", face_jpeg, "image/jpeg")},
                           headers={"X-CSRF-Token": admin_session.csrf}, timeout=30)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["width"], body["height"]) == (512, 600)
    (face,) = body["faces"]
    x, y, w, h = face["box"]
    assert x <= 265 <= x + w and y <= 215 <= y + h
    assert face["emotion"] in KNOWN_LABELS
    assert 0 < face["confidence"] <= 1
    assert set(face["probabilities"]) == set(KNOWN_LABELS)
    assert face["engagement"] == cfg.engagement.mapping[face["emotion"]]
    # logged: one upload row and one face row, by this user
    (upload,) = db_rows(cfg, "SELECT u.id, u.face_count, us.username FROM uploads u JOIN users us ON us.id = u.user_id")
    assert (upload["id"], upload["face_count"], upload["username"]) == (body["upload_id"], 1, "admin")
    (row,) = db_rows(cfg, "SELECT emotion, engagement FROM upload_faces")
    assert (row["emotion"], row["engagement"]) == (face["emotion"], face["engagement"])


def test_a_non_image_upload_is_refused_clearly(appliance, admin_session, cfg):
    r = admin_session.post(f"{appliance.url}/api/analyze", files={"image": ("notes.jpg", b"not a picture", "image/jpeg")},
                           headers={"X-CSRF-Token": admin_session.csrf}, timeout=30)
    assert r.status_code == 400
    assert "JPEG, PNG or WebP" in r.json()["error"]
    assert db_rows(cfg, "SELECT COUNT(*) FROM uploads")[0][0] == 0


def test_live_mjpeg_gives_a_decodable_frame(appliance, admin_session):
    with admin_session.get(f"{appliance.url}/live.mjpg", stream=True, timeout=30) as r:
        assert r.status_code == 200
        jpeg = read_mjpeg_frame(r)
    frame = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert frame is not None and frame.shape == (480, 640, 3)
    assert frame.std() > 10


def test_healthz_and_state_changes_land_in_sqlite(appliance, admin_session, cfg):
    """The loop logs its first state, "Absent", as it starts; the demo opens on Grace
    Hopper, so within seconds it logs an engagement level - but not a row per frame."""
    health = wait_for(lambda: (h := requests.get(f"{appliance.url}/healthz", timeout=10).json())["frames"] > 5 and h,
                      timeout=30, what="the capture loop producing frames")
    assert health["status"] == "ok" and health["camera"] == "ok"
    assert health["model"]["sha256"] == appliance.classifier.manifest.sha256
    assert health["fps"] > 0 and 0 < health["uptime_s"] < 120  # since this test's start, not since 1970

    rows = wait_for(lambda: (r := db_rows(cfg, "SELECT t, level, grp, emotion FROM state_changes ORDER BY id"))
                    and len(r) >= 2 and r, timeout=30, what="a state change logged after the start's")
    for row in rows:
        assert row["grp"] == group_of(row["level"])
        assert abs(row["t"] - time.time()) < 120
    assert rows[0]["level"] == ABSENT and rows[0]["emotion"] is None  # the start
    assert rows[1]["grp"] in EMOTION_GROUPS and rows[1]["emotion"] in KNOWN_LABELS

    state = admin_session.get(f"{appliance.url}/api/state", timeout=10).json()
    assert state["camera"] == "ok" and state["level"]
    frames = requests.get(f"{appliance.url}/healthz", timeout=10).json()["frames"]
    assert len(db_rows(cfg, "SELECT id FROM state_changes")) < max(3, frames // 5)  # never a row per frame


def test_a_non_realtime_demo_source_can_be_passed_in(make_appliance, cfg):
    """make_appliance(source=...) takes any FrameSource: here the demo starting at the
    empty stretch, read as fast as the loop goes - the state stays "Absent"."""
    from edge_app.vision.sources import DemoSource

    appliance = make_appliance(source=DemoSource(realtime=False, start_s=44.0, fps=1000))
    health = wait_for(lambda: (h := requests.get(f"{appliance.url}/healthz", timeout=10).json())["frames"] >= 10 and h,
                      timeout=30)
    assert health["camera"] == "ok"
    assert appliance.loop.state.level == ABSENT
    assert appliance.loop.flush(10)
    assert [r[0] for r in db_rows(cfg, "SELECT level FROM state_changes")] == [ABSENT]  # the start's, no other


# ------------------------------------------------------------------ first start
def test_first_start_without_a_password_generates_one(tmp_path, monkeypatch):
    monkeypatch.delenv("ENGAGE_ADMIN_PASSWORD", raising=False)
    store = Store(tmp_path / "a")
    try:
        accounts = Accounts(store)
        password = accounts.ensure_admin()
        assert password and len(password) >= 12
        admin = accounts.authenticate("admin", password)
        assert admin and admin.is_admin
        for guess in ("admin", "password", "engage-edge", ""):
            assert accounts.authenticate("admin", guess) is None
        assert accounts.ensure_admin() is None  # only on an empty database, only once
        assert [u.username for u in accounts.list_users()] == ["admin"]
        stored = store.query("SELECT password_hash FROM users")[0][0]
        assert password not in stored and stored.startswith("scrypt$")
    finally:
        store.close()
    other = Store(tmp_path / "b")
    try:
        assert Accounts(other).ensure_admin() != password  # random, not a default
    finally:
        other.close()


def test_first_start_with_the_environment_password(tmp_path, monkeypatch):
    monkeypatch.setenv("ENGAGE_ADMIN_PASSWORD", "chosen-by-tech-1")
    store = Store(tmp_path / "a")
    try:
        accounts = Accounts(store)
        assert accounts.ensure_admin() is None  # nothing to show: the technician chose it
        assert accounts.authenticate("admin", "chosen-by-tech-1")
    finally:
        store.close()


def test_appliance_first_start_prints_a_login_that_works(make_appliance, monkeypatch):
    monkeypatch.delenv("ENGAGE_ADMIN_PASSWORD")
    appliance = make_appliance(with_loop=False)
    assert appliance.generated_password
    session = login(appliance.url, "admin", appliance.generated_password)
    assert session.csrf
    with pytest.raises(requests.HTTPError):
        login(appliance.url, "admin", ADMIN_PASSWORD)


def test_first_start_password_waits_in_a_root_only_file_until_the_first_login(make_appliance, cfg, monkeypatch):
    """Nobody saw the output (a service's journal, a closed terminal): the password is in
    the data directory, readable by its owner only, and gone once admin has logged in."""
    monkeypatch.delenv("ENGAGE_ADMIN_PASSWORD")
    appliance = make_appliance(with_loop=False)
    kept = Path(cfg.store.data_dir) / "first-admin-password.txt"
    assert kept.stat().st_mode & 0o777 == 0o600
    password = kept.read_text().splitlines()[0]
    assert password == appliance.generated_password
    failed = requests.post(f"{appliance.url}/login", data={"username": "admin", "password": "not-it-at-all"},
                           allow_redirects=False, timeout=10)
    assert failed.status_code == 401 and kept.exists()  # a wrong guess does not remove it
    r = requests.post(f"{appliance.url}/login", data={"username": "admin", "password": password},
                      allow_redirects=False, timeout=10)
    assert r.status_code == 303
    assert not kept.exists()



def test_the_first_start_password_must_be_replaced_before_anything_else(make_appliance, monkeypatch):
    """It was printed to the console and the service's journal: the first log-in leads to
    /account, every other page and API waits until admin has chosen a password."""
    monkeypatch.delenv("ENGAGE_ADMIN_PASSWORD")
    appliance = make_appliance(with_loop=False)
    url, generated = appliance.url, appliance.generated_password
    api = requests.post(f"{url}/api/login", json={"username": "admin", "password": generated}, timeout=10)
    assert api.status_code == 200 and api.json()["must_change_password"] is True

    browser = requests.Session()
    r = browser.post(f"{url}/login", data={"username": "admin", "password": generated, "next": "/admin/users"},
                     timeout=10)
    assert r.url == f"{url}/account?next=/admin/users" and 'id="account-first"' in r.text
    for path in ("/admin", "/admin/settings", "/upload", "/live"):
        r = browser.get(f"{url}{path}", allow_redirects=False, timeout=10)
        assert r.status_code == 303 and r.headers["Location"].endswith(f"/account?next={path}"), path
    r = browser.get(f"{url}/api/admin/today", timeout=10)
    assert r.status_code == 403 and "/account" in r.json()["error"]

    hostile = browser.get(f"{url}/account?next=//evil.example/x", timeout=10).text
    assert 'name="next" value="/"' in hostile  # never on to another site
    form = browser.get(f"{url}/account?next=/admin/users", timeout=10).text
    csrf = re.search(r'name="csrf" value="([^"]+)"', form).group(1)
    nxt = re.search(r'name="next" value="([^"]+)"', form).group(1)
    r = browser.post(f"{url}/account", data={"csrf": csrf, "current": generated, "new": "my-own-pass-phrase-4",
                                             "again": "my-own-pass-phrase-4", "next": nxt}, timeout=10)
    assert r.status_code == 200 and 'id="account-done"' in r.text and 'id="account-first"' not in r.text
    assert '<a href="/admin/users" id="account-continue">' in r.text  # on to the page first asked for
    assert browser.get(f"{url}/admin", allow_redirects=False, timeout=10).status_code == 200
    assert browser.get(f"{url}/api/admin/today", timeout=10).status_code == 200
    assert login(url, "admin", "my-own-pass-phrase-4").csrf


def test_a_password_the_technician_chose_is_not_asked_again(appliance):
    r = requests.post(f"{appliance.url}/api/login", json={"username": "admin", "password": ADMIN_PASSWORD},
                      timeout=10)
    assert r.status_code == 200 and r.json()["must_change_password"] is False
    assert login(appliance.url).get(f"{appliance.url}/api/admin/today", timeout=10).status_code == 200

# ------------------------------------------------------------------ one demo minute
def test_one_demo_minute_walks_through_every_state(cfg, tmp_path):
    """The real capture loop (the configured detector, as `make run` has it, the shipped
    model, tracker, store) over a full demo cycle on a scene-time clock: every state the
    README promises of the demo shows ("Engaged", "Partially engaged", "Not engaged",
    "Distracted", "Absent"), each change is one row, and minute aggregates are one row
    per minute."""
    from edge_app.device.indicators import make_indicator
    from edge_app.runtime.appliance import classifier_from_config, demo_picks
    from edge_app.runtime.capture import CaptureLoop
    from edge_app.vision.detector import detector_from_config
    from edge_app.vision.sources import DemoSource

    fps, base = 5, 1_700_000_000.0
    classifier = classifier_from_config(cfg)
    picks = demo_picks(classifier, cfg.engagement.mapping)
    source = DemoSource(realtime=False, fps=fps, face_picks=picks)
    store = Store(tmp_path / "loop")
    scene = {"t": 0.0}
    loop = CaptureLoop(cfg, source, detector_from_config(cfg), classifier, store, make_indicator(cfg),
                       clock=lambda: scene["t"], wall=lambda: base + scene["t"])
    changes, began = [], []
    frames = 62 * fps
    try:
        for _ in range(frames):
            scene["t"] = source.scene_time()
            state, changed = loop.process(source.read(), now=scene["t"])
            if changed:
                changes.append((round(scene["t"], 1), state.group))
                began.append(state.since)  # when the level began: min_hold_s before it showed
        assert loop.flush(10)
        rows = store.query("SELECT t, level, grp FROM state_changes ORDER BY t")
        minutes = store.query("SELECT * FROM minute_stats ORDER BY minute")
    finally:
        loop.stop()
        store.close()

    groups = [g for _, g in changes]
    assert [r["grp"] for r in rows] == groups  # every change logged, nothing else
    assert [r["t"] - base for r in rows] == pytest.approx(began, abs=0.01)  # logged as of when each began
    assert all(t - b == pytest.approx(cfg.engagement.min_hold_s, abs=0.3) for (t, _), b in zip(changes, began))
    assert groups[0] in EMOTION_GROUPS  # Grace Hopper opens the demo
    assert DISTRACTED in groups and ABSENT in groups, changes
    # what the README promises of the demo: every state (but "Paused", which needs a person)
    assert set(groups) == {"Engaged", "Partially engaged", "Not engaged", DISTRACTED, ABSENT}, changes
    shots = {shot.picture: shot for shot in source.scene.shots}
    fright = shots[f"face:{picks[0]}"]  # the face the model finds most fearful: Duchenne's old man
    partly_at = next(t for t, g in changes if g == "Partially engaged")
    assert fright.start < partly_at < fright.end, changes
    distracted_at = next(t for t, g in changes if g == DISTRACTED)
    absent_at = next(t for t, g in changes if g == ABSENT)
    assert shots["profile"].start < distracted_at < shots["profile"].end  # the turned-away shot
    assert shots["empty"].start < absent_at < shots["empty"].end  # the empty stretch
    assert groups[-1] in EMOTION_GROUPS  # Grace comes back for the last seconds
    assert len(rows) <= 12  # state changes, not frames
    assert 1 <= len(minutes) <= 2 and sum(m["frames"] for m in minutes) == frames
    assert sum(m["distracted_s"] for m in minutes) > 2 and sum(m["absent_s"] for m in minutes) > 3
