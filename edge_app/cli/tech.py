"""Technician subcommands of ``engage-edge``: model install/rollback/list/golden, selftest,
export, backup, restore, passwd, adduser and role. Registered by ``cli.build_parser``; heavy imports happen per command."""
from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import math
import os
import shlex
import sqlite3
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from edge_app.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE  # one set of exit codes for every command

if TYPE_CHECKING:
    from edge_app.config import Config


def _config(args, overrides: dict | None = None) -> Config:
    from edge_app import config as config_mod

    over = dict(overrides or {})
    if getattr(args, "data_dir", None):
        over["store.data_dir"] = str(args.data_dir)
    return config_mod.load(getattr(args, "config", None), over)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="TOML config (default: /etc/engage-edge/config.toml if present)")
    p.add_argument("--data-dir", type=Path, help="the data directory (default: store.data_dir)")


def _refused(exc: PermissionError) -> str:
    """What to do when this user may not read the data (the usual slip: a technician's own
    account, or plain sudo's root on a root-squashed share, instead of the service's)."""
    from edge_app.fsutil import owner_name, user_name

    where = exc.filename or "the data directory"
    owner, user = owner_name(where), user_name()
    if owner == user:
        return f"error: {where}: {exc.strerror}: check its permissions (ls -l {where})"
    command = shlex.join(sys.argv) if Path(sys.argv[0]).name == "engage-edge" else "engage-edge ..."
    return (f"error: {user!r} may not read {where} ({exc.strerror}); it belongs to {owner!r}: "
            f"run the command as that user: sudo -u {owner} {command}")


def _guarded(command):
    """A technician command that answers a refused file with who to run it as, not a traceback."""

    def run(args) -> int:
        try:
            return command(args)
        except PermissionError as exc:
            print(_refused(exc), file=sys.stderr)
            return EXIT_USAGE

    run.__doc__ = command.__doc__
    return run


# ------------------------------------------------------------------ model
def _by() -> str:
    """Who flashed from the command line, for the model history the admin page shows."""
    import getpass

    try:
        return f"command line ({getpass.getuser()})"
    except (KeyError, OSError):
        return "command line"


def _as_data_owner(cfg: Config) -> None:
    """Started as root (plain ``sudo engage-edge model install``), act as the data
    directory's owner, as ``selftest`` and ``passwd`` do: a ``models/`` folder (or manifest)
    left to root stops the service's own web uploads and roll-backs, and the README's
    ``sudo -u engage engage-edge model rollback``."""
    import edge_app
    from edge_app import config as config_mod
    from edge_app.fsutil import user_name
    from edge_app.vision.classifier import ModelError, load_interpreter_class
    from edge_app.vision.faces import reference_faces

    data = config_mod.data_dir(cfg)
    if os.geteuid() != 0 or not data.is_dir():
        return
    try:  # loaded first: a Python under a folder only root enters (pyenv in /root)
        load_interpreter_class()
    except ModelError:
        pass  # said when the model is loaded
    with contextlib.suppress(OSError):  # the golden check's photographs, from such a package (cached)
        reference_faces()
    _become_owner(data)
    package = Path(edge_app.__file__).parent
    if not os.access(package, os.R_OK | os.X_OK):
        print(f"warning: this engage-edge is installed in {package}, which {user_name()!r} (the data directory's "
              "owner, whom this command acts as) cannot read: what needs the shipped model is skipped (timing a new "
              "model against it, keeping it for rollback). Run the service's own engage-edge "
              "(/opt/engage-edge/venv/bin/engage-edge, as its systemd unit names it) instead", file=sys.stderr)


