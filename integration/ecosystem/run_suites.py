"""Runs libraries' own test suites on ferroloop and on stdlib asyncio and
compares them, on the Python that runs this script.

    python integration/ecosystem/run_suites.py            # every suite below
    python integration/ecosystem/run_suites.py anyio      # some only

For each library, the source distribution of the version installed in this
environment is downloaded from PyPI (``pip download --no-binary :all:``)
into ``.venv/ecosystem-src/``, its test requirements are installed, and its
tests run twice in a child pytest: once as they are (stdlib asyncio), once
with ``-p ferroloop.pytest`` (ferroloop's pytest plugin; see its docs for how
it selects the loop) and ``-p ferroloop_run`` (ferroloop_run.py: counts the
ferroloop loops the run made, so a run that silently stayed on asyncio
fails, and gives ferroloop the allowances the suite's tools make for
asyncio by file name).

The run fails if a test passes on asyncio but fails on ferroloop, twice (a
failure is run again once, alone, to tell a flaky test from a broken one),
unless it is listed with its reason in ``known_failures/<library>.txt``;
and if a listed pattern matches no such test, so the list only shrinks.
Tests that fail on both loops (no IPv6 on the machine, say) are counted and
named but are not ferroloop's.
"""

import argparse
import fnmatch
import importlib.metadata
import os
import pathlib
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import xml.etree.ElementTree as ET

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent
SOURCES = ROOT / ".venv" / "ecosystem-src"


class Suite:
    def __init__(self, dist, requirements, args, selects_loop, ipv6_tests=None):
        self.dist = dist
        self.ipv6_tests = ipv6_tests  # a -k expression: tests that bind "localhost" over IPv6
        self.requirements = requirements
        self.args = args
        self.selects_loop = selects_loop  # how the suite's tests pick asyncio's loop


SUITES = {
    # anyio parametrizes its tests with the anyio_backend fixture:
    # ("asyncio", {"debug": True}) (id "asyncio"), the same with uvloop's and
    # an eager-task loop factory ("asyncio+uvloop", "asyncio+eager"), and
    # trio. ferroloop's plugin turns the plain asyncio one into ferroloop's
    # (the others choose their loop and are left out of both runs).
    "anyio": Suite(
        dist="anyio",
        requirements=[
            "blockbuster>=1.5.29", "hypothesis>=4.18.2", "psutil>=5.9", "pytest>=9.0",
            "pytest-mock>=3.14", "pytest-timeout>=2.4.0", "trustme>=1.0.0", "truststore>=0.9.1",
        ],
        args=["-k", "not trio and not uvloop and not eager", "-p", "no:randomly"],
        ipv6_tests="ipv6 or dualstack",
        selects_loop="anyio_backend ('asyncio', {'debug': True}) -> loop_factory=ferroloop.new_event_loop",
    ),
    # uvicorn's tests run their servers in the test's loop through anyio's
    # pytest plugin (its conftest's anyio_backend is "asyncio"), in 4
    # processes (pytest-xdist: they mostly wait on sockets and timers).
    # Its own pytest configuration adds "-n 8"; the args below replace it.
    "uvicorn": Suite(
        dist="uvicorn",
        requirements=[
            "uvicorn[standard]=={version}", "pytest>=9", "pytest-mock", "pytest-xdist", "trustme",
            "cryptography", "httpx2", "a2wsgi", "wsproto", "zttp",
        ],
        args=["-p", "no:asyncio", "-o", "addopts=-rxXs --strict-config", "--ignore", "tests/benchmarks",
              "-n", "4"],
        selects_loop="anyio_backend 'asyncio' -> loop_factory=ferroloop.new_event_loop",
    ),
}


def pip(*args):
    subprocess.run([sys.executable, "-m", "pip", *args, "--quiet", "--disable-pip-version-check"], check=True)


def source_tree(dist):
    """The test suite of the installed version of ``dist``, from its sdist."""
    version = importlib.metadata.version(dist)
    SOURCES.mkdir(parents=True, exist_ok=True)
    tree = SOURCES / f"{dist}-{version}"
    if not (tree / "tests").is_dir():
        with tempfile.TemporaryDirectory() as d:
            pip("download", "--no-binary", ":all:", "--no-deps",
                f"{dist}=={version}", "-d", d)
            (archive,) = pathlib.Path(d).glob("*.tar.gz")
            with tarfile.open(archive) as tar:
                tar.extractall(SOURCES, filter="data")
    return version, tree


def run_pytest(tree, args, report, env):
    t0 = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--no-header",
         f"--junitxml={report}", *args],
        cwd=tree, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    return time.monotonic() - t0, outcomes(report)


MESSAGES = {}  # (report, test id) -> the first line of its failure


def outcomes(report):
    """test id -> passed | failed | skipped (failed if any phase failed)."""
    result = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        test = case.get("classname") + "::" + case.get("name")
        failure = case.find("failure")
        if failure is None:
            failure = case.find("error")
        if failure is not None:
            outcome = "failed"
            message = (failure.get("message") or failure.text or "").strip().splitlines()
            MESSAGES.setdefault((report.name, test), message[0][:200] if message else "")
        elif case.find("skipped") is not None:
            outcome = "skipped"
        else:
            outcome = "passed"
        if result.get(test) != "failed":
            result[test] = outcome
    return result


def load_known(name):
    path = HERE / "known_failures" / f"{name}.txt"
    known = []
    if path.exists():
        for line in path.read_text().splitlines():
            pattern = line.split("#", 1)[0].strip()
            if pattern:
                known.append((pattern, line.split("#", 1)[1].strip() if "#" in line else ""))
    return known


