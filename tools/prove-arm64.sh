#!/usr/bin/env bash
# Prove the install on arm64, the Raspberry Pi OS base: build a Debian bookworm arm64 root
# (debootstrap, run under qemu-user-static), provision it with this checkout's
# firmware/install.sh (--platform pi --no-start --no-apt: nothing is started), then run
# `engage-edge --version`, `engage-edge selftest --source demo` (which includes the model's
# golden check) and `engage-edge analyze` on a face photo inside it, and print the versions
# pip resolved and the time of every step. A developer tool, not part of `make test`.
#
#   sudo tools/prove-arm64.sh [--keep] [--cpu cortex-a72|cortex-a76] [--root DIR] [--mirror URL]
#                             [--photo FILE] [--pin 'PACKAGE<VERSION' ...] [--report FILE]
#
# qemu emulates the Pi's own CPU: --cpu cortex-a72 (Pi 4, the default) or cortex-a76
# (Pi 5). Not qemu's default "max" CPU: its SVE/i8mm make LiteRT pick kernels no Pi has,
# and under qemu 7.2 those compute wrong answers.
# --keep reuses the root of an earlier run (install.sh then upgrades in place: fast);
# without it the root is deleted and built from scratch. --pin constrains what pip may
# resolve inside the root (a pip constraint, repeatable), to try another version.
# Host needs (Debian packages): debootstrap qemu-user-static binfmt-support. Exit status:
# 0 every step passed, 1 a step failed (the summary says which), 2 bad usage or a missing
# host tool.
set -euo pipefail

SRC_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK=/var/tmp/engage-arm64
ROOT="$WORK/root"
MIRROR=""
PHOTO=""
REPORT=""
KEEP=0
PINS=()
CPU=cortex-a72
SUITE=bookworm
# What Raspberry Pi OS Lite has and install.sh relies on: its Debian-side packages, and
# systemd/udev for its unit and udev steps (in a chroot systemctl and udevadm do nothing).
BASE_PACKAGES=(python3 python3-venv python3-pip openssl ca-certificates rsync systemd udev)
VENV=/opt/engage-edge/venv
CHROOT_SRC=/root/engage-edge-src
CHROOT_PINS=/root/engage-edge-pins.txt
BASE_MARK=.engage-arm64-base-ok

usage() {
    sed -n '2,/^[^#]/{/^#/p}' "$0" | sed 's/^# \{0,1\}//'
}

while [ $# -gt 0 ]; do
    case "$1" in
        --keep) KEEP=1 ;;
        --root) ROOT="${2:?--root needs a directory}"; shift ;;
        --mirror) MIRROR="${2:?--mirror needs a URL}"; shift ;;
        --photo) PHOTO="${2:?--photo needs an image file}"; shift ;;
        --report) REPORT="${2:?--report needs a file}"; shift ;;
        --cpu) CPU="${2:?--cpu needs a qemu CPU name such as cortex-a76}"; shift ;;
        --pin) PINS+=("${2:?--pin needs a requirement such as 'ai-edge-litert<2'}"); shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "error: unknown option $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done
# The folder itself, not its spelling: `/usr/`, `/opt/engage-edge/..` or a link to /usr
# passed the system-folder guard below and were then deleted by build_root.
ROOT="$(realpath -m -- "$ROOT")"
REPORT="${REPORT:-$(dirname "$ROOT")/report.md}"
STATE="$(dirname "$ROOT")/last-run"

die() { echo "error: $*" >&2; exit 2; }

[ "$(id -u)" = 0 ] || die "building a root and chrooting need root: run it with sudo"
# /bin, /lib and /sbin resolve to their /usr folders on a merged-/usr host.
HOMES=("$(realpath -m -- "${HOME:-/}")")
[ -z "${SUDO_USER:-}" ] || HOMES+=("$(realpath -m -- "$(getent passwd "$SUDO_USER" | cut -d: -f6)/")")
case "$ROOT" in
    /|/bin|/boot|/dev|/etc|/home|/lib*|/opt|/proc|/root|/run|/sbin|/srv|/sys|/tmp|/usr|/usr/bin|/usr/lib*|/usr/local|/usr/sbin|/var|/var/tmp)
        die "--root $ROOT is a system directory: choose a folder of its own" ;;
