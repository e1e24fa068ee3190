#!/bin/sh
# Prove the README on a bare machine: build a minimal Debian 12 root
# (debootstrap --variant=minbase bookworm, from this machine's configured
# Debian mirror), clone the current commit into it, and run there, in a
# chroot with a clean environment, exactly the README's two commands:
#     sh scripts/demo.sh
#     sh scripts/test.sh
# then the README's Python route (pip into a fresh venv) and the Debian
# packages route (dpkg-buildpackage, then apt-get install ./*.deb into a
# second fresh minimal root, a pkg-config consumer and `import loopsec`).
# Fails if any of them fails.  Needs root; uses the network only for the
# apt mirror.  Only committed work is tested (the root gets a git clone).
#
# The minimal root is cached as a tarball under /var/tmp (override with
# LOOPSEC_BARE_CACHE), so only the first run pays for debootstrap.
#
# Usage: scripts/bare-debian.sh [--keep] [--only-root] [--skip-packages]
#   --keep           leave the work roots under /var/tmp for inspection
#   --only-root      just build (or check) the cached tarball
#   --skip-packages  skip the Debian packages route
set -eu
cd "$(dirname "$0")/.."
src=$(pwd)
keep=0
only_root=0
packages=1
for a in "$@"; do
    case "$a" in
    --keep) keep=1 ;;
    --only-root) only_root=1 ;;
    --skip-packages) packages=0 ;;
    *) echo "usage: scripts/bare-debian.sh [--keep] [--only-root] [--skip-packages]" >&2; exit 2 ;;
    esac
done
if [ "$(id -u)" != 0 ]; then
    echo "bare-debian: needs root (debootstrap, chroot, mount)" >&2
    exit 1
fi

arch=$(dpkg --print-architecture)
cache=${LOOPSEC_BARE_CACHE:-/var/tmp/loopsec-bare-bookworm-$arch.tar.gz}
t0=$(date +%s)
say() { echo "bare-debian: [$(($(date +%s) - t0))s] $*"; }

# The Debian mirror this machine's apt already uses for bookworm: one-line
# sources ("deb URI bookworm main") or deb822 (.sources: URIs:/Suites:).
mirror() {
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -r "$f" ] || continue
        awk '$1 == "deb" { u = ""; for (i = 2; i <= NF; i++) {
                 if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; continue }
                 if (u == "") { u = $i; continue }
                 if ($i == "bookworm") { print u; exit } break } }' "$f"
    done
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -r "$f" ] || continue
        awk 'BEGIN { RS = ""; FS = "\n" }
             { u = ""; s = 0; t = 0
               for (i = 1; i <= NF; i++) {
                 if ($i ~ /^URIs:/) { sub(/^URIs:[ \t]*/, "", $i); split($i, a, /[ \t]+/); u = a[1] }
                 if ($i ~ /^Suites:/ && $i ~ /[ \t]bookworm([ \t]|$)/) s = 1
                 if ($i ~ /^Types:/ && $i ~ /[ \t]deb([ \t]|$)/) t = 1
                 if ($i ~ /^Enabled:[ \t]*no/) t = 0 }
               if (u != "" && s && t) { print u; exit } }' "$f"
    done
}

