"""ferroloop's diagnostics: the report of asynchronous generators that were
never closed, the counters and timing of ``loop.stats()``, and the summary
of ``python -m ferroloop --stats``. These are ferroloop features (asyncio has
no equivalent), so they run on ferroloop loops only."""

import asyncio
import contextlib
import gc
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import warnings

import pytest

import ferroloop


@pytest.fixture
def floop():
    loop = ferroloop.new_event_loop()
    loop.errors = []
    loop.set_exception_handler(lambda lp, context: lp.errors.append(context))
    yield loop
    if not loop.is_closed():
        loop.close()
    assert loop.errors == []


def reports(caught):
    return [str(w.message) for w in caught if issubclass(w.category, ResourceWarning) and "never closed" in str(w.message)]


def run_reporting(loop, main):
    """Runs ``main()`` with the report on; returns the report messages."""
    loop._set_asyncgen_report(True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loop.run_until_complete(main())
        gc.collect()
        loop.run_until_complete(asyncio.sleep(0))
    return reports(caught)


finally_ran = []


async def ticker():
    try:
        for i in range(10):
            yield i
    finally:
        await asyncio.sleep(0)
        finally_ran.append(True)


def line_of(marker):
    """The line number of the line of this file containing ``marker``."""
    with open(__file__) as f:
        for number, line in enumerate(f, 1):
            if marker in line and "line_of(" not in line:
                return number
    raise AssertionError(marker)


def test_abandoned_by_break_is_reported_once_with_its_first_iteration(floop):
    async def main():
        async for _ in ticker():  # first iteration: break
            break
        await asyncio.sleep(0)

    messages = run_reporting(floop, main)
    assert len(messages) == 1
    message = messages[0]
    assert message.startswith("asynchronous generator ticker was never closed: first iterated at ")
    assert f"{__file__}:{line_of('# first iteration: break')} in main" in message
    assert "(task Task-" in message
    assert "contextlib.aclosing" in message


def test_abandoned_by_cancelling_the_task_is_reported(floop):
    async def consume():
        async for _ in ticker():  # first iteration: cancelled
            await asyncio.sleep(10)

    async def main():
        task = asyncio.ensure_future(consume())
        task.set_name("consumer")
        await asyncio.sleep(0.01)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await asyncio.sleep(0)

    messages = run_reporting(floop, main)
    assert len(messages) == 1
    assert f":{line_of('# first iteration: cancelled')} in consume (task consumer)" in messages[0]


def test_the_report_keeps_no_task_alive(floop):
    """A task that iterated a generator with the report on is freed when its
    last reference goes, and its exception reported as never retrieved, as
    on asyncio (the report once kept the last task it saw alive)."""

    async def fails():
        g = ticker()
        await g.__anext__()
        await g.aclose()
        raise ValueError("never retrieved")

    floop._set_asyncgen_report(True)
    task = floop.create_task(fails())
    floop.run_until_complete(asyncio.sleep(0.01))
    assert task.done()
    assert floop.errors == []
    del task
    gc.collect()
    assert [c["message"] for c in floop.errors] == ["Task exception was never retrieved"]
    floop.errors.clear()


def test_abandoned_by_an_exception_is_reported(floop):
    async def main():
        with contextlib.suppress(ZeroDivisionError):
            async for _ in ticker():  # first iteration: raises
                1 / 0
        await asyncio.sleep(0)

    messages = run_reporting(floop, main)
    assert len(messages) == 1
    assert f":{line_of('# first iteration: raises')} in main" in messages[0]


def test_last_reference_dropped_in_another_thread_is_reported(floop):
    async def main():
        gen = ticker()
        await gen.__anext__()  # first iteration: other thread
        holder = [gen]
        del gen
        thread = threading.Thread(target=holder.clear)
        thread.start()
        thread.join()
        await asyncio.sleep(0.01)

    messages = run_reporting(floop, main)
    assert len(messages) == 1
    assert f":{line_of('# first iteration: other thread')} in main" in messages[0]


def test_closed_generators_are_not_reported(floop):
    async def main():
        async with contextlib.aclosing(ticker()) as gen:
            async for _ in gen:
                break
        gen = ticker()
        await gen.__anext__()
        await gen.aclose()
        async for _ in ticker():
            pass
        left = ticker()
        await left.__anext__()
        await floop.shutdown_asyncgens()
        del left

    messages = run_reporting(floop, main)
    assert messages == []


def test_no_report_when_off(floop):
    async def main():
        async for _ in ticker():
            break
        await asyncio.sleep(0)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        floop.run_until_complete(main())
        floop.run_until_complete(asyncio.sleep(0.01))
    assert reports(caught) == []


def test_debug_mode_turns_the_report_on(floop):
    floop.set_debug(True)
    assert floop._asyncgen_report
    floop.set_debug(False)
    assert not floop._asyncgen_report


def test_asyncgen_counters_match_the_events(floop):
    async def main():
        async for _ in ticker():  # abandoned: finalized unclosed
            break
        async for _ in ticker():  # exhausted
            pass
        closed = ticker()
        await closed.__anext__()
        await closed.aclose()  # closed explicitly
        bad_cleanup = failing_close()
        await bad_cleanup.__anext__()
        left = ticker()
        await left.__anext__()
        await asyncio.sleep(0)
        before = floop.stats()["asyncgens"]
        await floop.shutdown_asyncgens()  # closes left and bad_cleanup
        return before, left, closed, bad_cleanup

    async def failing_close():
        try:
            yield 1
        finally:
            raise RuntimeError("cleanup failed")

    before, *_ = floop.run_until_complete(main())
    errors = floop.errors[:]
    floop.errors.clear()
    assert len(errors) == 1 and "an error occurred during closing" in errors[0]["message"]
    assert before == {
        "first_iterated": 5,
        "finished_or_closed": 2,
        "finalized_unclosed": 1,
        "closed_by_shutdown": 0,
        "cleanup_errors": 0,
        "alive": 3,
        "suspended": 2,
    }
    after = floop.stats()["asyncgens"]
    assert after["closed_by_shutdown"] == 2
    assert after["cleanup_errors"] == 1
    assert after["first_iterated"] == 5
    assert after["finished_or_closed"] == 2
    assert after["alive"] == 0


def test_counters_are_consistent(floop):
    async def main():
        fired = []
        handles = [floop.call_later(0.001 * i, fired.append, i) for i in range(10)]
        for h in handles[::2]:
            h.cancel()
        soon = [floop.call_soon(fired.append, "soon") for _ in range(5)]
        soon[0].cancel()
        await asyncio.sleep(0.05)
        threading.Thread(target=floop.call_soon_threadsafe, args=(fired.append, "thread")).start()
        while "thread" not in fired:
            await asyncio.sleep(0.001)
        return fired

    fired = floop.run_until_complete(main())
    stats = floop.stats()
    pending = floop._queue_sizes()[0]
    assert stats["callbacks_scheduled"] == stats["callbacks_run"] + stats["callbacks_cancelled"] + pending
    assert stats["timers_scheduled"] >= 10
    assert stats["timers_cancelled"] >= 5
    assert stats["timers_fired"] >= 5
    assert stats["callbacks_cancelled"] >= 1
    assert stats["turns"] > 0
    assert fired.count("soon") == 4
    assert "poll_seconds" not in stats and stats["timing"] is False
    floop.reset_stats()
    after = floop.stats()
    assert after["turns"] == 0 and after["callbacks_run"] == 0 and after["asyncgens"]["first_iterated"] == 0


def test_io_events_are_counted(floop):
    async def main():
        r, w = os.pipe()
        got = floop.create_future()
        floop.add_reader(r, lambda: got.done() or got.set_result(os.read(r, 10)))
        os.write(w, b"x")
        data = await got
        floop.remove_reader(r)
        os.close(r)
        os.close(w)
        return data

    assert floop.run_until_complete(main()) == b"x"
    assert floop.stats()["io_events"] >= 1


def test_timing_measures_callbacks_and_waits(floop):
    floop.set_stats(True)

    def slow():
        import time

        time.sleep(0.02)

    async def main():
        floop.call_soon(slow)
        await asyncio.sleep(0)
        await asyncio.sleep(0.02)  # a real wait in the poller

    floop.run_until_complete(main())
    stats = floop.stats()
    assert stats["timing"] is True
    assert stats["callback_seconds"] >= 0.02
    assert stats["poll_seconds"] > 0
    assert sum(stats["callback_durations"].values()) == stats["callbacks_run"]
    what, seconds = stats["slowest_callbacks"][0]
    assert "slow" in what and seconds >= 0.02
    assert len(stats["slowest_callbacks"]) <= 10


PROGRAM = textwrap.dedent(
    """
    import asyncio, os, signal, sys

    async def main(mode):
        await asyncio.sleep(0)
        if mode == "error":
            raise ValueError("boom")
        if mode == "interrupt":
            print("waiting", flush=True)
            await asyncio.sleep(30)

    asyncio.run(main(sys.argv[1]))
    """
)


@pytest.mark.parametrize("mode", ["normal", "error", "interrupt"])
def test_runner_prints_the_summary_however_the_program_ends(tmp_path, mode):
    script = tmp_path / "app.py"
    script.write_text(PROGRAM)
    proc = subprocess.Popen(
        [sys.executable, "-m", "ferroloop", "--stats", str(script), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    if mode == "interrupt":
        assert proc.stdout.readline().strip() == "waiting"
        proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert "ferroloop stats, loop 1 of 1:" in err, err
    assert "turns " in err and "async generators:" in err
    assert "waiting for I/O" in err, "--stats turns timing on"
    if mode == "normal":
        assert proc.returncode == 0
    elif mode == "error":
        assert proc.returncode == 1 and "ValueError: boom" in err
    else:
        assert proc.returncode != 0 and "KeyboardInterrupt" in err


def test_runner_debug_turns_on_debug_mode_and_the_report(tmp_path):
    script = tmp_path / "app.py"
    script.write_text(
        textwrap.dedent(
            """
            import asyncio

            async def gen():
                yield 1
                yield 2

            async def main():
                loop = asyncio.get_running_loop()
                print("debug", loop.get_debug(), loop._asyncgen_report)
                async for _ in gen():
                    break

            asyncio.run(main())
            """
        )
    )
    out = subprocess.run(
        [sys.executable, "-m", "ferroloop", "--debug", str(script)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "debug True True" in out.stdout
    assert "asynchronous generator gen was never closed" in out.stderr


def test_report_as_error_still_closes_the_generator(floop):
    """With ``-W error`` the report is an exception raised in the finalizer
    (the interpreter prints it as unraisable); the generator's cleanup still
    runs."""
    finally_ran.clear()
    floop._set_asyncgen_report(True)
    unraisable = []
    old_hook = sys.unraisablehook
    sys.unraisablehook = unraisable.append
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", ResourceWarning)

            async def main():
                async for _ in ticker():
                    break
                gc.collect()
                await asyncio.sleep(0)
                await asyncio.sleep(0)

            floop.run_until_complete(main())
    finally:
        sys.unraisablehook = old_hook
    assert finally_ran == [True]
    assert [type(u.exc_value) for u in unraisable] == [ResourceWarning]
    assert "ticker was never closed" in str(unraisable[0].exc_value)


ENV_PROGRAM = textwrap.dedent(
    """
    import asyncio, gc

    async def gen():
        yield 1
        yield 2

    async def main():
        loop = asyncio.get_running_loop()
        print("report", loop._asyncgen_report, "timing", loop.stats()["timing"], "debug", loop.get_debug())
        async for _ in gen():
            break
        gc.collect()
        await asyncio.sleep(0)

    asyncio.run(main())
    """
)


@pytest.mark.parametrize(
    "env, expected",
    [
        ({}, "report False timing False debug False"),
        ({"FERROLOOP_ASYNCGEN_DEBUG": "1"}, "report True timing False debug False"),
        ({"FERROLOOP_STATS": "1"}, "report False timing True debug False"),
        ({"PYTHONASYNCIODEBUG": "1"}, "report True timing True debug True"),
    ],
)
def test_environment_turns_the_diagnostics_on(tmp_path, env, expected):
    script = tmp_path / "app.py"
    script.write_text(ENV_PROGRAM)
    clean = {k: v for k, v in os.environ.items() if k not in ("FERROLOOP_ASYNCGEN_DEBUG", "FERROLOOP_STATS", "PYTHONASYNCIODEBUG")}
    out = subprocess.run(
        [sys.executable, "-W", "always::ResourceWarning", "-m", "ferroloop", str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean, **env},
    )
    assert out.returncode == 0, out.stderr
    assert expected in out.stdout
    reported = "asynchronous generator gen was never closed" in out.stderr
    assert reported == ("report True" in expected), out.stderr


def test_runner_flags_work_with_a_module(tmp_path):
    (tmp_path / "someapp.py").write_text(PROGRAM)
    env = {**os.environ, "PYTHONPATH": str(tmp_path) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run(
        [sys.executable, "-m", "ferroloop", "--stats", "--debug", "-m", "someapp", "normal"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    assert "ferroloop stats, loop 1 of 1:" in out.stderr


@pytest.mark.parametrize(
    "filters, shown",
    [
        ([("always", {})], True),
        ([("always", {}), ("ignore", {"category": ResourceWarning})], False),
        ([("always", {}), ("ignore", {"message": "asynchronous generator ticker was never"})], False),
        ([("always", {}), ("ignore", {"message": "something else"})], True),
        ([("ignore", {}), ("always", {"module": __name__})], True),
    ],
)
def test_the_report_follows_the_warning_filters(floop, filters, shown):
    floop._set_asyncgen_report(True)

    async def main():
        async for _ in ticker():
            break
        gc.collect()
        for _ in range(3):
            await asyncio.sleep(0)

    with warnings.catch_warnings(record=True) as caught:
        for action, kwargs in filters:
            warnings.filterwarnings(action, **kwargs)
        floop.run_until_complete(main())
    assert len(reports(caught)) == (1 if shown else 0)
    assert floop.stats()["asyncgens"]["finalized_unclosed"] == 1


def test_slowest_callbacks_name_the_task_they_stepped(floop):
    floop.set_stats(True)

    async def busy():
        time.sleep(0.02)  # a slow step

    async def main():
        await floop.create_task(busy(), name="the-busy-one")

    floop.run_until_complete(main())
    what, seconds = floop.stats()["slowest_callbacks"][0]
    assert what.startswith("step of <Task") and "the-busy-one" in what, what
    assert seconds >= 0.02


def test_shutdown_logs_one_summary_line_when_reporting(floop, caplog):
    async def main():
        kept = [ticker() for _ in range(2)] + [failing_later()]
        for gen in kept:
            await gen.__anext__()
        async for _ in ticker():  # exhausted: not in the summary
            pass
        await floop.shutdown_asyncgens()
        return kept

    async def failing_later():
        yield 1

    floop._set_asyncgen_report(True)
    with caplog.at_level("WARNING", logger="asyncio"):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            floop.run_until_complete(main())
    lines = [r.getMessage() for r in caplog.records if "shutdown_asyncgens()" in r.getMessage()]
    assert lines == [
        "shutdown_asyncgens() is closing 3 asynchronous generator(s) that were never closed: "
        "ticker (x2), test_shutdown_logs_one_summary_line_when_reporting.<locals>.failing_later"
    ]
    assert reports(caught) == []
    assert floop.stats()["asyncgens"]["closed_by_shutdown"] == 3


def test_shutdown_logs_nothing_when_not_reporting(floop, caplog):
    async def main():
        kept = ticker()
        await kept.__anext__()
        await floop.shutdown_asyncgens()

    with caplog.at_level("WARNING", logger="asyncio"):
        floop.run_until_complete(main())
    assert [r for r in caplog.records if "shutdown_asyncgens()" in r.getMessage()] == []
