"""Seeing inside the loop: the unclosed-generator report, timing for
``loop.stats()``, and the summary ``python -m ferroloop --stats`` prints.

``FERROLOOP_ASYNCGEN_DEBUG=1`` turns the report of asynchronous generators
that were never closed on for every loop (debug mode turns it on too);
``FERROLOOP_STATS=1`` turns timing on (debug mode, or ``loop.set_stats(True)``,
too). The counters of ``loop.stats()`` are always kept.
"""

import os
import sys
import weakref

__all__ = ("configure", "track_loops", "summary")

# Loops made while the runner tracks them (``--stats``), in order of creation.
_tracked = None


def _env_flag(name):
    value = os.environ.get(name, "")
    return value not in ("", "0")


def configure(loop):
    """Applies the environment's settings to a new loop (and tracks it for
    the runner's summary, if asked)."""
    if _env_flag("FERROLOOP_ASYNCGEN_DEBUG"):
        loop._set_asyncgen_report(True)
    if _env_flag("FERROLOOP_STATS"):
        loop.set_stats(True)
    if _tracked is not None:
        _tracked.append(loop)


def track_loops():
    """From now on, remember every loop made (for ``summary``)."""
    global _tracked
    if _tracked is None:
        _tracked = []


def _count(n):
    return f"{n:,}"


def _seconds(s):
    return f"{s * 1e3:.1f} ms" if s < 1 else f"{s:.3f} s"


def format_stats(stats, title):
    """A readable text of ``loop.stats()``."""
    g = stats["asyncgens"]
    lines = [
        title,
        f"  turns {_count(stats['turns'])}; callbacks {_count(stats['callbacks_run'])} run"
        f" ({_count(stats['callbacks_scheduled'])} scheduled, {_count(stats['callbacks_cancelled'])} cancelled)",
        f"  timers {_count(stats['timers_scheduled'])} scheduled, {_count(stats['timers_cancelled'])} cancelled,"
        f" {_count(stats['timers_fired'])} fired; I/O events {_count(stats['io_events'])};"
        f" call_soon_threadsafe wake-ups {_count(stats['threadsafe_wakeups'])}",
        f"  async generators: {_count(g['first_iterated'])} first iterated,"
        f" {_count(g['finished_or_closed'])} finished or closed,"
        f" {_count(g['finalized_unclosed'])} finalized unclosed,"
        f" {_count(g['closed_by_shutdown'])} closed by shutdown_asyncgens,"
        f" {_count(g['cleanup_errors'])} cleanup errors",
    ]
    if "callback_seconds" in stats:
        lines.append(
            f"  time: {_seconds(stats['poll_seconds'])} waiting for I/O,"
            f" {_seconds(stats['callback_seconds'])} running callbacks"
        )
        buckets = [f"{label} {_count(n)}" for label, n in stats["callback_durations"].items() if n]
        if buckets:
            lines.append("  callback durations: " + ", ".join(buckets))
        if stats["slowest_callbacks"]:
            lines.append("  slowest callbacks:")
            for what, seconds in stats["slowest_callbacks"]:
                lines.append(f"    {_seconds(seconds):>10}  {what}")
    return "\n".join(lines)


def summary(file=None):
    """Prints the figures of every tracked loop (the runner's ``--stats``)."""
    file = file if file is not None else sys.stderr
    loops = _tracked or []
    if not loops:
        print("ferroloop: no event loop was made", file=file)
        return
    for i, loop in enumerate(loops, 1):
        title = f"ferroloop stats, loop {i} of {len(loops)}:"
        print(format_stats(loop.stats(), title), file=file)
