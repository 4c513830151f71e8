"""The technician's hardware self-test: one PASS/FAIL line per check.

Camera frames, the LED cycling through its colours, a buzzer chirp (skippable), the
model's golden check, the configured face detector finding the face in a shipped portrait,
a database write, free disk space, the web UI's HTTPS files, and whether a time server has
set the clock (WARN, not FAIL, when not: the device works, its times may be wrong). On a
device stop the service first (``sudo systemctl stop engage-edge engage-edge-fault``): the camera and the
GPIO pins are exclusive.
Runs on a laptop too, with ``--source demo`` and the console indicator.
"""
from __future__ import annotations

import shutil
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from edge_app import config as config_mod
from edge_app.config import Config
from edge_app.device import clock
from edge_app.device.indicators import COLOUR_NAMES
from edge_app.engagement import ABSENT, GROUPS, PAUSED
from edge_app.fsutil import sandbox_hint

FRAMES = 5
SERVICE_HOLDS = "is the engage-edge service running and holding"
# what the checks load: run as root, the command loads them before it becomes the service's user
CHECK_MODULES = ("sqlite3", "fcntl", "edge_app.vision.sources", "edge_app.models.registry", "edge_app.vision.classifier",
                 "edge_app.vision.detector", "edge_app.vision.faces", "edge_app.store.database",
                 "edge_app.device.indicators", "edge_app.web.server", "ssl", "cheroot.ssl.builtin")


# a laptop's stand-ins pass their checks, but a PASS would read as "the camera/LED works" to
# a technician (or a script) on a device whose config lost its camera or pins
DEMO_CAVEAT = " - the demo source: no camera was checked (set camera.source or --source to the device's camera)"
CONSOLE_CAVEAT = (' - indicators.backend = "console": no LED or buzzer was driven, only printed '
                  '(set "gpio" or "jetson" to test them)')


@dataclass
class Result:
    name: str
    status: str  # "PASS", "FAIL", "WARN" (works, with a caveat) or "SKIP"
    detail: str


def check_camera(cfg: Config, source_spec: str) -> str:
    from edge_app.vision.sources import CameraError, make_source

    source = make_source(source_spec, cfg)
    try:
        source.open()
        shape: tuple[int, ...] = ()
        t0 = time.monotonic()
        for _ in range(FRAMES):
            frame = source.read()
            if frame is None or frame.ndim != 3 or frame.shape[2] != 3 or frame.size == 0:
                raise CameraError(f"bad frame {getattr(frame, 'shape', None)}")
            shape = frame.shape
        fps = FRAMES / max(time.monotonic() - t0, 1e-6)
    except CameraError as exc:
        # only a camera device can be held by the running service; not a file, a stream or a missing library
        camera = ("://" not in source_spec and not Path(source_spec).suffix and not exc.lasting
                  and not str(exc).startswith(("no camera", "picamera2")))
        hint = f" ({SERVICE_HOLDS} the camera?)" if camera else ""
        raise RuntimeError(f"{exc}{hint}") from None
    finally:
        source.close()
    return f"{FRAMES} frames {shape[1]}x{shape[0]} from {source_spec} ({fps:.0f} fps)"


def _pins_held(exc: Exception) -> str | None:
    """Who holds a pin the LED or buzzer wanted: "this process" for gpiozero's GPIOPinInUse
    (gpiozero only knows its own process's devices: another setting or device here),
    "another process" for the kernel's 'GPIO busy' that lgpio passes on (on a device, the
    running service); None for any other failure."""
    try:
        from gpiozero.exc import GPIOPinInUse
    except ImportError:  # no gpiozero: no pins to be taken
        return None
    if isinstance(exc, GPIOPinInUse):
        return "this process"
    return "another process" if "busy" in str(exc).lower() else None


