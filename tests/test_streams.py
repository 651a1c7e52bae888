"""asyncio streams (``open_connection``, ``start_server``, a
``StreamReaderProtocol`` over a pipe) on ferroloop and asyncio.

ferroloop's transports feed an exact ``StreamReaderProtocol``'s exact
``StreamReader`` natively (``transports/feed.rs``) and hand anything else to
``data_received``; every test here runs on both loops and must see the same
thing: limits, ``LimitOverrunError``, end of file, the pause at twice the
limit, exceptions and contexts. ``test_native_feed_is_taken`` checks which
path ferroloop takes (no Python frame of ``feed_data`` on the native one).
"""

import asyncio
import contextvars
import gc
import os
import socket
import sys

import pytest

from conftest import take_errors, tls_contexts


async def stream_pair(limit=2**16, protocol_type=None, reader_type=None):
    """A client ``(reader, writer)`` over one end of a socket pair and the
    other end, a non-blocking socket (the peer)."""
    a, b = socket.socketpair()
    b.setblocking(False)
    if protocol_type is None and reader_type is None:
        reader, writer = await asyncio.open_connection(sock=a, limit=limit)
    else:
        loop = asyncio.get_running_loop()
        reader = (reader_type or asyncio.StreamReader)(limit=limit, loop=loop)
        protocol = (protocol_type or asyncio.StreamReaderProtocol)(reader, loop=loop)
        transport, _ = await loop.create_connection(lambda: protocol, sock=a)
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
    return reader, writer, b


async def close(writer, peer):
    writer.close()
    peer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass


