"""The engagement groups are defined once (``engagement.Group``); what shows them must
know every one: the web UI's colours live only in app.css, keyed by ``Group.css_class``."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from edge_app.engagement import GROUPS, Group, group_of

CSS = (Path(__file__).resolve().parent.parent / "edge_app" / "web" / "static" / "app.css").read_text()


@pytest.mark.parametrize("group", GROUPS)
def test_every_group_has_a_pill_colour_and_a_chart_colour(group):
    assert re.search(rf"(^|[\s}}])\.{group.css_class}\s*{{[^}}]*background:", CSS), f"no pill colour for {group}"
    assert re.search(rf"rect\.{group.css_class}\s*{{[^}}]*fill:", CSS), f"no chart colour for {group}"


def test_groups_are_their_text_everywhere():
    assert [str(g) for g in GROUPS] == ["Engaged", "Partially engaged", "Not engaged", "Present", "Distracted", "Absent",
                                         "Paused"]
    assert f"{Group.NOT_ENGAGED}" == "Not engaged" and Group("Absent") is Group.ABSENT
    assert Group.PARTIALLY_ENGAGED.css_class == "g-partially-engaged"
    assert group_of("Partially engaged - unsure") is Group.PARTIALLY_ENGAGED
    with pytest.raises(ValueError, match="belongs to no group"):
        group_of("Sleepy")
