"""The classroom page as an instructor meets it in a lesson: a laptop that slept with the
page open, desks that send what no desk should. A real Mosquitto, the real service, headless
Chromium; Playwright's clock moves the page's own timers on where a test would wait."""
from __future__ import annotations

import datetime
import json
import re
import socket
import struct
import threading
import time

import mqtt_broker
import requests
import test_fleet_classroom as base
from conftest import ADMIN_PASSWORD, login, stays, wait_for

from edge_app.fleet.classroom import app as classroom_app
from edge_app.fleet.classroom import model as classroom_model
from edge_app.fleet.classroom.desk import DESK_UPDATE_BURST
from edge_app.fleet.publisher import Publisher
from edge_app.store.database import Store

broker = mqtt_broker.broker  # fixtures: a real Mosquitto per test, the service, desks, a browser page
classroom, devices, page = base.classroom, base.devices, base.page


class Relay:
    """A TCP relay in front of the classroom server. ``lose_open_connections`` models a
    laptop that slept with the page open: the server's end of each open connection is
    gone (timed out meanwhile), while the browser is told nothing until it sends on one
    (then a reset, as from a server that forgot it); new connections wait for
    ``network_back`` (the laptop woke, its Wi-Fi is not yet there)."""

    def __init__(self, port: int):
        self.upstream = port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.pairs: list[tuple[socket.socket, socket.socket]] = []
        self.lost: set[socket.socket] = set()  # browser ends whose server end is gone
        self.up = threading.Event()
        self.up.set()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.up.wait()
            server = socket.create_connection(("127.0.0.1", self.upstream))
            self.pairs.append((client, server))
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                if src in self.lost:  # the browser sends on a connection the server forgot
                    src.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    src.close()  # a reset
                    return
                if dst in self.lost:  # what the server sent is not delivered, nor its end
                    return
                dst.sendall(data)
            if dst not in self.lost:
                dst.shutdown(socket.SHUT_WR)  # an ordinary end is passed on
        except OSError:
            return

    def lose_open_connections(self) -> None:
        self.up.clear()
        for client, server in self.pairs:
            self.lost.add(client)
            server.shutdown(socket.SHUT_RDWR)  # no word of it reaches the browser
            server.close()
        self.pairs = []

    def network_back(self) -> None:
        self.up.set()

    def close(self) -> None:
        self.up.set()
        self.listener.close()
        for client in self.lost:
            client.close()
        for client, server in self.pairs:
            client.close()
            server.close()


def open_page(tab, url: str) -> None:
    tab.goto(f"{url}/")
    tab.fill("#username", "admin")
    tab.fill("#password", ADMIN_PASSWORD)
    tab.click("button[type=submit]")
    tab.locator("#conn", has_text="Live").wait_for(timeout=10_000)


