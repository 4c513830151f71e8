"""The security review's web findings (issue 14 items 1, 3, 7, 8, 10, 12), each over
real HTTP on loopback unless a client address other than loopback is needed."""
from __future__ import annotations

import html
import socket
import subprocess
import wsgiref.util

import pytest
import requests

from edge_app import config as config_mod
from edge_app.web.upload import MIN_BODY_BYTES
from tests.conftest import ADMIN_PASSWORD, fill_up, login, mounted_tmpfs, wait_for

STUDENT_PW = "student-pw-123"


@pytest.fixture
def web(make_appliance):
    return make_appliance(with_loop=False)


def call_wsgi(app, path: str, **environ) -> str:
    """One request straight into the WSGI app, from a peer that is not loopback: the only
    way to be another machine without sending traffic off this one."""
    env: dict = {"PATH_INFO": path, "REMOTE_ADDR": "192.0.2.10", "HTTP_HOST": "127.0.0.1", **environ}
    wsgiref.util.setup_testing_defaults(env)
    status = []
    body = b"".join(app(env, lambda s, h, exc_info=None: status.append(s)))
    assert body is not None
    return status[0]


def test_a_forwarded_for_header_does_not_make_a_client_loopback(web):
    assert call_wsgi(web.app, "/metrics", HTTP_X_FORWARDED_FOR="127.0.0.1").startswith("403")
    assert call_wsgi(web.app, "/metrics").startswith("403")
    assert requests.get(f"{web.url}/metrics", timeout=10).status_code == 200  # a real loopback peer


@pytest.mark.parametrize("host, allowed", [("evil.example", False), ("evil.example:8080", False), ("", False),
                                           ("127.0.0.1", True), ("localhost", True), ("[::1]:8080", True),
                                           ("10.1.2.3:8080", True), (socket.gethostname(), True)])
def test_only_this_devices_names_are_answered(web, host, allowed):
    r = requests.get(f"{web.url}/login", headers={"Host": host}, timeout=10)
    assert (r.status_code == 200) == allowed, (host, r.status_code)
    if not allowed:
        assert r.status_code == 400 and "Host" in r.json()["error"]


def test_an_admin_listed_name_is_answered(make_appliance, cfg):
    web = make_appliance(config_mod.with_changes(cfg, {"web.allowed_hosts": "desk-07.school.lan, desk-07"}),
                         with_loop=False)
    assert requests.get(f"{web.url}/login", headers={"Host": "desk-07.school.lan:8443"}, timeout=10).status_code == 200
    assert requests.get(f"{web.url}/login", headers={"Host": "desk-08.school.lan"}, timeout=10).status_code == 400


def test_the_origin_check_compares_the_scheme_too(web):
    host = f"127.0.0.1:{web.server.port}"
    r = requests.post(f"{web.url}/api/login", json={"username": "admin", "password": ADMIN_PASSWORD},
                      headers={"Origin": f"https://{host}"}, timeout=10)
    assert r.status_code == 403
    r = requests.post(f"{web.url}/api/login", json={"username": "admin", "password": ADMIN_PASSWORD},
                      headers={"Origin": f"http://{host}"}, timeout=10)
    assert r.status_code == 200


def test_api_analyze_needs_the_csrf_token(web, face_jpeg):
    s = login(web.url)
    del s.headers["X-CSRF-Token"]
    r = s.post(f"{web.url}/api/analyze", files={"image": ("g.jpg", face_jpeg, "image/jpeg")}, timeout=60)
    assert r.status_code == 403 and "X-CSRF-Token" in r.json()["error"]
    r = s.post(f"{web.url}/api/analyze", files={"image": ("g.jpg", face_jpeg, "image/jpeg")},
               headers={"X-CSRF-Token": "forged"}, timeout=60)
    assert r.status_code == 403
    assert web.store.query("SELECT COUNT(*) FROM uploads")[0][0] == 0
    r = s.post(f"{web.url}/api/analyze", files={"image": ("g.jpg", face_jpeg, "image/jpeg")},
               headers={"X-CSRF-Token": s.csrf}, timeout=60)
    assert r.status_code == 200


