#!/bin/sh
# fresh-machine.sh — run `make test` the way a new Debian 12 machine would.
#
#   tests/fresh-machine.sh [REPO]        (as root; `make fresh-check` runs it on this tree)
#
# Builds a bookworm chroot with `debootstrap --variant=minbase` plus only make, gcc and git,
# clones the committed HEAD of REPO (default: the tree this script lives in) into it and runs
# `make test` there as CI does (CI=true, no stdin). `make deps` inside must then install every
# package the build, the tests, the demo and the fuzzers need: a package missing from the
# Makefile's DEPS lists shows up here as a failing test. Exits with make's status.
#
# Only committed work is tested (a clean clone); uncommitted changes are reported and ignored.
#
# Environment:
#   FRESH_WORK     where the chroot is built (default /var/tmp/smtp-tls-proxy-fresh); removed
#                  afterwards unless FRESH_KEEP=1
#   FRESH_CACHE    tarball of the base chroot (minbase + make gcc git), made on the first run
#                  and unpacked on later ones, which saves the debootstrap step (a few minutes).
#                  Default /var/cache/smtp-tls-proxy/bookworm-base.tar; FRESH_CACHE= (empty)
#                  disables it; delete the file (or FRESH_REFRESH=1) for a newer base.
#   FRESH_MIRROR   Debian mirror (default: the first bookworm one in /etc/apt/sources.list(.d),
#                  else http://deb.debian.org/debian)
#   FRESH_TIMEOUT  bound on `make test` inside (default 4h: the suite takes about 20 minutes on
#                  an idle 2-core machine, much longer on a busy one)
#   FRESH_TARGET   what to run inside instead of `make test` (e.g. "make demo")
#
# Mounts (proc, sys, a private /dev with pts and shm) live in a private mount namespace when
# unshare(1) can make one, so they vanish with this script whatever happens to it, and are
# unmounted by an exit trap in any case; processes left running inside the chroot are killed
# (by PID) before anything is unmounted or removed.

set -eu

SUITE=bookworm
BASE_PKGS="make gcc git"
WORK=${FRESH_WORK:-/var/tmp/smtp-tls-proxy-fresh}
CACHE=${FRESH_CACHE-/var/cache/smtp-tls-proxy/bookworm-base.tar}
TIMEOUT=${FRESH_TIMEOUT:-4h}
TARGET=${FRESH_TARGET:-make test}
ROOT=$WORK/root

say() { printf 'fresh-machine: %s\n' "$*" >&2; }
die() { say "$*"; exit 2; }

[ "$(id -u)" = 0 ] || die "must run as root (debootstrap, chroot and mount need it); try: sudo $0 $*"

here=$(cd "$(dirname "$0")/.." && pwd)
REPO=$(cd "${1:-$here}" && pwd) || die "no such directory: ${1:-}"
git -C "$REPO" -c safe.directory='*' rev-parse --verify -q HEAD >/dev/null ||
    die "$REPO is not a git work tree with a commit"
COMMIT=$(git -C "$REPO" -c safe.directory='*' rev-parse HEAD)

# A private mount namespace: every mount below disappears with this process even on SIGKILL.
# Re-exec once; where unshare cannot (a container), carry on in this namespace: the trap still
# unmounts.
if [ -z "${FRESH_IN_NS:-}" ] && command -v unshare >/dev/null 2>&1 &&
   unshare -m --propagation private true 2>/dev/null; then
    FRESH_IN_NS=1 exec unshare -m --propagation private sh "$0" "$REPO"
fi

if [ -n "$(git -C "$REPO" -c safe.directory='*' status --porcelain --untracked-files=no)" ]; then
    say "note: $REPO has uncommitted changes; only the commit is tested"
fi
say "testing $REPO at $(git -C "$REPO" -c safe.directory='*' log -1 --format='%h %s' "$COMMIT")"

if ! command -v debootstrap >/dev/null 2>&1; then
    say "installing debootstrap"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -qq --no-install-recommends \
        debootstrap </dev/null
