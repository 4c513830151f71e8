"""Train an emotion model on FER+.

    python -m training.train --arch edge --data ~/.cache/engage-data --out runs/edge

Checkpoints every epoch; ``--resume`` continues an interrupted run from its last epoch
(optimizer and schedule included). The output directory receives ``config.json`` (all
arguments, the git commit, the data sizes), ``history.csv`` (one row per epoch),
``best.keras`` (best validation accuracy under the official rule) and ``final.keras``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from training import data as fer
from training.models import build

DEFAULTS = {
    # the seed paper's recipe, kept as it was described
    "paper": {"epochs": 50, "batch_size": 14, "lr": 1e-4, "optimizer": "adam", "augment": 0.0},
    # ours: AdamW with warm-up and cosine decay, strong augmentation
    "edge": {"epochs": 40, "batch_size": 128, "lr": 3e-3, "optimizer": "adamw", "augment": 1.0},
}


def git_commit() -> str:
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=here, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "") if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m training.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", choices=sorted(DEFAULTS), default="edge")
    p.add_argument("--labels", choices=["soft", "majority"], default="soft",
                   help="training target: vote distribution (soft) or majority one-hot")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--augment", type=float, help="augmentation strength, 0 turns it off")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--data", type=Path, default=fer.default_data_dir(),
                   help="FER+ folder layout or a folder with fer2013.csv + fer2013new.csv")
    p.add_argument("--out", type=Path, required=True, help="run directory")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--limit", type=int, default=0, help="use only the first N images per split (smoke runs)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for TensorFlow (0: all)")
    args = p.parse_args(argv)
    for key, value in DEFAULTS[args.arch].items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    return args


def make_datasets(args):
    import tensorflow as tf

    from training.augment import make_augmenter

    train = fer.load_split(args.data, "train")
    valid = fer.load_split(args.data, "valid")
    if args.limit:
        train, valid = train.subset(np.arange(min(args.limit, len(train)))), valid.subset(np.arange(min(args.limit, len(valid))))
    targets, usable = fer.training_targets(train, args.labels)
    x_train, y_train = train.images[usable][..., None], targets[usable]
    v_labels = fer.majority_labels(valid.votes)
    keep = v_labels >= 0
    x_valid, y_valid = valid.images[keep][..., None].astype(np.float32) / 255.0, fer.one_hot(v_labels[keep])

    ds = tf.data.Dataset.from_tensor_slices((x_train, y_train))
    ds = ds.shuffle(len(x_train), seed=args.seed, reshuffle_each_iteration=True).batch(args.batch_size)
    if args.augment > 0:
        ds = ds.map(make_augmenter(args.seed, args.augment), num_parallel_calls=tf.data.AUTOTUNE)
    else:
        ds = ds.map(lambda x, y: (tf.cast(x, tf.float32) / 255.0, y), num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.prefetch(tf.data.AUTOTUNE)
    valid_ds = tf.data.Dataset.from_tensor_slices((x_valid, y_valid)).batch(256)
    sizes = {"train": int(len(x_train)), "train_dropped": int((~usable).sum()), "valid": int(len(x_valid))}
    return ds, valid_ds, sizes


def make_optimizer(args, steps_per_epoch: int):
    import keras

    if args.optimizer == "adam":
        return keras.optimizers.Adam(args.lr)
    total = max(1, args.epochs * steps_per_epoch)
    warmup = min(total // 10, 3 * steps_per_epoch)
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=args.lr / 10, decay_steps=total - warmup, alpha=0.01,
        warmup_target=args.lr, warmup_steps=warmup,
    )
    return keras.optimizers.AdamW(schedule, weight_decay=5e-4)


def train(args) -> Path:
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    out: Path = args.out
    if out.exists() and any(out.iterdir()) and not args.resume:
        raise SystemExit(f"{out} already holds a run: pass --resume to continue it or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(args.seed)

    train_ds, valid_ds, sizes = make_datasets(args)
    steps = int(train_ds.cardinality())
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    config.update(git_commit=git_commit(), sizes=sizes, keras=keras.__version__, tensorflow=tf.__version__,
                  started=time.strftime("%Y-%m-%dT%H:%M:%S"))
    if not args.resume or not (out / "config.json").exists():
        (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")

    model = build(args.arch)
    model.compile(optimizer=make_optimizer(args, steps), loss="categorical_crossentropy", metrics=["accuracy"])
    history_file = out / "history.csv"
    best_so_far = None
    if args.resume and history_file.exists():
        rows = [line.split(",") for line in history_file.read_text().splitlines()]
        if len(rows) > 1 and "val_accuracy" in rows[0]:
            col = rows[0].index("val_accuracy")
            best_so_far = max(float(r[col]) for r in rows[1:] if len(r) > col)
    callbacks = [
        keras.callbacks.BackupAndRestore(str(out / "backup"), save_freq="epoch", delete_checkpoint=False),
        keras.callbacks.CSVLogger(str(history_file), append=True),
        keras.callbacks.ModelCheckpoint(str(out / "best.keras"), monitor="val_accuracy", mode="max",
                                        save_best_only=True, initial_value_threshold=best_so_far),
    ]
    print(f"training {args.arch} on {sizes['train']} images ({args.labels} labels), "
          f"validating on {sizes['valid']}; {steps} steps per epoch", flush=True)
    model.fit(train_ds, validation_data=valid_ds, epochs=args.epochs, callbacks=callbacks, verbose=2)
    model.save(out / "final.keras")
    if not (out / "best.keras").exists():
        model.save(out / "best.keras")
    print(f"done: {out / 'best.keras'}", flush=True)
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        train(args)
    except fer.DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
