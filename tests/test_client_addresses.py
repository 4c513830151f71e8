"""What counts as one client for the thread share and the log-in throttle: an IPv4
address, or an IPv6 /64 (a host picks addresses in its /64 at will)."""
from __future__ import annotations

import pytest

from edge_app import config as config_mod
from edge_app.addresses import client_key
from edge_app.web.http_limits import PeerLimits
from tests.conftest import ADMIN_PASSWORD
from tests.test_proxies import proxied_login


@pytest.mark.parametrize("address, key", [
    ("198.51.100.7", "198.51.100.7"),
    ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64"),
    ("2001:db8:1:2::1", "2001:db8:1:2::/64"),  # the same host's other address
    ("2001:db8:1:3::1", "2001:db8:1:3::/64"),  # the next /64: another client
    ("fe80::1%eth0", "fe80::/64"),  # a zone is not part of the address
    ("::ffff:198.51.100.7", "198.51.100.7"),  # a dual-stack socket's IPv4 client
    ("::1", "::1"),  # loopback stays itself (exempt from the share anyway)
    ("unknown", "unknown"),  # what a proxy may name: kept as it is
    ("", ""),
])
def test_an_ipv6_client_is_its_64(address, key):
    assert client_key(address) == key


def test_addresses_of_one_64_share_one_thread_share():
    peers = PeerLimits(2)
    peers.exempt_loopback = False
    assert peers.enter("2001:db8:1:2::a") and peers.enter("2001:db8:1:2::b")
    assert not peers.enter("2001:db8:1:2::c")  # a fresh address in the same /64 gets no more
    assert peers.enter("2001:db8:1:3::a")  # another /64 is another client
    peers.leave("2001:db8:1:2::a")
    assert peers.enter("2001:db8:1:2::d")  # the share is given back whichever address took it


def test_guesses_from_fresh_ipv6_addresses_slow_down_their_64_only(make_appliance, cfg):
    """Behind a trusted proxy (the test plays it over real HTTP), a guesser who uses a new
    address of its /64 for every attempt is slowed down as one client; a teacher in
    another /64 logs in."""
    changes = {"login.slow_after_address": 2, "login.first_delay_s": 30.0, "web.trusted_proxies": "127.0.0.1"}
    appliance = make_appliance(config_mod.with_changes(cfg, changes), with_loop=False)
    statuses = [proxied_login(appliance.url, f"2001:db8:1:2::{i + 1:x}", f"name{i}", "wrong-guess-1")
                for i in range(3)]
    assert statuses == [401, 401, 429]
    assert proxied_login(appliance.url, "2001:db8:1:3::1", "admin", ADMIN_PASSWORD) == 200