def to_node_id(tree, test):
    """A junit test id (``tests.test_x.TestY::test_z[p]``) as a pytest node
    id (``tests/test_x.py::TestY::test_z[p]``), to run it again."""
    classname, name = test.split("::", 1)
    parts = classname.split(".")
    for i in range(len(parts), 0, -1):
        module = pathlib.Path(*parts[:i]).with_suffix(".py")
        if (tree / module).is_file():
            return "::".join([module.as_posix(), *parts[i:], name])
    return None


def count(results):
    c = {"passed": 0, "failed": 0, "skipped": 0}
    for outcome in results.values():
        c[outcome] += 1
    return c


def localhost_has_ipv6():
    try:
        socket.getaddrinfo("localhost", 0, socket.AF_INET6)
        return True
    except OSError:
        return False


def run_suite(name, suite, work):
    installed = importlib.metadata.version(suite.dist)
    pip("install", *(r.format(version=installed) for r in suite.requirements))
    version, tree = source_tree(suite.dist)
    env = dict(os.environ)
    env.pop("PYTHONASYNCIODEBUG", None)
    print(f"== {name} {version}: its own tests ({tree.relative_to(ROOT)}) on stdlib asyncio and on ferroloop", flush=True)

    args = list(suite.args)
    if suite.ipv6_tests and not localhost_has_ipv6():
        print(f"  left out on both loops: {suite.ipv6_tests} (this machine's 'localhost' has no IPv6 address)")
        i = args.index("-k") + 1
        args[i] = f"({args[i]}) and not ({suite.ipv6_tests})"
    (work / f"{name}-probe").unlink(missing_ok=True)
    asyncio_time, on_asyncio = run_pytest(tree, args, work / f"{name}-asyncio.xml", env)
    probe = work / f"{name}-probe"
    fenv = dict(env, FERROLOOP_PROBE_FILE=str(probe), PYTHONPATH=os.pathsep.join(
        [str(HERE)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])))
    fargs = [*args, "-p", "ferroloop.pytest", "-p", "ferroloop_run"]
    ferro_time, on_ferroloop = run_pytest(tree, fargs, work / f"{name}-ferroloop.xml", fenv)
    # One line per pytest process (the workers of pytest-xdist, if any).
    loops_made = sum(int(n) for n in probe.read_text().split()) if probe.exists() else 0

    regressions = sorted(t for t, o in on_ferroloop.items() if o == "failed" and on_asyncio.get(t) == "passed")
    both = sorted(t for t, o in on_ferroloop.items() if o == "failed" and on_asyncio.get(t) == "failed")
    only_asyncio = sorted(t for t, o in on_asyncio.items() if o == "failed" and on_ferroloop.get(t) == "passed")

    # A second chance, alone, for each ferroloop-only failure.
    flaky = []
    if regressions:
        ids = [to_node_id(tree, t) for t in regressions]
        rerun = [i for i in ids if i]
        if rerun:
            _, again = run_pytest(tree, [*fargs, *rerun], work / f"{name}-rerun.xml", fenv)
            flaky = [t for t in regressions if again.get(t) == "passed"]
            regressions = [t for t in regressions if t not in flaky]

    known = load_known(name)
    listed = [t for t in regressions if any(fnmatch.fnmatchcase(t, p) for p, _ in known)]
    unexpected = [t for t in regressions if t not in listed]
    stale = [(p, why) for p, why in known if not any(fnmatch.fnmatchcase(t, p) for t in regressions)]

    ca, cf = count(on_asyncio), count(on_ferroloop)
    print(f"| {name} {version} | passed | failed | skipped | time |")
    print("|---|---|---|---|---|")
    print(f"| stdlib asyncio | {ca['passed']} | {ca['failed']} | {ca['skipped']} | {asyncio_time:.0f} s |")
    print(f"| ferroloop | {cf['passed']} | {cf['failed']} | {cf['skipped']} | {ferro_time:.0f} s |")
    print(f"  ferroloop loops made by the ferroloop run: {loops_made} ({suite.selects_loop})")
    for title, tests in [
        ("fail on both loops (not ferroloop's)", both),
        ("fail on asyncio only", only_asyncio),
        ("failed on ferroloop once, passed when run again (flaky)", flaky),
        ("known failures on ferroloop (known_failures/%s.txt)" % name, listed),
    ]:
        if tests:
            print(f"  {title}: {len(tests)}")
            for t in tests:
                print(f"    {t}")

    ok = True
    if len(on_ferroloop) == 0 or len(on_asyncio) == 0:
        print(f"!! {name}: a run collected no test")
        ok = False
    if loops_made == 0:
        print(f"!! {name}: the ferroloop run made no ferroloop loop: the plugin did not select it")
        ok = False
    if set(on_asyncio) != set(on_ferroloop):
        print(f"!! {name}: the runs collected different tests")
        ok = False
    if unexpected:
        print(f"!! {name}: pass on asyncio, fail on ferroloop, not in known_failures/{name}.txt:")
        for t in unexpected:
            print(f"    {t}\n      {MESSAGES.get((name + '-ferroloop.xml', t), '')}")
        ok = False
    if stale:
        print(f"!! {name}: known_failures/{name}.txt entries that match no failing test (remove them):")
        for p, why in stale:
            print(f"    {p}  # {why}")
        ok = False
    return ok


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("suites", nargs="*", metavar="suite", help="of: " + ", ".join(SUITES))
    parser.add_argument("--reports", metavar="DIR", help="keep the junit reports there")
    options = parser.parse_args()
    names = options.suites or list(SUITES)
    for name in names:
        if name not in SUITES:
            parser.error(f"unknown suite {name!r} (known: {', '.join(SUITES)})")
    with tempfile.TemporaryDirectory() as work:
        work = pathlib.Path(options.reports or work)
        work.mkdir(parents=True, exist_ok=True)
        results = [run_suite(name, SUITES[name], work) for name in names]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
