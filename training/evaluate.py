"""Evaluate a Keras or TFLite emotion model on FER+ (test by default; ``--split valid`` to tune).

    python -m training.evaluate models/emotion-int8.tflite --data ~/.cache/engage-data
    python -m training.evaluate runs/edge/best.keras --split valid

Reports accuracy under Microsoft's official majority rule (3,137 test images) and the
strict argmax-of-10-votes rule (3,545; a tie in the top vote goes to the first column, and
``argmax_ties_either`` counts a prediction of any tied top class right), per-class precision/recall/F1 and macro-F1, the
official figure without the images that are pixel copies of training images (244 of the
3,137 test images), and for TFLite models the median and p95 single-thread LiteRT latency per face. Writes into
``--out`` (default: beside the model) ``<stem>-<split>.json`` with all of it,
``<stem>-<split>-confusion.png`` and, when a ``history.csv`` is given or lies beside
the model, ``<stem>-curves.png``.

A TFLite model's input rule ``pixel * scale + offset`` comes from the manifest beside it
(``<model>.json``), quantised with the input tensor's own parameters, exactly as the
device does it; a Keras model uses the constants in ``training.models``.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from edge_app.fsutil import atomic_write
from edge_app.vision.classifier import VIEW_PRESETS, sha256_file, views_json
from training import data as fer
from training.quantize import add_views_options

RULES = {"official": fer.majority_labels, "argmax": fer.argmax_labels}


class EvaluationError(RuntimeError):
    """The model or its manifest cannot be evaluated; the message says why."""


# ---------------------------------------------------------------- models

class KerasModel:
    kind = "keras"

    def __init__(self, path: Path, views=VIEW_PRESETS["single"]):
        os.environ.setdefault("KERAS_BACKEND", "tensorflow")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        from training.models import INPUT_OFFSET, INPUT_SCALE, NetworkError, load_network

        try:
            self.model = load_network(path)
        except NetworkError as exc:
            raise EvaluationError(str(exc)) from None
        self.scale, self.offset = INPUT_SCALE, INPUT_OFFSET
        self.views = tuple(views)
        self.info = {"format": "keras", "architecture": self.model.name,
                     "parameters": int(self.model.count_params()),
                     "input": {"scale": self.scale, "offset": self.offset, "source": "training.models"},
                     "views": views_json(self.views)}

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Mean output over the views, each applied to the 48x48 crops as the device does."""
        outputs = []
        for view in self.views:
            seen = np.stack([view.apply(image) for image in images])
            x = seen.astype(np.float32)[..., None] * self.scale + self.offset
            outputs.append(np.asarray(self.model.predict(x, batch_size=256, verbose=0), np.float32))
        return sum(outputs[1:], outputs[0]) / len(outputs)


