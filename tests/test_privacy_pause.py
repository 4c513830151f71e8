"""The student's privacy switch (issue 13, item 9), on a real appliance over HTTP, in a real
browser and with the button and LED on gpiozero's MockFactory: while paused no frame is
read or analysed, the camera is released, the LED pulses blue, and "Paused" is the state
in /api/state, the log (state changes, so also the MQTT outbox) and /healthz."""
from __future__ import annotations

import html
import re
import threading
import time

import mqtt_broker
import pytest
import requests
from conftest import browser_login, login, stays, wait_for, wait_in_page
from gpiozero.pins.mock import MockFactory, MockPWMPin
from mqtt_broker import PASSWORD, USER, Listener

from edge_app import config as config_mod
from edge_app.store import reports
from edge_app.vision.sources import DemoSource

STUDENT, STUDENT_PW = "mia", "mia-password-1"
broker = mqtt_broker.broker  # fixture: a real Mosquitto per test


class CountingDemo(DemoSource):
    """The real demo source, counting reads and closes (what "nothing is captured" means)."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.reads = 0
        self.closes = 0
        self.lock = threading.Lock()

    def read(self):
        with self.lock:
            self.reads += 1
        return super().read()

    def close(self):
        self.closes += 1
        super().close()


@pytest.fixture
def paused_app(make_appliance, cfg):
    def make(**changes):
        config = config_mod.with_changes(cfg, changes) if changes else cfg
        source = CountingDemo(width=320, height=240, fps=15)
        app = make_appliance(config, source=source)
        app.accounts.create_user(STUDENT, STUDENT_PW, "student")
        wait_for(lambda: app.loop.health.frames > 3, what="frames flowing")
        return app, source

    return make


def test_a_student_pauses_and_nothing_is_captured_until_resumed(paused_app):
    app, source = paused_app()
    s = login(app.url, STUDENT, STUDENT_PW)
    r = s.post(f"{app.url}/api/pause", timeout=10)
    assert r.status_code == 200 and r.json()["paused"] is True and r.json()["pause"]["by"] == "web"
    wait_for(lambda: s.get(f"{app.url}/api/state", timeout=10).json()["level"] == "Paused", what="state Paused")
    wait_for(lambda: source.closes >= 1, what="the camera released")
    reads, frames = source.reads, app.loop.health.frames
    assert stays(lambda: source.reads == reads and app.loop.health.frames == frames, 1.5)  # nothing read, nothing analysed
    state = s.get(f"{app.url}/api/state", timeout=10).json()
    assert state["level"] == "Paused" and state["for_s"] >= 1.5, state  # no frames, yet the pause goes on being timed

    health = requests.get(f"{app.url}/healthz", timeout=10)
    assert health.status_code == 200, health.text  # a pause is no fault: no watchdog restarts it
    body = health.json()
    assert body["status"] == "ok" and body["camera"] == "paused" and body["state"] == "Paused"
    assert body["paused"]["until"] is None
    assert body["fps"] == 0.0

    points = s.get(f"{app.url}/api/timeline", timeout=10).json()["points"]
    assert points[-1]["level"] == "Paused"  # the log's state changes: what the CSV and MQTT carry too
    assert s.get(f"{app.url}/api/privacy", timeout=10).json()["paused"] is True

    assert s.post(f"{app.url}/api/resume", timeout=10).json()["paused"] is False
    wait_for(lambda: source.reads > reads + 3 and app.loop.health.frames > frames, what="frames again")
    wait_for(lambda: s.get(f"{app.url}/api/state", timeout=10).json()["level"] != "Paused", what="state left Paused")
    body = requests.get(f"{app.url}/healthz", timeout=10).json()
    assert body["state"] is None and body["paused"] is None and body["camera"] == "ok"
    levels = [r["level"] for r in reports.timeline(app.store, 0)[1]]
    assert "Paused" in levels and levels[levels.index("Paused") + 1] != "Paused"  # logged, then left
    admin = login(app.url)
    page = admin.get(f"{app.url}/admin/log", params={"level": "Paused", "kind": "live"}, timeout=10)
    assert page.status_code == 200 and '<span class="pill g-paused">Paused</span>' in page.text  # the admin's log


def test_a_frame_read_before_the_pause_and_analysed_after_it_is_not_shown(cfg):
    """POST /api/pause answers once the switch is set; a frame the loop had read just before
    was still analysed, drawn on and sent to the open live viewers 0.05-0.15 s after the
    student was told the camera was paused. Here the pause comes while that frame's face is
    being read (the classifier presses it)."""
    from edge_app.device.indicators import ConsoleIndicator
    from edge_app.runtime.appliance import classifier_from_config
    from edge_app.runtime.capture import CaptureLoop
    from edge_app.runtime.live import LiveFrame
    from edge_app.vision.detector import detector_from_config

    live = LiveFrame()
    live.viewers = 1
    classifier = classifier_from_config(cfg)
    loop = CaptureLoop(cfg, DemoSource(realtime=False), detector_from_config(cfg), classifier, None,
                       ConsoleIndicator(), live=live)
    assert loop.step() and live.seq == 1  # watched: a frame is shown
    read = classifier.probabilities

    def paused_while_reading(face):
        loop.privacy.pause("student")
        return read(face)

    classifier.probabilities = paused_while_reading
    assert loop.step()
    assert loop.privacy.active is not None and live.seq == 1  # that frame was not shown


def test_the_classroom_gets_paused_on_the_state_topic(paused_app, broker):
    app, _ = paused_app(**{"mqtt.host": "127.0.0.1", "mqtt.port": broker.port, "mqtt.username": USER,
                           "mqtt.password": PASSWORD, "mqtt.device_id": "desk-09"})
    listener = Listener(broker, ["engage/+/state"])
    try:
        s = login(app.url, STUDENT, STUDENT_PW)
        s.post(f"{app.url}/api/pause", timeout=10).raise_for_status()
        wait_for(lambda: [m["level"] for m in listener.json("engage/desk-09/state")][-1:] == ["Paused"],
                 what="Paused on the MQTT state topic")
        s.post(f"{app.url}/api/resume", timeout=10).raise_for_status()
        wait_for(lambda: [m["level"] for m in listener.json("engage/desk-09/state")][-1:] != ["Paused"],
                 what="the next state after the pause")
    finally:
        listener.close()


def test_pausing_needs_a_login_and_the_csrf_token(paused_app):
    app, _ = paused_app()
    assert requests.post(f"{app.url}/api/pause", timeout=10).status_code == 401
    s = login(app.url, STUDENT, STUDENT_PW)
    del s.headers["X-CSRF-Token"]
    assert s.post(f"{app.url}/api/pause", timeout=10).status_code == 403
    assert app.loop.privacy.active is None


def test_only_who_paused_or_a_teacher_resumes_and_another_student_is_told_until_when(paused_app):
    """On a shared desk student B resumed student A's pause and the camera filmed A again.
    B is now told it is someone else's pause and until when, and it stays on; A, an
    instructor or an admin resumes it. /api/privacy never says who paused."""
    app, _ = paused_app(**{"privacy.max_pause_minutes": 30})
    app.accounts.create_user("ben", "ben-password-1", "student")
    app.accounts.create_user("mr.ito", "ito-password-1", "instructor")
    mia, ben = login(app.url, STUDENT, STUDENT_PW), login(app.url, "ben", "ben-password-1")
    until = mia.post(f"{app.url}/api/pause", timeout=10).json()["pause"]["until"]
    seen = ben.get(f"{app.url}/api/privacy", timeout=10).json()
    assert seen["paused"] is True and seen["yours"] is False and seen["can_resume"] is False
    assert "mia" not in str(seen) and "owner" not in seen["pause"]
    # the header offered ben "Resume camera", which answered 403: it says until when instead
    label = "Camera paused by someone else until " + time.strftime("%H:%M", time.localtime(until))
    assert seen["label"] == label or time.localtime(until)[:3] != time.localtime()[:3]  # (or the day's date too)
    header = ben.get(f"{app.url}/upload", timeout=10).text
    assert f'id="paused">{seen["label"]}</span>' in header and 'id="privacy-button"' not in header
    assert 'value="resume"' in mia.get(f"{app.url}/upload", timeout=10).text  # hers: the button
    r = ben.post(f"{app.url}/api/resume", timeout=10)
    assert r.status_code == 403 and r.headers["Content-Type"] == "application/json" and r.json()["paused"] is True
    assert "paused by someone else" in r.json()["error"] and time.strftime("%H:%M", time.localtime(until)) in r.json()["error"]
    page = ben.post(f"{app.url}/privacy", data={"csrf": ben.csrf, "do": "resume", "back": "/upload"},
                    allow_redirects=False, timeout=10)
    assert page.status_code == 403 and "Camera paused by someone else" in page.text and "ask them" in page.text
    assert ben.post(f"{app.url}/api/pause", timeout=10).json()["can_resume"] is False  # pressing Pause takes no pause over
    assert app.loop.privacy.active is not None
    assert mia.get(f"{app.url}/api/privacy", timeout=10).json()["can_resume"] is True
    assert mia.post(f"{app.url}/api/resume", timeout=10).json()["paused"] is False  # hers
    for teacher in (login(app.url, "mr.ito", "ito-password-1"), login(app.url)):  # an instructor, an admin
        mia.post(f"{app.url}/api/pause", timeout=10).raise_for_status()
        r = teacher.post(f"{app.url}/privacy", data={"csrf": teacher.csrf, "do": "resume", "back": "/live"},
                         allow_redirects=False, timeout=10)
        assert r.status_code == 303 and app.loop.privacy.active is None
    # before schema 13 SQLite gave the highest id again once its account was deleted: the next
    # account made was the owner of the deleted one's pause, and resumed it
    zoe = app.accounts.create_user("zoe", "zoe-password-1", "student")
    login(app.url, "zoe", "zoe-password-1").post(f"{app.url}/api/pause", timeout=10).raise_for_status()
    app.accounts.delete_user(zoe.id)
    app.store.execute("UPDATE sqlite_sequence SET seq = seq - 1 WHERE name = 'users'")  # as a database of then did
    max_ = app.accounts.create_user("max", "max-password-1", "student")
    assert max_.id == zoe.id  # the id given again: what made it possible
    s = login(app.url, "max", "max-password-1")
    seen = s.get(f"{app.url}/api/privacy", timeout=10).json()
    assert seen["yours"] is False and seen["can_resume"] is False
    assert s.post(f"{app.url}/api/resume", timeout=10).status_code == 403 and app.loop.privacy.active is not None


def test_the_longest_pause_resumes_by_itself(paused_app):
    app, source = paused_app(**{"privacy.max_pause_minutes": 0.02})  # 1.2 s
    s = login(app.url, STUDENT, STUDENT_PW)
    until = s.post(f"{app.url}/api/pause", timeout=10).json()["pause"]["until"]
    assert until is not None
    # the pause seen in the log, not the live state: a late look could miss its 1.2 s altogether
    wait_for(lambda: app.store.query("SELECT 1 FROM state_changes WHERE level = 'Paused'"), what="paused")
    wait_for(lambda: app.loop.privacy.active is None and app.loop.state.level != "Paused", what="resumed by itself")
    reads = source.reads
    wait_for(lambda: source.reads > reads, what="frames read again")
    assert requests.get(f"{app.url}/healthz", timeout=10).json()["paused"] is None


def test_a_pause_outlives_a_restart_and_ends_only_when_resumed(paused_app, make_appliance, cfg):
    """The student paused; the service restarted (the watchdog, an update, a power cut) and
    filmed them again within a second, with nothing said. The pause is saved at each change
    and taken back at the start: nothing is read until the student resumes."""
    app, _ = paused_app()
    s = login(app.url, STUDENT, STUDENT_PW)
    since = s.post(f"{app.url}/api/pause", timeout=10).json()["pause"]["since"]
    wait_for(lambda: app.loop.state.level == "Paused", what="paused")
    app.stop()

    source = CountingDemo(width=320, height=240, fps=15)
    again = make_appliance(cfg, source=source)
    wait_for(lambda: again.loop.state.level == "Paused", what="paused again at the start")
    assert stays(lambda: source.reads == 0 and again.loop.health.frames == 0, 1.5)  # never read a frame
    body = requests.get(f"{again.url}/healthz", timeout=10).json()
    assert body["camera"] == "paused" and body["paused"]["since"] == since and body["paused"]["by"] == "web"
    # one "Paused" row for the pause, not one more per restart; /api/state dates it from the press
    assert [r["level"] for r in again.store.query("SELECT level FROM state_changes ORDER BY id")].count("Paused") == 1
    state = login(again.url, STUDENT, STUDENT_PW).get(f"{again.url}/api/state", timeout=10).json()
    assert state["level"] == "Paused" and abs(state["since"] - since) < 2, (state, since)
    again.accounts.create_user("ben", "ben-password-1", "student")  # the pause is still the student's after a restart
    assert login(again.url, "ben", "ben-password-1").post(f"{again.url}/api/resume", timeout=10).status_code == 403
    s = login(again.url, STUDENT, STUDENT_PW)
    assert s.get(f"{again.url}/api/privacy", timeout=10).json()["paused"] is True
    assert s.post(f"{again.url}/api/resume", timeout=10).json()["paused"] is False
    wait_for(lambda: source.reads > 3 and again.loop.state.level != "Paused", what="frames after the resume")
    again.stop()
    third = make_appliance(cfg, source=CountingDemo(width=320, height=240, fps=15))  # resumed: stays resumed
    wait_for(lambda: third.loop.health.frames > 3, what="frames at once")
    assert third.loop.privacy.active is None


def test_a_saved_pause_whose_time_ran_out_while_off_is_not_taken_back():
    from edge_app.runtime.privacy import PrivacySwitch

    wall, mono = [1_700_000_000.0], [500.0]
    saved = []
    before = PrivacySwitch(lambda: 10.0, wall=lambda: wall[0], clock=lambda: mono[0], keep=saved.append)
    pause = before.pause("button")
    assert saved[-1].public() == pause.public()
    after = PrivacySwitch(lambda: 10.0, wall=lambda: wall[0] + 300, clock=lambda: 7.0)  # a restart 5 min on
    restored = after.restore(pause.public())
    assert restored is not None and restored.since == pause.since and restored.until == pause.until
    assert restored.ends_at == 7.0 + 300  # the 5 minutes left, on the new monotonic clock
    late = PrivacySwitch(lambda: 10.0, wall=lambda: wall[0] + 601, clock=lambda: 7.0)
    assert late.restore(pause.public()) is None and late.active is None  # its 10 minutes are over
    for junk in (None, {}, {"since": "x", "until": None, "by": "web"}, [1, 2]):
        assert PrivacySwitch().restore(junk) is None
    before.resume()
    assert saved[-1] is None  # resumed: nothing to take back


def test_a_clock_set_forward_does_not_end_a_pause_early():
    """A Pi switched off over a weekend starts from the time it saved; when a time server
    sets its clock three days forward, the student's 10-minute pause keeps its 10 minutes."""
    from edge_app.runtime.privacy import PrivacySwitch

    wall, mono = [1_700_000_000.0], [500.0]
    switch = PrivacySwitch(lambda: 10.0, wall=lambda: wall[0], clock=lambda: mono[0])
    pause = switch.pause("web")
    assert pause.until == 1_700_000_600.0  # shown in wall time, as before
    wall[0] += 3 * 86400  # timesyncd steps the clock
    mono[0] += 60
    wall[0] += 60
    now_on = switch.active
    assert now_on is not None  # one minute in: still paused
    assert now_on.until == pause.until + 3 * 86400 and now_on.since == pause.since + 3 * 86400  # shown on the new clock
    mono[0] += 9 * 60
    assert switch.active is None  # ten minutes in: over
    wall[0] -= 86400  # a clock set back does not stretch one either
    switch.pause("button")
    mono[0] += 10 * 60
    assert switch.active is None