def _pins_hint(holder: str | None) -> str:
    if holder == "this process":
        return (" (held by this process, not by the service: each [indicators] pin must be a pin of its own; "
                "the wiring: firmware/README.md)")
    if holder == "another process":
        return (f" (held by another process: {SERVICE_HOLDS} the pins, or its fault light? stop both first: "
                "sudo systemctl stop engage-edge engage-edge-fault)")
    return ""


STEADY_S = 1.5  # how long the self-test shows a steady look when each look is shown whole


def check_led(indicator, step_s: float | None, driven: bool = True) -> str:
    """Every state's look in turn, then the fault blink. ``step_s`` None: each look for one
    whole period of its pattern (a steady one for ``STEADY_S``), so the technician sees the
    breathe, the double flash and the pulse they will be asked about, not 0.4 s of each; a
    number: that many seconds each (Absent and Paused twice as long). ``driven``: a real LED
    (not the console's printed one), which the technician is asked to look at."""
    patterns = getattr(indicator, "patterns", None)
    for group in GROUPS:
        indicator.show(group)
        if step_s is None:
            time.sleep((patterns.look_of(group, False).period() or STEADY_S) if patterns else STEADY_S)
        else:
            time.sleep(step_s * (2 if group in (ABSENT, PAUSED) else 1))
    indicator.fault(True, "self-test")
    fault = 2 * sum(patterns.fault_blink) if patterns else 0.4  # show at least two fault blinks
    time.sleep(fault if step_s is None else max(step_s, fault))
    indicator.fault(False)
    shown = ", ".join(COLOUR_NAMES[g] for g in GROUPS)
    return f"showed {shown}, fast red blink (fault)" + (": each different (look at the LED)" if driven else "")


def check_buzzer(indicator, driven: bool = True) -> str:
    indicator.beep(wait=True)  # over before the pins are closed: a fixed sleep of its length cut the second beep
    return "chirped twice (listen)" if driven else "an alert's two beeps"


def check_model(cfg: Config) -> str:
    from edge_app.models.checks import golden_check
    from edge_app.models.registry import CURRENT, active_manifest, way_out
    from edge_app.vision.classifier import EmotionClassifier, ModelError

    path = active_manifest(cfg)
    try:
        clf = EmotionClassifier(path, cfg.model.threads)
    except ModelError as exc:
        if cfg.model.manifest:
            fix = "fix or remove model.manifest in the config (it pins this file)"
        elif path.name == CURRENT:  # a rollback only when the model before loads: it was advised when it did not
            fix = way_out(cfg) or "engage-edge model rollback, or engage-edge model install a good model"
        else:
            fix = "reinstall engage-edge to restore the shipped model"
        raise RuntimeError(f"{exc}: {fix}") from None
    ok, reason = golden_check(clf, clf.manifest.raw.get("golden"))
    if not ok:
        raise RuntimeError(f"{path}: {reason}")
    return f"{clf.manifest.model_path.name}: {reason}"


def check_detector(cfg: Config) -> str:
    """The configured detector (its model file checked against its manifest) finds the
    face in a shipped portrait: the appliance cannot start without it."""
    from edge_app.vision.detector import detector_from_config
    from edge_app.vision.faces import FRONTAL, photo

    detector = detector_from_config(cfg)
    name = "grace_hopper.jpg"
    x, y, w, h = FRONTAL[name]
    cx, cy = x + w / 2, y + h / 2
    for face in detector.detect(photo(name)):
        fx, fy, fw, fh = face.box
        if fx <= cx <= fx + fw and fy <= cy <= fy + fh:
            return f"{cfg.detector.backend} found the face in {name}"
    raise RuntimeError(f"the {cfg.detector.backend} detector found no face in the shipped portrait {name}: check "
                       "the [detector] settings in the config (min_score, min_face_px) or reinstall engage-edge")


class CheckWarning(Exception):
    """A check that found something to say but nothing broken: a WARN line."""


