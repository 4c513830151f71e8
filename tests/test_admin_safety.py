"""Destructive admin actions ask first and every admin change is audited: over real HTTP
and in headless chromium (the confirmation page, Cancel, the audit page). Also the model
page read on a phone: a readable evaluation summary, its pictures, nothing off-screen."""
from __future__ import annotations

import json
import time

import pytest

from edge_app.vision.classifier import SHIPPED_MANIFEST
from tests.conftest import ADMIN_PASSWORD, login, wait_in_page

PW = "student-pw-123"


@pytest.fixture
def appliance(web_appliance):
    return web_appliance


def add_uploads(appliance, user, n: int, kept: int) -> None:
    face = {"box": [10, 10, 50, 50], "emotion": "neutral", "confidence": 0.9, "probabilities": {"neutral": 0.9},
            "engagement": "Engaged - paying attention"}
    for i in range(n):
        upload = appliance.store.add_upload(user.id, f"p{i}.jpg", 64, 64, [face, face])
        if i < kept:
            appliance.store.set_upload_image(upload, appliance.store.write_image(f"uploads/{upload}.jpg", b"jpeg"))


def audit_rows(html: str) -> list[str]:
    body = html.split('<table id="audit">', 1)[1].split("</tbody>", 1)[0]
    return [row.split("</tr>")[0] for row in body.split("<tr>")[2:]]


def test_deleting_asks_first_naming_what_is_lost(appliance):
    ann = appliance.accounts.create_user("ann", PW)
    add_uploads(appliance, ann, 3, kept=2)
    s = login(appliance.url)
    for action in ("delete-data", "delete"):
        r = s.post(f"{appliance.url}/admin/users/{ann.id}/{action}", data={"csrf": s.csrf}, timeout=10)
        assert r.status_code == 200 and 'id="confirm-delete"' in r.text
        losses = r.text.split('id="confirm-losses">', 1)[1].split("</ul>", 1)[0]
        assert "3 uploaded photos" in losses and "6 faces" in losses and "2 kept images" in losses
        assert ("account <strong>ann</strong>" in losses) == (action == "delete")
        assert "cannot be undone" in r.text
        # what an erasure request must still see to: it read as if nothing of ann stayed
        kept = r.text.split('id="confirm-kept">', 1)[1].split("</ul>", 1)[0]
        assert "audit log" in kept and "ann" in kept and "backups and CSV exports" in kept
        assert appliance.accounts.find("ann") is not None  # nothing happened yet
        assert appliance.store.query("SELECT COUNT(*) FROM uploads")[0][0] == 3
    # a forged confirmation from another session is still refused by its CSRF token
    r = s.post(f"{appliance.url}/admin/users/{ann.id}/delete", data={"csrf": "stale", "confirm": "yes"}, timeout=10)
    assert r.status_code == 403 and appliance.accounts.find("ann") is not None
    r = s.post(f"{appliance.url}/admin/users/{ann.id}/delete", data={"csrf": s.csrf, "confirm": "yes"}, timeout=10)
    assert "Deleted ann and 3 uploads" in r.text and appliance.accounts.find("ann") is None


def user_row(html: str, username: str) -> str:
    return html.split(f'<tr data-user="{username}">', 1)[1].split("</tr>", 1)[0]


