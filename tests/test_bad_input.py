"""Bad input: every public method of the loop, of its transports (stream,
pipes, TLS) and of its servers, called with wrong types, out-of-range
numbers, closed sockets and other loops' objects.

Each case runs on ferroloop and on stdlib asyncio, each in a fresh
environment; both must end the same way: the same exception type, with the
same message unless the case says why asyncio's is not stable (or ferroloop
differs on purpose), or the same kind of result. Never a ``SystemError``
or a Rust ``PanicException``; and the loop still runs afterwards.
"""

import asyncio
import concurrent.futures
import gc
import os
import re
import signal
import socket
import ssl
import tempfile

import pytest

import ferroloop
from conftest import LOOP_FACTORIES, tls_contexts

HUNG = 10

# A message that differs between the loops because it names their own
# classes, methods or objects, is compared with these blanked out.
_NORMALIZE = [
    (re.compile(r"0x[0-9a-f]+"), "0x?"),
    (re.compile(r"\bfd=\d+"), "fd=?"),
    (re.compile(r"\bTask-\d+"), "Task-?"),
    (re.compile(r"<_UnixSelectorEventLoop\b|<Loop\b"), "<Loop"),
    # "BaseEventLoop.call_soon() got an unexpected keyword argument": the
    # class that implements the method.
    (re.compile(r"\b(?:[A-Za-z_]\w*\.)+(?=[A-Za-z_]\w*\(\))"), ""),
]


def _normalize(text):
    for pattern, replacement in _NORMALIZE:
        text = pattern.sub(replacement, text)
    return text


