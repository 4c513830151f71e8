"""The unit file passes `systemd-analyze verify` (and a broken copy would not), and it
carries the protocol, restart policy and hardening the appliance relies on."""
from __future__ import annotations

import configparser
import ctypes.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "engage-edge.service"
DEVICE_EXEC = "/opt/engage-edge/venv/bin/engage-edge"
ANALYZE = shutil.which("systemd-analyze")
MISSING = "systemd-analyze is missing: `make deps-test` (or apt-get install systemd) installs it"


def unit_values(text: str) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith(("#", "[")):
            key, value = line.split("=", 1)
            values.setdefault(key.strip(), []).append(value.strip())
    return values


FAULT_UNIT = ROOT / "systemd" / "engage-edge-fault.service"


def local_copy(tmp_path: Path, text: str | None = None, unit: Path = UNIT) -> Path:
    """The unit with ExecStart pointing at this checkout's engage-edge (verify wants it to exist),
    and the other unit beside it (the service names its fault light, which names the service)."""
    exe = Path(sys.executable).parent / "engage-edge"
    assert exe.is_file(), "install the package into the venv first (pip install -e .)"
    for each in (UNIT, FAULT_UNIT):
        copy = tmp_path / each.name
        body = text if (each == unit and text is not None) else each.read_text()
        copy.write_text(body.replace(f"ExecStart={DEVICE_EXEC}", f"ExecStart={exe}"))
    return tmp_path / unit.name


def verify(path: Path) -> subprocess.CompletedProcess:
    assert ANALYZE, MISSING
    return subprocess.run([ANALYZE, "verify", str(path)], capture_output=True, text=True, timeout=60)


def test_unit_passes_systemd_analyze_verify(tmp_path):
    result = verify(local_copy(tmp_path))
    problems = [l for l in (result.stdout + result.stderr).splitlines() if UNIT.name in l]
    assert result.returncode == 0 and not problems, result.stdout + result.stderr


def test_the_fault_light_unit_verifies_and_is_started_by_the_services_failure_only(tmp_path):
    """systemd gave up restarting the service and the LED went dark: a desk that read as switched
    off. The service's OnFailure= starts the fault light; starting the service stops it."""
    result = verify(local_copy(tmp_path, unit=FAULT_UNIT))
    problems = [l for l in (result.stdout + result.stderr).splitlines() if "engage-edge" in l]
    assert result.returncode == 0 and not problems, result.stdout + result.stderr
    service, fault = unit_values(UNIT.read_text()), unit_values(FAULT_UNIT.read_text())
    assert service["OnFailure"] == ["engage-edge-fault.service"]
    assert fault["Conflicts"] == ["engage-edge.service"] and fault["After"] == ["engage-edge.service"]
    assert fault["ExecStart"] == [f"{DEVICE_EXEC} fault-light --config /etc/engage-edge/config.toml"]
    assert fault["User"] == ["engage"] and "WantedBy" not in fault  # never enabled on its own
    assert fault["DeviceAllow"] == ["char-gpiochip rw", "char-*gpiomem rw"] and fault["PrivateNetwork"] == ["yes"]


def test_verify_would_catch_a_broken_unit(tmp_path):
    text = UNIT.read_text().replace("WatchdogSec=60", "WatchdogSec=sixty").replace("ProtectHome=yes", "ProtectHom=yes")
    result = verify(local_copy(tmp_path, text))
    output = result.stdout + result.stderr
    assert "sixty" in output and "ProtectHom" in output


def test_unit_hardening_exposure_is_low(tmp_path):
    assert ANALYZE, MISSING
    result = subprocess.run([ANALYZE, "security", "--offline=true", str(local_copy(tmp_path))],
                            capture_output=True, text=True, timeout=60)
    match = re.search(r"Overall exposure level for \S+: ([\d.]+) (\w+)", result.stdout)
    assert match, result.stdout[-2000:] + result.stderr
    # 2.0 since the clock state may be read (ProtectClock=no, adjtimex allowed: three items
    # the score counts, though without CAP_SYS_TIME the clock cannot be set)
    assert float(match.group(1)) <= 2.0 and match.group(2) == "OK", result.stdout[-3000:]


