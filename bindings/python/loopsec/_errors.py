"""The exception tree and the code table.

The numbers and texts come from the loaded library (lsec_errname and
lsec_strerror walk the header's LSEC_ERRNO_MAP); this module only says which
class each symbolic name raises.  A code that this package does not know yet
(a newer library) raises the base class.

Pure: it imports nothing of the package.  The loader (_lib.py) calls bind()
once with the library's functions, before anything raises.
"""


class Error(Exception):
    """Base of every loopsec failure.

    ``code`` is the negative LSEC_E* number, ``name`` its symbolic name
    ("LSEC_EAUTH"), ``strerror`` the library's fixed text and ``detail`` the
    library's explanation for this failure ("" when none).  Neither ever holds
    a secret: the C library keeps secrets out of its detail text, and this
    package never puts a ticket into an exception.
    """

    def __init__(self, code, detail=""):
        self.code = code
        self.name = errname(code)
        self.strerror = strerror(code)
        self.detail = detail
        msg = self.strerror + (": " + detail if detail else "")
        Exception.__init__(self, msg)
        self._msg = msg

    # Several subclasses also derive from OSError subclasses (TimeoutError,
    # BlockingIOError, PermissionError), whose own str() would print
    # "[Errno ...]"; the message is the same for all.
    def __str__(self):
        return self._msg

    def __repr__(self):
        return "%s(%s, %r)" % (type(self).__name__, self.name, self._msg)

    def __reduce__(self):
        return (make_error, (self.code, self.detail))


class InvalidArgumentError(Error, ValueError):
    """LSEC_EINVAL: misuse, a malformed argument, or a closed object."""


class NotLoopbackError(Error, ValueError):
    """LSEC_ENOTLOOPBACK: the address is not an accepted loopback address."""


class AddressInUseError(Error):
    """LSEC_EADDRINUSE: the port is taken; the detail names the holder."""


class AuthError(Error):
    """LSEC_EAUTH: the peer does not hold the secret (or we do not)."""


class Timeout(Error, TimeoutError):
    """LSEC_ETIMEDOUT.  Also a built-in TimeoutError."""


class WouldBlock(Error, BlockingIOError):
    """LSEC_EAGAIN: a timeout-0 call found nothing to do."""


class ClosedError(Error):
    """LSEC_ECLOSED: the peer closed the connection cleanly, or refused it."""


class ConnectionLostError(ClosedError):
    """LSEC_ERESET: the peer vanished, possibly mid-message."""


class ProtocolError(Error):
    """LSEC_EPROTO: the peer broke the protocol (e.g. an oversized length)."""


class MessageTooLargeError(Error):
    """LSEC_EMSGSIZE: a message or a result does not fit."""


class OutOfMemoryError(Error):
    """LSEC_ENOMEM."""


class SystemCallError(Error):
    """LSEC_EIO: a system call failed; the detail says which and why."""


class ModeError(Error):
    """LSEC_EMODE: auth and tls sides met; the mode is never negotiated."""


class TLSError(Error):
    """LSEC_ETLS: the TLS layer failed."""


class PeerRefusedError(Error):
    """LSEC_EPEER: the peer was refused by the peer policy."""


class NotFoundError(Error):
    """LSEC_ENOTFOUND: no such file, listener, or inherited ticket."""


class UnsafePermissionsError(Error, PermissionError):
    """LSEC_EPERM: a file or directory has unsafe ownership or permissions,
    or (listen with no_route_localnet) route_localnet is set."""


class ChildExitedError(Error):
    """LSEC_ECHILD: the helper process exited; the detail has its status."""


class LimitError(Error):
    """LSEC_ELIMIT: a limit was reached (max_accepts, or the descriptor
    limit: EMFILE/ENFILE; worth retrying once descriptors are free)."""


class NotSupportedError(Error):
    """LSEC_ENOSYS: not supported here (or not in the loaded library)."""


class BadTicketError(Error, ValueError):
    """LSEC_EBADTICKET: the ticket text is malformed."""


# Symbolic name (without "LSEC_") -> class.  Names only: the numbers belong to
# the library.
_CLASS_BY_NAME = {
    "EINVAL": InvalidArgumentError,
    "ENOTLOOPBACK": NotLoopbackError,
    "EADDRINUSE": AddressInUseError,
    "EAUTH": AuthError,
    "ETIMEDOUT": Timeout,
    "EAGAIN": WouldBlock,
    "ECLOSED": ClosedError,
    "EPROTO": ProtocolError,
    "EMSGSIZE": MessageTooLargeError,
    "ENOMEM": OutOfMemoryError,
    "EIO": SystemCallError,
    "EMODE": ModeError,
    "ETLS": TLSError,
    "EPEER": PeerRefusedError,
    "ENOTFOUND": NotFoundError,
    "EPERM": UnsafePermissionsError,
    "ECHILD": ChildExitedError,
    "ERESET": ConnectionLostError,
    "ELIMIT": LimitError,
    "ENOSYS": NotSupportedError,
    "EBADTICKET": BadTicketError,
}


# Filled in place by bind(), so that names imported before it stay valid.
CODES = {}
_CODE_BY_NAME = {}
_CLASS_BY_CODE = {}
_last_detail = None


def _read_table(errname_fn, strerror_fn):
    """{code: (name, text)} for every code the library knows.  Codes are
    consecutive negative numbers from -1 (new ones are appended)."""
    table = {}
    code = -1
    while code > -1000:
        name = errname_fn(code).decode("ascii")
        if name == "LSEC_UNKNOWN":
            break
        table[code] = (name, strerror_fn(code).decode("utf-8", "replace"))
        code -= 1
    return table


def bind(errname_fn, strerror_fn, last_detail_fn):
    """Read the code table through the library's lsec_errname and
    lsec_strerror, and keep lsec_last_detail for last_error()."""
    global _last_detail
    CODES.clear()
    CODES.update(_read_table(errname_fn, strerror_fn))
    _CODE_BY_NAME.clear()
    _CODE_BY_NAME.update(
        {name[len("LSEC_"):]: code for code, (name, _) in CODES.items()})
    _CLASS_BY_CODE.clear()
    _CLASS_BY_CODE.update(
        {code: _CLASS_BY_NAME.get(name[len("LSEC_"):], Error)
         for code, (name, _) in CODES.items()})
    for name, cls in _CLASS_BY_NAME.items():
        if name in _CODE_BY_NAME:
            cls.code = _CODE_BY_NAME[name]
    _last_detail = last_detail_fn


def code_of(name):
    """The number of a symbolic name ("EAUTH" or "LSEC_EAUTH")."""
    if name.startswith("LSEC_"):
        name = name[len("LSEC_"):]
    return _CODE_BY_NAME[name]


def errname(code):
    entry = CODES.get(code)
    return entry[0] if entry else "LSEC_UNKNOWN"


def strerror(code):
    entry = CODES.get(code)
    return entry[1] if entry else "unknown error (%d)" % code


def error_class(code):
    return _CLASS_BY_CODE.get(code, Error)


def make_error(code, detail=""):
    return error_class(code)(code, detail)


def last_error(code):
    """The exception for `code` just returned by a library call on this
    thread, with the library's detail.  Call it before any other library
    call: the detail is per thread and replaced by the next call."""
    detail = _last_detail()
    return make_error(code, detail.decode("utf-8", "replace") if detail else "")


def check(rc):
    """Raise for a negative return code; return rc otherwise."""
    if rc < 0:
        raise last_error(rc)
    return rc
