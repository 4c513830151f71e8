"""The live view: its page, the desk view, the current state, the timeline chart's data and the MJPEG stream.

cheroot streams generator responses as they are produced, so an endless MJPEG stream
holds one worker thread and nothing is buffered; ``ViewerSlots`` bounds the viewers so
the pool always has threads left for pages.
"""
from __future__ import annotations

import json
import threading
import time

import bottle
from bottle import request, response

from edge_app.engagement import ABSENT, GROUPS, level_words
from edge_app.runtime.live import LiveFrame, mjpeg_stream
from edge_app.store import reports
from edge_app.web.guard import COOKIE, Guard, json_error
from edge_app.web.hardening import wants_html

SESSION_RECHECK_S = 1.0  # how often the endless MJPEG response re-checks its viewer's session


def _zone_at(t: float) -> dict:
    """The device's UTC offset and zone name at ``t``, as /api/timeline sends them."""
    lt = time.localtime(t)
    return {"utc_offset_s": lt.tm_gmtoff, "zone": lt.tm_zone}


def zone_spans(start: float, end: float) -> list[dict]:
    """The device's UTC offsets over [``start``, ``end``], earliest first: each as ``from``
    (when it took effect, ``start`` for the first), ``utc_offset_s`` and ``zone``. The chart
    drew every time in the offset of its "now": in the ten minutes after the clocks went
    forward its axis read "02:55" (an hour that never was) where the log has 01:55, and after
    they went back an hour off the other way. A span of an hour or so holds one change at
    most; the change is found to the second (zones change on whole seconds)."""
    first, last = _zone_at(start), _zone_at(end)
    if first == last:
        return [{"from": start, **first}]
    before, after = int(start), int(end) + 1  # _zone_at(before) is the first's, _zone_at(after) the last's
    while after - before > 1:
        mid = (before + after) // 2
        if _zone_at(mid) == first:
            before = mid
        else:
            after = mid
    return [{"from": start, **first}, {"from": float(after), **last}]


def days_kept(ctx) -> str:
    """``store.retention_days`` in words: "30 days", "1 day"."""
    n = ctx.cfg.store.retention_days
    return f"{n} day" + ("" if n == 1 else "s")


def clock_waits(ctx) -> bool:
    """Whether the clean-up goes by the device's running time, no time server having set its
    clock (``Housekeeping.run_once``): records may stay longer than the days say."""
    keeper = getattr(ctx, "housekeeping", None)
    return keeper is not None and keeper.clock_set() is False


# a student's words for ``clock_waits``, once a paragraph: the admin's ("a time server") is for who can act on it
CLOCK_WAITS_PLAIN = ("Right now this device does not know the date for sure, so it counts only the days it is "
                     "switched on: things may stay a little longer. Its admin has been told.")


def kept_for(ctx, admin: bool = True) -> str:
    """How long records stay: "30 days", and for an admin, while no time server has set the
    clock, that the days are the device's running days. /live promised "1 days" on a device that had
    deleted nothing for weeks. A student reads the days alone here and ``CLOCK_WAITS_PLAIN``
    once at the end of the paragraph (``states_logged``): the admin's words, said twice in
    one paragraph, told a 12-year-old about time servers they cannot do anything about."""
    days = days_kept(ctx)
    if admin and clock_waits(ctx):
        return (f"{days} of this device being switched on (no time server has set its clock yet, so days it is "
                "switched off do not count, and its admin is told)")
    return days


def states_logged(ctx, too: bool = False, admin: bool = True, said: bool = False) -> str:
    """Who sees the desk's engagement states and for how long, in one wording for every page
    that says it: /live told a student the states went to the admins' log only, while with
    ``mqtt`` set the instructors' classroom view shows them as they change. ``said``: the
    paragraph gave the admin's clock words already (``kept_for``), so not again; a student's
    plain words end with ``CLOCK_WAITS_PLAIN`` when it applies."""
    classroom = " and instructors see the state now in their classroom view" if ctx.cfg.mqtt.host else ""
    also = " too" if too else ""
    if admin:
        days = days_kept(ctx) if said else kept_for(ctx)
        return f"The desk's engagement states are logged for {days}{also} (admins see the log{classroom})."
    deleted = "" if too else ", then deleted automatically"
    waits = " " + CLOCK_WAITS_PLAIN if clock_waits(ctx) else ""
    return f"The desk's engagement states are kept for {days_kept(ctx)}{also}{deleted} (admins see the log{classroom}).{waits}"


