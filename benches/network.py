"""Network benchmarks: echo servers under a separate load-generator process,
and an HTTP/1.1 keep-alive server under wrk.

    python benches/network.py                    # every row, 3 repeats
    python benches/network.py --only tcp-protocol-1k --seconds 2
    python benches/network.py --markdown

Every server (ferroloop, stdlib asyncio, uvloop, rloop and, on the Protocol
and UDP rows, a plain Rust echo server on the same epoll layer as the
ceiling) runs in its own process, one after the other in a shuffled order
per repeat.
The load generator (`echo-load`, Rust, 10 connections, one message in flight
per connection; `udp-load` for the UDP rows, 10 clients with one datagram in
flight each) runs in another process. The figures are messages (or HTTP
requests) per second, and the server's CPU time per message (user + system,
read from /proc before and after the run): with client and server sharing
this machine's 2 cores, CPU per message is the fairer comparison. Peak RSS
is the server's VmHWM. The tls rows and https serve over TLS (a
certificate made by trustme); rloop has no TLS. Ratios are peer /
ferroloop, so above 1 means ferroloop uses less CPU per message; they are paired per repeat and the
median is shown. Needs the Rust binaries (`cargo build --release -p
ferroloop-bench`), httptools and wrk (`./benches/run network` installs them).
``--baseline DIR`` adds ferroloop as built from another commit by
``benches/build-baseline REV`` (server ``baseline``), to measure a change
before and after in one run.
"""

import argparse
import os
import pathlib
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
LOADGEN = ROOT / "target" / "release" / "echo-load"
UDP_LOADGEN = ROOT / "target" / "release" / "udp-load"
RUST_SERVER = ROOT / "target" / "release" / "echo-server-rs"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
CONNECTIONS = 10

KiB = 1024
ROWS = [
    ("tcp-protocol-1k", "protocol", "tcp", 1 * KiB),
    ("tcp-protocol-10k", "protocol", "tcp", 10 * KiB),
    ("tcp-protocol-100k", "protocol", "tcp", 100 * KiB),
    ("tcp-streams-1k", "streams", "tcp", 1 * KiB),
    ("tcp-streams-10k", "streams", "tcp", 10 * KiB),
    ("tcp-streams-100k", "streams", "tcp", 100 * KiB),
    ("tcp-sock-1k", "sock", "tcp", 1 * KiB),
    ("tcp-sock-10k", "sock", "tcp", 10 * KiB),
    ("tcp-sock-100k", "sock", "tcp", 100 * KiB),
    ("unix-protocol-1k", "protocol", "unix", 1 * KiB),
    ("unix-protocol-10k", "protocol", "unix", 10 * KiB),
    ("unix-protocol-100k", "protocol", "unix", 100 * KiB),
    ("http", "http", "tcp", None),
    ("udp-64", "datagram", "udp", 64),
    ("udp-1k", "datagram", "udp", 1 * KiB),
    ("udp-8k", "datagram", "udp", 8 * KiB),
    ("tls-protocol-1k", "protocol", "tls", 1 * KiB),
    ("tls-protocol-100k", "protocol", "tls", 100 * KiB),
    ("tls-streams-1k", "streams", "tls", 1 * KiB),
    ("tls-streams-100k", "streams", "tls", 100 * KiB),
    ("https", "http", "tls", None),
]


def available_loops():
    loops = ["ferroloop", "asyncio"]
    for name in ("uvloop", "rloop"):
        try:
            __import__(name)
        except ImportError:
            print(f"{name} is not installed: skipped", file=sys.stderr)
        else:
            loops.append(name)
    return loops


def write_certificate(tmpdir):
    """A certificate for localhost and its key, in one PEM file (made by
    trustme, which `benches/run network` installs)."""
    import trustme

    path = os.path.join(tmpdir, "server.pem")
    cert = trustme.CA().issue_cert("localhost", "127.0.0.1")
    with open(path, "wb") as f:
        for blob in cert.cert_chain_pems:
            f.write(blob.bytes())
        f.write(cert.private_key_pem.bytes())
    return path


