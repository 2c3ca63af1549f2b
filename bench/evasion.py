#!/usr/bin/env python3
"""nmap's scan types and evasion options against scanwatch, Debian's portsentry 1.2 and
psad, in one run, each in throw-away lab namespaces (issue 13).

Run as root from the repository:

    .venv/bin/python bench/evasion.py [--only sS,f,D] [--tools scanwatch,portsentry,psad]
                                      [--family 4,6] [--slow] [--json FILE]

For every option and tool: a fresh tests/system/lab.py Lab (listeners on 22, 80, 8080 in
the target), the tool started on its defaults with blocking on, then from the scanner
`nmap -n -Pn -T4 --max-retries 1 --min-rate 5000 --max-rtt-timeout 200ms OPTION
-p 1-1024 -oX -`. IPv6 rows (`-6 ...`, with --family 6) are the options nmap 7.93 takes
with -6: it refuses -f, -ff and --mtu there ("fragmentation [is] not supported with
IPv6"); --ip-options is accepted and ignored (plain probes go out); --ttl and --badsum get
--send-ip, since nmap would put them on its own neighbour solicitation, which the target
drops, and then send nothing at all. The IPv6 target listens on the same ports. Peers on
IPv6: Debian's portsentry 1.2 has none (its modes are -tcp -udp -stcp -atcp -sudp -audp,
AF_INET only): '–'. psad reads ip6tables log lines (ENABLE_IPV6_DETECTION) and reports
IPv6 scans, but its auto-block (ipt_block) takes IPv4 addresses only. Per cell:

  reported  the tool logged the scanner (scanwatch: a report naming it; portsentry: an
            attackalert line; psad: a scan line or a danger level for it)
  revealed  ports nmap reports open, closed or unfiltered (not filtered, not
            open|filtered): what the scanner learned before the block held
  blocked   the scanner's address in the tool's nftables set / iptables chain
  innocents (-D only) decoys blocked in the firewall or hosts.deny

--slow adds -T2 and --scan-delay 1s over 3000-3060 (no tripwire there; 30 s and 60 s a
cell). The table is printed as Markdown; --json keeps the raw cells.
"""
import argparse
import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import sentry as S  # noqa: E402  (bench/sentry.py: Lab trials, portsentry in a mount ns)

NDECOYS = 10
# --min-rate: once a tool blocks, every probe left times out; without a floor nmap backs off
# and one cell takes minutes. The same for every tool.
NMAP_EXTRA = ["-T4", "--max-retries", "1", "--min-rate", "5000", "--max-rtt-timeout", "200ms"]
NMAP_SLOW = ["--max-retries", "1"]  # the slow rows keep their own pace
PORTS = "1-1024"
# (id, nmap options, port range); -D's decoys are filled in per lab
OPTIONS = [
    ("sS", ["-sS"], PORTS), ("sT", ["-sT"], PORTS), ("sF", ["-sF"], PORTS),
    ("sN", ["-sN"], PORTS), ("sX", ["-sX"], PORTS), ("sU", ["-sU"], PORTS),
    ("sM", ["-sM"], PORTS), ("sA", ["-sA"], PORTS), ("sW", ["-sW"], PORTS),
    ("scanflags SYNFIN", ["--scanflags", "SYNFIN"], PORTS),
    ("scanflags ACKPSH", ["--scanflags", "ACKPSH"], PORTS),
    ("sY", ["-sY"], PORTS), ("sO", ["-sO"], "0-255"),
    ("f", ["-sS", "-f"], PORTS), ("ff", ["-sS", "-ff"], PORTS),
    ("mtu 16", ["-sS", "--mtu", "16"], PORTS),
    ("g 53", ["-sS", "-g", "53"], PORTS), ("data-length 40", ["-sS", "--data-length", "40"], PORTS),
    ("ip-options R", ["-sS", "--ip-options", "R"], PORTS), ("ttl 3", ["-sS", "--ttl", "3"], PORTS),
    ("spoof-mac", ["-sS", "--spoof-mac", "02:53:57:00:00:13"], PORTS),
    ("badsum", ["-sS", "--badsum"], PORTS),
    ("D", ["-sS", "-D", None], PORTS),
]
SLOW = [("T2", ["-sS", "-T2"], "3000-3060"), ("scan-delay 1s", ["-sS", "--scan-delay", "1s"],
                                               "3000-3060")]
