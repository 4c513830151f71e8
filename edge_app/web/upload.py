"""Photo upload: the upload page with the user's history, and the JSON ``/api/analyze``.

Uploads are validated (size, pixels, format) before decoding, analysed at most
``web.analysis_workers`` at once (default 1) at a lower thread priority, and kept only as
``privacy.keep_uploads`` says.
"""
from __future__ import annotations

import ctypes
import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import CancelledError, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Literal

import bottle
import cv2
from bottle import HTTPResponse, request, response

from edge_app.store import reports
from edge_app.store.accounts import User
from edge_app.vision.stills import ACCEPTED_TEXT, ImageRejected, Limits, decode_photo, scale_boxes
from edge_app.wall_clock import local_time
from edge_app.web.expiring import ExpiringMap
from edge_app.web.guard import Guard, json_error, page_at_most_last, requested_page
from edge_app.web.hardening import FORM_ERRORS, drain_body
from edge_app.web.live import days_kept, kept_for, states_logged
from edge_app.web.previews import annotated, data_uri, face_crop, thumbnail
from edge_app.web.resubmit import Submissions, form_key, new_attempt

log = logging.getLogger(__name__)
DISK_FULL = 507  # Insufficient Storage: the device, not the file, is the problem
BUSY = 503
BUSY_RETRY_S = 5
STOPPING_RETRY_S = 60  # a refusal from a stopping device (``AnalysisPool.STOPPING``): a restart takes about that


def refusal_of(exc: ImageRejected) -> tuple[int, bool]:
    """(HTTP status, whether it is about the file): a full disk or a stopping device is the
    device's state, so no "Accepted: ..." follows it and the file field is not marked."""
    status = exc.args[1] if len(exc.args) > 1 else 400
    return status, status not in (DISK_FULL, BUSY)


def say_when_to_retry(refusal: HTTPResponse, status: int) -> HTTPResponse:
    if status == BUSY:
        refusal.set_header("Retry-After", str(STOPPING_RETRY_S))
    return refusal
BODIES_IN_HAND = 3  # upload bodies of the largest size allowed that may be held at once ...
BODIES_PER_USER = 2  # ... and of them, by one user (small photos: many more at once)
MIN_BODY_BYTES = 64 * 1024  # a tiny upload counts as this much (its parts and headers)
LARGE_BODY_BYTES = 1024 * 1024  # past this, an upload takes one of its user's few turns (UploadBudget)
HISTORY_PAGE = 10  # photos per page of a user's history on /upload (?page=N for older ones)


class UploadBudget:
    """The upload bodies held at once, counted by the bytes that have arrived. Each stays in
    memory about three times (the request body, its multipart part, the bytes analysed)
    until its analysis is done, and only the decoding was one at a time: one student's 24
    uploads of 10 MB at once took the service to 900 MB, past its MemoryMax (600 MB), and
    systemd killed it for everyone. Past the budget, or past one user's share of it (so one
    user's uploads never shut out everyone else's), an upload is answered 503; its sender
    tries again.

    An upload holds what it has sent, not what it declared: counted by declared size, two
    students whose scripts declared 10 MB and sent 1.5 kB a second held the whole budget
    for hours, and everyone's ordinary photos were refused as "busy". A slow sender only
    holds its own turn: one user may have at most ``large_per_user`` uploads over
    ``LARGE_BODY_BYTES`` under way at once, and the next is refused unread (24 such uploads
    read at once, each into its own thread's malloc arena, doubled the service's peak memory
    while the budget refused them one chunk at a time)."""

    def __init__(self, total_bytes: int, per_user_bytes: int, large_per_user: int = BODIES_PER_USER):
        self.total_bytes, self.per_user_bytes, self.large_per_user = total_bytes, per_user_bytes, large_per_user
        self._lock = threading.Lock()
        self._held = 0
        self._by_user: dict[int, int] = {}
        self._large: dict[int, int] = {}

    def in_hand(self, user_id: int | None = None) -> int:
        """Bytes held in all (``user_id`` None), or for that user's uploads."""
        with self._lock:
            return self._held if user_id is None else self._by_user.get(user_id, 0)

    def _take(self, user_id: int, size: int, large: bool = False) -> bool:
        """Hold ``size`` more bytes for ``user_id`` (and, ``large``, one of their turns), or nothing."""
        with self._lock:
            mine = self._by_user.get(user_id, 0)
            if (self._held + size > self.total_bytes or mine + size > self.per_user_bytes
                    or (large and self._large.get(user_id, 0) >= self.large_per_user)):
                return False
            self._held += size
            self._by_user[user_id] = mine + size
            if large:
                self._large[user_id] = self._large.get(user_id, 0) + 1
            return True

    def _give_back(self, user_id: int, size: int, large: bool) -> None:
        with self._lock:
            self._held -= size
            self._by_user[user_id] -= size
            if not self._by_user[user_id]:
                del self._by_user[user_id]
            if large:
                self._large[user_id] -= 1
                if not self._large[user_id]:
                    del self._large[user_id]

    @contextmanager
    def hold(self, user_id: int, declared: int = 0) -> Iterator[Callable[[int], None] | None]:
        """Yields ``charge`` (None: answer ``BUSY``, read nothing: no room even for a small
        upload, or the user's large uploads under way already). The upload holds
        ``MIN_BODY_BYTES`` from the start and every byte past them as it arrives:
        ``charge(n)`` counts ``n`` more, or raises ``UploadBusy``."""
        large = declared > LARGE_BODY_BYTES
        if not self._take(user_id, MIN_BODY_BYTES, large):
            yield None
            return
        held, received = MIN_BODY_BYTES, 0

        def charge(n: int) -> None:
            nonlocal held, received
            received += n
            more = received - held
            if more > 0:
                if not self._take(user_id, more):
                    raise UploadBusy
                held += more

        try:
            yield charge
        finally:
            self._give_back(user_id, held, large)


