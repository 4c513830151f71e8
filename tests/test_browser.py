"""The web UI in a real headless browser: Playwright driving Debian's chromium.

One appliance (demo camera source, real server on loopback) and one browser for the
module; each test gets its own browser context (its own cookies). Screenshots of the
main pages go to test-artifacts/screenshots/."""
from __future__ import annotations

import csv
import io
import re
import time

import bottle
import pytest

from edge_app import config as config_mod
from edge_app.engagement import GROUPS
from tests.conftest import ADMIN_PASSWORD, browser_login, module_appliance, wait_for, wait_in_page

STUDENT, STUDENT_PW = "lea", "lea-password-1"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with module_appliance(tmp_path_factory, "browser") as appliance:
        appliance.accounts.create_user(STUDENT, STUDENT_PW, "student")
        yield appliance


@pytest.fixture
def shots(artifacts):
    d = artifacts / "screenshots"
    d.mkdir(parents=True, exist_ok=True)
    return d


@pytest.fixture
def new_page(browser, server):
    contexts = []

    def make(username="admin", password=ADMIN_PASSWORD, **kw):
        context = browser.new_context(accept_downloads=True, **kw)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(15000)
        errors = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.console_errors = errors
        if username:
            browser_login(page, server.url, username, password)
            assert "/login" not in page.url, page.content()
        return page

    yield make
    for c in contexts:
        c.close()


def test_login_page_refuses_a_wrong_password(new_page, server, shots):
    page = new_page(None)
    page.goto(f"{server.url}/admin")
    assert "/login" in page.url  # an admin page sends anonymous users to log in
    page.get_by_label("User name").fill("admin")
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Log in").click()
    assert "Wrong user name or password" in page.locator("#login-error").inner_text()
    page.screenshot(path=str(shots / "login-error.png"), full_page=True)


def test_no_page_load_asks_for_an_icon_that_is_not_there(new_page, server):
    """Chromium asks for /favicon.ico when a page links no icon (a JSON answer such as
    /healthz, an error page): a 404 there was an error in the console of each such load,
    and a line in a school proxy's log. Nothing is logged in: the log-in page is where a
    browser first asks."""
    served: list[int] = []

    def record():
        if bottle.request.path == "/favicon.ico":
            served.append(bottle.response.status_code)

    server.app.add_hook("after_request", record)  # what the server answered the browser
    try:
        page = new_page(None)
        page.goto(f"{server.url}/login")
        page.goto(f"{server.url}/healthz")
        wait_for(lambda: page.evaluate("0") or served or page.console_errors,  # evaluate: lets the events in
                 what="the browser's request for /favicon.ico")
        page.evaluate("0")
        assert set(served) == {200} and not page.console_errors, (served, page.console_errors)
    finally:
        server.app.remove_hook("after_request", record)


def test_a_deleted_students_name_stays_out_of_the_address_and_history(new_page, server):
    """The outcome of deleting a user names them. It is shown on the page the form leads
    back to, but no address the browser asked for (its history, a proxy's access log)
    holds the name: only an id that shows the message to this session alone."""
    server.accounts.create_user("anna.schmidt", STUDENT_PW, "student")
    page = new_page()
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url))
    page.goto(f"{server.url}/admin/users")
    row = page.locator('tr[data-user="anna.schmidt"]')
    row.get_by_text("Manage").click()
    row.get_by_role("button", name="Delete user").click()
    with page.expect_navigation() as deleted:
        page.locator("#confirm-delete").click()
    assert deleted.value.request.method == "GET"  # post, redirect, get
    assert page.locator("#users-done").inner_text() == "Deleted anna.schmidt and 0 uploads."
    assert "anna" not in page.url and not [u for u in asked if "anna" in u.lower()], asked
    assert "/admin/users?note=" in page.url
    history = page.evaluate("history.length")
    page.reload()  # a reload still says what happened
    assert page.locator("#users-done").inner_text() == "Deleted anna.schmidt and 0 uploads."
    assert page.evaluate("history.length") == history and "anna" not in page.url
    other = new_page()  # another admin opening the same address is told nothing
    other.goto(page.url)
    assert other.locator("#users-done").count() == 0 and "anna.schmidt" not in other.content()
    assert not page.console_errors, page.console_errors


