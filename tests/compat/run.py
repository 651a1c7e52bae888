"""Runs CPython's own asyncio test suites on ferroloop and on stdlib asyncio
and compares them, on the Python that runs this script.

    python tests/compat/run.py                 # the default module set
    python tests/compat/run.py test_tasks      # some modules only
    python tests/compat/run.py --markdown      # also print README's table

Each module runs in its own process (``_runner.py``) once with ferroloop
injected as the default loop and once with asyncio's own loop, both from the
test package of the running interpreter. The run fails if a test passes on
asyncio but not on ferroloop (unless it is listed, with its reason, in
``known_failures/``), if a listed pattern matches a test that passes on
ferroloop or no failing test at all (so the lists stay true), or if a module
that is expected to use the default loop ran no test on a ferroloop loop (a
broken injection).

Known failures: ``known_failures/common.txt`` holds what fails on every
supported Python version (features not implemented yet, tests of asyncio's
selector internals); ``known_failures/<major>.<minor>.txt`` adds what fails on
that version only. Both apply to a run; a pattern that matches no failing
test of the modules run is reported as stale, so an entry that holds on some
versions only belongs in their own files.
"""

import argparse
import fnmatch
import concurrent.futures
import importlib.util
import json
import os
import pathlib
import pkgutil
import platform
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
KNOWN_FAILURES = HERE / "known_failures"
VERSION = "%d.%d" % sys.version_info[:2]

# Module -> how ferroloop is injected:
#   "policy":   through the default event loop policy only;
#   "selector": also as asyncio.SelectorEventLoop, which the loop-generic test
#               mixins of these modules instantiate;
#   "none":     the module tests asyncio's BaseEventLoop or mocked loops; it
#               runs with the policy injected (it must not break), but no test
#               is expected to create a ferroloop loop.
# A module that the running Python's test package lacks is left out (and
# named in the output).
MODULES = {
    "test.test_asyncgen": "policy",
    "test.test_asyncio.test_tasks": "policy",
    # 3.12+: eager task factories (asyncio.eager_task_factory), on loops from
    # asyncio.new_event_loop(); loop-generic.
    "test.test_asyncio.test_eager_task_factory": "policy",
    "test.test_asyncio.test_futures2": "policy",
    "test.test_asyncio.test_locks": "policy",
    "test.test_asyncio.test_queues": "policy",
    "test.test_asyncio.test_runners": "none",
    "test.test_asyncio.test_taskgroups": "policy",
    "test.test_asyncio.test_timeouts": "policy",
    "test.test_asyncio.test_waitfor": "policy",
    "test.test_asyncio.test_threads": "policy",
    "test.test_asyncio.test_context": "policy",
    # 3.13+: asyncio.staggered.staggered_race (what Happy Eyeballs uses) in
    # IsolatedAsyncioTestCase, whose runner takes the policy's loop.
    "test.test_asyncio.test_staggered": "policy",
    "test.test_asyncio.test_base_events": "policy",
    "test.test_asyncio.test_events": "selector",
    "test.test_asyncio.test_streams": "policy",
    "test.test_asyncio.test_server": "selector",
    "test.test_asyncio.test_sock_lowlevel": "selector",
    "test.test_asyncio.test_sendfile": "selector",
    "test.test_asyncio.test_buffered_proto": "selector",
    # TLS on real sockets, on loops from asyncio.new_event_loop().
    "test.test_asyncio.test_ssl": "policy",
    # The loop-generic start_tls tests (SelectorStartTLSTests); the rest of
    # the module drives SSLProtocol with mocked transports.
    "test.test_asyncio.test_sslproto": "selector",
    # Every watcher variant (threaded, safe, fast, pidfd) makes its loop with
    # the policy's new_event_loop(); ferroloop ignores the watcher set on
    # the policy. The transport tests at the top use asyncio's TestLoop.
    "test.test_asyncio.test_subprocess": "policy",
    # The signal and Unix-socket tests make asyncio.SelectorEventLoop()
    # (the sendfile tests asyncio.new_event_loop()); the pipe-transport and
    # child-watcher tests use asyncio's own classes on a TestLoop.
    "test.test_asyncio.test_unix_events": "selector",
}

# The other modules of test/test_asyncio (3.11 to 3.13), and why they are not
# run. A module this Python has that is in neither table is named in the
# output, so a new one gets a decision.
NOT_RUN = {
    "test.test_asyncio.test_futures": "Future on test_utils.TestLoop, a mocked loop (test_futures2 runs futures on real loops)",
    "test.test_asyncio.test_pep492": "async/await protocol on a bare asyncio.BaseEventLoop()",
    "test.test_asyncio.test_protocols": "protocol base classes with mocks, no loop",
    "test.test_asyncio.test_transports": "transport base classes with mocks, no loop",
    "test.test_asyncio.test_selector_events": "BaseSelectorEventLoop internals with a mocked selector",
    "test.test_asyncio.test_proactor_events": "Windows proactor loop",
    "test.test_asyncio.test_windows_events": "Windows only",
    "test.test_asyncio.test_windows_utils": "Windows only",
}


