"""The README's examples are what the commands really print (issue 13, item 11)."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def console_example(command: str) -> tuple[list[str], list[str]]:
    """The README's ```console block whose ``$`` line runs ``engage-edge <command>``:
    (the arguments after the command, the lines printed)."""
    readme = (ROOT / "README.md").read_text()
    for block in re.findall(r"```console\n(.*?)```", readme, re.S):
        lines = block.rstrip("\n").split("\n")
        prompt = lines[0].removeprefix("$ ").split()
        if prompt[0].endswith("engage-edge") and prompt[1] == command:
            return prompt[2:], lines[1:]
    raise AssertionError(f"README has no console example of engage-edge {command}")


def test_the_analyze_example_is_what_analyze_prints(tmp_path):
    args, printed = console_example("analyze")
    empty = tmp_path / "config.toml"
    empty.write_text("")  # the defaults, as on a fresh checkout (never a device's /etc config)
    r = subprocess.run([sys.executable, "-m", "edge_app", "analyze", *args, "--config", str(empty)], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.rstrip("\n").split("\n") == printed


def test_the_demo_claims_match_the_shipped_model(cfg):
    """The README says the demo shows "Partially engaged" with Duchenne's frightened face:
    the shipped model reads that face as fear (the default mapping's "Partially engaged")
    and no reference face of the golden set as fear. A model for which this stops being
    true makes this fail, and the README (and the demo's promise) must be updated;
    `tests/test_e2e.py` runs the whole demo minute."""
    from edge_app.runtime.appliance import classifier_from_config
    from edge_app.vision.faces import demo_cuts, demo_faces

    readme = " ".join((ROOT / "README.md").read_text().split())
    assert '"Partially engaged" (the frightened face: fear, in the default mapping)' in readme
    assert cfg.engagement.mapping["fear"].startswith("Partially engaged")
    classifier = classifier_from_config(cfg)
    tops = [classifier.classify(face)[0] for face in demo_faces()]
    fearful = {demo_cuts()[i].photo for i, top in enumerate(tops) if top == "fear"}
    assert fearful == {"duchenne_fright.jpg"}, [(c.photo, t) for c, t in zip(demo_cuts(), tops)]
