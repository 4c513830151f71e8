// The idle time-out's warning (views/idle_warning.tpl). Only what the user does on the server
// (a page, a form) restarts a session's idle timer; the pages' own polls do not. So a page
// left open — a file chosen on /upload, a form half typed — quietly turned into the log-in
// page. A minute before that (half the time for a shorter one; WCAG 2.2.1 asks for 20 s) it
// says so politely, with "Stay logged in", which asks the server (POST /api/session, with
// the CSRF token) and counts as the user's own doing. Before it warns, and when the time is
// up, the page asks the server how long the session has left (GET /api/session's left_s):
// another tab, or a pause pressed in place, may have restarted its timer since this page
// was loaded, and a page counting from its own load warned too early, or too late.
(function () {
  "use strict";
  const box = document.getElementById("idle-warning");
  if (!box) return;
  const idleMs = Number(box.dataset.idleS) * 1000;
  if (!(idleMs > 0)) return;
  const warnMs = Math.min(60000, idleMs / 2);
  // this page's load was the user's own doing: the idle timer started then, unless the log-in's
  // lifetime (web.session_max_hours) ends sooner, as the page's data-left-s says
  const leftMs = box.dataset.leftS === "" ? NaN : Number(box.dataset.leftS) * 1000;
  let deadline = Date.now() + (leftMs >= 0 ? Math.min(idleMs, leftMs) : idleMs);
  let timer = null;
  let sending = false;  // a form on its way: its answer, not this script, says what became of it
  document.addEventListener("submit", function (e) { if (!e.defaultPrevented) { sending = true; arm(); } });
  window.addEventListener("pageshow", function (e) { if (e.persisted) { sending = false; arm(); } });

  const ASK_MS = 4000;  // unanswered this long, the page goes by its own count (giveUpAfter: static/net.js)

  // GET /api/session: {left_s, ends} while the session is on, else null; "gone" when it ended
  async function ask() {
    let r = null;
    try {
      r = await fetch("/api/session", { credentials: "same-origin", headers: { Accept: "application/json" },
                                        signal: giveUpAfter(ASK_MS) });  // held by Wi-Fi: the page's own count
    } catch (e) { return null; }
    if (r.status === 401) return "gone";
    if (!r.ok) return null;
    try { return await r.json(); } catch (e) { return null; }
  }

  // the server's count: a deadline from its left_s (another tab may have moved it on)
  function follow(answer) {
    if (answer && typeof answer.left_s === "number") deadline = Date.now() + answer.left_s * 1000;
  }

  function arm() {
    clearTimeout(timer);
    const warnAt = deadline - warnMs;
    if (Date.now() < warnAt) timer = setTimeout(warn, warnAt - Date.now());
    else if (!box.classList.contains("on")) timer = setTimeout(warn, 0);  // inside the warning's minute, unwarned
    else timer = setTimeout(ended, deadline - Date.now());
  }

  // A laptop's lid closed for an hour: a suspended page's timers do not run on time, so the page
  // woke as it was, its session long ended, and the next form went to the log-in. Shown again,
  // it asks the server at once.
  document.addEventListener("visibilitychange", async function () {
    if (document.visibilityState !== "visible" || sending) return;
    const answer = await ask();
    if (answer === "gone") { showLogin(); return; }
    if (answer && !sending) keptOn(answer);
  });

  // the session is still on, for left_s more: the warning goes if that is past its minute, and the
  // page waits again (a second at least: never a tight loop of asking)
  function keptOn(answer) {
    follow(answer);
    deadline = Math.max(deadline, Date.now() + 1000);
    if (Date.now() < deadline - warnMs) clear();
    arm();
  }

  function clear() {
    const had = box.contains(document.activeElement);
    box.replaceChildren();
    box.classList.remove("on");
    if (had) {  // the keyboard was on the button, now gone: back to the page, not lost on <body>
      const main = document.getElementById("main");
      if (main) { main.tabIndex = -1; main.focus({ preventScroll: true }); }
    }
  }

  async function warn() {
    if (sending) return;
    const answer = await ask();
    if (sending) return;
    if (answer === "gone") { showLogin(); return; }
    follow(answer);
    if (Date.now() < deadline - warnMs - 1000) { arm(); return; }  // kept on meanwhile: not yet
    const seconds = Math.max(0, Math.round((deadline - Date.now()) / 1000));
    const when = (seconds >= 55 ? "1 minute" : seconds + " seconds") +  // (asked, the server's count is a moment less)
      (answer && answer.ends ? " (at " + answer.ends + ", the device's time)" : "");
    const text = document.createElement("p");
    if (answer && answer.limit === "lifetime") {  // web.session_max_hours: nothing keeps it, so no button offers to
      text.textContent = "This log-in has lasted as long as a log-in may: you will be logged out in " + when +
        ". Finish or save what you are doing, then log in again.";
      box.replaceChildren(text);
    } else {
      text.textContent = "Nothing has happened on this page for a while: you will be logged out in " + when + ".";
      const button = document.createElement("button");
      button.type = "button";
      button.id = "stay-logged-in";
      button.textContent = "Stay logged in";
      button.addEventListener("click", stay);
      box.replaceChildren(text, button);
    }
    box.classList.add("on");
    timer = setTimeout(ended, deadline - Date.now());
  }

  async function stay() {
    let r = null;
    try {
      r = await fetch("/api/session", { method: "POST", credentials: "same-origin",
        headers: { Accept: "application/json", "X-CSRF-Token": box.dataset.csrf } });
    } catch (e) { r = null; }
    if (r && r.ok) {
      deadline = Date.now() + idleMs;
      try { follow(await r.json()); } catch (e) { /* the idle time from now, as asked */ }
      clear();
      arm();
      return;
    }
    if (r && (r.status === 401 || r.status === 403)) { showLogin(); return; }  // it ended already
    box.querySelector("p").textContent = "The device did not answer: try again, or reload the page.";
  }

  async function ended() {
    if (sending) return;
    const answer = await ask();
    if (answer === "gone") { showLogin(); return; }
    if (answer) { keptOn(answer); return; }  // kept on by this user elsewhere (another tab): the server's deadline
    timer = setTimeout(ended, 5000);  // no answer (the device restarting): ask again
  }

  function showLogin() {  // this page again: the server sends it to the log-in with why ("Your session ended")
    if (!sending) window.location.replace(window.location.pathname + window.location.search);
  }

  arm();
})();
