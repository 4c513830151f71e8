"""Known browsers: the signed cookie that says which user names a browser has logged in as.

A browser known for a name is throttled by its own failures only (``login_throttle.ThrottlePolicy``),
so guesses from elsewhere cannot lock the owner out of it. Nothing is stored on the server:
each cookie entry is signed with a key kept beside the database (never in it, so a copied
database cannot mint entries) and over the account's password hash, so a new password or a
deleted account ends it, and over the account's generation number, which "Log out everywhere
else" raises. ``Accounts`` decides whose entry to check or issue; this module only
keeps the key and reads and writes the cookie.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import re
import secrets
import threading
from pathlib import Path

from edge_app.fsutil import atomic_write

log = logging.getLogger(__name__)

# The key that signs known-browser cookies, beside the database
BROWSER_KEY_FILE = "known-browsers.key"
KNOWN_NAMES_PER_BROWSER = 8  # names one browser's cookie remembers (a shared classroom computer)
_FIELD = re.compile(r"[A-Za-z0-9_-]{8,32}")


class KnownBrowsers:
    """The key file at ``key_path`` and the cookies it signs. Entries name a user by ``name``
    (the caller's normalised user name) and are signed over ``password_hash`` and
    ``generation`` (raised to cancel every entry for that user at once)."""

    def __init__(self, key_path: Path):
        self.key_path = key_path
        self._key: bytes | None = None  # read (or made) at first use: see _secret
        self._lock = threading.Lock()

    def _secret(self) -> bytes:
        """The key that signs known-browser cookies: made once per data directory (mode 0600,
        never in the database, so a copied database cannot mint them), kept across restarts
        so a reboot does not make the owner's browser a stranger. A damaged file is made
        anew (browsers log in once more to be known); an unreadable one leaves a key for this
        process only, and a log-in never fails for it."""
        with self._lock:
            if self._key is None:
                path = self.key_path
                try:
                    self._key = self._read_key(path)
                except OSError as exc:
                    log.error("%s cannot be read or written (%s): browsers known before are strangers again after "
                              "each restart; let the service's user own it", path, exc.strerror or exc)
                    self._key = secrets.token_bytes(32)
            return self._key

    @staticmethod
    def _read_key(path: Path) -> bytes:
        try:
            key = bytes.fromhex(path.read_text().strip())
            if len(key) == 32:
                return key
            log.warning("%s is damaged: a new one is made, so browsers log in once more to be known", path)
            atomic_write(path, secrets.token_hex(32) + "\n", mode=0o600)
        except FileNotFoundError:
            tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
            atomic_write(tmp, secrets.token_hex(32) + "\n", mode=0o600)
            try:  # a link never replaces: two processes making it at once agree on the first one
                os.link(tmp, path)
            except FileExistsError:
                pass
            finally:
                tmp.unlink(missing_ok=True)
        except ValueError:  # not hex (a half-written copy, an edit)
            log.warning("%s is damaged: a new one is made, so browsers log in once more to be known", path)
            atomic_write(path, secrets.token_hex(32) + "\n", mode=0o600)
        return bytes.fromhex(path.read_text().strip())

    def _mac(self, name: str, nonce: str, password_hash: str, generation: int) -> str:
        """The signature of one cookie entry: over the password's hash too, so a new password
        (their own change, an admin's reset, engage-edge passwd) or a deleted account ends it;
        and over the account's ``generation`` when not 0 (entries made before it existed stay valid)."""
        message = f"{name}\n{nonce}\n{password_hash}" + (f"\n{generation}" if generation else "")
        digest = hmac.new(self._secret(), message.encode(), hashlib.sha256)
        return base64.urlsafe_b64encode(digest.digest()[:16]).decode().rstrip("=")

    def _name_tag(self, name: str) -> str:
        """How a cookie entry names its user: keyed, so a shared computer's cookies do not list
        who logged in there."""
        return hmac.new(self._secret(), f"name\n{name}".encode(), hashlib.sha256).hexdigest()[:12]

    @staticmethod
    def _entries(cookie: str | None) -> list[tuple[str, str, str]]:
        """(name tag, nonce, signature) of each well-formed entry of a known-browser cookie."""
        entries = []
        for part in (cookie or "").split("|")[:KNOWN_NAMES_PER_BROWSER]:
            fields = part.split(":")
            if len(fields) == 3 and all(_FIELD.fullmatch(f) for f in fields):
                entries.append((fields[0], fields[1], fields[2]))
        return entries

    def browser_id(self, name: str, cookie: str | None, password_hash: str, generation: int = 0) -> str | None:
        """The id of this browser for ``name`` when its cookie holds a valid entry for it; else None."""
        tag = self._name_tag(name)
        for entry_tag, nonce, mac in self._entries(cookie):
            if entry_tag == tag and hmac.compare_digest(mac, self._mac(name, nonce, password_hash, generation)):
                return hashlib.sha256(nonce.encode()).hexdigest()[:16]
        return None

    def remember(self, name: str, cookie: str | None, password_hash: str, generation: int = 0) -> str:
        """The cookie's new value once ``name`` has logged in with this browser: its valid entry
        for them kept (its failures stay its own) or made, first; at most
        ``KNOWN_NAMES_PER_BROWSER`` names (a shared computer), the oldest dropped."""
        tag = self._name_tag(name)
        entries = self._entries(cookie)
        mine = [e for e in entries if e[0] == tag and hmac.compare_digest(e[2], self._mac(name, e[1], password_hash, generation))]
        if mine:
            entry = mine[0]
        else:
            nonce = secrets.token_urlsafe(12)
            entry = (tag, nonce, self._mac(name, nonce, password_hash, generation))
        others = [e for e in entries if e[0] != tag]
        return "|".join(":".join(e) for e in [entry, *others][:KNOWN_NAMES_PER_BROWSER])
