"""The admin part of the web UI: dashboard, log (filters, previews, CSV), users,
settings, model page and per-student data deletion.

Every route here calls ``require_user(admin=True)`` itself, and ``web.make_app`` also
guards every ``/admin`` and ``/api/admin`` path in a ``before_request`` hook, so a route
added later without a check is still refused to students and anonymous users.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import json
import logging
import time
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urlencode

import bottle
from bottle import HTTPResponse, request, response

from edge_app import config as config_mod
from edge_app.engagement import GROUPS
from edge_app.store.accounts import ROLES, AuthError
from edge_app.store.database import GROUP_COLUMNS, Store

log = logging.getLogger(__name__)
PAGE_SIZE = 50
SETTINGS_KEY = "config_overrides"
GROUP_COLOURS = {"Engaged": "#12a150", "Partially engaged": "#f2a900", "Not engaged": "#d92d20",
                 "Distracted": "#7a5af8", "Absent": "#98a2b3"}

# (dotted key, label, kind, help); kind: float, int, bool, str or a tuple of choices
SETTINGS: list[tuple[str, str, object, str]] = [
    ("engagement.ema_half_life_s", "Smoothing half-life (seconds)", float,
     "How quickly the shown state follows the face: larger is steadier, slower."),
    ("engagement.min_hold_s", "Minimum hold (seconds)", float,
     "A new state must hold this long before the LED changes."),
    ("engagement.absent_after_s", "Absent after (seconds)", float, "No face for this long counts as absent."),
    ("indicators.buzzer", "Buzzer on", bool, "Off mutes the buzzer; the LED still shows the state."),
    ("indicators.buzzer_after_s", "Alert after (seconds)", float,
     "Sustained Not engaged or Distracted for this long sounds the buzzer and logs an alert."),
    ("indicators.quiet_hours", "Quiet hours", str, 'No buzzer in these hours, e.g. "22:00-07:00"; empty: none.'),
    ("privacy.keep_uploads", "Uploaded images kept", ("thumbnail", "none", "full"),
     "thumbnail: a small copy; none: only the results; full: the whole photo."),
    ("store.retention_days", "Keep data for (days)", int, "Rows and kept images older than this are deleted."),
    ("privacy.snapshot_on_alert", "Snapshot on alert", bool,
     "Store one live frame when an alert fires (off: live frames are never stored)."),
]


@dataclass
class Helpers:
    """What the admin routes borrow from ``web.make_app``."""

    require_user: Callable
    check_csrf: Callable
    page: Callable
    json_error: Callable
    current: Callable


# ------------------------------------------------------------ settings persistence
def with_saved_settings(store: Store, cfg: dict) -> dict:
    """``cfg`` with the admin's saved settings applied (a bad saved value is skipped, logged)."""
    saved = store.get_setting(SETTINGS_KEY, {}) or {}
    for dotted, value in saved.items():
        try:
            cfg = config_mod.with_changes(cfg, {dotted: value})
        except config_mod.ConfigError as exc:
            log.warning("ignoring a saved setting: %s", exc)
    return cfg


def apply_settings(ctx, changes: dict) -> None:
    """Validate ``changes`` (dotted keys), apply them to the running config in place,
    tell the loop and the analyzer, and persist them. Raises ``ConfigError``."""
    new = config_mod.with_changes(ctx.cfg, changes)
    for section in {k.split(".", 1)[0] for k in changes}:
        ctx.cfg[section] = new[section]
    ctx.analyzer.mapping = dict(ctx.cfg["engagement"]["mapping"])
    if ctx.loop is not None and hasattr(ctx.loop, "apply_config"):
        ctx.loop.apply_config(ctx.cfg)
    saved = ctx.store.get_setting(SETTINGS_KEY, {}) or {}
    saved.update(changes)
    ctx.store.set_setting(SETTINGS_KEY, saved)


def _parse_setting(dotted: str, label: str, kind, raw: str | None):
    if kind is bool:
        return raw in ("on", "true", "1")
    raw = (raw or "").strip()
    if kind is float:
        try:
            return float(raw)
        except ValueError:
            raise config_mod.ConfigError(f"{label}: {raw!r} is not a number") from None
    if kind is int:
        try:
            return int(raw)
        except ValueError:
            raise config_mod.ConfigError(f"{label}: {raw!r} is not a whole number") from None
    return raw


