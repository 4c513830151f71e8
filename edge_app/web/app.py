"""The device's web UI and API: ``make_app`` builds the Bottle app from a ``Context``.

This module only wires: the security-header and admin-guard hooks, the 404 page, and
each route group's ``install`` (one module per group: ``auth_routes``, ``upload``,
``live``, ``health``, ``admin_*``). What the routes share is in ``guard``; the SQL they
need is in ``edge_app.store``; the HTTP server is in ``server``. Sessions are server-side
(``edge_app.store.accounts``).
"""
from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bottle
from bottle import request, response

from edge_app.config import Config
from edge_app.fleet import admin_page as fleet_admin
from edge_app.runtime.capture import CaptureLoop
from edge_app.runtime.live import LiveFrame
from edge_app.store.accounts import Accounts
from edge_app.store.database import Store
from edge_app.vision.stills import Analyzer, Limits
from edge_app.web import (
    admin_alerts,
    admin_audit,
    admin_dashboard,
    admin_log,
    admin_model,
    admin_settings,
    admin_users,
    auth_routes,
    hardening,
    health,
    live,
    privacy,
    upload,
)
from edge_app.web.guard import Guard, json_error, wants_json
from edge_app.web.proxies import TrustedProxies

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
bottle.TEMPLATE_PATH[:] = [str(HERE / "views")]


@dataclass
class Context:
    """Everything the web app reads: config, store, accounts, analyzer, the live loop."""

    cfg: Config
    store: Store
    accounts: Accounts
    analyzer: Analyzer
    loop: CaptureLoop | None = None
    live: LiveFrame | None = None
    started: float = 0.0  # wall clock, for what is shown in wall time
    publisher: Any = None  # edge_app.fleet.publisher.Publisher when [mqtt] is on
    model_watcher: Any = None  # edge_app.models.watcher.ModelWatcher: the model page swaps a flashed model at once
    started_monotonic: float = field(default_factory=time.monotonic)  # uptime: a clock step (NTP on a Pi) does not move it
    file_cfg: Config | None = None  # the config file's own values, before the admin's saved settings
    housekeeping: Any = None  # edge_app.store.housekeeping.Housekeeping: a shorter retention is applied at once
    # one settings save at a time (the settings and classroom pages, "use the file's values"): two admins saving
    # at the same instant each read the saved settings, then wrote them back whole, and one change was lost
    settings_lock: threading.Lock = field(default_factory=threading.Lock)
    # why the data folder is gone at the next reboot (store.database.kept_in_memory), or None: judged once at
    # the start, as a mount does not change under a running service, not at each dashboard poll or /healthz
    lost_at_reboot: str | None = None


HOST_REFUSED_PAGE = ("This device does not answer to the name in your address bar, to keep other sites' pages "
                     "from reaching it. Open it by its own name or its IP address; an admin can add names under "
                     "web.allowed_hosts in its config file.")

# the routes that take a large body (a photo, a model); any other body is refused above 64 kB
# before it is read (web/http_limits.py), so a slow sender cannot hold a thread with one
UPLOAD_PATHS = ("/upload", "/api/analyze", "/admin/model/install")


