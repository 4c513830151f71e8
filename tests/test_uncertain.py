"""No invented records: a face whose emotion the model is unsure of (top probability
below ``engagement.min_confidence``) leaves the shown state as it is, and uploads say
"Uncertain" for it instead of a guessed engagement level. The face says the student is
there, though: after "Absent" or "Distracted" it leads to "Present"."""
from __future__ import annotations

import numpy as np
import pytest

from edge_app import config as config_mod
from edge_app.engagement import ABSENT, DISTRACTED, PRESENT, UNCERTAIN, EngagementTracker, Observation
from edge_app.vision.classifier import KNOWN_LABELS
from tests.conftest import login

MAPPING = config_mod.defaults().engagement.mapping


def probs(label: str, weight: float) -> np.ndarray:
    p = np.full(len(KNOWN_LABELS), (1 - weight) / (len(KNOWN_LABELS) - 1))
    p[KNOWN_LABELS.index(label)] = weight
    return p


def run(tr: EngagementTracker, t0: float, t1: float, p: np.ndarray) -> list[str]:
    changes = []
    for i in range(int((t1 - t0) * 10)):
        state, changed = tr.update(Observation(t0 + i / 10, "frontal", p))
        if changed:
            changes.append(state.level)
    return changes


@pytest.mark.parametrize("min_confidence,expected", [(0.4, []), (0.0, ["Not engaged"])])
def test_unsure_faces_leave_the_state_unchanged(min_confidence, expected):
    tr = EngagementTracker(KNOWN_LABELS, MAPPING, min_hold_s=1.0, absent_after_s=5.0, min_confidence=min_confidence)
    assert run(tr, 0, 3, probs("happiness", 0.9)) == ["Engaged - likes the topic"]
    # four seconds of an unsure "anger" (30%, the rest spread): a guess, not a state
    assert run(tr, 3, 7, probs("anger", 0.3)) == expected
    if not expected:
        assert tr.state.level == "Engaged - likes the topic" and tr.state.level != ABSENT  # the face is still there
        assert tr.state.emotion == "happiness"


def test_a_level_no_sure_frame_has_shown_for_absent_after_s_gives_way_to_present():
    """Ten unreadable minutes kept "Not engaged": a disengagement record (and the buzzer)
    from a face whose expression nobody could read. A level lasts as long without a sure
    frame as it does without a face: ``absent_after_s``."""
    tr = EngagementTracker(KNOWN_LABELS, MAPPING, min_hold_s=1.0, absent_after_s=5.0, ema_half_life_s=0.0,
                           min_confidence=0.5)
    changes = []
    for i in range(200):
        t = i / 10
        state, changed = tr.update(Observation(t, "frontal", probs("sadness", 0.9 if t < 3 else 0.3)))
        if changed:
            changes.append((t, state.level))
    # the last sure frame at 2.9 s: "Present" pends from 7.9 s and shows after the hold
    assert changes == [(pytest.approx(1.0), "Not engaged"), (pytest.approx(8.9), PRESENT)]
    assert tr.state.since == pytest.approx(7.9) and tr.state.emotion is None


def test_unsure_frames_now_and_then_do_not_hold_back_a_sure_change():
    """An unsure frame changes nothing, including the change under way: a sad student
    read at 70% on four frames in five and at 45% on the fifth is shown "Not engaged"
    (before, each unsure frame restarted min_hold_s and the LED stayed "Engaged")."""
    tr = EngagementTracker(KNOWN_LABELS, MAPPING, min_hold_s=1.5, ema_half_life_s=0.0, min_confidence=0.5)
    assert run(tr, 0, 3, probs("happiness", 0.9)) == ["Engaged - likes the topic"]
    changes = []
    for i in range(50):
        t = 3 + i / 10
        state, changed = tr.update(Observation(t, "frontal", probs("sadness", 0.45 if i % 5 == 4 else 0.7)))
        if changed:
            changes.append((t, state.level))
    assert changes == [(pytest.approx(4.5), "Not engaged")] and tr.state.since == pytest.approx(3.0)


def test_an_unsure_face_of_a_student_logged_absent_is_present():
    """A student in bad light was logged "Absent" for as long as the light stayed bad: the
    face is there, only its expression is unknown. "Present" says so, and carries no emotion."""
    tr = EngagementTracker(KNOWN_LABELS, MAPPING, min_hold_s=1.0, ema_half_life_s=0.0, min_confidence=0.5)
    assert tr.state.level == ABSENT
    changes = []
    for i in range(50):
        state, changed = tr.update(Observation(i / 10, "frontal", probs("anger", 0.3)))
        if changed:
            changes.append((i / 10, state.level))
    assert changes == [(pytest.approx(1.0), PRESENT)] and tr.state.since == 0.0
    assert tr.state.emotion is None and tr.state.probabilities == {}  # a guess is no record
    # the light comes back: the expression is read again
    assert run(tr, 5, 8, probs("happiness", 0.9)) == ["Engaged - likes the topic"]
    # unsure again: the level read stays a while (absent_after_s, 5 s by default)
    assert run(tr, 8, 12, probs("anger", 0.3)) == []


