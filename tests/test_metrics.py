"""/metrics (Prometheus text via prometheus-client) and /healthz, against a running appliance."""
from __future__ import annotations

import time

import requests
from conftest import wait_for
from prometheus_client.parser import text_string_to_metric_families

from edge_app import config as config_mod
from edge_app.runtime.metrics import STAGES, Metrics


def scrape(url: str) -> dict:
    r = requests.get(f"{url}/metrics", timeout=10)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/plain")
    return {f.name: f for f in text_string_to_metric_families(r.text)}


def value(families: dict, name: str, sample: str | None = None, **labels) -> float:
    for s in families[name].samples:
        if (sample is None or s.name == sample) and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    raise AssertionError(f"no sample {sample or name} {labels}")


def test_each_metrics_object_has_its_own_registry():
    a, b = Metrics(), Metrics()  # the same names twice: would raise on the global registry
    a.record_frame({s: 0.001 for s in STAGES}, 0.006, 0.005, 0.0007)
    assert a.registry.get_sample_value("engage_frames_captured_total") == 1
    assert b.registry.get_sample_value("engage_frames_captured_total") == 0
    assert a.registry.get_sample_value("engage_stage_seconds_count", {"stage": "detect"}) == 1
    assert a.registry.get_sample_value("engage_inference_seconds_count") == 1
    a.keep_samples()
    a.record_frame({s: 0.002 for s in STAGES}, 0.012, 0.01, None)
    assert a.samples["frame"] == [0.012] and a.samples["inference"] == []


def test_metrics_endpoint_reports_the_running_loop(appliance):
    wait_for(lambda: appliance.loop.health.frames >= 10)
    h = appliance.loop.health
    frames0, dropped0 = h.frames, h.dropped
    fam = scrape(appliance.url)
    frames1, dropped1 = h.frames, h.dropped  # the loop runs on: the scrape falls in between
    # the metric counts a frame as it is processed, health just after: at most one ahead
    assert frames0 <= value(fam, "engage_frames_captured", "engage_frames_captured_total") <= frames1 + 1
    assert dropped0 <= value(fam, "engage_frames_dropped", "engage_frames_dropped_total") <= dropped1
    for stage in STAGES:
        assert value(fam, "engage_stage_seconds", "engage_stage_seconds_count", stage=stage) >= 10
    assert value(fam, "engage_capture_to_led_seconds", "engage_capture_to_led_seconds_count") >= 10
    assert "engage_inference_seconds" in fam
    assert value(fam, "engage_camera_status", engage_camera_status="ok") == 1
    assert value(fam, "engage_camera_status", engage_camera_status="fault") == 0
    state = appliance.loop.state.group
    assert value(fam, "engage_state", engage_state=state) == 1
    manifest = appliance.classifier.manifest
    info = [s for s in fam["engage_model_info"].samples if s.name == "engage_model_info"][0]
    assert info.labels["sha256"] == manifest.sha256
    assert info.labels["file"] == manifest.model_path.name
    assert "version" in info.labels
    assert value(fam, "engage_disk_free_bytes") > 0
    # the counters move: a second scrape sees more frames
    n1 = value(fam, "engage_frames_captured", "engage_frames_captured_total")
    wait_for(lambda: value(scrape(appliance.url), "engage_frames_captured", "engage_frames_captured_total") > n1)


def test_healthz_ok_while_all_is_well(appliance):
    wait_for(lambda: appliance.loop.health.frames >= 3)
    r = requests.get(f"{appliance.url}/healthz", timeout=10)
    body = r.json()
    assert r.status_code == 200, body
    assert body["status"] == "ok" and body["reasons"] == []
    assert body["disk_free_mb"] > 0 and body["store"] == "ok"


def test_healthz_degraded_when_the_disk_is_below_the_threshold(make_appliance, cfg):
    # more free space required than this disk has: logging pauses, health says why
    low = config_mod.with_changes(cfg, {"store.min_free_mb": 100000})
    appliance = make_appliance(low)
    r = requests.get(f"{appliance.url}/healthz", timeout=10)
    assert r.status_code == 503
    body = r.json()
    assert body["status"] == "degraded"
    # "disk: ..." or, once the loop's first row waits for space, "store disk full: ...": either names the setting
    assert any(("disk" in reason) and "min_free_mb" in reason for reason in body["reasons"]), body


def test_a_slow_stage_drops_frames_instead_of_queueing_them(cfg):
    """A slow LED (0.1 s per update) on a 30 fps camera: the loop takes the newest frame
    each time and the source counts the ones that went by; none waits in a queue."""
    from edge_app.device.indicators import Indicator
    from edge_app.runtime.capture import CaptureLoop
    from edge_app.vision.classifier import EmotionClassifier
    from edge_app.vision.detector import FaceDetector
    from edge_app.vision.sources import DemoSource

    class SlowLed(Indicator):
        def show(self, group):
            time.sleep(0.1)

    source = DemoSource(fps=30, realtime=True)
    loop = CaptureLoop(cfg, source, FaceDetector.from_config(cfg), EmotionClassifier(), None, SlowLed()).start()
    try:
        wait_for(lambda: loop.health.frames >= 12)
    finally:
        loop.stop()
    h = loop.health
    assert h.dropped > h.frames  # ~2 of every 3 frames skipped at 30 fps
    assert loop.metrics.registry.get_sample_value("engage_frames_dropped_total") == h.dropped
    # the loop counts the source's drops at each frame it takes; a read still under way at
    # the stop (its thread finishes it unwatched) adds its own few after the last count
    assert h.dropped <= source.dropped <= h.dropped + 60  # 30 a second: a last read up to 2 s late


