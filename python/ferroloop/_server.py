"""Servers: ``create_server``, ``create_unix_server``, and accepting
connections.

The ``Server`` object is asyncio's own ``asyncio.base_events.Server``, whose
contract with an event loop is ``_start_serving``/``_stop_serving``.
"""

import asyncio
import collections.abc
import errno
import itertools
import os
import socket
import stat
import sys

from asyncio import base_events, constants, tasks, trsock

from ._compat import (
    CREATE_SERVER_SKIPS_UNAVAILABLE,
    HAS_IPV6,
    SERVER_BIND_ERROR_IN_FULL,
    UNIX_SERVER_CLEANS_UP,
    bind_error,
    keywords_of,
)
from ._hooks import logger
from ._tls import check_ssl_socket

__all__ = ("ServerMixin",)


def _file_identity(path):
    """What tells one file from another, even at the same path."""
    st = os.stat(path)
    return st.st_dev, st.st_ino


def set_reuseport(sock):
    """``SO_REUSEPORT`` on ``sock``, or asyncio's ValueError where the
    platform lacks it."""
    if not hasattr(socket, "SO_REUSEPORT"):
        raise ValueError("reuse_port not supported by socket module")
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    except OSError:
        raise ValueError("reuse_port not supported by socket module, SO_REUSEPORT defined but not implemented.")


def remove_stale_unix_socket(path):
    """Remove the socket file an earlier run left at ``path`` before binding
    there (abstract socket names start with a NUL and have no file); a file
    that is not a socket is left alone."""
    if path[0] in (0, "\x00"):
        return
    try:
        if stat.S_ISSOCK(os.stat(path).st_mode):
            os.remove(path)
    except FileNotFoundError:
        pass
    except OSError as err:
        # The directory may allow creating the socket but not this check.
        logger().error("Unable to check or remove stale UNIX socket %r: %r", path, err)


