"""The engagement tracker on synthetic probability vectors (no model needed): smoothing
independent of frame rate, hysteresis, Distracted and Absent; and the per-minute
aggregates that keep the SD card from being written every frame."""
from __future__ import annotations

import numpy as np
import pytest

from edge_app import config as config_mod
from edge_app.engagement import (
    ABSENT,
    DISTRACTED,
    GROUPS,
    TOO_DARK,
    EngagementTracker,
    MinuteAggregator,
    Observation,
    group_of,
)
from edge_app.vision.classifier import KNOWN_LABELS

MAPPING = config_mod.defaults().engagement.mapping
HAPPY = "Engaged - likes the topic"
ANGRY = "Not engaged"


def onehot(label: str, weight: float = 0.9) -> np.ndarray:
    p = np.full(len(KNOWN_LABELS), (1 - weight) / (len(KNOWN_LABELS) - 1))
    p[KNOWN_LABELS.index(label)] = weight
    return p


def tracker(**kw) -> EngagementTracker:
    params = dict(absent_after_s=5.0, distracted_after_s=2.0, ema_half_life_s=1.0, min_hold_s=1.5, start=0.0)
    params.update(kw)
    return EngagementTracker(KNOWN_LABELS, MAPPING, **params)


def feed(tr: EngagementTracker, t0: float, t1: float, fps: float, kind, label=None) -> list[tuple[float, str]]:
    """Frames from t0 (inclusive) to t1 (exclusive); returns the (t, level) of each change."""
    changes = []
    for i in range(int(round((t1 - t0) * fps))):
        t = t0 + i / fps
        state, changed = tr.update(Observation(t, kind, onehot(label) if label else None))
        if changed:
            changes.append((t, state.level))
    return changes


def test_starts_absent_and_a_steady_face_becomes_a_state_after_min_hold():
    tr = tracker()
    assert tr.state.level == ABSENT
    changes = feed(tr, 0.0, 3.0, 10, "frontal", "happiness")
    assert len(changes) == 1
    t, level = changes[0]
    assert level == HAPPY and t == pytest.approx(1.5)
    assert tr.state.since == pytest.approx(0.0)  # the state began when the face did
    assert tr.state.group == "Engaged" and tr.state.emotion == "happiness"
    assert 0.5 < tr.state.confidence <= 1.0
    assert tr.state.probabilities["happiness"] == pytest.approx(tr.state.confidence, abs=1e-4)


@pytest.mark.parametrize("half_life", [0.0, 1.0])
def test_one_odd_frame_never_flips_the_state(half_life):
    """Even with no smoothing at all (half-life 0), a single odd frame - or a burst
    shorter than min_hold_s - leaves the shown state alone."""
    tr = tracker(ema_half_life_s=half_life)
    feed(tr, 0.0, 3.0, 10, "frontal", "happiness")
    assert tr.state.level == HAPPY
    for t in (3.0, 5.0):
        _, changed = tr.update(Observation(t, "frontal", onehot("anger", 1.0)))
        assert not changed
        assert feed(tr, t + 0.1, t + 2.0, 10, "frontal", "happiness") == []
    assert feed(tr, 7.0, 8.0, 10, "frontal", "anger") == []  # 1 s < min_hold_s
    assert tr.state.level == HAPPY


def test_a_sustained_change_flips_after_min_hold():
    tr = tracker(ema_half_life_s=0.0, min_hold_s=1.5)
    feed(tr, 0.0, 3.0, 10, "frontal", "happiness")
    changes = feed(tr, 3.0, 6.0, 10, "frontal", "anger")
    assert [level for _, level in changes] == [ANGRY]
    assert changes[0][0] == pytest.approx(4.5)
    assert tr.state.since == pytest.approx(3.0)
    assert tr.state.group == "Not engaged" and tr.state.emotion == "anger"
    changes = feed(tr, 6.0, 9.0, 10, "frontal", "fear")
    assert [level for _, level in changes] == ["Partially engaged - confused"]


def test_profile_only_becomes_distracted():
    tr = tracker(distracted_after_s=2.0, min_hold_s=1.0)
    feed(tr, 0.0, 3.0, 10, "frontal", "neutral")
    assert tr.state.level == "Engaged - paying attention"
    # turned away: not before distracted_after_s, and shown once it has held min_hold_s
    changes = feed(tr, 3.0, 8.0, 10, "profile")
    assert [level for _, level in changes] == [DISTRACTED]
    t, _ = changes[0]
    last_frontal = 2.9
    assert t >= last_frontal + 2.0
    assert t == pytest.approx(last_frontal + 2.0 + 1.0, abs=0.11)
    assert tr.state.emotion is None and tr.state.probabilities == {}
    assert group_of(tr.state.level) == DISTRACTED


