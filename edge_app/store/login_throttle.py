"""The log-in throttle: failed log-ins counted per user name and address, per address, per
user name from all addresses and per known browser, and the refusal that makes an attempt
wait or locks it out (``ThrottlePolicy``).

``Accounts`` says who an attempt is (the user name as counted, whether an account has it, a
browser known for it, the live session it is typed in) and checks the password; this module
keeps the ``login_failures`` rows, the attempts being checked now, and what a refusal says.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from edge_app.addresses import client_key, ip_of
from edge_app.store.auth_error import AuthError
from edge_app.store.database import Store
from edge_app.wall_clock import local_time

if TYPE_CHECKING:
    from edge_app.config import LoginSettings

T = TypeVar("T")


class LoginThrottled(AuthError):
    """Too many failed log-ins: the message says how long to wait (``retry_after`` seconds)."""

    def __init__(self, message: str, retry_after: float):
        super().__init__(message)
        self.retry_after = retry_after


@dataclass
class ThrottlePolicy:
    """Failed log-ins within ``window_s``, counted per user name *from one address*, per
    client address, and per user name from all addresses together; a browser that has
    logged in as a name before (``Accounts.remember_browser``) is counted only by its own
    failures for that name.

    After ``slow_after_*`` failures every further attempt must wait ``base_delay_s``,
    doubling with each failure (up to ``max_delay_s``); at ``lock_after_*`` failures the
    name (from that address, or in that browser), or the address, is locked for ``lock_s``.
    Counting a name per address means a student guessing from their laptop cannot lock
    the teacher out of their own desk; ``lock_after_user_global`` is the ceiling that still
    slows a guesser who moves between addresses: past it, an attempt from an address that
    has failed for the name within the window, in a browser the name has not logged in
    from, waits (``base_delay_s`` doubling to ``max_delay_s``, judged from the newest
    failure by anyone), never locked. An address with no failure of its own for the name
    in the window is checked anyway, so the owner on a new laptop or a private window gets
    in while others guess; its one wrong password makes it wait like the rest. So past the
    ceiling a guesser gets one attempt per wait plus one per fresh address per window
    (an IPv6 /64 is one address), and each address still locks at ``lock_after_user``;
    failures age out after ``window_s``, so each window the same addresses are fresh again
    and the count under the ceiling starts over. The owner's own browser and the machine's
    console are not held up at all. An address gets more slack than a name: one classroom
    may share it. Attempts while
    waiting or locked are refused without checking the password, and every attempt is
    counted before the password is checked, so parallel guesses cannot slip past the limit.
    """

    window_s: float = 900.0
    slow_after: int = 3
    slow_after_address: int = 10
    base_delay_s: float = 1.0
    max_delay_s: float = 30.0
    lock_after_user: int = 8
    lock_after_address: int = 25
    lock_s: float = 900.0
    lock_after_user_global: int = 100

    @classmethod
    def from_config(cls, login: LoginSettings) -> "ThrottlePolicy":
        """The policy of the config file's ``[login]`` section."""
        return cls(window_s=login.window_minutes * 60.0, slow_after=login.slow_after_user,
                   slow_after_address=login.slow_after_address, base_delay_s=login.first_delay_s,
                   max_delay_s=login.max_delay_s, lock_after_user=login.lock_after_user,
                   lock_after_address=login.lock_after_address, lock_s=login.lock_minutes * 60.0,
                   lock_after_user_global=login.lock_after_user_global)


@dataclass(frozen=True)
class _Counter:
    """One counter of failed log-ins an attempt feeds: its key in ``login_failures``, after
    how many failures it slows and locks (``lock_after`` None: it only slows), who it is
    named as in a refusal, and whether it can refuse this attempt (``judged``; ``fresh_from``:
    not while the attempt's own counter for the name from its address is clean)."""

    key: str
    slow_after: int
    lock_after: int | None
    who: str
    judged: bool = True
    fresh_from: str | None = None  # not judged while this key has no failure in the window and none in flight