@pytest.mark.parametrize("body", [b"[1, 2]", b"\"admin\"", b"{bad json", b"null", b"\xff\xfe", b"[" * 50000])
def test_malformed_json_to_api_login_is_a_400(web, body):
    r = requests.post(f"{web.url}/api/login", data=body, headers={"Content-Type": "application/json"}, timeout=10)
    assert r.status_code == 400 and "username" in r.json()["error"]


@pytest.mark.parametrize("username, password", [("\ud800", "x"), ("admin", "\ud800"), ("ad\nmin", ADMIN_PASSWORD)])
def test_a_name_or_password_no_account_can_have_is_a_401(web, username, password):
    """A lone surrogate (JSON "\\ud800") has no UTF-8: SQLite refused it with a 500."""
    r = requests.post(f"{web.url}/api/login", json={"username": username, "password": password}, timeout=10)
    assert r.status_code == 401 and r.json()["error"] == "wrong user name or password"


def test_an_unexpected_error_keeps_the_security_headers_and_shows_no_traceback(web, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("secret detail of a bug")

    monkeypatch.setattr(web.accounts, "login", broken)  # a bug anywhere behind a route
    r = requests.post(f"{web.url}/api/login", json={"username": "admin", "password": "x"}, timeout=10)
    assert r.status_code == 500 and "journalctl -u engage-edge" in r.json()["error"]
    assert "secret detail" not in r.text and "Traceback" not in r.text
    assert r.headers["Cache-Control"] == "no-store" and "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
    assert r.headers["X-Frame-Options"] == "DENY"
    assert "RuntimeError: secret detail of a bug" in caplog.text  # the traceback is in the service's log


@pytest.mark.parametrize("page", ["1e30", "1" + "0" * 30, "-5", "abc"])
def test_absurd_log_pages_are_not_server_errors(web, page):
    s = login(web.url)
    r = s.get(f"{web.url}/admin/log", params={"page": page}, timeout=10)
    assert r.status_code == 200



HUGE = "9" * 30  # past SQLite's 64-bit integers


@pytest.mark.parametrize("method, path, admin", [
    ("GET", f"/uploads/{HUGE}", False), ("POST", f"/uploads/{HUGE}/delete", False),
    ("DELETE", f"/api/uploads/{HUGE}", False), ("GET", f"/admin/image/{HUGE}", True),
    ("GET", f"/admin/alert/{HUGE}.jpg", True), ("POST", f"/admin/users/{HUGE}/disable", True)])
def test_an_id_too_long_for_the_database_is_not_found_not_a_server_error(web, caplog, method, path, admin):
    """A student guessing ids past SQLite's range got a 500 and a traceback in the journal."""
    if not admin:
        web.accounts.create_user("kim", STUDENT_PW, "student")
    s = login(web.url, *(() if admin else ("kim", STUDENT_PW)))
    r = s.request(method, f"{web.url}{path}", data={"csrf": s.csrf}, allow_redirects=False, timeout=10)
    assert r.status_code == 404, r.text[:300]
    assert "OverflowError" not in caplog.text
    assert s.get(f"{web.url}/uploads/{'1' * 18}", timeout=10).status_code == 404, "18 digits is still an id"

def test_a_forms_address_opened_as_a_page_gets_the_apps_page_not_bottles(web):
    """/logout typed in the address bar (or a refused upload's page reloaded with Enter)
    showed bottle's bare "Error: 405 Method Not Allowed" page, no header, no way back."""
    s = login(web.url)
    r = s.get(f"{web.url}/logout", headers={"Accept": "text/html"}, timeout=10)
    assert r.status_code == 405 and "POST" in r.headers.get("Allow", "")
    assert "use the button on the page" in r.text and 'href="/"' in r.text and "Method Not Allowed" not in r.text
    api = s.get(f"{web.url}/api/pause", timeout=10)
    assert api.status_code == 405 and "use POST" in api.json()["error"]


def test_hsts_is_sent_under_tls_only(make_appliance, cfg, tmp_path, web):
    assert "Strict-Transport-Security" not in requests.get(f"{web.url}/login", timeout=10).headers
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    tls = make_appliance(config_mod.with_changes(cfg, {"web.tls_cert": str(cert), "web.tls_key": str(key),
                                                       "store.data_dir": str(tmp_path / "tls-data")}),
                         with_loop=False)  # its own data: a second appliance on a running one's is refused
    r = requests.get(f"{tls.url}/login", verify=False, timeout=10)
    assert "max-age=" in r.headers["Strict-Transport-Security"]


def test_disabling_a_user_ends_their_open_stream(appliance):
    sam = appliance.accounts.create_user("sam", STUDENT_PW, "admin")  # an account that may watch (privacy.live_video)
    s = login(appliance.url, "sam", STUDENT_PW)
    r = s.get(f"{appliance.url}/live.mjpg", stream=True, timeout=30)
    assert r.status_code == 200
    chunks = r.iter_content(4096)
    assert next(chunks)
    admin = login(appliance.url)
    assert admin.post(f"{appliance.url}/admin/users/{sam.id}/disable", data={"csrf": admin.csrf}, timeout=10).ok
    ended = []

    def drained():
        for _ in chunks:  # the server closes the stream: iteration ends
            pass
        ended.append(True)
        return True

    assert drained()  # would run for ever (the 30 s read timeout raising) if the stream kept going
    assert ended and wait_for(lambda: appliance.app.config["viewers"].count == 0, timeout=10)


def test_the_live_picture_is_for_admins_unless_set_otherwise(appliance):
    """Any student's account could watch the desk's camera, whoever sat there: on a shared
    desk, one minor watching another. Admins only by default; "everyone" as a setting, and a
    student's open stream ends once an admin sets it back."""
    from edge_app.web.admin_settings import apply_settings

    appliance.accounts.create_user("kim", STUDENT_PW, "student")
    kim = login(appliance.url, "kim", STUDENT_PW)
    refused = kim.get(f"{appliance.url}/live.mjpg", stream=True, timeout=30)
    assert refused.status_code == 403 and "admins only" in refused.json()["error"]
    assert refused.headers["Cache-Control"] == "no-store"  # as every other answer of the device
    # the address opened in a tab (a bookmark, a link passed on) showed that JSON as text: a page says it
    tab = kim.get(f"{appliance.url}/live.mjpg", headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}, timeout=30)
    assert tab.status_code == 403 and tab.headers["Content-Type"].startswith("text/html")
    assert "shown to admins only on this device" in tab.text and "Log out" in tab.text  # the device's own page
    opened = requests.get(f"{appliance.url}/live.mjpg", headers={"Accept": "text/html"}, allow_redirects=False, timeout=10)
    assert opened.status_code == 303 and "/login?next=/live.mjpg" in opened.headers["Location"]  # logged out: the way in
    assert 'id="no-stream"' in kim.get(f"{appliance.url}/live", timeout=10).text
    apply_settings(appliance.ctx, {"privacy.live_video": "everyone"})
    r = kim.get(f"{appliance.url}/live.mjpg", stream=True, timeout=30)
    assert r.status_code == 200
    chunks = r.iter_content(4096)
    assert next(chunks)
    apply_settings(appliance.ctx, {"privacy.live_video": "admins"})
    for _ in chunks:  # the server ends the stream at its next check: iteration ends
        pass
    assert wait_for(lambda: appliance.app.config["viewers"].count == 0, timeout=10)


