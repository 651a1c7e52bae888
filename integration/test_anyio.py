"""anyio programs on ferroloop through ``anyio.run(...,
backend_options={"loop_factory": ...})``: task groups, cancel scopes,
memory object streams, worker threads, TCP with and without TLS, and child
processes."""

import ssl
import sys
import threading

import pytest

from conftest import checked, require

anyio = require("anyio")
require("anyio.streams.tls")


@pytest.fixture
def anyio_run(loop_name, loop_factory):
    def run(async_fn, *args):
        return anyio.run(
            checked, loop_name, async_fn, *args, backend="asyncio", backend_options={"loop_factory": loop_factory}
        )

    return run


def test_task_groups(anyio_run, same_results):
    async def main():
        order = []

        async def worker(n, delay):
            await anyio.sleep(delay)
            order.append(n)
            return n

        async with anyio.create_task_group() as tg:
            for n, delay in enumerate((0.03, 0.01, 0.02)):
                tg.start_soon(worker, n, delay)

        async def started(task_status=anyio.TASK_STATUS_IGNORED):
            task_status.started("ready")
            await anyio.sleep_forever()

        async with anyio.create_task_group() as tg:
            ready = await tg.start(started)
            tg.cancel_scope.cancel()

        failures = None
        try:
            async with anyio.create_task_group() as tg:

                async def fails(exc):
                    await anyio.sleep(0.01)
                    raise exc

                tg.start_soon(fails, ValueError("a"))
                tg.start_soon(fails, KeyError("b"))
                tg.start_soon(anyio.sleep_forever)
        except* (ValueError, KeyError) as eg:
            failures = sorted(repr(e) for e in eg.exceptions)
        return order, ready, failures

    assert same_results(anyio_run(main)) == ([1, 2, 0], "ready", ["KeyError('b')", "ValueError('a')"])


def test_cancel_scopes(anyio_run, same_results):
    async def main():
        results = []
        with anyio.move_on_after(0.02) as scope:
            await anyio.sleep(5)
        results.append(("move_on_after", scope.cancelled_caught))

        try:
            with anyio.fail_after(0.02):
                await anyio.sleep(5)
        except TimeoutError:
            results.append(("fail_after", "TimeoutError"))

        with anyio.CancelScope() as outer:
            with anyio.CancelScope(shield=True):
                outer.cancel()
                await anyio.sleep(0.01)  # shielded: not cancelled here
                results.append(("shielded", "ran"))
            await anyio.sleep(1)
            results.append(("unreachable", None))
        results.append(("outer", outer.cancelled_caught))

        async with anyio.create_task_group() as tg:
            deadline_hits = []

            async def child():
                with anyio.CancelScope(deadline=anyio.current_time() + 0.01) as s:
                    await anyio.sleep_forever()
                deadline_hits.append(s.cancelled_caught)

            for _ in range(5):
                tg.start_soon(child)
        results.append(("deadlines", deadline_hits))
        return results

    assert same_results(anyio_run(main)) == [
        ("move_on_after", True),
        ("fail_after", "TimeoutError"),
        ("shielded", "ran"),
        ("outer", True),
        ("deadlines", [True] * 5),
    ]


def test_memory_object_streams(anyio_run, same_results):
    async def main():
        send, receive = anyio.create_memory_object_stream[int](10)
        received = []

        async def producer(send):
            async with send:
                for i in range(1000):
                    await send.send(i)

        async def consumer(receive):
            async with receive:
                async for item in receive:
                    received.append(item)

        async with anyio.create_task_group() as tg:
            for k in range(3):
                tg.start_soon(producer, send.clone())
            tg.start_soon(consumer, receive.clone())
            send.close()
            receive.close()
        return len(received), sorted(received) == sorted(list(range(1000)) * 3)

    assert same_results(anyio_run(main)) == (3000, True)


def test_to_thread(anyio_run, same_results):
    async def main():
        main_thread = threading.get_ident()

        def blocking(n):
            # Calls back into the loop from the worker thread.
            back = anyio.from_thread.run(anyio.sleep, 0)
            return n * n, threading.get_ident() != main_thread, back

        results = []
        async with anyio.create_task_group() as tg:

            async def one(n):
                results.append(await anyio.to_thread.run_sync(blocking, n))

            for n in range(20):
                tg.start_soon(one, n)
        return sorted(results)

    assert same_results(anyio_run(main)) == [(n * n, True, None) for n in range(20)]


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_connect_tcp(anyio_run, certs, tls, same_results):
    async def main():
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        if tls:
            listener = anyio.streams.tls.TLSListener(listener, certs.server_context())

        async def handle(stream):
            async with stream:
                async for data in stream:
                    await stream.send(data[::-1])

        async with anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, handle)
            kwargs = {"tls": True, "ssl_context": certs.client_context(), "tls_hostname": "localhost"} if tls else {}
            replies = []
            async with await anyio.connect_tcp("127.0.0.1", port, **kwargs) as client:
                version = client.extra(anyio.streams.tls.TLSAttribute.tls_version, None)
                for i in range(200):
                    msg = b"message %d " % i * (i + 1)
                    await client.send(msg)
                    got = b""
                    while len(got) < len(msg):
                        got += await client.receive()
                    replies.append(got == msg[::-1])
            if tls:
                with pytest.raises(ssl.SSLCertVerificationError):
                    await anyio.connect_tcp(
                        "127.0.0.1", port, tls=True, ssl_context=certs.client_context(),
                        tls_hostname="example.org",
                    )
            tg.cancel_scope.cancel()
        await listener.aclose()
        return all(replies), len(replies), version

    assert same_results(anyio_run(main)) == (True, 200, "TLSv1.3" if tls else None)


def test_processes(anyio_run, same_results):
    async def main():
        done = await anyio.run_process([sys.executable, "-c", "import sys; print(sys.stdin.read().upper())"],
                                       input=b"hello anyio")
        failed = await anyio.run_process(["sh", "-c", "echo oops >&2; exit 3"], check=False)
        try:
            await anyio.run_process(["false"])
        except Exception as exc:  # subprocess.CalledProcessError
            raised = type(exc).__name__, exc.returncode

        lines = []
        async with await anyio.open_process(["cat"]) as proc:
            for i in range(100):
                await proc.stdin.send(b"line %d\n" % i)
            await proc.stdin.aclose()
            async for chunk in proc.stdout:
                lines.append(chunk)
        returncode = await proc.wait()

        async with await anyio.open_process(["sleep", "30"]) as sleeper:
            sleeper.terminate()
            killed = await sleeper.wait()
        return (
            done.stdout, done.returncode, failed.stderr, failed.returncode, raised,
            b"".join(lines) == b"".join(b"line %d\n" % i for i in range(100)), returncode, killed,
        )

    assert same_results(anyio_run(main)) == (
        b"HELLO ANYIO\n", 0, b"oops\n", 3, ("CalledProcessError", 1), True, 0, -15,
    )


def test_install_selects_ferroloop_for_anyio_run():
    """``ferroloop.install()`` also reaches ``anyio.run`` (no loop_factory:
    anyio's runner asks asyncio's policy for the loop)."""
    import subprocess

    from conftest import PYTHON

    code = (
        "import asyncio, anyio, ferroloop\n"
        "ferroloop.install()\n"
        "async def main():\n"
        "    return type(asyncio.get_running_loop()).__module__\n"
        "print(anyio.run(main))\n"
    )
    out = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out == "ferroloop._loop\n"
