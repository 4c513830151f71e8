"""Train an emotion model on FER+.

    python -m training.train --arch edge --data ~/.cache/engage-data --out runs/edge

Checkpoints every epoch; ``--resume`` continues an interrupted run from its last epoch
(optimizer and schedule included), after a kill at any point too: ``backup/`` keeps the
last two epochs, each renamed into place whole, and history.csv and best.keras are
rebuilt from it (``save_backup``, ``reconcile_outputs``). A resume is given the arguments
config.json records: one that would change what is computed is refused (``check_resume``).
The output directory receives ``config.json`` (all arguments, the git commit, the data
sizes and digest), ``history.csv`` (one row per epoch),
``best.keras`` (best validation accuracy under the official rule) and ``final.keras``;
with ``--average-last N`` also ``averaged.keras``, the mean weights of the last N planned
epochs, and ``averaged.json`` with its validation accuracy beside best.keras's (the running
mean lives in ``averaging/``, kept in step with the backup: a killed run resumes with it).
``--init-from`` starts from an earlier run's network (its weights, a fresh optimizer and
schedule): a warm restart that continues a run whose schedule had ended too early.

Runs on any Keras 3 backend: TensorFlow on a CPU here, JAX or PyTorch on a GPU machine
(``KERAS_BACKEND=jax``); augmentation is part of the training graph, so the input
pipeline is plain arrays. ``--time-budget`` fits the learning-rate schedule to the
epochs that fit in the given seconds, so a run on a borrowed machine still anneals.
"""
from __future__ import annotations

import argparse
import contextlib
import errno
import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge_app.fsutil import atomic_path, atomic_write, free_mb, fsync_dir
from training import data as fer
from training import distill
from training.models import INPUT_OFFSET, INPUT_SCALE, build, unreadable_network

DEFAULTS = {
    # the seed paper's recipe, kept as it was described
    "paper": {"epochs": 50, "batch_size": 14, "lr": 1e-4, "optimizer": "adam", "augment": 0.0},
    # ours: AdamW with warm-up and cosine decay, augmentation at 0.7 (1.0 underfit: edge-v1)
    "edge": {"epochs": 40, "batch_size": 128, "lr": 3e-3, "optimizer": "adamw", "augment": 0.7},
}
DEFAULTS["edge-w"] = DEFAULTS["edge-m"] = DEFAULTS["edge-l"] = DEFAULTS["edge"]
# with --time-budget the plan is re-estimated over these first epochs, then fixed, so the
# run equals one with --epochs set to the plan: the replay command in config.json rebuilds
# it. Nothing before the plan is fixed may depend on it: a budgeted run warms up over
# BUDGET_WARMUP epochs whatever the plan (a plan under 30 epochs would otherwise shorten
# the warm-up, and the replay's --warmup says so), the first cosine epoch is the same for
# every plan, and the weights of these epochs join --average-last only once it is fixed
PLAN_FIXED_AFTER = 4
BUDGET_WARMUP = PLAN_FIXED_AFTER - 1
AVERAGING_DIR = "averaging"  # --average-last's running state, one file per epoch it changed
BACKUP_DIR = "backup"  # the state a resume continues from, one folder per epoch (the last two)
BACKUP_WEIGHTS, BACKUP_STATE = "training.weights.h5", "state.json"
clock = time.monotonic  # what the time budget's schedule reads (a test gives it a pretend one)
LEGACY_BACKUP = ("latest.weights.h5", "training_metadata.json")  # Keras's BackupAndRestore, before
KILL_AT_ENV = "ENGAGE_TRAIN_KILL_AT"  # tests only: see kill_point


def git_commit() -> str:
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=here, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "") if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def out_in_checkout(out: Path) -> str:
    """What is wrong with ``out`` as a run folder inside this checkout that git does not
    ignore, "" if nothing: a run's checkpoints (megabytes each epoch) went into ``git add -A``,
    and into what a GPU call carries (64 MiB), beside the code. ``runs/`` is ignored for them."""
    repo = Path(__file__).resolve().parent.parent
    try:
        inside = out.expanduser().resolve().relative_to(repo)
    except ValueError:
        return ""
    try:
        ignored = subprocess.run(["git", "check-ignore", "-q", f"{inside.as_posix()}/"], cwd=repo,
                                 capture_output=True, timeout=10).returncode
    except (OSError, subprocess.SubprocessError):
        return ""
    if ignored != 1:  # 0: ignored; 128: no git or not a checkout, nothing to commit by mistake
        return ""
    return (f"--out {out} lies inside the checkout ({repo}) where git does not ignore it: its checkpoints would "
            f"be committed with the code and carried to a GPU call. Use --out runs/{out.name} (ignored) or a "
            "folder outside the checkout, e.g. ~/runs/" + out.name)


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
    p.add_argument("--init-from", type=Path,
                   help="start from this trained network (an earlier run's best.keras) instead of random weights")
    p.add_argument("--limit", type=int, default=0, help="use only the first N images per split (smoke runs)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for TensorFlow (0: all)")
    p.add_argument("--time-budget", type=float, default=0,
                   help="seconds this run may take; the epochs that fit are planned after the first "
                        f"{PLAN_FIXED_AFTER} and then fixed (config.json records the replay command)")
    p.add_argument("--stop-after", type=int, default=0,
                   help="stop after this many epochs while the schedule still plans --epochs "
                        "(replays a run that its time budget cut short)")
    p.add_argument("--teacher", help="distil from a teacher: an architecture trained alongside "
                                     "(e.g. edge-l), an earlier run's best.keras (frozen), or several "
                                     "comma-separated (frozen; the mean of their answers)")
    p.add_argument("--teacher-views", choices=["single", "flip"], default="single",
                   help="flip: a trained teacher answers with the mean over the face and its mirror "
                        "image (the device's two views), for a student that will run on one view")
    p.add_argument("--distill-alpha", type=float, default=0.5,
                   help="weight of the teacher's softened outputs in the student's loss (0..1)")
    p.add_argument("--temperature", type=float, default=2.0, help="distillation temperature")
    p.add_argument("--logit-adjust", type=float, default=0.0,
                   help="tau of the logit-adjusted loss (0: off; 1: full prior correction)")
    p.add_argument("--warmup", type=int,
                   help="epochs of linear learning-rate warm-up (AdamW; default: 3, fewer for runs of under "
                        f"30 epochs; {BUDGET_WARMUP} with --time-budget, whose plan is not known yet; a --resume keeps "
                        "the run's own)")
    p.add_argument("--average-last", type=int, default=0,
                   help="also write averaged.keras: the mean of the network's weights over the last N "
                        "planned epochs (a steadier choice than the single best validation epoch)")
    args = p.parse_args(argv)
    if args.average_last < 0:
        p.error("--average-last must be 0 (off) or a number of epochs")
    if args.warmup is not None and args.warmup < 1:
        p.error("--warmup must be at least 1 epoch")
    if args.time_budget and args.warmup is None and not args.resume:  # a resume keeps the run's own (check_resume)
        args.warmup = BUDGET_WARMUP
    if not 0.0 <= args.distill_alpha <= 1.0 or args.temperature <= 0:
        p.error("--distill-alpha must lie in 0..1 and --temperature be positive")
    if args.logit_adjust and not args.teacher:
        p.error("--logit-adjust is part of the distillation loss: pass --teacher too")
    if args.teacher_views != "single" and not args.teacher:
        p.error("--teacher-views is the teacher's: pass --teacher too")
    problem = distill.teacher_problem(args.teacher, args.teacher_views == "flip") if args.teacher else ""
    if problem:
        p.error(problem)
    for key, value in DEFAULTS[args.arch].items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    return args


