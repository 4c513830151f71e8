"""Configuration: one typed schema, a user TOML on top, CLI-style overrides on top of that.

The schema below (one frozen dataclass per ``[section]``) is the single source of every
setting's type, default, allowed values and description. Validation and its messages,
``defaults()``, the admin settings page (labels and help) and the shipped
``default_config.toml`` (its comments) all come from it: regenerate that file with
``python -m edge_app.config --write-defaults`` after changing the schema (a test fails
while they differ). A user file only overrides keys; unknown keys and wrong values raise
``ConfigError`` naming the key, the value and what is allowed.

A loaded ``Config`` is immutable: a settings change makes a new one (``with_changes``)
and hands it over whole, so no reader ever sees half-old, half-new settings.
"""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import functools
import ipaddress
import json
import re
import sys
import textwrap
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple, get_type_hints

from edge_app.engagement import LEVEL_GROUPS
from edge_app.fleet.settings import DESK as MQTT_DESK
from edge_app.fleet.settings import HOST as MQTT_HOST
from edge_app.fleet.settings import PREFIX as MQTT_PREFIX
from edge_app.fleet.settings import TOPIC_ID as MQTT_TOPIC_ID
from edge_app.fleet.settings import check_together as check_mqtt

DEVICE_CONFIG = Path("/etc/engage-edge/config.toml")
# two different times: "22:00-22:00" read as an empty span, never quiet, and said nothing
QUIET_HOURS = re.compile(r"^$|^(?!(\d\d:\d\d)-\1$)([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d$")
MAX_LEVEL_CHARS = 60
# web.allowed_hosts: names as a browser's Host header carries them, without its port; a URL or
# "name:8443" listed there could never match, and every request under it got the refusal
_HOST_NAME = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62})(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62}))*\.?"
HOST_NAMES = re.compile(rf"\s*(?:{_HOST_NAME})?\s*(?:,\s*(?:{_HOST_NAME})?\s*)*")


class ConfigError(ValueError):
    """A configuration problem a person can fix; the message says how. ``problems``: each of
    several found at once (the whole configuration's checks), for a message naming the file."""

    def __init__(self, message: str, problems: list[str] | None = None):
        super().__init__(message)
        self.problems = problems or [message]


# ------------------------------------------------------------ declarative constraints
@dataclass(frozen=True)
class Range:
    """A number from ``lo`` to ``hi`` (``above``: strictly above ``lo``); ``also`` admits
    one extra value with its meaning, e.g. port 0 = any free port. ``noun`` names the
    unit in the message ("seconds", "a port"); by default the type's name."""

    lo: float
    hi: float
    noun: str = ""
    above: bool = False
    also: tuple[float, str] | None = None

    def check(self, value: Any) -> bool:
        if self.also is not None and value == self.also[0]:
            return True
        return (self.lo < value if self.above else self.lo <= value) and value <= self.hi

    def allowed(self, kind: type) -> str:
        noun = self.noun or _type_name(kind)
        text = f"{noun} above {self.lo}, at most {self.hi}" if self.above else f"{noun} from {self.lo} to {self.hi}"
        return text + (f" ({self.also[0]}: {self.also[1]})" if self.also else "")


@dataclass(frozen=True)
class OneOf:
    """One of a few strings (the settings page shows them as a choice)."""

    choices: tuple[str, ...]

    def check(self, value: Any) -> bool:
        return value in self.choices

    def allowed(self, kind: type) -> str:
        quoted = [f'"{c}"' for c in self.choices]
        return ", ".join(quoted[:-1]) + f" or {quoted[-1]}"


@dataclass(frozen=True)
class Matches:
    """A string matching ``pattern``; ``text`` says what that means to a person."""

    pattern: re.Pattern
    text: str

    def check(self, value: Any) -> bool:
        return bool(self.pattern.fullmatch(value))  # whole: "$" alone would let a final newline through

    def allowed(self, kind: type) -> str:
        return self.text


def ip_networks(listed: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """``"127.0.0.1, 10.0.0.0/24"`` as networks; ValueError names an entry that is none."""
    networks = []
    for entry in (e.strip() for e in listed.split(",")):
        if entry:
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or network") from None
    return tuple(networks)


@dataclass(frozen=True)
class Networks:
    """Comma-separated IP addresses or networks (``10.0.0.5, 192.168.1.0/24``), or none."""

    def check(self, value: Any) -> bool:
        try:
            ip_networks(str(value))
        except ValueError:
            return False
        return True

    def allowed(self, kind: type) -> str:
        return "IP addresses or networks separated by commas, e.g. \"127.0.0.1, 10.0.0.7\" (empty: none)"


@dataclass(frozen=True)
class ListenAddress:
    """An address of this machine to serve on: an IP address or a host name, nothing else.
    "not an address", "0.0.0.0:8443" or "http://desk-07" passed the check, then the start
    failed at the bind ("Choose another --port"), after the database and the first admin;
    an empty one ended the start in cheroot's traceback."""

    def check(self, value: Any) -> bool:
        try:
            ipaddress.ip_address(str(value))
        except ValueError:
            return bool(re.fullmatch(_HOST_NAME, str(value)))
        return True

    def allowed(self, kind: type) -> str:
        return ('an IP address of this machine or its host name, without "http://" or a ":port" (that is '
                'web.port), e.g. "0.0.0.0" or "127.0.0.1"')


Rule = Range | OneOf | Matches | Networks | ListenAddress


def setting(default: Any, doc: str, rule: Rule | None = None, label: str = "") -> Any:
    """A schema field: its default, its description (TOML comment and settings-page help),
    its constraint, and a ``label`` when admins may change it on the settings page."""
    return field(default=default, metadata={"doc": doc, "rule": rule, "label": label})


def _type_name(kind: Any) -> str:
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(kind, getattr(kind, "__name__", str(kind)))


# ------------------------------------------------------------ sections
class Section:
    """Base of the frozen section dataclasses; the class docstring is the section's
    comment in ``default_config.toml``. Read values as attributes: ``cfg.web.port``."""


@cache
def _field_names(cls: Any) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls) if not f.metadata.get("internal"))


@cache
def _types(cls: Any) -> dict[str, Any]:
    return get_type_hints(cls)


