"""The admin settings page: the live-tunable settings, applied to the running loop at once
and saved in the database so they outlive restarts (``with_saved_settings`` at start-up)."""
from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Mapping
from typing import Any

import bottle
from bottle import HTTPResponse, request

from edge_app import config as config_mod
from edge_app.device import clock
from edge_app.engagement import LEVEL_GROUPS
from edge_app.store import reports
from edge_app.store.database import Store
from edge_app.web.edits import base_field, in_the_forms_words, own_changes, read_base, ticked
from edge_app.web.guard import Guard

log = logging.getLogger(__name__)
SETTINGS_KEY = "config_overrides"

# (dotted key, label, kind, help) of what admins may change, from the config schema;
# kind: float, int, bool, str or a tuple of choices
SETTINGS: list[config_mod.AdminSetting] = config_mod.admin_settings()
LABELS = {dotted: label for dotted, label, *_ in SETTINGS}


def allowed_hint(dotted: str, kind) -> str:
    """What a setting takes ("days from 1 to 3650"), from the schema rule its error quotes:
    shown beside the field before a wrong value, not only in the error after it. Empty for
    a choice or a box to tick (the form offers only what is allowed)."""
    if kind is bool or isinstance(kind, tuple):
        return ""
    section, key = dotted.split(".")
    fields = {f.name: f for f in dataclasses.fields(type(getattr(config_mod.defaults(), section)))}
    rule = fields[key].metadata.get("rule")
    return rule.allowed(kind) if rule is not None else ""


ALLOWED = {dotted: allowed_hint(dotted, kind) for dotted, _, kind, _ in SETTINGS}


# ------------------------------------------------------------ settings persistence
def with_saved_settings(store: Store, cfg: config_mod.Config) -> config_mod.Config:
    """``cfg`` with the admin's saved settings applied (a bad saved value is skipped, logged)."""
    from edge_app.fleet.admin_page import move_saved_password
    from edge_app.store.backup import settle_hand_restore

    move_saved_password(store, cfg, SETTINGS_KEY)
    settle_hand_restore(store, (cfg.mqtt.device_id, cfg.mqtt.username))  # another desk's device_id: dropped
    saved = store.get_setting(SETTINGS_KEY, {}) or {}
    file_cfg = cfg
    cfg, refused = apply_saved(file_cfg, saved)
    for why in refused:
        log.warning("ignoring a saved setting: %s", why)
    # said once at each start: a technician who edits the config file sees why an edit does nothing
    for line in overridden(cfg, file_cfg, saved):
        log.info("%s", line)
    return cfg


def apply_saved(file_cfg: config_mod.Config, saved: dict) -> tuple[config_mod.Config, list[str]]:
    """``file_cfg`` with the admin's saved settings over it, and why each one this release
    refuses is skipped; no store: the start applies them, and ``config --check`` reads them
    from a database it may not write."""
    cfg, refused = file_cfg, []
    for dotted, value in saved.items():
        # the emotion mapping one emotion at a time: a level an older release took (67 characters)
        # cost the admin every other emotion's saved level too
        parts = [{dotted: {emotion: level}} for emotion, level in value.items()] \
            if dotted == "engagement.mapping" and isinstance(value, dict) else [{dotted: value}]
        for part in parts:
            try:
                cfg = config_mod.with_changes(cfg, part)
            except config_mod.ConfigError as exc:
                refused.append(refused_saved(file_cfg, part, exc))
    return cfg, refused


def overridden(cfg: config_mod.Config, file_cfg: config_mod.Config, saved: dict) -> list[str]:
    """Each saved setting used instead of the config file's value, in words."""
    where = file_source(file_cfg)
    return [f"setting {dotted} = {now!r} was saved on an admin page and is used instead of {was!r}, from {where} "
            "(Admin > Settings can hand it back)" for dotted, now, was in differences(cfg, file_cfg, saved)]


def refused_saved(file_cfg: config_mod.Config, part: dict, exc: config_mod.ConfigError) -> str:
    """A saved setting this release refuses, what runs in its place and what to do: the
    warning said only the rule it broke, and a retention of 5000 days saved under an older
    release became 30 with no word of the 30, nor of where to choose again."""
    ((dotted, value),) = part.items()
    if "password" in dotted:  # never written to a log, the refusal's words included (they quote the value)
        return (f"{dotted}: the saved value is not allowed; the config file's is used until an admin saves another "
                "on Admin > Classroom broker")
    try:
        used = value_of(file_cfg, dotted)
    except (AttributeError, ValueError):  # a setting this release no longer has
        shown = "..." if "password" in dotted else repr(value)  # a password is never written to a log
        return f"{dotted} = {shown}: this release has no such setting, so it does nothing"
    if isinstance(value, dict) and isinstance(used, Mapping):
        ((emotion, _),) = value.items()
        dotted, used = f"{dotted}.{emotion}", used.get(emotion)
    return f"{exc}; {dotted} is {used!r}, from {file_source(file_cfg)}, until an admin saves another on Admin > Settings"


