"""The ``contextvars`` context of protocol callbacks, on every transport
kind, on both loops.

asyncio runs a transport's readiness callbacks (and so the protocol methods
they call: ``data_received``, ``get_buffer``/``buffer_updated``,
``eof_received``) in a copy of the context current when the transport
started watching its descriptor: for a new transport, the context it was
created in (the task calling ``create_connection``, or the one
``create_server`` ran in). ``connection_made`` and ``connection_lost`` are
scheduled callbacks and capture the context of whoever scheduled them.
Tracing and logging libraries keep request state in context variables, so
each callback must see the value set where the connection was made.
"""

import asyncio
import contextvars
import os
import socket

import pytest

from conftest import tls_contexts

var = contextvars.ContextVar("var", default="default")


class Recorder(asyncio.Protocol):
    """Records ``var`` in every callback."""

    def __init__(self, seen, reply=None):
        self.seen = seen
        self.reply = reply
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport):
        self.transport = transport
        self.seen.append(("connection_made", var.get()))

    def data_received(self, data):
        self.seen.append(("data_received", var.get()))
        if self.reply is not None:
            self.transport.write(self.reply)

    def eof_received(self):
        self.seen.append(("eof_received", var.get()))

    def connection_lost(self, exc):
        self.seen.append(("connection_lost", var.get()))
        if not self.lost.done():
            self.lost.set_result(None)


class BufferedRecorder(asyncio.BufferedProtocol):
    def __init__(self, seen):
        self.seen = seen
        self.buf = bytearray(64)
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport):
        self.seen.append(("connection_made", var.get()))

    def get_buffer(self, sizehint):
        self.seen.append(("get_buffer", var.get()))
        return self.buf

    def buffer_updated(self, nbytes):
        self.seen.append(("buffer_updated", var.get()))

    def eof_received(self):
        self.seen.append(("eof_received", var.get()))

    def connection_lost(self, exc):
        self.seen.append(("connection_lost", var.get()))
        self.lost.set_result(None)


def names(seen):
    return {name for name, _ in seen}


def assert_all(seen, value, expected_names):
    assert names(seen) >= set(expected_names), seen
    assert {v for _, v in seen} == {value}, seen


async def say_and_close(reader, writer):
    writer.write(b"hello")
    await writer.drain()
    writer.close()


async def talk_then_close(reader, writer):
    writer.write(b"hello")
    await writer.drain()
    await reader.read(100)
    writer.close()


@pytest.mark.parametrize("family", ["tcp", "unix"])
def test_client_callbacks_see_the_creating_task(loop, tmp_path, family):
    async def main():
        if family == "tcp":
            server = await asyncio.start_server(talk_then_close, "127.0.0.1", 0)
            address = server.sockets[0].getsockname()
        else:
            address = str(tmp_path / "s.sock")
            server = await asyncio.start_unix_server(talk_then_close, address)
        seen = []

        async def client():
            var.set("client")
            if family == "tcp":
                return await loop.create_connection(lambda: Recorder(seen, b"reply"), *address[:2])
            return await loop.create_unix_connection(lambda: Recorder(seen, b"reply"), address)

        transport, protocol = await asyncio.ensure_future(client())
        await protocol.lost
        server.close()
        await server.wait_closed()
        return seen

    seen = loop.run_until_complete(main())
    assert_all(seen, "client", ["connection_made", "data_received", "eof_received", "connection_lost"])


def test_buffered_protocol_callbacks_see_the_creating_task(loop):
    async def main():
        server = await asyncio.start_server(talk_then_close, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        seen = []

        async def client():
            var.set("buffered")
            transport, protocol = await loop.create_connection(lambda: BufferedRecorder(seen), "127.0.0.1", port)
            transport.write(b"x")
            return protocol

        protocol = await asyncio.ensure_future(client())
        await protocol.lost
        server.close()
        await server.wait_closed()
        return seen

    seen = loop.run_until_complete(main())
    assert_all(seen, "buffered", ["connection_made", "get_buffer", "buffer_updated", "eof_received", "connection_lost"])


def test_server_callbacks_see_the_context_create_server_ran_in(loop):
    async def main():
        seen = []
        done = loop.create_future()

        class Server(Recorder):
            def connection_lost(self, exc):
                super().connection_lost(exc)
                done.set_result(None)

        async def serve():
            var.set("server")
            return await loop.create_server(lambda: Server(seen, b"pong"), "127.0.0.1", 0)

        server = await asyncio.ensure_future(serve())
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"ping")
        await reader.readexactly(4)
        writer.close()
        await done
        server.close()
        await server.wait_closed()
        return seen

    seen = loop.run_until_complete(main())
    assert_all(seen, "server", ["connection_made", "data_received", "eof_received", "connection_lost"])


