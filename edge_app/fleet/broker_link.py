"""The link to an MQTT broker, as the device's publisher and the classroom's subscriber both hold it.

A paho client made from ``MqttSettings`` (credentials, TLS, reconnect back-off), what a
failed, refused or unanswered connection says in plain words (in the reader's own terms:
the device's ``mqtt.*`` keys or the classroom's options), a log that says each failure at
most once a minute, the status /healthz and the pages show (``BrokerStatus``), and a stop
that never hangs on paho's network thread. What is published or subscribed is the
caller's (``publisher``, ``classroom/subscriber``).
"""
from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge_app.fleet.settings import MqttSettings

RECONNECT_MIN_S, RECONNECT_MAX_S = 1, 30
NETWORK_STOP_S = 1.0  # at least this long for paho's network thread to stop (``stop_network``, in the publisher's and the subscriber's stop)
FAILURE_LOG_S = 60.0  # a connection that keeps failing: each distinct reason logged at most once a minute
# this many drops of an answered connection within DROPS_WINDOW_S: the admin page and /healthz say what it may be.
# Two devices with one device id drop every second or two; an unsteady Wi-Fi or a broker restarting, at that pace
# hardly ever (one a minute over ten minutes named a clone to a technician with none)
MANY_DROPS, DROPS_WINDOW_S = 10, 120.0
CONNECTING_HINT_S = 10.0  # "connecting" with no answer for this long says what to check instead
DEVICE_NAMES = {"host": "mqtt.host", "port": "mqtt.port", "tls_ca": "mqtt.tls_ca"}  # settings, as a message names them


@dataclass
class BrokerStatus:
    """What /healthz, /metrics and the admin page show about the broker."""

    enabled: bool
    broker: str = ""
    device_id: str = ""
    username: str = ""
    connected: bool = False
    error: str = ""
    backlog: int = 0
    sent: int = 0
    connecting_since: float | None = None  # monotonic: the start, while nothing has answered yet
    waiting_hint: str = ""  # what to check when "connecting" lasts CONNECTING_HINT_S with no answer
    drops: int = 0  # connections lost in the last DROPS_WINDOW_S (``Publisher.snapshot``)

    def reason(self) -> str:
        """Why it is not connected: the error, or once "connecting" has lasted with no answer
        at all, what to check (a broker that takes the connection and never answers)."""
        if self.connected or self.error:
            return self.error
        if self.connecting_since is not None and time.monotonic() - self.connecting_since >= CONNECTING_HINT_S:
            return (f"no answer from {self.broker} after {time.monotonic() - self.connecting_since:.0f} s: "
                    f"{self.waiting_hint or 'check the host, the port and TLS'}; still trying")
        return ""

    def text(self) -> str:
        who = f" as {self.username}" if self.username else ""
        if not self.enabled:
            return "MQTT is off (set mqtt.host to publish to a classroom broker)"
        if self.connected:
            return f"connected to {self.broker}{who} (device {self.device_id}){self.drops_text()}"
        return f"not connected to {self.broker}{who}: {self.reason() or 'connecting'}{self.drops_text()}"

    def drops_text(self) -> str:
        """What many drops of the connection may mean, or "" (``MANY_DROPS``)."""
        if self.drops < MANY_DROPS:
            return ""
        return (f"; the connection dropped {self.drops} times in the last {DROPS_WINDOW_S / 60:.0f} minutes, as when "
                f"another device uses this desk's device ID ({self.device_id}: a card cloned with its settings) and "
                "the broker drops each as the other connects: give each its own mqtt.device_id (the classroom page "
                "marks such a desk). Else the network or the broker keeps failing")


class Client(mqtt.Client):
    """paho's client, keeping why its latest connection attempt failed: paho tells
    ``on_connect_fail`` nothing, so a wrong CA read as "cannot reach the broker"."""

    connect_error: OSError | None = None

    def reconnect(self) -> mqtt.MQTTErrorCode:
        self.connect_error = None
        try:
            return super().reconnect()
        except OSError as exc:
            self.connect_error = exc
            raise


CERT_NOT_YET_VALID, CERT_EXPIRED = 9, 10  # OpenSSL's X509_V_ERR_CERT_NOT_YET_VALID and _HAS_EXPIRED


