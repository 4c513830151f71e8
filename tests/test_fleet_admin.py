"""The device admin's classroom broker page: status, a real connection test, validation, save."""
from __future__ import annotations

import html
import json
from html.parser import HTMLParser
from pathlib import Path

import mqtt_broker
import requests
from conftest import login, wait_for
from mqtt_broker import PASSWORD, USER

from edge_app import config as config_mod

broker = mqtt_broker.broker  # fixture: a real Mosquitto per test


def form(s: requests.Session, b, action: str, **kw) -> dict:
    values = {"csrf": s.csrf, "action": action, "mqtt.host": "127.0.0.1", "mqtt.port": str(b.port),
              "mqtt.username": USER, "mqtt.password": PASSWORD, "mqtt.device_id": "desk-11",
              "mqtt.desk": "Row 1, seat 3", "mqtt.topic_prefix": "engage", "mqtt.tls_ca": ""}
    values.update(kw)
    return values


def test_admin_tests_and_saves_the_broker(broker, make_appliance):
    appliance = make_appliance(with_loop=False)
    s = login(appliance.url)
    url = f"{appliance.url}/admin/classroom"
    assert "MQTT is off" in s.get(url, timeout=5).text
    assert requests.get(f"{appliance.url}/healthz", timeout=5).json()["mqtt"] == {"enabled": False}

    r = s.post(url, data=form(s, broker, "test", **{"mqtt.port": "0"}), timeout=10)
    assert r.status_code == 400 and "Nothing saved: Broker port: 0 is not allowed: use a port from 1 to 65535" in r.text
    r = s.post(url, data=form(s, broker, "save", **{"mqtt.host": "bad host!"}), timeout=10)
    assert r.status_code == 400 and "Nothing saved: Broker host: " in r.text
    r = s.post(url, data=form(s, broker, "test", **{"mqtt.password": "wrong-password"}), timeout=10)
    assert r.status_code == 502 and "refused the log-in as &#039;desk&#039;" in r.text
    r = s.post(url, data=form(s, broker, "test"), timeout=10)
    assert r.status_code == 200 and f"Connected to 127.0.0.1:{broker.port} as desk-11" in r.text
    assert PASSWORD not in r.text and "type it again, then Save" in r.text  # not kept for a Save that follows
    assert requests.get(f"{appliance.url}/healthz", timeout=5).json()["mqtt"] == {"enabled": False}  # a test saves nothing

    r = s.post(url, data=form(s, broker, "save", **{"mqtt.heartbeat_s": "45"}), timeout=10)
    assert r.status_code == 200 and "Saved" in r.text
    assert appliance.ctx.publisher.settings.heartbeat_s == 45  # the restarted publisher beats at the new interval
    health = wait_for(lambda: (h := requests.get(f"{appliance.url}/healthz", timeout=5).json()["mqtt"])["connected"]
                      and h)
    assert health["device_id"] == "desk-11" and health["backlog"] == 0
    page = s.get(url, timeout=5).text
    assert f"connected to 127.0.0.1:{broker.port} as {USER}" in page
    assert PASSWORD not in page  # the password is never shown back
    saved = appliance.store.get_setting("config_overrides")
    assert saved["mqtt.desk"] == "Row 1, seat 3"  # kept across restarts
    assert PASSWORD not in json.dumps(saved) and saved["mqtt.password"] == ""  # not in the database
    kept = Path(saved["mqtt.password_file"])
    assert kept.read_text().strip() == PASSWORD and kept.stat().st_mode & 0o777 == 0o600

    # a broker CA file that is not there (or not PEM): saved, it stopped the publisher and every later start
    running = appliance.ctx.publisher
    for ca in ("/nonexistent/ca.pem", "/etc/hostname"):
        r = s.post(url, data=form(s, broker, "save", **{"mqtt.tls_ca": ca, "mqtt.port": "8883"}), timeout=10)
        assert r.status_code == 400 and "Nothing saved" in r.text and "TLS files cannot be used" in r.text, r.text
    assert appliance.ctx.publisher is running and running.status.connected  # the one running goes on
    assert appliance.store.get_setting("config_overrides")["mqtt.tls_ca"] == ""  # as saved before


