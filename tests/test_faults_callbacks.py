"""Faults that reach user callbacks, on ferroloop and on stdlib asyncio:
signals while the loop waits (and during I/O), a protocol that raises in
every callback (the rest is in ``test_faults.py``).

Each test checks that the loop survives (it runs again afterwards), reports
through the exception handler what asyncio reports (the ``loop`` fixture
fails a test on any report it does not take), loses no byte the peer
acknowledged, and leaks no descriptor (``/proc/self/fd`` is counted). No
test asserts how long anything takes: waits have generous timeouts that only
turn a hang into a failure.
"""

import asyncio
import os
import re
import signal
import socket
import threading
import time

import pytest

from conftest import run_briefly, take_errors
from faultkit import HUNG, close_server, small_buffers

# -- signals while the loop waits ------------------------------------------------------------


def _signal_soon(sig, count=1):
    """Sends ``sig`` to this process from another thread, a moment from now
    (the loop is then waiting in its poll)."""

    def send():
        time.sleep(0.05)
        for _ in range(count):
            os.kill(os.getpid(), sig)

    thread = threading.Thread(target=send)
    thread.start()
    return thread


def test_signal_handler_runs_while_the_loop_waits(loop, no_fd_leak):
    """A signal arriving while the loop sleeps in its poll (a timer an hour
    away) wakes it; the handler runs; the timer does not fire."""
    timer_fired = []
    loop.call_later(3600, timer_fired.append, True)
    woken = loop.create_future()
    loop.add_signal_handler(signal.SIGUSR1, lambda: woken.done() or woken.set_result("signal"))

    async def main():
        thread = _signal_soon(signal.SIGUSR1)
        result = await asyncio.wait_for(woken, HUNG)
        thread.join()
        return result

    try:
        assert loop.run_until_complete(main()) == "signal"
        assert timer_fired == []
    finally:
        loop.remove_signal_handler(signal.SIGUSR1)


def test_signal_flood_during_io(loop, no_fd_leak):
    """Signals arriving all the time while data flows both ways: every byte
    arrives, in order, and the handler runs."""
    payload = os.urandom(8 * 1024 * 1024)
    handled = []
    loop.add_signal_handler(signal.SIGUSR1, handled.append, 1)
    stop = threading.Event()

    def flood():
        while not stop.is_set():
            os.kill(os.getpid(), signal.SIGUSR1)
            time.sleep(0.0005)

    async def main():
        async def echo(reader, writer):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
            writer.close()

        server = await asyncio.start_server(echo, "127.0.0.1", 0)
        reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname())

        async def send():
            for i in range(0, len(payload), 100_000):
                writer.write(payload[i : i + 100_000])
                await writer.drain()
            writer.write_eof()

        sender = asyncio.ensure_future(send())
        received = await asyncio.wait_for(reader.read(), HUNG)
        await sender
        writer.close()
        await writer.wait_closed()
        await close_server(server)
        return received

    thread = threading.Thread(target=flood)
    thread.start()
    try:
        received = loop.run_until_complete(main())
    finally:
        stop.set()
        thread.join()
        loop.remove_signal_handler(signal.SIGUSR1)
    assert received == payload
    assert handled


def test_python_signal_handler_raising_while_the_loop_waits(loop, no_fd_leak):
    """A Python-level signal handler (not the loop's) that raises while the
    loop waits: the exception comes out of run_until_complete, as from
    asyncio's select(), and the loop runs again afterwards."""

    class FromSignal(Exception):
        pass

    def handler(signum, frame):
        raise FromSignal("raised by the handler")

    async def wait_for_signal():
        thread = _signal_soon(signal.SIGUSR2)
        try:
            await loop.create_future()
        finally:
            thread.join()

    old = signal.signal(signal.SIGUSR2, handler)
    try:
        with pytest.raises(FromSignal, match="raised by the handler"):
            loop.run_until_complete(wait_for_signal())
    finally:
        signal.signal(signal.SIGUSR2, old)
    assert not loop.is_running()
    assert loop.run_until_complete(asyncio.sleep(0, "again")) == "again"


def test_ctrl_c_while_the_loop_waits(loop, no_fd_leak):
    """SIGINT with Python's default handler while the loop waits:
    KeyboardInterrupt comes out of run_forever, and a second run works."""
    ran, threads = [], []

    def start():
        threads.append(_signal_soon(signal.SIGINT))

    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        loop.call_soon(start)
        with pytest.raises(KeyboardInterrupt):
            loop.run_forever()
    finally:
        signal.signal(signal.SIGINT, old)
        for thread in threads:
            thread.join()
    assert not loop.is_running()
    loop.call_soon(ran.append, "second run")
    run_briefly(loop)
    assert ran == ["second run"]


# -- a protocol that raises in every callback ------------------------------------------------


class Raising(asyncio.Protocol):
    """Raises in every callback (after recording that it was called)."""

    def __init__(self, loop, calls):
        self.loop = loop
        self.calls = calls
        self.transport = None
        self.lost = loop.create_future()

    def _fail(self, name):
        self.calls.append(name)
        raise ValueError(f"{name} failed")

    def connection_made(self, transport):
        self.transport = transport
        self._fail("connection_made")

    def data_received(self, data):
        self._fail("data_received")

    def eof_received(self):
        self._fail("eof_received")

    def pause_writing(self):
        self._fail("pause_writing")

    def resume_writing(self):
        self._fail("resume_writing")

    def connection_lost(self, exc):
        self.lost.set_result(exc)
        self._fail("connection_lost")