esac
for home in "${HOMES[@]}"; do
    [ "$ROOT" != "$home" ] || die "--root $ROOT is a home directory: choose a folder of its own"
done
for tool in debootstrap chroot findmnt update-binfmts; do
    command -v "$tool" >/dev/null || die "$tool is missing: apt-get install debootstrap qemu-user-static binfmt-support"
done
[ -z "$PHOTO" ] || [ -r "$PHOTO" ] || die "--photo $PHOTO is not a readable file"

# The mirror the host's apt uses (deb822 or one-line sources), else Debian's CDN.
host_mirror() {
    local url
    url="$(grep -hoE '^(URIs:|deb)( +\[[^]]*\])? +https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
        | grep -oE 'https?://[^ ]+' | head -n 1 || true)"
    echo "${url:-http://deb.debian.org/debian}"
}
MIRROR="${MIRROR:-$(host_mirror)}"

# ------------------------------------------------------------------ steps and their times
STEP_NAMES=()
STEP_RESULTS=()
STEP_TIMES=()
T_START=$(date +%s)

# Run a step (in a subshell, so `set -e` holds inside it), record PASS/FAIL and its
# seconds; the first failing setup step stops the run. Steps leave facts in $STATE.
step() {
    local name="$1" kind="$2" t0 rc
    shift 2
    printf '\n==> %s\n' "$name"
    t0=$(date +%s)
    set +e
    (set -e; "$@")
    rc=$?
    set -e
    STEP_NAMES+=("$name")
    STEP_TIMES+=("$(( $(date +%s) - t0 ))")
    if [ "$rc" = 0 ]; then STEP_RESULTS+=(PASS); else STEP_RESULTS+=("FAIL (exit $rc)"); fi
    if [ "$rc" != 0 ] && [ "$kind" = setup ]; then
        summary
        exit 1
    fi
    return 0
}

# ------------------------------------------------------------------ mounts
mounted_under() {
    findmnt -rn -o TARGET | awk -v root="$ROOT" 'index($0, root "/") == 1' | sort -r
}

unmount_all() {
    local target
    while read -r target; do
        [ -n "$target" ] && umount -l "$target"
    done < <(mounted_under)
}
trap unmount_all EXIT

mount_all() {
    mountpoint -q "$ROOT/proc" || mount -t proc proc "$ROOT/proc"
    mountpoint -q "$ROOT/sys" || mount -t sysfs sysfs "$ROOT/sys"
    mountpoint -q "$ROOT/dev" || mount --bind /dev "$ROOT/dev"
    mountpoint -q "$ROOT/dev/pts" || mount --bind /dev/pts "$ROOT/dev/pts"
}

# Run a command inside the root with a clean environment: the host's proxy and package
# index settings pass (its pip config files do not: they name host folders).
in_root() {
    local pass=() var
    for var in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_TRUSTED_HOST PIP_DEFAULT_TIMEOUT; do
        [ -n "${!var:-}" ] && pass+=("$var=${!var}")
    done
    [ "${#PINS[@]}" = 0 ] || pass+=("PIP_CONSTRAINT=$CHROOT_PINS")
    QEMU_CPU="$CPU" chroot "$ROOT" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive QEMU_CPU="$CPU" "${pass[@]}" "$@"
}

# As the service user, the way a technician runs the self-test on a device. There is no
# GPIO chip in a chroot: gpiozero's own mock pins stand in for the LED and buzzer.
as_engage() {
    in_root runuser -u engage -- /usr/bin/env GPIOZERO_PIN_FACTORY=mock GPIOZERO_MOCK_PIN_CLASS=mockpwmpin "$@"
}

