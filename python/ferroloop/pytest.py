"""A pytest plugin that runs pytest-asyncio's and anyio's tests on ferroloop.

    pytest -p ferroloop.pytest

or, for a project, in its pytest configuration::

    [tool.pytest.ini_options]
    addopts = "-p ferroloop.pytest"

No conftest is needed:

- pytest-asyncio 1.4 and later (which have the ``pytest_asyncio_loop_factories``
  hook): this plugin implements the hook, so every asyncio test and fixture
  runs on a ferroloop loop made by ``ferroloop.new_event_loop``. A conftest
  that implements the hook itself takes precedence.
- anyio's pytest plugin: wherever the ``anyio_backend`` fixture selects the
  asyncio backend without a loop of its own (``"asyncio"``, or
  ``("asyncio", options)`` whose options name no ``loop_factory`` and do not
  set ``use_uvloop``), ferroloop's loop factory is added to its options.
  Backends that choose their loop, and trio, are left as they are.

The plugin is deliberately not registered as a ``pytest11`` entry point:
installing ferroloop must not change the event loop of every test suite in
the same environment. Selecting it is the project's decision, made once in
its configuration or on the command line.
"""

import pytest

import ferroloop

__all__ = ("backend_on_ferroloop",)

_HOOK = "pytest_asyncio_loop_factories"


def backend_on_ferroloop(backend):
    """The anyio backend (a name or a ``(name, options)`` pair) that runs on
    ferroloop where ``backend`` would run on asyncio's default loop; any other
    backend unchanged."""
    if backend == "asyncio":
        return ("asyncio", {"loop_factory": ferroloop.new_event_loop})
    if (
        isinstance(backend, tuple)
        and len(backend) == 2
        and backend[0] == "asyncio"
        and isinstance(backend[1], dict)
        and backend[1].get("loop_factory") is None
        and not backend[1].get("use_uvloop")
    ):
        return ("asyncio", {**backend[1], "loop_factory": ferroloop.new_event_loop})
    return backend


@pytest.hookimpl(optionalhook=True)
def pytest_asyncio_loop_factories(config, item):
    return {"ferroloop": ferroloop.new_event_loop}


@pytest.hookimpl(trylast=True)
def pytest_configure(config):
    asyncio_plugin = config.pluginmanager.get_plugin("asyncio")
    if asyncio_plugin is not None and getattr(config.hook, _HOOK).spec is None:
        raise pytest.UsageError(
            "ferroloop.pytest: this pytest-asyncio has no %s hook, through which "
            "the plugin selects ferroloop; pytest-asyncio 1.4 or later has it" % _HOOK
        )


def pytest_report_header(config):
    return "ferroloop %s: asyncio tests run on ferroloop (ferroloop.pytest)" % ferroloop.__version__


@pytest.hookimpl(hookwrapper=True)
def pytest_fixture_setup(fixturedef, request):
    outcome = yield
    if fixturedef.argname != "anyio_backend" or outcome.excinfo is not None:
        return
    backend = outcome.get_result()
    converted = backend_on_ferroloop(backend)
    if converted is not backend:
        # The cached value is what later requests of the fixture get.
        _, cache_key, _ = fixturedef.cached_result
        fixturedef.cached_result = (converted, cache_key, None)
        outcome.force_result(converted)
