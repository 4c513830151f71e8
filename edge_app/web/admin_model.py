"""The admin model page: the model in use with a readable summary of its evaluation
(headline accuracy, per-class table, confusion matrix, the shipped plots), the history of
installs and roll-backs, installing a new model from the browser (validated fully before
anything changes: ``edge_app.models.registry``) and rolling back to the previous one.

An install or roll-back hands the new classifier to the running appliance before the
page is shown again (``ModelWatcher.check``), so the page the admin lands on shows the
model that really runs; every change is written to the audit log."""
from __future__ import annotations

import functools
import json
import logging
import re
import tempfile
from pathlib import Path

import bottle
from bottle import HTTPResponse, request

from edge_app.models import registry as flash
from edge_app.models.checks import MAX_MODEL_BYTES, is_number
from edge_app.vision.classifier import SHIPPED_MANIFEST, Manifest
from edge_app.web.guard import Guard
from edge_app.web.hardening import drain_body

log = logging.getLogger(__name__)
RULES = (("official", "FER+ official rule"), ("argmax", "majority vote"))  # how the manifest's test scores were counted


# a model, its manifest (well under 1 MB) and the form around them
UPLOAD_LIMIT = MAX_MODEL_BYTES + 2 * 1024 * 1024


def summary(metrics: dict, labels: list[str]) -> dict | None:
    """The evaluation the manifest records, shaped for a page: headline numbers, one row
    per class and the confusion matrix (rows: true class); None when it records none. A
    value of the wrong kind (text for a time, a number for the date: the flash tool refuses
    them now, an older install may have let them in) is left out, never a 500."""
    if not isinstance(metrics, dict):
        return None
    found = next(((metrics[key], rule) for key, rule in RULES if isinstance(metrics.get(key), dict)
                  and _share(metrics[key].get("accuracy")) is not None), None)
    if found is None:
        return None
    block, rule = found
    per_class = block.get("per_class") if isinstance(block.get("per_class"), dict) else {}
    classes = [{"label": label, **{k: _share(per_class[label].get(k)) for k in ("precision", "recall", "f1")},
                "support": _count(per_class[label].get("support"))}
               for label in labels if isinstance(per_class.get(label), dict)]
    confusion = block.get("confusion")
    if not (isinstance(confusion, list) and len(confusion) == len(labels)
            and all(isinstance(row, list) and len(row) == len(labels) and all(_count(n) is not None for n in row)
                    for row in confusion)):
        confusion = None
    latency: dict = metrics["latency"] if isinstance(metrics.get("latency"), dict) else {}
    evaluated, split = metrics.get("evaluated"), metrics.get("split")
    return {"rule": rule, "accuracy": block["accuracy"], "macro_f1": _share(block.get("macro_f1")),
            "images": _count(block.get("images")), "split": split[:40] if isinstance(split, str) else "",
            "evaluated": evaluated if isinstance(evaluated, str) else "", "classes": classes,
            "confusion": confusion, "latency_ms": _number(latency.get("median_ms"))}


def _share(value) -> float | None:
    """A share from 0 to 1 from a manifest, or None."""
    number = _number(value)
    return number if number is not None and 0 <= number <= 1 else None


def _count(value) -> int | None:
    """A count from a manifest, or None."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def measured(raw: dict) -> dict | None:
    """The time per face measured on this device when the model was installed (the flash
    tool's ``measured``), shaped for the page; None for a model never timed here (the
    shipped one), whose manifest's claim the page then labels as a claim."""
    m = raw.get("measured")
    if not isinstance(m, dict):
        return None
    ms, ref_ms = _number(m.get("ms_per_face")), _number(m.get("its_ms_per_face"))
    if ms is None:
        return None
    views = m.get("views")
    return {"ms": ms, "views": views if isinstance(views, int) and not isinstance(views, bool) else None,
            "compared_with": str(m.get("compared_with") or "")[:80], "its_ms": ref_ms}


def _number(value) -> float | None:
    """A finite number from a manifest, or None (a string, a bool, NaN)."""
    return value if is_number(value) else None


@functools.cache
def _shipped_sha256() -> str:
    return str(json.loads(SHIPPED_MANIFEST.read_text()).get("sha256", ""))


