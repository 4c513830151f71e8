"""/favicon.ico: browsers (and some proxies) ask for it whatever a page links, a JSON or
error page links nothing; a 404 there was an error line in every browser's console and
in the school's proxy log. The icon is ours, drawn by tools/draw_favicon.py."""
from __future__ import annotations

import io

import pytest
import requests
from PIL import Image

from tests.conftest import load_tool


def drawer():
    return load_tool("draw_favicon")


def test_the_icon_in_the_repository_is_the_one_drawn_here():
    tool = drawer()
    assert tool.OUT.read_bytes() == tool.draw(), "run: python tools/draw_favicon.py"
    icon = Image.open(io.BytesIO(tool.OUT.read_bytes()))
    assert icon.format == "ICO" and sorted(icon.info["sizes"]) == [(16, 16), (32, 32)]
    for size in (16, 32):
        icon.size = (size, size)
        image = icon.convert("RGBA")
        assert image.getpixel((size // 2, size // 2)) == (0x10, 0x7C, 0x10, 255)  # icon.svg's green
        assert image.getpixel((0, 0))[3] == 0  # a disc: the corners are clear


def test_only_the_drawing_command_rewrites_the_icon(monkeypatch, tmp_path, capsys):
    """Any argument but --check (--help, a typo: --chekc) rewrote the icon in the repository."""
    tool = drawer()
    monkeypatch.setattr(tool, "OUT", tmp_path / "favicon.ico")
    for argv in (["--help"], ["--chekc"]):
        with pytest.raises(SystemExit):
            tool.main(argv)
    assert not tool.OUT.exists()
    assert tool.main(["--check"]) == 1 and not tool.OUT.exists()
    assert tool.main([]) == 0 and tool.main(["--check"]) == 0
    assert "usage:" in capsys.readouterr().out


def test_favicon_is_served_to_anyone_and_cached(web_appliance):
    """No log-in (the log-in page's own load asks for it), an icon's type, and cacheable
    like /static/ files: a validator to ask again with, never "no-store"."""
    url = f"{web_appliance.url}/favicon.ico"
    r = requests.get(url, timeout=5)
    assert r.status_code == 200, r.text[:200]
    assert r.headers["Content-Type"] == "image/vnd.microsoft.icon"
    assert r.content == drawer().OUT.read_bytes()
    assert "no-store" not in r.headers.get("Cache-Control", "") and r.headers["Last-Modified"]
    again = requests.get(url, headers={"If-Modified-Since": r.headers["Last-Modified"]},
                         timeout=5)
    assert again.status_code == 304 and not again.content
    assert requests.head(url, timeout=5).status_code == 200


def test_the_pages_scripts_and_styles_are_checked_again_at_each_load(web_appliance):
    """Served with no cache control, a browser kept the scripts it had after an upgrade
    (for as long as its own guess allowed): old state.js against the new API until a hard
    reload. Each load now asks again; unchanged, the answer is a bodiless 304."""
    for name in ("app.css", "state.js", "live.js", "dashboard.js", "glance.js", "reflow.js"):
        r = requests.get(f"{web_appliance.url}/static/{name}", timeout=5)
        assert r.status_code == 200 and r.headers["Cache-Control"] == "no-cache", name
        again = requests.get(f"{web_appliance.url}/static/{name}", timeout=5,
                             headers={"If-None-Match": r.headers["ETag"], "If-Modified-Since": r.headers["Last-Modified"]})
        assert again.status_code == 304 and not again.content, name
