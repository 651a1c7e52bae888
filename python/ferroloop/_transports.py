"""The Python faces of the native transports.

``SocketTransport`` is what protocols see for TCP and Unix stream
connections: a real ``asyncio.Transport`` whose work is done by its native
core, ``_core.TransportCore`` (reads, writes, flow control, closing).
``ReadPipeTransport`` (an ``asyncio.ReadTransport``) and
``WritePipeTransport`` (an ``asyncio.WriteTransport``) are the faces of the
pipe cores, ``_core.ReadPipeCore`` and ``_core.WritePipeCore``.
"""

import warnings

from asyncio import constants, transports

from . import _core

__all__ = ("SocketTransport", "ReadPipeTransport", "WritePipeTransport")


class SocketTransport(transports.Transport):
    """The stream transport of TCP and Unix sockets.

    A real ``asyncio.Transport``; the work is done by its native core
    (``_core.TransportCore``), to which every method delegates. The methods
    called per message (``write``, ``writelines``, ``is_closing``,
    ``pause_reading``, ``resume_reading``) are the core's own bound methods,
    kept in slots, so that calling them runs no Python frame.
    """

    __slots__ = (
        "_core",
        "write",
        "writelines",
        "is_closing",
        "pause_reading",
        "resume_reading",
        "__weakref__",
    )
    _sendfile_compatible = constants._SendfileMode.TRY_NATIVE

    def __init__(self, loop, sock, protocol, extra=None, server=None):
        core = _core.TransportCore(loop, sock, protocol, extra, server)
        self._core = core
        self._extra = core._extra
        self.write = core.write
        self.writelines = core.writelines
        self.is_closing = core.is_closing
        self.pause_reading = core.pause_reading
        self.resume_reading = core.resume_reading

    def __repr__(self):
        return self._core._describe(type(self).__name__)

    def __del__(self, _warn=warnings.warn):
        core = getattr(self, "_core", None)
        sock = core._sock if core is not None else None
        if sock is not None:
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            sock.close()

    def write_eof(self):
        self._core.write_eof()

    def can_write_eof(self):
        return True

    def close(self):
        self._core.close()

    def abort(self):
        self._core.abort()

    def is_reading(self):
        return self._core.is_reading()

    def get_write_buffer_size(self):
        return self._core.get_write_buffer_size()

    def get_write_buffer_limits(self):
        return self._core.get_write_buffer_limits()

    def set_write_buffer_limits(self, high=None, low=None):
        self._core.set_write_buffer_limits(high, low)

    def get_protocol(self):
        return self._core.get_protocol()

    def set_protocol(self, protocol):
        self._core.set_protocol(protocol)

    # asyncio's private attributes, for code that reads them.

    @property
    def _sock(self):
        return self._core._sock

    @property
    def _sock_fd(self):
        return self._core._sock_fd

    @property
    def _loop(self):
        return self._core._loop

    @property
    def _protocol(self):
        return self._core._protocol

    @property
    def _closing(self):
        return self._core._closing

    @property
    def _conn_lost(self):
        return self._core._conn_lost

    @property
    def _protocol_paused(self):
        return self._core._protocol_paused

    def _make_empty_waiter(self):
        return self._core._make_empty_waiter()

    def _reset_empty_waiter(self):
        self._core._reset_empty_waiter()

    def _force_close(self, exc):
        self._core._force_close(exc)


class _PipeFace:
    """What both pipe faces share: closing, the protocol, and asyncio's
    private attributes (``_pipe``, ``_fileno``, ...)."""

    __slots__ = ()
    _core: "_core.ReadPipeCore | _core.WritePipeCore"

    def __repr__(self):
        return self._core._describe(type(self).__name__)

    def __del__(self, _warn=warnings.warn):
        core = getattr(self, "_core", None)
        pipe = core._sock if core is not None else None
        if pipe is not None:
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            pipe.close()

    def close(self):
        self._core.close()

    def get_protocol(self):
        return self._core.get_protocol()

    def set_protocol(self, protocol):
        self._core.set_protocol(protocol)

    @property
    def _pipe(self):
        return self._core._sock

    @_pipe.setter
    def _pipe(self, value):
        # asyncio's own tests drop the pipe this way, to close it themselves.
        if value is not None:
            raise ValueError("_pipe can only be set to None")
        self._core._forget_pipe()

    @property
    def _fileno(self):
        return self._core._sock_fd

    @property
    def _loop(self):
        return self._core._loop

    @property
    def _protocol(self):
        return self._core._protocol

    @property
    def _closing(self):
        return self._core._closing


class ReadPipeTransport(_PipeFace, transports.ReadTransport):
    """The read transport of a pipe, FIFO, socket or character device; the
    work is done by its native core, ``_core.ReadPipeCore``."""

    __slots__ = ("_core", "is_closing", "pause_reading", "resume_reading", "__weakref__")

    def __init__(self, loop, pipe, protocol, extra=None):
        core = _core.ReadPipeCore(loop, pipe, protocol, extra)
        self._core = core
        self._extra = core._extra
        self.is_closing = core.is_closing
        self.pause_reading = core.pause_reading
        self.resume_reading = core.resume_reading

    def is_reading(self):
        return self._core.is_reading()

    @property
    def _paused(self):
        return not self._core.is_reading() and not self._core.is_closing()


class WritePipeTransport(_PipeFace, transports.WriteTransport):
    """The write transport of a pipe, FIFO, socket or character device; the
    work is done by its native core, ``_core.WritePipeCore``."""

    __slots__ = ("_core", "write", "writelines", "is_closing", "__weakref__")

    def __init__(self, loop, pipe, protocol, extra=None):
        core = _core.WritePipeCore(loop, pipe, protocol, extra)
        self._core = core
        self._extra = core._extra
        self.write = core.write
        self.writelines = core.writelines
        self.is_closing = core.is_closing

    def write_eof(self):
        self._core.write_eof()

    def can_write_eof(self):
        return True

    def abort(self):
        self._core.abort()

    def get_write_buffer_size(self):
        return self._core.get_write_buffer_size()

    def get_write_buffer_limits(self):
        return self._core.get_write_buffer_limits()

    def set_write_buffer_limits(self, high=None, low=None):
        self._core.set_write_buffer_limits(high, low)

    @property
    def _protocol_paused(self):
        return self._core._protocol_paused
