"""A reverse proxy in front (web.trusted_proxies, classroom --trusted-proxies): the client
it names counts as the client, for the log-in throttle and /metrics alike; anyone else's
X-Forwarded-For is ignored. Over real HTTP on loopback, the test playing the proxy."""
from __future__ import annotations

import mqtt_broker
import pytest
import requests

from edge_app import config as config_mod
from edge_app.cli import main
from edge_app.web.http_limits import PeerLimits
from edge_app.web.proxies import TrustedProxies
from tests.conftest import ADMIN_PASSWORD

broker = mqtt_broker.broker  # fixture: a real Mosquitto per test


@pytest.mark.parametrize("peer, forwarded, client", [
    ("192.0.2.10", "198.51.100.7", "198.51.100.7"),  # the proxy names its client
    ("192.0.2.99", "198.51.100.7", "192.0.2.99"),  # not a trusted proxy: its header means nothing
    ("192.0.2.10", "", "192.0.2.10"),  # a proxy that names nobody
    ("192.0.2.10", "127.0.0.1, 198.51.100.7", "198.51.100.7"),  # what the client wrote to the left is not believed
    ("192.0.2.10", "198.51.100.7, 10.0.0.3", "198.51.100.7"),  # through two proxies (10.0.0.0/8 trusted too)
    ("192.0.2.10", "10.0.0.4, 10.0.0.3", "10.0.0.4"),  # only proxies: the first of them
    ("192.0.2.10", "198.51.100.7:5555", "198.51.100.7"),  # with the client's port, as some balancers write it
    ("192.0.2.10", "[2001:db8::7]:443", "2001:db8::7"),
    ("192.0.2.10", "[2001:db8::7]", "2001:db8::7"),
    ("192.0.2.10", "198.51.100.7, _hidden7", "_hidden7"),  # RFC 7239's obfuscated name: the proxy's word for it
    ("192.0.2.10", "unknown", "unknown"),  # never the proxy itself: that would lump its clients together
    ("::ffff:192.0.2.10", "2001:db8::7", "2001:db8::7"),  # a dual-stack socket's mapped address, an IPv6 client
])
def test_the_client_is_the_first_untrusted_address_from_the_right(peer, forwarded, client):
    assert TrustedProxies("192.0.2.10, 10.0.0.0/8").client(peer, forwarded) == client


def test_nobody_is_trusted_by_default():
    assert TrustedProxies().client("127.0.0.1", "198.51.100.7") == "127.0.0.1"


def test_a_bad_entry_is_refused_with_what_to_write(cfg, tmp_path, capsys):
    with pytest.raises(config_mod.ConfigError, match="web.trusted_proxies .*IP addresses or networks"):
        config_mod.with_changes(cfg, {"web.trusted_proxies": "10.0.0.300"})
    with pytest.raises(SystemExit) as exit_info:
        main(["classroom", "--mqtt-host", "localhost", "--trusted-proxies", "nginx.local"])
    assert exit_info.value.code == 2 and "'nginx.local' is not an IP address or network" in capsys.readouterr().err


def test_a_trusted_proxy_shares_no_address_limit():
    peers = PeerLimits(1)
    peers.exempt_loopback = False
    peers.exempt_proxies = TrustedProxies("192.0.2.10")
    assert peers.enter("192.0.2.10") and peers.enter("192.0.2.10")  # everyone behind it
    assert peers.enter("192.0.2.11") and not peers.enter("192.0.2.11")


def proxied_login(url: str, client: str, username: str, password: str) -> int:
    return requests.post(f"{url}/api/login", json={"username": username, "password": password},
                         headers={"X-Forwarded-For": client}, timeout=10).status_code


