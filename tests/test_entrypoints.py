"""ferroloop.run, install, EventLoopPolicy, python -m ferroloop, Ctrl-C."""

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import ferroloop


def test_new_event_loop_is_an_abstract_event_loop():
    loop = ferroloop.new_event_loop()
    try:
        assert isinstance(loop, asyncio.AbstractEventLoop)
        assert isinstance(loop, ferroloop.Loop)
    finally:
        loop.close()


def test_run_returns_result_on_a_ferroloop_loop():
    async def main(x):
        return type(asyncio.get_running_loop()), x * 2

    loop_type, result = ferroloop.run(main(21))
    assert loop_type is ferroloop.Loop
    assert result == 42
    assert asyncio.events._get_running_loop() is None


def test_run_shuts_down_generators_and_executor():
    log = []

    async def gen():
        try:
            yield 1
        finally:
            await asyncio.sleep(0)
            log.append("gen closed")

    async def main():
        g = gen()
        await g.__anext__()
        await asyncio.get_running_loop().run_in_executor(None, lambda: None)
        main.loop = asyncio.get_running_loop()
        main.g = g

    ferroloop.run(main())
    assert log == ["gen closed"]
    assert main.loop.is_closed()
    del main.g, main.loop


def test_run_debug_flag():
    async def main():
        return asyncio.get_running_loop().get_debug()

    assert ferroloop.run(main(), debug=True) is True
    assert ferroloop.run(main(), debug=False) is False


def test_run_rejects_non_coroutines():
    with pytest.raises(ValueError, match="a coroutine was expected"):
        ferroloop.run(42)


def test_run_inside_running_loop_raises():
    async def main():
        coro = asyncio.sleep(0)
        try:
            with pytest.raises(RuntimeError, match="cannot be called from a running event loop"):
                ferroloop.run(coro)
        finally:
            coro.close()

    ferroloop.run(main())


def test_install_and_policy():
    old = asyncio.get_event_loop_policy()
    try:
        ferroloop.install()
        assert isinstance(asyncio.get_event_loop_policy(), ferroloop.EventLoopPolicy)
        loop = asyncio.new_event_loop()
        assert isinstance(loop, ferroloop.Loop)
        loop.close()

        async def main():
            return type(asyncio.get_running_loop())

        assert asyncio.run(main()) is ferroloop.Loop
    finally:
        asyncio.set_event_loop_policy(old)


SCRIPT = """
import asyncio, sys

async def main():
    loop = asyncio.get_running_loop()
    print(type(loop).__module__, type(loop).__name__, sys.argv[1:], __name__)

asyncio.run(main())
loop = asyncio.new_event_loop()
print(type(loop).__name__)
loop.close()
"""


def test_python_m_ferroloop_runs_script(tmp_path):
    script = tmp_path / "app.py"
    script.write_text(SCRIPT)
    out = subprocess.run(
        [sys.executable, "-m", "ferroloop", str(script), "a", "--b"],
        capture_output=True, text=True, check=True, cwd=tmp_path,
    )
    assert out.stdout.splitlines() == ["ferroloop._loop Loop ['a', '--b'] __main__", "Loop"]


def test_python_m_ferroloop_runs_module(tmp_path):
    (tmp_path / "appmod.py").write_text(SCRIPT)
    out = subprocess.run(
        [sys.executable, "-m", "ferroloop", "-m", "appmod", "x"],
        capture_output=True, text=True, check=True, cwd=tmp_path,
    )
    assert out.stdout.splitlines() == ["ferroloop._loop Loop ['x'] __main__", "Loop"]


def test_python_m_ferroloop_usage():
    out = subprocess.run([sys.executable, "-m", "ferroloop"], capture_output=True, text=True)
    assert out.returncode == 2
    assert "usage" in out.stderr


def test_python_m_ferroloop_propagates_exit_code(tmp_path):
    script = tmp_path / "exit.py"
    script.write_text("import sys; sys.exit(3)\n")
    out = subprocess.run([sys.executable, "-m", "ferroloop", str(script)])
    assert out.returncode == 3


INTERRUPTIBLE = {
    "ferroloop.run": "import ferroloop, asyncio\nprint('ready', flush=True)\nferroloop.run(asyncio.sleep(60))",
    "asyncio.run": "import asyncio\nprint('ready', flush=True)\nasyncio.run(asyncio.sleep(60))",
    "ferroloop run_forever": (
        "import ferroloop\nloop = ferroloop.new_event_loop()\nprint('ready', flush=True)\nloop.run_forever()"
    ),
    "asyncio run_forever": (
        "import asyncio\nloop = asyncio.SelectorEventLoop()\nprint('ready', flush=True)\nloop.run_forever()"
    ),
    "ferroloop timer wait": (
        "import ferroloop\nloop = ferroloop.new_event_loop()\nloop.call_later(60, print)\n"
        "print('ready', flush=True)\nloop.run_forever()"
    ),
}


@pytest.mark.parametrize("case", sorted(INTERRUPTIBLE))
def test_ctrl_c_interrupts_a_waiting_loop(case):
    proc = subprocess.Popen(
        [sys.executable, "-c", INTERRUPTIBLE[case]],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(0.2)  # let it block in the poller
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
        elapsed = time.monotonic() - t0
    finally:
        proc.kill()
        proc.wait()
    assert "KeyboardInterrupt" in err
    assert proc.returncode != 0
    assert elapsed < 5
