"""The sentry against real nmap from a scanner namespace: detect, block, record."""
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scanwatch.sentry.defaults import BY_NAME
from sentryproc import SentryProcess, block_key, connect, deny_target, listen, nmap

ALERT = {  # PortSentry 1.2's wording; its NULL type carries a leading space
    "-sS": r"attackalert: TCP SYN/Normal scan",
    "-sF": r"attackalert: TCP FIN scan",
    "-sN": r"attackalert:  TCP NULL scan",
    "-sX": r"attackalert: TCP XMAS scan",
    "-sU": r"attackalert: UDP scan",
    "-sA": r"attackalert: TCP ACK/Window scan",
    "-sW": r"attackalert: TCP ACK/Window scan",
    "-sM": r"attackalert: TCP Maimon scan",
}
RAWSEND = str(Path(__file__).resolve().parents[1] / "rawsend.py")
TYPE = {"-sS": "SYN/Normal", "-sF": "FIN", "-sN": "NULL", "-sX": "XMAS", "-sU": "UDP",
        "-sA": "ACK/Window", "-sW": "ACK/Window", "-sM": "Maimon"}


def assert_blocked(sw, lab, addr, scan_type, proto, family=4):
    sw.wait_history(addr)
    log = sw.log()
    key = block_key(addr)  # an IPv6 source is blocked as its /64 (issue 14)
    assert key in sw.nft_blocked(), log
    deny = sw.read("hosts_deny")
    assert deny.startswith("# admin's own line\nsshd: 192.0.2.7\n"), deny
    target = deny_target(lab, addr)
    assert deny.count(f"ALL: {target}\n") == 1, deny
    assert re.search(rf"^\d+ - \S+ \S+ Host: {re.escape(addr)}/{re.escape(addr)} Port: \d+ "
                     rf"{proto} Blocked$", sw.read("history"), re.M), sw.read("history")
    st = sw.status()
    rows = [b for b in st["blocked"] if b["addr"] == key]
    assert rows and rows[0]["scan_type"] == scan_type, st["blocked"]
    assert rows[0]["left"] > 3000 and rows[0]["ports"], rows
    assert f"has been blocked via wrappers with string: \"ALL: {target}\"" in log


@pytest.mark.parametrize("scan", ["-sS", "-sF", "-sN", "-sX", "-sU", "-sA", "-sW", "-sM"])
def test_tripwire_scan_is_detected_and_blocked(lab, web, scan):
    lab.wait_reachable()
    assert connect(lab, lab.target_ip4, web), "the open port must answer before the scan"
    with SentryProcess(lab) as sw:
        nmap(lab, scan, "-p", "1-40")  # holds the tripwires 1, 7, 9, 11, 15
        sw.wait_block_event()
        log = sw.log()
        assert re.search(ALERT[scan] + rf" from host: {lab.scanner_ip4}/{lab.scanner_ip4} to "
                         rf"{'UDP' if scan == '-sU' else 'TCP'} port: \d+$", log, re.M), log
        assert_blocked(sw, lab, lab.scanner_ip4, TYPE[scan], "UDP" if scan == "-sU" else "TCP")
        assert not connect(lab, lab.target_ip4, web), "a blocked scanner still connects"
        ev = [e for e in sw.events() if e["action"] == "block"]
        assert len(ev) == 1 and ev[0]["scan_type"] == TYPE[scan] and ev[0]["kernel_blocked"]
        assert sw.stop() == 0
    assert "XDP programs detached" in sw.log()
    # After SIGTERM the XDP program is gone from the interface.
    assert "xdp" not in lab.run(lab.target_ns, "ip", "link", "show", "dev", lab.target_if).stdout


