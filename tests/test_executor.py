"""Executors: run_in_executor, default executor, shutdown, to_thread."""

import asyncio
import concurrent.futures
import inspect
import threading

import pytest


def test_run_in_default_executor(loop):
    async def main():
        return await loop.run_in_executor(None, lambda a, b: (a + b, threading.current_thread().name), 1, 2)

    result, name = loop.run_until_complete(main())
    assert result == 3
    assert name.startswith("asyncio")


def test_run_in_custom_executor(loop):
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="custom") as pool:
        name = loop.run_until_complete(loop.run_in_executor(pool, lambda: threading.current_thread().name))
    assert name.startswith("custom")


def test_executor_exception_propagates(loop):
    def fail():
        raise ValueError("in thread")

    with pytest.raises(ValueError, match="in thread"):
        loop.run_until_complete(loop.run_in_executor(None, fail))


def test_to_thread(loop):
    async def main():
        return await asyncio.to_thread(sum, [1, 2, 3])

    assert loop.run_until_complete(main()) == 6


def test_set_default_executor(loop):
    with pytest.raises(TypeError, match="executor must be ThreadPoolExecutor instance"):
        loop.set_default_executor(object())
    pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="mine")
    loop.set_default_executor(pool)
    name = loop.run_until_complete(loop.run_in_executor(None, lambda: threading.current_thread().name))
    assert name.startswith("mine")


def test_shutdown_default_executor(loop):
    loop.run_until_complete(loop.run_in_executor(None, lambda: None))
    executor = loop._default_executor
    loop.run_until_complete(loop.shutdown_default_executor())
    assert executor._shutdown
    with pytest.raises(RuntimeError, match="Executor shutdown has been called"):
        loop.run_in_executor(None, lambda: None)


@pytest.mark.skipif(
    "timeout" not in inspect.signature(asyncio.BaseEventLoop.shutdown_default_executor).parameters,
    reason="this asyncio's shutdown_default_executor() has no timeout parameter (new in 3.12)",
)
def test_shutdown_default_executor_timeout(loop):
    loop.run_until_complete(loop.run_in_executor(None, lambda: None))
    loop.run_until_complete(loop.shutdown_default_executor(timeout=5))


def test_close_shuts_down_executor_without_waiting(loop):
    loop.run_until_complete(loop.run_in_executor(None, lambda: None))
    executor = loop._default_executor
    loop.close()
    assert executor._shutdown
    assert loop._default_executor is None


def test_run_in_executor_on_closed_loop(loop):
    loop.close()
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        loop.run_in_executor(None, print)


def test_run_in_executor_rejects_coroutine_function_in_debug(loop):
    async def coro():
        pass

    loop.set_debug(True)
    with pytest.raises(TypeError, match=r"coroutines cannot be used with run_in_executor\(\)"):
        loop.run_in_executor(None, coro)
