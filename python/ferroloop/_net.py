"""Networking on ferroloop: connections, servers, socket coroutines, name
resolution and sendfile.

The byte paths are native: ``_core.TransportCore`` reads and writes in
Rust, and ``sock_recv``, ``sock_recv_into`` and ``sock_sendall`` on plain
sockets try and wait natively (``_core.SockWaiter``); the other ``sock_*``
coroutines wait through the native readiness callbacks.
What is here is the per-connection logic (resolving, trying addresses,
binding, accepting) with asyncio's semantics, errors and messages. The
``Server`` object is asyncio's own ``asyncio.base_events.Server``, whose
contract with an event loop is ``_start_serving``/``_stop_serving``.
"""

import collections.abc
import errno
import functools
import io
import itertools
import os
import socket
import stat
import sys
import warnings

from asyncio import base_events, constants, exceptions, staggered, tasks, transports, trsock

from . import _compat, _core
from ._hooks import logger

__all__ = ("NetworkMixin", "SocketTransport")

_HAS_IPV6 = _compat.HAS_IPV6
_SENDFILE_FALLBACK_BLOCK = 16384


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


def _call_method(obj, name, *args):
    return getattr(obj, name)(*args)


def _check_ssl_socket(sock):
    if _compat.ssl is not None and isinstance(sock, _compat.ssl.SSLSocket):
        raise TypeError("Socket cannot be of type SSLSocket")


def _reject_tls(ssl):
    if ssl:
        raise NotImplementedError(
            "ferroloop does not implement TLS transports yet; "
            "see the compatibility table in ferroloop's README"
        )


def _set_nodelay(sock):
    # Every TCP stream socket (asyncio checks ``proto == IPPROTO_TCP``, which
    # skips sockets created with proto=0).
    if sock.family in (socket.AF_INET, socket.AF_INET6) and sock.type == socket.SOCK_STREAM:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _numeric_addrinfo(host, port, family, type_, proto, flowinfo=0, scopeid=0):
    """The getaddrinfo() entry for a host that is already a numeric IP
    address, or None (then the name must be resolved)."""
    if host is None or proto not in (0, socket.IPPROTO_TCP, socket.IPPROTO_UDP):
        return None
    if type_ == socket.SOCK_STREAM:
        proto = socket.IPPROTO_TCP
    elif type_ == socket.SOCK_DGRAM:
        proto = socket.IPPROTO_UDP
    else:
        return None
    if port is None or port == b"" or port == "":
        port = 0
    else:
        try:
            port = int(port)
        except (TypeError, ValueError):
            return None  # a service name such as "http"
    families = [family] if family != socket.AF_UNSPEC else [socket.AF_INET] + ([socket.AF_INET6] if _HAS_IPV6 else [])
    if isinstance(host, bytes):
        host = host.decode("idna")
    if "%" in host:
        # inet_pton does not take an IPv6 zone index ('::1%lo0').
        return None
    for af in families:
        try:
            socket.inet_pton(af, host)
        except OSError:
            continue
        if _HAS_IPV6 and af == socket.AF_INET6:
            return af, type_, proto, "", (host, port, flowinfo, scopeid)
        return af, type_, proto, "", (host, port)
    return None


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


class _SendfileFallbackProtocol:
    """Temporarily replaces a transport's protocol while the sendfile
    fallback writes, so that flow control can be awaited."""

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


