"""What ferroloop does to the interpreter it runs on: importing it changes
nothing a program of the standard library could see, and the features that
differ between Python versions follow the running asyncio."""

import asyncio
import inspect
import os
import socket
import subprocess
import sys
import textwrap

import pytest
from conftest import run_briefly

import ferroloop


def on_both_loops(scenario):
    """``scenario(loop)`` on a new ferroloop loop, then on a new asyncio
    loop: the two results."""
    results = []
    for factory in (ferroloop.new_event_loop, asyncio.SelectorEventLoop):
        loop = factory()
        try:
            results.append(scenario(loop))
        finally:
            loop.close()
    return results


def run_python(code):
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


TASK_NAMES = """
    import asyncio
    {imports}

    async def child():
        return asyncio.current_task().get_name()

    async def main():
        names = [asyncio.current_task().get_name()]
        names += await asyncio.gather(child(), child())
        names.append(asyncio.Task(child()).get_name())
        return names

    print(asyncio.run(main()))
    loop = asyncio.new_event_loop()
    print(loop.run_until_complete(main()))
    loop.close()
"""


@pytest.mark.parametrize("imports", ["import ferroloop", "import ferroloop, ferroloop._loop, ferroloop._core"])
def test_importing_ferroloop_keeps_asyncio_task_numbering(imports):
    # The native loop learns the type of the C Task's step callback from a
    # Task it makes at import; that Task must not take a number from the
    # counter behind asyncio's automatic names ("Task-1", "Task-2", ...).
    without = run_python(TASK_NAMES.format(imports=""))
    with_ferroloop = run_python(TASK_NAMES.format(imports=imports))
    assert with_ferroloop == without
    assert without.splitlines()[0] == "['Task-1', 'Task-2', 'Task-3', 'Task-4']"


def test_ferroloop_task_numbering_matches_asyncio():
    code = """
        import asyncio
        import ferroloop

        async def main():
            return asyncio.current_task().get_name()

        print({first}(main()), {second}(main()))
    """
    on_asyncio = run_python(code.format(first="asyncio.run", second="asyncio.run"))
    on_ferroloop = run_python(code.format(first="ferroloop.run", second="ferroloop.run"))
    mixed = run_python(code.format(first="asyncio.run", second="ferroloop.run"))
    assert on_asyncio == on_ferroloop == mixed
    assert on_asyncio.split()[0] == "Task-1"



def asyncio_takes(method, keyword):
    return keyword in inspect.signature(method).parameters


KEEP_ALIVE = asyncio_takes(asyncio.BaseEventLoop.create_server, "keep_alive")
CLEANUP_SOCKET = asyncio_takes(asyncio.SelectorEventLoop.create_unix_server, "cleanup_socket")
ALL_ERRORS = asyncio_takes(asyncio.BaseEventLoop.create_connection, "all_errors")


# -- create_server(keep_alive=): 3.13 ----------------------------------------


@pytest.mark.skipif(not KEEP_ALIVE, reason="create_server(keep_alive=) is new in Python 3.13")
@pytest.mark.parametrize("keep_alive", [None, False, True])
def test_create_server_keep_alive(loop, keep_alive):
    async def main():
        server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0, keep_alive=keep_alive)
        (listening,) = server.sockets
        enabled = listening.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)
        server.close()
        await server.wait_closed()
        return enabled

    assert bool(loop.run_until_complete(main())) is bool(keep_alive)


@pytest.mark.skipif(KEEP_ALIVE, reason="this Python's create_server takes keep_alive=")
def test_create_server_refuses_keep_alive_where_asyncio_does(loop):
    with pytest.raises(TypeError, match="unexpected keyword argument 'keep_alive'"):
        loop.run_until_complete(loop.create_server(asyncio.Protocol, "127.0.0.1", 0, keep_alive=True))


# -- create_unix_server(cleanup_socket=): 3.13 -------------------------------