# what a resume may give afresh, none of which changes what an epoch computes: where the run
# and its data lie (the data are compared by what they hold: ``data_digest``), the threads,
# and how long this process may go on (a time budget counts afresh from the resume and only
# plans a run whose plan is not fixed yet; --stop-after ends it early)
RESUME_MAY_DIFFER = ("out", "data", "resume", "threads", "time_budget", "stop_after")


def read_config(out: Path) -> dict[str, Any] | None:
    """The run's config.json (its arguments, plan and data), None if there is none yet."""
    path = out / "config.json"
    if not path.is_file():
        return None
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SystemExit(f"{path} cannot be read ({exc}): the run's arguments are not known, so it cannot be "
                         "resumed; start it again in a new --out") from None
    if not isinstance(config, dict):
        raise SystemExit(f"{path} is not a run's config.json: the run cannot be resumed; start it again in a new --out")
    return config


def recorded_plan(recorded: dict[str, Any]) -> int | None:
    """The epochs a resumed run is planned for: those its time budget fixed, or its
    --epochs if it had no budget; None while a budgeted run's plan is not fixed yet."""
    if recorded.get("planned_epochs") and recorded.get("plan_fixed", True):
        return int(recorded["planned_epochs"])
    if not recorded.get("time_budget") and recorded.get("epochs"):
        return int(recorded["epochs"])
    return None


def check_resume(args, recorded: dict[str, Any]) -> None:
    """Refuses to resume with arguments that compute another run than config.json records
    (a resume that trained on other data or with other settings kept recording the old
    ones), naming each; only those of ``RESUME_MAY_DIFFER`` may differ. A --warmup
    not given takes the recorded one (a time budget added or dropped on a resume does not
    change the run's warm-up), and one that gives the same warm-up under the run's plan
    takes the recorded value."""
    arch = recorded.get("arch") if recorded.get("arch") in DEFAULTS else args.arch
    defaults = vars(parse_args(["--out", str(args.out), "--arch", str(arch)]))  # for keys an older version did not record
    if args.warmup is None:
        args.warmup = recorded.get("warmup")  # the run's own warm-up (a budget's, or none chosen)
    plan = recorded_plan(recorded) or args.epochs
    problems = []
    for key, given in vars(args).items():
        if key in RESUME_MAY_DIFFER:
            continue
        was = recorded.get(key, defaults.get(key))
        if key == "warmup" and warmup_epochs(given, plan) == warmup_epochs(was, plan):
            args.warmup = was
            continue
        if same_setting(key, was, given):
            continue
        flag = "the optimizer (set by --arch)" if key == "optimizer" else "--" + key.replace("_", "-")
        line = f"{flag} recorded {shown(was)}, given {shown(given)}"
        if key == "warmup":
            line += (f" ({warmup_epochs(was, plan)} and {warmup_epochs(given, plan)} epochs of warm-up for the "
                     f"plan of {plan}{'; --time-budget sets --warmup ' + str(BUDGET_WARMUP) if args.time_budget else ''})")
        problems.append(line)
    if problems:
        raise SystemExit(f"{args.out} holds a run recorded with other arguments than these (config.json): "
                         + "; ".join(problems) + ". Resume it with the recorded ones, or start a new run in a new "
                         f"--out (--init-from {args.out / 'best.keras'} starts one from this run's network)")


def shown(value: Any) -> str:
    return "nothing" if value is None or value == "" else str(value)


def same_setting(key: str, recorded: Any, given: Any) -> bool:
    """A recorded argument and the one given now are the same: equal, or for files (--init-from,
    --teacher) the same files under other names."""
    if isinstance(given, Path):
        given = str(given)
    if recorded == given:
        return True
    if key not in ("init_from", "teacher") or not (isinstance(recorded, str) and isinstance(given, str)):
        return False
    before, now = distill.teacher_files(recorded), distill.teacher_files(given)
    return len(before) == len(now) and all(a == b or (Path(a).is_file() and Path(b).is_file() and os.path.samefile(a, b))
                                           for a, b in zip(before, now))


def input_files(args) -> dict[str, str]:
    """The sha256 of each network file the run starts from or learns from (--init-from, a
    trained --teacher), by the path given: the replay command names them by path only, and
    a teacher overwritten between two legs changed the targets of the rest of the run."""
    from training.models import ARCHITECTURES

    paths = [str(args.init_from)] if args.init_from else []
    if args.teacher and args.teacher not in ARCHITECTURES:
        paths += distill.teacher_files(args.teacher)
    return {path: hashlib.sha256(Path(path).expanduser().read_bytes()).hexdigest()
            for path in paths if Path(path).expanduser().is_file()}


def check_resumed_teachers(args, recorded: dict[str, Any]) -> None:
    """Refuses to resume a distillation whose teacher file now holds another network than the
    run began with (the same path, other bytes); --init-from only set the first weights, which
    the backup has replaced, so it may have changed."""
    before = recorded.get("input_files")
    if not before or not args.teacher:
        return
    now = input_files(args)
    changed = [f for f in distill.teacher_files(args.teacher)
               if f in now and list(before.values()).count(now[f]) == 0]
    if changed:
        raise SystemExit(f"--teacher {', '.join(changed)} holds another network than the run in {args.out} began "
                         "with (its sha256 differs from config.json's input_files): resume it with the teacher it "
                         "was recorded with, or start a new run in a new --out")


