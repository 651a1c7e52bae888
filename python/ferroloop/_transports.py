"""The Python faces of transports.

``SocketTransport`` is what protocols see for TCP and Unix stream
connections, and ``SSLProtocolTransport`` what they see over TLS: real
``asyncio.Transport`` objects whose work is done by their native cores,
``_core.TransportCore`` (reads, writes, flow control, closing) and
``_core.SSLProtocol`` (the TLS layer on the transport below).
"""

import warnings

from asyncio import constants, transports

from . import _core

__all__ = ("SocketTransport", "SSLProtocolTransport")


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


class SSLProtocolTransport(transports.Transport):
    """The transport of a TLS connection, as asyncio's
    ``sslproto._SSLProtocolTransport``: its core is the TLS layer
    (``_core.SSLProtocol``, reachable as ``_ssl_protocol``), which is the
    protocol of the transport below. ``write`` is the core's own method,
    kept in a slot."""

    __slots__ = ("_loop", "_ssl_protocol", "write", "__weakref__")
    _start_tls_compatible = True
    _sendfile_compatible = constants._SendfileMode.FALLBACK

    def __init__(self, loop, ssl_protocol):
        self._loop = loop
        self._ssl_protocol = ssl_protocol
        self.write = ssl_protocol._app_write
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