def test_a_short_look_away_is_not_distracted():
    tr = tracker(distracted_after_s=2.0, min_hold_s=1.0)
    feed(tr, 0.0, 3.0, 10, "frontal", "neutral")
    for start in (3.0, 5.5, 8.0):
        assert feed(tr, start, start + 1.5, 10, "profile") == []
        assert feed(tr, start + 1.5, start + 2.5, 10, "frontal", "neutral") == []
    assert tr.state.level == "Engaged - paying attention"


def test_no_face_becomes_absent():
    tr = tracker(absent_after_s=5.0, min_hold_s=1.0)
    feed(tr, 0.0, 3.0, 10, "frontal", "happiness")
    changes = feed(tr, 3.0, 12.0, 10, None)
    assert [level for _, level in changes] == [ABSENT]
    t, _ = changes[0]
    assert 2.9 + 5.0 <= t <= 2.9 + 5.0 + 1.0 + 0.11
    assert tr.state.emotion is None
    # a face coming back starts afresh (old probabilities are forgotten)
    changes = feed(tr, 12.0, 14.0, 10, "frontal", "sadness")
    assert [level for _, level in changes] == [ANGRY]  # sadness -> "Not engaged"


def test_no_face_in_frames_too_dark_is_absent_too_dark_to_see():
    """Frames the capture loop finds too dark for a face (``Observation.dark``) were "Absent",
    an empty chair. They are "Absent - too dark to see", of the Absent group, with no emotion,
    dated as Absent is; lights on again over an empty desk make it plain "Absent", and a face
    its level again (an unsure one "Present", as after Absent)."""
    tr = tracker(absent_after_s=5.0, min_hold_s=1.0, min_confidence=0.5)
    feed(tr, 0.0, 3.0, 10, "frontal", "happiness")
    changes = [(t, tr.state.since) for t in np.arange(3.0, 12.0, 0.1) if tr.update(Observation(t, None, dark=True))[1]]
    assert tr.state.level == TOO_DARK and tr.state.group == ABSENT and tr.state.emotion is None
    assert changes == [(pytest.approx(8.9), pytest.approx(7.9))]  # 5 s after the last face, shown 1 s later
    assert [level for _, level in feed(tr, 12.0, 14.0, 10, None)] == [ABSENT]  # the lights on: an empty chair
    assert [level for _, level in feed(tr, 14.0, 16.0, 10, "frontal", "sadness")] == [ANGRY]
    feed(tr, 16.0, 24.0, 10, None)
    for t in np.arange(24.0, 26.0, 0.1):
        tr.update(Observation(t, None, dark=True))
    assert tr.state.level == TOO_DARK
    for t in np.arange(26.0, 28.0, 0.1):
        tr.update(Observation(t, "frontal", onehot("anger", 0.3)))
    assert tr.state.level == "Present"


def test_frames_near_the_darkness_line_still_lead_to_absent():
    """Frames without a face whose light is near the loop's darkness line, one dark and the
    next not: "Absent" and "too dark" are one change under way, or each restarted the
    other's hold and the student's last level stayed on for good."""
    tr = tracker(absent_after_s=5.0, min_hold_s=1.0)
    feed(tr, 0.0, 3.0, 10, "frontal", "happiness")
    for i in range(90):
        tr.update(Observation(3.0 + i / 10, None, dark=i % 2 == 0))
    assert tr.state.group == ABSENT and tr.state.since == pytest.approx(7.9)


def test_a_short_gap_keeps_the_state():
    tr = tracker(absent_after_s=5.0)
    feed(tr, 0.0, 3.0, 10, "frontal", "happiness")
    assert feed(tr, 3.0, 6.0, 10, None) == []  # 3 s without a face < absent_after_s
    assert feed(tr, 6.0, 8.0, 10, "frontal", "happiness") == []
    assert tr.state.level == HAPPY