def _wsgi_get(app, path: str, remote_addr: str, cookie: str = "") -> tuple[str, bytes]:
    """Call the WSGI app directly as if from ``remote_addr`` (no network traffic)."""
    import io
    from wsgiref.util import setup_testing_defaults

    environ = {"PATH_INFO": path, "REMOTE_ADDR": remote_addr, "wsgi.input": io.BytesIO(b"")}
    if cookie:
        environ["HTTP_COOKIE"] = cookie
    setup_testing_defaults(environ)
    status = []
    body = b"".join(app(environ, lambda s, h, exc=None: status.append(s)))
    return status[0], body


def test_metrics_are_not_served_to_the_network_without_an_admin(web_appliance):
    """The live engagement state is personal data: a LAN address gets 403, loopback and admins 200."""
    from edge_app.web.guard import COOKIE

    status, body = _wsgi_get(web_appliance.app, "/metrics", "192.0.2.7")
    assert status.startswith("403") and b"metrics_public" in body
    assert _wsgi_get(web_appliance.app, "/metrics", "127.0.0.1")[0].startswith("200")
    user = web_appliance.accounts.find("admin")
    token, _ = web_appliance.accounts.start_session(user)
    assert _wsgi_get(web_appliance.app, "/metrics", "192.0.2.7", f"{COOKIE}={token}")[0].startswith("200")


def test_healthz_and_the_pages_name_the_build_to_admins_and_the_device_only(web_appliance):
    """/healthz and every page's footer said 0.1.0+g1234abc to anyone on the school network,
    which picks out the desks not yet patched; the build is for logged-in admins (and the
    device itself: `/healthz` from loopback, `engage-edge --version`), as on the classroom."""
    import json
    import wsgiref.util

    from conftest import login

    from edge_app import __version__

    url = web_appliance.url
    env: dict = {"PATH_INFO": "/healthz", "REMOTE_ADDR": "192.0.2.10", "HTTP_HOST": "127.0.0.1"}  # another machine
    wsgiref.util.setup_testing_defaults(env)
    anonymous = b"".join(web_appliance.app(env, lambda status, headers, exc_info=None: None)).decode()
    assert json.loads(anonymous)["status"] in ("ok", "degraded")
    assert "version" not in json.loads(anonymous) and __version__ not in anonymous
    # the device itself (a watchdog, a technician's curl on it) is told, as it is the broker's details
    assert requests.get(f"{url}/healthz", timeout=10).json()["version"] == __version__
    assert __version__ not in requests.get(f"{url}/login", timeout=10).text
    assert __version__ not in requests.get(f"{url}/no-such-page", timeout=10).text
    admin = login(url)
    assert admin.get(f"{url}/healthz", timeout=10).json()["version"] == __version__
    assert f"engage-edge {__version__} ·" in admin.get(f"{url}/admin", timeout=10).text


def test_healthz_shows_the_broker_links_counts_and_names_to_admins_and_this_machine_only(make_appliance, cfg):
    """With MQTT on, /healthz's mqtt.sent grew by one per state message: polling it without a
    log-in told anyone on the network when the student at the desk came, went or changed, and
    it named the broker, the device id and the broker user. Without a log-in, from another
    machine: connected and whether a backlog waits, no more."""
    import json
    import socket
    import wsgiref.util

    from conftest import login

    with socket.socket() as s:  # a broker port where nothing answers (no DNS): the names are what matter
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    appliance = make_appliance(config_mod.with_changes(cfg, {"mqtt.host": "127.0.0.1", "mqtt.port": port,
                                                             "mqtt.username": "desk-07-user"}), with_loop=False)

    def healthz_from_another_machine(cookie: str = "") -> dict:
        env: dict = {"PATH_INFO": "/healthz", "REMOTE_ADDR": "192.0.2.10", "HTTP_HOST": "127.0.0.1",
                     **({"HTTP_COOKIE": cookie} if cookie else {})}
        wsgiref.util.setup_testing_defaults(env)
        return json.loads(b"".join(appliance.app(env, lambda status, headers, exc_info=None: None)))

    anonymous = healthz_from_another_machine()
    assert anonymous["mqtt"] == {"enabled": True, "connected": False, "backlog_waiting": False}
    assert f"127.0.0.1:{port}" not in json.dumps(anonymous) and "desk-07-user" not in json.dumps(anonymous)
    admin = login(appliance.url)
    for full in (healthz_from_another_machine("; ".join(f"{k}={v}" for k, v in admin.cookies.items()))["mqtt"],
                 requests.get(f"{appliance.url}/healthz", timeout=10).json()["mqtt"]):  # a watchdog on the device
        assert full["sent"] == 0 and full["broker"] == f"127.0.0.1:{port}" and full["device_id"]
        assert "desk-07-user" in full["text"] and full["backlog_waiting"] is False