def _console(address: str | None) -> bool:
    """The machine's own console (a kiosk browser on the device): 127.0.0.1 or ::1. Not the rest
    of 127.0.0.0/8, which no browser of its own uses."""
    ip = ip_of(address or "")
    return ip is not None and str(ip) in ("127.0.0.1", "::1")


def _way_back(counter: _Counter) -> str:
    """What still works while ``counter`` is locked: not "ask an admin" alone, since the one
    locked out may be the admin."""
    if counter.who == "your address":
        return "A browser that has logged in as that user before still gets in, from here too."
    elsewhere = ("Another browser" if "browser" in counter.who else "A browser") + \
        " that has logged in as this user before still gets in."
    return (f"{elsewhere} An admin can unlock the name on the Users page; an admin locked out of their own name "
            "can set its password on the machine itself with engage-edge passwd (README: 'Lost the first-start "
            "admin password').")


# What the refusal past the ceiling over all addresses says beyond its wait: the wait is
# judged from anyone's newest failure, so while a class keeps guessing the owner's next try
# from here may be refused again. The same words for every name (one no account has too),
# so they tell nothing about which names exist. Not "unlock": the ceiling slows, it locks
# nothing (``locked_users``), so the Users page offers no unlock for it, while a password
# set there or with passwd forgets every failure for the name (``set_password``).
CEILING_WAY_BACK = (", and longer while others keep guessing. A browser that has logged in as this user before is "
                    "not held up. An admin can give the name a new password on the Users page, which lifts this; an "
                    "admin held up on their own name can set its password on the machine itself with engage-edge "
                    "passwd (README: 'Lost the first-start admin password').")


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _wait_text(seconds: float) -> str:
    seconds = max(1, int(seconds + 0.999))
    if seconds >= 90:
        minutes = (seconds + 59) // 60
        return f"{minutes} minutes"
    return f"{seconds} second{'s' if seconds != 1 else ''}"


