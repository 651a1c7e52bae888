"""The functions the native code calls back into (``ferroloop._hooks``) match
the names it looks up (``crates/ferroloop-py/src/py_refs.rs``)."""

import pathlib
import re

import pytest

from ferroloop import _hooks

PY_REFS = pathlib.Path(__file__).resolve().parent.parent / "crates" / "ferroloop-py" / "src" / "py_refs.rs"

# `cached_attr!(name, "module", "attribute")`, doc comments and line breaks
# allowed between the parts.
_LOOKUP = re.compile(r'"(ferroloop\.[\w.]+)"\s*,\s*"(\w+)"')


@pytest.fixture(scope="module")
def lookups():
    if not PY_REFS.is_file():
        pytest.skip(f"the Rust sources are not here ({PY_REFS} is absent)")
    return _LOOKUP.findall(PY_REFS.read_text())


def test_native_code_looks_up_ferroloop_functions_only_in_hooks(lookups):
    assert lookups, f"no ferroloop lookups found in {PY_REFS}: has the macro changed?"
    assert {module for module, _ in lookups} == {"ferroloop._hooks"}


def test_every_function_native_code_looks_up_exists_and_is_callable(lookups):
    for _module, name in lookups:
        assert callable(getattr(_hooks, name, None)), f"ferroloop._hooks.{name} is missing or not callable"


def test_hooks_all_lists_exactly_the_functions_native_code_looks_up(lookups):
    assert sorted(_hooks.__all__) == sorted(name for _module, name in lookups)
