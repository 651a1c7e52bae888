"""Eager tasks (``asyncio.eager_task_factory``,
``asyncio.create_eager_task_factory``, Python 3.12+): the first step of the
coroutine runs inside ``create_task``, on asyncio's own C ``Task``, with
``current_task()`` pointing at the task for that step and back at the
creator afterwards, and tasks that suspend continue on the loop as usual.

Also here: the tasks ferroloop makes are asyncio's C ``Task``, stepped by
the ``Task`` itself (its own enter/leave of the current task), which is
what ``asyncio.current_task()``, eager tasks and 3.14's call-graph
introspection (``asyncio.capture_call_graph``, ``python -m asyncio ps``)
read.
"""

import asyncio
import contextvars
import gc

import pytest
from conftest import take_errors

EAGER = hasattr(asyncio, "eager_task_factory")
needs_eager = pytest.mark.skipif(not EAGER, reason="eager task factories are new in Python 3.12")


def run_with_factory(loop, factory, main):
    loop.set_task_factory(factory)
    try:
        return loop.run_until_complete(main())
    finally:
        loop.set_task_factory(None)


class Labels:
    """Records which task is current at each point, by label. Tasks are
    compared by identity: where ``create_task`` names a factory's task after
    the factory returns (3.12, 3.13), an eager first step still runs under
    the automatic name."""

    def __init__(self):
        self.labels = {}
        self.trace = []

    def label(self, task, name):
        self.labels[task] = name
        return task

    def note(self, *what):
        self.trace.append((*what, asyncio.current_task()))

    def resolved(self):
        return [(*what, self.labels.get(task, task)) for *what, task in self.trace]


@needs_eager
def test_a_task_that_finishes_in_its_first_step(loop):
    t = Labels()

    async def child():
        t.note("child runs")
        return 42

    async def main():
        t.label(asyncio.current_task(), "main")
        t.note("before")
        task = t.label(asyncio.create_task(child()), "child")
        t.note("after", task.done())
        assert task.result() == 42
        assert task not in asyncio.all_tasks()
        return await task

    assert run_with_factory(loop, asyncio.eager_task_factory, main) == 42
    assert t.resolved() == [("before", "main"), ("child runs", "child"), ("after", True, "main")]


@needs_eager
def test_a_task_that_suspends_in_its_first_step(loop):
    t = Labels()

    async def child():
        t.note("first step")
        await asyncio.sleep(0)
        t.note("second step")
        return "done"

    async def main():
        t.label(asyncio.current_task(), "main")
        task = t.label(asyncio.create_task(child(), name="child"), "child")
        assert task.get_name() == "child"
        t.note("after create_task", task.done())
        assert task in asyncio.all_tasks()
        result = await task
        t.note("awaited")
        return result

    assert run_with_factory(loop, asyncio.eager_task_factory, main) == "done"
    assert t.resolved() == [
        ("first step", "child"),
        ("after create_task", False, "main"),
        ("second step", "child"),
        ("awaited", "main"),
    ]


@needs_eager
def test_a_task_that_raises_in_its_first_step(loop):
    async def child():
        raise ValueError("eager failure")

    async def main():
        me = asyncio.current_task()
        task = asyncio.create_task(child(), name="child")
        assert task.done() and asyncio.current_task() is me
        with pytest.raises(ValueError, match="eager failure"):
            task.result()
        return task

    task = run_with_factory(loop, asyncio.eager_task_factory, main)
    assert isinstance(task.exception(), ValueError)
    del task
    assert take_errors(loop) == []


@needs_eager
def test_an_unretrieved_eager_exception_is_reported(loop):
    async def child():
        raise ValueError("nobody looks")

    async def main():
        asyncio.create_task(child())

    run_with_factory(loop, asyncio.eager_task_factory, main)
    gc.collect()
    [context] = take_errors(loop)
    assert context["message"] == "Task exception was never retrieved"
    assert str(context["exception"]) == "nobody looks"


