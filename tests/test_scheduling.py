"""call_soon, call_later, call_at, time, stop/run ordering: ferroloop and
asyncio must agree on every result and error."""

import asyncio
import contextlib
import contextvars
import math
import threading
import time

import pytest

from conftest import LOOP_FACTORIES, run_briefly, take_errors


def test_call_soon_is_fifo_with_args(loop):
    calls = []
    for i in range(5):
        loop.call_soon(calls.append, i)
    loop.call_soon(lambda *a: calls.append(a), 1, "x", None)
    run_briefly(loop)
    assert calls == [0, 1, 2, 3, 4, (1, "x", None)]


def test_callbacks_scheduled_by_callbacks_wait_for_next_turn(loop):
    calls = []

    def first():
        calls.append("first")
        loop.call_soon(calls.append, "second")

    loop.call_soon(first)
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert calls == ["first"]
    run_briefly(loop)
    assert calls == ["first", "second"]


def test_stop_before_run_forever_runs_one_turn(loop):
    calls = []
    loop.call_soon(calls.append, 1)
    loop.stop()
    loop.run_forever()
    assert calls == [1]
    assert not loop.is_running()


def test_cancelled_handle_is_skipped(loop):
    calls = []
    h = loop.call_soon(calls.append, 1)
    loop.call_soon(calls.append, 2)
    assert not h.cancelled()
    h.cancel()
    h.cancel()
    assert h.cancelled()
    run_briefly(loop)
    assert calls == [2]


def test_handle_cancelled_by_earlier_callback_in_same_turn(loop):
    calls = []
    later = []

    def canceller():
        calls.append("canceller")
        later[0].cancel()

    loop.call_soon(canceller)
    later.append(loop.call_soon(calls.append, "victim"))
    run_briefly(loop)
    assert calls == ["canceller"]


def test_call_later_zero_is_a_timer(loop):
    calls = []
    loop.call_soon(calls.append, "a")
    loop.call_later(0, calls.append, "timer")
    loop.call_soon(calls.append, "b")
    loop.run_until_complete(asyncio.sleep(0.01))
    assert calls == ["a", "b", "timer"]


def test_timers_fire_in_deadline_then_schedule_order(loop):
    calls = []
    now = loop.time()
    loop.call_at(now + 0.03, calls.append, "c")
    loop.call_at(now + 0.01, calls.append, "a1")
    loop.call_at(now + 0.02, calls.append, "b")
    loop.call_at(now + 0.01, calls.append, "a2")
    loop.call_at(now + 0.01, calls.append, "a3")
    loop.run_until_complete(asyncio.sleep(0.06))
    assert calls == ["a1", "a2", "a3", "b", "c"]


def test_timers_never_fire_early(loop):
    fired = []

    def record(box):
        fired.append((loop.time(), box[0].when()))

    for delay in (0.001, 0.005, 0.01, 0.02, 0.03):
        box = []
        box.append(loop.call_later(delay, record, box))
    loop.run_until_complete(asyncio.sleep(0.05))
    assert len(fired) == 5
    for when_fired, when in fired:
        assert when_fired >= when


def test_call_later_and_call_at_return_timer_handles(loop):
    t0 = loop.time()
    h = loop.call_later(10, lambda: None)
    assert isinstance(h.when(), float)
    assert t0 + 10 <= h.when() <= loop.time() + 10
    later = int(loop.time()) + 12345
    h2 = loop.call_at(later, lambda: None)
    # call_at keeps the object it was given (an int stays an int).
    assert h2.when() == later and type(h2.when()) is int
    assert h2 > h and h < h2 and h != h2
    h.cancel()
    h2.cancel()
    assert h.cancelled() and h2.cancelled()


def test_many_cancelled_timers(loop):
    calls = []
    handles = [loop.call_later(0.001 * (i % 10), calls.append, i) for i in range(1000)]
    for i, h in enumerate(handles):
        if i % 10:
            h.cancel()
    loop.run_until_complete(asyncio.sleep(0.03))
    assert calls == list(range(0, 1000, 10))


def test_time_is_monotonic_clock(loop):
    before = time.monotonic()
    t = loop.time()
    after = time.monotonic()
    assert before <= t <= after


def test_nan_delay_fires_like_asyncio(loop):
    calls = []
    loop.call_later(float("nan"), calls.append, "nan")
    loop.call_later(0.01, calls.append, "real")
    loop.run_until_complete(asyncio.sleep(0.03))
    assert calls == ["nan", "real"]


def test_sleep_nan_like_asyncio(loop, stdlib_loop):
    # Up to 3.12, asyncio.sleep(nan) returns after a turn (its call_later(nan)
    # fires at once); from 3.13 on, asyncio.sleep itself rejects NaN. Either
    # way, the outcome on the loop is the running asyncio's.
    async def main():
        await asyncio.sleep(float("nan"))
        return "done"

    def outcome(lp):
        try:
            return lp.run_until_complete(main())
        except ValueError as exc:
            return exc.args

    expected = outcome(stdlib_loop)
    assert expected in ("done", ("Invalid delay: NaN (not a number)",))
    assert outcome(loop) == expected


