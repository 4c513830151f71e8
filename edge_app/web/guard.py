"""What every route shares: the request's user, the log-in, role, CSRF and same-origin
checks, the session cookie, and the page and JSON-error renderers that refusals use.

Bottle's ``request`` and ``response`` are per-thread, so one ``Guard`` per app serves
every request; the user is looked up once per request and cached in its environ.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from typing import Callable, NamedTuple, NoReturn
from urllib.parse import quote, urlencode, urlsplit

import bottle
from bottle import HTTPResponse, request, response

from edge_app import __version__
from edge_app.addresses import is_loopback
from edge_app.engagement import level_words
from edge_app.store.accounts import PASSWORD_CHANGE_PENDING, User
from edge_app.wall_clock import local_time
from edge_app.web import hardening
from edge_app.web.expiring import ExpiringMap
from edge_app.web.hardening import cross_site, csrf_sent_matches, json_error, wants_html  # the routes import json_error from here too
from edge_app.web.proxies import over_tls

COOKIE = "ee_session"


def wants_json() -> bool:
    return request.path.startswith("/api/") or "application/json" in request.headers.get("Accept", "")


# What a page open in a browser asks for by itself (static/state.js each second, live.js's
# timeline, dashboard.js's tiles, the live stream): these check the session without
# starting its idle timer again, so ``web.session_idle_minutes`` ends a session on a
# classroom computer left on a page, not only in a closed tab.
BACKGROUND_PATHS = frozenset({"/api/state", "/api/timeline", "/api/admin/today", "/api/privacy", "/live.mjpg",
                              "/api/session"})


def _stream_for_a_picture() -> bool:
    """The live stream asked for by a page's picture (its error event handles a JSON answer);
    the same address typed into a tab is a page's request and gets a page."""
    return request.path == "/live.mjpg" and not wants_html()


def background_request() -> bool:
    """A page's own poll, not something the user did (see ``BACKGROUND_PATHS``)."""
    return request.method in ("GET", "HEAD") and request.path in BACKGROUND_PATHS


def desk_view_poll() -> bool:
    """The desk view's poll (``/api/state?view=desk``)."""
    return request.path == "/api/state" and request.query.get("view") == "desk"


def keeps_a_display_on(user: User) -> bool:
    """Whether ``user``'s desk view keeps their log-in alive: a display on a tablet by the
    instructor's desk is there to be left open (as the classroom page is for a lesson; both
    still end after ``web.session_max_hours``). Not a student's: one left open anywhere in the
    room read, all day, the level of whoever sat at the desk, another minor's record."""
    return user.role != "student"



def admins_only_words(user: User) -> str:
    """The 403 page for an admin page opened by anyone else: what to do, not only "no". An
    instructor reached one from a bookmark kept from when they were an admin, or a link an
    admin sent, and read "This page is for admins only." with nothing to try."""
    return (f"This page is for admins only, and you are logged in as {user.username} ({user.role}). "
            "To see it, log out and log in with an admin's account; to have something changed here, "
            "ask this device's admin.")


def safe_next(value: str | None) -> str:
    """``value`` when it is a path on this site, else ``"/"``: the login's ``next`` must
    never send a user to another site (``//host``, ``/\\host``, ``http:``, control bytes)."""
    nxt = (value or "").strip()
    if (not nxt.startswith("/") or nxt.startswith("//") or "\\" in nxt
            or any(ord(c) < 32 or ord(c) == 127 for c in nxt)):
        return "/"
    parts = urlsplit(nxt)
    if parts.scheme or parts.netloc or nxt.startswith("/login"):
        return "/"
    return nxt


def _here() -> str:
    """This request's path and query: where to come back to."""
    return request.fullpath + ("?" + request.query_string if request.query_string else "")


def _come_back() -> str:
    """Where to return after logging in: this page, or for a form's target (a GET there
    is a 405) the page of this site the form was sent from, else the start page."""
    if request.method == "GET":
        return _here()
    sent_from = urlsplit(request.headers.get("Referer", ""))
    if sent_from.netloc != request.get_header("Host", ""):
        return "/"
    return (sent_from.path or "/") + ("?" + sent_from.query if sent_from.query else "")


def _ended() -> str:
    """``&ended=...`` when this browser had a session that is over (idle too long, its
    lifetime up, logged out from another browser): the log-in page says so, and for a form
    that its content was not saved, instead of a bare log-in that looks like nothing was lost."""
    if not request.get_cookie(COOKIE):
        return ""
    return "&ended=" + ("page" if request.method in ("GET", "HEAD") else "form")


