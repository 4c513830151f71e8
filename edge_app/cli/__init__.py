"""The ``engage-edge`` command.

Exit codes: 0 success, 1 a check or analysis failed, 2 bad usage, configuration, model
or input (the message says which and what to do), 3 the camera can never work as set (a
video file that does not exist, picamera2 missing or broken).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shlex
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from edge_app import __version__
from edge_app import config as config_mod
from edge_app.config import Config

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_CAMERA = 0, 1, 2, 3


def cannot_serve(host: str, port: int, exc: OSError, host_named: str = "--host") -> str:
    """What a service says when its port is taken or not allowed, its address not this
    machine's, or its HTTPS files unusable. ``host_named``: where the address was set."""
    from edge_app.web.server import CertificateError

    if isinstance(exc, CertificateError):
        return f"error: {exc}"
    if exc.filename is not None:  # a file or folder, not the port (a socket's error names none)
        return (f"error: {exc.filename}: {exc.strerror or exc}: check that the user running engage-edge may use it "
                f"(ls -ld {exc.filename})")
    if (why := not_this_machine(host)) is not None:
        # an address the device had before DHCP gave it another: "Choose another --port" sent
        # the technician to the port, which was never the trouble
        return (f"error: cannot serve on {host}:{port}: {why}: set {host_named} to one of its addresses (ip -brief "
                'address), "0.0.0.0" for every network or "127.0.0.1" for this machine only.')
    return f"error: cannot serve on {host}:{port}: {exc.strerror or exc}. Choose another --port or stop the other program."


