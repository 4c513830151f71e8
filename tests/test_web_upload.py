"""Uploads (the HTML form and POST /api/analyze) and the live stream, over real HTTP.

Every bad upload must get a 4xx that says what was wrong and what is accepted, store
nothing, and leave the server serving."""
from __future__ import annotations

import base64
import html
import io
import logging
import re
import struct
import time
import zlib

import cv2
import numpy as np
import pytest
import requests
from PIL import Image

from edge_app import config as config_mod
from edge_app.store.database import Store
from tests.conftest import ADMIN_PASSWORD, login, wait_for


@pytest.fixture
def appliance(web_appliance):
    """Uploads go through the still-image analyzer, not the capture loop (the stream test
    below starts its own appliance with the loop)."""
    return web_appliance


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def huge_header_png() -> bytes:
    """A tiny file whose header declares 50000 x 50000 pixels."""
    ihdr = struct.pack(">IIBBBBB", 50000, 50000, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b"\0" * 100)) + png_chunk(b"IEND", b"")


def bomb_png() -> bytes:
    """A real, fully valid 8000 x 6000 (48 MP) PNG that compresses to a few kB."""
    buf = io.BytesIO()
    Image.new("1", (8000, 6000)).save(buf, "PNG")
    return buf.getvalue()


def bad_uploads(face_jpeg: bytes) -> dict[str, tuple[str, bytes, str]]:
    """name -> (file name, bytes, a phrase the error must contain)."""
    return {
        "text with a .jpg name": ("photo.jpg", b"hello, I am not a picture" * 10, "not a JPEG, PNG or WebP"),
        "GIF": ("anim.gif", b"GIF89a" + b"\0" * 200, "not a JPEG, PNG or WebP"),
        "zero bytes": ("empty.jpg", b"", "empty"),
        "truncated JPEG": ("cut.jpg", face_jpeg[: len(face_jpeg) // 3], "JPEG file is incomplete or damaged"),
        "corrupt JPEG": ("junk.jpg", face_jpeg[:20] + bytes(range(256)) * 40, "JPEG file is incomplete or damaged"),
        "iPhone HEIC": ("IMG_0001.HEIC", IPHONE_HEIC_START + bytes(2000), "HEIC format"),
        "huge declared size": ("huge.png", huge_header_png(), "limit is 40 MP: take it at a lower resolution"),
        "decompression bomb": ("bomb.png", bomb_png(), "limit is 40 MP"),
    }


# how an iPhone's HEIC photo begins: its ftyp box (major brand heic, compatible mif1 MiHE miaf MiHB heic)
IPHONE_HEIC_START = b"\x00\x00\x00\x24ftypheic\x00\x00\x00\x00mif1MiHEmiafMiHBheic"
DECODER_WORDS = ("image file is", "bytes not processed", "cannot identify", "broken data stream")


def test_a_refused_photo_says_what_to_do_and_leaves_the_decoder_s_words_to_the_log(face_jpeg, caplog):
    """A student was told 'the JPEG data is truncated or corrupt (image file is truncated (89
    bytes not processed))', and an iPhone's photo 'not a JPEG, PNG or WebP image (whatever its
    name says)', which names no way out. The decoder's words go to the log only."""
    from edge_app.vision.stills import ImageRejected, decode_image

    with caplog.at_level(logging.INFO, logger="edge_app.vision.stills"):
        with pytest.raises(ImageRejected) as cut:
            decode_image(face_jpeg[:-89])
    said = str(cut.value)
    assert "incomplete or damaged" in said and "save the photo again" in said
    assert not [w for w in DECODER_WORDS if w in said], said
    assert "image file is truncated" in caplog.text  # what the decoder said, for whoever looks into it
    with pytest.raises(ImageRejected) as heic:
        decode_image(IPHONE_HEIC_START + bytes(2000))
    said = str(heic.value)
    assert "HEIC" in said and "Settings > Camera > Formats > Most Compatible" in said and "as a JPEG" in said


def upload_count(appliance) -> int:
    return appliance.store.query("SELECT COUNT(*) FROM uploads")[0][0]


def stored_files(appliance) -> list:
    return [p for p in (appliance.store.data_dir / "images").rglob("*") if p.is_file()]


# ------------------------------------------------------------ good uploads
def test_upload_form_shows_a_table_per_face(appliance, admin_session, face_jpeg):
    r = admin_session.post(f"{appliance.url}/upload", data={"csrf": admin_session.csrf},
                           files={"image": ("grace.jpg", face_jpeg, "image/jpeg")}, timeout=60)
    upload_id = appliance.store.query("SELECT id FROM uploads")[0][0]
    # post/redirect/get: the result is its own page, so Back to it never asks to resend the form
    assert [h.status_code for h in r.history] == [303] and r.url == f"{appliance.url}/uploads/{upload_id}"
    assert r.status_code == 200
    assert 'id="faces"' in r.text
    # when, to the minute, in the device's zone (a sentence has no column heading to name it)
    assert re.search(r'id="result-when">Analysed \d\d \w{3} \d{4} \d\d:\d\d ' + re.escape(time.strftime("%Z")), r.text)
    assert r.text.count('class="face"') == 1  # one face thumbnail per row
    mapping = appliance.cfg.engagement.mapping
    assert any(level in r.text for level in mapping.values())
    for label in appliance.classifier.labels:  # every class probability is listed in the expandable cell
        assert f"{label} " in r.text
    assert "data:image/jpeg;base64," in r.text  # the preview with boxes, inline: nothing served from disk
    assert upload_count(appliance) == 1


def test_the_same_form_sent_twice_at_once_stores_one_photo(appliance, admin_session, face_jpeg):
    """A double click on Analyse: two POSTs of one form, the second while the first is
    analysed. One row; both answers lead to its result, the second saying it was sent twice."""
    from concurrent.futures import ThreadPoolExecutor

    form = {"csrf": admin_session.csrf, "attempt": "double-click-1"}

    def send(_):
        return admin_session.post(f"{appliance.url}/upload", data=form, allow_redirects=False,
                                  files={"image": ("twice.jpg", face_jpeg, "image/jpeg")}, timeout=60)

    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(send, range(2)))
    assert [r.status_code for r in answers] == [303, 303]
    assert upload_count(appliance) == 1
    upload_id = appliance.store.query("SELECT id FROM uploads")[0][0]
    assert all(r.headers["Location"].split("?")[0].endswith(f"/uploads/{upload_id}") for r in answers)
    shown = [admin_session.get(r.headers["Location"], timeout=10).text for r in answers]
    assert all('id="faces"' in page for page in shown)
    assert sorted("analysed and stored once already" in page for page in shown) == [False, True]


def test_a_refused_form_sent_again_is_analysed_again(appliance, admin_session, face_jpeg):
    """A failure is not remembered as the form's answer: the same form with a good file
    (or once the disk is freed) is analysed."""
    form = {"csrf": admin_session.csrf, "attempt": "retry-1"}
    bad = admin_session.post(f"{appliance.url}/upload", data=form, timeout=60,
                             files={"image": ("cut.jpg", face_jpeg[: len(face_jpeg) // 3], "image/jpeg")})
    assert bad.status_code == 400 and upload_count(appliance) == 0
    good = admin_session.post(f"{appliance.url}/upload", data=form, timeout=60, allow_redirects=False,
                              files={"image": ("whole.jpg", face_jpeg, "image/jpeg")})
    assert upload_count(appliance) == 1
    upload_id = appliance.store.query("SELECT id FROM uploads")[0][0]
    assert good.status_code == 303 and good.headers["Location"].endswith(f"/uploads/{upload_id}")
    assert 'id="faces"' in admin_session.get(good.headers["Location"], timeout=10).text
    assert 'name="attempt" value="retry-1"' not in bad.text  # the refusal's form is a new one


def test_api_analyze_reports_several_faces(appliance, admin_session, face_jpeg):
    face = cv2.imdecode(np.frombuffer(face_jpeg, np.uint8), cv2.IMREAD_COLOR)
    pair = np.hstack([face, np.full((face.shape[0], 80, 3), 255, np.uint8), cv2.flip(face, 1)])
    ok, buf = cv2.imencode(".png", pair)
    r = admin_session.post(f"{appliance.url}/api/analyze", files={"image": ("pair.png", buf.tobytes(), "image/png")},
                           timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["faces"]) >= 2
    labels = set(appliance.classifier.labels)
    for f in body["faces"]:
        assert set(f["probabilities"]) == labels
        assert abs(sum(f["probabilities"].values()) - 1.0) < 0.02
        assert f["engagement"] == appliance.cfg.engagement.mapping[f["emotion"]]
        assert 0.0 <= f["confidence"] <= 1.0
    assert body["width"] == pair.shape[1]
    row = appliance.store.query("SELECT face_count FROM uploads WHERE id = ?", (body["upload_id"],))[0]
    assert row["face_count"] == len(body["faces"])


STUDENT_PW = "student-pw-123"


def student_upload(appliance, name: str, face_jpeg: bytes) -> tuple[requests.Session, int]:
    """A student with one analysed photo (kept as a thumbnail, the default): their session and its id."""
    appliance.accounts.create_user(name, STUDENT_PW, "student")
    s = login(appliance.url, name, STUDENT_PW)
    r = s.post(f"{appliance.url}/api/analyze", files={"image": ("me.jpg", face_jpeg, "image/jpeg")}, timeout=60)
    assert r.status_code == 200, r.text
    return s, r.json()["upload_id"]


def stored(appliance, upload_id: int) -> tuple[int, int]:
    """(upload rows, face rows) of that upload in the database."""
    q = appliance.store.query
    return (q("SELECT COUNT(*) FROM uploads WHERE id = ?", (upload_id,))[0][0],
            q("SELECT COUNT(*) FROM upload_faces WHERE upload_id = ?", (upload_id,))[0][0])


def test_every_photo_in_a_long_history_can_be_found_opened_and_deleted(appliance, face_jpeg):
    """The history listed only the latest 10: a student with 12 photos could not find, open
    or delete the 2 oldest (the Privacy section promises each can be taken back). It is paged."""
    ann, _ = student_upload(appliance, "ann", face_jpeg)  # the newest, analysed for real
    ann_id = appliance.accounts.find("ann").id
    face = {"box": [1, 2, 3, 4], "emotion": "neutral", "confidence": 0.9, "probabilities": {"neutral": 0.9},
            "engagement": "Engaged - paying attention"}
    older = [appliance.store.add_upload(ann_id, f"old-{i}.jpg", 10, 10, [face]) for i in range(11)]
    appliance.store.execute("UPDATE uploads SET created = created - 3600 + id WHERE filename LIKE 'old-%'")

    def listed(html: str) -> list[str]:
        table = html.split('<table id="history">', 1)[1].split("</table>", 1)[0]
        return re.findall(r'href="/uploads/(\d+)">[^<]*\.jpg<', table)

    first = ann.get(f"{appliance.url}/upload", timeout=10).text
    assert len(listed(first)) == 10 and "Photos 1 to 10 of your 12" in first
    created = appliance.store.query("SELECT created FROM uploads WHERE id = ?", (older[-1],))[0][0]
    assert time.strftime("%d %b %Y %H:%M<", time.localtime(created)) in first  # with its year
    assert 'href="/upload?page=2#your-photos"' in first and "Page 1 of 2" in first
    second = ann.get(f"{appliance.url}/upload", params={"page": 2}, timeout=10).text
    assert [int(i) for i in listed(second)] == older[1::-1]  # the two oldest, newest first
    assert "Photos 11 to 12 of your 12" in second and 'href="/upload?page=1#your-photos"' in second
    assert listed(ann.get(f"{appliance.url}/upload", params={"page": 99}, timeout=10).text) == listed(second)
    assert listed(ann.get(f"{appliance.url}/upload", params={"page": "x"}, timeout=10).text) == listed(first)
    oldest = older[0]
    assert ann.get(f"{appliance.url}/uploads/{oldest}", timeout=10).status_code == 200
    r = ann.post(f"{appliance.url}/uploads/{oldest}/delete", data={"csrf": ann.csrf}, timeout=10)
    assert r.status_code == 200 and stored(appliance, oldest) == (0, 0)
    assert "Photos 1 to 10 of your 11" in ann.get(f"{appliance.url}/upload", timeout=10).text
    assert str(oldest) not in listed(ann.get(f"{appliance.url}/upload", params={"page": 2}, timeout=10).text)


def test_a_student_deletes_their_own_photo_and_no_one_elses(appliance, face_jpeg):
    ann, upload_id = student_upload(appliance, "ann", face_jpeg)
    bob, _ = student_upload(appliance, "bob", face_jpeg)
    files = stored_files(appliance)
    assert len(files) == 2 and stored(appliance, upload_id) == (1, 1)
    page = ann.get(f"{appliance.url}/uploads/{upload_id}", timeout=10).text
    assert f'action="/uploads/{upload_id}/delete"' in page and "Delete it for good" in page
    assert "it can be wrong, and it is not a judgement of anyone" in page  # a level read by a student about themselves
    days = appliance.cfg.store.retention_days  # plain words where a student reads them, not "the retention period"
    assert f"deleted from this device now, instead of automatically after {days} days" in page
    assert re.findall(r"<h1[^>]*>([^<]*)</h1>", page) == ["Results for me.jpg"]  # the page's own heading
    # ... but not its title, which a shared computer's browser history keeps after the photo is deleted
    assert "me.jpg" not in re.search(r"<title>(.*?)</title>", page, re.S).group(1)
    assert requests.delete(f"{appliance.url}/api/uploads/{upload_id}", timeout=10).status_code == 401  # no log-in
    # someone else's photo: the same "not found" as for none, by the form and by the API
    r = bob.post(f"{appliance.url}/uploads/{upload_id}/delete", data={"csrf": bob.csrf}, timeout=10)
    assert r.status_code == 404
    assert bob.delete(f"{appliance.url}/api/uploads/{upload_id}", timeout=10).status_code == 404
    # a form from another site (no token) deletes nothing
    no_token = requests.Session()
    no_token.cookies.update(ann.cookies)
    assert no_token.post(f"{appliance.url}/uploads/{upload_id}/delete", timeout=10).status_code == 403
    assert stored(appliance, upload_id) == (1, 1) and len(stored_files(appliance)) == 2
    r = ann.post(f"{appliance.url}/uploads/{upload_id}/delete", data={"csrf": ann.csrf}, timeout=10,
                 allow_redirects=False)
    assert r.status_code == 303 and "/upload?note=" in r.headers["Location"] and "deleted" not in r.headers["Location"]
    assert "The photo and its results were deleted." in ann.get(r.headers["Location"], timeout=10).text
    assert stored(appliance, upload_id) == (0, 0)
    assert [f for f in files if f.exists()] == stored_files(appliance) and len(stored_files(appliance)) == 1  # bob's
    gone = ann.get(f"{appliance.url}/uploads/{upload_id}", timeout=10)
    assert gone.status_code == 404 and f"deleted, by hand or automatically after {days} days" in gone.text
    assert appliance.store.query("SELECT COUNT(*) FROM audit")[0][0] == 0  # one's own photo: not an admin's change
    # the page says only what this session's own form led to: a link cannot make it say something else
    crafted = ann.get(f"{appliance.url}/upload", params={"done": "Your password expired", "sig": "0" * 32}, timeout=10)
    assert "Your password expired" not in crafted.text
    # nor can another user's session read this session's outcome by its address
    assert "were deleted" not in bob.get(r.headers["Location"], timeout=10).text


def test_a_photos_back_link_goes_where_it_was_reached_from(appliance, admin_session, face_jpeg):
    """An admin's own photo, opened from "Your photos", said "Back to the log"."""
    _, students = student_upload(appliance, "gus", face_jpeg)
    r = admin_session.post(f"{appliance.url}/api/analyze", files={"image": ("mine.jpg", face_jpeg, "image/jpeg")},
                           timeout=60)
    own = r.json()["upload_id"]

    def back(upload_id: int) -> str:
        page = admin_session.get(f"{appliance.url}/uploads/{upload_id}", timeout=10).text
        return page.split('id="back"')[0].rsplit("<a href=", 1)[1] + page.split('id="back">')[1].split("</a>")[0]

    assert '"/upload"' in back(own) and "your photos" in back(own)
    assert "/admin/log?kind=upload" in back(students) and "the log" in back(students)  # a student's, from the log


def test_a_stored_photo_is_drawn_at_the_size_its_first_result_was(appliance, face_jpeg):
    """Kept as a 320-px thumbnail, a stored photo was annotated at 320 px, where six faces'
    labels had no room beside their faces and landed beside others. It is drawn at the
    width the first result page used (at most 960 px), its boxes scaled from the original."""
    photo = cv2.imdecode(np.frombuffer(face_jpeg, np.uint8), cv2.IMREAD_COLOR)
    big = cv2.resize(photo, (1200, round(photo.shape[0] * 1200 / photo.shape[1])))
    ok, encoded = cv2.imencode(".jpg", big)
    s, upload_id = student_upload(appliance, "hal", encoded.tobytes())
    page = s.get(f"{appliance.url}/uploads/{upload_id}", timeout=10).text
    uris = re.findall(r'src="data:image/jpeg;base64,([^"]+)"', page)
    widths = [cv2.imdecode(np.frombuffer(base64.b64decode(u), np.uint8), cv2.IMREAD_COLOR).shape[1] for u in uris]
    assert 960 in widths, widths  # the annotated picture (the rest are the 96-px face crops)
    kept = appliance.store.query("SELECT image_path FROM uploads WHERE id = ?", (upload_id,))[0][0]
    assert cv2.imread(str(appliance.store.image_file(kept))).shape[1] == 320  # what is kept stays small


def test_a_student_deletes_all_their_photos_and_only_theirs(appliance, face_jpeg):
    eve, first = student_upload(appliance, "eve", face_jpeg)
    for _ in range(11):  # more than a page of the history
        assert eve.post(f"{appliance.url}/api/analyze", files={"image": ("me.jpg", face_jpeg, "image/jpeg")},
                        timeout=60).status_code == 200
    _, fay_upload = student_upload(appliance, "fay", face_jpeg)
    page = eve.get(f"{appliance.url}/upload", timeout=10).text
    assert "Photos 1 to 10 of your 12" in page and "Delete all 12 for good" in page
    no_token = requests.Session()  # a form from another site: eve's cookie, no token
    no_token.cookies.update(eve.cookies)
    assert no_token.post(f"{appliance.url}/uploads/delete-all", timeout=10).status_code == 403
    assert len(stored_files(appliance)) == 13
    r = eve.post(f"{appliance.url}/uploads/delete-all", data={"csrf": eve.csrf}, timeout=10)
    assert r.status_code == 200 and "/upload?note=" in r.url
    assert 'id="upload-done">All your photos and their results were deleted.' in r.text and "You have no photos stored" in r.text
    eve_id = appliance.accounts.find("eve").id
    assert appliance.store.query("SELECT COUNT(*) FROM uploads WHERE user_id = ?", (eve_id,))[0][0] == 0
    assert stored(appliance, first) == (0, 0)
    assert stored(appliance, fay_upload) == (1, 1) and len(stored_files(appliance)) == 1  # fay's stays


def test_an_admin_deletes_a_students_photo_and_it_is_audited(appliance, admin_session, face_jpeg):
    _, upload_id = student_upload(appliance, "cy", face_jpeg)
    r = admin_session.delete(f"{appliance.url}/api/uploads/{upload_id}", timeout=10)
    assert r.status_code == 200 and r.json() == {"deleted": upload_id}
    assert stored(appliance, upload_id) == (0, 0) and stored_files(appliance) == []
    audit = appliance.store.query("SELECT actor, action, target, detail FROM audit")
    assert [tuple(a)[:3] for a in audit] == [("admin", "deleted upload", "cy")]
    # the audit, kept a year, names the photo by number: its file's name goes with the photo
    assert audit[0]["detail"].startswith(f"photo {upload_id} of ") and "me.jpg" not in audit[0]["detail"]
    r = admin_session.delete(f"{appliance.url}/api/uploads/{upload_id}", timeout=10)
    assert r.status_code == 404 and "retention" in r.json()["error"]
    # by the form, from the log: back to the log, which says so
    # a name with a dot: the note's random id (URL-safe base64) cannot hold it by chance ("dee" once did)
    _, other = student_upload(appliance, "dee.fox", face_jpeg)
    r = admin_session.post(f"{appliance.url}/uploads/{other}/delete", data={"csrf": admin_session.csrf}, timeout=10)
    assert r.status_code == 200 and "/admin/log?kind=upload&note=" in r.url and "dee.fox" not in r.url
    assert 'id="log-done">The photo and its results were deleted.' in r.text and stored(appliance, other) == (0, 0)


def test_no_face_gives_a_clear_message(appliance, admin_session):
    sky = np.tile(np.linspace(80, 220, 400, dtype=np.uint8), (300, 1))
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(sky, cv2.COLOR_GRAY2BGR))
    r = admin_session.post(f"{appliance.url}/upload", data={"csrf": admin_session.csrf},
                           files={"image": ("sky.jpg", buf.tobytes(), "image/jpeg")}, timeout=60)
    assert r.status_code == 200
    assert 'id="no-face"' in r.text and "No face was found" in r.text
    api = admin_session.post(f"{appliance.url}/api/analyze", files={"image": ("sky.jpg", buf.tobytes())}, timeout=60)
    assert api.json()["faces"] == []


def test_webp_is_accepted(appliance, admin_session, face_jpeg):
    buf = io.BytesIO()
    Image.open(io.BytesIO(face_jpeg)).save(buf, "WEBP")
    r = admin_session.post(f"{appliance.url}/api/analyze", files={"image": ("g.webp", buf.getvalue())}, timeout=60)
    assert r.status_code == 200 and len(r.json()["faces"]) >= 1


def test_a_path_in_the_file_name_is_neutralised(appliance, admin_session, face_jpeg, tmp_path):
    for name in ["../../../../tmp/evil.jpg", "..\\..\\windows\\evil.jpg", "/etc/passwd"]:
        r = admin_session.post(f"{appliance.url}/api/analyze", files={"image": (name, face_jpeg, "image/jpeg")},
                               timeout=60)
        assert r.status_code == 200
    names = [r[0] for r in appliance.store.query("SELECT filename FROM uploads ORDER BY id")]
    assert names == ["evil.jpg", "evil.jpg", "passwd"]
    files = stored_files(appliance)
    assert len(files) == 3
    root = (appliance.store.data_dir / "images" / "uploads").resolve()
    assert all(f.resolve().parent == root and f.name.split(".")[0].isdigit() for f in files)


# ------------------------------------------------------------ bad uploads
def test_every_bad_upload_is_refused_by_the_api_and_stores_nothing(appliance, admin_session, face_jpeg):
    for what, (name, data, phrase) in bad_uploads(face_jpeg).items():
        r = admin_session.post(f"{appliance.url}/api/analyze", files={"image": (name, data, "image/jpeg")}, timeout=60)
        assert 400 <= r.status_code < 500, what
        error = r.json()["error"]
        assert phrase in error, f"{what}: {error}"
        assert not [w for w in DECODER_WORDS if w in error], f"{what}: {error}"
        assert "Accepted: JPEG, PNG or WebP up to 10 MB and 40 MP" in error, what
    assert upload_count(appliance) == 0 and stored_files(appliance) == []
    assert admin_session.get(f"{appliance.url}/api/state", timeout=10).status_code == 200  # still serving


def test_every_bad_upload_gets_an_error_page_from_the_form(appliance, admin_session, face_jpeg):
    for what, (name, data, phrase) in bad_uploads(face_jpeg).items():
        r = admin_session.post(f"{appliance.url}/upload", data={"csrf": admin_session.csrf},
                               files={"image": (name, data, "image/jpeg")}, timeout=60)
        assert r.status_code == 400, what
        assert 'id="upload-error"' in r.text and phrase in r.text, what
        assert "Accepted: JPEG, PNG or WebP files up to 10 MB and 40 megapixels." in r.text
    r = admin_session.post(f"{appliance.url}/upload", data={"csrf": admin_session.csrf}, timeout=10)
    assert r.status_code == 400 and "no file in the form field" in r.text
    assert upload_count(appliance) == 0 and stored_files(appliance) == []


def test_two_files_in_the_image_field_are_refused_not_one_picked(appliance, admin_session, face_jpeg):
    """Bottle keeps the last of two: which photo was analysed and stored depended on the order sent."""
    two = [("image", ("a.jpg", face_jpeg, "image/jpeg")), ("image", ("b.jpg", face_jpeg, "image/jpeg"))]
    r = admin_session.post(f"{appliance.url}/api/analyze", files=two, timeout=60)
    assert r.status_code == 400 and "2 files in the field 'image'" in r.json()["error"], r.text[:200]
    r = admin_session.post(f"{appliance.url}/upload", data={"csrf": admin_session.csrf}, files=two, timeout=60)
    assert r.status_code == 400 and "send one photo per upload" in r.text
    assert upload_count(appliance) == 0 and stored_files(appliance) == []


def test_an_oversized_upload_is_refused_with_413(make_appliance, cfg, face_jpeg):
    small = config_mod.with_changes(cfg, {"web.max_upload_mb": 1})
    appliance = make_appliance(small, with_loop=False)
    s = login(appliance.url)
    big = face_jpeg + b"\0" * (2 * 1024 * 1024)
    r = s.post(f"{appliance.url}/api/analyze", files={"image": ("big.jpg", big, "image/jpeg")}, timeout=60)
    assert r.status_code == 413 and "the limit is 1 MB" in r.json()["error"]
    r = s.post(f"{appliance.url}/upload", data={"csrf": s.csrf}, files={"image": ("big.jpg", big, "image/jpeg")},
               timeout=60)
    assert r.status_code == 413 and "the limit is 1 MB" in r.text
    assert upload_count(appliance) == 0
    ok = s.post(f"{appliance.url}/api/analyze", files={"image": ("g.jpg", face_jpeg, "image/jpeg")}, timeout=60)
    assert ok.status_code == 200  # the server still serves



@pytest.mark.parametrize("path", ["/api/analyze", "/upload"])
def test_a_body_declared_too_large_is_refused_before_it_is_read(appliance, path):
    """The token is read from the form, and reading the form read the whole body as large as
    declared into a temporary file: a student's 300 MB went to /tmp in a second."""
    import socket

    appliance.accounts.create_user("kim", STUDENT_PW, "student")
    s = login(appliance.url, "kim", STUDENT_PW)
    total = 300 << 20
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: ee_session={s.cookies['ee_session']}\r\n"
            f"X-CSRF-Token: {s.csrf}\r\nContent-Type: multipart/form-data; boundary=b0\r\n"
            f"Content-Length: {total}\r\n\r\n--b0\r\nContent-Disposition: form-data; name=\"image\"; "
            "filename=\"big.jpg\"\r\n\r\n").encode()
    sock = socket.create_connection(("127.0.0.1", appliance.server.port), timeout=10)
    sent, answer, piece, cut = 0, b"", b"a" * (1 << 20), False
    try:
        sock.sendall(head)
        sock.setblocking(False)
        while sent < total - len(piece) and not answer:
            try:
                sent += sock.send(piece)
            except BlockingIOError:
                time.sleep(0.005)
            except (BrokenPipeError, ConnectionResetError):  # answered and closed between our recv and send
                cut = True
                sock.settimeout(5)
                try:
                    answer = sock.recv(65536)
                except OSError:  # the reset may drop the answer on our side: the close is the refusal
                    pass
                break
            try:
                answer = sock.recv(65536)
            except BlockingIOError:
                pass
    finally:
        sock.close()
    assert answer.startswith(b"HTTP/1.1 413") or (cut and not answer), answer[:200]
    # the limit's worth (10 MB: a photo a little too large is read so its sender sees why) and the
    # sockets' buffers; the rest is never read (it read 40 MB, on weak Wi-Fi minutes of waiting)
    assert sent < 24 << 20, f"the server read {sent >> 20} MB before refusing"
    assert upload_count(appliance) == 0


def test_a_refused_upload_that_stops_sending_is_answered_without_a_traceback(web_appliance, caplog):
    """Declared 50 MB, sent 100 kB, then nothing: the refusal's read of the body timed out and
    wrote two 30-line tracebacks to the journal, at will, for any logged-in user."""
    import socket

    web_appliance.server.httpd.timeout = 1  # cheroot's per-read timeout (10 s), shortened for the test
    s = login(web_appliance.url)
    head = (f"POST /api/analyze HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: ee_session={s.cookies['ee_session']}\r\n"
            f"X-CSRF-Token: {s.csrf}\r\nContent-Type: multipart/form-data; boundary=b0\r\n"
            f"Content-Length: {50 << 20}\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", web_appliance.server.port), timeout=15) as sock:
        sock.sendall(head + b"a" * 100_000)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert not [r for r in caplog.records if r.levelname == "ERROR"], [r.getMessage() for r in caplog.records]

def test_api_analyze_needs_a_session(appliance, face_jpeg):
    r = requests.post(f"{appliance.url}/api/analyze", files={"image": ("g.jpg", face_jpeg)}, timeout=30)
    assert r.status_code == 401 and "log in" in r.json()["error"]
    assert upload_count(appliance) == 0


# ------------------------------------------------------------ privacy: what is kept
@pytest.mark.parametrize("keep", ["none", "thumbnail", "full"])
def test_keep_uploads_setting(make_appliance, cfg, face_jpeg, keep):
    appliance = make_appliance(config_mod.with_changes(cfg, {"privacy.keep_uploads": keep}), with_loop=False)
    s = login(appliance.url)
    r = s.post(f"{appliance.url}/api/analyze", files={"image": ("g.jpg", face_jpeg)}, timeout=60)
    assert r.status_code == 200
    files = stored_files(appliance)
    path = appliance.store.query("SELECT image_path FROM uploads")[0][0]
    if keep == "none":
        assert files == [] and path is None
    else:
        assert len(files) == 1 and path
        width = Image.open(files[0]).size[0]
        original = Image.open(io.BytesIO(face_jpeg)).size[0]
        assert width == (320 if keep == "thumbnail" else original)
    # the form's answer leads to the result's own page (post/redirect/get), which shows the
    # picture drawn from the photo itself the first time, kept or not
    sent = s.post(f"{appliance.url}/upload", data={"csrf": s.csrf}, files={"image": ("g.jpg", face_jpeg)},
                  allow_redirects=False, timeout=60)
    assert sent.status_code == 303 and re.fullmatch(r"/uploads/\d+", sent.headers["Location"].replace(appliance.url, ""))
    first = s.get(appliance.url + sent.headers["Location"].replace(appliance.url, ""), timeout=10).text
    assert 'class="preview"' in first and 'alt="Face 1"' in first and 'id="faces"' in first
    assert ('id="shown-once"' in first) == (keep == "none")
    again = s.get(appliance.url + sent.headers["Location"].replace(appliance.url, ""), timeout=10).text  # a reload
    assert 'id="faces"' in again and ('id="not-kept"' in again) == (keep == "none")
    assert ('class="preview"' in again) == (keep != "none") and 'id="shown-once"' not in again
    assert len(stored_files(appliance)) == (0 if keep == "none" else 2)


def test_a_photo_the_device_could_not_save_is_not_blamed_on_the_privacy_setting(appliance, face_jpeg):
    """With keep_uploads = thumbnail and the images folder unwritable (a full disk does the
    same), the result page said "not kept (privacy setting)": nobody could tell the device
    had a fault. It says the device could not save it, and the results are still there."""
    blocker = appliance.store.data_dir / "images" / "uploads"
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_bytes(b"a file where the folder should be")  # as root, a read-only mode would not stop the write
    try:
        s = login(appliance.url)
        r = s.post(f"{appliance.url}/upload", data={"csrf": s.csrf}, files={"image": ("g.jpg", face_jpeg)}, timeout=60)
        assert r.status_code == 200 and 'id="faces"' in r.text and 'class="preview"' in r.text  # the analysis stands
        assert 'id="not-saved"' in r.text and "could not save it" in r.text and "privacy setting" not in r.text
        assert "Not a directory" in r.text or "File exists" in r.text  # the admin gets what failed, to fix it
        assert appliance.store.query("SELECT image_path FROM uploads")[0][0] is None
        again = s.get(r.url, timeout=10).text  # a reload: the setting keeps photos, so no "privacy setting" alone
        assert 'id="faces"' in again and 'id="not-on-device"' in again and 'id="not-kept"' not in again
    finally:
        blocker.unlink()


# ------------------------------------------------------------ live
def test_live_stream_needs_a_session_and_is_bounded(make_appliance, cfg):
    appliance = make_appliance(config_mod.with_changes(cfg, {"web.max_viewers": 2}))
    url = f"{appliance.url}/live.mjpg"
    assert requests.get(url, timeout=10, stream=True).status_code == 401
    s = login(appliance.url)
    first, second = s.get(url, stream=True, timeout=10), s.get(url, stream=True, timeout=10)
    try:
        assert first.status_code == second.status_code == 200
        assert first.headers["Content-Type"].startswith("multipart/x-mixed-replace")
        # kept: a generator dropped at once closed its connection (urllib3 closes it on GeneratorExit), and
        # the server, writing the next frame, freed that slot, before or after the third asked (a flake)
        reading = first.iter_content(4096)
        chunk = next(reading)
        assert b"--frame" in chunk and b"image/jpeg" in chunk
        third = s.get(url, stream=True, timeout=10)
        assert third.status_code == 503 and "already has 2 viewers" in third.json()["error"]
        assert s.get(f"{appliance.url}/admin", timeout=10).status_code == 200  # pages still answer
    finally:
        first.close()
        second.close()


def test_live_page_and_timeline(appliance, admin_session):
    page = admin_session.get(f"{appliance.url}/live", timeout=10)
    assert page.status_code == 200 and 'src="/live.mjpg"' in page.text and 'id="timeline"' in page.text
    assert "<script>" not in page.text  # the CSP forbids inline scripts: the chart comes from /static
    assert 'id="state-meaning"' in page.text and "not a judgement of anyone" in page.text
    # without JavaScript: no empty <img> beside the <noscript> one (a broken box), and the chart's place
    # says why it is empty, not "loading" for ever; live.js puts the picture in and the chart over the words
    outside = re.sub(r"<template\b.*?</template>|<noscript>.*?</noscript>", "", page.text, flags=re.S)
    assert "<img" not in outside and '<template id="stream-template"><img id="stream"' in page.text
    chart = re.search(r'<div[^>]*id="timeline".*?</div>', page.text, re.S).group(0)  # the chart's place, as served
    assert "loading" not in chart and "The chart needs JavaScript" in chart and 'href="/admin/log"' in page.text
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    appliance.store.log_state_change(time.time() - 30, "Not engaged", "Not engaged", "sadness", 0.6)
    t = admin_session.get(f"{appliance.url}/api/timeline?minutes=5", timeout=10).json()
    assert t["now"] - t["from"] == pytest.approx(300, abs=1)
    assert any(p["group"] == "Not engaged" for p in t["points"])
    assert all(t["from"] <= p["t"] <= t["now"] for p in t["points"])
    # the chart tells time in the device's zone, as its log does, not in the viewer's browser's
    assert t["utc_offset_s"] == time.localtime(t["now"]).tm_gmtoff and t["zone"] == time.strftime("%Z")
    assert admin_session.get(f"{appliance.url}/api/timeline?minutes=abc", timeout=10).status_code == 400
    js = admin_session.get(f"{appliance.url}/static/live.js", timeout=10)
    assert js.status_code == 200 and "/api/timeline" in js.text


def test_a_students_chart_begins_at_their_log_in(appliance, admin_session):
    """A desk is shared: a student who logged in at the start of their lesson saw on the
    Live page's chart the last minutes of whoever sat there before (the API gives an hour).
    Their chart begins at their log-in, the level then first; an instructor's and an
    admin's keep the desk's whole span."""
    appliance.accounts.create_user("sam", "sam-password-1", "student")
    appliance.accounts.create_user("ines", "ines-password-1", "instructor")
    now = time.time()
    appliance.store.log_state_change(now - 240, "Not engaged - bored", "Not engaged", "sadness", 0.7)  # the one before
    sam = login(appliance.url, "sam", "sam-password-1")
    logged_in = time.time()
    own = sam.get(f"{appliance.url}/api/timeline?minutes=10", timeout=10).json()
    assert own["from"] == pytest.approx(own["now"] - 600, abs=1)  # the same ten minutes' axis
    assert own["own_from"] == pytest.approx(logged_in, abs=2) and own["points"], own
    assert own["points"][0]["t"] == own["own_from"] and all(p["t"] >= own["own_from"] for p in own["points"])
    at_log_in = appliance.store.query("SELECT grp FROM state_changes WHERE t <= ? ORDER BY t DESC LIMIT 1", (own["own_from"],))
    assert own["points"][0]["group"] == at_log_in[0]["grp"]  # the level when they logged in
    for viewer in (admin_session, login(appliance.url, "ines", "ines-password-1")):
        whole = viewer.get(f"{appliance.url}/api/timeline?minutes=10", timeout=10).json()
        assert whole["own_from"] is None and min(p["t"] for p in whole["points"]) <= now - 240, whole["points"]
    page = sam.get(f"{appliance.url}/live", timeout=10).text
    assert "begins when you logged in" in page
    assert "The chart needs JavaScript" in page and "/admin/log" not in page  # no page of an admin's
    assert "begins when you logged in" not in admin_session.get(f"{appliance.url}/live", timeout=10).text


def test_the_timeline_after_a_restart_is_in_time_order(make_appliance, cfg):
    """The run before logged "Engaged" 5 minutes ago; this one started now. The chart draws
    from each point to the next, so a point out of order loses a stretch or draws one twice."""
    before = Store(cfg.store.data_dir)
    before.log_state_change(time.time() - 300, "Engaged - paying attention", "Engaged", "neutral", 0.9)
    before.close()
    appliance = make_appliance(cfg)
    session = login(appliance.url)
    wait_for(lambda: appliance.store.query("SELECT COUNT(*) FROM state_changes")[0][0] >= 2)  # the start's Absent
    points = session.get(f"{appliance.url}/api/timeline?minutes=10", timeout=10).json()["points"]
    assert [p["t"] for p in points] == sorted(p["t"] for p in points)
    assert points[0]["group"] == "Engaged" and "Absent" in [p["group"] for p in points[1:]]


def test_a_second_send_waits_for_the_first_analysis_and_gets_its_upload():
    """``Submissions`` alone: the second claim of a token blocks until the first is done
    (then gets its id) or failed (then analyses itself); another user's same token is theirs."""
    import threading

    from edge_app.web.resubmit import Submissions

    subs = Submissions()
    assert subs.claim(1, "t") is None  # the first: analyse
    got: list = []
    second = threading.Thread(target=lambda: got.append(subs.claim(1, "t")))
    second.start()
    assert subs.claim(2, "t", wait_s=0.1) is None  # another user's form, not this one
    assert got == []
    subs.done(1, "t", 41)
    second.join(10)
    assert got == [41]
    assert subs.claim(1, "t") == 41  # a reload later: the same answer
    assert subs.claim(1, "u") is None
    waiting = threading.Thread(target=lambda: got.append(subs.claim(1, "u")))
    waiting.start()
    subs.failed(1, "u")
    waiting.join(10)
    assert got == [41, None]  # the first failed: this one analyses
    assert subs.claim(1, "") is None and subs.claim(1, "") is None  # no token, nothing to match


def test_remembered_forms_are_bounded():
    from edge_app.web.resubmit import Submissions

    subs = Submissions(max_tokens=3)
    for i in range(5):
        assert subs.claim(1, f"t{i}") is None
        subs.done(1, f"t{i}", i)
    assert len(subs._seen) <= 3
    assert subs.claim(1, "t4") == 4
    assert subs.claim(1, "t0", wait_s=0.1) is None  # forgotten: analysed again, as before


def test_another_photo_sent_with_the_same_form_is_analysed(appliance, admin_session, face_jpeg):
    """The same form (its attempt token) with another file is another photo, not a reload:
    a student who picked the wrong photo and chose another while the first was still being
    analysed (or a browser that restores the form's hidden field on Back, as Firefox does)
    was led to the first photo's result, told it was 'stored once already', and the photo
    they chose was never analysed."""
    form = {"csrf": admin_session.csrf, "attempt": "same-form-1"}
    first = admin_session.post(f"{appliance.url}/upload", data=form, timeout=60, allow_redirects=False,
                               files={"image": ("first.jpg", face_jpeg, "image/jpeg")})
    assert first.status_code == 303 and upload_count(appliance) == 1
    other = cv2.imencode(".jpg", cv2.flip(cv2.imdecode(np.frombuffer(face_jpeg, np.uint8), cv2.IMREAD_COLOR), 1))[1]
    second = admin_session.post(f"{appliance.url}/upload", data=form, timeout=60, allow_redirects=False,
                                files={"image": ("second.jpg", other.tobytes(), "image/jpeg")})
    ids = [r[0] for r in appliance.store.query("SELECT id FROM uploads ORDER BY id")]
    assert [r[0] for r in appliance.store.query("SELECT filename FROM uploads ORDER BY id")] == ["first.jpg",
                                                                                                 "second.jpg"]
    assert second.status_code == 303 and second.headers["Location"].endswith(f"/uploads/{ids[1]}")
    shown = admin_session.get(second.headers["Location"], timeout=10).text
    assert 'id="faces"' in shown and "second.jpg" in shown and "once already" not in shown
    again = admin_session.post(f"{appliance.url}/upload", data=form, timeout=60, allow_redirects=False,
                               files={"image": ("second.jpg", other.tobytes(), "image/jpeg")})
    assert again.status_code == 303 and upload_count(appliance) == 2  # the same photo again: still once
    assert "once already" in admin_session.get(again.headers["Location"], timeout=10).text


def test_a_form_sent_again_after_its_photo_was_deleted_says_so(appliance, admin_session, face_jpeg):
    """Reloading a result page whose photo was deleted since (by its owner, an admin or the
    retention period) led to 'No such result' (404) with the 'here is its result' note
    left in the address; it now says what happened, and stores nothing again: the photo
    was deleted on purpose."""
    form = {"csrf": admin_session.csrf, "attempt": "deleted-1"}

    def send():
        return admin_session.post(f"{appliance.url}/upload", data=form, timeout=60,
                                  files={"image": ("gone.jpg", face_jpeg, "image/jpeg")})

    assert send().status_code == 200
    upload_id = appliance.store.query("SELECT id FROM uploads")[0][0]
    assert admin_session.post(f"{appliance.url}/uploads/{upload_id}/delete", data={"csrf": admin_session.csrf},
                              timeout=10).status_code == 200
    again = send()
    assert again.status_code == 410, (again.status_code, again.url)
    assert "was deleted after it was analysed" in again.text and "nothing was stored again" in again.text
    assert "Accepted" not in again.text.split('id="upload-error">', 1)[1].split("</p>", 1)[0]  # not about the file
    assert 'name="attempt"' in again.text and 'name="attempt" value="deleted-1"' not in again.text
    assert upload_count(appliance) == 0


def test_a_failed_first_send_lets_one_waiting_send_analyse_and_the_others_wait_for_it():
    """A triple click whose first analysis failed (the disk was full a moment): the two
    waiting sends both analysed and stored the photo; now one does, the other gets its upload."""
    import threading

    from edge_app.web.resubmit import Submissions

    subs = Submissions()
    assert subs.claim(1, "t", "f") is None
    got: list = []
    waiting = [threading.Thread(target=lambda: got.append(subs.claim(1, "t", "f"))) for _ in range(2)]
    for t in waiting:
        t.start()
    wait_for(lambda: all(t.is_alive() for t in waiting))
    subs.failed(1, "t", "f")
    wait_for(lambda: got == [None], timeout=10)  # one analyses ...
    assert sum(t.is_alive() for t in waiting) == 1  # ... the other waits for it
    subs.done(1, "t", 7, content="f")
    for t in waiting:
        t.join(10)
    assert got == [None, 7]


def test_a_form_still_being_analysed_is_not_forgotten_by_the_bound():
    """Many forms sent meanwhile (another user's script) must not drop a token whose photo
    is still being analysed: its second click then waited the full WAIT_S and stored the
    photo again."""
    import threading

    from edge_app.web.resubmit import Submissions

    subs = Submissions(max_tokens=3)
    assert subs.claim(1, "slow", "f") is None
    for i in range(5):
        assert subs.claim(2, f"t{i}", "g") is None
        subs.done(2, f"t{i}", i, content="g")
    assert len(subs._seen) <= 3
    got: list = []
    second = threading.Thread(target=lambda: got.append(subs.claim(1, "slow", "f", wait_s=30)))
    second.start()
    subs.done(1, "slow", 99, content="f")
    second.join(10)
    assert got == [99]


def test_a_form_sent_again_after_a_restart_leads_to_its_first_result(cfg, make_appliance, face_jpeg):
    """The remembered forms lived in memory: after a restart of the device (or of the web
    process) reloading a result page stored the photo a second time (a second row in the
    student's history and the admin's log, a second kept image). The form's key is kept
    with its upload row, so the restarted server leads to the first result."""
    first_run = make_appliance(with_loop=False)
    session = login(first_run.url)
    form = {"csrf": session.csrf, "attempt": "after-restart-1"}

    def send(url, data=face_jpeg):
        return session.post(f"{url}/upload", data=form, timeout=60, allow_redirects=False,
                            files={"image": ("kept.jpg", data, "image/jpeg")})

    assert send(first_run.url).status_code == 303
    upload_id = first_run.store.query("SELECT id FROM uploads")[0][0]
    first_run.stop()
    second_run = make_appliance(with_loop=False)  # the same data directory: a restart
    again = send(second_run.url)  # the browser's reload: the same cookie, form and file
    assert again.status_code == 303, again.status_code
    assert again.headers["Location"].split("?")[0].endswith(f"/uploads/{upload_id}")
    assert upload_count(second_run) == 1 and len(stored_files(second_run)) == 1
    shown = session.get(again.headers["Location"], timeout=10)
    assert "analysed and stored once already" in shown.text and 'id="faces"' in shown.text
    # the token is no secret kept in the clear: neither the database nor the admin's log holds it
    keys = [r[0] for r in second_run.store.query("SELECT form_key FROM uploads")]
    assert len(keys) == 1 and keys[0] and "after-restart-1" not in keys[0]
    for log_url in ("/admin/log", "/api/admin/log", "/admin/log.csv", f"/uploads/{upload_id}"):
        shown = session.get(f"{second_run.url}{log_url}", params={"kind": "upload"}, timeout=10)
        assert shown.status_code == 200 and (f"/uploads/{upload_id}" in shown.text or "kept.jpg" in shown.text), log_url
        assert "after-restart-1" not in shown.text and keys[0] not in shown.text, log_url
    # the same form with another photo after the restart is that photo, analysed once
    other = cv2.imencode(".jpg", cv2.flip(cv2.imdecode(np.frombuffer(face_jpeg, np.uint8), cv2.IMREAD_COLOR), 1))[1]
    anew = send(second_run.url, other.tobytes())
    assert anew.status_code == 303 and f"/uploads/{upload_id}" not in anew.headers["Location"]
    assert upload_count(second_run) == 2
    # another user's page with the same token and photo is theirs: never led to this one's result
    second_run.accounts.create_user("kim", STUDENT_PW, "student")
    kim = login(second_run.url, "kim", STUDENT_PW)
    theirs = kim.post(f"{second_run.url}/upload", data={"csrf": kim.csrf, "attempt": "after-restart-1"}, timeout=60,
                      allow_redirects=False, files={"image": ("kept.jpg", face_jpeg, "image/jpeg")})
    assert theirs.status_code == 303 and f"/uploads/{upload_id}" not in theirs.headers["Location"]
    assert upload_count(second_run) == 3


def test_a_picture_never_asked_for_leaves_memory_when_its_time_is_up():
    """With keep_uploads = none the picture with the faces marked waits in memory for the
    result page; a page never asked for (a closed tab) kept it until eight more uploads
    pushed it out, however long that took."""
    from edge_app.web.upload import FreshPictures

    held = FreshPictures(keep_s=0.2)
    held.put(1, 7, "data:image/jpeg;base64,AAAA", [])
    assert len(held) == 1
    wait_for(lambda: len(held) == 0, 5, what="the picture to be forgotten with no further upload or view")
    assert held.take(1, 7) is None


@pytest.mark.parametrize("keep, says", [
    ("thumbnail", "A small copy of each photo (at most 320 pixels wide) and its results are kept for 7 days"),
    ("none", "Only the results of each photo are kept (not the photo) for 7 days"),
    ("full", "Each photo (at most 3 megapixels, as analysed) and its results are kept for 7 days"),
])
def test_the_upload_page_says_what_is_kept_for_how_long_and_who_sees_it(make_appliance, cfg, keep, says):
    """It said only that the photo is never sent anywhere: a student read that nothing is
    kept, while a copy, its results and the desk's states stay for the retention period."""
    from edge_app import config as config_mod

    appliance = make_appliance(config_mod.with_changes(cfg, {"privacy.keep_uploads": keep, "store.retention_days": 7}),
                               with_loop=False)
    appliance.accounts.create_user("ann", STUDENT_PW, "student")
    ann = login(appliance.url, "ann", STUDENT_PW)
    page = html.unescape(ann.get(f"{appliance.url}/upload", timeout=10).text)
    kept = page.split('id="what-is-kept">', 1)[1].split("</p>", 1)[0]
    assert kept.startswith(says + ", then deleted automatically: you and this device's admins can see them"), kept
    assert kept.endswith("The desk's engagement states are kept for 7 days too (admins see the log)."), kept
    live = " ".join(html.unescape(ann.get(f"{appliance.url}/live", timeout=10).text).split())
    # "not stored" is the frames alone; a student never shown the picture is not told it is "shown here"
    assert ("The camera's frames are not stored. The desk's engagement states are kept for 7 days, then deleted "
            "automatically (admins see the log).") in live
    assert "shown here" not in live


@pytest.mark.parametrize("mqtt_host", ["", "broker.school.lan"])
def test_live_and_upload_say_alike_who_sees_the_state(make_appliance, cfg, mqtt_host):
    """With a classroom broker set, /upload said instructors see the state now while /live
    said only admins see the log; and /live told a student "Frames are shown here only" on
    a device that shows them no frame."""
    from edge_app import config as config_mod

    appliance = make_appliance(config_mod.with_changes(cfg, {"mqtt.host": mqtt_host, "mqtt.device_id": "desk-07",
                                                             "store.retention_days": 7}), with_loop=False)
    appliance.accounts.create_user("ann", STUDENT_PW, "student")
    classroom = "and instructors see the state now in their classroom view"
    for who, password, watches in (("ann", STUDENT_PW, False), ("admin", ADMIN_PASSWORD, True)):
        s = login(appliance.url, who, password)
        live = " ".join(html.unescape(s.get(f"{appliance.url}/live", timeout=10).text).split())
        note = live.split('id="stream-note">', 1)[1].split("</p>", 1)[0]
        kept = " ".join(html.unescape(s.get(f"{appliance.url}/upload", timeout=10).text).split())
        assert (classroom in note) == bool(mqtt_host), note
        assert (classroom in kept) == bool(mqtt_host), kept
        assert ("Frames are shown here only" in note) == watches, (who, note)


# ------------------------------------------------------------ large photos: boxes in the photo's own pixels
def _face_placed(face_jpeg: bytes, size: tuple[int, int], at: tuple[int, int], scale: int) -> np.ndarray:
    face = cv2.imdecode(np.frombuffer(face_jpeg, np.uint8), cv2.IMREAD_COLOR)
    face = cv2.resize(face, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    canvas = np.full((size[1], size[0], 3), 128, np.uint8)
    canvas[at[1]:at[1] + face.shape[0], at[0]:at[0] + face.shape[1]] = face
    return canvas


def test_a_large_photo_gets_its_boxes_and_size_in_its_own_pixels(web_appliance, face_jpeg):
    """A 7000 px photo is analysed from a 3 MP copy; the API gave the copy's boxes and said
    the photo was 1750 wide, so a script drawing the box on its photo drew it a quarter off."""
    s = login(web_appliance.url)
    alone = s.post(f"{web_appliance.url}/api/analyze", files={"image": ("g.jpg", face_jpeg)}, timeout=60).json()
    (x, y, w, h), = [f["box"] for f in alone["faces"]]
    at, scale = (3000, 2000), 4
    ok, big = cv2.imencode(".jpg", _face_placed(face_jpeg, (7000, 5000), at, scale), [cv2.IMWRITE_JPEG_QUALITY, 80])
    r = s.post(f"{web_appliance.url}/api/analyze", files={"image": ("big.jpg", big.tobytes())}, timeout=120).json()
    assert (r["width"], r["height"]) == (7000, 5000)
    (box,) = [f["box"] for f in r["faces"]]
    centre, size = (at[0] + scale * (x + w / 2), at[1] + scale * (y + h / 2)), scale * w
    # the same face (the detector frames it a little differently at another size): before, [926, 648, 180, 180]
    assert abs(box[0] + box[2] / 2 - centre[0]) < 0.05 * size and abs(box[1] + box[3] / 2 - centre[1]) < 0.05 * size
    assert 0.8 * size < box[2] < 1.2 * size, (box, centre, size)
    page = s.get(f"{web_appliance.url}/uploads/{r['upload_id']}", timeout=30)
    assert "7000 × 5000" in html.unescape(page.text) or "7000 x 5000" in page.text


def test_a_turned_photo_reports_its_upright_size(web_appliance, face_jpeg):
    """EXIF orientation 6 (a phone held upright): the photo is seen 3000 wide, 4000 high."""
    s = login(web_appliance.url)
    upright = _face_placed(face_jpeg, (3000, 4000), (1000, 2000), 3)
    stored = cv2.rotate(upright, cv2.ROTATE_90_COUNTERCLOCKWISE)  # as the camera wrote it: 4000 wide
    image = Image.fromarray(cv2.cvtColor(stored, cv2.COLOR_BGR2RGB))
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=80, exif=exif)
    r = s.post(f"{web_appliance.url}/api/analyze", files={"image": ("turned.jpg", buf.getvalue())}, timeout=120).json()
    assert (r["width"], r["height"]) == (3000, 4000)
    (box,) = [f["box"] for f in r["faces"]]
    assert 1000 < box[0] < 2000 and 2000 < box[1] < 3000 and box[2] > 500, box  # where it is, seen upright


def test_a_photo_just_over_the_analysis_size_is_not_halved():
    """reduce() by whole steps took a 3.1 MP photo to 0.8 MP: small faces were lost."""
    from edge_app.vision.stills import ANALYSIS_PIXELS, decode_photo

    buf = io.BytesIO()
    Image.new("RGB", (2048, 1536), (90, 120, 150)).save(buf, format="PNG")
    bgr, size = decode_photo(buf.getvalue())
    assert size == (2048, 1536)
    assert 0.9 * ANALYSIS_PIXELS <= bgr.shape[0] * bgr.shape[1] <= ANALYSIS_PIXELS


def test_a_transparent_picture_is_analysed_as_it_is_seen(face_jpeg):
    """A fully transparent PNG still holds a face in its colours: the sender sees an empty
    picture, and it was analysed (and a copy kept) as the face."""
    from edge_app.vision.stills import decode_image

    face = Image.open(io.BytesIO(face_jpeg)).convert("RGBA")
    hidden = face.copy()
    hidden.putalpha(0)
    buf = io.BytesIO()
    hidden.save(buf, format="PNG")
    assert (decode_image(buf.getvalue()) == 255).all()  # white, as a browser shows it on a white page
    shown = io.BytesIO()
    face.save(shown, format="PNG")  # opaque: the face itself
    assert np.abs(decode_image(shown.getvalue()).astype(int)
                  - cv2.imdecode(np.frombuffer(face_jpeg, np.uint8), cv2.IMREAD_COLOR)).max() <= 2