@dataclass(frozen=True)
class CameraSettings(Section):
    """Where frames come from and how a camera fault is retried."""

    source: str = setting("demo", '"demo" (built-in animated faces, no camera needed), "camera" (first camera found: '
                          'picamera2 on a Pi, else the lowest-numbered /dev/video*), "picamera2", a device index ("0", "1"), a video '
                          'file path, an rtsp/http URL, or a GStreamer pipeline ending in "appsink".')
    width: int = setting(640, "Frame width asked of the camera, in pixels.", Range(16, 4096))
    height: int = setting(480, "Frame height asked of the camera, in pixels.", Range(16, 4096))
    fps: int = setting(15, "Frame rate asked of the camera (and the demo source).", Range(1, 120))
    loop: bool = setting(True, "Restart a video file at its end.")
    read_timeout_s: float = setting(5.0, "A read that takes longer counts as a camera fault.", Range(0.1, 120, "seconds"))
    retry_initial_s: float = setting(1.0, "Back-off after a camera fault: starts here, doubles up to retry_max_s.",
                                     Range(0.01, 60, "seconds"))
    retry_max_s: float = setting(30.0, "Longest back-off between two attempts to reopen the camera.",
                                 Range(0.01, 3600, "seconds"))


@dataclass(frozen=True)
class DetectorSettings(Section):
    """Face detection: the learned BlazeFace detector (default) or the seed paper's Haar cascades."""

    backend: str = setting("blazeface", '"blazeface" (learned detector, shipped model, with a face check) or "haar" '
                                        "(the seed paper's cascades).", OneOf(("blazeface", "haar")))
    min_score: float = setting(0.5, "BlazeFace: detections scoring below this are not faces (each must also pass the "
                                    "face check).", Range(0.05, 0.99, "a score"))
    manifest: str = setting("", "BlazeFace: the detector's manifest (.json beside the .tflite). Empty: the shipped one.")
    detect_width: int = setting(320, "Haar searches a grayscale copy this wide (speed); the tracker follows faces on it.",
                                Range(80, 1920))
    scale_factor: float = setting(1.15, "Haar cascade pyramid step: smaller finds more sizes, slower.", Range(1.01, 2.0))
    min_neighbors: int = setting(5, "Overlapping detections a face needs: higher means fewer false faces.", Range(1, 20))
    min_face_px: int = setting(40, "Smallest face, in full-frame pixels.", Range(12, 1000))
    profile: bool = setting(True, 'Also report turned-away faces ("Distracted"); BlazeFace tells them by the head\'s yaw, '
                                  "from its face check's landmarks.")
    detect_every: int = setting(3, "Run the detector every Nth frame, track the boxes in between.", Range(1, 30))
    full_detect_every: int = setting(30, "Between these, detection only searches around the tracked face.", Range(1, 600))


@dataclass(frozen=True)
class ModelSettings(Section):
    """The emotion model."""

    manifest: str = setting("", "Manifest of the emotion model (.json beside the .tflite). Empty: the flashed or "
                                "shipped model. Not under /home: the service cannot see it.")
    threads: int = setting(1, "CPU threads for one inference.", Range(1, 8))


def _starts_with_a_group(level: str) -> bool:
    """``level`` begins with an LED group as a word: "Engaged - curious", not "Engagedly bored"."""
    return any(level.startswith(g) and (len(level) == len(g) or not level[len(g)].isalnum()) for g in LEVEL_GROUPS)


@dataclass(frozen=True)
class Levels:
    """Each emotion the model knows maps to a level that starts with an LED group."""

    def check_mapping(self, mapping: Mapping[str, Any]) -> None:
        known = DEFAULT_MAPPING
        for emotion, level in mapping.items():
            if emotion not in known:
                raise ConfigError(f"engagement.mapping.{emotion} is not an emotion the model knows; use one of {sorted(known)}")
            if not isinstance(level, str) or not _starts_with_a_group(level):
                raise ConfigError(
                    f"engagement.mapping.{emotion} = {level!r} is not allowed: a level must start with "
                    + ", ".join(f'"{g}"' for g in LEVEL_GROUPS) + ' as a word ("Engaged - curious")'
                )
            if len(level) > MAX_LEVEL_CHARS:  # it is shown on every page, logged at every change, sent to the classroom
                raise ConfigError(f"engagement.mapping.{emotion} = {level[:20]!r}... is not allowed: a level has at "
                                  f"most {MAX_LEVEL_CHARS} characters")


DEFAULT_MAPPING: Mapping[str, str] = MappingProxyType({
    "neutral": "Engaged - paying attention",
    "happiness": "Engaged - likes the topic",
    "surprise": "Engaged - surprised",
    "fear": "Partially engaged - confused",
    "sadness": "Not engaged",
    "anger": "Not engaged",
    "disgust": "Not engaged",
    "contempt": "Not engaged",
})


@dataclass(frozen=True)
class EngagementSettings(Section):
    """From smoothed emotions to the shown engagement state."""

    absent_after_s: float = setting(5.0, 'No face for this long counts as "Absent" (shown once it has also held for '
                                    'the minimum hold: 6.5 s by default).', Range(0, 3600, "seconds", above=True),
                                    label="Absent after (seconds)")
    distracted_after_s: float = setting(2.0, 'Only a turned-away face for this long counts as "Distracted" '
                                        '(shown once it has also held for the minimum hold).',
                                        Range(0, 3600, "seconds", above=True))
    ema_half_life_s: float = setting(1.0, "Smoothing of the emotion probabilities over time: larger is steadier, slower.",
                                     Range(0, 60, "seconds"), label="Smoothing half-life (seconds)")
    min_hold_s: float = setting(1.5, "A new state must hold this long before the LED changes.", Range(0, 60, "seconds"),
                                label="Minimum hold (seconds)")
    min_confidence: float = setting(0.5, 'A face whose most likely emotion is below this leaves an engagement level as it is '
                                         'for absent_after_s (then, and after "Absent" or "Distracted", it leads to '
                                         '"Present"); uploads call it '
                                         '"Uncertain" (FER+ validation: 8.7% of faces fall below 0.5, and 53% of those '
                                         "are read right against 89.5% of the rest).", Range(0.0, 0.99, "a probability"))
    mapping: Mapping[str, str] = field(default_factory=lambda: DEFAULT_MAPPING, metadata={
        "doc": 'Emotion -> engagement level, after the seed paper. A level starts with "Engaged", "Partially engaged" '
               'or "Not engaged" (that picks the LED colour); text after " - " describes it.',
        "rule": Levels(), "label": ""})


