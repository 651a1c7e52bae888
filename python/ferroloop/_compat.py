"""What differs between the Python versions and builds ferroloop runs on.

Every difference is a feature probed once, here, on the running asyncio
(signatures, attributes; its source where nothing else shows a change of
wording), never a comparison of version numbers: asyncio
changes between patch releases too (``create_task`` took ``**kwargs`` in a
3.13 bug-fix release, not in 3.13.0). The package imports this module first;
no other module looks at ``sys.version_info``.

Each probe says what it detects and where asyncio differs (as of 3.11.7,
3.12.1 and 3.13.0, the versions ferroloop is tested on, and 3.14 as read in
CPython's sources). A few helpers apply a probe where several modules need
it (``keywords_of``, ``bind_error``).
"""

import asyncio
import functools
import hashlib
import inspect
import socket
import textwrap
from asyncio import base_events, coroutines, events, format_helpers, selector_events, streams, tasks, unix_events
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

__all__ = (
    "CREATE_TASK_TAKES_KWARGS",
    "CREATE_TASK_FORWARDS_NAME",
    "SHUTDOWN_EXECUTOR_TAKES_TIMEOUT",
    "keywords_of",
    "UNIX_SERVER_CLEANS_UP",
    "SERVER_BIND_ERROR_IN_FULL",
    "CONNECT_BIND_ERROR_IN_FULL",
    "CREATE_SERVER_SKIPS_UNAVAILABLE",
    "bind_error",
    "RUN_TAKES_LOOP_FACTORY",
    "DEFAULT_POLICY",
    "set_event_loop_policy",
    "SERVER_ATTACH_TAKES_TRANSPORT",
    "SET_TASK_NAME",
    "HANDLER_RUNS_IN_CONTEXT",
    "FORMAT_CALLBACK_TAKES_DEBUG",
    "WRITELINES_TAKES_VIEWS",
    "RUN_UNTIL_COMPLETE_CB",
    "THREADSAFE_HANDLE_WAITS",
    "THREADSAFE_HANDLE_CLASS",
    "iscoroutinefunction",
    "C_TASK",
    "HAS_IPV6",
    "DATAGRAM_SENDS_EMPTY",
    "DATAGRAM_HEADER_SIZE",
    "DATAGRAM_SOCK_MUST_BE_DGRAM",
    "STREAM_FEED",
    "ssl",
)


def _parameters(function: Callable[..., object]) -> Mapping[str, inspect.Parameter]:
    return inspect.signature(function).parameters


def _source(function: Callable[..., object]) -> str:
    """The source of one of asyncio's functions, for the rare difference
    nothing else shows ("" where the sources are not installed)."""
    try:
        return inspect.getsource(function)
    except (OSError, TypeError):  # pragma: no cover - asyncio without sources
        return ""


# How ``loop.create_task`` hands its keywords to the Task or the task factory.
# ``CREATE_TASK_TAKES_KWARGS``: it passes keywords it does not know
# (``eager_start`` and whatever comes next) through. False on 3.11, 3.12 and
# 3.13.0 to 3.13.2, whose ``create_task(coro, *, name=None, context=None)``
# the native ``Loop.create_task`` implements (a factory gets ``context`` if
# given, the task is named afterwards). True on 3.13.3 and later and on 3.14,
# where ``ferroloop.Loop.create_task`` is one of the two forms below.
# ``CREATE_TASK_FORWARDS_NAME``: ``create_task(coro, **kwargs)`` hands every
# keyword, ``name`` and ``context`` included, to ``Task(coro, loop=loop,
# **kwargs)`` or ``factory(loop, coro, **kwargs)`` and names nothing itself
# (3.13.3 and 3.14, gh-128307). False where it takes ``create_task(coro, *,
# name=None, context=None, **kwargs)`` (3.13.4 and later, gh-133745): a
# factory gets the other keywords, plus ``context`` if not None, and the task
# is named with ``set_name(name)`` afterwards.
_CREATE_TASK = _parameters(asyncio.BaseEventLoop.create_task)
CREATE_TASK_TAKES_KWARGS: bool = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in _CREATE_TASK.values())
CREATE_TASK_FORWARDS_NAME: bool = CREATE_TASK_TAKES_KWARGS and "name" not in _CREATE_TASK

# ``loop.shutdown_default_executor(timeout=None)``: 3.12 and later; 3.11's
# takes no argument.
SHUTDOWN_EXECUTOR_TAKES_TIMEOUT: bool = "timeout" in _parameters(asyncio.BaseEventLoop.shutdown_default_executor)


_Method = TypeVar("_Method", bound=Callable[..., Awaitable[Any]])


