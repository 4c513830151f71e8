"""The capture loop: camera -> faces -> emotions -> engagement -> LED/buzzer -> store.

It runs in one thread and never queues frames: each iteration asks the camera for the
newest frame, so a slow stage drops frames (the source counts them) instead of adding
latency. The camera is read in a helper thread with a timeout, so a camera that raises,
returns empty frames or hangs is detected, reported (health, metrics, LED fault pattern,
log) and retried with exponential back-off; the loop continues when the camera returns.
Database writes go through a background writer: a locked database or a full disk
pauses logging (health says why) and never stalls or kills the loop. JPEG encoding for
the live page happens only while someone watches (``LiveFrame``). Every stage is timed
into ``Metrics``, which feeds both ``/metrics`` and ``engage-edge bench``. Readers (the
web) get a frozen ``StateSnapshot`` of the latest frame, swapped in whole, never a lock.
"""
from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass, replace

import cv2
import numpy as np

from edge_app.config import Config
from edge_app.device.indicators import AlertMemory, BuzzerPolicy, Indicator
from edge_app.engagement import (
    ABSENT,
    CAMERA_FAULT,
    DISTRACTED,
    PAUSED,
    UNCERTAIN,
    EngagementRules,
    EngagementState,
    EngagementTracker,
    MinuteAggregator,
    Observation,
    group_of,
)
from edge_app.episodes import EpisodeLog
from edge_app.runtime.health import CameraState, Health
from edge_app.runtime.live import LiveFrame
from edge_app.runtime.metrics import STAGES, Metrics
from edge_app.runtime.privacy import PrivacySwitch
from edge_app.runtime.snapshot import StateSnapshot
from edge_app.runtime.store_writer import StoreWriter
from edge_app.store.database import PAUSE_KEY, Store
from edge_app.vision.align import aligned_crop
from edge_app.vision.classifier import EmotionClassifier
from edge_app.vision.detector import Detector, Face
from edge_app.vision.sources import CameraError, FrameSource
from edge_app.vision.stills import draw_faces
from edge_app.vision.tracker import FaceTracker

log = logging.getLogger(__name__)
# A camera that keeps failing and coming back (a loose cable, a stream that drops after each
# frame) logged two lines per cycle: thousands an hour into the journal, on the SD card.
# Fault lines are kept at most one per CAMERA_LOG_QUIET_S (counting the faults in between),
# but a fault that lasts CAMERA_LOG_LONG_S is always logged: the journal never hides an outage.
CAMERA_LOG_QUIET_S = 600.0
CAMERA_LOG_LONG_S = 60.0
# A paused loop writes that it is alive this often at most (one settings row, overwritten):
# a crash during a pause is dated by it to the minute, and an SD card is never written per wake.
PAUSE_SEEN_EVERY_S = 60.0
# a stop interrupts the loop's wait on a read, then gives the read this long to return so the
# camera can be closed (a frame's time); a hung read is left to itself, the device unclosed
READ_GRACE_S = 1.0
CLOSE_WAIT_S = 2.0  # the longest a stop waits for the camera to close (a wedged driver's close never returns)
# A frame without a face whose median luminance (0-255) is below this is too dark for one to be
# found: "Absent - too dark to see", not an empty chair. Measured with the shipped BlazeFace on
# the package's photos, 300 px faces on a plain wall, the room's light dimmed: Grace Hopper's face
# was lost below a frame median of 6 (5 with sensor noise), the demo's other faces below 3 to 5,
# the astronaut's below 9 (8); an empty frame has 8 at a tenth of the light, where faces were
# still read, and 2 with the lights off (3%). A median, not a mean: a lit screen or a lamp in
# view does not hide a dark room. Only on frames without a face, every 4th row and column: 40 us
DARK_MEDIAN = 7
__all__ = ["STAGES", "CaptureLoop", "Health", "StateSnapshot", "StoreWriter"]


def too_dark(gray: np.ndarray) -> bool:
    """Is this grayscale frame too dark for the detector to find a face (``DARK_MEDIAN``)?"""
    return float(np.median(gray[::4, ::4])) < DARK_MEDIAN


class ReadTimeout(CameraError):
    pass


class ReadInterrupted(Exception):
    """The loop is stopping: the read waited on is abandoned, not a camera fault."""