def test_resume_reading_captures_the_resuming_context(loop):
    async def main():
        server = await asyncio.start_server(say_and_close, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        seen = []
        transport, protocol = await loop.create_connection(lambda: Recorder(seen), "127.0.0.1", port)
        transport.pause_reading()

        async def resume():
            var.set("resumer")
            transport.resume_reading()

        await asyncio.ensure_future(resume())
        await protocol.lost
        server.close()
        await server.wait_closed()
        return seen

    seen = loop.run_until_complete(main())
    read = [v for name, v in seen if name in ("data_received", "eof_received")]
    assert read and set(read) == {"resumer"}, seen


def test_resume_writing_runs_in_the_writing_context(loop):
    async def main():
        a, b = socket.socketpair()
        a.setblocking(False)
        b.setblocking(False)
        seen = []

        class Writer(asyncio.Protocol):
            def connection_made(self, transport):
                self.transport = transport

            def pause_writing(self):
                seen.append(("pause_writing", var.get()))

            def resume_writing(self):
                seen.append(("resume_writing", var.get()))

        transport, _ = await loop.create_connection(Writer, sock=a)

        async def write_a_lot():
            var.set("writer")
            for _ in range(64):
                transport.write(b"x" * 65536)

        await asyncio.ensure_future(write_a_lot())
        while not any(name == "resume_writing" for name, _ in seen):
            try:
                while b.recv(1 << 20):
                    pass
            except BlockingIOError:
                pass
            await asyncio.sleep(0.001)
        transport.abort()
        b.close()
        return seen

    seen = loop.run_until_complete(main())
    assert ("resume_writing", "writer") in seen, seen


def test_read_pipe_callbacks_see_the_creating_task(loop):
    async def main():
        r, w = os.pipe()
        seen = []

        async def connect():
            var.set("pipe")
            return await loop.connect_read_pipe(lambda: Recorder(seen), os.fdopen(r, "rb", 0))

        transport, protocol = await asyncio.ensure_future(connect())
        os.write(w, b"data")
        os.close(w)
        await protocol.lost
        return seen

    seen = loop.run_until_complete(main())
    assert_all(seen, "pipe", ["connection_made", "data_received", "eof_received", "connection_lost"])


def test_tls_callbacks_see_the_creating_task(loop):
    server_ctx, client_ctx = tls_contexts()

    async def main():
        server = await asyncio.start_server(talk_then_close, "127.0.0.1", 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        seen = []

        async def client():
            var.set("tls")
            return await loop.create_connection(
                lambda: Recorder(seen, b"reply"), "127.0.0.1", port, ssl=client_ctx, server_hostname="localhost"
            )

        transport, protocol = await asyncio.ensure_future(client())
        await protocol.lost
        server.close()
        await server.wait_closed()
        return seen

    seen = loop.run_until_complete(main())
    assert_all(seen, "tls", ["connection_made", "data_received", "eof_received", "connection_lost"])


def test_datagram_callbacks_see_the_creating_task(loop):
    async def main():
        seen = []
        got = loop.create_future()

        class Datagrams(asyncio.DatagramProtocol):
            def connection_made(self, transport):
                seen.append(("connection_made", var.get()))

            def datagram_received(self, data, addr):
                seen.append(("datagram_received", var.get()))
                got.set_result(None)

            def connection_lost(self, exc):
                seen.append(("connection_lost", var.get()))

        async def open_endpoint():
            var.set("udp")
            return await loop.create_datagram_endpoint(Datagrams, local_addr=("127.0.0.1", 0))

        transport, _ = await asyncio.ensure_future(open_endpoint())
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
            peer.sendto(b"ping", transport.get_extra_info("sockname"))
            await got

        async def close():
            var.set("closer")
            transport.close()

        await asyncio.ensure_future(close())
        await asyncio.sleep(0)
        return seen

    seen = loop.run_until_complete(main())
    assert seen == [
        ("connection_made", "udp"),
        ("datagram_received", "udp"),
        ("connection_lost", "closer"),
    ]