def keywords_of(reference: Callable[..., object]) -> Callable[[_Method], _Method]:
    """Decorator for a coroutine method that declares every keyword-only
    parameter asyncio's ``reference`` method has on any supported Python
    version: those the running asyncio's lacks are left out of the method's
    signature and refused with the TypeError asyncio raises for them.

    Keywords and the versions that added them: ``create_connection(...,
    all_errors=False)`` (3.12), ``create_server(..., keep_alive=None)`` and
    ``create_unix_server(..., cleanup_socket=True)`` (3.13)."""
    accepted = _parameters(reference)

    def decorate(method: _Method) -> _Method:
        signature = inspect.signature(method)
        kept = [p for p in signature.parameters.values() if p.kind is not p.KEYWORD_ONLY or p.name in accepted]
        absent = [p.name for p in signature.parameters.values() if p not in kept]
        if not absent:
            return method

        @functools.wraps(method)
        async def restricted(*args: Any, **kwargs: Any) -> Any:
            for name in absent:
                if name in kwargs:
                    raise TypeError(f"{method.__qualname__}() got an unexpected keyword argument {name!r}")
            return await method(*args, **kwargs)

        restricted.__signature__ = signature.replace(parameters=kept)  # type: ignore[attr-defined]
        return restricted  # type: ignore[return-value]

    return decorate


# ``create_unix_server(..., cleanup_socket=True)``: closing the server
# removes the socket's file (3.13 and later); before, the file stays.
UNIX_SERVER_CLEANS_UP: bool = "cleanup_socket" in _parameters(asyncio.SelectorEventLoop.create_unix_server)

# How a failed bind is worded by ``create_server`` and by
# ``create_connection(local_addr=)``: "error while attempting to bind on
# address ADDR: " and the error's ``strerror`` (3.11, 3.12), or its whole
# ``str()``, "[errno 98] address already in use" (3.13), lowercased. Nothing
# but the wording changed, so no signature or attribute shows it: asyncio's
# own source is read (without it, the older wording is used).
SERVER_BIND_ERROR_IN_FULL: bool = "str(err).lower()" in _source(base_events.BaseEventLoop.create_server)
CONNECT_BIND_ERROR_IN_FULL: bool = "str(exc).lower()" in _source(
    base_events.BaseEventLoop._connect_sock  # type: ignore[attr-defined]
)


def bind_error(err: OSError, address: object, in_full: bool) -> OSError:
    """The error ``create_server``/``create_connection`` raise for ``err``
    from binding ``address``, worded as the running asyncio words it."""
    detail = str(err) if in_full else (err.strerror or str(err))
    return OSError(err.errno, f"error while attempting to bind on address {address!r}: {detail.lower()}")


# ``create_server`` skips an address whose bind fails with EADDRNOTAVAIL (its
# address family not enabled, bpo-30945) and raises only if it bound none:
# 3.13 and later (same source probe as above).
CREATE_SERVER_SKIPS_UNAVAILABLE: bool = "EADDRNOTAVAIL" in _source(base_events.BaseEventLoop.create_server)

# ``asyncio.run(main, *, debug=None, loop_factory=None)``: 3.12 and later;
# on 3.11, ``asyncio.Runner`` is the way to run on a loop of our own.
RUN_TAKES_LOOP_FACTORY: bool = "loop_factory" in _parameters(asyncio.run)

# Event loop policies are deprecated from 3.14 on (to go in 3.16): asyncio's
# public names for them (``asyncio.DefaultEventLoopPolicy``,
# ``asyncio.set_event_loop_policy``, ...) emit a DeprecationWarning, and
# ``asyncio.get_event_loop()`` no longer creates a loop. asyncio itself keeps
# using the policy behind ``new_event_loop()`` and an ``asyncio.run()``
# without ``loop_factory``, through names that do not warn; ferroloop's
# policy class and ``install()`` use those where they exist.
#
# The default policy class of this platform, reached without a warning:
DEFAULT_POLICY: type = getattr(unix_events, "_DefaultEventLoopPolicy", None) or unix_events.DefaultEventLoopPolicy

# and ``set_event_loop_policy(policy)``, without a warning.
set_event_loop_policy: Callable[[object], None] = getattr(
    events, "_set_event_loop_policy", None
) or asyncio.set_event_loop_policy

# ``asyncio.Server._attach(transport)`` / ``_detach(transport)``: the server
# tracks its transports from 3.13 on (3.13.0 included); 3.11 and 3.12 only
# count them (``_attach()``). Named for the native transports, which call
# these when a connection is made and lost.
SERVER_ATTACH_TAKES_TRANSPORT: bool = len(_parameters(base_events.Server._attach)) > 1  # type: ignore[attr-defined]

