"""Debug mode: flag, slow-callback warnings, thread checks, tracebacks."""

import asyncio
import logging
import os
import re
import subprocess
import sys
import threading
import time

import pytest

from conftest import run_briefly


def test_debug_flag(loop):
    assert loop.get_debug() is False
    loop.set_debug(True)
    assert loop.get_debug() is True
    assert "debug=True" in repr(loop)
    loop.set_debug(False)
    assert loop.get_debug() is False


@pytest.mark.parametrize("kind", ["ferroloop", "asyncio"])
@pytest.mark.parametrize("env, expected", [({"PYTHONASYNCIODEBUG": "1"}, "True"), ({}, "False")])
def test_pythonasynciodebug_env(kind, env, expected):
    factory = "ferroloop.new_event_loop()" if kind == "ferroloop" else "asyncio.SelectorEventLoop()"
    code = f"import asyncio, ferroloop; loop = {factory}; print(loop.get_debug()); loop.close()"
    base = {k: v for k, v in os.environ.items() if k != "PYTHONASYNCIODEBUG"}
    out = subprocess.run([sys.executable, "-c", code], env={**base, **env}, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == expected


def test_slow_callback_is_logged(loop, caplog):
    loop.set_debug(True)
    loop.slow_callback_duration = 0.02

    def slow():
        time.sleep(0.05)

    loop.call_soon(slow)
    loop.call_soon(lambda: None)
    with caplog.at_level(logging.WARNING, logger="asyncio"):
        run_briefly(loop)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].startswith("Executing <Handle test_slow_callback_is_logged.<locals>.slow() at ")
    # The duration is formatted as asyncio formats it; how long it is depends
    # on the machine, but it is at least the callback's sleep.
    took = re.search(r" took (\d+\.\d{3}) seconds$", warnings[0])
    assert took is not None and float(took.group(1)) >= 0.05


def test_slow_task_step_is_logged_with_task_repr(loop, caplog):
    loop.set_debug(True)
    loop.slow_callback_duration = 0.02

    async def slow_coro():
        time.sleep(0.05)

    with caplog.at_level(logging.WARNING, logger="asyncio"):
        loop.run_until_complete(slow_coro())
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(m.startswith("Executing <Task finished name=") and "slow_coro()" in m for m in messages)


def test_non_threadsafe_call_from_other_thread_raises_in_debug(loop):
    loop.set_debug(True)
    errors = []

    def other_thread():
        for call in (lambda: loop.call_soon(print), lambda: loop.call_later(1, print), lambda: loop.call_at(1, print)):
            try:
                call()
            except RuntimeError as e:
                errors.append(str(e))
        loop.call_soon_threadsafe(loop.stop)

    loop.call_soon(threading.Thread(target=other_thread).start)
    loop.run_forever()
    assert errors == ["Non-thread-safe operation invoked on an event loop other than the current one"] * 3


def test_handles_record_creation_traceback_in_debug(loop):
    loop.set_debug(True)
    h = loop.call_soon(print)  # this line
    line = sys._getframe().f_lineno - 1
    assert h._source_traceback[-1][0] == __file__
    assert h._source_traceback[-1][1] == line
    assert repr(h).endswith(f"created at {__file__}:{line}>")
    t = loop.call_later(10, print)
    assert t._source_traceback[-1][1] == line + 5
    h.cancel()
    t.cancel()
    # Cancelled in debug mode: the representation is kept.
    assert "created at" in repr(h)


def test_coroutine_origin_tracking_during_debug_run(loop):
    loop.set_debug(True)
    depths = []

    async def main():
        depths.append(sys.get_coroutine_origin_tracking_depth())

    before = sys.get_coroutine_origin_tracking_depth()
    loop.run_until_complete(main())
    assert depths == [asyncio.constants.DEBUG_STACK_DEPTH]
    assert sys.get_coroutine_origin_tracking_depth() == before


def test_callback_error_in_debug_mode_has_source_traceback(loop):
    loop.set_debug(True)
    loop.call_soon(lambda: 1 / 0)
    run_briefly(loop)
    (error,) = loop.errors
    loop.errors.clear()
    assert error["source_traceback"][-1][0] == __file__


def test_future_creation_traceback_ends_as_on_asyncio(loop, stdlib_loop):
    """asyncio's ``create_future`` is Python, so in debug mode the future's
    creation traceback (and its repr's "created at") ends in that method's
    frame, not at the caller's line."""
    seen = []
    for lp in (loop, stdlib_loop):
        lp.set_debug(True)
        fut = lp.create_future()
        last = fut._source_traceback[-1]
        seen.append((last.filename, last.name, last.lineno, len(fut._source_traceback), repr(fut)))
        fut.cancel()
    assert seen[0] == seen[1]
    assert seen[0][1] == "create_future"


def test_callback_arguments_in_error_reports_follow_debug_mode(loop, stdlib_loop):
    """Where asyncio shows a callback's arguments only in debug mode (3.13+),
    the handle's repr and the report of its exception do the same."""

    def fails(*args):
        raise ValueError("no")

    seen = []
    for lp in (loop, stdlib_loop):
        texts = []
        for debug in (False, True):
            lp.set_debug(debug)
            handle = lp.call_soon(fails, 1, "two")
            texts.append(re.sub(r" created at \S+", "", repr(handle)))
            run_briefly(lp)
            (error,) = lp.errors
            lp.errors.clear()
            texts.append(error["message"])
        seen.append(texts)
    assert seen[0] == seen[1]
    assert "fails(1, 'two')" in seen[0][2]
