"""The ``sock_*`` coroutines, and the generic wait-and-retry machinery
the others build on.

``sock_recv``, ``sock_recv_into`` and ``sock_sendall`` on plain sockets try
and wait natively (``_core.SockWaiter``); the other operations are tried at
once and, if they would block, retried from the native readiness callbacks
(``_sock_wait``) until they succeed.
"""

import functools
import socket
import sys

from ._compat import HAS_IPV6
from ._tls import check_ssl_socket

__all__ = ("SockMixin",)


def _call_method(obj, name, *args):
    return getattr(obj, name)(*args)


class SockMixin:
    """The ``sock_*`` coroutines of ``ferroloop.Loop``. ``sock_connect``
    resolves names with ``_ensure_resolved`` (``DnsMixin``)."""

    def _check_sock(self, sock):
        check_ssl_socket(sock)
        if self.get_debug() and sock.gettimeout() != 0:
            raise ValueError("the socket must be non-blocking")

    async def _sock_wait(self, sock, writing, operation, *args, transport_fd_ok=False):
        """Waits until ``operation(*args)`` succeeds without blocking, retrying
        it on every readiness event; the callback is removed when the future
        is done or cancelled. A string ``operation`` names a method of
        ``sock``, looked up again on every attempt as asyncio does. A
        descriptor used by a transport is refused unless the transport itself
        is sending (``transport_fd_ok``)."""
        if isinstance(operation, str):
            operation = functools.partial(_call_method, sock, operation)
        fut = self.create_future()
        fd = sock.fileno()
        if not transport_fd_ok:
            self._ensure_fd_no_transport(fd)
        register = self._add_writer if writing else self._add_reader
        handle = register(fd, self._sock_retry, fut, operation, args)
        unregister = self._remove_writer if writing else self._remove_reader
        fut.add_done_callback(functools.partial(self._sock_done, unregister, fd, handle))
        try:
            return await fut
        finally:
            # The exception's traceback holds this frame: without this, the
            # frame, the future and the exception keep each other alive
            # (asyncio breaks the same cycle, CPython gh-124859).
            fut = handle = None

    @staticmethod
    def _sock_done(unregister, fd, handle, fut):
        if handle is None or not handle.cancelled():
            unregister(fd)

    @staticmethod
    def _sock_retry(fut, operation, args):
        if fut.done():
            return
        try:
            result = operation(*args)
        except (BlockingIOError, InterruptedError):
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            fut.set_exception(exc)
        else:
            fut.set_result(result)
        finally:
            fut = None  # the exception's traceback holds this frame (see _sock_wait)

    async def sock_recv(self, sock, n):
        """Receive up to ``n`` bytes from ``sock``."""
        self._check_sock(sock)
        if type(sock) is socket.socket and type(n) is int and 0 < n <= sys.maxsize:
            data = self._sock_recv(sock, n)
            if type(data) is bytes:
                return data
            return await data
        try:
            return sock.recv(n)
        except (BlockingIOError, InterruptedError):
            pass
        return await self._sock_wait(sock, False, "recv", n)

    async def sock_recv_into(self, sock, buf):
        """Receive into ``buf``; return the number of bytes received."""
        self._check_sock(sock)
        if type(sock) is socket.socket:
            n = self._sock_recv_into(sock, buf)
            if type(n) is int:
                return n
            return await n
        try:
            return sock.recv_into(buf)
        except (BlockingIOError, InterruptedError):
            pass
        return await self._sock_wait(sock, False, "recv_into", buf)

    async def sock_recvfrom(self, sock, bufsize):
        """Receive a datagram: ``(data, address)``."""
        self._check_sock(sock)
        try:
            return sock.recvfrom(bufsize)
        except (BlockingIOError, InterruptedError):
            pass
        return await self._sock_wait(sock, False, "recvfrom", bufsize)

    async def sock_recvfrom_into(self, sock, buf, nbytes=0):
        """Receive a datagram into ``buf``: ``(nbytes, address)``."""
        self._check_sock(sock)
        if not nbytes:
            nbytes = len(buf)
        try:
            return sock.recvfrom_into(buf, nbytes)
        except (BlockingIOError, InterruptedError):
            pass
        return await self._sock_wait(sock, False, "recvfrom_into", buf, nbytes)

    async def sock_sendall(self, sock, data):
        """Send all of ``data``."""
        self._check_sock(sock)
        if type(sock) is socket.socket:
            waiter = self._sock_sendall(sock, data)
            if waiter is not None:
                await waiter
            return None
        try:
            n = sock.send(data)
        except (BlockingIOError, InterruptedError):
            n = 0
        if n == len(data):
            return
        view = memoryview(data)
        position = [n]

        def send_rest():
            start = position[0]
            sent = sock.send(view[start:])
            position[0] = start + sent
            if position[0] < len(view):
                raise BlockingIOError
            return None

        return await self._sock_wait(sock, True, send_rest)

    async def sock_sendto(self, sock, data, address):
        """Send a datagram to ``address``."""
        self._check_sock(sock)
        try:
            return sock.sendto(data, address)
        except (BlockingIOError, InterruptedError):
            pass
        return await self._sock_wait(sock, True, "sendto", data, 0, address)

    async def sock_connect(self, sock, address):
        """Connect ``sock`` to ``address``."""
        self._check_sock(sock)
        if sock.family == socket.AF_INET or (HAS_IPV6 and sock.family == socket.AF_INET6):
            resolved = await self._ensure_resolved(
                address, family=sock.family, type=sock.type, proto=sock.proto, loop=self
            )
            address = resolved[0][4]
        try:
            sock.connect(address)
        except (BlockingIOError, InterruptedError):
            pass
        else:
            return None

        def connected():
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err != 0:
                raise OSError(err, f"Connect call failed {address}")
            return None

        return await self._sock_wait(sock, True, connected)

    async def sock_accept(self, sock):
        """Accept a connection: ``(conn, address)``."""
        self._check_sock(sock)

        def accept():
            conn, address = sock.accept()
            conn.setblocking(False)
            return conn, address

        try:
            return accept()
        except (BlockingIOError, InterruptedError):
            pass
        return await self._sock_wait(sock, False, accept)
