"""Messages waiting for the MQTT broker, kept in SQLite so a broker outage or a restart loses none.

A row is written in the same transaction as the state change or minute row it
describes (``queue_message``), and deleted only once the broker has acknowledged it
(``Outbox.ack``). Its id is the message's ``seq``: increasing, never reused.
"""
from __future__ import annotations

import json
import logging
import sqlite3
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edge_app.store.database import Store


log = logging.getLogger(__name__)
RUN_LOOKED_AT = 200  # rows ``current_state`` looks back for when the state it reports began


def queue_message(conn: sqlite3.Connection, t: float, kind: str, body: dict) -> None:
    """Queue one message inside the caller's transaction."""
    conn.execute("INSERT INTO outbox(t, kind, body) VALUES (?, ?, ?)", (t, kind, json.dumps(body)))


@dataclass(frozen=True)
class Message:
    seq: int
    t: float
    kind: str  # "state" or "minute"
    body: dict


class Outbox:
    def __init__(self, store: "Store"):
        self.store = store

    def after(self, seq: int, limit: int = 100) -> list[Message]:
        """Waiting messages with a seq above ``seq``, oldest first. A row that no longer reads
        as a message (a bad block on the card) is dropped and said: it made every read fail,
        and nothing after it was ever sent."""
        rows = self.store.query("SELECT id, t, kind, body FROM outbox WHERE id > ? ORDER BY id LIMIT ?", (seq, limit))
        messages, damaged = [], []
        for r in rows:
            try:
                body = json.loads(r["body"])
            except (TypeError, ValueError):
                body = None
            if isinstance(body, dict):
                messages.append(Message(r["id"], r["t"], r["kind"], body))
            else:
                damaged.append(r["id"])
        if damaged:
            log.warning("outbox: dropped %d damaged message(s) (seq %s) that no longer read as JSON; the states after "
                        "them are sent, and the broker keeps the newest: run `engage-edge selftest` to check the card",
                        len(damaged), ", ".join(map(str, damaged[:5])))
            self.ack(damaged)
        return messages

    def ack(self, seqs: list[int]) -> None:
        """The broker has these: forget them."""
        if seqs:  # one transaction: a backlog of N sent after an outage was N commits to the card
            with self.store.transaction() as conn:
                conn.executemany("DELETE FROM outbox WHERE id = ?", [(s,) for s in seqs])

    def count(self) -> int:
        return self.store.query("SELECT COUNT(*) FROM outbox")[0][0]

    def states_after(self, seq: int, most: int = 2) -> int:
        """How many state messages wait with a seq above ``seq`` (not handed to the broker yet),
        counted up to ``most`` (a heartbeat asks whether none, one or more: a month's backlog
        is not counted every 30 s)."""
        return self.store.query("SELECT COUNT(*) FROM (SELECT 1 FROM outbox WHERE id > ? AND kind = 'state' LIMIT ?)",
                                (seq, most))[0][0]

    def current_state(self, same=None) -> Message | None:
        """The newest logged state as the state message it was queued as, with the newest seq
        issued (a receiver holding it already drops the copy); None with nothing logged. A
        publisher started on a running device (the admin page changed the broker, the desk's
        name or its topics) has sent no state itself, and without this its heartbeats and
        its re-publish at connection carried none: the new desk showed "Waiting for a first
        reading" until the student's state next changed, hours later for a steady one.
        ``same(older, newer)``: whether an older state's message said the same as the newest
        (then the state began with it; the last ``RUN_LOOKED_AT`` rows are looked at)."""
        rows = self.store.query("SELECT t, level, grp, emotion FROM state_changes ORDER BY t DESC, id DESC LIMIT ?",
                                (RUN_LOOKED_AT if same else 1,))
        if not rows:
            return None
        issued = self.store.query("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'")

        def body(row) -> dict:
            return {"level": row["grp"], "label": row["level"], "since": row["t"], "emotion": row["emotion"]}
        newest = body(rows[0])
        for row in rows[1:]:
            if not same or not same(body(row), newest):
                break
            newest["since"] = row["t"]
        return Message(issued[0][0] if issued else 0, newest["since"], "state", newest)
