"""The admin dashboard: today's summary, a 14-day chart, the latest alerts and the live state.

Like every admin module, each route calls ``guard.require_user(admin=True)`` itself, and
``make_app`` also guards every ``/admin`` and ``/api/admin`` path in a hook, so a route
added later without a check is still refused to students and anonymous users.
"""
from __future__ import annotations

import datetime as dt

import bottle

from edge_app.store import reports
from edge_app.web.guard import Guard


def _midnight(days_ago: int = 0) -> float:
    today = dt.datetime.combine(dt.date.today(), dt.time())
    return (today - dt.timedelta(days=days_ago)).timestamp()


def days_chart(store, days: int = 14) -> tuple[str, list[dict]]:
    """An inline SVG stacked bar chart of minutes per engagement group per day."""
    rows = []
    for ago in range(days - 1, -1, -1):
        start, end = _midnight(ago), _midnight(ago - 1) if ago else _midnight(0) + 86400
        s = reports.day_summary(store, start, end)
        rows.append({"day": dt.date.fromtimestamp(start + 3600), **s})
    peak = max([r["total_s"] for r in rows] + [60.0])
    W, H, left, bottom, top = 700, 220, 56, 28, 10
    bw = (W - left - 10) / days
    parts = [f'<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-labelledby="days-title days-desc">',
             '<title id="days-title">Minutes per engagement level per day</title>',
             f'<desc id="days-desc">Stacked bars for the last {days} days.</desc>']
    for frac in (0, 0.5, 1):
        y = top + (H - top - bottom) * (1 - frac)
        parts.append(f'<line x1="{left}" x2="{W - 5}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e4e7ec"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" fill="#667085">'
                     f'{_minutes_label(peak * frac)}</text>')
    for i, r in enumerate(rows):
        x = left + i * bw + 2
        y = H - bottom
        for g in r["seconds"]:  # the groups minute_stats keeps (no "Paused": nothing is measured then)
            h = (H - top - bottom) * r["seconds"][g] / peak
            if h > 0:
                y -= h
                parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bw - 4:.1f}" height="{h:.1f}" '
                             f'class="{g.css_class}"><title>{r["day"]:%a %d %b} {bottle.html_escape(g)}: '
                             f'{r["seconds"][g] / 60:.0f} min</title></rect>')
        if days <= 14 or i % 2 == 0:
            parts.append(f'<text x="{x + (bw - 4) / 2:.1f}" y="{H - 10}" text-anchor="middle" font-size="10" '
                         f'fill="#667085">{r["day"]:%d/%m}</text>')
    parts.append("</svg>")
    return "".join(parts), rows


def _minutes_label(seconds: float) -> str:
    if seconds == 0:
        return "0"
    minutes = seconds / 60
    return f"{minutes:.0f} min" if minutes >= 10 else f"{minutes:.1f} min".replace(".0 ", " ")


def install(app: bottle.Bottle, ctx, guard: Guard) -> None:
    @app.get("/admin")
    def dashboard():
        guard.require_user(admin=True)
        today = reports.day_summary(ctx.store, _midnight(0), _midnight(0) + 86400)
        svg, days = days_chart(ctx.store)
        alerts = reports.recent_alerts(ctx.store, 5)
        state = ctx.loop.state if ctx.loop else None
        return guard.page("admin_dashboard", title="Dashboard", today=today, chart=svg, days=days, alerts=alerts,
                          state=state, groups=tuple(today["seconds"]),  # the measured groups: not "Paused"
                          health=ctx.loop.health if ctx.loop else None)
