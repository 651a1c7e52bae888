"""The floor of the call_soon row under ``scheduling.py --callgrind``: what a
Python loop that queues each no-op callback and a C-driven call of each one
cost by themselves, without any event loop.

    valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        python benches/callgrind_floor.py VARIANT N

VARIANT ``none`` runs nothing (subtract its count, then divide by N):
``append`` appends the callback in a Python loop as the row calls
``call_soon``, then calls each from C (``map``); ``context`` also copies the
current ``contextvars`` context per callback and runs the callback in it
(``Context.run``), the per-call copy asyncio requires of ``call_soon``.
"""

import collections
import contextvars
import gc
import itertools
import operator
import sys


def noop(*args):
    pass


def append(n):
    queue = []
    push = queue.append
    for _ in range(n):
        push(noop)
    collections.deque(map(operator.call, queue), 0)


def context(n):
    queue = []
    push = queue.append
    copy = contextvars.copy_context
    for _ in range(n):
        push(copy())
    collections.deque(map(contextvars.Context.run, queue, itertools.repeat(noop)), 0)


if __name__ == "__main__":
    variant, n = sys.argv[1], int(sys.argv[2])
    gc.collect()
    if variant != "none":
        {"append": append, "context": context}[variant](n)
