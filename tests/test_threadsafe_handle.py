"""The handle ``call_soon_threadsafe`` returns. Where asyncio's is a
``_ThreadSafeHandle`` (3.14+), ``cancel()`` and ``cancelled()`` called from
another thread while the callback runs wait for it to return; elsewhere it
is a plain ``Handle`` and ferroloop keeps its fast path."""

import asyncio
import subprocess
import sys
import textwrap
import threading
import time

import pytest

THREADSAFE_HANDLE = hasattr(asyncio.events, "_ThreadSafeHandle")


def cancel_while_running(loop):
    """Cancels (from another thread) a callback that is running; reports
    whether cancel() returned only after the callback had."""
    started = threading.Event()
    finished = []
    seen = {}

    def callback():
        started.set()
        time.sleep(0.1)
        # The running thread itself does not wait for its own callback.
        seen["cancelled inside"] = handle.cancelled()
        finished.append(True)

    def canceller():
        started.wait(5)
        handle.cancel()
        seen["callback finished when cancel() returned"] = bool(finished)
        seen["cancelled()"] = handle.cancelled()

    handle = loop.call_soon_threadsafe(callback)
    thread = threading.Thread(target=canceller)
    thread.start()
    loop.call_soon(loop.stop)
    loop.run_forever()
    thread.join(5)
    return type(handle).__name__, seen


@pytest.mark.skipif(not THREADSAFE_HANDLE, reason="call_soon_threadsafe returns a _ThreadSafeHandle from Python 3.14")
def test_cancel_waits_for_a_running_callback(loop):
    name, seen = cancel_while_running(loop)
    assert name == "_ThreadSafeHandle"
    assert seen == {
        "cancelled inside": False,
        "callback finished when cancel() returned": True,
        "cancelled()": True,
    }


@pytest.mark.skipif(not THREADSAFE_HANDLE, reason="call_soon_threadsafe returns a _ThreadSafeHandle from Python 3.14")
def test_threadsafe_handle_cancelled_before_it_runs(loop):
    calls = []
    handle = loop.call_soon_threadsafe(calls.append, 1)
    assert repr(handle).startswith("<_ThreadSafeHandle ")
    handle.cancel()
    assert handle.cancelled()
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert calls == []


@pytest.mark.skipif(THREADSAFE_HANDLE, reason="call_soon_threadsafe returns a _ThreadSafeHandle on this Python")
def test_call_soon_threadsafe_returns_a_plain_handle_where_asyncio_does(loop):
    handle = loop.call_soon_threadsafe(print)
    handle.cancel()
    assert type(handle).__name__ == "Handle"


def test_ferroloop_threadsafe_handle_on_every_python():
    # The probe forced on, in a process of its own: ferroloop's thread-safe
    # handle works whichever asyncio it runs beside.
    code = textwrap.dedent(
        """
        import ferroloop, ferroloop._compat
        ferroloop._compat.THREADSAFE_HANDLE_WAITS = True
        import test_threadsafe_handle as t
        loop = ferroloop.new_event_loop()
        print(t.cancel_while_running(loop))
        h = loop.call_soon_threadsafe(print)
        h.cancel()
        print(repr(h), isinstance(h, ferroloop.Handle))
        loop.close()
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=__file__.rsplit("/", 1)[0],
    )
    assert proc.returncode == 0, proc.stderr
    report, handle = proc.stdout.splitlines()
    assert report == (
        "('_ThreadSafeHandle', {'cancelled inside': False, "
        "'callback finished when cancel() returned': True, 'cancelled()': True})"
    )
    assert handle == "<_ThreadSafeHandle cancelled> True"
