"""The real ``engage-edge`` console script, run as a separate process."""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from conftest import ENGAGE_EDGE, ENGAGE_EDGE_SCRIPT, served_at, service_process, stops_cleanly, wait_for

from edge_app import __version__
from edge_app.vision.classifier import KNOWN_LABELS

SCRIPT, COMMAND = ENGAGE_EDGE_SCRIPT, ENGAGE_EDGE
LEVELS = ("Engaged", "Partially engaged", "Not engaged")


@pytest.fixture
def empty_config(tmp_path) -> Path:
    """An empty config file, so a device's /etc/engage-edge/config.toml never leaks in."""
    path = tmp_path / "config.toml"
    path.write_text("# defaults\n")
    return path


def cli(*args, timeout=60, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([*COMMAND, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def test_console_script_is_installed():
    assert SCRIPT.exists(), "pip install -e . installs the engage-edge console script into the venv"


def test_version():
    r = cli("--version")
    assert r.returncode == 0
    assert r.stdout.strip() == f"engage-edge {__version__}"


def test_no_command_prints_help_and_exits_2():
    r = cli()
    assert r.returncode == 2
    assert "run" in r.stdout and "analyze" in r.stdout


def test_the_log_level_from_the_environment_in_any_case_or_a_clear_error(tmp_path, empty_config):
    r = cli("model", "list", "--config", empty_config, env={"ENGAGE_LOG_LEVEL": "debug"})
    assert r.returncode == 0 and "Traceback" not in r.stderr
    r = cli("model", "list", "--config", empty_config, env={"ENGAGE_LOG_LEVEL": "verbose"})
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "ENGAGE_LOG_LEVEL='verbose' is not a log level: use one of DEBUG, INFO, WARNING, ERROR" in r.stderr


def test_analyze_prints_a_table(grace_path, empty_config):
    r = cli("analyze", grace_path, "--config", empty_config)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == f"{grace_path}:"
    header = lines[1]
    for column in ("box", "emotion", "conf", "engagement"):
        assert column in header
    rows = [line for line in lines[2:] if line.strip()]
    assert len(rows) == 1
    m = re.match(r"^\s+1\s+(\d+),(\d+),(\d+),(\d+)\s+(\w+)\s+(\d+)%\s+(.+)$", rows[0])
    assert m, rows[0]
    x, y, w, h = map(int, m.groups()[:4])
    assert x <= 265 <= x + w and y <= 215 <= y + h  # Grace Hopper's face
    assert m.group(5) in KNOWN_LABELS
    assert 12 <= int(m.group(6)) <= 100
    assert m.group(7).startswith(LEVELS)


def test_analyze_json(grace_path, astronaut_png, tmp_path, empty_config):
    astronaut = tmp_path / "astronaut.png"
    astronaut.write_bytes(astronaut_png)
    r = cli("analyze", "--json", grace_path, "--config", empty_config)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["image"] == str(grace_path)
    (face,) = result["faces"]
    assert len(face["box"]) == 4 and all(isinstance(v, int) for v in face["box"])
    assert face["emotion"] in KNOWN_LABELS
    assert set(face["probabilities"]) == set(KNOWN_LABELS)
    assert sum(face["probabilities"].values()) == pytest.approx(1.0, abs=0.01)
    assert face["confidence"] == pytest.approx(face["probabilities"][face["emotion"]], abs=1e-3)
    assert face["engagement"].startswith(LEVELS)

    r = cli("analyze", "--json", grace_path, astronaut, "--config", empty_config)
    assert r.returncode == 0
    results = json.loads(r.stdout)
    assert [Path(x["image"]).name for x in results] == ["grace_hopper.jpg", "astronaut.png"]
    assert all(len(x["faces"]) == 1 for x in results)


def test_analyze_a_file_that_is_not_an_image(tmp_path, grace_path, empty_config):
    notes = tmp_path / "notes.jpg"
    notes.write_text("not a picture")
    r = cli("analyze", notes, grace_path, "--config", empty_config)
    assert r.returncode == 1
    assert "not a JPEG, PNG or WebP image" in r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    assert re.search(r"^\s+1\s+\d+,\d+,\d+,\d+\s+[a-z]+\s+\d+%", r.stdout, re.M)  # the good one still ran


def test_analyze_a_path_that_does_not_exist_names_it_and_says_what_to_do(tmp_path, grace_path, empty_config):
    """`analyze nosuch.jpg` said only 'No such file or directory': which name, and what then?
    The message names the path and what analyze takes; the other files named still run."""
    missing = tmp_path / "nosuch.jpg"
    advice = (f"{missing} does not exist: check the path (analyze takes JPEG, PNG or WebP files, "
              "or folders that hold them)")
    r = cli("analyze", missing, grace_path, "--config", empty_config)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert f"{missing}:\n  error: {advice}\n" in r.stdout
    assert re.search(r"^\s+1\s+\d+,\d+,\d+,\d+\s+[a-z]+\s+\d+%", r.stdout, re.M)  # the good one still ran

    r = cli("analyze", "--json", missing, "--config", empty_config)
    assert r.returncode == 1
    assert json.loads(r.stdout) == {"image": str(missing), "error": advice}


PEAK_RSS = """
import resource, subprocess, sys
r = subprocess.run(sys.argv[1:])
print(f"peak_rss_kb={resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}", file=sys.stderr)
sys.exit(r.returncode)
"""


def test_analyze_a_folder_of_photos_and_other_files(tmp_path, grace_path, empty_config):
    """What a technician points it at: a folder ('analyze photos/' said only 'Is a
    directory') holding a photo, a note, a recording and hidden files. A 2 GB video was
    read whole (its size in resident memory, a MemoryError on a Pi's 1 GB) just to be
    refused as too large; its size is now checked before it is read."""
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "a.jpg").write_bytes(grace_path.read_bytes())
    (photos / "notes.txt").write_text("desk 7\n")
    (photos / ".DS_Store").write_bytes(b"\0" * 10)
    (photos / "old").mkdir()
    with open(photos / "lesson.mp4", "wb") as f:
        f.truncate(2 << 30)  # sparse: no disk used
    empty = tmp_path / "empty"
    empty.mkdir()
    r = subprocess.run([sys.executable, "-c", PEAK_RSS, *COMMAND, "analyze", str(photos), str(empty), "--config",
                        str(empty_config)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    assert [line[:-1] for line in r.stdout.splitlines() if not line.startswith(" ")] == \
        [str(photos / "a.jpg"), str(photos / "lesson.mp4"), str(photos / "notes.txt"), str(empty)]
    assert re.search(r"^\s+1\s+\d+,\d+,\d+,\d+\s+[a-z]+\s+\d+%", r.stdout, re.M)  # the photo was analysed
    assert "error: the file is 2147.5 MB; the limit is 10 MB (web.max_upload_mb in the config)" in r.stdout
    assert "error: the file is not a JPEG, PNG or WebP image" in r.stdout
    assert "error: a folder without files in it" in r.stdout
    peak_mb = int(re.search(r"peak_rss_kb=(\d+)", r.stderr).group(1)) / 1024
    assert peak_mb < 1024, f"{peak_mb:.0f} MB resident: the video was read"


def test_bad_config_file_exits_2_naming_the_key(tmp_path, grace_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[web]\nport = 99999\n")
    for args in (("analyze", grace_path, "--config", bad), ("run", "--config", bad, "--data-dir", tmp_path / "d")):
        r = cli(*args)
        assert r.returncode == 2
        assert "web.port" in r.stderr and "99999" in r.stderr and "65535" in r.stderr
        assert "Traceback" not in r.stderr
    assert not (tmp_path / "d").exists()


def test_run_with_a_missing_video_fails_fast_and_clearly(tmp_path, empty_config):
    data = tmp_path / "data"
    started = time.monotonic()
    r = cli("run", "--config", empty_config, "--source", "/nonexistent.mp4", "--data-dir", data, "--port", 0,
            timeout=60)
    assert time.monotonic() - started < 30
    assert r.returncode == 3
    assert "camera" in r.stderr and "/nonexistent.mp4" in r.stderr and "does not exist" in r.stderr
    assert "Traceback" not in r.stderr
    # nothing was created: a first-start admin password that is never shown would be lost
    assert not (data / "engage.db").exists()


def test_run_without_its_camera_yet_serves_and_waits_for_it(tmp_path):
    """A camera not there at the start (unplugged, not ready at boot) exited 3; under systemd
    five such restarts left the unit failed for good, web page and LED too, even once the
    camera was back. It starts in the camera-fault state instead and tries again."""
    conf = tmp_path / "run.toml"
    conf.write_text('[indicators]\nbackend = "none"\n[camera]\nretry_max_s = 1.0\n')
    env = {**os.environ, "ENGAGE_ADMIN_PASSWORD": "Dove-Lantern-Quiet-8"}
    with service_process("run", "--config", conf, "--source", "/dev/video97", "--port", 0,
                         "--data-dir", tmp_path / "data", env=env) as proc:
        url = served_at(proc)

        def fault():
            body = requests.get(f"{url}/healthz", timeout=5).json()
            return any("/dev/video97" in r for r in body.get("reasons", [])) and body

        body = wait_for(fault, 30, what="the missing camera in /healthz")
        assert body["camera"] == "fault"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "Traceback" not in err, err
    assert "warning: camera: no camera at /dev/video97" in err and "Starting without it" in err


def test_run_on_every_interface_says_where_others_reach_it_and_warns_of_plain_http(tmp_path):
    """`run --host 0.0.0.0` printed "web UI at http://127.0.0.1:...", which every other
    computer reads as itself, and nothing said that passwords and students' photos then
    cross the LAN unencrypted (the classroom command said both)."""
    import socket

    conf = tmp_path / "run.toml"
    conf.write_text('[indicators]\nbackend = "none"\n')
    env = {**os.environ, "ENGAGE_ADMIN_PASSWORD": "Dove-Lantern-Quiet-8"}
    with service_process("run", "--config", conf, "--source", "demo", "--host", "0.0.0.0", "--port", 0,
                         "--data-dir", tmp_path / "data", env=env) as proc:
        assert proc.stdout is not None
        line = next(line for line in proc.stdout if "web UI at" in line)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert f"web UI at http://{socket.gethostname()}:" in line and "127.0.0.1" not in line, line
    assert "warning: the web UI is served over plain HTTP on 0.0.0.0" in err and "web.tls_cert" in err, err
    assert proc.returncode == 0 and "Traceback" not in err


def test_gpio_indicators_without_a_pin_driver_say_what_to_install_not_a_traceback(tmp_path):
    """gpiozero installed, no pin driver it can load (lgpio missing, not a Pi): the start
    ended in a traceback saying gpiozero was missing and to pip install it. Now exit 2
    with what to install or which backend to choose instead."""
    conf = tmp_path / "gpio.toml"
    conf.write_text('[indicators]\nbackend = "gpio"\n')
    # the driver named, and one that cannot load here or in CI (no lgpio module): not this machine's luck
    r = cli("run", "--config", conf, "--source", "demo", "--data-dir", tmp_path / "data", "--port", 0,
            env={"GPIOZERO_PIN_FACTORY": "lgpio", "ENGAGE_ADMIN_PASSWORD": "Dove-Lantern-Quiet-8"})
    assert r.returncode == 2, r.stderr
    assert "found no GPIO pin driver" in r.stderr and "python3-lgpio" in r.stderr and 'backend = "console"' in r.stderr
    assert "Traceback" not in r.stderr and "pip install" not in r.stderr


@pytest.mark.timeout(180)
def test_a_first_start_that_fails_after_making_the_admin_still_leaves_its_password_in_the_journal(tmp_path):
    """indicators.backend = "gpio" without a pin driver: the first start made the admin and
    its password file, then exited 2 saying nothing of it, and the start that then worked
    said nothing either: `journalctl -u engage-edge | grep 'first start'` found nothing."""
    env = {k: v for k, v in os.environ.items() if k not in ("ENGAGE_ADMIN_PASSWORD", "GPIOZERO_PIN_FACTORY")}
    conf = tmp_path / "gpio.toml"
    conf.write_text('[indicators]\nbackend = "gpio"\n')
    r = subprocess.run([*COMMAND, "run", "--config", str(conf), "--source", "demo", "--data-dir", str(tmp_path / "data"),
                        "--port", "0"], capture_output=True, text=True, timeout=60,
                       env={**env, "GPIOZERO_PIN_FACTORY": "lgpio"})
    assert r.returncode == 2 and "found no GPIO pin driver" in r.stderr, r.stderr
    m = re.search(r"first start: log in as 'admin' with password: (\S+)", r.stderr)
    assert m, r.stderr
    kept = tmp_path / "data" / "first-admin-password.txt"
    assert kept.read_text().splitlines()[0] == m.group(1) and str(kept) in r.stderr
    conf.write_text('[indicators]\nbackend = "none"\n')  # the technician's fix; the next start works
    env["PYTHONUNBUFFERED"] = "1"
    with service_process("run", "--config", conf, "--source", "demo", "--data-dir", tmp_path / "data",
                         "--port", "0", env=env) as proc:
        served_at(proc)
        line = next(line for line in proc.stdout if "first start" in line)
        stops_cleanly(proc, signal.SIGTERM, timeout=20)
    assert f"log in as 'admin' with password: {m.group(1)}" in line


def test_run_on_a_busy_port_says_so(tmp_path, empty_config):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = cli("run", "--config", empty_config, "--data-dir", tmp_path / "data", "--port", port,
                env={"ENGAGE_ADMIN_PASSWORD": "busy-port-pw-1"})
    assert r.returncode == 2
    assert f"127.0.0.1:{port}" in r.stderr and "--port" in r.stderr
    assert "Traceback" not in r.stderr


def _pair(folder: Path, name: str) -> tuple[Path, Path]:
    cert, key = folder / f"{name}.crt", folder / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


@pytest.mark.parametrize("command", ["run", "classroom"])
def test_a_start_whose_data_folder_is_in_memory_warns_that_a_reboot_empties_it(tmp_path, empty_config, command):
    """A data folder on a tmpfs (or under Pi OS's Overlay File System) served all day and
    each boot was a first start again, with no word at the start."""
    from conftest import mounted_tmpfs

    args = (["run", "--config", empty_config, "--source", "demo"] if command == "run"
            else ["classroom", "--mqtt-host", "127.0.0.1"])
    with mounted_tmpfs(tmp_path / "ram", "16m") as ram:
        with service_process(*args, "--data-dir", ram / "data", "--port", 0,
                             env={**os.environ, "ENGAGE_ADMIN_PASSWORD": "a-chosen-pw-77"}) as proc:
            served_at(proc)
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "Traceback" not in err, err
    who, setting = ("this device", "store.data_dir") if command == "run" else ("the classroom page", "--data-dir")
    assert (f"warning: nothing {who} records outlives a reboot: its data folder {ram / 'data'} is in memory "
            f"({ram} is a tmpfs, held in memory)") in err, err
    assert f"set {setting} to a folder on the SD card or a USB disk" in err, err


@pytest.mark.parametrize("mistake", ["another pair's key", "not PEM", "no key file"])
@pytest.mark.parametrize("command", ["run", "classroom"])
def test_an_unusable_https_certificate_is_named_not_the_port(tmp_path, empty_config, command, mistake):
    """The school's certificate with the wrong key, or a key the service's user may not
    read, said 'cannot serve on 0.0.0.0:8443: ... Choose another --port or stop the other
    program': nothing was wrong with the port. It names the file and what to do."""
    (cert, key), (_, other_key) = _pair(tmp_path, "a"), _pair(tmp_path, "b")
    notes = tmp_path / "notes.txt"
    notes.write_text("not a certificate\n")
    cert, key = {"another pair's key": (cert, other_key), "not PEM": (notes, notes),
                 "no key file": (cert, tmp_path / "missing.key")}[mistake]
    if command == "run":
        conf = tmp_path / "tls.toml"
        conf.write_text(f'[web]\ntls_cert = "{cert}"\ntls_key = "{key}"\n')
        args = ["run", "--config", conf, "--source", "demo"]
    else:
        args = ["classroom", "--mqtt-host", "127.0.0.1", "--https-cert", cert, "--https-key", key]
    r = cli(*args, "--data-dir", tmp_path / "data", "--port", 0, env={"ENGAGE_ADMIN_PASSWORD": "a-chosen-pw-77"})
    assert r.returncode == 2, r.stderr
    assert "--port" not in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert {"another pair's key": f"the HTTPS certificate {cert} and key {key} cannot be used: the key is not the "
                                  "certificate's own; give the certificate and the key it was made with",
            "not PEM": "they are not a PEM certificate and its unencrypted PEM key",
            "no key file": f"the HTTPS key {key} cannot be read (No such file or directory): check the path",
            }[mistake] in r.stderr, r.stderr


@pytest.mark.parametrize("command", ["run", "classroom"])
def test_a_weak_environment_admin_password_stops_the_first_start_with_a_clear_error(tmp_path, empty_config, command):
    """ENGAGE_ADMIN_PASSWORD that the password rules refuse ("password", 5 letters) ended
    the first start in a traceback with exit 1, naming neither the variable nor what to do."""
    args = (["run", "--config", empty_config, "--source", "demo"] if command == "run"
            else ["classroom", "--mqtt-host", "127.0.0.1"])
    for weak, why in (("password", "among the first ones an attacker tries"), ("short", "at least 8 characters")):
        r = cli(*args, "--data-dir", tmp_path / "data", "--port", 0, env={"ENGAGE_ADMIN_PASSWORD": weak})
        assert r.returncode == 2, r.stderr
        assert "Traceback" not in r.stderr, r.stderr
        assert "error: ENGAGE_ADMIN_PASSWORD" in r.stderr and why in r.stderr, r.stderr
        assert "or unset it" in r.stderr, r.stderr


def test_an_empty_environment_admin_password_generates_and_shows_one(tmp_path, monkeypatch):
    """`ENGAGE_ADMIN_PASSWORD=` (a unit file's or a script's empty line) created an admin
    with a random password that was neither printed nor kept: nobody could log in."""
    from edge_app.store.accounts import Accounts
    from edge_app.store.database import Store

    store = Store(tmp_path / "data")
    try:
        accounts = Accounts(store)
        monkeypatch.setenv("ENGAGE_ADMIN_PASSWORD", "")
        password = accounts.ensure_admin()
        assert password, "a generated password is shown"
        assert accounts.first_password_path.read_text().splitlines()[0] == password
        admin = accounts.authenticate("admin", password)
        assert admin and admin.must_change_password
    finally:
        store.close()


def test_busy_port_on_first_start_still_shows_the_new_admin_password(tmp_path, empty_config):
    """The admin account was created before the port turned out to be taken: its random
    password must be shown now, or nobody could ever log in."""
    from edge_app.store.accounts import Accounts
    from edge_app.store.database import Store

    env = {k: v for k, v in os.environ.items() if k != "ENGAGE_ADMIN_PASSWORD"}
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        r = subprocess.run([*COMMAND, "run", "--config", str(empty_config), "--data-dir", str(tmp_path / "data"),
                            "--port", str(busy.getsockname()[1])], capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 2
    m = re.search(r"log in as 'admin' with password: (\S+)", r.stderr)
    assert m, r.stderr
    kept = tmp_path / "data" / "first-admin-password.txt"
    assert str(kept) in r.stderr  # the output says where the password waits
    assert kept.stat().st_mode & 0o777 == 0o600  # root-only: a student's shell cannot read it
    assert kept.read_text().splitlines()[0] == m.group(1)
    store = Store(tmp_path / "data")
    try:
        assert Accounts(store).authenticate("admin", m.group(1))
    finally:
        store.close()


@pytest.mark.timeout(180)
def test_run_serves_the_demo_and_prints_the_admin_login(tmp_path, empty_config):
    """What `make run` does: the demo source, the web UI on a loopback port, and on a
    first start a random admin password printed once - which then logs in."""
    env = {k: v for k, v in os.environ.items() if k != "ENGAGE_ADMIN_PASSWORD"}
    env["PYTHONUNBUFFERED"] = "1"
    with service_process("run", "--config", empty_config, "--source", "demo", "--data-dir", tmp_path / "data",
                         "--port", "0", env=env) as proc:
        url = served_at(proc)
        assert url.startswith("http://127.0.0.1:")
        password = next(m.group(1) for line in proc.stdout
                        if (m := re.search(r"log in as 'admin' with password: (\S+)", line)))
        assert len(password) >= 12
        health = requests.get(f"{url}/healthz", timeout=10).json()
        assert health["version"] and "model" in health  # the build: to admins and the device itself (loopback)
        r = requests.post(f"{url}/api/login", json={"username": "admin", "password": password}, timeout=10)
        assert r.status_code == 200 and r.json()["role"] == "admin"
        r = requests.post(f"{url}/api/login", json={"username": "admin", "password": "admin"}, timeout=10)
        assert r.status_code == 401  # no default credentials
        stops_cleanly(proc, signal.SIGTERM, timeout=20)



@pytest.mark.timeout(180)
@pytest.mark.parametrize("command", ["run", "classroom"])
def test_ctrl_c_as_soon_as_it_says_where_it_serves_stops_it_cleanly(tmp_path, empty_config, command):
    """Ctrl-C right after the start-up line (a user who only wanted to see it start): it
    raised KeyboardInterrupt before the handler was installed, the web server's worker
    threads kept the process alive, and a second Ctrl-C left a traceback and no clean stop."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "ENGAGE_ADMIN_PASSWORD": "a-chosen-pw-77"}
    with socket.socket() as s:  # a port where no broker answers: the page starts all the same
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    args = (["run", "--config", str(empty_config), "--source", "demo"] if command == "run"
            else ["classroom", "--mqtt-host", "127.0.0.1", "--mqtt-port", str(closed)])
    with service_process(*args, "--data-dir", tmp_path / "data", "--port", "0", env=env) as proc:
        served_at(proc)
        stops_cleanly(proc, signal.SIGINT, timeout=30)


A_SIGNAL_ANOTHER_THREAD_RECEIVES = """
import signal, sys, threading
from edge_app.cli import StopRequest

stop = StopRequest()
main = threading.main_thread()

def blocked():  # the main thread is in wait() and asleep in the kernel
    with open(f"/proc/self/task/{main.native_id}/stat") as stat:
        state = stat.read().rsplit(")", 1)[1].split()[0]
    return sys._current_frames()[main.ident].f_code.co_name == "wait" and state == "S"

def the_kernel_picks_this_thread():
    polls = 0
    while polls < 2:  # twice, 10 ms apart: each pause lets the main thread take the GIL
        polls = polls + 1 if blocked() else 0
        threading.Event().wait(0.01)
    signal.pthread_kill(threading.get_ident(), signal.SIG)

threading.Thread(target=the_kernel_picks_this_thread, daemon=True).start()
stop.wait()
print("stopped", flush=True)
"""


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_a_stop_signal_that_another_thread_receives_still_ends_the_wait(sig):
    """The kernel gives a process's signal to any of its threads (the web server's, the
    camera's, LiteRT's), and Python runs the handler only on the main thread between
    bytecodes: a service waiting on a threading.Event never woke, and about 1 Ctrl-C in 75
    right after the start lines (seen in CI) left ``engage-edge run`` running."""
    r = subprocess.run([sys.executable, "-c", A_SIGNAL_ANOTHER_THREAD_RECEIVES.replace("signal.SIG)", f"signal.{sig})")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout == "stopped\n", r.stderr


NOBODY = 65534


def as_nobody(*args, timeout=60) -> subprocess.CompletedProcess:
    """The console script as another user (a technician's own account), as setpriv runs it."""
    return subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *COMMAND,
                           *map(str, args)], capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def device_dirs():
    """A data directory as on a device (0700, its owner's alone) and a folder the other user
    may enter, both outside pytest's root-only tmp_path."""
    import tempfile

    if os.geteuid() != 0:
        from conftest import skip_unless_ci

        skip_unless_ci("running the command as another user needs root (CI runs as root)")
    from edge_app.store.database import Store

    with tempfile.TemporaryDirectory(dir="/tmp") as top:
        os.chmod(top, 0o755)
        data = Path(top) / "data"
        Store(data).close()
        (data / "models").mkdir()
        conf = Path(top) / "device.toml"
        conf.write_text(f'[store]\ndata_dir = "{data}"\n')
        yield Path(top), data, conf


@pytest.mark.parametrize("command", [["model", "list"], ["backup", "/tmp"], ["export", "--since", "2026-01-01"],
                                     ["passwd", "admin"]])
def test_a_technician_command_run_as_the_wrong_user_says_whom_to_run_it_as(device_dirs, command):
    """Without `sudo -u engage` the device's data is out of reach: that was a PermissionError
    traceback; it is exit 2 naming the data's owner and the command to run instead."""
    _, data, conf = device_dirs
    r = as_nobody(*command, "--config", conf)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr and "'nobody' may not read" in r.stderr, r.stderr
    assert f"it belongs to 'root': run the command as that user: sudo -u root {SCRIPT} {command[0]}" in r.stderr


def test_backup_and_export_to_a_folder_the_user_cannot_write_say_where_to_write(device_dirs):
    top, data, conf = device_dirs
    for path in [data, *data.rglob("*")]:
        os.chown(path, NOBODY, NOBODY)  # the data is this user's, as for `sudo -u engage`
    home = top / "home"
    home.mkdir(mode=0o700)  # the technician's own home, root's here
    for command in (["backup", home / "b.db"], ["export", "--since", "2026-01-01", "--out", home / "log.csv"]):
        r = as_nobody(*command, "--config", conf)
        assert r.returncode == 2, (r.returncode, r.stderr)
        assert "Traceback" not in r.stderr and f"'nobody', who runs this command, may not write in {home}" in r.stderr
        assert "/tmp" in r.stderr, r.stderr
    r = as_nobody("backup", top / "no-such-folder" / "b.db", "--config", conf)
    assert r.returncode == 2 and "there is no folder" in r.stderr and "create it" in r.stderr, r.stderr
    r = as_nobody("backup", top, "--config", conf)
    assert r.returncode == 2 and f"may not write in {top}" in r.stderr, r.stderr
    os.chmod(top, 0o777)
    r = as_nobody("backup", top, "--config", conf)
    assert r.returncode == 0 and "integrity ok" in r.stdout, r.stderr


def test_a_https_key_the_service_user_may_not_read_says_to_let_it(device_dirs):
    """The school's key copied in as root's 0600 file (not 0640 root:engage as
    firmware/README.md says): 'Permission denied. Choose another --port' sent the
    technician to the port; it names the key and whom to let read it."""
    top, data, _ = device_dirs
    for path in [data, *data.rglob("*")]:
        os.chown(path, NOBODY, NOBODY)
    cert, key = _pair(top, "school")
    key.chmod(0o600)  # root's alone
    conf = top / "tls.toml"
    conf.write_text(f'[store]\ndata_dir = "{data}"\n[web]\ntls_cert = "{cert}"\ntls_key = "{key}"\nport = 0\n')
    r = as_nobody("run", "--config", conf, "--source", "demo")
    assert r.returncode == 2, r.stderr
    assert f"the HTTPS key {key} cannot be read (Permission denied): let 'nobody', who runs engage-edge, read it" \
        in r.stderr and "--port" not in r.stderr, r.stderr


def test_a_file_error_at_the_start_names_the_file_not_the_port():
    """Every OSError of the start was said as the port's: "cannot serve on 127.0.0.1:0:
    Permission denied. Choose another --port" for a file the service may not open. A socket's
    error names no file; a file's is said with its name (what the start's own checks do not
    already say in their words)."""
    from edge_app.cli import cannot_serve

    taken = OSError(98, "Address already in use")
    assert cannot_serve("127.0.0.1", 8080, taken) == ("error: cannot serve on 127.0.0.1:8080: Address already in use. "
                                                     "Choose another --port or stop the other program.")
    said = cannot_serve("127.0.0.1", 0, PermissionError(13, "Permission denied", "/var/lib/engage-edge/images"))
    assert said.startswith("error: /var/lib/engage-edge/images: Permission denied") and "--port" not in said, said


DEVICE_CONFIG_AT = """
import sys
from pathlib import Path
import edge_app.config as config_mod
config_mod.DEVICE_CONFIG = Path(sys.argv[1])  # the device's /etc/engage-edge/config.toml, placed in a test folder
from edge_app.cli import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.parametrize("command", [["analyze", "photo.jpg"], ["run", "--source", "demo", "--port", "0"],
                                     ["export", "--since", "2026-01-01"]])
def test_a_device_config_hidden_from_the_user_says_whom_to_run_as(device_dirs, grace_path, command):
    """On a device /etc/engage-edge is root:engage 0750: from a technician's own account its
    config.toml cannot even be looked at, and 'analyze' or 'run' ended in a PermissionError
    traceback ('export' said to run as root). It is exit 2 naming the file and the service's
    user (here daemon, a user with a group of its own name, as engage)."""
    top, _, _ = device_dirs
    etc = top / "etc" / "engage-edge"
    etc.mkdir(parents=True)
    (etc / "config.toml").write_text("# defaults\n")
    for path, mode in ((etc, 0o750), (etc / "config.toml", 0o640)):
        os.chown(path, 0, 1)  # root:daemon
        path.chmod(mode)
    (top / "photo.jpg").write_bytes(grace_path.read_bytes())
    r = subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", sys.executable, "-c",
                        DEVICE_CONFIG_AT, str(etc / "config.toml"), *command], capture_output=True, text=True,
                       timeout=60, cwd=top)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    assert f"error: configuration: config file {etc / 'config.toml'} cannot be read by 'nobody' (Permission denied): " \
           "run the command as a user who may read it, as the service does (sudo -u daemon engage-edge ...)" in r.stderr


def test_a_device_config_its_own_group_may_not_read_says_how_to_restore_its_mode(device_dirs):
    """config.toml at 0600 read as the service's user: "run the command as a user who may
    read it, as the service does (sudo -u engage ...)" - it was that user. It now says to
    give the group back its read, as install.sh sets it (root:engage 0640)."""
    top, _, _ = device_dirs
    etc = top / "etc" / "engage-edge"
    etc.mkdir(parents=True)
    conf = etc / "config.toml"
    conf.write_text("# defaults\n")
    for path, mode in ((etc, 0o750), (conf, 0o600)):  # the mode an editor's save left
        os.chown(path, 0, 1)  # root:daemon, as root:engage
        path.chmod(mode)
    r = subprocess.run(["setpriv", "--reuid=1", "--regid=1", "--clear-groups", sys.executable, "-c", DEVICE_CONFIG_AT,
                        str(conf), "export", "--since", "2026-01-01"], capture_output=True, text=True, timeout=60, cwd=top)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert f"sudo chown root:daemon {conf} && sudo chmod 0640 {conf}" in r.stderr, r.stderr
    assert "run the command as a user who may read it" not in r.stderr
    conf.chmod(0o640)
    etc.chmod(0o700)  # the folder, then
    r = subprocess.run(["setpriv", "--reuid=1", "--regid=1", "--clear-groups", sys.executable, "-c", DEVICE_CONFIG_AT,
                        str(conf), "export", "--since", "2026-01-01"], capture_output=True, text=True, timeout=60, cwd=top)
    assert r.returncode == 2 and f"sudo chmod 0750 {etc}" in r.stderr, r.stderr


def test_analyze_of_a_file_it_may_not_read_names_it_and_says_what_to_do(tmp_path):
    """'Permission denied' named neither the file nor the way out (a photo copied in by root,
    analysed as the service user). Root reads every file, so the error is built here as
    open() raises it for another user."""
    from edge_app.cli import _unreadable
    from edge_app.vision.stills import ACCEPTED_TEXT

    photo = tmp_path / "root-only.jpg"
    said = _unreadable(photo, PermissionError(13, "Permission denied", str(photo)), ACCEPTED_TEXT)
    assert str(photo) in said and "may not read" in said and "chmod" in said


def test_the_fault_light_of_a_refused_config_blinks_on_the_led_its_indicators_name(tmp_path):
    """A wired desk whose config the service refused for a typo elsewhere (web.port): the fault
    light fell back to the defaults' console indicator and the LED stayed dark. Its pins here
    are gpiozero's mock PWM pins, chosen through gpiozero's own environment variables."""
    conf = tmp_path / "config.toml"
    conf.write_text('[indicators]\nbackend = "gpio"\n[web]\nport = "eighty"\n')
    env = {**os.environ, "GPIOZERO_PIN_FACTORY": "mock", "GPIOZERO_MOCK_PIN_CLASS": "mockpwmpin"}
    proc = subprocess.Popen([*ENGAGE_EDGE, "fault-light", "--config", str(conf)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("the LED blinks the fault until engage-edge starts again")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
        assert proc.returncode == 0 and "web.port" in err and "on the gpio indicator" in err, err
        assert "[indicator]" not in out  # not the console's printed LED
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


@pytest.mark.parametrize(("model", "backend"), [(b"Raspberry Pi 5 Model B Rev 1.0\0", "gpio"),
                                                (b"NVIDIA Jetson Orin Nano Developer Kit\0", "jetson"), (None, "console")])
def test_a_config_file_that_is_not_toml_leaves_the_fault_on_the_boards_led(tmp_path, monkeypatch, model, backend):
    from edge_app import config as config_mod

    tree = tmp_path / "model"
    if model is not None:
        tree.write_bytes(model)
    monkeypatch.setattr(config_mod, "DEVICE_TREE_MODEL", tree)
    broken = tmp_path / "config.toml"
    broken.write_text("[indicators\nbackend = gpio\n")
    assert config_mod.indicators_of(broken).indicators.backend == backend
    fine = tmp_path / "fine.toml"
    fine.write_text('[indicators]\nbackend = "none"\nbuzzer_pin = 99999\n[camera]\nsource = 5\n')
    assert config_mod.indicators_of(fine).indicators.backend == "none"  # the file's word, its bad pin left out
    clash = tmp_path / "clash.toml"  # each pin allowed alone, two on one GPIO: refused together
    clash.write_text('[indicators]\nbackend = "none"\npause_button_pin = 17\n')
    assert config_mod.indicators_of(clash).indicators.backend == backend


@pytest.mark.parametrize("config", ['[indicators]\nbackend = "console"\n', '[indicators]\nbackend = "consol"\n'])
def test_the_fault_light_blinks_until_stopped_even_with_a_config_the_service_refused(tmp_path, config):
    """systemd's engage-edge-fault.service runs it once the service has stopped for good (the
    LED went dark: a desk that read as switched off); a config the service could not read is
    no reason to stay dark (the defaults' indicator, the console here, shows the fault)."""
    conf = tmp_path / "config.toml"
    conf.write_text(config)
    proc = subprocess.Popen([*ENGAGE_EDGE, "fault-light", "--config", str(conf)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        shown = proc.stdout.readline()
        assert "LED fast red blink: fault: the engage-edge service has stopped" in shown, shown
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
        assert proc.returncode == 0 and "Traceback" not in err, err
        assert ("consol" in err) == ("consol\"" in config)  # the refused config is named, not passed over
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
