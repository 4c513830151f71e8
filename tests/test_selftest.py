"""`engage-edge selftest`: one PASS/FAIL line per check, non-zero exit on a failure; runs on a
laptop with the demo source and console indicator, and drives real (mock-factory) pins."""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory, MockPWMPin

from edge_app import config as config_mod
from edge_app.cli import main
from edge_app.device import clock, selftest
from edge_app.device.indicators import make_indicator
from edge_app.engagement import PAUSED, Group
from edge_app.fsutil import lost_at_reboot
from edge_app.models import checks
from edge_app.store.database import Store
from edge_app.vision.blazeface import SHIPPED_DETECTOR as DETECTOR_MANIFEST
from edge_app.vision.classifier import SHIPPED_MANIFEST
from tests.conftest import mounted_tmpfs, skip_unless_ci

CHECKS = ["camera", "led", "buzzer", "model", "detector", "database", "disk", "web"]
# the clock check reads this machine's kernel: a clock no time server set is a WARN (tests/test_clock.py)
CLOCK = {True: "PASS", False: "WARN", None: "SKIP"}[clock.synchronized()]
# the storage check reads where the tests' data folders are: a laptop whose /tmp is a tmpfs is a WARN
STORAGE = "WARN" if lost_at_reboot(tempfile.gettempdir()) else "PASS"


@pytest.fixture(scope="module")
def golden_manifest(tmp_path_factory):
    """A copy of the shipped model whose manifest carries golden data."""
    d = tmp_path_factory.mktemp("model")
    raw = json.loads(SHIPPED_MANIFEST.read_text())
    shutil.copy(SHIPPED_MANIFEST.parent / raw["model"], d / raw["model"])
    path = d / SHIPPED_MANIFEST.name
    path.write_text(json.dumps(raw))
    checks.write_golden(path)
    return path


def write_config(tmp_path, golden_manifest, **extra) -> str:
    lines = ['[indicators]', 'backend = "console"', 'buzzer_beep_s = 0.02', '[model]', f'manifest = "{golden_manifest}"',
             '[store]', f'data_dir = "{tmp_path / "data"}"']
    Store(tmp_path / "data").close()  # a device that has run: a missing database is a WARN
    path = tmp_path / "selftest.toml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def status_lines(out: str) -> dict[str, str]:
    found = {}
    for line in out.splitlines():
        for status in ("PASS", "FAIL", "WARN", "SKIP"):
            if line.startswith(status + " "):
                found[line.split()[1].rstrip(":")] = status
    return found


def test_laptop_selftest_passes_with_demo_and_console(tmp_path, golden_manifest, capsys):
    conf = write_config(tmp_path, golden_manifest)
    assert main(["selftest", "--source", "demo", "--config", conf, "--step", "0.01"]) == 0
    out = capsys.readouterr().out
    # the stand-ins pass their checks but say they are no hardware, here and in the verdict
    assert status_lines(out) == dict.fromkeys(CHECKS, "PASS") | {"clock": CLOCK, "storage": STORAGE} | dict.fromkeys(
        ["camera", "led", "buzzer"], "WARN")
    assert "the demo source: no camera was checked" in out and 'backend = "console": no LED or buzzer' in out
    assert "self-test passed, but no hardware was checked for: camera, led, buzzer" in out
    assert "look at the LED" not in out and "listen" not in out  # nothing there to look at or hear
    assert "LED green" in out and "LED amber" in out and "LED red" in out and "LED violet" in out
    assert "grey (slow blink)" in out and "blue (slow pulse)" in out
    assert "fast red blink" in out and "BUZZER" in out and "golden check passed" in out
    assert "self-test passed" in out


def test_no_buzzer_skips_the_chirp(tmp_path, golden_manifest, capsys):
    conf = write_config(tmp_path, golden_manifest)
    assert main(["selftest", "--source", "demo", "--no-buzzer", "--config", conf, "--step", "0.01"]) == 0
    out = capsys.readouterr().out
    assert status_lines(out)["buzzer"] == "SKIP" and "BUZZER" not in out