@pytest.mark.parametrize("trusted", [True, False], ids=["trusted", "not trusted"])
def test_one_clients_guesses_slow_down_that_client_only_behind_a_trusted_proxy(make_appliance, cfg, trusted):
    """Two failures slow an address down (shortened from 10): behind an untrusted proxy a
    student's guesses lock the whole school out, behind a trusted one only that student."""
    changes = {"login.slow_after_address": 2, "login.first_delay_s": 30.0,
               "web.trusted_proxies": "127.0.0.1" if trusted else ""}
    appliance = make_appliance(config_mod.with_changes(cfg, changes), with_loop=False)
    guesser, teacher = "198.51.100.7", "198.51.100.8"
    assert [proxied_login(appliance.url, guesser, f"name{i}", "wrong-guess-1") for i in range(3)] == [401, 401, 429]
    assert proxied_login(appliance.url, teacher, "admin", ADMIN_PASSWORD) == (200 if trusted else 429)


def test_metrics_behind_a_trusted_proxy_are_not_loopback(make_appliance, cfg):
    """With nginx on this machine, every client arrived from loopback: /metrics (the live
    state) was open to anyone through the proxy. Trusted, the proxy's client is asked for."""
    appliance = make_appliance(config_mod.with_changes(cfg, {"web.trusted_proxies": "127.0.0.1"}), with_loop=False)
    assert requests.get(f"{appliance.url}/metrics", headers={"X-Forwarded-For": "198.51.100.7"},
                        timeout=10).status_code == 403
    assert requests.get(f"{appliance.url}/metrics", timeout=10).status_code == 200  # a scraper on this machine


def test_the_classroom_page_counts_the_proxys_clients(broker, tmp_path, monkeypatch):
    from edge_app.fleet.classroom.service import ClassroomService
    from tests.test_fleet_classroom import mqtt

    monkeypatch.setenv("ENGAGE_ADMIN_PASSWORD", ADMIN_PASSWORD)
    login = config_mod.with_changes(config_mod.defaults(), {"login.slow_after_address": 2,
                                                            "login.first_delay_s": 30.0}).login
    service = ClassroomService(mqtt(broker, device_id="classroom"), tmp_path / "classroom", port=0, login=login,
                               trusted_proxies="127.0.0.1", reserve_mb=1).start()
    try:
        assert [proxied_login(service.url, "198.51.100.7", f"name{i}", "wrong-guess-1")
                for i in range(3)] == [401, 401, 429]
        assert proxied_login(service.url, "198.51.100.8", "admin", ADMIN_PASSWORD) == 200
        # behind nginx for TLS the session cookie is Secure and HSTS is sent (the certificate option alone decided)
        host = service.url.split("://", 1)[1]
        r = requests.post(f"{service.url}/api/login", json={"username": "admin", "password": ADMIN_PASSWORD},
                          headers={"X-Forwarded-For": "198.51.100.9", "X-Forwarded-Proto": "https",
                                   "Origin": f"https://{host}"}, timeout=10)
        assert r.status_code == 200, r.text
        assert "secure" in r.headers["Set-Cookie"].lower() and "max-age=" in r.headers["Strict-Transport-Security"]
    finally:
        service.stop()


def raw_request(url: str, head: bytes) -> bytes:
    """Send a request head as written (headers requests would normalise) and read the answer's first line."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as s:
        s.sendall(head)
        return s.recv(200).split(b"\r\n", 1)[0]


def test_an_underscore_header_cannot_replace_what_the_proxy_appended(make_appliance, cfg):
    """cheroot filed X_Forwarded_For under the same key, the later winning: through a proxy
    that passes it on, a client named itself loopback and read /metrics."""
    appliance = make_appliance(config_mod.with_changes(cfg, {"web.trusted_proxies": "127.0.0.1"}), with_loop=False)
    answer = raw_request(appliance.url, b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                                        b"X-Forwarded-For: 198.51.100.7\r\nX_Forwarded_For: 127.0.0.1\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 403"), answer


def test_a_host_in_a_trusted_network_cannot_pass_for_this_machine(make_appliance, cfg):
    from tests.test_web_attacks import call_wsgi

    appliance = make_appliance(config_mod.with_changes(cfg, {"web.trusted_proxies": "192.0.2.0/24"}), with_loop=False)
    assert call_wsgi(appliance.app, "/metrics", HTTP_X_FORWARDED_FOR="127.0.0.1").startswith("403")


def test_a_large_body_is_refused_before_it_is_read_except_where_uploads_go(make_appliance, cfg):
    appliance = make_appliance(with_loop=False)
    big = b"Host: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: 200000\r\n\r\n"
    assert raw_request(appliance.url, b"POST /api/login HTTP/1.1\r\n" + big).startswith(b"HTTP/1.1 413")
    # an upload path reads on: here the app refuses the anonymous caller itself
    assert raw_request(appliance.url, b"POST /api/analyze HTTP/1.1\r\n" + big).startswith(b"HTTP/1.1 401")


def readme_proxy_headers(host: str, client: str) -> dict[str, str]:
    """The headers the README's nginx lines (``proxy_set_header``) make nginx send for a
    browser that opened https://``host`` (a port in it: nginx listening there)."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme[readme.index("- **Behind a reverse proxy**"):readme.index("- **Hostile clients:**")]
    values = {"host": host.split(":")[0], "http_host": host, "scheme": "https", "proxy_add_x_forwarded_for": client}
    return {name: values[var] for name, var in re.findall(r"proxy_set_header ([\w-]+) \$(\w+);", section)}