def test_broker_settings_saved_that_cannot_be_used_leave_the_device_starting_without_them(make_appliance, cfg, caplog):
    """A CA file saved on the page that later went (or one saved by an earlier release, which did not
    check it) stopped the device at every start, its web page too, and editing the config file could
    not help (the database's value wins). The device starts without the classroom connection."""
    from edge_app.store.database import Store

    earlier = Store(config_mod.data_dir(cfg))
    earlier.set_setting("config_overrides", {"mqtt.host": "127.0.0.1", "mqtt.tls_ca": "/nonexistent/ca.pem"})
    earlier.close()
    appliance = make_appliance(with_loop=False)
    assert appliance.ctx.publisher is None
    assert "correct them on that page" in caplog.text and "TLS files cannot be used" in caplog.text
    assert requests.get(f"{appliance.url}/healthz", timeout=5).status_code == 200


def test_a_password_saved_by_an_earlier_release_leaves_the_database_at_start(make_appliance, cfg):
    from edge_app import config as config_mod
    from edge_app.store.database import Store

    earlier = Store(config_mod.data_dir(cfg))
    earlier.set_setting("config_overrides", {"mqtt.password": "old-plain-secret", "mqtt.desk": "Row 2"})
    earlier.close()
    appliance = make_appliance(with_loop=False)
    saved = appliance.store.get_setting("config_overrides")
    assert "old-plain-secret" not in json.dumps(saved) and saved["mqtt.desk"] == "Row 2"
    kept = Path(saved["mqtt.password_file"])
    assert kept.read_text().strip() == "old-plain-secret" and kept.stat().st_mode & 0o777 == 0o600
    assert appliance.ctx.cfg.mqtt.password_file == str(kept) and appliance.ctx.cfg.mqtt.password == ""


def test_a_backup_restored_without_the_saved_broker_password_starts_and_says_to_type_it_again(
        broker, make_appliance, cfg):
    """The page keeps a typed broker password in a file beside the database; a backup holds
    the database only. Restored on a new card, the device did not start at all ("mqtt.
    password_file ... cannot be read", exit 2, and systemd gave up), and with the web UI
    down nobody could type the password again. Now it starts, the broker part of
    /healthz and the admin page say what to do, and typing the password connects."""
    from edge_app.store.database import Store

    restored = Store(config_mod.data_dir(cfg))  # what the backup brings: the page's settings, no file
    missing = config_mod.data_dir(cfg) / "mqtt-password"
    restored.set_setting("config_overrides", {"mqtt.host": "127.0.0.1", "mqtt.port": broker.port,
                                              "mqtt.username": USER, "mqtt.password_file": str(missing),
                                              "mqtt.device_id": "desk-12"})
    restored.close()
    appliance = make_appliance(with_loop=False)
    health = requests.get(f"{appliance.url}/healthz", timeout=5).json()["mqtt"]
    assert health["enabled"] and not health["connected"] and "type it there again" in health["error"]
    s = login(appliance.url)
    url = f"{appliance.url}/admin/classroom"
    assert "type it there again" in html.unescape(s.get(url, timeout=5).text)
    r = s.post(url, data=form(s, broker, "save", **{"mqtt.device_id": "desk-12"}), timeout=10)
    assert r.status_code == 200 and "Saved" in r.text
    assert wait_for(lambda: requests.get(f"{appliance.url}/healthz", timeout=5).json()["mqtt"]["connected"])
    assert missing.read_text().strip() == PASSWORD


