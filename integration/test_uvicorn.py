"""uvicorn serving a Starlette application (apps/starlette_app.py) in a
child process, its loop selected through uvicorn's own option
(``--loop ferroloop:new_event_loop`` / ``uvicorn.run(loop=...)``), driven by
an aiohttp client on the same kind of loop."""

import asyncio
import hashlib
import random
import re
import signal
import subprocess
import threading
import time

import pytest

from conftest import LOOP_SPECS, PYTHON, require, subprocess_env

require("uvicorn")
require("starlette")
aiohttp = require("aiohttp")

APP = "integration.apps.starlette_app:app"
# uvicorn's own name for stdlib asyncio's loop; ferroloop's is an import string.
UVICORN_LOOP = {"asyncio": "asyncio", "ferroloop": LOOP_SPECS["ferroloop"]}
STARTED = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+)")


class Uvicorn:
    """uvicorn in a child process, its stderr collected by a thread."""

    def __init__(self, argv, tmp_path):
        self.lifespan_log = tmp_path / "lifespan.log"
        self.proc = subprocess.Popen(
            argv,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=subprocess_env(LIFESPAN_LOG=str(self.lifespan_log)),
        )
        self.lines = []
        self.port = None
        started = threading.Event()

        def collect():
            for line in self.proc.stderr:
                self.lines.append(line)
                m = STARTED.search(line)
                if m:
                    self.port = int(m.group(1))
                    started.set()
            started.set()

        self.reader = threading.Thread(target=collect, daemon=True)
        self.reader.start()
        if not started.wait(30) or self.port is None:
            self.stop()
            pytest.fail("uvicorn did not start:\n" + self.log)
        self.url = f"http://127.0.0.1:{self.port}"

    @property
    def log(self):
        return "".join(self.lines)

    def wait(self, timeout):
        code = self.proc.wait(timeout)
        self.reader.join(5)
        return code

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.reader.join(5)


def uvicorn_cli(loop_name):
    return [PYTHON, "-m", "uvicorn", APP, "--port", "0", "--loop", UVICORN_LOOP[loop_name]]


def uvicorn_api(loop_name):
    code = (
        "import uvicorn; uvicorn.run(%r, host='127.0.0.1', port=0, loop=%r)"
        % (APP, UVICORN_LOOP[loop_name])
    )
    return [PYTHON, "-c", code]


@pytest.fixture
def server(loop_name, tmp_path):
    srv = Uvicorn(uvicorn_cli(loop_name), tmp_path)
    yield srv
    srv.stop()
    assert srv.proc.returncode == 0, srv.log
    for bad in ("Traceback", "ERROR", "Exception in", "was never retrieved"):
        assert bad not in srv.log, srv.log


async def get_json(session, url):
    async with session.get(url) as resp:
        assert resp.status == 200
        return await resp.json()


def test_get(run, server, loop_name, same_results):
    async def main():
        async with aiohttp.ClientSession() as session:
            return await get_json(session, server.url + "/")

    body = run(main)
    assert body.pop("loop").startswith(loop_name)
    assert same_results(body) == {"hello": "world"}


def test_post_echo_10mib(run, server, same_results):
    payload = random.Random(14).randbytes(10 * 1024 * 1024)

    async def main():
        async with aiohttp.ClientSession() as session:
            async with session.post(server.url + "/echo", data=payload) as resp:
                body = await resp.read()
                return resp.status, resp.headers["x-sha256"], body == payload

    result = run(main)
    assert same_results(result) == (200, hashlib.sha256(payload).hexdigest(), True)


def test_streaming_response(run, server, same_results):
    async def main():
        async with aiohttp.ClientSession() as session:
            async with session.get(server.url + "/stream", params={"chunks": "500"}) as resp:
                assert resp.headers.get("transfer-encoding") == "chunked"
                digest, size = hashlib.sha256(), 0
                async for data in resp.content.iter_chunked(4096):
                    digest.update(data)
                    size += len(data)
            stats = await get_json(session, server.url + "/stats")
        return size, digest.hexdigest(), stats["streams_finished"]

    expected = hashlib.sha256(
        b"".join(b"%06d:" % i + b"0123456789abcdef" * 64 for i in range(500))
    ).hexdigest()
    assert same_results(run(main)) == (500 * 1031, expected, 1)


