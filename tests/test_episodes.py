"""EpisodeLog: a fault that comes and goes gets a bounded number of log lines, and a real
outage is never kept out of the log."""
from __future__ import annotations

from edge_app.episodes import EpisodeLog


def test_flapping_episodes_are_counted_into_one_line_per_quiet_period():
    episodes = EpisodeLog(quiet_s=600, long_s=60)
    episodes.begin()
    assert episodes.due(now=0, began=0) == 0  # the first episode is logged at once
    assert episodes.due(now=1, began=0) is None  # and only once
    for t in range(10, 100, 10):  # nine short episodes within the quiet period: kept back
        episodes.begin()
        assert episodes.due(now=t, began=t) is None and not episodes.logged
    episodes.begin()
    assert episodes.due(now=700, began=700) == 9  # after it, the next line counts them


def test_an_episode_that_lasts_is_logged_even_within_the_quiet_period():
    episodes = EpisodeLog(quiet_s=600, long_s=60)
    episodes.begin()
    assert episodes.due(now=0, began=0) == 0
    episodes.begin()
    assert episodes.due(now=100, began=100) is None
    assert episodes.due(now=160, began=100) == 0 and episodes.logged  # it lasted long_s
