"""The device admin's "Classroom" settings page: the [mqtt] section, its status and a test button.

Saved values go through the same validation and persistence as every other setting
(``web.admin_settings.apply_settings``); saving restarts the publisher with them. The
broker password is the exception: it goes to a file in the data directory that only the
service's user can read (``mqtt-password``, mode 0600), and the settings table keeps only
that file's path, so a copy of the database or a backup does not carry it.

The saved password belongs to the saved broker (``same_broker``: host, port and TLS
files). It is never sent to another one: a Test of another broker, or a Save that moves
to one, needs that broker's password typed on the form (or "No password" ticked), else
it is refused. Otherwise whoever held an admin session could type their own host, press
Test (or Save, and wait for the publisher's next connect) and receive the school's
broker password."""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from bottle import HTTPResponse, request

from edge_app import config as config_mod
from edge_app.config import Config
from edge_app.fleet.broker_link import make_client
from edge_app.fleet.publisher import check_connection, model_version, names_a_student, publisher_for, status_of
from edge_app.fleet.settings import PASSWORD_FILE, MqttSettings, host_key
from edge_app.fsutil import atomic_write
from edge_app.web.edits import base_field, in_the_forms_words, own_changes, read_base, ticked

log = logging.getLogger(__name__)
TYPE_AGAIN = "Tested with the password you typed, which is not shown again: type it again, then Save."


def allowed(key: str) -> str:
    """What the config schema allows for ``mqtt.<key>`` and its default, in the schema's own
    words ("seconds from 5 to 3600 ...; default 30"): the page never repeats the bounds."""
    f = next(f for f in dataclasses.fields(config_mod.MqttSection) if f.name == key)
    return f"{f.metadata['rule'].allowed(type(f.default))}; default {f.default}"


# (key in [mqtt], label, kind, help)
FIELDS: list[tuple[str, str, type, str]] = [
    ("host", "Broker host", str, "Host name or address of the school's MQTT broker; empty turns publishing off."),
    ("port", "Broker port", int, "1883, or 8883 with TLS."),
    ("tls_ca", "Broker CA file (TLS)", str, "PEM file of the broker's certificate authority; empty: no TLS."),
    ("username", "User name", str, "This device's broker account."),
    ("password", "Password", str, "Leave empty to keep the saved one. It is sent only to the broker it was saved "
     "for (the same host, port and CA file): for another broker, type that broker's password."),
    ("device_id", "Device id", str, "Its topic name; empty: the user name, else the host name. Under the "
     "README's broker rules a device may write only under its own user name."),
    ("desk", "Desk label", str, 'Shown to the instructor, e.g. "Row 2, seat 4" (never a student\'s name).'),
    ("topic_prefix", "Topic prefix", str, 'One per school or classroom, e.g. "school-a/room-12".'),
    ("heartbeat_s", "Heartbeat (seconds)", int, "How often this desk tells the classroom it is still there, paused "
     "or steady: the classroom shows a desk silent for 2.5 times this as offline. "
     f"Allowed: {allowed('heartbeat_s')}."),
    ("include_emotion", "Send the emotion label", bool, "Off: of the reading, only the engagement level leaves the "
     'device (as its level and label; the engagement text, e.g. "Engaged - likes the topic", names the emotion and '
     "stays here). On: the emotion and that text are sent too."),
]
LABELS = {f"mqtt.{key}": label for key, label, *_ in FIELDS}
NO_PASSWORD = "mqtt.no_password"  # the form's "No password" box: a broker that takes none; the saved one is deleted


def same_broker(a, b) -> bool:
    """Whether two ``[mqtt]`` sections (``Config.mqtt``) name the same broker: the same host
    (a name's letter case and one final dot aside, an address as written: ``host_key``),
    port and TLS files. A saved password goes only there: another port may be another
    service, and no CA file (or another one) would send it unencrypted (or to whoever that
    CA vouches for)."""
    def key(m) -> tuple:
        return (host_key(m.host), m.port, m.tls_ca, m.tls_cert, m.tls_key)
    return key(a) == key(b)


