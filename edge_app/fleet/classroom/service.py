"""``engage-edge classroom``: the broker subscriber and the web page, wired and run together."""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge_app.fleet.classroom.app import ClassroomContext, make_classroom_app
from edge_app.fleet.classroom.model import Classroom
from edge_app.fleet.classroom.subscriber import Subscriber
from edge_app.fleet.settings import MqttSettings
from edge_app.store.accounts import Accounts
from edge_app.store.database import Store
from edge_app.store.desk_names import DeskNames
from edge_app.store.housekeeping import Housekeeping
from edge_app.store.login_throttle import ThrottlePolicy
from edge_app.web import reach
from edge_app.web.hardening import AllowedHosts
from edge_app.web.proxies import TrustedProxies

if TYPE_CHECKING:
    from edge_app.config import LoginSettings


log = logging.getLogger(__name__)
MAX_PAGES = 16  # live pages open at once, by default: every open page holds a server thread
CLEARED_KEY = "classroom.removed_desks"  # device id -> when it was removed from the page (model.remove_offline)
EXPECTED_KEY = "classroom.expected_desks"  # the room's desks (device ids), as last saved on the page
MOST_PAGES = 500  # what --max-pages may ask: 1,032 threads; past it, run one service per school or building


def threads_for(max_pages: int) -> int:
    """Server threads for ``max_pages`` live pages: each page holds one, and all of them behind
    one address (a reverse proxy, a school's NAT) must fit that address's half of the threads
    (``http_limits.PeerLimits``) with room for its other requests; never fewer than 64."""
    return max(64, 2 * max_pages + 32)


class ClassroomService:
    def __init__(self, settings: MqttSettings, data_dir: Path, host: str = "127.0.0.1", port: int = 8090,
                 login: LoginSettings | None = None, tls_cert: str = "", tls_key: str = "",
                 max_pages: int = MAX_PAGES, allowed_hosts: str = "", trusted_proxies: str = "",
                 reserve_mb: int | None = None):
        from edge_app import config as config_mod

        self.settings = settings
        # the broker's client first: unusable TLS files fail before the database and a first-start
        # admin password exist (a password printed with an error is easily lost)
        self.classroom = Classroom()
        self.subscriber = Subscriber(settings, self.classroom)
        self.store = Store(data_dir)
        self.store.retention_setting = False  # a full disk's advice: no retention to lower here
        throttle = ThrottlePolicy.from_config(login if login is not None else config_mod.defaults().login)
        self.accounts = Accounts(self.store, throttle=throttle)
        # the desks an instructor removed from the page, kept: a restart does not bring them back from the broker
        saved = self.store.get_setting(CLEARED_KEY, {})
        self.classroom.set_cleared(saved if isinstance(saved, dict) else {})
        self.classroom.on_cleared = lambda cleared: self.store.set_setting(CLEARED_KEY, cleared)
        # the name each listed desk last told, for its tile until it is heard: before the list, which gives them
        self.names = DeskNames(self.store)
        self.classroom.set_names(self.names.load())
        listed = self.store.get_setting(EXPECTED_KEY, [])
        self.classroom.set_expected(listed if isinstance(listed, list) else [])
        self.classroom.on_names = self.names.remember
        self.generated_password = self.accounts.ensure_admin()
        # the page's database holds accounts and the audit log, no student's record: the
        # device's default retention bounds what little else could be there
        retention = config_mod.defaults().store.retention_days
        # (store.reserve_mb, no floor to keep free: no logging here pauses below store.min_free_mb); a test's: 1 MB
        reserve = (config_mod.defaults().store.reserve_mb if reserve_mb is None else reserve_mb, 0)
        self.housekeeping = Housekeeping(self.store, self.accounts, lambda: retention, reserve=lambda: reserve)
        ctx = ClassroomContext(self.classroom, self.accounts, self.subscriber.status, bool(tls_cert), time.time(),
                               AllowedHosts.with_names(allowed_hosts), max_streams=max(1, max_pages),
                               trusted_proxies=TrustedProxies(trusted_proxies),
                               save_expected=lambda desks: self.store.set_setting(EXPECTED_KEY, desks))
        self.app = make_classroom_app(ctx)
        self.host, self.port, self.threads, self.max_pages = host, port, threads_for(max_pages), max_pages
        self.tls_cert, self.tls_key, self.trusted_proxies = tls_cert, tls_key, trusted_proxies
        self.server: Any = None  # edge_app.web.app.Server once started
        self._in_use: int | None = None  # backup.hold_in_use's descriptor while running: no restore under it

    def start(self) -> "ClassroomService":
        from edge_app.store.backup import hold_in_use, remove_restore_leftovers
        from edge_app.web.server import Server

        self._in_use = hold_in_use(self.store.data_dir)
        for path in remove_restore_leftovers(self.store.data_dir):  # no restore runs while it is held
            log.info("removed %s, left by a restore that was stopped part-way", path)
        self.server = Server(self.app, self.host, self.port, self.threads, self.tls_cert, self.tls_key,
                             self.trusted_proxies).start()
        self.subscriber.start()
        self.housekeeping.start()
        return self

    @property
    def url(self) -> str:
        """The page on this machine (what its own tools and the tests open)."""
        return reach.local_url(self.host, self.server.port if self.server else self.port, bool(self.tls_cert))

    def urls(self) -> list[str]:
        """Where instructors open the page (``web.reach.urls``)."""
        return reach.urls(self.host, self.server.port if self.server else self.port, bool(self.tls_cert))

    def plain_http_warning(self) -> str:
        """A warning when the page is served without TLS on an address other computers reach:
        passwords and the class then cross the network readable by anyone on it."""
        return reach.plain_http_warning(self.host, bool(self.tls_cert), "the page", "log-in passwords and the class",
                                        "Give --https-cert and --https-key, or serve it on 127.0.0.1 behind a reverse "
                                        "proxy with TLS (README: Security)")

    def stop(self) -> None:
        self.housekeeping.stop()
        self.subscriber.stop()
        self.classroom.close()  # ends the pages' live streams, so the server stops at once
        if self.server:
            self.server.stop()
        self.names.close()  # the names not written yet (at most a minute's), before the database closes
        self.store.close()
        if self._in_use is not None:
            os.close(self._in_use)
            self._in_use = None