def test_a_page_whose_connection_died_unnoticed_says_so_and_reconnects(classroom, devices, page):
    """The instructor's laptop sleeps through part of the lesson with the page open. Its live
    stream's connection is dead, but an event stream only ever receives, so the browser is
    never told: the page said "Live" for the rest of the day over tiles frozen at the moment
    it slept. It now hears from the server at least every few seconds, and after 15 s of
    silence says the tiles are not current and opens a new stream by itself."""
    relay = Relay(classroom.server.port)
    try:
        store, _ = devices("desk-s", "Row 4, seat 1")
        store.log_state_change(time.time(), "Engaged", "Engaged", None, None)
        # the page's timers, moved on by the test instead of waited out; and the laptop's clock three hours off
        page.clock.install(time=datetime.datetime.now() - datetime.timedelta(hours=3))
        open_page(page, f"http://127.0.0.1:{relay.port}")
        page.locator("li.desk[data-device='desk-s'][data-level='Engaged']").wait_for(timeout=10_000)
        # from here the page's clock is the test's alone: running on in real time, the time between the last word
        # and the look after run_for(12_000) counted as silence too, and 3 to 4 s of it (a loaded machine) said "No word"
        page.clock.pause_at(page.evaluate("Date.now()") / 1000 + 1)  # seconds
        store.log_state_change(time.time(), "Partially engaged", "Partially engaged", None, None)
        page.locator("li.desk[data-device='desk-s'][data-level='Partially engaged']").wait_for(timeout=10_000)
        relay.lose_open_connections()  # the laptop sleeps just after that word from the server
        store.log_state_change(time.time(), "Distracted", "Distracted", None, None)  # the lesson goes on
        page.clock.run_for(12_000)
        assert page.inner_text("#conn") == "Live"  # a quiet classroom is not yet a lost one
        page.clock.run_for(4_000)
        text = page.inner_text("#conn")
        assert "No word from the classroom server since " in text and "as they were" in text, text
        # the time it was last heard, which stays true as it goes on (a "for 15 s" written once did not count on)
        said = re.search(r"since (\d{1,2}):(\d{2}):\d{2}\s*([AP]M)?", text)
        assert said, text
        # ... by the server's clock, as the rest of the page (it said the laptop's: three hours off)
        hour, minute, half = int(said[1]), int(said[2]), said[3]
        hour = hour % 12 + (12 if half == "PM" else 0) if half else hour
        server = time.localtime()
        assert abs((hour * 60 + minute) - (server.tm_hour * 60 + server.tm_min)) % 1440 in (0, 1, 1439), (text, server)
        # the whole class is shown as it was: the counts and "Needs attention" too, not only the tiles
        assert page.locator(".classroom.stale").count() == 1 and page.locator("#conn.warn").count() == 1
        # the tiles are the class as it was: grey, their durations stopped where the page last knew them
        assert page.locator("#desks.stale").count() == 1
        tile = "li.desk[data-device='desk-s']"
        frozen = page.inner_text(f"{tile} .since")
        page.clock.run_for(120_000)
        assert page.inner_text(f"{tile} .since") == frozen, frozen  # not two minutes more of what nobody saw
        assert page.get_attribute(tile, "data-level") == "Partially engaged"
        relay.network_back()
        page.locator("li.desk[data-device='desk-s'][data-level='Distracted']").wait_for(timeout=10_000)
        page.locator("#conn", has_text="Live").wait_for(timeout=5_000)
        page.locator("#desks:not(.stale)").wait_for(timeout=5_000)
    finally:
        relay.close()


def test_a_stream_that_opens_and_sends_nothing_leaves_the_page_blind(classroom, devices, page):
    """The server's stream stops sending (a hung server thread, a proxy that buffers): the
    page went grey after 15 s and reconnected, but as the new stream opened, before any word
    came on it, it said "Live" again over coloured tiles, every 16 s. Silence is counted from
    the last update: the page stays blind until one comes."""
    store, _ = devices("desk-h", "Row 5, seat 1")
    store.log_state_change(time.time(), "Engaged", "Engaged", None, None)
    page.clock.install()
    open_page(page, classroom.url)
    page.locator("li.desk[data-device='desk-h'][data-level='Engaged']").wait_for(timeout=10_000)
    hung, calls = threading.Event(), []
    real_wait = classroom.classroom.wait_change

    def hanging(version, timeout):
        calls.append(version)
        while hung.is_set():
            time.sleep(0.05)
        return real_wait(version, timeout)

    hung.set()
    classroom.classroom.wait_change = hanging
    try:
        before = len(calls)
        page.clock.run_for(16_000)  # nothing for 15 s: the page reconnects by itself
        wait_for(lambda: len(calls) > before + 1, what="the new stream open at the server")
        for _ in range(3):  # a new stream that says nothing: still blind, whatever the clock
            page.clock.run_for(1_000)
            assert page.locator("#desks.stale").count() == 1
            assert "No word from the classroom server since" in page.inner_text("#conn")
        said = page.inner_text("#conn")
        before = len(calls)
        page.clock.run_for(16_000)  # and again: the time it says is still the last update's, not the last opening's
        wait_for(lambda: len(calls) > before, what="another new stream at the server")
        assert page.inner_text("#conn") == said, (said, page.inner_text("#conn"))
    finally:
        hung.clear()
        classroom.classroom.wait_change = real_wait
    page.clock.run_for(20_000)
    page.locator("#conn", has_text="Live").wait_for(timeout=10_000)
    page.locator("#desks:not(.stale)").wait_for(timeout=5_000)