class RaisingBuffered(asyncio.BufferedProtocol, Raising):
    def get_buffer(self, sizehint):
        self._fail("get_buffer")


class RaisingBufferUpdated(asyncio.BufferedProtocol, Raising):
    def get_buffer(self, sizehint):
        self.calls.append("get_buffer")
        return bytearray(1024)

    def buffer_updated(self, nbytes):
        self._fail("buffer_updated")


# asyncio names its own classes in some messages ("Exception in callback
# _SelectorSocketTransport._call_connection_lost(...)"); ferroloop's stream
# transports are a class of their own (README, "Where ferroloop
# deliberately differs"). Reprs hold addresses and descriptor numbers.
_CLASS_NAMES = re.compile(r"\b(_SelectorSocketTransport|SocketTransport)\b")
_REPRS = re.compile(r"<[^<>]*(<[^<>]*>[^<>]*)*>")


def _reports(loop):
    """What the exception handler got: message (reprs and the transport's
    class blanked out), exception type and message, context keys."""
    reports = []
    for context in take_errors(loop):
        message = _REPRS.sub("<...>", _CLASS_NAMES.sub("Transport", context["message"]))
        exc = context.get("exception")
        keys = sorted(context)
        if message.endswith("PipeTransport._read_ready()"):
            keys = ["exception", "handle or transport", "message"]
        reports.append((message, type(exc).__name__, str(exc), keys))
    return reports


def _raising_scenario(lp, protocol_class):
    """A peer connects, sends, fills the transport's buffer, half-closes and
    goes away, talking to a protocol whose every callback raises. Returns the
    callbacks called and the reports made."""
    calls = []

    async def main():
        proto = protocol_class(lp, calls)
        server = await lp.create_server(lambda: proto, "127.0.0.1", 0)
        peer = socket.socket()
        peer.setblocking(False)
        small_buffers(peer, 8192)
        await lp.sock_connect(peer, server.sockets[0].getsockname())
        while proto.transport is None or "connection_made" not in calls:
            await asyncio.sleep(0)
        # connection_made raised: asyncio leaves the transport open.
        proto.transport.set_write_buffer_limits(high=1024)
        proto.transport.write(os.urandom(4 * 1024 * 1024))
        await lp.sock_sendall(peer, b"data")
        peer.shutdown(socket.SHUT_WR)
        exc = await asyncio.wait_for(proto.lost, HUNG)
        peer.close()
        await close_server(server)
        for _ in range(5):
            await asyncio.sleep(0)
        return type(exc).__name__ if exc else None

    lost = lp.run_until_complete(main())
    return calls, lost, _reports(lp)


@pytest.mark.parametrize("protocol_class", [Raising, RaisingBuffered, RaisingBufferUpdated])
def test_protocol_raising_in_every_callback(loop, stdlib_loop, no_fd_leak, protocol_class):
    """The loop reports each failure as asyncio reports it, takes the fatal
    error path where asyncio does, and goes on running."""
    ours = _raising_scenario(loop, protocol_class)
    theirs = _raising_scenario(stdlib_loop, protocol_class)
    assert ours == theirs
    calls, lost, reports = ours
    assert calls[0] == "connection_made" and calls[-1] == "connection_lost"
    assert lost == "ValueError"
    assert any(r[0].startswith("Fatal error: protocol.") for r in reports)
    assert loop.run_until_complete(asyncio.sleep(0, "still running")) == "still running"


def test_pipe_protocol_raising_in_every_callback(loop, stdlib_loop, no_fd_leak):
    """The same for read and write pipes. asyncio lets an exception from a
    read pipe's data_received() escape its readiness callback, which the
    loop reports; so does ferroloop, as ``Exception in callback
    ReadPipeTransport._read_ready()`` with the transport in the context
    instead of asyncio's handle (ferroloop reads without a handle per event;
    README, "Where ferroloop deliberately differs")."""

    def scenario(lp):
        calls = []

        async def until_called(name):
            while name not in calls:
                await asyncio.sleep(0)

        async def main():
            rfd, wfd = os.pipe()
            reader = Raising(lp, calls)
            await lp.connect_read_pipe(lambda: reader, os.fdopen(rfd, "rb", 0))
            os.write(wfd, b"data")
            await asyncio.wait_for(until_called("data_received"), HUNG)
            os.close(wfd)
            await asyncio.wait_for(reader.lost, HUNG)
            rfd, wfd = os.pipe()
            writer = Raising(lp, calls)
            transport, _ = await lp.connect_write_pipe(lambda: writer, os.fdopen(wfd, "wb", 0))
            transport.set_write_buffer_limits(high=0)
            transport.write(os.urandom(1024 * 1024))
            os.close(rfd)
            await asyncio.wait_for(writer.lost, HUNG)
            for _ in range(5):
                await asyncio.sleep(0)

        lp.run_until_complete(main())
        reports = []
        for message, *rest in _reports(lp):
            message = re.sub(r"\b_?\w*(Read|Write)PipeTransport\b", r"\1PipeTransport", message)
            reports.append((message, *rest))
        return calls, reports

    ours, theirs = scenario(loop), scenario(stdlib_loop)
    assert ours == theirs
    calls, reports = ours
    assert calls.count("connection_lost") == 2
    assert ("Exception in callback ReadPipeTransport._read_ready()", "ValueError", "data_received failed",
            ["exception", "handle or transport", "message"]) in reports
