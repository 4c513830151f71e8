"""The alerts page: every buzzer alert kept, with the camera frame stored for it when
``privacy.snapshot_on_alert`` is on, and deleting those frames, one or all. A stored frame
is a whole, unannotated picture of a minor: an admin must be able to find each one (the
dashboard shows only the last five) and remove it without waiting for retention, also
after turning the setting off. Deleting is audited; the alerts themselves stay (counts)."""
from __future__ import annotations

import logging

import bottle
from bottle import request

from edge_app.store import reports
from edge_app.web.guard import Guard, page_at_most_last, requested_page

log = logging.getLogger(__name__)
PAGE_SIZE = 50


def install(app: bottle.Bottle, ctx, guard: Guard) -> None:
    @app.get("/admin/alerts")
    def alerts_page():
        guard.require_user(admin=True)
        rows, _total, page_no, pages = page_at_most_last(lambda n: reports.alerts_page(ctx.store, n, PAGE_SIZE),
                                                         requested_page(), PAGE_SIZE)
        outcome = guard.flash()
        return guard.page("admin_alerts", title="Alerts", rows=rows, page_no=page_no, pages=pages,
                          stored=reports.stored_snapshots(ctx.store), storing=ctx.cfg.privacy.snapshot_on_alert,
                          retention_days=ctx.cfg.store.retention_days, done=outcome["done"], error=outcome["error"])

    @app.post("/admin/alerts/delete-snapshots")
    def delete_snapshots():
        """``alert``: one alert's frame; absent: every stored frame."""
        me = guard.require_user(admin=True)
        guard.check_csrf()
        guard.require_recent_password()  # as every admin change: not a browser left logged in
        which = request.forms.get("alert", "")
        if which and not (which.isascii() and which.isdigit() and len(which) <= 18):  # an id SQLite can hold
            guard.flash_redirect("/admin/alerts", f"No such alert: {which[:20]!r}.", error=True)
        alert_id = int(which) if which else None
        removed = ctx.store.delete_alert_snapshots(alert_id)
        what = f"the snapshot of alert #{alert_id}" if alert_id is not None else "every alert snapshot"
        if removed:
            log.info("admin %s deleted %d alert snapshot(s)", me.username, removed)
            ctx.store.audit(me.username, "deleted alert snapshots", "" if alert_id is None else f"#{alert_id}",
                            f"{removed} frame(s)")
            message = f"Deleted {what} ({removed} frame{'s' if removed != 1 else ''})."
        else:
            message = f"Nothing to delete: {what} is not stored (deleted already, or purged by retention)."
        guard.flash_redirect("/admin/alerts" + (f"?page={request.forms.get('page')}"
                                                if request.forms.get("page", "").isdigit() else ""), message)