async def until(predicate, timeout=5.0):
    """Waits (polling) until ``predicate()`` holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.001)


class ReaderProtocolSubclass(asyncio.StreamReaderProtocol):
    pass


class ReaderSubclass(asyncio.StreamReader):
    pass


def feed_data_calls(run):
    """Runs ``run()`` and counts the Python frames of ``feed_data``."""
    calls = []

    def profile(frame, event, arg):
        if event == "call" and frame.f_code.co_name == "feed_data":
            calls.append(frame)

    sys.setprofile(profile)
    try:
        run()
    finally:
        sys.setprofile(None)
    return len(calls)


def test_start_server_open_connection_echo(loop):
    async def main():
        async def echo(reader, writer):
            while data := await reader.read(100_000):
                writer.write(data)
            writer.close()

        server = await asyncio.start_server(echo, "127.0.0.1", 0)
        host, port = server.sockets[0].getsockname()[:2]
        reader, writer = await asyncio.open_connection(host, port)
        got = []
        for size in (1, 1024, 10 * 1024, 300 * 1024):
            message = os.urandom(size)
            writer.write(message)
            got.append(await reader.readexactly(size) == message)
        writer.write_eof()
        rest = await reader.read()
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()
        return got, rest, reader.at_eof()

    assert loop.run_until_complete(main()) == ([True] * 4, b"", True)


def test_readexactly_readuntil_readline(loop):
    async def main():
        reader, writer, peer = await stream_pair(limit=16)
        out = []
        await loop.sock_sendall(peer, b"abcdef")
        out.append(await reader.readexactly(3))
        await loop.sock_sendall(peer, b"line\n")
        out.append(await reader.readline())
        await loop.sock_sendall(peer, b"x" * 20 + b"|")
        with pytest.raises(asyncio.LimitOverrunError) as overrun:
            await reader.readuntil(b"|")
        out.append(("overrun", overrun.value.consumed, len(reader._buffer)))
        await reader.readexactly(21)
        await loop.sock_sendall(peer, b"y" * 30 + b"\n")
        with pytest.raises(ValueError) as too_long:
            await reader.readline()
        out.append(("readline", type(too_long.value).__name__, str(too_long.value)))
        await loop.sock_sendall(peer, b"partial")
        peer.shutdown(socket.SHUT_WR)
        with pytest.raises(asyncio.IncompleteReadError) as incomplete:
            await reader.readuntil(b"|")
        out.append(("incomplete", incomplete.value.partial, incomplete.value.expected))
        out.append((await reader.read(), reader.at_eof()))
        await close(writer, peer)
        return out

    assert loop.run_until_complete(main()) == [
        b"abc",
        b"defline\n",
        ("overrun", 20, 21),
        ("readline", "ValueError", "Separator is found, but chunk is longer than limit"),
        ("incomplete", b"partial", None),
        (b"", True),
    ]


def test_readexactly_incomplete_at_eof(loop):
    async def main():
        reader, writer, peer = await stream_pair()
        await loop.sock_sendall(peer, b"12345")
        peer.close()
        with pytest.raises(asyncio.IncompleteReadError) as incomplete:
            await reader.readexactly(10)
        writer.close()
        return incomplete.value.partial, incomplete.value.expected, reader.at_eof()

    assert loop.run_until_complete(main()) == (b"12345", 10, True)


def test_read_until_eof_in_many_chunks(loop):
    async def main():
        reader, writer, peer = await stream_pair(limit=1024)
        payload = os.urandom(200_000)

        async def send():
            await loop.sock_sendall(peer, payload)
            peer.shutdown(socket.SHUT_WR)

        sender = asyncio.ensure_future(send())
        data = await reader.read()
        await sender
        await close(writer, peer)
        return data == payload, reader.at_eof(), reader._paused

    assert loop.run_until_complete(main()) == (True, True, False)


def test_pause_at_twice_the_limit_and_resume(loop):
    limit = 1000

    async def main():
        reader, writer, peer = await stream_pair(limit=limit)
        transport = writer.transport
        states = [(transport.is_reading(), reader._paused)]
        # Exactly twice the limit does not pause; one byte more does.
        await loop.sock_sendall(peer, b"a" * (2 * limit))
        await until(lambda: len(reader._buffer) == 2 * limit)
        await asyncio.sleep(0.01)
        states.append((transport.is_reading(), reader._paused))
        await loop.sock_sendall(peer, b"b")
        await until(lambda: reader._paused)
        states.append((transport.is_reading(), reader._paused, len(reader._buffer)))
        # Reading down to the limit resumes (not one byte above it).
        await reader.readexactly(limit)
        states.append((transport.is_reading(), reader._paused))
        await reader.readexactly(1)
        states.append((transport.is_reading(), reader._paused))
        await close(writer, peer)
        return states

    assert loop.run_until_complete(main()) == [
        (True, False),
        (True, False),
        (False, True, 2 * limit + 1),
        (False, True),
        (True, False),
    ]


def test_waiting_while_paused_resumes(loop):
    async def main():
        reader, writer, peer = await stream_pair(limit=100)
        await loop.sock_sendall(peer, b"z" * 250)
        await until(lambda: reader._paused)
        paused = writer.transport.is_reading()

        async def send_later():
            await asyncio.sleep(0.01)
            await loop.sock_sendall(peer, b"z" * 250)

        sender = asyncio.ensure_future(send_later())
        # More than is buffered: reading resumes while waiting.
        data = await reader.readexactly(400)
        await sender
        await close(writer, peer)
        return paused, len(data)

    assert loop.run_until_complete(main()) == (False, 400)


def test_pause_reading_not_implemented_forgets_the_transport(loop):
    class Unpausable:
        def pause_reading(self):
            raise NotImplementedError

    async def main():
        reader, writer, peer = await stream_pair(limit=10)
        reader._transport = Unpausable()
        await loop.sock_sendall(peer, b"q" * 25)
        await until(lambda: len(reader._buffer) == 25)
        result = (reader._transport, reader._paused, writer.transport.is_reading())
        await close(writer, peer)
        return result

    assert loop.run_until_complete(main()) == (None, False, True)


def test_pause_reading_failure_is_fatal(loop):
    class Broken:
        def pause_reading(self):
            raise RuntimeError("cannot pause")

    async def main():
        reader, writer, peer = await stream_pair(limit=10)
        reader._transport = Broken()
        await loop.sock_sendall(peer, b"q" * 25)
        with pytest.raises(RuntimeError, match="cannot pause"):
            await reader.read()
        await asyncio.sleep(0.01)
        errors = take_errors(loop)
        peer.close()
        return [(e["message"], type(e["exception"]).__name__) for e in errors], writer.transport.is_closing()

    assert loop.run_until_complete(main()) == (
        [("Fatal error: protocol.data_received() call failed.", "RuntimeError")],
        True,
    )


@pytest.mark.parametrize("kind", ["protocol", "reader", "both"])
def test_subclasses_take_the_python_path(loop, kind):
    protocol_type = ReaderProtocolSubclass if kind in ("protocol", "both") else None
    reader_type = ReaderSubclass if kind in ("reader", "both") else None

    async def main():
        reader, writer, peer = await stream_pair(limit=10, protocol_type=protocol_type, reader_type=reader_type)
        await loop.sock_sendall(peer, b"hello\nworld\n")
        lines = [await reader.readline(), await reader.readline()]
        await loop.sock_sendall(peer, b"w" * 25)
        await until(lambda: reader._paused)
        paused = writer.transport.is_reading()
        data = await reader.readexactly(25)
        await close(writer, peer)
        return lines, paused, len(data)

    assert loop.run_until_complete(main()) == ([b"hello\n", b"world\n"], False, 25)


def test_native_feed_is_taken(loop, loop_kind):
    """On ferroloop, an exact StreamReaderProtocol and StreamReader run no
    ``feed_data`` frame; a subclass of either does, as every reader does on
    asyncio's loop."""

    def count(protocol_type=None, reader_type=None):
        async def main():
            reader, writer, peer = await stream_pair(protocol_type=protocol_type, reader_type=reader_type)
            await loop.sock_sendall(peer, b"ping\n")
            await reader.readline()
            await close(writer, peer)

        return feed_data_calls(lambda: loop.run_until_complete(main()))

    exact = count()
    assert (exact == 0) == (loop_kind == "ferroloop")
    assert count(protocol_type=ReaderProtocolSubclass) > 0
    assert count(reader_type=ReaderSubclass) > 0