class TFLiteModel:
    """A TFLite model run exactly as the device runs it: through ``EmotionClassifier``
    (manifest checks, input quantisation, averaging over views, output normalisation)."""

    kind = "tflite"

    def __init__(self, path: Path):
        from edge_app.vision.classifier import EmotionClassifier, ModelError

        manifest_path = path.with_suffix(".json")
        if not manifest_path.is_file():
            raise EvaluationError(
                f"{manifest_path} is missing: a TFLite model is evaluated with the input rule of its "
                "manifest; write one with python -m training.quantize")
        try:
            self.classifier = EmotionClassifier(manifest_path, threads=1)
        except ModelError as exc:
            raise EvaluationError(str(exc)) from None
        manifest = self.classifier.manifest
        if manifest.labels != fer.EMOTIONS:
            raise EvaluationError(f"{manifest_path}: labels {manifest.labels} are not the FER+ order {fer.EMOTIONS}")
        if manifest.size != (48, 48):
            raise EvaluationError(f"{path}: expected a 48x48 input, the manifest says {manifest.size}")
        self.path = path
        self.views = manifest.views
        interpreter = self.classifier.interpreter
        self.info = {"format": "tflite", "architecture": manifest.raw.get("architecture", ""),
                     "input": {"scale": manifest.scale, "offset": manifest.offset, "source": manifest_path.name,
                               "dtype": np.dtype(interpreter.get_input_details()[0]["dtype"]).name},
                     "output_dtype": np.dtype(interpreter.get_output_details()[0]["dtype"]).name,
                     "views": views_json(self.views)}

    def predict(self, images: np.ndarray) -> np.ndarray:
        return np.stack([self.classifier.probabilities(image) for image in images]).astype(np.float32)

    def latency(self, images: np.ndarray, runs: int = 300, warmup: int = 50) -> dict:
        """Single-thread wall time per face as the device spends it: quantise the input,
        invoke (once per view), read and normalise the output."""
        faces = images[: max(1, min(len(images), runs))]
        times = []
        for i in range(warmup + runs):
            start = time.perf_counter()
            self.classifier.probabilities(faces[i % len(faces)])
            if i >= warmup:
                times.append(time.perf_counter() - start)
        ms = np.asarray(times) * 1000.0
        return {"median_ms": round(float(np.median(ms)), 4), "p95_ms": round(float(np.percentile(ms, 95)), 4),
                "mean_ms": round(float(ms.mean()), 4), "runs": runs, "warmup": warmup, "threads": 1,
                "runtime": runtime_name(), "machine": machine_name()}


def load_model(path: Path, views=VIEW_PRESETS["single"]):
    """A Keras model (seen through ``views``) or a TFLite model (as its manifest says)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise EvaluationError(f"{path} does not exist")
    if path.suffix == ".tflite":
        return TFLiteModel(path)
    if path.suffix in (".keras", ".h5"):
        return KerasModel(path, views)
    raise EvaluationError(f"{path}: expected a .keras or .tflite model")


def runtime_name() -> str:
    try:
        from importlib.metadata import version

        return f"ai-edge-litert {version('ai-edge-litert')}"
    except Exception:  # noqa: BLE001 - any metadata problem just leaves the name generic
        return "tflite"


def machine_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({platform.machine()})"
    except OSError:
        pass
    return platform.machine() or "unknown"


# ---------------------------------------------------------------- metrics

def confusion_matrix(truth: np.ndarray, pred: np.ndarray, n: int = len(fer.EMOTIONS)) -> np.ndarray:
    cm = np.zeros((n, n), np.int64)
    np.add.at(cm, (truth, pred), 1)
    return cm


def rule_metrics(truth: np.ndarray, pred: np.ndarray) -> dict:
    """Accuracy, per-class precision/recall/F1 and macro-F1 (over the 8 classes)."""
    cm = confusion_matrix(truth, pred)
    per_class, f1s = {}, []
    for i, name in enumerate(fer.EMOTIONS):
        tp = int(cm[i, i])
        predicted, support = int(cm[:, i].sum()), int(cm[i].sum())
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        f1s.append(f1)
        per_class[name] = {"precision": round(precision, 4), "recall": round(recall, 4),
                           "f1": round(f1, 4), "support": support}
    return {"images": int(len(truth)), "accuracy": round(float((truth == pred).mean()) if len(truth) else 0.0, 5),
            "macro_f1": round(float(np.mean(f1s)), 5), "per_class": per_class, "confusion": cm.tolist()}


def copies_of_training(images: np.ndarray, train_images: np.ndarray) -> np.ndarray:
    """Which of ``images`` are pixel for pixel a training image (FER2013's own overlap
    across its splits): a model may have learned those very faces."""
    seen = {face.tobytes() for face in train_images}
    return np.fromiter((face.tobytes() in seen for face in images), bool, len(images))


def overlap_metrics(votes: np.ndarray, probs: np.ndarray, copies: np.ndarray) -> dict:
    """Official-rule accuracy on the images that copy a training image and on the rest,
    so a headline figure can be read without the faces the model may have seen."""
    labels, pred = RULES["official"](votes), probs.argmax(axis=1)
    keep = labels >= 0
    out = {}
    for name, part in (("copies", keep & copies), ("unseen", keep & ~copies)):
        n = int(part.sum())
        out[name] = {"images": n, "accuracy": round(float((labels[part] == pred[part]).mean()) if n else 0.0, 5)}
    return out


def ties_either(votes: np.ndarray, pred: np.ndarray) -> dict:
    """The argmax rule's images with a prediction counted right when it is any of the tied
    top classes: the argmax figure gives a tie to the first column (neutral first), so a
    model that says neutral gains on ties; this figure, beside it, shows how much. Kept
    apart: the argmax figure's definition is the one past figures and targets use."""
    keep = fer.argmax_labels(votes) >= 0
    v = np.asarray(votes)[keep]
    top = v == v.max(axis=1, keepdims=True)
    right = top[np.arange(len(v)), pred[keep]]
    return {"images": int(len(v)), "tied_images": int((top.sum(axis=1) > 1).sum()),
            "accuracy": round(float(right.mean()) if len(v) else 0.0, 5)}


