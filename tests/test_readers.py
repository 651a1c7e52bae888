"""add_reader / add_writer / remove_reader / remove_writer."""

import asyncio
import os
import socket
import tempfile

import pytest

from conftest import run_briefly


def test_reader_called_while_readable(loop, pair):
    a, b = pair
    calls = []
    loop.add_reader(a, calls.append, "readable")
    run_briefly(loop)
    assert calls == []
    b.send(b"x")
    run_briefly(loop, 3)
    # Level-triggered: called every turn until the data is read.
    assert calls == ["readable"] * 3
    a.recv(10)
    run_briefly(loop, 2)
    assert calls == ["readable"] * 3
    assert loop.remove_reader(a) is True
    assert loop.remove_reader(a) is False


def test_reader_by_fd_number_and_data_flow(loop, pair):
    a, b = pair
    received = []

    def on_readable():
        data = a.recv(100)
        received.append(data)
        if data == b"stop":
            loop.remove_reader(a.fileno())
            loop.stop()

    loop.add_reader(a.fileno(), on_readable)
    loop.call_later(0.01, b.send, b"hello")
    loop.call_later(0.03, b.send, b"stop")
    loop.run_forever()
    assert received == [b"hello", b"stop"]


def test_writer_called_when_writable(loop, pair):
    a, _ = pair
    calls = []
    loop.add_writer(a, calls.append, "w")
    run_briefly(loop, 2)
    assert calls == ["w", "w"]
    assert loop.remove_writer(a) is True
    assert loop.remove_writer(a) is False
    run_briefly(loop)
    assert calls == ["w", "w"]


def test_reader_and_writer_on_same_fd(loop, pair):
    a, b = pair
    order = []
    loop.add_reader(a, order.append, "r")
    loop.add_writer(a, order.append, "w")
    b.send(b"x")
    run_briefly(loop)
    assert order == ["r", "w"]
    loop.remove_writer(a)
    run_briefly(loop)
    assert order == ["r", "w", "r"]
    loop.remove_reader(a)


def test_replacing_reader(loop, pair):
    a, b = pair
    calls = []
    loop.add_reader(a, calls.append, "old")
    loop.add_reader(a, calls.append, "new")
    b.send(b"x")
    run_briefly(loop)
    assert calls == ["new"]
    loop.remove_reader(a)


def test_remove_reader_after_socket_closed(loop):
    a, b = socket.socketpair()
    loop.add_reader(a, print)
    a.close()
    assert a.fileno() == -1
    # Found by identity, as selectors do.
    assert loop.remove_reader(a) is True
    b.close()


def test_remove_unknown_closed_socket_raises(loop):
    a, b = socket.socketpair()
    a.close()
    with pytest.raises(ValueError, match="Invalid file descriptor: -1"):
        loop.remove_reader(a)
    b.close()


def test_invalid_file_objects(loop):
    with pytest.raises(ValueError, match="Invalid file object: 'nope'"):
        loop.add_reader("nope", print)
    with pytest.raises(ValueError, match="Invalid file object: 'nope'"):
        loop.remove_writer("nope")
    with pytest.raises(ValueError, match="Invalid file descriptor: -1"):
        loop.add_reader(-1, print)


def test_regular_files_cannot_be_watched(loop):
    with tempfile.TemporaryFile() as f:
        with pytest.raises(PermissionError) as info:
            loop.add_reader(f, print)
        assert info.value.errno == 1


def test_closed_descriptor_raises_oserror_with_errno(loop):
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    with pytest.raises(OSError) as info:
        loop.add_reader(r, print)
    assert info.value.errno == 9


def test_on_closed_loop(loop, pair):
    a, _ = pair
    loop.close()
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        loop.add_reader(a, print)
    assert loop.remove_reader(a) is False
    assert loop.remove_writer(a) is False


def test_add_reader_copies_context(loop, pair):
    import contextvars

    var = contextvars.ContextVar("v", default="default")
    a, b = pair
    seen = []
    var.set("at registration")
    loop.add_reader(a, lambda: seen.append(var.get()))
    var.set("later")
    b.send(b"x")
    run_briefly(loop)
    loop.remove_reader(a)
    assert seen == ["at registration"]


def test_reused_fd_number_after_unremoved_close(loop_kind, loop):
    if loop_kind == "asyncio":
        pytest.skip("asyncio raises FileNotFoundError here; ferroloop re-registers")
    a, b = socket.socketpair()
    loop.add_reader(a, print)
    fd = a.fileno()
    a.close()
    b.close()
    c, d = socket.socketpair()
    try:
        if c.fileno() != fd:
            pytest.skip("descriptor number not reused")
        calls = []
        loop.add_reader(c, calls.append, "new owner")
        d.send(b"x")
        run_briefly(loop)
        assert calls == ["new owner"]
        loop.remove_reader(c)
    finally:
        c.close()
        d.close()
