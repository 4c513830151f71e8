"""A school year on one device as its admin lives it, over real HTTP: a class made from a
pasted list of real names in September, students who leave, "Delete every student" in June,
and a new student next September who gets an old one's user name."""
from __future__ import annotations

import contextlib
import html
import re
import time

import pytest

from edge_app.store.accounts import suggested_username
from tests.conftest import login


@pytest.fixture
def quiet(make_appliance):
    """The web UI on its store, without the camera loop."""
    return make_appliance(with_loop=False)


def error_of(page: str) -> str:
    found = re.search(r'id="users-error">(.*?)</p>', page, re.S)
    assert found, "no error on the page"
    return html.unescape(found.group(1))


@pytest.mark.parametrize("name, offer", [("Zoë Müller", "zoe.muller"), ("Ben Smith", "ben.smith"),
                                         ("  José-Luis  Ørsted ", "jose-luis.orsted"), ("Günther Weiß", "gunther.weiss"),
                                         ("Anna\tSchmidt", "anna.schmidt"), ("Schmidt, Anna", None), ("ü", None),
                                         ("***", None)])
def test_a_name_with_accents_or_spaces_gets_one_that_would_do(name, offer):
    assert suggested_username(name) == offer


def test_a_suggestion_is_never_a_taken_name():
    assert suggested_username("Zoë Müller", {"zoe.muller", "zoe.muller2"}.__contains__) == "zoe.muller3"


def test_a_pasted_class_list_names_each_refused_line_as_the_box_shows_it_with_a_name_that_would_do(quiet):
    """A list pasted from the school's register: real names with accents and spaces, a blank
    line between two halves of the class. The refusal said "line 5" of the name on the box's
    sixth line (blank lines were not counted), and of "Zoë Müller" only that a user name
    has "letters", which ë is to a teacher: now each refused line is named by its place in
    the box, with a user name that would do (not one taken or on the list already)."""
    s = login(quiet.url)
    quiet.accounts.create_user("ben.smith", "ben-smith-pw-1")
    names = "anna.k\nZoë Müller\n\nBen Smith\nzoe.muller\n\nanna.k\nSchmidt, Anna\n"
    r = s.post(f"{quiet.url}/admin/users/class", data={"csrf": s.csrf, "names": names}, timeout=30)
    assert r.status_code == 400
    said = error_of(r.text)
    assert "line 2 ('Zoë Müller'): not a user name: zoe.muller2 would do" in said  # zoe.muller is on line 5
    assert "line 4 ('Ben Smith'): not a user name: ben.smith2 would do" in said  # ben.smith has an account
    assert "line 7 (anna.k): twice in the list" in said
    assert "line 8 ('Schmidt, Anna'): not a user name: one name a line" in said
    assert "letters a-z only: no accents, no spaces" in said
    assert html.unescape(r.text).count(names.rstrip("\n")) == 1  # the list comes back as typed, to correct
    assert quiet.accounts.find("anna.k") is None  # none made


def test_a_single_user_name_with_an_accent_gets_one_that_would_do(quiet):
    s = login(quiet.url)
    r = s.post(f"{quiet.url}/admin/users", data={"csrf": s.csrf, "username": "Zoë", "password": "zoes-first-pw-1",
                                                 "role": "student", "temporary": "on"}, timeout=30)
    assert r.status_code == 400 and "'zoe' would do" in error_of(r.text)


def test_a_class_list_sent_again_another_day_says_what_happened(quiet):
    """The same list sent again after the sheet's minute (the next day, from the same tab):
    35 lines of "the user already exists" read like 35 problems; it is one."""
    s = login(quiet.url)
    names = "\n".join(f"pupil{i:02d}" for i in range(35))
    assert s.post(f"{quiet.url}/admin/users/class", data={"csrf": s.csrf, "names": names}, timeout=60).ok
    r = s.post(f"{quiet.url}/admin/users/class", data={"csrf": s.csrf, "names": names}, timeout=60)
    assert r.status_code == 400
    said = error_of(r.text)
    assert "every name on the list has an account already: was this list sent before?" in said
    assert "line" not in said


