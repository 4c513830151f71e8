// The desk view: the page's background and its big word follow the state that state.js
// reports (the group big, "paying attention" below it), a button goes full screen, and the
// screen is kept awake where the browser allows it.
(function () {
  "use strict";
  const page = document.getElementById("glance");
  const button = document.getElementById("fullscreen");
  const word = document.getElementById("glance-word");
  const detail = document.getElementById("glance-detail");
  document.addEventListener("engage:state", function (e) {
    const i = e.detail.text.indexOf(" - ");
    const big = i < 0 ? e.detail.text : e.detail.text.slice(0, i), small = i < 0 ? "" : e.detail.text.slice(i + 3);
    if (word.textContent !== big) word.textContent = big;
    if (detail.textContent !== small) detail.textContent = small;
    page.dataset.group = e.detail.group;
  });
  // both come hidden (with JavaScript off the button did nothing, and the page neither updated nor kept the log-in)
  button.hidden = !document.fullscreenEnabled;
  document.getElementById("glance-note").hidden = false;
  button.addEventListener("click", function () {
    if (document.fullscreenElement) document.exitFullscreen();
    else document.documentElement.requestFullscreen().catch(function () { button.hidden = true; });
  });
  document.addEventListener("fullscreenchange", function () {
    button.textContent = document.fullscreenElement ? "Leave full screen" : "Full screen";
  });
  async function stayAwake() {  // a desk display that goes dark is no use; not every browser allows it
    try { if (navigator.wakeLock && document.visibilityState === "visible") await navigator.wakeLock.request("screen"); }
    catch (e) { /* refused (battery saver): the display may sleep */ }
  }
  document.addEventListener("visibilitychange", stayAwake);
  stayAwake();
})();