def test_upload_a_face_photo_and_see_the_table(new_page, server, grace_path, shots):
    page = new_page(STUDENT, STUDENT_PW)
    page.goto(f"{server.url}/upload")
    page.get_by_label("Photo").set_input_files(str(grace_path))
    page.get_by_role("button", name="Analyse").click()
    table = page.locator("#faces")
    table.wait_for()
    assert table.locator("tbody tr").count() >= 1
    row = table.locator("tbody tr").first
    assert row.locator("img.face").evaluate("img => img.naturalWidth") > 0  # the face thumbnail
    levels = set(server.cfg.engagement.mapping.values())
    assert row.locator(".pill").inner_text() in levels
    row.locator("summary").click()  # expand: every class probability
    assert row.locator(".probs li").count() == len(server.classifier.labels)
    assert page.locator("img.preview").evaluate("img => img.naturalWidth") > 0
    assert "/uploads/" in page.url  # the result's own page (post/redirect/get)
    page.screenshot(path=str(shots / "upload-results.png"), full_page=True)
    page.get_by_role("link", name="Back to your photos").click()
    assert "grace_hopper.jpg" in page.locator("#history").inner_text()
    assert page.inner_text("#history-zone") == f"({time.strftime('%Z')})"  # the device's zone, as the log's
    assert not page.console_errors, page.console_errors  # e.g. nothing blocked by the CSP


def test_a_student_takes_photos_back(new_page, server, face_jpeg, tmp_path, shots):
    server.accounts.create_user("max", STUDENT_PW, "student")  # their own history: the module's others stay as they are
    page = new_page("max", STUDENT_PW)

    def analyse(name: str) -> None:
        photo = tmp_path / name
        photo.write_bytes(face_jpeg)
        page.goto(f"{server.url}/upload")
        page.get_by_label("Photo").set_input_files(str(photo))
        page.get_by_role("button", name="Analyse").click()
        page.locator("#faces").wait_for()

    analyse("take-me-back.jpg")
    page.goto(f"{server.url}/upload")
    page.locator("#history").get_by_role("link", name="take-me-back.jpg").click()  # its stored result page
    page.get_by_text("Delete this photo").click()  # a disclosure first: one click does not delete
    page.get_by_role("button", name="Delete it for good").click()
    assert page.locator("#upload-done").inner_text() == "The photo and its results were deleted."
    assert "take-me-back.jpg" not in page.locator("main").inner_text()
    analyse("one.jpg")
    analyse("two.jpg")
    page.goto(f"{server.url}/upload")
    page.get_by_text("Delete all my photos").click()
    page.get_by_role("button", name="Delete all 2 for good").click()
    assert page.locator("#upload-done").inner_text() == "All your photos and their results were deleted."
    assert page.locator("#history").count() == 0
    max_id = server.accounts.find("max").id
    assert server.store.query("SELECT COUNT(*) FROM uploads WHERE user_id = ?", (max_id,))[0][0] == 0
    assert not page.console_errors, page.console_errors
    page.screenshot(path=str(shots / "upload-deleted.png"), full_page=True)


def test_back_and_reload_after_an_upload_show_its_result_without_sending_the_photo_again(new_page, server,
                                                                                        face_jpeg, tmp_path):
    """The result was the answer to the form's POST: Back to it from another page showed
    Chrome's "Confirm Form Resubmission" (ERR_CACHE_MISS), and a reload sent the photo
    again. The POST now leads to the result's own page (post/redirect/get): Back and reload
    show it, and nothing is sent or stored again."""
    server.accounts.create_user("noa", STUDENT_PW, "student")
    noa = server.accounts.find("noa").id
    page = new_page("noa", STUDENT_PW)
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    photo = tmp_path / "once.jpg"
    photo.write_bytes(face_jpeg)
    page.goto(f"{server.url}/upload")
    page.get_by_label("Photo").set_input_files(str(photo))
    page.get_by_role("button", name="Analyse").click()
    page.locator("#faces").wait_for()
    stored = server.store.query("SELECT id FROM uploads WHERE user_id = ?", (noa,))
    assert len(stored) == 1 and page.url == f"{server.url}/uploads/{stored[0]['id']}"
    assert len(posts) == 1
    page.reload()
    page.goto(f"{server.url}/live")
    shown = page.go_back()  # to the result
    assert shown is not None and shown.ok and shown.request.method == "GET"
    assert page.url == f"{server.url}/uploads/{stored[0]['id']}"
    assert page.locator("#faces tbody tr").count() >= 1  # its result, from the stored rows
    assert len(posts) == 1, posts  # the form was never sent again
    assert server.store.query("SELECT COUNT(*) FROM uploads WHERE user_id = ?", (noa,))[0][0] == 1
    page.goto(f"{server.url}/upload")  # a new form is a new photo
    page.get_by_label("Photo").set_input_files(str(photo))
    page.get_by_role("button", name="Analyse").click()
    page.locator("#faces").wait_for()
    assert server.store.query("SELECT COUNT(*) FROM uploads WHERE user_id = ?", (noa,))[0][0] == 2
    assert not page.console_errors, page.console_errors