def test_client_aborts_mid_stream(run, server, same_results):
    async def main():
        async with aiohttp.ClientSession() as session:
            resp = await session.get(server.url + "/endless")
            received = 0
            async for data in resp.content.iter_chunked(16384):
                received += len(data)
                if received >= 256 * 1024:
                    break
            resp.close()  # drops the connection mid-response
            deadline = time.monotonic() + 10
            while True:
                stats = await get_json(session, server.url + "/stats")
                if stats["streams_aborted"] or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.05)
        return stats["streams_aborted"], stats["streams_finished"]

    assert same_results(run(main)) == (1, 0)


def test_websocket_echo(run, server, same_results):
    rng = random.Random(5)
    messages = [rng.randbytes(n) for n in (0, 1, 125, 126, 65535, 65536, 1 << 20)]

    async def main():
        echoed = []
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(server.url + "/ws") as ws:
                for i, data in enumerate(messages):
                    await ws.send_str("text %d" % i)
                    await ws.send_bytes(data)
                for i, data in enumerate(messages):
                    assert await ws.receive_str() == "text %d" % i
                    echoed.append(await ws.receive_bytes() == data)
            for _ in range(100):
                stats = await get_json(session, server.url + "/stats")
                if stats["ws_closed"]:
                    break
                await asyncio.sleep(0.05)
        return echoed, stats["ws_closed"]

    assert same_results(run(main)) == ([True] * len(messages), [1000])


def test_sigterm_with_websocket_open(run, loop_name, tmp_path, same_results):
    """uvicorn.run(loop=...) in the child; SIGTERM while a WebSocket is open:
    the client is told 1012 (service restart), the application's lifespan
    shutdown runs, and the process ends by the signal it caught (uvicorn
    raises it again once it has shut down)."""
    srv = Uvicorn(uvicorn_api(loop_name), tmp_path)
    try:

        async def main():
            async with aiohttp.ClientSession() as session:
                async with session.ws_connect(srv.url + "/ws") as ws:
                    await ws.send_str("before")
                    assert await ws.receive_str() == "before"
                    srv.proc.send_signal(signal.SIGTERM)
                    msg = await asyncio.wait_for(ws.receive(), 20)
                    return msg.type.name, ws.close_code

        result = run(main)
        code = srv.wait(30)
    finally:
        srv.stop()
    log = srv.log
    assert "Finished server process" in log, log
    assert "Traceback" not in log, log
    events = srv.lifespan_log.read_text().splitlines()
    assert same_results((result, code, events)) == (
        ("CLOSE", 1012),
        -signal.SIGTERM,
        ["startup", "shutdown [1012]"],
    )


@pytest.mark.parametrize(
    "how",
    [
        "--loop ferroloop:new_event_loop",
        "python -m ferroloop, --loop none",
        "python -m ferroloop, --loop auto",
    ],
)
def test_which_ways_select_ferroloop(how, tmp_path):
    """What README says: uvicorn makes its own loop, so the policy that
    ``ferroloop.install()`` (python -m ferroloop) sets is used only with
    ``--loop none``; ``--loop auto`` picks uvloop or asyncio's selector loop."""
    if how.startswith("--loop"):
        argv = [PYTHON, "-m", "uvicorn", APP, "--port", "0", *how.split()]
    else:
        argv = [PYTHON, "-m", "ferroloop", "-m", "uvicorn", APP, "--port", "0"]
        argv += how.split(", ")[1].split()
    srv = Uvicorn(argv, tmp_path)
    try:

        async def main():
            async with aiohttp.ClientSession() as session:
                return (await get_json(session, srv.url + "/"))["loop"]

        module = asyncio.run(main())
    finally:
        srv.stop()
    assert module.startswith("ferroloop") == (not how.endswith("auto")), module
