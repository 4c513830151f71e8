"""The student's privacy switch over the web: any logged-in user (a student at the desk,
an admin) pauses or resumes the camera, from the button in every page's header or the
JSON API. The capture loop does the pausing (``runtime.privacy``); this only presses it."""
from __future__ import annotations

import json

import bottle
from bottle import request, response

from edge_app.web.guard import Guard, json_error, safe_next


def local_path(value: str, default: str = "/live") -> str:
    """``value`` if it is a path on this device ("/live?x=1"), else ``default``: never
    another site ("//evil", "https://...", "/\\evil", and "/<tab>/evil", which a browser
    reads as "//evil" once it drops the tab). The log-in's ``next`` rule (``safe_next``)."""
    return value if value.startswith("/") and safe_next(value) == value else default


def install(app: bottle.Bottle, ctx, guard: Guard) -> None:
    def switch():
        if ctx.loop is None:
            raise json_error(409, "this device runs no camera loop, so there is nothing to pause")
        return ctx.loop.privacy

    def status() -> str:
        pause = ctx.loop.privacy.active if ctx.loop else None
        response.content_type = "application/json"
        return json.dumps({"paused": pause is not None, **({"pause": pause.public()} if pause else {})})

    @app.get("/api/privacy")
    def api_status():
        guard.require_user()
        return status()

    @app.post("/api/pause")
    def api_pause():
        guard.require_user()
        guard.check_csrf()
        switch().pause("web")
        return status()

    @app.post("/api/resume")
    def api_resume():
        guard.require_user()
        guard.check_csrf()
        switch().resume()
        return status()

    @app.post("/privacy")
    def form():
        """The header's button: pause or resume, then back to the page it was pressed on."""
        guard.require_user()
        guard.check_csrf()
        action = request.forms.get("do", "")
        if action not in ("pause", "resume"):
            raise json_error(400, 'do must be "pause" or "resume"')
        s = switch()
        s.pause("web") if action == "pause" else s.resume()
        raise bottle.redirect(local_path(request.forms.getunicode("back", "") or ""), 303)
