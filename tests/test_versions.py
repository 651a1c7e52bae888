"""What ferroloop does to the interpreter it runs on: importing it changes
nothing a program of the standard library could see, and the features that
differ between Python versions follow the running asyncio."""

import subprocess
import sys
import textwrap

import pytest


def run_python(code):
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


TASK_NAMES = """
    import asyncio
    {imports}

    async def child():
        return asyncio.current_task().get_name()

    async def main():
        names = [asyncio.current_task().get_name()]
        names += await asyncio.gather(child(), child())
        names.append(asyncio.Task(child()).get_name())
        return names

    print(asyncio.run(main()))
    loop = asyncio.new_event_loop()
    print(loop.run_until_complete(main()))
    loop.close()
"""


@pytest.mark.parametrize("imports", ["import ferroloop", "import ferroloop, ferroloop._loop, ferroloop._core"])
def test_importing_ferroloop_keeps_asyncio_task_numbering(imports):
    # The native loop learns the type of the C Task's step callback from a
    # Task it makes at import; that Task must not take a number from the
    # counter behind asyncio's automatic names ("Task-1", "Task-2", ...).
    without = run_python(TASK_NAMES.format(imports=""))
    with_ferroloop = run_python(TASK_NAMES.format(imports=imports))
    assert with_ferroloop == without
    assert without.splitlines()[0] == "['Task-1', 'Task-2', 'Task-3', 'Task-4']"


def test_ferroloop_task_numbering_matches_asyncio():
    code = """
        import asyncio
        import ferroloop

        async def main():
            return asyncio.current_task().get_name()

        print({first}(main()), {second}(main()))
    """
    on_asyncio = run_python(code.format(first="asyncio.run", second="asyncio.run"))
    on_ferroloop = run_python(code.format(first="ferroloop.run", second="ferroloop.run"))
    mixed = run_python(code.format(first="asyncio.run", second="ferroloop.run"))
    assert on_asyncio == on_ferroloop == mixed
    assert on_asyncio.split()[0] == "Task-1"
