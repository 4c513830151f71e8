"""How this device (or the classroom service) reaches the MQTT broker.

The patterns below validate the ``[mqtt]`` section of the configuration schema;
``MqttSettings.from_config`` turns that validated section (plus the password file) into
one immutable object the publisher and the classroom share.
"""
from __future__ import annotations

import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # config imports this module: no runtime import back
    from edge_app.config import Config, MqttSection

HOST = re.compile(r"^$|^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})$|^\[?[0-9A-Fa-f:.]+\]?$")
TOPIC_ID = re.compile(r"^[A-Za-z0-9_.-]{0,64}$")  # empty: the user name, else the host name
PREFIX = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")

DESK = re.compile(r"^[^\x00-\x1f\x7f]{0,64}$")  # the config schema (edge_app/config.py) checks [mqtt] with these
# what the resolver takes as an address, not a name: anything with ':' or brackets (IPv6),
# or only numbers between the dots (IPv4, also in inet_aton's short, octal or 0x forms)
ADDRESS = re.compile(r"^.*[:\[\]].*$|^(0[xX][0-9A-Fa-f]*|[0-9]+)(\.(0[xX][0-9A-Fa-f]*|[0-9]+))*\.?$")


def host_key(host: str) -> str:
    """``host`` as the same broker's host is always spelled: a name in lower case without
    its one final dot ("Broker.School." -> "broker.school"; DNS names are case-blind and
    the final dot is the root), an address exactly as written. Nothing wider: "a.b.." is
    no name of a.b, and "10.0.0.1." is a name to look up, not the address 10.0.0.1."""
    if ADDRESS.match(host):
        return host
    return host.removesuffix(".").lower()


def check_together(section: MqttSection, error: type[Exception]) -> None:
    """Rules between keys of ``[mqtt]``; raises ``error`` with what to change."""
    if bool(section.tls_cert) != bool(section.tls_key):
        raise error("mqtt.tls_cert and mqtt.tls_key go together: set both PEM paths or neither")
    if section.tls_cert and not section.tls_ca:
        raise error("mqtt.tls_cert needs mqtt.tls_ca (the broker's CA): client certificates only work over TLS")
    if section.password and section.password_file:
        raise error("set mqtt.password or mqtt.password_file, not both")


PASSWORD_FILE = "mqtt-password"  # in the data directory, mode 0600: where Admin > Classroom broker keeps the password


def _page_written(cfg: Config) -> bool:
    """Whether ``mqtt.password_file`` is the file the admin page writes (not a technician's)."""
    from edge_app.config import data_dir

    return Path(cfg.mqtt.password_file).expanduser() == data_dir(cfg) / PASSWORD_FILE


def default_device_id(username: str = "") -> str:
    """The broker user name when it can be a topic level, else the host name made
    topic-safe ('desk-07.school.lan' -> 'desk-07').

    The user name first: the README's broker ACL (``pattern write engage/%u/state`` and its other topics) lets a
    device write only under its own user name, and the broker drops anything else
    without telling the device, so a desk whose topic name differs never shows up."""
    if username and TOPIC_ID.match(username):
        return username
    name = socket.gethostname().split(".")[0]
    name = re.sub(r"[^A-Za-z0-9_-]", "-", name)[:64]
    return name or "engage-edge"


@dataclass(frozen=True)
class MqttSettings:
    host: str
    port: int = 1883
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    username: str = ""
    password: str = ""
    device_id: str = ""
    desk: str = ""
    topic_prefix: str = "engage"
    keepalive_s: int = 30
    heartbeat_s: float = 30.0  # 0: no heartbeat (the config allows 5 s and up; tests use less)
    include_emotion: bool = False
    password_missing: str = ""  # why the password the admin page saved could not be read (it connects not at all)

    @property
    def enabled(self) -> bool:
        return bool(self.host)

    @property
    def broker(self) -> str:
        return f"{self.host}:{self.port}"

    def topic(self, kind: str, device_id: str | None = None) -> str:
        return f"{self.topic_prefix}/{device_id or self.device_id}/{kind}"

    @classmethod
    def from_config(cls, cfg: Config) -> "MqttSettings":
        m = cfg.mqtt
        password, missing = m.password, ""
        if m.password_file:
            try:
                password = Path(m.password_file).expanduser().read_text().strip()
            except OSError as exc:
                if not (isinstance(exc, FileNotFoundError) and _page_written(cfg)):
                    from edge_app.config import ConfigError

                    raise ConfigError(f"mqtt.password_file {m.password_file} cannot be read: {exc.strerror or exc}; "
                                      "check the path and that the service user may read it") from None
                # the Admin > Classroom broker page's own file: its setting lives in the database and
                # travels with a backup, the file does not (a restore onto a new card)
                missing = (f"the broker password saved on Admin > Classroom broker ({m.password_file}) is missing, as after "
                           "a backup is restored on another card: type it there again; not connecting until then")
        return cls(host=m.host, port=m.port, tls_ca=m.tls_ca, tls_cert=m.tls_cert, tls_key=m.tls_key,
                   username=m.username, password=password, device_id=m.device_id or default_device_id(m.username),
                   desk=m.desk, topic_prefix=m.topic_prefix, keepalive_s=m.keepalive_s, password_missing=missing,
                   heartbeat_s=m.heartbeat_s, include_emotion=m.include_emotion)
