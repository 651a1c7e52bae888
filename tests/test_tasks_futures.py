"""create_future, create_task, task factories."""

import asyncio
import contextvars
import types

import pytest
from conftest import take_errors


def test_create_future_is_asyncio_future(loop):
    fut = loop.create_future()
    assert type(fut) is asyncio.Future
    assert fut.get_loop() is loop
    loop.call_soon(fut.set_result, 5)
    assert loop.run_until_complete(fut) == 5


def test_create_task_with_name_and_context(loop):
    var = contextvars.ContextVar("var", default="default")
    ctx = contextvars.copy_context()
    ctx.run(var.set, "in ctx")

    async def coro():
        return var.get(), asyncio.current_task().get_name()

    task = loop.create_task(coro(), name="my-task", context=ctx)
    assert type(task) is asyncio.Task
    assert task.get_loop() is loop
    assert loop.run_until_complete(task) == ("in ctx", "my-task")


def test_create_task_rejects_non_coroutines(loop):
    with pytest.raises(TypeError, match="a coroutine was expected, got 42"):
        loop.create_task(42)


def test_create_task_unknown_keyword(loop):
    coro = asyncio.sleep(0)
    try:
        with pytest.raises(TypeError, match="unexpected keyword argument"):
            loop.create_task(coro, bogus=1)
    finally:
        coro.close()


def test_task_factory(loop, stdlib_loop):
    # Which keywords create_task passes on to the factory depends on the
    # Python release (the name, for one, is set on the task afterwards up to
    # 3.13.0, and passed to the factory later on): the loop must pass what
    # the running asyncio passes.
    def factory_keywords(lp):
        calls = []

        def factory(lp, coro, **kwargs):
            calls.append((lp, sorted(kwargs)))
            return asyncio.Task(coro, loop=lp, **kwargs)

        assert lp.get_task_factory() is None
        lp.set_task_factory(factory)
        assert lp.get_task_factory() is factory

        async def coro():
            return asyncio.current_task().get_name()

        assert lp.run_until_complete(lp.create_task(coro(), name="named")) == "named"
        ctx = contextvars.copy_context()
        lp.run_until_complete(lp.create_task(coro(), context=ctx))
        assert [called_on for called_on, _ in calls] == [lp, lp]
        lp.set_task_factory(None)
        assert lp.get_task_factory() is None
        return [keywords for _, keywords in calls]

    expected = factory_keywords(stdlib_loop)
    assert expected[0] in ([], ["name"])
    assert "context" in expected[1]
    assert factory_keywords(loop) == expected
    with pytest.raises(TypeError, match="task factory must be a callable or None"):
        loop.set_task_factory(1)


def test_tasks_interleave_with_sleep_zero(loop):
    trace = []

    async def worker(name, n):
        for i in range(n):
            trace.append((name, i))
            await asyncio.sleep(0)

    async def main():
        await asyncio.gather(worker("a", 3), worker("b", 3))

    loop.run_until_complete(main())
    assert trace == [("a", 0), ("b", 0), ("a", 1), ("b", 1), ("a", 2), ("b", 2)]


def test_future_callbacks_run_in_order(loop):
    order = []
    fut = loop.create_future()
    for i in range(3):
        fut.add_done_callback(lambda f, i=i: order.append(i))
    fut.set_result(None)
    loop.run_until_complete(asyncio.sleep(0))
    assert order == [0, 1, 2]


def test_wait_for_and_timeouts(loop):
    async def main():
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.sleep(10), 0.01)
        async with asyncio.timeout(0.01) as cm:
            await asyncio.sleep(0)
        return cm.expired()

    assert loop.run_until_complete(main()) is False


def finish_task_behind_its_step(loop, result):
    """Make a task, finish it before its first step runs, and run that step:
    the C Task raises, and the loop reports it. Returns the task, its
    coroutine (to be closed) and the exception-handler context."""

    async def coro():
        return "never"

    c = coro()
    task = loop.create_task(c)
    asyncio.Future.set_result(task, result)
    loop.run_until_complete(asyncio.sleep(0))
    [context] = take_errors(loop)
    return task, c, context


