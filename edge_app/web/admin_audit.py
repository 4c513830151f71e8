"""The audit log page: what admins changed on this device (who, what, when), newest
first. Written by the routes that change things (``Store.audit``); read-only here."""
from __future__ import annotations

import bottle
from bottle import request

from edge_app.store import reports
from edge_app.web.guard import Guard

PAGE_SIZE = 50


def install(app: bottle.Bottle, ctx, guard: Guard) -> None:
    @app.get("/admin/audit")
    def audit_page():
        guard.require_user(admin=True)
        try:
            page_no = min(max(1, int(request.query.get("page", 1))), 1_000_000)
        except (ValueError, OverflowError):
            page_no = 1
        rows, total = reports.audit_log(ctx.store, page_no, PAGE_SIZE)
        pages = max(1, (total + PAGE_SIZE - 1) // PAGE_SIZE)
        if page_no > pages:  # a link past the last page (rows purged since): the last page, not "No admin has
            page_no = pages  # changed anything yet" with no way back
            rows, total = reports.audit_log(ctx.store, page_no, PAGE_SIZE)
        return guard.page("admin_audit", title="Audit log", rows=rows, total=total, page_no=page_no, pages=pages)