def _missing_data_dir(data: Path) -> Path | None:
    """The nearest folder that exists above ``data`` when ``data`` does not exist (and no file
    stands in its way: that is said by trying, which creates nothing), else None. RuntimeError
    when the service could not create it there (a read-only file system, a folder this user may
    not write): said as creating it would say it, creating nothing."""
    import errno
    import os

    if data.exists():
        return None
    parent = next((p for p in data.absolute().parents if p.exists()), None)
    if parent is None or not parent.is_dir():
        return None  # a file where a folder goes: Store or mkdir says so, creating nothing
    code = 0
    try:
        if os.statvfs(parent).f_flag & os.ST_RDONLY:
            code = errno.EROFS
    except OSError:
        pass
    if not code and not os.access(parent, os.W_OK | os.X_OK):
        code = errno.EACCES
    if code:
        exc = OSError(code, os.strerror(code), str(parent))
        raise RuntimeError(f"cannot create {data} ({exc.strerror}): mount its file system read-write or choose "
                           "another store.data_dir." + sandbox_hint(data, exc))
    return parent


def check_database(cfg: Config) -> str:
    """The database writes and reads back. One that is not there is not created: a mistyped
    --data-dir made a new empty database there and passed as "writable", the device's real
    data elsewhere; it is a WARN that names the place (the service creates it at its start)."""
    from edge_app.store.database import DB_NAME, Store

    data = config_mod.data_dir(cfg)
    if _missing_data_dir(data) is not None or (data.is_dir() and not (data / DB_NAME).exists()):
        raise CheckWarning(f"no database at {data / DB_NAME} (a mistyped --data-dir or store.data_dir?); nothing was "
                           "created: if this device has run before, its data is in another folder; a new device's "
                           "service creates it at its first start")
    store = Store(data)
    try:
        stamp = time.time()
        store.set_setting("selftest.last", stamp)
        if store.get_setting("selftest.last") != stamp:
            raise RuntimeError("a written setting did not read back")
        if not store.integrity_ok():
            raise RuntimeError(f"{store.path} fails PRAGMA integrity_check: restore a backup (firmware/README.md, 'Restoring a backup')")
        return f"{store.path} writable, integrity ok"
    finally:
        store.close()


def check_disk(cfg: Config) -> str:
    data = config_mod.data_dir(cfg)
    where = _missing_data_dir(data)  # measured where it would be made, making nothing
    if where is None:
        try:
            data.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            from edge_app.store.database import not_a_folder

            raise RuntimeError(not_a_folder(data, exc) or f"cannot create {data} ({exc.strerror or exc}): mount its file system read-write or "
                               "choose another store.data_dir." + sandbox_hint(data, exc)) from None
        where = data
    free_mb = shutil.disk_usage(where).free / 1e6
    need = max(cfg.store.min_free_mb * 2, 100)
    if free_mb < need:
        raise RuntimeError(f"only {free_mb:.0f} MB free on {where} (need {need} MB): free space or lower store.retention_days")
    return f"{free_mb:.0f} MB free on {where}" + (f" (where {data} would be made)" if where != data else "")


def check_web(cfg: Config) -> str:
    """The HTTPS certificate and key as the service loads them at its start (read by this
    user, a PEM pair that belongs together): a key the service user may not read passed
    the self-test, and the service then exited 2."""
    web = cfg.web
    if not web.tls_cert:
        return f"plain HTTP on {web.host}:{web.port} (no web.tls_cert)"
    from edge_app.web.server import tls_adapter

    tls_adapter(web.tls_cert, web.tls_key)  # a CertificateError names the file and what to do
    return f"HTTPS on {web.host}:{web.port}: {web.tls_cert} and its key {web.tls_key} load"


def check_storage(cfg: Config) -> Result:
    """Whether what the device records outlives a reboot (an overlay or tmpfs under its data
    folder: a working device that starts every morning empty)."""
    from edge_app.store.database import kept_in_memory

    lost = kept_in_memory(config_mod.data_dir(cfg))
    return Result("storage", "WARN", lost) if lost else Result("storage", "PASS", "the data folder is kept over a reboot")


