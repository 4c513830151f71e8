"""A small map whose entries leave memory when their time is up.

The web app holds a few things in memory for a short while only: a class's first
passwords for a second send of its form, a class list kept over a password confirmation,
a form's outcome for the page it leads to, an uploaded photo's marked-up picture for its
result page. Each names or shows students, so each must go when its time is up, also when
nobody asks for it again (a closed tab, an admin who walked away): one daemon timer per
map, due at the earliest expiry, drops them. The stores built on it keep their own key and
owner checks; this map knows neither."""
from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
LATE_S = 0.01  # the timer wakes just after the earliest expiry, never just before it


class ExpiringMap(Generic[K, V]):
    """Keys to values, each for ``keep_s`` (or its own, given to ``put``) on ``clock``,
    monotonic so a step of the wall clock neither keeps nor drops anything; at most
    ``most`` entries, the oldest put dropped first (a client sending forms in a loop cannot
    grow memory). A read never returns an expired entry, whatever the timer's lag."""

    def __init__(self, keep_s: float, most: int, clock: Callable[[], float] = time.monotonic):
        self.keep_s, self.most, self._clock = keep_s, most, clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()  # key -> (until, value), oldest put first
        self._timer: threading.Timer | None = None
        self._due = math.inf  # when the timer fires, on ``clock``
        self._timers = 0  # which timer is the current one (a cancelled one may still be running)

    def put(self, key: K, value: V, keep_s: float | None = None) -> None:
        with self._lock:
            now = self._clock()
            self._entries.pop(key, None)  # put again: the newest, for its whole time
            self._entries[key] = (now + (self.keep_s if keep_s is None else keep_s), value)
            while len(self._entries) > self.most:
                self._entries.popitem(last=False)
            self._sweep(now)
            self._schedule(now)

    def get(self, key: K) -> V | None:
        """The value, kept; None when absent or expired."""
        with self._lock:
            found = self._entries.get(key)
            return found[1] if found is not None and self._clock() < found[0] else None

    def pop(self, key: K) -> V | None:
        """The value, removed; None when absent or expired."""
        with self._lock:
            found = self._entries.pop(key, None)
            return found[1] if found is not None and self._clock() < found[0] else None

    def remove_if(self, test: Callable[[K, V], bool]) -> None:
        """Drop now every entry whose key and value pass ``test`` (called under the lock)."""
        with self._lock:
            for key in [k for k, (_, v) in self._entries.items() if test(k, v)]:
                del self._entries[key]

    def __len__(self) -> int:
        """Entries in memory (an expired one until the timer drops it, an instant later)."""
        return len(self._entries)

    def _sweep(self, now: float) -> None:
        for key in [k for k, (until, _) in self._entries.items() if until <= now]:
            del self._entries[key]

    def _schedule(self, now: float) -> None:
        """A timer for the earliest expiry, unless one is due by then; none when empty."""
        if not self._entries:
            return  # a timer still pending finds nothing and stops
        due = min(until for until, _ in self._entries.values())
        if self._timer is not None and self._due <= due:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timers += 1
        self._due, self._timer = due, threading.Timer(max(0.0, due - now) + LATE_S, self._expire, (self._timers,))
        self._timer.daemon = True  # a stop does not wait for it: the process's memory goes with it
        self._timer.start()

    def _expire(self, which: int) -> None:
        with self._lock:
            now = self._clock()
            self._sweep(now)
            if which == self._timers:  # else a later timer, due earlier, has taken over
                self._timer, self._due = None, math.inf
                self._schedule(now)
