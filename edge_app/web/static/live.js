// The live page: the current engagement state and a timeline chart of the last minutes,
// drawn as SVG from /api/timeline (no libraries; CSP allows only scripts from /static).
(function () {
  "use strict";
  const SVGNS = "http://www.w3.org/2000/svg";
  const MINUTES = 10;
  const stateEl = document.getElementById("state");
  const chartEl = document.getElementById("timeline");
  const emptyEl = document.getElementById("timeline-empty");
  const stream = document.getElementById("stream");
  const note = document.getElementById("stream-note");

  function el(name, attrs, text) {
    const node = document.createElementNS(SVGNS, name);
    for (const k in attrs) node.setAttribute(k, attrs[k]);
    if (text) node.textContent = text;
    return node;
  }

  function fmt(t) {
    const d = new Date(t * 1000);
    return d.getHours().toString().padStart(2, "0") + ":" + d.getMinutes().toString().padStart(2, "0");
  }

  function groupClass(g) {  // the group's colour, from app.css
    return "g-" + g.replace(/ /g, "-").toLowerCase();
  }

  function draw(data) {
    const GROUPS = data.groups;  // the rows, in the device's order
    const W = 600, H = 200, left = 120, right = 22, top = 8, bottom = 24;
    const rowH = (H - top - bottom) / GROUPS.length;
    const x = (t) => left + (W - left - right) * (t - data.from) / (data.now - data.from);
    const svg = el("svg", { viewBox: "0 0 " + W + " " + H, "aria-hidden": "true", id: "timeline-svg" });
    GROUPS.forEach(function (g, i) {
      const y = top + i * rowH;
      svg.appendChild(el("line", { x1: left, x2: W - right, y1: y + rowH / 2, y2: y + rowH / 2, stroke: "#eef0f4" }));
      svg.appendChild(el("text", { x: left - 6, y: y + rowH / 2 + 4, "text-anchor": "end", "font-size": 11, fill: "#5b6576" }, g));
    });
    for (let m = 0; m <= MINUTES; m += 2) {
      const t = data.now - m * 60;
      svg.appendChild(el("text", { x: x(t), y: H - 6, "text-anchor": "middle", "font-size": 10, fill: "#5b6576" },
                         m === 0 ? "now" : fmt(t)));
    }
    const pts = data.points;
    let segments = 0;
    for (let i = 0; i < pts.length; i++) {
      const t0 = Math.max(pts[i].t, data.from), t1 = i + 1 < pts.length ? pts[i + 1].t : data.now;
      if (t1 <= t0) continue;
      const row = GROUPS.indexOf(pts[i].group);
      if (row < 0) continue;
      const r = el("rect", { x: x(t0), y: top + row * rowH + 3, width: Math.max(1, x(t1) - x(t0)),
                             height: rowH - 6, rx: 3, "class": "seg-rect " + groupClass(pts[i].group) });
      r.appendChild(el("title", {}, pts[i].level + " from " + fmt(t0)));
      svg.appendChild(r);
      segments++;
    }
    chartEl.replaceChildren(svg);
    chartEl.dataset.segments = String(segments);
    emptyEl.hidden = segments > 0;
  }

  async function pollState() {
    try {
      const r = await fetch("/api/state", { credentials: "same-origin" });
      if (r.ok) {
        const s = await r.json();
        stateEl.textContent = s.level || "no camera loop";
        stateEl.dataset.group = s.group || "";
      } else if (r.status === 401) {
        window.location = "/login?next=/live";
        return;
      }
    } catch (e) { /* the device may be restarting: try again */ }
    setTimeout(pollState, 1000);
  }

  async function pollTimeline() {
    try {
      const r = await fetch("/api/timeline?minutes=" + MINUTES, { credentials: "same-origin" });
      if (r.ok) draw(await r.json());
    } catch (e) { /* retry below */ }
    setTimeout(pollTimeline, 5000);
  }

  stream.addEventListener("error", function () {
    note.textContent = "The live view is not available right now (too many viewers, or the camera is off). " +
                       "Reload the page to try again.";
    note.className = "error";
  });

  pollState();
  pollTimeline();
})();