def test_failures_give_fail_lines_and_a_nonzero_exit(tmp_path, capsys):
    path = tmp_path / "nogolden.toml"
    Store(tmp_path / "data").close()
    path.write_text(f'[indicators]\nbackend = "none"\n[store]\ndata_dir = "{tmp_path / "data"}"\n'
                    f'[model]\nmanifest = "{tmp_path / "missing.json"}"\n')
    assert main(["selftest", "--source", str(tmp_path / "no-such-video.mp4"), "--config", str(path),
                 "--step", "0.01", "--no-buzzer"]) == 1
    out = capsys.readouterr().out
    lines = status_lines(out)
    assert lines["camera"] == "FAIL" and lines["model"] == "FAIL"
    assert lines["database"] == "PASS" and lines["disk"] == "PASS"
    assert "does not exist" in out and "self-test FAILED: camera, model" in out
    assert "holding the camera" not in out  # a missing file is not a camera the service could hold
    # backend "none" drives nothing: no "PASS led ... (look at the LED)" for a dark LED
    assert lines["led"] == lines["buzzer"] == "SKIP" and 'SKIP led: indicators.backend = "none"' in out


def test_a_data_directory_that_cannot_be_created_says_what_to_do(tmp_path, golden_manifest, capsys):
    """On a read-only file system the database and disk lines said only "[Errno 30]
    Read-only file system": now each says what to do."""
    with mounted_tmpfs(tmp_path / "ro", "1m") as ro:
        subprocess.run(["mount", "-o", "remount,ro", str(ro)], check=True)
        path = tmp_path / "ro.toml"
        path.write_text(Path(write_config(tmp_path, golden_manifest)).read_text()
                        .replace(str(tmp_path / "data"), str(ro / "data")))
        assert main(["selftest", "--source", "demo", "--config", str(path), "--step", "0.01", "--no-buzzer"]) == 1
    out = capsys.readouterr().out
    lines = status_lines(out)
    assert lines["database"] == "FAIL" and lines["disk"] == "FAIL"
    database = next(line for line in out.splitlines() if line.startswith("FAIL database"))
    disk = next(line for line in out.splitlines() if line.startswith("FAIL disk"))
    assert "Read-only file system" in database and "store.data_dir" in database
    assert "Read-only file system" in disk and "store.data_dir" in disk


def test_under_systemd_a_read_only_data_directory_names_the_sandboxs_drop_in(tmp_path, golden_manifest, monkeypatch):
    """A data_dir outside /var/lib/engage-edge (ProtectSystem=strict) stopped the service with
    "Read-only file system: check that its file system is mounted read-write" while the
    self-test, outside the sandbox, passed. Run by systemd (INVOCATION_ID), the database and
    disk messages now name the drop-in that lets the service write there."""
    from edge_app.store.database import Store, StoreError

    with mounted_tmpfs(tmp_path / "ro", "1m") as ro:
        (ro / "made").mkdir()
        subprocess.run(["mount", "-o", "remount,ro", str(ro)], check=True)
        cfg = config_mod.load(None, {"store.data_dir": str(ro / "data")})
        messages = {}
        for invocation in ("", "0123456789abcdef0123456789abcdef"):
            monkeypatch.setenv("INVOCATION_ID", invocation)
            with pytest.raises(RuntimeError) as disk:
                selftest.check_disk(cfg)
            with pytest.raises(StoreError) as created:
                Store(ro / "data")
            with pytest.raises(StoreError) as existing:
                Store(ro / "made")
            messages[bool(invocation)] = [str(e.value) for e in (disk, created, existing)]
    for message in messages[True]:
        assert "Read-only file system" in message and "sudo systemctl edit engage-edge" in message, message
        assert "ReadWritePaths=" + str(ro) in message and "The service's sandbox" in message, message
    assert not any("ReadWritePaths" in message for message in messages[False]), messages[False]
    # an existing folder on a read-only mount is said as such, with its real path (it said
    # "cannot create the data directory", and "sudo chown -R engage: DIR", a placeholder)
    disk, created, existing = messages[False]
    assert existing.startswith(f"the data directory {ro / 'made'} is not writable (Read-only file system)"), existing
    assert "mounted read-only: mount it read-write" in existing
    assert f"check that {ro} is on a file system mounted read-write" in created, created
    assert not any("DIR" in message for message in messages[False] + messages[True])


