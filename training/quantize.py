"""Convert a trained Keras model to a full-integer int8 TFLite model plus its manifest.

    python -m training.quantize runs/edge/best.keras --out models/emotion-int8.tflite
    python -m training.quantize runs/paper/best.keras --float --out models/baseline/paper-float.tflite

Every op is int8 and so are the input and output tensors; the representative dataset is
drawn from training images (never validation or test). The manifest written beside the
model (same name, ``.json``) is the contract with the device: labels, input size and the
``pixel * scale + offset`` rule, the file's sha256, and the metrics when given.
``--float`` writes a plain float32 model instead (the paper baseline for benchmarks), with
the same manifest; the device runtime takes either.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from edge_app.fsutil import atomic_write
from edge_app.vision.classifier import (
    VIEW_PRESETS,
    parse_views,
    sha256_file,
    views_json,
)
from training import data as fer
from training.models import INPUT_OFFSET, INPUT_SCALE, NetworkError, load_network


def representative_images(data_dir: Path, count: int = 500, seed: int = 0) -> np.ndarray:
    train = fer.load_split(data_dir, "train")
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(train), size=min(count, len(train)), replace=False)
    return train.images[idx]


def convert(model, images: np.ndarray) -> bytes:
    """Full-integer quantisation of a Keras model; ``images`` are uint8 (N, 48, 48)."""
    import tensorflow as tf

    def representative():
        for img in images:
            x = img.astype(np.float32)[None, :, :, None] * INPUT_SCALE + INPUT_OFFSET
            yield [x]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return converter.convert()


def convert_float(model) -> bytes:
    """Float32 TFLite, no quantisation: the reference the int8 model is compared with."""
    import tensorflow as tf

    return tf.lite.TFLiteConverter.from_keras_model(model).convert()


def add_views_options(p: argparse.ArgumentParser, what: str) -> None:
    """``--views`` and its shorthand ``--flip-average``, parsed into ``args.views`` (a tuple
    of views); a bad value stops with the parser's usage error."""

    def views(text: str):
        try:
            return parse_views(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    p.add_argument("--views", type=views, default=VIEW_PRESETS["single"],
                   help=f"{what}: one of {sorted(VIEW_PRESETS)} or a JSON list such as "
                        "'[{\"flip\": true, \"shift\": [0, 1]}]'")
    p.add_argument("--flip-average", action="store_const", dest="views", const=VIEW_PRESETS["flip"],
                   help="same as --views flip")


def write_manifest(tflite_path: Path, metrics: dict | None = None, extra: dict | None = None) -> Path:
    """Write ``<model>.json`` beside ``tflite_path`` describing it for the device."""
    manifest = {
        "model": tflite_path.name,
        "labels": list(fer.EMOTIONS),
        "input": {"size": [48, 48], "channels": 1, "scale": INPUT_SCALE, "offset": INPUT_OFFSET},
        "sha256": sha256_file(tflite_path),
        "metrics": metrics or {},
    }
    if extra:
        manifest.update(extra)
    out = tflite_path.with_suffix(".json")
    atomic_write(out, json.dumps(manifest, indent=2) + "\n")
    return out


def read_metrics(path: Path, remedy: str = "Give the evaluation's .json, or leave --metrics out") -> dict:
    """The evaluation to embed, read before anything is written: a bad --metrics path left
    the new model beside the old manifest, which the device refuses (sha256)."""
    try:
        metrics = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"--metrics {path} cannot be read as training.evaluate's JSON ({exc}); nothing was written. "
                         f"{remedy}") from None
    if not isinstance(metrics, dict):
        raise ValueError(f"--metrics {path} is not training.evaluate's JSON (an object); nothing was written")
    return metrics


def write_model_and_manifest(out: Path, tflite: bytes, metrics: dict | None, extra: dict) -> Path:
    """The model and its manifest into place as a pair (staged beside ``out``, then moved, the
    pair before put back on a failure between): the device refuses a model beside another's
    manifest."""
    from training.ship import write_pair  # ship imports this module

    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".quantize-") as tmp:
        staged = Path(tmp) / out.name
        staged.write_bytes(tflite)
        write_pair(out.parent, (staged, write_manifest(staged, metrics, extra)))
    return out.with_suffix(".json")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.quantize", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", type=Path, help="a .keras model from training.train")
    p.add_argument("--out", type=Path, required=True, help="output .tflite path")
    p.add_argument("--data", type=Path, default=fer.default_data_dir())
    p.add_argument("--samples", type=int, default=500, help="representative images (int8)")
    p.add_argument("--float", dest="float32", action="store_true",
                   help="write a float32 model (no quantisation, no representative data)")
    p.add_argument("--metrics", type=Path, help="evaluation JSON to embed in the manifest")
    p.add_argument("--version", default="", help="model version string for the manifest")
    add_views_options(p, "tell the device to average each face over these views (one invocation each)")
    args = p.parse_args(argv)
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")

    if not args.model.is_file():
        print(f"error: {args.model} does not exist", file=sys.stderr)
        return 2
    try:
        metrics = read_metrics(args.metrics) if args.metrics else None
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        model = load_network(args.model)  # before anything is written: a wrong network got a manifest that lied
    except NetworkError as exc:
        print(f"error: {exc}; nothing was written", file=sys.stderr)
        return 2
    try:
        tflite = convert_float(model) if args.float32 else convert(model, representative_images(args.data, args.samples))
    except fer.DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    extra = {"architecture": model.name, "precision": "float32" if args.float32 else "int8",
             "parameters": int(model.count_params())}
    if args.version:
        extra["version"] = args.version
    if args.views != VIEW_PRESETS["single"]:
        extra["inference"] = {"views": views_json(args.views)}
    manifest = write_model_and_manifest(args.out, tflite, metrics, extra)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes) and {manifest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
