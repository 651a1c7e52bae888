"""TLS arguments: ferroloop does not implement TLS transports yet, and
refuses ``ssl=`` rather than sending plaintext."""

from . import _compat

__all__ = ("check_ssl_socket", "reject_tls")


def check_ssl_socket(sock):
    """Refuse an ``ssl.SSLSocket`` passed where asyncio wants a plain socket."""
    if _compat.ssl is not None and isinstance(sock, _compat.ssl.SSLSocket):
        raise TypeError("Socket cannot be of type SSLSocket")


def reject_tls(ssl):
    """Refuse an ``ssl=`` argument that asks for TLS."""
    if ssl:
        raise NotImplementedError(
            "ferroloop does not implement TLS transports yet; "
            "see the compatibility table in ferroloop's README"
        )