def test_a_quiet_classroom_still_sends_its_pages_a_word_every_few_seconds(classroom, monkeypatch):
    """What lets a page tell a quiet classroom from a lost connection: with no desk changing,
    the stream still carries an update (no desks in it) every ``KEEPALIVE_S``. It carried a
    comment line, which a page's script never sees."""
    monkeypatch.setattr(classroom_app, "KEEPALIVE_S", 0.3)  # the product's 5 s and 2 s, shortened to be quick
    monkeypatch.setattr(classroom_app, "SESSION_RECHECK_S", 0.1)
    with login(classroom.url).get(f"{classroom.url}/api/classroom/events", stream=True, timeout=(5, 5)) as r:
        updates, deadline = [], time.monotonic() + 20  # ends at 4 updates: only a broken stream waits this long
        for line in r.iter_lines(decode_unicode=True):  # a line at least every 0.3 s: a comment or an update
            if line.startswith("data: "):
                updates.append(json.loads(line[6:]))
            if len(updates) == 4 or time.monotonic() > deadline:
                break
    assert updates[0]["full"] is True
    quiet = updates[1:]
    assert [(u["full"], u["desks"]) for u in quiet] == [(False, [])] * 3, quiet
    assert all(u["broker"]["connected"] for u in quiet)


def test_a_desk_name_or_label_that_is_not_text_is_not_shown():
    """Anyone who may publish can send a desk name of any JSON type: a list or an object was
    shown on the tile as Python wrote it ("{'a': [1, 1]}"). A desk's name and label are text;
    anything else is left out (the tile then shows the device id, as for a desk with no name)."""
    room = classroom_model.Classroom()
    sent = time.time()
    for device_id, desk, label in (("desk-1", {"a": [1, 1]}, ["x"]), ("desk-2", 7, {"b": 1}), ("desk-3", None, 3)):
        payload = json.dumps({"level": "Engaged", "since": sent, "seq": 1, "sent": sent, "desk": desk, "label": label})
        assert room.apply_state(device_id, payload.encode())
    room.apply_heartbeat("desk-1", json.dumps({"heartbeat_s": 30, "sent": sent, "desk": [1, 2]}).encode())
    shown = {d["device_id"]: (d["desk"], d["label"]) for d in room.snapshot()["desks"]}
    assert shown == {"desk-1": ("", "Engaged"), "desk-2": ("", "Engaged"), "desk-3": ("", "Engaged")}, shown
    room.apply_heartbeat("desk-1", json.dumps({"heartbeat_s": 30, "sent": sent, "desk": "Row 2, seat 1"}).encode())
    renamed = {d["device_id"]: d["desk"] for d in room.snapshot()["desks"]}["desk-1"]
    assert renamed == "Row 2, seat 1"  # a name in text still renames it


def test_a_desks_name_and_label_keep_no_invisible_or_direction_changing_character():
    """A desk's own broker account may send any name: with a right-to-left override, zero-width
    or control characters it read as another seat's name (or reversed one) on the instructor's
    page while differing from it unseen. Those characters are taken out, white space (line
    separators too) becomes single spaces, and a name or label is bounded."""
    room = classroom_model.Classroom()
    sent = time.time()
    payload = json.dumps({"level": "Engaged", "since": sent, "seq": 1, "sent": sent,
                          "desk": "\u202eRow 1,\u2028\u200b seat\t1\x07\u2066\ufeff\u3164\u2800",
                          "label": "Engaged\u202e" + "e\u0301\u0301\u0301\u0301\u0301" + "x" * 200})
    assert room.apply_state("desk-08", payload.encode())
    desk = room.snapshot()["desks"][0]
    assert desk["desk"] == "Row 1, seat 1", ascii(desk["desk"])
    assert desk["label"] == ("Engaged" + "e\u0301\u0301\u0301" + "x" * 200)[:120], ascii(desk["label"])
    beat = {"heartbeat_s": 30, "sent": sent, "desk": "\u200b" * 10 + "Row 2 " + "9" * 100}
    assert room.apply_heartbeat("desk-08", json.dumps(beat).encode())  # a rename by heartbeat alike
    assert room.snapshot()["desks"][0]["desk"] == ("Row 2 " + "9" * 100)[:64]
    assert room.apply_heartbeat("desk-08", json.dumps({**beat, "desk": "\u202e\u200b \u2029"}).encode())
    assert room.snapshot()["desks"][0]["desk"] == ""  # nothing visible: the tile shows the device id


