"""What a desk may send, and how a message is checked before anything of it is shown.

Anyone who may publish to the broker can send anything, so a message is applied only
when it is what a desk sends: a known level, a finite time, a device id a device may
have, a small payload; and the number of desks is bounded (``model.MAX_DESKS``). A desk's own
account may still send any words it likes (its ACL lets it write only its own topics, not
choose what it says there): a name or label keeps no invisible or direction-changing
character (``shown_text``), and a level the page does not know is counted as ``UNKNOWN``, never
under its own words, so no desk can put an announcement in the count line.
"""
from __future__ import annotations

import json
import math
import re
import unicodedata

from edge_app.fleet.classroom.levels import PAGE_STATES

# a level this page does not know (a newer desk's: "Present" was one) is applied, last in the order, never an
# alert, and shown marked as unknown, counted as ``UNKNOWN``: an older page refused such desks' every state and
# heartbeat, showed their last known level, then "Offline", though they were there
LEVEL_TEXT = re.compile(r"[A-Za-z][A-Za-z -]{0,39}")
DEVICE_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")  # what a device's mqtt.device_id may be (edge_app.fleet.settings)
MAX_PAYLOAD = 65536  # bytes: a desk's state message is about 200 (labels come from its config, unbounded there)
# what a desk's name or label loses (``shown_text``): invisible format characters (a right-to-left override turns
# "1 taes" into "seat 1", a zero-width space makes a copy of another desk's name differ from it unseen), control
# characters, lone surrogates; line and paragraph separators (as all white space) become one space
HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
# letters that draw nothing (Hangul fillers, the blank braille cell): "Row 1, seat 1" plus one of them looked
# like another desk's name and was not told apart from it
BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")
MAX_MARKS = 3  # combining marks on one character: more draw over the tiles around it
MAX_HEARTBEAT_S = 3600.0  # the longest interval a device may announce (config: mqtt.heartbeat_s)
# the times a desk may send (Unix seconds: 1970 to 2286, a Pi without a clock starts at 1970);
# each alone finite was not enough: 1.7e308 plus a clock correction is infinity, which no page reads as JSON
LATEST_TIME = 1e10


def parse_json(payload: bytes):
    """The payload as JSON, or None when it is none (or too deep to parse)."""
    try:
        return json.loads(payload)
    except (ValueError, RecursionError):
        return None


def parse_state(data) -> tuple[str, float, int] | None:
    """(level, since, seq) of a state as a desk sends it, or None."""
    try:
        level, since, seq = data["level"], float(data["since"]), int(data["seq"])
    except (KeyError, TypeError, ValueError, OverflowError):
        return None
    if not isinstance(level, str) or not LEVEL_TEXT.fullmatch(level) or level in PAGE_STATES or not valid_desk_time(since):
        return None
    return level, since, seq


def shown_text(value, limit: int) -> str:
    """A desk's name or label as the page may show it: text, without the characters of
    ``HIDDEN_CATEGORIES`` or ``BLANK_LETTERS`` (a desk's account can send any), white space as single spaces, at
    most ``MAX_MARKS`` combining marks on a character, cut to ``limit``; anything else (a
    list, a number, null: no desk sends one) is none, never shown as Python writes it."""
    if not isinstance(value, str):
        return ""
    kept, marks = [], 0
    for char in value[:8 * limit]:  # what a name padded with thousands of invisible characters needs looked at
        if char.isspace():
            kept.append(" ")
            marks = 0
            continue
        category = unicodedata.category(char)
        if category in HIDDEN_CATEGORIES or char in BLANK_LETTERS:
            continue
        marks = marks + 1 if category in ("Mn", "Me") else 0
        if marks <= MAX_MARKS:
            kept.append(char)
    return " ".join("".join(kept).split())[:limit].rstrip()


def heartbeat_interval(value) -> float | None:
    """A heartbeat interval as a desk announces it (seconds), or None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        value = float(value)
    except OverflowError:
        return None
    return value if math.isfinite(value) and 0 < value <= MAX_HEARTBEAT_S else None


def valid_desk_time(t: float) -> bool:
    """A time a desk's clock can show (NaN and infinity are not: broken JSON)."""
    return 0.0 <= t <= LATEST_TIME
