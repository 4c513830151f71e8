"""The HTTP server: cheroot's threaded WSGI server in a background thread."""
from __future__ import annotations

import socket
import threading


class CertificateError(OSError):
    """The HTTPS certificate or key cannot be used. An OSError, as a port that cannot be
    bound, so a caller that reports one reports the other; ``cannot_serve`` then says what
    is wrong with the files rather than "choose another --port" (a key the service's user
    may not read said "Permission denied. Choose another --port")."""


def tls_adapter(cert: str, key: str):
    """cheroot's TLS adapter for ``cert`` and ``key``, or a CertificateError naming the file
    at fault and what to do."""
    import ssl

    from cheroot.ssl.builtin import BuiltinSSLAdapter

    from edge_app.fsutil import user_name

    for what, path in (("certificate", cert), ("key", key)):
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            fix = (f"let {user_name()!r}, who runs engage-edge, read it (firmware/README.md, 'Your own TLS certificate')"
                   if isinstance(exc, PermissionError) else "check the path")
            raise CertificateError(f"the HTTPS {what} {path} cannot be read ({exc.strerror}): {fix}") from None
    try:
        return BuiltinSSLAdapter(cert, key)
    except (ssl.SSLError, OSError) as exc:
        why = ("the key is not the certificate's own" if getattr(exc, "reason", None) == "KEY_VALUES_MISMATCH"
               else f"they are not a PEM certificate and its unencrypted PEM key: {exc}")
        raise CertificateError(f"the HTTPS certificate {cert} and key {key} cannot be used: {why}; give the "
                               "certificate and the key it was made with") from None


class Server:
    """cheroot's threaded WSGI server in a background thread (HTTPS when configured)."""

    def __init__(self, app, host: str, port: int, threads: int = 24, tls_cert: str = "", tls_key: str = "",
                 trusted_proxies: str = "", large_body_paths: tuple[str, ...] = (), peer_share: int = 2):
        """``peer_share``: one client address keeps at most 1/``peer_share`` of the threads
        busy (the classroom page: half, its pages behind a school's NAT; a device: a quarter)."""
        from cheroot import wsgi

        from edge_app.web import http_limits
        from edge_app.web.proxies import TrustedProxies

        self.httpd = wsgi.Server((host, port), app, numthreads=threads, timeout=10, shutdown_timeout=2)
        # stop() waits for the connection selector's next wake-up: 0.1 s (cheroot's default
        # is 0.5 s) makes a service stop or restart quick; idle wake-ups cost next to nothing
        self.httpd.expiration_interval = 0.1
        self.httpd.server_name = "engage-edge"  # the Server header said "Cheroot/11.1.2": an exact build, as /healthz hides ours
        # one address: its share of the threads at most, but never fewer than the ~6 connections a
        # browser opens to one host (unless the pool itself is smaller)
        self.peer_limits = http_limits.PeerLimits(max(threads // peer_share, min(threads, 6)))
        self.peer_limits.exempt_proxies = TrustedProxies(trusted_proxies)  # everyone behind one shares its address
        # head size, head and body time, body size outside the uploads' paths, listen backlog
        self.deadlines = http_limits.apply(self.httpd, self.peer_limits, large_body_paths=large_body_paths)
        if tls_cert:
            self.httpd.ssl_adapter = tls_adapter(tls_cert, tls_key)
        self.busy = BusyConnections.track(self.httpd)
        self.thread: threading.Thread | None = None

    def start(self) -> "Server":
        self.httpd.prepare()  # binds now, so a busy port fails here with a clear error
        self.thread = threading.Thread(target=self.httpd.serve, name="http", daemon=True)
        self.thread.start()
        return self

    @property
    def port(self) -> int:
        return self.httpd.bind_addr[1]

    def stop(self) -> None:
        """Stop serving: requests in progress get cheroot's ``shutdown_timeout`` to finish, then
        their connections are shut down both ways. cheroot itself only shuts the reading side
        and then waits for the worker without a limit: an endless response (the live MJPEG
        stream to an open tab) or a write to a client that stopped reading (a full socket
        buffer) kept the stop waiting for ever, or ~20 s, until systemd's SIGKILL lost what
        the rest of the stop would have written."""
        stopper = threading.Thread(target=self.httpd.stop, name="http-stop", daemon=True)
        stopper.start()
        stopper.join(self.httpd.shutdown_timeout + 0.5)
        if stopper.is_alive():
            self.busy.shut_down()  # their writes fail now, so their workers end
            stopper.join(5)
        if self.thread:
            self.thread.join(5)


class BusyConnections:
    """The connections a worker thread is serving now (not the idle keep-alive ones, which
    cheroot closes itself), so a stop can end them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: set = set()

    @classmethod
    def track(cls, httpd) -> "BusyConnections":
        """Wrap ``httpd``'s connection class (after ``http_limits.apply``) to count its connections."""
        busy = cls()

        class Tracked(httpd.ConnectionClass):
            def communicate(self):
                busy._add(self)
                try:
                    return super().communicate()
                finally:
                    busy._discard(self)

        httpd.ConnectionClass = Tracked
        return busy

    def _add(self, conn) -> None:
        with self._lock:
            self._open.add(conn)

    def _discard(self, conn) -> None:
        with self._lock:
            self._open.discard(conn)

    def __len__(self) -> int:
        with self._lock:
            return len(self._open)

    def shut_down(self) -> None:
        """Shut every busy connection down, both ways: a blocked read or write returns at once."""
        with self._lock:
            conns = list(self._open)
        for conn in conns:
            try:
                conn.socket.shutdown(socket.SHUT_RDWR)
            except (OSError, AttributeError):  # already closed
                pass