@pytest.mark.parametrize("scan", ["-sA", "-sM"])
def test_ack_family_over_ipv6_is_caught_and_an_established_peer_is_not(lab, scan):
    """The ACK-family check over IPv6; a long-lived connection's ACKs meanwhile are no probe."""
    lab.wait_reachable()
    sink = lab.popen(lab.target_ns, sys.executable, "-c",
                     "import socket\ns=socket.create_server(('0.0.0.0', 5001))\n"
                     "print('ready', flush=True)\nc,_=s.accept()\nwhile c.recv(4096): pass\n",
                     stdout=subprocess.PIPE, text=True)
    assert sink.stdout.readline().strip() == "ready"
    code = ("import socket,sys,time\n"
            f"c=socket.create_connection(('{lab.target_ip4}', 5001))\n"
            "end=time.monotonic()+3\n"
            "while time.monotonic()<end: c.send(b'x'); time.sleep(0.01)\n")
    with SentryProcess(lab) as sw:
        peer = lab.popen(lab.scanner_ns, sys.executable, "-c", code)
        time.sleep(0.5)
        nmap(lab, scan, "-p", "1-40", v6=True)
        sw.wait_history(lab.scanner_ip6)
        assert re.search(ALERT[scan] + rf" from host: {lab.scanner_ip6}/{lab.scanner_ip6} to "
                         rf"TCP port: \d+$", sw.log(), re.M), sw.log()
        assert_blocked(sw, lab, lab.scanner_ip6, TYPE[scan], "TCP", family=6)
        assert peer.wait(timeout=10) == 0  # the IPv4 connection kept going throughout
        assert sw.nft_set(4) == []


@pytest.mark.parametrize("opts, scan_type, frag", [
    (("-f",), "Tiny Fragment", "is a tiny fragment without the TCP flags (RFC 1858)"),
    (("--mtu", "8"), "Tiny Fragment", "is a tiny fragment without the TCP flags (RFC 1858)"),
    (("-ff",), "SYN/Normal", "came fragmented"),  # 16 bytes of TCP: the flags are there
    (("--mtu", "16"), "SYN/Normal", "came fragmented"),
    (("--mtu", "24"), "SYN/Normal", None),  # nmap's 24-byte SYN fits: not fragmented at all
], ids=["f", "mtu8", "ff", "mtu16", "mtu24"])
def test_fragmented_scan_is_classified_and_blocked(lab, web, opts, scan_type, frag):
    """nmap -f and friends: classified from the first fragment, logged as evasion.
    (nmap 7.93 refuses -f with -6; IPv6 fragments are in test_ipv6_fragments_...)"""
    lab.wait_reachable()
    addr = lab.scanner_ip4
    with SentryProcess(lab) as sw:
        nmap(lab, "-sS", *opts, "-p", "1-40")
        sw.wait_block_event()
        log = sw.log()
        line = re.search(rf"attackalert: Packet from host: {addr}/{addr} to TCP port: \d+ "
                         rf"(.*) \(detection avoidance technique\)\.$", log, re.M)
        assert (line and line.group(1)) == frag, log
        assert_blocked(sw, lab, addr, scan_type, "TCP")
        ev = [e for e in sw.events() if e["action"] == "block"][0]
        assert ev["fragmented"] == bool(frag) and ev["scan_type"] == scan_type, ev


def test_ipv6_and_out_of_order_fragments_are_classified(lab, web):
    """nmap cannot fragment IPv6: hand-built fragments, sent last first."""
    lab.wait_reachable()
    mac = lab.run(lab.target_ns, "cat", f"/sys/class/net/{lab.target_if}/address").stdout.strip()

    def send(src, dst, flags, frag):
        res = lab.run(lab.scanner_ns, sys.executable, RAWSEND, lab.scanner_if, mac, src, dst,
                      "--ports", "1", "--flags", flags, "--frag", str(frag), "--reverse")
        assert res.returncode == 0, res.stderr

    with SentryProcess(lab) as sw:
        send(lab.scanner_ip6, lab.target_ip6, "S", 8)
        assert sw.wait_block_event()["scan_type"] == "Tiny Fragment"
        assert_blocked(sw, lab, lab.scanner_ip6, "Tiny Fragment", "TCP", family=6)
        send(lab.scanner_ip4, lab.target_ip4, "F", 16)
        sw.wait_history(lab.scanner_ip4)
        assert_blocked(sw, lab, lab.scanner_ip4, "FIN", "TCP")
        assert (f"Packet from host: {lab.scanner_ip4}/{lab.scanner_ip4} to TCP port: 1 came "
                "fragmented (detection avoidance technique).") in sw.log()


