"""Shared fixtures: every behaviour test runs on ferroloop and on stdlib
asyncio's own loop, and both must give the same results.

The ``loop`` fixture installs an exception handler that records every call;
a test that expects exception-handler calls takes them from ``loop.errors``
(``take_errors``), and any call left over fails the test at teardown.

Where asyncio's own behaviour differs between Python versions, a test
compares ferroloop with the running interpreter's asyncio rather than with a
literal: ``stdlib_loop`` is a second loop of stdlib asyncio, set up as
``loop`` is, on which a test repeats what it did on ``loop``.
"""

import asyncio
import gc
import os
import socket
import sys

import pytest

import ferroloop

LOOP_FACTORIES = {
    "ferroloop": ferroloop.new_event_loop,
    "asyncio": asyncio.SelectorEventLoop,
}


@pytest.fixture(params=sorted(LOOP_FACTORIES))
def loop_kind(request):
    return request.param


@pytest.fixture
def loop_factory(loop_kind):
    return LOOP_FACTORIES[loop_kind]


def _recording_loop(loop_factory):
    """A new loop whose exception-handler calls are checked at teardown."""
    loop = loop_factory()
    loop.errors = []
    loop.set_exception_handler(lambda lp, context: lp.errors.append(context))
    old_hooks = sys.get_asyncgen_hooks()
    yield loop
    try:
        if not loop.is_closed():
            if not loop.is_running():
                loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()
        gc.collect()
        assert sys.get_asyncgen_hooks() == old_hooks, "asyncgen hooks leaked"
        assert asyncio.events._get_running_loop() is None
        assert loop.errors == [], f"unexpected exception handler calls: {loop.errors}"
    finally:
        asyncio.set_event_loop(None)


@pytest.fixture
def loop(loop_factory):
    yield from _recording_loop(loop_factory)


@pytest.fixture
def stdlib_loop():
    """stdlib asyncio's loop, the reference of what ``loop`` must do."""
    yield from _recording_loop(LOOP_FACTORIES["asyncio"])


_TLS_CONTEXTS = []


def tls_contexts():
    """A server context with a certificate for ``localhost`` and a client
    context that trusts it (made by ``trustme`` once per session)."""
    if not _TLS_CONTEXTS:
        trustme = pytest.importorskip("trustme")
        import ssl

        ca = trustme.CA()
        server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ca.issue_cert("localhost").configure_cert(server)
        client = ssl.create_default_context()
        ca.configure_trust(client)
        _TLS_CONTEXTS.append((server, client))
    return _TLS_CONTEXTS[0]


def take_errors(loop):
    """The exception handler calls so far (consumed)."""
    errors = list(loop.errors)
    loop.errors.clear()
    return errors


def run_briefly(loop, turns=1):
    """Run ``turns`` iterations of the loop."""
    for _ in range(turns):
        loop.call_soon(loop.stop)
        loop.run_forever()


@pytest.fixture
def pair():
    """A connected pair of non-blocking stream sockets."""
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()


@pytest.fixture
def no_fd_leak(loop):
    """Asserts, at the end of the test, that the process holds as many
    descriptors as when the test began (the loop's own included)."""
    before = len(os.listdir("/proc/self/fd"))
    yield
    gc.collect()
    assert len(os.listdir("/proc/self/fd")) == before, "descriptors leaked"