def test_a_photo_over_the_limit_is_refused_before_it_is_sent(make_appliance, cfg, browser):
    """A 40 MB photo took minutes to send over school Wi-Fi, and the device, reading no more
    than its limit of it, closed the connection: "connection reset", not why. The page knows
    the limit and says it at once; nothing goes to the device. (A 1 MB limit: the test's
    files cross Playwright's pipe, 10 MB of them took 20 s on a loaded machine.)"""
    app = make_appliance(config_mod.load(None, {"store.data_dir": cfg.store.data_dir, "web.port": 0, "web.max_upload_mb": 1,
                                                "indicators.backend": "none", "store.reserve_mb": 1}), with_loop=False)
    app.accounts.create_user(STUDENT, STUDENT_PW, "student")
    context = browser.new_context()
    try:
        page = context.new_page()
        page.set_default_timeout(15000)
        browser_login(page, app.url, STUDENT, STUDENT_PW)
        page.goto(f"{app.url}/upload")
        posts: list = []
        page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
        most = int(page.locator("#upload-form").get_attribute("data-max-bytes"))
        assert most == 1048576  # the device's own limit (web.max_upload_mb)
        page.get_by_label("Photo").set_input_files({"name": "huge.jpg", "mimeType": "image/jpeg",
                                                    "buffer": b"\xff\xd8\xff" + b"\0" * (most - 2)})
        page.get_by_role("button", name="Analyse").click()
        error = page.locator("#upload-error")
        error.wait_for()
        assert "the photo is 1.0 MB; the limit is 1 MB" in error.inner_text() and "Accepted" in error.inner_text()
        assert page.locator("#image").get_attribute("aria-invalid") == "true"
        wait_in_page(page, "document.activeElement && document.activeElement.id === 'image'")
        assert posts == [] and page.url == f"{app.url}/upload"
        page.get_by_label("Photo").set_input_files({"name": "fits.jpg", "mimeType": "image/jpeg",
                                                    "buffer": b"\xff\xd8\xff" + b"\0" * (most - 3)})
        # the limit itself goes, and the device judges it; the test waits for that answer, as a
        # context closed with the upload still in flight hung Chromium for minutes on a loaded machine
        with page.expect_response(lambda r: r.request.method == "POST" and r.url.endswith("/upload"), timeout=60000) as answer:
            page.get_by_role("button", name="Analyse").click()
        assert answer.value.status == 400  # zeros after a JPEG header: the device read it all and says it is damaged
        page.locator("#upload-error", has_text="the JPEG file is incomplete or damaged").wait_for()
    finally:
        context.close()


def test_a_bad_upload_shows_its_error(new_page, server, tmp_path, shots):
    bad = tmp_path / "holiday.jpg"
    bad.write_text("this is a text file with a .jpg name")
    page = new_page(STUDENT, STUDENT_PW)
    page.goto(f"{server.url}/upload")
    page.get_by_label("Photo").set_input_files(str(bad))
    page.get_by_role("button", name="Analyse").click()
    error = page.locator("#upload-error")
    error.wait_for()
    text = error.inner_text()
    assert "not a JPEG, PNG or WebP image" in text and "Accepted" in text
    assert page.locator("#faces").count() == 0
    # as on the log-in page: the field says it is wrong and why, and the keyboard is on it to choose again
    field = page.locator("#image")
    assert field.get_attribute("aria-invalid") == "true"
    assert field.get_attribute("aria-describedby") == "upload-error"
    wait_in_page(page, "document.activeElement && document.activeElement.id === 'image'")
    page.screenshot(path=str(shots / "upload-error.png"), full_page=True)


