"""Issue 13, part 1: every scan nmap 7.93 can send, with its evasion options, is seen, named
and blocked by a sentry on the embedded defaults (IPv4, and IPv6 where nmap supports it).

One sentry per case; each asserts the attackalert line names the scanner and its scan type,
the history line, and the block (nft set, hosts.deny, status) per BLOCK_TCP/BLOCK_UDP."""
import re
import sys
from pathlib import Path

import pytest

from sentryproc import SentryProcess, nmap

RAWSEND = str(Path(__file__).resolve().parents[1] / "rawsend.py")
LAB_MAC = "02:53:57:00:00:13"  # locally administered: belongs to nobody outside the lab

# The words of each scan type in its attackalert line (PortSentry's wording).
LABEL = {"Tiny Fragment": "tiny fragment", "Unknown Type": "Unknown Type: TCP Packet Flags"}

# (id, nmap options, scan type, IPv6 too)
CASES = [
    ("sS", ("-sS",), "SYN/Normal", True),
    ("sT", ("-sT",), "SYN/Normal", True),  # connect(): the kernel's own SYN
    ("sF", ("-sF",), "FIN", True),
    ("sN", ("-sN",), "NULL", True),
    ("sX", ("-sX",), "XMAS", True),
    ("sU", ("-sU",), "UDP", True),
    ("sM", ("-sM",), "Maimon", True),
    ("sA", ("-sA",), "ACK/Window", True),
    ("sW", ("-sW",), "ACK/Window", True),
    ("flags-SYNFIN", ("--scanflags", "SYNFIN"), "Unknown Type", True),
    ("flags-ACKPSH", ("--scanflags", "ACKPSH"), "Unknown Type", True),
    ("flags-SYNACK", ("--scanflags", "SYNACK"), "Unknown Type", True),
    ("flags-FINACK", ("--scanflags", "FINACK"), "Maimon", True),
    ("flags-URGACKPSHFIN", ("--scanflags", "URGACKPSHFIN"), "Unknown Type", True),
    ("f", ("-sS", "-f"), "Tiny Fragment", False),  # nmap 7.93: no -f with -6 (see raw cases)
    ("ff", ("-sS", "-ff"), "SYN/Normal", False),
    ("mtu8", ("-sS", "--mtu", "8"), "Tiny Fragment", False),
    ("mtu16", ("-sS", "--mtu", "16"), "SYN/Normal", False),
    ("mtu24", ("-sS", "--mtu", "24"), "SYN/Normal", False),
    ("sF-f", ("-sF", "-f"), "Tiny Fragment", False),
    ("g53", ("-sS", "-g", "53"), "SYN/Normal", True),
    ("g88", ("-sS", "-g", "88"), "SYN/Normal", True),
    ("sU-g53", ("-sU", "-g", "53"), "UDP", True),
    ("data-length", ("-sS", "--data-length", "40"), "SYN/Normal", True),
    ("sA-data-length", ("-sA", "--data-length", "40"), "ACK/Window", True),
    ("ip-options", ("-sS", "--ip-options", "R"), "SYN/Normal", False),  # IPv4 only
    ("ttl", ("-sS", "--ttl", "3"), "SYN/Normal", True),
    ("spoof-mac", ("-sS", "--spoof-mac", LAB_MAC), "SYN/Normal", True),
    ("randomize-hosts", ("-sS", "--randomize-hosts"), "SYN/Normal", True),
]
# Found by this matrix, not yet understood or fixed: nmap -6 --ttl 3 gets no report.
KNOWN_MISSED = {"ttl-6": "nmap -6 --ttl 3: no report (issue 13, open)"}
PARAMS = [pytest.param(opts, st, 4, id=f"{cid}-4") for cid, opts, st, _ in CASES] + \
         [pytest.param(opts, st, 6, id=f"{cid}-6", marks=[pytest.mark.xfail(
             strict=True, reason=KNOWN_MISSED[f"{cid}-6"])] if f"{cid}-6" in KNOWN_MISSED
             else []) for cid, opts, st, v6 in CASES if v6]


def check_reported_and_blocked(sw, addr, scan_type, family, alert_re=None):
    """Log line (scanner and scan type), history line, nft set, hosts.deny, status."""
    proto = "UDP" if scan_type == "UDP" else "TCP"
    sw.wait_history(addr, timeout=10)
    log = sw.log()
    label = re.escape(LABEL.get(scan_type, scan_type))
    alert = alert_re or rf"^.*attackalert: .*{label}.* from host: {re.escape(addr)}/" \
                        rf"{re.escape(addr)} to {proto} port: \d+"
    assert re.search(alert, log, re.M), log
    assert re.search(rf"^\d+ - \S+ \S+ Host: {re.escape(addr)}/{re.escape(addr)} Port: \d+ "
                     rf"{proto} Blocked$", sw.read("history"), re.M), sw.read("history")
    assert addr in sw.nft_set(family), (sw.nft_set(family), log)
    target = f"[{addr}]" if family == 6 else addr
    assert f"ALL: {target}\n" in sw.read("hosts_deny"), sw.read("hosts_deny")
    rows = [b for b in sw.status()["blocked"] if b["addr"] == addr]
    assert rows and rows[0]["scan_type"] == scan_type, rows


