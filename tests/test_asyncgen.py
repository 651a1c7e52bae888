"""The asynchronous-generator lifecycle: hooks, finalization of abandoned
generators (whose ``finally`` blocks await), ``shutdown_asyncgens``.

Every test runs on ferroloop and on asyncio; traces of whole scenarios are
also compared between the two loops directly.
"""

import asyncio
import gc
import sys
import threading
import weakref

import pytest

from conftest import LOOP_FACTORIES, run_briefly, take_errors


def cleanup_gen(log, name="gen", steps=3):
    """An async generator whose cleanup awaits several times."""

    async def gen():
        try:
            for i in range(steps):
                yield i
        finally:
            log.append(f"{name}: cleanup start")
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            log.append(f"{name}: cleanup done")

    return gen()


# -- hooks ---------------------------------------------------------------------


def test_hooks_installed_while_running_and_restored(loop):
    def firstiter(agen):
        pass

    def finalizer(agen):
        pass

    old = sys.get_asyncgen_hooks()
    sys.set_asyncgen_hooks(firstiter=firstiter, finalizer=finalizer)
    try:
        seen = []

        async def main():
            seen.append(sys.get_asyncgen_hooks())

        loop.run_until_complete(main())
        (hooks,) = seen
        assert hooks.firstiter == loop._asyncgen_firstiter_hook
        assert hooks.finalizer == loop._asyncgen_finalizer_hook
        assert sys.get_asyncgen_hooks() == (firstiter, finalizer)
    finally:
        sys.set_asyncgen_hooks(*old)


def test_hooks_restored_when_run_forever_raises(loop):
    before = sys.get_asyncgen_hooks()

    def interrupt():
        raise KeyboardInterrupt

    loop.call_soon(interrupt)
    with pytest.raises(KeyboardInterrupt):
        loop.run_forever()
    assert sys.get_asyncgen_hooks() == before
    assert asyncio.events._get_running_loop() is None


def test_hooks_untouched_when_startup_fails(loop, loop_factory):
    before = sys.get_asyncgen_hooks()
    other = loop_factory()
    try:

        async def main():
            during = sys.get_asyncgen_hooks()
            with pytest.raises(RuntimeError):
                other.run_forever()
            # The failed start left the running loop's hooks in place.
            assert sys.get_asyncgen_hooks() == during

        loop.run_until_complete(main())
    finally:
        other.close()
    loop.close()
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        loop.run_forever()
    assert sys.get_asyncgen_hooks() == before


def test_firstiter_tracks_generators_weakly(loop):
    refs = []

    async def gen():
        yield 1

    async def main():
        g = gen()
        refs.append(weakref.ref(g))
        async for _ in g:
            pass
        del g

    loop.run_until_complete(main())
    gc.collect()
    assert refs[0]() is None


# -- abandoned generators --------------------------------------------------------


def test_break_runs_awaiting_finally(loop):
    log = []

    async def main():
        async for _ in cleanup_gen(log):
            break
        log.append("after loop")
        for _ in range(5):
            await asyncio.sleep(0)

    loop.run_until_complete(main())
    assert log == ["after loop", "gen: cleanup start", "gen: cleanup done"]


def test_exception_in_loop_body_runs_awaiting_finally(loop):
    log = []

    async def main():
        try:
            async for _ in cleanup_gen(log):
                raise ValueError("body failed")
        except ValueError:
            log.append("caught")
        for _ in range(5):
            await asyncio.sleep(0)

    loop.run_until_complete(main())
    assert log == ["caught", "gen: cleanup start", "gen: cleanup done"]


def test_cancelled_consumer_runs_awaiting_finally(loop):
    log = []
    started = []

    async def consumer():
        async for _ in cleanup_gen(log):
            started.append(True)
            await asyncio.sleep(3600)

    async def main():
        task = asyncio.ensure_future(consumer())
        while not started:
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(5):
            await asyncio.sleep(0)

    loop.run_until_complete(main())
    assert log == ["gen: cleanup start", "gen: cleanup done"]