def test_step_of_a_task_finished_meanwhile_is_reported(loop):
    # The step a task has queued still runs if the task is finished behind
    # its back; the C Task raises, and the loop reports it as a callback
    # error with a handle, as asyncio's Handle._run does.
    task, c, context = finish_task_behind_its_step(loop, "forced")
    assert type(context["exception"]) is asyncio.InvalidStateError
    assert str(context["exception"]).startswith("_step(): already done: <Task finished name=")
    handle = context["handle"]
    assert handle._callback.__class__.__name__ == "TaskStepMethWrapper"
    # asyncio's message names the callback by its repr, which is the C
    # Task's own: "<TaskStepMethWrapper object at ...>" up to 3.11, with the
    # "_asyncio." module prefix from 3.12 on.
    assert context["message"] == f"Exception in callback {handle._callback!r}()"
    assert "TaskStepMethWrapper object at 0x" in context["message"]
    assert handle._args == ()
    assert not handle.cancelled()
    assert task.result() == "forced"
    c.close()


def test_task_steps_run_in_the_task_context_in_fifo_order(loop):
    var = contextvars.ContextVar("var", default="unset")
    order = []

    async def coro(label):
        order.append((label, var.get()))
        await asyncio.sleep(0)
        order.append((label, var.get()))

    def in_context(label):
        ctx = contextvars.copy_context()
        ctx.run(var.set, label)
        return loop.create_task(coro(label), context=ctx)

    loop.call_soon(order.append, "callback before")
    tasks = [in_context("a"), loop.create_task(coro("b")), in_context("c")]
    loop.call_soon(order.append, "callback after")
    loop.run_until_complete(asyncio.gather(*tasks))
    assert order == [
        "callback before",
        ("a", "a"),
        ("b", "unset"),
        ("c", "c"),
        "callback after",
        ("a", "a"),
        ("b", "unset"),
        ("c", "c"),
    ]


def test_task_step_queued_before_debug_is_turned_on_is_timed(loop, caplog):
    import logging
    import time

    async def slow():
        time.sleep(0.05)

    task = loop.create_task(slow())
    loop.set_debug(True)
    loop.slow_callback_duration = 0.02
    with caplog.at_level(logging.WARNING, logger="asyncio"):
        loop.run_until_complete(task)
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(m.startswith("Executing <Task finished name=") and "slow()" in m for m in messages)


def test_closing_the_loop_drops_queued_task_steps(loop_factory):
    import gc
    import weakref

    loop = loop_factory()

    async def coro():
        pass

    c = coro()
    task = loop.create_task(c)
    task._log_destroy_pending = False
    ref = weakref.ref(task)
    del task
    loop.close()
    c.close()
    del c
    gc.collect()
    assert ref() is None


def test_call_soon_of_a_task_step_returns_no_handle_on_ferroloop(loop, loop_kind):
    # A deliberate difference: the step callback of asyncio's C Task is
    # queued without a handle (outside debug mode), since the Task never
    # looks at the handle. The callback object is private to the Task; the
    # only way to reach one is through a handle's `_callback`.
    _, c, context = finish_task_behind_its_step(loop, None)
    step = context["handle"]._callback
    handle = loop.call_soon(step, context=contextvars.copy_context())
    if loop_kind == "ferroloop":
        assert handle is None
    else:
        assert isinstance(handle, asyncio.Handle)
    loop.run_until_complete(asyncio.sleep(0))
    [context] = take_errors(loop)
    assert type(context["exception"]) is asyncio.InvalidStateError
    assert context["handle"]._callback is step
    c.close()


def test_only_the_task_step_type_is_taken_for_handle_free_steps(loop, loop_kind):
    # ferroloop's registration refuses any other type, so that a mistaken
    # registration cannot make call_soon drop the handles of ordinary
    # callbacks given a context; the registered type is that of the C
    # Task's step callback.
    from ferroloop import _core

    assert _core._register_task_step_type(types.MethodType) is False
    handle = loop.call_soon(loop.stop, context=contextvars.copy_context())
    assert handle is not None and not handle.cancelled()
    loop.run_forever()
    _, c, context = finish_task_behind_its_step(loop, None)
    step_type = type(context["handle"]._callback)
    assert _core._register_task_step_type(step_type) is True
    c.close()