def test_live_page_shows_frames_and_the_timeline(new_page, server, shots):
    # a browser in another zone than the device (UTC+14): the chart tells the device's time, as
    # its log and quiet hours do; it drew the browser's ("from 02:50" beside the log's 01:50)
    page = new_page(timezone_id="Pacific/Kiritimati")  # an admin: the picture is theirs (privacy.live_video)
    page.goto(f"{server.url}/live")
    wait_in_page(page, "document.getElementById('stream').naturalWidth > 0", timeout=15)
    assert page.locator("#stream").evaluate("img => img.naturalWidth") == server.cfg.camera.width
    wait_in_page(page, "document.getElementById('timeline-svg') !== null")
    assert page.locator("#state").inner_text() not in ("", "no camera loop")
    wait_in_page(page, "Number(document.getElementById('timeline').dataset.segments) > 0", timeout=15)
    labels = set(page.locator("#timeline-svg text").evaluate_all("els => els.map(e => e.textContent)"))
    now = time.time()
    device = {time.strftime("%H:%M", time.localtime(now - m)) for m in range(-60, 15 * 60)}
    assert labels & device and not labels - device - {"now"} - {str(g) for g in GROUPS}, labels
    # the chart in words for a screen reader: the time in each level, the latest change in the device's time
    assert page.inner_text("#timeline-zone") == f"({time.strftime('%Z')})"  # the device's, not the browser's
    words = page.get_attribute("#timeline", "aria-label")
    latest = re.fullmatch(r"Last 10 minutes: (.+)\. Latest change: (.+) at (\d\d:\d\d) \(the device's time, .+\)\.", words)
    assert latest and latest.group(3) in device, words
    spans = dict(re.fullmatch(r"(.+) (\d+ (?:s|min))", part).groups() for part in latest.group(1).split(", "))
    assert latest.group(2) in spans, words  # the level it changed to has its time
    page.screenshot(path=str(shots / "live.png"), full_page=True)
    # a student's account sees the state and the chart, not whoever sits at the desk now
    student = new_page(STUDENT, STUDENT_PW)
    student.goto(f"{server.url}/live")
    wait_in_page(student, "Number(document.getElementById('timeline').dataset.segments) > 0", timeout=15)
    assert student.locator("#stream").count() == 0 and "admins only" in student.locator("#no-stream").inner_text()
    # ... from their log-in on: the desk is shared, its minutes before are another student's
    own = student.get_attribute("#timeline", "aria-label")
    since = re.match(r"Since you logged in at (\d\d:\d\d): ", own)
    assert since and since.group(1) in device, own
    assert student.locator("#own-from").count() == 1 and student.locator("#timeline-own").is_visible()
    assert page.locator("#own-from").count() == 0 and page.locator("#timeline-own").count() == 0
    assert student.console_errors == []


def test_admin_filters_the_log_and_downloads_csv(new_page, server, face_jpeg, shots):
    # data: a student's upload and the live loop's state changes
    face = {"box": [1, 2, 3, 4], "emotion": "sadness", "confidence": 0.6, "probabilities": {"sadness": 0.6},
            "engagement": "Not engaged"}
    lea = server.accounts.find(STUDENT)
    server.store.add_upload(lea.id, "lea.jpg", 10, 10, [face])
    server.store.log_state_change(time.time(), "Engaged - paying attention", "Engaged", "neutral", 0.9)
    page = new_page()
    page.goto(f"{server.url}/admin")
    page.screenshot(path=str(shots / "admin-dashboard.png"), full_page=True)
    page.get_by_role("navigation", name="Admin").get_by_role("link", name="Log").click()
    page.get_by_label("User").select_option(STUDENT)
    page.get_by_label("Engagement").select_option("Not engaged")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**/admin/log?*")
    assert "level=Not+engaged" in page.url and f"user={STUDENT}" in page.url
    rows = page.locator("#log tbody tr")
    assert rows.count() >= 1
    for i in range(rows.count()):
        assert STUDENT in rows.nth(i).inner_text() and "Not engaged" in rows.nth(i).inner_text()
    assert page.inner_text("#log-zone") == f"({time.strftime('%Z')})"  # the times' zone: the device's local one
    page.screenshot(path=str(shots / "admin-log.png"), full_page=True)
    with page.expect_download() as info:
        page.locator("#csv").click()
    download = info.value
    text = open(download.path(), encoding="utf-8-sig").read()
    got = list(csv.DictReader(io.StringIO(text)))
    assert len(got) == rows.count()
    assert all(r["user"] == STUDENT and r["group"] == "Not engaged" for r in got)
    for path, name in (("/admin/users", "admin-users"), ("/admin/settings", "admin-settings"),
                       ("/admin/model", "admin-model")):
        page.goto(server.url + path)
        page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
    assert not page.console_errors, page.console_errors


def test_a_log_date_that_is_not_a_day_is_shown_to_the_admin_to_fix(new_page, server, shots):
    """Chromium's date field shows nothing for a value that is not YYYY-MM-DD (a link or a
    bookmark with "31/01/2026"): the admin saw "Filter not applied" and two empty fields.
    The page names what the field held, marks and focuses it; picking a day there applies
    the filter. A day without leading zeros is the filter's day, shown in its field."""
    page = new_page()
    response = page.goto(f"{server.url}/admin/log?from=31/01/2026&to=2026-1-5&user={STUDENT}")
    assert response.status == 400
    assert "From '31/01/2026' is not a date like 2026-01-31" in page.locator("#log-error").inner_text()
    field = page.get_by_label("From", exact=True)
    assert field.input_value() == "" and field.get_attribute("aria-invalid") == "true"
    note = page.locator("#f-from-bad")
    assert note.is_visible() and "From was '31/01/2026', which is not a date" in note.inner_text()
    assert page.get_by_label("To", exact=True).input_value() == "2026-01-05"  # shown, not blanked
    assert page.get_by_label("User").input_value() == STUDENT
    wait_in_page(page, "document.activeElement && document.activeElement.id === 'f-from'")
    page.screenshot(path=str(shots / "admin-log-bad-date.png"), full_page=True)
    field.fill("2026-01-01")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**from=2026-01-01**")
    assert "to=2026-01-05" in page.url and f"user={STUDENT}" in page.url
    assert page.locator("#log-error").count() == 0 and page.locator("#f-from-bad").count() == 0
    assert page.get_by_label("From", exact=True).input_value() == "2026-01-01"
    assert all("status of 400" in e for e in page.console_errors), page.console_errors  # only the refused load