def not_this_machine(host: str) -> str | None:
    """Why no server can listen on ``host`` here (a name nobody knows, an address of another
    machine), or None: it can, so a failed start was the port's."""
    import socket

    try:
        found = socket.getaddrinfo(host or None, 0, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return f"{host!r} is no name this machine can look up ({exc.strerror})"
    last: OSError | None = None
    for family, kind, proto, _, address in found:
        try:
            with socket.socket(family, kind, proto) as probe:
                probe.bind(address)  # port 0: any free one, so only the address is tried
            return None
        except OSError as exc:
            last = exc
    return f"{host} is not an address of this machine ({last.strerror if last else 'no address'})"


def say(text: str) -> None:
    """A running service's line on standard output. Its reader may be gone (``engage-edge
    run | head -3``): the line is dropped and later ones go to /dev/null, and the service
    runs and stops as it would. Before, the failed "stopping" line ended the command before
    the appliance's stop, and its threads kept it serving until a SIGKILL."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the exit's flush would fail again


def first_start_message(password: str, kept_at: Path) -> str:
    """The generated admin password, shown once at the first start of a device or classroom."""
    return (f"first start: log in as 'admin' with password: {password}\n"
            f"(also kept in {kept_at}, mode 0600, until that first log-in; "
            "set ENGAGE_ADMIN_PASSWORD before the first start to choose it)")


def first_password_waiting(data_dir: Path) -> str | None:
    """The first start's message while its generated password is unused: every start says it
    (its file is deleted at the first log-in), so a first start that failed after making the
    admin (no pin driver, no camera), and the start that then works, still leave it in the
    journal where the install tells the technician to look."""
    from edge_app.store.accounts import FIRST_PASSWORD_FILE

    kept = data_dir / FIRST_PASSWORD_FILE
    try:
        password = kept.read_text().split("\n", 1)[0].strip()
    except (OSError, UnicodeDecodeError):
        return None
    return first_start_message(password, kept) if password else None


def _pinned_by_config(cfg: Config, error: str) -> str:
    """Where a model the start could not load was named, when the config file named it: "model
    manifest /etc/engage-edge/m.json does not exist" left the technician to find which setting
    said so, and that emptying it runs the usual model. The manifest named in the error, else
    the folder it lies in (the model file beside it); both manifests in one folder: both named,
    as "does not match its manifest" cannot tell whose file it was."""
    pinned = [(key, Path(value).expanduser(), usual) for key, value, usual in (
        ("model.manifest", cfg.model.manifest, "the flashed or shipped emotion model"),
        ("detector.manifest", cfg.detector.manifest, "the shipped face detector")) if value]
    found = [p for p in pinned if str(p[1]) in error]
    if not found:  # a relative manifest's folder is "." (in every sentence): named only by its own path
        found = [p for p in pinned if p[1].parent != Path(".") and f"{p[1].parent}{os.sep}" in error]
    if len(found) == 1:
        (key, _, usual), = found
        return f"{key} in the config names it: correct that path, or empty {key} to run {usual}"
    if found:
        return ("model.manifest or detector.manifest in the config names it (the two lie in one folder): correct "
                "that path, or empty the setting to run the flashed or shipped model, or the shipped face detector")
    return ""


def _failed_start(cfg: Config, message: str, code: int) -> int:
    """An error that ends a start: its message, then the unused first password, if any."""
    print(message, file=sys.stderr)
    if waiting := first_password_waiting(config_mod.data_dir(cfg)):
        print(waiting, file=sys.stderr)
    return code


class StopRequest:
    """Ctrl-C (SIGINT) or SIGTERM, asked for once; ``wait()`` returns when it came. Installed
    before a service starts its threads: a Ctrl-C that came between the start and the wait
    raised KeyboardInterrupt past the clean stop, and the web server's worker threads then
    kept the process alive.

    Not a ``threading.Event``: Python runs a signal's handler only between the main
    thread's bytecodes, so a signal that came just as the main thread entered
    ``Event.wait()`` (or one the kernel gave another thread) was handled when the wait
    ended, which was never: about 1 Ctrl-C in 75 right after the start lines left the
    service running. Here the signal's C-level handler writes a byte to a pipe the wait
    is blocked on (``signal.set_wakeup_fd``), so the wait wakes whichever thread received it."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = False
        self._wakeup, writer = os.pipe()
        for fd in (self._wakeup, writer):
            os.set_blocking(fd, False)
            os.set_inheritable(fd, False)
        signal.set_wakeup_fd(writer)
        for sig in self.SIGNALS:
            signal.signal(sig, self._request)

    def _request(self, _signum, _frame) -> None:
        self.requested = True

    def wait(self) -> None:
        """Block until a stop was asked for, however early it came."""
        import select

        while not self.requested:
            select.select([self._wakeup], [], [], 1.0)  # 1 s: a last resort should the byte be lost
            self._drain()  # a Python call: the signal's handler runs on its way in

    def _drain(self) -> None:
        try:
            while os.read(self._wakeup, 512):
                pass
        except BlockingIOError:
            pass


def _config(args, overrides: dict | None = None) -> Config:
    return config_mod.load(getattr(args, "config", None), overrides)


# ------------------------------------------------------------------ run
def cmd_run(args) -> int:
    from edge_app.device.indicators import IndicatorError
    from edge_app.store.accounts import AuthError
    from edge_app.store.database import StoreError
    from edge_app.vision.classifier import ModelError
    from edge_app.vision.sources import CameraError, make_source

    cfg = _config(args, {"camera.source": args.source, "web.host": args.host, "web.port": args.port,
                         "store.data_dir": str(args.data_dir) if args.data_dir else None})
    appliance = None
    try:
        source = None
        if cfg.camera.source != "demo":
            # fail now, clearly, if the camera can never work (a video file that does not
            # exist, picamera2 not installed) - before the database and the first-start admin
            # password exist. A camera not there yet (unplugged, not ready at boot) is waited
            # for instead: a service that exits for it is restarted by systemd until it gives
            # up, and then stays down, web page and LED too, after the camera is back
            source = make_source(cfg.camera.source, cfg)
            try:
                source.open()
            except CameraError as exc:
                if exc.lasting:
                    raise
                print(f"warning: camera: {exc}. Starting without it: the web page serves, /healthz says "
                      "\"camera\": \"fault\", the LED blinks red, and the camera is tried again with back-off "
                      f"(at most every camera.retry_max_s = {cfg.camera.retry_max_s:g} s)", file=sys.stderr)
        appliance = appliance_when_there_is_room(cfg, source)
        stop = StopRequest()  # from here on Ctrl-C stops it cleanly, even mid-start
        appliance.start()
    except CameraError as exc:
        _fault_led(cfg)
        return _failed_start(cfg, f"error: camera: {exc}", EXIT_CAMERA)
    except ModelError as exc:
        _fault_led(cfg)
        from edge_app.models.registry import way_out

        hint = way_out(cfg) or _pinned_by_config(cfg, str(exc))
        return _failed_start(cfg, f"error: {exc}" + (f"\n{hint}" if hint else ""), EXIT_USAGE)
    except (StoreError, AuthError) as exc:  # AuthError: a first start's ENGAGE_ADMIN_PASSWORD
        _fault_led(cfg)
        return _failed_start(cfg, f"error: {exc}", EXIT_USAGE)
    except IndicatorError as exc:  # no LED to show a fault on
        return _failed_start(cfg, f"error: {exc}", EXIT_USAGE)
    except OSError as exc:  # the port is taken, or not allowed
        return _failed_start(cfg, cannot_serve(cfg.web.host, cfg.web.port, exc, "web.host in the config (or --host)"),
                                 EXIT_USAGE)
    try:
        say(f"engage-edge {__version__} on {cfg.camera.source} source; web UI at " + " or ".join(appliance.urls()))
        if warning := appliance.plain_http_warning():
            print(warning, file=sys.stderr, flush=True)
        if lost := appliance.ctx.lost_at_reboot:
            print(f"warning: {lost}", file=sys.stderr, flush=True)
        if waiting := first_password_waiting(appliance.store.data_dir):
            say(waiting)
        from edge_app.device.watchdog import Notifier

        notifier = Notifier.from_env()  # systemd Type=notify: READY now, WATCHDOG while the loop goes round (camera fault too)
        if appliance.loop:
            notifier.attach(appliance.loop)
        notifier.ready(f"serving {appliance.url}")
        stop.wait()
        notifier.stopping()
        say("stopping")
    finally:  # whatever ends the wait: the loop logs its Absent, the port is freed
        appliance.stop()
    return EXIT_OK


DISK_WAIT_S = 30.0
BUILD_PINGS_S = 180.0  # the unit's TimeoutStartSec: what a start may take before systemd gives up on it anyway


def appliance_when_there_is_room(cfg: Config, source, wait_s: float = DISK_WAIT_S,
                                 build_pings_s: float = BUILD_PINGS_S):
    """The appliance, once its database opens. A disk too full to open it (the -shm file
    cannot be made) exited 2, and under systemd five restarts left the unit failed for good,
    space freed or not, while a full disk met while running only pauses logging. So it waits
    for room, trying again every ``wait_s``; systemd hears it is up and alive meanwhile
    (READY with a status saying why it waits, watchdog pings), the LED shows a fault, and
    the web UI's address serves a page saying so (an admin at the desk got "connection
    refused" and no reason). READY was sent, so systemd's watchdog, not its start timeout,
    times the build that follows room (a migration of a big database): the watchdog is fed
    during it, for at most ``build_pings_s``, so a start that truly hangs is still restarted."""
    from edge_app.device.watchdog import Notifier
    from edge_app.runtime.appliance import Appliance
    from edge_app.store.database import StoreError

    notifier, led, page = None, None, None
    try:
        while True:
            if led is not None:  # the appliance drives the pins itself
                led.close()
                led = None
            try:
                with _watchdog_fed(notifier, build_pings_s):
                    appliance = Appliance(cfg, source=source)
            except StoreError as exc:
                if not exc.disk_full:
                    raise
                led = _fault_shown(cfg, "disk full")  # for the whole wait, not a 3 s blink
                if notifier is None:
                    print(f"error: {exc}. Waiting for room: tried again every {wait_s:g} s", file=sys.stderr, flush=True)
                    page, url = _disk_full_page(cfg, wait_s)  # a port that cannot be served ends the start, as it would later
                    print(f"meanwhile {url} says so", file=sys.stderr, flush=True)
                    notifier = Notifier.from_env()
                    notifier.ready("waiting for disk space: the database cannot be opened on a full disk")
                deadline = time.monotonic() + wait_s
                while time.monotonic() < deadline:
                    notifier.watchdog_ping()
                    time.sleep(min(1.0, wait_s))
                continue
            if notifier is not None:
                print("there is room again: starting", file=sys.stderr, flush=True)
                notifier.close()
            return appliance
    finally:
        if page is not None:  # before the appliance's own server binds the address
            page.stop()
        if led is not None:
            led.close()


@contextlib.contextmanager
def _watchdog_fed(notifier, limit_s: float):
    """Watchdog pings from a thread while the block runs, for at most ``limit_s``: a build
    after READY (migrations, the model's check) could outlast WatchdogSec, and systemd
    killed it mid-migration. Past the limit the pings stop and systemd restarts a start
    that hangs, as its start timeout would have before READY."""
    if notifier is None or notifier.ping_every is None:
        yield
        return
    done = threading.Event()

    def feed() -> None:
        until = time.monotonic() + limit_s
        while not done.is_set():
            if time.monotonic() >= until:
                print(f"warning: the start has taken over {limit_s:g} s: no more watchdog pings, so systemd "
                      "restarts it if it hangs", file=sys.stderr, flush=True)
                return
            notifier.watchdog_ping()  # rate-limited to half the watchdog period
            done.wait(min(1.0, notifier.ping_every, max(0.0, until - time.monotonic())))

    feeder = threading.Thread(target=feed, name="watchdog-start", daemon=True)
    feeder.start()
    try:
        yield
    finally:
        done.set()
        feeder.join(2)


def _disk_full_page(cfg: Config, wait_s: float):
    """A started web server on the web UI's address, and its URL, while the start waits for
    room: every path answers 503 with what is wrong and what to do (``/healthz`` as JSON, status "fault").
    Nothing private in it and no log-in: the database, accounts included, cannot be opened."""
    import shutil

    from edge_app.web.server import Server

    folder = config_mod.data_dir(cfg)

    def message() -> str:
        try:
            free = f" ({shutil.disk_usage(folder).free / 1e6:.1f} MB free now)"
        except OSError:
            free = ""
        return (f"engage-edge cannot start: the disk holding {folder} is full{free}, so its database cannot be "
                "opened. The database is not damaged: do not restore a backup.\n\n"
                "What to do: free some space on that disk (old backups or exports, "
                "`sudo journalctl --vacuum-size=50M`); once it runs, lower store.retention_days so it does not fill "
                f"again. engage-edge tries again every {wait_s:g} s and starts by itself once there is room. "
                "`journalctl -u engage-edge` says more.\n")

    def app(environ, start_response):
        text = message()
        if environ.get("PATH_INFO") == "/healthz":
            body = json.dumps({"status": "fault", "reason": "disk full", "reasons": [text.strip()]}).encode()
            kind = "application/json"
        else:
            body, kind = text.encode(), "text/plain; charset=utf-8"
        start_response("503 Service Unavailable", [
            ("Content-Type", kind), ("Content-Length", str(len(body))), ("Cache-Control", "no-store"),
            ("Retry-After", str(max(1, round(wait_s)))), ("X-Content-Type-Options", "nosniff")])
        return [b"" if environ.get("REQUEST_METHOD") == "HEAD" else body]

    web = cfg.web
    server = Server(app, web.host, web.port, min(web.threads, 4), web.tls_cert, web.tls_key, web.trusted_proxies).start()
    host = "127.0.0.1" if web.host in ("0.0.0.0", "") else web.host
    return server, f"{'https' if web.tls_cert else 'http'}://{host}:{server.port}"


def _fault_shown(cfg: Config, reason: str):
    """The indicator showing the fault pattern until it is closed; None if it cannot be driven."""
    try:
        from edge_app.device.indicators import make_indicator

        indicator = make_indicator(cfg)
        indicator.fault(True, reason)
        return indicator
    except Exception:
        return None


def _fault_led(cfg: Config) -> None:
    """Show the fault pattern on the LED for a moment before exiting (device start-up errors)."""
    ind = _fault_shown(cfg, "start-up failed")
    if ind is None:
        return
    if cfg.indicators.backend == "gpio":
        threading.Event().wait(3)
    with contextlib.suppress(Exception):
        ind.close()


def cmd_fault_light(args) -> int:
    """``engage-edge fault-light``: the LED's fault blink until stopped. systemd starts it
    (engage-edge-fault.service, the service unit's ``OnFailure=``) once it has given up
    restarting the service: the LED went dark then, which reads as a desk switched off.
    A config the service could not read is no reason to stay dark: the LED its [indicators]
    name (or, a file that cannot be read, the board's) shows the fault then."""
    try:
        cfg = _config(args)
    except config_mod.ConfigError as exc:
        cfg = config_mod.indicators_of(getattr(args, "config", None))
        print(f"warning: configuration: {exc}: the fault shows on the {cfg.indicators.backend} indicator "
              f"({cfg.source})", file=sys.stderr)
    stop = StopRequest()
    indicator = _fault_shown(cfg, "the engage-edge service has stopped: see journalctl -u engage-edge")
    if indicator is None:
        print(f"error: the {cfg.indicators.backend} indicator cannot be driven: nothing to show the fault on",
              file=sys.stderr)
        return EXIT_FAILED
    print("the LED blinks the fault until engage-edge starts again (journalctl -u engage-edge says why it stopped)")
    try:
        stop.wait()
    finally:
        with contextlib.suppress(Exception):
            indicator.close()
    return EXIT_OK


# ------------------------------------------------------------------ analyze
def cmd_analyze(args) -> int:
    from edge_app.runtime.appliance import classifier_from_config
    from edge_app.vision.detector import detector_from_config
    from edge_app.vision.stills import (
        ACCEPTED_TEXT,
        Analyzer,
        ImageRejected,
        Limits,
        decode_photo,
        read_image_file,
        scale_boxes,
    )

    cfg = _config(args)
    analyzer = Analyzer(detector_from_config(cfg), classifier_from_config(cfg), cfg.engagement.mapping,
                        cfg.engagement.min_confidence)
    limits = Limits.from_config(cfg)
    results: list[dict[str, Any]] = []
    failed = False
    for path in _image_files(args.images):
        try:
            bgr, (width, _) = decode_photo(read_image_file(path, limits), limits)
            # boxes in the file's own pixels, as an image viewer shows it, not the analysed copy's
            results.append({"image": str(path), "faces": scale_boxes(analyzer.analyze(bgr), bgr.shape[1], width)})
        except ImageRejected as exc:
            failed = True
            results.append({"image": str(path), "error": str(exc)})
        except OSError as exc:
            failed = True
            results.append({"image": str(path), "error": _unreadable(path, exc, ACCEPTED_TEXT)})
    if args.json:
        print(json.dumps(results if len(results) != 1 else results[0], indent=2))
    else:
        for r in results:
            print(f"{r['image']}:")
            if "error" in r:
                print(f"  error: {r['error']}")
            elif not r["faces"]:
                print("  no face found")
            else:
                print(f"  {'#':>2}  {'box (x,y,w,h)':<22} {'emotion':<10} {'conf':>5}  engagement")
                for i, f in enumerate(r["faces"], 1):
                    box = ",".join(str(v) for v in f["box"])
                    print(f"  {i:>2}  {box:<22} {f['emotion']:<10} {f['confidence']:>5.0%}  {f['engagement']}")
    return EXIT_FAILED if failed else EXIT_OK


def _unreadable(path: Path, exc: OSError, accepted: str) -> str:
    """Why ``path`` could not be read, and what to do: a mistyped name said only 'No such
    file or directory', naming neither the path nor what analyze takes."""
    if isinstance(exc, IsADirectoryError):
        return f"a folder without files in it: name {accepted} files, or a folder that holds them"
    if isinstance(exc, (FileNotFoundError, NotADirectoryError)):
        return f"{path} does not exist: check the path (analyze takes {accepted} files, or folders that hold them)"
    if isinstance(exc, PermissionError):
        return (f"{path}: this user may not read it: run analyze as its owner, or make it readable "
                f"(chmod a+r {shlex.quote(str(path))})")
    return str(exc.strerror or exc)


def _image_files(paths: list[Path]) -> list[Path]:
    """The files named, a folder's files in their place (sorted; hidden files and folders
    in it left out): 'analyze photos/' said only 'Is a directory'."""
    files: list[Path] = []
    for path in paths:
        try:
            files += sorted(p for p in path.iterdir() if not p.name.startswith(".") and not p.is_dir()) or [path]
        except OSError:  # a file, or a folder that cannot be listed: reading it says which
            files.append(path)
    return files


# ------------------------------------------------------------------ parser
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="engage-edge", description="On-device engagement detection.")
    p.add_argument("--version", action="version", version=f"engage-edge {__version__}")
    # any case; argparse converts a string default with ``type`` but never checks it against
    # ``choices``, so ``main`` checks the value ENGAGE_LOG_LEVEL gives
    p.add_argument("--log-level", default=os.environ.get("ENGAGE_LOG_LEVEL", "INFO"), type=str.upper,
                   choices=LOG_LEVELS)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="run the appliance: capture loop, indicators and web UI")
    run.add_argument("--config", type=Path, help="TOML config (default: /etc/engage-edge/config.toml if present)")
    run.add_argument("--source", help="demo | camera | picamera2 | device index | video path | URL | GStreamer pipeline")
    # over the config file's web.host and web.port: "(default 8080)" sent a technician whose
    # device serves on the file's 8443 to the wrong port
    web = config_mod.defaults().web
    run.add_argument("--host", help=f"address for the web UI (default: web.host in the config, {web.host} without one)")
    run.add_argument("--port", type=int, help=f"port for the web UI (default: web.port in the config, {web.port} "
                     "without one)")
    run.add_argument("--data-dir", type=Path, help="where the database and kept images live")
    run.set_defaults(func=cmd_run)

    an = sub.add_parser("analyze", help="analyse still images and print a table per face")
    an.add_argument("images", nargs="+", type=Path, metavar="IMAGE",
                    help="a JPEG, PNG or WebP file, or a folder: every file in it")
    an.add_argument("--json", action="store_true", help="machine-readable output")
    an.add_argument("--config", type=Path)
    an.set_defaults(func=cmd_analyze)

    be = sub.add_parser("bench", help="benchmark the pipeline: ours (edge) against the paper's design")
    be.add_argument("--clip", type=Path, help="a recorded video (default: a clip generated from the demo source)")
    be.add_argument("--frames", type=int, default=450, help="frames to run (default 450)")
    be.add_argument("--json", action="store_true", help="one JSON object (edge.fps, edge.p99_ms, paper.fps, ...)")
    be.add_argument("--config", type=Path)
    be.add_argument("--paper-manifest", type=Path, help="the paper's float model manifest "
                    "(default models/baseline/paper-float.json, if there; a FILE named here must load)")
    be.set_defaults(func=lambda args: __import__("edge_app.runtime.bench", fromlist=["main"]).main(args))

    fl = sub.add_parser("fault-light", help="blink the LED's fault until stopped (systemd's engage-edge-fault.service "
                        "runs it when the service has stopped for good)")
    fl.add_argument("--config", type=Path)
    fl.set_defaults(func=cmd_fault_light)

    from edge_app.cli import (
        tech as tech_commands,  # model install/rollback/list/golden, selftest, export, backup
    )

    tech_commands.add_commands(sub)
    from edge_app.cli import classroom as classroom_command  # the instructor's page (edge_app/fleet)

    classroom_command.add_command(sub)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.log_level not in LOG_LEVELS:  # from the environment: parser.error exits 2 with usage and the reason
        parser.error(f"ENGAGE_LOG_LEVEL={os.environ.get('ENGAGE_LOG_LEVEL')!r} is not a log level: "
                     f"use one of {', '.join(LOG_LEVELS)}")
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    from edge_app.vision.classifier import ModelError

    restore = {} if args.command in SERVICES else _end_cleanly_on_hangup()
    try:
        return args.func(args)
    except config_mod.ConfigError as exc:
        print(f"error: configuration: {exc}", file=sys.stderr)
        if args.command == "run":
            _fault_led(config_mod.defaults())  # the file is unusable: show the fault with the default indicator
        return EXIT_USAGE
    except ModelError as exc:
        print(f"error: model: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `engage-edge export | head`: the reader stopped; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the exit's flush would fail again
        return 128 + signal.SIGPIPE
    finally:
        for sig, handler in restore.items():
            signal.signal(sig, handler)


SERVICES = ("run", "classroom", "fault-light")  # they stop on SIGTERM themselves (StopRequest)


def _end_cleanly_on_hangup() -> dict:
    """A one-shot command ends on SIGTERM or SIGHUP (the technician's SSH session dropped)
    as on Ctrl-C, by an exception: what it was writing is removed on the way out (see
    fsutil.atomic_path). Killed outright, an export or a backup left its hidden temp file
    beside the destination, as large as the database, on the device's card. Returns the
    handlers it replaced, for main to put back (tests call main in their own process)."""
    def leave(signum, _frame):
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):  # a second signal must not cut the clean-up short
            signal.signal(sig, signal.SIG_IGN)
        raise SystemExit(128 + signum)

    replaced = {sig: signal.signal(sig, leave) for sig in (signal.SIGTERM, signal.SIGHUP)}
    if signal.getsignal(signal.SIGINT) is not None:  # leave() ignores Ctrl-C too: main puts it back
        replaced[signal.SIGINT] = signal.getsignal(signal.SIGINT)
    return replaced


if __name__ == "__main__":
    sys.exit(main())
