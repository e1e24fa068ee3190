#!/bin/sh
# The version is written once, in include/loopsec.h; everything else derives
# it and must agree: the library's SONAME and the CMake package's
# compatibility (the ABI policy: while the major version is 0 each minor is a
# break), the Python package, debian/changelog and the Debian library
# package's name.
# Usage: check_version.sh SRCDIR LIBRARY CONFIGVERSIONFILE [python|no-python]
set -eu
src=$1
lib=$2
cfgver=$3
python=${4:-python}
h=$src/include/loopsec.h
part() { sed -n "s/^#define LSEC_VERSION_$1 \([0-9][0-9]*\)\$/\1/p" "$h"; }
maj=$(part MAJOR)
min=$(part MINOR)
pat=$(part PATCH)
v=$maj.$min.$pat
fail() { echo "version: $*" >&2; exit 1; }
[ -n "$maj" ] && [ -n "$min" ] && [ -n "$pat" ] || fail "no LSEC_VERSION_* in $h"
str=$(sed -n 's/^#define LSEC_VERSION_STRING "\(.*\)"$/\1/p' "$h")
[ "$str" = "$v" ] || fail "LSEC_VERSION_STRING $str is not $v"
if [ "$maj" = 0 ]; then so=$maj.$min; else so=$maj; fi

soname=$(objdump -p "$lib" | awk '$1 == "SONAME" { print $2 }')
[ "$soname" = "libloopsec.so.$so" ] || fail "SONAME $soname, want libloopsec.so.$so"

# The CMake package accepts the same major.minor (or, from 1.0, the same
# major and an older minor) and nothing else.
compat() { # requested version -> TRUE/FALSE
    printf 'set(PACKAGE_FIND_VERSION %s)\nstring(REPLACE . ";" _v %s)\nlist(GET _v 0 PACKAGE_FIND_VERSION_MAJOR)\nlist(GET _v 1 PACKAGE_FIND_VERSION_MINOR)\nset(PACKAGE_FIND_VERSION_PATCH 0)\ninclude(%s)\nmessage("${PACKAGE_VERSION_COMPATIBLE}")\n' \
        "$1" "$1" "$cfgver" >"${TMPDIR:-/tmp}/lsec-compat.$$.cmake"
    cmake -P "${TMPDIR:-/tmp}/lsec-compat.$$.cmake" 2>&1
    rm -f "${TMPDIR:-/tmp}/lsec-compat.$$.cmake"
}
[ "$(compat "$maj.$min")" = TRUE ] || fail "find_package(loopsec $maj.$min) refused"
[ "$(compat "$maj.$((min + 1))")" = FALSE ] || fail "find_package(loopsec $maj.$((min + 1))) accepted"
if [ "$maj" = 0 ] && [ "$min" -gt 0 ]; then
    [ "$(compat "0.$((min - 1))")" = FALSE ] || fail "find_package(loopsec 0.$((min - 1))) accepted: 0.x minors are ABI breaks"
fi
[ "$(compat "$((maj + 1)).0")" = FALSE ] || fail "find_package(loopsec $((maj + 1)).0) accepted"

# The Python package: its version and the SONAME it looks for (not with a
# sanitizer build, which python3 cannot load; the plain build checks it).
[ "$python" = no-python ] || py=$(LOOPSEC_LIBRARY=$lib PYTHONPATH=$src/bindings/python python3 -c \
    'import loopsec; from loopsec import _lib; print(loopsec.__version__, _lib.soversion())')
[ "$python" = no-python ] || [ "$py" = "$v $so" ] || fail "Python package says '$py', want '$v $so'"

# Debian: the changelog's upstream version, and the library package named
# after the SONAME (Debian policy 8.1).
dv=$(sed -n '1s/^loopsec (\([^)]*\)).*/\1/p' "$src/debian/changelog")
[ "${dv%-*}" = "$v" ] || fail "debian/changelog has $dv, want $v-N"
grep -q "^Package: libloopsec$so\$" "$src/debian/control" ||
    fail "debian/control has no package libloopsec$so"
echo "version: $v, SONAME libloopsec.so.$so, CMake, Python and Debian agree"