def test_cancellation_inside_generator_runs_awaiting_finally(loop):
    log = []

    async def gen():
        try:
            yield 1
            await asyncio.sleep(3600)
            yield 2
        finally:
            log.append("cleanup start")
            await asyncio.sleep(0)
            log.append("cleanup done")

    async def consumer():
        async for _ in gen():
            pass

    async def main():
        task = asyncio.ensure_future(consumer())
        for _ in range(3):
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    loop.run_until_complete(main())
    assert log == ["cleanup start", "cleanup done"]


def test_last_reference_dropped_in_another_thread(loop):
    log = []
    holder = []

    async def main():
        done = asyncio.Event()

        async def gen():
            try:
                yield 1
                yield 2
            finally:
                await asyncio.sleep(0)
                log.append(f"cleanup on {threading.current_thread().name}")
                done.set()

        g = gen()
        assert await g.__anext__() == 1
        holder.append(g)
        del g

        def drop():
            holder.clear()
            gc.collect()

        # The loop sleeps until the finalizer, called in the other thread,
        # wakes it up.
        t = threading.Thread(target=drop, name="dropper")
        t.start()
        await asyncio.wait_for(done.wait(), 10)
        t.join()

    loop.run_until_complete(main())
    assert log == [f"cleanup on {threading.main_thread().name}"]


def test_finalized_while_loop_is_stopped_cleans_up_on_next_run(loop):
    log = []
    holder = []

    async def start():
        g = cleanup_gen(log)
        await g.__anext__()
        holder.append(g)

    loop.run_until_complete(start())
    holder.clear()  # finalizer runs now, with the loop stopped
    gc.collect()
    assert log == []
    for _ in range(5):
        run_briefly(loop)
    assert log == ["gen: cleanup start", "gen: cleanup done"]


def test_finalized_after_loop_closed_does_nothing(loop):
    log = []
    holder = []

    async def start():
        g = cleanup_gen(log)
        await g.__anext__()
        holder.append(g)

    loop.run_until_complete(start())
    loop.close()
    holder.clear()
    gc.collect()
    assert log == []


def test_cleanup_error_of_abandoned_generator_is_reported(loop):
    async def gen():
        try:
            yield 1
            yield 2
        finally:
            await asyncio.sleep(0)
            raise ZeroDivisionError("cleanup failed")

    async def main():
        async for _ in gen():
            break
        for _ in range(5):
            await asyncio.sleep(0)

    loop.run_until_complete(main())
    gc.collect()
    (error,) = take_errors(loop)
    assert error["message"] == "Task exception was never retrieved"
    assert isinstance(error["exception"], ZeroDivisionError)


def test_many_abandoned_generators_are_all_finalized(loop):
    log = []
    n = 2000

    async def main():
        for i in range(n):
            async for _ in cleanup_gen(log, name=str(i)):
                break
        for _ in range(10):
            await asyncio.sleep(0)

    loop.run_until_complete(main())
    done = [entry for entry in log if entry.endswith("cleanup done")]
    assert len(done) == n


# -- shutdown_asyncgens -------------------------------------------------------------


def test_shutdown_asyncgens_closes_live_generators(loop):
    log = []
    holder = []

    async def main():
        for name in ("a", "b", "c"):
            g = cleanup_gen(log, name=name)
            await g.__anext__()
            holder.append(g)
        await loop.shutdown_asyncgens()

    loop.run_until_complete(main())
    assert sorted(log) == sorted(
        f"{name}: cleanup {what}" for name in "abc" for what in ("start", "done")
    )
    assert all(g.ag_frame is None for g in holder)


def test_shutdown_asyncgens_is_concurrent(loop):
    log = []
    holder = []

    async def main():
        ev_a, ev_b = asyncio.Event(), asyncio.Event()

        async def gen(name, mine, theirs):
            try:
                yield 1
            finally:
                mine.set()
                # Waits for the other generator's cleanup: closing the two
                # one after the other would never finish.
                await theirs.wait()
                log.append(name)

        for g in (gen("a", ev_a, ev_b), gen("b", ev_b, ev_a)):
            await g.__anext__()
            holder.append(g)
        await asyncio.wait_for(loop.shutdown_asyncgens(), 10)

    loop.run_until_complete(main())
    assert sorted(log) == ["a", "b"]


