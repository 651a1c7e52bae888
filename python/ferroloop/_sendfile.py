"""``sendfile`` and ``sock_sendfile``: ``os.sendfile`` when the file and
the socket allow it, otherwise (with ``fallback``) reading blocks in the
default executor and sending them."""

import errno
import functools
import io
import os
import socket

from asyncio import constants, exceptions

from ._tls import check_ssl_socket
from ._transports import SocketTransport

__all__ = ("SendfileMixin",)

_SENDFILE_FALLBACK_BLOCK = 16384


class _SockSink:
    """Where ``sock_sendfile``'s fallback sends its blocks: the socket, with
    ``sock_sendall``."""

    def __init__(self, loop, sock):
        self._loop = loop
        self._sock = sock

    async def send(self, data):
        await self._loop.sock_sendall(self._sock, data)

    async def restore(self):
        """Nothing to undo."""


class _SendfileFallbackProtocol:
    """Where ``sendfile``'s fallback sends its blocks: the transport. It
    temporarily replaces the transport's protocol while the fallback
    writes, so that flow control can be awaited."""

    def __init__(self, transport):
        self._transport = transport
        self._protocol = transport.get_protocol()
        self._should_resume_reading = transport.is_reading()
        self._should_resume_writing = transport._protocol_paused
        transport.pause_reading()
        transport.set_protocol(self)
        if self._should_resume_writing:
            self._write_ready_fut = transport._loop.create_future()
        else:
            self._write_ready_fut = None

    async def drain(self):
        if self._transport.is_closing():
            raise ConnectionError("Connection closed by peer")
        fut = self._write_ready_fut
        if fut is None:
            return
        await fut

    async def send(self, data):
        await self.drain()
        self._transport.write(data)

    def connection_made(self, transport):
        raise RuntimeError("Invalid state: connection should have been established already.")

    def connection_lost(self, exc):
        if self._write_ready_fut is not None:
            if exc is None:
                self._write_ready_fut.set_exception(ConnectionError("Connection is closed by peer"))
            else:
                self._write_ready_fut.set_exception(exc)
        self._protocol.connection_lost(exc)

    def pause_writing(self):
        if self._write_ready_fut is not None:
            return
        self._write_ready_fut = self._transport._loop.create_future()

    def resume_writing(self):
        if self._write_ready_fut is None:
            return
        self._write_ready_fut.set_result(False)
        self._write_ready_fut = None

    def data_received(self, data):
        raise RuntimeError("Invalid state: reading should be paused")

    def eof_received(self):
        raise RuntimeError("Invalid state: reading should be paused")

    async def restore(self):
        self._transport.set_protocol(self._protocol)
        if self._should_resume_reading:
            self._transport.resume_reading()
        if self._write_ready_fut is not None:
            # Cancel the future; the protocol is still paused.
            self._write_ready_fut.cancel()
        if self._should_resume_writing:
            self._protocol.resume_writing()


