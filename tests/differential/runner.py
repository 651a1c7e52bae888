"""Runs a generated program on one event loop and records what it did;
compares the records of two loops.

The trace has five streams:

- ``main``: everything whose order asyncio fixes: callbacks and coroutine
  steps (each records when it runs), results, exceptions (type and
  arguments), exception-handler calls (message, sorted context keys, the
  exception, the context variable the handler sees), the asyncio logger's
  warnings and errors (first line; not ferroloop's own diagnostics, the
  summary line of ``shutdown_asyncgens()`` in debug mode), which
  ``finally`` blocks ran, how each run of the loop ended, the final state of
  every future and task. Compared exactly.
- ``leaves_at``: the ``call_at`` timers with real delays, in the order they
  fired, and their cancellations of each other. Compared exactly: their
  deadlines are fixed offsets from one base time.
- ``leaves_later``: the ``call_later`` timers with real delays. Their
  deadlines depend on the moment they were scheduled, hence the order in
  which they fire relative to the others: compared as multisets. Whether
  any timer fired early (before its deadline, less the clock's resolution)
  is recorded with each, and must be False on both loops.
- ``threads``: callbacks queued by threads nobody waits for (their place in
  the ready queue depends on thread timing): compared as multisets.
- ``shutdown``: what happens inside ``shutdown_asyncgens()``: compared as
  multisets, because asyncio closes the generators in the order of its
  ``WeakSet`` (hash order), which it does not specify (ferroloop's is the
  order of first iteration).
- ``finalized``: the reports of futures and tasks destroyed with an
  exception nobody retrieved, or while pending: compared as multisets. When
  they are destroyed depends on the cycle collector on asyncio's loop: its
  ``Handle._run`` keeps the exception of a failed callback in a reference
  cycle (the ``context`` dict in its frame, the exception, its traceback,
  that frame), which keeps every frame then on the stack alive, with their
  locals (a task ``run_until_complete`` waits for, say), until the
  collector runs. The runner disables automatic collection while a program
  runs, and collects at the end.

Values are recorded as text where they are objects, with memory addresses
and the numbers of automatically named tasks (``Task-12``, from a counter
shared by all loops of the process) blanked out: those differ between any
two runs.
"""

import asyncio
import contextvars
import difflib
import gc
import logging
import re
import threading
import time
import traceback
from collections import Counter

from ferroloop._loop import _SHUTDOWN_SUMMARY

__all__ = ("execute", "compare", "check", "STREAMS")

STREAMS = ("main", "leaves_at", "leaves_later", "threads", "shutdown", "finalized")

VAR = contextvars.ContextVar("VAR", default="v0")

_HEX = re.compile(r"0x[0-9a-fA-F]+")
_TASK_NUMBER = re.compile(r"Task-\d+")
_WHEN = re.compile(r"when=[-+.e\d]+")

# Bounds that keep a broken loop from hanging the test: a run that needs more
# attempts than this (each after a KeyboardInterrupt), clean-up rounds,
# turns per round.
MAX_ATTEMPTS = 6
CLEANUP_ROUNDS = 8
CLEANUP_TURNS = 40


def norm(value):
    """``value`` as something comparable between two runs."""
    if isinstance(value, str):
        return _TASK_NUMBER.sub("Task-?", _HEX.sub("0x?", value))
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (tuple, list)):
        return tuple(norm(v) for v in value)
    if isinstance(value, BaseException):
        return (type(value).__name__, norm(value.args))
    return norm(repr(value))


def _task_key(task):
    name = task.get_name()
    match = re.fullmatch(r"Task-(\d+)", name)
    return ("", int(match.group(1))) if match else (name, 0)


def future_state(fut):
    if not fut.done():
        return "pending"
    if fut.cancelled():
        try:
            fut.exception()
        except asyncio.CancelledError as exc:
            return ("cancelled", norm(exc.args))
    exc = fut.exception()
    if exc is not None:
        return ("exception", norm(exc))
    return ("result", norm(fut.result()))


# The messages of reports made when a future or task is destroyed.
FINALIZER_MESSAGES = (
    "Task exception was never retrieved",
    "Future exception was never retrieved",
    "Task was destroyed but it is pending!",
)


