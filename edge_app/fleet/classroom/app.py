"""The classroom web page and API: every desk live, for instructors (Bottle on cheroot).

Accounts and sessions are the device's own (``store.accounts``) in the service's own
data directory: an ``admin`` made at first start (``ENGAGE_ADMIN_PASSWORD`` or a
generated password), ``instructor`` users the admin adds. Live updates are Server-Sent
Events carrying only the desks that changed, so a class of hundreds stays cheap.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import bottle
from bottle import HTTPResponse, request, response

from edge_app import __version__
from edge_app.fleet.broker_link import BrokerStatus
from edge_app.fleet.classroom.levels import CHECKING, LEVELS, WAITING
from edge_app.fleet.classroom.messages import DEVICE_ID
from edge_app.fleet.classroom.model import MAX_DESKS, Classroom, expected_version
from edge_app.store.accounts import PASSWORD_CHANGE_PENDING, Accounts, AuthError, User
from edge_app.web import account_routes, hardening
from edge_app.web.guard import told_details
from edge_app.web.hardening import json_error
from edge_app.web.proxies import TrustedProxies, over_tls

log = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent
DEVICE_STATIC = HERE.parent.parent / "web" / "static"  # the device's stylesheet and icon, shared
SHARED_STATIC = {"app.css", "icon.svg"}
DEVICE_VIEWS = HERE.parent.parent / "web" / "views"  # and the templates both apps render the same way
# what the templates shared with a device (log-in, Your account) say here
SHARED_VIEW_VALUES = {"layout": "layout.tpl", "place": "this classroom page", "home_link": "Back to the classroom"}
COOKIE = "ee_classroom"


def _build() -> str:
    """This release's page: its script and styles (a version string stays one between builds of it)."""
    digest = hashlib.sha256(__version__.encode())
    for path in (HERE / "static" / "classroom.js", HERE / "static" / "classroom.css", DEVICE_STATIC / "app.css"):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


# in the page and each stream's first update: after an upgrade the service restarts and an open page's stream
# reconnects to it, its old classroom.js running against the new API; the page reloads itself instead
BUILD = _build()
VIEWERS = ("admin", "instructor")
# the longest a stream stays silent: an update with no desks then (the page takes 3 missed for a lost connection;
# a comment line would be invisible to it); also how soon a closed page's stream is noticed and its place freed
KEEPALIVE_S = 5.0
SESSION_RECHECK_S = 2.0  # how often the endless event stream re-checks its viewer's session
STREAMS_PER_SESSION = 6  # open pages of one log-in (tabs, a projector, a tablet); a seventh ends the oldest
SERVER_ERROR_PAGE = ("Something went wrong on the classroom server, so what you asked for may not have been done. "
                     "Go back and try again; if it happens again, tell whoever runs the classroom server (its log "
                     "has the details: journalctl -u engage-classroom).")


class StreamSlots:
    """Open event streams, bounded in all and per session: each holds a server thread for
    as long as its page is open, so one log-in (or a script with its cookie) opening
    streams without end would otherwise take every thread and the page from everyone.
    Past the per-session bound the log-in's oldest stream is ended, not the new one
    refused: a page that vanished without closing (a tablet's Wi-Fi dropped) holds its
    place until a write fails, and must not lock its owner out meanwhile."""

    def __init__(self, total: int, per_session: int = STREAMS_PER_SESSION):
        self.total, self.per_session = total, per_session
        self._open: dict[str, list[int]] = {}  # session -> its streams, oldest first
        self._ending: set[int] = set()  # streams told to end, until they do
        self._next = 0
        self._lock = threading.Lock()

    def acquire(self, session: str) -> int | str:
        """A stream id (call ``release`` when it ends), or why none may open."""
        with self._lock:
            if sum(map(len, self._open.values())) >= self.total:  # the ending ones still hold their threads
                return (f"all {self.total} live classroom pages this server allows are open: this page waits for "
                        "one to close (engage-edge classroom --max-pages allows more)")
            mine = self._open.setdefault(session, [])
            live = [i for i in mine if i not in self._ending]
            if len(live) >= self.per_session:
                self._ending.add(live[0])
            self._next += 1
            mine.append(self._next)
            return self._next

    def count(self, session: str | None = None) -> int:
        """Open streams: all of them, or ``session``'s."""
        with self._lock:
            return len(self._open.get(session, [])) if session is not None else sum(map(len, self._open.values()))

    def ending(self, stream: int) -> bool:
        """True once a newer page of the same log-in took this stream's place."""
        with self._lock:
            return stream in self._ending

    def release(self, session: str, stream: int) -> None:
        with self._lock:
            self._ending.discard(stream)
            mine = self._open.get(session, [])
            if stream in mine:
                mine.remove(stream)
            if not mine:
                self._open.pop(session, None)