def test_infinite_delay_never_fires(loop):
    calls = []
    h = loop.call_later(math.inf, calls.append, 1)
    loop.run_until_complete(asyncio.sleep(0.01))
    assert calls == []
    assert h.when() == math.inf
    h.cancel()


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda loop: loop.call_later(None, print), "delay must not be None"),
        (lambda loop: loop.call_at(None, print), "when cannot be None"),
    ],
)
def test_none_deadlines_raise_type_error(loop, call, message):
    with pytest.raises(TypeError, match=message):
        call(loop)


def test_calls_on_closed_loop_raise(loop):
    loop.close()
    for call in (
        lambda: loop.call_soon(print),
        lambda: loop.call_later(1, print),
        lambda: loop.call_at(1, print),
        lambda: loop.call_soon_threadsafe(print),
        lambda: loop.run_forever(),
    ):
        with pytest.raises(RuntimeError, match="Event loop is closed"):
            call()
    for method in (loop.run_until_complete, loop.create_task):
        coro = asyncio.sleep(0)
        with pytest.raises(RuntimeError, match="Event loop is closed"):
            method(coro)
        coro.close()


def test_non_callable_accepted_then_reported_outside_debug_mode(loop):
    # Without debug mode asyncio does not validate callbacks up front: the
    # error surfaces when the callback runs.
    loop.call_soon(1)
    run_briefly(loop)
    (error,) = take_errors(loop)
    assert error["message"].startswith("Exception in callback")
    assert isinstance(error["exception"], TypeError)
    assert "'int' object is not callable" in str(error["exception"])


@pytest.mark.parametrize("method", ["call_soon", "call_soon_threadsafe", "call_later", "call_at"])
def test_bad_callbacks_raise_in_debug_mode(loop, method):
    loop.set_debug(True)
    schedule = getattr(loop, method)
    lead = () if method in ("call_soon", "call_soon_threadsafe") else (0,)
    name = "call_at" if method == "call_later" else method

    async def coro_func():
        pass

    with pytest.raises(TypeError, match=rf"a callable object was expected by {name}\(\), got 1"):
        schedule(*lead, 1)
    with pytest.raises(TypeError, match=rf"coroutines cannot be used with {name}\(\)"):
        schedule(*lead, coro_func)
    coro = coro_func()
    with pytest.raises(TypeError, match=rf"coroutines cannot be used with {name}\(\)"):
        schedule(*lead, coro)
    coro.close()


def test_callback_exception_goes_to_handler_and_loop_continues(loop):
    calls = []

    def boom():
        raise ValueError("boom")

    h = loop.call_soon(boom)
    loop.call_soon(calls.append, "after")
    run_briefly(loop)
    assert calls == ["after"]
    (error,) = take_errors(loop)
    assert error["handle"] is h
    assert isinstance(error["exception"], ValueError)
    assert error["message"].startswith("Exception in callback ")
    assert "boom" in error["message"]


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_keyboard_interrupt_and_system_exit_propagate(loop, exc_type):
    calls = []

    def interrupt():
        raise exc_type()

    loop.call_soon(interrupt)
    loop.call_soon(calls.append, "pending")
    with pytest.raises(exc_type):
        loop.run_forever()
    assert not loop.is_running()
    assert calls == []
    # The rest of the turn is still queued and runs next time.
    run_briefly(loop)
    assert calls == ["pending"]


def test_base_exception_other_than_interrupts_goes_to_handler(loop):
    def cancelled():
        raise asyncio.CancelledError()

    loop.call_soon(cancelled)
    run_briefly(loop)
    (error,) = take_errors(loop)
    assert isinstance(error["exception"], asyncio.CancelledError)


def test_context_captured_at_schedule_time(loop):
    var = contextvars.ContextVar("var", default="unset")
    seen = []
    var.set("at-schedule")
    loop.call_soon(lambda: seen.append(var.get()))
    var.set("changed-later")
    run_briefly(loop)
    assert seen == ["at-schedule"]


def test_callback_changes_stay_in_its_context(loop):
    var = contextvars.ContextVar("var", default="outer")
    seen = []

    def setter():
        var.set("inner")
        seen.append(var.get())

    loop.call_soon(setter)
    loop.call_soon(lambda: seen.append(var.get()))
    run_briefly(loop)
    assert seen == ["inner", "outer"]
    assert var.get() == "outer"


