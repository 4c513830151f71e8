"""The live page's picture and chart when the device stops answering them, in a real headless
browser: a picture whose stream ended froze without a word (and was never asked for again),
its error replaced the page's privacy statement, and the chart asked every 5 s for ever (a
hidden tab, an ended session) without saying when it went stale.

The stream's and the chart's failures are made with ``page.route`` (a stream that ends, a
refusal, a request that never comes back); Playwright's clock moves the page's timers on."""
from __future__ import annotations

import json
import time

import pytest

from tests.conftest import ADMIN_PASSWORD, browser_login, module_appliance, stays, wait_for, wait_in_page


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with module_appliance(tmp_path_factory, "live-page", {"store.reserve_mb": 1}, clock_set=lambda: True) as appliance:
        yield appliance


@pytest.fixture
def page(browser, server):
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(15000)
    page.clock.install()  # Playwright's clock: runs in real time as installed; run_for/fast_forward move it on at once (pause_at stops it)
    browser_login(page, server.url, "admin", ADMIN_PASSWORD)
    yield page
    context.close()


def one_frame_then_end(jpeg: bytes) -> bytes:
    """An MJPEG body as the device sends it (runtime/live.py) that ends after one frame, as
    the device's does when its loop stalls, the session recheck fails or it restarts."""
    return (b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: " + str(len(jpeg)).encode() + b"\r\n\r\n"
            + jpeg + b"\r\n")


def text(page, selector: str) -> str:
    return page.locator(selector).inner_text()


def frames(page) -> int:
    return int(page.evaluate("Number(document.getElementById('stream').dataset.frames || 0)"))


def hide(page, hidden: bool) -> None:
    """The tab goes to the background (or comes back), as the page sees it."""
    page.evaluate("""hidden => {
        Object.defineProperty(document, "visibilityState", { configurable: true, get: () => hidden ? "hidden" : "visible" });
        document.dispatchEvent(new Event("visibilitychange"));
    }""", hidden)


def test_a_stream_that_ends_is_said_to_have_stopped_and_asked_for_again(page, server, face_jpeg):
    """The <img> kept the last frame and fired no event when the stream ended: the viewer took
    a frozen picture for live. Now the page says the picture stopped and when it was from,
    marks it, and asks again (2 s first): the device's stream then shows frames again."""
    asked = []

    def stream(route):
        asked.append(route.request.url)
        if len(asked) == 1:
            route.fulfill(status=200, headers={"Content-Type": "multipart/x-mixed-replace; boundary=frame"},
                          body=one_frame_then_end(face_jpeg))
        else:
            route.continue_()

    page.route("**/live.mjpg*", stream)
    # the retry's 2 s on the test's clock alone: running on in real time, a loaded machine's 2 s between the
    # picture stopping and the count below let the retry in first
    page.clock.pause_at(time.time() + 1)
    page.goto(f"{server.url}/live")
    note = text(page, "#stream-note")
    wait_in_page(page, "document.getElementById('stream-status').textContent.includes('stopped')")
    said = text(page, "#stream-status")
    assert "The picture shows" in said and "not now" in said and "Trying again in 2 s" in said, said
    assert frames(page) == 1 and "stale" in page.get_attribute("#stream", "class")
    assert len(asked) == 1
    page.clock.fast_forward(2_000)
    wait_in_page(page, "Number(document.getElementById('stream').dataset.frames) > 2")  # the device's own frames
    assert len(asked) == 2 and text(page, "#stream-status") == ""
    assert "stale" not in page.get_attribute("#stream", "class")
    assert page.evaluate("document.getElementById('stream').naturalWidth") == server.cfg.camera.width
    assert text(page, "#stream-note") == note


def test_a_stream_that_goes_silent_is_let_go_of_and_asked_for_again(page, server):
    """No frame for 6 s without the stream ending (a connection that hangs): the same."""
    held = []

    def stream(route):
        if not held:
            held.append(route)  # never answered
        else:
            route.continue_()

    page.route("**/live.mjpg*", stream)
    page.goto(f"{server.url}/live")
    wait_in_page(page, "document.getElementById('stream-status').textContent.includes('Connecting')")
    page.clock.fast_forward(6_500)
    wait_in_page(page, "document.getElementById('stream-status').textContent.includes('stopped')")
    page.clock.fast_forward(2_000)
    wait_in_page(page, "Number(document.getElementById('stream').dataset.frames) > 0")