def test_instance_feed_data_is_called(loop):
    async def main():
        reader, writer, peer = await stream_pair()
        seen = []
        original = reader.feed_data
        reader.feed_data = lambda data: (seen.append(bytes(data)), original(data))
        await loop.sock_sendall(peer, b"abc")
        await until(lambda: seen)
        got = await reader.read(3)
        await close(writer, peer)
        return seen, got

    assert loop.run_until_complete(main()) == ([b"abc"], b"abc")


def test_contexts_of_the_reading_task_and_waiter_callbacks(loop):
    var = contextvars.ContextVar("var", default="unset")

    async def main():
        reader, writer, peer = await stream_pair()
        seen = []

        async def read():
            var.set("reader task")
            data = await reader.read(10)
            seen.append(("task", var.get(), data))

        task = asyncio.ensure_future(read())
        await asyncio.sleep(0)
        waiter = reader._waiter
        context = contextvars.copy_context()
        context.run(var.set, "callback context")
        waiter.add_done_callback(lambda f: seen.append(("callback", var.get())), context=context)
        var.set("main")
        await loop.sock_sendall(peer, b"data")
        await task
        await close(writer, peer)
        return seen, reader._waiter

    assert loop.run_until_complete(main()) == (
        [("task", "reader task", b"data"), ("callback", "callback context")],
        None,
    )


def test_cancelled_waiter(loop):
    async def main():
        reader, writer, peer = await stream_pair()
        waiter = loop.create_future()
        waiter.cancel()
        reader._waiter = waiter
        await loop.sock_sendall(peer, b"after cancel")
        await until(lambda: reader._buffer)
        result = reader._waiter, waiter.cancelled(), await reader.read(100)
        await close(writer, peer)
        return result

    assert loop.run_until_complete(main()) == (None, True, b"after cancel")


def test_cancelled_read_then_data(loop):
    async def main():
        reader, writer, peer = await stream_pair()
        task = asyncio.ensure_future(reader.read(10))
        await asyncio.sleep(0)
        task.cancel()
        await loop.sock_sendall(peer, b"late")
        with pytest.raises(asyncio.CancelledError):
            await task
        data = await reader.read(10)
        await close(writer, peer)
        return data

    assert loop.run_until_complete(main()) == b"late"


def test_waiter_already_done_is_fatal(loop):
    async def main():
        reader, writer, peer = await stream_pair()
        waiter = loop.create_future()
        waiter.set_result("done")
        reader._waiter = waiter
        await loop.sock_sendall(peer, b"data")
        await until(lambda: writer.transport.is_closing())
        await asyncio.sleep(0.01)
        errors = take_errors(loop)
        peer.close()
        return [(e["message"], type(e["exception"]).__name__) for e in errors], bytes(reader._buffer)

    assert loop.run_until_complete(main()) == (
        [("Fatal error: protocol.data_received() call failed.", "InvalidStateError")],
        b"data",
    )


@pytest.mark.skipif(not __debug__, reason="feed_data asserts")
def test_data_after_feed_eof_is_fatal(loop):
    async def main():
        reader, writer, peer = await stream_pair()
        reader.feed_eof()
        await loop.sock_sendall(peer, b"too late")
        await until(lambda: writer.transport.is_closing())
        await asyncio.sleep(0.01)
        errors = take_errors(loop)
        peer.close()
        # connection_lost(exc) hands the exception to the reader.
        with pytest.raises(AssertionError) as raised:
            await reader.read()
        return (
            [(e["message"], type(e["exception"]).__name__, str(e["exception"])) for e in errors],
            bytes(reader._buffer),
            raised.value is errors[0]["exception"],
        )

    assert loop.run_until_complete(main()) == (
        [("Fatal error: protocol.data_received() call failed.", "AssertionError", "feed_data after feed_eof")],
        b"",
        True,
    )


