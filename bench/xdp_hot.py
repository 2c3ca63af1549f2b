#!/usr/bin/env python3
"""The XDP program alone, with hot caches: ns per run of each path on one crafted frame,
repeated in the kernel (BPF_PROG_TEST_RUN), against a program that only returns XDP_PASS.

What it tells: the flood bench (`bench/sentry.py --xdp-only`) measures a path between two
packets of a flood, when the stack has evicted the program's code and data from the CPU's
caches; this one measures the same instructions with everything cached. The difference
between the two is what misses cost, which is what the flood figures are mostly made of.

    sudo .venv/bin/python bench/xdp_hot.py [--rounds 15] [--repeat 300000]

Runs in a throw-away lab namespace (the program's socket lookups see no listener there);
no packet leaves the kernel's test harness. Rounds interleave the programs, so a drift of
the machine moves every row alike; cells are median [min–max] of the rounds.
"""
import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "system"))
sys.path.insert(0, str(ROOT))

HERE, CAUGHT, BLOCKED = "198.18.250.1", "198.18.250.2", "198.18.250.3"
SWEEP = range(2000, 2020)  # SWEEP_PORTS distinct closed ports: the source is caught
PATHS = {"watch": "a caught source's SYN to a port without a tripwire (the cache passes it)",
         "drop": "a blocked source's SYN (the cache drops it)",
         "empty": "a program that only returns XDP_PASS"}


def inner(rounds, repeat):
    """In the lab namespace: load, set the sources up, time each path `rounds` times."""
    from bcc import BPF
    from progrun import ether, loaded_sentry, run
    from resilience import ipv4, tcp

    def syn(src, port):
        return ether(ipv4(src, HERE, tcp(src, HERE, port)))

    s = loaded_sentry(sweep_ports=len(SWEEP))
    for port in SWEEP:
        run(s.prog_fd, syn(CAUGHT, port))
    s.block(BLOCKED)
    frames = {"watch": syn(CAUGHT, 3000), "drop": syn(BLOCKED, 3000)}
    for frame in frames.values():
        run(s.prog_fd, frame)  # the full path fills the source's slot
    empty = BPF(text="int xdp_empty(struct xdp_md *ctx) { return XDP_PASS; }")
    progs = {"watch": s.prog_fd, "drop": s.prog_fd,
             "empty": empty.load_func("xdp_empty", BPF.XDP).fd}
    frames["empty"] = frames["drop"]
    out = {name: [] for name in PATHS}
    for _ in range(rounds):
        for name in PATHS:
            out[name].append(run(progs[name], frames[name], repeat)[1])
    print(json.dumps(out))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--repeat", type=int, default=300000, help="runs per round and path")
    ap.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.inner:
        return inner(args.rounds, args.repeat)
    from lab import Lab
    with Lab() as lab:
        res = lab.run(lab.target_ns, sys.executable, __file__, "--inner", "--rounds",
                      args.rounds, "--repeat", args.repeat, timeout=600)
    if res.returncode != 0:
        sys.exit(f"error: the measurement failed:\n{res.stderr[-2000:]}")
    out = json.loads(res.stdout.strip().splitlines()[-1])
    empty = statistics.median(out["empty"])
    print(f"ns per run, hot caches; median [min–max] of {args.rounds} rounds of "
          f"{args.repeat} runs\n")
    print("| path | ns/run | minus the empty program |\n|---|---|---|")
    for name, what in PATHS.items():
        v = out[name]
        m = statistics.median(v)
        over = f"{m - empty:.0f}" if name != "empty" else "–"
        print(f"| {name}: {what} | {m:.0f} [{min(v)}–{max(v)}] | {over} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
