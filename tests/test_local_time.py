"""Times of day on the pages when the clocks change (daylight saving time): every time a
person reads is the device's, in the offset in force at that time, and the zone a heading
names is the one in force now.

The device's zone is set with POSIX TZ rules (no tz database needed): Central European
time, or made-up zones whose clocks changed minutes ago, so the real clock meets a change."""
from __future__ import annotations

import json
import time

import pytest

from edge_app.store import export, reports
from edge_app.store.database import Store
from edge_app.web.live import zone_spans
from tests.conftest import ADMIN_PASSWORD, browser_login, device_zone, login, module_appliance, wait_in_page

BERLIN = "CET-1CEST,M3.5.0,M10.5.0/3"  # Central European time: the last Sundays of March and October
AUTUMN_CHANGE = 1792890000.0  # 2026-10-25 01:00 UTC: 03:00 CEST becomes 02:00 CET
SPRING_CHANGE = 1774746000.0  # 2026-03-29 01:00 UTC: 02:00 CET becomes 03:00 CEST


def went_forward_at(t: int) -> str:
    """A zone, "XST" (UTC), whose clocks go forward an hour to "XDT" at ``t`` (its day of the
    year counted from 0, as the "n" form of the rule counts it; back half a year later)."""
    u = time.gmtime(t)
    day = u.tm_yday - 1
    return f"XST0XDT-1,{day}/{u.tm_hour}:{u.tm_min:02d}:{u.tm_sec:02d},{(day + 180) % 365}/0"


@pytest.mark.parametrize("change, before, after", [(AUTUMN_CHANGE, (7200, "CEST"), (3600, "CET")),
                                                   (SPRING_CHANGE, (3600, "CET"), (7200, "CEST"))])
def test_the_offsets_over_a_span_name_the_change_to_the_second(change, before, after):
    with device_zone(BERLIN):
        assert zone_spans(change - 300.5, change + 299.5) == [
            {"from": change - 300.5, "utc_offset_s": before[0], "zone": before[1]},
            {"from": change, "utc_offset_s": after[0], "zone": after[1]}]
        assert zone_spans(change, change + 600) == [{"from": change, "utc_offset_s": after[0], "zone": after[1]}]
        assert zone_spans(change - 600, change - 1) == [{"from": change - 600, "utc_offset_s": before[0],
                                                         "zone": before[1]}]


