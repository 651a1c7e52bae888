"""asyncpg against a real PostgreSQL (integration/servers.py) that has
``ssl = on``: asyncpg's default ``sslmode=prefer`` negotiates TLS on the
loop's TLS layer. Thousands of queries, a pool, cursors abandoned with
``break`` (also inside an abandoned asynchronous generator), LISTEN/NOTIFY."""

import asyncio
import gc

import pytest

from conftest import require

asyncpg = require("asyncpg")


@pytest.fixture
def connect(postgres_server):
    def connect(**kwargs):
        return asyncpg.connect(postgres_server.dsn(), **kwargs)

    return connect


def test_tls_negotiated_by_default(run, connect, same_results):
    async def main():
        conn = await connect()
        try:
            ssl, version = await conn.fetchrow(
                "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
            )
            ssl_object = conn._transport.get_extra_info("ssl_object")
        finally:
            await conn.close()
        return ssl, version, ssl_object is not None

    assert same_results(run(main)) == (True, "TLSv1.3", True)


def test_thousands_of_queries(run, connect, postgres_server, loop_name, same_results):
    table = f"items_{loop_name}"

    async def main():
        conn = await connect()
        try:
            total = 0
            for i in range(3000):
                total += await conn.fetchval("SELECT $1::int * 2", i)
            await conn.execute(f"DROP TABLE IF EXISTS {table}")
            await conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, name text, data bytea)")
            await conn.executemany(
                f"INSERT INTO {table} VALUES ($1, $2, $3)",
                [(i, "name %d" % i, bytes(i % 256 for _ in range(i % 50))) for i in range(1000)],
            )
            await conn.copy_records_to_table(
                table, records=[(i, "copied %d" % i, b"") for i in range(1000, 2000)]
            )
            stmt = await conn.prepare(f"SELECT name FROM {table} WHERE id = $1")
            names = [await stmt.fetchval(i) for i in range(0, 2000, 250)]
            rows = await conn.fetch(f"SELECT id, length(data) FROM {table} ORDER BY id")
        finally:
            await conn.close()

        async with asyncpg.create_pool(postgres_server.dsn(), min_size=2, max_size=8) as pool:

            async def one(i):
                async with pool.acquire() as c:
                    return await c.fetchval(f"SELECT count(*) FROM {table} WHERE id < $1", i)

            counts = await asyncio.gather(*(one(i) for i in range(0, 2000, 4)))
            await pool.execute(f"DROP TABLE {table}")
        return total, names, len(rows), sum(r[1] for r in rows), sum(counts)

    assert same_results(run(main)) == (
        2 * sum(range(3000)),
        ["name 0", "name 250", "name 500", "name 750", "copied 1000", "copied 1250", "copied 1500", "copied 1750"],
        2000,
        sum(i % 50 for i in range(1000)),
        sum(range(0, 2000, 4)),
    )


def test_cursors_abandoned_with_break(run, connect, same_results):
    async def main():
        conn = await connect()
        results = []
        try:
            async with conn.transaction():
                async for record in conn.cursor("SELECT generate_series(1, 1000000) AS n", prefetch=100):
                    if record["n"] == 250:
                        break
                results.append(record["n"])
                cursor = await conn.cursor("SELECT generate_series(1, 1000) AS n")
                results.append([r["n"] for r in await cursor.fetch(3)])
            results.append(await conn.fetchval("SELECT 1"))

            # A generator holding a transaction and a cursor, abandoned by
            # its consumer: the loop's finalizer hook closes it (aclose runs
            # the transaction's rollback) before the connection is used again.
            async def numbers():
                async with conn.transaction():
                    async for record in conn.cursor("SELECT generate_series(1, 100000) AS n"):
                        yield record["n"]

            gen = numbers()
            async for n in gen:
                if n == 10:
                    break
            del gen
            gc.collect()
            for _ in range(100):
                if not conn.is_in_transaction():
                    break
                await asyncio.sleep(0.01)
            results.append(conn.is_in_transaction())
            results.append(await conn.fetchval("SELECT count(*) FROM generate_series(1, 10)"))
        finally:
            await conn.close()
        return results

    assert same_results(run(main)) == [250, [1, 2, 3], 1, False, 10]


def test_listen_notify(run, connect, loop_name, same_results):
    channel = f"events_{loop_name}"

    async def main():
        listener, notifier = await connect(), await connect()
        queue = asyncio.Queue()
        try:
            def on_notify(conn, pid, chan, payload):
                queue.put_nowait(payload)

            await listener.add_listener(channel, on_notify)
            for i in range(100):
                await notifier.execute(f"NOTIFY {channel}, 'payload {i}'")
            async with notifier.transaction():
                for i in range(100, 200):
                    await notifier.execute("SELECT pg_notify($1, $2)", channel, f"payload {i}")
            got = [await asyncio.wait_for(queue.get(), 10) for _ in range(200)]
            await listener.remove_listener(channel, on_notify)
            await notifier.execute(f"NOTIFY {channel}, 'unheard'")
            await listener.fetchval("SELECT 1")
            got.append(queue.qsize())
        finally:
            await listener.close()
            await notifier.close()
        return got

    assert same_results(run(main)) == [f"payload {i}" for i in range(200)] + [0]
