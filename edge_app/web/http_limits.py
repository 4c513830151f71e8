"""What one HTTP client may hold: the size of its request head, the time it takes to
send it and its body, a place in the listen queue, and the share of worker threads one
address may keep busy.

cheroot reads a request's line and headers in a worker thread, with no limit on their
size (a 200 MB header was buffered whole) and only a per-read timeout (a client sending
one header line every 5 s held its worker for ever: 24 such clients took the whole pool).
Here the head is capped at ``HEAD_LIMIT_BYTES`` (414 for the request line, 431 for the
headers, answered before more is buffered), and a watchdog thread closes a connection
that has not finished its head ``HEAD_DEADLINE_S`` after it started. A request *body* may
take longer (an upload on weak Wi-Fi), so it gets Apache mod_reqtimeout's rule instead:
``BODY_GRACE_S`` to start, one more second for every ``BODY_MIN_RATE`` bytes received (but
never more than the grace ahead: a fast start buys no long stop); a body sent a byte every
few seconds is cut after the grace, from however many addresses it comes; and a body
over ``SMALL_BODY_BYTES`` is refused unread except on the paths that take uploads; a
chunked body (no length declared) is refused with 411 wherever it is sent.
Header names with an underscore are dropped (``X_Forwarded_For`` would
pass for ``X-Forwarded-For``, see ``web/proxies.py``). The listen backlog is deep enough
for a classroom's burst of log-ins, and one
client address may keep at most a share of the threads busy (``PeerLimits``: a quarter on
a device, half on the classroom page); past that it is
answered 503 at once, and everyone else still gets in. Frigate puts nginx in front for
the same reasons; for one desk device these limits and a larger thread pool
(``web.threads``) are enough, as ``tools/attack.py`` measures.
"""
from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Callable

from cheroot import server as cheroot_server

from edge_app.addresses import client_key, is_loopback
from edge_app.web.proxies import TrustedProxies

log = logging.getLogger(__name__)
HEAD_LIMIT_BYTES = 32 * 1024  # request line + headers: browsers send a few kB, cookies included
HEAD_DEADLINE_S = 10.0
BODY_GRACE_S = 20.0  # mod_reqtimeout's default body timeout ...
BODY_MIN_RATE = 1000  # ... extended by a second per this many bytes (weak Wi-Fi moves tens of kB/s)
SMALL_BODY_BYTES = 64 * 1024  # a log-in, a settings form: any path but the uploads' (``large_body_paths``)
LISTEN_BACKLOG = 128


class Summary:
    """Counts of one kind of refusal, written to the log at most once per ``every_s``: an
    attack repeats them many times a second, and the journal lives on an SD card. The
    first is written at once; what came after it, once the interval is over (``flush_due``,
    which the deadline watchdog calls as it ticks)."""

    def __init__(self, message: str, every_s: float = 60.0, level: int = logging.WARNING):
        self.message, self.every_s, self.level = message, every_s, level
        self._lock = threading.Lock()
        self._pending = 0
        self._last = -float("inf")
        self._detail = ""

    def add(self, n: int = 1, detail: str = "") -> None:
        with self._lock:
            self._pending += n
            self._detail = detail or self._detail
        self.flush_due()

    def flush_due(self) -> None:
        with self._lock:
            now = time.monotonic()
            if not self._pending or now - self._last < self.every_s:
                return
            count, detail, self._pending, self._last = self._pending, self._detail, 0, now
        log.log(self.level, self.message, count, detail)


