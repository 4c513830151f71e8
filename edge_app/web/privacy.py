"""The student's privacy switch over the web: any logged-in user (a student at the desk,
an admin) pauses the camera, from the button in every page's header or the JSON API. The
pause is theirs: on a shared desk the next student must not switch the camera back on
over them, so only the one who paused, an instructor or an admin resumes it (a pause from
the desk's button, or saved before pauses had owners, anyone). The header offers "Resume
camera" only to those; the others read until when it stays off. The capture loop does the
pausing (``runtime.privacy``); this only presses it. A GET of /privacy (the switch's form
target) is the page a student reads about what this device keeps and who sees it."""
from __future__ import annotations

import json
import time
from collections.abc import Callable

import bottle
from bottle import HTTPResponse, request, response

from edge_app.runtime.privacy import Pause
from edge_app.store import reports
from edge_app.store.accounts import User, account_created
from edge_app.store.database import AUDIT_KEEP_DAYS, audit_days
from edge_app.wall_clock import local_time
from edge_app.web.guard import Guard, json_error, safe_next
from edge_app.web.hardening import wants_html
from edge_app.web.live import CLOCK_WAITS_PLAIN, clock_waits, days_kept

RESUME_ANY = ("admin", "instructor")  # roles that resume anyone's pause (the teacher in the room)


def local_path(value: str, default: str = "/live") -> str:
    """``value`` if it is a path on this device ("/live?x=1"), else ``default``: never
    another site ("//evil", "https://...", "/\\evil", and "/<tab>/evil", which a browser
    reads as "//evil" once it drops the tab). The log-in's ``next`` rule (``safe_next``)."""
    return value if value.startswith("/") and safe_next(value) == value else default


def page_back() -> str:
    """Where the header's button (without JavaScript) leads back to: this page and its query
    (less a one-time ``note``) when a GET opens it again, else "": the answer to a form (a
    class's password sheet, "Confirm your password", a 400 page) led back to a GET of its
    path, "Not a page to open", and the sheet was lost with it."""
    if request.method not in ("GET", "HEAD"):
        return ""
    query = "&".join(p for p in request.query_string.split("&") if p and not p.startswith("note="))
    return request.path + (f"?{query}" if query else "")


PAUSED_ELSEWHERE = ("Camera paused: nothing is filmed or analysed until you resume it (the button at the top). The page "
                    "you pressed it on answered a form, so it could not be opened again here: it stays in the tab you "
                    "pressed it in.")


def is_owner(user: User, created: float | None, pause: Pause) -> bool:
    """Whether ``pause`` is ``user``'s (``created``: ``account_created``): their id, and their
    account, not a later one given the id of its deleted owner (a pause saved before pauses
    kept the account: the id alone)."""
    return pause.owner == user.id and (pause.owner_created is None or pause.owner_created == created)


def pauses_of(ctx, user: User) -> Callable[[Pause], bool]:
    """Whether a pause is ``user``'s, by their id and their account's creation time, read now:
    before the account is deleted (``disown_pause``)."""
    created = account_created(ctx.store, user)
    return lambda pause: is_owner(user, created, pause)


def disown_pause(ctx, theirs: Callable[[Pause], bool], username: str) -> str:
    """Once an account is deleted (its sessions with it: no pause of theirs can start after):
    a pause of theirs (``theirs``: ``pauses_of``, taken before) stays on, anyone's to resume
    (``PrivacySwitch.disown``). The words for the admin when there was one, else ""."""
    if ctx.loop is None or not ctx.loop.privacy.disown(theirs):
        return ""
    return f" The camera pause {username} started stays on: anyone at the desk can now resume it."


def may_resume(user: User, created: float | None, pause: Pause) -> bool:
    """Whether ``user`` may end ``pause``: theirs, one without an owner, or a teacher's role."""
    return pause.owner is None or user.role in RESUME_ANY or is_owner(user, created, pause)


def header_may_resume(user: User, pause: Pause) -> bool:
    """``may_resume`` for the page header's template, which has this request's app, not its ``ctx``."""
    return may_resume(user, account_created(bottle.request.app.config["ctx"].store, user), pause)


def until_text(pause: Pause) -> str:
    """" until 14:05" (or " until 29 Nov 14:05"): when the pause ends by itself, on the
    device's clock, its zone named when the clocks change before then (a pause from 02:50
    CEST said "until 02:20" in the hour the clocks go back); "" when only a resume ends it."""
    if pause.until is None:
        return ""
    fmt = "%H:%M" if time.localtime(pause.until)[:3] == time.localtime()[:3] else "%d %b %H:%M"
    return " until " + local_time(pause.until, fmt)


def own_pause(pause: Pause) -> str:
    """The header's words for a pause this user may resume: when it ends by itself too (the
    owner saw only "Camera paused", and the camera came back on at the limit unannounced)."""
    return "Camera paused" + until_text(pause)


def pause_title() -> str:
    """The Pause button's promise, with the pause's time limit when an admin set one."""
    limit = bottle.request.app.config["ctx"].cfg.privacy.max_pause_minutes
    if not limit:
        return "Nothing is filmed or analysed until you resume"
    return f"Nothing is filmed or analysed until you resume, for {limit:g} minutes at most"


def header_words(user: User, pause: Pause) -> str:
    """The header's words for ``pause``: its end for one this user may resume, else whose."""
    return own_pause(pause) if header_may_resume(user, pause) else someone_elses(pause)


