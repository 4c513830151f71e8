"""Safe model flashing: validate everything, then swap atomically; keep one model to roll back to.

The active models directory is ``<data_dir>/models`` (``/var/lib/engage-edge/models`` on a
device; the shipped model in the package, ``edge_app/models/shipped/``, stays read-only). It holds model files named by their
sha256 (``emotion-<sha12>.tflite``) and two manifests: ``current.json`` (what runs) and
``previous.json`` (what ``rollback`` restores). Replacing ``current.json`` with
``os.replace`` is the single commit point, so a crash at any moment leaves either the old
or the new model active, never half of one; the next ``previous.json`` is staged before
it and renamed after it (``_swap``), so a crash never leaves both naming the same model. The running appliance notices the change
(``watcher.ModelWatcher``, one ``stat`` a second) and swaps its classifier without a restart.

A model is only installed when it passes every check of ``checks.validate`` (its manifest,
its file, its speed, its golden reference faces).
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import hashlib
import json
import logging
import os
import shutil
import stat
import tempfile
import time
from pathlib import Path
from typing import Any

from edge_app import RELEASE
from edge_app import config as config_mod
from edge_app.config import Config
from edge_app.fsutil import atomic_write, fsync_dir
from edge_app.models.checks import MAX_TEXT, is_number, validate
from edge_app.models.errors import AlreadyInstalled, FlashError, NothingToRollBack, PreviousUnusable, write_failed
from edge_app.vision.classifier import SHIPPED_MANIFEST, EmotionClassifier, Manifest, ModelError, sha256_file

log = logging.getLogger(__name__)
CURRENT, PREVIOUS = "current.json", "previous.json"
PENDING = "previous.pending.json"  # the next previous.json, written before the commit point (``_swap``)
HISTORY = "history.json"
HISTORY_KEEP = 50  # installs and roll-backs remembered (newest first), whoever made them



# ------------------------------------------------------------------ where things are
def models_dir(cfg: Config) -> Path:
    return config_mod.data_dir(cfg) / "models"


def headline_accuracy(raw: dict) -> float | None:
    """A manifest's FER+ test accuracy by the official rule (None: not measured on it)."""
    metrics = raw.get("metrics") or {}
    accuracy = (metrics.get("official") or {}).get("accuracy")
    if metrics.get("test_set") == "other" or accuracy is None or not is_number(accuracy):
        return None
    return float(accuracy)


def lower_accuracy_note(before: dict | None, after: dict) -> str:
    """The words that say an installed model scores below the one it replaced, else "":
    a flash of the float paper baseline (80.8%) over edge-v3 (85.8%) said only "installed".
    A note, not a refusal: an older or smaller model may be flashed on purpose."""
    was, now = (headline_accuracy(before) if before else None), headline_accuracy(after)
    if was is None or now is None or now >= was - 0.0005:
        return ""
    return (f"it scores {now:.1%} on FER+ test, below the {was:.1%} of the model it replaced: "
            "'engage-edge model rollback' returns to that one")


def running_manifest(cfg: Config) -> dict | None:
    """The active manifest's contents (before a flash, to compare with), None if unreadable."""
    try:
        raw = json.loads(active_manifest(cfg).read_text())
    except (OSError, ValueError):
        return None
    return raw if isinstance(raw, dict) else None


def active_manifest(cfg: Config) -> Path:
    """What the appliance runs: ``model.manifest`` if set (a pin), else the installed
    ``current.json``, else the shipped model. A ``current.json`` that is only a copy of an
    earlier release's shipped model (``_earlier_shipped``) gives way to this release's: a
    desk flashed once kept the old model across every upgrade."""
    if cfg.model.manifest:
        return Path(cfg.model.manifest).expanduser()
    return _installed(cfg)


