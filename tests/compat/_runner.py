"""Runs one CPython test module with a chosen default event loop and prints
a JSON summary on the last line of stdout.

    python tests/compat/_runner.py --loop ferroloop test.test_asyncgen

The loop is injected where CPython's tests get their loops from: the default
event loop policy (``asyncio.DefaultEventLoopPolicy``, which asyncio
instantiates again whenever a test resets the policy to None) and
``asyncio.SelectorEventLoop`` (which the loop-generic test mixins of
test_events, test_server, test_sock_lowlevel, test_sendfile and
test_buffered_proto instantiate, sometimes with a selector argument that a
ferroloop loop ignores). Both are replaced by a subclass of the chosen loop
that counts its instances; the asyncio baseline run goes through the same
replacement with a counting subclass of asyncio's own loop. A test counts as
having run on the loop if at least one loop was created while it ran, so a
mis-injected run shows up as zero tests on the loop instead of passing
silently.
"""

import argparse
import asyncio
import json
import sys
import time
import unittest

LOOPS_CREATED = 0


def inject(kind, selector_loop):
    """Replaces asyncio's default policy (and, with ``selector_loop``, the
    ``asyncio.SelectorEventLoop`` class) with counting ones."""
    if kind == "ferroloop":
        import ferroloop

        class CountingLoop(ferroloop.Loop):
            def __init__(self, selector=None):
                global LOOPS_CREATED
                LOOPS_CREATED += 1
                super().__init__()

        base_policy = ferroloop.EventLoopPolicy
    else:
        original = asyncio.SelectorEventLoop

        class CountingLoop(original):
            def __init__(self, selector=None):
                global LOOPS_CREATED
                LOOPS_CREATED += 1
                super().__init__(selector)

        base_policy = asyncio.DefaultEventLoopPolicy

    class CountingPolicy(base_policy):
        _loop_factory = CountingLoop

    if selector_loop:
        asyncio.SelectorEventLoop = CountingLoop
        asyncio.unix_events.SelectorEventLoop = CountingLoop
    asyncio.DefaultEventLoopPolicy = CountingPolicy
    asyncio.set_event_loop_policy(CountingPolicy())


class Result(unittest.TextTestResult):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.on_loop = 0
        self.passed = []
        self._before = 0

    def startTest(self, test):
        self._before = LOOPS_CREATED
        super().startTest(test)

    def stopTest(self, test):
        super().stopTest(test)
        if LOOPS_CREATED > self._before:
            self.on_loop += 1

    def addSuccess(self, test):
        super().addSuccess(test)
        self.passed.append(test.id())


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--loop", choices=["ferroloop", "asyncio"], required=True)
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument(
        "--selector-loop",
        action="store_true",
        help="also replace asyncio.SelectorEventLoop (for modules whose loop-generic mixins create it)",
    )
    parser.add_argument("module")
    parser.add_argument("tests", nargs="*", help="optional test name filters (-k)")
    args = parser.parse_args()

    inject(args.loop, args.selector_loop)

    loader = unittest.TestLoader()
    if args.tests:
        loader.testNamePatterns = [f"*{t}*" for t in args.tests]
    suite = loader.loadTestsFromName(args.module)
    runner = unittest.TextTestRunner(
        stream=sys.stderr, verbosity=2 if args.verbose else 1, resultclass=Result
    )
    t0 = time.monotonic()
    result = runner.run(suite)
    summary = {
        "module": args.module,
        "loop": args.loop,
        "run": result.testsRun,
        "passed": sorted(result.passed),
        "failures": sorted(t.id() for t, _ in result.failures),
        "errors": sorted(t.id() for t, _ in result.errors),
        "skipped": len(result.skipped),
        "expected_failures": len(result.expectedFailures),
        "unexpected_successes": sorted(t.id() for t in result.unexpectedSuccesses),
        "tests_on_loop": result.on_loop,
        "loops_created": LOOPS_CREATED,
        "seconds": round(time.monotonic() - t0, 1),
    }
    sys.stdout.write("\n" + json.dumps(summary) + "\n")


if __name__ == "__main__":
    main()
