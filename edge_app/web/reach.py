"""Where a server of ours is reached from other computers, and whether what crosses the
network on the way is readable: the addresses a start-up line prints and its plain-HTTP
warning, for the device's web UI and the classroom page alike. On every interface
(``0.0.0.0``) they printed 127.0.0.1, which every other computer reads as itself."""
from __future__ import annotations

import ipaddress
import socket

EVERY_INTERFACE = ("0.0.0.0", "", "::")


def reachable_addresses() -> list[str]:
    """This machine's addresses other computers may reach it by: the one its default route
    leaves from (a UDP "connection" sends nothing) and those its host name resolves to,
    loopback left out."""
    found: list[str] = []
    for family, probe in ((socket.AF_INET, "192.0.2.1"), (socket.AF_INET6, "2001:db8::1")):
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as s:
                s.connect((probe, 9))
                found.append(s.getsockname()[0])
        except OSError:  # no route of that family (a machine with no network yet)
            pass
    try:
        found += [str(info[4][0]) for info in socket.getaddrinfo(socket.gethostname(), None, proto=socket.IPPROTO_TCP)]
    except OSError:
        pass
    addresses = []
    for a in found:
        a = a.split("%")[0]  # an IPv6 address's zone
        if a not in addresses and not is_local(a) and not ipaddress.ip_address(a).is_link_local:
            addresses.append(a)
    return addresses


def is_local(host: str) -> bool:
    """``host`` is this machine only (loopback): nothing served there crosses a network."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # "" (every interface) or a name


def bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def local_url(host: str, port: int, tls: bool) -> str:
    """The server on this machine (what its own tools and the tests open)."""
    shown = "127.0.0.1" if host in EVERY_INTERFACE else host
    return f"{'https' if tls else 'http'}://{bracketed(shown)}:{port}"


def urls(host: str, port: int, tls: bool) -> list[str]:
    """Where people open it: on every interface, this machine's host name and the addresses
    other computers reach it by; else the address it serves."""
    if host not in EVERY_INTERFACE:
        return [local_url(host, port, tls)]
    addresses = [a for a in reachable_addresses() if host == "::" or ":" not in a]  # 0.0.0.0: IPv4 only
    scheme = "https" if tls else "http"
    return [f"{scheme}://{bracketed(h)}:{port}" for h in [socket.gethostname(), *addresses]]


def plain_http_warning(host: str, tls: bool, what: str, crossing: str, how: str) -> str:
    """A warning when ``what`` is served without TLS on an address other computers reach:
    ``crossing`` then crosses the network readable by anyone on it; ``how`` to avoid it."""
    if tls or is_local(host):
        return ""
    return (f"warning: {what} is served over plain HTTP on {host or '0.0.0.0'}: {crossing} cross the network "
            f"unencrypted. {how}")
