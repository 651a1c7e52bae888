"""Subprocesses: ``subprocess_exec`` and ``subprocess_shell``, with
asyncio's semantics, order of protocol calls and messages.

The child is started by ``subprocess.Popen`` (vfork and exec, in C); its
pipes become native pipe transports through ``connect_read_pipe`` and
``connect_write_pipe``; its exit is watched by the loop's poller
(``_core.ChildWatch``: a pidfd per child, or the SIGCHLD fallback), never
by a thread per child, and only that child is reaped. A
``SubprocessProtocol`` sees ``connection_made``, then ``pipe_data_received``
and ``pipe_connection_lost`` for each pipe and ``process_exited`` (in
whatever order the events happen), then ``connection_lost``, as with
asyncio.

Where ferroloop differs from asyncio (deliberately):

- asyncio's child watchers (3.11, 3.12) are not used: a watcher set on the
  policy is ignored (and harmless; one that reaps every child, as
  ``FastChildWatcher`` does, only makes the exit status unknown, as it does
  for asyncio's own loop).
- ``send_signal``, ``terminate`` and ``kill`` signal the child through its
  pidfd (exactly that process) and never poll it, so they cannot reap it
  behind the loop's back (asyncio 3.11 and 3.12 call ``Popen.send_signal``,
  which does); ``close()`` likewise checks whether the child exited without
  reaping it.
- A child whose exit status was taken by other code (``Popen.wait()``, a
  ``waitpid(-1)`` elsewhere) gets ``Popen.returncode`` when ``Popen`` knows
  it, else asyncio's 255 and warning.
- When the loop is closed while children still run, they are reaped by the
  process's one orphan reaper thread when they exit: no zombie is left.
"""

import collections
import signal
import subprocess
import warnings

from asyncio import protocols, transports

from . import _core
from ._hooks import logger

__all__ = ("SubprocessMixin",)

# "pidfd" or "sigchld", decided once per process by the native module.
_CHILD_WATCH_MODE = _core.child_watch_mode()


def _format_pipe(fd):
    if fd == subprocess.PIPE:
        return "<pipe>"
    if fd == subprocess.STDOUT:
        return "<stdout>"
    return repr(fd)


def _check_text_mode(bufsize, text, encoding, errors):
    """asyncio's refusals of what would make the pipes text or buffered."""
    if bufsize != 0:
        raise ValueError("bufsize must be 0")
    if text:
        raise ValueError("text must be False")
    if encoding is not None:
        raise ValueError("encoding must be None")
    if errors is not None:
        raise ValueError("errors must be None")


class _WritePipeProtocol(protocols.BaseProtocol):
    """The protocol of the child's stdin pipe: forwards flow control and
    the loss of the pipe to the subprocess transport."""

    def __init__(self, proc, fd):
        self.proc = proc
        self.fd = fd
        self.pipe = None
        self.disconnected = False

    def connection_made(self, transport):
        self.pipe = transport

    def __repr__(self):
        return f"<{type(self).__name__} fd={self.fd} pipe={self.pipe!r}>"

    def connection_lost(self, exc):
        self.disconnected = True
        self.proc._pipe_connection_lost(self.fd, exc)
        self.proc = None

    def pause_writing(self):
        self.proc._protocol.pause_writing()

    def resume_writing(self):
        self.proc._protocol.resume_writing()


class _ReadPipeProtocol(_WritePipeProtocol, protocols.Protocol):
    """The protocol of the child's stdout or stderr pipe."""

    def data_received(self, data):
        self.proc._pipe_data_received(self.fd, data)


