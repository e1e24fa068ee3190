"""Loading libloopsec: where it is found, whether it is the version this
package needs, and binding the pinned signatures (_ffi.py) to it.  Once
loaded, the error table is handed to _errors.py, which imports nothing of
the package.

Nothing outside _ffi.py declares ctypes signatures: the rest of the package
calls ``LIB.<name>(...)`` with the types declared there.
"""

import ctypes
import ctypes.util
import glob
import os

from . import _errors
from ._ffi import REQUIRED, SIGNATURES, UNCHECKED, Opts
from ._ffi import EXPECTED_VERSION, VERSION  # noqa: F401 (re-exported)


class LibraryNotFoundError(ImportError):
    """libloopsec could not be found or loaded."""


class LibraryVersionError(ImportError):
    """The libloopsec that was found is not the version this package needs."""


class _Missing:
    """Stands in for a function the loaded library does not export."""

    def __init__(self, name):
        self.__name__ = name

    def __call__(self, *args):
        raise _errors.make_error(
            _errors.code_of("ENOSYS"),
            "%s is not in the loaded libloopsec" % self.__name__)


class Lib:
    """The loaded library: one attribute per pinned function."""

    def __init__(self, cdll, path):
        self.path = path
        self.missing = set()
        self.unchecked = {}
        for name, (restype, argtypes) in SIGNATURES.items():
            try:
                fn = getattr(cdll, name)
            except AttributeError:
                self.missing.add(name)
                setattr(self, name, _Missing(name))
                continue
            fn.restype = restype
            fn.argtypes = argtypes
            setattr(self, name, fn)
        for name in UNCHECKED:
            # cdll[name] is a function object of its own (getattr's is
            # cached and keeps its argtypes); absent: the checked stub.
            if name in self.missing:
                self.unchecked[name] = getattr(self, name)
            else:
                fn = cdll[name]
                fn.restype = SIGNATURES[name][0]
                self.unchecked[name] = fn
        self._cdll = cdll

    def has(self, name):
        return name not in self.missing


# ---------------------------------------------------------------------------
# Lookup.


def _is_instrumented_build(build_dir):
    """A sanitizer or fuzzing build cannot be loaded into an uninstrumented
    python (the ASan runtime must come first and aborts otherwise)."""
    try:
        with open(os.path.join(build_dir, "CMakeCache.txt"), "r",
                  encoding="utf-8", errors="replace") as f:
            cache = f.read()
    except OSError:
        return False
    return ("LOOPSEC_SANITIZE:BOOL=ON" in cache
            or "LOOPSEC_FUZZ:BOOL=ON" in cache)


def _build_tree_candidates():
    """libloopsec.so* in build*/ of the source tree this package sits in.

    The source tree is the nearest ancestor holding include/loopsec.h, so an
    installed package never wanders into unrelated build directories.
    """
    here = os.path.dirname(os.path.abspath(__file__))
    root = None
    d = here
    while True:
        if os.path.isfile(os.path.join(d, "include", "loopsec.h")):
            root = d
            break
        parent = os.path.dirname(d)
        if parent == d:
            return []
        d = parent
    dirs = [p for p in glob.glob(os.path.join(root, "build*"))
            if os.path.isdir(p) and not _is_instrumented_build(p)]
    # "build" itself first, then the most recently built.
    dirs.sort(key=lambda p: (os.path.basename(p) != "build",
                             -os.path.getmtime(p)))
    found = []
    for b in dirs:
        for name in ("libloopsec.so", "libloopsec.so.%s" % soversion()):
            p = os.path.join(b, name)
            if os.path.isfile(p):
                found.append(p)
                break
    return found


def soversion():
    """The SONAME suffix of the library this package needs: "0.MINOR" while
    the major version is 0, else "MAJOR" (CMakeLists.txt computes the same)."""
    major, minor = EXPECTED_VERSION
    return "%d.%d" % (major, minor) if major == 0 else "%d" % major


def _candidates():
    env = os.environ.get("LOOPSEC_LIBRARY")
    if env:
        # An explicit choice is the only one tried: falling back silently to
        # another library would hide the mistake.
        return [("LOOPSEC_LIBRARY", env)]
    out = [("build tree", p) for p in _build_tree_candidates()]
    # The system: first the exact SONAME of the ABI this package needs (a
    # Debian libloopsec package installs only that), then whatever the
    # linker cache calls libloopsec (its version is checked on loading).
    out.append(("system", "libloopsec.so.%s" % soversion()))
    sys_name = ctypes.util.find_library("loopsec")
    if sys_name and sys_name != out[-1][1]:
        out.append(("system", sys_name))
    return out


def _check_version(cdll, path):
    try:
        fn = cdll.lsec_version_number
    except AttributeError:
        raise LibraryVersionError(
            "%s is not libloopsec (no lsec_version_number)" % path) from None
    fn.restype = ctypes.c_int
    fn.argtypes = []
    n = fn()
    major, minor = n // 10000, (n // 100) % 100
    want_major, want_minor = EXPECTED_VERSION
    ok = major == want_major and (
        minor == want_minor if major == 0 else minor >= want_minor)
    if not ok:
        raise LibraryVersionError(
            "%s is libloopsec %d.%d.%d; this loopsec package needs %d.%d%s"
            % (path, major, minor, n % 100, want_major, want_minor,
               "" if want_major == 0 else " or a newer %d.x" % want_major))


def load():
    """Find, load and check libloopsec.  Raises an ImportError subclass."""
    tried = []
    for origin, path in _candidates():
        try:
            cdll = ctypes.CDLL(path)
        except OSError as e:
            tried.append("%s (%s): %s" % (path, origin, e))
            continue
        _check_version(cdll, path)
        lib = Lib(cdll, path)
        absent = [n for n in REQUIRED if not lib.has(n)]
        if absent:
            raise LibraryVersionError(
                "%s lacks %s" % (path, ", ".join(absent)))
        if ctypes.sizeof(Opts) > lib.lsec_opts_size():
            # The header only appends members, so the library's struct is
            # never smaller than the one this package was written against.
            raise LibraryVersionError(
                "%s has a smaller lsec_opts (%d bytes) than this package "
                "expects (%d)" % (path, lib.lsec_opts_size(),
                                  ctypes.sizeof(Opts)))
        return lib
    raise LibraryNotFoundError(
        "libloopsec not found: set LOOPSEC_LIBRARY to the path of "
        "libloopsec.so, build it in the source tree (build/), or install it"
        + ("; tried: " + "; ".join(tried) if tried else ""))


LIB = load()
_errors.bind(LIB.lsec_errname, LIB.lsec_strerror, LIB.lsec_last_detail)
