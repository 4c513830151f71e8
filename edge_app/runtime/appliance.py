"""Wiring: build every stage from the configuration and run the appliance.

Kept apart from the stages so each of them stays testable alone; ``Appliance`` is also
what the end-to-end tests start on a loopback port.
"""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping

from edge_app import config as config_mod
from edge_app.config import Config, ConfigError
from edge_app.device.indicators import Indicator, make_indicator
from edge_app.engagement import Group, group_of
from edge_app.fleet.publisher import model_version, publisher_for
from edge_app.runtime.capture import CaptureLoop
from edge_app.runtime.live import LiveFrame
from edge_app.store.accounts import Accounts
from edge_app.store.database import Store, kept_in_memory
from edge_app.store.housekeeping import Housekeeping
from edge_app.store.leftovers import hold_images
from edge_app.store.login_throttle import ThrottlePolicy
from edge_app.vision.classifier import EmotionClassifier
from edge_app.vision.detector import detector_from_config
from edge_app.vision.sources import FrameSource, make_source
from edge_app.vision.stills import Analyzer
from edge_app.web import reach
from edge_app.web.app import UPLOAD_PATHS, Context, make_app
from edge_app.web.server import Server

log = logging.getLogger(__name__)


def demo_picks(classifier: EmotionClassifier, mapping: Mapping[str, str]) -> list[int]:
    """Which reference faces the demo shows: for each engagement group the face the model
    places there most confidently, so the demo walks through every state it can. The
    indices are into ``faces.demo_cuts()``."""
    from edge_app.vision.faces import demo_faces

    best: dict[str, tuple[float, int]] = {}
    for i, face in enumerate(demo_faces()):
        p = classifier.probabilities(face)
        for label, prob in zip(classifier.labels, p):
            group = group_of(mapping[label])
            if prob > best.get(group, (-1.0, 0))[0]:
                best[group] = (float(prob), i)
    order = [Group.PARTIALLY_ENGAGED, Group.NOT_ENGAGED, Group.ENGAGED]
    return [best[g][1] for g in order if g in best]


def classifier_from_config(cfg: Config) -> EmotionClassifier:
    """The active model: model.manifest if pinned, else the flashed one, else the shipped one."""
    from edge_app.models.registry import active_manifest, shipped_not_running, sweep_at_start

    sweep_at_start(cfg)  # a flash killed part-way left a whole model's staging copy
    note = shipped_not_running(cfg)
    if note:
        log.info("%s", note)
    return EmotionClassifier(active_manifest(cfg), cfg.model.threads)


