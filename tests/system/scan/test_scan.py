"""`scanwatch scan` against nmap, in namespaces: same port states, same port selection,
nmap's output shapes, discovery, -O, -sV, one-line errors, a rate-limited UDP target.

Every scan goes from a Lab's scanner namespace to its target namespace (or to
loopback inside the scanner namespace). Filtered ports come from an nft table
(`inet scantest`) inside the target namespace only. Ranges are modest; the full
ranges and timings are bench/scan.py's.
"""
from __future__ import annotations

import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from lab import Lab

SCAN = [sys.executable, "-c", "from scanwatch.cli import main; main()", "scan"]

TCP_OPEN = [22, 80, 443, 3306, 8080, 40000]
BANNER_PORT = 2222
BANNER = "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3"
UDP_OPEN = [7, 53, 161, 5000]
TCP_DROP = [25, 110, *range(20001, 20011)]
TCP_PROHIBITED = [8443, *range(20011, 20016)]
TCP_RESET = [20016]
UDP_DROP = [500]
UDP_PROHIBITED = [520]

LISTENER = r'''
import socket, selectors, sys, time
sel = selectors.DefaultSelector()
banner_port, banner = int(sys.argv[1]), sys.argv[2].encode() + b"\r\n"
for spec in sys.argv[3:]:
    proto, port = spec.split(":"); port = int(port)
    for fam, addr in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        s = socket.socket(fam, socket.SOCK_STREAM if proto == "t" else socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if fam == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.bind((addr, port))
        if proto == "t":
            s.listen(512)
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, proto)
held = []
print("ready", flush=True)
while True:
    for key, _ in sel.select(1.0):
        s = key.fileobj
        try:
            if key.data == "t":
                c, _ = s.accept()
                if s.getsockname()[1] == banner_port:
                    c.sendall(banner)
                    held.append((time.monotonic(), c))
                else:
                    c.close()
            else:
                d, a = s.recvfrom(4096)
                s.sendto(b"pong", a)
        except OSError:
            pass
    now = time.monotonic()
    for t, c in [h for h in held if now - h[0] > 5]:
        c.close()
    held = [h for h in held if now - h[0] <= 5]
'''

NFT = """table inet scantest {
  chain input {
    type filter hook input priority 0; policy accept;
    tcp dport { %s } drop
    tcp dport { %s } reject with icmpx admin-prohibited
    tcp dport { %s } reject with tcp reset
    udp dport { %s } drop
    udp dport { %s } reject with icmpx admin-prohibited
  }
}
"""


def _set(ports):
    return ", ".join(map(str, ports))