def test_a_desk_cannot_pass_words_off_as_a_level_or_another_seat_s_name_in_chromium(classroom, broker, page):
    """A desk's account publishing "Fire alarm evacuate now" as its level had it on a tile and
    in the count line as if it were a level, and one naming itself as another seat gave two tiles
    one name: the instructor could go to the wrong student. An unknown level is said to be one,
    cut short, in the neutral look, counted as "Unknown state"; two desks showing one name are
    told apart by their device ids, on the tiles (in seat order too) and in the alerts, also
    when the copy spells a letter with its Cyrillic twin."""
    since = time.time() - 120
    with mqtt_broker.publisher(broker, client_id="room-spoof") as client:
        for device_id, name, level in (("desk-01", "Row 1, seat 1", "Not engaged"), ("desk-02", "Row 2", "Engaged"),
                                       ("desk-08", "r\u043ew 1,  seat 1\u202e", "Fire alarm evacuate now")):
            payload = json.dumps({"level": level, "since": since, "seq": 1, "sent": time.time(), "desk": name})
            mqtt_broker.send(client, f"engage/{device_id}/availability", "online")
            mqtt_broker.send(client, f"engage/{device_id}/state", payload, retain=False)
        open_page(page, classroom.url)
        page.fill("#threshold", "0")
        page.dispatch_event("#threshold", "change")
        page.locator("li.desk").nth(2).wait_for(timeout=10_000)
    assert page.locator("li.desk .name").all_inner_texts() == [
        "Row 1, seat 1 (desk-01)", "Row 2", "r\u043ew 1, seat 1 (desk-08)"]  # the unknown level last
    spoof = page.locator("li.desk[data-device='desk-08']")
    assert spoof.locator(".level").inner_text() == "Unknown state: \u201cFire alarm evac\u2026\u201d"
    assert "lvl-other" in spoof.get_attribute("class")
    counts = page.locator("#counts").inner_text()
    assert "1 Unknown state" in counts and "Fire" not in counts, counts
    assert page.locator("#alerts li.alert").all_inner_texts() == ["Row 1, seat 1 (desk-01): Not engaged for 2 min"]
    page.check("#seat-order")
    assert page.locator("li.desk .name").all_inner_texts() == [  # a Cyrillic "o" sorts after Latin letters
        "Row 1, seat 1 (desk-01)", "Row 2", "r\u043ew 1, seat 1 (desk-08)"]


NATURAL_ORDER = ["Row 1, seat 2", "Row 2, seat 1", "row 2, seat 10", "Row 10, seat 1"]


def test_desks_in_the_same_state_are_ordered_by_the_numbers_in_their_names():
    """A room's desks are named "Row 2", "Row 10": compared as text, "Row 10" came before
    "Row 2" wherever desks tie (the same state since the same time, every offline desk)."""
    room = classroom_model.Classroom()
    sent = time.time()
    for i, name in enumerate(reversed(NATURAL_ORDER)):
        payload = json.dumps({"level": "Engaged", "since": sent - 60, "seq": 1, "sent": sent, "desk": name})
        assert room.apply_state(f"desk-{i}", payload.encode())
    assert [d["desk"] for d in room.snapshot()["desks"]] == NATURAL_ORDER


def test_the_page_orders_desks_by_the_numbers_in_their_names(classroom, broker, page):
    """The page sorts the desks again itself (each update brings only the changed ones): it
    put "Row 10" before "Row 2" too."""
    since = time.time() - 120
    with mqtt_broker.publisher(broker, client_id="room-sim") as client:
        for i, name in enumerate(reversed(NATURAL_ORDER)):
            payload = json.dumps({"level": "Engaged", "since": since, "seq": 1, "sent": time.time(), "desk": name})
            mqtt_broker.send(client, f"engage/desk-{i}/availability", "online")
            mqtt_broker.send(client, f"engage/desk-{i}/state", payload, retain=False)
        open_page(page, classroom.url)
        page.locator("li.desk").nth(len(NATURAL_ORDER) - 1).wait_for(timeout=10_000)
        assert page.locator("li.desk .name").all_inner_texts() == NATURAL_ORDER


