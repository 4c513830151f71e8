"""kill -9 during heavy logging loses no committed row and never corrupts the database.

A real child process writes through ``Store`` as fast as it can and prints each row's id
only after the commit returned; the parent kills it with SIGKILL at random moments, many
times over the same database, then checks every reported row and PRAGMA integrity_check."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import wait_for

from edge_app.store.database import Store

ROOT = Path(__file__).resolve().parent.parent
KILLS = 15

CHILD = r"""
import sys, time
from edge_app.store.database import Store

store = Store(sys.argv[1])
face = {"box": [1, 2, 3, 4], "emotion": "neutral", "confidence": 0.9,
        "probabilities": {"neutral": 0.9}, "engagement": "Engaged - paying attention"}
out = sys.stdout
i = 0
while True:
    uid = store.add_upload(None, f"f{i}.jpg", 640, 480, [face, face, face])  # one transaction, 4 rows
    out.write(f"U {uid}\n"); out.flush()
    store.log_state_change(time.time(), "Engaged - paying attention", "Engaged", "neutral", 0.5)
    sid = store.query("SELECT last_insert_rowid()")[0][0]
    out.write(f"S {sid}\n"); out.flush()
    store.log_minute({"minute": (i % 500) * 60, "frames": 1, "faces": 1, "Engaged": 1.0})
    out.write(f"M {(i % 500) * 60}\n"); out.flush()
    i += 1
"""


def test_kill_9_during_heavy_logging_loses_nothing_committed(tmp_path):
    data = tmp_path / "data"
    Store(data).close()  # create the schema once, as the service's first start would
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    rng = random.Random(6)
    uploads, states, minutes = set(), set(), set()
    started = time.monotonic()
    for n in range(KILLS):
        log = tmp_path / f"ids-{n}.txt"
        with open(log, "w") as out:
            child = subprocess.Popen([sys.executable, str(script), str(data)], cwd=ROOT, stdout=out,
                                     stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)})
            wait_for(lambda log=log, child=child: log.stat().st_size > 0 or child.poll() is not None, 20, every=0.01,
                     what="the child writing")
            assert child.poll() is None, child.stderr.read().decode()
            time.sleep(rng.uniform(0.05, 0.4))  # not a wait: the kill lands at a random point of the writing
            os.kill(child.pid, signal.SIGKILL)
            child.wait(10)
            child.stderr.close()
        assert child.returncode == -signal.SIGKILL
        text = log.read_text()
        lines = text.split("\n")[:-1]  # a last line without its newline was not reported complete
        for kind, value in (line.split() for line in lines):
            {"U": uploads, "S": states, "M": minutes}[kind].add(int(value))
    assert time.monotonic() - started < 60
    assert len(uploads) > KILLS  # it really was logging when killed

    store = Store(data)
    assert store.integrity_ok()
    assert store.query("PRAGMA integrity_check")[0][0] == "ok"
    present = {r[0] for r in store.query("SELECT id FROM uploads")}
    assert uploads <= present, f"lost uploads {sorted(uploads - present)[:10]}"
    assert states <= {r[0] for r in store.query("SELECT id FROM state_changes")}
    assert minutes <= {r[0] for r in store.query("SELECT minute FROM minute_stats")}
    # no transaction is ever half there: every upload has exactly its three faces
    partial = store.query("SELECT u.id FROM uploads u LEFT JOIN upload_faces f ON f.upload_id = u.id "
                          "GROUP BY u.id HAVING COUNT(f.id) != u.face_count")
    assert partial == []
    store.close()