def score(votes: np.ndarray, probs: np.ndarray) -> dict:
    pred = probs.argmax(axis=1)
    out: dict = {}
    for rule, labeller in RULES.items():
        labels = labeller(votes)
        keep = labels >= 0
        out[rule] = rule_metrics(labels[keep], pred[keep])
    out["argmax_ties_either"] = ties_either(votes, pred)
    return out


# ---------------------------------------------------------------- plots

def plot_confusion(cm: np.ndarray, title: str, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(cm)
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros(cm.shape, float), where=rows > 0)
    fig, ax = plt.subplots(figsize=(6.4, 5.6), dpi=90)
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, f"{cm[i, j]}", ha="center", va="center", fontsize=7,
                    color="white" if norm[i, j] > 0.55 else "black")
    ax.set_xticks(range(len(fer.EMOTIONS)), fer.EMOTIONS, rotation=45, ha="right")
    ax.set_yticks(range(len(fer.EMOTIONS)), [f"{e} ({int(r)})" for e, r in zip(fer.EMOTIONS, rows[:, 0])])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true (images)")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046, label="share of the true class")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def read_history(path: Path) -> dict[str, list[float]]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise EvaluationError(f"{path} has no epochs")
    columns: dict[str, list[float]] = {}
    for key in rows[0]:
        try:
            columns[key] = [float(r[key]) for r in rows]
        except (TypeError, ValueError):
            continue
    return columns


def plot_history(history: Path, title: str, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h = read_history(history)
    epochs = [e + 1 for e in h.get("epoch", range(len(next(iter(h.values())))))]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), dpi=90)
    for ax, metric in zip(axes, ("accuracy", "loss")):
        for key, style in ((metric, "-"), (f"val_{metric}", "-o")):
            if key in h:
                ax.plot(epochs, h[key], style, markersize=3,
                        label=("validation (official rule)" if key.startswith("val_") else "training (augmented)"))
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


# ---------------------------------------------------------------- command

