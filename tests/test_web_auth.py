"""Accounts, sessions, throttling, CSRF and the route-by-route access guard, over real HTTP."""
from __future__ import annotations

import concurrent.futures
import html
import http.client
import json
import logging
import re
import subprocess
import time

import pytest
import requests

from edge_app import config as config_mod
from edge_app.store.accounts import Accounts, AuthError, hash_password
from edge_app.store.login_throttle import ThrottlePolicy
from edge_app.web import hardening
from tests.conftest import ADMIN_PASSWORD, login, stays, wait_for

STUDENT_PW = "student-pw-123"
# routes anyone may reach without logging in
PUBLIC = {("GET", "/login"), ("POST", "/login"), ("POST", "/api/login"), ("GET", "/static/<name:path>"),
          ("GET", "/healthz"), ("GET", "/metrics"),
          ("GET", "/favicon.ico")}  # browsers fetch it on the log-in page; no one's data in it


@pytest.fixture
def appliance(web_appliance):
    """Accounts and access control need no capture loop."""
    return web_appliance


def form_login(base: str, username: str, password: str, **kw) -> requests.Response:
    return requests.post(f"{base}/login", data={"username": username, "password": password, "next": "/"},
                         allow_redirects=False, timeout=10, **kw)


def add_student(appliance, name: str = "sam", password: str = STUDENT_PW):
    return appliance.accounts.create_user(name, password, "student")


def refused_anonymously(r: requests.Response) -> bool:
    if r.status_code in (401, 403):
        return True
    return r.status_code in (302, 303) and "/login" in r.headers.get("Location", "")


def concrete(rule: str) -> str:
    """A route rule with its wildcards filled in (``<id:int>`` -> 1, ``<name>`` -> x)."""
    rule = re.sub(r"<[^>]*:int>", "1", rule)
    rule = re.sub(r"<[^>]*:path>", "x/y", rule)
    return re.sub(r"<[^>]*>", "x", rule)


# ------------------------------------------------------------ log in, cookies, log out
def test_form_login_sets_a_strict_httponly_cookie_and_logout_ends_the_session(appliance):
    r = form_login(appliance.url, "admin", ADMIN_PASSWORD)
    assert r.status_code == 303 and r.headers["Location"].endswith("/")
    cookie = r.headers["Set-Cookie"]
    assert "ee_session=" in cookie and "HttpOnly" in cookie and "samesite=strict" in cookie.lower()
    assert "Secure" not in cookie  # plain HTTP on loopback: a Secure cookie would never come back
    known = next(c for c in r.raw.headers.getlist("Set-Cookie") if c.startswith("ee_session_known="))
    assert "HttpOnly" in known and "samesite=strict" in known.lower() and "admin" not in known  # names no one
    assert "bottle" not in cookie.lower() and "!" not in cookie.split(";")[0]  # not bottle's pickled signed cookie
    # ends with the browser (a shared school computer: closing it left the log-in for 12 h); the
    # session's own limits are the server's
    session = next(c for c in r.raw.headers.getlist("Set-Cookie") if c.startswith("ee_session="))
    assert "max-age" not in session.lower() and "expires" not in session.lower(), session
    assert r.headers["Server"] == "engage-edge"  # not cheroot's exact build, as /healthz hides ours
    s = requests.Session()
    s.cookies.set("ee_session", r.cookies["ee_session"])
    page = s.get(f"{appliance.url}/admin", timeout=10)
    assert page.status_code == 200
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    out = s.post(f"{appliance.url}/logout", data={"csrf": csrf}, allow_redirects=False, timeout=10)
    assert out.status_code == 303
    said = requests.get(f"{appliance.url}{out.headers['Location'].split(appliance.url)[-1]}", timeout=10).text
    assert 'id="login-out"' in said and "You are logged out" in said  # on a shared desk, the reassurance
    again = requests.get(f"{appliance.url}/admin", cookies={"ee_session": r.cookies["ee_session"]},
                         allow_redirects=False, timeout=10)
    assert again.status_code == 303 and "/login" in again.headers["Location"]


def test_wrong_password_is_refused_with_a_message_and_not_logged(appliance, caplog):
    r = form_login(appliance.url, "admin", "wrong-password-xyz")
    assert r.status_code == 401
    assert "Wrong user name or password" in r.text
    assert "wrong-password-xyz" not in caplog.text
    stored = appliance.store.query("SELECT password_hash FROM users WHERE username = 'admin'")[0][0]
    assert stored.startswith("scrypt$") and ADMIN_PASSWORD not in stored


def test_a_space_around_the_user_name_still_logs_in_and_is_not_a_failure(appliance):
    """A phone's keyboard adds a space after a word and capitalises the first letter: " Admin "
    was refused as a wrong password and counted towards the lock. The name is taken without
    the spaces (case never mattered), and the field asks keyboards to leave it as typed."""
    assert form_login(appliance.url, " Admin ", ADMIN_PASSWORD).status_code == 303
    r = requests.post(f"{appliance.url}/api/login", json={"username": "admin\t", "password": ADMIN_PASSWORD}, timeout=10)
    assert r.status_code == 200 and r.json()["user"] == "admin"
    assert appliance.store.query("SELECT COUNT(*) FROM login_failures")[0][0] == 0
    field = re.search(r'<input id="username"[^>]*>', requests.get(f"{appliance.url}/login", timeout=10).text).group(0)
    assert all(a in field for a in ('autocapitalize="none"', 'autocorrect="off"', 'spellcheck="false"')), field


def test_login_redirect_never_leaves_the_site(appliance):
    r = requests.post(f"{appliance.url}/login", data={"username": "admin", "password": ADMIN_PASSWORD,
                                                      "next": "//evil.example/"}, allow_redirects=False, timeout=10)
    assert r.status_code == 303
    assert "evil" not in r.headers["Location"]


@pytest.mark.parametrize("target", ["/live", "/admin/log?frm=2026-01-01&to=2026-01-31"])
def test_login_returns_you_where_you_were_going(appliance, target):
    """A logged-out visit lands on the login page, whose form carries the page as a plain
    path (not HTML-quoted), and logging in there lands back on that page."""
    s = requests.Session()
    first = s.get(appliance.url + target, allow_redirects=False, timeout=10)
    assert first.status_code in (302, 303) and "/login?next=" in first.headers["Location"]
    login_page = s.get(first.headers["Location"], timeout=10)
    hidden = re.search(r'name="next" value="([^"]*)"', login_page.text).group(1)
    assert hidden.replace("&amp;", "&") == target
    done = s.post(f"{appliance.url}/login", data={"username": "admin", "password": ADMIN_PASSWORD,
                                                  "next": hidden.replace("&amp;", "&")},
                  allow_redirects=False, timeout=10)
    assert done.status_code == 303 and done.headers["Location"] == appliance.url + target
    assert s.get(done.headers["Location"], allow_redirects=False, timeout=10).status_code == 200


def test_a_student_logging_in_on_an_admin_pages_log_in_goes_to_their_own_start_page(appliance):
    """An admin's session ended on /admin/log on a classroom computer; the next student to log
    in there landed on "Not allowed" (403). A student asked for an admin page goes to their
    start page; an admin still lands where asked."""
    add_student(appliance)
    s = requests.Session()
    done = s.post(f"{appliance.url}/login", data={"username": "sam", "password": STUDENT_PW, "next": "/admin/log?x=1"},
                  allow_redirects=False, timeout=10)
    assert done.status_code == 303 and done.headers["Location"] == appliance.url + "/"
    assert s.get(done.headers["Location"], timeout=10).url == appliance.url + "/upload"
    assert form_login(appliance.url, "admin", ADMIN_PASSWORD).headers["Location"] == appliance.url + "/"
    r = requests.post(f"{appliance.url}/login", data={"username": "admin", "password": ADMIN_PASSWORD, "next": "/admin/log"},
                      allow_redirects=False, timeout=10)
    assert r.headers["Location"] == appliance.url + "/admin/log"


