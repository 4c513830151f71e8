"""tools/model_speed.py: each model timed in its own process, the first as the baseline."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "edge_app" / "models" / "shipped" / "emotion-int8.json"


def test_model_speed_reports_every_model_against_the_first(tmp_path):
    """The shipped model is also timed against itself: a row per argument (keyed by path, it gave one)."""
    single = json.loads(SHIPPED.read_text())
    single["inference"]["views"] = single["inference"]["views"][:1]  # the same model, one view
    single["model"] = str(SHIPPED.with_suffix(".tflite"))
    one_view = tmp_path / "one-view.json"
    one_view.write_text(json.dumps(single))
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "model_speed.py"), str(SHIPPED), str(one_view),
                          str(SHIPPED), "--rounds", "2", "--faces", "30", "--warmup", "5", "--json"],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert [r["model"] for r in report] == [str(SHIPPED), str(one_view), str(SHIPPED)]
    base, other, again = report
    assert base["views"] == 2 and other["views"] == 1
    assert base["ratio"] == 1.0 and base["faces"] == other["faces"] == again["faces"] == 60
    assert other["median_ms"] > 0 and abs(other["ratio"] - other["median_ms"] / base["median_ms"]) < 0.01


def test_model_speed_names_a_missing_manifest(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "model_speed.py"), str(tmp_path / "nope.json")],
                         capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 2 and "no such manifest" in out.stderr