def file_source(cfg: config_mod.Config) -> str:
    """Where ``cfg`` came from, in words: its config file, or the defaults without one."""
    return cfg.source if cfg.source != "defaults" else "the defaults"


def value_of(cfg: config_mod.Config, dotted: str) -> Any:
    section, key = dotted.split(".")
    return getattr(getattr(cfg, section), key)


def differences(cfg: config_mod.Config, file_cfg: config_mod.Config, saved: dict) -> list[tuple[str, Any, Any]]:
    """(key, value used, the config file's value) of each saved setting the file says
    otherwise; the emotion mapping one emotion at a time (``engagement.mapping.fear``)."""
    rows = []
    for dotted in saved:
        if dotted.count(".") != 1 or dotted == "mqtt.password":  # a password is never written to a log
            continue
        try:
            now, was = value_of(cfg, dotted), value_of(file_cfg, dotted)
        except AttributeError:  # a key an earlier release saved and this one no longer has
            continue
        if isinstance(now, Mapping) and isinstance(was, Mapping):
            rows += [(f"{dotted}.{k}", now.get(k), was.get(k)) for k in now if now.get(k) != was.get(k)]
        elif now != was:
            rows.append((dotted, now, was))
    return rows


def page_differences(ctx) -> list[tuple[str, Any, Any]]:
    """The settings page's own saved settings (not the broker's) that the config file says otherwise."""
    if ctx.file_cfg is None:
        return []
    saved = ctx.store.get_setting(SETTINGS_KEY, {}) or {}
    mine = {k: v for k, v in saved.items() if k in LABELS or k == "engagement.mapping"}
    return differences(ctx.cfg, ctx.file_cfg, mine)


def use_file_settings(ctx, actor: str | None = None) -> list[str]:
    """Forget the settings page's saved settings the config file says otherwise, and run on
    the file's values (the loop at once); returns what changed, as the audit log words it.
    ``actor``: the admin, audited in the same write."""
    rows = page_differences(ctx)
    if not rows:
        return []
    keys = {dotted if dotted.count(".") == 1 else dotted.rsplit(".", 1)[0] for dotted, _, _ in rows}
    values = {k: value_of(ctx.file_cfg, k) for k in keys}
    new = config_mod.with_changes(ctx.cfg, {k: dict(v) if isinstance(v, Mapping) else v for k, v in values.items()})
    changed = [f"{dotted}: {now!r} -> {was!r}" for dotted, now, was in rows]
    saved = ctx.store.get_setting(SETTINGS_KEY, {}) or {}
    ctx.store.set_setting(SETTINGS_KEY, {k: v for k, v in saved.items() if k not in keys},
                          None if actor is None else (actor, "used the config file's settings", "", "; ".join(changed)))
    _run_on(ctx, new)
    return changed


def changes_in_words(before: dict, changes: dict) -> list[str]:
    """The audit's words for ``changes`` from ``before``: only the emotions whose level changed."""
    changed = []
    for k, v in changes.items():
        old = before.get(k)
        if isinstance(v, dict) and isinstance(old, dict):
            changed += [f"{k}.{e}: {old.get(e)!r} -> {v.get(e)!r}" for e in v if old.get(e) != v.get(e)]
        elif old != v:
            changed.append(f"{k}: {old!r} -> {v!r}")
    return changed


def apply_settings(ctx, changes: dict, audit: tuple[str, str, str, str] | None = None) -> None:
    """Validate ``changes`` (dotted keys) into a new config, persist them (with their ``audit``
    row, in one write), then hand the new config whole to the web context, the analyzer and
    the loop. The old config object is never edited: the loop may be reading it. Raises
    ``ConfigError``, changing nothing. Callers hold ``ctx.settings_lock`` from reading the
    settings they compare to this."""
    new = config_mod.with_changes(ctx.cfg, changes)
    saved = ctx.store.get_setting(SETTINGS_KEY, {}) or {}
    saved.update(changes)
    ctx.store.set_setting(SETTINGS_KEY, saved, audit)
    _run_on(ctx, new)


def _run_on(ctx, new: config_mod.Config) -> None:
    """Hand ``new`` whole to the web context, the analyzer and the loop (never edited in place).
    A shorter retention starts a clean-up: the records past it go now, as the page says, from a
    save or from the config file's values handed back alike."""
    shorter = new.store.retention_days < ctx.cfg.store.retention_days
    ctx.cfg = new
    ctx.analyzer.mapping = dict(new.engagement.mapping)
    if ctx.loop is not None and hasattr(ctx.loop, "apply_config"):
        ctx.loop.apply_config(new)
    if shorter and getattr(ctx, "housekeeping", None) is not None:
        ctx.housekeeping.soon()


