"""The store writer tells a bad row (set aside, logging goes on) from a database that is
busy, locked or full (the same row is retried), by SQLite's own error codes."""
from __future__ import annotations

import logging
import sqlite3

import pytest
from conftest import damage_table

from edge_app.runtime.health import Health
from edge_app.runtime.metrics import Metrics
from edge_app.runtime.store_writer import StoreWriter, _store_status, permanent
from edge_app.store.database import Store

GOOD = ("Engaged - paying attention", "Engaged", "neutral", 0.5)


@pytest.fixture
def writer(tmp_path):
    store = Store(tmp_path / "db")
    w = StoreWriter(store, Health(), Metrics(), min_free_mb=0, retry_initial_s=0.05, retry_max_s=0.05)
    yield w
    w.close(2)
    store.close()


def sample(w: StoreWriter, name: str) -> float:
    return w.metrics.registry.get_sample_value(name) or 0.0


@pytest.mark.parametrize("bad_row, reason", [
    (("log_state_change", 2.0, None, "Engaged", None, None), "NOT NULL constraint failed"),  # SQLITE_CONSTRAINT
    (("log_minute", {"minute": "noon", "frames": 1, "faces": 0}), "datatype mismatch"),  # SQLITE_MISMATCH
    (("log_state_change", 2.0, {"not": "text"}, "Engaged", None, None), "not supported"),  # refused by Python
    (("log_alert", 2**70, "Not engaged"), "too large"),  # OverflowError
])
def test_one_bad_row_is_set_aside_and_logging_goes_on(writer, caplog, bad_row, reason):
    caplog.set_level(logging.ERROR, logger="edge_app.runtime.store_writer")
    writer.put("log_state_change", 1.0, *GOOD)
    writer.put(*bad_row)
    writer.put("log_state_change", 3.0, *GOOD)
    assert writer.drain(10), "the rows behind the bad one were never written"
    times = [r[0] for r in writer.store.query("SELECT t FROM state_changes ORDER BY t")]
    assert times == [1.0, 3.0]
    assert len(writer.rejected) == 1
    method, args, why = writer.rejected[0]
    assert (method, *args) == bad_row and reason in why
    assert sample(writer, "engage_store_rows_rejected_total") == 1
    assert sample(writer, "engage_store_write_failures_total") == 0  # not retried
    assert writer.health.store == "ok" and writer.health.pending_writes == 0
    logged = [r.getMessage() for r in caplog.records]
    assert any("set aside" in m and bad_row[0] in m and reason in m for m in logged), logged


def test_an_alert_refused_for_good_takes_its_frame_with_it_and_keeps_only_its_size(writer, caplog):
    """An alert's camera frame and its row are one write: a frame kept without the row that
    names it is never reached by the retention purge. Neither the log nor the rows set aside
    (kept in memory for a technician) hold the frame's bytes."""
    caplog.set_level(logging.ERROR, logger="edge_app.runtime.store_writer")
    writer.put("log_alert", 2**70, "Not engaged", "alerts/1.jpg", b"\xff\xd8" * 5000)
    assert writer.drain(10)
    (message,) = [r.getMessage() for r in caplog.records]
    assert "<10000 bytes>" in message and "\\xff" not in message
    assert writer.rejected[0][1][-1] == "<10000 bytes>"
    assert not writer.store.image_file("alerts/1.jpg").exists()
    writer.put("log_alert", 2.0, "Not engaged", "alerts/2.jpg", b"\xff\xd8\xff\xd9")
    assert writer.drain(10)
    assert writer.store.image_file("alerts/2.jpg").read_bytes() == b"\xff\xd8\xff\xd9"
    assert [tuple(r) for r in writer.store.query("SELECT t, snapshot_path FROM alerts")] == [(2.0, "alerts/2.jpg")]


# ------------------------------------------------------------------ classification on real SQLite errors
def error_of(action) -> Exception:
    with pytest.raises(Exception) as info:
        action()
    return info.value


def busy(tmp_path) -> Exception:
    path = tmp_path / "busy.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t(x)")
    holder.execute("BEGIN EXCLUSIVE")
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        return error_of(lambda: other.execute("INSERT INTO t VALUES (1)"))
    finally:
        other.close()
        holder.execute("ROLLBACK")
        holder.close()


