"""loopsec.aio: the event loop is never blocked."""

import asyncio
import concurrent.futures
import os
import socket
import threading
import time
import unittest

if __package__:
    from . import support  # noqa: F401  (puts this loopsec on sys.path)
else:  # run with -s tests as the top level
    import support  # noqa: F401

import loopsec
import loopsec.aio



class AioTest(unittest.TestCase):
    def run_async(self, coro):
        return asyncio.run(asyncio.wait_for(coro, 20))

    def test_round_trip_both_modes(self):
        async def main(tls):
            with loopsec.listen(tls=tls) as srv:
                accepting = asyncio.ensure_future(loopsec.aio.accept(srv, 10))
                client = await loopsec.aio.connect(srv.ticket, timeout=10)
                server = await accepting
                # A ticker proves the loop keeps running while we wait.
                ticks = 0

                async def tick():
                    nonlocal ticks
                    while True:
                        await asyncio.sleep(0.01)
                        ticks += 1
                ticker = asyncio.ensure_future(tick())
                async with client, server:
                    big = os.urandom(3 * 1024 * 1024)
                    sending = asyncio.ensure_future(client.send(big))
                    self.assertEqual(await server.recv(timeout=10), big)
                    await sending
                    for i in range(20):
                        await server.send(b"m%d" % i)
                    got = [await client.recv(timeout=5) for _ in range(20)]
                    self.assertEqual(got, [b"m%d" % i for i in range(20)])
                    await asyncio.sleep(0.05)
                    self.assertGreater(ticks, 0)
                    await client.send(b"bye")
                    client.close()
                    self.assertEqual([m async for m in server], [b"bye"])
                ticker.cancel()
        for tls in (False, True):
            with self.subTest(tls=tls):
                self.run_async(main(tls))

    def test_shutdown_half_close(self):
        async def main(tls):
            with loopsec.listen(tls=tls) as srv:
                accepting = asyncio.ensure_future(loopsec.aio.accept(srv, 10))
                client = await loopsec.aio.connect(srv.ticket, timeout=10)
                server = await accepting
                async with client, server:
                    await client.send(b"last request")
                    await client.shutdown(timeout=5)
                    self.assertEqual([m async for m in server],
                                     [b"last request"])
                    await server.send(b"answer after the end")
                    self.assertEqual(await client.recv(timeout=5),
                                     b"answer after the end")
        for tls in (False, True):
            with self.subTest(tls=tls):
                self.run_async(main(tls))

    def test_timeouts(self):
        async def main():
            with loopsec.listen() as srv:
                t0 = time.monotonic()
                with self.assertRaises(loopsec.Timeout):
                    await loopsec.aio.accept(srv, timeout=0.2)
                self.assertLess(time.monotonic() - t0, 1)
                accepting = asyncio.ensure_future(loopsec.aio.accept(srv, 10))
                client = await loopsec.aio.connect(srv.ticket, timeout=10)
                server = await accepting
                with client.channel, server.channel:
                    with self.assertRaises(loopsec.Timeout) as cm:
                        await server.recv(timeout=0.2)
                    self.assertIsInstance(cm.exception, TimeoutError)
        self.run_async(main())

    def test_accept_drops_stalled_client_at_its_deadline(self):
        # No periodic wake-up is needed (issue 13 item 4): the listener's
        # descriptor becomes readable when a pending handshake's deadline
        # passes, so a silent client is dropped at 0.25 s (+0.1 s), while
        # accept() waits -- not at the next 1-second tick.
        async def main(tls):
            with loopsec.listen(tls=tls, handshake_timeout=0.25) as srv:
                accepting = asyncio.ensure_future(loopsec.aio.accept(srv, 3))
                await asyncio.sleep(0.05)  # accept() is waiting on the fd
                r, w = await asyncio.open_connection("127.0.0.1", srv.port)
                t0 = time.monotonic()
                self.assertEqual(await asyncio.wait_for(r.read(1), 2), b"")
                took = time.monotonic() - t0
                w.close()
                self.assertGreaterEqual(took, 0.2)
                self.assertLess(took, 0.35)
                accepting.cancel()
                with self.assertRaises(asyncio.CancelledError):
                    await accepting
        self.assertFalse(hasattr(loopsec.aio, "ACCEPT_POLL"))
        for tls in (False, True):
            with self.subTest(tls=tls):
                self.run_async(main(tls))

    def test_200_concurrent_connects_one_loop_no_thread(self):
        # 200 aio.connect() at once and the accepting side, all on one
        # event loop: no executor (it would raise), no thread started.
        # Every client is served, each message reaches its server channel.
        class NoExecutor(concurrent.futures.ThreadPoolExecutor):
            def submit(self, *a, **kw):
                raise AssertionError("aio used an executor thread")

        n = 200

        async def main(tls):
            asyncio.get_running_loop().set_default_executor(NoExecutor())
            threads = threading.active_count()
            with loopsec.listen(tls=tls, max_pending=2 * n,
                                backlog=2 * n) as srv:
                async def server():
                    got = []
                    for _ in range(n):
                        ch = await loopsec.aio.accept(srv, 15)
                        got.append(ch)
                    return got

                async def client(i):
                    ch = await loopsec.aio.connect(srv.ticket, timeout=15)
                    await ch.send(b"%d" % i)
                    return ch

                accepting = asyncio.ensure_future(server())
                clients = await asyncio.gather(*(client(i) for i in range(n)))
                servers = await accepting
                self.assertEqual(threading.active_count(), threads)
                seen = sorted([int(await s.recv(timeout=5)) for s in servers])
                self.assertEqual(seen, list(range(n)))
                for ch in clients + servers:
                    ch.close()
        for tls in (False, True):
            with self.subTest(tls=tls):
                t0 = time.monotonic()
                self.run_async(main(tls))
                self.assertLess(time.monotonic() - t0, 15)

    def test_connect_timeout(self):
        # A port that accepts connections and never answers: aio.connect
        # raises Timeout at its timeout, not before, not much after.
        async def main():
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                s.listen(4)
                with loopsec.listen() as srv:
                    ticket = srv.ticket.replace(":%d/" % srv.port,
                                                ":%d/" % s.getsockname()[1])
                t0 = time.monotonic()
                with self.assertRaises(loopsec.Timeout):
                    await loopsec.aio.connect(ticket, timeout=0.3)
                took = time.monotonic() - t0
                self.assertGreaterEqual(took, 0.28)
                self.assertLess(took, 1.5)
        self.run_async(main())

    def test_function_forms(self):
        async def main():
            with loopsec.listen(tls=True) as srv:
                accepting = asyncio.ensure_future(loopsec.aio.accept(srv, 10))
                ch = await asyncio.get_running_loop().run_in_executor(
                    None, loopsec.connect, srv.ticket, 10)
                server = await accepting
                with ch, server.channel:
                    await loopsec.aio.send(ch, b"plain channel")
                    self.assertEqual(await loopsec.aio.recv(server.channel, 5),
                                     b"plain channel")
        self.run_async(main())


if __name__ == "__main__":
    unittest.main()