def test_behind_a_trusted_tls_proxy_forms_work_with_a_secure_cookie_and_hsts(make_appliance, cfg):
    """nginx for TLS set up as the README said: the browser's "Origin: https://desk..." was
    compared with the plain HTTP the app saw, so the log-in and every form got 403 "sent from
    another site"; told https (X-Forwarded-Proto), the cookie still had no Secure and no HSTS
    was sent. From anyone but a trusted proxy, X-Forwarded-Proto and -Host are ignored."""
    from tests.test_web_attacks import call_wsgi

    appliance = make_appliance(config_mod.with_changes(cfg, {"web.trusted_proxies": "127.0.0.1",
                                                             "web.allowed_hosts": "desk.school.example"}),
                               with_loop=False)
    creds = {"username": "admin", "password": ADMIN_PASSWORD}
    for opened in ("desk.school.example", "desk.school.example:8443"):  # nginx on 443, and on the desk's own port
        headers = readme_proxy_headers(opened, "198.51.100.7")
        assert {"Host", "X-Forwarded-Proto", "X-Forwarded-For"} <= set(headers)
        r = requests.post(f"{appliance.url}/api/login", json=creds, headers={**headers, "Origin": f"https://{opened}"},
                          timeout=10)
        assert r.status_code == 200, (opened, r.text)
        assert "secure" in r.headers["Set-Cookie"].lower() and "max-age=" in r.headers["Strict-Transport-Security"]
    headers = readme_proxy_headers("desk.school.example", "198.51.100.7")
    # X-Forwarded-Host is believed from no one: nginx passes a client's own on, and a rebinding
    # page's script naming the desk there got past the allowed-host check (GETs need no Origin)
    r = requests.post(f"{appliance.url}/api/login", json=creds, timeout=10,
                      headers={"X-Forwarded-Host": "desk.school.example", "X-Forwarded-Proto": "https",
                               "Origin": "https://desk.school.example"})
    assert r.status_code == 403
    rebound = {**headers, "Host": "rebind.attacker.example", "X-Forwarded-Host": "desk.school.example"}
    assert requests.get(f"{appliance.url}/healthz", headers=rebound, timeout=10).status_code == 400
    # plain HTTP through the same proxy: no Secure cookie (the browser would drop it), no HSTS
    r = requests.post(f"{appliance.url}/api/login", json=creds, timeout=10,
                      headers={**headers, "X-Forwarded-Proto": "http", "Origin": "http://desk.school.example"})
    assert r.status_code == 200 and "secure" not in r.headers["Set-Cookie"].lower()
    assert "Strict-Transport-Security" not in r.headers
    # another machine's X-Forwarded-Proto / -Host mean nothing: the scheme is still http
    assert call_wsgi(appliance.app, "/api/login", REQUEST_METHOD="POST", HTTP_X_FORWARDED_PROTO="https",
                     HTTP_ORIGIN="https://127.0.0.1").startswith("403")
    assert call_wsgi(appliance.app, "/api/login", REQUEST_METHOD="POST", HTTP_X_FORWARDED_HOST="desk.school.example",
                     HTTP_ORIGIN="http://desk.school.example").startswith("403")