def cmd_model_install(args) -> int:
    from edge_app.models import registry as flash

    cfg = _config(args)
    by = _by()
    _as_data_owner(cfg)
    before = flash.running_manifest(cfg)
    try:
        raw = flash.install(args.file, args.manifest, cfg, by=by, allow_slow=args.allow_slow)
    except (KeyboardInterrupt, SystemExit):  # Ctrl-C, or the SSH session dropped (SystemExit: see cli.main)
        _say_interrupted(cfg, before, "nothing was installed", "is now the installed model")
        raise
    except flash.AlreadyInstalled as exc:  # what was asked for is so: a provisioning script run again goes on
        print(exc)
        return EXIT_OK
    except flash.ModelError as exc:
        print(f"refused: {exc}\nthe running model is unchanged", file=sys.stderr)
        return EXIT_FAILED
    measured = raw.get("measured") or {}
    speed = (f"; {measured['ms_per_face']:.2f} ms per face here ({measured['compared_with']}: "
             f"{measured['its_ms_per_face']:.2f} ms)" if measured else "")
    print(f"installed {raw['model']} (sha256 {raw['sha256'][:12]}{speed}) into {flash.models_dir(cfg)}; "
          "a running engage-edge picks it up within a few seconds")
    if note := flash.lower_accuracy_note(before, raw):
        print(f"note: {note}")
    _warn_if_pinned(cfg, "installed")
    return EXIT_OK


def _say_interrupted(cfg, before: dict | None, unchanged: str, changed: str) -> None:
    """Say whether an install or rollback cut short by Ctrl-C or a hang-up changed the model:
    it ended with exit 130 and not a word, the technician left to guess what runs. Either the
    change was made whole or not at all (``registry._swap``)."""
    from edge_app.models import registry as flash

    after = flash.running_manifest(cfg)
    if after is not None and (before is None or flash.manifest_digest(after) != flash.manifest_digest(before)):
        said = (f"interrupted after the change was made: {after.get('model')} (sha256 {str(after.get('sha256'))[:12]}) "
                f"{changed}; 'engage-edge model list' shows it, 'engage-edge model rollback' returns to the one before")
    else:
        said = f"interrupted: {unchanged}; the running model is unchanged"
    with contextlib.suppress(OSError):  # a hang-up's terminal may be gone
        print(said, file=sys.stderr, flush=True)


def _warn_if_pinned(cfg, done: str) -> None:
    """An install or rollback changes the current model, which a pinned one overrules."""
    if cfg.model.manifest:  # a running service read the pin at its start: clearing it alone changes nothing
        print(f"warning: model.manifest = {cfg.model.manifest!r} pins another model: to run the {done} one, clear "
              "it in the config and restart: sudo systemctl restart engage-edge", file=sys.stderr)


def cmd_model_rollback(args) -> int:
    from edge_app.models import registry as flash

    cfg = _config(args)
    by = _by()
    _as_data_owner(cfg)
    before = flash.running_manifest(cfg)
    try:
        raw = flash.rollback(cfg, by=by)
    except (KeyboardInterrupt, SystemExit):
        _say_interrupted(cfg, before, "not rolled back", "runs again: rolled back")
        raise
    except flash.NothingToRollBack as exc:  # what to do instead, as the web page and a failed start say
        from edge_app.vision.classifier import SHIPPED_MANIFEST

        print(f"rollback refused: {exc}\nthe running model is unchanged; to run another model, install it: "
              "engage-edge model install MODEL.tflite --manifest MODEL.json (the shipped one: "
              f"{SHIPPED_MANIFEST.with_suffix('.tflite')} --manifest {SHIPPED_MANIFEST})", file=sys.stderr)
        return EXIT_FAILED
    except flash.PreviousUnusable as exc:  # the previous model is damaged too: rolling back cannot mend it
        print(f"rollback refused: {exc}\nthe running model is unchanged; the previous one cannot run: "
              + flash.INSTALL_A_GOOD_ONE, file=sys.stderr)
        return EXIT_FAILED
    except flash.ModelError as exc:  # a models folder it may not write, a read-only disk: the previous model is fine
        print(f"rollback refused: {exc}\nthe running model is unchanged", file=sys.stderr)
        return EXIT_FAILED
    print(f"rolled back to {raw.get('model')} (sha256 {raw.get('sha256', '')[:12]})")
    _warn_if_pinned(cfg, "rolled-back")
    return EXIT_OK