def test_explicit_context_is_used_and_shared(loop, loop_kind):
    var = contextvars.ContextVar("var", default=0)
    ctx = contextvars.copy_context()
    seen = []

    def bump():
        var.set(var.get() + 1)
        seen.append(var.get())

    h1 = loop.call_soon(bump, context=ctx)
    loop.call_later(0, bump, context=ctx)
    loop.call_soon_threadsafe(bump, context=ctx)
    if loop_kind == "ferroloop" or hasattr(asyncio.Handle, "get_context"):
        # Handle.get_context() is new in Python 3.12; ferroloop has it always.
        assert h1.get_context() is ctx
    loop.run_until_complete(asyncio.sleep(0.01))
    assert seen == [1, 2, 3]
    assert ctx[var] == 3
    assert var.get() == 0


def test_entering_an_already_entered_context_is_reported(loop, stdlib_loop, caplog):
    # Running a handle from inside its own context: the loop cannot enter it,
    # and reports the RuntimeError to the exception handler. From 3.12 on,
    # asyncio runs the handler in the handle's context too, which fails the
    # same way, so the error is logged as "Unhandled error in exception
    # handler" instead; the loop must do what the running asyncio does.
    def inner():
        pass

    def reports(lp):
        ctx = contextvars.copy_context()
        ctx.run(lambda: lp.call_soon(inner, context=ctx))
        caplog.clear()
        ctx.run(run_briefly, lp)
        handled = [type(error["exception"]) for error in take_errors(lp)]
        logged = [(r.getMessage().partition("\n")[0], r.exc_info and r.exc_info[0]) for r in caplog.records]
        return handled, logged

    expected = reports(stdlib_loop)
    assert expected in (
        ([RuntimeError], []),
        ([], [("Unhandled error in exception handler", RuntimeError)]),
    )
    assert reports(loop) == expected


def test_call_soon_threadsafe_wakes_sleeping_loop(loop):
    calls = []

    def from_thread():
        time.sleep(0.05)
        loop.call_soon_threadsafe(calls.append, "woken")
        loop.call_soon_threadsafe(loop.stop)

    t = threading.Thread(target=from_thread)
    t0 = time.monotonic()
    t.start()
    loop.run_forever()  # nothing scheduled: sleeps until woken
    t.join()
    assert calls == ["woken"]
    assert time.monotonic() - t0 < 5


def test_call_soon_threadsafe_wakes_loop_waiting_for_timer(loop):
    def from_thread():
        time.sleep(0.05)
        loop.call_soon_threadsafe(loop.stop)

    h = loop.call_later(60, lambda: None)
    t = threading.Thread(target=from_thread)
    t0 = time.monotonic()
    t.start()
    loop.run_forever()
    t.join()
    h.cancel()
    assert time.monotonic() - t0 < 5


def test_many_threads_call_soon_threadsafe(loop):
    results = []
    n_threads, per_thread = 4, 500

    def producer(k):
        for i in range(per_thread):
            loop.call_soon_threadsafe(results.append, (k, i))

    async def main():
        threads = [threading.Thread(target=producer, args=(k,)) for k in range(n_threads)]
        for t in threads:
            t.start()
        while len(results) < n_threads * per_thread:
            await asyncio.sleep(0.001)
        for t in threads:
            t.join()

    loop.run_until_complete(main())
    for k in range(n_threads):
        assert [i for kk, i in results if kk == k] == list(range(per_thread))


def test_run_until_complete_results_and_errors(loop):
    async def ok():
        return 7

    async def fail():
        raise KeyError("x")

    assert loop.run_until_complete(ok()) == 7
    with pytest.raises(KeyError):
        loop.run_until_complete(fail())
    fut = loop.create_future()
    loop.call_soon(fut.set_result, "future")
    assert loop.run_until_complete(fut) == "future"


def test_run_until_complete_rejects_non_awaitables(loop):
    with pytest.raises(TypeError, match="An asyncio.Future, a coroutine or an awaitable is required"):
        loop.run_until_complete(42)


def test_run_until_complete_stopped_early(loop):
    fut = loop.create_future()
    loop.call_soon(loop.stop)
    with pytest.raises(RuntimeError, match="Event loop stopped before Future completed."):
        loop.run_until_complete(fut)
    fut.cancel()


def stdlib_loop_stops_running_on_refusal():
    """Whether asyncio's own loop, refusing a nested run_forever(), forgets
    that it is running: 3.13.0's run_forever() runs its cleanup even when its
    set-up raised (CPython gh-130145, fixed in later releases)."""
    lp = LOOP_FACTORIES["asyncio"]()

    async def probe():
        with contextlib.suppress(RuntimeError):
            lp.run_forever()
        return lp.is_running()

    try:
        return not lp.run_until_complete(probe())
    finally:
        lp.close()