class ScanLab:
    """A Lab with listeners and nft-filtered ports in its target namespace."""

    def __init__(self, lab: Lab, rate_limited: bool = False, tcp=TCP_OPEN, udp=UDP_OPEN):
        self.lab = lab
        if rate_limited:
            # back to the kernel's defaults inside this target: 1 ICMP error/s per peer
            for key, value in {"net.ipv4.icmp_ratelimit": "1000",
                               "net.ipv4.icmp_msgs_per_sec": "1000",
                               "net.ipv4.icmp_msgs_burst": "50",
                               "net.ipv6.icmp.ratelimit": "1000"}.items():
                lab._sysctl_set(lab.target_ns, key, value)
        specs = [f"t:{p}" for p in [*tcp, BANNER_PORT]] + [f"u:{p}" for p in udp]
        self.proc = lab.popen(lab.target_ns, sys.executable, "-c", LISTENER, str(BANNER_PORT),
                              BANNER, *specs, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "ready"
        rules = NFT % (_set(TCP_DROP), _set(TCP_PROHIBITED), _set(TCP_RESET), _set(UDP_DROP),
                       _set(UDP_PROHIBITED))
        res = lab.run(lab.target_ns, "nft", "-f", "-", input=rules)
        assert res.returncode == 0, res.stderr
        lab.wait_reachable()

    def close(self):
        self.lab.run(self.lab.target_ns, "nft", "delete", "table", "inet", "scantest")
        self.proc.kill()
        self.proc.wait()

    # -- running both scanners -----------------------------------------------
    def scanwatch(self, *args, timeout=120):
        return self.lab.run(self.lab.scanner_ns, *SCAN, *args, timeout=timeout)

    def nmap(self, *args, timeout=180):
        return self.lab.run(self.lab.scanner_ns, "nmap", "-n", *args, timeout=timeout)

    def grepable(self, tool, *args):
        """(ports scanned {proto: [ports]}, {(proto, port): state}, raw text) from -v -oG -."""
        res = getattr(self, tool)("-v", "-oG", "-", *args)
        assert res.returncode == 0, f"{tool} {args}: {res.stderr}"
        return parse_grepable(res.stdout) + (res.stdout,)


def parse_grepable(text):
    """Ports scanned and the state of every port from nmap's -oG (with -v for the
    `# Ports scanned` line). Unlisted ports have the one `Ignored State`."""
    scanned = {}
    m = re.search(r"^# Ports scanned: TCP\((\d+);([^)]*)\) UDP\((\d+);([^)]*)\)", text, re.M)
    if m:
        scanned = {"tcp": expand(m.group(2)), "udp": expand(m.group(4))}
    states = {}
    for line in text.splitlines():
        if "\tPorts: " not in line:
            continue
        body = line.split("\tPorts: ", 1)[1]
        fields = body.split("\t")
        for entry in filter(None, (e.strip() for e in fields[0].split(","))):
            port, state, proto = entry.split("/")[:3]
            states[(proto, int(port))] = state
        for f in fields[1:]:
            ign = re.match(r"Ignored State: (\S+) \((\d+)\)", f)
            if ign:
                for proto, ports in scanned.items():
                    for p in ports:
                        states.setdefault((proto, p), ign.group(1))
    return scanned, states


def expand(spec):
    out = []
    for part in filter(None, spec.split(",")):
        a, _, b = part.partition("-")
        out.extend(range(int(a), int(b or a) + 1))
    return out


@pytest.fixture(scope="module")
def slab():
    with Lab() as lab:
        s = ScanLab(lab)
        yield s
        s.close()


def diff(a, b):
    keys = sorted(set(a) | set(b))
    return {k: (a.get(k), b.get(k)) for k in keys if a.get(k) != b.get(k)}


RANGE = "1-1100,2222,3306,8080,8443,20001-20020,40000"


# --- every scan type agrees with nmap, port for port ---------------------------------

@pytest.mark.parametrize("scan", ["-sT", "-sS", "-sF", "-sX", "-sN", "-sA"])
def test_tcp_states_equal_nmap(slab, scan):
    target = slab.lab.target_ip4
    _, ours, out = slab.grepable("scanwatch", scan, "-p", RANGE, target)
    _, theirs, _ = slab.grepable("nmap", scan, "-p", RANGE, target)
    assert len(theirs) == 1125, theirs
    assert ours == theirs, diff(ours, theirs)
    if scan in ("-sS", "-sT"):
        for p in TCP_OPEN + [BANNER_PORT]:
            assert ours[("tcp", p)] == "open"
        for p in TCP_DROP + TCP_PROHIBITED:
            if ("tcp", p) in ours:
                assert ours[("tcp", p)] == "filtered", p


def test_udp_states_equal_nmap(slab):
    target = slab.lab.target_ip4
    args = ("-sU", "-p", "1-300,500,520,5000", target)
    _, ours, _ = slab.grepable("scanwatch", *args)
    _, theirs, _ = slab.grepable("nmap", *args)
    assert ours == theirs, diff(ours, theirs)
    assert {p for (pr, p), s in ours.items() if s == "open"} == set(UDP_OPEN)
    assert ours[("udp", 500)] == "open|filtered" and ours[("udp", 520)] == "filtered"


def test_tcp_and_udp_together_and_ipv6(slab):
    args = ("-sS", "-sU", "-p", "T:1-200,8443,U:1-100,161,500", "-6", slab.lab.target_ip6)
    _, ours, _ = slab.grepable("scanwatch", *args)
    _, theirs, _ = slab.grepable("nmap", *args)
    assert ours == theirs, diff(ours, theirs)
    assert ours[("tcp", 22)] == "open" and ours[("udp", 161)] == "open"


def test_loopback_connect_scan_never_lands_on_itself(slab):
    """Every ephemeral port on an idle loopback: a connect() to itself is not open."""
    res = slab.lab.run(slab.lab.scanner_ns, *SCAN, "-sT", "-p", "32768-60999", "-oG", "-",
                       "127.0.0.1")
    assert res.returncode == 0, res.stderr
    assert "Ignored State: closed (28232)" in res.stdout, res.stdout
    assert "/open/" not in res.stdout


# --- port selection ----------------------------------------------------------------

@pytest.mark.parametrize("spec", [
    [], ["-F"], ["--top-ports", "37"], ["-p", "1-100"], ["-p", "-10,65530-"],
    ["-p", "http*,ssh"], ["-p", "[1-100]"], ["-p", "domain,U:161,T:25"],
    ["-sU", "-F"], ["-sU", "-sS", "-p", "T:22-25,U:53,500"], ["-sU", "-sS", "--top-ports", "20"],
])
def test_port_selection_equals_nmap(slab, spec):
    args = ("-T5", "--max-retries", "0", *spec, slab.lab.target_ip4)
    ours, _, out = slab.grepable("scanwatch", *args)
    theirs, _, _ = slab.grepable("nmap", *args)
    assert ours == theirs and any(theirs.values()), (ours, theirs)


# --- discovery -------------------------------------------------------------------------

def test_ping_scan_finds_live_hosts_only(slab):
    lab = slab.lab
    net = lab.target_ip4.rsplit(".", 1)[0]
    for opt in ("-sn", "-sP"):
        res = slab.scanwatch(opt, "-oG", "-", f"{net}.0/29")
        up = set(re.findall(r"^Host: (\S+) \(\)\tStatus: Up", res.stdout, re.M))
        assert up == {lab.target_ip4, lab.scanner_ip4}, res.stdout
    nmap_up = set(re.findall(r"^Host: (\S+) \(\)\tStatus: Up",
                             slab.nmap("-sn", "-oG", "-", f"{net}.0/29").stdout, re.M))
    assert up == nmap_up
    res = slab.scanwatch("-sn", "-PE", "--send-ip", f"{net}.1", f"{net}.3")
    assert f"Nmap scan report for {net}.1\nHost is up (" in res.stdout, res.stdout
    assert f"{net}.3" not in res.stdout
    assert "Nmap done: 2 IP addresses (1 host up) scanned in" in res.stdout
    res = slab.scanwatch("-p", "22", f"{net}.3")
    assert "Note: Host seems down." in res.stdout and "(0 hosts up)" in res.stdout
    res = slab.scanwatch("-Pn", "-p", "22", lab.target_ip4)
    assert "22/tcp open" in res.stdout


# --- output formats --------------------------------------------------------------------

def _shape(text):
    """Normal output with the variable parts (banner, timings, latency) masked."""
    text = re.sub(r"^Starting .*\n", "", text)
    text = re.sub(r"\(\d+\.\d+s latency\)", "(Xs latency)", text)
    text = re.sub(r"scanned in \d+\.\d+ seconds", "scanned in X seconds", text)
    return [ln for ln in text.splitlines()
            if not ln.startswith(("Service detection performed", "OS detection performed"))]


@pytest.mark.parametrize("args", [
    ["-p", "1-1000,3306,8080,8443,40000"],
    ["-sT", "-p", "1-100,20001-20100"],
    ["-sU", "-p", "1-100,161,500,520"],
    ["-p", "20-23"],
    ["--reason", "-p", "20-30"],
    ["-p", "20001-20030"],
])
def test_normal_output_has_nmaps_shape(slab, args):
    ours = slab.scanwatch(*args, slab.lab.target_ip4, slab.lab.scanner_ip4)
    theirs = slab.nmap(*args, slab.lab.target_ip4, slab.lab.scanner_ip4)
    assert ours.returncode == 0, ours.stderr
    assert ours.stdout.startswith("Starting scanwatch ")
    assert re.search(r"^Nmap scan report for \S+\nHost is up(, received \S+)? "
                     r"\(\d\.\d+s latency\)\.$", ours.stdout, re.M), ours.stdout
    assert _shape(ours.stdout) == _shape(theirs.stdout), "\n".join(
        f"{a!r:60} {b!r}" for a, b in zip(_shape(ours.stdout), _shape(theirs.stdout)) if a != b)


def test_xml_output_parses_with_nmaps_element_names(slab, tmp_path):
    lab = slab.lab
    ours, theirs = tmp_path / "ours.xml", tmp_path / "theirs.xml"
    args = ["-sS", "-p", "1-200,8443", lab.target_ip4]
    assert slab.scanwatch("-oX", ours, *args).returncode == 0
    slab.nmap("-oX", theirs, *args)
    a, b = ET.parse(ours).getroot(), ET.parse(theirs).getroot()
    assert a.tag == "nmaprun" and a.get("scanner") == "scanwatch"
    names = lambda root: {el.tag for el in root.iter()}   # noqa: E731
    assert names(b) - names(a) <= {"hosthint"}, names(b) - names(a)
    port = lambda root, n: root.find(f"./host/ports/port[@portid='{n}']")  # noqa: E731
    for n in (22, 25, 80, 8443):
        pa, pb = port(a, n), port(b, n)
        assert pa.find("state").attrib == pb.find("state").attrib
        assert pa.find("service").get("name") == pb.find("service").get("name")
    xa = a.find("./host/ports/extraports")
    assert xa.get("state") == "closed" and xa.find("extrareasons").get("reason") == "reset"
    assert a.find("./runstats/hosts").attrib == {"up": "1", "down": "0", "total": "1"}
    assert a.find("./scaninfo").attrib == b.find("./scaninfo").attrib


def test_json_and_output_files(slab, tmp_path):
    import json
    lab = slab.lab
    base = tmp_path / "all"
    res = slab.scanwatch("--json", "-oA", base, "-p", "20-25", lab.target_ip4)
    doc = json.loads(res.stdout)
    ports = {p["port"]: p["state"] for p in doc["hosts"][0]["ports"]}
    assert ports == {20: "closed", 21: "closed", 22: "open", 23: "closed", 24: "closed",
                     25: "filtered"}
    assert doc["stats"] == {"total": 1, "up": 1, "down": 0}
    normal = Path(f"{base}.nmap").read_text()
    assert normal.startswith("# scanwatch ") and "\n22/tcp open     ssh\n" in normal
    assert normal.rstrip().splitlines()[-1].startswith("# Nmap done at ")
    assert "\tPorts: 20/closed/tcp//ftp-data///, " in Path(f"{base}.gnmap").read_text()
    ET.parse(f"{base}.xml")


# --- service and OS detection -------------------------------------------------------

def test_version_detection(slab):
    lab = slab.lab
    for flag in ("-sV", "-sR"):
        res = slab.scanwatch(flag, "-p", f"22,53,{BANNER_PORT}", lab.target_ip4)
        assert re.search(r"^PORT +STATE +SERVICE +VERSION$", res.stdout, re.M), res.stdout
        assert re.search(rf"^{BANNER_PORT}/tcp +open +ssh +OpenSSH 9\.2p1 Debian 2\+deb12u3",
                         res.stdout, re.M), res.stdout
        assert re.search(r"^22/tcp +open +tcpwrapped", res.stdout, re.M), res.stdout
    assert "-sR is now an alias for -sV" in res.stderr
    theirs = slab.nmap("-sV", "-p", f"22,53,{BANNER_PORT}", lab.target_ip4).stdout
    svc = lambda text: re.findall(r"^(\d+/tcp) +(\S+) +(\S+)", text, re.M)  # noqa: E731
    assert svc(res.stdout) == svc(theirs)


def test_os_detection_says_linux(slab):
    lab = slab.lab
    res = slab.scanwatch("-O", "-v", "-p", "1,22,80", lab.target_ip4, timeout=120)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert re.search(r"^(Running|Running \(JUST GUESSING\)): .*Linux", out, re.M), out
    assert re.search(r"^(OS details|Aggressive OS guesses): [^,]*Linux", out, re.M), out
    assert "Network Distance: 1 hop" in out
    # this kernel randomises TCP timestamps per connection: no uptime guess
    assert re.search(r"^Uptime guess: none \(", out, re.M), out


# --- refusals --------------------------------------------------------------------------

@pytest.mark.parametrize("args", [
    ["-p", "70000", "TARGET"], ["-p", "5-1", "TARGET"], ["-p", "foo", "TARGET"],
    ["-p", "22,,23", "TARGET"], ["-p", "HTTP", "TARGET"], ["bad..host"], ["300.1.1.1"],
    ["-T9", "TARGET"], ["--max-retries", "-1", "TARGET"], ["--nope", "TARGET"],
    ["-sS", "-sT", "TARGET"], ["-sn", "-p", "22", "TARGET"], ["-F", "-p", "22", "TARGET"],
    ["fd53::1"], ["-p", "22"], ["TARGET/40"],
])
def test_bad_input_is_one_line_and_exit_1(slab, args):
    args = [a.replace("TARGET", slab.lab.target_ip4) for a in args]
    res = slab.scanwatch(*args)
    assert res.returncode == 1, res
    assert res.stdout == ""
    assert len(res.stderr.splitlines()) == 1 and res.stderr.startswith("error: "), res.stderr


@pytest.mark.parametrize("scan", ["-sS", "-sU", "-sF", "-O"])
def test_raw_scans_need_root(slab, scan):
    lab = slab.lab
    res = lab.run(lab.scanner_ns, "setpriv", "--reuid", "65534", "--regid", "65534",
                  "--clear-groups", *SCAN, scan, "-p", "22", lab.target_ip4)
    assert res.returncode == 1 and res.stdout == "", res
    assert len(res.stderr.splitlines()) == 1 and "requires root privileges" in res.stderr
    # unprivileged, the default is a connect scan, which works
    res = lab.run(lab.scanner_ns, "setpriv", "--reuid", "65534", "--regid", "65534",
                  "--clear-groups", *SCAN, "-p", "22,23", lab.target_ip4)
    assert res.returncode == 0 and re.search(r"^22/tcp +open", res.stdout, re.M), res


def _probes_to(slab, port, tool, *args):
    """How many TCP packets reach `port` on the target during one scan of it (an nft
    counter in the target namespace, ahead of the scantest rules)."""
    lab = slab.lab
    lab.run(lab.target_ns, "nft", "delete", "table", "inet", "swcount")
    rules = ("table inet swcount {\n chain pre {\n"
             "  type filter hook prerouting priority -300; policy accept;\n"
             f"  tcp dport {port} counter\n }}\n}}\n")
    assert lab.run(lab.target_ns, "nft", "-f", "-", input=rules).returncode == 0
    try:
        _, states, _ = slab.grepable(tool, "-sS", *args, "-p", str(port), lab.target_ip4)
        listed = lab.run(lab.target_ns, "nft", "list", "table", "inet", "swcount").stdout
    finally:
        lab.run(lab.target_ns, "nft", "delete", "table", "inet", "swcount")
    return states[("tcp", port)], int(listed.split("counter packets ")[1].split()[0])


def test_timing_templates_and_retries(slab):
    """Each template and retry option gives nmap's states, and the options are really
    applied: the number of probes a dropped port receives follows --max-retries (and
    -T5's two retries), bounded as nmap's are."""
    target = slab.lab.target_ip4
    for args in (["-T3"], ["-T4"], ["-T5"], ["-T", "aggressive", "--max-retries", "1"],
                 ["--min-rtt-timeout", "50ms", "--max-rtt-timeout", "200ms"]):
        _, ours, _ = slab.grepable("scanwatch", *args, "-p", "1-200,8443", target)
        _, theirs, _ = slab.grepable("nmap", *args, "-p", "1-200,8443", target)
        assert ours == theirs, (args, diff(ours, theirs))
    dropped = TCP_DROP[0]
    for tool in ("nmap", "scanwatch"):
        counts = {}
        for retries in ("0", "3"):
            state, counts[retries] = _probes_to(slab, dropped, tool, "--max-retries", retries)
            assert state == "filtered"
        state, counts["T5"] = _probes_to(slab, dropped, tool, "-T5")
        print(f"FIGURE {tool} probes to a dropped port: {counts}")
        assert counts["0"] == 1, (tool, counts)
        assert 2 <= counts["3"] <= 4, (tool, counts)
        assert 2 <= counts["T5"] <= 3, (tool, counts)


# --- a target that keeps Linux's default ICMP rate limits ---------------------------------

def test_udp_on_rate_limited_target_is_accurate():
    """1 ICMP error a second after a burst of 6: closed ports must not turn open|filtered."""
    with Lab() as lab:
        s = ScanLab(lab, rate_limited=True, tcp=[22], udp=[7, 53])
        assert lab.sysctl(lab.target_ns, "net.ipv4.icmp_ratelimit") == "1000"
        time.sleep(1.5)
        ports = "1-16,53,500,520"
        started = time.monotonic()
        _, ours, _ = s.grepable("scanwatch", "-sU", "-p", ports, lab.target_ip4)
        took = time.monotonic() - started
        expected = {("udp", p): "closed" for p in expand(ports)}
        expected.update({("udp", 7): "open", ("udp", 53): "open",
                         ("udp", 500): "open|filtered", ("udp", 520): "filtered"})
        assert ours == expected, (diff(ours, expected), took)
        s.close()