class Trace:
    def __init__(self):
        self.streams = {name: [] for name in STREAMS}
        self.mode = "main"
        self.error = None

    def rec(self, *items):
        self.streams[self.mode].append(norm(items))

    def rec_report(self, message, *items, text=None):
        """Records an exception-handler call or a log line about
        ``message`` (``text``: all of the log line)."""
        text = message if text is None else text
        finalized = any(m in text for m in FINALIZER_MESSAGES) if isinstance(text, str) else False
        stream = "finalized" if finalized else self.mode
        self.streams[stream].append(norm((*items[:1], message, *items[1:])))

    def __len__(self):
        return len(self.streams["main"])


# What ferroloop logs in debug mode on top of what asyncio logs (its
# diagnostics, see README): not part of the comparison.
_FERROLOOP_DIAGNOSTICS = frozenset({_SHUTDOWN_SUMMARY})


class _LogRecorder(logging.Handler):
    def __init__(self, trace):
        super().__init__(logging.WARNING)
        self.trace = trace

    def emit(self, record):
        if record.msg in _FERROLOOP_DIAGNOSTICS:
            return
        exc = record.exc_info[0].__name__ if record.exc_info and record.exc_info[0] else None
        text = record.getMessage()
        first_line = text.split("\n", 1)[0]
        self.trace.rec_report(first_line, "log", record.levelname, exc, text=text)


def _no_callback(fut):  # pragma: no cover - never added
    pass


