"""Client connections: ``create_connection`` (Happy Eyeballs, interleaved
address families, combined errors), ``create_unix_connection``,
``connect_accepted_socket``, and the making of socket transports.

What is here is the per-connection logic (resolving, trying addresses,
binding) with asyncio's semantics, errors and messages; the bytes go
through the native transport core.
"""

import asyncio
import functools
import itertools
import os
import socket

from asyncio import staggered

from . import _compat
from ._hooks import logger
from ._tls import check_ssl_socket
from ._transports import SocketTransport

__all__ = ("ConnectMixin",)


def _set_nodelay(sock):
    # Every TCP stream socket (asyncio checks ``proto == IPPROTO_TCP``, which
    # skips sockets created with proto=0).
    if sock.family in (socket.AF_INET, socket.AF_INET6) and sock.type == socket.SOCK_STREAM:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _interleave_by_family(infos, first_family_count=1):
    """Reorder addresses so that families alternate, keeping the first
    ``first_family_count`` entries of the first family in front."""
    groups = {}
    for info in infos:
        groups.setdefault(info[0], []).append(info)
    lists = list(groups.values())
    head = []
    if first_family_count > 1:
        head = lists[0][: first_family_count - 1]
        del lists[0][: first_family_count - 1]
    rest = (info for group in itertools.zip_longest(*lists) for info in group if info is not None)
    return head + list(rest)


def _combined_connect_error(exceptions_):
    """The exception create_connection raises when every address failed."""
    if len(exceptions_) == 1:
        return exceptions_[0]
    first = str(exceptions_[0])
    if all(str(exc) == first for exc in exceptions_):
        return exceptions_[0]
    return OSError("Multiple exceptions: {}".format(", ".join(str(exc) for exc in exceptions_)))


