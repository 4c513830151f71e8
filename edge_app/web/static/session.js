// The idle time-out's warning (views/idle_warning.tpl). Only what the user does on the server
// (a page, a form) restarts a session's idle timer; the pages' own polls do not. So a page
// left open — a file chosen on /upload, a form half typed — quietly turned into the log-in
// page. A minute before that (half the time for a shorter one; WCAG 2.2.1 asks for 20 s) it
// says so politely, with "Stay logged in", which asks the server (POST /api/session, with
// the CSRF token) and counts as the user's own doing. When the time is up, the page asks
// whether the session is still on (another tab may have kept it) before it shows the log-in.
(function () {
  "use strict";
  const box = document.getElementById("idle-warning");
  if (!box) return;
  const idleMs = Number(box.dataset.idleS) * 1000;
  if (!(idleMs > 0)) return;
  const warnMs = Math.min(60000, idleMs / 2);
  let deadline = Date.now() + idleMs;  // this page's load was the user's own doing: the timer started then
  let timer = null;
  let sending = false;  // a form on its way: its answer, not this script, says what became of it
  document.addEventListener("submit", function (e) { if (!e.defaultPrevented) { sending = true; arm(); } });
  window.addEventListener("pageshow", function (e) { if (e.persisted) { sending = false; arm(); } });

  function at(ms) {
    return new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  function arm() {
    clearTimeout(timer);
    const warnAt = deadline - warnMs;
    timer = Date.now() < warnAt ? setTimeout(warn, warnAt - Date.now()) : setTimeout(ended, deadline - Date.now());
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

  function warn() {
    if (sending) return;
    const seconds = Math.round((deadline - Date.now()) / 1000);
    const text = document.createElement("p");
    text.textContent = "Nothing has happened on this page for a while: you will be logged out in " +
      (seconds >= 60 ? "1 minute" : seconds + " seconds") + " (at " + at(deadline) + ").";
    const button = document.createElement("button");
    button.type = "button";
    button.id = "stay-logged-in";
    button.textContent = "Stay logged in";
    button.addEventListener("click", stay);
    box.replaceChildren(text, button);
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
      clear();
      arm();
      return;
    }
    if (r && (r.status === 401 || r.status === 403)) { showLogin(); return; }  // it ended already
    box.querySelector("p").textContent = "The device did not answer: try again, or reload the page.";
  }

  async function ended() {
    if (sending) return;
    let r = null;
    try {
      r = await fetch("/api/session", { credentials: "same-origin", headers: { Accept: "application/json" } });
    } catch (e) { r = null; }
    if (r && r.ok) {  // kept on by this user elsewhere (another tab): at most idle from now on
      deadline = Date.now() + idleMs;
      clear();
      arm();
      return;
    }
    if (r && r.status === 401) { showLogin(); return; }
    timer = setTimeout(ended, 5000);  // no answer (the device restarting): ask again
  }

  function showLogin() {  // this page again: the server sends it to the log-in with why ("Your session ended")
    if (!sending) window.location.replace(window.location.pathname + window.location.search);
  }

  arm();
})();