class _Session:
    """One program on one loop."""

    def __init__(self, program, loop_factory):
        self.program = program
        self.loop_factory = loop_factory
        self.trace = Trace()
        self.async_threads = []
        self.gates = []

    # -- helpers the program calls ----------------------------------------------

    def namespace(self):
        loop, rec = self.loop, self.trace.rec
        H, F, T, G = {}, {}, {}, {}
        self.H, self.F, self.T, self.G = H, F, T, G

        def fut(i):
            if i not in F:
                F[i] = loop.create_future()
            return F[i]

        def settle(i, how, value):
            f = fut(i)
            try:
                if how == "result":
                    f.set_result(value)
                    rec("settle", i, how)
                elif how == "exception":
                    f.set_exception(value)
                    rec("settle", i, how)
                else:
                    rec("settle", i, how, f.cancel() if value is None else f.cancel(value))
            except asyncio.InvalidStateError as exc:
                rec("settle", i, how, exc)

        def cancel_handle(i):
            handle = H.get(i)
            if handle is None:
                rec("cancel handle", i, "missing")
                return
            before = handle.cancelled()
            handle.cancel()
            rec("cancel handle", i, before, handle.cancelled(), _WHEN.sub("when=?", repr(handle)))

        def task_or_none(i):
            task = T.get(i)
            if task is None:
                rec("task missing", i)
                return _done_none()
            return task

        async def _done_none():
            return None

        def cancel_task(i, msg):
            task = T.get(i)
            if task is None:
                rec("cancel task", i, "missing")
                return
            rec("cancel task", i, task.cancel() if msg is None else task.cancel(msg))

        def context_with(value):
            ctx = contextvars.Context()
            ctx.run(VAR.set, value)
            return ctx

        def threadsafe_join(callback, *args):
            thread = threading.Thread(target=loop.call_soon_threadsafe, args=(callback, *args))
            thread.start()
            thread.join()

        def threadsafe_async():
            n = len(self.async_threads)
            thread = threading.Thread(target=loop.call_soon_threadsafe, args=(self._thread_leaf, n))
            self.async_threads.append(thread)
            thread.start()

        def call_soon_from_thread(i, callback):
            errors = []

            def call():
                try:
                    H[i] = loop.call_soon(callback)
                except RuntimeError as exc:
                    errors.append(exc)

            thread = threading.Thread(target=call)
            thread.start()
            thread.join()
            rec("call_soon from a thread", errors)

        def close_running_loop():
            try:
                loop.close()
            except RuntimeError as exc:
                rec("close", exc)

        def nested_run_forever():
            try:
                loop.run_forever()
            except RuntimeError as exc:
                rec("nested run_forever", exc)

        def nested_run_until_complete(i):
            try:
                loop.run_until_complete(fut(i))
            except RuntimeError as exc:
                rec("nested run_until_complete", exc)

        async def agen_steps(name, gen, n):
            for _ in range(n):
                try:
                    value = await gen.__anext__()
                except StopAsyncIteration:
                    rec(name, "exhausted")
                    return
                rec(name, "got", value)

        return {
            "__name__": f"differential_{self.program.seed}",
            "asyncio": asyncio,
            "loop": loop,
            "rec": rec,
            "H": H,
            "F": F,
            "T": T,
            "G": G,
            "BASE": self.base,
            "VAR": VAR,
            "fut": fut,
            "settle": settle,
            "cancel_handle": cancel_handle,
            "task_or_none": task_or_none,
            "cancel_task": cancel_task,
            "context_with": context_with,
            "threadsafe_join": threadsafe_join,
            "threadsafe_async": threadsafe_async,
            "nested_run_forever": nested_run_forever,
            "call_soon_from_thread": call_soon_from_thread,
            "close_running_loop": close_running_loop,
            "nested_run_until_complete": nested_run_until_complete,
            "agen_steps": agen_steps,
            "_no_callback": _no_callback,
        }

    def _thread_leaf(self, n):
        self.trace.streams["threads"].append(("thread callback", n))

    # -- exception handlers ----------------------------------------------------------

    def _handler(self, loop, context):
        exc = context.get("exception")
        self.trace.rec_report(
            context.get("message"),
            "handler",
            tuple(sorted(context)),
            exc if exc is not None else None,
            VAR.get(),
        )

    def _raising_handler(self, loop, context):
        self._handler(loop, context)
        raise RuntimeError("handler failed")

    # -- runs -----------------------------------------------------------------------------

    def _chain(self, n, last):
        """Calls ``last()`` after ``n`` further turns of the loop."""
        if n == 0:
            last()
        else:
            self.trace.rec("chain", n)
            self.loop.call_soon(self._chain, n - 1, last)

    def _after(self, spec, last):
        """Arranges for ``last()`` to run as ``spec`` says."""
        kind, value = spec
        if kind == "timer":
            self.loop.call_later(-2000 + 20 * value, last)
        else:
            self.loop.call_soon(self._chain, value, last)

    def _stop_turn(self):
        """One turn of the loop (everything ready now runs)."""
        self.loop.call_soon(self.loop.stop)
        self.loop.run_forever()

    def _attempts(self, label, first, again):
        """Calls ``first``, then ``again`` after each KeyboardInterrupt (the
        second run of the loop), recording how each ended."""
        rec = self.trace.rec
        call = first
        for _ in range(MAX_ATTEMPTS):
            try:
                result = call()
            except KeyboardInterrupt as exc:
                rec(label, "KeyboardInterrupt", exc.args)
                call = again
                continue
            except BaseException as exc:
                rec(label, "raised", exc)
                return
            rec(label, "returned", result)
            return
        rec(label, "gave up")

    def _run(self, index, kind, spec):
        loop, rec = self.loop, self.trace.rec
        label = f"run {index}"
        if kind == "forever":

            def stop():
                rec("stopper", index)
                loop.stop()

            self._after(spec, stop)

            def again():
                loop.call_soon(loop.stop)
                return loop.run_forever()

            self._attempts(label, loop.run_forever, again)
            return
        what, value = spec
        if what in ("future", "timer"):
            gate = loop.create_future()

            def resolve():
                rec("gate", index, gate.done())
                if not gate.done():
                    gate.set_result(f"gate {index}")

            self._after(spec, resolve)
        elif what == "task":
            gate = loop.create_task(value(), name=f"gate{index}")
        else:
            gate = value()
        self.gates.append(gate)

        def again():
            if asyncio.isfuture(gate) and not gate.done():
                return loop.run_until_complete(gate)
            self._stop_turn()
            return "turn"

        self._attempts(label, lambda: loop.run_until_complete(gate), again)

    def _turns_until_quiet(self, label):
        """Runs turns until one records nothing in the main stream."""
        for _ in range(CLEANUP_TURNS):
            before = len(self.trace)
            self._attempts(label, self._stop_turn, self._stop_turn)
            # The attempt itself added one record.
            if len(self.trace) == before + 1:
                return
        self.trace.rec(label, "not quiet")

    def _join_threads(self):
        """Waits for the threads queueing callbacks, and runs what they
        queued (and the threads that started)."""
        joined = 0
        while joined < len(self.async_threads):
            for thread in self.async_threads[joined:]:
                thread.join()
                joined += 1
            self._turns_until_quiet("threads")

    def _cleanup(self):
        """Cancels what is left (futures, then tasks by name), until nothing
        is pending."""
        loop, rec, F = self.loop, self.trace.rec, self.F
        for round_ in range(CLEANUP_ROUNDS):
            self._turns_until_quiet(f"cleanup {round_}")
            futures = [i for i in sorted(F) if not F[i].done()]
            tasks = sorted(asyncio.all_tasks(loop), key=_task_key)
            if not futures and not tasks:
                return
            for i in futures:
                rec("cleanup future", i, F[i].cancel("cleanup"))
            for task in tasks:
                rec("cleanup task", task.get_name(), task.cancel("cleanup"))
        rec("cleanup", "gave up")

    def _wait(self, label, fut):
        """Runs the loop until ``fut`` is done, again if something stops it
        earlier (the rest of the program is done by now: the timers and
        threads this waits for only record in their own streams)."""
        for _ in range(MAX_ATTEMPTS):
            if fut.done():
                return
            # Whether this waits at all depends on the clock: it records
            # only what should not happen.
            try:
                self.loop.run_until_complete(fut)
            except BaseException as exc:
                self.trace.rec(label, "raised", exc)
        self.trace.rec(label, "gave up")

    def _leaves(self):
        """Schedules the timers of ``LEAVES``; returns a future done when
        each has fired or was cancelled."""
        loop, streams = self.loop, self.trace.streams
        specs = self.namespace_["LEAVES"]
        handles, fired = [], set()
        done = loop.create_future()

        def settle_if_all():
            if not done.done() and all(k in fired or h.cancelled() for k, h in enumerate(handles)):
                done.set_result(None)

        def leaf(k):
            kind, _, cancels = specs[k]
            early = loop.time() + 1e-9 < handles[k].when()
            stream = streams["leaves_" + kind]
            stream.append(("fired", k, "early" if early else "on time"))
            fired.add(k)
            for j in cancels:
                handles[j].cancel()
                stream.append(("cancelled", j))
            settle_if_all()

        for k, (kind, seconds, _) in enumerate(specs):
            if kind == "at":
                handles.append(loop.call_at(self.base + seconds, leaf, k))
            else:
                handles.append(loop.call_later(seconds, leaf, k))
        self.settle_leaves = settle_if_all
        return done

    def _wake(self):
        """Waits for a future another thread completes while the loop sleeps
        in its poll (nothing else is pending by now)."""
        loop = self.loop
        woken = loop.create_future()

        def later():
            time.sleep(0.001)
            loop.call_soon_threadsafe(woken.set_result, "woken")

        thread = threading.Thread(target=later)
        thread.start()
        self._wait("wake", woken)
        thread.join()
        self.trace.rec("wake", woken.result())

    # -- the program ----------------------------------------------------------------

    def execute(self):
        self.loop = loop = self.loop_factory()
        rec = self.trace.rec
        logger = logging.getLogger("asyncio")
        log_handler = _LogRecorder(self.trace)
        logger.addHandler(log_handler)
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            self.base = loop.time()
            ns = self.namespace_ = self.namespace()
            exec(self.program.code, ns)
            options = ns["OPTIONS"]
            loop.set_debug(options["debug"])
            # Never warn about slow callbacks: that depends on the clock.
            loop.slow_callback_duration = 1e9
            handler = options["handler"]
            if handler != "default":
                loop.set_exception_handler(self._handler if handler == "record" else self._raising_handler)
            if options["eager"] and hasattr(asyncio, "eager_task_factory"):
                loop.set_task_factory(asyncio.eager_task_factory)
            leaves_done = self._leaves()
            for index, (kind, setup, spec) in enumerate(ns["RUNS"]):
                try:
                    setup()
                except BaseException as exc:  # not expected: the programs' set-ups do not raise
                    rec("setup raised", exc)
                self._run(index, kind, spec)
            self._join_threads()
            self._cleanup()
            self._join_threads()
            self.settle_leaves()
            self._wait("leaves", leaves_done)
            if options["wake"]:
                self._wake()
            for i in sorted(self.F):
                rec("F", i, future_state(self.F[i]))
            for i in sorted(self.T):
                rec("T", i, future_state(self.T[i]))
            for index, gate in enumerate(self.gates):
                if asyncio.isfuture(gate):
                    rec("gate", index, future_state(gate))
            self.trace.mode = "shutdown"
            self._attempts("shutdown_asyncgens", lambda: loop.run_until_complete(loop.shutdown_asyncgens()), self._stop_turn)
            self.trace.mode = "main"
            self._cleanup()
            self._join_threads()
            rec("close")
            loop.close()
            # What the program still holds goes now, with the loop closed
            # (tasks destroyed while pending are reported).
            for table in (self.H, self.F, self.T, self.G):
                table.clear()
            ns.clear()
            self.gates.clear()
            del ns, self.namespace_, leaves_done
            # Automatic collection being off, everything the program made is
            # still in the youngest generation.
            gc.collect(0)
            rec("end")
        except BaseException:
            self.trace.error = traceback.format_exc()
        finally:
            if was_enabled:
                gc.enable()
            logger.removeHandler(log_handler)
            if not loop.is_closed():
                try:
                    loop.close()
                except BaseException:  # a loop left running by a broken run
                    pass
        return self.trace


