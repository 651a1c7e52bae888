"""Shared fixtures of the integration suite: real applications, each run on
ferroloop and on stdlib asyncio, which must give the same results.

``loop_name`` parametrizes a test over both loops; ``run`` runs a coroutine
function to completion on a new loop of that kind (``asyncio.Runner`` with a
loop factory, as applications do) and fails the test if the loop's exception
handler was called; ``same_results`` compares what a test observed on one
loop with what the same test observed on the other.

A part of the suite whose package or server could not be installed is
skipped with a message saying which and why (``require``); nothing is skipped
silently.
"""

import asyncio
import importlib
import logging
import os
import pathlib
import shutil
import socket
import sys

import pytest

import ferroloop

HERE = pathlib.Path(__file__).resolve().parent

LOOP_FACTORIES = {
    "asyncio": asyncio.SelectorEventLoop,
    "ferroloop": ferroloop.new_event_loop,
}

# The loop-factory string servers take ("module:attribute").
LOOP_SPECS = {
    "asyncio": "asyncio:SelectorEventLoop",
    "ferroloop": "ferroloop:new_event_loop",
}


def require(module):
    """Imports ``module`` or skips the test, saying it is not installed."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        pytest.skip(
            f"{module} is not installed ({exc}); "
            "pip install -r integration/requirements.txt"
        )


def require_program(name, package):
    """The path of program ``name``, or a skip naming its Debian package."""
    path = shutil.which(name) or next(
        (str(p) for p in sorted(pathlib.Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True)),
        None,
    )
    if path is None:
        pytest.skip(
            f"{name} not found: the Debian package {package} is not installed "
            "(integration/install-servers installs it as root)"
        )
    return path


@pytest.fixture(params=sorted(LOOP_FACTORIES))
def loop_name(request):
    return request.param


def is_ferroloop(loop):
    return type(loop).__module__.startswith("ferroloop")


def check_loop(loop_name, loop=None):
    """Fails unless ``loop`` (default: the running loop) is of that kind."""
    loop = loop or asyncio.get_running_loop()
    assert is_ferroloop(loop) == (loop_name == "ferroloop"), (loop_name, loop)


class RecordingFactory:
    """A loop factory whose loops record their exception-handler calls."""

    def __init__(self, loop_name):
        self.loop_name = loop_name
        self.errors = []

    def __call__(self):
        loop = LOOP_FACTORIES[self.loop_name]()
        loop.set_exception_handler(lambda lp, context: self.errors.append(context))
        return loop


@pytest.fixture
def loop_factory(loop_name):
    """A factory of loops of the test's kind, checked for exception-handler
    calls at teardown (a test expecting some takes them from ``.errors``)."""
    factory = RecordingFactory(loop_name)
    yield factory
    assert factory.errors == [], f"unexpected exception handler calls: {factory.errors}"


async def checked(loop_name, async_fn, *args):
    """Awaits ``async_fn(*args)`` after checking the running loop's kind."""
    check_loop(loop_name)
    return await async_fn(*args)


@pytest.fixture
def run(loop_name, loop_factory):
    """``run(async_fn, *args)``: runs it on a new loop of the test's kind."""

    def run(async_fn, *args):
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            return runner.run(checked(loop_name, async_fn, *args))

    return run


@pytest.fixture(autouse=True)
def no_error_logs(caplog):
    """Fails a test whose code logged an error (a server's failed request,
    asyncio's "Task exception was never retrieved", ...)."""
    yield
    errors = [r for r in caplog.get_records("call") if r.levelno >= logging.ERROR]
    assert not errors, "errors logged: " + "; ".join(r.getMessage() for r in errors)


_RESULTS = {}


@pytest.fixture
def same_results(request, loop_name):
    """``same_results(value)``: fails if the same test gave another value on
    the other loop (whichever runs second compares)."""
    params = dict(getattr(request.node, "callspec", None) and request.node.callspec.params or {})
    params.pop("loop_name", None)
    key = (request.node.module.__name__, request.node.originalname, repr(sorted(params.items())))

    def check(value):
        seen = _RESULTS.setdefault(key, {})
        seen[loop_name] = value
        others = {name: v for name, v in seen.items() if name != loop_name}
        for other, v in others.items():
            assert value == v, f"{loop_name} gave {value!r}, {other} gave {v!r}"
        return value

    return check


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    """A test CA (trustme), a server certificate for localhost and
    127.0.0.1, and a client certificate, as files and ``ssl`` contexts."""
    trustme = pytest.importorskip("trustme", reason="trustme is not installed")
    import ssl

    ca = trustme.CA()
    server = ca.issue_cert("localhost", "127.0.0.1")
    client = ca.issue_cert("client@example.org")
    d = tmp_path_factory.mktemp("certs")

    class Certs:
        ca_file = d / "ca.pem"
        server_cert = d / "server.pem"
        server_key = d / "server.key"
        client_chain = d / "client.pem"

        @staticmethod
        def server_context(verify_client=False):
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            server.configure_cert(ctx)
            if verify_client:
                ca.configure_trust(ctx)
                ctx.verify_mode = ssl.CERT_REQUIRED
            return ctx

        @staticmethod
        def client_context(with_cert=False):
            ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
            ca.configure_trust(ctx)
            if with_cert:
                client.configure_cert(ctx)
            return ctx

    ca.cert_pem.write_to_path(str(Certs.ca_file))
    server.cert_chain_pems[0].write_to_path(str(Certs.server_cert))
    for pem in server.cert_chain_pems[1:]:
        pem.write_to_path(str(Certs.server_cert), append=True)
    server.private_key_pem.write_to_path(str(Certs.server_key))
    client.private_key_and_cert_chain_pem.write_to_path(str(Certs.client_chain))
    return Certs


@pytest.fixture(scope="session")
def redis_server():
    """A Redis server of this session (integration/servers.py)."""
    program = require_program("redis-server", "redis-server")
    from servers import redis_server

    with redis_server(program) as server:
        yield server


@pytest.fixture(scope="session")
def postgres_server(certs):
    """A PostgreSQL server of this session, with TLS (integration/servers.py)."""
    program = require_program("postgres", "postgresql")
    from servers import postgres_server

    with postgres_server(os.path.dirname(program), certs.server_cert, certs.server_key) as server:
        yield server


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def subprocess_env(**extra):
    """The environment of a child Python: this one, with the repository on
    ``PYTHONPATH`` so it imports the suite's applications."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(HERE.parent)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    )
    env.update(extra)
    return env


PYTHON = sys.executable