def test_a_technicians_missing_password_file_is_still_a_configuration_error(cfg, tmp_path):
    """Only the page's own file is forgiven: a password file named in the config file is
    the technician's, and a wrong path there stops the start with what to check, as before."""
    import pytest

    from edge_app.fleet.settings import MqttSettings

    bad = config_mod.with_changes(cfg, {"mqtt.host": "127.0.0.1", "mqtt.password_file": str(tmp_path / "nope")})
    with pytest.raises(config_mod.ConfigError, match="cannot be read: No such file"):
        MqttSettings.from_config(bad)
    page = config_mod.with_changes(cfg, {"mqtt.host": "127.0.0.1",
                                         "mqtt.password_file": str(config_mod.data_dir(cfg) / "mqtt-password")})
    assert "type it there again" in MqttSettings.from_config(page).password_missing


class _Form(HTMLParser):
    """The fields a browser sends from the page's ``#mqtt-form``: every named input's value,
    a checkbox only when checked (the buttons' ``action`` is the caller's)."""

    def __init__(self):
        super().__init__()
        self.inside, self.fields = False, {}

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self.inside = a.get("id") == "mqtt-form"
        elif tag == "input" and self.inside and a.get("name"):
            if a.get("type") != "checkbox" or "checked" in a:
                self.fields[a["name"]] = a.get("value") or ("on" if a.get("type") == "checkbox" else "")

    def handle_endtag(self, tag):
        if tag == "form":
            self.inside = False


def page_form(html: str) -> dict:
    parser = _Form()
    parser.feed(html)
    assert "csrf" in parser.fields, "no classroom form on the page"
    return parser.fields


def admin(url: str) -> requests.Session:
    """An admin's browser: it sends the form's hidden CSRF field, no script header."""
    s = login(url)
    del s.headers["X-CSRF-Token"]
    return s


def save(s: requests.Session, url: str, fields: dict) -> requests.Response:
    return s.post(url, data={**fields, "action": "save"}, timeout=10)


SECRET = "from-the-config-file-pw"


def test_two_admins_saving_the_classroom_page_keep_each_others_changes(make_appliance, cfg):
    """Two admins open Admin -> Classroom; each changes one field and saves. The later form
    still holds what the page said before the first save: saving it must change only what
    its admin changed, not put the first admin's desk label back unseen. A save ends on a
    GET (post, redirect, get), so a reload or Back sends nothing again. The broker password
    is never on the page, not even in what the form carries, and a typed one replaces it."""
    appliance = make_appliance(config_mod.with_changes(cfg, {"mqtt.password": SECRET, "mqtt.desk": "Row 1"}),
                               with_loop=False)
    url = f"{appliance.url}/admin/classroom"
    ann, bob = admin(appliance.url), admin(appliance.url)
    pages = [s.get(url, timeout=5) for s in (ann, bob)]
    assert all(p.status_code == 200 and SECRET not in p.text for p in pages)
    ann_form, bob_form = (page_form(p.text) for p in pages)

    ann_form.update({"mqtt.desk": "Row 2, seat 4", "mqtt.password": "typed-by-ann-1"})
    r = save(ann, url, ann_form)
    assert [h.status_code for h in r.history] == [303] and r.request.method == "GET"  # a reload sends nothing
    assert r.status_code == 200 and "Saved" in r.text and "MQTT is off" in r.text
    assert appliance.ctx.cfg.mqtt.desk == "Row 2, seat 4"
    assert "typed-by-ann-1" not in r.text and SECRET not in r.text

    bob_form["mqtt.topic_prefix"] = "school-a/room-12"
    r = save(bob, url, bob_form)
    assert [h.status_code for h in r.history] == [303] and "Saved" in r.text
    mqtt = appliance.ctx.cfg.mqtt
    assert mqtt.topic_prefix == "school-a/room-12"
    assert mqtt.desk == "Row 2, seat 4"  # ann's change stands
    assert page_form(r.text)["mqtt.desk"] == "Row 2, seat 4"  # and bob's page now shows it
    assert mqtt.password == "" and Path(mqtt.password_file).read_text().strip() == "typed-by-ann-1"  # kept

    bob_form = page_form(r.text)  # a second password typed on the page replaces the saved file's
    bob_form["mqtt.password"] = "typed-by-bob-2"
    r = save(bob, url, bob_form)
    assert "Saved" in r.text and "typed-by-bob-2" not in r.text
    assert Path(appliance.ctx.cfg.mqtt.password_file).read_text().strip() == "typed-by-bob-2"
    assert "typed-by-bob-2" not in json.dumps(appliance.store.get_setting("config_overrides"))

    r = save(bob, url, page_form(r.text))  # saving an unchanged form changes nothing
    assert [h.status_code for h in r.history] == [303] and "Nothing to save" in r.text