def failure_text(settings: MqttSettings, exc: BaseException | None, names: dict[str, str] = DEVICE_NAMES) -> str:
    """Why a connection attempt failed, in plain words, and what to check (``names``: the
    settings as the reader sets them: the device's keys, the classroom's flags)."""
    where, host, port, ca = settings.broker, names["host"], names["port"], names["tls_ca"]
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_code in (CERT_EXPIRED, CERT_NOT_YET_VALID):
        # the CA and the name were right: checking them (what the message below says) led nowhere
        when = "has expired" if exc.verify_code == CERT_EXPIRED else "is not valid yet"
        return (f"the TLS certificate of {where} {when} ({exc.verify_message}), or this machine's clock is wrong: "
                f"check the date here (timedatectl: a time server set it?), then the certificate's dates on the broker "
                "(openssl x509 -noout -dates -in server.pem); renew it as README 'Classroom' says (run the last three "
                "commands of its certificate steps again and restart Mosquitto); retrying")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (f"the TLS certificate of {where} was not accepted ({exc.verify_message or exc}): check that {ca} "
                f"({settings.tls_ca}) is the CA that signed the broker's certificate and that {host} is a name "
                "the certificate holds; retrying")
    plain_port = (ssl.SSLEOFError, ConnectionResetError, ConnectionAbortedError, BrokenPipeError)
    if settings.tls_ca and (isinstance(exc, plain_port) or "WRONG_VERSION_NUMBER" in str(exc)
                            or "wrong version number" in str(exc)):
        return (f"the TLS handshake with {where} failed ({exc}): a plain (non-TLS) port answered the TLS hello? "
                f"Use the broker's TLS port (usually 8883) with {ca}, or leave {ca} out for a plain port; retrying")
    if isinstance(exc, ssl.SSLError):
        return f"TLS with {where} failed ({exc}): check {ca}, the client certificate and {port}; retrying"
    if isinstance(exc, ConnectionRefusedError):
        return (f"nothing accepts connections at {where} (connection refused): check {host} and {port} and that "
                "the broker runs; retrying")
    if isinstance(exc, socket.gaierror):
        return f"the broker's name {settings.host!r} cannot be resolved ({exc}): check {host} and DNS; retrying"
    if isinstance(exc, TimeoutError):
        return (f"no answer from {where} (timed out): check {host}, {port} and that a firewall lets this machine "
                "reach it; retrying")
    said = f" ({exc})" if exc is not None else ""
    return (f"cannot reach the broker at {where}{said}: check {host} and {port}, that the broker runs and that "
            "the network lets this machine reach it; retrying")


def closed_text(settings: MqttSettings, names: dict[str, str] = DEVICE_NAMES) -> str:
    """The broker took the connection and closed it before answering the log-in."""
    if not settings.tls_ca:
        return (f"{settings.broker} closed the connection before answering: a TLS port (usually 8883) without "
                f"{names['tls_ca']}? Give the broker's CA file, or use its plain port; retrying")
    return (f"{settings.broker} closed the connection before answering: see the broker's log (a client certificate "
            "it requires, a listener for another protocol); retrying")


def waiting_hint(settings: MqttSettings, names: dict[str, str] = DEVICE_NAMES) -> str:
    """What to check while a broker takes the connection and never answers."""
    if settings.tls_ca:
        return f"is {names['port']} the broker's TLS port (usually 8883)?"
    return f"a TLS port (usually 8883) needs {names['tls_ca']}; check {names['host']} and {names['port']}"


class FailureLog:
    """Connection failures in the log, each distinct reason at most once per ``every_s``: a
    broker that refuses every few seconds must not fill the journal on the SD card, but a
    wrong CA or port must be in it (nothing was logged at all)."""

    def __init__(self, logger: logging.Logger, every_s: float = FAILURE_LOG_S):
        self.logger, self.every_s = logger, every_s
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def __call__(self, text: str) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._last.get(text, -self.every_s) < self.every_s:
                return
            if len(self._last) > 100:  # reasons that carry changing details: forget the old ones
                self._last.clear()
            self._last[text] = now
        self.logger.warning("mqtt: %s", text)


def make_client(settings: MqttSettings, client_id: str) -> Client:
    """A paho client with the credentials and TLS of ``settings`` (not yet connected)."""
    client = Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True,
                         protocol=mqtt.MQTTv311)
    if settings.username:
        client.username_pw_set(settings.username, settings.password or None)
    if settings.tls_ca:
        try:
            client.tls_set(ca_certs=settings.tls_ca, certfile=settings.tls_cert or None,
                           keyfile=settings.tls_key or None)
        except (OSError, ValueError) as exc:  # a missing or unreadable PEM file (ssl.SSLError is an OSError)
            from edge_app.config import ConfigError

            raise ConfigError(f"the MQTT TLS files cannot be used ({exc}): check that mqtt.tls_ca "
                              f"({settings.tls_ca}), mqtt.tls_cert and mqtt.tls_key are readable PEM files") from None
    client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
    return client


def refusal_text(settings: MqttSettings, reason: object,
                 fix: str = "check mqtt.username and mqtt.password (or mqtt.password_file)") -> str:
    """Why the broker refused us, and what to change (``fix``: in the caller's own terms)."""
    text = str(reason)
    if "user name or password" in text.lower() or "not authori" in text.lower():
        who = f"as {settings.username!r}" if settings.username else "without a user name"
        return f"the broker {settings.broker} refused the log-in {who} ({text}): {fix}"
    return f"the broker {settings.broker} refused the connection ({text})"


def stop_network(client: mqtt.Client, limit: float) -> str:
    """paho's ``loop_stop()``, waited on for ``limit`` at most; "" when it stopped, else what
    became of it. It joins paho's network thread without a limit, and that thread may be in a
    connection attempt that hangs (a TLS handshake with a frozen broker, a connect into a dead
    network, a DNS look-up: paho's connect_timeout or the resolver's time each) or wait for
    acknowledgements a hung link never brings: a service's stop waited past systemd's
    TimeoutStopSec, and its SIGKILL lost the rest of the stop. After ``limit`` an open
    connection is cut; a thread still busy is left (a daemon: it ends with the process)."""
    stopper = threading.Thread(target=client.loop_stop, name="mqtt-stop", daemon=True)
    stopper.start()
    stopper.join(limit)
    if not stopper.is_alive():
        return ""
    sock = client.socket()
    if isinstance(sock, socket.socket):  # a connection that takes no more: its read fails now, the thread ends
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        stopper.join(1.0)
    return "it was cut" if not stopper.is_alive() else "left to end by itself"
