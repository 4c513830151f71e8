"""Group photos are readable: faces numbered in reading order (rows top to bottom, left
to right), every label on a solid backing that covers no other label, the results table
numbered the same, and a face the model is unsure of shown as uncertain. Over real HTTP
with the shipped model on a class photo put together from the shipped portraits."""
from __future__ import annotations

import re

import cv2
import numpy as np
import pytest

from edge_app import config as config_mod
from edge_app.vision.faces import photo
from edge_app.vision.stills import draw_faces, face_label, layout_labels
from tests.conftest import login

# (photo, face-centred square crop x, y, side) of the shipped portraits
GRACE, EILEEN = ("grace_hopper.jpg", 63, 37, 408), ("astronaut.jpg", 121, 16, 214)
TILE = 180
# two staggered rows of four: heads at slightly different heights, as on a class photo
SEATS = [(0, 30), (TILE, 0), (2 * TILE, 20), (3 * TILE, 8), (0, 215), (TILE, 236), (2 * TILE, 205), (3 * TILE, 226)]


@pytest.fixture(scope="module")
def class_photo() -> bytes:
    canvas = np.full((TILE * 2 + 80, TILE * 4, 3), 210, np.uint8)
    for i, (x, y) in enumerate(SEATS):
        name, cx, cy, side = (GRACE, EILEEN)[(i + i // 4) % 2]
        tile = cv2.resize(photo(name)[cy:cy + side, cx:cx + side], (TILE, TILE), interpolation=cv2.INTER_AREA)
        canvas[y:y + TILE, x:x + TILE] = tile
    ok, buf = cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, 92])
    assert ok
    return buf.tobytes()


def seat_of(box: list[int]) -> int:
    cx, cy = box[0] + box[2] / 2, box[1] + box[3] / 2
    return int(cy >= TILE + 20) * 4 + int(cx // TILE)


@pytest.fixture
def session(make_appliance, cfg):
    # above the astronaut's smiles' confidence for none, above Grace's neutral: a mix
    appliance = make_appliance(config_mod.with_changes(cfg, {"engagement.min_confidence": 0.95}), with_loop=False)
    return appliance, login(appliance.url)


def test_faces_are_numbered_in_reading_order_and_the_table_matches(session, class_photo):
    appliance, s = session
    r = s.post(f"{appliance.url}/api/analyze", files={"image": ("class.jpg", class_photo, "image/jpeg")}, timeout=60)
    assert r.status_code == 200, r.text
    faces = r.json()["faces"]
    assert [seat_of(f["box"]) for f in faces] == list(range(8))  # 1-4 the top row left to right, then 5-8
    page = s.post(f"{appliance.url}/upload", files={"image": ("class.jpg", class_photo, "image/jpeg")},
                  data={"csrf": s.csrf}, timeout=60)
    assert page.status_code == 200
    rows = re.findall(r'<tr[^>]*>\s*<td>(\d+)</td>\s*<td><img class="face" src="[^"]+" alt="Face (\d+)"', page.text)
    assert [(int(a), int(b)) for a, b in rows] == [(i, i) for i in range(1, 9)]


def test_unsure_faces_are_shown_as_uncertain_not_given_a_state(session, class_photo):
    appliance, s = session
    page = s.post(f"{appliance.url}/upload", files={"image": ("class.jpg", class_photo, "image/jpeg")},
                  data={"csrf": s.csrf}, timeout=60)
    faces = s.post(f"{appliance.url}/api/analyze", files={"image": ("class.jpg", class_photo, "image/jpeg")},
                   timeout=60).json()["faces"]
    unsure = [i for i, f in enumerate(faces, 1) if f["uncertain"]]
    sure = [i for i, f in enumerate(faces, 1) if not f["uncertain"]]
    assert unsure and sure, [(f["emotion"], f["confidence"]) for f in faces]  # the photo has both kinds
    body = page.text.split('<table id="faces">', 1)[1].split("</table>", 1)[0]
    cells = re.findall(r'<tr class="([^"]*)">\s*<td>(\d+)</td>(.*?)</tr>', body, re.S)
    for cls, number, rest in cells:
        if int(number) in unsure:
            assert cls == "uncertain" and ">Uncertain</span>" in rest and "<summary>unsure (maybe" in rest
        else:
            assert cls == "" and "Uncertain" not in rest
    for i in unsure:
        assert face_label(i, faces[i - 1]) == f"{i}: uncertain"


def test_labels_have_a_solid_backing_and_never_overlap(session, class_photo):
    """The labels of eight close faces, drawn on the photo: inside the picture, no two
    overlapping, each a filled rectangle (its padding rows are one colour)."""
    appliance, s = session
    faces = s.post(f"{appliance.url}/api/analyze", files={"image": ("class.jpg", class_photo, "image/jpeg")},
                   timeout=60).json()["faces"]
    bgr = cv2.imdecode(np.frombuffer(class_photo, np.uint8), cv2.IMREAD_COLOR)
    drawn = draw_faces(bgr, faces)
    rects = [rect for _, rect in layout_labels(faces, bgr.shape[1], bgr.shape[0])]
    for n, (x, y, w, h) in enumerate(rects):
        assert 0 <= x and x + w <= bgr.shape[1] and 0 <= y and y + h <= bgr.shape[0]
        for o in rects[n + 1:]:
            assert not (x < o[0] + o[2] and o[0] < x + w and y < o[1] + o[3] and o[1] < y + h), (rects[n], o)
        top = drawn[y, x:x + w].reshape(-1, 3)
        assert (top == top[0]).all()  # the backing is solid: the photo does not show through
    # the naive layout (each label just above its face) would have overlapped here
    naive = [(f["box"][0], f["box"][1] - h, w, h) for f, (_, _, w, h) in zip(faces, rects)]
    assert any(a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]
               for i, a in enumerate(naive) for b in naive[i + 1:])