def test_an_admin_deletes_their_own_photos_but_not_the_account_they_are_using(appliance):
    """An admin's own row: "their data" would name someone else, and the account they are
    logged in with is not theirs to delete or disable from here. Their own photos may go,
    asked first and audited like anyone's; the account and its session stay."""
    ann = appliance.accounts.create_user("ann", PW)
    admin = appliance.accounts.find("admin")
    add_uploads(appliance, admin, 2, kept=1)
    add_uploads(appliance, ann, 3, kept=0)
    s = login(appliance.url)
    page = s.get(f"{appliance.url}/admin/users", timeout=10).text
    mine, hers = user_row(page, "admin"), user_row(page, "ann")
    assert "(you)" in mine and ">Delete my photos</button>" in mine and "their data" not in mine
    assert "Delete user" not in mine and ">Disable<" not in mine and "Reset password" not in mine
    assert ">Delete their data<span class=\"sr-only\"> (ann)</span></button>" in hers and "Delete user" in hers and "my photos" not in hers

    r = s.post(f"{appliance.url}/admin/users/{admin.id}/delete-data", data={"csrf": s.csrf}, timeout=10)
    assert r.status_code == 200 and "<h1>Delete your own photos?</h1>" in r.text
    losses = r.text.split('id="confirm-losses">', 1)[1].split("</ul>", 1)[0]
    assert "2 uploaded photos" in losses and "1 kept image" in losses and "account" not in losses
    assert "you stay logged in" in r.text and ">Delete my photos</button>" in r.text and "their data" not in r.text
    assert appliance.store.query("SELECT COUNT(*) FROM uploads")[0][0] == 5  # asked, not done

    r = s.post(f"{appliance.url}/admin/users/{admin.id}/delete-data", data={"csrf": s.csrf, "confirm": "yes"},
               timeout=10)
    assert r.status_code == 200 and r.history and "Deleted 2 of your uploads" in r.text
    assert "/login" not in r.url and 'data-user="admin"' in r.text  # still logged in, on the users page
    owners = appliance.store.query("SELECT user_id, COUNT(*) FROM uploads GROUP BY user_id")
    assert [tuple(row) for row in owners] == [(ann.id, 3)]  # only their own went
    assert appliance.accounts.find("admin") is not None
    assert "deleted data of <strong>admin</strong>" in audit_rows(s.get(f"{appliance.url}/admin/audit",
                                                                        timeout=10).text)[0]

    # the account itself, even with a hand-made confirmation, is refused
    for action in ("delete", "disable"):
        r = s.post(f"{appliance.url}/admin/users/{admin.id}/{action}", data={"csrf": s.csrf, "confirm": "yes"},
                   timeout=10)
        assert "You cannot disable or delete your own account" in r.text
    assert appliance.accounts.find("admin") is not None and not appliance.accounts.find("admin").disabled


def test_the_audit_log_says_who_did_what_when(appliance):
    s = login(appliance.url)
    assert 'id="audit-empty"' in s.get(f"{appliance.url}/admin/audit", timeout=10).text
    before = time.time()
    act = lambda path, **data: s.post(f"{appliance.url}{path}", data={"csrf": s.csrf, **data}, timeout=10)  # noqa: E731
    act("/admin/users", username="bo", password=PW, role="admin")
    bo = appliance.accounts.find("bo")
    kim = appliance.accounts.create_user("kim", PW)
    act(f"/admin/users/{kim.id}/disable")
    act(f"/admin/users/{kim.id}/password", password="another-pw-1")
    act(f"/admin/users/{kim.id}/delete-data", confirm="yes")
    act(f"/admin/users/{kim.id}/delete")  # not confirmed: not done, not audited
    bo_session = login(appliance.url, "bo", PW)
    bo_session.post(f"{appliance.url}/admin/users/{kim.id}/delete", data={"csrf": bo_session.csrf, "confirm": "yes"},
                    timeout=10)
    page = s.get(f"{appliance.url}/admin/audit", timeout=10).text
    rows = audit_rows(page)
    assert len(rows) == 5, rows
    assert "bo" in rows[0].split("</td>")[1] and "deleted user <strong>kim</strong>" in rows[0]  # newest first
    assert "deleted data of <strong>kim</strong>" in rows[1] and "0 uploads" in rows[1]
    assert "reset password of <strong>kim</strong>" in rows[2] and "another-pw-1" not in page
    assert "disabled user <strong>kim</strong>" in rows[3]
    assert "created user <strong>bo</strong>" in rows[4] and "role admin" in rows[4]
    when = rows[4].split("<td>", 1)[1].split("</td>", 1)[0]
    assert abs(time.mktime(time.strptime(when, "%Y-%m-%d %H:%M:%S")) - before) < 60
    assert bo.is_admin
    student = login(appliance.url, "sam", PW) if appliance.accounts.create_user("sam", PW) else None
    assert student.get(f"{appliance.url}/admin/audit", timeout=10).status_code == 403  # admins only
    # a link past the last page (rows purged since) shows the last page, not "No admin has changed anything yet"
    past = s.get(f"{appliance.url}/admin/audit", params={"page": 4}, timeout=10).text
    assert len(audit_rows(past)) == 5 and "Page 1 of 1" in past and 'id="audit-empty"' not in past


