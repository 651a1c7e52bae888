"""The connections of a server: asyncio's ``Server`` learns of them from the
transports (``_attach``/``_detach``), and ferroloop's native transports tell
it as asyncio's do. So ``wait_closed()`` waits for the accepted connections
to go where asyncio's does (3.12+), and ``close_clients()`` and
``abort_clients()`` (3.13+) close or abort them."""

import asyncio

import pytest

import ferroloop

CLOSE_CLIENTS = hasattr(asyncio.Server, "close_clients")
needs_close_clients = pytest.mark.skipif(not CLOSE_CLIENTS, reason="Server.close_clients() is new in Python 3.13")


class Accepted(asyncio.Protocol):
    """The server side of a connection; ``lost`` resolves with the
    exception (or None) passed to ``connection_lost``."""

    def __init__(self, loop):
        self.transport = None
        self.lost = loop.create_future()

    def connection_made(self, transport):
        self.transport = transport

    def connection_lost(self, exc):
        self.lost.set_result(exc)


async def serve_and_connect(count):
    """A server on a free port and ``count`` clients connected to it, with
    every accepted connection made."""
    loop = asyncio.get_running_loop()
    accepted = []

    def factory():
        accepted.append(Accepted(loop))
        return accepted[-1]

    server = await loop.create_server(factory, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    clients = [await asyncio.open_connection("127.0.0.1", port) for _ in range(count)]
    while len(accepted) < count or any(a.transport is None for a in accepted):
        await asyncio.sleep(0.001)
    return server, accepted, clients


async def close_all(clients):
    for _, writer in clients:
        writer.close()
        try:
            await writer.wait_closed()
        except ConnectionError:
            pass


async def wait_closed_trace():
    """What wait_closed() does while connections outlive their server."""
    trace = []
    server, accepted, clients = await serve_and_connect(2)
    waiter = asyncio.ensure_future(server.wait_closed())
    await asyncio.sleep(0.01)
    trace.append(("open, waiting", waiter.done()))
    server.close()
    await asyncio.sleep(0.01)
    trace.append(("closed, 2 connections", waiter.done()))
    await close_all(clients[:1])
    await accepted[0].lost
    await asyncio.sleep(0.01)
    trace.append(("closed, 1 connection", waiter.done()))
    await close_all(clients[1:])
    await accepted[1].lost
    await asyncio.wait_for(waiter, 5)
    trace.append(("closed, no connection", waiter.done()))
    return trace


def test_wait_closed_waits_for_the_connections_as_asyncio_does():
    traces = {}
    for name, factory in (("ferroloop", ferroloop.new_event_loop), ("asyncio", asyncio.SelectorEventLoop)):
        with asyncio.Runner(loop_factory=factory) as runner:
            traces[name] = runner.run(wait_closed_trace())
    assert traces["ferroloop"] == traces["asyncio"]
    assert traces["asyncio"][-1] == ("closed, no connection", True)


@needs_close_clients
def test_close_clients_closes_every_connection(loop):
    async def main():
        server, accepted, clients = await serve_and_connect(3)
        server.close()
        server.close_clients()
        assert all(a.transport.is_closing() for a in accepted)
        for reader, _ in clients:
            assert await asyncio.wait_for(reader.read(), 5) == b""
        assert [await a.lost for a in accepted] == [None, None, None]
        await asyncio.wait_for(server.wait_closed(), 5)
        await close_all(clients)

    loop.run_until_complete(main())


@needs_close_clients
def test_close_clients_flushes_and_abort_clients_does_not(loop):
    async def main():
        server, [conn], clients = await serve_and_connect(1)
        # More than the kernel buffers take while the client does not read.
        conn.transport.write(b"x" * (16 * 1024 * 1024))
        assert conn.transport.get_write_buffer_size() > 0
        server.close_clients()
        await asyncio.sleep(0.02)
        # Closing waits for the buffered bytes to go out.
        assert conn.transport.is_closing() and not conn.lost.done()
        server.abort_clients()
        assert await asyncio.wait_for(conn.lost, 5) is None
        server.close()
        await asyncio.wait_for(server.wait_closed(), 5)
        await close_all(clients)

    loop.run_until_complete(main())


@needs_close_clients
def test_server_forgets_connections_that_are_gone(loop):
    async def main():
        server, accepted, clients = await serve_and_connect(2)
        assert len(server._clients) == 2
        await close_all(clients[:1])
        await accepted[0].lost
        assert set(server._clients) == {accepted[1].transport}
        server.close()
        server.close_clients()
        await asyncio.wait_for(server.wait_closed(), 5)
        assert len(server._clients) == 0
        await close_all(clients[1:])

    loop.run_until_complete(main())
