"""Accounts on a real SQLite store, without a web server: what the users table keeps."""
from __future__ import annotations

import sqlite3

import pytest

from edge_app.store.accounts import Accounts, AuthError, hash_password
from edge_app.store.database import DB_NAME, Store
from edge_app.store.login_throttle import LoginThrottled, ThrottlePolicy
from edge_app.store.schema import MIGRATIONS

RELEASED_SCHEMA = 11  # the schema of the release before users got AUTOINCREMENT (migration 13)


def test_a_deleted_accounts_id_is_never_given_again_also_in_a_database_from_the_last_release(tmp_path):
    """Without AUTOINCREMENT, deleting the account with the highest id gave that id to the
    next account made, and sessions, audit lines and a saved privacy pause name ids. A
    database from the last release is migrated once, keeping every row, its id, the name's
    uniqueness and the foreign keys of sessions and uploads."""
    data = tmp_path / "data"
    data.mkdir()
    conn = sqlite3.connect(data / DB_NAME)
    with conn:
        for number, sql in enumerate(MIGRATIONS[:RELEASED_SCHEMA], 1):
            conn.executescript(f"{sql}; PRAGMA user_version = {number};")
        conn.execute("INSERT INTO users(id, username, password_hash, role, created, last_login, must_change_password) "
                     "VALUES (1, 'admin', ?, 'admin', 10.0, 20.0, 0)", (hash_password("admin-pw-123"),))
        conn.execute("INSERT INTO users(id, username, password_hash, role, disabled, created, must_change_password) "
                     "VALUES (2, 'Ann', ?, 'student', 1, 11.0, 1)", (hash_password("ann-pw-1234"),))
        conn.execute("INSERT INTO sessions(token_hash, user_id, csrf, created, last_seen, confirmed) "
                     "VALUES ('t', 2, 'c', 1, 1, 1)")
        conn.execute("INSERT INTO uploads(id, user_id, created, filename, width, height, face_count) "
                     "VALUES (4, 2, 1.0, 'p.jpg', 10, 10, 0)")
        before = [tuple(r) for r in conn.execute("SELECT * FROM users ORDER BY id")]
    conn.close()

    store = Store(data)
    try:
        assert store.schema_version() == len(MIGRATIONS)
        assert [tuple(r)[:8] for r in store.query("SELECT * FROM users ORDER BY id")] == before
        accounts = Accounts(store)
        assert accounts.authenticate("admin", "admin-pw-123").id == 1
        with pytest.raises(AuthError, match="already exists"):  # the name stays unique in any letter case
            accounts.create_user("ann", "another-pw-5678")
        assert store.query("PRAGMA foreign_key_check") == []
        for table in ("sessions", "uploads"):
            assert [(r["table"], r["on_delete"]) for r in store.query(f"PRAGMA foreign_key_list({table})")] \
                == [("users", "CASCADE")]

        accounts.delete_user(2)  # the highest id; its session and upload go with it
        assert store.query("SELECT COUNT(*) FROM sessions")[0][0] == 0
        assert store.query("SELECT COUNT(*) FROM uploads")[0][0] == 0
        assert accounts.create_user("ben", "ben-pw-12345").id == 3
    finally:
        store.close()

    again = Store(data)  # the next start migrates nothing
    try:
        assert again.schema_version() == len(MIGRATIONS)
        assert [r["username"] for r in again.query("SELECT username FROM users ORDER BY id")] == ["admin", "ben"]
        accounts = Accounts(again)
        accounts.delete_user(3)
        assert accounts.create_user("cleo", "cleo-pw-12345").id == 4
    finally:
        again.close()


def test_past_the_ceiling_over_all_addresses_the_refusal_says_what_works_and_not_whether_the_name_exists(tmp_path):
    """The owner of a name a class is guessing from many addresses, whose own try from here
    failed once, was told only to wait 30 seconds, which others' next guess starts over.
    It names what works; a name no account has gets the very same words."""
    store = Store(tmp_path)
    try:
        accounts = Accounts(store, throttle=ThrottlePolicy(slow_after=1000, slow_after_address=1000, lock_after_user=100,
                                                           lock_after_address=1000, lock_after_user_global=4,
                                                           base_delay_s=30, max_delay_s=60))
        accounts.create_user("sam", "sam-pw-12345")
        said = []
        for name in ("sam", "nobody"):
            for guess in range(4):  # the ceiling, from four addresses
                assert accounts.login(name, f"guess-{guess}-xx", f"10.0.0.{2 + guess}") is None
            with pytest.raises(LoginThrottled) as refused:  # the owner, from an address that guessed
                accounts.login(name, "sam-pw-12345", "10.0.0.2")
            said.append(str(refused.value))
        assert said[0] == said[1]
        assert "many addresses" in said[0] and "longer while others keep guessing" in said[0]
        assert "browser that has logged in as this user before" in said[0]
        assert "new password on the Users page" in said[0] and "engage-edge passwd" in said[0]
        accounts.set_password(accounts.find("sam").id, "sam-new-pw-678")  # as the refusal says: that lifts it
        assert accounts.login("sam", "sam-new-pw-678", "10.0.0.2").username == "sam"
    finally:
        store.close()