def describe_broker(m) -> str:
    """"broker.school.lan:8883 with TLS" (``m``: a ``Config.mqtt``), as the page names it."""
    if not m.host:
        return "no broker (MQTT was off)"
    return f"{m.host}:{m.port} " + ("with TLS" if m.tls_ca else "without TLS")


def has_saved_password(cfg: Config) -> bool:
    return bool(cfg.mqtt.password or cfg.mqtt.password_file)


def withheld_password(cfg: Config, wanted, sent: dict) -> str:
    """Why the saved password may not go to the broker of ``wanted`` (a ``Config.mqtt``:
    the form's broker), or "" when it may (the same broker, none saved, or the form brings
    its own password or says "No password"); ``sent``: the form's changes."""
    if not wanted.host or "mqtt.password" in sent or not has_saved_password(cfg) or same_broker(cfg.mqtt, wanted):
        return ""
    return (f"the saved password is sent only to the broker it was saved for, {describe_broker(cfg.mqtt)}; "
            f"{describe_broker(wanted)} is another broker (a different host, port or CA file)")


def type_password_for(wanted) -> str:
    return f'Type the password for {wanted.host}:{wanted.port} (or tick "No password" if that broker takes none).'


def install(app, ctx, h) -> None:
    """Routes ``/admin/classroom`` (``h``: the web app's ``Guard``).

    Like Admin -> Settings (``web.edits``): the form carries the values it was opened with,
    a save changes only what its admin changed, the same field changed by another admin
    meanwhile is refused (409) with both values named, and a save ends on a GET."""

    def form_changes() -> dict:
        changes: dict = {}
        no_password = ticked(request.forms.get(NO_PASSWORD))
        if no_password and (request.forms.getunicode("mqtt.password") or "").strip():
            raise config_mod.ConfigError('Password: type a password or tick "No password", not both')
        if no_password and has_saved_password(ctx.cfg):
            changes.update({"mqtt.password": "", "mqtt.password_file": ""})  # deleted at Save
        for key, label, kind, _ in FIELDS:
            raw = (request.forms.getunicode(f"mqtt.{key}") or "").strip()
            if kind is bool:
                changes[f"mqtt.{key}"] = ticked(raw)
            elif kind is int and f"mqtt.{key}" not in request.forms:
                continue  # a form without it (a page opened before Heartbeat was on it, a script): kept as is
            elif kind is int:
                try:
                    changes[f"mqtt.{key}"] = int(raw)
                except ValueError:
                    raise config_mod.ConfigError(f"{label}: {raw!r} is not a whole number: use {allowed(key)}") from None
            elif key == "password" and not raw:
                continue  # keep the saved password (for the saved broker only: withheld_password)
            elif key == "password":
                # a typed password replaces the saved one, the file included (both set is refused)
                changes.update({"mqtt.password": raw, "mqtt.password_file": ""})
            else:
                changes[f"mqtt.{key}"] = raw
        return changes

    def render(message: str = "", ok: bool = True, status: int = 200, values: dict | None = None,
               password_hint: str = "", base: dict | None = None, password_needed: bool = False, invalid: str = ""):
        """The page; ``values``: what the admin typed, shown again; ``base``: the values their
        form started from (kept, so a Save after a Test or an error still saves only theirs);
        ``password_needed``: the password field is marked as the one to fill in, and focused;
        ``invalid``: the field at fault (``mqtt.<key>``), marked and focused the same way."""
        saved = ("A password is saved for " + describe_broker(ctx.cfg.mqtt) + "." if has_saved_password(ctx.cfg)
                 else "No password is saved.")
        body = h.page("admin_classroom", title="Classroom broker", fields=FIELDS, values=values or saved_values(ctx.cfg),
                      status=status_of(ctx.publisher), message=message, ok=ok, password_hint=password_hint,
                      password_saved=saved, password_needed=password_needed, invalid=invalid,
                      base=base_field(base or shown_now(ctx.cfg)))
        return HTTPResponse(body, status) if status != 200 else body

    @app.get("/admin/classroom")
    def classroom_settings():
        h.require_user(admin=True)
        flash = h.flash()
        return render(flash["error"] or flash["done"], ok=not flash["error"])

    @app.post("/admin/classroom")
    def save_classroom_settings():
        from edge_app.web.admin_settings import apply_settings

        me = h.require_user(admin=True)
        h.check_csrf()
        h.require_recent_password()
        shown = {**saved_values(ctx.cfg), **{k: request.forms.getunicode(f"mqtt.{k}", "") for k, *_ in FIELDS}}
        shown["no_password"] = ticked(request.forms.get(NO_PASSWORD))
        before = shown_now(ctx.cfg)
        base = read_base(request.forms.getunicode("base"), before)
        try:
            sent = form_changes()
            candidate = config_mod.with_changes(ctx.cfg, sent)  # bad host or port: ConfigError, nothing saved
            settings = MqttSettings.from_config(candidate)
        except config_mod.ConfigError as exc:
            message, invalid = in_the_forms_words(str(exc), LABELS)
            return render(f"Nothing saved: {message}.", ok=False, status=400, values=shown, base=base,
                          invalid=invalid)
        if request.forms.get("action") == "test":
            if not settings.enabled:
                return render("Set a broker host to test.", ok=False, status=400, values=shown, base=base)
            withheld = withheld_password(ctx.cfg, candidate.mqtt, sent)
            if withheld:
                return render(f"Not tested: {withheld}. {type_password_for(candidate.mqtt)}", ok=False, status=400,
                              values=shown, password_hint=type_password_for(candidate.mqtt), base=base,
                              password_needed=True)
            ok, text = check_connection(settings, running=ctx.publisher)  # never ends the desk's live connection
            # a typed password is never sent back to the page, so Save after a Test would keep the old one
            hint = TYPE_AGAIN if request.forms.getunicode("mqtt.password") else ""
            if ok is None:
                return render(f"Not tested: {text}.", ok=False, status=409, values=shown, password_hint=hint,
                              base=base)
            return render(("Test: " + text[0].upper() + text[1:]) if ok else f"Test failed: {text}.", ok=ok,
                          status=200 if ok else 502, values=shown, password_hint=hint, base=base)
        with ctx.settings_lock:  # as the settings page: what the changes are judged against holds until saved
            before = shown_now(ctx.cfg)
            base = read_base(request.forms.getunicode("base"), before)
            changes, conflicts = own_changes(sent, base, before, LABELS)
            if conflicts:
                return render("Nothing saved: another admin changed these settings since you opened this page: "
                              + "; ".join(conflicts) + ". Your values are below: save again to keep them.", ok=False,
                              status=409, values=shown, base=before)
            if not changes:
                h.flash_redirect("/admin/classroom", "Nothing to save: no setting was changed.")
            try:
                candidate = config_mod.with_changes(ctx.cfg, changes)
            except config_mod.ConfigError as exc:  # only theirs over another admin's: checked together again
                message, invalid = in_the_forms_words(str(exc), LABELS)
                return render(f"Nothing saved: {message}.", ok=False, status=400, values=shown, base=base,
                              invalid=invalid)
            desk = changes.get("mqtt.desk")
            if desk and names_a_student(desk, ctx.accounts.usernames("student")):
                # the publisher would withhold it (said once in the journal, where no admin looks): said here
                return render(f"Nothing saved: the desk label {desk!r} holds a student's user name on this device; it "
                              "goes to the broker and every classroom screen, so it would not be sent. Name the seat "
                              'instead, e.g. "Row 2, seat 4".', ok=False, status=400, values=shown, base=base,
                              invalid="mqtt.desk")
            withheld = withheld_password(ctx.cfg, candidate.mqtt, changes)
            if withheld:  # the publisher's next connect would send it there
                return render(f"Nothing saved: {withheld}. {type_password_for(candidate.mqtt)}", ok=False, status=400,
                              values=shown, password_hint=type_password_for(candidate.mqtt), base=base,
                              password_needed=True)
            settings = MqttSettings.from_config(candidate)
            if settings.enabled:  # a CA file that is not there or not PEM passed the form, stopped the publisher and,
                try:              # saved, every later start of the device: refused here, nothing saved
                    make_client(settings, "engage-edge-check")
                except config_mod.ConfigError as exc:
                    message, invalid = in_the_forms_words(str(exc), LABELS)
                    return render(f"Nothing saved: {message}.", ok=False, status=400, values=shown, base=base,
                                  invalid=invalid or "mqtt.tls_ca")
            before_cfg = ctx.cfg
            forgets = "mqtt.password" in changes and not changes["mqtt.password"]
            deletes_file = forgets and page_password_file(before_cfg) is not None
            detail = ((f"publishing to {settings.broker}" if settings.enabled else "MQTT off")  # never the password
                      + (", saved password deleted" if deletes_file else ", new password saved"
                         if changes.get("mqtt.password") else "")
                      + "".join(f"; {LABELS.get(k, k)}: {before[k]!r} -> {v!r}" for k, v in changes.items()
                                if k in before and before[k] != v))
            # saved with its audit row in one write: on a full disk "not done" was saved and applied, unaudited
            apply_settings(ctx, password_to_file(ctx.cfg, changes), (me.username, "changed classroom settings", "", detail))
            forgotten = ""
            if forgets:
                forgotten = (" The saved password was deleted." if forget_password_file(before_cfg)
                             else " The password in the config file is no longer used.")
            restart_publisher(ctx, ctx.cfg)
            log.info("admin %s changed the classroom broker settings", me.username)
            # to a page of its own (post, redirect, get): a reload or Back then sends nothing again
            h.flash_redirect("/admin/classroom", "Saved." + (" Publishing to " + settings.broker + "."
                                                             if settings.enabled else " MQTT is off.")
                             + forgotten)