def test_a_broker_restart_is_told_to_the_instructor_in_words_they_can_act_on(classroom, broker, page, caplog):
    """The broker restarts mid-lesson: the page said "no link to the broker (lost the
    connection (Unspecified error); retrying)", paho's words, which tell an instructor neither
    what is wrong nor what to do. It now says so in plain words (it retries by itself; whom to
    tell if it lasts), and keeps the technical reason on a details line and in the server's log."""
    caplog.set_level("WARNING", logger="edge_app.fleet.classroom.subscriber")
    open_page(page, classroom.url)
    broker.stop()
    page.locator("#conn.warn", has_text="Not receiving the desks").wait_for(timeout=10_000)
    said = page.locator("#conn .says").inner_text(timeout=5_000)
    assert "Unspecified error" not in said and "lost the connection" not in said, said
    assert "tries again by itself" in said and "technician" in said, said
    detail = page.locator("#conn .detail").inner_text(timeout=5_000)
    assert detail.startswith("For a technician:") and "lost the connection (Unspecified error)" in detail, detail
    assert any("lost the connection" in r.getMessage() and "Unspecified error" in r.getMessage()
               for r in caplog.records), caplog.records
    broker.start()
    page.locator("#conn:not(.warn)", has_text="Live").wait_for(timeout=20_000)
    assert page.locator("#conn .detail").count() == 0


def test_a_page_whose_place_a_newer_page_took_stops_instead_of_taking_it_back(classroom, page, monkeypatch):
    """One log-in may hold 6 live pages; a seventh ends the oldest's stream. The browser then
    reconnected that page by itself 2 s later, which ended the next oldest, and so on: the
    pages took each other's place in turn all lesson, each flashing "Reconnecting…". The
    page whose place was taken now says so and stays stopped until the instructor reloads it."""
    monkeypatch.setattr(classroom_app, "SESSION_RECHECK_S", 0.2)  # the product's 2 s, shortened to be quick
    open_page(page, classroom.url)
    asked = []
    page.on("request", lambda r: asked.append(r.url) if r.url.endswith("/api/classroom/events") else None)
    other = requests.Session()  # the same log-in's other pages: a projector, a tablet, more tabs
    for c in page.context.cookies():
        other.cookies.set(c["name"], c["value"], domain=c["domain"], path=c["path"])
    newer = [other.get(f"{classroom.url}/api/classroom/events", stream=True, timeout=(5, 30))
             for _ in range(classroom_app.STREAMS_PER_SESSION)]
    try:
        assert [r.status_code for r in newer] == [200] * classroom_app.STREAMS_PER_SESSION
        page.locator("#conn.warn", has_text="This page stopped updating").wait_for(timeout=10_000)
        assert "reload" in page.inner_text("#conn").lower()

        def quiet() -> bool:
            page.evaluate("0")  # Playwright hands over the page's events (its requests) only inside a call
            return not asked
        assert stays(quiet, 2.5), asked  # no reconnection (the browser's own came after 2 s)
    finally:
        for r in newer:
            r.close()


def test_a_desk_moved_to_another_room_leaves_the_old_rooms_page(classroom, broker, tmp_path):
    """An admin moves a desk to another room (Admin -> Classroom: a new topic prefix). Its
    retained "online" and state stayed under the old prefix, so the old room's page showed it
    online for good (a desk without heartbeats never timed out). The publisher now clears its
    own retained messages under the old topics when it starts under new ones."""
    admin = login(classroom.url)
    store = Store(tmp_path / "desk-m")
    try:
        before = Publisher(base.mqtt(broker, device_id="desk-m", desk="Row 3", heartbeat_s=0), store).start()
        store.log_state_change(time.time(), "Engaged", "Engaged", None, None)
        wait_for(lambda: base.desks(admin, classroom.url).get("desk-m", {}).get("level") == "Engaged")
        before.stop()
        moved = Publisher(base.mqtt(broker, device_id="desk-m", desk="Row 3", heartbeat_s=0,
                                    topic_prefix="room-2"), store).start()
        try:
            wait_for(lambda: "desk-m" not in base.desks(admin, classroom.url), timeout=10,
                     what="the desk moved away left the old room's page")
        finally:
            moved.stop()
        old_room = mqtt_broker.Listener(broker, ["engage/desk-m/#", "room-2/desk-m/#"])  # what a new page gets
        try:
            wait_for(lambda: old_room.connected)
            wait_for(lambda: old_room.payloads("room-2/desk-m/availability"))
            assert old_room.payloads("engage/desk-m/state") == old_room.payloads("engage/desk-m/availability") == []
        finally:
            old_room.close()
    finally:
        store.close()