@pytest.mark.parametrize("referer, back", [("{url}/uploads?x=1", "/uploads?x=1"), ("{url}/live", "/live"),
                                           ("https://evil.example/live", "/"), (None, "/")])
def test_a_form_sent_after_the_session_ended_comes_back_to_its_page_not_to_a_405(appliance, referer, back):
    """"Pause camera" clicked on /live after logging out elsewhere: the log-in must lead back
    to /live, the page the form was on, not to /privacy (a GET there is the privacy page, not
    the pause the student pressed)."""
    headers = {"Referer": referer.format(url=appliance.url)} if referer else {}
    r = requests.post(f"{appliance.url}/privacy", data={"csrf": "stale"}, headers=headers, allow_redirects=False,
                      timeout=10)
    assert r.status_code in (302, 303)
    next_path = r.headers["Location"].split("/login?next=", 1)[1]
    assert requests.utils.unquote(next_path) == back


def test_log_out_with_a_session_that_already_ended_goes_to_the_log_in(appliance):
    """Logged out everywhere else, then "Log out" here: the log-in page, not "Form expired"."""
    here, there = login(appliance.url), login(appliance.url)
    assert there.post(f"{appliance.url}/account/sessions", data={"csrf": there.csrf}, timeout=10).ok
    r = here.post(f"{appliance.url}/logout", data={"csrf": here.csrf}, allow_redirects=False, timeout=10)
    assert r.status_code in (302, 303) and r.headers["Location"].endswith("/login?out=1")
    assert "Form expired" not in here.get(r.headers["Location"], timeout=10).text


def test_a_form_from_before_logging_in_again_says_what_happened_and_what_to_do(appliance):
    """Logging in again (in another tab) ends the earlier session; a form still open from it
    said "The form was stale: reload the page and try again", which told a student nothing."""
    s = login(appliance.url)
    old_csrf = s.csrf
    again = s.post(f"{appliance.url}/api/login", json={"username": "admin", "password": ADMIN_PASSWORD}, timeout=10)
    assert again.ok and again.json()["csrf"] != old_csrf
    del s.headers["X-CSRF-Token"]  # a browser's form: the token in the form only, the one its page was drawn with
    r = s.post(f"{appliance.url}/uploads/delete-all", data={"csrf": old_csrf}, timeout=10,
               headers={"Accept": "text/html"})
    assert r.status_code == 403 and "Form expired" in r.text, r.text[:300]
    assert "opened before your current log-in" in r.text and "send it again" in r.text and "stale" not in r.text


@pytest.mark.parametrize("bad", ["//evil.example/", "/\\evil.example/", "https://evil.example/", "evil.example",
                                 "/\r\nLocation: http://evil.example", "javascript:alert(1)", "/\tevil"])
def test_next_that_is_not_a_local_path_goes_home(appliance, bad):
    page = requests.get(f"{appliance.url}/login", params={"next": bad}, timeout=10)
    assert 'name="next" value="/"' in page.text
    r = requests.post(f"{appliance.url}/login", data={"username": "admin", "password": ADMIN_PASSWORD,
                                                      "next": bad}, allow_redirects=False, timeout=10)
    assert r.status_code == 303 and r.headers["Location"] == appliance.url + "/"


