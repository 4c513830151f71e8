"""The emotion model's GPU plan, prepared so that a task lent a GPU spends it training.

A task that is lent a GPU gets about 15 minutes of it, in calls of at most 10 minutes,
and only the checkout travels (64 MiB, ignored folders named in ``carry`` included). The
recipe the model card arrived at (issue 11) needs `edge-l` teachers, each trained alone
for a whole call, and one-view `edge-l` students distilled from their mean on the mirrored
face; each step is a few runs of ``training.train`` side by side on one GPU. This module
is those steps, so no session rebuilds them from notes:

    # here, with the FER+ data: the data pack and the wheels Keras needs there, in .gpu/
    .venv/bin/python -m training.gpu_plan prepare
    # there (the device command; carry [".gpu"]): teachers, then, in a later call, students
    python3 -m training.gpu_plan teachers --budget 520 --seeds 11,22,33
    python3 -m training.gpu_plan students --budget 500 --seeds 5 --teachers models/teachers/t11-teacher.keras,...
    # here: unpack what came back, quantise, score on validation (never on test)
    .venv/bin/python -m training.gpu_plan after RUN.tar ... --out runs/gpu

Each run comes back as one tar (``$OUT/NAME.tar``: averaged.keras, best.keras, history.csv,
config.json with the replay command, averaged.json, the log), under the device's limits of
8 files of 16 MiB. ``after`` writes for each run its int8 files and validation figures, and
``NAME-teacher.keras``, the averaged network (the best epoch where a run was cut before it
averaged) without optimizer state (1.5 MB for `edge-l`), which is what a later call carries
as a teacher.

Arguments after ``--`` go to every ``training.train`` run (the tests use them for tiny runs).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from training import data as fer

REPO = Path(__file__).resolve().parent.parent
CARRY = REPO / ".gpu"
CARRY_LIMIT = 64 * 2**20  # what travels to the device machine, carried folders included
RETURN_LIMIT = 16 * 2**20  # the largest file that comes back from $OUT
RETURN_FILES = 8
# Keras and the two packages it needs that the GPU machine's image lacks (jax, numpy,
# h5py, ml-dtypes, rich and absl-py are there); its python3 is 3.12
WHEELS = ("keras", "namex", "optree")
DEVICE_PYTHON = "3.12"
# the recipe of the model card's runs: AdamW at 3e-3, soft labels, augmentation 0.7, batch
# 128; the time budget plans the epochs (the cap is never reached) and fixes the plan
# after four, so config.json's replay command rebuilds the run with a fixed epoch count
RECIPE = ["--labels", "soft", "--epochs", "1000", "--batch-size", "128", "--lr", "0.003", "--augment", "0.7",
          "--average-last", "25"]
STUDENT = ["--teacher-views", "flip", "--distill-alpha", "0.7", "--temperature", "2.0"]
CUT = -1  # the exit code recorded for a run stopped at the deadline
BUNDLED = ("averaged.keras", "best.keras", "history.csv", "config.json", "averaged.json")


class PlanError(Exception):
    """What stops a step, said so that the user knows what to do."""


# ---------------------------------------------------------------- here: prepare

def travel_size(extra: Path) -> int:
    """Bytes that a device call sends: tracked and untracked-not-ignored files, plus ``extra``."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO, capture_output=True, check=True).stdout.split(b"\0")
    total = sum((REPO / os.fsdecode(name)).stat().st_size for name in listed
                if name and (REPO / os.fsdecode(name)).is_file())
    return total + sum(p.stat().st_size for p in extra.rglob("*") if p.is_file())


def largest_tracked(count: int = 3) -> list[tuple[int, str]]:
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout.split(b"\0")
    sizes = [((REPO / os.fsdecode(n)).stat().st_size, os.fsdecode(n)) for n in listed
             if n and (REPO / os.fsdecode(n)).is_file()]
    return sorted(sizes, reverse=True)[:count]