def cmd_model_list(args) -> int:
    from edge_app.models import registry as flash
    from edge_app.models.checks import is_number
    from edge_app.models.watcher import load_error

    cfg = _config(args)
    rows = flash.listing(cfg)
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    for r in rows:
        if "error" in r:
            print(f"{r['role']:<9} {r['path']}: {'' if 'pinned' in r['role'] else 'unreadable: '}{r['error']}")
            continue
        metrics = _metrics_summary(r["metrics"])
        mark = "*" if r["active"] else " "
        overruled = "  (not run while model.manifest pins another)" if r["role"] == "current" and cfg.model.manifest else ""
        print(f"{mark} {r['role']:<9} {r['model'] or r['path']}  sha256 {r['sha256'][:12]}  "
              f"{'manifest ' + r['manifest'] + '  ' if r.get('manifest') else ''}"
              f"{'installed ' + r['installed'] if r['installed'] else ''}  golden={'yes' if r['golden'] else 'no'}  "
              f"{metrics}{overruled}" + (f"  DAMAGED, cannot run: {r['damaged']}" if r.get("damaged") else ""))
    # what this command reads is the config; the service may have started with another one
    if cfg.model.manifest:
        print("(* = active: pinned by model.manifest, which engage-edge reads at its start; installs and roll-backs "
              "run once the pin is cleared and the service restarted: sudo systemctl restart engage-edge)")
    else:
        print("(* = active: a running engage-edge switches to it within a few seconds, unless it started while "
              "model.manifest pinned another model: then at its next start, sudo systemctl restart engage-edge)")
    note = flash.shipped_not_running(cfg)
    if note:
        print("note: " + note)
    failed = load_error(cfg)
    if failed:  # the running service said so; this command alone cannot know
        print(f"note: the running engage-edge could not load the active (*) model and still runs the one before it: "
              f"{failed}. Roll back (engage-edge model rollback), or install a good model")
    changes = flash.history(cfg)
    if changes:
        print("history (newest first):")
    for h in changes[:10]:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(h["t"])) if isinstance(h.get("t"), (int, float)) else "?"
        ms = h.get("ms_per_face")
        speed = f"  {ms:.2f} ms/face" if is_number(ms) else ""
        accuracy = f"  accuracy {h['accuracy']:.1%}" if is_number(h.get("accuracy")) else ""
        manifest = f"  manifest {h['manifest']}" if isinstance(h.get("manifest"), str) else ""
        print(f"  {when}  {h.get('action')} {h.get('model')}  sha256 {str(h.get('sha256', ''))[:12]}{manifest}{accuracy}"
              f"{speed}  by {h.get('by') or '?'}")
    return EXIT_OK


# what an evaluation says about its own file (the name it had when evaluated, its hash, its
# input): the row already names the installed file, and these read as another model's
_METRICS_OF_THE_FILE = ("model", "sha256", "input", "format", "output_dtype", "views", "split")


def _metrics_summary(metrics: dict) -> str:
    """The number a technician compares models by first (FER+ test accuracy by the official
    rule, and macro-F1), then the evaluation's other plain figures."""
    from edge_app.models.checks import is_number

    found = metrics.get("official")
    official: dict = found if isinstance(found, dict) else {}
    head = []
    if is_number(official.get("accuracy")):
        images = f" on {official['images']} FER+ test faces" if is_number(official.get("images")) else ""
        head.append(f"accuracy {official['accuracy']:.1%}{images}")
    if is_number(official.get("macro_f1")):
        head.append(f"macro-F1 {official['macro_f1']:.3f}")
    rest = [f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items()
            if k not in _METRICS_OF_THE_FILE and not isinstance(v, (dict, list))]
    return ", ".join(head + rest) or "no metrics"