class UploadBusy(Exception):
    """The budget had no room for the rest of an upload's body (``UploadBudget.hold``)."""


class ChargedInput:
    """A request body that counts each read against the upload budget (``charge``). Once
    refused it reads on uncharged: the refusal drains what it can so its sender reads why."""

    def __init__(self, inner, charge: Callable[[int], None]):
        self.inner, self.charge, self.refused = inner, charge, False

    def _counted(self, data: bytes) -> bytes:
        if not self.refused:
            try:
                self.charge(len(data))
            except UploadBusy:
                self.refused = True
                raise
        return data

    def read(self, size: int = -1) -> bytes:
        return self._counted(self.inner.read(size))

    def readline(self, size: int = -1) -> bytes:
        return self._counted(self.inner.readline(size))

    def __getattr__(self, name):
        return getattr(self.inner, name)


class FreshPictures:
    """The annotated preview and face thumbnails drawn from an uploaded photo itself, handed
    from ``POST /upload`` to the result page it redirects to (post/redirect/get: the answer
    to the POST was the result, and Back to it made Chrome ask to resend the form). Drawn from
    the photo, not from what was kept: with ``keep_uploads = none`` nothing is kept to draw
    them from, and a kept thumbnail is coarser. Taken by the first showing only, within
    ``keep_s``, at most ``most`` at once, by the user who sent it; a reload shows the stored result."""

    def __init__(self, keep_s: float = 60.0, most: int = 8, clock: Callable[[], float] = time.monotonic):
        # a result page never asked for (a closed tab) must not keep a student's photo in memory
        # until eight more uploads push it out: with keep_uploads = none no copy outlives keep_s
        self._held: ExpiringMap[tuple[int, int], tuple[str, list[str], str]] = ExpiringMap(keep_s, most, clock)

    def put(self, user_id: int, upload_id: int, preview: str, thumbs: list[str], unsaved: str = "") -> None:
        """``unsaved``: why the photo that was to be kept could not be written (else ""),
        for this first showing to say so instead of blaming the privacy setting."""
        self._held.put((user_id, upload_id), (preview, thumbs, unsaved))

    def take(self, user_id: int, upload_id: int) -> tuple[str, list[str], str] | None:
        """(preview, thumbs, unsaved) for this user's upload, once; None when taken, expired or not theirs."""
        return self._held.pop((user_id, upload_id))

    def __len__(self) -> int:
        return len(self._held)


