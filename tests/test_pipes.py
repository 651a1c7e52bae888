"""connect_read_pipe / connect_write_pipe: pipes, sockets and ptys, on
ferroloop and stdlib asyncio alike."""

import asyncio
import errno
import io
import logging
import os
import socket
import tempfile

import pytest

from conftest import run_briefly, take_errors


class Recorder(asyncio.Protocol):
    """Records every protocol call in order."""

    def __init__(self, loop, *, eof_result=None):
        self.calls = []
        self.data = bytearray()
        self.transport = None
        self.eof_result = eof_result
        self.lost = loop.create_future()

    def connection_made(self, transport):
        self.transport = transport
        self.calls.append("connection_made")

    def data_received(self, data):
        assert type(data) is bytes
        self.data += data
        if not self.calls or self.calls[-1] != "data_received":
            self.calls.append("data_received")

    def eof_received(self):
        self.calls.append("eof_received")
        return self.eof_result

    def pause_writing(self):
        self.calls.append("pause_writing")

    def resume_writing(self):
        self.calls.append("resume_writing")

    def connection_lost(self, exc):
        self.calls.append("connection_lost")
        self.lost.set_result(exc)


def read_pipe(loop, proto, pipe):
    return loop.run_until_complete(loop.connect_read_pipe(lambda: proto, pipe))


def write_pipe(loop, proto, pipe):
    return loop.run_until_complete(loop.connect_write_pipe(lambda: proto, pipe))


def run_until(loop, predicate, turns=10_000):
    for _ in range(turns):
        if predicate():
            return
        run_briefly(loop)
    raise AssertionError("condition not reached")


def test_read_pipe_delivers_data_then_eof_then_connection_lost(loop):
    rfd, wfd = os.pipe()
    pipe = open(rfd, "rb", 0)
    proto = Recorder(loop)
    transport, p = read_pipe(loop, proto, pipe)
    assert p is proto and proto.transport is transport
    assert isinstance(transport, asyncio.ReadTransport)
    assert transport.get_extra_info("pipe") is pipe
    assert transport.is_reading() and not transport.is_closing()
    assert os.get_blocking(rfd) is False
    os.write(wfd, b"hello ")
    os.write(wfd, b"world")
    run_until(loop, lambda: len(proto.data) == 11)
    os.close(wfd)
    assert loop.run_until_complete(proto.lost) is None
    assert proto.data == b"hello world"
    assert proto.calls == ["connection_made", "data_received", "eof_received", "connection_lost"]
    assert transport.is_closing()
    assert pipe.closed


def test_read_pipe_ignores_eof_received_result(loop):
    rfd, wfd = os.pipe()
    proto = Recorder(loop, eof_result=True)
    read_pipe(loop, proto, open(rfd, "rb", 0))
    os.close(wfd)
    assert loop.run_until_complete(proto.lost) is None
    assert proto.calls[-2:] == ["eof_received", "connection_lost"]


def test_pause_and_resume_reading(loop):
    rfd, wfd = os.pipe()
    proto = Recorder(loop)
    transport, _ = read_pipe(loop, proto, open(rfd, "rb", 0))
    transport.pause_reading()
    transport.pause_reading()
    assert not transport.is_reading()
    os.write(wfd, b"x")
    run_briefly(loop, 5)
    assert proto.data == b""
    transport.resume_reading()
    transport.resume_reading()
    assert transport.is_reading()
    run_until(loop, lambda: proto.data == b"x")
    transport.close()
    transport.pause_reading()  # no effect once closing
    assert loop.run_until_complete(proto.lost) is None
    os.close(wfd)
    assert proto.calls == ["connection_made", "data_received", "connection_lost"]