def test_one_student_cannot_take_every_live_view_place(make_appliance, cfg):
    """A hostile-client review: with the picture shown to everyone, one student opening four
    streams took all of web.max_viewers and the admin got 503. A student holds one stream;
    students together leave the last place for an admin."""
    from edge_app.web.admin_settings import apply_settings

    appliance = make_appliance(config_mod.with_changes(cfg, {"web.max_viewers": 3}))
    apply_settings(appliance.ctx, {"privacy.live_video": "everyone"})
    for name in ("kim", "lou", "max"):
        appliance.accounts.create_user(name, STUDENT_PW, "student")
    kim, lou, max_ = (login(appliance.url, n, STUDENT_PW) for n in ("kim", "lou", "max"))
    admin = login(appliance.url)
    open_streams = []
    try:
        first = kim.get(f"{appliance.url}/live.mjpg", stream=True, timeout=30)
        open_streams.append(first)
        assert first.status_code == 200
        second = kim.get(f"{appliance.url}/live.mjpg", stream=True, timeout=30)
        assert second.status_code == 503 and "watching the live view already" in second.json()["error"]
        open_streams.append(lou.get(f"{appliance.url}/live.mjpg", stream=True, timeout=30))
        assert open_streams[-1].status_code == 200
        third = max_.get(f"{appliance.url}/live.mjpg", stream=True, timeout=30)
        assert third.status_code == 503 and "kept for an admin" in third.json()["error"]
        open_streams.append(admin.get(f"{appliance.url}/live.mjpg", stream=True, timeout=30))
        assert open_streams[-1].status_code == 200  # the place kept for them
    finally:
        for r in open_streams:
            r.close()
    assert wait_for(lambda: appliance.app.config["viewers"].count == 0, timeout=15)


