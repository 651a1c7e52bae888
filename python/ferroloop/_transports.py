"""The Python faces of the native transports.

``SocketTransport`` is what protocols see for TCP and Unix stream
connections: a real ``asyncio.Transport`` whose work is done by its native
core, ``_core.TransportCore`` (reads, writes, flow control, closing).
``ReadPipeTransport`` (an ``asyncio.ReadTransport``) and
``WritePipeTransport`` (an ``asyncio.WriteTransport``) are the faces of the
pipe cores, ``_core.ReadPipeCore`` and ``_core.WritePipeCore``.
``DatagramTransport`` is the same for UDP and Unix datagram endpoints: a
real ``asyncio.DatagramTransport`` over ``_core.DatagramTransportCore``.
``SSLProtocolTransport`` is what protocols see over TLS; its core is the TLS
layer, ``_core.SSLProtocol``, the protocol of the transport below.

Every face delegates to its core; the methods called per message
(``write``, ``writelines``, ``is_closing``, ``pause_reading``,
``resume_reading``) are the core's own bound methods, kept in slots, so that
calling them runs no Python frame.
"""

import warnings

from asyncio import constants, transports

from . import _core

__all__ = ("SocketTransport", "DatagramTransport", "ReadPipeTransport", "WritePipeTransport", "SSLProtocolTransport")


def _from_core(name):
    """A read-only property: the core's attribute ``name`` (asyncio's
    private attributes, for code that reads them)."""
    return property(lambda self: getattr(self._core, name), doc=f"The core's ``{name}``.")


class _Face:
    """What every face shares: closing, the protocol, asyncio's private
    attributes, the representation and the unclosed-transport warning."""

    __slots__ = ()
    _core: "_core.TransportCore | _core.DatagramTransportCore | _core.ReadPipeCore | _core.WritePipeCore"

    def __repr__(self):
        return self._core._describe(type(self).__name__)

    def __del__(self, _warn=warnings.warn):
        core = getattr(self, "_core", None)
        file = core._sock if core is not None else None
        if file is not None:
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            file.close()

    def close(self):
        self._core.close()

    def get_protocol(self):
        return self._core.get_protocol()

    def set_protocol(self, protocol):
        self._core.set_protocol(protocol)

    _loop = _from_core("_loop")
    _protocol = _from_core("_protocol")
    _closing = _from_core("_closing")


class _SendingFace(_Face):
    """What the faces that send share: abort and write flow control."""

    __slots__ = ()

    def abort(self):
        self._core.abort()

    def get_write_buffer_size(self):
        return self._core.get_write_buffer_size()

    def get_write_buffer_limits(self):
        return self._core.get_write_buffer_limits()

    def set_write_buffer_limits(self, high=None, low=None):
        self._core.set_write_buffer_limits(high, low)

    _protocol_paused = _from_core("_protocol_paused")


class _WritingFace(_SendingFace):
    """What the faces that write byte streams share: end of file."""

    __slots__ = ()

    def write_eof(self):
        self._core.write_eof()

    def can_write_eof(self):
        return True


class _PipeFace(_Face):
    """asyncio's private attributes of pipe transports."""

    __slots__ = ()

    @property
    def _pipe(self):
        return self._core._sock

    @_pipe.setter
    def _pipe(self, value):
        # asyncio's own tests drop the pipe this way, to close it themselves.
        if value is not None:
            raise ValueError("_pipe can only be set to None")
        self._core._forget_pipe()

    _fileno = _from_core("_sock_fd")


class SocketTransport(_WritingFace, transports.Transport):
    """The stream transport of TCP and Unix sockets."""

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
    _start_tls_compatible = True

    def __init__(self, loop, sock, protocol, extra=None, server=None):
        core = _core.TransportCore(loop, sock, protocol, extra, server)
        self._core = core
        self._extra = core._extra
        self.write = core.write
        self.writelines = core.writelines
        self.is_closing = core.is_closing
        self.pause_reading = core.pause_reading
        self.resume_reading = core.resume_reading

    def is_reading(self):
        return self._core.is_reading()

    _sock = _from_core("_sock")
    _sock_fd = _from_core("_sock_fd")
    _conn_lost = _from_core("_conn_lost")

    def _make_empty_waiter(self):
        return self._core._make_empty_waiter()

    def _reset_empty_waiter(self):
        self._core._reset_empty_waiter()

    def _force_close(self, exc):
        self._core._force_close(exc)

    # Scheduled by the core when the connection is lost; defined on each
    # face, so that a report of connection_lost() raising names its class.
    def _call_connection_lost(self, exc):
        self._core._call_connection_lost(exc)


class DatagramTransport(_SendingFace, transports.Transport, transports.DatagramTransport):
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

    def is_reading(self):
        return self._core.is_reading()

    _sock = _from_core("_sock")
    _sock_fd = _from_core("_sock_fd")
    _conn_lost = _from_core("_conn_lost")
    _address = _from_core("_address")

    def _force_close(self, exc):
        self._core._force_close(exc)

    def _call_connection_lost(self, exc):
        self._core._call_connection_lost(exc)