def test_a_student_is_refused_an_admin_page(new_page, server, shots):
    page = new_page(STUDENT, STUDENT_PW)
    assert page.get_by_role("link", name="Admin").count() == 0  # not offered in the navigation
    response = page.goto(f"{server.url}/admin/log")
    assert response.status == 403
    assert "admins only" in page.locator("main").inner_text()
    page.screenshot(path=str(shots / "student-refused.png"), full_page=True)


def test_pages_fit_a_phone_in_portrait(new_page, server, shots, face_jpeg):
    from tests.conftest import login

    # a file name of 120 letters and no space (a phone's "IMG_..." can be long): the result's title
    # ran 1,600 px off the side of a phone, and off a laptop's too
    sent = login(server.url).post(f"{server.url}/api/analyze", files={"image": ("a" * 120 + ".jpg", face_jpeg)},
                                  timeout=60).json()
    page = new_page(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True, has_touch=True)
    for path in ("/upload", "/live", "/admin", "/admin/log", "/admin/users", "/admin/settings",
                 f"/uploads/{sent['upload_id']}"):
        page.goto(server.url + path)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1, f"{path} is {overflow}px wider than the phone"
    page.goto(server.url + "/upload")
    page.screenshot(path=str(shots / "phone-upload.png"), full_page=True)


def test_two_admins_saving_settings_keep_each_others_changes(new_page, server):
    """Two admins open Settings; each changes one setting and saves. The second form still
    carries what the page said before the first save: saving it must change only what its
    admin changed, not put back the first admin's setting unseen. A reload of the page a
    save led to asks nothing and sends nothing again (the save ends on a GET)."""
    ann, bob = new_page(), new_page()
    for page in (ann, bob):
        page.goto(f"{server.url}/admin/settings")
    before_hours, before_alert = server.cfg.indicators.quiet_hours, server.cfg.indicators.buzzer_after_s
    ann.get_by_label("Quiet hours").fill("21:30-06:45" if before_hours != "21:30-06:45" else "20:00-06:00")
    with ann.expect_navigation() as saved:
        ann.get_by_role("button", name="Save settings").click()
    assert saved.value.request.method == "GET"  # post, redirect, get: a reload does not send the form again
    assert "Saved" in ann.locator("#settings-done").inner_text()
    hours = ann.get_by_label("Quiet hours").input_value()
    assert server.cfg.indicators.quiet_hours == hours != before_hours
    bob.get_by_label("Alert after (seconds)").fill(str(before_alert + 7))
    bob.get_by_role("button", name="Save settings").click()
    assert "Saved" in bob.locator("#settings-done").inner_text()
    assert server.cfg.indicators.buzzer_after_s == before_alert + 7
    assert server.cfg.indicators.quiet_hours == hours  # ann's change stands
    assert bob.get_by_label("Quiet hours").input_value() == hours  # and bob's page now shows it


def test_two_admins_changing_the_same_setting_are_told(new_page, server):
    """Both change the same setting: the later save is refused with both values named and
    the admin's own input kept on the page; saving again then goes through."""
    ann, bob = new_page(), new_page()
    for page in (ann, bob):
        page.goto(f"{server.url}/admin/settings")
    days = server.cfg.store.retention_days
    ann.get_by_label("Keep data for (days)").fill(str(days + 1))
    ann.get_by_role("button", name="Save settings").click()
    ann.locator("#settings-done").wait_for()
    bob.get_by_label("Keep data for (days)").fill(str(days + 2))
    bob.get_by_role("button", name="Save settings").click()
    error = bob.locator("#settings-error").inner_text()
    assert "another admin" in error.lower() and "Keep data for (days)" in error and str(days + 1) in error
    assert server.cfg.store.retention_days == days + 1
    assert bob.get_by_label("Keep data for (days)").input_value() == str(days + 2)  # what bob typed is kept
    bob.get_by_role("button", name="Save settings").click()  # bob has seen it and saves his own
    bob.locator("#settings-done").wait_for()
    assert server.cfg.store.retention_days == days + 2