def download_wheels(folder: Path) -> None:
    """The wheels of ``WHEELS`` for the device's Python, the same Keras version as here."""
    from importlib import metadata

    folder.mkdir(parents=True, exist_ok=True)
    pins = [f"keras=={metadata.version('keras')}", "namex", "optree"]
    platforms = [arg for n in (17, 27, 28) for arg in ("--platform", f"manylinux_2_{n}_x86_64")]
    command = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
               "--python-version", DEVICE_PYTHON, "--implementation", "cp", *platforms,
               "--platform", "manylinux2014_x86_64", "--platform", "any", "-d", str(folder), *pins]
    if subprocess.run(command).returncode != 0:
        raise PlanError(f"pip could not download {', '.join(pins)} for Python {DEVICE_PYTHON}; "
                        "check that PyPI is reachable, or put the wheels in " + str(folder) + " by hand")


def prepare(data: Path, carry: Path, wheels: bool = True) -> str:
    carry.mkdir(parents=True, exist_ok=True)
    pack = carry / fer.PACK_NAME
    made, source = "made", None
    if pack.is_file():
        try:
            source = fer.pack_source(data)
        except fer.DataError:  # no data here (a checkout without the tarball): the pack there is all there is
            if fer.pack_source_of(pack) is None:
                raise
            source, made = None, f"kept: its data was not checked, as {data} holds none"
        if source is not None:
            made = "kept" if fer.pack_source_of(pack) == source else \
                "made again: the one there was of other data than --data, by older code, or damaged"
    if not made.startswith("kept"):
        fer.write_pack(data, pack, source=source)
    if wheels:
        download_wheels(carry / "wheels")
    size = travel_size(carry)
    lines = [f"{carry}: the FER+ pack ({pack.stat().st_size / 1e6:.1f} MB, {made})"
             + (" and the wheels" if wheels else "") + f"; a device call would send {size / 2**20:.1f} MiB "
             f"of {CARRY_LIMIT / 2**20:.0f} MiB"]
    if size > CARRY_LIMIT:
        big = ", ".join(f"{name} ({n / 2**20:.1f} MiB)" for n, name in largest_tracked())
        lines.append(f"that is over the limit: move a large tracked file that training does not need out of the "
                     f"checkout for the call (the largest: {big}) and put it back afterwards, or carry fewer teachers")
    return "\n".join(lines)


# ---------------------------------------------------------------- there: teachers, students

def device_environment(work: Path, carry: Path) -> dict[str, str]:
    """The environment for the runs: Keras from the carried wheels if it is not installed,
    JAX unless a backend is named, and no GPU memory taken up front, so runs can share it."""
    env = dict(os.environ)
    env.setdefault("KERAS_BACKEND", "jax")
    env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
    env["PYTHONUNBUFFERED"] = "1"
    probe = subprocess.run([sys.executable, "-c", "import keras"], capture_output=True, env=env)
    if probe.returncode != 0:
        wheels = sorted((carry / "wheels").glob("*.whl"))
        if not wheels:
            raise PlanError(f"Keras is not installed here and {carry / 'wheels'} holds no wheels: run "
                            "`python -m training.gpu_plan prepare` on the training machine and carry .gpu")
        site = work / "site"
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                        "--no-cache-dir", "--upgrade", "--target", str(site), *map(str, wheels)], check=True)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH", "")]))
    return env