def test_a_refused_stream_keeps_the_privacy_statement_and_tries_again(page, server):
    """A refusal (the viewers' places taken, or this page's last stream still holding its place)
    wrote over #stream-note, the privacy statement, and said only "Reload the page"."""
    refusal = "you are watching the live view already (another tab or window): close it first"
    asked = []

    def stream(route):
        asked.append(route.request.url)
        if len(asked) < 3:
            route.fulfill(status=503, content_type="application/json", body=json.dumps({"error": refusal}))
        else:
            route.continue_()

    page.route("**/live.mjpg*", stream)
    page.goto(f"{server.url}/live")
    note = text(page, "#stream-note")
    assert "not stored" in note or "stored" in note
    wait_in_page(page, "document.getElementById('stream-status').textContent.includes('Trying again in 2 s')")
    assert refusal in text(page, "#stream-status") and text(page, "#stream-note") == note
    page.clock.fast_forward(2_000)
    wait_in_page(page, "document.getElementById('stream-status').textContent.includes('Trying again in 4 s')")  # back-off
    page.clock.fast_forward(4_000)
    wait_in_page(page, "Number(document.getElementById('stream').dataset.frames) > 0")
    assert text(page, "#stream-status") == "" and text(page, "#stream-note") == note


@pytest.mark.parametrize("which", ["/live.mjpg", "/api/timeline"])
def test_an_ended_session_stops_the_picture_and_the_chart(page, server, which):
    """After a 401 neither asks again (state.js takes the page to the log-in): the chart asked
    every 5 s for ever, also after the session had ended."""
    asked = []

    def ended(route):
        asked.append(route.request.url)
        route.fulfill(status=401, content_type="application/json", body=json.dumps({"error": "log in first"}))

    page.route(f"**{which}*", ended)
    page.goto(f"{server.url}/live")
    if which == "/live.mjpg":
        wait_in_page(page, "document.getElementById('stream-status').textContent.includes('session ended')")
    wait_for(lambda: page.evaluate("1") and asked, what="the page asked once")
    page.clock.fast_forward(60_000)
    assert stays(lambda: page.evaluate("1") and len(asked) == 1, 0.5), asked


def test_a_hidden_tab_asks_for_nothing_and_catches_up_when_shown(page, server):
    """A background /live tab asked the database every 5 s for ever and held a viewer's place."""
    asked = []
    page.on("request", lambda r: asked.append(r.url) if "/api/timeline" in r.url or "/live.mjpg" in r.url else None)
    page.goto(f"{server.url}/live")
    wait_in_page(page, "Number(document.getElementById('stream').dataset.frames) > 0")
    wait_in_page(page, "document.getElementById('timeline-svg') !== null")
    hide(page, True)
    seen, shown = len(asked), frames(page)
    # the stream let go of at once (its viewer's place with it): no frame comes
    assert stays(lambda: frames(page) == shown, 1.0), frames(page) - shown
    page.clock.fast_forward(60_000)
    assert stays(lambda: page.evaluate("1") and len(asked) == seen, 0.5), asked[seen:]  # nothing asked for
    with page.expect_request(lambda r: "/api/timeline" in r.url):
        hide(page, False)  # at once, not after the next 5 s
    wait_in_page(page, "Number(document.getElementById('stream').dataset.frames) > 0 && "
                       "document.getElementById('stream-status').textContent === ''")


def test_a_chart_the_device_stopped_answering_for_says_so(page, server):
    """The chart kept its old "now" with no word that it had stopped following."""
    page.goto(f"{server.url}/live")
    wait_in_page(page, "document.getElementById('timeline-svg') !== null")
    assert text(page, "#timeline-stale") == ""
    page.route("**/api/timeline*", lambda route: route.abort("connectionrefused"))
    for _ in range(4):  # 20 s of polls that fail
        page.clock.fast_forward(5_000)
    wait_in_page(page, "document.getElementById('timeline-stale').textContent.includes('not up to date')")
    assert "stale" in page.get_attribute("#timeline", "class")
    page.unroute("**/api/timeline*")
    page.clock.fast_forward(5_000)
    wait_in_page(page, "document.getElementById('timeline-stale').textContent === ''")


def test_shown_again_at_once_the_stream_still_held_is_not_another_tab(page, server):
    """Hidden, the page lets go of its stream, but the device notices only at its next frame
    (2 s apart while the camera is paused): shown again before that, the refusal told the
    student to close "another tab or window" they did not have. It says it is reconnecting."""
    refusal = "you are watching the live view already (another tab or window): close it first"
    held = {"on": False}

    def stream(route):
        if held["on"]:
            held["on"] = False  # the device has noticed by the next try
            route.fulfill(status=503, content_type="application/json", body=json.dumps({"error": refusal}))
        else:
            route.continue_()

    page.route("**/live.mjpg*", stream)
    page.goto(f"{server.url}/live")
    wait_in_page(page, "Number(document.getElementById('stream').dataset.frames) > 0")
    hide(page, True)
    held["on"] = True
    hide(page, False)
    wait_in_page(page, "document.getElementById('stream-status').textContent.startsWith('Reconnecting')")
    assert "another tab" not in text(page, "#stream-status")
    shown = frames(page)
    page.clock.fast_forward(2_000)
    wait_in_page(page, f"Number(document.getElementById('stream').dataset.frames) > {shown}")
    assert text(page, "#stream-status") == ""
