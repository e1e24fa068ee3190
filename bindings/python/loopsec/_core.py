"""Listeners, channels, helpers and the module-level functions.

Every blocking C call is made with the GIL released (ctypes does that) and in
slices of at most SLICE seconds, so that Ctrl-C and a close() from another
thread take effect promptly even when the caller waits forever.  Slicing is
safe because the library keeps partial progress across a timeout: a partial
message survives lsec_recv's timeout, a send that timed out sent nothing, and
pending handshakes survive lsec_accept's timeout.

Secrets: a ticket is returned only by Listener.ticket, which the caller asked
for.  It is never put into an exception, a repr or a log line.
"""

import collections
import ctypes
import logging
import math
import os
import signal
import sysconfig
import threading
import time

from . import _errors
from ._errors import check, code_of, last_error, make_error
from ._ffi import (
    ADDR_ALLOW_127_8, ENV_ANNOUNCE_FD, ENV_TICKET_FD, LOG_DEBUG, LOG_ERROR,
    LOG_FN, LOG_INFO, LOG_WARN, MODE_AUTH, MODE_TLS, OPT_HELPER_SURVIVES,
    OPT_NO_ROUTE_LOCALNET, OPT_PORT_FALLBACK, PATH_MAX, PEER_ANY_USER,
    PEER_SAME_USER, PORT_RANGE, Opts, PeerStruct, PortListenerStruct,
    PortOwnerStruct)
from ._lib import LIB

# The per-message calls, without argtypes (_ffi.UNCHECKED): every argument
# is passed as its exact C type.
_lsec_send = LIB.unchecked["lsec_send"]
_lsec_recv = LIB.unchecked["lsec_recv"]
_c_size_t = ctypes.c_size_t
# Message lengths as size_t arguments, made once per length (most
# programs send a few lengths over and over); bounded.
_SIZE_ARGS = {}
_SIZE_ARGS_MAX = 1024
# The busy protocol of _Handle needs the GIL's ordering (see there).
_GIL = not sysconfig.get_config_var("Py_GIL_DISABLED")


def _size_arg(n):
    a = _SIZE_ARGS.get(n)
    if a is None:
        if len(_SIZE_ARGS) >= _SIZE_ARGS_MAX:
            _SIZE_ARGS.clear()
        a = _SIZE_ARGS[n] = _c_size_t.from_param(n)
    return a

SLICE = 0.5
_SLICE_MS = int(SLICE * 1000)
_INT_MAX = 2 ** 31 - 1
# A channel's receive buffer starts small, so that many idle channels cost
# little (64 KiB each before: 68.9 KiB per idle channel in all, 8.9 KiB with
# 4 KiB); a longer message grows it once (one LSEC_EMSGSIZE retry).
_RECV_INITIAL = 4 * 1024
# Receive buffers up to this size are kept for the next message; larger
# messages get a buffer of their own that is dropped after use.
_RECV_KEEP_MAX = 1024 * 1024

EINVAL = code_of("EINVAL")
EAGAIN = code_of("EAGAIN")
ETIMEDOUT = code_of("ETIMEDOUT")
EMSGSIZE = code_of("EMSGSIZE")
ECLOSED = code_of("ECLOSED")

_MODE_NAMES = {MODE_AUTH: "auth", MODE_TLS: "tls"}

Peer = collections.namedtuple("Peer", "uid pid port local_port")
Peer.__doc__ = ("Who is at the other end of a channel.  None where the "
                "system does not show it.")
PortOwner = collections.namedtuple("PortOwner", "pid uid user command")
PortOwner.__doc__ = ("Who listens on a loopback port.  pid is None when the "
                     "process is not visible to us; user and command are "
                     "None when unknown.")

PortListener = collections.namedtuple(
    "PortListener", "address port wildcard pid uid user command")
PortListener.__doc__ = (
    "A TCP socket listening on a loopback or wildcard address.  address is "
    "the bound address with its port (\"127.0.0.1:8080\", \"[::]:22\"); "
    "wildcard is True for 0.0.0.0 and :: (every interface: reachable from "
    "other hosts); pid is None when the process is not visible to us; user "
    "and command are None when unknown.")


# ---------------------------------------------------------------------------
# Argument conversion.


def _invalid(detail):
    return make_error(EINVAL, detail)


def _deadline(timeout):
    """Absolute monotonic deadline for a timeout in seconds; None: never."""
    if timeout is None:
        return None
    try:
        t = float(timeout)
    except (TypeError, ValueError):
        raise _invalid("timeout must be a number of seconds or None") from None
    if math.isnan(t) or t < 0:
        raise _invalid("timeout must be >= 0 seconds or None")
    return time.monotonic() + t


def _slice_ms(deadline):
    if deadline is None:
        return _SLICE_MS
    left = deadline - time.monotonic()
    if left <= 0:
        return 0
    # Round up: 0.0001 s must wait a little, never turn into "do not wait".
    return min(int(math.ceil(left * 1000)), _SLICE_MS)