@dataclass(frozen=True)
class IndicatorSettings(Section):
    """The LED, the buzzer and the privacy button (wiring: firmware/README.md). Pins are BCM
    numbers, also on a Jetson, where there is no PWM: amber is red and green fully on."""

    backend: str = setting("console", '"console" (prints; states only to a terminal, never into a journal), '
                                      '"gpio" (gpiozero pins), "jetson" (Jetson.GPIO) or "none".',
                           OneOf(("console", "gpio", "jetson", "none")))
    rgb_led: bool = setting(True, "One common-cathode RGB LED; false: three separate LEDs. Both are driven alike (the "
                                  "same three signals); which one is wired is recorded here for the technician.")
    led_red_pin: int = setting(17, "BCM pin of the red LED.", Range(0, 27, "a BCM GPIO number"))
    led_green_pin: int = setting(27, "BCM pin of the green LED.", Range(0, 27, "a BCM GPIO number"))
    led_blue_pin: int = setting(22, "BCM pin of the blue LED.", Range(0, 27, "a BCM GPIO number"))
    buzzer_pin: int = setting(23, "BCM pin of the buzzer.", Range(0, 27, "a BCM GPIO number"))
    pause_button_pin: int = setting(-1, "BCM pin of the student's privacy button (to ground, pull-up): a press "
                                        "pauses the camera, the next resumes it; -1: no button (gpio backend only).",
                                    Range(0, 27, "a BCM GPIO number", also=(-1, "no button")))
    buzzer_active: bool = setting(True, "Active buzzer (on/off); false: passive, driven as a tone (Pi only).")
    buzzer: bool = setting(True, "Off mutes the buzzer; the LED still shows the state and alerts are still "
                                 "recorded (with a frame if privacy.snapshot_on_alert is on).", label="Buzzer on")
    buzzer_after_s: float = setting(30.0, "Sustained Not engaged or Distracted (in any mix) for this long sounds the "
                                          "buzzer and logs an alert, once per stretch and at most once every "
                                          "buzzer_cooldown_s (2 minutes by default): a stretch that reaches it "
                                          "sooner alerts when that time is up.", Range(0, 3600, "seconds"), label="Alert after (seconds)")
    buzzer_cooldown_s: float = setting(120.0, "At least this long between two alerts.", Range(0, 86400, "seconds"))
    buzzer_beep_s: float = setting(0.3, "Length of each of the two beeps of an alert.", Range(0.01, 10, "seconds"))
    quiet_hours: str = setting("", 'No buzzer in these hours (alerts are still recorded, with a frame if '
                                   'privacy.snapshot_on_alert is on), e.g. "22:00-07:00", on '
                                   "the device's clock in its time zone (sudo timedatectl set-timezone "
                                   "Europe/Berlin); empty: none.",
                               Matches(QUIET_HOURS, 'empty or "HH:MM-HH:MM" from one time to another, e.g. "22:00-07:00" (all day: '
                                                       'turn the buzzer off)'), label="Quiet hours")
    amber_green: float = setting(0.4, "Amber is full red plus this much green (PWM, RGB LED).", Range(0.0, 1.0, "a level"))
    brightness: float = setting(1.0, "Scales every colour (PWM).", Range(0.0, 1.0, "a level", above=True))
    violet_red: float = setting(0.5, '"Distracted" is violet: full blue plus this much red (PWM).',
                                Range(0.0, 1.0, "a level"))
    teal_green: float = setting(0.6, '"Present" (a face whose expression cannot be read) is teal: full blue plus this '
                                     'much green (PWM).', Range(0.0, 1.0, "a level"))
    grey_level: float = setting(0.3, '"Absent" is grey: red, green and blue at this level (PWM), blinking slowly.',
                                Range(0.0, 1.0, "a level", above=True))
    paused_pulse_s: float = setting(2.0, '"Paused" (the privacy switch) fades blue in and out over this many seconds.',
                                    Range(0.1, 20, "seconds"))
    absent_blink_on_s: float = setting(1.0, '"Absent" is a slow grey blink: seconds on ...', Range(0.02, 10, "seconds"))
    absent_blink_off_s: float = setting(1.0, "... and seconds off.", Range(0.02, 10, "seconds"))
    fault_blink_on_s: float = setting(0.1, "A fault (no camera, model error) is a fast red blink: seconds on ...",
                                      Range(0.02, 10, "seconds"))
    fault_blink_off_s: float = setting(0.1, "... and seconds off.", Range(0.02, 10, "seconds"))


@dataclass(frozen=True)
class StoreSettings(Section):
    """Where the logs, accounts and kept images live, and for how long."""

    data_dir: str = setting("~/.local/share/engage-edge", "Directory of the SQLite database and kept images. The "
                            "service (systemd/engage-edge.service) may write only in /var/lib/engage-edge and cannot "
                            "see /home: another folder needs ReadWritePaths=DIR in a drop-in (sudo systemctl edit "
                            "engage-edge; firmware/README.md).")
    retention_days: int = setting(30, "Rows and kept images older than this are deleted (until a time server has set "
                                  "the clock, older by the days this device has been switched on).", Range(1, 3650, "days"),
                                  label="Keep data for (days)")
    min_free_mb: int = setting(50, "Below this much free disk, logging pauses (health turns degraded).",
                               Range(0, 100000, "megabytes"))
    reserve_mb: int = setting(16, "Disk held in the data directory's file 'reserve' (only with three times as "
                              "much free, and min_free_mb still free with it taken), given up at the first write "
                              "that finds the disk full, so that an admin can still log in and lower "
                              "retention_days; kept again once there is room. 0: none.",
                              Range(0, 1024, "megabytes"))
    trust_device_clock: bool = setting(False, "Delete records past retention_days, and keep quiet hours, by this "
                                       "device's own clock even before a time server has set it: only for a device "
                                       "whose clock keeps time by itself (a Jetson, a Pi 5 with its clock battery) "
                                       "on a network with no time server. Off: until a time server has set the clock, "
                                       "retention counts the days the device is switched on and quiet hours wait (a "
                                       "Pi without a battery starts on the time it last saved, and a clock days ahead "
                                       "would delete today's records).")


