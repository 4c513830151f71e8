"""The device's web UI as an instructor uses it during a lesson (README, "The web UI"): every
link their pages show opens for them, an admin page they reach anyway says what to do, the
desk view left open on a tablet warns before the log-in's lifetime ends, and the privacy page
tells students what the classroom screen shows a teacher. Plain HTTP against the appliance,
and headless Chromium where the page's scripts matter."""
from __future__ import annotations

import html
import re

from edge_app import config as config_mod
from tests.conftest import browser_login, login, wait_in_page
from tests.test_privacy_page import page_text

TEACHER, TEACHER_PW = "ms.lee", "lee-own-pass-1"


def words(text: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", text)).split())


def test_every_link_an_instructor_is_shown_opens_for_them_and_none_is_an_admins(make_appliance):
    app = make_appliance()
    app.accounts.create_user(TEACHER, TEACHER_PW, "instructor")
    lee = login(app.url, TEACHER, TEACHER_PW)
    shown: set[str] = set()
    for page in ("/live", "/glance", "/upload", "/privacy", "/account"):
        r = lee.get(app.url + page, timeout=10)
        assert r.status_code == 200, page
        shown |= {h for h in re.findall(r'href="(/[^"#]*)"', r.text) if not h.startswith("/static/")}
    assert not [h for h in shown if h.startswith("/admin")], shown
    for href in sorted(shown - {"/favicon.ico"}):
        assert lee.get(app.url + href, timeout=10).status_code == 200, href
    # the level, never the words that name the face's expression (the picture is admins' here)
    assert lee.get(f"{app.url}/api/state", timeout=10).json()["emotion"] is None
    assert lee.get(f"{app.url}/api/timeline", timeout=10).json()["own_from"] is None  # the desk's whole span


def test_an_admin_page_an_instructor_reaches_says_what_to_do(web_appliance):
    """An old bookmark from when they were an admin, or a link an admin sent: the page said
    "This page is for admins only." and nothing they could do about it."""
    web_appliance.accounts.create_user(TEACHER, TEACHER_PW, "instructor")
    lee = login(web_appliance.url, TEACHER, TEACHER_PW)
    r = lee.get(f"{web_appliance.url}/admin/log", timeout=10)
    said = words(r.text)
    assert r.status_code == 403 and "for admins only" in said
    assert f"you are logged in as {TEACHER} (instructor)" in said and "ask this device's admin" in said


def test_an_instructors_desk_view_warns_before_the_log_ins_lifetime_ends(make_appliance, browser):
    """The desk view keeps an instructor's log-in while open, but not past
    web.session_max_hours: the tablet went to the log-in page unwarned, which then said
    "idle too long", and its note promised "you stay logged in" without that end."""
    app = make_appliance(with_loop=False)
    app.accounts.create_user(TEACHER, TEACHER_PW, "instructor")
    context = browser.new_context()
    try:
        page = context.new_page()
        browser_login(page, app.url, TEACHER, TEACHER_PW)
        app.accounts.max_age_s = 30  # this log-in has half a minute left: inside the warning's minute
        page.goto(f"{app.url}/glance")
        wait_in_page(page, "() => (document.getElementById('idle-warning') || {}).textContent || ''")
        warning = page.locator("#idle-warning").inner_text()
        assert "lasted as long as a log-in may" in warning and page.locator("#stay-logged-in").count() == 0
        note = " ".join(page.locator("#glance-note").inner_text().split())
        assert "you stay logged in on this browser" in note and "A log-in still ends 12 hours after it began" in note
    finally:
        context.close()


def test_the_privacy_page_says_what_the_classroom_screen_shows_a_teacher(make_appliance, cfg):
    """With a classroom server, a teacher's screen shows each desk's share of the last ten
    minutes engaged and lists it under "Needs attention" after minutes "Not engaged" or
    "Distracted": the page told students only that teachers see the level as it changes."""
    app = make_appliance(config_mod.with_changes(cfg, {"mqtt.host": "broker.school.lan", "mqtt.device_id": "desk-07"}),
                         with_loop=False)
    app.accounts.create_user("ann", "student-pw-123", "student")
    text = page_text(login(app.url, "ann", "student-pw-123"), app.url)
    teachers = text.split("Teachers", 1)[1].split("Other students", 1)[0]
    assert "how much of the last ten minutes" in teachers and '"Needs attention"' in teachers, teachers


def test_each_role_starts_on_its_own_page(web_appliance):
    """An instructor's start page (after the log-in, "Back to the start page") was "Analyse a
    photo", written for students; a teacher glances at the desk's state."""
    for name, role, start in (("ms.lee2", "instructor", "/live"), ("kim.s", "student", "/upload")):
        web_appliance.accounts.create_user(name, TEACHER_PW, role)
        r = login(web_appliance.url, name, TEACHER_PW).get(web_appliance.url + "/", timeout=10, allow_redirects=False)
        assert r.status_code in (302, 303) and r.headers["Location"].endswith(start), (role, r.headers.get("Location"))
    r = login(web_appliance.url).get(web_appliance.url + "/", timeout=10, allow_redirects=False)
    assert r.headers["Location"].endswith("/admin")


def test_the_log_in_page_names_the_log_ins_lifetime_among_why_a_session_ended(web_appliance):
    """A desk view left open all day ended at web.session_max_hours, and the log-in page said
    "idle too long, or logged out from another browser": neither had happened."""
    r = login(web_appliance.url).get(web_appliance.url + "/login?ended=page", timeout=10)
    assert "Your session ended (idle too long, 12 hours after the log-in, or logged out from another browser)" \
        in words(r.text)


def test_while_a_given_password_must_be_replaced_the_menu_offers_no_page_that_leads_back(web_appliance):
    """During the forced password change the menu showed Upload and Live (and Admin), each of
    which only led back to Your account."""
    web_appliance.accounts.create_user("ms.new", TEACHER_PW, "instructor", must_change=True)
    s = login(web_appliance.url, "ms.new", TEACHER_PW)
    menu = re.search(r'<nav aria-label="Main">(.*?)</nav>', s.get(web_appliance.url + "/account", timeout=10).text, re.S)
    assert menu and 'href="/upload"' not in menu.group(1) and 'href="/live"' not in menu.group(1)
    assert 'href="/account"' in menu.group(1) and "Log out" in menu.group(1)
    web_appliance.accounts.set_password(web_appliance.accounts.find("ms.new").id, "ms-new-own-pw-1", must_change=False)
    s = login(web_appliance.url, "ms.new", "ms-new-own-pw-1")
    assert 'href="/live"' in s.get(web_appliance.url + "/account", timeout=10).text
