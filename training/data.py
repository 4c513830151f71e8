"""FER+ loading and labelling.

Two input forms give the same arrays:

* Microsoft's folder layout (``FER2013Train/``, ``FER2013Valid/``, ``FER2013Test/``, each
  with 48x48 PNGs and a ``label.csv`` of vote counts), as produced by FERPlus'
  ``generate_training_data.py`` and shipped in ``../shared/data/ferplus.tar.gz``;
* the two public CSV files a user downloads: ``fer2013.csv`` (pixels) and
  ``fer2013new.csv`` (FER+ votes), read straight, row by row.

Vote columns are, in order: the eight emotions of ``EMOTIONS`` then ``unknown`` and ``NF``.
"""
from __future__ import annotations

import csv
import hashlib
import itertools
import json
import os
import sys
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_app.fsutil import atomic_path

EMOTIONS = ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt"]
VOTE_COLUMNS = EMOTIONS + ["unknown", "NF"]
SPLIT_FOLDERS = {"train": "FER2013Train", "valid": "FER2013Valid", "test": "FER2013Test"}
CSV_USAGE = {"train": "Training", "valid": "PublicTest", "test": "PrivateTest"}
IMAGE_SIZE = 48


@dataclass
class Split:
    """Raw images (N, 48, 48) uint8, their names and their 10-column vote counts."""

    images: np.ndarray
    votes: np.ndarray
    names: list[str]

    def __len__(self) -> int:
        return len(self.names)

    def subset(self, keep: np.ndarray) -> "Split":
        idx = np.flatnonzero(keep) if keep.dtype == bool else keep
        return Split(self.images[idx], self.votes[idx], [self.names[i] for i in idx])


class DataError(ValueError):
    """The data folder or files are not FER+ as expected; the message says what to fix."""


# ---------------------------------------------------------------- label rules

def majority_labels(votes: np.ndarray) -> np.ndarray:
    """Microsoft's "majority" protocol; -1 marks an image the protocol drops.

    1. a single vote is an outlier and is set to 0;
    2. keep only when the top count is more than half of the remaining votes;
    3. drop when that top class is ``unknown`` or ``NF``.
    """
    v = np.asarray(votes, dtype=np.float64).copy()
    v[v <= 1] = 0
    total = v.sum(axis=1)
    top = v.argmax(axis=1)
    top_count = v.max(axis=1)
    keep = (total > 0) & (top_count > 0.5 * total) & (top < len(EMOTIONS))
    return np.where(keep, top, -1)


def argmax_labels(votes: np.ndarray) -> np.ndarray:
    """The strict rule: argmax of all 10 raw votes, dropped (-1) when unknown or NF. A tie in
    the top vote goes to the first tied column (``VOTE_COLUMNS`` order: neutral first), as
    ``np.argmax`` does; the published argmax figures count so (174 of FER+ test's 3,545 are
    tied), and ``training.evaluate`` gives beside them the figure that counts any tied class."""
    v = np.asarray(votes)
    top = v.argmax(axis=1)
    keep = (v.sum(axis=1) > 0) & (top < len(EMOTIONS))
    return np.where(keep, top, -1)