class SubprocessTransport(transports.SubprocessTransport):
    """A child process and its pipes, as an ``asyncio.SubprocessTransport``;
    ``get_extra_info('subprocess')`` is the ``subprocess.Popen``."""

    def __init__(
        self, loop, protocol, args, shell, stdin, stdout, stderr, bufsize, waiter=None, extra=None, **kwargs
    ):
        super().__init__(extra)
        self._closed = False
        self._protocol = protocol
        self._loop = loop
        self._proc = None
        self._pid = None
        self._returncode = None
        self._exit_waiters = []
        self._pending_calls = collections.deque()
        self._pipes = {}
        self._finished = False
        self._watch = None
        for fd, how in enumerate((stdin, stdout, stderr)):
            if how == subprocess.PIPE:
                self._pipes[fd] = None
        try:
            self._proc = subprocess.Popen(
                args,
                shell=shell,
                stdin=stdin,
                stdout=stdout,
                stderr=stderr,
                universal_newlines=False,
                bufsize=bufsize,
                **kwargs,
            )
        except BaseException:
            self.close()
            raise
        self._pid = self._proc.pid
        self._extra["subprocess"] = self._proc
        if loop.get_debug():
            program = args if isinstance(args, (bytes, str)) else args[0]
            logger().debug("process %r created: pid %s", program, self._pid)
        try:
            self._watch = loop._watch_child(self._pid, self._child_exited)
        except BaseException:
            # Out of descriptors, say: the child is not left running, nor
            # unreaped.
            self._proc.kill()
            self._proc.wait()
            self.close()
            raise
        loop.create_task(self._connect_pipes(waiter))

    def __repr__(self):
        info = [type(self).__name__]
        if self._closed:
            info.append("closed")
        if self._pid is not None:
            info.append(f"pid={self._pid}")
        if self._returncode is not None:
            info.append(f"returncode={self._returncode}")
        elif self._pid is not None:
            info.append("running")
        else:
            info.append("not started")
        stdin = self._pipes.get(0)
        if stdin is not None:
            info.append(f"stdin={stdin.pipe}")
        stdout, stderr = self._pipes.get(1), self._pipes.get(2)
        if stdout is not None and stderr is stdout:
            info.append(f"stdout=stderr={stdout.pipe}")
        else:
            if stdout is not None:
                info.append(f"stdout={stdout.pipe}")
            if stderr is not None:
                info.append(f"stderr={stderr.pipe}")
        return f"<{' '.join(info)}>"

    def __del__(self, _warn=warnings.warn):
        if not self._closed:
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            self.close()

    def set_protocol(self, protocol):
        self._protocol = protocol

    def get_protocol(self):
        return self._protocol

    def is_closing(self):
        return self._closed

    def close(self):
        """Close the pipes; kill the child if it is still running."""
        if self._closed:
            return
        self._closed = True
        for proto in self._pipes.values():
            if proto is not None:
                proto.pipe.close()
        if self._proc is not None and self._returncode is None and not self._child_has_exited():
            if self._loop.get_debug():
                logger().warning("Close running child process: kill %r", self)
            try:
                self._proc.kill()
            except (ProcessLookupError, PermissionError):
                # Gone already, or running set-uid.
                pass

    def _child_has_exited(self):
        """Whether the child exited, without reaping it (asyncio asks
        ``Popen.poll()``, which reaps it behind the watcher's back)."""
        if self._proc.returncode is not None:
            return True
        watch = self._watch
        return watch.has_exited() if watch is not None else self._proc.poll() is not None

    def get_pid(self):
        return self._pid

    def get_returncode(self):
        return self._returncode

    def get_pipe_transport(self, fd):
        if fd in self._pipes:
            return self._pipes[fd].pipe
        return None

    def _check_proc(self):
        if self._proc is None:
            raise ProcessLookupError()

    def send_signal(self, signal):
        self._check_proc()
        try:
            self._watch.send_signal(signal)
        except ProcessLookupError:
            pass

    def terminate(self):
        self.send_signal(signal.SIGTERM)

    def kill(self):
        self.send_signal(signal.SIGKILL)

    async def _connect_pipes(self, waiter):
        try:
            proc = self._proc
            loop = self._loop
            if proc.stdin is not None:
                _, pipe = await loop.connect_write_pipe(lambda: _WritePipeProtocol(self, 0), proc.stdin)
                self._pipes[0] = pipe
            if proc.stdout is not None:
                _, pipe = await loop.connect_read_pipe(lambda: _ReadPipeProtocol(self, 1), proc.stdout)
                self._pipes[1] = pipe
            if proc.stderr is not None:
                _, pipe = await loop.connect_read_pipe(lambda: _ReadPipeProtocol(self, 2), proc.stderr)
                self._pipes[2] = pipe
            loop.call_soon(self._protocol.connection_made, self)
            for callback, data in self._pending_calls:
                loop.call_soon(callback, *data)
            self._pending_calls = None
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            if waiter is not None and not waiter.cancelled():
                waiter.set_exception(exc)
        else:
            if waiter is not None and not waiter.cancelled():
                waiter.set_result(None)

    def _call(self, callback, *data):
        if self._pending_calls is not None:
            self._pending_calls.append((callback, data))
        else:
            self._loop.call_soon(callback, *data)

    def _pipe_connection_lost(self, fd, exc):
        self._call(self._protocol.pipe_connection_lost, fd, exc)
        self._try_finish()

    def _pipe_data_received(self, fd, data):
        self._call(self._protocol.pipe_data_received, fd, data)

    def _child_exited(self, returncode):
        """Called by the child watch once the child is reaped (``None``: it
        was reaped by other code)."""
        loop = self._loop
        loop._forget_child(self._pid)
        if returncode is None:
            returncode = self._proc.returncode
            if returncode is None:
                returncode = 255
                logger().warning("Unknown child process pid %d, will report returncode 255", self._pid)
        loop.call_soon(self._process_exited, returncode)

    def _process_exited(self, returncode):
        assert returncode is not None, returncode
        assert self._returncode is None, self._returncode
        if self._loop.get_debug():
            logger().info("%r exited with return code %r", self, returncode)
        self._returncode = returncode
        if self._proc.returncode is None:
            self._proc.returncode = returncode
        self._call(self._protocol.process_exited)
        self._try_finish()

    async def _wait(self):
        """The return code, once the child exited and every pipe closed."""
        if self._returncode is not None:
            return self._returncode
        waiter = self._loop.create_future()
        self._exit_waiters.append(waiter)
        return await waiter

    def _try_finish(self):
        assert not self._finished
        if self._returncode is None:
            return
        if all(p is not None and p.disconnected for p in self._pipes.values()):
            self._finished = True
            self._call(self._call_connection_lost, None)

    def _call_connection_lost(self, exc):
        try:
            self._protocol.connection_lost(exc)
        finally:
            for waiter in self._exit_waiters:
                if not waiter.cancelled():
                    waiter.set_result(self._returncode)
            self._exit_waiters = None
            self._loop = None
            self._proc = None
            self._protocol = None


