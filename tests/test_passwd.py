"""`engage-edge passwd`: a lost password is set again on the machine itself, while the
service runs, keeping every record (the README's way back in; before it, a lost admin
password meant moving the whole data directory away)."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import requests
from conftest import ADMIN_PASSWORD, login, skip_unless_ci

from edge_app.store.accounts import Accounts
from edge_app.store.database import DB_NAME, Store

SCRIPT = Path(sys.executable).parent / "engage-edge"
COMMAND = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "edge_app"]
NEW = "a-new-pass-phrase-7"


def passwd(*args, stdin: str) -> subprocess.CompletedProcess:
    return subprocess.run([*COMMAND, "passwd", *map(str, args)], input=stdin, capture_output=True, text=True,
                          timeout=60)


def test_a_lost_admin_password_is_set_again_while_the_device_runs(make_appliance, cfg):
    appliance = make_appliance(with_loop=False)
    appliance.accounts.create_user("sam", "sams-own-pass-1", "student")
    old_session = login(appliance.url)
    assert old_session.get(f"{appliance.url}/api/admin/today", timeout=10).status_code == 200

    r = passwd("admin", "--data-dir", cfg.store.data_dir, "--stdin", stdin=NEW + "\n")
    assert r.returncode == 0, r.stderr
    assert "'admin'" in r.stdout and str(cfg.store.data_dir) in r.stdout

    assert login(appliance.url, "admin", NEW).csrf  # the running device takes the new password at once
    old = requests.post(f"{appliance.url}/api/login", json={"username": "admin", "password": ADMIN_PASSWORD},
                        timeout=10)
    assert old.status_code == 401
    assert old_session.get(f"{appliance.url}/api/admin/today", timeout=10).status_code == 401  # logged out
    assert login(appliance.url, "sam", "sams-own-pass-1").csrf  # nothing else was touched
    audit = appliance.store.query("SELECT actor, action, target FROM audit")
    assert [(a["action"], a["target"]) for a in audit] == [("set password of", "admin")]
    assert audit[0]["actor"].startswith("command line")


def test_a_temporary_password_must_be_replaced_at_the_next_log_in(make_appliance, cfg):
    """A technician hands a student who forgot theirs a password on a note: ``--temporary``."""
    appliance = make_appliance(with_loop=False)
    appliance.accounts.create_user("sam", "sams-own-pass-1", "student")
    r = passwd("sam", "--data-dir", cfg.store.data_dir, "--temporary", stdin=NEW + "\n")
    assert r.returncode == 0, r.stderr
    assert "choose their own at the next log-in" in r.stdout
    sam = requests.post(f"{appliance.url}/api/login", json={"username": "sam", "password": NEW}, timeout=10)
    assert sam.status_code == 200 and sam.json()["must_change_password"] is True
    r = requests.get(f"{appliance.url}/api/state", cookies=sam.cookies, timeout=10)
    assert r.status_code == 403 and "/account" in r.json()["error"]
    detail = appliance.store.query("SELECT detail FROM audit WHERE target = 'sam'")[0]["detail"]
    assert detail == "engage-edge passwd, temporary password"
    r = passwd("sam", "--data-dir", cfg.store.data_dir, stdin="sams-own-again-2\n")  # without: theirs to keep
    assert r.returncode == 0, r.stderr and "choose their own" not in r.stdout
    sam = requests.post(f"{appliance.url}/api/login", json={"username": "sam", "password": "sams-own-again-2"},
                        timeout=10)
    assert sam.status_code == 200 and sam.json()["must_change_password"] is False


def test_a_waiting_first_start_password_is_removed_once_replaced(tmp_path, monkeypatch):
    monkeypatch.delenv("ENGAGE_ADMIN_PASSWORD", raising=False)
    store = Store(tmp_path)
    try:
        generated = Accounts(store).ensure_admin()
    finally:
        store.close()
    kept = tmp_path / "first-admin-password.txt"
    assert generated and kept.exists()
    r = passwd("admin", "--data-dir", tmp_path, stdin=NEW + "\n")  # a pipe: read like --stdin
    assert r.returncode == 0, r.stderr
    assert not kept.exists()  # it would no longer log in: no stale copy left lying around
    store = Store(tmp_path)
    try:
        admin = Accounts(store).authenticate("admin", NEW)
        assert admin and not admin.must_change_password  # chosen by the technician: not asked again
        assert not Accounts(store).authenticate("admin", generated)
    finally:
        store.close()


def test_refusals_say_why_and_change_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("ENGAGE_ADMIN_PASSWORD", ADMIN_PASSWORD)
    missing = passwd("admin", "--data-dir", tmp_path / "nowhere", stdin=NEW + "\n")
    assert missing.returncode == 2
    assert "no engage-edge database" in missing.stderr and "--data-dir" in missing.stderr
    assert not (tmp_path / "nowhere").exists()  # a mistyped directory is not made into a fresh device
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / DB_NAME).write_bytes(b"not a database, a half-copied file" * 100)
    broken = passwd("admin", "--data-dir", tmp_path / "broken", stdin=NEW + "\n")
    assert broken.returncode == 2, broken.stderr  # a database it cannot use, as `run` exits for the same file
    assert "Restore a backup" in broken.stderr and "Traceback" not in broken.stderr

    store = Store(tmp_path)
    try:
        Accounts(store).ensure_admin()
    finally:
        store.close()
    unknown = passwd("bob", "--data-dir", tmp_path, stdin=NEW + "\n")
    assert unknown.returncode == 1 and "no user 'bob'" in unknown.stderr and "admin" in unknown.stderr
    weak = passwd("admin", "--data-dir", tmp_path, stdin="short\n")
    assert weak.returncode == 1 and "at least 8 characters" in weak.stderr and "nothing changed" in weak.stderr
    common = passwd("admin", "--data-dir", tmp_path, stdin="password\n")
    assert common.returncode == 1 and "nothing changed" in common.stderr
    for r in (unknown, weak, common):
        assert "Traceback" not in r.stderr
    store = Store(tmp_path)
    try:
        assert Accounts(store).authenticate("admin", ADMIN_PASSWORD)
        assert not store.query("SELECT 1 FROM audit")
    finally:
        store.close()


def test_run_as_root_it_works_as_the_database_owner(monkeypatch):
    """A technician runs it with sudo; SQLite's journal files it creates must belong to the
    service's user, or the service could no longer open its own database."""
    if os.geteuid() != 0:
        skip_unless_ci("acting as the database's owner needs root (CI runs as root)")
    monkeypatch.setenv("ENGAGE_ADMIN_PASSWORD", ADMIN_PASSWORD)
    nobody = 65534
    # a service's data directory is reachable by its user: not under pytest's root-only tmp_path
    with tempfile.TemporaryDirectory(dir="/tmp") as top:
        data = Path(top) / "data"
        store = Store(data)
        try:
            Accounts(store).ensure_admin()
        finally:
            store.close()
        for path in [Path(top), data, *data.rglob("*")]:
            os.chown(path, nobody, nobody)
        probe = subprocess.run([sys.executable, "-c", "import os, sys; from pathlib import Path; "
                                "from edge_app.cli.tech import _become_owner; _become_owner(Path(sys.argv[1])); "
                                "print(os.getuid(), os.getgid())", str(data / "engage.db")],
                               capture_output=True, text=True, timeout=60)
        assert probe.stdout.split() == [str(nobody), str(nobody)], probe.stderr
        (data / "images").rmdir()  # the store makes it again: anything the command creates is the service's
        r = passwd("admin", "--data-dir", data, stdin=NEW + "\n")
        assert r.returncode == 0, r.stderr
        owners = {p.name: p.stat().st_uid for p in data.iterdir()}
        assert set(owners.values()) == {nobody}, owners


