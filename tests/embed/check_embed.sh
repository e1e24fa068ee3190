#!/bin/sh
# loopsec embedded in a parent project with add_subdirectory(), with cmocka
# hidden from pkg-config: it configures, builds, leaves loopsec's tests,
# examples and benchmark out, forces no build type into the cache, and the
# parent's program runs.
set -eu
src=$1
cc=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# pkg-config sees every module of the system except cmocka.
mkdir "$tmp/pc"
for d in $(pkg-config --variable pc_path pkg-config | tr : ' '); do
    [ -d "$d" ] || continue
    for f in "$d"/*.pc; do
        [ -e "$f" ] || continue
        case "$(basename "$f")" in cmocka.pc) continue ;; esac
        [ -e "$tmp/pc/$(basename "$f")" ] || ln -s "$f" "$tmp/pc/"
    done
done
if PKG_CONFIG_LIBDIR="$tmp/pc" pkg-config --exists cmocka; then
    echo "embed: could not hide cmocka" >&2
    exit 1
fi

PKG_CONFIG_LIBDIR="$tmp/pc" cmake -S "$src/tests/embed" -B "$tmp/b" \
    -DLOOPSEC_SOURCE_DIR="$src" -DCMAKE_C_COMPILER="$cc" >"$tmp/cfg.log" 2>&1 ||
    { cat "$tmp/cfg.log"; echo "embed: configure failed" >&2; exit 1; }
cmake --build "$tmp/b" -j 2 >"$tmp/build.log" 2>&1 ||
    { cat "$tmp/build.log"; echo "embed: build failed" >&2; exit 1; }
"$tmp/b/consumer"

# Only the parent's own test is registered; no loopsec test program, example
# or benchmark was built.
n=$(cd "$tmp/b" && ctest -N | sed -n 's/^Total Tests: //p')
[ "$n" = 1 ] || { echo "embed: $n tests registered, want the parent's 1" >&2; exit 1; }
for t in test_addr debug_parent loopsec_bench; do
    if find "$tmp/b" -name "$t" -type f | grep -q .; then
        echo "embed: $t was built" >&2
        exit 1
    fi
done
# The parent gave no build type, and loopsec forced none into the cache.
bt=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$tmp/b/CMakeCache.txt")
[ -z "$bt" ] || { echo "embed: CMAKE_BUILD_TYPE forced to '$bt'" >&2; exit 1; }
# The library still builds in the parent, with the SONAME of its ABI.
ls "$tmp"/b/loopsec/libloopsec.so.* >/dev/null

# loopsec's own top-level build defaults to RelWithDebInfo, but not in the
# cache either, so that a later -DCMAKE_BUILD_TYPE=... is never overridden.
cmake -S "$src" -B "$tmp/top" -DCMAKE_C_COMPILER="$cc" -DLOOPSEC_TESTS=OFF \
    -DLOOPSEC_EXAMPLES=OFF -DLOOPSEC_BENCH=OFF >"$tmp/top.log" 2>&1 ||
    { cat "$tmp/top.log"; exit 1; }
bt=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$tmp/top/CMakeCache.txt")
[ -z "$bt" ] || { echo "embed: top-level CMAKE_BUILD_TYPE cached as '$bt'" >&2; exit 1; }
echo "embed: ok"
