"""Backups with SQLite's backup API while another thread writes, and the CSV export."""
from __future__ import annotations

import contextlib
import csv
import datetime as dt
import io
import json
import os
import re
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import ENGAGE_EDGE, device_zone, mounted_tmpfs, wait_for

from edge_app.cli import main
from edge_app.store.backup import backup
from edge_app.store.copying import BackupError
from edge_app.store.database import Store
from edge_app.store.export import export_csv, iso_time, parse_since


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
    with pytest.raises(BackupError, match="is the live database's own file"):
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
    path.write_text("# defaults\n")
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
    rows = list(csv.DictReader(out.open(encoding="utf-8-sig")))
    assert [r["kind"] for r in rows] == ["state", "minute", "alert", "upload"]
    # students' names and states: the command's user's alone, as a backup (the example writes to /tmp)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    state, minute, alert, face = rows
    assert state["level"] == "Not engaged" and state["emotion"] == "sadness" and state["time"].startswith("2026-02-01T09:00")
    assert minute["frames"] == "900" and float(minute["not_engaged_s"]) == 40.0 and float(minute["engaged_s"]) == 20.0
    assert alert["level"] == "Not engaged"
    assert face["user"] == "ann" and face["emotion"] == "happiness" and face["level"] == "Engaged"

    assert export_csv(store.data_dir, parse_since("2026-03-01")) == 0  # nothing that recent: header only
    assert capsys.readouterr().out.strip().startswith("kind,time,level")


def test_export_ends_at_until_and_writes_the_audit_log_and_the_accounts_for_a_records_office(store, tmp_path, capsys):
    """A school's records office asks for one school year (--since and --until, the end not
    included: two consecutive years share no row), what admins changed in it (--what audit)
    and who has an account (--what accounts), each a CSV a spreadsheet opens."""
    for day in ("2026-08-31T15:00", "2026-09-01T09:00", "2027-06-30T23:59", "2027-07-01T00:00"):
        store.log_state_change(_ts(day), "Engaged", "Engaged", None, None)
        store.log_alert(_ts(day), "Not engaged")
    for minute in ("2026-08-31T23:59", "2026-09-01T00:00", "2027-06-30T23:59", "2027-07-01T00:00"):
        store.log_minute({"minute": int(_ts(minute)), "frames": 10, "faces": 10, "Engaged": 60.0})
    store.execute("INSERT INTO audit(t, actor, action, target, detail) VALUES (?, 'admin', 'deleted user', 'mia', "
                  "'=cmd')", (_ts("2026-10-01T08:00"),))
    store.execute("INSERT INTO audit(t, actor, action, target, detail) VALUES (?, 'admin', 'added user', 'ben', '')",
                  (_ts("2027-08-01T08:00"),))
    store.execute("INSERT INTO users(username, password_hash, role, created, last_login, must_change_password) "
                  "VALUES ('ben', 'secret-hash', 'student', ?, NULL, 1)", (_ts("2026-09-02T08:00"),))
    common = ["--data-dir", str(store.data_dir), "--config", str(_empty(tmp_path))]
    year, audit, accounts = (tmp_path / name for name in ("year.csv", "audit.csv", "accounts.csv"))
    assert main(["export", "--since", "2026-09-01", "--until", "2027-07-01", "--out", str(year), *common]) == 0
    rows = list(csv.DictReader(year.open(encoding="utf-8-sig")))
    assert [(r["kind"], r["time"][:16]) for r in rows] == [
        ("state", "2026-09-01T09:00"), ("state", "2027-06-30T23:59"),
        ("minute", "2026-09-01T00:00"), ("minute", "2027-06-30T23:59"),
        ("alert", "2026-09-01T09:00"), ("alert", "2027-06-30T23:59")]
    assert main(["export", "--what", "audit", "--since", "2026-09-01", "--until", "2027-07-01", "--out", str(audit),
                 *common]) == 0
    rows = list(csv.DictReader(audit.open(encoding="utf-8-sig")))
    assert [(r["actor"], r["action"], r["target"], r["detail"]) for r in rows] == [
        ("admin", "deleted user", "mia", "'=cmd")]  # no formula in a spreadsheet either
    assert main(["export", "--what", "accounts", "--out", str(accounts), *common]) == 0  # no --since: who is there now
    assert main(["export", "--what", "accounts", "--out", str(accounts), *common]) == 0  # an earlier one: replaced
    text = accounts.read_text(encoding="utf-8-sig")
    assert "secret-hash" not in text
    assert list(csv.DictReader(io.StringIO(text))) == [
        {"username": "ben", "role": "student", "created": iso_time(_ts("2026-09-02T08:00")), "last_login": "",
         "disabled": "no", "must_change_password": "yes"}]
    roster = tmp_path / "class-roster.csv"  # a school's own file that merely begins like an accounts export
    roster.write_text("username,role,first name,last name,parent email\nben,student,Ben,M,b@example.org\n")
    assert main(["export", "--what", "accounts", "--out", str(roster), *common]) == 2
    assert "parent email" in roster.read_text()
    assert main(["export", "--what", "audit", "--since", "2026-09-01", "--out", str(year), *common]) == 2
    assert main(["export", "--since", "2026-09-01", "--out", str(accounts), *common]) == 2  # nor one kind for another
    assert "earlier export of this kind" in capsys.readouterr().err
    assert main(["export", "--what", "accounts", "--since", "2026-09-01", *common]) == 2  # not "accounts of a year"
    assert "accounts there are now" in capsys.readouterr().err
    # a period ending at a moment within a minute: the minute row over it goes to the next period, not to both
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    assert main(["export", "--since", "2027-06-30", "--until", "2027-06-30T23:59:30", "--out", str(first), *common]) == 0
    assert main(["export", "--since", "2027-06-30T23:59:30", "--until", "2027-07-02", "--out", str(second),
                 *common]) == 0
    minutes = [[r["time"][:16] for r in csv.DictReader(f.open(encoding="utf-8-sig")) if r["kind"] == "minute"]
               for f in (first, second)]
    assert minutes == [[], ["2027-06-30T23:59", "2027-07-01T00:00"]]
    capsys.readouterr()
    assert main(["export", "--what", "audit", *common]) == 2  # what period: said, nothing written
    assert "--since is needed for the audit" in capsys.readouterr().err
    assert main(["export", "--since", "2027-07-01", "--until", "2026-09-01", *common]) == 2
    assert "is not after --since" in capsys.readouterr().err
    assert main(["export", "--since", "2026-09-01", "--until", "next june", *common]) == 2
    assert "--until 'next june' is not a date" in capsys.readouterr().err


def test_no_exported_cell_starts_a_formula_in_a_comma_or_a_semicolon_locale(store, tmp_path):
    """A photo named "a;=2+3;b.jpg": Excel in a German or French locale splits the CSV on
    ";" (the csv module quotes no field for it), and "=2+3" (or =HYPERLINK) ran as a formula.
    Read with either separator, no cell starts with = + - @ or a tab."""
    from edge_app.web.upload import safe_filename
    user = store.execute("INSERT INTO users(username, password_hash, role, created) VALUES ('-ann', 'x', 'student', 0)").lastrowid
    names = ["a;=2+3;b.jpg", 'x;"=HYPERLINK(""http://evil"")".jpg', "c, @SUM(1).jpg", "d;\t=1.jpg", "e; -2+3;+1.jpg"]
    for name in names:
        store.add_upload(user, safe_filename(name), 10, 10, [])
    out = tmp_path / "log.csv"
    assert export_csv(store.data_dir, 0, out) == len(names)
    text = out.read_text(encoding="utf-8-sig")
    for delimiter in (",", ";"):
        cells = [cell for row in csv.reader(io.StringIO(text), delimiter=delimiter) for cell in row]
        assert not [cell for cell in cells if cell[:1] in ("=", "+", "-", "@", "\t", "\r") and cell], delimiter
    # the names read as they were, the formula starts shown as text
    files = {row["file"] for row in csv.DictReader(io.StringIO(text))}
    assert {"a;'=2+3;b.jpg", "c, '@SUM(1).jpg", "d;'=1.jpg", "e; '-2+3;'+1.jpg"} < files
    assert {row["user"] for row in csv.DictReader(io.StringIO(text))} == {"'-ann"}


def test_present_seconds_are_exported_also_from_a_database_this_version_has_not_opened(store, tmp_path):
    """``present_s`` (migration 10) is the CSV's last column. An export run after an update,
    before the service's first start has migrated the database, finds no such column: its
    minutes had none, so they export 0, not "reading the log failed"."""
    store.log_minute({"minute": int(_ts("2026-02-01T09:01")), "frames": 900, "faces": 880, "Engaged": 20.0,
                      "Present": 40.0})
    out = tmp_path / "log.csv"
    assert export_csv(store.data_dir, parse_since("2026-02-01"), out) == 1
    header = out.read_text(encoding="utf-8-sig").splitlines()[0].split(",")
    assert header[-1] == "present_s" and header[-2] == "absent_s"
    assert float(next(csv.DictReader(out.open(encoding="utf-8-sig")))["present_s"]) == 40.0

    store.close()
    with sqlite3.connect(store.path) as conn:  # the database as version 9 left it
        conn.execute("ALTER TABLE minute_stats DROP COLUMN present_s")
        conn.execute("ALTER TABLE users DROP COLUMN browsers_generation")  # and without what later versions added
        conn.execute("PRAGMA user_version = 9")
    assert export_csv(store.data_dir, parse_since("2026-02-01"), out) == 1
    row = next(csv.DictReader(out.open(encoding="utf-8-sig")))
    assert float(row["present_s"]) == 0.0 and float(row["engaged_s"]) == 20.0
    again = Store(store.data_dir)  # the next start migrates it
    try:
        again.log_minute({"minute": int(_ts("2026-02-01T09:02")), "frames": 9, "faces": 9, "Present": 5.0})
        assert [r[0] for r in again.query("SELECT present_s FROM minute_stats ORDER BY minute")] == [0.0, 5.0]
    finally:
        again.close()


def test_exports_of_consecutive_days_share_no_minute(store, tmp_path):
    """Day by day exports add up: the minute before midnight is the day before's only."""
    for minute in ("2026-01-31T23:58", "2026-01-31T23:59", "2026-02-01T00:00", "2026-02-01T00:01"):
        store.log_minute({"minute": int(_ts(minute)), "frames": 900, "faces": 880, "Engaged": 60.0})

    def minutes(since: str, out: Path) -> list[str]:
        assert main(["export", "--since", since, "--out", str(out), "--data-dir", str(store.data_dir),
                     "--config", str(_empty(tmp_path))]) == 0
        return [r["time"][:16] for r in csv.DictReader(out.open(encoding="utf-8-sig")) if r["kind"] == "minute"]

    assert minutes("2026-02-01", tmp_path / "feb.csv") == ["2026-02-01T00:00", "2026-02-01T00:01"]
    assert minutes("2026-02-01T00:00:30", tmp_path / "mid.csv")[0] == "2026-02-01T00:00"  # the minute under way counts