def test_the_password_cannot_be_the_user_name(tmp_path, monkeypatch):
    monkeypatch.setenv("ENGAGE_ADMIN_PASSWORD", ADMIN_PASSWORD)
    store = Store(tmp_path)
    try:
        Accounts(store).ensure_admin()
        Accounts(store).create_user("sam.jones", "sams-own-pass-1")
    finally:
        store.close()
    r = passwd("sam.jones", "--data-dir", tmp_path, stdin="Sam.Jones\n")
    assert r.returncode == 1 and "must not be the user name" in r.stderr and "nothing changed" in r.stderr
    store = Store(tmp_path)
    try:
        assert Accounts(store).authenticate("sam.jones", "sams-own-pass-1")
    finally:
        store.close()


def role(*args) -> subprocess.CompletedProcess:
    return subprocess.run([*COMMAND, "role", *map(str, args)], capture_output=True, text=True, timeout=60)


def test_a_role_is_changed_on_the_machine_keeping_the_data_and_the_last_admin(make_appliance, cfg):
    """`engage-edge role USER ROLE`, beside passwd: the Users page's Change role for a device
    whose admins are gone; a demoted admin's open session ends at once, as on that page."""
    appliance = make_appliance(with_loop=False)
    appliance.accounts.create_user("bo", "bos-own-pass-1", "admin")
    sam = appliance.accounts.create_user("sam", "sams-own-pass-1", "student")
    appliance.store.add_upload(sam.id, "p.jpg", 64, 64, [])
    bo_session = login(appliance.url, "bo", "bos-own-pass-1")
    data = cfg.store.data_dir

    r = role("sam", "instructor", "--data-dir", data)
    assert r.returncode == 0, r.stderr
    assert "the role of 'sam' is now instructor" in r.stdout and "logged out" not in r.stdout
    assert appliance.accounts.find("sam").role == "instructor"
    assert appliance.store.query("SELECT COUNT(*) FROM uploads WHERE user_id = ?", (sam.id,))[0][0] == 1

    r = role("bo", "student", "--data-dir", data)
    assert r.returncode == 0 and "their sessions were logged out" in r.stdout, r.stderr
    assert bo_session.get(f"{appliance.url}/api/admin/today", timeout=10).status_code == 401

    last = role("admin", "student", "--data-dir", data)
    assert last.returncode == 1 and "admin is the last admin" in last.stderr and "nothing changed" in last.stderr
    unknown = role("nobody", "admin", "--data-dir", data)
    assert unknown.returncode == 1 and "no user 'nobody'" in unknown.stderr
    bad = role("sam", "overlord", "--data-dir", data)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
    for r in (last, unknown, bad):
        assert "Traceback" not in r.stderr
    assert appliance.accounts.find("admin").is_admin
    audit = appliance.store.query("SELECT actor, action, target, detail FROM audit ORDER BY id")
    assert [(a["action"], a["target"], a["detail"]) for a in audit] == [
        ("changed role of", "sam", "student to instructor, engage-edge role"),
        ("changed role of", "bo", "admin to student, engage-edge role")]
    assert audit[0]["actor"].startswith("command line")