def soft_labels(votes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vote distribution over the 8 emotions as a training target.

    Single votes are outliers (as in the majority rule). An image is usable when the
    emotion votes are more than half of all remaining votes (so mostly-unknown or
    not-a-face images are dropped). Returns (targets (N, 8) float32, usable mask).
    """
    v = np.asarray(votes, dtype=np.float64).copy()
    v[v <= 1] = 0
    emotion = v[:, : len(EMOTIONS)]
    emo_total = emotion.sum(axis=1)
    usable = (emo_total > 0) & (emo_total > 0.5 * v.sum(axis=1))
    targets = np.zeros_like(emotion)
    targets[usable] = emotion[usable] / emo_total[usable, None]
    return targets.astype(np.float32), usable


def used_by_a_rule(votes: np.ndarray) -> np.ndarray:
    """Images that a training target or an evaluation rule uses: the soft targets, the
    official majority rule or the strict argmax rule. The argmax rule keeps images the
    other two drop (a top emotion tied with, or just ahead of, ``unknown``/``NF``)."""
    return soft_labels(votes)[1] | (majority_labels(votes) >= 0) | (argmax_labels(votes) >= 0)


def one_hot(labels: np.ndarray, n: int = len(EMOTIONS)) -> np.ndarray:
    out = np.zeros((len(labels), n), np.float32)
    out[np.arange(len(labels)), labels] = 1.0
    return out


def training_targets(split: Split, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """Targets and usable mask for ``mode`` ``soft`` (vote distribution) or ``majority``."""
    if mode == "soft":
        return soft_labels(split.votes)
    if mode == "majority":
        labels = majority_labels(split.votes)
        keep = labels >= 0
        targets = np.zeros((len(labels), len(EMOTIONS)), np.float32)
        targets[keep] = one_hot(labels[keep])
        return targets, keep
    raise DataError(f"label mode {mode!r} is not known; use 'soft' or 'majority'")


# ---------------------------------------------------------------- loaders

def _decode_png(path: Path, box: tuple[int, int, int, int] | None) -> np.ndarray:
    import cv2

    if not path.is_file():
        raise DataError(f"{path} is missing, though label.csv names it: extract FER+ again")
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise DataError(f"{path} is not a readable image (damaged or cut short?): extract FER+ again")
    if box is not None:
        x, y, w, h = box
        if x < 0 or y < 0 or w < 1 or h < 1 or x + w > img.shape[1] or y + h > img.shape[0]:
            # it was OpenCV's "!ssize.empty()" from the resize of an empty crop
            raise DataError(f"{path}: label.csv's face box {box} (x, y, w, h) does not lie inside the "
                            f"{img.shape[1]}x{img.shape[0]} image: repair the row or extract FER+ again")
        if (x, y, w, h) != (0, 0, img.shape[1], img.shape[0]):
            img = img[y : y + h, x : x + w]
    if img.shape != (IMAGE_SIZE, IMAGE_SIZE):
        img = cv2.resize(img, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_AREA)
    return img


def _parse_box(text: str) -> tuple[int, int, int, int] | None:
    parts = [p for p in text.strip("() ").replace(" ", "").split(",") if p]
    if len(parts) != 4:
        return None
    x, y, w, h = (int(p) for p in parts)
    return x, y, w, h


def load_folder_split(root: Path, split: str) -> Split:
    folder = Path(root) / SPLIT_FOLDERS[split]
    label_file = folder / "label.csv"
    if not label_file.is_file():
        raise DataError(f"{label_file} is missing: expected Microsoft's FERPlus folder layout")
    images, votes, names = [], [], []
    with open(label_file, newline="") as f:
        reader = csv.reader(f)
        for row in reader:
            if not row:
                continue
            if len(row) != 12:
                raise DataError(f"{label_file}: row {row[:2]} has {len(row)} columns, expected 12")
            try:
                box, counts = _parse_box(row[1]), [int(c) for c in row[2:]]
                if box is None:  # a box of other than four numbers was read as no box: the whole image
                    raise ValueError(row[1])
            except ValueError:
                raise DataError(f"{label_file} row {reader.line_num} ({row[0]}): the face box {row[1]!r} (four "
                                f"numbers) and the vote counts {row[2:]} must all be whole numbers; repair the row "
                                "or extract FER+ again") from None
            images.append(_decode_png(folder / row[0], box))
            votes.append(counts)
            names.append(row[0])
    if not names:
        raise DataError(f"{label_file} has no rows")
    return Split(np.stack(images), np.asarray(votes, np.int16), names)


def _rows_differ(fer2013_csv: Path, ferplus_csv: Path) -> DataError:
    """The two CSV files are row for row the same images: of different lengths, one is cut
    short or not the public file (zip stopped at the shorter and said nothing)."""
    counts = []
    for path in (fer2013_csv, ferplus_csv):
        with open(path, newline="") as f:
            counts.append(sum(1 for row in csv.reader(f) if row) - 1)  # less the header
    return DataError(f"{fer2013_csv} has {counts[0]} rows and {ferplus_csv} has {counts[1]}: they must have one row per "
                     "image each, in the same order; download them again (one is cut short or another file)")


def load_csv_split(fer2013_csv: Path, ferplus_csv: Path, split: str) -> Split:
    """Read one split straight from ``fer2013.csv`` + ``fer2013new.csv`` (same row order)."""
    usage = CSV_USAGE[split]
    images, votes, names = [], [], []
    with open(fer2013_csv, newline="") as f_pix, open(ferplus_csv, newline="") as f_new:
        pix_rows, new_rows = csv.DictReader(f_pix), csv.reader(f_new)
        header = next(new_rows, None)
        if not header or header[0] != "Usage" or len(header) != 12:
            raise DataError(f"{ferplus_csv} does not start with the FER+ header 'Usage,Image name,...'")
        if not pix_rows.fieldnames or "pixels" not in pix_rows.fieldnames:
            raise DataError(f"{fer2013_csv} has no 'pixels' column: is it fer2013.csv?")
        for n, (pix, new) in enumerate(itertools.zip_longest(pix_rows, new_rows)):
            if pix is None or new is None:
                raise _rows_differ(fer2013_csv, ferplus_csv)
            if len(new) != 12:
                raise DataError(f"{ferplus_csv} row {n + 2} has {len(new)} columns, expected 12; use the unmodified file")
            if new[0] != usage or not new[1].strip():
                continue  # other split, or an image FER+ removed
            if pix.get("Usage") != usage:
                raise DataError(f"row {n + 2}: the two files disagree on the split; use unmodified files")
            try:
                pixels = np.array(pix["pixels"].split(), dtype=np.uint8)
            except (ValueError, OverflowError):
                raise DataError(f"{fer2013_csv} row {n + 2}: the pixels must be whole numbers 0-255; use the "
                                "unmodified file") from None
            if pixels.size != IMAGE_SIZE * IMAGE_SIZE:
                raise DataError(f"{fer2013_csv} row {n + 2}: {pixels.size} pixels, expected 2304")
            images.append(pixels.reshape(IMAGE_SIZE, IMAGE_SIZE))
            try:
                votes.append([int(float(c)) for c in new[2:12]])
            except ValueError:
                raise DataError(f"{ferplus_csv} row {n + 2} ({new[1].strip()}): the vote counts {new[2:12]} "
                                "must all be numbers; use the unmodified file") from None
            names.append(new[1].strip())
    if not names:
        raise DataError(f"no {usage} rows found in {ferplus_csv}")
    return Split(np.stack(images), np.asarray(votes, np.int16), names)


PACK_NAME = "ferplus-pack.npz"
PACK_FORMAT = 1  # raised when write_pack changes what a pack holds: a pack of an older one is made again


def find_layout(path: Path) -> tuple[str, Path]:
    """Tell which layout ``path`` holds: ('folder', root), ('csv', dir) or ('pack', file)."""
    path = Path(path).expanduser()
    if path.is_file() and path.suffix == ".npz":
        return "pack", path
    if (path / PACK_NAME).is_file():
        return "pack", path / PACK_NAME
    for root in (path, path / "ferplus"):
        if (root / SPLIT_FOLDERS["train"]).is_dir() or (root / SPLIT_FOLDERS["test"]).is_dir():
            return "folder", root
    if (path / "fer2013.csv").is_file() and (path / "fer2013new.csv").is_file():
        return "csv", path
    raise DataError(
        f"{path} holds neither FERPlus folders (FER2013Train/, FER2013Valid/, FER2013Test/) "
        "nor fer2013.csv + fer2013new.csv. Extract ../shared/data/ferplus.tar.gz and pass "
        "the folder that contains 'ferplus/'."
    )


def content_key(kind: str, root: Path, split: str) -> str:
    """A digest of the bytes a split is decoded from (its label file and every image, or
    the two CSV files), so a cache entry is reused only for the very same data, wherever
    it lies, and an edited or re-extracted copy is decoded again."""
    digest = hashlib.sha256(f"{kind}:{split}:".encode())
    if kind == "folder":
        folder = Path(root) / SPLIT_FOLDERS[split]
        label_file = folder / "label.csv"
        if not label_file.is_file():
            raise DataError(f"{label_file} is missing: expected Microsoft's FERPlus folder layout")
        digest.update(label_file.read_bytes())
        for image in sorted(folder.glob("*.png")):
            digest.update(image.name.encode() + b"\0" + image.read_bytes())
    else:
        for name in ("fer2013.csv", "fer2013new.csv"):
            with open(Path(root) / name, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()[:16]


def _cache_path(kind: str, root: Path, split: str) -> Path:
    cache = Path(os.environ.get("ENGAGE_DATA_CACHE", Path.home() / ".cache" / "engage-data" / "npz"))
    return cache / f"{split}-{content_key(kind, root, split)}.npz"


# what np.load raises on a truncated or overwritten .npz (a full disk, a killed copy)
DAMAGED_NPZ = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error)


def _read_cache(cached: Path) -> Split | None:
    """The decoded split cached in ``cached``, or None after removing a damaged file: its name
    is the digest of the source, so a bad one was read again, and failed, on every later run."""
    try:
        with np.load(cached, allow_pickle=False) as z:
            images, votes, names = z["images"], z["votes"], z["names"]
        if images.dtype != np.uint8 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE) or votes.shape != (len(images), 10) \
                or names.shape != (len(images),):
            raise ValueError(f"arrays of shapes {images.shape}, {votes.shape}, {names.shape}")
    except DAMAGED_NPZ as exc:
        print(f"note: the decoded cache {cached} is damaged ({type(exc).__name__}: {exc}); removed, decoding the "
              "data again", file=sys.stderr)
        cached.unlink(missing_ok=True)
        return None
    return Split(images, votes, [str(n) for n in names])


def load_split(path: Path, split: str, cache: bool = True) -> Split:
    """Load ``split`` (train/valid/test) from either layout, caching decoded arrays
    under a digest of the source bytes (``content_key``)."""
    if split not in SPLIT_FOLDERS:
        raise DataError(f"split {split!r} is not one of {sorted(SPLIT_FOLDERS)}")
    kind, root = find_layout(path)
    if kind == "pack":
        return load_pack_split(root, split)
    cached = _cache_path(kind, root, split)
    if cache and cached.is_file() and (hit := _read_cache(cached)) is not None:
        return hit
    if kind == "folder":
        data = load_folder_split(root, split)
    else:
        data = load_csv_split(root / "fer2013.csv", root / "fer2013new.csv", split)
    if cache:
        cached.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(cached, suffix=".npz") as tmp:
            np.savez(tmp, images=data.images, votes=data.votes, names=np.array(data.names))
    return data


# ---------------------------------------------------------------- pack (carry to a GPU machine)

def pack_source(data_dir: Path, splits=("train", "valid")) -> dict:
    """What a pack of ``splits`` from ``data_dir`` is made of (the content keys of its sources)
    and by which pack format: a pack whose record differs is of other data or older code."""
    kind, root = find_layout(data_dir)
    if kind == "pack":
        digest = hashlib.sha256(root.read_bytes()).hexdigest()[:16]  # one file for every split: read once
        keys = {split: digest for split in splits}
    else:
        keys = {split: content_key(kind, root, split) for split in splits}
    return {"format": PACK_FORMAT, "splits": keys}


def pack_source_of(pack: Path) -> dict | None:
    """The ``pack_source`` a pack was written with; None for a pack without one (older code)
    or one that cannot be read."""
    try:
        with np.load(pack, allow_pickle=False) as z:
            return json.loads(str(z["source"])) if "source" in z else None
    except DAMAGED_NPZ:
        return None


def write_pack(data_dir: Path, out: Path, splits=("train", "valid"), source: dict | None = None) -> Path:
    """Write ``splits`` into one file of lossless WebP images plus votes and names.

    FER+ as 48x48 PNGs is ~60 MB; lossless WebP makes the training and validation splits
    small enough to travel with the code to a training machine that has no copy. Decoded
    pixels are identical to the source (checked here before the file is written). Images
    that no label rule can use (``used_by_a_rule``: mostly ``unknown``/``NF`` votes) are
    left out, so a packed split scores under both evaluation rules as the original does.
    """
    import cv2

    # ``source``: the caller's ``pack_source`` of the same data (gpu_plan prepare has just read it all)
    arrays = {"source": np.array(json.dumps(source or pack_source(data_dir, splits)))}
    for split in splits:
        data = load_split(data_dir, split)
        data = data.subset(used_by_a_rule(data.votes))
        blobs = [cv2.imencode(".webp", img, [cv2.IMWRITE_WEBP_QUALITY, 101])[1].tobytes() for img in data.images]
        for img, blob in zip(data.images[:50], blobs):
            decoded = cv2.imdecode(np.frombuffer(blob, np.uint8), cv2.IMREAD_GRAYSCALE)
            if decoded is None or not np.array_equal(decoded, img):
                raise DataError("this OpenCV build does not write lossless WebP; cannot pack")
        arrays[f"{split}_webp"] = np.frombuffer(b"".join(blobs), np.uint8)
        arrays[f"{split}_offsets"] = np.cumsum([0] + [len(b) for b in blobs]).astype(np.int64)
        arrays[f"{split}_votes"] = data.votes
        arrays[f"{split}_names"] = np.array(data.names, dtype=bytes)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out, suffix=".npz") as tmp:
        np.savez_compressed(tmp, allow_pickle=False, **arrays)  # names, votes and offsets shrink; WebP does not
    return out


def load_pack_split(pack: Path, split: str) -> Split:
    import cv2

    try:
        with np.load(pack, allow_pickle=False) as z:
            arrays = {key: z[f"{split}_{key}"] for key in ("webp", "offsets", "votes", "names") if f"{split}_{key}" in z}
    except DAMAGED_NPZ as exc:  # a traceback, where the other damage says what to do
        raise DataError(f"{pack} cannot be read ({type(exc).__name__}: {exc}): the file is damaged; write it again "
                        "with python -m training.data pack") from None
    if "webp" not in arrays:
        raise DataError(f"{pack} holds no {split!r} split; pack it with --splits")
    blob, offsets = arrays["webp"], arrays["offsets"]
    images = [cv2.imdecode(blob[a:b], cv2.IMREAD_GRAYSCALE) for a, b in zip(offsets[:-1], offsets[1:])]
    broken = [i for i, img in enumerate(images) if img is None]
    if broken:
        raise DataError(f"{pack}: {len(broken)} {split} images (the first: #{broken[0]}) are not readable WebP: the "
                        "file is damaged; write it again with python -m training.data pack")
    return Split(np.stack([img for img in images if img is not None]), arrays["votes"], [n.decode() for n in arrays["names"]])


def default_data_dir() -> Path:
    """Where the README tells people to extract FER+; ENGAGE_DATA overrides it."""
    return Path(os.environ.get("ENGAGE_DATA", Path.home() / ".cache" / "engage-data"))


def main(argv=None) -> int:
    """``python -m training.data pack OUT.npz``: carry FER+ to another training machine."""
    import argparse
    import sys

    p = argparse.ArgumentParser(prog="python -m training.data", description=main.__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    pk = sub.add_parser("pack", help="write train/valid as one lossless file (pass it as --data)")
    pk.add_argument("out", type=Path)
    pk.add_argument("--data", type=Path, default=default_data_dir())
    pk.add_argument("--splits", nargs="+", default=["train", "valid"], choices=sorted(SPLIT_FOLDERS))
    args = p.parse_args(argv)
    try:
        out = write_pack(args.data, args.out, tuple(args.splits))
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