def test_frames_without_a_face_now_and_then_do_not_hold_back_a_change():
    """A detector that misses one frame in a few (or a face lost between detections)
    says nothing about the level: the change under way keeps its start. Before, each
    such frame restarted min_hold_s, so a student at the desk stayed "Absent" (and an
    angry one "Engaged") for as long as one frame in every min_hold_s was missed."""
    tr = tracker(ema_half_life_s=0.0, min_hold_s=1.5)
    changes = []
    for i in range(60):  # 6 s at 10 fps, every 4th frame without a face
        t = i / 10
        state, changed = tr.update(Observation(t, None if i % 4 == 2 else "frontal", onehot("happiness")))
        if changed:
            changes.append((t, state.level))
    assert changes == [(pytest.approx(1.5), HAPPY)] and tr.state.since == pytest.approx(0.0)
    changes = []
    for i in range(60, 120):
        t = i / 10
        state, changed = tr.update(Observation(t, None if i % 4 == 2 else "frontal", onehot("anger")))
        if changed:
            changes.append((t, state.level))
    assert changes == [(pytest.approx(7.5), ANGRY)] and tr.state.since == pytest.approx(6.0)


def test_a_gap_longer_than_the_hold_starts_the_hold_again():
    tr = tracker(ema_half_life_s=0.0, min_hold_s=1.5)
    feed(tr, 0.0, 3.0, 10, "frontal", "happiness")
    assert feed(tr, 3.0, 3.5, 10, "frontal", "anger") == []
    assert feed(tr, 3.5, 5.5, 10, None) == []  # 2 s without a face: longer than min_hold_s
    changes = feed(tr, 5.5, 8.0, 10, "frontal", "anger")
    assert changes == [(pytest.approx(7.0), ANGRY)] and tr.state.since == pytest.approx(5.5)


def test_a_face_seen_cancels_a_coming_absent_and_a_frontal_one_a_coming_distracted():
    tr = tracker(min_hold_s=3.0, absent_after_s=5.0, distracted_after_s=2.0, min_confidence=0.5)
    unsure = onehot("anger", 0.3)
    feed(tr, 0.0, 4.0, 10, "frontal", "happiness")
    assert feed(tr, 4.0, 9.5, 10, None) == []  # Absent is the candidate from 8.9
    tr.update(Observation(9.5, "frontal", unsure))  # the student is back (the model unsure of the face)
    changes = feed(tr, 9.6, 20.0, 10, None)  # and gone again: Absent counts from 9.5
    assert changes == [(pytest.approx(17.5), ABSENT)] and tr.state.since == pytest.approx(14.5)

    tr = tracker(min_hold_s=3.0, distracted_after_s=2.0, min_confidence=0.5)
    feed(tr, 0.0, 4.0, 10, "frontal", "happiness")
    assert feed(tr, 4.0, 6.5, 10, "profile") == []  # Distracted is the candidate from 5.9
    tr.update(Observation(6.5, "frontal", unsure))  # looks back at the screen
    changes = feed(tr, 6.6, 14.0, 10, "profile")
    assert changes == [(pytest.approx(11.5), DISTRACTED)] and tr.state.since == pytest.approx(8.5)


@pytest.mark.parametrize("fps", [5, 30])
def test_smoothing_is_independent_of_frame_rate(fps):
    """The EMA has a half-life in seconds: after switching from one emotion to another
    the average crosses over one half-life later, at any frame rate."""
    tr = tracker(ema_half_life_s=1.0, min_hold_s=0.0)
    feed(tr, 0.0, 5.0, fps, "frontal", "happiness")
    tr.update(Observation(5.0, "frontal", onehot("happiness")))  # the average is all happiness now
    # 0.6 s of anger later, still happy: happiness weighs 0.9 * 0.5**0.6 + (0.1 / 7) * (1 - 0.5**0.6)
    steps = int(round(0.6 * fps))
    changes = [tr.update(Observation(5.0 + k / fps, "frontal", onehot("anger")))[1] for k in range(1, steps + 1)]
    expected = 0.9 * 0.5 ** 0.6 + (0.1 / 7) * (1 - 0.5 ** 0.6)
    assert tr.state.level == HAPPY and not any(changes)
    assert tr.state.probabilities["happiness"] == pytest.approx(expected, abs=2e-4)
    # the flip to "Not engaged" comes one half-life (1 s) after the switch, whatever the fps
    changes = feed(tr, 5.0 + (steps + 1) / fps, 8.0, fps, "frontal", "anger")
    assert [level for _, level in changes] == [ANGRY]
    assert 6.0 - 1e-9 <= changes[0][0] <= 6.0 + 1.0 / fps + 1e-9


def test_from_config_and_a_mapping_with_gaps(tmp_path):
    empty = tmp_path / "c.toml"
    empty.write_text('[engagement]\nmin_hold_s = 0.5\n[engagement.mapping]\nneutral = "Partially engaged - bored"\n')
    cfg = config_mod.load(empty)
    tr = EngagementTracker.from_config(cfg, KNOWN_LABELS, start=100.0)
    assert tr.min_hold_s == 0.5 and tr.state.since == 100.0
    changes = feed(tr, 100.0, 101.0, 10, "frontal", "neutral")
    assert [level for _, level in changes] == ["Partially engaged - bored"]
    with pytest.raises(ValueError, match="contempt"):
        EngagementTracker(KNOWN_LABELS, {k: v for k, v in MAPPING.items() if k != "contempt"})


