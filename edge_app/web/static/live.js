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
  // the picture is the page's <template> until here: without JavaScript, an empty <img> showed a broken box
  const streamTemplate = document.getElementById("stream-template");
  const stream = streamTemplate ? streamTemplate.content.firstElementChild.cloneNode(true) : null;
  if (stream) streamTemplate.replaceWith(stream);
  const streamSays = document.getElementById("stream-status");  // what became of the picture (not #stream-note:
  // that is the privacy statement, which an error must not replace)
  const chartSays = document.getElementById("timeline-stale");
  // the page's words for a browser without JavaScript give way to the chart, said as loading until drawn
  chartEl.replaceChildren();
  chartEl.setAttribute("role", "img");
  chartEl.setAttribute("aria-label", "Engagement level over the last minutes: loading");
  let sessionEnded = false;  // a 401: state.js takes the page to the log-in; nothing here asks again

  function el(name, attrs, text) {
    const node = document.createElementNS(SVGNS, name);
    for (const k in attrs) node.setAttribute(k, attrs[k]);
    if (text) node.textContent = text;
    return node;
  }

  // The device's UTC offsets over the chart's span (/api/timeline's "zones", earliest first):
  // times are the device's, as in its log, each in the offset in force then. One offset (the
  // one now) for all put the ten minutes after the clocks changed an hour off: "02:55" on the
  // axis (an hour that never was) where the log has 01:55.
  let zones = null;
  const zoneEl = document.getElementById("timeline-zone");

  function zoneAt(t) {  // the span in force at t (before the first: the first)
    let found = zones[0];
    for (const z of zones) if (z.from <= t) found = z;
    return found;
  }

  function clockOf(t) {  // t as a Date whose UTC fields read the device's clock (its own fields: the browser's)
    return zones ? new Date((t + zoneAt(t).utc_offset_s) * 1000) : new Date(t * 1000);
  }

  function fmt(t) {
    const d = clockOf(t);
    const [h, m] = zones ? [d.getUTCHours(), d.getUTCMinutes()] : [d.getHours(), d.getMinutes()];
    return h.toString().padStart(2, "0") + ":" + m.toString().padStart(2, "0");
  }

  function fmtSeconds(ms) {  // a moment of this page's clock as the device's time of day, to the second
    const d = clockOf(ms / 1000);
    return fmt(ms / 1000) + ":" + (zones ? d.getUTCSeconds() : d.getSeconds()).toString().padStart(2, "0");
  }

  function named(t) {  // fmt, with its zone where that is not the one in force now (the log's way)
    const z = zones && zoneAt(t), now = zones && zones[zones.length - 1];
    return fmt(t) + (z && z.zone !== now.zone ? " " + z.zone : "");
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
    const heading = own ? "Since you logged in at " + named(data.own_from) : "Last " + MINUTES + " minutes";
    if (!levels.length) return heading + ": no state logged yet";
    const last = pts[pts.length - 1], at = Math.max(last.t, data.from);
    return heading + ": " + levels.map(function (l) { return l + " " + span(seconds[l]); }).join(", ") +
      ". Latest change: " + last.level + " at " + fmt(at) + (zones ? " (the device's time, " + zoneAt(at).zone + ")" : "") + ".";
  }

  function draw(data, labelWidth) {
    const GROUPS = data.groups;  // the rows, in the device's order
    if (Array.isArray(data.zones) && data.zones.length) {
      zones = data.zones;
      // the heading's zone was the page's, as loaded: the zones of the span now ("CEST, then CET" across a change)
      const said = "(" + zones.map(function (z) { return z.zone; }).join(", then ") + ")";
      if (zoneEl && zoneEl.textContent !== said) zoneEl.textContent = said;
    }
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
      mark.appendChild(el("title", {}, "you logged in at " + named(data.own_from)));
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
      r.appendChild(el("title", {}, pts[i].level + " from " + named(t0)));
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

  // The chart asks again every 5 s while the tab is shown: a background tab asked the device's
  // database every 5 s for ever, also after the session had ended. When the device stops
  // answering, the chart says since when (its "now" would otherwise stay where it was).
  const TIMELINE_MS = 5000, TIMELINE_STALE_MS = 15000;
  let latest = null, lastTimeline = Date.now(), timelineTimer = null, timelineBusy = false;

  function chartAge() {
    if (!chartSays) return;
    const old = Date.now() - lastTimeline > TIMELINE_STALE_MS;
    const text = old ? "This chart is not up to date: the device last answered at " + fmtSeconds(lastTimeline) +
      ". It is asked again every few seconds." : "";
    if (chartSays.textContent !== text) chartSays.textContent = text;
    chartSays.className = old ? "error" : "";
    chartEl.classList.toggle("stale", old);
  }

  async function pollTimeline() {
    timelineTimer = null;
    if (timelineBusy || sessionEnded) return;
    timelineBusy = true;
    try {
      const r = await fetch("/api/timeline?minutes=" + MINUTES,  // given up unanswered (a held request held every later one)
                            { credentials: "same-origin", signal: giveUpAfter(TIMELINE_MS) });
      if (r.status === 401) { sessionEnded = true; return; }  // state.js shows the log-in page, saying why
      if (r.ok) { latest = await r.json(); lastTimeline = Date.now(); draw(latest); }
    } catch (e) { /* the device may be restarting: asked again below */
    } finally { timelineBusy = false; }
    chartAge();
    scheduleTimeline();
  }

  function scheduleTimeline() {
    if (timelineTimer === null && !sessionEnded && document.visibilityState !== "hidden") {
      timelineTimer = setTimeout(pollTimeline, TIMELINE_MS);
    }
  }
  window.addEventListener("resize", function () { if (latest) draw(latest); });

  // The live picture, read from /live.mjpg by fetch rather than by the <img> itself: an <img>
  // showing an MJPEG stream keeps its last frame and fires no event when the stream ends (the
  // device's loop stalled, the session recheck ended it, a restart), so a frozen picture
  // passed for live beside a state that kept changing. Read here, each frame is seen: without
  // one for STREAM_STALE_MS (the device sends a placeholder every 2 s during a camera fault),
  // or when the stream ends, the picture is marked as stopped, in words, and asked for again
  // with back-off. A 401 (the session ended) or 403 (the picture is not theirs) stops it; a
  // hidden tab lets go of its stream, and so of its viewer slot, until it is shown again.
  const STREAM_STALE_MS = 6000;
  const RETRY_MS = [2000, 4000, 8000, 16000, 30000];
  const MAX_HEADER = 4096;

  function startStream() {
    let controller = null, watchdog = null, retryTimer = null, tries = 0, lastFrame = 0, generation = 0, frames = 0;
    let shownUrl = null;
    let letGoAt = -Infinity;  // when this page let go of its stream (a hidden tab)
    const LET_GO_MS = 6000;  // how long the device may take to notice it (a frame or a placeholder, 2 s apart)
    const spent = [];  // frames' blob URLs replaced, freed once the next has drawn

    function tell(text, kind) {
      if (streamSays.textContent !== text) streamSays.textContent = text;
      streamSays.className = text ? kind || "error" : "";  // an empty live region stays in place, unstyled
      stream.classList.toggle("stale", !!text && frames > 0);
    }

    function stop() {  // the connection and every timer
      generation++;
      if (controller) controller.abort();
      controller = null;
      clearTimeout(watchdog);
      clearTimeout(retryTimer);
      watchdog = retryTimer = null;
    }

    function shows() {
      return lastFrame ? " The picture shows " + fmtSeconds(lastFrame) + ", not now." : "";
    }

    function retry(why) {
      stop();
      if (sessionEnded) { tell("The live picture stopped: your session ended."); return; }
      if (document.visibilityState === "hidden") return;  // asked again when the tab is shown
      const wait = RETRY_MS[Math.min(tries, RETRY_MS.length - 1)];
      tries++;
      tell(why + shows() + " Trying again in " + wait / 1000 + " s.");
      retryTimer = setTimeout(connect, wait);
    }

    function stopped() { retry("The live picture stopped."); }

    function armWatchdog(gen) {
      clearTimeout(watchdog);
      watchdog = setTimeout(function () { if (gen === generation) stopped(); }, STREAM_STALE_MS);
    }

    function show(bytes, gen) {
      if (gen !== generation) return;
      const url = URL.createObjectURL(new Blob([bytes], { type: "image/jpeg" }));
      if (shownUrl) spent.push(shownUrl);
      shownUrl = url;
      stream.src = url;
      frames++;
      stream.dataset.frames = String(frames);
      tries = 0;
      lastFrame = Date.now();
      tell("");
      armWatchdog(gen);
    }
    stream.addEventListener("load", function () { while (spent.length) URL.revokeObjectURL(spent.shift()); });

    function headerEnd(buf) {  // where a part's headers end (CRLF CRLF), or -1
      for (let i = 0; i + 3 < buf.length; i++) {
        if (buf[i] === 13 && buf[i + 1] === 10 && buf[i + 2] === 13 && buf[i + 3] === 10) return i;
      }
      return -1;
    }

    // multipart/x-mixed-replace as the device sends it (runtime/live.py _part): "--frame", the
    // part's headers with its Content-Length, a blank line, the JPEG, CRLF
    async function readParts(reader, gen) {
      const words = new TextDecoder();
      let buf = new Uint8Array(0);
      for (;;) {
        const got = await reader.read();
        if (got.done || gen !== generation) return;
        const joined = new Uint8Array(buf.length + got.value.length);
        joined.set(buf);
        joined.set(got.value, buf.length);
        buf = joined;
        for (;;) {
          const end = headerEnd(buf);
          if (end < 0) {
            if (buf.length > MAX_HEADER) throw new Error("no part header");
            break;
          }
          const length = /content-length:\s*(\d+)/i.exec(words.decode(buf.subarray(0, end)));
          if (!length) throw new Error("a part without its length");
          const start = end + 4, finish = start + Number(length[1]);
          if (buf.length < finish) break;
          show(buf.slice(start, finish), gen);
          buf = buf.slice(finish);
        }
      }
    }

    async function connect() {
      stop();
      const gen = generation;
      controller = new AbortController();
      armWatchdog(gen);  // also for a device that takes the connection and says nothing
      let r;
      try {
        r = await fetch("/live.mjpg", { credentials: "same-origin", cache: "no-store", signal: controller.signal });
      } catch (e) {
        if (gen === generation) retry("The live picture is not available: the device did not answer.");
        return;
      }
      if (gen !== generation) return;
      if (r.status === 401) { sessionEnded = true; retry(""); return; }
      if (!r.ok || !r.body) {
        let why = "";
        try { why = (await r.json()).error || ""; } catch (e) { why = ""; }
        if (gen !== generation) return;
        if (r.status === 403) { stop(); tell("The live picture is not shown to you" + (why ? ": " + why : "") + "."); return; }
        // 503: the viewers' places are taken, or this page's own last stream has not let go of its place yet
        // (the device notices a closed stream at its next frame, 2 s apart while the camera is paused):
        // shown again that soon, the student is not told to close another tab they do not have
        if (Date.now() - letGoAt < LET_GO_MS) {
          stop();
          tell("Reconnecting to the live picture." + shows(), "hint");
          retryTimer = setTimeout(connect, RETRY_MS[0]);
          return;
        }
        retry("The live picture is not available right now" + (why ? " (" + why + ")" : "") + ".");
        return;
      }
      try {
        await readParts(r.body.getReader(), gen);
      } catch (e) { /* cut off, or let go of here (abort) */ }
      if (gen === generation) stopped();
    }

    document.addEventListener("visibilitychange", function () {
      if (document.visibilityState === "hidden") { stop(); letGoAt = Date.now(); return; }
      if (sessionEnded || controller) return;
      tries = 0;
      if (frames) tell("Reconnecting to the live picture." + shows(), "hint");
      connect();
    });
    tell("Connecting to the live picture.", "hint");
    connect();
  }

  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "hidden") {
      clearTimeout(timelineTimer);
      timelineTimer = null;
    } else if (timelineTimer === null) {
      pollTimeline();  // at once: the chart may be minutes old
    }
  });

  if (stream && streamSays) startStream();  // none for an account that may not watch (privacy.live_video)
  pollTimeline();
})();
