"""The admin settings page: the live-tunable settings, applied to the running loop at once
and saved in the database so they outlive restarts (``with_saved_settings`` at start-up)."""
from __future__ import annotations

import logging

import bottle
from bottle import HTTPResponse, request

from edge_app import config as config_mod
from edge_app.engagement import LEVEL_GROUPS
from edge_app.store.database import Store
from edge_app.web.guard import Guard

log = logging.getLogger(__name__)
SETTINGS_KEY = "config_overrides"

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


# ------------------------------------------------------------ routes
def install(app: bottle.Bottle, ctx, guard: Guard) -> None:
    def settings_values() -> dict:
        values = {}
        for dotted, *_ in SETTINGS:
            section, key = dotted.split(".")
            values[dotted] = ctx.cfg[section][key]
        return values

    def render_settings(error: str = "", done: str = "", status: int = 200, values: dict | None = None):
        mapping = (values or {}).get("mapping") or ctx.cfg["engagement"]["mapping"]
        levels = sorted(set(config_mod.defaults()["engagement"]["mapping"].values()) | set(mapping.values())
                        | set(LEVEL_GROUPS))
        body = guard.page("admin_settings", title="Settings", settings=SETTINGS, values=values or settings_values(),
                          mapping=mapping, levels=levels, error=error, done=done)
        return HTTPResponse(body, status) if status != 200 else body

    @app.get("/admin/settings")
    def settings_page():
        guard.require_user(admin=True)
        return render_settings()

    @app.post("/admin/settings")
    def save_settings():
        me = guard.require_user(admin=True)
        guard.check_csrf()
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
