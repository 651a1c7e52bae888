"""A test module that chooses asyncio backend options of its own: the
ferroloop plugin keeps them and adds only its loop factory."""

import asyncio
import os

import pytest

EXPECT = os.environ["EXPECT_LOOP"]


@pytest.fixture
def anyio_backend():
    return ("asyncio", {"debug": True})


@pytest.mark.anyio
async def test_options_kept():
    loop = asyncio.get_running_loop()
    assert loop.get_debug()
    assert type(loop).__module__.split(".")[0] == EXPECT