class Env:
    """The objects a case is called on, made on demand for one loop, closed
    at the end."""

    def __init__(self, loop):
        self.loop = loop
        self._closers = []

    def _later(self, closer):
        self._closers.append(closer)

    def close(self):
        for closer in reversed(self._closers):
            try:
                closer()
            except Exception:
                pass

    def run(self, coro):
        return self.loop.run_until_complete(asyncio.wait_for(coro, HUNG))

    # -- sockets and files ------------------------------------------------------

    def pair(self):
        a, b = socket.socketpair()
        a.setblocking(False)
        b.setblocking(False)
        self._later(a.close)
        self._later(b.close)
        return a, b

    def sock(self):
        return self.pair()[0]

    def blocking_sock(self):
        a, b = socket.socketpair()
        self._later(a.close)
        self._later(b.close)
        return a

    def closed_sock(self):
        s = socket.socket()
        s.close()
        return s

    def tcp_sock(self):
        s = socket.socket()
        s.setblocking(False)
        self._later(s.close)
        return s

    def udp_sock(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setblocking(False)
        self._later(s.close)
        return s

    def listening_sock(self):
        s = self.tcp_sock()
        s.bind(("127.0.0.1", 0))
        s.listen()
        return s

    def ssl_sock(self):
        ctx = ssl.create_default_context()
        s = ctx.wrap_socket(socket.socket(), server_hostname="x", do_handshake_on_connect=False)
        self._later(s.close)
        return s

    def regular_file(self):
        f = tempfile.TemporaryFile()
        f.write(b"0123456789")
        f.seek(0)
        self._later(f.close)
        return f

    def text_file(self):
        f = tempfile.TemporaryFile("w+")
        f.write("text")
        f.seek(0)
        self._later(f.close)
        return f

    def pipe_ends(self):
        r, w = os.pipe()
        rf, wf = os.fdopen(r, "rb", 0), os.fdopen(w, "wb", 0)
        self._later(rf.close)
        self._later(wf.close)
        return rf, wf

    # -- transports and servers ---------------------------------------------------

    def transport(self):
        a, b = self.pair()
        transport, _ = self.run(self.loop.connect_accepted_socket(asyncio.Protocol, a))
        self._later(transport.abort)
        return transport

    def closed_transport(self):
        transport = self.transport()
        transport.close()
        self.run(asyncio.sleep(0))
        return transport

    def read_pipe_transport(self):
        rf, _wf = self.pipe_ends()
        transport, _ = self.run(self.loop.connect_read_pipe(asyncio.Protocol, rf))
        self._later(transport.close)
        return transport

    def write_pipe_transport(self):
        _rf, wf = self.pipe_ends()
        transport, _ = self.run(self.loop.connect_write_pipe(asyncio.Protocol, wf))
        self._later(transport.abort)
        return transport

    @staticmethod
    def contexts():
        return tls_contexts()

    def server(self):
        server = self.run(self.loop.create_server(asyncio.Protocol, "127.0.0.1", 0))
        self._later(lambda: self.run(self._close_server(server)))
        return server

    async def _close_server(self, server):
        server.close()
        await server.wait_closed()

    def tls_transport(self):
        server_ctx, client_ctx = self.contexts()
        server = self.run(self.loop.create_server(asyncio.Protocol, "127.0.0.1", 0, ssl=server_ctx))
        self._later(lambda: self.run(self._close_server(server)))
        port = server.sockets[0].getsockname()[1]
        transport, _ = self.run(
            self.loop.create_connection(asyncio.Protocol, "127.0.0.1", port, ssl=client_ctx, server_hostname="localhost")
        )
        self._later(transport.abort)
        return transport

    # -- other loops' objects --------------------------------------------------------

    def other_loop(self):
        other = asyncio.SelectorEventLoop()
        self._later(other.close)
        return other

    def other_future(self):
        return self.other_loop().create_future()

    def coroutine(self):
        async def nothing():
            pass

        coro = nothing()
        self._later(coro.close)
        return coro


def _outcome(env, call):
    """How ``call(env)`` ended: ``("raises", type name, message)`` or
    ``("returns", type name of the result)``. A coroutine or future it
    returns is run to its end first."""
    try:
        result = call(env)
        if asyncio.iscoroutine(result) or asyncio.isfuture(result):
            result = env.loop.run_until_complete(asyncio.wait_for(result, HUNG))
    except BaseException as exc:
        return ("raises", type(exc).__name__, _normalize(str(exc)))
    return ("returns", type(result).__name__)


class Case:
    """``call(env)`` does the bad call. ``message``: compare messages (True),
    or why not (a string). ``differs``: a deliberate difference, as
    ``(reason, ferroloop's outcome)``; asyncio's is not compared."""

    def __init__(self, name, call, message=True, debug=False, differs=None, closed=False):
        self.name = name
        self.call = call
        self.message = message
        self.debug = debug
        self.differs = differs
        # Called on a closed loop (which then stays closed).
        self.closed = closed

    def __repr__(self):
        return self.name


def _cases():
    cases = []
    add = lambda name, call, **kw: cases.append(Case(name, call, **kw))  # noqa: E731
    nan, inf = float("nan"), float("inf")
    # Messages that differ on arity: asyncio names its own classes.
    arity = "names the implementing class"

    # -- scheduling ------------------------------------------------------------
    # asyncio's call_at takes any deadline and fails later, inside the loop,
    # on every turn from then on (comparing it with the others' deadlines or
    # the clock); ferroloop's timer heap holds floats, so it refuses at once.
    refused_at_once = "asyncio's call_at accepts it, then every run of the loop fails"
    for what, value in [("str", "1"), ("object", object()), ("bytes", b"1"), ("list", [1])]:
        add(f"call_later delay {what}", lambda e, v=value: e.loop.call_later(v, print))
        expected = ("raises", "TypeError", f"must be real number, not {type(value).__name__}")
        add(
            f"call_at when {what}",
            lambda e, v=value: e.loop.call_at(v, print),
            differs=(refused_at_once, expected),
        )
    add("call_later delay None", lambda e: e.loop.call_later(None, print))
    add("call_at when None", lambda e: e.loop.call_at(None, print))
    add("call_later delay Decimal", lambda e: e.loop.call_later(__import__("decimal").Decimal(1), print))
    add("call_later delay bool", lambda e: e.loop.call_later(True, print).cancel())
    add("call_later huge int delay", lambda e: e.loop.call_later(2**80, print).cancel())
    add("call_later inf", lambda e: e.loop.call_later(inf, print).cancel())
    add("call_later -inf", lambda e: e.loop.call_later(-inf, print).cancel())
    add("call_later nan", lambda e: e.loop.call_later(nan, print).cancel())
    add("call_at inf", lambda e: e.loop.call_at(inf, print).cancel())
    add("call_at 1e308 * 10", lambda e: e.loop.call_at(1e308 * 10, print).cancel())
    for method in ("call_soon", "call_soon_threadsafe"):
        add(f"{method} no callback", lambda e, m=method: getattr(e.loop, m)(), message=arity)
        add(f"{method} context str", lambda e, m=method: getattr(e.loop, m)(print, context="x").cancel())
        add(f"{method} unknown keyword", lambda e, m=method: getattr(e.loop, m)(print, when=1))
        add(f"{method} non-callable (debug)", lambda e, m=method: getattr(e.loop, m)(1), debug=True)
        add(
            f"{method} coroutine function (debug)",
            lambda e, m=method: getattr(e.loop, m)(asyncio.sleep),
            debug=True,
        )
    add("call_later non-callable (debug)", lambda e: e.loop.call_later(1, 1), debug=True)
    add("call_at coroutine (debug)", lambda e: e.loop.call_at(1, e.coroutine()), debug=True)
    add("call_later missing callback", lambda e: e.loop.call_later(1), message=arity)
    add("call_later callback keyword and args", lambda e: e.loop.call_later(1, print, callback=print))

    # -- running -----------------------------------------------------------------
    for what, value in [("None", None), ("int", 1), ("str", "x"), ("generator", (i for i in ()))]:
        add(f"run_until_complete {what}", lambda e, v=value: e.loop.run_until_complete(v))
    add(
        "run_until_complete other loop's future",
        lambda e: e.loop.run_until_complete(e.other_future()),
    )
    add("run_forever with argument", lambda e: e.loop.run_forever(1), message=arity)
    add("stop with argument", lambda e: e.loop.stop(1), message=arity)
    add("time with argument", lambda e: e.loop.time(1), message=arity)

    # -- futures and tasks ---------------------------------------------------------
    for what, value in [("None", None), ("int", 1), ("future", "future"), ("generator", (i for i in ()))]:
        add(
            f"create_task {what}",
            lambda e, v=value: e.loop.create_task(e.loop.create_future() if v == "future" else v),
        )
    add("create_task name int", lambda e: e.loop.create_task(e.coroutine(), name=1))
    # Not run: a task with such a context cannot take a step, on either loop.
    add("create_task context str", lambda e: [e.loop.create_task(e.coroutine(), context="x").cancel()])
    add("create_task unknown keyword", lambda e: e.loop.create_task(e.coroutine(), when=1))
    add("create_future with argument", lambda e: e.loop.create_future(1), message=arity)
    add("set_task_factory int", lambda e: e.loop.set_task_factory(1))
    add("set_task_factory missing", lambda e: e.loop.set_task_factory(), message=arity)

    async def await_foreign(e):
        await e.other_future()

    add("task awaits other loop's future", lambda e: await_foreign(e))

    # -- exception handler and debug --------------------------------------------------
    add("set_exception_handler int", lambda e: e.loop.set_exception_handler(1))
    add("default_exception_handler str", lambda e: e.loop.default_exception_handler("x"))
    add("default_exception_handler empty", lambda e: e.loop.default_exception_handler({}), message=True)
    add("set_debug str", lambda e: e.loop.set_debug("x"))
    add("set_debug missing", lambda e: e.loop.set_debug(), message=arity)
    add(
        "slow_callback_duration str",
        lambda e: setattr(e.loop, "slow_callback_duration", "x"),
        differs=(
            "asyncio's is a plain attribute that takes anything (debug mode then fails comparing it); "
            "ferroloop's holds a float",
            ("raises", "TypeError", "must be real number, not str"),
        ),
    )

    # -- executors ----------------------------------------------------------------------
    add("set_default_executor int", lambda e: e.loop.set_default_executor(1))
    add("set_default_executor process pool", lambda e: e.loop.set_default_executor(concurrent.futures.Executor()))
    add("run_in_executor non-callable", lambda e: e.loop.run_in_executor(None, 1))
    add("run_in_executor non-callable (debug)", lambda e: e.loop.run_in_executor(None, 1), debug=True)
    add("run_in_executor bad executor", lambda e: e.loop.run_in_executor(1, print))

    # -- readers and writers -----------------------------------------------------------
    for method in ("add_reader", "add_writer"):
        add(f"{method} negative fd", lambda e, m=method: getattr(e.loop, m)(-1, print))
        add(f"{method} str fd", lambda e, m=method: getattr(e.loop, m)("x", print))
        add(f"{method} float fd", lambda e, m=method: getattr(e.loop, m)(1.5, print))
        add(f"{method} closed socket", lambda e, m=method: getattr(e.loop, m)(e.closed_sock(), print))
        add(f"{method} huge fd", lambda e, m=method: getattr(e.loop, m)(2**40, print))
        add(f"{method} unused fd", lambda e, m=method: getattr(e.loop, m)(2**20, print))
        add(f"{method} missing callback", lambda e, m=method: getattr(e.loop, m)(e.sock()), message=arity)
    for method in ("remove_reader", "remove_writer"):
        add(f"{method} negative fd", lambda e, m=method: getattr(e.loop, m)(-1))
        add(f"{method} str fd", lambda e, m=method: getattr(e.loop, m)("x"))
        add(f"{method} closed socket", lambda e, m=method: getattr(e.loop, m)(e.closed_sock()))
        add(f"{method} unregistered", lambda e, m=method: getattr(e.loop, m)(e.sock()))
        add(f"{method} huge fd", lambda e, m=method: getattr(e.loop, m)(2**40))

    # -- sock_* -----------------------------------------------------------------------------
    add("sock_recv int socket", lambda e: e.loop.sock_recv(1, 10))
    add("sock_recv closed socket", lambda e: e.loop.sock_recv(e.closed_sock(), 10))
    add("sock_recv negative size", lambda e: e.loop.sock_recv(e.sock(), -1))
    add("sock_recv str size", lambda e: e.loop.sock_recv(e.sock(), "x"))
    add("sock_recv huge size", lambda e: e.loop.sock_recv(e.sock(), 2**64))
    add("sock_recv blocking (debug)", lambda e: e.loop.sock_recv(e.blocking_sock(), 10), debug=True)
    add("sock_recv ssl socket", lambda e: e.loop.sock_recv(e.ssl_sock(), 10))
    add("sock_recv_into read-only buffer", lambda e: e.loop.sock_recv_into(e.sock(), b"ro"))
    add("sock_recv_into int", lambda e: e.loop.sock_recv_into(e.sock(), 1))
    add("sock_recv_into closed socket", lambda e: e.loop.sock_recv_into(e.closed_sock(), bytearray(4)))
    add("sock_sendall int", lambda e: e.loop.sock_sendall(e.sock(), 1))
    add("sock_sendall str", lambda e: e.loop.sock_sendall(e.sock(), "text"))
    add("sock_sendall closed socket", lambda e: e.loop.sock_sendall(e.closed_sock(), b"x"))
    add("sock_sendall int socket", lambda e: e.loop.sock_sendall(1, b"x"))
    add("sock_sendall unconnected", lambda e: e.loop.sock_sendall(e.tcp_sock(), b"x"))
    add("sock_sendto bad address", lambda e: e.loop.sock_sendto(e.udp_sock(), b"x", "nowhere"))
    add("sock_sendto port out of range", lambda e: e.loop.sock_sendto(e.udp_sock(), b"x", ("127.0.0.1", 70000)))
    add("sock_recvfrom negative size", lambda e: e.loop.sock_recvfrom(e.udp_sock(), -1))
    add("sock_recvfrom_into negative size", lambda e: e.loop.sock_recvfrom_into(e.udp_sock(), bytearray(4), -1))
    add("sock_recvfrom_into too large", lambda e: e.loop.sock_recvfrom_into(e.udp_sock(), bytearray(4), 10))
    add(
        "sock_connect bad address",
        lambda e: e.loop.sock_connect(e.tcp_sock(), "nowhere"),
        message="both name a private helper that the string was unpacked into as an address",
    )
    add("sock_connect port out of range", lambda e: e.loop.sock_connect(e.tcp_sock(), ("127.0.0.1", 70000)))
    add("sock_connect negative port", lambda e: e.loop.sock_connect(e.tcp_sock(), ("127.0.0.1", -1)))
    add("sock_connect closed socket", lambda e: e.loop.sock_connect(e.closed_sock(), ("127.0.0.1", 1)))
    add("sock_connect refused", lambda e: e.loop.sock_connect(e.tcp_sock(), ("127.0.0.1", 1)))
    add("sock_accept unbound", lambda e: e.loop.sock_accept(e.tcp_sock()))
    add("sock_accept closed socket", lambda e: e.loop.sock_accept(e.closed_sock()))
    add("sock_accept udp socket", lambda e: e.loop.sock_accept(e.udp_sock()))
    add("sock_sendfile text file", lambda e: e.loop.sock_sendfile(e.sock(), e.text_file()))
    add("sock_sendfile negative offset", lambda e: e.loop.sock_sendfile(e.sock(), e.regular_file(), -1))
    add("sock_sendfile zero count", lambda e: e.loop.sock_sendfile(e.sock(), e.regular_file(), 0, 0))
    add("sock_sendfile str count", lambda e: e.loop.sock_sendfile(e.sock(), e.regular_file(), 0, "x"))
    add("sock_sendfile udp socket", lambda e: e.loop.sock_sendfile(e.udp_sock(), e.regular_file()))

    # -- DNS -----------------------------------------------------------------------------------
    add("getaddrinfo int host", lambda e: e.loop.getaddrinfo(1, 80))
    add("getaddrinfo port out of range", lambda e: e.loop.getaddrinfo("127.0.0.1", 70000))
    add("getaddrinfo bad family", lambda e: e.loop.getaddrinfo("127.0.0.1", 80, family="x"))
    add("getnameinfo int", lambda e: e.loop.getnameinfo(1))
    add("getnameinfo short tuple", lambda e: e.loop.getnameinfo(("127.0.0.1",)))

    # -- connections and servers ------------------------------------------------------------------
    add("create_connection port out of range", lambda e: e.loop.create_connection(asyncio.Protocol, "127.0.0.1", 70000))
    add("create_connection host and sock", lambda e: e.loop.create_connection(asyncio.Protocol, "127.0.0.1", 1, sock=e.sock()))
    add("create_connection nothing", lambda e: e.loop.create_connection(asyncio.Protocol))
    add("create_connection int sock", lambda e: e.loop.create_connection(asyncio.Protocol, sock=1))
    add("create_connection udp sock", lambda e: e.loop.create_connection(asyncio.Protocol, sock=e.udp_sock()))
    add("create_connection closed sock", lambda e: e.loop.create_connection(asyncio.Protocol, sock=e.closed_sock()))
    add("create_connection ssl str", lambda e: e.loop.create_connection(asyncio.Protocol, "127.0.0.1", 1, ssl="x"))
    add(
        "create_connection server_hostname without ssl",
        lambda e: e.loop.create_connection(asyncio.Protocol, "127.0.0.1", 1, server_hostname="x"),
    )
    add(
        "create_connection negative handshake timeout",
        lambda e: e.loop.create_connection(asyncio.Protocol, "127.0.0.1", 1, ssl=True, ssl_handshake_timeout=-1),
    )
    add(
        "create_connection handshake timeout without ssl",
        lambda e: e.loop.create_connection(asyncio.Protocol, "127.0.0.1", 1, ssl_handshake_timeout=1),
    )
    add("create_connection refused", lambda e: e.loop.create_connection(asyncio.Protocol, "127.0.0.1", 1))
    add(
        "create_connection bad local_addr",
        lambda e: e.loop.create_connection(asyncio.Protocol, "127.0.0.1", 1, local_addr="x"),
    )
    add("create_connection unknown keyword", lambda e: e.loop.create_connection(asyncio.Protocol, "h", 1, when=1))
    add("create_server port out of range", lambda e: e.loop.create_server(asyncio.Protocol, "127.0.0.1", 70000))
    add("create_server udp sock", lambda e: e.loop.create_server(asyncio.Protocol, sock=e.udp_sock()))
    add("create_server host and sock", lambda e: e.loop.create_server(asyncio.Protocol, "127.0.0.1", sock=e.sock()))
    add("create_server int sock", lambda e: e.loop.create_server(asyncio.Protocol, sock=1))
    add("create_server ssl str", lambda e: e.loop.create_server(asyncio.Protocol, "127.0.0.1", 0, ssl="x"))
    add("create_server str backlog", lambda e: e.loop.create_server(asyncio.Protocol, "127.0.0.1", 0, backlog="x"))
    add(
        "create_server handshake timeout without ssl",
        lambda e: e.loop.create_server(asyncio.Protocol, "127.0.0.1", 0, ssl_handshake_timeout=1),
    )
    add("create_unix_connection int path", lambda e: e.loop.create_unix_connection(asyncio.Protocol, 1))
    add("create_unix_connection path too long", lambda e: e.loop.create_unix_connection(asyncio.Protocol, "x" * 200))
    add("create_unix_connection missing", lambda e: e.loop.create_unix_connection(asyncio.Protocol, "/nonexistent/x"))
    add("create_unix_connection tcp sock", lambda e: e.loop.create_unix_connection(asyncio.Protocol, sock=e.tcp_sock()))
    add("create_unix_server int path", lambda e: e.loop.create_unix_server(asyncio.Protocol, 1))
    add("create_unix_server path too long", lambda e: e.loop.create_unix_server(asyncio.Protocol, "x" * 200))
    add("create_unix_server tcp sock", lambda e: e.loop.create_unix_server(asyncio.Protocol, sock=e.tcp_sock()))
    add("create_unix_server nothing", lambda e: e.loop.create_unix_server(asyncio.Protocol))
    add("connect_accepted_socket int", lambda e: e.loop.connect_accepted_socket(asyncio.Protocol, 1))
    add("connect_accepted_socket udp", lambda e: e.loop.connect_accepted_socket(asyncio.Protocol, e.udp_sock()))
    add(
        "connect_accepted_socket closed",
        lambda e: e.loop.connect_accepted_socket(asyncio.Protocol, e.closed_sock()),
    )
    add(
        "connect_accepted_socket handshake timeout without ssl",
        lambda e: e.loop.connect_accepted_socket(asyncio.Protocol, e.sock(), ssl_handshake_timeout=1),
    )
    add("start_tls int transport", lambda e: e.loop.start_tls(1, asyncio.Protocol(), e.contexts()[1]))
    add("start_tls str context", lambda e: e.loop.start_tls(e.transport(), asyncio.Protocol(), "x"))
    add("sendfile text file", lambda e: e.loop.sendfile(e.transport(), e.text_file()))
    add("sendfile negative offset", lambda e: e.loop.sendfile(e.transport(), e.regular_file(), -1))
    add("sendfile zero count", lambda e: e.loop.sendfile(e.transport(), e.regular_file(), 0, 0))
    add("sendfile closed transport", lambda e: e.loop.sendfile(e.closed_transport(), e.regular_file()))
    add("sendfile int transport", lambda e: e.loop.sendfile(1, e.regular_file()))

    # -- pipes and processes ---------------------------------------------------------------------
    add("connect_read_pipe int", lambda e: e.loop.connect_read_pipe(asyncio.Protocol, 1))
    add("connect_read_pipe regular file", lambda e: e.loop.connect_read_pipe(asyncio.Protocol, e.regular_file()))
    add("connect_write_pipe regular file", lambda e: e.loop.connect_write_pipe(asyncio.Protocol, e.regular_file()))
    add("connect_write_pipe int", lambda e: e.loop.connect_write_pipe(asyncio.Protocol, 1))

    def closed_pipe(e):
        rf, _ = e.pipe_ends()
        rf.close()
        return rf

    add("connect_read_pipe closed", lambda e: e.loop.connect_read_pipe(asyncio.Protocol, closed_pipe(e)))
    add("subprocess_exec int program", lambda e: e.loop.subprocess_exec(asyncio.SubprocessProtocol, 1))
    add("subprocess_exec missing program", lambda e: e.loop.subprocess_exec(asyncio.SubprocessProtocol, "/nonexistent"))
    add(
        "subprocess_exec universal_newlines",
        lambda e: e.loop.subprocess_exec(asyncio.SubprocessProtocol, "true", universal_newlines=True),
    )
    add("subprocess_exec shell", lambda e: e.loop.subprocess_exec(asyncio.SubprocessProtocol, "true", shell=True))
    add("subprocess_exec bufsize", lambda e: e.loop.subprocess_exec(asyncio.SubprocessProtocol, "true", bufsize=1))
    add("subprocess_exec text", lambda e: e.loop.subprocess_exec(asyncio.SubprocessProtocol, "true", text=True))
    add("subprocess_shell int", lambda e: e.loop.subprocess_shell(asyncio.SubprocessProtocol, 1))
    add("subprocess_shell shell False", lambda e: e.loop.subprocess_shell(asyncio.SubprocessProtocol, "true", shell=False))
    add("subprocess_shell stdin str", lambda e: e.loop.subprocess_shell(asyncio.SubprocessProtocol, "true", stdin="x"))

    # -- signals -----------------------------------------------------------------------------------
    add("add_signal_handler str", lambda e: e.loop.add_signal_handler("x", print))
    add("add_signal_handler out of range", lambda e: e.loop.add_signal_handler(1000, print))
    add("add_signal_handler SIGKILL", lambda e: e.loop.add_signal_handler(signal.SIGKILL, print))
    add("add_signal_handler coroutine function", lambda e: e.loop.add_signal_handler(signal.SIGUSR1, asyncio.sleep))
    add("remove_signal_handler str", lambda e: e.loop.remove_signal_handler("x"))
    add("remove_signal_handler out of range", lambda e: e.loop.remove_signal_handler(-5))
    add("remove_signal_handler not set", lambda e: e.loop.remove_signal_handler(signal.SIGUSR2))

    # -- transports ----------------------------------------------------------------------------------
    kinds = {
        "stream": Env.transport,
        "write pipe": Env.write_pipe_transport,
        "tls": Env.tls_transport,
    }
    for kind, make in kinds.items():
        add(f"{kind} write int", lambda e, m=make: m(e).write(1))
        add(f"{kind} write str", lambda e, m=make: m(e).write("text"))
        add(f"{kind} writelines int", lambda e, m=make: m(e).writelines(1))
        add(f"{kind} writelines of ints", lambda e, m=make: m(e).writelines([1, 2]))
        add(f"{kind} set_write_buffer_limits negative", lambda e, m=make: m(e).set_write_buffer_limits(high=-1))
        add(f"{kind} set_write_buffer_limits low above high", lambda e, m=make: m(e).set_write_buffer_limits(1, 2))
        add(f"{kind} set_write_buffer_limits str", lambda e, m=make: m(e).set_write_buffer_limits("x"))
        add(f"{kind} set_write_buffer_limits huge", lambda e, m=make: m(e).set_write_buffer_limits(2**70))
        add(f"{kind} set_write_buffer_limits float", lambda e, m=make: m(e).set_write_buffer_limits(1.5))
        add(f"{kind} set_write_buffer_limits low str", lambda e, m=make: m(e).set_write_buffer_limits(low="x"))
        add(f"{kind} set_write_buffer_limits nan", lambda e, m=make: m(e).set_write_buffer_limits(float("nan")))
        add(f"{kind} get_extra_info int", lambda e, m=make: m(e).get_extra_info(1))
        add(f"{kind} write_eof then write", lambda e, m=make: (lambda t: (t.write_eof(), t.write(b"x")))(m(e)))
        add(
            f"{kind} write_eof then writelines",
            lambda e, m=make: (lambda t: (t.write_eof(), t.writelines([b"x"])))(m(e)),
        )
        add(f"{kind} writelines zero", lambda e, m=make: m(e).writelines(0))
    for kind, make in {"stream": Env.transport, "read pipe": Env.read_pipe_transport, "tls": Env.tls_transport}.items():
        add(f"{kind} pause_reading twice", lambda e, m=make: (lambda t: (t.pause_reading(), t.pause_reading()))(m(e)))
        add(f"{kind} resume_reading unpaused", lambda e, m=make: m(e).resume_reading())
        add(f"{kind} close twice", lambda e, m=make: (lambda t: (t.close(), t.close()))(m(e)))
        add(f"{kind} pause_reading argument", lambda e, m=make: m(e).pause_reading(1), message=arity)
    add("stream write after close", lambda e: e.closed_transport().write(b"x"))
    add("stream write_eof after close", lambda e: e.closed_transport().write_eof())
    add("stream abort after close", lambda e: e.closed_transport().abort())
    add("stream write memoryview of ints", lambda e: e.transport().write(memoryview(bytearray(8)).cast("i")))

    # -- the rest of the loop's methods -------------------------------------------------------------
    for method in ("is_running", "is_closed", "close", "get_debug", "get_task_factory", "get_exception_handler"):
        add(f"{method} with argument", lambda e, m=method: getattr(e.loop, m)(1), message=arity)
    add("shutdown_asyncgens with argument", lambda e: e.loop.shutdown_asyncgens(1), message=arity)
    add("call_exception_handler str", lambda e: e.loop.call_exception_handler("x"))
    add("call_exception_handler empty", lambda e: e.loop.call_exception_handler({}))
    add("call_exception_handler missing", lambda e: e.loop.call_exception_handler(), message=arity)

    # -- a closed loop ---------------------------------------------------------------------------------
    on_closed = {
        "call_soon": lambda e: e.loop.call_soon(print),
        "call_soon_threadsafe": lambda e: e.loop.call_soon_threadsafe(print),
        "call_later": lambda e: e.loop.call_later(1, print),
        "call_at": lambda e: e.loop.call_at(1, print),
        "create_task": lambda e: e.loop.create_task(e.coroutine()),
        "create_future": lambda e: [e.loop.create_future()],
        "run_forever": lambda e: e.loop.run_forever(),
        "run_until_complete": lambda e: e.loop.run_until_complete(e.other_future()),
        "stop": lambda e: e.loop.stop(),
        "close": lambda e: e.loop.close(),
        "add_reader": lambda e: e.loop.add_reader(e.sock(), print),
        "remove_reader": lambda e: e.loop.remove_reader(e.sock()),
        "add_writer": lambda e: e.loop.add_writer(e.sock(), print),
        "remove_writer": lambda e: e.loop.remove_writer(e.sock()),
        "run_in_executor": lambda e: e.loop.run_in_executor(None, print),
        "set_debug": lambda e: e.loop.set_debug(True),
        "add_signal_handler": lambda e: e.loop.add_signal_handler(signal.SIGUSR1, print),
        "call_exception_handler": lambda e: e.loop.call_exception_handler({"message": "on a closed loop"}),
    }
    for method, call in on_closed.items():
        add(f"closed loop {method}", call, closed=True)

    # -- servers --------------------------------------------------------------------------------------
    def closed_server(e):
        server = e.server()
        e.run(e._close_server(server))
        return server

    add("server start_serving after close", lambda e: closed_server(e).start_serving())
    add("server serve_forever after close", lambda e: closed_server(e).serve_forever())
    add("server close twice", lambda e: (lambda s: (s.close(), s.close()))(e.server()))
    add("server get_loop argument", lambda e: e.server().get_loop(1), message=arity)
    return cases


CASES = _cases()


def _run_case(case, kind):
    loop = LOOP_FACTORIES[kind]()
    reports = []
    loop.set_exception_handler(lambda lp, context: reports.append(context))
    env = Env(loop)
    try:
        if case.debug:
            loop.set_debug(True)
        if case.closed:
            loop.close()
        outcome = _outcome(env, case.call)
        assert not loop.is_running()
        if case.closed:
            assert loop.is_closed()
        else:
            # The loop still runs, and is neither closed nor left running.
            assert not loop.is_closed()
            for _ in range(3):
                assert loop.run_until_complete(asyncio.sleep(0, "alive")) == "alive"
            loop.set_debug(False)
    finally:
        env.close()
        if not loop.is_closed():
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()
        gc.collect()
    return outcome, [_report(r) for r in reports]


def _report(context):
    if not isinstance(context, dict):
        return repr(context)
    return (type(context.get("exception")).__name__, _normalize(str(context.get("message"))))


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_bad_input_ends_as_on_asyncio(case):
    ours, our_reports = _run_case(case, "ferroloop")
    assert ours[1] not in ("SystemError", "PanicException")
    if case.differs is not None:
        _reason, expected = case.differs
        assert ours == expected
        return
    theirs, their_reports = _run_case(case, "asyncio")
    if case.message is not True and ours[0] == "raises":
        ours, theirs = ours[:2], theirs[:2]
    assert ours == theirs
    assert our_reports == their_reports


def test_the_comparison_catches_a_wrong_exception(monkeypatch):
    """The check can fail: a loop whose call_later raises ValueError where
    asyncio raises TypeError is caught."""
    case = next(c for c in CASES if c.name == "call_later delay str")

    def wrong(self, delay, callback, *args, context=None):
        raise ValueError("wrong")

    monkeypatch.setattr(ferroloop.Loop, "call_later", wrong)
    with pytest.raises(AssertionError):
        test_bad_input_ends_as_on_asyncio(case)
