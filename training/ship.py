"""Ship an evaluated TFLite model: the file and its manifest (with the evaluation as
``metrics`` and the flash tool's golden check) into the device package
(``edge_app/models/shipped/``, package data found wherever edge_app is installed), with
the evaluation's PNGs beside it (the device's model page shows them, and the model card
links them there). With ``--dest DIR`` (e.g. ``models/baseline``) everything goes to DIR.

    python -m training.ship ~/runs/edge/emotion-int8.tflite \\
        --metrics ~/runs/edge/eval/emotion-int8-test.json --run ~/runs/edge --version 2026.11-edge-v1

The metrics must be of this very file (their sha256 is checked) and on the whole FER+ test
split (3,137 faces by the official rule, 3,545 by argmax: a half-extracted label.csv gave
a headline figure on 431 of them); ``--other-test-set`` ships an evaluation on another set
(a fixture, another dataset), and the manifest says so; it neither goes into the device
package nor replaces a model measured on FER+ test unless ``--allow-worse`` is given. A ``--run`` (required with FER+'s
test split: the manifest records its recipe) must be of the same architecture, and a model
scoring below the one it replaces needs ``--allow-worse``. Everything is staged beside the destination and moved into place at the end, so a failed
step leaves the shipped model as it was.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from edge_app.fsutil import atomic_write
from edge_app.models.registry import headline_accuracy
from edge_app.vision.classifier import sha256_file, views_from_inference, views_json
from training.quantize import read_metrics, write_manifest

REPO = Path(__file__).resolve().parent.parent
MODELS_DIR = REPO / "edge_app" / "models" / "shipped"  # the device package's model
# the run's recipe in the shipped manifest: every argument that changes what a run computes
# (a distilled or averaged model records its teacher and window), the plan a budget fixed
# with its replay command, and where and with what it ran
RUN_KEYS = ("arch", "labels", "epochs", "batch_size", "lr", "optimizer", "augment", "seed", "init_from", "limit",
            "warmup", "teacher", "teacher_views", "distill_alpha", "temperature", "logit_adjust", "average_last",
            "stop_after", "time_budget", "planned_epochs", "cut_short_at_epoch", "replay", "resumed_at",
            "resumed_with",
            "git_commit", "sizes", "input_files", "keras", "backend", "versions", "started")


# the FER+ test split as Microsoft's layout gives it, by the two label rules training.evaluate
# reports (the README's "Data"; the CSV route's fer2013new.csv keeps 3,152 by the official rule,
# its votes differing on 283 test images: another test set, see the model card's "Data")
FERPLUS_TEST_IMAGES = {"official": 3137, "argmax": 3545}


class ShipError(RuntimeError):
    pass


def test_set_of(metrics: dict) -> dict[str, int | None]:
    """The number of faces each rule scored in an evaluation."""
    return {rule: (metrics.get(rule) or {}).get("images") for rule in FERPLUS_TEST_IMAGES}


def golden_for(manifest_path: Path, other_test_set: bool = False) -> dict:
    """The flash tool's golden record for this model. A model whose output the flash tool
    would refuse (NaN, the same for every face, fewer than three emotions over the reference
    faces) is not shipped: every device would refuse it at install and at its self-test. A
    fixture (``other_test_set``) shipped outside the device package is recorded as it is."""
    from edge_app.models.checks import compute_golden, golden_problem
    from edge_app.vision.classifier import EmotionClassifier

    if not other_test_set and (problem := golden_problem(EmotionClassifier(manifest_path))):
        raise ShipError(f"the flash tool would refuse this model: {problem}; nothing was shipped")
    return compute_golden(manifest_path)


def plots_dir_for(dest: Path) -> Path:
    """The PNGs go beside the manifest that names them: the device's model page shows them."""
    return dest


def check_not_worse(candidate: dict, replaced: Path, allow_worse: bool) -> None:
    """A model that scores below the one it replaces is shipped only when asked for: the
    float paper baseline (80.8%) replaced edge-v3 (85.8%) as "emotion-int8.tflite" and
    nothing said so. A guard, not the choice (that is made on validation): the test
    figures are the ones both manifests carry."""
    if allow_worse or not replaced.is_file():
        return
    try:
        before = headline_accuracy(json.loads(replaced.read_text()))
    except (OSError, ValueError, AttributeError):
        return  # a manifest that cannot be read is being replaced: nothing to compare with
    after = headline_accuracy({"metrics": candidate})
    if before is not None and after is not None and after < before - 0.0005:
        raise ShipError(f"this model scores {after:.2%} on FER+ test (official rule), below the {before:.2%} of the "
                        f"model it would replace ({replaced}): nothing was shipped. Pass --allow-worse to ship it "
                        "anyway (a smaller or faster model on purpose; say why in the model card)")


def into_package(dest: Path) -> bool:
    """Whether ``dest`` is the device package's model folder (what every device installs)."""
    return Path(dest).expanduser().resolve() == MODELS_DIR.resolve()


