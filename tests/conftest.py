"""Shared fixtures: the real face photos shipped in the package, a temporary config and
data directory, and a running appliance (demo source, real HTTP server on loopback), with
or without its capture loop. Shared helpers: ``wait_for`` (the one way to wait), ``stays``,
cascade recorders, and ``skip_unless_ci`` (a missing prerequisite fails in CI)."""
from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest
import requests

from edge_app import config as config_mod

ADMIN_PASSWORD = "admin-test-pw-1"
CHROMIUM = "/usr/bin/chromium"  # Debian's, installed by `make deps-test`
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync"]
ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture(scope="session")
def grace_path() -> Path:
    """The Grace Hopper portrait shipped in the package (public domain, US Navy)."""
    from edge_app.vision.faces import PHOTOS

    return Path(str(PHOTOS / "grace_hopper.jpg"))


@pytest.fixture(scope="module")
def grace(grace_path):
    """That portrait decoded (BGR), one copy per test module."""
    import cv2

    img = cv2.imread(str(grace_path), cv2.IMREAD_COLOR)
    assert img is not None
    return img


@pytest.fixture(scope="session")
def face_jpeg(grace_path) -> bytes:
    """A real face photograph (the shipped Grace Hopper portrait) as JPEG bytes."""
    return grace_path.read_bytes()


@pytest.fixture(scope="session")
def astronaut_png() -> bytes:
    """The shipped astronaut portrait (Eileen Collins, NASA), re-encoded as PNG."""
    from edge_app.vision.faces import photo

    ok, buf = cv2.imencode(".png", photo("astronaut.jpg"))
    assert ok
    return buf.tobytes()


@pytest.fixture
def cfg(tmp_path) -> config_mod.Config:
    """Defaults (an empty config file, so a device's /etc config never leaks in) with a
    private data dir, any free port, no indicator output and a 1 MB disk reserve (the
    default 16 MB in each of a run's hundreds of data directories held 2.7 GB of disk)."""
    empty = tmp_path / "config.toml"
    empty.write_text("# defaults\n")
    return config_mod.load(empty, {"store.data_dir": str(tmp_path / "data"), "web.port": 0,
                                   "indicators.backend": "none", "store.reserve_mb": 1})


@pytest.fixture
def make_appliance(cfg, monkeypatch):
    """Factory: start an Appliance (demo source unless given) and stop it afterwards."""
    from edge_app.runtime.appliance import Appliance

    monkeypatch.setenv("ENGAGE_ADMIN_PASSWORD", ADMIN_PASSWORD)
    started = []

    def make(config: config_mod.Config | None = None, **kwargs):
        # a device whose clock a time server has set (this machine's own may say it is not: the
        # retention purge would then wait), unless a test says otherwise
        kwargs.setdefault("clock_set", lambda: True)
        appliance = Appliance(config if config is not None else cfg, **kwargs).start()
        started.append(appliance)
        return appliance

    yield make
    for appliance in started:
        appliance.stop()


@pytest.fixture
def appliance(make_appliance):
    return make_appliance()


@pytest.fixture
def web_appliance(make_appliance):
    """The web UI on its store without the capture loop, for tests that never look at the
    live state, the stream or what the loop writes: much cheaper to start and stop. A module
    whose tests are all like that overrides ``appliance`` with it (``admin_session`` follows)."""
    return make_appliance(with_loop=False)


def login(base_url: str, username: str = "admin", password: str = ADMIN_PASSWORD) -> requests.Session:
    """A requests session logged in through the JSON login API; ``.csrf`` holds its token."""
    s = requests.Session()
    r = s.post(f"{base_url}/api/login", json={"username": username, "password": password}, timeout=10)
    r.raise_for_status()
    s.csrf = r.json()["csrf"]  # type: ignore[attr-defined]
    s.headers["X-CSRF-Token"] = s.csrf  # what a script sends with every state-changing API call
    return s


@pytest.fixture
def admin_session(appliance) -> requests.Session:
    return login(appliance.url)


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def load_tool(name: str):
    """tools/<name>.py as a module (tools/ is a folder of scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def wait_for(predicate, timeout=15.0, every=0.05, what: str = ""):
    """Poll ``predicate`` until it returns something truthy (returned) or time runs out.

    The one way tests wait for something to happen: never a bare sleep."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"not reached within {timeout} s: {what or getattr(predicate, '__name__', predicate)}")
        time.sleep(every)