# nmap -6 refuses these ("fragmentation [is] not supported with IPv6")
NO_V6 = {"f", "ff", "mtu 16"}
# nmap -6 --ttl / --badsum mark its neighbour solicitation too; the target drops it and
# nmap sends no probe at all ("0 hosts up"): --send-ip lets the kernel resolve the target
SEND_IP_V6 = {"ttl 3", "badsum"}
TOOLS = ("scanwatch", "portsentry", "psad")
NOT_V6 = {"portsentry": "no IPv6 in 1.2"}


def v6_rows(rows):
    return [("-6 " + oid + (" --send-ip" if oid in SEND_IP_V6 else ""),
             o + (["--send-ip"] if oid in SEND_IP_V6 else []), ports)
            for oid, o, ports in rows if oid not in NO_V6]


def is_v6(oid):
    return oid.startswith("-6 ")


def decoys(lab, v6=False):
    if v6:  # each in a /64 of its own next to the lab's (unrouted; IPv6 counts per /64)
        base = lab.target_ip6.rsplit("::", 1)[0]
        return [f"{base}:{i + 1:x}::{100 + i:x}" for i in range(NDECOYS)]
    base = lab.target_ip4.rsplit(".", 1)[0]
    return [f"{base}.{100 + i}" for i in range(NDECOYS)]


# IPv6 listeners beside bench/sentry.py's IPv4 ones (same ports)
LISTEN6 = ("import socket,sys,time\nss=[]\nfor p in sys.argv[1].split(','):\n"
           " s=socket.socket(socket.AF_INET6, socket.SOCK_STREAM)\n"
           " s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)\n"
           " s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
           " s.bind(('::', int(p))); s.listen(1024); ss.append(s)\n"
           "print('ready', flush=True)\ntime.sleep(3600)\n")


def block_key(addr):
    """What scanwatch blocks a source as: the address, or an IPv6 one's /64 (V6_PREFIX)."""
    ip = ipaddress.ip_address(addr)
    return str(ipaddress.ip_network(f"{ip}/64", strict=False)) if ip.version == 6 else str(ip)


def nmap_states(xml):
    """{state: count} over every port nmap listed or summarised."""
    host = ET.fromstring(xml).find("host")
    out = {}
    ports = host.find("ports") if host is not None else None
    for p in ports.findall("port") if ports is not None else ():
        st = p.find("state").get("state")
        out[st] = out.get(st, 0) + 1
    for extra in ports.findall("extraports") if ports is not None else ():
        out[extra.get("state")] = out.get(extra.get("state"), 0) + int(extra.get("count"))
    return out


def revealed(states):
    return sum(n for st, n in states.items() if st in ("open", "closed", "unfiltered"))


# --- the tools -------------------------------------------------------------------------------