@dataclass(frozen=True)
class WebSettings(Section):
    """The web UI the device serves."""

    host: str = setting("127.0.0.1", 'Address to listen on; "0.0.0.0": every network interface.', ListenAddress())
    port: int = setting(8080, "TCP port to listen on.", Range(1, 65535, "a port", also=(0, "any free port")))
    threads: int = setting(96, "HTTP worker threads: each live-stream viewer, upload and slow client holds one "
                               "(96 keep log-in quick while 64 slow clients hold connections).", Range(4, 256))
    max_viewers: int = setting(4, "Concurrent live streams; the next one gets 503. An account that is not an admin "
                                   "holds one at a time, and those accounts leave the last one for an admin.", Range(0, 64))
    analysis_workers: int = setting(1, "Uploads analysed at once; more wait their turn (the live loop keeps its CPU).",
                                    Range(1, 16))
    stream_fps: int = setting(10, "Frame rate of the live stream.", Range(1, 60))
    max_upload_mb: int = setting(10, "Largest upload accepted.", Range(0, 200, "megabytes", above=True))
    max_upload_megapixels: int = setting(40, "Largest image accepted, as its header declares it. A JPEG is decoded "
                                             "scaled down to about 3 MP for analysis; PNG and WebP, decoded whole, are "
                                             "limited to 8 MP as well.",
                                         Range(0, 200, "megapixels", above=True))
    session_idle_minutes: int = setting(30, "A log-in left unused this long ends.", Range(1, 1440, "minutes"))
    session_max_hours: int = setting(12, "A log-in ends this long after it began, used or not.", Range(1, 720, "hours"))
    confirm_password_minutes: int = setting(15, "An admin's change (users, settings, model, classroom link) asks for "
                                                "their password again when they last typed it longer ago than this (a "
                                                "browser left logged in); 0: never ask.", Range(0, 1440, "minutes"))
    tls_cert: str = setting("", "PEM certificate path; set with tls_key, the UI is served over HTTPS (cookies become "
                                "Secure).")
    tls_key: str = setting("", "PEM private key path, goes with tls_cert.")
    metrics_public: bool = setting(False, "True: /metrics answers anyone on the network (it shows the live state); "
                                          "false: loopback and admins only.")
    trusted_proxies: str = setting("", "Reverse proxies in front of the web UI whose X-Forwarded-For names the client "
                                       "(and X-Forwarded-Proto how it connected; from anyone else those headers are "
                                       "ignored, X-Forwarded-Host from everyone: the proxy passes Host on), "
                                       "comma-separated (e.g. 127.0.0.1 for nginx on this machine). List the proxies "
                                       "only: any host listed, or inside a network listed, can claim to be anyone. "
                                       "Empty: the socket's peer is the client, as without a proxy.",
                                   Networks())
    allowed_hosts: str = setting("", "Extra host names the web UI answers to, comma-separated; IP addresses, "
                                     "localhost and this machine's own names always work (no DNS rebinding).",
                                 Matches(HOST_NAMES, 'host names separated by commas, without "https://", a "/" or '
                                         'a ":port", e.g. "desk-07.school.lan, desk-07" (empty: none)'))


@dataclass(frozen=True)
class LoginSettings(Section):
    """Failed log-ins, counted per user name from one address and per client address: a
    slow-down, then a lock; a ceiling per name from all addresses together that slows. A
    browser that has logged in as a name before is judged by its own failures only."""

    window_minutes: int = setting(15, "Failures older than this are forgotten.", Range(1, 1440, "minutes"))
    slow_after_user: int = setting(3, "After this many failures for a name from one address, each attempt first waits "
                                      "first_delay_s, doubling with each further failure.", Range(1, 1000))
    slow_after_address: int = setting(10, "The same for a client address (more slack: a classroom may share one).",
                                      Range(1, 1000))
    first_delay_s: float = setting(1.0, "The first wait once slowed down.", Range(0.1, 60, "seconds"))
    max_delay_s: float = setting(30.0, "The longest wait.", Range(0.1, 3600, "seconds"))
    lock_after_user: int = setting(8, "This many failures lock the name for lock_minutes.", Range(1, 1000))
    lock_after_address: int = setting(25, "This many failures lock the address for lock_minutes.", Range(1, 10000))
    lock_minutes: int = setting(15, "How long a lock lasts.", Range(1, 1440, "minutes"))
    lock_after_user_global: int = setting(100, "Failures for one name from all addresses together after which "
                                               "an address that has failed for it, in a browser that has not "
                                               "logged in as it before, waits from the newest failure by anyone "
                                               "(first_delay_s, doubling up to max_delay_s). An address with no "
                                               "failure of its own for the name is checked anyway (its owner on a "
                                               "new laptop), once: a wrong password makes it wait too. Not a lock, "
                                               "so guessing from many addresses cannot lock its owner out.",
                                          Range(1, 100000))


@dataclass(frozen=True)
class PrivacySettings(Section):
    """What is kept of faces (this device films minors)."""

    keep_uploads: str = setting("thumbnail", "thumbnail: a small copy; none: only the results; full: the photo as analysed (at most 3 megapixels).",
                                OneOf(("thumbnail", "none", "full")), label="Uploaded images kept")
    snapshot_on_alert: bool = setting(False, "Store one live frame when an alert fires, also with the buzzer muted "
                                             "or in quiet hours (off: live frames are never stored).",
                                      label="Snapshot on alert")
    max_pause_minutes: float = setting(0.0, "A student's pause (privacy switch) ends by itself after this many minutes; "
                                            "0: only when resumed.", Range(0, 1440, "minutes"))
    live_video: str = setting("admins", "Who may watch the live camera picture (/live): admins, or everyone logged "
                                        "in. A desk is often shared: with everyone, any student's account shows "
                                        "whoever sits there now. The state's level and its chart are shown to all; the "
                                        "level's words that name the expression only with the picture.",
                              OneOf(("admins", "everyone")), label="Live picture shown to")


