"""Backups with SQLite's backup API while another thread writes, and the CSV export."""
from __future__ import annotations

import csv
import datetime as dt
import getpass
import grp
import io
import os
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import wait_for

from edge_app.cli import main
from edge_app.store.backup import BackupError, backup, export_csv, parse_since
from edge_app.store.database import Store


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "data")
    yield s
    s.close()


def test_backup_while_another_thread_writes_is_consistent(store, tmp_path):
    for i in range(2000):  # enough pages that the backup takes several steps
        store.log_state_change(1000.0 + i, "Engaged - paying attention", "Engaged", "neutral", 0.9)
    stop = threading.Event()
    written = [0]

    def writer():
        w = Store(store.data_dir)
        t = 10_000.0
        while not stop.is_set():
            with w.transaction() as conn:
                for _ in range(20):
                    t += 1
                    conn.execute("INSERT INTO state_changes(t, level, grp) VALUES (?, 'Not engaged', 'Not engaged')", (t,))
                    conn.execute("INSERT INTO alerts(t, level) VALUES (?, 'Not engaged')", (t,))
            written[0] += 20
        w.close()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        wait_for(lambda: written[0] >= 200, what="the writer under way")  # backups race real writes
        dests = [backup(store.data_dir, tmp_path / f"copy{i}.db") for i in range(3)]
    finally:
        stop.set()
        thread.join(10)
    assert written[0] > 0
    counts = []
    for dest in dests:
        conn = sqlite3.connect(f"file:{dest}?mode=ro", uri=True)
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # one self-contained file
        changes = conn.execute("SELECT count(*) FROM state_changes WHERE t >= 10000").fetchone()[0]
        alerts = conn.execute("SELECT count(*) FROM alerts").fetchone()[0]
        assert changes == alerts and changes % 20 == 0, "a snapshot caught half a transaction"
        assert conn.execute("SELECT count(*) FROM state_changes WHERE t < 10000").fetchone()[0] == 2000
        counts.append(changes)
        conn.close()
    assert counts == sorted(counts)
    restored_dir = tmp_path / "restored-copy"
    restored_dir.mkdir()
    dests[-1].rename(restored_dir / "engage.db")
    restored = Store(restored_dir)
    assert restored.integrity_ok() and restored.schema_version() == store.schema_version()
    restored.close()
    assert not list(tmp_path.glob(".*.partial"))


def test_backup_into_a_directory_and_refusals(store, tmp_path):
    out = tmp_path / "backups"
    out.mkdir()
    dest = backup(store.data_dir, out)
    assert dest.parent == out and dest.name.startswith("engage-") and dest.suffix == ".db"
    with pytest.raises(BackupError, match="must not overwrite"):
        backup(store.data_dir, store.path)
    with pytest.raises(BackupError, match="no database"):
        backup(tmp_path / "nowhere", tmp_path / "x.db")


def test_cli_backup_of_a_missing_database_is_a_usage_error(tmp_path, capsys):
    """Exit 2 (bad usage, configuration or database), as export says for the same mistake."""
    args = ["--data-dir", str(tmp_path / "nothing-here"), "--config", str(_empty(tmp_path))]
    assert main(["backup", str(tmp_path / "b.db"), *args]) == 2
    assert "no database at" in capsys.readouterr().err
    assert main(["export", "--since", "2026-01-01", *args]) == 2


def test_cli_backup(store, tmp_path, capsys):
    store.log_alert(time.time(), "Not engaged")
    assert main(["backup", str(tmp_path / "b.db"), "--data-dir", str(store.data_dir),
                 "--config", str(_empty(tmp_path))]) == 0
    assert "integrity ok" in capsys.readouterr().out
    assert sqlite3.connect(tmp_path / "b.db").execute("SELECT count(*) FROM alerts").fetchone()[0] == 1
    # the live database is its user's alone (the service's UMask=0077); a copy in /tmp or a
    # shared folder was 0644, every record and password hash readable by any local user
    assert stat.S_IMODE((tmp_path / "b.db").stat().st_mode) == 0o600


def _empty(tmp_path: Path) -> Path:
    path = tmp_path / "empty.toml"
    path.write_text("")
    return path


def _ts(text: str) -> float:
    return dt.datetime.fromisoformat(text).timestamp()