@pytest.mark.filterwarnings("ignore:Unverified HTTPS request")
def test_cookie_is_secure_under_tls(make_appliance, cfg, tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    tls = config_mod.with_changes(cfg, {"web.tls_cert": str(cert), "web.tls_key": str(key)})
    appliance = make_appliance(tls, with_loop=False)
    assert appliance.url.startswith("https://")
    r = requests.post(f"{appliance.url}/api/login", json={"username": "admin", "password": ADMIN_PASSWORD},
                      verify=False, timeout=10)
    assert r.status_code == 200
    cookies = {c.split("=", 1)[0]: c for c in r.raw.headers.getlist("Set-Cookie")}
    for name in ("ee_session", "ee_session_known"):  # the known-browser cookie keeps the same rules
        assert "Secure" in cookies[name] and "HttpOnly" in cookies[name] and "samesite=strict" in cookies[name].lower()


# ------------------------------------------------------------ expiry
def test_idle_session_expires(appliance):
    s = login(appliance.url)
    assert s.get(f"{appliance.url}/api/state", timeout=10).status_code == 200
    idle = appliance.accounts.idle_s
    appliance.store.execute("UPDATE sessions SET last_seen = last_seen - ?", (idle + 5,))
    r = s.get(f"{appliance.url}/api/state", timeout=10)
    assert r.status_code == 401
    assert appliance.store.query("SELECT COUNT(*) FROM sessions")[0][0] == 0  # the expired row is gone


def test_stay_logged_in_needs_the_csrf_token_and_restarts_the_idle_timer(appliance):
    """The idle warning's "Stay logged in" (POST /api/session) is the user's own doing: it
    keeps the session on, and only from this site's page that holds the session's token."""
    s = login(appliance.url)
    bare = requests.Session()
    bare.cookies.update(s.cookies)
    assert bare.post(f"{appliance.url}/api/session", timeout=10).status_code == 403  # no X-CSRF-Token
    appliance.store.execute("UPDATE sessions SET last_seen = last_seen - 10")
    r = s.post(f"{appliance.url}/api/session", timeout=10)
    assert r.status_code == 200 and r.json()["idle_s"] == appliance.accounts.idle_s
    assert r.json()["left_s"] == pytest.approx(appliance.accounts.idle_s, abs=2)  # a whole idle time again
    appliance.accounts.idle_s = 5  # the 10 s before would have ended it: the post started the timer again
    left = s.get(f"{appliance.url}/api/session", timeout=10)
    assert left.status_code == 200 and 0 < left.json()["left_s"] <= 5
    s.post(f"{appliance.url}/logout", data={"csrf": s.csrf}, timeout=10)
    assert s.post(f"{appliance.url}/api/session", timeout=10).status_code == 401


def test_a_pages_background_polls_do_not_keep_an_idle_session_alive(appliance):
    """Every open page polls /api/state each second (and the live page its timeline and
    stream, the dashboard its tiles), and each poll restarted the idle timer: a classroom
    computer left on a page stayed logged in for the whole 12 h. Polls only check the
    session; what the user does (a page, a form) keeps it alive."""
    appliance.accounts.idle_s = 1.5
    polled = login(appliance.url)
    polls = ("/api/state", "/api/timeline?minutes=1", "/api/privacy", "/api/admin/today", "/live.mjpg",
             "/api/session")  # the idle warning's "still on?" asks without keeping it on

    def ended() -> bool:
        answers = [polled.get(appliance.url + path, timeout=10).status_code for path in polls]
        assert set(answers) <= {200, 401, 503}, answers  # 503: no camera loop here to stream
        return answers[0] == 401
    wait_for(ended, timeout=10, every=0.2, what="the polled session to time out")
    used = login(appliance.url)
    assert stays(lambda: used.get(f"{appliance.url}/account", allow_redirects=False, timeout=10).status_code == 200,
                 seconds=2.5, every=0.25)  # twice the idle time, a page each quarter second
    # the desk view is a display left open by the instructor's desk (README): its poll keeps its log-in
    desk = login(appliance.url)
    assert stays(lambda: desk.get(f"{appliance.url}/api/state?view=desk", timeout=10).status_code == 200,
                 seconds=2.5, every=0.25)
    # ... and the page says so: a student who leaves it open on the desk leaves their log-in to the next
    note = " ".join(desk.get(f"{appliance.url}/glance", timeout=10).text.split())
    assert "While this page is open, you stay logged in on this browser: log out when you leave the desk." in note
    # not a student's: left open anywhere in the room, it read whoever sat at the desk all day (another minor)
    appliance.accounts.create_user("sam", "sam-password-1", "student")
    student = login(appliance.url, "sam", "sam-password-1")
    wait_for(lambda: student.get(f"{appliance.url}/api/state?view=desk", timeout=10).status_code == 401,
             timeout=10, every=0.2, what="the student's desk view to time out as any page")
    student = login(appliance.url, "sam", "sam-password-1")
    note = " ".join(student.get(f"{appliance.url}/glance", timeout=10).text.split())
    assert "you stay logged in" not in note and "Your log-in ends as on any other page" in note
    assert 'id="idle-warning"' in note  # warned a minute before, as on any page
    assert "A computer's guess from a facial expression at one moment" in note  # the full-screen level, explained


def test_session_expires_after_its_absolute_lifetime_even_while_active(appliance):
    s = login(appliance.url)
    max_age = appliance.accounts.max_age_s
    # active a moment ago, but created longer ago than the absolute limit
    appliance.store.execute("UPDATE sessions SET created = created - ?", (max_age + 5,))
    r = s.get(f"{appliance.url}/upload", allow_redirects=False, timeout=10)
    assert r.status_code == 303 and "/login" in r.headers["Location"]


class SteppedWall:
    """The wall clock ``step_s`` off the real one, as after a time server stepped it."""

    def __init__(self, step_s: float = 0.0):
        self.step_s = step_s

    def __call__(self) -> float:
        return time.time() + self.step_s


DAYS_3 = 3 * 86400.0


def test_a_clock_step_neither_ends_sessions_nor_stretches_their_limits(appliance, monkeypatch):
    """A Pi that booted on a stale clock has it stepped by days when NTP comes (or when a
    technician fixes NTP): every session ended as idle ("Your session ended"), the purge
    deleted them too, and a clock stepped back stretched idle timeouts and an admin's password
    confirmation by the step. While the process runs they measure elapsed (monotonic) time."""
    wall = SteppedWall()
    monkeypatch.setattr(appliance.accounts, "wall", wall)
    admin = login(appliance.url)  # on the stale clock
    bad_name = {"csrf": admin.csrf, "username": "!", "password": "lee-password-1", "role": "student"}
    add = lambda s: s.post(f"{appliance.url}/admin/users", data=bad_name, allow_redirects=False,  # noqa: E731
                           timeout=10).status_code  # 400: past the confirmation (a bad name); 403: asked for it
    wall.step_s = DAYS_3  # NTP arrives
    appliance.accounts.purge_sessions()  # the housekeeping's round, on the new time
    assert admin.get(f"{appliance.url}/api/state", timeout=10).status_code == 200
    assert add(admin) == 400  # the log-in a moment ago still counts as confirmed

    appliance.accounts.idle_s, appliance.accounts.confirm_s = 1.5, 0.5
    wall.step_s = -DAYS_3  # and back (a technician's wrong fix undone)
    assert add(admin) == 400  # a page: the idle timer restarts
    wait_for(lambda: add(admin) == 403, timeout=5, every=0.1, what="the confirmation to lapse after 0.5 s")
    wait_for(lambda: admin.get(f"{appliance.url}/api/state", timeout=10).status_code == 401, timeout=5,
             every=0.1, what="the idle session to end after 1.5 s")  # polls do not restart it


def test_after_a_restart_stored_times_are_judged_by_the_wall_clock_and_never_stretched(appliance):
    """A new process has only the database's wall-clock times: a session idle too long by them
    ends, as before; one stamped in the future (the clock went back since) cannot say how long
    ago it was used, so it ends too rather than live on; its confirmation is asked again."""
    s, idle = login(appliance.url), appliance.accounts.idle_s
    token = s.cookies.get("ee_session")
    assert Accounts(appliance.store, idle_s=idle).session_user(token, refresh=False) is not None  # restarted at once
    assert not Accounts(appliance.store, idle_s=idle, wall=SteppedWall(-60)).recently_confirmed(token)
    assert Accounts(appliance.store, idle_s=idle, wall=SteppedWall(-60)).session_user(token) is None
    assert s.get(f"{appliance.url}/api/state", timeout=10).status_code == 401  # ended for this process too
    later = login(appliance.url)
    restarted = Accounts(appliance.store, idle_s=idle, wall=SteppedWall(idle + 5))  # as long idle, by the clock
    assert restarted.session_user(later.cookies.get("ee_session")) is None


# ------------------------------------------------------------ change password
def test_change_password(appliance):
    add_student(appliance)
    other_device = login(appliance.url, "sam", STUDENT_PW)
    s = login(appliance.url, "sam", STUDENT_PW)
    url = f"{appliance.url}/account"
    r = s.post(url, data={"csrf": s.csrf, "current": "not-it-at-all", "new": "brand-new-pw-1", "again": "brand-new-pw-1"})
    assert r.status_code == 400 and "current password is wrong" in r.text
    r = s.post(url, data={"csrf": s.csrf, "current": STUDENT_PW, "new": "brand-new-pw-1", "again": "different-pw-2"})
    assert r.status_code == 400 and "differ" in r.text
    r = s.post(url, data={"csrf": s.csrf, "current": STUDENT_PW, "new": "short", "again": "short"})
    assert r.status_code == 400 and "at least 8" in r.text
    r = s.post(url, data={"csrf": s.csrf, "current": STUDENT_PW, "new": "brand-new-pw-1", "again": "brand-new-pw-1"})
    assert r.status_code == 200 and "Password changed" in r.text
    assert s.get(f"{appliance.url}/api/state", timeout=10).status_code == 200  # this browser stays logged in
    assert other_device.get(f"{appliance.url}/api/state", timeout=10).status_code == 401  # others are logged out
    assert form_login(appliance.url, "sam", STUDENT_PW).status_code == 401
    assert form_login(appliance.url, "sam", "brand-new-pw-1").status_code == 303


def test_a_first_password_change_leads_on_and_a_reload_does_not_send_it_again(appliance):
    """After the forced first change the page said "Your other sessions were logged out" (there
    were none) and offered no way on; reloading it sent the form again with the token the
    change had replaced ("Form expired"). The change now redirects to the account page,
    which says what happened, leads on, and shows the same on a reload, to that session only."""
    appliance.accounts.create_user("kim", "from-the-admin-1", "student", must_change=True)
    s = requests.Session()
    form_page = s.post(f"{appliance.url}/login", data={"username": "kim", "password": "from-the-admin-1"}, timeout=10)
    csrf = re.search(r'name="csrf" value="([^"]+)"', form_page.text).group(1)
    r = s.post(f"{appliance.url}/account", data={"csrf": csrf, "current": "from-the-admin-1", "new": "kims-own-words-2",
                                                  "again": "kims-own-words-2"}, timeout=10)
    assert [h.status_code for h in r.history] == [303] and r.request.method == "GET"  # post/redirect/get
    done = re.search(r'<p class="ok" role="status" id="account-done">(.*?)</p>', r.text, re.S).group(1)
    assert "from now on you log in with the one you chose" in done and "other" not in done
    assert '<a href="/" id="account-continue">Continue</a>' in done
    assert s.get(r.url, timeout=10).text.count('id="account-done"') == 1  # a reload: the same, nothing sent
    assert s.get(f"{appliance.url}/", timeout=10).url == f"{appliance.url}/upload"  # Continue leads on
    stranger = login(appliance.url)
    assert 'id="account-done"' not in stranger.get(r.url, timeout=10).text  # a link from elsewhere says nothing

    elsewhere = login(appliance.url, "kim", "kims-own-words-2")
    csrf = re.search(r'name="csrf" value="([^"]+)"', s.get(f"{appliance.url}/account", timeout=10).text).group(1)
    r = s.post(f"{appliance.url}/account", data={"csrf": csrf, "current": "kims-own-words-2", "new": "kims-next-words-3",
                                                  "again": "kims-next-words-3"}, timeout=10)
    assert "1 other browser was logged out" in r.text
    assert elsewhere.get(f"{appliance.url}/api/state", timeout=10).status_code == 401


# ------------------------------------------------------------ throttling
def let_time_pass(appliance, seconds: float) -> None:
    """As if ``seconds`` went by since the recorded failed log-ins (no sleeping)."""
    appliance.store.execute("UPDATE login_failures SET t = t - ?", (seconds,))


def test_a_stolen_session_cannot_guess_the_password_faster_than_the_login_page(appliance):
    """The account page checks the current password like a log-in: counted and throttled."""
    appliance.accounts.throttle = ThrottlePolicy(slow_after=100, lock_after_user=3, lock_after_address=100, lock_s=300)
    add_student(appliance)
    s = login(appliance.url, "sam", STUDENT_PW)
    url = f"{appliance.url}/account"
    for guess in ("guess-number-1", "guess-number-2", "guess-number-3"):
        r = s.post(url, data={"csrf": s.csrf, "current": guess, "new": "brand-new-pw-1", "again": "brand-new-pw-1"})
        assert r.status_code == 400 and "current password is wrong" in r.text
    r = s.post(url, data={"csrf": s.csrf, "current": STUDENT_PW, "new": "brand-new-pw-1", "again": "brand-new-pw-1"})
    assert r.status_code == 429 and "locked" in r.text  # even the right one waits: the name is locked
    assert form_login(appliance.url, "sam", STUDENT_PW).status_code == 429  # the log-in page counts the same guesses

def test_failed_logins_for_a_user_slow_down_then_lock(appliance):
    appliance.accounts.throttle = ThrottlePolicy(slow_after=2, base_delay_s=1.5, max_delay_s=10, lock_after_user=4,
                                                 lock_after_address=100, lock_s=300)
    add_student(appliance)
    base = appliance.url
    assert form_login(base, "sam", "bad-guess-1").status_code == 401
    assert form_login(base, "sam", "bad-guess-2").status_code == 401
    # slowed down: even the right password is not checked while waiting
    r = form_login(base, "sam", STUDENT_PW)
    assert r.status_code == 429 and "wait" in r.text and "Retry-After" in r.headers
    assert int(r.headers["Retry-After"]) in (1, 2)
    assert form_login(base, "sam", "bad-guess-3").status_code == 429  # still waiting: not counted
    let_time_pass(appliance, 1.6)
    assert form_login(base, "sam", "bad-guess-3").status_code == 401
    r = form_login(base, "sam", "bad-guess-4")  # the delay doubled to 3 s
    assert r.status_code == 429
    let_time_pass(appliance, 2.5)
    assert form_login(base, "sam", "bad-guess-4").status_code == 429  # 2.5 s of 3: still waiting
    let_time_pass(appliance, 0.6)
    assert form_login(base, "sam", "bad-guess-4").status_code == 401  # the 4th failure locks the name
    r = form_login(base, "sam", STUDENT_PW)
    assert r.status_code == 429 and "locked for 5 minutes" in r.text
    api = requests.post(f"{base}/api/login", json={"username": "sam", "password": STUDENT_PW}, timeout=10)
    assert api.status_code == 429 and "locked" in api.json()["error"]
    # another user from the same address is not locked out by sam's lock
    assert form_login(base, "admin", ADMIN_PASSWORD).status_code == 303
    # the failures are in SQLite: a restart does not forget them
    rows = appliance.store.query("SELECT COUNT(*) FROM login_failures WHERE key = 'user:sam'")[0][0]
    assert rows == 4


def test_the_config_files_login_section_sets_the_throttle(make_appliance, cfg):
    login_cfg = config_mod.with_changes(cfg, {"login.slow_after_user": 50, "login.slow_after_address": 50,
                                              "login.lock_after_user": 2, "login.lock_minutes": 3})
    appliance = make_appliance(login_cfg)
    assert appliance.accounts.throttle == ThrottlePolicy(slow_after=50, slow_after_address=50, lock_after_user=2,
                                                         lock_s=180.0)
    add_student(appliance)
    assert form_login(appliance.url, "sam", "bad-guess-1").status_code == 401
    assert form_login(appliance.url, "sam", "bad-guess-2").status_code == 401
    r = form_login(appliance.url, "sam", STUDENT_PW)
    assert r.status_code == 429 and "locked for 3 minutes" in r.text


def test_failed_logins_from_one_address_lock_that_address(appliance):
    appliance.accounts.throttle = ThrottlePolicy(slow_after=100, slow_after_address=100, lock_after_user=100,
                                                 lock_after_address=5, lock_s=120)
    for i in range(5):  # a password spray: a different name each time
        assert form_login(appliance.url, f"user{i}", "guess-guess").status_code == 401
    r = form_login(appliance.url, "admin", ADMIN_PASSWORD)
    assert r.status_code == 429 and "your address" in r.text and "locked" in r.text


def test_a_script_that_keeps_guessing_writes_a_bounded_number_of_journal_lines(appliance, caplog, monkeypatch):
    """Every refused log-in wrote a journal line, the throttled ones too: a script guessing
    on after the lock, refused hundreds of times a second without a password check, wrote
    as many lines to the SD card. Now at most ``per_client`` a minute from one address;
    the next line says how many were left out. The script's lines do not use up another
    address's: a genuine failed log-in elsewhere is still logged. The API's refusals are
    logged too (they were not at all), and a user name is cut to what a line needs."""
    now = [0.0]
    monkeypatch.setattr(hardening, "REFUSALS", hardening.RefusalLog(burst=100, per_client=4, window_s=60,
                                                                    clock=lambda: now[0]))
    appliance.accounts.throttle = ThrottlePolicy(slow_after=100, slow_after_address=100, lock_after_user=3,
                                                 lock_after_address=100, lock_s=300)
    caplog.set_level(logging.INFO, logger="edge_app.web")

    def lines():
        return [r.getMessage() for r in caplog.records if "log-in" in r.getMessage() or "failed login" in r.getMessage()]

    for i in range(3):
        assert form_login(appliance.url, "admin", f"guess-number-{i}").status_code == 401
    for _ in range(20):
        assert form_login(appliance.url, "admin", "guess-again").status_code == 429
    api = f"{appliance.url}/api/login"
    for _ in range(10):
        assert requests.post(api, json={"username": "admin", "password": "guess"}, timeout=10).status_code == 429
    assert lines()[:3] == ["failed login for 'admin' from 127.0.0.1"] * 3
    assert lines()[3] == "log-in refused for 'admin' from 127.0.0.1: throttled" and len(lines()) == 4

    # another address (loopback has all of 127/8) still gets its line within the minute
    port = int(appliance.url.rsplit(":", 1)[1])
    other = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=("127.0.0.2", 0))
    other.request("POST", "/api/login", body=json.dumps({"username": "teacher", "password": "wrong-one"}),
                  headers={"Content-Type": "application/json"})
    assert other.getresponse().status == 401
    other.close()
    assert len(lines()) == 5 and lines()[4].startswith("failed login for an unknown user name from 127.0.0.2 (API) "
                                                        "(29 more refused log-ins before this one were not logged")

    now[0] = 61.0  # the next minute: the script's address has lines again
    assert requests.post(api, json={"username": "admin", "password": "guess"}, timeout=10).status_code == 429
    assert len(lines()) == 6 and lines()[5] == "log-in refused for 'admin' from 127.0.0.1: throttled (API)"
    long_name = "x" * 5000
    assert requests.post(api, json={"username": long_name, "password": "guess"}, timeout=10).status_code == 401
    assert lines()[6] == "failed login for an unknown user name from 127.0.0.1 (API)"  # not 5000 x's