def _ms(seconds, what):
    """Seconds (float) to whole milliseconds for an option; None stays None."""
    if seconds is None:
        return None
    try:
        t = float(seconds)
    except (TypeError, ValueError):
        raise _invalid("%s must be a number of seconds" % what) from None
    if math.isnan(t) or t <= 0:
        raise _invalid("%s must be > 0 seconds" % what)
    return min(int(math.ceil(t * 1000)), _INT_MAX)


def _text_arg(value, what):
    """str, bytes or os.PathLike to NUL-free bytes.  The value itself is
    never echoed in the error: it may be a ticket."""
    if isinstance(value, str):
        b = value.encode("utf-8", "surrogateescape")
    elif isinstance(value, (bytes, bytearray)):
        b = bytes(value)
    elif isinstance(value, os.PathLike):
        b = os.fsencode(value)
    else:
        raise TypeError("%s must be str or bytes, not %s"
                        % (what, type(value).__name__))
    if b"\0" in b:
        raise _invalid("%s contains a NUL byte" % what)
    return b


def _int_arg(value, what, lo, hi):
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("%s must be an int, not %s"
                        % (what, type(value).__name__))
    if not lo <= value <= hi:
        raise _invalid("%s must be in %d..%d" % (what, lo, hi))
    return value


_PEER_POLICIES = {
    PEER_SAME_USER: PEER_SAME_USER, PEER_ANY_USER: PEER_ANY_USER,
    "same-user": PEER_SAME_USER, "same_user": PEER_SAME_USER,
    "any-user": PEER_ANY_USER, "any_user": PEER_ANY_USER,
}


def _opts(tls=None, handshake_timeout=None, max_message=None,
          peer_policy=None, max_accepts=None, port_range=None,
          port_fallback=False, allow_127_8=False, backlog=None,
          max_pending=None, survive=False, no_route_localnet=False):
    """An lsec_opts filled with the library's defaults, then edited."""
    o = Opts()
    LIB.lsec_opts_init_sized(ctypes.byref(o), ctypes.sizeof(o))
    if tls:
        o.mode = MODE_TLS
    ms = _ms(handshake_timeout, "handshake_timeout")
    if ms is not None:
        o.handshake_timeout_ms = ms
    if max_message is not None:
        o.max_message = _int_arg(max_message, "max_message", 1, 2 ** 63 - 1)
    if peer_policy is not None:
        try:
            o.peer_policy = _PEER_POLICIES[peer_policy]
        except (KeyError, TypeError):
            raise _invalid("peer_policy must be PEER_SAME_USER or "
                           "PEER_ANY_USER") from None
    if max_accepts is not None:
        o.max_accepts = _int_arg(max_accepts, "max_accepts", 0, _INT_MAX)
    if port_range is not None:
        lo, hi = port_range
        o.port_policy = PORT_RANGE
        o.port_min = _int_arg(lo, "port_range[0]", 1, 65535)
        o.port_max = _int_arg(hi, "port_range[1]", 1, 65535)
    if backlog is not None:
        o.backlog = _int_arg(backlog, "backlog", 1, _INT_MAX)
    if max_pending is not None:
        o.max_pending = _int_arg(max_pending, "max_pending", 1, _INT_MAX)
    if port_fallback:
        o.flags |= OPT_PORT_FALLBACK
    if allow_127_8:
        o.flags |= ADDR_ALLOW_127_8
    if survive:
        o.flags |= OPT_HELPER_SURVIVES
    if no_route_localnet:
        o.flags |= OPT_NO_ROUTE_LOCALNET
    return o


def _argv_array(argv):
    if isinstance(argv, (str, bytes)) or not argv:
        raise _invalid("argv must be a non-empty list of strings")
    items = [_text_arg(a, "argv item") for a in argv]
    return (ctypes.c_char_p * (len(items) + 1))(*items, None)


# ---------------------------------------------------------------------------
# Handles.