def check_other_test_set(dest: Path, replaced: Path, allow_worse: bool) -> None:
    """An evaluation on another set (``--other-test-set``) has no FER+ figure to compare with,
    so it does not replace a model measured on FER+'s test split, nor go into the device
    package, unless asked: a fixture's model replaced the shipped 85.75% one with its 0.0%
    and exit 0."""
    if allow_worse:
        return
    if into_package(dest):
        raise ShipError(f"{dest} is the device package's model folder, and this evaluation is not on FER+'s whole test "
                        "split: nothing was shipped. Ship it elsewhere with --dest, or pass --allow-worse to put it "
                        "in the package anyway")
    try:
        before = headline_accuracy(json.loads(replaced.read_text()))
    except (OSError, ValueError, AttributeError):
        return  # nothing there, or a manifest that cannot be read: nothing measured to lose
    if before is not None:
        raise ShipError(f"{replaced} is a model measured on FER+ test ({before:.2%}, official rule); this evaluation is "
                        "on another set, so nothing says it is not worse: nothing was shipped. Give another --name or "
                        "--dest, or pass --allow-worse to replace it anyway")


def ship(model: Path, metrics_path: Path, dest: Path = MODELS_DIR, run: Path | None = None,
         version: str = "", name: str | None = None, other_test_set: bool = False, allow_worse: bool = False) -> Path:
    model, metrics_path, dest = Path(model).expanduser(), Path(metrics_path).expanduser(), Path(dest)
    plots_dest = plots_dir_for(dest)
    source_manifest = model.with_suffix(".json")
    if not model.is_file() or not source_manifest.is_file():
        raise ShipError(f"{model} and its manifest {source_manifest.name} must both exist (training.quantize writes them)")
    try:
        metrics = read_metrics(metrics_path, "Give the .json that training.evaluate wrote for this model")
    except ValueError as exc:  # it was json's bare "Expecting value" with no file named, or a traceback for a list
        raise ShipError(str(exc)) from None
    digest = sha256_file(model)
    if metrics.get("sha256") != digest:
        raise ShipError(f"{metrics_path} evaluates another file (sha256 {str(metrics.get('sha256'))[:12]}..., "
                        f"{model.name} is {digest[:12]}...): run training.evaluate on this model")
    if metrics.get("split") != "test":
        raise ShipError(f"{metrics_path} is on the {metrics.get('split')} split; ship with the test evaluation")
    scored = test_set_of(metrics)
    if not other_test_set and scored != FERPLUS_TEST_IMAGES:
        raise ShipError(f"{metrics_path} scored {scored['official']} faces by the official rule and {scored['argmax']} "
                        f"by argmax; the FER+ test split has {FERPLUS_TEST_IMAGES['official']} and "
                        f"{FERPLUS_TEST_IMAGES['argmax']}: evaluate on the whole split (a partial label.csv?), or pass "
                        "--other-test-set for an evaluation on another set, which the manifest then records")
    base = json.loads(source_manifest.read_text())
    name = name or model.name
    precision = str(base.get("precision", ""))
    if "int8" in name and precision and precision != "int8":
        raise ShipError(f"{model.name} is {precision}, but it would be shipped as {name}: give it a name that "
                        "says what it is (--name)")
    if not other_test_set:
        if run is None:  # the card's figures with no recipe to rebuild them: the manifest records the run's
            raise ShipError("give --run, the training run this model came from: its manifest records the recipe "
                            "(and replay command) that rebuilds it")
        check_not_worse(metrics, dest / Path(name).with_suffix(".json"), allow_worse)
    else:
        check_other_test_set(dest, dest / Path(name).with_suffix(".json"), allow_worse)
    extra = {k: base[k] for k in ("architecture", "precision", "parameters", "inference") if k in base}
    try:
        asked, evaluated = views_from_inference(base.get("inference", {})), views_from_inference(metrics)
    except ValueError as exc:
        raise ShipError(f"{source_manifest.name} or {metrics_path.name}: {exc}") from None
    if asked != evaluated:
        raise ShipError(f"{metrics_path} was evaluated with {len(evaluated)} view(s) {views_json(evaluated)} but "
                        f"{source_manifest.name} asks for {views_json(asked)}: evaluate again")
    # the input rule the device will apply is the one the evaluation applied
    rule = {k: base.get("input", {}).get(k) for k in ("scale", "offset")}
    measured = {k: (metrics.get("input") or {}).get(k) for k in ("scale", "offset")}
    if rule != measured or None in rule.values():
        raise ShipError(f"{metrics_path} was evaluated with the input rule {measured} but {source_manifest.name} "
                        f"says {rule}: evaluate again")
    extra["input"] = base["input"]
    if version:
        extra["version"] = version
    if run is not None:
        config = read_run_config(Path(run).expanduser())
        if "architecture" in base and config.get("arch") not in (None, base["architecture"]):
            raise ShipError(f"{run} trained '{config.get('arch')}', but {source_manifest.name} is '{base['architecture']}': "
                            "give the run this model came from")
        extra["training"] = {k: config[k] for k in RUN_KEYS if k in config}
        if config.get("resumed_at"):
            extra["training"]["replay_exact"] = False  # said where the replay command is read
            extra["training"]["replay_note"] = (f"resumed after epoch(s) {config['resumed_at']}: the replay command runs "
                                                "unbroken, with other draws after each resume; it rebuilds this run "
                                                "only approximately"
                                                + ("; the epochs after epoch(s) "
                                                   f"{[leg.get('after_epoch') for leg in config['resumed_with']]} ran on "
                                                   "other libraries (resumed_with)" if config.get("resumed_with") else ""))

    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest, prefix=".ship-") as tmp:
        stage = Path(tmp)
        staged_model = stage / name
        shutil.copyfile(model, staged_model)
        plots = {}
        for key, png in metrics.get("plots", {}).items():
            src = metrics_path.parent / png
            if src.is_file():
                target = f"{Path(name).stem}-{key}.png"
                shutil.copyfile(src, stage / target)
                plots[key] = target
        metrics = {**metrics, "model": name, "plots": plots}
        if other_test_set:
            metrics["test_set"] = "other"  # not FER+'s whole test split: its figures compare with nothing
        metrics.pop("json", None)
        staged_manifest = write_manifest(staged_model, metrics, extra)
        manifest = json.loads(staged_manifest.read_text())
        manifest["golden"] = golden_for(staged_manifest, other_test_set and not into_package(dest))
        staged_manifest.write_text(json.dumps(manifest, indent=2) + "\n")
        if manifest["sha256"] != sha256_file(staged_model) or manifest["sha256"] != digest:
            raise ShipError("the staged model does not match its manifest; nothing was shipped")
        plots_dest.mkdir(parents=True, exist_ok=True)
        for png in plots.values():
            atomic_write(plots_dest / png, (stage / png).read_bytes())
        # the manifest last: it is what the device reads, so it never names a missing model
        write_pair(dest, (staged_model, staged_manifest))
    return dest / staged_manifest.name