class SendfileMixin:
    """The sendfile methods of ``ferroloop.Loop``. They wait for writability
    with ``_sock_wait`` and send with ``sock_sendall`` (``SockMixin``)."""

    def _check_sendfile_params(self, sock, file, offset, count):
        if "b" not in getattr(file, "mode", "b"):
            raise ValueError("file should be opened in binary mode")
        if not sock.type == socket.SOCK_STREAM:
            raise ValueError("only SOCK_STREAM type sockets are supported")
        if count is not None:
            if not isinstance(count, int):
                raise TypeError(f"count must be a positive integer (got {count!r})")
            if count <= 0:
                raise ValueError(f"count must be a positive integer (got {count!r})")
        if not isinstance(offset, int):
            raise TypeError(f"offset must be a non-negative integer (got {offset!r})")
        if offset < 0:
            raise ValueError(f"offset must be a non-negative integer (got {offset!r})")

    async def sock_sendfile(self, sock, file, offset=0, count=None, *, fallback=True):
        """Send ``file`` over ``sock`` with ``os.sendfile``, or by reading
        and sending when that is not possible and ``fallback`` is true."""
        if self.get_debug() and sock.gettimeout() != 0:
            raise ValueError("the socket must be non-blocking")
        check_ssl_socket(sock)
        self._check_sendfile_params(sock, file, offset, count)
        try:
            return await self._sock_sendfile_native(sock, file, offset, count)
        except exceptions.SendfileNotAvailableError:
            if not fallback:
                raise
        return await self._sock_sendfile_fallback(sock, file, offset, count)

    async def _sock_sendfile_native(self, sock, file, offset, count, *, transport_fd_ok=False):
        try:
            fileno = file.fileno()
        except (AttributeError, io.UnsupportedOperation):
            raise exceptions.SendfileNotAvailableError("not a regular file")
        try:
            fsize = os.fstat(fileno).st_size
        except OSError:
            raise exceptions.SendfileNotAvailableError("not a regular file")
        blocksize = count if count else fsize
        if not blocksize:
            return 0
        fd = sock.fileno()
        state = {"offset": offset, "sent": 0}

        def send_chunk():
            # Raises BlockingIOError to wait for the next writable event.
            size = blocksize if not count else count - state["sent"]
            if size <= 0:
                return state["sent"]
            try:
                sent = os.sendfile(fd, fileno, state["offset"], size)
            except (BlockingIOError, InterruptedError):
                raise
            except OSError as exc:
                if state["sent"] == 0:
                    # Not a sendfile-able file (no mmap): use plain sends.
                    raise exceptions.SendfileNotAvailableError("os.sendfile call failed") from exc
                if exc.errno == errno.ENOTCONN and type(exc) is not ConnectionError:
                    new_exc = ConnectionError("socket is not connected", errno.ENOTCONN)
                    new_exc.__cause__ = exc
                    raise new_exc
                raise
            if sent == 0:
                return state["sent"]  # end of file
            state["offset"] += sent
            state["sent"] += sent
            raise BlockingIOError  # more to send: wait until writable

        try:
            try:
                return send_chunk()
            except (BlockingIOError, InterruptedError):
                pass
            return await self._sock_wait(sock, True, send_chunk, transport_fd_ok=transport_fd_ok)
        finally:
            if state["sent"] > 0:
                os.lseek(fileno, state["offset"], os.SEEK_SET)

    async def _sock_sendfile_fallback(self, sock, file, offset, count):
        return await self._sendfile_by_blocks(
            file, offset, count, constants.SENDFILE_FALLBACK_READBUFFER_SIZE, functools.partial(_SockSink, self, sock)
        )

    async def sendfile(self, transport, file, offset=0, count=None, *, fallback=True):
        """Send ``file`` over ``transport``; return the number of bytes sent."""
        if transport.is_closing():
            raise RuntimeError("Transport is closing")
        mode = getattr(transport, "_sendfile_compatible", constants._SendfileMode.UNSUPPORTED)
        if mode is constants._SendfileMode.UNSUPPORTED:
            raise RuntimeError(f"sendfile is not supported for transport {transport!r}")
        if mode is constants._SendfileMode.TRY_NATIVE:
            try:
                return await self._sendfile_native(transport, file, offset, count)
            except exceptions.SendfileNotAvailableError:
                if not fallback:
                    raise
        if not fallback:
            raise RuntimeError(
                f"fallback is disabled and native sendfile is not supported for transport {transport!r}"
            )
        return await self._sendfile_fallback(transport, file, offset, count)

    async def _sendfile_native(self, transport, file, offset, count):
        if not isinstance(transport, SocketTransport):
            raise exceptions.SendfileNotAvailableError("sendfile syscall is not supported")
        resume_reading = transport.is_reading()
        transport.pause_reading()
        await transport._make_empty_waiter()
        try:
            self._check_sendfile_params(transport._sock, file, offset, count)
            return await self._sock_sendfile_native(transport._sock, file, offset, count, transport_fd_ok=True)
        finally:
            transport._reset_empty_waiter()
            if resume_reading:
                transport.resume_reading()

    async def _sendfile_fallback(self, transport, file, offset, count):
        return await self._sendfile_by_blocks(
            file, offset, count, _SENDFILE_FALLBACK_BLOCK, functools.partial(_SendfileFallbackProtocol, transport)
        )

    async def _sendfile_by_blocks(self, file, offset, count, max_block, open_sink):
        """The fallback of ``sock_sendfile`` and ``sendfile``: read ``file``
        from ``offset`` in blocks of at most ``max_block`` bytes, in the
        default executor, and send each with ``await sink.send(block)``
        until ``count`` bytes (or the whole file) are sent; return how many
        were. ``open_sink()`` makes the sink once the file is positioned.
        On the way out the file is left just past the bytes sent, then
        ``sink.restore()`` undoes what the sink changed."""
        if offset:
            file.seek(offset)
        blocksize = min(count, max_block) if count else max_block
        buf = bytearray(blocksize)
        total_sent = 0
        sink = open_sink()
        try:
            while True:
                if count:
                    blocksize = min(count - total_sent, blocksize)
                    if blocksize <= 0:
                        return total_sent
                view = memoryview(buf)[:blocksize]
                read = await self.run_in_executor(None, file.readinto, view)
                if not read:
                    return total_sent
                await sink.send(view[:read])
                total_sent += read
        finally:
            if total_sent > 0 and hasattr(file, "seek"):
                file.seek(offset + total_sent)
            await sink.restore()
