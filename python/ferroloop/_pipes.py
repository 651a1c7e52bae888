"""Pipes: ``connect_read_pipe`` and ``connect_write_pipe``, with asyncio's
semantics and messages; the bytes go through the native pipe cores
(``_transports.ReadPipeTransport`` / ``WritePipeTransport``)."""

from ._hooks import logger
from ._transports import ReadPipeTransport, WritePipeTransport

__all__ = ("PipesMixin",)


class PipesMixin:
    """The pipe methods of ``ferroloop.Loop``."""

    def _make_read_pipe_transport(self, pipe, protocol, waiter=None, extra=None):
        transport = ReadPipeTransport(self, pipe, protocol, extra)
        transport._core._start(transport, waiter)
        return transport

    def _make_write_pipe_transport(self, pipe, protocol, waiter=None, extra=None):
        transport = WritePipeTransport(self, pipe, protocol, extra)
        transport._core._start(transport, waiter)
        return transport

    async def connect_read_pipe(self, protocol_factory, pipe):
        """Register the read end of ``pipe`` (a pipe, FIFO, socket or
        character device) with the loop; ``(transport, protocol)``."""
        return await self._connect_pipe(self._make_read_pipe_transport, "Read", protocol_factory, pipe)

    async def connect_write_pipe(self, protocol_factory, pipe):
        """Register the write end of ``pipe`` (a pipe, FIFO, socket or
        character device) with the loop; ``(transport, protocol)``."""
        return await self._connect_pipe(self._make_write_pipe_transport, "Write", protocol_factory, pipe)

    async def _connect_pipe(self, make_transport, direction, protocol_factory, pipe):
        protocol = protocol_factory()
        waiter = self.create_future()
        transport = make_transport(pipe, protocol, waiter)
        try:
            await waiter
        except BaseException:
            transport.close()
            raise
        if self._debug:
            logger().debug("%s pipe %r connected: (%r, %r)", direction, pipe.fileno(), transport, protocol)
        return transport, protocol