class ViewerSlots:
    """A bounded number of concurrent MJPEG viewers (``web.max_viewers``). With the picture
    shown to everyone (``privacy.live_video``), one student opening four tabs took every slot
    and the admin got 503: an account that is not an admin holds one stream at a time, and
    those accounts together leave the last slot free for an admin."""

    def __init__(self, limit: int, live: LiveFrame | None):
        self.limit, self.live = limit, live
        self._lock = threading.Lock()
        self.count = 0
        self._others: set[int] = set()  # the accounts, not admins, watching now (one stream each)

    def acquire(self, user) -> str | None:
        """Take a slot for ``user``; None when taken, else why not (for the 503)."""
        with self._lock:
            if not user.is_admin and user.id in self._others:
                return "you are watching the live view already (another tab or window): close it first"
            if self.count >= self.limit:
                return f"the live view already has {self.limit} viewers; try again later"
            if not user.is_admin:
                if self.limit > 1 and len(self._others) >= self.limit - 1:
                    return "the live view's other places are taken; the last is kept for an admin"
                self._others.add(user.id)
            self.count += 1
            if self.live:
                self.live.viewers = self.count
            return None

    def release(self, user) -> None:
        with self._lock:
            self.count = max(0, self.count - 1)
            if not user.is_admin:
                self._others.discard(user.id)
            if self.live:
                self.live.viewers = self.count