def test_a_pause_keeps_its_time_across_a_clock_step_and_a_restart():
    """A student paused soon after boot, on a stale clock; a time server stepped it three
    days forward; ten minutes later the service restarted (the watchdog, an update) and
    took the 45-minute pause for one that ran out while off: the camera filmed them again
    35 minutes early, and until then /healthz said the pause began three days ago. Now the
    shown times move with the clock and are saved at once: the pause keeps its 35 minutes,
    after a restart within the boot and after a power cut, and never grows."""
    import json

    from edge_app.runtime.privacy import PrivacySwitch

    wall, mono, saved = [1_700_000_000.0], [40.0], []
    keep = lambda p: saved.append(json.loads(json.dumps(p.saved() if p else None)))  # noqa: E731 - as the store does
    switch = PrivacySwitch(lambda: 45.0, wall=lambda: wall[0], clock=lambda: mono[0], keep=keep, boot=lambda: "boot-1")
    pause = switch.pause("web", owner=7, owner_created=1_600_000_000.5)
    wall[0] += 3 * 86400 + 1  # timesyncd steps the clock, a second after the press
    mono[0] += 1
    shown = switch.active
    assert shown is not None and shown.since == pause.since + 3 * 86400 and shown.until == pause.until + 3 * 86400
    assert saved[-1]["until"] == shown.until and saved[-1]["left"] == 45 * 60 - 1  # saved on the new clock at once
    wall[0] += 600
    mono[0] += 600
    assert switch.active is not None and saved[-1]["saved_at"] == wall[0]  # saved again each minute
    after_step = saved[-1]

    def restarted(wall_now, mono_now, boot, record=after_step):
        again = PrivacySwitch(lambda: 45.0, wall=lambda: wall_now, clock=lambda: mono_now, boot=lambda: boot)
        return again.restore(record)

    again = restarted(wall[0], mono[0], "boot-1")  # the watchdog: same boot, ten minutes after the step
    assert again is not None and again.ends_at == pause.ends_at  # to the second, by the monotonic clock
    assert again.until == shown.until and again.owner == 7 and again.owner_created == 1_600_000_000.5
    assert restarted(wall[0] + 3 * 86400, mono[0] + 60, "boot-1").ends_at == pause.ends_at  # a later step too
    assert restarted(wall[0], pause.ends_at, "boot-1") is None  # its 45 minutes are over
    off = restarted(wall[0] + 120, 9.0, "boot-2")  # a power cut: two minutes off, a new monotonic clock
    assert off is not None and off.ends_at == 9.0 + 45 * 60 - 601 - 120 and off.until == shown.until
    # a clock stepped before the save and the device off: what it had left when saved, no more
    stale = restarted(wall[0] - 5 * 86400, 9.0, "boot-2")
    assert stale is not None and stale.ends_at == 9.0 + 45 * 60 - 601
    assert stale.until == wall[0] - 5 * 86400 + 45 * 60 - 601  # shown on the clock it now has
    # while it runs a clock set back does not stretch it: its end is on the monotonic clock
    wall[0] -= 86400
    mono[0] += 45 * 60 - 601
    assert switch.active is None and saved[-1] is None


