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
import random
import statistics
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
    ("create_task", "create_task of trivial coroutines, 50k", bench_create_task),
    ("sleep0", "two tasks ping-ponging with sleep(0)", bench_sleep0),
    ("future", "create_future + set_result + await", bench_future_roundtrip),
    ("async_for", "async for over one generator, 200k items", bench_async_for),
    ("short_generators", "50k short generators (firstiter each)", bench_many_short_generators),
    ("abandon_generators", "finalize 100k abandoned suspended generators", bench_abandon_generators),
    ("shutdown_asyncgens", "shutdown_asyncgens with 10k live generators", bench_shutdown_asyncgens),
    ("datagram_pingpong", "UDP ping-pong, 10 endpoints and an echo in one loop, 100k datagrams", bench_datagram_pingpong),
]


def measure(bench, factory):
    loop = factory()
    try:
        gc.collect()
        seconds, ops = bench(loop)
    finally:
        loop.close()
    return seconds, ops


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--only", action="append", help="run only these rows (repeatable)")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--baseline", metavar="DIR", help="also run ferroloop_base from DIR (benches/build-baseline)")
    args = parser.parse_args()
    if args.baseline:
        sys.path.insert(0, args.baseline)
        import ferroloop_base

        LOOPS["baseline"] = ferroloop_base.new_event_loop

    rows = [b for b in BENCHMARKS if not args.only or b[0] in args.only]
    peers = list_peers()
    print_versions()

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
