// Refreshes the current engagement state shown beside the live stream.
(function () {
  const el = document.getElementById("state");
  async function poll() {
    try {
      const r = await fetch("/api/state", { credentials: "same-origin" });
      if (r.ok) {
        const s = await r.json();
        el.textContent = s.level || "no camera loop";
        el.dataset.group = s.group || "";
      }
    } catch (e) { /* the device may be restarting: try again */ }
    setTimeout(poll, 1000);
  }
  poll();
})();