class _Handle:
    """An owned C object.  Not thread-safe, like the C objects, with two
    exceptions: abort() and close() may be called from any thread.  Either
    wakes a call blocked in another thread at once (the C *_abort call,
    where the object has one), which then raises ClosedError (after
    abort) or InvalidArgumentError (after close); close() frees the object
    when that call has returned, never while it runs."""

    _kind = "object"
    _free = None  # the C *_close / *_free function
    _abort = None  # the C *_abort function, thread-safe, or None

    def __init__(self, ptr):
        self._ptr = ptr
        self._lock = threading.Lock()
        self._users = []  # one entry per call running on the object
        self._closing = False

    # The busy protocol.  A call announces itself (appends to _users), then
    # checks _closing; close() sets _closing, then looks at _users.  Under
    # the GIL every step is atomic and the steps are sequentially
    # consistent, so at least one side sees the other: either the call
    # sees _closing and backs off, or close() sees the call and leaves the
    # freeing to the last call to end (_free_if_idle).  That takes no lock
    # on the per-message path; without a GIL (a free-threaded build) the
    # announcing and ending steps take the lock, as close() does.

    def _acquire(self):
        if not _GIL:
            self._lock.acquire()
        self._users.append(None)
        if self._ptr is None or self._closing:
            self._users.pop()
            if not _GIL:
                self._lock.release()
            self._free_if_idle()
            raise _invalid("%s is closed" % self._kind)
        ptr = self._ptr
        if not _GIL:
            self._lock.release()
        return ptr

    def _release(self):
        if _GIL:
            self._users.pop()
            closing = self._closing
        else:
            with self._lock:
                self._users.pop()
                closing = self._closing
        if closing:
            self._free_if_idle()

    def _free_if_idle(self):
        """After a call ended on an object being closed: free it unless
        another call is still running (the last one to end frees it)."""
        with self._lock:
            ptr = None
            if not self._users and self._closing:
                ptr, self._ptr = self._ptr, None
        if ptr is not None:
            type(self)._free(ptr)

    def _run(self, call, deadline, timeout_zero=False, rc=None):
        """Call `call(ms)` in slices until it does not time out or the
        deadline passes.  Returns the final return code.  `rc`: the result
        of a first call already made (a fast path's), with a full slice or
        timeout 0 as `timeout_zero` says."""
        ms = 0 if timeout_zero else _SLICE_MS
        while True:
            if rc is None:
                ms = _slice_ms(deadline)
                rc = call(ms)
            if rc == ECLOSED and self._closing:
                # close() from another thread aborted this call.
                raise _invalid("%s was closed during the call" % self._kind)
            if rc == ETIMEDOUT:
                if deadline is not None and time.monotonic() >= deadline:
                    return rc
                if self._closing:
                    raise _invalid("%s was closed during the call" % self._kind)
                rc = None
                continue
            if rc == EAGAIN and ms == 0 and not timeout_zero:
                # Our own last slice hit the deadline exactly: to the caller
                # that is a timeout, not "would block".
                raise make_error(ETIMEDOUT)
            return rc

    def _call(self, fn, *args):
        """fn(handle, *args) while the handle is held; raises for a
        negative result, else returns it."""
        p = self._acquire()
        try:
            rc = fn(p, *args)
            if rc < 0:
                raise last_error(rc)  # before _release, which may call C
            return rc
        finally:
            self._release()

    def _timed(self, fn, timeout):
        """fn(handle, ms) in slices until it is done or `timeout` seconds
        have passed; raises for a negative result, else returns it."""
        deadline = _deadline(timeout)
        p = self._acquire()
        try:
            rc = self._run(lambda ms: fn(p, ms), deadline, timeout == 0)
            if rc < 0:
                raise last_error(rc)
            return rc
        finally:
            self._release()

    @property
    def closed(self):
        return self._ptr is None or self._closing

    def abort(self):
        """Wake a call blocked on this object in another thread (it raises
        ClosedError), and make every later call raise it too.  Thread-safe.
        The object is still to be closed.  A no-op once closed."""
        abort = type(self)._abort
        with self._lock:
            # Under the lock: close() cannot free the object meanwhile.
            if self._ptr is not None and abort is not None:
                abort(self._ptr)

    def close(self):
        """Release the C object.  Idempotent.  From another thread while a
        call is blocked on it: that call is aborted at once, and the object
        is freed when it has returned."""
        abort = type(self)._abort
        with self._lock:
            if self._ptr is None or self._closing:
                return
            self._closing = True
            if self._users:
                if abort is not None:
                    abort(self._ptr)
                return
            ptr, self._ptr = self._ptr, None
        type(self)._free(ptr)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: nothing left to do
            pass


