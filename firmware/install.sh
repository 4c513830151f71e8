#!/usr/bin/env bash
# Provision a Raspberry Pi (Pi OS Bookworm 64-bit, Pi 4/5) or an NVIDIA Jetson (JetPack)
# as an engage-edge appliance: packages, the `engage` service user, a venv under
# /opt/engage-edge, /etc/engage-edge/config.toml, /var/lib/engage-edge, a self-signed TLS
# certificate, udev rules, the camera boot setting and the systemd service.
#
# The package goes into the venv as a wheel (built from this checkout, or --wheel FILE):
# the device runs an installed package, never an editable checkout.
# Idempotent: run it again to upgrade the package; the config, the certificate and the
# data are kept. --dry-run prints every action without doing any of them. --no-apt installs
# no Debian packages, only lists the missing ones (an image builder's chroot that lacks
# the Raspberry Pi archive: tools/prove-arm64.sh). An upgrade backs the database up first
# (by the release installed, else by the system's python3); --no-backup skips that, knowing
# the old release cannot open the migrated database again.
#
#   sudo firmware/install.sh [--dry-run] [--platform pi|jetson] [--wheel FILE] [--no-start] [--no-apt] [--no-backup]
set -Eeuo pipefail

SRC_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PREFIX=/opt/engage-edge
VENV="$PREFIX/venv"
WHEEL_DIR="$PREFIX/wheels"
CONF_DIR=/etc/engage-edge
CONF="$CONF_DIR/config.toml"
TLS_DIR="$CONF_DIR/tls"
DATA_DIR=/var/lib/engage-edge
SERVICE_USER=engage
UNIT=engage-edge.service
UNIT_DST="/etc/systemd/system/$UNIT"
FAULT_UNIT=engage-edge-fault.service  # the LED's fault blink once the service has stopped for good (its OnFailure=)
FAULT_UNIT_DST="/etc/systemd/system/$FAULT_UNIT"
UDEV_DST=/etc/udev/rules.d/99-engage-edge.rules
BOOT_MARK="# --- engage-edge BEGIN ---"

DRY_RUN=0
START=1
APT=1
BACKUP=1
PLATFORM=""
WHEEL_IN=""
BUILD_ID=""

usage() {
    sed -n '2,/^[^#]/{/^#/p}' "$0" | sed 's/^# \{0,1\}//'
}

while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) DRY_RUN=1 ;;
        --no-start) START=0 ;;
        --no-apt) APT=0 ;;
        --no-backup) BACKUP=0 ;;
        --platform|--wheel)
            # a missing value must not end the script silently (set -e and a failing shift)
            if [ $# -lt 2 ] || [ -z "$2" ]; then
                echo "error: $1 needs a value ($( [ "$1" = --platform ] && echo 'pi or jetson' || echo 'a .whl file')): try --help" >&2
                exit 2
            fi
            if [ "$1" = --platform ]; then PLATFORM="$2"; else WHEEL_IN="$2"; fi
            shift ;;
        --platform=*) PLATFORM="${1#*=}" ;;
        --wheel=*) WHEEL_IN="${1#*=}" ;;
        -h|--help) usage; exit 0 ;;
        *) echo "error: unknown option $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done

STEP="the checks before step 1"
step() { STEP="$*"; printf '\n==> %s\n' "$*"; }
# A command that fails ends the script (set -e): say where, and that running it again is safe
# (a school proxy that apt or pip cannot pass ended it with only that tool's words).
# Only the script's own shell: set -E hands the trap to command substitutions too, whose failure
# (a version asked for a line) does not stop it. `run` names its command ($BASH_COMMAND is "$@" there).
LAST=""
trap '[ "$BASHPID" = "$$" ] && echo "install.sh stopped in step $STEP: \"${LAST:-$BASH_COMMAND}\" failed (above); the steps" \
          "before it are done, nothing after it; fix the cause and run install.sh again (safe to repeat)" >&2' ERR
note() { printf '    %s\n' "$*"; }

