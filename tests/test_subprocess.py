"""subprocess_exec / subprocess_shell and asyncio.create_subprocess_*: on
ferroloop and stdlib asyncio alike. No assertion depends on timing: waits
are for events (a line of output, an exit), never for a duration."""

import asyncio
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

PY = sys.executable
CAT = [PY, "-c", "import sys; sys.stdout.buffer.write(sys.stdin.buffer.read())"]
SLEEPER = [PY, "-c", "import sys, time; print('ready', flush=True); time.sleep(3600)"]


def our_zombies():
    """Pids of this process's children that exited and were not reaped."""
    me = os.getpid()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] == "Z" and int(fields[1]) == me:
            found.append(int(name))
    return found


def open_fds():
    return len(os.listdir("/proc/self/fd"))


def vm_rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


class Events(asyncio.SubprocessProtocol):
    """Records the protocol calls."""

    def __init__(self, loop):
        self.calls = []
        self.data = {1: b"", 2: b""}
        self.done = loop.create_future()

    def connection_made(self, transport):
        self.calls.append("connection_made")

    def pipe_data_received(self, fd, data):
        self.data[fd] += data

    def pipe_connection_lost(self, fd, exc):
        self.calls.append(("pipe_connection_lost", fd, exc))

    def process_exited(self):
        self.calls.append("process_exited")

    def connection_lost(self, exc):
        self.calls.append("connection_lost")
        self.done.set_result(exc)


def test_subprocess_protocol_calls_in_asyncio_order(loop):
    async def main():
        transport, proto = await loop.subprocess_exec(
            lambda: Events(loop), "sh", "-c", "printf out; printf err >&2; exit 5"
        )
        assert proto.calls[0] == "connection_made"
        assert await proto.done is None
        return transport, proto

    transport, proto = loop.run_until_complete(main())
    assert proto.calls[0] == "connection_made" and proto.calls[-1] == "connection_lost"
    assert sorted(map(str, proto.calls[1:-1])) == sorted(
        map(str, [("pipe_connection_lost", 0, None), ("pipe_connection_lost", 1, None), ("pipe_connection_lost", 2, None), "process_exited"])
    )
    assert proto.data == {1: b"out", 2: b"err"}
    assert transport.get_returncode() == 5
    popen = transport.get_extra_info("subprocess")
    assert isinstance(popen, subprocess.Popen) and popen.returncode == 5
    assert transport.get_pid() == popen.pid
    assert f"pid={popen.pid} returncode=5" in repr(transport)
    transport.close()


def test_get_pipe_transport(loop):
    async def main():
        transport, proto = await loop.subprocess_exec(
            lambda: Events(loop), *CAT, stderr=subprocess.DEVNULL
        )
        stdin = transport.get_pipe_transport(0)
        stdout = transport.get_pipe_transport(1)
        assert isinstance(stdin, asyncio.WriteTransport)
        assert isinstance(stdout, asyncio.ReadTransport)
        assert transport.get_pipe_transport(2) is None
        stdin.write(b"echo")
        stdin.close()
        await proto.done
        return transport, proto

    transport, proto = loop.run_until_complete(main())
    assert proto.data[1] == b"echo"
    assert transport.get_returncode() == 0
    transport.close()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"text": True}, "text must be False"),
        ({"encoding": "utf-8"}, "encoding must be None"),
        ({"errors": "strict"}, "errors must be None"),
        ({"universal_newlines": True}, "universal_newlines must be False"),
        ({"bufsize": 1}, "bufsize must be 0"),
    ],
)
@pytest.mark.parametrize("how", ["exec", "shell"])
def test_text_mode_and_buffering_are_refused(loop, kwargs, message, how):
    async def main():
        if how == "exec":
            await loop.subprocess_exec(asyncio.SubprocessProtocol, "true", **kwargs)
        else:
            await loop.subprocess_shell(asyncio.SubprocessProtocol, "true", **kwargs)

    with pytest.raises(ValueError, match=f"^{message}$"):
        loop.run_until_complete(main())


def test_shell_and_exec_argument_checks(loop):
    with pytest.raises(ValueError, match="^cmd must be a string$"):
        loop.run_until_complete(loop.subprocess_shell(asyncio.SubprocessProtocol, ["true"]))
    with pytest.raises(ValueError, match="^shell must be True$"):
        loop.run_until_complete(loop.subprocess_shell(asyncio.SubprocessProtocol, "true", shell=False))
    with pytest.raises(ValueError, match="^shell must be False$"):
        loop.run_until_complete(loop.subprocess_exec(asyncio.SubprocessProtocol, "true", shell=True))


