"""Who may talk to the web server: the Host names it answers to (no DNS rebinding), the
security headers every page carries, which JSON bodies are read at all, and whether a
form carries the session's CSRF token. Which peers count as this machine (only the
socket's, never a client's header) is ``edge_app.addresses``."""
from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from bottle import HTTPError, HTTPResponse, MultipartError, request, response

from edge_app.addresses import client_key
from edge_app.config import Config
from edge_app.store.login_throttle import LoginThrottled

log = logging.getLogger(__name__)

# Scripts, styles and forms from this origin only; no framing; no <base>.
CONTENT_SECURITY_POLICY = ("default-src 'self'; style-src 'self'; frame-ancestors 'none'; form-action 'self'; "
                           "base-uri 'none'")


def json_object(request) -> dict | None:
    """The request's JSON body when it is an object; None for anything else: no body, not
    JSON, not UTF-8, an array or a string, or nesting deep enough to exhaust the parser's
    recursion (bottle raises RecursionError, which would otherwise be a 500)."""
    try:
        data = request.json
    except (HTTPError, ValueError, UnicodeDecodeError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def set_security_headers(*, images: str = "", no_store: bool = True, hsts: bool = False) -> None:
    """The headers every page of the device and the classroom service carries.

    ``images``: extra image sources (the device shows data: and blob: previews);
    ``no_store``: pages hold a minor's data, so nothing is cached but static files;
    ``hsts``: served over TLS, so browsers must never fall back to plain HTTP."""
    response.set_header("X-Content-Type-Options", "nosniff")
    response.set_header("X-Frame-Options", "DENY")
    # same-origin, not no-referrer: with no-referrer browsers send "Origin: null" on form posts
    response.set_header("Referrer-Policy", "same-origin")
    response.set_header("Content-Security-Policy",
                        CONTENT_SECURITY_POLICY + (f"; img-src 'self' {images}" if images else ""))
    if no_store:
        response.set_header("Cache-Control", "no-store")
    if hsts:
        response.set_header("Strict-Transport-Security", "max-age=31536000")


def login_fields(req):
    """A log-in's fields: the JSON object when the body says it is JSON, else the form;
    None for a JSON body that is no object (the caller answers 400)."""
    return json_object(req) if req.content_type.startswith("application/json") else req.forms


def confirm_answer(accounts, token: str, user, address: str) -> HTTPResponse | str:
    """``POST /api/confirm`` of either app, once its own checks (origin, log-in, CSRF) passed:
    the JSON ``{"password"}`` checked as a log-in for this session (``Accounts.confirm``)."""
    data = json_object(request)
    if data is None:
        return json_error(400, 'send JSON {"password": ...}')
    try:
        ok = accounts.confirm(token, user, str(data.get("password", "")), address)
    except LoginThrottled as exc:
        return throttled(exc)
    if not ok:
        REFUSALS.line(log, logging.INFO, "failed password confirmation by %r from %s (API)", user.username,
                      address=address)
        return json_error(401, "wrong password")
    response.content_type = "application/json"
    return json.dumps({"confirmed": True, "valid_minutes": round(accounts.confirm_s / 60)})


DRAIN_S = 5.0  # the longest a refusal reads a body it will drop, whatever its size


def drain_body(cap: int) -> None:
    """Read (and drop) a refused body, up to ``cap`` bytes and ``DRAIN_S`` seconds, so a
    client that sends the whole body before it reads (``requests``, a browser's form) sees
    our answer, not a reset; past either the connection is closed (Linux still hands the
    client the answer it received). A client that stops sending is simply left: its
    timeout or reset is not a server error for the journal. What is left unread closes the
    connection (``http_limits``: cheroot would read all of it, as large as declared)."""
    stream, left = request.environ["wsgi.input"], min(request.content_length, cap)
    end = time.monotonic() + DRAIN_S
    try:
        while left > 0 and time.monotonic() < end:
            chunk = stream.read(min(left, 1 << 16))
            if not chunk:
                break
            left -= len(chunk)
    except OSError:  # timed out or reset: the client went; the refusal is answered to no one
        pass


def wants_html() -> bool:
    """A browser asking for a page (it names text/html, and not for /api/ or JSON): an error is
    shown as a page in plain words. Scripts (no Accept, ``*/*``, JSON) keep getting JSON."""
    accept = request.headers.get("Accept", "")
    return "text/html" in accept and "application/json" not in accept and not request.path.startswith("/api/")


SERVER_ERROR_PAGE = ("Something went wrong on the device, so what you asked for may not have been done. Go back "
                     "and try again; if it happens again, tell whoever looks after the device.")
SERVER_ERROR_LOG = " Its log has the details: journalctl -u {service}."  # for an admin, not a student


def json_error(status: int, message: str, **more) -> HTTPResponse:
    """A refusal scripts and pages read alike: ``{"error": message}`` with ``status`` (and
    ``more``, e.g. the ``field`` a page's form marks)."""
    return HTTPResponse(json.dumps({"error": message, **more}), status, {"Content-Type": "application/json"})


def cross_site() -> bool:
    """The request names an ``Origin`` other than this site (scheme and Host): another
    site's page sent it. None named (a script, an old browser) is not cross-site."""
    origin = request.headers.get("Origin")
    return bool(origin) and origin != f"{request.urlparts.scheme}://{request.headers.get('Host')}"


# what reading a form body may raise: text in no charset Python knows (``charset=nonexistent``,
# for the body or one part: LookupError), bytes not in the one named, a broken multipart body
FORM_ERRORS = (ValueError, LookupError, MultipartError)


def readable_form(skip_paths: tuple[str, ...] = ()) -> None:
    """Read a form body up front (bottle keeps what it parsed) and answer 400 for one that
    cannot be read. Each route read it where it needed a field, and a bogus charset was a
    500 with a traceback in the journal, for every such request, logged in or not.
    ``skip_paths``: the upload paths, whose bodies are read only once their size is allowed."""
    if request.method in ("GET", "HEAD", "OPTIONS") or request.path in skip_paths:
        return
    if not request.content_type.startswith(("multipart/", "application/x-www-form-urlencoded")):
        return
    try:
        request.forms  # noqa: B018 - parsed now, kept for the route
    except FORM_ERRORS as exc:
        raise unreadable_form(exc) from None


def unreadable_form(exc: Exception) -> HTTPResponse:
    """The 400 for a form body bottle cannot parse (a bogus charset, bytes not in it, a
    control character in a part's header such as a file name with a NUL). To a browser, an
    HTTPError: the app's 400 handler draws it as a page (``bad_request``)."""
    if wants_html():  # a browser's form cut short or garbled on the way: the page says to send it again
        return HTTPError(400, f"the form could not be read ({type(exc).__name__})")
    return json_error(400, f"the form could not be read ({type(exc).__name__}): send its text as UTF-8 and each file "
                           "with a plain file name, as a browser does (a file part with no file name is read as text)")


BAD_REQUEST_TITLE = "The form could not be read"
# a form whose CSRF token is not the session's: the page was opened before this log-in (logged in again in another
# tab, which ends the earlier session) or the log-in ended; "The form was stale" told a student nothing of either
STALE_FORM_TITLE = "Form expired"
STALE_FORM_WORDS = ("This form came from a page opened before your current log-in (you logged in again, perhaps in "
                    "another tab, or your log-in ended), so nothing was changed: reload the page, log in if it asks, "
                    "and send it again.")


def bad_request_words(err) -> str:
    """What a browser's page says for a 400 (a form cut short: a connection that dropped while
    a photo was being sent): what went wrong, and what to do."""
    return (f"The device could not read what was sent ({err.body}). Go back and send it again; if the connection "
            "is unsteady (Wi-Fi far away), try once it is better.")


def bad_request(err, hsts: bool = False) -> str:
    """Bottle's own 400 (a multipart body without a boundary, cut short) in the app's words:
    JSON, with the headers every answer carries. A browser's page is the app's (``wants_html``:
    bad_request_words), not a line of JSON."""
    set_security_headers(hsts=hsts)
    response.content_type = "application/json"
    return json.dumps({"error": f"the request could not be read: {err.body}"})


def csrf_sent_matches(expected: str) -> bool:
    """The request carries the session's CSRF token: a script sends it as X-CSRF-Token, a
    form as its ``csrf`` field; whichever is sent must match. A form body that cannot be read
    is answered 400 (``unreadable_form``), not "wrong token": the token was often right, and
    "reload the page" cannot mend a file name with a NUL in it."""
    try:
        sent = [v for v in (request.headers.get("X-CSRF-Token"), request.forms.get("csrf")) if v is not None]
    except FORM_ERRORS as exc:
        raise unreadable_form(exc) from None
    return bool(sent) and all(hmac.compare_digest(str(v).encode(), expected.encode()) for v in sent)


def small_count(value: str) -> int | None:
    """A count a page put in its own redirect (``?ended=2``); None for anything else, so a
    crafted link cannot make the page announce what did not happen at scale."""
    return int(value) if value.isdigit() and len(value) < 6 else None


def cut(text: str, limit: int = 80) -> str:
    """``text`` for a log line: a user name is whatever a client sent, up to the body's limit."""
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


class RefusalLog:
    """Journal lines for refused log-ins: at most ``per_client`` every ``window_s`` for one
    client (an address, an IPv6 /64) and ``burst`` for all together. A script that keeps
    guessing is refused each time (throttled: without checking the password), and a line
    each, hundreds a second, would fill the journal on the device's SD card and bury
    everything else in it. The budget per client keeps one guessing script from using up
    the lines a genuine failed log-in from another address needs; the overall one bounds
    a script spread over many addresses. Lines past either are counted, and the next line
    logged says how many were left out (the failures themselves are counted in SQLite by
    the throttle, whatever is logged)."""

    def __init__(self, burst: int = 30, window_s: float = 60.0, per_client: int = 5,
                 clock: Callable[[], float] = time.monotonic):
        self.burst, self.window_s, self.per_client, self.clock = burst, window_s, per_client, clock
        self._lock = threading.Lock()
        self._window_began: float | None = None
        self._left_out = 0
        self._by_client: dict[str, int] = {}  # only clients given a line: never more than ``burst``

    def line(self, logger: logging.Logger, level: int, message: str, *args, address: str) -> None:
        """``message`` % (``args``, ``address``): the client's address is its last field."""
        client = client_key(address)
        with self._lock:
            now = self.clock()
            if self._window_began is None or now - self._window_began >= self.window_s:
                self._window_began, self._by_client = now, {}
            if sum(self._by_client.values()) >= self.burst or self._by_client.get(client, 0) >= self.per_client:
                self._left_out += 1
                return
            self._by_client[client] = self._by_client.get(client, 0) + 1
            left_out, self._left_out = self._left_out, 0
        args = tuple(cut(a) if isinstance(a, str) else a for a in (*args, address))
        if left_out:
            message += (f" ({left_out} more refused log-in{'s' if left_out != 1 else ''} before this one "
                        f"were not logged: at most {self.per_client} lines from one address and {self.burst} "
                        f"in all every {self.window_s:g} s)")
        logger.log(level, message, *args)


REFUSALS = RefusalLog()  # the lines of every refused log-in and password check (budgets per process)


def throttled(exc, page: str | None = None) -> HTTPResponse:
    """429 for a throttled log-in (``login_throttle.LoginThrottled``): the log-in ``page`` with
    its message, or JSON for a script; Retry-After either way."""
    headers = {"Retry-After": str(int(exc.retry_after) + 1)}
    if page is not None:
        return HTTPResponse(page, 429, headers)
    return HTTPResponse(json.dumps({"error": str(exc), "retry_after_s": round(exc.retry_after, 1)}), 429,
                        {"Content-Type": "application/json", **headers})


DISK_FULL_OTHERS = ("Not done: the device's disk is full, nothing was changed. Tell your teacher or the school's "
                    "technician; it works again once space is freed")


def disk_full(err, store, hsts: bool = False, admin: Callable[[], bool] = lambda: True) -> str | None:
    """What to tell the user when the unexpected error is a full disk (``store``'s advice:
    how much is free, what to delete), logged once without a traceback, the answer made a
    507 with the headers every answer carries; None otherwise. Before, a delete or a
    settings save on a full card said "internal error, please report it", and the admin
    could not learn that the card was the cause. ``admin``: whether the user is an admin or
    may be one (not logged in: the log-in page); anyone else is told whom to tell, not an
    admin's commands."""
    advice = store.disk_full_advice(getattr(err, "exception", None))
    if not advice:
        return None
    log.error("%s %s not done: %s", request.method, request.path, advice)
    set_security_headers(hsts=hsts)
    response.status = 507  # Insufficient Storage
    response.content_type = "application/json"  # a page may replace it with its own
    freed = store.release_reserve()
    if not admin():
        return ("Try again now: room was just made. " if freed else "") + DISK_FULL_OTHERS
    if freed:
        way_out = "lower the retention or free space" if store.retention_setting else "free space"
        return (f"Not done, the database could not be written: {advice}. {freed >> 20} MB kept in reserve for this "
                f"has been freed: try again now (log in, then {way_out} at once: anything else writing to the disk "
                "may take it)")
    return f"Not done, the database could not be written: {advice}."


def server_error(err, service: str, hsts: bool = False, page: Callable[[str], str] | None = None) -> str:
    """The answer to an unexpected error (500): the headers every page carries, the
    traceback in the service's log only (bottle writes none for a streamed response that
    fails on its first chunk), and JSON for scripts. A browser gets ``page(message)``, the
    app's error page in plain words (a bare JSON line was all it showed), or JSON when
    drawing that page fails too."""
    log.error("unexpected error on %s %s:\n%s", request.method, request.path,
              getattr(err, "traceback", None) or getattr(err, "body", ""))
    set_security_headers(hsts=hsts)
    if page is not None and wants_html():
        try:
            body = page(SERVER_ERROR_PAGE + SERVER_ERROR_LOG.format(service=service))
            response.content_type = "text/html; charset=UTF-8"
            return body
        except Exception:  # whatever broke may break the page too: JSON then
            log.warning("the error page could not be drawn", exc_info=True)
    response.content_type = "application/json"
    return json.dumps({"error": f"internal error: the service's log has the details (journalctl -u {service}); "
                                "please report it"})


def _host_name(host_header: str) -> str:
    """The name part of a Host header, lower-case, without port or IPv6 brackets."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


@dataclass(frozen=True)
class AllowedHosts:
    """A web page on another site can make a browser send requests to a name that its
    DNS points at this device (DNS rebinding); the Host header then carries that name.
    Answer only to IP literals (no DNS involved), ``localhost``, this machine's own names
    and the names an admin lists in ``web.allowed_hosts``."""

    names: frozenset[str]

    @classmethod
    def from_config(cls, cfg: Config) -> "AllowedHosts":
        return cls.with_names(cfg.web.allowed_hosts)

    @classmethod
    def with_names(cls, listed: str) -> "AllowedHosts":
        """This machine's own names and ``listed`` (comma-separated)."""
        own = {"localhost", socket.gethostname().lower(), socket.getfqdn().lower()}
        own |= {f"{n}.local" for n in list(own) if "." not in n}
        extra = {n.strip().lower() for n in listed.split(",") if n.strip()}
        return cls(frozenset(own | extra))

    def allows(self, host_header: str) -> bool:
        name = _host_name(host_header)
        if not name:
            return False
        try:
            ipaddress.ip_address(name)
            return True
        except ValueError:
            return name in self.names or name.rstrip(".") in self.names
