"""The ferroloop event loop class.

``_core.Loop`` (Rust) implements scheduling, the loop turn, the
asynchronous-generator hooks, futures/tasks and readiness callbacks. This
module adds, on the Python subclass, what runs once per program or only on
error paths and is clearer in Python: ``run_until_complete``, the exception
handler, executors, ``shutdown_asyncgens`` and signal handlers. The
functions the native code calls for debug mode and error reports are in
``_hooks``; the networking methods come from the mixins of ``_connect``,
``_server``, ``_datagram``, ``_sock``, ``_sendfile``, ``_dns``, ``_pipes``,
``_subprocess`` and ``_tls``.

Behaviour follows CPython's ``asyncio.base_events`` / ``unix_events`` of the
running Python version; differences are documented where they exist.
"""

import asyncio
import collections
import concurrent.futures
import errno
import signal
import sys
import threading
import traceback
import warnings

from asyncio import coroutines, events, futures, tasks

from . import _compat, _core, _diagnostics
from ._connect import ConnectMixin
from ._datagram import DatagramMixin
from ._dns import DnsMixin
from ._hooks import _check_callback, _set_result_unless_cancelled, logger
from ._pipes import PipesMixin
from ._sendfile import SendfileMixin
from ._server import ServerMixin
from ._sock import SockMixin
from ._tls import TlsMixin
from ._subprocess import SubprocessMixin

__all__ = ("Loop",)

# The line shutdown_asyncgens() logs, with the report on, for the generators
# it closes that were never closed (a count, then their names).
_SHUTDOWN_SUMMARY = "shutdown_asyncgens() is closing %d asynchronous generator(s) that were never closed: %s"


def _register_task_step_type():
    """Tell the native loop the type of the callback asyncio's C ``Task``
    schedules for each step (``Loop.call_soon_task_step`` queues those
    without a handle). ``_asyncio`` does not export the type: a ``Task`` is
    made on a stand-in loop, which records what its first step is."""
    c_task = _compat.C_TASK
    if c_task is None:
        return
    seen = []

    class StandIn:
        def get_debug(self):
            return False

        def call_soon(self, callback, *args, context=None):
            seen.append(type(callback))

        def call_exception_handler(self, context):
            pass

    async def nothing():
        pass

    coro = nothing()
    try:
        # Named, so that it does not take a number from the counter behind
        # asyncio's automatic task names ("Task-1", ...): importing
        # ferroloop must not change the names of the program's tasks.
        task = c_task(coro, loop=StandIn(), name="ferroloop task-step probe")
        task._log_destroy_pending = False
        del task
    except Exception:
        # Some other Task implementation: steps then get handles as usual.
        return
    finally:
        coro.close()
    if len(seen) == 1:
        _core._register_task_step_type(seen[0])


_register_task_step_type()


def _create_task_forwarding_all(self, coro, **kwargs):
    """Schedule a coroutine as a Task. Every keyword (``name``,
    ``context``, ``eager_start``, ...) goes to the Task, or to the task
    factory as ``factory(loop, coro, **kwargs)``."""
    self._check_closed()
    factory = self.get_task_factory()
    if factory is not None:
        return factory(self, coro, **kwargs)
    return _new_task(self, coro, kwargs)


def _create_task_forwarding_others(self, coro, *, name=None, context=None, **kwargs):
    """Schedule a coroutine as a Task. The other keywords (``eager_start``,
    ...) go to the Task, or to the task factory as ``factory(loop, coro,
    **kwargs)`` with ``context`` added if given; a factory's task is named
    afterwards."""
    self._check_closed()
    factory = self.get_task_factory()
    if factory is None:
        return _new_task(self, coro, dict(kwargs, name=name, context=context))
    if context is not None:
        kwargs["context"] = context
    task = factory(self, coro, **kwargs)
    task.set_name(name)
    return task


def _new_task(loop, coro, kwargs):
    task = tasks.Task(coro, loop=loop, **kwargs)
    if task._source_traceback:
        # Drop this frame and create_task's: the traceback ends where
        # create_task was called.
        del task._source_traceback[-2:]
    return task


def _as_method(name, function):
    """``function``, named as the ``Loop`` method it becomes."""
    function.__name__, function.__qualname__ = name, f"Loop.{name}"
    return function


def _stop_loop_when_done(fut):
    """Done callback of ``run_until_complete``'s future."""
    if not fut.cancelled():
        exc = fut.exception()
        if isinstance(exc, (SystemExit, KeyboardInterrupt)):
            # run_forever() is already unwinding with this exception.
            return
    futures._get_loop(fut).stop()