class Channel(_Handle):
    """An authenticated channel: whole messages, in order.

    Not thread-safe: use it from one thread at a time (close() excepted).
    """

    _kind = "channel"
    _free = staticmethod(LIB.lsec_channel_close)
    _abort = staticmethod(LIB.lsec_channel_abort)

    def __init__(self, ptr):
        _Handle.__init__(self, ptr)
        # Made once per channel, for the unchecked calls, each already
        # converted by its type's from_param (or byref): ctypes then passes
        # them as they are, with no conversion object made per call.  The
        # handle, the receive buffer (and a pointer to it), its size, the
        # length out.
        self._cp = ctypes.c_void_p.from_param(ptr)
        self._set_buf((ctypes.c_char * _RECV_INITIAL)())
        self._len = _c_size_t()
        self._lenp = ctypes.byref(self._len)
        self._mode = LIB.lsec_channel_mode(ptr)

    def _set_buf(self, buf):
        self._buf = buf
        self._bufp = ctypes.byref(buf)
        self._capp = _c_size_t.from_param(len(buf))

    # send and recv with timeout None take a hot path: one C call (the
    # first slice) with arguments made once per channel (or per length)
    # and bound without argtypes, the bytes sliced out of the buffer (one
    # copy, no further C call), no deadline, no closure, no lock.  Whatever
    # that call did not finish goes on in the general loop (_run), so that
    # slices, timeouts and close() from another thread behave as on the
    # general path.

    def send(self, data, timeout=None):
        """Send one whole message (any bytes-like object).

        Raises Timeout if nothing could be written in time (nothing was sent
        then), WouldBlock for timeout 0, ClosedError / ConnectionLostError if
        the peer is gone, MessageTooLargeError above the peer's limit.
        """
        if timeout is None and type(data) is bytes:
            # The hot path: _acquire and _release inlined.
            users = self._users
            users.append(None)
            try:
                if self._closing:  # (_ptr is None only once closing)
                    raise _invalid("channel is closed")
                cp, n = self._cp, _SIZE_ARGS.get(len(data))
                if n is None:
                    n = _size_arg(len(data))
                rc = _lsec_send(cp, data, n, _SLICE_MS)
                if rc == 0:
                    return
                rc = self._run(lambda ms: _lsec_send(cp, data, n, ms), None,
                               False, rc)
                if rc < 0:
                    raise last_error(rc)
                return
            finally:
                users.pop()
                if self._closing:
                    self._free_if_idle()
        self._send_general(data, timeout)

    def _send_general(self, data, timeout=None):
        """send for every argument; the hot path aside."""
        view = None
        if type(data) is bytes:
            ptr, n = data, _size_arg(len(data))
        else:
            view = memoryview(data)
            if not view.c_contiguous:
                raise _invalid("send needs a contiguous buffer")
            size = view.nbytes
            n = _c_size_t.from_param(size)
            if view.readonly:
                ptr = view.tobytes()
            else:
                ptr = (ctypes.c_char * size).from_buffer(view.cast("B"))
        cp = self._cp
        try:
            self._timed(lambda p, ms: _lsec_send(cp, ptr, n, ms), timeout)
        finally:
            if view is not None:
                # As in recv_into: no export of the caller's buffer outlives
                # the call (a kept exception's traceback keeps this frame).
                ptr = None
                view.release()

    def flush(self, timeout=None):
        """Write out what an earlier send queued.  WouldBlock for timeout 0
        while something is still queued."""
        self._timed(LIB.lsec_flush, timeout)

    def shutdown(self, timeout=None):
        """End the sending direction (half-close) after every message sent
        so far; receiving goes on, and the peer's recv raises ClosedError
        once it has read them all.  A later send raises InvalidArgumentError;
        a second shutdown does nothing.  Timeout / WouldBlock (timeout 0)
        when the queue could not be flushed in time: nothing ended yet."""
        self._timed(LIB.lsec_channel_shutdown, timeout)

    def recv(self, timeout=None):
        """Receive one whole message as bytes.

        Raises Timeout (a partial message is kept for the next call),
        WouldBlock for timeout 0, ClosedError when the peer closed cleanly,
        ConnectionLostError when it vanished, ProtocolError for a length
        above max_message.
        """
        if timeout is None:
            # The hot path: _acquire and _release inlined.
            users = self._users
            users.append(None)
            try:
                if self._closing:  # (_ptr is None only once closing)
                    raise _invalid("channel is closed")
                rc = _lsec_recv(self._cp, self._bufp, self._capp, self._lenp,
                                _SLICE_MS)
                if rc == 0:
                    return self._buf[:self._len.value]
                return self._recv_more(rc, None, False)
            finally:
                users.pop()
                if self._closing:
                    self._free_if_idle()
        return self._recv_general(timeout)

    def _recv_general(self, timeout=None):
        """recv for every timeout; the hot path aside."""
        deadline = _deadline(timeout)
        self._acquire()
        try:
            return self._recv_more(None, deadline, timeout == 0)
        finally:
            self._release()

    def _recv_more(self, rc, deadline, zero):
        """recv's general loop, with the channel held; `rc`: the result of
        a first call already made with a whole slice, or None."""
        cp, buf, bufp, capp, n, lenp = (self._cp, self._buf, self._bufp,
                                        self._capp, self._len, self._lenp)
        while True:
            rc = self._run(lambda ms: _lsec_recv(cp, bufp, capp, lenp, ms),
                           deadline, zero, rc)
            if rc == 0:
                return buf[:n.value]
            if rc == EMSGSIZE and n.value > len(buf):
                # The message is still queued; retry with room for it.
                buf = (ctypes.c_char * n.value)()
                bufp = ctypes.byref(buf)
                capp = _c_size_t.from_param(len(buf))
                if len(buf) <= _RECV_KEEP_MAX:
                    self._set_buf(buf)
                rc = None
                continue
            raise last_error(rc)

    def recv_into(self, buffer, timeout=None):
        """Receive one whole message into `buffer` (a writable bytes-like
        object: a bytearray, or a memoryview of one); returns its length.
        Saves recv's copy into a new bytes object.

        A message longer than the buffer raises MessageTooLargeError and
        stays queued (recv, or recv_into with a larger buffer, gets it);
        the exception's ``size`` is its length.  Otherwise raises as recv.
        """
        view = memoryview(buffer)
        if view.readonly or not view.c_contiguous:
            raise _invalid("recv_into needs a writable contiguous buffer")
        size = view.nbytes
        # ctypes cannot point into an empty buffer: a 1-byte stand-in of
        # capacity 0 lets an empty message through, and nothing else.
        target = ((ctypes.c_char * size).from_buffer(view.cast("B")) if size
                  else (ctypes.c_char * 1)())
        cap = _c_size_t.from_param(size)
        deadline = _deadline(timeout)
        n = _c_size_t()
        lenp = ctypes.byref(n)
        target = ctypes.byref(target)
        self._acquire()
        try:
            cp = self._cp
            rc = self._run(lambda ms: _lsec_recv(cp, target, cap, lenp, ms),
                           deadline, timeout == 0)
            if rc == 0:
                return n.value
            e = last_error(rc)
            if rc == EMSGSIZE and n.value > size:
                e.size = n.value
            raise e
        finally:
            self._release()
            # Drop the buffer's exports now: a traceback that keeps this
            # frame must not keep the caller's bytearray from resizing.
            target = None
            view.release()

    def send_from_fd(self, fd, max=65536, timeout=None):
        """auth mode: send one message whose payload is read from `fd` (a
        descriptor or an object with fileno(): a pipe, a socket, a file),
        moved inside the kernel (splice) without a copy through Python.
        Returns its length, at most `max` and what the channel's pipe holds
        (256 KiB where the system allows, else 64 KiB); 0 at the end of `fd`
        (nothing sent).  Timeout / WouldBlock: nothing was read or sent.
        ModeError on a tls channel (use send)."""
        fd = fd if isinstance(fd, int) else fd.fileno()
        moved = ctypes.c_size_t()
        self._timed(lambda p, ms: LIB.lsec_send_from_fd(
            p, fd, max, ctypes.byref(moved), ms), timeout)
        return moved.value

    def recv_to_fd(self, fd, timeout=None):
        """auth mode: receive one message and write its payload to `fd` (a
        descriptor or an object with fileno()), moved inside the kernel.
        Returns the bytes written by this call (the whole message, or its
        rest after a Timeout / WouldBlock, which leaves the message under way
        for the next recv_to_fd; recv raises InvalidArgumentError until it is
        done).  ModeError on a tls channel (use recv)."""
        fd = fd if isinstance(fd, int) else fd.fileno()
        moved = ctypes.c_size_t()
        total = [0]

        def call(p, ms):
            rc = LIB.lsec_recv_to_fd(p, fd, ctypes.byref(moved), ms)
            total[0] += moved.value
            return rc
        self._timed(call, timeout)
        return total[0]

    def __iter__(self):
        """Yield messages until the peer closes cleanly."""
        recv = self.recv
        while True:
            try:
                m = recv()
            except _errors.ClosedError as e:
                if e.code == ECLOSED:
                    return
                raise
            yield m

    def fileno(self):
        """The socket, for select/poll: readable means recv may progress.
        In either mode call recv(timeout=0) first while `pending` is
        non-zero: a whole message may already wait inside the channel.
        That is for level-triggered waits (select, poll, selectors); with
        edge-triggered epoll (EPOLLET), call recv(timeout=0) until
        WouldBlock before each wait.  Do not read or write the socket."""
        return self._call(LIB.lsec_channel_fd)

    @property
    def pending(self):
        """Bytes recv can deliver without the socket (whole messages read
        ahead, or decrypted TLS data) that select() cannot see."""
        return self._call(LIB.lsec_channel_pending)

    @property
    def mode(self):
        """"auth" or "tls"."""
        return _MODE_NAMES.get(self._mode, str(self._mode))

    @property
    def peer(self):
        """Peer(uid, pid, port, local_port); None where not visible."""
        out = PeerStruct()
        self._call(LIB.lsec_channel_peer, ctypes.byref(out))
        return Peer(*(None if v < 0 else v for v in
                      (out.uid, out.pid, out.port, out.local_port)))

    def __repr__(self):
        if self.closed:
            return "<loopsec.Channel closed>"
        return "<loopsec.Channel mode=%s>" % (self.mode,)


