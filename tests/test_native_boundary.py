"""The boundary between Python and the native module: whatever a native
function or method is given, it returns or raises a Python exception, never
a ``SystemError`` (an exception set without an error return, or the other
way round), a Rust ``PanicException`` or an abort.

Every native entry point goes through PyO3's trampolines, which turn a Rust
panic into ``PanicException`` instead of unwinding into C: the
``#[pymethods]``/``#[pyfunction]`` tables, ``tp_traverse``/``tp_clear``
and ``tp_dealloc``, and the vectorcall entry points of ``call_soon``,
``call_soon_threadsafe``, ``call_later`` and ``call_at``
(``loop_/fastcall.rs``: PyO3's own trampoline, see ``cpython.rs``, except
for the common shapes of call, served directly under a ``catch_unwind`` that
raises the same ``PanicException``). Two ``extern "C"`` functions bypass
both, and cannot panic: ``Loop.get_debug`` (``fastcall.rs``: an atomic load and a reference
count increment) and the SIGCHLD handler of ``ferroloop-core``
(``process/sigchld.rs``: atomic loads and stores, ``write`` to eventfds,
the previous handler; no allocation, no formatting, no indexing). The
release profile keeps Rust's default ``panic = "unwind"``, without which the
trampolines could not catch anything.

This file calls every native class's constructor and every native method of
live objects with absurd arguments.
"""

import asyncio
import itertools
import os
import socket

import pytest

import ferroloop
from conftest import tls_contexts
from ferroloop import _core

# Methods that would run, stop or close the loop or the object under test
# (their wrong-argument errors are checked in test_bad_input.py).
SKIPPED = {
    "run_forever",
    "run_until_complete",
    "_run_once",
    "stop",
    "close",
    "_close_native",
    "abort",
    "_force_close",
}


def _absurd(loop, sock):
    return [
        None,
        -1,
        2**64,
        -(2**64),
        float("nan"),
        float("inf"),
        "x",
        b"x",
        (),
        object(),
        loop,
        sock,
        print,
        asyncio.Protocol(),
        bytearray(3),
        memoryview(b"ab"),
    ]


def _calls(function, values, most):
    """Calls ``function`` with every combination of up to ``most``
    arguments among ``values``; returns the exceptions of the wrong kind."""
    wrong = []
    for n in range(most + 1):
        for args in itertools.product(values, repeat=n):
            try:
                function(*args)
            except (SystemError, BaseException) as exc:
                if isinstance(exc, SystemError) or type(exc).__name__ == "PanicException":
                    wrong.append((getattr(function, "__qualname__", function), args, exc))
    return wrong


@pytest.fixture
def objects():
    """A ferroloop loop and live native objects of every kind."""
    loop = ferroloop.new_event_loop()
    a, b = socket.socketpair()
    a.setblocking(False)
    server_ctx, client_ctx = tls_contexts()

    async def make():
        stream, _ = await loop.connect_accepted_socket(asyncio.Protocol, a)
        r, w = os.pipe()
        read_pipe, _ = await loop.connect_read_pipe(asyncio.Protocol, os.fdopen(r, "rb", 0))
        write_pipe, _ = await loop.connect_write_pipe(asyncio.Protocol, os.fdopen(w, "wb", 0))
        server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        tls, _ = await loop.create_connection(
            asyncio.Protocol, "127.0.0.1", port, ssl=client_ctx, server_hostname="localhost"
        )
        return server, {
            "stream core": stream._core,
            "read pipe core": read_pipe._core,
            "write pipe core": write_pipe._core,
            "tls layer": tls._ssl_protocol,
            "handle": loop.call_soon(print),
            "timer handle": loop.call_later(3600, print),
        }, [stream, read_pipe, write_pipe, tls]

    server, natives, transports = loop.run_until_complete(make())
    natives["loop"] = loop
    yield loop, b, natives
    for transport in transports:
        transport.close()
    server.close()
    loop.run_until_complete(server.wait_closed())
    loop.close()
    a.close()
    b.close()


def test_native_constructors_with_absurd_arguments(objects):
    loop, sock, _ = objects
    values = _absurd(loop, sock)
    classes = [c for c in vars(_core).values() if isinstance(c, type) and c.__module__.startswith("ferroloop")]
    assert len(classes) >= 8
    wrong = []
    for cls in classes:
        wrong += _calls(cls, values, 2)
    assert wrong == []


def test_native_methods_with_absurd_arguments(objects):
    loop, sock, natives = objects
    values = _absurd(loop, sock)
    wrong = []
    for name, obj in natives.items():
        native = next(c for c in type(obj).__mro__ if c.__module__ == "ferroloop._core")
        for attr in sorted(vars(native)):
            if attr.startswith("__") or attr in SKIPPED:
                continue
            try:
                member = getattr(obj, attr)
            except Exception:
                continue
            if callable(member):
                wrong += _calls(member, values, 2)
    assert wrong == []
    # Undo what the calls that succeeded set, then: the loop still runs.
    loop.set_task_factory(None)
    loop.set_debug(False)
    loop._set_signals_active(False)
    assert loop.run_until_complete(asyncio.sleep(0, "alive")) == "alive"


def test_starting_a_transport_without_protocol_raises():
    """A core whose protocol is gone cannot be started again: an exception,
    not a panic (``_start`` is private; a face calls it once)."""
    loop = ferroloop.new_event_loop()
    a, b = socket.socketpair()
    try:

        async def main():
            transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, a)
            transport.close()
            await asyncio.sleep(0)
            with pytest.raises(RuntimeError, match="the transport has no protocol"):
                transport._core._start(transport, None)

        loop.run_until_complete(main())
    finally:
        loop.close()
        a.close()
        b.close()
