"""A soak run: one event loop under a steady mixed load for a long time,
checking that its memory, descriptors and live objects stay flat.

    python benches/soak.py                          # 600 s on ferroloop
    python benches/soak.py --seconds 120 --loop asyncio
    python benches/soak.py --loop uvloop --tls-rate 0

Everything runs in this one process, on one loop (``ferroloop.new_event_loop``,
``asyncio.SelectorEventLoop`` or ``uvloop.new_event_loop``):

- echo: a TCP echo server (an ``asyncio.Protocol``) and a few clients on
  asyncio streams exchanging messages of 1 B to 64 KiB without pause other
  than a pacing sleep between batches (``--echo-rate`` messages a second in
  all);
- connection churn: connect, send a message, read its echo, close, wait for
  ``connection_lost``; ``--churn-rate`` connections a second (170 by
  default: 10^5 in ten minutes), every fourth one over a Unix socket;
- TLS churn: the same over TLS with a certificate made by trustme
  (``--tls-rate`` a second, 0 to leave it out);
- timers: ``call_later`` and ``call_at`` timers, half of them cancelled
  before they are due, and ``asyncio.timeout`` expiring around a sleep;
- async generators: generators with an awaiting ``finally`` block, some
  abandoned mid-iteration (finalized through the loop's asyncgen hooks), some
  closed by ``aclose()``.

Every ``--interval`` seconds a task on the loop samples the resident set
(VmRSS from /proc/self/status), the open descriptors (/proc/self/fd) and
``len(gc.get_objects())`` after a ``gc.collect()``, with the work done so
far. At the end the load stops, every connection and server is closed and
``shutdown_asyncgens`` runs, and one last sample is taken.

The verdict, over the samples after the warm-up (the first ``--warmup``
fraction of the run, 20% by default):

- RSS: max - min within RSS_RANGE_MIB (3 MiB), and the least-squares slope
  over the second half of the run, times the second half's length, within
  RSS_GROWTH_MIB (1.5 MiB);
- descriptors: max - min within FD_RANGE (24: the connections in flight at
  the instant of a sample come and go), and after the shutdown no more
  descriptors open than before the servers were created (uvloop ends with
  one fewer);
- gc objects: max - min within GC_RANGE (1000), and the fitted growth over
  the second half within GC_GROWTH (300);
- every async generator created ran its ``finally`` block, and every
  connection's echo matched what was sent.

Prints a table of the samples and the verdict; exits 1 if anything is not
flat.
"""

import argparse
import asyncio
import gc
import os
import random
import ssl
import statistics
import sys
import tempfile
import time

ECHO_CLIENTS = 4
ECHO_SIZES = [1, 100, 1024, 4096, 65536]
CHURN_WORKERS = 8
TLS_WORKERS = 2

# What "flat" allows. Each churn or TLS worker has at most one connection
# open, two descriptors and a few dozen objects, when a sample is taken; the
# allocator moves RSS in steps of a few hundred KiB. At the default rates a
# leak of one object per 100 connections, or of 30 bytes per connection,
# exceeds these over the steady part of a ten-minute run.
RSS_RANGE_MIB = 3.0
RSS_GROWTH_MIB = 1.5
FD_RANGE = 2 * (CHURN_WORKERS + TLS_WORKERS) + 4
GC_RANGE = 1000
GC_GROWTH = 300


def new_loop(name):
    if name == "ferroloop":
        import ferroloop

        return ferroloop.new_event_loop()
    if name == "asyncio":
        return asyncio.SelectorEventLoop()
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    raise SystemExit(f"unknown loop {name!r}")


def rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def fd_count():
    return len(os.listdir("/proc/self/fd"))


class Counters:
    def __init__(self):
        self.echo_messages = 0
        self.echo_bytes = 0
        self.connections = 0
        self.unix_connections = 0
        self.tls_connections = 0
        self.mismatches = 0
        self.connect_errors = 0
        self.timers_fired = 0
        self.timers_cancelled = 0
        self.timeouts = 0
        self.gens_created = 0
        self.gens_abandoned = 0
        self.gens_aclosed = 0
        self.gens_finally = 0


class EchoServerProtocol(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)

    def eof_received(self):
        # Close our side too once the client has half-closed.
        return False


