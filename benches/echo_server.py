"""A benchmark server: `python benches/echo_server.py LOOP MODE ADDRESS`.

LOOP is ferroloop, asyncio, uvloop, rloop, or baseline (ferroloop built from
another commit by ``benches/build-baseline``, found in the directory named by
``$FERROLOOP_BASELINE``); MODE is protocol (an echo
``asyncio.Protocol``), streams (``asyncio.start_server`` reader/writer echo),
sock (``loop.sock_*`` echo), http (an HTTP/1.1 keep-alive server on
httptools) or datagram (a UDP echo ``asyncio.DatagramProtocol``); ADDRESS is
``host:port`` or ``unix:/path``. Prints ``ready`` once listening and serves
until it receives SIGTERM or SIGINT. An ADDRESS of ``tls:host:port`` serves
over TLS, with the certificate chain and key in the PEM file named by
``$FERROLOOP_BENCH_CERT``.
"""

import asyncio
import os
import signal
import socket
import ssl
import sys

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n\r\nHello world!"


def new_loop(name):
    if name == "ferroloop":
        import ferroloop

        return ferroloop.new_event_loop()
    if name == "asyncio":
        return asyncio.SelectorEventLoop()
    if name == "baseline":
        sys.path.insert(0, os.environ["FERROLOOP_BASELINE"])
        import ferroloop_base

        return ferroloop_base.new_event_loop()
    module = __import__(name)
    return module.new_event_loop()


class EchoProtocol(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


class EchoDatagramProtocol(asyncio.DatagramProtocol):
    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.transport.sendto(data, addr)


class HttpProtocol(asyncio.Protocol):
    def __init__(self):
        import httptools

        self.parser = httptools.HttpRequestParser(self)

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.parser.feed_data(data)

    def on_message_complete(self):
        self.transport.write(RESPONSE)
        if not self.parser.should_keep_alive():
            self.transport.close()


async def stream_echo(reader, writer):
    while data := await reader.read(262144):
        writer.write(data)
        await writer.drain()
    writer.close()


async def sock_echo(loop, conn):
    try:
        while data := await loop.sock_recv(conn, 262144):
            await loop.sock_sendall(conn, data)
    finally:
        conn.close()


def listening_socket(address):
    if address.startswith("unix:"):
        path = address[5:]
        if os.path.exists(path):
            os.unlink(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(path)
    else:
        host, port = address.rsplit(":", 1)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, int(port)))
    sock.listen(512)
    sock.setblocking(False)
    return sock


def server_tls_context(address):
    """The server's SSLContext for a ``tls:`` address, else None."""
    if not address.startswith("tls:"):
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.environ["FERROLOOP_BENCH_CERT"])
    return ctx


async def serve(loop, mode, address):
    tls = server_tls_context(address)
    address = address.removeprefix("tls:")
    sock = listening_socket(address) if mode != "datagram" else None
    if mode == "datagram":
        host, port = address.rsplit(":", 1)
        transport, _ = await loop.create_datagram_endpoint(EchoDatagramProtocol, local_addr=(host, int(port)))
        server = None
    elif mode == "protocol":
        server = await loop.create_server(EchoProtocol, sock=sock, ssl=tls)
    elif mode == "http":
        server = await loop.create_server(HttpProtocol, sock=sock, ssl=tls)
    elif mode == "streams":
        server = await asyncio.start_server(stream_echo, sock=sock, ssl=tls)
    elif mode == "sock" and tls is None:
        server = None

        async def accept_forever():
            while True:
                conn, _ = await loop.sock_accept(sock)
                if conn.family != socket.AF_UNIX:
                    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                loop.create_task(sock_echo(loop, conn))

        loop.create_task(accept_forever())
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    print("ready", flush=True)
    await stop
    if server is not None:
        server.close()


def main():
    loop_name, mode, address = sys.argv[1:4]
    loop = new_loop(loop_name)
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(serve(loop, mode, address))
    finally:
        loop.close()


if __name__ == "__main__":
    main()