def free_port(kind=socket.SOCK_STREAM):
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15 of the whole line.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def peak_rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def stop_process(proc, sig, timeout):
    """Sends ``sig``; kills the process if it has not exited ``timeout``
    seconds later."""
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def measure(server, mode, transport, size, seconds, tmpdir):
    """One run: returns (messages per second, CPU µs per message, RSS MiB)
    or None if this server cannot run this row."""
    if transport == "unix":
        address = f"unix:{tmpdir}/{server}.sock"
    elif transport == "tls":
        if server == "rust":
            return None
        address = f"tls:127.0.0.1:{free_port()}"
    elif transport == "udp":
        address = f"127.0.0.1:{free_port(socket.SOCK_DGRAM)}"
    else:
        address = f"127.0.0.1:{free_port()}"
    if server == "rust":
        cmd = [str(RUST_SERVER), f"udp:{address}" if transport == "udp" else address]
    else:
        cmd = [sys.executable, str(HERE / "echo_server.py"), server, mode, address]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        if proc.stdout.readline().strip() != "ready":
            err = proc.stderr.read() if proc.poll() is not None else ""
            print(f"  {server} cannot serve {mode}/{transport}: {err.strip().splitlines()[-1:]}", file=sys.stderr)
            return None
        time.sleep(0.1)
        cpu0 = cpu_seconds(proc.pid)
        try:
            count, elapsed = run_load(mode, address, size, seconds)
        except subprocess.CalledProcessError as exc:
            print(f"  load against {server} failed: {exc.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
            return None
        cpu = cpu_seconds(proc.pid) - cpu0
        rss = peak_rss_mib(proc.pid)
    finally:
        stop_process(proc, signal.SIGTERM, 5)
    if count == 0:
        return None
    return count / elapsed, cpu / count * 1e6, rss


def run_load(mode, address, size, seconds):
    """Runs the load generator; returns (messages, seconds)."""
    if mode == "http":
        url = f"https://{address[4:]}/" if address.startswith("tls:") else f"http://{address}/"
        out = subprocess.run(
            ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{max(1, round(seconds))}s", url],
            capture_output=True, text=True, check=True,
        ).stdout
        count = int(re.search(r"(\d+) requests in", out).group(1))
        elapsed = float(re.search(r"requests in ([\d.]+)s", out).group(1))
    else:
        loadgen = UDP_LOADGEN if mode == "datagram" else LOADGEN
        out = subprocess.run(
            [str(loadgen), address, str(CONNECTIONS), str(size), str(seconds)],
            capture_output=True, text=True, check=True,
        ).stdout
        count = int(re.search(r"messages=(\d+)", out).group(1))
        elapsed = float(re.search(r"seconds=([\d.]+)", out).group(1))
    return count, elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--only", action="append")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--baseline", metavar="DIR", help="also run ferroloop_base from DIR (benches/build-baseline)")
    args = parser.parse_args()
    for tool in (LOADGEN, UDP_LOADGEN, RUST_SERVER):
        if not tool.exists():
            raise SystemExit(f"{tool} is missing: run `cargo build --release -p ferroloop-bench`")
    if shutil.which("wrk") is None:
        print("wrk is not installed: the http row is skipped", file=sys.stderr)

    loops = available_loops()
    if args.baseline:
        os.environ["FERROLOOP_BASELINE"] = os.path.abspath(args.baseline)
        loops.append("baseline")
    rows = [r for r in ROWS if not args.only or r[0] in args.only]
    if shutil.which("wrk") is None:
        rows = [r for r in rows if r[1] != "http"]
    results = []
    with tempfile.TemporaryDirectory() as tmpdir:
        if any(r[2] == "tls" for r in rows):
            os.environ["FERROLOOP_BENCH_CERT"] = write_certificate(tmpdir)
        for name, mode, transport, size in rows:
            servers = loops + (["rust"] if mode in ("protocol", "datagram") else [])
            runs = {s: [] for s in servers}
            for _ in range(args.repeat):
                order = list(servers)
                random.shuffle(order)
                for server in order:
                    runs[server].append(measure(server, mode, transport, size, args.seconds, tmpdir))
            summary = {}
            for server, samples in runs.items():
                ok = [s for s in samples if s is not None]
                if len(ok) == len(samples):
                    summary[server] = (
                        statistics.median(s[0] for s in ok),
                        statistics.median(s[1] for s in ok),
                        max(s[2] for s in ok),
                    )
            ratios = {}
            if "ferroloop" in summary:
                for server in summary:
                    if server != "ferroloop":
                        pairs = [
                            theirs[1] / ours[1]
                            for ours, theirs in zip(runs["ferroloop"], runs[server])
                            if ours is not None and theirs is not None
                        ]
                        ratios[server] = statistics.median(pairs)
            results.append((name, summary, ratios))
            cells = "  ".join(
                f"{s} {v[0] / 1e3:7.1f}k/s {v[1]:6.1f}us {v[2]:5.1f}MiB" for s, v in summary.items()
            )
            print(f"{name:20} {cells}", flush=True)
            print(" " * 21 + "  ".join(f"cpu/msg x{r:.2f} vs {s}" for s, r in ratios.items()), flush=True)

    if args.markdown:
        columns = loops + ["rust"]
        print()
        print("| row | " + " | ".join(f"{c} msg/s · CPU µs/msg · RSS" for c in columns) + " | "
              + " | ".join(f"CPU/msg vs {c}" for c in columns if c != "ferroloop") + " |")
        print("|---|" + "---|" * (2 * len(columns) - 1))
        for name, summary, ratios in results:
            cells = []
            for c in columns:
                v = summary.get(c)
                cells.append(f"{v[0] / 1e3:.1f}k · {v[1]:.1f} · {v[2]:.0f} MiB" if v else "n/a")
            rs = []
            for c in columns:
                if c == "ferroloop":
                    continue
                r = ratios.get(c)
                rs.append(f"{r:.2f}x" if r is not None else "n/a")
            print(f"| {name} | " + " | ".join(cells) + " | " + " | ".join(rs) + " |")


if __name__ == "__main__":
    main()
