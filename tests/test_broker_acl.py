"""The broker set-up the README tells a school to install, run for real: its engage.conf and
its ACL, on a real Mosquitto. With them a device writes only its own desk's topics, and only
those it sends, the classroom account only reads, so no account can pin another desk's state
(a retained message the classroom shows until the desk speaks again); no account can take a
desk's connection by its client id; no packet over the limit is taken.

The broker keeps one connection per user name there (``use_username_as_clientid``), so each
test holds one connection per account; an ``observer`` account, added here after the README's
lines and allowed to read only, watches what the broker delivers."""
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
LONGEST = "desk-" + "x" * 59  # a 64-character user name: the longest device id, so the longest topics
ACCOUNTS = {"desk-07": "desk-07-secret", "desk-08": "desk-08-secret", "classroom": "classroom-secret",
            "observer": "observer-secret", LONGEST: "longest-secret"}
OBSERVER = "user observer\ntopic read #\n"  # the tests' own reader, after the README's lines
T0 = 1_700_000_000.0


def readme_acl() -> str:
    """The ACL file exactly as the README writes it to /etc/mosquitto/engage.acl."""
    found = re.search(r"tee /etc/mosquitto/engage\.acl <<'ACL'\n(.*?)\nACL\n", README.read_text(), re.S)
    assert found, "README no longer shows the broker's ACL file"
    return found.group(1) + "\n"


def readme_conf() -> str:
    """The broker configuration exactly as the README writes it to /etc/mosquitto/conf.d/engage.conf."""
    found = re.search(r"tee /etc/mosquitto/conf\.d/engage\.conf <<'CONF'\n(.*?)\nCONF\n", README.read_text(), re.S)
    assert found, "README no longer shows the broker's engage.conf"
    return found.group(1) + "\n"


def max_packet_size() -> int:
    found = re.search(r"^max_packet_size (\d+)$", readme_conf(), re.M)
    assert found, "README's engage.conf sets no max_packet_size"
    return int(found.group(1))


class SchoolBroker(Broker):
    """Mosquitto run with the README's engage.conf itself, on a loopback port without TLS (the
    certificate recipe has its own test): its password file and ACL are this test's, its
    other lines as written, in their order (a listener's settings count only below it)."""

    def _write_conf(self) -> None:
        conf = readme_conf()
        listener = "listener 8883\ncertfile /etc/mosquitto/certs/server.pem\nkeyfile /etc/mosquitto/certs/server.key\n"
        for line in ("password_file /etc/mosquitto/passwd\n", "acl_file /etc/mosquitto/engage.acl\n", listener):
            assert line in conf, (line, conf)
        conf = (conf.replace("/etc/mosquitto/passwd", str(self.folder / "passwd"))
                .replace("/etc/mosquitto/engage.acl", str(self.folder / "acl"))
                .replace(listener, f"listener {self.port} 127.0.0.1\n"))
        self.conf.write_text(f"user root\npersistence false\n{conf}")  # root: the test's files are root's


@pytest.fixture
def school_broker(tmp_path):
    b = SchoolBroker(tmp_path / "broker", users=ACCOUNTS, acl=readme_acl() + OBSERVER).start()
    yield b
    b.stop()


def observer(b: Broker, topics: tuple[str, ...] = ("engage/#", "homeassistant/#")) -> Listener:
    return Listener(b, list(topics), user="observer", password=ACCOUNTS["observer"])


def account(b: Broker, user: str, **kw) -> MqttSettings:
    return MqttSettings(host="127.0.0.1", port=b.port, username=user, password=ACCOUNTS[user], keepalive_s=5, **kw)


def device(b: Broker, user: str, folder: Path) -> MqttSettings:
    """A device's settings as its config file gives them: the account, no device_id."""
    empty = folder / "config.toml"
    empty.write_text("# defaults\n")
    cfg = config_mod.load(empty, {"mqtt.host": "127.0.0.1", "mqtt.port": b.port, "mqtt.username": user,
                                  "mqtt.password": ACCOUNTS[user], "mqtt.desk": "Row 1", "mqtt.keepalive_s": 5})
    return MqttSettings.from_config(cfg)