def test_group_of():
    assert group_of("Engaged - likes the topic") == "Engaged"
    assert group_of("Partially engaged - confused") == "Partially engaged"
    assert group_of("Not engaged") == "Not engaged"
    assert group_of(DISTRACTED) == DISTRACTED and group_of(ABSENT) == ABSENT
    for level in MAPPING.values():
        assert group_of(level) in GROUPS
    with pytest.raises(ValueError):
        group_of("Bored")


# ------------------------------------------------------------------ minute aggregates
def test_one_row_per_minute_never_per_frame():
    agg = MinuteAggregator()
    rows, frames = [], 0
    t = 6000.0  # a minute boundary (100 * 60)
    while t < 6000.0 + 150.0:
        group = "Engaged" if t < 6090.0 else "Absent"
        row = agg.add(t, group, face_seen=group == "Engaged")
        frames += 1
        if row:
            rows.append(row)
        t += 0.1
    last = agg.flush()
    assert last is not None
    rows.append(last)
    assert frames == 1500
    assert [r["minute"] for r in rows] == [6000, 6060, 6120]
    assert [r["frames"] for r in rows] == pytest.approx([600, 600, 300], abs=1)
    first, second, third = rows
    assert first["Engaged"] == pytest.approx(60.0, abs=0.2) and first["Absent"] == 0
    assert second["Engaged"] == pytest.approx(30.0, abs=0.2) and second["Absent"] == pytest.approx(30.0, abs=0.2)
    assert third["Absent"] == pytest.approx(30.0, abs=0.2) and third["faces"] == 0
    assert first["faces"] == first["frames"]
    assert agg.flush() is None  # nothing new since the last flush


def test_the_time_between_two_minutes_frames_is_split_at_the_minute_end():
    # the last frame of 23:59 at 59.5 s, the next 3 s later: 0.5 s is the old day's, 2.5 s the new day's
    midnight = 20_000 * 86_400.0
    agg = MinuteAggregator()
    for k in range(120):  # a frame every 0.5 s from 23:59:00 to 23:59:59.5
        assert agg.add(midnight - 60.0 + k * 0.5, "Engaged", True) is None
    before = agg.add(midnight + 2.5, "Absent", False)
    assert before is not None and before["minute"] == midnight - 60
    assert before["Engaged"] == pytest.approx(60.0)  # 59.5 s, then 0.5 s to midnight: never more than the minute
    for k in range(1, 56):  # on to 00:00:30
        agg.add(midnight + 2.5 + k * 0.5, "Absent", False)
    after = agg.flush()
    assert after["minute"] == midnight
    assert after["Engaged"] == pytest.approx(2.5) and after["Absent"] == pytest.approx(27.5)


def test_a_long_stall_counts_at_most_five_seconds():
    agg = MinuteAggregator()
    agg.add(60.0, "Engaged", True)
    agg.add(90.0, "Engaged", True)  # the loop stalled 30 s (camera fault)
    row = agg.flush()
    assert row["Engaged"] == pytest.approx(5.0) and row["frames"] == 2


def test_a_wall_clock_set_forward_is_no_time_spent():
    """NTP sets a Pi's clock forward after it starts: the jump counted as five seconds of
    the state shown (the gap cap). Spans are on the monotonic clock now."""
    agg = MinuteAggregator()
    for k in range(20):  # 10 s at 2 fps, then the clock jumps an hour ahead between two frames
        agg.add(6000.0 + k * 0.5, "Engaged", True, mono_t=100.0 + k * 0.5)
    before = agg.add(6000.0 + 3600.0 + 10.0, "Engaged", True, mono_t=110.0)
    assert before["Engaged"] == pytest.approx(9.5)  # its frames' 9.5 s, not 9.5 + 5
    agg.add(6000.0 + 3600.0 + 10.5, "Engaged", True, mono_t=110.5)
    assert agg.flush()["Engaged"] == pytest.approx(1.0)  # the half second over the jump, and one after


def _rows_across_a_step_back(back_s: float) -> list[dict]:
    """A frame a second for 70 s, the wall clock set back ``back_s``, then 70 s more."""
    agg = MinuteAggregator()
    rows = []
    for k in range(140):
        wall = 6000.0 + k - (back_s if k >= 70 else 0.0)
        row = agg.add(wall, "Engaged", True, mono_t=float(k))
        if row:
            rows.append(row)
    rows.append(agg.flush())
    return rows


