"""Loading libloopsec: where it is found, which version it must be, and the
pinned ctypes signature of every C function the package calls.

Nothing outside this module touches ctypes declarations: the rest of the
package calls ``LIB.<name>(...)`` with the types declared here.
"""

import ctypes
import ctypes.util
import glob
import os
import re



def _header_version():
    """(major, minor, patch) from include/loopsec.h in the source tree this
    package sits in, or None outside one."""
    d = os.path.dirname(os.path.abspath(__file__))
    while True:
        h = os.path.join(d, "include", "loopsec.h")
        if os.path.isfile(h):
            with open(h, encoding="utf-8") as f:
                text = f.read()
            return tuple(
                int(re.search(r"^#define LSEC_VERSION_%s (\d+)$" % w, text,
                              re.M).group(1))
                for w in ("MAJOR", "MINOR", "PATCH"))
        parent = os.path.dirname(d)
        if parent == d:
            return None
        d = parent


# The version is written once, in include/loopsec.h.  An installed package
# carries it in _version.py, which the build writes from the header; in the
# source tree it is read from the header itself.
try:
    from ._version import VERSION
except ImportError:
    VERSION = _header_version()
    if VERSION is None:
        raise ImportError("loopsec: neither _version.py (written by the "
                          "package build) nor include/loopsec.h found")

# The C library version this package is written against, and the ABI
# policy shared with the C build (CMakeLists.txt: SOVERSION and the package
# version file): while the major version is 0, every minor release may change
# the ABI, so major and minor must both match; from 1.0 on, a library with
# the same major and an equal or newer minor is accepted (the header only
# ever appends).
EXPECTED_VERSION = VERSION[:2]

# Values of header macros that have no function twin.  They are pinned here,
# in one place, and tests/test_abi.py compares them with include/loopsec.h.
MODE_AUTH = 1
MODE_TLS = 2
PEER_SAME_USER = 0
PEER_ANY_USER = 1
PORT_KERNEL = 0
PORT_RANGE = 1
ADDR_ALLOW_127_8 = 0x0001
OPT_PORT_FALLBACK = 0x0100
OPT_HELPER_SURVIVES = 0x0200
OPT_NO_ROUTE_LOCALNET = 0x0400
LOG_ERROR = 1
LOG_WARN = 2
LOG_INFO = 3
LOG_DEBUG = 4
PATH_MAX = 4096
ENV_TICKET_FD = "LOOPSEC_TICKET_FD"
ENV_ANNOUNCE_FD = "LOOPSEC_ANNOUNCE_FD"


class LibraryNotFoundError(ImportError):
    """libloopsec could not be found or loaded."""


class LibraryVersionError(ImportError):
    """The libloopsec that was found is not the version this package needs."""


# ---------------------------------------------------------------------------
# Structures, mirrored member for member from include/loopsec.h.


class Opts(ctypes.Structure):
    """struct lsec_opts.  ``size`` comes first: the library reads only the
    members that lie within it (the header's compatibility scheme)."""

    _fields_ = [
        ("size", ctypes.c_size_t),
        ("mode", ctypes.c_int),
        ("handshake_timeout_ms", ctypes.c_int),
        ("max_message", ctypes.c_size_t),
        ("peer_policy", ctypes.c_int),
        ("port_policy", ctypes.c_int),
        ("port_min", ctypes.c_uint16),
        ("port_max", ctypes.c_uint16),
        ("backlog", ctypes.c_int),
        ("max_pending", ctypes.c_int),
        ("max_accepts", ctypes.c_int),
        ("flags", ctypes.c_uint32),
    ]


class PeerStruct(ctypes.Structure):
    """struct lsec_peer."""

    _fields_ = [
        ("uid", ctypes.c_int64),
        ("pid", ctypes.c_int32),
        ("port", ctypes.c_int32),
        ("local_port", ctypes.c_int32),
    ]


class PortOwnerStruct(ctypes.Structure):
    """struct lsec_port_owner."""

    _fields_ = [
        ("uid", ctypes.c_int64),
        ("pid", ctypes.c_int32),
        ("user", ctypes.c_char * 64),
        ("command", ctypes.c_char * 256),
    ]


class PortListenerStruct(ctypes.Structure):
    """struct lsec_port_listener."""

    _fields_ = [
        ("addr", ctypes.c_char * 64),
        ("port", ctypes.c_int32),
        ("wildcard", ctypes.c_int32),
        ("uid", ctypes.c_int64),
        ("pid", ctypes.c_int32),
        ("user", ctypes.c_char * 64),
        ("command", ctypes.c_char * 256),
    ]


# ---------------------------------------------------------------------------
# The pinned table: every function the package uses, with its exact C
# signature.  Opaque handles are c_void_p.  A function missing from the
# loaded library (an older or partial build) becomes a stub that raises
# loopsec.Error(LSEC_ENOSYS) when called; `has()` tells which are present.

