"""Tests run by test_pytest_plugins.py in a child pytest (not collected by
the integration suite itself): pytest-asyncio tests and async-generator
fixtures whose teardown awaits. ``EXPECT_LOOP`` names the loop they must run
on; ``EVENTS_LOG`` collects what the fixtures and tests did, in order."""

import asyncio
import sys

import pytest
import pytest_asyncio

from sample_events import EXPECT, log, loop_kind


@pytest_asyncio.fixture
async def echo_port():
    async def handle(reader, writer):
        data = await reader.readline()
        writer.write(data.upper())
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    log("setup server on " + loop_kind())
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    await asyncio.sleep(0.01)
    log("teardown server on " + loop_kind())


@pytest_asyncio.fixture
async def connection(echo_port):
    reader, writer = await asyncio.open_connection("127.0.0.1", echo_port)
    yield reader, writer
    writer.close()
    await writer.wait_closed()
    log("teardown connection on " + loop_kind())


@pytest.mark.asyncio
async def test_runs_on_expected_loop():
    assert loop_kind() == EXPECT


@pytest.mark.asyncio
async def test_fixtures_teardown_awaits(connection):
    reader, writer = connection
    writer.write(b"hello\n")
    assert await reader.readline() == b"HELLO\n"
    log("test on " + loop_kind())


@pytest.mark.asyncio
async def test_subprocess_and_timeout():
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "print(6 * 7)", stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    assert out == b"42\n"
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await asyncio.sleep(1)


@pytest.mark.asyncio(loop_scope="module")
class TestModuleLoop:
    loops = []

    async def test_first(self):
        self.loops.append(asyncio.get_running_loop())
        assert loop_kind() == EXPECT

    async def test_second(self):
        self.loops.append(asyncio.get_running_loop())
        assert self.loops[0] is self.loops[1]
