"""``engage-edge classroom``: the instructor's view of every desk (see edge_app/fleet/classroom)."""
from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from edge_app.cli import EXIT_OK, EXIT_USAGE, StopRequest, cannot_serve, first_start_message, say
from edge_app.config import MqttSection

DESK_MQTT = MqttSection()  # a desk's defaults: the page listens where the desks send by default

DEFAULT_DATA = "~/.local/share/engage-classroom"


def settings_from_args(args):
    """The broker settings from the flags, checked by the same rules as the device's [mqtt]."""
    from edge_app import config as config_mod
    from edge_app.fleet.settings import MqttSettings

    changes = {"mqtt.host": args.mqtt_host, "mqtt.port": args.mqtt_port, "mqtt.tls_ca": str(args.tls_ca or ""),
               "mqtt.tls_cert": str(args.tls_cert or ""), "mqtt.tls_key": str(args.tls_key or ""),
               "mqtt.username": args.mqtt_user or "", "mqtt.password_file": str(args.mqtt_password_file or ""),
               "mqtt.password": "" if args.mqtt_password_file else os.environ.get("ENGAGE_MQTT_PASSWORD", ""),
               "mqtt.topic_prefix": args.topic_prefix, "mqtt.keepalive_s": args.keepalive,
               "mqtt.device_id": "classroom"}
    if not args.mqtt_host:
        raise config_mod.ConfigError("--mqtt-host is required: the broker the desks publish to")
    if bool(args.https_cert) != bool(args.https_key):
        raise config_mod.ConfigError("--https-cert and --https-key go together: give the certificate and its key, "
                                     "or neither (plain HTTP)")
    try:
        cfg = config_mod.with_changes(config_mod.defaults(), changes)
        return MqttSettings.from_config(cfg)
    except config_mod.ConfigError as exc:  # the rules are the device's [mqtt]: said in this command's flags
        raise config_mod.ConfigError(in_flags(str(exc))) from None


# the device's [mqtt] keys as this command's flags (the password from the environment)
FLAGS = {"host": "--mqtt-host", "port": "--mqtt-port", "tls_ca": "--tls-ca", "tls_cert": "--tls-cert",
         "tls_key": "--tls-key", "username": "--mqtt-user", "password_file": "--mqtt-password-file",
         "password": "ENGAGE_MQTT_PASSWORD", "topic_prefix": "--topic-prefix", "keepalive_s": "--keepalive"}


def in_flags(message: str) -> str:
    """A message about ``mqtt.<key>`` with each key named as the flag that sets it."""
    named = re.sub(r"\bmqtt\.(\w+)", lambda m: FLAGS.get(m.group(1), m.group(0)), message)
    return named.replace(" (empty: off)", "")  # a device's MQTT is off without a host; this command needs one


def _host_names(text: str) -> str:
    """--allowed-hosts: refused at once when it is not names (a URL, or "name:8090", could never
    match a request's Host, and every request was refused with no word at start-up)."""
    from edge_app.config import HOST_NAMES

    if not HOST_NAMES.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not host names: give names separated by commas, without "
                                         '"https://", a "/" or a ":port", e.g. classroom.school.lan,classroom')
    return text


