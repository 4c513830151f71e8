"""Property-based fuzzing (hypothesis) of the image decoder and of POST /api/analyze:
whatever the bytes, a clear rejection or a valid image, never a crash or a 5xx, and
nothing stored for a rejected upload."""
from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from edge_app.vision.stills import ImageRejected, Limits, decode_image
from tests.conftest import login

LIMITS = Limits(max_bytes=256 * 1024, max_pixels=2_000_000)


def _seed_images() -> list[bytes]:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (24, 32, 3), np.uint8)
    seeds = []
    for ext in (".jpg", ".png", ".webp"):
        ok, buf = cv2.imencode(ext, img)
        assert ok
        seeds.append(buf.tobytes())
    exif = io.BytesIO()  # a JPEG with an EXIF orientation tag (the transpose path)
    pil = Image.fromarray(img)
    ex = pil.getexif()
    ex[0x0112] = 6
    pil.save(exif, "JPEG", exif=ex)
    seeds.append(exif.getvalue())
    big = io.BytesIO()  # a header that declares far more pixels than allowed
    Image.new("L", (3000, 3000)).save(big, "PNG")
    seeds.append(big.getvalue())
    return seeds


SEEDS = _seed_images()
MAGIC = [b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"RIFF\x00\x00\x00\x00WEBP", b"GIF89a", b"BM", b""]


@st.composite
def image_like(draw) -> bytes:
    """Random bytes, a known magic number with junk after it, or a real image with bytes
    flipped, cut short or spliced."""
    kind = draw(st.sampled_from(["random", "magic", "mutate", "truncate", "splice"]))
    if kind == "random":
        return draw(st.binary(max_size=2048))
    if kind == "magic":
        return draw(st.sampled_from(MAGIC)) + draw(st.binary(max_size=2048))
    seed = bytearray(draw(st.sampled_from(SEEDS)))
    if kind == "truncate":
        return bytes(seed[: draw(st.integers(0, len(seed)))])
    if kind == "splice":
        at = draw(st.integers(0, len(seed)))
        return bytes(seed[:at] + draw(st.binary(max_size=512)) + seed[at:])
    for _ in range(draw(st.integers(1, 12))):
        i = draw(st.integers(0, len(seed) - 1))
        seed[i] = draw(st.integers(0, 255))
    return bytes(seed)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(image_like())
def test_decode_image_accepts_or_rejects_clearly(data):
    try:
        bgr = decode_image(data, LIMITS)
    except ImageRejected as exc:
        assert str(exc)  # a message a person can act on
        return
    assert isinstance(bgr, np.ndarray) and bgr.dtype == np.uint8
    assert bgr.ndim == 3 and bgr.shape[2] == 3 and bgr.shape[0] * bgr.shape[1] <= LIMITS.max_pixels


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    """One appliance (no capture loop) for all fuzzed requests."""
    from edge_app import config as config_mod
    from edge_app.runtime.appliance import Appliance

    tmp = tmp_path_factory.mktemp("fuzz")
    empty = tmp / "config.toml"
    empty.write_text("# defaults\n")
    cfg = config_mod.load(empty, {"store.data_dir": str(tmp / "data"), "web.port": 0, "indicators.backend": "none",
                                  "web.max_upload_mb": 1})
    mp = pytest.MonkeyPatch()
    mp.setenv("ENGAGE_ADMIN_PASSWORD", "fuzz-test-password-1")
    app = Appliance(cfg, with_loop=False).start()
    session = login(app.url, password="fuzz-test-password-1")
    yield app, session
    app.stop()
    mp.undo()


def uploads(app) -> int:
    return app.store.query("SELECT COUNT(*) FROM uploads")[0][0]


def stored_files(app) -> int:
    return sum(1 for p in (app.store.data_dir / "images").rglob("*") if p.is_file())


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=image_like(), filename=st.text(max_size=80), field=st.sampled_from(["image", "image", "file", ""]),
       ctype=st.sampled_from(["image/jpeg", "image/png", "application/octet-stream", "text/plain", "", "x/\x00y"]),
       raw=st.booleans())
def test_analyze_endpoint_never_fails_and_stores_nothing_rejected(web, data, filename, field, ctype, raw):
    app, session = web
    before, files_before = uploads(app), stored_files(app)
    if raw:  # not multipart at all
        r = session.post(f"{app.url}/api/analyze", data=data, headers={"Content-Type": ctype or "application/x-www-form-urlencoded"},
                         timeout=30)
    else:
        try:
            r = session.post(f"{app.url}/api/analyze", files={field: (filename, data, ctype)}, timeout=30)
        except (ValueError, UnicodeEncodeError):
            return  # requests itself refuses to build that form (e.g. a NUL in a header): nothing was sent
    assert r.status_code < 500, (r.status_code, r.text[:300])
    after = uploads(app)
    if r.status_code == 200:
        assert r.json()["upload_id"] and after == before + 1
    else:
        assert r.status_code in (400, 403, 413, 415), r.status_code
        assert "error" in r.json()
        assert after == before, "a rejected upload left a row"
        assert stored_files(app) == files_before, "a rejected upload left a file"