# ------------------------------------------------------------ log query
@dataclass
class LogFilter:
    user: str = ""
    level: str = ""
    emotion: str = ""
    kind: str = ""
    date_from: str = ""
    date_to: str = ""

    @classmethod
    def from_query(cls, q) -> "LogFilter":
        return cls(*(q.getunicode(k, "").strip() for k in ("user", "level", "emotion", "kind", "from", "to")))

    def params(self) -> dict:
        pairs = {"user": self.user, "level": self.level, "emotion": self.emotion, "kind": self.kind,
                 "from": self.date_from, "to": self.date_to}
        return {k: v for k, v in pairs.items() if v}

    def where(self) -> tuple[str, list]:
        """SQL conditions on the unified log; raises ValueError with a message for a bad value."""
        conds, args = [], []
        if self.user:
            conds.append("username = ?")
            args.append(self.user)
        if self.level:
            if self.level not in GROUPS:
                raise ValueError(f"engagement level {self.level!r} is unknown; use one of {', '.join(GROUPS)}")
            conds.append("grp = ?")
            args.append(self.level)
        if self.emotion:
            conds.append("emotion = ?")
            args.append(self.emotion)
        if self.kind:
            if self.kind not in ("live", "upload"):
                raise ValueError("kind is live or upload")
            conds.append("kind = ?")
            args.append(self.kind)
        for value, op, shift in ((self.date_from, ">=", 0), (self.date_to, "<", 1)):
            if value:
                try:
                    day = dt.datetime.strptime(value, "%Y-%m-%d") + dt.timedelta(days=shift)
                except ValueError:
                    raise ValueError(f"date {value!r} is not a date like 2026-01-31") from None
                conds.append(f"t {op} ?")
                args.append(day.timestamp())
        return (" WHERE " + " AND ".join(conds)) if conds else "", args


def _group_case(col: str) -> str:
    return ("CASE " + " ".join(f"WHEN {col} LIKE '{g}%' THEN '{g}'" for g in
                               ("Partially engaged", "Not engaged", "Engaged", "Distracted", "Absent"))
            + " ELSE 'Not engaged' END")


LOG_SQL = (
    "("
    "SELECT 'live' AS kind, t, level, grp, emotion, confidence, NULL AS username, NULL AS upload_id, "
    "NULL AS image_path, NULL AS filename, NULL AS probabilities FROM state_changes "
    "UNION ALL "
    f"SELECT 'upload', u.created, f.engagement, {_group_case('f.engagement')}, f.emotion, f.confidence, us.username, "
    "u.id, u.image_path, u.filename, f.probabilities "
    "FROM upload_faces f JOIN uploads u ON u.id = f.upload_id LEFT JOIN users us ON us.id = u.user_id"
    ")"
)


def query_log(store: Store, flt: LogFilter, page: int | None = None) -> tuple[list, int]:
    """(rows, total matching) of the unified log, newest first; ``page`` None: all rows."""
    where, args = flt.where()
    total = store.query(f"SELECT COUNT(*) FROM {LOG_SQL}{where}", args)[0][0]
    sql = f"SELECT * FROM {LOG_SQL}{where} ORDER BY t DESC"
    if page is not None:
        sql += f" LIMIT {PAGE_SIZE} OFFSET {max(0, page - 1) * PAGE_SIZE}"
    return store.query(sql, args), total


