"""What differs between the Python versions and builds ferroloop runs on.

Every difference is a feature probed once, here, on the running asyncio
(signatures, attributes), never a comparison of version numbers: asyncio
changes between patch releases too (``create_task`` took ``**kwargs`` in a
3.13 bug-fix release, not in 3.13.0). The package imports this module first;
no other module looks at ``sys.version_info``.

Each probe says what it detects and where asyncio differs (as of 3.11.7,
3.12.1 and 3.13.0, the versions ferroloop is tested on).
"""

import asyncio
import inspect
import socket
from asyncio import base_events, selector_events, tasks
from collections.abc import Callable, Mapping

__all__ = (
    "CREATE_TASK_TAKES_KWARGS",
    "SHUTDOWN_EXECUTOR_TAKES_TIMEOUT",
    "CREATE_CONNECTION_TAKES_ALL_ERRORS",
    "RUN_TAKES_LOOP_FACTORY",
    "SERVER_ATTACH_TAKES_TRANSPORT",
    "SET_TASK_NAME",
    "HANDLER_RUNS_IN_CONTEXT",
    "C_TASK",
    "HAS_IPV6",
    "DATAGRAM_SENDS_EMPTY",
    "DATAGRAM_HEADER_SIZE",
    "DATAGRAM_SOCK_MUST_BE_DGRAM",
    "ssl",
)


def _parameters(function: Callable[..., object]) -> Mapping[str, inspect.Parameter]:
    return inspect.signature(function).parameters


# ``loop.create_task(coro, **kwargs)`` passes keywords it does not know
# (``eager_start`` and whatever comes next) through to the Task or the task
# factory. False on 3.11, 3.12 and 3.13.0, whose ``create_task(coro, *,
# name=None, context=None)`` the native ``Loop.create_task`` implements; True
# on 3.14 and on later 3.13 bug-fix releases (gh-128307, gh-133745), where
# ``ferroloop.Loop.create_task`` forwards every keyword.
CREATE_TASK_TAKES_KWARGS: bool = any(
    p.kind is inspect.Parameter.VAR_KEYWORD for p in _parameters(asyncio.BaseEventLoop.create_task).values()
)

# ``loop.shutdown_default_executor(timeout=None)``: 3.12 and later; 3.11's
# takes no argument.
SHUTDOWN_EXECUTOR_TAKES_TIMEOUT: bool = "timeout" in _parameters(asyncio.BaseEventLoop.shutdown_default_executor)

# ``loop.create_connection(..., all_errors=False)``: 3.12 and later.
CREATE_CONNECTION_TAKES_ALL_ERRORS: bool = "all_errors" in _parameters(asyncio.BaseEventLoop.create_connection)

# ``asyncio.run(main, *, debug=None, loop_factory=None)``: 3.12 and later;
# on 3.11, ``asyncio.Runner`` is the way to run on a loop of our own.
RUN_TAKES_LOOP_FACTORY: bool = "loop_factory" in _parameters(asyncio.run)

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

# The ``ssl`` module, or None on a Python built without OpenSSL.
try:
    import ssl
except ImportError:  # pragma: no cover - Python built without ssl
    ssl = None  # type: ignore[assignment]
