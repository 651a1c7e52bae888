"""Subprocess and pipe benchmarks: ferroloop against stdlib asyncio, uvloop
and rloop, measured in one run.

    python benches/processes.py                 # all rows, 7 repeats
    python benches/processes.py --repeat 3 --only spawn
    python benches/processes.py --markdown      # README table

Rows (the figure compared is the parent's CPU time, user + system of all
its threads from ``getrusage``: with children and other programs sharing
the cores, wall-clock rates move too much from run to run; they are shown
next to it):
- ``spawn``: ``asyncio.create_subprocess_exec("true")`` and ``wait()``, 50
  children at a time: CPU per child;
- ``pipe``: 1 GiB of a child's stdout (``head -c 1G /dev/zero``) read by a
  ``SubprocessProtocol``: CPU per MiB, the loop's share of a bulk transfer;
- ``pipe-stream``: the same through ``asyncio.subprocess`` streams
  (``proc.stdout.read(64 KiB)``), as most programs read;
- ``communicate``: ``create_subprocess_exec("cat")`` then ``communicate()``
  of 1 MiB, one at a time: CPU per exchange.

Every row runs every loop once per repeat, back to back and in a shuffled
order, so that each repeat yields a paired ratio (peer CPU / ferroloop CPU:
above 1 means ferroloop uses less). The table shows each loop's median and
the median of the paired ratios. Missing peers are skipped.
"""

import argparse
import asyncio
import gc
import random
import resource
import statistics
import subprocess
import time

from peers import LOOPS, print_versions
from peers import peers as list_peers


GIB = 1 << 30
MIB = 1 << 20


def cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# Each benchmark takes a fresh loop, does its work and returns how many
# units it did; `measure` times it.


def bench_spawn(loop, n=400, concurrency=50):
    async def one(limit):
        async with limit:
            proc = await asyncio.create_subprocess_exec("true")
            await proc.wait()

    async def main():
        limit = asyncio.Semaphore(concurrency)
        await asyncio.gather(*(one(limit) for _ in range(n)))

    loop.run_until_complete(main())
    return n


class Counter(asyncio.SubprocessProtocol):
    def __init__(self, done):
        self.done = done
        self.received = 0

    def pipe_data_received(self, fd, data):
        self.received += len(data)

    def connection_lost(self, exc):
        self.done.set_result(self.received)


def bench_pipe(loop, size=GIB):
    async def main():
        done = loop.create_future()
        transport, _ = await loop.subprocess_exec(
            lambda: Counter(done), "head", "-c", str(size), "/dev/zero", stdin=subprocess.DEVNULL
        )
        received = await done
        transport.close()
        return received

    received = loop.run_until_complete(main())
    assert received == size, received
    return size / MIB


def bench_pipe_stream(loop, size=GIB):
    async def main():
        proc = await asyncio.create_subprocess_exec(
            "head", "-c", str(size), "/dev/zero", stdout=subprocess.PIPE
        )
        received = 0
        while chunk := await proc.stdout.read(1 << 16):
            received += len(chunk)
        await proc.wait()
        return received

    received = loop.run_until_complete(main())
    assert received == size, received
    return size / MIB


def bench_communicate(loop, n=40, size=MIB):
    data = b"x" * size

    async def main():
        for _ in range(n):
            proc = await asyncio.create_subprocess_exec("cat", stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            out, _ = await proc.communicate(data)
            assert len(out) == size

    loop.run_until_complete(main())
    return n


# (key, title, bench, (unit, units))
BENCHMARKS = [
    ("spawn", "spawn and wait `true`, 50 at a time", bench_spawn, ("child", "children")),
    ("pipe", "1 GiB of child stdout, SubprocessProtocol", bench_pipe, ("MiB", "MiB")),
    ("pipe-stream", "1 GiB of child stdout, asyncio streams", bench_pipe_stream, ("MiB", "MiB")),
    ("communicate", "create_subprocess_exec(cat) + communicate(1 MiB)", bench_communicate, ("exchange", "exchanges")),
]


def measure(bench, factory):
    """(CPU seconds, wall seconds) per unit of work of `bench`."""
    loop = factory()
    try:
        gc.collect()
        c0, t0 = cpu_seconds(), time.perf_counter()
        units = bench(loop)
        return (cpu_seconds() - c0) / units, (time.perf_counter() - t0) / units
    finally:
        loop.close()


def show(cpu, wall, unit):
    return f"{cpu * 1e6:,.0f} µs · {1 / wall:,.0f} {unit[1]}/s"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--only", action="append", help="run only these rows (repeatable)")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()

    rows = [b for b in BENCHMARKS if not args.only or b[0] in args.only]
    peers = list_peers()
    print_versions()

    table = []
    for key, title, bench, unit in rows:
        costs = {name: [] for name in LOOPS}
        for _ in range(args.repeat):
            order = list(LOOPS)
            random.shuffle(order)
            for name in order:
                costs[name].append(measure(bench, LOOPS[name]))
        cpu = {name: statistics.median(c for c, _ in runs) for name, runs in costs.items()}
        wall = {name: statistics.median(w for _, w in runs) for name, runs in costs.items()}
        paired = {
            peer: [p[0] / f[0] for p, f in zip(costs[peer], costs["ferroloop"])] for peer in peers
        }
        ratio = {peer: statistics.median(r) for peer, r in paired.items()}
        cells = "  ".join(f"{name} {show(cpu[name], wall[name], unit)}" for name in LOOPS)
        ratios = "  ".join(f"x{ratio[p]:.2f} [{min(paired[p]):.2f}-{max(paired[p]):.2f}] vs {p}" for p in peers)
        print(f"{key:12} CPU per {unit[0]}: {cells}  |  {ratios}", flush=True)
        table.append((title, unit, cpu, wall, ratio))

    if args.markdown:
        print()
        print(
            "| row (CPU per unit · units/s) | "
            + " | ".join(LOOPS)
            + " | "
            + " | ".join(f"CPU vs {p}" for p in peers)
            + " |"
        )
        print("|" + "---|" * (1 + len(LOOPS) + len(peers)))
        for title, unit, cpu, wall, ratio in table:
            cells = " | ".join(show(cpu[n], wall[n], unit) for n in LOOPS)
            ratios = " | ".join(f"{ratio[p]:.2f}x" for p in peers)
            print(f"| {title} (per {unit[0]}) | {cells} | {ratios} |")


if __name__ == "__main__":
    main()