class Scanwatch:
    """`scanwatch run -stcp -sudp` on the embedded defaults (no config file)."""

    def __init__(self, t):
        self.t, d = t, t.dir
        self.d, self.state = d, d / "state"
        (d / "ignore").write_text("")

    def start(self):
        d = self.d
        self.logf = open(d / "scanwatch.log", "w")
        self.proc = self.t.lab.popen(
            "target", S.SCANWATCH, "run", "-stcp", "-sudp", "--state-dir", self.state,
            "--run-dir", d / "run", "--hosts-deny", d / "hosts.deny", "--history-file",
            d / "history", "--blocked-file", d / "blocked", "--ignore-file", d / "ignore",
            stdout=self.logf, stderr=subprocess.STDOUT)
        S.wait_for(lambda: (d / "run" / "scanwatch.pid").exists() or self.proc.poll() is not None,
                   60, "scanwatch to start")
        if self.proc.poll() is not None:
            raise S.BenchError("scanwatch exited: " + (d / "scanwatch.log").read_text()[-800:])

    def settle(self):
        time.sleep(2.5)  # the challenge wait (1.5 s) before held reports are judged

    def result(self, scanner, fakes):
        log = (self.d / "scanwatch.log").read_text()
        deny = (self.d / "hosts.deny").read_text() if (self.d / "hosts.deny").exists() else ""
        # An IPv6 source is blocked as its /64 in set prefix6 (issue 14's V6_PREFIX)
        nft = set()
        for name in ("blocked4", "blocked6", "prefix6"):
            res = self.t.lab.run("target", "nft", "-j", "list", "set", "inet", "scanwatch", name)
            for item in json.loads(res.stdout)["nftables"] if res.returncode == 0 else ():
                for el in item.get("set", {}).get("elem", []):
                    val = el.get("elem", el).get("val", el) if isinstance(el, dict) else el
                    pfx = val.get("prefix") if isinstance(val, dict) else None
                    nft.add(f"{pfx['addr']}/{pfx['len']}" if pfx else str(val))
        st = json.loads(self.t.lab.run("target", S.SCANWATCH, "status", "--json", "--run-dir",
                                       self.d / "run").stdout)
        return {"reported": f"from host: {scanner}/" in log or f"Host {scanner} " in log,
                "blocked": block_key(scanner) in nft,
                "innocents": sum(1 for a in fakes if block_key(a) in nft
                                 or f"ALL: {a}\n" in deny or f"ALL: [{a}]" in deny
                                 or f"ALL: [{block_key(a).split('/')[0]}]/" in deny),
                "kernel_only": sum(1 for a in fakes if re.search(
                    rf"Host {re.escape(a)} \(possibly spoofed", log)),
                "badsum": st["counters"].get("badsum", 0)}

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class Portsentry(S.Portsentry):
    """portsentry 1.2 -stcp (-sudp for -sU) with Debian's config values, blocking in nft."""

    def __init__(self, t, udp):
        super().__init__(t, "sudp" if udp else "stcp", block=True)
        if udp:  # bench/sentry.py's config is TCP-only: Debian's UDP list, UDP blocking on
            text = self.conf.read_text()
            text = text.replace('UDP_PORTS="1"', 'UDP_PORTS="1,7,9,69,161,162,513,635,640,'
                                '641,700,37444,34555,31335,32770,32771,32772,32773,32774,'
                                '31337,54321"').replace('BLOCK_UDP="0"', 'BLOCK_UDP="1"')
            self.conf.write_text(text)
        t.nft(f"table inet {S.PS_TABLE} {{\n set blocked {{ type ipv4_addr; }}\n"
              f" chain input {{\n  type filter hook input priority filter - 10; policy accept;\n"
              f"  ip saddr @blocked counter drop\n }}\n}}\n")

    def settle(self):
        time.sleep(1.0)

    def result(self, scanner, fakes):
        res = self.t.lab.run("target", "nft", "-j", "list", "set", "inet", S.PS_TABLE, "blocked")
        nft = set()
        if res.returncode == 0:
            for item in json.loads(res.stdout)["nftables"]:
                for el in item.get("set", {}).get("elem", []):
                    nft.add(el if isinstance(el, str) else el["elem"]["val"])
        text = "\n".join(m for _ts, m in self.lines())
        deny = (self.t.dir / "hosts.deny").read_text()
        return {"reported": f"host: {scanner}/" in text, "blocked": scanner in nft,
                "innocents": sum(1 for a in fakes if a in nft or f"ALL: {a} " in deny)}


def make_tool(name, t, udp):
    if name == "scanwatch":
        return Scanwatch(t)
    if name == "portsentry":
        return Portsentry(t, udp)
    import psadrun  # bench/psadrun.py
    return psadrun.Psad(t)


# --- one cell --------------------------------------------------------------------------------

def cell(workroot, tool, oid, opts, ports):
    v6 = is_v6(oid)
    with S.Trial(workroot, f"ev-{tool}-{re.sub(r'[^a-z0-9]', '', oid.lower())}") as t:
        lab = t.lab
        fakes = decoys(lab, v6) if None in opts else []
        opts = [",".join(fakes[:5] + ["ME"] + fakes[5:]) if o is None else o for o in opts]
        if v6:
            p = lab.popen("target", S.PYTHON, "-c", LISTEN6, ",".join(map(str, S.LISTEN_PORTS)),
                          stdout=subprocess.PIPE, text=True)
            t.helpers["listen6"] = p
            if p.stdout.readline().strip() != "ready":
                raise S.BenchError("IPv6 listeners did not start")
            if fakes:  # scanwatch's challenges to the decoys' /64s die in the scanner ns
                res = lab.run("target", "ip", "-6", "route", "add",
                              lab.target_ip6.rsplit("::", 1)[0] + "::/48", "via", lab.scanner_ip6)
                if res.returncode != 0:
                    raise S.BenchError(f"ip -6 route: {res.stderr.strip()}")
        det = make_tool(tool, t, udp="-sU" in opts)
        det.start()
        time.sleep(0.3)
        t0 = time.monotonic()
        slow = oid.removeprefix("-6 ") in dict((o[0], 1) for o in SLOW)
        extra = NMAP_SLOW if slow else NMAP_EXTRA
        res = lab.run("scanner", "nmap", "-n", "-Pn", *(["-6"] if v6 else []), *extra, *opts,
                      "-p", ports, "-oX", "-", lab.target_ip6 if v6 else lab.target_ip4,
                      timeout=900)
        took = time.monotonic() - t0
        if res.returncode != 0:
            raise S.BenchError(f"nmap {' '.join(opts)}: {res.stderr.strip()[-300:]}")
        det.settle()
        out = det.result(lab.scanner_ip6 if v6 else lab.scanner_ip4, fakes)
        det.stop()
        states = nmap_states(res.stdout)
        out.update(tool=tool, option=oid, revealed=revealed(states), states=states,
                   nmap_s=round(took, 1), decoys=len(fakes))
        return out


