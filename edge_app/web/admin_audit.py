"""The audit log page: what admins changed on this device (who, what, when), newest
first. Written by the routes that change things (``Store.audit``); read-only here."""
from __future__ import annotations

import bottle

from edge_app.store import reports
from edge_app.web.guard import Guard, page_at_most_last, requested_page

PAGE_SIZE = 50


def install(app: bottle.Bottle, ctx, guard: Guard) -> None:
    @app.get("/admin/audit")
    def audit_page():
        guard.require_user(admin=True)
        rows, _total, page_no, pages = page_at_most_last(lambda n: reports.audit_log(ctx.store, n, PAGE_SIZE),
                                                         requested_page(), PAGE_SIZE)
        return guard.page("admin_audit", title="Audit log", rows=rows, page_no=page_no, pages=pages)
