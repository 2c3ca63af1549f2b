"""`scanwatch scan` against nmap: same port states, and how long each takes (root).

    .venv/bin/python bench/scan.py [--quick] [--runs N] [--case NAME ...]

Builds a lab (tests/system/lab.py: a target and a scanner namespace on a veth
pair) with TCP and UDP listeners and nft-filtered ports in the target (the lab
of tests/system/scan/test_scan.py), then for each case runs nmap and scanwatch
alternately, N times each (5 by default, 2 with --quick), from the scanner
namespace. Every run's port states (from -oX: listed ports plus the ports of
<extrareasons>) must equal nmap's. Times are wall-clock for the whole command
(process start to exit); the machine is shared, so the median is the figure to
read, and runs alternate so that load hits both alike.

Cases: -sT -p-, -sS -p-, -sU -p 1-1024, -sF/-sX/-sN -p 1-1024, and -sS -p- with
1000 more ports dropped (table inet scanbench in the target, removed after).

The two -sS -p- cases also run Debian's masscan once (same target, ports 1-65535) at
MASSCAN_RATE packets/s with --wait MASSCAN_WAIT: its time and whether its open ports are
nmap's (masscan reports open ports only). On the lab's veth, with the machine shared,
masscan missed open ports at 1,000,000 pps (3 of 7 found) and at 100,000 (1-3 of 7 once
nmap and scanwatch had run; 7 of 7 on a fresh lab), and found 6-7 of 7 at 20,000.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "system"))
sys.path.insert(0, str(ROOT / "tests" / "system" / "scan"))

from lab import Lab  # noqa: E402
from test_scan import SCAN, ScanLab, expand  # noqa: E402

FILTERED_1000 = "30001-31000"
MASSCAN_RATE = 20_000
MASSCAN_WAIT = 2   # seconds after the last probe (masscan's default is 10)
CASES = [
    # name, args, goal (ratio of medians), extra nft drop
    ("-sT -p-", ["-sT", "-p-"], 1.0, False),
    ("-sS -p-", ["-sS", "-p-"], 0.8, False),
    ("-sU -p 1-1024", ["-sU", "-p", "1-1024"], None, False),
    ("-sF -p 1-1024", ["-sF", "-p", "1-1024"], None, False),
    ("-sX -p 1-1024", ["-sX", "-p", "1-1024"], None, False),
    ("-sN -p 1-1024", ["-sN", "-p", "1-1024"], None, False),
    ("-sS -p- 1000 filtered", ["-sS", "-p-"], 0.5, True),
]


def states_from_xml(path: str) -> dict[tuple[str, int], str]:
    root = ET.parse(path).getroot()
    out = {}
    for host in root.findall("host"):
        for extra in host.findall("ports/extraports"):
            for reasons in extra.findall("extrareasons"):
                for p in expand(reasons.get("ports", "")):
                    out[(reasons.get("proto"), p)] = extra.get("state")
        for port in host.findall("ports/port"):
            out[(port.get("protocol"), int(port.get("portid")))] = \
                port.find("state").get("state")
    return out


def run_once(slab: ScanLab, tool: str, args: list[str], xml: str) -> float:
    lab = slab.lab
    argv = (["nmap", "-n"] if tool == "nmap" else SCAN) + args + ["-oX", xml, lab.target_ip4]
    start = time.perf_counter()
    res = lab.run(lab.scanner_ns, *argv, timeout=600)
    took = time.perf_counter() - start
    if res.returncode != 0:
        raise SystemExit(f"{tool} {' '.join(args)} failed: {res.stderr.strip()}")
    return took


def run_masscan(slab: ScanLab, xml: str) -> tuple[float, set]:
    """One masscan run of every TCP port: (seconds, open ports). masscan has its own
    stack: it is told the scanner's interface and address and the target's MAC."""
    lab = slab.lab
    link = lab.run(lab.target_ns, "ip", "-j", "link", "show", lab.target_if).stdout
    argv = ["masscan", "-p1-65535", lab.target_ip4, "--rate", str(MASSCAN_RATE),
            "--wait", str(MASSCAN_WAIT), "--interface", lab.scanner_if,
            "--adapter-ip", lab.scanner_ip4, "--router-mac", json.loads(link)[0]["address"],
            "-oX", xml]
    start = time.perf_counter()
    res = lab.run(lab.scanner_ns, *argv, timeout=600)
    took = time.perf_counter() - start
    if res.returncode != 0:
        raise SystemExit(f"masscan failed: {res.stderr.strip()[-300:]}")
    root = ET.parse(xml).getroot()
    return took, {int(p.get("portid")) for p in root.iter("port")
                  if p.find("state").get("state") == "open"}


def bench_case(slab, name, args, runs, tmp) -> dict:
    times = {"nmap": [], "scanwatch": []}
    reference = None
    mismatches = []
    for i in range(runs):
        for tool in (("nmap", "scanwatch") if i % 2 == 0 else ("scanwatch", "nmap")):
            xml = os.path.join(tmp, f"{tool}.xml")
            times[tool].append(run_once(slab, tool, args, xml))
            states = states_from_xml(xml)
            if tool == "nmap" and reference is None:
                reference = states
            elif reference is not None and states != reference:
                diff = {k: (states.get(k), reference.get(k))
                        for k in set(states) | set(reference) if states.get(k) != reference.get(k)}
                mismatches.append((tool, i, dict(list(diff.items())[:8]), len(diff)))
    out = {"times": times, "ports": len(reference or {}), "mismatches": mismatches}
    if args == ["-sS", "-p-"]:
        took, opened = run_masscan(slab, os.path.join(tmp, "masscan.xml"))
        nmap_open = {p for (proto, p), st in (reference or {}).items()
                     if proto == "tcp" and st == "open"}
        out["masscan"] = (took, opened == nmap_open, len(opened), len(nmap_open))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 runs per tool and case")
    ap.add_argument("--runs", type=int, help="runs per tool and case (default 5)")
    ap.add_argument("--case", action="append", help="only the cases whose name contains this")
    opts = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("bench/scan.py needs root (namespaces, raw sockets)", file=sys.stderr)
        return 1
    runs = opts.runs or (2 if opts.quick else 5)
    cases = [c for c in CASES if not opts.case or any(s in c[0] for s in opts.case)]
    rows = []
    with Lab() as lab, tempfile.TemporaryDirectory(prefix="swbench-") as tmp:
        slab = ScanLab(lab)
        print(f"lab: target {lab.target_ip4} ({lab.target_ns}), scanner {lab.scanner_ns}; "
              f"{runs} runs per tool, alternating", flush=True)
        try:
            for name, args, goal, extra in cases:
                if extra:
                    rules = ("table inet scanbench {\n chain input {\n"
                             "  type filter hook input priority -10; policy accept;\n"
                             f"  tcp dport {FILTERED_1000} drop\n }}\n}}\n")
                    res = lab.run(lab.target_ns, "nft", "-f", "-", input=rules)
                    assert res.returncode == 0, res.stderr
                try:
                    r = bench_case(slab, name, args, runs, tmp)
                finally:
                    if extra:
                        lab.run(lab.target_ns, "nft", "delete", "table", "inet", "scanbench")
                rows.append((name, goal, r))
                t = r["times"]
                ratio = statistics.median(t["scanwatch"]) / statistics.median(t["nmap"])
                print(f"  {name:24} nmap med {statistics.median(t['nmap']):6.2f}s  scanwatch "
                      f"med {statistics.median(t['scanwatch']):6.2f}s  ratio {ratio:4.2f}  "
                      f"{'states agree' if not r['mismatches'] else 'STATES DIFFER'}",
                      flush=True)
        finally:
            slab.close()
    print()
    print(f"{'case':24} {'nmap min':>8} {'nmap med':>8} {'sw min':>8} {'sw med':>8} "
          f"{'ratio':>6} {'goal':>6}  ports  states")
    failed = False
    for name, goal, r in rows:
        t = r["times"]
        nmin, nmed = min(t["nmap"]), statistics.median(t["nmap"])
        smin, smed = min(t["scanwatch"]), statistics.median(t["scanwatch"])
        ratio = smed / nmed
        met = goal is None or ratio <= goal
        agree = not r["mismatches"]
        failed |= not agree or not met
        goal_text = f"<={goal:.1f}" if goal else "-"
        print(f"{name:24} {nmin:8.2f} {nmed:8.2f} {smin:8.2f} {smed:8.2f} {ratio:6.2f} "
              f"{goal_text:>6}  {r['ports']:5}  {'agree' if agree else 'DIFFER'}"
              f"{'' if met else '  (goal missed)'}")
        for tool, i, diff, n in r["mismatches"]:
            print(f"    run {i} {tool}: {n} ports differ, e.g. {diff}")
        if "masscan" in r:
            took, same, n_ms, n_nmap = r["masscan"]
            print(f"    masscan ({MASSCAN_RATE} pps, --wait {MASSCAN_WAIT}, 1 run): {took:.2f} s;"
                  f" scanwatch median / masscan {smed / took:.2f}; open ports "
                  + ("= nmap's" if same else f"DIFFER: {n_ms} found, nmap {n_nmap}"))
    print("\nratio = scanwatch median / nmap median (wall clock, process start to exit)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
