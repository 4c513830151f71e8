"""systemd's notify protocol, by hand: datagrams to ``$NOTIFY_SOCKET`` (stdlib only).

The unit is ``Type=notify`` with ``WatchdogSec``: ``READY=1`` once the capture loop and
the web server are up, ``WATCHDOG=1`` from the capture loop's ``on_alive`` hook (per frame,
while paused, while it retries a failing camera), so pings stop when the loop hangs (a
camera stuck in a read, a stuck loop: the service is restarted), ``STATUS=``
lines for ``systemctl status``, ``STOPPING=1`` on shutdown. Pings are rate-limited to
half the watchdog interval (``$WATCHDOG_USEC``). Without ``$NOTIFY_SOCKET`` (a laptop,
the tests) every call does nothing.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self, address: str | None, watchdog_usec: int | None = None, clock=time.monotonic):
        self.address = address or None
        if self.address and self.address.startswith("@"):  # abstract namespace socket
            self.address = "\0" + self.address[1:]
        self.clock = clock
        # ping at half the watchdog period (systemd's advice); never more than 10 times a second
        self.ping_every = max(0.1, watchdog_usec / 2e6) if watchdog_usec else None
        self._last_ping: float | None = None
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._warned = False

    @classmethod
    def from_env(cls, environ=None) -> "Notifier":
        env = os.environ if environ is None else environ
        usec = None
        try:
            pid = env.get("WATCHDOG_PID")
            if env.get("WATCHDOG_USEC") and (not pid or int(pid) == os.getpid()):
                usec = int(env["WATCHDOG_USEC"])
        except ValueError:
            usec = None
        return cls(env.get("NOTIFY_SOCKET"), usec)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *lines: str) -> bool:
        """Send ``KEY=value`` lines in one datagram; False when there is no socket or it fails."""
        if not self.address:
            return False
        data = "\n".join(lines).encode()
        with self._lock:
            try:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.sendto(data, self.address)
                return True
            except OSError as exc:
                if not self._warned:  # systemd gone or socket missing: say so once, keep running
                    log.warning("sd_notify to %r failed: %s", self.address, exc)
                    self._warned = True
                return False

    def ready(self, status: str = "") -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")

    def stopping(self, status: str = "stopping") -> bool:
        return self.notify("STOPPING=1", f"STATUS={status}")

    def watchdog_ping(self, status: str | None = None) -> bool:
        """``WATCHDOG=1`` (with an optional status), at most once per half watchdog period."""
        if not self.address or self.ping_every is None:
            return False
        now = self.clock()
        if self._last_ping is not None and now - self._last_ping < self.ping_every:
            return False
        self._last_ping = now
        return self.notify("WATCHDOG=1", *([f"STATUS={status}"] if status else []))

    def attach(self, loop) -> None:
        """Ping from ``loop``'s alive hook with a short status (fps and state, or the fault)."""

        def on_alive():
            if self.ping_every is None:
                return
            now = self.clock()
            if self._last_ping is not None and now - self._last_ping < self.ping_every:
                return  # the cheap path, every frame
            if loop.health.camera == "fault":
                self.watchdog_ping(f"camera fault, retrying: {loop.health.camera_error}"[:200])
            else:
                self.watchdog_ping(f"running: {loop.health.fps:.1f} fps, {loop.state.level}")

        loop.on_alive = on_alive

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None
