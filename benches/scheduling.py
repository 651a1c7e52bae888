"""Scheduling benchmarks: ferroloop against stdlib asyncio, uvloop and rloop,
measured in one run.

    python benches/scheduling.py                # all rows, 7 repeats
    python benches/scheduling.py --repeat 3 --only call_soon
    python benches/scheduling.py --markdown     # README table

Every row runs every loop once per repeat, back to back and in a shuffled
order, so that each repeat yields a paired ratio (peer time / ferroloop time:
above 1 means ferroloop is faster). The table shows the median throughput of
each loop and the median of the paired ratios. uvloop and rloop are optional
(``pip install uvloop rloop``); missing peers are reported and skipped.

``--baseline DIR`` adds a loop named ``baseline``: ferroloop as built from
another commit by ``benches/build-baseline REV`` (a package
``ferroloop_base`` in DIR), paired with the others in the same run, to
measure a change before and after.
"""

import argparse
import asyncio
import gc
import os
import random
import re
import statistics
import subprocess
import sys
import threading
import time

from peers import LOOPS, print_versions
from peers import peers as list_peers



def noop(*args):
    pass


# Each benchmark takes a fresh loop and returns (seconds, operations).


def bench_call_soon(loop, n=200_000):
    call_soon = loop.call_soon
    t0 = time.perf_counter()
    for _ in range(n):
        call_soon(noop)
    call_soon(loop.stop)
    loop.run_forever()
    return time.perf_counter() - t0, n


def bench_call_soon_args(loop, n=200_000):
    call_soon = loop.call_soon
    t0 = time.perf_counter()
    for i in range(n):
        call_soon(noop, i, None)
    call_soon(loop.stop)
    loop.run_forever()
    return time.perf_counter() - t0, n


def bench_call_soon_reschedule(loop, n=200_000):
    remaining = [n]
    call_soon = loop.call_soon

    def step():
        remaining[0] -= 1
        if remaining[0]:
            call_soon(step)
        else:
            loop.stop()

    t0 = time.perf_counter()
    call_soon(step)
    loop.run_forever()
    return time.perf_counter() - t0, n


def bench_call_later(loop, n=100_000):
    call_later = loop.call_later
    t0 = time.perf_counter()
    for i in range(n):
        call_later((i % 1000) * 1e-6, noop)
    call_later(0.002, loop.stop)
    loop.run_forever()
    return time.perf_counter() - t0, n


def bench_call_at(loop, n=100_000):
    call_at = loop.call_at
    t0 = time.perf_counter()
    now = loop.time()
    for i in range(n):
        call_at(now + (i % 1000) * 1e-6, noop)
    call_at(now + 0.002, loop.stop)
    loop.run_forever()
    return time.perf_counter() - t0, n


def bench_call_later_cancelled(loop, n=100_000):
    call_later = loop.call_later
    t0 = time.perf_counter()
    handles = [call_later(0.001 + (i % 1000) * 1e-6, noop) for i in range(n)]
    for i, h in enumerate(handles):
        if i % 10:
            h.cancel()
    del handles
    call_later(0.003, loop.stop)
    loop.run_forever()
    return time.perf_counter() - t0, n


def bench_call_soon_threadsafe(loop, n=100_000):
    remaining = [n]

    def count():
        remaining[0] -= 1
        if not remaining[0]:
            loop.stop()

    def producer():
        call = loop.call_soon_threadsafe
        for _ in range(n):
            call(count)

    thread = threading.Thread(target=producer)
    t0 = time.perf_counter()
    loop.call_soon(thread.start)
    loop.run_forever()
    elapsed = time.perf_counter() - t0
    thread.join()
    return elapsed, n


def bench_call_soon_threadsafe_roundtrip(loop, n=20_000):
    """A thread hands the loop one callback at a time and waits for it to
    run: each operation is a wake-up of the sleeping loop (its latency)."""
    ran = threading.Semaphore(0)

    def producer():
        call = loop.call_soon_threadsafe
        release = ran.release
        acquire = ran.acquire
        for _ in range(n):
            call(release)
            acquire()
        call(loop.stop)

    thread = threading.Thread(target=producer)
    t0 = time.perf_counter()
    loop.call_soon(thread.start)
    loop.run_forever()
    elapsed = time.perf_counter() - t0
    thread.join()
    return elapsed, n