class Appliance:
    def __init__(self, cfg: Config, source: FrameSource | None = None, indicator: Indicator | None = None,
                 with_loop: bool = True, pin_factory=None, clock_set=None):
        """``clock_set``: whether the clock may be trusted (default ``clock.rule``: a time server
        has set it, or ``store.trust_device_clock``); the retention purge and quiet hours wait
        for it. StoreError when another appliance runs on the same
        data directory (``hold_images``), before this one opens a camera or a pin or logs."""
        self.store = Store(config_mod.data_dir(cfg))
        try:
            # before anything writes images: a file no row names is a killed write's
            self._images_held: int | None = hold_images(self.store)
        except BaseException:
            self.store.close()
            raise
        try:
            self._build(cfg, source, indicator, with_loop, pin_factory, clock_set)
        except BaseException:
            os.close(self._images_held)
            self._images_held = None
            self.store.close()
            raise

    def _build(self, cfg: Config, source: FrameSource | None, indicator: Indicator | None, with_loop: bool,
               pin_factory, clock_set) -> None:
        from edge_app.web.admin_settings import (
            with_saved_settings,  # the admin's settings page outlives restarts
        )

        file_cfg, cfg = cfg, with_saved_settings(self.store, cfg)
        from edge_app.device import clock

        clock_set = clock_set or clock.rule(cfg.store.trust_device_clock)
        web = cfg.web
        self.accounts = Accounts(self.store, web.session_idle_minutes * 60, web.session_max_hours * 3600,
                                 ThrottlePolicy.from_config(cfg.login), confirm_s=web.confirm_password_minutes * 60)
        self.classifier = classifier_from_config(cfg)  # before the admin: a model error must not eat its password
        detector = detector_from_config(cfg)  # likewise a corrupt detector file
        self.publisher = self._publisher(file_cfg, cfg)
        self.generated_password = self.accounts.ensure_admin()
        mapping = cfg.engagement.mapping
        self.analyzer = Analyzer(detector, self.classifier, mapping, cfg.engagement.min_confidence)
        self.live = LiveFrame()
        self.loop = None
        self.pause_button = None
        if with_loop:
            if source is None:
                spec = cfg.camera.source
                extra = {"face_picks": demo_picks(self.classifier, mapping)} if spec == "demo" else {}
                source = make_source(spec, cfg, **extra)
            self.indicator = indicator or make_indicator(cfg, pin_factory)
            self.loop = CaptureLoop(cfg, source, detector_from_config(cfg), self.classifier, self.store,
                                    self.indicator, self.live, clock_set=clock_set)  # quiet hours wait for it too
            from edge_app.device.pause_button import pause_button_for

            self.pause_button = pause_button_for(cfg, self.loop.privacy, pin_factory)
            if self.publisher:  # its heartbeats carry what the loop shows, also while the disk is full
                self.publisher.follow(self.loop)
        self.ctx = Context(cfg, self.store, self.accounts, self.analyzer, self.loop, self.live, time.time(),
                           publisher=self.publisher, file_cfg=file_cfg, lost_at_reboot=kept_in_memory(self.store.data_dir))
        self.app = make_app(self.ctx)
        self.server: Server | None = None
        self.housekeeping = self.ctx.housekeeping = Housekeeping(self.store, self.accounts,
                                                                 lambda: self.cfg.store.retention_days,
                                                                 clock_set=clock_set,
                                                                 reserve=lambda: (self.cfg.store.reserve_mb,
                                                                                  self.cfg.store.min_free_mb))
        from edge_app.models.watcher import ModelWatcher  # a flashed model is picked up without a restart

        self.model_watcher = self.ctx.model_watcher = ModelWatcher(cfg, self._use_classifier)

    def _publisher(self, file_cfg: Config, cfg: Config):
        """The [mqtt] publisher. Broker files the config file names that cannot be used stop the
        start (a technician's file, exit 2); the same from settings saved on Admin > Classroom broker
        do not (the web page would be down with the device, the database's value winning over any
        file edit): the device runs without the classroom connection, and says why."""
        try:
            return publisher_for(cfg, self.store, lambda: model_version(self.classifier.manifest))
        except ConfigError as exc:
            files = ("tls_ca", "tls_cert", "tls_key", "password_file")  # what make_client reads
            if all(getattr(cfg.mqtt, f) == getattr(file_cfg.mqtt, f) for f in files):
                raise  # the config file's own: a technician's to mend (exit 2)
            log.error("the classroom broker settings saved on Admin > Classroom broker cannot be used (%s): the desk "
                      "runs without sending to the classroom; correct them on that page", exc)
            return None

    @property
    def cfg(self) -> Config:
        """The config in use now: the settings page replaces it (``web.admin.apply_settings``)."""
        return self.ctx.cfg

    def _use_classifier(self, classifier: EmotionClassifier) -> None:
        self.classifier = self.analyzer.classifier = classifier
        if self.loop:
            self.loop.set_classifier(classifier)

    def start(self) -> "Appliance":
        if self._images_held is None:  # started again after a stop
            self._images_held = hold_images(self.store)
        if self.publisher:
            self.publisher.start()
        if self.loop:
            self.loop.start()
        web = self.cfg.web
        try:
            # a quarter of the threads an address: a laptop and a phone that each held half took them all
            self.server = Server(self.app, web.host, web.port, web.threads, web.tls_cert, web.tls_key,
                                 web.trusted_proxies, UPLOAD_PATHS, peer_share=4).start()
        except BaseException:  # e.g. the port is taken: the caller exits, so no loop may be left mid-inference
            if self.loop:
                self.loop.stop()
            os.close(self._images_held)  # nothing of this appliance writes images now
            self._images_held = None
            raise
        self.housekeeping.start()
        self.model_watcher.start()
        return self

    @property
    def url(self) -> str:
        """The web UI on this machine (what its own tools and the tests open)."""
        web = self.cfg.web
        return reach.local_url(web.host, self.server.port if self.server else web.port, bool(web.tls_cert))

    def urls(self) -> list[str]:
        """Where people open the web UI (``web.reach.urls``): on every interface, the addresses
        other computers reach it by, not 127.0.0.1."""
        web = self.cfg.web
        return reach.urls(web.host, self.server.port if self.server else web.port, bool(web.tls_cert))

    def plain_http_warning(self) -> str:
        web = self.cfg.web
        return reach.plain_http_warning(web.host, bool(web.tls_cert), "the web UI",
                                        "log-in passwords, students' photos and their results",
                                        "Set web.tls_cert and web.tls_key, or serve it on 127.0.0.1 behind a reverse "
                                        "proxy with TLS (README: Security)")

    def stop(self) -> None:
        self.housekeeping.stop()
        self.model_watcher.stop()
        self.live.close()  # the live viewers' endless streams end, so the server stops at once
        self.app.config["engage.analysis"].refuse_waiting()  # told while the server still answers them
        if self.server:
            self.server.stop()
        self.app.config["engage.analysis"].close()  # an upload in hand is stored before the store closes
        if self.pause_button:
            self.pause_button.close()
        if self.loop:
            self.loop.stop()
            self.indicator.close()  # after the loop: nothing shows a state on a closed LED
        if self.ctx.publisher:  # after the loop: its last minute row goes out too (the admin may have swapped it)
            self.ctx.publisher.stop()
        self.store.close()
        if self._images_held is not None:  # after every writer has stopped
            os.close(self._images_held)
            self._images_held = None
