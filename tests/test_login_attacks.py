"""Log-in attacks from the security review (issue 14 items 5, 6, 9 and the password
policy of 12), each over real HTTP on loopback against a real SQLite store.

Different client addresses are real: Linux routes all of 127.0.0.0/8 to loopback, so a
client socket bound to 127.0.0.2 reaches the server on 127.0.0.1 as another peer."""
from __future__ import annotations

import http.client
import json
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from http.cookies import SimpleCookie

import pytest

from edge_app.store import accounts as accounts_mod
from edge_app.store.accounts import Accounts, AuthError
from edge_app.store.database import Store
from edge_app.store.login_throttle import LoginThrottled, ThrottlePolicy
from tests.conftest import ADMIN_PASSWORD, login, wait_for

STUDENT_PW = "student-pw-123"


@pytest.fixture
def web(make_appliance):
    """The web app without the capture loop: these tests only log in."""
    return make_appliance(with_loop=False)


def login_from(appliance, address: str, username: str, password: str) -> int:
    """POST /login from a client socket bound to ``address``; returns the status code."""
    port = appliance.server.port
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30, source_address=(address, 0))
    try:
        body = urllib.parse.urlencode({"username": username, "password": password, "next": "/"})
        conn.request("POST", "/login", body, {"Content-Type": "application/x-www-form-urlencoded"})
        return conn.getresponse().status
    finally:
        conn.close()


def log_in_from(appliance, address: str, username: str, password: str,
                known: str | None = None) -> tuple[int, str | None, str]:
    """POST /api/login from ``address`` with a browser's known-browser cookie (or none):
    (status, the known-browser cookie it was given, the error text)."""
    conn = http.client.HTTPConnection("127.0.0.1", appliance.server.port, timeout=30, source_address=(address, 0))
    try:
        headers = {"Content-Type": "application/json", **({"Cookie": f"ee_session_known={known}"} if known else {})}
        conn.request("POST", "/api/login", json.dumps({"username": username, "password": password}), headers)
        r = conn.getresponse()
        cookies = SimpleCookie()
        for header in r.headers.get_all("Set-Cookie") or []:
            cookies.load(header)
        given = cookies["ee_session_known"].value if "ee_session_known" in cookies else None
        body = r.read()
        return r.status, given, json.loads(body).get("error", "") if r.status != 200 else ""
    finally:
        conn.close()


def test_parallel_guesses_are_all_counted_before_any_password_is_checked(web):
    web.accounts.create_user("sam", STUDENT_PW, "student")
    web.accounts.throttle = ThrottlePolicy(slow_after=1000, slow_after_address=1000, lock_after_user=8,
                                           lock_after_address=1000, lock_s=600)
    guesses = [f"wrong-guess-{i}" for i in range(39)] + [STUDENT_PW]
    with ThreadPoolExecutor(max_workers=20) as pool:
        statuses = list(pool.map(lambda pw: login_from(web, "127.0.0.1", "sam", pw), guesses))
    checked = [s for s in statuses if s in (401, 303)]  # 303: the right password got in
    assert len(checked) <= 8, f"{len(checked)} passwords were checked with a limit of 8: {statuses}"
    assert statuses.count(429) >= 32
    counted = web.store.query("SELECT COUNT(*) FROM login_failures WHERE key = 'user:sam|127.0.0.1'")[0][0]
    assert counted == statuses.count(401)


def test_guesses_from_another_address_do_not_lock_out_the_real_user(web):
    web.accounts.create_user("sam", STUDENT_PW, "student")
    web.accounts.throttle = ThrottlePolicy(slow_after=1000, slow_after_address=1000, lock_after_user=4,
                                           lock_after_address=1000, lock_s=600, lock_after_user_global=50)
    for i in range(6):
        login_from(web, "127.0.0.2", "sam", f"attacker-{i}")
    assert login_from(web, "127.0.0.2", "sam", STUDENT_PW) == 429  # the attacker's address is locked for sam
    assert login_from(web, "127.0.0.1", "sam", STUDENT_PW) == 303  # sam at their own desk is not