class AnalysisPool:
    """The threads uploads are decoded and analysed on, never the web workers: at most
    ``workers`` at once, and their memory comes from the same few malloc arenas each time
    (24 web threads each decoding once grew 24 arenas: 2.7 GB). ``close`` waits for the
    analysis in hand, so the appliance's stop closes the store after its last write, not
    under it (the upload's row was lost with a closed-database error); the next upload
    after a restart starts the threads again."""

    STOPPING = ("the device is stopping, so this photo was not analysed or stored: send it again in a minute", 503)

    def __init__(self, workers: int):
        self.workers = workers
        self._lock = threading.Lock()
        self._threads: ThreadPoolExecutor | None = None
        self._stopping = False

    def run(self, task: Callable, *args):
        """``task(*args)`` on an analysis thread; its result, or its exception raised here."""
        with self._lock:
            if self._stopping:
                raise ImageRejected(*self.STOPPING)
            if self._threads is None:
                self._threads = ThreadPoolExecutor(self.workers, thread_name_prefix="upload-analysis",
                                                   initializer=_lower_thread_priority)
            future = self._threads.submit(_analyzed_and_trimmed, task, *args)
        try:
            return future.result()
        except CancelledError:  # still waiting its turn when the device stopped: said, not a traceback
            raise ImageRejected(*self.STOPPING) from None

    def refuse_waiting(self) -> None:
        """The stop's first step, while the web server still answers: uploads waiting their turn,
        and any sent now, are told the device is stopping (after the server's stop their
        connections were already shut, and the students saw a dropped connection)."""
        with self._lock:
            self._stopping = True
            threads = self._threads
        if threads is not None:
            threads.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        """Let the analysis in hand finish, drop those still waiting, end the threads; a start
        after this one's stop starts them again."""
        with self._lock:
            threads, self._threads = self._threads, None
        if threads is not None:
            threads.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            self._stopping = False