def test_export_to_a_missing_folder_is_a_clear_error_and_writes_nothing(store, tmp_path, capsys):
    out = tmp_path / "no-such-folder" / "log.csv"
    assert main(["export", "--since", "2026-01-01", "--out", str(out), "--data-dir", str(store.data_dir),
                 "--config", str(_empty(tmp_path))]) == 2
    assert f"error: cannot write {out}" in capsys.readouterr().err
    assert not out.parent.exists()


@pytest.mark.parametrize("command", ["backup", "export --since 2026-01-01 --out"])
def test_a_folder_named_with_a_slash_that_does_not_exist_is_not_written_as_a_file(store, tmp_path, capsys, command):
    """``engage-edge backup /media/usb/backups/`` before that folder existed wrote a file named
    ``backups``, though the help promises a dated file in the folder."""
    folder = tmp_path / "backups"
    assert main([*command.split(), f"{folder}/", "--data-dir", str(store.data_dir),
                 "--config", str(_empty(tmp_path))]) == 2
    assert f"there is no folder {folder}: create it (mkdir -p {folder})" in capsys.readouterr().err
    assert not folder.exists()
    folder.mkdir()
    if command == "backup":  # there now: a dated file inside it
        assert main(["backup", f"{folder}/", "--data-dir", str(store.data_dir), "--config", str(_empty(tmp_path))]) == 0
        assert [p.suffix for p in folder.iterdir()] == [".db"]


def test_export_rejects_a_bad_date(store, tmp_path, capsys):
    assert main(["export", "--since", "last tuesday", "--data-dir", str(store.data_dir),
                 "--config", str(_empty(tmp_path))]) == 2
    assert "YYYY-MM-DD" in capsys.readouterr().err


def test_export_since_the_first_day_of_the_calendar_exports_everything(store, tmp_path, capsys):
    """'--since 0001-01-01' (everything) ended in a traceback: year 1's midnight has no
    Unix time in a zone east of UTC ("year 0 is out of range")."""
    store.log_state_change(1_780_000_000.0, "Absent", "Absent", None, None)
    store.log_minute({"minute": 1_780_000_020, "frames": 10, "faces": 0, "Absent": 60.0})
    with device_zone("CET-1CEST,M3.5.0,M10.5.0/3"):
        assert main(["export", "--since", "0001-01-01", "--data-dir", str(store.data_dir),
                     "--config", str(_empty(tmp_path))]) == 0
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
    about: SQLite applies the old WAL to it and the newer rows come back; `restore` moves
    the WAL aside with the database."""
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
        .replace("engage-edge restore", f"{Path(sys.executable).parent / 'engage-edge'} restore --data-dir "
                 f"{store.data_dir}")
    result = subprocess.run(["bash", "-euc", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert alerts() == 10, "the restored database is the backup's"
    assert (store.data_dir / "engage.db.old").exists() and (store.data_dir / "engage.db-wal.old").read_bytes() == \
        crashed["engage.db-wal"], "the database as it was is kept beside it"
    assert stat.S_IMODE((store.data_dir / "engage.db").stat().st_mode) == 0o600


def test_going_back_to_the_previous_release_as_the_readme_says(cfg, make_appliance, caplog):
    """firmware/README.md's "Going back to the previous release", run as written on a data
    directory (less sudo and systemctl; this release stands in for the old one, so its
    `git checkout ... && install.sh --no-start` line is left out: it reinstalls the
    package). The backup install.sh made is the database afterwards, what was logged since is
    in the .new files, and a photo kept since goes at the first start, as the README says
    (no row of the backup names it)."""
    import grp
    import pwd

    data = Path(cfg.store.data_dir)
    store = Store(data)
    for i in range(10):
        store.log_alert(1000.0 + i, "Not engaged")
    readme = (Path(__file__).resolve().parent.parent / "firmware" / "README.md").read_text()
    section = readme.split("**Going back to the previous release.**", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    named = re.search(r"/var/lib/engage-edge/(engage-before-upgrade-\S+\.db)", block)
    assert named, block
    made = _cli("backup", "--data-dir", data, data / named.group(1))  # as install.sh has the old release make it
    assert made.returncode == 0, made.stderr
    for i in range(5):  # the newer release's records
        store.log_alert(2000.0 + i, "Not engaged")
    (data / "images").mkdir(exist_ok=True)
    (data / "images" / "kept-since.jpg").write_bytes(b"a photo kept after the backup")
    store.add_upload(None, "kept-since.jpg", 10, 10, [], image_path="kept-since.jpg")
    store.close()  # systemctl stop

    lines = [line.replace("sudo ", "") for line in block.splitlines()
             if "systemctl" not in line and not line.startswith("git checkout")]
    assert len(lines) == len(block.splitlines()) - 3, block  # stop, the old release's install, start
    me, group = pwd.getpwuid(os.geteuid()).pw_name, grp.getgrgid(os.getegid()).gr_name
    script = "\n".join(lines).replace("/var/lib/engage-edge", str(data)).replace("-o engage -g engage",
                                                                                 f"-o {me} -g {group}")
    (data / "engage.db-journal").write_bytes(b"a rollback journal a crash left beside the database")
    result = subprocess.run(["bash", "-euc", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE((data / "engage.db").stat().st_mode) == 0o600
    assert not (data / "engage.db-journal").exists(), "a journal left beside the old database goes with it"

    with caplog.at_level("INFO"):
        app = make_appliance(cfg, with_loop=False)  # systemctl start
    assert _alerts(data) == 10, "the database is the backup's"
    newer_files = sorted(data.glob("engage.db.new-*"))
    assert len(newer_files) == 1 and sorted(p.name for p in data.glob("engage.db-journal.new-*"))
    with contextlib.closing(sqlite3.connect(newer_files[0])) as newer:
        assert newer.execute("SELECT count(*) FROM alerts").fetchone()[0] == 15, "the newer records are in .new-<date>"
    assert not (data / "images" / "kept-since.jpg").exists(), "a photo no row of the backup names goes at start"
    assert "removed 1 image file(s)" in caplog.text
    said = " ".join(section.split("| What |", 1)[0].split())
    assert "kept since the backup (uploads, alert snapshots) are deleted at the first start" in said

    app.stop()  # going back again later (another date in the stamp) keeps the first go-back's files
    again = script.replace("stamp=$(date +%Y%m%d-%H%M%S)", "stamp=20991231-235959")
    assert again != script
    result = subprocess.run(["bash", "-euc", again], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert newer_files[0].exists() and len(list(data.glob("engage.db.new-*"))) == 2


def _cli(*args, stdout=subprocess.PIPE) -> subprocess.CompletedProcess:
    """The real console script, as a technician types it."""
    script = Path(sys.executable).parent / "engage-edge"
    return subprocess.run([str(script), *map(str, args)], stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=60)


@pytest.fixture
def running(store):
    """A device's data directory while the service writes: its newest records are in engage.db-wal
    (its schema in engage.db, checkpointed since it was made, as on a device that has run a while)."""
    store.query("PRAGMA wal_checkpoint(TRUNCATE)")
    for i in range(50):
        store.log_alert(1_780_000_000.0 + i, "Not engaged")
    assert (store.data_dir / "engage.db-wal").stat().st_size > 0
    return store


def _alerts(data_dir: Path) -> int:
    s = Store(data_dir)
    try:
        return s.query("SELECT count(*) FROM alerts")[0][0]
    finally:
        s.close()


@pytest.mark.parametrize("name", ["engage.db", "engage.db-wal", "engage.db-shm"])
@pytest.mark.parametrize("command", ["backup", "export"])
def test_backup_and_export_never_write_over_the_live_database(running, tmp_path, name, command):
    """`export --out /var/lib/engage-edge/engage.db` put a CSV in the database's place, and
    `backup .../engage.db-wal` a copy in the place of the WAL that held the newest records
    (the check caught engage.db itself for a backup only); both said they succeeded."""
    target = running.data_dir / name
    args = ["backup", target] if command == "backup" else ["export", "--since", "2020-01-01", "--out", target]
    r = _cli(*args, "--data-dir", running.data_dir, "--config", _empty(tmp_path))
    assert r.returncode == 2, r.stderr
    assert f"error: {target} is the live database's own file" in r.stderr and "choose a name" in r.stderr
    head = target.read_bytes()[:16] if target.exists() else b""  # SQLite may checkpoint as the command closes
    assert not head.startswith(b"kind,") and head.startswith(b"SQLite format 3\0") == (name == "engage.db")
    assert not [p.name for p in running.data_dir.iterdir() if p.name.startswith(".")]  # no temp file left
    assert _alerts(running.data_dir) == 50


@pytest.mark.parametrize("command", ["backup", "export"])
def test_a_device_or_a_pipe_is_never_replaced_by_a_plain_file(store, tmp_path, command):
    """Run as root, `export --out /dev/null` (or /dev/full, /dev/stdout) renamed its temp
    file over the device: /dev/null became a plain file for the whole machine. A FIFO
    stands in for the device here (the same kind of file, and harmless if it were lost)."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    args = ["backup", fifo] if command == "backup" else ["export", "--since", "2020-01-01", "--out", fifo]
    r = _cli(*args, "--data-dir", store.data_dir, "--config", _empty(tmp_path))
    assert r.returncode == 2, r.stderr
    assert "it is not a plain file (a device or a pipe)" in r.stderr and "Traceback" not in r.stderr
    assert ("leave out --out" in r.stderr) == (command == "export")
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    assert not list(tmp_path.glob(".pipe.*"))


def test_a_backup_replaces_an_earlier_backup_but_not_another_file(store, tmp_path, capsys):
    """`backup notes.txt` (or the config, for a name typed wrong) replaced the file with a
    database. An earlier backup is still replaced (the same name every day), and so is an
    empty file (mktemp's); anything else is refused and kept."""
    args = ["--data-dir", str(store.data_dir), "--config", str(_empty(tmp_path))]
    notes = tmp_path / "notes.txt"
    notes.write_text("the technician's notes\n")
    assert main(["backup", str(notes), *args]) == 2
    assert f"error: {notes} exists and is not a database: a backup would replace it" in capsys.readouterr().err
    assert notes.read_text() == "the technician's notes\n"

    earlier = tmp_path / "backup.db"
    assert main(["backup", str(earlier), *args]) == 0
    store.log_alert(1_780_000_000.0, "Not engaged")
    assert main(["backup", str(earlier), *args]) == 0
    assert sqlite3.connect(earlier).execute("SELECT count(*) FROM alerts").fetchone()[0] == 1
    empty = tmp_path / "empty.db"
    empty.touch()
    assert main(["backup", str(empty), *args]) == 0
    assert _is_engage_backup(empty)


