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


class TimerOwner:
    """Keeps the handle of its own timer, as much asyncio code does."""

    def __init__(self, loop, delay):
        self.fired = False
        self.timer = loop.call_later(delay, self.on_timer)

    def on_timer(self):
        self.fired = True


def test_fired_timer_cycle_is_collected(loop):
    owner = TimerOwner(loop, 0)
    ref = weakref.ref(owner)
    loop.run_until_complete(asyncio.sleep(0.01))
    assert owner.fired
    del owner
    gc.collect()
    assert ref() is None


def test_cancelled_timer_cycle_is_collected(loop):
    owners = [TimerOwner(loop, 3600) for _ in range(300)]
    refs = [weakref.ref(o) for o in owners]
    for o in owners:
        o.timer.cancel()
    # Cancelled timers leave the heap lazily (compaction or head pruning).
    loop.run_until_complete(asyncio.sleep(0))
    del owners, o
    gc.collect()
    assert all(r() is None for r in refs)


def test_cycle_through_handle_left_in_closed_loop_is_collected(loop):
    owner = TimerOwner(loop, 3600)
    ref = weakref.ref(owner)
    loop.close()
    del owner
    gc.collect()
    assert ref() is None


def test_context_of_queued_handle_can_be_shared(loop):
    import contextvars

    var = contextvars.ContextVar("v")
    var.set("value")
    handle = loop.call_soon(print)
    ctx = handle.get_context() if hasattr(handle, "get_context") else handle._context
    handle.cancel()
    loop.run_until_complete(asyncio.sleep(0))
    del handle
    gc.collect()
    assert ctx[var] == "value"
    # The context stays usable after the handle is gone.
    assert ctx.run(var.get) == "value"


def test_handles_of_dropped_unclosed_loop_are_freed(loop_factory):
    loop = loop_factory()
    owner = TimerOwner(loop, 3600)
    ref_owner, ref_loop = weakref.ref(owner), weakref.ref(loop)
    del owner
    with pytest.warns(ResourceWarning, match="unclosed event loop"):
        del loop
        gc.collect()
    assert ref_loop() is None
    assert ref_owner() is None


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


@pytest.mark.filterwarnings("ignore:coroutine .* was never awaited:RuntimeWarning")
def test_dropped_unclosed_loop_with_pending_task_is_collected(loop_factory):
    # loop -> queued step of a task -> task -> loop: a cycle through the queue.
    loop = loop_factory()

    async def forever():
        await asyncio.sleep(3600)

    task = loop.create_task(forever())
    task._log_destroy_pending = False
    timer_owner = TimerOwner(loop, 3600)
    timer_owner.loop = loop
    ref_loop, ref_task = weakref.ref(loop), weakref.ref(task)
    del task, timer_owner
    with pytest.warns(ResourceWarning, match="unclosed event loop"):
        del loop
        gc.collect()
    assert ref_loop() is None
    assert ref_task() is None


def test_dropped_unclosed_loop_with_pending_reader_is_collected(loop_factory):
    import socket

    loop = loop_factory()
    a, b = socket.socketpair()
    try:
        holder = Box()
        holder.loop = loop
        loop.add_reader(a, holder.__init__)  # the callback references the loop
        del holder
        ref_loop = weakref.ref(loop)
        with pytest.warns(ResourceWarning, match="unclosed event loop"):
            del loop
            gc.collect()
        assert ref_loop() is None
    finally:
        a.close()
        b.close()


def test_no_reference_leaks_in_scheduling(loop):
    import contextvars
    import sys

    class Callback:
        def __call__(self, *args):
            pass

    callback, arg, ctx = Callback(), object(), contextvars.copy_context()
    objects = (loop, callback, arg, ctx)

    def counts():
        gc.collect()
        return [sys.getrefcount(o) for o in objects]

    def burst():
        for _ in range(100):
            loop.call_soon(callback)
            loop.call_soon(callback, arg, context=ctx)
            loop.call_soon_threadsafe(callback, arg)
            loop.call_later(0, callback, arg)
            loop.call_at(loop.time(), callback, context=ctx)
            loop.call_soon(callback).cancel()
            loop.call_later(10, callback, arg).cancel()
            loop.get_debug()
            fut = loop.create_future()
            fut.cancel()
        loop.run_until_complete(asyncio.sleep(0.001))

    burst()  # warm up free lists and caches
    before = counts()
    burst()
    assert counts() == before


def test_memory_of_a_burst_is_given_back_once_quiet(loop):
    # A burst of callbacks may leave handles cached for the next burst, but
    # not for good: after a second of quiet the memory is back near where
    # it started.
    import tracemalloc

    def noop():
        pass

    async def quiet():
        for _ in range(3):
            await asyncio.sleep(0.6)

    loop.run_until_complete(asyncio.sleep(0))
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        for _ in range(50_000):
            loop.call_soon(noop)
            loop.call_later(0, noop)
        loop.run_until_complete(asyncio.sleep(0))
        loop.run_until_complete(quiet())
        gc.collect()
        retained = tracemalloc.get_traced_memory()[0] - baseline
    finally:
        tracemalloc.stop()
    assert retained < 1_000_000, retained
