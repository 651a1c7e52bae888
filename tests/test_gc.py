"""Reference cycles through loops and handles are collectable; nothing
leaks across many loops."""

import asyncio
import gc
import os
import weakref

import pytest


class Box:
    pass


def test_handle_cycle_is_collected(loop):
    box = Box()
    box.handle = loop.call_soon(lambda b=box: None)
    ref = weakref.ref(box)
    box.handle.cancel()
    del box
    gc.collect()
    assert ref() is None


def test_pending_handle_cycle_through_loop_is_collected(loop_factory):
    loop = loop_factory()
    box = Box()
    box.loop = loop
    box.handle = loop.call_later(3600, lambda b=box: None)
    loop.close()
    ref_box, ref_loop = weakref.ref(box), weakref.ref(loop)
    del box, loop
    gc.collect()
    assert ref_box() is None
    assert ref_loop() is None


def test_unclosed_loop_warns_and_closes(loop_factory):
    loop = loop_factory()
    with pytest.warns(ResourceWarning, match="unclosed event loop"):
        del loop
        gc.collect()


def open_fds():
    return len(os.listdir("/proc/self/fd"))


def test_no_fd_leak_over_many_loops(loop_factory):
    before = open_fds()
    for _ in range(200):
        loop = loop_factory()
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()
    gc.collect()
    assert open_fds() <= before + 2