def test_nothing_is_written_into_the_images_folder_whose_unrecorded_files_the_next_start_deletes(store, tmp_path,
                                                                                                   capsys):
    """`backup <data>/images/` and `export --out <data>/images/log.csv` succeeded, and the
    service's next start deleted them (leftovers.remove_unrecorded_images): a backup lost."""
    args = ["--data-dir", str(store.data_dir), "--config", str(_empty(tmp_path))]
    images = store.data_dir / "images"
    (images / "2026").mkdir()
    via = tmp_path / "pictures"
    via.symlink_to(images)
    for command in (["backup", str(images)], ["backup", str(images / "2026" / "b.db")], ["backup", str(via / "b.db")],
                    ["export", "--since", "2020-01-01", "--out", str(images / "log.csv")]):
        assert main([*command, *args]) == 2, command
        err = capsys.readouterr().err
        assert "inside the data directory's images folder" in err and "choose a folder outside it" in err, err
    assert [p for p in images.rglob("*") if p.is_file()] == []
    assert main(["backup", str(store.data_dir / "b.db"), *args]) == 0  # beside it, in the data directory: kept


def test_a_backup_never_replaces_a_live_database_or_a_database_that_is_no_backup(store, tmp_path, capsys):
    """`backup` replaced any SQLite file: another data directory's live engage.db, or a
    school's grades.db, though it promises to replace only an earlier backup."""
    args = ["--data-dir", str(store.data_dir), "--config", str(_empty(tmp_path))]
    other = Store(tmp_path / "other")  # another data directory's live database, in WAL mode
    other.log_alert(1_780_000_000.0, "Not engaged")
    other.close()
    renamed = tmp_path / "desk.db"  # a live database under another name, its -wal beside it
    renamed.write_bytes((other.data_dir / "engage.db").read_bytes())
    Path(f"{renamed}-wal").touch()
    for live, why in ((other.data_dir / "engage.db", "named engage.db"), (renamed, "-wal beside it")):
        before = live.read_bytes()
        assert main(["backup", str(live), *args]) == 2
        err = capsys.readouterr().err
        assert "looks like a data directory's live database" in err and why in err, err
        assert live.read_bytes() == before
    wal_mode = tmp_path / "wal-mode.db"  # engage-edge's tables, but in WAL mode as a live database is
    wal_mode.write_bytes((other.data_dir / "engage.db").read_bytes())
    grades = tmp_path / "grades.db"
    with contextlib.closing(sqlite3.connect(grades)) as conn, conn:
        conn.execute("CREATE TABLE grades (student TEXT, grade TEXT)")
    for kept in (wal_mode, grades):
        before = kept.read_bytes()
        assert main(["backup", str(kept), *args]) == 2
        assert "is a database but not an earlier engage-edge backup" in capsys.readouterr().err
        assert kept.read_bytes() == before
    assert main(["backup", str(tmp_path / "b.db"), *args]) == 0
    assert main(["backup", str(tmp_path / "b.db"), *args]) == 0  # an earlier backup is replaced


def test_an_empty_destination_or_a_closed_standard_output_is_refused(store, tmp_path, capsys, monkeypatch):
    """`backup ""` wrote a dated backup into the current directory (Path("") is "."), exit 0;
    `export --since ... >&-` (Python then has no sys.stdout) ended in an AttributeError."""
    args = ["--data-dir", str(store.data_dir), "--config", str(_empty(tmp_path))]
    monkeypatch.chdir(tmp_path)
    before = sorted(os.listdir(tmp_path))
    for command in (["backup", ""], ["export", "--since", "2020-01-01", "--out", ""]):
        assert main([*command, *args]) == 2
        assert "no destination given (an empty name): give a file or a folder" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == before
    monkeypatch.setattr(sys, "stdout", None)
    assert main(["export", "--since", "2020-01-01", *args]) == 2
    assert "standard output is closed: give --out FILE" in capsys.readouterr().err


@pytest.mark.skipif(not os.path.isfile("/proc/version"), reason="needs Linux's /proc")
def test_a_file_of_the_kernels_own_file_systems_is_refused_as_no_file_on_a_disk(store, tmp_path, capsys):
    """`export --out /proc/version` said "No such file or directory" with exit 1 (the code of a
    full disk): it is no file on a disk, a destination never to be written (exit 2)."""
    args = ["--data-dir", str(store.data_dir), "--config", str(_empty(tmp_path))]
    for command in (["export", "--since", "2020-01-01", "--out", "/proc/version"], ["backup", "/proc/version"],
                    ["backup", "/proc/"]):
        assert main([*command, *args]) == 2, command
        err = capsys.readouterr().err
        assert "is on the kernel's proc file system, not a file on a disk" in err, err


def _dev_is_devtmpfs() -> bool:
    try:
        return any(line.split()[4] == "/dev" and " - devtmpfs " in line for line in open("/proc/self/mountinfo"))
    except OSError:
        return False


@pytest.mark.skipif(not _dev_is_devtmpfs(), reason="needs /dev mounted as devtmpfs (a Pi's, a Linux machine's)")
def test_a_backup_into_dev_is_refused_not_kept_in_memory_until_the_next_reboot(store, tmp_path, capsys):
    """Run as root, `backup /dev/engage.db` wrote the backup into devtmpfs, memory that the next
    reboot empties: a technician who believed the device backed up had nothing."""
    args = ["--data-dir", str(store.data_dir), "--config", str(_empty(tmp_path))]
    name = f"/dev/engage-test-{os.getpid()}.db"
    for command in (["backup", name], ["export", "--since", "2020-01-01", "--out", name + ".csv"]):
        assert main([*command, *args]) == 2, command
        err = capsys.readouterr().err
        assert "is on the kernel's devtmpfs file system, not a file on a disk" in err, err
    assert not os.path.exists(name) and not os.path.exists(name + ".csv")


def test_a_backup_to_a_symbolic_link_writes_through_it_as_cp_does(store, tmp_path, capsys):
    """`backup latest.db`, a link the technician keeps to the stick's nightly.db: the rename
    put a plain file in the link's place and left nightly.db as it was. The copy now goes
    where the link points (a temp file beside the target, renamed over it) and the link
    stays; `export --out` to a link too."""
    args = ["--data-dir", str(store.data_dir), "--config", str(_empty(tmp_path))]
    stick = tmp_path / "stick"
    stick.mkdir()
    nightly = stick / "nightly.db"
    nightly.touch()
    latest = tmp_path / "latest.db"
    latest.symlink_to(Path("stick") / "nightly.db")  # relative, as `ln -s stick/nightly.db latest.db` makes it
    assert main(["backup", str(latest), *args]) == 0
    assert f"backup written to {os.path.realpath(nightly)} (integrity ok)" in capsys.readouterr().out
    assert latest.is_symlink() and os.readlink(latest) == "stick/nightly.db"
    assert _is_engage_backup(nightly) and stat.S_IMODE(nightly.stat().st_mode) == 0o600
    store.log_alert(1_780_000_000.0, "Not engaged")
    assert main(["backup", str(latest), *args]) == 0  # an earlier backup, replaced through the link
    assert latest.is_symlink() and sqlite3.connect(nightly).execute("SELECT count(*) FROM alerts").fetchone()[0] == 1
    assert sorted(p.name for p in stick.iterdir()) == ["nightly.db"]  # no temp file left
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []

    log, log_link = stick / "log.csv", tmp_path / "log.csv"
    log.write_text("kind,time\n")
    log_link.symlink_to(log)
    assert main(["export", "--since", "2020-01-01", "--out", str(log_link), *args]) == 0
    assert log_link.is_symlink() and log.read_text(encoding="utf-8-sig").startswith("kind,time,level")


def test_a_link_is_refused_where_its_target_would_be(running, tmp_path, capsys):
    """Every refusal holds for where a link points: the live database (or its WAL), a file
    that is not a backup, a pipe; and a link to nothing (as cp, that writes through no
    dangling link: it may be an old one, to a place no longer meant)."""
    args = ["--data-dir", str(running.data_dir), "--config", str(_empty(tmp_path))]
    notes, fifo = tmp_path / "notes.txt", tmp_path / "pipe"
    notes.write_text("the technician's notes\n")
    os.mkfifo(fifo)
    refusals = {
        running.data_dir / "engage.db": "is a link to the live database's own file",
        running.data_dir / "engage.db-wal": "is a link to the live database's own file",
        notes: "exists and is not a database: a backup would replace it",
        fifo: "it is not a plain file (a device or a pipe)",
        tmp_path / "gone" / "old.db": "is a link to a file that does not exist",
    }
    for i, (target, why) in enumerate(refusals.items()):
        link = tmp_path / f"link{i}.db"
        link.symlink_to(target)
        assert main(["backup", str(link), *args]) == 2, why
        err = capsys.readouterr().err
        assert why in err and str(link) in err, err
        assert link.is_symlink() and os.readlink(link) == str(target)
    assert notes.read_text() == "the technician's notes\n" and stat.S_ISFIFO(fifo.lstat().st_mode)
    assert not (tmp_path / "gone").exists()
    assert "touch" in err  # what to do with a link to nothing: create the file, or name another
    assert _alerts(running.data_dir) == 50
    assert not [p.name for p in running.data_dir.iterdir() if p.name.startswith(".")]


def test_a_link_another_user_left_in_a_shared_folder_is_not_followed(store, tmp_path, capsys):
    """`sudo engage-edge export --out /tmp/x`, where another user made /tmp/x a link to
    /etc/shadow: written through, root's CSV replaced the password file. The kernel refuses
    to follow such a link (fs.protected_symlinks: a link in a sticky world-writable folder,
    owned by neither the caller nor the folder's owner), but a path resolved by the program
    itself is never walked by the kernel, and the sysctl may be off. So the program refuses
    it itself, at every hop of a chain; a link loop is said as one, not as a missing file."""
    if os.geteuid() != 0:
        from conftest import skip_unless_ci

        skip_unless_ci("a link owned by another user needs root (CI runs as root)")
    args = ["--data-dir", str(store.data_dir), "--config", str(_empty(tmp_path))]
    shared = tmp_path / "tmp"
    shared.mkdir()
    shared.chmod(0o1777)  # as /tmp
    secret, empty = tmp_path / "shadow", tmp_path / "empty-root-file"
    secret.write_text("root:$6$hash:19000::::::\n")
    empty.touch()  # a backup replaces an empty file: the refusals alone did not protect it
    theirs, chained, mine = shared / "x", shared / "chain", shared / "mine.csv"
    theirs.symlink_to(secret)
    os.lchown(theirs, 65534, 65534)
    chained.symlink_to(theirs)  # root's own link, to theirs: the second hop is refused
    empty_link = shared / "y.db"
    empty_link.symlink_to(empty)
    os.lchown(empty_link, 65534, 65534)
    for command, link in ((["export", "--since", "2020-01-01", "--out"], theirs),
                          (["export", "--since", "2020-01-01", "--out"], chained),
                          (["backup"], empty_link)):
        assert main([*command, str(link), *args]) == 2, link
        err = capsys.readouterr().err
        assert "belongs to another user" in err and str(link) in err, err
        assert link.is_symlink()
    system = tmp_path / "etc"  # a link to a folder: the backup's dated file would go in there
    system.mkdir()
    folder_link = shared / "backups"
    folder_link.symlink_to(system)
    os.lchown(folder_link, 65534, 65534)
    assert main(["backup", str(folder_link), *args]) == 2
    assert "belongs to another user" in capsys.readouterr().err and list(system.iterdir()) == []
    assert secret.read_text() == "root:$6$hash:19000::::::\n" and empty.read_bytes() == b""
    assert sorted(p.name for p in shared.iterdir()) == ["backups", "chain", "x", "y.db"]

    log = tmp_path / "log.csv"
    log.write_text("kind,time\n")
    mine.symlink_to(log)  # the caller's own link in the shared folder: followed, as the kernel does
    assert main(["export", "--since", "2020-01-01", "--out", str(mine), *args]) == 0
    assert log.read_text(encoding="utf-8-sig").startswith("kind,time,level")

    loop = shared / "loop1"
    loop.symlink_to("loop2")
    (shared / "loop2").symlink_to("loop1")
    assert main(["backup", str(loop), *args]) == 2
    err = capsys.readouterr().err
    assert "links in a loop" in err and "touch" not in err, err


