"""Item by item in headless chromium (the fixtures of tests/test_browser.py): logging in
returns you to the page you asked for, and the upload history and the admin's log open a
photo's stored result."""
from __future__ import annotations

from tests.conftest import ADMIN_PASSWORD
from tests.test_browser import STUDENT, STUDENT_PW, new_page, server, shots  # noqa: F401 - fixtures


def test_login_lands_on_the_page_you_were_going_to(new_page, server, shots):  # noqa: F811
    page = new_page(None)
    page.goto(f"{server.url}/admin/log?kind=upload")
    assert "/login?next=" in page.url
    page.get_by_label("User name").fill("admin")
    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/admin/log?kind=upload")
    assert page.get_by_role("heading", name="Log").is_visible()
    assert page.get_by_label("Source").input_value() == "upload"  # the filter in the link came along


def test_history_and_log_rows_open_the_stored_result(new_page, server, grace_path, shots):  # noqa: F811
    student = new_page(STUDENT, STUDENT_PW)
    student.goto(f"{server.url}/upload")
    student.set_input_files("#image", str(grace_path))
    student.get_by_role("button", name="Analyse").click()
    emotion = student.locator("#faces tbody tr").first.locator("summary").inner_text()
    student.get_by_role("link", name="Back to your photos").click()
    student.locator("#history tbody tr").first.get_by_role("link", name="grace_hopper.jpg").click()
    student.wait_for_url("**/uploads/*")
    assert student.locator("#faces tbody tr").first.locator("summary").inner_text() == emotion
    assert student.locator("img.preview").evaluate("img => img.naturalWidth") > 0
    student.screenshot(path=str(shots / "upload-result.png"), full_page=True)

    admin = new_page()
    admin.goto(f"{server.url}/admin/log?kind=upload&user={STUDENT}")
    admin.locator("#log tbody tr").first.locator('a[title="Open this photo\'s result"]').click()
    admin.wait_for_url("**/uploads/*")
    assert admin.get_by_role("heading", name="Results for grace_hopper.jpg").is_visible()
    assert admin.locator("#faces tbody tr").first.locator("summary").inner_text() == emotion
    assert not student.console_errors and not admin.console_errors