def test_sweep_of_ports_without_tripwires_is_caught_at_the_threshold(lab):
    lab.wait_reachable()
    with SentryProcess(lab) as sw:
        out = nmap(lab, "-sS", "-p", "3000-3400")  # no tripwire port in this range
        sw.wait_block_event()
        closed = re.findall(r"(\d+)/closed/tcp", out)
        # The kernel drops the 20th distinct closed port's probe and everything after it;
        # the Bloom filter may miss a distinct port now and then (bench/sweep_filter.py: 1%
        # of scans, at most 2 ports), which only delays the trigger.
        assert 19 <= len(closed) <= 21, out
        ev = [e for e in sw.events() if e["action"] == "block"][0]
        assert ev["reason"] == "sweep" and ev["kernel_blocked"] and len(ev["ports"]) == 20
        assert sw.status()["counters"]["dropped"] > 300


def test_scan_over_ipv6_is_caught(lab, web):
    lab.wait_reachable()
    assert connect(lab, lab.target_ip6, web)
    with SentryProcess(lab) as sw:
        nmap(lab, "-sS", "-p", "1-40", v6=True)
        sw.wait_block_event()
        assert re.search(rf"attackalert: TCP SYN/Normal scan from host: {lab.scanner_ip6}/"
                         rf"{lab.scanner_ip6} to TCP port: \d+$", sw.log(), re.M), sw.log()
        assert_blocked(sw, lab, lab.scanner_ip6, "SYN/Normal", "TCP", family=6)
        assert not connect(lab, lab.target_ip6, web)
        assert sw.nft_set(4) == []


def test_ignored_scanner_is_never_blocked(lab, web):
    lab.wait_reachable()
    with SentryProcess(lab, ignore=[f"{lab.scanner_ip4}/32", "# a comment"]) as sw:
        nmap(lab, "-sS", "-p", "1-400")
        st = sw.status()
        assert st["blocked"] == [] and sw.nft_set(4) == []
        assert st["counters"]["ignored"] >= 400 and st["counters"]["kernel_blocks"] == 0
        assert "ALL:" not in sw.read("hosts_deny") and sw.read("history") == ""
        assert connect(lab, lab.target_ip4, web)
        # The same scan over IPv6 (not ignored) is caught: the test can fail.
        nmap(lab, "-sS", "-p", "1-40", v6=True)
        sw.wait_block_event()


def test_probes_to_a_port_with_a_listener_do_not_trigger(lab):
    lab.wait_reachable()
    with SentryProcess(lab) as sw:
        trap = listen(lab, 1)  # TCP port 1 is a tripwire, but now a service owns it
        try:
            for _ in range(5):
                nmap(lab, "-sS", "-p", "1")
                assert connect(lab, lab.target_ip4, 1)
            time.sleep(1.5)  # status re-reads the socket table every second
            st = sw.status()
            assert st["blocked"] == [] and st["counters"]["tripwire"] == 0, st
            assert st["watched"]["TCP"]["in_use"] == 1, sw.log()
        finally:
            trap.kill()
            trap.wait()
        nmap(lab, "-sS", "-p", "1")  # the service is gone: port 1 is a trap again
        sw.wait_block_event()


def test_blocking_off_logs_without_blocking(lab):
    lab.wait_reachable()
    with SentryProcess(lab, conf='BLOCK_TCP="0"\nBLOCK_UDP="0"\n') as sw:
        nmap(lab, "-sS", "-p", "1-40")
        sw.wait_log("attackalert: TCP SYN/Normal scan")
        st = sw.status()
        assert st["blocked"] == [] and st["counters"]["kernel_blocks"] == 0
        assert sw.nft_set(4) == [] and "ALL:" not in sw.read("hosts_deny")
        # Every tripwire in range was counted: 1, 11, 15 (SCAN_TRIGGER=0 alerts on each).
        assert st["counters"]["tripwire"] == 3