# ------------------------------------------------------------------ setup steps
enable_qemu() {
    if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
    fi
    [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || update-binfmts --enable qemu-aarch64
    grep -qx enabled /proc/sys/fs/binfmt_misc/qemu-aarch64 \
        || { echo "qemu-aarch64 binfmt handler is not enabled: apt-get install qemu-user-static binfmt-support" >&2; return 1; }
    echo "    qemu-aarch64: $(sed -n 's/^interpreter //p' /proc/sys/fs/binfmt_misc/qemu-aarch64)"
}

build_root() {
    if [ "$KEEP" = 1 ] && [ -e "$ROOT/$BASE_MARK" ]; then
        echo "    --keep: reusing $ROOT (built $(cat "$ROOT/$BASE_MARK"))"
        return 0
    fi
    unmount_all
    if [ -n "$(mounted_under)" ]; then
        echo "something is still mounted under $ROOT: unmount it first" >&2
        return 1
    fi
    rm -rf --one-file-system "$ROOT"
    mkdir -p "$ROOT"
    echo "    debootstrap $SUITE arm64 from $MIRROR into $ROOT"
    debootstrap --arch=arm64 --variant=minbase "$SUITE" "$ROOT" "$MIRROR" >"$(dirname "$ROOT")/debootstrap.log" 2>&1 \
        || { tail -n 20 "$(dirname "$ROOT")/debootstrap.log" >&2; return 1; }
    date -u +%Y-%m-%dT%H:%MZ >"$ROOT/$BASE_MARK"
}

prepare_root() {
    mount_all
    cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
    [ "$(in_root uname -m)" = aarch64 ] || { echo "the root does not run as aarch64" >&2; return 1; }
    in_root /bin/true || { echo "qemu does not know the CPU $CPU (qemu-aarch64-static -cpu help)" >&2; return 1; }
    local pkg missing=()
    for pkg in "${BASE_PACKAGES[@]}"; do
        # shellcheck disable=SC2016  # ${Status} is dpkg-query's format, not the shell's
        in_root dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    if [ "${#missing[@]}" = 0 ]; then
        echo "    all present"
    else
        in_root apt-get update -q
        in_root apt-get install -y -q --no-install-recommends "${missing[@]}"
    fi
    # a host behind a TLS-inspecting proxy trusts its CA from here; the root must too
    local crt new_ca=0
    for crt in /usr/local/share/ca-certificates/*.crt; do
        [ -e "$crt" ] || continue
        mkdir -p "$ROOT/usr/local/share/ca-certificates"
        cmp -s "$crt" "$ROOT$crt" || { cp "$crt" "$ROOT$crt"; new_ca=1; }
        [ -e "$ROOT/etc/ssl/certs/$(basename "$crt" .crt).pem" ] || new_ca=1
    done
    [ "$new_ca" = 0 ] || in_root update-ca-certificates
}

# The checkout as git sees it (tracked and new files, not ignored ones) into the root.
copy_source() {
    rm -rf --one-file-system "$ROOT$CHROOT_SRC"
    mkdir -p "$ROOT$CHROOT_SRC"
    (cd "$SRC_DIR" && git ls-files -z --cached --others --exclude-standard \
        | tar --null --verbatim-files-from --ignore-failed-read -T - -cf -) | tar -xf - -C "$ROOT$CHROOT_SRC"
    echo "    $SRC_DIR at $(git -C "$SRC_DIR" describe --always --dirty 2>/dev/null || echo '?') -> $CHROOT_SRC"
}

run_install() {
    rm -f "$ROOT$CHROOT_PINS"
    if [ "${#PINS[@]}" -gt 0 ]; then
        printf '%s\n' "${PINS[@]}" >"$ROOT$CHROOT_PINS"
        echo "    pip constraints: ${PINS[*]}"
    fi
    in_root bash "$CHROOT_SRC/firmware/install.sh" --platform pi --no-start --no-apt
}

# ------------------------------------------------------------------ checks
check_version() {
    as_engage "$VENV/bin/engage-edge" --version
}

check_selftest() {
    local out rc=0
    out="$(as_engage "$VENV/bin/engage-edge" selftest --source demo --no-buzzer --step 0.05 2>&1)" || rc=$?
    printf '%s\n' "$out"
    printf '%s\n' "$out" | sed -n 's/^\(PASS\|FAIL\) model: //p' >"$STATE/golden"
    return "$rc"
}

check_analyze() {
    local photo=/tmp/arm64-face.jpg out
    if [ -n "$PHOTO" ]; then
        install -m 0644 "$PHOTO" "$ROOT$photo"
    else  # the demo's portrait, from the installed package
        as_engage "$VENV/bin/python" -c "import cv2; from edge_app.vision import demo; assert cv2.imwrite('$photo', demo.grace_hopper())"
    fi
    as_engage "$VENV/bin/engage-edge" analyze "$photo"
    as_engage "$VENV/bin/engage-edge" analyze --json "$photo" >"$ROOT/tmp/arm64-analyze.json"
    in_root python3 -c "$FACES_PY" /tmp/arm64-analyze.json | tee "$STATE/analyze"
}

# One line per face from `analyze --json`; fails when there is none.
FACES_PY='
import json, sys
faces = json.load(open(sys.argv[1])).get("faces") or sys.exit("no face found in the photo")
print("; ".join("{} {:.0%} -> {}".format(f["emotion"], f["confidence"], f["engagement"]) for f in faces))'


show_versions() {
    local versions
    versions="$(in_root sh -c ". /etc/os-release; echo \"\$PRETTY_NAME, \$(uname -m) (qemu $CPU), \$($VENV/bin/python --version)\"")"
    versions+=$'\n'"$(in_root "$VENV/bin/python" -m pip list --format=freeze 2>/dev/null \
        | grep -iE '^(numpy|opencv-python-headless|ai-edge-litert|pillow|gpiozero|lgpio|bottle|cheroot|engage-edge)==')"
    printf '%s\n' "$versions" | tee "$STATE/versions"
}

# ------------------------------------------------------------------ summary
summary() {
    local i total failed=0
    total=$(( $(date +%s) - T_START ))
    for i in "${!STEP_RESULTS[@]}"; do
        [ "${STEP_RESULTS[$i]}" = PASS ] || failed=1
    done
    {
        echo "## arm64 proof: $(date -u +%Y-%m-%dT%H:%MZ), $(git -C "$SRC_DIR" describe --always --dirty 2>/dev/null || echo '?')$([ "$KEEP" = 1 ] && echo ', --keep')$([ "${#PINS[@]}" = 0 ] || echo ", --pin ${PINS[*]}")"
        echo
        echo "| step | result | seconds |"
        echo "|---|---|---|"
        for i in "${!STEP_NAMES[@]}"; do
            echo "| ${STEP_NAMES[$i]} | ${STEP_RESULTS[$i]} | ${STEP_TIMES[$i]} |"
        done
        echo "| **total** | $([ "$failed" = 0 ] && echo PASS || echo FAIL) | $total |"
        echo
        [ ! -s "$STATE/golden" ] || echo "golden check: $(cat "$STATE/golden")"
        [ ! -s "$STATE/analyze" ] || echo "analyze: $(cat "$STATE/analyze")"
        if [ -s "$STATE/versions" ]; then
            echo
            sed 's/^/    /' "$STATE/versions"
        fi
    } | tee "$REPORT"
    echo "(written to $REPORT)"
    return "$failed"
}

echo "engage-edge arm64 proof: $SRC_DIR -> $ROOT ($SUITE, mirror $MIRROR)"
rm -rf "$STATE"
mkdir -p "$STATE"
step "qemu-aarch64 registered" setup enable_qemu
step "debootstrap $SUITE arm64" setup build_root
step "base packages ${BASE_PACKAGES[*]}" setup prepare_root
step "copy the checkout" setup copy_source
step "firmware/install.sh --platform pi --no-start --no-apt" setup run_install
step "engage-edge --version" check check_version
step "engage-edge selftest --source demo" check check_selftest
step "engage-edge analyze <photo>" check check_analyze
step "versions" check show_versions
echo
summary