def adduser(*args, stdin: str) -> subprocess.CompletedProcess:
    return subprocess.run([*COMMAND, "adduser", *map(str, args)], input=stdin, capture_output=True, text=True,
                          timeout=60)


def test_an_account_is_made_on_the_machine_for_a_provisioning_script(make_appliance, cfg):
    """Provisioning thirty desks, a school's script makes each desk's instructor account on the
    machine (the Users page's Add, one desk at a time, was the only way), audited as Add is."""
    appliance = make_appliance(with_loop=False)
    data = cfg.store.data_dir
    r = adduser("ms.lee", "--role", "instructor", "--temporary", "--data-dir", data, stdin=NEW + "\n")
    assert r.returncode == 0, r.stderr
    assert "instructor 'ms.lee' added" in r.stdout and "choose their own password" in r.stdout
    lee = requests.post(f"{appliance.url}/api/login", json={"username": "ms.lee", "password": NEW}, timeout=10)
    assert lee.status_code == 200 and lee.json()["must_change_password"] is True  # the running device knows her
    assert appliance.accounts.find("ms.lee").role == "instructor"
    again = adduser("MS.LEE", "--data-dir", data, stdin=NEW + "\n")  # names are one whatever their case
    assert again.returncode == 1 and "has an account" in again.stderr and "nothing changed" in again.stderr
    weak = adduser("sam", "--data-dir", data, stdin="sam\n")
    assert weak.returncode == 1 and "refused:" in weak.stderr and appliance.accounts.find("sam") is None
    spaced = adduser("Anna Schmidt", "--data-dir", data, stdin=NEW + "\n")
    assert spaced.returncode == 1 and "refused:" in spaced.stderr
    for r in (again, weak, spaced):
        assert "Traceback" not in r.stderr
    audit = appliance.store.query("SELECT actor, action, target, detail FROM audit")
    assert [(a["action"], a["target"], a["detail"]) for a in audit] == [
        ("created user", "ms.lee", "role instructor, engage-edge adduser, temporary password")]
    assert audit[0]["actor"].startswith("command line")


