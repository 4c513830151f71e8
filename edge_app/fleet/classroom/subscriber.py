"""The classroom's MQTT side: subscribe to every desk's state, minute rows, availability and heartbeat."""
from __future__ import annotations

import logging
import os
import time

from edge_app.fleet.broker_link import (
    NETWORK_STOP_S,
    BrokerStatus,
    FailureLog,
    closed_text,
    failure_text,
    make_client,
    refusal_text,
    stop_network,
    waiting_hint,
)
from edge_app.fleet.classroom.model import Classroom
from edge_app.fleet.settings import MqttSettings

log = logging.getLogger(__name__)
# the classroom page's own settings are its command-line options, not a device's [mqtt] keys
REFUSED_FIX = "check --mqtt-user and the password (--mqtt-password-file or ENGAGE_MQTT_PASSWORD)"
NAMES = {"host": "--mqtt-host", "port": "--mqtt-port", "tls_ca": "--tls-ca"}  # the settings a message names
KINDS = ("state", "minute", "availability", "heartbeat")  # the topics a desk publishes under <prefix>/<id>/


class Subscriber:
    def __init__(self, settings: MqttSettings, classroom: Classroom):
        self.settings, self.classroom = settings, classroom
        self.status = BrokerStatus(True, settings.broker, "", settings.username)
        self.client = make_client(settings, f"engage-classroom-{os.getpid()}-{id(self) & 0xffff:x}")
        self.client.on_connect = self._on_connect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.suppress_exceptions = True  # a failing callback is logged, never the end of the network thread
        self._depth = len(settings.topic_prefix.split("/"))
        self._stopping = False  # the disconnect that follows is ours, not a lost connection
        self._answered = False  # the broker answered this connection's log-in (paho's thread)
        self.failures = FailureLog(log)
        self.status.waiting_hint = waiting_hint(settings, NAMES)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        self._answered, self.status.connecting_since = True, None
        if reason_code.is_failure:
            self.status.connected = False
            self.status.error = refusal_text(self.settings, reason_code, REFUSED_FIX)
            self.failures(self.status.error)  # at most once a minute: a wrong password is refused at every retry
            self._tell_pages()
            return
        self.status.connected, self.status.error = True, ""
        self._tell_pages()
        log.info("mqtt: connected to %s", self.settings.broker)
        client.subscribe([(self.settings.topic(kind, "+"), 1) for kind in KINDS])

    def _on_connect_fail(self, client, userdata) -> None:
        self.status.connected, self.status.connecting_since = False, None
        self.status.error = failure_text(self.settings, getattr(client, "connect_error", None), NAMES)
        self.failures(self.status.error)
        self._tell_pages()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        answered, self._answered = self._answered, False
        if not answered and not self._stopping:  # taken and closed with no answer: a TLS port, no --tls-ca?
            self.status.connecting_since = None
            self.status.error = closed_text(self.settings, NAMES)
            self.failures(self.status.error)
        elif self.status.connected and not self._stopping:  # after a refused log-in the refusal stays the reason
            self.status.error = f"lost the connection ({reason_code}); retrying"
            log.warning("mqtt: broker %s: %s", self.settings.broker, self.status.error)  # the page gives plain words
        self.status.connected = False
        if not self._stopping:  # the pages' streams end at the stop: "lost its link" would be their last word
            self._tell_pages()

    def _tell_pages(self) -> None:
        """The open pages show the link as /healthz does: desks are news only while it holds."""
        self.classroom.set_link(self.status.connected, self.status.error, self.status.reason)

    def _on_message(self, client, userdata, message) -> None:
        parts = message.topic.split("/")
        if len(parts) != self._depth + 2:
            return
        device_id, kind = parts[-2], parts[-1]
        try:
            if kind == "state" and not message.payload:  # MQTT's way to delete a retained message
                self.classroom.remove(device_id)
            elif kind == "state":
                self.classroom.apply_state(device_id, message.payload, retained=bool(message.retain))
            elif kind == "minute" and not message.retain:  # a desk never retains one: a stored copy is not news
                self.classroom.apply_minute(device_id, message.payload)
            elif kind == "availability":
                self.classroom.apply_availability(device_id, message.payload, retained=bool(message.retain))
            elif kind == "heartbeat" and not message.retain:  # never retained by a desk: a stored one is no sign of life
                self.classroom.apply_heartbeat(device_id, message.payload)
        except Exception:  # noqa: BLE001 - an exception here would end paho's network thread: no more updates at all
            log.exception("mqtt: dropped a message on %s that could not be applied", message.topic[:200])

    def start(self) -> "Subscriber":
        self.status.connecting_since = time.monotonic()
        self._tell_pages()  # "connecting", and what to check if it lasts
        self.client.connect_async(self.settings.host, self.settings.port, self.settings.keepalive_s)
        self.client.loop_start()
        return self

    def stop(self, timeout: float = NETWORK_STOP_S) -> None:
        """Disconnect, waiting ``timeout`` at most (``stop_network``): a connection that hangs
        (a TLS handshake with a frozen broker) held the service's stop until systemd killed it."""
        self._stopping = True  # every clean stop logged "lost the connection (Normal disconnection); retrying"
        self.client.disconnect()
        if done := stop_network(self.client, timeout):
            log.warning("mqtt: the connection to %s did not stop within %.1f s (a hung network or broker?): %s",
                        self.settings.broker, timeout, done)
