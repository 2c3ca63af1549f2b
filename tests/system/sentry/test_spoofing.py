"""Issue 13: spoof-aware response against real nmap -D and a spoofing hping3, in namespaces.

Decoys are addresses of the lab's own subnet (IPv6: of unrouted /64s next to it) with
nothing behind them (never RND): the return-routability challenge sends each one a SYN-ACK,
which must stay inside the lab."""
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sentryproc import SentryProcess, block_key, connect, deny_target, nmap, wait_for

NDECOYS = 10
RAWSEND = str(Path(__file__).resolve().parents[1] / "rawsend.py")


def decoys(lab, v6):
    if v6:
        # Each in a /64 of its own (the lab's ULA, unrouted): IPv6 sources are counted
        # per V6_PREFIX (/64, issue 14), so "decoys" inside the scanner's own /64 are the
        # scanner itself rotating addresses, and are blocked with it.
        base = lab.target_ip6.rsplit("::", 1)[0]
        return [f"{base}:{i + 1:x}::{100 + i:x}" for i in range(NDECOYS)]
    base = lab.target_ip4.rsplit(".", 1)[0]
    return [f"{base}.{100 + i}" for i in range(NDECOYS)]


@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
def test_decoy_scan_blocks_the_real_scanner_only(lab, web, v6):
    lab.wait_reachable()
    me = lab.scanner_ip6 if v6 else lab.scanner_ip4
    target = lab.target_ip6 if v6 else lab.target_ip4
    fakes = decoys(lab, v6)
    if v6:  # the challenges to the decoys' /64s go to the scanner's namespace (and die there)
        res = lab.run(lab.target_ns, "ip", "-6", "route", "add",
                      lab.target_ip6.rsplit("::", 1)[0] + "::/48", "via", lab.scanner_ip6)
        assert res.returncode == 0, res.stderr
    assert connect(lab, target, web)
    with SentryProcess(lab) as sw:
        # ME in the middle of the decoys, as an attacker would place it.
        order = fakes[:5] + ["ME"] + fakes[5:]
        nmap(lab, "-sS", "-D", ",".join(order), "-p", "1-40", v6=v6)
        sw.wait_history(me, timeout=15)
        wait_for(lambda: sw.log().count("possibly spoofed") >= NDECOYS, timeout=15,
                 what="every decoy logged as possibly spoofed")
        log = sw.log()
        # The real scanner: full block, reported by name as proven.
        assert block_key(me) in sw.nft_blocked(), log  # IPv6: its /64 (issue 14)
        deny = sw.read("hosts_deny")
        assert f"ALL: {deny_target(lab, me)}\n" in deny, deny
        assert re.search(rf"Host {re.escape(me)} has been blocked via nftables .*"
                         r"\(evidence: proven", log), log
        # No decoy in hosts.deny or nft; each in XDP only, logged "possibly spoofed".
        nft = sw.nft_blocked()
        for d in fakes:
            assert d not in nft, (d, nft)
            assert d not in deny, (d, deny)
            assert re.search(rf"Host {re.escape(d)} \(possibly spoofed: decoy in a cohort of "
                             rf"\d+ probing in lockstep; the real scanner is {re.escape(me)}\) "
                             r"dropped in XDP only", log), (d, log)
        st = sw.status()
        assert st["spoof"]["evidence"]["proven"] >= 1, st["spoof"]
        assert st["spoof"]["evidence"]["decoy"] >= NDECOYS, st["spoof"]
        assert st["spoof"]["challenges_answered"] >= 1
        assert [b["strength"] for b in st["blocked"]] == ["proven"], st["blocked"]
        spoofed = [e for e in sw.events() if e.get("type") == "spoofed"]
        assert {e["addr"] for e in spoofed} == set(fakes), spoofed
        assert all(e["strength"] == "decoy" and e["real"] == [me] for e in spoofed)
        assert not connect(lab, target, web), "the real scanner still connects"


def test_portsentry_response_blocks_every_decoy(lab):
    """EVIDENCE_RESPONSE=portsentry keeps PortSentry's behaviour: everything full."""
    lab.wait_reachable()
    fakes = decoys(lab, False)[:3]
    with SentryProcess(lab, conf='EVIDENCE_RESPONSE="portsentry"\n') as sw:
        nmap(lab, "-sS", "-D", ",".join(fakes + ["ME"]), "-p", "1-40")
        for a in fakes + [lab.scanner_ip4]:
            sw.wait_history(a, timeout=15)
        assert all(a in sw.read("hosts_deny") for a in fakes)
        assert "possibly spoofed" not in sw.log()


ECHO_SERVER = """
import socket, sys, threading
s = socket.create_server(("", int(sys.argv[1])), family=socket.AF_INET6, dualstack_ipv6=True)
def serve(c):
    while True:
        b = c.recv(100)
        if not b: return
        c.sendall(b)
while True:
    c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
"""
# One line a tenth of a second, each echo counted on stdout: the connection keeps working.
ECHO_CLIENT = """
import socket, sys, time
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)
n = 0
while True:
    c.sendall(b"x"); c.recv(1); n += 1
    print(n, flush=True); time.sleep(0.1)
"""