class Deadlines:
    """One watchdog thread that shuts down connections too slow to send their request head
    (``deadline_s`` after it started) or their body (``body_grace_s`` plus a second per
    ``body_min_rate`` bytes received). Shutting the socket down wakes the worker's blocked
    read with end-of-file; cheroot then drops the connection and the thread is free."""

    def __init__(self, deadline_s: float = HEAD_DEADLINE_S, every_s: float = 0.25,
                 body_grace_s: float = BODY_GRACE_S, body_min_rate: float = BODY_MIN_RATE):
        self.deadline_s, self.every_s = deadline_s, every_s
        self.body_grace_s, self.body_min_rate = body_grace_s, body_min_rate
        self._lock = threading.Lock()
        self._watched: dict[int, tuple[socket.socket, str, Callable[[float], bool]]] = {}
        self._next = 0
        self._thread: threading.Thread | None = None
        self.closed = 0  # connections cut for a slow head (for tests and logs)
        self.closed_bodies = 0  # ... and for a slow body
        self._logs = {what: Summary(f"closed %d connection(s) too slow to send a request {what}%s", level=logging.INFO)
                      for what in ("head", "body")}
        self.summaries: list[Summary] = list(self._logs.values())  # flushed as the watchdog ticks

    def watch(self, sock: socket.socket) -> int:
        """Watch a connection starting its request head."""
        end = time.monotonic() + self.deadline_s
        return self._add(sock, "head", lambda now: now > end)

    def watch_body(self, request: cheroot_server.HTTPRequest) -> int:
        """Watch a request whose body is about to be read (until ``done``). The time it has
        earned is never more than ``body_grace_s`` ahead: with no such cap, a body sent fast
        up to its last byte earned a second per kB of it (a 10 MB upload: 3 hours) and could
        then stop and hold its thread, and its share of the upload budget, that long."""
        counted = request.conn.rfile.arrived
        state = {"deadline": time.monotonic() + self.body_grace_s, "seen": 0}

        def overdue(now: float) -> bool:
            received = request.conn.rfile.arrived - counted
            earned = (received - state["seen"]) / self.body_min_rate
            state["seen"] = received
            state["deadline"] = min(state["deadline"] + earned, now + self.body_grace_s)
            return _body_pending(request) and now > state["deadline"]

        return self._add(request.conn.socket, "body", overdue)

    def _add(self, sock: socket.socket, what: str, overdue: Callable[[float], bool]) -> int:
        with self._lock:
            self._next += 1
            self._watched[self._next] = (sock, what, overdue)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="http-deadlines", daemon=True)
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
                late = [(k, sock, what) for k, (sock, what, overdue) in self._watched.items() if _late(overdue, now)]
                for k, _, _ in late:
                    del self._watched[k]
            for _, sock, what in late:
                if what == "head":
                    self.closed += 1
                else:
                    self.closed_bodies += 1
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            for what, summary in self._logs.items():
                n = sum(1 for _, _, w in late if w == what)
                if n:
                    summary.add(n)
            for summary in self.summaries:
                summary.flush_due()


class ArrivalCounter:
    """A connection's reader that counts bytes as they arrive. cheroot's own count moves
    only when a read returns, and bottle reads a body in one call that blocks until all of
    it is in: a steady upload would look stalled until its last byte. Here a read of
    ``size`` bytes is made of the socket's reads as they come (``read1``), each counted."""

    def __init__(self, inner):
        self._inner = inner
        self.arrived = 0

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            data = self._inner.read(size)
            self.arrived += len(data)
            return data
        parts = []
        while size > 0:
            chunk = self._inner.read1(size)
            if not chunk:
                break  # end of file: the client closed, or the deadline shut the socket
            self.arrived += len(chunk)
            size -= len(chunk)
            parts.append(chunk)
        return b"".join(parts)

    def readline(self, size: int | None = -1) -> bytes:
        line = self._inner.readline(size)
        self.arrived += len(line)
        return line

    def __iter__(self):
        return self

    def __next__(self) -> bytes:
        line = next(self._inner)
        self.arrived += len(line)
        return line

    def __getattr__(self, name):  # has_data, close, closed, bytes_read ...: cheroot's reader answers
        return getattr(self._inner, name)


def _declared_length(request: cheroot_server.HTTPRequest) -> int:
    try:
        return int(request.inheaders.get(b"Content-Length", b"0"))
    except ValueError:
        return 0  # cheroot answers 400 for it


def _path(request: cheroot_server.HTTPRequest) -> str:
    return request.path.split(b"?", 1)[0].decode("latin-1")  # cheroot keeps it as the bytes received


def _late(overdue: Callable[[float], bool], now: float) -> bool:
    """One watch's verdict; a watch that fails is left alone rather than ending the watchdog
    (and with it every deadline)."""
    try:
        return overdue(now)
    except Exception:  # noqa: BLE001 - logged; the other connections still need watching
        log.exception("a connection deadline check failed")
        return False


def _body_pending(request: cheroot_server.HTTPRequest) -> bool:
    """Is the request's body still to come? (Once it is all read, the app is answering: a
    long answer, a live stream for one, is not the client's slowness.)"""
    body = request.rfile
    if isinstance(body, cheroot_server.KnownLengthRFile):
        return body.remaining > 0
    if isinstance(body, cheroot_server.ChunkedRFile):
        return not body.closed
    return True  # cheroot has not wrapped it yet


class PeerLimits:
    """At most ``per_peer`` worker threads busy for one client at a time: one IPv4
    address, or one IPv6 /64 (``addresses.client_key``: a host can pick a new address
    in its /64 for every connection).

    Loopback is exempt (this machine's own tools, a reverse proxy in front), and so are
    the trusted proxies (``web.trusted_proxies``); tests that play an attacker on loopback
    turn ``exempt_loopback`` off."""

    def __init__(self, per_peer: int):
        self.per_peer = per_peer
        self.exempt_loopback = True
        self.exempt_proxies: TrustedProxies | None = None
        self.refused = 0  # requests answered 503 for it (for tests and logs)
        self.refusals = Summary("refused %d request(s) from an address holding its share of threads already "
                                "(last: %s)")
        self._busy: dict[str, int] = {}
        self._lock = threading.Lock()

    def enter(self, address: str) -> bool:
        """Take a thread for ``address``; False when it already holds its share."""
        key = client_key(address)
        with self._lock:
            n = self._busy.get(key, 0)
            if n >= self.per_peer and not self._exempt(address):
                self.refused += 1
                return False
            self._busy[key] = n + 1
            return True

    def _exempt(self, address: str) -> bool:
        return ((self.exempt_loopback and is_loopback(address))
                or (self.exempt_proxies is not None and self.exempt_proxies.trusts(address)))

    def busy(self, address: str) -> int:
        """Worker threads busy now for ``address``'s client."""
        with self._lock:
            return self._busy.get(client_key(address), 0)

    def leave(self, address: str) -> None:
        key = client_key(address)
        with self._lock:
            n = self._busy.get(key, 0) - 1
            if n > 0:
                self._busy[key] = n
            else:
                self._busy.pop(key, None)


