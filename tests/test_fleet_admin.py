"""The device admin's classroom broker page: status, a real connection test, validation, save."""
from __future__ import annotations

import json
from pathlib import Path

import mqtt_broker
import requests
from conftest import login, wait_for
from mqtt_broker import PASSWORD, USER

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
    assert r.status_code == 400 and "mqtt.port = 0 is not allowed" in r.text
    r = s.post(url, data=form(s, broker, "save", **{"mqtt.host": "bad host!"}), timeout=10)
    assert r.status_code == 400 and "mqtt.host" in r.text and "Nothing saved" in r.text
    r = s.post(url, data=form(s, broker, "test", **{"mqtt.password": "wrong-password"}), timeout=10)
    assert r.status_code == 502 and "refused the log-in as &#039;desk&#039;" in r.text
    r = s.post(url, data=form(s, broker, "test"), timeout=10)
    assert r.status_code == 200 and f"Connected to 127.0.0.1:{broker.port} as desk-11" in r.text
    assert PASSWORD not in r.text and "type it again, then Save" in r.text  # not kept for a Save that follows
    assert requests.get(f"{appliance.url}/healthz", timeout=5).json()["mqtt"] == {"enabled": False}  # a test saves nothing

    r = s.post(url, data=form(s, broker, "save"), timeout=10)
    assert r.status_code == 200 and "Saved" in r.text
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