def test_on_a_full_disk_the_user_commands_say_what_to_do_and_give_up_the_reserve(tmp_path):
    """A full card is when a technician reaches for `passwd` (the admin cannot log in to free
    space), and it ended in sqlite3's "database or disk is full" traceback. The command says
    so, nothing changed, and gives up the room the running service keeps, so it works when run
    again; without a reserve, it says what to free."""
    from conftest import fill_up, mounted_tmpfs

    with mounted_tmpfs(tmp_path / "card", "4m") as card:
        data = card / "data"
        store = Store(data)
        Accounts(store).create_user("admin", "the-old-pass-1", "admin")
        assert store.keep_reserve(1 << 20)
        store.close()
        fill_up(card / "filler")

        r = passwd("admin", "--data-dir", data, "--stdin", stdin=NEW + "\n")
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
        assert "the disk is full" in r.stderr and "run the command again now" in r.stderr and "nothing changed" in r.stderr
        assert not (data / "reserve").exists()
        r = passwd("admin", "--data-dir", data, "--stdin", stdin=NEW + "\n")
        assert r.returncode == 0, r.stderr
        store = Store(data)
        try:
            assert Accounts(store).authenticate("admin", NEW) is not None
        finally:
            store.close()

        (card / "filler").unlink()  # room again, and the service keeps its reserve
        running = Store(data)  # as the service holds it: the write-ahead log and its index are there
        try:
            assert running.keep_reserve(1 << 20)
            fill_up(card / "filler-2")
            r = passwd("admin", "--data-dir", data, "--stdin", stdin="a-third-pass-phrase-9\n")  # opens, cannot write
            assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
            assert "run the command again now" in r.stderr and "nothing changed" in r.stderr, r.stderr
            assert not (data / "reserve").exists()
        finally:
            running.close()
        fill_up(card / "filler-3")  # and now no reserve is left
        r = subprocess.run([*COMMAND, "adduser", "ines", "--role", "instructor", "--data-dir", str(data), "--stdin"],
                           input="ines-pass-phrase-1\n", capture_output=True, text=True, timeout=60)
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
        assert "is full" in r.stderr and "free some space" in r.stderr and "nothing changed" in r.stderr


def test_no_password_given_is_said_and_changes_nothing(tmp_path, monkeypatch, capsys):
    """Ctrl-D at the password prompt (getpass raises EOFError) printed an EOFError traceback;
    an empty or closed standard input is the same: no password came. In-process: getpass is
    given the Ctrl-D it reads from the terminal."""
    import getpass
    import io

    from edge_app.cli import main

    monkeypatch.setenv("ENGAGE_ADMIN_PASSWORD", ADMIN_PASSWORD)
    store = Store(tmp_path)
    try:
        Accounts(store).ensure_admin()
    finally:
        store.close()

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    def ctrl_d(prompt: str = "") -> str:
        raise EOFError

    monkeypatch.setattr(getpass, "getpass", ctrl_d)
    runs = [(Terminal(), ["passwd", "admin"]), (Terminal(), ["adduser", "ines"]), (io.StringIO(""), ["passwd", "admin"]),
            (io.StringIO(""), ["adduser", "ines", "--stdin"]), (None, ["passwd", "admin", "--stdin"])]
    for stdin, command in runs:
        monkeypatch.setattr(sys, "stdin", stdin)
        assert main([*command, "--data-dir", str(tmp_path)]) == 1, command
        err = capsys.readouterr().err
        assert "no password given" in err and "nothing changed" in err and "Traceback" not in err, err
    store = Store(tmp_path)
    try:
        assert Accounts(store).authenticate("admin", ADMIN_PASSWORD)
        assert Accounts(store).find("ines") is None
    finally:
        store.close()