def serve_unix_and_close(loop, path=None, **kwargs):
    async def main():
        server = await loop.create_unix_server(asyncio.Protocol, path, **kwargs)
        assert os.path.exists(server.sockets[0].getsockname())
        return server

    server = loop.run_until_complete(main())
    yield server
    server.close()
    loop.run_until_complete(server.wait_closed())


def test_unix_server_file_after_close_follows_asyncio(loop, tmp_path):
    # Removed on close where asyncio removes it (3.13+), left otherwise.
    path = str(tmp_path / "sock")
    for _ in serve_unix_and_close(loop, path):
        pass
    assert os.path.exists(path) is not CLEANUP_SOCKET


@pytest.mark.skipif(not CLEANUP_SOCKET, reason="create_unix_server(cleanup_socket=) is new in Python 3.13")
def test_unix_server_cleanup_socket(loop, tmp_path):
    kept, removed, given = (str(tmp_path / name) for name in ("kept", "removed", "given"))
    for _ in serve_unix_and_close(loop, kept, cleanup_socket=False):
        pass
    assert os.path.exists(kept)
    for _ in serve_unix_and_close(loop, removed, cleanup_socket=True):
        pass
    assert not os.path.exists(removed)
    # A socket passed as sock= is cleaned up too.
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(given)
    for _ in serve_unix_and_close(loop, sock=sock):
        pass
    assert not os.path.exists(given)


@pytest.mark.skipif(not CLEANUP_SOCKET, reason="create_unix_server(cleanup_socket=) is new in Python 3.13")
def test_unix_server_leaves_a_file_that_replaced_its_socket(loop, tmp_path):
    path = str(tmp_path / "sock")
    for _ in serve_unix_and_close(loop, path):
        # Someone else binds the path meanwhile: their file must survive.
        os.unlink(path)
        other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        other.bind(path)
    try:
        assert os.path.exists(path)
    finally:
        other.close()


@pytest.mark.skipif(not CLEANUP_SOCKET, reason="create_unix_server(cleanup_socket=) is new in Python 3.13")
def test_unix_server_cleanup_tolerates_a_file_already_gone(loop, tmp_path):
    path = str(tmp_path / "sock")
    for _ in serve_unix_and_close(loop, path):
        os.unlink(path)
    assert not os.path.exists(path)


def test_abstract_unix_server_closes_cleanly(loop):
    name = f"\0ferroloop-test-{os.getpid()}"

    async def main():
        server = await loop.create_unix_server(asyncio.Protocol, name)
        server.close()
        await server.wait_closed()

    loop.run_until_complete(main())


@pytest.mark.skipif(CLEANUP_SOCKET, reason="this Python's create_unix_server takes cleanup_socket=")
def test_create_unix_server_refuses_cleanup_socket_where_asyncio_does(loop, tmp_path):
    with pytest.raises(TypeError, match="unexpected keyword argument 'cleanup_socket'"):
        loop.run_until_complete(loop.create_unix_server(asyncio.Protocol, str(tmp_path / "s"), cleanup_socket=True))


# -- create_connection(all_errors=): 3.12 ------------------------------------


def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not ALL_ERRORS, reason="create_connection(all_errors=) is new in Python 3.12")
def test_create_connection_all_errors(loop):
    port = closed_port()
    with pytest.raises(ExceptionGroup) as info:
        loop.run_until_complete(loop.create_connection(asyncio.Protocol, "127.0.0.1", port, all_errors=True))
    assert info.value.message == "create_connection failed"
    assert [type(e) for e in info.value.exceptions] == [ConnectionRefusedError]
    with pytest.raises(ConnectionRefusedError):
        loop.run_until_complete(loop.create_connection(asyncio.Protocol, "127.0.0.1", port, all_errors=False))


@pytest.mark.skipif(ALL_ERRORS, reason="this Python's create_connection takes all_errors=")
def test_create_connection_refuses_all_errors_where_asyncio_does(loop):
    with pytest.raises(TypeError, match="unexpected keyword argument 'all_errors'"):
        loop.run_until_complete(loop.create_connection(asyncio.Protocol, "127.0.0.1", 1, all_errors=True))