def forged(level: str, seq: int = 10**9) -> str:
    return json.dumps({"level": level, "label": level, "since": T0 + 50, "seq": seq, "desk": "Row 1", "model": "x"})


def test_a_device_writes_only_its_own_desk_and_the_classroom_only_reads(school_broker, tmp_path):
    classroom = Classroom()
    sub = Subscriber(account(school_broker, "classroom"), classroom).start()
    seen = observer(school_broker, ("engage/#",))
    store = Store(tmp_path / "desk-07")
    # device_id left empty: it is the user name, which is what the ACL's %u lets it write under
    pub = Publisher(device(school_broker, "desk-07", tmp_path), store, lambda: "model-v3")
    assert pub.settings.device_id == "desk-07"
    pub.start()
    try:
        with publisher(school_broker, "desk-08", ACCOUNTS["desk-08"]) as desk_08:
            teacher = sub.client  # the classroom account's one connection (a second would end it)
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
            seen.close()  # the observer account's one connection
            late = observer(school_broker, ("engage/desk-07/#",))
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
    empty.write_text("# defaults\n")

    def device_id(**mqtt_keys) -> str:
        cfg = config_mod.load(empty, {f"mqtt.{k}": v for k, v in mqtt_keys.items()})
        return MqttSettings.from_config(cfg).device_id

    import socket

    host = re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname().split(".")[0])[:64] or "engage-edge"
    assert device_id(username="desk-07") == "desk-07"
    assert device_id(username="desk-07", device_id="row2-seat4") == "row2-seat4"  # set: it wins
    assert device_id(username="desk 07@school") == host  # not a topic level: the host name
    assert device_id() == host


def test_no_account_takes_a_desks_connection_by_its_client_id(school_broker, tmp_path):
    """A desk's client id is no secret (``engage-edge-<device_id>``), and Mosquitto ends the
    connection that holds an id when another logs in with it: desk-07's account, logged in as
    desk-08's id, ended desk-08's connection, its will said "offline" and the classroom showed
    desk-08 offline for as long as desk-07's account kept reconnecting. Under the README's
    ``use_username_as_clientid`` the id each account gets is its user name."""
    seen = observer(school_broker, ("engage/desk-08/availability", "engage/desk-07/state"))
    store = Store(tmp_path / "desk-08")
    desk_08 = Publisher(device(school_broker, "desk-08", tmp_path), store).start()
    try:
        wait_for(lambda: seen.subscribed and desk_08.status.connected
                 and seen.payloads("engage/desk-08/availability") == [b"online"], what="desk-08 online")
        with publisher(school_broker, "desk-07", ACCOUNTS["desk-07"], client_id="engage-edge-desk-08") as intruder:
            # a message on the intruder's own topic, once routed, comes after any will its log-in set off
            send(intruder, "engage/desk-07/state", forged("Engaged", seq=1))
            wait_for(lambda: seen.payloads("engage/desk-07/state"), what="the intruder is logged in and heard")
        assert seen.payloads("engage/desk-08/availability") == [b"online"]  # desk-08's will never fired
        assert desk_08.status.connected and desk_08.status.error == ""
    finally:
        desk_08.stop(timeout=2)
        seen.close()
        store.close()


