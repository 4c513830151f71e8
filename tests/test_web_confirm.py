"""An admin's changes ask for the password again once it was typed too long ago (a browser
left logged in on a classroom computer), over real HTTP on a real store."""
from __future__ import annotations

import html
import re

import pytest
import requests

from edge_app import config as config_mod
from tests.conftest import ADMIN_PASSWORD, login
from tests.test_web_auth import concrete


@pytest.fixture
def appliance(web_appliance):
    return web_appliance


def go_stale(appliance, minutes: float = 16) -> None:
    """Every session last confirmed ``minutes`` ago (the default window is 15)."""
    appliance.store.execute("UPDATE sessions SET confirmed = confirmed - ?", (minutes * 60,))


def admin_changes(appliance) -> list[tuple[str, str]]:
    """Every route by which an admin changes something: the admin pages' POSTs."""
    return [(r.method, concrete(r.rule)) for r in appliance.app.routes
            if r.method == "POST" and r.rule.startswith("/admin/")]


def test_every_admin_change_asks_for_the_password_once_it_is_stale_and_changes_nothing(appliance):
    admin = login(appliance.url)
    student = appliance.accounts.create_user("sam", "student-pw-123", "student")
    go_stale(appliance)
    routes = admin_changes(appliance)
    assert len(routes) >= 6, routes  # users x2, settings, model x2, classroom
    for method, path in routes:
        path = path.replace("/1/", f"/{student.id}/").replace("/x", "/disable")
        r = admin.request(method, appliance.url + path, data={"csrf": admin.csrf, "username": "eve",
                                                               "password": "eve-password-1", "role": "admin"},
                          allow_redirects=False, timeout=10)
        assert r.status_code == 403 and "Confirm your password" in r.text, (path, r.status_code, r.text[:300])
        assert "Nothing was changed" in r.text
    assert appliance.accounts.get(student.id).disabled is False
    assert appliance.accounts.authenticate("eve", "eve-password-1") is None  # no admin was added
    assert appliance.store.query("SELECT COUNT(*) FROM audit")[0][0] == 0


def test_confirming_lets_the_admin_make_the_change_and_a_wrong_password_does_not(appliance):
    admin = login(appliance.url)
    go_stale(appliance)
    create = {"csrf": admin.csrf, "username": "kim", "password": "kim-password-1", "role": "student"}
    r = admin.post(f"{appliance.url}/admin/users", data=create, allow_redirects=False, timeout=10)
    assert r.status_code == 403 and 'name="next" value="/admin/users"' in r.text  # leads back to the Users page

    wrong = admin.post(f"{appliance.url}/confirm", data={"csrf": admin.csrf, "password": "not-it-123",
                                                          "next": "/admin/users"}, allow_redirects=False, timeout=10)
    assert wrong.status_code == 401 and "Wrong password" in wrong.text
    assert admin.post(f"{appliance.url}/admin/users", data=create, allow_redirects=False,
                      timeout=10).status_code == 403

    ok = admin.post(f"{appliance.url}/confirm", data={"csrf": admin.csrf, "password": ADMIN_PASSWORD,
                                                       "next": "/admin/users"}, allow_redirects=False, timeout=10)
    assert ok.status_code == 303 and ok.headers["Location"].endswith("/admin/users")
    r = admin.post(f"{appliance.url}/admin/users", data=create, allow_redirects=False, timeout=10)
    assert r.status_code == 303 and appliance.accounts.authenticate("kim", "kim-password-1") is not None