def test_unit_runs_the_appliance_as_engage_with_watchdog_and_restart_policy():
    v = unit_values(UNIT.read_text())
    assert v["ExecStart"] == [f"{DEVICE_EXEC} run --config /etc/engage-edge/config.toml"]
    assert v["User"] == ["engage"] and "video" in v["SupplementaryGroups"][0] and "gpio" in v["SupplementaryGroups"][0]
    assert v["Type"] == ["notify"] and int(v["WatchdogSec"][0]) >= 10
    assert v["Restart"] == ["on-failure"] and "StartLimitBurst" in v and "StartLimitIntervalSec" in v
    assert v["StandardOutput"] == ["journal"] and v["StandardError"] == ["journal"]
    assert v["WantedBy"] == ["multi-user.target"]


def test_unit_is_hardened_with_devices_limited_to_camera_and_gpio():
    v = unit_values(UNIT.read_text())
    for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "PrivateTmp": "yes",
                       "ProtectHome": "yes", "DevicePolicy": "closed", "CapabilityBoundingSet": ""}.items():
        assert v.get(key) == [value], key
    assert v["ReadWritePaths"] == ["/var/lib/engage-edge"]
    assert v["SystemCallFilter"][0] == "@system-service" and "~@privileged" in v["SystemCallFilter"]
    assert v["SystemCallErrorNumber"] == ["EPERM"], "a refused system call must fail, not kill the loop"
    assert v["IPAddressDeny"] == ["any"] and "localhost" in v["IPAddressAllow"][0]
    assert v["MemoryMax"] and v["UMask"] == ["0077"]
    allowed = {d.split()[0] for d in v["DeviceAllow"]}
    assert {"char-video4linux", "char-media", "char-gpiochip"} <= allowed
    assert all(d.startswith(("char-video4linux", "char-media", "char-dma_heap", "char-vchiq", "char-gpiochip",
                             "char-*gpiomem")) for d in allowed), allowed


def test_unit_parses_as_ini():
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read_string(UNIT.read_text())
    assert parser.sections() == ["Unit", "Service", "Install"]