def test_a_global_ceiling_slows_a_guesser_who_moves_between_addresses(web):
    web.accounts.create_user("sam", STUDENT_PW, "student")
    web.accounts.throttle = ThrottlePolicy(slow_after=1000, slow_after_address=1000, lock_after_user=4,
                                           lock_after_address=1000, lock_s=600, lock_after_user_global=9,
                                           base_delay_s=30)
    for i in range(9):  # three failures from each of three addresses: under every per-address limit
        assert login_from(web, f"127.0.0.{2 + i % 3}", "sam", f"attacker-{i}") == 401
    assert login_from(web, "127.0.0.2", "sam", STUDENT_PW) == 429
    # a fresh address gets one check, and its wrong guess makes it wait like the rest
    assert login_from(web, "127.0.0.9", "sam", "attacker-9") == 401
    assert login_from(web, "127.0.0.9", "sam", STUDENT_PW) == 429
    # parallel guesses from a fresh address get that one check between them
    with ThreadPoolExecutor(max_workers=10) as pool:
        statuses = list(pool.map(lambda i: login_from(web, "127.0.0.10", "sam", f"parallel-{i}"), range(10)))
    assert sorted(statuses) == [401] + [429] * 9, statuses
    assert "sam" not in web.accounts.locked_users()  # slowed, not locked: the Users page has nothing to unlock


def test_guesses_from_many_addresses_cannot_lock_the_admin_out_of_their_own_browser(web):
    """The security review's attack: 8 wrong passwords for admin from each of 13 addresses (extra
    DHCP leases, classmates' phones) passed the ceiling per name from all addresses, which then
    refused admin everywhere for 15 minutes, the right password too, and told them to ask an
    admin. Here with lower limits, from real loopback addresses: the guessing stays bounded, a
    browser admin has logged in with before still gets in, and a refusal says what works."""
    web.accounts.throttle = ThrottlePolicy(slow_after=1000, slow_after_address=1000, lock_after_user=3,
                                           lock_after_address=1000, lock_s=600, lock_after_user_global=6,
                                           base_delay_s=30, max_delay_s=60)
    status, desk, _ = log_in_from(web, "127.0.0.20", "admin", ADMIN_PASSWORD)  # the admin's own browser, once
    assert status == 200 and desk
    statuses, refusals = [], []
    for attacker in range(2, 9):  # seven addresses, each until it is refused
        for guess in range(5):
            status, _, error = log_in_from(web, f"127.0.0.{attacker}", "admin", f"guess-{attacker}-{guess}")
            statuses.append(status)
            if status == 429:
                refusals.append(error)
                break
    # the ceiling, then one guess from each address that had not guessed yet, which then waits
    assert statuses.count(401) == 6 + 5, statuses
    assert statuses[-2:] == [401, 429], statuses
    assert "until" in refusals[0] and "engage-edge passwd" in refusals[0] and "Users page" in refusals[0]
    assert "many addresses" in refusals[-1] and "browser that has logged in" in refusals[-1]
    assert "Users page" in refusals[-1] and "engage-edge passwd" in refusals[-1]  # what else works

    # the admin's browser, from its own address or another, is judged by its own failures only
    assert log_in_from(web, "127.0.0.20", "admin", ADMIN_PASSWORD, known=desk)[0] == 200
    assert log_in_from(web, "127.0.0.30", "admin", ADMIN_PASSWORD, known=desk)[0] == 200
    # the device's own console too (a kiosk's browser that lost its cookies)
    assert log_in_from(web, "127.0.0.1", "admin", ADMIN_PASSWORD)[0] == 200
    # a stranger from an address that has guessed, right password or not, still waits; so does a
    # forged or another name's cookie
    for known in (None, "x" * 12 + ":" + "y" * 16 + ":" + "z" * 22):
        assert log_in_from(web, "127.0.0.8", "admin", ADMIN_PASSWORD, known=known)[0] == 429
    # a password typed again inside admin's session (confirming it for a change) is not slowed either
    admin = web.accounts.find("admin")
    assert web.accounts.confirm(web.accounts.start_session(admin)[0], admin, ADMIN_PASSWORD, "127.0.0.9")
    web.accounts.create_user("sam", STUDENT_PW, "student")
    _, sams, _ = log_in_from(web, "127.0.0.20", "sam", STUDENT_PW)
    assert log_in_from(web, "127.0.0.8", "admin", ADMIN_PASSWORD, known=sams)[0] == 429

    # guesses in the known browser lock that browser only, and say where else to go
    for guess in range(3):
        assert log_in_from(web, "127.0.0.20", "admin", f"stolen-cookie-{guess}", known=desk)[0] == 401
    status, _, error = log_in_from(web, "127.0.0.20", "admin", ADMIN_PASSWORD, known=desk)
    assert status == 429 and "in this browser" in error and "Another browser" in error
    # a new password ends what every browser was known by
    _, shared, _ = log_in_from(web, "127.0.0.1", "admin", ADMIN_PASSWORD, known=sams)  # one browser, two names
    assert web.accounts.known_browser("admin", shared) and web.accounts.known_browser("sam", shared)
    web.accounts.set_password(admin.id, "brand-new-admin-pw")
    assert web.accounts.known_browser("admin", shared) is None and web.accounts.known_browser("sam", shared)