def _is_engage_backup(path: Path) -> bool:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok" and \
            conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'alerts'").fetchone()[0] == 1
    finally:
        conn.close()


def test_an_export_does_not_replace_a_database_or_a_folder(store, tmp_path, capsys):
    """`--out backup.db` for `--out log.csv` replaced last week's backup with a CSV."""
    args = ["--data-dir", str(store.data_dir), "--config", str(_empty(tmp_path))]
    saved = backup(store.data_dir, tmp_path / "backup.db")
    assert main(["export", "--since", "2020-01-01", "--out", str(saved), *args]) == 2
    assert "is a database (a backup?), not a CSV file" in capsys.readouterr().err
    assert _is_engage_backup(saved)
    assert main(["export", "--since", "2020-01-01", "--out", str(tmp_path), *args]) == 2
    assert f"it is a folder: name a file in it (e.g. {tmp_path / 'log.csv'})" in capsys.readouterr().err
    old_csv = tmp_path / "log.csv"
    old_csv.write_text("kind,time\n")
    assert main(["export", "--since", "2020-01-01", "--out", str(old_csv), *args]) == 0  # a CSV: replaced, as > would
    assert old_csv.read_text(encoding="utf-8-sig").startswith("kind,time,level")


def test_an_export_replaces_only_an_earlier_export_or_an_empty_file(store, tmp_path, capsys):
    """`export --out cfg.toml` (a name typed wrong) replaced the config with CSV, exit 0,
    though the README promises exit 2 for a file that is not an earlier export. A file whose
    first line is not the export's header is refused and kept; an earlier export (the same
    name every day, with its byte order mark) and an empty file are replaced."""
    args = ["--data-dir", str(store.data_dir), "--config", str(_empty(tmp_path))]
    config, notes = tmp_path / "cfg.toml", tmp_path / "notes.txt"
    config.write_text('[store]\nretention_days = 30\n')
    notes.write_text("kind words for the class\n")  # "kind" alone is not the header
    for kept in (config, notes):
        before = kept.read_text()
        assert main(["export", "--since", "2026-11-21", "--out", str(kept), *args]) == 2
        err = capsys.readouterr().err
        assert f"error: {kept} exists and is not an earlier export" in err and "choose another name" in err, err
        assert kept.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []

    daily = tmp_path / "daily.csv"
    assert main(["export", "--since", "2020-01-01", "--out", str(daily), *args]) == 0
    store.log_alert(1_780_000_000.0, "Not engaged")
    assert main(["export", "--since", "2020-01-01", "--out", str(daily), *args]) == 0  # yesterday's, replaced
    assert [r["kind"] for r in csv.DictReader(daily.open(encoding="utf-8-sig"))] == ["alert"]
    empty = tmp_path / "empty.csv"
    empty.touch()
    assert main(["export", "--since", "2020-01-01", "--out", str(empty), *args]) == 0
    assert empty.read_text(encoding="utf-8-sig").startswith("kind,time,level")


def test_a_full_disk_is_said_as_such_with_exit_1_and_leaves_nothing(store, tmp_path):
    """`export > /mnt/usb/log.csv` on a full stick was a traceback (OSError: [Errno 28]);
    --out said 'No space left on device' with exit 2 (bad usage); a backup 'database or disk
    is full', as if the device's own database were. Each now says the disk written to is
    full, how much is free and what to do, with exit 1 (the writing failed), as backup."""
    for i in range(3000):  # more CSV than the small disk holds
        store.log_state_change(1_780_000_000.0 + i, "Engaged - paying attention", "Engaged", "neutral", 0.9)
    args = ["--data-dir", store.data_dir, "--config", _empty(tmp_path)]
    with mounted_tmpfs(tmp_path / "stick", "64k") as stick:
        r = _cli("backup", stick / "b.db", *args)
        assert r.returncode == 1, r.stderr
        assert "the disk is full" in r.stderr and "MB free there" in r.stderr and "free some space" in r.stderr
        r = _cli("export", "--since", "2020-01-01", "--out", stick / "log.csv", *args)
        assert r.returncode == 1, r.stderr
        assert f"cannot write {stick / 'log.csv'}: the disk is full" in r.stderr and "nothing was written" in r.stderr
        assert list(stick.iterdir()) == []  # no temp file, no half a file
        with open(stick / "redirected.csv", "w") as out:
            r = _cli("export", "--since", "2020-01-01", *args, stdout=out)
        assert r.returncode == 1, r.stderr
        assert "Traceback" not in r.stderr and "Exception ignored" not in r.stderr, r.stderr
        assert "cannot write the CSV to standard output: the disk is full" in r.stderr


def test_an_export_of_a_database_a_newer_release_wrote_is_refused_as_run_refuses_it(store, tmp_path):
    """`run` stops on a database of a newer schema; `export` wrote a CSV of it and exited 0,
    reading columns whose meaning the newer release may have changed."""
    store.log_state_change(1_780_000_000.0, "Engaged - paying attention", "Engaged", "neutral", 0.9)
    store.close()
    with contextlib.closing(sqlite3.connect(store.data_dir / "engage.db")) as conn:
        conn.execute("PRAGMA user_version = 99")
    out = tmp_path / "log.csv"
    r = _cli("export", "--since", "2020-01-01", "--out", out, "--data-dir", store.data_dir, "--config", _empty(tmp_path))
    assert r.returncode == 2 and "has schema version 99, newer than this engage-edge" in r.stderr, r.stderr
    assert "export it with the release that wrote it; nothing was written" in r.stderr and not out.exists()


def test_a_backup_that_runs_out_of_room_part_way_says_the_disk_is_full(store, tmp_path):
    """With a little more free than the database (not enough for the copy and its journal),
    SQLite's answer was passed on as it came: "backup ... failed: disk I/O error", which
    reads as a broken stick. It is the full disk, with what the copy needs beside what is
    free."""
    for i in range(3000):
        store.log_state_change(1_780_000_000.0 + i, "Engaged - paying attention", "Engaged", "neutral", 0.9)
    size = (store.data_dir / "engage.db").stat().st_size
    with mounted_tmpfs(tmp_path / "stick", "2m") as stick:
        fs = os.statvfs(stick)
        (stick / "filler").write_bytes(b"\0" * (fs.f_bavail * fs.f_frsize - size - 8192))  # the database and 8 kB
        r = _cli("backup", stick / "b.db", "--data-dir", store.data_dir, "--config", _empty(tmp_path))
        assert r.returncode == 1, r.stderr
        assert re.search(r"failed: the disk is full \(it needs about [\d.]+ MB, [\d.]+ MB free there\): free some "
                         r"space or write to another disk; nothing was written there", r.stderr), r.stderr
        assert sorted(p.name for p in stick.iterdir()) == ["filler"]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_an_export_stopped_half_way_leaves_no_half_file(store, tmp_path, sig):
    """Ctrl-C, `kill`, or the technician's SSH session dropping (SIGHUP) while a long export
    writes: a hang-up or a kill ended the process outright and left its hidden temp file,
    half the CSV, beside the destination for good (a backup's as large as the database)."""
    with store.transaction() as conn:  # enough rows that the writing takes a while
        conn.executemany("INSERT INTO state_changes(t, level, grp, emotion, confidence) VALUES (?, ?, ?, ?, ?)",
                         [(1_780_000_000.0 + i, "Engaged - paying attention", "Engaged", "neutral", 0.9)
                          for i in range(150_000)])
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    script = Path(sys.executable).parent / "engage-edge"
    proc = subprocess.Popen([str(script), "export", "--since", "2020-01-01", "--out", str(out_dir / "log.csv"),
                             "--data-dir", str(store.data_dir), "--config", str(_empty(tmp_path))],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: list(out_dir.iterdir()) or proc.poll() is not None, timeout=60, what="the export writing")
        assert proc.poll() is None, "the export ended before it could be stopped"
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 128 + sig, err
    assert "Traceback" not in err, err
    assert list(out_dir.iterdir()) == []


def test_a_damaged_database_is_named_as_the_source_of_the_failure(store, tmp_path, capsys):
    """A damaged engage.db gave 'backup to /tmp/b.db failed: database disk image is
    malformed', read as a fault of the destination; the message names the device's
    database and the restore steps, and nothing is written."""
    for i in range(200):
        store.log_state_change(1_780_000_000.0 + i, "Engaged - paying attention", "Engaged", "neutral", 0.9)
    # the log's own pages, wherever the schema's migrations put them (a fixed offset met an index once one was added)
    root = store.query("SELECT rootpage FROM sqlite_master WHERE name = 'state_changes'")[0][0]
    page_size = store.query("PRAGMA page_size")[0][0]
    store.close()
    with open(store.path, "r+b") as f:  # three pages in the middle overwritten, as a failing card does
        f.seek((root - 1) * page_size)
        f.write(b"\xff" * 3 * page_size)
    args = ["--data-dir", str(store.data_dir), "--config", str(_empty(tmp_path))]
    dest = tmp_path / "b.db"
    assert main(["backup", str(dest), *args]) == 1
    err = capsys.readouterr().err
    assert f"error: cannot back up: the device's database {store.path} is damaged (" in err
    assert "'Restoring a backup'" in err and f"nothing was written at {dest}" in err
    assert not dest.exists() and not list(tmp_path.glob(".b.db.*"))
    assert main(["export", "--since", "2020-01-01", "--out", str(tmp_path / "log.csv"), *args]) == 2
    assert f"reading the log failed: the device's database {store.path} is damaged" in capsys.readouterr().err
    assert not (tmp_path / "log.csv").exists()


