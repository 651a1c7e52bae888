"""Run an unmodified asyncio program on ferroloop.

    python -m ferroloop [--stats] [--debug] script.py [args...]
    python -m ferroloop [--stats] [--debug] -m package.module [args...]

``--stats`` prints, to stderr, what the program's loops counted and timed
(``loop.stats()``) when it ends: normally, by an exception or by Ctrl-C.
``--debug`` runs it in asyncio's debug mode, with ferroloop's report of
asynchronous generators that were never closed; unless ``-W`` says
otherwise, ResourceWarnings are then shown (as ``-X dev`` shows them), the
report being one.

ferroloop's policy is installed first, so the program's ``asyncio.run``,
``asyncio.new_event_loop`` and ``asyncio.get_event_loop`` create ferroloop
loops. The policy is the one hook asyncio offers a program that does not
pass ``loop_factory``; where asyncio deprecates policies (3.14+), it is set
through asyncio's own non-warning setter, so the program sees no warning
caused by ferroloop.
"""

import os
import runpy
import sys
import warnings

import ferroloop
from ferroloop import _diagnostics

USAGE = (
    "usage: python -m ferroloop [--stats] [--debug] script.py [args...]"
    " | python -m ferroloop [--stats] [--debug] -m module [args...]"
)


def main(argv):
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, file=sys.stderr if not argv else sys.stdout)
        return 2 if not argv else 0
    stats = False
    while argv and argv[0] in ("--stats", "--debug"):
        option = argv.pop(0)
        if option == "--stats":
            stats = True
            os.environ["FERROLOOP_STATS"] = "1"
        else:
            os.environ["PYTHONASYNCIODEBUG"] = "1"
            os.environ["FERROLOOP_ASYNCGEN_DEBUG"] = "1"
            if not sys.warnoptions:
                warnings.simplefilter("default", ResourceWarning)
    if not argv:
        print(USAGE, file=sys.stderr)
        return 2
    if stats:
        _diagnostics.track_loops()
        try:
            return _run(argv)
        finally:
            _diagnostics.summary()
    return _run(argv)


def _run(argv):
    ferroloop.install()
    if argv[0] == "-m":
        if len(argv) < 2:
            print(USAGE, file=sys.stderr)
            return 2
        module = argv[1]
        sys.argv = [module, *argv[2:]]
        # Like `python -m`: the current directory comes first on the path.
        sys.path[0] = os.getcwd()
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    else:
        script = argv[0]
        sys.argv = [script, *argv[1:]]
        # Like `python script.py`: the script's directory comes first.
        sys.path[0] = os.path.dirname(os.path.abspath(script))
        runpy.run_path(script, run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