def bench_create_task(loop, n=50_000):
    async def child():
        pass

    async def main():
        create_task = loop.create_task
        task = None
        for _ in range(n):
            task = create_task(child())
        await task

    t0 = time.perf_counter()
    loop.run_until_complete(main())
    return time.perf_counter() - t0, n


def bench_sleep0(loop, n=50_000):
    async def spin():
        for _ in range(n):
            await asyncio.sleep(0)

    async def main():
        await asyncio.gather(spin(), spin())

    t0 = time.perf_counter()
    loop.run_until_complete(main())
    return time.perf_counter() - t0, 2 * n


def bench_future_roundtrip(loop, n=50_000):
    async def main():
        create_future = loop.create_future
        call_soon = loop.call_soon
        for i in range(n):
            fut = create_future()
            call_soon(fut.set_result, i)
            await fut

    t0 = time.perf_counter()
    loop.run_until_complete(main())
    return time.perf_counter() - t0, n


def bench_async_for(loop, n=200_000):
    async def gen():
        for i in range(n):
            yield i

    async def main():
        async for _ in gen():
            pass

    t0 = time.perf_counter()
    loop.run_until_complete(main())
    return time.perf_counter() - t0, n


def bench_many_short_generators(loop, n=50_000):
    async def gen():
        yield 1
        yield 2

    async def main():
        for _ in range(n):
            async for _ in gen():
                pass

    t0 = time.perf_counter()
    loop.run_until_complete(main())
    return time.perf_counter() - t0, n


def bench_abandon_generators(loop, n=100_000):
    finalized = [0]

    async def gen():
        try:
            yield 1
            yield 2
        finally:
            await asyncio.sleep(0)
            finalized[0] += 1

    async def main():
        gens = [gen() for _ in range(n)]
        for g in gens:
            await g.__anext__()
        t0 = time.perf_counter()
        del gens, g  # every generator is finalized here
        while finalized[0] < n:
            await asyncio.sleep(0)
        return time.perf_counter() - t0

    return loop.run_until_complete(main()), n


def bench_shutdown_asyncgens(loop, n=10_000):
    closed = [0]

    async def gen():
        try:
            yield 1
        finally:
            await asyncio.sleep(0)
            closed[0] += 1

    async def main():
        keep = [gen() for _ in range(n)]
        for g in keep:
            await g.__anext__()
        t0 = time.perf_counter()
        await loop.shutdown_asyncgens()
        elapsed = time.perf_counter() - t0
        assert closed[0] == n, closed[0]
        return elapsed

    return loop.run_until_complete(main()), n


def streams_echo(loop, n, size):
    """``n`` messages of ``size`` bytes through an asyncio streams echo over
    loopback TCP in one loop (``start_server`` and ``open_connection``): the
    client writes and ``readexactly``s, the server ``read``s and writes
    back."""

    async def main():
        async def echo(reader, writer):
            while data := await reader.read(65536):
                writer.write(data)
            writer.close()

        server = await asyncio.start_server(echo, "127.0.0.1", 0)
        reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname()[:2])
        message = b"x" * size
        t0 = time.perf_counter()
        for _ in range(n):
            writer.write(message)
            await reader.readexactly(size)
        elapsed = time.perf_counter() - t0
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()
        return elapsed

    return loop.run_until_complete(main()), n


def bench_streams_echo_1k(loop, n=20_000):
    return streams_echo(loop, n, 1024)


def bench_streams_echo_10k(loop, n=20_000):
    return streams_echo(loop, n, 10 * 1024)


def bench_datagram_pingpong(loop, n=100_000):
    """Ten UDP endpoints ping-pong with an echo endpoint in the same loop:
    the loop's own cost per datagram (receive, protocol call, send), without
    a second process's wake-ups."""
    done = loop.create_future()
    handled = [0]

    class Echo(asyncio.DatagramProtocol):
        def connection_made(self, transport):
            self.transport = transport

        def datagram_received(self, data, addr):
            self.transport.sendto(data, addr)

    class Client(asyncio.DatagramProtocol):
        def connection_made(self, transport):
            self.transport = transport

        def datagram_received(self, data, addr):
            handled[0] += 2
            if handled[0] < n:
                self.transport.sendto(data)
            elif not done.done():
                done.set_result(None)

    async def main():
        server, _ = await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", 0))
        address = server.get_extra_info("sockname")
        clients = [(await loop.create_datagram_endpoint(Client, remote_addr=address))[0] for _ in range(10)]
        t0 = time.perf_counter()
        for client in clients:
            client.sendto(b"x" * 64)
        await done
        elapsed = time.perf_counter() - t0
        for transport in [server, *clients]:
            transport.close()
        await asyncio.sleep(0)
        return elapsed

    return loop.run_until_complete(main()), handled[0]


