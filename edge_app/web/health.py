"""Health for machines: ``/healthz`` (JSON, 503 when degraded, for watchdogs and load
balancers; the build's version to logged-in admins only: the exact build marks an unpatched
desk; the broker link's details and counts to admins and this machine only) and ``/metrics``
(Prometheus text, loopback and admins only by default)."""
from __future__ import annotations

import json
import time

import bottle
from bottle import response

from edge_app import __version__
from edge_app.device import clock
from edge_app.fleet.publisher import status_of as mqtt_status
from edge_app.runtime.health import CameraState, StoreState
from edge_app.web.guard import Guard, admin_past_given_password, from_this_machine, json_error, told_details


def _admin(guard: Guard) -> bool:
    """Whether a logged-in admin (past a given password) asks."""
    return admin_past_given_password(guard.current())


def install(app: bottle.Bottle, ctx, guard: Guard) -> None:
    metrics_fallback: list = []  # a registry for an appliance without a capture loop, made on first scrape

    @app.get("/metrics")
    def metrics():
        """Prometheus text format (prometheus-client), from the loop's own registry."""
        from edge_app.runtime.metrics import CONTENT_TYPE_LATEST, Metrics

        # the current engagement state is personal data: loopback (a local scraper or
        # an SSH tunnel) and logged-in admins only, unless web.metrics_public is set
        # the socket's peer (or a trusted proxy's client): bottle's remote_addr believes any X-Forwarded-For
        if not (ctx.cfg.web.metrics_public or from_this_machine()):
            if not _admin(guard):
                return json_error(403, "metrics are served to loopback and admins only (web.metrics_public = false)")
        if ctx.loop is not None:
            m = ctx.loop.metrics
        else:
            if not metrics_fallback:
                metrics_fallback.append(Metrics())
                metrics_fallback[0].watch_disk(ctx.store.data_dir)
            m = metrics_fallback[0]
        m.set_model(ctx.analyzer.classifier.manifest)  # the model in use now (it may have been swapped)
        if ctx.publisher:
            ctx.publisher.watch(m.registry)  # engage_mqtt_connected, engage_mqtt_backlog
        response.content_type = CONTENT_TYPE_LATEST
        return m.render()

    @app.get("/healthz")
    def healthz():
        response.content_type = "application/json"
        h = ctx.loop.health if ctx.loop else None
        paused = ctx.loop.privacy.active if ctx.loop else None
        told = told_details(guard.current())  # the build and the broker's details: see guard.told_details
        reasons = []
        if h and h.camera not in (CameraState.OK, CameraState.PAUSED):  # a pause is the student's choice, not a fault
            reasons.append(f"camera {h.camera}: {h.camera_error}".rstrip(": "))
        silent_s = time.monotonic() - h.last_frame if h and h.last_frame else 0.0
        if h and h.camera == CameraState.OK and silent_s > 2 * ctx.cfg.camera.read_timeout_s:
            reasons.append(f"camera: no frame for {silent_s:.0f} s")
        if ctx.loop is not None and h is not None and h.camera not in (CameraState.STARTING, CameraState.STOPPED) and not ctx.loop.alive:
            reasons.append("capture loop is not running: restart the service (journalctl -u engage-edge says why)")
        if h and h.store != StoreState.OK:
            reasons.append(f"store {h.store}: {h.store_error}")
        try:
            free_mb = round(ctx.store.free_mb(), 1)
            if free_mb < ctx.cfg.store.min_free_mb and not any(r.startswith("store disk full") for r in reasons):
                reasons.append(f"disk: {free_mb:.0f} MB free in {ctx.store.data_dir}, below store.min_free_mb = "
                               f"{ctx.cfg.store.min_free_mb:g}: logging is paused; free some space")
        except OSError as exc:
            free_mb = None
            reasons.append(f"disk: {ctx.store.data_dir} is not accessible: {exc}")
        watcher = getattr(ctx, "model_watcher", None)
        if watcher is not None and watcher.last_error:  # the model named as active is not the one running
            reasons.append(f"model: the installed model could not be loaded ({watcher.last_error}); still running "
                           f"{ctx.analyzer.classifier.manifest.model_path.name}: roll back (engage-edge model rollback) "
                           "or install another")
        try:
            ctx.store.schema_version()
        except Exception as exc:  # sqlite3.Error, StoreError
            reasons.append(f"database {ctx.store.path}: {exc}")
        body = {
            "disk_free_mb": free_mb,
            "store": h.store if h else StoreState.OK,
            "dropped": h.dropped if h else 0,
            "status": "degraded" if reasons else "ok",
            "reasons": reasons,
            "camera": h.camera if h else "off",
            "state": "Paused" if paused else None,  # only the pause: the engagement state is personal, not public
            "paused": paused.public() if paused else None,
            "model": {"sha256": ctx.analyzer.classifier.manifest.sha256,
                      "file": ctx.analyzer.classifier.manifest.model_path.name},
            "fps": round(h.fps, 2) if h else 0.0,
            "frames": h.frames if h else 0,
            "uptime_s": round(time.monotonic() - ctx.started_monotonic, 1),
            # the classroom broker: to anyone, connected and whether a backlog waits; its counts (one
            # per state message: when the student comes, goes, changes) and names as /metrics has them
            "mqtt": mqtt_status(ctx.publisher, full=told),
            # not a reason for "degraded": the device works, only its times may be wrong (device/clock.py)
            "clock_synchronized": clock.synchronized(),
            # nor this: the device works, and a reboot empties it (Pi OS's Overlay File System, a tmpfs)
            "data_lost_at_reboot": ctx.lost_at_reboot is not None,
        }
        if told:  # the exact build marks an unpatched desk: for its admins and the device itself
            body["version"] = __version__
        if reasons:
            response.status = 503
        return json.dumps(body)
