"""firmware/: install.sh is shellcheck-clean and its --dry-run previews every step without
changing anything; the config template, boot fragment, udev rules and README agree with
the defaults (pins) and the config schema."""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from edge_app import config as config_mod

ROOT = Path(__file__).resolve().parent.parent
FIRMWARE = ROOT / "firmware"
INSTALL = FIRMWARE / "install.sh"
DEVICE_PATHS = [Path("/opt/engage-edge"), Path("/etc/engage-edge"), Path("/var/lib/engage-edge"),
                Path("/etc/systemd/system/engage-edge.service"), Path("/etc/udev/rules.d/99-engage-edge.rules"),
                Path("/usr/local/bin/engage-edge")]


VERSION = re.search(r'version="([^"]+)"', (ROOT / "setup.py").read_text()).group(1)
WHEEL = f"/opt/engage-edge/wheels/engage_edge-{VERSION}-py3-none-any.whl"


def dry_run(*args: str, systemd: bool = True, path: str | None = None) -> subprocess.CompletedProcess:
    """install.sh --dry-run on a machine whose systemd runs (or, ``systemd`` False, a chroot's):
    /run is a private tmpfs with or without /run/systemd/system, as systemd tells it is running.
    ``path``: a folder put first on PATH (a system's own python3 or dpkg)."""
    script = f"mount -t tmpfs tmpfs /run && {'mkdir -p /run/systemd/system && ' if systemd else ''}exec bash \"$@\""
    env = {**os.environ, "PATH": f"{path}:{os.environ['PATH']}"} if path else None
    return subprocess.run(["unshare", "--mount", "sh", "-c", script, "sh", str(INSTALL), "--dry-run", *args],
                          capture_output=True, text=True, timeout=60, env=env)