def _parse_setting(dotted: str, label: str, kind, raw: str | None):
    if kind is bool:
        return ticked(raw)
    raw = (raw or "").strip()
    if "_" in raw:  # Python reads "1_0" as 10; a person typed something else
        raise config_mod.ConfigError(f"{label}: {raw!r} is not a number")
    if kind is float:
        if THOUSANDS.fullmatch(raw):  # "1,200": twelve hundred in English, 1.2 in German
            whole, part = raw.lstrip("+").split(",")
            raise config_mod.ConfigError(f"{label}: {raw!r} could be {whole}{part} or {whole}.{part}: write it "
                                         f"without the comma ({whole}{part}) or with a point ({whole}.{part})")
        try:  # a decimal comma ("5,5"): what a German or French phone's number keyboard offers
            return float(raw.replace(",", ".") if raw.count(",") == 1 and "." not in raw else raw) + 0.0  # no -0.0
        except ValueError:
            raise config_mod.ConfigError(f"{label}: {raw!r} is not a number") from None
    if kind is int:
        try:
            return int(raw)
        except ValueError:
            raise config_mod.ConfigError(f"{label}: {raw!r} is not a whole number") from None
    return raw


THOUSANDS = re.compile(r"\+?\d{1,3},\d{3}")


def _in_the_forms_words(message: str) -> tuple[str, str]:
    """``edits.in_the_forms_words``, with the model's labels, whichever they are, named as
    their own fields ("engagement.mapping.happiness = ..." is "happiness: ...")."""
    if message.startswith("engagement.mapping.") and " = " in message:
        emotion, rest = message.removeprefix("engagement.mapping.").split(" = ", 1)
        return f"{emotion}: {rest}", f"map.{emotion}"
    return in_the_forms_words(message, LABELS)