def test_the_laptops_clock_set_forward_is_not_taken_for_a_lost_connection(classroom, devices, page):
    """The silence watchdog measured time on the wall clock: a laptop whose clock a time
    server steps forward (after a sleep, or a wrong time zone corrected) made a live page
    drop its stream and open another, saying "No word from the classroom server" it had just
    heard from."""
    store, _ = devices("desk-c", "Row 1, seat 1")
    store.log_state_change(time.time(), "Engaged", "Engaged", None, None)
    streams = []
    page.on("request", lambda r: streams.append(r.url) if r.url.endswith("/api/classroom/events") else None)
    page.clock.install()
    open_page(page, classroom.url)
    page.locator("li.desk[data-device='desk-c'][data-level='Engaged']").wait_for(timeout=10_000)
    opened = len(streams)
    page.clock.set_system_time(page.evaluate("Date.now()") / 1000 + 60)  # seconds: a minute forward
    page.clock.run_for(2_000)  # the watchdog looks once a second
    assert len(streams) == opened, "the page dropped a live stream for a step of its clock"
    assert page.inner_text("#conn") == "Live"
    store.log_state_change(time.time(), "Distracted", "Distracted", None, None)
    page.locator("li.desk[data-device='desk-c'][data-level='Distracted']").wait_for(timeout=10_000)


def flip(level: str, since: float, seq: int, sent: float, **extra) -> bytes:
    """A state as a desk publishes it."""
    return json.dumps({"level": level, "since": since, "seq": seq, "sent": sent, "desk": "Flip", **extra}).encode()


def test_a_student_moving_between_the_alert_levels_is_disengaged_all_along():
    """"Needs attention" timed each level's own ``since``: a student moving between "Not
    engaged" and "Distracted" every 90 s was never flagged against a 2-minute threshold.
    The model keeps when the stretch of alert levels began (a short break of other levels is
    not counted in it), and a desk that went offline (or states the service may have missed)
    restarts it."""
    now = 1_800_000_000.0
    clock = [now]
    room = classroom_model.Classroom(clock=lambda: clock[0])

    def shown(device_id: str = "flip") -> dict:
        return {d["device_id"]: d for d in room.snapshot()["desks"]}[device_id]

    assert room.apply_state("flip", flip("Distracted", now - 170, 1, now), retained=True)
    assert room.apply_state("flip", flip("Not engaged", now - 80, 2, now))
    assert shown()["since"] == now - 80 and shown()["disengaged_since"] == now - 170
    assert room.apply_state("flip", flip("Distracted", now - 10, 3, now))
    assert shown()["disengaged_since"] == now - 170  # and on, however often it moves
    # the longest disengaged first, though its level's own time is the shortest
    assert room.apply_state("steady", flip("Distracted", now - 100, 1, now))
    assert [d["device_id"] for d in room.snapshot()["desks"]] == ["flip", "steady"]
    assert room.apply_state("flip", flip("Present", now - 5, 4, now))  # an expression not read: no evidence
    assert shown()["disengaged_since"] is None  # a break: not shown as disengaged
    assert room.apply_state("flip", flip("Not engaged", now - 2, 5, now))
    assert shown()["disengaged_since"] == now - 167  # the same stretch, less its 3 s break
    assert room.apply_state("flip", flip("Distracted", now - 1, 6, now))
    room.apply_availability("flip", b"offline")  # its will: what it did meanwhile is unknown
    assert shown()["disengaged_since"] == now - 1
    assert room.apply_state("flip", flip("Not engaged", now, 7, now))
    room.set_link(True)
    room.set_link(False, "lost the connection")
    room.set_link(True)  # states sent while the service was away may have been missed ...
    assert room.apply_state("flip", flip("Not engaged", now, 7, now), retained=True) is False  # ... none was
    assert shown()["disengaged_since"] == now - 1
    room.set_link(False, "lost the connection")
    room.set_link(True)
    assert room.apply_state("flip", flip("Distracted", now + 5, 9, now + 5), retained=True)  # seq 8 was missed
    assert shown()["disengaged_since"] == now + 5
    # a desk clock three days behind: the stretch is dated by the same correction as the level
    behind = now - 3 * 86400
    assert room.apply_state("late", flip("Distracted", behind - 200, 1, behind))
    assert room.apply_state("late", flip("Not engaged", behind - 30, 2, behind))
    assert shown("late")["disengaged_since"] == now - 200 and shown("late")["since"] == now - 30