def test_unblock_and_flush_touch_only_scanwatch_state(lab):
    lab.wait_reachable()
    with SentryProcess(lab) as sw:
        nmap(lab, "-sS", "-p", "1-40")
        sw.wait_block_event()
        run = ["--run-dir", str(sw.paths["run"])]
        res = sw.cli("unblock", lab.scanner_ip4, *run)
        assert "unblocked" in res.stdout
        assert sw.nft_set(4) == [] and sw.status()["blocked"] == []
        assert sw.read("hosts_deny") == "# admin's own line\nsshd: 192.0.2.7\n"
        nmap(lab, "-sS", "-p", "1-40")  # judged afresh: caught again
        sw.wait_log(f"Host {lab.scanner_ip4} has been blocked via nftables", timeout=5)
        assert sw.status()["blocked"]
        assert sw.stop() == 0
    # Daemon stopped: flush works offline, removes our table and only our hosts.deny line.
    lab.run(lab.target_ns, "nft", "add", "table", "inet", "other")
    assert lab.scanner_ip4 in sw.nft_set(4)
    res = sw.cli("flush", "--run-dir", str(sw.paths["run"]), "--state-dir", str(sw.paths["state"]),
                 "--hosts-deny", str(sw.paths["hosts_deny"]))
    assert "removed table inet scanwatch and 1 hosts.deny lines" in res.stdout
    tables = lab.run(lab.target_ns, "nft", "list", "tables").stdout
    assert "inet other" in tables and "scanwatch" not in tables
    assert sw.read("hosts_deny") == "# admin's own line\nsshd: 192.0.2.7\n"


def test_probes_behind_a_vlan_tag_are_caught(lab):
    """One 802.1Q tag is parsed (frames built by hand: this kernel has no 8021q module)."""
    lab.wait_reachable()
    mac = lab.run(lab.target_ns, "cat", f"/sys/class/net/{lab.target_if}/address").stdout.strip()
    with SentryProcess(lab, args=("-i", lab.target_if)) as sw:
        assert list(sw.status()["interfaces"]) == [lab.target_if]
        res = lab.run(lab.scanner_ns, sys.executable, RAWSEND, lab.scanner_if, mac,
                      "198.51.100.9", lab.target_ip4, "--ports", "3000-3030", "--vlan", "100")
        assert res.returncode == 0, res.stderr
        sw.wait_block_event()
        assert "198.51.100.9" in sw.nft_set(4)
        ev = [e for e in sw.events() if e["action"] == "block"][0]
        assert ev["reason"] == "sweep" and ev["scan_type"] == "SYN/Normal"


def test_dry_run_detects_but_blocks_nothing(lab):
    lab.wait_reachable()
    with SentryProcess(lab, args=("--dry-run",)) as sw:
        nmap(lab, "-sS", "-p", "1-40")
        sw.wait_log(f"dry run: Host {lab.scanner_ip4} would be blocked")
        st = sw.status()
        assert st["dry_run"] and st["blocked"] == [] and st["counters"]["kernel_blocks"] == 0
        assert sw.nft_set(4) == [] and "ALL:" not in sw.read("hosts_deny")
        assert connect(lab, lab.target_ip4, 22) is False  # closed port: refused, not dropped
        assert st["counters"]["dropped"] == 0


@pytest.mark.parametrize("opts, scan_type", [
    (("-sS", "-g", "53"), "SYN/Normal"),
    (("-sS", "--source-port", "88"), "SYN/Normal"),
    (("-sS", "--data-length", "40"), "SYN/Normal"),
    (("-sA", "--data-length", "40"), "ACK/Window"),
    (("-sS", "--ttl", "3"), "SYN/Normal"),
    (("-sS", "--spoof-mac", "0"), "SYN/Normal"),
    (("-sS", "--randomize-hosts"), "SYN/Normal"),
], ids=["g53", "sport88", "data-length", "ack-data-length", "ttl", "spoof-mac", "randomize"])
def test_evasion_options_do_not_hide_a_scan(lab, opts, scan_type):
    """Options that change what a probe looks like but not what it is."""
    lab.wait_reachable()
    with SentryProcess(lab) as sw:
        nmap(lab, *opts, "-p", "1-40")
        assert sw.wait_block_event()["scan_type"] == scan_type
        assert_blocked(sw, lab, lab.scanner_ip4, scan_type, "TCP")


