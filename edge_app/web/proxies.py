"""Who the client is when a reverse proxy the technician trusts sits in front.

Behind a proxy every request comes from the proxy's address, so the log-in throttle
counts one student's wrong guesses against the whole school (25 lock the address), the
per-address share of threads is the proxy's, and the logs and audit name the proxy. A
proxy says who it forwarded for in ``X-Forwarded-For``, but any client can send that
header too, so it is believed only from the addresses listed in ``web.trusted_proxies``
(``engage-edge classroom --trusted-proxies``), none by default. The list is read from the
right: the proxy appends the address it saw, so the first address from the right that is
not a trusted proxy is the client, whatever a client wrote to the left of it.

A proxy that ends TLS also says how the browser connected (``X-Forwarded-Proto: https``):
from a trusted proxy this becomes the request's scheme, so the ``Origin`` check compares
what the browser sent with what it opened, and the session cookie is Secure and HSTS sent.
The name the browser opened comes in ``Host``, which the proxy passes on (nginx:
``proxy_set_header Host $http_host``). ``X-Forwarded-Host`` is believed from nobody: nginx
passes a client's own on unchanged, and a rebinding page's script could then name the
desk's address there and get past the allowed-host check. Bottle believes both headers
from anyone; here they are dropped, so a client cannot change the scheme or the host.
"""
from __future__ import annotations

import ipaddress

import bottle
from bottle import request

from edge_app.addresses import ip_of
from edge_app.config import ip_networks


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address as proxies write it: bare, ``[v6]``, or with a port (``a.b.c.d:p``, ``[v6]:p``)."""
    text = text.strip()
    if text.startswith("["):
        text = text[1:].split("]", 1)[0]
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    return ip_of(text)


class TrustedProxies:
    """The proxies whose ``X-Forwarded-For`` is believed (none: the socket's peer is the client)."""

    def __init__(self, listed: str = ""):
        self.networks = ip_networks(listed)

    def __bool__(self) -> bool:
        return bool(self.networks)

    def trusts(self, address: str) -> bool:
        ip = _address(address)
        return ip is not None and any(ip.version == n.version and ip in n for n in self.networks)

    def client(self, peer: str, forwarded_for: str) -> str:
        """The client's address for a request from ``peer`` carrying ``forwarded_for``."""
        if not self.trusts(peer):
            return peer
        client = peer
        for hop in reversed([h for h in forwarded_for.split(",") if h.strip()]):
            ip = _address(hop)
            if ip is None:  # "unknown", "_hidden" (RFC 7239): the name a trusted proxy gave its client
                return "".join(c for c in hop.strip() if c.isprintable())[:64] or "unknown"
            client = str(ip)
            if not self.trusts(client):
                return client
        return client  # every hop a trusted proxy: the first of them

    def install(self, app: bottle.Bottle) -> None:
        """Resolve the client before anything reads it: ``REMOTE_ADDR`` becomes the client,
        ``ee.peer`` keeps the socket's peer; a trusted proxy's scheme becomes the request's,
        and nobody else's. Install before the app's other hooks."""

        @app.hook("before_request")
        def forwarded_client():
            env = request.environ
            proto = env.pop("HTTP_X_FORWARDED_PROTO", "")
            env.pop("HTTP_X_FORWARDED_HOST", None)  # from no one (see above): the Host stays the one sent
            if not self:
                return
            peer = env.get("ee.peer") or env.get("REMOTE_ADDR") or ""
            env["ee.peer"] = peer
            env["REMOTE_ADDR"] = self.client(peer, env.get("HTTP_X_FORWARDED_FOR", ""))
            if self.trusts(peer):
                scheme = _last(proto).lower()
                if scheme in ("http", "https"):
                    env["wsgi.url_scheme"] = scheme


def _last(header: str) -> str:
    """The value the nearest proxy wrote (the last of a list a chain of proxies appended)."""
    return header.rsplit(",", 1)[-1].strip()


def over_tls() -> bool:
    """The browser's connection to us is HTTPS: the server's own TLS, or a trusted proxy's
    (``install``); False outside a request."""
    try:
        return request.environ.get("wsgi.url_scheme") == "https"
    except RuntimeError:  # no request under way
        return False