def test_a_data_directory_given_as_the_database_file_says_to_give_its_folder(tmp_path, golden_manifest, capsys):
    """'--data-dir /var/lib/engage-edge/engage.db' (the database, not its folder): the lines
    said 'cannot create ... (File exists): check that its file system is mounted read-write
    ... sudo chown -R', the wrong way; they say to give the folder, and which."""
    conf = write_config(tmp_path, golden_manifest)
    from edge_app.store.database import Store

    Store(tmp_path / "data").close()
    db = tmp_path / "data" / "engage.db"
    assert main(["selftest", "--source", "demo", "--config", conf, "--step", "0", "--no-buzzer", "--data-dir", str(db)]) == 1
    out = capsys.readouterr().out
    for check in ("database", "disk"):
        line = next(line for line in out.splitlines() if line.startswith(f"FAIL {check}"))
        assert f"the data directory {db} is a file, not a folder: give the folder the database lives in " \
               f"({db.parent}, not engage.db)" in line, line
        assert "chown" not in line and "read-write" not in line
    assert db.is_file()


def test_a_data_directory_with_no_database_is_a_warning_and_nothing_is_made(tmp_path, golden_manifest, capsys):
    """A mistyped --data-dir made a new empty database there and passed ("a NEW, empty
    database"): the device's real data was elsewhere, and a folder was left behind. Now
    nothing is made, and the line is a WARN naming the place."""
    conf = write_config(tmp_path, golden_manifest)
    args = ["selftest", "--source", "demo", "--config", conf, "--step", "0", "--no-buzzer", "--data-dir"]
    for missing in (tmp_path / "dta", tmp_path / "empty"):
        if missing.name == "empty":
            missing.mkdir()  # a folder, no database
        assert main([*args, str(missing)]) == 0
        out = capsys.readouterr().out
        line = next(line for line in out.splitlines() if line.startswith("WARN database"))
        assert f"no database at {missing / 'engage.db'} (a mistyped --data-dir" in line and "nothing was created" in line
        assert status_lines(out)["disk"] == "PASS"
    assert not (tmp_path / "dta").exists() and list((tmp_path / "empty").iterdir()) == []
    assert main([*args, str(tmp_path / "data")]) == 0  # there: the usual line
    assert "PASS database" in capsys.readouterr().out


def test_https_files_the_service_could_not_load_fail_the_web_check(tmp_path, golden_manifest, capsys):
    """The self-test passed while the service could not start: it exited 2 "HTTPS key ...
    cannot be read" (or its key was another pair's), which no check had looked at."""
    pairs = []
    for name in ("school", "other"):
        cert, key = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=desk",
                        "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
        pairs.append((cert, key))
    (cert, key), (_, other_key) = pairs
    base = write_config(tmp_path, golden_manifest)
    for tls_key, said in ((tmp_path / "gone.pem", f"the HTTPS key {tmp_path / 'gone.pem'} cannot be read"),
                          (other_key, "the key is not the certificate's own"),
                          (key, None)):
        conf = tmp_path / "web.toml"
        conf.write_text(Path(base).read_text() + f'[web]\ntls_cert = "{cert}"\ntls_key = "{tls_key}"\n')
        code = main(["selftest", "--source", "demo", "--no-buzzer", "--config", str(conf), "--step", "0.01"])
        out = capsys.readouterr().out
        if said:
            assert code == 1 and status_lines(out)["web"] == "FAIL" and said in out, out
            assert "self-test FAILED: web" in out
        else:
            assert code == 0 and status_lines(out)["web"] == "PASS" and "HTTPS on 127.0.0.1:" in out, out