def test_a_password_typed_as_the_user_name_is_neither_logged_nor_stored(appliance, caplog, monkeypatch):
    """A student who types their password into the user-name field (or name and password
    run together) put it in the journal ("failed login for 'Pass-anna.schmidt-1'") and in
    the failed log-ins table. A name no account has is logged as such and counted under a
    keyed digest kept in memory: still throttled per name, never written down."""
    appliance.accounts.throttle = ThrottlePolicy(slow_after=100, slow_after_address=100, lock_after_user=3,
                                                 lock_after_address=100, lock_s=300)
    monkeypatch.setattr(hardening, "REFUSALS", hardening.RefusalLog(per_client=20))  # a line for each
    caplog.set_level(logging.INFO, logger="edge_app.web")
    typed = "Pass-anna.schmidt-1"
    for _ in range(3):
        assert form_login(appliance.url, typed, "anything-at-all").status_code == 401
    r = requests.post(f"{appliance.url}/api/login", json={"username": typed, "password": "x"}, timeout=10)
    assert r.status_code == 429 and "this user name" in r.json()["error"]  # the name itself is locked ...
    assert form_login(appliance.url, "Pass-ben.weber-2", "anything-at-all").status_code == 401  # ... no other
    assert typed.lower() not in caplog.text.lower() and "failed login for an unknown user name" in caplog.text
    keys = [k for (k,) in appliance.store.query("SELECT key FROM login_failures")]
    assert keys and not any("pass-" in k.lower() for k in keys), keys
    data = appliance.store.path.parent
    assert not [f.name for f in data.iterdir() if f.is_file() and typed.lower().encode() in f.read_bytes().lower()]
    assert form_login(appliance.url, "admin", "wrong-password-xyz").status_code == 401  # an account's own name
    assert "failed login for 'admin' from" in caplog.text  # is named, for the admin to see who is guessing
    assert "user:admin" in [k for (k,) in appliance.store.query("SELECT key FROM login_failures")]