def plot_files(manifest: Manifest) -> dict[str, Path]:
    """The evaluation pictures the manifest names that exist beside it (or, for a model
    installed from the shipped one, beside the shipped manifest)."""
    plots: dict = manifest.metrics["plots"] if isinstance(manifest.metrics.get("plots"), dict) else {}
    folders = [manifest.path.parent]
    if manifest.sha256 == _shipped_sha256():  # the same model file: its pictures are the shipped ones
        folders.append(SHIPPED_MANIFEST.parent)
    found: dict[str, Path] = {}
    for key, name in plots.items():
        if not isinstance(name, str) or Path(name).name != name or not name.endswith(".png"):
            continue
        for folder in folders:
            if (folder / name).is_file():
                found[str(key)] = folder / name
                break
    return found


def as_uploaded(text: str, names: dict[Path, str]) -> str:
    """A refusal as the admin knows the files: each saved upload's path, or its bare name in
    the temporary folder (``model.tflite``, ``manifest.json``), becomes the name it was uploaded
    under. In one pass, so an uploaded name is never replaced again; "manifest manifest.json:
    labels ..." named no file the admin had chosen."""
    shown = {**{str(path): name for path, name in names.items()}, **{path.name: name for path, name in names.items()}}
    pattern = "|".join(re.escape(key) for key in sorted(shown, key=len, reverse=True))
    return re.sub(pattern, lambda m: shown[m.group()], text)