def test_a_read_only_stick_is_named_as_such(store, tmp_path):
    """A USB stick the kernel mounted read-only (errors on it, or its switch) was said as
    "'root', who runs this command, may not write in /media/stick": root, refused?"""
    args = ["--data-dir", store.data_dir, "--config", _empty(tmp_path)]
    with mounted_tmpfs(tmp_path / "stick", "1m") as stick:
        subprocess.run(["mount", "-o", "remount,ro", str(stick)], check=True)
        for command in (["backup", stick], ["export", "--since", "2020-01-01", "--out", stick / "log.csv"]):
            r = _cli(*command, *args)
            assert r.returncode == 2, r.stderr
            assert f"the file system holding {stick} is mounted read-only: choose another place" in r.stderr, r.stderr
            assert "who runs this command" not in r.stderr


def test_a_second_signal_cannot_cut_the_clean_up_short():
    """The first SIGTERM or SIGHUP ends a one-shot command by an exception whose way out
    removes the half-written file; a second one (a supervisor's repeated TERM, a hang-up
    after the Ctrl-C) raised again inside that clean-up and left the file behind. After
    the first, the three are ignored until main puts the handlers back."""
    from edge_app.cli import _end_cleanly_on_hangup

    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)}
    replaced = _end_cleanly_on_hangup()
    try:
        with pytest.raises(SystemExit) as ended:
            signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)
        assert ended.value.code == 128 + signal.SIGTERM
        assert all(signal.getsignal(s) == signal.SIG_IGN for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT))
    finally:
        for sig, handler in replaced.items():
            signal.signal(sig, handler)
    assert {sig: signal.getsignal(sig) for sig in before} == before


def test_export_to_dash_writes_standard_output(store, tmp_path, capsys):
    store.log_state_change(_ts("2026-02-01T09:00"), "Not engaged", "Not engaged", "sadness", 0.6)
    assert main(["export", "--since", "2026-01-15", "--out", "-", "--data-dir", str(store.data_dir),
                 "--config", str(_empty(tmp_path))]) == 0
    assert capsys.readouterr().out.splitlines()[1].startswith("state,2026-02-01T09:00")
    assert not Path("-").exists() and not (tmp_path / "-").exists()


def _desk(path: Path, overrides: dict, *, published: bool = True) -> Store:
    """A desk's data directory whose admin saved ``overrides`` on Admin > Classroom broker; with
    ``published``, it has run its publisher (its installation id is made)."""
    from edge_app.fleet.publisher import installation_id

    desk = Store(path)
    desk.set_setting("config_overrides", overrides)
    if published:
        installation_id(path)
    return desk


def _overrides(data_dir: Path) -> dict:
    with contextlib.closing(sqlite3.connect(data_dir / "engage.db")) as conn:
        return json.loads(conn.execute("SELECT value FROM settings WHERE key = 'config_overrides'").fetchone()[0])


def test_a_backup_restored_on_another_desk_does_not_keep_its_device_id(tmp_path):
    """Cloning desk A onto desk B by restoring A's backup carried the mqtt.device_id saved on
    A's admin page: both desks published as A, one tile on the classroom page. Restored on
    another desk it is dropped (B is named as when it is unset) and said; on A itself, or with
    --keep-device-id (a desk that replaces A), it stays."""
    saved = {"mqtt.host": "broker.school.lan", "mqtt.device_id": "desk-07", "mqtt.desk": "Row 2, seat 4"}
    a = _desk(tmp_path / "a", saved)
    a.close()
    b = _desk(tmp_path / "b", {}, published=False)  # a new card: its publisher never ran
    b.close()
    assert _cli("backup", "--data-dir", a.data_dir, tmp_path / "a.db").returncode == 0

    onto_b = _cli("restore", "--data-dir", b.data_dir, tmp_path / "a.db")
    assert onto_b.returncode == 0, onto_b.stderr
    assert "mqtt.device_id" not in _overrides(b.data_dir) and _overrides(b.data_dir)["mqtt.host"] == "broker.school.lan"
    assert "dropped mqtt.device_id = 'desk-07' (made on another desk)" in onto_b.stdout
    assert "'Row 2, seat 4' came with the backup" in onto_b.stdout and "user name" not in onto_b.stdout
    assert (b.data_dir / "engage.db.old").exists() and stat.S_IMODE((b.data_dir / "engage.db").stat().st_mode) == 0o600

    onto_a = _cli("restore", "--data-dir", a.data_dir, tmp_path / "a.db")
    assert onto_a.returncode == 0 and "kept mqtt.device_id = 'desk-07' (this desk's own backup)" in onto_a.stdout
    assert _overrides(a.data_dir)["mqtt.device_id"] == "desk-07"

    (b.data_dir / "engage.db.old").unlink()
    replacing = _cli("restore", "--keep-device-id", "--data-dir", b.data_dir, tmp_path / "a.db")
    assert replacing.returncode == 0 and _overrides(b.data_dir)["mqtt.device_id"] == "desk-07"
    # the live database keeps no stamp of A: a copy of it made by other means (install.sh's
    # fallback) restored here later dropped B's device_id as "made on another desk"
    with contextlib.closing(sqlite3.connect(b.data_dir / "engage.db")) as live:
        assert live.execute("SELECT value FROM settings WHERE key = 'backup.made_on'").fetchone() is None
    # a backup of a restored database names the desk it is made on, or none, never the one restored from
    from edge_app.fleet.publisher import INSTALLATION_FILE, installation_id

    for named in (True, False):
        if not named:
            (b.data_dir / INSTALLATION_FILE).unlink()
        assert _cli("backup", "--data-dir", b.data_dir, tmp_path / f"b{named}.db").returncode == 0
        with contextlib.closing(sqlite3.connect(tmp_path / f"b{named}.db")) as copy:
            stamp = copy.execute("SELECT value FROM settings WHERE key = 'backup.made_on'").fetchone()
        assert stamp == ((json.dumps(installation_id(b.data_dir)),) if named else None)


def test_a_backup_copied_into_place_by_hand_is_settled_at_start(tmp_path, caplog):
    """A backup copied over engage.db by hand (not `engage-edge restore`) kept its 'made on'
    stamp and another desk's mqtt.device_id: desk B published as desk A. At start the same
    rule as `restore` applies (another desk's dropped, this desk's kept), it is logged, and
    the stamp goes."""
    from edge_app import config as config_mod
    from edge_app.web.admin_settings import with_saved_settings

    a = _desk(tmp_path / "a", {"mqtt.host": "broker.school.lan", "mqtt.device_id": "desk-07"})
    a.close()
    b = _desk(tmp_path / "b", {}, published=False)
    b.close()
    assert _cli("backup", "--data-dir", a.data_dir, tmp_path / "a.db").returncode == 0
    for desk, device_id, said in ((b, None, "made on another desk); dropped mqtt.device_id = 'desk-07'"),
                                  (a, "desk-07", "made on this desk); kept mqtt.device_id = 'desk-07'")):
        (desk.data_dir / "engage.db").write_bytes((tmp_path / "a.db").read_bytes())  # by hand
        started = Store(desk.data_dir)
        try:
            caplog.clear()
            cfg = with_saved_settings(started, config_mod.defaults())
            assert started.get_setting("backup.made_on") is None
        finally:
            started.close()
        assert cfg.mqtt.device_id != "desk-07" if device_id is None else cfg.mqtt.device_id == device_id
        assert _overrides(desk.data_dir).get("mqtt.device_id") == device_id
        assert _overrides(desk.data_dir)["mqtt.host"] == "broker.school.lan"
        assert "put in place by hand, not with `engage-edge restore`" in caplog.text and said in caplog.text, \
            caplog.text


def test_a_backup_piped_in_is_restored_and_nothing_of_the_old_database_stays_beside_it(tmp_path):
    """`cat backup.db | engage-edge restore /dev/stdin` ended in "File or stream is not seekable"
    (a traceback); and the look at the database in use made its -wal and -shm after the list of
    what goes aside was made, so they stayed beside the restored database."""
    a = _desk(tmp_path / "a", {"mqtt.host": "broker.school.lan"})
    a.log_alert(1_780_000_000.0, "Not engaged")
    a.close()
    b = _desk(tmp_path / "b", {}, published=False)
    b.close()
    assert not (b.data_dir / "engage.db-wal").exists()  # stopped cleanly: only the database
    assert _cli("backup", "--data-dir", a.data_dir, tmp_path / "a.db").returncode == 0
    script = Path(sys.executable).parent / "engage-edge"
    piped = subprocess.run(f"cat {tmp_path / 'a.db'} | {script} restore --keep-device-id --data-dir {b.data_dir} /dev/stdin",
                           shell=True, capture_output=True, text=True, timeout=60)
    assert piped.returncode == 0 and "Traceback" not in piped.stderr, piped.stderr
    assert _alerts(b.data_dir) == 1
    left = sorted(p.name for p in b.data_dir.iterdir() if p.name.startswith("engage.db"))
    assert left == ["engage.db", "engage.db.old"], left


def test_a_restore_onto_a_read_only_card_says_so_and_changes_nothing(tmp_path):
    """A card gone read-only (the failing card a restore is often for): the restore's scratch
    copy was made before the part that says "nothing was changed", and it ended in a traceback."""
    with mounted_tmpfs(tmp_path / "card", "8m") as card:
        desk = _desk(card / "data", {})
        desk.close()
        assert _cli("backup", "--data-dir", card / "data", tmp_path / "b.db").returncode == 0
        subprocess.run(["mount", "-o", "remount,ro", str(card)], check=True)
        r = _cli("restore", "--data-dir", card / "data", tmp_path / "b.db")
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
        assert "Read-only file system" in r.stderr and "nothing was changed" in r.stderr, r.stderr


def test_a_backup_that_cannot_say_its_desk_is_restored_only_as_told(tmp_path):
    """A backup from before backups named their desk, of one that never published: whether its
    device_id is another desk's cannot be told, so the restore asks (exit 2, nothing changed)."""
    a = _desk(tmp_path / "a", {"mqtt.device_id": "desk-07", "mqtt.username": "desk-07"}, published=False)
    a.close()
    b = _desk(tmp_path / "b", {}, published=False)
    b.close()
    assert _cli("backup", "--data-dir", a.data_dir, tmp_path / "a.db").returncode == 0
    before = (b.data_dir / "engage.db").read_bytes()
    asked = _cli("restore", "--data-dir", b.data_dir, tmp_path / "a.db")
    assert asked.returncode == 2 and "--keep-device-id" in asked.stderr and "--drop-device-id" in asked.stderr
    assert "nothing was changed" in asked.stderr
    assert (b.data_dir / "engage.db").read_bytes() == before and not (b.data_dir / "engage.db.old").exists()
    dropped = _cli("restore", "--drop-device-id", "--data-dir", b.data_dir, tmp_path / "a.db")
    assert dropped.returncode == 0 and "mqtt.device_id" not in _overrides(b.data_dir)
    assert "publishes as 'desk-07'" in dropped.stdout and "user name 'desk-07' came with the backup" in dropped.stdout