_P = ctypes.c_void_p
_PP = ctypes.POINTER(ctypes.c_void_p)
_I = ctypes.c_int
_U = ctypes.c_uint
_S = ctypes.c_char_p
_Z = ctypes.c_size_t
_ZP = ctypes.POINTER(ctypes.c_size_t)
_OP = ctypes.POINTER(Opts)

LOG_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p)

SIGNATURES = {
    # version, errors, sizes
    "lsec_version": (_S, []),
    "lsec_version_number": (_I, []),
    "lsec_strerror": (_S, [_I]),
    "lsec_errname": (_S, [_I]),
    "lsec_last_detail": (_S, []),
    "lsec_set_log": (None, [LOG_FN, _P, _I]),
    "lsec_secret_bytes": (_Z, []),
    "lsec_id_bytes": (_Z, []),
    "lsec_ticket_max": (_Z, []),
    "lsec_addr_max": (_Z, []),
    # addresses, options, tickets
    "lsec_addr_check": (_I, [_S, _U, ctypes.c_char_p, _Z]),
    "lsec_opts_init_sized": (None, [_OP, _Z]),
    "lsec_opts_size": (_Z, []),
    "lsec_ticket_redact": (_I, [_S, ctypes.c_char_p, _Z]),
    # listening side
    "lsec_listen": (_I, [_S, _OP, _PP]),
    "lsec_listen_keyed": (_I, [_S, _OP, _S, _Z, _S, _Z, _PP]),
    "lsec_listener_port": (_I, [_P]),
    "lsec_listener_ticket": (_I, [_P, ctypes.c_char_p, _Z]),
    "lsec_listener_write_file": (_I, [_P, _S, ctypes.c_char_p, _Z]),
    "lsec_accept": (_I, [_P, _I, _PP]),
    "lsec_listener_fd": (_I, [_P]),
    "lsec_listener_timeout_ms": (_I, [_P]),
    "lsec_listener_abort": (None, [_P]),
    "lsec_listener_failures": (ctypes.c_uint64, [_P]),
    "lsec_listener_close": (None, [_P]),
    "lsec_listener_announce": (_I, [_P]),
    # connecting side
    "lsec_connect": (_I, [_S, _OP, _I, _PP]),
    "lsec_connect_file": (_I, [_S, _OP, _I, _PP]),
    "lsec_connect_inherited": (_I, [_OP, _I, _PP]),
    "lsec_connect_start": (_I, [_S, _OP, _PP]),
    "lsec_connector_fd": (_I, [_P]),
    "lsec_connector_events": (_I, [_P]),
    "lsec_connector_timeout_ms": (_I, [_P]),
    "lsec_connector_step": (_I, [_P, _PP]),
    "lsec_connector_close": (None, [_P]),
    # channels
    "lsec_send": (_I, [_P, _P, _Z, _I]),
    "lsec_flush": (_I, [_P, _I]),
    "lsec_channel_queued": (_Z, [_P]),
    "lsec_recv": (_I, [_P, _P, _Z, _ZP, _I]),
    "lsec_channel_fd": (_I, [_P]),
    "lsec_channel_pending": (_Z, [_P]),
    "lsec_channel_mode": (_I, [_P]),
    "lsec_channel_peer": (_I, [_P, ctypes.POINTER(PeerStruct)]),
    "lsec_channel_abort": (None, [_P]),
    "lsec_channel_shutdown": (_I, [_P, _I]),
    "lsec_channel_close": (None, [_P]),
    # ports
    "lsec_port_owner_get": (_I, [_I, ctypes.POINTER(PortOwnerStruct)]),
    "lsec_port_listeners": (_I, [_I, ctypes.POINTER(PortListenerStruct), _Z,
                                 _ZP]),
    # helper processes
    "lsec_spawn": (_I, [ctypes.POINTER(ctypes.c_char_p), _OP, _I, _PP, _PP]),
    "lsec_spawn_listening": (
        _I, [ctypes.POINTER(ctypes.c_char_p), _OP, _I, _PP, _PP]),
    "lsec_helper_pid": (_I, [_P]),
    "lsec_helper_wait": (_I, [_P, _I, ctypes.POINTER(ctypes.c_int)]),
    "lsec_helper_kill": (_I, [_P, _I]),
    "lsec_helper_free": (None, [_P]),
    # process hardening
    "lsec_harden_process": (_I, []),
}

# Functions without which nothing works: a library lacking one is refused.
_REQUIRED = ("lsec_version_number", "lsec_strerror", "lsec_errname",
             "lsec_last_detail", "lsec_opts_init_sized", "lsec_opts_size")


class _Missing:
    """Stands in for a function the loaded library does not export."""

    def __init__(self, name):
        self.__name__ = name

    def __call__(self, *args):
        from . import _errors
        raise _errors.make_error(
            _errors.code_of("ENOSYS"),
            "%s is not in the loaded libloopsec" % self.__name__)


class Lib:
    """The loaded library: one attribute per pinned function."""

    def __init__(self, cdll, path):
        self.path = path
        self.missing = set()
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
        absent = [n for n in _REQUIRED if not lib.has(n)]
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