BENCHMARKS = [
    ("call_soon", "no-op call_soon, 200k queued", bench_call_soon),
    ("call_soon_args", "call_soon with 2 args, 200k queued", bench_call_soon_args),
    ("call_soon_reschedule", "self-rescheduling call_soon (1 per turn)", bench_call_soon_reschedule),
    ("call_later", "call_later timers, 100k", bench_call_later),
    ("call_at", "call_at timers, 100k", bench_call_at),
    ("call_later_cancelled", "call_later, 90% cancelled, 100k", bench_call_later_cancelled),
    ("call_soon_threadsafe", "call_soon_threadsafe burst from a thread, 100k", bench_call_soon_threadsafe),
    ("threadsafe_roundtrip", "call_soon_threadsafe round trips from a thread (wake-up latency), 20k", bench_call_soon_threadsafe_roundtrip),
    ("create_task", "create_task of trivial coroutines, 50k", bench_create_task),
    ("sleep0", "two tasks ping-ponging with sleep(0)", bench_sleep0),
    ("future", "create_future + set_result + await", bench_future_roundtrip),
    ("async_for", "async for over one generator, 200k items", bench_async_for),
    ("short_generators", "50k short generators (firstiter each)", bench_many_short_generators),
    ("abandon_generators", "finalize 100k abandoned suspended generators", bench_abandon_generators),
    ("shutdown_asyncgens", "shutdown_asyncgens with 10k live generators", bench_shutdown_asyncgens),
    ("datagram_pingpong", "UDP ping-pong, 10 endpoints and an echo in one loop, 100k datagrams", bench_datagram_pingpong),
    ("streams_echo_1k", "asyncio streams echo over loopback TCP in one loop, 1 KiB messages", bench_streams_echo_1k),
    ("streams_echo_10k", "asyncio streams echo over loopback TCP in one loop, 10 KiB messages", bench_streams_echo_10k),
]


def measure(bench, factory):
    loop = factory()
    try:
        gc.collect()
        seconds, ops = bench(loop)
    finally:
        loop.close()
    return seconds, ops


