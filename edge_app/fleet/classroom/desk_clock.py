"""A desk's clock against ours: a Pi no time server has set yet runs from the time it last
saved, days off, and a time server may step it at any moment. Each live message's ``sent``
reads the difference (``skew_reading``); the times a desk sends are dated on our clock by the
skew in use (``time_correction``) before they are shown or compared with ours."""
from __future__ import annotations

from typing import TYPE_CHECKING

from edge_app.fleet.classroom.messages import valid_desk_time

if TYPE_CHECKING:
    from edge_app.fleet.classroom.desk import Desk  # desk.py imports this module: for the type only

CLOCK_SKEW_S = 60.0  # a desk whose clock is further off than this from ours has its times corrected (and shown)


def skew_reading(sent, now: float) -> float | None:
    """Our clock minus the desk's, from the ``sent`` time of a message just received
    (its own clock as it left; delivery takes milliseconds), or None without one."""
    if isinstance(sent, bool) or not isinstance(sent, (int, float)):
        return None
    try:
        sent = float(sent)  # an integer too large for a float raises
    except OverflowError:
        return None
    return now - sent if valid_desk_time(sent) else None


def measure_clock(desk: Desk, skew: float | None) -> None:
    """A live message read the desk's clock (``skew``), before anything it carries is dated."""
    doubted = desk.pending_skew is not None
    if _observe_skew(desk, skew):
        _redate(desk)
    elif doubted and desk.pending_skew is None and desk.disengaged_unsure and desk.device_disengaged is not None:
        # the skew in use holds: the reading that began the stretch came with a message paho held back
        desk.disengaged_since = desk.device_disengaged + time_correction(desk, desk.disengaged_sample)
        desk.disengaged_unsure = False


def _observe_skew(desk: Desk, sample: float | None) -> bool:
    """Take one live message's reading of our clock minus the desk's; True when the skew
    used for the desk's times changed. The first reading is taken at once (a Pi days
    behind must not show "Not engaged for 72 h"); after that, a different one is taken
    only when the next message agrees: a message paho re-sent after a dropped link
    carries its old ``sent`` and would otherwise pass for a clock 96 s off."""
    if sample is None:
        return False
    value = sample if abs(sample) > CLOCK_SKEW_S else 0.0
    if not desk.skew_known:
        desk.skew_known, desk.pending_skew = True, None
        changed, desk.clock_skew = value != desk.clock_skew, value
        return changed
    if abs(sample - desk.clock_skew) <= CLOCK_SKEW_S:
        desk.pending_skew = None
        return False
    if desk.pending_skew is not None and abs(sample - desk.pending_skew) <= CLOCK_SKEW_S:
        desk.pending_skew, desk.clock_skew = None, value
        return True
    desk.pending_skew = sample
    return False


def _redate(desk: Desk) -> None:
    """The skew in use changed: each stored time sent under the clock now measured is dated
    again by it (a retained copy, applied before any live reading; a message read as the
    first reading was outvoted by). One sent under another clock keeps its time on ours: a
    Pi started days behind, then stepped by a time server, began its stretch before the
    step; re-dated by the new skew it began days ago, "Needs attention" at once."""
    skew = desk.clock_skew

    def now_measured(sample: float | None) -> bool:
        return sample is None or abs(sample - skew) <= CLOCK_SKEW_S

    if desk.device_since is not None and now_measured(desk.state_sample):
        desk.since = desk.device_since + skew
    if desk.device_disengaged is not None and now_measured(desk.disengaged_sample):
        desk.disengaged_since, desk.disengaged_unsure = desk.device_disengaged + skew, False


def time_correction(desk: Desk, sample: float | None, latest: bool = False) -> float:
    """What to add to a time the desk sent with a message that read ``sample`` (``skew_reading``),
    after ``_observe_skew`` has taken it. A reading the skew in use disagrees with is
    either a message paho held back (``sent`` old: the reading too high, the skew right) or
    a clock a time server just stepped (the reading right), told apart only by the next
    message. The reading never dates a time later than the message came: below the skew
    (a clock stepped forward) it is taken, so that is not "for -72 h" until then; above it,
    the skew, so a late message keeps its time, or with ``latest`` the reading, for the
    start of a stretch: a clock set back must not make it begin days ago ("Needs attention")."""
    skew = desk.clock_skew
    if sample is None or abs(sample - skew) <= CLOCK_SKEW_S:
        return skew
    reading = sample if abs(sample) > CLOCK_SKEW_S else 0.0
    return reading if latest else min(skew, reading)