def test_shutdown_asyncgens_reports_cleanup_errors(loop):
    holder = []

    async def bad():
        try:
            yield 1
        finally:
            await asyncio.sleep(0)
            raise ValueError("bad cleanup")

    async def main():
        g = bad()
        await g.__anext__()
        holder.append(g)
        await loop.shutdown_asyncgens()

    loop.run_until_complete(main())
    (error,) = take_errors(loop)
    assert error["asyncgen"] is holder[0]
    assert isinstance(error["exception"], ValueError)
    assert error["message"] == f"an error occurred during closing of asynchronous generator {holder[0]!r}"


def test_generator_iterated_after_shutdown_warns(loop):
    async def gen():
        yield 1

    async def main():
        await loop.shutdown_asyncgens()
        with pytest.warns(ResourceWarning, match=r"was scheduled after loop\.shutdown_asyncgens\(\) call"):
            async for _ in gen():
                pass

    loop.run_until_complete(main())


def test_shutdown_asyncgens_without_generators(loop):
    loop.run_until_complete(loop.shutdown_asyncgens())
    assert loop._asyncgens_shutdown_called


# -- asend / athrow / aclose, traced and compared between the loops ------------------


def scenario_trace(loop_factory):
    trace = []

    async def echo():
        received = None
        try:
            while True:
                try:
                    received = yield received
                    trace.append(("got", received))
                except KeyError as e:
                    trace.append(("caught", repr(e)))
                    await asyncio.sleep(0)
                    received = "recovered"
        finally:
            trace.append("finally start")
            await asyncio.sleep(0)
            trace.append("finally end")

    async def main():
        g = echo()
        trace.append(("first", await g.asend(None)))
        trace.append(("asend", await g.asend("hello")))
        trace.append(("athrow", await g.athrow(KeyError("k"))))
        trace.append(("anext", await g.__anext__()))
        try:
            await g.athrow(ValueError("v"))
        except ValueError as e:
            trace.append(("propagated", repr(e)))
        trace.append(("after", repr(await g.aclose())))
        try:
            await g.asend("late")
        except StopAsyncIteration:
            trace.append("exhausted")
        h = echo()
        await h.asend(None)
        await h.aclose()
        await h.aclose()
        trace.append("double aclose ok")

    loop = loop_factory()
    try:
        loop.run_until_complete(main())
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        loop.close()
    return trace


def test_asend_athrow_aclose_match_asyncio():
    traces = {kind: scenario_trace(factory) for kind, factory in LOOP_FACTORIES.items()}
    assert traces["ferroloop"] == traces["asyncio"]
    assert ("athrow", "recovered") in traces["ferroloop"]
    assert "double aclose ok" in traces["ferroloop"]


def lifecycle_trace(loop_factory):
    """Break, exception, cancellation and shutdown in one program."""
    log = []

    async def main():
        async for _ in cleanup_gen(log, "broken"):
            break
        try:
            async for _ in cleanup_gen(log, "raised"):
                raise RuntimeError
        except RuntimeError:
            log.append("raised caught")

        async def consume():
            async for _ in cleanup_gen(log, "cancelled"):
                await asyncio.sleep(3600)

        task = asyncio.ensure_future(consume())
        await asyncio.sleep(0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        keep = cleanup_gen(log, "kept")
        await keep.__anext__()
        log.append("main done")
        return keep

    loop = loop_factory()
    try:
        keep = loop.run_until_complete(main())
        loop.run_until_complete(loop.shutdown_asyncgens())
        log.append(f"kept closed: {keep.ag_frame is None}")
    finally:
        loop.close()
    return log


def test_lifecycle_trace_matches_asyncio():
    traces = {kind: lifecycle_trace(factory) for kind, factory in LOOP_FACTORIES.items()}
    assert traces["ferroloop"] == traces["asyncio"]
    assert traces["ferroloop"][-1] == "kept closed: True"