@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
def test_spoofed_flood_of_a_peer_never_blocks_it(lab, v6):
    """A flood of tripwire probes under the address of a peer that holds a connection to the
    target, from a different hop distance (--ttl 40: 24 hops, the peer is 0 hops away).
    IPv4: hping3 -a. IPv6 (hping3 has none): nmap -6 --ttl 40 from the peer's own address,
    which to the sentry is the same thing: packets naming the peer that did not come the
    peer's path length (--send-ip: nmap's own neighbour solicitation would carry hop
    limit 40 as well and be dropped)."""
    lab.wait_reachable()
    peer = lab.scanner_ip6 if v6 else lab.scanner_ip4
    target = lab.target_ip6 if v6 else lab.target_ip4
    server = lab.popen(lab.target_ns, "python3", "-c", ECHO_SERVER, "7070")
    client = None
    try:
        with SentryProcess(lab) as sw:
            time.sleep(0.5)
            client = lab.popen(lab.scanner_ns, "python3", "-u", "-c", ECHO_CLIENT,
                               target, "7070", stdout=subprocess.PIPE, text=True)
            assert client.stdout.readline().strip() == "1"
            time.sleep(1)  # its packets teach the sentry the peer's hop count
            if v6:
                nmap(lab, "-sS", "--ttl", "40", "--send-ip", "-p", "1-1000", v6=True)
            else:
                flood = lab.run(lab.scanner_ns, "hping3", "-n", "-q", "-S", "-a", peer,
                                "--ttl", "40", "-p", "++1", "-i", "u300", "-c", "3000",
                                lab.target_ip4, timeout=60)
                assert flood.returncode in (0, 1), flood.stderr
            wait_for(lambda: "possibly spoofed" in sw.log(), timeout=10,
                     what="the forged flood logged as possibly spoofed")
            log = sw.log()
            assert re.search(rf"Host {re.escape(peer)} \(possibly spoofed: hop count 24 differs "
                             r"from 0 learned from an established connection\) not blocked", log), log
            assert block_key(peer) not in sw.nft_blocked(), log  # IPv6: its /64 (issue 14)
            deny = sw.read("hosts_deny")
            assert peer not in deny and deny_target(lab, peer) not in deny, deny
            assert not [b for b in sw.status()["blocked"]
                        if b["addr"] in (peer, block_key(peer))], sw.status()["blocked"]
            # The peer's connection keeps working: fresh echoes after the flood.
            before = int(client.stdout.readline())
            time.sleep(1)
            assert int(client.stdout.readline()) > before
            assert connect(lab, target, 7070), "the peer can still open connections"
            assert sw.status()["spoof"]["evidence"]["suspect"] >= 1
    finally:
        for p in (client, server):
            if p is not None:
                p.kill()
                p.wait()


@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
def test_lone_forged_source_that_never_answers_is_unverified_and_fully_blocked(lab, v6):
    """"unverified" is everything else: a forged address with nothing behind it, probing
    alone (no cohort, no connection with us). It cannot answer the challenge, and the
    default response for it is the full one, as PortSentry's. IPv4: hping3 -a; IPv6
    (hping3 has none): hand-built SYNs from an address in an unrouted /64 of the lab."""
    lab.wait_reachable()
    if v6:
        base = lab.target_ip6.rsplit("::", 1)[0]
        fake = f"{base}:77::77"
        # the challenge to the fake's /64 goes to the scanner's namespace and dies there
        res = lab.run(lab.target_ns, "ip", "-6", "route", "add", f"{base}:77::/64",
                      "via", lab.scanner_ip6)
        assert res.returncode == 0, res.stderr
    else:
        fake = lab.target_ip4.rsplit(".", 1)[0] + ".77"
    with SentryProcess(lab) as sw:
        if v6:
            mac = lab.run(lab.target_ns, "cat",
                          f"/sys/class/net/{lab.target_if}/address").stdout.strip()
            res = lab.run(lab.scanner_ns, sys.executable, RAWSEND, lab.scanner_if, mac, fake,
                          lab.target_ip6, "--ports", "1-40", "--flags", "S")
            assert res.returncode == 0, res.stderr
        else:
            res = lab.run(lab.scanner_ns, "hping3", "-n", "-q", "-S", "-a", fake, "-p", "++1",
                          "-i", "u2000", "-c", "40", lab.target_ip4, timeout=60)
            assert res.returncode in (0, 1), res.stderr
        sw.wait_history(fake, timeout=15)
        log = sw.log()
        assert re.search(rf"Host {re.escape(fake)} has been blocked via nftables .*"
                         r"\(evidence: unverified", log), log
        assert block_key(fake) in sw.nft_blocked(), log  # IPv6: its /64 (issue 14)
        assert f"ALL: {deny_target(lab, fake)}\n" in sw.read("hosts_deny")
        assert "possibly spoofed" not in log, log
        st = sw.status()
        assert [b["strength"] for b in st["blocked"]] == ["unverified"], st["blocked"]
        assert st["spoof"]["evidence"]["unverified"] >= 1, st["spoof"]
        assert st["spoof"]["challenges_answered"] == 0, st["spoof"]
        ev = [e for e in sw.events() if e.get("action") == "block"]
        assert ev and ev[0]["strength"] == "unverified", ev