if not _GIL:
    # A free-threaded build: the hot paths' lock-free busy steps need the
    # GIL's ordering, so send and recv are the general paths, whose
    # _acquire/_release take the lock.
    Channel._send_general.__doc__ = Channel.send.__doc__
    Channel._recv_general.__doc__ = Channel.recv.__doc__
    Channel.send = Channel._send_general
    Channel.recv = Channel._recv_general


class Listener(_Handle):
    """A listening endpoint with its own fresh secret.

    ``ticket`` is a credential: hand it only to the intended peer.
    """

    _kind = "listener"
    _free = staticmethod(LIB.lsec_listener_close)
    _abort = staticmethod(LIB.lsec_listener_abort)

    def __init__(self, ptr, mode):
        _Handle.__init__(self, ptr)
        self._port = check(LIB.lsec_listener_port(ptr))
        self._mode = mode

    @property
    def port(self):
        return self._port

    @property
    def mode(self):
        return _MODE_NAMES[self._mode]

    @property
    def ticket(self):
        """The ticket (a credential; never logged by this package)."""
        cap = LIB.lsec_ticket_max()
        buf = ctypes.create_string_buffer(cap)
        try:
            self._call(LIB.lsec_listener_ticket, buf, cap)
            return buf.value.decode("ascii")
        finally:
            ctypes.memset(buf, 0, cap)

    @property
    def redacted_ticket(self):
        """The ticket with its secret replaced, safe to show or log."""
        t = self.ticket
        return ticket_redact(t)

    def accept(self, timeout=None):
        """Wait for one authenticated peer; returns a Channel.

        Raises Timeout, WouldBlock (timeout 0), LimitError after max_accepts
        peers.  Failed attempts by other clients do not end the wait.
        """
        out = ctypes.c_void_p()
        self._timed(lambda p, ms: LIB.lsec_accept(p, ms, ctypes.byref(out)),
                    timeout)
        return Channel(out.value)

    def write_file(self, path=None):
        """Write the ticket to a 0600 connection file (default under
        $XDG_RUNTIME_DIR/loopsec/); returns the path.  Removed on close."""
        arg = None if path is None else _text_arg(path, "path")
        out = ctypes.create_string_buffer(PATH_MAX)
        self._call(LIB.lsec_listener_write_file, arg, out, PATH_MAX)
        return os.fsdecode(out.value)

    def announce(self):
        """In a helper started by spawn_listening: hand the ticket to the
        parent over the inherited descriptor."""
        try:
            self._call(LIB.lsec_listener_announce)
        finally:
            _sync_environ(ENV_ANNOUNCE_FD)

    def fileno(self):
        """The listening descriptor: readable means "call accept"."""
        return self._call(LIB.lsec_listener_fd)

    @property
    def failures(self):
        """How many connections failed or were refused so far (the log's
        WARN lines for them are rate limited; this count is not)."""
        return self._call(LIB.lsec_listener_failures)

    def __repr__(self):
        # Port and mode only: never the ticket.
        if self.closed:
            return "<loopsec.Listener closed>"
        return "<loopsec.Listener port=%d mode=%s>" % (self._port, self.mode)


