"""An aiohttp application started with ``web.run_app``, as a program would
be: ``python aiohttp_app.py [ferroloop]``. With ``ferroloop`` it passes
``loop=ferroloop.new_event_loop()``; without, run_app makes its loop with
``asyncio.new_event_loop()`` (the policy, which ``python -m ferroloop``
sets). It prints its port, answers ``/`` with its loop's module and stops
on ``/stop``."""

import asyncio
import signal
import socket
import sys

from aiohttp import web


async def home(request):
    return web.Response(text=type(asyncio.get_running_loop()).__module__)


async def stop(request):
    asyncio.get_running_loop().call_later(0.05, signal.raise_signal, signal.SIGINT)
    return web.Response(text="stopping")


def main():
    app = web.Application()
    app.router.add_get("/", home)
    app.router.add_get("/stop", stop)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    print(sock.getsockname()[1], flush=True)
    kwargs = {}
    if sys.argv[1:] == ["ferroloop"]:
        import ferroloop

        kwargs["loop"] = ferroloop.new_event_loop()
    web.run_app(app, sock=sock, print=None, **kwargs)


if __name__ == "__main__":
    main()