# -- scheduling methods take their callback by keyword too --------------------


def test_scheduling_methods_take_callback_by_keyword(loop):
    calls = []
    loop.call_soon(callback=lambda: calls.append("soon"), context=None)
    loop.call_soon_threadsafe(callback=lambda: calls.append("threadsafe"))
    loop.call_later(delay=0, callback=lambda: calls.append("later"))
    loop.call_at(callback=lambda: calls.append("at"), when=loop.time())
    with pytest.raises(TypeError, match="call_soon\\(\\) got multiple values for argument 'callback'"):
        loop.call_soon(print, 1, callback=print)
    with pytest.raises(TypeError, match="call_later\\(\\) missing 1 required positional argument: 'delay'"):
        loop.call_later(callback=print)
    with pytest.raises(TypeError, match="call_at\\(\\) missing 2 required positional arguments: 'when' and 'callback'"):
        loop.call_at()
    with pytest.raises(TypeError, match="call_soon\\(\\) got an unexpected keyword argument 'delay'"):
        loop.call_soon(print, delay=1)
    run_briefly(loop, 2)
    assert len(calls) == 4 and "threadsafe" in calls and "later" in calls and "at" in calls


# -- running on ferroloop through asyncio's runners ---------------------------

RUN_TAKES_LOOP_FACTORY = asyncio_takes(asyncio.run, "loop_factory")


async def loop_report():
    async def agen():
        try:
            yield 1
            yield 2
        finally:
            finalized.append(True)

    finalized = []
    gen = agen()
    await gen.__anext__()
    loop = asyncio.get_running_loop()
    return type(loop), loop, finalized


@pytest.mark.skipif(not RUN_TAKES_LOOP_FACTORY, reason="asyncio.run(loop_factory=) is new in Python 3.12")
def test_asyncio_run_with_the_ferroloop_factory():
    loop_type, loop, finalized = asyncio.run(loop_report(), loop_factory=ferroloop.new_event_loop)
    assert loop_type is ferroloop.Loop
    # asyncio.run closed the loop after finalizing the generator.
    assert loop.is_closed() and finalized == [True]
    assert asyncio.run(asyncio.sleep(0, "result"), loop_factory=ferroloop.new_event_loop, debug=True) == "result"


def test_asyncio_runner_with_the_ferroloop_factory():
    import contextvars

    var = contextvars.ContextVar("var", default="unset")

    async def read():
        return var.get(), asyncio.get_running_loop()

    with asyncio.Runner(loop_factory=ferroloop.new_event_loop) as runner:
        loop = runner.get_loop()
        assert type(loop) is ferroloop.Loop
        ctx = contextvars.copy_context()
        ctx.run(var.set, "in ctx")
        assert runner.run(read(), context=ctx) == ("in ctx", loop)
        assert runner.run(read()) == ("unset", loop)
    assert loop.is_closed()


@pytest.mark.parametrize("kind", ["ferroloop", "asyncio"])
def test_asyncio_runner_turns_ctrl_c_into_cancellation(kind):
    import signal

    factory = ferroloop.new_event_loop if kind == "ferroloop" else asyncio.SelectorEventLoop
    cancelled = []

    async def main():
        asyncio.get_running_loop().call_later(0.02, os.kill, os.getpid(), signal.SIGINT)
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    with pytest.raises(KeyboardInterrupt):
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(main())
    assert cancelled == [True]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


# -- asyncio features of newer versions, on both loops ------------------------