class Helper(_Handle):
    """A helper process started by spawn / spawn_listening.

    close() (and leaving a with block) kills a helper that still runs,
    unless it was started with survive=True.
    """

    _kind = "helper"
    _free = staticmethod(LIB.lsec_helper_free)

    def __init__(self, ptr):
        _Handle.__init__(self, ptr)
        self.pid = LIB.lsec_helper_pid(ptr)
        self.returncode = None

    def wait(self, timeout=None):
        """Wait for the helper to exit; returns its return code (negative:
        killed by that signal), as subprocess does.  Raises Timeout."""
        if self.returncode is not None:
            return self.returncode
        status = ctypes.c_int()
        self._timed(
            lambda p, ms: LIB.lsec_helper_wait(p, ms, ctypes.byref(status)),
            timeout)
        self.returncode = os.waitstatus_to_exitcode(status.value)
        return self.returncode

    def poll(self):
        """The return code if the helper has exited, else None."""
        try:
            return self.wait(0)
        except (_errors.WouldBlock, _errors.Timeout):
            return None

    def kill(self, sig=None):
        """Send `sig` (default SIGKILL) to the helper if not yet reaped."""
        self._call(LIB.lsec_helper_kill,
                   signal.SIGKILL if sig is None else int(sig))

    def terminate(self):
        self.kill(signal.SIGTERM)

    def __repr__(self):
        state = ("returncode=%d" % self.returncode
                 if self.returncode is not None else "running")
        return "<loopsec.Helper pid=%d %s>" % (self.pid, state)


# ---------------------------------------------------------------------------
# Module-level functions.


def check_address(text, allow_127_8=False):
    """The normal form of a loopback "host:port" ("127.0.0.1:80",
    "[::1]:80"); raises NotLoopbackError or InvalidArgumentError (both
    ValueErrors) for anything else."""
    arg = _text_arg(text, "address")
    cap = LIB.lsec_addr_max()
    out = ctypes.create_string_buffer(cap)
    check(LIB.lsec_addr_check(arg, ADDR_ALLOW_127_8 if allow_127_8 else 0,
                              out, cap))
    return out.value.decode("ascii")