def test_the_desks_test_connection_does_not_end_its_live_connection(school_broker, tmp_path):
    """Admin -> Classroom's Test logged in a second time with the desk's user name, which under
    the README's broker set-up ends the desk's own connection: the classroom saw the desk go
    offline and back at each press. While the desk is connected as that user, the test
    reports that connection (the same password) or says it was not tried (another one)."""
    from dataclasses import replace

    from edge_app.fleet.publisher import check_connection

    seen = observer(school_broker, ("engage/desk-07/availability", "engage/desk-08/state"))
    store = Store(tmp_path / "desk-07")
    settings = device(school_broker, "desk-07", tmp_path)
    pub = Publisher(settings, store).start()

    def still_online(step: int) -> bool:
        """desk-07's availability after a message routed after the test's log-in (and any will it set off)."""
        with publisher(school_broker, "desk-08", ACCOUNTS["desk-08"]) as desk_08:
            send(desk_08, "engage/desk-08/state", forged("Engaged", seq=step))
        wait_for(lambda: len(seen.payloads("engage/desk-08/state")) == step, what="desk-08's message")
        return seen.payloads("engage/desk-07/availability") == [b"online"] and pub.status.connected

    try:
        wait_for(lambda: seen.subscribed and pub.status.connected
                 and seen.payloads("engage/desk-07/availability") == [b"online"], what="desk-07 online")
        ok, text = check_connection(settings, running=pub)
        assert ok is True and text.startswith(f"connected to 127.0.0.1:{school_broker.port} as desk-07 (user desk-07)")
        assert still_online(1), seen.payloads("engage/desk-07/availability")
        ok, text = check_connection(replace(settings, password="a-new-password"), running=pub)
        assert ok is None and "Save to use these settings" in text, text
        assert still_online(2), seen.payloads("engage/desk-07/availability")
        ok, text = check_connection(account(school_broker, "desk-08"), running=pub)  # another user: really tried
        assert ok is True and "(user desk-08)" in text
        assert still_online(3), seen.payloads("engage/desk-07/availability")
        with publisher(school_broker, "desk-07", ACCOUNTS["desk-07"]) as same_user:  # the broker ends desk-07's link
            send(same_user, "engage/desk-07/state", forged("Engaged", seq=1))
        wait_for(lambda: b"offline" in seen.payloads("engage/desk-07/availability"),
                 what="a second log-in as desk-07 ends its connection (what the test must not do)")
        assert seen.payloads("engage/desk-07/availability")[:2] == [b"online", b"offline"]
        wait_for(lambda: pub.status.connected, what="desk-07 back")
        ok, text = check_connection(settings, running=None)  # no publisher: a real log-in, as before
        assert ok is True, text
    finally:
        pub.stop(timeout=2)
        seen.close()
        store.close()


def test_the_desks_own_messages_all_pass_the_limit_and_the_acl(school_broker, tmp_path):
    """The real publisher, with the longest device id, desk label, labels and model version the
    configuration allows, against the README's broker: its state, minute row, heartbeat,
    availability and both Home Assistant discovery configs all arrive, each far under
    ``max_packet_size``."""
    limit = max_packet_size()
    seen = observer(school_broker)
    store = Store(tmp_path / "desk")
    folder = tmp_path / "config"
    folder.mkdir()
    (folder / "config.toml").write_text("# defaults\n")
    cfg = config_mod.load(folder / "config.toml", {
        "mqtt.host": "127.0.0.1", "mqtt.port": school_broker.port, "mqtt.username": LONGEST,
        "mqtt.password": ACCOUNTS[LONGEST], "mqtt.desk": "\U0001F600" * 64, "mqtt.keepalive_s": 5,
        "mqtt.include_emotion": True, "mqtt.heartbeat_s": 5})
    settings = MqttSettings.from_config(cfg)
    assert settings.device_id == LONGEST and len(LONGEST) == 64
    pub = Publisher(settings, store, lambda: "\U0001F600" * 64)  # a manifest's version: 64 characters at most
    label = "Engaged - " + "\u00e9" * 50  # a level: 60 characters at most (config.MAX_LEVEL_CHARS)
    pub.start()
    try:
        wait_for(lambda: seen.subscribed and pub.status.connected)
        store.log_state_change(T0 + 1, label, "Engaged", "happiness", 0.9)
        store.log_minute({"minute": int(T0), "frames": 900, "faces": 880, "Engaged": 20.0, "Partially engaged": 10.0,
                          "Not engaged": 10.0, "Distracted": 10.0, "Absent": 5.0, "Present": 5.0})
        kinds = ("state", "minute", "heartbeat", "availability")
        topics = [f"engage/{LONGEST}/{kind}" for kind in kinds] + [
            f"homeassistant/sensor/{LONGEST}/{name}/config" for name in ("engagement", "since")]
        wait_for(lambda: all(seen.payloads(t) for t in topics) and pub.outbox.count() == 0,
                 what="every kind of message the desk sends")
        assert json.loads(seen.payloads(topics[0])[-1])["label"] == label
        assert seen.payloads(topics[3])[-1] == b"online"
        biggest = max(len(t) + len(p) for t, p, _ in seen.messages)
        assert biggest < 3072 < limit // 8, biggest  # "under 3 kB" (README): far below the limit
    finally:
        pub.stop(timeout=2)
    wait_for(lambda: seen.payloads(topics[3])[-1] == b"offline", what="the desk's clean stop")
    seen.close()
    store.close()