def test_two_admins_changing_the_same_classroom_field_are_told(make_appliance, cfg):
    """Both change the desk label: the later save is refused (409) with both values named and
    the admin's own input kept on the page; saving that page again then goes through."""
    appliance = make_appliance(config_mod.with_changes(cfg, {"mqtt.password": SECRET}), with_loop=False)
    url = f"{appliance.url}/admin/classroom"
    ann, bob = admin(appliance.url), admin(appliance.url)
    ann_form, bob_form = (page_form(s.get(url, timeout=5).text) for s in (ann, bob))
    ann_form["mqtt.desk"] = "Row 3, seat 1"
    assert "Saved" in save(ann, url, ann_form).text
    bob_form.update({"mqtt.desk": "Row 4, seat 2", "mqtt.topic_prefix": "school-b"})
    r = save(bob, url, bob_form)
    assert r.status_code == 409 and not r.history
    assert "another admin" in r.text and "Desk label" in r.text and "Row 3, seat 1" in r.text
    assert appliance.ctx.cfg.mqtt.desk == "Row 3, seat 1" and appliance.ctx.cfg.mqtt.topic_prefix == "engage"
    again = page_form(r.text)
    assert again["mqtt.desk"] == "Row 4, seat 2" and again["mqtt.topic_prefix"] == "school-b"  # what bob typed
    assert SECRET not in r.text
    r = save(bob, url, again)  # bob has seen it and saves his own
    assert [h.status_code for h in r.history] == [303] and "Saved" in r.text
    assert appliance.ctx.cfg.mqtt.desk == "Row 4, seat 2" and appliance.ctx.cfg.mqtt.topic_prefix == "school-b"
    assert appliance.ctx.cfg.mqtt.password == SECRET  # never typed, never shown: kept


class Catcher:
    """Another host's "broker", as whoever typed its address would run it: it accepts MQTT
    connections on loopback, keeps every byte a client sends (the CONNECT packet carries the
    user name and password in the clear) and refuses the log-in (CONNACK 5, not authorised),
    so a test of it ends at once instead of waiting for an answer."""

    def __init__(self):
        import socket
        import threading

        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.received = b""
        self.connections = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                self.connections += 1
                conn.settimeout(2)
                try:
                    self.received += conn.recv(4096)
                    conn.sendall(b"\x20\x02\x00\x05")
                except OSError:
                    pass

    def close(self):
        self.sock.close()


