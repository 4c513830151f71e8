"""A real Mosquitto broker for the fleet tests: its own config, port and password file.

Debian's ``mosquitto`` (installed by ``make test``) is started per test on a free
loopback port with ``allow_anonymous false``; ``tls=True`` adds a TLS listener with a
throw-away CA made here with openssl; ``users`` adds accounts and ``acl`` an ACL file's
text (the README's); ``extra`` more mosquitto.conf lines. ``stop()``/``start()`` simulate an
outage, ``crash()`` a broker that dies at once (SIGKILL: no will is sent, and with
persistence only what it last saved survives).

Ports are picked free, then handed to Mosquitto: another test (another xdist worker) can
take one in between, so a start counts only once this Mosquitto says it is running; the
first start then moves to new ports, a restart (which must keep its port) fails saying so.
"""
from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
USER, PASSWORD = "desk", "desk-secret-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def closed_port() -> Iterator[int]:
    """A loopback port that refuses connections while the block runs: bound here but never
    listening, so no other test's broker (which would take the shared login) can have it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


def unique_id(prefix: str) -> str:
    """An MQTT client id no other client has: a broker drops one of two clients sharing an id."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def make_ca(folder: Path, server_days: int = 2) -> dict[str, Path]:
    """A CA and a server certificate for 127.0.0.1/localhost (PEM files in ``folder``);
    ``server_days`` -1: one that expired a day ago."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key, csr, cert = (folder / n for n in ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem"))
    ext = folder / "san.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca), "-days", "2",
        "-subj", "/CN=engage-test-ca")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", "/CN=localhost")
    run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial", "-out", str(cert),
        "-days", str(server_days), "-extfile", str(ext))
    return {"ca": ca, "cert": cert, "key": key}


class Broker:
    def __init__(self, folder: Path, tls: bool = False, persistence: bool = False,
                 users: dict[str, str] | None = None, acl: str = "", extra: tuple[str, ...] = ()):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o755)
        self.port = free_port()
        self.tls_port = free_port() if tls else None
        self.ca: Path | None = None
        self.started = False  # once it has run, a restart must get the same port back
        passwd = folder / "passwd"
        passwd.write_text("")
        for user, password in {USER: PASSWORD, **(users or {})}.items():
            subprocess.run(["mosquitto_passwd", "-b", str(passwd), user, password], check=True, capture_output=True)
        passwd.chmod(0o644)
        self._settings = ["per_listener_settings false", "allow_anonymous false", f"password_file {passwd}",
                          f"persistence {'true' if persistence else 'false'}", f"persistence_location {folder}/",
                          "user root", *extra]
        if acl:
            (folder / "acl").write_text(acl)
            (folder / "acl").chmod(0o644)
            self._settings.append(f"acl_file {folder / 'acl'}")
        self._tls_files: dict[str, Path] = {}
        if tls:
            self._tls_files = make_ca(folder / "tls")
            for f in self._tls_files.values():
                f.chmod(0o644)
            self.ca = self._tls_files["ca"]
        self.conf = folder / "mosquitto.conf"
        self.log = folder / "mosquitto.log"
        self.proc: subprocess.Popen | None = None
        self._log_file = None

    def _write_conf(self) -> None:
        lines = [*self._settings, f"listener {self.port} 127.0.0.1"]
        if self._tls_files:
            lines += [f"listener {self.tls_port} 127.0.0.1", f"cafile {self._tls_files['ca']}",
                      f"certfile {self._tls_files['cert']}", f"keyfile {self._tls_files['key']}"]
        self.conf.write_text("\n".join(lines) + "\n")

    def start(self) -> "Broker":
        for _ in range(5):
            if self._run():
                self.started = True
                return self
            if self.started:
                raise RuntimeError(f"mosquitto could not get its port {self.port} back on restart (another "
                                   f"process took it while it was stopped): {self.log.read_text()[-2000:]}")
            self.port = free_port()  # taken between free_port() and mosquitto's bind: new ports
            self.tls_port = free_port() if self.tls_port else None
        raise RuntimeError(f"mosquitto found no free port in 5 tries: {self.log.read_text()[-2000:]}")

    def _run(self) -> bool:
        """Start Mosquitto on the current ports: True once it says it is running (its
        listeners are then bound), False when it exits because a port is taken."""
        self._write_conf()
        logged = self.log.stat().st_size if self.log.exists() else 0
        self._log_file = open(self.log, "ab")
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=self._log_file,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while True:
            with open(self.log, "rb") as f:
                f.seek(logged)
                said = f.read().decode(errors="replace")
            if " running" in said:
                return True
            if self.proc.poll() is not None:
                self._close_log()
                if "Address already in use" in said:
                    self.proc = None
                    return False
                raise RuntimeError(f"mosquitto did not start: {said[-2000:]}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"mosquitto did not start within 10 s: {said[-2000:]}")
            time.sleep(0.02)  # polling its log: there is no other readiness signal to wait on

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None
        self._close_log()

    def crash(self) -> None:
        """Killed, as by a power cut: it sends no will and saves nothing more."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None
        self._close_log()


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path / "broker").start()
    yield b
    b.stop()