def test_the_day_the_clocks_go_back_is_25_hours_in_the_log_filter_and_the_export(tmp_path):
    """A check of what is right: "2026-10-25" in the log's filter and in the export's --since and
    --until is its 25 hours, each minute once, the repeated hour told apart by its offset."""
    store = Store(tmp_path / "data")
    try:
        day = AUTUMN_CHANGE - 2 * 3600  # 00:00 CEST
        for minute in range(-60, 26 * 60, 1):  # from 23:00 the day before to 01:00 the day after
            store.log_minute({"minute": int(day) + minute * 60, "frames": 1, "faces": 0, "Engaged": 60.0})
        store.log_state_change(AUTUMN_CHANGE - 1800, "Absent", "Absent", None, None)  # 02:30 CEST
        store.log_state_change(AUTUMN_CHANGE + 1800, "Absent", "Absent", None, None)  # 02:30 CET
        with device_zone(BERLIN):
            flt = reports.LogFilter(date_from="2026-10-25", date_to="2026-10-25")
            rows, total = reports.query_log(store, flt)
            assert total == 2
            since, until = export.parse_since("2026-10-25"), export.parse_since("2026-10-26")
            out = list(export.export_rows(store.data_dir, since, until))
    finally:
        store.close()
    minutes = [r["time"] for r in out if r["kind"] == "minute"]
    assert len(minutes) == len(set(minutes)) == 25 * 60
    assert (minutes[0], minutes[-1]) == ("2026-10-25T00:00:00+02:00", "2026-10-25T23:59:00+01:00")
    assert [r["time"] for r in out if r["kind"] == "state"] == ["2026-10-25T02:30:00+02:00", "2026-10-25T02:30:00+01:00"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with module_appliance(tmp_path_factory, "local-time", {"store.reserve_mb": 1}, clock_set=lambda: True,
                          with_loop=False) as appliance:
        yield appliance


@pytest.fixture
def page(browser, server):
    context = browser.new_context(timezone_id="Pacific/Honolulu")  # UTC-10: not the device's zone
    page = context.new_page()
    page.set_default_timeout(15000)
    page.clock.install()
    browser_login(page, server.url, "admin", ADMIN_PASSWORD)
    yield page
    context.close()


def test_the_timeline_gives_the_offsets_in_force_over_its_minutes(server):
    """/api/timeline gave one offset, the one now, for its whole span."""
    change = int(time.time()) - 300
    with device_zone(went_forward_at(change)):
        t = login(server.url).get(f"{server.url}/api/timeline?minutes=10", timeout=10).json()
    assert t["zones"] == [{"from": t["from"], "utc_offset_s": 0, "zone": "XST"},
                          {"from": change, "utc_offset_s": 3600, "zone": "XDT"}]
    assert (t["utc_offset_s"], t["zone"]) == (3600, "XDT")  # the one now, as before


def _timeline(change: float, before: tuple[int, str], after: tuple[int, str]) -> dict:
    """/api/timeline's answer five minutes after ``change``: Engaged from two minutes before it,
    Absent from a minute after it."""
    now = change + 300
    return {"from": now - 600, "now": now, "own_from": None, "groups": ["Engaged", "Absent"],
            "points": [{"t": now - 600, "level": "Engaged", "group": "Engaged"},
                       {"t": change - 120, "level": "Engaged - paying attention", "group": "Engaged"},
                       {"t": change + 60, "level": "Absent", "group": "Absent"}],
            "zones": [{"from": now - 600, "utc_offset_s": before[0], "zone": before[1]},
                      {"from": change, "utc_offset_s": after[0], "zone": after[1]}],
            "utc_offset_s": after[0], "zone": after[1]}


@pytest.mark.parametrize("change, before, after, ticks, titles, latest", [
    # the clocks went back at 03:00 CEST: the axis reads 02:55 CEST ... 02:59, then 02:01 CET, as the log does
    (AUTUMN_CHANGE, (7200, "CEST"), (3600, "CET"), ["02:55", "02:57", "02:59", "02:01", "02:03", "now"],
     ["Engaged from 02:55 CEST", "Engaged - paying attention from 02:58 CEST", "Absent from 02:01"], "02:01"),
    # they went forward at 02:00 CET: 01:55 ... 01:59, then 03:01 CEST (the chart said 02:55, an hour that never was)
    (SPRING_CHANGE, (3600, "CET"), (7200, "CEST"), ["01:55", "01:57", "01:59", "03:01", "03:03", "now"],
     ["Engaged from 01:55 CET", "Engaged - paying attention from 01:58 CET", "Absent from 03:01"], "03:01"),
])
def test_the_live_chart_tells_each_time_in_the_offset_in_force_then(page, server, change, before, after, ticks,
                                                                   titles, latest):
    """The chart drew every time in the offset of its "now": in the ten minutes after the clocks
    changed its times before the change were an hour off the log's. The browser is in another zone
    (UTC-10): the times are the device's."""
    page.route("**/api/timeline*", lambda route: route.fulfill(
        content_type="application/json", body=json.dumps(_timeline(change, before, after))))
    page.set_viewport_size({"width": 1600, "height": 900})  # a chart wide enough for a time every 2 minutes
    page.goto(f"{server.url}/live")
    wait_in_page(page, "Number(document.getElementById('timeline').dataset.segments) === 3")
    shown = page.locator("#timeline-svg > text").evaluate_all("els => els.map(e => e.textContent)")
    assert shown[2:] == ticks[::-1]  # after the two rows' names: from now back
    assert page.locator("#timeline-svg rect title").evaluate_all("els => els.map(e => e.textContent)") == titles
    assert page.inner_text("#timeline-zone") == f"({before[1]}, then {after[1]})"
    words = page.get_attribute("#timeline", "aria-label")
    assert words.endswith(f"Latest change: Absent at {latest} (the device's time, {after[1]})."), words


def test_an_open_dashboard_is_drawn_again_when_the_clocks_change(page, server):
    """The dashboard's "Recent alerts (XST)" heading names the zone in force and each alert of
    another zone says its own; kept up by its poll, the list was drawn again in the new offset
    while the heading, drawn once, still named the old zone: an alert after the change read an
    hour off. The page is drawn again, as at midnight, once the zone in force is another."""
    now = time.time()
    server.store.log_alert(now - 60, "Not engaged")
    try:
        with device_zone("XST0"):
            page.goto(f"{server.url}/admin")
            heading = page.get_by_role("heading", name="Recent alerts")
            assert heading.inner_text() == "Recent alerts (XST)"
            first = page.locator("[data-piece=alerts] li").first
            assert first.inner_text().startswith(time.strftime("%Y-%m-%d %H:%M:%S: ", time.localtime(now - 60)))
            page.clock.pause_at(time.time() + 1)  # no poll in real time between the change and the navigation awaited
            with device_zone(went_forward_at(int(now) - 30)):  # the clocks went forward half a minute ago
                with page.expect_navigation():
                    page.clock.fast_forward(10_000)  # the next poll
                assert heading.inner_text() == "Recent alerts (XDT)"
                assert first.inner_text().startswith(time.strftime("%Y-%m-%d %H:%M:%S XST: ", time.localtime(now - 60)))
    finally:
        server.store.execute("DELETE FROM alerts")


def test_a_pause_that_ends_after_the_clocks_change_names_its_zone():
    """A 30-minute pause from 02:50 CEST said "until 02:20" in the hour the clocks go back,
    a time that seemed to have passed already: across a change the zone is named."""
    from edge_app.runtime.privacy import Pause
    from edge_app.web.privacy import until_text

    now = time.time()
    with device_zone(went_forward_at(int(now) + 600)):  # now XST; in ten minutes XDT
        assert until_text(Pause(since=now, until=now + 1800, by="web")).endswith(" XDT")
        assert not until_text(Pause(since=now, until=now + 300, by="web")).endswith("XDT")  # before it: as it was


def test_a_log_in_lock_that_ends_after_the_clocks_change_names_its_zone(tmp_path):
    """A lock from 02:55 CEST said "until 02:10" in the hour the clocks go back, a time that
    seemed past already: across a change "try again at" names the zone, as a pause's end does."""
    from edge_app.store.accounts import Accounts
    from edge_app.store.login_throttle import LoginThrottled, ThrottlePolicy

    store = Store(tmp_path / "data")
    try:
        policy = ThrottlePolicy(slow_after=1000, slow_after_address=1000, lock_after_user=1, lock_after_address=1000, lock_s=600)
        accounts = Accounts(store, throttle=policy)
        accounts.create_user("sam", "sams-password-1", "student")
        assert accounts.login("sam", "a-wrong-guess", address="192.0.2.7") is None
        now = int(time.time())
        with device_zone(went_forward_at(now + 300)):  # now XST; in five minutes XDT, before the lock ends
            with pytest.raises(LoginThrottled, match=r"\(until \d\d:\d\d XDT\)"):
                accounts.check_throttle("sam", "192.0.2.7")
        with device_zone(went_forward_at(now + 3600)):  # the change after it: the time as it is
            with pytest.raises(LoginThrottled, match=r"\(until \d\d:\d\d\)"):
                accounts.check_throttle("sam", "192.0.2.7")
    finally:
        store.close()