def harden_process():
    """Opt in to process hardening (lsec_harden_process): no core dumps
    (RLIMIT_CORE 0) and not dumpable (PR_SET_DUMPABLE 0), for the rest of
    the process's life.  Raises SystemCallError if a step fails."""
    check(LIB.lsec_harden_process())


def port_owner(port):
    """PortOwner(pid, uid, user, command) of whoever listens on a loopback
    port, or None when nobody does."""
    try:
        return port_owner_raw(port)
    except _errors.NotFoundError:
        return None


def port_owner_raw(port):
    """port_owner, raising NotFoundError (with the library's detail) when
    nobody listens."""
    _int_arg(port, "port", 0, 65535)
    out = PortOwnerStruct()
    check(LIB.lsec_port_owner_get(port, ctypes.byref(out)))
    return PortOwner(
        None if out.pid < 0 else out.pid,
        None if out.uid < 0 else out.uid,
        out.user.decode("utf-8", "replace") or None,
        out.command.decode("utf-8", "replace") or None)


def listeners(port=None):
    """Every TCP listener on a loopback or wildcard address (0.0.0.0, ::),
    or only those on `port`: a list of PortListener, [] when none."""
    p = 0 if port is None else _int_arg(port, "port", 1, 65535)
    count = ctypes.c_size_t(0)
    cap = 64
    for _ in range(8):  # the set may grow between counting and filling
        arr = (PortListenerStruct * cap)()
        rc = LIB.lsec_port_listeners(p, arr, cap, ctypes.byref(count))
        if rc == _errors.code_of("ENOTFOUND"):
            return []
        if rc != EMSGSIZE:
            check(rc)
            return [PortListener(
                e.addr.decode("ascii", "replace"), e.port, bool(e.wildcard),
                None if e.pid < 0 else e.pid, None if e.uid < 0 else e.uid,
                e.user.decode("utf-8", "replace") or None,
                e.command.decode("utf-8", "replace") or None)
                for e in arr[:count.value]]
        cap = count.value + 16
    check(rc)


def ticket_redact(ticket):
    """The ticket with its secret replaced by "REDACTED"."""
    arg = _text_arg(ticket, "ticket")
    cap = LIB.lsec_ticket_max()
    out = ctypes.create_string_buffer(cap)
    check(LIB.lsec_ticket_redact(arg, out, cap))
    return out.value.decode("ascii")


def listen(bind="127.0.0.1:0", tls=False, *, handshake_timeout=None,
           max_message=None, peer_policy=PEER_SAME_USER, max_accepts=None,
           port_range=None, port_fallback=False, allow_127_8=False,
           backlog=None, max_pending=None, no_route_localnet=False,
           secret=None, instance_id=None):
    """Bind a loopback address with a fresh secret; returns a Listener.

    secret, instance_id: bytes (32 and 8) kept by the caller, so that the
    ticket stays the same across restarts (with a fixed port); both or
    neither; an all-zero secret is refused (InvalidArgumentError).

    bind: "127.0.0.1:PORT", "[::1]:PORT" or "localhost:PORT"; port 0 lets
    the kernel pick (or picks in port_range=(lo, hi)).  tls: run every
    channel inside TLS 1.3.  handshake_timeout: seconds per connection
    (None: the library's default).  peer_policy: PEER_SAME_USER (default)
    or PEER_ANY_USER.  max_accepts: stop after that many peers.
    no_route_localnet: refuse to listen on IPv4 (UnsafePermissionsError,
    LSEC_EPERM) when net.ipv4.conf.*.route_localnet is set, which lets
    packets to 127.0.0.0/8 arrive from other hosts (without it: a WARN).

    Raises NotLoopbackError, AddressInUseError (naming the holder), ...
    """
    arg = _text_arg(bind, "bind address")
    o = _opts(tls=tls, handshake_timeout=handshake_timeout,
              max_message=max_message, peer_policy=peer_policy,
              max_accepts=max_accepts, port_range=port_range,
              port_fallback=port_fallback, allow_127_8=allow_127_8,
              backlog=backlog, max_pending=max_pending,
              no_route_localnet=no_route_localnet)
    out = ctypes.c_void_p()
    if secret is None and instance_id is None:
        check(LIB.lsec_listen(arg, ctypes.byref(o), ctypes.byref(out)))
    else:
        if not isinstance(secret, bytes) or not isinstance(instance_id, bytes):
            raise _invalid("secret and instance_id must both be bytes")
        check(LIB.lsec_listen_keyed(arg, ctypes.byref(o), secret, len(secret),
                                    instance_id, len(instance_id),
                                    ctypes.byref(out)))
    return Listener(out.value, o.mode)


def _total_ms(timeout):
    """A whole timeout for one unsliced C call (a connect or a spawn cannot
    be resumed after its timeout): -1 for None."""
    if timeout is None:
        return -1
    _deadline(timeout)  # validates
    return min(int(math.ceil(float(timeout) * 1000)), _INT_MAX)