def test_refused_log_ins_from_many_addresses_share_an_overall_bound(caplog):
    """A script spread over many addresses gets each address's lines until the overall
    budget is spent; then nothing more until the next window, whose first line counts what
    was left out."""
    now = [0.0]
    refusals = hardening.RefusalLog(burst=6, per_client=2, window_s=60, clock=lambda: now[0])
    logger = logging.getLogger("test.refusals")
    caplog.set_level(logging.INFO, logger="test.refusals")

    def refused(address: str, times: int = 1) -> list[str]:
        for _ in range(times):
            refusals.line(logger, logging.INFO, "failed login from %s", address=address)
        return [r.getMessage() for r in caplog.records if r.name == "test.refusals"]

    for i in range(20):
        refused(f"10.0.0.{i}")
    assert len(refused("10.0.1.1", 3)) == 6  # the overall budget: the first six addresses
    now[0] = 60.0
    lines = refused("10.0.1.1", 3)
    assert len(lines) == 8  # that address's own two
    assert "(17 more refused log-ins" in lines[6] and "(" not in lines[7]
    # IPv6: one /64 is one client, whatever address of it a laptop takes each time
    for i in range(4):
        lines = refused(f"2001:db8::{i}")
    assert len(lines) == 10 and lines[-1].endswith("2001:db8::1")


def test_success_clears_the_user_failures(appliance):
    appliance.accounts.throttle = ThrottlePolicy(slow_after=2, base_delay_s=30, lock_after_user=50)
    assert form_login(appliance.url, "admin", "nope-nope-1").status_code == 401
    assert form_login(appliance.url, "admin", ADMIN_PASSWORD).status_code == 303
    assert form_login(appliance.url, "admin", "nope-nope-2").status_code == 401
    assert form_login(appliance.url, "admin", ADMIN_PASSWORD).status_code == 303  # only one failure counted


# ------------------------------------------------------------ CSRF and origin
def test_state_changing_forms_need_the_csrf_token(appliance, face_jpeg):
    s = login(appliance.url)
    del s.headers["X-CSRF-Token"]  # a browser's form carries only its hidden field
    r = s.post(f"{appliance.url}/upload", files={"image": ("a.jpg", face_jpeg, "image/jpeg")}, timeout=30)
    assert r.status_code == 403 and "reload the page" in r.text
    r = s.post(f"{appliance.url}/admin/users", data={"username": "mallory", "password": "mallory-pw-1",
                                                     "role": "admin", "csrf": "forged"}, timeout=10)
    assert r.status_code == 403
    assert appliance.accounts.find("mallory") is None
    r = s.post(f"{appliance.url}/logout", data={}, timeout=10)
    assert r.status_code == 403
    assert s.get(f"{appliance.url}/api/state", timeout=10).status_code == 200  # still logged in
    assert appliance.store.query("SELECT COUNT(*) FROM uploads")[0][0] == 0


def test_cross_site_post_is_refused_even_with_the_token(appliance):
    s = login(appliance.url)
    r = s.post(f"{appliance.url}/admin/users", data={"username": "mallory", "password": "mallory-pw-1",
                                                     "role": "admin", "csrf": s.csrf},
               headers={"Origin": "http://evil.example"}, timeout=10)
    assert r.status_code == 403
    assert appliance.accounts.find("mallory") is None


