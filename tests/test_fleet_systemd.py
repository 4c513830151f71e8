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
    assert ANALYZE, MISSING
    result = subprocess.run([ANALYZE, "security", "--offline=true", str(local_copy(tmp_path))],
                            capture_output=True, text=True, timeout=60)
    match = re.search(r"Overall exposure level for \S+: ([\d.]+)", result.stdout)
    assert match, result.stdout[-2000:] + result.stderr
    assert float(match.group(1)) <= 4.0, result.stdout[-3000:]