def install(app: bottle.Bottle, ctx, guard: Guard, limits: Limits) -> None:
    page = guard.page
    analysis = app.config["engage.analysis"] = AnalysisPool(ctx.cfg.web.analysis_workers)
    # a reloaded result page gets the first result, not a second copy (after a restart too: the
    # uploads table keeps each upload's form key)
    submissions = Submissions(recorded=lambda user_id, key: reports.upload_of_form(ctx.store, user_id, key))
    largest = limits.max_bytes + 64 * 1024  # the largest body oversized() lets through
    budget = app.config["engage.upload_budget"] = UploadBudget(BODIES_IN_HAND * largest, BODIES_PER_USER * largest)
    fresh = FreshPictures()

    def busy() -> str:
        """The refusal of an upload past the budget; its body is read and dropped (not
        kept), so the browser shows the answer rather than a reset connection."""
        drain_body(limits.max_bytes + 64 * 1024)
        return (f"the device is busy with other photos just now (it holds {BODIES_IN_HAND} of the largest at once, "
                f"{BODIES_PER_USER} of them one user's): try again in {BUSY_RETRY_S} seconds")

    def analyze_upload(user: User, sent: tuple[bytes, str | None] | None = None,
                       form: str | None = None) -> tuple[dict, int]:
        """At most ``web.analysis_workers`` uploads at once (default 1): the others wait their turn, so a
        burst of uploads never starves the live capture loop of CPU. ``sent``: the file's
        bytes and name when the caller has read them already (``_read_upload``); ``form``:
        the sending form's ``resubmit.form_key``, stored with the upload."""
        data, raw_name = sent or _read_upload()  # the whole body first: a slow sender must not hold the slot
        free_mb, floor = ctx.store.free_mb(), ctx.cfg.store.min_free_mb
        if free_mb < floor and user.is_admin:
            raise ImageRejected(f"the device's disk is nearly full ({free_mb:.0f} MB free, below store.min_free_mb = "
                                f"{floor:g}): nothing was analysed or stored. Free space by deleting old data "
                                "(Users page) or lowering store.retention_days", DISK_FULL)
        if free_mb < floor:  # a student can do nothing about it: who can
            raise ImageRejected("the device's disk is nearly full: nothing was analysed or stored. Tell your teacher "
                                "or the school's technician; photos can be analysed again once space is freed", DISK_FULL)
        return analysis.run(_analyze_upload, user, data, raw_name, form)

    def oversized() -> str | None:
        """Why this body is refused unread, or None. Ask before the CSRF check: the token is
        read from the form, and reading the form reads the whole body, as large as declared,
        into a temporary file (a student's 300 MB went to /tmp in a second; a full disk stops
        the database). The start of the body is drained so the client reads the answer."""
        if request.content_length <= limits.max_bytes + 64 * 1024:
            return None
        drain_body(limits.max_bytes + 64 * 1024)  # a photo a little too large is read to the end: its sender reads why
        return (f"the upload is {request.content_length / 1e6:.1f} MB; "
                f"the limit is {limits.max_bytes / 1048576:.0f} MB")

    def _read_upload() -> tuple[bytes, str | None]:
        """The bytes and client file name of the multipart field ``image``, or ``ImageRejected``."""
        try:
            fields = request.files.getall("image")
        except FORM_ERRORS as exc:  # a malformed multipart body (bottle decodes text parts)
            raise ImageRejected(f"the upload form could not be read ({type(exc).__name__}): send the image "
                                "as a file in the multipart field 'image'") from None
        if len(fields) > 1:  # bottle keeps the last: which photo was analysed depended on the order sent
            raise ImageRejected(f"the form sends {len(fields)} files in the field 'image': send one photo per upload")
        field = fields[0] if fields else None
        if field is None or not hasattr(field, "file"):
            raise ImageRejected(f"no file in the form field 'image': choose a {ACCEPTED_TEXT} file")
        return field.file.read(limits.max_bytes + 1), field.raw_filename

    def _analyze_upload(user: User, data: bytes, raw_name: str | None, form: str | None) -> tuple[dict, int]:
        """Decode and analyse an upload and store its results; returns (result, upload id)."""
        bgr, (width, height) = decode_photo(data, limits)
        found = ctx.analyzer.analyze(bgr)  # boxes in the analysed copy's pixels (thumbnails are cut from it)
        faces = scale_boxes(found, bgr.shape[1], width)  # ... reported and stored in the photo's own
        name = safe_filename(raw_name)
        try:
            upload_id = ctx.store.add_upload(user.id, name, width, height, faces, form_key=form)
        except sqlite3.OperationalError as exc:  # SQLITE_FULL within the threshold's margin, or locked
            log.warning("upload not stored: %s", exc)
            raise ImageRejected(f"the results could not be stored ({exc}): the device's disk may be full. "
                                "Nothing was kept; try again once an admin has freed space", DISK_FULL) from None
        keep, unsaved = ctx.cfg.privacy.keep_uploads, ""
        if keep != "none":
            image = bgr if keep == "full" else thumbnail(bgr, 320)
            ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
            relative = f"uploads/{upload_id}.jpg"
            try:
                if not ok:
                    raise OSError("the photo could not be encoded as JPEG")
                ctx.store.write_image(relative, buf.tobytes())
                if not ctx.store.set_upload_image(upload_id, relative):
                    # deleted while it was analysed ("Delete all my photos", an admin's Delete data): its
                    # image stayed, named by no row, beyond every later delete and retention until a restart
                    ctx.store.remove_image(relative)
                    log.info("upload %d was deleted while it was stored: its image is not kept", upload_id)
            except (OSError, sqlite3.Error) as exc:  # never an image that no row points to
                # said on the result page too: "not kept (privacy setting)" hid a full disk from the admin
                log.warning("upload %d: its image was not saved (%s), only its results: keep_uploads = %s; "
                            "free space on %s or make its images folder writable", upload_id, exc, keep,
                            ctx.store.data_dir)
                ctx.store.remove_image(relative)
                unsaved = str(exc) or type(exc).__name__
        thumbs = [data_uri(face_crop(bgr, f["box"], 96)) for f in found]
        return {"faces": faces, "width": width, "height": height,
                "preview": data_uri(annotated(bgr, found, bgr.shape[1])),
                "thumbs": thumbs, "filename": name, "upload_id": upload_id, "unsaved": unsaved}, upload_id

    def my_uploads(user: User, page_no: int = 1) -> dict:
        """One page of the user's history, newest first, and how many photos there are in
        all: every photo can be reached (and so opened and deleted), not only the latest
        ten, yet a page stays small however many there are."""
        def fetch(n: int) -> tuple[list, int]:
            return (reports.recent_uploads(ctx.store, user.id, HISTORY_PAGE, (n - 1) * HISTORY_PAGE),
                    reports.upload_count(ctx.store, user.id))

        rows, total, page_no, pages = page_at_most_last(fetch, page_no, HISTORY_PAGE)
        first = (page_no - 1) * HISTORY_PAGE + 1
        return {"rows": rows, "total": total, "page": page_no, "pages": pages, "first": first,
                "last": first + len(rows) - 1}

    def upload_limits_text() -> str:
        return (f"Accepted: {ACCEPTED_TEXT} files up to {limits.max_bytes // 1048576} MB "
                f"and {limits.max_pixels // 1_000_000} megapixels.")

    def what_is_kept(user: User) -> str:
        """What this device keeps of a student's photos and of the desk, for how long, and who
        sees it: the upload page said only that nothing is sent anywhere. The clock's words
        once: the admin's where it applies, a student's plain ones at the end."""
        keep = ctx.cfg.privacy.keep_uploads
        photo = {"none": "Only the results of each photo are kept (not the photo)",
                 "thumbnail": "A small copy of each photo (at most 320 pixels wide) and its results are kept",
                 "full": "Each photo (at most 3 megapixels, as analysed) and its results are kept"}[keep]
        admin = user.is_admin
        days = kept_for(ctx) if admin else f"{kept_for(ctx, admin=False)}, then deleted automatically"
        earlier = ""
        if keep == "none":  # turned off since some were kept: those stay until deleted, and "not the photo" denied them
            n = reports.user_data_counts(ctx.store, user.id)["images"]
            if n:
                earlier = (f" {n} of your photos, sent while this device kept photos, still "
                           f"{'has its' if n == 1 else 'have their'} picture kept, until deleted like the rest.")
        return (f"{photo} for {days}: you and this device's admins can see them, and you can delete your "
                f"photos below at any time.{earlier} {states_logged(ctx, too=True, admin=admin, said=True)}")

    def upload_form(user: User, status: int = 200, history_page: int = 1, **values):
        """The upload page (an error or none; a result has a page of its own) with a page of the user's history
        and a fresh form: a new ``attempt`` token each time it is shown."""
        body = page("upload", title="Analyse a photo", accepted=upload_limits_text(), kept=what_is_kept(user),
                    max_bytes=limits.max_bytes, history=my_uploads(user, history_page), attempt=new_attempt(),
                    **{"error": "", **values})
        return body if status == 200 else HTTPResponse(body, status)

    @app.get("/upload")
    def upload_page():
        user = guard.require_user()
        return upload_form(user, history_page=requested_page(), done=guard.flash()["done"])

    @app.post("/upload")
    def upload():
        user = guard.require_user()
        too_large = oversized()  # before the form is parsed (so no CSRF check is possible or needed: nothing is stored)
        if too_large:
            return upload_form(user, 413, error=f"Not analysed: {too_large}.")
        with budget.hold(user.id, request.content_length) as charge:  # before the form is read: that reads the body
            try:
                if charge is None:
                    raise UploadBusy
                request.environ["wsgi.input"] = ChargedInput(request.environ["wsgi.input"], charge)
                return _upload_form_sent(user)
            except UploadBusy:
                refusal = upload_form(user, BUSY, error=f"Not analysed: {busy()}.", about_the_file=False)
                refusal.set_header("Retry-After", str(BUSY_RETRY_S))
                return refusal

    def _upload_form_sent(user: User):
        """``POST /upload`` once its body may be read: the CSRF check, the file, its analysis."""
        guard.check_csrf()

        def refused(exc: ImageRejected) -> HTTPResponse:
            status, about_the_file = refusal_of(exc)
            return say_when_to_retry(upload_form(user, status, error=f"Not analysed: {exc.args[0]}.",
                                                 about_the_file=about_the_file), status)

        try:
            sent = _read_upload()
        except ImageRejected as exc:
            return refused(exc)
        attempt = request.forms.get("attempt") or ""
        # the same form with another file is another photo, not a reload: the token goes with the file's digest
        content = hashlib.blake2b(sent[0], digest_size=16).hexdigest()
        earlier = submissions.claim(user.id, attempt, content)
        if earlier is not None and stored_for(user, earlier) is None:  # deleted since: not stored again
            return upload_form(user, 410, about_the_file=False,
                               error="Not analysed again: this form's photo was deleted after it was analysed (the "
                               "page was reloaded or the form sent again), so nothing was stored again. To analyse "
                               "the photo anew, choose it here.")
        if earlier is not None:  # the same form again (reload, second click): its first result
            guard.flash_redirect(f"/uploads/{earlier}", "This photo was analysed and stored once already (the page "
                                 "was reloaded or the form sent twice): here is its result.")
        try:
            result, upload_id = analyze_upload(user, sent, form_key(attempt, content) if attempt else None)
        except ImageRejected as exc:
            submissions.failed(user.id, attempt, content)
            return refused(exc)
        except BaseException:
            submissions.failed(user.id, attempt, content)
            raise
        submissions.done(user.id, attempt, upload_id, content)
        # post/redirect/get: the result is a page of its own, so Back and reload never resend the form
        fresh.put(user.id, upload_id, result["preview"], result["thumbs"], result["unsaved"])
        raise bottle.redirect(f"/uploads/{upload_id}", 303)

    def stored_for(user: User, upload_id: int) -> dict | None:
        """A stored upload its owner or an admin may see; None for anyone else, as for none."""
        stored = reports.upload_result(ctx.store, upload_id)
        return stored if stored is not None and (user.is_admin or stored["user_id"] == user.id) else None

    def not_found() -> HTTPResponse:
        return HTTPResponse(page("error", title="No such result", message="There is no stored result with this "
                                 "number for you: it may have been deleted, by hand or automatically after "
                                 f"{days_kept(ctx)}."), 404)

    @app.get("/uploads/<upload_id:int>")
    def upload_result(upload_id):
        """A stored upload's result, opened from the upload history or the admin's log:
        its owner and admins only (anyone else gets the same "not found" as for no upload)."""
        user = guard.require_user()
        stored = stored_for(user, upload_id)
        if stored is None:
            return not_found()
        view = result_view(stored)
        pictures = fresh.take(user.id, upload_id)  # just analysed: drawn from the photo itself
        if pictures is not None:
            view["preview"], view["thumbs"], view["unsaved"] = pictures
        # the title names no file: a shared computer's browser history keeps it after the photo is gone
        return page("upload_result", title=f"Photo {upload_id}: results", result=view,
                    done=guard.flash()["done"], from_log=stored["user_id"] != user.id, days_kept=days_kept(ctx))

    def delete_stored(user: User, upload_id: int) -> dict | None:
        """Delete one upload for its owner or an admin (audited when it is someone else's).
        Someone else's goes only with the password typed lately, as the Users page's "Delete
        data" does: an admin's browser left logged in must not be a way to delete a class's
        photos one by one. Call after ``check_csrf``."""
        stored = stored_for(user, upload_id)
        if stored is not None and stored["user_id"] != user.id:
            guard.require_recent_password()
        if stored is None or not ctx.store.delete_upload(upload_id):
            return None
        if stored["user_id"] != user.id:
            when = local_time(stored["created"], "%Y-%m-%d %H:%M")
            # the photo by its number, not its file's name ("anna crying.jpg"): the audit is kept a year, and
            # a deleted photo's name must not outlive it there (the privacy page says the list holds the student's name)
            ctx.store.audit(user.username, "deleted upload", stored["username"] or "",
                            f"photo {upload_id} of {when}, {len(stored['faces'])} face(s)")
        log.info("upload %d deleted by %s", upload_id, user.username)
        return stored

    @app.post("/uploads/<upload_id:int>/delete")
    def delete_upload(upload_id):
        """The owner (a student taking back a photo of themselves) or an admin deletes one
        upload: the row, its faces and the kept image, at once rather than at retention."""
        user = guard.require_user()
        guard.check_csrf()
        stored = delete_stored(user, upload_id)
        if stored is None:
            return not_found()
        mine = stored["user_id"] == user.id
        guard.flash_redirect("/upload" if mine or not user.is_admin else "/admin/log?kind=upload",
                             "The photo and its results were deleted.")

    @app.post("/uploads/delete-all")
    def delete_my_uploads():
        """A user deletes every photo of theirs at once (the history shows ten a page)."""
        user = guard.require_user()
        guard.check_csrf()
        removed = ctx.store.delete_user_data(user.id)
        log.info("%d upload(s) deleted by their owner %s", removed, user.username)
        guard.flash_redirect("/upload", "All your photos and their results were deleted.")

    @app.delete("/api/uploads/<upload_id:int>")
    def api_delete_upload(upload_id):
        user = guard.require_user()
        guard.check_csrf()
        if delete_stored(user, upload_id) is None:
            return json_error(404, f"there is no upload {upload_id} for you: it may have been deleted or removed by "
                                   "the retention period")
        response.content_type = "application/json"
        return json.dumps({"deleted": upload_id})

    def result_view(stored: dict) -> dict:
        """What the results partial shows for a stored upload: the kept image (thumbnail or
        full) annotated and cut into face thumbnails, or no picture when none was kept."""
        preview, thumbs = "", None
        if stored["image_path"]:
            try:
                kept = cv2.imread(str(ctx.store.image_file(stored["image_path"])), cv2.IMREAD_COLOR)
            except ValueError:
                kept = None
            if kept is not None:
                faces = scale_boxes(stored["faces"], stored["width"], kept.shape[1])
                thumbs = [data_uri(face_crop(kept, f["box"], 96)) for f in faces]
                # at the first result page's size, not the kept thumbnail's: labels beside their faces
                preview = data_uri(annotated(kept, stored["faces"], stored["width"]))
        # the zone named always: in a sentence there is no column heading to name it, as the tables do
        when = time.strftime("%d %b %Y %H:%M %Z", time.localtime(stored["created"]))
        # not kept while the setting keeps photos: the setting was "none" then, or the write failed
        return {**stored, "preview": preview, "thumbs": thumbs, "when": when, "owner": stored["username"] or "",
                "kept": bool(preview), "keeps_now": ctx.cfg.privacy.keep_uploads != "none"}

    @app.post("/api/analyze")
    def api_analyze():
        user = guard.require_user()
        accepted = (f"Accepted: {ACCEPTED_TEXT} up to {limits.max_bytes // 1048576} MB and "
                    f"{limits.max_pixels // 1_000_000} MP in the multipart field 'image'.")
        too_large = oversized()  # before the token: reading it reads the body
        if too_large:
            return json_error(413, f"{too_large}. {accepted}")
        with budget.hold(user.id, request.content_length) as charge:  # before the token: reading it reads the body
            try:
                if charge is None:
                    raise UploadBusy
                request.environ["wsgi.input"] = ChargedInput(request.environ["wsgi.input"], charge)
                guard.check_csrf()
                result, upload_id = analyze_upload(user)
            except UploadBusy:
                refusal = json_error(BUSY, f"{busy()}.")
                refusal.set_header("Retry-After", str(BUSY_RETRY_S))
                return refusal
            except ImageRejected as exc:
                status, about_the_file = refusal_of(exc)
                return say_when_to_retry(json_error(status, f"{exc.args[0]}." + (f" {accepted}" if about_the_file else "")),
                                         status)
        response.content_type = "application/json"
        return json.dumps({"faces": result["faces"], "width": result["width"], "height": result["height"],
                           "upload_id": upload_id})

    @app.error(413)
    def too_large(err):
        response.content_type = "application/json"
        return json.dumps({"error": f"the upload is larger than {limits.max_bytes // 1048576} MB"})


def safe_filename(raw: str | None) -> str:
    """The last component of a client's file name, with any path (/ or \\) and control
    characters removed: it is only ever shown, never used as a path."""
    name = (raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable() and ch not in '<>:"|?*').strip(" .")
    return name[:120] or "upload"


def _lower_thread_priority() -> None:
    """An analysis thread runs at a higher nice value (Linux: per thread), so the capture
    loop wins the CPU over upload analysis."""
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + ANALYSIS_NICE))
    except (OSError, AttributeError):
        pass


def _analyzed_and_trimmed(analyze, *args):
    """Run one analysis, then hand the freed decode buffers back to the OS (glibc keeps
    freed heap memory otherwise, and the process would stay at its largest upload)."""
    try:
        return analyze(*args)
    finally:
        _malloc_trim()


def _malloc_trim() -> None:
    global _LIBC
    if _LIBC is None:
        try:
            _LIBC = ctypes.CDLL("libc.so.6")
            _LIBC.malloc_trim.argtypes = [ctypes.c_size_t]
        except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
            _LIBC = False
    if _LIBC:
        _LIBC.malloc_trim(0)


_LIBC: ctypes.CDLL | Literal[False] | None = None  # None: not tried yet; False: no glibc
ANALYSIS_NICE = 10
