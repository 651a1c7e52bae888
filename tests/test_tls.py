"""TLS: ``ssl=`` on connections and servers, ``start_tls``, and every
``SSLContext`` setting honoured, on ferroloop and on stdlib asyncio.

The certificates are made here, by ``trustme``: a CA the clients trust, a
second CA they do not, and leaf certificates for good, mismatched and
expired names.
"""

import asyncio
import datetime
import hashlib
import socket
import ssl
import struct
import tempfile

import pytest

trustme = pytest.importorskip("trustme")

HOST = "127.0.0.1"


class Certs:
    """Certificates and contexts for one test session."""

    def __init__(self):
        self.ca = trustme.CA()
        self.other_ca = trustme.CA()
        self.server = self.ca.issue_cert("localhost", "127.0.0.1")
        self.other_name = self.ca.issue_cert("other.test")
        self.mismatched = self.ca.issue_cert("example.org")
        now = datetime.datetime.now(datetime.timezone.utc)
        self.expired = self.ca.issue_cert(
            "localhost",
            not_before=now - datetime.timedelta(days=10),
            not_after=now - datetime.timedelta(days=1),
        )
        self.untrusted = self.other_ca.issue_cert("localhost")
        self.client = self.ca.issue_cert("client@example.org")

    def server_context(self, cert=None):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        (cert or self.server).configure_cert(ctx)
        return ctx

    def client_context(self, cert=None):
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        self.ca.configure_trust(ctx)
        if cert is not None:
            cert.configure_cert(ctx)
        return ctx


@pytest.fixture(scope="module")
def certs():
    return Certs()