def execute(program, loop_factory):
    """The trace of ``program`` on a new loop made by ``loop_factory``.
    The program runs in a fresh ``contextvars`` context."""
    session = _Session(program, loop_factory)
    return contextvars.Context().run(session.execute)


def _multiset_difference(a, b):
    ca, cb = Counter(a), Counter(b)
    return ca - cb, cb - ca


def compare(a, b, names=("ferroloop", "asyncio")):
    """None if traces ``a`` and ``b`` agree, else a description of the first
    difference."""
    problems = []
    for trace, name in ((a, names[0]), (b, names[1])):
        if trace.error:
            problems.append(f"the runner failed on {name}:\n{trace.error}")
    for stream in STREAMS:
        x, y = a.streams[stream], b.streams[stream]
        if stream in ("main", "leaves_at"):
            if x != y:
                diff = difflib.unified_diff(
                    [repr(e) for e in y], [repr(e) for e in x], names[1], names[0], lineterm="", n=4
                )
                problems.append(f"stream {stream} differs:\n" + "\n".join(diff))
        else:
            only_x, only_y = _multiset_difference(x, y)
            if only_x or only_y:
                problems.append(
                    f"stream {stream} differs (as multisets):\n"
                    f"  only on {names[0]}: {sorted(only_x.elements(), key=repr)}\n"
                    f"  only on {names[1]}: {sorted(only_y.elements(), key=repr)}"
                )
    for trace, name in ((a, names[0]), (b, names[1])):
        early = [e for s in ("leaves_at", "leaves_later") for e in trace.streams[s] if "early" in e]
        if early:
            problems.append(f"timers fired early on {name}: {early}")
    return "\n".join(problems) or None


def _stdlib_refuses_nested_run_cleanly():
    """Whether asyncio's loop, refusing a nested ``run_forever()``, goes on
    running. 3.13.0's does not: its ``run_forever()`` runs its clean-up even
    when its set-up raised, so the loop then believes it is not running
    (CPython gh-130145; README lists ferroloop's keeping on running among
    its deliberate differences). Programs call ``run_forever()`` from inside
    the loop only where asyncio handles it."""
    loop = asyncio.SelectorEventLoop()

    async def probe():
        try:
            loop.run_forever()
        except RuntimeError:
            pass
        return loop.is_running()

    try:
        return loop.run_until_complete(probe())
    finally:
        loop.close()


NESTED_RUN_FOREVER = _stdlib_refuses_nested_run_cleanly()


def check(seed, factories):
    """Runs the program of ``seed`` on the two loops ``factories`` (name ->
    factory, ferroloop first); returns the program, both traces and the
    description of their difference (None if they agree)."""
    from .generator import generate

    program = generate(seed, nested_run_forever=NESTED_RUN_FOREVER)
    names = tuple(factories)
    traces = [execute(program, factories[name]) for name in names]
    return program, traces, compare(traces[0], traces[1], names)
