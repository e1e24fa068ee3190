"""asyncio support: awaitable recv/send/accept on loopsec objects.

The C calls are made with timeout 0 (they never block the loop); when one
reports "would block", the coroutine waits for the descriptor with
loop.add_reader / add_writer and tries again.  connect() drives the
library's non-blocking connector (lsec_connect_start ...
lsec_connector_step) the same way: no thread.  connect_file() and spawn()
run a whole call, which cannot be resumed, in the loop's default executor
(ctypes releases the GIL there).

    async with await loopsec.aio.connect(ticket, timeout=5) as ch:
        await ch.send(b"ping")
        reply = await ch.recv(timeout=5)

Timeouts are seconds; None waits forever.  They raise loopsec.Timeout.
"""

import asyncio
import ctypes
import functools
import select
import time

from . import _core, _errors
from ._lib import LIB

__all__ = ["recv", "send", "accept", "AsyncChannel", "connect",
           "connect_file", "spawn"]

# The listener's descriptor (lsec_listener_fd) is readable whenever accept
# can make progress: a new connection or bytes of a handshake in progress;
# lsec_listener_timeout_ms says when the earliest pending handshake's
# deadline needs accept to run.  So accept() sleeps on the descriptor until
# that hint, with no periodic wake-up.


def _deadline(timeout):
    return _core._deadline(timeout)


async def _wait_fd(fd, writable, deadline, cap=None):
    """Wait until `fd` is ready, the deadline passes (raises Timeout) or
    `cap` seconds pass (returns)."""
    loop = asyncio.get_running_loop()
    wait = cap
    if deadline is not None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise _errors.make_error(_core.ETIMEDOUT)
        wait = left if wait is None else min(wait, left)
    fut = loop.create_future()

    def ready():
        if not fut.done():
            fut.set_result(None)

    if writable:
        loop.add_writer(fd, ready)
    else:
        loop.add_reader(fd, ready)
    try:
        if wait is None:
            await fut
        else:
            try:
                await asyncio.wait_for(fut, wait)
            except asyncio.TimeoutError:
                pass
    finally:
        if writable:
            loop.remove_writer(fd)
        else:
            loop.remove_reader(fd)


async def recv(ch, timeout=None):
    """Receive one message from a Channel without blocking the loop."""
    deadline = _deadline(timeout)
    while True:
        # Always try the channel first: a whole message may already be read
        # ahead or decrypted inside it (ch.pending > 0) while the socket
        # itself has nothing more to read.
        try:
            return ch.recv(timeout=0)
        except _errors.WouldBlock:
            pass
        await _wait_fd(ch.fileno(), False, deadline)


async def send(ch, data, timeout=None):
    """Send one message on a Channel without blocking the loop; returns
    once the whole message has left the channel."""
    deadline = _deadline(timeout)
    while True:
        try:
            ch.send(data, timeout=0)
            break
        except _errors.WouldBlock:
            await _wait_fd(ch.fileno(), True, deadline)
    # A message partly written is queued inside the channel; push it out so
    # that awaiting send() gives backpressure.
    while True:
        try:
            ch.flush(timeout=0)
            return
        except _errors.WouldBlock:
            await _wait_fd(ch.fileno(), True, deadline)


async def shutdown(ch, timeout=None):
    """End the sending direction of a Channel (half-close) without blocking
    the loop: what is queued is flushed first; receiving goes on."""
    deadline = _deadline(timeout)
    while True:
        try:
            ch.shutdown(timeout=0)
            return
        except _errors.WouldBlock:
            await _wait_fd(ch.fileno(), True, deadline)


def _listener_hint(listener):
    """Seconds until accept must run for a pending handshake's deadline,
    or None when nothing is pending."""
    p = listener._acquire()
    try:
        ms = LIB.lsec_listener_timeout_ms(p)
    finally:
        listener._release()
    return None if ms < 0 else ms / 1000.0


async def accept(listener, timeout=None):
    """Wait for one authenticated peer on a Listener; returns an
    AsyncChannel."""
    deadline = _deadline(timeout)
    while True:
        try:
            return AsyncChannel(listener.accept(timeout=0))
        except _errors.WouldBlock:
            pass
        await _wait_fd(listener.fileno(), False, deadline,
                       _listener_hint(listener))


class AsyncChannel:
    """A Channel for asyncio.  One recv and one send may be awaited at the
    same time (each direction is serialised by its own lock)."""

    def __init__(self, channel):
        self.channel = channel
        self._rlock = asyncio.Lock()
        self._wlock = asyncio.Lock()

    async def recv(self, timeout=None):
        async with self._rlock:
            return await recv(self.channel, timeout)

    async def send(self, data, timeout=None):
        async with self._wlock:
            await send(self.channel, data, timeout)

    async def shutdown(self, timeout=None):
        async with self._wlock:
            await shutdown(self.channel, timeout)

    def close(self):
        self.channel.close()

    async def aclose(self):
        self.channel.close()

    @property
    def closed(self):
        return self.channel.closed

    @property
    def peer(self):
        return self.channel.peer

    @property
    def mode(self):
        return self.channel.mode

    def fileno(self):
        return self.channel.fileno()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        self.close()

    def __aiter__(self):
        return self

    async def __anext__(self):
        try:
            return await self.recv()
        except _errors.ClosedError as e:
            if e.code == _core.ECLOSED:
                raise StopAsyncIteration from None
            raise

    def __repr__(self):
        return "<loopsec.aio.AsyncChannel %r>" % (self.channel,)


async def _in_executor(fn, *args, **kw):
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, functools.partial(fn, *args, **kw))


async def connect(ticket, timeout=None, *, tls=None, max_message=None):
    """loopsec.connect without blocking the loop (and without a thread);
    returns an AsyncChannel.  The arguments are loopsec.connect's."""
    arg = _core._text_arg(ticket, "ticket")
    deadline = _deadline(timeout)
    o = _core._opts(tls=tls, max_message=max_message)
    cn = ctypes.c_void_p()
    _errors.check(LIB.lsec_connect_start(arg, ctypes.byref(o),
                                         ctypes.byref(cn)))
    try:
        fd = LIB.lsec_connector_fd(cn)
        while True:
            out = ctypes.c_void_p()
            rc = LIB.lsec_connector_step(cn, ctypes.byref(out))
            if rc == 0:
                return AsyncChannel(_core.Channel(out.value))
            if rc != _core.EAGAIN:
                _errors.check(rc)
            # The connector's own deadline (the handshake timeout): step
            # when it passes, and the step reports it.
            ms = LIB.lsec_connector_timeout_ms(cn)
            writable = bool(LIB.lsec_connector_events(cn) & select.POLLOUT)
            await _wait_fd(fd, writable, deadline,
                           None if ms < 0 else ms / 1000.0)
    finally:
        LIB.lsec_connector_close(cn)


async def connect_file(path, timeout=None, **kw):
    """loopsec.connect_file in the default executor; an AsyncChannel."""
    return AsyncChannel(await _in_executor(_core.connect_file, path, timeout,
                                           **kw))


async def spawn(argv, timeout=None, **kw):
    """loopsec.spawn in the default executor; (Helper, AsyncChannel)."""
    helper, ch = await _in_executor(_core.spawn, argv, timeout, **kw)
    return helper, AsyncChannel(ch)