def test_a_form_sent_after_the_session_ended_says_it_was_not_saved(new_page, server, grace_path):
    """A student picks a photo and sends it, and the session ends (idle too long) before it
    arrives: the log-in page must say why it is there and that the photo was not analysed;
    it showed a bare log-in form, and once logged in the upload page as if nothing had been sent."""
    page = new_page(STUDENT, STUDENT_PW, viewport={"width": 390, "height": 844}, is_mobile=True)
    page.goto(f"{server.url}/upload")
    page.get_by_label("Photo").set_input_files(str(grace_path))
    # the photo on its way (a slow upload) when the header's state poll meets the ended session:
    # the poll went to the log-in page itself and cut the form's answer short (1 run in 3 under load)
    sending: list = []
    page.route("**/upload", lambda route: sending.append(route) if route.request.method == "POST"
               else route.continue_())
    with page.expect_request(lambda r: r.method == "POST" and r.url.endswith("/upload")):
        page.get_by_role("button", name="Analyse").click(no_wait_after=True)  # its answer is held back
    lea = server.accounts.find(STUDENT)
    with page.expect_response(lambda r: r.url.endswith("/api/state") and r.status == 401):
        server.store.execute("UPDATE sessions SET last_seen = last_seen - ? WHERE user_id = ?",
                             (server.accounts.idle_s + 5, lea.id))
    assert len(sending) == 1, "the form's request is held by the route"
    sending[0].continue_()
    page.wait_for_url(lambda url: "/login" in url)
    notice = page.locator("#login-ended").inner_text()
    assert "session ended" in notice and "not saved" in notice
    page.get_by_label("User name").fill(STUDENT)
    page.get_by_label("Password").fill(STUDENT_PW)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/upload")  # back where the form was, ready to send it again
    assert page.locator("#login-ended").count() == 0


def test_an_ended_session_is_told_apart_from_never_logged_in(new_page, server):
    page = new_page(None)
    page.goto(f"{server.url}/live")
    assert page.locator("#login-ended").count() == 0  # nobody was logged in here: nothing ended
    page = new_page(STUDENT, STUDENT_PW)
    # off the page the log-in led to: its state poll would meet the ended session too and go to
    # the log-in page itself, interrupting the navigation below (1 run in 40 under load)
    page.goto("about:blank")
    lea = server.accounts.find(STUDENT)
    server.store.execute("UPDATE sessions SET last_seen = last_seen - ? WHERE user_id = ?",
                         (server.accounts.idle_s + 5, lea.id))
    page.goto(f"{server.url}/live")
    assert "session ended" in page.locator("#login-ended").inner_text()
    assert "not saved" not in page.locator("#login-ended").inner_text()  # only a page was asked for


def test_a_page_left_open_past_the_session_says_the_session_ended(new_page, server):
    """The header's state poll is what meets an ended session on a page left open: it went
    to a bare log-in page, as if the student had never been logged in (and it raced the
    next click to the log-in page, which then said nothing either)."""
    page = new_page(STUDENT, STUDENT_PW)
    page.goto(f"{server.url}/upload")
    lea = server.accounts.find(STUDENT)
    server.store.execute("UPDATE sessions SET last_seen = last_seen - ? WHERE user_id = ?",
                         (server.accounts.idle_s + 5, lea.id))
    page.wait_for_url(lambda url: "/login" in url)  # by the poll alone: no click
    assert "session ended" in page.locator("#login-ended").inner_text()
    assert "next=/upload" in page.url


def test_an_open_live_page_does_not_keep_its_session_alive(new_page, server):
    """The live page polls the state each second and the timeline every 5 s, and its stream
    re-checks the session each second: each of them restarted the idle timer, so a page left
    open never timed out (a classroom computer stayed logged in for 12 h). Now the page, left
    alone, goes to the log-in page once the idle time is up."""
    page = new_page()  # an admin: the stream is theirs to watch (privacy.live_video)
    page.goto(f"{server.url}/live")
    wait_in_page(page, "document.getElementById('stream').naturalWidth > 0")
    idle = server.accounts.idle_s
    server.accounts.idle_s = 2.0
    try:
        page.wait_for_url(lambda url: "/login" in url, timeout=12000)  # by the page's own polls alone
    finally:
        server.accounts.idle_s = idle
    assert "session ended" in page.locator("#login-ended").inner_text() and "next=/live" in page.url