class SubprocessMixin:
    """The subprocess methods of ``ferroloop.Loop``, and the watching of
    its children."""

    # Children watched by this loop, by pid, until they exit (or the loop
    # closes); and the SIGCHLD-mode reaper, made on first use.
    _child_watches = None
    _child_reaper = None

    def _watch_child(self, pid, callback):
        """Calls ``callback(returncode)`` once child ``pid`` has exited."""
        if _CHILD_WATCH_MODE == "pidfd":
            watch = _core.ChildWatch(self, pid, callback)
        else:
            if self._child_reaper is None:
                self._child_reaper = _core.ChildReaper(self)
            watch = _core.ChildWatch(self, pid, callback, self._child_reaper)
        if self._child_watches is None:
            self._child_watches = {}
        self._child_watches[pid] = watch
        return watch

    def _forget_child(self, pid):
        if self._child_watches is not None:
            self._child_watches.pop(pid, None)

    def _close_children(self):
        """The loop is closing: children still running are left to the
        process's orphan reaper."""
        watches, self._child_watches = self._child_watches, None
        for watch in (watches or {}).values():
            watch.detach()
        reaper, self._child_reaper = self._child_reaper, None
        if reaper is not None:
            reaper.close()

    def _log_subprocess(self, msg, stdin, stdout, stderr):
        info = [msg]
        if stdin is not None:
            info.append(f"stdin={_format_pipe(stdin)}")
        if stdout is not None and stderr == subprocess.STDOUT:
            info.append(f"stdout=stderr={_format_pipe(stdout)}")
        else:
            if stdout is not None:
                info.append(f"stdout={_format_pipe(stdout)}")
            if stderr is not None:
                info.append(f"stderr={_format_pipe(stderr)}")
        logger().debug(" ".join(info))

    async def _make_subprocess_transport(
        self, protocol, args, shell, stdin, stdout, stderr, bufsize, extra=None, **kwargs
    ):
        waiter = self.create_future()
        transport = SubprocessTransport(
            self, protocol, args, shell, stdin, stdout, stderr, bufsize, waiter=waiter, extra=extra, **kwargs
        )
        try:
            await waiter
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException:
            transport.close()
            await transport._wait()
            raise
        return transport

    async def subprocess_shell(
        self,
        protocol_factory,
        cmd,
        *,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        universal_newlines=False,
        shell=True,
        bufsize=0,
        encoding=None,
        errors=None,
        text=None,
        **kwargs,
    ):
        """Run ``cmd`` through the shell; ``(transport, protocol)``."""
        if not isinstance(cmd, (bytes, str)):
            raise ValueError("cmd must be a string")
        if universal_newlines:
            raise ValueError("universal_newlines must be False")
        if not shell:
            raise ValueError("shell must be True")
        _check_text_mode(bufsize, text, encoding, errors)
        debug_log = f"run shell command {cmd!r}"
        return await self._start_subprocess(protocol_factory, debug_log, cmd, True, stdin, stdout, stderr, kwargs)

    async def subprocess_exec(
        self,
        protocol_factory,
        program,
        *args,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        universal_newlines=False,
        shell=False,
        bufsize=0,
        encoding=None,
        errors=None,
        text=None,
        **kwargs,
    ):
        """Run ``program`` with ``args``; ``(transport, protocol)``."""
        if universal_newlines:
            raise ValueError("universal_newlines must be False")
        if shell:
            raise ValueError("shell must be False")
        _check_text_mode(bufsize, text, encoding, errors)
        debug_log = f"execute program {program!r}"
        return await self._start_subprocess(
            protocol_factory, debug_log, (program,) + args, False, stdin, stdout, stderr, kwargs
        )

    async def _start_subprocess(self, protocol_factory, debug_log, args, shell, stdin, stdout, stderr, kwargs):
        protocol = protocol_factory()
        debugging = self._debug
        if debugging:
            # The arguments are not logged: they may hold secrets, or be long.
            self._log_subprocess(debug_log, stdin, stdout, stderr)
        transport = await self._make_subprocess_transport(protocol, args, shell, stdin, stdout, stderr, 0, **kwargs)
        if debugging and self._debug:
            logger().info("%s: %r", debug_log, transport)
        return transport, protocol
