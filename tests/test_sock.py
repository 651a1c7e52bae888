"""sock_* coroutines, DNS, sendfile."""

import asyncio
import errno
import gc
import io
import os
import socket
import struct
import sys
import tempfile
from unittest import mock

import pytest


def nothing_registered(loop, sock):
    """True if no reader or writer callback is left for ``sock``."""
    return not loop.remove_reader(sock) and not loop.remove_writer(sock)


def test_sock_recv_and_sendall(loop, pair):
    a, b = pair

    async def main():
        recv = asyncio.ensure_future(loop.sock_recv(a, 100))
        await asyncio.sleep(0)
        await loop.sock_sendall(b, b"hello")
        assert await recv == b"hello"
        buf = bytearray(10)
        recv_into = asyncio.ensure_future(loop.sock_recv_into(a, buf))
        await asyncio.sleep(0)
        await loop.sock_sendall(b, b"abc")
        assert await recv_into == 3 and buf[:3] == b"abc"

    loop.run_until_complete(main())
    assert nothing_registered(loop, a) and nothing_registered(loop, b)


def test_sock_sendall_large_payload(loop, pair):
    a, b = pair
    payload = os.urandom(8 * 1024 * 1024)

    async def main():
        send = asyncio.ensure_future(loop.sock_sendall(a, payload))
        received = bytearray()
        while len(received) < len(payload):
            received += await loop.sock_recv(b, 1 << 20)
        await send
        assert bytes(received) == payload

    loop.run_until_complete(main())


def test_sock_connect_accept(loop):
    async def main():
        listener = socket.socket()
        listener.setblocking(False)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        client = socket.socket()
        client.setblocking(False)
        accept = asyncio.ensure_future(loop.sock_accept(listener))
        await loop.sock_connect(client, listener.getsockname())
        conn, addr = await accept
        assert addr == client.getsockname()
        assert conn.gettimeout() == 0
        await loop.sock_sendall(conn, b"x")
        assert await loop.sock_recv(client, 1) == b"x"
        for s in (conn, client, listener):
            s.close()

    loop.run_until_complete(main())


def test_sock_connect_refused(loop):
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    address = probe.getsockname()
    probe.close()

    async def main():
        with socket.socket() as s:
            s.setblocking(False)
            with pytest.raises(ConnectionRefusedError):
                await loop.sock_connect(s, address)
            assert nothing_registered(loop, s)

    loop.run_until_complete(main())