def role_form(page: str, user_id: int) -> str:
    """The row's Change role form, as the page serves it (empty when there is none)."""
    start = page.find(f'action="/admin/users/{user_id}/role')
    return page[start:page.index("</form>", start)] if start >= 0 else ""


def test_an_admin_changes_a_role_keeping_the_uploads_and_a_demoted_admin_is_out_at_once(appliance):
    """A student made an instructor, an admin made a student: before, only deleting and
    recreating the account did it, which lost their uploads. Fewer rights end the user's
    open sessions at once; more rights leave them logged in. Audited like every action."""
    bo = appliance.accounts.create_user("bo", PW, "admin")
    ann = appliance.accounts.create_user("ann", PW)
    add_uploads(appliance, ann, 3, kept=1)
    s = login(appliance.url)
    del s.headers["X-CSRF-Token"]  # a browser's form carries only its hidden field
    bo_session, ann_session = login(appliance.url, "bo", PW), login(appliance.url, "ann", PW)
    assert bo_session.get(f"{appliance.url}/admin", timeout=10).status_code == 200

    page = s.get(f"{appliance.url}/admin/users", timeout=10).text
    assert 'name="role"' in role_form(page, ann.id) and ">Change role<" in role_form(page, ann.id)
    assert '<option value="student" selected>' in role_form(page, ann.id)
    assert role_form(page, appliance.accounts.find("admin").id) == ""  # not on the admin's own row

    r = s.post(f"{appliance.url}/admin/users/{ann.id}/role", data={"csrf": s.csrf, "role": "instructor"}, timeout=10)
    assert "The role of ann is now instructor." in r.text and r.history
    assert appliance.accounts.get(ann.id).role == "instructor"
    assert ann_session.get(f"{appliance.url}/api/state", timeout=10).status_code == 200  # more rights: still in
    assert appliance.store.query("SELECT COUNT(*) FROM uploads WHERE user_id = ?", (ann.id,))[0][0] == 3

    r = s.post(f"{appliance.url}/admin/users/{bo.id}/role", data={"csrf": s.csrf, "role": "student"}, timeout=10)
    assert "The role of bo is now student; their sessions ended" in r.text
    gone = bo_session.get(f"{appliance.url}/admin", allow_redirects=False, timeout=10)
    assert gone.status_code == 303 and "/login" in gone.headers["Location"]  # out at once, not at the next log-in
    assert bo_session.get(f"{appliance.url}/api/admin/today", timeout=10).status_code == 401
    again = login(appliance.url, "bo", PW)  # logged in again: a student now
    assert again.get(f"{appliance.url}/admin", allow_redirects=False, timeout=10).status_code == 403

    rows = audit_rows(s.get(f"{appliance.url}/admin/audit", timeout=10).text)
    assert "changed role of <strong>bo</strong>" in rows[0] and "admin to student" in rows[0]
    assert "changed role of <strong>ann</strong>" in rows[1] and "student to instructor" in rows[1]