def someone_elses(pause: Pause) -> str:
    """The header's words for a pause this user may not resume (never who paused)."""
    return "Camera paused by someone else" + until_text(pause)


def not_yours(pause: Pause) -> str:
    """Why a resume was refused, and until when the camera stays off (never who paused)."""
    until = until_text(pause).strip() + " at the latest" if pause.until is not None else "until they resume it"
    return (f"The camera was paused by someone else and stays off {until}. Only they, a teacher or an admin "
            "can resume it: ask them.")


def about_page(ctx, user: User) -> dict[str, object]:
    """What ``views/privacy_page.tpl`` says, read from this device's settings now (``ctx.cfg``,
    which Settings replaces on save): the page must be true for this device, not for the
    defaults. And from what it holds now: pictures kept while a setting kept them stay
    until their retention or a delete when the admin turns it off, and the page said "No
    picture from the camera is kept" over a month of alert frames of whoever sat there."""
    cfg = ctx.cfg
    limit = cfg.privacy.max_pause_minutes
    audit_for = audit_days(cfg.store.retention_days)  # ``Store.purge``
    return {"days": days_kept(ctx), "waits": clock_waits(ctx), "clock_words": CLOCK_WAITS_PLAIN, "keep": cfg.privacy.keep_uploads,
            "snapshots": cfg.privacy.snapshot_on_alert, "frames_kept": reports.stored_snapshots(ctx.store),
            "my_pictures": reports.user_data_counts(ctx.store, user.id)["images"], "picture_to_all": cfg.privacy.live_video == "everyone",
            "classroom": bool(cfg.mqtt.host), "with_emotion": cfg.mqtt.include_emotion,
            "alert_after": f"{cfg.indicators.buzzer_after_s:g}", "beeps": cfg.indicators.buzzer,
            "pause_limit": f"{limit:g}" if limit else "", "camera": ctx.loop is not None,
            "audit_for": "a year" if audit_for == AUDIT_KEEP_DAYS else f"{audit_for} days",
            # only the gpio backend reads the desk's button (device/pause_button.py)
            "desk_button": cfg.indicators.pause_button_pin >= 0 and cfg.indicators.backend == "gpio"}


def install(app: bottle.Bottle, ctx, guard: Guard) -> None:
    def switch():
        if ctx.loop is None:
            raise json_error(409, "this device runs no camera loop, so there is nothing to pause")
        return ctx.loop.privacy

    def status(user: User, status_code: int = 200, error: str = ""):
        """The pause on now, whether it is this user's and they may resume it, and else
        the header's words for it (``label``: state.js shows them as the page does)."""
        pause = ctx.loop.privacy.active if ctx.loop else None
        body: dict[str, object] = {"paused": pause is not None}
        if pause:
            created = account_created(ctx.store, user)
            can = may_resume(user, created, pause)
            body |= {"pause": pause.public(), "yours": is_owner(user, created, pause), "can_resume": can,
                     "label": own_pause(pause) if can else someone_elses(pause)}
        if error:
            body["error"] = error
        response.content_type = "application/json"
        if status_code == 200:
            return json.dumps(body)
        return HTTPResponse(json.dumps(body), status_code, {"Content-Type": "application/json"})  # its own headers

    @app.get("/api/privacy")
    def api_status():
        return status(guard.require_user())

    @app.post("/api/pause")
    def api_pause():
        # a student still on the password they were given may pause (it only films less); resuming
        # waits for their own password
        user = guard.require_user(given_password_ok=True)
        guard.check_csrf()
        switch().pause("web", owner=user.id, owner_created=account_created(ctx.store, user))
        return status(user)

    @app.post("/api/resume")
    def api_resume():
        user = guard.require_user()
        guard.check_csrf()
        created = account_created(ctx.store, user)  # read before: the switch's lock is held while it judges
        kept = switch().resume(lambda pause: may_resume(user, created, pause))
        return status(user, 403, not_yours(kept)) if kept is not None else status(user)

    @app.get("/privacy")
    def about():
        """The page a student reads: what this device keeps about them, for how long, who sees
        it, what leaves the device, the pause and how to get things deleted. The address was
        the header button's form target only ("Not a page to open"); its POST is unchanged."""
        user = guard.require_user()
        return guard.page("privacy_page", title="Your privacy", **about_page(ctx, user))

    @app.post("/privacy")
    def form():
        """The header's button: pause or resume, then back to the page it was pressed on."""
        action = request.forms.get("do", "")
        user = guard.require_user(given_password_ok=action == "pause")  # as /api/pause
        guard.check_csrf()
        if action not in ("pause", "resume"):  # never from the header's button: a hand-made form
            message = 'the form\'s "do" must be "pause" or "resume": use the Pause camera button at the top of a page'
            if wants_html():
                raise HTTPResponse(guard.page("error", title="Not a camera switch", message=message[0].upper() + message[1:] + "."),
                                   400)
            raise json_error(400, message)
        s, created = switch(), account_created(ctx.store, user)
        if action == "pause":
            s.pause("web", owner=user.id, owner_created=created)
        elif (kept := s.resume(lambda pause: may_resume(user, created, pause))) is not None:
            return HTTPResponse(guard.page("error", title="Camera paused by someone else", message=not_yours(kept)),
                                403)
        back = request.forms.getunicode("back", "") or ""
        if back:
            raise bottle.redirect(local_path(back), 303)
        # pressed on the answer to a form (``page_back``), in a tab of its own: a page that says so
        guard.flash_redirect("/upload", PAUSED_ELSEWHERE if action == "pause" else "Camera on again.")