def test_a_class_list_sent_while_the_password_was_stale_is_back_after_confirming(appliance):
    """A class pasted from a spreadsheet led through the password page to an empty form: it
    had to be pasted again. It waits in memory (never on disk) for this session only, comes
    back in its form after the confirmation, and goes once the class is created."""
    admin = login(appliance.url)
    go_stale(appliance)
    names = "zoe.quill\nyan.quill\n"
    r = admin.post(f"{appliance.url}/admin/users/class", data={"csrf": admin.csrf, "names": names},
                   allow_redirects=False, timeout=10)
    assert r.status_code == 403 and "Nothing was changed" in r.text and 'id="confirm-kept"' in r.text
    back = html.unescape(re.search(r'name="next" value="([^"]+)"', r.text).group(1))
    assert back.startswith("/admin/users?form=") and "quill" not in back  # no name in an address
    assert appliance.accounts.find("zoe.quill") is None
    on_disk = b"".join(f.read_bytes() for f in appliance.store.data_dir.rglob("*") if f.is_file())
    assert b"zoe.quill" not in on_disk

    ok = admin.post(f"{appliance.url}/confirm", data={"csrf": admin.csrf, "password": ADMIN_PASSWORD, "next": back},
                    allow_redirects=False, timeout=10)
    assert ok.status_code == 303 and ok.headers["Location"].endswith(back)
    page = admin.get(appliance.url + back, timeout=10)
    assert page.status_code == 200 and "Your class list is back" in page.text
    assert re.search(r'<textarea id="c-names"[^>]*>zoe.quill\nyan.quill\n?</textarea>', page.text), page.text[-3000:]
    other = login(appliance.url)  # the same admin in another browser: not its form
    assert "quill" not in other.get(appliance.url + back, timeout=10).text

    attempt = re.search(r'name="attempt" value="([^"]+)"', page.text.split('id="new-class"', 1)[1]).group(1)
    made = admin.post(f"{appliance.url}/admin/users/class", data={"csrf": admin.csrf, "names": names,
                                                                  "attempt": attempt}, timeout=30)
    assert made.status_code == 200 and appliance.accounts.find("zoe.quill") is not None
    after = admin.get(appliance.url + back, timeout=10).text  # created: the kept list is gone
    assert re.search(r'<textarea id="c-names"[^>]*></textarea>', after) and "Your class list is back" not in after


def test_confirmation_belongs_to_its_session(appliance):
    """Confirming in one browser does not vouch for another left logged in elsewhere."""
    here, there = login(appliance.url), login(appliance.url)
    go_stale(appliance)
    assert here.post(f"{appliance.url}/api/confirm", json={"password": ADMIN_PASSWORD},
                     timeout=10).json()["confirmed"] is True
    data = {"csrf": there.csrf, "username": "lee", "password": "lee-password-1", "role": "student"}
    assert there.post(f"{appliance.url}/admin/users", data=data, allow_redirects=False, timeout=10).status_code == 403
    data["csrf"] = here.csrf
    assert here.post(f"{appliance.url}/admin/users", data=data, allow_redirects=False, timeout=10).status_code == 303


def test_a_script_is_told_in_json_and_confirms_through_the_api(appliance):
    admin = login(appliance.url)
    admin.headers["Accept"] = "application/json"
    go_stale(appliance)
    r = admin.post(f"{appliance.url}/admin/model/rollback", timeout=10)
    assert r.status_code == 403 and "/api/confirm" in r.json()["error"]
    assert admin.post(f"{appliance.url}/api/confirm", json={"password": "wrong-pw-123"}, timeout=10).status_code == 401
    assert admin.post(f"{appliance.url}/api/confirm", json=["not", "an", "object"], timeout=10).status_code == 400
    no_token = requests.post(f"{appliance.url}/api/confirm", json={"password": ADMIN_PASSWORD},
                             cookies=admin.cookies, timeout=10)
    assert no_token.status_code == 403  # CSRF: a page on another site cannot confirm for the admin
    ok = admin.post(f"{appliance.url}/api/confirm", json={"password": ADMIN_PASSWORD}, timeout=10)
    assert ok.status_code == 200 and ok.json() == {"confirmed": True, "valid_minutes": 15}
    r = admin.post(f"{appliance.url}/admin/model/rollback", timeout=10)
    assert r.status_code != 403 or "confirm" not in r.text.lower()  # past the check (no earlier model: refused as such)


def test_guessing_through_a_stolen_session_is_throttled_like_a_log_in(appliance):
    admin = login(appliance.url)
    go_stale(appliance)
    statuses = [admin.post(f"{appliance.url}/api/confirm", json={"password": f"guess-{i}-xx"}, timeout=10).status_code
                for i in range(6)]
    assert statuses[:3] == [401, 401, 401] and 429 in statuses[3:], statuses
    r = admin.post(f"{appliance.url}/api/confirm", json={"password": ADMIN_PASSWORD}, timeout=10)
    assert r.status_code == 429 and "Retry-After" in r.headers  # even the right password waits its turn


