#!/bin/sh
# The README's pip command in a fresh venv of Debian's own python3 (whose
# venv setuptools lacks `wheel`), offline; then the installed package,
# imported from outside the source tree, makes a round trip against the
# built library.  Also: an sdist built by the package's backend builds a
# wheel on its own, outside the source tree (its version travels with it).
# Usage: check_pip.sh SRCDIR LIBRARY
set -eu
src=$1
lib=$2
py=/usr/bin/python3
if ! "$py" -c 'import ensurepip, venv' 2>/dev/null; then
    echo "pip: SKIP: $py has no venv/ensurepip (Debian: apt-get install python3-venv)"
    exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$py" -m venv "$tmp/v"
cd "$src"
tree() { git -C "$src" status --porcelain --ignored bindings/python 2>/dev/null | grep -v __pycache__ || true; }
before=$(tree)
"$tmp/v/bin/pip" install -q --no-index --no-build-isolation bindings/python
cd "$tmp"
LOOPSEC_LIBRARY=$lib "$tmp/v/bin/python" "$src/tests/install/py_roundtrip.py"
# pip left nothing behind in the source tree.
if [ "$(tree)" != "$before" ]; then
    tree >&2
    echo "pip: the build wrote into bindings/python" >&2
    exit 1
fi

# sdist -> wheel, away from the source tree.
mkdir "$tmp/sd" "$tmp/wh"
(cd "$src/bindings/python" && "$py" -c 'import sys; sys.path.insert(0, "_backend")
import loopsec_backend as b; print(b.build_sdist(sys.argv[1]))' "$tmp/sd") >"$tmp/sdname"
tar -C "$tmp/sd" -xzf "$tmp/sd/$(cat "$tmp/sdname")"
"$tmp/v/bin/pip" wheel -q --no-index --no-build-isolation -w "$tmp/wh" \
    "$tmp/sd/$(basename "$(cat "$tmp/sdname")" .tar.gz)"
v=$(LOOPSEC_LIBRARY=$lib "$tmp/v/bin/python" -c 'import loopsec; print(loopsec.__version__)')
ls "$tmp/wh/loopsec-$v-py3-none-any.whl" >/dev/null
"$py" - "$tmp/wh/loopsec-$v-py3-none-any.whl" "$v" <<'PY'
import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
ver = tuple(int(x) for x in sys.argv[2].split("."))
assert ("VERSION = %r" % (ver,)) in z.read("loopsec/_version.py").decode(), "version"
assert "Version: %s\n" % sys.argv[2] in z.read("loopsec-%s.dist-info/METADATA" % sys.argv[2]).decode()
PY
echo "pip: ok (venv install, round trip, sdist -> wheel $v)"