@pytest.mark.skipif(not hasattr(asyncio.Queue, "shutdown"), reason="Queue.shutdown() is new in Python 3.13")
def test_queue_shutdown(loop):
    async def main():
        queue = asyncio.Queue()
        got = []

        async def consumer():
            try:
                while True:
                    got.append(await queue.get())
                    queue.task_done()
            except asyncio.QueueShutDown:
                got.append("shut down")

        consumers = [asyncio.create_task(consumer()) for _ in range(2)]
        for i in range(3):
            await queue.put(i)
        await queue.join()
        queue.shutdown()
        await asyncio.gather(*consumers)
        with pytest.raises(asyncio.QueueShutDown):
            await queue.put(99)

        immediate = asyncio.Queue()
        for i in range(3):
            immediate.put_nowait(i)
        waiter = asyncio.create_task(immediate.join())
        await asyncio.sleep(0)
        immediate.shutdown(immediate=True)
        await asyncio.wait_for(waiter, 5)
        with pytest.raises(asyncio.QueueShutDown):
            immediate.get_nowait()
        return got

    assert loop.run_until_complete(main()) == [0, 1, 2, "shut down", "shut down"]


@pytest.mark.skipif(
    # A plain generator before 3.13; from 3.13 an iterator that is also
    # asynchronously iterable.
    inspect.isgeneratorfunction(asyncio.as_completed),
    reason="as_completed() is async-iterable from Python 3.13",
)
def test_as_completed_async_iteration(loop):
    async def after(delay, value):
        await asyncio.sleep(delay)
        return value

    async def main():
        tasks = [asyncio.create_task(after(d, v)) for d, v in ((0.03, "slow"), (0.0, "fast"), (0.015, "middle"))]
        order = []
        async for done in asyncio.as_completed(tasks):
            # The tasks themselves come back, in the order they finish.
            assert done in tasks
            order.append(await done)
        plain = [await f for f in asyncio.as_completed([after(0.01, 1), after(0, 0)])]
        return order, plain

    assert loop.run_until_complete(main()) == (["fast", "middle", "slow"], [0, 1])


# -- create_task's keywords: the running asyncio's form -----------------------
# 3.11 to 3.13.2: create_task(coro, *, name=None, context=None); 3.13.3 and
# 3.14: create_task(coro, **kwargs), everything to the Task or the factory;
# 3.13.4 and later 3.13 releases: create_task(coro, *, name=None,
# context=None, **kwargs), name set after the factory.

CREATE_TASK_KWARGS = any(
    p.kind is p.VAR_KEYWORD for p in inspect.signature(asyncio.BaseEventLoop.create_task).parameters.values()
)
TASK_EAGER_START = "eager_start" in inspect.signature(asyncio.Task).parameters or hasattr(asyncio, "eager_task_factory")


def create_task_trace(loop):
    """What a task factory receives and what comes back, for each way of
    calling create_task."""
    import contextvars

    var = contextvars.ContextVar("var", default="unset")
    ctx = contextvars.copy_context()
    ctx.run(var.set, "in ctx")
    trace = []

    def factory(lp, coro, **kwargs):
        trace.append(("factory", lp is loop, sorted(kwargs)))
        return asyncio.Task(coro, loop=lp, **kwargs)

    async def child():
        return var.get()

    calls = [{}, {"name": "n"}, {"context": ctx}, {"name": "n", "context": ctx}, {"eager_start": True}, {"bogus": 1}]

    async def main():
        for use_factory in (False, True):
            loop.set_task_factory(factory if use_factory else None)
            for kwargs in calls:
                coro = child()
                try:
                    task = loop.create_task(coro, **kwargs)
                except TypeError:
                    coro.close()
                    trace.append(("TypeError", sorted(kwargs)))
                    continue
                done_at_once = task.done()
                value = await task
                name = task.get_name()
                trace.append((sorted(kwargs), done_at_once, value, name if not name.startswith("Task-") else "auto"))
        loop.set_task_factory(None)

    loop.run_until_complete(main())
    return trace


def test_create_task_keywords_reach_the_task_and_the_factory_as_on_asyncio():
    on_ferroloop, on_asyncio = on_both_loops(create_task_trace)
    assert on_ferroloop == on_asyncio