def test_a_role_change_is_refused_for_oneself_without_csrf_or_a_confirmed_password(appliance):
    """The same guards as disabling: one's own role (a slip would lock the admin out of this
    page; another admin changes it), a forged form, a browser left logged in."""
    ann = appliance.accounts.create_user("ann", PW)
    admin = appliance.accounts.find("admin")
    s = login(appliance.url)
    r = s.post(f"{appliance.url}/admin/users/{admin.id}/role", data={"csrf": s.csrf, "role": "student"}, timeout=10)
    assert "You cannot change your own role: another admin changes it." in r.text
    assert appliance.accounts.get(admin.id).role == "admin"
    r = s.post(f"{appliance.url}/admin/users/{ann.id}/role", data={"csrf": "stale", "role": "admin"},
               headers={"X-CSRF-Token": "stale"}, timeout=10)
    assert r.status_code == 403 and appliance.accounts.get(ann.id).role == "student"
    r = s.post(f"{appliance.url}/admin/users/{ann.id}/role", data={"csrf": s.csrf, "role": "overlord"}, timeout=10)
    assert "Role of ann not changed: the role must be one of student, admin, instructor." in r.text
    appliance.store.execute("UPDATE sessions SET confirmed = confirmed - 3600")  # the password typed an hour ago
    r = s.post(f"{appliance.url}/admin/users/{ann.id}/role", data={"csrf": s.csrf, "role": "admin"},
               allow_redirects=False, timeout=10)
    assert r.status_code == 403 and "Confirm your password" in r.text
    assert appliance.accounts.get(ann.id).role == "student"
    assert not appliance.store.query("SELECT 1 FROM audit")


def test_a_deletion_says_one_upload_not_1_uploads(appliance):
    ann, bo = appliance.accounts.create_user("ann", PW), appliance.accounts.create_user("bo", PW)
    add_uploads(appliance, ann, 1, kept=0)
    add_uploads(appliance, bo, 1, kept=0)
    s = login(appliance.url)
    r = s.post(f"{appliance.url}/admin/users/{bo.id}/delete-data", data={"csrf": s.csrf, "confirm": "yes"}, timeout=10)
    assert "Deleted 1 upload and their images for bo." in r.text
    r = s.post(f"{appliance.url}/admin/users/{ann.id}/delete", data={"csrf": s.csrf, "confirm": "yes"}, timeout=10)
    assert "Deleted ann and 1 upload." in r.text
    rows = audit_rows(s.get(f"{appliance.url}/admin/audit", timeout=10).text)
    assert "student, 1 upload<" in rows[0] and ">1 upload<" in rows[1], rows


def test_the_users_page_says_its_engagement_is_from_uploaded_photos(appliance):
    """Its "Engaged share" and "Mostly" count faces in the photos each user uploaded; the
    desk's live engagement belongs to no account. The filter offered Absent, Distracted and
    Paused, which no uploaded face has: "?level=Paused" always read "No users match"."""
    ann = appliance.accounts.create_user("ann", PW)
    add_uploads(appliance, ann, 1, kept=0)
    s = login(appliance.url)
    page = s.get(f"{appliance.url}/admin/users", timeout=10).text
    head = page.split("<thead>", 1)[1].split("</thead>", 1)[0]
    assert "Engaged share (uploaded photos)" in head and "Mostly (uploaded photos)" in head
    note = page.split('id="users-uploads-only">', 1)[1].split("</p>", 1)[0]
    assert 'href="/admin"' in note and 'href="/admin/log"' in note and "live" in note
    select = page.split('id="u-level"', 1)[1].split("</select>", 1)[0]
    offered = [v for v in select.split('value="')[1:]]
    assert [v.split('"', 1)[0] for v in offered] == ["", "Engaged", "Partially engaged", "Not engaged", "none"]
    old_link = s.get(f"{appliance.url}/admin/users", params={"level": "Paused"}, timeout=10).text
    assert 'id="users-empty"' not in old_link and 'data-user="ann"' in old_link
    assert "'Paused' is no level a face in an uploaded photo has" in old_link.replace("&#039;", "'")