def check_clock() -> Result:
    synced = clock.synchronized()
    if synced is None:
        return Result("clock", "SKIP", "this system cannot tell whether its clock is synchronised (not Linux)")
    if synced:
        return Result("clock", "PASS", "set by a time server")
    return Result("clock", "WARN", f"{clock.UNSYNCHRONIZED}: {clock.WHAT_TO_DO}")


def run(cfg: Config, source: str | None = None, buzzer: bool = True, step_s: float | None = None, out=None,
        pin_factory=None) -> list[Result]:
    """Run every check, print one line each to ``out``; returns the results. ``step_s``:
    seconds per LED look (None: each look's whole pattern, about 15 s in all)."""
    from edge_app.device.indicators import ConsoleIndicator, make_indicator

    out = out or sys.stdout
    results: list[Result] = []

    def attempt(name: str, check, *args, caveat: str = "") -> None:
        """PASS, or WARN with ``caveat`` when what passed is not the device's hardware."""
        try:
            results.append(Result(name, "WARN" if caveat else "PASS", check(*args) + caveat))
        except CheckWarning as exc:
            results.append(Result(name, "WARN", str(exc)))
        except Exception as exc:  # every failure becomes a FAIL line, never a traceback
            detail = str(exc) or type(exc).__name__
            if not str(exc):
                detail += ": " + traceback.format_exc(limit=1).strip().splitlines()[-1]
            results.append(Result(name, "FAIL", detail))
        r = results[-1]
        print(f"{r.status} {r.name}: {r.detail}", file=out, flush=True)

    spec = source or cfg.camera.source
    attempt("camera", check_camera, cfg, spec, caveat=DEMO_CAVEAT if spec == "demo" else "")
    indicator = None
    if cfg.indicators.backend == "none":  # nothing is driven: a PASS would send the technician looking at a dark LED
        why = 'indicators.backend = "none": this device drives no LED or buzzer (set "gpio" or "jetson" to test them)'
        for r in (Result("led", "SKIP", why), Result("buzzer", "SKIP", why)):
            results.append(r)
            print(f"{r.status} {r.name}: {r.detail}", file=out, flush=True)
    else:
        try:
            indicator = make_indicator(cfg, pin_factory)
            if isinstance(indicator, ConsoleIndicator):
                indicator.states = True  # the technician's check: what the LED would show, to this output
        except Exception as exc:
            detail = (str(exc) or type(exc).__name__) + _pins_hint(_pins_held(exc))
            for r in (Result("led", "FAIL", detail), Result("buzzer", "SKIP", "no LED and buzzer pins (see the led line)")):
                results.append(r)
                print(f"{r.status} {r.name}: {r.detail}", file=out, flush=True)
    if indicator is not None:
        printed = CONSOLE_CAVEAT if isinstance(indicator, ConsoleIndicator) else ""
        attempt("led", check_led, indicator, step_s, not printed, caveat=printed)
        if buzzer:
            attempt("buzzer", check_buzzer, indicator, not printed, caveat=printed)
        else:
            results.append(Result("buzzer", "SKIP", "--no-buzzer"))
            print("SKIP buzzer: --no-buzzer", file=out, flush=True)
        indicator.close()
    attempt("model", check_model, cfg)
    attempt("detector", check_detector, cfg)
    attempt("database", check_database, cfg)
    attempt("disk", check_disk, cfg)
    attempt("web", check_web, cfg)
    for result in (check_storage(cfg), check_clock()):
        results.append(result)
        print(f"{result.status} {result.name}: {result.detail}", file=out, flush=True)
    failed = [r.name for r in results if r.status == "FAIL"]
    unchecked = [r.name for r in results if r.detail.endswith((DEMO_CAVEAT, CONSOLE_CAVEAT))]
    verdict = f"FAILED: {', '.join(failed)}" if failed else \
        f"passed, but no hardware was checked for: {', '.join(unchecked)}" if unchecked else "passed"
    print(f"self-test {verdict}", file=out, flush=True)
    return results