def _installed(cfg: Config) -> Path:
    """What runs unless ``model.manifest`` pins another: ``current.json``, or the shipped
    model (also in place of an earlier release's copy). What an install replaces."""
    current = models_dir(cfg) / CURRENT
    if not current.is_file() or _earlier_shipped(read_json(current)):
        return SHIPPED_MANIFEST
    return current


def _same_install(cfg: Config, raw: dict) -> dict | None:
    """The installed manifest when ``raw`` (validated) is that install again: the same
    ``manifest_digest`` and the file it names still whole. A damaged file is not the same:
    installing the model again is how it is mended."""
    path = _installed(cfg)
    now = read_json(path)
    if now is None:
        return None
    shipped = path == SHIPPED_MANIFEST
    if manifest_digest(_as_installed(now) if shipped else now) != manifest_digest(raw):
        return None
    try:
        whole = sha256_file(path.parent / str(now.get("model"))) == raw["sha256"]
    except OSError:
        return None
    return now if whole else None


def _as_installed(raw: dict) -> dict:
    """A manifest as an install stores it: its model named by the file's sha256."""
    return {**raw, "model": f"emotion-{str(raw.get('sha256'))[:12]}.tflite"}


def _shipped_digest() -> str:
    """The ``manifest_digest`` this release's shipped model has once copied into models/.
    ``active_manifest`` asks it once a second (the model watcher) for a stamped copy: the
    package's manifest is read and hashed again only when its file changes."""
    try:
        st = SHIPPED_MANIFEST.stat()
    except OSError:
        return ""
    return _digest_of_shipped(SHIPPED_MANIFEST, st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=4)
def _digest_of_shipped(path: Path, mtime_ns: int, size: int) -> str:
    raw = read_json(path)
    return manifest_digest(_as_installed(raw)) if raw else ""


def _stamp_if_shipped(raw: dict) -> dict:
    """``raw`` marked as this release's shipped model when it is (the same file, read the same
    way), so a later release can tell it from a technician's own model (``_earlier_shipped``)."""
    return {**raw, "shipped": RELEASE} if manifest_digest(raw) == _shipped_digest() else raw


def _earlier_shipped(raw: dict | None) -> bool:
    """Is ``raw`` a copy of another release's shipped model (copied in at a first install as
    the model to roll back to, or installed as the shipped one), not this release's?"""
    return raw is not None and bool(raw.get("shipped")) and manifest_digest(raw) != _shipped_digest()


def shipped_not_running(cfg: Config) -> str:
    """'' or a note on this release's shipped model (logged at start, printed by ``model
    list``): that it runs in place of an earlier release's shipped model that ``current.json``
    names, or that it does not run because a model a technician flashed runs (that one stays:
    only said, never acted on)."""
    current = active_manifest(cfg)
    shipped = read_json(SHIPPED_MANIFEST)
    if shipped is None:
        return ""
    version = f" {str(shipped.get('version'))[:MAX_TEXT]}" if shipped.get("version") else ""
    if current == SHIPPED_MANIFEST:
        flashed = read_json(models_dir(cfg) / CURRENT)
        if cfg.model.manifest or flashed is None or not _earlier_shipped(flashed):
            return ""
        return (f"this release's shipped model{version} (sha256 {str(shipped.get('sha256'))[:12]}) runs in place of "
                f"release {str(flashed.get('shipped'))[:MAX_TEXT]}'s shipped model {flashed.get('model')} (sha256 "
                f"{str(flashed.get('sha256'))[:12]}) that {models_dir(cfg) / CURRENT} names; "
                "'engage-edge model rollback' returns to the model before that one")
    running = read_json(current)
    if running is None or running.get("sha256") == shipped.get("sha256"):
        return ""
    how = "clear model.manifest" if cfg.model.manifest else \
        f"engage-edge model install {SHIPPED_MANIFEST.parent / str(shipped.get('model'))}"
    return (f"this release ships the model{version} (sha256 {str(shipped.get('sha256'))[:12]}), but "
            f"{running.get('model')} (sha256 {str(running.get('sha256'))[:12]}) runs, from {current}: to run the shipped "
            f"one, {how}")


