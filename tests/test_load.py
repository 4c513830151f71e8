"""A short version of tools/load_test.py: MJPEG viewers plus concurrent uploads from a
separate client process, viewers dropped abruptly; every request answered and no thread
or file descriptor left behind. (The loop's FPS under load is reported by the tool, not
asserted here: timing is for benchmarks.)"""
from __future__ import annotations

from edge_app import config as config_mod
from tests.conftest import ADMIN_PASSWORD, load_tool


def test_viewers_and_uploads_are_all_answered_and_nothing_leaks(make_appliance, cfg, grace_path):
    tool = load_tool("load_test")
    appliance = make_appliance(config_mod.with_changes(cfg, {"web.max_viewers": 3, "privacy.keep_uploads": "none"}))
    report = tool.run_load(appliance, ADMIN_PASSWORD, viewers=3, uploaders=4, seconds=3.0, image_path=grace_path,
                           settle_s=1.0, idle_s=1.0, warmup_s=1.0)
    assert report["uploads_total"] >= 4 and set(report["uploads"]) == {"200"}, report["uploads"]
    assert report["viewer_status"] == [200, 200, 200] and not report["viewer_errors"]
    assert all(n > 0 for n in report["viewer_frames"]), report["viewer_frames"]
    assert report["viewer_slots_in_use_after"] == 0  # the server noticed every dropped viewer
    assert report["threads_after"] <= report["threads_before"], report
    assert report["fds_after"] <= report["fds_before"], report  # sockets, files, pipes
    assert report["sqlite_fds_after"] <= 3 * report["threads_after"], report  # one connection per thread at most
    assert report["loop_alive"]
    assert appliance.loop.health.frames > 0


def test_the_tools_own_config_loads(tmp_path):
    """main() wrote an empty config file, which config.load refuses: every run of the tool crashed."""
    cfg = load_tool("load_test").appliance_config(tmp_path, viewers=8)
    assert cfg.store.data_dir == str(tmp_path / "data") and cfg.web.port == 0 and cfg.web.max_viewers == 8