def test_the_saved_password_goes_only_to_the_broker_it_was_saved_for(broker, make_appliance):
    """An admin session (stolen, or an admin's slip) types another host and presses Test or
    Save: the saved password must not go there, now (Test) or at the publisher's next
    connect (Save). Another host name, another port or other TLS files is another broker:
    it gets the password typed on the form, or none with "No password" ticked."""
    appliance = make_appliance(with_loop=False)
    s = login(appliance.url)
    url = f"{appliance.url}/admin/classroom"
    assert "Saved" in s.post(url, data=form(s, broker, "save"), timeout=10).text
    wait_for(lambda: requests.get(f"{appliance.url}/healthz", timeout=5).json()["mqtt"]["connected"])
    page = s.get(url, timeout=5).text
    assert f"A password is saved for 127.0.0.1:{broker.port} without TLS" in page
    assert "sent only to the broker it was saved for" in page  # the field's help says so before anyone tries
    catcher = Catcher()
    try:
        elsewhere = {"mqtt.port": str(catcher.port), "mqtt.password": ""}
        r = s.post(url, data=form(s, broker, "test", **elsewhere), timeout=10)
        assert r.status_code == 400 and "Not tested" in r.text
        assert f"sent only to the broker it was saved for, 127.0.0.1:{broker.port} without TLS" in r.text
        assert f"Type the password for 127.0.0.1:{catcher.port}" in r.text
        fields = page_form(r.text)
        assert fields["mqtt.port"] == str(catcher.port) and fields["mqtt.password"] == ""  # theirs kept, to fill in
        assert 'aria-invalid="true" autofocus' in r.text.split('id="mqtt-password"')[1].split(">")[0]
        r = s.post(url, data=form(s, broker, "save", **elsewhere), timeout=10)
        assert r.status_code == 400 and "Nothing saved" in r.text and "Type the password for" in r.text
        mqtt = appliance.ctx.cfg.mqtt
        assert (mqtt.host, mqtt.port) == ("127.0.0.1", broker.port)  # the publisher's next connect stays home
        assert catcher.connections == 0 and PASSWORD.encode() not in catcher.received

        # another name for the same machine, or TLS files, count as another broker too
        for other in ({"mqtt.host": "localhost"}, {"mqtt.tls_ca": str(broker.folder / "passwd")}):
            r = s.post(url, data=form(s, broker, "test", **other, **{"mqtt.password": ""}), timeout=10)
            assert r.status_code == 400 and "Not tested" in r.text, other
        # the saved broker itself: the saved password, as before (a Test of the form as the page shows it)
        r = s.post(url, data=form(s, broker, "test", **{"mqtt.password": ""}), timeout=10)
        assert r.status_code == 200 and f"Connected to 127.0.0.1:{broker.port}" in r.text

        # the other broker's own password, typed: tested and saved with it
        r = s.post(url, data=form(s, broker, "test", **{"mqtt.host": "localhost"}), timeout=10)
        assert r.status_code == 200 and f"Connected to localhost:{broker.port}" in r.text
        r = s.post(url, data=form(s, broker, "save", **{"mqtt.host": "localhost"}), timeout=10)
        assert r.status_code == 200 and f"Publishing to localhost:{broker.port}" in r.text
        wait_for(lambda: (h := requests.get(f"{appliance.url}/healthz", timeout=5).json()["mqtt"])["connected"]
                 and h["broker"] == f"localhost:{broker.port}")
        assert f"A password is saved for localhost:{broker.port} without TLS" in r.text

        r = s.post(url, data=form(s, broker, "save", **{"mqtt.no_password": "on"}), timeout=10)
        assert r.status_code == 400 and "not both" in r.text
        # "No password": the saved one is deleted, then any broker may be tried (with none)
        kept = Path(appliance.ctx.cfg.mqtt.password_file)
        r = s.post(url, data=form(s, broker, "save", **{"mqtt.host": "localhost", "mqtt.password": "",
                                                        "mqtt.no_password": "on"}), timeout=10)
        assert r.status_code == 200 and "The saved password was deleted" in r.text and "No password is saved" in r.text
        assert not kept.exists() and appliance.ctx.cfg.mqtt.password_file == ""
        r = s.post(url, data=form(s, broker, "test", **elsewhere), timeout=10)
        assert r.status_code == 502 and "refused the log-in" in r.text
        assert catcher.connections == 1 and USER.encode() in catcher.received
        assert PASSWORD.encode() not in catcher.received
    finally:
        catcher.close()
    audit = [r["detail"] for r in appliance.store.query("SELECT detail FROM audit ORDER BY id")]
    assert audit[-1] == f"publishing to localhost:{broker.port}, saved password deleted"