def test_a_forgotten_password_is_reset_to_a_generated_one_shown_once(quiet):
    """A student forgot their password mid-year. The reset asked the admin to invent one and
    type it once into a masked field: a typo, and nobody knew it. Left empty, the device
    draws one, shows it on the answer only (not in the redirect's note a reload reads
    again), ends the student's sessions, and the student replaces it at the next log-in."""
    s = login(quiet.url)
    made = s.post(f"{quiet.url}/admin/users/class", data={"csrf": s.csrf, "names": "anna.k"}, timeout=30).text
    first = re.search(r"<code>([^<]+)</code>", made).group(1)
    student = login(quiet.url, "anna.k", first)
    anna = quiet.accounts.find("anna.k")
    users = s.get(f"{quiet.url}/admin/users", timeout=10).text
    field = re.search(rf'<input id="pw-{anna.id}"[^>]*>', users).group(0)
    assert "required" not in field  # the browser sends it empty
    r = s.post(f"{quiet.url}/admin/users/{anna.id}/password", data={"csrf": s.csrf, "password": ""}, timeout=30)
    assert r.status_code == 200 and not r.history and 'id="shown-once"' in r.text
    given = re.search(r'<table id="given-password">.*?<code>([^<]+)</code>', r.text, re.S).group(1)
    assert given != first and quiet.accounts.authenticate("anna.k", given)
    assert quiet.accounts.find("anna.k").must_change_password
    assert student.get(f"{quiet.url}/api/state", timeout=10).status_code == 401  # their sessions ended
    audit = quiet.store.query("SELECT action, target, detail FROM audit ORDER BY id DESC LIMIT 1")[0]
    assert tuple(audit) == ("reset password of", "anna.k", "generated temporary password") and given not in str(audit)
    assert given not in s.get(f"{quiet.url}/admin/users", timeout=10).text


def test_next_septembers_anna_k_sees_nothing_of_last_years(quiet, face_jpeg):
    """June: "Delete every student". September: a new student gets the user name a deleted
    one had. Nothing of the old account reaches the new one: not her photos, her last
    log-in or her failed log-ins (a lock) on the Users page, nor a session of hers."""
    store, accounts = quiet.store, quiet.accounts
    old = accounts.create_user("anna.k", "old-annas-pw-1")
    store.add_upload(old.id, "june.jpg", 10, 10, [])
    old_session = login(quiet.url, "anna.k", "old-annas-pw-1")
    for _ in range(accounts.throttle.lock_after_user):  # someone guessed at her name from one address
        store.execute("INSERT INTO login_failures(key, t) VALUES ('user:anna.k|10.0.0.9', ?)", (time.time(),))
    assert "anna.k" in accounts.locked_users()
    admin = login(quiet.url)
    page = admin.post(f"{quiet.url}/admin/users/students/delete", data={"csrf": admin.csrf}, timeout=10).text
    ids = re.findall(r'name="user" value="(\d+)"', page)
    admin.post(f"{quiet.url}/admin/users/students/delete", data={"csrf": admin.csrf, "confirm": "yes", "user": ids},
               timeout=10)
    made = admin.post(f"{quiet.url}/admin/users/class", data={"csrf": admin.csrf, "names": "anna.k"}, timeout=30).text
    first = re.search(r"<code>([^<]+)</code>", made).group(1)
    new = accounts.find("anna.k")
    assert new.id != old.id and accounts.locked_users() == set()
    row = re.search(r'<tr data-user="anna.k">(.*?)</tr>', admin.get(f"{quiet.url}/admin/users", timeout=10).text,
                    re.S).group(1)
    assert "(locked)" not in row and "<td>0</td>" in row and "<td>never</td>" in row
    assert old_session.get(f"{quiet.url}/api/state", timeout=10).status_code == 401
    anna = login(quiet.url, "anna.k", first)
    csrf = re.search(r'name="csrf" value="([^"]+)"', anna.get(f"{quiet.url}/account", timeout=10).text).group(1)
    anna.post(f"{quiet.url}/account", data={"csrf": csrf, "current": first, "new": "new-annas-pw-2",
                                            "again": "new-annas-pw-2"}, timeout=10)
    upload = anna.get(f"{quiet.url}/upload", timeout=10).text
    assert "june.jpg" not in upload and 'id="history"' not in upload
    assert 'id="sessions-others"' not in anna.get(f"{quiet.url}/account", timeout=10).text


