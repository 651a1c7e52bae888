"""aiohttp's server and client on the same loop: keep-alive, chunked
uploads, streamed responses read with ``async for``, and HTTPS in both
directions (the server verifies the client's certificate too)."""

import hashlib
import random

import pytest

from conftest import require

aiohttp = require("aiohttp")
from aiohttp import web  # noqa: E402

PEERS = web.AppKey("peers", set)


def make_app():
    peers = set()

    async def hello(request):
        peers.add(request.transport.get_extra_info("peername"))
        return web.Response(text="hello %s" % request.match_info["n"])

    async def upload(request):
        digest, size, chunks = hashlib.sha256(), 0, 0
        async for data in request.content.iter_any():
            digest.update(data)
            size += len(data)
            chunks += 1
        return web.json_response(
            {
                "size": size,
                "sha256": digest.hexdigest(),
                "chunked": request.headers.get("Transfer-Encoding") == "chunked",
                "got_chunks": chunks > 0,
            }
        )

    async def stream(request):
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for i in range(int(request.query["lines"])):
            await resp.write(b"line %d %s\n" % (i, b"x" * (i % 300)))
        await resp.write_eof()
        return resp

    async def whoami(request):
        ssl_object = request.transport.get_extra_info("ssl_object")
        cert = request.transport.get_extra_info("peercert")
        return web.json_response(
            {
                "tls": ssl_object is not None and ssl_object.version(),
                "client": cert["subjectAltName"][0][1] if cert else None,
                "loop": type(request.transport._loop).__module__.split(".")[0],
            }
        )

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_get("/hello/{n}", hello)
    app.router.add_post("/upload", upload)
    app.router.add_get("/stream", stream)
    app.router.add_get("/whoami", whoami)
    app[PEERS] = peers
    return app


async def serve(app, ssl_context=None):
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    port = runner.addresses[0][1]
    return runner, port


def test_keep_alive_1000_requests(run, same_results):
    async def main():
        app = make_app()
        runner, port = await serve(app)
        try:
            connector = aiohttp.TCPConnector(limit=1)
            async with aiohttp.ClientSession(connector=connector) as session:
                bodies = []
                for n in range(1000):
                    async with session.get(f"http://127.0.0.1:{port}/hello/{n}") as resp:
                        bodies.append(await resp.text())
        finally:
            await runner.cleanup()
        return bodies == ["hello %d" % n for n in range(1000)], len(app[PEERS])

    # One connection carried all of them.
    assert same_results(run(main)) == (True, 1)


def test_chunked_upload(run, same_results):
    rng = random.Random(3)
    parts = [rng.randbytes(rng.randrange(1, 200_000)) for _ in range(64)]

    async def body():
        for part in parts:
            yield part

    async def main():
        runner, port = await serve(make_app())
        try:
            async with aiohttp.ClientSession() as session:
                async with session.post(f"http://127.0.0.1:{port}/upload", data=body()) as resp:
                    return await resp.json()
        finally:
            await runner.cleanup()

    whole = b"".join(parts)
    assert same_results(run(main)) == {
        "size": len(whole),
        "sha256": hashlib.sha256(whole).hexdigest(),
        "chunked": True,
        "got_chunks": True,
    }


def test_streamed_response_async_for(run, same_results):
    async def main():
        runner, port = await serve(make_app())
        try:
            lines = []
            async with aiohttp.ClientSession() as session:
                async with session.get(f"http://127.0.0.1:{port}/stream?lines=2000") as resp:
                    async for line in resp.content:
                        lines.append(line)
        finally:
            await runner.cleanup()
        return len(lines), hashlib.sha256(b"".join(lines)).hexdigest()

    expected = b"".join(b"line %d %s\n" % (i, b"x" * (i % 300)) for i in range(2000))
    assert same_results(run(main)) == (2000, hashlib.sha256(expected).hexdigest())


@pytest.mark.parametrize("client_cert", [False, True], ids=["server-auth", "mutual"])
def test_https_both_directions(run, loop_name, certs, client_cert, same_results):
    async def main():
        server_ctx = certs.server_context(verify_client=client_cert)
        runner, port = await serve(make_app(), ssl_context=server_ctx)
        try:
            connector = aiohttp.TCPConnector(ssl=certs.client_context(with_cert=client_cert))
            async with aiohttp.ClientSession(connector=connector) as session:
                results = []
                for host in ("localhost", "127.0.0.1"):
                    async with session.get(f"https://{host}:{port}/whoami") as resp:
                        results.append(await resp.json())
                # The same CA does not vouch for another name: refused.
                bad = aiohttp.TCPConnector(ssl=certs.client_context(with_cert=client_cert))
                async with aiohttp.ClientSession(connector=bad) as other:
                    with pytest.raises(aiohttp.ClientConnectorCertificateError):
                        await other.get(
                            f"https://127.0.0.1:{port}/whoami", server_hostname="example.org"
                        )
        finally:
            await runner.cleanup()
        return results

    results = run(main)
    for r in results:
        assert r.pop("loop") == loop_name
    client = "client@example.org" if client_cert else None
    assert same_results(results) == [{"tls": "TLSv1.3", "client": client}] * 2


@pytest.mark.parametrize(
    "how, expect",
    [
        ("run_app(loop=ferroloop.new_event_loop())", "ferroloop"),
        ("python -m ferroloop app.py", "ferroloop"),
        ("python app.py", "asyncio"),
    ],
)
def test_run_app_selection(how, expect):
    """The ways README says select ferroloop for ``web.run_app``."""
    import asyncio
    import subprocess
    import urllib.request

    from conftest import HERE, PYTHON, subprocess_env

    app = str(HERE / "apps" / "aiohttp_app.py")
    argv = {
        "run_app(loop=ferroloop.new_event_loop())": [PYTHON, app, "ferroloop"],
        "python -m ferroloop app.py": [PYTHON, "-m", "ferroloop", app],
        "python app.py": [PYTHON, app],
    }[how]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=subprocess_env())
    try:
        port = int(proc.stdout.readline())
        for _ in range(600):  # up to 30 s: a loaded machine starts it slowly
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as resp:
                    module = resp.read().decode()
                break
            except OSError:
                asyncio.run(asyncio.sleep(0.05))
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/stop", timeout=5) as resp:
            resp.read()
        assert proc.wait(15) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert module.split(".")[0] == expect