def _connect_call(fn, args, timeout, tls, max_message):
    o = _opts(tls=tls, max_message=max_message)
    out = ctypes.c_void_p()
    check(fn(*args, ctypes.byref(o), _total_ms(timeout), ctypes.byref(out)))
    return Channel(out.value)


def connect(ticket, timeout=None, *, tls=None, max_message=None):
    """Connect to the listener named by `ticket` and authenticate.

    tls=True insists on tls mode (an auth ticket then raises ModeError: the
    mode is never negotiated down); None/False follow the ticket.
    """
    return _connect_call(LIB.lsec_connect, (_text_arg(ticket, "ticket"),),
                         timeout, tls, max_message)


def connect_file(path, timeout=None, *, tls=None, max_message=None):
    """Connect with the ticket in a connection file (which must be this
    user's own, 0600).  Raises NotFoundError, UnsafePermissionsError, ..."""
    return _connect_call(LIB.lsec_connect_file, (_text_arg(path, "path"),),
                         timeout, tls, max_message)


_libc_getenv = ctypes.CDLL(None).getenv
_libc_getenv.restype = ctypes.c_char_p
_libc_getenv.argtypes = [ctypes.c_char_p]


def _sync_environ(name):
    """The library removes a rendezvous variable from the C environment
    after use; os.environ is Python's own copy, so drop it there too (else
    our children would inherit a stale descriptor number)."""
    if name in os.environ and _libc_getenv(name.encode()) is None:
        # Deleting from os.environ would unsetenv() again: harmless.
        os.environ.pop(name, None)


def connect_inherited(timeout=None, *, tls=None, max_message=None):
    """In a helper started by spawn(): connect back to the parent with the
    ticket on the inherited descriptor.  NotFoundError when not so started."""
    try:
        return _connect_call(LIB.lsec_connect_inherited, (), timeout, tls,
                             max_message)
    finally:
        _sync_environ(ENV_TICKET_FD)


def announce(listener):
    """In a helper started by spawn_listening(): announce `listener`."""
    listener.announce()


def _spawn_call(fn, argv, timeout, tls, kw):
    arr = _argv_array(argv)
    o = _opts(tls=tls, **kw)
    ms = _total_ms(timeout)
    helper = ctypes.c_void_p()
    chan = ctypes.c_void_p()
    check(fn(arr, ctypes.byref(o), ms, ctypes.byref(helper),
             ctypes.byref(chan)))
    return Helper(helper.value), Channel(chan.value)


def spawn(argv, timeout=None, *, tls=False, survive=False,
          handshake_timeout=None, max_message=None):
    """Start a helper (argv[0] searched in PATH) that connects back with
    connect_inherited(); returns (Helper, Channel) once it has.

    The ticket reaches the helper over an inherited pipe, never argv or the
    environment.  Raises ChildExitedError as soon as the helper dies,
    Timeout if it does not connect in time.
    """
    return _spawn_call(LIB.lsec_spawn, argv, timeout, tls, dict(
        survive=survive, handshake_timeout=handshake_timeout,
        max_message=max_message))


def spawn_listening(argv, timeout=None, *, tls=False, survive=False,
                    max_message=None):
    """Start a helper that listens and announce()s its listener; connect to
    it.  Returns (Helper, Channel)."""
    return _spawn_call(LIB.lsec_spawn_listening, argv, timeout, tls, dict(
        survive=survive, max_message=max_message))


# ---------------------------------------------------------------------------
# Logging.

_LEVELS = {LOG_ERROR: logging.ERROR, LOG_WARN: logging.WARNING,
           LOG_INFO: logging.INFO, LOG_DEBUG: logging.DEBUG}
_log_callback = None  # the ctypes callback now installed, or None
# Every callback ever installed, never dropped: a C thread that started a
# log call just before lsec_set_log replaced it may still be running the
# old one (include/loopsec.h, lsec_set_log), so its thunk must outlive it.
# A process changes its logger a few times; each costs one small object.
_log_thunks = []


def enable_logging(logger=None, max_level=LOG_INFO):
    """Send the library's log lines (refused peers, failed handshakes,
    timeouts; never secrets) to a logging.Logger ("loopsec" by default)."""
    global _log_callback
    lg = logger if logger is not None else logging.getLogger("loopsec")

    def emit(_arg, level, msg):
        try:
            lg.log(_LEVELS.get(level, logging.DEBUG), "%s",
                   msg.decode("utf-8", "replace") if msg else "")
        except Exception:  # never let a logging failure unwind into C
            pass

    cb = LOG_FN(emit)
    _log_thunks.append(cb)  # before C can call it, and for good
    LIB.lsec_set_log(cb, None, int(max_level))
    _log_callback = cb


def disable_logging():
    """Stop sending log lines.  Callbacks installed before are kept alive
    (a C thread may still be finishing a call into one)."""
    global _log_callback
    LIB.lsec_set_log(LOG_FN(), None, 0)
    _log_callback = None