def test_a_pause_that_cannot_be_saved_says_so_once_not_each_minute(caplog):
    """A pause is saved again each minute: a full disk must not put the same warning in the
    journal every minute of an hour-long pause."""
    from edge_app.runtime.privacy import RESAVE_S, PrivacySwitch

    mono, fails = [0.0], [True]

    def keep(pause):
        if fails[0]:
            raise OSError("database or disk is full")

    switch = PrivacySwitch(lambda: 120.0, clock=lambda: mono[0], keep=keep)
    switch.pause("button")
    for _ in range(5):
        mono[0] += RESAVE_S + 1
        assert switch.active is not None
    assert sum("could not be saved" in r.message for r in caplog.records) == 1
    fails[0] = False
    mono[0] += RESAVE_S + 1
    assert switch.active is not None  # saved again: a later failure is news
    fails[0] = True
    switch.resume()
    assert sum("could not be saved" in r.message for r in caplog.records) == 2


class Ticks:
    """The desk button's clock, moved by hand: a second a call unless set (``t``)."""

    def __init__(self, step: float = 1.0):
        self.t, self.step = 1000.0, step

    def __call__(self) -> float:
        self.t += self.step
        return self.t


def test_a_chattering_desk_button_toggles_once():
    """Pin 24 low 20 ms, high 30 ms, low 20 ms (a chattering switch, or a quick double press)
    got past the 50 ms debounce: it resumed and paused again within 0.1 s, the camera live in
    between and "Paused, Absent, Paused" in the log. A press within ``REPRESS_S`` of the last
    toggle toggles nothing; a press after it does."""
    from edge_app.device.pause_button import REPRESS_S, PauseButton
    from edge_app.runtime.privacy import PrivacySwitch

    factory = MockFactory()
    changes: list = []
    switch = PrivacySwitch(keep=changes.append)
    clock = Ticks(step=0.0)
    button = PauseButton(24, switch, pin_factory=factory, clock=clock)
    pin = factory.pin(24)
    try:
        for t, drive in ((0.0, pin.drive_low), (0.02, pin.drive_high), (0.05, pin.drive_low), (0.07, pin.drive_high)):
            clock.t = 1000.0 + t
            drive()
            assert switch.active is not None, t  # paused at the first edge, and never resumed
        assert len(changes) == 1 and changes[0] is not None  # one pause, nothing else
        clock.t = 1000.0 + REPRESS_S + 0.1  # a deliberate second press resumes
        pin.drive_low()
        assert switch.active is None and changes[-1] is None and len(changes) == 2
        pin.drive_high()
    finally:
        button.close()
        factory.reset()