def make_app(ctx: Context) -> bottle.Bottle:
    app = bottle.Bottle()
    app.config["ctx"] = ctx
    # every <n:int> in these routes is a row id: at most 18 digits (SQLite's integers are 64-bit), so
    # /uploads/99999999999999999999 is "no such upload", not an OverflowError (a 500 and a traceback logged)
    app.router.add_filter("int", lambda conf: (r"\d{1,18}", int, str))
    guard = Guard(ctx)
    allowed_hosts = hardening.AllowedHosts.from_config(ctx.cfg)
    limits = Limits.from_config(ctx.cfg)
    TrustedProxies(ctx.cfg.web.trusted_proxies).install(app)  # first: every hook and route sees the client
    # bottle refuses bodies above MEMFILE_MAX only for forms; keep uploads in memory up to the limit
    bottle.BaseRequest.MEMFILE_MAX = limits.max_bytes + 1024 * 1024

    @app.hook("after_request")
    def headers():
        cacheable = request.path.startswith("/static/") or request.path == "/favicon.ico"  # no one's data in them
        hardening.set_security_headers(images="data: blob:", hsts=guard.secure_cookie,
                                       no_store=not cacheable)
        if request.path.startswith("/static/"):  # asked again at each load (a 304 while unchanged): after an
            response.set_header("Cache-Control", "no-cache")  # upgrade a browser kept the old scripts for hours

    @app.hook("before_request")
    def guard_paths():
        """Defence in depth: every /admin and /api/admin path needs an admin, whatever
        the route itself checks, and no state-changing request comes from another site."""
        if not allowed_hosts.allows(request.headers.get("Host", "")):
            if hardening.wants_html():  # a browser: a page in plain words, not a line of JSON
                raise bottle.HTTPResponse(guard.bare_page("Not this device's name", HOST_REFUSED_PAGE, home=False), 400)
            raise json_error(400, "unknown Host header: open this device by its own name or address "
                                  "(web.allowed_hosts lists more names)")
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            guard.check_same_origin()
        hardening.readable_form(skip_paths=UPLOAD_PATHS)
        if auth_routes.is_admin_path(request.path):
            guard.require_user(admin=True)

    @app.get("/static/<name:path>")
    def static(name):
        return bottle.static_file(name, root=str(HERE / "static"))

    @app.get("/favicon.ico")
    def favicon():
        """Browsers ask for it whatever a page links (a JSON answer, an error page links
        nothing): a 404 was an error in each such page's console. Drawn by tools/draw_favicon.py."""
        return bottle.static_file("favicon.ico", root=str(HERE / "static"), mimetype="image/vnd.microsoft.icon")

    auth_routes.install(app, ctx, guard)
    upload.install(app, ctx, guard, limits)
    live.install(app, ctx, guard)
    privacy.install(app, ctx, guard)  # the student's pause button
    for admin_group in (admin_dashboard, admin_log, admin_alerts, admin_users, admin_settings, admin_model, admin_audit):
        admin_group.install(app, ctx, guard)
    health.install(app, ctx, guard)
    fleet_admin.install(app, ctx, guard)  # /admin/classroom: the MQTT broker settings and a connection test

    @app.error(404)
    def not_found(err):
        if wants_json():
            response.content_type = "application/json"
            return json.dumps({"error": "not found"})
        return guard.page("error", title="Not found", message="There is no such page.")

    @app.error(405)
    def wrong_method(err):
        """A form's address opened in the address bar (``/logout``, a refused upload's page
        reloaded with Enter): bottle's own bare page had no way back."""
        if wants_json():
            response.content_type = "application/json"
            return json.dumps({"error": f"{request.method} is not allowed here; use {err.headers.get('Allow', 'POST')}"})
        return guard.page("error", title="Not a page to open", message="This address answers a form's button, "
                          "not a link: go back and use the button on the page.")

    @app.error(400)
    def bad_request(err):
        if hardening.wants_html():  # a browser's form cut short: a page with a way back, not a line of JSON
            hardening.set_security_headers(hsts=guard.secure_cookie)
            return guard.page("error", title=hardening.BAD_REQUEST_TITLE, message=hardening.bad_request_words(err))
        return hardening.bad_request(err, hsts=guard.secure_cookie)

    @app.error(500)
    def server_error(err):
        message = hardening.disk_full(err, ctx.store, hsts=guard.secure_cookie, admin=may_be_admin)
        if message:
            if not wants_json():
                try:
                    page = guard.page("error", title="The disk is full", message=message)
                    response.content_type = "text/html; charset=UTF-8"
                    return page
                except Exception:  # drawing the page needs the database too: say it in JSON then
                    log.warning("the disk-full page could not be drawn", exc_info=True)
            return json.dumps({"error": message})
        return hardening.server_error(err, "engage-edge", hsts=guard.secure_cookie, page=error_page)

    def may_be_admin() -> bool:
        """Whether the user is an admin, or may be one (not logged in, or unknown)."""
        try:
            found = guard.current()
        except Exception:  # noqa: BLE001 - the database may be what failed
            return True
        return not found or found[0].is_admin

    def error_page(message: str) -> str:
        """The 500 page: with the header of whoever is logged in, or without when that fails.
        Where the log is and the command that reads it are for an admin: a student was told
        "journalctl -u engage-edge"."""
        try:
            found = guard.current()
            if not (found and found[0].is_admin):
                message = hardening.SERVER_ERROR_PAGE
            return guard.page("error", title="Something went wrong", message=message)
        except Exception:  # the database may be what failed
            return guard.bare_page("Something went wrong", message)

    return app