def evaluate(model_path: Path, data_dir: Path, split: str = "test", out_dir: Path | None = None,
             history: Path | None = None, latency_runs: int = 300, views=VIEW_PRESETS["single"]) -> dict:
    model_path = Path(model_path).expanduser()
    model = load_model(model_path, views)
    data = fer.load_split(data_dir, split)
    started = time.perf_counter()
    probs = model.predict(data.images)
    result = {
        "model": model_path.name,
        "sha256": sha256_file(model_path),
        "file_bytes": model_path.stat().st_size,
        **model.info,
        "split": split,
        "split_images": len(data),
        **score(data.votes, probs),
        "predict_seconds": round(time.perf_counter() - started, 2),
        "evaluated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if split != "train":
        try:
            train_images = fer.load_split(data_dir, "train").images
        except (fer.DataError, OSError) as exc:  # a folder with the evaluated split only
            result["training_copies"] = f"not measured: the training split cannot be read ({exc})"
        else:
            result["training_copies"] = overlap_metrics(data.votes, probs, copies_of_training(data.images, train_images))
    if isinstance(model, TFLiteModel) and latency_runs > 0:
        result["latency"] = model.latency(data.images, runs=latency_runs)

    out_dir = Path(out_dir).expanduser() if out_dir else model_path.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{model_path.stem}-{split}"
    plots = {"confusion": plot_confusion(
        result["official"]["confusion"],
        f"{model_path.name}, FER+ {split}, official rule: "
        f"{100 * result['official']['accuracy']:.2f}% of {result['official']['images']}",
        out_dir / f"{stem}-confusion.png").name}
    if history is None and (model_path.parent / "history.csv").is_file():
        history = model_path.parent / "history.csv"
    if history is not None:
        history = Path(history).expanduser()
        if not history.is_file():
            raise EvaluationError(f"history file {history} does not exist")
        plots["curves"] = plot_history(history, f"training curves ({history.parent.name})",
                                       out_dir / f"{model_path.stem}-curves.png").name
    result["plots"] = plots
    json_path = out_dir / f"{stem}.json"
    atomic_write(json_path, json.dumps(result, indent=2) + "\n")
    result["json"] = str(json_path)
    return result


def summary(result: dict) -> str:
    n = len(result.get("views", [None]))
    seen = f", averaged over {n} views" if n > 1 else ""
    lines = [f"{result['model']} ({result['format']}, {result['file_bytes']:,} bytes{seen}) on FER+ {result['split']}:"]
    for rule in RULES:
        r = result[rule]
        lines.append(f"  {rule:8s} rule: accuracy {100 * r['accuracy']:.2f}% of {r['images']} images, "
                     f"macro-F1 {r['macro_f1']:.3f}")
    ties = result.get("argmax_ties_either")
    if ties:
        lines.append(f"  argmax   rule, any tied top class counted right: {100 * ties['accuracy']:.2f}% ({ties['tied_images']} "
                     f"of {ties['images']} images tied; the line above gives a tie to the first class, neutral first)")
    copies = result.get("training_copies")
    if isinstance(copies, dict):
        lines.append(f"  official rule without the {copies['copies']['images']} images that copy a training image: "
                     f"{100 * copies['unseen']['accuracy']:.2f}% of {copies['unseen']['images']} "
                     f"(those copies: {100 * copies['copies']['accuracy']:.2f}%)")
    elif copies:
        lines.append(f"  copies of training images: {copies}")
    lines.append("  per class (official rule): precision / recall / F1 / support")
    for name, c in result["official"]["per_class"].items():
        lines.append(f"    {name:10s} {c['precision']:.3f} / {c['recall']:.3f} / {c['f1']:.3f} / {c['support']}")
    if "latency" in result:
        lat = result["latency"]
        lines.append(f"  latency (LiteRT, 1 thread, {lat['runs']} runs): median {lat['median_ms']:.3f} ms, "
                     f"p95 {lat['p95_ms']:.3f} ms per face on {lat['machine']}")
    lines.append(f"  wrote {result['json']} and {', '.join(result['plots'].values())}")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", type=Path, help="a .keras model or a .tflite model with its manifest beside it")
    p.add_argument("--data", type=Path, default=fer.default_data_dir(),
                   help="FER+ folder layout or a folder with fer2013.csv + fer2013new.csv")
    p.add_argument("--split", choices=["test", "valid"], default="test",
                   help="test to report; valid to tune (never tune on test)")
    p.add_argument("--out", type=Path, help="output folder (default: the model's folder)")
    p.add_argument("--history", type=Path, help="history.csv of the run (default: one beside the model)")
    p.add_argument("--latency-runs", type=int, default=300, help="timed invocations for TFLite (0: skip)")
    add_views_options(p, "Keras model: average over these views (a TFLite model follows its manifest)")
    args = p.parse_args(argv)
    try:
        result = evaluate(args.model, args.data, args.split, args.out, args.history, args.latency_runs, args.views)
    except (EvaluationError, fer.DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(summary(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
