// The live page: a timeline chart of the last minutes, drawn as SVG from /api/timeline
// (no libraries; CSP allows only scripts from /static). The chart is drawn at the width
// it is shown at, one SVG unit a CSS pixel, so its text stays readable on a phone. The
// current state above it is state.js's.
(function () {
  "use strict";
  const SVGNS = "http://www.w3.org/2000/svg";
  const MINUTES = 10;
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

  let offset = null;  // the device's UTC offset (s), from /api/timeline: times are the device's, as in its log

  function fmt(t) {
    if (offset === null) {
      const d = new Date(t * 1000);
      return d.getHours().toString().padStart(2, "0") + ":" + d.getMinutes().toString().padStart(2, "0");
    }
    const d = new Date((t + offset) * 1000);
    return d.getUTCHours().toString().padStart(2, "0") + ":" + d.getUTCMinutes().toString().padStart(2, "0");
  }

  function groupClass(g) {  // the group's colour, from app.css
    return "g-" + g.replace(/ /g, "-").toLowerCase();
  }

  function span(seconds) {
    return seconds < 60 ? Math.round(seconds) + " s" : Math.round(seconds / 60) + " min";
  }

  // the chart for a screen reader (it is colour and position only): the time in each level, the latest change
  function inWords(data) {
    const seconds = {}, pts = data.points;
    for (let i = 0; i < pts.length; i++) {
      const t0 = Math.max(pts[i].t, data.from), t1 = i + 1 < pts.length ? pts[i + 1].t : data.now;
      if (t1 > t0) seconds[pts[i].level] = (seconds[pts[i].level] || 0) + t1 - t0;
    }
    const levels = Object.keys(seconds).sort(function (a, b) { return seconds[b] - seconds[a]; });
    // a student's chart begins at their log-in (the desk is shared): said, as the line drawn there shows it
    const own = typeof data.own_from === "number" && data.own_from > data.from;
    const heading = own ? "Since you logged in at " + fmt(data.own_from) : "Last " + MINUTES + " minutes";
    if (!levels.length) return heading + ": no state logged yet";
    const last = pts[pts.length - 1];
    return heading + ": " + levels.map(function (l) { return l + " " + span(seconds[l]); }).join(", ") +
      ". Latest change: " + last.level + " at " + fmt(Math.max(last.t, data.from)) +
      (data.zone ? " (the device's time, " + data.zone + ")" : "") + ".";
  }

  function draw(data, labelWidth) {
    const GROUPS = data.groups;  // the rows, in the device's order
    if (typeof data.utc_offset_s === "number") offset = data.utc_offset_s;
    const W = Math.max(280, Math.round(chartEl.clientWidth || 600)), H = 200, top = 8, bottom = 24;
    const left = labelWidth || 124, right = 22;
    const rowH = (H - top - bottom) / GROUPS.length;
    const names = [];
    const x = (t) => left + (W - left - right) * (t - data.from) / (data.now - data.from);
    const svg = el("svg", { viewBox: "0 0 " + W + " " + H, width: W, height: H, "aria-hidden": "true", id: "timeline-svg" });
    GROUPS.forEach(function (g, i) {
      const y = top + i * rowH;
      svg.appendChild(el("line", { x1: left, x2: W - right, y1: y + rowH / 2, y2: y + rowH / 2, stroke: "#eef0f4" }));
      names.push(svg.appendChild(el("text", { x: left - 6, y: y + rowH / 2 + 4, "text-anchor": "end", "font-size": 13, fill: "#5b6576" }, g)));
    });
    const step = W < 480 ? 5 : 2;  // fewer time labels where they would collide
    for (let m = 0; m <= MINUTES; m += step) {
      const t = data.now - m * 60;
      svg.appendChild(el("text", { x: x(t), y: H - 6, "text-anchor": m === 0 ? "end" : "middle", "font-size": 12, fill: "#5b6576" },
                         m === 0 ? "now" : fmt(t)));
    }
    if (typeof data.own_from === "number" && data.own_from > data.from) {  // where a student's own chart begins
      const at = x(data.own_from);
      const mark = el("line", { x1: at, x2: at, y1: top, y2: H - bottom, stroke: "#5b6576", "stroke-dasharray": "4 3", id: "own-from" });
      mark.appendChild(el("title", {}, "you logged in at " + fmt(data.own_from)));
      svg.appendChild(mark);
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
    chartEl.setAttribute("aria-label", inWords(data));
    // the row names in this browser's font: widen their column once if one would be cut off
    const need = Math.ceil(Math.max.apply(null, names.map(function (t) { return t.getComputedTextLength(); }))) + 10;
    if (!labelWidth && need > left) return draw(data, need);
    chartEl.dataset.segments = String(segments);
    emptyEl.hidden = segments > 0;
  }

  let latest = null;
  async function pollTimeline() {
    try {
      const r = await fetch("/api/timeline?minutes=" + MINUTES, { credentials: "same-origin" });
      if (r.ok) { latest = await r.json(); draw(latest); }
    } catch (e) { /* retry below */ }
    setTimeout(pollTimeline, 5000);
  }
  window.addEventListener("resize", function () { if (latest) draw(latest); });

  if (stream) {  // none for an account that may not watch (privacy.live_video)
    stream.addEventListener("error", function () {
      note.textContent = "The live view is not available right now (too many viewers, or the camera is off). " +
                         "Reload the page to try again.";
      note.className = "error";
    });
  }

  pollTimeline();
})();
