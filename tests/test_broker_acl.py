"""The broker set-up the README tells a school to install, run for real: with its ACL a
device writes only its own desk's topics and the classroom account only reads, so no
account can pin another desk's state (a retained message the classroom shows until the
desk speaks again)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import wait_for
from mqtt_broker import Broker, Listener, publisher, send

from edge_app import config as config_mod
from edge_app.fleet.classroom.model import Classroom
from edge_app.fleet.classroom.subscriber import Subscriber
from edge_app.fleet.publisher import Publisher
from edge_app.fleet.settings import MqttSettings
from edge_app.store.database import Store

README = Path(__file__).resolve().parent.parent / "README.md"
ACCOUNTS = {"desk-07": "desk-07-secret", "desk-08": "desk-08-secret", "classroom": "classroom-secret"}
T0 = 1_700_000_000.0


def readme_acl() -> str:
    """The ACL file exactly as the README writes it to /etc/mosquitto/engage.acl."""
    found = re.search(r"tee /etc/mosquitto/engage\.acl <<'ACL'\n(.*?)\nACL\n", README.read_text(), re.S)
    assert found, "README no longer shows the broker's ACL file"
    return found.group(1) + "\n"


@pytest.fixture
def school_broker(tmp_path):
    b = Broker(tmp_path / "broker", users=ACCOUNTS, acl=readme_acl()).start()
    yield b
    b.stop()


def account(b: Broker, user: str, **kw) -> MqttSettings:
    return MqttSettings(host="127.0.0.1", port=b.port, username=user, password=ACCOUNTS[user], keepalive_s=5, **kw)


def device(b: Broker, user: str, folder: Path) -> MqttSettings:
    """A device's settings as its config file gives them: the account, no device_id."""
    empty = folder / "config.toml"
    empty.write_text("")
    cfg = config_mod.load(empty, {"mqtt.host": "127.0.0.1", "mqtt.port": b.port, "mqtt.username": user,
                                  "mqtt.password": ACCOUNTS[user], "mqtt.desk": "Row 1", "mqtt.keepalive_s": 5})
    return MqttSettings.from_config(cfg)


def forged(level: str, seq: int = 10**9) -> str:
    return json.dumps({"level": level, "label": level, "since": T0 + 50, "seq": seq, "desk": "Row 1", "model": "x"})


def test_a_device_writes_only_its_own_desk_and_the_classroom_only_reads(school_broker, tmp_path):
    classroom = Classroom()
    sub = Subscriber(account(school_broker, "classroom"), classroom).start()
    seen = Listener(school_broker, ["engage/#"], user="classroom", password=ACCOUNTS["classroom"])
    store = Store(tmp_path / "desk-07")
    # device_id left empty: it is the user name, which is what the ACL's %u lets it write under
    pub = Publisher(device(school_broker, "desk-07", tmp_path), store, lambda: "model-v3")
    assert pub.settings.device_id == "desk-07"
    pub.start()
    try:
        with (publisher(school_broker, "desk-08", ACCOUNTS["desk-08"]) as desk_08,
              publisher(school_broker, "classroom", ACCOUNTS["classroom"]) as teacher):
            wait_for(lambda: seen.subscribed and sub.status.connected and pub.status.connected)

            def level(device_id: str) -> str | None:
                rows = {d["device_id"]: d for d in classroom.snapshot()["desks"]}
                return rows[device_id]["level"] if device_id in rows else None

            store.log_state_change(T0 + 1, "Engaged - on task", "Engaged", "happiness", 0.9)
            wait_for(lambda: level("desk-07") == "Engaged", what="desk-07's own state reaches the classroom")

            # desk-08's account tries to pin desk-07 as "Not engaged" and offline, then says its own state
            send(desk_08, "engage/desk-07/state", forged("Not engaged"))
            send(desk_08, "engage/desk-07/availability", "offline")
            send(desk_08, "engage/desk-08/state", forged("Engaged", seq=1))
            wait_for(lambda: level("desk-08") == "Engaged", what="desk-08's own state")

            # the classroom's account tries the same, then desk-07 speaks again
            send(teacher, "engage/desk-07/state", forged("Distracted"))
            store.log_state_change(T0 + 2, "Partially engaged - wavering", "Partially engaged", "neutral", 0.8)
            wait_for(lambda: level("desk-07") == "Partially engaged", what="desk-07's next state")

            desk_07 = [json.loads(p)["level"] for p in seen.payloads("engage/desk-07/state")]
            assert desk_07 == ["Engaged", "Partially engaged"], desk_07  # neither forgery was delivered
            assert seen.payloads("engage/desk-07/availability") == [b"online"]
            assert {d["device_id"]: d["online"] for d in classroom.snapshot()["desks"]}["desk-07"] is True

            # nor retained: a classroom page that starts now sees the device's own last word
            late = Listener(school_broker, ["engage/desk-07/#"], user="classroom", password=ACCOUNTS["classroom"])
            try:
                wait_for(lambda: late.payloads("engage/desk-07/state") and late.payloads("engage/desk-07/availability"))
                assert json.loads(late.payloads("engage/desk-07/state")[-1])["level"] == "Partially engaged"
                assert late.payloads("engage/desk-07/availability")[-1] == b"online"
            finally:
                late.close()
    finally:
        pub.stop(timeout=2)
        seen.close()
        sub.stop()
        store.close()


def test_device_id_defaults_to_the_broker_user_name_then_the_host_name(tmp_path):
    empty = tmp_path / "config.toml"
    empty.write_text("")

    def device_id(**mqtt_keys) -> str:
        cfg = config_mod.load(empty, {f"mqtt.{k}": v for k, v in mqtt_keys.items()})
        return MqttSettings.from_config(cfg).device_id

    import socket

    host = re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname().split(".")[0])[:64] or "engage-edge"
    assert device_id(username="desk-07") == "desk-07"
    assert device_id(username="desk-07", device_id="row2-seat4") == "row2-seat4"  # set: it wins
    assert device_id(username="desk 07@school") == host  # not a topic level: the host name
    assert device_id() == host