def test_the_desk_button_pauses_and_the_led_pulses_blue(make_appliance, cfg):
    factory = MockFactory(pin_class=MockPWMPin)
    try:
        config = config_mod.with_changes(cfg, {"indicators.backend": "gpio", "indicators.pause_button_pin": 24,
                                               "indicators.paused_pulse_s": 0.4})
        app = make_appliance(config, pin_factory=factory)
        app.pause_button.clock = Ticks()  # each press a second after the last: none is taken for chatter
        wait_for(lambda: app.loop.health.frames > 3, what="frames flowing")
        button, blue = factory.pin(24), factory.pin(22)
        button.drive_low()  # pressed: the button connects the pin to ground
        wait_for(lambda: app.loop.state.level == "Paused", what="paused by the button")
        start = len(blue.states)
        wait_for(lambda: sum(1 for s in blue.states[start:] if 0.05 < s.state < 0.95) >= 10,
                 what="blue fading in and out")
        assert factory.pin(17).state == 0 and factory.pin(27).state == 0
        frames = app.loop.health.frames
        assert stays(lambda: app.loop.health.frames == frames, 0.5)
        button.drive_high()
        button.drive_low()  # the second press resumes
        wait_for(lambda: app.loop.health.frames > frames and app.loop.state.level != "Paused", what="resumed")
        app.loop.privacy.pause("web", owner=99)  # a student's pause from a page: the desk's button still ends it
        button.drive_high()
        button.drive_low()
        wait_for(lambda: app.loop.privacy.active is None, what="the button resumed a pause from the web")
    finally:
        factory.reset()


