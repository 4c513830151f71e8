"""The device install: a wheel built from this tree carries everything the appliance
reads (model, manifest, photos, web views, default config) and nothing of training; once
installed it finds its model and photos wherever it lives, and importing every module of
edge_app pulls in neither training nor plotting or image-science libraries."""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

import edge_app

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "edge_app"
PHOTOS = PACKAGE / "vision" / "photos"
BUILD = "v0.1.0-12-g1a2b3c4-dirty"  # `git describe --always --dirty` of a checkout
HEAVY = ("matplotlib", "skimage", "scipy", "networkx", "fontTools", "tensorflow", "training")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a copy of what setup.py packages (the checkout stays clean)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in ("setup.py", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(PACKAGE, src / "edge_app", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (src / "edge_app" / "BUILD").write_text(BUILD + "\n")  # as firmware/install.sh records the checkout's
    out = tmp / "dist"
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                             "--wheel-dir", str(out), str(src)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    (built,) = out.glob("engage_edge-*.whl")
    return built


def package_files(folder: Path, pattern: str = "*") -> set[str]:
    return {p.relative_to(ROOT).as_posix() for p in folder.glob(pattern) if p.is_file()}


def test_wheel_carries_the_package_data_and_no_training(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    needed = {"edge_app/default_config.toml", "edge_app/models/shipped/emotion-int8.tflite",
              "edge_app/models/shipped/emotion-int8.json", "edge_app/vision/photos/PROVENANCE.md"}
    needed |= package_files(PACKAGE / "web" / "views") | package_files(PACKAGE / "web" / "static")
    needed |= package_files(PACKAGE / "models" / "shipped", "*.png")  # the model page shows them
    needed |= package_files(PHOTOS, "*.jpg")
    assert len(package_files(PHOTOS, "*.jpg")) >= 4 and any(n.endswith(".tpl") for n in needed)
    assert needed <= names, f"missing from the wheel: {sorted(needed - names)}"
    strays = sorted(n for n in names if n.split("/")[0] in ("training", "tests", "models", "tools", "firmware"))
    assert not strays, f"the device wheel carries development files: {strays[:5]}"
    assert len(package_files(PACKAGE / "models" / "shipped", "*.png")) == 2


def test_wheel_metadata_keeps_heavy_libraries_off_the_device(wheel):
    with zipfile.ZipFile(wheel) as z:
        meta_name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        meta = Parser().parsestr(z.read(meta_name).decode())
        entry_points = z.read(meta_name.replace("METADATA", "entry_points.txt")).decode()
    requires = meta.get_all("Requires-Dist") or []
    device = [r for r in requires if "extra ==" not in r]
    names = {re.split(r"[\s<>=!~;\[]", r, maxsplit=1)[0].lower() for r in device}
    assert {"numpy", "opencv-python-headless", "ai-edge-litert", "pillow", "bottle", "cheroot"} <= names
    assert not names & {"matplotlib", "scikit-image", "scipy", "tensorflow", "tensorflow-cpu"}, device
    # on a Pi (aarch64) numpy stays 1.x, which apt's numpy 1.24 satisfies: apt's picamera2 imports
    # apt's simplejpeg, built against it, and a numpy 2 in the venv breaks that import
    from packaging.requirements import Requirement

    pi = {"platform_machine": "aarch64", "python_version": "3.11", "sys_platform": "linux"}
    on_pi = [Requirement(r) for r in device if Requirement(r).marker is None or Requirement(r).marker.evaluate(pi)]
    numpy = [r.specifier for r in on_pi if r.name == "numpy"]
    assert numpy and all("1.24.2" in spec and "2.0.0" not in spec for spec in numpy), numpy
    opencv = [r.specifier for r in on_pi if r.name == "opencv-python-headless"]  # 4.12 and later need numpy 2
    assert opencv and all("4.11.0.86" in spec and "4.12.0.88" not in spec for spec in opencv), opencv
    train = [r for r in requires if "extra == \"train\"" in r]
    assert any(r.startswith("tensorflow") for r in train)
    assert "engage-edge = edge_app.cli:main" in entry_points


def test_installed_wheel_finds_its_model_and_photos_outside_the_checkout(wheel, tmp_path):
    """Installed into a bare target (its dependencies from this venv), run from another
    folder: the shipped model loads from the install, passes its own golden check, the
    demo renders, and no module of edge_app imports training or the heavy libraries."""
    target, elsewhere = tmp_path / "site", tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-compile",
                             "--target", str(target), str(wheel)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    # every file of the package the checkout has is in the install (the classroom's page and
    # scripts were not: an installed classroom answered its page with an error)
    tracked = subprocess.run(["git", "ls-files", "edge_app"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    missing = [name for name in tracked if not (target / name).is_file()]
    assert missing == [], f"not in the wheel (setup.py package_data): {missing}"
    probe = r"""
import importlib, json, pkgutil, sys
import edge_app
from pathlib import Path
target = Path(sys.argv[1]).resolve()
assert Path(edge_app.__file__).resolve().is_relative_to(target), edge_app.__file__
for mod in pkgutil.walk_packages(edge_app.__path__, "edge_app."):
    if mod.name != "edge_app.__main__":
        importlib.import_module(mod.name)
from edge_app.models import checks
from edge_app.vision import classifier, demo, faces
assert classifier.SHIPPED_MANIFEST.resolve().is_relative_to(target), classifier.SHIPPED_MANIFEST
clf = classifier.EmotionClassifier()
assert clf.manifest.model_path.resolve().is_relative_to(target)
ok, reason = checks.golden_check(clf, json.loads(classifier.SHIPPED_MANIFEST.read_text())["golden"])
assert ok, reason
from edge_app.runtime import bench
assert bench.default_paper_manifest() == Path.cwd() / "models" / "baseline" / "paper-float.json"  # a checkout's
frame = demo.DemoScene().render(20.0)
assert frame.shape == (480, 640, 3) and frame.std() > 10
print(json.dumps({"version": edge_app.__version__, "heavy": sorted(m for m in sys.modules if m.split(".")[0] in sys.argv[2].split(",")),
                  "faces": len(faces.reference_faces()), "reason": reason}))
"""
    env = {**os.environ, "PYTHONPATH": str(target), "PYTHONNOUSERSITE": "1"}
    run = subprocess.run([sys.executable, "-c", probe, str(target), ",".join(HEAVY)], cwd=elsewhere, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["heavy"] == [], f"edge_app imports {report['heavy']}"
    # every build of a release said 0.1.0: a technician comparing 30 desks could not tell them apart
    assert report["version"] == f"{edge_app.RELEASE}+{BUILD}", report["version"]
    assert report["faces"] >= 12 and "golden check passed" in report["reason"]


def test_the_release_is_one_number_and_a_checkout_without_a_build_says_it_alone(tmp_path):
    assert re.search(r'version="([^"]+)"', (ROOT / "setup.py").read_text()).group(1) == edge_app.RELEASE
    assert edge_app.build_version(tmp_path) == edge_app.RELEASE  # no BUILD file: a checkout, a plain pip wheel
    (tmp_path / "BUILD").write_text("1a2b3c4\n")
    assert edge_app.build_version(tmp_path) == f"{edge_app.RELEASE}+1a2b3c4"


def test_every_shipped_photo_has_its_provenance_recorded():
    provenance = (PHOTOS / "PROVENANCE.md").read_text()
    photos = sorted(PHOTOS.glob("*.jpg"))
    total = 0
    for photo in photos:
        data = photo.read_bytes()
        total += len(data)
        row = next((line for line in provenance.splitlines() if line.startswith(f"| `{photo.name}`")), None)
        assert row, f"{photo.name} has no row in PROVENANCE.md"
        assert hashlib.sha256(data).hexdigest() in row, f"{photo.name} changed: record its new sha256 and source"
        assert "Public domain" in row or "CC0" in row
    assert total <= 350_000, f"the photos are {total} bytes: keep the package data small (JPEG ~85, sensible sizes)"
    assert {p.name for p in PHOTOS.iterdir()} == {p.name for p in photos} | {"PROVENANCE.md"}