fi

# The first bookworm mirror apt on this host uses (one-line and deb822 formats), so the chroot
# gets the same packages the host would.
find_mirror() {
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -r "$f" ] || continue
        awk -v s="$SUITE" '$1 == "deb" { i = 2; if ($2 ~ /^\[/) while ($i !~ /\]$/) i++;
            if ($2 ~ /^\[/) i++; if ($(i + 1) == s) { print $i; exit } }' "$f"
    done
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -r "$f" ] || continue
        awk -v s="$SUITE" 'BEGIN { RS = ""; FS = "\n" }
            { u = ""; ok = 0; deb = 0
              for (i = 1; i <= NF; i++) {
                if ($i ~ /^URIs:/) { split($i, a, /[ \t]+/); u = a[2] }
                if ($i ~ /^Suites:/) { n = split($i, b, /[ \t]+/); for (j = 2; j <= n; j++) if (b[j] == s) ok = 1 }
                if ($i ~ /^Types:.*(^|[ \t])deb([ \t]|$)/) deb = 1 }
              if (u != "" && ok && deb) { print u; exit } }' "$f"
    done
}
MIRROR=${FRESH_MIRROR:-$(find_mirror | head -n 1)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}

# One run per work directory at a time; the lock goes with this process.
mkdir -p "$(dirname "$WORK")"
exec 9>"$WORK.lock"
flock -n 9 || die "another run is using $WORK (set FRESH_WORK for a second one)"

# ---- cleanup: always, whatever stopped us ----------------------------------------------------