@pytest.mark.skipif(not CREATE_TASK_KWARGS, reason="create_task(**kwargs) is new in Python 3.13.3 and 3.14")
def test_create_task_eager_start(loop):
    async def child():
        return "ran"

    async def main():
        eager = loop.create_task(child(), eager_start=True)
        lazy = loop.create_task(child(), eager_start=False)
        assert eager.done() and not lazy.done()
        return await eager, await lazy

    assert loop.run_until_complete(main()) == ("ran", "ran")


# The two forms ferroloop takes where asyncio's create_task takes **kwargs,
# tested directly, so that they run on every Python (the Task's eager_start
# needs 3.12).


class RecordingFactory:
    def __init__(self):
        self.calls = []

    def __call__(self, loop, coro, **kwargs):
        self.calls.append(sorted(kwargs))
        return asyncio.Task(coro, loop=loop, **kwargs)


@pytest.mark.skipif(not TASK_EAGER_START, reason="Task(eager_start=) is new in Python 3.12")
@pytest.mark.parametrize("form", ["_create_task_forwarding_all", "_create_task_forwarding_others"])
def test_create_task_forms_without_factory(loop_factory, form):
    import ferroloop._loop

    create_task = getattr(ferroloop._loop, form)
    loop = loop_factory()

    async def child():
        return asyncio.current_task().get_name()

    async def main():
        eager = create_task(loop, child(), name="eager", eager_start=True)
        assert eager.done() and eager.result() == "eager"
        lazy = create_task(loop, child(), name="lazy")
        assert not lazy.done()
        return await lazy

    try:
        assert loop.run_until_complete(main()) == "lazy"
    finally:
        loop.close()


@pytest.mark.skipif(not TASK_EAGER_START, reason="Task(eager_start=) is new in Python 3.12")
def test_create_task_form_of_3_14_gives_the_factory_every_keyword(loop):
    from ferroloop._loop import _create_task_forwarding_all as create_task

    factory = RecordingFactory()

    async def main():
        loop.set_task_factory(factory)
        named = create_task(loop, asyncio.sleep(0), name="n", eager_start=False)
        plain = create_task(loop, asyncio.sleep(0))
        await asyncio.gather(named, plain)
        return named.get_name()

    assert loop.run_until_complete(main()) == "n"
    assert factory.calls == [["eager_start", "name"], []]


@pytest.mark.skipif(not TASK_EAGER_START, reason="Task(eager_start=) is new in Python 3.12")
def test_create_task_form_of_3_13_4_names_the_factory_task_afterwards(loop):
    import contextvars

    from ferroloop._loop import _create_task_forwarding_others as create_task

    factory = RecordingFactory()

    async def main():
        loop.set_task_factory(factory)
        named = create_task(loop, asyncio.sleep(0), name="n", eager_start=False)
        in_context = create_task(loop, asyncio.sleep(0), context=contextvars.copy_context())
        await asyncio.gather(named, in_context)
        return named.get_name(), in_context.get_name()

    # As asyncio's of those releases: the name is set after the factory,
    # whatever it is (a task without one is named "None").
    assert loop.run_until_complete(main()) == ("n", "None")
    assert factory.calls == [["eager_start"], ["context"]]


# -- event loop policies: deprecated by asyncio from 3.14 ----------------------

POLICIES_DEPRECATED = hasattr(asyncio.events, "_set_event_loop_policy")


