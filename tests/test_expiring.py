"""The expiring map under the web app's short-lived stores (class passwords, kept forms,
outcome notes, fresh upload pictures): what it holds leaves memory on time, by itself."""
from __future__ import annotations

import threading

from edge_app.web.expiring import ExpiringMap
from tests.conftest import wait_for


def test_entries_leave_memory_when_their_time_is_up_without_being_asked_for():
    """A password sheet or a student's photo nobody asks for again (a closed tab, an admin
    who walked away) must still go at its time, not at the next put or read."""
    # seconds apart, not tenths: a loaded CI machine wakes a thread 0.4 s late, and the
    # state in between (the short entry gone, the sheet kept) must still be there to see
    held: ExpiringMap[str, str] = ExpiringMap(keep_s=3.0, most=10)
    held.put("sheet", "mia.k: 3q0H...")
    held.put("short", "photo", keep_s=0.5)  # its own time, shorter than the map's
    assert len(held) == 2 and held.get("sheet") == "mia.k: 3q0H..."
    wait_for(lambda: len(held) == 1, 10, what="the shorter entry dropped by the timer")
    assert held.get("sheet") == "mia.k: 3q0H..."  # not before its own time
    wait_for(lambda: len(held) == 0, 10, what="the sheet dropped by the timer, with no access")
    assert held.get("sheet") is None
    held.put("later", "again", keep_s=0.1)  # a map emptied once still drops what comes after
    wait_for(lambda: len(held) == 0, 10, what="a later entry dropped by a new timer")
    wait_for(lambda: not any(getattr(getattr(t, "function", None), "__self__", None) is held
                             for t in threading.enumerate()), 5, what="no timer thread left once the map is empty")


def test_reads_never_see_an_expired_entry_and_the_map_is_bounded():
    """Any key and value, no owner: the stores check owners themselves. A read at or past
    an entry's time gets None even before the timer runs; past ``most`` the oldest put go."""
    now = [1000.0]
    held: ExpiringMap[tuple[int, str], list[int]] = ExpiringMap(keep_s=600, most=3, clock=lambda: now[0])
    held.put((1, "a"), [1])
    now[0] += 599.9
    assert held.get((1, "a")) == [1] and held.get((1, "a")) == [1]  # a get keeps it
    now[0] += 0.1
    assert held.get((1, "a")) is None and held.pop((1, "a")) is None
    for i in range(5):
        held.put((2, str(i)), [i])
    assert len(held) == 3 and [held.get((2, str(i))) for i in range(5)] == [None, None, [2], [3], [4]]
    held.put((2, "2"), [22])  # put again: the newest, so (2, "3") is now the oldest
    held.put((3, "x"), [9])
    assert [held.get((2, str(i))) for i in range(2, 5)] == [[22], None, [4]]
    assert held.pop((2, "4")) == [4] and held.pop((2, "4")) is None  # taken once
    held.remove_if(lambda key, value: key[0] == 2)
    assert len(held) == 1 and held.get((3, "x")) == [9]
