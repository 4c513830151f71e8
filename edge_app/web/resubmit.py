"""Once per form: a reloaded or double-clicked upload form is answered with the first
result, not stored again.

The upload page's form carries a random ``attempt`` token. Reloading the result page (the
browser sends the same POST again, after its "Confirm form resubmission") or clicking
Analyse twice used to analyse and store the same photo again: a second row in the
student's history and the admin's log, and a second kept image. Now the first POST
with a token records which upload it stored; a later POST with that token and the same
file (by the same user) gets that upload's id, and one that comes while the first is still
being analysed waits for it. The same token with another file is another photo (picked
instead while the first was still being analysed, or a hidden field a browser restored on
Back) and is analysed. A token whose analysis failed is forgotten, so a reload tries again (the
student may have freed space or the disk been cleaned).

The uploads table keeps each upload's ``form_key`` (a digest of the token and the file, never
the token itself), written with its row: a reload after a restart of the device or the web
process, or after the memory below has let the token go, still finds the first upload. The
key goes with its row (deleted, or removed by the retention period), so nothing grows.

Kept in memory, bounded: the forms still being analysed (a second click waits for the first)
and those finished lately, whose upload id stays known after the upload is deleted (the
form sent again is told so, 410, rather than stored again); after a restart a deleted
upload's form is analysed anew, as the student asked."""
from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

MAX_TOKENS = 512  # far more forms than a device's users submit within KEEP_S
KEEP_S = 6 * 3600  # a result page left open over a school day and reloaded
WAIT_S = 120.0  # a second click waits at most this long for the first analysis


def new_attempt() -> str:
    """A token for one rendering of the upload form."""
    return secrets.token_urlsafe(16)


def form_key(attempt: str, content: str) -> str:
    """What an upload's row keeps of the form that sent it: a digest of the token and the
    file's digest, so the token itself is never stored (nor shown with the row)."""
    return hashlib.blake2b(f"{attempt[:64]}\n{content}".encode(), digest_size=16).hexdigest()


def _none_recorded(user_id: int, key: str) -> int | None:
    return None


class Submissions:
    """(user id, attempt token, file digest) -> upload id, for the last ``MAX_TOKENS`` uploads;
    older ones (and all after a restart) are asked of ``recorded``: (user id, ``form_key``) ->
    the stored upload's id, or None."""

    def __init__(self, recorded: Callable[[int, str], int | None] = _none_recorded, max_tokens: int = MAX_TOKENS,
                 keep_s: float = KEEP_S) -> None:
        self._recorded = recorded
        self._lock = threading.Lock()
        self._seen: OrderedDict[tuple[int, str, str], tuple[float, threading.Event, list[int]]] = OrderedDict()
        self._max, self._keep = max_tokens, keep_s

    def claim(self, user_id: int, attempt: str, content: str = "", wait_s: float = WAIT_S) -> int | None:
        """None: this caller is the first with the token and must analyse (then call
        ``done`` or ``failed``). Otherwise the upload id the first one stored; while the first
        is still analysing, wait for it (up to ``wait_s``; a time-out lets this one analyse
        too). When the first fails, one of those waiting claims the token anew and analyses,
        the others wait for it in turn.

        ``content``: a digest of the file sent. The same form with another file is another
        photo (chosen instead while the first was still being analysed, or a form whose
        hidden token a browser restored on Back), never answered with the first one's result."""
        if not attempt:
            return None  # a form without a token (a script, an old page): nothing to match
        key = (user_id, attempt[:64], content)
        deadline = time.monotonic() + wait_s
        while True:
            with self._lock:
                self._forget_old()
                found = self._seen.get(key)
                if found is None:
                    stored_before = self._recorded(user_id, form_key(attempt, content))  # a restart ago, or long ago
                    if stored_before is not None:
                        return stored_before
                    self._seen[key] = (time.monotonic(), threading.Event(), [])
                    return None
            _, finished, stored = found
            if not finished.wait(max(0.0, deadline - time.monotonic())):
                return None  # still analysing after wait_s: this one goes ahead too, the first's entry stays
            if stored:
                return stored[0]
            # the first failed and its entry is gone: claim it again, or wait for whoever did

    def done(self, user_id: int, attempt: str, upload_id: int, content: str = "") -> None:
        self._finish(user_id, attempt, content, upload_id)

    def failed(self, user_id: int, attempt: str, content: str = "") -> None:
        self._finish(user_id, attempt, content, None)

    def _finish(self, user_id: int, attempt: str, content: str, upload_id: int | None) -> None:
        if not attempt:
            return
        key = (user_id, attempt[:64], content)
        with self._lock:
            found = self._seen.get(key)
            if found is None:
                return
            if upload_id is None:
                if not found[2]:  # (a send that timed out and failed too leaves the first's result)
                    del self._seen[key]
            elif not found[2]:
                found[2].append(upload_id)
        found[1].set()

    def _forget_old(self) -> None:
        """Drop the oldest finished tokens past ``keep_s`` or ``max_tokens``. A token still
        being analysed stays (those are at most one per request being served): dropping it
        would leave its waiters without an answer until their time-out, and then analysing
        and storing the photo a second time."""
        limit = time.monotonic() - self._keep
        over = len(self._seen) - self._max + 1  # room for the one about to be added
        for key, (when, finished, _) in list(self._seen.items()):
            if over <= 0 and when >= limit:
                break
            if finished.is_set():
                del self._seen[key]
                over -= 1