SLOW_PORTS = int(BY_NAME["SLOW_PORTS"].default)


@pytest.mark.parametrize("pace", [("-T2",), ("--scan-delay", "1s")], ids=["T2", "scan-delay-1s"])
@pytest.mark.parametrize("family", [4, 6])
def test_slow_scan_is_caught_by_the_slow_tier(lab, pace, family):
    """nmap -T2 paces 0.4 s a probe (12 ports in SWEEP_WINDOW), --scan-delay 1s one a
    second (5): never SWEEP_PORTS (20); SLOW_PORTS closed ports within SLOW_WINDOW cut
    them off."""
    lab.wait_reachable()
    addr = lab.scanner_ip6 if family == 6 else lab.scanner_ip4
    with SentryProcess(lab) as sw:
        # no tripwire in this range; nmap stops by itself once the block drops the rest
        out = nmap(lab, "-sS", *pace, "-p", f"3000-{3000 + SLOW_PORTS + 20}",
                   v6=family == 6, timeout=SLOW_PORTS * 2 + 60)
        ev = sw.wait_block_event()
        assert ev["reason"] == "sweep" and ev["slow_sweep"] and ev["kernel_blocked"], ev
        m = re.search(r"Ignored State: closed \((\d+)\)", out)
        closed = int(m.group(1)) if m else len(re.findall(r"\d+/closed/tcp", out))
        # the SLOW_PORTS-th is dropped; the Bloom filter may miss one or two
        assert SLOW_PORTS - 3 <= closed <= SLOW_PORTS, out
        print(f"{' '.join(pace)} IPv{family}: {closed} closed ports learned before the block")
        assert re.search(rf"attackalert: Host {re.escape(addr)} probed {SLOW_PORTS} closed ports "
                         rf"within 600s \(.*\) \(slow scan\)$", sw.log(), re.M), sw.log()
        assert_blocked(sw, lab, addr, "SYN/Normal", "TCP", family=family)


def test_flag_classification_unknown_type_and_non_probes(lab, web):
    """RST packets are no probes (nothing answers them); ACK packets are probes only when no
    socket owns them; other odd patterns are "Unknown Type" with raw flags."""
    lab.wait_reachable()
    mac = lab.run(lab.target_ns, "cat", f"/sys/class/net/{lab.target_if}/address").stdout.strip()

    def send(src, ports, flags, *extra):
        res = lab.run(lab.scanner_ns, sys.executable, RAWSEND, lab.scanner_if, mac, src,
                      lab.target_ip4, "--ports", ports, "--flags", flags, *extra)
        assert res.returncode == 0, res.stderr

    # Forged sources in lockstep would be decoys: PortSentry's response blocks them all.
    with SentryProcess(lab, conf='EVIDENCE_RESPONSE="portsentry"\n') as sw:
        send("198.51.100.10", "1-100", "R")
        send("198.51.100.10", "1-100", "RA")
        # ACK to a listening port belongs to it (a late or SYN-cookie ACK): never a probe
        send("198.51.100.10", str(web), "A")
        send("198.51.100.10", str(web), "FA")
        time.sleep(0.5)
        st = sw.status()
        assert st["blocked"] == [] and sum(st["packets"].values()) == 0, st
        send("198.51.100.11", "1", "SF", "--ip-options")
        sw.wait_block_event()
        log = sw.log()
        assert "198.51.100.11/198.51.100.11 to TCP port: 1" in log
        assert "Unknown Type: TCP Packet Flags: SYN: 1 FIN: 1 ACK: 0 PSH: 0 URG: 0 RST: 0" in log
        assert "has IP options set" in log
        ev = [e for e in sw.events() if e["action"] == "block"][0]
        assert ev["tcp_flags"] == 0x03 and ev["ip_options"] and ev["scan_type"] == "Unknown Type"
        # --scanflags SYNACK to a tripwire with no socket is a probe too
        send("198.51.100.12", "1", "SA")
        sw.wait_history("198.51.100.12")
        assert ("198.51.100.12/198.51.100.12 to TCP port: 1" in sw.log()
                and "Unknown Type: TCP Packet Flags: SYN: 1 FIN: 0 ACK: 1" in sw.log())


