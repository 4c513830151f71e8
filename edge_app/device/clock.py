"""Whether the system clock has been set by a time server.

A Raspberry Pi has no battery-backed clock: it starts at the time it last saved
(fake-hwclock) or in 1970, and is right only once systemd-timesyncd (or chrony, ntpd)
has reached a time server. Until then every time the device logs is wrong, and a school
network that blocks the public NTP pool keeps it wrong. The kernel knows: ``adjtimex``
answers ``TIME_ERROR`` while the clock is unsynchronised (a time daemon clears that when
it disciplines the clock). Reading it changes nothing and needs no privilege.
"""
from __future__ import annotations

import ctypes
import sys

TIME_ERROR = 5  # adjtimex's answer while STA_UNSYNC is set (linux/timex.h)
TIMEX_BYTES = 512  # struct timex is 208 bytes on 64-bit Linux; modes = 0 (zeroed) only reads

UNSYNCHRONIZED = "no time server has set the clock since this device started, so the times it logs may be wrong"
WHAT_TO_DO = ("connect it to the network; where the school blocks public time servers, put the school's own in "
              "/etc/systemd/timesyncd.conf (NTP=ntp.school.lan) and run sudo systemctl restart systemd-timesyncd")


def read_state(adjtimex=None) -> int | None:
    """The kernel clock state (0-5) from ``adjtimex``, or None where there is none."""
    if adjtimex is None:
        if not sys.platform.startswith("linux"):
            return None
        try:
            adjtimex = ctypes.CDLL(None, use_errno=True).adjtimex
        except (OSError, AttributeError):
            return None
    buf = ctypes.create_string_buffer(TIMEX_BYTES)
    state = adjtimex(buf)
    return None if state < 0 else int(state)


def synchronized() -> bool | None:
    """True when a time server has set the clock, False while not, None when this system
    cannot tell (not Linux)."""
    state = read_state()
    return None if state is None else state != TIME_ERROR


def rule(trusted: bool):
    """What the retention purge and quiet hours ask before going by the clock: whether a time
    server has set it, or always yes where ``store.trust_device_clock`` says the device's own
    clock keeps time (a battery-backed one on a network without a time server, where
    waiting kept every record for ever)."""
    return (lambda: True) if trusted else (lambda: synchronized())  # looked up at each call