def known_failure_files():
    """The lists that apply to this Python: common, then this version's."""
    return [KNOWN_FAILURES / "common.txt", KNOWN_FAILURES / f"{VERSION}.txt"]


def load_known_failures():
    """pattern -> (reason, file name), from every list that applies."""
    known = {}
    for path in known_failure_files():
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            test_id, _, reason = line.partition(" ")
            known[test_id] = (reason.strip(), path.name)
    return known


def available(module):
    """Whether the running Python's test package has ``module``."""
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:
        return False


def undecided_modules():
    """test_asyncio modules of this Python that neither table mentions."""
    spec = importlib.util.find_spec("test.test_asyncio")
    if spec is None or not spec.submodule_search_locations:
        return []
    names = (f"test.test_asyncio.{m.name}" for m in pkgutil.iter_modules(spec.submodule_search_locations))
    return sorted(n for n in names if n.rpartition(".")[2].startswith("test_") and n not in MODULES and n not in NOT_RUN)


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

    print(f"Python {platform.python_version()} ({sys.executable})")
    if args.modules:
        modules = [resolve(m) for m in args.modules]
    else:
        modules = [m for m in MODULES if available(m)]
        absent = [m for m in MODULES if m not in modules]
        if absent:
            print("not in this Python's test suite: " + ", ".join(absent))
        for m in undecided_modules():
            print(f"note: {m} is neither run nor excluded in run.py; decide and record why")
    known = load_known_failures()
    for path in known_failure_files():
        print(f"known failures: known_failures/{path.name}" + ("" if path.exists() else " (none: no such file)"))
    jobs = [(m, loop) for m in modules for loop in ("ferroloop", "asyncio")]
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        results = dict(zip(jobs, pool.map(lambda j: run_module(*j, args.timeout), jobs)))

    problems = []
    rows = []
    used = set()
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
            matched = [p for p in known if fnmatch.fnmatchcase(test_id, p)]
            used.update(matched)
            if not matched:
                problems.append(f"passes on asyncio, fails on ferroloop: {test_id}")
        for test_id in sorted(ok_ours):
            for pattern in known:
                if fnmatch.fnmatchcase(test_id, pattern):
                    problems.append(f"listed in known_failures/{known[pattern][1]} but passes now: {test_id}")
        if MODULES.get(module, "policy") != "none" and ours["tests_on_loop"] == 0:
            problems.append(f"{module}: no test ran on a ferroloop loop (injection broken?)")
        rows.append((module, ours, theirs, len(regressions)))
        if regressions:
            print(f"  {len(regressions)} known failures in {module} (see known_failures/)")
        print(
            f"{module:40} ferroloop {len(ok_ours):4}/{ours['run']:<4} passed "
            f"(skipped {ours['skipped']}, on a ferroloop loop {ours['tests_on_loop']}) | "
            f"asyncio {len(ok_theirs):4}/{theirs['run']:<4} passed (skipped {theirs['skipped']}) "
            f"[{ours['seconds']}s / {theirs['seconds']}s]"
        )

    # A pattern of a module that ran must still match a failing test.
    ran = [module for module, *_ in rows]
    for pattern, (_, source) in known.items():
        if pattern not in used and any(pattern.startswith(m + ".") for m in ran):
            problems.append(f"stale entry in known_failures/{source}: {pattern} matches no test failing on ferroloop")

    total_ours = sum(len(r[1]["passed"]) for r in rows)
    total_theirs = sum(len(r[2]["passed"]) for r in rows)
    total_on_loop = sum(r[1]["tests_on_loop"] for r in rows)
    if args.markdown:
        print()
        print(
            f"| CPython test module (Python {platform.python_version()}) | ferroloop passed "
            "| asyncio passed | tests run on a ferroloop loop |"
        )
        print("|---|---|---|---|")
        for module, ours, theirs, _ in rows:
            on_loop = ours["tests_on_loop"]
            if MODULES.get(module) == "none" and on_loop == 0:
                on_loop = "0 (mocked loops only)"
            print(
                f"| `{module}` | {len(ours['passed'])} / {ours['run']} | "
                f"{len(theirs['passed'])} / {theirs['run']} | {on_loop} |"
            )
        print(
            f"| total | {total_ours} / {sum(r[1]['run'] for r in rows)} | "
            f"{total_theirs} / {sum(r[2]['run'] for r in rows)} | {total_on_loop} |"
        )

    print(
        f"compat (Python {platform.python_version()}): ferroloop {total_ours} passed, "
        f"asyncio {total_theirs} passed, {total_on_loop} tests on a ferroloop loop"
    )
    if problems:
        print("\nPROBLEMS:")
        for p in problems:
            print("  " + p)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