@pytest.mark.parametrize("script", [INSTALL, *sorted((ROOT / "tools").glob("*.sh"))], ids=lambda p: p.name)
def test_shell_scripts_are_shellcheck_clean(script):
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is missing: `make deps-test` (or apt-get install shellcheck)"
    result = subprocess.run([shellcheck, "--severity=style", str(script)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout


def test_no_apt_lists_missing_packages_instead_of_installing_them():
    """The arm64 proof's chroot has no Raspberry Pi archive: --no-apt must name what it skips."""
    out = dry_run("--platform", "pi", "--no-apt").stdout
    assert "apt-get" not in out
    assert "--no-apt: not installing" in out and "python3-picamera2" in out or "all present" in out


@pytest.mark.parametrize("platform, extra, backend", [("pi", "pi", "gpio"), ("jetson", "jetson", "jetson")])
def test_dry_run_previews_every_step_and_changes_nothing(platform, extra, backend):
    before = {p: p.exists() for p in DEVICE_PATHS}
    result = dry_run("--platform", platform)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "DRY RUN" in out
    assert [int(n) for n in re.findall(r"==> (\d)/9", out)] == list(range(1, 10))
    for expected in ["useradd --system", "usermod -a -G video,gpio engage",
                     "python3 -m venv --system-site-packages /opt/engage-edge/venv",
                     "pip wheel --quiet --no-deps --wheel-dir /opt/engage-edge/wheels /opt/engage-edge/build",
                     f"pip install --quiet --upgrade {WHEEL}\\[{extra}\\]",
                     f"pip install --quiet --force-reinstall --no-deps {WHEEL}",
                     # the messages' `sudo -u engage engage-edge ...` must be found on sudo's secure_path
                     "ln -sfn /opt/engage-edge/venv/bin/engage-edge /usr/local/bin/engage-edge",
                     "write /etc/engage-edge/config.toml", f'backend = "{backend}"',
                     'data_dir = "/var/lib/engage-edge"', 'host = "0.0.0.0"', "tls_cert =",
                     "openssl req -x509", "/etc/systemd/system/engage-edge.service",
                     "/etc/systemd/system/engage-edge-fault.service",  # the LED's fault once the service gave up
                     "systemctl enable engage-edge.service",
                     # a desk that gave up (the fault light) refuses a start for 10 minutes unless its count is cleared
                     "systemctl reset-failed engage-edge.service\n[dry-run] systemctl restart engage-edge.service",
                     "/etc/udev/rules.d/99-engage-edge.rules"]:
        assert expected in out, f"{expected!r} missing from the dry run:\n{out}"
    assert "systemctl enable engage-edge-fault" not in out  # started by the service's failure only
    assert " -e " not in out and "/opt/engage-edge/src" not in out, \
        "the device gets the wheel, not an editable checkout"
    actions = [l for l in out.splitlines() if l.startswith(("    + ", "    wrote "))]
    assert not actions, f"the dry run executed something: {actions}"
    assert {p: p.exists() for p in DEVICE_PATHS} == before
    if platform == "pi":
        assert "python3-picamera2" in out or "all present" in out
        assert "boot-config.txt" in out or "already has the engage-edge block" in out
    else:
        assert "10-jetson.conf" in out and "PrivateTmp=no" in out and "nvarguscamerasrc" in out
        assert "/etc/systemd/system/engage-edge-fault.service.d/10-jetson.conf" in out


def test_in_a_chroot_the_service_is_enabled_but_not_started():
    """An image builder's chroot has no running systemd: a restart there failed the whole run."""
    result = dry_run("--platform", "pi", systemd=False)
    assert result.returncode == 0, result.stderr
    assert "[dry-run] systemctl enable engage-edge.service" in result.stdout
    assert "[dry-run] systemctl restart" not in result.stdout and "the service starts at the device's boot" in result.stdout


@pytest.mark.parametrize(("arch", "python", "said"), [
    ("armhf", "3.11", "32-bit system (armhf)"), ("arm64", "3.13", "python3 is 3.13 (Raspberry Pi OS trixie?)"),
    ("arm64", "3.10", "python3 is 3.10: engage-edge needs Python 3.11 to 3.13"), ("arm64", "3.11", None)])
def test_a_system_the_wheels_do_not_exist_for_is_named_before_anything_changes(tmp_path, arch, python, said):
    """A 32-bit Pi OS, trixie's Python 3.13 (numpy 1.x has no wheel for it) or JetPack's 3.10
    failed in step 5's pip after the user, groups and udev rules were made; a real run stops
    before step 1 (a dry run says it would). The system's dpkg and python3 are stand-ins here."""
    for name, says in (("dpkg", arch), ("python3", python)):
        (tmp_path / name).write_text(f"#!/bin/sh\necho {says}\n")
        (tmp_path / name).chmod(0o755)
    result = dry_run("--platform", "pi", "--no-apt", path=str(tmp_path))
    assert result.returncode == 0, result.stderr
    stop = [line for line in result.stdout.splitlines() if line.startswith("note: a real run would stop here")]
    if said is None:
        assert not stop, stop
    else:
        assert len(stop) == 1 and said in stop[0], result.stdout
        assert result.stdout.index(stop[0]) < result.stdout.index("==> 1/9"), "said before anything is changed"


def test_a_given_wheel_is_installed_instead_of_building_one(tmp_path):
    wheel = tmp_path / "engage_edge-9.9-py3-none-any.whl"
    wheel.write_bytes(b"PK")  # the dry run only copies it
    out = dry_run("--platform", "pi", "--wheel", str(wheel))
    assert out.returncode == 0, out.stderr
    assert f"install -m 0644 {wheel} /opt/engage-edge/wheels/{wheel.name}" in out.stdout
    assert f"pip install --quiet --upgrade /opt/engage-edge/wheels/{wheel.name}\\[pi\\]" in out.stdout
    assert "pip wheel" not in out.stdout
    for bad, reason in ((tmp_path / "missing.whl", "does not exist"), (ROOT / "setup.py", "is not a wheel")):
        result = dry_run("--platform", "pi", "--wheel", str(bad))
        assert result.returncode == 2 and reason in result.stderr and "pip wheel" in result.stderr


def test_unknown_platform_and_bad_options_are_refused():
    result = dry_run("--platform", "toaster")  # it said "this is neither a Raspberry Pi nor a Jetson", as if detected
    assert result.returncode == 2 and "--platform toaster is not a platform" in result.stderr, result.stderr
    assert "--platform pi" in result.stderr and "--platform jetson" in result.stderr and "neither" not in result.stderr
    result = dry_run("--frobnicate")
    assert result.returncode == 2 and "unknown option" in result.stderr


@pytest.mark.parametrize("args, wants", [(["--platform"], "pi or jetson"), (["--wheel"], ".whl"),
                                         (["--platform", "pi", "--wheel"], ".whl"), (["--wheel", ""], ".whl")])
def test_an_option_without_its_value_is_refused_with_a_message(args, wants):
    """A value left off the end used to end the script with status 1 and no word (set -e and a failing shift)."""
    result = dry_run(*args)
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert f"{args[-1] or '--wheel'} needs a value" in result.stderr and wants in result.stderr



@pytest.mark.parametrize("uid", ["0", "1000"], ids=["root", "a-user"])
def test_make_installs_python3_venv_when_ensurepip_is_missing(tmp_path, uid):
    """Debian's python3 without python3-venv has venv (in its stdlib) but no ensurepip: the
    Makefile probed ``-m venv --help``, which passed, so apt-get never ran and making .venv
    failed with "ensurepip is not available". A python3 here hides its ensurepip; ``id``,
    ``apt-get`` and the venv step itself are stand-ins that record what ran."""
    log, fake = tmp_path / "ran.log", tmp_path / "bin"
    (tmp_path / "hidden").mkdir()
    (tmp_path / "hidden" / "ensurepip.py").write_text("raise ImportError('no ensurepip: python3-venv is missing')\n")
    fake.mkdir()
    scripts = {"id": f'echo {uid}\n',
               "apt-get": f'echo "apt-get $*" >> {log}\n',
               "python3": f'if [ "$1 $2" = "-m venv" ] && [ "$3" != --help ]; then echo "venv $3" >> {log}; exit 0; fi\n'
                          f'PYTHONPATH={tmp_path / "hidden"} exec {sys.executable} "$@"\n'}
    for name, body in scripts.items():
        (fake / name).write_text("#!/bin/sh\n" + body)
        (fake / name).chmod(0o755)
    venv = tmp_path / "venv"
    venv.mkdir()
    result = subprocess.run(["make", "-s", f"PYTHON={fake / 'python3'}", f"VENV={venv}", "PIP=true", f"{venv}/.venv-created"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PATH": f"{fake}:{os.environ['PATH']}"})
    ran = log.read_text().splitlines() if log.exists() else []
    if uid == "0":
        assert result.returncode == 0, result.stdout + result.stderr
        assert ran == ["apt-get update -qq", "apt-get install -y -qq python3-venv", f"venv {venv}"]
    else:  # no apt-get without root: what to install, before a venv half made
        assert result.returncode != 0 and ran == [], (ran, result.stdout, result.stderr)
        assert "has no ensurepip" in result.stdout and "sudo apt-get install python3-venv" in result.stdout


def test_real_run_needs_root():
    cmd = ["bash", str(INSTALL), "--platform", "pi"]
    if os.geteuid() == 0:  # as root (CI), try it as nobody
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "sudo" in result.stderr


@pytest.mark.parametrize("backend", ["gpio", "jetson"])
def test_config_template_is_a_valid_config(tmp_path, backend):
    text = (FIRMWARE / "config.toml.template").read_text().replace("@BACKEND@", backend)
    path = tmp_path / "config.toml"
    path.write_text(text)
    cfg = config_mod.load(path)
    assert cfg.indicators.backend == backend
    assert cfg.store.data_dir == "/var/lib/engage-edge"
    assert cfg.web.host == "0.0.0.0"
    assert cfg.web.tls_cert == "/etc/engage-edge/tls/cert.pem" and cfg.web.tls_key.endswith("key.pem")


def test_boot_fragment_enables_the_camera_without_inline_comments():
    lines = [l for l in (FIRMWARE / "boot-config.txt").read_text().splitlines() if l and not l.startswith("#")]
    assert "camera_auto_detect=1" in lines
    assert lines[0] == "[all]"
    assert all("#" not in l for l in lines), "config.txt does not allow comments after a value"


def test_udev_rules_give_the_groups_camera_and_gpio():
    rules = [l for l in (FIRMWARE / "99-engage-edge.rules").read_text().splitlines() if l and not l.startswith("#")]
    assert any('KERNEL=="gpiochip*"' in l and 'GROUP="gpio"' in l for l in rules)
    assert any('SUBSYSTEM=="video4linux"' in l and 'GROUP="video"' in l for l in rules)
    assert all("==" in l for l in rules)


def test_readme_wiring_matches_the_default_pins():
    readme = (FIRMWARE / "README.md").read_text()
    i = config_mod.defaults().indicators
    for key, header_pin in (("led_red_pin", 11), ("led_green_pin", 13), ("led_blue_pin", 15), ("buzzer_pin", 16)):
        row = next(l for l in readme.splitlines() if l.startswith("|") and f"`{key} = {getattr(i, key)}`" in l)
        assert f"GPIO{getattr(i, key)}" in row and f"| {header_pin} |" in row and "Ω" in row
    assert "Active vs passive buzzer" in readme and "Jetson" in readme
    assert "Your own TLS certificate" in readme


def test_prove_arm64_refuses_bad_usage_before_touching_anything(tmp_path):
    """tools/prove-arm64.sh (run by hand, not here) stops on bad options and never roots in a system folder,
    however it is spelt: `/usr/` and `/opt/engage-edge/..` once passed the guard, and build_root deleted them."""
    script = ["bash", str(ROOT / "tools" / "prove-arm64.sh")]
    result = subprocess.run([*script, "--frobnicate"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "unknown option" in result.stderr
    if os.geteuid() == 0:
        (tmp_path / "link").symlink_to("/usr")
        for root in ("/usr", "/usr/", "/opt/engage-edge/..", "/bin", "/var/tmp/", str(tmp_path / "link")):
            result = subprocess.run([*script, "--root", root], capture_output=True, text=True, timeout=60)
            assert result.returncode == 2 and "system directory" in result.stderr, (root, result.stderr)
            assert f"--root {os.path.realpath(root)} " in result.stderr, (root, result.stderr)
        result = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *script],
                                capture_output=True, text=True, timeout=60)
    else:
        result = subprocess.run(script, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "sudo" in result.stderr


def test_no_start_says_how_to_run_the_new_package_after_an_upgrade_too():
    """`--no-start` on an upgrade said "start it with: sudo systemctl start": a service that
    runs already ignores that, and kept running the old package until the next reboot."""
    result = dry_run("--platform", "pi", "--no-start")
    assert result.returncode == 0, result.stderr
    assert "[dry-run] systemctl restart" not in result.stdout and "[dry-run] systemctl start" not in result.stdout
    note = next(l for l in result.stdout.splitlines() if "--no-start" in l)
    assert "sudo systemctl restart engage-edge.service" in note, note


@pytest.mark.skipif(os.geteuid() != 0, reason="a real run needs root (CI runs as root); its folders are overlaid here")
def test_a_real_run_stopped_by_a_failed_command_says_which_step_and_that_it_may_run_again(tmp_path):
    """A school proxy apt cannot pass ended the run with apt's words only. Here apt-get (a
    stand-in on PATH, as dpkg-query saying nothing is installed) fails in step 1, before
    anything is changed; /etc, /opt and /var/lib are overlaid in a private mount namespace all the same."""
    fake = tmp_path / "bin"
    fake.mkdir()
    for name, body in (("dpkg", "echo arm64"), ("python3", "echo 3.11"), ("dpkg-query", "exit 1"),
                       ("apt-get", "echo 'E: Could not connect to deb.debian.org' >&2; exit 100")):
        (fake / name).write_text(f"#!/bin/sh\n{body}\n")
        (fake / name).chmod(0o755)
    mounts = []
    for i, folder in enumerate(("/etc", "/opt", "/var/lib")):
        upper, work = tmp_path / f"upper{i}", tmp_path / f"work{i}"
        upper.mkdir(), work.mkdir()
        mounts.append(f"mount -t overlay overlay -o lowerdir={folder},upperdir={upper},workdir={work} {folder}")
    script = f"{' && '.join(mounts)} && exec bash {INSTALL} --platform pi"
    result = subprocess.run(["unshare", "--mount", "sh", "-c", script], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PATH": f"{fake}:{os.environ['PATH']}"})
    assert result.returncode == 100, result.stderr
    said = result.stderr.strip().splitlines()[-1]
    assert said.startswith('install.sh stopped in step 1/9 Debian packages: "apt-get update" failed'), said
    assert "run install.sh again (safe to repeat)" in said and "==> 2/9" not in result.stdout
    assert not [p for i in range(3) for p in (tmp_path / f"upper{i}").iterdir()]  # nothing was changed


def _dry_run_on_a_device(tmp_path: Path, setup: str, host: str = "", args: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """A dry run on a machine already provisioned as ``setup`` (shell commands) makes it: /etc,
    /opt and /var/lib are overlaid in a private mount namespace (the host's are never
    touched) and, with ``host``, the host name is set in a private UTS namespace."""
    mounts = []
    for i, folder in enumerate(("/etc", "/opt", "/var/lib")):
        upper, work = tmp_path / f"upper{i}", tmp_path / f"work{i}"
        upper.mkdir(), work.mkdir()
        mounts.append(f"mount -t overlay overlay -o lowerdir={folder},upperdir={upper},workdir={work} {folder}")
    named = f"hostname {host} && " if host else ""
    script = f"{' && '.join(mounts)} && {named}{setup or 'true'} && exec bash {INSTALL} --dry-run --platform pi {' '.join(args)}"
    return subprocess.run(["unshare", "--mount", *(["--uts"] if host else []), "sh", "-c", script],
                          capture_output=True, text=True, timeout=60)


def _dry_run_with_tls_files(tmp_path: Path, names: list[str]) -> subprocess.CompletedProcess:
    """A dry run on a machine whose /etc/engage-edge/tls holds ``names``."""
    made = " && ".join(f"echo pem > /etc/engage-edge/tls/{n}" for n in names)
    return _dry_run_on_a_device(tmp_path, f"mkdir -p /etc/engage-edge/tls && {made or 'true'}")


@pytest.mark.parametrize("present, missing", [("cert.pem", "key.pem"), ("key.pem", "cert.pem")])
def test_half_a_certificate_is_refused_before_anything_changes(tmp_path, present, missing):
    """A technician copying the school's certificate in (firmware/README.md) who ran install.sh
    between the two files had both replaced by a self-signed pair, though the README says the
    installer never replaces an existing certificate. Half a pair now stops it, before step 1."""
    result = _dry_run_with_tls_files(tmp_path, [present])
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"/etc/engage-edge/tls/{present}" in result.stderr and missing in result.stderr
    assert "nothing was changed" in result.stderr
    assert "==> 1/9" not in result.stdout and "openssl req" not in result.stdout


def test_a_whole_certificate_is_kept(tmp_path):
    result = _dry_run_with_tls_files(tmp_path, ["cert.pem", "key.pem"])
    assert result.returncode == 0, result.stderr
    assert "kept: /etc/engage-edge/tls/cert.pem exists" in result.stdout and "openssl req" not in result.stdout


def test_an_upgrade_backs_the_database_up_first_named_with_the_old_version(tmp_path):
    """install.sh restarted the service, whose first start migrates the database one way,
    and kept no copy: going back to the old release lost everything. It now has the release
    installed backs the database up, as the service's user, before the package changes."""
    old_release = Path(sys.executable).parent / "engage-edge"  # the release installed: this checkout's
    old_version = subprocess.run([str(old_release), "--version"], capture_output=True, text=True,
                                 timeout=60).stdout.split()[1]
    result = _dry_run_on_a_device(tmp_path, " && ".join([
        "mkdir -p /opt/engage-edge/venv/bin /var/lib/engage-edge",
        f"ln -s {sys.executable} /opt/engage-edge/venv/bin/python",
        f"ln -s {old_release} /opt/engage-edge/venv/bin/engage-edge",
        "echo db > /var/lib/engage-edge/engage.db",
        *(f"echo old > /var/lib/engage-edge/engage-before-upgrade-20260{month}01-080000-0.1.0.db" for month in "789")]))
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    backup = re.search(r"\[dry-run\] runuser -u engage -- /opt/engage-edge/venv/bin/engage-edge backup --data-dir "
                       r"/var/lib/engage-edge (/var/lib/engage-edge/engage-before-upgrade-\d{8}-\d{6}-(\S+)\.db)\n", out)
    assert backup and backup.group(2) == old_version, out
    assert out.index(backup.group(0)) < out.index("pip install --quiet --upgrade pip") < out.index("pip wheel")
    assert f"to go back to {old_version}: restore {backup.group(1)}" in out
    # an upgrade keeps its admin: no first-start password to look for in the journal
    assert "grep 'first start'" not in out and "accounts kept: log in as before" in out
    # this copy and the one before it stay; older ones went (each a whole database that retention never reaches)
    removed = re.findall(r"\[dry-run\] rm -f -- /var/lib/engage-edge/(engage-before-upgrade-\S+)\n", out)
    assert removed == ["engage-before-upgrade-20260701-080000-0.1.0.db", "engage-before-upgrade-20260801-080000-0.1.0.db"]


# A venv whose Python apt replaced: its python is the system's, which has no edge_app (no site-packages of its own)
BROKEN_VENV = " && ".join([
    "mkdir -p /opt/engage-edge/venv/bin /var/lib/engage-edge",
    "ln -s /usr/bin/python3 /opt/engage-edge/venv/bin/python",
    "printf '#!/opt/engage-edge/venv/bin/python\\nfrom edge_app.cli import main\\nmain()\\n' > /opt/engage-edge/venv/bin/engage-edge",
    "chmod 755 /opt/engage-edge/venv/bin/engage-edge",
    "echo db > /var/lib/engage-edge/engage.db"])


@pytest.mark.parametrize("metadata", [True, False], ids=["metadata", "no-metadata"])
def test_an_upgrade_over_a_venv_that_no_longer_starts_backs_up_with_the_system_python(tmp_path, metadata):
    """apt replaced the Python the venv was built on: the old release could not start to make
    the backup, and install.sh stopped the upgrade that would repair it, blaming disk space.
    The system's python3 makes the copy instead, the venv is made again, and both say why.
    The copy is named by the old release's version, read from its installed metadata without
    running it (it was -unknown), and -unknown only when the venv cannot say."""
    from edge_app import build_version

    setup, named = BROKEN_VENV, "unknown"
    if metadata:  # this release's own metadata stands in for the old one's, with a build as install.sh records it
        dist = next(Path(sys.prefix).glob("lib/python3*/site-packages/engage_edge-*.dist-info"))
        installed = tmp_path / "site-packages"
        shutil.copytree(dist, installed / dist.name)
        (installed / "edge_app").mkdir()
        (installed / "edge_app" / "BUILD").write_text(" v0.1.0-12-g1a2b3c4-dirty (x)\n")
        named = build_version(installed / "edge_app")
        assert named.startswith(f"{VERSION}+v0.1.0-12-g1a2b3c4-dirty"), named
        setup += (" && mkdir -p /opt/engage-edge/venv/lib/python3.11 && "
                  f"cp -r {installed} /opt/engage-edge/venv/lib/python3.11/site-packages")
    result = _dry_run_on_a_device(tmp_path, setup)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "engage-edge backup" not in out, out
    copy = re.search(r"\[dry-run\] runuser -u engage -- /usr/bin/python3 - /var/lib/engage-edge/engage.db "
                     r"(/var/lib/engage-edge/engage-before-upgrade-\d{8}-\d{6}-(\S+)\.db)\n", out)
    assert copy and copy.group(2) == named, out
    assert f"to go back to {named if metadata else 'the previous release'}: restore {copy.group(1)}" in out
    why = next(line for line in out.splitlines() if "backing up with the system's python3" in line)
    assert "the release installed does not start" in why and "No module named 'edge_app'" in why, why
    assert "backup made by the system's python3 (SQLite's backup API): /var/lib/engage-edge/engage-before-upgrade-" in out
    assert out.index(copy.group(0)) < out.index("[dry-run] python3 -m venv --clear --system-site-packages "
                                                "/opt/engage-edge/venv") < out.index("pip install --quiet --upgrade pip")
    assert "upgrading the package in place" not in out and "disk" not in result.stderr


def test_no_backup_skips_the_copy_and_says_what_that_means(tmp_path):
    result = _dry_run_on_a_device(tmp_path, BROKEN_VENV, args=("--no-backup",))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "runuser" not in result.stdout and "engage-before-upgrade" not in result.stdout
    assert "--no-backup: /var/lib/engage-edge/engage.db is not backed up" in result.stdout
    assert "--no-backup" in dry_run("--help").stdout


def _install_sh_copy_script() -> str:
    """The Python install.sh hands the system's python3 when the old release cannot back up."""
    text = INSTALL.read_text()
    return text.split("<<'PY'; then\n", 1)[1].split("\nPY\n", 1)[0]


def test_install_sh_s_own_copy_is_consistent_private_and_never_half_written(tmp_path):
    """The fallback copy, run for real by the system's python3 while a writer keeps writing:
    one whole, checked database, the user's own (0600); an existing file is not replaced,
    and a full disk leaves nothing behind (a half copy must never look like a backup)."""
    import threading

    from conftest import mounted_tmpfs, wait_for

    from edge_app.store.database import Store

    python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
    store = Store(tmp_path / "data")
    for i in range(2000):  # pages enough that the copy takes several steps
        store.log_state_change(1000.0 + i, "Engaged - paying attention", "Engaged", "neutral", 0.9)
    stop, written = threading.Event(), [0]

    def write():
        t = 10_000.0
        while not stop.is_set():
            with store.transaction() as conn:
                t += 1
                conn.execute("INSERT INTO state_changes(t, level, grp) VALUES (?, 'Not engaged', 'Not engaged')", (t,))
            written[0] += 1

    def run(to: Path) -> subprocess.CompletedProcess:
        return subprocess.run([python, "-", str(store.path), str(to)], input=_install_sh_copy_script(),
                              capture_output=True, text=True, timeout=60)

    writer = threading.Thread(target=write)
    writer.start()
    dest = tmp_path / "engage-before-upgrade.db"
    try:
        wait_for(lambda: written[0] >= 50, what="the writer under way")
        first = run(dest)
        assert first.returncode == 0 and "integrity ok" in first.stdout, first.stderr
        again = run(dest)
        assert again.returncode != 0 and "exists already" in again.stderr
    finally:
        stop.set()
        writer.join(10)
        store.close()
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600
    import sqlite3

    with contextlib.closing(sqlite3.connect(dest)) as copy:
        assert copy.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert copy.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        assert copy.execute("SELECT count(*) FROM state_changes").fetchone()[0] > 0
    with mounted_tmpfs(tmp_path / "small", "64k") as small:
        full = run(small / "copy.db")
        assert full.returncode != 0 and "full" in full.stderr, full.stderr
        assert list(small.iterdir()) == []


def test_a_first_install_has_nothing_to_back_up_and_the_build_is_named_by_its_commit():
    """Every build said 0.1.0; the wheel now carries the checkout's `git describe`, which
    `engage-edge --version` (and, to admins, /healthz) show after the release."""
    out = dry_run("--platform", "pi").stdout
    assert "runuser" not in out and "backup" not in out.split("==> 6/9")[0]
    assert "journalctl -u engage-edge | grep 'first start'" in out and "accounts kept" not in out
    described = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True,
                               text=True, timeout=60)
    if described.returncode == 0:
        block = out.split("write /opt/engage-edge/build/edge_app/BUILD (mode 0644, owner root:root):\n", 1)[1]
        assert block.splitlines()[0] == f"[dry-run]   | {described.stdout.strip()}", block[:200]
        assert out.index("edge_app/BUILD") < out.index("pip wheel")
    else:  # a copy without git history: known by its release alone, and said so
        assert "is not a git checkout" in out


def _certificate(folder: Path, host: str, ca: bool = False) -> Path:
    """A cert.pem/key.pem pair for ``host`` in ``folder``: self-signed as install.sh makes it,
    or (``ca``) issued by a school CA made beside it."""
    folder.mkdir()
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    names = ["-subj", f"/CN={host}", "-addext", f"subjectAltName=DNS:{host},DNS:{host}.local"]
    run = lambda *args: subprocess.run(["openssl", *args], cwd=folder, capture_output=True, timeout=60, check=True)  # noqa: E731
    if not ca:
        run("req", "-x509", *ec, "-days", "30", *names, "-keyout", "key.pem", "-out", "cert.pem")
        return folder
    run("req", "-x509", *ec, "-days", "30", "-subj", "/CN=School CA", "-keyout", "ca.key", "-out", "ca.pem")
    run("req", "-new", *ec, *names, "-keyout", "key.pem", "-out", "req.csr")
    run("x509", "-req", "-in", "req.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-days", "30", "-copy_extensions",
        "copy", "-out", "cert.pem")
    return folder


@pytest.mark.parametrize("host, ca, remade", [("desk-08", False, True), ("desk-07", False, False),
                                              ("desk-08", True, False)], ids=["renamed", "same-host", "school-ca"])
def test_a_renamed_hosts_self_signed_certificate_is_made_again(tmp_path, host, ca, remade):
    """A desk renamed (or a card cloned from desk-07) kept desk-07's self-signed certificate,
    "kept: cert.pem exists", so browsers were told of a name mismatch for good. A self-signed
    one naming another host is made again for this one; one a school CA issued stays."""
    certs = _certificate(tmp_path / "certs", "desk-07", ca=ca)
    result = _dry_run_on_a_device(tmp_path, f"mkdir -p /etc/engage-edge/tls && cp {certs}/cert.pem {certs}/key.pem "
                                            "/etc/engage-edge/tls/", host=host)
    assert result.returncode == 0, result.stdout + result.stderr
    step = result.stdout.split("==> 7/9", 1)[1].split("==> 8/9", 1)[0]
    if remade:
        assert "self-signed for another host (CN=desk-07): making a new pair for desk-08" in step, step
        assert "-subj /CN=desk-08" in step and "subjectAltName=DNS:desk-08,DNS:desk-08.local" in step, step
    else:
        assert "kept: /etc/engage-edge/tls/cert.pem exists" in step and "openssl req" not in step, step