def _networks(text: str) -> str:
    """--trusted-proxies: refused at once when an entry is no address or network."""
    from edge_app.config import ip_networks

    try:
        ip_networks(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _pages(text: str) -> int:
    """--max-pages: a whole number from 1 to service.MOST_PAGES."""
    from edge_app.fleet.classroom.service import MOST_PAGES

    try:
        n = int(text)
    except ValueError:
        n = 0
    if not 1 <= n <= MOST_PAGES:
        raise argparse.ArgumentTypeError(f"{text!r}: a whole number from 1 to {MOST_PAGES} (past that, run one "
                                         "classroom service per school or building)")
    return n


def _page_port(text: str) -> int:
    """--port: 0 (any free port) to 65535, refused before anything is made ('--port 65536'
    created the data directory and the first admin, then ended in an OverflowError)."""
    try:
        n = int(text)
    except ValueError:
        n = -1
    if not 0 <= n <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port: a whole number from 1 to 65535 (0: any free port)")
    return n


def cmd_classroom(args) -> int:
    from edge_app.config import ConfigError
    from edge_app.fleet.classroom.service import ClassroomService
    from edge_app.store.accounts import FIRST_PASSWORD_FILE, AuthError
    from edge_app.store.database import StoreError, kept_in_memory

    settings = settings_from_args(args)
    try:
        service = ClassroomService(settings, Path(args.data_dir).expanduser(), args.host, args.port,
                                   tls_cert=str(args.https_cert or ""), tls_key=str(args.https_key or ""),
                                   max_pages=args.max_pages, allowed_hosts=args.allowed_hosts,
                                   trusted_proxies=args.trusted_proxies)
        stop = StopRequest()  # from here on Ctrl-C stops it cleanly, even mid-start
        service.start()
    except (StoreError, AuthError) as exc:  # AuthError: a first start's ENGAGE_ADMIN_PASSWORD
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ConfigError as exc:  # the broker's TLS files, checked as the client is made
        print(f"error: configuration: {in_flags(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(cannot_serve(args.host, args.port, exc), file=sys.stderr)
        kept = Path(args.data_dir).expanduser() / FIRST_PASSWORD_FILE
        if kept.exists():  # created now: it waits there for the first log-in
            print(f"the first-start 'admin' password is in {kept} (mode 0600)", file=sys.stderr)
        return EXIT_USAGE
    try:
        say(f"engage-edge classroom for {settings.topic_prefix}/+ on {settings.broker}; page at "
            + " or ".join(service.urls()))
        if warning := service.plain_http_warning():
            print(warning, file=sys.stderr, flush=True)
        if lost := kept_in_memory(Path(args.data_dir).expanduser(), "the classroom page", "--data-dir"):
            print(f"warning: {lost}", file=sys.stderr, flush=True)
        if service.generated_password:
            say(first_start_message(service.generated_password, service.accounts.first_password_path))
        stop.wait()
        say("stopping")
    finally:
        service.stop()
    return EXIT_OK


def add_command(sub) -> None:
    p = sub.add_parser("classroom", help="the instructor's page: every desk's state live, from an MQTT broker",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--mqtt-host", help="the broker the desks publish to (required)")
    p.add_argument("--mqtt-port", type=int, default=1883, help="8883 with TLS")
    p.add_argument("--tls-ca", type=Path, help="the broker's CA certificate (PEM): connect with TLS")
    p.add_argument("--tls-cert", type=Path, help="client certificate (PEM), if the broker asks for one")
    p.add_argument("--tls-key", type=Path, help="its key (PEM)")
    p.add_argument("--mqtt-user", help="broker user name (password: --mqtt-password-file or ENGAGE_MQTT_PASSWORD)")
    p.add_argument("--mqtt-password-file", type=Path, help="a file holding the broker password")
    p.add_argument("--topic-prefix", default=DESK_MQTT.topic_prefix, help="the desks' mqtt.topic_prefix")
    p.add_argument("--keepalive", type=int, default=DESK_MQTT.keepalive_s, help="MQTT keep-alive, seconds")
    p.add_argument("--host", default="127.0.0.1", help="address for the page (0.0.0.0: every interface)")
    p.add_argument("--port", type=_page_port, default=8090, help="port for the page (0: any free port)")
    p.add_argument("--https-cert", type=Path, help="serve the page over HTTPS with this certificate (PEM) ...")
    p.add_argument("--https-key", type=Path, help="... and this key")
    p.add_argument("--max-pages", type=_pages, default=16, metavar="N",
                   help="live classroom pages open at once, on every computer together (each holds a server "
                        "thread; past it a new page waits for a free place): one per instructor's screen")
    p.add_argument("--data-dir", default=DEFAULT_DATA, help="where the classroom's accounts live")
    p.add_argument("--allowed-hosts", default="", metavar="NAMES", type=_host_names,
                   help="DNS names the page is opened by besides this machine's own (comma-separated, e.g. "
                        "classroom.school.lan); other names are refused (no DNS rebinding), IP addresses always work")
    p.add_argument("--trusted-proxies", default="", metavar="ADDRESSES", type=_networks,
                   help="reverse proxies in front of the page whose X-Forwarded-For names the client (and "
                        "X-Forwarded-Proto how it connected: behind a TLS proxy the session cookie is then Secure and "
                        "HSTS is sent; from anyone else those headers are ignored, X-Forwarded-Host from everyone: the "
                        "proxy passes Host on), comma-separated (e.g. 127.0.0.1 for nginx on this machine): the log-in "
                        "throttle then counts each client, not the proxy. List the proxies only: any host listed, or "
                        "inside a network listed, can claim to be anyone")
    p.set_defaults(func=cmd_classroom)
