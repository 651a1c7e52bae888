"""ferroloop: a drop-in asyncio event loop written in Rust.

Use it with ``asyncio.run(main(), loop_factory=ferroloop.new_event_loop)``
(Python 3.12+), ``ferroloop.run(main())``, ``ferroloop.install()`` or
``python -m ferroloop app.py``.
"""

import asyncio as _asyncio

# First of the package's modules: the version/feature probes the others read.
from . import _compat
from . import _core
from ._core import Handle, TimerHandle
from ._loop import Loop

__all__ = ("Loop", "Handle", "TimerHandle", "EventLoopPolicy", "new_event_loop", "install", "run")
__version__ = _core.__version__


def new_event_loop():
    """Return a new ferroloop event loop."""
    return Loop()


class EventLoopPolicy(_compat.DEFAULT_POLICY):
    """asyncio's default policy for this platform, creating ferroloop loops.

    ``asyncio.new_event_loop()``, ``asyncio.get_event_loop()`` and an
    ``asyncio.run()`` without ``loop_factory`` create their loops through
    the policy. asyncio deprecates policies from Python 3.14 on; there,
    prefer ``ferroloop.run`` or ``loop_factory=ferroloop.new_event_loop``.
    """

    _loop_factory = Loop


def install():
    """Make ferroloop the event loop asyncio creates by default (installs
    ``EventLoopPolicy``; where asyncio deprecates policies, without its
    warning)."""
    _compat.set_event_loop_policy(EventLoopPolicy())


def run(main, *, debug=None):
    """Run coroutine ``main`` on a new ferroloop loop, like ``asyncio.run``:
    shut asynchronous generators and the default executor down, close the
    loop, and return ``main``'s result. No event loop policy is involved."""
    if _compat.RUN_TAKES_LOOP_FACTORY:
        return _asyncio.run(main, debug=debug, loop_factory=new_event_loop)
    if _asyncio.events._get_running_loop() is not None:
        raise RuntimeError("asyncio.run() cannot be called from a running event loop")
    with _asyncio.Runner(debug=debug, loop_factory=new_event_loop) as runner:
        return runner.run(main)