def test_a_password_from_the_config_file_stays_with_its_broker(make_appliance, cfg):
    """The technician's password (config file) belongs to the configured broker in the same
    way: moving the device to another host on the page asks for that host's password."""
    appliance = make_appliance(config_mod.with_changes(cfg, {"mqtt.host": "broker.school.lan", "mqtt.port": 8883,
                                                             "mqtt.password": SECRET, "mqtt.username": "desk-07"}),
                               with_loop=False)
    url = f"{appliance.url}/admin/classroom"
    s = admin(appliance.url)
    fields = page_form(s.get(url, timeout=5).text)
    fields["mqtt.host"] = "127.0.0.1"
    r = save(s, url, fields)
    assert r.status_code == 400 and "Nothing saved" in r.text and SECRET not in r.text
    assert "broker.school.lan:8883 without TLS" in r.text and "127.0.0.1:8883 without TLS is another broker" in r.text
    assert appliance.ctx.cfg.mqtt.host == "broker.school.lan" and appliance.ctx.cfg.mqtt.password == SECRET
    fields = page_form(r.text)
    assert fields["mqtt.host"] == "127.0.0.1"  # what they typed, to add the password to
    fields["mqtt.desk"] = "Row 5"  # a change beside the broker's: refused with it, then saved with it
    fields["mqtt.host"] = "BROKER.school.lan."  # the same host, spelled otherwise: no password asked
    r = save(s, url, fields)
    assert [h.status_code for h in r.history] == [303] and "Saved" in r.text
    assert appliance.ctx.cfg.mqtt.desk == "Row 5" and appliance.ctx.cfg.mqtt.password == SECRET
    fields = page_form(r.text)
    fields.update({"mqtt.host": "127.0.0.1", "mqtt.no_password": "on"})  # a broker that takes none
    r = save(s, url, fields)
    assert "Saved" in r.text and "The password in the config file is no longer used" in r.text
    assert appliance.ctx.cfg.mqtt.host == "127.0.0.1" and appliance.ctx.cfg.mqtt.password == ""


def test_the_audit_log_names_what_a_classroom_save_changed(make_appliance, cfg):
    """The audit said only 'publishing to HOST:PORT' (or 'MQTT off'): an admin session that
    turned on sending the students' emotion labels off the device, moved the topic or put
    in its own broker password left the same line as a desk label's edit. Each changed
    field is named with its old and new value; a password only as replaced, never its text."""
    appliance = make_appliance(config_mod.with_changes(cfg, {"mqtt.password": SECRET}), with_loop=False)
    url = f"{appliance.url}/admin/classroom"
    s = admin(appliance.url)
    fields = page_form(s.get(url, timeout=5).text)
    fields.update({"mqtt.include_emotion": "on", "mqtt.topic_prefix": "school-a/room-12",
                   "mqtt.password": "typed-new-pw-3"})
    r = save(s, url, fields)
    assert [h.status_code for h in r.history] == [303] and "Saved" in r.text
    detail = appliance.store.query("SELECT detail FROM audit ORDER BY id DESC LIMIT 1")[0][0]
    assert "Send the emotion label: False -> True" in detail, detail
    assert "Topic prefix: 'engage' -> 'school-a/room-12'" in detail and "new password saved" in detail
    assert "typed-new-pw-3" not in detail and SECRET not in detail and "Desk label" not in detail


def broker_at(host: str, port: int = 8883, **tls) -> config_mod.MqttSection:
    return config_mod.MqttSection(host=host, port=port, **tls)


def test_a_host_name_spelled_otherwise_is_the_same_broker():
    """Host names are case-blind and may end in one dot (the root): the password saved for
    broker.school goes to BROKER.School. as well, both sides spelled either way."""
    from edge_app.fleet.admin_page import same_broker

    spellings = ["broker.school", "broker.school.", "BROKER.School", "Broker.SCHOOL."]
    for saved in spellings:
        for typed in spellings:
            assert same_broker(broker_at(saved), broker_at(typed)), (saved, typed)