# A command as one line a person can copy: plain words as they are, others shell-quoted.
show_cmd() {
    local arg line=""
    for arg in "$@"; do
        if [[ "$arg" =~ ^[A-Za-z0-9_./:=,@%+-]+$ ]]; then
            line+=" $arg"
        else
            line+=" $(printf '%q' "$arg")"
        fi
    done
    printf '%s\n' "$line"
}

# Run a command, or under --dry-run only show it.
run() {
    if [ "$DRY_RUN" = 1 ]; then
        printf '[dry-run]%s' "$(show_cmd "$@")"
        printf '\n'
    else
        LAST="$(show_cmd "$@")"
        LAST="${LAST# }"
        printf '    + %s\n' "$LAST"
        "$@"
        LAST=""
    fi
}

# Write stdin to a file atomically (temp file + rename) with owner and mode.
# Under --dry-run, show where it would go and what it would contain.
write_file() {
    local dest="$1" mode="$2" owner="$3" tmp
    if [ "$DRY_RUN" = 1 ]; then
        printf '[dry-run] write %s (mode %s, owner %s):\n' "$dest" "$mode" "$owner"
        sed 's/^/[dry-run]   | /'
        return
    fi
    tmp="$(mktemp "$dest.XXXXXX")"
    cat >"$tmp"
    chmod "$mode" "$tmp"
    chown "$owner" "$tmp"
    mv -f "$tmp" "$dest"
    printf '    wrote %s\n' "$dest"
}

detect_platform() {
    local model=""
    if [ -r /proc/device-tree/model ]; then
        model="$(tr -d '\0' </proc/device-tree/model)"
    fi
    case "$model" in
        *"Raspberry Pi"*) echo pi; return ;;
        *Jetson*|*NVIDIA*) echo jetson; return ;;
    esac
    if [ -e /etc/nv_tegra_release ]; then
        echo jetson
    fi
}

PLATFORM_GIVEN="$PLATFORM"
if [ -z "$PLATFORM" ]; then
    PLATFORM="$(detect_platform)"
fi
case "$PLATFORM" in
    pi) EXTRA=pi; BACKEND=gpio ;;
    jetson) EXTRA=jetson; BACKEND=jetson ;;
    *)
        if [ -n "$PLATFORM_GIVEN" ]; then
            echo "error: --platform $PLATFORM_GIVEN is not a platform this installs: pass --platform pi" \
                 "(Raspberry Pi) or --platform jetson (Jetson)" >&2
        else
            echo "error: this is neither a Raspberry Pi nor a Jetson (no /proc/device-tree/model match);" \
                 "pass --platform pi or --platform jetson" >&2
        fi
        exit 2 ;;
esac

if [ -n "$WHEEL_IN" ]; then
    case "$WHEEL_IN" in
        *.whl) ;;
        *) echo "error: --wheel $WHEEL_IN is not a wheel (.whl): build one with 'pip wheel --no-deps -w dist .'" >&2; exit 2 ;;
    esac
    if [ ! -f "$WHEEL_IN" ]; then
        echo "error: the wheel $WHEEL_IN does not exist: build one with 'pip wheel --no-deps -w dist .' or leave out --wheel" >&2
        exit 2
    fi
    WHEEL="$WHEEL_DIR/$(basename "$WHEEL_IN")"
