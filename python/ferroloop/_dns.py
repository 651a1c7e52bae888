"""Name resolution: ``getaddrinfo``/``getnameinfo`` in the default
executor, and numeric addresses resolved without it."""

import socket

from ._compat import HAS_IPV6
from ._hooks import logger

__all__ = ("DnsMixin",)


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
    families = [family] if family != socket.AF_UNSPEC else [socket.AF_INET] + ([socket.AF_INET6] if HAS_IPV6 else [])
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
        if HAS_IPV6 and af == socket.AF_INET6:
            return af, type_, proto, "", (host, port, flowinfo, scopeid)
        return af, type_, proto, "", (host, port)
    return None


class DnsMixin:
    """The name-resolution methods of ``ferroloop.Loop``."""

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