class ChurnClientProtocol(asyncio.Protocol):
    """Sends one message, waits for its echo, closes."""

    def __init__(self, payload, done):
        self.payload = payload
        self.received = bytearray()
        self.done = done

    def connection_made(self, transport):
        self.transport = transport
        transport.write(self.payload)

    def data_received(self, data):
        self.received += data
        if len(self.received) >= len(self.payload):
            self.transport.close()

    def connection_lost(self, exc):
        if not self.done.done():
            self.done.set_result(bytes(self.received) == self.payload)


class Soak:
    def __init__(self, loop, args):
        self.loop = loop
        self.args = args
        self.counters = Counters()
        self.running = True
        self.rng = random.Random(1234)
        self.samples = []
        self.t0 = None
        self.tmpdir = tempfile.TemporaryDirectory(prefix="ferroloop-soak-")
        self.unix_path = os.path.join(self.tmpdir.name, "echo.sock")
        self.server_ssl = self.client_ssl = None
        if args.tls_rate > 0:
            import trustme

            ca = trustme.CA()
            cert = ca.issue_cert("localhost")
            self.server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            cert.configure_cert(self.server_ssl)
            self.client_ssl = ssl.create_default_context()
            ca.configure_trust(self.client_ssl)

    # -- workloads -------------------------------------------------------

    async def echo_client(self, port, index):
        rate = self.args.echo_rate / ECHO_CLIENTS
        batch = 20
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        rng = random.Random(index)
        next_batch = self.loop.time()
        c = self.counters
        try:
            while self.running:
                for _ in range(batch):
                    size = rng.choice(ECHO_SIZES)
                    payload = bytes([rng.randrange(256)]) * size
                    writer.write(payload)
                    await writer.drain()
                    got = await reader.readexactly(size)
                    if got != payload:
                        c.mismatches += 1
                    c.echo_messages += 1
                    c.echo_bytes += size
                next_batch += batch / rate
                delay = next_batch - self.loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                else:
                    next_batch = self.loop.time()
        finally:
            writer.close()
            await writer.wait_closed()

    async def paced(self, rate, workers, one):
        """Runs `one()` about `rate` times a second over `workers` tasks."""

        async def worker(offset):
            period = workers / rate
            next_at = self.loop.time() + offset * period / workers
            while self.running:
                delay = next_at - self.loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                next_at += period
                if next_at < self.loop.time() - 1.0:
                    next_at = self.loop.time()  # fell behind; do not burst
                await one()

        await asyncio.gather(*(worker(i) for i in range(workers)))

    async def churn_one(self, port):
        c = self.counters
        unix = c.connections % 4 == 3
        payload = os.urandom(self.rng.choice((16, 512, 4096)))
        done = self.loop.create_future()
        try:
            if unix:
                await self.loop.create_unix_connection(
                    lambda: ChurnClientProtocol(payload, done), self.unix_path
                )
            else:
                await self.loop.create_connection(
                    lambda: ChurnClientProtocol(payload, done), "127.0.0.1", port
                )
        except OSError:
            c.connect_errors += 1
            return
        if not await done:
            c.mismatches += 1
        c.connections += 1
        if unix:
            c.unix_connections += 1

    async def tls_one(self, port):
        c = self.counters
        payload = os.urandom(256)
        try:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=self.client_ssl, server_hostname="localhost"
            )
        except OSError:
            c.connect_errors += 1
            return
        try:
            writer.write(payload)
            got = await reader.readexactly(len(payload))
            if got != payload:
                c.mismatches += 1
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass
        c.tls_connections += 1

    async def timers(self):
        c = self.counters
        rng = random.Random(7)

        def fired():
            c.timers_fired += 1

        while self.running:
            handles = []
            now = self.loop.time()
            for i in range(40):
                delay = rng.random() * 0.05
                if i % 2:
                    handles.append(self.loop.call_later(delay, fired))
                else:
                    handles.append(self.loop.call_at(now + delay, fired))
            for h in rng.sample(handles, 20):
                h.cancel()
                c.timers_cancelled += 1
            try:
                async with asyncio.timeout(0.002):
                    await asyncio.sleep(1)
            except TimeoutError:
                c.timeouts += 1
            await asyncio.sleep(0.01)

    async def generators(self):
        c = self.counters
        rng = random.Random(11)

        async def agen(n):
            c.gens_created += 1
            try:
                for i in range(n):
                    await asyncio.sleep(0)
                    yield i
            finally:
                await asyncio.sleep(0)
                c.gens_finally += 1

        while self.running:
            for _ in range(20):
                g = agen(rng.randrange(5, 50))
                for _ in range(rng.randrange(1, 4)):
                    await g.__anext__()
                if rng.random() < 0.5:
                    await g.aclose()
                    c.gens_aclosed += 1
                else:
                    c.gens_abandoned += 1
                del g  # abandoned ones go to the loop's finalizer hook
            await asyncio.sleep(0.01)

    # -- sampling --------------------------------------------------------

    def sample(self, label=None):
        gc.collect()
        c = self.counters
        s = {
            "t": time.monotonic() - self.t0,
            "label": label,
            "rss": rss_kib(),
            "fds": fd_count(),
            "gc": len(gc.get_objects()),
            "connections": c.connections + c.tls_connections,
            "messages": c.echo_messages,
            "timers": c.timers_fired + c.timers_cancelled,
            "gens": c.gens_created,
        }
        self.samples.append(s)
        return s

    async def sampler(self):
        interval = self.args.interval
        next_at = self.loop.time() + interval
        while self.running:
            await asyncio.sleep(max(0.0, next_at - self.loop.time()))
            next_at += interval
            if not self.running:
                break
            s = self.sample()
            if self.args.verbose:
                print(format_sample(s), flush=True)

    # -- the run ---------------------------------------------------------

    async def main(self):
        self.fds_before = fd_count()
        server = await self.loop.create_server(EchoServerProtocol, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        userver = await self.loop.create_unix_server(EchoServerProtocol, self.unix_path)
        servers = [server, userver]
        tls_port = None
        if self.server_ssl is not None:
            tserver = await self.loop.create_server(
                EchoServerProtocol, "127.0.0.1", 0, ssl=self.server_ssl
            )
            tls_port = tserver.sockets[0].getsockname()[1]
            servers.append(tserver)

        self.t0 = time.monotonic()
        self.sample("start")
        tasks = [asyncio.create_task(self.echo_client(port, i)) for i in range(ECHO_CLIENTS)]
        tasks.append(
            asyncio.create_task(
                self.paced(self.args.churn_rate, CHURN_WORKERS, lambda: self.churn_one(port))
            )
        )
        if tls_port is not None:
            tasks.append(
                asyncio.create_task(
                    self.paced(self.args.tls_rate, TLS_WORKERS, lambda: self.tls_one(tls_port))
                )
            )
        tasks.append(asyncio.create_task(self.timers()))
        tasks.append(asyncio.create_task(self.generators()))
        sampler = asyncio.create_task(self.sampler())

        await asyncio.sleep(self.args.seconds)
        self.running = False
        await sampler
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
        for s in servers:
            s.close()
        for s in servers:
            await s.wait_closed()
        await asyncio.sleep(0.1)  # timers still pending fire or are dropped
        await self.loop.shutdown_asyncgens()

    def run(self):
        try:
            self.loop.run_until_complete(self.main())
        finally:
            self.tmpdir.cleanup()
        self.sample("end")
        self.fds_after = fd_count()


def format_sample(s):
    return (
        f"{s['t']:7.1f}  {s['rss'] / 1024:8.1f}  {s['fds']:4d}  {s['gc']:8d}  "
        f"{s['connections']:9d}  {s['messages']:10d}  {s['timers']:9d}  {s['gens']:8d}"
        + (f"  {s['label']}" if s["label"] else "")
    )


HEADER = (
    "    t s   RSS MiB   fds  gc objs  connections    messages     timers      gens"
)


def growth(samples, key):
    """Least-squares slope of `key` over `samples`, times their time span."""
    ts = [s["t"] for s in samples]
    ys = [s[key] for s in samples]
    if len(samples) < 3 or ts[-1] == ts[0]:
        return 0.0
    slope = statistics.linear_regression(ts, ys).slope
    return slope * (ts[-1] - ts[0])


def verdict(soak):
    args = soak.args
    c = soak.counters
    periodic = [s for s in soak.samples if s["label"] is None]
    steady = [s for s in periodic if s["t"] >= args.warmup * args.seconds]
    second_half = [s for s in periodic if s["t"] >= args.seconds / 2]
    checks = []

    def check(name, ok, detail):
        checks.append((name, ok, detail))

    if len(steady) < 3:
        check("samples", False, f"only {len(steady)} samples after warm-up; lower --interval")
        return checks

    rss = [s["rss"] / 1024 for s in steady]
    rss_range = max(rss) - min(rss)
    rss_limit = RSS_RANGE_MIB
    check(
        "RSS range",
        rss_range <= rss_limit,
        f"{min(rss):.1f}..{max(rss):.1f} MiB, range {rss_range:.1f} MiB (limit {rss_limit:.1f})",
    )
    g = growth(second_half, "rss") / 1024
    check(
        "RSS growth, 2nd half",
        g <= RSS_GROWTH_MIB,
        f"{g:+.2f} MiB fitted (limit {RSS_GROWTH_MIB})",
    )

    fds = [s["fds"] for s in steady]
    check("fds range", max(fds) - min(fds) <= FD_RANGE, f"{min(fds)}..{max(fds)} (limit range {FD_RANGE})")
    check(
        "fds after shutdown",
        soak.fds_after <= soak.fds_before,
        f"{soak.fds_after} open, {soak.fds_before} before the servers",
    )

    objs = [s["gc"] for s in steady]
    gc_limit = GC_RANGE
    check(
        "gc objects range",
        max(objs) - min(objs) <= gc_limit,
        f"{min(objs)}..{max(objs)}, range {max(objs) - min(objs)} (limit {gc_limit:.0f})",
    )
    g = growth(second_half, "gc")
    check("gc objects growth, 2nd half", g <= GC_GROWTH, f"{g:+.0f} fitted (limit {GC_GROWTH})")

    check(
        "generators finalized",
        c.gens_finally == c.gens_created,
        f"{c.gens_finally} finally blocks ran of {c.gens_created} created",
    )
    check("echoes matched", c.mismatches == 0, f"{c.mismatches} mismatches")
    return checks


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--loop", default="ferroloop", choices=("ferroloop", "asyncio", "uvloop"))
    parser.add_argument("--interval", type=float, default=None,
                        help="seconds between samples (default: a 30th of the run, 2 to 20 s)")
    parser.add_argument("--warmup", type=float, default=0.2, help="fraction of the run left out")
    parser.add_argument("--churn-rate", type=float, default=170.0, help="connections a second")
    parser.add_argument("--tls-rate", type=float, default=10.0, help="TLS connections a second (0: none)")
    parser.add_argument("--echo-rate", type=float, default=8000.0, help="echo messages a second, all clients")
    parser.add_argument("-v", "--verbose", action="store_true", help="print each sample as it is taken")
    args = parser.parse_args()
    if args.interval is None:
        args.interval = min(20.0, max(2.0, args.seconds / 30))

    loop = new_loop(args.loop)
    asyncio.set_event_loop(loop)
    soak = Soak(loop, args)
    print(
        f"soak: {args.loop}, {args.seconds:.0f} s, sample every {args.interval:.0f} s, "
        f"warm-up {args.warmup:.0%}; python {sys.version.split()[0]}",
        flush=True,
    )
    started = time.monotonic()
    try:
        soak.run()
    finally:
        loop.close()
    elapsed = time.monotonic() - started
    c = soak.counters

    print(HEADER)
    for s in soak.samples:
        print(format_sample(s))
    print()
    print(
        f"in {elapsed:.0f} s: {c.connections} connections ({c.unix_connections} over Unix sockets), "
        f"{c.tls_connections} TLS connections, {c.connect_errors} connect errors; "
        f"{c.echo_messages} echo messages ({c.echo_bytes / 2**20:.0f} MiB); "
        f"{c.timers_fired} timers fired, {c.timers_cancelled} cancelled, {c.timeouts} timeouts; "
        f"{c.gens_created} async generators ({c.gens_abandoned} abandoned, {c.gens_aclosed} aclosed)"
    )
    checks = verdict(soak)
    width = max(len(name) for name, _, _ in checks)
    for name, ok, detail in checks:
        print(f"  {'ok  ' if ok else 'FAIL'} {name:<{width}}  {detail}")
    flat = all(ok for _, ok, _ in checks)
    print("verdict:", "flat" if flat else "NOT FLAT")
    return 0 if flat else 1


if __name__ == "__main__":
    sys.exit(main())