def read_run_config(run: Path) -> dict:
    """The run's config.json, whose recipe the manifest records; a clear error for a folder
    that is not a run (it was "[Errno 2] No such file or directory: .../config.json")."""
    try:
        config = json.loads((run / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise ShipError(f"--run {run} is not a training run that can be read ({run / 'config.json'}: "
                        f"{getattr(exc, 'strerror', None) or exc}): give training.train's --out folder this "
                        "model came from; nothing was shipped") from None
    if not isinstance(config, dict):
        raise ShipError(f"--run {run}: its config.json is not a run's; nothing was shipped")
    return config


def write_pair(dest: Path, staged: tuple[Path, Path]) -> None:
    """The model, then its manifest, into ``dest``; if the manifest cannot be written (a full
    disk) or the process is stopped in between (Ctrl-C), the pair there before is put back: the
    new model beside the old manifest was refused by every device (sha256), and the docstring
    promises the shipped model as it was. The pair before is kept by a second name in the
    staging folder (a hard link: it takes no room, which a full disk has none of), and put back
    by renaming."""
    before = {}
    for path in staged:
        if (dest / path.name).is_file():
            before[path.name] = path.with_name(f"before-{path.name}")
            os.link(dest / path.name, before[path.name])
    try:
        for path in staged:
            atomic_write(dest / path.name, path.read_bytes())
    except BaseException:  # a KeyboardInterrupt between the two left the mismatched pair too
        for path in staged:
            with contextlib.suppress(OSError):  # best effort: the error said is the first one
                if path.name in before:
                    os.replace(before[path.name], dest / path.name)
                else:
                    (dest / path.name).unlink(missing_ok=True)
        raise


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.ship", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", type=Path, help="a .tflite from training.quantize (its manifest beside it)")
    p.add_argument("--metrics", type=Path, required=True, help="training.evaluate's JSON for this file (test split)")
    p.add_argument("--dest", type=Path, default=MODELS_DIR, help="destination folder (default: edge_app/models/shipped/, the PNGs too)")
    p.add_argument("--name", help="file name in the destination (default: the model's)")
    p.add_argument("--run", type=Path, help="the training run folder, to record its config")
    p.add_argument("--version", default="", help="model version string")
    p.add_argument("--other-test-set", action="store_true",
                   help="the evaluation is not on FER+'s whole test split (a fixture, another dataset); recorded")
    p.add_argument("--allow-worse", action="store_true",
                   help="ship it even though it scores below the model it replaces, or (with --other-test-set) replaces "
                        "a model measured on FER+ test or goes into the device package (say why in the model card)")
    args = p.parse_args(argv)
    try:
        manifest = ship(args.model, args.metrics, args.dest, args.run, args.version, args.name, args.other_test_set,
                        args.allow_worse)
    except (ShipError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    raw = json.loads(manifest.read_text())
    print(f"shipped {manifest.parent / raw['model']} ({raw['sha256'][:12]}...), manifest {manifest}"
          f"{', golden check included' if 'golden' in raw else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
