"""Differential testing: random asyncio programs (``tests/differential/``)
give the same trace on ferroloop as on stdlib asyncio's
``SelectorEventLoop``.

3000 programs run here (seeds 0 to 2999, in batches), plus the seeds of the
divergences found so far. ``python tests/differential/run.py --count N``
runs more; ``--seed N`` shows one program and both traces.
"""

import asyncio
from asyncio import events

import pytest

import ferroloop
from differential.runner import check

FACTORIES = {"ferroloop": ferroloop.new_event_loop, "asyncio": asyncio.SelectorEventLoop}

BATCHES = 20
PER_BATCH = 150

# Seeds whose programs diverged before a fix, with what differed. They are
# programs of the generator as it is now: each was found again, after the
# generator's last change, by running it on a build without the fix.
REGRESSIONS = {
    # Debug mode: a future's creation traceback (in its repr, so in the
    # arguments of done callbacks and in reports of their exceptions) ended at
    # the caller's line, asyncio's in its create_future.
    9: "debug mode: 'created at' of a future",
    18: "debug mode: 'created at' of a future",
    21: "debug mode: 'created at' of a future",
    # Debug mode on 3.13: asyncio shows a callback's arguments in handle
    # reprs and "Exception in callback" reports, ferroloop did not. (On
    # other versions these are just more programs.)
    37: "3.13 debug mode: callback arguments in reports",
    73: "3.13 debug mode: callback arguments in reports",
    87: "3.13 debug mode: callback arguments in reports",
    # Debug mode: the unclosed-generator report kept the last task that
    # iterated a generator alive, so that task's "exception was never
    # retrieved" report never came.
    72417: "debug mode: a task kept alive by the generator report",
}


def _assert_agree(seeds, factories=FACTORIES):
    failures = []
    for seed in seeds:
        _program, _traces, problem = check(seed, factories)
        if problem is not None:
            failures.append(f"seed {seed} diverges (python tests/differential/run.py --seed {seed}):\n{problem}")
    assert not failures, "\n\n".join(failures[:3]) + f"\n\n{len(failures)} divergent programs"


@pytest.mark.parametrize("batch", range(BATCHES))
def test_random_programs_agree(batch):
    _assert_agree(range(batch * PER_BATCH, (batch + 1) * PER_BATCH))


@pytest.mark.parametrize("seed", sorted(REGRESSIONS))
def test_divergences_found_before_stay_fixed(seed):
    _assert_agree([seed])


class _LifoLoop(asyncio.SelectorEventLoop):
    """asyncio's loop, broken: ``call_soon`` queues at the front."""

    def call_soon(self, callback, *args, context=None):
        self._check_closed()
        handle = events.Handle(callback, args, self, context)
        self._ready.appendleft(handle)
        return handle


class _DeafLoop(asyncio.SelectorEventLoop):
    """asyncio's loop, broken: exception-handler calls get lost."""

    def call_exception_handler(self, context):
        pass


@pytest.mark.parametrize("broken", [_LifoLoop, _DeafLoop])
def test_the_comparison_catches_a_broken_loop(broken):
    """The check can fail: asyncio's loop with a bug in it diverges from
    asyncio's loop on some of the first programs."""
    factories = {"broken": broken, "asyncio": asyncio.SelectorEventLoop}
    with pytest.raises(AssertionError, match="divergent programs"):
        _assert_agree(range(50), factories)