def check_resumed_data(args, recorded: dict[str, Any], sizes: dict[str, int], digest: str) -> None:
    """Refuses to resume on other images or labels than the run was trained on; --data may
    lie elsewhere now (a copy, another machine, the folder's ``training.data pack``). A run
    recorded by an older version has no digest: its sizes are compared."""
    def trained_on(counts: dict) -> dict:
        # not "train_dropped": a data pack leaves out beforehand what no label rule can use, so the
        # same images trained on come with 45 dropped from a pack and 147 from the folder
        return {k: v for k, v in counts.items() if k != "train_dropped"}

    if recorded.get("data_digest", digest) == digest and trained_on(recorded.get("sizes", sizes)) == trained_on(sizes):
        return
    raise SystemExit(f"--data {args.data} gives other images or labels than the run in {args.out} was trained on "
                     f"(recorded: --data {recorded.get('data')}, sizes {recorded.get('sizes')}; given: sizes {sizes}): "
                     "resume it with the data it was recorded with, or start a new run in a new --out")


def make_arrays(args):
    """Training images with their targets and validation images with one-hot majority
    labels, as float arrays in [0, 1] (the model's input rule) that any Keras backend can
    fit on, and their sizes."""
    train = fer.load_split(args.data, "train")
    valid = fer.load_split(args.data, "valid")
    if args.limit:
        train, valid = train.subset(np.arange(min(args.limit, len(train)))), valid.subset(np.arange(min(args.limit, len(valid))))
    targets, usable = fer.training_targets(train, args.labels)
    x_train = train.images[usable][..., None].astype(np.float32) * INPUT_SCALE + INPUT_OFFSET  # the manifest's rule
    y_train = targets[usable]
    v_labels = fer.majority_labels(valid.votes)
    keep = v_labels >= 0
    x_valid, y_valid = valid.images[keep][..., None].astype(np.float32) * INPUT_SCALE + INPUT_OFFSET, fer.one_hot(v_labels[keep])
    sizes = {"train": int(len(x_train)), "train_dropped": int((~usable).sum()), "valid": int(len(x_valid))}
    return (x_train, y_train), (x_valid, y_valid), sizes


def learning_rate(args, epoch: int, planned: int) -> float:
    """Adam: constant. AdamW: linear warm-up over ``--warmup`` epochs (by default 3, fewer
    for a plan under 30 epochs), then cosine decay towards 1%, reached one epoch past the
    last planned one: the last epoch runs at 1.08% of the peak in a 57-epoch plan, 3.4% in
    an 11-epoch one (kept so: every recorded run's replay computes these rates)."""
    if args.optimizer == "adam":
        return float(args.lr)
    warmup = warmup_epochs(args.warmup, planned)
    if epoch < warmup:
        return float(args.lr * (0.1 + 0.9 * epoch / warmup))
    progress = min(1.0, (epoch - warmup) / max(1, planned - warmup))
    return float(args.lr * (0.01 + 0.99 * 0.5 * (1 + np.cos(np.pi * progress))))