def test_log_out_everywhere_else_makes_the_other_known_browsers_strangers_again(web):
    """A student whose laptop was lost logs out everywhere else from the desk: the laptop was
    logged out but stayed a known browser, so whoever has it was still judged by its own
    failures only, not with the guesses from its address. Now it is a stranger again; the
    browser that logged out everywhere else stays known."""
    web.accounts.create_user("sam", STUDENT_PW, "student")
    web.accounts.throttle = ThrottlePolicy(slow_after=1000, slow_after_address=1000, lock_after_user=3,
                                           lock_after_address=1000, lock_s=600)
    _, laptop, _ = log_in_from(web, "127.0.0.2", "sam", STUDENT_PW)
    for guess in range(3):  # the name is locked from 127.0.0.3, for strangers
        assert log_in_from(web, "127.0.0.3", "sam", f"guess-{guess}-xx")[0] == 401
    assert log_in_from(web, "127.0.0.3", "sam", STUDENT_PW)[0] == 429
    assert log_in_from(web, "127.0.0.3", "sam", STUDENT_PW, known=laptop)[0] == 200  # known: not held up

    desk = login(web.url, "sam", STUDENT_PW)
    r = desk.post(f"{web.url}/account/sessions", data={"csrf": desk.csrf}, allow_redirects=False, timeout=10)
    assert r.status_code == 303 and "ee_session_known" in r.headers.get("Set-Cookie", "")
    status, _, error = log_in_from(web, "127.0.0.3", "sam", STUDENT_PW, known=laptop)
    assert status == 429 and "from your address" in error  # the laptop counts with everyone's failures there
    assert web.accounts.known_browser("sam", laptop) is None
    assert log_in_from(web, "127.0.0.3", "sam", STUDENT_PW, known=desk.cookies["ee_session_known"])[0] == 200


def test_while_many_addresses_keep_guessing_the_owner_gets_in_from_a_new_browser_and_address(web):
    """The second review's attack: past the ceiling over all addresses, one wrong guess each
    time the wait ran out kept it running, and the wait was judged from anyone's newest
    failure, so the owner's right password on a browser not yet known (new laptop, private
    window, after a password reset) was refused nearly every time. An address that has not
    failed for the name is checked now; one that guessed still waits."""
    web.accounts.throttle = ThrottlePolicy(slow_after=1000, slow_after_address=1000, lock_after_user=100,
                                           lock_after_address=1000, lock_s=600, lock_after_user_global=6,
                                           base_delay_s=3.0, max_delay_s=3.0)  # time for a slow hash
    for guess in range(6):  # the burst: three addresses
        assert log_in_from(web, f"127.0.0.{2 + guess % 3}", "admin", f"burst-{guess}")[0] == 401
    guessed: list[str] = []
    refused: list[str] = []
    stop = False

    def poller() -> None:  # one wrong guess whenever the wait has run out, from an address that already guessed
        while not stop:
            status, _, error = log_in_from(web, "127.0.0.4", "admin", "poll-guess")
            (guessed if status == 401 else refused).append(error)
            time.sleep(0.05)

    with ThreadPoolExecutor(max_workers=1) as pool:
        polling = pool.submit(poller)
        try:
            for owner in (40, 41):  # each a browser admin never logged in with, on a fresh address
                seen = len(guessed)
                wait_for(lambda seen=seen: len(guessed) > seen, timeout=10)  # a guess just now: the wait runs 3 s
                status, known, error = log_in_from(web, f"127.0.0.{owner}", "admin", ADMIN_PASSWORD)
                assert status == 200 and known, error
                status, _, error = log_in_from(web, "127.0.0.2", "admin", ADMIN_PASSWORD)
                assert status == 429 and "many addresses" in error  # an address that guessed wrong still waits
        finally:
            stop = True
            polling.result()
    assert refused and "many addresses" in refused[0]