def run_one(key, loop_name, scale):
    """Runs one row on one loop, scaled down (the process ``--callgrind``
    measures); key ``none`` runs nothing, for the process's own count."""
    if key == "none":
        LOOPS[loop_name]().close()
        return
    bench = next(b for k, _, b in BENCHMARKS if k == key)
    defaults = bench.__defaults__
    n = max(1, defaults[0] // scale)
    loop = LOOPS[loop_name]()
    try:
        gc.collect()
        bench(loop, n)
    finally:
        loop.close()
    print(f"ops {n}")


def fmt(value, spec, suffix=""):
    """``value`` formatted, or n/a for a row a loop could not run."""
    return "n/a" if value is None else f"{value:{spec}}{suffix}"


COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")


def instructions(key, loop_name, args):
    """Instructions callgrind counts for one row on one loop, and its ops."""
    command = [
        "valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
        sys.executable, os.path.abspath(__file__),
        "--run-one", key, loop_name, "--callgrind-scale", str(args.callgrind_scale),
    ]
    if args.baseline:
        command += ["--baseline", args.baseline]
    if args.diagnostics:
        command.append("--diagnostics")
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        # This loop cannot run this row (a baseline from before the row's
        # feature existed, a peer without it): n/a.
        last = done.stderr.strip().splitlines()[-1:] or ["?"]
        print(f"  {loop_name} cannot run {key}: {last[0]}", file=sys.stderr)
        return None, 0
    match = COLLECTED.search(done.stderr)
    if not match:
        raise RuntimeError(f"no instruction count from callgrind: {done.stderr[-2000:]}")
    ops = re.search(r"ops (\d+)", done.stdout)
    return int(match.group(1)), int(ops.group(1)) if ops else 0


def callgrind_table(rows, args):
    names = list(LOOPS)
    others = [name for name in names if name != "ferroloop"]
    base = {name: instructions("none", name, args)[0] for name in names}
    table = []
    for key, title, _ in rows:
        per_op = {}
        for name in names:
            count, ops = instructions(key, name, args)
            per_op[name] = None if count is None else (count - base[name]) / ops
        if per_op["ferroloop"] is None:
            raise SystemExit(f"ferroloop cannot run {key}")
        ratio = {n: None if per_op[n] is None else per_op[n] / per_op["ferroloop"] for n in others}
        table.append((key, title, per_op, ratio))
        cells = "  ".join(f"{name} {fmt(per_op[name], '8.0f')} Ir/op" for name in names)
        ratios = "  ".join(f"x{fmt(ratio[n], '.3f')} vs {n}" for n in others)
        print(f"{key:22} {cells}  |  {ratios}", flush=True)
    if args.markdown:
        print()
        print("| benchmark | " + " | ".join(f"{n} (Ir/op)" for n in names) + " | " + " | ".join(f"vs {n}" for n in others) + " |")
        print("|" + "---|" * (1 + len(names) + len(others)))
        for key, title, per_op, ratio in table:
            cells = " | ".join(fmt(per_op[n], ".0f") for n in names)
            ratios = " | ".join(fmt(ratio[n], ".3f", "x") for n in others)
            print(f"| {title} | {cells} | {ratios} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--only", action="append", help="run only these rows (repeatable)")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--baseline", metavar="DIR", help="also run ferroloop_base from DIR (benches/build-baseline)")
    parser.add_argument("--diagnostics", action="store_true", help="also run ferroloop with timing, and with the generator report, on")
    parser.add_argument("--callgrind", action="store_true", help="count instructions under valgrind instead of timing")
    parser.add_argument("--callgrind-scale", type=int, default=10, help="divide each row's size by this under --callgrind")
    parser.add_argument("--loops", help="with --callgrind: only these loops besides ferroloop (comma-separated)")
    parser.add_argument("--run-one", nargs=2, metavar=("ROW", "LOOP"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.diagnostics:
        import ferroloop

        def timed():
            loop = ferroloop.new_event_loop()
            loop.set_stats(True)
            return loop

        def reporting():
            loop = ferroloop.new_event_loop()
            loop._set_asyncgen_report(True)
            return loop

        LOOPS["ferroloop+timing"] = timed
        LOOPS["ferroloop+report"] = reporting
    if args.baseline:
        sys.path.insert(0, args.baseline)
        import ferroloop_base

        LOOPS["baseline"] = ferroloop_base.new_event_loop

    if args.run_one:
        run_one(args.run_one[0], args.run_one[1], args.callgrind_scale)
        return
    rows = [b for b in BENCHMARKS if not args.only or b[0] in args.only]
    print_versions()
    if args.callgrind:
        if args.loops:
            for name in list(LOOPS):
                if name != "ferroloop" and name not in args.loops.split(","):
                    del LOOPS[name]
        callgrind_table(rows, args)
        return
    peers = list_peers()

    table = []
    for key, title, bench in rows:
        times = {name: [] for name in LOOPS}
        ops = None
        for _ in range(args.repeat):
            order = list(LOOPS)
            random.shuffle(order)
            for name in order:
                seconds, ops = measure(bench, LOOPS[name])
                times[name].append(seconds)
        rate = {name: ops / statistics.median(ts) for name, ts in times.items()}
        ratio = {
            peer: statistics.median(p / f for p, f in zip(times[peer], times["ferroloop"]))
            for peer in peers
        }
        table.append((key, title, rate, ratio))
        cells = "  ".join(f"{name} {rate[name] / 1e6:7.3f}M/s" for name in LOOPS)
        ratios = "  ".join(f"x{ratio[p]:.2f} vs {p}" for p in peers)
        print(f"{key:22} {cells}  |  {ratios}", flush=True)

    if args.markdown:
        print()
        header = "| benchmark | " + " | ".join(f"{n} (ops/s)" for n in LOOPS) + " | " + " | ".join(
            f"vs {p}" for p in peers
        ) + " |"
        print(header)
        print("|" + "---|" * (1 + len(LOOPS) + len(peers)))
        for key, title, rate, ratio in table:
            cells = " | ".join(f"{rate[n] / 1e6:.2f} M" for n in LOOPS)
            ratios = " | ".join(f"{ratio[p]:.2f}x" for p in peers)
            print(f"| {title} | {cells} | {ratios} |")


if __name__ == "__main__":
    main()
