"""The admin log: filtered and paged (HTML and JSON), CSV export, and the stored upload
images and alert snapshots the log links to (admins only, never cached)."""
from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from urllib.parse import urlencode

import bottle
from bottle import HTTPResponse, request, response

from edge_app.engagement import GROUPS
from edge_app.store import export, reports
from edge_app.store.reports import LogFilter
from edge_app.web.guard import Guard, json_error, page_at_most_last, requested_page

PAGE_SIZE = 50
BOM = "\ufeff"


def _log_request() -> tuple[LogFilter, int]:
    return LogFilter.from_query(request.query), requested_page()


def date_presets(flt: LogFilter, today: dt.date | None = None) -> list[tuple[str, str]]:
    """(label, link) for the log's date shortcuts, keeping the other filters."""
    today = today or dt.date.today()
    spans = (("Today", today, today), ("Last 7 days", today - dt.timedelta(days=6), today),
             ("Last 30 days", today - dt.timedelta(days=29), today))
    return [(label, "/admin/log?" + urlencode({**flt.params(), "from": start.isoformat(), "to": end.isoformat()}))
            for label, start, end in spans]


def log_csv_body(store, flt: LogFilter) -> Iterator[bytes]:
    """The log's CSV download, sent as it is read (chunked): built whole, ten years' log (220
    MB of CSV) took the service from 250 MB to 2.7 GB, past its MemoryMax, capture loop and
    all. The rows this page shows (state changes and uploads, as filtered) in the format of
    `engage-edge export`: its columns, kinds and times; the minute rows and alerts come with
    the export. It starts with a byte order mark: without it Excel on Windows reads UTF-8 as
    the local code page, and a student's "Müller_Zoë.jpg" showed as "MÃ¼ller_ZoÃ«.jpg" (as
    `engage-edge export --out` does)."""
    rows = reports.log_rows(store, flt)
    try:
        chunks = export.log_csv_chunks(export.log_row("state" if r["kind"] == "live" else "upload", r["t"],
                                                      r["level"], r["grp"], r["emotion"], r["confidence"],
                                                      r["username"], r["filename"]) for r in rows)
        for number, chunk in enumerate(chunks):
            yield (BOM if number == 0 else "").encode() + chunk.encode()
    finally:
        rows.close()  # a download cut short ends its read at once


def install(app: bottle.Bottle, ctx, guard: Guard) -> None:
    def query_log(flt: LogFilter, page_no: int | None):
        return reports.query_log(ctx.store, flt, page_no, PAGE_SIZE)

    @app.get("/admin/log")
    def log_page():
        guard.require_user(admin=True)
        flt, page_no = _log_request()
        try:
            rows, total, page_no, pages = page_at_most_last(lambda n: query_log(flt, n), page_no, PAGE_SIZE)
            error = ""
        except ValueError as exc:
            rows, total, page_no, pages, error = [], 0, 1, 1, f"Filter not applied: {exc}."
        emotions = reports.log_emotions(ctx.store)
        users = [u.username for u in ctx.accounts.list_users()]
        body = guard.page("admin_log", title="Log", rows=rows, total=total, page_no=page_no, pages=pages, flt=flt,
                          query=urlencode(flt.params()), emotions=emotions, users=users, groups=GROUPS, error=error,
                          presets=date_presets(flt), bad_dates=flt.bad_dates(),
                          done=guard.flash()["done"])  # after an upload's deletion
        return HTTPResponse(body, 400) if error else body

    @app.get("/admin/log.csv")
    def log_csv():
        guard.require_user(admin=True)
        flt = LogFilter.from_query(request.query)
        try:
            flt.where()
        except ValueError as exc:
            return HTTPResponse(guard.page("error", title="Bad filter", message=f"No CSV: {exc}."), 400)
        response.content_type = "text/csv; charset=utf-8"
        stamp = time.strftime("%Y%m%d-%H%M")
        response.set_header("Content-Disposition", f'attachment; filename="engage-log-{stamp}.csv"')
        return log_csv_body(ctx.store, flt)

    @app.get("/api/admin/log")
    def api_log():
        guard.require_user(admin=True)
        flt, page_no = _log_request()
        try:
            rows, total = query_log(flt, page_no)
        except ValueError as exc:
            return json_error(400, str(exc))
        response.content_type = "application/json"
        keys = ("kind", "t", "username", "level", "grp", "emotion", "confidence", "upload_id", "filename")
        return json.dumps({"total": total, "page": page_no, "page_size": PAGE_SIZE,
                           "rows": [{k: r[k] for k in keys} for r in rows]})

    def stored_jpeg(relative: str | None, title: str, message: str) -> HTTPResponse:
        """The JPEG kept at ``relative`` (under the store's image folder), or 404: a page
        saying ``message`` when none is stored, "refused" for a path outside that folder.
        Never cached: the app's after_request hook sends ``Cache-Control: no-store``."""
        if not relative:
            return HTTPResponse(guard.page("error", title=title, message=message), 404)
        try:
            path = ctx.store.image_file(relative)
        except ValueError:
            return HTTPResponse("refused", 404)
        return bottle.static_file(path.name, root=str(path.parent), mimetype="image/jpeg")

    @app.get("/admin/image/<upload_id:int>")
    def stored_image(upload_id):
        guard.require_user(admin=True)
        return stored_jpeg(reports.upload_image_path(ctx.store, upload_id), "No image",
                           "No image is stored for this upload (the privacy setting may keep none, or it was purged).")

    @app.get("/admin/alert/<alert_id:int>.jpg")
    def alert_snapshot(alert_id):
        guard.require_user(admin=True)
        return stored_jpeg(reports.alert_snapshot_path(ctx.store, alert_id), "No snapshot",
                           "No snapshot is stored for this alert.")
