"""Framework benchmarks: "hello" servers of uvicorn + Starlette and of
aiohttp under wrk, on ferroloop, stdlib asyncio and uvloop in the same run.

    python benches/frameworks.py                 # both rows, 5 repeats
    python benches/frameworks.py --only aiohttp --seconds 3 --markdown

Each server runs in its own process (uvicorn with ``--loop``, its httptools
HTTP parser and no access log; aiohttp with ``web.run_app(loop=...)`` and no
access log), one loop after another in a shuffled order per repeat, under
``wrk -t1 -c10`` (10 keep-alive connections). As in benches/network.py, the
figure compared is the server's CPU time per request (user + system, from
/proc), since wrk and the server share the machine's cores; the ratio is
peer CPU / ferroloop CPU per request, paired per repeat (median; above 1:
ferroloop uses less). Needs uvicorn, starlette, httptools, aiohttp, uvloop
and wrk (``./benches/run frameworks`` installs them).
"""

import argparse
import importlib.metadata
import pathlib
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from network import cpu_seconds, free_port, peak_rss_mib, run_load, stop_process  # noqa: E402

LOOPS = ["ferroloop", "asyncio", "uvloop"]
UVICORN_LOOP = {"ferroloop": "ferroloop:new_event_loop", "asyncio": "asyncio", "uvloop": "uvloop"}
ROWS = ["uvicorn-starlette", "aiohttp"]


def server_command(row, loop, port):
    if row == "uvicorn-starlette":
        return [
            sys.executable, "-m", "uvicorn", "framework_apps:starlette_app", "--host", "127.0.0.1",
            "--port", str(port), "--loop", UVICORN_LOOP[loop], "--http", "httptools",
            "--no-access-log", "--log-level", "warning",
        ]
    return [sys.executable, str(HERE / "framework_apps.py"), "aiohttp", loop, str(port)]


def wait_listening(port, proc, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def measure(row, loop, seconds):
    """One run: (requests per second, server CPU µs per request, RSS MiB)."""
    port = free_port()
    proc = subprocess.Popen(server_command(row, loop, port), cwd=HERE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        if not wait_listening(port, proc):
            raise SystemExit(f"{row} on {loop} did not start: {proc.stderr.read() if proc.poll() is not None else ''}")
        # A short warm-up, outside the measurement.
        run_load("http", f"127.0.0.1:{port}", None, 1)
        cpu0 = cpu_seconds(proc.pid)
        count, elapsed = run_load("http", f"127.0.0.1:{port}", None, seconds)
        cpu = cpu_seconds(proc.pid) - cpu0
        rss = peak_rss_mib(proc.pid)
    finally:
        stop_process(proc, signal.SIGINT, 10)
    return count / elapsed, cpu / count * 1e6, rss


def versions():
    names = ["ferroloop", "uvloop", "uvicorn", "starlette", "httptools", "aiohttp"]
    return "python " + sys.version.split()[0] + ", " + ", ".join(
        f"{n} {importlib.metadata.version(n)}" for n in names
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--only", action="append", choices=ROWS)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (./benches/run frameworks installs it)")
    print("versions:", versions(), flush=True)
    results = []
    for row in args.only or ROWS:
        runs = {loop: [] for loop in LOOPS}
        for _ in range(args.repeat):
            order = list(LOOPS)
            random.shuffle(order)
            for loop in order:
                runs[loop].append(measure(row, loop, args.seconds))
        summary = {
            loop: (statistics.median(s[0] for s in samples), statistics.median(s[1] for s in samples),
                   max(s[2] for s in samples))
            for loop, samples in runs.items()
        }
        ratios = {}
        for loop in LOOPS[1:]:
            pairs = [theirs[1] / ours[1] for ours, theirs in zip(runs["ferroloop"], runs[loop])]
            ratios[loop] = (statistics.median(pairs), min(pairs), max(pairs))
        results.append((row, summary, ratios))
        print(f"{row:18} " + "  ".join(
            f"{loop} {v[0] / 1e3:6.1f}k req/s {v[1]:6.1f}us/req {v[2]:5.1f}MiB" for loop, v in summary.items()), flush=True)
        print(" " * 19 + "  ".join(
            f"cpu/req x{r[0]:.2f} ({r[1]:.2f}-{r[2]:.2f}) vs {loop}" for loop, r in ratios.items()), flush=True)

    if args.markdown:
        print()
        print("| server | " + " | ".join(f"{loop} req/s · CPU µs/req · RSS" for loop in LOOPS) + " | "
              + " | ".join(f"CPU/req vs {loop}" for loop in LOOPS[1:]) + " |")
        print("|---|" + "---|" * (2 * len(LOOPS) - 1))
        for row, summary, ratios in results:
            cells = [f"{summary[l][0] / 1e3:.1f}k · {summary[l][1]:.1f} · {summary[l][2]:.0f} MiB" for l in LOOPS]
            rs = [f"{ratios[l][0]:.2f}x ({ratios[l][1]:.2f}–{ratios[l][2]:.2f})" for l in LOOPS[1:]]
            print(f"| {row} | " + " | ".join(cells) + " | " + " | ".join(rs) + " |")


if __name__ == "__main__":
    main()