# ------------------------------------------------------------ routes
def install(app: bottle.Bottle, ctx, guard: Guard) -> None:
    def settings_values() -> dict:
        """Every setting the page shows now, the emotion mapping under ``engagement.mapping``."""
        values: dict[str, Any] = {dotted: value_of(ctx.cfg, dotted) for dotted, *_ in SETTINGS}
        values["engagement.mapping"] = dict(ctx.cfg.engagement.mapping)
        return values

    def render_settings(error: str = "", done: str = "", status: int = 200, values: dict | None = None,
                        base: dict | None = None, invalid: str = ""):
        """The page; ``values``: what the admin typed, shown again beside an error; ``base``:
        the settings their form started from (kept, so a second Save still saves only theirs)."""
        now = settings_values()
        values = values or now
        mapping = values["engagement.mapping"]
        levels = sorted(set(config_mod.defaults().engagement.mapping.values()) | set(mapping.values())
                        | set(LEVEL_GROUPS))
        body = guard.page("admin_settings", title="Settings", settings=SETTINGS, values=values, mapping=mapping,
                          levels=levels, error=error, done=done, base=base_field(base or now),
                          invalid=invalid, overridden=[(_label(k), now_v, was) for k, now_v, was in page_differences(ctx)],
                          config_file=file_source(ctx.file_cfg) if ctx.file_cfg is not None else "",
                          no_config_file=_no_config_file(ctx), device_config=config_mod.DEVICE_CONFIG,
                          allowed=ALLOWED)
        return HTTPResponse(body, status) if status != 200 else body

    @app.get("/admin/settings")
    def settings_page():
        guard.require_user(admin=True)
        return render_settings(done=guard.flash()["done"])

    @app.post("/admin/settings/use-file")
    def use_file():
        """The saved settings the config file says otherwise go back to the file's values."""
        me = guard.require_user(admin=True)
        guard.check_csrf()
        guard.require_recent_password()
        with ctx.settings_lock:
            before = settings_values()
            changed = use_file_settings(ctx, me.username)  # audited in the same write
            after = settings_values()
        if changed:
            log.info("admin %s handed settings back to the config file", me.username)
        file = "default" if _no_config_file(ctx) else "config file's"
        guard.flash_redirect("/admin/settings", f"The {file} values are used now." + notices(before, after) if changed
                             else f"Nothing to hand back: no saved setting differs from the {file} values.")

    @app.post("/admin/settings")
    def save_settings():
        me = guard.require_user(admin=True)
        guard.check_csrf()
        guard.require_recent_password()
        # what the admin typed, shown again beside the error
        shown: dict[str, Any] = {dotted: ticked(request.forms.getunicode(dotted)) if kind is bool
                 else request.forms.getunicode(dotted, "") for dotted, _, kind, _ in SETTINGS}
        shown["engagement.mapping"] = {emotion: request.forms.getunicode(f"map.{emotion}", "").strip()
                                       for emotion in ctx.cfg.engagement.mapping}
        with ctx.settings_lock:  # what the changes are judged against stays so until they are saved
            return _save(me, shown)

    def _save(me, shown: dict):
        before = settings_values()
        base = read_base(request.forms.getunicode("base"), before)
        try:
            sent: dict[str, Any] = {}
            for dotted, label, kind, _ in SETTINGS:
                value = _parse_setting(dotted, label, kind, request.forms.getunicode(dotted))
                if isinstance(kind, tuple) and value not in kind:
                    raise config_mod.ConfigError(f"{label}: choose one of {', '.join(kind)}")
                sent[dotted] = value
            sent["engagement.mapping"] = dict(shown["engagement.mapping"])
            changes, conflicts = own_changes(sent, base, before, LABELS)
            if conflicts:
                return render_settings(error="Nothing saved: another admin changed settings since you opened this "
                                             "page: " + "; ".join(conflicts) + ". Your values are below: save again "
                                             "to keep them.", status=409, values=shown, base=before)
            changed = changes_in_words(before, changes)
            if changes:
                apply_settings(ctx, changes, (me.username, "changed settings", "", "; ".join(changed)) if changed else None)
        except config_mod.ConfigError as exc:
            text, invalid = _in_the_forms_words(str(exc))
            return render_settings(error=f"Nothing saved: {text}.", status=400, values=shown, base=base,
                                   invalid=invalid)
        if changed:  # audited with the save itself
            log.info("admin %s changed settings", me.username)
        # to a page of its own (post, redirect, get): a reload or Back then sends nothing again
        guard.flash_redirect("/admin/settings", "Saved. The live loop uses the new settings now." + notices(before, changes)
                             if changed else "Nothing to save: no setting was changed.")

    def notices(before: dict, now: dict) -> str:
        """What the admin is told of frame storage and retention after a change (``now``: the
        values changed, or all of them)."""
        return (snapshot_notice(before.get("privacy.snapshot_on_alert"), now.get("privacy.snapshot_on_alert"))
                + retention_notice(before.get("store.retention_days"), now.get("store.retention_days")))

    def snapshot_notice(was, now) -> str:
        """What turning frame storage on or off means, said where the admin did it: storing
        whole frames of minors is the one setting that keeps pictures nobody asked for."""
        days = ctx.cfg.store.retention_days
        if now is True and not was:
            return (f" Snapshots are on: from now on each alert stores one whole camera frame of the student on this "
                    f"device for {days} days. Only admins can see them, on the Alerts page (/admin/alerts), where "
                    "they can be deleted; the Live page tells students.")
        if now is False and was:
            stored = reports.stored_snapshots(ctx.store)
            if stored:
                return (f" Snapshots are off. The {stored} frame{'s' if stored != 1 else ''} already stored "
                        f"{'are' if stored != 1 else 'is'} deleted {days} days after {'each was' if stored != 1 else 'it was'} "
                        f"taken, unless you delete {'it' if stored == 1 else 'them'} sooner on the Alerts page "
                        "(/admin/alerts).")
        return ""

    def retention_notice(was, now) -> str:
        """What a shorter retention does now, as the clean-up does it: until a time server has
        set the clock it counts the device's running days (``Housekeeping.run_once``), and
        "being deleted now" left an admin believing the older records were gone by the calendar."""
        if not (isinstance(was, int) and isinstance(now, int) and now < was):
            return ""
        keeper = getattr(ctx, "housekeeping", None)
        if (keeper.clock_set() if keeper is not None else clock.synchronized()) is False:
            return (f" Records are deleted once this device has been switched on {now} days since they were made: no "
                    "time server has set its clock since it started (it has no battery clock), and a clock days ahead "
                    "would delete today's records, so the days it is switched off do not count until one has "
                    f"(records stay longer than by the calendar). To fix it, {clock.WHAT_TO_DO}.")
        return f" Records older than {now} days are being deleted now."


def _no_config_file(ctx) -> bool:
    """Running on the defaults, with no config file: the page must not send an admin to edit one."""
    return ctx.file_cfg is not None and ctx.file_cfg.source == "defaults"


def _label(dotted: str) -> str:
    """A setting as the page names it (an emotion's level: "Emotion → engagement level: fear")."""
    if dotted.startswith("engagement.mapping."):
        return f"Emotion → engagement level: {dotted.rsplit('.', 1)[1]}"
    return LABELS.get(dotted, dotted)