def cmd_model_golden(args) -> int:
    from edge_app.models.checks import write_golden

    golden = write_golden(args.manifest)
    print(f"golden data written to {args.manifest}: faces {golden['indices']} -> {golden['labels']}")
    return EXIT_OK


# ------------------------------------------------------------------ selftest, export, backup
def cmd_selftest(args) -> int:
    from edge_app import config as config_mod
    from edge_app.device import selftest

    overrides = {"camera.source": args.source} if args.source else {}
    cfg = _config(args, overrides)
    data = config_mod.data_dir(cfg)
    if data.is_dir() and os.geteuid() == 0:  # checked as the service's user, which the database check writes as
        for module in selftest.CHECK_MODULES:  # loaded first: a Python under a folder only root enters (pyenv in /root)
            importlib.import_module(module)
        _become_owner(data)
    results = selftest.run(cfg, args.source, buzzer=not args.no_buzzer, step_s=args.step)
    return EXIT_FAILED if any(r.status == "FAIL" for r in results) else EXIT_OK


def cmd_export(args) -> int:
    from edge_app import config as config_mod
    from edge_app.store import export
    from edge_app.store.copying import BackupError, CopyFailed

    cfg = _config(args)
    if args.out == "-":  # the Unix convention for standard output, not a file named "-"
        args.out = None
    try:
        if args.since is None and args.what != "accounts":
            raise BackupError(f"--since is needed for the {args.what}: the first day to export, YYYY-MM-DD")
        if args.what == "accounts" and (args.since is not None or args.until is not None):
            raise BackupError("--what accounts lists the accounts there are now, whenever they were made: give "
                              "no --since or --until (the audit log, --what audit, says who was added or "
                              "deleted in a period)")
        since = export.parse_since(args.since) if args.since is not None else -math.inf
        until = export.parse_since(args.until, "--until") if args.until is not None else math.inf
        if until <= since:
            raise BackupError(f"--until {args.until} is not after --since {args.since}: nothing to export")
        if since > time.time():  # '--since 2062-01-01' for 2026: a header and no rows, exit 0
            print(f"warning: --since {args.since} is in the future: nothing has been logged since then, so no rows "
                  "(a mistyped year?)", file=sys.stderr)
        n = export.export_csv(config_mod.data_dir(cfg), since, args.out, until, args.what)
    except BackupError as exc:  # as for backup: 1 when the writing failed, 2 for what was asked
        print(f"error: {exc}", file=sys.stderr)
        if args.out is None and isinstance(exc, CopyFailed):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the exit's flush would fail again
        return EXIT_FAILED if isinstance(exc, CopyFailed) else EXIT_USAGE
    if args.out:
        print(f"{n} rows written to {args.out}", file=sys.stderr)
    return EXIT_OK


def cmd_backup(args) -> int:
    from edge_app import config as config_mod
    from edge_app.store import backup
    from edge_app.store.copying import BackupError, CopyFailed

    cfg = _config(args)
    try:
        dest = backup.backup(config_mod.data_dir(cfg), args.path)
    except BackupError as exc:  # exit 2 for a wrong data directory or destination, as for export
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED if isinstance(exc, CopyFailed) else EXIT_USAGE
    print(f"backup written to {dest} (integrity ok)")
    return EXIT_OK


