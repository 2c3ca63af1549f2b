"""Start-up of the scanwatch commands that stand in for C tools, side by side with them.

Whole processes, runs alternated, median of --runs each (default 41), in the current
namespace (`lsof -n -P -i` lists what this machine has; a few dozen sockets is the
small-machine case of issue 18). The interpreter alone (python3 -S / with site) is the
floor. Prints one table; ratios are of medians to the C tool of the row.

Run: .venv/bin/python bench/startup.py [--runs N]
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
    args = ap.parse_args()
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