def test_a_crafted_user_name_cannot_reach_another_users_counter(web):
    web.accounts.create_user("sam", STUDENT_PW, "student")
    web.accounts.throttle = ThrottlePolicy(slow_after=1000, slow_after_address=1000, lock_after_user=3,
                                           lock_after_address=1000, lock_s=600)
    for i in range(5):
        login_from(web, "127.0.0.2", "sam|127.0.0.1", f"attacker-{i}")
    assert login_from(web, "127.0.0.1", "sam", STUDENT_PW) == 303


def test_an_admin_unlocks_a_locked_user_and_a_password_reset_unlocks_too(web):
    sam = web.accounts.create_user("sam", STUDENT_PW, "student")
    web.accounts.throttle = ThrottlePolicy(slow_after=1000, slow_after_address=1000, lock_after_user=3,
                                           lock_after_address=1000, lock_s=600)
    admin = login(web.url)
    for i in range(3):
        login_from(web, "127.0.0.1", "sam", f"bad-{i}")
    assert login_from(web, "127.0.0.1", "sam", STUDENT_PW) == 429
    page = admin.get(f"{web.url}/admin/users", timeout=10).text
    assert "(locked)" in page and f"/admin/users/{sam.id}/unlock" in page
    r = admin.post(f"{web.url}/admin/users/{sam.id}/unlock", data={"csrf": admin.csrf}, timeout=10)
    assert r.ok and "Unlocked sam" in r.text
    assert login_from(web, "127.0.0.1", "sam", STUDENT_PW) == 303

    for i in range(3):
        login_from(web, "127.0.0.1", "sam", f"bad-again-{i}")
    assert login_from(web, "127.0.0.1", "sam", STUDENT_PW) == 429
    r = admin.post(f"{web.url}/admin/users/{sam.id}/password", data={"csrf": admin.csrf, "password": "fresh-pw-2468"},
                   timeout=10)
    assert r.ok and "New password set" in r.text
    assert login_from(web, "127.0.0.1", "sam", "fresh-pw-2468") == 303


def test_a_lock_shorter_than_the_window_ends_when_due(web):
    """With ``login.lock_minutes`` under ``login.window_minutes`` (say 5 and 15) a lock lasted
    the whole window, each attempt told "Too many log-ins ... are being checked at once: try
    again in a moment": the failures still in the window were taken for guesses in flight.
    Once the lock is over one attempt is checked; a wrong one locks the name again."""
    web.accounts.create_user("sam", STUDENT_PW, "student")
    web.accounts.throttle = ThrottlePolicy(slow_after=1000, slow_after_address=1000, lock_after_user=3,
                                           lock_after_address=1000, lock_s=0.5, window_s=900)
    for i in range(3):
        assert login_from(web, "127.0.0.2", "sam", f"guess-{i}-xx") == 401
    assert login_from(web, "127.0.0.2", "sam", STUDENT_PW) == 429
    wait_for(lambda: login_from(web, "127.0.0.2", "sam", "guess-3-xx") == 401, timeout=5, every=0.1,
             what="the 0.5 s lock to end")
    assert login_from(web, "127.0.0.2", "sam", STUDENT_PW) == 429  # locked again at once
    wait_for(lambda: login_from(web, "127.0.0.2", "sam", STUDENT_PW) == 303, timeout=5, every=0.1,
             what="the second lock to end")