def stays(predicate, seconds: float, every=0.005) -> bool:
    """True when ``predicate`` holds at every check over ``seconds``: for proving that
    something does *not* happen (a blink that should have stopped), never for waiting."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not predicate():
            return False
        time.sleep(every)
    return bool(predicate())


ENGAGE_EDGE_SCRIPT = Path(sys.executable).parent / "engage-edge"
ENGAGE_EDGE = [str(ENGAGE_EDGE_SCRIPT)] if ENGAGE_EDGE_SCRIPT.exists() else [sys.executable, "-m", "edge_app"]


@contextlib.contextmanager
def service_process(*args, env: dict):
    """A real ``engage-edge run`` or ``classroom`` process (the console script where it is
    installed), stdout and stderr piped as text; killed if the test leaves it running."""
    proc = subprocess.Popen([*ENGAGE_EDGE, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def served_at(proc) -> str:
    """The address a service's start-up line names ("web UI at ..." or "page at ..."),
    read from its output as it comes."""
    assert proc.stdout is not None
    for line in proc.stdout:  # blocks until each line is there
        if found := re.search(r"(?:web UI|page) at (https?://\S+)", line):
            return found.group(1)
    raise AssertionError(f"no start-up line; it said: {proc.stderr.read()}")


def stops_cleanly(proc, sig: int, timeout: float) -> str:
    """Send ``sig``: the service says "stopping" and exits 0 without a traceback within
    ``timeout`` seconds. Returns what it printed."""
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    assert "stopping" in out and "Traceback" not in err
    return out


class RecordingCascade:
    """A Haar cascade that records the size of every image it is asked to search, so a
    test can see which cascade ran, and on how much of the frame."""

    def __init__(self, cascade):
        self.cascade = cascade
        self.calls: list[tuple[int, int]] = []

    def detectMultiScale(self, image, *args, **kwargs):  # noqa: N802 - OpenCV's name
        self.calls.append(image.shape[:2])
        return self.cascade.detectMultiScale(image, *args, **kwargs)


def record_cascades(detector) -> tuple[RecordingCascade, RecordingCascade]:
    """Wrap ``detector``'s frontal and profile cascades in place; returns the recorders."""
    assert detector.profile is not None, "record_cascades needs a detector with the profile cascade on"
    detector.frontal = RecordingCascade(detector.frontal)
    detector.profile = RecordingCascade(detector.profile)
    return detector.frontal, detector.profile


def skip_unless_ci(reason: str) -> None:
    """Skip on a developer's machine that lacks ``reason``; fail in CI (``CI`` set), which
    must have everything the suite needs, so nothing is silently left untested there."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} - CI must provide it (CI is set)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium for the whole run (each test opens its own context)."""
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: run `make deps-test` (apt-get install chromium) first")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@contextlib.contextmanager
def environment_variable(name: str, value: str):
    """``name`` set to ``value`` in this process's environment, and back as it was (unset
    too) afterwards: for module-scoped fixtures, where ``monkeypatch`` (per test) cannot."""
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


@contextlib.contextmanager
def device_zone(rule: str):
    """The process's (the device's) local zone set to ``rule`` (a POSIX TZ rule such as
    "CET-1CEST,M3.5.0,M10.5.0/3"), and back afterwards."""
    try:
        with environment_variable("TZ", rule):
            time.tzset()
            yield
    finally:
        time.tzset()  # the zone as restored


@contextlib.contextmanager
def module_appliance(tmp_path_factory, name: str, changes: dict | None = None, **kwargs):
    """A started appliance for a test module's browser tests: its own folder, the default
    config with ``changes`` over it, on a free loopback port, no LED, the first admin's
    password ``ADMIN_PASSWORD``; ``kwargs`` go to ``Appliance``. Stopped at the end."""
    from edge_app.runtime.appliance import Appliance

    tmp = tmp_path_factory.mktemp(name)
    (tmp / "config.toml").write_text("# defaults\n")
    cfg = config_mod.load(tmp / "config.toml", {"store.data_dir": str(tmp / "data"), "web.port": 0,
                                                "indicators.backend": "none", **(changes or {})})
    with admin_password_env():
        appliance = Appliance(cfg, **kwargs).start()
    try:
        yield appliance
    finally:
        appliance.stop()


def admin_password_env():
    """ENGAGE_ADMIN_PASSWORD set while an appliance starts, for module-scoped fixtures."""
    return environment_variable("ENGAGE_ADMIN_PASSWORD", ADMIN_PASSWORD)


@contextlib.contextmanager
def mounted_tmpfs(path: Path, size: str):
    """A real small file system at ``path`` (a tmpfs), for full-disk and read-only tests:
    root only; skipped on a developer's machine without it, failed in CI."""
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True, text=True)
    if r.returncode != 0:
        skip_unless_ci(f"mounting a tmpfs needs root (CI runs as root): {r.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def wait_in_page(page, expression: str, arg=None, timeout: float = 15.0):
    """Wait until ``expression`` (or the function it names, given ``arg``) is truthy in
    ``page``, asking from here at each poll (``page.evaluate``). Playwright's
    ``wait_for_function`` polls inside the page with ``eval``, which the app's CSP (no
    'unsafe-eval') refuses once the first look was false: a page slow under load failed
    with "EvalError ... violates the Content Security Policy" (microsoft/playwright#36986)."""
    return wait_for(lambda: page.evaluate(expression, arg), timeout, what=expression)


def fill_up(path: Path) -> None:
    """Write ``path`` until its file system is full (a ``mounted_tmpfs``): a disk with no room left."""
    with open(path, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError:
            pass


def browser_login(page, base_url: str, username: str = "admin", password: str = ADMIN_PASSWORD) -> None:
    """Log ``page`` in through the real form, as a person would."""
    page.goto(f"{base_url}/login")
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_load_state()


def damage_table(store, table: str) -> None:
    """A bad block under ``table`` (a failing SD card): its root page overwritten on disk,
    the rest of the database intact. Closes ``store``; fill the table past one page first."""
    store.connect().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    root = store.query("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,))[0][0]
    page_size = store.query("PRAGMA page_size")[0][0]
    store.close()
    with open(store.path, "r+b") as f:
        f.seek((root - 1) * page_size)
        f.write(b"\xff" * page_size)