class _FrameReader:
    """Runs ``source.read()`` in a helper thread so that a hung camera can be timed out.

    One request at a time and no read-ahead: the loop still takes the newest frame and
    nothing queues. A reader whose read timed out is abandoned: its thread ends when the
    read finally returns, and only then is a fresh reader made, so the device never sees
    two reads at once nor a close in the middle of a read. (A driver hung for good is the
    systemd watchdog's job: ``on_alive`` is not called while a read hangs.)"""

    def __init__(self, source: FrameSource):
        self.source = source
        self._want = threading.Event()
        self._done = threading.Event()
        self._result: np.ndarray | None = None
        self._error: BaseException | None = None
        self.abandoned = False
        self.interrupted = False  # the loop stops: a read waited on returns at once
        self.busy_since: float | None = None  # monotonic start of the read in progress
        self._thread = threading.Thread(target=self._run, name="camera-read", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            self._want.wait()
            self._want.clear()
            if self.abandoned:
                return
            self.busy_since = time.monotonic()
            try:
                self._result, self._error = self.source.read(), None
            except BaseException as exc:  # handed to the loop, which decides
                self._result, self._error = None, exc
            self.busy_since = None
            if self.abandoned:
                return
            self._done.set()

    def read(self, timeout: float) -> np.ndarray | None:
        """The source's frame (None or junk from a faulty source: the caller checks)."""
        self._done.clear()
        if not self.interrupted:  # a stop that came before this wait: its wake-up was cleared just now
            self._want.set()
            self._done.wait(timeout)
        if self.interrupted or not self._done.is_set():
            self.abandoned = True
            if self.interrupted:
                raise ReadInterrupted()
            raise ReadTimeout(f"the camera gave no frame within camera.read_timeout_s = {timeout:g} s (hung?)")
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        frame, self._result = self._result, None
        return frame

    def interrupt(self) -> None:
        """Stop waiting for the read in progress (the loop stops): a camera hung in a read
        held the stop for up to ``camera.read_timeout_s`` (120 s allowed), past the loop's
        join, so its last state was never ended as Absent in the log."""
        self.interrupted = True
        self._done.set()

    def close(self) -> None:
        self.abandoned = True
        self._want.set()

    def finish(self, timeout: float) -> bool:
        """Close, and wait up to ``timeout`` for a read in progress to return; True when
        none is in progress (the device may be closed)."""
        self.close()
        self._thread.join(timeout)
        return not self._thread.is_alive()


@dataclass(frozen=True)
class LoopRules:
    """Everything a frame is judged by, built once per config. The loop reads this one
    reference once per frame and a settings change replaces it whole, so every frame sees
    one config: never old engagement rules with a new buzzer, nor the reverse."""

    cfg: Config
    engagement: EngagementRules
    buzzer: BuzzerPolicy

    @classmethod
    def from_config(cls, cfg: Config, clock_set=None) -> "LoopRules":
        """``clock_set``: whether a time server has set the clock (quiet hours wait for it)."""
        return cls(cfg, EngagementRules.from_config(cfg), BuzzerPolicy.from_config(cfg, clock_set))


CLEAN_STOP_SCHEMA = 13  # the schema of the first releases that log Absent at a clean stop


class CaptureLoop:
    def __init__(self, cfg: Config, source: FrameSource, detector: Detector, classifier: EmotionClassifier,
                 store: Store | None, indicator: Indicator, live: LiveFrame | None = None,
                 clock=time.monotonic, wall=time.time, on_alive=None, metrics: Metrics | None = None,
                 clock_set=None):
        self.clock_set = clock_set  # None: BuzzerPolicy asks clock.synchronized
        self.rules = LoopRules.from_config(cfg, clock_set)  # replaced whole by apply_config, never edited
        self.source, self.detector, self.classifier = source, detector, classifier
        self.store, self.indicator = store, indicator
        self.live = live or LiveFrame()
        self.clock, self.wall = clock, wall
        # e.g. the systemd watchdog ping: called while the loop is alive - per frame, while
        # paused, and while it retries a camera that fails or is missing - never while a read
        # hangs (a driver stuck for good: the service is restarted)
        self.on_alive = on_alive
        self._retrying = False  # the last step failed and the read did not hang: the loop is alive
        self.tracker = EngagementTracker.from_config(cfg, classifier.labels, start=clock())
        self.alerts = AlertMemory()  # the loop thread's own: cooldowns survive a settings change
        self.minutes = MinuteAggregator()
        self.health = Health()
        self.metrics = metrics or Metrics()
        self.metrics.set_model(classifier.manifest)
        if store is not None:
            self.metrics.watch_disk(store.data_dir)
        d = cfg.detector
        self.detect_every = d.detect_every
        self.faces = FaceTracker(detector, d.detect_every, d.full_detect_every)
        self.writer = StoreWriter(store, self.health, self.metrics, cfg.store.min_free_mb) if store else None
        self._boxes: list[Face] = []
        self._gray: np.ndarray | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._reader: _FrameReader | None = None
        self._paused_since: float | None = None  # wall time of the "Paused" a restart found logged (_absent_since)
        self._fps_window: collections.deque = collections.deque()
        self._source_dropped = 0
        self._fault_began: tuple[float, float] | None = None  # (loop clock, wall) of a fault's first failed read
        self._fault_log = EpisodeLog(CAMERA_LOG_QUIET_S, CAMERA_LOG_LONG_S)  # a flapping camera: bounded lines
        self.privacy = PrivacySwitch(lambda: self.cfg.privacy.max_pause_minutes, wall, clock)  # the student's pause
        if store is not None:  # a pause outlives a restart: saved at each change, taken back here
            self.privacy.keep = lambda pause: store.set_setting(PAUSE_KEY, pause.saved() if pause else None)
            try:
                self.privacy.restore(store.get_setting(PAUSE_KEY))
            except Exception as exc:  # noqa: BLE001 - an unreadable store is the store writer's to report
                log.warning("could not read whether a privacy pause was on before the restart: %s", exc)
        self.state_lock = threading.Lock()  # the tracker and buzzer rules: the loop vs. admin changes
        self.snapshot = StateSnapshot.of(self.tracker.state)  # replaced whole after every frame; read lock-free

    # ------------------------------------------------------------ one frame
    def process(self, frame: np.ndarray, now: float | None = None, captured: float | None = None,
                capture_s: float = 0.0) -> tuple[StateSnapshot, bool]:
        """Run every stage after capture on one frame; returns (the new snapshot, changed).

        ``captured`` is the ``perf_counter`` time the frame left the camera (for the
        capture-to-LED latency); ``capture_s`` how long reading it took."""
        rules = self.rules  # read once: a settings change lands between frames, whole
        now = self.clock() if now is None else now
        t0 = time.perf_counter()
        captured = t0 if captured is None else captured
        if self._gray is None or self._gray.shape != frame.shape[:2]:
            self._gray = np.empty(frame.shape[:2], np.uint8)  # preallocated, reused every frame
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY, dst=self._gray) if frame.ndim == 3 else frame
        boxes = self.faces.update(gray)
        self._boxes = boxes
        t1 = time.perf_counter()
        faces: list[dict] = []
        main = boxes[0] if boxes else None
        probs = None
        inference_s = None
        if main is not None and main.kind == "frontal":
            crop = aligned_crop(gray, main)  # eyes level, FER framing (box crop without keypoints)
            if crop.size:
                classifier = self.classifier  # one model per frame, even while a flashed one is swapped in
                probs = classifier.probabilities(crop)
                inference_s = time.perf_counter() - t1
                i = int(probs.argmax())
                face = {"box": list(main.box), "emotion": classifier.labels[i], "confidence": float(probs[i])}
                if probs[i] < rules.engagement.min_confidence:
                    face["engagement"] = UNCERTAIN
                faces.append(face)
        elif main is not None:
            faces.append({"box": list(main.box), "emotion": None, "confidence": 0.0, "engagement": DISTRACTED})
        t2 = time.perf_counter()
        obs = Observation(now, main.kind if main else None, probs, main is None and too_dark(gray))
        with self.state_lock:
            if probs is not None and classifier is not self.classifier:
                # a flashed model was swapped in during this frame's inference: the tracker may be the new
                # model's (its labels), which cannot read the old one's probabilities (one label fewer
                # failed every frame after); the frame is dropped, the next is the new model's
                return self.snapshot, False
            tracked, changed = self.tracker.update(obs, rules.engagement)
            for f in faces:
                f.setdefault("engagement", tracked.level)
            state = StateSnapshot.of(tracked, faces, now, self.snapshot.seq + 1)
        self.snapshot = state  # one reference assignment: readers see this frame or the previous one, whole
        self.indicator.show(state.group)
        t3 = time.perf_counter()  # the state is on the LED
        wall = self.wall()
        if rules.buzzer.alert_due(now, state.group, state.since, self.alerts):
            if rules.buzzer.may_sound():  # muted or quiet hours: no sound, but the alert is recorded
                self.indicator.beep()
            snapshot, jpeg = None, None
            # off by default: live frames are never stored; nor is one read before a pause pressed since
            if rules.cfg.privacy.snapshot_on_alert and self.privacy.active is None:
                ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 80])
                if ok:
                    snapshot, jpeg = f"alerts/{int(wall * 1000)}.jpg", buf.tobytes()
            # the frame and its row as one queued write: queued apart, a full backlog could drop the
            # row and keep the frame, which no row named for the retention purge to find
            self._log("log_alert", wall, state.level, snapshot, jpeg)
        if changed:  # logged (and published) as of when the level began, as /api/state says, not min_hold_s later
            began = wall - (now - state.since)
            # no face read (Absent, Distracted, Present): no confidence, not a made-up 0.0
            confidence = state.confidence if state.emotion is not None else None
            self._log("log_state_change", began, state.level, state.group, state.emotion, confidence)
            self.metrics.state.state(state.group)
        row = self.minutes.add(wall, state.group, main is not None, mono_t=now)
        if row:
            self._log("log_minute", row)
        # a frame read before the student's pause, processed after it: not shown once the pause was
        # confirmed (the viewers see the "camera paused" placeholder next)
        if self.live.wanted() and self.privacy.active is None:
            self.live.publish(self._annotate(frame, faces, state))
        t4 = time.perf_counter()
        detect_s = t1 - t0
        stages = {"capture": capture_s,
                  "detect": detect_s if self.faces.last_step in ("full", "roi") else 0.0,
                  "track": detect_s if self.faces.last_step not in ("full", "roi") else 0.0,
                  "classify": t2 - t1, "state": t3 - t2, "store": t4 - t3}
        self.metrics.record_frame(stages, capture_s + (t4 - t0), t3 - captured, inference_s)
        self.health.faces = len(boxes)
        return state, changed

    def _annotate(self, frame: np.ndarray, faces: list[dict], state: StateSnapshot) -> np.ndarray:
        out = draw_faces(frame, faces)
        cv2.putText(out, state.level, (10, out.shape[0] - 12), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 4, cv2.LINE_AA)
        cv2.putText(out, state.level, (10, out.shape[0] - 12), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1, cv2.LINE_AA)
        return out

    def _log(self, method: str, *args) -> None:
        """Queue a row for the background writer; never blocks the loop on the disk."""
        if self.writer is not None:
            self.writer.put(method, *args)

    # ------------------------------------------------------------ the thread
    def read_frame(self) -> tuple[np.ndarray, float, float]:
        """The next frame, the time it arrived and how long the read took; ``CameraError``
        for an error, an empty frame or a read longer than ``camera.read_timeout_s``."""
        if self._reader is not None and self._reader.abandoned:
            since = self._reader.busy_since
            if since is not None:
                raise ReadTimeout(f"the camera read is still hung after {time.monotonic() - since:.0f} s "
                                  f"(camera.read_timeout_s = {self.cfg.camera.read_timeout_s:g})")
            self._reader = None
        if self._reader is None:
            self._reader = _FrameReader(self.source)
        if self._stop.is_set():  # after the reader is set: stop() interrupts it, or this sees the stop
            raise ReadInterrupted()
        t0 = time.perf_counter()
        frame = self._reader.read(self.cfg.camera.read_timeout_s)
        t1 = time.perf_counter()
        if frame is None or not isinstance(frame, np.ndarray) or frame.size == 0 or frame.ndim not in (2, 3):
            raise CameraError(f"the camera gave an empty frame ({'None' if frame is None else getattr(frame, 'shape', type(frame).__name__)})")
        if frame.ndim == 3 and frame.shape[2] == 1:
            frame = frame[:, :, 0]  # grey with a channel axis: grey
        if frame.dtype != np.uint8 or (frame.ndim == 3 and frame.shape[2] not in (3, 4)):
            # a fault, not a frame: every stage after would fail (or read 16-bit values as 8-bit)
            # on each frame while the LED kept the last state and health said "ok"
            raise CameraError(f"the camera gives frames the loop cannot read ({frame.dtype}, shape {frame.shape}): "
                              "set it (or the GStreamer pipeline's caps) to 8-bit BGR or GRAY8")
        return frame, t1, t1 - t0

    def step(self) -> bool:
        """One iteration: read, process, count. False after a camera fault (caller backs off)."""
        try:
            frame, arrived, capture_s = self.read_frame()
        except ReadInterrupted:  # stopping: the run loop ends, no fault to report
            return False
        except Exception as exc:  # CameraError, or a driver raising something unexpected
            reason = str(exc) if isinstance(exc, CameraError) else f"{type(exc).__name__}: {exc}"
            self._retrying = not isinstance(exc, ReadTimeout)  # a hung read: not alive
            self._camera_fault(reason)
            return False
        if self.privacy.active is not None:  # paused while this frame was read: it is dropped unseen
            return True
        self._fault_began = None
        if self.health.camera != CameraState.OK:
            if self.health.camera == CameraState.FAULT and self._fault_log.logged:
                log.info("camera is back")
            self.health.camera, self.health.camera_error = CameraState.OK, ""
            self.metrics.camera.state(CameraState.OK)
            self.indicator.fault(False)
        try:
            self.process(frame, captured=arrived, capture_s=capture_s)
        except Exception:  # one bad frame must not end the loop
            self.health.errors += 1
            self.metrics.frame_errors.inc()
            if self.health.errors in (1, 10, 100) or self.health.errors % 1000 == 0:
                log.exception("processing a frame failed (%d so far); the loop goes on", self.health.errors)
        self._count_frame()
        if self.on_alive:
            self.on_alive()
        return True

    def run(self) -> None:
        cam = self.cfg.camera
        backoff = cam.retry_initial_s
        now = self.wall()
        began, logged = self._absent_since(now)
        if logged:  # the log ends "Absent" (a clean stop's): it holds on from then, not logged twice
            self._absent_from(began, self.clock() - (now - began), log_it=False)
        elif self.privacy.active is None or began < now:  # a paused start logs "Paused" itself, after
            # the tracker's first state, logged and published like any change: otherwise the log,
            # the timeline and the classroom's retained state kept the level from before a
            # restart (an empty desk shown "Engaged for 14 h") until the first change. After a
            # crash it is dated at the last sign of life, and /api/state says the same "since"
            self._absent_from(began, self.clock() - (now - began))
        while not self._stop.is_set():
            if self.privacy.active is not None:
                self._hold_paused()
                continue
            if self.step():
                backoff = cam.retry_initial_s
                continue
            self._back_off(backoff)
            backoff = min(backoff * 2, cam.retry_max_s)
        row = self.minutes.flush()  # the writer writes it when the loop is stopped
        if row:
            self._log("log_minute", row)
        if self.snapshot.level != ABSENT and (self.snapshot.level != PAUSED or self.privacy.active is None):
            # stopped (the end of the day, a restart): the last state must not run on in the
            # log and the timeline through the night (after a crash, see _absent_since). A
            # pause shown runs on (see _hold_paused); one pressed while the stop came, before
            # the loop showed it, ends the state like any stop
            self._show(ABSENT, self.wall())

    def _back_off(self, seconds: float) -> None:
        """Wait before the next attempt at the camera. A loop retrying a camera that fails (or
        is not there) is alive and says so each second: the watchdog restarted it within a
        minute of an unplugged camera, and the restarts soon hit systemd's start limit. A
        read that hangs says nothing (see ``step``)."""
        end = time.monotonic() + seconds
        while not self._stop.is_set():
            if self._retrying and self.on_alive:
                self.on_alive()
            left = end - time.monotonic()
            if left <= 0:
                return
            self._stop.wait(min(1.0, left))

    def _absent_since(self, now: float) -> tuple[float, bool]:
        """When the start's Absent began, and whether the log has it already. The log ends
        "Absent" (a clean stop logs it, or the student had left): that row, which this
        start does not log again (a log of Absent at 16:00, Absent at 08:00 read as two
        changes, and the desk was empty all along). The last run ended by a crash or a power
        loss (another level last): the student's state ended when the loop was last seen
        alive, not at this start: "Not engaged" from 14:05 until 08:00 the next morning
        would be a made-up record about a minor. The same for a pause (``_hold_paused``
        notes once a minute that it is alive); a pause ended by a clean stop runs on until
        this start, as before, and its row is not logged again (``_paused_since``, which
        ``_hold_paused`` takes). Otherwise ``now``."""
        if self.writer is None or self.writer.pending():
            return now, False  # rows of this process still queued: not a run that ended unseen
        try:
            last = self.writer.store.last_sign_of_life(now)  # never after this start
        except Exception as exc:  # an unreadable log must not stop the loop: the start's time, as before
            log.warning("could not read the last logged state (%s): the start's Absent is dated now", exc)
            return now, False
        if last is not None and last.level == PAUSED and not last.crashed and self.privacy.active is not None:
            self._paused_since = min(last.began, now)  # the pause a clean stop kept goes on: logged once
        if last is not None and last.level == ABSENT:
            return min(last.began, now), True
        if last is None or not last.crashed:
            return now, False
        if last.restored:
            log.warning("the database was restored from a backup: its records end at %s, when the backup was made; "
                        "logged Absent from then", time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(last.seen)))
            return last.seen, False
        # a release from before schema 13 (2026-11-28) logged no Absent at a clean stop: stopped cleanly or not, it
        # did not say. Schema 13's first releases did not either, but the number cannot tell them apart: a crash then
        migrated = self.writer.store.migrated_from
        if migrated is not None and migrated < CLEAN_STOP_SCHEMA:
            log.warning("the release before this upgrade did not record how its last run ended: logged Absent as of %s, "
                        "when it was last seen running", time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(last.seen)))
            return last.seen, False
        # no level in the line: the journal outlives store.retention_days, and a student's
        # state is a record about a minor (the log, which retention bounds, has it)
        log.warning("the last run ended without a clean stop (crash or power loss): logged Absent as of %s, when it "
                    "was last seen running", time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(last.seen)))
        return last.seen, False

    # ------------------------------------------------------------ the privacy switch
    def _absent_from(self, wall: float, since: float, log_it: bool = True, level: str = ABSENT) -> None:
        """Absent (or ``level`` of its group), begun before now (``wall``; ``since`` on the loop
        clock): the tracker starts afresh there, so /api/state, the log and MQTT give one time
        for it (``log_it`` False: the log has it already)."""
        with self.state_lock:
            self.tracker = EngagementTracker.from_config(self.cfg, self.classifier.labels, start=since)
        self._show(level, wall, since, log_it)

    def _show(self, level: str, wall: float, since: float | None = None, log_it: bool = True) -> None:
        """A state the loop sets itself (not the tracker): snapshot, LED, log, metrics.
        ``since``: when it began on the loop clock, where that is not now."""
        group = group_of(level)
        with self.state_lock:
            began = self.clock() if since is None else since
            self.snapshot = StateSnapshot.of(EngagementState(level, began), seq=self.snapshot.seq + 1)
        self.indicator.show(group)
        if log_it:
            self._log("log_state_change", wall, level, group, None, None)
        self.metrics.state.state(group)

    def _hold_paused(self) -> None:
        """While the privacy switch is on: "Paused" everywhere, the camera released, no
        frame read; the watchdog is still pinged (the loop is alive, idle on purpose), and
        the store told once a minute (``note_paused_alive``): after a crash the next start
        ends the pause then, not at itself. A clean stop says so, and the pause runs on.
        Afterwards the tracker starts afresh: nothing from before the pause carries over."""
        wall = self.wall()
        self._fault_began = None  # a fault before the pause is over: the camera is released
        row = self.minutes.flush()
        if row:
            self._log("log_minute", row)
        self.minutes.gap()
        self.indicator.fault(False)  # a camera fault means nothing while the camera is off
        self.health.camera, self.health.camera_error = CameraState.PAUSED, ""
        self.health.fps = 0.0  # no frames: no stale rate in /healthz and /api/state
        self._fps_window.clear()
        self.metrics.camera.state(CameraState.PAUSED)
        self.metrics.fps.set(0.0)
        kept, self._paused_since = self._paused_since, None
        if kept is not None:  # the log ends with this pause's "Paused" (a restart during it): not a second row
            self._show(PAUSED, wall, self.clock() - (wall - kept), log_it=False)
        else:
            self._show(PAUSED, wall)
        self._log("note_paused_alive", wall, wall)  # a crash within the first minute is dated too
        log.info("paused by the privacy switch: no frame is read until it is resumed")
        released = False
        seen = wall
        while not self._stop.is_set():
            self.privacy.changed.clear()
            if self.privacy.active is None:
                break
            now = self.wall()
            if abs(now - seen) >= PAUSE_SEEN_EVERY_S:  # either way: a clock set back must not silence it
                self._log("note_paused_alive", wall, now)
                seen = now
            if not released and (self._reader is None or self._reader.busy_since is None):
                released = True  # never close the device under a read in progress
                try:
                    self.source.close()  # the next read after the pause reopens it
                except Exception:
                    pass
            if self.on_alive:
                self.on_alive()
            self.privacy.changed.wait(1.0)  # at least once a second: the pause's time limit
        if self._stop.is_set():
            self._log("note_paused_alive", wall, self.wall(), True)  # a clean stop, not a crash
            return
        with self.state_lock:
            self.tracker = EngagementTracker.from_config(self.cfg, self.classifier.labels, start=self.clock())
        self.faces.reset()  # the face followed before the pause may have moved or gone: search the whole frame
        self.health.camera = CameraState.STARTING
        self.metrics.camera.state(CameraState.STARTING)
        self._show(ABSENT, self.wall())  # the tracker's first state, until a face has held min_hold_s
        log.info("resumed: the camera is read again")

    def _camera_fault(self, reason: str) -> None:
        now = self.clock()
        if self.health.camera != CameraState.FAULT:
            self._fault_log.begin()
        if self._fault_began is None:
            self._fault_began = (now, self.wall())
            # the minute so far is written now, as a pause does: held in memory for the whole
            # fault, it was in no report or classroom page, and lost to a power cut meanwhile
            row = self.minutes.flush()
            if row:
                self._log("log_minute", row)
            self.minutes.gap()  # no frames: the time until the next one counts for no group, not the last
            self.tracker.gap()  # ... and the next frame follows none: a change under way needs its hold again
        self._log_fault(reason, now)
        self.health.camera, self.health.camera_error = CameraState.FAULT, reason
        self.health.camera_faults += 1
        self.metrics.camera.state(CameraState.FAULT)
        self.metrics.camera_faults.inc()
        self.indicator.fault(True, reason)
        self.faces.reset()  # the next frame may show another scene: search it whole, not near the old face
        absent_after = self.rules.engagement.absent_after_s
        if now - self._fault_began[0] >= absent_after and self.snapshot.level not in (CAMERA_FAULT, PAUSED):
            # no frame for as long as no face counts as Absent: the last state must not run on
            # in the log, the timeline and the classroom for the whole fault (hours of
            # "Engaged" with no camera); dated as the tracker dates an Absent, and /api/state
            # says the same "since" (not when a retry saw it, up to one retry interval later).
            # Said as the camera's fault, not a plain "Absent": the student may well be there
            self._absent_from(self._fault_began[1] + absent_after, self._fault_began[0] + absent_after,
                              level=CAMERA_FAULT)
        if self._reader is not None and self._reader.busy_since is not None:
            return  # a read is still in progress: never close the device under it
        try:
            self.source.close()  # released between attempts; the next read reopens it
        except Exception:
            pass

    def _log_fault(self, reason: str, now: float) -> None:
        """The fault's log line, once it is due (``EpisodeLog``: a flapping camera)."""
        assert self._fault_began is not None
        others = self._fault_log.due(now, self._fault_began[0])
        if others is None:
            return
        more = (f"; the camera also failed {others} more time{'s' if others != 1 else ''} since the last "
                f"such line, each time back within {CAMERA_LOG_LONG_S:g} s") if others > 0 else ""
        log.error("camera fault: %s (retrying with back-off%s)", reason, more)

    def _count_frame(self) -> None:
        now = time.monotonic()
        h = self.health
        h.frames += 1
        h.last_frame = now  # monotonic: a clock step must not make the camera look stalled
        dropped = int(getattr(self.source, "dropped", 0) or 0)
        if dropped > self._source_dropped:
            self.metrics.dropped.inc(dropped - self._source_dropped)
            h.dropped += dropped - self._source_dropped
        self._source_dropped = dropped
        w = self._fps_window
        w.append(now)
        while w and now - w[0] > 2.0:
            w.popleft()
        if len(w) > 1:
            h.fps = (len(w) - 1) / (w[-1] - w[0])
            self.metrics.fps.set(h.fps)
        self.metrics.faces.set(h.faces)

    def flush(self, timeout: float = 5.0) -> bool:
        """Write the current minute's row and wait for the writer; True when all is written."""
        row = self.minutes.flush()
        if row:
            self._log("log_minute", row)
        return self.writer.drain(timeout) if self.writer else True

    @property
    def alive(self) -> bool:
        """The loop thread is running (False before ``start`` and after ``stop``)."""
        return bool(self._thread and self._thread.is_alive())

    def start(self) -> "CaptureLoop":
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, name="capture-loop", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self.privacy.changed.set()  # a paused loop wakes to stop
        reader = self._reader
        if reader is not None:
            reader.interrupt()  # a loop waiting on a hung camera read ends now, and logs Absent
        if self._thread:
            self._thread.join(timeout)
        self.health.camera = CameraState.STOPPED
        self.metrics.camera.state(CameraState.STOPPED)
        hung = self._reader is not None and not self._reader.finish(READ_GRACE_S)
        if not hung:  # never close the device under a read in progress
            self._close_source(CLOSE_WAIT_S)
        if self.writer is not None:
            self.writer.close(timeout)

    def _close_source(self, timeout: float) -> None:
        """``source.close()``, waited on ``timeout`` at most: a wedged camera driver whose close
        never returned held the whole stop, so the store writer, the MQTT "offline" and the
        database's close never came before systemd's SIGKILL."""
        def close() -> None:
            try:
                self.source.close()
            except Exception:
                pass

        closer = threading.Thread(target=close, name="camera-close", daemon=True)
        closer.start()
        closer.join(timeout)
        if closer.is_alive():
            log.warning("the camera did not close within %g s (a hung driver?): stopping without it", timeout)

    def set_classifier(self, classifier: EmotionClassifier) -> None:
        """Swap in a newly flashed model. A different label set restarts the smoothing (the
        history is in the old labels), but the level shown stays until the new model's frames
        have held another one for ``min_hold_s``: a fresh tracker's "Absent", logged and
        published, said a student sitting there had left whenever a model was flashed."""
        with self.state_lock:
            if list(classifier.labels) != list(self.classifier.labels):
                # while paused the tracker still holds the level from before the pause, and the
                # resume restarts it anyway (at Absent, as every resume does)
                old = self.tracker
                self.tracker = EngagementTracker.from_config(self.cfg, classifier.labels, start=self.clock())
                self.tracker.state = replace(old.state, probabilities={})
                # when a face was last seen is no label's: without it the first frames without a
                # face (a look away of 2 s) counted from long ago, and logged "Absent" after all
                for seen in ("_last_face", "_last_frontal", "_last_sure"):
                    setattr(self.tracker, seen, getattr(old, seen))
            self.classifier = classifier
        self.metrics.set_model(classifier.manifest)

    @property
    def cfg(self) -> Config:
        """The config the loop runs on now (the one in ``rules``)."""
        return self.rules.cfg

    def apply_config(self, cfg: Config) -> None:
        """New engagement and buzzer settings from the admin page: one reference swap,
        picked up by the next frame whole. The shown state, the smoothing history and
        the alert cooldown are kept; nothing the loop thread is reading is edited."""
        self.rules = LoopRules.from_config(cfg, self.clock_set)

    @property
    def state(self) -> StateSnapshot:
        """The latest frame's frozen snapshot; never waits for the loop."""
        return self.snapshot