class ReadPipeTransport(_PipeFace, transports.ReadTransport):
    """The read transport of a pipe, FIFO, socket or character device."""

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

    def _call_connection_lost(self, exc):
        self._core._call_connection_lost(exc)


class WritePipeTransport(_PipeFace, _WritingFace, transports.WriteTransport):
    """The write transport of a pipe, FIFO, socket or character device."""

    __slots__ = ("_core", "write", "writelines", "is_closing", "__weakref__")

    def __init__(self, loop, pipe, protocol, extra=None):
        core = _core.WritePipeCore(loop, pipe, protocol, extra)
        self._core = core
        self._extra = core._extra
        self.write = core.write
        self.writelines = core.writelines
        self.is_closing = core.is_closing

    def _call_connection_lost(self, exc):
        self._core._call_connection_lost(exc)


class SSLProtocolTransport(transports.Transport):
    """The transport of a TLS connection, as asyncio's
    ``sslproto._SSLProtocolTransport``: its core is the TLS layer
    (``_core.SSLProtocol``, reachable as ``_ssl_protocol``), which is the
    protocol of the transport below. Closing a closed transport lets go of
    the layer, as asyncio's does (which breaks the cycle through a protocol
    that keeps its transport)."""

    __slots__ = ("_loop", "_ssl_protocol", "__weakref__")
    _start_tls_compatible = True
    _sendfile_compatible = constants._SendfileMode.FALLBACK

    def __init__(self, loop, ssl_protocol):
        self._loop = loop
        self._ssl_protocol = ssl_protocol
        ssl_protocol._set_app_transport(self)

    @property
    def _closed(self):
        return self._ssl_protocol is None or self._ssl_protocol._app_closed

    def get_extra_info(self, name, default=None):
        """Get optional transport information."""
        return self._ssl_protocol._get_extra_info(name, default)

    def set_protocol(self, protocol):
        self._ssl_protocol._set_app_protocol(protocol)

    def get_protocol(self):
        return self._ssl_protocol._app_protocol

    def is_closing(self):
        return self._closed

    def close(self):
        """Close after flushing buffered data (with a close_notify
        exchange); ``connection_lost(None)`` follows."""
        if not self._closed:
            self._ssl_protocol._app_closed = True
            self._ssl_protocol._start_shutdown()
        else:
            self._ssl_protocol = None

    def __del__(self, _warn=warnings.warn):
        protocol = getattr(self, "_ssl_protocol", None)
        if protocol is not None and not protocol._app_closed:
            protocol._app_closed = True
            _warn("unclosed transport <asyncio._SSLProtocolTransport object>", ResourceWarning)

    def is_reading(self):
        return not self._ssl_protocol._app_reading_paused

    def pause_reading(self):
        """Stop calling the protocol's ``data_received`` until
        ``resume_reading()``."""
        self._ssl_protocol._pause_reading()

    def resume_reading(self):
        """Resume calling the protocol's ``data_received``."""
        self._ssl_protocol._resume_reading()

    def set_write_buffer_limits(self, high=None, low=None):
        self._ssl_protocol._set_write_buffer_limits(high, low)
        self._ssl_protocol._control_app_writing()

    def get_write_buffer_limits(self):
        return (self._ssl_protocol._outgoing_low_water, self._ssl_protocol._outgoing_high_water)

    def get_write_buffer_size(self):
        return self._ssl_protocol._get_write_buffer_size()

    def set_read_buffer_limits(self, high=None, low=None):
        self._ssl_protocol._set_read_buffer_limits(high, low)
        self._ssl_protocol._control_ssl_reading()

    def get_read_buffer_limits(self):
        return (self._ssl_protocol._incoming_low_water, self._ssl_protocol._incoming_high_water)

    def get_read_buffer_size(self):
        return self._ssl_protocol._get_read_buffer_size()

    @property
    def _protocol_paused(self):
        return self._ssl_protocol._app_writing_paused

    def write(self, data):
        """Write bytes-like ``data`` (encrypted and sent as soon as the
        handshake allows)."""
        self._ssl_protocol._app_write(data)

    def writelines(self, list_of_data):
        self._ssl_protocol._write_appdata(list_of_data)

    def write_eof(self):
        """Not supported over TLS: raises ``NotImplementedError``."""
        raise NotImplementedError

    def can_write_eof(self):
        return False

    def abort(self):
        """Close at once, dropping buffered data; ``connection_lost(None)``
        follows."""
        self._force_close(None)

    def _force_close(self, exc):
        protocol = self._ssl_protocol
        if protocol is not None:
            protocol._app_closed = True
            protocol._abort(exc)

    def _test__append_write_backlog(self, data):
        self._ssl_protocol._test__append_write_backlog(data)