else
    VERSION="$(sed -n 's/^[[:space:]]*version="\([^"]*\)",.*/\1/p' "$SRC_DIR/setup.py")"
    if [ -z "$VERSION" ]; then
        echo "error: no version in $SRC_DIR/setup.py: run this from a checkout of engage-edge, or pass --wheel FILE" >&2
        exit 2
    fi
    WHEEL="$WHEEL_DIR/engage_edge-$VERSION-py3-none-any.whl"
    # the build's identity (`engage-edge --version`, /healthz): every build of a release said
    # 0.1.0. Read as root from a technician's checkout: safe.directory for this one, no index write.
    if command -v git >/dev/null 2>&1; then
        BUILD_ID="$(GIT_OPTIONAL_LOCKS=0 git -c safe.directory="$SRC_DIR" -C "$SRC_DIR" describe --always --dirty 2>/dev/null)" \
            || BUILD_ID=""
    fi
fi

if [ "$DRY_RUN" = 0 ] && [ "$(id -u)" != 0 ]; then
    echo "error: provisioning changes system files: run it with sudo (or try --dry-run)" >&2
    exit 2
fi

# Half a certificate (one of the school's files copied in, the other not yet): step 7 would
# replace both with a self-signed pair, so stop before anything is changed.
for there in cert.pem key.pem; do
    other=key.pem
    [ "$there" = key.pem ] && other=cert.pem
    if [ -e "$TLS_DIR/$there" ] && [ ! -e "$TLS_DIR/$other" ]; then
        echo "error: $TLS_DIR/$there is there but not its $other: copy $other in too (firmware/README.md," \
             "\"Your own TLS certificate\"), or remove $there to have a self-signed pair made; nothing was changed" >&2
        exit 2
    fi
done

# What this release's wheels need, checked before anything is changed (a half-provisioned desk
# with a long pip error otherwise): a 64-bit OS, and a Python its pinned wheels exist for.
# Prints why this system cannot take it, or nothing.
unsupported_here() {
    local arch py
    arch="$(dpkg --print-architecture 2>/dev/null || uname -m)"
    case "$arch" in
        armhf|armel|armv7l|armv6l|i386)
            echo "this is a 32-bit system ($arch): engage-edge needs a 64-bit OS (ai-edge-litert has no 32-bit" \
                 "wheel): flash Raspberry Pi OS (64-bit) Bookworm"
            return ;;
    esac
    py="$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" || return 0  # step 1 installs it
    case "$py" in
        3.11|3.12) ;;
        3.13)
            if [ "$arch" = arm64 ] || [ "$arch" = aarch64 ]; then
                echo "python3 is $py (Raspberry Pi OS trixie?): on arm64 this release uses numpy 1.x, which apt's" \
                     "picamera2 needs and which has no wheel for Python $py: flash Raspberry Pi OS (Legacy, 64-bit) Bookworm (a Jetson: an image with Python 3.11 or 3.12)"
            fi ;;
        *)
            echo "python3 is $py: engage-edge needs Python 3.11 to 3.13 (JetPack 6 has 3.10: a Jetson needs an" \
                 "image with Python 3.11 or later; a Raspberry Pi, Raspberry Pi OS (64-bit) Bookworm)" ;;
    esac
}
WHY_NOT="$(unsupported_here)"
if [ -n "$WHY_NOT" ] && [ "$DRY_RUN" = 1 ]; then
    echo "note: a real run would stop here: $WHY_NOT; nothing would be changed"
elif [ -n "$WHY_NOT" ]; then
    echo "error: $WHY_NOT; nothing was changed" >&2
    exit 2
fi

HOST="$(hostname 2>/dev/null || cat /etc/hostname)"
[ "$DRY_RUN" = 1 ] && echo "engage-edge install: DRY RUN - nothing is changed"
echo "engage-edge install: platform $PLATFORM, host $HOST, source $SRC_DIR"

# ------------------------------------------------------------------ 1. packages
step "1/9 Debian packages"
PACKAGES=(python3 python3-venv python3-pip openssl ca-certificates rsync)
if [ "$PLATFORM" = pi ]; then
    # picamera2 and libcamera only come from apt (the venv sees them: --system-site-packages)
    PACKAGES+=(python3-picamera2 python3-libcamera libcamera-ipa rpicam-apps python3-lgpio)
else
    # JetPack ships OpenCV built with GStreamer (apt: nvidia-opencv / python3-opencv) and the
    # nvarguscamerasrc plugin for CSI cameras; pip's opencv-python-headless has no GStreamer,
    # so CSI cameras need camera.source = a GStreamer pipeline and the JetPack OpenCV first
    # on the path. USB cameras work with either (V4L2).
    PACKAGES+=(python3-dev gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good v4l-utils)
fi
missing=()
for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ] && [ "$APT" = 0 ]; then
    note "--no-apt: not installing ${missing[*]} (the camera or the LED may not work without them)"
