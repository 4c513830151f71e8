"""A model manifest cannot waive its own validation, cannot make the live loop crawl,
and junk anywhere in it is refused with a clear message, never a traceback (issue 14
item 11)."""
from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest

from edge_app.models import registry as flash
from edge_app.vision.classifier import MAX_VIEWS, EmotionClassifier
from tests.test_flash import _state, golden_manifest, shipped_bytes, variant  # noqa: F401 (fixtures)


def _refused(cfg, model, manifest, raw, reason):
    manifest.write_text(json.dumps(raw))
    models = flash.models_dir(cfg)
    before = _state(models)
    with pytest.raises(flash.FlashError, match=reason):
        flash.install(model, manifest, cfg)
    after = {name: data for name, data in _state(models).items() if name != ".lock"}  # the install lock file
    assert after == {name: data for name, data in before.items() if name != ".lock"}


@pytest.mark.parametrize("agreement", [0, 0.5, -1, 2, "1e999"])
def test_a_manifest_cannot_lower_its_golden_agreement(cfg, variant, agreement):  # noqa: F811
    model, manifest = variant(3)
    raw = json.loads(manifest.read_text())
    wrong = [l for l in raw["labels"] if l != raw["golden"]["labels"][0]][0]
    raw["golden"]["labels"][0] = wrong  # one reference face now disagrees...
    raw["golden"]["min_agreement"] = float(agreement)  # ... and the manifest tries to excuse it
    _refused(cfg, model, manifest, raw, "golden")


def test_a_manifest_cannot_shrink_its_golden_check_to_nothing(cfg, variant):  # noqa: F811
    model, manifest = variant(4)
    raw = json.loads(manifest.read_text())
    raw["golden"]["indices"], raw["golden"]["labels"] = raw["golden"]["indices"][:1], raw["golden"]["labels"][:1]
    _refused(cfg, model, manifest, raw, "at least 8 are needed")


def test_inference_views_are_bounded(cfg, variant):  # noqa: F811
    model, manifest = variant(5)
    raw = json.loads(manifest.read_text())
    raw["inference"] = {"views": [{"flip": False}] * 1000}
    _refused(cfg, model, manifest, raw, f"at most {MAX_VIEWS} are allowed")
    raw["inference"] = {"views": [{"flip": bool(i % 2)} for i in range(MAX_VIEWS)]}
    manifest.write_text(json.dumps(raw))
    flash.install(model, manifest, cfg)  # the bound itself is allowed


JUNK = [[], {}, [[1, 2]], {"a": {"b": []}}, "x", None, True, 1e308, [{"labels": None}]]
# what a refusal of junk in each field names (inference junk that reads as "no views" fails
# the golden check, whose message says so)
NAMED = {"labels": ("labels",), "input": ("input",), "model": ("model",), "metrics": ("metrics",),
         "golden": ("golden",), "inference": ("inference", "golden check failed"), ("input", "size"): ("input.size",),
         ("input", "scale"): ("input.scale",), ("golden", "indices"): ("indices", "reference faces"),
         ("golden", "labels"): ("labels",), ("inference", "views"): ("inference.views", "a view is")}
PYTHON_WORDS = re.compile(r"not iterable|invalid literal|argument must be|NoneType|Traceback|^.*: '\w+'$")


@pytest.mark.parametrize("where", list(NAMED), ids=lambda f: ".".join(f) if isinstance(f, tuple) else f)
def test_nested_junk_anywhere_is_a_clear_refusal(cfg, variant, where):  # noqa: F811
    """Each junk value is tried on a device with no model flashed (an earlier one installed
    would make the next a refusal for being installed already)."""
    model, manifest = variant(6)
    good = json.loads(manifest.read_text())
    for junk in JUNK:
        shutil.rmtree(flash.models_dir(cfg), ignore_errors=True)
        raw = json.loads(json.dumps(good))
        if isinstance(where, tuple):
            raw[where[0]][where[1]] = junk
        else:
            raw[where] = junk
        manifest.write_text(json.dumps(raw))
        try:
            flash.install(model, manifest, cfg)
        except flash.FlashError as exc:
            message = str(exc)
            assert any(name in message for name in NAMED[where]), (junk, message)
            assert not PYTHON_WORDS.search(message), (junk, message)
        else:  # harmless junk (metrics are informational; the registry names the file itself): it must really run
            active = flash.active_manifest(cfg)
            assert EmotionClassifier(active).probabilities(np.full((48, 48), 128, np.uint8)).sum() == pytest.approx(1)
            assert where in ("metrics", "model") and json.loads(active.read_text())["sha256"] == good["sha256"]


def test_junk_through_the_admin_page_is_a_400_with_the_reason(make_appliance, variant):  # noqa: F811
    from tests.conftest import login

    web = make_appliance(with_loop=False)
    model, manifest = variant(7)
    raw = json.loads(manifest.read_text())
    raw["labels"] = [["neutral"], {"x": 1}]
    manifest.write_text(json.dumps(raw))
    s = login(web.url)
    r = s.post(f"{web.url}/admin/model/install", data={"csrf": s.csrf},
               files={"model": ("m.tflite", model.read_bytes()), "manifest": ("m.json", manifest.read_bytes())},
               timeout=60)
    assert r.status_code == 400 and "labels must be a list of emotion names" in r.text
