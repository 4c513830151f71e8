"""Accounts, password hashing and server-side sessions.

Passwords: hashlib.scrypt (memory-hard), salted, never logged. Sessions: a random token
in an HttpOnly cookie; only its SHA-256 is stored, so a copied database gives no live
session. Each session carries its own CSRF token for state-changing forms. Failed log-ins
are counted and refused in ``login_throttle``; ``Accounts.login`` checks a password behind it.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import math
import os
import re
import secrets
import sqlite3
import threading
import time
import unicodedata
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from edge_app.fsutil import atomic_write
from edge_app.store.auth_error import AuthError
from edge_app.store.database import Store
from edge_app.store.known_browsers import BROWSER_KEY_FILE, KnownBrowsers
from edge_app.store.login_throttle import LoginThrottle, ThrottlePolicy, _Counter

log = logging.getLogger(__name__)

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
USERNAME = re.compile(r"[A-Za-z0-9_.-]{2,32}")  # always fullmatch: "$" would let a final newline in
USERNAME_RULE = ("a user name has 2-32 letters, digits, dots, dashes or underscores, at least one a letter or digit; "
                 "letters a-z only: no accents, no spaces")
MIN_PASSWORD = 8
ROLES = ("student", "admin", "instructor")  # instructor: the classroom service (edge_app/fleet/classroom)
# what each role may do, least first: an instructor also resumes anyone's pause (web/privacy)
RIGHTS = {"student": 0, "instructor": 1, "admin": 2}


def valid_username(name: str) -> bool:
    """A name a new account may take: ``USERNAME`` with a letter or digit in it. ".." or "--"
    passed the character rule, and read as a path or as nothing in the log and audit."""
    return bool(USERNAME.fullmatch(name or "")) and any(c.isascii() and c.isalnum() for c in name)


# letters NFKD does not split into a plain letter and an accent
_SPELLED_OUT = str.maketrans({"ß": "ss", "æ": "ae", "œ": "oe", "ø": "o", "đ": "d", "ł": "l", "þ": "th", "ı": "i",
                              "ð": "d", "ŧ": "t", "ħ": "h"})


def suggested_username(name: str, taken: Callable[[str], bool] = lambda _: False) -> str | None:
    """A user name like ``name`` that the rules allow ("Zoë Müller" -> "zoe.muller"), for a
    refusal to offer: a class list is pasted from the school's list of real names, and "a
    user name has 2-32 letters ..." alone left the admin to guess why "Zoë" is no letter.
    ``taken``: a name that may not be offered (an account's, another line's): a digit is
    added then. None when nothing close would do (a line of commas, a name of symbols)."""
    if any(sep in name for sep in ",;"):  # several names on one line (or "Schmidt, Anna"): no one name is right
        return None
    plain = "".join(c for c in unicodedata.normalize("NFKD", name.lower().translate(_SPELLED_OUT))
                    if not unicodedata.combining(c))
    plain = re.sub(r"[^a-z0-9_.-]", "", re.sub(r"\s+", ".", plain.strip()))
    plain = re.sub(r"\.{2,}", ".", plain).strip("._-")[:32].strip("._-")
    if not valid_username(plain):
        return None
    for candidate in (plain, *(f"{plain[:31]}{n}" for n in range(2, 10))):
        if not taken(candidate):
            return candidate
    return None


class AccountDisabled(AuthError):
    """The right password for an account an admin has disabled: said as such, so the
    student asks an admin instead of trying passwords (only the password's owner learns it)."""


@dataclass
class User:
    id: int
    username: str
    role: str
    disabled: bool = False
    must_change_password: bool = False  # a password given to them (first start, admin, technician): replace it first

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


USER_COLUMNS = "id, username, role, disabled, must_change_password"


def _user(r) -> User:
    """The ``User`` of a row selected with ``USER_COLUMNS``."""
    return User(r["id"], r["username"], r["role"], bool(r["disabled"]), bool(r["must_change_password"]))


def account_created(store: Store, user: User) -> float | None:
    """When ``user``'s account was made: with its id, what names it for good (before schema 13,
    SQLite gave the id of the account with the highest id to the next one made after it was
    deleted, and a pause saved then may name such an id)."""
    rows = store.query("SELECT created FROM users WHERE id = ?", (user.id,))
    return rows[0]["created"] if rows else None


HASH_THREADS = 2  # passwords hashed at once, each on one of these threads


class _Hashing:
    """scrypt on ``HASH_THREADS`` threads of its own, never the caller's. Each hash takes
    16 MB, and glibc keeps freed memory in the malloc arena of the thread that used it:
    hashed on whichever of the 96 web threads took the log-in, the service kept 16 MB more
    in one arena after another over weeks of log-ins (400 log-ins, two at a time on 96
    threads: 15 -> 480 MB). On these few threads the same memory serves every hash, and a
    class logging in at once no longer holds 16 MB and a CPU per student."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._threads: ThreadPoolExecutor | None = None
        os.register_at_fork(after_in_child=self._forget)  # a forked child has none of the threads: its own, when asked

    def _forget(self) -> None:
        self._lock, self._threads = threading.Lock(), None

    def scrypt(self, password: bytes, salt: bytes, n: int, r: int, p: int, dklen: int) -> bytes:
        with self._lock:
            if self._threads is None:
                self._threads = ThreadPoolExecutor(HASH_THREADS, thread_name_prefix="password-hash")
            threads = self._threads
        return threads.submit(lambda: hashlib.scrypt(password, salt=salt, n=n, r=r, p=p, dklen=dklen)).result()


_HASHING = _Hashing()


def hash_password(password: str) -> str:
    salt = os.urandom(16)
    digest = _HASHING.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${b64(salt)}${b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = _HASHING.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                                 dklen=len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


# Passwords that guessing tools try first (and that a class would guess); compared
# case-insensitively. Short on purpose: the length rule does most of the work.
COMMON_PASSWORDS = frozenset("""
password password1 password12 password123 passw0rd p@ssw0rd 12345678 123456789 1234567890
87654321 11111111 00000000 12341234 11223344 qwertyui qwertyuiop qwerty123 1q2w3e4r
1qaz2wsx asdfghjk asdfasdf zxcvbnm1 iloveyou sunshine princess football baseball superman
batman123 trustno1 letmein1 welcome1 welcome123 abc12345 abcd1234 aa123456 changeme
admin123 administrator teacher1 student1 student123 school123 classroom engage-edge
engageedge raspberry
""".split())


def _has_utf8(text: str) -> bool:
    """False for a string with a lone UTF-16 surrogate (JSON's "\\ud800"): it has no
    UTF-8 form, so it can be neither hashed nor stored."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _insert_user(conn: sqlite3.Connection, username: str, password_hash: str, role: str, must_change: bool) -> User:
    """The users row, once its name, role and password are checked (IntegrityError: the name is taken)."""
    cur = conn.execute("INSERT INTO users(username, password_hash, role, created, must_change_password) "
                       "VALUES (?, ?, ?, ?, ?)", (username, password_hash, role, time.time(), int(must_change)))
    assert cur.lastrowid is not None  # sqlite3 sets it after every INSERT
    return User(cur.lastrowid, username, role, must_change_password=must_change)


PASSWORD_LETTERS = "abcdefghjkmnpqrstuvwxyz23456789"  # none read as another on a note (no l/1, o/0, i)


def temporary_password() -> str:
    """A password to hand over on a note: three groups of four, about 60 bits."""
    return "-".join("".join(secrets.choice(PASSWORD_LETTERS) for _ in range(4)) for _ in range(3))


def _temporary_password_for(username: str) -> str:
    """A ``temporary_password`` that passes ``check_password_rules`` for ``username`` (a
    class list may name a student "abcd-efgh-jkmn"; drawn again then, never refused)."""
    while True:
        password = temporary_password()
        try:
            check_password_rules(password, username)
        except AuthError:
            continue
        return password


def check_password_rules(password: str, username: str) -> None:
    """Refuse a password an attacker tries first; ``username``: whose it is, as the name
    itself is the first guess at a log-in page."""
    if not _has_utf8(password):  # no UTF-8 form, so no hash
        raise AuthError("the password holds a character that is not text (a lone UTF-16 surrogate)")
    if len(password) < MIN_PASSWORD:
        raise AuthError(f"the password must have at least {MIN_PASSWORD} characters")
    if password.lower() in COMMON_PASSWORDS or len(set(password)) < 3:
        raise AuthError("that password is among the first ones an attacker tries: choose a less common one "
                        "(a few unrelated words work well)")
    if username and password.lower() == username.lower():
        raise AuthError("the password must not be the user name: it is the first one an attacker tries")


_DUMMY_HASH: list[str] = []


def _dummy_hash() -> str:
    """A stored-hash stand-in for unknown user names, made once: checking a password
    against it costs one scrypt, exactly like a known name, so timing tells nothing."""
    if not _DUMMY_HASH:
        _DUMMY_HASH.append(hash_password(secrets.token_urlsafe(16)))
    return _DUMMY_HASH[0]


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _storable(name: str | None) -> bool:
    """A name SQLite can look up: text with a UTF-8 form (SQLite raises on one without).
    Not USERNAME: a name made before that rule was matched whole (one ending in a newline)
    must still log in and be found."""
    return name is not None and name != "" and _has_utf8(name)


def _throttle_name(username: str | None) -> str:
    """The name a throttle counter is kept under: names that can never exist share one
    bucket, so a crafted name ("teacher|10.0.0.5") cannot reach another counter's key."""
    return (username or "").lower() if USERNAME.fullmatch(username or "") else "~invalid"


def _user_in(conn: sqlite3.Connection, user_id: int) -> User | None:
    """The account ``user_id`` as the caller's transaction sees it, or None."""
    row = conn.execute(f"SELECT {USER_COLUMNS} FROM users WHERE id = ?", (user_id,)).fetchone()
    return _user(row) if row is not None else None


def _keep_an_admin(conn: sqlite3.Connection, user: User | None, change: str = "", field: str = "") -> None:
    """AuthError when ``user`` is the last enabled admin: no one could manage users after it is
    ``change``d (disabled, deleted; or given another role). Checked in the write itself (the
    caller's transaction): the pages' own count came before it, so two admins demoting or
    disabling each other at once both passed it."""
    if user is not None and user.is_admin and not user.disabled and conn.execute(
            "SELECT COUNT(*) FROM users WHERE role = 'admin' AND disabled = 0").fetchone()[0] <= 1:
        raise AuthError(f"{user.username} is the last admin" + (f" and cannot be {change}" if change else "")
                        + ": make another user an admin first", field)


# What a user still on a password someone else chose (the generated first-start one, or
# one an admin or technician set for them) is told by every page but the account page,
# on a device and on the classroom page alike
PASSWORD_CHANGE_PENDING = ("choose your own password first: the one you logged in with was given to you, so others "
                           "may know it (change it on /account)")

# The generated first-start password waits here (root-only) until ``admin`` first logs in,
# so a start whose output nobody saw (a busy port, a service's journal) cannot lose it.
FIRST_PASSWORD_FILE = "first-admin-password.txt"


class Accounts:
    """Users and sessions of one process (web worker threads share it), and log-ins behind its
    ``login_throttle``.

    Idle timeouts, the sessions' lifetime, log-in locks and the confirmation window are
    measured on ``monotonic`` while the process runs: a Pi that booted with a stale clock
    has it stepped by days when NTP comes, and that step must neither log everyone out nor
    lift a lock (nor, stepped back, stretch them). The database keeps wall-clock (``wall``)
    times, read only for what this process did not see happen (from before a restart, or
    changed there by someone else), and then conservatively: a time in the future ends a
    session or its confirmation and counts a failed log-in as just now."""

    def __init__(self, store: Store, idle_s: float = 1800, max_age_s: float = 12 * 3600,
                 throttle: ThrottlePolicy | None = None, confirm_s: float = 15 * 60,
                 wall: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic):
        self.store, self.idle_s, self.max_age_s = store, idle_s, max_age_s
        self.wall, self.monotonic = wall, monotonic
        # (what, row) -> (the stored wall time, the monotonic time it stands for), for the
        # times this process wrote or first read; valid while the row still holds that value
        self._seen_at: dict[tuple[str, Hashable], tuple[float, float]] = {}
        self._seen_lock = threading.Lock()
        self.confirm_s = confirm_s  # an admin's change asks for the password typed within this (0: never)
        # the failed log-ins, judged on this clock (a lambda: ``wall`` as set when it is read, which may be replaced)
        self.login_throttle = LoginThrottle(store, throttle or ThrottlePolicy(), self._now, self._elapsed, self._mark,
                                            lambda: self.wall())
        self.browsers = KnownBrowsers(store.data_dir / BROWSER_KEY_FILE)  # the signed known-browser cookies

    @property
    def throttle(self) -> ThrottlePolicy:
        """The log-in throttle's policy (``LoginThrottle.policy``); setting it replaces the policy."""
        return self.login_throttle.policy

    @throttle.setter
    def throttle(self, policy: ThrottlePolicy) -> None:
        self.login_throttle.policy = policy

    # ------------------------------------------------------------ elapsed time
    def _now(self) -> tuple[float, float]:
        return self.wall(), self.monotonic()

    def _elapsed(self, what: tuple[str, Hashable], stored: float, now: tuple[float, float], future: float) -> float:
        """Seconds since ``stored`` (a wall time in the database) for ``what``: on the
        monotonic clock when this process wrote or already read that very value; else by the
        wall clock, once (then remembered), and a time in the future (the clock went back
        since) counts as ``future`` seconds ago: whatever is conservative for the caller."""
        wall, mono = now
        with self._seen_lock:
            known = self._seen_at.get(what)
            if known is not None and known[0] == stored:
                return mono - known[1]
            elapsed = wall - stored if wall >= stored else future
            self._seen_at[what] = (stored, mono - elapsed)
            return elapsed

    def _mark(self, what: tuple[str, Hashable], stored: float, mono: float, only_over: float | None = None) -> None:
        """Remember that the row's ``stored`` wall time stands for ``mono``; ``only_over``:
        only while the row is still known to hold that stored value (not written anew meanwhile)."""
        with self._seen_lock:
            known = self._seen_at.get(what)
            if only_over is None or known is None or known[0] == only_over:
                self._seen_at[what] = (stored, mono)

    def _forget(self, known: set[tuple[str, Hashable]], kinds: tuple[str, ...], keep: set) -> None:
        """Drop what was remembered (``known``, taken before ``keep`` was read) of ``kinds``
        of rows no longer in ``keep``: rows deleted by any way (a log-out, a password reset, an
        unlock), so memory stays bounded; what was remembered since (a new session) stays."""
        with self._seen_lock:
            for what in known:
                if what[0] in kinds and what[1] not in keep:
                    self._seen_at.pop(what, None)

    def log_name(self, username: str) -> str:
        """How the journal names the user name of a refused log-in: quoted when an account has
        it, else "an unknown user name" (what was typed may be a password, typed in the wrong field)."""
        return repr(username) if self.find(username) is not None else "an unknown user name"

    # ------------------------------------------------------------ known browsers
    def known_browser(self, username: str, cookie: str | None) -> str | None:
        """The id of this browser for ``username`` when its cookie (``remember_browser``) says
        it has logged in as that account with its current password, and not before its user
        last logged out everywhere else (``end_other_sessions``); else None."""
        if not cookie or not USERNAME.fullmatch(username or ""):
            return None
        rows = self.store.query("SELECT password_hash, browsers_generation FROM users WHERE username = ?", (username,))
        if not rows:
            return None
        return self.browsers.browser_id(_throttle_name(username), cookie, rows[0]["password_hash"],
                                        rows[0]["browsers_generation"])

    def remember_browser(self, user: User, cookie: str | None) -> str:
        """The known-browser cookie's new value once ``user`` has logged in with this browser
        (``KnownBrowsers.remember``). Nothing is stored on the server: the signature, over
        the password's hash, is the record."""
        name = _throttle_name(user.username)
        if name == "~invalid":  # a name made before names were matched whole: throttled as before
            return cookie or ""
        rows = self.store.query("SELECT password_hash, browsers_generation FROM users WHERE id = ?", (user.id,))
        if not rows:
            return cookie or ""
        return self.browsers.remember(name, cookie, rows[0]["password_hash"], rows[0]["browsers_generation"])

    # ------------------------------------------------------------ throttled log-in
    def _keys(self, username: str, address: str | None, browser: str | None = None,
              session: str | None = None) -> list[_Counter]:
        """The counters an attempt feeds (``LoginThrottle.counters``). ``browser``: the cookie of
        a browser that may have logged in as this name before; ``session``: the password typed
        again inside a live session (confirm, Your account)."""
        account = self.find(username) is not None
        return self.login_throttle.counters(_throttle_name(username), account, address, self.known_browser(username, browser),
                                            None if session is None else _token_hash(session)[:16])

    def check_throttle(self, username: str, address: str | None, browser: str | None = None) -> None:
        """Raise ``LoginThrottled`` when this user name or address must wait or is locked."""
        self.login_throttle.check(self._keys(username, address, browser))

    def login(self, username: str, password: str, address: str | None = None, browser: str | None = None,
              session: str | None = None) -> User | None:
        """``authenticate`` behind the throttle (``LoginThrottle.attempt``): a user, None (wrong),
        or ``LoginThrottled``. ``browser``: the known-browser cookie sent (``remember_browser``);
        ``session``: the password typed again inside that live session (see ``_keys``)."""
        user = self.login_throttle.attempt(self._keys(username, address, browser, session),
                                           lambda: self.authenticate(username, password))
        if user is not None and user.username == "admin":
            self.first_password_path.unlink(missing_ok=True)  # seen and used: no copy left lying around
        return user

    def _login_quietly(self, username: str, password: str, address: str | None,
                       session: str | None = None) -> User | None:
        """``login`` for a password typed again inside a session: a disabled account is None."""
        try:
            return self.login(username, password, address, session=session)
        except AccountDisabled:
            return None

    def unlock(self, username: str, conn: sqlite3.Connection | None = None) -> int:
        """Forget every failed log-in for ``username`` (an admin's unlock); returns how many.
        ``conn``: inside the caller's transaction (a new password's)."""
        return self.login_throttle.unlock(_throttle_name(username), conn)

    def locked_users(self) -> set[str]:
        """User names locked now from some address or browser (for the admin's Users page)."""
        return self.login_throttle.locked_users()

    def change_password(self, user: User, current: str, new: str, again: str | None = None,
                        address: str | None = None, session: str | None = None) -> User:
        """A user's own change (the account pages): check ``current`` (and ``again``, the
        form's second entry) and set ``new``; every session of the user ends, so the caller
        starts a fresh one for the returned, updated user. ``current`` is checked as a
        log-in from ``address``, throttled and counted: a stolen session cannot be used to
        guess the password behind it faster than the log-in page allows. ``session``: the
        session's cookie, counted in place of the name from every address (``_keys``)."""
        if again is not None and new != again:
            raise AuthError("the two new passwords differ", "again")
        if self._login_quietly(user.username, current, address, session) is None:
            raise AuthError("the current password is wrong", "current")
        if new == current:
            raise AuthError("the new password must differ from the current one", "new")
        self.set_password(user.id, new)
        return self.get(user.id) or user

    # ------------------------------------------------------------ users
    def create_user(self, username: str, password: str, role: str = "student", must_change: bool = False) -> User:
        if not valid_username(username):
            offer = suggested_username(username, lambda name: self.find(name) is not None)
            raise AuthError(USERNAME_RULE + (f"; {offer!r} would do" if offer else ""), "username")
        if role not in ROLES:
            raise AuthError(f"role must be one of {ROLES}", "role")
        check_password_rules(password, username)
        if self.find(username):
            raise AuthError(f"the user {username!r} already exists", "username")
        try:
            return _insert_user(self.store.connect(), username, hash_password(password), role, must_change)
        except sqlite3.IntegrityError:  # made meanwhile (another admin's form, hashed at the same moment)
            if self.find(username):
                raise AuthError(f"the user {username!r} already exists", "username") from None
            raise

    def create_students(self, names: list[str], lines: list[int] | None = None) -> list[tuple[User, str]]:
        """A class at once: a student account for each name, each with a generated password
        they replace at their first log-in; returns (user, password) to be handed out once.
        All names are checked first: one bad or taken name creates none and is named with its
        line, so the list is corrected and sent again whole. ``lines``: each name's line in
        what the admin typed (empty lines skipped there; else 1, 2, ...): "line 5" named the
        fifth name, on the sixth line of a list with an empty one."""
        lines = lines or list(range(1, len(names) + 1))
        wanted = {name.lower() for name in names}
        problems, seen, offered, existing, bad = [], set(), set(), 0, False

        def unavailable(name: str) -> bool:  # an account's, or a name on the list or offered for another line
            return name in wanted or name in offered or self.find(name) is not None

        for line, name in zip(lines, names):
            if not valid_username(name):
                bad, offer = True, suggested_username(name, unavailable)
                offered.add(offer)
                problems.append(f"line {line} ({name[:40]!r}): not a user name" + (
                    f": {offer} would do" if offer else ": one name a line" if any(c in name for c in ",;") else ""))
            elif name.lower() in seen:
                problems.append(f"line {line} ({name}): twice in the list")
            elif self.find(name):
                existing += 1
                problems.append(f"line {line} ({name}): the user already exists")
            seen.add(name.lower())
        if names and existing == len(names):  # the same list again: a second send after the sheet's minute, another day
            raise AuthError("every name on the list has an account already: was this list sent before? Their first "
                            "passwords were shown then; a lost one is reset on the student's row", "names")
        if problems:
            raise AuthError("; ".join(problems) + (f" ({USERNAME_RULE})" if bad else ""), "names")
        passwords = [_temporary_password_for(name) for name in names]
        hashes = [hash_password(pw) for pw in passwords]  # before the write lock: scrypt is the slow part
        made = []
        try:
            with self.store.transaction() as conn:  # all or none: the page says either
                for name, password, hashed in zip(names, passwords, hashes):
                    made.append((_insert_user(conn, name, hashed, "student", must_change=True), password))
        except sqlite3.IntegrityError:  # made meanwhile by another admin
            taken = [name for name in names if self.find(name)]
            raise AuthError(f"{', '.join(taken) or 'a name'}: the user already exists (made just now); "
                            "no student was created", "names") from None
        return made

    def find(self, username: str) -> User | None:
        if not _storable(username):
            return None
        return next(map(_user, self.store.query(f"SELECT {USER_COLUMNS} FROM users WHERE username = ?", (username,))), None)

    def get(self, user_id: int) -> User | None:
        return next(map(_user, self.store.query(f"SELECT {USER_COLUMNS} FROM users WHERE id = ?", (user_id,))), None)

    def list_users(self) -> list[User]:
        return [_user(r) for r in self.store.query(f"SELECT {USER_COLUMNS} FROM users ORDER BY username")]

    def usernames(self, role: str) -> list[str]:
        """The user names of one role (the students' a desk label may not hold: fleet/publisher)."""
        return [u.username for u in self.list_users() if u.role == role]

    def set_password(self, user_id: int, password: str, must_change: bool = False) -> None:
        """Set a password and end the user's sessions. ``must_change``: the password was
        chosen for them (an admin's reset, a technician's), so every page but /account
        waits until they choose their own; their own change (``change_password``) clears it."""
        user = self.get(user_id)
        check_password_rules(password, user.username if user else "")
        with self.store.transaction() as conn:  # one write: a new password never leaves the old sessions (a thief's) alive
            conn.execute("UPDATE users SET password_hash = ?, must_change_password = ? WHERE id = ?",
                         (hash_password(password), int(must_change), user_id))
            conn.execute("DELETE FROM sessions WHERE user_id = ?", (user_id,))
            if user:  # a new password from an admin also lifts a lock on the name (in the same write: a failure
                self.unlock(user.username, conn)  # after the commit said "nothing changed" of a changed password)
        if user and user.username == "admin":  # a generated first-start password waiting on disk no longer works
            self.first_password_path.unlink(missing_ok=True)

    def give_password(self, user_id: int) -> str:
        """A generated password for ``user_id`` (``set_password``, to be replaced at the next
        log-in); returns it, to be shown once. A forgotten password was reset only to one the
        admin typed once into a masked field: a typo, and nobody knew the student's password."""
        user = self.get(user_id)
        password = _temporary_password_for(user.username if user else "")
        self.set_password(user_id, password, must_change=True)
        return password

    def set_role(self, user_id: int, role: str) -> User:
        """Give ``user_id`` another role, keeping their uploads (deleting and recreating the
        account lost them). Fewer rights end their sessions at once, as disabling does: the
        role is read at each request, but a page an admin left open keeps their forms'
        confirmed password. The last enabled admin keeps the role (no one could manage users);
        checked in the write itself, so two admins demoting each other at once cannot both win."""
        if role not in ROLES:
            raise AuthError(f"the role must be one of {', '.join(ROLES)}", "role")
        with self.store.transaction() as conn:
            before = _user_in(conn, user_id)
            if before is None:
                raise AuthError("that user no longer exists")
            if role != "admin":
                _keep_an_admin(conn, before, field="role")
            conn.execute("UPDATE users SET role = ? WHERE id = ?", (role, user_id))
            if RIGHTS[role] < RIGHTS[before.role]:
                conn.execute("DELETE FROM sessions WHERE user_id = ?", (user_id,))
        return User(before.id, before.username, role, before.disabled, before.must_change_password)

    def set_disabled(self, user_id: int, disabled: bool) -> None:
        """Disable (ending their sessions) or enable an account; the last enabled admin is not
        disabled (``_keep_an_admin``)."""
        with self.store.transaction() as conn:
            if disabled:
                _keep_an_admin(conn, _user_in(conn, user_id), "disabled")
            conn.execute("UPDATE users SET disabled = ? WHERE id = ?", (int(disabled), user_id))
            if disabled:
                conn.execute("DELETE FROM sessions WHERE user_id = ?", (user_id,))

    def delete_user(self, user_id: int) -> int:
        """Delete an account with its uploads and their kept images, in one write; returns the
        uploads deleted. The last enabled admin is not deleted (``_keep_an_admin``), nor its
        photos: two admins deleting each other at once lost the refused one's photos, deleted
        before its account was checked."""
        gone: list[User] = []

        def the_account(conn: sqlite3.Connection) -> None:
            user = _user_in(conn, user_id)
            _keep_an_admin(conn, user, "deleted")
            conn.execute("DELETE FROM users WHERE id = ?", (user_id,))
            gone[:] = [user] if user else []

        uploads = self.store.delete_user_data(user_id, also=the_account)
        for user in gone:  # its failed log-ins name it: they go with it
            self.unlock(user.username)
        self.store.forget_deleted()  # the name must not stay readable in the write-ahead log
        return uploads

    def authenticate(self, username: str, password: str) -> User | None:
        rows = self.store.query(f"SELECT {USER_COLUMNS}, password_hash FROM users WHERE username = ?",
                                (username,)) if _storable(username) else []
        if not rows:
            verify_password(password or "", _dummy_hash())  # the same work as a known name
            return None
        row = rows[0]
        if not verify_password(password or "", row["password_hash"]):
            return None
        if row["disabled"]:
            raise AccountDisabled("this account is disabled: ask an admin to enable it (Admin, Users)")
        self.store.execute("UPDATE users SET last_login = ? WHERE id = ?", (self.wall(), row["id"]))
        return _user(row)

    @property
    def first_password_path(self):
        return self.store.data_dir / FIRST_PASSWORD_FILE

    def ensure_admin(self) -> str | None:
        """On an empty database create ``admin``; returns a generated password to show once.

        A generated one is also kept in ``first_password_path`` (mode 0600) until ``admin``
        first logs in, written before the account exists so a crash cannot leave an
        account whose password nobody has."""
        if self.store.query("SELECT 1 FROM users LIMIT 1"):
            return None
        chosen = os.environ.get("ENGAGE_ADMIN_PASSWORD", "")  # empty (a unit file's bare line): not chosen
        if chosen:
            try:
                check_password_rules(chosen, "admin")
            except AuthError as exc:
                raise AuthError(f"ENGAGE_ADMIN_PASSWORD: {exc}; set another, or unset it to have one generated "
                                "and printed") from None
        generated = not chosen
        password = chosen or secrets.token_urlsafe(12)
        if generated:
            atomic_write(self.first_password_path,
                         f"{password}\n# engage-edge first start: log in as 'admin' with the password above.\n"
                         "# This file is deleted at that first log-in; change the password then.\n", mode=0o600)
        self.create_user("admin", password, "admin", must_change=generated)
        return password if generated else None

    # ------------------------------------------------------------ sessions
    def start_session(self, user: User) -> tuple[str, str]:
        """A new session: (cookie token, csrf token)."""
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
        (wall, mono), th = self._now(), _token_hash(token)
        self.store.execute("INSERT INTO sessions(token_hash, user_id, csrf, created, last_seen, confirmed) "
                           "VALUES (?, ?, ?, ?, ?, ?)", (th, user.id, csrf, wall, wall, wall))
        for what in ("created", "seen", "written", "confirmed"):
            self._mark((what, th), wall, mono)
        return token, csrf

    def recently_confirmed(self, token: str | None) -> bool:
        """Whether this session's user typed their password (log-in or ``confirm``) within
        ``confirm_s``: an admin's change needs it, so a browser left logged in on a
        classroom computer cannot be used to turn on frame storage or add an admin."""
        if not self.confirm_s:
            return True
        th = _token_hash(token or "")
        rows = self.store.query("SELECT confirmed FROM sessions WHERE token_hash = ?", (th,))
        return bool(rows) and self._elapsed(("confirmed", th), rows[0]["confirmed"], self._now(),
                                            future=math.inf) <= self.confirm_s

    def confirm(self, token: str, user: User, password: str, address: str | None = None) -> bool:
        """The session's user typed their password again: throttled like a log-in (a stolen
        session cannot guess it faster), and on success the session counts as confirmed now."""
        again = self._login_quietly(user.username, password, address, session=token)
        if again is None or again.id != user.id:
            return False
        (wall, mono), th = self._now(), _token_hash(token)
        self.store.execute("UPDATE sessions SET confirmed = ? WHERE token_hash = ?", (wall, th))
        self._mark(("confirmed", th), wall, mono)
        return True

    def _expired(self, th: str, created: float, last_seen: float, now: tuple[float, float]) -> bool:
        """Idle too long, or past its lifetime (a stored time in the future: ended, never stretched)."""
        return (self._elapsed(("seen", th), last_seen, now, future=math.inf) > self.idle_s
                or self._elapsed(("created", th), created, now, future=math.inf) > self.max_age_s)

    def session_user(self, token: str | None, refresh: bool | Callable[[User], bool] = True) -> tuple[User, str] | None:
        """The live session's user and CSRF token. ``refresh``: the request is the user's
        own doing (a page, a form), so the idle timer starts again; a page's background
        poll (the header's state each second, the live stream's re-check) passes False,
        or a page left open would never time out; or it is asked of the user (by role)."""
        if not token:
            return None
        th, now = _token_hash(token), self._now()
        rows = self.store.query(
            f"SELECT s.csrf, s.created, s.last_seen, {USER_COLUMNS} "  # (names only users has)
            "FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = ?", (th,))
        if not rows:
            return None
        r = rows[0]
        if r["disabled"] or self._expired(th, r["created"], r["last_seen"], now):
            self.end_session(token)
            return None
        if callable(refresh):
            refresh = refresh(_user(r))
        if refresh:  # the idle timer restarts here, in memory; the row follows at most every 30 s: fewer writes
            wall, mono = now
            if self._elapsed(("written", th), r["last_seen"], now, future=math.inf) > min(30.0, self.idle_s / 4):
                try:  # only over the value read: a parallel request may have written it meanwhile
                    if self.store.execute("UPDATE sessions SET last_seen = ? WHERE token_hash = ? AND last_seen = ?",
                                          (wall, th, r["last_seen"])).rowcount:
                        self._mark(("written", th), wall, mono)
                        self._mark(("seen", th), wall, mono)
                        return _user(r), r["csrf"]
                except sqlite3.OperationalError as exc:  # a full disk, a long lock: the session holds on regardless
                    log.debug("session not refreshed: %s", exc)  # (a page on a full disk must still say it is full)
            self._mark(("seen", th), r["last_seen"], mono, only_over=r["last_seen"])
        return _user(r), r["csrf"]

    def session_time_left(self, token: str | None) -> tuple[float, str] | None:
        """(seconds, which limit) until this session ends by itself unless the user does
        something: "idle" (anything the user does restarts it) or "lifetime" (nothing does:
        ``max_age_s`` after the log-in); None when it has ended. Read without restarting the
        idle timer: a page's warning asks it, and another tab or a pause pressed in place may
        have restarted the timer since that page was loaded."""
        th, now = _token_hash(token or ""), self._now()
        rows = self.store.query("SELECT created, last_seen FROM sessions WHERE token_hash = ?", (th,))
        if not rows or self._expired(th, rows[0]["created"], rows[0]["last_seen"], now):
            return None
        idle = self.idle_s - self._elapsed(("seen", th), rows[0]["last_seen"], now, future=math.inf)
        lifetime = self.max_age_s - self._elapsed(("created", th), rows[0]["created"], now, future=math.inf)
        return (max(0.0, idle), "idle") if idle <= lifetime else (max(0.0, lifetime), "lifetime")

    def session_started(self, token: str | None) -> float | None:
        """When this session's log-in was (wall clock), or None for no such session."""
        rows = self.store.query("SELECT created FROM sessions WHERE token_hash = ?", (_token_hash(token or ""),))
        return rows[0]["created"] if rows else None

    def end_session(self, token: str) -> None:
        self.store.execute("DELETE FROM sessions WHERE token_hash = ?", (_token_hash(token),))

    def other_sessions(self, user: User, token: str) -> int:
        """How many other live log-ins ``user`` has (other browsers, other devices)."""
        now = self._now()
        rows = self.store.query("SELECT token_hash, created, last_seen FROM sessions WHERE user_id = ? "
                                "AND token_hash != ?", (user.id, _token_hash(token)))
        return sum(not self._expired(r["token_hash"], r["created"], r["last_seen"], now) for r in rows)

    def end_other_sessions(self, user: User, token: str) -> int:
        """Log ``user`` out everywhere but this session (a browser left logged in somewhere, a
        lost laptop), and make every browser known for them a stranger again: its guesses then
        count with everyone's. The caller gives this browser a fresh entry (``remember_browser``)."""
        with self.store.transaction() as conn:
            conn.execute("UPDATE users SET browsers_generation = browsers_generation + 1 WHERE id = ?", (user.id,))
            return conn.execute("DELETE FROM sessions WHERE user_id = ? AND token_hash != ?",
                                (user.id, _token_hash(token))).rowcount

    def end_sessions(self, user_id: int) -> int:
        """Log a user out everywhere (an admin's doing: a student's log-in left open on a shared
        computer, whose next user would act as them); returns how many log-ins ended. Their
        password and known browsers stay: nothing of theirs was guessed."""
        return self.store.execute("DELETE FROM sessions WHERE user_id = ?", (user_id,)).rowcount

    def purge_sessions(self) -> int:
        """Delete expired sessions and failed log-ins past the throttle's window or its lock,
        whichever is longer (a lock must outlive the failures that made it); returns
        how many rows went. A failed log-in names what was typed and the address: the
        caller empties the write-ahead log after (``Store.forget_deleted``) when any went.
        Judged as a log-in would judge them (on the monotonic clock), so a clock step
        purges nothing that is still live."""
        now = self._now()
        with self._seen_lock:
            known = set(self._seen_at)
        sessions = self.store.query("SELECT token_hash, created, last_seen FROM sessions")
        ended = [(r["token_hash"],) for r in sessions if self._expired(r["token_hash"], r["created"], r["last_seen"], now)]
        old = self.login_throttle.expired(now)
        gone = 0
        if ended or old:
            with self.store.transaction() as conn:
                gone = conn.executemany("DELETE FROM sessions WHERE token_hash = ?", ended).rowcount
                gone += self.login_throttle.delete(conn, old)
        self._forget(known, ("created", "seen", "written", "confirmed"),
                     {r["token_hash"] for r in self.store.query("SELECT token_hash FROM sessions")})
        self._forget(known, ("failure",), self.login_throttle.failure_ids())
        return gone