@dataclass(frozen=True)
class MqttSection(Section):
    """The classroom: publish this desk's engagement level to the school's MQTT broker
    (README "Classroom"). Off while host is empty. Never an image, a probability or a name."""

    host: str = setting("", "Broker host name or address; empty: MQTT is off.",
                        Matches(MQTT_HOST, "a host name or IP address such as broker.school.lan (empty: off)"))
    port: int = setting(1883, "Broker port: 1883, or 8883 with TLS.", Range(1, 65535, "a port"))
    tls_ca: str = setting("", "CA certificate (PEM) of the broker: set it to use TLS.")
    tls_cert: str = setting("", "Optional client certificate (PEM), for brokers that ask for one ...")
    tls_key: str = setting("", "... and its key (PEM).")
    username: str = setting("", "This device's broker account.")
    password: str = setting("", "Its password (or password_file, better: readable by the service user only).")
    password_file: str = setting("", "A file holding the broker password (not under /home: the service cannot "
                                     "see it).")
    device_id: str = setting("", "Topic name of this device; empty: its broker user name (username), or the "
                             "host name without one. Keep it equal to the user name under the README's broker ACL.",
                             Matches(MQTT_TOPIC_ID, "letters, digits, '.', '_' or '-', at most 64 (empty: the user "
                                     "name, else the host name)"))
    desk: str = setting("", 'A label for the instructor, e.g. "Row 2, seat 4" (never a student\'s name).',
                        Matches(MQTT_DESK, "a printable label of at most 64 characters"))
    topic_prefix: str = setting("engage", 'One prefix per school or classroom, e.g. "school-a/room-12".',
                                Matches(MQTT_PREFIX, 'topic levels of letters, digits, ".", "_", "-" joined by "/", '
                                        'e.g. "engage" or "school-a/room-12" (no "+" or "#")'))
    keepalive_s: int = setting(30, "The broker marks the device offline after 1.5x this with no word from it.",
                               Range(5, 3600, "seconds"))
    heartbeat_s: int = setting(30, "Repeat this desk's current state this often (on <prefix>/<id>/heartbeat, not "
                                   "stored), so the classroom sees that a paused or steady desk is still there, "
                                   "and shows one silent for 2.5x this (+1 s) as offline.",
                               Range(5, 3600, "seconds", also=(0, "off: the classroom then never times the desk out")))
    include_emotion: bool = setting(False, "True: the state message also carries the emotion label and the "
                                           "engagement text (its label, which names the emotion in the default "
                                           "mapping); false: label is the level alone. Never probabilities.")


