#!/bin/sh
# Install into a temporary prefix, then build a downstream program twice:
# with pkg-config alone, and with CMake's find_package(loopsec).  Both must
# run and print the library version.
set -eu
build=$1
src=$2
cc=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

cmake --install "$build" --prefix "$tmp/prefix" >"$tmp/install.log"
libdir=$(ls -d "$tmp"/prefix/lib*/ | head -n 1)
libdir=${libdir%/}

# 1. pkg-config alone.
PKG_CONFIG_PATH="$libdir/pkgconfig" \
    "$cc" -o "$tmp/with_pc" "$src/consumer.c" \
    $(PKG_CONFIG_PATH="$libdir/pkgconfig" pkg-config --cflags --libs loopsec)
out=$(LD_LIBRARY_PATH="$libdir" "$tmp/with_pc")
echo "pkg-config consumer: $out"
[ "$out" = "loopsec $(PKG_CONFIG_PATH="$libdir/pkgconfig" pkg-config --modversion loopsec) ok" ]

# 2. find_package(loopsec).
cmake -S "$src" -B "$tmp/cm" -DCMAKE_PREFIX_PATH="$tmp/prefix" \
    -DCMAKE_C_COMPILER="$cc" >"$tmp/cm.log"
cmake --build "$tmp/cm" >>"$tmp/cm.log"
out=$(LD_LIBRARY_PATH="$libdir" "$tmp/cm/consumer")
echo "find_package consumer: $out"
case "$out" in "loopsec "*" ok") ;; *) exit 1 ;; esac

# 3. The installed CLI finds the installed library by itself (its runpath),
#    with a clean environment: no LD_LIBRARY_PATH, nothing inherited.
out=$(env -i "$tmp/prefix/bin/loopsec" check 127.0.0.1:1)
echo "installed CLI: $out"
[ "$out" = "127.0.0.1:1" ]
# 4. The manual pages, from the prefix: the CLI's, and the API page under
#    every function's name.
for q in "loopsec" "1 loopsec" "3 loopsec" "3 lsec_connect" "3 lsec_opts_init"; do
    # shellcheck disable=SC2086 # $q is section and name
    page=$(MANPAGER=cat MANWIDTH=80 man -M "$tmp/prefix/share/man" $q 2>&1) ||
        { echo "$page" >&2; echo "install: man -M P/share/man $q failed" >&2; exit 1; }
    case "$q" in
    3\ *) echo "$page" | grep -q "^LOOPSEC(3)" ;;
    *) echo "$page" | grep -q "^LOOPSEC(1)" ;;
    esac || { echo "install: man $q shows the wrong page" >&2; exit 1; }
done
n=$(ls "$tmp/prefix/share/man/man3" | wc -l)
echo "installed man pages: loopsec(1), loopsec(3) and $((n - 1)) links"
echo "install: ok"