def test_a_restore_is_refused_while_the_service_runs(running, tmp_path):
    """The running appliance holds images/ (leftovers.hold_images): swapping its database under
    it would lose what it writes next and leave it writing to the old file."""
    from edge_app.store.leftovers import hold_images

    saved = backup(running.data_dir, tmp_path / "b.db")
    held = hold_images(running)
    try:
        refused = _cli("restore", "--data-dir", running.data_dir, saved)
    finally:
        os.close(held)
    assert refused.returncode == 2 and "stop it first (sudo systemctl stop engage-edge" in refused.stderr
    assert not (running.data_dir / "engage.db.old").exists()


def test_a_restore_that_fails_part_way_puts_every_file_back(running, tmp_path):
    """A step failing after engage.db was moved aside (here a file that cannot be moved: a
    mount point) left the database moved away and nothing in its place, while the message
    said the database in use was as it was. The very files moved are put back under their
    names, no .old is left, and the message says so (exit 1)."""
    data = running.data_dir
    saved = backup(data, tmp_path / "b.db")
    with mounted_tmpfs(data / "engage.db-journal", "64k"):
        before = {p.name: p.stat().st_ino for p in data.glob("engage.db*")}
        assert {"engage.db", "engage.db-wal", "engage.db-shm", "engage.db-journal"} == before.keys()
        failed = _cli("restore", "--data-dir", data, saved)
        after = {p.name: p.stat().st_ino for p in data.glob("engage.db*")}
    assert failed.returncode == 1, failed.stderr
    assert f"moving {data / 'engage.db-journal'} aside: Device or resource busy; " in failed.stderr
    assert "every file moved aside was put back, so nothing was changed: the database " \
        "in use is as it was" in failed.stderr, failed.stderr
    assert after == before, "the files in use are back under their own names, and no .old is left"
    (data / "engage.db-journal").rmdir()
    assert _alerts(data) == 50


def test_a_restore_is_refused_while_the_classroom_page_runs(tmp_path, monkeypatch):
    """The classroom service held nothing a restore looks for: the restore moved its database
    aside and the running page went on writing log-ins and accounts into the moved file."""
    from edge_app.fleet.classroom.service import ClassroomService
    from edge_app.fleet.settings import MqttSettings

    monkeypatch.setenv("ENGAGE_ADMIN_PASSWORD", "a-first-admin-password-1")
    data = tmp_path / "classroom"
    service = ClassroomService(MqttSettings(host="127.0.0.1", port=1, device_id="classroom"), data, port=0, reserve_mb=1)
    saved = backup(data, tmp_path / "c.db")
    service.start()
    try:
        refused = _cli("restore", "--data-dir", data, saved)
    finally:
        service.stop()
    assert refused.returncode == 2 and "engage-classroom" in refused.stderr and "nothing was changed" in refused.stderr
    assert not (data / "engage.db.old").exists()
    assert _cli("restore", "--keep-device-id", "--data-dir", data, saved).returncode == 0  # stopped: it goes ahead


def test_a_long_export_is_written_as_it_is_read_in_the_same_bytes(store, tmp_path):
    """The export read every row into a list before writing one: ten years' log (3.7 million
    rows) took 2.2 GB, more than a Pi has. Written as read, its memory stays a small part
    of the file it writes, and the file is byte for byte what the whole list gave."""
    import tracemalloc

    from edge_app.store.export import export_rows, write_log_csv

    with store.transaction() as conn:
        conn.executemany("INSERT INTO state_changes(t, level, grp, emotion, confidence) VALUES (?, ?, ?, ?, ?)",
                         [(1_780_000_000.0 + i, "Engaged - paying attention", "Engaged", "neutral", 0.9)
                          for i in range(20_000)])
    user = store.execute("INSERT INTO users(username, password_hash, role, created) VALUES ('Zoë', 'x', 'student', 0)").lastrowid
    store.add_upload(user, "=Müller, \"2\".jpg", 10, 10, [])
    out = tmp_path / "log.csv"
    tracemalloc.start()
    try:
        assert export_csv(store.data_dir, 0, out) == 20_001
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    size = out.stat().st_size
    assert size > 1_500_000 and peak < size / 4, (peak, size)  # the list of rows was 6 times the file

    whole = io.StringIO()
    write_log_csv(whole, list(export_rows(store.data_dir, 0)))
    assert out.read_bytes() == ("\ufeff" + whole.getvalue()).encode()


@contextlib.contextmanager
def _copied_to_a_read_only_card(tmp_path: Path, data: Path, names: list[str]):
    """``names`` of ``data`` copied, as they are, onto a card the kernel then remounted
    read-only (as it does a failing SD card): its folder, and what it holds, for comparing after."""
    import shutil

    with mounted_tmpfs(tmp_path / "card", "16m") as card:
        copy = card / "data"
        copy.mkdir()
        for name in names:
            shutil.copy2(data / name, copy / name)
        subprocess.run(["mount", "-o", "remount,ro", str(card)], check=True)
        yield copy


def _as_they_are(folder: Path) -> dict:
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir()}


def _csv_kinds(path: Path) -> list[str]:
    return [r["kind"] for r in csv.DictReader(path.open(encoding="utf-8-sig"))]


def test_a_card_remounted_read_only_is_still_backed_up_and_exported(running, tmp_path):
    """A dying SD card is remounted read-only by the kernel, exactly when its records must
    be rescued: backup and export said 'unable to open database file' (SQLite's usual open
    makes a -wal and a -shm beside the database), though every row was readable. Stopped
    cleanly (no -wal), the file is the whole database and is read as it is, writing nothing."""
    running.close()  # the last connection's close folds the -wal into engage.db and removes it
    assert sorted(p.name for p in running.data_dir.glob("engage.db*")) == ["engage.db"]
    card, said = _backup_and_export_from_a_read_only_card(running, tmp_path, ["engage.db"])
    assert f"the file system holding {card} is mounted read-only" in said, said


def _backup_and_export_from_a_read_only_card(running, tmp_path, files: list[str]) -> tuple[Path, str]:
    """Copy ``files`` of the data directory to a card remounted read-only, back it up and export
    its log from there: both succeed, nothing on the card changes, all 50 alerts come out.
    Returns the card's folder and what the backup said."""
    with _copied_to_a_read_only_card(tmp_path, running.data_dir, files) as card:
        before = _as_they_are(card)
        args = ["--data-dir", card, "--config", _empty(tmp_path)]
        r = _cli("backup", tmp_path / "b.db", *args)
        assert r.returncode == 0, r.stderr
        said = r.stderr
        r = _cli("export", "--since", "2020-01-01", "--out", tmp_path / "log.csv", *args)
        assert r.returncode == 0, r.stderr
        assert _as_they_are(card) == before
    assert _alerts_in(tmp_path / "b.db") == 50
    assert _csv_kinds(tmp_path / "log.csv") == ["alert"] * 50
    return card, said


def test_a_read_only_card_with_its_wal_and_shm_is_read_with_the_wal(running, tmp_path):
    """Remounted read-only while the service ran, the card keeps engage.db-wal (the newest
    records) and engage.db-shm: SQLite reads them read-only (mode=ro builds the WAL's index
    in memory when the -shm cannot be written), so nothing in the -wal is missed, as an
    immutable open of engage.db alone would miss it (none of these 50 alerts is in engage.db)."""
    with contextlib.closing(sqlite3.connect(f"file:{running.path}?immutable=1", uri=True)) as conn:
        assert conn.execute("SELECT count(*) FROM alerts").fetchone()[0] == 0
    _backup_and_export_from_a_read_only_card(running, tmp_path, ["engage.db", "engage.db-wal", "engage.db-shm"])