def test_model_without_golden_data_fails_the_model_check(tmp_path):
    raw = json.loads(SHIPPED_MANIFEST.read_text())
    raw.pop("golden", None)
    shutil.copy(SHIPPED_MANIFEST.parent / raw["model"], tmp_path / raw["model"])
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps(raw))
    cfg = config_mod.load(None, {"model.manifest": str(manifest), "store.data_dir": str(tmp_path / "d")})
    with pytest.raises(RuntimeError, match="no golden data"):
        selftest.check_model(cfg)


def test_a_corrupt_face_detector_fails_the_self_test(tmp_path, golden_manifest, capsys):
    """The appliance refuses to start with a damaged detector model: the self-test must not pass it."""
    shipped = DETECTOR_MANIFEST.parent
    models = tmp_path / "models"
    shutil.copytree(shipped, models)
    model = models / json.loads(DETECTOR_MANIFEST.read_text())["model"]
    model.write_bytes(model.read_bytes()[:20000])
    conf = tmp_path / "selftest.toml"
    conf.write_text(Path(write_config(tmp_path, golden_manifest)).read_text()
                    + f'[detector]\nmanifest = "{models / DETECTOR_MANIFEST.name}"\n')
    assert main(["selftest", "--source", "demo", "--no-buzzer", "--config", str(conf), "--step", "0.01"]) == 1
    out = capsys.readouterr().out
    assert status_lines(out)["detector"] == "FAIL" and status_lines(out)["model"] == "PASS"
    assert "reinstall engage-edge" in out and "self-test FAILED: detector" in out


def test_a_damaged_model_file_fails_the_model_check_with_what_to_do(tmp_path, golden_manifest):
    models = tmp_path / "m"
    shutil.copytree(golden_manifest.parent, models)
    model = models / json.loads(golden_manifest.read_text())["model"]
    model.write_bytes(model.read_bytes()[:20000])
    cfg = config_mod.load(None, {"model.manifest": str(models / golden_manifest.name), "store.data_dir": str(tmp_path / "d")})
    with pytest.raises(RuntimeError, match="does not match its manifest.*: fix or remove model.manifest"):
        selftest.check_model(cfg)


def test_selftest_walks_the_real_pins_through_the_colours(tmp_path, golden_manifest):
    factory = MockFactory(pin_class=MockPWMPin)
    try:
        Store(tmp_path / "d").close()
        cfg = config_mod.load(None, {"indicators.backend": "gpio", "indicators.buzzer_beep_s": 0.02,
                                     "model.manifest": str(golden_manifest), "store.data_dir": str(tmp_path / "d")})
        out = io.StringIO()
        results = selftest.run(cfg, "demo", step_s=0.05, out=out, pin_factory=factory)
        assert {r.name: r.status for r in results} == dict.fromkeys(CHECKS, "PASS") | {"clock": CLOCK, "storage": STORAGE, "camera": "WARN"}, \
            out.getvalue()  # the pins are driven (mock ones): only the demo camera is no hardware
        assert "self-test passed, but no hardware was checked for: camera\n" in out.getvalue()
        red, green, blue, buzzer = (factory.pin(n) for n in (17, 27, 22, 23))
        assert 0.4 in [round(s.state, 3) for s in green.states]  # amber
        assert 1.0 in [s.state for s in green.states] and 1.0 in [s.state for s in blue.states]
        assert 0.5 in [round(s.state, 3) for s in red.states]  # violet
        assert 0.3 in [round(s.state, 3) for s in blue.states]  # grey
        assert sum(1 for s in red.states if s.state == 1.0) >= 3  # red, amber and the fault blink
        assert [s.state for s in buzzer.states[1:]] == [1, 0, 1, 0]
        assert red.state == green.state == blue.state == 0  # closed: all off
    finally:
        factory.reset()