if [ ! -s "$cache" ]; then
    m=$(mirror | head -n 1)
    if [ -z "$m" ]; then
        echo "bare-debian: no Debian bookworm mirror configured in /etc/apt" >&2
        exit 1
    fi
    if ! command -v debootstrap >/dev/null 2>&1; then
        say "installing debootstrap"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null ||
            { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; }
    fi
    say "debootstrap --variant=minbase bookworm (cached afterwards as $cache)"
    boot=$(mktemp -d /var/tmp/loopsec-debootstrap.XXXXXX)
    if ! debootstrap --variant=minbase bookworm "$boot" "$m" >"$boot.log" 2>&1; then
        tail -n 30 "$boot.log" >&2
        rm -rf "$boot" "$boot.log"
        exit 1
    fi
    rm -f "$boot.log"
    # Cache only a root without downloaded .debs, written atomically.
    rm -f "$boot"/var/cache/apt/archives/*.deb
    # (A private temporary name: two runs may build the cache at once.)
    part=$(mktemp "$cache.XXXXXX")
    tar -C "$boot" -czf "$part" . && chmod 644 "$part" && mv "$part" "$cache"
    rm -rf "$boot"
    say "cached $cache ($(du -h "$cache" | cut -f1))"
fi
if [ "$only_root" = 1 ]; then
    say "root: $cache"
    exit 0
fi

work=$(mktemp -d /var/tmp/loopsec-bare.XXXXXX)
roots=""
cleanup() {
    for r in $roots; do
        for m in dev sys proc; do
            if mountpoint -q "$r/$m"; then
                umount -R "$r/$m" 2>/dev/null || umount -R -l "$r/$m" || true
            fi
        done
    done
    if [ "$keep" = 1 ]; then
        echo "bare-debian: kept $work" >&2
    else
        # Only after every mount is gone: never delete through a mount.
        for r in $roots; do
            for m in dev sys proc; do
                if mountpoint -q "$r/$m"; then
                    echo "bare-debian: $r/$m still mounted; left $work" >&2
                    return
                fi
            done
        done
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# A fresh minimal root from the cached tarball, with /proc, /sys and /dev
# (which brings /dev/pts and /dev/shm): the suite reads /proc and sock_diag
# and uses loopback, which the chroot shares with this machine.  The /dev
# and /sys binds are made slaves so that nothing mounted or unmounted under
# them reaches this machine's own.
new_root() { # dir
    mkdir -p "$1"
    tar -C "$1" -xzf "$cache"
    # The tarball's top directory came from mktemp (0700), and tar restores
    # it: a real root is 0755, and tests that become another uid (uid
    # 65534 writing into a sticky directory, reading /proc as another
    # user) cannot even reach / otherwise.
    chmod 0755 "$1"
    roots="$roots $1"
    # apt inside the root must resolve the mirror's name.
    cp /etc/resolv.conf "$1/etc/resolv.conf"
    mount -t proc proc "$1/proc"
    mount --rbind /sys "$1/sys" && mount --make-rslave "$1/sys"
    mount --rbind /dev "$1/dev" && mount --make-rslave "$1/dev"
}

# Run a shell command in a root with a clean environment.  PATH is the one
# thing passed in: `env -i` leaves it unset, and dpkg (which deps.sh runs
# through apt-get) refuses to work without ldconfig and start-stop-daemon on
# PATH; the value is Debian's default for root.  Nothing else is inherited.
in_root() { # dir command
    chroot "$1" /usr/bin/env -i \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        /bin/sh -ec "$2"
}

rev=$(git rev-parse HEAD)
if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
    echo "bare-debian: note: uncommitted changes are not tested (testing $rev)" >&2
fi

a=$work/root
new_root "$a"
say "fresh minimal root from $cache; cloning $rev into /src/loopsec"
git clone -q --no-checkout "$src" "$a/src/loopsec"
git -C "$a/src/loopsec" checkout -q --detach "$rev"

# 1. The README's two commands, exactly as written, as root in the tree.
say "README: sh scripts/demo.sh"
in_root "$a" 'cd /src/loopsec && sh scripts/demo.sh'
say "README: sh scripts/test.sh"
in_root "$a" 'cd /src/loopsec && sh scripts/test.sh'

# 2. The README's Python route: python3-venv (Debian leaves it out), a
#    fresh venv, the README's pip command, then a round trip through the
#    installed package against the library just built.
say "Python: pip install into a fresh venv"
in_root "$a" 'DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    cd /src/loopsec
    python3 -m venv /tmp/venv
    /tmp/venv/bin/pip install -q --no-index --no-build-isolation bindings/python
    cd /tmp
    LOOPSEC_LIBRARY=/src/loopsec/build/libloopsec.so /tmp/venv/bin/python \
        /src/loopsec/tests/install/py_roundtrip.py'

if [ "$packages" = 1 ]; then
    # 3. The Debian packages: built in the first root with the build
    #    dependencies debian/control names, checked by lintian, then
    #    installed with apt into a second, untouched minimal root, where a
    #    downstream program builds with pkg-config alone and Python imports
    #    the package from the system.
    say "Debian packages: dpkg-buildpackage -us -uc -b"
    in_root "$a" 'export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -qq --no-install-recommends dpkg-dev lintian >/dev/null
        cd /src/loopsec
        apt-get build-dep -y -qq ./ >/dev/null
        dpkg-buildpackage -us -uc -b >/tmp/dpkg-buildpackage.log 2>&1 ||
            { tail -n 60 /tmp/dpkg-buildpackage.log; exit 1; }
        cd /src
        ls -1 ./*.deb
        lintian --fail-on error,warning --info ./*.changes'
    b=$work/root-deb
    new_root "$b"
    mkdir -p "$b/tmp/debs"
    cp "$a"/src/*.deb "$b/tmp/debs/"
    cp "$a/src/loopsec/tests/install/consumer.c" "$a/src/loopsec/tests/install/py_roundtrip.py" "$b/tmp/"
    say "Debian packages: apt-get install ./*.deb into a fresh minimal root"
    in_root "$b" 'export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        cd /tmp/debs
        apt-get install -y -qq ./*.deb gcc pkg-config >/dev/null
        cd /tmp
        cc -o consumer consumer.c $(pkg-config --cflags --libs loopsec)
        ./consumer
        loopsec check 127.0.0.1:1
        python3 -c "import loopsec; print(\"python3-loopsec\", loopsec.__version__)"
        python3 py_roundtrip.py'
fi
say "all passed"