def way_out(cfg: Config) -> str:
    """What a technician can do when the appliance cannot load its emotion model: '' unless
    it is a flashed model (``current.json``) that no longer loads. A bad block or a cut
    copy under the running file stops the service at every start; the README's way out
    is a rollback, or, with nothing to roll back to, installing a good model."""
    current = active_manifest(cfg)
    if cfg.model.manifest or current.name != CURRENT:
        return ""  # a pinned manifest or the shipped model: not the flashing's to mend
    try:
        EmotionClassifier(current)
        return ""  # it loads: the start failed on something else
    except ModelError:
        pass
    previous = _previous_path(current.parent)
    if not previous.is_file():
        return f"the flashed model does not load and there is no earlier one to roll back to: {INSTALL_A_GOOD_ONE}"
    why = damage(previous)
    if why:  # a rollback would be refused: say what works
        return f"the flashed model does not load, nor does the earlier one ({why}): {INSTALL_A_GOOD_ONE}"
    return ("the flashed model does not load: 'sudo -u engage engage-edge model rollback' "
            "returns to the model that ran before it")


# a flashed model (current.json) runs instead of the shipped one whatever the package holds
# (a reinstalled wheel too): installing the shipped one is the way back to it
INSTALL_A_GOOD_ONE = ("install a good one with 'sudo -u engage engage-edge model install MODEL.tflite --manifest "
                      f"MANIFEST.json' (the shipped one: {SHIPPED_MANIFEST.with_suffix('.tflite')} --manifest "
                      f"{SHIPPED_MANIFEST})")


def damage(manifest: Path) -> str:
    """'' when the model a manifest names loads and matches it, else why not (a cut or
    overwritten file: a bad block, a copy cut short)."""
    try:
        EmotionClassifier(manifest)
    except ModelError as exc:
        return str(exc)
    return ""



# ------------------------------------------------------------------ one install at a time
def _open_lock_readonly(path: Path) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise FlashError(f"cannot open the lock file {path}: {exc.strerror or exc}") from None