# ------------------------------------------------------------ admin manages users
def test_admin_creates_disables_resets_and_deletes_users(appliance):
    admin = login(appliance.url)
    base = appliance.url

    def act(path, **data):
        return admin.post(f"{base}{path}", data={"csrf": admin.csrf, **data}, timeout=10)

    r = act("/admin/users", username="kim", password="kim-pw-1234", role="student")
    assert r.status_code == 200 and "Created student kim" in r.text
    r = act("/admin/users", username="kim", password="kim-pw-1234", role="student")
    assert "already exists" in r.text
    r = act("/admin/users", username="x", password="kim-pw-1234", role="student")
    assert "User not created" in r.text
    kim = appliance.accounts.find("kim")
    student = login(base, "kim", "kim-pw-1234")
    r = act(f"/admin/users/{kim.id}/disable")
    assert "Disabled kim" in r.text
    assert student.get(f"{base}/api/state", timeout=10).status_code == 401  # their session ended
    # the right password for a disabled account is told so (only its owner learns it); a wrong one is just wrong
    r = form_login(base, "kim", "kim-pw-1234")
    assert r.status_code == 403 and "This account is disabled: ask an admin" in r.text
    r = requests.post(f"{base}/api/login", json={"username": "kim", "password": "kim-pw-1234"}, timeout=10)
    assert r.status_code == 403 and "disabled" in r.json()["error"]
    r = form_login(base, "kim", "not-kims-password")
    assert r.status_code == 401 and "disabled" not in r.text
    act(f"/admin/users/{kim.id}/enable")
    assert form_login(base, "kim", "kim-pw-1234").status_code == 303
    r = act(f"/admin/users/{kim.id}/password", password="reset-pw-5678")
    assert "New password set" in r.text
    assert form_login(base, "kim", "kim-pw-1234").status_code == 401
    assert form_login(base, "kim", "reset-pw-5678").status_code == 303
    r = act(f"/admin/users/{kim.id}/delete")  # first the page that says what will be lost
    assert 'id="confirm-delete"' in r.text and appliance.accounts.find("kim") is not None
    r = act(f"/admin/users/{kim.id}/delete", confirm="yes")
    assert "Deleted kim" in r.text and appliance.accounts.find("kim") is None


def test_add_user_clicked_twice_shows_the_first_ones_success(appliance):
    """A double click on "Add user" sends the form twice: the account was created, and the
    page said "User not created: the user 'mia.k' already exists". The same form sent again
    (its one-time token) is answered with the first's outcome; a new form for the name is not."""
    admin = login(appliance.url)
    form = re.search(r'name="attempt" value="([^"]+)"', admin.get(f"{appliance.url}/admin/users", timeout=10).text)
    sent = {"csrf": admin.csrf, "attempt": form.group(1), "username": "mia.k", "password": "mia-pw-1234",
            "role": "student", "temporary": "on"}
    clicks = [requests.Session() for _ in range(2)]
    for click in clicks:
        click.cookies.update(admin.cookies)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:  # both on their way at once, as a double click's
        answers = list(pool.map(lambda c: c.post(f"{appliance.url}/admin/users", data=sent, timeout=10), clicks))
    for r in answers:
        assert r.status_code == 200 and "Created student mia.k; they choose their own" in r.text, r.text
    assert [u.username for u in appliance.accounts.list_users()].count("mia.k") == 1
    assert appliance.store.query("SELECT COUNT(*) FROM audit WHERE action = 'created user'")[0][0] == 1
    again = admin.post(f"{appliance.url}/admin/users", data={**sent, "attempt": "another-form"}, timeout=10)
    assert again.status_code == 400 and "already exists" in again.text


def test_a_password_an_admin_chose_is_replaced_at_the_first_log_in(appliance):
    """The form's box, checked by default: a password the admin typed (and handed over on
    a note) opens nothing but Your account until its owner chooses their own."""
    admin = login(appliance.url)
    base = appliance.url

    def act(path, **data):
        return admin.post(f"{base}{path}", data={"csrf": admin.csrf, **data}, timeout=10)

    def done(r) -> str:  # the page's report of what was done
        return html.unescape(r.text.split('id="users-done">', 1)[1].split("</p>", 1)[0])

    r = act("/admin/users", username="kim", password="from-the-admin-1", role="student", temporary="on")
    assert done(r) == "Created student kim; they choose their own password at the first log-in."
    assert "(password not yet chosen)" in r.text
    r = requests.post(f"{base}/login", data={"username": "kim", "password": "from-the-admin-1", "next": "/upload"},
                      timeout=10)
    assert r.url.startswith(f"{base}/account") and 'id="account-first"' in r.text
    kim = requests.post(f"{base}/api/login", json={"username": "kim", "password": "from-the-admin-1"}, timeout=10)
    assert kim.status_code == 200 and kim.json()["must_change_password"] is True
    r = requests.get(f"{base}/api/state", cookies=kim.cookies, timeout=10)
    assert r.status_code == 403 and "/account" in r.json()["error"]

    student = requests.Session()
    student.post(f"{base}/login", data={"username": "kim", "password": "from-the-admin-1"}, timeout=10)
    csrf = re.search(r'name="csrf" value="([^"]+)"', student.get(f"{base}/account", timeout=10).text).group(1)
    r = student.post(f"{base}/account", data={"csrf": csrf, "current": "from-the-admin-1", "new": "kims-own-words-2",
                                              "again": "kims-own-words-2"}, timeout=10)
    assert 'id="account-done"' in r.text and 'id="account-first"' not in r.text
    assert student.get(f"{base}/api/state", timeout=10).status_code == 200
    assert "(password not yet chosen)" not in admin.get(f"{base}/admin/users", timeout=10).text

    kim_id = appliance.accounts.find("kim").id
    r = act(f"/admin/users/{kim_id}/password", password="another-note-3", temporary="on")  # forgotten again
    assert done(r) == "New password set for kim; their sessions ended; they choose their own at the next log-in."
    assert appliance.accounts.find("kim").must_change_password
    r = act(f"/admin/users/{kim_id}/password", password="another-note-4", temporary="maybe")
    assert "Password of kim not reset: temporary must be on or off" in r.text  # which row's, in a list of many
    assert appliance.accounts.authenticate("kim", "another-note-3")
    r = act(f"/admin/users/{kim_id}/password", password="another-note-4")  # the box left unchecked
    assert done(r) == "New password set for kim; their sessions ended."
    assert not appliance.accounts.find("kim").must_change_password
    me = appliance.accounts.find("admin")
    r = act(f"/admin/users/{me.id}/password", password="the-admins-own-5")  # no current password asked here
    assert "Change your own password on Your account" in r.text and 'href="/account">Change your password' in r.text
    assert appliance.accounts.authenticate("admin", ADMIN_PASSWORD)  # a stolen session cannot take the account
    audit = [(a["action"], a["target"], a["detail"]) for a in
             appliance.store.query("SELECT action, target, detail FROM audit WHERE target = 'kim' ORDER BY id")]
    assert audit == [("created user", "kim", "role student, temporary password"),
                         ("reset password of", "kim", "temporary password"), ("reset password of", "kim", "")]


def test_a_given_password_shows_nothing_live_until_replaced(make_appliance):
    """The account page's header (the only page such a user gets) carries no live state:
    whoever read the note could see it; a form sent meanwhile leads to /account without a
    way back to the form's own address. Its Pause button stays (pausing films less:
    test_privacy_pause), and a pause sent from elsewhere goes to /account too."""
    appliance = make_appliance()  # with the capture loop: its state is what must not show
    base = appliance.url
    appliance.accounts.create_user("kim", "from-the-admin-1", "student", must_change=True)
    s = requests.Session()
    r = s.post(f"{base}/login", data={"username": "kim", "password": "from-the-admin-1"}, timeout=10)
    assert 'id="account-first"' in r.text
    assert 'id="state-dot"' not in r.text and 'id="state"' not in r.text and 'id="privacy-button"' in r.text
    csrf = re.search(r'name="csrf" value="([^"]+)"', r.text).group(1)
    r = s.post(f"{base}/privacy", data={"csrf": csrf, "do": "resume", "back": "/"}, allow_redirects=False, timeout=10)
    assert r.status_code in (302, 303) and r.headers["Location"].endswith("/account")  # resuming waits
    r = s.post(f"{base}/privacy", data={"csrf": csrf, "do": "pause", "back": "/upload"}, timeout=10)
    assert "/account" in r.url and appliance.loop.privacy.active  # paused, and on to /account
    assert 'id="state-dot"' not in r.text
    r = s.post(f"{base}/account", data={"csrf": csrf, "current": "from-the-admin-1", "new": "kims-own-words-2",
                                        "again": "kims-own-words-2"}, timeout=10)
    assert 'id="account-done"' in r.text
    assert 'id="state-dot"' in r.text and 'id="privacy-button"' in r.text