@pytest.fixture
def tiny_disk(tmp_path):
    """A 12 MB tmpfs for the data directory."""
    with mounted_tmpfs(tmp_path / "disk", "12m") as mnt:
        yield mnt


def test_uploads_below_the_free_space_floor_are_refused_with_507_and_nothing_kept(make_appliance, cfg, tiny_disk,
                                                                                   face_jpeg):
    low = config_mod.with_changes(cfg, {"store.data_dir": str(tiny_disk / "data"), "store.min_free_mb": 50,
                                        "privacy.keep_uploads": "full"})
    web = make_appliance(low, with_loop=False)
    s = login(web.url)  # log-in keeps working on a nearly full disk
    before = sorted(p.name for p in (tiny_disk / "data").rglob("*"))
    r = s.post(f"{web.url}/api/analyze", files={"image": ("g.jpg", face_jpeg, "image/jpeg")}, timeout=60)
    assert r.status_code == 507 and "disk is nearly full" in r.json()["error"]
    assert web.store.query("SELECT COUNT(*) FROM uploads")[0][0] == 0
    assert sorted(p.name for p in (tiny_disk / "data").rglob("*")) == before
    assert login(web.url).csrf  # and after


def test_a_full_disk_is_explained_to_each_user_as_they_can_act_on_it(make_appliance, cfg, tiny_disk, face_jpeg):
    """A student cannot free space or change store.min_free_mb: they are told whom to tell;
    an admin is told the setting and what frees space. Neither is shown which files are
    accepted, which has nothing to do with a full disk."""
    low = config_mod.with_changes(cfg, {"store.data_dir": str(tiny_disk / "data"), "store.min_free_mb": 50})
    web = make_appliance(low, with_loop=False)
    web.accounts.create_user("kim", STUDENT_PW, "student")
    student, admin = login(web.url, "kim", STUDENT_PW), login(web.url)
    r = student.post(f"{web.url}/api/analyze", files={"image": ("g.jpg", face_jpeg, "image/jpeg")}, timeout=60)
    said = r.json()["error"]
    assert r.status_code == 507 and "disk is nearly full" in said and "Tell your teacher" in said
    assert "min_free_mb" not in said and "Users page" not in said and "Accepted" not in said
    r = student.post(f"{web.url}/upload", data={"csrf": student.csrf}, timeout=60,
                     files={"image": ("g.jpg", face_jpeg, "image/jpeg")})
    assert r.status_code == 507 and "Tell your teacher" in html.unescape(r.text)
    error = r.text.split('id="upload-error">', 1)[1].split("</p>", 1)[0]
    assert "Accepted" not in error  # the form's error too: which files are accepted is beside the point
    r = admin.post(f"{web.url}/api/analyze", files={"image": ("g.jpg", face_jpeg, "image/jpeg")}, timeout=60)
    assert r.status_code == 507 and "store.min_free_mb" in r.json()["error"] and "Users page" in r.json()["error"]
    assert web.store.query("SELECT COUNT(*) FROM uploads")[0][0] == 0


def test_a_disk_that_fills_during_an_upload_leaves_no_orphan(make_appliance, cfg, tiny_disk, face_jpeg):
    full = config_mod.with_changes(cfg, {"store.data_dir": str(tiny_disk / "data"), "store.min_free_mb": 0,
                                         "privacy.keep_uploads": "full"})
    web = make_appliance(full, with_loop=False)
    s = login(web.url)
    ballast = tiny_disk / "ballast"
    fill_up(ballast)
    statuses = []
    for _ in range(3):
        r = s.post(f"{web.url}/api/analyze", files={"image": ("g.jpg", face_jpeg, "image/jpeg")}, timeout=60)
        statuses.append(r.status_code)
        assert r.status_code in (200, 507), r.text[:300]
    rows = {r["id"]: r["image_path"] for r in web.store.query("SELECT id, image_path FROM uploads")}
    images = {p.relative_to(tiny_disk / "data" / "images").as_posix()
              for p in (tiny_disk / "data" / "images").rglob("*") if p.is_file()}
    assert not [p for p in images if p.endswith(".tmp")], images
    assert images <= {path for path in rows.values() if path}, f"images no row points to: {images} vs {rows}"
    ballast.unlink()
    r = s.post(f"{web.url}/api/analyze", files={"image": ("g.jpg", face_jpeg, "image/jpeg")}, timeout=60)
    assert r.status_code == 200, statuses