# How ``create_task`` names a task made by a task factory:
# ``tasks._set_task_name(task, name)`` where asyncio has it (3.11, 3.12:
# nothing for ``name=None``, a DeprecationWarning for a task without
# ``set_name``); None where it does not (3.13.0, whose ``create_task`` calls
# ``task.set_name(name)`` whatever the name). Read by the native
# ``Loop.create_task``.
SET_TASK_NAME: Callable[[object, object], None] | None = getattr(tasks, "_set_task_name", None)

# ``call_exception_handler`` runs a custom handler in the ``contextvars``
# context of the task, future or handle the report is about (gh-96704),
# which came with ``Task.get_context()``: 3.12 and later. On 3.11 the
# handler runs in the caller's context.
HANDLER_RUNS_IN_CONTEXT: bool = hasattr(asyncio.Task, "get_context")

# ``base_events._run_until_complete_cb``: the done callback asyncio's
# ``run_until_complete`` adds to its future, which ferroloop's adds too, so
# that the future's repr (``cb=[_run_until_complete_cb() at ...]``, shown in
# errors about it) is asyncio's. Every supported version has it; None if a
# later one drops it (the loop then uses a callback of its own).
RUN_UNTIL_COMPLETE_CB: Callable[[Any], None] | None = getattr(base_events, "_run_until_complete_cb", None)

# The stream transport's ``writelines`` is its own (3.12 and later, with
# ``sendmsg``): it refuses after ``write_eof()`` with its own message, does
# nothing for a falsy argument, and takes ``memoryview(item)`` of each item
# (so wrong items fail as ``memoryview`` fails). Before, it is
# ``WriteTransport.writelines``: ``write(b"".join(list_of_data))``. Read by
# the native stream transport's ``writelines``.
WRITELINES_TAKES_VIEWS: bool = "writelines" in vars(selector_events._SelectorSocketTransport)

# ``format_helpers._format_callback_source(func, args, *, debug=False)``
# shows a callback's arguments only with ``debug=True``, which asyncio's
# handles pass as their loop's debug mode (3.13 and later, gh-112730's
# follow-up; arguments may hold secrets). Before, it takes ``(func, args)``
# and always shows them. Read by ``_hooks.format_callback``.
FORMAT_CALLBACK_TAKES_DEBUG: bool = "debug" in _parameters(format_helpers._format_callback_source)

# ``call_soon_threadsafe`` returns a ``_ThreadSafeHandle``, whose
# ``cancel()`` (and ``cancelled()``) from another thread waits for a callback
# that is already running (3.14 and later). Read by the native
# ``Loop.call_soon_threadsafe``, which otherwise returns a plain ``Handle``.
THREADSAFE_HANDLE_WAITS: bool = hasattr(events, "_ThreadSafeHandle")

# The class ``call_soon_threadsafe``'s handles are instances of on asyncio:
# ``_ThreadSafeHandle`` where it exists, else ``Handle``.
THREADSAFE_HANDLE_CLASS: type = getattr(events, "_ThreadSafeHandle", events.Handle)

# asyncio's test for a coroutine function (``inspect``'s, or a function
# carrying asyncio's old ``_is_coroutine`` mark), by the name that does not
# warn: ``asyncio.iscoroutinefunction`` is deprecated from 3.14 on, where
# asyncio itself calls ``coroutines._iscoroutinefunction``.
iscoroutinefunction: Callable[[object], bool] = (
    getattr(coroutines, "_iscoroutinefunction", None) or coroutines.iscoroutinefunction
)

# asyncio's C ``Task`` (``_asyncio``), or None on a build without the
# accelerator module. Every Python ferroloop supports has it on CPython.
C_TASK: type | None = getattr(tasks, "_CTask", None)

# IPv6 sockets: absent on a platform built without them.
HAS_IPV6: bool = hasattr(socket, "AF_INET6")


def _probe_datagram_sendto() -> tuple[bool, int]:
    """How asyncio's datagram transport treats ``sendto``: whether an empty
    datagram is sent (3.13 and later; 3.11 and 3.12 drop it), and how many
    bytes each queued datagram counts on top of its payload (an 8-byte
    header on 3.13 and later, nothing before). Found by queueing datagrams
    on ``_SelectorDatagramTransport`` over a stand-in loop and socket that
    would block."""
    sent = []

    class StandInLoop:
        _transports: dict[int, object] = {}

        def call_soon(self, *args, **kwargs):
            pass

        def _add_writer(self, *args):
            pass

        def get_debug(self):
            return False

    class StandInSocket:
        def fileno(self):
            return -1

        def getsockname(self):
            return ("0.0.0.0", 0)

        def getpeername(self):
            raise OSError("not connected")

        def sendto(self, data, addr):
            sent.append(data)
            raise BlockingIOError

        send = sendto

    transport = None
    try:
        transport = selector_events._SelectorDatagramTransport(  # type: ignore[attr-defined]
            StandInLoop(), StandInSocket(), asyncio.DatagramProtocol()
        )
        address = ("0.0.0.0", 9)
        transport.sendto(b"", address)
        sends_empty = bool(sent)
        transport.sendto(b"x", address)
        queued = 2 if sends_empty else 1
        return sends_empty, (transport.get_write_buffer_size() - 1) // queued
    except Exception:  # pragma: no cover - an asyncio this probe does not know
        return True, 8
    finally:
        if transport is not None:
            # Not a real socket: nothing to close or warn about.
            transport._sock = None