elif [ "${#missing[@]}" -gt 0 ]; then
    run apt-get update
    run env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
else
    note "all present: ${PACKAGES[*]}"
fi
if [ "$PLATFORM" = jetson ]; then
    note "Jetson: for a CSI camera set camera.source to a pipeline such as"
    note "  nvarguscamerasrc ! video/x-raw(memory:NVMM),width=640,height=480,framerate=15/1 ! nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR ! appsink drop=1"
    note "and check (the venv's OpenCV, which the service uses): $VENV/bin/python -c 'import cv2; print(cv2.getBuildInformation())' | grep GStreamer"
fi

# ------------------------------------------------------------------ 2. user and groups
step "2/9 service user '$SERVICE_USER' (groups video, gpio)"
if ! getent group gpio >/dev/null; then
    run groupadd --system gpio
fi
if id -u "$SERVICE_USER" >/dev/null 2>&1; then
    note "user $SERVICE_USER exists"
else
    run useradd --system --user-group --home-dir "$DATA_DIR" --no-create-home --shell /usr/sbin/nologin "$SERVICE_USER"
fi
run usermod -a -G video,gpio "$SERVICE_USER"

# ------------------------------------------------------------------ 3. udev and boot config
step "3/9 device access: udev rules$( [ "$PLATFORM" = pi ] && echo ', camera boot setting')"
if [ -f "$UDEV_DST" ] && cmp -s "$SRC_DIR/firmware/99-engage-edge.rules" "$UDEV_DST"; then
    note "$UDEV_DST is up to date"
else
    run install -D -m 0644 "$SRC_DIR/firmware/99-engage-edge.rules" "$UDEV_DST"  # -D: an image without rules.d yet
    if [ -S /run/udev/control ]; then
        run udevadm control --reload-rules
        run udevadm trigger --subsystem-match=gpio --subsystem-match=video4linux --subsystem-match=media
    else
        note "udev is not running (a chroot or an image being built): the rules apply at the next boot"
    fi
fi
if [ "$PLATFORM" = pi ]; then
    BOOT_CONFIG=/boot/firmware/config.txt
    [ -f "$BOOT_CONFIG" ] || BOOT_CONFIG=/boot/config.txt
    if [ -f "$BOOT_CONFIG" ] && grep -qF "$BOOT_MARK" "$BOOT_CONFIG"; then
        note "$BOOT_CONFIG already has the engage-edge block"
    elif [ "$DRY_RUN" = 1 ]; then
        printf '[dry-run] append firmware/boot-config.txt to %s (reboot needed)\n' "$BOOT_CONFIG"
    else
        { echo "$BOOT_MARK"; cat "$SRC_DIR/firmware/boot-config.txt"; echo "# --- engage-edge END ---"; } >>"$BOOT_CONFIG"
        note "appended the camera setting to $BOOT_CONFIG: reboot once to apply it"
    fi
fi

# ------------------------------------------------------------------ 4. directories
step "4/9 directories"
run install -d -m 0755 -o root -g root "$PREFIX" "$WHEEL_DIR"
run install -d -m 0750 -o root -g "$SERVICE_USER" "$CONF_DIR" "$TLS_DIR"
run install -d -m 0750 -o "$SERVICE_USER" -g "$SERVICE_USER" "$DATA_DIR" "$DATA_DIR/models"

# ------------------------------------------------------------------ 5. the package
step "5/9 engage-edge wheel into $VENV (extra [$EXTRA])"
# The wheel carries the package with its model, demo photos and web files (package data);
# training/ and the development files stay in the checkout. The venv sees apt's picamera2
# and libcamera (--system-site-packages).
#
# The new package's first start migrates the database, one way: the release installed now
# could not open it again. Keep a copy to go back to (firmware/README.md, "Going back to
# the previous release"), made as the service's user before anything changes: by that
# release, or, when it cannot (its venv no longer starts: apt replaced the Python it was
# built on, and this upgrade is what repairs it), by the system's python3 with SQLite's own
# backup API, the same consistent copy. --no-backup skips it, knowingly.
OLD_VERSION=""
OLD_BROKEN=""  # why the release installed does not start, when it does not
if [ -e "$VENV/bin/engage-edge" ]; then
    if probe="$(timeout 120 "$VENV/bin/engage-edge" --version 2>&1)"; then
        OLD_VERSION="$(printf '%s\n' "$probe" | awk 'NR == 1 {print $2}')"
    else
        OLD_BROKEN="$(printf '%s\n' "$probe" | awk 'NF {line = $0} END {print line}')"  # a traceback's last line
        OLD_BROKEN="\`$VENV/bin/engage-edge --version\` fails: ${OLD_BROKEN:-no message}"
    fi