def test_an_oversize_message_is_refused_by_the_broker(school_broker):
    """With no limit a desk's account stored a 200 MB retained message: the broker's memory
    and, replayed, the classroom's (paho reads a whole packet before anyone can look at its
    size). Past ``max_packet_size`` Mosquitto closes the connection instead; the message
    reaches no one and is not kept."""
    import threading

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    seen = observer(school_broker, ("engage/desk-07/state",))
    wait_for(lambda: seen.subscribed)
    closed = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="desk-07")
    client.username_pw_set("desk-07", ACCOUNTS["desk-07"])
    client.on_disconnect = lambda *args: closed.set()
    client.connect("127.0.0.1", school_broker.port, 10)
    client.loop_start()
    try:
        info = client.publish("engage/desk-07/state", b"x" * (max_packet_size() + 1), qos=1, retain=True)
        assert closed.wait(10), "the broker kept the connection of a client sending an oversize packet"
        assert not info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()
    with publisher(school_broker, "desk-07", ACCOUNTS["desk-07"]) as desk_07:  # then a message that fits, after it
        send(desk_07, "engage/desk-07/state", forged("Engaged", seq=1))
    wait_for(lambda: seen.payloads("engage/desk-07/state"), what="the message that fits")
    assert [len(p) for p in seen.payloads("engage/desk-07/state")] == [len(forged("Engaged", seq=1))]
    seen.close()
    late = observer(school_broker, ("engage/desk-07/state",))  # what the broker kept: the small one
    try:
        wait_for(lambda: late.payloads("engage/desk-07/state"))
        assert late.payloads("engage/desk-07/state") == [forged("Engaged", seq=1).encode()]
    finally:
        late.close()


def test_a_desk_writes_no_topic_it_does_not_send(school_broker):
    """``engage/%u/#`` let a desk's account keep retained messages under any number of
    subtopics of its own (each up to the size limit): the ACL names the topics a desk sends."""
    seen = observer(school_broker)
    wait_for(lambda: seen.subscribed)
    junk = ["engage/desk-07/junk", "engage/desk-07/state/more", "engage/desk-07/junk/1",
            "homeassistant/sensor/desk-07/junk/config", "homeassistant/sensor/desk-07/engagement/config/x"]
    with publisher(school_broker, "desk-07", ACCOUNTS["desk-07"]) as desk_07:
        for topic in junk:
            send(desk_07, topic, "junk")  # Mosquitto acknowledges a refused publish as if taken (MQTT 3.1.1)
        send(desk_07, "engage/desk-07/minute", "{}", retain=False)  # routed after all of them
    wait_for(lambda: seen.payloads("engage/desk-07/minute"), what="the desk's own message after the junk")
    assert [t for t, _, _ in seen.messages if t != "engage/desk-07/minute"] == []
    seen.close()