@dataclass(frozen=True)
class Config(Section):
    """The whole configuration, immutable; ``source`` says which file it came from."""

    camera: CameraSettings = field(default_factory=CameraSettings)
    detector: DetectorSettings = field(default_factory=DetectorSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    engagement: EngagementSettings = field(default_factory=EngagementSettings)
    indicators: IndicatorSettings = field(default_factory=IndicatorSettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    web: WebSettings = field(default_factory=WebSettings)
    login: LoginSettings = field(default_factory=LoginSettings)
    privacy: PrivacySettings = field(default_factory=PrivacySettings)
    mqtt: MqttSection = field(default_factory=MqttSection)
    source: str = field(default="defaults", compare=False, metadata={"internal": True})

    def __post_init__(self) -> None:
        problems: list[str] = []

        def check(test: Callable[[], None]) -> None:  # every problem, not the first: all said at once
            try:
                test()
            except ConfigError as exc:
                problems.extend(exc.problems)

        for name in _field_names(Config):
            section = getattr(self, name)
            kinds = _types(section.__class__)
            for f in dataclasses.fields(section):
                check(functools.partial(_check_value, f"{name}.{f.name}", getattr(section, f.name), f, kinds[f.name]))
        if self.camera.retry_max_s < self.camera.retry_initial_s:
            problems.append(f"camera.retry_max_s = {self.camera.retry_max_s!r} is not allowed: it must be at least "
                            f"camera.retry_initial_s ({self.camera.retry_initial_s!r})")
        if self.login.max_delay_s < self.login.first_delay_s:
            problems.append(f"login.max_delay_s = {self.login.max_delay_s!r} is not allowed: it must be at least "
                            f"login.first_delay_s ({self.login.first_delay_s!r})")
        if bool(self.web.tls_cert) != bool(self.web.tls_key):
            problems.append("web.tls_cert and web.tls_key go together: set both PEM paths or neither")
        check(functools.partial(_check_pins, self.indicators))
        check(functools.partial(check_mqtt, self.mqtt, ConfigError))
        if problems:
            raise ConfigError(_in_file(None, problems), problems)

    def to_dict(self) -> dict:
        """Plain nested dicts (what a TOML file holds), without ``source``."""
        tables = {}
        for name in _field_names(Config):
            section = getattr(self, name)
            values = {key: getattr(section, key) for key in _field_names(section.__class__)}
            tables[name] = {key: dict(value) if isinstance(value, Mapping) else value for key, value in values.items()}
        return tables


PIN_KEYS = ("led_red_pin", "led_green_pin", "led_blue_pin", "buzzer_pin", "pause_button_pin")


def _check_pins(indicators: IndicatorSettings) -> None:
    """Each of the LED, buzzer and privacy-button pins once: two features on one pin passed
    validation, then the service died at start-up with gpiozero's GPIOPinInUse traceback."""
    seen: dict[int, str] = {}
    for key in PIN_KEYS:
        pin = getattr(indicators, key)
        if pin < 0:  # pause_button_pin = -1: no button
            continue
        if pin in seen:
            raise ConfigError(f"indicators.{key} = {pin} is not allowed: indicators.{seen[pin]} is GPIO{pin} "
                              f"already; give each LED colour, the buzzer and the privacy button a pin of its own "
                              f"(the wiring: firmware/README.md)")
        seen[pin] = key


def _check_value(dotted: str, value: Any, f: dataclasses.Field, kind: Any) -> None:
    if kind in (bool, int, float, str):
        _coerce(dotted, value, kind)  # a section built by hand gets the same type check as a file
    rule = f.metadata.get("rule")
    if isinstance(rule, Levels):
        rule.check_mapping(value)
    elif rule is not None and not rule.check(value):
        raise ConfigError(f"{dotted} = {value!r} is not allowed: use {rule.allowed(kind)}")


def _coerce(key: str, value: Any, kind: Any) -> Any:
    """``value`` as the schema type ``kind`` (an integer is a fine float), or ``ConfigError``."""
    if kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif kind is str:
        if isinstance(value, str):
            return value
    raise ConfigError(f"{key} = {value!r} is not allowed: expected {_type_name(kind)}")


# ------------------------------------------------------------ loading
def _sections() -> dict[str, Any]:
    return {name: _types(Config)[name] for name in _field_names(Config)}


def defaults() -> Config:
    """Every default, straight from the schema."""
    return Config()


def _merge(base: dict, override: dict, problems: list[str] | None = None) -> None:
    """Apply a TOML-shaped ``override`` onto plain ``base`` dicts, checking names and types.
    ``problems``: collect what is wrong there (and go on) instead of raising at the first, so
    a technician mending a file sees every mistake in it at once, not one per start."""
    def bad(message: str) -> None:
        if problems is None:
            raise ConfigError(message)
        problems.append(message)

    sections = _sections()
    for name, table in override.items():
        if name not in sections:
            bad(f"{name} = {table!r} is not a known setting{_what_to_do(name, sections, None)} (allowed here: "
                + ", ".join(sorted(sections)) + ")")
            continue
        if not isinstance(table, dict):
            bad(f"{name} must be a [{name}] table, not {table!r}")
            continue
        kinds = _types(sections[name])
        fields = {f.name: f for f in dataclasses.fields(sections[name])}
        for key, value in table.items():
            full = f"{name}.{key}"
            if key not in kinds:
                bad(f"{full} = {value!r} is not a known setting{_what_to_do(key, kinds, name)} (allowed here: "
                    + ", ".join(sorted(kinds)) + ")")
            elif full == "engagement.mapping":
                if not isinstance(value, dict):
                    bad(f"{full} must be a table of emotion = \"level\"")
                    continue
                for emotion, level in value.items():  # each emotion's level, here: all at once
                    try:
                        fields[key].metadata["rule"].check_mapping({emotion: level})
                    except ConfigError as exc:
                        bad(str(exc))
                    else:
                        base[name][key] = {**base[name][key], emotion: level}
            else:
                try:
                    base[name][key] = _coerce(full, value, kinds[key])
                    _check_value(full, base[name][key], fields[key], kinds[key])  # its range, here: all at once
                except ConfigError as exc:
                    bad(str(exc))


def _what_to_do(name: str, known: Mapping[str, Any], section: str | None) -> str:
    """For a name no setting has: the one meant ("[camra]": [camera]), the section a key
    belongs in ("fps" under [web]: [camera]), or to delete it (a key of an older release).
    Only the list of what is allowed was said, and a key in the wrong section looked right."""
    homes = [other for other, cls in _sections().items() if other != section and name in _types(cls)]
    if homes:  # also a key above every [section] line: "port = 8443" at the top of the file
        return f": it belongs under [{homes[0]}], move it there" if len(homes) == 1 else \
            f": it is a setting of {' and '.join(f'[{h}]' for h in homes)}: move it under the one meant"
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.75)
    if close:
        return f": did you mean {f'[{close[0]}]' if section is None else close[0]}?"
    return ": correct it, or delete it if it is a setting of an older release"


def _in_file(path: Path | None, problems: list[str]) -> str:
    """What is wrong in the config file ``path``, all of it, naming the file (None: a config
    built without one, as from the settings pages)."""
    if len(problems) == 1:
        return problems[0] + (f" (in {path})" if path is not None else "")
    where = f" in {path}" if path is not None else ""
    return f"{len(problems)} settings{where} are not allowed:\n" + "\n".join(f"  - {p}" for p in problems)


def _not_utf8(path: Path, exc: UnicodeDecodeError) -> str:
    """Where a config file stops being UTF-8, and how to save it so. Said as Python's
    "'utf-8' codec can't decode byte 0xe9 in position 43", it named neither the line nor
    what to do: a level typed with an accent in an editor set to Latin-1, or a file saved
    as Notepad's "Unicode" (UTF-16)."""
    raw = exc.object
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return (f"config file {path} is saved as UTF-16 (Notepad's \"Unicode\"): save it as UTF-8 "
                "(iconv -f UTF-16 -t UTF-8 FILE > NEW, or the editor's Save as)")
    line = raw[:exc.start].count(b"\n") + 1
    column = len(raw[raw.rfind(b"\n", 0, exc.start) + 1:exc.start].decode("utf-8", "replace")) + 1  # characters
    return (f"config file {path} is not UTF-8 at line {line}, column {column} (byte 0x{raw[exc.start]:02x}: a "
            "character saved in another encoding, such as Latin-1): save the file as UTF-8 (iconv -f LATIN1 -t UTF-8 "
            "FILE > NEW, or the editor's Save as), or retype that character")


TOML_AT = re.compile(r"\(at line (\d+), column \d+\)")
SECRET_LINE = re.compile(r"^\s*(\w*password\w*)\s*=", re.IGNORECASE)


def _not_toml(path: Path, text: str, exc: tomllib.TOMLDecodeError) -> str:
    """TOML's own words and place, the line itself, and the usual ways a hand edit breaks
    TOML: "Invalid value (at line 2, column 10)" did not say that a word needs quotes."""
    said = f"config file {path} is not valid TOML: {exc}"
    at = TOML_AT.search(str(exc))
    lines = text.splitlines()
    if at and 0 < int(at.group(1)) <= len(lines):
        line = lines[int(at.group(1)) - 1].strip()
        secret = SECRET_LINE.match(line)  # a password is never written to the journal
        said += f"\n  line {at.group(1)}: " + (f"{secret.group(1)} = ..." if secret else line)[:120]
    return (said + '\n  Text goes in double quotes (source = "camera", host = "0.0.0.0", quiet_hours = "22:00-07:00"), '
            "true and false in lower case, each key and [section] once; every setting in its form: "
            "python -m edge_app.config")


def _nested(dotted: str, value: Any) -> dict:
    """``"engagement.mapping.fear", v`` -> ``{"engagement": {"mapping": {"fear": v}}}``."""
    for part in reversed(dotted.split(".")):
        value = {part: value}
    return value


def _build(tables: dict, source: str) -> Config:
    sections = _sections()
    built: dict[str, Any] = {}
    for name, cls in sections.items():
        values = dict(tables[name])
        if name == "engagement":
            values["mapping"] = MappingProxyType(dict(values["mapping"]))
        built[name] = cls(**values)
    return Config(**built, source=source)


def load(path: Path | None = None, overrides: dict | None = None) -> Config:
    """Defaults, then ``path`` (or the device file when it exists), then ``overrides``.

    ``overrides`` maps dotted keys (``"web.port"``) to values, as from CLI flags; a value
    of None means "flag not given"."""
    tables = defaults().to_dict()
    if path is None and _device_config_present():
        path = DEVICE_CONFIG
    if path is not None:
        path = Path(path)
        try:
            # utf-8-sig: a file saved by an editor that begins UTF-8 with a byte-order mark (Notepad)
            # reads as the same file; TOML itself has no BOM, and tomllib calls it an invalid statement
            text = path.read_text(encoding="utf-8-sig")
            if not text.strip():
                # a file zeroed by a power cut while it was saved read as "all defaults": another data
                # directory (an empty log, a new admin password), plain HTTP on 127.0.0.1, the wrong camera
                raise ConfigError(f"config file {path} is empty (a power cut while it was being saved?): put its "
                                  "settings back (from a copy or the device's provisioning, firmware/README.md), or, "
                                  "to run on the defaults, write one comment line in it (# defaults)")
            user = tomllib.loads(text)
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except PermissionError as exc:
            raise _unreadable(path, exc) from None
        except IsADirectoryError:
            raise ConfigError(f"config file {path} is a folder, not a file: name the file in it "
                              f"(--config {path / 'config.toml'})") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(_not_utf8(path, exc)) from None
        except OSError as exc:
            raise ConfigError(f"config file {path} cannot be read: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(_not_toml(path, text, exc)) from None
        problems: list[str] = []
        _merge(tables, user, problems)
        try:  # and what only the whole file says (two settings that contradict each other), named with it too
            _build(tables, str(path))
        except ConfigError as exc:
            # not about a value refused above: its default stands in for it here, a value the file never gave
            refused = {problem.split(" ", 1)[0] for problem in problems}
            problems += [problem for problem in exc.problems
                         if problem not in problems and not any(key in problem for key in refused)]
        if problems:
            raise ConfigError(_in_file(path, problems), problems)
    for dotted, value in (overrides or {}).items():
        if value is not None:
            _merge(tables, _nested(dotted, value))
    return _build(tables, str(path) if path else "defaults")


DEVICE_TREE_MODEL = Path("/proc/device-tree/model")  # "Raspberry Pi 5 Model B Rev 1.0", "NVIDIA Jetson Orin Nano ..."


def board_indicator() -> str:
    """The indicator backend this board's LED is on ("gpio" on a Raspberry Pi, "jetson" on a
    Jetson, else "console"): for the fault light when the config cannot say."""
    try:
        model = DEVICE_TREE_MODEL.read_bytes().decode("ascii", "replace")
    except OSError:
        return "console"
    return "gpio" if "Raspberry Pi" in model else "jetson" if "Jetson" in model else "console"


def indicators_of(path: Path | None) -> Config:
    """The defaults with only the ``[indicators]`` settings of ``path`` that are allowed, for a
    config the service refused (a typo in ``web.port``): its fault light blinks on the LED the
    file names, not on the defaults' console, which left a wired desk dark. A file that cannot
    be read at all: the board's LED (``board_indicator``)."""
    tables = defaults().to_dict()
    if path is None and _device_config_present():
        path = DEVICE_CONFIG
    try:
        table = tomllib.loads(Path(path).read_text(encoding="utf-8-sig")).get("indicators") if path else None
        if not isinstance(table, dict):
            raise ConfigError("no [indicators] table")
        for key, value in table.items():  # each allowed value; a refused one keeps its default
            try:
                _merge(defaults().to_dict(), {"indicators": {key: value}})
            except ConfigError:
                continue
            _merge(tables, {"indicators": {key: value}})
        return _build(tables, f"{path} ([indicators] only)")
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, ConfigError):  # a pin clash too: none of them
        tables = defaults().to_dict()
        tables["indicators"]["backend"] = board_indicator()
        return _build(tables, "defaults (the board's LED)")


def _device_config_present() -> bool:
    """The device's file is there, readable or not. Behind /etc/engage-edge (root:engage,
    0750) a technician's own account cannot even see it: is_file() then raised
    PermissionError, a traceback for 'analyze' and 'run'; reading it now says what to do."""
    try:
        return DEVICE_CONFIG.is_file()
    except PermissionError:
        return True


def _unreadable(path: Path, exc: OSError) -> ConfigError:
    """A config file this user may not read: run as the group that may (on a device the
    service's, engage), as the service does."""
    import grp
    import os
    import pwd

    from edge_app.fsutil import user_name

    run_as = "sudo engage-edge ..."
    for candidate in (path.absolute(), *path.absolute().parents):  # the file, or the folder hiding it
        try:
            gid = os.stat(candidate).st_gid
        except OSError:
            continue
        try:  # the service's user has a group of its own name (engage on a device)
            group = grp.getgrgid(gid).gr_name
            if group != "root" and pwd.getpwnam(group):
                run_as = f"sudo -u {group} engage-edge ..."
        except KeyError:
            group = str(gid)
        if gid == os.getegid() or gid in os.getgroups():
            # this user is in the group that should read it (the service's user): its mode
            # lost the group's read; what install.sh gives it (firmware/install.sh)
            if candidate == path.absolute():
                fix = f"sudo chown root:{group} {candidate} && sudo chmod 0640 {candidate}"
            else:
                fix = f"sudo chmod 0750 {candidate}"
            return ConfigError(f"config file {path} cannot be read by {user_name()!r} ({exc.strerror}), though it is in "
                               f"its group {group!r}: give the group read access again, as the installer sets it: "
                               f"{fix}")
        break
    return ConfigError(f"config file {path} cannot be read by {user_name()!r} ({exc.strerror}): run the command as "
                       f"a user who may read it, as the service does ({run_as}), or name another file with --config")


def with_changes(cfg: Config, changes: dict) -> Config:
    """A new validated ``Config``: ``cfg`` with ``changes`` (dotted keys) applied; ``cfg``
    itself never changes."""
    tables = cfg.to_dict()
    for dotted, value in changes.items():
        _merge(tables, _nested(dotted, value))
    return _build(tables, cfg.source)


def data_dir(cfg: Config) -> Path:
    return Path(cfg.store.data_dir).expanduser()


# ------------------------------------------------------------ the settings page
class AdminSetting(NamedTuple):
    """One setting admins may change on the settings page; ``kind`` is the Python type or,
    for a choice, the tuple of choices."""

    key: str
    label: str
    kind: Any
    help: str


def admin_settings() -> list[AdminSetting]:
    """The schema fields that carry a ``label``, in schema order."""
    out = []
    for name, cls in _sections().items():
        for f in dataclasses.fields(cls):
            if f.metadata.get("label"):
                rule = f.metadata.get("rule")
                kind = rule.choices if isinstance(rule, OneOf) else _types(cls)[f.name]
                out.append(AdminSetting(f"{name}.{f.name}", f.metadata["label"], kind, f.metadata["doc"]))
    return out


# ------------------------------------------------------------ default_config.toml
HEADER = """\
engage-edge configuration: every key with its default and what it does.
The device reads /etc/engage-edge/config.toml (or --config FILE); keys left out keep the
defaults below; command-line flags override both. A wrong key or value stops start-up
with a message naming the key, the value and what is allowed.
Generated from the schema in edge_app/config.py: python -m edge_app.config --write-defaults"""
WIDTH = 88


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(value)


def _comment(text: str, f: dataclasses.Field | None = None, kind: Any = None) -> list[str]:
    rule = f.metadata.get("rule") if f is not None else None
    if rule is not None and not isinstance(rule, (OneOf, Levels)):
        text += f" Allowed: {rule.allowed(kind)}."
    return textwrap.wrap(text, WIDTH - 2, initial_indent="# ", subsequent_indent="# ", break_on_hyphens=False)


def render_default_toml() -> str:
    """The text of ``default_config.toml``: every section, key, default and description."""
    lines = [f"# {line}" for line in HEADER.splitlines()]
    for name, cls in _sections().items():
        section = getattr(defaults(), name)
        lines += ["", *_comment(" ".join((cls.__doc__ or "").split())), f"[{name}]"]
        tables = []
        for f in dataclasses.fields(cls):
            value = getattr(section, f.name)
            if isinstance(value, Mapping):
                tables.append((f, value))
                continue
            lines += [*_comment(f.metadata["doc"], f, _types(cls)[f.name]), f"{f.name} = {_toml_value(value)}"]
        for f, table in tables:
            lines += ["", *_comment(f.metadata["doc"]), f"[{name}.{f.name}]"]
            lines += [f"{key} = {_toml_value(level)}" for key, level in table.items()]
    return "\n".join(lines) + "\n"


def default_toml_path() -> Path:
    return Path(str(resources.files("edge_app").joinpath("default_config.toml")))


# The files a config names, read only at the start: a path mistyped, or under /home (the unit's
# ProtectHome hides it), passed --check, and install.sh restarted the upgraded service into a start
# that failed, again and again until the fault light. (The broker's only while MQTT is on; the
# detector's only for BlazeFace.)
NAMED_FILES = (("web", "tls_cert"), ("web", "tls_key"), ("model", "manifest"), ("detector", "manifest"),
               ("mqtt", "tls_ca"), ("mqtt", "tls_cert"), ("mqtt", "tls_key"), ("mqtt", "password_file"))


def named_file_problems(cfg: Config) -> list[str]:
    """What is wrong with the files ``cfg`` names (``NAMED_FILES``), as this user would read
    them: none there, not a file, not readable, or under /home. A relative path is read from
    the service's working folder, not from here: left to the start to judge."""
    import os

    from edge_app.fsutil import HIDDEN_FROM_SERVICE, hidden_from_service, user_name

    problems = []
    for section, key in NAMED_FILES:
        value = getattr(getattr(cfg, section), key)
        if not value or section == "mqtt" and not cfg.mqtt.host or section == "detector" and cfg.detector.backend != "blazeface":
            continue
        path = Path(value).expanduser()
        if not path.is_absolute():
            continue
        named = f"{section}.{key} = {_toml_value(value)}"
        if hidden_from_service(path):
            problems.append(f"{named}: the service cannot see files under {', '.join(HIDDEN_FROM_SERVICE)} (its unit "
                            "hides them): copy it to /etc/engage-edge/ (readable by the service's group) and name "
                            "that path")
        elif not path.exists():
            problems.append(f"{named}: there is no such file: correct the path, or copy the file there")
        elif not path.is_file():
            problems.append(f"{named}: it is a folder, not a file: name the file in it")
        elif not os.access(path, os.R_OK):
            problems.append(f"{named}: {user_name()!r}, who runs this check, may not read it: run the check as the "
                            "service's user (sudo -u engage ...), or let that user read the file (chgrp engage FILE; "
                            "chmod g+r FILE)")
    return problems


def saved_over(cfg: Config) -> list[str]:
    """What the admin saved on Admin > Settings that the service uses instead of ``cfg``'s
    values, and saved values this release refuses: a technician's edit checked "accepted"
    and, after the restart, changed nothing, the start's log line the only word of why."""
    from edge_app.store.database import DB_NAME, Store
    from edge_app.web.admin_settings import SETTINGS_KEY, apply_saved, overridden

    saved = Store.read_setting_only(data_dir(cfg) / DB_NAME, SETTINGS_KEY)
    if not isinstance(saved, dict) or not saved:
        return []
    used, refused = apply_saved(cfg, saved)
    return overridden(used, cfg, saved) + [f"a saved setting is ignored: {why}" for why in refused]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edge_app.config", description=__doc__.split("\n")[0])
    parser.add_argument("--write-defaults", action="store_true", help="regenerate edge_app/default_config.toml")
    parser.add_argument("--check", type=Path, metavar="FILE",
                        help="whether this release accepts FILE (exit 0), or what to change in it (exit 2): "
                             "firmware/install.sh asks before it restarts an upgraded service")
    args = parser.parse_args(argv)
    if args.check:
        try:
            cfg = load(args.check)
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        problems = named_file_problems(cfg)
        if problems:
            print(f"error: {_in_file(args.check, problems)}", file=sys.stderr)
            return 2
        print(f"{args.check}: accepted")
        for line in saved_over(cfg):
            print(f"note: {line}")
        return 0
    if args.write_defaults:
        default_toml_path().write_text(render_default_toml())
        print(f"wrote {default_toml_path()}")
    else:
        sys.stdout.write(render_default_toml())
    return 0


if __name__ == "__main__":
    sys.exit(main())