def test_settings_changes_are_audited_with_what_changed(appliance):
    from edge_app.web.admin_settings import SETTINGS

    s = login(appliance.url)
    form = {"csrf": s.csrf}
    for dotted, _, kind, _ in SETTINGS:
        section, key = dotted.split(".")
        value = getattr(getattr(appliance.cfg, section), key)
        if kind is bool:
            if value:
                form[dotted] = "on"
        else:
            form[dotted] = str(value)
    for emotion, level in appliance.cfg.engagement.mapping.items():
        form[f"map.{emotion}"] = level
    form["store.retention_days"] = "9"
    assert s.post(f"{appliance.url}/admin/settings", data=form, timeout=10).status_code == 200
    (row,) = audit_rows(s.get(f"{appliance.url}/admin/audit", timeout=10).text)
    assert "changed settings" in row and "store.retention_days" in row and "9" in row
    assert "engagement.mapping" not in row  # only what changed
    form["map.neutral"] = "Not engaged"  # one emotion's level: the audit names that one, not the whole mapping
    assert s.post(f"{appliance.url}/admin/settings", data=form, timeout=10).status_code == 200
    row = audit_rows(s.get(f"{appliance.url}/admin/audit", timeout=10).text)[0]
    assert "engagement.mapping.neutral" in row and "Not engaged" in row
    assert "contempt" not in row and "happiness" not in row


def test_model_page_summary_is_readable(appliance):
    """Headline accuracy, per-class recall as a table, the confusion matrix as numbers and
    the shipped pictures, from the manifest: no raw Python dicts."""
    raw = json.loads(SHIPPED_MANIFEST.read_text())
    official = raw["metrics"]["official"]
    s = login(appliance.url)
    page = s.get(f"{appliance.url}/admin/model", timeout=10).text
    assert "{'" not in page and "[[" not in page  # no repr() of the metrics
    assert page.split('id="accuracy">', 1)[1].startswith("%.1f%%" % (official["accuracy"] * 100))
    table = page.split('id="per-class"', 1)[1].split("</table>", 1)[0]
    for label in raw["labels"]:
        row = table.split(f'<th scope="row">{label}</th>', 1)[1].split("</tr>", 1)[0]
        assert row.startswith("<td>%.1f%%</td>" % (official["per_class"][label]["recall"] * 100)), row
    matrix = page.split('id="confusion"', 1)[1].split("</table>", 1)[0]
    cells = [int(c.split(">", 1)[1].split("<", 1)[0]) for c in matrix.split("<td")[1:]]
    assert cells == [n for row in official["confusion"] for n in row]
    for key in raw["metrics"]["plots"]:
        r = s.get(f"{appliance.url}/admin/model/plot/{key}", timeout=10)
        assert r.status_code == 200 and r.content.startswith(b"\x89PNG")
        assert f'src="/admin/model/plot/{key}"' in page
    assert s.get(f"{appliance.url}/admin/model/plot/nope", timeout=10).status_code == 404


# ------------------------------------------------------------ in the browser
def admin_page(browser, appliance, **kw):
    context = browser.new_context(**kw)
    page = context.new_page()
    page.set_default_timeout(15000)
    page.goto(f"{appliance.url}/login")
    page.get_by_label("User name").fill("admin")
    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_load_state()
    return context, page


def test_delete_user_in_the_browser_confirms_cancels_and_audits(browser, appliance, artifacts):
    ann = appliance.accounts.create_user("ann", PW)
    add_uploads(appliance, ann, 2, kept=1)
    context, page = admin_page(browser, appliance, viewport={"width": 1366, "height": 850})
    try:
        page.goto(f"{appliance.url}/admin/users")
        row = page.locator('tr[data-user="ann"]')
        row.locator("summary").click()
        row.get_by_role("button", name="Delete user").click()
        page.locator("#confirm").wait_for()
        assert "Delete the user ann?" in page.locator("h1").inner_text()
        assert "2 uploaded photos" in page.locator("#confirm-losses").inner_text()
        page.screenshot(path=str(artifacts / "confirm-delete.png"), full_page=True)
        page.locator("#confirm-cancel").click()
        page.wait_for_url("**/admin/users")
        assert appliance.accounts.find("ann") is not None
        row = page.locator('tr[data-user="ann"]')
        row.locator("summary").click()
        row.get_by_role("button", name="Delete user").click()
        page.locator("#confirm-delete").click()
        assert "Deleted ann" in page.locator("#users-done").inner_text()
        assert appliance.accounts.find("ann") is None
        page.get_by_role("navigation", name="Admin").get_by_role("link", name="Audit").click()
        first = page.locator("#audit tbody tr").first.inner_text()
        assert "admin" in first and "deleted user ann" in first
    finally:
        context.close()


