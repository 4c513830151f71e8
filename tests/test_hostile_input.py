"""Hostile or unusual input outside the web server (issue 14 item 12): 16-bit PNGs, a
read-only data directory, a planted lock-file link."""
from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest
from conftest import mounted_tmpfs, wait_for
from PIL import Image

from edge_app.models import registry as flash
from edge_app.store.database import Store, StoreError
from edge_app.vision.stills import decode_image


def test_a_16_bit_grayscale_png_decodes_to_the_same_picture():
    ramp = np.tile(np.linspace(0, 65535, 256).astype(np.uint16), (64, 1))
    buf = io.BytesIO()
    Image.fromarray(ramp).save(buf, format="PNG")  # mode I;16
    assert Image.open(io.BytesIO(buf.getvalue())).mode.startswith("I")
    bgr = decode_image(buf.getvalue())
    assert bgr.shape == (64, 256, 3) and bgr.dtype == np.uint8
    expected = np.round(ramp[0].astype(np.float64) / 257).astype(int)
    assert np.abs(bgr[0, :, 0].astype(int) - expected).max() <= 1
    assert (bgr == 255).mean() < 0.01, "most pixels clipped to white"


@pytest.fixture
def read_only_dir(tmp_path):
    """A data directory on a file system mounted read-only (a tmpfs, remounted)."""
    with mounted_tmpfs(tmp_path / "mnt", "4m") as mnt:
        (mnt / "data").mkdir()
        Store(mnt / "data").close()  # a real database, then the disk turns read-only
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        yield mnt / "data"


