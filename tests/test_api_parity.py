"""ferroloop's public API has the shape of the running Python's asyncio.

Every public method of the event loop (``asyncio.AbstractEventLoop``,
``asyncio.BaseEventLoop`` and the default loop class of this platform),
of the ``Server`` that ``create_server`` returns, of the stream transport
(ferroloop's ``SocketTransport`` next to asyncio's
``_SelectorSocketTransport``) and of the handles the scheduling methods
return, must have on ferroloop the parameters (names, kinds, defaults) it
has on asyncio, and be a coroutine function exactly where asyncio's is. The
signatures are read from the running asyncio, so a keyword a new Python
version adds (``keep_alive=``, ``cleanup_socket=``, ``eager_start=``, ...)
fails here until ferroloop takes it too. Native methods are read through
their ``__text_signature__`` (which ``inspect.signature`` uses).

Deliberate differences are listed in ``DIFFERENCES`` with their reasons.
Apart from the methods: handles and the stream transport are classes of
ferroloop's own (see README), which the last tests pin down.
"""

import asyncio
import inspect
import socket

import pytest

import ferroloop

# (kind of object, method name) -> why ferroloop's differs. Keep this short.
DIFFERENCES: dict[tuple[str, str], str] = {}


def shape(method):
    """What must match: the parameters, and whether it is a coroutine
    function (``async def``)."""
    params = [(p.name, p.kind.name, p.default) for p in inspect.signature(method).parameters.values()]
    return params, inspect.iscoroutinefunction(method)


def describe(method):
    prefix = "async " if inspect.iscoroutinefunction(method) else ""
    return f"{prefix}{inspect.signature(method)}"


def public_methods(obj):
    return {name for name in dir(obj) if not name.startswith("_") and callable(getattr(obj, name, None))}


def assert_same_api(kind, theirs, ours):
    """Every public method of ``theirs`` exists on ``ours`` with the same
    shape (bound methods: ``self`` is not compared)."""
    mismatches = []
    for name in sorted(public_methods(theirs)):
        if (kind, name) in DIFFERENCES:
            continue
        mine = getattr(ours, name, None)
        if mine is None:
            mismatches.append(f"{kind}.{name}: missing")
            continue
        reference = getattr(theirs, name)
        if shape(reference) != shape(mine):
            mismatches.append(f"{kind}.{name}:\n    asyncio   {describe(reference)}\n    ferroloop {describe(mine)}")
    assert not mismatches, "API differs from asyncio's:\n" + "\n".join(mismatches)


@pytest.fixture
def loops():
    ours, theirs = ferroloop.new_event_loop(), asyncio.SelectorEventLoop()
    yield ours, theirs
    for loop in (ours, theirs):
        loop.close()


def test_the_reference_is_the_default_loop_of_this_python():
    # The asyncio loop compared against is the one asyncio.new_event_loop()
    # makes here, and it has every method of the abstract loop.
    loop = asyncio.new_event_loop()
    try:
        assert type(loop) is asyncio.SelectorEventLoop
    finally:
        loop.close()
    assert public_methods(asyncio.AbstractEventLoop) <= public_methods(asyncio.SelectorEventLoop)
    assert public_methods(asyncio.BaseEventLoop) <= public_methods(asyncio.SelectorEventLoop)


def test_event_loop_methods(loops):
    ours, theirs = loops
    assert isinstance(ours, asyncio.AbstractEventLoop)
    assert_same_api("loop", theirs, ours)


def test_abstract_event_loop_methods_exist_on_the_class():
    # The class, not only its instances, offers them (code inspects
    # ``type(loop).create_server`` and the like).
    missing = sorted(public_methods(asyncio.AbstractEventLoop) - public_methods(ferroloop.Loop))
    assert not missing


def test_handle_methods(loops):
    handles = []
    for loop in loops:
        made = (loop.call_soon(print), loop.call_later(10, print), loop.call_soon_threadsafe(print))
        for handle in made:
            handle.cancel()
        handles.append(made)
    (ours, theirs) = handles
    for kind, mine, reference in zip(("call_soon", "call_later", "call_soon_threadsafe"), ours, theirs):
        assert_same_api(f"{kind} handle", reference, mine)


def test_server_and_transport_methods(loops):
    made = {}
    for name, loop in zip(("ferroloop", "asyncio"), loops):

        async def main():
            a, b = socket.socketpair()
            transport, _ = await loop.create_connection(asyncio.Protocol, sock=a)
            server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
            return transport, server, b

        transport, server, peer = loop.run_until_complete(main())
        made[name] = transport, server
        try:
            for base in (asyncio.BaseTransport, asyncio.ReadTransport, asyncio.WriteTransport, asyncio.Transport):
                assert isinstance(transport, base), (name, base)
            assert isinstance(server, asyncio.AbstractServer)
        finally:
            transport.close()
            server.close()
            loop.run_until_complete(server.wait_closed())
            peer.close()
    (our_transport, our_server), (their_transport, their_server) = made["ferroloop"], made["asyncio"]
    assert_same_api("transport", their_transport, our_transport)
    assert_same_api("server", their_server, our_server)
    # ferroloop serves with asyncio's own Server class.
    assert type(our_server) is asyncio.base_events.Server


def test_differences_are_few_and_explained():
    assert len(DIFFERENCES) <= 3
    for key, reason in DIFFERENCES.items():
        assert reason and len(reason) > 20, key


def test_handles_answer_isinstance_as_asyncios(loops):
    # README: ferroloop's native handles have asyncio's methods (compared
    # above) and isinstance() answers for them as for asyncio's handles, but
    # their type is ferroloop's own, not a subclass of asyncio.Handle.
    ours, theirs = loops
    threadsafe = getattr(asyncio.events, "_ThreadSafeHandle", None)
    answers = {}
    for name, lp in (("ferroloop", ours), ("asyncio", theirs)):
        made = (lp.call_soon(print), lp.call_later(10, print), lp.call_at(lp.time() + 10, print), lp.call_soon_threadsafe(print))
        answers[name] = [
            [isinstance(h, cls) for cls in (asyncio.Handle, asyncio.TimerHandle, threadsafe) if cls is not None]
            for h in made
        ]
        for h in made:
            h.cancel()
    assert answers["ferroloop"] == answers["asyncio"]
    assert answers["asyncio"][0] == [True, False] + ([False] if threadsafe else [])
    handle, timer = ours.call_soon(print), ours.call_later(10, print)
    for made in (handle, timer):
        made.cancel()
        assert isinstance(made, ferroloop.Handle)
        assert not issubclass(type(made), asyncio.Handle)
    assert isinstance(timer, ferroloop.TimerHandle)
    assert type(handle) is ferroloop.Handle and type(timer) is ferroloop.TimerHandle
