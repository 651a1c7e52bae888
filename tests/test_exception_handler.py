"""Exception handler API: set/get/default/call, and errors inside handlers."""

import asyncio
import logging

import pytest

from conftest import run_briefly, take_errors


def test_set_and_get(loop):
    def handler(lp, context):
        pass

    assert loop.get_exception_handler() is not None  # the fixture's recorder
    loop.set_exception_handler(handler)
    assert loop.get_exception_handler() is handler
    loop.set_exception_handler(None)
    assert loop.get_exception_handler() is None
    with pytest.raises(TypeError, match="A callable object or None is expected, got 42"):
        loop.set_exception_handler(42)


def test_handler_called_as_handler_loop_context(loop):
    calls = []
    loop.set_exception_handler(lambda lp, ctx: calls.append((lp, ctx)))
    context = {"message": "hello", "extra": 1}
    loop.call_exception_handler(context)
    assert calls == [(loop, context)]


def test_default_handler_logs(loop, caplog):
    loop.set_exception_handler(None)
    try:
        raise ValueError("the error")
    except ValueError as e:
        exc = e
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        loop.call_exception_handler({"message": "Something broke", "exception": exc, "answer": 42})
        loop.call_exception_handler({"message": ""})
    first, second = caplog.records
    assert first.getMessage() == "Something broke\nanswer: 42"
    assert first.exc_info[1] is exc
    assert second.getMessage() == "Unhandled exception in event loop"


def test_error_in_custom_handler_is_logged(loop, caplog):
    def bad_handler(lp, ctx):
        raise RuntimeError("handler broke")

    loop.set_exception_handler(bad_handler)
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        loop.call_soon(lambda: 1 / 0)
        run_briefly(loop)
    (record,) = caplog.records
    assert record.getMessage().startswith("Unhandled error in exception handler\ncontext: {'message': 'Exception in callback")
    assert isinstance(record.exc_info[1], RuntimeError)
    assert not loop.is_closed()


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_interrupts_from_handler_propagate(loop, exc_type):
    def handler(lp, ctx):
        raise exc_type()

    loop.set_exception_handler(handler)
    loop.call_soon(lambda: 1 / 0)
    with pytest.raises(exc_type):
        run_briefly(loop)


def test_error_in_default_handler_override_is_logged(loop_factory, caplog):
    class Sub(type(loop_factory())):
        def default_exception_handler(self, context):
            raise RuntimeError("default broke")

    loop = Sub()
    try:
        with caplog.at_level(logging.ERROR, logger="asyncio"):
            loop.call_exception_handler({"message": "x"})
        (record,) = caplog.records
        assert record.getMessage() == "Exception in default exception handler"
    finally:
        loop.close()


def test_task_exception_never_retrieved_reaches_handler(loop):
    async def fail():
        raise KeyError("lost")

    loop.run_until_complete(asyncio.wait([loop.create_task(fail())]))
    import gc

    gc.collect()
    (error,) = take_errors(loop)
    assert error["message"] == "Task exception was never retrieved"
    assert isinstance(error["exception"], KeyError)
