"""A test module whose ``anyio_backend`` names ferroloop's loop factory
itself: it runs on ferroloop with or without ferroloop's pytest plugin."""

import pytest

import ferroloop
from sample_events import loop_kind


@pytest.fixture
def anyio_backend():
    return ("asyncio", {"loop_factory": ferroloop.new_event_loop})


@pytest.mark.anyio
async def test_on_ferroloop():
    assert loop_kind() == "ferroloop"
