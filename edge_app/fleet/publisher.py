"""The device side of the classroom: sends the outbox to the MQTT broker, in order.

The capture loop never talks to the broker: its state changes and minute rows go to
SQLite with an outbox row in the same transaction (store/outbox.py). This thread hands
waiting rows to paho-mqtt (whose own network thread reconnects with back-off) and
deletes a row only once the broker has acknowledged it, so an outage or a restart
loses nothing and the loop is never slowed by the network.

Topics (README "Classroom"): ``<prefix>/<id>/state`` (retained, QoS 1),
``<prefix>/<id>/minute`` (QoS 1), ``<prefix>/<id>/availability`` (``online`` retained,
``offline`` as the last will and on a clean stop), ``<prefix>/<id>/heartbeat`` (QoS 0,
not retained, never stored: the state the desk shows now, every ``mqtt.heartbeat_s``, so
the classroom can tell a desk that is paused, or steady for an hour, from one that died
without its will reaching the page, and sees the student's state while the desk cannot
log it: a full disk), and Home Assistant discovery under
``homeassistant/sensor/<id>/...``. No image, crop, probability or name is ever sent: nor
the desk's label while it holds a student's user name (``names_a_student``).

The link itself (the paho client, what a failed connection says, the status) is
``broker_link``'s, shared with the classroom's subscriber.
"""
from __future__ import annotations

import collections
import hashlib
import json
import logging
import math
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import paho.mqtt.client as mqtt

