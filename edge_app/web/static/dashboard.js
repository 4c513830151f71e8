// The dashboard keeps up with the day without a reload: every tile marked data-tile takes
// its text from /api/admin/today (formatted by the device, keyed by the tile's id), and every
// part marked data-piece (the store and clock warnings, the Today bar, the 14-day chart, the
// recent alerts) its HTML, which the device renders with the page's own templates
// (views/dashboard_*.tpl, every stored value escaped there) with a version: a piece is
// replaced only when its version changed, and not while the keyboard focus or a selection
// is in it (the next poll does it). No reload: a page load restarts the session's idle
// timer, and this poll does not. Once the device's day is another than the page's
// (midnight has passed), or its zone (the clocks changed), the page does reload.
// The "Now" tile is state.js's, every second.
(function () {
  "use strict";
  const EVERY_MS = 10000;
  // A piece whose version leaves its figures out (the full disk's warning: a role="alert" swapped in
  // for each new "MB free" was read out at every poll) has them, marked data-figure, outside that
  // alert: they follow here in place, the warning itself unswapped.
  function figures(box, html) {
    if (!box.querySelector("[data-figure]")) return;
    const fresh = document.createElement("template");
    fresh.innerHTML = html;
    fresh.content.querySelectorAll("[data-figure]").forEach(function (f) {
      const here = box.querySelector('[data-figure="' + f.dataset.figure + '"]');
      if (here && here.textContent !== f.textContent) here.textContent = f.textContent;
    });
  }
  function swapPieces(pieces) {
    if (!pieces) return;
    const sel = window.getSelection ? window.getSelection() : null;
    document.querySelectorAll("[data-piece]").forEach(function (box) {
      const piece = pieces[box.dataset.piece];
      if (!piece || typeof piece.html !== "string") return;
      if (piece.version === box.dataset.version) { figures(box, piece.html); return; }
      if (box.contains(document.activeElement)) return;  // under the keyboard: not now
      if (sel && !sel.isCollapsed && box.contains(sel.anchorNode)) return;  // being selected (to copy): not now
      const open = Array.from(box.querySelectorAll("details[open][id]"), function (d) { return d.id; });
      box.innerHTML = piece.html;  // the device's own template output, escaped there
      open.forEach(function (id) {  // an open table stays open
        const d = document.getElementById(id);
        if (d && box.contains(d)) d.open = true;
      });
      box.dataset.version = piece.version;
    });
  }
  async function poll() {
    if (document.visibilityState !== "hidden") {
      try {
        // given up unanswered (giveUpAfter: static/net.js): a request Wi-Fi held stopped every later poll
        const r = await fetch("/api/admin/today", { credentials: "same-origin", signal: giveUpAfter(8000) });
        if (r.status === 401) {  // the session ended (this poll does not keep it alive): the page again,
          window.location.replace(window.location.pathname + window.location.search);  // which says so
          return;
        }
        if (r.ok) {
          const tiles = await r.json();
          const shown = document.getElementById("today-tiles");
          // a new day, or the clocks changed (its headings name the zone the page was drawn in): drawn again
          if (shown && ((tiles.day !== undefined && String(tiles.day) !== shown.dataset.day) ||
                        (tiles.zone !== undefined && tiles.zone !== shown.dataset.zone))) {
            window.location.reload();
            return;
          }
          document.querySelectorAll("[data-tile]").forEach(function (el) {
            if (tiles[el.id] !== undefined && el.textContent !== tiles[el.id]) el.textContent = tiles[el.id];
          });
          swapPieces(tiles.pieces);
        }
      } catch (e) { /* the device may be restarting: try again */ }
    }
    setTimeout(poll, EVERY_MS);
  }
  setTimeout(poll, EVERY_MS);
})();
