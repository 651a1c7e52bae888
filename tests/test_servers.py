"""Servers: create_server, create_unix_server, the Server object, accept
batches and connection churn."""

import asyncio
import os
import socket

import pytest

HAS_IPV6 = socket.has_ipv6
try:
    socket.socket(socket.AF_INET6).close()
except OSError:
    HAS_IPV6 = False


async def echo(reader, writer):
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()
    await writer.wait_closed()


async def roundtrip(connect, payload=b"ping"):
    reader, writer = await connect()
    writer.write(payload)
    await writer.drain()
    got = await reader.readexactly(len(payload))
    writer.close()
    await writer.wait_closed()
    return got


def open_fds():
    return len(os.listdir("/proc/self/fd"))


def test_server_object_lifecycle(loop):
    async def main():
        server = await asyncio.start_server(echo, "127.0.0.1", 0)
        assert server.is_serving()
        assert server.get_loop() is loop
        (sock,) = server.sockets
        host, port = sock.getsockname()
        assert await roundtrip(lambda: asyncio.open_connection(host, port)) == b"ping"
        server.close()
        assert not server.is_serving()
        assert server.sockets == ()
        await server.wait_closed()
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection(host, port)

    loop.run_until_complete(main())


def test_server_as_context_manager_and_start_serving(loop):
    async def main():
        server = await asyncio.start_server(echo, "127.0.0.1", 0, start_serving=False)
        assert not server.is_serving()
        async with server:
            await server.start_serving()
            assert server.is_serving()
            port = server.sockets[0].getsockname()[1]
            assert await roundtrip(lambda: asyncio.open_connection("127.0.0.1", port)) == b"ping"
        assert not server.is_serving()

    loop.run_until_complete(main())


def test_serve_forever_cancellation_closes_server(loop):
    async def main():
        server = await asyncio.start_server(echo, "127.0.0.1", 0)
        task = asyncio.ensure_future(server.serve_forever())
        await asyncio.sleep(0)
        with pytest.raises(RuntimeError, match="is already being awaited on serve_forever"):
            await server.serve_forever()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not server.is_serving()

    loop.run_until_complete(main())


@pytest.mark.skipif(not HAS_IPV6, reason="no IPv6")
def test_server_on_several_hosts(loop):
    async def main():
        server = await asyncio.start_server(echo, ["127.0.0.1", "::1", "127.0.0.1"], 0)
        families = sorted(s.family for s in server.sockets)
        assert families == sorted([socket.AF_INET, socket.AF_INET6])
        for s in server.sockets:
            host, port = s.getsockname()[:2]
            assert await roundtrip(lambda: asyncio.open_connection(host, port)) == b"ping"
        server.close()
        await server.wait_closed()

    loop.run_until_complete(main())


def test_server_on_all_interfaces(loop):
    async def main():
        server = await asyncio.start_server(echo, None, 0)
        # One socket per family, each with its own ephemeral port.
        (ipv4,) = [s for s in server.sockets if s.family == socket.AF_INET]
        port = ipv4.getsockname()[1]
        assert await roundtrip(lambda: asyncio.open_connection("127.0.0.1", port)) == b"ping"
        server.close()
        await server.wait_closed()

    loop.run_until_complete(main())


def test_server_with_given_socket_and_reuse_port(loop):
    async def main():
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        server = await asyncio.start_server(echo, sock=sock)
        port = sock.getsockname()[1]
        assert await roundtrip(lambda: asyncio.open_connection("127.0.0.1", port)) == b"ping"
        server.close()
        await server.wait_closed()
        s1 = await asyncio.start_server(echo, "127.0.0.1", 0, reuse_port=True)
        port = s1.sockets[0].getsockname()[1]
        s2 = await asyncio.start_server(echo, "127.0.0.1", port, reuse_port=True)
        for s in (s1, s2):
            s.close()
            await s.wait_closed()

    loop.run_until_complete(main())


def test_address_in_use(loop):
    async def main():
        s1 = await asyncio.start_server(echo, "127.0.0.1", 0, reuse_address=False)
        port = s1.sockets[0].getsockname()[1]
        with pytest.raises(OSError) as info:
            await asyncio.start_server(echo, "127.0.0.1", port, reuse_address=False)
        assert "error while attempting to bind on address" in str(info.value)
        assert info.value.errno == 98
        s1.close()
        await s1.wait_closed()

    loop.run_until_complete(main())


def test_unix_server_and_stale_socket_cleanup(loop, tmp_path):
    path = str(tmp_path / "server.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)
    stale.close()  # leaves the socket file behind
    assert os.path.exists(path)

    async def main():
        server = await asyncio.start_unix_server(echo, path)
        got = await roundtrip(lambda: asyncio.open_unix_connection(path), b"unix")
        assert got == b"unix"
        server.close()
        await server.wait_closed()

    loop.run_until_complete(main())


def test_unix_server_refuses_path_of_a_regular_file(loop, tmp_path):
    path = tmp_path / "not-a-socket"
    path.write_text("data")

    async def main():
        with pytest.raises(OSError) as info:
            await asyncio.start_unix_server(echo, str(path))
        assert f"Address {str(path)!r} is already in use" in str(info.value)

    loop.run_until_complete(main())
    assert path.read_text() == "data"


def test_accepts_a_burst_of_connections(loop):
    async def main():
        accepted = []

        def handler(reader, writer):
            accepted.append(writer)

        server = await asyncio.start_server(handler, "127.0.0.1", 0, backlog=200)
        port = server.sockets[0].getsockname()[1]
        socks = []
        for _ in range(150):
            s = socket.create_connection(("127.0.0.1", port))
            socks.append(s)
        while len(accepted) < 150:
            await asyncio.sleep(0.001)
        for w in accepted:
            w.close()
        for s in socks:
            s.close()
        server.close()
        await server.wait_closed()

    loop.run_until_complete(main())


def test_ten_thousand_connections_leak_no_descriptors(loop):
    async def main():
        server = await asyncio.start_server(echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        await roundtrip(lambda: asyncio.open_connection("127.0.0.1", port))
        before = open_fds()
        for _ in range(10_000):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            await writer.wait_closed()
        # Let the server side notice the last closes.
        for _ in range(100):
            if open_fds() <= before:
                break
            await asyncio.sleep(0.01)
        assert open_fds() <= before
        server.close()
        await server.wait_closed()

    loop.run_until_complete(main())


def test_connect_accepted_socket(loop):
    async def main():
        listener = socket.create_server(("127.0.0.1", 0))
        client = socket.create_connection(listener.getsockname())
        conn, _ = listener.accept()
        transport, protocol = await loop.connect_accepted_socket(asyncio.Protocol, conn)
        assert transport.get_extra_info("peername") == client.getsockname()
        transport.close()
        await asyncio.sleep(0.01)
        assert client.recv(10) == b""
        client.close()
        listener.close()

    loop.run_until_complete(main())