def test_a_wall_clock_set_back_a_little_never_adds_to_a_minute_already_written():
    """Set back 30 s, the clock named a minute already written, and its row was added to
    again in the database. A small step back keeps the current minute instead."""
    rows = _rows_across_a_step_back(30.0)
    assert [r["minute"] for r in rows] == [6000, 6060]  # never 6000 again
    assert sum(r["Engaged"] for r in rows) == pytest.approx(139.0)  # every second counted once
    assert max(r["Engaged"] for r in rows) <= 90.0  # the held row: its minute and the 30 s repeated


def test_a_wall_clock_set_back_far_gives_rows_of_a_minute_each():
    """Set back ten minutes, one held row grew to ten minutes (which the classroom refuses,
    and nothing was published meanwhile): the rows follow the wall clock instead."""
    rows = _rows_across_a_step_back(600.0)
    assert [r["minute"] for r in rows] == [6000, 6060, 5460, 5520]
    assert sum(r["Engaged"] for r in rows) == pytest.approx(139.0)
    assert all(r["Engaged"] <= 60.0 for r in rows)


def test_a_change_of_expression_within_a_level_keeps_the_moment_its_words_began():
    """A viewer who may not see the emotion is shown "Engaged", not "Engaged - likes the
    topic"; a ``since`` that restarted at "paying attention" -> "likes the topic" still told
    them when the expression changed. ``words_since`` keeps the moment the level's words
    without the emotion began, and restarts when those change; /api/state gives it to them."""
    from edge_app.runtime.snapshot import StateSnapshot

    tr = tracker()
    changes = feed(tr, 0.0, 5.0, 10, "frontal", "neutral")
    assert changes[-1][1] == "Engaged - paying attention"
    engaged_at = tr.state.since
    changes = feed(tr, 5.0, 12.0, 10, "frontal", "happiness")
    assert changes[-1][1] == HAPPY and tr.state.since > engaged_at
    assert tr.state.words_since == engaged_at  # still "Engaged" to them
    shown = StateSnapshot.of(tr.state, t=12.0).public(0.0, 12.0, with_emotion=False)
    assert shown["level"] == "Engaged" and shown["since"] == engaged_at and shown["emotion"] is None
    assert shown["for_s"] == pytest.approx(12.0 - engaged_at, abs=0.05)
    assert StateSnapshot.of(tr.state, t=12.0).public(0.0, 12.0)["since"] == tr.state.since  # an admin's
    changes = feed(tr, 12.0, 20.0, 10, "frontal", "anger")
    assert changes[-1][1] == ANGRY and tr.state.words_since == tr.state.since  # new words: a new moment


@pytest.mark.parametrize("hold, every_s", [(0.5, 1.0), (1.5, 2.0)])
def test_frames_further_apart_than_the_hold_still_change_the_state(hold, every_s):
    """camera.fps = 1 with min_hold_s = 0.5 (both allowed), or a loop slowed below one frame
    per min_hold_s: each frame that showed the new level restarted its count, as if a gap
    without a word had come between, so the state never left "Absent" (nor came back to it)."""
    tr = tracker(ema_half_life_s=0.0, min_hold_s=hold)
    changes = feed(tr, 0.0, 10 * every_s, 1 / every_s, "frontal", "happiness")
    assert changes == [(pytest.approx(every_s), HAPPY)] and tr.state.since == pytest.approx(0.0)
    changes = feed(tr, 10 * every_s, 30 * every_s, 1 / every_s, None)
    assert [level for _, level in changes] == [ABSENT]


def test_a_camera_fault_between_two_odd_frames_does_not_change_the_state():
    """Frames further apart than the hold count as following each other, but not across a
    camera fault: one angry frame, four seconds without a camera, one more angry frame
    changed "Engaged" to "Not engaged", dated from before the fault."""
    tr = tracker(ema_half_life_s=0.0, min_hold_s=1.5)
    feed(tr, 0.0, 3.0, 10, "frontal", "happiness")
    assert tr.state.level == HAPPY
    assert not tr.update(Observation(3.0, "frontal", onehot("anger")))[1]
    tr.gap()  # the capture loop's camera fault
    state, changed = tr.update(Observation(7.0, "frontal", onehot("anger")))
    assert not changed and state.level == HAPPY
    feed(tr, 7.1, 9.0, 10, "frontal", "anger")  # the hold counted from the first frame after the fault
    assert tr.state.level == ANGRY and tr.state.since == pytest.approx(7.0)