# ``DatagramTransport.sendto(b"")`` sends an empty datagram (3.13 and
# later); on 3.11 and 3.12 it does nothing. ``DATAGRAM_HEADER_SIZE``: what
# each queued datagram counts for write flow control beyond its payload (8
# on 3.13 and later, 0 before). 3.13.0 adds it when queueing but does not
# subtract it when the datagram is sent (gh-135444, fixed in a later
# release); ferroloop counts it both ways.
DATAGRAM_SENDS_EMPTY, DATAGRAM_HEADER_SIZE = _probe_datagram_sendto()


def _probe_datagram_sock_check() -> bool:
    """Whether ``create_datagram_endpoint(sock=...)`` refuses every socket
    that is not ``SOCK_DGRAM`` ('A UDP Socket was expected', 3.11 and 3.12)
    rather than only ``SOCK_STREAM`` ones ('A datagram socket was
    expected', 3.13 and later). The check comes before anything touches the
    loop, so a socket stand-in of another type, with a socket modifier that
    the next check refuses, tells the two apart."""

    class RawSocket:
        type = socket.SOCK_RAW

    coro = base_events.BaseEventLoop.create_datagram_endpoint(None, None, sock=RawSocket(), family=1)  # type: ignore[arg-type]
    try:
        coro.send(None)
    except ValueError as exc:
        return not str(exc).startswith("socket modifier")
    except Exception:  # pragma: no cover - an asyncio this probe does not know
        return False
    finally:
        coro.close()
    return False  # pragma: no cover


# ``create_datagram_endpoint(sock=...)`` takes only ``SOCK_DGRAM`` sockets
# (3.11, 3.12) or any socket but a ``SOCK_STREAM`` one (3.13 and later).
DATAGRAM_SOCK_MUST_BE_DGRAM: bool = _probe_datagram_sock_check()

# What the stream transports carry out natively for asyncio's streams
# (``transports/feed.rs``): ``StreamReaderProtocol.data_received`` with what
# it calls, ``StreamReader.feed_data`` and ``_wakeup_waiter`` (get the
# reader through the protocol's weak reference; refuse data after EOF;
# ignore empty data; append to the buffer; wake the waiter unless it was
# cancelled; pause the transport above twice the limit). The native code
# follows those functions as they are in 3.11.7, 3.12.1 and 3.13.0, which
# have the same source, so the probe is that source: its SHA-256 digest.
# Where asyncio's differs, or cannot be read, the native path is off and
# every read calls ``data_received``.
_STREAM_FEED_DIGEST = "5eca3c883b53553e22c258d2759e5978f02a0146fb0579de4d6f602c465aebd2"


def _probe_stream_feed() -> tuple[Any, ...] | None:
    """``(StreamReaderProtocol, StreamReader, data_received, _stream_reader
    getter, feed_data, _wakeup_waiter)``, asyncio's classes and functions as
    they are now, if their source is the one the native code follows (see
    ``_STREAM_FEED_DIGEST``); None otherwise. The native code checks that a
    protocol's methods are still these functions before it carries them
    out."""
    protocol, reader = streams.StreamReaderProtocol, streams.StreamReader
    stream_reader = vars(protocol).get("_stream_reader")
    if not isinstance(stream_reader, property):  # pragma: no cover - another asyncio
        return None
    functions = (protocol.data_received, stream_reader.fget, reader.feed_data, reader._wakeup_waiter)
    source = "".join(textwrap.dedent(_source(f)) for f in functions)
    if hashlib.sha256(source.encode()).hexdigest() != _STREAM_FEED_DIGEST:  # pragma: no cover - another asyncio
        return None
    return (protocol, reader, *functions)


# Read by the native stream and read-pipe transports (``transports/feed.rs``).
STREAM_FEED: tuple[Any, ...] | None = _probe_stream_feed()

# The ``ssl`` module, or None on a Python built without OpenSSL.
try:
    import ssl
except ImportError:  # pragma: no cover - Python built without ssl
    ssl = None  # type: ignore[assignment]
