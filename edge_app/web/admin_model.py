"""The admin model page: the model in use (manifest, metrics, size) and installing a new
one from the browser, validated fully before anything changes (``edge_app.models.registry``)."""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import bottle
from bottle import HTTPResponse, request

from edge_app.models import registry as flash
from edge_app.web.guard import Guard

log = logging.getLogger(__name__)


def install(app: bottle.Bottle, ctx, guard: Guard) -> None:
    @app.get("/admin/model")
    def model_page():
        guard.require_user(admin=True)
        m = ctx.analyzer.classifier.manifest
        try:
            size_mb = m.model_path.stat().st_size / 1e6
        except OSError:
            size_mb = None
        extra = {k: v for k, v in m.raw.items() if k not in ("labels", "metrics", "sha256", "model", "input")}
        return guard.page("admin_model", title="Model", manifest=m, size_mb=size_mb, extra=extra,
                          done=request.query.getunicode("done", ""), error=request.query.getunicode("error", ""))

    @app.post("/admin/model/install")
    def admin_model_install():
        """Flash a model from the admin page: validated fully before anything changes."""
        me = guard.require_user(admin=True)
        guard.check_csrf()
        model, manifest = request.files.get("model"), request.files.get("manifest")
        if model is None or manifest is None:
            return HTTPResponse(guard.page("error", title="Model refused",
                                           message="Choose both the .tflite model and its .json manifest."), 400)
        with tempfile.TemporaryDirectory(prefix="engage-upload-") as tmp:
            model_path, manifest_path = Path(tmp) / "model.tflite", Path(tmp) / "manifest.json"
            model.save(str(model_path))
            manifest.save(str(manifest_path))
            try:
                raw = flash.install(model_path, manifest_path, ctx.cfg)
            except flash.ModelError as exc:
                reason = str(exc).replace("model.tflite", model.raw_filename or "the model")
                return HTTPResponse(guard.page("error", title="Model refused",
                                               message=f"{reason}. The running model is unchanged."), 400)
        log.info("admin %s installed model %s", me.username, raw["sha256"][:12])
        return bottle.redirect("/admin/model")