from edge_app.engagement import names_an_emotion
from edge_app.episodes import EpisodeLog
from edge_app.fleet.broker_link import (
    DROPS_WINDOW_S,
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
from edge_app.fleet.settings import MqttSettings, host_key
from edge_app.fsutil import atomic_write
from edge_app.store.accounts import Accounts
from edge_app.store.database import Store
from edge_app.store.outbox import Message, Outbox

if TYPE_CHECKING:
    from edge_app.config import Config

log = logging.getLogger(__name__)


def _not_every_retry(record: logging.LogRecord) -> bool:
    """paho's "Client is not connected" at each of its retries while the broker is away (about
    720 lines a day at its longest back-off, a weekend's worth in the journal on the SD card): the
    outage is said once, and when it ends, by this module's own lines."""
    return not str(record.msg).startswith("Client is not connected")


PAHO_LOG = log.getChild("paho")  # paho's own lines (a callback's error among them), less its retries' noise
PAHO_LOG.addFilter(_not_every_retry)
WINDOW = 100  # messages handed to paho and not yet acknowledged, at most
DISCOVERY_PREFIX = "homeassistant"
# A link that keeps dropping (two devices with one mqtt.device_id: the broker drops each in
# turn; the id defaults to the host name, the same on every card cloned from one image)
# logged "lost" and "connected" every second or two: thousands of lines an hour into the
# journal on the SD card. At most one "lost" line per LOG_QUIET_S, counting the drops in
# between, but an outage that lasts LOG_LONG_S is always logged.
LOG_QUIET_S = 600.0
LOG_LONG_S = 60.0
LIVE_SINCE_SLACK_S = 1.0  # the loop's state and the one logged for it: their "since" differ by clock drift, no more
# where this desk's retained messages last went (broker, topic prefix, device id): a desk moved to another room
# (a new prefix or id) clears them there, or the old room's page shows it for good; written only when it changes
PUBLISHED_UNDER_KEY = "mqtt.published_under"
# ... and by whom: the record lives in the database, which a backup carries to another desk, and a desk restored
# from desk A's backup "moved" A's topics away (cleared them) while A still published there
INSTALLATION_FILE = "installation-id"  # in the data directory, never in the database (nor a backup): random, once
MACHINE_ID = Path("/etc/machine-id")
DESK_CHECK_EVERY_S = 60.0  # how often the desk's label is checked against the student accounts (made at any time)
NAME_PART_MIN = 3  # a part of a user name ("anna" of "anna.k") this long counts as a name in a label


def names_a_student(label: str, usernames: Iterable[str]) -> bool:
    """Whether ``label`` holds one of ``usernames`` as a word of its own, whole ("anna.k") or
    a part of it of ``NAME_PART_MIN`` letters or more ("Anna's desk" for "anna.k"), in any case.
    The label goes to the broker and every classroom screen with the desk's states; the
    settings say "never a student's name" and nothing held a teacher to it."""
    text = label.casefold()
    for name in usernames:
        name = name.casefold()
        parts = [p for p in re.split(r"[._-]+", name) if len(p) >= NAME_PART_MIN and not p.isdigit()]
        for word in {name, *parts}:
            if re.search(rf"(?<![^\W_]){re.escape(word)}(?![^\W_])", text):
                return True
    return False


class Publisher:
    def __init__(self, settings: MqttSettings, store: Store, model_version: Callable[[], str] = lambda: ""):
        self.settings, self.store, self.model_version = settings, store, model_version
        self.outbox = Outbox(store)
        self.status = BrokerStatus(True, settings.broker, settings.device_id, settings.username)
        self.client = make_client(settings, f"engage-edge-{settings.device_id}")  # first: bad TLS files raise here
        self._wake = store.outbox_event
        store.outbox_enabled = True
        self._stop = threading.Event()
        self._cursor = 0  # the last seq handed to paho in this process
        self._pending: dict[int, int] = {}  # paho message id -> seq, handed over and not yet acknowledged
        self._acked: collections.deque[int] = collections.deque()  # message ids paho reported acknowledged
        self._done: list[int] = []  # seqs acknowledged, not yet deleted from the outbox
        self._thread: threading.Thread | None = None
        self._watched: list = []
        self._last_state = self._logged_state()  # the newest state handed to paho (or, at first, logged)
        self._live: Callable[[], dict | None] | None = None  # what the capture loop shows now (``follow``)
        self._restate = False  # set at each connection: that state is published again (sender thread)
        self._next_beat = 0.0  # monotonic time of the next heartbeat (0: at the sender's next wake-up)
        self.loss_log = EpisodeLog(LOG_QUIET_S, LOG_LONG_S)  # a link that keeps dropping: bounded lines
        self._log_lock = threading.Lock()  # losses are logged from paho's thread and the sender's
        self._lost_since: float | None = None  # monotonic time of the last loss, until reconnected
        self._drops: collections.deque[float] = collections.deque()  # when (monotonic) answered connections dropped
        self._lost_reason = ""
        self.installation = installation_id(store.data_dir)
        # this run's tag, in every message: two devices given one device id come in turn under it, which a
        # classroom tells from one desk restarting (classroom ``desk.note_run``); random, so a card cloned with
        # its installation id is told apart too, and it names nothing
        self.run = secrets.token_hex(4)
        self._moved_from = self._previous_topics(store)  # settings of the old topics to clear, or None
        self._clearing: list[mqtt.MQTTMessageInfo] = []  # the clearing publishes, until acknowledged
        self._accounts = Accounts(store)
        self._desk, self._desk_checked, self._desk_said = settings.desk, -math.inf, False
        self._check_desk()  # before the first message: paho's thread reads only what this found
        self._home_recorded = False  # the current topics are in the store (sender thread)
        self.failures = FailureLog(log)
        self._answered = False  # the broker answered this connection's log-in (paho's thread)
        self.status.waiting_hint = waiting_hint(settings)
        self.client.will_set(settings.topic("availability"), "offline", qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        # a callback's error is logged (through this module's logger: paho logs nowhere by itself), and its
        # network thread goes on: raised, it ended that thread for good while the status said connected
        self.client.suppress_exceptions = True
        self.client.enable_logger(PAHO_LOG)

    # ------------------------------------------------------------ paho callbacks (its network thread)
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        self._answered = True
        self.status.connecting_since = None
        if reason_code.is_failure:
            self.status.connected = False
            error = refusal_text(self.settings, reason_code)
            if error != self.status.error:
                log.error("mqtt: %s", error)
            self.status.error = error
            return
        with self._log_lock:
            if self.loss_log.logged:  # a loss kept out of the log keeps its reconnection out too
                log.info("mqtt: connected to %s as %s", self.settings.broker, self.settings.device_id)
            self._lost_since = None
        if self._moved_from is not None:  # before anything new, and before the sender may record the new topics
            self._clearing = [client.publish(topic, b"", qos=1, retain=True)
                              for topic in retained_topics(self._moved_from) if topic not in retained_topics(self.settings)]
        self.status.connected, self.status.error = True, ""
        client.publish(self.settings.topic("availability"), "online", qos=1, retain=True)
        for topic, config in discovery_messages(replace(self.settings, desk=self._desk), self._model_version()):
            client.publish(topic, json.dumps(config), qos=1, retain=True)
        self._restate = self._last_state is not None  # a first connection has none to repeat
        self._next_beat = 0.0  # a heartbeat at once: a classroom learns the interval before it counts on it
        self._wake.set()

    def _on_connect_fail(self, client, userdata) -> None:
        self.status.connected, self.status.connecting_since = False, None
        self.status.error = failure_text(self.settings, getattr(client, "connect_error", None))
        self.failures(self.status.error)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        answered, self._answered = self._answered, False
        if not answered and not self._stop.is_set():  # taken and closed with no answer: a TLS port, no CA?
            self.status.connecting_since = None
            self.status.error = closed_text(self.settings)
            self.failures(self.status.error)
        elif self.status.connected and not self._stop.is_set():
            with self._log_lock:
                self._lost_since, self._lost_reason = time.monotonic(), str(reason_code)
                self.loss_log.begin()
                self._drops.append(self._lost_since)
                self._trim_drops()  # here too: two desks on one id drop each other every second, and
                # with no /healthz nor broker page read the list grew by 86,000 a day
            self.status.error = f"lost the connection ({reason_code}); retrying"
            self._log_loss()
        self.status.connected = False

    def _log_loss(self) -> None:
        """The last loss's line, once it is due (``EpisodeLog``; while it is kept back, the
        sender thread tries again)."""
        with self._log_lock:
            if self._lost_since is None:
                return
            now = time.monotonic()
            others = self.loss_log.due(now, self._lost_since)
            if others is None:
                return
            ago = now - self._lost_since
            when = f" {ago:.0f} s ago" if ago >= 1 else ""
            more = (f"; the connection also dropped {others} more time{'s' if others != 1 else ''} since the last "
                    "such line (a second device with the same mqtt.device_id makes the broker drop each in turn)"
                    if others > 0 else "")
            log.warning("mqtt: lost the broker %s%s (%s); retrying with back-off%s", self.settings.broker, when,
                        self._lost_reason, more)

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        # only a note for the sender thread: paho holds its message lock while calling this
        self._acked.append(mid)
        self._wake.set()

    def _model_version(self) -> str:
        """The running model's version for a message, or "" when it cannot be read now (said at most
        once a minute): raised in paho's callback it ended its network thread (no sends, no
        reconnection, "connected" for good), and in the sender thread no state left again."""
        try:
            return self.model_version()
        except Exception as exc:  # noqa: BLE001 - the message goes without it; nothing else changes
            self.failures(f"the running model's version could not be read ({exc}): messages name no model meanwhile")
            return ""

    # ------------------------------------------------------------ the sender thread
    def payload(self, message: Message, ahead: bool = False) -> tuple[str, str, bool]:
        """(topic, JSON payload, retain) for one outbox row. ``sent`` is this device's
        clock as the message leaves: a receiver compares it with its own to correct the
        row's times when this clock is off (a Pi no time server has set yet). ``ahead``: a
        heartbeat's state sent before older ones (``heartbeat_payload``)."""
        body = dict(message.body)
        sent = round(time.time(), 3)
        if message.kind == "state":
            if not self.settings.include_emotion or body.get("emotion") is None:
                body.pop("emotion", None)
            body["label"] = self._shown_label(body)
            body.update(seq=message.seq, desk=self._desk, model=self._model_version(), sent=sent, run=self.run)
            if self.settings.heartbeat_s > 0:  # the promise a classroom holds this desk to, retained with its state
                body["heartbeat_s"] = self.settings.heartbeat_s
            if ahead:
                body["ahead"] = True
            return self.settings.topic("state"), json.dumps(body), True
        body.update(seq=message.seq, desk=self._desk, sent=sent, run=self.run)
        return self.settings.topic(message.kind), json.dumps(body), False

    def _check_desk(self) -> None:
        """The desk's label as it leaves (``_desk``): "" while it names a student account on this
        device (``names_a_student``; the classroom shows the device id instead), said once.
        Asked again every ``DESK_CHECK_EVERY_S`` by the sender: accounts are made at any time.
        While the accounts cannot be read (a locked database) the last answer stands. A change
        while connected sends the retained messages that carry it again (``_relabel``)."""
        label = self.settings.desk
        if not label or time.monotonic() - self._desk_checked < DESK_CHECK_EVERY_S:
            return
        try:
            students = self._accounts.usernames("student")
        except Exception as exc:  # noqa: BLE001 - a locked or failing database: checked again at the next turn
            log.debug("mqtt: the desk label was not checked against the accounts now: %s", exc)
            return
        self._desk_checked = time.monotonic()
        was, self._desk = self._desk, "" if names_a_student(label, students) else label
        if self._desk != was and self.status.connected:
            self._relabel()
        if self._desk:
            return
        if not self._desk_said:  # the label stays as set until an admin changes it: said once, not each minute
            log.warning("mqtt: the desk label (mqtt.desk) holds the user name of a student account on this device, so "
                        "it is not sent: the classroom shows the device id %r instead. Give the desk a label that names "
                        'the seat, such as "Row 2, seat 4" (admin page Classroom)', self.settings.device_id)
            self._desk_said = True

    def _relabel(self) -> None:
        """The broker's retained copies of the label, sent again with the one in force: its
        discovery config, and the state (at the sender's next turn, ``_state_again``). Only the
        heartbeat changed, and the broker gave "Row 2, Ben" to every classroom screen and
        subscriber that came later, until the desk reconnected or its level changed."""
        for topic, config in discovery_messages(replace(self.settings, desk=self._desk), self._model_version()):
            self.client.publish(topic, json.dumps(config), qos=1, retain=True)
        self._restate = self._last_state is not None

    def _shown_label(self, body: dict) -> str:
        """A state's ``label`` as it leaves. The configured engagement text names the emotion
        one-to-one with the default mapping ("Engaged - likes the topic": happiness): without
        ``include_emotion`` only the level leaves, as the label too (Home Assistant's
        attributes and older classroom pages keep the field they read). A level the loop sets
        itself names none ("Absent - camera not working", "- too dark to see") and leaves whole."""
        label = body.get("label", "")
        if not self.settings.include_emotion and names_an_emotion(label):
            return body.get("level", "")
        return label

    def _no_news(self, a: dict, b: dict) -> bool:
        """State ``b`` after ``a`` leaves as the same words while the emotion stays on the
        desk (``include_emotion`` off): only the expression changed within a level ("Engaged -
        paying attention" to "- likes the topic", and back), which is no news for the broker."""
        return (not self.settings.include_emotion and a.get("level") == b.get("level")
                and self._shown_label(a) == self._shown_label(b))

    def follow(self, loop) -> None:
        """Heartbeats carry what ``loop`` (the capture loop) shows now, not only what reached
        the outbox: a state reaches the outbox through the loop's store writer, which a full
        disk pauses for as long as it lasts, and the heartbeats kept repeating the last state
        published, so the classroom showed "Engaged" for days over a student long gone."""
        def live() -> dict | None:
            snap, offset = loop.snapshot, loop.wall() - loop.clock()
            return {"level": snap.group, "label": snap.level, "since": round(snap.since + offset, 3),
                    "emotion": snap.emotion}
        self._live = live

    def _beat_state(self) -> tuple[Message | None, bool]:
        """The state a heartbeat carries: the newest known (``_newest_state``) while the loop
        still shows it, else the loop's own under that state's ``seq``, and whether states older
        than it are still to be sent. It takes no new ``seq``: the outbox alone numbers
        messages, so the rows a full disk held back still go out after it, each newer by its
        ``seq``, the newest last."""
        last, waiting = self._newest_state()
        try:
            live = self._live() if self._live is not None else None
        except Exception as exc:  # noqa: BLE001 - a loop being replaced: this beat carries the logged state
            log.debug("mqtt: the loop's state is not readable now: %s", exc)
            live = None
        if live is None:
            return last, waiting > 1
        if last is not None and last.body.get("level") == live["level"] and last.body.get("label") == live["label"] \
                and abs(float(last.body.get("since", 0.0)) - live["since"]) <= LIVE_SINCE_SLACK_S:
            return last, waiting > 1  # the same state: the very message, so a receiver that has it drops it
        if last is not None and self._no_news(last.body, live) \
                and live["since"] > float(last.body.get("since", 0.0)):
            return last, waiting > 1  # nor is the broker told when, by a heartbeat
        return Message(last.seq if last is not None else 0, time.time(), "state", live), waiting > 0

    def _newest_state(self) -> tuple[Message | None, int]:
        """The newest state known and how many state messages wait to be handed to the broker.
        With none waiting, the last one published. With some (the backlog of the desk's own
        outage, or of its restart), the newest logged one under the newest ``seq`` issued: a
        heartbeat that repeated the last state published, and came after the backlog's first
        hundred messages, let a classroom show each waiting state in turn as the desk's
        current one ("Not engaged for 55 min", over for as long) until the backlog's last."""
        last = self._last_state
        try:
            waiting = self.outbox.states_after(self._cursor)
        except Exception as exc:  # noqa: BLE001 - a locked database: this beat carries the last state published
            log.debug("mqtt: the outbox is not readable now: %s", exc)
            return last, 0
        if not waiting:
            return last, 0
        return self._logged_state() or last, waiting

    def heartbeat_payload(self) -> str:
        """The state the desk shows now (``_beat_state``: as published, with a fresh ``sent``
        and the same ``seq``, so a receiver that has it drops the state and keeps the sign of
        life), or only ``{"heartbeat_s", "desk", "sent", "run"}`` before there is one. With
        ``"ahead": true`` when older states are still to be sent (an outage's backlog): a
        receiver shows this one and takes those as its history, not as news."""
        state, ahead = self._beat_state()
        if state is not None:
            return self.payload(state, ahead)[1]
        return json.dumps({"heartbeat_s": self.settings.heartbeat_s, "desk": self._desk,
                           "sent": round(time.time(), 3), "run": self.run})

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._until_beat())
            self._wake.clear()
            self._check_desk()
            if not self.status.connected:
                self._log_loss()  # an outage kept out of the log while the link flapped, once it lasts
            else:  # also when the database fails: the desk is there, and says so
                self._beat()  # before the backlog: at a (re)connection the state the desk shows now goes first
            try:
                self._settle()
                if self.status.connected:
                    self._record_topics()
                    self._send()
                    self._state_again()
                self.status.backlog = self.outbox.count()
            except Exception as exc:  # a locked or failing database: try again on the next wake-up
                log.warning("mqtt: outbox not readable now: %s", exc)
        try:  # a sender that was stuck past the stop (a locked database) settles what was acknowledged meanwhile
            self._settle()
        except Exception as exc:  # noqa: BLE001 - kept for the next start: receivers drop a resent seq
            log.warning("mqtt: acknowledged messages kept for the next start: %s", exc)

    def _logged_state(self) -> Message | None:
        """The student's state now (``Outbox.current_state``), or None when unreadable."""
        try:
            return self.outbox.current_state(self._no_news if not self.settings.include_emotion else None)
        except Exception as exc:  # noqa: BLE001 - a locked or damaged database: the next change brings a state
            log.warning("mqtt: could not read the current state to publish: %s", exc)
            return None

    def _previous_topics(self, store: Store) -> MqttSettings | None:
        """The settings this desk last published under, where they differ from the current
        ones on this same broker (another broker's messages are out of reach here)."""
        try:
            was = store.get_setting(PUBLISHED_UNDER_KEY)
            if not isinstance(was, dict) or was.get("broker") != self.settings.broker:
                return None
            old = replace(self.settings, topic_prefix=str(was["topic_prefix"]), device_id=str(was["device_id"]))
        except Exception as exc:  # noqa: BLE001 - a damaged or locked row: publish anyway, the old topics stay
            log.warning("mqtt: could not read where this desk published before: %s", exc)
            return None
        if retained_topics(old) == retained_topics(self.settings):
            return None
        written_by = was.get("written_by")  # None: a release before it, whose record was this desk's own
        if written_by is not None and written_by != self.installation:
            log.warning("mqtt: not clearing the retained messages under %s/%s/: the record of them was written on "
                        "another device (a backup restored from another desk?), which may publish there still. If "
                        "they are this desk's own from before a reinstall, clear them on the broker "
                        "(mosquitto_pub -r -n -t TOPIC, for each of %s)", old.topic_prefix, old.device_id,
                        " ".join(retained_topics(old)))
            return None
        return old

    def _record_topics(self) -> None:
        """Once the old topics are cleared (acknowledged), the current ones become the ones to
        clear after the next move: one settings row, written only when they change."""
        if self._home_recorded or not all(info.is_published() for info in self._clearing):
            return
        here = {"broker": self.settings.broker, "topic_prefix": self.settings.topic_prefix,
                "device_id": self.settings.device_id, "written_by": self.installation}
        if self.store.get_setting(PUBLISHED_UNDER_KEY) != here:
            self.store.set_setting(PUBLISHED_UNDER_KEY, here)
        if self._moved_from is not None:
            # acknowledged is all a broker says: under an ACL that no longer lets this log-in write there (a new
            # account with the new id) it dropped them unseen, and said nothing of it (MQTT 3.1.1)
            log.info("mqtt: cleared this desk's retained messages under %s/%s/ (it now publishes under %s/%s/); if "
                     "the classroom page still shows the old desk, the broker's ACL kept this log-in from clearing "
                     "them: Remove the offline desks on the page takes it off",
                     self._moved_from.topic_prefix, self._moved_from.device_id,
                     self.settings.topic_prefix, self.settings.device_id)
        self._moved_from, self._clearing, self._home_recorded = None, [], True

    def _until_beat(self) -> float:
        """How long the sender may sleep: a second at most (the loss log, a full window), less
        when a heartbeat falls due sooner."""
        if self.settings.heartbeat_s <= 0 or not self.status.connected:  # none due while not connected
            return 1.0
        return min(1.0, max(0.0, self._next_beat - time.monotonic()))

    def _beat(self) -> None:
        """A heartbeat when one is due: QoS 0, not retained, not in the outbox (no SD card
        write, nothing to acknowledge: a lost one is replaced by the next)."""
        now = time.monotonic()
        if self.settings.heartbeat_s <= 0 or now < self._next_beat:
            return
        self._next_beat = now + self.settings.heartbeat_s
        self.client.publish(self.settings.topic("heartbeat"), self.heartbeat_payload(), qos=0, retain=False)

    def _settle(self) -> None:
        """Forget the rows the broker has acknowledged (kept for the next try if the delete fails)."""
        while self._acked:
            seq = self._pending.pop(self._acked.popleft(), None)
            if seq is not None:  # None: availability or discovery
                self._done.append(seq)
        if self._done:
            self.outbox.ack(self._done)
            self.status.sent += len(self._done)
            self._done = []

    def _send(self) -> None:
        room = WINDOW - len(self._pending)
        if room <= 0:
            return
        for message in self.outbox.after(self._cursor, room):
            if message.kind == "state" and self._last_state is not None \
                    and self._no_news(self._last_state.body, message.body):
                # only the expression changed, which stays on the desk (include_emotion off): a message
                # for it told the broker when the student's expression changed, and restarted the
                # level's "since" on the classroom page ("Engaged for 10 s" of a student engaged all lesson)
                self.outbox.ack([message.seq])
                self._cursor = message.seq
                continue
            topic, payload, retain = self.payload(message)
            info = self.client.publish(topic, payload, qos=1, retain=retain)  # paho queues it if the link drops
            self._pending[info.mid] = message.seq
            self._cursor = message.seq
            if message.kind == "state":
                self._last_state = message
                self._restate = False  # a state goes out on this connection anyway: nothing to repeat
        if len(self._pending) >= WINDOW:
            return
        if self.outbox.after(self._cursor, 1):
            self._wake.set()

    def _state_again(self) -> None:
        """After a (re)connection, the newest state once more, retained: a broker that restarted
        without persistence has lost it, and a classroom started after that would show the
        desk with no state until the student's next change, hours later for a steady desk.
        Only once nothing is in flight, so no older state re-sent by paho lands after it.
        Same ``seq``: a receiver that has it already drops the copy."""
        if not self._restate or self._pending or self._last_state is None:
            return
        self._restate = False
        topic, payload, retain = self.payload(self._last_state)
        self.client.publish(topic, payload, qos=1, retain=retain)

    # ------------------------------------------------------------ life cycle
    def start(self) -> "Publisher":
        if self.settings.password_missing:  # said on the admin page and /healthz; the outbox keeps what comes
            self.status.error = self.settings.password_missing
            log.error("mqtt: %s", self.settings.password_missing)
            return self
        from edge_app.web.reach import is_local

        if not self.settings.tls_ca and not is_local(self.settings.host):  # as the web UI warns of plain HTTP
            log.warning("mqtt: the broker %s:%s is reached without TLS: the desk label, its broker log-in and its "
                        "states cross the network unencrypted. Set mqtt.tls_ca (and the broker's TLS port, usually "
                        "8883; README, Classroom)", self.settings.host, self.settings.port)
        self.status.connecting_since = time.monotonic()
        self.client.connect_async(self.settings.host, self.settings.port, self.settings.keepalive_s)
        self.client.loop_start()
        self._thread = threading.Thread(target=self._run, name="mqtt-outbox", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 3.0) -> None:
        """Send what is waiting (briefly), say ``offline`` and disconnect."""
        deadline = time.monotonic() + timeout
        if self.status.connected:
            self._wake.set()
            while time.monotonic() < deadline and self._pending_or_waiting():
                time.sleep(0.05)
        self._stop.set()
        self._wake.set()
        if self._thread:  # what is left of the stop's time, not all of it again (README: up to 3 s)
            self._thread.join(max(0.0, deadline - time.monotonic()))
        if self.status.connected:
            info = self.client.publish(self.settings.topic("availability"), "offline", qos=1, retain=True)
            if info.rc == mqtt.MQTT_ERR_SUCCESS:  # else the link just ended: the broker sends the will, "offline"
                info.wait_for_publish(max(0.1, deadline - time.monotonic()))
        self.client.disconnect()
        self._stop_network(max(NETWORK_STOP_S, deadline - time.monotonic()))
        if not (self._thread and self._thread.is_alive()):  # a sender still stuck (a locked database) settles itself
            self._settle()                                    # as it ends (``_run``)

    def _stop_network(self, limit: float) -> None:
        """``stop_network``. Nothing is lost: what the broker did not acknowledge stays in the
        outbox for the next start."""
        if done := stop_network(self.client, limit):
            log.warning("mqtt: the connection to %s did not stop within %.1f s (a hung network or broker?): %s; "
                        "what the broker did not acknowledge stays in the outbox and goes out after the next start",
                        self.settings.broker, limit, done)

    def _pending_or_waiting(self) -> bool:
        return bool(self._pending) or bool(self.outbox.after(self._cursor, 1))

    def watch(self, registry) -> None:
        """Broker gauges in a Prometheus registry, read at each scrape (once per registry)."""
        from prometheus_client import Gauge

        if registry in self._watched:
            return
        self._watched.append(registry)
        Gauge("engage_mqtt_connected", "1 while connected to the classroom MQTT broker",
              registry=registry).set_function(lambda: float(self.status.connected))
        Gauge("engage_mqtt_backlog", "Messages waiting for the MQTT broker (kept in SQLite)",
              registry=registry).set_function(lambda: float(self.outbox.count()))
        Gauge("engage_mqtt_sent", "Messages the broker acknowledged since start",
              registry=registry).set_function(lambda: float(self.status.sent))

    def snapshot(self) -> BrokerStatus:
        self.status.backlog = self.outbox.count()
        with self._log_lock:
            self._trim_drops()
            self.status.drops = len(self._drops)
        return self.status

    def _trim_drops(self) -> None:
        """Forget the drops older than ``DROPS_WINDOW_S`` (holding ``_log_lock``)."""
        while self._drops and time.monotonic() - self._drops[0] > DROPS_WINDOW_S:
            self._drops.popleft()


def installation_id(data_dir: Path) -> str:
    """Which device this is, as ``mqtt.published_under`` records it: this host's machine id and
    a random id kept in its data directory (created here the first time), hashed (the machine
    id is not to be shown). Neither travels in a backup, so a database restored on another
    desk is told apart, and two data directories on one computer are two devices."""
    try:
        machine = MACHINE_ID.read_text().strip()
    except OSError:
        machine = ""
    path = Path(data_dir) / INSTALLATION_FILE
    try:
        token = path.read_text().strip()
        if not token:
            raise FileNotFoundError(path)
    except FileNotFoundError:
        token = secrets.token_hex(16)
        try:
            atomic_write(path, token + "\n")
        except OSError as exc:  # a read-only card: this run is its own device (nothing is cleared for it)
            log.warning("mqtt: could not keep this device's id in %s: %s", path, exc)
    except OSError as exc:
        log.warning("mqtt: could not read this device's id in %s: %s", path, exc)
        token = secrets.token_hex(16)
    return hashlib.sha256(f"engage-edge\0{machine}\0{token}".encode()).hexdigest()[:32]


def retained_topics(settings: MqttSettings) -> list[str]:
    """Every topic a desk leaves a retained message on (its availability before its state: a
    classroom that reads them cleared in this order drops the desk at the second)."""
    return [settings.topic("availability"), settings.topic("state")] + [t for t, _ in discovery_messages(settings, "")]


def discovery_messages(settings: MqttSettings, model: str) -> list[tuple[str, dict]]:
    """Home Assistant MQTT discovery: the engagement level as a sensor, with availability."""
    device_id = settings.device_id
    device = {"identifiers": [f"engage-edge-{device_id}"], "name": settings.desk or device_id,
              "manufacturer": "engage-edge", "model": "engage-edge", "sw_version": model}
    common = {"availability_topic": settings.topic("availability"), "payload_available": "online",
              "payload_not_available": "offline", "device": device, "state_topic": settings.topic("state")}
    return [
        (f"{DISCOVERY_PREFIX}/sensor/{device_id}/engagement/config",
         {**common, "name": "Engagement", "unique_id": f"{device_id}-engagement",
          "value_template": "{{ value_json.level }}", "json_attributes_topic": settings.topic("state"),
          "icon": "mdi:school"}),
        (f"{DISCOVERY_PREFIX}/sensor/{device_id}/since/config",
         {**common, "name": "Engagement since", "unique_id": f"{device_id}-since", "device_class": "timestamp",
          "value_template": "{{ as_datetime(value_json.since) }}"}),
    ]


def status_of(publisher: Publisher | None, full: bool = True) -> dict:
    """The broker part of /healthz (also the admin page). Not ``full`` (/healthz without a
    log-in, off this machine): connected, and whether messages wait, no more: ``sent`` (and
    the backlog's count while offline) grows by one per state message, so polling it told
    anyone when the student at the desk came, went or changed, and the broker, the device id
    and the broker user (in ``text`` and ``error`` too) name the link to whoever asks."""
    if publisher is None:
        return {"enabled": False}
    s = publisher.snapshot()
    if not full:
        return {"enabled": True, "connected": s.connected, "backlog_waiting": s.backlog > 0}
    return {"enabled": True, "broker": s.broker, "device_id": s.device_id, "connected": s.connected,
            "backlog": s.backlog, "backlog_waiting": s.backlog > 0, "sent": s.sent, "error": s.reason(),
            "text": s.text()}


def publisher_for(cfg: Config, store: Store, model_version: Callable[[], str], loop=None) -> Publisher | None:
    """The device's publisher when ``mqtt.host`` is set, else None (MQTT is off by default);
    its heartbeats follow ``loop``, the capture loop, when there is one."""
    settings = MqttSettings.from_config(cfg)
    if not settings.enabled:
        return None
    publisher = Publisher(settings, store, model_version)
    if loop is not None:
        publisher.follow(loop)
    return publisher


def model_version(manifest) -> str:
    """The model's version from its manifest (its sha256 prefix when it has none)."""
    raw = getattr(manifest, "raw", {}) or {}
    return str(raw.get("version") or str(manifest.sha256)[:12])


def holds_login(running: Publisher | None, settings: MqttSettings) -> bool:
    """Whether ``running`` is logged in now to the broker of ``settings`` (host and port) with
    its user name: a broker that keeps one connection per user name (the README's
    ``use_username_as_clientid true``) would end that connection for a second log-in."""
    if running is None or not running.status.connected or not settings.username:
        return False
    live = running.settings
    return (host_key(live.host), live.port, live.username) == (host_key(settings.host), settings.port,
                                                               settings.username)


def same_login(a: MqttSettings, b: MqttSettings) -> bool:
    """Whether ``a`` and ``b`` log in alike: the same broker, user, password and TLS files."""
    def key(s: MqttSettings) -> tuple:
        return host_key(s.host), s.port, s.username, s.password, s.tls_ca, s.tls_cert, s.tls_key
    return key(a) == key(b)


def check_connection(settings: MqttSettings, timeout: float = 5.0,
                     running: Publisher | None = None) -> tuple[bool | None, str]:
    """Try the broker once with these settings: (True, what connected), (False, why not), or
    (None, why it was not tried). ``running``: the desk's publisher. While it is logged in to
    this broker as this user, a test logging in again would end its connection under the
    README's broker set-up (one connection per user name): its will says "offline" and the
    classroom shows the desk offline and back at each press of Test. So it logs in no second
    time: the same login is answered by the live connection, another (a new password or TLS
    file for the same user) is not tried. Elsewhere a separate client id keeps the live link up
    on a broker that does not tie ids to user names."""

    if holds_login(running, settings):
        assert running is not None
        who = f" (user {settings.username})"
        if same_login(running.settings, settings):
            return True, (f"connected to {settings.broker} as {settings.device_id}{who}: this desk's own connection, "
                          "up now (a second log-in with its user name would end it)")
        return None, (f"this desk is connected to {settings.broker} as {settings.username} now, and a test with another "
                      "password or TLS file for that user would end its connection (the broker keeps one per user "
                      "name; the classroom would show the desk offline): Save to use these settings, and the status "
                      "above says whether the broker accepts them")
    done = threading.Event()
    result: list[str] = []
    try:
        client = make_client(settings, f"engage-edge-{settings.device_id}-check")
    except ValueError as exc:  # ConfigError: an unreadable CA or client certificate
        return False, str(exc)

    def on_connect(client, userdata, flags, reason_code, properties):
        result.append("" if not reason_code.is_failure else refusal_text(settings, reason_code))
        done.set()

    def on_fail(client, userdata):
        result.append(failure_text(settings, client.connect_error).removesuffix("; retrying"))
        done.set()

    def on_disconnect(client, userdata, flags, reason_code, properties):
        if not done.is_set():  # closed before any answer (a refusal's disconnect comes after its on_connect)
            result.append(closed_text(settings).removesuffix("; retrying"))
            done.set()

    client.on_connect, client.on_connect_fail, client.on_disconnect = on_connect, on_fail, on_disconnect
    client.connect_async(settings.host, settings.port, settings.keepalive_s)
    client.loop_start()
    try:
        if not done.wait(timeout):
            return False, (f"no answer from {settings.broker} within {timeout:g} s: check the host, port and firewall; "
                           f"{waiting_hint(settings)}")
    finally:
        client.disconnect()
        stop_network(client, 1.0)  # a handshake that hangs must not hold the admin's page (a web thread) too
    if result[0]:
        return False, result[0]
    who = f" (user {settings.username})" if settings.username else ""
    return True, f"connected to {settings.broker} as {settings.device_id}{who}"


