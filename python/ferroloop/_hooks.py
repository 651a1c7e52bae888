"""The Python functions the native code calls.

``ferroloop._core`` looks each of these up once per process, by module and
name (``crates/ferroloop-py/src/py_refs.rs``), to do in Python what runs
only in debug mode or on error paths: reports to the exception handler, log
lines, reprs, creation tracebacks. Their names and signatures are that
contract: ``__all__`` lists exactly the names the native code looks up (a
test checks the two against each other). The loop also calls some methods
of ``ferroloop.Loop`` by name (``_handle_signal``, ``call_exception_handler``,
``create_task``, ...); those stay methods.

The other modules of the package use ``logger()`` and some of these
functions too.
"""

import asyncio
import logging
import sys
import traceback
from collections.abc import Callable
from typing import Any, cast

from asyncio import base_events, coroutines, events, format_helpers, tasks

from . import _compat, _core

__all__ = (
    "_report_callback_error",
    "_extract_stack",
    "_check_callback",
    "_log_slow_callback",
    "_handle_repr",
    "_set_result_unless_cancelled",
    "_transport_debug",
    "_transport_info",
    "_transport_warning",
    "_report_transport_error",
    "_log_slow_transport",
    "_report_watcher_error",
    "_debug_log",
    "_debug_log_exc",
    "_Handle",
    "_TimerHandle",
    "_ThreadSafeHandle",
)


def logger() -> logging.Logger:
    """asyncio's logger. Looked up on every use so that code (and CPython's
    own tests) patching ``asyncio.base_events.logger`` sees ferroloop's
    messages too."""
    found: logging.Logger = base_events.logger  # type: ignore[attr-defined]
    return found


# -- handles ------------------------------------------------------------------


# What ferroloop's native handles give as their ``__class__``, which
# ``isinstance`` consults when an object's type is not a subclass of the class
# asked about: subclasses of asyncio's own handle classes, so that
# ``isinstance(loop.call_later(...), asyncio.TimerHandle)`` holds on ferroloop
# as on asyncio. They are never instantiated. The native types themselves do
# not derive from asyncio's (``type(handle)`` is ``ferroloop.Handle``; see
# README, "Where ferroloop deliberately differs").


class _Handle(events.Handle):
    """The class a ``ferroloop.Handle`` claims for ``isinstance``."""

    __slots__ = ()


class _TimerHandle(events.TimerHandle):
    """The class a ``ferroloop.TimerHandle`` claims for ``isinstance``."""

    __slots__ = ()


class _ThreadSafeHandle(_compat.THREADSAFE_HANDLE_CLASS):  # type: ignore[misc,valid-type]
    """The class a ``call_soon_threadsafe`` handle claims for ``isinstance``:
    asyncio's ``_ThreadSafeHandle`` where it has one (3.14+), else its
    ``Handle``."""

    __slots__ = ()



def _report_callback_error(
    handle: _core.Handle, callback: Callable[..., object], args: tuple[Any, ...], exc: BaseException
) -> None:
    """Called by native code when a callback raised ``exc``: report it
    through the loop's exception handler, as asyncio's ``Handle._run``
    does."""
    loop = cast(asyncio.AbstractEventLoop, handle._loop)
    source = _format_callback(callback, args, loop)
    context = {"message": f"Exception in callback {source}", "exception": exc, "handle": handle}
    source_traceback = handle._source_traceback
    if source_traceback:
        context["source_traceback"] = source_traceback
    loop.call_exception_handler(context)


def _format_callback(callback: object, args: tuple[Any, ...], loop: asyncio.AbstractEventLoop | None) -> str:
    """asyncio's text for ``callback(*args)``: with the arguments only in
    debug mode where asyncio shows them only then."""
    if _compat.FORMAT_CALLBACK_TAKES_DEBUG:
        debug = loop is not None and loop.get_debug()
        return format_helpers._format_callback_source(callback, args, debug=debug)  # type: ignore[call-arg]
    return format_helpers._format_callback_source(callback, args)


def _extract_stack() -> traceback.StackSummary | None:
    """Called by native code in debug mode: the creation traceback of a
    handle, i.e. the stack of the Python code calling into the loop."""
    try:
        caller = sys._getframe(1)
    except ValueError:
        return None
    return format_helpers.extract_stack(caller)


