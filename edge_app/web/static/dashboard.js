// The dashboard's "Today" tiles keep up with the day without a reload: every tile marked
// data-tile takes its text from /api/admin/today (formatted by the device, keyed by the
// tile's id). Once the device's day is another than the page's (midnight has passed), the
// page reloads: its day bar and 14-day chart are drawn once, and would mix two days.
// The "Now" tile is state.js's, every second.
(function () {
  "use strict";
  const EVERY_MS = 10000;
  async function poll() {
    if (document.visibilityState !== "hidden") {
      try {
        const r = await fetch("/api/admin/today", { credentials: "same-origin" });
        if (r.status === 401) {  // the session ended (this poll does not keep it alive): the page again,
          window.location.replace(window.location.pathname + window.location.search);  // which says so
          return;
        }
        if (r.ok) {
          const tiles = await r.json();
          const shown = document.getElementById("today-tiles");
          if (shown && tiles.day !== undefined && String(tiles.day) !== shown.dataset.day) {
            window.location.reload();
            return;
          }
          document.querySelectorAll("[data-tile]").forEach(function (el) {
            if (tiles[el.id] !== undefined && el.textContent !== tiles[el.id]) el.textContent = tiles[el.id];
          });
        }
      } catch (e) { /* the device may be restarting: try again */ }
    }
    setTimeout(poll, EVERY_MS);
  }
  setTimeout(poll, EVERY_MS);
})();