fi
# The release installed, by name, for the copy's file name and the notes: the one that ran
# says its version; one that cannot start is read from its installed metadata, never run
# (its copy was named -unknown, though the venv still said what it held).
OLD_RELEASE="$OLD_VERSION"
if [ -z "$OLD_RELEASE" ]; then
    for meta in "$VENV"/lib/python3*/site-packages/engage_edge-*.dist-info/METADATA; do
        [ -f "$meta" ] || continue
        # the header's Version line (the headers end at the first blank line), as a file name may hold it
        OLD_RELEASE="$(sed -n '/^$/q; /^Version:/{s/^Version:[[:space:]]*//p;q;}' "$meta" | tr -cd '0-9A-Za-z.+-')" \
            || OLD_RELEASE=""  # unreadable: named -unknown, as before
        # the build, as `engage-edge --version` adds it (edge_app/__init__.py's build_version)
        build="$(dirname "$(dirname "$meta")")/edge_app/BUILD"
        if [ -n "$OLD_RELEASE" ] && [ -f "$build" ]; then
            build="$(head -c 4096 "$build" | tr -d '\n' | tr -cs '0-9A-Za-z.-' '-' | cut -c 1-64)" || build=""
            build="${build#-}"
            build="${build%-}"
            OLD_RELEASE="$OLD_RELEASE${build:++$build}"
        fi
        if [ -n "$OLD_RELEASE" ]; then break; fi
    done
fi
HAD_DATABASE=0  # an upgrade: its admin and password are kept, no first start to look for
if [ -f "$DATA_DIR/engage.db" ]; then HAD_DATABASE=1; fi
if [ -f "$DATA_DIR/engage.db" ] && [ "$BACKUP" = 0 ]; then
    note "--no-backup: $DATA_DIR/engage.db is not backed up; the new release's first start migrates it one way," \
         "so ${OLD_RELEASE:-the release before} cannot open these records again"
elif [ -f "$DATA_DIR/engage.db" ]; then
    UPGRADE_BACKUP="$DATA_DIR/engage-before-upgrade-$(date +%Y%m%d-%H%M%S)-${OLD_RELEASE:-unknown}.db"
    MADE_BY=""
    if [ -n "$OLD_VERSION" ]; then
        if run runuser -u "$SERVICE_USER" -- "$VENV/bin/engage-edge" backup --data-dir "$DATA_DIR" "$UPGRADE_BACKUP"; then
            MADE_BY="engage-edge $OLD_VERSION, the release installed"
        else
            WHY="engage-edge $OLD_VERSION could not write it (its message is above)"
        fi
    elif [ -n "$OLD_BROKEN" ]; then
        WHY="the release installed does not start ($OLD_BROKEN; did apt replace the Python its venv was built on?)"
    else
        WHY="there is no engage-edge in $VENV"
    fi
    if [ -z "$MADE_BY" ]; then
        note "$WHY: backing up with the system's python3 (SQLite's backup API) instead"
        # one consistent snapshot while the service writes, written beside and renamed into place
        if run runuser -u "$SERVICE_USER" -- /usr/bin/python3 - "$DATA_DIR/engage.db" "$UPGRADE_BACKUP" <<'PY'; then