class LoginThrottle:
    """The failed log-ins of one process's ``Accounts`` (web worker threads share it): the
    ``policy``, the attempts being checked now, and the ``login_failures`` rows.

    Times are judged with the owner's clock (``now``, ``elapsed``, ``mark``: ``Accounts``'s
    monotonic record of stored wall times, under the keys ``("failure", row id)``), so a
    clock step neither lifts a lock nor stretches it."""

    def __init__(self, store: Store, policy: ThrottlePolicy, now: Callable[[], tuple[float, float]],
                 elapsed: Callable[..., float],
                 mark: Callable[[tuple[str, Hashable], float, float], None], wall: Callable[[], float]):
        self.store, self.policy = store, policy
        self._now, self._elapsed, self._mark, self._wall = now, elapsed, mark, wall
        self._pending: dict[str, int] = {}  # throttle key -> attempts being checked now (one web process)
        self._pending_lock = threading.Lock()
        # keys the counters of names no account has: kept in memory only, so a copied database
        # cannot be searched for what was typed there (a password in the name field)
        self._unknown_key = secrets.token_bytes(32)

    def _counted_name(self, name: str, account: bool) -> str:
        """The name part of a throttle key: an account's own (lower-case) name, which the
        Users page unlocks; for a name no account has, a keyed digest, so what was typed (often
        a password in the wrong field) is never stored, and it is throttled as much as a real name."""
        if account:
            return name
        return "#" + hmac.new(self._unknown_key, name.encode(), hashlib.sha256).hexdigest()[:32]

    def counters(self, name: str, account: bool, address: str | None, browser: str | None = None,
                 session: str | None = None) -> list[_Counter]:
        """The counters an attempt feeds. ``name``: the user name as counted (``accounts._throttle_name``);
        ``account``: an account has that name. ``browser``: the id of a browser that has logged
        in as this name before (``Accounts.known_browser``): only its own failures count
        (guesses from elsewhere cannot lock the owner's browser out, and it cannot guess faster
        than a name from one address). ``session``: the key of a live session the password is
        typed again in (confirm, Your account): counted for that session, not against the name
        everywhere."""
        p, name = self.policy, self._counted_name(name, account)
        if browser is not None:
            return [_Counter("user:" + name + "|browser:" + browser, p.slow_after, p.lock_after_user,
                             "this user name in this browser")]
        address = client_key(address) if address else address  # an IPv6 /64 is one client
        keys = [_Counter("user:" + name + "|" + (address or ""), p.slow_after, p.lock_after_user,
                         "this user name from your address")]
        if session is not None:
            keys.append(_Counter("user:" + name + "|session:" + session, p.slow_after,
                                 p.lock_after_user, "this user name in this log-in"))
        else:  # the console (a kiosk on the device) feeds the ceiling but is not held by it: it is one address
            # nor is an address that has not failed for this name (the owner on a new laptop): it is
            # checked once, and a wrong password makes it wait like the rest
            keys.append(_Counter("user:" + name, p.lock_after_user_global, None,
                                 "this user name from many addresses", judged=not _console(address),
                                 fresh_from=keys[0].key if address else None))
        if address:
            keys.append(_Counter("addr:" + address, p.slow_after_address, p.lock_after_address, "your address"))
        return keys

    def _failure_ages(self, rows, now: tuple[float, float]) -> list[float]:
        """Seconds since each failed log-in (rows of ``id``, ``t``) still inside the throttle's
        horizon; one stored in the future counts as just now (a lock is never cut short)."""
        horizon = max(self.policy.window_s, self.policy.lock_s)
        ages = (self._elapsed(("failure", r["id"]), r["t"], now, future=0.0) for r in rows)
        return [age for age in ages if age < horizon]

    def _until(self, wait: float) -> str:
        """``wait`` from now as the clock on the wall reads it ("02:10 CET" when the clocks go
        back before then: a bare "02:10" read at 02:55 CEST looked like the past)."""
        return local_time(self._wall() + wait, "%H:%M")

    def _fresh(self, key: str, now: tuple[float, float]) -> bool:
        """No failure of ``key`` within the window and no attempt of it being checked: one at a
        time, so parallel guesses from a new address get one check between them, not eight."""
        if self._pending.get(key):
            return False
        ages = self._failure_ages(self.store.query("SELECT id, t FROM login_failures WHERE key = ?", (key,)), now)
        return all(age >= self.policy.window_s for age in ages)

    def _refusal(self, counters: list[_Counter]) -> LoginThrottled | None:
        """Why this attempt must not be checked now, or None. Attempts still being checked
        (``_pending``) count towards the locks, so parallel guesses cannot overtake them."""
        p, now = self.policy, self._now()
        for c in counters:
            if not c.judged or (c.fresh_from is not None and self._fresh(c.fresh_from, now)):
                continue
            # every row of the key (purged past the horizon): a stepped clock makes stored times say nothing
            ages = self._failure_ages(self.store.query("SELECT id, t FROM login_failures WHERE key = ?", (c.key,)), now)
            n, last = len(ages), min(ages, default=0.0)
            if c.lock_after is not None and n >= c.lock_after and last < p.lock_s:
                wait = p.lock_s - last
                return LoginThrottled(f"Too many failed log-ins for {c.who}: log-in is locked for {_wait_text(wait)} "
                                      f"(until {self._until(wait)}). {_way_back(c)}", wait)
            if n >= c.slow_after:
                delay = min(p.base_delay_s * 2 ** min(n - c.slow_after, 64), p.max_delay_s)
                if last < delay:
                    wait = delay - last
                    return LoginThrottled(f"Too many failed log-ins for {c.who}: wait {_wait_text(wait)} "
                                          f"before trying again{CEILING_WAY_BACK if c.lock_after is None else '.'}",
                                          wait)
            pending = self._pending.get(c.key, 0)  # failures past a lock shorter than the window are not in flight
            if pending and n + pending >= (c.slow_after if c.lock_after is None else c.lock_after):
                return LoginThrottled(f"Too many log-ins for {c.who} are being checked at once: "
                                      "try again in a moment.", 1.0)
        return None

    def check(self, counters: list[_Counter]) -> None:
        """Raise ``LoginThrottled`` when an attempt feeding ``counters`` must wait or is locked."""
        refusal = self._refusal(counters)
        if refusal:
            raise refusal

    def attempt(self, counters: list[_Counter], verify: Callable[[], T | None]) -> T | None:
        """``verify`` (the password's check) behind the throttle: its answer, or ``LoginThrottled``;
        None (wrong) is counted as a failure of every counter, anything else forgets the
        failures of the first (the name from that address, or in that browser).

        The attempt is counted (as pending, under one lock with the throttle check)
        *before* the password is checked: forty parallel guesses are forty counted
        attempts, not forty checks against a count of zero."""
        keys = [c.key for c in counters]
        with self._pending_lock:
            refusal = self._refusal(counters)
            if refusal is not None:
                raise refusal
            for key in keys:
                self._pending[key] = self._pending.get(key, 0) + 1
        try:
            user = verify()
            if user is None:
                wall, mono = self._now()
                with self.store.transaction() as conn:
                    ids = [conn.execute("INSERT INTO login_failures(key, t) VALUES (?, ?)", (key, wall)).lastrowid
                           for key in keys]
                for failure in ids:
                    self._mark(("failure", failure), wall, mono)
            else:
                self.store.execute("DELETE FROM login_failures WHERE key = ?", (keys[0],))
            return user
        finally:
            with self._pending_lock:
                for key in keys:
                    self._pending[key] -= 1
                    if not self._pending[key]:
                        del self._pending[key]

    def unlock(self, name: str, conn: sqlite3.Connection | None = None) -> int:
        """Forget every failed log-in for the user name counted as ``name`` (an admin's unlock);
        returns how many. ``conn``: inside the caller's transaction (a new password's)."""
        return (conn or self.store.connect()).execute("DELETE FROM login_failures WHERE key = ? OR key LIKE ? ESCAPE '\\'",
                                                      ("user:" + name, "user:" + _like_escape(name) + "|%")).rowcount

    def locked_users(self) -> set[str]:
        """User names locked now from some address or browser (for the admin's Users page);
        the ceiling over all addresses slows, it locks no one."""
        p, now = self.policy, self._now()
        by_key: dict[str, list] = {}
        for r in self.store.query("SELECT id, key, t FROM login_failures "
                                  "WHERE key LIKE 'user:%|%' AND key NOT LIKE 'user:#%'"):  # '#': names no account has
            by_key.setdefault(r["key"], []).append(r)
        locked = set()
        for key, rows in by_key.items():
            ages = self._failure_ages(rows, now)
            if len(ages) >= p.lock_after_user and min(ages, default=p.lock_s) < p.lock_s:
                locked.add(key[5:].split("|", 1)[0])
        return locked

    def expired(self, now: tuple[float, float]) -> list[tuple[int]]:
        """The ids of the failed log-ins past the window or the lock, whichever is longer (a lock
        must outlive the failures that made it), as ``Accounts.purge_sessions`` deletes them."""
        horizon = max(self.policy.window_s, self.policy.lock_s)
        failures = self.store.query("SELECT id, t FROM login_failures")
        return [(r["id"],) for r in failures
                if self._elapsed(("failure", r["id"]), r["t"], now, future=0.0) >= horizon]

    @staticmethod
    def delete(conn: sqlite3.Connection, ids: list[tuple[int]]) -> int:
        """Delete the failed log-ins ``ids`` in the caller's transaction; returns how many."""
        return conn.executemany("DELETE FROM login_failures WHERE id = ?", ids).rowcount

    def failure_ids(self) -> set[int]:
        """The ids of every failed log-in stored now."""
        return {r["id"] for r in self.store.query("SELECT id FROM login_failures")}