def test_a_clock_step_neither_lifts_a_lock_nor_stretches_it(web, monkeypatch):
    """A name locked after too many guesses was free again seconds later when NTP stepped a
    Pi's stale clock forward by days, and a clock stepped back kept it locked for the step.
    The lock measures elapsed (monotonic) time while the process runs."""
    step = {"s": 0.0}
    monkeypatch.setattr(web.accounts, "wall", lambda: time.time() + step["s"])
    web.accounts.create_user("sam", STUDENT_PW, "student")
    web.accounts.throttle = ThrottlePolicy(slow_after=1000, slow_after_address=1000, lock_after_user=3,
                                           lock_after_address=1000, lock_s=600)
    for i in range(3):
        assert login_from(web, "127.0.0.2", "sam", f"guess-{i}-xx") == 401
    step["s"] = 3 * 86400.0  # NTP arrives
    web.accounts.purge_sessions()  # the housekeeping's round, on the new time
    assert login_from(web, "127.0.0.2", "sam", STUDENT_PW) == 429  # still locked
    assert "sam" in web.accounts.locked_users()  # and the Users page says so
    web.accounts.throttle.lock_s = web.accounts.throttle.window_s = 1.0  # and back by more: it still ends when due
    step["s"] = -3 * 86400.0
    wait_for(lambda: login_from(web, "127.0.0.2", "sam", STUDENT_PW) == 303, timeout=5, every=0.2,
             what="the 1 s lock to end")


def test_after_a_restart_a_lock_is_judged_by_the_wall_clock_and_never_cut_short(web):
    """A new process has only the failures' wall-clock times: by them a lock goes on or is
    over, as before; one stamped in the future (the clock went back since) cannot say how long
    ago it was, so it counts as just now: locked for the whole lock, not for the clock's step."""
    web.accounts.create_user("sam", STUDENT_PW, "student")
    policy = ThrottlePolicy(slow_after=1000, slow_after_address=1000, lock_after_user=3, lock_after_address=1000,
                            lock_s=600)
    web.accounts.throttle = policy
    for i in range(3):
        assert login_from(web, "127.0.0.2", "sam", f"guess-{i}-xx") == 401
    assert "sam" in Accounts(web.store, throttle=policy).locked_users()  # restarted at once
    assert "sam" not in Accounts(web.store, throttle=policy, wall=lambda: time.time() + 601).locked_users()
    behind = Accounts(web.store, throttle=policy, wall=lambda: time.time() - 86400)  # set back a day meanwhile
    with pytest.raises(LoginThrottled, match="locked for 10 minutes"):
        behind.check_throttle("sam", "127.0.0.2")


def test_unknown_and_known_names_cost_the_same_work(web, monkeypatch):
    """The login time told which names exist (one scrypt for a known name, two for an
    unknown one). Count the scrypt runs each attempt makes: timing follows from work."""
    web.accounts.create_user("sam", STUDENT_PW, "student")
    web.accounts.throttle = ThrottlePolicy(slow_after=1000, slow_after_address=1000, lock_after_user=1000,
                                           lock_after_address=1000)
    accounts_mod._dummy_hash()  # made once per process, before any attempt is measured
    calls = []
    real = accounts_mod.hashlib.scrypt
    monkeypatch.setattr(accounts_mod.hashlib, "scrypt", lambda *a, **k: calls.append(1) or real(*a, **k))
    for name in ("sam", "nobody-here"):
        calls.clear()
        assert login_from(web, "127.0.0.1", name, "wrong-password-1") == 401
        assert len(calls) == 1, f"{name}: {len(calls)} scrypt runs"


@pytest.mark.parametrize("weak", ["password", "12345678", "Password123", "aaaaaaaaaaaa", "raspberry"])
def test_common_passwords_are_refused_with_a_reason(web, weak):
    with pytest.raises(AuthError, match="attacker tries"):
        web.accounts.create_user("kim", weak, "student")
    assert web.accounts.find("kim") is None
    web.accounts.create_user("kim", "correct horse battery", "student")


def test_a_damaged_known_browser_key_is_made_anew_and_never_fails_a_log_in(tmp_path):
    """known-browsers.key half-written or edited: made anew (browsers log in once more to be
    known), not a 500 at every log-in."""
    store = Store(tmp_path)
    (tmp_path / "known-browsers.key").write_text("not a key\n")
    accounts = Accounts(store)
    user = accounts.create_user("sam", STUDENT_PW, "student")
    cookie = accounts.remember_browser(user, "garbage|x:y:z")
    assert accounts.known_browser("sam", cookie) and accounts.known_browser("sam", "garbage") is None
    assert len(bytes.fromhex((tmp_path / "known-browsers.key").read_text())) == 32
    assert Accounts(store).known_browser("sam", cookie)  # the same key after a restart