def test_a_refused_setting_is_named_as_the_form_names_it_and_gets_the_focus(new_page, server):
    """The error named the config file's key ('engagement.absent_after_s = -5.0 is not
    allowed') beside a form that calls it 'Absent after (seconds)', and left the focus at
    the top of the page: the field at fault is named by its label, marked and focused."""
    page = new_page()
    page.goto(f"{server.url}/admin/settings")
    field = page.get_by_label("Absent after (seconds)")
    field.fill("-5")
    page.get_by_role("button", name="Save settings").click()
    error = page.locator("#settings-error").inner_text()
    assert error.startswith("Nothing saved: Absent after (seconds): ") and "engagement." not in error
    assert field.get_attribute("aria-invalid") == "true" and field.input_value() == "-5"
    # autofocus lands when the browser next renders the page: wait for it, do not race it
    wait_in_page(page, "document.activeElement && document.activeElement.id === 'engagement-absent_after_s'")
    assert "settings-error" in field.get_attribute("aria-describedby").split()
    page.get_by_label("Absent after (seconds)").fill(str(server.cfg.engagement.absent_after_s))
    page.get_by_label("anger").fill("Cross")
    page.get_by_role("button", name="Save settings").click()
    assert page.locator("#settings-error").inner_text().startswith("Nothing saved: anger: 'Cross' is not allowed")
    wait_in_page(page, "document.activeElement && document.activeElement.id === 'map-anger'")


@pytest.fixture
def idle_page(make_appliance, browser):
    """Factory: a student's /upload page on a device of its own, and ``later(seconds)``, which
    moves the page's clock (Playwright's) and the device's session clock on together (with
    ``page_too=False``, the device's alone: a laptop asleep). ``accounts``: Accounts
    attributes to set first (``max_age_s``)."""
    contexts = []

    def make(**accounts):
        appliance = make_appliance(with_loop=False)
        appliance.accounts.create_user(STUDENT, STUDENT_PW, "student")
        for name, value in accounts.items():
            setattr(appliance.accounts, name, value)
        ahead = [0.0]  # how far the test moved the device's session clock on
        appliance.accounts.wall = lambda: time.time() + ahead[0]
        appliance.accounts.monotonic = lambda: time.monotonic() + ahead[0]
        context = browser.new_context()
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(15000)
        page.clock.install()
        browser_login(page, appliance.url, STUDENT, STUDENT_PW)
        page.goto(f"{appliance.url}/upload")

        def later(seconds: float, page_too: bool = True) -> None:
            ahead[0] += seconds
            if page_too:
                page.clock.fast_forward(int(seconds * 1000))

        return appliance, page, later

    yield make
    for context in contexts:
        context.close()


def test_an_idle_page_warns_a_minute_before_its_log_in_ends_and_can_keep_it(idle_page, tmp_path):
    """/upload left unused past web.session_idle_minutes turned into "Log in - Your session
    ended" with no warning, the chosen photo lost (WCAG 2.2.1). A minute before, it says so
    with "Stay logged in", which restarts the idle timer on the device as the user's own doing.
    The page's clock and the device's session clock are both moved on by the test."""
    appliance, page, later = idle_page()
    idle = appliance.accounts.idle_s
    photo = tmp_path / "me.jpg"
    photo.write_bytes(b"\xff\xd8\xff")
    page.get_by_label("Photo").set_input_files(str(photo))
    warning = page.locator("#idle-warning")
    later(idle - 75)
    assert warning.inner_text().strip() == "", "warned too early"
    later(15)  # a minute left: at least 20 s of warning, as WCAG 2.2.1 asks
    wait_in_page(page, "document.getElementById('idle-warning').textContent.includes('logged out in 1 minute')")
    assert "the device's time)" in warning.inner_text()  # when, by the device's clock, not the laptop's zone
    assert warning.get_attribute("role") == "status"  # told politely, the focus left where it was
    page.get_by_role("button", name="Stay logged in").click()
    wait_in_page(page, "document.getElementById('idle-warning').textContent === ''")
    later(120)  # past the first deadline: the click kept the log-in on the device
    assert page.evaluate("fetch('/api/session').then(r => r.status)") == 200
    assert "/upload" in page.url and page.get_by_label("Photo").evaluate("f => f.files.length") == 1
    later(idle)  # left alone again: the page, asked, finds it ended and shows the log-in and why
    page.wait_for_url(lambda url: "/login" in url)
    assert "session ended" in page.locator("#login-ended").inner_text()


def test_an_idle_warning_follows_the_sessions_time_on_the_device_not_the_pages_own_count(idle_page):
    """The page counted from its own load: with the same log-in used in another tab since, it
    warned of a log-out that was not coming (and, the warning's time up, took the idle time
    from then on, past the session's real end). It asks the device how long is left."""
    appliance, page, later = idle_page()
    idle = appliance.accounts.idle_s
    context = page.context
    later(300)
    other = context.new_page()  # the same log-in, used in another tab: the session's idle timer restarts
    other.goto(f"{appliance.url}/account")
    other.close()
    with page.expect_response(lambda r: r.url.endswith("/api/session")) as asked:
        later(idle - 300 - 60)  # this page's own count says a minute is left; the device says six
    assert asked.value.json()["left_s"] == pytest.approx(360, abs=5)
    later(90)  # past this page's own deadline: no warning, still on the page
    assert page.locator("#idle-warning").inner_text().strip() == "" and page.url.endswith("/upload")
    later(300 - 90)  # a minute before the session really ends: now it warns
    wait_in_page(page, "document.getElementById('idle-warning').textContent.includes('logged out in 1 minute')")
    later(70)
    page.wait_for_url(lambda url: "/login" in url)