@pytest.mark.parametrize("how", ["sock_connect", "create_connection"])
def test_refused_connection_error_keeps_no_frame_alive(loop, how):
    """The exception of a refused connection is referenced by nothing of the
    loop's once caught: no future kept alive by a frame of its traceback
    (CPython gh-124859; anyio's test_happy_eyeballs_refcycles)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    errors = []

    async def attempt():
        try:
            if how == "create_connection":
                await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
            else:
                with socket.socket() as sock:
                    sock.setblocking(False)
                    await loop.sock_connect(sock, ("127.0.0.1", port))
        except OSError as exc:
            errors.append(exc)

    loop.run_until_complete(loop.create_task(attempt()))
    exc = errors.pop()
    assert isinstance(exc, ConnectionRefusedError)
    assert gc.get_referrers(exc) == []


def test_sock_datagrams(loop):
    async def main():
        a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for s in (a, b):
            s.setblocking(False)
            s.bind(("127.0.0.1", 0))
        recv = asyncio.ensure_future(loop.sock_recvfrom(a, 100))
        await asyncio.sleep(0)
        assert await loop.sock_sendto(b, b"dgram", a.getsockname()) == 5
        assert await recv == (b"dgram", b.getsockname())
        buf = bytearray(100)
        recv_into = asyncio.ensure_future(loop.sock_recvfrom_into(a, buf))
        await asyncio.sleep(0)
        await loop.sock_sendto(b, b"into", a.getsockname())
        assert await recv_into == (4, b.getsockname())
        a.close()
        b.close()

    loop.run_until_complete(main())


def test_blocking_socket_rejected_in_debug_mode(loop, pair):
    a, _ = pair
    a.setblocking(True)
    loop.set_debug(True)

    async def main():
        with pytest.raises(ValueError, match="the socket must be non-blocking"):
            await loop.sock_recv(a, 1)

    loop.run_until_complete(main())


def fill(sock):
    """Fills the send buffer of a non-blocking socket."""
    try:
        while True:
            sock.send(b"\0" * 65536)
    except BlockingIOError:
        pass


def _udp():
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.setblocking(False)
    u.bind(("127.0.0.1", 0))
    return u


def _listener(backlog=None):
    listener = socket.socket()
    listener.setblocking(False)
    listener.bind(("127.0.0.1", 0))
    listener.listen() if backlog is None else listener.listen(backlog)
    return listener


# Each case starts an operation that cannot complete: (coroutine, the socket
# it waits on, other sockets to close afterwards).
CANCEL_CASES = {
    "recv": lambda loop, a: (loop.sock_recv(a, 1), a, []),
    "recv_into": lambda loop, a: (loop.sock_recv_into(a, bytearray(1)), a, []),
    "sendall": lambda loop, a: (fill(a) or loop.sock_sendall(a, b"\0" * (1 << 20)), a, []),
    "accept": lambda loop, a: (lambda s: (loop.sock_accept(s), s, []))(_listener()),
    "recvfrom": lambda loop, a: (lambda u: (loop.sock_recvfrom(u, 10), u, []))(_udp()),
    "recvfrom_into": lambda loop, a: (lambda u: (loop.sock_recvfrom_into(u, bytearray(10)), u, []))(_udp()),
    "connect": lambda loop, a: _connect_case(loop),
}


def _connect_case(loop):
    # A listener that never accepts, with its backlog full: further
    # connection attempts on loopback wait for a SYN-ACK that never comes.
    listener = _listener(0)
    address = listener.getsockname()
    others = [listener]
    for _ in range(8):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect(address)
        except BlockingIOError:
            pass
        others.append(s)
    client = socket.socket()
    client.setblocking(False)
    return loop.sock_connect(client, address), client, others


@pytest.mark.parametrize("case", sorted(CANCEL_CASES))
def test_cancelled_sock_operation_leaves_nothing_registered(loop, pair, case):
    a, _ = pair
    coro, sock, others = CANCEL_CASES[case](loop, a)

    async def main():
        task = asyncio.ensure_future(coro)
        for _ in range(5):
            await asyncio.sleep(0)
        assert not task.done(), "the operation should be waiting"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0)
        assert nothing_registered(loop, sock)

    try:
        loop.run_until_complete(main())
    finally:
        for s in others + ([sock] if sock is not a else []):
            s.close()


def _tcp_pair():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    for s in (client, server):
        s.setblocking(False)
    return client, server


def test_peer_reset_while_waiting_raises_connection_reset(loop):
    client, server = _tcp_pair()

    async def main():
        recv = asyncio.ensure_future(loop.sock_recv(client, 100))
        await asyncio.sleep(0.01)
        assert not recv.done()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        server.close()
        with pytest.raises(ConnectionResetError) as info:
            await recv
        assert info.value.errno == errno.ECONNRESET
        assert nothing_registered(loop, client)

    try:
        loop.run_until_complete(main())
    finally:
        client.close()


def test_errors_of_the_first_attempt(loop, pair):
    a, b = pair
    b.close()

    async def main():
        # The peer is gone: sending fails with EPIPE, receiving reads EOF.
        with pytest.raises(BrokenPipeError) as info:
            await loop.sock_sendall(a, b"x")
        assert info.value.errno == errno.EPIPE
        assert await loop.sock_recv(a, 10) == b""
        with pytest.raises(TypeError, match="a bytes-like object is required, not 'str'"):
            await loop.sock_sendall(a, "text")
        with pytest.raises(TypeError):
            await loop.sock_recv_into(a, b"read-only")
        with pytest.raises(TypeError, match="read-write"):
            await loop.sock_recv_into(a, "text")
        a.close()
        for operation in (loop.sock_recv(a, 10), loop.sock_sendall(a, b"x"),
                          loop.sock_recv_into(a, bytearray(1))):
            with pytest.raises(OSError) as info:
                await operation
            assert info.value.errno == errno.EBADF

    loop.run_until_complete(main())


def test_socket_subclass_methods_are_used(loop, pair):
    calls = []

    class Recording(socket.socket):
        def recv(self, n, *args):
            calls.append(("recv", n))
            return super().recv(n, *args)

        def send(self, data, *args):
            calls.append(("send", bytes(data)))
            return super().send(data, *args)

    a, b = pair
    sock = Recording(fileno=os.dup(a.fileno()))
    sock.setblocking(False)

    async def main():
        await loop.sock_sendall(sock, b"ping")
        assert await loop.sock_recv(b, 10) == b"ping"
        await loop.sock_sendall(b, b"pong")
        assert await loop.sock_recv(sock, 10) == b"pong"

    try:
        loop.run_until_complete(main())
    finally:
        sock.close()
    assert calls == [("send", b"ping"), ("recv", 10)]


def test_waiting_on_a_transport_socket_is_refused(loop, pair):
    a, b = pair

    async def main():
        transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, a)
        with pytest.raises(RuntimeError, match="is used by transport"):
            await loop.sock_recv(a, 10)
        transport.close()
        await asyncio.sleep(0)

    loop.run_until_complete(main())


def test_a_second_wait_displaces_the_first(loop, pair):
    a, b = pair

    async def main():
        first = asyncio.ensure_future(loop.sock_recv(a, 10))
        await asyncio.sleep(0)
        second = asyncio.ensure_future(loop.sock_recv(a, 10))
        await asyncio.sleep(0)
        b.send(b"data")
        assert await second == b"data"
        await asyncio.sleep(0.01)
        assert not first.done()
        first.cancel()
        await asyncio.sleep(0)
        assert nothing_registered(loop, a)

    loop.run_until_complete(main())


def test_sendall_pins_its_buffer_while_waiting(loop, pair):
    a, b = pair
    fill(a)
    data = bytearray(b"x" * (1 << 20))

    async def main():
        send = asyncio.ensure_future(loop.sock_sendall(a, data))
        await asyncio.sleep(0)
        assert not send.done()
        with pytest.raises(BufferError):
            data.extend(b"more")
        received = 0
        while received < (1 << 20):
            received += len(await loop.sock_recv(b, 1 << 16))
        await send
        data.extend(b"more")

    loop.run_until_complete(main())


def test_recv_larger_than_the_shared_buffer(loop, pair):
    a, b = pair
    payload = os.urandom(200_000)

    async def main():
        recv = asyncio.ensure_future(loop.sock_recv(a, 1 << 20))
        await asyncio.sleep(0)
        b.send(payload)
        data = await recv
        assert len(data) > 0 and payload.startswith(data)

    loop.run_until_complete(main())


def test_getaddrinfo_numeric_and_names(loop):
    async def main():
        infos = await loop.getaddrinfo("127.0.0.1", 80, type=socket.SOCK_STREAM)
        assert infos == socket.getaddrinfo("127.0.0.1", 80, type=socket.SOCK_STREAM)
        infos = await loop.getaddrinfo("localhost", "http", family=socket.AF_INET, type=socket.SOCK_STREAM)
        assert infos == socket.getaddrinfo("localhost", "http", socket.AF_INET, socket.SOCK_STREAM)
        name = await loop.getnameinfo(("127.0.0.1", 80))
        assert name == socket.getnameinfo(("127.0.0.1", 80), 0)
        with pytest.raises(socket.gaierror):
            await loop.getaddrinfo("name.invalid", 80)

    loop.run_until_complete(main())


def test_getaddrinfo_patches_apply_but_numeric_hosts_skip_resolution(loop):
    calls = []
    real = socket.getaddrinfo

    def spy(*args, **kwargs):
        calls.append(args[:2])
        return real(*args, **kwargs)

    async def main():
        server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        with mock.patch("socket.getaddrinfo", spy):
            # A numeric host is used as it is; a name goes to getaddrinfo.
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            assert calls == []
            r, w = await asyncio.open_connection("localhost", port, family=socket.AF_INET)
            w.close()
            assert calls == [("localhost", port)]
        server.close()
        await server.wait_closed()

    loop.run_until_complete(main())


def test_create_connection_tries_every_address(loop):
    async def main():
        server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        dead = socket.socket()
        dead.bind(("127.0.0.1", 0))
        dead_port = dead.getsockname()[1]
        dead.close()
        infos = [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", dead_port)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port)),
        ]

        async def fake_getaddrinfo(*args, **kwargs):
            return infos

        with mock.patch.object(loop, "getaddrinfo", fake_getaddrinfo):
            transport, _ = await loop.create_connection(asyncio.Protocol, "example.test", 1)
            assert transport.get_extra_info("peername")[1] == port
            transport.close()
            infos[1] = infos[0]
            with pytest.raises(ConnectionRefusedError):
                await loop.create_connection(asyncio.Protocol, "example.test", 1)
        server.close()
        await server.wait_closed()

    loop.run_until_complete(main())


def test_happy_eyeballs(loop):
    async def main():
        server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        r, w = await asyncio.open_connection("127.0.0.1", port, happy_eyeballs_delay=0.05, interleave=1)
        assert w.get_extra_info("peername")[1] == port
        w.close()
        server.close()
        await server.wait_closed()

    loop.run_until_complete(main())


@pytest.fixture(params=["regular file", "no descriptor"])
def data_file(request):
    """A file of random bytes: a regular file (sent with os.sendfile), or
    one without a descriptor (read and sent by the fallback)."""
    data = os.urandom(300_000)
    if request.param == "no descriptor":
        yield io.BytesIO(data), data
        return
    with tempfile.TemporaryFile() as f:
        f.write(data)
        f.seek(0)
        yield f, data


def test_sock_sendfile(loop, pair, data_file):
    a, b = pair
    f, data = data_file

    async def main():
        send = asyncio.ensure_future(loop.sock_sendfile(a, f, offset=1000, count=200_000))
        received = bytearray()
        while len(received) < 200_000:
            received += await loop.sock_recv(b, 1 << 20)
        assert await send == 200_000
        assert bytes(received) == data[1000:201_000]
        assert f.tell() == 201_000

    loop.run_until_complete(main())


def test_loop_sendfile_on_a_transport(loop, data_file):
    f, data = data_file

    async def main():
        got = bytearray()
        done = loop.create_future()

        class Sink(asyncio.Protocol):
            def data_received(self, chunk):
                got.extend(chunk)

            def eof_received(self):
                done.set_result(None)

        server = await loop.create_server(Sink, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        transport, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
        transport.write(b"head:")
        sent = await loop.sendfile(transport, f)
        transport.write(b":tail")
        transport.write_eof()
        await asyncio.wait_for(done, 10)
        assert sent == len(data)
        assert bytes(got) == b"head:" + data + b":tail"
        transport.close()
        server.close()
        await server.wait_closed()

    loop.run_until_complete(main())


def test_sendfile_fallback_waits_for_the_write_buffer_and_restores_the_protocol(loop_kind, loop, pair):
    # A file without a descriptor, sent to a peer that reads nothing at
    # first: the fallback waits for the transport's buffer to drain.
    if loop_kind == "asyncio" and sys.version_info >= (3, 12):
        pytest.xfail(
            "asyncio 3.12+ transports queue the memoryview they are given (gh-91166), "
            "and its sendfile fallback then reads the next block into the queued buffer"
        )
    a, b = pair
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)
    data = os.urandom(1_000_000)
    f = io.BytesIO(data)

    async def main():
        transport, protocol = await loop.connect_accepted_socket(asyncio.Protocol, a)
        transport.set_write_buffer_limits(high=4096, low=1024)
        send = asyncio.ensure_future(loop.sendfile(transport, f, offset=10, count=900_000))
        await asyncio.sleep(0.05)
        assert not send.done()
        received = bytearray()
        while len(received) < 900_000:
            received += await loop.sock_recv(b, 1 << 20)
        assert await send == 900_000
        assert bytes(received) == data[10:900_010]
        assert f.tell() == 900_010
        assert transport.get_protocol() is protocol
        assert transport.is_reading()
        transport.close()
        await asyncio.sleep(0)

    loop.run_until_complete(main())


def test_sendfile_argument_errors(loop, pair):
    a, _ = pair

    async def main():
        with tempfile.TemporaryFile(mode="w+") as text:
            with pytest.raises(ValueError, match="file should be opened in binary mode"):
                await loop.sock_sendfile(a, text)
        with tempfile.TemporaryFile() as f:
            with pytest.raises(ValueError, match=r"count must be a positive integer \(got 0\)"):
                await loop.sock_sendfile(a, f, count=0)
            with pytest.raises(ValueError, match=r"offset must be a non-negative integer \(got -1\)"):
                await loop.sock_sendfile(a, f, offset=-1)

    loop.run_until_complete(main())