def install(app: bottle.Bottle, ctx, guard: Guard) -> None:
    viewers = ViewerSlots(ctx.cfg.web.max_viewers, ctx.live)
    app.config["viewers"] = viewers

    may_watch = guard.sees_picture

    def shown(user, label: str, group: str) -> str:
        """A level as ``user`` is shown it: the configured words name the emotion ("Engaged -
        likes the topic" is happiness), held back from whoever may not see the picture, as
        ``/api/state``'s emotion is and as the broker gets it without ``include_emotion``."""
        return level_words(label, group, may_watch(user))

    def own_chart_from(user) -> float | None:
        """Where a student's chart begins: their log-in. A desk is shared, so the minutes before
        it are most likely another student's (the reason the picture is admins' by default);
        instructors and admins, who look after the desk, see its whole span (None)."""
        if user.role != "student":
            return None
        # a session ended since this request began (a log-out in another tab) has no start: nothing before now
        return ctx.accounts.session_started(request.get_cookie(COOKIE)) or time.time()

    def state_words(user) -> str:
        return guard.shown_state(user, ctx.loop.state).level if ctx.loop else "no camera loop"

    @app.get("/live")
    def live_page():
        user = guard.require_user()
        # turned off since: the frames taken before stay, and "not stored" alone denied them
        frames_kept = 0 if ctx.cfg.privacy.snapshot_on_alert else reports.stored_snapshots(ctx.store)
        return guard.page("live", title="Live", state=ctx.loop.state if ctx.loop else None, groups=GROUPS,
                          level=state_words(user), snapshots_on=ctx.cfg.privacy.snapshot_on_alert,
                          frames_kept=frames_kept, kept_for=kept_for(ctx, user.is_admin), watch=may_watch(user),
                          # the frames' sentence before it gave the admin's clock words already (kept_for)
                          states_note=states_logged(ctx, admin=user.is_admin,
                                                    said=ctx.cfg.privacy.snapshot_on_alert or frames_kept > 0),
                          own_chart=own_chart_from(user) is not None)

    @app.get("/glance")
    def glance_page():
        """The desk view: the state as a full-screen colour field, readable across a room."""
        user = guard.require_user()
        return guard.page("glance", title="Desk view", state=ctx.loop.state if ctx.loop else None,
                          level=state_words(user), max_hours=ctx.cfg.web.session_max_hours)

    @app.get("/api/state")
    def api_state():
        user = guard.require_user()
        response.content_type = "application/json"
        if not ctx.loop:
            return json.dumps({"level": None})
        loop = ctx.loop
        # one frame's frozen state (fields never mix frames), its loop-clock times as wall clock
        now = loop.clock()
        # the face's expression is the picture's, held back as it is from whoever may not see that: the
        # emotion, its probabilities, the level's words that name it, and the moment it changed
        state = loop.snapshot.public(loop.wall() - now, now, with_emotion=may_watch(user))
        return json.dumps({**state, "camera": ctx.loop.health.camera, "fps": round(ctx.loop.health.fps, 1)})

    @app.get("/api/timeline")
    def api_timeline():
        """The engagement level over the last minutes: the state changes, for the live chart."""
        user = guard.require_user()
        try:
            minutes = min(60, max(1, int(request.query.get("minutes", 10))))
        except ValueError:
            return json_error(400, "minutes must be a whole number from 1 to 60")
        now = time.time()
        cutoff = now - minutes * 60
        own_from = own_chart_from(user)
        start = max(cutoff, own_from or cutoff)
        before, rows = reports.timeline(ctx.store, start)
        points = []
        if before:
            points.append({"t": start, "level": before["level"], "group": before["grp"]})
        elif ctx.loop and ctx.started > start:
            points.append({"t": ctx.started, "level": ABSENT, "group": ABSENT})
        points += [{"t": r["t"], "level": r["level"], "group": r["grp"]} for r in rows]
        points.sort(key=lambda p: p["t"])  # the start's Absent may come after rows of the run before
        for point in points:
            point["level"] = shown(user, point["level"], point["group"])
        if not may_watch(user):  # a change of expression within a level is no change to them
            points = [p for i, p in enumerate(points) if i == 0 or p["level"] != points[i - 1]["level"]]
        response.content_type = "application/json"
        # the device's clock time, not the browser's: the log, the CSV and quiet hours are in the
        # device's zone, and a chart drawn in the viewer's said "from 02:50" beside a log's 01:50;
        # "zones": its offsets over the chart's span, as the clocks may have changed within it
        return json.dumps({"from": cutoff, "now": now, "own_from": own_from, "points": points, "groups": list(GROUPS),
                           "zones": zone_spans(cutoff, now), **_zone_at(now)})

    @app.get("/live.mjpg")
    def live_stream():
        user = guard.require_user()

        def refuse(status: int, message: str, words: str = ""):
            """JSON for the page's picture (live.js reads it); a page for the address opened in a
            tab (a bookmark, a link passed on), which showed that JSON as text."""
            if wants_html():
                shown = words or message[:1].upper() + message[1:] + "."
                return bottle.HTTPResponse(guard.page("error", title="No live picture", message=shown), status)
            return json_error(status, message)

        if not may_watch(user):
            return refuse(403, "on this device the live picture is shown to admins only (privacy.live_video)",
                          "The live picture is shown to admins only on this device: it shows whoever sits at the desk "
                          "now. The desk's state and its chart are on the Live page.")
        if ctx.live is None or ctx.loop is None:
            return refuse(503, "no live camera loop is running")
        refused = viewers.acquire(user)
        if refused:
            return refuse(503, refused)
        response.content_type = "multipart/x-mixed-replace; boundary=frame"
        response.set_header("Cache-Control", "no-store")

        token = request.get_cookie(COOKIE)

        def frames():
            checked = time.monotonic()
            try:  # a placeholder during a camera fault: a closed tab raises on write and lands here
                for part in mjpeg_stream(ctx.live, lambda: ctx.loop.health.camera, ctx.cfg.web.stream_fps):
                    if time.monotonic() - checked > SESSION_RECHECK_S:  # a disabled or logged-out viewer's stream ends
                        viewer = ctx.accounts.session_user(token, refresh=False)  # a check, not use
                        if not viewer or not may_watch(viewer[0]):  # also: the setting changed to admins
                            return
                        checked = time.monotonic()
                    yield part
            finally:
                viewers.release(user)

        return frames()