def account_url(then: str) -> str:
    """/account, and where to go on once the password is changed."""
    then = safe_next(then)
    return "/account" + ("?next=" + quote(then, safe="/") if then != "/" else "")


def client_address() -> str:
    # the socket's peer, or the client a trusted proxy names (web/proxies.py); never bottle's
    # remote_addr, which believes any client's X-Forwarded-For (a way to dodge throttling)
    return request.environ.get("REMOTE_ADDR") or "unknown"


def from_this_machine() -> bool:
    """A request from this machine: the socket's peer is loopback, and so is the client a
    trusted proxy names (a host in a trusted network could name loopback in its header)."""
    return is_loopback(client_address()) and is_loopback(request.environ.get("ee.peer") or client_address())


def admin_past_given_password(found: tuple[User, str] | None) -> bool:
    """``found`` (a request's log-in, or None) is an admin who has chosen their own password."""
    return bool(found and found[0].is_admin and not found[0].must_change_password)


def told_details(found: tuple[User, str] | None) -> bool:
    """Whether ``/healthz`` (device and classroom alike) tells this request the build, the
    broker's names and counts: the machine itself and a logged-in admin, not the network."""
    return from_this_machine() or admin_past_given_password(found)


NOTE_KEPT_S = 10 * 60  # a reload of the page a form led to says what happened for this long
NOTES_KEPT = 500  # at most, per process: a client sending forms in a loop cannot grow memory
FORM_KEPT_S = 10 * 60  # a form sent while the password was stale, for its page once it is confirmed
FORMS_KEPT = 50


class OutcomeNotes:
    """The outcome of a form ("Deleted anna.schmidt and 3 uploads."), kept in this process
    for the page the form leads back to. Only an opaque id travels in the redirect, so no
    student's name sits in a shared computer's browser history or a proxy's access log.
    A note is read back only by the session that made it (a forged or shared link shows
    nothing), for ``keep_s``; the oldest are dropped past ``most``, and a restart forgets
    them all (the page then shows no message). A note leaves memory when its time is up,
    not at the next note: a kept class list of students' names stayed there, after an
    admin confirmed and walked away, until another form came."""

    def __init__(self, keep_s: float = NOTE_KEPT_S, most: int = NOTES_KEPT,
                 clock: Callable[[], float] = time.monotonic):
        self._notes: ExpiringMap[str, tuple[bytes, str, str]] = ExpiringMap(keep_s, most, clock)  # id -> owner, kind, text

    def add(self, owner: str, kind: str, message: str) -> str:
        """Keep ``message`` for the session whose secret is ``owner``; its id."""
        note_id = secrets.token_urlsafe(16)
        self._notes.put(note_id, (_owner_key(owner), kind, message))
        return note_id

    def read(self, owner: str, note_id: str) -> tuple[str, str] | None:
        """(kind, message) of the note ``note_id`` when ``owner``'s session made it and it
        has not expired; else None. Reading keeps it: a reload shows it again."""
        found = self._notes.get(note_id)
        if found is None or not owner or not hmac.compare_digest(found[0], _owner_key(owner)):
            return None
        return found[1], found[2]

    def drop(self, owner: str, kind: str) -> None:
        """Forget ``owner``'s notes of ``kind`` now, before they expire."""
        key = _owner_key(owner)
        self._notes.remove_if(lambda _, note: note[1] == kind and hmac.compare_digest(note[0], key))

    def __len__(self) -> int:
        return len(self._notes)


def _owner_key(owner: str) -> bytes:
    # a digest, not the session's CSRF token itself, is what sits in memory beside the note
    return hashlib.sha256(owner.encode()).digest()


class ShownState(NamedTuple):
    """The loop's state as one viewer is shown it (``Guard.shown_state``)."""
    level: str
    group: str


