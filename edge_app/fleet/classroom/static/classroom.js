// The classroom page: desks arrive over Server-Sent Events (only the changed ones after
// the first event) and are re-drawn here; durations tick every second.
"use strict";
(function () {
  const ORDER = ["Not engaged", "Distracted", "Absent", "Paused", "Present", "Partially engaged", "Engaged"];
  const ALERTING = ["Not engaged", "Distracted"];
  const GROUPS = ["Engaged", "Partially engaged", "Not engaged", "Present", "Distracted", "Absent"];  // a minute row's seconds
  // an online desk with no state yet (just started): its tile says so in words, as its count does (levels.WAITING)
  const WAITING = "Waiting for a first reading";
  const desks = new Map();
  let counts = {};
  let classRecent = null;  // the online desks' last ten minutes together
  let offset = 0; // server clock minus ours, seconds
  let longAbsent = 300;  // seconds "Absent" after which a desk is an empty seat, ordered after the working ones
  let broker = null;  // the classroom service's link to the broker: {connected, error}; null before the first event
  const $ = (id) => document.getElementById(id);
  // the release this script came with (app.BUILD): a stream from another names its own
  const BUILD = document.currentScript ? document.currentScript.dataset.build : "";
  const threshold = $("threshold");
  const thresholdNote = $("threshold-note");
  // the alert threshold in minutes, 0 to 120, with a decimal point or comma ("1,5" where that is how people
  // write it: a number box on an English page read it as 15, silently). A box left empty or wrong keeps the
  // last good value, never none at all ("No desk right now" over a class not engaged for ten minutes), and
  // says so beside the box, tied to it for a screen reader (aria-describedby, aria-invalid).
  const MAX_MIN = 120;
  const minutes = (text) => {
    const t = String(text ?? "").trim().replace(",", ".");
    const n = /^(\d+\.?\d*|\.\d+)$/.test(t) ? Number(t) : NaN;
    return Number.isFinite(n) && n <= MAX_MIN ? n : null;
  };
  let limitMin = minutes(localStorage.getItem("ee-alert-min")) ?? minutes(threshold.value) ?? 2;
  threshold.value = String(limitMin);
  threshold.addEventListener("change", () => {
    const n = minutes(threshold.value);
    const wrong = n === null;
    threshold.setAttribute("aria-invalid", String(wrong));
    thresholdNote.hidden = !wrong;
    const typed = threshold.value.trim();
    const rule = "a number of minutes from 0 to " + MAX_MIN + " (like 1.5)";
    thresholdNote.textContent = !wrong ? "" : (typed ? "\u201c" + typed.slice(0, 20) + "\u201d is not " + rule :
      "Type " + rule) + ": the alerts still come after " + limitMin + " min.";
    if (!wrong) localStorage.setItem("ee-alert-min", String(limitMin = n));
    render();
  });

  // a desk not heard yet that the broker's stored copies say was online: this service has just started (levels.CHECKING)
  const CHECKING = "Checking";
  const KNOWN = new Set([...ORDER, WAITING, CHECKING, "Offline"]);
  // a level this page does not know (a newer desk's) has the neutral "other" look
  const cls = (level) => "lvl-" + (KNOWN.has(level) ? level.toLowerCase().replace(/ /g, "-") : "other");
  // ... and is said to be unknown, its words quoted and cut short: a desk's account may send any words as its
  // level ("Fire alarm evacuate now"), which must not read as a level or an announcement (counted: levels.UNKNOWN)
  const UNKNOWN_CHARS = 16;
  const levelText = (level) => KNOWN.has(level) ? level : "Unknown state: \u201c" +
    (level.length > UNKNOWN_CHARS ? level.slice(0, UNKNOWN_CHARS - 1).trimEnd() + "\u2026" : level) + "\u201d";
  // A desk whose camera stopped, or sees too dark a room, sends "Absent" with these words as its label
  // (engagement.ABSENT_REASONS): shown as sent, so a student at a desk with a dead camera or the lights off does
  // not read as gone. Only these exact words: a label is any text a desk's account sends
  const ABSENT_REASONS = new Set(["Absent - camera not working", "Absent - too dark to see"]);
  const tileId = (deviceId) => "tile-" + deviceId;  // an alert links to its desk's tile
  const stateText = (d) => d.level === "Absent" && ABSENT_REASONS.has(d.label) ? d.label : levelText(d.level);
  // Two desks showing the same name (a desk's account may copy another seat's) are told apart by their device
  // ids, on the tiles and in the alerts: "Row 1, seat 1 (desk-08)". Names that look the same count as the same:
  // case, accents, white space, compatibility forms (full-width letters) and the Cyrillic and Greek letters
  // drawn like Latin ones ("R\u043ew 1" with a Cyrillic o) aside (the server has taken out invisible characters
  // already, messages.shown_text). The letters are the common ones of Unicode's confusables list (TR39), lower case.
  const LATIN_TWINS = new Map(Object.entries({
    "\u0430": "a", "\u0432": "b", "\u0435": "e", "\u043a": "k", "\u043c": "m", "\u043d": "h",
    "\u043e": "o", "\u0440": "p", "\u0441": "c", "\u0442": "t", "\u0443": "y", "\u0445": "x", "\u0455": "s",
    "\u0456": "i", "\u0458": "j", "\u04bb": "h", "\u04cf": "l", "\u0501": "d", "\u051b": "q",
    "\u051d": "w", "\u04af": "y", "\u03b1": "a", "\u03b2": "b", "\u03b5": "e", "\u03b6": "z", "\u03b7": "h",
    "\u03b9": "i", "\u03ba": "k", "\u03bc": "m", "\u03bd": "v", "\u03bf": "o", "\u03c1": "p", "\u03c4": "t",
    "\u03c5": "u", "\u03c7": "x", "\u03f2": "c"}));
  const lookalike = (name) => [...name.normalize("NFKD").replace(/\p{M}/gu, "").toLowerCase()]
    .map((c) => LATIN_TWINS.get(c) || c).join("").replace(/\s+/gu, " ").trim();
  function namesOf(list) {
    const seen = new Map();
    for (const d of list) { const k = lookalike(d.desk || d.device_id); seen.set(k, (seen.get(k) || 0) + 1); }
    return new Map(list.map((d) => {
      const name = d.desk || d.device_id;
      return [d.device_id, seen.get(lookalike(name)) > 1 && name !== d.device_id ? name + " (" + d.device_id + ")" : name];
    }));
  }
  const now = () => Date.now() / 1000 + offset;
  let zoneOffset = null;  // the server's UTC offset (s), from its updates: a time of day is the server's, not the laptop's
  // a moment (the server's epoch seconds) as the server's time of day, in this browser's way of writing one
  const serverTime = (t) => zoneOffset === null ? new Date(t * 1000).toLocaleTimeString() :
    new Date((t + zoneOffset) * 1000).toLocaleTimeString(undefined, {timeZone: "UTC"});
  function ago(seconds) {
    seconds = Math.max(0, Math.round(seconds));
    if (seconds < 60) return seconds + " s";
    if (seconds < 3600) return Math.floor(seconds / 60) + " min";
    return Math.floor(seconds / 3600) + " h " + Math.floor((seconds % 3600) / 60) + " min";
  }
  // what the alert times: on an alert level, the whole stretch of alert levels (a student moving between
  // "Not engaged" and "Distracted" is disengaged all along: desk.Desk.stretch), else the level's own time
  const stretch = (d) => (ALERTING.includes(d.level) && d.disengaged_since) || d.since;
  // as the server orders them (desk.Desk.sort_key): an empty seat (long "Absent") after every working desk; times in
  // whole seconds, as the tiles show them (two desks "for 3 min" went by the milliseconds between them, not by name)
  function rank(d, t) {
    const i = ORDER.indexOf(d.level);
    const empty = d.level === "Absent" && d.since && t - d.since >= longAbsent;
    return [d.online ? 0 : d.checking ? 1 : 2, empty ? ORDER.length + 1 : i < 0 ? ORDER.length : i,
      Math.floor(stretch(d) || 0)];
  }
  // ties by name as people number desks: "Row 2" before "Row 10" (as the server orders them, desk.natural_key)
  const byName = new Intl.Collator(undefined, {numeric: true, sensitivity: "base"});
  function compare(a, b, t) {
    const x = rank(a, t), y = rank(b, t);
    for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return x[i] - y[i];
    return byName.compare(a.desk || a.device_id, b.desk || b.device_id);
  }
  // "Seat order": every tile in a fixed place, by desk name, as the room is laid out (the attention
  // order moves tiles whenever a level or its time changes: with 30 desks, every few seconds);
  // remembered in this browser, off by default
  const seatOrder = $("seat-order");
  seatOrder.checked = localStorage.getItem("ee-seat-order") === "1";
  seatOrder.addEventListener("change", () => {
    localStorage.setItem("ee-seat-order", seatOrder.checked ? "1" : "0");
    render();
  });
  const bySeat = (a, b) => byName.compare(a.desk || a.device_id, b.desk || b.device_id) ||
    (a.device_id < b.device_id ? -1 : a.device_id > b.device_id ? 1 : 0);
  function el(tag, className, text) {
    const e = document.createElement(tag);
    if (className) e.className = className;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  const pct = (share) => Math.round(share * 100) + "%";
  // one share, from the seconds, for the words and the bar's label alike (engaged_share is
  // rounded already: rounded again, the words said 44% where the label said 43%)
  const share = (r, group) => r.observed_s ? r.seconds[group] / r.observed_s : 0;
  // engaged of the time there ("Absent" left out), as the class line counts (minute_rows.summarise_minutes): a student there
  // for all the minutes they were there read "50% engaged" on their tile and counted 100% in the class's
  const shareThere = (r) => r.there_s > 0 ? r.seconds.Engaged / r.there_s : 0;
  const THERE_TILE = "Of the time the student was at the desk: minutes \u201cAbsent\u201d are left out, as in the " +
    "class figure (the bar shows them)";
  // "Last 10 min: 62% engaged while there, away 20%" and a bar of every group's share: steadier than the
  // state of the moment
  function recentOf(r) {
    const minutes = Math.min(10, r.minutes || 10);
    const away = share(r, "Absent");
    const words = r.there_s > 0 ? pct(shareThere(r)) + " engaged while there" +
      (Math.round(away * 100) ? ", away " + pct(away) : "") : "away the whole time";
    const span = el("span", "meta recent", "Last " + minutes + " min: " + words);
    span.title = THERE_TILE;
    const bar = el("span", "share");
    bar.setAttribute("role", "img");
    bar.setAttribute("aria-label", "Last " + minutes + " minutes: " +
      GROUPS.map((g) => g + " " + pct(share(r, g))).join(", "));
    for (const g of GROUPS) {
      if (!r.seconds[g]) continue;
      const part = el("span", "part " + cls(g));
      part.style.flexGrow = String(r.seconds[g]);
      part.title = g + " " + pct(share(r, g));  // the colours alone tell some of them apart poorly
      bar.append(part);
    }
    return [span, bar];
  }
  // Each desk keeps its tile (and each count its chip) from one redraw to the next, changed only where
  // its words changed: the page redraws every second, and rebuilding every tile each time lost a screen
  // reader's place (and a selection) in the list every second.
  let tiles = new Map();  // device id -> its item in #desks
  let chips = new Map();  // level -> its item in #counts
  const shell = (e) => e.cloneNode(false).outerHTML;
  function patch(old, fresh) {
    if (old.className !== fresh.className) old.className = fresh.className;
    for (const [k, v] of Object.entries(fresh.dataset)) if (old.dataset[k] !== v) old.dataset[k] = v;
    const was = [...old.children], now = [...fresh.children];
    if (was.length !== now.length || was.some((e, i) => e.className !== now[i].className)) {
      old.replaceChildren(...now);
      return old;
    }
    now.forEach((e, i) => {
      if (was[i].outerHTML === e.outerHTML) return;
      if (!e.children.length && !was[i].children.length && shell(was[i]) === shell(e)) was[i].textContent = e.textContent;
      else was[i].replaceWith(e);
    });
    return old;
  }
  // ``ul`` holds ``items``, in that order: only the items out of place move, and never the one holding the keyboard's
  // focus (an element moved, or taken out, loses it): the others move around it. Rebuilt whole, the list lost the
  // focus of an alert's link to the page's top whenever two alerts changed places.
  function arrange(ul, items) {
    const listed = new Set(items);
    for (const li of [...ul.children]) if (!listed.has(li)) li.remove();
    const held = items.find((li) => li.parentNode === ul && li.contains(document.activeElement));
    const at = held ? items.indexOf(held) : items.length;
    let next = null;  // after the held one (or all of them), from the last: each just before the one after it
    for (let i = items.length - 1; i > at; i--) {
      if (items[i].parentNode !== ul || items[i].nextSibling !== next) ul.insertBefore(items[i], next);
      next = items[i];
    }
    next = held || null;  // before it, likewise
    for (let i = at - 1; i >= 0; i--) {
      if (items[i].parentNode !== ul || items[i].nextSibling !== next) ul.insertBefore(items[i], next);
      next = items[i];
    }
  }
  // ``fresh``: key -> a new item; the list keeps the items it had for those keys, in the new order
  function keep(ul, had, fresh, empty) {
    const kept = new Map([...fresh].map(([key, li]) => [key, had.has(key) ? patch(had.get(key), li) : li]));
    const items = [...kept.values()];
    if (!items.length && empty) items.push(ul.querySelector("li.empty") || empty());
    if (items.length !== ul.children.length || items.some((li, i) => ul.children[i] !== li)) arrange(ul, items);
    return kept;
  }
  // While the page is blind (no word from the server for SILENT_MS, or the server none from the broker) the tiles are
  // the class as it was: their durations stop where the page last knew them (a tile said "Engaged for 9 min" of a
  // student nobody had seen for 8) and they turn grey (classroom.css .stale), the level still in words.
  let asOf = null;  // the server's time the page went blind at; null while it sees the desks
  let lastWord = null;  // when (the page's monotonic clock) the latest update came, on any stream
  const COMPACT_FROM = 12;  // more desks than this: smaller tiles (classroom.css .compact)
  const QUIET_S = 5;  // a desk's heartbeat this late (server time) greys its tile: its level is no longer news
  const isQuiet = (d, t) => !!(d.online && d.heartbeat_s && d.last_seen && t - d.last_seen > d.heartbeat_s + QUIET_S);
  function render() {
    // silent: no update for SILENT_MS (the server sends one every 5 s at least), or no stream open, since the first
    // word: measured from the last update, not from a stream's opening (one that opened and sent nothing showed the
    // tiles live again at each reconnection, every 16 s)
    const silent = lastWord !== null && (since() - lastWord >= SILENT_MS || !source ||
      source.readyState !== EventSource.OPEN);
    const blind = silent || (broker !== null && !broker.connected);
    if (!blind) asOf = null;
    else if (asOf === null) asOf = now() - (lastWord === null ? 0 : (since() - lastWord) / 1000);
    const t = asOf ?? now();
    $("desks").classList.toggle("stale", blind);
    // ... and so do the counts, the class line and "Needs attention" ("No desk right now" is no news either)
    document.querySelector(".classroom").classList.toggle("stale", blind);
    const byAttention = [...desks.values()].sort((a, b) => compare(a, b, t));  // the alerts' order, always
    const list = seatOrder.checked ? [...byAttention].sort(bySeat) : byAttention;
    const names = namesOf(list);
    const ul = $("desks");
    const fresh = new Map(list.map((d) => {
      // online, but its heartbeat overdue (QUIET_S late; the server takes it offline only at 2.5 of them, 35 to 77 s):
      // greyed and dashed, its durations stopped, "not heard for 40 s" (a desk that died stayed a full-colour
      // "Engaged" tile, its "for" still counting, until then)
      const quiet = isQuiet(d, t);
      const li = el("li", "desk " + (d.online ? cls(d.level || WAITING) + (quiet ? " quiet" : "") :
        d.checking ? "offline checking" : "offline"));
      li.id = tileId(d.device_id);
      li.dataset.device = d.device_id;
      li.dataset.level = d.level;
      li.dataset.online = d.online;
      // an offline tile leads with "Offline", its last level after it, and no "for": it led with "Engaged
      // (offline)" and "for 3 h" kept growing, read at a glance as a student engaged for three hours
      li.append(el("span", "name", names.get(d.device_id)),
        el("span", "level", d.online ? (d.level ? stateText(d) : WAITING) : d.checking ? CHECKING : "Offline"));
      if (d.checking) li.append(el("span", "meta checking", "online when it last spoke; waiting to hear it"));
      // a clean stop sends "Absent" just before its "offline" (the server's switched_off): not a student who left
      if (!d.online && d.level) li.append(el("span", "meta last", "last: " + (d.switched_off ? "desk switched off" :
        stateText(d))));
      if (d.online && d.since && !quiet) li.append(el("span", "meta since", "for " + ago(t - d.since)));
      // moved between the two alert levels: how long it has been either (what the alert counts)
      if (d.online && d.since && stretch(d) < d.since && !quiet) {
        li.append(el("span", "meta disengaged", "not engaged or distracted for " + ago(t - stretch(d))));
      }
      // a desk known only from the broker's stored copies has not been heard by this service yet
      li.append(el("span", "meta heard", quiet ? "not heard for " + ago(t - d.last_seen) :
        d.last_seen ? "last heard " + ago(t - d.last_seen) + " ago" : "not heard yet"));
      // the desk's clock is off (a Pi no time server has set): its times were corrected by the server
      if (Math.abs(d.clock_skew || 0) >= 60) li.append(el("span", "meta clock", "desk clock off by " + ago(Math.abs(d.clock_skew))));
      // two devices send as this desk (desk.note_run): what it shows comes from either, in turn
      if (d.shared) li.append(el("span", "meta shared", "Two devices use this desk's ID: its level mixes two students. " +
        "Ask a technician to give each its own"));
      // not on a paused desk: the student asked for privacy, and the minutes before the pause read as now
      if (d.online && d.level !== "Paused" && d.recent && d.recent.engaged_share !== null) li.append(...recentOf(d.recent));
      return [d.device_id, li];
    }));
    tiles = keep(ul, tiles, fresh, () => el("li", "empty", "No desk has reported yet."));
    ul.classList.toggle("compact", desks.size > COMPACT_FROM);  // smaller tiles: a class of 30 on one screen
    const c = $("counts");
    chips = keep(c, chips, new Map(Object.entries(counts).map(([level, n]) => {
      const li = el("li", "count " + cls(level) + (n ? "" : " zero"));  // a phone hides the noughts (classroom.css)
      li.dataset.level = level;
      li.append(el("span", "n", String(n)), el("span", "what", " " + level));
      return [level, li];
    })));
    // offline desks (last class's, a renamed desk's old id): one button takes them off the page; not the room's
    // listed desks, which it leaves (counted, the button offered three, took one, then said none was offline)
    const offline = [...desks.values()].filter((d) => !d.online && !d.checking && !d.listed).length;
    $("remove-offline-row").hidden = !offline;
    const label = offline === 1 ? "Remove the offline desk" : "Remove the " + offline + " offline desks";
    if (offline && $("remove-offline").textContent !== label) $("remove-offline").textContent = label;
    const r = classRecent;
    // of the time students were there (model.Classroom._class_summary): empty seats are no one's disengagement; over the
    // minutes there are (two minutes into a lesson: "last 2 min"), counted as the tiles count theirs
    $("class-recent").textContent = r && r.there_s > 0 ?
      "Class, last " + Math.min(10, r.minutes || 10) + " min: " + pct(shareThere(r)) +
      " engaged while students were there (" + r.desks + (r.desks === 1 ? " desk)" : " desks)") : "";
    const limit = limitMin * 60;
    // no new alert from time nobody saw: while the page hears nothing from the server, or the server nothing from
    // the broker, or the desk has gone quiet, a desk only stays on the list it was on (one reached "Distracted for
    // 43 s" during a silence)
    const alerts = byAttention.filter((d) => d.online && ALERTING.includes(d.level) && stretch(d) &&
      t - stretch(d) >= limit && (!(blind || isQuiet(d, t)) || alertItems.has(d.device_id)));
    // longest disengaged first, whatever the level: "Distracted for 14 min" went below "Not engaged for 3 min", though
    // the alert counts both as one stretch; the same second by name, as the tiles
    alerts.sort((a, b) => Math.floor(stretch(a)) - Math.floor(stretch(b)) ||
      byName.compare(names.get(a.device_id), names.get(b.device_id)));
    showAlerts(alerts.map((d) => [d.device_id, names.get(d.device_id) + ": " + d.level + (stretch(d) < d.since ?
      " now, not engaged or distracted for " : " for ") + ago(t - stretch(d)), names.get(d.device_id) + ", " + d.level,
      stretch(d)]));
  }
  // What a screen reader is told: a desk that joins "Needs attention", by name and level, once (the list
  // itself was the live region: every minute a duration moved on, its desk was read out again, and the
  // whole list as the page opened). On opening, how many desks need attention; the list has the rest.
  // Once per disengaged stretch: a desk that leaves the list and comes back on the same stretch (its will, sent as
  // the broker shut down, then its "online" again) was said again, every alerting desk at each broker restart.
  const saidFor = new Map();  // device id -> the start of the stretch it was said (or counted) for
  let alertsHeard = false;  // the first state from the server has come (the page joined the class)
  let alertsSaid = false;  // ... and what needed attention then has been said
  const NAMED = 3;
  function sayAlerts(rows) {
    const added = rows.filter(([id, , , start]) => saidFor.get(id) !== start);
    let words = "";
    if (!alertsSaid) {
      if (!alertsHeard) return;
      alertsSaid = true;
      words = rows.length === 1 ? "1 desk needs attention: " + rows[0][2] + "." :
        rows.length ? rows.length + " desks need attention." : "";
    } else if (added.length) {
      words = "Needs attention: " + added.slice(0, NAMED).map((r) => r[2]).join("; ") +
        (added.length > NAMED ? "; and " + (added.length - NAMED) + (added.length - NAMED === 1 ? " more desk." :
          " more desks.") : ".");
    }
    if (words) $("alerts-said").textContent = words;
    if (alertsSaid) for (const [id, , , start] of rows) saidFor.set(id, start);
  }
  // The alert list is touched only where it changed (a desk joins or leaves, a duration moves on), never
  // rebuilt at every second's redraw: a screen reader's place in it is kept.
  let alertItems = new Map();  // device id -> its item in the list
  function showAlerts(rows) {
    const ul = $("alerts");
    sayAlerts(rows);
    const items = rows.map(([id, text]) => {
      const li = alertItems.get(id) || el("li", "alert");
      let a = li.firstElementChild;
      if (!a) {  // a link to the desk's tile: on a phone the alerts fill the screen above the tiles
        a = document.createElement("a");
        a.href = "#" + encodeURIComponent(tileId(id));
        li.replaceChildren(a);
      }
      if (a.textContent !== text) a.textContent = text;
      return li;
    });
    alertItems = new Map(rows.map(([id], i) => [id, items[i]]));
    if (!items.length) items.push(ul.querySelector("li.none") || el("li", "none", "No desk right now."));
    if (items.length !== ul.children.length || items.some((li, i) => ul.children[i] !== li)) arrange(ul, items);
  }
  // "Live" only while the service hears the broker: in an outage every tile is frozen at what
  // its desk last sent, and the page must say so rather than pass it off as the class now. The
  // instructor gets what to do; the reason as the server has it (paho's "Unspecified error", a
  // refused log-in) is for whoever fixes it, so it goes on a line of its own.
  // #conn is a status region: it is written only when what it says changes (each of the server's
  // updates, every 5 s at least, wrote "Live" again, and a screen reader may read every write out).
  // the lead in bold, the rest smaller: on a phone the whole of it pushed every tile off the first screen
  const SAYS_LEAD = "Not receiving the desks: the tiles show what each desk last sent, not what happens now.";
  const SAYS_MORE = " The classroom server has lost its link to the message broker and tries again by itself. If " +
    "this lasts more than a few minutes, tell your school's technician or whoever runs the classroom server.";
  function showLink() {
    const conn = $("conn");
    const down = broker !== null && !broker.connected;
    conn.classList.toggle("warn", down);
    if (!down) {
      if (conn.textContent !== "Live") conn.textContent = "Live";
      return;
    }
    const detail = "For a technician: " + (broker.error || "connecting to the broker");
    if (conn.textContent !== SAYS_LEAD + SAYS_MORE + detail) {
      const says = el("span", "says", "");
      says.append(el("strong", "lead", SAYS_LEAD), el("span", "more", SAYS_MORE));
      conn.replaceChildren(says, el("span", "detail", detail));
    }
  }
  // The server sends an update at least every 5 s (app.KEEPALIVE_S), one with no desks when nothing changed. A
  // stream silent for three of them is a connection lost with neither end told (a laptop that slept, a Wi-Fi
  // that dropped): an event stream only receives, so the browser would wait on it for ever under "Live".
  const SILENT_MS = 15000;
  const ANSWER_MS = 8000;  // the longest this page waits for the answer to a request (``ask``, a refused stream's check)
  // AbortSignal.timeout where the browser has it (Safari 16, Chrome 103); else the same by hand: a
  // school's older iPad (iPadOS 15) threw at the call, and every request failed before it was sent
  function giveUpAfter(ms) {
    if (typeof AbortSignal.timeout === "function") return AbortSignal.timeout(ms);
    const c = new AbortController();
    setTimeout(function () { c.abort(); }, ms);
    return c.signal;
  }
  const answerIn = () => giveUpAfter(ANSWER_MS);
  let source = null;
  // the latest word from the server on the current stream, on the page's monotonic clock: a laptop's clock
  // stepped forward by a time server is not silence
  const since = () => performance.now();
  let heard = since();
  const AS_THEY_WERE = " The tiles show the desks as they were, not as they are now.";
  function watch() {
    if (!source || source.readyState !== EventSource.OPEN || since() - heard < SILENT_MS) return;
    source.close();
    $("conn").classList.add("warn");
    // the time of the last update, which stays true (a "for 15 s" written once did not count on; rewritten every
    // second, a screen reader would read the status out every second), not of the last stream's opening (one that
    // opens and says nothing moved it on)
    $("conn").textContent = "No word from the classroom server since " +
      serverTime(now() - (since() - (lastWord ?? heard)) / 1000) + ": reconnecting…" + AS_THEY_WERE;
    connect();
  }
  // a form's field changed from what it was given (the room's desk list is a textarea: a list being typed was lost
  // by the reload)
  const edited = (i) => i.type === "checkbox" || i.type === "radio" ? i.checked !== i.defaultChecked :
    i.tagName === "SELECT" ? [...i.options].some((o) => o.selected !== o.defaultSelected) : i.value !== i.defaultValue;
  // the server was upgraded while this page was open (its stream reconnected to the new release): this script
  // would go on running against the new API, so the page reloads; not over what someone typed in a form, nor
  // twice for one release (a proxy in front of two servers), where it asks instead
  function upgraded(stream, build) {
    stream.close();
    stopped = true;
    const typed = [...document.querySelectorAll("form input, form textarea, form select")].some(edited);
    if (!typed && sessionStorage.getItem("ee-reloaded-for") !== build) {
      sessionStorage.setItem("ee-reloaded-for", build);
      window.location.reload();
      return;
    }
    $("conn").classList.add("warn");
    $("conn").textContent = "The classroom server was upgraded: reload this page for its new version." + AS_THEY_WERE;
  }
  // A tab hidden for HIDDEN_MS gives its stream's place back (one log-in has STREAMS_PER_SESSION, the server
  // --max-pages: forgotten tabs took them all and a projector's page waited for a place) and takes one again when
  // shown. Not a page stopped for good (another page took its place, an upgrade): that one stays stopped.
  const HIDDEN_MS = 60000;
  let stopped = false, resting = false, restTimer = null;
  document.addEventListener("visibilitychange", () => {
    clearTimeout(restTimer);
    if (document.hidden) {
      restTimer = setTimeout(() => {
        if (stopped || !document.hidden) return;
        resting = true;
        if (source) source.close();
        $("conn").classList.add("warn");
        $("conn").textContent = "Paused while this tab was hidden: reconnecting when it is shown…" + AS_THEY_WERE;
      }, HIDDEN_MS);
    } else if (resting) {
      resting = false;
      $("conn").textContent = "Reconnecting…" + AS_THEY_WERE;
      connect();
    }
  });
  function connect() {
    if (resting || stopped) return;  // a retry set before the tab rested (or the page stopped) opens nothing
    if (source) source.close();  // one stream a page: a retry due as a rested tab came back replaces it
    const stream = source = new EventSource("/api/classroom/events");
    heard = since();
    // "Live" only once an update comes on it (onmessage): a stream that opens and sends nothing is no news
    stream.onopen = () => { heard = since(); };
    stream.onerror = async () => {
      $("conn").classList.add("warn");  // blind until a word comes (showLink then says "Live")
      if (stream.readyState !== EventSource.CLOSED) {  // a dropped line: the browser reconnects by itself
        $("conn").textContent = "Reconnecting…" + AS_THEY_WERE;
        return;
      }
      // refused: logged out (back to the log-in page) or too many pages open (try again soon). The next try is set
      // first: a request Wi-Fi held unanswered left the page saying "Reconnecting…" for good, its retry never set
      const retry = setTimeout(connect, 10000);
      const r = await fetch("/api/classroom", {signal: answerIn()}).catch(() => null);
      // the server sends "/" on to the log-in, or to Your account for a password to replace
      if (r && (r.status === 401 || r.status === 403)) { clearTimeout(retry); window.location.href = "/"; return; }
      // the data answers but the live stream was refused: the server's live pages are all open (a log-in's own
      // seventh ends its oldest instead); nothing at all (a reverse proxy's 502 while the service restarts): not the
      // instructor's doing either. Closing a page helps only when this log-in has others open.
      const pages = r && r.ok ? (await r.json().catch(() => ({}))).pages : null;
      $("conn").textContent = !(r && r.ok) ?
        "The classroom server is not answering" + (r ? " (HTTP " + r.status + ")" : "") + ": trying again every 10 s…" :
        pages && pages.yours > 0 ? "Waiting for a free place: the classroom server's " + pages.max + " live pages " +
          "are all open, " + pages.yours + " of them yours (close one you do not need)…" :
        "Waiting for a free place: all " + (pages ? pages.max + " " : "") + "live pages the classroom server allows " +
          "are open on other screens. This page tries again every 10 s; whoever runs the server can allow more " +
          "(--max-pages).";
    };
    // a newer page of this log-in took this one's place (one log-in holds app.STREAMS_PER_SESSION): stop here, or
    // the browser's own reconnection would take the next oldest page's place, and that one the next's, all lesson
    stream.addEventListener("ended", (event) => {
      stream.close();
      stopped = true;
      $("conn").classList.add("warn");
      $("conn").textContent = "This page stopped updating: your log-in has " + JSON.parse(event.data).pages +
        " newer classroom pages open, the most at once. Close one you do not need, then reload this page." + AS_THEY_WERE;
    });
    stream.onmessage = (event) => {
      heard = lastWord = since();
      const data = JSON.parse(event.data);
      if (data.build && BUILD && data.build !== BUILD) { upgraded(stream, data.build); return; }
      alertsHeard = true;
      offset = data.now - Date.now() / 1000;
      if (typeof data.utc_offset_s === "number") zoneOffset = data.utc_offset_s;
      if (data.full) desks.clear();
      for (const id of data.gone || []) desks.delete(id);  // cleared from the broker, or made room for another
      for (const d of data.desks) desks.set(d.device_id, d);
      counts = data.counts;
      classRecent = data.recent;
      longAbsent = data.long_absent_s ?? longAbsent;
      broker = data.broker;
      if (data.expected) showListed(data.expected);
      document.body.dataset.version = data.version;
      showLink();
      render();
    };
  }
  // A viewer's change (app.require_viewer_change): [done, the answer's JSON ({} when none came), why it was not
  // done: the server's words, or that it did not answer]
  // [ok, its JSON, why not, status]: a dropped connection or a reverse proxy's HTML error page is said, never a
  // button that does nothing (the instructors' buttons threw an unhandled rejection and said nothing)
  // A request unanswered for ANSWER_MS is given up (its answer's body too), said as "did not answer": a request flaky
  // Wi-Fi held kept the buttons disabled and said nothing, for as long as it was held
  async function ask(method, path, csrf, body) {
    const r = await fetch(path, {method, body: body === undefined || body === null ? undefined : JSON.stringify(body),
      headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf}, signal: answerIn()}).catch(() => null);
    const data = r ? await r.json().catch(() => ({})) : {};
    const why = data.error || (r ? "the classroom server answered " + r.status : "the classroom server did not answer");
    return [Boolean(r && r.ok), data, why, r ? r.status : 0];
  }
  // a button disabled while its request was on its way, usable again; the keyboard back on it if it lost it then
  function enable(button) {
    const lost = !document.activeElement || document.activeElement === document.body;
    button.disabled = false;
    if (lost) button.focus();
  }
  function change(path, csrf, body) {
    return ask("POST", path, csrf, body);
  }
  $("remove-offline").addEventListener("click", async () => {
    const button = $("remove-offline");
    button.disabled = true;
    const [ok, data, why] = await change("/api/classroom/remove-offline", button.dataset.csrf);
    button.disabled = false;
    const n = (data.removed || []).length;
    $("remove-offline-result").textContent = !ok ? "Not removed: " + why + "." : n ? "Removed " + n +
      (n === 1 ? " offline desk" : " offline desks") +
      " from the page, for everyone who has it open. A desk comes back as soon as it is heard again." :
      "No desk was offline any more.";
  });
  // The room's desk list: the box shows the newest (another instructor's too, as the stream brings it) while nobody
  // edits it here; a save names the version it was made from, and one made from an older list is refused (409)
  // instead of overwriting the newer one unseen. What is typed while a save is on its way stays.
  const listBox = $("expected-desks");
  const listSave = $("expected-form").querySelector("button[type=submit]");
  function showListed(listed) {
    if (listSave.disabled || edited(listBox) || listBox.dataset.version === listed.version) return;
    listBox.value = listBox.defaultValue = listed.desks.join("\n");
    listBox.dataset.version = listed.version;
  }
  $("expected-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    if (listSave.disabled) return;
    // one per line, or commas: "desk 7" stays one entry (refused: no device ID has a space), not "desk" and "7"
    const sent = listBox.value;
    const desks = sent.split(/[\n,;]+/).map((d) => d.trim()).filter(Boolean);
    listSave.disabled = true;  // one save at a time: a second one's answer overwrote the first's
    const [ok, data, why, status] = await change("/api/classroom/expected", $("expected-form").dataset.csrf,
      {desks, version: listBox.dataset.version});
    enable(listSave);
    if (ok) {
      listBox.defaultValue = data.desks.join("\n");  // what is saved; the box still shows what was typed meanwhile
      if (listBox.value === sent) listBox.value = listBox.defaultValue;
      listBox.dataset.version = data.version;
    } else if (status === 409 && data.version) {  // saved again, it replaces that list: the instructor has seen it now
      listBox.dataset.version = data.version;
    }
    $("expected-result").textContent = status === 409 ? "Not saved: " + why + ". Your list is still in the box: " +
      "check it, then save again to replace theirs." : !ok ? "Not saved: " + why + "." : data.desks.length ? "Saved: " +
      data.desks.length + (data.desks.length === 1 ? " desk" : " desks") +
      ". One not heard yet shows \u201cOffline\u201d and \u201cnot heard yet\u201d." :
      "Saved: no list. Only the desks heard are shown.";
  });
  const form = $("add-instructor");
  if (form) {
    const csrf = form.dataset.csrf;
    const mine = $("confirm-mine");
    // an old log-in: the admin's own password first (the form's "Your own password" field),
    // for adding as for disabling or removing
    async function confirmFirst(result) {
      if (mine.hidden || !form.mine.value) return true;
      const [ok, , why] = await ask("POST", "/api/confirm", csrf, {password: form.mine.value});
      form.mine.value = "";
      if (!ok) {
        result.textContent = "Not done: " + why + ".";
        return false;
      }
      mine.hidden = true;
      form.mine.required = false;
      return true;
    }
    function askForPassword(data) {
      if (!data.confirm) return;
      mine.hidden = false;
      form.mine.required = true;
      form.mine.focus();
    }
    const list = $("instructors");
    async function loadInstructors() {
      const [ok, data] = await ask("GET", "/api/instructors", csrf);
      if (!ok) return;
      const found = data.instructors;
      list.replaceChildren(...found.map((i) => {
        const li = el("li", "instructor" + (i.disabled ? " disabled" : ""));
        li.dataset.user = i.user;
        li.append(el("span", "name", i.user), el("span", "meta", i.disabled ? "disabled: cannot log in"
          : i.temporary ? "has not chosen a password yet" : "can log in"));
        const toggle = el("button", "secondary toggle", (i.disabled ? "Enable " : "Disable ") + i.user);
        toggle.type = "button";
        toggle.addEventListener("click", () => act("POST", i.user, {disabled: !i.disabled},
          (i.disabled ? "Enabled " : "Disabled ") + i.user + "."));
        const remove = el("button", "secondary", "Remove " + i.user);
        remove.type = "button";
        remove.addEventListener("click", () => {
          if (onItsWay(i.user)) return;  // before asking: a confirmed removal must not be dropped unsaid
          if (window.confirm("Remove " + i.user + "? Their pages close now and they can no longer log in.")) {
            act("DELETE", i.user, null, "Removed " + i.user + ".");
          }
        });
        li.append(toggle, remove);
        return li;
      }));
      if (!found.length) list.append(el("li", "none", "No instructor yet."));
    }
    // a user's change on its way: another press for that user is refused, saying so (Remove pressed twice said
    // "Removed" and then replaced it with the second's "no such instructor")
    const acting = new Set();
    function onItsWay(user) {
      if (!acting.has(user)) return false;
      $("instructors-result").textContent = "A change to " + user + " is on its way: press again once it is done.";
      return true;
    }
    async function act(method, user, body, done) {
      if (onItsWay(user)) return;
      acting.add(user);
      try { await actNow(method, user, body, done); } finally { acting.delete(user); }
    }
    async function actNow(method, user, body, done) {
      const result = $("instructors-result");
      if (!(await confirmFirst(result))) return;
      const [ok, data, why, status] = await ask(method, "/api/instructors/" + encodeURIComponent(user), csrf, body);
      if (status === 403) askForPassword(data);
      result.textContent = ok ? done : "Not done: " + why + ".";
      if (!ok) return;
      await loadInstructors();
      // the list is drawn anew, the button pressed with it: the keyboard goes to the same user's new one (Enable for
      // Disable), or to the words saying what was done when the user is gone, not back to the page's top
      if (document.activeElement && document.activeElement !== document.body) return;  // it has moved on meanwhile
      const row = [...list.children].find((li) => li.dataset.user === user);
      const toggle = row && row.querySelector("button.toggle");
      (toggle || result).focus();
    }
    // a refusal names the field at fault: marked and described by the message, and focused to correct it
    function markField(name) {
      for (const input of form.querySelectorAll("input")) {
        if (input.name === name) {
          input.setAttribute("aria-invalid", "true");
          input.setAttribute("aria-describedby", "add-result");
        } else {
          input.removeAttribute("aria-invalid");
          input.removeAttribute("aria-describedby");
        }
      }
      if (name && form.elements[name]) form.elements[name].focus();
    }
    const add = form.querySelector("button[type=submit]");
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      // one at a time: a second click's POST came back "already exists" and its "Not added" replaced "Added"
      if (add.disabled) return;
      add.disabled = true;
      try {
        await addInstructor();
      } finally {
        enable(add);
      }
    });
    async function addInstructor() {
      if (!(await confirmFirst($("add-result")))) return;
      const body = {username: form.username.value, password: form.password.value,
                    temporary: form.temporary.checked};
      const [ok, data, why, status] = await ask("POST", "/api/instructors", csrf, body);
      if (status === 403) askForPassword(data);
      $("add-result").textContent = status === 403 ? why : !ok ? "Not added: " + why + "." :
        "Added " + data.user +
        (data.temporary ? ": they choose their own password at the first log-in." : ".");
      if (status !== 403) markField(ok ? "" : data.field);
      if (ok) {
        form.reset();
        loadInstructors();
      }
    }
    loadInstructors();
  }
  connect();
  setInterval(() => { watch(); render(); }, 1000);
})();
