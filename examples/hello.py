"""A small asyncio program: run it with `python -m ferroloop examples/hello.py`.

It is plain asyncio; under `python -m ferroloop` it runs on ferroloop.
"""

import asyncio


async def ticker(name, delay, count):
    for i in range(count):
        await asyncio.sleep(delay)
        yield f"{name} tick {i}"


async def main():
    loop = asyncio.get_running_loop()
    print(f"running on {type(loop).__module__}.{type(loop).__name__}")
    async for line in ticker("fast", 0.01, 3):
        print(line)
    results = await asyncio.gather(*(asyncio.sleep(0.01 * i, result=i) for i in range(5)))
    print("gathered", results)
    print("from a thread:", await asyncio.to_thread(sum, range(10)))


if __name__ == "__main__":
    asyncio.run(main())
