"""Runs CPython's own asyncio test suites on ferroloop and on stdlib asyncio
and compares them.

    python tests/compat/run.py                 # the default module set
    python tests/compat/run.py test_tasks      # some modules only
    python tests/compat/run.py --markdown      # also print README's table

Each module runs in its own process (``_runner.py``) once with ferroloop
injected as the default loop and once with asyncio's own loop. The run fails
if a test passes on asyncio but not on ferroloop (unless it is listed, with
its reason, in ``known_failures.txt``), if a listed test passes again (so the
list stays true), or if a module that is expected to use the default loop ran
no test on a ferroloop loop (a broken injection).
"""

import argparse
import fnmatch
import concurrent.futures
import json
import os
import pathlib
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent

# Module -> how ferroloop is injected:
#   "policy":   through the default event loop policy only;
#   "selector": also as asyncio.SelectorEventLoop, which the loop-generic test
#               mixins of these modules instantiate;
#   "none":     the module tests asyncio's BaseEventLoop or mocked loops; it
#               runs with the policy injected (it must not break), but no test
#               is expected to create a ferroloop loop.
MODULES = {
    "test.test_asyncgen": "policy",
    "test.test_asyncio.test_tasks": "policy",
    "test.test_asyncio.test_futures2": "policy",
    "test.test_asyncio.test_locks": "policy",
    "test.test_asyncio.test_queues": "policy",
    "test.test_asyncio.test_runners": "none",
    "test.test_asyncio.test_taskgroups": "policy",
    "test.test_asyncio.test_timeouts": "policy",
    "test.test_asyncio.test_waitfor": "policy",
    "test.test_asyncio.test_threads": "policy",
    "test.test_asyncio.test_context": "policy",
    "test.test_asyncio.test_base_events": "policy",
    "test.test_asyncio.test_events": "selector",
    "test.test_asyncio.test_streams": "policy",
    "test.test_asyncio.test_server": "selector",
    "test.test_asyncio.test_sock_lowlevel": "selector",
    "test.test_asyncio.test_sendfile": "selector",
    "test.test_asyncio.test_buffered_proto": "selector",
    # Every watcher variant (threaded, safe, fast, pidfd) makes its loop with
    # the policy's new_event_loop(); ferroloop ignores the watcher set on
    # the policy. The transport tests at the top use asyncio's TestLoop.
    "test.test_asyncio.test_subprocess": "policy",
    # The signal and Unix-socket tests make asyncio.SelectorEventLoop()
    # (the sendfile tests asyncio.new_event_loop()); the pipe-transport and
    # child-watcher tests use asyncio's own classes on a TestLoop.
    "test.test_asyncio.test_unix_events": "selector",
}


def known_reason(test_id, known):
    """The reason a test is allowed to fail, if it is listed."""
    for pattern, reason in known.items():
        if fnmatch.fnmatchcase(test_id, pattern):
            return reason
    return None


def load_known_failures():
    known = {}
    path = HERE / "known_failures.txt"
    if path.exists():
        for line in path.read_text().splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            test_id, _, reason = line.partition(" ")
            known[test_id] = reason.strip()
    return known


def run_module(module, loop, timeout):
    cmd = [sys.executable, str(HERE / "_runner.py"), "--loop", loop, module]
    if MODULES.get(module) == "selector":
        cmd.insert(2, "--selector-loop")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"module": module, "loop": loop, "crashed": f"timed out after {timeout}s"}
    lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
    if not lines:
        tail = "\n".join(proc.stderr.splitlines()[-30:])
        return {"module": module, "loop": loop, "crashed": f"exit {proc.returncode}\n{tail}"}
    return json.loads(lines[-1])


def resolve(name):
    if name.startswith("test."):
        return name
    if name == "test_asyncgen":
        return "test.test_asyncgen"
    return f"test.test_asyncio.{name}"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("modules", nargs="*")
    parser.add_argument("--markdown", action="store_true", help="print the README table")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--timeout", type=int, default=600, help="seconds per module and loop")
    args = parser.parse_args()

    modules = [resolve(m) for m in args.modules] or list(MODULES)
    known = load_known_failures()
    jobs = [(m, loop) for m in modules for loop in ("ferroloop", "asyncio")]
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        results = dict(zip(jobs, pool.map(lambda j: run_module(*j, args.timeout), jobs)))

    problems = []
    rows = []
    for module in modules:
        ours, theirs = results[(module, "ferroloop")], results[(module, "asyncio")]
        for r in (ours, theirs):
            if "crashed" in r:
                problems.append(f"{module} on {r['loop']} crashed: {r['crashed']}")
        if "crashed" in ours or "crashed" in theirs:
            continue
        ok_theirs = set(theirs["passed"])
        ok_ours = set(ours["passed"])
        regressions = sorted(ok_theirs - ok_ours)
        for test_id in regressions:
            if known_reason(test_id, known) is None:
                problems.append(f"passes on asyncio, fails on ferroloop: {test_id}")
        for test_id in sorted(ok_ours):
            if known_reason(test_id, known) is not None:
                problems.append(f"listed in known_failures.txt but passes now: {test_id}")
        if MODULES.get(module, "policy") != "none" and ours["tests_on_loop"] == 0:
            problems.append(f"{module}: no test ran on a ferroloop loop (injection broken?)")
        rows.append((module, ours, theirs, len(regressions)))
        if regressions:
            print(f"  {len(regressions)} known failures in {module} (see known_failures.txt)")
        print(
            f"{module:40} ferroloop {len(ok_ours):4}/{ours['run']:<4} passed "
            f"(skipped {ours['skipped']}, on a ferroloop loop {ours['tests_on_loop']}) | "
            f"asyncio {len(ok_theirs):4}/{theirs['run']:<4} passed (skipped {theirs['skipped']}) "
            f"[{ours['seconds']}s / {theirs['seconds']}s]"
        )

    if args.markdown:
        print()
        print("| CPython test module | ferroloop passed | asyncio passed | tests run on a ferroloop loop |")
        print("|---|---|---|---|")
        for module, ours, theirs, _ in rows:
            print(
                f"| `{module}` | {len(ours['passed'])} / {ours['run']} | "
                f"{len(theirs['passed'])} / {theirs['run']} | {ours['tests_on_loop']} |"
            )

    total_ours = sum(len(r[1]["passed"]) for r in rows)
    total_theirs = sum(len(r[2]["passed"]) for r in rows)
    total_on_loop = sum(r[1]["tests_on_loop"] for r in rows)
    print(f"compat: ferroloop {total_ours} passed, asyncio {total_theirs} passed, {total_on_loop} tests on a ferroloop loop")
    if problems:
        print("\nPROBLEMS:")
        for p in problems:
            print("  " + p)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