def test_a_name_needs_a_letter_or_digit_and_a_password_must_not_be_the_name(tmp_path):
    """".." and "--" passed the character rule (read as a path, or as nothing, in the log and
    audit); a password equal to the name, in any case, is the first one a guesser types."""
    store = Store(tmp_path)
    try:
        accounts = Accounts(store)
        for name in ("..", "--", "__", ".-_.", "..........."):
            with pytest.raises(AuthError, match="at least one a letter or digit") as refused:
                accounts.create_user(name, "a-good-pass-phrase")
            assert refused.value.field == "username"
        with pytest.raises(AuthError, match=r"line 2 \('\.\.'\): .*at least one a letter or digit"):
            accounts.create_students(["mia.k", ".."])
        assert accounts.create_user("a.", "a-good-pass-phrase").username == "a."  # one letter is enough
        with pytest.raises(AuthError, match="must not be the user name"):
            accounts.create_user("Quentin.Blake", "quentin.BLAKE")
        ann = accounts.create_user("annabelle", "a-good-pass-phrase")
        with pytest.raises(AuthError, match="must not be the user name"):
            accounts.set_password(ann.id, "ANNABELLE")
        assert accounts.authenticate("annabelle", "a-good-pass-phrase")  # nothing changed
        token, _ = accounts.start_session(ann)
        with pytest.raises(AuthError, match="must not be the user name"):  # their own change, through set_password
            accounts.change_password(ann, "a-good-pass-phrase", "AnnaBelle", session=token)
        assert accounts.find("quentin.blake") is None
    finally:
        store.close()


def test_a_class_lists_generated_passwords_are_never_a_students_name(tmp_path, monkeypatch):
    """A generated first password passes the rules for its student: drawn again when it
    happens to be the name (a list may hold "abcd-efgh-jkmn")."""
    from edge_app.store import accounts as accounts_mod

    drawn = iter(["abcd-efgh-jkmn", "wxyz-2345-6789"])
    monkeypatch.setattr(accounts_mod, "temporary_password", lambda: next(drawn))
    store = Store(tmp_path)
    try:
        ((user, password),) = Accounts(store).create_students(["ABCD-efgh-jkmn"])
        assert password == "wxyz-2345-6789" and Accounts(store).authenticate(user.username, password)
    finally:
        store.close()


def test_the_last_enabled_admin_is_neither_disabled_nor_deleted(tmp_path):
    """Only the pages counted the admins, before the change: two admins disabling each other
    at once both passed the count and left the device with none. The change itself refuses."""
    store = Store(tmp_path)
    try:
        accounts = Accounts(store)
        ann = accounts.create_user("ann", "anns-pass-123", "admin")
        bob = accounts.create_user("bob", "bobs-pass-123", "admin")
        accounts.set_disabled(ann.id, True)  # bob is still there
        with pytest.raises(AuthError, match="bob is the last admin and cannot be disabled"):
            accounts.set_disabled(bob.id, True)
        with pytest.raises(AuthError, match="bob is the last admin and cannot be deleted"):
            accounts.delete_user(bob.id)
        assert not accounts.get(bob.id).disabled
        accounts.delete_user(ann.id)  # a disabled admin manages nothing: it may go
        assert accounts.get(ann.id) is None
        sam = accounts.create_user("sam", "sams-pass-123")
        accounts.set_disabled(sam.id, True)  # students come and go as before
        accounts.delete_user(sam.id)
        assert [u.username for u in accounts.list_users()] == ["bob"]
    finally:
        store.close()


def test_a_role_change_keeps_the_data_ends_sessions_when_rights_shrink_and_keeps_the_last_admin(tmp_path):
    store = Store(tmp_path)
    try:
        accounts = Accounts(store)
        admin = accounts.create_user("admin", "admin-pass-123", "admin")
        sam = accounts.create_user("sam", "sams-pass-123")
        sam_token, _ = accounts.start_session(sam)
        assert accounts.set_role(sam.id, "instructor").role == "instructor"
        assert accounts.session_user(sam_token) is not None  # more rights: still logged in
        assert accounts.set_role(sam.id, "admin").is_admin
        assert accounts.session_user(sam_token)[0].is_admin
        admin_token, _ = accounts.start_session(admin)
        accounts.set_role(admin.id, "instructor")  # sam is an admin: admin may go
        assert accounts.session_user(admin_token) is None  # fewer rights: logged out at once
        assert accounts.session_user(sam_token) is not None
        with pytest.raises(AuthError, match="sam is the last admin: make another user an admin first"):
            accounts.set_role(sam.id, "student")
        accounts.set_role(admin.id, "admin")
        accounts.set_disabled(admin.id, True)  # a disabled admin manages nothing: sam is still the last
        with pytest.raises(AuthError, match="last admin"):
            accounts.set_role(sam.id, "student")
        assert accounts.get(sam.id).is_admin and accounts.session_user(sam_token) is not None
        with pytest.raises(AuthError, match="the role must be one of"):
            accounts.set_role(sam.id, "superuser")
        with pytest.raises(AuthError, match="no longer exists"):
            accounts.set_role(9999, "student")
    finally:
        store.close()


def test_passwords_are_hashed_on_a_few_threads_of_their_own(monkeypatch):
    """Each scrypt takes 16 MB, and glibc keeps freed memory in the arena of the thread that
    used it: hashed on whichever of the 96 web threads took the log-in, the service kept
    16 MB more in arena after arena (400 log-ins, two at a time on 96 threads: 15 -> 480 MB,
    past the unit's MemoryMax=600M with the rest of the service on a 4-core Pi)."""
    import hashlib
    import threading

    from edge_app.store import accounts

    real, used, lock = hashlib.scrypt, set(), threading.Lock()

    def scrypt(*args, **kwargs):  # the real one, noting which thread ran it
        with lock:
            used.add(threading.get_ident())
        return real(*args, **kwargs)

    monkeypatch.setattr(hashlib, "scrypt", scrypt)
    stored = hash_password("ann-pw-1234")
    callers, results = set(), []

    def log_in() -> None:
        with lock:
            callers.add(threading.get_ident())
        results.append(accounts.verify_password("ann-pw-1234", stored))

    threads = [threading.Thread(target=log_in) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [True] * 8
    assert len(used) <= accounts.HASH_THREADS and not used & callers, (used, callers)