@pytest.fixture
def tls_broker(tmp_path):
    b = Broker(tmp_path / "tls-broker", tls=True).start()
    yield b
    b.stop()


class Listener:
    """A subscriber (a real paho client) that records every message it gets, in order."""

    def __init__(self, broker: Broker, topics: list[str], client_id: str = "", persistent: bool = False,
                 user: str = USER, password: str = PASSWORD):
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.messages: list[tuple[str, bytes, bool]] = []
        self.connected = 0
        self.subscribed = 0  # SUBACKs: from then on the broker delivers to this listener
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id or unique_id("listener"),
                                  clean_session=not persistent)
        self.client.username_pw_set(user, password)
        self.client.reconnect_delay_set(0.2, 1)

        def on_connect(client, userdata, flags, reason_code, properties):
            if not reason_code.is_failure:
                self.connected += 1
                client.subscribe([(t, 1) for t in topics])

        def on_subscribe(client, userdata, mid, reason_codes, properties):
            self.subscribed += 1

        self.client.on_connect = on_connect
        self.client.on_subscribe = on_subscribe
        self.client.on_message = lambda c, u, m: self.messages.append((m.topic, m.payload, bool(m.retain)))
        self.client.connect_async("127.0.0.1", broker.port, 10)
        self.client.loop_start()

    def payloads(self, topic: str) -> list[bytes]:
        return [p for t, p, _ in list(self.messages) if t == topic]

    def json(self, topic: str, live_only: bool = False) -> list[dict]:
        """Payloads as JSON; ``live_only`` leaves out retained copies replayed at (re)subscription."""
        import json

        return [json.loads(p) for t, p, retained in list(self.messages)
                if t == topic and p and not (live_only and retained)]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@contextlib.contextmanager
def publisher(broker: Broker, user: str = USER, password: str = PASSWORD, client_id: str = "") -> Iterator:
    """A plain paho client logged in as ``user``: what someone holding that account (a
    technician, another desk, an attacker) could send. Publish with ``send``."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id or unique_id(f"publisher-{user}"))
    client.username_pw_set(user, password)
    client.connect("127.0.0.1", broker.port, 10)
    client.loop_start()
    try:
        yield client
    finally:
        client.disconnect()
        client.loop_stop()


def send(client, topic: str, payload: str | bytes, retain: bool = True) -> None:
    """Publish at QoS 1 and wait for the broker's acknowledgement: the broker has routed
    (or dropped) it before anything sent after it on any connection."""
    info = client.publish(topic, payload, qos=1, retain=retain)
    info.wait_for_publish(10)
    assert info.is_published()
