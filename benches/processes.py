"""Subprocess and pipe benchmarks: ferroloop against stdlib asyncio, uvloop
and rloop, measured in one run.

    python benches/processes.py                 # all rows, 7 repeats
    python benches/processes.py --repeat 3 --only spawn
    python benches/processes.py --markdown      # README table

Rows:
- ``spawn``: ``asyncio.create_subprocess_exec("true")`` and ``wait()``, 50
  children at a time: children started and reaped per second (wall clock);
- ``pipe``: 1 GiB of a child's stdout (``head -c 1G /dev/zero``) read by a
  ``SubprocessProtocol``: the parent's CPU time per MiB (user + system, all
  its threads, from ``getrusage``), the loop's share of a bulk transfer;
- ``pipe-stream``: the same through ``asyncio.subprocess`` streams
  (``proc.stdout.read(64 KiB)``), as most programs read;
- ``communicate``: ``create_subprocess_exec("cat")`` then ``communicate()``
  of 1 MiB, one at a time: exchanges per second.

Every row runs every loop once per repeat, back to back and in a shuffled
order, so that each repeat yields a paired ratio (peer cost / ferroloop
cost: above 1 means ferroloop is cheaper). The table shows each loop's
median and the median of the paired ratios. Missing peers are skipped.
"""

import argparse
import asyncio
import gc
import random
import resource
import statistics
import subprocess
import sys
import time

import ferroloop

LOOPS = {"ferroloop": ferroloop.new_event_loop, "asyncio": asyncio.SelectorEventLoop}
MISSING = []
for _name in ("uvloop", "rloop"):
    try:
        _mod = __import__(_name)
    except ImportError:
        MISSING.append(_name)
    else:
        LOOPS[_name] = _mod.new_event_loop

GIB = 1 << 30
MIB = 1 << 20


def cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# Each benchmark takes a fresh loop and returns (cost, unit): the cost of
# one unit of work (seconds of wall clock or of CPU), lower is better.


def bench_spawn(loop, n=400, concurrency=50):
    async def one(limit):
        async with limit:
            proc = await asyncio.create_subprocess_exec("true")
            await proc.wait()

    async def main():
        limit = asyncio.Semaphore(concurrency)
        await asyncio.gather(*(one(limit) for _ in range(n)))

    t0 = time.perf_counter()
    loop.run_until_complete(main())
    return (time.perf_counter() - t0) / n


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

    c0 = cpu_seconds()
    received = loop.run_until_complete(main())
    assert received == size, received
    return (cpu_seconds() - c0) / (size / MIB)


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

    c0 = cpu_seconds()
    received = loop.run_until_complete(main())
    assert received == size, received
    return (cpu_seconds() - c0) / (size / MIB)


def bench_communicate(loop, n=40, size=MIB):
    data = b"x" * size

    async def main():
        for _ in range(n):
            proc = await asyncio.create_subprocess_exec("cat", stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            out, _ = await proc.communicate(data)
            assert len(out) == size

    t0 = time.perf_counter()
    loop.run_until_complete(main())
    return (time.perf_counter() - t0) / n


# (key, title, bench, how a cost is shown: (label, scale, as a rate))
BENCHMARKS = [
    ("spawn", "spawn and wait `true`, 50 at a time", bench_spawn, ("children/s", 1, True)),
    ("pipe", "1 GiB of child stdout, SubprocessProtocol", bench_pipe, ("CPU µs/MiB", 1e6, False)),
    ("pipe-stream", "1 GiB of child stdout, asyncio streams", bench_pipe_stream, ("CPU µs/MiB", 1e6, False)),
    ("communicate", "create_subprocess_exec(cat) + communicate(1 MiB)", bench_communicate, ("per s", 1, True)),
]


def show(cost, unit):
    label, scale, rate = unit
    return f"{1 / cost:,.0f} {label}" if rate else f"{cost * scale:,.0f} {label}"


def measure(bench, factory):
    loop = factory()
    try:
        gc.collect()
        return bench(loop)
    finally:
        loop.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--only", action="append", help="run only these rows (repeatable)")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()

    rows = [b for b in BENCHMARKS if not args.only or b[0] in args.only]
    peers = [name for name in LOOPS if name != "ferroloop"]
    versions = {"python": sys.version.split()[0], "ferroloop": ferroloop.__version__}
    for name in ("uvloop", "rloop"):
        if name in LOOPS:
            versions[name] = getattr(sys.modules[name], "__version__", "?")
    print("versions:", ", ".join(f"{k} {v}" for k, v in versions.items()))
    if MISSING:
        print("not installed (skipped):", ", ".join(MISSING))

    table = []
    for key, title, bench, unit in rows:
        costs = {name: [] for name in LOOPS}
        for _ in range(args.repeat):
            order = list(LOOPS)
            random.shuffle(order)
            for name in order:
                costs[name].append(measure(bench, LOOPS[name]))
        median = {name: statistics.median(c) for name, c in costs.items()}
        ratio = {
            peer: statistics.median(p / f for p, f in zip(costs[peer], costs["ferroloop"]))
            for peer in peers
        }
        spread = {
            peer: (min(p / f for p, f in zip(costs[peer], costs["ferroloop"])),
                   max(p / f for p, f in zip(costs[peer], costs["ferroloop"])))
            for peer in peers
        }
        table.append((title, unit, median, ratio, spread))
        cells = "  ".join(f"{name} {show(median[name], unit)}" for name in LOOPS)
        ratios = "  ".join(f"x{ratio[p]:.2f} [{spread[p][0]:.2f}-{spread[p][1]:.2f}] vs {p}" for p in peers)
        print(f"{key:12} {cells}  |  {ratios}", flush=True)

    if args.markdown:
        print()
        print("| row | " + " | ".join(LOOPS) + " | " + " | ".join(f"vs {p}" for p in peers) + " |")
        print("|" + "---|" * (1 + len(LOOPS) + len(peers)))
        for title, unit, median, ratio, _ in table:
            cells = " | ".join(show(median[n], unit) for n in LOOPS)
            ratios = " | ".join(f"{ratio[p]:.2f}x" for p in peers)
            print(f"| {title} | {cells} | {ratios} |")


if __name__ == "__main__":
    main()
