"""Kept images no row points to, removed when the appliance starts.

An upload's image is written before its row names it, an alert's snapshot before its
row, and a deleted or purged row goes before its file (so a failed delete never leaves a
row without its image). A process killed between the two steps, or halfway through the
atomic write (its temp file), leaves a photo of a student that neither the retention
purge nor "Delete this photo" can find: it would stay on the SD card for ever. At start
nothing is writing images yet, so every file under ``images/`` that no row names is one
of those; and a row that names an image no longer there (a deletion cut short after the
file went) forgets it.
"""
from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edge_app.store.database import Store

log = logging.getLogger(__name__)


def recorded_images(store: "Store") -> set[str]:
    """The image paths (relative to ``images/``) that some row names."""
    rows = store.query("SELECT image_path FROM uploads WHERE image_path IS NOT NULL "
                       "UNION SELECT snapshot_path FROM alerts WHERE snapshot_path IS NOT NULL")
    return {r[0] for r in rows}


def remove_unrecorded_images(store: "Store") -> int:
    """Delete every file under ``images/`` that no row names; returns how many went. Call
    only while nothing writes images (before the web server and the capture loop start):
    an image being written now has no row yet either."""
    root = Path(store.data_dir) / "images"
    try:
        recorded = recorded_images(store)
    except sqlite3.DatabaseError as exc:  # damage under uploads or alerts: which images are named is unknown
        log.warning("kept every image: the database could not say which ones its rows name (%s), so the cleanup "
                    "removed nothing; restore a backup (firmware/README.md, 'Restoring a backup')", exc)
        return 0
    removed = 0
    for folder, _dirs, files in os.walk(root):  # links to folders are not followed
        for name in files:
            path = Path(folder) / name
            if path.relative_to(root).as_posix() in recorded:
                continue
            try:
                path.unlink()
                removed += 1
            except OSError as exc:
                log.warning("could not remove %s, an image no row names: %s; delete it by hand", path, exc)
    if removed:
        log.info("removed %d image file(s) that no row names (left by a process stopped mid-write or mid-delete)",
                 removed)
    forget_missing_images(store, root, recorded)
    return removed


def forget_missing_images(store: "Store", root: Path, recorded: set[str]) -> int:
    """Rows that name an image no longer there forget it: a deletion removes the pictures
    before their rows forget them (a full disk that refuses the update still leaves no
    picture), so a process killed between the two, or a refused update, left the alerts page
    saying "N snapshots are stored" over links that answered 404, and the privacy page
    counting pictures that were gone. Returns how many rows forgot one."""
    missing = sorted(p for p in recorded if not (root / p).is_file())
    forgotten = 0
    try:
        for path in missing:
            forgotten += store.execute("UPDATE alerts SET snapshot_path = NULL WHERE snapshot_path = ?", (path,)).rowcount
            forgotten += store.execute("UPDATE uploads SET image_path = NULL WHERE image_path = ?", (path,)).rowcount
    except sqlite3.DatabaseError as exc:  # a full disk, a damaged table: they are forgotten at a later start
        log.warning("could not forget %d deleted image(s) in their rows now (%s); tried again at the next start",
                    len(missing) - forgotten, exc)
    if forgotten:
        log.info("%d row(s) named an image that was already deleted (a deletion cut short): they no longer do",
                 forgotten)
    return forgotten


def hold_images(store: "Store") -> int:
    """Mark ``images/`` in use by this appliance until the returned descriptor is closed,
    removing the images no row names first. StoreError when another appliance runs on the
    same data directory: a second ``engage-edge run`` on another port ran beside it, both
    logging states into one log (and a made-up crash "Absent"), and its cleanup would remove
    the photo the running one has written and not yet recorded. An advisory lock on the
    folder: shared while running, exclusive for the cleanup and for a restore, whose end a
    start waits for."""
    from edge_app.store.database import StoreError

    fd = os.open(Path(store.data_dir) / "images", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fcntl.flock(fd, fcntl.LOCK_SH)  # waits while a restore (or another start's cleanup) holds it
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # shared with a running appliance
                raise StoreError(f"engage-edge is already running on {store.data_dir} (the service, or another "
                                 "`engage-edge run`): stop it first (sudo systemctl stop engage-edge), or give this "
                                 "one another --data-dir / store.data_dir") from None
        remove_unrecorded_images(store)
        from edge_app.store.backup import remove_restore_leftovers

        # a restore killed outright left a whole database, hidden, kept for ever unless restored again;
        # none can run while this is held
        for path in remove_restore_leftovers(Path(store.data_dir)):
            log.info("removed %s, left by a restore that was stopped part-way", path)
        fcntl.flock(fd, fcntl.LOCK_SH)  # from now on this appliance may be writing images
    except BaseException:
        os.close(fd)
        raise
    return fd
