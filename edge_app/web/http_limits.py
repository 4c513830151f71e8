"""What one HTTP client may hold: the size of its request head, the time it takes to
send it, a place in the listen queue, and the share of worker threads one address may
keep busy.

cheroot reads a request's line and headers in a worker thread, with no limit on their
size (a 200 MB header was buffered whole) and only a per-read timeout (a client sending
one header line every 5 s held its worker for ever: 24 such clients took the whole pool).
Here the head is capped at ``HEAD_LIMIT_BYTES`` (414 for the request line, 431 for the
headers, answered before more is buffered), a connection that has not finished its head
``HEAD_DEADLINE_S`` after it started is closed by a watchdog thread, and the listen
backlog is deep enough for a classroom's burst of log-ins. A request *body* has no such
deadline (an upload may take a minute on weak Wi-Fi): one sent a byte every few seconds
holds its thread, so one client address may keep at most half the threads busy
(``PeerLimits``); past that it is answered 503 at once, and everyone else still gets in.
Frigate puts nginx in front for the same reasons; for one desk device these limits and a
larger thread pool (``web.threads``) are enough, as ``tools/attack.py`` measures.
"""
from __future__ import annotations

import logging
import socket
import threading
import time

from cheroot import server as cheroot_server

from edge_app.web.hardening import is_loopback

log = logging.getLogger(__name__)
HEAD_LIMIT_BYTES = 32 * 1024  # request line + headers: browsers send a few kB, cookies included
HEAD_DEADLINE_S = 10.0
LISTEN_BACKLOG = 128


class HeadDeadlines:
    """Shuts down connections still sending their request head after ``deadline_s``."""

    def __init__(self, deadline_s: float = HEAD_DEADLINE_S, every_s: float = 0.25):
        self.deadline_s, self.every_s = deadline_s, every_s
        self._lock = threading.Lock()
        self._watched: dict[int, tuple[socket.socket, float]] = {}
        self._next = 0
        self._thread: threading.Thread | None = None
        self.closed = 0  # connections cut for being too slow (for tests and logs)

    def watch(self, sock: socket.socket) -> int:
        with self._lock:
            self._next += 1
            self._watched[self._next] = (sock, time.monotonic() + self.deadline_s)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="http-head-deadlines", daemon=True)
                self._thread.start()
            return self._next

    def done(self, token: int) -> None:
        with self._lock:
            self._watched.pop(token, None)

    def _run(self) -> None:
        while True:
            time.sleep(self.every_s)
            now = time.monotonic()
            with self._lock:
                late = [(k, s) for k, (s, deadline) in self._watched.items() if now > deadline]
                for k, _ in late:
                    del self._watched[k]
            for _, sock in late:
                self.closed += 1
                try:  # wakes the worker's blocked read with end-of-file; cheroot then drops the connection
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            if late:
                log.info("closed %d connection(s) that took over %.0f s to send a request head", len(late),
                         self.deadline_s)


class PeerLimits:
    """At most ``per_peer`` worker threads busy for one client address at a time.

    Loopback is exempt (this machine's own tools, a reverse proxy in front); tests that
    play an attacker on loopback turn ``exempt_loopback`` off."""

    def __init__(self, per_peer: int):
        self.per_peer = per_peer
        self.exempt_loopback = True
        self.refused = 0  # requests answered 503 for it (for tests and logs)
        self._busy: dict[str, int] = {}
        self._lock = threading.Lock()

    def enter(self, address: str) -> bool:
        """Take a thread for ``address``; False when it already holds its share."""
        with self._lock:
            n = self._busy.get(address, 0)
            if n >= self.per_peer and not (self.exempt_loopback and is_loopback(address)):
                self.refused += 1
                return False
            self._busy[address] = n + 1
            return True

    def leave(self, address: str) -> None:
        with self._lock:
            n = self._busy.get(address, 0) - 1
            if n > 0:
                self._busy[address] = n
            else:
                self._busy.pop(address, None)


BUSY_TEXT = b"This address has too many requests in progress: try again in a few seconds.\n"
BUSY_REPLY = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nRetry-After: 5\r\n"
              b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(BUSY_TEXT), BUSY_TEXT))


def _connection_class(deadlines: HeadDeadlines, peers: PeerLimits) -> type:
    class LimitedConnection(cheroot_server.HTTPConnection):
        RequestHandlerClass = _request_class(deadlines)

        def communicate(self):
            peer = str(self.remote_addr or "")
            if not peers.enter(peer):
                try:  # read nothing of the request: the thread is back in the pool at once
                    self.wfile.write(BUSY_REPLY)
                    self.wfile.flush()
                except OSError:
                    pass
                if peers.refused in (1, 10, 100, 1000):
                    log.warning("refused %d request(s) from an address holding %d threads already (last: %s)",
                                peers.refused, peers.per_peer, peer)
                return False
            try:
                return super().communicate()
            finally:
                peers.leave(peer)

    return LimitedConnection


def _request_class(deadlines: HeadDeadlines) -> type:
    class LimitedRequest(cheroot_server.HTTPRequest):
        def parse_request(self):
            token = deadlines.watch(self.conn.socket)
            try:
                super().parse_request()
            finally:
                deadlines.done(token)

        def simple_response(self, status, msg=""):
            # cheroot says 413 for oversized headers; 431 is what the status is for
            if str(status).startswith("413") and "headers" in str(msg):
                self.close_connection = True
                status = "431 Request Header Fields Too Large"
            return super().simple_response(status, msg)

    return LimitedRequest


def apply(httpd: cheroot_server.HTTPServer, peers: PeerLimits,
          deadlines: HeadDeadlines | None = None) -> HeadDeadlines:
    """Put the limits on a cheroot server before it binds; returns its deadline watchdog."""
    deadlines = deadlines or HeadDeadlines()
    httpd.max_request_header_size = HEAD_LIMIT_BYTES
    httpd.request_queue_size = LISTEN_BACKLOG
    httpd.ConnectionClass = _connection_class(deadlines, peers)
    return deadlines