# asyncio's own, where it has it: see ``_compat.RUN_UNTIL_COMPLETE_CB``.
_stop_loop_when_done = _compat.RUN_UNTIL_COMPLETE_CB or _stop_loop_when_done


def _noop_signal_handler(signum, frame):
    """Installed for signals handled by the loop: Python then only writes
    the signal number to the wake-up descriptor."""


class Loop(
    _core.Loop,
    ConnectMixin,
    DatagramMixin,
    ServerMixin,
    SockMixin,
    SendfileMixin,
    TlsMixin,
    DnsMixin,
    PipesMixin,
    SubprocessMixin,
    asyncio.AbstractEventLoop,
):
    """An asyncio event loop implemented in Rust; the networking methods
    come from one mixin per feature."""

    # Defaults for a loop whose __init__ did not run (close() and __del__
    # must still work on it).
    _default_executor = None
    _executor_shutdown_called = False
    _exception_handler = None
    _signal_handlers = None

    def __init__(self):
        self._default_executor = None
        self._executor_shutdown_called = False
        self._exception_handler = None
        self._signal_handlers = {}
        # Listening Unix socket -> (path, identity) of the file that closing
        # its server removes (``ServerMixin``).
        self._unix_socket_files = {}
        self._coroutine_origin_tracking_enabled = False
        self._coroutine_origin_tracking_saved_depth = None
        self.set_debug(coroutines._is_debug_mode())
        _diagnostics.configure(self)

    def __repr__(self):
        return (
            f"<{type(self).__name__} running={self.is_running()} "
            f"closed={self.is_closed()} debug={self.get_debug()}>"
        )

    # -- running and closing ------------------------------------------------

    def _check_closed(self):
        if self.is_closed():
            raise RuntimeError("Event loop is closed")

    def _check_running(self):
        if self.is_running():
            raise RuntimeError("This event loop is already running")
        if events._get_running_loop() is not None:
            raise RuntimeError("Cannot run the event loop while another loop is running")

    def run_until_complete(self, future):
        """Run until ``future`` is done and return its result (or raise its
        exception). A coroutine is wrapped in a Task."""
        self._check_closed()
        self._check_running()
        wrapped = not futures.isfuture(future)
        future = tasks.ensure_future(future, loop=self)
        if wrapped:
            # The caller never sees this task: a failure is raised here, so
            # there is nothing to warn about if it is left pending.
            future._log_destroy_pending = False
        future.add_done_callback(_stop_loop_when_done)
        try:
            self.run_forever()
        except BaseException:
            if wrapped and future.done() and not future.cancelled():
                # Mark the exception retrieved: the caller cannot reach the
                # task to do it.
                future.exception()
            raise
        finally:
            future.remove_done_callback(_stop_loop_when_done)
        if not future.done():
            raise RuntimeError("Event loop stopped before Future completed.")
        return future.result()

    def close(self):
        """Close the loop: drop pending callbacks, shut the default executor
        down without waiting, remove signal handlers, leave children still
        running to the orphan reaper."""
        if self.is_running():
            raise RuntimeError("Cannot close a running event loop")
        if self.is_closed():
            return
        if self.get_debug():
            logger().debug("Close %r", self)
        # Signal handlers go first, while the wake-up descriptor is still
        # open, so that no signal is written to a closed (or reused) number.
        if self._signal_handlers:
            if not sys.is_finalizing():
                for sig in list(self._signal_handlers):
                    self.remove_signal_handler(sig)
            else:
                warnings.warn(
                    f"Closing the loop {self!r} on interpreter shutdown stage, "
                    f"skipping signal handlers removal",
                    ResourceWarning,
                    source=self,
                )
                self._signal_handlers.clear()
        # Children still running are handed to the orphan reaper while the
        # poller is still open.
        self._close_children()
        self._close_native()
        self._executor_shutdown_called = True
        executor = self._default_executor
        if executor is not None:
            self._default_executor = None
            executor.shutdown(wait=False)

    def __del__(self, _warn=warnings.warn):
        if not self.is_closed():
            _warn(f"unclosed event loop {self!r}", ResourceWarning, source=self)
            if not self.is_running():
                self.close()

    def _set_coroutine_origin_tracking(self, enabled):
        if bool(enabled) == bool(self._coroutine_origin_tracking_enabled):
            return
        if enabled:
            self._coroutine_origin_tracking_saved_depth = sys.get_coroutine_origin_tracking_depth()
            sys.set_coroutine_origin_tracking_depth(asyncio.constants.DEBUG_STACK_DEPTH)
        else:
            sys.set_coroutine_origin_tracking_depth(self._coroutine_origin_tracking_saved_depth)
        self._coroutine_origin_tracking_enabled = enabled

    # create_task: the native one (``name``, ``context``) unless asyncio's
    # takes more keywords (see ``_compat.CREATE_TASK_TAKES_KWARGS``).
    if _compat.CREATE_TASK_FORWARDS_NAME:
        create_task = _as_method("create_task", _create_task_forwarding_all)
    elif _compat.CREATE_TASK_TAKES_KWARGS:
        create_task = _as_method("create_task", _create_task_forwarding_others)

    # -- asynchronous generators --------------------------------------------

    async def shutdown_asyncgens(self):
        """Close every asynchronous generator still alive, concurrently;
        report cleanup errors through the exception handler."""
        self._asyncgens_shutdown_called = True
        agens = self._take_asyncgens()
        if not agens:
            return
        if self._asyncgen_report:
            # One line names those still suspended (a finished generator's
            # frame is gone), by qualified name.
            suspended = [agen.__qualname__ for agen in agens if agen.ag_frame is not None]
            if suspended:
                counts = collections.Counter(suspended)
                logger().warning(
                    _SHUTDOWN_SUMMARY,
                    len(suspended),
                    ", ".join(name if n == 1 else f"{name} (x{n})" for name, n in counts.items()),
                )
        results = await tasks.gather(*[agen.aclose() for agen in agens], return_exceptions=True)
        for agen, result in zip(agens, results):
            if isinstance(result, Exception):
                self._count_asyncgen_cleanup_error()
                self.call_exception_handler(
                    {
                        "message": f"an error occurred during closing of asynchronous generator {agen!r}",
                        "exception": result,
                        "asyncgen": agen,
                    }
                )

    # -- executors ----------------------------------------------------------

    def run_in_executor(self, executor, func, *args):
        """Run ``func(*args)`` in ``executor`` (the default thread pool if
        None) and return an asyncio Future for the result."""
        self._check_closed()
        if self.get_debug():
            _check_callback(func, "run_in_executor")
        if executor is None:
            executor = self._default_executor
            if self._executor_shutdown_called:
                raise RuntimeError("Executor shutdown has been called")
            if executor is None:
                executor = concurrent.futures.ThreadPoolExecutor(thread_name_prefix="asyncio")
                self._default_executor = executor
        return futures.wrap_future(executor.submit(func, *args), loop=self)

    def set_default_executor(self, executor):
        if not isinstance(executor, concurrent.futures.ThreadPoolExecutor):
            raise TypeError("executor must be ThreadPoolExecutor instance")
        self._default_executor = executor

    if _compat.SHUTDOWN_EXECUTOR_TAKES_TIMEOUT:

        async def shutdown_default_executor(self, timeout=None):
            """Shut the default executor down, waiting at most ``timeout``
            seconds for its threads."""
            await self._shutdown_default_executor(timeout)

    else:

        async def shutdown_default_executor(self):
            """Shut the default executor down and wait for its threads."""
            await self._shutdown_default_executor(None)

    async def _shutdown_default_executor(self, timeout):
        self._executor_shutdown_called = True
        if self._default_executor is None:
            return
        future = self.create_future()
        thread = threading.Thread(target=self._do_shutdown, args=(future,))
        thread.start()
        if timeout is None:
            try:
                await future
            finally:
                thread.join()
            return
        try:
            async with asyncio.timeout(timeout):
                await future
        except TimeoutError:
            warnings.warn(
                f"The executor did not finishing joining its threads within {timeout} seconds.",
                RuntimeWarning,
                stacklevel=2,
            )
            self._default_executor.shutdown(wait=False)
        else:
            thread.join()

    def _do_shutdown(self, future):
        try:
            self._default_executor.shutdown(wait=True)
            if not self.is_closed():
                self.call_soon_threadsafe(_set_result_unless_cancelled, future, None)
        except Exception as exc:
            if not self.is_closed():
                self.call_soon_threadsafe(_set_exception_unless_cancelled, future, exc)

    # -- error handling -----------------------------------------------------

    def get_exception_handler(self):
        """The custom exception handler, or None if the default is in use."""
        return self._exception_handler

    def set_exception_handler(self, handler):
        """Set ``handler(loop, context)`` as the exception handler (None
        restores the default)."""
        if handler is not None and not callable(handler):
            raise TypeError(f"A callable object or None is expected, got {handler!r}")
        self._exception_handler = handler

    def default_exception_handler(self, context):
        """Log ``context`` (see ``call_exception_handler``) to the asyncio
        logger, with creation tracebacks in debug mode."""
        message = context.get("message") or "Unhandled exception in event loop"
        exception = context.get("exception")
        exc_info = (type(exception), exception, exception.__traceback__) if exception is not None else False
        current = self._current_handle
        if "source_traceback" not in context and current is not None and current._source_traceback:
            context["handle_traceback"] = current._source_traceback
        lines = [message]
        for key in sorted(context):
            if key in ("message", "exception"):
                continue
            value = context[key]
            if key in ("source_traceback", "handle_traceback"):
                what = "Object" if key == "source_traceback" else "Handle"
                frames = "".join(traceback.format_list(value)).rstrip()
                value = f"{what} created at (most recent call last):\n{frames}"
            else:
                value = repr(value)
            lines.append(f"{key}: {value}")
        logger().error("\n".join(lines), exc_info=exc_info)

    def call_exception_handler(self, context):
        """Pass ``context`` to the exception handler. Errors raised by the
        handler are logged, except KeyboardInterrupt and SystemExit."""
        handler = self._exception_handler
        if handler is None:
            try:
                self.default_exception_handler(context)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException:
                logger().error("Exception in default exception handler", exc_info=True)
            return
        try:
            run_in = _handler_context(context) if _compat.HANDLER_RUNS_IN_CONTEXT else None
            if run_in is not None:
                # As asyncio 3.12+: the handler runs in the context of the
                # task, future or handle the report is about.
                run_in.run(handler, self, context)
            else:
                handler(self, context)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            try:
                self.default_exception_handler(
                    {
                        "message": "Unhandled error in exception handler",
                        "exception": exc,
                        "context": context,
                    }
                )
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException:
                logger().error(
                    "Exception in default exception handler while handling an "
                    "unexpected error in custom exception handler",
                    exc_info=True,
                )

    # -- signals ------------------------------------------------------------

    def add_signal_handler(self, sig, callback, *args):
        """Call ``callback(*args)`` on the loop when signal ``sig`` arrives.
        Only possible from the main thread."""
        if coroutines.iscoroutine(callback) or _compat.iscoroutinefunction(callback):
            raise TypeError("coroutines cannot be used with add_signal_handler()")
        self._check_signal(sig)
        self._check_closed()
        try:
            # Raises ValueError outside the main thread: checked before any
            # state changes.
            signal.set_wakeup_fd(self._signal_wakeup_fd())
        except (ValueError, OSError) as exc:
            raise RuntimeError(str(exc))
        self._signal_handlers[sig] = self._new_handle(callback, args)
        self._set_signals_active(True)
        try:
            signal.signal(sig, _noop_signal_handler)
            # Restart interrupted system calls instead of failing with EINTR.
            signal.siginterrupt(sig, False)
        except OSError as exc:
            del self._signal_handlers[sig]
            self._release_wakeup_fd_if_unused()
            if exc.errno == errno.EINVAL:
                raise RuntimeError(f"sig {sig} cannot be caught")
            raise

    def remove_signal_handler(self, sig):
        """Remove the handler of ``sig``; True if there was one."""
        self._check_signal(sig)
        try:
            del self._signal_handlers[sig]
        except KeyError:
            return False
        handler = signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL
        try:
            signal.signal(sig, handler)
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                raise RuntimeError(f"sig {sig} cannot be caught")
            raise
        self._release_wakeup_fd_if_unused()
        return True

    def _release_wakeup_fd_if_unused(self):
        """Stop receiving signal numbers once no handler is left."""
        if self._signal_handlers:
            return
        self._set_signals_active(False)
        try:
            signal.set_wakeup_fd(-1)
        except (ValueError, OSError) as exc:
            logger().info("set_wakeup_fd(-1) failed: %s", exc)

    def _check_signal(self, sig):
        if not isinstance(sig, int):
            raise TypeError(f"sig must be an int, not {sig!r}")
        if sig not in signal.valid_signals():
            raise ValueError(f"invalid signal number {sig}")

    def _handle_signal(self, sig):
        """Called by the native loop for each signal number read from the
        wake-up descriptor."""
        handle = self._signal_handlers.get(sig)
        if handle is None:
            return
        if handle._cancelled:
            self.remove_signal_handler(sig)
        else:
            self._add_callback_signalsafe(handle)

    def _add_callback_signalsafe(self, handle):
        self._add_callback(handle)
        self._write_to_self()


def _handler_context(context):
    """The ``contextvars.Context`` of the object an error report is about."""
    for key in ("task", "future", "handle"):
        thing = context.get(key)
        if thing is not None:
            break
    else:
        return None
    get_context = getattr(thing, "get_context", None)
    ctx = get_context() if get_context is not None else None
    return ctx if ctx is not None and hasattr(ctx, "run") else None


def _set_exception_unless_cancelled(fut, exc):
    if not fut.cancelled():
        fut.set_exception(exc)
