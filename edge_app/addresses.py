"""Client addresses as the limits count them: parsed once, and IPv6 by its /64.

One IPv6 host is normally given a whole /64 (SLAAC, privacy addresses), so a laptop can
pick a fresh address for every connection: counted per address, it would escape the
per-client thread share and the log-in throttle. A /64 is one subscriber's network, so
it is counted as one client. IPv4 stays per address (a school's NAT shows many students
as one address either way)."""
from __future__ import annotations

import ipaddress

IPV6_CLIENT_PREFIX = 64


def ip_of(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """A bare address (an IPv6 zone dropped), an IPv4-mapped one as IPv4 (``::ffff:10.0.0.5``
    on a dual-stack socket); None for anything else."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return None
    return getattr(ip, "ipv4_mapped", None) or ip


def is_loopback(address: str) -> bool:
    """True for 127.0.0.0/8, ::1 and IPv4-mapped loopback; False for anything unparsable."""
    ip = ip_of(address)
    return ip is not None and ip.is_loopback


def client_key(address: str) -> str:
    """What one client is counted as: an IPv4 address itself, an IPv6 address's /64
    (``2001:db8:1:2::/64``), anything unparsable as it is (a Unix socket's empty peer)."""
    ip = ip_of(address)
    if ip is None:
        return address
    if ip.version == 6 and not ip.is_loopback:
        return str(ipaddress.IPv6Network((ip, IPV6_CLIENT_PREFIX), strict=False))
    return str(ip)
