"""The loops the in-process benchmarks compare (scheduling.py,
processes.py): ferroloop, stdlib asyncio, and uvloop and rloop when they are
installed; and the versions line every run prints first."""

import asyncio
import sys

import ferroloop

LOOPS = {"ferroloop": ferroloop.new_event_loop, "asyncio": asyncio.SelectorEventLoop}
MISSING = []
for _name in ("uvloop", "rloop"):
    try:
        _mod = __import__(_name)
    except ImportError:
        MISSING.append(_name)
    else:
        LOOPS[_name] = _mod.new_event_loop


def print_versions():
    """Prints the versions measured, and the peers that are missing."""
    versions = {"python": sys.version.split()[0], "ferroloop": ferroloop.__version__}
    for name in ("uvloop", "rloop"):
        if name in LOOPS:
            versions[name] = getattr(sys.modules[name], "__version__", "?")
    print("versions:", ", ".join(f"{k} {v}" for k, v in versions.items()))
    if MISSING:
        print("not installed (skipped):", ", ".join(MISSING))


def peers():
    """The loops ferroloop is compared with."""
    return [name for name in LOOPS if name != "ferroloop"]