def test_ferroloop_entry_points_warn_of_nothing(tmp_path):
    # Where asyncio deprecates policies, ferroloop's policy class and
    # install() reach them through asyncio's non-warning names; run() and
    # new_event_loop() involve no policy at all.
    script = tmp_path / "app.py"
    script.write_text(
        textwrap.dedent(
            """
            import asyncio
            async def main():
                return type(asyncio.get_running_loop()).__module__
            print(asyncio.run(main()))
            """
        )
    )
    code = """
        import asyncio, warnings
        warnings.simplefilter("error", DeprecationWarning)
        import ferroloop

        async def main():
            return type(asyncio.get_running_loop()).__name__

        print(ferroloop.run(main()))
        ferroloop.new_event_loop().close()
        policy = ferroloop.EventLoopPolicy()
        ferroloop.install()
        loop = asyncio.new_event_loop()
        print(type(loop).__name__)
        loop.close()
    """
    assert run_python(code).split() == ["Loop", "Loop"]
    proc = subprocess.run(
        [sys.executable, "-W", "error::DeprecationWarning", "-m", "ferroloop", str(script)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["ferroloop._loop"]


GET_EVENT_LOOP = """
    import asyncio, warnings
    {setup}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            loop = asyncio.get_event_loop()
        except RuntimeError as exc:
            outcome = ["raises", str(exc)]
        else:
            outcome = ["returns", type(loop).__module__]
            loop.close()
    print(outcome + [w.category.__name__ for w in caught])
"""


def test_get_event_loop_without_a_loop_behaves_as_with_asyncios_policy():
    with_asyncio = run_python(GET_EVENT_LOOP.format(setup=""))
    with_ferroloop = run_python(GET_EVENT_LOOP.format(setup="import ferroloop; ferroloop.install()"))
    expected = with_asyncio.replace("asyncio.unix_events", "ferroloop._loop")
    assert with_ferroloop == expected


@pytest.mark.skipif(not POLICIES_DEPRECATED, reason="get_event_loop() creates a loop before Python 3.14")
def test_get_event_loop_raises_when_no_loop_is_set():
    out = run_python(GET_EVENT_LOOP.format(setup="import ferroloop; ferroloop.install()"))
    assert out.startswith("['raises', 'There is no current event loop in thread")


# -- bind failures, worded as the running asyncio words them ------------------


def bind_failures(loop):
    """The errors create_server and create_connection(local_addr=) raise
    when binding fails: an address in use, and one not available here."""
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    attempts = [
        loop.create_server(asyncio.Protocol, "127.0.0.1", port, reuse_address=False),
        loop.create_connection(asyncio.Protocol, "127.0.0.1", closed_port(), local_addr=("127.0.0.1", port)),
        # TEST-NET-1 (RFC 5737): not an address of this machine.
        loop.create_server(asyncio.Protocol, "192.0.2.1", 0),
    ]
    errors = []
    try:
        for attempt in attempts:
            try:
                loop.run_until_complete(attempt)
            except OSError as exc:
                errors.append((type(exc).__name__, exc.errno, str(exc).replace(str(port), "PORT")))
            else:
                errors.append("no error")
    finally:
        taken.close()
    return errors


def test_bind_failures_are_worded_as_by_asyncio():
    on_ferroloop, on_asyncio = on_both_loops(bind_failures)
    assert on_ferroloop == on_asyncio
    assert "address already in use" in on_asyncio[0][2]


def test_callback_checks_warn_of_nothing():
    # Debug mode's callback checks and add_signal_handler tell coroutine
    # functions apart without asyncio.iscoroutinefunction, deprecated in 3.14.
    code = """
        import asyncio, signal, warnings
        warnings.simplefilter("error", DeprecationWarning)
        import ferroloop

        async def coroutine_function():
            pass

        loop = ferroloop.new_event_loop()
        loop.set_debug(True)
        for attempt in (
            lambda: loop.call_soon(coroutine_function),
            lambda: loop.add_signal_handler(signal.SIGUSR1, coroutine_function),
        ):
            try:
                attempt()
            except TypeError as exc:
                print(exc)
        loop.call_soon(print, "plain callback")
        loop.call_soon(loop.stop)
        loop.run_forever()
        loop.close()
    """
    assert run_python(code).splitlines() == [
        "coroutines cannot be used with call_soon()",
        "coroutines cannot be used with add_signal_handler()",
        "plain callback",
    ]
