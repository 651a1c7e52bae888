"""Smoke test of an installed ferroloop wheel, run by ./scripts/test in a
fresh virtualenv holding nothing but the wheel (no build tools, no source
tree on the path): the package and its native module import from
site-packages, its metadata is complete, and asyncio programs run on it
(``ferroloop.run``, ``asyncio.Runner(loop_factory=...)`` and
``python -m ferroloop``).

    python integration/smoke.py
"""

import asyncio
import importlib.metadata
import os
import pathlib
import subprocess
import sys
import sysconfig
import tempfile


def check(condition, what):
    if not condition:
        sys.exit("smoke test failed: " + what)
    print("  ok:", what)


def main():
    import ferroloop
    import ferroloop._core

    site = pathlib.Path(sysconfig.get_paths()["platlib"]).resolve()
    here = pathlib.Path(ferroloop.__file__).resolve()
    check(here.is_relative_to(site), f"ferroloop imported from site-packages ({here.parent})")
    check(pathlib.Path(ferroloop._core.__file__).suffix == ".so", "the native module ferroloop._core loads")

    dist = importlib.metadata.distribution("ferroloop")
    meta = dist.metadata
    check(meta["Version"] == ferroloop.__version__, f"version {ferroloop.__version__} in the metadata and the module")
    version = "%d.%d" % sys.version_info[:2]
    classifiers = meta.get_all("Classifier") or []
    check(f"Programming Language :: Python :: {version}" in classifiers, f"a classifier for Python {version}")
    check(meta["License-Expression"] == "MIT OR Apache-2.0", "license expression")
    licenses = meta.get_all("License-File") or []
    files = {str(f) for f in dist.files}
    check(
        sorted(licenses) == ["LICENSE-APACHE", "LICENSE-MIT"]
        and all(any(f.endswith("/licenses/" + name) for f in files) for name in licenses),
        "both license files shipped",
    )
    check(not meta.get_all("Project-URL"), "no project URLs (there is none)")
    for name in ("ferroloop/_core.pyi", "ferroloop/py.typed", "ferroloop/pytest.py"):
        check(name in files, name + " shipped")

    async def echo_and_child():
        loop = asyncio.get_running_loop()

        async def handle(reader, writer):
            writer.write(await reader.readline())
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname())
        writer.write(b"ping\n")
        line = await reader.readline()
        writer.close()
        server.close()
        await server.wait_closed()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "print('child')", stdout=asyncio.subprocess.PIPE
        )
        out, _ = await proc.communicate()
        return type(loop).__module__, line, out

    check(
        ferroloop.run(echo_and_child()) == ("ferroloop._loop", b"ping\n", b"child\n"),
        "ferroloop.run: TCP echo and a child process",
    )
    with asyncio.Runner(loop_factory=ferroloop.new_event_loop) as runner:
        check(runner.run(echo_and_child())[0] == "ferroloop._loop", "asyncio.Runner(loop_factory=ferroloop.new_event_loop)")

    with tempfile.TemporaryDirectory() as d:
        script = os.path.join(d, "program.py")
        with open(script, "w") as f:
            f.write(
                "import asyncio\n"
                "async def main():\n"
                "    await asyncio.sleep(0.01)\n"
                "    print(type(asyncio.get_running_loop()).__module__)\n"
                "asyncio.run(main())\n"
            )
        out = subprocess.run(
            [sys.executable, "-m", "ferroloop", script], capture_output=True, text=True, check=True, cwd=d
        ).stdout
    check(out == "ferroloop._loop\n", "python -m ferroloop program.py (asyncio.run on ferroloop)")
    print("smoke test passed")


if __name__ == "__main__":
    main()