def test_nothing_else_counts_as_the_same_broker():
    """Only a host name's letter case and one final dot: two final dots make another name,
    an IP address counts as written (10.0.0.1. is looked up as a name, [::1] is no address
    to connect to), and the port and each TLS file must match exactly."""
    from edge_app.fleet.admin_page import same_broker

    others = [("broker.school", "broker.school.."), ("broker.school.", "broker.school.."),
              ("broker.school", "broker.schoo1"), ("broker.school", "xbroker.school"),
              ("10.0.0.1", "10.0.0.1."), ("10.0.0.1", "10.0.0.10"), ("::1", "[::1]"), ("fe80::a", "FE80::A"),
              ("127.0.0.1", "localhost")]
    for saved, typed in others:
        assert not same_broker(broker_at(saved), broker_at(typed)), (saved, typed)
        assert not same_broker(broker_at(typed), broker_at(saved)), (typed, saved)
    for ip in ("10.0.0.1", "::1", "fe80::a"):
        assert same_broker(broker_at(ip), broker_at(ip))
    assert not same_broker(broker_at("broker.school"), broker_at("broker.school", 1883))
    for tls in ({"tls_ca": "/etc/ca.pem"}, {"tls_cert": "/etc/c.pem"}, {"tls_key": "/etc/k.pem"}):
        assert not same_broker(broker_at("broker.school"), broker_at("broker.school.", **tls)), tls
        assert same_broker(broker_at("Broker.School", **tls), broker_at("broker.school.", **tls)), tls
    assert not same_broker(broker_at("b.school", tls_ca="/etc/ca.pem"), broker_at("b.school", tls_ca="/etc/CA.pem"))


def test_an_address_with_a_final_dot_is_another_broker_on_the_page(make_appliance, cfg):
    """Through the page: the password saved for 127.0.0.1 is not sent to "127.0.0.1."
    (a name to look up, not that address), while BROKER.school.lan. stays broker.school.lan."""
    appliance = make_appliance(config_mod.with_changes(cfg, {"mqtt.host": "127.0.0.1", "mqtt.port": 8883,
                                                             "mqtt.password": SECRET}), with_loop=False)
    url = f"{appliance.url}/admin/classroom"
    s = admin(appliance.url)
    fields = page_form(s.get(url, timeout=5).text)
    fields["mqtt.host"] = "127.0.0.1."
    r = s.post(url, data={**fields, "action": "test"}, timeout=10)
    assert r.status_code == 400 and "Not tested" in r.text and "127.0.0.1.:8883 without TLS is another broker" in r.text
    r = save(s, url, fields)
    assert r.status_code == 400 and "Nothing saved" in r.text and "Type the password for 127.0.0.1.:8883" in r.text
    assert appliance.ctx.cfg.mqtt.host == "127.0.0.1" and appliance.ctx.cfg.mqtt.password == SECRET