def test_near_the_end_of_a_log_ins_lifetime_the_warning_offers_no_stay(idle_page):
    """web.session_max_hours ends a log-in whatever is done: "Stay logged in" there did nothing
    (the warning came back at once), and a page counting only the idle time warned too late."""
    _, page, later = idle_page(max_age_s=600)  # ten minutes a log-in, the idle time-out 30
    later(600 - 75)
    assert page.locator("#idle-warning").inner_text().strip() == ""
    later(15)
    wait_in_page(page, "document.getElementById('idle-warning').textContent.includes('as long as a log-in may')")
    assert page.get_by_role("button", name="Stay logged in").count() == 0
    later(70)
    page.wait_for_url(lambda url: "/login" in url)


def test_a_page_shown_again_after_its_session_ended_asks_and_goes_to_the_log_in(idle_page):
    """A laptop's lid closed over the session's end: the suspended page's timers had not run, so
    it woke as it was and the next form went to the log-in, its input lost. Shown again, it asks."""
    from playwright.sync_api import Error as PlaywrightError

    appliance, page, later = idle_page()  # (no capture loop: no state poll on the page to go to the log-in instead)
    # the page's timers asleep with the laptop ... (a number is seconds: in milliseconds the clock jumped to the
    # year 58881, firing the page's timer for its warning, whose own ask went to the log-in without this feature)
    page.clock.pause_at(time.time() + 1)
    later(appliance.accounts.idle_s + 60, page_too=False)  # ... while the device's clock runs past the session's end
    try:
        page.evaluate("document.dispatchEvent(new Event('visibilitychange'))")  # the lid opened
    except PlaywrightError as e:  # the page asked and went to the log-in before the evaluation's answer
        assert "navigation" in str(e), e  # came back (CI, loaded: "Execution context was destroyed")
    page.wait_for_url(lambda url: "/login" in url)
    assert "session ended" in page.locator("#login-ended").inner_text()


@pytest.mark.parametrize("path", ["/live", "/glance"])
def test_a_screen_reader_hears_a_state_only_once_it_has_lasted(new_page, server, path):
    """Every change was announced (five in 30 s as a student shifted in the chair), talking
    over the lesson: the words on screen follow each second, the live region only a state
    that has lasted 10 s. The page's clock and its /api/state answers are the test's."""
    import json

    page = new_page(STUDENT, STUDENT_PW)
    now = {"level": "Engaged - paying attention", "group": "Engaged"}
    page.route("**/api/state*", lambda route: route.fulfill(
        content_type="application/json", body=json.dumps({**now, "camera": "ok", "seq": 1})))
    page.clock.install()
    page.goto(server.url + path)
    shown = "#state" if path == "/live" else "#glance-word"
    heard = page.locator("[data-announce-state]")

    def then(level: str, group: str, ms: int) -> None:
        now.update(level=level, group=group)
        page.clock.run_for(ms)

    then("Engaged - paying attention", "Engaged", 1500)
    for level, group in [("Not engaged - bored", "Not engaged"), ("Distracted", "Distracted")] * 3:
        then(level, group, 2000)
        wait_in_page(page, "([sel, words]) => words.includes(document.querySelector(sel).textContent)",
                     [shown, [level, level.split(" - ")[0]]])  # the poll's answer, drawn on screen at once
        assert heard.inner_text() == "", "a passing state was announced"
    then("Absent", "Absent", 2000)
    wait_in_page(page, "sel => document.querySelector(sel).textContent === 'Absent'", shown)
    # the 10 s a second at a time, each second's poll answered: run at once, they passed with no answer in (the
    # route answers between calls), the page said "No connection" and began its 10 s again, in real time, which
    # the wait below then had to outlast (12 s a run; under load past its 15 s)
    for _ in range(10):
        with page.expect_response(lambda r: "/api/state" in r.url):
            page.clock.run_for(1000)
    wait_in_page(page, "() => document.querySelector('[data-announce-state]').textContent === 'Now: Absent'")
    # the words on screen are no live region of their own any more
    assert page.locator(shown).evaluate("el => el.closest('[role=status], [aria-live]') === null")
