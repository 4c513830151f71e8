"""Log-in, log-out and the user's own account page (the session cookie's whole life)."""
from __future__ import annotations

import json
import logging

import bottle
from bottle import HTTPResponse, request, response

from edge_app.store.accounts import AuthError, LoginThrottled
from edge_app.web import hardening
from edge_app.web.guard import COOKIE, Guard, account_url, client_address, json_error, safe_next

log = logging.getLogger(__name__)


def install(app: bottle.Bottle, ctx, guard: Guard) -> None:
    page = guard.page

    @app.get("/")
    def index():
        user = guard.require_user()
        return bottle.redirect("/admin" if user.is_admin else "/upload")

    @app.get("/login")
    def login_page():
        return page("login", title="Log in", error="", next=safe_next(request.query.getunicode("next", "/")))

    @app.post("/login")
    def login():
        username, password = request.forms.getunicode("username", ""), request.forms.getunicode("password", "")
        nxt = safe_next(request.forms.getunicode("next", "/"))
        try:
            user = ctx.accounts.login(username, password, client_address())
        except LoginThrottled as exc:
            log.warning("log-in refused for %r from %s: throttled", username, client_address())
            return hardening.throttled(exc, page("login", title="Log in", error=str(exc), next=nxt, username=username))
        if not user:
            log.info("failed login for %r from %s", username, client_address())
            return HTTPResponse(page("login", title="Log in", error="Wrong user name or password.", next=nxt,
                                     username=username), 401)
        token, _ = ctx.accounts.start_session(user)
        guard.set_session_cookie(token)
        return bottle.redirect(account_url(nxt) if user.must_change_password else nxt)

    @app.post("/api/login")
    def api_login():
        guard.check_same_origin()
        data = hardening.login_fields(request)
        if data is None:  # a JSON array, string or null, or a body that is no JSON at all
            return json_error(400, "send JSON {\"username\": ..., \"password\": ...} or a form")
        try:
            user = ctx.accounts.login(str(data.get("username", "")), str(data.get("password", "")), client_address())
        except LoginThrottled as exc:
            return hardening.throttled(exc)
        if not user:
            return json_error(401, "wrong user name or password")
        token, csrf = ctx.accounts.start_session(user)
        guard.set_session_cookie(token)
        response.content_type = "application/json"
        return json.dumps({"user": user.username, "role": user.role, "csrf": csrf,
                           "must_change_password": user.must_change_password})

    @app.post("/logout")
    def logout():
        guard.check_csrf()
        token = request.get_cookie(COOKIE)
        if token:
            ctx.accounts.end_session(token)
        response.delete_cookie(COOKIE, path="/")
        return bottle.redirect("/login")

    @app.get("/confirm")
    def confirm_page():
        guard.require_user()
        return page("confirm", title="Confirm your password", error="", stale=False,
                    next=safe_next(request.query.getunicode("next", "/")))

    @app.post("/confirm")
    def confirm():
        user = guard.require_user()
        guard.check_csrf()
        nxt = safe_next(request.forms.getunicode("next", "/"))
        try:
            ok = ctx.accounts.confirm(request.get_cookie(COOKIE), user, request.forms.getunicode("password", ""),
                                      client_address())
        except LoginThrottled as exc:
            return hardening.throttled(exc, page("confirm", title="Confirm your password", error=str(exc), next=nxt,
                                                 stale=False))
        if not ok:
            log.info("failed password confirmation by %r from %s", user.username, client_address())
            return HTTPResponse(page("confirm", title="Confirm your password", error="Wrong password.", next=nxt,
                                     stale=False), 401)
        return bottle.redirect(nxt)

    @app.post("/api/confirm")
    def api_confirm():
        guard.check_same_origin()
        user = guard.require_user()
        guard.check_csrf()
        return hardening.confirm_answer(ctx.accounts, request.get_cookie(COOKIE), user, client_address())

    def account(user, **values) -> str:
        values.setdefault("others", ctx.accounts.other_sessions(user, request.get_cookie(COOKIE)))
        return page("account", title="Your account", **values)

    @app.get("/account")
    def account_page():
        user = guard.require_user(given_password_ok=True)
        return account(user, error="", done=False, next=safe_next(request.query.getunicode("next", "/")),
                       ended=hardening.small_count(request.query.get("ended", "")))

    @app.post("/account/sessions")
    def end_other_sessions():
        """Log out every other browser of this user (one left logged in on a classroom computer)."""
        user = guard.require_user(given_password_ok=True)
        guard.check_csrf()
        ended = ctx.accounts.end_other_sessions(user, request.get_cookie(COOKIE))
        log.info("%s logged out %d other session(s) from %s", user.username, ended, client_address())
        return bottle.redirect(f"/account?ended={ended}")

    @app.post("/account")
    def change_password():
        user = guard.require_user(given_password_ok=True)
        guard.check_csrf()
        form = request.forms
        nxt = safe_next(form.getunicode("next", "/"))
        try:
            user = ctx.accounts.change_password(user, form.getunicode("current", ""), form.getunicode("new", ""),
                                                form.getunicode("again", ""), client_address())
        except AuthError as exc:
            return HTTPResponse(account(user, error=f"Not changed: {str(exc).rstrip('.')}.", done=False, next=nxt),
                                429 if isinstance(exc, LoginThrottled) else 400)
        # every old session ended with the change; this browser gets a fresh one
        token, csrf = ctx.accounts.start_session(user)
        guard.set_session_cookie(token)
        guard.remember(user, csrf)
        return account(user, error="", done=True, next=nxt, others=0)  # the change ended every other one