def test_a_slow_upload_body_does_not_hold_the_analysis_slot(web, face_jpeg):
    """The slot was taken before the body was read: one slow sender blocked every upload."""
    s = login(web.url)
    boundary = "b0undary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"g.jpg\"\r\n"
            f"Content-Type: image/jpeg\r\n\r\n").encode() + face_jpeg + f"\r\n--{boundary}--\r\n".encode()
    pool = web.server.httpd.requests
    slow = socket.create_connection(("127.0.0.1", web.server.port), timeout=30)
    port = slow.getsockname()[1]
    cookie = "; ".join(f"{k}={v}" for k, v in s.cookies.items())
    slow.sendall((f"POST /api/analyze HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}\r\nX-CSRF-Token: {s.csrf}\r\n"
                  f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {len(body)}\r\n\r\n").encode()
                 + body[:100])
    try:
        # a worker is inside the slow request (by its client port: an idle count taken
        # earlier races with the log-in's worker going back to the pool)
        wait_for(lambda: any(getattr(w.conn, "remote_port", None) == port for w in list(pool._threads)), timeout=10)
        r = s.post(f"{web.url}/api/analyze", files={"image": ("g.jpg", face_jpeg, "image/jpeg")}, timeout=8)
        assert r.status_code == 200  # analysed while the slow body is still arriving
    finally:
        slow.close()


def test_uploads_held_at_once_are_bounded_by_size_and_per_user(web, face_jpeg):
    """Each upload body stays in memory about three times until its analysis is done: one
    student's 24 parallel uploads of 10 MB took the service to 900 MB, past its MemoryMax.
    Now one user holds at most two of the largest bodies at once, everyone at most three;
    past that an upload is answered 503 with Retry-After, its body never kept."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    ann = web.accounts.create_user("ann", STUDENT_PW)
    ben = web.accounts.create_user("ben", STUDENT_PW)
    budget = web.app.config["engage.upload_budget"]
    big = face_jpeg + b"\0" * (9 * 1024 * 1024)  # a valid photo, 9 MB with what follows its end
    analysing = threading.Event()
    release = threading.Event()
    real = web.analyzer.analyze

    def slow_analysis(bgr):  # the analysis of the first photo takes its time
        analysing.set()
        release.wait(60)
        return real(bgr)

    web.analyzer.analyze = slow_analysis
    students = {name: login(web.url, name, STUDENT_PW) for name in ("ann", "ben")}

    def send(name: str, data: bytes) -> requests.Response:
        return students[name].post(f"{web.url}/api/analyze", files={"image": ("p.jpg", data, "image/jpeg")},
                                   timeout=120)

    with ThreadPoolExecutor(4) as pool:
        first = [pool.submit(send, "ann", big) for _ in range(2)]
        wait_for(lambda: analysing.is_set() and budget.in_hand(ann.id) >= 2 * len(big), what="ann's two photos held")
        r = send("ann", big)  # a third of hers: refused unread, at once
        assert r.status_code == 503 and r.headers["Retry-After"] == "5" and "try again" in r.json()["error"]
        r = students["ann"].post(f"{web.url}/upload", files={"image": ("p.jpg", big, "image/jpeg")},
                                 data={"csrf": students["ann"].csrf}, timeout=30)
        assert r.status_code == 503 and "try again in 5 seconds" in html.unescape(r.text)
        other = pool.submit(send, "ben", face_jpeg)  # someone else's photo still gets in
        wait_for(lambda: budget.in_hand(ben.id) > 0, what="ben's photo held")
        release.set()
        assert [f.result().status_code for f in (*first, other)] == [200, 200, 200]
    assert budget.in_hand() == 0
    assert send("ann", big).status_code == 200  # her turn again once her photos are done


def test_the_upload_budget_counts_bytes_in_all_and_per_user():
    from edge_app.web.upload import UploadBudget, UploadBusy

    budget = UploadBudget(total_bytes=30 * MIN_BODY_BYTES, per_user_bytes=20 * MIN_BODY_BYTES)
    size = 10 * MIN_BODY_BYTES
    with budget.hold(1) as a, budget.hold(1) as b:
        assert a and b and budget.in_hand(1) == 2 * MIN_BODY_BYTES  # each holds only a small start
        a(size // 2)
        a(size // 2)  # (the start counts towards what arrives)
        assert budget.in_hand(1) == size + MIN_BODY_BYTES
        with budget.hold(1) as c:
            b(size // 2)
            with pytest.raises(UploadBusy):
                c(size)  # her share is two bodies: a third is refused as its bytes come ...
        b(size // 2)
        with budget.hold(1) as d:
            assert d is None  # ... or at once, with no room left for its start
        with budget.hold(2) as e, budget.hold(3) as f:
            e(size // 2)  # someone else's photo gets in ...
            with pytest.raises(UploadBusy):
                f(size)  # ... up to the whole budget (three bodies)
    assert budget.in_hand() == 0 and budget.in_hand(1) == 0 and budget.in_hand(3) == 0
    big = 10 << 20  # declared: a user's large uploads take turns, two at once, whatever they have sent
    with budget.hold(7, big) as g, budget.hold(7, big) as h:
        with budget.hold(7, big) as i, budget.hold(7, 500_000) as j, budget.hold(8, big) as k:
            assert g and h and i is None and j and k  # a small photo of hers, and another user's, get in
    with budget.hold(7, big) as g:
        assert g  # her turn again
    with budget.hold(4) as f, budget.hold(5) as g:
        f(20 * MIN_BODY_BYTES)
        g(10 * MIN_BODY_BYTES)
        with budget.hold(6) as h:
            assert h is None  # not even a small start left: answered unread


def test_slow_uploads_hold_what_they_sent_not_what_they_declared(web, face_jpeg):
    """Two students' scripts declared 10 MB each and sent 1.5 kB a second: counted by what
    they declared, they held the whole upload budget for hours and everyone's ordinary
    photos were refused as "busy"."""
    for name in ("ann", "ben"):
        web.accounts.create_user(name, STUDENT_PW)
    slow = []
    try:
        for name in ("ann", "ann", "ben"):
            s = login(web.url, name, STUDENT_PW)
            sock = socket.create_connection(("127.0.0.1", web.server.port), timeout=10)
            sock.sendall((f"POST /api/analyze HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: ee_session="
                          f"{s.cookies['ee_session']}\r\nX-CSRF-Token: {s.csrf}\r\nContent-Type: multipart/form-data;"
                          f" boundary=b0\r\nContent-Length: {10 << 20}\r\n\r\n--b0\r\n").encode())
            slow.append(sock)
        budget = web.app.config["engage.upload_budget"]
        wait_for(lambda: budget.in_hand() >= 3 * MIN_BODY_BYTES, what="the three slow uploads started")
        for sock in slow:
            sock.sendall(b"a" * 1500)
        photo = face_jpeg + b"\0" * (3 << 20)  # an ordinary 3 MB photo, from the admin
        r = login(web.url).post(f"{web.url}/api/analyze", files={"image": ("p.jpg", photo, "image/jpeg")}, timeout=60)
        assert r.status_code == 200, r.text[:200]
    finally:
        for sock in slow:
            sock.close()


BOGUS_CHARSET = "multipart/form-data; boundary=XX; charset=nonexistent"
FORM_BODY = b'--XX\r\nContent-Disposition: form-data; name="username"\r\n\r\nabc\r\n--XX--\r\n'


@pytest.mark.parametrize("content_type, body", [
    (BOGUS_CHARSET, FORM_BODY),  # a charset Python does not know, for the body ...
    ("multipart/form-data; boundary=XX", FORM_BODY.replace(b"\r\n\r\nabc", b"\r\nContent-Type: text/plain; "
                                                           b"charset=nonexistent\r\n\r\nabc")),  # ... or one part
    ("multipart/form-data", FORM_BODY),  # no boundary: bottle's bare HTML page before
])
def test_a_form_body_that_cannot_be_read_is_a_400_not_a_server_error(web, caplog, content_type, body):
    """A bogus charset was a 500 and a 3.5 kB traceback in the journal per request, logged
    in or not (200 requests: 700 kB), past the refused log-ins' line budgets."""
    s = login(web.url)
    for session, path in ((requests, "/login"), (requests, "/api/login"), (s, "/logout"), (s, "/admin/settings"),
                          (s, "/api/analyze"), (s, "/upload")):
        # s sends the right token: the answer must be about the form, never "wrong token, reload the page"
        r = session.post(f"{web.url}{path}", data=body, headers={"Content-Type": content_type}, timeout=10)
        assert r.status_code == 400, (path, r.status_code, r.text[:200])
        assert r.headers["Content-Type"].startswith("application/json") and "could not be read" in r.json()["error"]
        assert r.headers.get("X-Content-Type-Options") == "nosniff"
        if not path.startswith("/api/"):  # a browser's form (a photo cut short by a dropped Wi-Fi): a page, not JSON
            r = session.post(f"{web.url}{path}", data=body, timeout=10,
                             headers={"Content-Type": content_type, "Accept": "text/html,application/xhtml+xml"})
            assert r.status_code == 400 and r.headers["Content-Type"].startswith("text/html"), (path, r.text[:200])
            assert "The form could not be read" in r.text and "Go back and send it again" in r.text, r.text[:300]
            assert r.headers.get("X-Content-Type-Options") == "nosniff"
    assert not [rec for rec in caplog.records if rec.levelname == "ERROR"]


@pytest.mark.parametrize("filename", [b"a\x00b.jpg", "caf\u00e9.jpg".encode("latin-1"), b""])
def test_an_upload_whose_file_name_cannot_be_read_is_a_400_not_a_stale_form(web, face_jpeg, filename, caplog):
    """A NUL or a Latin-1 byte in a part's file name: bottle cannot read the form, and the
    upload said "missing or wrong X-CSRF-Token" (a page: "reload the page"), the token right."""
    s = login(web.url)
    body = (b'--XX\r\nContent-Disposition: form-data; name="image"; filename="' + filename +
            b'"\r\nContent-Type: image/jpeg\r\n\r\n' + face_jpeg + b"\r\n--XX--\r\n")
    for path in ("/api/analyze", "/upload"):
        r = s.post(f"{web.url}{path}", data=body, headers={"Content-Type": "multipart/form-data; boundary=XX"},
                   timeout=10)
        assert r.status_code == 400 and "could not be read" in r.json()["error"], (path, r.status_code, r.text[:200])
        if not filename:  # the photo sent with an empty file name is read as text: said, not blamed on its encoding
            assert "a file part with no file name is read as text" in r.json()["error"]
    assert web.store.query("SELECT COUNT(*) AS n FROM uploads")[0]["n"] == 0
    assert not [rec for rec in caplog.records if rec.levelname == "ERROR"]


def test_the_classroom_page_reads_no_unreadable_form_either(tmp_path, monkeypatch, caplog):
    from edge_app.fleet.classroom.service import ClassroomService
    from edge_app.fleet.settings import MqttSettings

    monkeypatch.setenv("ENGAGE_ADMIN_PASSWORD", ADMIN_PASSWORD)
    from edge_app.web.server import Server

    service = ClassroomService(MqttSettings(host="127.0.0.1", port=1), tmp_path / "classroom", port=0, reserve_mb=1)
    service.server = Server(service.app, "127.0.0.1", 0, 8).start()  # the page only: no broker needed
    try:
        for path in ("/login", "/api/login"):
            r = requests.post(f"{service.url}{path}", data=FORM_BODY, headers={"Content-Type": BOGUS_CHARSET},
                              timeout=10)
            assert r.status_code == 400 and "could not be read" in r.json()["error"], r.text[:200]
        r = requests.post(f"{service.url}/login", data=FORM_BODY, timeout=10,
                          headers={"Content-Type": BOGUS_CHARSET, "Accept": "text/html"})  # a browser: a page
        assert r.status_code == 400 and r.headers["Content-Type"].startswith("text/html"), r.text[:200]
        assert "The classroom server could not read what was sent" in r.text
    finally:
        service.server.stop()
        service.store.close()
    assert not [rec for rec in caplog.records if rec.levelname == "ERROR"]