class ConnectMixin:
    """The client-connection methods of ``ferroloop.Loop``. Names are
    resolved with ``_ensure_resolved`` (``DnsMixin``), sockets connected with
    ``sock_connect`` (``SockMixin``)."""

    def _make_socket_transport(self, sock, protocol, waiter=None, *, extra=None, server=None):
        _set_nodelay(sock)
        transport = SocketTransport(self, sock, protocol, extra, server)
        transport._core._start(transport, waiter)
        return transport

    async def _create_connection_transport(
        self,
        sock,
        protocol_factory,
        ssl,
        server_hostname,
        server_side=False,
        ssl_handshake_timeout=None,
        ssl_shutdown_timeout=None,
    ):
        sock.setblocking(False)
        protocol = protocol_factory()
        waiter = self.create_future()
        if ssl:
            transport = self._make_ssl_transport(
                sock,
                protocol,
                None if isinstance(ssl, bool) else ssl,
                waiter,
                server_side=server_side,
                server_hostname=server_hostname,
                ssl_handshake_timeout=ssl_handshake_timeout,
                ssl_shutdown_timeout=ssl_shutdown_timeout,
            )
        else:
            transport = self._make_socket_transport(sock, protocol, waiter)
        try:
            await waiter
        except BaseException:
            transport.close()
            raise
        return transport, protocol

    async def _connect_sock(self, exceptions_, addr_info, local_addr_infos=None):
        """Create a socket, bind it (if asked) and connect it."""
        mine = []
        exceptions_.append(mine)
        family, type_, proto, _, address = addr_info
        sock = None
        try:
            sock = socket.socket(family=family, type=type_, proto=proto)
            sock.setblocking(False)
            if local_addr_infos is not None:
                for lfamily, _, _, _, laddr in local_addr_infos:
                    if lfamily != family:
                        continue
                    try:
                        sock.bind(laddr)
                        break
                    except OSError as exc:
                        mine.append(_compat.bind_error(exc, laddr, _compat.CONNECT_BIND_ERROR_IN_FULL))
                else:
                    if mine:
                        raise mine.pop()
                    raise OSError(f"no matching local address with family={family!r} found")
            await self.sock_connect(sock, address)
            return sock
        except OSError as exc:
            mine.append(exc)
            if sock is not None:
                sock.close()
            raise
        except BaseException:
            if sock is not None:
                sock.close()
            raise
        finally:
            exceptions_ = mine = None

    @_compat.keywords_of(asyncio.BaseEventLoop.create_connection)
    async def create_connection(
        self,
        protocol_factory,
        host=None,
        port=None,
        *,
        ssl=None,
        family=0,
        proto=0,
        flags=0,
        sock=None,
        local_addr=None,
        server_hostname=None,
        ssl_handshake_timeout=None,
        ssl_shutdown_timeout=None,
        happy_eyeballs_delay=None,
        interleave=None,
        all_errors=False,
    ):
        """Open a TCP connection and return ``(transport, protocol)``. With
        ``all_errors``, a failure to connect to every address raises an
        ``ExceptionGroup`` of each attempt's error."""
        if server_hostname is not None and not ssl:
            raise ValueError("server_hostname is only meaningful with ssl")
        if server_hostname is None and ssl:
            if not host:
                raise ValueError("You must set server_hostname when using ssl without a host")
            server_hostname = host
        if ssl_handshake_timeout is not None and not ssl:
            raise ValueError("ssl_handshake_timeout is only meaningful with ssl")
        if ssl_shutdown_timeout is not None and not ssl:
            raise ValueError("ssl_shutdown_timeout is only meaningful with ssl")
        if sock is not None:
            check_ssl_socket(sock)
        if happy_eyeballs_delay is not None and interleave is None:
            interleave = 1

        if host is not None or port is not None:
            if sock is not None:
                raise ValueError("host/port and sock can not be specified at the same time")
            infos = await self._ensure_resolved(
                (host, port), family=family, type=socket.SOCK_STREAM, proto=proto, flags=flags, loop=self
            )
            if not infos:
                raise OSError("getaddrinfo() returned empty list")
            laddr_infos = None
            if local_addr is not None:
                laddr_infos = await self._ensure_resolved(
                    local_addr, family=family, type=socket.SOCK_STREAM, proto=proto, flags=flags, loop=self
                )
                if not laddr_infos:
                    raise OSError("getaddrinfo() returned empty list")
            if interleave:
                infos = _interleave_by_family(infos, interleave)
            exceptions_ = []
            if happy_eyeballs_delay is None:
                for addr_info in infos:
                    try:
                        sock = await self._connect_sock(exceptions_, addr_info, laddr_infos)
                        break
                    except OSError:
                        continue
            else:
                sock, _, _ = await staggered.staggered_race(
                    (functools.partial(self._connect_sock, exceptions_, addr_info, laddr_infos) for addr_info in infos),
                    happy_eyeballs_delay,
                    loop=self,
                )
            if sock is None:
                flat = [exc for group in exceptions_ for exc in group]
                try:
                    if all_errors:
                        raise ExceptionGroup("create_connection failed", flat)
                    raise _combined_connect_error(flat)
                finally:
                    flat = exceptions_ = None
        else:
            if sock is None:
                raise ValueError("host and port was not specified and no sock specified")
            if sock.type != socket.SOCK_STREAM:
                raise ValueError(f"A Stream Socket was expected, got {sock!r}")

        transport, protocol = await self._create_connection_transport(
            sock,
            protocol_factory,
            ssl,
            server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout,
        )
        if self.get_debug():
            logger().debug(
                "%r connected to %s:%r: (%r, %r)",
                transport.get_extra_info("socket"),
                host,
                port,
                transport,
                protocol,
            )
        return transport, protocol

    async def create_unix_connection(
        self,
        protocol_factory,
        path=None,
        *,
        ssl=None,
        sock=None,
        server_hostname=None,
        ssl_handshake_timeout=None,
        ssl_shutdown_timeout=None,
    ):
        """Open a Unix stream connection and return ``(transport, protocol)``."""
        assert server_hostname is None or isinstance(server_hostname, str)
        if ssl:
            if server_hostname is None:
                raise ValueError("you have to pass server_hostname when using ssl")
        else:
            if server_hostname is not None:
                raise ValueError("server_hostname is only meaningful with ssl")
            if ssl_handshake_timeout is not None:
                raise ValueError("ssl_handshake_timeout is only meaningful with ssl")
            if ssl_shutdown_timeout is not None:
                raise ValueError("ssl_shutdown_timeout is only meaningful with ssl")
        if path is not None:
            if sock is not None:
                raise ValueError("path and sock can not be specified at the same time")
            path = os.fspath(path)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, 0)
            try:
                sock.setblocking(False)
                await self.sock_connect(sock, path)
            except BaseException:
                sock.close()
                raise
        else:
            if sock is None:
                raise ValueError("no path and sock were specified")
            if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
                raise ValueError(f"A UNIX Domain Stream Socket was expected, got {sock!r}")
            sock.setblocking(False)
        return await self._create_connection_transport(
            sock,
            protocol_factory,
            ssl,
            server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout,
        )

    async def connect_accepted_socket(
        self, protocol_factory, sock, *, ssl=None, ssl_handshake_timeout=None, ssl_shutdown_timeout=None
    ):
        """Wrap an already accepted socket in a transport."""
        if sock.type != socket.SOCK_STREAM:
            raise ValueError(f"A Stream Socket was expected, got {sock!r}")
        if ssl_handshake_timeout is not None and not ssl:
            raise ValueError("ssl_handshake_timeout is only meaningful with ssl")
        if ssl_shutdown_timeout is not None and not ssl:
            raise ValueError("ssl_shutdown_timeout is only meaningful with ssl")
        check_ssl_socket(sock)
        transport, protocol = await self._create_connection_transport(
            sock,
            protocol_factory,
            ssl,
            "",
            server_side=True,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout,
        )
        if self.get_debug():
            logger().debug("%r handled: (%r, %r)", transport.get_extra_info("socket"), transport, protocol)
        return transport, protocol
