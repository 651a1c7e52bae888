"""What the fault-injection tests share: descriptor counting, raw peers,
recording protocols."""

import asyncio
import os
import socket
import struct

# How long a step may take before the test is considered hung (never reached
# by a working loop).
HUNG = 30


def fd_count():
    return len(os.listdir("/proc/self/fd"))


def linger_zero(sock):
    """Closing ``sock`` will send a reset instead of a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def small_buffers(sock, size=16 * 1024):
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)


class Recorder(asyncio.Protocol):
    """Records what the transport delivers."""

    def __init__(self, loop, keep_open_on_eof=False):
        self.loop = loop
        self.transport = None
        self.data = bytearray()
        self.keep_open_on_eof = keep_open_on_eof
        self.made = loop.create_future()
        self.got_eof = loop.create_future()
        self.lost = loop.create_future()
        self.paused = self.resumed = 0

    def connection_made(self, transport):
        self.transport = transport
        self.made.set_result(transport)

    def data_received(self, data):
        self.data += data

    def eof_received(self):
        self.got_eof.set_result(None)
        return self.keep_open_on_eof

    def connection_lost(self, exc):
        self.lost.set_result(exc)

    def pause_writing(self):
        self.paused += 1

    def resume_writing(self):
        self.resumed += 1


class BufferedRecorder(asyncio.BufferedProtocol, Recorder):
    """The same, as a BufferedProtocol."""

    def __init__(self, loop, keep_open_on_eof=False):
        Recorder.__init__(self, loop, keep_open_on_eof)
        self.buffer = bytearray(4096)

    def get_buffer(self, sizehint):
        return self.buffer

    def buffer_updated(self, nbytes):
        self.data += self.buffer[:nbytes]


async def server_and_raw_peer(loop, protocol, *, buffers=None):
    """A transport (accepted by a server, talking to ``protocol``) and the
    raw non-blocking socket at the other end."""
    server = await loop.create_server(lambda: protocol, "127.0.0.1", 0)
    peer = socket.socket()
    peer.setblocking(False)
    if buffers is not None:
        small_buffers(peer, buffers)
    await loop.sock_connect(peer, server.sockets[0].getsockname())
    await asyncio.wait_for(protocol.made, HUNG)
    return server, peer


async def close_server(server):
    server.close()
    await server.wait_closed()


async def read_all(loop, sock):
    """Everything ``sock`` receives until the end of the stream."""
    received = bytearray()
    while True:
        chunk = await asyncio.wait_for(loop.sock_recv(sock, 1 << 16), HUNG)
        if not chunk:
            return bytes(received)
        received += chunk