import os, sqlite3, sys
src, dest = sys.argv[1], sys.argv[2]
tmp = dest + ".part"
os.umask(0o077)  # 0600, as the database: every record and the password hashes
try:
    if os.path.lexists(dest):
        raise FileExistsError(f"{dest} exists already")
    db, out = sqlite3.connect(src, timeout=30), sqlite3.connect(tmp)
    try:
        db.backup(out)
        out.execute("PRAGMA journal_mode = DELETE")  # one self-contained file
        check = out.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        out.close()
        db.close()
    if check != "ok":
        raise sqlite3.DatabaseError(f"the copy failed its integrity check: {check}")
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, dest)
except (OSError, sqlite3.Error) as exc:
    if os.path.lexists(tmp):
        os.unlink(tmp)
    sys.exit(f"error: copying {src} to {dest} failed: {exc}")
print(f"    backup written to {dest} (integrity ok)")
PY
            MADE_BY="the system's python3 (SQLite's backup API)"
        else
            echo "error: could not back up $DATA_DIR/engage.db before the upgrade: $WHY, and the system's python3" \
                 "could not either (its message is above); the package was not changed. If it says the disk is" \
                 "full: df -h $DATA_DIR (older engage-before-upgrade-*.db there may go), then run install.sh again." \
                 "To upgrade without a copy, knowing the old release cannot open these records again:" \
                 "install.sh --no-backup" >&2
            exit 1
        fi
    fi
    note "backup made by $MADE_BY: $UPGRADE_BACKUP"
    note "to go back to ${OLD_RELEASE:-the previous release}: restore $UPGRADE_BACKUP (firmware/README.md)"
    # This copy and the one before it, not one per upgrade for ever: each is the whole database
    # (accounts, states, failed log-ins), which neither retention nor deleting a user reaches.
    PREVIOUS=()
    for f in "$DATA_DIR"/engage-before-upgrade-*.db; do
        if [ -e "$f" ] && [ "$f" != "$UPGRADE_BACKUP" ]; then PREVIOUS+=("$f"); fi
    done
    if [ "${#PREVIOUS[@]}" -gt 1 ]; then  # a glob is sorted, and the names by date: the newest last
        for f in "${PREVIOUS[@]:0:${#PREVIOUS[@]}-1}"; do
            run rm -f -- "$f"
        done
    fi
fi
if [ -n "$OLD_BROKEN" ]; then
    note "the venv does not start ($OLD_BROKEN): making it again; its packages are installed anew below"
    run python3 -m venv --clear --system-site-packages "$VENV"
elif [ -x "$VENV/bin/python" ]; then
    note "venv exists: upgrading the package in place"
else
    run python3 -m venv --system-site-packages "$VENV"
fi
# a newer pip when the network allows; an offline upgrade (--wheel, its dependencies met) goes on without
run "$VENV/bin/pip" install --quiet --upgrade pip || note "pip was not upgraded (no network?): going on with the venv's own"
if [ -n "$WHEEL_IN" ]; then
    run install -m 0644 "$WHEEL_IN" "$WHEEL"
else
    # built from a copy of what the wheel needs, so the checkout gets no build/ or egg-info
    BUILD_DIR="$PREFIX/build"
    run rm -rf "$BUILD_DIR"
    run install -d -m 0755 "$BUILD_DIR"
    run rsync -a --exclude '__pycache__' "$SRC_DIR/setup.py" "$SRC_DIR/README.md" "$SRC_DIR/edge_app" "$BUILD_DIR/"
    if [ -n "$BUILD_ID" ]; then
        # read by edge_app/__init__.py: `engage-edge --version` says 0.1.0+<this>
        printf '%s\n' "$BUILD_ID" | write_file "$BUILD_DIR/edge_app/BUILD" 0644 root:root
    else
        note "$SRC_DIR is not a git checkout (or git is missing): this build is known by its release number only"
        run rm -f "$BUILD_DIR/edge_app/BUILD"
    fi
    run "$VENV/bin/pip" wheel --quiet --no-deps --wheel-dir "$WHEEL_DIR" "$BUILD_DIR"
    run rm -rf "$BUILD_DIR"
