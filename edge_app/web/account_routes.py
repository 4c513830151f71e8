"""Log-in, log-out and Your account: one set of routes for the device and the classroom page.

Both keep their users in ``store.accounts`` and answer these routes the same way; what
differs is how each renders a page, finds who is asking, checks a form and starts a
session, which each describes once in a ``Site``. The device adds ``next`` (where to go
on after logging in) to its pages; the classroom page has one page to go back to.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlencode

import bottle
from bottle import HTTPResponse, request, response

from edge_app.store.accounts import AccountDisabled, Accounts, AuthError, User
from edge_app.store.login_throttle import LoginThrottled
from edge_app.wall_clock import local_time
from edge_app.web import hardening
from edge_app.web.guard import client_address, safe_next
from edge_app.web.proxies import over_tls

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Site:
    accounts: Accounts
    cookie: str  # the session cookie's name
    page: Callable[..., str]  # page(template, **values): rendered for the current user
    viewer: Callable[[], User]  # who may see their own account page (one on a given password too), or raise
    check_origin: Callable[[], None]  # a request sent from this site's own pages, or raise
    check_form: Callable[[], None]  # ... and carrying the session's CSRF token, or raise
    start_session: Callable[[User], str]  # a new session (its cookie set): its CSRF token
    after_login: Callable[[User, str], str]  # where a browser goes once logged in (user, the asked-for page)
    with_next: bool = True  # pages carry ``next``: where to go on afterwards


def changed_mark(csrf: str, changed: str) -> str:
    """What the redirect after a password change carries beside ``changed``: only the session
    it started can show "Password changed" (a forged link cannot), and a reload still does."""
    return hmac.new(csrf.encode(), f"password changed|{changed}".encode(), hashlib.sha256).hexdigest()[:24]


KNOWN_BROWSER_DAYS = 365  # how long a browser stays known without logging in again (Chrome keeps 400 at most)


def install(app: bottle.Bottle, site: Site) -> None:
    """Routes ``/login``, ``/api/login``, ``/logout``, ``/account``, ``/account/sessions`` and ``/api/session``."""
    accounts = site.accounts
    known_cookie = site.cookie + "_known"  # ee_session_known, ee_classroom_known

    def sent_browser() -> str | None:
        return request.get_cookie(known_cookie)

    def remember_browser(user: User) -> None:
        """This browser has logged in as ``user``: from now on only its own failures count
        against it for that name (``Accounts.remember_browser``), so guesses from elsewhere
        cannot lock them out here. Kept past log-out; Secure over TLS (the server's own or a
        trusted proxy's), as the session cookie is."""
        value = accounts.remember_browser(user, sent_browser())
        if value:
            response.set_cookie(known_cookie, value, httponly=True, samesite="strict", path="/",
                                secure=over_tls(),
                                max_age=KNOWN_BROWSER_DAYS * 86400)

    def asked_next(value: str | None) -> dict:
        return {"next": safe_next(value or "/")} if site.with_next else {}

    def typed_name(raw: str) -> str:
        """The user name without spaces around it (a phone's keyboard adds one after a word),
        unless only the name as sent is an account's (one made before names were matched
        whole may end in a newline)."""
        name = raw.strip()
        if name != raw and accounts.find(name) is None and accounts.find(raw) is not None:
            return raw
        return name

    def start_session(user: User) -> str:
        """A new session for ``user``, ending the one this browser had: logging in again (as
        someone else on a shared computer, or the same person) left the old token valid for
        its whole lifetime, for whoever had copied it."""
        previous = request.get_cookie(site.cookie)
        if previous:
            accounts.end_session(previous)
        return site.start_session(user)

    def login_page(status: int = 200, **values):
        body = site.page("login", title="Log in", **values)
        return HTTPResponse(body, status) if status != 200 else body

    @app.get("/login")
    def show_login():
        ended = request.query.get("ended", "")  # the session this browser had is over (web.guard)
        hours = accounts.max_age_s / 3600  # a desk view open all day ended at the log-in's lifetime, said as "idle"
        lifetime = f"{hours:g} hour{'' if hours == 1 else 's'}" if hours >= 1 else f"{accounts.max_age_s / 60:g} minutes"
        return login_page(error="", ended=ended if ended in ("page", "form") else "", lifetime=lifetime,
                          logged_out=request.query.get("out") == "1", **asked_next(request.query.getunicode("next")))

    @app.post("/login")
    def login():
        site.check_origin()
        username = typed_name(request.forms.getunicode("username", "") or "")
        password = request.forms.getunicode("password", "")
        nxt = asked_next(request.forms.getunicode("next"))
        try:
            user = accounts.login(username, password, client_address(), sent_browser())
        except LoginThrottled as exc:
            hardening.REFUSALS.line(log, logging.WARNING, "log-in refused for %s from %s: throttled",
                                    accounts.log_name(username), address=client_address())
            return hardening.throttled(exc, site.page("login", title="Log in", error=str(exc), username=username,
                                                      **nxt))
        except AccountDisabled as exc:
            hardening.REFUSALS.line(log, logging.INFO, "log-in refused for %s from %s: disabled",
                                    accounts.log_name(username), address=client_address())
            text = str(exc)
            return login_page(403, error=text[0].upper() + text[1:] + ".", username=username, **nxt)
        if not user:
            hardening.REFUSALS.line(log, logging.INFO, "failed login for %s from %s", accounts.log_name(username),
                                    address=client_address())
            return login_page(401, error="Wrong user name or password.", username=username, invalid="credentials",
                              **nxt)
        start_session(user)
        remember_browser(user)
        return bottle.redirect(site.after_login(user, nxt.get("next", "/")))

    @app.post("/api/login")
    def api_login():
        site.check_origin()
        data = hardening.login_fields(request)
        if data is None:  # a JSON array, string or null, or a body that is no JSON at all
            return hardening.json_error(400, 'send JSON {"username": ..., "password": ...} or a form')
        try:
            username = typed_name(str(data.get("username", "")))
            user = accounts.login(username, str(data.get("password", "")), client_address(), sent_browser())
        except LoginThrottled as exc:
            hardening.REFUSALS.line(log, logging.WARNING, "log-in refused for %s from %s: throttled (API)",
                                    accounts.log_name(username), address=client_address())
            return hardening.throttled(exc)
        except AccountDisabled as exc:
            hardening.REFUSALS.line(log, logging.INFO, "log-in refused for %s from %s: disabled (API)",
                                    accounts.log_name(username), address=client_address())
            return hardening.json_error(403, str(exc))
        if not user:
            hardening.REFUSALS.line(log, logging.INFO, "failed login for %s from %s (API)", accounts.log_name(username),
                                    address=client_address())
            return hardening.json_error(401, "wrong user name or password")
        csrf = start_session(user)
        remember_browser(user)
        response.content_type = "application/json"
        return json.dumps({"user": user.username, "role": user.role, "csrf": csrf,
                           "must_change_password": user.must_change_password})

    @app.post("/logout")
    def logout():
        token = request.get_cookie(site.cookie)
        if not accounts.session_user(token):  # ended already (elsewhere, or it expired): nothing to check or end
            response.delete_cookie(site.cookie, path="/")
            return bottle.redirect("/login?out=1")
        site.check_form()
        if token:
            accounts.end_session(token)
        response.delete_cookie(site.cookie, path="/")
        return bottle.redirect("/login?out=1")  # the page says so: on a shared desk, the reassurance is the point

    def account(user: User, **values) -> str:
        values.setdefault("others", accounts.other_sessions(user, request.get_cookie(site.cookie)))
        return site.page("account", title="Your account", **values)

    @app.get("/account")
    def account_page():
        user = site.viewer()
        changed, csrf = request.query.get("changed", ""), own_csrf(request.get_cookie(site.cookie))
        # "Password changed" only for the session the change started (a link from elsewhere says nothing)
        done = bool(csrf and (changed == "first" or hardening.small_count(changed) is not None)
                    and hmac.compare_digest(request.query.get("mark", ""), changed_mark(csrf, changed)))
        return account(user, error="", done=done, first=done and changed == "first",
                       logged_out=int(changed) if done and changed.isdigit() else 0,
                       ended=hardening.small_count(request.query.get("ended", "")),
                       **asked_next(request.query.getunicode("next")))

    def own_csrf(token: str | None) -> str:
        found = accounts.session_user(token)
        return found[1] if found else ""

    @app.post("/account/sessions")
    def end_other_sessions():
        """Log out this user's other browsers (one left logged in on a classroom computer, a lost
        laptop), which are no longer known browsers either."""
        user = site.viewer()
        site.check_form()
        ended = accounts.end_other_sessions(user, request.get_cookie(site.cookie))
        remember_browser(user)  # every browser known for them is a stranger again, this one excepted
        log.info("%s logged out %d other session(s) from %s", user.username, ended, client_address())
        return bottle.redirect(f"/account?ended={ended}")

    def session_times() -> str:
        """``idle_s``, and ``left_s`` with ``ends`` (the device's clock, "14:05"): when this
        session ends unless the user does something, and ``limit``, which limit that is ("idle",
        or "lifetime": web.session_max_hours, which nothing the user does moves). A page's own
        count from its load was wrong once another tab, or a pause pressed in place, restarted
        the timer since."""
        left, limit = accounts.session_time_left(request.get_cookie(site.cookie)) or (0.0, "idle")
        response.content_type = "application/json"
        return json.dumps({"idle_s": accounts.idle_s, "left_s": round(left, 1), "limit": limit,
                           "ends": local_time(accounts.wall() + left, "%H:%M")})

    @app.get("/api/session")
    def session_alive():
        """Whether this session is still on and for how long, for a page about to warn or whose
        warning ran out: asked without restarting the idle timer (a page left open must still
        time out)."""
        site.viewer()
        return session_times()

    @app.post("/api/session")
    def stay_logged_in():
        """The idle warning's "Stay logged in" (static/session.js): the user's own doing, so
        the idle timer starts again; a page with a chosen file or a typed form keeps it
        (WCAG 2.2.1) instead of turning into the log-in page."""
        site.viewer()
        site.check_origin()
        site.check_form()
        return session_times()

    @app.post("/account")
    def change_password():
        """A user changes their own password; every other session of theirs ends."""
        user = site.viewer()
        site.check_form()
        form = request.forms
        nxt = asked_next(form.getunicode("next"))
        given = user.must_change_password  # a password given to them replaced: no "other sessions" to speak of
        others = 0 if given else accounts.other_sessions(user, request.get_cookie(site.cookie) or "")  # all end
        try:
            user = accounts.change_password(user, form.getunicode("current", ""), form.getunicode("new", ""),
                                            form.getunicode("again", ""), client_address(),
                                            request.get_cookie(site.cookie))
        except AuthError as exc:  # the field at fault marked and focused; a throttle is the current password's
            field = "current" if isinstance(exc, LoginThrottled) else exc.field or "new"
            return HTTPResponse(account(user, error=f"Not changed: {str(exc).rstrip('.')}.", done=False, invalid=field,
                                        **nxt), 429 if isinstance(exc, LoginThrottled) else 400)
        csrf = site.start_session(user)  # every old session ended with the change: a fresh one here
        remember_browser(user)  # the new password ended every browser's entry for them: this one stays known
        changed = "first" if given else str(others)
        query = {**nxt, "changed": changed, "mark": changed_mark(csrf, changed)}
        # post/redirect/get: a reload shows the outcome again instead of sending the form with a stale token
        return bottle.redirect("/account?" + urlencode(query))
