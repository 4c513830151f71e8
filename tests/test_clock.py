"""Whether a time server has set the clock (edge_app/device/clock.py): a Pi has no
battery clock, so until one has, every time the device logs may be wrong. The admin
dashboard says so, /healthz reports it, and the self-test warns."""
from __future__ import annotations

import sys
import time

import pytest
import requests

from edge_app.cli import main
from edge_app.device import clock
from edge_app.web import health as health_routes
from tests.conftest import login, wait_for

UNSYNCHRONIZED, SYNCHRONIZED = clock.TIME_ERROR, 0  # adjtimex's answers (linux/timex.h)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="adjtimex is Linux's")
def test_the_kernel_is_asked_without_changing_anything():
    state = clock.read_state()
    assert state in range(6)  # TIME_OK .. TIME_ERROR: the real call answered
    assert clock.synchronized() is (state != clock.TIME_ERROR)
    assert clock.read_state() == state  # reading did not clear or set the flag


def test_a_failing_call_means_cannot_tell():
    assert clock.read_state(adjtimex=lambda buf: -1) is None


@pytest.mark.parametrize("state, banner", [(UNSYNCHRONIZED, True), (SYNCHRONIZED, False)])
def test_the_dashboard_and_healthz_say_whether_times_can_be_trusted(make_appliance, monkeypatch, state, banner):
    monkeypatch.setattr(clock, "read_state", lambda: state)  # the kernel's flag cannot be set without CAP_SYS_TIME
    appliance = make_appliance(with_loop=False)
    body = requests.get(f"{appliance.url}/healthz", timeout=10).json()
    assert body["clock_synchronized"] is (not banner)
    assert body["status"] == "ok"  # the device works: a watchdog must not restart it for this
    page = login(appliance.url).get(f"{appliance.url}/admin", timeout=10).text
    assert ('id="clock-unset"' in page) is banner
    if banner:
        assert "Times may be wrong" in page and "timesyncd.conf" in page
        # as students' pages say
        assert "deleted once this device has been switched on for the retention period" in " ".join(page.split())
        assert "store.trust_device_clock = true" in page  # what a device with a battery clock does


def test_the_selftest_warns_but_passes(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(clock, "read_state", lambda: UNSYNCHRONIZED)
    conf = tmp_path / "selftest.toml"
    conf.write_text(f'[indicators]\nbackend = "console"\n[store]\ndata_dir = "{tmp_path / "data"}"\n')
    main(["selftest", "--source", "demo", "--config", str(conf), "--step", "0.01", "--no-buzzer"])
    out = capsys.readouterr().out
    line = next(li for li in out.splitlines() if li.startswith(("PASS clock", "WARN clock", "FAIL clock")))
    assert line.startswith("WARN clock: no time server has set the clock") and "timesyncd.conf" in line
    verdict = out.strip().splitlines()[-1]
    assert verdict.startswith("self-test") and "clock" not in verdict, verdict  # not among the failures


class SteppedClock:
    """The ``time`` module as a route sees it after a time server stepped the wall clock."""

    def __init__(self, step_s: float):
        self.step_s = step_s

    def time(self) -> float:
        return time.time() + self.step_s

    def __getattr__(self, name):
        return getattr(time, name)


def test_a_clock_step_does_not_make_healthz_report_a_stall_or_days_of_uptime(make_appliance, monkeypatch):
    """A Pi starts on the time it last saved; timesyncd then steps it, often by days. The
    camera's silence and the uptime are durations: measured on the monotonic clock."""
    appliance = make_appliance()
    wait_for(lambda: requests.get(f"{appliance.url}/healthz", timeout=10).json()["frames"] > 0, timeout=30)
    monkeypatch.setattr(health_routes, "time", SteppedClock(3 * 86400.0))
    r = requests.get(f"{appliance.url}/healthz", timeout=10)
    body = r.json()
    assert r.status_code == 200 and body["status"] == "ok", body["reasons"]  # not "no frame for 259200 s"
    assert 0 <= body["uptime_s"] < 120  # not three days (0.0 when the first frame came within 50 ms)
