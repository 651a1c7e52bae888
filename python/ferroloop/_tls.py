"""TLS: ``ssl=`` on connections and servers, and ``loop.start_tls``.

TLS goes through Python's own ``ssl`` module as asyncio's loop does it: a
TLS layer (``SSLContext.wrap_bio`` over two ``MemoryBIO`` objects) runs as
the protocol of the transport below, and the user's protocol gets the
layer's application transport. The layer is native (``_core.SSLProtocol``,
asyncio's ``sslproto.SSLProtocol`` without a Python frame per record; its
face is ``_transports.SSLProtocolTransport``). Every ``SSLContext`` setting
therefore holds as on stdlib asyncio (verification, hostname checks,
client certificates, ALPN, SNI callbacks, minimum versions, ciphers), and
so do the handshake and shutdown timeouts, the close_notify exchange, and
the errors and messages.
"""

from asyncio import constants

from . import _compat, _core
from ._transports import SSLProtocolTransport

__all__ = ("TlsMixin", "check_ssl_socket")


def check_ssl_socket(sock):
    """Refuse an ``ssl.SSLSocket`` passed where asyncio wants a plain socket."""
    if _compat.ssl is not None and isinstance(sock, _compat.ssl.SSLSocket):
        raise TypeError("Socket cannot be of type SSLSocket")


def tls_protocol(loop, protocol, sslcontext, waiter, server_side=False, server_hostname=None, **kwargs):
    """A TLS layer for ``protocol`` and its application transport (as
    ``sslproto.SSLProtocol(...)`` makes both); returns the layer."""
    if _compat.ssl is None:
        raise RuntimeError("stdlib ssl module not available")
    layer = _core.SSLProtocol(loop, protocol, sslcontext, waiter, server_side, server_hostname, **kwargs)
    SSLProtocolTransport(loop, layer)
    return layer


class TlsMixin:
    """The TLS methods of ``ferroloop.Loop``. Plain stream transports come
    from ``_make_socket_transport`` (``ConnectMixin``)."""

    def _make_ssl_transport(
        self,
        rawsock,
        protocol,
        sslcontext,
        waiter=None,
        *,
        server_side=False,
        server_hostname=None,
        extra=None,
        server=None,
        ssl_handshake_timeout=constants.SSL_HANDSHAKE_TIMEOUT,
        ssl_shutdown_timeout=constants.SSL_SHUTDOWN_TIMEOUT,
    ):
        """A TLS transport over ``rawsock`` for ``protocol``; ``waiter`` is
        resolved once the handshake is done."""
        self._ensure_fd_no_transport(rawsock)
        ssl_protocol = tls_protocol(
            self,
            protocol,
            sslcontext,
            waiter,
            server_side,
            server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout,
        )
        self._make_socket_transport(rawsock, ssl_protocol, extra=extra, server=server)
        return ssl_protocol._app_transport

    async def start_tls(
        self,
        transport,
        protocol,
        sslcontext,
        *,
        server_side=False,
        server_hostname=None,
        ssl_handshake_timeout=None,
        ssl_shutdown_timeout=None,
    ):
        """Upgrade ``transport`` to TLS; return the new transport that
        ``protocol`` should use from now on."""
        ssl = _compat.ssl
        if ssl is None:
            raise RuntimeError("Python ssl module is not available")
        if not isinstance(sslcontext, ssl.SSLContext):
            raise TypeError(
                f"sslcontext is expected to be an instance of ssl.SSLContext, got {sslcontext!r}"
            )
        if not getattr(transport, "_start_tls_compatible", False):
            raise TypeError(f"transport {transport!r} is not supported by start_tls()")
        waiter = self.create_future()
        ssl_protocol = tls_protocol(
            self,
            protocol,
            sslcontext,
            waiter,
            server_side,
            server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout,
            call_connection_made=False,
        )
        # Paused first, so that the TLS protocol receives nothing before its
        # connection_made.
        transport.pause_reading()
        transport.set_protocol(ssl_protocol)
        connection_made = self.call_soon(ssl_protocol.connection_made, transport)
        resume = self.call_soon(transport.resume_reading)
        try:
            await waiter
        except BaseException:
            transport.close()
            connection_made.cancel()
            resume.cancel()
            raise
        return ssl_protocol._app_transport