@pytest.mark.parametrize("method", ["connect_read_pipe", "connect_write_pipe"])
def test_regular_file_is_refused(loop, method):
    expected = {
        "connect_read_pipe": "Pipe transport is for pipes/sockets only.",
        "connect_write_pipe": "Pipe transport is only for pipes, sockets and character devices",
    }[method]
    with tempfile.TemporaryFile() as f:
        with pytest.raises(ValueError) as info:
            loop.run_until_complete(getattr(loop, method)(asyncio.Protocol, f))
        assert str(info.value) == expected
        assert os.get_blocking(f.fileno())


def test_write_pipe_writes_and_closes_after_flush(loop):
    rfd, wfd = os.pipe()
    pipe = open(wfd, "wb", 0)
    proto = Recorder(loop)
    transport, _ = write_pipe(loop, proto, pipe)
    assert isinstance(transport, asyncio.WriteTransport)
    assert transport.get_extra_info("pipe") is pipe
    assert transport.can_write_eof()
    transport.write(b"abc")
    transport.write(bytearray(b"def"))
    transport.write(memoryview(b"ghi"))
    transport.writelines([b"j", b"k"])
    transport.write(b"")
    assert os.read(rfd, 100) == b"abcdefghijk"
    big = b"z" * (1 << 20)
    transport.write(big)
    assert transport.get_write_buffer_size() > 0
    transport.close()
    assert transport.is_closing()
    received = bytearray()

    def drain():
        try:
            received.extend(os.read(rfd, 1 << 16))
        except BlockingIOError:
            pass
        return proto.lost.done()

    os.set_blocking(rfd, False)
    run_until(loop, drain)
    while len(received) < len(big):
        received.extend(os.read(rfd, 1 << 16))
    assert bytes(received) == big
    assert proto.lost.result() is None
    assert proto.calls == ["connection_made", "pause_writing", "resume_writing", "connection_lost"]
    os.close(rfd)


def test_write_eof_is_close(loop):
    rfd, wfd = os.pipe()
    proto = Recorder(loop)
    transport, _ = write_pipe(loop, proto, open(wfd, "wb", 0))
    transport.write(b"last")
    transport.write_eof()
    assert transport.is_closing()
    assert loop.run_until_complete(proto.lost) is None
    assert os.read(rfd, 10) == b"last"
    assert os.read(rfd, 10) == b""
    os.close(rfd)


def test_write_buffer_limits_and_flow_control(loop):
    rfd, wfd = os.pipe()
    proto = Recorder(loop)
    transport, _ = write_pipe(loop, proto, open(wfd, "wb", 0))
    assert transport.get_write_buffer_limits() == (16384, 65536)
    transport.set_write_buffer_limits(high=100)
    assert transport.get_write_buffer_limits() == (25, 100)
    with pytest.raises(ValueError):
        transport.set_write_buffer_limits(high=1, low=2)
    while not proto.calls[-1] == "pause_writing":
        transport.write(b"x" * 4096)
    os.set_blocking(rfd, False)

    def drain():
        try:
            while os.read(rfd, 1 << 16):
                pass
        except BlockingIOError:
            pass
        return proto.calls[-1] == "resume_writing"

    run_until(loop, drain)
    assert transport.get_write_buffer_size() <= 25
    transport.abort()
    assert loop.run_until_complete(proto.lost) is None
    os.close(rfd)


def test_reader_going_away_closes_the_write_pipe(loop):
    rsock, wsock = socket.socketpair()
    proto = Recorder(loop)
    transport, _ = write_pipe(loop, proto, open(wsock.detach(), "wb", 0))
    transport.write(b"1")
    assert rsock.recv(10) == b"1"
    rsock.close()
    assert loop.run_until_complete(proto.lost) is None
    assert proto.calls == ["connection_made", "connection_lost"]


def test_reader_going_away_with_queued_bytes_is_a_broken_pipe(loop):
    rfd, wfd = os.pipe()
    proto = Recorder(loop)
    transport, _ = write_pipe(loop, proto, open(wfd, "wb", 0))
    while transport.get_write_buffer_size() == 0:
        transport.write(b"x" * 65536)
    os.close(rfd)
    exc = loop.run_until_complete(proto.lost)
    assert isinstance(exc, BrokenPipeError)
    assert transport.get_write_buffer_size() == 0