def test_export_writes_state_changes_minutes_alerts_and_upload_faces_since_a_date(store, tmp_path, capsys):
    store.log_state_change(_ts("2026-01-01T09:00"), "Engaged - paying attention", "Engaged", "neutral", 0.8)
    store.log_state_change(_ts("2026-02-01T09:00"), "Not engaged", "Not engaged", "sadness", 0.6)
    store.log_minute({"minute": int(_ts("2026-02-01T09:01")), "frames": 900, "faces": 880, "Engaged": 20.0,
                      "Not engaged": 40.0})
    store.log_alert(_ts("2026-02-01T09:02"), "Not engaged")
    user = store.execute("INSERT INTO users(username, password_hash, role, created) VALUES ('ann', 'x', 'student', 0)").lastrowid
    upload = store.add_upload(user, "a.jpg", 100, 100, [
        {"box": [1, 2, 3, 4], "emotion": "happiness", "confidence": 0.7, "probabilities": {}, "engagement": "Engaged"}])
    store.execute("UPDATE uploads SET created = ? WHERE id = ?", (_ts("2026-02-02T10:00"), upload))

    out = tmp_path / "log.csv"
    assert main(["export", "--since", "2026-01-15", "--out", str(out), "--data-dir", str(store.data_dir),
                 "--config", str(_empty(tmp_path))]) == 0
    rows = list(csv.DictReader(out.open()))
    assert [r["kind"] for r in rows] == ["state", "minute", "alert", "upload"]
    state, minute, alert, face = rows
    assert state["level"] == "Not engaged" and state["emotion"] == "sadness" and state["time"].startswith("2026-02-01T09:00")
    assert minute["frames"] == "900" and float(minute["not_engaged_s"]) == 40.0 and float(minute["engaged_s"]) == 20.0
    assert alert["level"] == "Not engaged"
    assert face["user"] == "ann" and face["emotion"] == "happiness" and face["level"] == "Engaged"

    assert export_csv(store.data_dir, parse_since("2026-03-01")) == 0  # nothing that recent: header only
    assert capsys.readouterr().out.strip().startswith("kind,time,level")


def test_exports_of_consecutive_days_share_no_minute(store, tmp_path):
    """Day by day exports add up: the minute before midnight is the day before's only."""
    for minute in ("2026-01-31T23:58", "2026-01-31T23:59", "2026-02-01T00:00", "2026-02-01T00:01"):
        store.log_minute({"minute": int(_ts(minute)), "frames": 900, "faces": 880, "Engaged": 60.0})

    def minutes(since: str, out: Path) -> list[str]:
        assert main(["export", "--since", since, "--out", str(out), "--data-dir", str(store.data_dir),
                     "--config", str(_empty(tmp_path))]) == 0
        return [r["time"][:16] for r in csv.DictReader(out.open()) if r["kind"] == "minute"]

    assert minutes("2026-02-01", tmp_path / "feb.csv") == ["2026-02-01T00:00", "2026-02-01T00:01"]
    assert minutes("2026-02-01T00:00:30", tmp_path / "mid.csv")[0] == "2026-02-01T00:00"  # the minute under way counts


def test_export_to_a_missing_folder_is_a_clear_error_and_writes_nothing(store, tmp_path, capsys):
    out = tmp_path / "no-such-folder" / "log.csv"
    assert main(["export", "--since", "2026-01-01", "--out", str(out), "--data-dir", str(store.data_dir),
                 "--config", str(_empty(tmp_path))]) == 2
    assert f"error: cannot write {out}" in capsys.readouterr().err
    assert not out.parent.exists()


def test_export_rejects_a_bad_date(store, tmp_path, capsys):
    assert main(["export", "--since", "last tuesday", "--data-dir", str(store.data_dir),
                 "--config", str(_empty(tmp_path))]) == 2
    assert "YYYY-MM-DD" in capsys.readouterr().err