def test_a_new_user_chooses_their_own_password_in_the_browser(browser, appliance, artifacts):
    """The Add a user form as an admin sees it (its box checked unless unticked), then the
    new student's first log-in: Your account first, then the page they asked for."""
    context, page = admin_page(browser, appliance, viewport={"width": 1366, "height": 850})
    student = browser.new_context(viewport={"width": 390, "height": 844})
    try:
        page.goto(f"{appliance.url}/admin/users")
        assert page.locator("#n-temporary").is_checked()
        page.locator("#n-username").fill("lee")
        page.locator("#n-password").fill("on-the-note-1")
        page.get_by_role("button", name="Add user").click()
        assert "they choose their own password" in page.locator("#users-done").inner_text()
        assert "(password not yet chosen)" in page.locator('tr[data-user="lee"]').inner_text()

        s = student.new_page()
        s.set_default_timeout(15000)
        s.goto(f"{appliance.url}/upload")
        s.get_by_label("User name").fill("lee")
        s.get_by_label("Password").fill("on-the-note-1")
        s.get_by_role("button", name="Log in").click()
        s.locator("#account-first").wait_for()
        s.screenshot(path=str(artifacts / "account-temporary-password.png"), full_page=True)
        s.get_by_label("Current password").fill("on-the-note-1")
        s.get_by_label("New password (at least 8 characters)").fill("lees-own-words-2")
        s.get_by_label("New password again").fill("lees-own-words-2")
        s.get_by_role("button", name="Change password").click()
        s.locator("#account-done").wait_for()
        s.locator("#account-continue").click()
        s.wait_for_url("**/upload")
        assert not appliance.accounts.find("lee").must_change_password
    finally:
        student.close()
        context.close()


def test_change_role_in_the_browser_and_a_name_without_letters_is_caught_in_the_form(browser, appliance):
    """Manage -> a role -> Change role, as the admin clicks it; the form's own name check
    (its pattern) refuses ".." before sending, and takes "a." as the server does."""
    appliance.accounts.create_user("ann", PW)
    context, page = admin_page(browser, appliance, viewport={"width": 1366, "height": 850})
    try:
        page.goto(f"{appliance.url}/admin/users")
        row = page.locator('tr[data-user="ann"]')
        row.get_by_text("Manage").click()
        row.get_by_label("Role of ann").select_option("instructor")
        row.get_by_role("button", name="Change role of ann").click()
        assert page.locator("#users-done").inner_text() == "The role of ann is now instructor."
        assert appliance.accounts.find("ann").role == "instructor"
        assert page.locator('tr[data-user="ann"] td').nth(1).inner_text() == "instructor"
        name = page.locator("#n-username")
        for typed, mismatch in (("..", True), ("-_.", True), ("a.", False), ("ann.k-2", False)):
            name.fill(typed)
            assert name.evaluate("e => e.validity.patternMismatch") is mismatch, typed
    finally:
        context.close()


@pytest.mark.parametrize("width, height", [(390, 844), (1366, 850)])
def test_model_page_fits_and_shows_its_pictures(browser, appliance, artifacts, width, height):
    context, page = admin_page(browser, appliance, viewport={"width": width, "height": height})
    try:
        page.goto(f"{appliance.url}/admin/model")
        for img in page.locator("#plots img").all():
            img.scroll_into_view_if_needed()
            wait_in_page(page, "img => img.complete && img.naturalWidth > 0", img.element_handle())
            assert img.bounding_box()["width"] <= width
        assert page.locator("#plots img").count() == 2
        assert page.evaluate("document.documentElement.scrollWidth") <= width  # nothing off to the side
        box = page.locator("#confusion").bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= width  # the matrix itself fits, no sideways scrolling
        assert page.get_by_role("button", name="Check and install").is_visible()
        page.screenshot(path=str(artifacts / f"admin-model-{width}.png"), full_page=True)
    finally:
        context.close()
