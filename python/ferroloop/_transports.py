"""The Python faces of the native transports.

``SocketTransport`` is what protocols see for TCP and Unix stream
connections: a real ``asyncio.Transport`` whose work is done by its native
core, ``_core.TransportCore`` (reads, writes, flow control, closing).
``DatagramTransport`` is the same for UDP and Unix datagram endpoints: a
real ``asyncio.DatagramTransport`` over ``_core.DatagramTransportCore``.
What both faces share (closing, flow control, the protocol, asyncio's
private attributes) is ``_Face``.
"""

import warnings

from asyncio import constants, transports

from . import _core

__all__ = ("SocketTransport", "DatagramTransport")


class _Face:
    """The methods every face delegates to its native core, ``_core``.

    A mixin without state of its own (``__slots__ = ()``), placed before the
    ``asyncio`` transport class so that these take precedence over its
    abstract methods."""

    __slots__ = ()
    _core: "_core.TransportCore | _core.DatagramTransportCore"

    def __repr__(self):
        return self._core._describe(type(self).__name__)

    def __del__(self, _warn=warnings.warn):
        core = getattr(self, "_core", None)
        sock = core._sock if core is not None else None
        if sock is not None:
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            sock.close()

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

    def _force_close(self, exc):
        self._core._force_close(exc)


class SocketTransport(_Face, transports.Transport):
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

    def write_eof(self):
        self._core.write_eof()

    def can_write_eof(self):
        return True

    def _make_empty_waiter(self):
        return self._core._make_empty_waiter()

    def _reset_empty_waiter(self):
        self._core._reset_empty_waiter()


class DatagramTransport(_Face, transports.Transport, transports.DatagramTransport):
    """The datagram transport of UDP and Unix datagram sockets.

    A real ``asyncio.DatagramTransport`` over ``_core.DatagramTransportCore``,
    and an ``asyncio.Transport`` as asyncio's own datagram transport is (its
    stream methods, ``write`` and the like, raise ``NotImplementedError``).
    ``sendto`` and ``is_closing`` are the core's own bound methods, kept in
    slots. As asyncio's, it also has ``pause_reading``, ``resume_reading``
    and ``is_reading``; ``loop.sendfile`` refuses it."""

    __slots__ = (
        "_core",
        "sendto",
        "is_closing",
        "pause_reading",
        "resume_reading",
        "__weakref__",
    )

    def __init__(self, loop, sock, protocol, address=None, extra=None):
        core = _core.DatagramTransportCore(loop, sock, protocol, address, extra)
        self._core = core
        self._extra = core._extra
        self.sendto = core.sendto
        self.is_closing = core.is_closing
        self.pause_reading = core.pause_reading
        self.resume_reading = core.resume_reading

    @property
    def _address(self):
        return self._core._address