def test_a_name_made_before_names_were_matched_whole_still_logs_in(appliance):
    """Until 2026-11-27 a name could end in a newline (the rule's "$"); such an account must
    still log in and be found by `engage-edge passwd`, not be locked out by the new rule."""
    appliance.store.execute("INSERT INTO users(username, password_hash, role, created) VALUES (?, ?, ?, ?)",
                            ("legacy\n", hash_password("legacy-pass-1"), "instructor", 0.0))
    assert appliance.accounts.find("legacy\n") is not None
    assert appliance.accounts.authenticate("legacy\n", "legacy-pass-1").username == "legacy\n"
    r = requests.post(f"{appliance.url}/api/login", json={"username": "legacy\n", "password": "legacy-pass-1"},
                      timeout=10)  # the spaces around a name go, but not from the only name that has them
    assert r.status_code == 200 and r.json()["user"] == "legacy\n"
    with pytest.raises(AuthError):
        appliance.accounts.create_user("another\n", "another-pass-1")


def test_admin_cannot_remove_themself(appliance):
    """Nor, so, the last admin from the page: the one acting is an enabled admin, so another is
    the last only when the acting one is disabled in the meantime (the next test)."""
    admin = login(appliance.url)
    me = appliance.accounts.find("admin")
    r = admin.post(f"{appliance.url}/admin/users/{me.id}/delete", data={"csrf": admin.csrf}, timeout=10)
    assert "cannot disable or delete your own account" in r.text
    assert appliance.accounts.find("admin") is not None


@pytest.mark.parametrize("action", ["disable", "delete"])
def test_two_admins_removing_each_other_at_once_leave_one(appliance, monkeypatch, action):
    """Each admin's page saw two admins, then each disabled (or deleted) the other: none was
    left. The second change, landing after the first, is refused in its own write; a refused
    deletion had deleted the account's photos before its account was checked: they stay."""
    bob = appliance.accounts.create_user("bob", "bobs-pass-123", "admin")
    ann = appliance.accounts.find("admin")
    appliance.store.add_upload(ann.id, "ann.jpg", 10, 10, [])
    as_bob = login(appliance.url, "bob", "bobs-pass-123")
    owner, name = (appliance.accounts, "set_disabled") if action == "disable" else (appliance.store, "delete_user_data")
    write = getattr(owner, name)

    def the_other_lands_first(user_id, *args, **kwargs):  # ann disables bob just before bob's write
        if user_id == ann.id:
            appliance.accounts.set_disabled(bob.id, True)
        return write(user_id, *args, **kwargs)

    monkeypatch.setattr(owner, name, the_other_lands_first)
    r = as_bob.post(f"{appliance.url}/admin/users/{ann.id}/{action}", data={"csrf": as_bob.csrf, "confirm": "yes"},
                    timeout=10)
    assert r.status_code == 200 and "Log in" in r.text  # bob is disabled now: his page ends, no 500
    assert not appliance.accounts.get(ann.id).disabled and appliance.accounts.get(bob.id).disabled
    assert appliance.store.query("SELECT COUNT(*) FROM uploads WHERE user_id = ?", (ann.id,))[0][0] == 1
    assert not appliance.store.query("SELECT * FROM audit WHERE actor = 'bob'")


# ------------------------------------------------------------ every route guarded
BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}  # what chromium sends


def test_a_browser_gets_error_pages_in_plain_words_and_a_script_json(appliance, caplog):
    """An address by a name the device does not answer to, and an unexpected error, showed a
    browser a bare line of JSON ({"error": "unknown Host header ..."}) as the whole page."""
    appliance.app.route("/test-fails", callback=lambda: 1 / 0)  # a real fault, on the real server
    s = login(appliance.url)
    r = s.get(f"{appliance.url}/test-fails", headers=BROWSER, timeout=10)
    assert r.status_code == 500 and r.headers["Content-Type"].startswith("text/html")
    assert "Something went wrong" in r.text and "try again" in r.text and "ZeroDivisionError" not in r.text
    assert "Content-Security-Policy" in r.headers and "ZeroDivisionError" in caplog.text  # the details: the log
    assert "journalctl -u engage-edge" in r.text  # where they are, for an admin; a student is spared the command
    add_student(appliance)
    r = login(appliance.url, "sam", STUDENT_PW).get(f"{appliance.url}/test-fails", headers=BROWSER, timeout=10)
    assert r.status_code == 500 and "tell whoever looks after the device" in r.text and "journalctl" not in r.text
    r = s.get(f"{appliance.url}/test-fails", timeout=10)  # a script
    assert r.status_code == 500 and "internal error" in r.json()["error"]
    r = requests.get(f"{appliance.url}/login", headers={**BROWSER, "Host": "evil.example"}, timeout=10)
    assert r.status_code == 400 and r.headers["Content-Type"].startswith("text/html")
    assert "does not answer to the name" in r.text and "web.allowed_hosts" in r.text and "{" not in r.text
    r = requests.get(f"{appliance.url}/login", headers={"Host": "evil.example"}, timeout=10)
    assert r.status_code == 400 and "Host" in r.json()["error"]
    r = requests.get(f"{appliance.url}/api/state", headers={**BROWSER, "Host": "evil.example"}, timeout=10)
    assert "Host" in r.json()["error"]  # an API path is JSON whatever it accepts


def test_every_route_is_guarded(appliance):
    """Enumerates the app's routes, so a route added without a guard fails here."""
    add_student(appliance)
    student = login(appliance.url, "sam", STUDENT_PW)
    admin_routes = 0
    for route in appliance.app.routes:
        key = (route.method, route.rule)
        if key in PUBLIC:
            continue
        url = appliance.url + concrete(route.rule)
        anon = requests.request(route.method, url, allow_redirects=False, timeout=10, stream=True)
        anon.close()
        assert refused_anonymously(anon), f"{route.method} {route.rule} answered {anon.status_code} to an anonymous user"
        if route.rule == "/admin" or route.rule.startswith(("/admin/", "/api/admin/")):
            admin_routes += 1
            # with a valid CSRF token, so only the role check can refuse
            r = student.request(route.method, url, data={"csrf": student.csrf}, allow_redirects=False, timeout=10,
                                stream=True)
            r.close()
            assert r.status_code == 403, f"{route.method} {route.rule} answered {r.status_code} to a student"
    assert admin_routes >= 12


def test_admin_json_api_refuses_with_json(appliance):
    add_student(appliance)
    r = requests.get(f"{appliance.url}/api/admin/log", timeout=10)
    assert r.status_code == 401 and "log in" in r.json()["error"]
    student = login(appliance.url, "sam", STUDENT_PW)
    r = student.get(f"{appliance.url}/api/admin/log", timeout=10)
    assert r.status_code == 403 and r.json()["error"] == "admins only"
    r = student.get(f"{appliance.url}/admin", timeout=10)
    assert r.status_code == 403 and "admins only" in r.text


