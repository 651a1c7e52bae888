"""The loop's reuse of received `bytes` objects, on ferroloop and asyncio:
ferroloop fills the object of an earlier read again once the protocol has
dropped it, and reads straight into objects a little larger than what
arrives (`ferroloop_core::io::read_policy`). Nothing of that may show."""

import asyncio
import os
import socket

from test_datagram import Collector
from test_transports import Recorder, finish, send_chunks, tcp_pair


class Chunks:
    """What a protocol was handed: every third chunk kept, every third
    kept through a memoryview, the rest dropped with their hash cached;
    each compared with a copy (and its hash) made on arrival."""

    def __init__(self):
        self.count = 0
        self.kept = []
        self.stale = []

    def take(self, data):
        copy = bytes(bytearray(data))
        if hash(data) != hash(copy) or data != copy:
            self.stale.append(self.count)
        self.count += 1
        if self.count % 3 == 0:
            self.kept.append((data, copy))
        elif self.count % 3 == 1:
            self.kept.append((memoryview(data), copy))

    def check(self):
        assert self.stale == []
        assert self.kept and all(bytes(kept) == copy for kept, copy in self.kept)


def test_received_bytes_never_change_and_carry_no_stale_hash(loop):
    # ferroloop fills the bytes object of an earlier read again once the
    # protocol has dropped it: a chunk the protocol keeps, or a view of one,
    # must never change afterwards, and the hash cached by a dropped chunk
    # must not carry over to later data.
    sizes = [1024, 1024, 1000, 1024, 900, 2048, 1024, 10_000, 9_000, 10_000, 40_000, 50_000, 40_000, 3, 1024]

    class Keeper(Recorder):
        def __init__(self, loop):
            super().__init__(loop)
            self.chunks = Chunks()

        def data_received(self, data):
            super().data_received(data)
            self.chunks.take(data)

    async def main():
        sp, cp, server = await tcp_pair(loop, server_protocol=Keeper(loop))
        sent = await send_chunks(cp, sp, sizes * 3)
        assert bytes(sp.data) == sent
        sp.chunks.check()
        await finish(server, sp, cp)

    loop.run_until_complete(main())


def test_kept_chunks_cost_at_most_an_eighth_more_memory_than_their_data(loop):
    # Reads may go straight into a bytes object a little larger than what
    # arrives; a protocol keeping every chunk must not pay much for it.
    import tracemalloc

    total = 4 * 1024 * 1024

    class Keeper(Recorder):
        def __init__(self, loop):
            super().__init__(loop)
            self.chunks = []
            self.size = 0

        def data_received(self, data):
            self.chunks.append(data)
            self.size += len(data)

    async def main():
        sp, cp, server = await tcp_pair(loop, server_protocol=Keeper(loop))
        payload = os.urandom(total)
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            view = memoryview(payload)
            for start in range(0, total, 48 * 1024):
                cp.transport.write(view[start : start + 48 * 1024])
                await asyncio.sleep(0)
            while sp.size < total:
                await asyncio.sleep(0.001)
            used = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        assert b"".join(sp.chunks) == payload
        overhead = 300 * 1024 + 64 * len(sp.chunks)
        assert used <= total + total // 8 + overhead, (used, len(sp.chunks))
        await finish(server, sp, cp)

    loop.run_until_complete(main())


def test_received_datagrams_never_change_and_carry_no_stale_hash(loop):
    # ferroloop fills the bytes object of an earlier datagram again once the
    # protocol has dropped it: a datagram kept (or viewed) must never change,
    # and the hash cached by a dropped one must not carry over.
    sizes = [1024, 1024, 1000, 900, 2048, 8000, 7000, 8192, 2, 1024] * 3

    class Checker(Collector):
        def __init__(self, loop):
            super().__init__(loop)
            self.chunks = Chunks()

        def datagram_received(self, data, addr):
            self.chunks.take(data)
            self._wake()

    async def main():
        t, p = await loop.create_datagram_endpoint(lambda: Checker(loop), local_addr=("127.0.0.1", 0))
        sent = []
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for size in sizes:
                sent.append(os.urandom(size))
                s.sendto(sent[-1], t.get_extra_info("sockname"))
                await p.until(lambda: p.chunks.count == len(sent))
        p.chunks.check()
        assert [copy for _, copy in p.chunks.kept] == [d for i, d in enumerate(sent) if (i + 1) % 3 != 2]
        t.close()
        await p.lost

    loop.run_until_complete(main())