async def echo(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()


async def tls_server(handler, ctx, **kwargs):
    server = await asyncio.start_server(handler, HOST, 0, ssl=ctx, **kwargs)
    return server, server.sockets[0].getsockname()[1]


async def close_server(server):
    server.close()
    await server.wait_closed()


def test_echo_and_extra_info(loop, certs):
    async def main():
        server, port = await tls_server(echo, certs.server_context())
        reader, writer = await asyncio.open_connection(
            HOST, port, ssl=certs.client_context(), server_hostname="localhost"
        )
        writer.write(b"hello over tls")
        await writer.drain()
        assert await reader.readexactly(14) == b"hello over tls"
        transport = writer.transport
        sslobj = transport.get_extra_info("ssl_object")
        assert isinstance(sslobj, ssl.SSLObject)
        assert sslobj.server_hostname == "localhost"
        peercert = transport.get_extra_info("peercert")
        assert ("DNS", "localhost") in peercert["subjectAltName"]
        assert transport.get_extra_info("cipher") == sslobj.cipher()
        assert transport.get_extra_info("compression") == sslobj.compression()
        assert isinstance(transport.get_extra_info("sslcontext"), ssl.SSLContext)
        assert transport.get_extra_info("socket").getpeername()[1] == port
        assert transport.get_extra_info("peername")[1] == port
        writer.close()
        await writer.wait_closed()
        await close_server(server)

    loop.run_until_complete(main())


@pytest.mark.parametrize(
    "server_cert, client_hostname, reason",
    [
        ("untrusted", "localhost", "unable to get local issuer certificate"),
        ("mismatched", "localhost", "Hostname mismatch"),
        ("expired", "localhost", "certificate has expired"),
        ("self_signed", "localhost", "self-signed certificate"),
    ],
)
def test_verification_failures(loop, certs, server_cert, client_hostname, reason):
    async def main():
        if server_cert == "self_signed":
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            with tempfile.NamedTemporaryFile("wb", suffix=".pem") as f:
                f.write(certs.other_ca.cert_pem.bytes() + certs.other_ca.private_key_pem.bytes())
                f.flush()
                ctx.load_cert_chain(f.name)
        else:
            ctx = certs.server_context(getattr(certs, server_cert))
        server, port = await tls_server(echo, ctx)
        with pytest.raises(ssl.SSLCertVerificationError) as info:
            await asyncio.open_connection(
                HOST, port, ssl=certs.client_context(), server_hostname=client_hostname
            )
        assert reason in str(info.value)
        await close_server(server)

    loop.run_until_complete(main())


def test_verification_can_be_turned_off(loop, certs):
    async def main():
        server, port = await tls_server(echo, certs.server_context(certs.untrusted))
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        reader, writer = await asyncio.open_connection(HOST, port, ssl=ctx)
        writer.write(b"x")
        assert await reader.readexactly(1) == b"x"
        assert writer.get_extra_info("peercert") == {}
        writer.close()
        await writer.wait_closed()
        await close_server(server)

    loop.run_until_complete(main())


def test_client_certificate_required(loop, certs):
    async def main():
        ctx = certs.server_context()
        ctx.verify_mode = ssl.CERT_REQUIRED
        certs.ca.configure_trust(ctx)
        seen = []

        async def handler(reader, writer):
            seen.append(writer.get_extra_info("peercert")["subject"])
            await echo(reader, writer)

        server, port = await tls_server(handler, ctx)
        # With a certificate: accepted, and the server sees who it is.
        reader, writer = await asyncio.open_connection(
            HOST, port, ssl=certs.client_context(certs.client), server_hostname="localhost"
        )
        writer.write(b"ok")
        assert await reader.readexactly(2) == b"ok"
        writer.close()
        await writer.wait_closed()
        assert seen and seen[0]
        # Without: the server refuses (in TLS 1.3 after the client's side of
        # the handshake is done, so the client learns it on reading).
        with pytest.raises((ssl.SSLError, ConnectionError)):
            reader, writer = await asyncio.open_connection(
                HOST, port, ssl=certs.client_context(), server_hostname="localhost"
            )
            writer.write(b"no")
            await writer.drain()
            data = await reader.read(10)
            if not data:
                raise ConnectionResetError("closed without data")
        await close_server(server)

    loop.run_until_complete(main())


def test_alpn_negotiation(loop, certs):
    async def main():
        ctx = certs.server_context()
        ctx.set_alpn_protocols(["h2", "http/1.1"])
        chosen = []

        async def handler(reader, writer):
            chosen.append(writer.get_extra_info("ssl_object").selected_alpn_protocol())
            await echo(reader, writer)

        server, port = await tls_server(handler, ctx)
        client = certs.client_context()
        client.set_alpn_protocols(["http/1.1"])
        reader, writer = await asyncio.open_connection(HOST, port, ssl=client, server_hostname="localhost")
        writer.write(b"a")
        await reader.readexactly(1)
        assert writer.get_extra_info("ssl_object").selected_alpn_protocol() == "http/1.1"
        assert chosen == ["http/1.1"]
        writer.close()
        await writer.wait_closed()
        await close_server(server)

    loop.run_until_complete(main())


def test_sni_callback_chooses_the_context(loop, certs):
    async def main():
        ctx = certs.server_context()
        other = certs.server_context(certs.other_name)
        names = []

        def choose(sslobj, server_name, _ctx):
            names.append(server_name)
            if server_name == "other.test":
                sslobj.context = other

        ctx.sni_callback = choose
        server, port = await tls_server(echo, ctx)
        for name in ("localhost", "other.test"):
            reader, writer = await asyncio.open_connection(HOST, port, ssl=certs.client_context(), server_hostname=name)
            assert ("DNS", name) in writer.get_extra_info("peercert")["subjectAltName"]
            writer.close()
            await writer.wait_closed()
        assert names == ["localhost", "other.test"]
        await close_server(server)

    loop.run_until_complete(main())


def test_minimum_version_is_honoured(loop, certs):
    async def main():
        ctx = certs.server_context()
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        server, port = await tls_server(echo, ctx)
        client = certs.client_context()
        client.maximum_version = ssl.TLSVersion.TLSv1_2
        # The server refuses with an alert and closes: the client's handshake
        # ends on end of file.
        with pytest.raises(ConnectionResetError):
            await asyncio.open_connection(HOST, port, ssl=client, server_hostname="localhost")
        reader, writer = await asyncio.open_connection(
            HOST, port, ssl=certs.client_context(), server_hostname="localhost"
        )
        assert writer.get_extra_info("ssl_object").version() == "TLSv1.3"
        writer.close()
        await writer.wait_closed()
        await close_server(server)

    loop.run_until_complete(main())


def test_handshake_timeout(loop, certs):
    async def main():
        # A listening socket that never answers the ClientHello (the kernel
        # completes the TCP handshake; nothing accepts).
        silent = socket.socket()
        silent.bind((HOST, 0))
        silent.listen()
        port = silent.getsockname()[1]
        with pytest.raises(ConnectionError) as info:
            await asyncio.open_connection(
                HOST,
                port,
                ssl=certs.client_context(),
                server_hostname="localhost",
                ssl_handshake_timeout=0.2,
            )
        assert "SSL handshake is taking longer than 0.2 seconds" in str(info.value)
        silent.close()

    loop.run_until_complete(main())


def test_shutdown_timeout_aborts_a_peer_that_never_answers(loop, certs):
    async def main():
        handshaken = asyncio.Event()
        server_side = []

        class Stalling(asyncio.Protocol):
            def connection_made(self, transport):
                server_side.append(transport)
                handshaken.set()
                # Never read again: the close_notify is never answered.
                transport.pause_reading()

        server = await loop.create_server(Stalling, HOST, 0, ssl=certs.server_context())
        port = server.sockets[0].getsockname()[1]
        lost = loop.create_future()

        class Client(asyncio.Protocol):
            def connection_lost(self, exc):
                lost.set_result(exc)

        transport, _ = await loop.create_connection(
            Client,
            HOST,
            port,
            ssl=certs.client_context(),
            server_hostname="localhost",
            ssl_shutdown_timeout=0.2,
        )
        await handshaken.wait()
        transport.close()
        exc = await asyncio.wait_for(lost, 10)
        assert exc is None or isinstance(exc, (TimeoutError, ConnectionError))
        server_side[0].abort()
        await close_server(server)

    loop.run_until_complete(main())


def test_start_tls_upgrade_on_both_sides(loop, certs):
    async def main():
        upgraded = []

        async def handler(reader, writer):
            assert await reader.readline() == b"STARTTLS\n"
            writer.write(b"GO\n")
            await writer.drain()
            await writer.start_tls(certs.server_context())
            upgraded.append(writer.get_extra_info("ssl_object") is not None)
            await echo(reader, writer)

        server = await asyncio.start_server(handler, HOST, 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection(HOST, port)
        assert writer.get_extra_info("ssl_object") is None
        writer.write(b"STARTTLS\n")
        assert await reader.readline() == b"GO\n"
        await writer.start_tls(certs.client_context(), server_hostname="localhost")
        assert isinstance(writer.get_extra_info("ssl_object"), ssl.SSLObject)
        writer.write(b"secret")
        assert await reader.readexactly(6) == b"secret"
        assert upgraded == [True]
        writer.close()
        await writer.wait_closed()
        await close_server(server)

    loop.run_until_complete(main())


def test_start_tls_argument_checks(loop, certs):
    async def main():
        server = await asyncio.start_server(echo, HOST, 0)
        port = server.sockets[0].getsockname()[1]
        transport, protocol = await loop.create_connection(asyncio.Protocol, HOST, port)
        with pytest.raises(TypeError, match="sslcontext is expected to be an instance of ssl.SSLContext"):
            await loop.start_tls(transport, protocol, object())

        class NotTls(asyncio.Transport):
            pass

        with pytest.raises(TypeError, match="is not supported by start_tls"):
            await loop.start_tls(NotTls(), protocol, certs.client_context())
        transport.close()
        await close_server(server)

    loop.run_until_complete(main())


def test_tls_over_tls(loop, certs):
    async def main():
        async def handler(reader, writer):
            await writer.start_tls(certs.server_context())
            await echo(reader, writer)

        server, port = await tls_server(handler, certs.server_context())
        reader, writer = await asyncio.open_connection(
            HOST, port, ssl=certs.client_context(), server_hostname="localhost"
        )
        await writer.start_tls(certs.client_context(), server_hostname="localhost")
        writer.write(b"inner")
        assert await reader.readexactly(5) == b"inner"
        writer.close()
        await writer.wait_closed()
        await close_server(server)

    loop.run_until_complete(main())


def test_bulk_transfer_through_a_slow_reader(loop, certs):
    total = 100 * 1024 * 1024
    chunk = bytes(range(256)) * 256  # 64 KiB
    peak = [0]

    async def main():
        async def sender(reader, writer):
            transport = writer.transport
            high = transport.get_write_buffer_limits()[1]
            for _ in range(total // len(chunk)):
                writer.write(chunk)
                peak[0] = max(peak[0], transport.get_write_buffer_size())
                assert transport.get_write_buffer_size() <= high + len(chunk)
                await writer.drain()
            writer.close()
            await writer.wait_closed()

        server, port = await tls_server(sender, certs.server_context())
        reader, writer = await asyncio.open_connection(
            HOST, port, ssl=certs.client_context(), server_hostname="localhost", limit=16 * 1024
        )
        digest = hashlib.sha256()
        received = 0
        while data := await reader.read(16 * 1024):
            digest.update(data)
            received += len(data)
            if received % (1 << 20) < len(data):
                await asyncio.sleep(0.001)
        writer.close()
        await writer.wait_closed()
        await close_server(server)
        return received, digest.hexdigest()

    received, digest = loop.run_until_complete(main())
    assert received == total
    assert digest == hashlib.sha256(chunk * (total // len(chunk))).hexdigest()
    assert peak[0] > 0, "the slow reader made the sender buffer"


def test_peer_reset_during_the_handshake(loop, certs):
    async def main():
        listener = socket.socket()
        listener.bind((HOST, 0))
        listener.listen()
        listener.setblocking(False)
        port = listener.getsockname()[1]

        async def reset_after_hello():
            conn, _ = await loop.sock_accept(listener)
            await loop.sock_recv(conn, 1024)  # the ClientHello
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()

        task = asyncio.ensure_future(reset_after_hello())
        with pytest.raises(ConnectionResetError):
            await asyncio.open_connection(HOST, port, ssl=certs.client_context(), server_hostname="localhost")
        await task
        listener.close()

    loop.run_until_complete(main())


def test_peer_closing_without_handshake_is_a_reset(loop, certs):
    async def main():
        listener = socket.socket()
        listener.bind((HOST, 0))
        listener.listen()
        listener.setblocking(False)
        port = listener.getsockname()[1]

        async def close_after_hello():
            conn, _ = await loop.sock_accept(listener)
            await loop.sock_recv(conn, 1024)
            conn.close()

        task = asyncio.ensure_future(close_after_hello())
        with pytest.raises(ConnectionResetError):
            await asyncio.open_connection(HOST, port, ssl=certs.client_context(), server_hostname="localhost")
        await task
        listener.close()

    loop.run_until_complete(main())


@pytest.mark.parametrize("how", ["close_notify", "plain_close"])
def test_end_of_stream_from_the_peer(loop, certs, how):
    async def main():
        async def handler(reader, writer):
            writer.write(b"bye")
            await writer.drain()
            if how == "close_notify":
                writer.close()
                await writer.wait_closed()
            else:
                # Close the socket under TLS: no close_notify is sent.
                writer.transport.get_extra_info("socket")._sock.shutdown(socket.SHUT_RDWR)

        server, port = await tls_server(handler, certs.server_context())
        reader, writer = await asyncio.open_connection(
            HOST, port, ssl=certs.client_context(), server_hostname="localhost"
        )
        assert await reader.readexactly(3) == b"bye"
        try:
            rest = await reader.read()
        except (ssl.SSLError, ConnectionError) as exc:
            rest = type(exc)
        writer.close()
        try:
            await writer.wait_closed()
        except (ssl.SSLError, ConnectionError):
            pass
        await close_server(server)
        return rest

    assert loop.run_until_complete(main()) == b""


def test_buffered_protocol_over_tls(loop, certs):
    async def main():
        server, port = await tls_server(echo, certs.server_context())
        received = bytearray()
        done = loop.create_future()

        class Buffered(asyncio.BufferedProtocol):
            def __init__(self):
                self.buf = bytearray(100)

            def get_buffer(self, sizehint):
                return self.buf

            def buffer_updated(self, nbytes):
                received.extend(self.buf[:nbytes])
                if len(received) >= 1000 and not done.done():
                    done.set_result(None)

            def connection_lost(self, exc):
                pass

        transport, _ = await loop.create_connection(
            Buffered, HOST, port, ssl=certs.client_context(), server_hostname="localhost"
        )
        transport.write(b"0123456789" * 100)
        await done
        assert bytes(received) == b"0123456789" * 100
        transport.close()
        await close_server(server)

    loop.run_until_complete(main())


def test_sendfile_over_tls_uses_the_fallback(loop, certs, tmp_path):
    data = bytes(range(256)) * 4000
    path = tmp_path / "payload"
    path.write_bytes(data)

    async def main():
        received = bytearray()
        got_all = asyncio.Event()

        async def collect(reader, writer):
            while chunk := await reader.read(65536):
                received.extend(chunk)
                if len(received) >= len(data):
                    got_all.set()
            writer.close()

        server, port = await tls_server(collect, certs.server_context())
        transport, _ = await loop.create_connection(
            asyncio.Protocol, HOST, port, ssl=certs.client_context(), server_hostname="localhost"
        )
        with open(path, "rb") as f:
            sent = await loop.sendfile(transport, f)
        assert sent == len(data)
        await got_all.wait()
        assert bytes(received) == data
        with open(path, "rb") as f:
            with pytest.raises(RuntimeError, match="fallback is disabled"):
                await loop.sendfile(transport, f, fallback=False)
        transport.close()
        await close_server(server)

    loop.run_until_complete(main())


def test_argument_checks(loop, certs):
    async def main():
        with pytest.raises(ValueError, match="server_hostname is only meaningful with ssl"):
            await loop.create_connection(asyncio.Protocol, HOST, 1, server_hostname="x")
        with pytest.raises(ValueError, match="ssl_handshake_timeout is only meaningful with ssl"):
            await loop.create_connection(asyncio.Protocol, HOST, 1, ssl_handshake_timeout=1)
        with pytest.raises(ValueError, match="ssl_shutdown_timeout is only meaningful with ssl"):
            await loop.create_connection(asyncio.Protocol, HOST, 1, ssl_shutdown_timeout=1)
        with pytest.raises(ValueError, match="You must set server_hostname when using ssl without a host"):
            await loop.create_connection(asyncio.Protocol, sock=socket.socket(), ssl=True)
        with pytest.raises(TypeError, match="ssl argument must be an SSLContext or None"):
            await loop.create_server(asyncio.Protocol, HOST, 0, ssl=True)
        with pytest.raises(ValueError, match="ssl_handshake_timeout is only meaningful with ssl"):
            await loop.create_server(asyncio.Protocol, HOST, 0, ssl_handshake_timeout=1)
        with pytest.raises(ValueError, match="you have to pass server_hostname when using ssl"):
            await loop.create_unix_connection(asyncio.Protocol, "/nonexistent", ssl=certs.client_context())
        server, port = await tls_server(echo, certs.server_context())
        with pytest.raises(ValueError, match="ssl_handshake_timeout should be a positive number"):
            await asyncio.open_connection(
                HOST, port, ssl=certs.client_context(), server_hostname="localhost", ssl_handshake_timeout=-1
            )
        await close_server(server)

    loop.run_until_complete(main())


def test_given_socket_is_closed_when_the_handshake_fails(loop, certs):
    async def main():
        server, port = await tls_server(echo, certs.server_context(certs.untrusted))
        sock = socket.create_connection((HOST, port))
        with pytest.raises(ssl.SSLCertVerificationError):
            await loop.create_connection(
                asyncio.Protocol, sock=sock, ssl=certs.client_context(), server_hostname="localhost"
            )
        # Closed once the transport's connection is lost.
        for _ in range(10):
            if sock.fileno() == -1:
                break
            await asyncio.sleep(0)
        assert sock.fileno() == -1
        await close_server(server)

    loop.run_until_complete(main())


def test_unix_socket_tls(loop, certs):
    async def main():
        with tempfile.TemporaryDirectory() as tmp:
            path = f"{tmp}/tls.sock"
            server = await asyncio.start_unix_server(echo, path, ssl=certs.server_context())
            reader, writer = await asyncio.open_unix_connection(
                path, ssl=certs.client_context(), server_hostname="localhost"
            )
            writer.write(b"over unix")
            assert await reader.readexactly(9) == b"over unix"
            writer.close()
            await writer.wait_closed()
            await close_server(server)

    loop.run_until_complete(main())


def test_connect_accepted_socket_with_tls(loop, certs):
    async def main():
        listener = socket.socket()
        listener.bind((HOST, 0))
        listener.listen()
        listener.setblocking(False)
        port = listener.getsockname()[1]
        client = asyncio.ensure_future(
            asyncio.open_connection(HOST, port, ssl=certs.client_context(), server_hostname="localhost")
        )
        conn, _ = await loop.sock_accept(listener)
        got = loop.create_future()

        class Server(asyncio.Protocol):
            def data_received(self, data):
                got.set_result(data)

        transport, _ = await loop.connect_accepted_socket(Server, conn, ssl=certs.server_context())
        assert transport.get_extra_info("ssl_object").server_side
        reader, writer = await client
        writer.write(b"accepted")
        assert await got == b"accepted"
        writer.close()
        await writer.wait_closed()
        transport.close()
        listener.close()

    loop.run_until_complete(main())


def _open_descriptors():
    import os

    return len(os.listdir("/proc/self/fd"))


def _alive(kind):
    import gc

    gc.collect()
    return sum(1 for obj in gc.get_objects() if isinstance(obj, kind))


def test_connection_churn_leaves_nothing_behind(loop, certs):
    """Hundreds of TLS connections opened, used and closed (some by the
    client, some by the server, some aborted mid-handshake): no descriptor,
    TLS object or transport outlives its connection."""
    import gc

    async def server_handler(reader, writer):
        data = await reader.read(100)
        if data == b"server closes":
            writer.write(b"bye")
            writer.close()
            return
        await echo_once(reader, writer, data)

    async def echo_once(reader, writer, data):
        writer.write(data)
        await writer.drain()
        await reader.read(100)  # the client's end of stream
        writer.close()

    async def one(port, i, client_ctx):
        reader, writer = await asyncio.open_connection(HOST, port, ssl=client_ctx, server_hostname="localhost")
        message = b"server closes" if i % 3 == 0 else b"ping %d" % i
        writer.write(message)
        reply = await reader.read(100)
        assert reply == (b"bye" if i % 3 == 0 else message)
        writer.close()
        await writer.wait_closed()

    async def aborted(port):
        # A client that connects and goes away before the handshake ends.
        sock = socket.create_connection((HOST, port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()

    async def main():
        server, port = await tls_server(server_handler, certs.server_context(), ssl_handshake_timeout=5)
        client_ctx = certs.client_context()
        for round_ in range(4):
            await asyncio.gather(*(one(port, i, client_ctx) for i in range(50)))
            await aborted(port)
        await close_server(server)
        for _ in range(10):
            await asyncio.sleep(0.01)

    loop.run_until_complete(main())  # warm up: caches, pools, lazily made objects
    gc.collect()
    descriptors, objects = _open_descriptors(), _alive(ssl.SSLObject)
    loop.run_until_complete(main())
    assert _open_descriptors() == descriptors
    assert _alive(ssl.SSLObject) == objects
    assert _alive(asyncio.BaseTransport) == 0
