"""The C interface as ctypes declares it: the version this package is
written against, the header's constants, the structures, and the pinned
signature of every C function the package calls.  Pure declarations:
nothing here loads or calls the library (that is _lib.py).
"""

import ctypes
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


class IovStruct(ctypes.Structure):
    """struct lsec_iov: one message for lsec_sendv."""

    _fields_ = [
        ("base", ctypes.c_void_p),
        ("len", ctypes.c_size_t),
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
    "lsec_sendv": (_I, [_P, ctypes.POINTER(IovStruct), _Z, _I]),
    "lsec_flush": (_I, [_P, _I]),
    "lsec_channel_queued": (_Z, [_P]),
    "lsec_recv": (_I, [_P, _P, _Z, _ZP, _I]),
    "lsec_send_from_fd": (_I, [_P, _I, _Z, _ZP, _I]),
    "lsec_recv_to_fd": (_I, [_P, _I, _ZP, _I]),
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

# Hot-path twins: the per-message calls, bound a second time without
# argtypes (restype int), as LIB.unchecked[name].  ctypes then converts
# nothing through Python-level from_param calls (about 0.4-0.8 us per call
# saved, measured: docs/BENCHMARKS.md, "The Python binding"), so a caller
# must pass exactly the C types of the signature above: ctypes instances
# (c_void_p, c_size_t, arrays, byref) for pointers and size_t, and Python
# ints only for int parameters.  Only Channel's send/recv paths call them.
UNCHECKED = ("lsec_send", "lsec_recv")

# Functions without which nothing works: a library lacking one is refused.
REQUIRED = ("lsec_version_number", "lsec_strerror", "lsec_errname",
             "lsec_last_detail", "lsec_opts_init_sized", "lsec_opts_size")
