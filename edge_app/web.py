"""The device's web UI and API (Bottle on cheroot's thread pool).

cheroot streams generator responses as they are produced, so an endless MJPEG stream
holds one worker thread and nothing is buffered; the number of viewers is bounded so
the pool always has threads left for pages. Sessions are server-side (see ``auth``).
"""
from __future__ import annotations

import csv
import io
import json
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import bottle
import cv2
from bottle import HTTPError, HTTPResponse, request, response

from edge_app import __version__
from edge_app.analysis import ACCEPTED_TEXT, Analyzer, ImageRejected, Limits, decode_image, draw_faces
from edge_app.auth import Accounts, AuthError, User
from edge_app.pipeline import CaptureLoop, LiveFrame
from edge_app.store import Store

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
        token = request.forms.get("csrf") or request.headers.get("X-CSRF-Token")
        if not found or not token or token != found[1]:
            raise HTTPResponse(page("error", title="Form expired", message="The form was stale: reload the page and try again."), 403)

    def check_same_origin() -> None:
        origin = request.headers.get("Origin")
        if origin and origin.split("://", 1)[-1] != request.headers.get("Host"):
            raise HTTPResponse(json.dumps({"error": "cross-site request refused"}), 403, {"Content-Type": "application/json"})

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
        response.set_header("Referrer-Policy", "no-referrer")
        response.set_header("Content-Security-Policy", "default-src 'self'; img-src 'self' data: blob:; style-src 'self'")

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
        user = ctx.accounts.authenticate(username, password)
        if not user:
            log.info("failed login for %r from %s", username, request.remote_addr)
            return HTTPResponse(page("login", title="Log in", error="Wrong user name or password.", next=nxt), 401)
        token, _ = ctx.accounts.start_session(user)
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict", secure=secure_cookie, path="/")
        return bottle.redirect(nxt)

    @app.post("/api/login")
    def api_login():
        check_same_origin()
        data = request.json if request.json else request.forms
        user = ctx.accounts.authenticate(str(data.get("username", "")), str(data.get("password", "")))
        if not user:
            return json_error(401, "wrong user name or password")
        token, csrf = ctx.accounts.start_session(user)
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict", secure=secure_cookie, path="/")
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

    # ------------------------------------------------------------ upload
    def analyze_upload(user: User) -> tuple[dict, int]:
        """Validate and analyse the multipart field ``image``; returns (result, upload id)."""
        if request.content_length > limits.max_bytes + 64 * 1024:
            raise ImageRejected(f"the upload is {request.content_length / 1e6:.1f} MB; the limit is {limits.max_bytes / 1048576:.0f} MB")
        field = request.files.get("image")
        if field is None:
            raise ImageRejected(f"no file in the form field 'image': choose a {ACCEPTED_TEXT} file")
        data = field.file.read(limits.max_bytes + 1)
        bgr = decode_image(data, limits)
        faces = ctx.analyzer.analyze(bgr)
        name = Path(field.raw_filename or "upload").name[:120] or "upload"
        upload_id = ctx.store.add_upload(user.id, name, bgr.shape[1], bgr.shape[0], faces)
        keep = ctx.cfg["privacy"]["keep_uploads"]
        if keep != "none":
            image = bgr if keep == "full" else _thumbnail(bgr, 320)
            ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
            if ok:
                rel = ctx.store.write_image(f"uploads/{upload_id}.jpg", buf.tobytes())
                ctx.store.execute("UPDATE uploads SET image_path = ? WHERE id = ?", (rel, upload_id))
        annotated = draw_faces(_thumbnail(bgr, 960), _scale_faces(faces, bgr.shape[1], min(960, bgr.shape[1])), copy=False)
        ok, buf = cv2.imencode(".jpg", annotated, [cv2.IMWRITE_JPEG_QUALITY, 85])
        import base64

        preview = "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode() if ok else ""
        return {"faces": faces, "width": bgr.shape[1], "height": bgr.shape[0], "preview": preview}, upload_id

    @app.get("/upload")
    def upload_page():
        require_user()
        return page("upload", title="Analyse a photo", result=None, error="")

    @app.post("/upload")
    def upload():
        user = require_user()
        check_csrf()
        try:
            result, _ = analyze_upload(user)
        except ImageRejected as exc:
            return HTTPResponse(page("upload", title="Analyse a photo", result=None, error=str(exc)), 400)
        return page("upload", title="Analyse a photo", result=result, error="")

    @app.post("/api/analyze")
    def api_analyze():
        user = require_user()
        check_same_origin()
        try:
            result, upload_id = analyze_upload(user)
        except ImageRejected as exc:
            return json_error(400, f"{exc}. Accepted: {ACCEPTED_TEXT} up to {limits.max_bytes // 1048576} MB "
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

    # ------------------------------------------------------------ admin
    @app.get("/admin")
    def admin():
        require_user(admin=True)
        rows = ctx.store.query(
            "SELECT 'live' AS kind, t, level, emotion, confidence, NULL AS username, NULL AS upload_id "
            "FROM state_changes UNION ALL "
            "SELECT 'upload', u.created, f.engagement, f.emotion, f.confidence, us.username, u.id "
            "FROM upload_faces f JOIN uploads u ON u.id = f.upload_id LEFT JOIN users us ON us.id = u.user_id "
            "ORDER BY 2 DESC LIMIT 200")
        return page("admin", title="Log", rows=rows, users=ctx.accounts.list_users(),
                    manifest=ctx.analyzer.classifier.manifest)

    @app.get("/admin/log.csv")
    def admin_csv():
        require_user(admin=True)
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["kind", "time", "level", "emotion", "confidence", "user"])
        for r in ctx.store.query(
                "SELECT 'live', t, level, emotion, confidence, NULL FROM state_changes UNION ALL "
                "SELECT 'upload', u.created, f.engagement, f.emotion, f.confidence, us.username "
                "FROM upload_faces f JOIN uploads u ON u.id = f.upload_id LEFT JOIN users us ON us.id = u.user_id "
                "ORDER BY 2"):
            writer.writerow([r[0], time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r[1])), *r[2:]])
        response.content_type = "text/csv; charset=utf-8"
        response.set_header("Content-Disposition", 'attachment; filename="engage-log.csv"')
        return out.getvalue()

    # ------------------------------------------------------------ health
    @app.get("/healthz")
    def healthz():
        response.content_type = "application/json"
        h = ctx.loop.health if ctx.loop else None
        reasons = []
        if h and h.camera != "ok":
            reasons.append(f"camera {h.camera}: {h.camera_error}".rstrip(": "))
        if h and h.store != "ok":
            reasons.append(f"store {h.store}: {h.store_error}")
        body = {
            "status": "degraded" if reasons else "ok",
            "reasons": reasons,
            "camera": h.camera if h else "off",
            "model": {"sha256": ctx.analyzer.classifier.manifest.sha256,
                      "file": ctx.analyzer.classifier.manifest.model_path.name},
            "fps": round(h.fps, 2) if h else 0.0,
            "frames": h.frames if h else 0,
            "uptime_s": round(time.time() - ctx.started, 1),
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