def test_large_stdout_is_read_with_bounded_memory(loop):
    size = 100 * 1024 * 1024

    async def main():
        proc = await asyncio.create_subprocess_exec(
            "head", "-c", str(size), "/dev/zero", stdout=subprocess.PIPE
        )
        start = vm_rss_kib()
        peak = start
        total = 0
        while chunk := await proc.stdout.read(1 << 16):
            total += len(chunk)
            peak = max(peak, vm_rss_kib()) if total % (1 << 22) < len(chunk) else peak
        assert await proc.wait() == 0
        return total, peak - start

    total, growth_kib = loop.run_until_complete(main())
    assert total == size
    assert growth_kib < 32 * 1024, f"memory grew by {growth_kib} KiB while reading"


def test_communicate_large_stdin_and_stdout_together(loop):
    data = os.urandom(1 << 20) * 8

    async def main():
        proc = await asyncio.create_subprocess_exec(*CAT, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        out, err = await proc.communicate(data)
        return out, err, proc.returncode

    out, err, code = loop.run_until_complete(main())
    assert out == data and err is None and code == 0


def test_many_concurrent_children_are_all_reaped_without_fd_leaks(loop):
    async def one(i):
        proc = await asyncio.create_subprocess_exec(
            "sh", "-c", f"echo {i}; exit {i % 7}", stdout=subprocess.PIPE
        )
        out, _ = await proc.communicate()
        return int(out), proc.returncode

    async def main():
        return await asyncio.gather(*(one(i) for i in range(200)))

    # One child first: a loop may keep a descriptor for watching children
    # (ferroloop's SIGCHLD fallback keeps one eventfd per loop).
    assert loop.run_until_complete(one(0)) == (0, 0)
    before = open_fds()
    results = loop.run_until_complete(main())
    assert results == [(i, i % 7) for i in range(200)]
    assert open_fds() == before
    assert our_zombies() == []


def test_child_closing_stdin_early_is_a_broken_pipe_not_sigpipe(loop):
    async def main():
        proc = await asyncio.create_subprocess_exec(
            PY, "-c", "import os; os.close(0); print('closed', flush=True)",
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )
        assert await proc.stdout.readline() == b"closed\n"
        # The reader is gone once the child exits: write until the loop
        # notices (the readiness of the reader going away, or EPIPE).
        with pytest.raises((BrokenPipeError, ConnectionResetError)):
            while True:
                proc.stdin.write(b"x" * 65536)
                await proc.stdin.drain()
        return await proc.wait()

    assert loop.run_until_complete(main()) == 0


def test_kill_and_terminate_a_sleeping_child(loop):
    async def run(method, expected):
        proc = await asyncio.create_subprocess_exec(*SLEEPER, stdout=subprocess.PIPE)
        assert await proc.stdout.readline() == b"ready\n"
        getattr(proc, method)()
        assert await proc.wait() == expected
        assert proc.returncode == expected
        # Once the transport is done with the child, signalling it fails.
        with pytest.raises(ProcessLookupError):
            getattr(proc, method)()

    loop.run_until_complete(run("kill", -signal.SIGKILL))
    loop.run_until_complete(run("terminate", -signal.SIGTERM))


def test_send_signal_and_a_cancelled_wait(loop):
    async def main():
        proc = await asyncio.create_subprocess_exec(*SLEEPER, stdout=subprocess.PIPE)
        assert await proc.stdout.readline() == b"ready\n"
        waiting = asyncio.ensure_future(proc.wait())
        await asyncio.sleep(0)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert proc.returncode is None
        proc.send_signal(signal.SIGUSR1)
        return await proc.wait()

    assert loop.run_until_complete(main()) == -signal.SIGUSR1


def test_close_kills_a_running_child(loop):
    async def main():
        transport, proto = await loop.subprocess_exec(lambda: Events(loop), *SLEEPER)
        transport.close()
        assert transport.is_closing()
        await proto.done
        return transport

    transport = loop.run_until_complete(main())
    assert transport.get_returncode() == -signal.SIGKILL


def test_unclosed_subprocess_transport_warns(loop):
    async def main():
        transport, proto = await loop.subprocess_exec(lambda: Events(loop), "true")
        await proto.done
        return transport

    transport = loop.run_until_complete(main())
    with pytest.warns(ResourceWarning, match="unclosed transport"):
        transport.__del__()
    assert transport.is_closing()


def test_popen_keywords_reach_the_child(loop, tmp_path):
    rfd, wfd = os.pipe()
    code = textwrap.dedent(
        f"""
        import os, sys
        os.write({wfd}, b"through pass_fds")
        print(os.getcwd(), os.environ["FERROLOOP_TEST"], os.getsid(0) == os.getpid(), sep="|")
        """
    )

    def preexec():
        os.write(wfd, b"preexec, ")

    async def main():
        with warnings.catch_warnings():
            # preexec_fn in a process with threads is discouraged, not refused.
            warnings.simplefilter("ignore", RuntimeWarning)
            proc = await asyncio.create_subprocess_exec(
                PY, "-c", code,
                stdout=subprocess.PIPE,
                cwd=tmp_path,
                env={**os.environ, "FERROLOOP_TEST": "env"},
                pass_fds=(wfd,),
                start_new_session=True,
                preexec_fn=preexec,
            )
        out, _ = await proc.communicate()
        return out.decode().strip(), proc.returncode

    try:
        out, code = loop.run_until_complete(main())
        assert os.read(rfd, 100) == b"preexec, through pass_fds"
    finally:
        os.close(rfd)
        os.close(wfd)
    assert code == 0
    assert out == f"{tmp_path}|env|True"


def test_stderr_to_stdout_and_devnull(loop):
    async def main():
        proc = await asyncio.create_subprocess_shell(
            "echo out; echo err >&2", stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        out, err = await proc.communicate()
        return out, err

    out, err = loop.run_until_complete(main())
    assert out == b"out\nerr\n" and err is None


def test_pty_as_the_childs_stdout(loop):
    master, slave = os.openpty()
    lost = loop.create_future()
    received = bytearray()

    class Reader(asyncio.Protocol):
        def data_received(self, data):
            received.extend(data)

        def connection_lost(self, exc):
            lost.set_result(exc)

    async def main():
        await loop.connect_read_pipe(Reader, open(master, "rb", 0))
        proc = await asyncio.create_subprocess_exec("sh", "-c", "printf 'from a pty'", stdout=slave)
        os.close(slave)
        code = await proc.wait()
        return code, await lost

    code, exc = loop.run_until_complete(main())
    assert code == 0
    assert received.replace(b"\r\n", b"\n") == b"from a pty"
    assert exc is None or getattr(exc, "errno", None) == 5  # EOF or EIO once the pty closed


def test_loop_in_a_non_main_thread(loop_factory):
    results = []

    def run():
        loop = loop_factory()
        try:

            async def main():
                procs = [
                    await asyncio.create_subprocess_exec("sh", "-c", f"exit {i}", stdout=subprocess.DEVNULL)
                    for i in range(5)
                ]
                return [await p.wait() for p in procs]

            results.append(loop.run_until_complete(main()))
        finally:
            loop.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert results == [[0, 1, 2, 3, 4]]
    assert our_zombies() == []


def test_child_running_its_own_ferroloop_with_signal_handlers(loop):
    code = textwrap.dedent(
        """
        import asyncio, signal, ferroloop
        async def main():
            loop = asyncio.get_running_loop()
            got = loop.create_future()
            loop.add_signal_handler(signal.SIGINT, got.set_result, "SIGINT")
            print("ready", flush=True)
            print(await got, flush=True)
            assert loop.remove_signal_handler(signal.SIGINT)
            assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        ferroloop.run(main())
        """
    )

    async def main():
        proc = await asyncio.create_subprocess_exec(PY, "-c", code, stdout=subprocess.PIPE)
        assert await proc.stdout.readline() == b"ready\n"
        proc.send_signal(signal.SIGINT)
        out = await proc.stdout.read()
        return out, await proc.wait()

    out, code = loop.run_until_complete(main())
    assert (out, code) == (b"SIGINT\n", 0)


def test_closing_the_loop_with_running_children_leaves_no_zombie(loop_kind, loop):
    if loop_kind == "asyncio":
        pytest.skip("whether asyncio reaps children of a closed loop depends on its child watcher")
    rfd, wfd = os.pipe()

    async def main():
        # The child exits once the pipe's write end is closed.
        return await asyncio.create_subprocess_exec(PY, "-c", f"import os; os.read({rfd}, 1)", pass_fds=(rfd,))

    proc = loop.run_until_complete(main())
    loop.close()
    os.close(wfd)
    os.close(rfd)
    assert wait_until_not_our_child(proc.pid)
    # The exit status went to the orphan reaper: nothing to kill on close,
    # and nothing for Popen to warn about.
    proc._transport.close()
    proc._transport._proc.returncode = 0


def wait_until_not_our_child(pid):
    """Waits for the child to be reaped (its /proc entry gone or no longer
    our child); a bound on the wait only guards against a hang."""
    for _ in range(6000):
        try:
            with open(f"/proc/{pid}/stat") as f:
                if int(f.read().rsplit(")", 1)[1].split()[1]) != os.getpid():
                    return True
        except OSError:
            return True
        time.sleep(0.01)
    return False


def test_sigchld_fallback_in_a_fresh_interpreter():
    """The SIGCHLD fallback (forced with FERROLOOP_PIDFD=0): children
    reaped from the main thread and from another thread, a killed child,
    and a loop closed while its child runs."""
    code = textwrap.dedent(
        """
        import asyncio, os, signal, subprocess, sys, threading, time, ferroloop
        from ferroloop import _core
        assert _core.child_watch_mode() == "sigchld", _core.child_watch_mode()

        async def batch():
            procs = [await asyncio.create_subprocess_exec("sh", "-c", f"exit {i % 5}") for i in range(50)]
            codes = [await p.wait() for p in procs]
            assert codes == [i % 5 for i in range(50)], codes
            p = await asyncio.create_subprocess_exec("sleep", "1000")
            p.kill()
            assert await p.wait() == -signal.SIGKILL
            out = await (await asyncio.create_subprocess_exec("echo", "hi", stdout=subprocess.PIPE)).communicate()
            assert out == (b"hi\\n", None), out

        ferroloop.run(batch())
        errors = []
        def in_thread():
            try:
                ferroloop.run(batch())
            except BaseException as e:
                errors.append(e)
        t = threading.Thread(target=in_thread)
        t.start(); t.join()
        assert not errors, errors

        loop = ferroloop.new_event_loop()
        rfd, wfd = os.pipe()
        async def start():
            return await asyncio.create_subprocess_exec(sys.executable, "-c", f"import os; os.read({rfd}, 1)", pass_fds=(rfd,))
        proc = loop.run_until_complete(start())
        loop.close()
        os.close(wfd)
        def ours(pid):
            try:
                with open(f"/proc/{pid}/stat") as f:
                    return int(f.read().rsplit(")", 1)[1].split()[1]) == os.getpid()
            except OSError:
                return False
        while ours(proc.pid):
            time.sleep(0.01)
        proc._transport._proc.returncode = 0
        print("ok")
        """
    )
    env = {**os.environ, "FERROLOOP_PIDFD": "0"}
    result = subprocess.run([PY, "-c", code], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "ok\n"


@pytest.mark.parametrize("name", ["SafeChildWatcher", "FastChildWatcher", "ThreadedChildWatcher", "PidfdChildWatcher"])
def test_child_watchers_on_the_policy_do_not_break_ferroloop(name):
    watcher_class = getattr(asyncio, name, None)
    if watcher_class is None:
        pytest.skip(f"asyncio has no {name}")
    policy = asyncio.get_event_loop_policy()
    loop = ferroloop.new_event_loop()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            watcher = watcher_class()
            watcher.attach_loop(loop)
            policy.set_child_watcher(watcher)

        async def main():
            procs = [await asyncio.create_subprocess_exec("sh", "-c", f"exit {i}") for i in range(10)]
            return [await p.wait() for p in procs]

        codes = loop.run_until_complete(main())
        # A watcher that reaps every child (FastChildWatcher) may take the
        # status first: asyncio then reports 255 too.
        assert all(c == i or c == 255 for i, c in enumerate(codes)), codes
        if name != "FastChildWatcher":
            assert codes == list(range(10))
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            policy.set_child_watcher(None)
            watcher.attach_loop(None)
            watcher.close()
        loop.close()
    assert our_zombies() == []


def test_a_child_that_cannot_be_watched_is_killed_and_reaped(loop_kind, loop):
    if loop_kind == "asyncio":
        pytest.skip("ferroloop's own child watching")
    started = []

    def refuse(pid, callback):
        started.append(pid)
        raise OSError(24, "Too many open files")

    loop._watch_child = refuse

    async def main():
        await asyncio.create_subprocess_exec(*SLEEPER)

    with pytest.raises(OSError, match="Too many open files"):
        loop.run_until_complete(main())
    [pid] = started
    assert wait_until_not_our_child(pid)


def test_signalling_an_exited_child_does_not_take_its_status(loop_kind, loop):
    if loop_kind == "asyncio":
        pytest.skip("asyncio 3.11 and 3.12 poll the child in send_signal, which can reap it (gh-87744)")

    async def main():
        # The child exits once its input ends, below, where this coroutine
        # does not yield to the loop (which could otherwise reap it first).
        read_end, write_end = os.pipe()
        proc = await asyncio.create_subprocess_exec("sh", "-c", "read line; exit 3", stdin=read_end)
        os.close(read_end)
        os.close(write_end)
        # Wait until the child has exited, leaving it to the loop to reap.
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
        proc.send_signal(signal.SIGUSR1)
        proc.terminate()
        return await proc.wait()

    assert loop.run_until_complete(main()) == 3