MOUNTS=""           # mounted points, innermost first
cleanup() {
    status=$?
    trap - EXIT INT TERM HUP
    # Anything still running with its root in the chroot was started by this run.
    if [ -d "$ROOT" ]; then
        root_real=$(readlink -f "$ROOT")
        for sig in TERM KILL; do
            found=""
            for p in /proc/[0-9]*; do
                [ "$(readlink "$p/root" 2>/dev/null)" = "$root_real" ] || continue
                kill -s "$sig" "${p#/proc/}" 2>/dev/null && found=1
            done
            if [ -n "$found" ] && [ "$sig" = TERM ]; then sleep 2; fi
        done
    fi
    for m in $MOUNTS; do
        umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || say "could not unmount $m"
    done
    if [ "${FRESH_KEEP:-0}" = 1 ]; then
        say "kept $ROOT (FRESH_KEEP=1)"
    elif [ -d "$WORK" ]; then
        if grep -q " $(readlink -f "$WORK")[/ ]" /proc/self/mountinfo; then
            say "something is still mounted under $WORK: not removing it"
        else
            rm -rf "$WORK"
        fi
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# Long steps run in the background: sh runs a trap only once the foreground command is done,
# and a TERM should stop the run now, not after the suite.
bg() { "$@" & wait $!; }

in_root() {
    chroot "$ROOT" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        HOME=/root LANG=C.UTF-8 TERM=dumb DEBIAN_FRONTEND=noninteractive "$@" </dev/null
}

mnt() { # mnt TARGET mount-args...
    t=$1; shift
    mkdir -p "$t"
    mount "$@" "$t"
    MOUNTS="$t $MOUNTS"
}

mount_all() {
    # The root a mount point of its own, as on a real machine: `ip netns exec` (the gateway
    # suite) remounts / as a slave, which fails on a plain directory.
    mnt "$ROOT" --bind "$ROOT"
    mnt "$ROOT/proc" -t proc proc
    mnt "$ROOT/sys" -t sysfs sysfs
    # A /dev of its own (not a bind of the host's, whose pts and shm would be shared).
    mnt "$ROOT/dev" -t tmpfs -o mode=0755,nosuid tmpfs
    for n in null:1:3 zero:1:5 full:1:7 random:1:8 urandom:1:9 tty:5:0; do
        name=${n%%:*}; mm=${n#*:}
        mknod -m 0666 "$ROOT/dev/$name" c "${mm%%:*}" "${mm#*:}"
    done
    ln -s /proc/self/fd "$ROOT/dev/fd"
    ln -s /proc/self/fd/0 "$ROOT/dev/stdin"
    ln -s /proc/self/fd/1 "$ROOT/dev/stdout"
    ln -s /proc/self/fd/2 "$ROOT/dev/stderr"
    mnt "$ROOT/dev/pts" -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts
    ln -s pts/ptmx "$ROOT/dev/ptmx"
    mnt "$ROOT/dev/shm" -t tmpfs -o mode=1777,nosuid,nodev shm
}

# ---- the base system ---------------------------------------------------------------------------

rm -rf "$WORK"
mkdir -p "$ROOT"
fresh_base=0
if [ -n "$CACHE" ] && [ -s "$CACHE" ] && [ "${FRESH_REFRESH:-0}" != 1 ]; then
    say "unpacking the cached base $CACHE"
    tar -C "$ROOT" -xpf "$CACHE"
else
    say "debootstrap --variant=minbase $SUITE from $MIRROR (a few minutes)"
    bg timeout 1800 debootstrap --variant=minbase "$SUITE" "$ROOT" "$MIRROR" \
        >"$WORK/debootstrap.log" 2>&1 ||
        { tail -n 30 "$WORK/debootstrap.log" >&2; die "debootstrap failed"; }
    fresh_base=1
fi
mount_all
cp /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true

if [ "$fresh_base" = 1 ]; then
    # What a freshly installed machine has: the updates suites next to the release.
    sec=$(grep -rhE '^[^#]*https?://[^ ]*debian-security' /etc/apt/sources.list \
          /etc/apt/sources.list.d/ 2>/dev/null | grep -oE 'https?://[^ ]*debian-security[^ ]*' |
          head -n 1 || true)
    {
        echo "deb $MIRROR $SUITE main"
        echo "deb $MIRROR $SUITE-updates main"
        [ -z "$sec" ] || echo "deb $sec $SUITE-security main"
    } >"$ROOT/etc/apt/sources.list"
    say "installing $BASE_PKGS"
    { bg in_root timeout 600 apt-get update -qq &&
      bg in_root timeout 1200 apt-get install -y -qq --no-install-recommends $BASE_PKGS; } \
        >"$WORK/base.log" 2>&1 ||
        { tail -n 30 "$WORK/base.log" >&2; die "installing $BASE_PKGS failed"; }
    in_root apt-get clean
    if [ -n "$CACHE" ]; then
        # --one-file-system: not what is mounted on proc, sys and dev.
        mkdir -p "$(dirname "$CACHE")"
        tar -C "$ROOT" --one-file-system -cpf "$CACHE.tmp" . && mv "$CACHE.tmp" "$CACHE"
        say "cached the base as $CACHE"
    fi
fi

# A new machine has these; debootstrap leaves them to the installer.
[ -s "$ROOT/etc/hostname" ] || echo fresh-bookworm >"$ROOT/etc/hostname"
grep -qs localhost "$ROOT/etc/hosts" ||
    printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >"$ROOT/etc/hosts"
# Daemons that packages start from their maintainer scripts would run on the host's network:
# the chroot (like a container) forbids it.
printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
chmod 0755 "$ROOT/usr/sbin/policy-rc.d"

# ---- the repository and the run ----------------------------------------------------------------

git -c safe.directory='*' clone -q --no-checkout --no-hardlinks "$REPO" "$ROOT/root/smtp-tls-proxy"
git -C "$ROOT/root/smtp-tls-proxy" -c advice.detachedHead=false checkout -q "$COMMIT"

say "running '$TARGET' inside (bounded by $TIMEOUT)"
started=$(date +%s)
set +e
bg in_root timeout -k 60 "$TIMEOUT" env CI=true sh -c "cd /root/smtp-tls-proxy && $TARGET" 2>&1
rc=$?
set -e
say "'$TARGET' exited $rc after $(( ($(date +%s) - started) / 60 )) min (commit $COMMIT)"
exit "$rc"