@contextlib.contextmanager
def users_page(app, browser):
    """A browser page of its own, logged in as the admin, on ``app``'s Users page."""
    from tests.conftest import ADMIN_PASSWORD, browser_login

    context = browser.new_context()
    try:
        page = context.new_page()
        page.set_default_timeout(15000)
        browser_login(page, app.url, "admin", ADMIN_PASSWORD)
        page.goto(f"{app.url}/admin/users")
        yield page
    finally:
        context.close()


def test_the_printed_class_sheet_says_where_to_log_in_and_prints_the_sheet_alone(quiet, browser):
    """The sheet a teacher prints and cuts into slips said no address (the class could not find
    the device), and printed the menu, the camera switch and the footer around the passwords."""
    with users_page(quiet, browser) as page:
        page.locator("textarea[name=names]").fill("ada\nbob")
        page.get_by_role("button", name="Add students").click()
        page.wait_for_url("**/admin/users/class")
        assert page.locator("#log-in-at").inner_text() == f"Log in at {quiet.url}/login"
        page.emulate_media(media="print")
        assert page.locator("#class-passwords").is_visible() and page.locator("#log-in-at").is_visible()
        for hidden in ("header.top", "footer", "#shown-once"):
            assert not page.locator(hidden).is_visible(), hidden


def test_an_admin_logs_a_student_out_of_a_log_in_left_open(quiet):
    """A student left logged in on a shared computer: the next user acts as them. The admin
    could only reset the password or disable and enable the account; "Log out" ends their
    log-ins, the password and the account as they were."""
    quiet.accounts.create_user("ada", "adas-password-1", "student")
    left_open = login(quiet.url, "ada", "adas-password-1")
    assert left_open.get(f"{quiet.url}/api/state", timeout=10).status_code == 200
    s = login(quiet.url)
    r = s.post(f"{quiet.url}/admin/users/{quiet.accounts.find('ada').id}/logout",
               data={"csrf": s.csrf}, timeout=10)
    assert r.ok and "Logged ada out of 1 browser." in html.unescape(r.text)
    assert left_open.get(f"{quiet.url}/api/state", timeout=10).status_code == 401
    assert login(quiet.url, "ada", "adas-password-1").get(f"{quiet.url}/api/state", timeout=10).status_code == 200
    assert quiet.store.query("SELECT action, detail FROM audit WHERE target = 'ada'")[-1][:] == ("logged out", "1 log-in ended")
    me = quiet.accounts.find("admin").id
    r = s.post(f"{quiet.url}/admin/users/{me}/logout", data={"csrf": s.csrf}, timeout=10)
    assert "use Log out everywhere else on Your account" in html.unescape(r.text)
    assert s.get(f"{quiet.url}/api/state", timeout=10).status_code == 200  # still logged in


def test_what_a_users_page_action_did_is_where_the_keyboard_is(quiet, browser):
    """After Log out, Disable, Reset ... the page loads anew with its "done" words there from the
    start: a screen reader did not read them, the focus at the top of the page."""
    from tests.conftest import wait_in_page

    quiet.accounts.create_user("cy", "cys-password-1", "student")
    with users_page(quiet, browser) as page:
        page.locator("details", has_text="cy").first.locator("summary").click()
        page.get_by_role("button", name="Log out cy").click()
        page.wait_for_load_state()
        wait_in_page(page, "document.activeElement && document.activeElement.id === 'users-done'")
        assert "cy was not logged in anywhere" in page.locator("#users-done").inner_text()