@pytest.mark.parametrize("every_s", [None, 5.0])
def test_a_rare_sure_frame_in_bad_light_does_not_hold_absent_for_good(every_s):
    """One confident frame now and then, in bad light, began a level that never held, and
    unsure frames kept waiting for it: the student stayed "Absent" for ten minutes. A level
    pends only while frames show it (within ``min_hold_s``)."""
    tr = EngagementTracker(KNOWN_LABELS, MAPPING, min_hold_s=1.5, ema_half_life_s=0.0, min_confidence=0.5)
    uniform = np.full(len(KNOWN_LABELS), 1 / len(KNOWN_LABELS))
    changes = []
    for i in range(15 * 60):  # a minute at 15 fps
        t = i / 15
        sure = i == 0 or (every_s is not None and i % int(every_s * 15) == 0)
        state, changed = tr.update(Observation(t, "frontal", probs("happiness", 0.88) if sure else uniform))
        if changed:
            changes.append((round(t, 2), state.level))
    assert [level for _, level in changes] == [PRESENT] and changes[0][0] <= 3.2, changes


def test_an_unsure_face_turned_back_to_the_camera_ends_distracted():
    tr = EngagementTracker(KNOWN_LABELS, MAPPING, min_hold_s=1.0, distracted_after_s=2.0, min_confidence=0.5)
    run(tr, 0, 3, probs("happiness", 0.9))
    for i in range(40):
        tr.update(Observation(3 + i / 10, "profile"))
    assert tr.state.level == DISTRACTED
    assert run(tr, 7, 10, probs("anger", 0.3)) == [PRESENT]


def test_sure_frames_among_unsure_ones_lead_to_their_level_not_to_present():
    """A face read at 70% on one frame in three and unsure on the others: the sure frames
    say what it shows, and the unsure ones between do not restart their hold (nor does the
    student stop at "Present" on the way)."""
    tr = EngagementTracker(KNOWN_LABELS, MAPPING, min_hold_s=1.5, ema_half_life_s=0.0, min_confidence=0.5)
    changes = []
    for i in range(40):
        state, changed = tr.update(Observation(i / 10, "frontal", probs("sadness", 0.7 if i % 3 == 0 else 0.3)))
        if changed:
            changes.append((i / 10, state.level))
    # the first frame is sure: its level pends from 0 s, and the unsure frames between keep it
    assert changes == [(pytest.approx(1.5), "Not engaged")] and tr.state.since == 0.0


def test_from_config_reads_min_confidence(cfg):
    tr = EngagementTracker.from_config(config_mod.with_changes(cfg, {"engagement.min_confidence": 0.55}), KNOWN_LABELS)
    assert tr.min_confidence == 0.55
    with pytest.raises(config_mod.ConfigError, match="engagement.min_confidence"):
        config_mod.with_changes(cfg, {"engagement.min_confidence": 1.5})


def test_uploads_report_unsure_faces_as_uncertain(make_appliance, cfg, face_jpeg):
    """Grace Hopper reads as neutral, well above the default threshold: "Engaged"; with a
    threshold above her confidence, the same face is reported "Uncertain"."""
    for threshold, uncertain in ((cfg.engagement.min_confidence, False), (0.95, True)):
        appliance = make_appliance(config_mod.with_changes(cfg, {"engagement.min_confidence": threshold}),
                                   with_loop=False)
        s = login(appliance.url)
        r = s.post(f"{appliance.url}/api/analyze", files={"image": ("g.jpg", face_jpeg, "image/jpeg")}, timeout=60)
        assert r.status_code == 200, r.text
        (face,) = r.json()["faces"]
        assert face["uncertain"] is uncertain
        assert face["emotion"] == "neutral" and 0.5 < face["confidence"] < 0.95  # still shown, for the record
        assert (face["engagement"] == UNCERTAIN) is uncertain
        page = s.post(f"{appliance.url}/upload", data={"csrf": s.csrf},
                      files={"image": ("g.jpg", face_jpeg, "image/jpeg")}, timeout=60)
        assert ("the emotion is too unsure to count" in page.text) is uncertain
        appliance.stop()  # the next one uses the same data: a second appliance on a running one's is refused



@pytest.mark.parametrize("min_confidence", [0.5, 0.0])
def test_a_frame_of_not_a_number_is_unsure_not_the_average_for_good(min_confidence):
    """One frame whose probabilities held a NaN (a float model gone wrong) read as sure: it
    went into the average, which stayed NaN until the student left, and the state turned
    to the first label's level with confidence NaN (no valid JSON for the API or MQTT)."""
    tr = EngagementTracker(KNOWN_LABELS, MAPPING, min_hold_s=1.0, min_confidence=min_confidence)
    assert run(tr, 0, 3, probs("happiness", 0.9)) == ["Engaged - likes the topic"]
    bad = probs("happiness", 0.9)
    bad[KNOWN_LABELS.index("sadness")] = np.nan
    tr.update(Observation(3.0, "frontal", bad))
    assert run(tr, 3.1, 6, probs("happiness", 0.9)) == []
    assert tr.state.level == "Engaged - likes the topic" and tr.state.confidence == pytest.approx(0.9)
    assert all(np.isfinite(v) for v in tr.state.probabilities.values())