def full(tmp_path) -> Exception:
    conn = sqlite3.connect(tmp_path / "full.db", isolation_level=None)
    conn.execute("CREATE TABLE t(x)")
    conn.execute("PRAGMA max_page_count = 3")  # a database that cannot grow: SQLITE_FULL
    try:
        return error_of(lambda: [conn.execute("INSERT INTO t VALUES (?)", ("x" * 3000,)) for _ in range(20)])
    finally:
        conn.close()


def too_big(tmp_path) -> Exception:
    conn = sqlite3.connect(":memory:")
    conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 1000)
    conn.execute("CREATE TABLE t(x)")
    return error_of(lambda: conn.execute("INSERT INTO t VALUES (?)", ("x" * 5000,)))


def constraint(tmp_path) -> Exception:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t(x TEXT NOT NULL)")
    return error_of(lambda: conn.execute("INSERT INTO t VALUES (NULL)"))


def closed(tmp_path) -> Exception:
    conn = sqlite3.connect(":memory:")
    conn.close()
    return error_of(lambda: conn.execute("SELECT 1"))


@pytest.mark.parametrize("make, is_permanent, status, code", [
    (busy, False, "locked", "SQLITE_BUSY"),
    (full, False, "disk full", "SQLITE_FULL"),
    (closed, False, "error", None),
    (too_big, True, None, "SQLITE_TOOBIG"),
    (constraint, True, None, "SQLITE_CONSTRAINT_NOTNULL"),
])
def test_sqlite_error_codes_decide_retry_or_set_aside(tmp_path, make, is_permanent, status, code):
    exc = make(tmp_path)
    assert getattr(exc, "sqlite_errorname", None) == code
    assert permanent(exc) is is_permanent
    if status:
        assert _store_status(exc) == status


def test_a_full_disk_without_a_sqlite_code_is_still_disk_full():
    exc = OSError(28, "No space left on device")
    assert not permanent(exc) and _store_status(exc) == "disk full"


def test_shutdown_waits_briefly_when_the_disk_fills_during_it(tmp_path, caplog):
    """The last rows are often the first to meet a full disk: ``close`` finds logging
    paused while it waits and gives up after ``paused_wait``, not the whole timeout
    (a device being stopped with a full disk stops at once)."""
    import time

    caplog.set_level(logging.WARNING, logger="edge_app.runtime.store_writer")
    store = Store(tmp_path / "db")
    w = StoreWriter(store, Health(), Metrics(), min_free_mb=float("inf"), retry_initial_s=0.05)
    w.put("log_state_change", 1.0, *GOOD)  # the store is OK until the writer tries this row, maybe after close begins
    started = time.monotonic()
    w.close(timeout=60, paused_wait=0.2)
    assert time.monotonic() - started < 30  # the whole timeout would be 60 s
    assert w.health.store == "disk full" and w.health.pending_writes == 1
    # /metrics says so too: the gauge was set only after a write went through, so a full disk read 0
    assert sample(w, "engage_store_pending_rows") == 1
    assert any("1 rows not written" in r.getMessage() for r in caplog.records)
    assert store.query("SELECT count(*) FROM state_changes")[0][0] == 0
    store.close()


def test_a_damaged_database_says_what_to_do(tmp_path, caplog):
    """A bad block under the log's table (a failing SD card): the start does not read it,
    so logging paused with only "database disk image is malformed" in /healthz and the
    journal, while the newest rows waited in memory and were lost at the stop."""
    store = Store(tmp_path / "db")
    for n in range(300):  # the table spans pages of its own, beyond the schema's first page
        store.log_state_change(1_800_000_000.0 + n, *GOOD)
    damage_table(store, "state_changes")
    store = Store(tmp_path / "db")
    health = Health()
    w = StoreWriter(store, health, Metrics(), min_free_mb=0, retry_initial_s=0.05, retry_max_s=0.05)
    try:
        with caplog.at_level(logging.WARNING):
            w.put("log_state_change", 1_800_000_999.0, *GOOD)
            assert not w.drain(2.0, paused_wait=0.5)
        assert health.store == "error" and "malformed" in health.store_error
        assert "the database is damaged" in health.store_error and "engage-edge restore FILE" in health.store_error
        assert "engage-edge backup FILE" in caplog.text
    finally:
        w.close(1, paused_wait=0.1)
        store.close()