@dataclass
class ClassroomContext:
    classroom: Classroom
    accounts: Accounts
    broker: BrokerStatus
    secure_cookie: bool = False
    started: float = 0.0
    allowed_hosts: hardening.AllowedHosts = field(default_factory=lambda: hardening.AllowedHosts.with_names(""))
    max_streams: int = 16  # live pages at once (--max-pages); the server has threads for them (service.threads_for)
    trusted_proxies: TrustedProxies = field(default_factory=TrustedProxies)
    started_monotonic: float = field(default_factory=time.monotonic)  # uptime, whatever the wall clock does
    save_expected: Callable[[list[str]], None] = lambda desks: None  # keeps the room's desk list (service.EXPECTED_KEY)

    def secure(self) -> bool:
        """This request came over TLS, the server's own (``--https-cert``: ``secure_cookie``) or
        a trusted proxy's: the session cookie is Secure and HSTS is sent. Behind nginx for TLS
        it was neither, as the certificate option alone decided."""
        return self.secure_cookie or over_tls()


def make_classroom_app(ctx: ClassroomContext) -> bottle.Bottle:
    app = bottle.Bottle()
    ctx.trusted_proxies.install(app)  # first: every hook and route sees the client, not the proxy
    streams = StreamSlots(ctx.max_streams)
    lookup = [str(HERE / "views"), str(DEVICE_VIEWS)]  # the device's for the parts both share

    def current() -> tuple[User, str] | None:
        cached = request.environ.get("ee.user")
        if cached is None:
            cached = ctx.accounts.session_user(request.get_cookie(COOKIE)) or False
            request.environ["ee.user"] = cached
        return cached or None

    def page(name: str, **values) -> str:
        found = current()
        return bottle.template(name, template_lookup=lookup, user=found[0] if found else None,
                               csrf=found[1] if found else "", version=__version__, **SHARED_VIEW_VALUES, **values)

    def error_page(status: int, title: str, message: str, viewer: bool = True, home: bool = True) -> HTTPResponse:
        """An error as a browser shows it: a page in words with a way back (``home``), not a
        line of JSON. Drawn as for nobody logged in when ``viewer`` is false (a request this
        server will not serve) or when looking the viewer up fails (the database may be what failed)."""
        body = None
        if viewer:
            try:
                body = page("message", title=title, message=message, home=home)
            except Exception:
                log.warning("the error page could not be drawn with its viewer", exc_info=True)
        if body is None:
            body = bottle.template("message", template_lookup=lookup, user=None, csrf="", version=__version__,
                                   **SHARED_VIEW_VALUES, title=title, message=message, home=home)
        return HTTPResponse(body, status, {"Content-Type": "text/html; charset=UTF-8"})

    def require_viewer(api: bool = False, given_password_ok: bool = False) -> tuple[User, str]:
        """The logged-in admin or instructor and their CSRF token. One still on a password
        given to them (generated at the first start, or set by an admin) is sent to
        /account until they choose their own."""
        found = current()
        if not found:
            if api:
                raise json_error(401, "log in first (POST /api/login)")
            raise bottle.redirect("/login")
        if found[0].role not in VIEWERS:
            raise json_error(403, "this page is for instructors and admins") if api else \
                HTTPResponse(page("message", title="Not allowed", message="This page is for instructors and admins."), 403)
        if found[0].must_change_password and not given_password_ok:
            if api:
                raise json_error(403, PASSWORD_CHANGE_PENDING)
            raise bottle.redirect("/account")
        return found

    def same_origin() -> None:
        if hardening.cross_site():
            if hardening.wants_html():  # a form another site's page sent: the browser shows what it got
                raise error_page(403, "Refused", "This form was sent from another site, so it was refused. Open "
                                                 "this classroom page directly and try again.")
            raise json_error(403, "cross-site request refused")

    def start_session(user: User) -> str:
        token, csrf = ctx.accounts.start_session(user)
        # no Max-Age: it ends when the browser is closed, the session at its limits on the server
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict", secure=ctx.secure(), path="/")
        return csrf

    @app.hook("after_request")
    def headers():
        cacheable = request.path.startswith("/static/") or request.path == "/favicon.ico"  # no one's data in them
        hardening.set_security_headers(no_store=not cacheable, hsts=ctx.secure())
        if cacheable:  # asked again at each page load (a 304 while unchanged): after an upgrade a browser kept
            response.set_header("Cache-Control", "no-cache")  # the old classroom.js against the new API for hours

    @app.hook("before_request")
    def known_host():
        """No DNS rebinding: answer only to this server's own names, IP literals and the
        names given with --allowed-hosts (as a device does)."""
        if not ctx.allowed_hosts.allows(request.headers.get("Host", "")):
            if hardening.wants_html():  # no session looked up, nothing of anyone's shown, no link under that name
                raise error_page(400, "Not this server's name", "This classroom server does not answer to the name "
                                 "in the address bar: open it by its own name or address (engage-edge classroom "
                                 "--allowed-hosts adds names).", viewer=False, home=False)
            raise json_error(400, "unknown Host header: open this page by the server's own name or address "
                                  "(engage-edge classroom --allowed-hosts adds names)")
        hardening.readable_form()

    @app.get("/static/<name:path>")
    def static(name):
        if name in SHARED_STATIC:
            return bottle.static_file(name, root=str(DEVICE_STATIC))
        return bottle.static_file(name, root=str(HERE / "static"))

    @app.get("/favicon.ico")
    def favicon():
        """Browsers ask for it whatever a page links: a 404 was an error in every page's console."""
        return bottle.static_file("favicon.ico", root=str(DEVICE_STATIC), mimetype="image/vnd.microsoft.icon")

    def require_viewer_change() -> User:
        """A viewer's change on this page (a script's POST): same origin, a logged-in instructor
        or admin, and the session's CSRF token; raises the JSON refusal."""
        same_origin()
        user, csrf = require_viewer(api=True)
        if not hmac.compare_digest(request.headers.get("X-CSRF-Token", "").encode(), csrf.encode()):
            raise json_error(403, "missing or stale X-CSRF-Token: reload the page, or log in again")
        return user

    def check_form() -> None:
        """A form (or script) of this site, with the session's CSRF token."""
        same_origin()
        found = current()
        if not found or not hardening.csrf_sent_matches(found[1]):
            raise HTTPResponse(page("message", title=hardening.STALE_FORM_TITLE, message=hardening.STALE_FORM_WORDS),
                               403)

    account_routes.install(app, account_routes.Site(
        accounts=ctx.accounts, cookie=COOKIE, page=page,
        viewer=lambda: require_viewer(given_password_ok=True)[0], check_origin=same_origin, check_form=check_form,
        start_session=start_session,
        after_login=lambda user, nxt: "/",  # the classroom; it sends a given password on to /account
        with_next=False))

    @app.get("/")
    def classroom_page():
        user, csrf = require_viewer()
        expected = ctx.classroom.expected()
        return page("classroom", title="Classroom", snapshot=ctx.classroom.snapshot(), expected=expected,
                    expected_version=expected_version(expected), known={*LEVELS, WAITING, CHECKING, "Offline"}, build=BUILD)

    @app.get("/api/classroom")
    def api_classroom():
        require_viewer(api=True)
        response.content_type = "application/json"
        # "pages": live pages open, of the most the server allows, and this log-in's: a page refused its stream
        # says whether closing one of its own would help
        pages = {"open": streams.count(), "max": streams.total, "yours": streams.count(request.get_cookie(COOKIE))}
        return json.dumps({**ctx.classroom.snapshot(), "pages": pages})

    @app.get("/api/classroom/events")
    def events():
        """Server-Sent Events: the desks that changed since the last event (the first: all)."""
        require_viewer(api=True)
        token = request.get_cookie(COOKIE)
        slot = streams.acquire(token)
        if isinstance(slot, str):
            return json_error(429, slot)
        response.content_type = "text/event-stream"
        response.set_header("X-Accel-Buffering", "no")

        def stream():
            try:
                yield from updates()
            finally:  # the page closed, the session ended, a newer page took its place, or the service stops
                streams.release(token, slot)

        def updates():
            version, quiet_since = -1, time.monotonic()
            checked = time.monotonic()
            yield "retry: 2000\n\n"
            while not ctx.classroom.closed:
                seen = ctx.classroom.wait_change(version, SESSION_RECHECK_S)
                if streams.ending(slot):  # told, or the browser reconnects it and ends the next oldest, and so on
                    yield f"event: ended\ndata: {json.dumps({'pages': streams.per_session})}\n\n"
                    return
                if time.monotonic() - checked >= SESSION_RECHECK_S:  # not at every change of a busy classroom
                    # a logged-out, disabled or deleted viewer, or one whose password was reset, sees no more
                    if not ctx.accounts.session_user(token):
                        return
                    checked = time.monotonic()
                if seen == version and time.monotonic() - quiet_since < KEEPALIVE_S:
                    continue
                quiet_since = time.monotonic()
                data = ctx.classroom.snapshot(since=version if version >= 0 else None)
                if version < 0:
                    data["build"] = BUILD
                version = data["version"]
                yield f"data: {json.dumps(data)}\n\n"

        return stream()

    @app.post("/api/classroom/remove-offline")
    def remove_offline():
        """An instructor or admin takes every offline desk off the page (last class's desks, a
        renamed desk's old id): for every viewer, until a desk is heard again (model.remove_offline)."""
        user = require_viewer_change()
        removed = ctx.classroom.remove_offline()
        if removed:
            log.info("%d offline desk(s) removed from the page by %s: %s", len(removed), user.username,
                     ", ".join(removed))
            ctx.accounts.store.audit(user.username, "removed offline desks", "", ", ".join(removed)[:2000])
        response.content_type = "application/json"
        return json.dumps({"removed": removed})

    @app.post("/api/classroom/expected")
    def set_expected():
        """The room's desks (JSON {"desks": [device ids]}): each has a tile from now on, "not
        heard yet" until it is. An instructor's or an admin's, as the page's other settings.
        ``"version"`` (optional): the version of the list the change was made from (the page's, from
        its updates' ``expected``); a change made from an older list is refused (409), the list that
        another instructor saved meanwhile not overwritten unseen. Without it the list is replaced."""
        user = require_viewer_change()
        data = hardening.json_object(request)
        desks = data.get("desks") if data is not None else None
        base = data.get("version") if data is not None else None
        if not isinstance(desks, list) or not all(isinstance(d, str) for d in desks) or \
                (base is not None and not isinstance(base, str)):
            return json_error(400, 'send JSON {"desks": ["desk-01", "desk-02", ...]} (and "version": the list\'s you changed)')
        wrong = [d for d in desks if not DEVICE_ID.fullmatch(d)]
        if wrong:
            return json_error(400, f"not a device ID: {', '.join(repr(hardening.cut(d)) for d in wrong[:5])} (a device ID "
                                   "has 1-64 letters, digits, dots, dashes and underscores, as the desk's mqtt.device_id)")
        if len(set(desks)) > MAX_DESKS:
            return json_error(400, f"at most {MAX_DESKS} desks")
        kept = ctx.classroom.set_expected(desks, base)
        if kept is None:  # saved from a page that had not seen the newest list: it is told which that is
            now = ctx.classroom.expected()
            raise HTTPResponse(json.dumps({
                "error": "someone changed this room's list after this page showed it; it is now: " +
                         (", ".join(now[:20]) + (f" and {len(now) - 20} more" if len(now) > 20 else "") if now else "no list"),
                "desks": now, "version": expected_version(now)}), 409, {"Content-Type": "application/json"})
        try:
            ctx.save_expected(kept)
        except Exception as exc:  # noqa: BLE001 - shown now, not kept over a restart: say so
            log.warning("classroom: the room's desk list could not be saved: %s", exc)
            return json_error(503, "the list is shown but could not be saved (the server's disk?): it is lost at "
                                   "the next restart; try again")
        log.info("the room's desk list set by %s: %d desks", user.username, len(kept))
        ctx.accounts.store.audit(user.username, "set the room's desks", "", ", ".join(kept)[:2000])
        response.content_type = "application/json"
        return json.dumps({"desks": kept, "version": expected_version(kept)})

    @app.post("/needs-javascript")
    def needs_javascript():
        """Where the page's forms go when classroom.js did not run (blocked, or not loaded): they
        are the script's, sent as JSON with the CSRF header. Posted here, nothing is changed and
        no field is used or logged (a new instructor's password among them)."""
        raise error_page(400, "This form needs JavaScript", "Nothing was changed: this page's forms are sent by its "
                         "script, which did not run in this browser (it may be blocked, or did not load). Reload the "
                         "page, or use a browser with JavaScript on.")

    @app.post("/api/confirm")
    def confirm():
        """The viewer types their password again (JSON {"password"}): an admin's change
        needs it once the log-in is older than the confirmation window."""
        user = require_viewer_change()
        return hardening.confirm_answer(ctx.accounts, request.get_cookie(COOKIE), user,
                                        request.environ.get("REMOTE_ADDR") or "unknown")

    def require_admin_change(what: str) -> User:
        """An admin's change on this page: ``require_viewer_change``, and a password typed
        recently (a browser left logged in); raises the JSON refusal."""
        user = require_viewer_change()
        if user.role != "admin":
            raise json_error(403, f"only an admin {what}")
        if not ctx.accounts.recently_confirmed(request.get_cookie(COOKIE)):
            raise HTTPResponse(json.dumps({"error": "Type your own password to confirm, then try again (it was last "
                                                    f"typed over {round(ctx.accounts.confirm_s / 60)} minutes ago).",
                                           "confirm": "/api/confirm"}), 403, {"Content-Type": "application/json"})
        return user

    def instructor(name: str) -> User:
        """The instructor account ``name`` (an admin's is never changed here: Your account, or passwd)."""
        found = ctx.accounts.find(name)
        if found is None or found.role != "instructor":
            raise json_error(404, f"no instructor {hardening.cut(name)!r}")
        return found

    @app.post("/api/instructors")
    def add_instructor():
        """An admin adds an instructor account: JSON {"username", "password", "temporary"}.
        ``temporary`` (default true): the instructor must choose their own password at the
        first log-in, so the admin does not keep knowing it."""
        admin = require_admin_change("adds instructors")
        data = hardening.json_object(request)
        if data is None:
            return json_error(400, 'send JSON {"username": ..., "password": ..., "temporary": true}')
        try:
            temporary = data.get("temporary", True)
            if not isinstance(temporary, bool):
                raise AuthError("temporary must be true or false", "temporary")
            made = ctx.accounts.create_user(str(data.get("username", "")), str(data.get("password", "")), "instructor",
                                            must_change=temporary)
        except AuthError as exc:  # the field at fault: the page marks it (a password rule names none)
            return json_error(400, str(exc), field=exc.field or "password")
        log.info("instructor %r added by %s", made.username, admin.username)
        response.status = 201
        response.content_type = "application/json"
        return json.dumps({"user": made.username, "role": made.role, "temporary": made.must_change_password})

    @app.get("/api/instructors")
    def list_instructors():
        """The instructor accounts, for an admin: who may see the class (a teacher who left
        keeps that until disabled or removed)."""
        user, _ = require_viewer(api=True)
        if user.role != "admin":
            return json_error(403, "only an admin sees the instructors")
        response.content_type = "application/json"
        return json.dumps({"instructors": [{"user": u.username, "disabled": u.disabled,
                                            "temporary": u.must_change_password}
                                           for u in ctx.accounts.list_users() if u.role == "instructor"]})

    @app.post("/api/instructors/<name>")
    def change_instructor(name: str):
        """JSON {"disabled": true|false}: a disabled instructor's pages end at once and their
        log-in is refused; enabling lets them in again with the same password."""
        admin = require_admin_change("disables instructors")
        target = instructor(name)
        data = hardening.json_object(request)
        if data is None or not isinstance(data.get("disabled"), bool):
            return json_error(400, 'send JSON {"disabled": true} or {"disabled": false}')
        ctx.accounts.set_disabled(target.id, data["disabled"])
        log.info("instructor %r %s by %s", target.username, "disabled" if data["disabled"] else "enabled",
                 admin.username)
        response.content_type = "application/json"
        return json.dumps({"user": target.username, "disabled": data["disabled"]})

    @app.delete("/api/instructors/<name>")
    def remove_instructor(name: str):
        """The account is deleted: its pages end at once, and the name may be added again."""
        admin = require_admin_change("removes instructors")
        target = instructor(name)
        ctx.accounts.delete_user(target.id)
        log.info("instructor %r removed by %s", target.username, admin.username)
        response.content_type = "application/json"
        return json.dumps({"user": target.username, "removed": True})

    @app.get("/healthz")
    def healthz():
        """For monitoring, to anyone: whether the broker link is up, how many desks, uptime. The
        build (an unpatched server's mark), the broker's name, the error text and the desks held
        back (device ids) only to a logged-in admin and to this machine (curl here, a watchdog),
        as a device's /healthz: it gave them to anyone on the school's network."""
        response.content_type = "application/json"
        b = ctx.broker
        found = current()
        full = told_details(found)
        body: dict[str, object] = {"status": "ok" if b.connected else "degraded", "connected": b.connected,
                                   "desks": len(ctx.classroom),
                                   "uptime_s": round(time.monotonic() - ctx.started_monotonic, 1)}
        if full:
            body.update(broker=b.broker, error=b.reason(), version=__version__,
                        # desks sending past their pace (desk.DESK_UPDATES_PER_S), most first: which one floods the pages
                        held_back=ctx.classroom.held_back(),
                        # device ids two devices send as (desk.note_run): give each its own mqtt.device_id
                        shared=ctx.classroom.shared())
        if not b.connected:
            body["reasons"] = [f"mqtt: {b.reason() or 'connecting to ' + b.broker}" if full else
                               "mqtt: not connected to the broker (why: for an admin logged in, or on this server)"]
            response.status = 503
        return json.dumps(body)

    def as_page(status: int, title: str, message: str) -> str:
        """The body of a browser's error page (``error_page``) for an ``@app.error`` handler."""
        drawn = error_page(status, title, message)
        response.content_type = drawn.headers["Content-Type"]
        return drawn.body

    @app.error(404)
    def not_found(err):
        if hardening.wants_html():
            return as_page(404, "Not found", "There is no such page on this classroom server.")
        response.content_type = "application/json"
        return json.dumps({"error": "not found"})

    @app.error(405)
    def wrong_method(err):  # /logout typed in the address bar: bottle's bare page otherwise
        if hardening.wants_html():
            return as_page(405, "Not a page to open", "This address answers a form's button, not a link: go back "
                                                      "and use the button on the page.")
        response.content_type = "application/json"
        return json.dumps({"error": f"{request.method} is not allowed here; use {err.headers.get('Allow', 'POST')} "
                                    "(a form's button, not a link)"})

    @app.error(400)
    def bad_request(err):
        if hardening.wants_html():  # a browser's form cut short: a page with a way back, not a line of JSON
            hardening.set_security_headers(hsts=ctx.secure())
            return as_page(400, hardening.BAD_REQUEST_TITLE, hardening.bad_request_words(err).replace(
                "The device", "The classroom server"))
        return hardening.bad_request(err, hsts=ctx.secure())

    @app.error(500)
    def server_error(err):
        message = hardening.disk_full(err, ctx.accounts.store, hsts=ctx.secure())
        if message:
            if hardening.wants_html():
                return as_page(507, "The disk is full", message)
            return json.dumps({"error": message})
        return hardening.server_error(err, "engage-classroom", hsts=ctx.secure(),
                                      page=lambda _device_words: as_page(500, "Something went wrong", SERVER_ERROR_PAGE))

    return app