@needs_eager
def test_eager_tasks_nest(loop):
    t = Labels()

    async def inner():
        t.note("inner")
        await asyncio.sleep(0)
        t.note("inner resumed")

    async def outer():
        t.note("outer")
        task = t.label(asyncio.create_task(inner()), "inner")
        t.note("outer again")
        await task
        t.note("outer resumed")

    async def main():
        t.label(asyncio.current_task(), "main")
        task = t.label(asyncio.create_task(outer()), "outer")
        t.note("main")
        await task

    run_with_factory(loop, asyncio.eager_task_factory, main)
    assert t.resolved() == [
        ("outer", "outer"),
        ("inner", "inner"),
        ("outer again", "outer"),
        ("main", "main"),
        ("inner resumed", "inner"),
        ("outer resumed", "outer"),
    ]


@needs_eager
def test_create_eager_task_factory_with_a_task_subclass(loop):
    made = []

    class MyTask(asyncio.Task):
        def __init__(self, coro, **kwargs):
            made.append(sorted(kwargs))
            super().__init__(coro, **kwargs)

    var = contextvars.ContextVar("var", default="unset")
    ctx = contextvars.copy_context()
    ctx.run(var.set, "in ctx")

    async def child():
        return asyncio.current_task(), var.get()

    async def main():
        loop = asyncio.get_running_loop()
        task = loop.create_task(child(), name="named", context=ctx)
        assert task.done() and task.get_name() == "named"
        return task, task.result()

    factory = asyncio.create_eager_task_factory(MyTask)
    task, (current, value) = run_with_factory(loop, factory, main)
    assert current is task and type(task) is MyTask and value == "in ctx"
    assert all("eager_start" in kwargs and "loop" in kwargs for kwargs in made)


@needs_eager
def test_eager_factory_on_a_loop_that_is_not_running(loop):
    # No running loop: the task is scheduled as usual.
    trace = []

    async def child():
        trace.append("ran")
        return 1

    loop.set_task_factory(asyncio.eager_task_factory)
    try:
        task = loop.create_task(child())
        assert trace == [] and not task.done()
        assert loop.run_until_complete(task) == 1
    finally:
        loop.set_task_factory(None)


@needs_eager
def test_eager_tasks_in_a_task_group(loop):
    async def child(i):
        if i % 2:
            await asyncio.sleep(0)
        return i * 10

    async def main():
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(child(i)) for i in range(4)]
            assert [t.done() for t in tasks] == [True, False, True, False]
        return [t.result() for t in tasks]

    assert run_with_factory(loop, asyncio.eager_task_factory, main) == [0, 10, 20, 30]


# -- what eager tasks and 3.14's introspection rely on ------------------------


def test_tasks_are_asyncios_c_task_stepping_themselves(loop):
    # ferroloop never enters or leaves a task itself: current_task() is set
    # by the C Task's own step, which is also what makes eager tasks and
    # 3.14's call-graph introspection work.
    c_task = getattr(asyncio.tasks, "_CTask", None)
    if c_task is None:
        pytest.skip("this Python has no C Task")
    seen = []

    async def child():
        seen.append(asyncio.current_task())
        await asyncio.sleep(0)
        seen.append(asyncio.current_task())

    task = loop.create_task(child())
    assert type(task) is c_task
    loop.run_until_complete(task)
    assert seen == [task, task]
    assert asyncio.current_task(loop) is None


@pytest.mark.skipif(not hasattr(asyncio, "capture_call_graph"), reason="asyncio.capture_call_graph is new in Python 3.14")
def test_call_graph_of_tasks_awaiting_each_other(loop):
    async def leaf():
        await asyncio.sleep(0)
        return asyncio.capture_call_graph()

    async def middle():
        return await loop.create_task(leaf(), name="leaf")

    async def main():
        return await loop.create_task(middle(), name="middle")

    graph = loop.run_until_complete(loop.create_task(main(), name="main"))
    assert graph.future.get_name() == "leaf"
    assert [g.future.get_name() for g in graph.awaited_by] == ["middle"]
    assert [g.future.get_name() for g in graph.awaited_by[0].awaited_by] == ["main"]
