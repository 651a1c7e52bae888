"""The Python package's modules form layers: no import cycles among them,
``_compat`` (the version/feature probes) at the bottom and the only module
that reads ``sys.version_info``."""

import ast
import pathlib

import ferroloop

PACKAGE = pathlib.Path(ferroloop.__file__).resolve().parent


def _modules():
    return {path.stem: ast.parse(path.read_text(), str(path)) for path in sorted(PACKAGE.glob("*.py"))}


def _package_imports(tree):
    """The package's own modules a module imports (``from . import x``,
    ``from .x import y``, ``import ferroloop.x``)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module is None:
                found.update(alias.name for alias in node.names)
            elif node.level == 1:
                found.add(node.module.split(".")[0])
            elif node.level == 0 and node.module and node.module.startswith("ferroloop."):
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("ferroloop."):
                    found.add(alias.name.split(".")[1])
    return found


def test_no_import_cycles_among_the_package_modules():
    modules = _modules()
    graph = {name: _package_imports(tree) & set(modules) for name, tree in modules.items()}
    done, path = set(), []

    def visit(name):
        if name in path:
            cycle = path[path.index(name) :] + [name]
            raise AssertionError(f"import cycle: {' -> '.join(cycle)}")
        if name in done:
            return
        path.append(name)
        for imported in sorted(graph[name]):
            visit(imported)
        path.pop()
        done.add(name)

    for name in sorted(graph):
        visit(name)


def test_compat_imports_no_other_package_module():
    assert _package_imports(_modules()["_compat"]) == set()


def test_only_compat_reads_the_python_version():
    for name, tree in _modules().items():
        if name == "_compat":
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in ("version_info", "hexversion"):
                raise AssertionError(f"{name}.py line {node.lineno} reads sys.{node.attr}: probe it in _compat")
