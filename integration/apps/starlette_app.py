"""A Starlette application served by uvicorn in test_uvicorn.py.

It answers which loop it runs on, echoes request bodies, streams, records
how streams and WebSockets ended (``/stats``), and writes its lifespan events
to the file named by ``LIFESPAN_LOG``.
"""

import asyncio
import contextlib
import hashlib
import os

from starlette.applications import Starlette
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocketDisconnect

STATS = {"streams_finished": 0, "streams_aborted": 0, "ws_closed": []}
CHUNK = b"0123456789abcdef" * 64  # 1 KiB


def log_event(event):
    path = os.environ.get("LIFESPAN_LOG")
    if path:
        with open(path, "a") as f:
            f.write(event + "\n")


@contextlib.asynccontextmanager
async def lifespan(app):
    log_event("startup")
    yield
    log_event("shutdown " + repr(STATS["ws_closed"]))


async def home(request):
    loop = asyncio.get_running_loop()
    return JSONResponse({"hello": "world", "loop": type(loop).__module__})


async def echo(request):
    body = await request.body()
    return Response(
        body,
        media_type="application/octet-stream",
        headers={"x-sha256": hashlib.sha256(body).hexdigest()},
    )


async def stream(request):
    count = int(request.query_params["chunks"])

    async def chunks():
        for i in range(count):
            yield b"%06d:" % i + CHUNK
            await asyncio.sleep(0)
        STATS["streams_finished"] += 1

    return StreamingResponse(chunks(), media_type="application/octet-stream")


async def endless(request):
    async def chunks():
        try:
            while True:
                yield CHUNK * 16
                await asyncio.sleep(0.001)
        finally:
            STATS["streams_aborted"] += 1

    return StreamingResponse(chunks(), media_type="application/octet-stream")


async def stats(request):
    return JSONResponse(STATS)


async def ws_echo(websocket):
    await websocket.accept()
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                STATS["ws_closed"].append(message.get("code"))
                return
            if message.get("text") is not None:
                await websocket.send_text(message["text"])
            else:
                await websocket.send_bytes(message["bytes"])
    except WebSocketDisconnect as exc:
        STATS["ws_closed"].append(exc.code)


app = Starlette(
    routes=[
        Route("/", home),
        Route("/echo", echo, methods=["POST"]),
        Route("/stream", stream),
        Route("/endless", endless),
        Route("/stats", stats),
        WebSocketRoute("/ws", ws_echo),
    ],
    lifespan=lifespan,
)
