"""Hot pick-up: the running service notices a newly installed (or rolled back) model and
swaps its classifier without a restart; one it cannot load is said where the pages and
`engage-edge model list` read it, and the running one kept."""
from __future__ import annotations

import json
import logging
import threading
import time

from edge_app.config import Config
from edge_app.fsutil import atomic_write, user_name
from edge_app.models.registry import active_manifest, models_dir, read_json
from edge_app.vision.classifier import EmotionClassifier, ModelError

log = logging.getLogger(__name__)
LOAD_ERROR = "load-error.json"


def _note_load_error(cfg: Config, signature, error: str) -> None:
    """Leave the running service's failure to load the active manifest (``signature``: what
    its file was then) where `engage-edge model list`, another process, reads it; an empty
    ``error`` removes it. Best effort: it never stops the watcher."""
    path = models_dir(cfg) / LOAD_ERROR
    try:
        if not error:
            path.unlink(missing_ok=True)
        elif path.parent.is_dir():
            atomic_write(path, (json.dumps({"signature": list(signature), "error": error}) + "\n").encode())
    except OSError as exc:
        log.debug("could not note the model load error in %s: %s", path, exc)


def load_error(cfg: Config) -> str:
    """Why the running service could not load the active manifest, as it noted it, when
    that file is still as it was then; else "". `model list` marked such a model active and
    said nothing (only /healthz and the model page knew)."""
    noted = read_json(models_dir(cfg) / LOAD_ERROR)
    if noted is None or noted.get("signature") != list(ModelWatcher.signature_of(cfg)):
        return ""  # changed since (installed again, rolled back): the service looks at it again
    return str(noted.get("error", ""))


class ModelWatcher:
    """Notices a new active manifest (one ``stat`` per ``interval``) and hands a freshly
    loaded classifier to ``on_change``; a model that fails to load is logged, kept in
    ``last_error`` (/healthz and the model page say it) and the running one kept. It is
    tried again every ``retry_s``: a file made readable, or put right, is then picked up."""

    RETRY_S = 30.0

    def __init__(self, cfg: Config, on_change, interval: float = 1.0, threads: int | None = None,
                 retry_s: float = RETRY_S):
        self.cfg, self.on_change, self.interval, self.retry_s = cfg, on_change, interval, retry_s
        self.threads = threads or cfg.model.threads
        self._seen = self._signature()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.last_error = ""
        self._failed_at = 0.0  # time.monotonic() of the last failed load

    def _signature(self):
        return self.signature_of(self.cfg)

    @staticmethod
    def signature_of(cfg: Config) -> tuple:
        """The active manifest as the watcher tells it changed: its path and its file's identity."""
        path = active_manifest(cfg)
        try:
            st = path.stat()
            return str(path), st.st_ino, st.st_mtime_ns, st.st_size
        except OSError:
            return str(path), None, None, None

    def check(self) -> bool:
        """Reload if the active manifest changed; True when a new classifier was handed over.
        The web page calls it right after an install, so the page shows the new model."""
        with self._lock:
            return self._check()

    def _check(self) -> bool:
        sig = self._signature()
        if sig == self._seen and not (self.last_error and time.monotonic() - self._failed_at >= self.retry_s):
            return False
        self._seen = sig
        try:
            clf = EmotionClassifier(sig[0], self.threads)
        except (ModelError, OSError) as exc:
            # OSError: a model file the service's user may not read (a command-line install as
            # root, a chmod), which escaped as "model watcher: ..." with last_error left empty
            error = str(exc)
            if isinstance(exc, PermissionError):
                error += f" (the service runs as {user_name()}: make the file readable to it)"
            if error != self.last_error:  # a retry failing alike is not logged again
                log.error("new model not picked up, keeping the running one: %s", error)
                _note_load_error(self.cfg, sig, error)
            self.last_error, self._failed_at = error, time.monotonic()
            return False
        if self.last_error:
            _note_load_error(self.cfg, None, "")
        self.last_error = ""
        self.on_change(clf)
        log.info("now running model %s (sha256 %s)", clf.manifest.model_path.name, clf.manifest.sha256[:12])
        return True

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.check()
            except Exception as exc:  # never let the watcher die
                log.warning("model watcher: %s", exc)

    def start(self) -> "ModelWatcher":
        self._thread = threading.Thread(target=self._run, name="model-watcher", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(2)