fi
run "$VENV/bin/pip" install --quiet --upgrade "${WHEEL}[$EXTRA]"
# the same version number may hold new code: reinstall this very wheel (its dependencies stay)
run "$VENV/bin/pip" install --quiet --force-reinstall --no-deps "$WHEEL"
# on sudo's PATH (secure_path has /usr/local/bin), so the commands the program's own messages
# name, `sudo -u engage engage-edge ...`, are found as written
run ln -sfn "$VENV/bin/engage-edge" /usr/local/bin/engage-edge
if [ -d "$PREFIX/src" ]; then
    note "removing $PREFIX/src, the editable copy an older install.sh left"
    run rm -rf "$PREFIX/src"
fi

# ------------------------------------------------------------------ 6. configuration
step "6/9 configuration $CONF"
if [ -f "$CONF" ]; then
    note "kept: $CONF exists (compare with $SRC_DIR/firmware/config.toml.template)"
else
    sed "s/@BACKEND@/$BACKEND/" "$SRC_DIR/firmware/config.toml.template" | write_file "$CONF" 0640 "root:$SERVICE_USER"
fi

# ------------------------------------------------------------------ 7. TLS certificate
step "7/9 TLS certificate for $HOST"
# A self-signed certificate (one install.sh made) whose names are another host's: the host was
# renamed, or the card cloned from another desk, whose key it also carries. One a CA issued
# (the school's: issuer and subject differ) is the school's to replace, and stays.
renamed_self_signed() {
    local subject issuer
    subject="$(openssl x509 -in "$1" -noout -subject -nameopt RFC2253 2>/dev/null)" || return 1
    issuer="$(openssl x509 -in "$1" -noout -issuer -nameopt RFC2253 2>/dev/null)" || return 1
    [ "${subject#subject=}" = "${issuer#issuer=}" ] || return 1
    openssl x509 -in "$1" -noout -checkhost "$HOST" 2>/dev/null | grep -q "does NOT match"
}
MAKE_CERT=1
if [ -f "$TLS_DIR/cert.pem" ] && [ -f "$TLS_DIR/key.pem" ]; then
    if renamed_self_signed "$TLS_DIR/cert.pem"; then
        note "$TLS_DIR/cert.pem is self-signed for another host ($(openssl x509 -in "$TLS_DIR/cert.pem" -noout \
             -subject -nameopt RFC2253 | sed 's/^subject=//')): making a new pair for $HOST"
    else
        note "kept: $TLS_DIR/cert.pem exists (to use your own: firmware/README.md)"
        MAKE_CERT=0
    fi
fi
if [ "$MAKE_CERT" = 1 ]; then
    run openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
        -subj "/CN=$HOST" -addext "subjectAltName=DNS:$HOST,DNS:$HOST.local,DNS:localhost,IP:127.0.0.1" \
        -keyout "$TLS_DIR/key.pem" -out "$TLS_DIR/cert.pem"
    run chown "root:$SERVICE_USER" "$TLS_DIR/key.pem" "$TLS_DIR/cert.pem"
    run chmod 0640 "$TLS_DIR/key.pem"
    run chmod 0644 "$TLS_DIR/cert.pem"
fi

# ------------------------------------------------------------------ 8. systemd unit
step "8/9 systemd unit $UNIT_DST"
run install -m 0644 "$SRC_DIR/systemd/$UNIT" "$UNIT_DST"
run install -m 0644 "$SRC_DIR/systemd/$FAULT_UNIT" "$FAULT_UNIT_DST"  # not enabled: the service's failure starts it
if [ "$PLATFORM" = jetson ]; then
    # nvarguscamerasrc talks to nvargus-daemon through /tmp/argus_socket, and older
    # Jetson.GPIO writes sysfs: loosen exactly those two, and allow the NVIDIA devices.
    run install -d -m 0755 "$UNIT_DST.d"
    write_file "$UNIT_DST.d/10-jetson.conf" 0644 root:root <<'EOF'