def test_a_read_only_card_whose_wal_cannot_be_read_says_to_copy_the_files_off(running, tmp_path):
    """A -wal with records but no -shm beside it cannot be read in place (SQLite must write a
    -shm first), and engage.db alone lacks the -wal's rows: instead of 'unable to open
    database file', the technician is told the card is read-only and how to copy the files
    off together; from that copy, made as firmware/README.md says, the backup has every record."""
    with _copied_to_a_read_only_card(tmp_path, running.data_dir, ["engage.db", "engage.db-wal"]) as card:
        before = _as_they_are(card)
        args = ["--config", _empty(tmp_path)]
        for command in (["backup", tmp_path / "b.db"], ["export", "--since", "2020-01-01", "--out", tmp_path / "l.csv"]):
            r = _cli(*command, "--data-dir", card, *args)
            assert r.returncode == 2, r.stderr
            assert f"the file system holding {card} is mounted read-only" in r.stderr, r.stderr
            assert f"the newest records are in {card / 'engage.db-wal'}" in r.stderr, r.stderr
            assert f"cp -a {card / 'engage.db'} {card / 'engage.db-wal'} " in r.stderr, r.stderr
            assert ("/media/usb/rescue/), then run this command again on that copy, with sudo and --data-dir "
                    "/media/usb/rescue; nothing was written") in r.stderr, r.stderr
            assert "unable to open database file" not in r.stderr
        assert not (tmp_path / "b.db").exists() and not (tmp_path / "l.csv").exists()
        assert _as_they_are(card) == before
        # firmware/README.md's steps, run as written (less sudo), the card's folder for /var/lib/engage-edge
        readme = (Path(__file__).resolve().parent.parent / "firmware" / "README.md").read_text()
        block = readme.split("**A card mounted read-only.**", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
        script = block.replace("sudo ", "").replace("/var/lib/engage-edge", str(card)) \
            .replace("/media/usb", str(tmp_path / "usb")) \
            .replace("engage-edge backup", f"{Path(sys.executable).parent / 'engage-edge'} backup --config {args[1]}")
        r = subprocess.run(["bash", "-euc", script], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
    assert _alerts_in(tmp_path / "usb" / "backup.db") == 50, "the -wal's records came along"


def _alerts_in(db: Path) -> int:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return conn.execute("SELECT count(*) FROM alerts").fetchone()[0]


def _ballast(store: Store, mb: int) -> None:
    """``mb`` megabytes more database: a backup's copy of it takes long enough to be stopped part-way."""
    with store.transaction() as conn:
        conn.execute("CREATE TABLE ballast(b BLOB)")
        conn.executemany("INSERT INTO ballast VALUES (zeroblob(?))", [(1 << 20,)] * mb)


def _frozen_mid_write(proc: subprocess.Popen, folder: Path, pattern: str) -> Path:
    """Stop ``proc`` (SIGSTOP) once its temp file matching ``pattern`` in ``folder`` holds
    data: frozen part-way through its copy, at a moment that does not depend on timing."""
    def writing():
        for path in folder.glob(pattern):
            with contextlib.suppress(FileNotFoundError):
                if path.stat().st_size > 0:
                    return path
        return proc.poll() is not None

    found = wait_for(writing, timeout=60, every=0.001, what=f"{pattern} being written")
    os.kill(proc.pid, signal.SIGSTOP)
    assert proc.poll() is None and isinstance(found, Path), "it ended before it could be stopped part-way"
    return found


def _killed_mid_write(command: list, folder: Path, pattern: str) -> None:
    proc = subprocess.Popen([*ENGAGE_EDGE, *map(str, command)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _frozen_mid_write(proc, folder, pattern)
    finally:
        proc.kill()
        proc.wait(30)


def test_a_backup_removes_what_killed_backups_left(store, tmp_path):
    """`kill -9` of a backup (15 times) left 9 hidden .b.db.XXXX.tmp files and a -journal,
    906 MB, each a whole copy of the students' records and password hashes; the next backup
    kept them all. It removes them now, and only them: another name's temp file stays."""
    _ballast(store, 64)
    out = tmp_path / "bk"
    out.mkdir()
    args = ["--data-dir", store.data_dir, "--config", _empty(tmp_path)]
    _killed_mid_write(["backup", out / "b.db", *args], out, ".b.db.*.tmp")
    assert len(list(out.glob(".b.db.*.tmp"))) == 1  # and its -journal, when the kill came after SQLite made one
    another = out / ".other.db.abcd1234.tmp"  # the temp name of a backup to other.db: not this one's
    another.write_bytes(b"x")
    r = _cli("backup", out / "b.db", *args)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == [another.name, "b.db"]
    assert _integrity(out / "b.db") == "ok"


def test_an_export_removes_what_killed_exports_left(store, tmp_path):
    """A killed export's hidden temp file is part of the log (names and states), kept for ever
    as a backup's was."""
    with store.transaction() as conn:
        conn.executemany("INSERT INTO state_changes(t, level, grp, emotion, confidence) VALUES (?, ?, ?, ?, ?)",
                         [(1_780_000_000.0 + i, "Engaged - paying attention", "Engaged", "neutral", 0.9)
                          for i in range(150_000)])
    out = tmp_path / "out"
    out.mkdir()
    command = ["export", "--since", "2020-01-01", "--out", out / "log.csv", "--data-dir", store.data_dir,
               "--config", _empty(tmp_path)]
    _killed_mid_write(command, out, ".log.csv.*.tmp")
    assert len(list(out.glob(".log.csv.*.tmp"))) == 1
    r = _cli(*command)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["log.csv"]


def test_a_backup_under_way_keeps_its_temp_file_through_another_backups_sweep(store, tmp_path):
    """Two backups into one folder at once (a cron job and a technician): the second removes
    killed backups' temp files, never the first's, which it is still writing (locked while
    written, however long its integrity check takes): the first ends whole."""
    _ballast(store, 64)
    out = tmp_path / "bk"
    out.mkdir()
    first = subprocess.Popen([*ENGAGE_EDGE, "backup", str(out / "b.db"), "--data-dir", str(store.data_dir),
                              "--config", str(_empty(tmp_path))], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:
        writing = _frozen_mid_write(first, out, ".b.db.*.tmp")
        inode = writing.stat().st_ino
        other = Store(tmp_path / "other")  # a second desk's data, backed up into the same name meanwhile
        other.close()
        r = _cli("backup", out / "b.db", "--data-dir", other.data_dir, "--config", _empty(tmp_path))
        assert r.returncode == 0, r.stderr
        assert writing.stat().st_ino == inode, "the backup under way kept its temp file"
    finally:
        os.kill(first.pid, signal.SIGCONT)
        _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["b.db"]
    with contextlib.closing(sqlite3.connect(f"file:{out / 'b.db'}?mode=ro", uri=True)) as conn:
        assert conn.execute("SELECT count(*) FROM ballast").fetchone()[0] == 64, "the first backup's, whole"


def test_a_restore_removes_what_a_killed_restore_left(running, tmp_path):
    """A restore killed while it copied the backup in left .engage.db.XXXX.restore (a whole
    database) in the data directory for good. The next restore removes it: it runs only
    while nothing else can (no service, no other restore), so every such file is a leftover."""
    saved = backup(running.data_dir, tmp_path / "good.db")
    big = tmp_path / "big.db"  # a large file that starts as a database: copied in whole before it is checked
    with open(big, "wb") as f:
        f.write(b"SQLite format 3\x00")
        f.truncate(256 << 20)
    data = running.data_dir
    _killed_mid_write(["restore", "--data-dir", data, big], data, ".engage.db.*.restore")
    assert len(list(data.glob(".engage.db.*.restore"))) == 1
    r = _cli("restore", "--data-dir", data, saved)
    assert r.returncode == 0, r.stderr
    assert list(data.glob(".engage.db.*")) == []
    assert _alerts(data) == 50


def _integrity(db: Path) -> str:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]


def test_a_temp_file_swept_before_its_backup_locked_it_is_made_again(store, tmp_path, monkeypatch):
    """The moment between a backup's creating its temp file and locking it: another backup's
    sweep finding it there may remove it (it is not locked yet), and the copy went into a
    file of that name made anew, unlocked, for the next sweep to remove part-way. The backup
    makes another temp file, and the one it writes is locked throughout."""
    import tempfile

    from edge_app.fsutil import remove_stale_temps

    made, swept = [], []
    mkstemp, connect = tempfile.mkstemp, sqlite3.connect

    def swept_at_once(*args, **kwargs):
        fd, name = mkstemp(*args, **kwargs)
        made.append(name)
        if len(made) == 1:
            assert remove_stale_temps(tmp_path / "b.db") == [Path(name)]  # the other sweep, in that moment
        return fd, name

    def swept_while_written(database, *args, **kwargs):
        conn = connect(database, *args, **kwargs)
        if str(database).endswith(".tmp"):
            swept.append(remove_stale_temps(tmp_path / "b.db"))  # a sweep while the copy is written
        return conn

    monkeypatch.setattr(tempfile, "mkstemp", swept_at_once)
    monkeypatch.setattr(sqlite3, "connect", swept_while_written)
    assert backup(store.data_dir, tmp_path / "b.db") == tmp_path / "b.db"
    assert len(made) == 2 and swept == [[]]
    assert _integrity(tmp_path / "b.db") == "ok" and not list(tmp_path.glob(".b.db.*"))


def _people(data_dir: Path) -> tuple[list[str], list[str], list[str]]:
    """The restored database's user names, upload file names and audit actions."""
    with contextlib.closing(sqlite3.connect(data_dir / "engage.db")) as conn:
        return ([r[0] for r in conn.execute("SELECT username FROM users ORDER BY id")],
                [r[0] for r in conn.execute("SELECT filename FROM uploads ORDER BY id")],
                [f"{r[0]} {r[1]}" for r in conn.execute("SELECT action, target FROM audit ORDER BY t")])


def test_a_restore_keeps_deleted_accounts_and_photos_deleted(tmp_path):
    """A data-protection officer's finding: an older backup restored brought back a student
    deleted on an erasure request (her account, password hash and photos' results), and the
    audit's record of the deletion went with the newer database. Restored now, what was
    deleted since the backup is deleted again: the account (the admin's audited deletion,
    the same account by id and creation time, not a later one of that name), a photo the
    student deleted herself, and the audit rows since come along. --bring-back-deleted
    keeps them (undoing a mistaken deletion)."""
    from edge_app.store.accounts import Accounts

    store = Store(tmp_path / "desk")
    accounts = Accounts(store)
    admin = accounts.create_user("head", "head-password-1", role="admin")
    anna = accounts.create_user("anna.schmidt", "anna-password-1")
    ben = accounts.create_user("ben.mueller", "ben-password-1")
    store.add_upload(anna.id, "anna_selfie.jpg", 10, 10, [{"box": [1, 2, 3, 4], "emotion": "happiness",
                     "confidence": 0.8, "probabilities": {"happiness": 0.8}, "engagement": "Engaged"}])
    ben_photo = store.add_upload(ben.id, "ben_photo.jpg", 10, 10, [])
    store.add_upload(ben.id, "ben_kept.jpg", 10, 10, [])
    saved = backup(store.data_dir, tmp_path / "before.db")

    store.delete_user_data(anna.id)  # as Admin > Users > Delete does, audited
    accounts.delete_user(anna.id)
    store.audit(admin.username, "deleted user", "anna.schmidt", "student, 1 upload")
    store.delete_upload(ben_photo)  # ben's own deletion: not audited
    store.add_upload(ben.id, "ben_after.jpg", 10, 10, [])
    store.close()

    again = tmp_path / "again"
    again.mkdir()
    for name in ("engage.db", "engage.db-wal"):
        if (tmp_path / "desk" / name).exists():
            (again / name).write_bytes((tmp_path / "desk" / name).read_bytes())
    r = _cli("restore", "--keep-device-id", "--data-dir", tmp_path / "desk", saved)
    assert r.returncode == 0, r.stderr
    assert "deleted again 1 account(s) (anna.schmidt) and 2 upload(s)" in r.stdout
    users, files, audit = _people(tmp_path / "desk")
    assert users == ["head", "ben.mueller"] and files == ["ben_kept.jpg"]
    assert "deleted user anna.schmidt" in audit
    with contextlib.closing(sqlite3.connect(tmp_path / "desk" / "engage.db")) as conn:
        assert conn.execute("SELECT COUNT(*) FROM upload_faces").fetchone()[0] == 0
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    assert b"anna_selfie" not in (tmp_path / "desk" / "engage.db").read_bytes()  # zeroed, not just unlinked

    for name in ("engage.db", "engage.db-wal", "engage.db-shm", "engage.db.old", "engage.db-wal.old",
                 "engage.db-shm.old"):
        (tmp_path / "desk" / name).unlink(missing_ok=True)
    for copied in again.iterdir():
        (tmp_path / "desk" / copied.name).write_bytes(copied.read_bytes())
    r = _cli("restore", "--keep-device-id", "--bring-back-deleted", "--data-dir", tmp_path / "desk", saved)
    assert r.returncode == 0, r.stderr
    assert "brought back 1 account(s) (anna.schmidt) and 2 upload(s)" in r.stdout and "results only" in r.stdout
    users, files, audit = _people(tmp_path / "desk")
    assert "anna.schmidt" in users and files == ["anna_selfie.jpg", "ben_photo.jpg", "ben_kept.jpg"]
    assert "deleted user anna.schmidt" in audit  # the record of what was done stays, whatever comes back


def test_a_restore_onto_a_new_database_says_deletions_since_are_unknown(tmp_path):
    """On a new card (a database that is not the backup's carried on) nothing can tell what
    was deleted since: nothing is deleted, and the technician is told to check."""
    from edge_app.store.accounts import Accounts

    old = Store(tmp_path / "old")
    Accounts(old).create_user("anna.schmidt", "anna-password-1")
    old.close()
    saved = backup(tmp_path / "old", tmp_path / "old.db")
    Store(tmp_path / "new").close()
    r = _cli("restore", "--keep-device-id", "--data-dir", tmp_path / "new", saved)
    assert r.returncode == 0, r.stderr
    assert "deleted since the backup was made is back" in r.stdout
    assert "anna.schmidt" in _people(tmp_path / "new")[0]


def test_a_backup_restored_on_a_new_card_keeps_no_path_to_pictures_left_on_the_old_one(tmp_path):
    """A dead card replaced: the backup (the database only) names alert frames and kept
    photos that stayed on the old card, and the admin's pages showed a broken picture for
    each. Restored, those rows keep their results without the path; a picture that is
    there (the same card) keeps it."""
    from edge_app.store.accounts import Accounts

    old = Store(tmp_path / "old")
    ann = Accounts(old).create_user("ann", "ann-password-1")
    kept = old.write_image("alerts/a1.jpg", b"\xff\xd8frame")
    old.log_alert(1_800_000_000.0, "Not engaged", kept)
    old.log_alert(1_800_000_100.0, "Not engaged", old.write_image("alerts/a2.jpg", b"\xff\xd8frame"))
    photo = old.add_upload(ann.id, "ann.jpg", 10, 10, [])
    old.execute("UPDATE uploads SET image_path = ? WHERE id = ?", (old.write_image("uploads/ann.jpg", b"jpg"), photo))
    old.close()
    saved = backup(tmp_path / "old", tmp_path / "old.db")
    new = tmp_path / "new"
    Store(new).close()
    (new / "images" / "alerts").mkdir(parents=True, exist_ok=True)
    (new / "images" / kept).write_bytes(b"\xff\xd8frame")  # one frame copied over by hand: it stays shown
    r = _cli("restore", "--keep-device-id", "--data-dir", new, saved)
    assert r.returncode == 0, r.stderr
    assert "1 alert frame(s) and 1 kept photo(s) the backup names are not in" in r.stdout, r.stdout
    with contextlib.closing(sqlite3.connect(new / "engage.db")) as conn:
        assert conn.execute("SELECT snapshot_path FROM alerts ORDER BY t").fetchall() == [(kept,), (None,)]
        assert conn.execute("SELECT filename, image_path FROM uploads").fetchall() == [("ann.jpg", None)]


def test_a_backup_restored_over_another_desks_database_shows_none_of_its_pictures(tmp_path):
    """A desk set up from another's backup: both number their uploads from 1, and the
    backup's upload 1 (mia's) kept the path of this desk's own upload 1, so Admin > Log showed
    ben's face as mia's photo, and deleting hers would delete his file."""
    from edge_app.store.accounts import Accounts

    other = Store(tmp_path / "other")
    mia = Accounts(other).create_user("mia", "mia-password-1")
    photo = other.add_upload(mia.id, "mia.jpg", 10, 10, [])
    other.execute("UPDATE uploads SET image_path = ? WHERE id = ?", (f"uploads/{photo}.jpg", photo))
    other.close()
    saved = backup(tmp_path / "other", tmp_path / "other.db")
    here = Store(tmp_path / "here")
    ben = Accounts(here).create_user("ben", "ben-password-1")
    own = here.add_upload(ben.id, "ben.jpg", 10, 10, [])
    here.execute("UPDATE uploads SET image_path = ? WHERE id = ?", (here.write_image(f"uploads/{own}.jpg", b"ben"), own))
    here.close()
    assert own == photo  # the same number, the same path
    r = _cli("restore", "--keep-device-id", "--data-dir", tmp_path / "here", saved)
    assert r.returncode == 0, r.stderr
    assert "1 picture path(s) of the backup name files of the database in use" in r.stdout, r.stdout
    with contextlib.closing(sqlite3.connect(tmp_path / "here" / "engage.db")) as conn:
        assert conn.execute("SELECT filename, image_path FROM uploads").fetchall() == [("mia.jpg", None)]


def test_pictures_deleted_on_this_card_since_the_backup_are_said_so(tmp_path):
    """On the same card the pictures a backup names and the card no longer has were deleted
    since (by an admin, by retention), not left on another card; one brought back with
    --bring-back-deleted is said once, as brought back without its image."""
    from edge_app.store.accounts import Accounts

    store = Store(tmp_path / "desk")
    ann = Accounts(store).create_user("ann", "ann-password-1")
    store.log_alert(1_800_000_000.0, "Not engaged", store.write_image("alerts/a1.jpg", b"\xff\xd8frame"))
    photo = store.add_upload(ann.id, "ann.jpg", 10, 10, [])
    store.execute("UPDATE uploads SET image_path = ? WHERE id = ?", (store.write_image("uploads/ann.jpg", b"j"), photo))
    saved = backup(store.data_dir, tmp_path / "before.db")
    assert store.delete_alert_snapshots(None) == 1
    store.delete_upload(photo)
    store.close()
    r = _cli("restore", "--keep-device-id", "--bring-back-deleted", "--data-dir", tmp_path / "desk", saved)
    assert r.returncode == 0, r.stderr
    assert "brought back 1 upload(s)" in r.stdout and "its kept image was deleted with it" in r.stdout
    assert "1 alert frame(s) and 0 kept photo(s) the backup names were deleted since it was made" in r.stdout, r.stdout
    assert "stayed where it was made" not in r.stdout


def test_a_restore_refuses_a_newer_releases_backup_and_a_database_that_is_no_backup(store, tmp_path, capsys):
    """A backup with a newer schema was restored (exit 0) and the device then would not start;
    a database with a settings table but no users was blamed on the database in use ("the
    database in use could not be read ... no such table: users"). Both are refused first."""
    args = ["--data-dir", str(store.data_dir), "--config", str(_empty(tmp_path))]
    store.log_alert(1_780_000_000.0, "Not engaged")
    store.close()
    newer = backup(store.data_dir, tmp_path / "newer.db")
    with contextlib.closing(sqlite3.connect(newer)) as conn:
        conn.execute("PRAGMA user_version = 9999")
    other = tmp_path / "other.db"
    with contextlib.closing(sqlite3.connect(other)) as conn, conn:
        conn.execute("CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT)")
    before = sorted(os.listdir(store.data_dir))
    live = (store.data_dir / "engage.db").read_bytes()
    assert main(["restore", str(newer), *args]) == 2
    err = capsys.readouterr().err
    assert "was made by a newer release of engage-edge" in err and "upgrade engage-edge first" in err, err
    assert main(["restore", str(other), *args]) == 2
    err = capsys.readouterr().err
    assert "is not an engage-edge database (it has no alerts, uploads, users table)" in err, err
    assert "database in use" not in err
    assert main(["restore", str(tmp_path), *args]) == 2
    assert f"{tmp_path} is a folder: name the backup file in it" in capsys.readouterr().err
    assert sorted(os.listdir(store.data_dir)) == before and (store.data_dir / "engage.db").read_bytes() == live


def test_a_backup_from_before_the_audit_table_is_restored_and_keeps_the_audit_since(tmp_path, capsys):
    """A first release's backup (schema 4, before the audit table), restored on the desk it was
    made on after an upgrade, was refused, "no such table: audit", though `engage-edge backup`
    wrote it: the audit rows since were carried into a copy without the table. The copy is
    brought to this release's schema first."""
    from edge_app.store.schema import MIGRATIONS

    old = tmp_path / "first-release.db"
    with contextlib.closing(sqlite3.connect(old)) as conn:
        for number in range(1, 5):
            conn.executescript(f"BEGIN; {MIGRATIONS[number - 1]}; PRAGMA user_version = {number}; COMMIT;")
        with conn:
            conn.execute("INSERT INTO users(username, password_hash, role, created) VALUES ('head', 'x', 'admin', 1.0)")
            conn.execute("INSERT INTO alerts(t, level) VALUES (1780000000.0, 'Not engaged')")
    data = tmp_path / "desk"
    data.mkdir()
    (data / "engage.db").write_bytes(old.read_bytes())
    upgraded = Store(data)  # the desk's database carried on to this release
    upgraded.audit("head", "deleted user", "anna.schmidt", "student, 1 upload")
    upgraded.close()
    args = ["--keep-device-id", "--data-dir", str(data), "--config", str(_empty(tmp_path))]
    assert main(["restore", str(old), *args]) == 0, capsys.readouterr().err
    restored = Store(data)
    try:
        assert restored.query("SELECT level FROM alerts")[0][0] == "Not engaged"
        assert [tuple(r) for r in restored.query("SELECT action, target FROM audit")] == [("deleted user", "anna.schmidt")]
    finally:
        restored.close()


def test_an_old_file_from_an_earlier_restore_is_never_said_to_be_deleted_while_the_database_in_use_is_broken(
        store, tmp_path, capsys):
    """With engage.db.old there, restore said "delete it once the database in use works",
    even when the database in use does not open: the .old then holds the only good records."""
    args = ["--data-dir", str(store.data_dir), "--config", str(_empty(tmp_path))]
    saved = backup(store.data_dir, tmp_path / "b.db")
    store.close()
    db = store.data_dir / "engage.db"
    db.with_name("engage.db.old").write_bytes(db.read_bytes())
    assert main(["restore", str(saved), *args]) == 2
    err = capsys.readouterr().err
    assert "first check that the database in use works" in err and "nothing was changed" in err, err
    db.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4080)  # a database in use that does not open
    assert main(["restore", str(saved), *args]) == 2
    err = capsys.readouterr().err
    assert "the database in use does not open" in err and "keep them" in err and "delete" not in err, err
    assert "mv -f engage.db.old engage.db" in err


def test_a_since_in_the_future_is_warned_of_and_until_has_no_end_by_default(store, tmp_path, capsys):
    """`--since 2062-01-01` (a mistyped year) wrote a header and no rows, exit 0, with no word;
    and --until's help said "(default: now)" while the export has no end: a row timed after
    now (a clock set wrong, then right) is exported."""
    args = ["--data-dir", str(store.data_dir), "--config", str(_empty(tmp_path))]
    later = time.time() + 3600
    store.log_alert(later, "Not engaged")
    out = tmp_path / "log.csv"
    assert main(["export", "--since", "2020-01-01", "--out", str(out), *args]) == 0
    assert "alert" in _csv_kinds(out)  # no end: the row an hour from now is there
    assert "warning" not in capsys.readouterr().err
    assert main(["export", "--since", dt.date.fromtimestamp(later + 86400 * 400).isoformat(), "--out", str(out),
                 *args]) == 0
    assert "is in the future: nothing has been logged since then, so no rows (a mistyped year?)" in \
        capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["export", "--help"])
    export_help = " ".join(capsys.readouterr().out.split())
    assert "default: now" not in export_help and "(default: no end, every row from --since on)" in export_help
