"""loopsec: safe local IPC over loopback (Python bindings over ctypes).

    import loopsec
    with loopsec.listen("127.0.0.1:0", tls=True) as srv:
        give_to_peer(srv.ticket)                  # a credential
        with srv.accept(timeout=5) as ch:
            ch.send(b"hello")
            reply = ch.recv(timeout=5)

    ch = loopsec.connect(ticket, timeout=5)
    loopsec.check_address("0.0.0.0:80")          # raises NotLoopbackError
    loopsec.port_owner(62893)                    # PortOwner(...) or None
    loopsec.listeners()                          # [PortListener(...), ...]

Timeouts are seconds (float); None waits forever, 0 never waits.  The C
library is found through $LOOPSEC_LIBRARY, then the source tree's build*/
directories, then the system; importing fails with an ImportError when it is
missing or of another version.  See loopsec.aio for asyncio.
"""

from ._ffi import (
    ADDR_ALLOW_127_8, LOG_DEBUG, LOG_ERROR, LOG_INFO, LOG_WARN,
    PEER_ANY_USER, PEER_SAME_USER)
from ._ffi import VERSION as _VERSION
from ._lib import LibraryNotFoundError, LibraryVersionError
from ._lib import LIB as _LIB
from ._errors import (
    AddressInUseError, AuthError, BadTicketError, ChildExitedError,
    ClosedError, ConnectionLostError, Error, InvalidArgumentError, LimitError,
    MessageTooLargeError, ModeError, NotFoundError, NotLoopbackError,
    NotSupportedError, OutOfMemoryError, PeerRefusedError, ProtocolError,
    SystemCallError, Timeout, TLSError, UnsafePermissionsError, WouldBlock)
from ._errors import CODES as _CODES
from ._core import (
    Channel, Helper, Listener, Peer, PortListener, PortOwner, announce,
    check_address, connect, connect_file, connect_inherited, disable_logging,
    enable_logging, harden_process, listen, listeners, port_owner, spawn,
    spawn_listening, ticket_redact)

#: This package's version: the C header's, LSEC_VERSION_STRING.
__version__ = "%d.%d.%d" % _VERSION

#: Path of the loaded libloopsec.
library_path = _LIB.path


def library_version():
    """The loaded C library's version, "MAJOR.MINOR.PATCH"."""
    return _LIB.lsec_version().decode("ascii")


# Module constants for every error code (loopsec.EAUTH == -4, ...), read from
# the library's own table rather than written down a second time.
for _code, (_name, _text) in _CODES.items():
    globals()[_name[len("LSEC_"):]] = _code
del _code, _name, _text

__all__ = [
    "listen", "connect", "connect_file", "connect_inherited", "spawn",
    "spawn_listening", "announce", "check_address", "port_owner", "listeners",
    "ticket_redact", "enable_logging", "disable_logging", "library_version",
    "harden_process",
    "Listener", "Channel", "Helper", "Peer", "PortOwner", "PortListener",
    "Error", "AuthError", "NotLoopbackError", "AddressInUseError",
    "ProtocolError", "ClosedError", "ConnectionLostError", "ModeError",
    "Timeout", "WouldBlock", "ChildExitedError", "UnsafePermissionsError",
    "InvalidArgumentError", "MessageTooLargeError", "OutOfMemoryError",
    "SystemCallError", "TLSError", "PeerRefusedError", "NotFoundError",
    "LimitError", "NotSupportedError", "BadTicketError",
    "LibraryNotFoundError", "LibraryVersionError",
    "PEER_SAME_USER", "PEER_ANY_USER", "ADDR_ALLOW_127_8",
    "LOG_ERROR", "LOG_WARN", "LOG_INFO", "LOG_DEBUG",
]
