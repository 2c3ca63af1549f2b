"""`scanwatch report` on a large events.jsonl: time and peak memory, beside `grep -c`
and `wc -l` over the same file (the floor of one pass over it).

    .venv/bin/python bench/report.py                 # 1,000,000 and 2,000,000 lines
    .venv/bin/python bench/report.py --lines 200000  # a quicker look

The events are synthetic but shaped like the daemon's (same keys, sorted, one per
line): 5,000 sources, 1,000 ports, six scan types, times spread over the last 24 h,
one block per 20 reports. Peak memory is the child's ru_maxrss (os.wait4): if it stays
flat when the file doubles, memory is bounded by the tables, not by the lines.
"""
import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import datetime

KINDS = ("SYN/Normal", "FIN", "NULL", "XMAS", "Unknown Type", "UDP")


def make_events(path, lines, seed=1):
    rnd = random.Random(seed)
    now = time.time()
    with open(path, "w") as f:
        for i in range(lines):
            t = now - 86400 + 86400 * i / lines
            kind = KINDS[rnd.randrange(6)]
            rec = {"action": "block" if i % 20 == 0 else "alert", "actions_ok": True,
                   "addr": f"198.18.{rnd.randrange(20)}.{rnd.randrange(250)}",
                   "dry_run": False, "evidence": "stealth", "host": "x", "ip_options": False,
                   "kernel_blocked": False, "mode": "stcp", "port": rnd.randrange(1, 1001),
                   "ports": [], "proto": "UDP" if kind == "UDP" else "TCP",
                   "reason": "trigger", "scan_type": kind, "sweep": 0, "tcp_flags": 2,
                   "time": datetime.datetime.fromtimestamp(t, datetime.timezone.utc)
                   .isoformat(timespec="milliseconds"),
                   "tripwire_hits": 0, "type": "scan"}
            f.write(json.dumps(rec, sort_keys=True, separators=(",", ":")) + "\n")


def measure(argv):
    t0 = time.monotonic()
    # stdout to a pipe, not /dev/null: GNU grep stops at the first match when its
    # output is /dev/null, which would make the floor meaningless
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - t0
    if os.waitstatus_to_exitcode(status) not in (0, 1):  # grep -c: 1 when nothing matched
        sys.exit(f"{argv[0]} failed: {proc.stderr.read().decode()}")
    return wall, usage.ru_maxrss / 1024


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, nargs="+", default=[1_000_000, 2_000_000])
    args = ap.parse_args()
    sw = [sys.executable, "-c", "from scanwatch.cli import main; main()", "report"]
    tmp = tempfile.mkdtemp(prefix="swbench-report-")
    try:
        print(f"{'lines':>10} {'what':<28} {'seconds':>8} {'peak MiB':>9} {'vs grep':>8}")
        for n in args.lines:
            path = os.path.join(tmp, f"events-{n}.jsonl")
            make_events(path, n)
            grep, _ = measure(["grep", "-c", '"type":"scan"', path])
            rows = [("wc -l", ["wc", "-l", path]),
                    ("grep -c (one pass)", ["grep", "-c", '"type":"scan"', path]),
                    ("scanwatch report (text)", sw + ["--events", path]),
                    ("scanwatch report --html", sw + ["--events", path, "--html",
                                                      os.path.join(tmp, "r.html")])]
            for name, argv in rows:
                wall, rss = measure(argv)
                print(f"{n:>10} {name:<28} {wall:>8.2f} {rss:>9.1f} {wall / grep:>7.1f}x",
                      flush=True)
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
