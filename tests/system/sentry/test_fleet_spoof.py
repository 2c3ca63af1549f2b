"""Fleet sweeps weighed by spoof evidence (issue 15 after issue 13): forged probes spread
over the fleet must not get an innocent address blocked everywhere, while the real scanner
of the same spread scan still is.

Forged addresses are lab addresses: decoys with nothing behind them (the challenge's SYN-ACK
to them stays on the lab bridge), and a live lab peer whose address hping3 forges from the
scanner namespace."""
import re
import subprocess
import time

import pytest

from fleetproc import Fleet, all_logs, blocked_everywhere, fresh_scanner, nmap_hosts, \
    stream_entries
from lab import FleetLab
from redisproc import RedisServer
from sentryproc import wait_for

N = 5


@pytest.fixture(scope="module")
def flab():
    with FleetLab(hosts=N) as lab:
        lab.wait_reachable()
        lab.redis = RedisServer(lab)
        try:
            yield lab
        finally:
            lab.redis.close()


def published(redis, addr):
    return [f for _i, f in stream_entries(redis) if f.get("addr") == addr]


def nowhere(fl, addr):
    """Not in nftables nor hosts.deny of any member, not in any block table."""
    for sw in fl.sws:
        assert addr not in sw.nft_set(4), (addr, sw.log())
        assert addr not in sw.read("hosts_deny"), (addr, sw.read("hosts_deny"))
        assert not [b for b in sw.status()["blocked"] if b["addr"] == addr], sw.log()


def test_decoys_of_a_spread_scan_are_spared_and_its_real_scanner_blocked(flab):
    """nmap -D over five hosts, five ports each: no host sees enough, the fleet does. The
    decoys probe in lockstep with the scanner on every host (marked decoy); the challenge
    proves the real one, which is blocked fleet-wide; the decoys never answer."""
    me = fresh_scanner(flab)
    fakes = [flab.addr(150 + i) for i in range(3)]
    with Fleet(flab) as fl:
        nmap_hosts(flab, "-sS", "-D", ",".join(fakes[:2] + ["ME"] + fakes[2:]),
                   "-p", "22,80,443,3306,5432")
        fl.wait(lambda: blocked_everywhere(fl.sws, me), 20, "the real scanner blocked fleet-wide")
        fl.wait(lambda: sum(all_logs(sw).count("possibly spoofed: fleet sweep, decoy")
                            for sw in fl.sws) >= len(fakes), 15, "every decoy spared")
        # each source judged once in the fleet (the first member to claim its verdict)
        logs = "".join(all_logs(sw) for sw in fl.sws)
        for a in fakes + [me]:
            assert logs.count(f"Host {a} touched") == 1, logs
        time.sleep(1.5)  # room for a late verdict, were there one
        for d in fakes:
            nowhere(fl, d)
            assert not published(flab.redis, d), published(flab.redis, d)
        entries = published(flab.redis, me)
        assert [(e["kind"], e["evidence"]) for e in entries] == [("sweep", "proven")], entries
        logs = "".join(all_logs(sw) for sw in fl.sws)
        assert re.search(rf"Host {re.escape(me)} touched \d+ host:port pairs .* horizontal "
                         r"scan \(evidence: proven\)", logs), logs
        assert "Traceback" not in logs
        for sw in fl.sws:
            assert me not in sw.read("hosts_deny")  # a fleet block is nft and XDP only
        assert sum(sw.status()["fleet"]["marked"] for sw in fl.sws) >= 1


ECHO_SERVER = """
import socket, sys, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(8)
def serve(c):
    while True:
        b = c.recv(100)
        if not b: return
        c.sendall(b)
while True:
    c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
"""
ECHO_CLIENT = """
import socket, sys, time
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)
n = 0
while True:
    c.sendall(b"x"); c.recv(1); n += 1
    print(n, flush=True); time.sleep(0.1)
"""


def forge(lab, peer, target, first_port, count):
    """SYN probes claiming `peer`, from another hop distance (--ttl 40: 24 hops; the peer
    is 0 hops away), sent by hping3 in the scanner namespace."""
    res = lab.run(lab.scanner_ns, "hping3", "-n", "-q", "-S", "-a", peer, "--ttl", "40",
                  "-p", f"++{first_port}", "-i", "u20000", "-c", str(count), target, timeout=60)
    assert res.returncode in (0, 1), res.stderr


def test_a_forged_peer_spread_over_the_fleet_is_never_blocked(flab):
    """A live innocent holds a connection to web1 (web1 learns its hop count). A forger
    sends probes under its address: a tripwire of web1 (a report there: suspect, the hop
    count differs) and four closed ports of each other host. The fleet counts 18 pairs,
    over FLEET_SWEEP (12), yet web1's suspect mark keeps every member from blocking the
    innocent (a challenge would not help: the innocent is alive and answers it)."""
    peer = fresh_scanner(flab)
    web1_ip = flab.hosts[0].target_ip4
    with Fleet(flab) as fl:
        web1 = fl.sws[0]
        server = flab.popen(flab.hosts[0].target_ns, "python3", "-c", ECHO_SERVER, "7070")
        client = None
        try:
            time.sleep(0.5)
            client = flab.popen(flab.scanner_ns, "python3", "-u", "-c", ECHO_CLIENT, web1_ip,
                                "7070", stdout=subprocess.PIPE, text=True)
            assert client.stdout.readline().strip() == "1"
            time.sleep(1)  # its packets teach web1 the peer's hop count
            forge(flab, peer, web1_ip, 1, 2)  # port 1: a PortSentry tripwire
            web1.wait_log(f"Host {peer} (possibly spoofed: hop count", timeout=15)
            for h in flab.hosts[1:]:
                forge(flab, peer, h.target_ip4, 3000, 4)
            fl.wait(lambda: sum(all_logs(sw).count(f"Host {peer} (possibly spoofed: fleet "
                                                   "sweep, suspect) not blocked")
                                for sw in fl.sws) >= 1, 20, "the fleet's verdict: suspect")
            time.sleep(1.5)
            # one member judges (the first to claim the verdict), once
            assert "".join(all_logs(sw) for sw in fl.sws).count(
                f"Host {peer} touched") == 1
            nowhere(fl, peer)
            assert not published(flab.redis, peer), published(flab.redis, peer)
            # the innocent's connection keeps working
            before = int(client.stdout.readline())
            time.sleep(1)
            assert int(client.stdout.readline()) > before
            assert "Traceback" not in "".join(all_logs(sw) for sw in fl.sws)
        finally:
            for p in (client, server):
                if p is not None:
                    p.kill()
                    p.wait()

    # a spread of the same size, sent for real by a scanner with no connection to anyone:
    # its challenge is answered, and it is blocked fleet-wide
    scanner = fresh_scanner(flab)
    with Fleet(flab) as fl:
        nmap_hosts(flab, "-sS", "-p", "3000-3003", hosts=flab.hosts[1:])
        fl.wait(lambda: blocked_everywhere(fl.sws, scanner), 20, "blocked fleet-wide")
        wait_for(lambda: published(flab.redis, scanner), 10, "published")
        assert [e["evidence"] for e in published(flab.redis, scanner)] == ["proven"]