def test_export_since_the_first_day_of_the_calendar_exports_everything(store, tmp_path, capsys):
    """'--since 0001-01-01' (everything) ended in a traceback: year 1's midnight has no
    Unix time in a zone east of UTC ("year 0 is out of range")."""
    store.log_state_change(1_780_000_000.0, "Absent", "Absent", None, None)
    store.log_minute({"minute": 1_780_000_020, "frames": 10, "faces": 0, "Absent": 60.0})
    old = os.environ.get("TZ")
    os.environ["TZ"] = "CET-1CEST,M3.5.0,M10.5.0/3"
    time.tzset()
    try:
        assert main(["export", "--since", "0001-01-01", "--data-dir", str(store.data_dir),
                     "--config", str(_empty(tmp_path))]) == 0
    finally:
        if old is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = old
        time.tzset()
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["kind"] for r in rows] == ["state", "minute"]


def test_export_into_a_pipe_closed_early_ends_quietly(store, tmp_path):
    """`engage-edge export | head`: the reader stops after a few lines; the export must end
    with the shell's usual status for that (141), not a traceback."""
    import subprocess
    import sys

    for i in range(5000):  # more CSV than a pipe holds, so a write meets the closed end
        store.log_state_change(1_780_000_000.0 + i, "Engaged - paying attention", "Engaged", "neutral", 0.9)
    proc = subprocess.Popen([sys.executable, "-m", "edge_app", "export", "--since", "2020-01-01",
                             "--data-dir", str(store.data_dir), "--config", str(_empty(tmp_path))],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=Path(__file__).resolve().parent.parent)
    assert proc.stdout.readline().startswith(b"kind,time,level")
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(60) == 141, err
    assert "Traceback" not in err and "Error" not in err, err


RESTORE_WRITER = r"""
import sys, time
from edge_app.store.database import Store

store = Store(sys.argv[1])
for i in range(50):
    store.log_alert(5000.0 + i, "Not engaged")
print("written", flush=True)
time.sleep(600)  # killed here, its writes still in engage.db-wal
"""


def test_restoring_a_backup_as_the_readme_says_after_a_crash(store, tmp_path):
    """firmware/README.md's restore steps, run as written (less sudo and systemctl), after
    the service was killed with its newest writes in engage.db-wal: the database is the
    backup's afterwards. Copying the backup over engage.db alone is what the README warns
    about: SQLite applies the old WAL to it and the newer rows come back."""
    for i in range(10):
        store.log_alert(1000.0 + i, "Not engaged")
    saved = backup(store.data_dir, tmp_path / "backup.db")
    store.close()
    child = subprocess.Popen([sys.executable, "-c", RESTORE_WRITER, str(store.data_dir)], stdout=subprocess.PIPE,
                             text=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
    assert child.stdout.readline() == "written\n"
    child.kill()
    child.wait(10)
    child.stdout.close()
    wal = store.data_dir / "engage.db-wal"
    assert wal.stat().st_size > 0, "the crash left the newest writes in the WAL"
    crashed = {p.name: p.read_bytes() for p in store.data_dir.glob("engage.db*")}

    def alerts() -> int:
        s = Store(store.data_dir)
        try:
            return s.query("SELECT count(*) FROM alerts")[0][0]
        finally:
            s.close()

    naive = tmp_path / "naive"  # the trap: only engage.db replaced
    naive.mkdir()
    for name, data in crashed.items():
        (naive / name).write_bytes(data)
    (naive / "engage.db").write_bytes(saved.read_bytes())
    check = Store(naive)
    assert check.query("SELECT count(*) FROM alerts")[0][0] == 60, "SQLite applied the stale WAL to the copy"
    check.close()

    readme = (Path(__file__).resolve().parent.parent / "firmware" / "README.md").read_text()
    block = readme.split("**Restoring a backup**", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    lines = [line.replace("sudo ", "") for line in block.splitlines() if "systemctl" not in line]
    script = "\n".join(lines).replace("/var/lib/engage-edge/backup.db", str(saved)) \
        .replace("/var/lib/engage-edge", str(store.data_dir)) \
        .replace("-o engage -g engage", f"-o {getpass.getuser()} -g {grp.getgrgid(os.getgid()).gr_name}")
    result = subprocess.run(["bash", "-euc", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert alerts() == 10, "the restored database is the backup's"
    assert (store.data_dir / "engage.db.old").exists() and (store.data_dir / "engage.db-wal.old").read_bytes() == \
        crashed["engage.db-wal"], "the database as it was is kept beside it"
    assert stat.S_IMODE((store.data_dir / "engage.db").stat().st_mode) == 0o600