# engage-edge on Jetson (written by firmware/install.sh)
[Service]
PrivateTmp=no
ProtectKernelTunables=no
# the Tegra GPU/ISP/video nodes the camera pipeline opens; if the journal shows a device
# denied, add it here with `sudo systemctl edit engage-edge`
DeviceAllow=char-nvhost* rw
# /dev/nvmap is a misc device (major 10): by its path, as no char-nvmap group matches it
DeviceAllow=/dev/nvmap rw
DeviceAllow=char-nvgpu* rw
EOF
    # older Jetson.GPIO drives the LED through sysfs: the fault light too
    run install -d -m 0755 "$FAULT_UNIT_DST.d"
    write_file "$FAULT_UNIT_DST.d/10-jetson.conf" 0644 root:root <<'EOF'
# engage-edge's fault light on Jetson (written by firmware/install.sh)
[Service]
ProtectKernelTunables=no
EOF
fi
if [ -d /run/systemd/system ]; then
    run systemctl daemon-reload
else
    note "systemd is not running (a chroot or an image being built): it reads the unit at boot"
fi

# ------------------------------------------------------------------ 9. enable and start
step "9/9 enable and start the service"
run systemctl enable "$UNIT"
# the kept config, as the new release reads it: a value an older release accepted may be refused
# now, and a restart would leave the desk down (five tries, then the fault light) with only
# systemd's "Job failed"; the running service goes on, over the new release's files, until it is fixed
if [ "$DRY_RUN" = 0 ] && ! runuser -u "$SERVICE_USER" -- "$VENV/bin/python" -m edge_app.config --check "$CONF" >/dev/null; then
    echo "install.sh: this release refuses $CONF (above): edit it (sudo nano $CONF), then check it with" >&2
    echo "  sudo -u $SERVICE_USER $VENV/bin/python -m edge_app.config --check $CONF" >&2
    echo "and start the new release with: sudo systemctl restart $UNIT (the service was not restarted:" >&2
    echo "a running one goes on, but its package files are the new release's already: restart it soon)" >&2
    exit 1
fi
if [ "$START" = 1 ] && [ ! -d /run/systemd/system ]; then
    note "systemd is not running (a chroot or an image being built): the service starts at the device's boot"
elif [ "$START" = 1 ]; then
    # a desk that gave up (five failed starts in 10 minutes: the fault light) refuses any start until
    # then; this run is the fix, so its count is cleared. Then restart, so an upgrade takes effect too
    run systemctl reset-failed "$UNIT" || true  # a unit systemd has not loaded yet has no count to clear
    run systemctl restart "$UNIT"
else
    # restart, not start: on an upgrade a running service ignores start and keeps the old package
    note "--no-start: start it (or, if it runs, make it run the new package) with: sudo systemctl restart $UNIT"
fi

echo
if [ "$DRY_RUN" = 0 ]; then
    echo "installed: $("$VENV/bin/engage-edge" --version)${OLD_RELEASE:+ (was $OLD_RELEASE)}"
    # a desk flashed with a technician's own model keeps it across the upgrade: say so when
    # this release ships another one (the service logs it too, `model list` prints it)
    MODEL_NOTE="$(runuser -u "$SERVICE_USER" -- "$VENV/bin/engage-edge" model list --config "$CONF" 2>/dev/null \
        | sed -n 's/^note: //p')" || true
    if [ -n "$MODEL_NOTE" ]; then
        echo "model: $MODEL_NOTE (as $SERVICE_USER: sudo -u $SERVICE_USER ...)"
    fi
fi
echo "done. Web UI: https://$HOST.local:8443/ (self-signed certificate: accept it once, or install your own)"
if [ "$HAD_DATABASE" = 0 ] || [ -f "$DATA_DIR/first-admin-password.txt" ]; then
    echo "first start: the admin password is in the journal (each start says it until the first log-in):" \
        "journalctl -u engage-edge | grep 'first start'"
else
    echo "accounts kept: log in as before (a lost admin password: sudo -u $SERVICE_USER engage-edge passwd admin)"
fi
# the fault light (engage-edge-fault) holds the LED's pins too: a self-test beside it found them taken
echo "check the hardware: sudo systemctl stop engage-edge $FAULT_UNIT && sudo -u $SERVICE_USER $VENV/bin/engage-edge selftest;" \
     "sudo systemctl start engage-edge"