def test_default_gateway_is_never_blocked_even_with_an_empty_ignore_file(lab):
    """Never lock the admin out: the scanner is the target's default gateway here."""
    lab.wait_reachable()
    res = lab.run(lab.target_ns, "ip", "route", "add", "default", "via", lab.scanner_ip4)
    assert res.returncode == 0, res.stderr
    with SentryProcess(lab) as sw:
        assert sw.status()["protected"]["gateway"] == [lab.scanner_ip4]
        nmap(lab, "-sS", "-p", "1-40")
        st = sw.status()
        assert st["blocked"] == [] and st["counters"]["ignored"] >= 40, st
        # IPv6 has no default route here: the same scanner over IPv6 is caught.
        nmap(lab, "-sS", "-p", "1-40", v6=True)
        sw.wait_block_event()


def test_flushed_ruleset_is_restored_with_the_blocks(lab):
    lab.wait_reachable()
    with SentryProcess(lab) as sw:
        nmap(lab, "-sS", "-p", "1-40")
        sw.wait_block_event()
        # No look at the empty set in between: the netlink monitor restores it in ~20 ms.
        assert lab.run(lab.target_ns, "nft", "flush", "ruleset").returncode == 0
        deadline = time.monotonic() + 2.5
        while lab.scanner_ip4 not in sw.nft_set(4):
            assert time.monotonic() < deadline, sw.log()
            time.sleep(0.1)
        assert "was removed or changed by someone else; restored it with 1 blocks" in sw.log()
        rules = lab.run(lab.target_ns, "nft", "list", "chain", "inet", "scanwatch", "input").stdout
        assert "@blocked4" in rules and "@blocked6" in rules


def test_daemon_keeps_llvm_out_and_stays_small(lab):
    """bcc/LLVM compile in a child (scanwatch/sentry/kernel/loader.py); the daemon only holds fds."""
    lab.wait_reachable()
    with SentryProcess(lab) as sw:
        nmap(lab, "-sS", "-p", "1-100")
        sw.wait_block_event()
        pid = int((sw.paths["run"] / "scanwatch.pid").read_text())
        maps = Path(f"/proc/{pid}/maps").read_text()
        assert "libbcc" not in maps and "LLVM" not in maps
        status = dict(l.split(":", 1) for l in Path(f"/proc/{pid}/status").read_text().splitlines())
        assert int(status["VmHWM"].split()[0]) < 80 * 1024, status["VmHWM"]


def test_open_ports_count_toward_a_sweep_only_alongside_closed_ones(lab):
    """A client of many services never trips the sweep detector; a scanner that finds
    listeners early is cut off before it has seen SWEEP_PORTS ports in all."""
    from sentryproc import listen_many
    lab.wait_reachable()
    mac = lab.run(lab.target_ns, "cat", f"/sys/class/net/{lab.target_if}/address").stdout.strip()

    def syn(src, ports):
        res = lab.run(lab.scanner_ns, sys.executable, RAWSEND, lab.scanner_if, mac, src,
                      lab.target_ip4, "--ports", ports)
        assert res.returncode == 0, res.stderr

    services = listen_many(lab, range(4000, 4030))
    try:
        with SentryProcess(lab) as sw:
            syn("198.51.100.20", "4000-4029")  # 30 open ports, nothing closed: a client
            time.sleep(0.5)
            assert sw.status()["blocked"] == [] and sw.events() == []
            syn("198.51.100.21", "4000-4014")  # 15 open ports, then closed ones
            syn("198.51.100.21", "3100-3119")
            ev = sw.wait_block_event()
            assert ev["addr"] == "198.51.100.21" and ev["reason"] == "sweep"
            # Triggered at the 10th closed port counted: 15 open + 10 closed >= 20, closed
            # >= 20/2. The Bloom hash is seeded at random per load (issue 14), so in ~1% of
            # runs a closed port is a false positive and the 10th counted is one port later.
            assert ev["sweep"] == 10 and ev["port"] in (3109, 3110), ev
    finally:
        services.kill()
        services.wait()