def test_an_admin_sets_the_heartbeat_on_the_page(make_appliance, cfg):
    """mqtt.heartbeat_s could only be set in the config file. The page shows it with its
    unit and the config's bounds; a value outside them (or no whole number) is refused by
    name, the admin's input kept, nothing saved; a good one is saved, used and audited."""
    appliance = make_appliance(cfg, with_loop=False)
    url = f"{appliance.url}/admin/classroom"
    s = admin(appliance.url)
    page = s.get(url, timeout=5).text
    fields = page_form(page)
    assert fields["mqtt.heartbeat_s"] == "30"
    assert '<label for="mqtt-heartbeat-s">Heartbeat (seconds)</label>' in page
    assert "seconds from 5 to 3600 (0: off" in page.split('id="mqtt-heartbeat-s-help"')[1].split("</small>")[0]

    for bad, why in (("2", "2 is not allowed: use seconds from 5 to 3600"), ("3601", "3601 is not allowed"),
                     ("half a minute", "'half a minute' is not a whole number: use seconds from 5 to 3600"),
                     ("30.5", "'30.5' is not a whole number")):
        r = save(s, url, {**fields, "mqtt.heartbeat_s": bad})
        assert r.status_code == 400 and f"Nothing saved: Heartbeat (seconds): {why}" in html.unescape(r.text), bad
        assert page_form(r.text)["mqtt.heartbeat_s"] == bad  # theirs, to correct
        tag = r.text.split('id="mqtt-heartbeat-s"')[1].split(">")[0]
        assert 'aria-invalid="true"' in tag and "autofocus" in tag and "mqtt-message" in tag
        assert appliance.ctx.cfg.mqtt.heartbeat_s == 30
    assert "mqtt.heartbeat_s" not in (appliance.store.get_setting("config_overrides") or {})

    r = save(s, url, {**fields, "mqtt.heartbeat_s": "60"})
    assert [h.status_code for h in r.history] == [303] and "Saved" in r.text
    assert appliance.ctx.cfg.mqtt.heartbeat_s == 60 and page_form(r.text)["mqtt.heartbeat_s"] == "60"
    assert appliance.store.get_setting("config_overrides")["mqtt.heartbeat_s"] == 60  # kept across restarts
    detail = appliance.store.query("SELECT detail FROM audit ORDER BY id DESC LIMIT 1")[0][0]
    assert detail == "MQTT off; Heartbeat (seconds): 30 -> 60", detail
    r = save(s, url, {**page_form(r.text), "mqtt.heartbeat_s": "0"})  # 0: off, as in the config file
    assert "Saved" in r.text and appliance.ctx.cfg.mqtt.heartbeat_s == 0
    earlier = {k: v for k, v in page_form(r.text).items() if k != "mqtt.heartbeat_s"}  # a page from before the field
    r = save(s, url, {**earlier, "mqtt.desk": "Row 9"})
    assert "Saved" in r.text and appliance.ctx.cfg.mqtt.heartbeat_s == 0 and appliance.ctx.cfg.mqtt.desk == "Row 9"


def test_test_connection_while_the_desk_is_connected_does_not_log_in_again(broker, make_appliance):
    """A test logging in with the user name the desk is connected with ends the desk's own
    connection under the README's broker set-up (one connection per user name): the page
    answers with the live connection for the same login, and says "Not tested" for another
    password of that user, instead of logging in. (tests/test_broker_acl.py shows, on the
    README's broker, that the live connection is not ended.)"""
    appliance = make_appliance(with_loop=False)
    s = login(appliance.url)
    url = f"{appliance.url}/admin/classroom"
    assert s.post(url, data=form(s, broker, "save"), timeout=10).status_code == 200
    wait_for(lambda: appliance.ctx.publisher.status.connected, what="the desk connected")
    r = s.post(url, data=form(s, broker, "test", **{"mqtt.password": ""}), timeout=10)  # the saved password
    assert r.status_code == 200, r.text
    assert f"Test: Connected to 127.0.0.1:{broker.port} as desk-11 (user {USER}): this desk&#039;s own connection" \
        in r.text
    r = s.post(url, data=form(s, broker, "test", **{"mqtt.password": "a-new-password"}), timeout=10)
    assert r.status_code == 409 and "Not tested: this desk is connected to" in r.text, r.text
    assert "Test failed" not in r.text and "a-new-password" not in r.text


def test_a_desk_label_holding_a_students_name_is_refused_on_the_page(broker, make_appliance):
    """The publisher withholds such a label and says so once, in the journal, where no admin
    looks: the admin typing "Anna's desk" is told why, on the page, and nothing is saved."""
    appliance = make_appliance(with_loop=False)
    appliance.accounts.create_user("anna.k", "a-student-password", "student")
    s = login(appliance.url)
    url = f"{appliance.url}/admin/classroom"
    r = s.post(url, data=form(s, broker, "save", **{"mqtt.desk": "Anna's desk"}), timeout=10)
    assert r.status_code == 400 and "Nothing saved: the desk label" in r.text and "Row 2, seat 4" in html.unescape(r.text)
    assert (appliance.store.get_setting("config_overrides") or {}).get("mqtt.desk") is None
    r = s.post(url, data=form(s, broker, "save", **{"mqtt.desk": "Row 2, seat 4"}), timeout=10)
    assert r.status_code == 200 and "Saved" in r.text
