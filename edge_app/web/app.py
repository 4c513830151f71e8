"""The device's web UI and API (Bottle on cheroot's thread pool).

cheroot streams generator responses as they are produced, so an endless MJPEG stream
holds one worker thread and nothing is buffered; the number of viewers is bounded so
the pool always has threads left for pages. Sessions are server-side (see ``auth``).
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bottle
import cv2
from bottle import HTTPError, HTTPResponse, request, response

from edge_app import __version__
from edge_app.fleet import admin_page as fleet_admin
from edge_app.fleet.publisher import status_of as mqtt_status
from edge_app.runtime.capture import CaptureLoop, LiveFrame
from edge_app.store.accounts import Accounts, AuthError, LoginThrottled, User
from edge_app.store.database import Store
from edge_app.vision.stills import (
    ACCEPTED_TEXT,
    Analyzer,
    ImageRejected,
    Limits,
    decode_image,
    draw_faces,
)

log = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent
COOKIE = "ee_session"
bottle.TEMPLATE_PATH[:] = [str(HERE / "views")]


@dataclass
class Context:
    """Everything the web app reads: config, store, accounts, analyzer, the live loop."""

    cfg: dict
    store: Store
    accounts: Accounts
    analyzer: Analyzer
    loop: CaptureLoop | None = None
    live: LiveFrame | None = None
    started: float = 0.0
    publisher: Any = None  # edge_app.fleet.publisher.Publisher when [mqtt] is on


class ViewerSlots:
    """A bounded number of concurrent MJPEG viewers."""

    def __init__(self, limit: int, live: LiveFrame | None):
        self.limit, self.live = limit, live
        self._lock = threading.Lock()
        self.count = 0

    def acquire(self) -> bool:
        with self._lock:
            if self.count >= self.limit:
                return False
            self.count += 1
            if self.live:
                self.live.viewers = self.count
            return True

    def release(self) -> None:
        with self._lock:
            self.count = max(0, self.count - 1)
            if self.live:
                self.live.viewers = self.count


def make_app(ctx: Context) -> bottle.Bottle:
    app = bottle.Bottle()
    app.config["ctx"] = ctx
    limits = Limits.from_config(ctx.cfg)
    viewers = ViewerSlots(ctx.cfg["web"]["max_viewers"], ctx.live)
    secure_cookie = bool(ctx.cfg["web"]["tls_cert"])
    app.config["viewers"] = viewers
    # bottle refuses bodies above MEMFILE_MAX only for forms; keep uploads in memory up to the limit
    bottle.BaseRequest.MEMFILE_MAX = limits.max_bytes + 1024 * 1024

    # ------------------------------------------------------------ helpers
    def current() -> tuple[User, str] | None:
        cached = request.environ.get("ee.user")
        if cached is None:
            cached = ctx.accounts.session_user(request.get_cookie(COOKIE)) or False
            request.environ["ee.user"] = cached
        return cached or None

    def wants_json() -> bool:
        return request.path.startswith("/api/") or "application/json" in request.headers.get("Accept", "")

    def require_user(admin: bool = False) -> User:
        found = current()
        if not found:
            if wants_json() or request.path in ("/live.mjpg",):
                raise HTTPResponse(json.dumps({"error": "log in first"}), 401, {"Content-Type": "application/json"})
            raise bottle.redirect("/login?next=" + bottle.html_quote(request.fullpath))
        user = found[0]
        if admin and not user.is_admin:
            if wants_json():
                raise HTTPResponse(json.dumps({"error": "admins only"}), 403, {"Content-Type": "application/json"})
            raise HTTPResponse(page("error", title="Not allowed", message="This page is for admins only."), 403)
        return user

    def check_csrf() -> None:
        found = current()
        try:
            token = request.forms.get("csrf") or request.headers.get("X-CSRF-Token")
        except (UnicodeDecodeError, ValueError):  # a malformed form body is refused like a stale one
            token = None
        if not found or not token or token != found[1]:
            raise HTTPResponse(page("error", title="Form expired", message="The form was stale: reload the page and try again."), 403)

    def check_same_origin() -> None:
        origin = request.headers.get("Origin")
        if origin and (origin == "null" or origin.split("://", 1)[-1] != request.headers.get("Host")):
            if wants_json():
                raise HTTPResponse(json.dumps({"error": "cross-site request refused"}), 403,
                                   {"Content-Type": "application/json"})
            raise HTTPResponse(page("error", title="Refused", message="This form was sent from another site, so it "
                                    "was refused. Open this device's page directly and try again."), 403)

    def client_address() -> str:
        # the socket's peer, never X-Forwarded-For (a client could set that to dodge throttling)
        return request.environ.get("REMOTE_ADDR") or "unknown"

    def set_session_cookie(token: str) -> None:
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict", secure=secure_cookie, path="/",
                            max_age=int(ctx.accounts.max_age_s))

    def page(name: str, **values) -> str:
        found = current()
        values.setdefault("title", "engage-edge")
        return bottle.template(name, user=found[0] if found else None, csrf=found[1] if found else "",
                               version=__version__, path=request.path, **values)

    def json_error(status: int, message: str) -> HTTPResponse:
        return HTTPResponse(json.dumps({"error": message}), status, {"Content-Type": "application/json"})

    # ------------------------------------------------------------ security headers
    @app.hook("after_request")
    def headers():
        response.set_header("X-Content-Type-Options", "nosniff")
        response.set_header("X-Frame-Options", "DENY")
        # same-origin, not no-referrer: with no-referrer browsers send "Origin: null" on form posts
        response.set_header("Referrer-Policy", "same-origin")
        response.set_header("Content-Security-Policy", "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; "
                                                       "frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
        if request.path != "/live.mjpg" and not request.path.startswith("/static/"):
            response.set_header("Cache-Control", "no-store")

    @app.hook("before_request")
    def guard():
        """Defence in depth: every /admin and /api/admin path needs an admin, whatever
        the route itself checks, and no state-changing request comes from another site."""
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            check_same_origin()
        if request.path == "/admin" or request.path.startswith(("/admin/", "/api/admin/")):
            require_user(admin=True)

    # ------------------------------------------------------------ pages
    @app.get("/static/<name:path>")
    def static(name):
        return bottle.static_file(name, root=str(HERE / "static"))

    @app.get("/")
    def index():
        user = require_user()
        return bottle.redirect("/admin" if user.is_admin else "/upload")

    @app.get("/login")
    def login_page():
        return page("login", title="Log in", error="", next=request.query.get("next", "/"))

    @app.post("/login")
    def login():
        username, password = request.forms.getunicode("username", ""), request.forms.getunicode("password", "")
        nxt = request.forms.getunicode("next", "/") or "/"
        if not nxt.startswith("/") or nxt.startswith("//"):
            nxt = "/"
        try:
            user = ctx.accounts.login(username, password, client_address())
        except LoginThrottled as exc:
            log.warning("log-in refused for %r from %s: throttled", username, client_address())
            return HTTPResponse(page("login", title="Log in", error=str(exc), next=nxt, username=username), 429,
                                {"Retry-After": str(int(exc.retry_after) + 1)})
        if not user:
            log.info("failed login for %r from %s", username, client_address())
            return HTTPResponse(page("login", title="Log in", error="Wrong user name or password.", next=nxt,
                                     username=username), 401)
        token, _ = ctx.accounts.start_session(user)
        set_session_cookie(token)
        return bottle.redirect(nxt)

    @app.post("/api/login")
    def api_login():
        check_same_origin()
        try:
            data = request.json if request.json else request.forms
        except HTTPError:
            return json_error(400, "send JSON {\"username\": ..., \"password\": ...} or a form")
        try:
            user = ctx.accounts.login(str(data.get("username", "")), str(data.get("password", "")), client_address())
        except LoginThrottled as exc:
            return HTTPResponse(json.dumps({"error": str(exc), "retry_after_s": round(exc.retry_after, 1)}), 429,
                                {"Content-Type": "application/json", "Retry-After": str(int(exc.retry_after) + 1)})
        if not user:
            return json_error(401, "wrong user name or password")
        token, csrf = ctx.accounts.start_session(user)
        set_session_cookie(token)
        response.content_type = "application/json"
        return json.dumps({"user": user.username, "role": user.role, "csrf": csrf})

    @app.post("/logout")
    def logout():
        check_csrf()
        token = request.get_cookie(COOKIE)
        if token:
            ctx.accounts.end_session(token)
        response.delete_cookie(COOKIE, path="/")
        return bottle.redirect("/login")

    @app.get("/account")
    def account_page():
        require_user()
        return page("account", title="Your account", error="", done=False)

    @app.post("/account")
    def change_password():
        user = require_user()
        check_csrf()
        current_pw = request.forms.getunicode("current", "")
        new, again = request.forms.getunicode("new", ""), request.forms.getunicode("again", "")
        try:
            if new != again:
                raise AuthError("the two new passwords differ")
            ctx.accounts.change_password(user, current_pw, new)
        except AuthError as exc:
            return HTTPResponse(page("account", title="Your account", error=f"Not changed: {exc}.", done=False), 400)
        # every old session ended with the change; this browser gets a fresh one
        token, csrf = ctx.accounts.start_session(user)
        set_session_cookie(token)
        request.environ["ee.user"] = (user, csrf)
        return page("account", title="Your account", error="", done=True)

    # ------------------------------------------------------------ upload
    analysis_slots = threading.BoundedSemaphore(ctx.cfg["web"].get("analysis_workers", 1))

    def analyze_upload(user: User) -> tuple[dict, int]:
        """One upload at a time (``web.analysis_workers``): the others wait their turn, so a
        burst of uploads never starves the live capture loop of CPU."""
        with analysis_slots, _lower_thread_priority():
            return _analyze_upload(user)

    def _analyze_upload(user: User) -> tuple[dict, int]:
        """Validate and analyse the multipart field ``image``; returns (result, upload id)."""
        if request.content_length > limits.max_bytes + 64 * 1024:
            _drain_body(limits.max_bytes * 4)
            raise ImageRejected(f"the upload is {request.content_length / 1e6:.1f} MB; the limit is "
                                f"{limits.max_bytes / 1048576:.0f} MB", 413)
        try:
            field = request.files.get("image")
        except (UnicodeDecodeError, ValueError) as exc:  # a malformed multipart body (bottle decodes text parts)
            raise ImageRejected(f"the upload form could not be read ({type(exc).__name__}): send the image "
                                "as a file in the multipart field 'image'") from None
        if field is None or not hasattr(field, "file"):
            raise ImageRejected(f"no file in the form field 'image': choose a {ACCEPTED_TEXT} file")
        data = field.file.read(limits.max_bytes + 1)
        bgr = decode_image(data, limits)
        faces = ctx.analyzer.analyze(bgr)
        name = safe_filename(field.raw_filename)
        upload_id = ctx.store.add_upload(user.id, name, bgr.shape[1], bgr.shape[0], faces)
        keep = ctx.cfg["privacy"]["keep_uploads"]
        if keep != "none":
            image = bgr if keep == "full" else _thumbnail(bgr, 320)
            ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
            if ok:
                rel = ctx.store.write_image(f"uploads/{upload_id}.jpg", buf.tobytes())
                ctx.store.execute("UPDATE uploads SET image_path = ? WHERE id = ?", (rel, upload_id))
        thumbs = [_data_uri(_face_crop(bgr, f["box"], 96)) for f in faces]
        annotated = draw_faces(_thumbnail(bgr, 960), _scale_faces(faces, bgr.shape[1], min(960, bgr.shape[1])), copy=False)
        return {"faces": faces, "width": bgr.shape[1], "height": bgr.shape[0], "preview": _data_uri(annotated),
                "thumbs": thumbs, "filename": name, "upload_id": upload_id}, upload_id

    def _drain_body(cap: int) -> None:
        """Read (and drop) an oversized body up to ``cap`` so the client sees our answer, not a reset."""
        stream, left = request.environ["wsgi.input"], min(request.content_length, cap)
        while left > 0:
            chunk = stream.read(min(left, 1 << 20))
            if not chunk:
                break
            left -= len(chunk)

    def my_uploads(user: User) -> list:
        return ctx.store.query(
            "SELECT u.id, u.created, u.filename, u.face_count, "
            "(SELECT group_concat(f.engagement, '; ') FROM upload_faces f WHERE f.upload_id = u.id) AS levels "
            "FROM uploads u WHERE u.user_id = ? ORDER BY u.created DESC LIMIT 10", (user.id,))

    def upload_limits_text() -> str:
        return (f"Accepted: {ACCEPTED_TEXT} files up to {limits.max_bytes // 1048576} MB "
                f"and {limits.max_pixels // 1_000_000} megapixels.")

    @app.get("/upload")
    def upload_page():
        user = require_user()
        return page("upload", title="Analyse a photo", result=None, error="", accepted=upload_limits_text(),
                    history=my_uploads(user))

    @app.post("/upload")
    def upload():
        user = require_user()
        if request.content_length > limits.max_bytes + 64 * 1024:
            # refused before the form is parsed (so no CSRF check is possible or needed: nothing is stored)
            _drain_body(limits.max_bytes * 4)
            return HTTPResponse(page("upload", title="Analyse a photo", result=None, accepted=upload_limits_text(),
                                     error=f"Not analysed: the upload is {request.content_length / 1e6:.1f} MB; "
                                           f"the limit is {limits.max_bytes / 1048576:.0f} MB.",
                                     history=my_uploads(user)), 413)
        check_csrf()
        try:
            result, _ = analyze_upload(user)
        except ImageRejected as exc:
            status = exc.args[1] if len(exc.args) > 1 else 400
            return HTTPResponse(page("upload", title="Analyse a photo", result=None, accepted=upload_limits_text(),
                                     error=f"Not analysed: {exc.args[0]}.", history=my_uploads(user)), status)
        return page("upload", title="Analyse a photo", result=result, error="", accepted=upload_limits_text(),
                    history=my_uploads(user))

    @app.post("/api/analyze")
    def api_analyze():
        user = require_user()
        check_same_origin()
        try:
            result, upload_id = analyze_upload(user)
        except ImageRejected as exc:
            status = exc.args[1] if len(exc.args) > 1 else 400
            return json_error(status, f"{exc.args[0]}. Accepted: {ACCEPTED_TEXT} up to {limits.max_bytes // 1048576} MB "
                                      f"and {limits.max_pixels // 1_000_000} MP in the multipart field 'image'.")
        response.content_type = "application/json"
        return json.dumps({"faces": result["faces"], "width": result["width"], "height": result["height"],
                           "upload_id": upload_id})

    # ------------------------------------------------------------ live
    @app.get("/live")
    def live_page():
        require_user()
        return page("live", title="Live", state=ctx.loop.state if ctx.loop else None)

    @app.get("/api/state")
    def api_state():
        require_user()
        response.content_type = "application/json"
        if not ctx.loop:
            return json.dumps({"level": None})
        s = ctx.loop.state
        return json.dumps({"level": s.level, "group": s.group, "emotion": s.emotion,
                           "confidence": round(s.confidence, 3), "since": s.since,
                           "camera": ctx.loop.health.camera, "fps": round(ctx.loop.health.fps, 1)})

    @app.get("/api/timeline")
    def api_timeline():
        """The engagement level over the last minutes: the state changes, for the live chart."""
        require_user()
        try:
            minutes = min(60, max(1, int(request.query.get("minutes", 10))))
        except ValueError:
            return json_error(400, "minutes must be a whole number from 1 to 60")
        now = time.time()
        cutoff = now - minutes * 60
        before = ctx.store.query("SELECT t, level, grp FROM state_changes WHERE t <= ? ORDER BY t DESC LIMIT 1", (cutoff,))
        rows = ctx.store.query("SELECT t, level, grp FROM state_changes WHERE t > ? ORDER BY t", (cutoff,))
        points = []
        if before:
            points.append({"t": cutoff, "level": before[0]["level"], "group": before[0]["grp"]})
        elif ctx.loop and ctx.started > cutoff:
            points.append({"t": ctx.started, "level": "Absent", "group": "Absent"})
        points += [{"t": r["t"], "level": r["level"], "group": r["grp"]} for r in rows]
        response.content_type = "application/json"
        return json.dumps({"from": cutoff, "now": now, "points": points,
                           "groups": ["Engaged", "Partially engaged", "Not engaged", "Distracted", "Absent"]})

    @app.get("/live.mjpg")
    def live_stream():
        require_user()
        if ctx.live is None or ctx.loop is None:
            return json_error(503, "no live camera loop is running")
        if not viewers.acquire():
            return json_error(503, f"the live view already has {viewers.limit} viewers; try again later")
        interval = 1.0 / ctx.cfg["web"]["stream_fps"]
        response.content_type = "multipart/x-mixed-replace; boundary=frame"
        response.set_header("Cache-Control", "no-store")

        def frames():
            seq, last = 0, 0.0
            try:
                while True:
                    got = ctx.live.jpeg(seq, timeout=5.0)
                    if got is None:
                        if ctx.loop.health.camera != "ok":
                            continue
                        break
                    seq, jpeg = got
                    yield (b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                           + str(len(jpeg)).encode() + b"\r\n\r\n" + jpeg + b"\r\n")
                    wait = interval - (time.monotonic() - last)
                    if wait > 0:
                        time.sleep(wait)
                    last = time.monotonic()
            finally:
                viewers.release()

        return frames()

    # ------------------------------------------------------------ admin (edge_app.web.admin)
    from edge_app.web import admin as web_admin

    helpers = web_admin.Helpers(require_user=require_user, check_csrf=check_csrf, page=page, json_error=json_error,
                                current=current)
    web_admin.install(app, ctx, helpers)
    fleet_admin.install(app, ctx, helpers)  # /admin/classroom: the MQTT broker settings and a connection test

    @app.post("/admin/model/install")
    def admin_model_install():
        """Flash a model from the admin page: validated fully before anything changes (edge_app.models.registry)."""
        import tempfile

        from edge_app.models import registry as flash

        require_user(admin=True)
        check_csrf()
        model, manifest = request.files.get("model"), request.files.get("manifest")
        if model is None or manifest is None:
            return HTTPResponse(page("error", title="Model refused", message="Choose both the .tflite model and its .json manifest."), 400)
        with tempfile.TemporaryDirectory(prefix="engage-upload-") as tmp:
            model_path, manifest_path = Path(tmp) / "model.tflite", Path(tmp) / "manifest.json"
            model.save(str(model_path))
            manifest.save(str(manifest_path))
            try:
                raw = flash.install(model_path, manifest_path, ctx.cfg)
            except flash.ModelError as exc:
                reason = str(exc).replace("model.tflite", model.raw_filename or "the model")
                return HTTPResponse(page("error", title="Model refused", message=f"{reason}. The running model is unchanged."), 400)
        log.info("admin %s installed model %s", current()[0].username, raw["sha256"][:12])
        return bottle.redirect("/admin/model")

    # ------------------------------------------------------------ health
    metrics_fallback = []  # a registry for an appliance without a capture loop, made on first scrape

    @app.get("/metrics")
    def metrics():
        """Prometheus text format (prometheus-client), from the loop's own registry."""
        from edge_app.runtime.metrics import CONTENT_TYPE_LATEST, Metrics

        # the current engagement state is personal data: loopback (a local scraper or
        # an SSH tunnel) and logged-in admins only, unless web.metrics_public is set
        remote = request.remote_addr or ""
        if not (ctx.cfg["web"]["metrics_public"] or remote.startswith("127.") or remote == "::1"):
            found = current()
            if not found or not found[0].is_admin:
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
        reasons = []
        if h and h.camera != "ok":
            reasons.append(f"camera {h.camera}: {h.camera_error}".rstrip(": "))
        if h and h.camera == "ok" and h.last_frame and time.time() - h.last_frame > 2 * ctx.cfg["camera"]["read_timeout_s"]:
            reasons.append(f"camera: no frame for {time.time() - h.last_frame:.0f} s")
        if ctx.loop is not None and h.camera not in ("starting", "stopped") and not ctx.loop.alive:
            reasons.append("capture loop is not running: restart the service (journalctl -u engage-edge says why)")
        if h and h.store != "ok":
            reasons.append(f"store {h.store}: {h.store_error}")
        try:
            free_mb = round(ctx.store.free_mb(), 1)
            if free_mb < ctx.cfg["store"]["min_free_mb"] and not any(r.startswith("store disk full") for r in reasons):
                reasons.append(f"disk: {free_mb:.0f} MB free in {ctx.store.data_dir}, below store.min_free_mb = "
                               f"{ctx.cfg['store']['min_free_mb']:g}: logging is paused; free some space")
        except OSError as exc:
            free_mb = None
            reasons.append(f"disk: {ctx.store.data_dir} is not accessible: {exc}")
        try:
            ctx.store.schema_version()
        except Exception as exc:  # sqlite3.Error, StoreError
            reasons.append(f"database {ctx.store.path}: {exc}")
        body = {
            "disk_free_mb": free_mb,
            "store": h.store if h else "ok",
            "dropped": h.dropped if h else 0,
            "status": "degraded" if reasons else "ok",
            "reasons": reasons,
            "camera": h.camera if h else "off",
            "model": {"sha256": ctx.analyzer.classifier.manifest.sha256,
                      "file": ctx.analyzer.classifier.manifest.model_path.name},
            "fps": round(h.fps, 2) if h else 0.0,
            "frames": h.frames if h else 0,
            "uptime_s": round(time.time() - ctx.started, 1),
            "mqtt": mqtt_status(ctx.publisher),  # the classroom broker: connection and backlog
            "version": __version__,
        }
        if reasons:
            response.status = 503
        return json.dumps(body)

    @app.error(404)
    def not_found(err):
        if wants_json():
            response.content_type = "application/json"
            return json.dumps({"error": "not found"})
        return page("error", title="Not found", message="There is no such page.")

    @app.error(413)
    def too_large(err):
        response.content_type = "application/json"
        return json.dumps({"error": f"the upload is larger than {limits.max_bytes // 1048576} MB"})

    return app