def test_running_loop_errors(loop, loop_kind, loop_factory):
    if loop_kind == "asyncio" and stdlib_loop_stops_running_on_refusal():
        pytest.skip("this asyncio forgets its loop is running once it refuses a nested run (CPython gh-130145)")
    other = loop_factory()
    try:

        async def nested_same():
            with pytest.raises(RuntimeError, match="This event loop is already running"):
                loop.run_forever()
            with pytest.raises(RuntimeError, match="Cannot close a running event loop"):
                loop.close()
            coro = asyncio.sleep(0)
            with pytest.raises(RuntimeError, match="This event loop is already running"):
                loop.run_until_complete(coro)
            coro.close()
            with pytest.raises(RuntimeError, match="Cannot run the event loop while another loop is running"):
                other.run_forever()
            assert loop.is_running()
            assert asyncio.get_running_loop() is loop
            return "ok"

        assert not loop.is_running()
        assert loop.run_until_complete(nested_same()) == "ok"
        assert not loop.is_running()
    finally:
        other.close()


def test_close_is_idempotent_and_clears_callbacks(loop):
    calls = []
    loop.call_soon(calls.append, 1)
    loop.call_later(0.001, calls.append, 2)
    assert not loop.is_closed()
    loop.close()
    loop.close()
    assert loop.is_closed()
    assert calls == []


def test_closed_loop_repr_and_state(loop, loop_kind):
    r = repr(loop)
    assert "running=False" in r and "closed=False" in r and "debug=False" in r
    loop.close()
    assert "closed=True" in repr(loop)


def _cb(a, b):
    pass


def test_handle_reprs_match_asyncio(loop, stdlib_loop):
    # The arguments appear in a handle's repr up to 3.12, and only in debug
    # mode from 3.13 on: the reprs are compared with the running asyncio's.
    def reprs(lp):
        h = lp.call_soon(_cb, 1, "x")
        t = lp.call_at(100.0, _cb, 2, 3)
        shown = [repr(h), repr(t)]
        t.cancel()
        h.cancel()
        return shown + [repr(t), repr(h)]

    expected = reprs(stdlib_loop)
    where = "test_scheduling.py:" + str(_cb.__code__.co_firstlineno) + ">"
    assert expected[0].startswith("<Handle _cb(") and expected[0].endswith(where)
    assert expected[1].startswith("<TimerHandle when=100.0 _cb(") and expected[1].endswith(where)
    assert expected[2:] == ["<TimerHandle cancelled when=100.0>", "<Handle cancelled>"]
    assert reprs(loop) == expected


def test_get_context_and_private_attributes(loop, loop_kind):
    ctx = contextvars.copy_context()
    h = loop.call_soon(print, 1, context=ctx)
    if loop_kind == "ferroloop" or hasattr(asyncio.Handle, "get_context"):
        assert h.get_context() is ctx
    assert h._context is ctx
    assert h._callback is print and h._args == (1,)
    assert h._loop is loop and h._cancelled is False
    h.cancel()
    assert h._callback is None and h._args is None and h._cancelled is True


@pytest.mark.parametrize(
    "call",
    [
        lambda lp: lp.call_soon(),
        lambda lp: lp.call_soon_threadsafe(),
        lambda lp: lp.call_later(1),
        lambda lp: lp.call_at(),
        lambda lp: lp.call_soon(print, bogus=1),
        lambda lp: lp.call_later(0, print, contxt=None),
        lambda lp: lp.call_at(1, print, 1, 2, **{"context": None, "x": 1}),
    ],
)
def test_bad_arguments_raise_type_error(loop, call):
    with pytest.raises(TypeError):
        call(loop)


def test_args_and_explicit_none_context(loop):
    import contextvars

    var = contextvars.ContextVar("v", default="unset")
    var.set("current")
    seen = []
    loop.call_soon(lambda *a: seen.append((a, var.get())), 1, 2, context=None)
    loop.call_later(0, lambda *a: seen.append((a, var.get())), 3, context=None)
    loop.call_at(loop.time(), lambda *a: seen.append((a, var.get())), 4, 5, 6)
    loop.call_soon_threadsafe(lambda *a: seen.append((a, var.get())))
    loop.run_until_complete(asyncio.sleep(0.01))
    assert seen == [((1, 2), "current"), ((), "current"), ((3,), "current"), ((4, 5, 6), "current")]


def test_run_once_override_is_honoured(loop):
    turns = []
    original = loop._run_once

    def counting_run_once():
        turns.append(1)
        original()

    loop._run_once = counting_run_once

    async def main():
        await asyncio.sleep(1e-2)
        await asyncio.sleep(1e-4)
        await asyncio.sleep(1e-8)

    loop.run_until_complete(main())
    del loop._run_once
    # Every turn went through the override, and timer rounding never made the
    # loop spin (asyncio's own test_timeout_rounding bound).
    assert 3 <= len(turns) <= 20
    turns.clear()
    loop.run_until_complete(asyncio.sleep(0))
    assert turns == []