def test_jetson_drop_in_from_install_sh_verifies_with_the_unit(tmp_path):
    """install.sh writes a drop-in on a Jetson (argus socket in /tmp, sysfs GPIO, NVIDIA
    devices); systemd-analyze reads drop-ins beside the unit, so verify the pair."""
    out = subprocess.run(["bash", str(ROOT / "firmware" / "install.sh"), "--dry-run", "--platform", "jetson"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    block = out.split("10-jetson.conf (mode 0644, owner root:root):\n", 1)[1]
    lines = [l.split("| ", 1)[1] if "| " in l else "" for l in block.splitlines() if l.startswith("[dry-run]   |")]
    assert "PrivateTmp=no" in lines and "[Service]" in lines
    unit = local_copy(tmp_path)
    (tmp_path / f"{UNIT.name}.d").mkdir()
    (tmp_path / f"{UNIT.name}.d" / "10-jetson.conf").write_text("\n".join(lines) + "\n")
    result = verify(unit)
    problems = [l for l in (result.stdout + result.stderr).splitlines() if UNIT.name in l]
    assert result.returncode == 0 and not problems, result.stdout + result.stderr


# ------------------------------------------------------------------ the unit's system call filter, for real
def syscall_set(name: str, seen: set[str] | None = None) -> set[str]:
    """The system calls a filter word names: ``@set`` expanded by systemd-analyze itself
    (nested sets too), a plain name as it is."""
    if not name.startswith("@"):
        return {name}
    assert ANALYZE, MISSING
    seen = set() if seen is None else seen
    seen.add(name)
    out = subprocess.run([ANALYZE, "syscall-filter", name], capture_output=True, text=True, timeout=60, check=True).stdout
    calls: set[str] = set()
    for line in out.splitlines()[1:]:
        word = line.strip()
        if word and not word.startswith("#") and word not in seen:
            calls |= syscall_set(word, seen)
    return calls


def unit_syscall_policy(text: str) -> tuple[set[str], set[str]]:
    """(allowed, denied): the unit's SystemCallFilter lines in systemd's order (the first
    allow list sets what runs, ``~`` lines take away, later allow lines add back), and
    what ProtectClock=yes denies in a filter of its own, whatever the allow list says."""
    allowed: set[str] = set()
    for value in unit_values(text).get("SystemCallFilter", []):
        words = value.lstrip("~").split()
        calls = set().union(*(syscall_set(w) for w in words))
        allowed = allowed - calls if value.startswith("~") else allowed | calls
    denied = syscall_set("@clock") if unit_values(text).get("ProtectClock") == ["yes"] else set()
    return allowed, denied


# Run in a child: load the unit's policy with libseccomp (the kernel enforces it, as under
# systemd; a refused call fails with EPERM: SystemCallErrorNumber=), then ask the clock.
UNDER_SECCOMP = r"""
import ctypes, ctypes.util, errno, json, sys
from edge_app.device import clock
allowed, denied = json.loads(sys.argv[1])
lib = ctypes.CDLL(ctypes.util.find_library("seccomp"))
lib.seccomp_init.restype = ctypes.c_void_p
lib.seccomp_rule_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint]
lib.seccomp_load.argtypes = [ctypes.c_void_p]
ALLOW, EPERM = 0x7FFF0000, 0x00050000 | errno.EPERM
def load(default, action, names):
    ctx = lib.seccomp_init(default)
    for name in names:
        nr = lib.seccomp_syscall_resolve_name(name.encode())
        if nr >= 0:
            lib.seccomp_rule_add(ctx, action, nr, 0)
    assert lib.seccomp_load(ctx) == 0, "seccomp_load failed"
if denied:
    load(ALLOW, EPERM, denied)   # ProtectClock=yes: a filter of its own
load(EPERM, ALLOW, allowed)      # SystemCallFilter=
print(json.dumps(clock.read_state()))
"""


def test_the_clock_check_works_under_the_units_system_call_filter():
    """The dashboard's "Times may be wrong" and /healthz's clock_synchronized read the
    kernel's clock state (clock_adjtime, modes 0: it only reads). ProtectClock=yes and
    ~@privileged (it holds @clock) refused that call with EPERM, so on a device the check
    always answered "cannot tell" and the warning never showed. Setting the clock stays
    impossible: the unit keeps no CAP_SYS_TIME."""
    assert ctypes.util.find_library("seccomp"), "libseccomp is missing: apt-get install libseccomp2"
    allowed, denied = unit_syscall_policy(UNIT.read_text())

    def clock_state(allowed: set[str], denied: set[str]):
        result = subprocess.run([sys.executable, "-c", UNDER_SECCOMP, json.dumps([sorted(allowed), sorted(denied)])],
                                capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert result.returncode == 0, result.stderr[-2000:]
        return json.loads(result.stdout)

    allowed, denied = unit_syscall_policy(UNIT.read_text())
    assert clock_state(allowed, denied) is not None, \
        "the unit's system call filter refuses the clock check (clock_adjtime/adjtimex): EPERM"
    # the harness can tell: the same policy without the clock calls answers "cannot tell"
    assert clock_state(allowed, denied | {"adjtimex", "clock_adjtime", "clock_adjtime64"}) is None
    assert unit_values(UNIT.read_text())["CapabilityBoundingSet"] == [""], "no CAP_SYS_TIME: reading only"


def test_tasks_max_leaves_room_for_the_most_threads_the_config_allows():
    """web.threads may be 256, and the unit's TasksMax was 256: the service needs about 11
    tasks of its own beside the web threads, so cheroot died ("can't start new thread") and
    the start hung without READY. Every thread the config can ask for, and a margin, fit."""
    import dataclasses

    from edge_app import config as config_mod

    def most(section, key: str) -> int:
        field = next(f for f in dataclasses.fields(section) if f.name == key)
        return int(field.metadata["rule"].hi)

    own = 11  # capture loop, store writer, housekeeping, MQTT, watchdog, LED blink, main ...
    needed = (most(config_mod.WebSettings, "threads") + most(config_mod.WebSettings, "analysis_workers")
              + 2 * most(config_mod.ModelSettings, "threads") + own)  # LiteRT pools: the live and the upload model
    tasks_max = int(unit_values(UNIT.read_text())["TasksMax"][0])
    assert tasks_max >= needed + 32, f"TasksMax={tasks_max} leaves under 32 tasks spare over {needed}"