def _check_callback(callback: object, method: str) -> None:
    """Called by native code in debug mode (and by ``run_in_executor``):
    refuse coroutines and non-callables passed as callbacks to ``method``."""
    if coroutines.iscoroutine(callback) or _compat.iscoroutinefunction(callback):
        raise TypeError(f"coroutines cannot be used with {method}()")
    if not callable(callback):
        raise TypeError(f"a callable object was expected by {method}(), got {callback!r}")


def _format_handle(handle: _core.Handle) -> str:
    owner = getattr(handle._callback, "__self__", None)
    if isinstance(owner, tasks.Task):
        return repr(owner)
    return str(handle)


def _log_slow_callback(handle: _core.Handle, seconds: float) -> None:
    """Called by native code in debug mode when a callback ran longer than
    ``slow_callback_duration``."""
    logger().warning("Executing %s took %.3f seconds", _format_handle(handle), seconds)


def _handle_repr(handle: _core.Handle) -> str:
    """Called by native code for ``repr(handle)``: asyncio's
    ``Handle.__repr__`` text."""
    parts = [type(handle).__name__]
    if handle._cancelled:
        parts.append("cancelled")
    if isinstance(handle, _core.TimerHandle):
        parts.append(f"when={handle._when}")
    if handle._callback is not None:
        parts.append(_format_callback(handle._callback, handle._args, handle._loop))  # type: ignore[arg-type]
    source_traceback = handle._source_traceback
    if source_traceback:
        filename, lineno = source_traceback[-1][:2]
        parts.append(f"created at {filename}:{lineno}")
    return f"<{' '.join(parts)}>"


# -- futures ------------------------------------------------------------------


def _set_result_unless_cancelled(fut: asyncio.Future[Any], result: object) -> None:
    """Called by native code (queued on the loop) to complete a transport's
    waiter, and by the loop's executor shutdown."""
    if not fut.cancelled():
        fut.set_result(result)


# -- transports and socket operations ------------------------------------------


def _transport_debug(transport: asyncio.BaseTransport, message: str, exc: BaseException | None) -> None:
    """Called by native code in debug mode: a transport's log line (with the
    exception, if any)."""
    if exc is None:
        logger().debug("%r %s", transport, message)
    else:
        logger().debug("%r: %s", transport, message, exc_info=(type(exc), exc, exc.__traceback__))


def _debug_log(fmt: str, *args: object) -> None:
    """Called by native code in debug mode: ``logger.debug(fmt, *args)``
    (the TLS layer's handshake and end-of-stream lines)."""
    logger().debug(fmt, *args)


def _debug_log_exc(fmt: str, obj: object, message: str, exc: BaseException) -> None:
    """Called by native code in debug mode: ``logger.debug(fmt, obj,
    message)`` with ``exc``'s traceback (the TLS layer's OS errors)."""
    logger().debug(fmt, obj, message, exc_info=(type(exc), exc, exc.__traceback__))


def _transport_info(transport: asyncio.BaseTransport, message: str) -> None:
    """Called by native code in debug mode: a transport's INFO log line
    (asyncio's "%r was closed by peer" of pipes)."""
    logger().info("%r %s", transport, message)


def _transport_warning(message: str) -> None:
    """Called by native code: a transport's warning (asyncio logs
    ``socket.send() raised exception.`` for writes after the connection was
    lost)."""
    logger().warning(message)


def _report_transport_error(transport: asyncio.BaseTransport, method: str, exc: BaseException) -> None:
    """Called by native code when an exception escaped a transport's
    readiness callback ``method``."""
    loop: asyncio.AbstractEventLoop = transport._loop  # type: ignore[attr-defined]
    loop.call_exception_handler(
        {
            "message": f"Exception in callback {type(transport).__name__}.{method}()",
            "exception": exc,
            "transport": transport,
        }
    )


def _log_slow_transport(transport: asyncio.BaseTransport, method: str, seconds: float) -> None:
    """Called by native code in debug mode when a transport's readiness
    callback ran longer than ``slow_callback_duration``."""
    logger().warning("Executing %r.%s() took %.3f seconds", transport, method, seconds)


def _report_watcher_error(loop: asyncio.AbstractEventLoop, watcher: object, exc: BaseException) -> None:
    """Called by native code when an exception escaped a native watcher
    that is not a transport: the retry of a socket operation
    (``_core.SockWaiter``), the exit of a child (``_core.ChildWatch``)."""
    loop.call_exception_handler({"message": f"Exception in callback {watcher!r}", "exception": exc})