class Guard:
    """The checks and renderers routes call; built once by ``make_app`` from the context."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.tls = bool(ctx.cfg.web.tls_cert)
        self.notes = OutcomeNotes()
        # a form held back for the password (``require_recent_password(keep=...)``): memory only,
        # a few, for minutes: a class list names students, and is never written to disk
        self.kept_forms = OutcomeNotes(keep_s=FORM_KEPT_S, most=FORMS_KEPT)

    @property
    def secure_cookie(self) -> bool:
        """This request came over TLS, the server's own or a trusted proxy's: the session
        cookie is Secure and HSTS is sent. Behind nginx for TLS (``web.trusted_proxies``) it
        was neither, as web.tls_cert alone decided."""
        return self.tls or over_tls()

    def sees_picture(self, user: User) -> bool:
        """The camera picture shows whoever sits at the desk now, a minor: by default only an
        admin sees it (``privacy.live_video``), and with it the face's expression, also in the
        words of the level that name it ("Engaged - likes the topic"); every account sees the
        level itself."""
        return user.is_admin or self.ctx.cfg.privacy.live_video == "everyone"

    def shown_state(self, user: User, state) -> ShownState:
        """``state`` (the loop's) as ``user`` is shown it (``sees_picture``)."""
        return ShownState(level_words(state.level, state.group, self.sees_picture(user)), state.group)

    def current(self) -> tuple[User, str] | None:
        """The logged-in user and their CSRF token, or None."""
        cached = request.environ.get("ee.user")
        if cached is None:
            refresh = keeps_a_display_on if desk_view_poll() else not background_request()
            cached = self.ctx.accounts.session_user(request.get_cookie(COOKIE), refresh=refresh) or False
            request.environ["ee.user"] = cached
        return cached or None

    def require_user(self, admin: bool = False, given_password_ok: bool = False) -> User:
        """The logged-in user, or the way to log in. A user still on a password given to
        them (the generated first-start one, printed to the console and the service's
        journal, or one an admin set) is sent to /account (a script gets 403) until they
        choose their own."""
        found = self.current()
        if not found:
            if wants_json() or _stream_for_a_picture():
                raise json_error(401, "log in first")
            raise bottle.redirect("/login?next=" + quote(_come_back(), safe="/") + _ended())
        user = found[0]
        if user.must_change_password and not given_password_ok:
            if wants_json() or _stream_for_a_picture():
                raise json_error(403, PASSWORD_CHANGE_PENDING)
            # come back to a page, never to a form's target (a GET there is a 405)
            raise bottle.redirect(account_url(_come_back()))
        if admin and not user.is_admin:
            if wants_json():
                raise json_error(403, "admins only")
            raise HTTPResponse(self.page("error", title="Not allowed", message=admins_only_words(user)), 403)
        return user

    def check_csrf(self) -> None:
        found = self.current()
        if not found or not csrf_sent_matches(found[1]):
            if wants_json():
                raise json_error(403, "missing or wrong X-CSRF-Token: send the csrf value that /api/login returned")
            raise HTTPResponse(self.page("error", title=hardening.STALE_FORM_TITLE,
                                         message=hardening.STALE_FORM_WORDS), 403)

    def require_recent_password(self, keep: dict[str, str] | None = None) -> None:
        """An admin's change goes through only when they typed their password within
        ``web.confirm_password_minutes`` (log-in or /confirm): a browser left logged in on
        a classroom computer must not be enough to add an admin or turn on frame storage.
        Call after ``check_csrf``. Otherwise nothing is changed: a page asks for the
        password and leads back to the admin page the form was on; a script gets 403.

        ``keep``: fields of the form worth not typing again (a class list pasted from a
        spreadsheet; never a password). They wait in this process's memory for
        ``FORM_KEPT_S``, for this session only, and the page the confirmation leads back to
        gets them from ``kept_form`` to fill its form in again."""
        if self.ctx.accounts.recently_confirmed(request.get_cookie(COOKIE)):
            return
        minutes = round(self.ctx.accounts.confirm_s / 60)
        if wants_json():
            raise json_error(403, f"confirm your password first (last typed over {minutes} min ago): "
                                  "POST /api/confirm {\"password\": ...}, then send this again")
        back = "/".join(request.path.split("/")[:3])  # /admin/users/5/password -> /admin/users
        found = self.current()
        kept = bool(found and keep and any(keep.values()))
        if found and kept:
            back += "?" + urlencode({"form": self.kept_forms.add(found[1], back, json.dumps(keep))})
        raise HTTPResponse(self.page("confirm", title="Confirm your password", error="", next=safe_next(back),
                                     stale=True, minutes=minutes, kept=kept, kept_minutes=FORM_KEPT_S // 60), 403)

    def kept_form(self) -> dict[str, str]:
        """The fields ``require_recent_password`` kept for this page (its ``?form=``), for
        this session; {} when none, expired, or another session's."""
        found = self.current()
        note = self.kept_forms.read(found[1] if found else "", request.query.get("form", ""))
        if note is None or note[0] != request.path:
            return {}
        fields = json.loads(note[1])
        return {str(k): str(v) for k, v in fields.items()}

    def forget_kept_forms(self, path: str) -> None:
        """This session's forms kept for ``path`` go now (the form was sent again and done):
        a class list is not held in memory longer than needed."""
        found = self.current()
        if found:
            self.kept_forms.drop(found[1], path)

    def check_same_origin(self) -> None:
        if cross_site():
            if wants_json():
                raise json_error(403, "cross-site request refused")
            raise HTTPResponse(self.page("error", title="Refused", message="This form was sent from another site, so "
                                         "it was refused. Open this device's page directly and try again."), 403)

    def set_session_cookie(self, token: str) -> None:
        """No Max-Age: the cookie ends when the browser is closed (a shared school computer),
        and the session itself at its idle or absolute limit on the server (``Accounts``)."""
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict", secure=self.secure_cookie, path="/")

    # ------------------------------------------------------------ the outcome of a form, on the next page
    def flash_redirect(self, path: str, message: str, error: bool = False) -> NoReturn:
        """Back to ``path`` with the outcome shown there. The text stays on the server
        (``OutcomeNotes``): the address holds only ``note=<id>``, so a name in the message
        is not kept in the browser's history or a proxy's log, and a link from elsewhere
        cannot make an admin page announce "Your device was wiped, call ..." (see ``flash``)."""
        found = self.current()
        if not found:  # no session to show it to (every form's route has logged its user in)
            raise bottle.redirect(path)
        note_id = self.notes.add(found[1], "error" if error else "done", message)
        raise bottle.redirect(path + ("&" if "?" in path else "?") + urlencode({"note": note_id}))

    def flash(self) -> dict[str, str]:
        """``done`` and ``error``: the text of the query's ``note`` when this session made it, else ""."""
        shown = {"done": "", "error": ""}
        found = self.current()
        note = self.notes.read(found[1] if found else "", request.query.get("note", ""))
        if note:
            shown[note[0]] = note[1]
        return shown

    def bare_page(self, title: str, message: str, home: bool = True) -> str:
        """The error page as if nobody were logged in: for a request this device will not
        serve (an unknown Host: no session is looked up, nothing of anyone's is shown), and
        when drawing ``page`` failed. ``home``: link the start page (not under a refused name)."""
        return bottle.template("error", user=None, csrf="", version=__version__, path=request.path, now=None,
                               local_time=local_time, camera_switch=False, paused=None, title=title,
                               message=message, home=home)

    def page(self, name: str, **values) -> str:
        """Render ``views/<name>.tpl`` with the user, CSRF token, version and current state every page shows."""
        found = self.current()
        values.setdefault("title", "engage-edge")
        loop = self.ctx.loop
        # nothing live for a user still on a given password (whoever read the note could see
        # it): /account is the only page they get, and its header shows no state and no switch
        viewer = found is not None and not found[0].must_change_password
        # the header's pause button: for them too (pausing films less; resuming waits for their own password)
        values.setdefault("camera_switch", loop is not None and found is not None)
        values.setdefault("paused", loop.privacy.active if loop is not None else None)
        # the header dot: the loop's state now (state.js keeps it fresh); no loop, no dot
        now = self.shown_state(found[0], loop.state) if found is not None and viewer and loop is not None else None
        values.setdefault("idle_s", int(self.ctx.accounts.idle_s))  # when the page warns (views/idle_warning.tpl) ...
        left = self.ctx.accounts.session_time_left(request.get_cookie(COOKIE)) if found is not None else None
        values.setdefault("session_left_s", int(left[0]) if left else None)  # ... sooner near web.session_max_hours
        return bottle.template(name, user=found[0] if found else None, csrf=found[1] if found else "",
                               version=__version__, path=request.path, now=now, local_time=local_time, **values)


def requested_page() -> int:
    """The ``?page=`` asked for: 1 when missing or not a number, at most a million (a
    table's OFFSET stays a SQLite integer)."""
    try:
        return min(max(1, int(request.query.get("page", 1))), 1_000_000)
    except (ValueError, OverflowError):
        return 1


def page_at_most_last(fetch: Callable[[int], tuple[list, int]], page_no: int, size: int) -> tuple[list, int, int, int]:
    """(rows, total, page_no, pages) of a paged table from ``fetch(page_no) -> (rows,
    total)``. A link past the last page (rows deleted or purged since it was made) gets the
    last page, not an empty one under "120 rows" with no way back."""
    rows, total = fetch(page_no)
    pages = max(1, (total + size - 1) // size)
    if page_no > pages:
        page_no = pages
        rows, total = fetch(page_no)
    return rows, total, page_no, pages
