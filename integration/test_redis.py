"""redis-py's asyncio client against a real Redis (integration/servers.py):
thousands of commands, pipelines, and pub/sub consumed by an asynchronous
generator that is abandoned mid-iteration."""

import asyncio
import gc

import pytest

from conftest import require

redis_asyncio = require("redis.asyncio")


@pytest.fixture
def client_factory(redis_server, loop_name):
    def make(**kwargs):
        return redis_asyncio.Redis(host=redis_server.host, port=redis_server.port, **kwargs)

    return make


def test_thousands_of_commands(run, client_factory, loop_name, same_results):
    prefix = f"{loop_name}:cmd:"

    async def main():
        client = client_factory()
        try:
            for i in range(2000):
                await client.set(prefix + str(i), i)
            values = [int(await client.get(prefix + str(i))) for i in range(2000)]
            # Concurrent commands share the client's connection pool (at
            # most 100 connections by default: 50 commands at a time).
            for _ in range(20):
                await asyncio.gather(*(client.incr(prefix + "counter") for _ in range(50)))
            counter = int(await client.get(prefix + "counter"))
            deleted = await client.delete(*[prefix + str(i) for i in range(2000)], prefix + "counter")
        finally:
            await client.aclose()
        return values == list(range(2000)), counter, deleted

    assert same_results(run(main)) == (True, 1000, 2001)


def test_pipelines(run, client_factory, loop_name, same_results):
    key = f"{loop_name}:pipe"

    async def main():
        client = client_factory(decode_responses=True)
        try:
            async with client.pipeline(transaction=True) as pipe:
                pipe.delete(key)
                for i in range(1000):
                    pipe.rpush(key, i)
                pipe.llen(key)
                results = await pipe.execute()
            async with client.pipeline(transaction=False) as pipe:
                for i in range(0, 1000, 100):
                    pipe.lindex(key, i)
                picked = await pipe.execute()
            # WATCH/MULTI: a transaction retried when the key changes.
            async with client.pipeline(transaction=True) as pipe:
                await pipe.watch(key)
                length = await pipe.llen(key)
                pipe.multi()
                pipe.set(key + ":len", length)
                await pipe.execute()
            stored = await client.get(key + ":len")
            await client.delete(key, key + ":len")
        finally:
            await client.aclose()
        return results[-1], results[1:4], picked, stored

    assert same_results(run(main)) == (1000, [1, 2, 3], [str(i) for i in range(0, 1000, 100)], "1000")


def test_pubsub_async_generator_abandoned(run, client_factory, loop_name, same_results):
    channel = f"{loop_name}:news"

    async def main():
        client = client_factory()
        pubsub = client.pubsub()
        await pubsub.subscribe(channel)

        async def messages():
            async for message in pubsub.listen():
                if message["type"] == "message":
                    yield message["data"]

        async def publish():
            for i in range(100):
                await client.publish(channel, b"m%d" % i)

        publisher = asyncio.create_task(publish())
        received = []
        gen = messages()
        async for data in gen:
            received.append(data)
            if len(received) == 40:
                break  # abandoned mid-iteration: the loop's hooks finalize it
        await publisher
        del gen
        gc.collect()
        for _ in range(10):
            await asyncio.sleep(0)
        await pubsub.unsubscribe(channel)
        await pubsub.aclose()
        # The server forgets the subscription; the client still works.
        for _ in range(100):
            (_, subscribers), = await client.pubsub_numsub(channel)
            if not subscribers:
                break
            await asyncio.sleep(0.02)
        pong = await client.ping()
        await client.aclose()
        return received, subscribers, pong

    assert same_results(run(main)) == ([b"m%d" % i for i in range(40)], 0, True)