@pytest.mark.parametrize("opts, scan_type, family", PARAMS)
def test_nmap_option_is_reported_and_blocked(lab, opts, scan_type, family):
    lab.wait_reachable()
    addr = lab.scanner_ip6 if family == 6 else lab.scanner_ip4
    with SentryProcess(lab) as sw:
        # 1-40 holds the tripwires 1, 7, 9, 11, 15 (TCP) and 1, 7, 9 (UDP)
        nmap(lab, *opts, "-p", "1-40", v6=family == 6)
        ev = sw.wait_block_event(timeout=10)
        assert ev["addr"] == addr and ev["scan_type"] == scan_type, ev
        check_reported_and_blocked(sw, addr, scan_type, family)


def test_nmap_refuses_to_fragment_ipv6():
    """nmap 7.93 cannot send -6 -f (hence the hand-built IPv6 fragment cases below): if a
    later nmap can, this fails and the case joins the matrix."""
    import subprocess
    res = subprocess.run(["nmap", "-6", "-f", "-n", "-Pn", "-p", "1", "::1"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode != 0 and "fragment" in (res.stdout + res.stderr).lower(), res


@pytest.mark.parametrize("family, flags, frag, mode, scan_type", [
    (6, "S", 8, "--reverse", "Tiny Fragment"),     # what -6 -f would send, last first
    (6, "F", 16, "--reverse", "FIN"),
    (6, "S", 8, "--overlap", "SYN/Normal"),        # 16 bytes: the flags are in the first
    (4, "S", 8, "--reverse", "Tiny Fragment"),
    (4, "F", 16, "--reverse", "FIN"),
    (4, "S", 8, "--overlap", "SYN/Normal"),
    (4, "N", 8, "--overlap", "NULL"),
], ids=["6-tiny-reverse", "6-FIN-reverse", "6-overlap", "4-tiny-reverse", "4-FIN-reverse",
        "4-overlap", "4-NULL-overlap"])
def test_out_of_order_and_overlapping_fragments(lab, family, flags, frag, mode, scan_type):
    """Hand-built fragmented probes to tripwire ports, last fragment first or overlapping:
    classified from the first fragment, logged as evasion, blocked."""
    lab.wait_reachable()
    mac = lab.run(lab.target_ns, "cat", f"/sys/class/net/{lab.target_if}/address").stdout.strip()
    src, dst = ((lab.scanner_ip6, lab.target_ip6) if family == 6
                else (lab.scanner_ip4, lab.target_ip4))
    flags = "" if flags == "N" else flags
    with SentryProcess(lab) as sw:
        for port in ("1", "7", "9", "11", "15"):
            argv = [sys.executable, RAWSEND, lab.scanner_if, mac, src, dst, "--ports", port,
                    "--frag", str(frag), mode, f"--flags={flags}"]
            res = lab.run(lab.scanner_ns, *argv)
            assert res.returncode == 0, res.stderr
        ev = sw.wait_block_event(timeout=10)
        assert ev["addr"] == src and ev["scan_type"] == scan_type and ev["fragmented"], ev
        check_reported_and_blocked(sw, src, scan_type, family)
        assert re.search(rf"attackalert: Packet from host: {re.escape(src)}/{re.escape(src)} "
                         rf"to TCP port: \d+ (came fragmented|is a tiny fragment)", sw.log())


@pytest.mark.parametrize("scan, scan_type", [("-sY", "SCTP INIT"), ("-sZ", "SCTP COOKIE-ECHO")])
@pytest.mark.parametrize("family", [4, 6])
def test_sctp_scan_is_reported_and_blocked_per_block_tcp(lab, scan, scan_type, family):
    """SCTP probes count as TCP probes: the TCP tripwires trip, BLOCK_TCP blocks."""
    lab.wait_reachable()
    addr = lab.scanner_ip6 if family == 6 else lab.scanner_ip4
    with SentryProcess(lab) as sw:
        nmap(lab, scan, "-p", "1-40", v6=family == 6)
        ev = sw.wait_block_event(timeout=10)
        assert ev["addr"] == addr and ev["scan_type"] == scan_type, ev
        check_reported_and_blocked(sw, addr, scan_type, family, alert_re=(
            rf"attackalert: {scan_type} scan from host: {re.escape(addr)}/{re.escape(addr)} "
            rf"to SCTP port: \d+$"))
        assert sw.status()["packets"][scan_type] >= 1


@pytest.mark.parametrize("family", [4, 6])
def test_ip_protocol_scan_is_reported_and_blocked(lab, family):
    """nmap -sO sends one packet per IP protocol: 20 distinct protocols other than
    TCP/UDP/ICMP/SCTP within SWEEP_WINDOW are a sweep, named "IP Protocol"."""
    lab.wait_reachable()
    addr = lab.scanner_ip6 if family == 6 else lab.scanner_ip4
    with SentryProcess(lab) as sw:
        out = nmap(lab, "-sO", "-p", "0-255", v6=family == 6)
        ev = sw.wait_block_event(timeout=10)
        # the 20th distinct probe may be the SCTP INIT nmap sends for protocol 132 (IPv6)
        assert ev["addr"] == addr and ev["scan_type"] in ("IP Protocol", "SCTP INIT"), ev
        assert ev["reason"] == "sweep", ev
        check_reported_and_blocked(sw, addr, ev["scan_type"], family, alert_re=(
            rf"attackalert: {ev['scan_type']} scan from host: {re.escape(addr)}/"))
        assert re.search(rf"attackalert: IP Protocol scan from host: {re.escape(addr)}/"
                         rf"{re.escape(addr)} to IP protocol: \d+$", sw.log(), re.M), sw.log()
        assert re.search(rf"attackalert: Host {re.escape(addr)} probed 20 closed ports", sw.log())
        assert sw.status()["packets"]["IP Protocol"] >= 20, out
