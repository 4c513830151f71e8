// Tables on a phone: app.css turns each row of a .table-wrap table into a card below
// 600 px, so no column (a user's "Manage") ends up off-screen; this labels each cell
// with its column's heading, which the card shows in front of the value. Tables with row
// headers (a confusion matrix, per-class figures) are grids meant to be read across and
// down: they stay tables, and scroll sideways inside their wrapper, not the page.
(function () {
  "use strict";
  document.querySelectorAll(".table-wrap table").forEach(function (table) {
    if (table.querySelector("tbody th[scope=row]")) return;
    const heads = Array.from(table.querySelectorAll("thead th")).map(function (th) { return th.textContent.trim(); });
    table.querySelectorAll("tbody tr").forEach(function (tr) {
      Array.from(tr.children).forEach(function (cell, i) {
        if (heads[i] && !cell.dataset.label) cell.dataset.label = heads[i];
      });
    });
    table.classList.add("reflow");
    const wrap = table.closest(".table-wrap");  // its cards need no scroll bar; an unreflowed grid keeps its own
    if (wrap) wrap.classList.add("reflows");
  });
})();
