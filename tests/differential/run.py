"""Runs random programs on ferroloop and on stdlib asyncio and compares them.

    python tests/differential/run.py --count 100000            seeds 0 .. 99999
    python tests/differential/run.py --start 5000 --count 1000
    python tests/differential/run.py --seed 1234               one program: its source, both traces
    python tests/differential/run.py --seed 1234 --quiet       only whether it diverges

Prints the seed of every divergence (and its difference), a summary of the
features the programs used, and exits with status 1 if any diverged.
"""

import argparse
import asyncio
import pathlib
import sys
import time
from collections import Counter

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import ferroloop  # noqa: E402
from differential.runner import STREAMS, check  # noqa: E402

FACTORIES = {"ferroloop": ferroloop.new_event_loop, "asyncio": asyncio.SelectorEventLoop}


def show_one(seed, quiet):
    program, traces, problem = check(seed, FACTORIES)
    if not quiet:
        print(program.source)
        for name, trace in zip(FACTORIES, traces):
            print(f"=== {name}")
            for stream in STREAMS:
                for entry in trace.streams[stream]:
                    print(f"  {stream:12} {entry!r}")
            if trace.error:
                print(trace.error)
    print(problem or f"seed {seed}: the traces agree")
    return 1 if problem else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, help="run this one program and print it")
    parser.add_argument("--start", type=int, default=0, help="first seed (default 0)")
    parser.add_argument("--count", type=int, default=1000, help="number of programs (default 1000)")
    parser.add_argument("--quiet", action="store_true", help="with --seed: print only the verdict")
    parser.add_argument("--stop-after", type=int, default=10, help="stop after this many divergences")
    args = parser.parse_args()
    if args.seed is not None:
        return show_one(args.seed, args.quiet)
    features = Counter()
    diverged = []
    t0 = time.monotonic()
    for seed in range(args.start, args.start + args.count):
        program, _, problem = check(seed, FACTORIES)
        features.update(program.features)
        if problem:
            diverged.append(seed)
            print(f"--- seed {seed} diverges:\n{problem}\n", flush=True)
            if len(diverged) >= args.stop_after:
                break
        done = seed - args.start + 1
        if done % 1000 == 0:
            print(f"  {done} programs, {len(diverged)} divergent, {time.monotonic() - t0:.0f} s", flush=True)
    ran = seed - args.start + 1
    print(f"{ran} programs (seeds {args.start}..{seed}) in {time.monotonic() - t0:.1f} s on Python {sys.version.split()[0]}")
    print("features: " + ", ".join(f"{name} {n}" for name, n in sorted(features.items())))
    if diverged:
        print(f"DIVERGED: seeds {diverged}")
        return 1
    print("no divergence")
    return 0


if __name__ == "__main__":
    sys.exit(main())
