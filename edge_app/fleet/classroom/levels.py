"""The levels a desk's state may have, in the order the instructor needs them, and the
page's own words for a desk, which no desk may send (``messages.parse_state``)."""
from __future__ import annotations

LEVELS = ("Not engaged", "Distracted", "Absent", "Paused", "Present", "Partially engaged", "Engaged")
# Paused: the student's privacy switch; Present: a face whose expression cannot be read
ATTENTION = {level: rank for rank, level in enumerate(LEVELS)}  # lower: needs the instructor sooner
ALERT_LEVELS = ("Not engaged", "Distracted")
WAITING = "Waiting for a first reading"  # an online desk with no state yet (just started): its count and tile
# A desk this service has not heard yet whose stored copies on the broker say it was online when it last spoke
# (its retained "online": no will was sent) and what it showed: at a start of this service every desk of a class
# in progress showed "Offline" until its next heartbeat (up to 30 s), and "Remove the offline desks" offered to
# take the whole class off the page. It is "Checking" (not online, never alerting: the stored "online" of a desk
# that died with a crashed broker looks the same) until it is heard, or its heartbeat (without one, its next
# minute row) is overdue (``Classroom._check``); then Offline. Its retained "offline", or none, is Offline at once; a
# reconnection of this service checks it afresh, as an online desk's silence is timed from it.
CHECKING = "Checking"
# the count of online desks on a level this page does not know: under the desk's own words, one desk's account
# put "Fire alarm evacuate now" in the instructor's count line (classroom.js says the level, marked unknown)
UNKNOWN = "Unknown state"
PAGE_STATES = (WAITING, "Offline", UNKNOWN, CHECKING)  # the page's own words for a desk, never a level a desk may send

# The page's key (classroom.tpl, "What each state means"): every state a tile or a count can show, in the counts'
# order, with its colour and what it means. "Present" and "Checking" were named on the tiles and counts and explained
# nowhere: an instructor could not tell a face the model cannot read from a student present and fine, nor a desk
# being checked from one that is there. A state added to LEVELS or PAGE_STATES needs its words here (a test checks).
KEY = (
    ("Engaged", "the student's expression reads as engaged"),
    ("Partially engaged", "the expression reads as partly engaged (a confused look, for one)"),
    ("Present", "a face is at the desk, but its expression cannot be read (turned, blurred, badly lit): no sign either "
                "way, never an alert"),
    ("Paused", "the student has paused the camera: nothing is watched until they resume"),
    ("Absent", "no face at the desk, or the tile says why (the camera stopped, too dark to see); a long one is an empty seat, "
               "shown after the working desks"),
    ("Distracted", "the face has been turned away for a while: in \u201cNeeds attention\u201d after the time set there"),
    ("Not engaged", "the expression reads as not engaged: in \u201cNeeds attention\u201d after the time set there"),
    (UNKNOWN, "a level this page does not know (a newer desk\u2019s): update the classroom service"),
    (WAITING, "the desk is on and has sent no level yet (it has just started)"),
    (CHECKING, "this page has just started and has not heard the desk yet; the broker says it was online when it last "
               "spoke: it shows its level once heard, or \u201cOffline\u201d if it stays silent"),
    ("Offline", "the desk is not connected (switched off, no network): \u201clast:\u201d says what it showed"),
)
