"""Random asyncio programs, written as Python source from a seed.

A program is a set of top-level functions (callbacks ``cb_N``, coroutines
``co_N``, asynchronous generators ``gen_N``, set-up functions ``setup_N``)
and three tables the runner reads (see ``runner.py``):

- ``RUNS``: the runs of the loop, in order. Each is ``("forever", setup,
  stopper)`` or ``("until", setup, gate)``: ``setup()`` runs with the loop
  stopped, then ``run_forever()`` (ended by a ``stop()`` the runner queues
  as ``stopper`` says, unless the program stops the loop earlier) or
  ``run_until_complete()`` of a gate (a future the runner resolves as the
  gate says, a task of a coroutine, or the coroutine itself).
- ``LEAVES``: timers with real, positive delays, whose callbacks only record
  (in streams of their own) and cancel each other.
- ``OPTIONS``: debug mode, which exception handler, eager tasks, whether the
  loop is woken from another thread while it waits.

The bodies call the loop directly (``loop.call_soon(cb_3, 1)``) and use the
runner's helpers for what needs a guard (``fut(i)`` creates future ``i`` on
first use, ``settle`` records an ``InvalidStateError`` instead of raising
it, ...). Every function is referenced once, so each runs at most once (a
done callback once per future it is added to).

Determinism: the generator only writes programs whose trace asyncio itself
fixes (the runner's streams relax the check where it cannot, see there):

- Timers that fire during the program are due at once: ``call_later`` with
  a negative delay, ``call_at`` a time in the past. Each takes its own slot
  of 20 seconds (``-2000 + 20 * slot``; ``call_at`` at the slot's middle), so
  no two are due at the same instant (asyncio leaves the order of timers due
  at the same instant unspecified; ferroloop's is the order they were
  scheduled in, a difference README lists) and the order of their deadlines
  is the order of their slots whenever the program takes less than 10
  seconds. Timers scheduled at least 1000 seconds ahead never fire; they are
  there to be cancelled, or left to ``close()``.
- Timers with small positive delays (``LEAVES``) fire at moments that depend
  on the clock; their callbacks touch only the leaves' streams.
- Threads: a thread that calls ``call_soon_threadsafe`` is joined by the
  code that started it (so its callback is queued at a known point), or its
  callback only records in a stream compared as a multiset.
- Coroutines await futures only where something can still complete them
  (the runner cancels whatever is left at the end), and tasks await only
  tasks created before them (no cycles); the coroutines of gates await
  nothing that could block, so every run ends.
"""

import itertools
import random

__all__ = ("Program", "generate")

# How many ops a program has at most.
MAX_BUDGET = 45
MAX_DEPTH = 5


class Program:
    """A generated program: its seed, source and features (for statistics)."""

    def __init__(self, seed, source, features):
        self.seed = seed
        self.source = source
        self.features = features
        self.code = compile(source, f"<differential {seed}>", "exec")

    def __repr__(self):
        return f"<Program seed={self.seed} features={sorted(self.features)}>"


class _Context:
    """Where a body is being written: a set-up function (loop stopped), a
    callback, or a coroutine (``safe`` for a gate: awaits nothing that may
    block; ``task`` is the task id running it, if any)."""

    def __init__(self, kind, name, depth, safe=False, task=None):
        self.kind = kind
        self.name = name
        self.depth = depth
        self.safe = safe
        self.task = task


