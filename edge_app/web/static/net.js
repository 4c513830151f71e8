// What the device's page scripts share for their requests (a file, not inline: the CSP allows
// scripts from /static only; loaded in each page's head, before them).
// giveUpAfter(ms): a signal that gives up a request unanswered for ms (Wi-Fi that holds a request
// held every later poll behind it). AbortSignal.timeout where the browser has it (Safari 16,
// Chrome 103); else the same by hand: on a school's older iPad (iPadOS 15) the call threw, and
// every request failed before it was sent.
window.giveUpAfter = function (ms) {
  "use strict";
  if (typeof AbortSignal.timeout === "function") return AbortSignal.timeout(ms);
  const c = new AbortController();
  setTimeout(function () { c.abort(); }, ms);
  return c.signal;
};