BUSY_TEXT = b"This address has too many requests in progress: try again in a few seconds.\n"
BUSY_REPLY = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nRetry-After: 5\r\n"
              b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(BUSY_TEXT), BUSY_TEXT))


def _connection_class(deadlines: Deadlines, peers: PeerLimits, large_body_paths: tuple[str, ...]) -> type:
    class LimitedConnection(cheroot_server.HTTPConnection):
        RequestHandlerClass = _request_class(deadlines, large_body_paths)

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.rfile = ArrivalCounter(self.rfile)

        def communicate(self):
            peer = str(self.remote_addr or "")
            if not peers.enter(peer):
                try:  # read nothing of the request: the thread is back in the pool at once
                    self.wfile.write(BUSY_REPLY)
                    self.wfile.flush()
                except OSError:
                    pass
                peers.refusals.add(detail=peer)
                return False
            try:
                return super().communicate()
            finally:
                peers.leave(peer)

    return LimitedConnection


class _NoUnderscoreHeaders(cheroot_server.HeaderReader):
    """Drops header names with an underscore. cheroot files ``X_Forwarded_For`` under the
    same WSGI key as ``X-Forwarded-For``, the later one winning: behind a proxy that passes
    such headers on, a client could replace the address the proxy appended (nginx drops
    them itself; cheroot's own ``DropUnderscoreHeaderReader`` compares str with bytes)."""

    def _allow_header(self, key_name: bytes) -> bool:
        return b"_" not in key_name


def _request_class(deadlines: Deadlines, large_body_paths: tuple[str, ...]) -> type:
    class LimitedRequest(cheroot_server.HTTPRequest):
        header_reader = _NoUnderscoreHeaders()

        def parse_request(self):
            token = deadlines.watch(self.conn.socket)
            try:
                super().parse_request()
            finally:
                deadlines.done(token)

        def respond(self):
            if self.chunked_read:
                # cheroot undoes the chunking and bottle then parses the chunks again, so no such body
                # works: a body that is chunked twice was read without end (to a temporary file), and one
                # chunked once was scanned a byte at a time (a CPU for a minute). Browsers send none.
                self.close_connection = True
                return self.simple_response("411 Length Required", "Send the body with a Content-Length header: "
                                                                   "chunked request bodies are not accepted.")
            if not _declared_length(self):
                return super().respond()  # no body to wait for
            if _declared_length(self) > SMALL_BODY_BYTES and _path(self) not in large_body_paths:
                # refused before a byte is read: a slow sender of a large body would hold the thread for
                # as long as the body rule allows (a second per kB), on a path that never needs one
                self.close_connection = True
                return self.simple_response("413 Payload Too Large",
                                            f"At most {SMALL_BODY_BYTES // 1024} kB may be sent here.")
            token = deadlines.watch_body(self)
            try:
                return super().respond()
            finally:
                deadlines.done(token)

        def send_headers(self):
            # cheroot reads the rest of a body the app left unread, to keep the connection: all of it, as
            # large as declared (a refused 300 MB upload was read to its end). Past a small body, close.
            if getattr(self.rfile, "remaining", 0) > SMALL_BODY_BYTES:
                self.close_connection = True
            return super().send_headers()

        def simple_response(self, status, msg=""):
            # cheroot says 413 for oversized headers; 431 is what the status is for
            if str(status).startswith("413") and "headers" in str(msg):
                self.close_connection = True
                status = "431 Request Header Fields Too Large"
            return super().simple_response(status, msg)

    return LimitedRequest


def apply(httpd: cheroot_server.HTTPServer, peers: PeerLimits, deadlines: Deadlines | None = None,
          large_body_paths: tuple[str, ...] = ()) -> Deadlines:
    """Put the limits on a cheroot server before it binds; returns its deadline watchdog.
    ``large_body_paths``: the paths that take uploads; every other body is at most
    ``SMALL_BODY_BYTES``."""
    deadlines = deadlines or Deadlines()
    deadlines.summaries.append(peers.refusals)  # its ticks write the refusals' late counts too
    httpd.max_request_header_size = HEAD_LIMIT_BYTES
    httpd.request_queue_size = LISTEN_BACKLOG
    httpd.ConnectionClass = _connection_class(deadlines, peers, large_body_paths)
    return deadlines