def test_students_see_their_own_results_only(appliance, face_jpeg):
    add_student(appliance, "ann")
    add_student(appliance, "ben")
    ann, ben = login(appliance.url, "ann", STUDENT_PW), login(appliance.url, "ben", STUDENT_PW)
    r = ann.post(f"{appliance.url}/upload", data={"csrf": ann.csrf},
                 files={"image": ("ann-secret-photo.jpg", face_jpeg, "image/jpeg")}, timeout=60)
    assert r.status_code == 200
    assert "ann-secret-photo.jpg" in ann.get(f"{appliance.url}/upload", timeout=10).text
    assert "ann-secret-photo.jpg" not in ben.get(f"{appliance.url}/upload", timeout=10).text
    assert ben.get(f"{appliance.url}/admin/image/1", timeout=10).status_code == 403


def test_log_out_everywhere_else_ends_the_other_browsers_only(appliance):
    """A browser left logged in on a classroom computer: from another one, the user ends it."""
    add_student(appliance)
    here, left_behind = login(appliance.url, "sam", STUDENT_PW), login(appliance.url, "sam", STUDENT_PW)
    admin = login(appliance.url)  # someone else's session is not touched
    page = here.get(f"{appliance.url}/account", timeout=10).text
    assert "also logged in on 1 other browser." in page
    assert here.post(f"{appliance.url}/account/sessions", data={"csrf": "stale"}, allow_redirects=False,
                     timeout=10).status_code == 403
    r = here.post(f"{appliance.url}/account/sessions", data={"csrf": here.csrf}, allow_redirects=False, timeout=10)
    assert r.status_code == 303 and r.headers["Location"].endswith("/account?ended=1")
    said = here.get(r.headers["Location"], timeout=10).text
    assert ("Logged out 1 other browser; every other browser you logged in from now waits after wrong passwords "
            "for your name, like anyone else's.") in said
    assert left_behind.get(f"{appliance.url}/api/state", timeout=10).status_code == 401
    assert here.get(f"{appliance.url}/api/state", timeout=10).status_code == 200
    assert admin.get(f"{appliance.url}/api/state", timeout=10).status_code == 200
    assert "Only here." in here.get(f"{appliance.url}/account", timeout=10).text
    forged = here.get(f"{appliance.url}/account?ended=<b>999999</b>", timeout=10).text
    assert "sessions-ended" not in forged  # only a count this page wrote itself is shown


def test_with_no_other_log_in_open_the_other_browsers_can_still_be_forgotten(appliance):
    """A lost laptop whose log-in has already ended stays a known browser (spared the waits
    after wrong passwords for the name), and "Log out everywhere else" was offered only
    while another log-in was open: nothing short of a new password made it a stranger. With
    none open, the page offers to forget every other browser."""
    add_student(appliance)
    laptop = login(appliance.url, "sam", STUDENT_PW)
    lost = laptop.cookies["ee_session_known"]
    assert laptop.post(f"{appliance.url}/logout", data={"csrf": laptop.csrf}, timeout=10).status_code == 200
    assert appliance.accounts.known_browser("sam", lost)  # logged out, still known
    here = login(appliance.url, "sam", STUDENT_PW)
    page = here.get(f"{appliance.url}/account", timeout=10).text
    assert 'id="sessions-none">Only here.' in page and 'id="sessions-forget"' in page
    assert "can still keep trying passwords for your name when others would have to wait" in " ".join(page.split())
    r = here.post(f"{appliance.url}/account/sessions", data={"csrf": here.csrf}, allow_redirects=False, timeout=10)
    assert r.status_code == 303 and r.headers["Location"].endswith("/account?ended=0")
    assert "Every other browser you logged in from now waits after wrong passwords for your name, like anyone else's." in \
        here.get(r.headers["Location"], timeout=10).text
    assert appliance.accounts.known_browser("sam", lost) is None
    assert appliance.accounts.known_browser("sam", here.cookies["ee_session_known"])  # this one stays known
    assert here.get(f"{appliance.url}/api/state", timeout=10).status_code == 200


def test_after_a_password_change_the_account_page_counts_no_other_browser(appliance):
    add_student(appliance)
    here, _elsewhere = login(appliance.url, "sam", STUDENT_PW), login(appliance.url, "sam", STUDENT_PW)
    r = here.post(f"{appliance.url}/account", data={"csrf": here.csrf, "current": STUDENT_PW, "new": "new-sam-pw-456",
                                                    "again": "new-sam-pw-456"}, timeout=10)
    assert r.status_code == 200 and "Password changed" in r.text
    # this browser's fresh session is not "another"; the one elsewhere was logged out, and is said so once
    assert 'id="sessions-none">Only here.' in r.text and 'id="sessions-others"' not in r.text
    assert "1 other browser was logged out" in r.text


def test_every_logged_in_page_carries_the_idle_warning_and_the_log_in_page_none(appliance):
    """The warning was on /upload, /live and the result page only: an admin typing a class
    list or settings lost them the same way."""
    s = login(appliance.url)
    for path in ("/upload", "/live", "/account", "/admin", "/admin/settings", "/admin/users", "/admin/log"):
        text = s.get(f"{appliance.url}{path}", timeout=10).text
        assert text.count('id="idle-warning"') == 1, path
    assert 'id="idle-warning"' not in requests.get(f"{appliance.url}/login", timeout=10).text


def test_the_menus_say_their_current_item_and_list_every_admin_page(appliance):
    """The current item was an underline and a colour only (nothing a screen reader says), and
    /admin/alerts, where stored snapshots are seen and deleted, was missing from the admin menu."""
    s = login(appliance.url)
    page = s.get(f"{appliance.url}/admin/alerts", timeout=10).text
    menu = re.search(r'<nav aria-label="Main">.*?</nav>', page, re.S).group(0)
    sub = re.search(r'<nav class="sub" aria-label="Admin">.*?</nav>', page, re.S).group(0)
    assert '<a href="/admin/alerts" class="on" aria-current="page">Alerts</a>' in sub and sub.count("aria-current") == 1
    assert '<a href="/admin" class="on" aria-current="true">Admin</a>' in menu and menu.count("aria-current") == 1
    assert ">Classroom broker</a>" in sub  # the tab named as its page's heading
    page = s.get(f"{appliance.url}/upload", timeout=10).text
    assert '<a href="/upload" class="on" aria-current="page">Upload</a>' in page and page.count("aria-current") == 1


def test_logging_in_again_ends_the_session_this_browser_had(appliance):
    """A hostile-client review: logging in again in a browser (someone else at a shared
    computer, or the same person) left its previous session's token valid for its whole
    lifetime, for whoever had copied it. The new log-in ends it; others' sessions stay."""
    appliance.accounts.create_user("sam", STUDENT_PW, "student")
    elsewhere = login(appliance.url, "sam", STUDENT_PW)  # another browser of sam's
    browser = requests.Session()
    first = browser.post(f"{appliance.url}/api/login", json={"username": "admin", "password": ADMIN_PASSWORD},
                         timeout=10)
    old_token = first.cookies["ee_session"]
    again = browser.post(f"{appliance.url}/api/login", json={"username": "sam", "password": STUDENT_PW}, timeout=10)
    assert again.status_code == 200 and again.cookies["ee_session"] != old_token
    assert requests.get(f"{appliance.url}/api/session", cookies={"ee_session": old_token},
                        timeout=10).status_code == 401
    assert browser.get(f"{appliance.url}/api/session", timeout=10).status_code == 200
    assert elsewhere.get(f"{appliance.url}/api/session", timeout=10).status_code == 200