class ServerMixin:
    """The server methods of ``ferroloop.Loop``. Names are resolved with
    ``_ensure_resolved`` (``DnsMixin``); accepted connections get their
    transports from ``_make_socket_transport`` (``ConnectMixin``)."""

    async def _server_addrinfo(self, host, port, family, flags):
        infos = await self._ensure_resolved((host, port), family=family, type=socket.SOCK_STREAM, flags=flags, loop=self)
        if not infos:
            raise OSError(f"getaddrinfo({host!r}) returned empty list")
        return infos

    @keywords_of(asyncio.BaseEventLoop.create_server)
    async def create_server(
        self,
        protocol_factory,
        host=None,
        port=None,
        *,
        family=socket.AF_UNSPEC,
        flags=socket.AI_PASSIVE,
        sock=None,
        backlog=100,
        ssl=None,
        reuse_address=None,
        reuse_port=None,
        keep_alive=None,
        ssl_handshake_timeout=None,
        ssl_shutdown_timeout=None,
        start_serving=True,
    ):
        """Listen on ``host``/``port`` (one or several hosts) and return a
        ``Server``. ``keep_alive`` turns SO_KEEPALIVE on for the listening
        sockets made here, which the accepted connections inherit."""
        if isinstance(ssl, bool):
            raise TypeError("ssl argument must be an SSLContext or None")
        if ssl_handshake_timeout is not None and ssl is None:
            raise ValueError("ssl_handshake_timeout is only meaningful with ssl")
        if ssl_shutdown_timeout is not None and ssl is None:
            raise ValueError("ssl_shutdown_timeout is only meaningful with ssl")
        if sock is not None:
            check_ssl_socket(sock)

        if host is not None or port is not None:
            if sock is not None:
                raise ValueError("host/port and sock can not be specified at the same time")
            if reuse_address is None:
                reuse_address = os.name == "posix" and sys.platform != "cygwin"
            if host == "":
                hosts = [None]
            elif isinstance(host, str) or not isinstance(host, collections.abc.Iterable):
                hosts = [host]
            else:
                hosts = host
            resolved = await tasks.gather(*[self._server_addrinfo(h, port, family, flags) for h in hosts])
            # One socket per distinct address, in resolution order.
            infos = dict.fromkeys(itertools.chain.from_iterable(resolved))
            sockets = []
            completed = False
            try:
                for af, socktype, proto, _canonname, sa in infos:
                    try:
                        sock = socket.socket(af, socktype, proto)
                    except OSError:
                        if self.get_debug():
                            logger().warning(
                                "create_server() failed to create socket.socket(%r, %r, %r)",
                                af,
                                socktype,
                                proto,
                                exc_info=True,
                            )
                        continue
                    sockets.append(sock)
                    if reuse_address:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, True)
                    if reuse_port:
                        set_reuseport(sock)
                    if keep_alive:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, True)
                    if HAS_IPV6 and af == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
                        # One socket per family, not a dual-stack one.
                        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, True)
                    try:
                        sock.bind(sa)
                    except OSError as err:
                        error = bind_error(err, sa, SERVER_BIND_ERROR_IN_FULL)
                        if err.errno == errno.EADDRNOTAVAIL and CREATE_SERVER_SKIPS_UNAVAILABLE:
                            # The address family is not enabled: skip it.
                            sockets.pop()
                            sock.close()
                            if self.get_debug():
                                logger().warning(error.strerror)
                            continue
                        raise error from None
                if CREATE_SERVER_SKIPS_UNAVAILABLE and not sockets:
                    raise OSError(f"could not bind on any address out of {[info[4] for info in infos]!r}")
                completed = True
            finally:
                if not completed:
                    for s in sockets:
                        s.close()
        else:
            if sock is None:
                raise ValueError("Neither host/port nor sock were specified")
            if sock.type != socket.SOCK_STREAM:
                raise ValueError(f"A Stream Socket was expected, got {sock!r}")
            sockets = [sock]

        for s in sockets:
            s.setblocking(False)
        server = base_events.Server(
            self, sockets, protocol_factory, ssl, backlog, ssl_handshake_timeout, ssl_shutdown_timeout
        )
        if start_serving:
            server._start_serving()
            # One turn, so that the listening sockets are registered.
            await tasks.sleep(0)
        if self.get_debug():
            logger().info("%r is serving", server)
        return server

    @keywords_of(asyncio.SelectorEventLoop.create_unix_server)
    async def create_unix_server(
        self,
        protocol_factory,
        path=None,
        *,
        sock=None,
        backlog=100,
        ssl=None,
        ssl_handshake_timeout=None,
        ssl_shutdown_timeout=None,
        start_serving=True,
        cleanup_socket=True,
    ):
        """Listen on a Unix socket and return a ``Server``. With
        ``cleanup_socket`` (where asyncio has it), closing the server removes
        the socket's file, unless another socket has replaced it meanwhile.
        """
        if isinstance(ssl, bool):
            raise TypeError("ssl argument must be an SSLContext or None")
        if ssl_handshake_timeout is not None and not ssl:
            raise ValueError("ssl_handshake_timeout is only meaningful with ssl")
        if ssl_shutdown_timeout is not None and not ssl:
            raise ValueError("ssl_shutdown_timeout is only meaningful with ssl")
        if path is not None:
            if sock is not None:
                raise ValueError("path and sock can not be specified at the same time")
            path = os.fspath(path)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            remove_stale_unix_socket(path)
            try:
                sock.bind(path)
            except OSError as exc:
                sock.close()
                if exc.errno == errno.EADDRINUSE:
                    raise OSError(errno.EADDRINUSE, f"Address {path!r} is already in use") from None
                raise
            except BaseException:
                sock.close()
                raise
        else:
            if sock is None:
                raise ValueError("path was not specified, and no sock specified")
            if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
                raise ValueError(f"A UNIX Domain Stream Socket was expected, got {sock!r}")
        if cleanup_socket and UNIX_SERVER_CLEANS_UP:
            self._remember_socket_file(sock)
        sock.setblocking(False)
        server = base_events.Server(
            self, [sock], protocol_factory, ssl, backlog, ssl_handshake_timeout, ssl_shutdown_timeout
        )
        if start_serving:
            server._start_serving()
            await tasks.sleep(0)
        return server

    def _start_serving(
        self,
        protocol_factory,
        sock,
        sslcontext=None,
        server=None,
        backlog=100,
        ssl_handshake_timeout=constants.SSL_HANDSHAKE_TIMEOUT,
        ssl_shutdown_timeout=constants.SSL_SHUTDOWN_TIMEOUT,
    ):
        self._add_reader(
            sock.fileno(),
            self._accept_connection,
            protocol_factory,
            sock,
            sslcontext,
            server,
            backlog,
            ssl_handshake_timeout,
            ssl_shutdown_timeout,
        )

    def _stop_serving(self, sock):
        path, identity = self._unix_socket_files.pop(sock, (None, None))
        self._remove_reader(sock.fileno())
        sock.close()
        if path is not None:
            # Removed only if it is still the file our socket was bound to.
            try:
                if _file_identity(path) == identity:
                    os.unlink(path)
            except FileNotFoundError:
                pass

    def _remember_socket_file(self, sock):
        """Note the file a listening Unix socket is bound to, for
        ``_stop_serving`` to remove (abstract and unbound sockets have none)."""
        path = sock.getsockname()
        if not path or path[0] in (0, "\x00"):
            return
        try:
            self._unix_socket_files[sock] = (path, _file_identity(path))
        except FileNotFoundError:
            pass

    def _accept_connection(
        self,
        protocol_factory,
        sock,
        sslcontext=None,
        server=None,
        backlog=100,
        ssl_handshake_timeout=constants.SSL_HANDSHAKE_TIMEOUT,
        ssl_shutdown_timeout=constants.SSL_SHUTDOWN_TIMEOUT,
    ):
        # Accept as many pending connections as the backlog allows per
        # readiness event.
        for _ in range(backlog):
            try:
                conn, addr = sock.accept()
                if self.get_debug():
                    logger().debug("%r got a new connection from %r: %r", server, addr, conn)
                conn.setblocking(False)
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:
                if exc.errno not in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    raise
                # Out of descriptors or memory: report, stop accepting for a
                # while (the descriptor would stay readable), then retry.
                self.call_exception_handler(
                    {
                        "message": "socket.accept() out of system resource",
                        "exception": exc,
                        "socket": trsock.TransportSocket(sock),
                    }
                )
                self._remove_reader(sock.fileno())
                self.call_later(
                    constants.ACCEPT_RETRY_DELAY,
                    self._start_serving,
                    protocol_factory,
                    sock,
                    sslcontext,
                    server,
                    backlog,
                    ssl_handshake_timeout,
                    ssl_shutdown_timeout,
                )
                return
            else:
                self.create_task(
                    self._accept_connection2(
                        protocol_factory,
                        conn,
                        {"peername": addr},
                        sslcontext,
                        server,
                        ssl_handshake_timeout,
                        ssl_shutdown_timeout,
                    )
                )

    async def _accept_connection2(
        self,
        protocol_factory,
        conn,
        extra,
        sslcontext=None,
        server=None,
        ssl_handshake_timeout=constants.SSL_HANDSHAKE_TIMEOUT,
        ssl_shutdown_timeout=constants.SSL_SHUTDOWN_TIMEOUT,
    ):
        protocol = transport = None
        try:
            protocol = protocol_factory()
            waiter = self.create_future()
            if sslcontext:
                transport = self._make_ssl_transport(
                    conn,
                    protocol,
                    sslcontext,
                    waiter=waiter,
                    server_side=True,
                    extra=extra,
                    server=server,
                    ssl_handshake_timeout=ssl_handshake_timeout,
                    ssl_shutdown_timeout=ssl_shutdown_timeout,
                )
            else:
                transport = self._make_socket_transport(conn, protocol, waiter=waiter, extra=extra, server=server)
            try:
                await waiter
            except BaseException:
                transport.close()
                raise
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            if self.get_debug():
                context = {"message": "Error on transport creation for incoming connection", "exception": exc}
                if protocol is not None:
                    context["protocol"] = protocol
                if transport is not None:
                    context["transport"] = transport
                self.call_exception_handler(context)