def test_a_fresh_log_in_counts_as_confirmed_and_zero_minutes_never_asks(make_appliance, cfg):
    appliance = make_appliance(config_mod.with_changes(cfg, {"web.confirm_password_minutes": 0}), with_loop=False)
    admin = login(appliance.url)
    go_stale(appliance, minutes=600)
    data = {"csrf": admin.csrf, "username": "ola", "password": "ola-password-1", "role": "student"}
    assert admin.post(f"{appliance.url}/admin/users", data=data, allow_redirects=False, timeout=10).status_code == 303


def test_sessions_from_before_the_upgrade_must_confirm(appliance):
    admin = login(appliance.url)
    appliance.store.execute("UPDATE sessions SET confirmed = 0")  # the migration's default for existing rows
    data = {"csrf": admin.csrf, "username": "pat", "password": "pat-password-1", "role": "student"}
    assert admin.post(f"{appliance.url}/admin/users", data=data, allow_redirects=False, timeout=10).status_code == 403
    fresh = login(appliance.url)  # logging in again is a confirmation too
    data["csrf"] = fresh.csrf
    assert fresh.post(f"{appliance.url}/admin/users", data=data, allow_redirects=False, timeout=10).status_code == 303


def test_in_a_browser_the_admin_confirms_and_comes_back_to_the_page(appliance, browser):
    from tests.conftest import browser_login

    context = browser.new_context()
    page = context.new_page()
    try:
        browser_login(page, appliance.url)
        page.goto(f"{appliance.url}/admin/users")
        go_stale(appliance)
        page.fill("#n-username", "noor")
        page.fill("#n-password", "noor-password-1")
        page.get_by_role("button", name="Add user").click()
        page.locator("#confirm-stale").wait_for()
        assert appliance.accounts.authenticate("noor", "noor-password-1") is None
        page.get_by_label("Password").fill(ADMIN_PASSWORD)
        page.get_by_role("button", name="Confirm").click()
        page.wait_for_url(f"{appliance.url}/admin/users")
        page.fill("#n-username", "noor")
        page.fill("#n-password", "noor-password-1")
        page.get_by_role("button", name="Add user").click()
        page.locator("text=Created student noor").wait_for()
    finally:
        context.close()


def test_deleting_someone_elses_photo_asks_for_the_password_and_ones_own_does_not(appliance):
    """An admin's browser left logged in must not delete a class's photos one by one (the
    Users page's "Delete data" asked already); a student's own photo needs no password."""
    sam = appliance.accounts.create_user("sam", "student-pw-123", "student")
    theirs, mine = (appliance.store.add_upload(sam.id, "me.jpg", 10, 10, []) for _ in range(2))
    admin, student = login(appliance.url), login(appliance.url, "sam", "student-pw-123")
    go_stale(appliance)

    def kept(upload_id: int) -> bool:
        return bool(appliance.store.query("SELECT 1 FROM uploads WHERE id = ?", (upload_id,)))

    r = admin.post(f"{appliance.url}/uploads/{theirs}/delete", data={"csrf": admin.csrf}, allow_redirects=False,
                   timeout=10)
    assert r.status_code == 403 and "Nothing was changed" in r.text and f'value="/uploads/{theirs}"' in r.text
    r = admin.delete(f"{appliance.url}/api/uploads/{theirs}", timeout=10)
    assert r.status_code == 403 and "/api/confirm" in r.json()["error"]
    assert kept(theirs) and appliance.store.query("SELECT COUNT(*) FROM audit")[0][0] == 0
    r = student.post(f"{appliance.url}/uploads/{mine}/delete", data={"csrf": student.csrf}, allow_redirects=False,
                     timeout=10)
    assert r.status_code == 303 and not kept(mine)
    assert admin.post(f"{appliance.url}/api/confirm", json={"password": ADMIN_PASSWORD}, timeout=10).ok
    assert admin.delete(f"{appliance.url}/api/uploads/{theirs}", timeout=10).status_code == 200 and not kept(theirs)


def test_a_kept_class_list_leaves_memory_when_its_time_is_up_without_another_request():
    """A class list kept over a password confirmation went only when a later form was kept:
    an admin who confirmed and walked away left up to a class of names in memory until then."""
    from edge_app.web.guard import OutcomeNotes
    from tests.conftest import wait_for

    kept = OutcomeNotes(keep_s=0.2, most=5)
    kept.add("session-secret", "/admin/users", '{"names": "anna\\nben"}')
    assert len(kept) == 1
    wait_for(lambda: len(kept) == 0, timeout=5, what="the kept list dropped by its timer")
