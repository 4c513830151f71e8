"""The classroom service's unit passes `systemd-analyze verify` and is hardened."""
from __future__ import annotations

import re
import subprocess

from test_systemd import ANALYZE, DEVICE_EXEC, MISSING, ROOT, unit_values, verify

UNIT = ROOT / "systemd" / "engage-classroom.service"


def local_copy(tmp_path):
    import sys
    from pathlib import Path

    exe = Path(sys.executable).parent / "engage-edge"
    assert exe.is_file(), "install the package into the venv first (pip install -e .)"
    copy = tmp_path / UNIT.name
    copy.write_text(UNIT.read_text().replace(f"ExecStart={DEVICE_EXEC}", f"ExecStart={exe}"))
    return copy


def test_classroom_unit_verifies(tmp_path):
    result = verify(local_copy(tmp_path))
    problems = [line for line in (result.stdout + result.stderr).splitlines() if UNIT.name in line]
    assert result.returncode == 0 and not problems, result.stdout + result.stderr


def test_classroom_unit_runs_the_classroom_command_hardened(tmp_path):
    v = unit_values(UNIT.read_text())
    assert v["ExecStart"][0].startswith(f"{DEVICE_EXEC} classroom --data-dir /var/lib/engage-classroom")
    assert v["User"] == ["engage-classroom"] and v["Restart"] == ["on-failure"]
    assert v["MemoryMax"] == ["600M"] and v["MemoryHigh"] == ["400M"]  # a flood is restarted, not the server's memory
    assert ANALYZE, MISSING
    result = subprocess.run([ANALYZE, "security", "--offline=true", str(local_copy(tmp_path))],
                            capture_output=True, text=True, timeout=60)
    match = re.search(r"Overall exposure level for \S+: ([\d.]+)", result.stdout)
    assert match, result.stdout[-2000:] + result.stderr
    assert float(match.group(1)) <= 4.0, result.stdout[-3000:]


def test_the_drop_in_the_header_gives_passes_verify_with_every_flag_kept(tmp_path):
    """The header said to override 'Environment=CLASSROOM_ARGS=...' with an example that,
    pasted as written (unquoted, over several lines), kept only "--mqtt-host": systemd ignores
    the rest of the words as invalid assignments. Its exact drop-in now verifies clean, and
    the assignment holds every flag."""
    lines = [line.removeprefix("#DROP-IN ") for line in UNIT.read_text().splitlines() if line.startswith("#DROP-IN ")]
    assert lines[0] == "[Service]" and lines[1].startswith('Environment="CLASSROOM_ARGS=--mqtt-host ')
    copy = local_copy(tmp_path)
    (tmp_path / f"{UNIT.name}.d").mkdir()
    (tmp_path / f"{UNIT.name}.d" / "override.conf").write_text("\n".join(lines) + "\n")
    result = verify(copy)
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "override.conf" not in output and UNIT.name not in output, output
    args = lines[1].split("=", 2)[2].rstrip('"').split()
    assert args[:4] == ["--mqtt-host", "broker.school.lan", "--mqtt-port", "8883"] and "--max-pages" in args
    from edge_app.cli import build_parser

    parsed = build_parser().parse_args(["classroom", *args])  # flags the command has, values it takes
    assert parsed.mqtt_port == 8883 and parsed.max_pages == 16 and parsed.host == "0.0.0.0"