def warmup_epochs(warmup: int | None, planned: int) -> int:
    """The epochs of warm-up: ``--warmup``, or by default 3, fewer for a plan under 30 epochs."""
    return warmup or min(3, max(1, planned // 10))


def data_digest(*arrays: np.ndarray) -> str:
    """A digest of the arrays a run trains and validates on: a resume must see the same
    ones, wherever --data lies now."""
    digest = hashlib.sha256()
    for a in arrays:
        digest.update(f"{a.dtype}{a.shape}".encode())
        digest.update(np.ascontiguousarray(a).data)
    return digest.hexdigest()[:16]


def planned_epochs(cap: int, done: int, epoch_times: list[float], seconds_left: float) -> int:
    """Epochs to plan for: those done plus as many as fit in the time left at the slowest
    of the last three epochs (the first epoch, which compiles, left out), never more than
    ``cap``. The slowest, not the median: runs side by side on one GPU finish compiling at
    different times, and the first to finish ran its next epochs alone, faster than every
    epoch after (measured: a plan of 223 epochs of which 134 fitted). Planning too many cuts
    the cosine schedule short and leaves nothing to average; too few ends a little early."""
    recent = (epoch_times[1:] or epoch_times)[-3:]
    per_epoch = float(max(recent))
    return min(cap, done + int(max(0.0, seconds_left) // max(per_epoch, 1e-9)))


def make_callbacks(args, net, out: Path, history: list[dict[str, Any]], best_so_far: float | None,
                   lost_backups: int = 0):
    """The run's callbacks, in the order an epoch's end needs: the schedule, the averaging
    state, then the commit (backup, history.csv, best.keras). ``history`` and
    ``best_so_far`` are what ``restore_backup``/``reconcile_outputs`` recovered;
    ``lost_backups`` unreadable backups were skipped, so averaging/ may be that many more
    epochs ahead."""
    import keras

    class Schedule(keras.callbacks.Callback):
        """Sets the epoch's learning rate and logs it (``learning_rate`` in history.csv).

        With a time budget, the plan (at most ``--epochs``) is re-estimated from the epoch
        times (``planned_epochs``; end to end, the first, which compiles, left out) over the
        first ``PLAN_FIXED_AFTER`` epochs,
        then fixed and written to config.json with the command that replays it; the run
        then goes to the plan, unless the budget runs out first (recorded as cut short).
        A run that stops before its plan is fixed records the plan so far, not fixed.
        A resumed run keeps the plan it fixed, with a time budget (which counts afresh
        from the resume, and cuts the run short only) or without; a budgeted run resumed
        without one before its plan was fixed is planned for --epochs."""

        def __init__(self):
            super().__init__()
            self.planned, self.started, self.times = args.epochs, clock(), []
            self.last_end = self.started
            self.fixed = not args.time_budget
            recorded = read_config(out) if args.resume else None
            plan = recorded_plan(recorded) if recorded else None
            if plan is not None:
                # planning again from the time left now would change the epochs still to run
                self.planned, self.fixed = plan, True
                if recorded and "planned_epochs" in recorded:
                    record_plan(args, out, self.planned)  # no longer cut short, unless it is again
            elif recorded and not args.time_budget:
                self.planned, self.fixed = args.epochs, True
                record_plan(args, out, self.planned)
                print(f"note: this run's time budget had not fixed its plan; resumed without --time-budget it is "
                      f"planned for --epochs {args.epochs} (config.json records the plan)", flush=True)

        def on_epoch_begin(self, epoch, logs=None):
            self.rate = learning_rate(args, epoch, self.planned)
            self.model.optimizer.learning_rate = self.rate

        def on_epoch_end(self, epoch, logs=None):
            if logs is not None:
                logs["learning_rate"] = self.rate
            # from one epoch's end to the next: the epoch and the previous one's backup,
            # history and checkpoints, which the callbacks after this one write (a third
            # of an epoch's time for three runs side by side; timing only fit's part of it
            # planned 153 epochs of which 130 fitted)
            now = clock()
            self.times.append(now - self.last_end)
            self.last_end = now
            left = args.time_budget - (now - self.started)
            if not self.fixed and len(self.times) >= 2:
                fixing = epoch + 1 >= PLAN_FIXED_AFTER
                # the fixed plan keeps 5% of the time in hand: later epochs run a little slower
                self.planned = planned_epochs(args.epochs, epoch + 1, self.times, left * (0.95 if fixing else 1.0))
                if fixing and self.planned > epoch + 1:
                    self.fixed = True
                    record_plan(args, out, self.planned)
            if epoch + 1 >= self.planned or (args.stop_after and epoch + 1 >= args.stop_after):
                self.model.stop_training = True
                if not self.fixed:
                    self.record_unfixed(epoch + 1)
            elif self.fixed and args.time_budget and left <= 0:
                record_plan(args, out, self.planned, cut_short_at=epoch + 1)
                self.model.stop_training = True

        def record_unfixed(self, done: int) -> None:
            """The plan of a budgeted run that stops before it was fixed: all of --epochs
            if it ran them, else the budget's estimate, cut short where the budget ran
            out (the epochs so far do not depend on the plan, so the replay is this run)
            or stopped by --stop-after; a resume with a budget plans that one again."""
            if done >= args.epochs:
                record_plan(args, out, args.epochs)
            elif done >= self.planned:
                record_plan(args, out, self.planned, cut_short_at=done, fixed=False)
                pace = max((self.times[1:] or self.times)[-3:])
                needed = self.times[0] + PLAN_FIXED_AFTER * pace / 0.95
                print(f"warning: the time budget ({args.time_budget:g} s) ran out after {done} epochs, before the "
                      f"plan is fixed (after {PLAN_FIXED_AFTER}), so the learning rate never annealed; config.json "
                      f"records the plan so far, cut short. A budget of more than {needed:.0f} s (at this pace) "
                      "lets a run fix its plan", flush=True)
            else:
                record_plan(args, out, self.planned, fixed=False)

    class AverageLast(keras.callbacks.Callback):
        """Keeps the mean of the network's weights (batch-norm statistics included) over
        the epochs from ``planned - n`` on, in ``averaged.keras`` with its epoch count in
        ``averaged.json``. Late epochs of a cosine schedule lie in one basin, so their
        mean is a network too (stochastic weight averaging).

        The running state goes to ``averaging/`` (see ``write_average_state``) before the
        Keras backup of the same epoch, and a resumed run takes the state after the epoch
        the backup restores, so a kill anywhere in between neither drops nor repeats an
        epoch: the resumed mean is the one the run would have had without the kill."""

        def __init__(self, net, out: Path, n: int, schedule):
            super().__init__()
            self.net, self.out, self.n, self.schedule = net, out, n, schedule
            self.count, self.last_epoch = 0, 0
            self.mean: list[np.ndarray] = []  # the running mean, one array per weight
            self.pending: list[tuple[int, list[np.ndarray]]] = []  # epochs seen before the plan was fixed
            self.done: int | None = None  # epochs done: known once the backup has set the first epoch

        def on_epoch_begin(self, epoch, logs=None):
            if self.done is None:
                self.done = epoch
                self.restore(epoch)

        def restore(self, done: int) -> None:
            directory = self.out / AVERAGING_DIR
            state = read_average_state(directory, done, ahead=1 + lost_backups)
            if state is not None:
                self.count, self.mean, self.pending, self.last_epoch = state
            elif done and not directory.exists() and (self.out / "averaged.json").is_file() \
                    and (self.out / "averaged.keras").is_file():
                # a run begun before averaging/ existed: its mean, as that version kept it
                recorded = json.loads((self.out / "averaged.json").read_text())
                self.count, self.last_epoch = int(recorded["epochs"]), int(recorded["last_epoch"])
                saved = keras.models.load_model(self.out / "averaged.keras", compile=False)
                self.mean = [np.asarray(w, np.float64) for w in saved.get_weights()]

        def on_epoch_end(self, epoch, logs=None):
            self.done, planned = epoch + 1, self.schedule.planned
            # before the plan is fixed, whether an epoch is among the last n is not known:
            # its weights wait for the plan (a replay with --epochs set to it averages these).
            # An epoch past the plan runs only when a finished run is resumed: not averaged
            if not self.schedule.fixed or planned - self.n < epoch + 1 <= planned:
                self.pending.append((epoch, [np.asarray(w, np.float64) for w in self.net.get_weights()]))
            if self.pending:
                self.save(self.fold() if self.schedule.fixed else False)

        def on_train_end(self, logs=None):
            if self.pending:  # a run that stopped before its plan was fixed
                self.save(self.fold())

        def fold(self) -> bool:
            """Adds the pending epochs among the last n to the mean; True if any was."""
            epochs = [(e, w) for e, w in self.pending if e + 1 > self.schedule.planned - self.n]
            self.pending = []
            for e, weights in epochs:
                self.count += 1
                self.mean = weights if not self.mean else [m + (w - m) / self.count for m, w in zip(self.mean, weights)]
                self.last_epoch = e + 1
            return bool(epochs)

        def save(self, mean_changed: bool) -> None:
            assert self.done is not None
            write_average_state(self.out / AVERAGING_DIR, self.done, self.count, self.mean, self.pending, self.last_epoch)
            kill_point("averaging-saved", self.done)
            if not mean_changed:
                return
            original = self.net.get_weights()
            self.net.set_weights([m.astype(w.dtype) for m, w in zip(self.mean, original)])
            try:
                with atomic_path(self.out / "averaged.keras", suffix=".keras") as tmp:
                    self.net.save(tmp)
            finally:
                self.net.set_weights(original)
            atomic_write(self.out / "averaged.json", json.dumps({"epochs": self.count, "last_epoch": self.last_epoch}) + "\n")

    class Commit(keras.callbacks.Callback):
        """An epoch counts as done once its backup is renamed into place (``save_backup``:
        weights, optimizer, epoch count and the history in one folder); history.csv and
        best.keras come after it, and a resume rebuilds them from the backup
        (``reconcile_outputs``), so a kill between them loses neither."""

        def __init__(self, history, best):
            super().__init__()
            self.history, self.best = history, best

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            self.history.append({"epoch": epoch, **{k: float(v) for k, v in logs.items()}})
            save_backup(self.model, out / BACKUP_DIR, epoch + 1, self.history)
            kill_point("backed-up", epoch + 1)
            write_history(out, self.history)
            kill_point("history-written", epoch + 1)
            value = logs.get("val_accuracy")
            if value is not None and (self.best is None or value > self.best):
                self.best = float(value)
                save_best(net, out)

    schedule = Schedule()
    return [
        schedule,
        # before the backup: its state of an epoch is on disk before the epoch counts as done
        *([AverageLast(net, out, args.average_last, schedule)] if args.average_last else []),
        Commit(history, best_so_far),
    ]


def write_average_state(directory: Path, done: int, count: int, mean: list[np.ndarray],
                        pending: list[tuple[int, list[np.ndarray]]], last_epoch: int) -> None:
    """Saves --average-last's whole state after ``done`` epochs as one file, at once or not
    at all (float64, so a resumed mean is bit for bit the uninterrupted one), keyed by
    ``done``. It is written before the backup of its epoch, so at a kill it is at most
    one epoch ahead of the backup, two where the resume finds the newest backup
    unreadable and takes the one before: the two snapshots before it are kept for these
    cases, older ones are removed."""
    directory.mkdir(exist_ok=True)
    arrays: dict[str, Any] = {"count": np.array(count), "last_epoch": np.array(last_epoch),
                              "pending_epochs": np.array([e for e, _ in pending], np.int64)}
    arrays.update({f"mean_{i}": m for i, m in enumerate(mean)})
    arrays.update({f"pending_{k}_{i}": w for k, (_, weights) in enumerate(pending) for i, w in enumerate(weights)})
    with atomic_path(directory / f"after-{done:05d}.npz", suffix=".npz") as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
    for old in sorted(directory.glob("after-*.npz"))[:-3]:
        old.unlink()


def read_average_state(directory: Path, done: int, ahead: int = 1):
    """The state ``write_average_state`` saved after ``done`` epochs (the epochs the backup
    restores): the newest snapshot taken after at most ``done`` epochs, None if there is
    none (no epoch saved yet). A snapshot up to ``ahead`` epochs ahead is from an epoch
    whose backup a kill prevented (or was unreadable): it is removed, the resumed run does
    that epoch again."""
    snapshots = {int(p.stem.removeprefix("after-")): p for p in directory.glob("after-*.npz")}
    if any(e > done + ahead for e in snapshots):
        raise SystemExit(f"{directory} holds the --average-last state after {max(snapshots)} epochs, but the backup "
                         f"restores {done}: the run's backup/ is older than its averaging/ state; "
                         "start the run again in a new --out")
    for e in [e for e in snapshots if e > done]:
        snapshots.pop(e).unlink()
    if not snapshots:
        return None
    with np.load(snapshots[max(snapshots)]) as saved:
        def arrays(prefix: str) -> list[np.ndarray]:
            keys = sorted((k for k in saved.files if k.startswith(prefix)), key=lambda k: int(k[len(prefix):]))
            return [saved[k] for k in keys]

        pending = [(int(e), arrays(f"pending_{k}_")) for k, e in enumerate(saved["pending_epochs"])]
        return int(saved["count"]), arrays("mean_"), pending, int(saved["last_epoch"])


def save_backup(trainer, directory: Path, done: int, history: list[dict[str, Any]]) -> None:
    """The run's state after ``done`` epochs, all or nothing: ``epoch-NNNNN/`` holds what
    Keras's BackupAndRestore kept (the training model's weights with the optimizer's
    variables, ``trainer.save_weights``) and ``state.json`` (the epoch count and the
    history rows), written as a hidden folder, fsynced and renamed into place. Keras's
    own backup overwrote its weights file in place, then wrote the epoch beside it: a kill
    could leave a half-written file or an epoch count that did not match the weights. The
    previous backup is kept until this one is complete (and after, for a resume that
    finds this one unreadable); older ones are removed."""
    directory.mkdir(exist_ok=True)
    final, partial = directory / f"epoch-{done:05d}", directory / f".epoch-{done:05d}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    try:
        partial.mkdir()
        trainer.save_weights(partial / BACKUP_WEIGHTS)
        kill_point("backup-writing", done)
        (partial / BACKUP_STATE).write_text(json.dumps({"epoch": done, "history": history}) + "\n")
        for name in (BACKUP_WEIGHTS, BACKUP_STATE):
            with open(partial / name, "rb") as f:
                os.fsync(f.fileno())
        fsync_dir(partial)
    except OSError:
        # a full disk: the half-written backup took the room a resume needs, until the resume
        close_h5_files(partial)
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if final.exists():  # an unreadable backup of an epoch done again: not the one resumed from
        shutil.rmtree(final)
    os.rename(partial, final)
    fsync_dir(directory)
    for old in sorted(directory.glob("epoch-[0-9]*"))[:-2]:
        shutil.rmtree(old)
    for name in LEGACY_BACKUP:  # an older version's backup, resumed from: replaced by this one
        (directory / name).unlink(missing_ok=True)


def close_h5_files(folder: Path) -> None:
    """Closes the HDF5 files in ``folder`` that a failed ``save_weights`` left open (Keras
    does not close its store when a write fails): h5py closed them as Python exited, wrote
    to the full disk again and crashed the process (a segfault, after the error). Each is
    emptied first, so that closing, which flushes, has room to."""
    import h5py

    for path in folder.glob("*.h5"):
        with contextlib.suppress(OSError):
            os.truncate(path, 0)
    for fid in h5py.h5f.get_obj_ids(types=h5py.h5f.OBJ_FILE):
        with contextlib.suppress(Exception):  # best effort: the error said is the full disk
            if Path(os.fsdecode(fid.name)).parent == folder:
                fid.close()


def restore_backup(trainer, directory: Path) -> tuple[int, list[dict[str, Any]] | None, int]:
    """Loads the newest readable backup into ``trainer`` (weights and optimizer): returns
    the epochs it holds, its history (None from an older version's backup, which kept no
    history) and how many newer backups were unreadable and skipped (removed: their
    epochs are done again). No backup at all is a run killed in its first epoch: 0 epochs."""
    for stale in directory.glob(".epoch-*.partial"):  # a kill while writing one: never complete
        shutil.rmtree(stale)
    backups = sorted(directory.glob("epoch-[0-9]*"), reverse=True)
    if not backups:
        return restore_legacy_backup(trainer, directory), None, 0
    problems = []
    for skipped, path in enumerate(backups):
        try:
            state = json.loads((path / BACKUP_STATE).read_text())
            done, history = int(state["epoch"]), list(state["history"])
            load_training_weights(trainer, path / BACKUP_WEIGHTS)
        except Exception as exc:  # whatever broke it (h5py, JSON, a missing file), the previous one may serve
            problems.append(f"{path.name}: {type(exc).__name__}: {exc}")
            print(f"warning: backup {path} cannot be read ({problems[-1]}); trying the one before it", flush=True)
            continue
        if skipped:
            print(f"resuming from {path} (after {done} epochs): the {skipped} newer backup(s) could not be read, "
                  "their epochs are trained again", flush=True)
            for bad in backups[:skipped]:
                shutil.rmtree(bad)
        return done, history, skipped
    raise SystemExit(f"{directory} holds no readable backup ({'; '.join(problems)}): the run cannot be resumed. "
                     "Start it again in a new --out, or start a new run from this one's network with "
                     f"--init-from {directory.parent / 'best.keras'} (a fresh schedule)")


def restore_legacy_backup(trainer, directory: Path) -> int:
    """The backup of a run begun by an older version (Keras's BackupAndRestore: the weights
    and the epoch count beside them); 0 if there is none."""
    weights, metadata = (directory / name for name in LEGACY_BACKUP)
    if not weights.exists():
        return 0
    try:
        load_training_weights(trainer, weights)
        return int(json.loads(metadata.read_text())["epoch"]) if metadata.exists() else 0
    except Exception as exc:  # whatever broke it: the same advice
        raise SystemExit(f"{weights} (the backup of an older version of training.train) cannot be read "
                         f"({type(exc).__name__}: {exc}): the run cannot be resumed. Start it again in a new --out, "
                         f"or start a new run from its network with --init-from {directory.parent / 'best.keras'}") from exc


def load_training_weights(trainer, path: Path) -> None:
    """What Keras's BackupAndRestore did to restore: the optimizer's variables are built
    first, so the file's optimizer state has somewhere to go."""
    if trainer.optimizer is not None and not trainer.optimizer.built:
        trainer.optimizer.build(trainer.trainable_variables)
    trainer.load_weights(path)


def read_history(out: Path) -> list[dict[str, Any]]:
    """history.csv's rows, numbers as numbers; a row a kill cut short is left out."""
    import csv

    if not history_file(out).is_file():
        return []
    with open(history_file(out), newline="") as f:
        reader = csv.DictReader(f)
        rows = []
        for row in reader:
            if None in row.values() or None in row:  # a line cut short, or one too long
                continue
            try:
                rows.append({k: int(v) if k == "epoch" else float(v) for k, v in row.items()})
            except ValueError:
                continue
        return rows


def write_history(out: Path, history: list[dict[str, Any]]) -> None:
    """history.csv as Keras's CSVLogger wrote it (epoch, then the logs in name order), all
    at once: the whole file is replaced each epoch."""
    import csv
    import io

    keys = sorted({k for row in history for k in row} - {"epoch"})
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=["epoch", *keys], restval="NA")
    writer.writeheader()
    writer.writerows(history)
    atomic_write(history_file(out), text.getvalue())


def save_best(net, out: Path) -> None:
    with atomic_path(out / "best.keras", suffix=".keras") as tmp:
        net.save(tmp)


def reconcile_outputs(out: Path, net, done: int, history: list[dict[str, Any]] | None) -> tuple[list[dict[str, Any]], float | None]:
    """history.csv and best.keras as they are after the ``done`` epochs the backup restored
    (``net`` holds the network of the last one): the backup's history replaces
    history.csv (a kill after the backup lost its row; one after an unreadable backup
    left rows of epochs done again), and if the last restored epoch is the best, its
    network is saved as best.keras (the kill may have come before that). Returns the
    history and the best val_accuracy so far, which a resumed epoch must beat."""
    on_disk = read_history(out)
    if history is None:  # an older version's backup: history.csv is all there is
        history = list({row["epoch"]: row for row in on_disk if row["epoch"] < done}.values())
        missing = sorted(set(range(done)) - {row["epoch"] for row in history})
        if missing:
            print(f"note: history.csv has no row for epoch(s) {missing}, which an older version's backup "
                  "holds (it was stopped before writing them): they stay missing", flush=True)
    if history:
        write_history(out, history)
    else:
        history_file(out).unlink(missing_ok=True)
    scored = [row for row in history if "val_accuracy" in row]
    best = max(row["val_accuracy"] for row in scored) if scored else None
    lost = [row["val_accuracy"] for row in on_disk if row["epoch"] >= done and "val_accuracy" in row]
    if lost and (best is None or max(lost) > best):  # only past an unreadable backup
        best = max(lost)
        print(f"note: best.keras may hold the network of an epoch after {done} (val_accuracy {best}), which "
              "the resumed run trains again; it stays best.keras unless a resumed epoch does better", flush=True)
    # Commit saves on a strict improvement: best.keras holds the first epoch with the best score
    elif scored and next(row for row in scored if row["val_accuracy"] == best)["epoch"] == done - 1:
        save_best(net, out)
    return history, best


def kill_point(name: str, done: int) -> None:
    """Tests only: SIGKILL this process at the named point of the epoch that brings the run
    to ``done`` epochs when ``ENGAGE_TRAIN_KILL_AT`` is ``name:done`` ("averaging-saved":
    --average-last's state written, the backup not; "backup-writing": the backup's weights
    written, not yet renamed into place; "backed-up": the backup in place, history.csv
    not written; "history-written": history.csv written, best.keras not), as a power cut
    could; tests/test_training.py resumes such a run."""
    if os.environ.get(KILL_AT_ENV) == f"{name}:{done}":
        os.kill(os.getpid(), signal.SIGKILL)


def replay_command(args, epochs: int, stop_after: int = 0, backend: str | None = None) -> str:
    """The command that rebuilds this run with a fixed epoch count (no time budget), on the
    Keras backend it ran on (``KERAS_BACKEND=jax`` before it unless TensorFlow, the default
    here): a GPU run's replay ran on TensorFlow, which computes other numbers."""
    if backend is None:
        import keras

        backend = keras.backend.backend()
    parts = [] if backend == "tensorflow" else [f"KERAS_BACKEND={backend}"]
    parts += ["python -m training.train", f"--arch {args.arch}", f"--labels {args.labels}", f"--epochs {epochs}",
              f"--batch-size {args.batch_size}", f"--lr {args.lr}", f"--augment {args.augment}", f"--seed {args.seed}"]
    if args.warmup:
        parts.append(f"--warmup {args.warmup}")
    if args.teacher:
        parts += [f"--teacher {shlex.quote(args.teacher)}", f"--distill-alpha {args.distill_alpha}",
                  f"--temperature {args.temperature}"]
        if args.teacher_views != "single":
            parts.append(f"--teacher-views {args.teacher_views}")
        if args.logit_adjust:
            parts.append(f"--logit-adjust {args.logit_adjust}")
    if args.init_from:
        parts.append(f"--init-from {shlex.quote(str(args.init_from))}")
    if args.limit:
        parts.append(f"--limit {args.limit}")
    if stop_after or args.stop_after:
        parts.append(f"--stop-after {stop_after or args.stop_after}")
    if args.average_last:
        parts.append(f"--average-last {args.average_last}")
    return " ".join(parts + ["--data DATA", "--out RUN"])


def leg_seed(seed: int, first_epoch: int) -> int:
    """The seed of the draws (shuffle, augmentation) of a leg resumed after ``first_epoch``
    epochs: the run's own seed again made every resumed leg repeat epoch 1's draws."""
    return int(np.random.SeedSequence([seed, first_epoch]).generate_state(1)[0] % 2**31)


def reseed_resumed(trainer, seed: int, done: int) -> int:
    """Seeds a resumed leg afresh: the global generators and the augmentation layers' own
    (their state is not in the backup, and restarted at the run's seed). Returns the seed."""
    import keras

    fresh = leg_seed(seed, done)
    keras.utils.set_random_seed(fresh)
    states = [v for v in trainer.non_trainable_variables if v.path.endswith("seed_generator_state")]
    for i, state in enumerate(states):
        state.assign(np.array([fresh + i, 0], dtype=state.dtype))
    return fresh


def record_resume(out: Path, done: int, libraries: dict[str, Any] | None = None) -> None:
    """config.json lists the epochs after which the run was resumed: its replay command runs
    unbroken, so its draws after each resume differ and it rebuilds the run only approximately.
    A leg on other libraries (``library_changes``) is listed in ``resumed_with``."""
    path = out / "config.json"
    config = json.loads(path.read_text())
    config["resumed_at"] = [*config.get("resumed_at", []), done]
    if libraries is not None and library_changes(config, libraries):
        config["resumed_with"] = [*config.get("resumed_with", []), {"after_epoch": done, **libraries}]
    atomic_write(path, json.dumps(config, indent=2) + "\n")


def library_changes(recorded: dict[str, Any], libraries: dict[str, Any]) -> list[str]:
    """How the backend and the library versions a resumed leg runs on differ from those of
    the leg before it ("keras 3.14.0 -> 3.15.1"), as config.json records them: a run
    resumed after an upgrade still recorded only the versions it started on, and the
    model shipped from it claimed them."""
    last = (recorded.get("resumed_with") or [recorded])[-1]
    before = {"backend": last.get("backend"), **(last.get("versions") or {})}
    now = {"backend": libraries.get("backend"), **(libraries.get("versions") or {})}
    if "versions" not in last:  # begun by an older version of this code, which recorded less
        before, now = ({"backend": before["backend"]}, {"backend": now["backend"]}) if before["backend"] else ({}, {})
    return [f"{name} {before.get(name) or 'none'} -> {now.get(name) or 'none'}"
            for name in sorted(set(before) | set(now)) if before.get(name) != now.get(name)]


def record_plan(args, out: Path, planned: int, cut_short_at: int | None = None, fixed: bool = True) -> None:
    """Adds the plan and its replay command to config.json; ``fixed=False`` (``plan_fixed``:
    false) for that of a budgeted run that stopped before its plan was fixed, which a
    resume with a budget plans again."""
    path = out / "config.json"
    config = json.loads(path.read_text()) if path.is_file() else {}
    config.update(planned_epochs=planned, replay=replay_command(args, planned, cut_short_at or 0))
    if cut_short_at is not None:
        config["cut_short_at_epoch"] = cut_short_at
    else:
        config.pop("cut_short_at_epoch", None)
    if fixed:
        config.pop("plan_fixed", None)
    else:
        config["plan_fixed"] = False
    with atomic_path(path, suffix=".json") as tmp:
        tmp.write_text(json.dumps(config, indent=2) + "\n")


def library_versions() -> dict[str, str]:
    """Versions that decide what a replay computes: numpy, Keras and the backend's libraries."""
    from importlib import metadata

    versions = {}
    # the train extra installs TensorFlow as tensorflow-cpu: a distribution by that name only
    for name in ("numpy", "keras", "tensorflow", "tensorflow-cpu", "jax", "jaxlib", "torch", "opencv-python-headless"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def warm_start(path: Path, arch: str):
    """An earlier run's exported network, checked to be the architecture asked for."""
    import keras

    if not Path(path).is_file():
        raise SystemExit(f"--init-from {path}: no such file; pass an earlier run's best.keras")
    try:
        net = keras.models.load_model(path, compile=False)
    except Exception as exc:  # whatever Keras found wrong with it: say what it is and what to pass
        raise SystemExit(f"--init-from {path} is {unreadable_network(Path(path), exc)}; pass an earlier run's "
                         "best.keras (or final.keras / averaged.keras)") from None
    if net.name != arch:
        raise SystemExit(f"--init-from {path} holds a {net.name!r} network, not {arch!r}; pass --arch {net.name}")
    return net


def load_teachers(args):
    """``distill.load_teacher`` for --teacher, a file Keras cannot read named in a clear
    error (it was Keras's traceback)."""
    try:
        return distill.load_teacher(args.teacher, mirrored=args.teacher_views == "flip")
    except Exception as exc:
        import keras

        from training.models import ARCHITECTURES

        for f in distill.teacher_files(args.teacher):
            if f in ARCHITECTURES:
                continue
            try:
                keras.models.load_model(f, compile=False)
            except Exception as file_exc:
                raise SystemExit(f"--teacher {f} is {unreadable_network(Path(f), file_exc)}; a teacher is an "
                                 f"architecture ({', '.join(sorted(ARCHITECTURES))}) or an earlier run's best.keras"
                                 ) from None
        raise SystemExit(f"--teacher {args.teacher}: the teacher cannot be built ({type(exc).__name__}: {exc})") from None


def history_file(out: Path) -> Path:
    return out / "history.csv"


def train(args) -> Path:
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    from training.augment import make_augmenter

    if args.threads and keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    out: Path = args.out
    if problem := out_in_checkout(out):
        raise SystemExit(problem)
    if out.exists() and any(out.iterdir()) and not args.resume:
        raise SystemExit(f"{out} already holds a run: pass --resume to continue it or choose another --out")
    recorded = read_config(out) if args.resume else None
    libraries = {"backend": keras.backend.backend(), "versions": library_versions()}
    if recorded is not None:
        check_resume(args, recorded)
        check_resumed_teachers(args, recorded)
        changed = library_changes(recorded, libraries)
        if changed:  # before the backup is read: a Keras that cannot read it is the likely cause
            print(f"note: this run is resumed on other libraries than it last ran on ({'; '.join(changed)}): "
                  "config.json records them (resumed_with); its epochs before and after differ in what computed "
                  "them, so no replay rebuilds it exactly", flush=True)
    elif args.time_budget and args.warmup is None:  # --resume of a folder with no run in it: a new run
        args.warmup = BUDGET_WARMUP
    keras.utils.set_random_seed(args.seed)

    # the networks first: a file that cannot serve stops the run before it leaves anything
    # in --out (a config.json there made the corrected command "already holds a run")
    net = warm_start(args.init_from, args.arch) if args.init_from else build(args.arch)
    face = keras.Input((48, 48, 1), name="face")
    augmented = make_augmenter(args.seed, args.augment)(face) if args.augment > 0 else face
    optimizer = keras.optimizers.Adam(args.lr) if args.optimizer == "adam" else keras.optimizers.AdamW(args.lr, weight_decay=5e-4)
    teacher, online = load_teachers(args) if args.teacher else (None, False)
    (x_train, y_train), (x_valid, y_valid), sizes = make_arrays(args)
    digest = data_digest(x_train, y_train, x_valid, y_valid)
    if recorded is not None:
        check_resumed_data(args, recorded, sizes, digest)
    steps = -(-len(x_train) // args.batch_size)
    out.mkdir(parents=True, exist_ok=True)
    if recorded is None:
        config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
        config.update(git_commit=git_commit(), sizes=sizes, data_digest=digest, input_files=input_files(args),
                      keras=keras.__version__,
                      **libraries, python=sys.version.split()[0],
                      started=time.strftime("%Y-%m-%dT%H:%M:%S"))
        if not args.time_budget:
            config["replay"] = replay_command(args, args.epochs)
        atomic_write(out / "config.json", json.dumps(config, indent=2) + "\n")
    elif recorded.get("stop_after") != args.stop_after:
        # where this leg stops: a run resumed to its end still said "stop_after": 2, and a model
        # shipped from it claimed its run had stopped at epoch 2
        atomic_write(out / "config.json", json.dumps({**recorded, "stop_after": args.stop_after}, indent=2) + "\n")

    if teacher is not None:
        taught = teacher(augmented) if online else teacher(augmented, training=False)
        both = keras.layers.Concatenate(name="student_teacher")([net(augmented), taught])
        trainer = keras.Model(face, both, name=f"{net.name}-distillation")
        loss = distill.make_loss(y_train.shape[1], args.distill_alpha, args.temperature, online,
                                 distill.class_prior(y_train), args.logit_adjust)
        trainer.compile(optimizer=optimizer, loss=loss, metrics=distill.metrics(y_train.shape[1]))
    else:
        trainer = keras.Model(face, net(augmented), name=f"{net.name}-training")
        trainer.compile(optimizer=optimizer, loss="categorical_crossentropy", metrics=["accuracy"])
    done, history, lost = restore_backup(trainer, out / BACKUP_DIR) if args.resume else (0, [], 0)
    if done:
        reseed_resumed(trainer, args.seed, done)
    history, best_so_far = reconcile_outputs(out, net, done, history)
    callbacks = make_callbacks(args, net, out, history, best_so_far, lost)
    schedule = callbacks[0]
    # the plan, not the cap: a finished budgeted run resumed must not train past its plan
    epochs = schedule.planned if schedule.fixed else args.epochs
    if args.stop_after:
        epochs = min(epochs, args.stop_after)
    if done and done < epochs:  # a resume of a finished run trains nothing: its replay stays exact
        record_resume(out, done, libraries)
    print(f"training {args.arch} on {sizes['train']} images ({args.labels} labels), "
          f"validating on {sizes['valid']}; {steps} steps per epoch, backend {keras.backend.backend()}"
          + (f"; resuming after epoch {done}" if done else ""), flush=True)
    trainer.fit(x_train, y_train, batch_size=args.batch_size, epochs=epochs, initial_epoch=done, shuffle=True,
                validation_data=(x_valid, y_valid), validation_batch_size=512, callbacks=callbacks, verbose=2)
    net.save(out / "final.keras")
    if online and teacher is not None:
        teacher.save(out / "teacher.keras")  # trained alongside: it can teach a later run
    if not (out / "best.keras").exists():
        net.save(out / "best.keras")
    if args.average_last and (out / "averaged.keras").exists():
        report_average(out, x_valid, y_valid)
    print(f"done: {out / 'best.keras'}", flush=True)
    return out


def report_average(out: Path, x_valid: np.ndarray, y_valid: np.ndarray) -> None:
    """Validation accuracy (the ``val_accuracy`` of history.csv) of ``averaged.keras``
    beside ``best.keras``'s, recorded in ``averaged.json``: the choice between them is
    made on validation."""
    import keras

    state = json.loads((out / "averaged.json").read_text())
    for name in ("averaged", "best"):
        probs = keras.models.load_model(out / f"{name}.keras", compile=False).predict(x_valid, batch_size=512, verbose=0)
        state[f"{name}_val_accuracy"] = float(np.mean(probs.argmax(1) == y_valid.argmax(1)))
    atomic_write(out / "averaged.json", json.dumps(state, indent=2) + "\n")
    print(f"averaged over the last {state['epochs']} epochs: val_accuracy {state['averaged_val_accuracy']:.4f} "
          f"(best epoch: {state['best_val_accuracy']:.4f})", flush=True)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        train(args)
    except fer.DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        # it was h5py's traceback, then a segfault as Python exited
        print(f"error: {disk_full(args.out, exc)}", file=sys.stderr, flush=True)
        return 1
    return 0


def disk_full(out: Path, exc: OSError) -> str:
    """What a run stopped by a full disk says: where, how much room is left, and that
    nothing done is lost (the backup before the one that failed is whole)."""
    free = free_mb(out if out.exists() else out.parent)
    room = f", {free:.0f} MB free there" if free is not None else ""
    return (f"the disk holding {out} is full ({os.strerror(exc.errno or errno.ENOSPC)}{room}): the run stopped. Its epochs up to the "
            f"last backup in {out / BACKUP_DIR} are kept; free some space (a backup of this network takes "
            f"{backup_size(out)}), then run the same command with --resume")


def backup_size(out: Path) -> str:
    sizes = [sum(f.stat().st_size for f in b.iterdir()) for b in (out / BACKUP_DIR).glob("epoch-[0-9]*")]
    return f"about {max(sizes) / 1e6:.1f} MB" if sizes else "a few MB"


if __name__ == "__main__":
    sys.exit(main())