def test_write_to_a_closed_reader_is_epipe_not_sigpipe(loop):
    rfd, wfd = os.pipe()
    proto = Recorder(loop)
    transport, _ = write_pipe(loop, proto, open(wfd, "wb", 0))
    os.close(rfd)
    # Written before the loop notices the reader is gone: the write itself
    # fails with EPIPE (the interpreter ignores SIGPIPE).
    transport.write(b"data")
    exc = loop.run_until_complete(proto.lost)
    assert isinstance(exc, BrokenPipeError) and exc.errno == errno.EPIPE
    assert transport.is_closing()


def test_writes_after_close_are_dropped_with_asyncio_warning(loop, caplog):
    rfd, wfd = os.pipe()
    proto = Recorder(loop)
    transport, _ = write_pipe(loop, proto, open(wfd, "wb", 0))
    transport.close()
    with caplog.at_level(logging.WARNING, logger="asyncio"):
        for _ in range(7):
            transport.write(b"dropped")
    warnings = [r.getMessage() for r in caplog.records if r.name == "asyncio"]
    assert warnings == ["pipe closed by peer or os.write(pipe, data) raised exception."] * 2
    assert loop.run_until_complete(proto.lost) is None
    assert os.read(rfd, 100) == b""
    os.close(rfd)


def test_write_refuses_what_is_not_bytes_like(loop):
    rfd, wfd = os.pipe()
    proto = Recorder(loop)
    transport, _ = write_pipe(loop, proto, open(wfd, "wb", 0))
    with pytest.raises(AssertionError) as info:
        transport.write("text")
    assert str(info.value) == "'text'"
    transport.close()
    loop.run_until_complete(proto.lost)
    os.close(rfd)


def test_abort_drops_queued_bytes(loop):
    rfd, wfd = os.pipe()
    proto = Recorder(loop)
    transport, _ = write_pipe(loop, proto, open(wfd, "wb", 0))
    while transport.get_write_buffer_size() == 0:
        transport.write(b"x" * 65536)
    transport.abort()
    assert transport.get_write_buffer_size() == 0
    assert loop.run_until_complete(proto.lost) is None
    os.close(rfd)


def test_pty_as_a_read_pipe(loop):
    master, slave = os.openpty()
    proto = Recorder(loop)
    transport, _ = read_pipe(loop, proto, open(master, "rb", 0))
    os.write(slave, b"from the terminal")
    run_until(loop, lambda: len(proto.data) >= 17)
    assert bytes(proto.data) == b"from the terminal"
    os.close(slave)
    # Reading a pty whose other side closed fails with EIO: the transport
    # closes with that error, without reporting it.
    exc = loop.run_until_complete(proto.lost)
    assert isinstance(exc, OSError) and exc.errno == errno.EIO
    assert "eof_received" not in proto.calls


def test_pty_as_a_write_pipe(loop):
    master, slave = os.openpty()
    proto = Recorder(loop)
    transport, _ = write_pipe(loop, proto, open(slave, "wb", 0))
    transport.write(b"to the terminal")
    got = b""
    while len(got) < 15:
        got += os.read(master, 100)
    assert got == b"to the terminal"
    transport.close()
    assert loop.run_until_complete(proto.lost) is None
    os.close(master)


def test_data_received_failure_is_reported_and_the_pipe_stays_open(loop):
    rfd, wfd = os.pipe()

    class Failing(Recorder):
        def data_received(self, data):
            super().data_received(data)
            raise ZeroDivisionError

    proto = Failing(loop)
    transport, _ = read_pipe(loop, proto, open(rfd, "rb", 0))
    os.write(wfd, b"a")
    run_until(loop, lambda: loop.errors)
    [error] = take_errors(loop)
    assert error["message"].startswith("Exception in callback ")
    assert error["message"].endswith("._read_ready()")
    assert isinstance(error["exception"], ZeroDivisionError)
    assert not transport.is_closing()
    os.close(wfd)
    assert loop.run_until_complete(proto.lost) is None


