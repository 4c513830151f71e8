"""What leaves the device for the classroom's broker: never a student's name, also not in the
desk's label a teacher types (the settings say "never a student's name"; nothing held them
to it). The publisher's payloads, read without a broker (port 1: never connected)."""
from __future__ import annotations

import json
import logging

import mqtt_broker
import pytest
from conftest import wait_for
from mqtt_broker import PASSWORD, USER, Listener

from edge_app.fleet import publisher as publisher_mod
from edge_app.fleet.publisher import Publisher, names_a_student
from edge_app.fleet.settings import MqttSettings
from edge_app.store.accounts import Accounts
from edge_app.store.database import Store

broker = mqtt_broker.broker  # fixture: a real Mosquitto per test


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "device")
    yield s
    s.close()


def test_a_label_names_a_student_by_their_whole_user_name_or_a_part_of_it():
    assert names_a_student("Anna's desk", ["anna.k"]) and names_a_student("seat of ANNA.K", ["anna.k"])
    assert names_a_student("Row 2 (Ben)", ["s01", "ben"])
    # a seat, and a name inside another word or a short part of a user name, are no student's name
    assert not names_a_student("Row 2, seat 4", ["anna.k", "s01", "row2", "ben"])
    assert not names_a_student("Benches by the window", ["ben", "jo.w"])


def payloads(pub: Publisher, store: Store) -> tuple[dict, dict]:
    store.log_state_change(1_700_000_000.0, "Engaged", "Engaged", "neutral", 0.9)
    state = json.loads(pub.payload(pub.outbox.after(0, 1)[0])[1])
    return state, json.loads(pub.heartbeat_payload())


def test_a_desk_label_holding_a_students_name_is_not_sent_and_the_admin_is_told_once(store, caplog, monkeypatch):
    accounts = Accounts(store)
    accounts.create_user("anna.k", "student-pw-123", "student")
    caplog.set_level(logging.WARNING, "edge_app.fleet.publisher")
    pub = Publisher(MqttSettings(host="127.0.0.1", port=1, device_id="desk-07", desk="Anna's desk"), store)
    state, beat = payloads(pub, store)
    assert state["desk"] == "" and beat["desk"] == "" and "Anna" not in json.dumps([state, beat])
    said = [r for r in caplog.records if "holds the user name of a student" in r.getMessage()]
    assert len(said) == 1 and "anna" not in said[0].getMessage().lower()  # nor is the name repeated in the journal
    monkeypatch.setattr(publisher_mod, "DESK_CHECK_EVERY_S", 0.0)
    pub._check_desk()
    assert len([r for r in caplog.records if "holds the user name" in r.getMessage()]) == 1
    # a seat's label leaves as it is, until a student of that name is made (accounts come at any time)
    seat = Publisher(MqttSettings(host="127.0.0.1", port=1, device_id="desk-08", desk="Row 2, Ben"), store)
    assert payloads(seat, store)[0]["desk"] == "Row 2, Ben"
    accounts.create_user("ben", "student-pw-123", "student")
    seat._check_desk()
    assert payloads(seat, store)[0]["desk"] == ""


def test_a_label_that_comes_to_name_a_student_goes_from_the_brokers_kept_copies(broker, store, monkeypatch):
    """Checked again each minute, the label left the next heartbeat, but the broker kept it in
    the desk's retained state and its Home Assistant discovery: every classroom screen or
    subscriber that came later was given "Row 2, Ben" until the desk's next reconnection or
    change of level (a paused desk: hours). Both are sent again, without it."""
    monkeypatch.setattr(publisher_mod, "DESK_CHECK_EVERY_S", 0.0)  # each wake-up of the sender (a second)
    pub = Publisher(MqttSettings(host="127.0.0.1", port=broker.port, username=USER, password=PASSWORD,
                                 device_id="desk-08", desk="Row 2, Ben", keepalive_s=5), store).start()
    try:
        wait_for(lambda: pub.status.connected, what="connected")
        store.log_state_change(1_700_000_000.0, "Engaged", "Engaged", None, None)
        wait_for(lambda: store.query("SELECT COUNT(*) FROM outbox")[0][0] == 0, what="the state sent")
        Accounts(store).create_user("ben", "student-pw-123", "student")
        discovery = "homeassistant/sensor/desk-08/engagement/config"

        def kept_copies() -> tuple[str, str] | None:  # (the retained state's desk, discovery's name) a newcomer gets
            late = Listener(broker, ["engage/desk-08/state", discovery])
            try:
                wait_for(lambda: late.payloads("engage/desk-08/state") and late.payloads(discovery),
                         what="the retained copies")
                return late.json("engage/desk-08/state")[-1]["desk"], late.json(discovery)[-1]["device"]["name"]
            finally:
                late.close()
        wait_for(lambda: kept_copies() == ("", "desk-08"), timeout=10, what="the broker's copies without the label")
    finally:
        pub.stop()