def test_a_glance_up_does_not_end_a_stretch_but_a_return_does():
    """40 s sad, a 3 s glance up, over and over: each glance ended the stretch, so the page
    never flagged the student against a 2-minute threshold, while the desk's own buzzer
    (which bridges breaks shorter than STRETCH_BREAK_S) sounded. The page times the stretch
    as the desk does: short breaks not counted, a break of a minute or more ends it, and so
    does a desk going offline during a break (what it did meanwhile is unknown)."""
    t0 = 1_800_000_000.0
    clock = [t0]
    room = classroom_model.Classroom(clock=lambda: clock[0])

    def shown() -> dict:
        return {d["device_id"]: d for d in room.snapshot()["desks"]}["glance"]

    seq, t = 0, t0
    for _ in range(4):  # 4 x (40 s Not engaged, 3 s Engaged)
        for level, lasts in (("Not engaged", 40), ("Engaged", 3)):
            seq += 1
            clock[0] = t
            assert room.apply_state("glance", flip(level, t, seq, t))
            t += lasts
    clock[0] = t
    assert room.apply_state("glance", flip("Not engaged", t, seq + 1, t))
    assert shown()["disengaged_since"] == t0 + 4 * 3  # 160 s disengaged: past a 2-minute threshold
    assert room.snapshot()["desks"][0]["device_id"] == "glance"

    def then(level: str, at: float, number: int) -> None:
        clock[0] = at
        assert room.apply_state("glance", flip(level, at, number, at))

    then("Engaged", t + 10, seq + 2)  # a return: a break of a whole minute ends it
    then("Distracted", t + 70, seq + 3)
    assert shown()["disengaged_since"] == t + 70
    then("Present", t + 80, seq + 4)  # offline during a break: the stretch ends with it
    room.apply_availability("glance", b"offline")
    room.apply_availability("glance", b"online")
    then("Not engaged", t + 85, seq + 5)
    assert shown()["disengaged_since"] == t + 85


def test_the_page_alerts_on_a_student_moving_between_the_alert_levels(classroom, broker, page):
    """The reviewer's case: "Distracted" for 90 s, then "Not engaged" for 80 s. The tile says
    "Not engaged for 1 min" and the alert list stayed empty, though the student had been
    disengaged for almost 3 minutes (threshold 2)."""
    now = time.time()
    with mqtt_broker.publisher(broker, client_id="flip2-sim") as client:
        mqtt_broker.send(client, "engage/flip2/availability", "online")
        mqtt_broker.send(client, "engage/flip2/state", flip("Distracted", now - 170, 1, now))
        mqtt_broker.send(client, "engage/flip2/state", flip("Not engaged", now - 80, 2, now))
        open_page(page, classroom.url)
        tile = page.locator("li.desk[data-device='flip2'][data-level='Not engaged']")
        tile.wait_for(timeout=10_000)
        alert = page.locator("#alerts li.alert")
        alert.wait_for(timeout=10_000)
        assert alert.inner_text() == "Flip: Not engaged now, not engaged or distracted for 2 min"
        text = tile.inner_text()
        assert "for 1 min" in text and "not engaged or distracted for 2 min" in text, text