def test_the_header_button_pauses_and_resumes_in_a_browser(paused_app, artifacts, browser):
    app, _ = paused_app(**{"privacy.max_pause_minutes": 30})
    app.accounts.create_user("ben", "ben-password-1", "student")
    context = browser.new_context(viewport={"width": 390, "height": 844})
    try:
        page = context.new_page()
        page.set_default_timeout(15000)
        page.goto(f"{app.url}/login")
        page.get_by_label("User name").fill(STUDENT)
        page.get_by_label("Password").fill(STUDENT_PW)
        page.get_by_role("button", name="Log in").click()
        page.goto(f"{app.url}/upload")
        # the button's promise names the time limit an admin set (it said "until you resume" alone)
        assert page.get_by_role("button", name="Pause camera").get_attribute("title") == (
            "Nothing is filmed or analysed until you resume, for 30 minutes at most")
        page.get_by_role("button", name="Pause camera").click()
        page.wait_for_url(f"{app.url}/upload")  # back where the student was

        def own_label() -> str:  # the student who paused is told when the camera comes back by itself
            until = time.localtime(app.loop.privacy.active.until)
            return "Camera paused until " + time.strftime("%H:%M" if until[:3] == time.localtime()[:3] else
                                                          "%d %b %H:%M", until)

        assert page.locator("#paused").inner_text() == own_label()
        wait_for(lambda: app.loop.state.level == "Paused", what="paused from the page")
        shots = artifacts / "screenshots"
        shots.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shots / "privacy-paused-phone.png"))
        page.get_by_role("button", name="Resume camera").click()
        page.get_by_role("button", name="Pause camera").wait_for()
        wait_for(lambda: app.loop.state.level != "Paused", what="resumed from the page")
        # paused elsewhere (another browser, the desk's button): the header follows without a reload
        other = login(app.url, STUDENT, STUDENT_PW)
        page.evaluate("window.sameDocument = true")  # a reload or another page drops it
        assert other.post(f"{app.url}/api/pause", timeout=10).ok
        page.get_by_role("button", name="Resume camera").wait_for()
        assert page.locator("#paused").inner_text() == own_label()  # drawn by the page's script this time
        assert other.post(f"{app.url}/api/resume", timeout=10).ok
        page.get_by_role("button", name="Pause camera").wait_for()
        assert page.locator("#paused").count() == 0
        # paused by another student: no "Resume camera" the server would refuse, but until when
        ben = login(app.url, "ben", "ben-password-1")
        until = time.localtime(ben.post(f"{app.url}/api/pause", timeout=10).json()["pause"]["until"])
        page.get_by_text("Camera paused by someone else until " + time.strftime(
            "%H:%M" if until[:3] == time.localtime()[:3] else "%d %b %H:%M", until)).wait_for()
        assert page.locator("#privacy-button").count() == 0
        assert ben.post(f"{app.url}/api/resume", timeout=10).ok
        page.get_by_role("button", name="Pause camera").wait_for()  # and the button back when it ends
        assert page.locator("#paused").count() == 0
        assert page.get_by_role("button", name="Pause camera").get_attribute("title").endswith("30 minutes at most")
        assert page.evaluate("window.sameDocument === true")
    finally:
        context.close()