def test_by_default_each_look_is_shown_for_its_whole_pattern(tmp_path, monkeypatch):
    """The self-test showed each look for 0.4 s: a technician asked whether "Partially
    engaged" breathes, "Not engaged" flashes twice and "Paused" pulses saw a fifth of a
    breathe, one flash and half a pulse. Each look now runs one whole period of its pattern.

    How long each look is held is read from the self-test's own waits (they really wait):
    the LED's fade thread lags on a loaded machine, so a pulse's fade back in, at the very
    end of its period, was not always on the pins before the next look (a flaky check)."""
    factory = MockFactory(pin_class=MockPWMPin)
    held: list[tuple[str, float]] = []
    shown: list[str] = []

    def wait(seconds: float) -> None:
        held.append((shown[-1], seconds))
        time.sleep(seconds)

    monkeypatch.setattr(selftest, "time", types.SimpleNamespace(sleep=wait, monotonic=time.monotonic, time=time.time))
    try:
        cfg = config_mod.load(None, {"indicators.backend": "gpio", "store.data_dir": str(tmp_path / "d")})
        indicator = make_indicator(cfg, factory)
        show, fault = indicator.show, indicator.fault
        monkeypatch.setattr(indicator, "show", lambda group: (shown.append(group), show(group))[1])
        monkeypatch.setattr(indicator, "fault", lambda on, *a: (shown.append("fault") if on else None, fault(on, *a))[1])
        red, green, blue = (factory.pin(n) for n in (17, 27, 22))
        try:
            assert "amber (slow breathe)" in selftest.check_led(indicator, None)
        finally:
            indicator.close()
        patterns = indicator.patterns
        holds = dict(held)
        assert [group for group, _ in held] == list(selftest.GROUPS) + ["fault"]
        for group in selftest.GROUPS:
            look = patterns.look_of(group, False)
            assert holds[group] == (look.period() or selftest.STEADY_S), group
        breathe, pulse = patterns.look_of(Group.PARTIALLY_ENGAGED, False), patterns.look_of(PAUSED, False)
        assert holds[Group.PARTIALLY_ENGAGED] == pytest.approx(sum(breathe.pulse)) == 4.0  # out to a fifth and back
        assert holds[PAUSED] == pytest.approx(sum(pulse.pulse)) == 2.0  # out to dark and back
        flash_on, flash_off = patterns.not_engaged_flash
        assert holds[Group.NOT_ENGAGED] >= 2 * (flash_on + flash_off)  # both flashes
        assert holds["fault"] == 2 * sum(patterns.fault_blink)  # two fault blinks
        # and on the pins: each pattern is what is driven, not only waited for
        assert 0.2 in [round(s.state, 3) for s in red.states]  # amber's breathe reached its floor (a fifth)
        assert 0.08 in [round(s.state, 3) for s in green.states]
        # a mock pin's state is recorded with how long the one before it was held: a full red
        # held 0.2 s then off is one of Not engaged's flashes (the fault's are 0.1 s)
        flashes = [s for s, prev in zip(red.states[1:], red.states) if prev.state == 1.0 and s.state == 0.0
                   and s.timestamp >= 0.15]
        assert len(flashes) >= 2, red.states  # both flashes of the double flash
        assert any(0 < s.state < 0.1 for s in blue.states)  # Paused's pulse faded out
    finally:
        factory.reset()


