"""The "hello" applications of benches/frameworks.py.

    python benches/framework_apps.py aiohttp LOOP PORT

runs the aiohttp one on that loop (``web.run_app(loop=...)``); the Starlette
one, ``starlette_app``, is served by uvicorn, which framework.py starts
with ``--loop``.
"""

import sys

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

HELLO = "Hello, world!"


async def hello(request):
    return PlainTextResponse(HELLO)


starlette_app = Starlette(routes=[Route("/", hello)])


def run_aiohttp(loop_name, port):
    import asyncio

    from aiohttp import web

    async def handle(request):
        return web.Response(text=HELLO)

    if loop_name == "ferroloop":
        import ferroloop

        loop = ferroloop.new_event_loop()
    elif loop_name == "uvloop":
        import uvloop

        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.SelectorEventLoop()
    app = web.Application()
    app.router.add_get("/", handle)
    web.run_app(app, host="127.0.0.1", port=port, loop=loop, access_log=None, print=None)


if __name__ == "__main__":
    if sys.argv[1] == "aiohttp":
        run_aiohttp(sys.argv[2], int(sys.argv[3]))
    else:
        raise SystemExit(__doc__)