def test_a_form_that_asks_the_switch_for_something_else_is_told_in_words(paused_app):
    """Not a "pause" or "resume" (a hand-made form): a browser got a line of JSON as the page."""
    app, _ = paused_app()
    s = login(app.url, STUDENT, STUDENT_PW)
    page = s.post(f"{app.url}/privacy", data={"csrf": s.csrf, "do": "explode"}, timeout=10,
                  headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert page.status_code == 400 and page.headers["Content-Type"].startswith("text/html")
    assert 'must be "pause" or "resume"' in html.unescape(page.text) and "Pause camera button" in page.text
    script = s.post(f"{app.url}/privacy", data={"csrf": s.csrf, "do": "explode"}, timeout=10)
    assert script.status_code == 400 and 'must be "pause" or "resume"' in script.json()["error"]
    assert app.loop.privacy.active is None


def test_a_refused_resume_leaves_the_keyboard_on_the_words_that_say_why(paused_app, browser):
    """The student's own pause ended and another's began before the page's next poll: "Resume
    camera", pressed, is refused and goes; the keyboard was left on <body>, the reason unread."""
    app, _ = paused_app()
    app.accounts.create_user("ben", "ben-password-1", "student")
    context = browser.new_context()
    try:
        page = context.new_page()
        page.set_default_timeout(15000)
        browser_login(page, app.url, STUDENT, STUDENT_PW)
        # the page's polls wait: the changes below are not drawn before the press. Installed alone, the clock
        # ran on in real time, and a loaded machine's slow log-ins let a poll draw Ben's pause first: no
        # "Resume camera" to press (CI-like). Paused before the page loads, no poll is sent after the press.
        page.clock.install()
        page.clock.pause_at(time.time() + 1)
        page.goto(f"{app.url}/upload")
        page.get_by_role("button", name="Pause camera").click()
        page.get_by_role("button", name="Resume camera").wait_for()
        assert login(app.url, STUDENT, STUDENT_PW).post(f"{app.url}/api/resume", timeout=10).json()["paused"] is False
        assert login(app.url, "ben", "ben-password-1").post(f"{app.url}/api/pause", timeout=10).ok
        page.get_by_role("button", name="Resume camera").click()
        page.locator("#privacy-button").wait_for(state="detached")
        wait_in_page(page, "document.activeElement && document.activeElement.id === 'paused'")
        assert page.locator("#paused").inner_text().startswith("Camera paused by someone else")
        assert "ask them" in page.locator("#paused").get_attribute("title")
        assert app.loop.privacy.active is not None  # ben's pause holds
    finally:
        context.close()


def on_a_class_sheet(page, url: str, names: str) -> str:
    """``page``, logged in as the admin, on the one-time password sheet of a class of ``names``
    (one a line), marked so a reload or another page shows (``window.sameDocument``); its table's text."""
    page.set_default_timeout(15000)
    browser_login(page, url)
    page.goto(f"{url}/admin/users")
    page.get_by_label("Class list").fill(names)
    page.get_by_role("button", name="Add students").click()
    page.wait_for_url(f"{url}/admin/users/class")
    page.evaluate("window.sameDocument = true")  # a reload or another page drops it
    return page.locator("#class-passwords").inner_text()


def test_pausing_on_a_class_password_sheet_keeps_the_sheet(paused_app, browser):
    """"Pause camera" on the answer to a form (the one-time password sheet after Add a class)
    sent the browser to a GET of that path: "Not a page to open", and the passwords, shown
    once, were gone (Back: ERR_CACHE_MISS). The button pauses in place and the sheet stays."""
    app, _ = paused_app()
    context = browser.new_context()
    try:
        page = context.new_page()
        sheet = on_a_class_sheet(page, app.url, "lea.b\ntom.k")
        assert "lea.b" in sheet and "tom.k" in sheet
        page.get_by_role("button", name="Pause camera").click()
        page.get_by_role("button", name="Resume camera").wait_for()
        assert page.locator("#paused").inner_text() == "Camera paused"
        wait_for(lambda: app.loop.privacy.active is not None, what="paused from the sheet")
        assert page.url == f"{app.url}/admin/users/class" and page.locator("#class-passwords").inner_text() == sheet
        assert page.evaluate("window.sameDocument === true")  # no page left
        assert context.pages == [page]  # pressed in place: not the form's fallback, in a tab of its own
        wait_in_page(page, "document.activeElement && document.activeElement.id === 'privacy-button'")
        page.get_by_role("button", name="Resume camera").click()
        page.get_by_role("button", name="Pause camera").wait_for()
        wait_for(lambda: app.loop.privacy.active is None, what="resumed from the sheet")
        assert page.locator("#class-passwords").inner_text() == sheet and page.locator("#paused").count() == 0
    finally:
        context.close()


def test_pausing_in_place_works_in_a_browser_without_submit_event_submitter(paused_app, browser):
    """SubmitEvent.submitter came with Safari 15.4: on a school's iPad on iPadOS 15.0-15.3 the
    header's press was not seen, and went as a form, into a new tab, unannounced (the sheet's
    button says so only without script). The click says which button it was."""
    app, _ = paused_app()
    context = browser.new_context()
    try:
        context.add_init_script("delete SubmitEvent.prototype.submitter")  # as an older browser has it
        page = context.new_page()
        sheet = on_a_class_sheet(page, app.url, "lea.b")
        assert page.evaluate("'submitter' in SubmitEvent.prototype") is False
        page.get_by_role("button", name="Pause camera").click()
        page.get_by_role("button", name="Resume camera").wait_for()
        wait_for(lambda: app.loop.privacy.active is not None, what="paused from the sheet")
        assert context.pages == [page] and page.evaluate("window.sameDocument === true")  # in place, no new tab
        assert page.locator("#class-passwords").inner_text() == sheet
        page.get_by_role("button", name="Resume camera").press("Enter")  # the keyboard's press is a click too
        page.get_by_role("button", name="Pause camera").wait_for()
        wait_for(lambda: app.loop.privacy.active is None, what="resumed from the sheet")
        assert context.pages == [page] and page.evaluate("window.sameDocument === true")
    finally:
        context.close()


def test_without_javascript_the_answer_to_a_form_is_not_left_for_a_get_of_its_path(paused_app):
    """The header's form names the page to go back to only when a GET opens it again (its
    query kept, less a one-time note); on the answer to a form it names none and opens its
    answer in a tab of its own, which says the camera paused, so the answer stays in its tab."""
    app, _ = paused_app()
    s = login(app.url)
    r = s.post(f"{app.url}/admin/users/class", data={"csrf": s.csrf, "names": "lea.b"}, timeout=30)
    assert r.status_code == 200 and 'id="class-passwords"' in r.text
    header = r.text.split('action="/privacy"', 1)[1].split("</form>", 1)[0]
    assert 'name="back" value=""' in header and 'target="_blank"' in header
    assert "Pause camera<noscript> (opens in a new tab)</noscript>" in header  # said, as it goes there without script
    gone = s.post(f"{app.url}/privacy", data={"csrf": s.csrf, "do": "pause", "back": ""}, allow_redirects=False,
                  timeout=10)
    assert gone.status_code == 303 and gone.headers["Location"].split("?")[0].endswith("/upload")
    assert app.loop.privacy.active is not None
    page = s.get(gone.headers["Location"], timeout=10).text
    assert "Camera paused: nothing is filmed or analysed until you resume it" in page
    assert "it stays in the tab you pressed it in" in page

    listed = s.get(f"{app.url}/admin/log?user=lea.b&note=abc&page=2", timeout=10).text
    header = listed.split('action="/privacy"', 1)[1].split("</form>", 1)[0]
    assert 'name="back" value="/admin/log?user=lea.b&amp;page=2"' in header and "target=" not in header
    assert "new tab" not in header
    back = s.post(f"{app.url}/privacy", data={"csrf": s.csrf, "do": "resume", "back": "/admin/log?user=lea.b&page=2"},
                  allow_redirects=False, timeout=10)
    assert back.status_code == 303 and back.headers["Location"].endswith("/admin/log?user=lea.b&page=2")


def test_the_classroom_counts_a_paused_desk():
    """The instructor's page counts "Paused" desks as such (it counted only five levels)."""
    import json

    from edge_app.fleet.classroom.model import Classroom

    room = Classroom()
    room.apply_availability("desk-1", b"online")
    room.apply_availability("desk-2", b"online")
    assert room.apply_state("desk-1", json.dumps({"level": "Paused", "label": "Paused", "since": 1.0, "seq": 1}).encode())
    room.apply_state("desk-2", json.dumps({"level": "Not engaged", "label": "Not engaged", "since": 2.0, "seq": 1}).encode())
    snap = room.snapshot()
    assert snap["counts"]["Paused"] == 1
    assert [d["device_id"] for d in snap["desks"]] == ["desk-2", "desk-1"]  # a disengaged desk before a paused one


def test_a_paused_loop_still_pings_the_watchdog(paused_app):
    """systemd restarts a service whose loop stops pinging: a pause must not look like a hang."""
    app, _ = paused_app()
    pings = []
    app.loop.on_alive = lambda: pings.append(app.loop.health.frames)
    app.loop.privacy.pause("button")
    wait_for(lambda: app.loop.state.level == "Paused", what="paused")
    frames = app.loop.health.frames
    wait_for(lambda: pings.count(frames) >= 3, what="pings while paused, with no new frame")
    assert app.loop.alive


def test_the_header_button_never_leads_off_the_device(paused_app):
    """The button's form goes back to the page it is on, whatever its path: a link to
    /%09/evil.example (a 404 page that still has the button) gave back "/<tab>/evil.example",
    which the redirect turned into http://evil.example/ (a tab is dropped from URLs)."""
    from urllib.parse import urlsplit

    app, _ = paused_app()
    s = login(app.url, STUDENT, STUDENT_PW)
    page = s.get(f"{app.url}/%09/evil.example/log-in-again", timeout=10)
    assert page.status_code == 404
    assert 'name="back" value="/\t/evil.example/log-in-again"' in page.text  # the path, as the page has it
    for back in ("/\t/evil.example/x", "/\n/evil.example", "/\x0b/evil.example", "//evil.example", "/\\evil.example",
                 "https://evil.example/"):
        r = s.post(f"{app.url}/privacy", data={"csrf": s.csrf, "do": "pause", "back": back}, allow_redirects=False,
                   timeout=10)
        assert r.status_code == 303, back
        where = urlsplit(r.headers["Location"])
        assert where.netloc == urlsplit(app.url).netloc and where.path == "/live", (back, r.headers["Location"])
    r = s.post(f"{app.url}/privacy", data={"csrf": s.csrf, "do": "resume", "back": "/upload?x=1"},
               allow_redirects=False, timeout=10)
    assert r.headers["Location"].endswith("/upload?x=1"), "a page of the device is still where it goes back to"


def test_a_student_still_on_a_given_password_can_pause_but_resumes_after_choosing_their_own(paused_app):
    """A student on the password they were given (Add a class) is sent to Your account until
    they choose their own, and its header had no Pause button (POST /api/pause: 403) while
    the camera went on analysing them. Pausing films less: allowed; resuming waits."""
    app, _ = paused_app()
    app.accounts.create_user("dora", "given-note-pw-1", "student", must_change=True)
    dora = login(app.url, "dora", "given-note-pw-1")
    page = dora.get(f"{app.url}/account", timeout=10).text
    assert 'id="privacy-button"' in page and ">Pause camera</button>" in page
    r = dora.post(f"{app.url}/api/pause", timeout=10)
    assert r.status_code == 200 and r.json()["paused"] is True
    wait_for(lambda: app.loop.state.level == "Paused", what="paused by a student on a given password")
    page = dora.get(f"{app.url}/account", timeout=10).text
    assert 'id="paused">Camera paused</span>' in page and "Resume camera" not in page  # not before their own
    assert "you can resume it once you have chosen your own password" in page  # said, not a button gone unexplained
    assert dora.post(f"{app.url}/api/resume", timeout=10).status_code == 403
    assert app.loop.privacy.active is not None
    r = dora.post(f"{app.url}/account", data={"csrf": dora.csrf, "current": "given-note-pw-1", "new": "doras-own-pw-2",
                                              "again": "doras-own-pw-2"}, timeout=10)
    assert r.status_code == 200 and "Resume camera" in r.text  # theirs to resume now
    assert "account-resume-waits" not in r.text


def test_a_deleted_students_pause_stays_on_and_anyone_at_the_desk_may_resume_it(paused_app, make_appliance, cfg):
    """End of term: a student paused the camera (no time limit), then the admin deleted every
    student. The pause stayed theirs, so the next student at the desk could not resume it, all
    summer. Deleting the account must not switch the camera on either: the pause stays on,
    anyone's to resume, and a restart keeps it so."""
    app, _ = paused_app()
    mia = login(app.url, STUDENT, STUDENT_PW)
    assert mia.post(f"{app.url}/api/pause", timeout=10).json()["paused"] is True
    other = app.accounts.create_user("ben", "ben-password-1", "student")
    ben = login(app.url, "ben", "ben-password-1")
    assert ben.post(f"{app.url}/api/resume", timeout=10).status_code == 403  # hers, while she has an account
    admin = login(app.url)
    page = admin.post(f"{app.url}/admin/users/students/delete", data={"csrf": admin.csrf}, timeout=10)
    ids = [i for i in re.findall(r'name="user" value="(\d+)"', page.text) if int(i) != other.id]
    done = admin.post(f"{app.url}/admin/users/students/delete",
                      data={"csrf": admin.csrf, "confirm": "yes", "user": ids}, timeout=10)
    said = html.unescape(done.text)
    assert "Deleted 1 student account" in said and "The camera pause mia started stays on" in said, said
    pause = app.loop.privacy.active
    assert pause is not None and pause.owner is None  # on, and no one's
    assert app.accounts.find(STUDENT) is None
    # kept so over a restart: the next student at the desk resumes it
    app.stop()
    again = make_appliance(cfg, source=CountingDemo(width=320, height=240, fps=15))
    assert again.loop.privacy.active is not None
    ben = login(again.url, "ben", "ben-password-1")
    seen = ben.get(f"{again.url}/api/privacy", timeout=10).json()
    assert seen["paused"] is True and seen["can_resume"] is True
    assert ben.post(f"{again.url}/api/resume", timeout=10).json()["paused"] is False


def test_deleting_one_account_disowns_only_its_own_pause(paused_app):
    app, _ = paused_app()
    ben = app.accounts.create_user("ben", "ben-password-1", "student")
    login(app.url, STUDENT, STUDENT_PW).post(f"{app.url}/api/pause", timeout=10).raise_for_status()
    admin = login(app.url)
    gone = admin.post(f"{app.url}/admin/users/{ben.id}/delete", data={"csrf": admin.csrf, "confirm": "yes"},
                      timeout=10)
    assert "Deleted ben" in html.unescape(gone.text) and "camera pause" not in gone.text
    assert app.loop.privacy.active.owner is not None  # mia's still: ben's deletion changes nothing of it
    mia = app.accounts.find(STUDENT)
    gone = admin.post(f"{app.url}/admin/users/{mia.id}/delete", data={"csrf": admin.csrf, "confirm": "yes"},
                      timeout=10)
    assert "The camera pause mia started stays on" in html.unescape(gone.text)
    assert app.loop.privacy.active is not None and app.loop.privacy.active.owner is None


def test_a_pause_pressed_while_the_account_is_being_deleted_is_disowned_too(paused_app):
    """Deleting a student's photos (zeroed in the file) takes seconds: a press of theirs in
    that time was still theirs, and kept the desk paused for them alone."""
    app, _ = paused_app()
    mia = app.accounts.find(STUDENT)
    app.accounts.create_user("ben", "ben-password-1", "student")
    s = login(app.url, STUDENT, STUDENT_PW)
    real = app.store.delete_user_data

    def press_meanwhile(user_id, also=None):  # the student presses Pause while the deletion runs
        s.post(f"{app.url}/api/pause", timeout=10).raise_for_status()
        return real(user_id, also)

    app.store.delete_user_data = press_meanwhile
    admin = login(app.url)
    gone = admin.post(f"{app.url}/admin/users/{mia.id}/delete", data={"csrf": admin.csrf, "confirm": "yes"},
                      timeout=10)
    assert "The camera pause mia started stays on" in html.unescape(gone.text)
    assert app.loop.privacy.active is not None and app.loop.privacy.active.owner is None
    assert login(app.url, "ben", "ben-password-1").post(f"{app.url}/api/resume", timeout=10).json()["paused"] is False
    assert s.post(f"{app.url}/api/pause", timeout=10).status_code in (401, 403)  # her session went with her account


def test_a_pause_whose_request_fails_says_so_on_the_page_and_opens_no_tab(paused_app, browser):
    """With JavaScript on, a pause whose request failed went as the form after all: on the
    answer to a form (a class's password sheet) that opened a tab of its own, unannounced,
    on a page saying the camera had paused; with the device out of reach, the browser's error
    page. The page it was pressed on says the camera may not be paused, the button kept for
    another try; an answer that refuses says why and what to do."""
    app, _ = paused_app()
    context = browser.new_context()
    try:
        page = context.new_page()
        sheet = on_a_class_sheet(page, app.url, "lea.b")
        page.route("**/api/pause", lambda route: route.abort())  # the device out of reach
        page.get_by_role("button", name="Pause camera").click()
        said = page.get_by_role("alert").filter(has_text="The camera may not be paused")
        said.wait_for()
        assert said.inner_text() == "The camera may not be paused: no answer came from the device. Press Pause camera again."
        assert context.pages == [page]  # no tab of its own
        assert page.evaluate("window.sameDocument === true") and page.url == f"{app.url}/admin/users/class"
        assert page.locator("#class-passwords").inner_text() == sheet
        assert page.evaluate("document.activeElement.id") == "privacy-button"  # there to press again
        assert app.loop.privacy.active is None
        page.unroute("**/api/pause")
        page.route("**/api/pause", lambda route: route.fulfill(status=401, content_type="application/json",
                                                                 body='{"error": "log in first"}'))
        page.get_by_role("button", name="Pause camera").click()
        page.get_by_role("alert").filter(has_text="your log-in has ended").wait_for()
        assert page.get_by_role("alert").inner_text() == (
            "The camera is not paused: your log-in has ended. Log in again, then press Pause camera.")  # one note
        page.unroute("**/api/pause")
        page.get_by_role("button", name="Pause camera").click()  # it answers again
        page.get_by_role("button", name="Resume camera").wait_for()
        assert page.locator("#privacy-error").count() == 0  # the note goes with what it said
        wait_for(lambda: app.loop.privacy.active is not None, what="paused at the second press")
        assert context.pages == [page] and page.evaluate("window.sameDocument === true")
    finally:
        context.close()