@pytest.mark.parametrize("step", ["-1", "nan", "1e9", "fast"])
def test_a_step_out_of_range_is_a_usage_error_not_a_failed_led(step, tmp_path, golden_manifest, capsys):
    """'--step -1' printed 'FAIL led: sleep length must be non-negative', so a good LED was
    reported broken; '--step 1e9' held the LED on green for 30 years."""
    with pytest.raises(SystemExit) as stopped:
        main(["selftest", "--source", "demo", "--config", write_config(tmp_path, golden_manifest), "--step", step])
    assert stopped.value.code == 2
    out, err = capsys.readouterr()
    assert f"argument --step: {step!r} is not a number of seconds from 0 to 5" in err and "FAIL" not in out


class ClaimedByAnotherProcess(MockPWMPin):
    """GPIO17 as lgpio finds it while the running service has claimed its line: the kernel
    answers 'GPIO busy' (lgpio.error), which gpiozero passes on. gpiozero's MockFactory
    only knows one process's reservations, so this one refusal is added to its pin."""

    def __init__(self, factory, info, **kwargs):
        if info.name == "GPIO17":
            raise RuntimeError("'GPIO busy'")
        super().__init__(factory, info, **kwargs)


def test_pins_held_by_another_process_say_to_stop_the_service(tmp_path, golden_manifest):
    """The self-test run beside the service (which holds the LED and buzzer pins) said only
    "FAIL led: ... GPIO busy", and no buzzer line at all; the camera line already says what
    to do, the LED line now does too."""
    factory = MockFactory(pin_class=ClaimedByAnotherProcess)
    try:
        cfg = config_mod.load(None, {"indicators.backend": "gpio", "model.manifest": str(golden_manifest),
                                     "store.data_dir": str(tmp_path / "d")})
        out = io.StringIO()
        results = {r.name: r for r in selftest.run(cfg, "demo", step_s=0, out=out, pin_factory=factory)}
        assert results["led"].status == "FAIL" and "GPIO busy" in results["led"].detail
        assert "held by another process" in results["led"].detail
        assert "sudo systemctl stop engage-edge engage-edge-fault" in results["led"].detail, out.getvalue()  # the fault light holds them too
        assert results["buzzer"].status == "SKIP" and "LED" in results["buzzer"].detail, out.getvalue()
        assert "SKIP buzzer:" in out.getvalue()
    finally:
        factory.reset()


def test_a_pin_held_in_this_process_is_not_blamed_on_the_service(tmp_path, golden_manifest):
    """gpiozero's GPIOPinInUse only ever comes from this process (two features on one pin):
    the line said "is the engage-edge service running and holding the pins? stop it first"
    to a technician whose service was stopped."""
    factory = MockFactory(pin_class=MockPWMPin)
    try:
        from gpiozero import Button

        button = Button(22, pin_factory=factory)  # another device of this process on the blue LED's pin
        cfg = config_mod.load(None, {"indicators.backend": "gpio", "model.manifest": str(golden_manifest),
                                     "store.data_dir": str(tmp_path / "d")})
        out = io.StringIO()
        led = next(r for r in selftest.run(cfg, "demo", step_s=0, out=out, pin_factory=factory) if r.name == "led")
        assert led.status == "FAIL" and "GPIO22" in led.detail and "held by this process" in led.detail, led.detail
        assert "systemctl stop" not in led.detail and "service running" not in led.detail
        button.close()
    finally:
        factory.reset()


