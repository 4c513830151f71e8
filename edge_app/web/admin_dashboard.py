"""The admin dashboard: today's summary, a 14-day chart, the latest alerts and the live state.

Like every admin module, each route calls ``guard.require_user(admin=True)`` itself, and
``make_app`` also guards every ``/admin`` and ``/api/admin`` path in a hook, so a route
added later without a check is still refused to students and anonymous users.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import threading
import time

import bottle
from bottle import response

from edge_app.device import clock
from edge_app.store import reports
from edge_app.wall_clock import local_time
from edge_app.web.guard import Guard


def _midnight(days_ago: int = 0, today: dt.date | None = None) -> float:
    """The local midnight that began the day ``days_ago`` before today (-1: the next one)."""
    midnight = dt.datetime.combine(today or dt.date.today(), dt.time())
    return (midnight - dt.timedelta(days=days_ago)).timestamp()


def day_bounds(days_ago: int = 0, today: dt.date | None = None) -> tuple[float, float]:
    """That local day as [start, end): 23 or 25 hours on the days the clocks change, so
    each bound is a midnight of its own rather than the start plus 86,400 s."""
    return _midnight(days_ago, today), _midnight(days_ago - 1, today)


def days_chart(store, days: int = 14) -> tuple[str, list[dict]]:
    """An inline SVG stacked bar chart of minutes per engagement group per day.

    No viewBox: the chart is as wide as its card and its x positions are percentages,
    so the text keeps its real pixel size on a phone instead of shrinking with the
    drawing; every other date is marked ``minor`` (hidden on narrow screens)."""
    rows = []
    for ago in range(days - 1, -1, -1):
        start, end = day_bounds(ago)
        s = reports.day_summary(store, start, end)
        rows.append({"day": dt.date.fromtimestamp(start + 3600), **s})
    peak = max([r["total_s"] for r in rows] + [60.0])
    H, bottom, top = 220, 28, 12
    left = 11.0  # percent of the width for the minute labels
    bw = (100 - left - 1) / days  # percent per day
    parts = [f'<svg class="chart" width="100%" height="{H}" role="img" aria-labelledby="days-title days-desc">',
             '<title id="days-title">Minutes per engagement level per day</title>',
             f'<desc id="days-desc">Stacked bars for the last {days} days.</desc>']
    for frac in (0, 0.5, 1):
        y = top + (H - top - bottom) * (1 - frac)
        parts.append(f'<line x1="{left}%" x2="99%" y1="{y:.1f}" y2="{y:.1f}" stroke="#e4e7ec"/>')
        parts.append(f'<text x="{left - 1}%" y="{y + 4:.1f}" text-anchor="end" font-size="12" fill="#5b6576">'
                     f'{_minutes_label(peak * frac)}</text>')
    for i, r in enumerate(rows):
        x = left + i * bw + 0.3
        y = H - bottom
        for g in r["seconds"]:  # the groups minute_stats keeps (no "Paused": nothing is measured then)
            h = (H - top - bottom) * r["seconds"][g] / peak
            if h > 0:
                y -= h
                parts.append(f'<rect x="{x:.2f}%" y="{y:.1f}" width="{bw - 0.6:.2f}%" height="{h:.1f}" '
                             f'class="{g.css_class}"><title>{r["day"]:%a %d %b} {bottle.html_escape(g)}: '
                             f'{r["seconds"][g] / 60:.0f} min</title></rect>')
        minor = ' class="minor"' if (days - 1 - i) % 2 else ""  # today and every other day stay on phones
        parts.append(f'<text{minor} x="{x + (bw - 0.6) / 2:.2f}%" y="{H - 8}" text-anchor="middle" font-size="12" '
                     f'fill="#5b6576">{r["day"]:%d/%m}</text>')
    parts.append("</svg>")
    return "".join(parts), rows


def _minutes_label(seconds: float) -> str:
    if seconds == 0:
        return "0"
    minutes = seconds / 60
    return f"{minutes:.0f}" if minutes >= 10 else f"{minutes:.1f}".removesuffix(".0")  # the heading says "minutes"


def stack_widths(seconds: dict, steps: int = 20) -> dict:
    """Each group's width in today's bar, in percent, as app.css's ``w0`` to ``w100``
    classes allow (steps of 100 / ``steps``): they add up to 100, a group with any time
    keeps one step (it stays visible) and the rest go by largest remainder. Each width
    rounded on its own left the bar a step short or long (52/16/16/16 % drew 95 %)."""
    total = sum(seconds.values())
    exact = {g: s / total * steps for g, s in seconds.items() if s > 0} if total > 0 else {}
    units = {g: max(1, int(x)) for g, x in exact.items()}
    while exact and sum(units.values()) < steps:
        units[max(exact, key=lambda g: exact[g] - units[g])] += 1
    while sum(units.values()) > steps:  # the one-step floor overdrew: take from the group it costs least
        units[min((g for g in units if units[g] > 1), key=lambda g: exact[g] - units[g])] -= 1
    return {g: u * 100 // steps for g, u in units.items()}


def shares(seconds: dict, total_s: float) -> list[tuple]:
    """Every group with time today and its share in whole percent, in the bar's order: the
    bar's legend (its colours told apart by their words, for a red-green colour-blind admin)."""
    return [(g, f"{s / total_s * 100:.0f}%") for g, s in seconds.items() if s > 0 and total_s > 0]


