"""Loaded with ``-p ferroloop_run`` next to ``-p ferroloop.pytest`` in the
ferroloop run of run_suites.py:

- counts the ferroloop loops the suite's tests create and appends the count
  to ``$FERROLOOP_PROBE_FILE`` at the end (a line per pytest process), so that a run that silently stayed
  on asyncio's loop is caught;
- gives ferroloop's ``subprocess_exec``/``subprocess_shell`` the allowance
  blockbuster (which anyio's suite uses to find blocking calls in the event
  loop's thread) makes for asyncio's: ``subprocess.Popen`` reads the pipe
  that reports the child's exec error with a blocking ``os.read``, on both
  loops, and blockbuster allows it only under
  ``asyncio/base_events.py``'s methods of those names.
"""

import os

import ferroloop

_made = 0
_factory = ferroloop.new_event_loop


def _counting_factory():
    global _made
    _made += 1
    return _factory()


ferroloop.new_event_loop = _counting_factory

try:
    from blockbuster import blockbuster as _bb
except ImportError:
    _bb = None
else:
    _os_functions = _bb._get_os_wrapped_functions

    def _get_os_wrapped_functions(*args, **kwargs):
        functions = _os_functions(*args, **kwargs)
        functions["os.read"].can_block_in("ferroloop/_subprocess.py", {"subprocess_exec", "subprocess_shell"})
        return functions

    _bb._get_os_wrapped_functions = _get_os_wrapped_functions


def pytest_unconfigure(config):
    # Appended: with pytest-xdist, each worker and the controller write.
    with open(os.environ["FERROLOOP_PROBE_FILE"], "a") as f:
        f.write("%d\n" % _made)
