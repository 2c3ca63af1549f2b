"""Start-up of the scanwatch commands that stand in for C tools, side by side with them.

Whole processes, runs alternated, median of --runs each (default 41), in the current
namespace (`lsof -n -P -i` lists what this machine has; a few dozen sockets is the
small-machine case of issue 18). The interpreter alone (python3 -S / with site) is the
floor. Prints one table; ratios are of medians to the C tool of the row.

`scanwatch status` has no C peer: as root, a real daemon runs in a lab namespace for it
(the control socket is a file, so the client runs here) and its row is absolute, with the
interpreter as the floor (issue 18's goal: under 40 ms).

Run: .venv/bin/python bench/startup.py [--runs N] [--no-status]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCANWATCH = os.path.join(ROOT, ".venv", "bin", "scanwatch")
PY = os.path.join(ROOT, ".venv", "bin", "python")

CASES = [  # (label, C tool's argv, scanwatch's argv)
    ("lsof -n -P -i", ["lsof", "-n", "-P", "-i"], [SCANWATCH, "lsof", "-n", "-P", "-i"]),
    ("lsof -h", ["lsof", "-h"], [SCANWATCH, "lsof", "-h"]),
    ("scan -h (nmap -h)", ["nmap", "-h"], [SCANWATCH, "scan", "-h"]),
    ("interpreter (python -S / python)", [PY, "-S", "-c", "pass"], [PY, "-c", "pass"]),
]


def once(argv: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=41)
    ap.add_argument("--no-status", action="store_true", help="skip the daemon-backed row")
    args = ap.parse_args()
    # Installed Python code has its bytecode compiled (Debian's py3compile, pip's install);
    # with PYTHONDONTWRITEBYTECODE set, as here, a bare checkout would recompile every module
    # on every start and the bench would measure the compiler
    import compileall
    compileall.compile_dir(os.path.join(ROOT, "scanwatch"), quiet=1)
    sockets = sum(1 for _ in open("/proc/net/tcp")) + sum(1 for _ in open("/proc/net/udp"))
    print(f"{sockets} IPv4 TCP+UDP table lines here; {os.cpu_count()} CPUs; "
          f"median of {args.runs} alternated runs, ms")
    print("| case | C tool | scanwatch | ratio |")
    print("|---|---|---|---|")
    for label, theirs, ours in CASES:
        once(theirs), once(ours)   # warm the page cache
        a, b = [], []
        for _ in range(args.runs):
            a.append(once(theirs))
            b.append(once(ours))
        ma, mb = statistics.median(a), statistics.median(b)
        print(f"| {label} | {ma * 1e3:.1f} | {mb * 1e3:.1f} | {mb / ma:.2f}x |")
    if not args.no_status and os.geteuid() == 0:
        status_row(args.runs)
    return 0


def status_row(runs: int) -> None:
    sys.path.insert(0, os.path.join(ROOT, "tests", "system"))
    from lab import Lab
    from sentryproc import SentryProcess
    with Lab() as lab, SentryProcess(lab) as sentry:
        argv = [SCANWATCH, "status", "--run-dir", str(sentry.paths["run"])]
        res = subprocess.run(argv, capture_output=True, text=True)
        if res.returncode != 0:
            raise SystemExit(f"status failed: {res.stderr}")
        once(argv)
        times = sorted(once(argv) for _ in range(runs))
        t = statistics.median(times)
        print(f"| status (daemon running) | - | {t * 1e3:.1f} | goal < 40 ms |")


if __name__ == "__main__":
    sys.exit(main())
