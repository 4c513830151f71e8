// The current engagement state on every page that shows it, kept fresh from /api/state
// (pages include this only where a capture loop runs).
// Any element with data-live-state gets the level as its text and data-group for its
// colour (app.css); the header dot gets data-group and a label. When the device stops
// answering, they say so instead of showing an old state. One poller per page; it rests
// while the tab is hidden. (A file, not inline: the CSP allows scripts from /static only.)
(function () {
  "use strict";
  const EVERY_MS = 1000;
  const STALE_MS = 5000;  // no answer for this long: the shown state is no longer trusted
  const ASK_MS = 4000;  // a request unanswered this long is given up (Wi-Fi that drops packets held
  // one for minutes, and with it every later poll: the desk view showed "Engaged" all that time)
  let lastOk = Date.now();
  let timer = null;
  let busy = false;
  let sending = false;  // a form is on its way: its answer says what became of it (e.g. "not saved")

  // a form sent into another tab (target="_blank") leaves this page where it is: nothing on its way here
  function leaves(form) { return !form.target || form.target === "_self"; }
  document.addEventListener("submit", function (e) { if (!e.defaultPrevented && leaves(e.target)) sending = true; });
  window.addEventListener("pageshow", function (e) { if (e.persisted) sending = false; });  // back to it

  function ask(url, options) {  // giveUpAfter: static/net.js
    return fetch(url, Object.assign({ credentials: "same-origin", signal: giveUpAfter(ASK_MS) }, options));
  }

  function targets() { return document.querySelectorAll("[data-live-state]"); }

  // What a screen reader hears (an element with data-announce-state, a polite live region):
  // only a state that has lasted SETTLED_MS. Each change was announced (five in 30 s as a
  // student shifted in the chair), talking over the lesson; the text on screen still
  // follows every second.
  const SETTLED_MS = 10000;
  let heard = null, settling = null, settleTimer = null;
  function announceLater(text) {
    if (text === settling) return;
    settling = text;
    clearTimeout(settleTimer);
    if (heard === null) { heard = text; return; }  // the page's first state: on screen, not news
    settleTimer = setTimeout(function () {
      if (settling === heard) return;
      heard = settling;
      document.querySelectorAll("[data-announce-state]").forEach(function (el) { el.textContent = "Now: " + heard; });
    }, SETTLED_MS);
  }

  function show(text, group, camera) {
    announceLater(text);
    targets().forEach(function (el) {
      if (el.textContent !== text) el.textContent = text;
      el.dataset.group = group;
      if (camera !== undefined) el.dataset.camera = camera;
    });
    const dot = document.getElementById("state-dot");
    if (dot) {
      dot.dataset.group = group;
      const label = "Now: " + text + " (open the desk view)";
      dot.title = label;
      const sr = dot.querySelector(".sr-only");
      if (sr) sr.textContent = label;
    }
    // for pages that show it their own way (the desk view)
    document.dispatchEvent(new CustomEvent("engage:state", { detail: { text: text, group: group, camera: camera } }));
  }

  // the header's Pause/Resume follows the camera too: paused from another page, the desk
  // button or the pause's time limit, it must not go on offering "Pause camera"; paused by
  // someone else (another student at the desk) it offers no "Resume camera" the server
  // refuses, and says until when instead (/api/privacy's can_resume and label)
  function showSwitch(paused, canResume, label) {
    const form = document.querySelector("form.privacy");
    if (!form) return;
    settleFailure(paused);
    let button = document.getElementById("privacy-button");
    let pill = document.getElementById("paused");
    if (paused) {
      if (!pill) {
        pill = document.createElement("span");
        pill.className = "pill g-paused";
        pill.id = "paused";
        if (button) button.before(pill); else form.appendChild(pill);
      }
      const text = label;  // the server's words: "Camera paused until 14:05", or someone else's pause
      if (pill.textContent !== text) pill.textContent = text;
    } else if (pill) {
      pill.remove();
    }
    if (paused && !canResume) {
      if (button) button.remove();
      return;
    }
    if (!button) {
      button = document.createElement("button");
      button.type = "submit";
      button.name = "do";
      button.className = "link";
      button.id = "privacy-button";
      form.appendChild(button);
    }
    if ((button.value === "resume") === paused && button.textContent) return;
    button.value = paused ? "resume" : "pause";
    button.textContent = paused ? "Resume camera" : "Pause camera";
    if (paused) button.removeAttribute("title"); else button.title = form.dataset.pauseTitle || "";
  }

  // while paused: whose pause it is, asked once per Paused state (its seq) rather than each second
  let pauseShown = null;
  let pressed = null;  // {paused, at}: what this page's own press made, before the loop says so too
  const SETTLE_MS = 3000;
  async function followSwitch(state) {
    if (!document.querySelector("form.privacy")) return;  // a page without the header's switch
    // a poll answered just before the loop took the press in: not drawn back for that moment
    if (pressed && Date.now() - pressed.at < SETTLE_MS && (state.camera === "paused") !== pressed.paused) return;
    if (state.camera !== "paused") {
      pauseShown = null;
      showSwitch(false, true, "");
      return;
    }
    if (pauseShown === state.seq) return;
    let p = null;
    try {
      const r = await ask("/api/privacy", { headers: { Accept: "application/json" } });
      if (!r.ok) return;  // asked again at the next poll
      p = await r.json();
    } catch (e) { return; }  // no answer in time: asked again at the next poll
    pauseShown = state.seq;
    showSwitch(p.paused, p.can_resume !== false, p.label || "Camera paused");
  }

  // the header's button pauses or resumes in place (/api/pause, /api/resume) and redraws the
  // header from the answer: sent as a form, it left the page it was pressed on, and the answer
  // to a form (a class's one-time password sheet) cannot be opened again. Without an answer to
  // read (a network error, a session ended), the page says so where it is (switchFailed).
  const switchForm = document.querySelector("form.privacy");
  let switching = false;
  let clicked = null;  // the button a click submits the form with: e.submitter where the browser has none
  if (switchForm) {
    // SubmitEvent.submitter came with Safari 15.4: on an older iPad (iPadOS 15.0-15.3) the press was not
    // seen, and went as a form (on a class's password sheet into a new tab, unannounced); the click says it
    switchForm.addEventListener("click", function (e) { clicked = e.target.closest("button"); });
    switchForm.addEventListener("submit", async function (e) {
      const by = e.submitter || clicked;
      clicked = null;
      const action = by ? by.value : "";
      if (action !== "pause" && action !== "resume") return;
      e.preventDefault();  // runs before the document's "sending" listener: nothing leaves this page
      if (switching) return;  // a second click while the first is on its way
      switching = true;
      let answer = null, status = 0;  // status: the refusal's HTTP status; 0 while no answer could be read
      try {
        const r = await ask("/api/" + action, {
          method: "POST", headers: { Accept: "application/json", "X-CSRF-Token": switchForm.elements.csrf.value } });
        status = r.ok ? 0 : r.status;
        if (r.ok || r.status === 403) answer = await r.json();  // 403: someone else's pause, said in its label
      } catch (err) { answer = null; }
      switching = false;
      if (answer && typeof answer.paused === "boolean") {
        forgetFailure();
        pauseShown = null;  // the next poll asks again whose pause it is
        pressed = { paused: answer.paused, at: Date.now() };
        showSwitch(answer.paused, answer.can_resume !== false, answer.label || "Camera paused");
        const again = document.getElementById("privacy-button");
        if (again) { again.focus(); return; }  // where the keyboard was, now "Resume camera" (or "Pause camera")
        const pill = document.getElementById("paused");  // refused (someone else paused meanwhile): the button
        if (pill) {  // is gone, and the keyboard goes to the words that say why, not lost on <body>
          pill.tabIndex = -1;
          if (answer.error) pill.title = answer.error;
          pill.focus();
        }
        return;
      }
      switchFailed(action, status);
    });
  }

  // A press that did not switch the camera, said on the page it was pressed on, what it means for the student
  // first; the button stays, under the keyboard, for another try. The form went as a form instead: on the answer
  // to a form (a class's password sheet) that opened a tab of its own, unannounced, and with the device out of
  // reach it put the browser's error page in place of this one. An alert, made anew each time: said again.
  function switchFailed(action, status) {
    const pausing = action === "pause";
    const press = pausing ? "Pause camera" : "Resume camera";
    const now = status === 0 ? (pausing ? "The camera may not be paused" : "The camera may still be paused") :
      (pausing ? "The camera is not paused" : "The camera is still paused");
    const why = status === 0 ? "no answer came from the device. Press " + press + " again." :
      status === 401 ? "your log-in has ended. Log in again, then press " + press + "." :
      "the device answered with an error (" + status + "). Reload this page, then press " + press + " again.";
    forgetFailure();
    const note = document.createElement("p");
    note.id = "privacy-error";
    note.className = "error";
    note.setAttribute("role", "alert");
    note.dataset.paused = String(pausing);  // what the press asked for: the note goes once the camera is so
    if (status === 0) note.dataset.unanswered = "1";  // ... or says so, when it may have switched (settleFailure)
    note.textContent = now + ": " + why;
    (document.getElementById("main") || document.body).prepend(note);
  }

  // The camera is as a failed press asked after all. A press whose answer never came (the device took it, its answer
  // was lost) says so, in its own alert, where the note went without a word: a screen reader had heard "Press Pause
  // camera again" and was still on the button, now "Resume camera" unheard, and pressed again it resumed the camera
  // the student had just paused. Said once (settled), that goes when the camera switches again; a note of a press
  // refused (an answer came) goes at once, as before.
  function settleFailure(paused) {
    const note = document.getElementById("privacy-error");
    if (!note) return;
    const asked = note.dataset.paused === String(paused);
    if (note.dataset.settled) {
      if (!asked) note.remove();  // paused or resumed since: no longer true
      return;
    }
    if (!asked) return;
    if (!note.dataset.unanswered) { note.remove(); return; }
    note.dataset.settled = "1";
    note.className = "ok";
    note.textContent = paused ? "The camera is paused after all." : "The camera is on again after all.";
  }

  function forgetFailure() {
    const note = document.getElementById("privacy-error");
    if (note) note.remove();
  }

  function describe(s) {
    if (!s.level) return ["no camera loop", ""];
    // a camera fault is shown as such, not as the last state; "paused" is the state Paused
    if (s.camera && ["ok", "starting", "paused"].indexOf(s.camera) < 0) return ["Camera " + s.camera, ""];
    return [s.level, s.group || ""];
  }

  async function poll() {
    timer = null;
    if (busy) return;
    busy = true;
    try {
      // the desk view is left open on purpose: its poll keeps an instructor's or admin's log-in (not a student's; the others do not)
      const url = document.getElementById("glance") ? "/api/state?view=desk" : "/api/state";
      const r = await ask(url, { headers: { Accept: "application/json" } });
      if (r.status === 401) {  // the session ended (idle, logged out elsewhere): this page again, which the
        // server sends to the log-in with why ("Your session ended") and the way back; a bare /login
        // here looked as if the student had never been logged in. Not while a form is on its way:
        // going there cut the form's answer short, and the log-in page no longer said it was not saved
        // (the polls go on meanwhile: a form stopped in the browser leaves this page here, and its
        // state must turn to "No connection" rather than stay as it was)
        if (!sending) { window.location.replace(window.location.pathname + window.location.search); return; }
      } else if (r.ok) {
        const state = await r.json();
        const shown = describe(state);
        show(shown[0], shown[1], undefined);
        lastOk = Date.now();
        if (state.camera) await followSwitch(state);
      }
    } catch (e) { /* the device may be restarting, or no answer in time: the stale check covers it */
    } finally { busy = false; }
    staleCheck();
    schedule();
  }

  function staleCheck() {
    if (Date.now() - lastOk > STALE_MS) show("No connection to the device", "", "unknown");
  }

  function schedule() {
    if (timer === null && document.visibilityState !== "hidden") timer = setTimeout(poll, EVERY_MS);
  }

  // also on its own clock: whatever a request does, an old state is not shown as the current one
  setInterval(function () { if (document.visibilityState !== "hidden") staleCheck(); }, EVERY_MS);
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState !== "hidden" && timer === null) { lastOk = Date.now(); poll(); }
  });
  poll();
})();