def test_a_read_only_data_dir_is_named_as_such_not_as_a_corrupt_database(read_only_dir, tmp_path):
    with pytest.raises(StoreError) as err:
        Store(read_only_dir)
    assert "not writable" in str(err.value) and "read-only" in str(err.value)
    assert "Restore a backup" not in str(err.value)
    empty = tmp_path / "empty.toml"
    empty.write_text("# defaults\n")
    r = subprocess.run([sys.executable, "-m", "edge_app", "run", "--config", str(empty), "--source", "demo",
                        "--port", "0", "--data-dir", str(read_only_dir)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "is not writable" in r.stderr and "Restore a backup" not in r.stderr


def test_the_model_lock_never_follows_a_planted_link(cfg, tmp_path):
    models = flash.models_dir(cfg)
    models.mkdir(parents=True)
    target = tmp_path / "victim.conf"  # what an engage-owned link would make root's CLI create
    (models / ".lock").symlink_to(target)
    with pytest.raises(flash.FlashError, match="symbolic link"):
        flash.rollback(cfg)
    assert not target.exists()


@pytest.mark.parametrize("fmt, size", [("PNG", (3800, 1900)), ("JPEG", (8000, 4000))])
def test_a_large_photo_is_analysed_scaled_down_as_it_is_decoded(fmt, size):
    from edge_app.vision.stills import ANALYSIS_PIXELS, Limits

    big = Image.new("RGB", size, (120, 90, 60))  # accepted, more than analysis needs
    buf = io.BytesIO()
    big.save(buf, format=fmt)
    bgr = decode_image(buf.getvalue(), Limits())
    h, w = bgr.shape[:2]
    assert w * h <= ANALYSIS_PIXELS and abs(w / h - 2.0) < 0.02
    assert tuple(int(v) for v in bgr[h // 2, w // 2]) == pytest.approx((60, 90, 120), abs=2)


def test_uploads_are_decoded_on_the_analysis_threads_only(make_appliance, face_jpeg):
    """Decoding on every web worker grew one malloc arena per worker (2.7 GB for 24 big
    uploads); the analysis threads are few and always the same."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from tests.conftest import login

    web = make_appliance(with_loop=False)
    s = login(web.url)
    seen = []
    real = web.analyzer.analyze
    web.analyzer.analyze = lambda bgr: seen.append(threading.current_thread().name) or real(bgr)
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda _: s.post(f"{web.url}/api/analyze", files={"image": ("g.jpg", face_jpeg)},
                                               timeout=120).status_code, range(8)))
    assert codes == [200] * 8
    assert len(seen) == 8 and {name.rsplit("_", 1)[0] for name in seen} == {"upload-analysis"}
    assert len(set(seen)) <= web.cfg.web.analysis_workers


def test_an_upload_in_analysis_when_the_device_stops_is_stored_before_the_store_closes(make_appliance, face_jpeg):
    """The stop closed the store under an analysis still in hand: its row was lost to a
    closed-database error. The stop now waits for it, and no analysis thread outlives the stop."""
    import sqlite3
    import threading

    import requests

    from tests.conftest import login

    web = make_appliance(with_loop=False)
    s = login(web.url)
    analysing, release = threading.Event(), threading.Event()
    real = web.analyzer.analyze

    def held(bgr):
        analysing.set()
        release.wait(60)
        return real(bgr)

    def send():
        try:
            s.post(f"{web.url}/api/analyze", files={"image": ("g.jpg", face_jpeg)}, timeout=120)
        except requests.RequestException:  # the stopping server cuts the connection: expected
            pass

    answers: list = []

    def send_second():  # queued behind the first: told the device is stopping, while the server still answers
        answers.append(s.post(f"{web.url}/api/analyze", files={"image": ("h.jpg", face_jpeg)}, timeout=120))

    web.analyzer.analyze = held
    threading.Thread(target=send, daemon=True).start()
    assert analysing.wait(60)
    second = threading.Thread(target=send_second, daemon=True)
    second.start()
    pool = web.app.config["engage.analysis"]
    wait_for(lambda: pool._threads._work_queue.qsize() == 1, what="the second upload waiting its turn")
    stopper = threading.Thread(target=web.stop)
    stopper.start()
    while True:  # the analysis goes on once the web server has stopped serving
        try:
            requests.get(f"{web.url}/login", timeout=2)
        except (requests.ConnectionError, requests.Timeout):  # refused, cut, or taken in and never answered:
            break  # no longer serving either way (a ReadTimeout, possible on a loaded machine, would fail the test)
    release.set()
    stopper.join(60)
    assert not stopper.is_alive()
    second.join(30)
    assert answers and answers[0].status_code == 503 and "stopping" in answers[0].json()["error"]
    assert answers[0].headers["Retry-After"] == "60" and "Accepted" not in answers[0].json()["error"]
    with sqlite3.connect(web.store.path) as db:
        assert db.execute("SELECT count(*) FROM uploads").fetchone()[0] == 1
    assert not [t for t in threading.enumerate() if t.name.startswith("upload-analysis")]


def test_a_png_too_large_to_decode_whole_is_refused_before_decoding():
    from edge_app.vision.stills import ImageRejected, Limits

    buf = io.BytesIO()
    Image.new("RGB", (4000, 3000), (1, 2, 3)).save(buf, format="PNG")  # 12 MP: fine as a JPEG, not as a PNG
    with pytest.raises(ImageRejected, match="send a JPEG or a smaller image"):
        decode_image(buf.getvalue(), Limits())


def _progressive_jpeg(scans_added: int = 0) -> bytes:
    """A real progressive JPEG (Pillow's, about 10 scans), with its last scan repeated
    ``scans_added`` times before the end marker: a file as slow to decode as it has scans."""
    buf = io.BytesIO()
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)).save(buf, "JPEG", progressive=True)
    data = buf.getvalue()
    last = data.rindex(b"\xff\xda")
    return data[:-2] + data[last:-2] * scans_added + b"\xff\xd9"


def test_a_jpeg_of_very_many_scans_is_refused_before_decoding():
    """Each scan is decoded over the whole picture: a crafted 10 MB JPEG of 170,000 scans
    kept the analysis thread (and every upload waiting for it) busy for 14 minutes."""
    from edge_app.vision.stills import MAX_JPEG_SCANS, ImageRejected

    ordinary = _progressive_jpeg()
    assert 5 <= ordinary.count(b"\xff\xda") <= 20
    assert decode_image(ordinary).shape == (480, 640, 3)
    with pytest.raises(ImageRejected, match=r"written in \d+ scans .* the limit is 100"):
        decode_image(_progressive_jpeg(MAX_JPEG_SCANS))


def test_an_upload_still_waiting_its_turn_when_the_device_stops_is_told_so():
    """The stop drops uploads still waiting for an analysis thread: their requests got a
    CancelledError (a 500 and a traceback); they are told the device is stopping."""
    import threading

    from edge_app.vision.stills import ImageRejected
    from edge_app.web.upload import AnalysisPool

    pool, started, release = AnalysisPool(1), threading.Event(), threading.Event()
    outcome: list = []

    def first():
        started.set()
        release.wait(30)
        return "analysed"

    def second():
        try:
            outcome.append(pool.run(lambda: "analysed too"))
        except ImageRejected as exc:
            outcome.append(exc)

    threading.Thread(target=lambda: pool.run(first), daemon=True).start()
    assert started.wait(30)
    waiting = threading.Thread(target=second, daemon=True)
    waiting.start()
    wait_for(lambda: pool._threads._work_queue.qsize() == 1, what="the second upload queued behind the first")
    closing = threading.Thread(target=pool.close)
    closing.start()
    release.set()
    closing.join(30)
    waiting.join(30)
    assert len(outcome) == 1 and isinstance(outcome[0], ImageRejected), outcome
    assert outcome[0].args[1] == 503 and "stopping" in outcome[0].args[0]
