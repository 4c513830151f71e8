"""The device's session routes: the start page, log-in, log-out and Your account (shared
with the classroom page: ``account_routes``), and confirming the password again before
an admin's change."""
from __future__ import annotations

import logging
from urllib.parse import urlsplit

import bottle
from bottle import HTTPResponse, request

from edge_app.store.login_throttle import LoginThrottled
from edge_app.web import account_routes, hardening
from edge_app.web.guard import COOKIE, Guard, account_url, client_address, safe_next

log = logging.getLogger(__name__)


def is_admin_path(path: str) -> bool:
    """An address only admins may open (``app.guard_paths`` refuses it to anyone else)."""
    path = urlsplit(path).path
    return path == "/admin" or path.startswith(("/admin/", "/api/admin/"))


def install(app: bottle.Bottle, ctx, guard: Guard) -> None:
    page = guard.page

    @app.get("/")
    def index():
        """A role's start page: an admin's dashboard, a teacher's desk state (an instructor was led
        to "Analyse a photo", written for students), a student's photo upload."""
        user = guard.require_user()
        return bottle.redirect("/admin" if user.is_admin else "/live" if user.role == "instructor" else "/upload")

    def after_login(user, nxt: str) -> str:
        """Where a log-in leads: the page asked for, but a student asked for an admin page (the
        log-in page an admin's ended session left on a shared computer) gets their own start
        page, not "Not allowed"; a password given to them is replaced first."""
        if not user.is_admin and is_admin_path(nxt):
            nxt = "/"
        return account_url(nxt) if user.must_change_password else nxt

    def start_session(user) -> str:
        token, csrf = ctx.accounts.start_session(user)
        guard.set_session_cookie(token)
        return csrf

    account_routes.install(app, account_routes.Site(
        accounts=ctx.accounts, cookie=COOKIE, page=page,
        viewer=lambda: guard.require_user(given_password_ok=True),  # /account is where a given password is replaced
        check_origin=guard.check_same_origin, check_form=guard.check_csrf, start_session=start_session,
        after_login=after_login))

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
            hardening.REFUSALS.line(log, logging.INFO, "failed password confirmation by %r from %s",
                                    user.username, address=client_address())
            return HTTPResponse(page("confirm", title="Confirm your password", error="Wrong password.", next=nxt,
                                     stale=False), 401)
        return bottle.redirect(nxt)

    @app.post("/api/confirm")
    def api_confirm():
        user = guard.require_user()
        guard.check_csrf()
        return hardening.confirm_answer(ctx.accounts, request.get_cookie(COOKIE), user, client_address())
