"""Times as this device's wall clock reads them, written for people.

One rule for every page, message and log-in answer: a time is shown in the device's zone,
and the zone is named when it is not the one in force now, so a summer row read in winter
says "CEST" and the hour the clocks go back (02:00-03:00 twice) is told apart.
"""
from __future__ import annotations

import time


def local_time(t: float, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    """``t`` (epoch seconds) in this device's zone as ``fmt``, plus the zone's name when it
    differs from the one in force now (the page's heading names that one)."""
    when = time.localtime(t)
    text = time.strftime(fmt, when)
    return text if when.tm_zone == time.strftime("%Z") else f"{text} {when.tm_zone}"
