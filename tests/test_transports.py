"""Stream transports over TCP and Unix sockets, on ferroloop and asyncio."""

import asyncio
import hashlib
import logging
import os
import socket
import struct

import pytest

from conftest import take_errors


class Recorder(asyncio.Protocol):
    """Records every protocol event."""

    def __init__(self, loop, keep_open_on_eof=False):
        self.loop = loop
        self.events = []
        self.data = bytearray()
        self.transport = None
        self.keep_open_on_eof = keep_open_on_eof
        self.made = loop.create_future()
        self.lost = loop.create_future()
        self.got_eof = loop.create_future()
        self.paused = self.resumed = 0

    def connection_made(self, transport):
        self.transport = transport
        self.events.append("made")
        self.made.set_result(transport)

    def data_received(self, data):
        if not self.events or self.events[-1] != "data":
            self.events.append("data")
        self.data += data

    def eof_received(self):
        self.events.append("eof")
        self.got_eof.set_result(None)
        return self.keep_open_on_eof

    def connection_lost(self, exc):
        self.events.append(("lost", type(exc).__name__ if exc else None))
        self.lost.set_result(exc)

    def pause_writing(self):
        self.paused += 1

    def resume_writing(self):
        self.resumed += 1


async def tcp_pair(loop, server_protocol=None, client_protocol=None):
    """A connected (server protocol, client protocol, server) triple."""
    server_protocol = server_protocol or Recorder(loop)
    client_protocol = client_protocol or Recorder(loop)
    server = await loop.create_server(lambda: server_protocol, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    await loop.create_connection(lambda: client_protocol, "127.0.0.1", port)
    await server_protocol.made
    await client_protocol.made
    return server_protocol, client_protocol, server


async def send_chunks(client, server_protocol, sizes):
    """Writes a random chunk of each size from ``client``'s transport, each
    once the server protocol has received all before it; returns them all."""
    sent = bytearray()
    for size in sizes:
        chunk = os.urandom(size)
        sent += chunk
        client.transport.write(chunk)
        while len(server_protocol.data) < len(sent):
            await asyncio.sleep(0.001)
    return bytes(sent)


async def finish(server, *protocols):
    for p in protocols:
        if p.transport is not None:
            p.transport.close()
    for p in protocols:
        await asyncio.wait_for(p.lost, 10)
    server.close()
    await server.wait_closed()


def test_transport_is_an_asyncio_transport(loop):
    async def main():
        sp, cp, server = await tcp_pair(loop)
        t = cp.transport
        assert isinstance(t, asyncio.Transport)
        assert isinstance(t, asyncio.ReadTransport) and isinstance(t, asyncio.WriteTransport)
        assert t.get_protocol() is cp
        assert t.get_extra_info("peername") == server.sockets[0].getsockname()
        assert t.get_extra_info("sockname") == sp.transport.get_extra_info("peername")
        sock = t.get_extra_info("socket")
        assert sock.getpeername() == t.get_extra_info("peername")
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        assert t.get_extra_info("nonexistent", "default") == "default"
        assert t.can_write_eof()
        assert t.is_reading() and not t.is_closing()
        assert t.get_write_buffer_limits() == (16384, 65536)
        assert "fd=" in repr(t)
        await finish(server, sp, cp)
        assert t.is_closing()
        assert cp.events == ["made", ("lost", None)]

    loop.run_until_complete(main())


def test_data_flows_both_ways_in_order(loop):
    async def main():
        sp, cp, server = await tcp_pair(loop)
        for i in range(100):
            cp.transport.write(b"%d," % i)
        cp.transport.writelines([b"x", bytearray(b"y"), memoryview(b"z")])
        expected = b"".join(b"%d," % i for i in range(100)) + b"xyz"
        while len(sp.data) < len(expected):
            await asyncio.sleep(0.001)
        assert bytes(sp.data) == expected
        sp.transport.write(b"reply")
        while cp.data != b"reply":
            await asyncio.sleep(0.001)
        await finish(server, sp, cp)

    loop.run_until_complete(main())


def test_large_write_to_slow_reader_uses_flow_control(loop):
    chunk = os.urandom(64 * 1024)
    total_chunks = 160  # 10 MiB

    class SlowReader(Recorder):
        def data_received(self, data):
            super().data_received(data)
            # Read in bursts: pause for a moment every time data arrives.
            self.transport.pause_reading()
            loop.call_later(0.001, self.transport.resume_reading)

    async def main():
        sp, cp, server = await tcp_pair(loop, server_protocol=SlowReader(loop))
        writer = cp.transport
        resumed = asyncio.Event()
        cp.resume_writing = lambda: (setattr(cp, "resumed", cp.resumed + 1), resumed.set())
        digest = hashlib.sha256()
        peak = 0
        for _ in range(total_chunks):
            writer.write(chunk)
            digest.update(chunk)
            peak = max(peak, writer.get_write_buffer_size())
            if cp.paused > cp.resumed:
                resumed.clear()
                await asyncio.wait_for(resumed.wait(), 30)
        writer.write_eof()
        await asyncio.wait_for(sp.got_eof, 30)
        assert len(sp.data) == len(chunk) * total_chunks
        assert hashlib.sha256(sp.data).digest() == digest.digest()
        # Flow control kept the buffer bounded and paused/resumed the writer.
        assert cp.paused >= 1 and cp.resumed == cp.paused
        assert peak <= 64 * 1024 + len(chunk)
        await finish(server, sp, cp)

    loop.run_until_complete(main())


def test_close_flushes_buffer_then_peer_sees_eof(loop):
    payload = os.urandom(4 * 1024 * 1024)

    async def main():
        sp, cp, server = await tcp_pair(loop)
        sp.transport.pause_reading()
        cp.transport.write(payload)
        assert cp.transport.get_write_buffer_size() > 0
        cp.transport.close()
        assert cp.transport.is_closing()
        cp.transport.write_eof()  # a no-op once closing
        sp.transport.resume_reading()
        await asyncio.wait_for(sp.got_eof, 30)
        assert bytes(sp.data) == payload
        assert await cp.lost is None
        await finish(server, sp)

    loop.run_until_complete(main())


def test_half_close_keeps_transport_open_for_writing(loop):
    async def main():
        sp, cp, server = await tcp_pair(loop, server_protocol=Recorder(loop, keep_open_on_eof=True))
        cp.transport.write(b"question")
        cp.transport.write_eof()
        with pytest.raises(RuntimeError, match=r"Cannot call write\(\) after write_eof\(\)"):
            cp.transport.write(b"more")
        await asyncio.wait_for(sp.got_eof, 10)
        assert bytes(sp.data) == b"question"
        assert not sp.transport.is_closing()
        sp.transport.write(b"answer")
        sp.transport.close()
        await asyncio.wait_for(cp.got_eof, 10)
        assert bytes(cp.data) == b"answer"
        await asyncio.wait_for(cp.lost, 10)
        assert sp.events == ["made", "data", "eof", ("lost", None)]
        assert cp.events == ["made", "data", "eof", ("lost", None)]
        await finish(server)

    loop.run_until_complete(main())


def test_abort_drops_buffer_and_closes_at_once(loop):
    async def main():
        sp, cp, server = await tcp_pair(loop)
        sp.transport.pause_reading()
        cp.transport.write(os.urandom(8 * 1024 * 1024))
        assert cp.transport.get_write_buffer_size() > 0
        cp.transport.abort()
        assert cp.transport.get_write_buffer_size() == 0
        assert await asyncio.wait_for(cp.lost, 10) is None
        sp.transport.resume_reading()
        await asyncio.wait_for(sp.lost, 10)
        await finish(server)

    loop.run_until_complete(main())


def test_peer_reset_reaches_connection_lost(loop):
    async def main():
        sp, cp, server = await tcp_pair(loop)
        sock = sp.transport.get_extra_info("socket")
        # SO_LINGER with a zero timeout: closing sends a reset.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sp.transport.abort()
        exc = await asyncio.wait_for(cp.lost, 10)
        assert isinstance(exc, ConnectionResetError)
        assert exc.errno is not None
        await finish(server)

    loop.run_until_complete(main())


def test_write_after_connection_lost_warns_eventually(loop, caplog):
    async def main():
        sp, cp, server = await tcp_pair(loop)
        cp.transport.abort()
        await cp.lost
        with caplog.at_level(logging.WARNING, logger="asyncio"):
            for _ in range(10):
                cp.transport.write(b"lost")
        await finish(server, sp)

    loop.run_until_complete(main())
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings and all(w == "socket.send() raised exception." for w in warnings)


def test_exception_in_data_received_takes_fatal_error_path(loop):
    class Failing(Recorder):
        def data_received(self, data):
            raise ValueError("broken protocol")

    async def main():
        sp, cp, server = await tcp_pair(loop, server_protocol=Failing(loop))
        cp.transport.write(b"boom")
        exc = await asyncio.wait_for(sp.lost, 10)
        assert isinstance(exc, ValueError)
        await asyncio.wait_for(cp.lost, 10)
        await finish(server)
        return sp

    sp = loop.run_until_complete(main())
    (error,) = take_errors(loop)
    assert error["message"] == "Fatal error: protocol.data_received() call failed."
    assert isinstance(error["exception"], ValueError)
    assert error["transport"] is sp.transport
    assert error["protocol"] is sp


def test_exception_in_eof_received_takes_fatal_error_path(loop):
    class Failing(Recorder):
        def eof_received(self):
            raise KeyError("eof")

    async def main():
        sp, cp, server = await tcp_pair(loop, server_protocol=Failing(loop))
        cp.transport.write_eof()
        exc = await asyncio.wait_for(sp.lost, 10)
        assert isinstance(exc, KeyError)
        await finish(server, cp)

    loop.run_until_complete(main())
    (error,) = take_errors(loop)
    assert error["message"] == "Fatal error: protocol.eof_received() call failed."


def test_flow_control_callback_errors_are_reported(loop):
    class BadFlow(Recorder):
        def pause_writing(self):
            raise RuntimeError("pause failed")

    async def main():
        sp, cp, server = await tcp_pair(loop, client_protocol=BadFlow(loop))
        sp.transport.pause_reading()
        cp.transport.set_write_buffer_limits(high=0)
        cp.transport.write(os.urandom(4 * 1024 * 1024))
        sp.transport.resume_reading()
        await finish(server, sp, cp)

    loop.run_until_complete(main())
    (error,) = take_errors(loop)
    assert error["message"] == "protocol.pause_writing() failed"


def test_buffered_protocol_receives_into_its_buffer(loop):
    class Buffered(asyncio.BufferedProtocol):
        def __init__(self):
            self.buffer = bytearray(1000)
            self.received = bytearray()
            self.done = loop.create_future()
            self.sizes = []

        def connection_made(self, transport):
            self.transport = transport

        def get_buffer(self, sizehint):
            self.sizes.append(sizehint)
            return memoryview(self.buffer)[:100]

        def buffer_updated(self, nbytes):
            self.received += self.buffer[:nbytes]

        def eof_received(self):
            self.done.set_result(bytes(self.received))

        def connection_lost(self, exc):
            pass

    payload = os.urandom(50_000)

    async def main():
        proto = Buffered()
        server = await loop.create_server(lambda: proto, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(payload)
        writer.write_eof()
        got = await asyncio.wait_for(proto.done, 10)
        assert got == payload
        assert set(proto.sizes) == {-1}
        writer.close()
        proto.transport.close()
        server.close()
        await server.wait_closed()

    loop.run_until_complete(main())


def test_empty_buffer_from_get_buffer_is_a_fatal_error(loop):
    class Empty(asyncio.BufferedProtocol):
        def connection_made(self, transport):
            self.lost = loop.create_future()

        def get_buffer(self, sizehint):
            return bytearray()

        def buffer_updated(self, nbytes):
            pass

        def connection_lost(self, exc):
            self.lost.set_result(exc)

    async def main():
        proto = Empty()
        server = await loop.create_server(lambda: proto, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"data")
        exc = await asyncio.wait_for(proto.lost, 10)
        assert isinstance(exc, RuntimeError) and "empty buffer" in str(exc)
        writer.close()
        server.close()
        await server.wait_closed()

    loop.run_until_complete(main())
    (error,) = take_errors(loop)
    assert error["message"] == "Fatal error: protocol.get_buffer() call failed."


def test_write_argument_and_limit_errors(loop):
    async def main():
        sp, cp, server = await tcp_pair(loop)
        t = cp.transport
        with pytest.raises(TypeError, match="data argument must be a bytes-like object, not 'str'"):
            t.write("text")
        t.write(b"")  # no-op
        with pytest.raises(ValueError, match=r"high \(1\) must be >= low \(2\) must be >= 0"):
            t.set_write_buffer_limits(high=1, low=2)
        t.set_write_buffer_limits(high=100)
        assert t.get_write_buffer_limits() == (25, 100)
        t.set_write_buffer_limits(low=10)
        assert t.get_write_buffer_limits() == (10, 40)
        await finish(server, sp, cp)

    loop.run_until_complete(main())


def test_set_protocol_switches_receiver(loop):
    async def main():
        sp, cp, server = await tcp_pair(loop)
        other = Recorder(loop)
        sp.transport.set_protocol(other)
        assert sp.transport.get_protocol() is other
        cp.transport.write(b"to the new protocol")
        while bytes(other.data) != b"to the new protocol":
            await asyncio.sleep(0.001)
        assert sp.data == b""
        sp.transport.close()
        await asyncio.wait_for(other.lost, 10)
        await finish(server, cp)

    loop.run_until_complete(main())


def test_add_reader_on_a_transport_descriptor_is_refused(loop):
    async def main():
        sp, cp, server = await tcp_pair(loop)
        fd = cp.transport.get_extra_info("socket").fileno()
        with pytest.raises(RuntimeError, match=f"File descriptor {fd} is used by transport"):
            loop.add_reader(fd, print)
        with pytest.raises(RuntimeError, match="is used by transport"):
            loop.remove_writer(fd)
        await finish(server, sp, cp)
        # Once the transport is closed the descriptor is free again.

    loop.run_until_complete(main())


def test_unix_transport(loop, tmp_path):
    path = str(tmp_path / "sock")

    async def main():
        server_protocol = Recorder(loop)
        server = await loop.create_unix_server(lambda: server_protocol, path)
        client_protocol = Recorder(loop)
        transport, _ = await loop.create_unix_connection(lambda: client_protocol, path)
        await server_protocol.made
        transport.write(b"over unix")
        transport.write_eof()
        await asyncio.wait_for(server_protocol.got_eof, 10)
        assert bytes(server_protocol.data) == b"over unix"
        assert transport.get_extra_info("peername") == path
        assert transport.get_extra_info("socket").family == socket.AF_UNIX
        await finish(server, server_protocol, client_protocol)

    loop.run_until_complete(main())


def test_connection_refused(loop):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()

    async def main():
        with pytest.raises(ConnectionRefusedError) as info:
            await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
        assert info.value.errno is not None

    loop.run_until_complete(main())


def test_create_connection_argument_errors(loop):
    async def main():
        with pytest.raises(ValueError, match="server_hostname is only meaningful with ssl"):
            await loop.create_connection(asyncio.Protocol, "127.0.0.1", 1, server_hostname="x")
        with pytest.raises(ValueError, match="host/port and sock can not be specified at the same time"):
            with socket.socket() as s:
                await loop.create_connection(asyncio.Protocol, "127.0.0.1", 1, sock=s)
        with pytest.raises(ValueError, match="host and port was not specified and no sock specified"):
            await loop.create_connection(asyncio.Protocol)
        with pytest.raises(ValueError, match="A Stream Socket was expected"):
            with socket.socket(type=socket.SOCK_DGRAM) as s:
                await loop.create_connection(asyncio.Protocol, sock=s)
        with pytest.raises(TypeError, match="ssl argument must be an SSLContext or None"):
            await loop.create_server(asyncio.Protocol, "127.0.0.1", 0, ssl=True)
        with pytest.raises(ValueError, match="Neither host/port nor sock were specified"):
            await loop.create_server(asyncio.Protocol)

    loop.run_until_complete(main())


def test_descriptor_reused_after_close_gets_no_stale_events(loop):
    # A transport closes; a new socket gets the same descriptor number; the
    # new owner must see only its own events.
    async def main():
        sp, cp, server = await tcp_pair(loop)
        old_fd = cp.transport.get_extra_info("socket").fileno()
        sp.transport.write(b"late data for the old transport")
        cp.transport.abort()
        await cp.lost
        a, b = socket.socketpair()
        try:
            new_owner = a if a.fileno() == old_fd else b
            other = b if new_owner is a else a
            received = []
            transport, proto = await loop.connect_accepted_socket(lambda: Recorder(loop), new_owner)
            other.sendall(b"fresh")
            while bytes(proto.data) != b"fresh":
                await asyncio.sleep(0.001)
            received.append(bytes(proto.data))
            transport.close()
            await proto.lost
        finally:
            other.close()
        assert received == [b"fresh"]
        await finish(server, sp)

    loop.run_until_complete(main())


def test_nodelay_on_sockets_created_with_proto_zero(loop, loop_kind):
    # A deliberate difference: asyncio sets TCP_NODELAY only when
    # sock.proto == IPPROTO_TCP, so not on socket.socket() objects.
    async def main():
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen()
            client = socket.socket()
            assert client.proto == 0
            client.connect(listener.getsockname())
            conn, _ = listener.accept()
            transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, client)
            nodelay = client.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
            transport.close()
            conn.close()
            await asyncio.sleep(0)
            return nodelay

    assert loop.run_until_complete(main()) == (loop_kind == "ferroloop")


def test_reads_of_changing_sizes_deliver_every_byte_as_bytes(loop):
    # Large and small reads alternate (a transport may receive large reads
    # straight into bytes objects): every chunk is an exact bytes object and
    # the stream arrives intact.
    sizes = [100_000, 100_000, 5, 64 * 1024, 200_000, 1, 300_000, 40_000, 40_000, 7]

    class Chunks(Recorder):
        def data_received(self, data):
            assert type(data) is bytes and len(data) > 0
            super().data_received(data)

    async def main():
        sp, cp, server = await tcp_pair(loop, server_protocol=Chunks(loop))
        sent = await send_chunks(cp, sp, sizes)
        assert bytes(sp.data) == sent
        await finish(server, sp, cp)

    loop.run_until_complete(main())