def install(app: bottle.Bottle, ctx, guard: Guard) -> None:
    def back(message: str, error: bool = False) -> None:
        guard.flash_redirect("/admin/model", message, error)

    def pick_up() -> str:
        """Hand the newly active model to the running appliance now; '' or why not."""
        watcher = getattr(ctx, "model_watcher", None)
        if watcher is not None:
            watcher.check()
            return watcher.last_error
        return ""

    def not_picked_up() -> str:
        """'' or that the active manifest names a model the service could not load (one a
        command-line install checked as another user, a file damaged since): it runs the old
        one, which only a web install's own answer said."""
        watcher = getattr(ctx, "model_watcher", None)
        if watcher is None or not watcher.last_error:
            return ""
        return (f"The installed model could not be loaded ({watcher.last_error}); this device still runs "
                f"{running_text()}. Roll back, or install another model.")

    def running_text() -> str:
        m = ctx.analyzer.classifier.manifest
        version = m.raw.get("version")
        return f"{m.model_path.name}" + (f" (version {version})" if version else "") + f", sha256 {m.sha256[:12]}"

    @app.get("/admin/model")
    def model_page():
        guard.require_user(admin=True)
        return render(**guard.flash())

    def render(done: str = "", error: str = "") -> str:
        """The model page, with ``done`` or ``error`` shown at its top."""
        m = ctx.analyzer.classifier.manifest
        try:
            size_mb = m.model_path.stat().st_size / 1e6
        except OSError:
            size_mb = None
        rows = flash.listing(ctx.cfg)
        previous = next((r for r in rows if r["role"] == "previous" and "error" not in r), None)
        current = next((r for r in rows if r["role"] == "current" and "error" not in r), None)
        if previous is not None and current is not None and previous["manifest"] == current["manifest"]:
            previous = None  # the current install itself: nothing to go back to (the same file read otherwise is another)
        if not error:
            error = not_picked_up()
        pinned = bool(ctx.cfg.model.manifest)
        return guard.page("admin_model", title="Model", manifest=m, size_mb=size_mb, info=summary(m.metrics, m.labels),
                          speed=measured(m.raw), plots=plot_files(m), history=flash.history(ctx.cfg), previous=previous,
                          pinned=pinned, done=done, error=error)

    @app.get("/admin/model/plot/<key>")
    def model_plot(key):
        guard.require_user(admin=True)
        path = plot_files(ctx.analyzer.classifier.manifest).get(key)
        if path is None:
            return HTTPResponse(guard.page("error", title="No picture", message="The model in use has no such picture."), 404)
        return bottle.static_file(path.name, root=str(path.parent), mimetype="image/png")

    @app.post("/admin/model/install")
    def admin_model_install():
        """Flash a model from the admin page: validated fully before anything changes."""
        me = guard.require_user(admin=True)
        if request.content_length > UPLOAD_LIMIT:
            # refused unread: the CSRF check reads the whole form into a temporary file first,
            # and a wrong file picked by mistake (a video) could fill the disk the database is on
            drain_body(UPLOAD_LIMIT)
            return HTTPResponse(render(error=f"Model refused: the upload is {request.content_length / 1e6:.1f} MB; "
                                             f"a model is at most {MAX_MODEL_BYTES >> 20} MB (the shipped one is "
                                             "0.2 MB). Choose the .tflite file and its .json manifest. The running "
                                             "model is unchanged."), 413)
        guard.check_csrf()
        guard.require_recent_password()
        model, manifest = request.files.get("model"), request.files.get("manifest")
        if model is None or manifest is None:
            return HTTPResponse(guard.page("error", title="Model refused",
                                           message="Choose both the .tflite model and its .json manifest."), 400)
        with tempfile.TemporaryDirectory(prefix="engage-upload-") as tmp:
            model_path, manifest_path = Path(tmp) / "model.tflite", Path(tmp) / "manifest.json"
            model.save(str(model_path))
            manifest.save(str(manifest_path))
            before = flash.running_manifest(ctx.cfg)
            try:
                raw = flash.install(model_path, manifest_path, ctx.cfg, by=me.username)
            except flash.AlreadyInstalled as exc:
                running = ctx.analyzer.classifier.manifest
                if not ctx.cfg.model.manifest and running.sha256 == exc.installed.get("sha256"):
                    back(f"Nothing to install: {running_text()} is already the running model, from the same file "
                         "and manifest. Nothing was changed.")
                back(f"Nothing installed: {exc}.", error=True)  # pinned, or not loaded: said as it is
            except flash.ModelError as exc:
                # the uploads' own names, never this temporary folder's; back to the model page to try again
                reason = as_uploaded(str(exc), {model_path: model.raw_filename or "the model",
                                                manifest_path: manifest.raw_filename or "the manifest"})
                # on the model page itself, its form there to try again (400 for a script)
                return HTTPResponse(render(error=f"Model refused: {reason}. The running model is unchanged."), 400)
        log.info("admin %s installed model %s", me.username, raw["sha256"][:12])
        ctx.store.audit(me.username, "installed model", raw["model"], f"sha256 {raw['sha256'][:12]}, from "
                        f"{model.raw_filename or 'an upload'}")
        if ctx.cfg.model.manifest:
            back(f"Installed {raw['model']}, but model.manifest in the config pins another model: clear it and "
                 "restart to run the installed one.", error=True)
        problem = pick_up()
        if problem:
            back(f"Installed {raw['model']}, but the running appliance could not load it ({problem}): roll back.",
                 error=True)
        note = flash.lower_accuracy_note(before, raw)
        back(f"Installed and running: {running_text()}." + (f" Note: {note}." if note else ""))

    @app.post("/admin/model/rollback")
    def admin_model_rollback():
        """The CLI's ``engage-edge model rollback`` from the page: the previous model runs again."""
        me = guard.require_user(admin=True)
        guard.check_csrf()
        guard.require_recent_password()
        try:
            raw = flash.rollback(ctx.cfg, by=me.username)
        except flash.PreviousUnusable as exc:  # rolling back cannot mend it: what can
            back(f"Not rolled back: the previous model cannot run ({exc}). The running model is unchanged; to run "
                 "another, install a good model below.", error=True)
        except flash.ModelError as exc:
            back(f"Not rolled back: {exc}. The running model is unchanged.", error=True)
        log.info("admin %s rolled back to model %s", me.username, raw.get("model"))
        ctx.store.audit(me.username, "rolled back model to", str(raw.get("model")), f"sha256 {raw.get('sha256', '')[:12]}")
        if ctx.cfg.model.manifest:  # said "Rolled back. Running: <the pinned model>", as if the roll-back ran
            back(f"Rolled back to {raw.get('model')}, but model.manifest in the config pins another model: clear it "
                 f"and restart to run it. Running: {running_text()}.", error=True)
        problem = pick_up()
        if problem:
            back(f"Rolled back, but the running appliance could not load {raw.get('model')} ({problem}).", error=True)
        back(f"Rolled back. Running: {running_text()}.")