def _csv_safe(value):
    """Spreadsheet formula injection: a text cell never starts with = + - @."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


# ------------------------------------------------------------ summaries and charts
def _midnight(days_ago: int = 0) -> float:
    today = dt.datetime.combine(dt.date.today(), dt.time())
    return (today - dt.timedelta(days=days_ago)).timestamp()


def day_summary(store: Store, start: float, end: float) -> dict:
    cols = ", ".join(f"COALESCE(SUM({c}), 0) AS {c}" for c in GROUP_COLUMNS.values())
    row = store.query(f"SELECT {cols} FROM minute_stats WHERE minute >= ? AND minute < ?", (start, end))[0]
    seconds = {g: float(row[c]) for g, c in GROUP_COLUMNS.items()}
    total = sum(seconds.values())
    alerts = store.query("SELECT COUNT(*) FROM alerts WHERE t >= ? AND t < ?", (start, end))[0][0]
    uploads = store.query("SELECT COUNT(*) FROM uploads WHERE created >= ? AND created < ?", (start, end))[0][0]
    return {"seconds": seconds, "total_s": total, "engaged_share": seconds["Engaged"] / total if total else None,
            "absent_s": seconds["Absent"], "alerts": alerts, "uploads": uploads}


def days_chart(store: Store, days: int = 14) -> tuple[str, list[dict]]:
    """An inline SVG stacked bar chart of minutes per engagement group per day."""
    rows = []
    for ago in range(days - 1, -1, -1):
        start, end = _midnight(ago), _midnight(ago - 1) if ago else _midnight(0) + 86400
        s = day_summary(store, start, end)
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
        for g in GROUPS:
            h = (H - top - bottom) * r["seconds"][g] / peak
            if h > 0:
                y -= h
                parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bw - 4:.1f}" height="{h:.1f}" '
                             f'fill="{GROUP_COLOURS[g]}"><title>{r["day"]:%a %d %b} {bottle.html_escape(g)}: '
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


def student_summaries(store: Store) -> list[dict]:
    """Per user: uploads, faces, share of faces per engagement group and the dominant group."""
    rows = store.query(
        f"SELECT us.id, us.username, us.role, us.disabled, us.last_login, us.created, "
        f"COUNT(DISTINCT u.id) AS uploads, COUNT(f.id) AS faces, {_group_case('f.engagement')} AS grp, "
        "MAX(u.created) AS last_upload "
        "FROM users us LEFT JOIN uploads u ON u.user_id = us.id LEFT JOIN upload_faces f ON f.upload_id = u.id "
        "GROUP BY us.id, grp ORDER BY us.username")
    users: dict[int, dict] = {}
    for r in rows:
        u = users.setdefault(r["id"], {"id": r["id"], "username": r["username"], "role": r["role"],
                                       "disabled": bool(r["disabled"]), "last_login": r["last_login"],
                                       "uploads": 0, "faces": 0, "groups": dict.fromkeys(GROUPS, 0),
                                       "last_upload": None})
        u["uploads"] += r["uploads"]
        if r["faces"]:
            u["faces"] += r["faces"]
            u["groups"][r["grp"]] += r["faces"]
        if r["last_upload"]:
            u["last_upload"] = max(u["last_upload"] or 0, r["last_upload"])
    for u in users.values():
        u["dominant"] = max(u["groups"], key=u["groups"].get) if u["faces"] else None
        u["engaged_share"] = u["groups"]["Engaged"] / u["faces"] if u["faces"] else None
    return sorted(users.values(), key=lambda u: u["username"].lower())


# ------------------------------------------------------------ routes
def install(app: bottle.Bottle, ctx, h: Helpers) -> None:
    def admin():
        return h.require_user(admin=True)

    def flash_redirect(path: str, message: str, error: bool = False) -> None:
        raise bottle.redirect(path + ("?" + urlencode({"error" if error else "done": message})))

    @app.get("/admin")
    def dashboard():
        admin()
        today = day_summary(ctx.store, _midnight(0), _midnight(0) + 86400)
        svg, days = days_chart(ctx.store)
        alerts = ctx.store.query("SELECT id, t, level, snapshot_path FROM alerts ORDER BY t DESC LIMIT 5")
        state = ctx.loop.state if ctx.loop else None
        return h.page("admin_dashboard", title="Dashboard", today=today, chart=svg, days=days, alerts=alerts,
                      state=state, colours=GROUP_COLOURS, groups=GROUPS,
                      health=ctx.loop.health if ctx.loop else None)

    # -------------------------------------------------------- log
    def log_request():
        flt = LogFilter.from_query(request.query)
        try:
            page_no = max(1, int(request.query.get("page", 1)))
        except ValueError:
            page_no = 1
        return flt, page_no

    @app.get("/admin/log")
    def log_page():
        admin()
        flt, page_no = log_request()
        try:
            rows, total = query_log(ctx.store, flt, page_no)
            error = ""
        except ValueError as exc:
            rows, total, error = [], 0, f"Filter not applied: {exc}."
        pages = max(1, (total + PAGE_SIZE - 1) // PAGE_SIZE)
        emotions = [r[0] for r in ctx.store.query(
            "SELECT DISTINCT emotion FROM upload_faces UNION SELECT DISTINCT emotion FROM state_changes "
            "WHERE emotion IS NOT NULL ORDER BY 1")]
        users = [u.username for u in ctx.accounts.list_users()]
        body = h.page("admin_log", title="Log", rows=rows, total=total, page_no=page_no, pages=pages, flt=flt,
                      query=urlencode(flt.params()), emotions=emotions, users=users, groups=GROUPS, error=error)
        return HTTPResponse(body, 400) if error else body

    @app.get("/admin/log.csv")
    def log_csv():
        admin()
        flt = LogFilter.from_query(request.query)
        try:
            rows, _ = query_log(ctx.store, flt, None)
        except ValueError as exc:
            return HTTPResponse(h.page("error", title="Bad filter", message=f"No CSV: {exc}."), 400)
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["kind", "time", "user", "engagement", "group", "emotion", "confidence", "file"])
        for r in rows:
            writer.writerow([_csv_safe(v) for v in (
                r["kind"], time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["t"])), r["username"] or "",
                r["level"], r["grp"], r["emotion"] or "",
                f"{r['confidence']:.4f}" if r["confidence"] is not None else "", r["filename"] or "")])
        response.content_type = "text/csv; charset=utf-8"
        stamp = time.strftime("%Y%m%d-%H%M")
        response.set_header("Content-Disposition", f'attachment; filename="engage-log-{stamp}.csv"')
        return out.getvalue()

    @app.get("/api/admin/log")
    def api_log():
        admin()
        flt, page_no = log_request()
        try:
            rows, total = query_log(ctx.store, flt, page_no)
        except ValueError as exc:
            return h.json_error(400, str(exc))
        response.content_type = "application/json"
        keys = ("kind", "t", "username", "level", "grp", "emotion", "confidence", "upload_id", "filename")
        return json.dumps({"total": total, "page": page_no, "page_size": PAGE_SIZE,
                           "rows": [{k: r[k] for k in keys} for r in rows]})

    @app.get("/admin/image/<upload_id:int>")
    def stored_image(upload_id):
        admin()
        rows = ctx.store.query("SELECT image_path FROM uploads WHERE id = ?", (upload_id,))
        if not rows or not rows[0]["image_path"]:
            return HTTPResponse(h.page("error", title="No image", message="No image is stored for this upload "
                                       "(the privacy setting may keep none, or it was purged)."), 404)
        try:
            path = ctx.store.image_file(rows[0]["image_path"])
        except ValueError:
            return HTTPResponse("refused", 404)
        resp = bottle.static_file(path.name, root=str(path.parent), mimetype="image/jpeg")
        resp.set_header("Cache-Control", "private, no-store")
        return resp

    @app.get("/admin/alert/<alert_id:int>.jpg")
    def alert_snapshot(alert_id):
        admin()
        rows = ctx.store.query("SELECT snapshot_path FROM alerts WHERE id = ?", (alert_id,))
        if not rows or not rows[0]["snapshot_path"]:
            return HTTPResponse(h.page("error", title="No snapshot", message="No snapshot is stored for this alert."), 404)
        try:
            path = ctx.store.image_file(rows[0]["snapshot_path"])
        except ValueError:
            return HTTPResponse("refused", 404)
        return bottle.static_file(path.name, root=str(path.parent), mimetype="image/jpeg")

    # -------------------------------------------------------- users
    @app.get("/admin/users")
    def users_page():
        me = admin()
        level = request.query.getunicode("level", "")
        people = student_summaries(ctx.store)
        if level:
            people = [u for u in people if u["dominant"] == level or (level == "none" and u["dominant"] is None)]
        return h.page("admin_users", title="Users", people=people, level=level, groups=GROUPS, roles=ROLES,
                      me=me, locked=ctx.accounts.locked_users(), done=request.query.getunicode("done", ""),
                      error=request.query.getunicode("error", ""),
                      colours=GROUP_COLOURS)

    @app.post("/admin/users")
    def create_user():
        admin()
        h.check_csrf()
        f = request.forms
        try:
            user = ctx.accounts.create_user(f.getunicode("username", "").strip(), f.getunicode("password", ""),
                                            f.getunicode("role", "student"))
        except AuthError as exc:
            flash_redirect("/admin/users", f"User not created: {exc}.", error=True)
        log.info("admin created user %s (%s)", user.username, user.role)
        flash_redirect("/admin/users", f"Created {user.role} {user.username}.")

    @app.post("/admin/users/<user_id:int>/<action>")
    def user_action(user_id, action):
        me = admin()
        h.check_csrf()
        target = ctx.accounts.get(user_id)
        if target is None:
            flash_redirect("/admin/users", "That user no longer exists.", error=True)
        if target.id == me.id and action in ("disable", "delete"):
            flash_redirect("/admin/users", "You cannot disable or delete your own account.", error=True)
        if (target.is_admin and not target.disabled and action in ("disable", "delete")
                and ctx.accounts.count_admins() <= 1):
            flash_redirect("/admin/users", "This is the last admin: create another admin first.", error=True)
        if action == "disable":
            ctx.accounts.set_disabled(user_id, True)
            message = f"Disabled {target.username}: they are logged out and cannot log in."
        elif action == "enable":
            ctx.accounts.set_disabled(user_id, False)
            message = f"Enabled {target.username}."
        elif action == "password":
            try:
                ctx.accounts.set_password(user_id, request.forms.getunicode("password", ""))
            except AuthError as exc:
                flash_redirect("/admin/users", f"Password not reset: {exc}.", error=True)
            message = f"New password set for {target.username}; their sessions ended."
        elif action == "unlock":
            n = ctx.accounts.unlock(target.username)
            message = f"Unlocked {target.username}: {n} failed log-ins forgotten."
        elif action == "delete-data":
            n = ctx.store.delete_user_data(user_id)
            message = f"Deleted {n} uploads and their images for {target.username}."
        elif action == "delete":
            n = ctx.store.delete_user_data(user_id)
            ctx.accounts.delete_user(user_id)
            message = f"Deleted {target.username} and {n} uploads."
        else:
            return HTTPResponse(h.page("error", title="Unknown action", message=f"{action!r} is not a user action."), 404)
        log.info("admin %s: %s", me.username, message)
        flash_redirect("/admin/users", message)

    # -------------------------------------------------------- settings
    def settings_values() -> dict:
        values = {}
        for dotted, *_ in SETTINGS:
            section, key = dotted.split(".")
            values[dotted] = ctx.cfg[section][key]
        return values

    def render_settings(error: str = "", done: str = "", status: int = 200, values: dict | None = None):
        mapping = (values or {}).get("mapping") or ctx.cfg["engagement"]["mapping"]
        levels = sorted(set(config_mod.defaults()["engagement"]["mapping"].values()) | set(mapping.values())
                        | {"Engaged", "Partially engaged", "Not engaged"})
        body = h.page("admin_settings", title="Settings", settings=SETTINGS, values=values or settings_values(),
                      mapping=mapping, levels=levels, error=error, done=done)
        return HTTPResponse(body, status) if status != 200 else body

    @app.get("/admin/settings")
    def settings_page():
        admin()
        return render_settings()

    @app.post("/admin/settings")
    def save_settings():
        me = admin()
        h.check_csrf()
        changes = {}
        # what the admin typed, shown again beside the error
        shown = {dotted: (request.forms.getunicode(dotted) in ("on", "true", "1")) if kind is bool
                 else request.forms.getunicode(dotted, "") for dotted, _, kind, _ in SETTINGS}
        shown["mapping"] = {emotion: request.forms.getunicode(f"map.{emotion}", "").strip()
                            for emotion in ctx.cfg["engagement"]["mapping"]}
        try:
            for dotted, label, kind, _ in SETTINGS:
                value = _parse_setting(dotted, label, kind, request.forms.getunicode(dotted))
                if isinstance(kind, tuple) and value not in kind:
                    raise config_mod.ConfigError(f"{label}: choose one of {', '.join(kind)}")
                changes[dotted] = value
            changes["engagement.mapping"] = dict(shown["mapping"])
            apply_settings(ctx, changes)
        except config_mod.ConfigError as exc:
            return render_settings(error=f"Nothing saved: {exc}.", status=400, values=shown)
        log.info("admin %s changed settings", me.username)
        return render_settings(done="Saved. The live loop uses the new settings now.")

    # -------------------------------------------------------- model
    @app.get("/admin/model")
    def model_page():
        admin()
        m = ctx.analyzer.classifier.manifest
        try:
            size_mb = m.model_path.stat().st_size / 1e6
        except OSError:
            size_mb = None
        extra = {k: v for k, v in m.raw.items() if k not in ("labels", "metrics", "sha256", "model", "input")}
        return h.page("admin_model", title="Model", manifest=m, size_mb=size_mb, extra=extra,
                      done=request.query.getunicode("done", ""), error=request.query.getunicode("error", ""))
