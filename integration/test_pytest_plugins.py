"""pytest-asyncio and anyio's pytest plugin selecting ferroloop: through
pytest-asyncio's own loop-factory hook (``pytest_asyncio_loop_factories`` in
a conftest), and through ``pytest -p ferroloop.pytest`` with no conftest.
Each way runs the sample suites in samples/ in a child pytest, and must pass
the same tests, with the same fixture teardowns, as stdlib asyncio."""

import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest

from conftest import HERE, PYTHON, require, subprocess_env

require("pytest_asyncio")
require("anyio")

SAMPLES = HERE / "samples"

HOOK_CONFTEST = '''
import ferroloop

def pytest_asyncio_loop_factories(config, item):
    return {"ferroloop": ferroloop.new_event_loop}
'''


def run_pytest(tmp_path, files, expect, args=(), conftest=None):
    shutil.copy(SAMPLES / "sample_events.py", tmp_path)
    for name in files:
        shutil.copy(SAMPLES / name, tmp_path / ("test_" + name.removeprefix("sample_")))
    if conftest:
        (tmp_path / "conftest.py").write_text(conftest)
    events = tmp_path / "events.log"
    report = tmp_path / "report.xml"
    proc = subprocess.run(
        [PYTHON, "-m", "pytest", "-p", "no:cacheprovider", "-o", "asyncio_default_fixture_loop_scope=function",
         "-k", "not trio", f"--junitxml={report}", *args],
        cwd=tmp_path,
        env=subprocess_env(EXPECT_LOOP=expect, EVENTS_LOG=str(events)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    suite = ET.parse(report).getroot().find("testsuite")
    counts = {k: int(suite.get(k)) for k in ("tests", "failures", "errors", "skipped")}
    lines = events.read_text().splitlines() if events.exists() else []
    return counts, [line.replace(expect, "<loop>") for line in lines], proc.stdout


ASYNCIO_FILES = ["sample_pytest_asyncio.py"]
ANYIO_FILES = ["sample_anyio.py", "sample_anyio_options.py", "sample_anyio_factory.py"]


@pytest.mark.parametrize(
    "how",
    ["asyncio (no plugin)", "conftest hook", "-p ferroloop.pytest"],
)
def test_pytest_asyncio(how, tmp_path, same_results):
    expect = "asyncio" if how.startswith("asyncio") else "ferroloop"
    args = ["-p", "ferroloop.pytest"] if how.startswith("-p") else []
    conftest = HOOK_CONFTEST if how == "conftest hook" else None
    counts, events, out = run_pytest(tmp_path, ASYNCIO_FILES, expect, args, conftest)
    if args:
        assert "asyncio tests run on ferroloop" in out
    assert counts == {"tests": 5, "failures": 0, "errors": 0, "skipped": 0}, out
    assert events == [
        "setup server on <loop>",
        "test on <loop>",
        "teardown connection on <loop>",
        "teardown server on <loop>",
    ]


@pytest.mark.parametrize("how", ["asyncio (no plugin)", "-p ferroloop.pytest"])
def test_anyio_plugin(how, tmp_path):
    expect = "asyncio" if how.startswith("asyncio") else "ferroloop"
    args = ["-p", "ferroloop.pytest"] if how.startswith("-p") else []
    counts, events, out = run_pytest(tmp_path, ANYIO_FILES, expect, args)
    assert counts == {"tests": 4, "failures": 0, "errors": 0, "skipped": 0}, out
    assert events == ["test on <loop>", "teardown resource on <loop>"]


def test_plugin_leaves_chosen_loops_alone():
    from ferroloop.pytest import backend_on_ferroloop

    import ferroloop

    def factory():
        raise AssertionError

    on_ferroloop = ("asyncio", {"loop_factory": ferroloop.new_event_loop})
    assert backend_on_ferroloop("asyncio") == on_ferroloop
    assert backend_on_ferroloop(("asyncio", {"loop_factory": None})) == on_ferroloop
    assert backend_on_ferroloop(("asyncio", {"debug": True})) == (
        "asyncio", {"debug": True, "loop_factory": ferroloop.new_event_loop})
    for kept in ["trio", ("trio", {}), ("asyncio", {"use_uvloop": True}),
                 ("asyncio", {"loop_factory": factory})]:
        assert backend_on_ferroloop(kept) is kept