def shares_in_words(seconds: dict, total_s: float) -> str:
    """Today's bar for a screen reader: every group with time, its share in percent, as the
    bar draws them."""
    minutes = total_s / 60
    span = f"{minutes:.0f} min" if minutes >= 1 or total_s == 0 else f"{total_s:.0f} s"
    return f"Live time today, {span}: " + ", ".join(f"{g} {share}" for g, share in shares(seconds, total_s))


def today_tiles(today: dict) -> dict[str, str]:
    """Today's figures as the tiles show them: the page and ``/api/admin/today`` (which
    dashboard.js polls, so the tiles keep up with the day) format them here, once."""
    absent = int(today["absent_s"])
    return {"engaged-share": f"{today['engaged_share'] * 100:.0f}%" if today["engaged_share"] is not None else "–",
            "absent": f"{absent // 3600}:{absent % 3600 // 60:02d}", "alerts": str(today["alerts"]),
            "uploads": str(today["uploads"])}


# The parts of the dashboard drawn from what changes during a day, each its own template
# (views/dashboard_<name>.tpl): the page draws them, and /api/admin/today sends them again,
# rendered by the same templates from the same values, so an open dashboard (dashboard.js)
# swaps in the ones that changed. Without it a full disk after the page loaded never showed,
# "Recent alerts" kept its old list beside a growing "Alerts raised" tile, and the Today bar
# kept its load-time shares. No reload: a page load restarts the session's idle timer.
PIECES = ("clock", "store", "bar", "days", "alerts")


class RecentDaysChart:
    """``days_chart``, drawn at most every ``every_s`` (and again on a new day): it is 42
    queries, and each open dashboard asked them every 10 s, beside the camera loop on the
    Pi's CPU. Today's column grows by minutes; a minute late is nothing to read."""

    def __init__(self, store, every_s: float = 60.0):
        self.store, self.every_s = store, every_s
        self._lock = threading.Lock()
        self._drawn: tuple[float, float, tuple[str, list[dict]]] | None = None  # (at, day, chart)

    def __call__(self) -> tuple[str, list[dict]]:
        now, day = time.monotonic(), day_bounds()[0]
        with self._lock:
            if self._drawn is not None and self._drawn[1] == day and now - self._drawn[0] < self.every_s:
                return self._drawn[2]
        chart = days_chart(self.store)
        with self._lock:
            self._drawn = (now, day, chart)
        return chart


def piece_values(ctx, recent_days: RecentDaysChart) -> dict:
    """Everything the dashboard draws from the store, the loop and the clock, as of now (the
    14-day chart as ``recent_days`` last drew it)."""
    start, end = day_bounds()
    today = reports.day_summary(ctx.store, start, end)
    svg, days = recent_days()
    # "zone": the one in force now, which the page's headings name; at a change of the clocks the
    # page is drawn again (dashboard.js), or "Recent alerts (CET)" headed alerts drawn in CEST
    return {"today": today, "tiles": today_tiles(today), "day": int(start), "zone": time.strftime("%Z"),
            "chart": svg, "days": days,
            "widths": stack_widths(today["seconds"]),
            "bar_words": shares_in_words(today["seconds"], sum(today["seconds"].values())),
            "bar_shares": shares(today["seconds"], sum(today["seconds"].values())),
            "alerts": reports.recent_alerts(ctx.store, 5), "snapshots_on": ctx.cfg.privacy.snapshot_on_alert,
            "snapshots_stored": reports.stored_snapshots(ctx.store),
            "groups": tuple(today["seconds"]),  # the measured groups: not "Paused"
            "health": ctx.loop.health if ctx.loop else None,
            "clock_unset": clock.synchronized() is False, "clock_help": clock.WHAT_TO_DO,
            "lost_at_reboot": ctx.lost_at_reboot,
            "clock_trusted": ctx.cfg.store.trust_device_clock}


def render_pieces(values: dict) -> dict[str, dict[str, str]]:
    """Each piece's HTML (the templates escape every stored value) and a version: a short
    hash of that HTML, so the page replaces a piece only when it reads otherwise."""
    pieces = {}
    for name in PIECES:
        html = bottle.template(f"dashboard_{name}", local_time=local_time, **values)
        # the store warning's "12.3 MB free" changes at every poll while the disk is full: swapped
        # in each time, its role="alert" was read out again every 10 s. Its version is its words.
        told = re.sub(r"\d+(\.\d+)?", "#", html) if name == "store" else html
        pieces[name] = {"html": html, "version": hashlib.sha256(told.encode()).hexdigest()[:16]}
    return pieces


def install(app: bottle.Bottle, ctx, guard: Guard) -> None:
    recent_days = RecentDaysChart(ctx.store)

    @app.get("/api/admin/today")
    def api_today():
        guard.require_user(admin=True)
        response.content_type = "application/json"
        values = piece_values(ctx, recent_days)
        # "day" and "zone": the page compares them with its own, and reloads once midnight has passed
        # or the clocks have changed; "pieces": the page's parts drawn from the day's data, which it
        # swaps in when changed
        return json.dumps({**values["tiles"], "day": values["day"], "zone": values["zone"],
                           "pieces": render_pieces(values)})

    @app.get("/admin")
    def dashboard():
        guard.require_user(admin=True)
        values = piece_values(ctx, recent_days)
        return guard.page("admin_dashboard", title="Dashboard", pieces=render_pieces(values),
                          state=ctx.loop.state if ctx.loop else None, **values)