def fmt(c):
    if c is None:
        return "–"
    if "na" in c:
        return f"– ({c['na']})"
    if "error" in c:
        return "error"
    if c.get("badsum") and not c["reported"] and not c["blocked"]:
        return f"counted only (by design), {c['revealed']} ({c['badsum']} bad checksums)"
    s = ("yes" if c["reported"] else "**no**") + f", {c['revealed']}"
    if c["decoys"]:
        s += f", {c['innocents']}/{c['decoys']} innocents"
        if c.get("kernel_only"):
            s += f" ({c['kernel_only']} XDP-only)"
    if not c["blocked"]:
        s += ", not blocked"
    if c.get("badsum"):
        s += f" ({c['badsum']} bad checksums)"
    return s


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="comma-separated option ids")
    ap.add_argument("--tools", default=",".join(TOOLS))
    ap.add_argument("--slow", action="store_true", help="also -T2 and --scan-delay 1s")
    ap.add_argument("--family", default="4", help="4, 6 or 4,6 (IPv6 rows: `-6 ...`)")
    ap.add_argument("--json")
    ap.add_argument("--from-json", help="print the table of an earlier --json run")
    args = ap.parse_args(argv)
    if args.from_json:
        cells = {(c["option"], c["tool"]): c for c in json.loads(Path(args.from_json).read_text())}
        tools = [t for t in TOOLS if any(k[1] == t for k in cells)]
        every = OPTIONS + SLOW + v6_rows(OPTIONS + SLOW)
        opts = [o for o in every if any(k[0] == o[0] for k in cells)]
        return table(opts, tools, cells, "(from " + args.from_json + ")")
    if os.geteuid() != 0:
        sys.exit("bench/evasion.py needs root (namespaces, XDP, nftables)")
    tools = args.tools.split(",")
    rows = OPTIONS + (SLOW if args.slow else [])
    if args.only:
        want = set(args.only.split(","))
        rows = [o for o in rows if o[0] in want]
    fams = args.family.split(",")
    opts = (rows if "4" in fams else []) + (v6_rows(rows) if "6" in fams else [])
    # SIGTERM unwinds like Ctrl-C, so every Trial deletes its namespaces
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    workroot = Path(S.tempfile.mkdtemp(prefix="swbench-evasion-"))
    cells = {}
    try:
        for oid, o, ports in opts:
            for tool in tools:
                S.log(f"{oid} / {tool}")
                if is_v6(oid) and tool in NOT_V6:
                    cells[(oid, tool)] = {"na": NOT_V6[tool], "tool": tool, "option": oid}
                    continue
                try:
                    cells[(oid, tool)] = cell(workroot, tool, oid, o, ports)
                except (S.BenchError, subprocess.TimeoutExpired, OSError) as err:
                    S.log(f"  {oid} / {tool}: {err}")
                    cells[(oid, tool)] = {"error": str(err)[-300:], "tool": tool, "option": oid}
                S.log(f"  {cells[(oid, tool)]}")
    finally:
        shutil.rmtree(workroot, ignore_errors=True)
    src = S.source_state()
    table(opts, tools, cells, f"scanwatch {src['head']}{' (dirty)' if src['dirty'] else ''}")
    if args.json:
        Path(args.json).write_text(json.dumps([c for c in cells.values()], indent=1))


def table(opts, tools, cells, what):
    print(f"\n{what}; nmap {' '.join(NMAP_EXTRA)} -p {PORTS} (IPv4, and IPv6 in the -6 rows; "
          f"slow rows: {' '.join(NMAP_SLOW)} -p {SLOW[0][2]}); cell: reported, ports revealed "
          "before the block[, innocents blocked]\n")
    print("| nmap option | " + " | ".join(tools) + " |")
    print("|---|" + "---|" * len(tools))
    for oid, o, _p in opts:
        print(f"| {oid} | " + " | ".join(fmt(cells.get((oid, t))) for t in tools) + " |")


if __name__ == "__main__":
    main()