class NetworkMixin:
    """The networking methods of ``ferroloop.Loop``."""

    # -- transports -----------------------------------------------------------

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
        _reject_tls(ssl)
        sock.setblocking(False)
        protocol = protocol_factory()
        waiter = self.create_future()
        transport = self._make_socket_transport(sock, protocol, waiter)
        try:
            await waiter
        except BaseException:
            transport.close()
            raise
        return transport, protocol

    # -- name resolution ------------------------------------------------------

    async def getaddrinfo(self, host, port, *, family=0, type=0, proto=0, flags=0):
        """``socket.getaddrinfo`` in the default executor."""
        resolve = self._getaddrinfo_debug if self.get_debug() else socket.getaddrinfo
        return await self.run_in_executor(None, resolve, host, port, family, type, proto, flags)

    def _getaddrinfo_debug(self, host, port, family, type, proto, flags):
        parts = [f"{host}:{port!r}"]
        for name, value in (("family", family), ("type", type), ("proto", proto), ("flags", flags)):
            if value:
                parts.append(f"{name}={value!r}")
        what = ", ".join(parts)
        logger().debug("Get address info %s", what)
        t0 = self.time()
        infos = socket.getaddrinfo(host, port, family, type, proto, flags)
        dt = self.time() - t0
        message = f"Getting address info {what} took {dt * 1e3:.3f}ms: {infos!r}"
        if dt >= self.slow_callback_duration:
            logger().info(message)
        else:
            logger().debug(message)
        return infos

    async def getnameinfo(self, sockaddr, flags=0):
        """``socket.getnameinfo`` in the default executor."""
        return await self.run_in_executor(None, socket.getnameinfo, sockaddr, flags)

    async def _ensure_resolved(self, address, *, family=0, type=socket.SOCK_STREAM, proto=0, flags=0, loop=None):
        host, port = address[:2]
        info = _numeric_addrinfo(host, port, family, type, proto, *address[2:])
        if info is not None:
            return [info]
        return await (loop or self).getaddrinfo(host, port, family=family, type=type, proto=proto, flags=flags)

    # -- clients -------------------------------------------------------------

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
                        mine.append(
                            OSError(
                                exc.errno,
                                f"error while attempting to bind on address {laddr!r}: {exc.strerror.lower()}",
                            )
                        )
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
        **kwargs,
    ):
        """Open a TCP connection and return ``(transport, protocol)``."""
        if kwargs:
            self._check_connection_kwargs(kwargs)
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
            _check_ssl_socket(sock)
        _reject_tls(ssl)
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

    def _check_connection_kwargs(self, kwargs):
        # Keyword arguments of newer asyncio versions (all_errors in 3.12).
        if _compat.CREATE_CONNECTION_TAKES_ALL_ERRORS and set(kwargs) <= {"all_errors"}:
            if kwargs.get("all_errors"):
                raise NotImplementedError("ferroloop does not implement create_connection(all_errors=True) yet")
            return
        name = next(iter(kwargs))
        raise TypeError(f"create_connection() got an unexpected keyword argument {name!r}")

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
        _reject_tls(ssl)
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
        _check_ssl_socket(sock)
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

    # -- servers -------------------------------------------------------------

    async def _server_addrinfo(self, host, port, family, flags):
        infos = await self._ensure_resolved((host, port), family=family, type=socket.SOCK_STREAM, flags=flags, loop=self)
        if not infos:
            raise OSError(f"getaddrinfo({host!r}) returned empty list")
        return infos

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
        ssl_handshake_timeout=None,
        ssl_shutdown_timeout=None,
        start_serving=True,
        **kwargs,
    ):
        """Listen on ``host``/``port`` (one or several hosts) and return a
        ``Server``."""
        if kwargs:
            name = next(iter(kwargs))
            raise TypeError(f"create_server() got an unexpected keyword argument {name!r}")
        if isinstance(ssl, bool):
            raise TypeError("ssl argument must be an SSLContext or None")
        if ssl_handshake_timeout is not None and ssl is None:
            raise ValueError("ssl_handshake_timeout is only meaningful with ssl")
        if ssl_shutdown_timeout is not None and ssl is None:
            raise ValueError("ssl_shutdown_timeout is only meaningful with ssl")
        _reject_tls(ssl)
        if sock is not None:
            _check_ssl_socket(sock)

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
                        if not hasattr(socket, "SO_REUSEPORT"):
                            raise ValueError("reuse_port not supported by socket module")
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                    if _HAS_IPV6 and af == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
                        # One socket per family, not a dual-stack one.
                        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, True)
                    try:
                        sock.bind(sa)
                    except OSError as err:
                        raise OSError(
                            err.errno, f"error while attempting to bind on address {sa!r}: {err.strerror.lower()}"
                        ) from None
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
        **kwargs,
    ):
        """Listen on a Unix socket and return a ``Server``."""
        if kwargs:
            name = next(iter(kwargs))
            raise TypeError(f"create_unix_server() got an unexpected keyword argument {name!r}")
        if isinstance(ssl, bool):
            raise TypeError("ssl argument must be an SSLContext or None")
        if ssl_handshake_timeout is not None and not ssl:
            raise ValueError("ssl_handshake_timeout is only meaningful with ssl")
        if ssl_shutdown_timeout is not None and not ssl:
            raise ValueError("ssl_shutdown_timeout is only meaningful with ssl")
        _reject_tls(ssl)
        if path is not None:
            if sock is not None:
                raise ValueError("path and sock can not be specified at the same time")
            path = os.fspath(path)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            # A stale socket file from an earlier run is removed (abstract
            # socket names start with a NUL and have no file).
            if path[0] not in (0, "\x00"):
                try:
                    if stat.S_ISSOCK(os.stat(path).st_mode):
                        os.remove(path)
                except FileNotFoundError:
                    pass
                except OSError as err:
                    logger().error("Unable to check or remove stale UNIX socket %r: %r", path, err)
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
        self._remove_reader(sock.fileno())
        sock.close()

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
                self.create_task(self._accept_connection2(protocol_factory, conn, {"peername": addr}, sslcontext, server))

    async def _accept_connection2(self, protocol_factory, conn, extra, sslcontext=None, server=None, *args):
        protocol = transport = None
        try:
            _reject_tls(sslcontext)
            protocol = protocol_factory()
            waiter = self.create_future()
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

    # -- socket coroutines ----------------------------------------------------

    def _check_sock(self, sock):
        _check_ssl_socket(sock)
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
        return await fut

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

    async def sock_recv(self, sock, n):
        """Receive up to ``n`` bytes from ``sock``."""
        self._check_sock(sock)
        if type(sock) is socket.socket and type(n) is int and n > 0:
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
        if sock.family == socket.AF_INET or (_HAS_IPV6 and sock.family == socket.AF_INET6):
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

    # -- sendfile --------------------------------------------------------------

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
        _check_ssl_socket(sock)
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
        if offset:
            file.seek(offset)
        blocksize = min(count, constants.SENDFILE_FALLBACK_READBUFFER_SIZE) if count else constants.SENDFILE_FALLBACK_READBUFFER_SIZE
        buf = bytearray(blocksize)
        total_sent = 0
        try:
            while True:
                if count:
                    blocksize = min(count - total_sent, blocksize)
                    if blocksize <= 0:
                        break
                view = memoryview(buf)[:blocksize]
                read = await self.run_in_executor(None, file.readinto, view)
                if not read:
                    break
                await self.sock_sendall(sock, view[:read])
                total_sent += read
            return total_sent
        finally:
            if total_sent > 0 and hasattr(file, "seek"):
                file.seek(offset + total_sent)

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
        if offset:
            file.seek(offset)
        blocksize = min(count, _SENDFILE_FALLBACK_BLOCK) if count else _SENDFILE_FALLBACK_BLOCK
        buf = bytearray(blocksize)
        total_sent = 0
        proto = _SendfileFallbackProtocol(transport)
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
                await proto.drain()
                transport.write(view[:read])
                total_sent += read
        finally:
            if total_sent > 0 and hasattr(file, "seek"):
                file.seek(offset + total_sent)
            await proto.restore()