def cmd_restore(args) -> int:
    """Put a backup in place of the database (the service stopped), the old files kept as
    ``.old``; another desk's ``mqtt.device_id`` does not come along (``backup.restore``)."""
    from edge_app import config as config_mod
    from edge_app.store import backup
    from edge_app.store.copying import BackupError, CopyFailed

    cfg = _config(args)
    data = config_mod.data_dir(cfg)
    try:
        source = open(Path(args.backup).expanduser(), "rb")  # noqa: SIM115 - read as the caller, before the switch
    except IsADirectoryError:
        print(f"error: {args.backup} is a folder: name the backup file in it (ls {shlex.quote(str(args.backup))}; "
              "`engage-edge backup` names them engage-YYYYMMDD-HHMMSS.db)", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"error: cannot read {args.backup}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    with source:
        if data.is_dir():
            _become_owner(data)  # the files it writes stay the service's (run with plain sudo)
        try:
            told = backup.restore(data, source, keep_device_id=args.keep_device_id,
                                  file_mqtt=(cfg.mqtt.device_id, cfg.mqtt.username),
                                  bring_back_deleted=args.bring_back_deleted)
        except BackupError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_FAILED if isinstance(exc, CopyFailed) else EXIT_USAGE
    print(f"restored {args.backup} as {data / 'engage.db'} (integrity ok)")
    for line in told:
        print(line)
    return EXIT_OK


# ------------------------------------------------------------------ passwd
NO_PASSWORD = "refused: no password given (standard input ended, or Ctrl-D at the prompt); nothing changed"


def _no_password() -> int:
    """Said when ``_read_new_password`` got none (EOFError); on a new line after a prompt."""
    prompted = sys.stdin is not None and sys.stdin.isatty()
    print(("\n" if prompted else "") + NO_PASSWORD, file=sys.stderr)
    return EXIT_FAILED


def _read_new_password(username: str, from_stdin: bool) -> str | None:
    """The new password: one line of standard input (a script, a pipe), or typed twice
    without echo at a terminal; None when the two typed differ. EOFError when none comes:
    standard input closed or empty, or Ctrl-D at the prompt (the caller says so, not a
    traceback)."""
    if sys.stdin is None:  # started with it closed (<&-)
        raise EOFError
    if from_stdin or not sys.stdin.isatty():
        line = sys.stdin.readline()
        if not line:  # nothing at all, not even an empty line
            raise EOFError
        return line.rstrip("\r\n")
    import getpass

    first = getpass.getpass(f"new password for {username!r}: ")
    return first if getpass.getpass("the same again: ") == first else None


def _become_owner(path: Path) -> None:
    """Run as the owner of ``path`` (the service's user) when started as root, so the
    files this command writes stay the service's: a root-owned ``engage.db``, ``-wal`` or
    ``images/`` would stop the service from opening its own data. The owner's own groups
    come along (``gpio``, ``video``: what the service may reach, a self-test checks)."""
    import pwd

    st = path.stat()
    if os.geteuid() == 0 and st.st_uid != 0:
        try:
            os.initgroups(pwd.getpwuid(st.st_uid).pw_name, st.st_gid)
        except KeyError:  # an owner without a name (a copied card): no groups but its own
            os.setgroups([])
        os.setgid(st.st_gid)
        os.setuid(st.st_uid)


def _users_store(args):
    """(data directory, its open Store) for a user command, or the exit code after saying
    why not: no database there (a mistyped directory is not made into a fresh device), or
    one it cannot use. Run as the database's owner, so the files stay the service's."""
    from edge_app import config as config_mod
    from edge_app.store.database import DB_NAME, Store, StoreError, release_reserve

    data = Path(args.data_dir).expanduser() if args.data_dir else config_mod.data_dir(_config(args))
    if not (data / DB_NAME).is_file():
        print(f"error: no engage-edge database in {data} ({DB_NAME} is missing): give the data directory with "
              "--data-dir (a device's store.data_dir; a classroom page's --data-dir, e.g. /var/lib/engage-classroom)",
              file=sys.stderr)
        return EXIT_USAGE
    try:
        _become_owner(data / DB_NAME)
        return data, Store(data)
    except StoreError as exc:  # a database it cannot use: exit 2, as `run` says of the same file
        if exc.disk_full:  # not the database's fault: exit 1, and the running service's reserve makes room
            print(f"error: {FULL_AND_FREED if release_reserve(data) else exc}; nothing changed", file=sys.stderr)
            return EXIT_FAILED
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED


def _accounts_at(args):
    """(data directory, its open Store, its Accounts) for a user command, or the exit code
    after saying why not (``_users_store``)."""
    from edge_app.store.accounts import Accounts

    opened = _users_store(args)
    if isinstance(opened, int):
        return opened
    data, store = opened
    try:
        return data, store, Accounts(store)
    except BaseException:
        store.close()
        raise


def _user_at(args):
    """(data directory, its open Store, its Accounts, the user ``args.username``) for a user
    command, or the exit code after saying why not (``_accounts_at``; no such user: the
    users there are named)."""
    opened = _accounts_at(args)
    if isinstance(opened, int):
        return opened
    data, store, accounts = opened
    try:
        user = accounts.find(args.username)
        if user is None:
            names = ", ".join(u.username for u in accounts.list_users()) or "none"
            print(f"error: no user {args.username!r} in {data} (its users: {names})", file=sys.stderr)
            store.close()
            return EXIT_FAILED
    except BaseException:
        store.close()
        raise
    return data, store, accounts, user


FULL_AND_FREED = ("the disk is full: the room the running service keeps for this was given up, so run the command "
                  "again now; then free some space (old backups or exports, `sudo journalctl --vacuum-size=50M`)")


def _not_written(store, exc) -> int:
    """A user command's change could not be written, so nothing changed: a full disk is said with
    what to do, giving up the running service's reserve when there is one so that the command
    works when run again (a full disk is when a technician reaches for ``passwd``); any other
    database error is said as it is. Never a traceback."""
    advice = store.disk_full_advice(exc)
    if advice and store.release_reserve():
        advice = FULL_AND_FREED
    print(f"error: {advice or f'the database could not be written ({exc})'}; nothing changed", file=sys.stderr)
    return EXIT_FAILED


def _audited(store, *row: str) -> None:
    """The audit row of a change already made; one that cannot be written is said, not raised."""
    try:
        store.audit(*row)
    except sqlite3.Error as exc:
        print(f"warning: the change was made, but its audit log row could not be written: "
              f"{store.disk_full_advice(exc) or exc}", file=sys.stderr)


def cmd_passwd(args) -> int:
    """Set a user's password on this machine: the way back in when the admin password is
    lost (a device or, with ``--data-dir``, a classroom page), without losing any data."""
    from edge_app.store.accounts import AuthError

    actor = _by()
    opened = _user_at(args)
    if isinstance(opened, int):
        return opened
    data, store, accounts, user = opened
    try:
        try:
            password = _read_new_password(user.username, args.stdin)
        except EOFError:
            return _no_password()
        if password is None:
            print("refused: the two passwords differ; nothing changed", file=sys.stderr)
            return EXIT_FAILED
        try:
            accounts.set_password(user.id, password, must_change=args.temporary)
        except AuthError as exc:
            print(f"refused: {exc}; nothing changed", file=sys.stderr)
            return EXIT_FAILED
        except sqlite3.Error as exc:
            return _not_written(store, exc)
        _audited(store, actor, "set password of", user.username,
                 "engage-edge passwd" + (", temporary password" if args.temporary else ""))
    finally:
        store.close()
    print(f"password of {user.username!r} set in {data}; their sessions were logged out"
          + ("; they choose their own at the next log-in" if args.temporary else "")
          + (f" (note: {user.username!r} is disabled; an admin re-enables it on the Users page)" if user.disabled else ""))
    return EXIT_OK


def _password_flags(parser, which: str) -> None:
    """``--stdin`` and ``--temporary``, as ``passwd`` and ``adduser`` read a password
    (``which``: the log-in at which a temporary one is replaced, "next" or "first")."""
    parser.add_argument("--stdin", action="store_true", help="read the new password from one line of standard input "
                        "(the default when standard input is not a terminal)")
    parser.add_argument("--temporary", action="store_true", help=f"the user must choose their own password at the "
                        f"{which} log-in (for a password you hand to someone else)")


def cmd_adduser(args) -> int:
    """Make an account on this machine (a script provisioning many desks: each desk's
    instructor, a second admin), as the Users page's Add does; the password as ``passwd``
    reads it. Deleting stays on the Users page: it asks first, names what goes, and frees a
    camera pause the account holds in the running service."""
    from edge_app.store.accounts import AuthError

    actor = _by()
    opened = _accounts_at(args)
    if isinstance(opened, int):
        return opened
    data, store, accounts = opened
    try:
        if accounts.find(args.username) is not None:
            print(f"refused: {args.username!r} has an account in {data} already (engage-edge passwd sets its "
                  "password, engage-edge role its role); nothing changed", file=sys.stderr)
            return EXIT_FAILED
        try:
            password = _read_new_password(args.username, args.stdin)
        except EOFError:
            return _no_password()
        if password is None:
            print("refused: the two passwords differ; nothing changed", file=sys.stderr)
            return EXIT_FAILED
        try:
            user = accounts.create_user(args.username, password, args.role, must_change=args.temporary)
        except AuthError as exc:
            print(f"refused: {exc}; nothing changed", file=sys.stderr)
            return EXIT_FAILED
        except sqlite3.Error as exc:
            return _not_written(store, exc)
        _audited(store, actor, "created user", user.username,
                 f"role {user.role}, engage-edge adduser" + (", temporary password" if args.temporary else ""))
    finally:
        store.close()
    print(f"{user.role} {user.username!r} added in {data}"
          + ("; they choose their own password at the first log-in" if args.temporary else ""))
    return EXIT_OK


def cmd_role(args) -> int:
    """Give a user another role on this machine, keeping their uploads: the Users page's
    Change role, for a device whose admins are gone. Fewer rights end their sessions; the
    last admin keeps the role (``Accounts.set_role``)."""
    from edge_app.store.accounts import RIGHTS, AuthError

    actor = _by()
    opened = _user_at(args)
    if isinstance(opened, int):
        return opened
    data, store, accounts, user = opened
    try:
        if user.role == args.role:
            print(f"the role of {user.username!r} is {args.role} already; nothing changed")
            return EXIT_OK
        try:
            accounts.set_role(user.id, args.role)
        except AuthError as exc:
            print(f"refused: {exc}; nothing changed", file=sys.stderr)
            return EXIT_FAILED
        except sqlite3.Error as exc:
            return _not_written(store, exc)
        _audited(store, actor, "changed role of", user.username, f"{user.role} to {args.role}, engage-edge role")
    finally:
        store.close()
    print(f"the role of {user.username!r} is now {args.role} in {data}"
          + ("; their sessions were logged out" if RIGHTS[args.role] < RIGHTS[user.role] else ""))
    return EXIT_OK


def _step_seconds(text: str) -> float:
    """--step: 0 to 5 seconds. '--step -1' ran the self-test and failed its LED line ('sleep
    length must be non-negative'), blaming a good LED; '--step 1e9' waited for years."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value <= 5:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds from 0 to 5 (default: each look's "
                                         "whole pattern)")
    return value


def add_commands(sub) -> None:
    from edge_app.store.accounts import ROLES
    model = sub.add_parser("model", help="install, roll back or list emotion models, or record a manifest's golden data")
    msub = model.add_subparsers(dest="model_command", metavar="ACTION", required=True)
    inst = msub.add_parser("install", help="validate a .tflite model and make it the running one")
    inst.add_argument("file", type=Path, help="the .tflite model")
    inst.add_argument("--manifest", type=Path, help="its manifest (default: FILE with .json)")
    inst.add_argument("--allow-slow", action="store_true", help="install it even when it takes more than 10 "
                      "times as long per face as the running model (the live loop slows down as much)")
    _common(inst)
    inst.set_defaults(func=_guarded(cmd_model_install))
    rb = msub.add_parser("rollback", help="restore the previous model")
    _common(rb)
    rb.set_defaults(func=_guarded(cmd_model_rollback))
    ls = msub.add_parser("list", help="show the current and previous model with metrics")
    ls.add_argument("--json", action="store_true")
    _common(ls)
    ls.set_defaults(func=_guarded(cmd_model_list))
    gold = msub.add_parser("golden", help="record golden reference predictions in a manifest")
    gold.add_argument("manifest", type=Path)
    gold.set_defaults(func=cmd_model_golden)

    st = sub.add_parser("selftest", help="check camera, LED, buzzer, model, face detector, database and disk")
    st.add_argument("--source", help="camera source to test (default: camera.source)")
    st.add_argument("--no-buzzer", action="store_true", help="skip the buzzer chirp")
    st.add_argument("--step", type=_step_seconds, default=None,
                    help="seconds per LED look, 0 to 5 (default: each look's whole pattern, about 15 s in all)")
    _common(st)
    st.set_defaults(func=_guarded(cmd_selftest))

    ex = sub.add_parser("export", help="write the logs (state changes, minutes, alerts, uploads), the audit log or "
                        "the accounts as CSV")
    ex.add_argument("--since", help="YYYY-MM-DD or YYYY-MM-DDTHH:MM (local time); needed but for --what accounts")
    ex.add_argument("--until", help="the end, not included: YYYY-MM-DD (that day's midnight) or YYYY-MM-DDTHH:MM "
                    "(default: no end, every row from --since on)")
    ex.add_argument("--what", choices=("log", "audit", "accounts"), default="log",
                    help="log (default): the engagement log; audit: what admins changed; accounts: who has an "
                    "account now (name, role, created, last log-in; no password)")
    ex.add_argument("--out", help="CSV file, written whole or not at all; never a database or a device "
                    "(default, or -: standard output)")
    _common(ex)
    ex.set_defaults(func=_guarded(cmd_export))

    bk = sub.add_parser("backup", help="consistent copy of the database, safe while the service runs")
    bk.add_argument("path", help="a new file or an earlier backup to replace, or a folder for a dated "
                    "file (engage-YYYYMMDD-HHMMSS.db); any other file is kept and the backup refused")
    _common(bk)
    bk.set_defaults(func=_guarded(cmd_backup))

    rs = sub.add_parser("restore", help="put a backup in place of the database (stop the service first); the "
                        "database as it was is kept as engage.db.old")
    rs.add_argument("backup", help="a file `engage-edge backup` wrote")
    which = rs.add_mutually_exclusive_group()
    which.add_argument("--keep-device-id", dest="keep_device_id", action="store_true", default=None,
                       help="keep the backup's mqtt.device_id even if it was made on another desk (one this desk "
                       "replaces); by default another desk's is dropped, or two desks publish as one")
    which.add_argument("--drop-device-id", dest="keep_device_id", action="store_false", default=None,
                       help="drop the backup's mqtt.device_id (a desk cloned from an older release's backup)")
    rs.add_argument("--bring-back-deleted", action="store_true",
                    help="also bring back the accounts and uploads deleted since the backup was made (to undo a "
                    "mistaken deletion); by default they are deleted again, so an erasure request stays done")
    _common(rs)
    rs.set_defaults(func=_guarded(cmd_restore))

    pw = sub.add_parser("passwd", help="set a user's password on this machine (a lost admin password), keeping all data")
    pw.add_argument("username", help="the user, e.g. admin")
    _password_flags(pw, "next")
    _common(pw)
    pw.set_defaults(func=_guarded(cmd_passwd))
    au = sub.add_parser("adduser", help="make an account on this machine (student, instructor, admin), as the Users "
                        "page's Add does; the password from standard input or typed twice")
    au.add_argument("username", help="the new user, e.g. anna.schmidt")
    au.add_argument("--role", choices=ROLES, default="student", help="its role (default: student)")
    _password_flags(au, "first")
    _common(au)
    au.set_defaults(func=_guarded(cmd_adduser))
    ro = sub.add_parser("role", help="give a user another role on this machine (student, instructor, admin), "
                        "keeping their data")
    ro.add_argument("username", help="the user, e.g. anna.schmidt")
    ro.add_argument("role", choices=ROLES, help="the new role")
    _common(ro)
    ro.set_defaults(func=_guarded(cmd_role))
