"""Datagram endpoints: ``create_datagram_endpoint`` (UDP over IPv4 and IPv6,
Unix datagram sockets) and the making of datagram transports.

What is here is the per-endpoint logic with asyncio's semantics, errors and
messages (``BaseEventLoop.create_datagram_endpoint``): checking the
arguments, resolving and pairing local and remote addresses by family and
protocol, trying each pair until a socket binds (and connects), Unix
socket paths. The datagrams go through the native transport core
(``DatagramTransport``).
"""

import socket

from . import _compat
from ._hooks import logger
from ._server import remove_stale_unix_socket, set_reuseport
from ._transports import DatagramTransport

__all__ = ("DatagramMixin",)


def _check_given_socket(sock, modifiers):
    """The checks of ``create_datagram_endpoint(sock=...)``."""
    if _compat.DATAGRAM_SOCK_MUST_BE_DGRAM:
        if sock.type != socket.SOCK_DGRAM:
            raise ValueError(f"A UDP Socket was expected, got {sock!r}")
    elif sock.type == socket.SOCK_STREAM:
        raise ValueError(f"A datagram socket was expected, got {sock!r}")
    if any(modifiers.values()):
        # Name the offending keyword arguments, as asyncio does.
        problems = ", ".join(f"{name}={value}" for name, value in modifiers.items() if value)
        raise ValueError(f"socket modifier keyword arguments can not be used when sock is specified. ({problems})")


class DatagramMixin:
    """The datagram methods of ``ferroloop.Loop``. Names are resolved with
    ``_ensure_resolved`` (``DnsMixin``), sockets connected with
    ``sock_connect`` (``SockMixin``)."""

    def _make_datagram_transport(self, sock, protocol, address=None, waiter=None, extra=None):
        transport = DatagramTransport(self, sock, protocol, address, extra)
        transport._core._start(transport, waiter)
        return transport

    async def create_datagram_endpoint(
        self,
        protocol_factory,
        local_addr=None,
        remote_addr=None,
        *,
        family=0,
        proto=0,
        flags=0,
        reuse_port=None,
        allow_broadcast=None,
        sock=None,
    ):
        """Create a datagram endpoint and return ``(transport, protocol)``."""
        if sock is not None:
            modifiers = {
                "local_addr": local_addr,
                "remote_addr": remote_addr,
                "family": family,
                "proto": proto,
                "flags": flags,
                "reuse_port": reuse_port,
                "allow_broadcast": allow_broadcast,
            }
            _check_given_socket(sock, modifiers)
            sock.setblocking(False)
            r_addr = None
        else:
            pairs = await self._datagram_address_pairs(local_addr, remote_addr, family, proto, flags)
            sock, r_addr = await self._bind_datagram_socket(
                pairs, local_addr, remote_addr, reuse_port, allow_broadcast
            )

        protocol = protocol_factory()
        waiter = self.create_future()
        transport = self._make_datagram_transport(sock, protocol, r_addr, waiter)
        if self.get_debug():
            if local_addr:
                logger().info(
                    "Datagram endpoint local_addr=%r remote_addr=%r created: (%r, %r)",
                    local_addr,
                    remote_addr,
                    transport,
                    protocol,
                )
            else:
                logger().debug(
                    "Datagram endpoint remote_addr=%r created: (%r, %r)", remote_addr, transport, protocol
                )
        try:
            await waiter
        except BaseException:
            transport.close()
            raise
        return transport, protocol

    async def _datagram_address_pairs(self, local_addr, remote_addr, family, proto, flags):
        """The ``((family, proto), (local, remote))`` candidates to try, in
        order."""
        if not (local_addr or remote_addr):
            if family == 0:
                raise ValueError("unexpected address family")
            return [((family, proto), (None, None))]
        if hasattr(socket, "AF_UNIX") and family == socket.AF_UNIX:
            for addr in (local_addr, remote_addr):
                if addr is not None and not isinstance(addr, str):
                    raise TypeError("string is expected")
            if local_addr:
                remove_stale_unix_socket(local_addr)
            return [((family, proto), (local_addr, remote_addr))]

        # Addresses joined by (family, protocol), in the order found.
        by_key = {}
        for index, addr in ((0, local_addr), (1, remote_addr)):
            if addr is None:
                continue
            if not (isinstance(addr, tuple) and len(addr) == 2):
                raise TypeError("2-tuple is expected")
            infos = await self._ensure_resolved(
                addr, family=family, type=socket.SOCK_DGRAM, proto=proto, flags=flags, loop=self
            )
            if not infos:
                raise OSError("getaddrinfo() returned empty list")
            for fam, _, pro, _, address in infos:
                by_key.setdefault((fam, pro), [None, None])
                by_key[(fam, pro)][index] = address
        # Every address given must have a candidate of the pair's family.
        pairs = [
            (key, pair)
            for key, pair in by_key.items()
            if not ((local_addr and pair[0] is None) or (remote_addr and pair[1] is None))
        ]
        if not pairs:
            raise ValueError("can not get address information")
        return pairs

    async def _bind_datagram_socket(self, pairs, local_addr, remote_addr, reuse_port, allow_broadcast):
        """A socket for the first candidate that binds (and connects), and
        the remote address to send to; the first error if none does."""
        exceptions = []
        for (family, proto), (local_address, remote_address) in pairs:
            sock = None
            try:
                sock = socket.socket(family=family, type=socket.SOCK_DGRAM, proto=proto)
                if reuse_port:
                    set_reuseport(sock)
                if allow_broadcast:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
                sock.setblocking(False)
                if local_addr:
                    sock.bind(local_address)
                if remote_addr:
                    if not allow_broadcast:
                        await self.sock_connect(sock, remote_address)
                    return sock, remote_address
                return sock, None
            except OSError as exc:
                if sock is not None:
                    sock.close()
                exceptions.append(exc)
            except BaseException:
                if sock is not None:
                    sock.close()
                raise
        try:
            raise exceptions[0]
        finally:
            exceptions = None
