"""What a refused flash says: the errors of the models registry, and the words for a file
that cannot be read or a models folder that cannot be written (what went wrong and what to do)."""
from __future__ import annotations

import errno
import os
from pathlib import Path

from edge_app.fsutil import free_mb, owner_name, user_name
from edge_app.vision.classifier import ModelError


class FlashError(ModelError):
    """The model was refused (or nothing to roll back to); the running model is untouched."""


class NothingToRollBack(FlashError):
    """No previous model, or one that is the model running now: a rollback changes nothing."""


class PreviousUnusable(FlashError):
    """The model to roll back to cannot run (its manifest unreadable, its file damaged): a
    rollback cannot mend it, installing a good model can. Told apart from a rollback refused
    for any other reason (a models folder it may not write), whose previous model is fine."""


class AlreadyInstalled(FlashError):
    """The model offered is the installed one (the same file and manifest, its file intact):
    an install changes nothing, so it makes no swap and no history entry. Installed again,
    it was its own "previous" in nothing but name and the history said something changed.
    ``installed``: that install's manifest."""

    def __init__(self, message: str, installed: dict):
        super().__init__(message)
        self.installed = installed


# ------------------------------------------------------------------ what went wrong, and what to do
def check_readable(path: Path, what: str, missing: str) -> None:
    """``path`` is a file this user can read, or a FlashError says what to do."""
    try:
        with open(path, "rb"):
            pass
    except IsADirectoryError:
        raise FlashError(f"{what} {path} is a folder: name the file in it{missing}") from None
    except (FileNotFoundError, NotADirectoryError):
        raise FlashError(f"{what} {path} does not exist{missing}") from None
    except PermissionError:
        raise FlashError(f"{what} {path} cannot be read by {user_name()!r}, who runs this command: copy the model and its "
                         "manifest to a folder that user can read (e.g. `cp FILE.tflite FILE.json /tmp/`) and "
                         "name them there") from None
    except OSError as exc:
        raise FlashError(f"{what} {path} cannot be read: {exc.strerror or exc}") from None


def write_failed(directory: Path, exc: OSError, need_bytes: int | None = None) -> FlashError:
    """A write into the models directory failed before the commit point: say why and what to do
    (``need_bytes``: about what the change needs there, said beside what is free)."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        where = next((p for p in (directory, *directory.parents) if p.is_dir()), directory)
        mb = free_mb(where)
        try:
            fs = os.statvfs(where)
            no_inodes = fs.f_files > 0 and fs.f_favail == 0  # 0 files in all: a file system without a count
        except OSError:
            no_inodes = False
        if no_inodes:  # "full (12637.9 MB free)" read as a lie
            free = f", though {mb:.1f} MB are free" if mb is not None else ""
            return FlashError(f"the file system holding {directory} has no free inodes: it can hold no more files{free}. "
                              f"Delete files that are no longer needed (`df -i {where}` counts them; many small files, "
                              "old backups or exports) and try again")
        needs = f"; the flash needs about {need_bytes / 1e6:.1f} MB (a checked copy, then the model's own)" \
            if need_bytes else ""
        free = f" ({mb:.1f} MB free{needs})" if mb is not None else ""
        return FlashError(f"the disk holding {directory} is full{free}: free some space (old backups or "
                          "exports, `sudo journalctl --vacuum-size=50M`) and try again")
    if exc.errno == errno.EROFS:  # "writing in ... failed: Read-only file system" said nothing to do
        return FlashError(f"the file system holding {directory} is mounted read-only ({exc.strerror}; `findmnt -T "
                          f"{directory}` names it): mount it read-write and try again")
    if exc.errno in (errno.EACCES, errno.EPERM):
        owner, service = owner_name(directory), owner_name(directory.parent)  # the data directory's: the service's
        if owner != service:  # left to root by a flash run as root: the service's web page cannot flash any more
            fix = f"give it back to {service!r}, who owns {directory.parent}: sudo chown -R {service}: {directory}"
        elif owner != user_name():
            fix = f"run the command as that user (sudo -u {owner} engage-edge ...)"
        elif _owner_may_not_write(directory):  # its mode (chmod a-w): giving it to its own owner changed nothing
            fix = f"let its owner write in it again (sudo chmod u+rwx {_existing(directory)})"
        else:
            fix = f"give it back to {owner!r} (sudo chown -R {owner}: {directory})"
        return FlashError(f"{user_name()!r} may not write in {directory} ({exc.strerror}): it belongs to {owner!r}; {fix}")
    return FlashError(f"writing in {directory} failed: {exc.strerror or exc}")


def _existing(directory: Path) -> Path:
    """``directory``, or the nearest folder above it that exists (a models folder not made yet)."""
    return next((p for p in (directory, *directory.parents) if p.is_dir()), directory)


def _owner_may_not_write(directory: Path) -> bool:
    """Does the mode of ``directory`` (or the folder a first install would make it in) deny its
    owner writing in it? Read from the mode bits, not ``os.access``, which says yes to root."""
    try:
        mode = _existing(directory).stat().st_mode
    except OSError:
        return False
    return mode & 0o300 != 0o300