def password_to_file(cfg: Config, changes: dict) -> dict:
    """``changes`` with a typed broker password swapped for ``mqtt.password_file``: the
    password is written (atomically, mode 0600) to ``PASSWORD_FILE`` in the data directory."""
    password = changes.get("mqtt.password")
    if not password:
        return changes
    path = config_mod.data_dir(cfg) / PASSWORD_FILE
    atomic_write(path, password + "\n", mode=0o600)
    return {**changes, "mqtt.password": "", "mqtt.password_file": str(path)}


def page_password_file(cfg: Config) -> Path | None:
    """The password file this page wrote, when ``cfg`` uses it (not one a technician named)."""
    path = config_mod.data_dir(cfg) / PASSWORD_FILE
    return path if cfg.mqtt.password_file and Path(cfg.mqtt.password_file) == path else None


def forget_password_file(cfg: Config) -> bool:
    """"No password" saved: delete the password file this page wrote, if ``cfg`` used it;
    False when it did not (a password or file a technician put in the config file is
    theirs, and stays there, overridden)."""
    path = page_password_file(cfg)
    if path is None:
        return False
    path.unlink(missing_ok=True)
    return True


def move_saved_password(store, cfg: Config, settings_key: str) -> None:
    """Earlier releases kept a password typed on this page in the settings table: move it
    to the password file once, at start-up, so it is no longer in the database."""
    saved = store.get_setting(settings_key, {}) or {}
    if not saved.get("mqtt.password"):
        return
    saved.update(password_to_file(cfg, {"mqtt.password": saved["mqtt.password"]}))
    store.set_setting(settings_key, saved)
    log.info("moved the saved broker password out of the database into %s", Path(saved["mqtt.password_file"]))


def saved_values(cfg: Config) -> dict[str, Any]:
    """The page's fields as the running config has them."""
    return {key: getattr(cfg.mqtt, key) for key, *_ in FIELDS}


def shown_now(cfg: Config) -> dict[str, Any]:
    """The fields the page shows, by dotted key: the form's ``base``. Never the password,
    which the page does not show (the base travels in the page)."""
    return {f"mqtt.{key}": value for key, value in saved_values(cfg).items() if key != "password"}


def restart_publisher(ctx, cfg: Config) -> None:
    """Start a publisher with ``cfg`` (none when host is empty) in place of the running one: the
    new one is made first, so settings it cannot use (``ConfigError``) leave the old one running."""
    new = publisher_for(cfg, ctx.store, lambda: model_version(ctx.analyzer.classifier.manifest), ctx.loop)
    if ctx.publisher is not None:
        ctx.publisher.stop(timeout=1.0)
    ctx.store.outbox_enabled = new is not None  # the old one's stop turned it off
    ctx.publisher = new.start() if new else None