def safe_filename(raw: str | None) -> str:
    """The last component of a client's file name, with any path (/ or \\) and control
    characters removed: it is only ever shown, never used as a path."""
    name = (raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable() and ch not in '<>:"|?*').strip(" .")
    return name[:120] or "upload"


def _data_uri(bgr) -> str:
    import base64

    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode() if ok else ""


def _face_crop(bgr, box, size: int):
    x, y, w, h = box
    m = int(0.15 * max(w, h))
    H, W = bgr.shape[:2]
    crop = bgr[max(0, y - m):min(H, y + h + m), max(0, x - m):min(W, x + w + m)]
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA) if crop.size else bgr[:1, :1]


class _lower_thread_priority:
    """Run a block at a higher nice value (this thread only, Linux), so the capture loop
    wins the CPU over upload analysis; restored afterwards where the OS allows it."""

    NICE = 10

    def __enter__(self):
        self.tid, self.old = threading.get_native_id(), None
        try:
            self.old = os.getpriority(os.PRIO_PROCESS, self.tid)
            os.setpriority(os.PRIO_PROCESS, self.tid, min(19, self.old + self.NICE))
        except (OSError, AttributeError):
            self.old = None

    def __exit__(self, *exc):
        if self.old is not None:
            try:
                os.setpriority(os.PRIO_PROCESS, self.tid, self.old)
            except OSError:  # an unprivileged service cannot lower it again: this worker stays polite
                pass
        return False