def test_exported_buffer_is_fatal(loop):
    async def main():
        reader, writer, peer = await stream_pair()
        await loop.sock_sendall(peer, b"first")
        await until(lambda: reader._buffer)
        view = memoryview(reader._buffer)
        await loop.sock_sendall(peer, b"second")
        await until(lambda: writer.transport.is_closing())
        await asyncio.sleep(0.01)
        view.release()
        errors = take_errors(loop)
        peer.close()
        return [(e["message"], type(e["exception"]).__name__) for e in errors], bytes(reader._buffer)

    assert loop.run_until_complete(main()) == (
        [("Fatal error: protocol.data_received() call failed.", "BufferError")],
        b"first",
    )


def test_unusual_reader_attributes_are_honoured(loop):
    class Limit(int):
        """A limit whose doubling is seen."""

        def __rmul__(self, other):
            doubled.append(other)
            return int(self) * other

    doubled = []

    async def main():
        reader, writer, peer = await stream_pair()
        reader._limit = Limit(5)
        reader._buffer = bytearray(b">")
        await loop.sock_sendall(peer, b"0123456789A")
        await until(lambda: reader._paused)
        result = bytes(reader._buffer), writer.transport.is_reading()
        await close(writer, peer)
        return result

    assert loop.run_until_complete(main()) == (b">0123456789A", False)
    assert doubled and set(doubled) == {2}


def test_dead_reader_drops_data(loop):
    async def main():
        a, peer = socket.socketpair()
        peer.setblocking(False)
        reader = asyncio.StreamReader(loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        transport, _ = await loop.create_connection(lambda: protocol, sock=a)
        del reader
        gc.collect()
        await loop.sock_sendall(peer, b"nobody reads this")
        await asyncio.sleep(0.02)
        state = protocol._stream_reader, transport.is_closing()
        transport.close()
        peer.close()
        await asyncio.sleep(0)
        return state

    assert loop.run_until_complete(main()) == (None, False)


def test_set_protocol_to_a_stream_protocol(loop):
    async def main():
        a, peer = socket.socketpair()
        peer.setblocking(False)
        transport, first = await loop.create_connection(asyncio.Protocol, sock=a)
        reader = asyncio.StreamReader(loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        await loop.sock_sendall(peer, b"switched\n")
        line = await reader.readline()
        transport.close()
        peer.close()
        await asyncio.sleep(0)
        return line

    assert loop.run_until_complete(main()) == b"switched\n"


def test_read_pipe_stream(loop):
    async def main():
        rfd, wfd = os.pipe()
        reader = asyncio.StreamReader(limit=100, loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        transport, _ = await loop.connect_read_pipe(lambda: protocol, os.fdopen(rfd, "rb", 0))
        os.write(wfd, b"one\ntwo\n" + b"p" * 250)
        lines = [await reader.readline(), await reader.readline()]
        await until(lambda: reader._paused)
        paused = transport.is_reading()
        os.close(wfd)
        rest = await reader.read()
        transport.close()
        await asyncio.sleep(0)
        return lines, paused, len(rest), reader.at_eof()

    assert loop.run_until_complete(main()) == ([b"one\n", b"two\n"], False, 250, True)


def test_tls_streams(loop):
    server_context, client_context = tls_contexts()

    async def main():
        async def echo(reader, writer):
            while data := await reader.read(100_000):
                writer.write(data)
            writer.close()

        server = await asyncio.start_server(echo, "127.0.0.1", 0, ssl=server_context)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_context, server_hostname="localhost", limit=1000
        )
        got = []
        for size in (10, 5000, 100_000):
            message = os.urandom(size)
            writer.write(message)
            got.append(await reader.readexactly(size) == message)
        writer.write(b"x" * 1500 + b"\n")
        with pytest.raises(ValueError):
            await reader.readline()
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()
        return got

    assert loop.run_until_complete(main()) == [True] * 3


def test_start_tls_on_a_stream(loop):
    server_context, client_context = tls_contexts()

    async def main():
        async def handler(reader, writer):
            assert await reader.readline() == b"STARTTLS\n"
            writer.write(b"OK\n")
            await writer.drain()
            await writer.start_tls(server_context)
            line = await reader.readline()
            writer.write(line.upper())
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"STARTTLS\n")
        assert await reader.readline() == b"OK\n"
        await writer.start_tls(client_context, server_hostname="localhost")
        writer.write(b"secret\n")
        reply = await reader.readline()
        over_tls = writer.get_extra_info("sslcontext") is client_context
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()
        return reply, over_tls

    assert loop.run_until_complete(main()) == (b"SECRET\n", True)