class _Writer:
    def __init__(self, seed, nested_run_forever):
        r = self.r = random.Random(seed)
        self.seed = seed
        self.nested_run_forever = nested_run_forever
        self.names = itertools.count(1)
        self.defs = []
        self.features = set()
        self.handles = 0
        self.futures = 0
        self.tasks = 0
        self.kept_gens = []
        self.budget = r.randint(4, MAX_BUDGET)
        self.interrupts = 1 if r.random() < 0.25 else 0
        if r.random() < 0.05:
            self.interrupts = 2
        self.threads = r.random() < 0.25
        self.slots = r.sample(range(90), 90)
        self.leaves = []
        self.vars = itertools.count(1)

    # -- small pieces ------------------------------------------------------

    def chance(self, p):
        return self.r.random() < p

    def slot(self):
        """A fresh slot for a timer that is due at once (see the module's
        account of determinism)."""
        if not self.slots:
            return None
        return self.slots.pop()

    def new_name(self, prefix):
        return f"{prefix}_{next(self.names)}"

    def spend(self):
        if self.budget <= 0:
            return False
        self.budget -= 1
        return True

    def args(self):
        n = self.r.choice((0, 0, 0, 1, 2))
        values = [self.r.choice((repr(self.r.randint(0, 9)), "'x'", "None")) for _ in range(n)]
        return "".join(", " + v for v in values)

    # -- functions -----------------------------------------------------------

    def callback(self, depth, trivial=False):
        """Writes a new callback and returns its name."""
        name = self.new_name("cb")
        ctx = _Context("cb", name, depth)
        lines = [f"def {name}(*args):", f"    rec({name!r}, args, VAR.get())"]
        if not trivial:
            lines += self.body(ctx, self.r.randint(0, 4))
            if self.interrupts and self.chance(0.06):
                self.interrupts -= 1
                self.features.add("KeyboardInterrupt")
                lines.append(f"    raise KeyboardInterrupt({name!r})")
            elif self.chance(0.12):
                self.features.add("callback raises")
                exc = self.r.choice(("ValueError", "RuntimeError", "ZeroDivisionError"))
                lines.append(f"    raise {exc}('{name} failed')")
        self.defs.append("\n".join(lines))
        return name

    def coroutine(self, depth, safe=False, task=None):
        """Writes a new coroutine function and returns its name."""
        name = self.new_name("co")
        ctx = _Context("co", name, depth, safe=safe, task=task)
        lines = [f"async def {name}():", f"    rec({name!r}, 'start', VAR.get())"]
        lines += self.body(ctx, self.r.randint(1, 6))
        roll = self.r.random()
        if self.interrupts and roll < 0.04:
            self.interrupts -= 1
            self.features.add("KeyboardInterrupt")
            lines.append(f"    raise KeyboardInterrupt({name!r})")
        elif roll < 0.15:
            self.features.add("task raises")
            lines.append(f"    raise ValueError('{name} failed')")
        else:
            lines.append(f"    rec({name!r}, 'end')")
            lines.append(f"    return {name!r}")
        self.defs.append("\n".join(lines))
        return name

    def async_generator(self):
        """Writes a new asynchronous generator function and returns its
        name and how many values it yields."""
        name = self.new_name("gen")
        n = self.r.randint(1, 4)
        lines = [f"async def {name}():", "    try:"]
        for i in range(n):
            lines.append(f"        rec({name!r}, 'yield', {i})")
            lines.append(f"        yield {i}")
            if self.chance(0.5):
                lines.append("        await asyncio.sleep(0)")
        lines += [
            "    except BaseException as exc:",
            f"        rec({name!r}, 'exit', type(exc).__name__)",
            "        raise",
            "    finally:",
            f"        rec({name!r}, 'finally')",
            "        await asyncio.sleep(0)",
            f"        rec({name!r}, 'finally done')",
        ]
        if self.chance(0.1):
            lines.append(f"        raise ValueError('{name} cleanup failed')")
        self.defs.append("\n".join(lines))
        return name, n

    # -- bodies --------------------------------------------------------------

    def body(self, ctx, count):
        lines = []
        for _ in range(count):
            if not self.spend():
                break
            lines += self.op(ctx)
        return ["    " + line for line in lines]

    def op(self, ctx):
        ops = {
            "soon": 10,
            "soon_context": 2,
            "later_past": 4,
            "at_past": 3,
            "timer_far": 3,
            "cancel_handle": 5 if self.handles else 0,
            "stop": 2 if ctx.kind != "setup" else 1,
            "future": 2,
            "settle": 6,
            "done_callback": 3,
            "remove_done_callback": 1 if self.futures else 0,
            "task": 5 if ctx.depth < MAX_DEPTH else 0,
            "cancel_task": 4 if self.tasks else 0,
            "var": 2,
            "threadsafe_join": 2 if self.threads and ctx.kind != "setup" else 0,
            "threadsafe_async": 1 if self.threads else 0,
            "nested_run": 1 if ctx.kind != "setup" else 0,
            "is_running": 1,
            "drop_gen": 1 if self.kept_gens else 0,
            "report": 1,
            "foreign_call_soon": 1 if self.threads and ctx.depth < MAX_DEPTH else 0,
            "close_running": 1 if ctx.kind != "setup" else 0,
        }
        if ctx.kind == "co":
            ops.update(sleep=8, agen=3)
            if not ctx.safe:
                ops.update(await_future=6, await_task=3 if (ctx.task or 0) > 1 else 0, gather=2, wait_for=1)
        if ctx.depth >= MAX_DEPTH:
            for name in ("soon", "soon_context", "later_past", "at_past", "done_callback", "threadsafe_join", "task"):
                ops[name] = 0
        names = [n for n, w in ops.items() if w]
        weights = [ops[n] for n in names]
        op = self.r.choices(names, weights)[0]
        self.features.add(op)
        return getattr(self, "op_" + op)(ctx)

    def handle_id(self):
        self.handles += 1
        return self.handles

    def future_id(self, new_bias=0.3):
        if not self.futures or self.chance(new_bias):
            self.futures += 1
            return self.futures
        return self.r.randint(1, self.futures)

    def op_soon(self, ctx):
        cb = self.callback(ctx.depth + 1)
        return [f"H[{self.handle_id()}] = loop.call_soon({cb}{self.args()})"]

    def op_soon_context(self, ctx):
        cb = self.callback(ctx.depth + 1)
        value = f"c{next(self.vars)}"
        return [f"H[{self.handle_id()}] = loop.call_soon({cb}{self.args()}, context=context_with({value!r}))"]

    def op_later_past(self, ctx):
        slot = self.slot()
        if slot is None:
            return self.op_soon(ctx)
        cb = self.callback(ctx.depth + 1)
        return [f"H[{self.handle_id()}] = loop.call_later({-2000 + 20 * slot}{'.0' if self.chance(0.5) else ''}, {cb}{self.args()})"]

    def op_at_past(self, ctx):
        slot = self.slot()
        if slot is None:
            return self.op_soon(ctx)
        cb = self.callback(ctx.depth + 1)
        i = self.handle_id()
        return [
            f"H[{i}] = loop.call_at(BASE + {-2000 + 20 * slot + 10}, {cb}{self.args()})",
            f"rec('when', {i}, round(H[{i}].when() - BASE, 3))",
        ]

    def op_timer_far(self, ctx):
        cb = self.callback(ctx.depth + 1, trivial=True)
        delay = 1000 + self.r.randint(0, 1000)
        if self.chance(0.5):
            return [f"H[{self.handle_id()}] = loop.call_later({delay}, {cb})"]
        return [f"H[{self.handle_id()}] = loop.call_at(BASE + {delay}, {cb})"]

    def op_cancel_handle(self, ctx):
        return [f"cancel_handle({self.r.randint(1, self.handles)})"]

    def op_stop(self, ctx):
        return ["rec('stop'); loop.stop()"]

    def op_future(self, ctx):
        return [f"fut({self.future_id(new_bias=1.0)})"]

    def op_settle(self, ctx):
        i = self.future_id()
        how = self.r.choices(("result", "exception", "cancel", "cancel_msg"), (5, 2, 2, 1))[0]
        value = {
            "result": f"'r{i}'",
            "exception": f"ValueError('F{i} failed')",
            "cancel": "None",
            "cancel_msg": f"'F{i} cancelled'",
        }[how]
        return [f"settle({i}, {how.split('_')[0]!r}, {value})"]

    def op_done_callback(self, ctx):
        cb = self.callback(ctx.depth + 1)
        i = self.future_id()
        self.features.add("future callbacks")
        if self.chance(0.3):
            value = f"d{next(self.vars)}"
            return [f"fut({i}).add_done_callback({cb}, context=context_with({value!r}))"]
        return [f"fut({i}).add_done_callback({cb})"]

    def op_remove_done_callback(self, ctx):
        # A callback that was added, or one that never was (count 0).
        i = self.r.randint(1, self.futures)
        return [f"rec('removed', {i}, fut({i}).remove_done_callback(_no_callback))"]

    def op_task(self, ctx):
        self.tasks += 1
        i = self.tasks
        co = self.coroutine(ctx.depth + 1, task=i)
        return [f"T[{i}] = loop.create_task({co}(), name='t{i}')"]

    def op_cancel_task(self, ctx):
        i = self.r.randint(1, self.tasks)
        msg = self.r.choice(("None", f"'t{i} cancelled'"))
        return [f"cancel_task({i}, {msg})"]

    def op_var(self, ctx):
        return [f"VAR.set('v{next(self.vars)}')"]

    def op_threadsafe_join(self, ctx):
        cb = self.callback(ctx.depth + 1)
        return [f"threadsafe_join({cb}{self.args()})"]

    def op_threadsafe_async(self, ctx):
        return ["threadsafe_async()"]

    def op_nested_run(self, ctx):
        if self.nested_run_forever and self.chance(0.5):
            return ["nested_run_forever()"]
        return [f"nested_run_until_complete({self.future_id()})"]

    def op_is_running(self, ctx):
        return ["rec('running', loop.is_running(), asyncio._get_running_loop() is loop)"]

    def op_foreign_call_soon(self, ctx):
        # Not thread-safe, but the thread is joined at once; refused in
        # debug mode while the loop runs.
        cb = self.callback(ctx.depth + 1)
        return [f"call_soon_from_thread({self.handle_id()}, {cb})"]

    def op_close_running(self, ctx):
        return ["close_running_loop()"]

    def op_gather(self, ctx):
        ids = sorted({self.future_id() for _ in range(self.r.randint(1, 3))})
        futures = ", ".join(f"fut({i})" for i in ids)
        flag = self.r.choice(("True", "False"))
        return self.guarded_await(ctx, f"asyncio.gather({futures}, return_exceptions={flag})", "gather")

    def op_wait_for(self, ctx):
        i = self.future_id()
        # A timeout that never expires: the timer is there to be cancelled.
        return self.guarded_await(ctx, f"asyncio.wait_for(fut({i}), 1000)", f"wait_for F{i}")

    def op_drop_gen(self, ctx):
        name = self.r.choice(self.kept_gens)
        return [f"rec('drop', {name!r}, G.pop({name!r}, None) is not None)"]

    def op_report(self, ctx):
        n = next(self.vars)
        return [f"loop.call_exception_handler({{'message': 'report {n}', 'exception': KeyError({n}), 'extra': {n}}})"]

    # -- awaiting ops ----------------------------------------------------------

    def guarded_await(self, ctx, what, label):
        reraise = self.chance(0.7)
        return [
            "try:",
            f"    value = await {what}",
            f"    rec({ctx.name!r}, {label!r}, value)",
            "except asyncio.CancelledError as exc:",
            f"    rec({ctx.name!r}, {label!r}, 'cancelled', exc.args)",
            "    raise" if reraise else "    pass",
            "except Exception as exc:",
            f"    rec({ctx.name!r}, {label!r}, 'raised', exc)",
        ]

    def op_sleep(self, ctx):
        if self.chance(0.3):
            return self.guarded_await(ctx, "asyncio.sleep(0)", "sleep")
        return ["await asyncio.sleep(0)", f"rec({ctx.name!r}, 'slept')"]

    def op_await_future(self, ctx):
        i = self.future_id()
        return self.guarded_await(ctx, f"fut({i})", f"F{i}")

    def op_await_task(self, ctx):
        j = self.r.randint(1, ctx.task - 1)
        return self.guarded_await(ctx, f"task_or_none({j})", f"T{j}")

    def op_agen(self, ctx):
        name, n = self.async_generator()
        steps = self.r.randint(0, n + 1)
        end = self.r.choices(("drop", "keep", "aclose"), (5, 3, 2))[0]
        if steps == 0 and end == "keep":
            end = "drop"
        lines = ["g = " + name + "()", f"await agen_steps({name!r}, g, {steps})"]
        if end == "keep":
            self.kept_gens.append(name)
            lines.append(f"G[{name!r}] = g")
        elif end == "aclose":
            lines += [
                "try:",
                "    await g.aclose()",
                f"    rec({name!r}, 'aclosed')",
                "except Exception as exc:",
                f"    rec({name!r}, 'aclose raised', exc)",
            ]
        lines.append("del g")
        self.features.add("agen " + end)
        return lines

    # -- the program -----------------------------------------------------------

    def run_spec(self, index):
        setup = f"setup_{index}"
        ctx = _Context("setup", setup, 0)
        lines = [f"def {setup}():", f"    rec({setup!r})"]
        lines += self.body(ctx, self.r.randint(1, 6))
        self.defs.append("\n".join(lines))
        if self.chance(0.35):
            kind, slot = "forever", self.slot()
            stopper = ("timer", slot) if slot is not None and self.chance(0.3) else ("soon", self.r.randint(0, 3))
            return f"('forever', {setup}, {stopper!r})"
        roll = self.r.random()
        if roll < 0.3:
            slot = self.slot()
            gate = ("timer", slot) if slot is not None and self.chance(0.3) else ("future", self.r.randint(0, 3))
            return f"('until', {setup}, {gate!r})"
        co = self.coroutine(1, safe=True)
        kind = "task" if roll < 0.7 else "coro"
        return f"('until', {setup}, ({kind!r}, {co}))"

    def leaves_spec(self):
        """Timers with real delays (0.5 to 4 ms); ``call_at`` ones may cancel
        ``call_at`` ones due later (their deadlines are fixed offsets from the
        same base, so their order does not depend on the clock)."""
        if not self.chance(0.15):
            return []
        self.features.add("timed leaves")
        leaves = []
        offsets = self.r.sample(range(1, 9), self.r.randint(1, 5))
        for k, offset in enumerate(offsets):
            kind = self.r.choice(("at", "later"))
            leaves.append([kind, offset / 2000, []])
        at = [k for k, leaf in enumerate(leaves) if leaf[0] == "at"]
        for k in at:
            later = [j for j in at if leaves[j][1] > leaves[k][1]]
            if later and self.chance(0.4):
                leaves[k][2].append(self.r.choice(later))
        return [tuple(leaf) for leaf in leaves]

    def write(self):
        runs = [self.run_spec(i) for i in range(self.r.randint(1, 4))]
        options = {
            "debug": self.chance(0.1),
            "handler": self.r.choices(("record", "default", "raising"), (8, 1, 1))[0],
            "eager": self.chance(0.1),
            "wake": self.threads and self.chance(0.3),
        }
        leaves = self.leaves_spec()
        for name, on in options.items():
            if on and on != "record":
                self.features.add(f"{name}={on}")
        header = f"# differential program, seed {self.seed}"
        tables = [
            "RUNS = [\n" + "".join(f"    {r},\n" for r in runs) + "]",
            f"LEAVES = {leaves!r}",
            f"OPTIONS = {options!r}",
        ]
        return "\n\n".join([header, *self.defs, *tables]) + "\n"


def generate(seed, nested_run_forever=True):
    """The program of ``seed``. ``nested_run_forever``: whether programs may
    call ``run_forever()`` from inside the running loop (see ``runner.py``
    for the asyncio releases that mishandle it)."""
    writer = _Writer(seed, nested_run_forever)
    source = writer.write()
    return Program(seed, source, writer.features)