def _thumbnail(bgr, width: int):
    h, w = bgr.shape[:2]
    if w <= width:
        return bgr.copy()
    return cv2.resize(bgr, (width, int(h * width / w)), interpolation=cv2.INTER_AREA)


def _scale_faces(faces: list[dict], from_w: int, to_w: int) -> list[dict]:
    s = to_w / from_w
    return [{**f, "box": [int(v * s) for v in f["box"]]} for f in faces]


class Server:
    """cheroot's threaded WSGI server in a background thread (HTTPS when configured)."""

    def __init__(self, app, host: str, port: int, threads: int = 24, tls_cert: str = "", tls_key: str = ""):
        from cheroot import wsgi

        self.httpd = wsgi.Server((host, port), app, numthreads=threads, timeout=10, shutdown_timeout=2)
        if tls_cert:
            from cheroot.ssl.builtin import BuiltinSSLAdapter

            self.httpd.ssl_adapter = BuiltinSSLAdapter(tls_cert, tls_key)
        self.thread: threading.Thread | None = None

    def start(self) -> "Server":
        self.httpd.prepare()  # binds now, so a busy port fails here with a clear error
        self.thread = threading.Thread(target=self.httpd.serve, name="http", daemon=True)
        self.thread.start()
        return self

    @property
    def port(self) -> int:
        return self.httpd.bind_addr[1]

    def stop(self) -> None:
        self.httpd.stop()
        if self.thread:
            self.thread.join(5)