def test_selftest_as_plain_root_writes_as_the_data_directorys_owner(tmp_path, golden_manifest):
    """`sudo engage-edge selftest` (plain root, not `sudo -u engage`) created a root-owned
    engage.db and images/ in the service's data directory, and the service then could not
    start (a traceback: "attempt to write a readonly database"). It now runs as the data
    directory's owner, as `passwd` does."""
    if os.geteuid() != 0:
        skip_unless_ci("acting as the data directory's owner needs root (CI runs as root)")
    nobody = 65534
    with tempfile.TemporaryDirectory(dir="/tmp") as top:  # reachable by its user, unlike pytest's tmp_path
        data = Path(top) / "data"
        Store(data).close()  # the service's (a selftest makes no database: a mistyped --data-dir is a WARN)
        model = Path(top) / "model"
        shutil.copytree(golden_manifest.parent, model)
        for path in [Path(top), data, *data.iterdir(), model, *model.iterdir()]:
            os.chown(path, nobody, nobody)
        conf = tmp_path / "selftest.toml"
        conf.write_text(f'[indicators]\nbackend = "console"\n[model]\nmanifest = "{model / golden_manifest.name}"\n'
                        f'[store]\ndata_dir = "{data}"\n')
        r = subprocess.run([sys.executable, "-m", "edge_app", "selftest", "--source", "demo", "--no-buzzer",
                            "--config", str(conf), "--step", "0.01"], capture_output=True, text=True, timeout=120)
        assert status_lines(r.stdout)["database"] == "PASS", r.stdout + r.stderr
        owners = {p.name: p.stat().st_uid for p in data.iterdir()}
        assert "engage.db" in owners and "images" in owners and set(owners.values()) == {nobody}, owners


def test_a_damaged_flashed_model_is_sent_to_what_brings_it_back(tmp_path):
    """A flashed model that no longer loads failed the model check with "engage-edge model
    rollback, or engage-edge model install a good model" also when the model before it was
    damaged too, so the rollback advised was refused. The check says what works: the rollback
    while the earlier model loads, else installing the shipped model (its paths named)."""
    from edge_app.models import registry as flash

    cfg = config_mod.load(None, {"store.data_dir": str(tmp_path / "d")})
    models = flash.models_dir(cfg)
    raw = json.loads(SHIPPED_MANIFEST.read_text())
    for n in (1, 2):  # two installs of the shipped network (padded: a file of its own), as `model install` makes them
        data = (SHIPPED_MANIFEST.parent / raw["model"]).read_bytes() + b"\0" * (16 * n)
        model, manifest = tmp_path / f"m{n}.tflite", tmp_path / f"m{n}.json"
        model.write_bytes(data)
        manifest.write_text(json.dumps({**raw, "model": model.name, "sha256": hashlib.sha256(data).hexdigest()}))
        flash.install(model, manifest, cfg)
    damaged = [models / json.loads((models / name).read_text())["model"] for name in ("current.json", "previous.json")]
    damaged[0].write_bytes(b"\0" * 100)
    with pytest.raises(RuntimeError, match="does not match its manifest.*model rollback' returns to the model that ran"):
        selftest.check_model(cfg)
    damaged[1].write_bytes(b"\0" * 100)
    with pytest.raises(RuntimeError) as failed:
        selftest.check_model(cfg)
    assert "nor does the earlier one" in str(failed.value) and "rollback" not in str(failed.value), failed.value
    assert f"{SHIPPED_MANIFEST.with_suffix('.tflite')} --manifest {SHIPPED_MANIFEST}" in str(failed.value)


def test_a_data_folder_held_in_memory_is_a_warning_with_what_to_do(tmp_path, golden_manifest):
    """Every check passed on a device whose data folder was in memory: it worked all day and
    each boot was a first start again. The self-test says so, and what to change."""
    cfg = config_mod.load(None, {"store.data_dir": str(tmp_path / "data")})
    kept = selftest.check_storage(cfg)
    assert kept.status == "PASS" and "kept over a reboot" in kept.detail
    with mounted_tmpfs(tmp_path / "ram", "4m") as ram:
        lost = selftest.check_storage(config_mod.load(None, {"store.data_dir": str(ram / "data")}))
    assert lost.status == "WARN", lost
    assert lost.detail.startswith(f"nothing this device records outlives a reboot: its data folder {ram / 'data'} is in "
                                  f"memory ({ram} is a tmpfs, held in memory)"), lost.detail
    assert "a new admin password" in lost.detail and "set store.data_dir to a folder on the SD card" in lost.detail