def test_empty_seats_are_left_out_of_the_class_figure_and_ordered_after_the_working_desks(classroom, broker, page):
    """Two engaged students and two empty seats read "50% engaged": the class figure divided
    by time that included "Absent". It is now the share of the time students were there, and
    a desk "Absent" for 5 minutes (an empty seat) is ordered after the working desks, on the
    server and on the page alike, instead of at the top among those needing the instructor."""
    now = time.time()
    start = (now // 60 - 1) * 60  # the minute that just ended
    rows = {"desk-1": ("Row 1", "Absent", now - 600, {"absent_s": 60.0}),  # an empty seat
            "desk-2": ("Row 2", "Engaged", now - 300, {"engaged_s": 60.0}),
            "desk-3": ("Row 3", "Absent", now - 30, {"absent_s": 30.0, "engaged_s": 30.0}),  # just stepped out
            "desk-4": ("Row 4", "Not engaged", now - 200, {"not_engaged_s": 60.0})}
    with mqtt_broker.publisher(broker, client_id="room-sim") as client:
        for device_id, (name, level, since, seconds) in rows.items():
            mqtt_broker.send(client, f"engage/{device_id}/availability", "online")
            state = {"level": level, "since": since, "seq": 1, "sent": now, "desk": name}
            mqtt_broker.send(client, f"engage/{device_id}/state", json.dumps(state), retain=False)
            minute = {"start": start, "seq": 2, "sent": now, "desk": name, **seconds}
            mqtt_broker.send(client, f"engage/{device_id}/minute", json.dumps(minute), retain=False)
        order = ["Row 4", "Row 3", "Row 2", "Row 1"]
        body = wait_for(lambda: (b := login(classroom.url).get(f"{classroom.url}/api/classroom", timeout=5).json())
                        and b["recent"] and b["recent"]["desks"] == 4 and b)
        assert [d["desk"] for d in body["desks"]] == order
        # 90 s engaged of the 150 s students were there (counting the empty seat's 60 s it is 90 of 240: 38%,
        # engaged_share's meaning kept for scripts that read it)
        assert body["recent"]["engaged_share_there"] == 0.6 and body["recent"]["there_s"] == 150.0
        assert body["recent"]["engaged_share"] == 0.375
        open_page(page, classroom.url)
        page.locator("li.desk").nth(3).wait_for(timeout=10_000)
        assert page.locator("li.desk .name").all_inner_texts() == order
        page.locator("#class-recent", has_text="Class, last 1 min: 60% engaged while students were there "
                                               "(4 desks)").wait_for(timeout=10_000)
        # each tile counts as the class line does ("50% engaged" for a student there all the time they were
        # there read as half-hearted) and says how long its seat was empty
        tiles = {name: page.locator("li.desk", has_text=name).locator(".recent") for name in order}
        assert tiles["Row 3"].inner_text() == "Last 1 min: 100% engaged while there, away 50%"
        assert tiles["Row 2"].inner_text() == "Last 1 min: 100% engaged while there"
        assert tiles["Row 1"].inner_text() == "Last 1 min: away the whole time"
        assert "Absent" in (tiles["Row 3"].get_attribute("title") or "")  # what it counts, on hover


def test_a_desk_back_at_its_pace_is_no_longer_counted_as_flooding_with_no_page_open():
    """Held back once (a backlog replayed after an outage), a desk stayed "held" until an open
    page's stream released it: with no page open (between lessons) every later message at
    its normal pace was counted and logged as flooding, all day."""
    t = [1000.0]
    room = classroom_model.Classroom(clock=lambda: t[0], monotonic=lambda: t[0])
    beat = lambda: room.apply_heartbeat("desk-07", json.dumps({"heartbeat_s": 30, "sent": t[0]}).encode())  # noqa: E731
    for _ in range(int(DESK_UPDATE_BURST) + 10):  # a burst all at once
        beat()
    burst = room.held_back()["desk-07"]
    assert burst > 0
    for _ in range(180):  # then one a second for three minutes, nobody watching
        t[0] += 1.0
        beat()
    assert room.held_back()["desk-07"] == burst


def test_no_alert_is_raised_from_time_the_page_did_not_see(classroom, broker, page):
    """An instructor's review: with no word from the desks (the broker gone, or the page's
    stream frozen) the page still raised "Row 1, seat 1: Distracted for 43 s" from time
    nobody saw, and a screen reader announced it. While the page is blind, a desk only stays
    on the alert list it was on; once the desks are heard again, the alert comes."""
    now = time.time()
    with mqtt_broker.publisher(broker, client_id="blind-sim") as client:
        mqtt_broker.send(client, "engage/blind/availability", "online")
        mqtt_broker.send(client, "engage/blind/state", flip("Distracted", now - 40, 1, now))
        open_page(page, classroom.url)
        page.locator("li.desk[data-device='blind'][data-level='Distracted']").wait_for(timeout=10_000)
    page.fill("#threshold", "1")
    page.dispatch_event("#threshold", "change")
    alerts = page.locator("#alerts li.alert")
    assert alerts.count() == 0  # 40 s of 60
    broker.stop()
    page.locator("#conn.warn", has_text="Not receiving the desks").wait_for(timeout=10_000)
    page.fill("#threshold", "0.5")
    page.dispatch_event("#threshold", "change")
    assert stays(lambda: alerts.count() == 0, 2.5)  # past 30 s now, but not seen
    broker.start()
    page.locator("#conn:not(.warn)", has_text="Live").wait_for(timeout=20_000)
    alerts.first.wait_for(timeout=10_000)
    assert alerts.first.inner_text().startswith("Flip: Distracted for")
