"""Photo upload: the upload page with the user's history, and the JSON ``/api/analyze``.

Uploads are validated (size, pixels, format) before decoding, analysed one at a time at a
lower thread priority, and kept only as ``privacy.keep_uploads`` says.
"""
from __future__ import annotations

import json
import os
import threading

import bottle
import cv2
from bottle import HTTPResponse, request, response

from edge_app.store import reports
from edge_app.store.accounts import User
from edge_app.vision.stills import ACCEPTED_TEXT, ImageRejected, Limits, decode_image, draw_faces
from edge_app.web.guard import Guard, json_error
from edge_app.web.previews import data_uri, face_crop, scale_faces, thumbnail


def install(app: bottle.Bottle, ctx, guard: Guard, limits: Limits) -> None:
    page = guard.page
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
            image = bgr if keep == "full" else thumbnail(bgr, 320)
            ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
            if ok:
                rel = ctx.store.write_image(f"uploads/{upload_id}.jpg", buf.tobytes())
                ctx.store.set_upload_image(upload_id, rel)
        thumbs = [data_uri(face_crop(bgr, f["box"], 96)) for f in faces]
        annotated = draw_faces(thumbnail(bgr, 960), scale_faces(faces, bgr.shape[1], min(960, bgr.shape[1])), copy=False)
        return {"faces": faces, "width": bgr.shape[1], "height": bgr.shape[0], "preview": data_uri(annotated),
                "thumbs": thumbs, "filename": name, "upload_id": upload_id}, upload_id

    def my_uploads(user: User) -> list:
        return reports.recent_uploads(ctx.store, user.id)

    def upload_limits_text() -> str:
        return (f"Accepted: {ACCEPTED_TEXT} files up to {limits.max_bytes // 1048576} MB "
                f"and {limits.max_pixels // 1_000_000} megapixels.")

    @app.get("/upload")
    def upload_page():
        user = guard.require_user()
        return page("upload", title="Analyse a photo", result=None, error="", accepted=upload_limits_text(),
                    history=my_uploads(user))

    @app.post("/upload")
    def upload():
        user = guard.require_user()
        if request.content_length > limits.max_bytes + 64 * 1024:
            # refused before the form is parsed (so no CSRF check is possible or needed: nothing is stored)
            _drain_body(limits.max_bytes * 4)
            return HTTPResponse(page("upload", title="Analyse a photo", result=None, accepted=upload_limits_text(),
                                     error=f"Not analysed: the upload is {request.content_length / 1e6:.1f} MB; "
                                           f"the limit is {limits.max_bytes / 1048576:.0f} MB.",
                                     history=my_uploads(user)), 413)
        guard.check_csrf()
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
        user = guard.require_user()
        guard.check_same_origin()
        try:
            result, upload_id = analyze_upload(user)
        except ImageRejected as exc:
            status = exc.args[1] if len(exc.args) > 1 else 400
            return json_error(status, f"{exc.args[0]}. Accepted: {ACCEPTED_TEXT} up to {limits.max_bytes // 1048576} MB "
                                      f"and {limits.max_pixels // 1_000_000} MP in the multipart field 'image'.")
        response.content_type = "application/json"
        return json.dumps({"faces": result["faces"], "width": result["width"], "height": result["height"],
                           "upload_id": upload_id})

    @app.error(413)
    def too_large(err):
        response.content_type = "application/json"
        return json.dumps({"error": f"the upload is larger than {limits.max_bytes // 1048576} MB"})


def _drain_body(cap: int) -> None:
    """Read (and drop) an oversized body up to ``cap`` so the client sees our answer, not a reset."""
    stream, left = request.environ["wsgi.input"], min(request.content_length, cap)
    while left > 0:
        chunk = stream.read(min(left, 1 << 20))
        if not chunk:
            break
        left -= len(chunk)


def safe_filename(raw: str | None) -> str:
    """The last component of a client's file name, with any path (/ or \\) and control
    characters removed: it is only ever shown, never used as a path."""
    name = (raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable() and ch not in '<>:"|?*').strip(" .")
    return name[:120] or "upload"


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