@contextlib.contextmanager
def _locked(directory: Path):
    """One install or rollback at a time (CLI and web upload may race). A data folder made
    here (a first install before the first start) is private, as the store makes it: its
    database will hold the students' log."""
    try:
        if not directory.parent.exists():
            directory.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_failed(directory, exc) from None
    path = directory / ".lock"
    try:  # never through a link: root's CLI must not create or open a file an engage-owned link names
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except PermissionError as exc:  # created by another user (root from the CLI, engage in the service)
        if not os.path.lexists(path):  # none to open: this user may not write in the folder at all
            raise write_failed(directory, exc) from None
        fd = _open_lock_readonly(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise FlashError(f"{path} is a symbolic link, which is refused: remove it (rm {path}) and try again") from None
        if exc.errno == errno.EROFS:  # a read-only mount: said with what to do, as any other write there
            raise write_failed(directory, exc) from None
        raise FlashError(f"cannot open the lock file {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise FlashError(f"{path} is not a regular file: remove it and try again")
    with os.fdopen(fd) as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _adopt_running(directory: Path, cfg: Config) -> dict | None:
    """The manifest now running, with its model copied into ``directory`` (so rollback can
    return to the shipped model too); None when it cannot be read or its model no longer
    loads (a damaged file kept as the previous model would push out the good one there)."""
    current = directory / CURRENT
    try:
        if current.is_file() and (cfg.model.manifest or active_manifest(cfg) == current):
            EmotionClassifier(current)  # intact and loadable, as rollback will need it
            return json.loads(current.read_text())
        m = Manifest.load(active_manifest(cfg))  # the shipped model (also in place of an earlier release's)
        name = f"emotion-{m.sha256[:12]}.tflite"
        if not (directory / name).is_file():
            atomic_write(directory / name, m.model_path.read_bytes())
        return _stamp_if_shipped({**m.raw, "model": name})
    except (OSError, ValueError, ModelError) as exc:
        log.warning("the running model cannot be kept for rollback: %s", exc)
        return None


def read_json(path: Path) -> dict | None:
    """A JSON object in the models directory (a manifest, a note), or None when it is missing or unreadable."""
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return raw if isinstance(raw, dict) else None


def _swap(directory: Path, new: dict, previous: dict | None) -> None:
    """Make ``new`` the current model and ``previous`` (None: previous.json as it is) the one
    to roll back to. The previous manifest is written first under another name (a full disk
    refuses the change before anything changed), then current.json is replaced (the commit
    point), then the staged file is renamed to previous.json. Writing previous.json before
    current.json, as it was, left both naming the same model after a crash or a failed write
    between them, and the rollback target was lost; ``_settle`` finishes a swap cut short."""
    pending = directory / PENDING
    if previous is not None:
        atomic_write(pending, (json.dumps(previous, indent=2) + "\n").encode())
    interrupted: BaseException | None = None
    try:
        atomic_write(directory / CURRENT, (json.dumps(new, indent=2) + "\n").encode())  # the commit point
    except BaseException as exc:
        # atomic_write may fail after its rename (syncing the folder on a dying card, a
        # Ctrl-C then): current.json names the new model, so the change is made and must be
        # finished, not reported "unchanged" with the old model's file deleted under it
        if manifest_digest(read_json(directory / CURRENT) or {}) != manifest_digest(new):
            with contextlib.suppress(OSError):
                pending.unlink()
            raise
        log.warning("the model is changed, but writing %s ended with an error: %s", CURRENT, exc)
        if not isinstance(exc, OSError):
            interrupted = exc
    if previous is not None:
        try:  # a rename needs no room on the disk
            os.replace(pending, directory / PREVIOUS)
            fsync_dir(directory)
        except OSError as exc:  # the next install or rollback finishes it (_settle); listing reads it already
            log.warning("the model is changed, but %s could not be renamed to %s yet: %s", pending, PREVIOUS, exc)
    if interrupted is not None:  # a Ctrl-C after the commit: the swap is whole, the command stops now
        raise interrupted


# what an install stamps on a manifest of its own (when, how fast here): not what the model is
_STAMPS = ("installed", "measured", "shipped")


def manifest_digest(raw: dict) -> str:
    """What identifies an install: the model file (its sha256 is in the manifest) and how it
    is read (labels, input scale and offset, views), not when it was installed. The same
    .tflite with a corrected manifest is another install: one identified by the file's hash
    alone was not kept to roll back to."""
    kept = {k: v for k, v in raw.items() if k not in _STAMPS}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _staged_previous(directory: Path) -> dict | None:
    """The previous manifest a swap cut short after its commit point left staged (one that
    names another model than the current one), or None."""
    staged, current = read_json(directory / PENDING), read_json(directory / CURRENT)
    if staged is None or current is None or manifest_digest(staged) == manifest_digest(current):
        return None  # cut short before the commit point: the current install is still the one staged
    return staged


def _settle(directory: Path) -> None:
    """Finish a swap a crash cut short (under the lock): the staged previous manifest becomes
    previous.json when the commit point was passed, and is dropped when it was not."""
    pending = directory / PENDING
    if not pending.exists():
        return
    if _staged_previous(directory) is not None:
        os.replace(pending, directory / PREVIOUS)
    else:
        pending.unlink()
    fsync_dir(directory)


def _previous_path(directory: Path) -> Path:
    """Where the model to roll back to is described: previous.json, or the staged one a swap
    cut short after its commit point left (until ``_settle`` renames it)."""
    return directory / PENDING if _staged_previous(directory) is not None else directory / PREVIOUS


def _cleanup(directory: Path) -> None:
    keep = set()
    for name in (CURRENT, PREVIOUS, PENDING):
        with contextlib.suppress(OSError, ValueError, KeyError):
            keep.add(json.loads((directory / name).read_text())["model"])
    for path in directory.glob("emotion-*.tflite"):
        if path.name not in keep:
            with contextlib.suppress(OSError):
                path.unlink()
    _sweep_leftovers(directory)


def _sweep_leftovers(directory: Path) -> None:
    """What an install killed part-way left (its staging copy, a half-written temp file):
    under the lock no other install is using them, and each can be a whole model. Swept at
    the start of every install and roll-back too, so a desk whose flashes keep being
    refused or killed does not fill its data disk with copies."""
    for path in directory.glob(".staging-*"):
        shutil.rmtree(path, ignore_errors=True)
    for path in directory.glob(".*.tmp"):
        with contextlib.suppress(OSError):
            path.unlink()


def sweep_at_start(cfg: Config) -> None:
    """What a flash killed part-way left (``_sweep_leftovers``), swept when the service starts:
    a desk whose last flash was killed kept a whole model's copy until its next install, which
    may never come; and the model in use recorded in the history if its change never was
    (``_record_unrecorded``). Only when no install or roll-back holds the lock now (one from
    the command line may be validating in its staging folder); never blocks, never fails the
    start."""
    directory = models_dir(cfg)
    try:
        fd = os.open(directory / ".lock", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return  # never flashed here (no lock, no leftovers), or a lock this user cannot open
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        log.info("a model install or roll-back is under way: its staging folder in %s is left to it", directory)
        return
    try:
        # the model files no manifest names go too (a copy made before a killed flash's commit point), but only
        # when every manifest there reads: a damaged one may name one of them, which a rollback would need
        names = [directory / name for name in (CURRENT, PREVIOUS, PENDING) if (directory / name).exists()]
        # a model.manifest pinned by the config may name a file here too (its manifest kept in this folder)
        if not cfg.model.manifest and all(read_json(path) is not None for path in names):
            _cleanup(directory)
        else:
            _sweep_leftovers(directory)
        _record_unrecorded(directory)
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


FOUND_IN_USE = "found in use"
UNRECORDED_BY = "the start: its change was not recorded (a flash cut short, or a full disk)"


def _record_unrecorded(directory: Path) -> None:
    """The model in use, recorded when the history's newest row names another: a flash killed
    (or the power cut) between its commit point and its history, or a history a full disk
    refused, left the history a change behind, and the model page and ``model list`` showed
    the model before as the last change. Logged, never raised: it must not fail the start."""
    current = read_json(directory / CURRENT)
    if current is None:
        return
    rows = history_of(directory)
    newest = rows[0] if rows else {}
    if newest.get("manifest") == manifest_digest(current) or (
            "manifest" not in newest and newest.get("sha256") == current.get("sha256")):  # a row from before digests
        return
    log.warning("model %s is in use but its change is not in %s (a flash cut short, or a full disk): recorded now",
                current.get("model"), directory / HISTORY)
    _after_commit(directory, FOUND_IN_USE, current, UNRECORDED_BY)


# ------------------------------------------------------------------ history
def _record(directory: Path, action: str, raw: dict, by: str) -> None:
    """Remember an install or roll-back in ``history.json`` (under the lock; the web page
    and ``engage-edge model list`` read it), so CLI and web changes share one history."""
    metrics: dict = raw["metrics"] if isinstance(raw.get("metrics"), dict) else {}
    official: dict = metrics["official"] if isinstance(metrics.get("official"), dict) else {}
    measured: dict = raw["measured"] if isinstance(raw.get("measured"), dict) else {}
    entry = {"t": time.time(), "action": action, "model": raw.get("model"), "sha256": raw.get("sha256", ""),
             "manifest": manifest_digest(raw),
             "version": str(raw.get("version") or "")[:MAX_TEXT],
             "accuracy": official["accuracy"] if is_number(official.get("accuracy"), 0, 1) else None,
             "ms_per_face": measured.get("ms_per_face"), "by": by}
    if raw.get("shipped"):  # a release's shipped model, not a technician's own
        entry["shipped"] = str(raw["shipped"])[:MAX_TEXT]
    rows = [{**r, "version": str(r.get("version") or "")[:MAX_TEXT]} for r in history_of(directory)]  # older, uncapped
    atomic_write(directory / HISTORY, (json.dumps([entry, *rows][:HISTORY_KEEP], indent=2) + "\n").encode())


def _after_commit(directory: Path, action: str, raw: dict, by: str) -> None:
    """Record a change that is already made: a history that cannot be written (a full disk)
    is logged, never reported as a refusal of the change it failed to record."""
    try:
        _record(directory, action, raw, by)
    except OSError as exc:
        log.warning("model %s %s, but the history could not be written: %s", raw.get("model"), action, exc)


def history_of(directory: Path) -> list[dict]:
    try:
        rows = json.loads((directory / HISTORY).read_text())
    except (OSError, ValueError):
        return []
    return [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else []


def history(cfg: Config) -> list[dict]:
    """Installs and roll-backs on this device, newest first (``t``, ``action``, ``model``,
    ``sha256``, ``version``, ``accuracy``, ``ms_per_face``: measured here at its install, ``by``)."""
    return history_of(models_dir(cfg))


# ------------------------------------------------------------------ the three operations
def install(model_file: Path | str, manifest_file: Path | str | None, cfg: Config, by: str = "",
            allow_slow: bool = False) -> dict:
    """Validate, then make the model current; the old current becomes previous. Returns the
    installed manifest. Raises ``FlashError`` (nothing changed) when the model is refused,
    also when it is over ``MAX_SLOWDOWN`` times slower than the running one, unless
    ``allow_slow``."""
    model_file = Path(model_file)
    manifest_file = Path(manifest_file) if manifest_file else model_file.with_suffix(".json")
    directory = models_dir(cfg)
    need: int | None = None
    with _locked(directory):
        try:  # a full disk or a folder this user may not write: refused, the running model untouched
            _settle(directory)
            _sweep_leftovers(directory)
            with tempfile.TemporaryDirectory(prefix=".staging-", dir=directory) as staging:
                # only the manifest is kept: the staged classifier maps the staged copy, whose space a
                # full disk's refusal would not count as free while it lived
                raw = validate(model_file, manifest_file, Path(staging), running=active_manifest(cfg),
                               allow_slow=allow_slow)[0]
                raw = _stamp_if_shipped(raw)
                same = _same_install(cfg, raw)
                if same is not None:
                    version = f" (version {str(same['version'])[:MAX_TEXT]})" if same.get("version") else ""
                    raise AlreadyInstalled(f"{raw['model']}{version}, sha256 {raw['sha256'][:12]}, is already the "
                                           "installed model, from the same file and manifest: nothing was changed "
                                           "(to run another model, install that one)", same)
                running = _adopt_running(directory, cfg)
                target = directory / raw["model"]
                if not target.is_file() or sha256_file(target) != raw["sha256"]:
                    atomic_write(target, (Path(staging) / raw["model"]).read_bytes())
            _swap(directory, raw, running if running is not None and manifest_digest(running) != manifest_digest(raw)
                  else None)
        except OSError as exc:
            with contextlib.suppress(OSError):
                _cleanup(directory)  # the new model's copy, which nothing names
            with contextlib.suppress(OSError):
                need = 2 * model_file.stat().st_size
            raise write_failed(directory, exc, need) from None
        _after_commit(directory, "installed", raw, by)
        _cleanup(directory)
    log.info("model %s installed (sha256 %s)", raw["model"], raw["sha256"][:12])
    return raw


def rollback(cfg: Config, by: str = "") -> dict:
    """Make the previous model current again (and the current one previous)."""
    directory = models_dir(cfg)
    with _locked(directory):
        prev_path, cur_path = directory / PREVIOUS, directory / CURRENT
        try:
            _settle(directory)
        except OSError as exc:
            raise write_failed(directory, exc) from None
        _sweep_leftovers(directory)
        if not prev_path.is_file():
            raise NothingToRollBack(f"there is no previous model in {directory} to roll back to")
        try:
            previous = json.loads(prev_path.read_text())
        except (OSError, ValueError) as exc:
            raise PreviousUnusable(f"the previous model's manifest {prev_path} is unreadable: {exc}") from None
        try:
            current = json.loads(cur_path.read_text()) if cur_path.is_file() else None
        except (OSError, ValueError) as exc:
            # a damaged current manifest is what a rollback is for: roll back over it (it is
            # not kept as the previous one, which could never run)
            log.warning("the current model's manifest %s is unreadable (%s): rolling back over it", cur_path, exc)
            current = None
        if isinstance(current, dict) and _earlier_shipped(current) and not cfg.model.manifest:
            # this release's shipped model runs in its place: that one is what a roll-back leaves
            current = _adopt_running(directory, cfg) or current
        if isinstance(previous, dict) and _earlier_shipped(previous):
            # chosen on purpose now: runs, not passed over for this release's shipped model
            previous = {k: v for k, v in previous.items() if k != "shipped"}
        if isinstance(current, dict) and isinstance(previous, dict) and manifest_digest(previous) == manifest_digest(current):
            raise NothingToRollBack(f"{prev_path} names the model that runs now ({current.get('model')}, sha256 "
                                    f"{str(current.get('sha256'))[:12]}): there is nothing different to roll back to")
        why = damage(prev_path)  # still intact and loadable?
        if why:
            raise PreviousUnusable(why)
        try:
            if current is not None:
                _swap(directory, previous, current)
            else:  # the damaged one is not kept: previous.json becomes current.json, one rename
                os.replace(prev_path, cur_path)
                fsync_dir(directory)
        except OSError as exc:
            raise write_failed(directory, exc) from None
        _after_commit(directory, "rolled back to", previous, by)
    log.info("rolled back to model %s", previous.get("model"))
    return previous


def listing(cfg: Config) -> list[dict]:
    """The current and previous model (and the shipped one) with their metrics."""
    directory = models_dir(cfg)
    rows: list[dict[str, Any]] = []
    active = active_manifest(cfg)
    for role, path in (("current", directory / CURRENT), ("previous", _previous_path(directory)),
                       ("shipped", SHIPPED_MANIFEST)):
        if not path.is_file():
            continue
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            rows.append({"role": role, "path": str(path), "error": str(exc)})
            continue
        rows.append({"role": role, "path": str(path), "active": path.resolve() == active.resolve(),
                     "model": raw.get("model"), "sha256": raw.get("sha256", ""), "installed": raw.get("installed", ""),
                     "version": str(raw.get("version") or "")[:MAX_TEXT],  # two manifests of one file told apart
                     "metrics": raw.get("metrics", {}), "golden": bool(raw.get("golden")),
                     "manifest": manifest_digest(_as_installed(raw) if role == "shipped" else raw),
                     "damaged": damage(path)})  # its golden record says nothing of the file on disk now
    if cfg.model.manifest:
        pinned = {"role": "pinned by model.manifest", "path": str(active), "active": active.is_file(),
                  "model": None, "sha256": "", "installed": "", "version": "", "metrics": {}, "golden": False, "manifest": ""}
        if not active.is_file():  # nothing runs: the device does not start with it
            pinned["error"] = "no such file: the device will not start; fix or clear model.manifest in the config"
        rows.insert(0, pinned)
    return rows