def test_read_error_other_than_eio_is_reported(loop):
    rsock, wsock = socket.socketpair()
    proto = Recorder(loop)
    transport, _ = read_pipe(loop, proto, rsock)
    wsock.send(b"x")
    run_until(loop, lambda: proto.data)
    rsock.send(b"unread")  # closing a Unix socket with unread bytes resets
    wsock.close()
    exc = loop.run_until_complete(proto.lost)
    assert isinstance(exc, ConnectionResetError)
    [error] = take_errors(loop)
    assert error["message"] == "Fatal read error on pipe transport"
    assert error["exception"] is exc


def test_repr(loop):
    rfd, wfd = os.pipe()
    rproto, wproto = Recorder(loop), Recorder(loop)
    rt, _ = read_pipe(loop, rproto, open(rfd, "rb", 0))
    wt, _ = write_pipe(loop, wproto, open(wfd, "wb", 0))
    assert repr(rt).endswith(f" fd={rfd} polling>")
    assert repr(wt).endswith(f" fd={wfd} idle bufsize=0>")
    rt.pause_reading()
    assert repr(rt).endswith(f" fd={rfd} idle>")
    rt.close()
    wt.close()
    assert f"closing fd={rfd}" in repr(rt)
    loop.run_until_complete(asyncio.gather(rproto.lost, wproto.lost))
    assert repr(rt).endswith(f" closed fd={rfd} closed>")
    assert repr(wt).endswith(f" closed fd={wfd} closed>")


def test_unclosed_pipe_transport_warns(loop):
    rfd, wfd = os.pipe()
    proto = Recorder(loop)
    transport, _ = read_pipe(loop, proto, open(rfd, "rb", 0))
    loop.close()
    assert "open" in repr(transport)
    with pytest.warns(ResourceWarning, match="unclosed transport"):
        transport.__del__()
    os.close(wfd)


def test_buffered_protocol_reads_into_its_buffer(loop_kind, loop):
    if loop_kind == "asyncio":
        pytest.skip("asyncio's read pipe calls data_received only (ferroloop also takes a BufferedProtocol)")
    rfd, wfd = os.pipe()
    received = bytearray()
    lost = loop.create_future()

    class Buffered(asyncio.BufferedProtocol):
        buf = bytearray(5)

        def get_buffer(self, sizehint):
            return self.buf

        def buffer_updated(self, n):
            received.extend(self.buf[:n])

        def connection_lost(self, exc):
            lost.set_result(exc)

    read_pipe(loop, Buffered(), open(rfd, "rb", 0))
    os.write(wfd, b"0123456789abc")
    os.close(wfd)
    assert loop.run_until_complete(lost) is None
    assert received == b"0123456789abc"


def test_text_file_object_as_a_write_pipe(loop):
    rfd, wfd = os.pipe()
    proto = Recorder(loop)
    transport, _ = write_pipe(loop, proto, io.open(wfd, "w", 1024, encoding="utf-8"))
    transport.write(b"raw")
    assert os.read(rfd, 10) == b"raw"
    transport.close()
    assert loop.run_until_complete(proto.lost) is None
    os.close(rfd)


def test_the_pipe_descriptor_belongs_to_its_transport(loop_kind, loop):
    rfd, wfd = os.pipe()
    proto = Recorder(loop)
    transport, _ = read_pipe(loop, proto, open(rfd, "rb", 0))
    if loop_kind == "ferroloop":
        with pytest.raises(RuntimeError, match="is used by transport"):
            loop.add_reader(rfd, print)
    transport.close()
    loop.run_until_complete(proto.lost)
    os.close(wfd)