def run_side_by_side(runs: dict[str, list[str]], work: Path, out: Path, env: dict[str, str],
                     deadline: float) -> dict[str, int]:
    """``training.train`` for each named argument list at once, each with its own data
    cache and log; then each run's files bundled into ``out/NAME.tar``. A run still going
    ``deadline`` seconds after the start is stopped and bundled as it is (its checkpoints
    are written every epoch): a device call that outruns its limit brings nothing back."""
    if len(runs) > RETURN_FILES:
        raise PlanError(f"{len(runs)} runs would come back as {len(runs)} files; at most {RETURN_FILES} do")
    work.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    started, procs = time.monotonic(), {}
    for name, args in runs.items():
        log = open(work / f"{name}.log", "wb")
        run_env = dict(env, ENGAGE_DATA_CACHE=str(work / f"cache-{name}"))
        command = [sys.executable, "-m", "training.train", *args, "--out", str(work / name)]
        procs[name] = (subprocess.Popen(command, cwd=REPO, env=run_env, stdout=log, stderr=subprocess.STDOUT), log)
        print(f"started {name}: {' '.join(command[1:])}", flush=True)
    codes = {}
    for name, (proc, log) in procs.items():
        try:
            codes[name] = proc.wait(timeout=max(0.0, started + deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            codes[name] = CUT
        log.close()
        said = "stopped at the deadline" if codes[name] == CUT else f"exit {codes[name]}"
        print(f"{name}: {said} after {time.monotonic() - started:.0f} s", flush=True)
        bundle(work / name, work / f"{name}.log", out / f"{name}.tar")
    return codes


def bundle(run: Path, log: Path, tar_path: Path) -> Path:
    """The run's files worth keeping in one tar; best.keras is left out if the tar would
    not come back whole (averaged.keras is the one the plan chooses)."""
    files = [run / name for name in BUNDLED if (run / name).is_file()]
    if sum(f.stat().st_size for f in files) + log.stat().st_size > RETURN_LIMIT * 0.95:
        files = [f for f in files if f.name != "best.keras"]
    with tarfile.open(tar_path, "w") as tar:
        for f in files:
            tar.add(f, arcname=f.name)
        tar.add(log, arcname="train.log")
    return tar_path


def seeds_of(text: str) -> list[int]:
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise PlanError(f"--seeds {text}: give whole numbers separated by commas, e.g. 11,22,33") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise PlanError(f"--seeds {text}: give one distinct seed per run")
    return seeds


def teacher_runs(seeds: list[int], budget: float, arch: str, pack: Path, extra: list[str]) -> dict[str, list[str]]:
    return {f"t{s}": ["--arch", arch, *RECIPE, "--seed", str(s), "--time-budget", str(budget),
                      "--data", str(pack), *extra] for s in seeds}


def student_runs(seeds: list[int], budget: float, arch: str, pack: Path, teachers: str,
                 extra: list[str]) -> dict[str, list[str]]:
    from training import distill

    problem = distill.teacher_problem(teachers, mirrored=True)
    if problem:
        raise PlanError(problem)
    teachers = ",".join(str(Path(f).resolve()) for f in distill.teacher_files(teachers))  # the runs start in REPO
    return {f"s{s}": ["--arch", arch, *RECIPE, *STUDENT, "--teacher", teachers, "--seed", str(s),
                      "--time-budget", str(budget), "--data", str(pack), *extra] for s in seeds}


# ---------------------------------------------------------------- here: after

def neutral_rate(result: dict) -> float:
    """Share of the official rule's faces the model calls neutral (a neutral bias shows here)."""
    confusion = result["official"]["confusion"]
    total = sum(map(sum, confusion))
    return sum(row[0] for row in confusion) / total if total else 0.0


def keep_teacher(run: Path, dest: Path) -> str | None:
    """Saves the run's averaged network, or its best epoch where a run cut short never
    began averaging, without optimizer state as ``dest``; says which (None: neither)."""
    import keras

    for which in ("averaged", "best"):
        if (run / f"{which}.keras").is_file():
            keras.models.load_model(run / f"{which}.keras", compile=False).save(dest)
            return which
    return None


def after(tars: list[Path], out: Path, data: Path, views: str = "single", samples: int = 1000) -> list[dict]:
    """Unpack each run, keep its averaged network as a compact teacher file, quantise
    averaged.keras and best.keras to int8 and score them on validation."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    from training import evaluate, quantize

    rows = []
    for tar_path in tars:
        if not tar_path.is_file():
            raise PlanError(f"{tar_path} does not exist: pass the .tar files a device call brought back")
        name = tar_path.name.removesuffix(".tar")
        run = out / name
        run.mkdir(parents=True, exist_ok=True)
        with tarfile.open(tar_path) as tar:
            tar.extractall(run, filter="data")
        kept = keep_teacher(run, out / f"{name}-teacher.keras")
        if kept != "averaged":
            print(f"{name}: no averaged network (the run stopped before its last epochs); "
                  f"{name}-teacher.keras is its {kept or 'nothing: no network came back'}", file=sys.stderr)
        for which in ("averaged", "best"):
            source = run / f"{which}.keras"
            if not source.is_file():
                continue
            tflite = run / f"{which}-int8.tflite"
            view_args = [] if views == "single" else ["--views", views]
            if quantize.main([str(source), "--out", str(tflite), "--data", str(data), "--samples", str(samples),
                              *view_args]) != 0:
                raise PlanError(f"quantising {source} failed (see above)")
            result = evaluate.evaluate(tflite, data, "valid", run / "eval", latency_runs=0)
            rows.append({"run": name, "weights": which, "file": str(tflite), "bytes": result["file_bytes"],
                         "official": result["official"]["accuracy"], "argmax": result["argmax"]["accuracy"],
                         "macro_f1": result["official"]["macro_f1"], "neutral_rate": round(neutral_rate(result), 4),
                         "recall": {k: v["recall"] for k, v in result["official"]["per_class"].items()}})
    (out / "valid.json").write_text(json.dumps(rows, indent=2) + "\n")
    return rows


def table(rows: list[dict]) -> str:
    lines = ["run / weights        valid official  argmax  macro-F1  neutral  recall (FER+ order)  bytes"]
    for r in rows:
        recall = " ".join(f"{v:.2f}" for v in r["recall"].values())
        lines.append(f"{r['run'] + ' / ' + r['weights']:20s} {100 * r['official']:13.2f}% {100 * r['argmax']:6.2f}% "
                     f"{r['macro_f1']:8.3f} {100 * r['neutral_rate']:7.1f}%  {recall}  {r['bytes']:,}")
    return "\n".join(lines)


# ---------------------------------------------------------------- command

def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(prog="python -m training.gpu_plan", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--carry", type=Path, default=CARRY, help="the carried folder (default: .gpu in the checkout)")
    sub = p.add_subparsers(dest="step", required=True)
    pr = sub.add_parser("prepare", help="here: the FER+ pack and the wheels, in the carried folder")
    pr.add_argument("--data", type=Path, default=fer.default_data_dir())
    pr.add_argument("--no-wheels", action="store_true", help="only the pack (the GPU machine has Keras)")
    for step, what in (("teachers", "edge-l teachers, each from scratch"),
                       ("students", "one-view students distilled from the mirrored mean of --teachers")):
        sp = sub.add_parser(step, help=f"there: {what}, side by side")
        sp.add_argument("--budget", type=float, required=True, help="seconds each run may take")
        sp.add_argument("--seeds", required=True, help="one run per seed, comma-separated")
        sp.add_argument("--arch", default="edge-l")
        sp.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "gpu-out")),
                        help="where the tars go (default: $OUT, the folder that comes back)")
        sp.add_argument("--work", type=Path, default=Path("/tmp/engage-gpu"), help="run folders and logs")
        sp.add_argument("--deadline", type=float,
                        help="seconds after which runs still going are stopped and bundled as they are "
                             "(default: the budget plus 60; keep it inside the call's limit)")
        if step == "students":
            sp.add_argument("--teachers", required=True, help="trained networks, comma-separated")
    af = sub.add_parser("after", help="here: quantise and score on validation what came back")
    af.add_argument("tars", type=Path, nargs="+")
    af.add_argument("--out", type=Path, required=True)
    af.add_argument("--data", type=Path, default=fer.default_data_dir())
    af.add_argument("--views", default="single", help="single (one view) or flip (the crop and its mirror)")
    af.add_argument("--samples", type=int, default=1000, help="representative images for int8")
    args = p.parse_args(argv)
    try:
        if args.step == "prepare":
            print(prepare(args.data, args.carry, wheels=not args.no_wheels))
            return 0
        if args.step == "after":
            print(table(after(args.tars, args.out, args.data, args.views, args.samples)))
            return 0
        pack = (args.carry / fer.PACK_NAME).resolve()
        if not pack.is_file():
            raise PlanError(f"{pack} is missing: run `python -m training.gpu_plan prepare` here and carry "
                            f"{args.carry.name} with the call")
        seeds = seeds_of(args.seeds)
        runs = (teacher_runs(seeds, args.budget, args.arch, pack, extra) if args.step == "teachers"
                else student_runs(seeds, args.budget, args.arch, pack, args.teachers, extra))
        deadline = args.deadline if args.deadline is not None else args.budget + 60
        codes = run_side_by_side(runs, args.work, args.out, device_environment(args.work, args.carry), deadline)
    except (PlanError, fer.DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    cut = [name for name, code in codes.items() if code == CUT]
    failed = [name for name, code in codes.items() if code not in (0, CUT)]
    if cut:
        print(f"error: {', '.join(cut)} did not finish by the deadline; their tars hold what the last "
              "finished epoch saved", file=sys.stderr)
    if failed:
        print(f"error: {', '.join(failed)} failed; their logs are train.log in their tars", file=sys.stderr)
    if cut or failed:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
