"""anyio tests run by test_pytest_plugins.py in a child pytest, with anyio's
own pytest plugin and its default ``anyio_backend`` fixture."""


import anyio
import pytest

from sample_events import EXPECT, log, loop_kind


@pytest.fixture
async def resource():
    send, receive = anyio.create_memory_object_stream[int](1)
    yield send, receive
    await anyio.sleep(0.01)
    send.close()
    receive.close()
    log("teardown resource on " + loop_kind())


@pytest.mark.anyio
async def test_runs_on_expected_loop(anyio_backend_name):
    assert anyio_backend_name == "asyncio"
    assert loop_kind() == EXPECT


@pytest.mark.anyio
async def test_task_group_and_fixture(resource):
    send, receive = resource
    async with anyio.create_task_group() as tg:
        tg.start_soon(send.send, 7)
        assert await receive.receive() == 7
    log("test on " + loop_kind())
